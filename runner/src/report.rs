//! Stage 6: `irr report RUN_ID`, the post-incident review of one run.
//!
//! A report is a consumer of what a run left behind, like the terminal view is a consumer of
//! its events: `STATE_DIR/runs/RUN_ID/run.json` (the [`RunRecord`]), the journal
//! (`journal.jsonl`, every [`RunEvent`] in order) and the run's sealed evidence. It changes
//! nothing. [`build`] assembles one [`Report`]; [`Report::render`] writes it as JSON (stable
//! field names), Markdown, or one self-contained HTML file (inline CSS, no script, no external
//! resource, readable offline).
//!
//! Everything in a journal may come from a compromised account (tag values, console output,
//! error messages), so every value is escaped for the format it is written in, and the HTML
//! carries a Content-Security-Policy that forbids scripts even if escaping were ever missed.
//!
//! Integrity is checked, never assumed:
//! - the journal's hash chain (the same rule as [`journal::read`]), reading on past a break so
//!   the rest can still be reviewed;
//! - the sealed evidence, re-hashed by [`irr_forensics::verify`] (local or S3): every item,
//!   `SHA256SUMS`, the case's manifest chain;
//! - the local journal against its sealed copy (`journal.jsonl` in the manifest must be the
//!   hash of a prefix of the local journal), and every `evidence_captured` hash against the
//!   manifest.
//!
//! Any integrity problem is a *critical* finding: the report still renders, shows it first,
//! and `irr report` exits 3 (`EVIDENCE_MISMATCH`). Calls that started but never finished,
//! failed calls and failed steps are *warnings*: facts of the run, not of its record.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use irr_forensics::{EvidenceLocation, ItemStatus, Manifest, S3Settings, Store, VerifyReport};

use crate::aws::AwsOptions;
use crate::events::{EvidenceSummary, RunEvent, StepSummary};
use crate::executor::{self, RunRecord};
use crate::exit_codes::{self, Exit};
use crate::journal;

/// The `format` field of a JSON report.
pub const REPORT_FORMAT: &str = "irr-report/1";

/// `manifest.json` and `SHA256SUMS` are small; refuse anything absurd.
const MANIFEST_LIMIT: u64 = 64 * 1024 * 1024;

/// How to write a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Markdown, tables for a ticket or a wiki.
    Md,
    /// One self-contained HTML file with a visual timeline.
    Html,
    /// JSON, for programs.
    Json,
}

/// Why no report could be made at all (problems *in* the run are findings, not errors).
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// No such run in the state directory.
    #[error("no run {run_id} in {runs}: {reason}")]
    UnknownRun {
        /// The run id asked for.
        run_id: String,
        /// `STATE_DIR/runs`.
        runs: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// The run's `run.json` exists but cannot be read.
    #[error("run {run_id}: cannot read {path}: {reason}")]
    Unreadable {
        /// The run id.
        run_id: String,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Everything known about one run, for review.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Always [`REPORT_FORMAT`].
    pub format: String,
    /// When this report was made (RFC 3339).
    pub generated_at: String,
    /// `irr X.Y.Z`.
    pub generator: String,
    /// `true` when the journal's chain holds and the evidence verified clean (no critical
    /// finding); `irr report` exits 3 otherwise.
    pub integrity_ok: bool,
    /// The run itself.
    pub run: RunOverview,
    /// What needs attention, critical first.
    pub findings: Vec<Finding>,
    /// The journal's integrity.
    pub journal: JournalReport,
    /// Every journal entry, in order.
    pub timeline: Vec<TimelineEntry>,
    /// Every step, in the order they first appear in the journal.
    pub steps: Vec<StepReport>,
    /// Every mutating AWS call, in the order they were started.
    pub calls: Vec<CallReport>,
    /// The sealed evidence and its verification.
    pub evidence: EvidenceReport,
    /// AWS resources made or used (snapshots, groups, roles, stacks).
    pub resources: Vec<ResourceReport>,
    /// Notes the run journaled.
    pub notes: Vec<NoteReport>,
}

/// The run: what ran, where, as whom, and how it ended.
#[derive(Clone, Debug, Serialize)]
pub struct RunOverview {
    /// Run id.
    pub run_id: String,
    /// Case id.
    pub case_id: String,
    /// The playbook.
    pub playbook: PlaybookInfo,
    /// Who ran it (the AWS principal's ARN).
    pub aws_principal: String,
    /// AWS account acted in.
    pub account_id: String,
    /// AWS region.
    pub region: String,
    /// `true` for `--dry-run`: nothing was changed.
    pub dry_run: bool,
    /// `succeeded`, `failed`, `aborted`, or `incomplete` (no `run_finished`: interrupted or
    /// still running).
    pub status: String,
    /// When execution started (the first journal entry; RFC 3339).
    pub started_at: Option<String>,
    /// When the run finished (its last `run_finished`; RFC 3339).
    pub finished_at: Option<String>,
    /// `finished_at - started_at`, resumes and pauses included.
    pub duration_ms: Option<i64>,
    /// How many times the run was resumed (`irr resume`).
    pub resumed: u32,
    /// `--concurrency`.
    pub concurrency: usize,
    /// The resolved inputs, from `run.json`.
    pub inputs: Map<String, Value>,
    /// The evidence location the run was given (`LOCATION`; the run's folder is
    /// `LOCATION/CASE/RUN/`).
    pub evidence_location: String,
}

/// The playbook that ran.
#[derive(Clone, Debug, Serialize)]
pub struct PlaybookInfo {
    /// `metadata.name`, from `run_started`.
    pub name: Option<String>,
    /// `metadata.version`, from `run_started`.
    pub version: Option<String>,
    /// SHA-256 of the playbook file when the run started.
    pub sha256: String,
    /// The playbook file.
    pub path: String,
}

/// How serious a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The record of the run cannot be trusted as it is (journal or evidence integrity):
    /// `irr report` exits 3.
    Critical,
    /// The evidence could not be read (unreachable, no credentials, no permission): nothing
    /// was verified and nothing is known to be altered. `irr report` exits 5.
    Unverifiable,
    /// Something in the run a reviewer must look at (a call that never finished, a failure).
    Warning,
}

/// One thing that needs attention.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// How serious.
    pub severity: Severity,
    /// `journal`, `evidence`, `calls`, `steps` or `run`.
    pub area: String,
    /// What is wrong, for a person.
    pub message: String,
}

/// The journal's integrity.
#[derive(Clone, Debug, Serialize)]
pub struct JournalReport {
    /// The file read.
    pub path: String,
    /// Complete lines read.
    pub entries: usize,
    /// `true` when every line's `prev_sha256` is the hash of the line before.
    pub chain_ok: bool,
    /// Where and how the chain breaks.
    pub chain_problem: Option<String>,
    /// A last line cut short by a crash mid-write (ignored, as `irr resume` does).
    pub torn_last_line: bool,
    /// `true` when the sealed `journal.jsonl` is exactly the first `sealed_copy_lines` lines
    /// of this journal; `None` when there is no sealed copy to compare with.
    pub sealed_copy_ok: Option<bool>,
    /// How many lines of the local journal the sealed copy holds.
    pub sealed_copy_lines: Option<usize>,
}

/// One journal entry.
#[derive(Clone, Debug, Serialize)]
pub struct TimelineEntry {
    /// `seq` of the entry.
    pub seq: u64,
    /// Its time (RFC 3339).
    pub ts: String,
    /// Milliseconds since the first entry.
    pub offset_ms: Option<i64>,
    /// The event name (`call_started`, ...).
    pub event: String,
    /// The step it belongs to, if any.
    pub step: Option<String>,
    /// 1 for the first `irr run`, 2 after the first `irr resume`, ...
    pub session: u32,
    /// What happened, in one line.
    pub summary: String,
}

/// A retry of a step.
#[derive(Clone, Debug, Serialize)]
pub struct RetryReport {
    /// The attempt that failed.
    pub attempt: u32,
    /// Why.
    pub error: String,
    /// Wait before the next attempt.
    pub delay_ms: u64,
}

/// One step.
#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    /// Step id.
    pub id: String,
    /// `succeeded`, `failed`, `skipped`, or `interrupted` (started, never finished).
    pub status: String,
    /// Attempts made (as the last `step_finished` counts them).
    pub attempts: u32,
    /// RFC 3339.
    pub started_at: Option<String>,
    /// RFC 3339.
    pub finished_at: Option<String>,
    /// Start, in milliseconds since the first journal entry.
    pub offset_ms: Option<i64>,
    /// `finished_at - started_at`.
    pub duration_ms: Option<i64>,
    /// Why it failed or was skipped.
    pub error: Option<String>,
    /// Its outputs.
    pub outputs: Value,
    /// Failed attempts that were retried.
    pub retries: Vec<RetryReport>,
    /// Mutating calls it made.
    pub calls: usize,
}

/// How a mutating call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CallStatus {
    /// AWS accepted it.
    Ok,
    /// AWS refused it or it could not be made.
    Failed,
    /// Dry run: AWS said it would have been permitted.
    Permitted,
    /// Started but never finished: the process stopped mid-call; AWS may or may not have
    /// made the change.
    Unfinished,
}

impl CallStatus {
    fn as_str(self) -> &'static str {
        match self {
            CallStatus::Ok => "ok",
            CallStatus::Failed => "failed",
            CallStatus::Permitted => "permitted",
            CallStatus::Unfinished => "unfinished",
        }
    }
}

/// One mutating AWS call, from its `call_started` and `call_finished`.
#[derive(Clone, Debug, Serialize)]
pub struct CallReport {
    /// The session it was made in (call numbers restart when a run is resumed).
    pub session: u32,
    /// The call number in the journal.
    pub call: u64,
    /// `seq` of its `call_started`.
    pub seq: u64,
    /// Step id.
    pub step: String,
    /// e.g. `ec2`.
    pub service: String,
    /// e.g. `CreateSnapshot`.
    pub operation: String,
    /// Parameters as journaled (never secrets).
    pub params: Value,
    /// The parameters in one line.
    pub key_params: String,
    /// How it ended.
    pub status: CallStatus,
    /// AWS request id.
    pub request_id: Option<String>,
    /// AWS error code.
    pub error_code: Option<String>,
    /// AWS error message.
    pub error_message: Option<String>,
    /// Key facts of the result (ids created, previous values).
    pub result: Value,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339.
    pub finished_at: Option<String>,
    /// Start, in milliseconds since the first journal entry.
    pub offset_ms: Option<i64>,
    /// Between `call_started` and `call_finished`.
    pub duration_ms: Option<i64>,
}

/// The state of the run's evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceStatus {
    /// Sealed, and every check passed.
    Verified,
    /// Sealed, and something does not match.
    Mismatch,
    /// Nothing sealed (the run stopped before sealing, or sealing failed).
    NotSealed,
    /// It could not be checked (e.g. S3 unreachable).
    Unverifiable,
}

impl EvidenceStatus {
    fn as_str(self) -> &'static str {
        match self {
            EvidenceStatus::Verified => "verified",
            EvidenceStatus::Mismatch => "mismatch",
            EvidenceStatus::NotSealed => "not sealed",
            EvidenceStatus::Unverifiable => "unverifiable",
        }
    }
}

/// What verification found for one item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemState {
    /// Same hash and size as sealed.
    Ok,
    /// Present, but different.
    Altered,
    /// Listed, not found.
    Missing,
    /// Found, not listed.
    Unlisted,
    /// Not checked (verification could not run).
    Unchecked,
}

impl ItemState {
    fn as_str(self) -> &'static str {
        match self {
            ItemState::Ok => "ok",
            ItemState::Altered => "altered",
            ItemState::Missing => "missing",
            ItemState::Unlisted => "unlisted",
            ItemState::Unchecked => "unchecked",
        }
    }
}

impl From<ItemStatus> for ItemState {
    fn from(s: ItemStatus) -> ItemState {
        match s {
            ItemStatus::Ok => ItemState::Ok,
            ItemStatus::Altered => ItemState::Altered,
            ItemStatus::Missing => ItemState::Missing,
            ItemStatus::Unlisted => ItemState::Unlisted,
        }
    }
}

/// One evidence item, as sealed and as found.
#[derive(Clone, Debug, Serialize)]
pub struct EvidenceItem {
    /// Path in the run's folder (`artifacts/STEP/NAME`, `journal.jsonl`).
    pub path: String,
    /// What verification found.
    pub status: ItemState,
    /// Step that captured it.
    pub step: Option<String>,
    /// The attempt of that step that captured it (attempt N > 1 lives under
    /// `artifacts/STEP/attempt-N/`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// What it came from (`ec2:DescribeInstances`).
    pub source: Option<String>,
    /// Size in the manifest.
    pub size: Option<u64>,
    /// SHA-256 in the manifest (hex).
    pub sha256: Option<String>,
    /// RFC 3339.
    pub captured_at: Option<String>,
    /// S3 version id, for S3 evidence.
    pub s3_version_id: Option<String>,
    /// Size of what was read back.
    pub actual_size: Option<u64>,
    /// SHA-256 of what was read back.
    pub actual_sha256: Option<String>,
    /// Why it is not `ok`.
    pub detail: Option<String>,
}

impl EvidenceItem {
    /// "STEP", or "STEP (attempt N)" for a later attempt's capture.
    fn step_and_attempt(&self) -> String {
        let step = self.step.clone().unwrap_or_default();
        match self.attempt {
            Some(n) if n > 1 => format!("{step} (attempt {n})"),
            _ => step,
        }
    }
}

/// A check with a list of problems (`manifest.json`, `SHA256SUMS`, the case chain).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Check {
    /// `true` when `problems` is empty and the check ran.
    pub ok: bool,
    /// What is wrong.
    pub problems: Vec<String>,
}

impl EvidenceReport {
    /// Steps whose items come from more than one attempt: (step, the first attempt's items,
    /// the number of attempts). The first attempt's captures are the state before any
    /// change the step made; a retry's only show what the first left behind.
    pub fn retried_steps(&self) -> Vec<(&str, Vec<&str>, u32)> {
        let mut by_step: BTreeMap<&str, (Vec<&str>, u32)> = BTreeMap::new();
        for i in &self.items {
            let (Some(step), Some(attempt)) = (i.step.as_deref(), i.attempt) else {
                continue;
            };
            let e = by_step.entry(step).or_default();
            e.1 = e.1.max(attempt);
            if attempt == 1 {
                e.0.push(i.path.as_str());
            }
        }
        by_step
            .into_iter()
            .filter(|(_, (_, n))| *n > 1)
            .map(|(s, (first, n))| (s, first, n))
            .collect()
    }
}

