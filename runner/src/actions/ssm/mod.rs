//! `ssm.capture_volatile`: the instance's volatile state (live-response output, a memory
//! image) streamed by its SSM agent straight into the evidence store, before isolation.
//!
//! How (docs/evidence.md, "Volatile capture"):
//! 1. the evidence must be S3 (there is no presigned target otherwise) and the instance an
//!    SSM managed instance whose agent is online (`DescribeInstanceInformation`); else a gap,
//!    at once;
//! 2. irr starts one multipart upload per object in the evidence bucket, at the run's own
//!    artifact keys, with the store's Object Lock retention, and presigns `UploadPart` for
//!    exactly those objects and part numbers, for the time budget;
//! 3. one `SendCommand` (`AWS-RunShellScript`) runs a script holding only those URLs, never a
//!    credential (the instance's own role is the compromised principal and is never used);
//! 4. irr polls `GetCommandInvocation` until the command ends or the budget runs out (then
//!    `CancelCommand`); completes each upload from what S3 holds (`ListParts`), confirms its
//!    retention, re-reads it to hash it, and records it as an item, the agent's own hash
//!    beside irr's, never instead of it.
//!
//! A capture that cannot be made, fails or runs out of time is recorded as gaps and the
//! action succeeds: containment is never held up by it.

mod script;

use std::time::{Duration, Instant, SystemTime};

use irr_forensics::{RemoteUpload, S3Store, Store};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{read_err, Action, ActionCtx, ActionError, ActionOutput};
use crate::catalog::decl::*;
use crate::catalog::{Declaration, TypeSpec};
use script::{AgentReport, Planned, MIB};

/// Parameters of `ssm.capture_volatile`.
///
/// Each field's doc comment is the parameter's description in the catalog.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptureVolatileParams {
    /// the instance (an SSM managed instance whose agent is online)
    #[schemars(extend("x-irr-type" = "instance_id"))]
    pub instance_id: String,
    /// capture a memory image (AVML, else a LiME module, where present on the instance)
    #[schemars(extend("default" = true))]
    pub memory: Option<bool>,
    /// live-response commands, each streamed to its own object: built-in names (processes, connections, users, logins, modules) or shell command lines
    // Default: every built-in.
    pub commands: Option<Vec<String>>,
    /// time budget of the whole capture; after it the command is cancelled, unfinished uploads are aborted and the gap is recorded
    #[schemars(extend("x-irr-type" = "duration", "default" = "15m"))]
    pub timeout: Option<String>,
}

/// The evidence bucket's objects (`{evidence_bucket}`, `{evidence_prefix}`: the run's S3
/// evidence location).
const EVIDENCE_OBJECTS: &[&str] = &["arn:aws:s3:::{evidence_bucket}/{evidence_prefix}*"];
/// The evidence bucket.
const EVIDENCE_BUCKET: &[&str] = &["arn:aws:s3:::{evidence_bucket}"];
/// The step's instance and the AWS-RunShellScript document (SendCommand needs both).
const SEND_COMMAND: &[&str] = &[
    "arn:aws:ec2:{region}:{account}:instance/{instance_id}",
    "arn:aws:ssm:{region}::document/AWS-RunShellScript",
];

/// `ssm.capture_volatile`: its declaration (see [`Action`]); the parameters are
/// [`CaptureVolatileParams`].
pub struct CaptureVolatile;

