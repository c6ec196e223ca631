//! Fan-out: one `irr run` over many account-regions (`targets:` in the playbook, or
//! `--targets FILE`).
//!
//! The parent run resolves the targets (ids, or the organization's accounts), opens the
//! evidence store with the caller's credentials (the bucket stays the caller's, and so does
//! its expected owner), shows one plan and asks once. Then each account-region is a child
//! run: the role `arn:PARTITION:iam::ACCOUNT:role/NAME` assumed from the caller's
//! credentials, in the target's region, with its own clients (so its own copy of EC2's token
//! buckets and its own SDK retry partition: one target's throttling never slows another), its
//! own journal (`STATE_DIR/runs/RUN/children/ACCOUNT/REGION/`) and its own sealed bundle under
//! the parent's (`CASE/RUN/children/ACCOUNT/REGION/`).
//!
//! - `targets.concurrency` bounds the items at once in each account-region; `--concurrency`
//!   bounds the children at once and the items at once across all of them.
//! - A target whose role cannot be assumed (or whose region does not answer) is reported,
//!   recorded as a gap of the parent, and never stops the others; the run then ends failed.
//! - The parent's bundle holds its journal and `artifacts/targets/targets.json` (each
//!   target's outcome); its manifest lists each sealed child's `manifest.json` hash, and it is
//!   the parent that is chained to the case's runs and signed.
//! - `irr resume RUN` resumes every child that did not end (a child that ended keeps its
//!   seal), starts those that never started, retries those that were unreachable, and seals
//!   the parent.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_config::{Region, SdkConfig};
use irr_forensics::manifest::Target;
use irr_forensics::Sha256Digest;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::actions::{AwsClients, Gap};
use crate::aws;
use crate::events::{RunEvent, RunStatus, StepStatus, StepSummary};
use crate::evidence;
use crate::executor::{self, Reporter, RunRecord, Sink, StagedArtifact};
use crate::exit_codes::Exit;
use crate::journal;
use crate::model::Playbook;
use crate::plan::{self, PlanContext};
use crate::run::{self, Presentation, RunRequest, RunResult};
use crate::secrets::Secrets;
use crate::signing;
use crate::targets::{self, AccountSet, FanoutRecord, Resolved, TargetsDecl};
use irr_forensics::clock::now_rfc3339;

/// Where the parent keeps each target's outcome (in its bundle and staging folder).
const TARGETS_ARTIFACT: &str = "artifacts/targets/targets.json";

/// What every child shares.
struct Parent {
    playbook: Playbook,
    record: RunRecord,
    fanout: FanoutRecord,
    caller: SdkConfig,
    endpoint_override: bool,
    store: irr_forensics::Store,
    state_dir: PathBuf,
    yes: bool,
    json: bool,
    secrets: Secrets,
    /// Items at once across every child (`--concurrency`).
    items: Arc<Semaphore>,
    /// What each new child captures before its first step: the finding that started the run.
    first_items: Vec<executor::FirstItem>,
}

/// How one target went.
enum ChildOutcome {
    /// Its role could not be assumed (or its region did not answer): nothing was changed
    /// there.
    Unreachable { target: Resolved, error: String },
    /// It ran (now, or before a resume) and ended.
    Ended {
        target: Resolved,
        status: RunStatus,
        manifest_sha256: Option<String>,
        error: Option<String>,
    },
}

