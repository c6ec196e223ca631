//! `irr evidence seal --execution ARN [--evidence LOC]`: a Step Functions execution of a
//! compiled playbook, sealed as a run.
//!
//! The execution ran without irr; what it did is in its history and in the evidence objects
//! it wrote. This command reads both back and leaves what a CLI run leaves: a run folder
//! `STATE_DIR/runs/RUN_ID/` (`run.json`, and a `journal.jsonl` that is the history translated
//! into run events, with the times AWS recorded) and a sealed bundle, through the same seal
//! (`crate::evidence::seal_run`): so `irr evidence verify` and `irr report` work on it as on
//! any run. The run id is the execution's name, the case its input's `case_id`, the playbook
//! the one its definition's `Comment` names; the manifest's `collector` names the execution.
//!
//! In order, refusing before anything is written: the ARN; the execution (ended, an irr
//! state machine: `DescribeExecution`, `DescribeStateMachineForExecution`); its input; the
//! history (bounded, `history`); the translation (`translate`); the evidence location and
//! store; every evidence object fetched and checked against S3's checksum (`objects`); then
//! `run.json`, the journal, the seal, and the journal's last two lines.
//!
//! Sealing the same execution again finishes an interrupted seal (the journal is the same
//! translation, the items already stored are adopted after a byte-for-byte check) or, once
//! sealed, says where.

mod history;
mod objects;
#[cfg(test)]
mod tests;
mod translate;

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

pub use history::{from_json as recorded_history, ChildHistory, HistoryEvent, MAX_EVENTS};
pub use objects::MAX_OBJECT;
pub use translate::{
    definition_steps, events, item_of_key, safe_segment, step_of, translate, EvidenceObject,
    Execution, Fact, Fetched, Run, Translation,
};

use crate::aws::{self, AwsOptions};
use crate::events::{EvidenceSummary, RunEvent, RunStatus};
use crate::executor::{self, RunRecord, StagedArtifact};
use crate::exit_codes::Exit;
use crate::journal::{self, Journal};

/// What `irr evidence seal` was asked.
#[derive(Clone, Debug)]
pub struct SealRequest {
    /// `--execution`: the execution's ARN.
    pub execution_arn: String,
    /// `--evidence`: where to seal (default: where the execution wrote its evidence).
    pub evidence: Option<String>,
    /// `--evidence-owner`: the account the S3 buckets must belong to (default: the caller's).
    pub evidence_owner: Option<String>,
    /// `--state-dir`.
    pub state_dir: PathBuf,
    /// `--output json`.
    pub json: bool,
    /// AWS access.
    pub aws: AwsOptions,
}

/// Why the seal stopped before it was made: the exit and what to say.
#[derive(Debug)]
struct Stop {
    exit: Exit,
    message: String,
}

