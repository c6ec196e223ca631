//! The run journal: `STATE_DIR/runs/RUN_ID/journal.jsonl`, append-only.
//!
//! Every [`RunEvent`] of a run is one line. Each line carries `seq`, `ts` and `prev_sha256`:
//! the SHA-256 of the previous line's bytes (the first line's is 64 zeros), so a line removed
//! or edited breaks the chain. Each line is written and `fsync`ed before the executor goes
//! on, so the journal always says which mutating AWS calls were started and which finished,
//! even after a crash. Appends from concurrent tasks share their `fsync`s (group commit): a
//! line is written under the journal's lock, then made durable by one `fdatasync` that covers
//! every line written before it began, so twenty items' events cost a few syncs, not twenty,
//! and no `append` returns before its own line is on disk.
//!
//! Reading back is typed and done here only: [`read`] (strict: a broken chain is an error) and
//! [`read_lenient`] (reads on past damage, for review) give [`Entry`]s holding the parsed
//! [`RunEvent`], and [`replay`] rebuilds the run's state from them for `irr resume`, the seal,
//! the case's record, drills and `irr report` alike.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::events::RunEvent;

mod replay;

pub use replay::{replay, Artifact, Attempt, Call, Finish, Retry, RunState, Start, StepState};

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Why the journal could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The file could not be opened, written or synced.
    #[error("journal {path}: {source}")]
    Io {
        /// The journal file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A line is not JSON, or the hash chain is broken.
    #[error("journal {path} line {line}: {message}")]
    Corrupt {
        /// The journal file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

struct State {
    file: File,
    seq: u64,
    last_hash: String,
}

/// The group commit's side: a handle on the same file and how far it is known durable.
struct Synced {
    file: File,
    upto: u64,
    syncs: u64,
}

/// An open journal, appended to by the executor (shared across tasks).
pub struct Journal {
    path: PathBuf,
    state: Mutex<State>,
    /// Taken after `state` is released, never while holding it the other way round: a
    /// sync reads `state.seq` under this lock.
    synced: Mutex<Synced>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish()
    }
}

impl Journal {
    /// Opens (or creates) the journal at `path`, checking the chain of what is already there
    /// and continuing it.
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        let existing = if path.exists() {
            read(path)?
        } else {
            Vec::new()
        };
        let (seq, last_hash) = match existing.last() {
            Some(last) => (last.seq, last.hash.clone()),
            None => (0, GENESIS.to_owned()),
        };
        let io = |source| JournalError::Io {
            path: path.to_owned(),
            source,
        };
        // A line torn by a crash is cut off, so the next line starts clean.
        if path.exists() {
            let bytes = std::fs::read(path).map_err(io)?;
            let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            if whole < bytes.len() {
                let f = OpenOptions::new().write(true).open(path).map_err(io)?;
                f.set_len(whole as u64).map_err(io)?;
                f.sync_data().map_err(io)?;
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        let sync_handle = file.try_clone().map_err(io)?;
        Ok(Journal {
            path: path.to_owned(),
            state: Mutex::new(State {
                file,
                seq,
                last_hash,
            }),
            synced: Mutex::new(Synced {
                file: sync_handle,
                upto: seq,
                syncs: 0,
            }),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event, durably (written and fsynced before returning). Returns its `seq`.
    pub fn append(&self, event: &RunEvent) -> Result<u64, JournalError> {
        self.append_at(event, &irr_forensics::clock::now_rfc3339())
    }

    /// [`Journal::append`] with the time the event happened, when that is not now: a Step
    /// Functions execution's history, translated after the execution ended
    /// (`crate::execution`), keeps the times AWS recorded.
    pub fn append_at(&self, event: &RunEvent, ts: &str) -> Result<u64, JournalError> {
        let io = |source| JournalError::Io {
            path: self.path.clone(),
            source,
        };
        let seq = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let seq = st.seq + 1;
            let mut entry = json!({
                "seq": seq,
                "ts": ts,
                "prev_sha256": st.last_hash,
            });
            if let (Value::Object(m), Ok(Value::Object(ev))) =
                (&mut entry, serde_json::to_value(event))
            {
                m.extend(ev);
            }
            let mut line = serde_json::to_vec(&entry).unwrap_or_default();
            line.push(b'\n');
            st.file.write_all(&line).map_err(io)?;
            st.seq = seq;
            st.last_hash = hex::encode(Sha256::digest(&line));
            seq
        };
        self.sync_through(seq).map_err(io)?;
        Ok(seq)
    }

    /// Returns once every line up to `seq` is on disk: at once if a sync that began after it
    /// was written has finished, else after one `fdatasync` covering every line written so
    /// far (the appends waiting meanwhile are covered by it and skip their own).
    fn sync_through(&self, seq: u64) -> std::io::Result<()> {
        let mut synced = self.synced.lock().unwrap_or_else(|e| e.into_inner());
        if synced.upto >= seq {
            return Ok(());
        }
        // Every line up to `written` is complete: lines are written under `state`.
        let written = self.state.lock().unwrap_or_else(|e| e.into_inner()).seq;
        synced.file.sync_data()?;
        synced.syncs += 1;
        synced.upto = written;
        Ok(())
    }

    /// The highest `seq` known to be on disk, and how many `fdatasync`s this handle made.
    pub fn durability(&self) -> (u64, u64) {
        let s = self.synced.lock().unwrap_or_else(|e| e.into_inner());
        (s.upto, s.syncs)
    }
}

/// One line read back from a journal.
#[derive(Clone, Debug)]
pub struct Entry {
    /// 1-based line number.
    pub line: usize,
    /// Its sequence number.
    pub seq: u64,
    /// When it was written (RFC 3339).
    pub ts: String,
    /// The event, typed; `None` for a line that is no event this version knows (its name is
    /// [`Entry::name`]).
    pub event: Option<RunEvent>,
    /// The whole line as JSON (`event`, `ts`, and the event's fields).
    pub value: Value,
    /// SHA-256 of the line's bytes (what the next line's `prev_sha256` must be).
    pub hash: String,
    /// SHA-256 of the journal's bytes up to and including this line.
    pub prefix_sha256: String,
}

impl Entry {
    fn parse(line: usize, value: Value, hash: String, prefix_sha256: String) -> Entry {
        Entry {
            line,
            seq: value.get("seq").and_then(Value::as_u64).unwrap_or(0),
            ts: value
                .get("ts")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            event: serde_json::from_value(value.clone()).ok(),
            value,
            hash,
            prefix_sha256,
        }
    }

    /// The event name as written (`run_started`, `step_finished`, ...).
    pub fn name(&self) -> &str {
        self.value
            .get("event")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}

/// Reads a journal and checks its hash chain. A last line cut short by a crash (no newline)
/// is ignored; any other damage is an error naming the line.
pub fn read(path: &Path) -> Result<Vec<Entry>, JournalError> {
    let file = File::open(path).map_err(|source| JournalError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut reader = BufReader::new(file);
    let mut out = Vec::new();
    let mut prev = GENESIS.to_owned();
    let mut whole = Sha256::new();
    let mut buf = Vec::new();
    let mut line_no = 0;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|source| JournalError::Io {
                path: path.to_owned(),
                source,
            })?;
        if n == 0 || !buf.ends_with(b"\n") {
            break;
        }
        line_no += 1;
        let corrupt = |message: String| JournalError::Corrupt {
            path: path.to_owned(),
            line: line_no,
            message,
        };
        let value: Value =
            serde_json::from_slice(&buf).map_err(|e| corrupt(format!("not JSON: {e}")))?;
        let claimed = value
            .get("prev_sha256")
            .and_then(Value::as_str)
            .unwrap_or("");
        if claimed != prev {
            return Err(corrupt(
                "prev_sha256 does not match the previous line: the journal was altered".to_owned(),
            ));
        }
        let hash = hex::encode(Sha256::digest(&buf));
        whole.update(&buf);
        prev = hash.clone();
        let prefix = hex::encode(whole.clone().finalize());
        out.push(Entry::parse(line_no, value, hash, prefix));
    }
    Ok(out)
}

/// A journal read leniently, for review: every complete line that parses, and what is wrong.
#[derive(Debug, Default)]
pub struct LenientRead {
    /// Every complete line that is JSON, in order.
    pub entries: Vec<Entry>,
    /// The first break of the chain (as [`read`] reports it), or an unparseable line.
    pub chain_problem: Option<String>,
    /// The last line was cut short (no newline).
    pub torn: bool,
    /// The journal could not be read at all, and why.
    pub missing: Option<String>,
}

/// Reads every complete line, checking the chain as [`read`] does but reading on past a break,
/// so that a damaged journal can still be reviewed.
pub fn read_lenient(path: &Path) -> LenientRead {
    let mut read = LenientRead::default();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            read.missing = Some(format!("{}: {e}", path.display()));
            return read;
        }
    };
    // The canonical verdict is the strict reader's.
    if let Err(e) = self::read(path) {
        read.chain_problem = Some(match e {
            JournalError::Corrupt { line, message, .. } => format!("line {line}: {message}"),
            other => other.to_string(),
        });
    }
    let mut prev = GENESIS.to_owned();
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
                let prefix = hex::encode(whole.clone().finalize());
                read.entries
                    .push(Entry::parse(line_no, value, hash.clone(), prefix));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::RunEvent;

    #[test]
    fn chain_survives_reopen_and_detects_edits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let j = Journal::open(&path).unwrap();
        j.append(&RunEvent::Note {
            message: "one".into(),
        })
        .unwrap();
        drop(j);
        let j = Journal::open(&path).unwrap();
        assert_eq!(
            j.append(&RunEvent::Note {
                message: "two".into()
            })
            .unwrap(),
            2
        );
        let entries = read(&path).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].value["message"], "two");

        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("one", "uno");
        std::fs::write(&path, text).unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn a_torn_last_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let j = Journal::open(&path).unwrap();
        j.append(&RunEvent::Note {
            message: "one".into(),
        })
        .unwrap();
        drop(j);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\":2,\"ev").unwrap();
        assert_eq!(read(&path).unwrap().len(), 1);
        let j = Journal::open(&path).unwrap();
        j.append(&RunEvent::Note {
            message: "two".into(),
        })
        .unwrap();
        assert_eq!(read(&path).unwrap().len(), 2);
    }

    #[test]
    fn concurrent_appends_share_syncs_and_each_returns_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let j = std::sync::Arc::new(Journal::open(&path).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let j = j.clone();
                std::thread::spawn(move || {
                    (0..100)
                        .map(|i| {
                            let seq = j
                                .append(&RunEvent::Note {
                                    message: format!("{t}/{i}"),
                                })
                                .unwrap();
                            // Never back before its own line is covered by a finished sync.
                            assert!(
                                j.durability().0 >= seq,
                                "seq {seq} returned before its sync"
                            );
                            seq
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        let mut seqs: Vec<u64> = threads
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=800).collect::<Vec<u64>>());
        let (upto, syncs) = j.durability();
        assert_eq!(upto, 800);
        assert!((1..=800).contains(&syncs), "{syncs} syncs");
        // The chain is whole and in seq order.
        let entries = read(&path).unwrap();
        assert_eq!(entries.len(), 800);
        assert!(entries.iter().zip(1..).all(|(e, n)| e.seq == n));
    }
}
