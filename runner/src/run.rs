//! `irr run` and `irr resume`: from a checked playbook to a sealed, journaled run.
//!
//! The order matters for a responder under stress: everything that can be checked without
//! changing anything is checked first (playbook, inputs, actions available, AWS identity,
//! evidence bucket); then the plan is shown and confirmed; only then does the first change
//! happen. Whatever happens after that, the evidence is sealed and the run's last event is
//! its summary.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use serde_json::Value;

use crate::aws::{self, AwsOptions};
use crate::events::{RunEvent, RunStatus, StepStatus, StepSummary};
use crate::evidence;
use crate::executor::{self, Execution, Reporter, RunRecord};
use crate::exit_codes::Exit;
use crate::journal;
use crate::model::Playbook;
use crate::plan::{self, PlanContext};
use crate::reporter::{JsonLines, Terminal};
use crate::secrets::Secrets;
use crate::signing;
use crate::template;
use irr_forensics::clock::now_rfc3339;

/// What `irr run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The playbook file.
    pub playbook_path: PathBuf,
    /// The validated playbook.
    pub playbook: Playbook,
    /// Resolved inputs.
    pub inputs: serde_json::Map<String, Value>,
    /// The inputs that took their default ([`crate::validate::ResolvedInputs::defaulted`]).
    pub defaulted_inputs: Vec<String>,
    /// `--case`.
    pub case_id: String,
    /// `--evidence`.
    pub evidence: Option<String>,
    /// `--yes`.
    pub yes: bool,
    /// `--dry-run`.
    pub dry_run: bool,
    /// `--concurrency`.
    pub concurrency: usize,
    /// `--state-dir`.
    pub state_dir: PathBuf,
    /// JSON Lines output.
    pub json: bool,
    /// AWS access.
    pub aws: AwsOptions,
    /// Create the evidence bucket if missing (drills).
    pub create_evidence_bucket: bool,
    /// `--evidence-owner`: the account the S3 evidence bucket must belong to (default: the
    /// caller's account).
    pub evidence_owner: Option<String>,
    /// `--signing-key`: the key that signs the seal (default: the playbook's
    /// `evidence.signing_key`).
    pub signing_key: Option<String>,
    /// `--targets FILE`: fan out over these accounts and regions (default: the playbook's
    /// `targets:`; neither: the caller's own account and region).
    pub targets: Option<crate::targets::TargetsDecl>,
    /// `--finding`: the finding that starts the run, as read, and what the playbook's
    /// trigger maps it to (its inputs are in `inputs` already; its target account and
    /// region are checked against the run's, see [`finding_region`] and [`finding_account`]).
    pub finding: Option<crate::finding::Triggered>,
}

/// The result of a run, for callers such as `irr gameday`.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The exit code.
    pub exit: Exit,
    /// The run id, once one was made.
    pub run_id: Option<String>,
    /// The run's status.
    pub status: Option<RunStatus>,
    /// Step results.
    pub steps: Vec<StepSummary>,
    /// The evidence summary.
    pub evidence: Option<crate::events::EvidenceSummary>,
}

impl RunResult {
    pub(crate) fn early(exit: Exit) -> RunResult {
        RunResult {
            exit,
            run_id: None,
            status: None,
            steps: Vec::new(),
            evidence: None,
        }
    }
}

fn say(json: bool, msg: &str) {
    say_masked(json, msg, &Secrets::new());
}

/// [`say`], with the run's secrets masked.
pub(crate) fn say_masked(json: bool, msg: &str, secrets: &Secrets) {
    let msg: &str = &secrets.mask_str(msg);
    if json {
        let line = serde_json::json!({"event": "error", "message": msg});
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    } else {
        let _ = writeln!(std::io::stderr().lock(), "{msg}");
    }
}

fn reporter(json: bool) -> Box<dyn Reporter> {
    if json {
        Box::new(JsonLines)
    } else {
        Box::new(Terminal::new(false))
    }
}

/// Asks `question` on the terminal: `Err` is the refusal to say (not confirmed, or no
/// terminal to ask on).
pub(crate) fn ask(question: &str) -> Result<(), &'static str> {
    match confirm(question) {
        Some(true) => Ok(()),
        Some(false) => Err("aborted: not confirmed; nothing was changed"),
        None => Err("refused: no terminal to confirm on; pass --yes; nothing was changed"),
    }
}