/// `irr run` with targets.
pub(crate) async fn run(req: RunRequest, decl: TargetsDecl) -> RunResult {
    let pb = &req.playbook;
    let secrets = Secrets::for_inputs(pb, &req.inputs);
    let say = |msg: &str| run::say_masked(req.json, msg, &secrets);
    if let Some(msg) = run::unrunnable(pb) {
        say(&msg);
        return RunResult::early(Exit::Invalid);
    }
    let run_id = executor::new_run_id();
    let started_at = now_rfc3339();
    let key = signing::KeyChoice::new(req.signing_key.as_deref(), &req.playbook_path, &pb.evidence);
    let (caller, identity) = match run::connect_if(true, &req.aws, run::no_aws_identity()).await {
        Ok(c) => c,
        Err(msg) => {
            say(&msg);
            return RunResult::early(Exit::Invalid);
        }
    };
    let only = req.finding.as_ref().map(|f| &f.mapped);
    let fanout = match resolve(&decl, &caller, &identity, req.concurrency, only).await {
        Ok(f) => f,
        Err(msg) => {
            say(&format!("error: targets: {msg}; nothing was changed"));
            return RunResult::early(Exit::Invalid);
        }
    };
    let ctx = PlanContext {
        case_id: Some(req.case_id.clone()),
        run_id: Some(run_id.clone()),
        started_at: Some(started_at.clone()),
        region: Some(caller.region.clone()),
        account_id: Some(identity.account_id.clone()),
        defaulted_inputs: Some(req.defaulted_inputs.clone()),
    };
    let pre_ctx = plan::base_context(pb, &req.inputs, &ctx);
    let opened = async {
        let location = run::evidence_location_of(&req, &pre_ctx)?;
        let owner = evidence::evidence_owner(
            req.evidence_owner.as_deref(),
            Some(identity.account_id.as_str()),
        )
        .map_err(|e| format!("error: {e}; nothing was changed"))?;
        let (store, signer) = run::open_evidence(
            &location,
            &caller,
            &pb.evidence,
            req.create_evidence_bucket,
            owner.as_deref(),
            &key,
        )
        .await?;
        Ok::<_, String>((location, owner, store, signer))
    };
    let (location, owner, store, signer) = match opened.await {
        Ok(o) => o,
        Err(msg) => {
            say(&msg);
            return RunResult::early(Exit::Invalid);
        }
    };
    let the_plan = plan::plan(pb, req.inputs.clone(), &ctx);
    secrets.extend(&plan::secrets(pb, &the_plan, &key.playbook_dir));
    if !req.yes && !req.dry_run {
        let place = format!(
            "in each of {} account-region(s) ({}) through role {}, from {}",
            fanout.targets.len(),
            shown_targets(&fanout.targets),
            fanout.role,
            identity.arn
        );
        if let Err(msg) = run::confirm_plan(&the_plan, &secrets, &place) {
            say(msg);
            return RunResult::early(Exit::Aborted);
        }
    }
    let record = RunRecord {
        run_id: run_id.clone(),
        case_id: req.case_id.clone(),
        playbook_path: run::absolute(&req.playbook_path),
        playbook_sha256: pb.sha256.clone(),
        inputs: req.inputs.clone(),
        secret_inputs: pb.secret_inputs().map(str::to_owned).collect(),
        defaulted_inputs: Some(req.defaulted_inputs.clone()),
        evidence_location: location,
        dry_run: req.dry_run,
        concurrency: req.concurrency.max(1),
        started_at,
        region: caller.region.clone(),
        account_id: identity.account_id.clone(),
        aws_principal: identity.arn.clone(),
        evidence_owner: owner.filter(|_| matches!(store, irr_forensics::Store::S3(_))),
        signing_key: signer.as_ref().map(|(k, _)| k.clone()),
        fanout: Some(fanout.clone()),
        ..RunRecord::default()
    };
    if let Err(msg) = run::save_record(&req.state_dir, &record) {
        say(&msg);
        return RunResult::early(Exit::Invalid);
    }
    let parent = Parent {
        playbook: pb.clone(),
        items: Arc::new(Semaphore::new(record.concurrency)),
        record,
        fanout,
        endpoint_override: req.aws.endpoint_url.is_some(),
        caller: caller.config,
        store,
        state_dir: req.state_dir.clone(),
        yes: req.yes,
        json: req.json,
        secrets,
        first_items: req
            .finding
            .as_ref()
            .map(run::finding_item)
            .into_iter()
            .collect(),
    };
    go(parent, signer.map(|(_, s)| s), false).await
}

