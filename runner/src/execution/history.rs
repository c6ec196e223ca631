//! A Step Functions execution's history, read whole and bounded: `GetExecutionHistory` page
//! by page (1,000 events a page), and the child executions of its distributed map runs
//! (`ListExecutions` with the map run's ARN, then each child's history), at most
//! [`MAX_EVENTS`] events in all.
//!
//! Each event is reduced to a [`HistoryEvent`]: the few fields the translation reads, the
//! same whether it came from the SDK or from a recorded history (the JSON AWS sends, as
//! `aws stepfunctions get-execution-history` prints it), so the translation is tested on
//! real recorded histories without AWS.

use serde_json::Value;

/// The most history events one seal reads (the execution's and its map runs' children's
/// together): a history is hostile input, and a larger one is refused, not half read.
pub const MAX_EVENTS: usize = 100_000;
/// The most bytes of JSON (states' outputs, tasks' parameters and results) one seal holds from
/// the histories it reads: 100,000 events of up to 256 KiB each would be 25 GiB.
pub const MAX_BYTES: usize = 512 << 20;
/// The most child executions read per map run.
pub const MAX_CHILDREN: usize = 1_000;
/// Events asked for per page (the API's maximum).
const PAGE: i32 = 1_000;
/// Pages read at most for one history: enough for [`MAX_EVENTS`] in full pages, with room
/// for short ones; a service that keeps answering a next token is not followed forever.
const MAX_PAGES: usize = 2 * MAX_EVENTS / PAGE as usize;

/// One event of an execution's history, as the translation reads it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistoryEvent {
    /// The event's id (1-based, in order).
    pub id: i64,
    /// The event it follows (`previousEventId`): the chain that ties a task's end to its
    /// start and a task to its state, even where parallel branches interleave.
    pub previous: i64,
    /// When, RFC 3339 in UTC with milliseconds (the journal's form).
    pub ts: String,
    /// The event type, e.g. `TaskScheduled`, `ParallelStateEntered`.
    pub kind: String,
    /// The state's name (state entered and exited events).
    pub name: Option<String>,
    /// The JSON the event carries as a string: a state's output, a task's output, the
    /// execution's input or output (a state's input is not kept).
    pub data: Option<String>,
    /// A task's `resourceType`, e.g. `aws-sdk:ec2`.
    pub resource_type: Option<String>,
    /// A task's `resource`, e.g. `createSnapshots`.
    pub resource: Option<String>,
    /// A scheduled task's parameters (a JSON string).
    pub parameters: Option<String>,
    /// The error of a failure.
    pub error: Option<String>,
    /// The cause of a failure.
    pub cause: Option<String>,
    /// A distributed map run's ARN (`MapRunStarted`).
    pub map_run_arn: Option<String>,
    /// The role the execution runs as (`ExecutionStarted`).
    pub role_arn: Option<String>,
}

