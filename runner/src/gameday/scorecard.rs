//! The drill's scorecard: its times, steps and checks, the targets, the history of drills,
//! and its text form.

use super::*;

pub(super) fn seconds_between(a: &str, b: &str) -> Option<f64> {
    let fmt = &time::format_description::well_known::Rfc3339;
    let a = time::OffsetDateTime::parse(a, fmt).ok()?;
    let b = time::OffsetDateTime::parse(b, fmt).ok()?;
    Some((b - a).as_seconds_f64())
}

pub(super) fn scorecard(
    sc: &Scenario,
    req: &GamedayRequest,
    run: &run::RunResult,
    case: &str,
    seed_s: f64,
    checks: Vec<CheckResult>,
    target: String,
) -> Scorecard {
    let run_dir = run
        .run_id
        .as_ref()
        .map(|id| crate::executor::run_dir(&req.state_dir, id));
    let journal = run_dir
        .as_ref()
        .and_then(|d| crate::journal::read(&d.join("journal.jsonl")).ok())
        .unwrap_or_default();
    let started = journal.first().map(|e| e.ts.clone());
    let journal = crate::journal::replay(&journal);
    let sealed = journal.sealed.first().map(|(ts, _)| ts.clone());
    const CONTAINMENT: &[&str] = &[
        "ec2.isolate_instance",
        "iam.deactivate_access_key",
        "iam.revoke_sessions",
        "s3.block_public_access",
    ];
    let contain_end = run
        .steps
        .iter()
        .filter(|s| {
            req.playbook
                .step(&s.id)
                .is_some_and(|st| CONTAINMENT.contains(&st.action.name))
        })
        .filter_map(|s| s.finished_at.clone())
        .max();
    let steps = run
        .steps
        .iter()
        .map(|s| {
            let secs = match (&s.started_at, &s.finished_at) {
                (Some(a), Some(b)) => seconds_between(a, b),
                _ => None,
            };
            json!({"id": s.id, "status": s.status, "attempts": s.attempts, "seconds": secs})
        })
        .collect();
    let passed = checks.iter().filter(|c| c.passed).count();
    let skipped = checks.iter().filter(|c| c.skipped.is_some()).count();
    Scorecard {
        scenario: sc.metadata.name.clone(),
        playbook: req.playbook.metadata.name.clone(),
        run_id: run.run_id.clone(),
        case_id: case.to_owned(),
        status: run.status,
        time_to_contain_s: started
            .as_deref()
            .zip(contain_end.as_deref())
            .and_then(|(a, b)| seconds_between(a, b)),
        time_to_sealed_evidence_s: started
            .as_deref()
            .zip(sealed.as_deref())
            .and_then(|(a, b)| seconds_between(a, b)),
        seed_s,
        mutating_api_calls: journal.calls.len(),
        steps,
        score: format!("{passed}/{}", checks.len() - skipped),
        checks,
        evidence: run.evidence.as_ref().map(|e| e.location.clone()),
        target,
        evidence_copy: None,
        chaos: Vec::new(),
        started_at: String::new(),
    }
}

/// Adds a check per target of the scenario: passed when the time was measured and is within.
pub(super) fn check_targets(card: &mut Scorecard, t: &Targets) {
    for (metric, max, seen) in [
        (
            "time_to_contain",
            &t.time_to_contain,
            card.time_to_contain_s,
        ),
        (
            "time_to_evidence",
            &t.time_to_evidence,
            card.time_to_sealed_evidence_s,
        ),
    ] {
        let Some(max) = max else { continue };
        let limit = parse_target(max).unwrap_or(0.0);
        let (passed, detail) = match seen {
            Some(v) if v <= limit => (true, format!("{v:.2} s, target {max}")),
            Some(v) => (false, format!("{v:.2} s, MISSED the target {max}")),
            None => (false, format!("not measured (target {max})")),
        };
        card.checks.push(CheckResult {
            check: Expectation::Target {
                metric: metric.to_owned(),
                max: max.clone(),
            },
            passed,
            detail,
            skipped: None,
        });
    }
    let passed = card.checks.iter().filter(|c| c.passed).count();
    let skipped = card.checks.iter().filter(|c| c.skipped.is_some()).count();
    card.score = format!("{passed}/{}", card.checks.len() - skipped);
}