/// `irr resume` of a fan-out parent: `record` is its `run.json` (secret inputs given again),
/// `playbook` checked to be the same file.
pub(crate) async fn resume(
    playbook: Playbook,
    record: RunRecord,
    state_dir: &Path,
    yes: bool,
    json: bool,
    aws_opts: aws::AwsOptions,
    owner: Option<String>,
) -> RunResult {
    let secrets = Secrets::for_inputs(&playbook, &record.inputs);
    let say = |msg: &str| run::say_masked(json, msg, &secrets);
    let Some(fanout) = record.fanout.clone() else {
        say("error: not a fan-out run");
        return RunResult::early(Exit::Invalid);
    };
    let mut opts = aws_opts;
    if opts.region.is_none() {
        opts.region = Some(record.region.clone());
    }
    let (caller, identity) = match run::connect_if(true, &opts, run::no_aws_identity()).await {
        Ok(c) => c,
        Err(msg) => {
            say(&msg);
            return RunResult::early(Exit::Invalid);
        }
    };
    if identity.account_id != record.account_id {
        say(&format!("error: run {} fanned out from account {}, but these credentials are for {}; resume it with the credentials it started with; nothing was changed", record.run_id, record.account_id, identity.account_id));
        return RunResult::early(Exit::Invalid);
    }
    let key = signing::KeyChoice::recorded(&record, &playbook);
    let opened = run::open_evidence(
        &record.evidence_location,
        &caller,
        &playbook.evidence,
        false,
        owner.as_deref(),
        &key,
    );
    let (store, signer) = match opened.await {
        Ok(s) => s,
        Err(msg) => {
            say(&msg);
            return RunResult::early(Exit::Invalid);
        }
    };
    if !yes && !record.dry_run {
        let question = format!(
            "Resume fan-out run {} over {} account-region(s)?",
            record.run_id,
            fanout.targets.len()
        );
        if let Err(msg) = run::ask(&question) {
            say(msg);
            return RunResult::early(Exit::Aborted);
        }
    }
    let parent = Parent {
        playbook,
        items: Arc::new(Semaphore::new(record.concurrency.max(1))),
        record,
        fanout,
        endpoint_override: opts.endpoint_url.is_some(),
        caller: caller.config,
        store,
        state_dir: state_dir.to_owned(),
        yes,
        json,
        secrets,
        // A resumed child has its finding in its journal already.
        first_items: Vec::new(),
    };
    go(parent, signer.map(|(_, s)| s), true).await
}

/// The targets, resolved: the organization's accounts looked up, the regions defaulted to
/// the caller's (or the finding's). With `only` (a finding's account and region), just that
/// target, which must be among them: a finding never sends irr to an account the playbook
/// does not name.
async fn resolve(
    decl: &TargetsDecl,
    caller: &aws::Aws,
    identity: &aws::Identity,
    concurrency: usize,
    only: Option<&crate::finding::Mapped>,
) -> Result<FanoutRecord, String> {
    let accounts = match &decl.accounts {
        AccountSet::Ids(ids) => ids.clone(),
        AccountSet::Organization(ous) => {
            // Organizations answers in one region of the partition.
            let home = match targets::partition_of(&identity.arn) {
                "aws-us-gov" => "us-gov-west-1",
                "aws-cn" => "cn-northwest-1",
                _ => "us-east-1",
            };
            let conf = aws_sdk_organizations::config::Builder::from(&caller.config)
                .region(Region::new(home))
                .build();
            let client = aws_sdk_organizations::Client::from_conf(conf);
            targets::organization_accounts(&client, ous).await?
        }
    };
    let finding_region = only.and_then(|m| m.region.clone());
    let regions = match (decl.regions.is_empty(), finding_region) {
        (true, Some(r)) => vec![r],
        (true, None) => vec![caller.region.clone()],
        (false, _) => decl.regions.clone(),
    };
    let partition = targets::partition_of(&identity.arn).to_owned();
    let mut resolved = targets::expand(&accounts, &regions, &partition, &decl.role);
    if let Some(m) = only {
        let account = m.account.as_deref().unwrap_or(identity.account_id.as_str());
        let region = m.region.as_deref().unwrap_or(caller.region.as_str());
        resolved.retain(|r| r.target.account == account && r.target.region == region);
        if resolved.is_empty() {
            return Err(format!("the finding is about {account}/{region}, which is not among the playbook's targets (accounts x regions); a finding only narrows the targets"));
        }
    }
    Ok(FanoutRecord {
        targets: resolved.into_iter().map(|r| r.target).collect(),
        role: decl.role.clone(),
        external_id: decl.external_id.clone(),
        partition,
        concurrency: decl.concurrency.unwrap_or(concurrency).max(1),
    })
}

