//! Stage 4: execute a plan against AWS.
//!
//! Steps run as a graph on tokio: a step starts once every step it needs has succeeded,
//! independent steps run at the same time up to `--concurrency`, `for_each` items run
//! concurrently, attempts have a timeout and are retried with exponential backoff. A failed
//! step with `on_failure: abort` stops new steps from starting; `finally` steps always run.
//!
//! Everything that happens is a [`RunEvent`], written to the journal (durably, before the next
//! AWS call) and passed to the reporter. `irr resume` reads the journal back: steps that
//! succeeded are not repeated; steps that were in flight are run again, and the actions'
//! idempotency (resources found by their case tags) reconciles them with what AWS already holds.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

use crate::actions::{self, ActionCtx, ActionError, ActionOutput, AwsClients};
use crate::events::{RunEvent, RunStatus, StepStatus, StepSummary};
use crate::journal::{Journal, JournalError};
use crate::model::{OnFailure, Playbook, Step};
use crate::secrets::Secrets;
use crate::template;
use irr_forensics::clock::now_rfc3339;

mod recorder;

use recorder::AttemptRecorder;
pub use recorder::{artifact_path, attempt_of, redact, RunRecorder, StagedArtifact};

/// What a run is: stored as `run.json` beside the journal so `irr resume` can continue it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunRecord {
    /// Run id.
    pub run_id: String,
    /// Case id.
    pub case_id: String,
    /// The playbook file (absolute).
    pub playbook_path: PathBuf,
    /// Its SHA-256 when the run started; resume refuses a changed playbook.
    pub playbook_sha256: String,
    /// Resolved inputs. In `run.json` without the secret ones (see [`RunRecord::to_disk`]).
    pub inputs: serde_json::Map<String, Value>,
    /// Inputs declared `secret: true`: never written to disk; `irr resume` takes them again
    /// from `--input` or `IRR_INPUT_NAME`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_inputs: Vec<String>,
    /// Inputs whose value is the playbook's default: only these are rendered as templates
    /// (a value given with `--input` is data). `None` in a `run.json` written before this
    /// field existed: then a value equal to the declared default is rendered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaulted_inputs: Option<Vec<String>>,
    /// Evidence location (`LOCATION`, the run writes under `LOCATION/CASE/RUN/`).
    pub evidence_location: String,
    /// Dry run.
    pub dry_run: bool,
    /// `--concurrency`.
    pub concurrency: usize,
    /// RFC 3339.
    pub started_at: String,
    /// AWS region.
    pub region: String,
    /// Account.
    pub account_id: String,
    /// Who ran it.
    pub aws_principal: String,
    /// The account the S3 evidence bucket must belong to (`--evidence-owner`, else the
    /// caller's account), sent as `ExpectedBucketOwner` on every request on the bucket;
    /// `irr resume`, `irr report` and the case's record reads use it again. `None` for local
    /// evidence (and in a `run.json` written before this field: then the run's account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_owner: Option<String>,
    /// The key that signs the seal: a KMS key ARN or an absolute PEM file path
    /// (`--signing-key`, else the playbook's `evidence.signing_key`); never the key itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<String>,
    /// A fan-out child's account and region: its state is under
    /// `STATE_DIR/runs/RUN_ID/children/ACCOUNT/REGION/`, its evidence under the parent run's
    /// `children/ACCOUNT/REGION/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<irr_forensics::manifest::Target>,
    /// A fan-out parent's targets, and the role assumed in each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fanout: Option<crate::targets::FanoutRecord>,
    /// The Step Functions execution this run is (`irr evidence seal --execution`): its ARN.
    /// Such a run was executed by a state machine, not by irr, and is never resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<String>,
}

impl RunRecord {
    /// Where this run keeps its state ([`run_dir`]; a fan-out child's under its parent's).
    pub fn dir(&self, state_dir: &Path) -> PathBuf {
        let dir = run_dir(state_dir, &self.run_id);
        match &self.target {
            Some(t) => dir.join(t.dir()),
            None => dir,
        }
    }

    /// The bundle's prefix in the evidence store: `CASE/RUN/` (a child's
    /// `CASE/RUN/children/ACCOUNT/REGION/`).
    pub fn bundle_prefix(&self) -> String {
        match &self.target {
            Some(t) => format!("{}/{}/{}/", self.case_id, self.run_id, t.dir()),
            None => format!("{}/{}/", self.case_id, self.run_id),
        }
    }

    /// What `run.json` holds: the record without the values of secret inputs.
    pub fn to_disk(&self) -> RunRecord {
        let mut r = self.clone();
        r.inputs.retain(|k, _| !self.secret_inputs.contains(k));
        r
    }

    /// Writes `run.json` (without secrets) into `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::write(
            dir.join("run.json"),
            serde_json::to_vec_pretty(&self.to_disk()).unwrap_or_default(),
        )
    }
}