/// The run's evidence.
#[derive(Clone, Debug, Serialize)]
pub struct EvidenceReport {
    /// The run's evidence folder (`LOCATION/CASE/RUN`), local or `s3://`.
    pub location: Option<String>,
    /// The overall state.
    pub status: EvidenceStatus,
    /// SHA-256 of `manifest.json`.
    pub manifest_sha256: Option<String>,
    /// When it was sealed (RFC 3339).
    pub sealed_at: Option<String>,
    /// The tool, host and principal that sealed it.
    pub collector: Option<Value>,
    /// Why sealing failed, as the run journaled it.
    pub seal_error: Option<String>,
    /// Why verification could not run.
    pub verify_error: Option<String>,
    /// Every listed item, then every unlisted one.
    pub items: Vec<EvidenceItem>,
    /// `manifest.json` itself.
    pub manifest: Check,
    /// `SHA256SUMS` against the manifest.
    pub sha256sums: Check,
    /// The case's chain of sealed runs.
    pub chain: Check,
    /// The case's sealed runs, in order.
    pub chain_runs: Vec<String>,
    /// The previous run's manifest hash this run chains to.
    pub previous_manifest_sha256: Option<String>,
    /// For a drill: the original this verified copy was made of (the emulator's
    /// `s3://...`); `location` is then the local copy that was verified.
    pub copy_of: Option<String>,
}

/// An AWS resource the run made or used.
#[derive(Clone, Debug, Serialize)]
pub struct ResourceReport {
    /// `ebs-snapshot`, `security-group`, `iam-role`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Its id.
    pub id: String,
    /// The step that recorded it (when the journal names one).
    pub step: Option<String>,
    /// Further facts (`volume_id`, `state`, ...).
    pub details: Map<String, Value>,
    /// `true` when the sealed manifest lists it; `None` without a manifest.
    pub sealed: Option<bool>,
}

/// A note from the run.
#[derive(Clone, Debug, Serialize)]
pub struct NoteReport {
    /// `seq` of the entry.
    pub seq: u64,
    /// RFC 3339.
    pub ts: String,
    /// Milliseconds since the first entry.
    pub offset_ms: Option<i64>,
    /// The message.
    pub message: String,
}

// ---- the command ------------------------------------------------------------------------

/// `irr report RUN_ID`: builds the report, writes it to `out` or stdout, and returns the exit
/// code: 0, 2 for an unknown run or an unwritable `out`, 3 when an integrity problem was found
/// (the report is still written, the problems also go to stderr), 5 when the evidence could not
/// be read and nothing else is wrong.
pub fn command(
    run_id: &str,
    format: Format,
    out: Option<&Path>,
    state_dir: &Path,
    aws: AwsOptions,
    evidence_owner: Option<String>,
) -> Exit {
    let mut err = std::io::stderr();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(err, "error: cannot start the async runtime: {e}");
            return exit_codes::RUN_FAILED;
        }
    };
    let report = match runtime.block_on(build(state_dir, run_id, &aws, evidence_owner.as_deref())) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return exit_codes::INVALID;
        }
    };
    let text = report.render(format);
    match out {
        Some(path) => {
            if let Err(e) = std::fs::write(path, text.as_bytes()) {
                let _ = writeln!(err, "error: cannot write {}: {e}", path.display());
                return exit_codes::INVALID;
            }
            let _ = writeln!(err, "report written to {}", path.display());
        }
        None => {
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
        }
    }
    if report.integrity_ok {
        return exit_codes::SUCCESS;
    }
    let critical: Vec<&Finding> = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Critical)
        .collect();
    if critical.is_empty() {
        for f in report
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Unverifiable)
        {
            let _ = writeln!(err, "UNVERIFIABLE: {}", f.message);
        }
        return exit_codes::UNVERIFIABLE;
    }
    let _ = writeln!(
        err,
        "INTEGRITY PROBLEMS in run {run_id} ({}):",
        critical.len()
    );
    for f in critical {
        let _ = writeln!(err, "  - {}: {}", f.area, f.message);
    }
    exit_codes::EVIDENCE_MISMATCH
}

/// Builds the report of run `run_id` from `STATE_DIR/runs/RUN_ID/` and its sealed evidence.
/// `aws` is used only for S3 evidence (the run's region unless one is given); every request
/// on the evidence bucket carries the expected owner: `evidence_owner`, else the one the run
/// recorded, else the caller's account.
pub async fn build(
    state_dir: &Path,
    run_id: &str,
    aws: &AwsOptions,
    evidence_owner: Option<&str>,
) -> Result<Report, ReportError> {
    let runs = state_dir.join("runs");
    let unknown = |reason: String| ReportError::UnknownRun {
        run_id: run_id.to_owned(),
        runs: runs.clone(),
        reason,
    };
    let id_ok = !run_id.is_empty()
        && !run_id.starts_with('.')
        && run_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !id_ok {
        return Err(unknown(
            "a run id is letters, digits, '.', '_' and '-' (e.g. r-20260101T120000Z-a1b2c3)"
                .to_owned(),
        ));
    }
    let dir = executor::run_dir(state_dir, run_id);
    let run_json = dir.join("run.json");
    if !run_json.exists() {
        let hint = if runs.is_dir() {
            "there is no such folder with a run.json (`ls STATE_DIR/runs` lists the runs)"
        } else {
            "the state directory holds no runs (give --state-dir where `irr run` kept them)"
        };
        return Err(unknown(hint.to_owned()));
    }
    let record: RunRecord = std::fs::read(&run_json)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .map_err(|reason| ReportError::Unreadable {
            run_id: run_id.to_owned(),
            path: run_json.clone(),
            reason,
        })?;
    let journal_path = dir.join("journal.jsonl");
    let lines = read_journal(&journal_path);
    let mut report = assemble(&record, &journal_path, &lines);
    let location = evidence_run_location(&record, &lines);
    // A drill's evidence lived in its emulator, gone once the drill ended: the drill kept a
    // verified local copy (`irr gameday`), which is what is verified here.
    let copy = read_copy_marker(&dir, &record);
    let location = match &copy {
        Some(c) => Some(c.location.clone()),
        None => location,
    };
    let mut evidence = check_evidence(location.as_deref(), &record, aws, evidence_owner).await;
    evidence.copy_of = copy.map(|c| (c.copy_of, c.manifest_sha256));
    attach_evidence(&mut report, &lines, evidence);
    finish(&mut report);
    Ok(report)
}

// ---- reading the journal --------------------------------------------------------------------

/// One complete journal line.
struct Line {
    value: Value,
    /// The SHA-256 state after this line: the hash of the journal up to and including it.
    prefix_sha256: String,
}

/// The journal as read, leniently: every line that parses, and the chain's verdict.
struct JournalRead {
    lines: Vec<Line>,
    chain_problem: Option<String>,
    torn: bool,
    missing: Option<String>,
}

