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
//!
//! The stages, one module each: [`journal::read_lenient`] reads the journal (typed events,
//! reading on past damage), [`assemble`] folds it with `run.json` into the [`Report`] model ([`model`]), [`evidence`] verifies the
//! sealed evidence, [`findings`] judges the whole; [`markdown`] and [`html`] render it (the HTML
//! from `maud` templates, which escape every value, with the stylesheet in `report.css`).

mod assemble;
mod evidence;
mod findings;
mod fmt;
mod html;
mod markdown;
mod model;
#[cfg(test)]
mod tests;

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::aws::AwsOptions;
use crate::executor::{self, RunRecord};
use crate::exit_codes::{self, Exit};
use crate::journal;

pub use model::*;

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
    let read = journal::read_lenient(&journal_path);
    let state = journal::replay(&read.entries);
    let mut report = assemble::assemble(&record, &journal_path, &read);
    let location = evidence::evidence_run_location(&record, &state);
    // A drill's evidence lived in its emulator, gone once the drill ended: the drill kept a
    // verified local copy (`irr gameday`), which is what is verified here.
    let copy = evidence::read_copy_marker(&dir, &record);
    let location = match &copy {
        Some(c) => Some(c.location.clone()),
        None => location,
    };
    let mut evidence =
        evidence::check_evidence(location.as_deref(), &record, aws, evidence_owner).await;
    evidence.copy_of = copy.map(|c| (c.copy_of, c.manifest_sha256));
    for target in record.fanout.iter().flat_map(|f| &f.targets) {
        if let Some(child) = child_report(&dir.join(target.dir()), &evidence.for_child(target)) {
            if !child.integrity_ok {
                let first = child.findings.first().map(|f| f.message.clone());
                report.findings.push(Finding {
                    severity: Severity::Critical,
                    area: format!("target {target}"),
                    message: first.unwrap_or_else(|| "its record does not hold".to_owned()),
                });
            }
            report.children.push(child);
        }
    }
    evidence::attach_evidence(&mut report, &read, &state, evidence);
    findings::finish(&mut report);
    Ok(report)
}

/// A fan-out child's report, from its folder under the parent's and what the parent's
/// verification found for it; `None` for a target that never started (unreachable: the
/// parent's gaps say why).
fn child_report(dir: &Path, found: &evidence::EvidenceFound) -> Option<Report> {
    let record: RunRecord =
        serde_json::from_slice(&std::fs::read(dir.join("run.json")).ok()?).ok()?;
    let journal_path = dir.join("journal.jsonl");
    let read = journal::read_lenient(&journal_path);
    let state = journal::replay(&read.entries);
    let mut report = assemble::assemble(&record, &journal_path, &read);
    evidence::attach_evidence(&mut report, &read, &state, found.clone());
    findings::finish(&mut report);
    Some(report)
}

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
}