/// Where a run keeps its state: `STATE_DIR/runs/RUN_ID/`.
pub fn run_dir(state_dir: &Path, run_id: &str) -> PathBuf {
    state_dir.join("runs").join(run_id)
}

/// A new run id: `r-YYYYMMDDTHHMMSSZ-XXXXXX`.
pub fn new_run_id() -> String {
    let now = time::OffsetDateTime::now_utc();
    let mut h = Sha256::new();
    h.update(now.unix_timestamp_nanos().to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    let rnd = hex::encode(&h.finalize()[..3]);
    format!(
        "r-{:04}{:02}{:02}T{:02}{:02}{:02}Z-{rnd}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// Consumes events (terminal view, JSON Lines).
pub trait Reporter: Send + Sync {
    /// One event, after it was journaled.
    fn report(&self, event: &RunEvent);
}

/// The journal and the reporter behind one `emit`; every event is masked first.
pub struct Sink {
    journal: Journal,
    reporter: Box<dyn Reporter>,
    failed_write: AtomicBool,
    secrets: Secrets,
}

impl Sink {
    /// The run's secret values (actions register more, e.g. NoEcho parameters).
    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// Masks the event's secrets, journals it (durably), then reports it.
    pub fn emit(&self, event: RunEvent) {
        let event = self
            .secrets
            .mask_serde(&event)
            .unwrap_or_else(|| RunEvent::Note {
                message: "an event was withheld: its secrets could not be masked".to_owned(),
            });
        let written = self.journal.append(&event);
        if let Ok(seq) = written {
            crash_point(seq);
        }
        if let Err(e) = written {
            // A journal that cannot be written must stop the run: say so once, loudly.
            if !self.failed_write.swap(true, Ordering::SeqCst) {
                self.reporter.report(&RunEvent::Note {
                    message: format!(
                        "cannot write the journal: {e}; no further AWS change will be started"
                    ),
                });
            }
        }
        self.reporter.report(&event);
    }

    /// `true` once a journal write failed.
    pub fn broken(&self) -> bool {
        self.failed_write.load(Ordering::SeqCst)
    }
}

/// Fault injection for the crash tests: with `IRR_FAULT_KILL_AT_SEQ=N`, the process sends
/// itself SIGKILL right after journal entry N is durable, exactly as a crash or `kill -9`
/// would stop it; with `IRR_FAULT_SIGINT_AT_SEQ=N`, SIGINT (a responder's Ctrl-C). Compiled
/// into debug builds only (the tests'): a release build has no such hook, so no environment
/// variable can make a responder's `irr` kill itself mid-containment
/// (`tests/tests/hostile_inputs.rs` checks the binary).
#[cfg(not(debug_assertions))]
fn crash_point(_seq: u64) {}

/// See the release-build `crash_point` above.
#[cfg(debug_assertions)]
fn crash_point(seq: u64) {
    static AT: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    let at = AT.get_or_init(|| {
        std::env::var("IRR_FAULT_KILL_AT_SEQ")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    static INT: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    let int = INT.get_or_init(|| {
        std::env::var("IRR_FAULT_SIGINT_AT_SEQ")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    if *int == Some(seq) {
        let _ = std::process::Command::new("kill")
            .args(["-INT", &std::process::id().to_string()])
            .status();
    }
    if *at == Some(seq) {
        let _ = std::process::Command::new("kill")
            .args(["-9", &std::process::id().to_string()])
            .status();
        std::process::abort();
    }
}

/// A run about to be executed.
pub struct Execution {
    /// The playbook.
    pub playbook: Playbook,
    /// The run.
    pub record: RunRecord,
    /// AWS clients.
    pub aws: AwsClients,
    /// Auto-approve (`--yes`, drills).
    pub assume_yes: bool,
    /// Where runs live.
    pub state_dir: PathBuf,
    /// Results of an earlier attempt of this run (resume).
    pub previous: HashMap<String, StepSummary>,
    /// The last attempt number each step (`STEP`, or `STEP/ITEM` for a `for_each` item)
    /// reached before a resume, from the journal's `step_started`: attempts go on counting
    /// from there, so their artifacts never land on an earlier attempt's paths.
    pub previous_attempts: HashMap<String, u32>,
    /// The run's evidence store, opened and checked (actions that write into it directly:
    /// `ssm.capture_volatile`).
    pub store: Option<irr_forensics::Store>,
    /// A fan-out's limit on `for_each` items at once across all its children
    /// (`--concurrency`); each item also holds one of its own run's `concurrency`.
    pub shared_limit: Option<Arc<tokio::sync::Semaphore>>,
    /// Items captured before the first step (the finding that started the run); none on
    /// resume (the journal has them already).
    pub first_items: Vec<FirstItem>,
}

/// An item a run captures before its first step: the finding of `irr run --finding`, kept
/// exactly as given (masked like every item where it holds a secret input's value).
#[derive(Clone, Debug)]
pub struct FirstItem {
    /// Its path in the bundle (`finding/finding.json`).
    pub path: String,
    /// The manifest's `step` for it (`trigger`).
    pub step: String,
    /// Its bytes.
    pub content: Vec<u8>,
    /// Where it came from.
    pub source: String,
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    /// Status.
    pub status: RunStatus,
    /// Every step.
    pub steps: Vec<StepSummary>,
    /// The recorder (artifacts and resources) for sealing.
    pub recorder: Arc<RunRecorder>,
}

/// Opens the run's journal and builds the sink.
pub fn open_sink(
    state_dir: &Path,
    run_id: &str,
    reporter: Box<dyn Reporter>,
    secrets: Secrets,
) -> Result<Arc<Sink>, JournalError> {
    open_sink_at(&run_dir(state_dir, run_id), reporter, secrets)
}

/// [`open_sink`] of the run whose state is in `dir` (a fan-out child's: [`RunRecord::dir`]).
pub fn open_sink_at(
    dir: &Path,
    reporter: Box<dyn Reporter>,
    secrets: Secrets,
) -> Result<Arc<Sink>, JournalError> {
    let dir = dir.to_owned();
    std::fs::create_dir_all(&dir).map_err(|source| JournalError::Io {
        path: dir.clone(),
        source,
    })?;
    Ok(Arc::new(Sink {
        journal: Journal::open(&dir.join("journal.jsonl"))?,
        reporter,
        failed_write: AtomicBool::new(false),
        secrets,
    }))
}

/// Runs the steps, then the finally steps. `interrupted` is set by Ctrl-C.
pub async fn execute(exec: Execution, sink: Arc<Sink>, interrupted: Arc<AtomicBool>) -> Outcome {
    let staging = exec.record.dir(&exec.state_dir).join("evidence");
    let recorder = Arc::new(RunRecorder::open(
        sink.clone(),
        staging,
        exec.record.evidence_location.clone(),
        exec.record.evidence_owner.clone(),
        exec.store.clone(),
        exec.record.target.clone(),
    ));
    let base_ctx = context(&exec);
    // One Ctrl-C watcher for the whole run, installed before the first step starts, so no
    // interrupt is lost between two waits.
    let interrupt = Arc::new(tokio::sync::Notify::new());
    let watcher = {
        let interrupted = interrupted.clone();
        let interrupt = interrupt.clone();
        let sink = sink.clone();
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                if !interrupted.swap(true, Ordering::SeqCst) {
                    sink.emit(RunEvent::Note {
                        message: "interrupted: in-flight steps finish, no new step starts, then finally runs and the evidence is sealed".to_owned(),
                    });
                }
                interrupt.notify_waiters();
            }
        })
    };
    let shared = Arc::new(Shared {
        previous_attempts: exec.previous_attempts.clone(),
        interrupt,
        aws: exec.aws.clone(),
        record: exec.record.clone(),
        assume_yes: exec.assume_yes,
        recorder: recorder.clone(),
        sink: sink.clone(),
        playbook_dir: exec
            .record
            .playbook_path
            .parent()
            .map(Path::to_owned)
            .unwrap_or_default(),
        shared_limit: exec.shared_limit.clone(),
    });
    let mut results: HashMap<String, StepSummary> = exec
        .previous
        .iter()
        .filter(|(_, s)| s.status == StepStatus::Succeeded)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // The finding first: a run started by a finding that cannot keep it runs no step.
    let mut aborted = !stage_first_items(&exec.first_items, &recorder, &sink);
    let declined = Arc::new(AtomicBool::new(false));
    run_graph(
        &exec.playbook.steps,
        &mut results,
        &shared,
        &base_ctx,
        exec.record.concurrency,
        &interrupted,
        &declined,
        &mut aborted,
        false,
    )
    .await;
    // A security group swap cut off by a step timeout goes on in its own task: let it end
    // (isolated, compensated, or failed loudly) before finally and the seal.
    actions::ec2::settle().await;
    // finally: always, whatever happened.
    let mut ignore = false;
    let never = Arc::new(AtomicBool::new(false));
    run_graph(
        &exec.playbook.finally,
        &mut results,
        &shared,
        &base_ctx,
        exec.record.concurrency,
        &never,
        &declined,
        &mut ignore,
        true,
    )
    .await;

    actions::ec2::settle().await;
    watcher.abort();
    let steps: Vec<StepSummary> = exec
        .playbook
        .all_steps()
        .filter_map(|s| results.get(&s.id).cloned())
        .collect();
    let status = if interrupted.load(Ordering::SeqCst) || declined.load(Ordering::SeqCst) {
        RunStatus::Aborted
    } else if steps.iter().any(|s| s.status == StepStatus::Failed) || aborted || sink.broken() {
        RunStatus::Failed
    } else {
        RunStatus::Succeeded
    };
    Outcome {
        status,
        steps,
        recorder,
    }
}

/// Stages the run's first items; `false` (and a note) when one could not be captured.
fn stage_first_items(items: &[FirstItem], recorder: &RunRecorder, sink: &Sink) -> bool {
    let mut all = true;
    for item in items {
        if let Err(e) = recorder.stage_item(item) {
            all = false;
            sink.emit(RunEvent::Note {
                message: format!(
                    "{} could not be captured ({e}); no step runs, since the run would lack the evidence of what started it",
                    item.path
                ),
            });
        }
    }
    all
}

struct Shared {
    previous_attempts: HashMap<String, u32>,
    interrupt: Arc<tokio::sync::Notify>,
    aws: AwsClients,
    record: RunRecord,
    assume_yes: bool,
    recorder: Arc<RunRecorder>,
    sink: Arc<Sink>,
    playbook_dir: PathBuf,
    shared_limit: Option<Arc<tokio::sync::Semaphore>>,
}

/// The template context: inputs, case, run, playbook, aws; steps are added as they finish.
fn context(exec: &Execution) -> Value {
    let r = &exec.record;
    let mut ctx = json!({
        "case": {"id": r.case_id},
        "run": {"id": r.run_id, "started_at": r.started_at},
        "playbook": {"name": exec.playbook.metadata.name, "version": exec.playbook.metadata.version},
        "aws": {"account_id": r.account_id, "region": r.region},
        "steps": {},
    });
    let inputs: serde_json::Map<String, Value> = r
        .inputs
        .iter()
        .map(|(k, v)| {
            let v = if exec
                .playbook
                .renders_input(k, v, r.defaulted_inputs.as_deref())
            {
                template::render_value(v, &ctx).unwrap_or_else(|_| v.clone())
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect();
    ctx["inputs"] = Value::Object(inputs);
    ctx
}

fn with_steps(base: &Value, results: &HashMap<String, StepSummary>) -> Value {
    let mut ctx = base.clone();
    let steps: serde_json::Map<String, Value> = results
        .iter()
        .map(|(id, s)| {
            (
                id.clone(),
                json!({"status": s.status.as_str(), "outputs": s.outputs}),
            )
        })
        .collect();
    ctx["steps"] = Value::Object(steps);
    ctx
}

#[allow(clippy::too_many_arguments)]
async fn run_graph(
    steps: &[Step],
    results: &mut HashMap<String, StepSummary>,
    shared: &Arc<Shared>,
    base_ctx: &Value,
    concurrency: usize,
    interrupted: &Arc<AtomicBool>,
    declined: &Arc<AtomicBool>,
    aborted: &mut bool,
    is_finally: bool,
) {
    let mut pending: Vec<&Step> = steps
        .iter()
        .filter(|s| !results.contains_key(&s.id))
        .collect();
    let mut running: JoinSet<StepSummary> = JoinSet::new();
    // Task id -> step id, so a step whose task panicked is still named in the journal.
    let mut in_flight: HashMap<tokio::task::Id, String> = HashMap::new();
    loop {
        let stop = *aborted || interrupted.load(Ordering::SeqCst) || shared.sink.broken();
        let mut i = 0;
        while i < pending.len() {
            let step = pending[i];
            let deps_done = step
                .needs
                .iter()
                .chain(&step.after)
                .all(|d| results.contains_key(d));
            if !deps_done {
                i += 1;
                continue;
            }
            let blocked = step.needs.iter().find(|d| {
                results
                    .get(*d)
                    .is_some_and(|r| r.status != StepStatus::Succeeded)
            });
            if let Some(dep) = blocked {
                let status = results[dep].status.as_str();
                let summary = skipped(step, format!("needs \"{dep}\", which {status}"));
                shared.sink.emit(RunEvent::StepFinished(summary.clone()));
                results.insert(step.id.clone(), summary);
                pending.remove(i);
                i = 0;
                continue;
            }
            if stop || running.len() >= concurrency.max(1) {
                i += 1;
                continue;
            }
            let ctx = with_steps(base_ctx, results);
            let step_owned = step.clone();
            let shared = shared.clone();
            let declined = declined.clone();
            let handle =
                running.spawn(async move { run_step(&step_owned, &shared, ctx, &declined).await });
            in_flight.insert(handle.id(), step.id.clone());
            pending.remove(i);
        }
        if running.is_empty() {
            break;
        }
        let joined = tokio::select! {
            j = running.join_next() => j,
            // Woken by the Ctrl-C watcher; the flag is what counts (checked at the top).
            _ = shared.interrupt.notified(), if !is_finally => continue,
        };
        let Some(joined) = joined else { break };
        let summary = match joined {
            Ok(s) => s,
            Err(e) => StepSummary {
                id: in_flight.get(&e.id()).cloned().unwrap_or_default(),
                status: StepStatus::Failed,
                attempts: 0,
                started_at: None,
                finished_at: Some(now_rfc3339()),
                outputs: Value::Null,
                error: Some(format!("internal error: {e}")),
            },
        };
        in_flight.retain(|_, id| id != &summary.id);
        if summary.status == StepStatus::Failed {
            let on_failure = steps
                .iter()
                .find(|s| s.id == summary.id)
                .map(|s| s.on_failure);
            // A dry run goes on after a denial, to report every step's.
            if on_failure == Some(OnFailure::Abort) && !is_finally && !shared.record.dry_run {
                *aborted = true;
            }
        }
        shared.sink.emit(RunEvent::StepFinished(summary.clone()));
        results.insert(summary.id.clone(), summary);
    }
    // Whatever could not start (abort, interrupt) is recorded as skipped.
    for step in pending {
        let why = if interrupted.load(Ordering::SeqCst) {
            "the run was interrupted"
        } else {
            "the run was aborted after a failed step"
        };
        let summary = skipped(step, why.to_owned());
        shared.sink.emit(RunEvent::StepFinished(summary.clone()));
        results.insert(step.id.clone(), summary);
    }
}

fn skipped(step: &Step, why: String) -> StepSummary {
    StepSummary {
        id: step.id.clone(),
        status: StepStatus::Skipped,
        attempts: 0,
        started_at: None,
        finished_at: Some(now_rfc3339()),
        outputs: Value::Null,
        error: Some(why),
    }
}

/// `true`/`false`, or the strings "true"/"false".
fn truthy(v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.trim() == "true" => Ok(true),
        Value::String(s) if s.trim() == "false" || s.trim().is_empty() => Ok(false),
        other => Err(format!("when must render to true or false, got {other}")),
    }
}

async fn run_step(
    step: &Step,
    shared: &Arc<Shared>,
    ctx: Value,
    declined: &Arc<AtomicBool>,
) -> StepSummary {
    let started = now_rfc3339();
    let fail = |attempts: u32, error: String| StepSummary {
        id: step.id.clone(),
        status: StepStatus::Failed,
        attempts,
        started_at: Some(started.clone()),
        finished_at: Some(now_rfc3339()),
        outputs: Value::Null,
        error: Some(error),
    };
    if let Some(w) = &step.when {
        match template::render_value(w, &ctx)
            .map_err(|e| e.to_string())
            .and_then(|v| truthy(&v))
        {
            Ok(true) => {}
            Ok(false) => return skipped(step, "when was false".to_owned()),
            Err(e) => return fail(0, format!("when: {e}")),
        }
    }
    if shared.record.dry_run {
        // Values that exist only once earlier steps really ran (a snapshot id) cannot be
        // checked with AWS in a dry run: the step is reported as skipped, saying why.
        let rendered =
            template::render_value(&Value::Object(step.with.clone()), &ctx).unwrap_or(Value::Null);
        if template::strings_in(&rendered)
            .iter()
            .any(|s| s.starts_with("dry-run:"))
        {
            return skipped(
                step,
                "dry run: its parameters are resources earlier steps would create".to_owned(),
            );
        }
    }
    let items: Option<Vec<Value>> = match &step.for_each {
        None => None,
        Some(f) => match template::render_value(f, &ctx) {
            Ok(Value::Array(items)) => Some(items),
            Ok(other) => return fail(0, format!("for_each must render to a list, got {other}")),
            Err(e) => return fail(0, format!("for_each: {e}")),
        },
    };
    match items {
        None => {
            let (attempts, result) = attempt_loop(step, shared, &ctx, None, declined).await;
            match result {
                Ok(out) => StepSummary {
                    id: step.id.clone(),
                    status: StepStatus::Succeeded,
                    attempts,
                    started_at: Some(started),
                    finished_at: Some(now_rfc3339()),
                    outputs: Value::Object(out.outputs),
                    error: None,
                },
                Err(e) => fail(attempts, e),
            }
        }
        Some(items) => {
            let (attempts, outputs, errors) = run_items(step, shared, &ctx, items, declined).await;
            if errors.is_empty() {
                StepSummary {
                    id: step.id.clone(),
                    status: StepStatus::Succeeded,
                    attempts,
                    started_at: Some(started),
                    finished_at: Some(now_rfc3339()),
                    outputs: Value::Object(outputs),
                    error: None,
                }
            } else {
                let mut s = fail(attempts, errors.join("; "));
                s.outputs = Value::Object(outputs);
                s
            }
        }
    }
}

/// Runs every item of a `for_each` step (at most `--concurrency` at once) and gathers them:
/// the highest attempt reached, each output as a list in item order (`null` for an item that
/// failed), and each failed item's error.
async fn run_items(
    step: &Step,
    shared: &Arc<Shared>,
    ctx: &Value,
    items: Vec<Value>,
    declined: &Arc<AtomicBool>,
) -> (u32, serde_json::Map<String, Value>, Vec<String>) {
    let sem = Arc::new(tokio::sync::Semaphore::new(
        shared.record.concurrency.max(1),
    ));
    prefetch_items(step, shared, ctx, &items).await;
    let n = items.len();
    let mut set = JoinSet::new();
    let mut ids = HashMap::new();
    for (i, item) in items.into_iter().enumerate() {
        let mut ictx = ctx.clone();
        ictx["item"] = item;
        ictx["item_index"] = json!(i);
        let step = step.clone();
        let shared = shared.clone();
        let sem = sem.clone();
        let declined = declined.clone();
        let handle = set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let _shared = match &shared.shared_limit {
                Some(limit) => Some(limit.clone().acquire_owned().await),
                None => None,
            };
            let r = attempt_loop(&step, &shared, &ictx, Some(i), &declined).await;
            (i, r)
        });
        ids.insert(handle.id(), i);
    }
    let results = join_items(set, &ids, n).await;
    let mut outputs: serde_json::Map<String, Value> = step
        .action
        .outputs
        .iter()
        .map(|o| (o.name.to_owned(), json!([])))
        .collect();
    let mut errors = Vec::new();
    let mut attempts = 0;
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok((a, Ok(out))) => {
                attempts = attempts.max(a);
                for (k, v) in outputs.iter_mut() {
                    if let Value::Array(list) = v {
                        list.push(out.outputs.get(k).cloned().unwrap_or(Value::Null));
                    }
                }
            }
            Ok((a, Err(e))) => {
                attempts = attempts.max(a);
                errors.push(format!("item {i}: {e}"));
                for v in outputs.values_mut() {
                    if let Value::Array(list) = v {
                        list.push(Value::Null);
                    }
                }
            }
            // A panicked or cancelled item fails the step like a failed one.
            Err(why) => {
                errors.push(format!("item {i}: {why}"));
                for v in outputs.values_mut() {
                    if let Value::Array(list) = v {
                        list.push(Value::Null);
                    }
                }
            }
        }
    }
    (attempts, outputs, errors)
}

/// Lets the step's action read what all its items need in batches before they run
/// ([`actions::Action::prefetch`]). Items whose parameters do not render are left out (they
/// fail in their own attempt); a failed prefetch only means the items read for themselves.
async fn prefetch_items(step: &Step, shared: &Arc<Shared>, ctx: &Value, items: &[Value]) {
    if items.len() < 2 {
        return;
    }
    let with = Value::Object(step.with.clone());
    let params: Vec<Value> = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let mut ictx = ctx.clone();
            ictx["item"] = item.clone();
            ictx["item_index"] = json!(i);
            template::render_value(&with, &ictx).ok()
        })
        .collect();
    let actx = ActionCtx {
        aws: shared.aws.clone(),
        case_id: shared.record.case_id.clone(),
        run_id: shared.record.run_id.clone(),
        step_id: step.id.clone(),
        dry_run: shared.record.dry_run,
        assume_yes: shared.assume_yes,
        recorder: Arc::new(AttemptRecorder {
            run: shared.recorder.clone(),
            attempt: 0,
        }),
        playbook_dir: shared.playbook_dir.clone(),
    };
    if let Err(e) = actions::prefetch(step.action.name, &actx, params).await {
        tracing::info!(
            "step {}: batched reads failed ({e}); each item reads for itself",
            step.id
        );
    }
}

