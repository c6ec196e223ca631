//! From a Step Functions execution's history to irr's run events.
//!
//! The compiled state machines follow conventions (`docs/step-functions.md`) that make the
//! history readable as a run:
//! - a step's wrapper state is named exactly the step id: entering it starts the step (each
//!   entry an attempt);
//! - every other state of a step is named `STEP_ID: something`; states outside any step are
//!   named `irr: something`;
//! - after a step, the state holds `$.steps.STEP_ID = {status, outputs, error?, cause?}`: the
//!   first state of the step to exit with it there ends the step;
//! - every `TaskScheduled` is an AWS call, and its `TaskSucceeded` / `TaskFailed` (found
//!   through `previousEventId`, which keeps interleaved parallel branches apart) ends it;
//! - an `aws-sdk:s3:putObject` that succeeded wrote an evidence item at
//!   `PREFIX/CASE_ID/EXECUTION_NAME/artifacts/STEP_ID/NAME`.
//!
//! The history is hostile input (an attacker may control values that flowed into it): names
//! and keys are checked as safe path segments, a key outside the run's folder is never
//! followed (a gap says so), JSON is parsed only below a size limit, and what is journaled of
//! parameters and results is redacted and bounded.
//!
//! [`translate`] reads the histories into [`Fact`]s; [`events`] turns them into journal
//! events once the evidence objects have been fetched and hashed (`super::objects`).

use std::collections::HashMap;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::history::{ChildHistory, HistoryEvent};
use crate::actions::{AwsResource, CallOutcome, Gap};
use crate::events::{RunEvent, RunStatus, StepStatus, StepSummary};

/// The longest JSON text (a state's output, a task's parameters or result) that is parsed.
const MAX_PARSED: usize = 1 << 20;
/// The largest parameters or result journaled as they are; larger ones are journaled as
/// their size and hash.
const MAX_JOURNALED: usize = 16 * 1024;
/// The most resources taken from task results.
const MAX_RESOURCES: usize = 10_000;
/// Hops followed back through `previousEventId` from a task's event to its state.
const MAX_HOPS: usize = 32;

/// The execution, as `DescribeExecution` and its state machine describe it.
#[derive(Clone, Debug, Default)]
pub struct Execution {
    /// Its ARN.
    pub arn: String,
    /// Its name: the run id.
    pub name: String,
    /// The state machine's ARN.
    pub state_machine_arn: String,
    /// `SUCCEEDED`, `FAILED`, `TIMED_OUT`, `ABORTED`.
    pub status: String,
    /// When it started (RFC 3339, ms).
    pub started_at: String,
    /// When it stopped.
    pub stopped_at: Option<String>,
    /// Its output (a JSON string), when it succeeded.
    pub output: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// Why it failed, in detail.
    pub cause: Option<String>,
    /// The state machine's definition (the one this execution ran).
    pub definition: String,
    /// The role it ran as.
    pub role_arn: String,
}

/// The run the execution is: its ids and playbook, and notes to journal after its start.
#[derive(Clone, Debug)]
pub struct Run {
    /// The execution.
    pub execution: Execution,
    /// `case_id` of its input.
    pub case_id: String,
    /// The playbook named by its definition's `Comment`.
    pub playbook: irr_forensics::PlaybookRef,
    /// Notes journaled right after `run_started` (the target it acted in, ...).
    pub notes: Vec<String>,
}

/// An evidence object the execution wrote (`aws-sdk:s3:putObject` succeeded), its key
/// inside the run's folder.
#[derive(Clone, Debug, PartialEq)]
pub struct EvidenceObject {
    /// The bucket.
    pub bucket: String,
    /// The key.
    pub key: String,
    /// The part of the key before `CASE_ID/EXECUTION_NAME/` (no trailing `/`; may be empty).
    pub prefix: String,
    /// Its path in the bundle: `artifacts/STEP_ID/NAME`.
    pub path: String,
    /// The step, from the path.
    pub step: String,
    /// The version written, from the task's result.
    pub version_id: Option<String>,
    /// S3's `ChecksumSHA256` of what was written (base64), from the task's result.
    pub checksum_sha256: Option<String>,
    /// When it was written.
    pub ts: String,
    /// Written over by a later object of the same key: not sealed (a gap says so).
    pub superseded: bool,
}

