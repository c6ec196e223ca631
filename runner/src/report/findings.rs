//! The findings of an assembled report, critical first, and its integrity verdict.

use super::model::{CallStatus, EvidenceStatus, Finding, ItemState, Report, Severity};

fn crit(area: &str, message: String) -> Finding {
    Finding {
        severity: Severity::Critical,
        area: area.to_owned(),
        message,
    }
}

fn warn(area: &str, message: String) -> Finding {
    Finding {
        severity: Severity::Warning,
        area: area.to_owned(),
        message,
    }
}

/// Findings from the assembled report, critical first; sets `integrity_ok`.
pub(crate) fn finish(report: &mut Report) {
    let mut f = std::mem::take(&mut report.findings);
    if let Some(p) = &report.journal.chain_problem {
        f.push(crit(
            "journal",
            format!("the journal's hash chain is broken ({p}): entries from there on may have been edited, removed or inserted"),
        ));
    }
    evidence_findings(report, &mut f);
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
    run_findings(report, &mut f);
    f.sort_by_key(|x| x.severity);
    report.integrity_ok = !f
        .iter()
        .any(|x| matches!(x.severity, Severity::Critical | Severity::Unverifiable));
    report.findings = f;
}

/// The evidence's state as findings.
fn evidence_findings(report: &Report, f: &mut Vec<Finding>) {
    let ev = &report.evidence;
    let loc = ev.location.as_deref().unwrap_or("(unknown location)");
    if let Some(e) = &ev.seal_error {
        f.push(crit(
            "evidence",
            format!("sealing failed during the run: {e}"),
        ));
    }
    if let Some(e) = &ev.signature_error {
        f.push(warn("evidence", format!("the seal was not signed: {e}")));
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
                ("signature", &ev.signature),
            ] {
                for p in &check.problems {
                    f.push(crit("evidence", format!("{name}: {p}")));
                }
            }
        }
    }
}

/// Calls that failed or never finished, steps that failed or were interrupted.
fn run_findings(report: &Report, f: &mut Vec<Finding>) {
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
}