/// Reads every complete line, checking the chain as [`journal::read`] does but reading on
/// past a break, so a damaged journal can still be reviewed.
fn read_journal(path: &Path) -> JournalRead {
    let mut read = JournalRead {
        lines: Vec::new(),
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
                read.lines.push(Line {
                    value,
                    prefix_sha256: hex::encode(whole.clone().finalize()),
                });
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

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn parse_ts(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

fn millis_between(a: &str, b: &str) -> Option<i64> {
    let (a, b) = (parse_ts(a)?, parse_ts(b)?);
    i64::try_from((b - a).whole_milliseconds()).ok()
}

// ---- assembling ------------------------------------------------------------------------------

#[derive(Default)]
struct StepAcc {
    first_started: Option<String>,
    max_attempt: u32,
    finished: Option<StepSummary>,
    retries: Vec<RetryReport>,
    calls: usize,
}

/// Everything that comes from `run.json` and the journal alone.
fn assemble(record: &RunRecord, journal_path: &Path, read: &JournalRead) -> Report {
    let t0 = read
        .lines
        .first()
        .and_then(|l| str_of(&l.value, "ts"))
        .map(str::to_owned);
    let offset = |ts: &str| t0.as_deref().and_then(|t0| millis_between(t0, ts));

    let mut timeline = Vec::new();
    let mut steps: Vec<(String, StepAcc)> = Vec::new();
    let mut calls: Vec<CallReport> = Vec::new();
    let mut open_calls: HashMap<(u32, u64), usize> = HashMap::new();
    let mut resources: Vec<ResourceReport> = Vec::new();
    let mut notes = Vec::new();
    let mut findings = Vec::new();
    let mut session = 0u32;
    let mut playbook_name = None;
    let mut playbook_version = None;
    let mut status = None;
    let mut finished_at = None;

    fn step_acc<'a>(steps: &'a mut Vec<(String, StepAcc)>, id: &str) -> &'a mut StepAcc {
        let i = match steps.iter().position(|(s, _)| s == id) {
            Some(i) => i,
            None => {
                steps.push((id.to_owned(), StepAcc::default()));
                steps.len() - 1
            }
        };
        &mut steps[i].1
    }

    for line in &read.lines {
        let v = &line.value;
        let seq = v.get("seq").and_then(Value::as_u64).unwrap_or(0);
        let ts = str_of(v, "ts").unwrap_or_default().to_owned();
        let event_name = str_of(v, "event").unwrap_or("?").to_owned();
        let event: Option<RunEvent> = serde_json::from_value(v.clone()).ok();
        let mut step: Option<String> = None;
        let summary = match &event {
            Some(RunEvent::RunStarted {
                playbook,
                version,
                dry_run,
                resumed,
                aws_principal,
                ..
            }) => {
                session += 1;
                if playbook_name.is_none() {
                    playbook_name = Some(playbook.clone());
                    playbook_version = Some(version.clone());
                }
                format!(
                    "{} {playbook} {version}{}{}",
                    if *resumed {
                        "run resumed:"
                    } else {
                        "run started:"
                    },
                    aws_principal
                        .as_deref()
                        .map(|p| format!(" as {p}"))
                        .unwrap_or_default(),
                    if *dry_run { " (dry run)" } else { "" }
                )
            }
            Some(RunEvent::StepStarted {
                step: id,
                attempt,
                item,
            }) => {
                step = Some(id.clone());
                let acc = step_acc(&mut steps, id);
                acc.first_started.get_or_insert_with(|| ts.clone());
                acc.max_attempt = acc.max_attempt.max(*attempt);
                format!(
                    "attempt {attempt} started{}",
                    item.map(|i| format!(" (item {i})")).unwrap_or_default()
                )
            }
            Some(RunEvent::StepRetrying {
                step: id,
                attempt,
                error,
                delay_ms,
            }) => {
                step = Some(id.clone());
                step_acc(&mut steps, id).retries.push(RetryReport {
                    attempt: *attempt,
                    error: error.clone(),
                    delay_ms: *delay_ms,
                });
                format!(
                    "attempt {attempt} failed, retrying in {}: {error}",
                    fmt_ms(*delay_ms as i64)
                )
            }
            Some(RunEvent::CallStarted {
                call,
                step: id,
                service,
                operation,
                params,
            }) => {
                step = Some(id.clone());
                step_acc(&mut steps, id).calls += 1;
                let key = key_params(params);
                open_calls.insert((session, *call), calls.len());
                calls.push(CallReport {
                    session,
                    call: *call,
                    seq,
                    step: id.clone(),
                    service: service.clone(),
                    operation: operation.clone(),
                    params: params.clone(),
                    key_params: key.clone(),
                    status: CallStatus::Unfinished,
                    request_id: None,
                    error_code: None,
                    error_message: None,
                    result: Value::Null,
                    started_at: ts.clone(),
                    finished_at: None,
                    offset_ms: offset(&ts),
                    duration_ms: None,
                });
                format!("call {call} {service}:{operation} started: {key}")
            }
            Some(RunEvent::CallFinished { call, outcome }) => {
                match open_calls.remove(&(session, *call)) {
                    Some(i) => {
                        let c = &mut calls[i];
                        step = Some(c.step.clone());
                        c.status = if !outcome.ok {
                            CallStatus::Failed
                        } else if outcome.result.get("dry_run").and_then(Value::as_str)
                            == Some("permitted")
                        {
                            CallStatus::Permitted
                        } else {
                            CallStatus::Ok
                        };
                        c.request_id = outcome.request_id.clone();
                        c.error_code = outcome.error_code.clone();
                        c.error_message = outcome.error_message.clone();
                        c.result = outcome.result.clone();
                        c.duration_ms = millis_between(&c.started_at, &ts);
                        c.finished_at = Some(ts.clone());
                        let mut s = format!(
                            "call {call} {}:{} {}",
                            c.service,
                            c.operation,
                            c.status.as_str()
                        );
                        if let Some(code) = &c.error_code {
                            let _ = write!(s, " {code}");
                        }
                        if let Some(m) = &c.error_message {
                            let _ = write!(s, ": {m}");
                        }
                        if let Some(r) = &c.request_id {
                            let _ = write!(s, " (request id {r})");
                        }
                        s
                    }
                    None => {
                        findings.push(Finding {
                            severity: Severity::Warning,
                            area: "calls".into(),
                            message: format!(
                                "journal entry {seq}: call_finished for call {call}, which has no call_started in this session"
                            ),
                        });
                        format!(
                            "call {call} finished ({}) without a matching call_started",
                            if outcome.ok { "ok" } else { "failed" }
                        )
                    }
                }
            }
            Some(RunEvent::EvidenceCaptured {
                step: id,
                path,
                sha256,
                size,
                source,
            }) => {
                step = Some(id.clone());
                format!(
                    "captured {path} ({}, sha256 {}) from {source}",
                    fmt_bytes(*size),
                    short_hash(sha256)
                )
            }
            Some(RunEvent::ResourceRecorded { step: id, resource }) => {
                step = Some(id.clone()).filter(|s| !s.is_empty());
                match resources
                    .iter_mut()
                    .find(|r| r.kind == resource.kind && r.id == resource.id)
                {
                    Some(r) => r.details = resource.details.clone(),
                    None => resources.push(ResourceReport {
                        kind: resource.kind.clone(),
                        id: resource.id.clone(),
                        step: step.clone(),
                        details: resource.details.clone(),
                        sealed: None,
                    }),
                }
                format!("resource {} {}", resource.kind, resource.id)
            }
            Some(RunEvent::StepFinished(s)) => {
                step = Some(s.id.clone());
                let text = format!(
                    "{} after {} attempt{}{}",
                    s.status.as_str(),
                    s.attempts,
                    if s.attempts == 1 { "" } else { "s" },
                    s.error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                );
                step_acc(&mut steps, &s.id).finished = Some(s.clone());
                text
            }
            Some(RunEvent::Note { message }) => {
                notes.push(NoteReport {
                    seq,
                    ts: ts.clone(),
                    offset_ms: offset(&ts),
                    message: message.clone(),
                });
                message.clone()
            }
            Some(RunEvent::GapRecorded(g)) => format!(
                "WARNING gap: step {}: {} was not captured: {}",
                g.step, g.what, g.error
            ),
            Some(RunEvent::EvidenceSealed(e)) => match &e.error {
                Some(err) => format!("sealing the evidence FAILED at {}: {err}", e.location),
                None => format!(
                    "evidence sealed at {}: {} items, manifest sha256 {}",
                    e.location,
                    e.items,
                    e.manifest_sha256.as_deref().unwrap_or("?")
                ),
            },
            Some(RunEvent::RunFinished {
                status: s,
                steps: summaries,
                ..
            }) => {
                let st = serde_json::to_value(s)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                // A step the journal never mentioned (skipped before it could start) still
                // has its word in the summary.
                for s in summaries {
                    let acc = step_acc(&mut steps, &s.id);
                    if acc.finished.is_none() {
                        acc.finished = Some(s.clone());
                    }
                }
                status = Some(st.clone());
                finished_at = Some(ts.clone());
                format!("run finished: {st}")
            }
            None => {
                let mut rest = v.clone();
                if let Value::Object(m) = &mut rest {
                    for k in ["seq", "ts", "prev_sha256", "event"] {
                        m.remove(k);
                    }
                }
                format!("{event_name} {}", compact(&rest))
            }
        };
        timeline.push(TimelineEntry {
            seq,
            ts: ts.clone(),
            offset_ms: offset(&ts),
            event: event_name,
            step,
            session,
            summary,
        });
    }

    let steps: Vec<StepReport> = steps
        .into_iter()
        .map(|(id, acc)| {
            let (status, attempts, started_at, finished_at, error, outputs) = match acc.finished {
                Some(s) => (
                    s.status.as_str().to_owned(),
                    s.attempts,
                    s.started_at.or(acc.first_started),
                    s.finished_at,
                    s.error,
                    s.outputs,
                ),
                None => (
                    "interrupted".to_owned(),
                    acc.max_attempt,
                    acc.first_started,
                    None,
                    None,
                    Value::Null,
                ),
            };
            let duration_ms = match (&started_at, &finished_at) {
                (Some(a), Some(b)) => millis_between(a, b),
                _ => None,
            };
            StepReport {
                offset_ms: started_at.as_deref().and_then(offset),
                id,
                status,
                attempts,
                started_at,
                finished_at,
                duration_ms,
                error,
                outputs,
                retries: acc.retries,
                calls: acc.calls,
            }
        })
        .collect();

    let started_at = t0.clone().or_else(|| Some(record.started_at.clone()));
    let duration_ms = match (&started_at, &finished_at) {
        (Some(a), Some(b)) => millis_between(a, b),
        _ => None,
    };
    let run = RunOverview {
        run_id: record.run_id.clone(),
        case_id: record.case_id.clone(),
        playbook: PlaybookInfo {
            name: playbook_name,
            version: playbook_version,
            sha256: record.playbook_sha256.clone(),
            path: record.playbook_path.display().to_string(),
        },
        aws_principal: record.aws_principal.clone(),
        account_id: record.account_id.clone(),
        region: record.region.clone(),
        dry_run: record.dry_run,
        status: status.unwrap_or_else(|| "incomplete".to_owned()),
        started_at,
        finished_at,
        duration_ms,
        resumed: session.saturating_sub(1),
        concurrency: record.concurrency,
        // Secret inputs are not in run.json: shown as given, never as a value.
        inputs: {
            let mut i = record.inputs.clone();
            for name in &record.secret_inputs {
                i.insert(name.clone(), Value::from(crate::secrets::MASK));
            }
            i
        },
        evidence_location: record.evidence_location.clone(),
    };
    Report {
        format: REPORT_FORMAT.to_owned(),
        generated_at: irr_forensics::clock::now_rfc3339(),
        generator: format!("irr {}", env!("CARGO_PKG_VERSION")),
        integrity_ok: true,
        run,
        findings,
        journal: JournalReport {
            path: journal_path.display().to_string(),
            entries: read.lines.len(),
            chain_ok: read.chain_problem.is_none() && read.missing.is_none(),
            chain_problem: read.chain_problem.clone().or_else(|| read.missing.clone()),
            torn_last_line: read.torn,
            sealed_copy_ok: None,
            sealed_copy_lines: None,
        },
        timeline,
        steps,
        calls,
        evidence: EvidenceReport {
            location: None,
            status: EvidenceStatus::NotSealed,
            manifest_sha256: None,
            sealed_at: None,
            collector: None,
            seal_error: None,
            verify_error: None,
            items: Vec::new(),
            manifest: Check::default(),
            sha256sums: Check::default(),
            chain: Check::default(),
            chain_runs: Vec::new(),
            previous_manifest_sha256: None,
            copy_of: None,
        },
        resources,
        notes,
    }
}

// ---- evidence ------------------------------------------------------------------------------

/// The run's evidence folder: where the last `evidence_sealed` says, else where `run.json`
/// says the run would have sealed it.
fn evidence_run_location(record: &RunRecord, read: &JournalRead) -> Option<String> {
    let sealed = read
        .lines
        .iter()
        .rev()
        .find(|l| str_of(&l.value, "event") == Some("evidence_sealed"))
        .and_then(|l| str_of(&l.value, "location"))
        .filter(|l| !l.is_empty())
        .map(str::to_owned);
    sealed.or_else(|| {
        EvidenceLocation::parse(&record.evidence_location)
            .ok()
            .map(|l| l.join(&record.case_id).join(&record.run_id).to_string())
    })
}

/// A drill's local evidence copy, from `STATE_DIR/runs/RUN_ID/evidence-copy.json`.
struct CopyMarker {
    /// `STATE_DIR/runs/RUN_ID/evidence-copy/CASE/RUN` (derived, never read from the marker).
    location: String,
    /// The original (`s3://...` in the drill's emulator).
    copy_of: String,
    /// The manifest hash the copy was made of.
    manifest_sha256: Option<String>,
}

fn read_copy_marker(dir: &Path, record: &RunRecord) -> Option<CopyMarker> {
    let path = dir.join(crate::gameday::COPY_MARKER);
    let meta = std::fs::symlink_metadata(&path).ok()?;
    if !meta.is_file() || meta.len() > 64 * 1024 {
        return None;
    }
    let v: Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    let root = dir.join(crate::gameday::COPY_DIR);
    let location = root
        .join(&record.case_id)
        .join(&record.run_id)
        .display()
        .to_string();
    Some(CopyMarker {
        location,
        copy_of: str_of(&v, "copy_of").unwrap_or("(unknown)").to_owned(),
        manifest_sha256: str_of(&v, "manifest_sha256").map(str::to_owned),
    })
}

/// What the evidence store said.
struct EvidenceFound {
    /// The error says the evidence is not as sealed (not merely unreadable).
    not_as_sealed: bool,
    /// For a drill's copy: the original and the manifest hash the copy was made of.
    copy_of: Option<(String, Option<String>)>,
    location: Option<String>,
    verify: Result<VerifyReport, String>,
    /// `true` when the store holds nothing for the run.
    nothing_stored: bool,
    manifest: Option<Manifest>,
}

async fn check_evidence(
    location: Option<&str>,
    record: &RunRecord,
    aws: &AwsOptions,
    evidence_owner: Option<&str>,
) -> EvidenceFound {
    let mut found = EvidenceFound {
        not_as_sealed: false,
        copy_of: None,
        location: location.map(str::to_owned),
        verify: Err("no evidence location".to_owned()),
        nothing_stored: false,
        manifest: None,
    };
    let Some(location) = location else {
        return found;
    };
    let loc = match EvidenceLocation::parse(location) {
        Ok(l) => l,
        Err(e) => {
            found.verify = Err(e.to_string());
            return found;
        }
    };
    let client = if matches!(loc, EvidenceLocation::S3 { .. }) {
        let mut opts = aws.clone();
        if opts.region.is_none() && !record.region.is_empty() {
            opts.region = Some(record.region.clone());
        }
        match crate::aws::connect(&opts).await {
            Ok(a) => Some(a),
            Err(e) => {
                found.verify = Err(format!("cannot reach S3: {e}"));
                return found;
            }
        }
    } else {
        None
    };
    let owner = match (&client, evidence_owner, record.evidence_owner.as_deref()) {
        (None, _, _) => None,
        (Some(_), Some(o), _) | (Some(_), None, Some(o)) => Some(o.to_owned()),
        (Some(a), None, None) => match a.identity().await {
            Ok(id) => Some(id.account_id),
            Err(e) => {
                found.verify = Err(format!(
                    "cannot tell which account must own the evidence bucket: {e}"
                ));
                return found;
            }
        },
    };
    let client = client.map(|a| a.clients.s3);
    found.verify =
        match irr_forensics::verify_with_owner(&loc, client.as_ref(), owner.as_deref()).await {
            Ok(r) => Ok(r),
            Err(irr_forensics::Error::NotARun { reason, .. }) => {
                found.nothing_stored = true;
                Err(reason)
            }
            Err(e) => {
                // Only "could not read" is unverifiable; anything else (an oversized manifest,
                // a bad name) says the evidence is not what irr sealed.
                found.not_as_sealed = !e.is_unreadable();
                Err(e.to_string())
            }
        };
    if let Some((root, case, run)) = loc.split_run() {
        let settings = S3Settings {
            expected_owner: owner,
            ..S3Settings::default()
        };
        if let Ok(store) = Store::open(&root, client, settings) {
            let key = format!("{case}/{run}/{}", irr_forensics::MANIFEST_NAME);
            if let Ok(Some(bytes)) = store.read(&key, None, MANIFEST_LIMIT).await {
                found.manifest = Manifest::from_slice(&bytes).ok();
            }
        }
    }
    found
}

fn problems(list: &[String]) -> Check {
    Check {
        ok: list.is_empty(),
        problems: list.to_vec(),
    }
}

fn attach_evidence(report: &mut Report, read: &JournalRead, found: EvidenceFound) {
    let sealed_event: Option<EvidenceSummary> = read
        .lines
        .iter()
        .rev()
        .find(|l| str_of(&l.value, "event") == Some("evidence_sealed"))
        .and_then(|l| serde_json::from_value(l.value.clone()).ok());
    let ev = &mut report.evidence;
    ev.location = found.location.clone();
    ev.seal_error = sealed_event.as_ref().and_then(|s| s.error.clone());
    ev.copy_of = found.copy_of.as_ref().map(|(o, _)| o.clone());
    if let Some((original, _)) = &found.copy_of {
        // The copy must be of the manifest the run sealed (the journal's evidence_sealed).
        let sealed = sealed_event
            .as_ref()
            .and_then(|s| s.manifest_sha256.clone());
        let copied = match &found.verify {
            Ok(v) => v.manifest_sha256.map(|h| h.to_hex()),
            Err(_) => None,
        };
        if let (Some(sealed), Some(copied)) = (&sealed, &copied) {
            if sealed != copied {
                report.findings.push(Finding {
                    severity: Severity::Critical,
                    area: "evidence".into(),
                    message: format!(
                        "the local copy of {original} has manifest sha256 {copied}, but the run sealed {sealed}: the copy was replaced"
                    ),
                });
            }
        }
    }
    let ev = &mut report.evidence;
    let manifest = found.manifest;
    let by_path: HashMap<&str, &irr_forensics::ManifestItem> = manifest
        .as_ref()
        .map(|m| m.items.iter().map(|i| (i.path.as_str(), i)).collect())
        .unwrap_or_default();
    let item_from = |path: &str, status: ItemState| {
        let m = by_path.get(path);
        EvidenceItem {
            path: path.to_owned(),
            status,
            step: m.and_then(|m| m.step.clone()),
            attempt: m.and_then(|m| m.attempt),
            source: m.and_then(|m| m.source.clone()),
            size: m.map(|m| m.size),
            sha256: m.map(|m| m.sha256.to_hex()),
            captured_at: m.map(|m| m.captured_at.to_string()),
            s3_version_id: m
                .and_then(|m| m.s3.as_ref())
                .and_then(|s| s.version_id.clone()),
            actual_size: None,
            actual_sha256: None,
            detail: None,
        }
    };
    match &found.verify {
        Ok(v) => {
            ev.status = if v.is_ok() {
                EvidenceStatus::Verified
            } else {
                EvidenceStatus::Mismatch
            };
            ev.manifest_sha256 = v.manifest_sha256.map(|h| h.to_hex());
            ev.items = v
                .items
                .iter()
                .map(|c| {
                    let mut item = item_from(&c.path, c.status.into());
                    if item.sha256.is_none() {
                        item.sha256 = c.expected_sha256.map(|h| h.to_hex());
                        item.size = c.expected_size;
                    }
                    if item.s3_version_id.is_none() {
                        item.s3_version_id = c.version_id.clone();
                    }
                    item.actual_sha256 = c.actual_sha256.map(|h| h.to_hex());
                    item.actual_size = c.actual_size;
                    item.detail = c.detail.clone();
                    item
                })
                .collect();
            ev.manifest = problems(&v.manifest.problems);
            ev.sha256sums = problems(&v.sha256sums.problems);
            ev.chain = problems(&v.chain.problems);
            ev.chain_runs = v
                .chain
                .runs
                .iter()
                .map(|r| {
                    if r.removed {
                        format!("{} (removed)", r.run_id)
                    } else {
                        r.run_id.clone()
                    }
                })
                .collect();
        }
        Err(e) => {
            ev.status = if found.nothing_stored || found.location.is_none() {
                EvidenceStatus::NotSealed
            } else {
                EvidenceStatus::Unverifiable
            };
            ev.verify_error = Some(e.clone());
            if found.not_as_sealed {
                ev.status = EvidenceStatus::Mismatch;
                report.findings.push(Finding {
                    severity: Severity::Critical,
                    area: "evidence".into(),
                    message: format!("the evidence is not as sealed: {e}"),
                });
            }
            let ev = &mut report.evidence;
            ev.manifest_sha256 = sealed_event
                .as_ref()
                .and_then(|s| s.manifest_sha256.clone());
            if let Some(m) = &manifest {
                ev.items = m
                    .items
                    .iter()
                    .map(|i| item_from(&i.path, ItemState::Unchecked))
                    .collect();
            }
        }
    }
    if let Some(m) = &manifest {
        for g in &m.gaps {
            report.findings.push(Finding {
                severity: Severity::Warning,
                area: "evidence".into(),
                message: format!(
                    "gap: step {}: {} was not captured: {}",
                    g.step, g.what, g.error
                ),
            });
        }
        let ev = &mut report.evidence;
        ev.sealed_at = Some(m.sealed_at.to_string());
        ev.collector = serde_json::to_value(&m.collector).ok();
        ev.previous_manifest_sha256 = m.previous_manifest_sha256.map(|h| h.to_hex());
        for r in &mut report.resources {
            r.sealed = Some(
                m.aws_resources
                    .iter()
                    .any(|a| a.kind == r.kind && a.id == r.id),
            );
        }
        for a in &m.aws_resources {
            if !report
                .resources
                .iter()
                .any(|r| r.kind == a.kind && r.id == a.id)
            {
                report.resources.push(ResourceReport {
                    kind: a.kind.clone(),
                    id: a.id.clone(),
                    step: None,
                    details: a.details.clone().into_iter().collect(),
                    sealed: Some(true),
                });
            }
        }
        // The sealed journal is the local one as it was just before `evidence_sealed`.
        if let Some(j) = m.items.iter().find(|i| i.path == "journal.jsonl") {
            let want = j.sha256.to_hex();
            let n = read.lines.iter().position(|l| l.prefix_sha256 == want);
            report.journal.sealed_copy_ok = Some(n.is_some());
            report.journal.sealed_copy_lines = n.map(|i| i + 1);
            if n.is_none() {
                report.findings.push(Finding {
                    severity: Severity::Critical,
                    area: "journal".into(),
                    message: format!(
                        "the local journal is not what was sealed: no prefix of {} hashes to the sealed journal.jsonl ({want}); the local copy was altered after sealing",
                        report.journal.path
                    ),
                });
            }
        }
        // What the journal says was captured must be what was sealed.
        let mut captured: BTreeMap<&str, &str> = BTreeMap::new();
        for l in &read.lines {
            if str_of(&l.value, "event") == Some("evidence_captured") {
                if let (Some(p), Some(h)) = (str_of(&l.value, "path"), str_of(&l.value, "sha256")) {
                    captured.insert(p, h);
                }
            }
        }
        for (path, hash) in captured {
            match by_path.get(path) {
                None => report.findings.push(Finding {
                    severity: Severity::Critical,
                    area: "evidence".into(),
                    message: format!(
                        "{path} was captured (journal) but the manifest does not list it"
                    ),
                }),
                Some(i) if i.sha256.to_hex() != hash => report.findings.push(Finding {
                    severity: Severity::Critical,
                    area: "evidence".into(),
                    message: format!(
                        "{path} was captured with sha256 {hash} (journal) but sealed with {}",
                        i.sha256.to_hex()
                    ),
                }),
                Some(_) => {}
            }
        }
    }
}

/// Findings from the assembled report, critical first; sets `integrity_ok`.
fn finish(report: &mut Report) {
    let mut f = std::mem::take(&mut report.findings);
    let crit = |area: &str, message: String| Finding {
        severity: Severity::Critical,
        area: area.to_owned(),
        message,
    };
    let warn = |area: &str, message: String| Finding {
        severity: Severity::Warning,
        area: area.to_owned(),
        message,
    };
    if let Some(p) = &report.journal.chain_problem {
        f.push(crit(
            "journal",
            format!("the journal's hash chain is broken ({p}): entries from there on may have been edited, removed or inserted"),
        ));
    }
    let ev = &report.evidence;
    let loc = ev.location.as_deref().unwrap_or("(unknown location)");
    if let Some(e) = &ev.seal_error {
        f.push(crit(
            "evidence",
            format!("sealing failed during the run: {e}"),
        ));
    }
    match ev.status {
        EvidenceStatus::Verified => {}
        EvidenceStatus::NotSealed => f.push(crit(
            "evidence",
            format!("no sealed evidence at {loc}: the run stopped before sealing (resume it with `irr resume {}`)", report.run.run_id),
        )),
        EvidenceStatus::Unverifiable => f.push(Finding {
            severity: Severity::Unverifiable,
            area: "evidence".to_owned(),
            message: format!(
                "the evidence at {loc} could not be read, so it was not verified (nothing is known to be altered): {}",
                ev.verify_error.as_deref().unwrap_or("unknown error")
            ),
        }),
        EvidenceStatus::Mismatch => {
            for i in ev.items.iter().filter(|i| i.status != ItemState::Ok) {
                f.push(crit(
                    "evidence",
                    format!(
                        "{} is {}{}",
                        i.path,
                        i.status.as_str().to_uppercase(),
                        i.detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
                    ),
                ));
            }
            for (name, check) in [
                ("manifest.json", &ev.manifest),
                ("SHA256SUMS", &ev.sha256sums),
                ("case chain", &ev.chain),
            ] {
                for p in &check.problems {
                    f.push(crit("evidence", format!("{name}: {p}")));
                }
            }
        }
    }
    if report.journal.torn_last_line {
        f.push(warn(
            "journal",
            "the journal's last line was cut short (a crash mid-write); it is ignored".to_owned(),
        ));
    }
    if report.run.status == "incomplete" {
        f.push(warn(
            "run",
            "the journal has no run_finished: the run was interrupted (or is still running)"
                .to_owned(),
        ));
    }
    for c in &report.calls {
        match c.status {
            CallStatus::Unfinished => f.push(warn(
                "calls",
                format!(
                    "call {} {}:{} of step {} started at {} and never finished: the process stopped mid-call, so AWS may or may not have made this change; check the resource",
                    c.call, c.service, c.operation, c.step, c.started_at
                ),
            )),
            CallStatus::Failed => f.push(warn(
                "calls",
                format!(
                    "call {} {}:{} of step {} failed: {}{}",
                    c.call,
                    c.service,
                    c.operation,
                    c.step,
                    c.error_code.as_deref().unwrap_or("error"),
                    c.error_message.as_deref().map(|m| format!(" {m}")).unwrap_or_default()
                ),
            )),
            _ => {}
        }
    }
    for s in &report.steps {
        if s.status == "failed" || s.status == "interrupted" {
            f.push(warn(
                "steps",
                format!(
                    "step {} {}{}",
                    s.id,
                    s.status,
                    s.error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ),
            ));
        }
    }
    f.sort_by_key(|x| x.severity);
    report.integrity_ok = !f
        .iter()
        .any(|x| matches!(x.severity, Severity::Critical | Severity::Unverifiable));
    report.findings = f;
}

// ---- small formatting helpers --------------------------------------------------------------------

fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// A value in one line: strings bare, lists of scalars comma-separated, the rest as JSON.
fn short_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) if a.iter().all(|x| !x.is_object() && !x.is_array()) => {
            a.iter().map(short_value).collect::<Vec<_>>().join(",")
        }
        other => compact(other),
    }
}

