//! Consumers of run events: the terminal view and the JSON Lines output.
//!
//! The terminal view writes to stderr (progress is not output), with a spinner per running
//! step when stderr is a terminal; the JSON Lines reporter writes every event as one line to
//! stdout, the `run_finished` summary last.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::actions::Gap;
use crate::events::{RunEvent, RunStatus, StepStatus, StepSummary};
use crate::executor::Reporter;

/// One JSON object per line on stdout.
#[derive(Debug, Default)]
pub struct JsonLines;

impl Reporter for JsonLines {
    fn report(&self, event: &RunEvent) {
        if let Ok(line) = serde_json::to_string(event) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}

/// Human-readable progress on stderr.
pub struct Terminal {
    multi: Option<MultiProgress>,
    bars: Mutex<HashMap<String, ProgressBar>>,
    /// Print every mutating call too.
    pub verbose: bool,
}

impl std::fmt::Debug for Terminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminal").finish_non_exhaustive()
    }
}

impl Terminal {
    /// A terminal view; spinners only when stderr is a terminal.
    pub fn new(verbose: bool) -> Terminal {
        Terminal {
            multi: std::io::stderr().is_terminal().then(MultiProgress::new),
            bars: Mutex::new(HashMap::new()),
            verbose,
        }
    }

    fn line(&self, text: &str) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(text);
            }
            None => {
                let _ = writeln!(std::io::stderr().lock(), "{text}");
            }
        }
    }
}

impl Terminal {
    fn step_started(&self, step: &str, attempt: u32, item: Option<usize>) {
        let key = match item {
            Some(i) => format!("{step}[{i}]"),
            None => step.to_owned(),
        };
        let what = if attempt > 1 {
            format!("{key} (attempt {attempt})")
        } else {
            key.clone()
        };
        match &self.multi {
            Some(m) => {
                let bar = m.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("  {spinner} {msg} {elapsed}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_message(what);
                bar.enable_steady_tick(Duration::from_millis(120));
                let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(old) = bars.insert(key, bar) {
                    old.finish_and_clear();
                }
            }
            None => self.line(&format!("  started  {what}")),
        }
    }

    fn step_finished(&self, s: &StepSummary) {
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        let keys: Vec<String> = bars
            .keys()
            .filter(|k| *k == &s.id || k.starts_with(&format!("{}[", s.id)))
            .cloned()
            .collect();
        for k in keys {
            if let Some(b) = bars.remove(&k) {
                b.finish_and_clear();
            }
        }
        drop(bars);
        let mark = match s.status {
            StepStatus::Succeeded => "ok      ",
            StepStatus::Failed => "FAILED  ",
            StepStatus::Skipped => "skipped ",
        };
        let why = s
            .error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        self.line(&format!("  {mark} {}{why}", s.id));
    }

    fn run_finished(&self, run_id: &str, status: RunStatus, steps: &[StepSummary], gaps: &[Gap]) {
        let n = |st: StepStatus| steps.iter().filter(|s| s.status == st).count();
        let word = match status {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "FAILED",
            RunStatus::Aborted => "ABORTED",
        };
        self.line(&format!(
            "run {run_id} {word}: {} succeeded, {} failed, {} skipped",
            n(StepStatus::Succeeded),
            n(StepStatus::Failed),
            n(StepStatus::Skipped)
        ));
        if !gaps.is_empty() {
            self.line(&format!(
                "  WARNING: {} gap(s) in the evidence (optional reads that failed; listed in the manifest's gaps):",
                gaps.len()
            ));
            for g in gaps {
                self.line(&format!("    - {}: {}: {}", g.step, g.what, g.error));
            }
        }
        if status != RunStatus::Succeeded {
            self.line(&format!("  the journal says exactly what was changed and what was not: STATE_DIR/runs/{run_id}/journal.jsonl"));
        }
    }
}

impl Reporter for Terminal {
    fn report(&self, event: &RunEvent) {
        match event {
            RunEvent::RunStarted {
                run_id,
                case_id,
                playbook,
                version,
                dry_run,
                resumed,
                aws_principal,
                ..
            } => {
                let verb = if *resumed { "resuming" } else { "running" };
                let dry = if *dry_run {
                    " (dry run: nothing will change)"
                } else {
                    ""
                };
                self.line(&format!(
                    "{verb} {playbook} {version} for case {case_id}, run {run_id}{dry}"
                ));
                if let Some(p) = aws_principal {
                    self.line(&format!("  as {p}"));
                }
            }
            RunEvent::StepStarted {
                step,
                attempt,
                item,
            } => self.step_started(step, *attempt, *item),
            RunEvent::StepRetrying {
                step,
                attempt,
                error,
                delay_ms,
            } => {
                self.line(&format!(
                    "  retry    {step}: attempt {attempt} failed ({error}); again in {:.1}s",
                    *delay_ms as f64 / 1000.0
                ));
            }
            RunEvent::CallStarted {
                step,
                service,
                operation,
                ..
            } if self.verbose => {
                self.line(&format!("    {step}: {service}:{operation}"));
            }
            RunEvent::CallFinished { call, outcome } if !outcome.ok => {
                let code = outcome.error_code.as_deref().unwrap_or("error");
                self.line(&format!(
                    "    call {call} failed: {code}: {}",
                    outcome.error_message.as_deref().unwrap_or("")
                ));
            }
            RunEvent::StepFinished(s) => self.step_finished(s),
            RunEvent::Note { message } => self.line(&format!("  note: {message}")),
            RunEvent::GapRecorded(g) => self.line(&format!(
                "  WARNING  {}: {} not captured (the step goes on): {}",
                g.step, g.what, g.error
            )),
            RunEvent::EvidenceSealed(e) => {
                match (&e.manifest_sha256, &e.error) {
                    (Some(h), _) => self.line(&format!(
                        "evidence sealed: {} ({} items, manifest sha256 {h})",
                        e.location, e.items
                    )),
                    (None, Some(err)) => {
                        self.line(&format!("EVIDENCE NOT SEALED at {}: {err}", e.location))
                    }
                    _ => {}
                }
                if let Some(k) = &e.signed_by {
                    self.line(&format!("evidence signed: key {k} (manifest.sig.json)"));
                }
                if let Some(err) = &e.signature_error {
                    self.line(&format!("EVIDENCE NOT SIGNED: {err}"));
                }
            }
            RunEvent::RunFinished {
                run_id,
                status,
                steps,
                gaps,
                ..
            } => self.run_finished(run_id, *status, steps, gaps),
            _ => {}
        }
    }
}