/// The first targets, for the confirmation question.
fn shown_targets(targets: &[Target]) -> String {
    let mut s: Vec<String> = targets.iter().take(6).map(Target::to_string).collect();
    if targets.len() > 6 {
        s.push(format!("and {} more", targets.len() - 6));
    }
    s.join(", ")
}

/// Runs (or resumes) every child, then seals the parent.
async fn go(parent: Parent, signer: Option<irr_forensics::Signer>, resumed: bool) -> RunResult {
    let json = parent.json;
    let dir = parent.record.dir(&parent.state_dir);
    let sink = match executor::open_sink_at(&dir, run_reporter(json), parent.secrets.clone()) {
        Ok(s) => s,
        Err(e) => {
            run::say_masked(
                json,
                &format!("error: {e}; nothing was changed"),
                &parent.secrets,
            );
            return RunResult::early(Exit::Invalid);
        }
    };
    let r = &parent.record;
    sink.emit(RunEvent::RunStarted {
        run_id: r.run_id.clone(),
        case_id: r.case_id.clone(),
        playbook: parent.playbook.metadata.name.clone(),
        version: parent.playbook.metadata.version.clone(),
        playbook_sha256: parent.playbook.sha256.clone(),
        dry_run: r.dry_run,
        resumed,
        aws_principal: Some(r.aws_principal.clone()),
    });
    sink.emit(RunEvent::Note {
        message: format!(
            "fanning out to {} account-region(s) through role {}: {}",
            parent.fanout.targets.len(),
            parent.fanout.role,
            shown_targets(&parent.fanout.targets)
        ),
    });
    let parent = Arc::new(parent);
    let children = Arc::new(Semaphore::new(parent.record.concurrency.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for (i, target) in parent.fanout.resolved().into_iter().enumerate() {
        let parent = parent.clone();
        let children = children.clone();
        set.spawn(async move {
            let _slot = children.acquire_owned().await;
            (i, child(&parent, target).await)
        });
    }
    let mut outcomes: Vec<(usize, ChildOutcome)> = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(o) => outcomes.push(o),
            Err(e) => sink.emit(RunEvent::Note {
                message: format!("a child run's task ended abnormally: {e}"),
            }),
        }
    }
    outcomes.sort_by_key(|(i, _)| *i);
    let outcomes: Vec<ChildOutcome> = outcomes.into_iter().map(|(_, o)| o).collect();
    finish(&parent, &sink, &outcomes, signer).await
}