/// Asks on the terminal; `None` when there is no terminal to ask on.
fn confirm(question: &str) -> Option<bool> {
    if !std::io::stdin().is_terminal() {
        return None;
    }
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "{question} [y/N] ");
    let _ = err.flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).ok()?;
    Some(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// Why this build cannot run the playbook (a step whose action it cannot run), if so.
pub(crate) fn unrunnable(pb: &Playbook) -> Option<String> {
    let step = pb
        .all_steps()
        .find(|s| !executor::implemented(s.action.name))?;
    let (id, action) = (&step.id, step.action.name);
    Some(format!("error: step \"{id}\" uses {action}, which this build of irr cannot run yet; nothing was changed"))
}

/// Who a run that makes no AWS call is.
pub(crate) fn no_aws_identity() -> aws::Identity {
    aws::Identity {
        account_id: String::new(),
        arn: "none (the playbook makes no AWS call)".to_owned(),
    }
}

/// Writes a new run's `run.json` (no secret in it: `RunRecord::to_disk`) in its directory.
pub(crate) fn save_record(state_dir: &Path, record: &RunRecord) -> Result<(), String> {
    let dir = record.dir(state_dir);
    std::fs::create_dir_all(&dir)
        .and_then(|_| record.write(&dir))
        .map_err(|e| {
            format!(
                "error: cannot write the run's state in {}: {e}; nothing was changed",
                dir.display()
            )
        })
}

/// The run's signer, if a key is chosen, as its reference (`run.json` records it) and the
/// loaded key.
type ChosenSigner = Option<(String, irr_forensics::Signer)>;

/// Opens the run's evidence store (`evidence::open_store`) and loads the key that will sign
/// its seal (`signing::choose`); `Err` is what to say.
pub(crate) async fn open_evidence(
    location: &str,
    aws: &aws::Aws,
    evidence: &crate::model::EvidenceDecl,
    create_bucket: bool,
    owner: Option<&str>,
    key: &signing::KeyChoice,
) -> Result<(irr_forensics::Store, ChosenSigner), String> {
    let store = evidence::open_store(
        location,
        Some(aws.clients.s3.clone()),
        evidence,
        create_bucket,
        owner,
    )
    .await
    .map_err(|e| format!("error: evidence location {location}: {e}; nothing was changed"))?;
    Ok((store, signing::choose(key, &aws.config).await?))
}

/// The AWS connection and who it is, when the run needs AWS; else offline clients.
/// `offline` is who the run is when it makes no AWS call.
pub(crate) async fn connect_if(
    needs_aws: bool,
    opts: &aws::AwsOptions,
    offline: aws::Identity,
) -> Result<(aws::Aws, aws::Identity), String> {
    if !needs_aws {
        return Ok((aws::offline(opts.region.as_deref()), offline));
    }
    let aws = aws::connect(opts)
        .await
        .map_err(|e| format!("error: {e}; nothing was changed"))?;
    let identity = aws
        .identity()
        .await
        .map_err(|e| format!("error: {e}; nothing was changed"))?;
    Ok((aws, identity))
}

/// Where the run's evidence goes: `--evidence`, else the playbook's (rendered), else
/// `STATE_DIR/evidence`; a dry run's under the state directory, since it changes nothing in
/// AWS, the evidence bucket included.
pub(crate) fn evidence_location_of(req: &RunRequest, pre_ctx: &Value) -> Result<String, String> {
    Ok(match &req.evidence {
        _ if req.dry_run => absolute(&req.state_dir.join("dry-run-evidence"))
            .display()
            .to_string(),
        Some(l) => l.clone(),
        None => match &req.playbook.evidence.location {
            Some(l) => match template::render_str(l, pre_ctx) {
                Ok(Value::String(s)) => s,
                Ok(other) => other.to_string(),
                Err(e) => {
                    return Err(format!(
                        "error: evidence.location: {e}; nothing was changed"
                    ))
                }
            },
            None => absolute(&req.state_dir.join("evidence"))
                .display()
                .to_string(),
        },
    })
}

/// Shows the plan and asks to proceed (`place`: "in account A (REGION) as ARN", or empty when
/// the run makes no AWS call). `Err` is the refusal to say: nothing was changed.
pub(crate) fn confirm_plan(
    the_plan: &plan::Plan,
    secrets: &Secrets,
    place: &str,
) -> Result<(), &'static str> {
    let changes = the_plan
        .steps
        .iter()
        .chain(&the_plan.finally)
        .filter(|s| s.mutating)
        .count();
    let _ = write!(
        std::io::stderr().lock(),
        "{}",
        secrets.mask_str(&the_plan.render_text())
    );
    let question = if place.is_empty() {
        format!("\nThis run makes {changes} changing step(s) and no AWS call. Proceed?")
    } else {
        format!("\nThis run makes {changes} changing step(s) {place}. Proceed?")
    };
    match confirm(&question) {
        Some(true) => Ok(()),
        Some(false) => Err("aborted: not confirmed; nothing was changed"),
        None => Err("refused: no terminal to confirm on; pass --yes to run without confirmation (or --dry-run); nothing was changed"),
    }
}

