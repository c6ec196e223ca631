//! The report as one self-contained HTML file: `maud` templates (checked at compile time, every
//! value escaped), the stylesheet from `report.css` inline, no script and no external resource
//! (a Content-Security-Policy forbids both).

use std::collections::BTreeMap;

use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde_json::{Map, Value};

use super::fmt::{fmt_bytes, fmt_ms, fmt_offset, fmt_opt_ms, key_params, short_value};
use super::model::{CallStatus, Check, EvidenceStatus, Finding, ItemState, Report, Severity};

pub(crate) mod gantt;

/// The stylesheet, inlined into every report.
const CSS: &str = include_str!("report.css");

/// Nothing may be loaded or run, even if escaping were ever missed.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'";

fn badge(text: &str, class: &str) -> Markup {
    html! { span class={ "badge " (class) } { (text) } }
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

/// A status as a badge of its colour.
fn status_badge(status: &str) -> Markup {
    badge(status, status_class(status))
}

/// A JSON value, pretty-printed, folded away under `label` (nothing for null or `{}`).
fn json_details(label: &str, v: &Value) -> Markup {
    let empty = v.is_null() || v.as_object().is_some_and(Map::is_empty);
    html! {
        @if !empty {
            details {
                summary { (label) }
                pre { (serde_json::to_string_pretty(v).unwrap_or_default()) }
            }
        }
    }
}

/// Label/value pairs as a `.kv` grid.
fn kv_grid(kv: Vec<(&str, Markup)>) -> Markup {
    html! {
        div.kv {
            @for (k, v) in kv {
                div.k { (k) }
                div.v { (v) }
            }
        }
    }
}

fn mono(s: &str) -> Markup {
    html! { span.mono { (s) } }
}

fn hash(s: &str) -> Markup {
    html! { span.hash { (s) } }
}

impl Report {
    /// One self-contained HTML file: inline CSS, no script and no external resource (a
    /// Content-Security-Policy forbids both), every value from the run escaped.
    pub fn to_html(&self) -> String {
        let r = &self.run;
        let title = format!("irr report · {} · {}", r.case_id, r.run_id);
        let page = html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta http-equiv="Content-Security-Policy" content=(CSP);
                    meta name="referrer" content="no-referrer";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    meta name="generator" content=(self.generator);
                    title { (title) }
                    style { (PreEscaped(CSS)) }
                }
                body {
                    (self.html_header())
                    main.wrap {
                        (self.html_verdict())
                        (self.html_facts())
                        (self.html_findings())
                        (self.html_gantt())
                        (self.html_steps())
                        (self.html_children())
                        (self.html_calls())
                        (self.html_evidence())
                        (self.html_resources())
                        (self.html_notes())
                        (self.html_events())
                        (self.html_details())
                        footer {
                            "Generated " (self.generated_at) " by " (self.generator) " from "
                            (self.journal.path)
                            " and the sealed evidence. This file is self-contained: it loads nothing and runs no script."
                        }
                    }
                }
            }
        };
        let mut s = page.into_string();
        s.push('\n');
        s
    }

    fn html_header(&self) -> Markup {
        let r = &self.run;
        html! {
            header.top {
                div.wrap {
                    div.brand { "irr · incident response run report" }
                    h1 { "Case " (r.case_id) " " (status_badge(&r.status)) }
                    div.sub {
                        "Run " code { (r.run_id) } " · playbook " b { (self.playbook_label()) }
                        " · " (if r.dry_run { "dry run" } else { "live run" })
                        " · " (r.account_id) " / " (r.region)
                    }
                }
            }
        }
    }

    /// The verdict's one line: chain, evidence, checks, sealed copy.
    fn verdict_line(&self) -> String {
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
        parts.join(" · ")
    }

    fn html_verdict(&self) -> Markup {
        let line = self.verdict_line();
        let of = |s: Severity| -> Vec<&Finding> {
            self.findings.iter().filter(|f| f.severity == s).collect()
        };
        let crit = of(Severity::Critical);
        if !self.integrity_ok && crit.is_empty() {
            html! {
                section.verdict.warn {
                    div.icon { "?" }
                    div {
                        h2 { "Evidence unverifiable — it could not be read; nothing is known to be altered" }
                        p { (line) }
                        ul { @for f in of(Severity::Unverifiable) { li { (f.message) } } }
                    }
                }
            }
        } else if self.integrity_ok {
            html! {
                section.verdict.ok {
                    div.icon { (PreEscaped("&#10003;")) }
                    div { h2 { "Integrity verified" } p { (line) } }
                }
            }
        } else {
            html! {
                section.verdict.bad {
                    div.icon { "!" }
                    div {
                        h2 { "Integrity problems: " (crit.len()) " — this record does not verify" }
                        p { (line) }
                        ul { @for f in crit { li { (f.message) } } }
                    }
                }
            }
        }
    }

    /// The key facts: (label, value, detail, small).
    fn facts(&self) -> Vec<(&'static str, String, String, bool)> {
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
            calls_detail.push_str(&format!(" · {failed} failed"));
        }
        if unfinished > 0 {
            calls_detail.push_str(&format!(" · {unfinished} unfinished"));
        }
        let n = |s: &str| self.steps.iter().filter(|x| x.status == s).count();
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        for res in &self.resources {
            *kinds.entry(res.kind.as_str()).or_default() += 1;
        }
        let kinds = kinds
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect::<Vec<_>>()
            .join(" · ");
        vec![
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
                format!(
                    "{} succeeded · {} failed · {} skipped",
                    n("succeeded"),
                    n("failed"),
                    n("skipped")
                ),
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
                kinds,
                false,
            ),
        ]
    }

    fn html_facts(&self) -> Markup {
        html! {
            section.facts {
                @for (k, v, d, small) in self.facts() {
                    div.fact {
                        div.k { (k) }
                        div.v.small[small] {
                            @if k == "Status" { (status_badge(&v)) } @else { (v) }
                        }
                        @if !d.is_empty() { div.d { (d) } }
                    }
                }
            }
        }
    }

    fn html_findings(&self) -> Markup {
        html! {
            @if !self.findings.is_empty() {
                section.card #findings {
                    h2 { "Findings " span.count { (self.findings.len()) } }
                    ul.findings {
                        @for f in &self.findings {
                            li {
                                @match f.severity {
                                    Severity::Critical => (badge("critical", "b-bad")),
                                    Severity::Unverifiable => (badge("unverifiable", "b-warn")),
                                    Severity::Warning => (badge("warning", "b-warn")),
                                }
                                span.area { (f.area) }
                                span.wrapall { (f.message) }
                            }
                        }
                    }
                }
            }
        }
    }

    fn html_steps(&self) -> Markup {
        html! {
            section.card #steps {
                h2 { "Steps " span.count { (self.steps.len()) } }
                div.scroll { table {
                    thead { tr {
                        th { "Step" } th { "Status" } th.num { "Attempts" } th.num { "Start" }
                        th.num { "Duration" } th { "Finished at" } th.num { "Calls" }
                        th { "Error" } th { "Outputs" }
                    } }
                    tbody {
                        @for s in &self.steps {
                            tr class=[match s.status.as_str() {
                                "failed" => Some("row-bad"),
                                "interrupted" => Some("row-warn"),
                                _ => None,
                            }] {
                                td.nowrap { b { (s.id) } }
                                td { (status_badge(&s.status)) }
                                td.num { (s.attempts) }
                                td.num { (fmt_offset(s.offset_ms)) }
                                td.num { (fmt_opt_ms(s.duration_ms)) }
                                td.mono.nowrap { (s.finished_at.as_deref().unwrap_or("")) }
                                td.num { (s.calls) }
                                td.wrapall {
                                    (s.error.as_deref().unwrap_or(""))
                                    @for rt in &s.retries {
                                        div.muted {
                                            "attempt " (rt.attempt) " failed (retried after "
                                            (fmt_ms(rt.delay_ms as i64)) "): " (rt.error)
                                        }
                                    }
                                }
                                td { (json_details("outputs", &s.outputs)) }
                            }
                        }
                    }
                } }
            }
        }
    }

    fn html_calls(&self) -> Markup {
        html! {
            section.card #calls {
                h2 {
                    "Mutating AWS calls "
                    span.count { (self.calls.len()) " — every change the run made or attempted, from the journal" }
                }
                @if self.calls.is_empty() {
                    p.muted { "None." }
                } @else {
                    div.scroll { table {
                        thead { tr {
                            th.num { "#" } th { "Step" } th { "Call" } th { "Key parameters" }
                            th { "Result" } th { "Request id" } th.num { "Start" }
                            th.num { "Duration" }
                        } }
                        tbody { @for c in &self.calls { (self.html_call(c)) } }
                    } }
                }
            }
        }
    }

    fn html_call(&self, c: &super::model::CallReport) -> Markup {
        let row = match c.status {
            CallStatus::Failed => Some("row-bad"),
            CallStatus::Unfinished => Some("row-warn"),
            _ => None,
        };
        html! {
            tr class=[row] {
                td.num {
                    (c.call)
                    @if self.run.resumed > 0 { div.muted { "session " (c.session) } }
                }
                td.nowrap { (c.step) }
                td.mono.nowrap { (c.service) ":" (c.operation) }
                td.mono.wrapall { (c.key_params) (json_details("result", &c.result)) }
                td {
                    (status_badge(c.status.as_str()))
                    @if c.error_code.is_some() || c.error_message.is_some() {
                        div.wrapall style="margin-top:3px;font-size:12px" {
                            b.mono { (c.error_code.as_deref().unwrap_or("")) }
                            " " (c.error_message.as_deref().unwrap_or(""))
                        }
                    }
                }
                td.hash style="min-width:170px" { (c.request_id.as_deref().unwrap_or("")) }
                td.num { (fmt_offset(c.offset_ms)) }
                td.num { (fmt_opt_ms(c.duration_ms)) }
            }
        }
    }

    /// The evidence's facts, as label/value pairs.
    fn evidence_kv(&self) -> Vec<(&'static str, Markup)> {
        let ev = &self.evidence;
        let check = |c: &Check| {
            html! {
                @if c.ok { (badge("ok", "b-ok")) }
                @else { (badge("mismatch", "b-bad")) " " (c.problems.join("; ")) }
            }
        };
        let mut kv: Vec<(&str, Markup)> = vec![
            (
                "Location",
                mono(ev.location.as_deref().unwrap_or("unknown")),
            ),
            (
                "Manifest SHA-256",
                hash(ev.manifest_sha256.as_deref().unwrap_or("")),
            ),
            (
                "Sealed at",
                html! { (ev.sealed_at.as_deref().unwrap_or("")) },
            ),
        ];
        if let Some(c) = &ev.collector {
            let field = |k: &str| c.get(k).and_then(Value::as_str);
            let by = [field("tool"), field("host"), field("aws_principal")]
                .iter()
                .flatten()
                .copied()
                .collect::<Vec<_>>()
                .join(" · ");
            kv.push(("Sealed by", html! { (by) }));
            if let Some(arn) = field("execution_arn") {
                kv.push(("Step Functions execution", mono(arn)));
            }
        }
        if matches!(
            ev.status,
            EvidenceStatus::Verified | EvidenceStatus::Mismatch
        ) {
            kv.push(("manifest.json", check(&ev.manifest)));
            kv.push(("SHA256SUMS", check(&ev.sha256sums)));
            kv.push((
                "Case chain",
                html! { (check(&ev.chain)) " " (mono(&ev.chain_runs.join(" → "))) },
            ));
            kv.push(("Signature", html! { (super::markdown::signature_text(ev)) }));
            kv.push((
                "Previous manifest",
                match &ev.previous_manifest_sha256 {
                    Some(h) => hash(h),
                    None => html! { span.muted { "none: first sealed run of the case" } },
                },
            ));
        }
        kv.extend(self.journal_kv());
        if let Some(e) = &ev.seal_error {
            kv.push(("Seal error", html! { (badge("failed", "b-bad")) " " (e) }));
        }
        if let Some(e) = &ev.verify_error {
            kv.push(("Verification", html! { (e) }));
        }
        if let Some(orig) = &ev.copy_of {
            kv.push((
                "Copy",
                html! { "this is the drill's local copy of " (orig) },
            ));
        }
        kv
    }

    /// The journal's chain and its sealed copy, as label/value pairs.
    fn journal_kv(&self) -> Vec<(&'static str, Markup)> {
        let j = &self.journal;
        vec![
            (
                "Journal hash chain",
                if j.chain_ok {
                    html! { (badge("intact", "b-ok")) " " (j.entries) " entries" }
                } else {
                    html! { (badge("broken", "b-bad")) " " (j.chain_problem.as_deref().unwrap_or("")) }
                },
            ),
            (
                "Journal vs sealed copy",
                match (j.sealed_copy_ok, j.sealed_copy_lines) {
                    (Some(true), Some(n)) => {
                        html! { (badge("matches", "b-ok")) " sealed copy = first " (n) " lines" }
                    }
                    (Some(false), _) => badge("differs", "b-bad"),
                    _ => html! { span.muted { "no sealed copy" } },
                },
            ),
        ]
    }

    fn html_evidence(&self) -> Markup {
        let ev = &self.evidence;
        html! {
            section.card #evidence {
                h2 { "Evidence " (status_badge(ev.status.as_str())) }
                (kv_grid(self.evidence_kv()))
                @if !ev.items.is_empty() {
                    (self.evidence_items())
                    @for (step, first, attempts) in ev.retried_steps() {
                        p.muted {
                            "Step " code { (step) } " ran " (attempts)
                            " attempts: what it saw before its first change is the first attempt's, "
                            @for (n, p) in first.iter().enumerate() {
                                @if n > 0 { ", " }
                                code { (p) }
                            }
                            "; each later attempt's captures are kept beside it under "
                            code { "attempt-N/" } "."
                        }
                    }
                }
            }
        }
    }

    fn evidence_items(&self) -> Markup {
        html! {
            div.scroll { table {
                thead { tr {
                    th { "Path" } th { "State" } th.num { "Size" } th { "SHA-256" }
                    th { "S3 version" } th { "Step" } th { "Source" }
                } }
                tbody {
                    @for i in &self.evidence.items {
                        @let bad = !matches!(i.status, ItemState::Ok);
                        tr class=[bad.then_some("row-bad")] {
                            td.mono.wrapall { (i.path) }
                            td {
                                (status_badge(i.status.as_str()))
                                @if let Some(d) = &i.detail {
                                    div.muted style="font-size:12px" { (d) }
                                }
                            }
                            td.num { (i.size.map(fmt_bytes).unwrap_or_default()) }
                            td.hash {
                                (i.sha256.as_deref().unwrap_or(""))
                                @if let Some(a) = i.actual_sha256.as_ref().filter(|a| bad && Some(*a) != i.sha256.as_ref()) {
                                    div style="color:#b91c1c" { "now " (a) }
                                }
                            }
                            td.hash { (i.s3_version_id.as_deref().unwrap_or("")) }
                            td.nowrap { (i.step_and_attempt()) }
                            td.mono { (i.source.as_deref().unwrap_or("")) }
                        }
                    }
                }
            } }
        }
    }

    fn html_resources(&self) -> Markup {
        html! {
            section.card #resources {
                h2 { "AWS resources " span.count { (self.resources.len()) } }
                @if self.resources.is_empty() {
                    p.muted { "None." }
                } @else {
                    div.scroll { table {
                        thead { tr { th { "Type" } th { "Id" } th { "Details" } th { "In manifest" } } }
                        tbody {
                            @for res in &self.resources {
                                tr {
                                    td.nowrap { (res.kind) }
                                    td.mono.wrapall { (res.id) }
                                    td.mono.wrapall { (key_params(&Value::Object(res.details.clone()))) }
                                    td {
                                        @match res.sealed {
                                            Some(true) => (badge("yes", "b-ok")),
                                            Some(false) => (badge("no", "b-bad")),
                                            None => {},
                                        }
                                    }
                                }
                            }
                        }
                    } }
                }
            }
        }
    }

    /// A fan-out's children: one row each, with each one's findings.
    fn html_children(&self) -> Markup {
        html! {
            @if !self.children.is_empty() {
                section.card #targets {
                    h2 { "Targets " span.count { (self.children.len()) } }
                    div.scroll { table {
                        thead { tr {
                            th { "Target" } th { "Status" } th { "Steps" } th { "Mutating calls" }
                            th { "Evidence" } th { "Integrity" } th { "Findings" }
                        } }
                        tbody {
                            @for c in &self.children {
                                @let (steps, calls) = c.child_line();
                                tr class=[(!c.integrity_ok).then_some("row-bad")] {
                                    td.nowrap { b { (c.run.account_id) "/" (c.run.region) } }
                                    td { (status_badge(&c.run.status)) }
                                    td { (steps) }
                                    td { (calls) }
                                    td { (c.evidence_verdict()) }
                                    td { @if c.integrity_ok { "OK" } @else { b { "NOT OK" } } }
                                    td.wrapall {
                                        @for f in &c.findings {
                                            div { (f.area) ": " (f.message) }
                                        }
                                    }
                                }
                            }
                        }
                    } }
                }
            }
        }
    }

    fn html_notes(&self) -> Markup {
        html! {
            @if !self.notes.is_empty() {
                section.card #notes {
                    h2 { "Notes " span.count { (self.notes.len()) } }
                    table { tbody {
                        @for n in &self.notes {
                            tr {
                                td.num style="width:110px" { (fmt_offset(n.offset_ms)) }
                                td.wrapall { (n.message) }
                            }
                        }
                    } }
                }
            }
        }
    }

    fn html_events(&self) -> Markup {
        html! {
            section.card #events {
                h2 {
                    "Event log "
                    span.count { "every journal entry, in order (" (self.timeline.len()) ")" }
                }
                div.scroll { table {
                    thead { tr {
                        th.num { "Seq" } th.num { "Offset" } th { "Time (UTC)" } th { "Event" }
                        th { "Step" } th { "What happened" }
                    } }
                    tbody {
                        @for t in &self.timeline {
                            @let bold = matches!(
                                t.event.as_str(),
                                "run_started" | "run_finished" | "evidence_sealed"
                            );
                            tr style=[bold.then_some("font-weight:600")] {
                                td.num { (t.seq) }
                                td.num { (fmt_offset(t.offset_ms)) }
                                td.mono.nowrap { (t.ts) }
                                td.mono.nowrap { (t.event) }
                                td.nowrap { (t.step.as_deref().unwrap_or("")) }
                                td.wrapall { (t.summary) }
                            }
                        }
                    }
                } }
            }
        }
    }

    fn html_details(&self) -> Markup {
        let r = &self.run;
        let kv: Vec<(&str, Markup)> = vec![
            ("Playbook file", mono(&r.playbook.path)),
            ("Playbook SHA-256", hash(&r.playbook.sha256)),
            ("Evidence location", mono(&r.evidence_location)),
            ("Concurrency", html! { (r.concurrency) }),
            ("Started", html! { (r.started_at.as_deref().unwrap_or("")) }),
            (
                "Finished",
                html! { (r.finished_at.as_deref().unwrap_or("not finished")) },
            ),
            ("Journal", mono(&self.journal.path)),
        ];
        html! {
            section.card #run {
                h2 { "Run details" }
                (kv_grid(kv))
                @if !r.inputs.is_empty() {
                    table {
                        thead { tr { th { "Input" } th { "Value" } } }
                        tbody {
                            @for (k, v) in &r.inputs {
                                tr {
                                    td.mono.nowrap { (k) }
                                    td.mono.wrapall { (short_value(v)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