impl HistoryEvent {
    /// An event of a recorded history: an element of `events` of the `GetExecutionHistory`
    /// answer, its details in its one `...EventDetails` object; `timestamp` as RFC 3339 or
    /// as epoch seconds (the wire's form).
    pub fn from_json(v: &Value) -> Result<HistoryEvent, String> {
        let id = v
            .get("id")
            .and_then(Value::as_i64)
            .ok_or("an event has no id")?;
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("event {id} has no type"))?;
        let ts = match v.get("timestamp") {
            Some(Value::String(s)) => irr_forensics::Timestamp::parse(s),
            Some(Value::Number(n)) => n.as_f64().and_then(epoch_seconds),
            _ => None,
        }
        .ok_or_else(|| format!("event {id} has no readable timestamp"))?;
        let details = v
            .as_object()
            .and_then(|m| m.iter().find(|(k, _)| k.ends_with("EventDetails")))
            .map(|(_, d)| d.clone())
            .unwrap_or(Value::Null);
        let text = |k: &str| details.get(k).and_then(Value::as_str).map(str::to_owned);
        Ok(HistoryEvent {
            id,
            previous: v
                .get("previousEventId")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            ts: ts.to_string(),
            kind: kind.to_owned(),
            name: text("name"),
            data: text("output")
                .or_else(|| text("input").filter(|_| !kind.ends_with("StateEntered"))),
            resource_type: text("resourceType"),
            resource: text("resource"),
            parameters: text("parameters"),
            error: text("error"),
            cause: text("cause"),
            map_run_arn: text("mapRunArn"),
            role_arn: text("roleArn"),
        })
    }

    /// An event as the SDK read it.
    pub fn from_sdk(e: &aws_sdk_sfn::types::HistoryEvent) -> HistoryEvent {
        let ts = e
            .timestamp()
            .fmt(aws_smithy_types::date_time::Format::DateTime)
            .ok()
            .and_then(|s| irr_forensics::Timestamp::parse(&s))
            .map(|t| t.to_string())
            .unwrap_or_default();
        let mut out = HistoryEvent {
            id: e.id(),
            previous: e.previous_event_id(),
            ts,
            kind: e.r#type().as_str().to_owned(),
            ..HistoryEvent::default()
        };
        let own = |s: Option<&str>| s.map(str::to_owned);
        // A state's input is not read (its output is): not kept.
        if let Some(d) = e.state_entered_event_details() {
            out.name = Some(d.name().to_owned());
        }
        if let Some(d) = e.state_exited_event_details() {
            out.name = Some(d.name().to_owned());
            out.data = own(d.output());
        }
        if let Some(d) = e.task_scheduled_event_details() {
            out.task(d.resource_type(), d.resource());
            out.parameters = Some(d.parameters().to_owned());
        }
        if let Some(d) = e.task_succeeded_event_details() {
            out.task(d.resource_type(), d.resource());
            out.data = own(d.output());
        }
        if let Some(d) = e.task_failed_event_details() {
            out.task(d.resource_type(), d.resource());
            out.failure(d.error(), d.cause());
        }
        if let Some(d) = e.task_timed_out_event_details() {
            out.task(d.resource_type(), d.resource());
            out.failure(d.error(), d.cause());
        }
        if let Some(d) = e.task_start_failed_event_details() {
            out.task(d.resource_type(), d.resource());
            out.failure(d.error(), d.cause());
        }
        if let Some(d) = e.task_submit_failed_event_details() {
            out.task(d.resource_type(), d.resource());
            out.failure(d.error(), d.cause());
        }
        out.execution_details(e);
        out
    }

    /// The execution's own details and the map runs'.
    fn execution_details(&mut self, e: &aws_sdk_sfn::types::HistoryEvent) {
        let own = |s: Option<&str>| s.map(str::to_owned);
        if let Some(d) = e.execution_started_event_details() {
            self.data = own(d.input());
            self.role_arn = own(d.role_arn());
        }
        if let Some(d) = e.execution_succeeded_event_details() {
            self.data = own(d.output());
        }
        if let Some(d) = e.execution_failed_event_details() {
            self.failure(d.error(), d.cause());
        }
        if let Some(d) = e.execution_aborted_event_details() {
            self.failure(d.error(), d.cause());
        }
        if let Some(d) = e.execution_timed_out_event_details() {
            self.failure(d.error(), d.cause());
        }
        if let Some(d) = e.map_run_started_event_details() {
            self.map_run_arn = own(d.map_run_arn());
        }
        if let Some(d) = e.map_run_failed_event_details() {
            self.failure(d.error(), d.cause());
        }
    }

    fn task(&mut self, resource_type: &str, resource: &str) {
        self.resource_type = Some(resource_type.to_owned());
        self.resource = Some(resource.to_owned());
    }

    fn failure(&mut self, error: Option<&str>, cause: Option<&str>) {
        self.error = error.map(str::to_owned);
        self.cause = cause.map(str::to_owned);
    }
}