/// The region a run started by a finding acts in: the one the finding names (its trigger's
/// `targets.region`) unless `--region` is given; `--region` naming another is refused.
/// (A run started by a finding acts in one account and region, the finding's: it does not
/// fan out, see [`run`].)
pub fn finding_region(
    finding: Option<&crate::finding::Triggered>,
    opts: &mut AwsOptions,
) -> Result<(), String> {
    let Some(region) = finding.and_then(|f| f.mapped.region.as_ref()) else {
        return Ok(());
    };
    match &opts.region {
        Some(given) if given != region => Err(format!(
            "error: the finding is in region {region} (the playbook's trigger targets.region), but --region says {given}; run without --region or with --region {region}; nothing was changed"
        )),
        _ => {
            opts.region = Some(region.clone());
            Ok(())
        }
    }
}

/// A run started by a finding acts in the account the finding names (its trigger's
/// `targets.account`): the caller's account, after `--assume-role`, must be that one.
pub fn finding_account(
    finding: Option<&crate::finding::Triggered>,
    caller: &aws::Identity,
    opts: &AwsOptions,
) -> Result<(), String> {
    let Some(account) = finding.and_then(|f| f.mapped.account.as_ref()) else {
        return Ok(());
    };
    if &caller.account_id == account {
        return Ok(());
    }
    let via = match &opts.assume_role {
        Some(role) => format!(" (after --assume-role {role})"),
        None => String::new(),
    };
    Err(format!(
        "error: the finding is about account {account} (the playbook's trigger targets.account), but these credentials{via} are for account {} ({}); run with credentials for {account}, or --assume-role arn:aws:iam::{account}:role/ROLE; nothing was changed",
        caller.account_id, caller.arn
    ))
}

/// The finding as the run's first evidence item.
fn finding_items(finding: Option<&crate::finding::Triggered>) -> Vec<executor::FirstItem> {
    finding.map(finding_item).into_iter().collect()
}

/// The finding as an evidence item (a fan-out's: of the child it narrowed the run to).
pub(crate) fn finding_item(f: &crate::finding::Triggered) -> executor::FirstItem {
    executor::FirstItem {
        path: crate::finding::EVIDENCE_PATH.to_owned(),
        step: crate::finding::EVIDENCE_STEP.to_owned(),
        content: f.bytes.clone(),
        source: f.evidence_source(),
    }
}

/// Connects (when the run needs AWS, or its finding names a target to check) and checks
/// the finding's target against who and where the run is; `Err` is what to say.
async fn connect_for(
    req: &RunRequest,
    needs_aws: bool,
) -> Result<(aws::Aws, aws::Identity), String> {
    let mut opts = req.aws.clone();
    finding_region(req.finding.as_ref(), &mut opts)?;
    let targeted = req
        .finding
        .as_ref()
        .is_some_and(|f| f.mapped.account.is_some() || f.mapped.region.is_some());
    let (aws, identity) = connect_if(needs_aws || targeted, &opts, no_aws_identity()).await?;
    finding_account(req.finding.as_ref(), &identity, &opts)?;
    Ok((aws, identity))
}

/// `irr run`: in the caller's account and region, or fanned out over the targets
/// (`--targets`, else the playbook's `targets:`). A run started by a finding acts in the one
/// account and region the finding names: with the playbook's `targets:`, as a fan-out to
/// that one target (which must be among them, `fanout::run`); without, in the caller's
/// account (`finding_region`, `finding_account`). `--targets` beside `--finding` is refused.
pub async fn run(req: RunRequest) -> RunResult {
    if req.finding.is_some() {
        if req.targets.is_some() {
            say(req.json, "error: --finding runs in the one account and region the finding names (the playbook's trigger targets), so it does not fan out over --targets; give one or the other; nothing was changed");
            return RunResult::early(Exit::Invalid);
        }
        return match req.playbook.targets.clone() {
            Some(decl) => crate::fanout::run(req, decl).await,
            None => run_here(req).await,
        };
    }
    match req.targets.clone().or_else(|| req.playbook.targets.clone()) {
        Some(decl) => crate::fanout::run(req, decl).await,
        None => run_here(req).await,
    }
}