/// Call parameters in one line: `key=value, ...`.
fn key_params(v: &Value) -> String {
    match v {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", short_value(v)))
            .collect::<Vec<_>>()
            .join(", "),
        Value::Null => String::new(),
        other => short_value(other),
    }
}

fn short_hash(h: &str) -> String {
    h.chars().take(12).collect()
}

/// `850 ms`, `1.24 s`, `3 m 05 s`, `2 h 03 m`.
fn fmt_ms(ms: i64) -> String {
    let neg = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    if ms < 1000 {
        format!("{neg}{ms} ms")
    } else if ms < 60_000 {
        format!("{neg}{:.2} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{neg}{} m {:02} s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{neg}{} h {:02} m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

fn fmt_offset(ms: Option<i64>) -> String {
    match ms {
        Some(ms) => format!("+{}", fmt_ms(ms)),
        None => String::new(),
    }
}

fn fmt_opt_ms(ms: Option<i64>) -> String {
    ms.map(fmt_ms).unwrap_or_default()
}

fn fmt_bytes(n: u64) -> String {
    if n < 1024 {
        format!("{n} B")
    } else if n < 1024 * 1024 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else if n < 1024 * 1024 * 1024 {
        format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
    } else {
        format!("{:.2} GiB", n as f64 / (1024.0 * 1024.0 * 1024.0))
    }
}

// ---- rendering -------------------------------------------------------------------------------

impl Report {
    /// The report in `format`.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Json => self.to_json(),
            Format::Md => self.to_markdown(),
            Format::Html => self.to_html(),
        }
    }

    /// Pretty-printed JSON (field names are stable; `format` is [`REPORT_FORMAT`]).
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    fn mutating_counts(&self) -> (usize, usize, usize) {
        let n = |st: CallStatus| self.calls.iter().filter(|c| c.status == st).count();
        (
            n(CallStatus::Ok) + n(CallStatus::Permitted),
            n(CallStatus::Failed),
            n(CallStatus::Unfinished),
        )
    }

    fn playbook_label(&self) -> String {
        let p = &self.run.playbook;
        match (&p.name, &p.version) {
            (Some(n), Some(v)) => format!("{n} {v}"),
            (Some(n), None) => n.clone(),
            _ => p.path.clone(),
        }
    }

    fn evidence_verdict(&self) -> String {
        let ev = &self.evidence;
        let listed = ev
            .items
            .iter()
            .filter(|i| i.status != ItemState::Unlisted)
            .count();
        let ok = ev
            .items
            .iter()
            .filter(|i| i.status == ItemState::Ok)
            .count();
        match ev.status {
            EvidenceStatus::Verified => format!("verified: {ok} of {listed} items ok"),
            EvidenceStatus::Mismatch => format!("MISMATCH: {ok} of {listed} items ok"),
            other => other.as_str().to_uppercase(),
        }
    }

    /// Markdown: a summary, then tables. Every value from the run is escaped.
    pub fn to_markdown(&self) -> String {
        let r = &self.run;
        let mut o = String::new();
        let _ = writeln!(o, "# irr run report: {}\n", md(&r.run_id));
        if self.integrity_ok {
            let _ = writeln!(
                o,
                "> **Integrity: OK.** Journal hash chain intact; evidence {}.\n",
                md(&self.evidence_verdict())
            );
        } else {
            let n = self
                .findings
                .iter()
                .filter(|f| f.severity == Severity::Critical)
                .count();
            if n == 0 {
                let _ = writeln!(
                    o,
                    "> **Evidence UNVERIFIABLE.** It could not be read, so it was not verified; nothing is known to be altered. See Findings.\n"
                );
            } else {
                let _ = writeln!(
                    o,
                    "> **INTEGRITY PROBLEMS ({n}).** The record of this run does not verify; see Findings.\n"
                );
            }
        }
        if let (Some(orig), Some(loc)) = (&self.evidence.copy_of, &self.evidence.location) {
            let _ = writeln!(
                o,
                "> Drill evidence: verified the local **copy** at {} of {} (the drill's emulator is gone).\n",
                code(loc),
                code(orig)
            );
        }
        let (ok, failed, unfinished) = self.mutating_counts();
        let rows: Vec<(&str, String)> = vec![
            ("Case", md(&r.case_id)),
            ("Run", code(&r.run_id)),
            ("Status", format!("**{}**", md(&r.status))),
            ("Playbook", md(&self.playbook_label())),
            ("Playbook SHA-256", code(&r.playbook.sha256)),
            ("Playbook file", code(&r.playbook.path)),
            ("Run by (AWS principal)", md(&r.aws_principal)),
            (
                "Account / region",
                format!("{} / {}", md(&r.account_id), md(&r.region)),
            ),
            (
                "Mode",
                if r.dry_run {
                    "dry run (nothing changed)".into()
                } else {
                    "live".into()
                },
            ),
            ("Started", md(r.started_at.as_deref().unwrap_or(""))),
            (
                "Finished",
                md(r.finished_at.as_deref().unwrap_or("not finished")),
            ),
            ("Duration", fmt_opt_ms(r.duration_ms)),
            ("Resumed", r.resumed.to_string()),
            (
                "Mutating AWS calls",
                format!(
                    "{} ({ok} ok, {failed} failed, {unfinished} unfinished)",
                    self.calls.len()
                ),
            ),
            ("Evidence", md(&self.evidence_verdict())),
            (
                "Report generated",
                format!("{} by {}", md(&self.generated_at), md(&self.generator)),
            ),
        ];
        o.push_str("| | |\n| --- | --- |\n");
        for (k, v) in rows {
            let _ = writeln!(o, "| {k} | {v} |");
        }

        let _ = writeln!(o, "\n## Findings\n");
        if self.findings.is_empty() {
            o.push_str("None.\n");
        }
        for f in &self.findings {
            let sev = match f.severity {
                Severity::Critical => "**CRITICAL**",
                Severity::Unverifiable => "**UNVERIFIABLE**",
                Severity::Warning => "warning",
            };
            let _ = writeln!(o, "- {sev} ({}): {}", md(&f.area), md(&f.message));
        }

        let _ = writeln!(o, "\n## Steps\n");
        o.push_str("| Step | Status | Attempts | Start | Finished at | Duration | Calls | Error | Outputs |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
        for s in &self.steps {
            let mut err = s.error.clone().unwrap_or_default();
            for rt in &s.retries {
                let _ = write!(
                    err,
                    "{}attempt {} failed: {}",
                    if err.is_empty() { "" } else { "; " },
                    rt.attempt,
                    rt.error
                );
            }
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                md(&s.id),
                md(&s.status),
                s.attempts,
                fmt_offset(s.offset_ms),
                md(s.finished_at.as_deref().unwrap_or("")),
                fmt_opt_ms(s.duration_ms),
                s.calls,
                md(&err),
                if s.outputs.is_null() {
                    String::new()
                } else {
                    code(&compact(&s.outputs))
                }
            );
        }

        let _ = writeln!(o, "\n## Mutating AWS calls\n");
        if self.calls.is_empty() {
            o.push_str("None.\n");
        } else {
            let sessions = self.run.resumed > 0;
            o.push_str("| # | Step | Call | Key parameters | Result | Error | Request id | Start | Duration |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
            for c in &self.calls {
                let status = match c.status {
                    CallStatus::Unfinished => "**UNFINISHED**".to_owned(),
                    CallStatus::Failed => "**failed**".to_owned(),
                    other => other.as_str().to_owned(),
                };
                let err = match (&c.error_code, &c.error_message) {
                    (Some(code), Some(m)) => format!("{code}: {m}"),
                    (Some(code), None) => code.clone(),
                    (None, Some(m)) => m.clone(),
                    (None, None) => String::new(),
                };
                let _ = writeln!(
                    o,
                    "| {}{} | {} | {}:{} | {} | {status} | {} | {} | {} | {} |",
                    c.call,
                    if sessions {
                        format!(" (session {})", c.session)
                    } else {
                        String::new()
                    },
                    md(&c.step),
                    md(&c.service),
                    md(&c.operation),
                    code(&c.key_params),
                    md(&err),
                    c.request_id.as_deref().map(code).unwrap_or_default(),
                    fmt_offset(c.offset_ms),
                    fmt_opt_ms(c.duration_ms)
                );
            }
        }

        let ev = &self.evidence;
        let _ = writeln!(o, "\n## Evidence\n");
        let check = |c: &Check| {
            if c.ok {
                "ok".to_owned()
            } else {
                format!("**MISMATCH**: {}", md(&c.problems.join("; ")))
            }
        };
        let mut facts: Vec<(&str, String)> = vec![
            ("Status", format!("**{}**", md(&self.evidence_verdict()))),
            (
                "Location",
                code(ev.location.as_deref().unwrap_or("unknown")),
            ),
            (
                "Manifest SHA-256",
                ev.manifest_sha256.as_deref().map(code).unwrap_or_default(),
            ),
            ("Sealed at", md(ev.sealed_at.as_deref().unwrap_or(""))),
        ];
        if ev.status == EvidenceStatus::Verified || ev.status == EvidenceStatus::Mismatch {
            facts.push(("manifest.json", check(&ev.manifest)));
            facts.push(("SHA256SUMS", check(&ev.sha256sums)));
            facts.push((
                "Case chain",
                format!("{} ({})", check(&ev.chain), md(&ev.chain_runs.join(" -> "))),
            ));
            facts.push((
                "Previous manifest",
                ev.previous_manifest_sha256
                    .as_deref()
                    .map(code)
                    .unwrap_or_else(|| "none (first run of the case)".into()),
            ));
        }
        let j = &self.journal;
        facts.push((
            "Journal hash chain",
            if j.chain_ok {
                format!("intact ({} entries)", j.entries)
            } else {
                format!(
                    "**BROKEN**: {}",
                    md(j.chain_problem.as_deref().unwrap_or(""))
                )
            },
        ));
        facts.push((
            "Journal vs sealed copy",
            match (j.sealed_copy_ok, j.sealed_copy_lines) {
                (Some(true), Some(n)) => format!("matches (sealed copy = first {n} lines)"),
                (Some(false), _) => "**DIFFERS**".to_owned(),
                _ => "no sealed copy".to_owned(),
            },
        ));
        if let Some(e) = &ev.seal_error {
            facts.push(("Seal error", format!("**{}**", md(e))));
        }
        if let Some(e) = &ev.verify_error {
            facts.push(("Verification", md(e)));
        }
        if let Some(orig) = &ev.copy_of {
            facts.push((
                "Copy",
                format!("this is the drill's local copy of {}", code(orig)),
            ));
        }
        o.push_str("| | |\n| --- | --- |\n");
        for (k, v) in facts {
            let _ = writeln!(o, "| {k} | {v} |");
        }
        if !ev.items.is_empty() {
            o.push_str("\n| Path | State | Size | SHA-256 | S3 version | Step | Source | Detail |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n");
            for i in &ev.items {
                let state = if i.status == ItemState::Ok {
                    "ok".to_owned()
                } else {
                    format!("**{}**", i.status.as_str().to_uppercase())
                };
                let _ = writeln!(
                    o,
                    "| {} | {state} | {} | {} | {} | {} | {} | {} |",
                    code(&i.path),
                    i.size.map(|n| n.to_string()).unwrap_or_default(),
                    i.sha256.as_deref().map(code).unwrap_or_default(),
                    code(i.s3_version_id.as_deref().unwrap_or("")),
                    md(&i.step_and_attempt()),
                    md(i.source.as_deref().unwrap_or("")),
                    md(i.detail.as_deref().unwrap_or(""))
                );
            }
            for (step, first, attempts) in ev.retried_steps() {
                let _ = writeln!(
                    o,
                    "\nStep {} ran {attempts} attempts: what it saw before its first change is the first attempt's, {}; each later attempt's captures are kept beside it under `attempt-N/`.",
                    code(step),
                    first.iter().map(|p| code(p)).collect::<Vec<_>>().join(", ")
                );
            }
        }

        let _ = writeln!(o, "\n## AWS resources\n");
        if self.resources.is_empty() {
            o.push_str("None.\n");
        } else {
            o.push_str(
                "| Type | Id | Step | Details | In manifest |\n| --- | --- | --- | --- | --- |\n",
            );
            for res in &self.resources {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {} |",
                    md(&res.kind),
                    code(&res.id),
                    md(res.step.as_deref().unwrap_or("")),
                    code(&key_params(&Value::Object(res.details.clone()))),
                    match res.sealed {
                        Some(true) => "yes",
                        Some(false) => "**no**",
                        None => "",
                    }
                );
            }
        }

        let _ = writeln!(o, "\n## Notes\n");
        if self.notes.is_empty() {
            o.push_str("None.\n");
        }
        for n in &self.notes {
            let _ = writeln!(
                o,
                "- {} (entry {}): {}",
                fmt_offset(n.offset_ms),
                n.seq,
                md(&n.message)
            );
        }

        let _ = writeln!(o, "\n## Timeline\n");
        o.push_str("| Time | Offset | Seq | Event | Step | What |\n| --- | --- | --- | --- | --- | --- |\n");
        for t in &self.timeline {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} |",
                md(&t.ts),
                fmt_offset(t.offset_ms),
                t.seq,
                md(&t.event),
                md(t.step.as_deref().unwrap_or("")),
                md(&t.summary)
            );
        }

        let _ = writeln!(o, "\n## Inputs\n");
        if r.inputs.is_empty() {
            o.push_str("None.\n");
        } else {
            o.push_str("| Input | Value |\n| --- | --- |\n");
            for (k, v) in &r.inputs {
                let _ = writeln!(o, "| {} | {} |", md(k), code(&short_value(v)));
            }
        }
        o
    }
}