impl Action for CaptureVolatile {
    type Params = CaptureVolatileParams;
    const DECLARATION: Declaration = Declaration {
        name: "ssm.capture_volatile",
        summary: "before isolation, through SSM Run Command: stream a memory image (AVML, else LiME, where present) and live-response output from the instance straight into the S3 evidence, through presigned upload URLs (no credentials on the instance), hashed; a capture that cannot be made is a gap, never a failure",
        exactly_one_of: &[],
        outputs: &[
            out("items", STRINGS, "paths of the captured objects in the evidence bundle"),
            out("memory_sha256", TypeSpec::String, "SHA-256 of the memory image as it arrived (absent without one)"),
        ],
        api_calls: &[
            "ssm:DescribeInstanceInformation",
            "ec2:DescribeInstances",
            "ec2:DescribeInstanceTypes",
            "ssm:ListCommands",
            "ssm:CancelCommand",
            "s3:ListMultipartUploads",
            "s3:AbortMultipartUpload",
            "s3:CreateMultipartUpload",
            "ssm:SendCommand",
            "ssm:GetCommandInvocation",
            "s3:ListParts",
            "s3:CompleteMultipartUpload",
            "s3:HeadObject",
            "s3:PutObjectRetention",
            "s3:GetObject",
        ],
        permissions: &[
            perm("ssm:DescribeInstanceInformation", ANY),
            perm("ec2:DescribeInstances", ANY),
            perm("ec2:DescribeInstanceTypes", ANY),
            perm("ssm:ListCommands", ANY),
            // An earlier attempt's command still running is cancelled (and on timeout).
            perm("ssm:CancelCommand", ANY),
            perm("ssm:SendCommand", SEND_COMMAND),
            perm("ssm:GetCommandInvocation", ANY),
            perm("s3:ListBucketMultipartUploads", EVIDENCE_BUCKET),
            perm("s3:AbortMultipartUpload", EVIDENCE_OBJECTS),
            perm("s3:ListMultipartUploadParts", EVIDENCE_OBJECTS),
            // CreateMultipartUpload, UploadPart (the presigned URLs act as irr) and
            // CompleteMultipartUpload are s3:PutObject.
            perm("s3:PutObject", EVIDENCE_OBJECTS),
            perm("s3:PutObjectRetention", EVIDENCE_OBJECTS),
            perm("s3:GetObject", EVIDENCE_OBJECTS),
            perm("s3:GetObjectVersion", EVIDENCE_OBJECTS),
        ],
        mutating: true,
        idempotency: "an earlier attempt's command (found by its comment `irr CASE RUN STEP`) is cancelled and its unfinished uploads aborted; the new attempt writes under its own attempt's paths",
        undo: None,
    };

    async fn run(ctx: &ActionCtx, p: CaptureVolatileParams) -> Result<ActionOutput, ActionError> {
        capture_volatile(ctx, p).await
    }
}

/// What the capture is to do, checked.
struct Wanted {
    instance_id: String,
    memory: bool,
    commands: Vec<(String, String)>,
    budget: Duration,
}

fn wanted(p: CaptureVolatileParams) -> Result<Wanted, ActionError> {
    let budget = super::iam::parse_duration(p.timeout.as_deref().unwrap_or("15m"))?;
    if budget < Duration::from_secs(10) || budget > Duration::from_secs(12 * 3600) {
        return Err(ActionError::Params(
            "ssm.capture_volatile: timeout must be between 10s and 12h".into(),
        ));
    }
    let commands = p.commands.unwrap_or_else(script::default_commands);
    if commands.len() > 20
        || commands
            .iter()
            .any(|c| c.trim().is_empty() || c.len() > 4096)
    {
        return Err(ActionError::Params(
            "ssm.capture_volatile: at most 20 commands, each 1 to 4096 characters".into(),
        ));
    }
    Ok(Wanted {
        instance_id: p.instance_id,
        memory: p.memory.unwrap_or(true),
        commands: commands
            .iter()
            .enumerate()
            .map(|(i, c)| script::command_of(i, c))
            .collect(),
        budget,
    })
}

