//! A chaos drill's faults: the `--chaos` file, and what the run did about each injected fault.

use super::*;

/// Reads a `--chaos FILE` through the bounded loader first (an alias bomb is refused like in
/// a playbook), then as the fault proxy's spec.
pub(super) fn load_chaos(path: &Path) -> Result<crate::proxy::ProxySpec, String> {
    let src = crate::load::read_file(path).map_err(|d| d.render(None))?;
    if let Err(problems) = crate::load::parse(&src) {
        return Err(problems
            .iter()
            .map(|d| d.render(Some(&src)))
            .collect::<Vec<_>>()
            .join("\n"));
    }
    crate::proxy::ProxySpec::from_yaml(src.text()).map_err(|e| format!("{}: {e}", path.display()))
}

/// What the run did about each injected fault, from its journal: a gap recorded for that
/// action, a step that failed on it (failed safe: the journal says what was and was not
/// changed), or retried (the SDK's or the step's retry went on).
pub(super) fn chaos_outcomes(
    injected: &[crate::proxy::Injected],
    state_dir: &Path,
    run: &run::RunResult,
) -> Vec<ChaosOutcome> {
    let journal = run
        .run_id
        .as_ref()
        .map(|id| crate::executor::run_dir(state_dir, id).join("journal.jsonl"))
        .and_then(|p| crate::journal::read(&p).ok())
        .map(|e| crate::journal::replay(&e))
        .unwrap_or_default();
    let mut grouped: BTreeMap<(String, crate::proxy::FaultKind), u64> = BTreeMap::new();
    for i in injected {
        *grouped.entry((i.action.clone(), i.fault)).or_default() += 1;
    }
    grouped
        .into_iter()
        .map(|((action, fault), times)| {
            let (service, operation) = action.split_once(':').unwrap_or((&action, ""));
            let gap = journal
                .gaps
                .iter()
                .map(|(_, g)| g)
                .find(|g| g.what.starts_with(&action));
            let failed_call = journal.calls.iter().find(|c| {
                c.finished.as_ref().is_some_and(|(_, o)| {
                    !o.ok
                        && o.error_message.as_deref().is_some_and(|m| {
                            m.starts_with(&format!("{service}:{operation} failed"))
                        })
                })
            });
            let failed_step = run.steps.iter().find(|s| {
                s.status == StepStatus::Failed
                    && s.error.as_deref().is_some_and(|e| e.contains(&action))
            });
            let (outcome, detail) = match (gap, failed_step, failed_call) {
                (None, None, _) if fault == crate::proxy::FaultKind::SnapshotPending => (
                    "waited",
                    "the snapshots were said pending; the run waited until they were completed"
                        .to_owned(),
                ),
                (Some(g), _, _) => ("recorded a gap", format!("step {}: {}", g.step, g.what)),
                (None, Some(s), _) => (
                    "failed safe",
                    format!(
                        "step {} failed; the journal records every change made",
                        s.id
                    ),
                ),
                (None, None, Some(_)) => (
                    "retried",
                    "a call failed and the step's retry went on".to_owned(),
                ),
                (None, None, None) => (
                    "retried",
                    "the SDK's retry went on; no step saw it".to_owned(),
                ),
            };
            ChaosOutcome {
                action,
                fault,
                times,
                outcome: outcome.to_owned(),
                detail,
            }
        })
        .collect()
}