/// Escapes text for a Markdown table cell: no formatting, links, HTML or cell breaks can be
/// injected, and a newline cannot end the row.
fn md(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '~' => {
                o.push('\\');
                o.push(c);
            }
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '\r' => {}
            '\n' => o.push_str("<br>"),
            c if c.is_control() => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// A value as an inline code span: shown literally by every renderer (no formatting, link or
/// HTML inside), with `|` escaped for tables (GFM) and newlines flattened.
fn code(s: &str) -> String {
    if s.is_empty() {
        return String::new();
    }
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .replace('|', "\\|");
    let mut longest = 0;
    let mut run = 0;
    for c in flat.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    if longest > 0 || flat.starts_with(' ') || flat.ends_with(' ') {
        format!("{fence} {flat} {fence}")
    } else {
        format!("{fence}{flat}{fence}")
    }
}

// ---- HTML ----------------------------------------------------------------------------------------

/// Escapes text for HTML element content and quoted attribute values.
pub fn html_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

use html_escape as esc;

const CSS: &str = r#"
:root{--bg:#f4f6f9;--card:#fff;--ink:#111827;--ink2:#374151;--muted:#6b7280;--line:#e5e7eb;--line2:#f0f2f5;
--ok:#15803d;--ok-bg:#dcfce7;--bad:#b91c1c;--bad-bg:#fee2e2;--warn:#b45309;--warn-bg:#fef3c7;--skip:#6b7280;--skip-bg:#f3f4f6;
--accent:#4f46e5;--seal:#7c3aed;--mono:ui-monospace,"SFMono-Regular","DejaVu Sans Mono",Menlo,Consolas,monospace}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue","Liberation Sans","DejaVu Sans",Arial,sans-serif}
.wrap{max-width:1320px;margin:0 auto;padding:0 28px}
header.top{background:#0f172a;color:#e2e8f0;padding:26px 0 24px;border-bottom:4px solid var(--accent)}
header.top .brand{font-size:12px;letter-spacing:.12em;text-transform:uppercase;color:#94a3b8;font-weight:600}
header.top h1{margin:6px 0 4px;font-size:26px;font-weight:700;color:#fff;display:flex;align-items:center;gap:14px;flex-wrap:wrap}
header.top .sub{color:#cbd5e1;font-size:13.5px}
header.top .sub b{color:#fff;font-weight:600}
header.top code{font-family:var(--mono);font-size:12.5px;color:#e2e8f0;background:rgba(255,255,255,.08);padding:1px 6px;border-radius:4px}
main{padding:22px 0 40px}
.verdict{display:flex;gap:16px;align-items:flex-start;border-radius:10px;padding:16px 20px;margin-bottom:18px;border:1px solid}
.verdict.ok{background:#f0fdf4;border-color:#bbf7d0}
.verdict.bad{background:#fef2f2;border-color:#fca5a5;box-shadow:0 0 0 3px rgba(220,38,38,.12)}
.verdict .icon{flex:none;width:34px;height:34px;border-radius:50%;display:flex;align-items:center;justify-content:center;color:#fff;font-weight:800;font-size:19px}
.verdict.ok .icon{background:var(--ok)}
.verdict.bad .icon{background:#dc2626}
.verdict h2{margin:0;font-size:16px}
.verdict.ok h2{color:#14532d}
.verdict.bad h2{color:#7f1d1d}
.verdict.warn{background:#fffbeb;border-color:#fcd34d}
.verdict.warn .icon{background:#d97706}
.verdict.warn h2{color:#78350f}
.verdict p{margin:3px 0 0;color:var(--ink2);font-size:13.5px}
.verdict ul{margin:6px 0 0;padding-left:18px;color:#7f1d1d;font-size:13.5px}
.facts{display:grid;grid-template-columns:repeat(4,minmax(0,1fr));gap:12px;margin-bottom:18px}
@media (max-width:900px){.facts{grid-template-columns:repeat(2,minmax(0,1fr))}}
.fact{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:12px 14px;min-width:0}
.fact .k{font-size:11.5px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted);font-weight:600}
.fact .v{font-size:16px;font-weight:600;margin-top:3px;overflow-wrap:anywhere}
.fact .v.small{font-size:13px;font-weight:500}
.fact .d{font-size:12px;color:var(--muted);margin-top:2px;overflow-wrap:anywhere}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:18px 20px;margin-bottom:18px}
.card h2{margin:0 0 12px;font-size:17px;display:flex;align-items:baseline;gap:10px}
.card h2 .count{font-size:12.5px;color:var(--muted);font-weight:500}
.scroll{overflow-x:auto}
table{width:100%;border-collapse:collapse;font-size:13px}
th{text-align:left;font-weight:600;color:var(--ink2);background:#f9fafb;border-bottom:1px solid var(--line);padding:7px 10px;white-space:nowrap;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
td{padding:7px 10px;border-bottom:1px solid var(--line2);vertical-align:top}
tbody tr:last-child td{border-bottom:0}
tr.row-bad td{background:#fef2f2}
tr.row-warn td{background:#fffbeb}
.mono{font-family:var(--mono);font-size:12px}
.wrapall{overflow-wrap:anywhere;word-break:break-word}
.hash{font-family:var(--mono);font-size:11.5px;color:var(--ink2);word-break:break-all}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.nowrap{white-space:nowrap}
.muted{color:var(--muted)}
.badge{display:inline-block;padding:1px 9px;border-radius:999px;font-size:11px;font-weight:700;text-transform:uppercase;letter-spacing:.04em;white-space:nowrap;border:1px solid transparent}
.b-ok{background:var(--ok-bg);color:var(--ok);border-color:#bbf7d0}
.b-bad{background:var(--bad-bg);color:var(--bad);border-color:#fecaca}
.b-warn{background:var(--warn-bg);color:var(--warn);border-color:#fde68a}
.b-skip{background:var(--skip-bg);color:var(--skip);border-color:#e5e7eb}
.b-info{background:#eef2ff;color:#4338ca;border-color:#c7d2fe}
header.top .badge{font-size:12px;padding:3px 12px}
details summary{cursor:pointer;color:var(--accent);font-size:12px;user-select:none}
details pre{margin:6px 0 0;background:#f8fafc;border:1px solid var(--line);border-radius:6px;padding:8px 10px;font-family:var(--mono);font-size:11.5px;white-space:pre-wrap;word-break:break-all;max-height:360px;overflow:auto}
.kv{display:grid;grid-template-columns:200px 1fr;gap:6px 16px;font-size:13px;margin-bottom:14px}
.kv .k{color:var(--muted);font-weight:600}
.kv .v{min-width:0;overflow-wrap:anywhere}
.findings{list-style:none;margin:0;padding:0}
.findings li{display:flex;gap:10px;align-items:baseline;padding:7px 0;border-bottom:1px solid var(--line2);font-size:13.5px}
.findings li:last-child{border-bottom:0}
.findings .area{color:var(--muted);font-size:12px;min-width:64px}
.gantt{position:relative;margin-top:4px}
.g-row{position:relative;z-index:1;display:grid;grid-template-columns:180px 1fr 92px;align-items:center;height:30px}
.g-row.g-axis{height:22px}
.g-row.g-sep{border-top:1px dashed var(--line)}
.g-label{font-size:13px;font-weight:600;padding-right:12px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.g-label.sub{font-weight:500;color:var(--muted)}
.g-track{position:relative;height:100%}
.g-bar{position:absolute;top:7px;height:16px;border-radius:4px;min-width:4px;box-shadow:inset 0 -2px 0 rgba(0,0,0,.12)}
.g-bar.st-succeeded{background:#22c55e}
.g-bar.st-failed{background:#ef4444}
.g-bar.st-interrupted{background:repeating-linear-gradient(45deg,#f59e0b 0 6px,#fbbf24 6px 12px)}
.g-bar.st-seal{background:#8b5cf6}
.g-skip{position:absolute;top:6px;left:0;font-size:11.5px;color:var(--muted);font-style:italic}
.g-call{position:absolute;top:3px;height:24px;width:2px;margin-left:-1px;background:#0f172a;opacity:.7;border-radius:1px}
.g-call.c-failed{background:#b91c1c;opacity:1;width:3px}
.g-call.c-unfinished{background:#d97706;opacity:1;width:3px;top:0;height:30px}
.g-dur{text-align:right;font-variant-numeric:tabular-nums;color:var(--ink2);font-size:12.5px}
.g-overlay{position:absolute;left:180px;right:92px;top:0;bottom:0;z-index:0}
.g-grid{position:absolute;top:22px;bottom:0;width:1px;background:var(--line)}
.g-tick{position:absolute;top:2px;transform:translateX(-50%);font-size:11px;color:var(--muted);white-space:nowrap;font-variant-numeric:tabular-nums}
.g-tick.first{transform:none}
.g-mark{position:absolute;top:22px;bottom:0;border-left:2px dashed #6366f1}
.g-mark span{position:absolute;bottom:2px;left:4px;font-size:10.5px;color:#4338ca;white-space:nowrap;background:rgba(255,255,255,.85);padding:0 3px;border-radius:3px}
.legend{display:flex;flex-wrap:wrap;gap:16px;margin-top:12px;font-size:12px;color:var(--ink2)}
.legend i{display:inline-block;width:14px;height:10px;border-radius:3px;margin-right:6px;vertical-align:-1px}
.legend i.tick{width:2px;height:14px;border-radius:1px;vertical-align:-3px}
footer{color:var(--muted);font-size:12px;text-align:center;padding:8px 0 24px}
@media print{body{background:#fff}.card,.fact{break-inside:avoid}header.top{print-color-adjust:exact;-webkit-print-color-adjust:exact}}
"#;

fn badge(text: &str, class: &str) -> String {
    format!("<span class=\"badge {class}\">{}</span>", esc(text))
}

fn status_class(status: &str) -> &'static str {
    match status {
        "succeeded" | "ok" | "verified" | "permitted" => "b-ok",
        "failed" | "altered" | "missing" | "unlisted" | "mismatch" | "aborted" => "b-bad",
        "interrupted" | "unfinished" | "incomplete" | "unchecked" | "not sealed"
        | "unverifiable" => "b-warn",
        "skipped" => "b-skip",
        _ => "b-info",
    }
}

fn json_details(label: &str, v: &Value) -> String {
    if v.is_null() || v.as_object().is_some_and(Map::is_empty) {
        return String::new();
    }
    format!(
        "<details><summary>{}</summary><pre>{}</pre></details>",
        esc(label),
        esc(&serde_json::to_string_pretty(v).unwrap_or_default())
    )
}

/// A tick spacing of 1, 2 or 5 times a power of ten giving at most about 7 ticks.
fn tick_step(total_ms: i64) -> i64 {
    let raw = (total_ms as f64 / 7.0).max(1.0);
    let pow = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * pow)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * pow);
    (step as i64).max(1)
}

fn tick_label(ms: i64, step: i64) -> String {
    if ms == 0 {
        return "0".to_owned();
    }
    if step >= 60_000 {
        let m = ms / 60_000;
        if step >= 3_600_000 {
            format!("{} h", ms / 3_600_000)
        } else {
            format!("{m} min")
        }
    } else if step >= 1000 {
        format!("{} s", ms / 1000)
    } else {
        let decimals = if step >= 100 {
            1
        } else if step >= 10 {
            2
        } else {
            3
        };
        format!("{:.*} s", decimals, ms as f64 / 1000.0)
    }
}

impl Report {
    /// One self-contained HTML file: inline CSS, no script and no external resource (a
    /// Content-Security-Policy forbids both), every value from the run escaped.
    pub fn to_html(&self) -> String {
        let r = &self.run;
        let mut o = String::with_capacity(64 * 1024);
        let title = format!("irr report · {} · {}", r.case_id, r.run_id);
        let _ = write!(
            o,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'\">\n\
<meta name=\"referrer\" content=\"no-referrer\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<meta name=\"generator\" content=\"{}\">\n<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
            esc(&self.generator),
            esc(&title)
        );
        // Header.
        let _ = write!(
            o,
            "<header class=\"top\"><div class=\"wrap\"><div class=\"brand\">irr · incident response run report</div>\
<h1>Case {} {}</h1><div class=\"sub\">Run <code>{}</code> · playbook <b>{}</b> · {} · {} / {}</div></div></header>\n<main class=\"wrap\">\n",
            esc(&r.case_id),
            badge(&r.status, status_class(&r.status)),
            esc(&r.run_id),
            esc(&self.playbook_label()),
            if r.dry_run { "dry run" } else { "live run" },
            esc(&r.account_id),
            esc(&r.region)
        );
        self.html_verdict(&mut o);
        self.html_facts(&mut o);
        self.html_findings(&mut o);
        self.html_gantt(&mut o);
        self.html_steps(&mut o);
        self.html_calls(&mut o);
        self.html_evidence(&mut o);
        self.html_resources(&mut o);
        self.html_notes(&mut o);
        self.html_events(&mut o);
        self.html_details(&mut o);
        let _ = write!(
            o,
            "<footer>Generated {} by {} from {} and the sealed evidence. This file is self-contained: it loads nothing and runs no script.</footer>\n</main>\n</body>\n</html>\n",
            esc(&self.generated_at),
            esc(&self.generator),
            esc(&self.journal.path)
        );
        o
    }

    fn html_verdict(&self, o: &mut String) {
        let j = &self.journal;
        let ev = &self.evidence;
        let mut parts = vec![if j.chain_ok {
            format!("journal hash chain intact ({} entries)", j.entries)
        } else {
            "journal hash chain BROKEN".to_owned()
        }];
        parts.push(format!("evidence {}", self.evidence_verdict()));
        if matches!(
            ev.status,
            EvidenceStatus::Verified | EvidenceStatus::Mismatch
        ) {
            parts.push(format!(
                "SHA256SUMS {}",
                if ev.sha256sums.ok { "ok" } else { "MISMATCH" }
            ));
            parts.push(format!(
                "case chain {}",
                if ev.chain.ok { "ok" } else { "BROKEN" }
            ));
        }
        if let Some(ok) = j.sealed_copy_ok {
            parts.push(format!(
                "journal {} its sealed copy",
                if ok { "matches" } else { "DIFFERS FROM" }
            ));
        }
        if let Some(orig) = &ev.copy_of {
            parts.push(format!("verified the drill's local copy of {orig}"));
        }
        let line = esc(&parts.join(" · "));
        let crit_n = self
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Critical)
            .count();
        if !self.integrity_ok && crit_n == 0 {
            let _ = write!(
                o,
                "<section class=\"verdict warn\"><div class=\"icon\">?</div><div><h2>Evidence unverifiable — it could not be read; nothing is known to be altered</h2><p>{line}</p><ul>"
            );
            for f in self
                .findings
                .iter()
                .filter(|f| f.severity == Severity::Unverifiable)
            {
                let _ = write!(o, "<li>{}</li>", esc(&f.message));
            }
            o.push_str("</ul></div></section>\n");
        } else if self.integrity_ok {
            let _ = writeln!(
                o,
                "<section class=\"verdict ok\"><div class=\"icon\">&#10003;</div><div><h2>Integrity verified</h2><p>{line}</p></div></section>"
            );
        } else {
            let crit: Vec<&Finding> = self
                .findings
                .iter()
                .filter(|f| f.severity == Severity::Critical)
                .collect();
            let _ = write!(
                o,
                "<section class=\"verdict bad\"><div class=\"icon\">!</div><div><h2>Integrity problems: {} — this record does not verify</h2><p>{line}</p><ul>",
                crit.len()
            );
            for f in crit {
                let _ = write!(o, "<li>{}</li>", esc(&f.message));
            }
            o.push_str("</ul></div></section>\n");
        }
    }

    fn html_facts(&self, o: &mut String) {
        let r = &self.run;
        let (ok, failed, unfinished) = self.mutating_counts();
        let listed = self
            .evidence
            .items
            .iter()
            .filter(|i| i.status != ItemState::Unlisted)
            .count();
        let mut calls_detail = format!("{ok} ok");
        if failed > 0 {
            let _ = write!(calls_detail, " · {failed} failed");
        }
        if unfinished > 0 {
            let _ = write!(calls_detail, " · {unfinished} unfinished");
        }
        let facts: Vec<(&str, String, String, bool)> = vec![
            (
                "Status",
                r.status.clone(),
                if r.resumed > 0 {
                    format!("resumed {} time(s)", r.resumed)
                } else {
                    "single session".to_owned()
                },
                false,
            ),
            (
                "Duration",
                fmt_opt_ms(r.duration_ms),
                r.started_at.clone().unwrap_or_default(),
                false,
            ),
            ("Run by", r.aws_principal.clone(), String::new(), true),
            (
                "Account · Region",
                format!("{} · {}", r.account_id, r.region),
                if r.dry_run {
                    "dry run: nothing changed".to_owned()
                } else {
                    "live: changes made".to_owned()
                },
                false,
            ),
            (
                "Steps",
                self.steps.len().to_string(),
                {
                    let n = |s: &str| self.steps.iter().filter(|x| x.status == s).count();
                    format!(
                        "{} succeeded · {} failed · {} skipped",
                        n("succeeded"),
                        n("failed"),
                        n("skipped")
                    )
                },
                false,
            ),
            (
                "Mutating AWS calls",
                self.calls.len().to_string(),
                calls_detail,
                false,
            ),
            (
                "Evidence items",
                listed.to_string(),
                self.evidence.status.as_str().to_owned(),
                false,
            ),
            (
                "AWS resources",
                self.resources.len().to_string(),
                {
                    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
                    for res in &self.resources {
                        *kinds.entry(res.kind.as_str()).or_default() += 1;
                    }
                    kinds
                        .iter()
                        .map(|(k, n)| format!("{n} {k}"))
                        .collect::<Vec<_>>()
                        .join(" · ")
                },
                false,
            ),
        ];
        o.push_str("<section class=\"facts\">");
        for (k, v, d, small) in facts {
            let v_html = if k == "Status" {
                badge(&v, status_class(&v))
            } else {
                esc(&v)
            };
            let _ = write!(
                o,
                "<div class=\"fact\"><div class=\"k\">{k}</div><div class=\"v{}\">{v_html}</div>{}</div>",
                if small { " small" } else { "" },
                if d.is_empty() { String::new() } else { format!("<div class=\"d\">{}</div>", esc(&d)) }
            );
        }
        o.push_str("</section>\n");
    }

    fn html_findings(&self, o: &mut String) {
        if self.findings.is_empty() {
            return;
        }
        let _ = write!(
            o,
            "<section class=\"card\" id=\"findings\"><h2>Findings <span class=\"count\">{}</span></h2><ul class=\"findings\">",
            self.findings.len()
        );
        for f in &self.findings {
            let b = match f.severity {
                Severity::Critical => badge("critical", "b-bad"),
                Severity::Unverifiable => badge("unverifiable", "b-warn"),
                Severity::Warning => badge("warning", "b-warn"),
            };
            let _ = write!(
                o,
                "<li>{b}<span class=\"area\">{}</span><span class=\"wrapall\">{}</span></li>",
                esc(&f.area),
                esc(&f.message)
            );
        }
        o.push_str("</ul></section>\n");
    }

    fn html_gantt(&self, o: &mut String) {
        let last = self
            .timeline
            .iter()
            .filter_map(|t| t.offset_ms)
            .max()
            .unwrap_or(0);
        let step_end = self
            .steps
            .iter()
            .filter_map(|s| Some(s.offset_ms? + s.duration_ms.unwrap_or(0)))
            .max()
            .unwrap_or(0);
        let total = last.max(step_end).max(1);
        let pct = |ms: i64| (ms.clamp(0, total) as f64) * 100.0 / total as f64;
        let _ = write!(
            o,
            "<section class=\"card\" id=\"timeline\"><h2>Timeline <span class=\"count\">{} from the first journal entry to the last</span></h2><div class=\"gantt\"><div class=\"g-overlay\">",
            esc(&fmt_ms(total))
        );
        let step = tick_step(total);
        let mut t = 0;
        while t <= total {
            let _ = write!(
                o,
                "<div class=\"g-grid\" style=\"left:{:.3}%\"></div><div class=\"g-tick{}\" style=\"left:{:.3}%\">{}</div>",
                pct(t),
                if t == 0 { " first" } else { "" },
                pct(t),
                esc(&tick_label(t, step))
            );
            t += step;
        }
        // Resumes are the moments a reviewer must see: the run stopped, then went on.
        for e in self
            .timeline
            .iter()
            .filter(|e| e.event == "run_started" && e.session > 1)
        {
            if let Some(off) = e.offset_ms {
                let _ = write!(
                    o,
                    "<div class=\"g-mark\" style=\"left:{:.3}%\" title=\"{}\"><span>resumed</span></div>",
                    pct(off),
                    esc(&e.summary)
                );
            }
        }
        o.push_str("</div><div class=\"g-row g-axis\"><div></div><div></div><div></div></div>");
        for s in &self.steps {
            let _ = write!(
                o,
                "<div class=\"g-row\"><div class=\"g-label\" title=\"{}\">{}</div><div class=\"g-track\">",
                esc(&s.id),
                esc(&s.id)
            );
            match s.offset_ms {
                Some(start) => {
                    let end = match s.duration_ms {
                        Some(d) => start + d,
                        None => last,
                    };
                    let tip = format!(
                        "{}: {} · start {} · {}{}",
                        s.id,
                        s.status,
                        fmt_offset(Some(start)),
                        s.duration_ms
                            .map(fmt_ms)
                            .unwrap_or_else(|| "never finished".into()),
                        s.error
                            .as_deref()
                            .map(|e| format!(" · {e}"))
                            .unwrap_or_default()
                    );
                    let _ = write!(
                        o,
                        "<div class=\"g-bar st-{}\" style=\"left:{:.3}%;width:{:.3}%\" title=\"{}\"></div>",
                        match s.status.as_str() {
                            "succeeded" => "succeeded",
                            "failed" => "failed",
                            _ => "interrupted",
                        },
                        pct(start),
                        (pct(end) - pct(start)).max(0.0),
                        esc(&tip)
                    );
                }
                None => {
                    let _ = write!(
                        o,
                        "<span class=\"g-skip\">{}{}</span>",
                        esc(&s.status),
                        s.error
                            .as_deref()
                            .map(|e| format!(": {}", esc(e)))
                            .unwrap_or_default()
                    );
                }
            }
            for c in self.calls.iter().filter(|c| c.step == s.id) {
                if let Some(off) = c.offset_ms {
                    let _ = write!(
                        o,
                        "<div class=\"g-call c-{}\" style=\"left:{:.3}%\" title=\"{}\"></div>",
                        c.status.as_str(),
                        pct(off),
                        esc(&format!(
                            "call {} {}:{} {} {}",
                            c.call,
                            c.service,
                            c.operation,
                            c.status.as_str(),
                            fmt_offset(c.offset_ms)
                        ))
                    );
                }
            }
            let _ = write!(
                o,
                "</div><div class=\"g-dur\">{}</div></div>",
                esc(&match s.duration_ms {
                    Some(d) => fmt_ms(d),
                    None if s.offset_ms.is_some() => "unfinished".to_owned(),
                    None => String::new(),
                })
            );
        }
        // Sealing: from the entry before `evidence_sealed` to it.
        if let Some(i) = self
            .timeline
            .iter()
            .rposition(|e| e.event == "evidence_sealed")
        {
            let end = self.timeline[i].offset_ms.unwrap_or(0);
            let start = i
                .checked_sub(1)
                .and_then(|p| self.timeline[p].offset_ms)
                .unwrap_or(end);
            let _ = write!(
                o,
                "<div class=\"g-row g-sep\"><div class=\"g-label sub\">seal evidence</div><div class=\"g-track\"><div class=\"g-bar st-seal\" style=\"left:{:.3}%;width:{:.3}%\" title=\"{}\"></div></div><div class=\"g-dur\">{}</div></div>",
                pct(start),
                (pct(end) - pct(start)).max(0.0),
                esc(&self.timeline[i].summary),
                esc(&fmt_ms(end - start))
            );
        }
        o.push_str("</div><div class=\"legend\"><span><i style=\"background:#22c55e\"></i>succeeded</span><span><i style=\"background:#ef4444\"></i>failed</span><span><i style=\"background:#f59e0b\"></i>interrupted</span><span><i style=\"background:#8b5cf6\"></i>sealing</span><span><i class=\"tick\" style=\"background:#0f172a\"></i>mutating AWS call</span><span><i class=\"tick\" style=\"background:#b91c1c\"></i>failed call</span><span><i class=\"tick\" style=\"background:#d97706\"></i>call never finished</span></div></section>\n");
    }

    fn html_steps(&self, o: &mut String) {
        let _ = write!(
            o,
            "<section class=\"card\" id=\"steps\"><h2>Steps <span class=\"count\">{}</span></h2><div class=\"scroll\"><table><thead><tr><th>Step</th><th>Status</th><th class=\"num\">Attempts</th><th class=\"num\">Start</th><th class=\"num\">Duration</th><th>Finished at</th><th class=\"num\">Calls</th><th>Error</th><th>Outputs</th></tr></thead><tbody>",
            self.steps.len()
        );
        for s in &self.steps {
            let row = match s.status.as_str() {
                "failed" => " class=\"row-bad\"",
                "interrupted" => " class=\"row-warn\"",
                _ => "",
            };
            let mut err = s.error.as_deref().map(esc).unwrap_or_default();
            for rt in &s.retries {
                let _ = write!(
                    err,
                    "<div class=\"muted\">attempt {} failed (retried after {}): {}</div>",
                    rt.attempt,
                    esc(&fmt_ms(rt.delay_ms as i64)),
                    esc(&rt.error)
                );
            }
            let _ = write!(
                o,
                "<tr{row}><td class=\"nowrap\"><b>{}</b></td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"mono nowrap\">{}</td><td class=\"num\">{}</td><td class=\"wrapall\">{err}</td><td>{}</td></tr>",
                esc(&s.id),
                badge(&s.status, status_class(&s.status)),
                s.attempts,
                esc(&fmt_offset(s.offset_ms)),
                esc(&fmt_opt_ms(s.duration_ms)),
                esc(s.finished_at.as_deref().unwrap_or("")),
                s.calls,
                json_details("outputs", &s.outputs)
            );
        }
        o.push_str("</tbody></table></div></section>\n");
    }

    fn html_calls(&self, o: &mut String) {
        let _ = write!(
            o,
            "<section class=\"card\" id=\"calls\"><h2>Mutating AWS calls <span class=\"count\">{} — every change the run made or attempted, from the journal</span></h2>",
            self.calls.len()
        );
        if self.calls.is_empty() {
            o.push_str("<p class=\"muted\">None.</p></section>\n");
            return;
        }
        o.push_str("<div class=\"scroll\"><table><thead><tr><th class=\"num\">#</th><th>Step</th><th>Call</th><th>Key parameters</th><th>Result</th><th>Request id</th><th class=\"num\">Start</th><th class=\"num\">Duration</th></tr></thead><tbody>");
        for c in &self.calls {
            let row = match c.status {
                CallStatus::Failed => " class=\"row-bad\"",
                CallStatus::Unfinished => " class=\"row-warn\"",
                _ => "",
            };
            let num = if self.run.resumed > 0 {
                format!("{}<div class=\"muted\">session {}</div>", c.call, c.session)
            } else {
                c.call.to_string()
            };
            let err = match (&c.error_code, &c.error_message) {
                (None, None) => String::new(),
                (code, msg) => format!(
                    "<div class=\"wrapall\" style=\"margin-top:3px;font-size:12px\"><b class=\"mono\">{}</b> {}</div>",
                    esc(code.as_deref().unwrap_or("")),
                    esc(msg.as_deref().unwrap_or(""))
                ),
            };
            let _ = write!(
                o,
                "<tr{row}><td class=\"num\">{num}</td><td class=\"nowrap\">{}</td><td class=\"mono nowrap\">{}:{}</td><td class=\"mono wrapall\">{}{}</td><td>{}{err}</td><td class=\"hash\" style=\"min-width:170px\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                esc(&c.step),
                esc(&c.service),
                esc(&c.operation),
                esc(&c.key_params),
                json_details("result", &c.result),
                badge(c.status.as_str(), status_class(c.status.as_str())),
                esc(c.request_id.as_deref().unwrap_or("")),
                esc(&fmt_offset(c.offset_ms)),
                esc(&fmt_opt_ms(c.duration_ms))
            );
        }
        o.push_str("</tbody></table></div></section>\n");
    }

    fn html_evidence(&self, o: &mut String) {
        let ev = &self.evidence;
        let j = &self.journal;
        let _ = write!(
            o,
            "<section class=\"card\" id=\"evidence\"><h2>Evidence {}</h2><div class=\"kv\">",
            badge(ev.status.as_str(), status_class(ev.status.as_str()))
        );
        let check = |c: &Check| {
            if c.ok {
                badge("ok", "b-ok")
            } else {
                format!(
                    "{} {}",
                    badge("mismatch", "b-bad"),
                    esc(&c.problems.join("; "))
                )
            }
        };
        let mut kv: Vec<(&str, String)> = vec![
            (
                "Location",
                format!(
                    "<span class=\"mono\">{}</span>",
                    esc(ev.location.as_deref().unwrap_or("unknown"))
                ),
            ),
            (
                "Manifest SHA-256",
                format!(
                    "<span class=\"hash\">{}</span>",
                    esc(ev.manifest_sha256.as_deref().unwrap_or(""))
                ),
            ),
            ("Sealed at", esc(ev.sealed_at.as_deref().unwrap_or(""))),
        ];
        if let Some(c) = &ev.collector {
            kv.push((
                "Sealed by",
                esc(&[
                    str_of(c, "tool"),
                    str_of(c, "host"),
                    str_of(c, "aws_principal"),
                ]
                .iter()
                .flatten()
                .copied()
                .collect::<Vec<_>>()
                .join(" · ")),
            ));
        }
        if matches!(
            ev.status,
            EvidenceStatus::Verified | EvidenceStatus::Mismatch
        ) {
            kv.push(("manifest.json", check(&ev.manifest)));
            kv.push(("SHA256SUMS", check(&ev.sha256sums)));
            kv.push((
                "Case chain",
                format!(
                    "{} <span class=\"mono\">{}</span>",
                    check(&ev.chain),
                    esc(&ev.chain_runs.join(" → "))
                ),
            ));
            kv.push((
                "Previous manifest",
                match &ev.previous_manifest_sha256 {
                    Some(h) => format!("<span class=\"hash\">{}</span>", esc(h)),
                    None => {
                        "<span class=\"muted\">none: first sealed run of the case</span>".to_owned()
                    }
                },
            ));
        }
        kv.push((
            "Journal hash chain",
            if j.chain_ok {
                format!("{} {} entries", badge("intact", "b-ok"), j.entries)
            } else {
                format!(
                    "{} {}",
                    badge("broken", "b-bad"),
                    esc(j.chain_problem.as_deref().unwrap_or(""))
                )
            },
        ));
        kv.push((
            "Journal vs sealed copy",
            match (j.sealed_copy_ok, j.sealed_copy_lines) {
                (Some(true), Some(n)) => {
                    format!("{} sealed copy = first {n} lines", badge("matches", "b-ok"))
                }
                (Some(false), _) => badge("differs", "b-bad"),
                _ => "<span class=\"muted\">no sealed copy</span>".to_owned(),
            },
        ));
        if let Some(e) = &ev.seal_error {
            kv.push((
                "Seal error",
                format!("{} {}", badge("failed", "b-bad"), esc(e)),
            ));
        }
        if let Some(e) = &ev.verify_error {
            kv.push(("Verification", esc(e)));
        }
        if let Some(orig) = &ev.copy_of {
            kv.push((
                "Copy",
                format!("this is the drill's local copy of {}", esc(orig)),
            ));
        }
        for (k, v) in kv {
            let _ = write!(o, "<div class=\"k\">{k}</div><div class=\"v\">{v}</div>");
        }
        o.push_str("</div>");
        if !ev.items.is_empty() {
            o.push_str("<div class=\"scroll\"><table><thead><tr><th>Path</th><th>State</th><th class=\"num\">Size</th><th>SHA-256</th><th>S3 version</th><th>Step</th><th>Source</th></tr></thead><tbody>");
            for i in &ev.items {
                let bad = !matches!(i.status, ItemState::Ok);
                let mut hash = esc(i.sha256.as_deref().unwrap_or(""));
                if bad {
                    if let Some(a) = &i.actual_sha256 {
                        if Some(a) != i.sha256.as_ref() {
                            let _ =
                                write!(hash, "<div style=\"color:#b91c1c\">now {}</div>", esc(a));
                        }
                    }
                }
                let mut state = badge(i.status.as_str(), status_class(i.status.as_str()));
                if let Some(d) = &i.detail {
                    let _ = write!(
                        state,
                        "<div class=\"muted\" style=\"font-size:12px\">{}</div>",
                        esc(d)
                    );
                }
                let _ = write!(
                    o,
                    "<tr{}><td class=\"mono wrapall\">{}</td><td>{state}</td><td class=\"num\">{}</td><td class=\"hash\">{hash}</td><td class=\"hash\">{}</td><td class=\"nowrap\">{}</td><td class=\"mono\">{}</td></tr>",
                    if bad { " class=\"row-bad\"" } else { "" },
                    esc(&i.path),
                    esc(&i.size.map(fmt_bytes).unwrap_or_default()),
                    esc(i.s3_version_id.as_deref().unwrap_or("")),
                    esc(&i.step_and_attempt()),
                    esc(i.source.as_deref().unwrap_or(""))
                );
            }
            o.push_str("</tbody></table></div>");
            for (step, first, attempts) in ev.retried_steps() {
                let _ = write!(
                    o,
                    "<p class=\"muted\">Step <code>{}</code> ran {attempts} attempts: what it saw before its first change is the first attempt's, {}; each later attempt's captures are kept beside it under <code>attempt-N/</code>.</p>",
                    esc(step),
                    first.iter().map(|p| format!("<code>{}</code>", esc(p))).collect::<Vec<_>>().join(", ")
                );
            }
        }
        o.push_str("</section>\n");
    }

    fn html_resources(&self, o: &mut String) {
        let _ = write!(
            o,
            "<section class=\"card\" id=\"resources\"><h2>AWS resources <span class=\"count\">{}</span></h2>",
            self.resources.len()
        );
        if self.resources.is_empty() {
            o.push_str("<p class=\"muted\">None.</p></section>\n");
            return;
        }
        o.push_str("<div class=\"scroll\"><table><thead><tr><th>Type</th><th>Id</th><th>Details</th><th>In manifest</th></tr></thead><tbody>");
        for res in &self.resources {
            let _ = write!(
                o,
                "<tr><td class=\"nowrap\">{}</td><td class=\"mono wrapall\">{}</td><td class=\"mono wrapall\">{}</td><td>{}</td></tr>",
                esc(&res.kind),
                esc(&res.id),
                esc(&key_params(&Value::Object(res.details.clone()))),
                match res.sealed {
                    Some(true) => badge("yes", "b-ok"),
                    Some(false) => badge("no", "b-bad"),
                    None => String::new(),
                }
            );
        }
        o.push_str("</tbody></table></div></section>\n");
    }

    fn html_notes(&self, o: &mut String) {
        if self.notes.is_empty() {
            return;
        }
        let _ = write!(
            o,
            "<section class=\"card\" id=\"notes\"><h2>Notes <span class=\"count\">{}</span></h2><table><tbody>",
            self.notes.len()
        );
        for n in &self.notes {
            let _ = write!(
                o,
                "<tr><td class=\"num\" style=\"width:110px\">{}</td><td class=\"wrapall\">{}</td></tr>",
                esc(&fmt_offset(n.offset_ms)),
                esc(&n.message)
            );
        }
        o.push_str("</tbody></table></section>\n");
    }

    fn html_events(&self, o: &mut String) {
        let _ = write!(
            o,
            "<section class=\"card\" id=\"events\"><h2>Event log <span class=\"count\">every journal entry, in order ({})</span></h2><div class=\"scroll\"><table><thead><tr><th class=\"num\">Seq</th><th class=\"num\">Offset</th><th>Time (UTC)</th><th>Event</th><th>Step</th><th>What happened</th></tr></thead><tbody>",
            self.timeline.len()
        );
        for t in &self.timeline {
            let row = match t.event.as_str() {
                "run_started" | "run_finished" | "evidence_sealed" => " style=\"font-weight:600\"",
                _ => "",
            };
            let _ = write!(
                o,
                "<tr{row}><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"mono nowrap\">{}</td><td class=\"mono nowrap\">{}</td><td class=\"nowrap\">{}</td><td class=\"wrapall\">{}</td></tr>",
                t.seq,
                esc(&fmt_offset(t.offset_ms)),
                esc(&t.ts),
                esc(&t.event),
                esc(t.step.as_deref().unwrap_or("")),
                esc(&t.summary)
            );
        }
        o.push_str("</tbody></table></div></section>\n");
    }

    fn html_details(&self, o: &mut String) {
        let r = &self.run;
        o.push_str("<section class=\"card\" id=\"run\"><h2>Run details</h2><div class=\"kv\">");
        let kv: Vec<(&str, String)> = vec![
            (
                "Playbook file",
                format!("<span class=\"mono\">{}</span>", esc(&r.playbook.path)),
            ),
            (
                "Playbook SHA-256",
                format!("<span class=\"hash\">{}</span>", esc(&r.playbook.sha256)),
            ),
            (
                "Evidence location",
                format!("<span class=\"mono\">{}</span>", esc(&r.evidence_location)),
            ),
            ("Concurrency", r.concurrency.to_string()),
            ("Started", esc(r.started_at.as_deref().unwrap_or(""))),
            (
                "Finished",
                esc(r.finished_at.as_deref().unwrap_or("not finished")),
            ),
            (
                "Journal",
                format!("<span class=\"mono\">{}</span>", esc(&self.journal.path)),
            ),
        ];
        for (k, v) in kv {
            let _ = write!(o, "<div class=\"k\">{k}</div><div class=\"v\">{v}</div>");
        }
        o.push_str("</div>");
        if !r.inputs.is_empty() {
            o.push_str("<table><thead><tr><th>Input</th><th>Value</th></tr></thead><tbody>");
            for (k, v) in &r.inputs {
                let _ = write!(
                    o,
                    "<tr><td class=\"mono nowrap\">{}</td><td class=\"mono wrapall\">{}</td></tr>",
                    esc(k),
                    esc(&short_value(v))
                );
            }
            o.push_str("</tbody></table>");
        }
        o.push_str("</section>\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::CallOutcome;
    use crate::events::{RunStatus, StepStatus};
    use crate::journal::Journal;
    use serde_json::json;

    const EVIL: &str = "<script>alert(\"x\")</script><img src=x onerror=alert(1)> | [a](http://e.test) `b` 'q' & *c*";

    fn record(dir: &Path, evidence: &Path) -> RunRecord {
        RunRecord {
            run_id: "r-1".into(),
            case_id: "IR-1".into(),
            playbook_path: dir.join("pb.yaml"),
            playbook_sha256: "ab".repeat(32),
            inputs: json!({"note": EVIL}).as_object().unwrap().clone(),
            secret_inputs: Vec::new(),
            defaulted_inputs: None,
            evidence_location: evidence.display().to_string(),
            dry_run: false,
            concurrency: 4,
            started_at: "2026-01-01T12:00:00.000Z".into(),
            region: "us-east-1".into(),
            account_id: "123456789012".into(),
            aws_principal: "arn:aws:iam::123456789012:user/ir".into(),
            evidence_owner: None,
        }
    }

    fn started(resumed: bool) -> RunEvent {
        RunEvent::RunStarted {
            run_id: "r-1".into(),
            case_id: "IR-1".into(),
            playbook: "pb".into(),
            version: "1".into(),
            playbook_sha256: "ab".repeat(32),
            dry_run: false,
            resumed,
            aws_principal: Some("arn:aws:iam::123456789012:user/ir".into()),
        }
    }

    fn call(call: u64, op: &str) -> RunEvent {
        RunEvent::CallStarted {
            call,
            step: "isolate".into(),
            service: "ec2".into(),
            operation: op.into(),
            params: json!({"group_id": "sg-1", "tags": {"k": EVIL}}),
        }
    }

    fn finished(call: u64, ok: bool) -> RunEvent {
        RunEvent::CallFinished {
            call,
            outcome: CallOutcome {
                ok,
                request_id: Some(format!("req-{call}")),
                error_code: (!ok).then(|| "UnauthorizedOperation".to_owned()),
                error_message: (!ok).then(|| EVIL.to_owned()),
                result: json!({}),
            },
        }
    }

    /// A run that crashed mid-call, was resumed and finished, but was never sealed.
    fn crashed_and_resumed(state: &Path) -> PathBuf {
        let dir = executor::run_dir(state, "r-1");
        std::fs::create_dir_all(&dir).unwrap();
        let rec = record(state, &state.join("evidence"));
        std::fs::write(dir.join("run.json"), serde_json::to_vec(&rec).unwrap()).unwrap();
        let path = dir.join("journal.jsonl");
        let j = Journal::open(&path).unwrap();
        for e in [
            started(false),
            RunEvent::StepStarted {
                step: "isolate".into(),
                attempt: 1,
                item: None,
            },
            call(1, "CreateSecurityGroup"),
            finished(1, true),
            call(2, "ModifyNetworkInterfaceAttribute"),
            // crash: call 2 never finished
            RunEvent::Note {
                message: format!("call 2 was in flight {EVIL}"),
            },
            started(true),
            RunEvent::StepStarted {
                step: "isolate".into(),
                attempt: 1,
                item: None,
            },
            call(1, "ModifyNetworkInterfaceAttribute"),
            finished(1, false),
            call(2, "ModifyNetworkInterfaceAttribute"),
            finished(2, true),
            RunEvent::StepFinished(StepSummary {
                id: "isolate".into(),
                status: StepStatus::Succeeded,
                attempts: 1,
                started_at: Some("2026-01-01T12:00:01.000Z".into()),
                finished_at: Some("2026-01-01T12:00:02.500Z".into()),
                outputs: json!({"isolation_group_id": "sg-1"}),
                error: None,
            }),
            RunEvent::RunFinished {
                run_id: "r-1".into(),
                case_id: "IR-1".into(),
                status: RunStatus::Succeeded,
                steps: vec![StepSummary {
                    id: "tag".into(),
                    status: StepStatus::Skipped,
                    attempts: 0,
                    started_at: None,
                    finished_at: None,
                    outputs: Value::Null,
                    error: Some("when was false".into()),
                }],
                evidence: None,
                gaps: Vec::new(),
            },
        ] {
            j.append(&e).unwrap();
        }
        path
    }

    #[tokio::test]
    async fn calls_are_matched_per_session_and_an_unfinished_call_is_flagged() {
        let state = tempfile::tempdir().unwrap();
        crashed_and_resumed(state.path());
        let r = build(state.path(), "r-1", &AwsOptions::default(), None)
            .await
            .unwrap();
        assert_eq!(r.run.resumed, 1);
        assert_eq!(r.run.status, "succeeded");
        let calls: Vec<(u32, u64, CallStatus, Option<&str>)> = r
            .calls
            .iter()
            .map(|c| (c.session, c.call, c.status, c.request_id.as_deref()))
            .collect();
        assert_eq!(
            calls,
            vec![
                (1, 1, CallStatus::Ok, Some("req-1")),
                (1, 2, CallStatus::Unfinished, None),
                (2, 1, CallStatus::Failed, Some("req-1")),
                (2, 2, CallStatus::Ok, Some("req-2")),
            ]
        );
        assert!(r.findings.iter().any(|f| f.severity == Severity::Warning
            && f.message
                .contains("call 2 ec2:ModifyNetworkInterfaceAttribute")
            && f.message.contains("never finished")));
        let steps: Vec<(&str, &str)> = r
            .steps
            .iter()
            .map(|s| (s.id.as_str(), s.status.as_str()))
            .collect();
        assert_eq!(steps, vec![("isolate", "succeeded"), ("tag", "skipped")]);
        assert_eq!(r.steps[0].duration_ms, Some(1500));
        assert_eq!(r.timeline.len(), 14);
        assert!(r.journal.chain_ok);
        // Never sealed: the report says so, and that is an integrity problem.
        assert_eq!(r.evidence.status, EvidenceStatus::NotSealed);
        assert!(!r.integrity_ok);
        assert_eq!(r.findings[0].severity, Severity::Critical);
        let md = r.to_markdown();
        assert!(md.contains("**UNFINISHED**"), "{md}");
        assert!(md.contains("(session 2)"));
    }

    #[tokio::test]
    async fn a_broken_chain_is_reported_and_the_rest_still_read() {
        let state = tempfile::tempdir().unwrap();
        let path = crashed_and_resumed(state.path());
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("CreateSecurityGroup", "DeleteSecurityGroup");
        std::fs::write(&path, text).unwrap();
        let r = build(state.path(), "r-1", &AwsOptions::default(), None)
            .await
            .unwrap();
        assert!(!r.journal.chain_ok);
        assert!(
            r.journal
                .chain_problem
                .as_deref()
                .unwrap()
                .contains("line 4"),
            "{:?}",
            r.journal.chain_problem
        );
        assert_eq!(r.timeline.len(), 14, "every line is still shown");
        assert_eq!(r.calls[0].operation, "DeleteSecurityGroup");
        assert!(!r.integrity_ok);
    }

    #[tokio::test]
    async fn an_unknown_run_is_an_error_naming_it() {
        let state = tempfile::tempdir().unwrap();
        let e = build(state.path(), "r-nope", &AwsOptions::default(), None)
            .await
            .unwrap_err();
        assert!(matches!(e, ReportError::UnknownRun { .. }));
        assert!(e.to_string().contains("r-nope"), "{e}");
        let e = build(state.path(), "../etc", &AwsOptions::default(), None)
            .await
            .unwrap_err();
        assert!(matches!(e, ReportError::UnknownRun { .. }));
    }

    #[tokio::test]
    async fn every_value_from_the_journal_is_escaped_in_html_and_markdown() {
        let state = tempfile::tempdir().unwrap();
        crashed_and_resumed(state.path());
        let r = build(state.path(), "r-1", &AwsOptions::default(), None)
            .await
            .unwrap();
        let html = r.to_html();
        assert!(!html.contains("<script"), "a script tag got through");
        assert!(!html.contains("<img"), "an img tag got through");
        assert!(html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"));
        assert!(html.contains("default-src 'none'"), "CSP present");
        assert!(!html.contains("http://e.test\""), "no link made from data");
        // Markdown: outside code spans (which every renderer shows literally) nothing from
        // the run can make HTML, a link or a new table cell.
        let md = r.to_markdown();
        let prose = strip_code_spans(&md);
        assert!(!prose.contains("<script"), "{prose}");
        assert!(
            !prose.replace("\\]", "").contains("](http"),
            "no markdown link from data: {prose}"
        );
        assert!(!prose.contains(" | [a]"), "{prose}");
        let call_row = md
            .lines()
            .find(|l| l.starts_with("| 1 (session 1)"))
            .unwrap();
        let cells = call_row.replace("\\|", "").matches('|').count();
        assert_eq!(
            cells, 10,
            "the injected | stays inside its cell: {call_row}"
        );
    }

    /// Removes CommonMark code spans (a run of N backticks up to the next run of exactly N).
    fn strip_code_spans(s: &str) -> String {
        let b: Vec<char> = s.chars().collect();
        let mut out = String::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] != '`' {
                out.push(b[i]);
                i += 1;
                continue;
            }
            let n = b[i..].iter().take_while(|c| **c == '`').count();
            let mut j = i + n;
            let mut closed = None;
            while j < b.len() {
                let m = b[j..].iter().take_while(|c| **c == '`').count();
                if m == n {
                    closed = Some(j + m);
                    break;
                }
                j += m.max(1);
            }
            match closed {
                Some(end) => i = end,
                None => {
                    out.extend(&b[i..i + n]);
                    i += n;
                }
            }
        }
        out
    }

    #[test]
    fn escapers() {
        assert_eq!(
            html_escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        assert_eq!(
            md("a|b\n<i>*c*</i> [l](u)"),
            "a\\|b<br>&lt;i&gt;\\*c\\*&lt;/i&gt; \\[l\\](u)"
        );
        assert_eq!(code("sg-1"), "`sg-1`");
        assert_eq!(code("a`b|c"), "`` a`b\\|c ``");
        assert_eq!(code("x\ny"), "`x y`");
    }

    #[test]
    fn durations_and_ticks_read_well() {
        assert_eq!(fmt_ms(850), "850 ms");
        assert_eq!(fmt_ms(1240), "1.24 s");
        assert_eq!(fmt_ms(185_000), "3 m 05 s");
        assert_eq!(fmt_ms(7_380_000), "2 h 03 m");
        assert_eq!(tick_step(968), 200);
        assert_eq!(tick_step(1), 1);
        assert_eq!(tick_label(400, 200), "0.4 s");
        assert_eq!(tick_label(120_000, 60_000), "2 min");
    }
}
