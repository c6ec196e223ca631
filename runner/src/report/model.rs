//! The report's model: what `irr report --format json` writes (stable field names), and what
//! the Markdown and HTML renderers read.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use irr_forensics::ItemStatus;

/// Everything known about one run, for review.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Always [`super::REPORT_FORMAT`].
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
    /// A fan-out's children, one report each (`run.account_id` and `run.region` name the
    /// target), in the order of the targets; absent for a run that did not fan out.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Report>,
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
    pub(crate) fn as_str(self) -> &'static str {
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
    pub(crate) fn as_str(self) -> &'static str {
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
    pub(crate) fn as_str(self) -> &'static str {
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
    pub(crate) fn step_and_attempt(&self) -> String {
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
    /// The seal's signature (`manifest.sig.json`): its problems fail the evidence.
    pub signature: Check,
    /// The key that signed it (`sha256:HEX`), or `None` when the run is unsigned.
    pub signed_by: Option<String>,
    /// Why the run could not be signed, as the run journaled it.
    pub signature_error: Option<String>,
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

impl Report {
    /// Mutating calls: (ok or permitted, failed, unfinished).
    pub(crate) fn mutating_counts(&self) -> (usize, usize, usize) {
        let n = |st: CallStatus| self.calls.iter().filter(|c| c.status == st).count();
        (
            n(CallStatus::Ok) + n(CallStatus::Permitted),
            n(CallStatus::Failed),
            n(CallStatus::Unfinished),
        )
    }

    /// `NAME VERSION`, else the playbook file.
    pub(crate) fn playbook_label(&self) -> String {
        let p = &self.run.playbook;
        match (&p.name, &p.version) {
            (Some(n), Some(v)) => format!("{n} {v}"),
            (Some(n), None) => n.clone(),
            _ => p.path.clone(),
        }
    }

    /// The evidence's state in a few words (`verified: 3 of 3 items ok`).
    /// A fan-out child's one-line summary: steps by status, then mutating calls.
    pub(crate) fn child_line(&self) -> (String, String) {
        let n = |st: &str| self.steps.iter().filter(|s| s.status == st).count();
        let steps = format!(
            "{} ok, {} failed, {} skipped",
            n("succeeded"),
            n("failed"),
            n("skipped")
        );
        let failed = self
            .calls
            .iter()
            .filter(|c| c.status != CallStatus::Ok)
            .count();
        (steps, format!("{} ({} not ok)", self.calls.len(), failed))
    }

    pub(crate) fn evidence_verdict(&self) -> String {
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
}
