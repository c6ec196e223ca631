//! Assembling a [`Report`] from `run.json` and the journal, one entry at a time.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Map, Value};

use crate::actions::AwsResource;
use crate::actions::CallOutcome;
use crate::events::{RunEvent, StepSummary};
use crate::executor::RunRecord;
use crate::journal::{Entry, LenientRead};

use super::fmt::{compact, fmt_bytes, fmt_ms, key_params, millis_between, short_hash};
use super::model::{
    CallReport, CallStatus, Check, EvidenceReport, EvidenceStatus, Finding, JournalReport,
    NoteReport, PlaybookInfo, Report, ResourceReport, RetryReport, RunOverview, Severity,
    StepReport, TimelineEntry,
};
use super::REPORT_FORMAT;

/// What is known of one step so far.
#[derive(Default)]
struct StepAcc {
    first_started: Option<String>,
    max_attempt: u32,
    finished: Option<StepSummary>,
    retries: Vec<RetryReport>,
    calls: usize,
}

/// The report as it is being assembled from the journal.
#[derive(Default)]
struct Assembly {
    /// The first entry's time: offsets are counted from it.
    t0: Option<String>,
    timeline: Vec<TimelineEntry>,
    steps: Vec<(String, StepAcc)>,
    calls: Vec<CallReport>,
    /// `(session, call)` to its index in `calls`, while it is open.
    open_calls: HashMap<(u32, u64), usize>,
    resources: Vec<ResourceReport>,
    notes: Vec<NoteReport>,
    findings: Vec<Finding>,
    /// 1 for the first `irr run`, 2 after the first `irr resume`, ...
    session: u32,
    playbook_name: Option<String>,
    playbook_version: Option<String>,
    status: Option<String>,
    finished_at: Option<String>,
}

/// Everything that comes from `run.json` and the journal alone.
pub(crate) fn assemble(record: &RunRecord, journal_path: &Path, read: &LenientRead) -> Report {
    let mut a = Assembly {
        t0: read.entries.first().map(|e| e.ts.clone()),
        ..Assembly::default()
    };
    for entry in &read.entries {
        a.entry(entry);
    }
    let steps = a.step_reports();
    let run = a.overview(record);
    Report {
        format: REPORT_FORMAT.to_owned(),
        generated_at: irr_forensics::clock::now_rfc3339(),
        generator: format!("irr {}", env!("CARGO_PKG_VERSION")),
        integrity_ok: true,
        run,
        findings: a.findings,
        journal: JournalReport {
            path: journal_path.display().to_string(),
            entries: read.entries.len(),
            chain_ok: read.chain_problem.is_none() && read.missing.is_none(),
            chain_problem: read.chain_problem.clone().or_else(|| read.missing.clone()),
            torn_last_line: read.torn,
            sealed_copy_ok: None,
            sealed_copy_lines: None,
        },
        timeline: a.timeline,
        steps,
        calls: a.calls,
        evidence: unsealed_evidence(),
        resources: a.resources,
        notes: a.notes,
        children: Vec::new(),
    }
}

/// The evidence before it is checked: nothing known.
fn unsealed_evidence() -> EvidenceReport {
    EvidenceReport {
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
        signature: Check::default(),
        signed_by: None,
        signature_error: None,
        previous_manifest_sha256: None,
        copy_of: None,
    }
}

impl Assembly {
    fn offset(&self, ts: &str) -> Option<i64> {
        self.t0.as_deref().and_then(|t0| millis_between(t0, ts))
    }

    fn step_acc(&mut self, id: &str) -> &mut StepAcc {
        let i = match self.steps.iter().position(|(s, _)| s == id) {
            Some(i) => i,
            None => {
                self.steps.push((id.to_owned(), StepAcc::default()));
                self.steps.len() - 1
            }
        };
        &mut self.steps[i].1
    }

    /// Folds one journal entry in: its timeline line and whatever it tells.
    fn entry(&mut self, e: &Entry) {
        let (step, summary) = match &e.event {
            Some(event) => self.event(e, event),
            None => {
                let mut rest = e.value.clone();
                if let Value::Object(m) = &mut rest {
                    for k in ["seq", "ts", "prev_sha256", "event"] {
                        m.remove(k);
                    }
                }
                (None, format!("{} {}", event_name(e), compact(&rest)))
            }
        };
        self.timeline.push(TimelineEntry {
            seq: e.seq,
            ts: e.ts.clone(),
            offset_ms: self.offset(&e.ts),
            event: event_name(e).to_owned(),
            step,
            session: self.session,
            summary,
        });
    }