/// `irr run` in the caller's own account and region.
async fn run_here(req: RunRequest) -> RunResult {
    let pb = &req.playbook;
    let secrets = Secrets::for_inputs(pb, &req.inputs);
    let say = |json: bool, msg: &str| say_masked(json, msg, &secrets);
    if let Some(msg) = unrunnable(pb) {
        say(req.json, &msg);
        return RunResult::early(Exit::Invalid);
    }
    let run_id = executor::new_run_id();
    let started_at = now_rfc3339();
    let key = signing::KeyChoice::new(req.signing_key.as_deref(), &req.playbook_path, &pb.evidence);
    // AWS only when needed: a playbook whose steps make no AWS call and whose evidence is
    // local runs without a region or credentials.
    let needs_aws = req.create_evidence_bucket
        || aws::playbook_needs_aws(pb, req.evidence.as_deref())
        || key.needs_aws();
    let (aws, identity) = match connect_for(&req, needs_aws).await {
        Ok(c) => c,
        Err(msg) => {
            say(req.json, &msg);
            return RunResult::early(Exit::Invalid);
        }
    };
    // Evidence location: --evidence, else the playbook's, else STATE_DIR/evidence.
    let ctx = PlanContext {
        case_id: Some(req.case_id.clone()),
        run_id: Some(run_id.clone()),
        started_at: Some(started_at.clone()),
        region: Some(aws.region.clone()),
        account_id: Some(identity.account_id.clone()),
        defaulted_inputs: Some(req.defaulted_inputs.clone()),
    };
    let pre_ctx = plan::base_context(pb, &req.inputs, &ctx);
    // A dry run changes nothing in AWS, the evidence bucket included: what it saw is sealed
    // under the state directory.
    let location = match evidence_location_of(&req, &pre_ctx) {
        Ok(l) => l,
        Err(msg) => {
            say(req.json, &msg);
            return RunResult::early(Exit::Invalid);
        }
    };
    // Every request on an S3 evidence bucket says which account must own it: a bucket of
    // that name in another account (a look-alike) is refused before anything is written.
    let evidence_owner = match evidence::evidence_owner(
        req.evidence_owner.as_deref(),
        Some(identity.account_id.as_str()),
    ) {
        Ok(o) => o,
        Err(e) => {
            say(req.json, &format!("error: {e}; nothing was changed"));
            return RunResult::early(Exit::Invalid);
        }
    };
    let (store, signer) = match open_evidence(
        &location,
        &aws,
        &pb.evidence,
        req.create_evidence_bucket,
        evidence_owner.as_deref(),
        &key,
    )
    .await
    {
        Ok(s) => s,
        Err(msg) => {
            say(req.json, &msg);
            return RunResult::early(Exit::Invalid);
        }
    };
    let the_plan = plan::plan(pb, req.inputs.clone(), &ctx);
    // NoEcho values known before the run are masked from the plan and the first event on.
    secrets.extend(&plan::secrets(pb, &the_plan, &key.playbook_dir));
    if !req.yes && !req.dry_run {
        let question = if needs_aws {
            format!(
                "in account {} ({}) as {}",
                identity.account_id, aws.region, identity.arn
            )
        } else {
            String::new()
        };
        if let Err(msg) = confirm_plan(&the_plan, &secrets, &question) {
            say(req.json, msg);
            return RunResult::early(Exit::Aborted);
        }
    }
    let record = RunRecord {
        run_id: run_id.clone(),
        case_id: req.case_id.clone(),
        playbook_path: absolute(&req.playbook_path),
        playbook_sha256: pb.sha256.clone(),
        inputs: req.inputs.clone(),
        secret_inputs: pb.secret_inputs().map(str::to_owned).collect(),
        defaulted_inputs: Some(req.defaulted_inputs.clone()),
        evidence_location: location,
        dry_run: req.dry_run,
        concurrency: req.concurrency.max(1),
        started_at,
        region: aws.region.clone(),
        account_id: identity.account_id.clone(),
        aws_principal: identity.arn.clone(),
        evidence_owner: evidence_owner.filter(|_| matches!(store, irr_forensics::Store::S3(_))),
        signing_key: signer.as_ref().map(|(k, _)| k.clone()),
        ..RunRecord::default()
    };
    if let Err(msg) = save_record(&req.state_dir, &record) {
        say(req.json, &msg);
        return RunResult::early(Exit::Invalid);
    }
    execute_and_seal(
        pb.clone(),
        record,
        aws.clients,
        store,
        req.yes,
        &req.state_dir,
        HashMap::new(),
        HashMap::new(),
        Presentation::of(req.json),
        false,
        secrets,
        signer.map(|(_, s)| s),
        finding_items(req.finding.as_ref()),
    )
    .await
}