/// Runs the capture; see the module documentation.
pub async fn capture_volatile(
    ctx: &ActionCtx,
    p: CaptureVolatileParams,
) -> Result<ActionOutput, ActionError> {
    let w = wanted(p)?;
    let id = w.instance_id.clone();
    let Some(Store::S3(store)) = ctx.recorder.evidence_store() else {
        let why = ActionError::Target("volatile capture needs S3 evidence: the agent streams into the evidence bucket through presigned upload URLs, and local evidence has none (run with --evidence s3://...)".into());
        return not_captured(ctx, &id, "ssm:SendCommand", why).await;
    };
    match managed(ctx, &id).await {
        Ok(None) => {}
        Ok(Some(why)) => {
            return not_captured(ctx, &id, "ssm:DescribeInstanceInformation", why).await
        }
        Err(e) => return not_captured(ctx, &id, "ssm:DescribeInstanceInformation", e).await,
    }
    if ctx.dry_run {
        ctx.evidence(
            "volatile-capture.json",
            &json!({"instance_id": id, "captured": false, "dry_run": true, "would_capture": {"memory": w.memory, "commands": w.commands.iter().map(|c| &c.0).collect::<Vec<_>>()}}),
            "ssm:DescribeInstanceInformation",
        )?;
        return Ok(ActionOutput::default().with("items", Vec::<String>::new()));
    }
    let comment = comment(ctx);
    ctx.or_gap(
        "ssm:ListCommands",
        end_earlier(ctx, &store, &id, &comment).await,
    );
    let deadline = Instant::now() + w.budget;
    let planned = match plan(ctx, &store, &w).await {
        Ok(p) => p,
        Err(e) => return not_captured(ctx, &id, "s3:CreateMultipartUpload", e).await,
    };
    let result = send_and_wait(ctx, &w, &planned, &comment, deadline).await;
    finish(ctx, &store, &w, planned, result).await
}

/// Records why nothing was captured (a gap and `volatile-capture.json`); the action succeeds
/// with no items.
async fn not_captured(
    ctx: &ActionCtx,
    id: &str,
    what: &str,
    why: ActionError,
) -> Result<ActionOutput, ActionError> {
    ctx.gap(what, &why);
    ctx.evidence(
        "volatile-capture.json",
        &json!({"instance_id": id, "captured": false, "reason": why.to_string()}),
        what,
    )?;
    Ok(ActionOutput::default().with("items", Vec::<String>::new()))
}

/// `None` when the instance is an SSM managed instance whose agent is online; else why not.
async fn managed(ctx: &ActionCtx, id: &str) -> Result<Option<ActionError>, ActionError> {
    let out = ctx
        .aws
        .ssm
        .describe_instance_information()
        .filters(
            aws_sdk_ssm::types::InstanceInformationStringFilter::builder()
                .key("InstanceIds")
                .values(id)
                .build()
                .map_err(|e| ActionError::Params(e.to_string()))?,
        )
        .send()
        .await
        .map_err(read_err("ssm", "DescribeInstanceInformation"))?;
    let info = out
        .instance_information_list()
        .iter()
        .find(|i| i.instance_id() == Some(id));
    Ok(match info.and_then(|i| i.ping_status()) {
        Some(aws_sdk_ssm::types::PingStatus::Online) => None,
        Some(status) => Some(ActionError::Target(format!(
            "the SSM agent of {id} is not online (PingStatus {}): no volatile capture",
            status.as_str()
        ))),
        None => Some(ActionError::Target(format!(
            "{id} is not an SSM managed instance (no agent registered with Systems Manager): no volatile capture"
        ))),
    })
}

/// The comment that marks this step's command (SSM allows 100 characters).
fn comment(ctx: &ActionCtx) -> String {
    format!("irr {} {} {}", ctx.case_id, ctx.run_id, ctx.step_id)
        .chars()
        .take(100)
        .collect()
}

/// A retried or resumed step: an earlier attempt's command still running is cancelled, and
/// the uploads left under the step's artifacts are aborted (their URLs then stop working).
async fn end_earlier(
    ctx: &ActionCtx,
    store: &S3Store,
    id: &str,
    comment: &str,
) -> Result<(), ActionError> {
    let out = ctx
        .aws
        .ssm
        .list_commands()
        .instance_id(id)
        .send()
        .await
        .map_err(read_err("ssm", "ListCommands"))?;
    use aws_sdk_ssm::types::CommandStatus;
    for c in out.commands() {
        let running = matches!(
            c.status(),
            Some(CommandStatus::Pending | CommandStatus::InProgress)
        );
        if c.comment() == Some(comment) && running {
            let cid = c.command_id().unwrap_or_default().to_owned();
            cancel(ctx, &cid, id, "an earlier attempt's").await;
        }
    }
    let prefix = format!("{}artifacts/{}/", ctx.bundle_prefix(), ctx.step_id);
    let left = store
        .remote_uploads_under(&prefix)
        .await
        .map_err(|e| ActionError::Evidence(e.to_string()))?;
    for u in left {
        abort(ctx, store, &u).await;
    }
    Ok(())
}