impl EvidenceObject {
    /// Where it came from, for the manifest's `source`.
    pub fn source(&self) -> String {
        match &self.version_id {
            Some(v) => format!("s3://{}/{}?versionId={v}", self.bucket, self.key),
            None => format!("s3://{}/{}", self.bucket, self.key),
        }
    }
}

/// A task, by the history it is in (0: the execution's, then each child's) and the id of
/// its `TaskScheduled`.
pub type TaskKey = (usize, i64);

/// One thing the history says happened.
#[derive(Clone, Debug, PartialEq)]
pub enum Fact {
    /// The execution started as this run.
    RunStarted,
    /// Something worth telling.
    Note(String),
    /// A step's wrapper state was entered.
    StepStarted {
        /// The step.
        step: String,
        /// Its entry, 1-based.
        attempt: u32,
    },
    /// A task was scheduled: an AWS call.
    CallStarted {
        /// The task.
        task: TaskKey,
        /// The step.
        step: String,
        /// e.g. `ec2`.
        service: String,
        /// e.g. `CreateSnapshots`.
        operation: String,
        /// Its parameters, redacted and bounded.
        params: Value,
    },
    /// A task ended.
    CallFinished {
        /// The task.
        task: TaskKey,
        /// How.
        outcome: CallOutcome,
    },
    /// An evidence object was written (index into [`Translation::objects`]).
    Captured(usize),
    /// A resource a task made.
    Resource {
        /// The step.
        step: String,
        /// The resource.
        resource: AwsResource,
    },
    /// Something the evidence lacks.
    Gap(Gap),
    /// A step ended.
    StepFinished(StepSummary),
}

/// The execution read as a run.
#[derive(Clone, Debug)]
pub struct Translation {
    /// What happened, in order, each with its time.
    pub facts: Vec<(String, Fact)>,
    /// The evidence objects written.
    pub objects: Vec<EvidenceObject>,
    /// Every step's result, in the order they ended.
    pub steps: Vec<StepSummary>,
    /// The run's status.
    pub status: RunStatus,
}

impl Translation {
    /// `s3://BUCKET/PREFIX`: where the execution put its evidence (the first object's).
    pub fn default_location(&self) -> Option<String> {
        self.objects.first().map(|o| match o.prefix.as_str() {
            "" => format!("s3://{}", o.bucket),
            p => format!("s3://{}/{p}", o.bucket),
        })
    }
}

/// What a fetched evidence object turned out to be.
#[derive(Clone, Debug, PartialEq)]
pub struct Fetched {
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
    /// Its size.
    pub size: u64,
}

/// Reads the execution's history and its map runs' children's as `run`.
pub fn translate(run: &Run, history: &[HistoryEvent], children: &[ChildHistory]) -> Translation {
    let mut r = Reader::new(run);
    let first_ts = history
        .first()
        .map(|e| e.ts.clone())
        .unwrap_or_else(|| run.execution.started_at.clone());
    r.facts.push((first_ts.clone(), Fact::RunStarted));
    for note in &run.notes {
        r.facts.push((first_ts.clone(), Fact::Note(note.clone())));
    }
    r.feed(0, history);
    for (i, child) in children.iter().enumerate() {
        r.facts.push((
            child
                .events
                .first()
                .map(|e| e.ts.clone())
                .unwrap_or_default(),
            Fact::Note(format!("map run child execution {}", child.arn)),
        ));
        r.feed(i + 1, &child.events);
    }
    let last_ts = run
        .execution
        .stopped_at
        .clone()
        .or_else(|| history.last().map(|e| e.ts.clone()))
        .unwrap_or(first_ts);
    r.finish(&last_ts)
}

/// A step as read so far.
#[derive(Default)]
struct StepAcc {
    attempts: u32,
    started_at: Option<String>,
    finished: bool,
}

/// A scheduled task.
struct Task {
    step: Option<String>,
    service: String,
    resource: String,
    state: String,
    put: Option<(String, String)>,
}

struct Reader<'a> {
    run: &'a Run,
    facts: Vec<(String, Fact)>,
    objects: Vec<EvidenceObject>,
    steps: Vec<(String, StepAcc)>,
    finished: Vec<StepSummary>,
    tasks: HashMap<TaskKey, Task>,
    resources: usize,
}

