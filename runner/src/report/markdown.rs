//! The report as Markdown: a summary, then tables, for a ticket or a wiki. Every value from
//! the run is escaped ([`md`]) or shown as a code span ([`code`]).

use std::fmt::Write as _;

use serde_json::Value;

use super::fmt::{compact, fmt_offset, fmt_opt_ms, key_params, short_value};
use super::model::{CallStatus, Check, EvidenceStatus, ItemState, Report, Severity};

impl Report {
    /// Markdown: a summary, then tables. Every value from the run is escaped.
    pub fn to_markdown(&self) -> String {
        let mut o = String::new();
        self.md_summary(&mut o);
        self.md_findings(&mut o);
        self.md_steps(&mut o);
        self.md_children(&mut o);
        self.md_calls(&mut o);
        self.md_evidence(&mut o);
        self.md_resources(&mut o);
        self.md_notes(&mut o);
        self.md_timeline(&mut o);
        self.md_inputs(&mut o);
        o
    }

    /// The title, the integrity verdict and the run in one table.
    fn md_summary(&self, o: &mut String) {
        let r = &self.run;
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
    }

    /// What needs attention, critical first.
    fn md_findings(&self, o: &mut String) {
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
    }

    /// Every step.
    fn md_steps(&self, o: &mut String) {
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
    }

    /// A fan-out's children: one row each, then each one's findings.
    fn md_children(&self, o: &mut String) {
        if self.children.is_empty() {
            return;
        }
        let _ = writeln!(o, "\n## Targets\n");
        o.push_str("| Target | Status | Steps | Mutating calls | Evidence | Integrity |\n| --- | --- | --- | --- | --- | --- |\n");
        for c in &self.children {
            let (steps, calls) = c.child_line();
            let _ = writeln!(
                o,
                "| {}/{} | {} | {steps} | {calls} | {} | {} |",
                md(&c.run.account_id),
                md(&c.run.region),
                md(&c.run.status),
                md(&c.evidence_verdict()),
                if c.integrity_ok { "OK" } else { "**NOT OK**" }
            );
        }
        for c in self.children.iter().filter(|c| !c.findings.is_empty()) {
            let _ = writeln!(o, "\n### {}/{}\n", md(&c.run.account_id), md(&c.run.region));
            for f in &c.findings {
                let sev = match f.severity {
                    Severity::Critical => "**CRITICAL**",
                    Severity::Unverifiable => "**UNVERIFIABLE**",
                    Severity::Warning => "warning",
                };
                let _ = writeln!(o, "- {sev} ({}): {}", md(&f.area), md(&f.message));
            }
        }
    }

    /// Every mutating AWS call.
    fn md_calls(&self, o: &mut String) {
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
    }

    /// The sealed evidence, its checks and its items.
    fn md_evidence(&self, o: &mut String) {
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
            facts.push(("Signature", md(&signature_text(ev))));
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
    }

    /// AWS resources made or used.
    fn md_resources(&self, o: &mut String) {
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
    }

    /// Notes the run journaled.
    fn md_notes(&self, o: &mut String) {
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
    }

    /// Every journal entry.
    fn md_timeline(&self, o: &mut String) {
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
    }

    /// The resolved inputs.
    fn md_inputs(&self, o: &mut String) {
        let r = &self.run;
        let _ = writeln!(o, "\n## Inputs\n");
        if r.inputs.is_empty() {
            o.push_str("None.\n");
        } else {
            o.push_str("| Input | Value |\n| --- | --- |\n");
            for (k, v) in &r.inputs {
                let _ = writeln!(o, "| {} | {} |", md(k), code(&short_value(v)));
            }
        }
    }
}

/// Escapes text for a Markdown table cell: no formatting, links, HTML or cell breaks can be
/// injected, and a newline cannot end the row.
/// The seal's signature in one line of plain text: the key, unsigned, or what is wrong.
pub(crate) fn signature_text(ev: &super::model::EvidenceReport) -> String {
    match (&ev.signed_by, ev.signature.ok) {
        (_, false) => format!("MISMATCH: {}", ev.signature.problems.join("; ")),
        (Some(k), true) => format!("ok (key {k}; compare it with the key you trust)"),
        (None, true) => "none (unsigned)".to_owned(),
    }
}

pub(crate) fn md(s: &str) -> String {
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
pub(crate) fn code(s: &str) -> String {
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