/// Waits for every `for_each` item task and returns each item's result in item order; an
/// item whose task panicked or was cancelled (or that never reported) is an `Err` saying so,
/// never silently missing.
async fn join_items<T: 'static>(
    mut set: JoinSet<(usize, T)>,
    ids: &HashMap<tokio::task::Id, usize>,
    n: usize,
) -> Vec<Result<T, String>> {
    let mut results: Vec<Result<T, String>> =
        (0..n).map(|_| Err("did not finish".to_owned())).collect();
    while let Some(j) = set.join_next().await {
        match j {
            Ok((i, r)) if i < n => results[i] = Ok(r),
            Ok(_) => {}
            Err(e) => {
                if let Some(&i) = ids.get(&e.id()) {
                    results[i] = Err(if e.is_panic() {
                        format!("internal error: the item's task panicked ({e})")
                    } else {
                        format!("the item's task was cancelled ({e})")
                    });
                }
            }
        }
    }
    results
}

async fn attempt_loop(
    step: &Step,
    shared: &Arc<Shared>,
    ctx: &Value,
    item: Option<usize>,
    declined: &AtomicBool,
) -> (u32, Result<ActionOutput, String>) {
    let params = match template::render_value(&Value::Object(step.with.clone()), ctx) {
        Ok(p) => p,
        Err(e) => return (0, Err(format!("parameters: {e}"))),
    };
    if let Err(e) = check_params(step, &params) {
        return (0, Err(e));
    }
    let step_key = match item {
        None => step.id.clone(),
        Some(i) => format!("{}/{i}", step.id),
    };
    // The retry budget is this execution's; the numbering goes on across a resume.
    let max = step.retries + 1;
    let base = shared
        .previous_attempts
        .get(&step_key)
        .copied()
        .unwrap_or(0);
    let mut tries = 0;
    loop {
        tries += 1;
        let attempt = base + tries;
        shared.sink.emit(RunEvent::StepStarted {
            step: step.id.clone(),
            attempt,
            item,
        });
        let actx = ActionCtx {
            aws: shared.aws.clone(),
            case_id: shared.record.case_id.clone(),
            run_id: shared.record.run_id.clone(),
            step_id: step_key.clone(),
            dry_run: shared.record.dry_run,
            assume_yes: shared.assume_yes,
            recorder: Arc::new(AttemptRecorder {
                run: shared.recorder.clone(),
                attempt,
            }),
            playbook_dir: shared.playbook_dir.clone(),
        };
        let started = Instant::now();
        let fut = dispatch(step, &actx, params.clone(), shared, attempt);
        let result = match step.timeout {
            Some(t) => match tokio::time::timeout(t, fut).await {
                Ok(r) => r,
                Err(_) => Err(ActionError::Target(format!(
                    "timed out after {}s",
                    t.as_secs()
                ))),
            },
            None => fut.await,
        };
        match result {
            Ok(out) => return (attempt, Ok(out)),
            Err(ActionError::Declined(why)) => {
                declined.store(true, Ordering::SeqCst);
                return (attempt, Err(format!("declined: {why}")));
            }
            Err(e @ ActionError::Params(_)) => return (attempt, Err(e.to_string())),
            Err(e) if tries >= max => return (attempt, Err(e.to_string())),
            Err(e) => {
                let delay = backoff(attempt, started.elapsed());
                shared.sink.emit(RunEvent::StepRetrying {
                    step: step.id.clone(),
                    attempt,
                    error: e.to_string(),
                    delay_ms: delay.as_millis() as u64,
                });
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Exponential backoff: 1, 2, 4, 8, then 16 s.
fn backoff(attempt: u32, _took: Duration) -> Duration {
    Duration::from_secs((1u64 << attempt.min(5).saturating_sub(1)).min(30))
}

/// Checks the rendered parameters against the catalog's types (what could not be checked
/// statically, e.g. a value that came from a step's output).
fn check_params(step: &Step, params: &Value) -> Result<(), String> {
    let Value::Object(map) = params else {
        return Ok(());
    };
    for p in step.action.params {
        if let Some(v) = map.get(p.name) {
            p.ty.value_type()
                .check(v)
                .map_err(|e| format!("parameter \"{}\": {e}", p.name))?;
        }
    }
    Ok(())
}

/// Actions this build can run.
pub fn implemented(action: &str) -> bool {
    action == "evidence.capture" || actions::ACTIONS.contains(&action)
}

async fn dispatch(
    step: &Step,
    ctx: &ActionCtx,
    params: Value,
    shared: &Arc<Shared>,
    attempt: u32,
) -> Result<ActionOutput, ActionError> {
    if step.action.name == "evidence.capture" {
        return evidence_capture(ctx, params, shared, attempt).await;
    }
    actions::dispatch(step.action.name, ctx, params).await
}

async fn evidence_capture(
    ctx: &ActionCtx,
    params: Value,
    shared: &Arc<Shared>,
    attempt: u32,
) -> Result<ActionOutput, ActionError> {
    // The parameters are the action's one declaration (`actions::evidence::CaptureParams`).
    let p: actions::evidence::CaptureParams = actions::parse_params("evidence.capture", params)?;
    let name = p.name.as_str();
    // A rendered name is checked as the validator checks a literal one, before anything is
    // read or written.
    crate::validate::check_capture_name(name)
        .map_err(|(msg, help)| ActionError::Params(format!("evidence.capture: {msg}; {help}")))?;
    let (bytes, source) = match (&p.content, p.file.as_deref()) {
        (Some(Value::String(s)), None) => (s.clone().into_bytes(), "playbook".to_owned()),
        (Some(v), None) => (
            serde_json::to_vec_pretty(v).unwrap_or_default(),
            "playbook".to_owned(),
        ),
        (None, Some(f)) => {
            // Streamed, never read into memory: one pass hashes and writes the evidence copy.
            let path = shared.playbook_dir.join(f);
            let art = shared
                .recorder
                .stage_file(&ctx.step_id, attempt, name, path, &format!("file:{f}"))
                .await?;
            return Ok(ActionOutput::default()
                .with("path", art.path)
                .with("sha256", art.sha256));
        }
        _ => {
            return Err(ActionError::Params(
                "evidence.capture: give exactly one of content or file".into(),
            ))
        }
    };
    let art = shared
        .recorder
        .stage(&ctx.step_id, attempt, name, &bytes, &source)?;
    Ok(ActionOutput::default()
        .with("path", art.path)
        .with("sha256", art.sha256))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_have_their_own_artifact_paths() {
        assert_eq!(
            artifact_path("isolate", 1, "before.json"),
            "artifacts/isolate/before.json"
        );
        assert_eq!(
            artifact_path("isolate", 2, "before.json"),
            "artifacts/isolate/attempt-2/before.json"
        );
        assert_eq!(
            artifact_path("isolate/3", 12, "a.json"),
            "artifacts/isolate/3/attempt-12/a.json"
        );
        for (step, attempt, name) in [
            ("isolate", 1, "before.json"),
            ("isolate", 2, "before.json"),
            ("attempt-2", 1, "x.json"),
            ("attempt-2", 3, "x.json"),
            ("fleet/7", 4, "x.json"),
        ] {
            let path = artifact_path(step, attempt, name);
            assert_eq!(attempt_of(&path, step), attempt, "{path}");
        }
        assert_eq!(attempt_of("artifacts/s/attempt-x/n", "s"), 1);
        assert_eq!(attempt_of("journal.jsonl", "s"), 1);
    }

    #[test]
    fn staging_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let sink = open_sink(
            dir.path(),
            "r-1",
            Box::new(crate::reporter::JsonLines),
            Secrets::default(),
        )
        .unwrap();
        let rec = RunRecorder::open(
            sink,
            dir.path().join("evidence"),
            String::new(),
            None,
            None,
            None,
        );
        let first = rec.stage("s", 1, "a.json", b"one", "test").unwrap();
        let again = rec.stage("s", 1, "a.json", b"two", "test").unwrap_err();
        assert!(again.to_string().contains("never overwritten"), "{again}");
        let second = rec.stage("s", 2, "a.json", b"two", "test").unwrap();
        assert_eq!(first.path, "artifacts/s/a.json");
        assert_eq!(second.path, "artifacts/s/attempt-2/a.json");
        assert_eq!(
            std::fs::read(dir.path().join("evidence").join(&first.path)).unwrap(),
            b"one"
        );
        assert_eq!(rec.artifacts().len(), 2);
    }

    #[test]
    fn redaction_hides_secret_keys_anywhere() {
        let v = json!({"AccessKeyId": "AKIA...", "nested": [{"SecretAccessKey": "x", "SessionToken": "y"}]});
        let r = redact(&v);
        assert_eq!(r["AccessKeyId"], "AKIA...");
        assert_eq!(r["nested"][0]["SecretAccessKey"], "[redacted]");
        assert_eq!(r["nested"][0]["SessionToken"], "[redacted]");
    }

    #[test]
    fn run_ids_are_unique_enough_and_sortable() {
        let a = new_run_id();
        assert!(a.starts_with("r-2"), "{a}");
        assert_eq!(a.len(), "r-20261127T120000Z-abcdef".len());
    }

    #[test]
    fn every_catalog_action_can_run() {
        for a in crate::catalog::all() {
            assert!(
                implemented(a.name),
                "{} is in the catalog but nothing runs it",
                a.name
            );
        }
    }

    /// A `for_each` item whose task panics or is cancelled fails its step: it is reported
    /// by index, whether it is the last item or not.
    #[tokio::test]
    async fn a_panicked_or_cancelled_item_is_an_error() {
        let mut set: JoinSet<(usize, u32)> = JoinSet::new();
        let mut ids = HashMap::new();
        let h = set.spawn(async { (0, 7) });
        ids.insert(h.id(), 0);
        let h = set.spawn(async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            (1, 8)
        });
        ids.insert(h.id(), 1);
        let cancel = h;
        let h = set.spawn(async {
            if true {
                panic!("boom");
            }
            (2, 9)
        });
        ids.insert(h.id(), 2);
        cancel.abort();
        let r = join_items(set, &ids, 3).await;
        assert_eq!(r[0], Ok(7));
        assert!(r[1].as_ref().unwrap_err().contains("cancelled"), "{r:?}");
        assert!(r[2].as_ref().unwrap_err().contains("panicked"), "{r:?}");
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1, Duration::ZERO), Duration::from_secs(1));
        assert_eq!(backoff(3, Duration::ZERO), Duration::from_secs(4));
        assert_eq!(backoff(9, Duration::ZERO), Duration::from_secs(16));
    }
}