impl<'a> Reader<'a> {
    fn new(run: &'a Run) -> Reader<'a> {
        Reader {
            run,
            facts: Vec::new(),
            objects: Vec::new(),
            steps: Vec::new(),
            finished: Vec::new(),
            tasks: HashMap::new(),
            resources: 0,
        }
    }

    fn step(&mut self, id: &str) -> &mut StepAcc {
        let i = match self.steps.iter().position(|(s, _)| s == id) {
            Some(i) => i,
            None => {
                self.steps.push((id.to_owned(), StepAcc::default()));
                self.steps.len() - 1
            }
        };
        &mut self.steps[i].1
    }

    fn feed(&mut self, which: usize, history: &[HistoryEvent]) {
        let by_id: HashMap<i64, &HistoryEvent> = history.iter().map(|e| (e.id, e)).collect();
        for e in history {
            match e.kind.as_str() {
                k if k.ends_with("StateEntered") => self.entered(e),
                k if k.ends_with("StateExited") => self.exited(e),
                "TaskScheduled" => self.scheduled(which, e, &by_id),
                "TaskSucceeded" | "TaskFailed" | "TaskTimedOut" | "TaskStartFailed"
                | "TaskSubmitFailed" => self.task_ended(which, e, &by_id),
                _ => {}
            }
        }
    }

    fn entered(&mut self, e: &HistoryEvent) {
        let Some(name) = e.name.as_deref().filter(|n| is_wrapper(n)) else {
            return;
        };
        let acc = self.step(name);
        if acc.finished {
            return;
        }
        acc.attempts += 1;
        acc.started_at.get_or_insert_with(|| e.ts.clone());
        let attempt = acc.attempts;
        let fact = Fact::StepStarted {
            step: name.to_owned(),
            attempt,
        };
        self.facts.push((e.ts.clone(), fact));
    }

    fn exited(&mut self, e: &HistoryEvent) {
        let Some(step) = e.name.as_deref().and_then(step_of) else {
            return;
        };
        if self.step(step).finished {
            return;
        }
        let Some(state) = e.data.as_deref().and_then(parse) else {
            return;
        };
        let Some(result) = state.get("steps").and_then(|s| s.get(step)) else {
            return;
        };
        if let Some(summary) = self.summary(step, result, &e.ts) {
            self.finish_step(&e.ts, summary);
        }
    }

    /// The step's summary from its `$.steps.STEP_ID` value, if that is a result.
    fn summary(&mut self, step: &str, result: &Value, ts: &str) -> Option<StepSummary> {
        let status = match result.get("status").and_then(Value::as_str)? {
            "succeeded" => StepStatus::Succeeded,
            "failed" => StepStatus::Failed,
            "skipped" => StepStatus::Skipped,
            _ => return None,
        };
        let text = |k: &str| result.get(k).and_then(Value::as_str).map(str::to_owned);
        let error = match (text("error"), text("cause")) {
            (Some(e), Some(c)) => Some(format!("{e}: {c}")),
            (e, c) => e.or(c),
        };
        let acc = self.step(step);
        Some(StepSummary {
            id: step.to_owned(),
            status,
            attempts: acc.attempts,
            started_at: acc.started_at.clone(),
            finished_at: Some(ts.to_owned()),
            outputs: bounded(result.get("outputs").cloned().unwrap_or_else(|| json!({}))),
            error,
        })
    }

    fn finish_step(&mut self, ts: &str, summary: StepSummary) {
        self.step(&summary.id).finished = true;
        self.finished.push(summary.clone());
        self.facts
            .push((ts.to_owned(), Fact::StepFinished(summary)));
    }

    fn scheduled(&mut self, which: usize, e: &HistoryEvent, by_id: &HashMap<i64, &HistoryEvent>) {
        let state = state_of(e, by_id).unwrap_or_default();
        let resource_type = e.resource_type.clone().unwrap_or_default();
        let service = resource_type
            .strip_prefix("aws-sdk:")
            .unwrap_or(&resource_type)
            .to_owned();
        let resource = e.resource.clone().unwrap_or_default();
        let mut params = e
            .parameters
            .as_deref()
            .and_then(parse)
            .unwrap_or(Value::Null);
        let mut put = None;
        if service == "s3" && resource == "putObject" {
            let text = |k: &str| params.get(k).and_then(Value::as_str).map(str::to_owned);
            if let (Some(b), Some(k)) = (text("Bucket"), text("Key")) {
                put = Some((b, k));
            }
            if let Some(body) = params.get_mut("Body") {
                let len = body.as_str().map_or(body.to_string().len(), str::len);
                *body = json!(format!("[{len} bytes: the object written, sealed as an evidence item when its key is the run's]"));
            }
        }
        let step = step_of(&state).map(str::to_owned);
        let operation = operation_name(&resource);
        let task = Task {
            step: step.clone(),
            service: service.clone(),
            resource,
            state: state.clone(),
            put,
        };
        self.tasks.insert((which, e.id), task);
        let fact = match step {
            Some(step) => Fact::CallStarted {
                task: (which, e.id),
                step,
                service,
                operation,
                params: journaled(params),
            },
            None => Fact::Note(format!(
                "state \"{state}\" (outside any step) called {service}:{operation}"
            )),
        };
        self.facts.push((e.ts.clone(), fact));
    }

    fn task_ended(&mut self, which: usize, e: &HistoryEvent, by_id: &HashMap<i64, &HistoryEvent>) {
        let ok = e.kind == "TaskSucceeded";
        let Some(key) = scheduled_of(e, by_id).map(|id| (which, id)) else {
            if !ok {
                let state = state_of(e, by_id).unwrap_or_default();
                let fact = Fact::Note(format!(
                    "state \"{state}\" failed before any call was made: {}",
                    failure_text(e)
                ));
                self.facts.push((e.ts.clone(), fact));
            }
            return;
        };
        let Some(task) = self.tasks.get(&key) else {
            return;
        };
        let result = e.data.as_deref().and_then(parse).unwrap_or(Value::Null);
        let (step, service, resource) = (
            task.step.clone(),
            task.service.clone(),
            task.resource.clone(),
        );
        let put = task.put.clone();
        let Some(step) = step else {
            let state = task.state.clone();
            let how = if ok { "ok".to_owned() } else { failure_text(e) };
            let fact = Fact::Note(format!("state \"{state}\" (outside any step): {how}"));
            self.facts.push((e.ts.clone(), fact));
            return;
        };
        let outcome = CallOutcome {
            ok,
            request_id: e.cause.as_deref().and_then(request_id_of),
            error_code: e.error.clone().filter(|_| !ok),
            error_message: e.cause.clone().filter(|_| !ok),
            result: journaled(result.clone()),
        };
        self.facts
            .push((e.ts.clone(), Fact::CallFinished { task: key, outcome }));
        if !ok {
            return;
        }
        if let Some((bucket, object_key)) = put {
            self.captured(&step, bucket, object_key, &result, &e.ts);
        }
        for resource in resources_of(&service, &resource, &result) {
            if self.resources < MAX_RESOURCES {
                self.resources += 1;
                let fact = Fact::Resource {
                    step: step.clone(),
                    resource,
                };
                self.facts.push((e.ts.clone(), fact));
            }
        }
    }

    /// An object the execution wrote: an evidence item when its key is inside the run's
    /// folder (the first object's bucket and prefix), else a gap; an earlier object of the
    /// same path becomes a gap (the latest version is the one sealed).
    fn captured(&mut self, step: &str, bucket: String, key: String, result: &Value, ts: &str) {
        let run = self.run;
        let gap = |error: String| {
            let what = format!("s3://{bucket}/{key}");
            Fact::Gap(Gap {
                step: step.to_owned(),
                what,
                error,
            })
        };
        let (prefix, path, item_step) = match item_of_key(&key, &run.case_id, &run.execution.name) {
            Ok(x) => x,
            Err(why) => {
                self.facts
                    .push((ts.to_owned(), gap(format!("not followed: {why}"))));
                return;
            }
        };
        if let Some(first) = self.objects.first() {
            if first.bucket != bucket || first.prefix != prefix {
                let why = format!("not followed: outside the run's evidence folder s3://{}/{}{}/{}/ (the first object's)", first.bucket, slash(&first.prefix), run.case_id, run.execution.name);
                self.facts.push((ts.to_owned(), gap(why)));
                return;
            }
        }
        let text = |k: &str| result.get(k).and_then(Value::as_str).map(str::to_owned);
        let object = EvidenceObject {
            bucket,
            key,
            prefix,
            path,
            step: item_step,
            version_id: text("VersionId"),
            checksum_sha256: text("ChecksumSha256").or_else(|| text("ChecksumSHA256")),
            ts: ts.to_owned(),
            superseded: false,
        };
        if let Some(i) = self
            .objects
            .iter()
            .position(|o| o.path == object.path && !o.superseded)
        {
            self.supersede(i, &object);
        }
        self.objects.push(object);
        let i = self.objects.len() - 1;
        self.facts.push((ts.to_owned(), Fact::Captured(i)));
    }

    /// Object `i` was written over by `later`: its capture becomes a gap.
    fn supersede(&mut self, i: usize, later: &EvidenceObject) {
        let old = &mut self.objects[i];
        old.superseded = true;
        let gap = Gap {
            step: old.step.clone(),
            what: old.source(),
            error: format!(
                "written over later in the execution by version {}; the latest version is sealed at {}",
                later.version_id.as_deref().unwrap_or("?"),
                later.path
            ),
        };
        for (_, fact) in &mut self.facts {
            if *fact == Fact::Captured(i) {
                *fact = Fact::Gap(gap.clone());
            }
        }
    }

    /// Every step that did not end in the history: its result from the execution's output,
    /// else failed (entered, then the execution ended) or skipped (never reached).
    fn finish(mut self, last_ts: &str) -> Translation {
        let ex = &self.run.execution;
        let output = ex.output.as_deref().and_then(parse);
        let mut ids: Vec<String> = self
            .steps
            .iter()
            .filter(|(_, a)| !a.finished)
            .map(|(s, _)| s.clone())
            .collect();
        for s in definition_steps(&ex.definition) {
            if !ids.contains(&s) && !self.steps.iter().any(|(id, _)| *id == s) {
                ids.push(s);
            }
        }
        let ended = match (&ex.error, &ex.cause) {
            (Some(e), Some(c)) => format!("{}: {e}: {c}", ex.status),
            (Some(e), None) | (None, Some(e)) => format!("{}: {e}", ex.status),
            (None, None) => ex.status.clone(),
        };
        for id in ids {
            let from_output = output
                .as_ref()
                .and_then(|o| o.get("steps").and_then(|s| s.get(&id)).cloned());
            if let Some(summary) = from_output.and_then(|v| self.summary(&id, &v, last_ts)) {
                self.finish_step(last_ts, summary);
                continue;
            }
            let acc = self.step(&id);
            let (status, error) = if acc.attempts > 0 {
                (
                    StepStatus::Failed,
                    format!("the execution ended ({ended}) while this step ran"),
                )
            } else {
                (
                    StepStatus::Skipped,
                    format!("not reached: the execution ended ({ended}) before this step"),
                )
            };
            let summary = StepSummary {
                id: id.clone(),
                status,
                attempts: acc.attempts,
                started_at: acc.started_at.clone(),
                finished_at: Some(last_ts.to_owned()),
                outputs: json!({}),
                error: Some(error),
            };
            self.finish_step(last_ts, summary);
        }
        let end = Fact::Note(format!("the execution ended: {ended}"));
        self.facts.push((last_ts.to_owned(), end));
        let status = match ex.status.as_str() {
            "ABORTED" => RunStatus::Aborted,
            "SUCCEEDED" if !self.finished.iter().any(|s| s.status == StepStatus::Failed) => {
                RunStatus::Succeeded
            }
            _ => RunStatus::Failed,
        };
        Translation {
            facts: self.facts,
            objects: self.objects,
            steps: self.finished,
            status,
        }
    }
}

/// The run's journal events up to the seal: the facts, with each evidence object's hash and
/// size as fetched (`fetched[i]` for object `i`; a capture without one is left out) and the
/// calls numbered in the order they started.
pub fn events(run: &Run, t: &Translation, fetched: &[Option<Fetched>]) -> Vec<(String, RunEvent)> {
    let mut numbers: HashMap<TaskKey, u64> = HashMap::new();
    let mut out = Vec::with_capacity(t.facts.len());
    for (ts, fact) in &t.facts {
        let event = match fact {
            Fact::RunStarted => RunEvent::RunStarted {
                run_id: run.execution.name.clone(),
                case_id: run.case_id.clone(),
                playbook: run.playbook.name.clone(),
                version: run.playbook.version.clone(),
                playbook_sha256: run.playbook.sha256.clone(),
                dry_run: false,
                resumed: false,
                aws_principal: Some(run.execution.role_arn.clone()).filter(|r| !r.is_empty()),
            },
            Fact::Note(message) => RunEvent::Note {
                message: message.clone(),
            },
            Fact::StepStarted { step, attempt } => RunEvent::StepStarted {
                step: step.clone(),
                attempt: *attempt,
                item: None,
            },
            Fact::CallStarted {
                task,
                step,
                service,
                operation,
                params,
            } => {
                let call = numbers.len() as u64 + 1;
                numbers.insert(*task, call);
                RunEvent::CallStarted {
                    call,
                    step: step.clone(),
                    service: service.clone(),
                    operation: operation.clone(),
                    params: params.clone(),
                }
            }
            Fact::CallFinished { task, outcome } => match numbers.get(task) {
                Some(call) => RunEvent::CallFinished {
                    call: *call,
                    outcome: outcome.clone(),
                },
                None => continue,
            },
            Fact::Captured(i) => {
                let (Some(o), Some(Some(f))) = (t.objects.get(*i), fetched.get(*i)) else {
                    continue;
                };
                RunEvent::EvidenceCaptured {
                    step: o.step.clone(),
                    path: o.path.clone(),
                    sha256: f.sha256.clone(),
                    size: f.size,
                    source: o.source(),
                }
            }
            Fact::Resource { step, resource } => RunEvent::ResourceRecorded {
                step: step.clone(),
                resource: resource.clone(),
            },
            Fact::Gap(g) => RunEvent::GapRecorded(g.clone()),
            Fact::StepFinished(s) => RunEvent::StepFinished(s.clone()),
        };
        out.push((ts.clone(), event));
    }
    out
}

/// A name that is a safe path segment: 1-128 letters, digits, `.`, `_`, `-`, not starting
/// with `.`.
pub fn safe_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A step's wrapper state: named exactly a step id.
fn is_wrapper(name: &str) -> bool {
    !name.contains(": ") && step_of(name) == Some(name)
}

/// The step a state belongs to: its name up to the first `": "`, when that is a step id
/// (`irr` is not: its states are outside the steps).
pub fn step_of(name: &str) -> Option<&str> {
    let step = name.split_once(": ").map_or(name, |(s, _)| s);
    (step != "irr" && safe_segment(step)).then_some(step)
}

/// The step ids of a definition: its states named exactly a step id, at any depth
/// (parallel branches, map item processors).
pub fn definition_steps(definition: &str) -> Vec<String> {
    fn walk(states: &Value, depth: usize, out: &mut Vec<String>) {
        let Some(states) = states.as_object().filter(|_| depth < 32) else {
            return;
        };
        for (name, state) in states {
            if is_wrapper(name) && !out.contains(name) {
                out.push(name.clone());
            }
            for branch in state
                .get("Branches")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                walk(&branch["States"], depth + 1, out);
            }
            for key in ["Iterator", "ItemProcessor"] {
                if let Some(inner) = state.get(key) {
                    walk(&inner["States"], depth + 1, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    if let Some(def) = parse(definition) {
        walk(&def["States"], 0, &mut out);
    }
    out
}

/// `PREFIX/CASE_ID/RUN_ID/artifacts/STEP_ID/NAME` as (PREFIX, `artifacts/STEP_ID/NAME`,
/// STEP_ID): the key must hold the run's folder, and what follows `artifacts/` must be 2-4
/// safe path segments (`STEP/NAME`, `STEP/ITEM/NAME`, `STEP/attempt-N/NAME`...).
pub fn item_of_key(
    key: &str,
    case_id: &str,
    run_id: &str,
) -> Result<(String, String, String), String> {
    let folder = format!("{case_id}/{run_id}/artifacts/");
    if key.len() > 1024 {
        return Err("the key is longer than 1,024 bytes".to_owned());
    }
    let (prefix, rest) = match key.strip_prefix(&folder) {
        Some(rest) => ("", rest),
        None => match key.find(&format!("/{folder}")) {
            Some(i) if i > 0 => (&key[..i], &key[i + 1 + folder.len()..]),
            _ => return Err(format!("the key is not inside PREFIX/{folder}")),
        },
    };
    if !prefix.is_empty() && !prefix.split('/').all(safe_segment) {
        return Err("the key's prefix is not made of safe path segments".to_owned());
    }
    let parts: Vec<&str> = rest.split('/').collect();
    if !(2..=4).contains(&parts.len()) || !parts.iter().all(|p| safe_segment(p)) {
        return Err(format!(
            "artifacts/{rest} is not STEP_ID/NAME made of safe path segments"
        ));
    }
    Ok((
        prefix.to_owned(),
        format!("artifacts/{rest}"),
        parts[0].to_owned(),
    ))
}

fn slash(prefix: &str) -> String {
    if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    }
}

/// JSON text parsed, when it is not too long to.
fn parse(text: &str) -> Option<Value> {
    (text.len() <= MAX_PARSED)
        .then(|| serde_json::from_str(text).ok())
        .flatten()
}

/// What is journaled of a task's parameters or result: redacted, and when long its size and
/// hash instead.
fn journaled(v: Value) -> Value {
    bounded(crate::executor::redact(&v))
}

fn bounded(v: Value) -> Value {
    let text = v.to_string();
    if text.len() <= MAX_JOURNALED {
        return v;
    }
    json!({
        "omitted": format!("{} bytes, more than irr journals", text.len()),
        "sha256": hex::encode(Sha256::digest(text.as_bytes())),
    })
}

/// `createSnapshots` -> `CreateSnapshots` (an optimised integration's `invoke.waitForTaskToken`
/// -> `Invoke`).
fn operation_name(resource: &str) -> String {
    let base = resource.split('.').next().unwrap_or(resource);
    let mut chars = base.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn failure_text(e: &HistoryEvent) -> String {
    match (&e.error, &e.cause) {
        (Some(err), Some(c)) => format!("{err}: {c}"),
        (Some(x), None) | (None, Some(x)) => x.clone(),
        (None, None) => e.kind.clone(),
    }
}

/// The AWS request id in a task failure's cause (`... Request ID: ID)` as the SDK
/// integrations write it).
fn request_id_of(cause: &str) -> Option<String> {
    let rest = &cause[cause.find("Request ID: ")? + "Request ID: ".len()..];
    let id = rest.split([',', ')', ' ', ';']).next()?.trim();
    (!id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    .then(|| id.to_owned())
}

/// The state a task event belongs to: the `...StateEntered` it follows.
pub(super) fn state_of(e: &HistoryEvent, by_id: &HashMap<i64, &HistoryEvent>) -> Option<String> {
    let mut at = e;
    for _ in 0..MAX_HOPS {
        if at.kind.ends_with("StateEntered") {
            return at.name.clone();
        }
        at = by_id.get(&at.previous)?;
    }
    None
}

/// The `TaskScheduled` a task's end follows (none past its state's entry).
fn scheduled_of(e: &HistoryEvent, by_id: &HashMap<i64, &HistoryEvent>) -> Option<i64> {
    let mut at = *by_id.get(&e.previous)?;
    for _ in 0..MAX_HOPS {
        if at.kind == "TaskScheduled" {
            return Some(at.id);
        }
        if at.kind.ends_with("StateEntered") {
            return None;
        }
        at = by_id.get(&at.previous)?;
    }
    None
}

/// Resources a task made, from its result: EBS snapshots, security groups.
fn resources_of(service: &str, resource: &str, result: &Value) -> Vec<AwsResource> {
    let id_ok =
        |s: &str| s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let snapshot = |s: &Value| -> Option<AwsResource> {
        let id = s
            .get("SnapshotId")
            .and_then(Value::as_str)
            .filter(|i| id_ok(i))?;
        let mut details = serde_json::Map::new();
        for (from, to) in [("VolumeId", "volume_id"), ("State", "state")] {
            if let Some(v) = s.get(from).and_then(Value::as_str).filter(|v| id_ok(v)) {
                details.insert(to.to_owned(), json!(v));
            }
        }
        Some(AwsResource {
            kind: "ebs-snapshot".to_owned(),
            id: id.to_owned(),
            details,
        })
    };
    match (service, resource) {
        ("ec2", "createSnapshots") => result
            .get("Snapshots")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(snapshot)
            .collect(),
        ("ec2", "createSnapshot") => snapshot(result).into_iter().collect(),
        ("ec2", "createSecurityGroup") => result
            .get("GroupId")
            .and_then(Value::as_str)
            .filter(|i| id_ok(i))
            .map(|id| AwsResource {
                kind: "security-group".to_owned(),
                id: id.to_owned(),
                details: serde_json::Map::new(),
            })
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}