fn epoch_seconds(secs: f64) -> Option<irr_forensics::Timestamp> {
    let nanos = (secs * 1e9) as i128;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .map(irr_forensics::Timestamp::from_datetime)
}

/// A recorded history: the `events` of a `GetExecutionHistory` answer (or of an object that
/// holds them, as the test fixtures do).
pub fn from_json(v: &Value) -> Result<Vec<HistoryEvent>, String> {
    let events = v
        .get("events")
        .and_then(Value::as_array)
        .ok_or("no `events` list")?;
    if events.len() > MAX_EVENTS {
        return Err(format!(
            "{} events, more than the {MAX_EVENTS} irr reads",
            events.len()
        ));
    }
    events.iter().map(HistoryEvent::from_json).collect()
}

/// The child executions of one distributed map run, each with its history.
#[derive(Clone, Debug, Default)]
pub struct ChildHistory {
    /// The child execution's ARN.
    pub arn: String,
    /// Its events.
    pub events: Vec<HistoryEvent>,
}

/// Why a history could not be read.
#[derive(Debug)]
pub struct ReadError {
    /// What to say.
    pub message: String,
    /// `true` when AWS could not be read (unreachable, denied); `false` when what it
    /// answered is refused (too long).
    pub unreadable: bool,
}

/// What the seal may still read: events, and bytes of their JSON.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Events.
    pub events: usize,
    /// Bytes of the events' JSON strings.
    pub bytes: usize,
}

impl Budget {
    /// [`MAX_EVENTS`] and [`MAX_BYTES`].
    pub fn full() -> Budget {
        Budget {
            events: MAX_EVENTS,
            bytes: MAX_BYTES,
        }
    }

    /// Takes `events` from the budget; `false` when it does not hold them.
    fn take(&mut self, events: &[HistoryEvent]) -> bool {
        let bytes: usize = events
            .iter()
            .map(|e| {
                e.data.as_ref().map_or(0, String::len)
                    + e.parameters.as_ref().map_or(0, String::len)
            })
            .sum();
        if events.len() > self.events || bytes > self.bytes {
            return false;
        }
        self.events -= events.len();
        self.bytes -= bytes;
        true
    }
}

/// Reads the history of `arn`, every page, counting its events against `budget` (what the
/// seal may still read).
pub async fn read(
    client: &aws_sdk_sfn::Client,
    arn: &str,
    budget: &mut Budget,
) -> Result<Vec<HistoryEvent>, ReadError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = client
            .get_execution_history()
            .execution_arn(arn)
            .max_results(PAGE)
            .include_execution_data(true)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| ReadError {
                message: irr_forensics::awserr::describe("states", "GetExecutionHistory", &e)
                    .line(),
                unreadable: true,
            })?;
        let events: Vec<HistoryEvent> = page.events().iter().map(HistoryEvent::from_sdk).collect();
        if !budget.take(&events) {
            return Err(too_long(arn));
        }
        out.extend(events);
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => return Ok(out),
        }
    }
    Err(too_long(arn))
}

fn too_long(arn: &str) -> ReadError {
    ReadError {
        message: format!("the history of {arn} (with its map runs' children) is longer than the {MAX_EVENTS} events or {} MiB of JSON irr reads", MAX_BYTES >> 20),
        unreadable: false,
    }
}

/// The child executions of the map run `map_run_arn` (at most [`MAX_CHILDREN`]).
pub async fn map_run_children(
    client: &aws_sdk_sfn::Client,
    map_run_arn: &str,
) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = client
            .list_executions()
            .map_run_arn(map_run_arn)
            .max_results(PAGE)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| irr_forensics::awserr::describe("states", "ListExecutions", &e).line())?;
        out.extend(
            page.executions()
                .iter()
                .map(|x| x.execution_arn().to_owned()),
        );
        if out.len() > MAX_CHILDREN {
            return Err(format!(
                "more than {MAX_CHILDREN} child executions; none was read"
            ));
        }
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => return Ok(out),
        }
    }
    Err("its listing did not end".to_owned())
}