    /// The step an event belongs to (if any) and what happened, in one line.
    fn event(&mut self, e: &Entry, event: &RunEvent) -> (Option<String>, String) {
        let ts = &e.ts;
        match event {
            RunEvent::RunStarted {
                playbook,
                version,
                dry_run,
                resumed,
                aws_principal,
                ..
            } => {
                self.session += 1;
                if self.playbook_name.is_none() {
                    self.playbook_name = Some(playbook.clone());
                    self.playbook_version = Some(version.clone());
                }
                let text = format!(
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
                );
                (None, text)
            }
            RunEvent::StepStarted {
                step: id,
                attempt,
                item,
            } => {
                let acc = self.step_acc(id);
                acc.first_started.get_or_insert_with(|| ts.clone());
                acc.max_attempt = acc.max_attempt.max(*attempt);
                let text = format!(
                    "attempt {attempt} started{}",
                    item.map(|i| format!(" (item {i})")).unwrap_or_default()
                );
                (Some(id.clone()), text)
            }
            RunEvent::StepRetrying {
                step: id,
                attempt,
                error,
                delay_ms,
            } => {
                self.step_acc(id).retries.push(RetryReport {
                    attempt: *attempt,
                    error: error.clone(),
                    delay_ms: *delay_ms,
                });
                let text = format!(
                    "attempt {attempt} failed, retrying in {}: {error}",
                    fmt_ms(*delay_ms as i64)
                );
                (Some(id.clone()), text)
            }
            RunEvent::CallStarted {
                call,
                step: id,
                service,
                operation,
                params,
            } => {
                let text = self.call_started(e, *call, id, service, operation, params);
                (Some(id.clone()), text)
            }
            RunEvent::CallFinished { call, outcome } => self.call_finished(e, *call, outcome),
            other => self.record_event(e, other),
        }
    }

    /// Evidence, resources, step and run ends, notes, gaps.
    fn record_event(&mut self, e: &Entry, event: &RunEvent) -> (Option<String>, String) {
        match event {
            RunEvent::EvidenceCaptured {
                step: id,
                path,
                sha256,
                size,
                source,
            } => (
                Some(id.clone()),
                format!(
                    "captured {path} ({}, sha256 {}) from {source}",
                    fmt_bytes(*size),
                    short_hash(sha256)
                ),
            ),
            RunEvent::ResourceRecorded { step: id, resource } => {
                let step = Some(id.clone()).filter(|s| !s.is_empty());
                self.resource(step.clone(), resource);
                (step, format!("resource {} {}", resource.kind, resource.id))
            }
            RunEvent::StepFinished(s) => {
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
                self.step_acc(&s.id).finished = Some(s.clone());
                (Some(s.id.clone()), text)
            }
            RunEvent::Note { message } => {
                self.notes.push(NoteReport {
                    seq: e.seq,
                    ts: e.ts.clone(),
                    offset_ms: self.offset(&e.ts),
                    message: message.clone(),
                });
                (None, message.clone())
            }
            RunEvent::GapRecorded(g) => (
                None,
                format!(
                    "WARNING gap: step {}: {} was not captured: {}",
                    g.step, g.what, g.error
                ),
            ),
            RunEvent::EvidenceSealed(s) => (
                None,
                match &s.error {
                    Some(err) => format!("sealing the evidence FAILED at {}: {err}", s.location),
                    None => format!(
                        "evidence sealed at {}: {} items, manifest sha256 {}",
                        s.location,
                        s.items,
                        s.manifest_sha256.as_deref().unwrap_or("?")
                    ),
                },
            ),
            RunEvent::RunFinished {
                status: s,
                steps: summaries,
                ..
            } => {
                let st = serde_json::to_value(s)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                // A step the journal never mentioned (skipped before it could start) still
                // has its word in the summary.
                for s in summaries {
                    let acc = self.step_acc(&s.id);
                    if acc.finished.is_none() {
                        acc.finished = Some(s.clone());
                    }
                }
                self.status = Some(st.clone());
                self.finished_at = Some(e.ts.clone());
                (None, format!("run finished: {st}"))
            }
            // The call and run-start events are folded in by `event`.
            RunEvent::RunStarted { .. }
            | RunEvent::StepStarted { .. }
            | RunEvent::StepRetrying { .. }
            | RunEvent::CallStarted { .. }
            | RunEvent::CallFinished { .. } => (None, String::new()),
        }
    }