/// `STATE_DIR/gamedays/`: one scorecard per drill.
pub fn history_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("gamedays")
}

/// Keeps the scorecard as `STATE_DIR/gamedays/STARTED-CASE.json`.
pub(super) fn save_history(state_dir: &Path, card: &Scorecard) -> Result<PathBuf, String> {
    let dir = history_dir(state_dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("cannot keep the scorecard in {}: {e}", dir.display()))?;
    let stamp: String = card
        .started_at
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let path = dir.join(format!("{stamp}-{}.json", card.case_id));
    let body = serde_json::to_vec_pretty(card).unwrap_or_default();
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .and_then(|mut f| f.write_all(&body))
        .map_err(|e| format!("cannot keep the scorecard in {}: {e}", path.display()))?;
    Ok(path)
}

/// The name of a check, as the scorecard and JUnit show it (`isolated i-0abc...`).
pub fn check_name(c: &CheckResult) -> String {
    let v = serde_json::to_value(&c.check).unwrap_or_default();
    let kind = v["check"].as_str().unwrap_or("check").to_owned();
    let subject: Vec<String> = v
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.as_str() != "check")
                .map(|(_, v)| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    if subject.is_empty() {
        kind
    } else {
        format!("{kind} {}", subject.join(" "))
    }
}

/// The scorecard as text.
pub fn render_scorecard(c: &Scorecard) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let secs = |v: Option<f64>| v.map(|s| format!("{s:.2} s")).unwrap_or_else(|| "-".into());
    let _ = writeln!(out, "\nGameDay scorecard: {} ({})", c.scenario, c.target);
    let _ = writeln!(out, "  playbook               {}", c.playbook);
    let _ = writeln!(
        out,
        "  case / run             {} / {}",
        c.case_id,
        c.run_id.as_deref().unwrap_or("-")
    );
    let status = c
        .status
        .map(|s| format!("{s:?}").to_lowercase())
        .unwrap_or_else(|| "did not run".into());
    let _ = writeln!(out, "  run status             {status}");
    let _ = writeln!(
        out,
        "  time to contain        {}",
        secs(c.time_to_contain_s)
    );
    let _ = writeln!(
        out,
        "  time to sealed evidence {}",
        secs(c.time_to_sealed_evidence_s)
    );
    let _ = writeln!(out, "  mutating API calls     {}", c.mutating_api_calls);
    let _ = writeln!(out, "  seeding the incident   {:.2} s", c.seed_s);
    let _ = writeln!(out, "\n  steps:");
    for s in &c.steps {
        let t = s["seconds"]
            .as_f64()
            .map(|x| format!("{x:.2} s"))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "    {:<18} {:<10} attempts {}  {t}",
            s["id"].as_str().unwrap_or(""),
            s["status"].as_str().unwrap_or(""),
            s["attempts"]
        );
    }
    if !c.chaos.is_empty() {
        let _ = writeln!(
            out,
            "\n  chaos (faults injected into the run's AWS traffic):"
        );
        for f in &c.chaos {
            let fault = serde_json::to_value(f.fault)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "    {:<44} {fault} x{}: {} ({})",
                f.action, f.times, f.outcome, f.detail
            );
        }
    }
    let _ = writeln!(out, "\n  checks:");
    for ch in &c.checks {
        let name = serde_json::to_value(&ch.check)
            .ok()
            .and_then(|v| v["check"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let name = match &ch.check {
            Expectation::Target { metric, .. } => format!("target {metric}"),
            _ => name,
        };
        let _ = writeln!(
            out,
            "    {} {:<24} {}",
            if ch.skipped.is_some() {
                "skip"
            } else if ch.passed {
                "pass"
            } else {
                "FAIL"
            },
            name,
            ch.detail
        );
    }
    if let Some(e) = &c.evidence {
        let _ = writeln!(out, "\n  evidence: {e}");
    }
    if let Some(e) = &c.evidence_copy {
        let _ = writeln!(out, "  verified local copy: {e}");
    }
    let skipped = c.checks.iter().filter(|ch| ch.skipped.is_some()).count();
    if skipped > 0 {
        let _ = writeln!(
            out,
            "\n  score: {} checks passed ({skipped} skipped: the emulator lacks what they need)",
            c.score
        );
    } else {
        let _ = writeln!(out, "\n  score: {} checks passed", c.score);
    }
    out
}
