//! Unit tests of the report: assembly from a journal, escaping, formatting.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::fmt::fmt_ms;
use super::html::gantt::{tick_label, tick_step};
use super::markdown::{code, md};
use super::*;
use crate::actions::CallOutcome;
use crate::events::{RunEvent, RunStatus, StepStatus, StepSummary};
use crate::journal::Journal;
const EVIL: &str =
    "<script>alert(\"x\")</script><img src=x onerror=alert(1)> | [a](http://e.test) `b` 'q' & *c*";

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
        signing_key: None,
        target: None,
        fanout: None,
        execution: None,
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
    // The HTML templates escape every value, in element content and in (double-quoted)
    // attribute values alike: no tag can open and no attribute can end.
    let evil = "<a href='x'>&\"</a>";
    assert_eq!(
        maud::html! { td { (evil) } }.into_string(),
        "<td>&lt;a href='x'&gt;&amp;&quot;&lt;/a&gt;</td>"
    );
    assert_eq!(
        maud::html! { div title=(evil) {} }.into_string(),
        "<div title=\"&lt;a href='x'&gt;&amp;&quot;&lt;/a&gt;\"></div>"
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