/// One target: its ended run as its journal tells it, else the run (resumed, or new) now.
async fn child(parent: &Parent, target: Resolved) -> ChildOutcome {
    let dir = parent
        .record
        .dir(&parent.state_dir)
        .join(target.target.dir());
    let earlier = read_child(&dir);
    if let Some((_, state)) = &earlier {
        if let Some(fin) = &state.finished {
            return ChildOutcome::Ended {
                target,
                status: fin.status,
                manifest_sha256: fin
                    .evidence
                    .as_ref()
                    .and_then(|e| e.manifest_sha256.clone()),
                error: fin.evidence.as_ref().and_then(|e| e.error.clone()),
            };
        }
    }
    let (clients, identity) = match connect(parent, &target).await {
        Ok(c) => c,
        Err(error) => return ChildOutcome::Unreachable { target, error },
    };
    let (record, previous, attempts, resumed) = match earlier {
        Some((record, state)) => {
            let in_flight: Vec<String> = state.in_flight().map(journal::Call::describe).collect();
            run::note_in_flight_at(&dir, &in_flight, &parent.secrets);
            let mut record = record;
            record.inputs = parent.record.inputs.clone();
            (record, state.step_results(), state.last_attempts(), true)
        }
        None => {
            let record = child_record(parent, &target, &identity);
            if let Err(error) = run::save_record(&parent.state_dir, &record) {
                return ChildOutcome::Unreachable { target, error };
            }
            (record, HashMap::new(), HashMap::new(), false)
        }
    };
    let shown = Presentation {
        reporter: Box::new(TargetReporter {
            json: parent.json,
            target: target.target.to_string(),
        }),
        json: parent.json,
        shared_limit: Some(parent.items.clone()),
    };
    let result = run::execute_and_seal(
        parent.playbook.clone(),
        record,
        clients,
        parent.store.clone(),
        parent.yes,
        &parent.state_dir,
        previous,
        attempts,
        shown,
        resumed,
        parent.secrets.clone(),
        None,
        // The finding that started the run, as the child's first item (a resumed child's
        // journal has it already).
        if resumed {
            Vec::new()
        } else {
            parent.first_items.clone()
        },
    )
    .await;
    ChildOutcome::Ended {
        target,
        status: result.status.unwrap_or(RunStatus::Failed),
        manifest_sha256: result
            .evidence
            .as_ref()
            .and_then(|e| e.manifest_sha256.clone()),
        error: result.evidence.as_ref().and_then(|e| e.error.clone()),
    }
}

/// A child's `run.json` and journal, when it was started before (a resume).
fn read_child(dir: &Path) -> Option<(RunRecord, journal::RunState)> {
    let bytes = std::fs::read(dir.join("run.json")).ok()?;
    let record: RunRecord = serde_json::from_slice(&bytes).ok()?;
    let entries = journal::read(&dir.join("journal.jsonl")).ok()?;
    Some((record, journal::replay(&entries)))
}

/// A new child's record: the parent's, in the target's account and region.
fn child_record(parent: &Parent, target: &Resolved, identity: &aws::Identity) -> RunRecord {
    let mut r = parent.record.clone();
    r.region = target.target.region.clone();
    r.account_id = target.target.account.clone();
    r.aws_principal = identity.arn.clone();
    r.concurrency = parent.fanout.concurrency;
    r.started_at = now_rfc3339();
    r.signing_key = None;
    r.fanout = None;
    r.target = Some(target.target.clone());
    r
}

/// The target's clients: the role assumed from the caller's credentials, in its region, with
/// their own EC2 buckets and retry partition; and who they are (the target's account, or an
/// error).
async fn connect(
    parent: &Parent,
    target: &Resolved,
) -> Result<(AwsClients, aws::Identity), String> {
    let region = Region::new(target.target.region.clone());
    let mut builder = aws_config::sts::AssumeRoleProvider::builder(&target.role_arn)
        .session_name(targets::session_name(&parent.record.case_id))
        .configure(&parent.caller)
        .region(region.clone());
    if let Some(x) = &parent.fanout.external_id {
        builder = builder.external_id(x);
    }
    let provider = builder.build().await;
    let conf = parent
        .caller
        .clone()
        .into_builder()
        .region(region)
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(provider),
        )
        .build();
    let clients = AwsClients::from_conf_in(
        &conf,
        parent.endpoint_override,
        Some(&target.target.to_string()),
    );
    let who = clients
        .sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| {
            let line = irr_forensics::awserr::describe("sts", "GetCallerIdentity", &e).line();
            format!("cannot act through {}: {line}", target.role_arn)
        })?;
    let account = who.account().unwrap_or_default().to_owned();
    if account != target.target.account {
        return Err(format!(
            "{} answered as account {account:?}, not {}",
            target.role_arn, target.target.account
        ));
    }
    Ok((
        clients,
        aws::Identity {
            account_id: account,
            arn: who.arn().unwrap_or_default().to_owned(),
        },
    ))
}