/// CancelCommand (journaled); a failure is a gap.
async fn cancel(ctx: &ActionCtx, command_id: &str, id: &str, whose: &str) {
    let call = ctx
        .aws
        .ssm
        .cancel_command()
        .command_id(command_id)
        .instance_ids(id)
        .send();
    let r = ctx
        .mutating(
            "ssm",
            "CancelCommand",
            json!({"command_id": command_id, "instance_id": id, "why": format!("{whose} volatile capture")}),
            call,
            |_| Value::Null,
        )
        .await;
    ctx.or_gap("ssm:CancelCommand", r);
}

/// Aborts an upload; a failure is a gap (the upload expires with a lifecycle rule).
async fn abort(ctx: &ActionCtx, store: &S3Store, u: &RemoteUpload) {
    let r = store
        .abort_remote_upload(u)
        .await
        .map_err(|e| ActionError::Evidence(e.to_string()));
    ctx.or_gap("s3:AbortMultipartUpload", r);
}

/// The instance's memory in MiB (its instance type's), for the number of memory parts.
async fn memory_mib(ctx: &ActionCtx, id: &str) -> Result<u64, ActionError> {
    let inst = super::ec2::describe_instance(ctx, id).await?;
    let ty = inst
        .instance_type()
        .ok_or_else(|| ActionError::Target(format!("{id} has no instance type")))?;
    let out = ctx
        .aws
        .ec2
        .describe_instance_types()
        .instance_types(ty.clone())
        .send()
        .await
        .map_err(read_err("ec2", "DescribeInstanceTypes"))?;
    out.instance_types()
        .first()
        .and_then(|t| t.memory_info()?.size_in_mib())
        .map(|m| m.max(1) as u64)
        .ok_or_else(|| ActionError::Target(format!("no memory size for {}", ty.as_str())))
}

/// Memory of an instance whose type could not be read: parts for 64 GiB are presigned.
const ASSUMED_MEMORY_MIB: u64 = 64 * 1024;

/// An object of the capture: the plan for the script and its upload.
struct Object {
    planned: Planned,
    upload: RemoteUpload,
    path: String,
}

/// The part size (MiB) and count for a memory image of an instance with `mem_mib` MiB: room
/// for the image plus a tenth (LiME range headers, memory seen twice), in at most about 400
/// parts of at least 16 MiB (the agent's RAM buffer), and never over S3's 10,000 parts.
fn memory_parts(mem_mib: u64) -> (u64, i32) {
    let room = mem_mib + mem_mib / 10 + 64;
    let part_mib = room.div_ceil(400).max(16);
    let parts = room.div_ceil(part_mib).min(10_000);
    (part_mib, parts as i32)
}

/// Starts the uploads and presigns their parts: each command first (one part each), then the
/// memory image.
async fn plan(ctx: &ActionCtx, store: &S3Store, w: &Wanted) -> Result<Vec<Object>, ActionError> {
    let mut want: Vec<(String, u64, i32, Option<String>)> = w
        .commands
        .iter()
        .map(|(name, line)| {
            (
                name.clone(),
                script::COMMAND_OUTPUT_LIMIT_MIB,
                1,
                Some(line.clone()),
            )
        })
        .collect();
    if w.memory {
        let mem = ctx.or_gap(
            "ec2:DescribeInstanceTypes",
            memory_mib(ctx, &w.instance_id).await,
        );
        let (part_mib, parts) = memory_parts(mem.unwrap_or(ASSUMED_MEMORY_MIB));
        want.push(("memory.lime".to_owned(), part_mib, parts, None));
    }
    // One signing time for every part, so that only number and signature differ; valid for
    // the budget and a minute more.
    let start = SystemTime::now();
    let expires = w.budget + Duration::from_secs(60);
    let mut objects = Vec::new();
    for (name, part_mib, parts, command) in want {
        let path = ctx.recorder.artifact_path(&ctx.step_id, &name);
        let key = format!("{}{path}", ctx.bundle_prefix());
        let started = store.start_remote_upload(&key).await;
        let upload = match started {
            Ok(u) => u,
            Err(e) => {
                abort_all(ctx, store, &objects).await;
                return Err(ActionError::Evidence(e.to_string()));
            }
        };
        let presigned = store.presign_parts(&upload, parts, start, expires).await;
        let parts = match presigned {
            Ok(p) => p,
            Err(e) => {
                abort(ctx, store, &upload).await;
                abort_all(ctx, store, &objects).await;
                return Err(ActionError::Evidence(e.to_string()));
            }
        };
        // Bearer credentials until they expire: masked wherever the run writes, should an
        // error message ever quote them (they are never recorded on purpose).
        for p in &parts {
            for secret in script::presigned_secrets(&p.url) {
                ctx.recorder.secret(&secret);
            }
        }
        objects.push(Object {
            planned: Planned {
                name,
                part_mib,
                parts,
                command,
            },
            upload,
            path,
        });
    }
    Ok(objects)
}