impl Stop {
    fn new(exit: Exit, message: impl Into<String>) -> Stop {
        Stop {
            exit,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> Stop {
        Stop::new(Exit::Invalid, message)
    }
}

/// `irr evidence seal`: runs [`seal`] on its own runtime.
pub fn command(req: SealRequest) -> Exit {
    crate::cli::block_on(seal(req))
}

/// Seals the execution `req.execution_arn` as a run (see the module's documentation); the
/// exit: 0 sealed (whatever the run's status), 1 sealed incompletely or not at all, 2 refused
/// (not an irr state machine, still running, bad ids or keys), 3 an object is not what the
/// execution wrote, 5 the execution or its objects could not be read.
pub async fn seal(req: SealRequest) -> Exit {
    match seal_execution(&req).await {
        Ok(exit) => exit,
        Err(stop) => {
            let message = if stop.message.starts_with("error") {
                stop.message
            } else {
                format!("error: {}", stop.message)
            };
            crate::run::say_masked(req.json, &message, &crate::secrets::Secrets::new());
            stop.exit
        }
    }
}

/// The parts of `arn:PARTITION:states:REGION:ACCOUNT:execution:STATE_MACHINE:NAME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutionArn {
    /// The region.
    pub region: String,
    /// The account.
    pub account: String,
    /// The execution's name.
    pub name: String,
}

/// Parses an execution ARN: a standard execution's (an express execution keeps no history
/// to read back).
pub fn parse_arn(arn: &str) -> Result<ExecutionArn, String> {
    let parts: Vec<&str> = arn.splitn(8, ':').collect();
    let [arn_word, partition, service, region, account, kind, machine, name] = parts[..] else {
        return Err(format!("{arn:?} is not an execution ARN (arn:aws:states:REGION:ACCOUNT:execution:STATE_MACHINE:NAME)"));
    };
    let region_ok = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ok = arn_word == "arn"
        && partition.starts_with("aws")
        && service == "states"
        && region_ok
        && irr_forensics::check_account_id(account).is_ok()
        && !machine.is_empty()
        && !name.is_empty();
    if kind == "express" {
        return Err(format!("{arn} is an express execution: Step Functions keeps no history of it to read back (GetExecutionHistory); compiled playbooks run as STANDARD state machines"));
    }
    if !ok || kind != "execution" {
        return Err(format!("{arn:?} is not an execution ARN (arn:aws:states:REGION:ACCOUNT:execution:STATE_MACHINE:NAME)"));
    }
    if !safe_segment(name) {
        return Err(format!("the execution's name {name:?} cannot be a run id (1-128 letters, digits, '.', '_' or '-', not starting with '.'), so it cannot name the run's folders; nothing was sealed"));
    }
    Ok(ExecutionArn {
        region: region.to_owned(),
        account: account.to_owned(),
        name: name.to_owned(),
    })
}

/// The playbook a compiled definition's `Comment` names: `irr playbook NAME VERSION
/// sha256:HEX`.
pub fn parse_comment(definition: &str) -> Result<irr_forensics::PlaybookRef, String> {
    let comment = serde_json::from_str::<Value>(definition)
        .ok()
        .and_then(|d| d.get("Comment").and_then(Value::as_str).map(str::to_owned));
    let not_irr = |why: &str| {
        format!("the execution's state machine is not an irr state machine: {why} (a compiled playbook's definition has the Comment \"irr playbook NAME VERSION sha256:HEX\"); nothing was sealed")
    };
    let Some(comment) = comment else {
        return Err(not_irr("its definition has no Comment"));
    };
    let words: Vec<&str> = comment.split_whitespace().collect();
    let ["irr", "playbook", name, version, hash] = words[..] else {
        return Err(not_irr(&format!("its Comment is {comment:?}")));
    };
    let hex = hash.strip_prefix("sha256:").unwrap_or("");
    let printable = |s: &str| s.len() <= 128 && s.chars().all(|c| !c.is_control());
    if hex.len() != 64
        || !hex.bytes().all(|b| b.is_ascii_hexdigit())
        || !printable(name)
        || !printable(version)
    {
        return Err(not_irr(&format!("its Comment is {comment:?}")));
    }
    Ok(irr_forensics::PlaybookRef {
        name: name.to_owned(),
        version: version.to_owned(),
        sha256: hex.to_ascii_lowercase(),
    })
}

/// What the execution's input gives the run.
#[derive(Clone, Debug, PartialEq)]
pub struct ExecutionInput {
    /// `case_id`, checked as `--case` is.
    pub case_id: String,
    /// `inputs` (an object; none: empty).
    pub inputs: serde_json::Map<String, Value>,
    /// `target.account`, when given.
    pub target_account: Option<String>,
    /// `target.role_arn`, when given.
    pub target_role: Option<String>,
}

/// Reads the execution's input: `{"case_id": "IR-...", "inputs": {...}, "target": {"account",
/// "role_arn"}}` (target optional).
pub fn parse_input(input: Option<&str>) -> Result<ExecutionInput, String> {
    let v: Value = input
        .and_then(|i| serde_json::from_str(i).ok())
        .ok_or("the execution's input is not JSON (a compiled playbook is started with {\"case_id\": ..., \"inputs\": {...}})")?;
    let case_id = v
        .get("case_id")
        .and_then(Value::as_str)
        .ok_or("the execution's input has no case_id")?;
    crate::cli::check_case_id(case_id).map_err(|e| format!("the execution's input: {e}"))?;
    let inputs = match v.get("inputs") {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err("the execution's input: inputs is not an object".to_owned()),
    };
    let target = |k: &str| {
        v.get("target")
            .and_then(|t| t.get(k))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let target_account = target("account");
    if let Some(a) = &target_account {
        irr_forensics::check_account_id(a)
            .map_err(|e| format!("the execution's input: target.account: {e}"))?;
    }
    Ok(ExecutionInput {
        case_id: case_id.to_owned(),
        inputs,
        target_account,
        target_role: target("role_arn").filter(|r| r.len() <= 2048),
    })
}

/// The execution as described, with its input.
struct Described {
    execution: Execution,
    input: Option<String>,
}

fn rfc3339(t: &aws_smithy_types::DateTime) -> String {
    t.fmt(aws_smithy_types::date_time::Format::DateTime)
        .ok()
        .and_then(|s| irr_forensics::Timestamp::parse(&s))
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// `DescribeExecution` and `DescribeStateMachineForExecution` (the definition this execution
/// ran, even if the state machine changed since).
async fn describe(sfn: &aws_sdk_sfn::Client, arn: &str) -> Result<Described, Stop> {
    let failed = |op: &str, f: irr_forensics::awserr::AwsFailure| {
        let exit = match f.code.as_deref() {
            Some("ExecutionDoesNotExist" | "InvalidArn") => Exit::Invalid,
            _ => Exit::Unverifiable,
        };
        Stop::new(
            exit,
            format!(
                "cannot read the execution {arn} ({op}): {}; nothing was sealed",
                f.line()
            ),
        )
    };
    let d = sfn
        .describe_execution()
        .execution_arn(arn)
        .send()
        .await
        .map_err(|e| {
            let f = irr_forensics::awserr::describe("states", "DescribeExecution", &e);
            failed("DescribeExecution", f)
        })?;
    let status = d.status().as_str().to_owned();
    if matches!(status.as_str(), "RUNNING" | "PENDING_REDRIVE") {
        return Err(Stop::invalid(format!("the execution {arn} is still running; seal it when it has ended (its status: {status}); nothing was sealed")));
    }
    let m = sfn
        .describe_state_machine_for_execution()
        .execution_arn(arn)
        .send()
        .await
        .map_err(|e| {
            let f =
                irr_forensics::awserr::describe("states", "DescribeStateMachineForExecution", &e);
            failed("DescribeStateMachineForExecution", f)
        })?;
    Ok(Described {
        execution: Execution {
            arn: arn.to_owned(),
            name: d.name().unwrap_or_default().to_owned(),
            state_machine_arn: d.state_machine_arn().to_owned(),
            status,
            started_at: rfc3339(d.start_date()),
            stopped_at: d.stop_date().map(rfc3339),
            output: d.output().map(str::to_owned),
            error: d.error().map(str::to_owned),
            cause: d.cause().map(str::to_owned),
            definition: m.definition().to_owned(),
            role_arn: m.role_arn().to_owned(),
        },
        input: d.input().map(str::to_owned),
    })
}

/// The history of the execution and of its distributed map runs' children; a child that
/// cannot be read is a gap, not a refusal.
async fn read_histories(
    sfn: &aws_sdk_sfn::Client,
    arn: &str,
) -> Result<
    (
        Vec<HistoryEvent>,
        Vec<ChildHistory>,
        Vec<irr_forensics::Gap>,
    ),
    Stop,
> {
    let stop = |e: history::ReadError| {
        let exit = if e.unreadable {
            Exit::Unverifiable
        } else {
            Exit::Invalid
        };
        Stop::new(exit, format!("{}; nothing was sealed", e.message))
    };
    let mut budget = history::Budget::full();
    let events = history::read(sfn, arn, &mut budget).await.map_err(stop)?;
    let mut children = Vec::new();
    let mut gaps = Vec::new();
    let by_id: std::collections::HashMap<i64, &HistoryEvent> =
        events.iter().map(|e| (e.id, e)).collect();
    for e in events.iter().filter(|e| e.kind == "MapRunStarted") {
        let Some(map_run) = &e.map_run_arn else {
            continue;
        };
        let step = translate::state_of(e, &by_id)
            .as_deref()
            .and_then(step_of)
            .unwrap_or("irr")
            .to_owned();
        let gap = |error: String| irr_forensics::Gap {
            step: step.clone(),
            what: format!("the child executions of map run {map_run}"),
            error,
        };
        match history::map_run_children(sfn, map_run).await {
            Err(error) => gaps.push(gap(error)),
            Ok(arns) => {
                for child in arns {
                    match history::read(sfn, &child, &mut budget).await {
                        Ok(events) => children.push(ChildHistory { arn: child, events }),
                        Err(e) if e.unreadable => gaps.push(gap(format!("{child}: {}", e.message))),
                        Err(e) => return Err(stop(e)),
                    }
                }
            }
        }
    }
    Ok((events, children, gaps))
}

/// What `STATE_DIR/runs/RUN_ID/` holds for this execution already.
enum Existing {
    /// Nothing (or only staged files of a seal that stopped before `run.json`).
    Nothing,
    /// A seal that did not finish: its journal is continued.
    Unfinished,
    /// The sealed run's end, as its journal tells it.
    Sealed(Box<journal::Finish>),
}

fn existing(dir: &Path, arn: &str) -> Result<Existing, Stop> {
    let run_json = dir.join("run.json");
    if !run_json.exists() {
        return Ok(Existing::Nothing);
    }
    let record: RunRecord = std::fs::read(&run_json)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .map_err(|e| {
            Stop::invalid(format!(
                "cannot read {}: {e}; nothing was sealed",
                run_json.display()
            ))
        })?;
    if record.execution.as_deref() != Some(arn) {
        return Err(Stop::invalid(format!(
            "{} holds another run ({}), not the execution {arn}; nothing was sealed",
            dir.display(),
            record.execution.as_deref().unwrap_or("an irr run")
        )));
    }
    let path = dir.join("journal.jsonl");
    if !path.exists() {
        return Ok(Existing::Unfinished);
    }
    let entries =
        journal::read(&path).map_err(|e| Stop::invalid(format!("{e}; nothing was sealed")))?;
    Ok(match journal::replay(&entries).finished {
        Some(fin) => Existing::Sealed(Box::new(fin)),
        None => Existing::Unfinished,
    })
}

/// The answer for an execution sealed already: where, and the exit it sealed with.
fn already_sealed(req: &SealRequest, run_id: &str, fin: &journal::Finish) -> Exit {
    let ev = fin.evidence.clone().unwrap_or_default();
    let ok = ev.error.is_none() && ev.manifest_sha256.is_some();
    let line = match &ev.error {
        None => format!(
            "execution {} is sealed already as run {run_id} at {} (manifest sha256 {}); `irr evidence verify {}` checks it, `irr report {run_id}` reviews it",
            req.execution_arn, ev.location, ev.manifest_sha256.as_deref().unwrap_or("?"), ev.location
        ),
        Some(e) => format!("execution {} was sealed already as run {run_id} at {}, incompletely: {e}", req.execution_arn, ev.location),
    };
    if req.json {
        let v = serde_json::json!({"event": "already_sealed", "run_id": run_id, "status": fin.status, "evidence": ev, "message": line});
        let _ = writeln!(std::io::stdout().lock(), "{v}");
    } else {
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }
    if ok {
        Exit::Success
    } else {
        Exit::RunFailed
    }
}

/// Everything read and checked, before anything is written.
struct Prepared {
    arn: ExecutionArn,
    caller: aws::Identity,
    aws: aws::Aws,
    run: Run,
    input: ExecutionInput,
    dir: PathBuf,
    existing: Existing,
}

/// The ARN, AWS, the execution, its state machine and input, and what the state directory
/// holds for it.
async fn prepare(req: &SealRequest) -> Result<Prepared, Stop> {
    let arn = parse_arn(&req.execution_arn).map_err(Stop::invalid)?;
    let mut opts = req.aws.clone();
    match &opts.region {
        Some(r) if *r != arn.region => {
            return Err(Stop::invalid(format!("the execution is in region {}, but --region says {r}; run without --region or with --region {}; nothing was sealed", arn.region, arn.region)));
        }
        _ => opts.region = Some(arn.region.clone()),
    }
    let aws = aws::connect(&opts)
        .await
        .map_err(|e| Stop::invalid(format!("{e}; nothing was sealed")))?;
    let caller = aws
        .identity()
        .await
        .map_err(|e| Stop::invalid(format!("{e}; nothing was sealed")))?;
    let described = describe(&aws.clients.sfn, &req.execution_arn).await?;
    let playbook = parse_comment(&described.execution.definition).map_err(Stop::invalid)?;
    let input = parse_input(described.input.as_deref())
        .map_err(|e| Stop::invalid(format!("{e}; nothing was sealed")))?;
    if described.execution.name != arn.name {
        return Err(Stop::invalid(format!(
            "Step Functions describes the execution {} as named {:?}; nothing was sealed",
            req.execution_arn, described.execution.name
        )));
    }
    let dir = executor::run_dir(&req.state_dir, &arn.name);
    let existing = existing(&dir, &req.execution_arn)?;
    let mut notes = vec![format!(
        "Step Functions execution {} of state machine {} ({}{}), sealed by {}",
        req.execution_arn,
        described.execution.state_machine_arn,
        described.execution.status,
        described
            .execution
            .stopped_at
            .as_deref()
            .map(|t| format!(" at {t}"))
            .unwrap_or_default(),
        caller.arn
    )];
    if let Some(account) = &input.target_account {
        notes.push(format!(
            "the execution acted in account {account}{}",
            input
                .target_role
                .as_deref()
                .map(|r| format!(" through {r}"))
                .unwrap_or_default()
        ));
    }
    let run = Run {
        execution: described.execution,
        case_id: input.case_id.clone(),
        playbook,
        notes,
    };
    Ok(Prepared {
        arn,
        caller,
        aws,
        run,
        input,
        dir,
        existing,
    })
}

async fn seal_execution(req: &SealRequest) -> Result<Exit, Stop> {
    let p = prepare(req).await?;
    if let Existing::Sealed(fin) = &p.existing {
        return Ok(already_sealed(req, &p.arn.name, fin));
    }
    let (history, children, read_gaps) =
        read_histories(&p.aws.clients.sfn, &req.execution_arn).await?;
    let mut t = translate(&p.run, &history, &children);
    let at = t
        .facts
        .iter()
        .position(|(_, f)| *f == Fact::RunStarted)
        .map_or(0, |i| i + 1);
    let ts = t
        .facts
        .first()
        .map(|(ts, _)| ts.clone())
        .unwrap_or_default();
    for (i, gap) in read_gaps.into_iter().enumerate() {
        t.facts.insert(at + i, (ts.clone(), Fact::Gap(gap)));
    }
    let location = match req.evidence.clone().or_else(|| t.default_location()) {
        Some(l) => l,
        None => return Err(Stop::invalid("the execution wrote no evidence object, so there is no evidence location to default to; give --evidence LOCATION; nothing was sealed")),
    };
    let owner = crate::evidence::evidence_owner(
        req.evidence_owner.as_deref(),
        Some(p.caller.account_id.as_str()),
    )
    .map_err(|e| Stop::invalid(format!("{e}; nothing was sealed")))?;
    let store = crate::evidence::open_store(
        &location,
        Some(p.aws.clients.s3.clone()),
        &crate::model::EvidenceDecl::default(),
        false,
        owner.as_deref(),
    )
    .await
    .map_err(|e| {
        Stop::invalid(format!(
            "evidence location {location}: {e}; nothing was sealed"
        ))
    })?;
    let existed = p.dir.exists();
    let fetched = match fetch_all(&p.aws.clients.s3, owner.as_deref(), &t, &p.dir).await {
        Ok(f) => f,
        Err(stop) => {
            if !existed {
                let _ = std::fs::remove_dir_all(&p.dir);
            }
            return Err(stop);
        }
    };
    let s3_owner = owner.filter(|_| matches!(store, irr_forensics::Store::S3(_)));
    let record = record_of(&p, &location, s3_owner);
    write_run(&p.dir, &record, &events(&p.run, &t, &fetched))?;
    Ok(seal_and_finish(req, &p, store, &record, &t, &fetched).await)
}

/// Fetches every evidence object into `dir/evidence/PATH`, checked; on any error the files it
/// made are removed and nothing is sealed.
async fn fetch_all(
    s3: &aws_sdk_s3::Client,
    owner: Option<&str>,
    t: &Translation,
    dir: &Path,
) -> Result<Vec<Option<Fetched>>, Stop> {
    let mut out = Vec::with_capacity(t.objects.len());
    let mut made: Vec<PathBuf> = Vec::new();
    for o in &t.objects {
        if o.superseded {
            out.push(None);
            continue;
        }
        let dest = dir.join("evidence").join(&o.path);
        // A copy staged by a seal that stopped: fetched again (the version is pinned).
        let _ = std::fs::remove_file(&dest);
        match objects::fetch(s3, owner, o, &dest).await {
            Ok(f) => {
                made.push(dest);
                out.push(Some(f));
            }
            Err(e) => {
                let _ = std::fs::remove_file(&dest);
                for f in made {
                    let _ = std::fs::remove_file(f);
                }
                let exit = match e {
                    objects::FetchError::Unreadable(_) => Exit::Unverifiable,
                    objects::FetchError::Mismatch(_) => Exit::EvidenceMismatch,
                    objects::FetchError::Refused(_) => Exit::Invalid,
                };
                let message = format!("evidence object of step {}: {e}", o.step);
                let message = if message.contains("nothing was sealed") {
                    message
                } else {
                    format!("{message}; nothing was sealed")
                };
                return Err(Stop::new(exit, message));
            }
        }
    }
    Ok(out)
}

/// The run's `run.json`: who acted is the execution's role, where its account (or the
/// target it named).
fn record_of(p: &Prepared, location: &str, evidence_owner: Option<String>) -> RunRecord {
    let ex = &p.run.execution;
    RunRecord {
        run_id: p.arn.name.clone(),
        case_id: p.run.case_id.clone(),
        playbook_path: PathBuf::from(&ex.state_machine_arn),
        playbook_sha256: p.run.playbook.sha256.clone(),
        inputs: p.input.inputs.clone(),
        secret_inputs: Vec::new(),
        defaulted_inputs: None,
        evidence_location: location.to_owned(),
        dry_run: false,
        concurrency: 1,
        started_at: ex.started_at.clone(),
        region: p.arn.region.clone(),
        account_id: p
            .input
            .target_account
            .clone()
            .unwrap_or_else(|| p.arn.account.clone()),
        aws_principal: ex.role_arn.clone(),
        evidence_owner,
        signing_key: None,
        target: None,
        fanout: None,
        execution: Some(ex.arn.clone()),
    }
}

/// Writes `run.json` and the journal (the translation, each event at its time). A journal
/// there already (an interrupted seal) must begin with exactly this translation, and is
/// continued.
fn write_run(dir: &Path, record: &RunRecord, events: &[(String, RunEvent)]) -> Result<(), Stop> {
    let io = |what: &Path, e: &dyn std::fmt::Display| {
        Stop::invalid(format!(
            "cannot write {}: {e}; nothing was sealed",
            what.display()
        ))
    };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, &e))?;
    record
        .write(dir)
        .map_err(|e| io(&dir.join("run.json"), &e))?;
    let path = dir.join("journal.jsonl");
    let fresh = dir.join("journal.jsonl.new");
    let _ = std::fs::remove_file(&fresh);
    {
        let j = Journal::open(&fresh).map_err(|e| io(&fresh, &e))?;
        for (ts, event) in events {
            j.append_at(event, ts).map_err(|e| io(&fresh, &e))?;
        }
    }
    if !path.exists() {
        return std::fs::rename(&fresh, &path).map_err(|e| io(&path, &e));
    }
    let (old, new) = (std::fs::read(&path), std::fs::read(&fresh));
    let _ = std::fs::remove_file(&fresh);
    match (old, new) {
        (Ok(old), Ok(new)) if old.starts_with(&new) => Ok(()),
        _ => Err(Stop::invalid(format!("{} is not this execution's translation (an interrupted seal's journal begins with it); move the run's folder away to seal it afresh; nothing was sealed", path.display()))),
    }
}

/// Seals the run (the same seal as a CLI run's), journals `evidence_sealed` and
/// `run_finished`, and says how it went.
async fn seal_and_finish(
    req: &SealRequest,
    p: &Prepared,
    store: irr_forensics::Store,
    record: &RunRecord,
    t: &Translation,
    fetched: &[Option<Fetched>],
) -> Exit {
    let artifacts: Vec<StagedArtifact> = t
        .objects
        .iter()
        .zip(fetched)
        .filter_map(|(o, f)| f.as_ref().map(|f| (o, f)))
        .map(|(o, f)| StagedArtifact {
            path: o.path.clone(),
            attempt: executor::attempt_of(&o.path, &o.step),
            sha256: f.sha256.clone(),
            size: f.size,
            step: o.step.clone(),
            source: o.source(),
            captured_at: o.ts.clone(),
        })
        .collect();
    let mut resources = Vec::new();
    for (_, fact) in &t.facts {
        if let Fact::Resource { resource, .. } = fact {
            if !resources.contains(resource) {
                resources.push(resource.clone());
            }
        }
    }
    let journal_path = p.dir.join("journal.jsonl");
    let mut collector = irr_forensics::Collector::this_host(
        format!("irr {}", env!("CARGO_PKG_VERSION")),
        Some(p.caller.arn.clone()).filter(|a| !a.is_empty()),
    );
    collector.execution_arn = Some(req.execution_arn.clone());
    let info = irr_forensics::RunInfo {
        playbook: p.run.playbook.clone(),
        collector,
        started_at: irr_forensics::Timestamp::parse(&record.started_at)
            .unwrap_or_else(irr_forensics::Timestamp::now),
    };
    let staging = p.dir.join("evidence");
    let staged = crate::evidence::Staged {
        dir: &staging,
        artifacts: &artifacts,
        resources: &resources,
        journal: &journal_path,
    };
    let summary = crate::evidence::seal_run(store, info, record, &staged, &[]).await;
    let mut status = t.status;
    if summary.error.is_some() && status == RunStatus::Succeeded {
        status = RunStatus::Failed;
    }
    let finished = RunEvent::RunFinished {
        run_id: record.run_id.clone(),
        case_id: record.case_id.clone(),
        status,
        steps: t.steps.clone(),
        evidence: Some(summary.clone()),
        gaps: crate::evidence::gaps_from_journal(&journal_path),
    };
    let journaled = Journal::open(&journal_path).and_then(|j| {
        j.append(&RunEvent::EvidenceSealed(summary.clone()))?;
        j.append(&finished)
    });
    if let Err(e) = &journaled {
        crate::run::say_masked(
            req.json,
            &format!("error: the seal is made, but its end could not be journaled: {e}"),
            &crate::secrets::Secrets::new(),
        );
    }
    tell(req, p, status, &summary, &finished);
    if summary.error.is_none() && summary.manifest_sha256.is_some() && journaled.is_ok() {
        Exit::Success
    } else {
        Exit::RunFailed
    }
}

/// The outcome: the `run_finished` line (`--output json`) or a few lines for people.
fn tell(
    req: &SealRequest,
    p: &Prepared,
    status: RunStatus,
    summary: &EvidenceSummary,
    finished: &RunEvent,
) {
    if req.json {
        let line = serde_json::to_string(finished).unwrap_or_default();
        let _ = writeln!(std::io::stdout().lock(), "{line}");
        return;
    }
    let status = serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let pb = &p.run.playbook;
    let mut text = format!(
        "execution {} ({}) read back as run {} of case {}: playbook {} {}, {status}\n",
        req.execution_arn, p.run.execution.status, p.arn.name, p.run.case_id, pb.name, pb.version
    );
    match (&summary.manifest_sha256, &summary.error) {
        (Some(h), None) => text.push_str(&format!(
            "sealed: {} items at {} (manifest sha256 {h})\n  verify: irr evidence verify {}\n  review: irr report {}\n",
            summary.items, summary.location, summary.location, p.arn.name
        )),
        (Some(h), Some(e)) => text.push_str(&format!(
            "SEALED INCOMPLETELY: {} items at {} (manifest sha256 {h}): {e}\n",
            summary.items, summary.location
        )),
        (None, e) => text.push_str(&format!(
            "NOT SEALED at {}: {}\n",
            summary.location,
            e.as_deref().unwrap_or("unknown error")
        )),
    }
    let _ = write!(std::io::stdout().lock(), "{text}");
}