/// Seals the parent (its journal, each target's outcome, the children's manifests), signs
/// it if asked, and ends the run.
async fn finish(
    parent: &Parent,
    sink: &Arc<Sink>,
    outcomes: &[ChildOutcome],
    signer: Option<irr_forensics::Signer>,
) -> RunResult {
    let mut steps = Vec::new();
    let mut rows = Vec::new();
    let mut children: Vec<(Target, Sha256Digest)> = Vec::new();
    let mut status = RunStatus::Succeeded;
    for o in outcomes {
        let (summary, row) = outcome_row(o);
        match o {
            ChildOutcome::Unreachable { target, error } => {
                sink.emit(RunEvent::GapRecorded(Gap {
                    step: format!("targets/{}", target.target),
                    what: format!("sts:AssumeRole {}", target.role_arn),
                    error: error.clone(),
                }));
                status = status.max_severity(RunStatus::Failed);
            }
            ChildOutcome::Ended {
                target,
                status: s,
                manifest_sha256,
                ..
            } => {
                status = status.max_severity(*s);
                match manifest_sha256.as_deref().and_then(Sha256Digest::from_hex) {
                    Some(h) => children.push((target.target.clone(), h)),
                    None => status = status.max_severity(RunStatus::Failed),
                }
            }
        }
        steps.push(summary);
        rows.push(row);
    }
    let dir = parent.record.dir(&parent.state_dir);
    let staged = stage_targets(&dir.join("evidence"), &rows);
    let artifacts: Vec<StagedArtifact> = staged.iter().cloned().collect();
    let mut summary = evidence::seal(
        parent.store.clone(),
        &parent.playbook,
        &parent.record,
        &dir.join("evidence"),
        &artifacts,
        &[],
        &dir.join("journal.jsonl"),
        &children,
    )
    .await;
    if let Err(e) = &staged {
        summary.error = Some(format!("{TARGETS_ARTIFACT} could not be staged: {e}"));
    }
    let r = &parent.record;
    if let (Some(signer), Some(spec)) = (&signer, &r.signing_key) {
        signing::sign_sealed(
            &parent.store,
            &r.case_id,
            &r.run_id,
            signer,
            spec,
            &mut summary,
        )
        .await;
    }
    sink.emit(RunEvent::EvidenceSealed(summary.clone()));
    if summary.error.is_some() || summary.signature_error.is_some() {
        status = status.max_severity(RunStatus::Failed);
    }
    sink.emit(RunEvent::RunFinished {
        run_id: r.run_id.clone(),
        case_id: r.case_id.clone(),
        status,
        steps: steps.clone(),
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
        run_id: Some(r.run_id.clone()),
        status: Some(status),
        steps,
        evidence: Some(summary),
    }
}

/// One target as the parent's summary (a "step" named `ACCOUNT/REGION`) and as a row of
/// `targets.json`.
fn outcome_row(o: &ChildOutcome) -> (StepSummary, Value) {
    match o {
        ChildOutcome::Unreachable { target, error } => (
            StepSummary {
                id: target.target.to_string(),
                status: StepStatus::Failed,
                attempts: 1,
                started_at: None,
                finished_at: None,
                outputs: json!({"status": "unreachable"}),
                error: Some(error.clone()),
            },
            json!({
                "account": target.target.account,
                "region": target.target.region,
                "role_arn": target.role_arn,
                "status": "unreachable",
                "error": error,
            }),
        ),
        ChildOutcome::Ended {
            target,
            status,
            manifest_sha256,
            error,
        } => {
            let word = status_word(*status);
            let error = error.clone().or_else(|| {
                (*status != RunStatus::Succeeded).then(|| {
                    format!(
                        "the run in {} {word}; its journal says what was changed: STATE_DIR/runs/RUN/{}/journal.jsonl",
                        target.target,
                        target.target.dir()
                    )
                })
            });
            (
                StepSummary {
                    id: target.target.to_string(),
                    status: if *status == RunStatus::Succeeded {
                        StepStatus::Succeeded
                    } else {
                        StepStatus::Failed
                    },
                    attempts: 1,
                    started_at: None,
                    finished_at: None,
                    outputs: json!({"status": word, "manifest_sha256": manifest_sha256}),
                    error: error.clone(),
                },
                json!({
                    "account": target.target.account,
                    "region": target.target.region,
                    "role_arn": target.role_arn,
                    "status": word,
                    "manifest_sha256": manifest_sha256,
                    "error": error,
                }),
            )
        }
    }
}

fn status_word(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Succeeded => "succeeded",
        RunStatus::Failed => "failed",
        RunStatus::Aborted => "aborted",
    }
}