async fn abort_all(ctx: &ActionCtx, store: &S3Store, objects: &[Object]) {
    for o in objects {
        abort(ctx, store, &o.upload).await;
    }
}

/// How the command ended.
struct Ran {
    command_id: Option<String>,
    status: String,
    details: String,
    stdout: String,
    stderr: String,
    /// The budget ran out (the command was cancelled).
    timed_out: bool,
    /// Why the command could not be sent or followed, when it could not.
    error: Option<ActionError>,
}

impl Ran {
    fn failed(error: ActionError, command_id: Option<String>) -> Ran {
        Ran {
            command_id,
            status: "NotRun".into(),
            details: String::new(),
            stdout: String::new(),
            stderr: String::new(),
            timed_out: false,
            error: Some(error),
        }
    }
}

/// Sends the script (recording it with its URLs redacted) and waits for the command within
/// the budget.
async fn send_and_wait(
    ctx: &ActionCtx,
    w: &Wanted,
    objects: &[Object],
    comment: &str,
    deadline: Instant,
) -> Ran {
    let header = format!(
        "case {}, run {}, step {}",
        ctx.case_id, ctx.run_id, ctx.step_id
    );
    let planned: Vec<&Planned> = objects.iter().map(|o| &o.planned).collect();
    let text = match script::build_refs(&header, &planned) {
        Ok(t) => t,
        Err(e) => return Ran::failed(e, None),
    };
    let redacted = script::redact_presigned(&text);
    if let Err(e) = ctx.recorder.artifact(
        &ctx.step_id,
        "capture-script.sh",
        redacted.as_bytes(),
        "ssm:SendCommand (presigned signatures redacted)",
    ) {
        return Ran::failed(e, None);
    }
    let secs = w.budget.as_secs().max(30);
    let call = ctx
        .aws
        .ssm
        .send_command()
        .instance_ids(&w.instance_id)
        .document_name("AWS-RunShellScript")
        .comment(comment)
        .timeout_seconds(secs.min(2_592_000) as i32)
        .parameters("commands", vec![text.clone()])
        .parameters("executionTimeout", vec![secs.to_string()])
        .send();
    let params = json!({
        "instance_id": w.instance_id,
        "document_name": "AWS-RunShellScript",
        "comment": comment,
        "objects": objects.iter().map(|o| &o.path).collect::<Vec<_>>(),
        "script_sha256": irr_forensics::Sha256Digest::of(text.as_bytes()).to_hex(),
        "execution_timeout": secs,
    });
    let sent = ctx
        .mutating(
            "ssm",
            "SendCommand",
            params,
            call,
            |o| json!({"command_id": o.command().and_then(|c| c.command_id())}),
        )
        .await;
    let command_id = match sent {
        Ok(o) => o.command().and_then(|c| c.command_id()).map(str::to_owned),
        Err(e) => return Ran::failed(e, None),
    };
    let Some(cid) = command_id else {
        return Ran::failed(
            ActionError::Target("SendCommand returned no command id".into()),
            None,
        );
    };
    wait(ctx, &w.instance_id, &cid, deadline).await
}

