//! Reading the journal for a report: leniently, so a damaged journal can still be reviewed.
//!
//! The one place the report reads `journal.jsonl`; the assembly sees only [`Entry`] and
//! [`LenientRead`].

use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::events::RunEvent;
use crate::journal;

/// One complete journal line.
pub(crate) struct Entry {
    /// `seq` of the entry (0 when missing).
    pub seq: u64,
    /// Its time (RFC 3339; empty when missing).
    pub ts: String,
    /// The event, `None` when it is not one irr knows (or does not parse as one).
    pub event: Option<RunEvent>,
    /// The raw line.
    pub value: Value,
    /// The SHA-256 state after this line: the hash of the journal up to and including it.
    pub prefix_sha256: String,
}

impl Entry {
    fn new(value: Value, prefix_sha256: String) -> Entry {
        Entry {
            seq: value.get("seq").and_then(Value::as_u64).unwrap_or(0),
            ts: value
                .get("ts")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            event: serde_json::from_value(value.clone()).ok(),
            value,
            prefix_sha256,
        }
    }

    /// The event name (`call_started`, ...), `?` when the line has none.
    pub fn name(&self) -> &str {
        self.value
            .get("event")
            .and_then(Value::as_str)
            .unwrap_or("?")
    }
}

/// The journal as read, leniently: every line that parses, and the chain's verdict.
pub(crate) struct LenientRead {
    pub entries: Vec<Entry>,
    pub chain_problem: Option<String>,
    pub torn: bool,
    pub missing: Option<String>,
}

/// Reads every complete line, checking the chain as [`journal::read`] does but reading on
/// past a break, so a damaged journal can still be reviewed.
pub(crate) fn read_lenient(path: &Path) -> LenientRead {
    let mut read = LenientRead {
        entries: Vec::new(),
        chain_problem: None,
        torn: false,
        missing: None,
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            read.missing = Some(format!("{}: {e}", path.display()));
            return read;
        }
    };
    // The canonical verdict comes from the journal module itself.
    if let Err(e) = journal::read(path) {
        read.chain_problem = Some(match e {
            journal::JournalError::Corrupt { line, message, .. } => {
                format!("line {line}: {message}")
            }
            other => other.to_string(),
        });
    }
    let mut prev = "0".repeat(64);
    let mut whole = Sha256::new();
    let mut rest: &[u8] = &bytes;
    let mut line_no = 0;
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        let raw = &rest[..=end];
        rest = &rest[end + 1..];
        line_no += 1;
        whole.update(raw);
        let hash = hex::encode(Sha256::digest(raw));
        match serde_json::from_slice::<Value>(raw) {
            Ok(value) => {
                if read.chain_problem.is_none()
                    && value.get("prev_sha256").and_then(Value::as_str) != Some(prev.as_str())
                {
                    read.chain_problem = Some(format!(
                        "line {line_no}: prev_sha256 does not match the previous line"
                    ));
                }
                read.entries
                    .push(Entry::new(value, hex::encode(whole.clone().finalize())));
            }
            Err(e) => {
                if read.chain_problem.is_none() {
                    read.chain_problem = Some(format!("line {line_no}: not JSON: {e}"));
                }
            }
        }
        prev = hash;
    }
    read.torn = !rest.is_empty();
    read
}