    fn resource(&mut self, step: Option<String>, resource: &AwsResource) {
        match self
            .resources
            .iter_mut()
            .find(|r| r.kind == resource.kind && r.id == resource.id)
        {
            Some(r) => r.details = resource.details.clone(),
            None => self.resources.push(ResourceReport {
                kind: resource.kind.clone(),
                id: resource.id.clone(),
                step,
                details: resource.details.clone(),
                sealed: None,
            }),
        }
    }

    fn call_started(
        &mut self,
        e: &Entry,
        call: u64,
        step: &str,
        service: &str,
        operation: &str,
        params: &Value,
    ) -> String {
        self.step_acc(step).calls += 1;
        let key = key_params(params);
        self.open_calls
            .insert((self.session, call), self.calls.len());
        self.calls.push(CallReport {
            session: self.session,
            call,
            seq: e.seq,
            step: step.to_owned(),
            service: service.to_owned(),
            operation: operation.to_owned(),
            params: params.clone(),
            key_params: key.clone(),
            status: CallStatus::Unfinished,
            request_id: None,
            error_code: None,
            error_message: None,
            result: Value::Null,
            started_at: e.ts.clone(),
            finished_at: None,
            offset_ms: self.offset(&e.ts),
            duration_ms: None,
        });
        format!("call {call} {service}:{operation} started: {key}")
    }

    /// Matches a `call_finished` to its `call_started` in the same session.
    fn call_finished(
        &mut self,
        e: &Entry,
        call: u64,
        outcome: &CallOutcome,
    ) -> (Option<String>, String) {
        let Some(i) = self.open_calls.remove(&(self.session, call)) else {
            self.findings.push(Finding {
                severity: Severity::Warning,
                area: "calls".into(),
                message: format!(
                    "journal entry {}: call_finished for call {call}, which has no call_started in this session",
                    e.seq
                ),
            });
            let text = format!(
                "call {call} finished ({}) without a matching call_started",
                if outcome.ok { "ok" } else { "failed" }
            );
            return (None, text);
        };
        let c = &mut self.calls[i];
        c.status = if !outcome.ok {
            CallStatus::Failed
        } else if outcome.result.get("dry_run").and_then(Value::as_str) == Some("permitted") {
            CallStatus::Permitted
        } else {
            CallStatus::Ok
        };
        c.request_id = outcome.request_id.clone();
        c.error_code = outcome.error_code.clone();
        c.error_message = outcome.error_message.clone();
        c.result = outcome.result.clone();
        c.duration_ms = millis_between(&c.started_at, &e.ts);
        c.finished_at = Some(e.ts.clone());
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
        (Some(c.step.clone()), s)
    }

    fn step_reports(&mut self) -> Vec<StepReport> {
        let steps = std::mem::take(&mut self.steps);
        steps
            .into_iter()
            .map(|(id, acc)| self.step_report(id, acc))
            .collect()
    }

    fn step_report(&self, id: String, acc: StepAcc) -> StepReport {
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
            offset_ms: started_at.as_deref().and_then(|ts| self.offset(ts)),
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
    }

    fn overview(&mut self, record: &RunRecord) -> RunOverview {
        let started_at = self.t0.clone().or_else(|| Some(record.started_at.clone()));
        let finished_at = self.finished_at.take();
        let duration_ms = match (&started_at, &finished_at) {
            (Some(a), Some(b)) => millis_between(a, b),
            _ => None,
        };
        RunOverview {
            run_id: record.run_id.clone(),
            case_id: record.case_id.clone(),
            playbook: PlaybookInfo {
                name: self.playbook_name.take(),
                version: self.playbook_version.take(),
                sha256: record.playbook_sha256.clone(),
                path: record.playbook_path.display().to_string(),
            },
            aws_principal: record.aws_principal.clone(),
            account_id: record.account_id.clone(),
            region: record.region.clone(),
            dry_run: record.dry_run,
            status: self
                .status
                .take()
                .unwrap_or_else(|| "incomplete".to_owned()),
            started_at,
            finished_at,
            duration_ms,
            resumed: self.session.saturating_sub(1),
            concurrency: record.concurrency,
            inputs: shown_inputs(record),
            evidence_location: record.evidence_location.clone(),
        }
    }
}

/// The entry's event name, `?` for a line that has none.
fn event_name(e: &Entry) -> &str {
    match e.name() {
        "" => "?",
        name => name,
    }
}

/// The resolved inputs. Secret inputs are not in run.json: shown as given, never as a value.
fn shown_inputs(record: &RunRecord) -> Map<String, Value> {
    let mut i = record.inputs.clone();
    for name in &record.secret_inputs {
        i.insert(name.clone(), Value::from(crate::secrets::MASK));
    }
    i
}