/// Polls GetCommandInvocation until the command ends or `deadline`, then cancels it.
async fn wait(ctx: &ActionCtx, id: &str, cid: &str, deadline: Instant) -> Ran {
    use aws_sdk_ssm::types::CommandInvocationStatus as S;
    let poll = poll_interval();
    let mut last_error = None;
    loop {
        let got = ctx
            .aws
            .ssm
            .get_command_invocation()
            .command_id(cid)
            .instance_id(id)
            .send()
            .await
            .map_err(read_err("ssm", "GetCommandInvocation"));
        match got {
            Ok(o) => {
                let done = !matches!(
                    o.status(),
                    None | Some(S::Pending | S::InProgress | S::Delayed | S::Cancelling)
                );
                if done {
                    return Ran {
                        command_id: Some(cid.to_owned()),
                        status: o
                            .status()
                            .map(|s| s.as_str().to_owned())
                            .unwrap_or_default(),
                        details: o.status_details().unwrap_or_default().to_owned(),
                        stdout: o.standard_output_content().unwrap_or_default().to_owned(),
                        stderr: o.standard_error_content().unwrap_or_default().to_owned(),
                        timed_out: false,
                        error: None,
                    };
                }
            }
            // Right after SendCommand the invocation may not exist yet.
            Err(e) if e.code() == "InvocationDoesNotExist" => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() + poll >= deadline {
            break;
        }
        tokio::time::sleep(poll).await;
    }
    cancel(ctx, cid, id, "the timed-out").await;
    let mut ran = Ran::failed(
        last_error.unwrap_or_else(|| {
            ActionError::Target("the volatile capture ran out of its time budget".into())
        }),
        Some(cid.to_owned()),
    );
    ran.status = "TimedOut".into();
    ran.timed_out = true;
    ran
}

/// How often the invocation is read (`IRR_SSM_POLL_MS` for the tests; 2 s).
fn poll_interval() -> Duration {
    let ms = std::env::var("IRR_SSM_POLL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000u64);
    Duration::from_millis(ms.clamp(50, 60_000))
}

/// Completes what arrived, records each object (irr's hash, the agent's beside it) and the
/// capture's own record; aborts the rest. Every shortfall is a gap.
async fn finish(
    ctx: &ActionCtx,
    store: &S3Store,
    w: &Wanted,
    objects: Vec<Object>,
    ran: Ran,
) -> Result<ActionOutput, ActionError> {
    if let Some(e) = &ran.error {
        let what = if ran.timed_out {
            "ssm:GetCommandInvocation"
        } else {
            "ssm:SendCommand"
        };
        ctx.gap(what, e);
    } else if ran.status != "Success" {
        ctx.gap(
            "ssm:GetCommandInvocation",
            &ActionError::Target(format!(
                "the capture command ended {} ({})",
                ran.status,
                script::redact_presigned(&ran.details)
            )),
        );
    }
    let names: Vec<&str> = objects.iter().map(|o| o.planned.name.as_str()).collect();
    let agent = script::parse_output(&ran.stdout, &names);
    let output = format!("# stdout\n{}\n# stderr\n{}\n", ran.stdout, ran.stderr);
    ctx.recorder.artifact(
        &ctx.step_id,
        "command-output.txt",
        script::redact_presigned(&output).as_bytes(),
        "ssm:GetCommandInvocation",
    )?;
    let mut items = Vec::new();
    let mut records = Vec::new();
    let mut memory_sha256 = None;
    for o in objects {
        let rec = finish_one(ctx, store, &o, &agent, &ran).await?;
        if let Some((path, sha)) = rec.0 {
            if o.planned.command.is_none() {
                memory_sha256 = Some(sha);
            }
            items.push(path);
        }
        records.push(rec.1);
    }
    if w.memory && memory_sha256.is_none() {
        let why = agent
            .memory_tool
            .clone()
            .unwrap_or_else(|| "no memory image arrived".into());
        ctx.gap(
            "ssm:memory-image",
            &ActionError::Target(format!("memory image not available: {why}")),
        );
    }
    ctx.evidence(
        "volatile-capture.json",
        &json!({
            "instance_id": w.instance_id,
            "captured": !items.is_empty(),
            "command_id": ran.command_id,
            "status": ran.status,
            "status_details": script::redact_presigned(&ran.details),
            "timed_out": ran.timed_out,
            "budget_seconds": w.budget.as_secs(),
            "memory_tool": agent.memory_tool,
            "agent_finished": agent.done,
            "agent_notes": agent.notes,
            "objects": records,
        }),
        "ssm:GetCommandInvocation",
    )?;
    let mut out = ActionOutput::default().with("items", items);
    if let Some(sha) = memory_sha256 {
        out = out.with("memory_sha256", sha);
    }
    Ok(out)
}

/// One object: completed and recorded (its path and irr's hash), or aborted; and its entry
/// in `volatile-capture.json`.
async fn finish_one(
    ctx: &ActionCtx,
    store: &S3Store,
    o: &Object,
    agent: &AgentReport,
    ran: &Ran,
) -> Result<(Option<(String, String)>, Value), ActionError> {
    let name = &o.planned.name;
    let said = agent.objects.get(name);
    let said_json = said.map(|a| json!({"sha256": a.sha256, "size": a.size, "parts": a.parts}));
    // A memory image cut off by the budget is not the image: it is not kept.
    if ran.timed_out && o.planned.command.is_none() {
        abort(ctx, store, &o.upload).await;
        return Ok((
            None,
            json!({"name": name, "captured": false, "why": "the time budget ran out", "agent": said_json}),
        ));
    }
    let max = o.planned.part_mib * MIB * o.planned.parts.len() as u64;
    let finished = store.finish_remote_upload(&o.upload, max).await;
    let got = match finished {
        Ok(Some(got)) => got,
        Ok(None) => {
            return Ok((
                None,
                json!({"name": name, "captured": false, "why": "nothing arrived", "agent": said_json}),
            ))
        }
        Err(e) => {
            let e = ActionError::Evidence(e.to_string());
            ctx.gap(&format!("s3:CompleteMultipartUpload {name}"), &e);
            return Ok((
                None,
                json!({"name": name, "captured": false, "why": e.to_string(), "agent": said_json}),
            ));
        }
    };
    let sha = got.stored.sha256.to_hex();
    let matches = said.map(|a| a.sha256 == sha && a.size == got.stored.size);
    if matches != Some(true) {
        let why = match said {
            None => "the agent reported no hash for it".to_owned(),
            Some(a) => format!(
                "the agent reported sha256 {} ({} bytes); {sha} ({} bytes) arrived",
                a.sha256, a.size, got.stored.size
            ),
        };
        ctx.gap(&format!("ssm:agent-hash {name}"), &ActionError::Target(why));
    }
    if agent.truncated.contains(name) {
        ctx.gap(&format!("ssm:truncated {name}"), &ActionError::Target(format!("{name}: the stream was longer than the {max} bytes presigned; the rest was not kept")));
    }
    let path = ctx.recorder.stored_artifact(
        &ctx.step_id,
        name,
        &sha,
        got.stored.size,
        "ssm:SendCommand (streamed by the instance's SSM agent through presigned S3 UploadPart)",
    )?;
    let rec = json!({
        "name": name,
        "path": path,
        "captured": true,
        "sha256": sha,
        "size": got.stored.size,
        "parts": got.parts,
        "version_id": got.stored.version_id,
        "agent": said_json,
        "agent_hash_matches": matches == Some(true),
    });
    Ok((Some((path, sha)), rec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_parts_fit_the_image_in_a_bounded_number_of_parts() {
        assert_eq!(memory_parts(1024), (16, 75));
        let (mib, n) = memory_parts(64 * 1024);
        assert!(
            mib * n as u64 >= 64 * 1024 * 11 / 10 && n <= 401,
            "{mib} {n}"
        );
        let (mib, n) = memory_parts(24 * 1024 * 1024);
        assert!(
            n <= 10_000 && mib * n as u64 >= 24 * 1024 * 1024,
            "{mib} {n}"
        );
    }

    #[test]
    fn parameters_are_bounded() {
        let p = |t: &str| CaptureVolatileParams {
            instance_id: "i-1".into(),
            memory: None,
            commands: None,
            timeout: Some(t.into()),
        };
        assert!(wanted(p("5s")).is_err());
        assert!(wanted(p("13h")).is_err());
        let w = wanted(p("15m")).unwrap();
        assert!(w.memory);
        assert_eq!(w.commands.len(), 5);
    }
}