/// How a run's events are shown and its items paced: the reporter (a fan-out child's names
/// its target) and the limit shared by every child of a fan-out (`--concurrency`).
pub(crate) struct Presentation {
    /// Where events go after the journal.
    pub reporter: Box<dyn Reporter>,
    /// JSON output (for errors said before the first event).
    pub json: bool,
    /// Items at once across the whole run, over every child.
    pub shared_limit: Option<Arc<tokio::sync::Semaphore>>,
}

impl Presentation {
    fn of(json: bool) -> Presentation {
        Presentation {
            reporter: reporter(json),
            json,
            shared_limit: None,
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn execute_and_seal(
    playbook: Playbook,
    record: RunRecord,
    clients: crate::actions::AwsClients,
    store: irr_forensics::Store,
    yes: bool,
    state_dir: &Path,
    previous: HashMap<String, StepSummary>,
    previous_attempts: HashMap<String, u32>,
    shown: Presentation,
    resumed: bool,
    secrets: Secrets,
    signer: Option<irr_forensics::Signer>,
    first_items: Vec<executor::FirstItem>,
) -> RunResult {
    let json = shown.json;
    let dir = record.dir(state_dir);
    let sink = match executor::open_sink_at(&dir, shown.reporter, secrets) {
        Ok(s) => s,
        Err(e) => {
            say(json, &format!("error: {e}; nothing was changed"));
            return RunResult::early(Exit::Invalid);
        }
    };
    sink.emit(RunEvent::RunStarted {
        run_id: record.run_id.clone(),
        case_id: record.case_id.clone(),
        playbook: playbook.metadata.name.clone(),
        version: playbook.metadata.version.clone(),
        playbook_sha256: playbook.sha256.clone(),
        dry_run: record.dry_run,
        resumed,
        aws_principal: Some(record.aws_principal.clone()),
    });
    let run_id = record.run_id.clone();
    let case_id = record.case_id.clone();
    let exec = Execution {
        playbook: playbook.clone(),
        record: record.clone(),
        aws: clients,
        assume_yes: yes,
        state_dir: state_dir.to_owned(),
        previous,
        previous_attempts,
        store: Some(store.clone()),
        shared_limit: shown.shared_limit,
        first_items,
    };
    let interrupted = Arc::new(AtomicBool::new(false));
    let outcome = executor::execute(exec, sink.clone(), interrupted).await;

    // Artifacts and resources of earlier attempts (resume) come back from the journal (none
    // from an unreadable one: the seal then reports the journal itself).
    let journaled = journal::read(&dir.join("journal.jsonl"))
        .map(|e| journal::replay(&e))
        .unwrap_or_default();
    let mut artifacts = staged_from_journal(&journaled);
    for a in outcome.recorder.artifacts() {
        artifacts.retain(|x| x.path != a.path);
        artifacts.push(a);
    }
    let mut resources = resources_from_journal(&journaled);
    for r in outcome.recorder.resources() {
        if !resources.contains(&r) {
            resources.push(r);
        }
    }
    let mut summary = evidence::seal(
        store.clone(),
        &playbook,
        &record,
        &dir.join("evidence"),
        &artifacts,
        &resources,
        &dir.join("journal.jsonl"),
        &[],
    )
    .await;
    if let (Some(signer), Some(spec)) = (&signer, &record.signing_key) {
        signing::sign_sealed(&store, &case_id, &run_id, signer, spec, &mut summary).await;
    }
    sink.emit(RunEvent::EvidenceSealed(summary.clone()));
    let mut status = outcome.status;
    // Sealed but incomplete, or not signed as asked: the run must not look as if all was kept.
    if (summary.error.is_some() || summary.signature_error.is_some())
        && status == RunStatus::Succeeded
    {
        status = RunStatus::Failed;
    }
    sink.emit(RunEvent::RunFinished {
        run_id: run_id.clone(),
        case_id,
        status,
        steps: outcome.steps.clone(),
        evidence: Some(summary.clone()),
        gaps: evidence::gaps_from_journal(&dir.join("journal.jsonl")),
    });
    let exit = match status {
        RunStatus::Succeeded => Exit::Success,
        RunStatus::Failed => Exit::RunFailed,
        RunStatus::Aborted => Exit::Aborted,
    };
    RunResult {
        exit,
        run_id: Some(run_id),
        status: Some(status),
        steps: outcome.steps,
        evidence: Some(summary),
    }
}

fn staged_from_journal(state: &journal::RunState) -> Vec<executor::StagedArtifact> {
    state
        .artifacts()
        .into_iter()
        .map(|a| executor::StagedArtifact {
            attempt: executor::attempt_of(&a.path, &a.step),
            path: a.path.clone(),
            sha256: a.sha256.clone(),
            size: a.size,
            step: a.step.clone(),
            source: a.source.clone(),
            captured_at: a.ts.clone(),
        })
        .collect()
}

fn resources_from_journal(state: &journal::RunState) -> Vec<crate::actions::AwsResource> {
    state.resources.iter().map(|(_, r)| r.clone()).collect()
}

/// The values of the run's secret inputs, which `run.json` does not hold: from `--input
/// NAME=VALUE` (`pairs`), else from `env(IRR_INPUT_NAME)`, each checked against its type.
/// `Err` names every one that is missing or does not fit (and any non-secret input given,
/// which `run.json` already fixes).
pub fn secret_inputs_again(
    playbook: &Playbook,
    record: &RunRecord,
    pairs: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<serde_json::Map<String, Value>, String> {
    let mut problems = Vec::new();
    let mut given: HashMap<&str, &str> = HashMap::new();
    for pair in pairs {
        match pair.split_once('=') {
            Some((name, value)) if record.secret_inputs.iter().any(|s| s == name.trim()) => {
                given.insert(name.trim(), value);
            }
            Some((name, _)) => problems.push(format!(
                "--input {}: only secret inputs are given again on resume (the run's other inputs are in its run.json: {})",
                name.trim(),
                if record.secret_inputs.is_empty() { "this run has no secret input".to_owned() } else { format!("its secret inputs: {}", record.secret_inputs.join(", ")) }
            )),
            None => problems.push("--input takes NAME=VALUE".to_owned()),
        }
    }
    let mut out = serde_json::Map::new();
    let mut missing = Vec::new();
    for name in &record.secret_inputs {
        let Some(decl) = playbook.input(name) else {
            problems.push(format!(
                "secret input {name} is no longer declared by the playbook"
            ));
            continue;
        };
        let var = crate::secrets::env_var(name);
        let raw = match given.get(name.as_str()) {
            Some(v) => Some((*v).to_owned()),
            None => env(&var),
        };
        match raw {
            None => missing.push(format!("{name} (--input {name}=VALUE or {var})")),
            Some(raw) => match crate::validate::parse_input_value(decl, &raw) {
                Ok(v) => {
                    out.insert(name.clone(), v);
                }
                Err(_) => problems.push(format!(
                    "secret input {name}: the value given is not {} (the value is not shown)",
                    decl.ty
                )),
            },
        }
    }
    if !missing.is_empty() {
        problems.insert(
            0,
            format!(
                "the secret input(s) {} are not stored with the run and must be given again: {}",
                record.secret_inputs.join(", "),
                missing.join("; ")
            ),
        );
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems.join("; "))
    }
}

/// Journals a note for each call that was in flight when the run stopped, before the resumed
/// run starts.
fn note_in_flight(state_dir: &Path, run_id: &str, in_flight: &[String], secrets: &Secrets) {
    note_in_flight_at(&executor::run_dir(state_dir, run_id), in_flight, secrets);
}

/// [`note_in_flight`] for the run whose state is in `dir` (a fan-out child's).
pub(crate) fn note_in_flight_at(dir: &Path, in_flight: &[String], secrets: &Secrets) {
    if in_flight.is_empty() {
        return;
    }
    if let Ok(sink) = executor::open_sink_at(dir, Box::new(NullReporter), secrets.clone()) {
        for call in in_flight {
            sink.emit(RunEvent::Note {
                message: format!("{call} was in flight when the run stopped; its step runs again and reconciles with what AWS shows (case tags, existing resources), so nothing is made twice"),
            });
        }
    }
}

/// A run's record and its journal's state, for `irr resume`: `Err` (the exit and what to
/// say) when there is no such run, its journal is damaged, or it already ended (sealed runs
/// are never reopened).
fn load_unfinished(
    run_id: &str,
    state_dir: &Path,
) -> Result<(RunRecord, journal::RunState), (Exit, String)> {
    let dir = executor::run_dir(state_dir, run_id);
    let record: RunRecord = std::fs::read(dir.join("run.json"))
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .map_err(|e| {
            (
                Exit::Invalid,
                format!("error: no run {run_id} in {}: {e}", state_dir.display()),
            )
        })?;
    if let Some(arn) = &record.execution {
        return Err((Exit::Invalid, format!("error: run {run_id} is the Step Functions execution {arn}, which irr read back and sealed; it is not resumed here (an interrupted seal is finished by `irr evidence seal --execution {arn}`); nothing was changed")));
    }
    let entries = journal::read(&dir.join("journal.jsonl"))
        .map_err(|e| (Exit::Invalid, format!("error: {e}; nothing was changed")))?;
    let state = journal::replay(&entries);
    if let Some(fin) = &state.finished {
        let status = fin.status;
        let exit = if status == RunStatus::Succeeded {
            Exit::Success
        } else {
            Exit::Invalid
        };
        return Err((exit, format!("run {run_id} already ended ({}) and its evidence is sealed; a sealed run is not reopened. Start a new run for case {}: its evidence chains to this one", status_name(status), record.case_id)));
    }
    Ok((record, state))
}

/// The evidence bucket's owner for a resumed run: the one checked when the run started;
/// `--evidence-owner` may only repeat it (a run written before owners were recorded: the flag,
/// else the run's account).
fn resume_owner(
    run_id: &str,
    flag: Option<String>,
    record: &RunRecord,
) -> Result<Option<String>, String> {
    let owner = match (flag, &record.evidence_owner) {
        (Some(flag), Some(recorded)) if &flag != recorded => {
            return Err(format!("error: run {run_id} keeps its evidence in a bucket of account {recorded} (checked when it started), but --evidence-owner says {flag}; resume it without --evidence-owner or with {recorded}; nothing was changed"));
        }
        (Some(flag), _) => evidence::evidence_owner(Some(&flag), None),
        (None, Some(recorded)) => evidence::evidence_owner(Some(recorded), None),
        (None, None) => evidence::evidence_owner(None, Some(record.account_id.as_str())),
    };
    owner.map_err(|e| format!("error: {e}; nothing was changed"))
}

/// An unfinished run's record (with its secret inputs given again), its journal's state and
/// its playbook, checked to be the same file; `Err` once what is wrong was said.
fn reopen(
    run_id: &str,
    state_dir: &Path,
    json: bool,
    inputs: &[String],
) -> Result<(RunRecord, journal::RunState, Playbook), Exit> {
    let (mut record, state) = load_unfinished(run_id, state_dir).map_err(|(exit, msg)| {
        say(json, &msg);
        exit
    })?;
    let playbook = crate::validate::validate_file(&record.playbook_path).map_err(|problems| {
        for p in problems {
            say(json, &p.render(None));
        }
        Exit::Invalid
    })?;
    if playbook.sha256 != record.playbook_sha256 {
        say(json, &format!("error: {} changed since run {run_id} started (sha256 {} then, {} now); resume needs the same playbook; nothing was changed", record.playbook_path.display(), record.playbook_sha256, playbook.sha256));
        return Err(Exit::Invalid);
    }
    let env = |var: &str| std::env::var(var).ok();
    match secret_inputs_again(&playbook, &record, inputs, &env) {
        Ok(values) => record.inputs.extend(values),
        Err(e) => {
            say(
                json,
                &format!("error: cannot resume run {run_id}: {e}; nothing was changed"),
            );
            return Err(Exit::Invalid);
        }
    }
    Ok((record, state, playbook))
}

/// `irr resume RUN_ID`. Secret inputs are given again with `inputs` (`--input NAME=VALUE`)
/// or the environment (`IRR_INPUT_NAME`).
pub async fn resume(
    run_id: &str,
    state_dir: &Path,
    yes: bool,
    json: bool,
    aws_opts: AwsOptions,
    inputs: &[String],
    evidence_owner: Option<String>,
) -> RunResult {
    let (mut record, state, playbook) = match reopen(run_id, state_dir, json, inputs) {
        Ok(r) => r,
        Err(exit) => return RunResult::early(exit),
    };
    if record.fanout.is_some() {
        return match resume_owner(run_id, evidence_owner, &record) {
            Ok(owner) => {
                crate::fanout::resume(playbook, record, state_dir, yes, json, aws_opts, owner).await
            }
            Err(msg) => {
                say(json, &msg);
                RunResult::early(Exit::Invalid)
            }
        };
    }
    let secrets = Secrets::for_inputs(&playbook, &record.inputs);
    let say = |json: bool, msg: &str| say_masked(json, msg, &secrets);
    // The last word on each step, from earlier attempts.
    let previous: HashMap<String, StepSummary> = state.step_results();
    let previous_attempts = state.last_attempts();
    let in_flight: Vec<String> = state.in_flight().map(journal::Call::describe).collect();
    let mut opts = aws_opts;
    if opts.region.is_none() && !record.region.is_empty() {
        opts.region = Some(record.region.clone());
    }
    let key = signing::KeyChoice::recorded(&record, &playbook);
    let needs_aws = aws::playbook_needs_aws(&playbook, Some(record.evidence_location.as_str()))
        || key.needs_aws();
    let offline = aws::Identity {
        account_id: record.account_id.clone(),
        arn: record.aws_principal.clone(),
    };
    let (aws, id) = match connect_if(needs_aws, &opts, offline).await {
        Ok(c) => c,
        Err(msg) => {
            say(json, &msg);
            return RunResult::early(Exit::Invalid);
        }
    };
    {
        // The region too: the same account in another region is another set of resources
        // (the groups, snapshots and instance of this run are not there).
        if aws.region != record.region {
            say(json, &format!("error: run {run_id} acts in region {}, but this resume would act in {}; resume it in {} (--region {}); nothing was changed", record.region, aws.region, record.region, record.region));
            return RunResult::early(Exit::Invalid);
        }
        if id.account_id != record.account_id {
            say(json, &format!("error: run {run_id} acts in account {}, but these credentials are for {}; nothing was changed", record.account_id, id.account_id));
            return RunResult::early(Exit::Invalid);
        }
    }
    let owner = match resume_owner(run_id, evidence_owner, &record) {
        Ok(o) => o,
        Err(msg) => {
            say(json, &msg);
            return RunResult::early(Exit::Invalid);
        }
    };
    let location = record.evidence_location.clone();
    let ev = &playbook.evidence;
    let opened = open_evidence(&location, &aws, ev, false, owner.as_deref(), &key);
    let (store, signer) = match opened.await {
        Ok(s) => s,
        Err(msg) => {
            say(json, &msg);
            return RunResult::early(Exit::Invalid);
        }
    };
    record.signing_key = signer.as_ref().map(|(k, _)| k.clone());
    record.evidence_owner = owner.filter(|_| matches!(store, irr_forensics::Store::S3(_)));
    let done = previous
        .values()
        .filter(|s| s.status == StepStatus::Succeeded)
        .count();
    if !yes && !record.dry_run {
        let left = playbook.all_steps().count() - done;
        let question = format!("Resume run {run_id}: {done} step(s) done, {left} to go. Proceed?");
        let refusal = match confirm(&question) {
            Some(true) => None,
            Some(false) => Some("aborted: not confirmed; nothing was changed"),
            None => Some("refused: no terminal to confirm on; pass --yes; nothing was changed"),
        };
        if let Some(msg) = refusal {
            say(json, msg);
            return RunResult::early(Exit::Aborted);
        }
    }
    note_in_flight(state_dir, run_id, &in_flight, &secrets);
    execute_and_seal(
        playbook,
        record,
        aws.clients,
        store,
        yes,
        state_dir,
        previous,
        previous_attempts,
        Presentation::of(json),
        true,
        secrets,
        signer.map(|(_, s)| s),
        Vec::new(),
    )
    .await
}

/// A run status as the journal writes it.
fn status_name(status: RunStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

struct NullReporter;

impl Reporter for NullReporter {
    fn report(&self, _event: &RunEvent) {}
}

pub(crate) fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_owned()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_owned())
    }
}