/// Writes `targets.json` into the parent's staging folder (replacing one an interrupted seal
/// left: it is not evidence until sealed) and describes it for the seal.
fn stage_targets(staging: &Path, rows: &[Value]) -> Result<StagedArtifact, String> {
    let mut bytes = serde_json::to_vec_pretty(rows).map_err(|e| e.to_string())?;
    bytes.push(b'\n');
    let file = staging.join(TARGETS_ARTIFACT);
    if let Some(d) = file.parent() {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let _ = std::fs::remove_file(&file);
    std::fs::write(&file, &bytes).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(StagedArtifact {
        path: TARGETS_ARTIFACT.to_owned(),
        attempt: 1,
        sha256: Sha256Digest::of(&bytes).to_hex(),
        size: bytes.len() as u64,
        step: "targets".to_owned(),
        source: "irr fan-out: each account-region's outcome".to_owned(),
        captured_at: now_rfc3339(),
    })
}

/// The parent's own reporter (the run's usual one).
fn run_reporter(json: bool) -> Box<dyn Reporter> {
    if json {
        Box::new(crate::reporter::JsonLines)
    } else {
        Box::new(crate::reporter::Terminal::new(false))
    }
}

/// A child's events: in JSON Lines each with `"target": "ACCOUNT/REGION"`; on the terminal
/// one line per finished step and for the child's end, each starting `[ACCOUNT/REGION]`.
struct TargetReporter {
    json: bool,
    target: String,
}

impl Reporter for TargetReporter {
    fn report(&self, event: &RunEvent) {
        if self.json {
            let Ok(mut v) = serde_json::to_value(event) else {
                return;
            };
            if let Value::Object(m) = &mut v {
                m.insert("target".into(), json!(self.target));
            }
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{v}");
            let _ = out.flush();
            return;
        }
        let t = &self.target;
        let line = match event {
            RunEvent::StepFinished(s) => {
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
                format!("  [{t}] {mark} {}{why}", s.id)
            }
            RunEvent::Note { message } => format!("  [{t}] {message}"),
            RunEvent::RunFinished { status, steps, .. } => {
                let n = |st: StepStatus| steps.iter().filter(|s| s.status == st).count();
                format!(
                    "[{t}] {}: {} succeeded, {} failed, {} skipped",
                    status_word(*status),
                    n(StepStatus::Succeeded),
                    n(StepStatus::Failed),
                    n(StepStatus::Skipped)
                )
            }
            _ => return,
        };
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}
