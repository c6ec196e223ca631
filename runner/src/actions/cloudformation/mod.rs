//! CloudFormation actions: deploy a Handlebars-rendered template as a stack (e.g. the forensic
//! clean room, `playbooks/templates/forensic-clean-room.yaml`), and delete it.
//!
//! ## Rendering
//! The template file (a path relative to the playbook's directory, [`ActionCtx::playbook_dir`],
//! that stays inside it: [`read_template`]) is rendered with Handlebars in strict mode (a reference to anything missing is an error),
//! without HTML escaping, against this context:
//!
//! ```json
//! { "case":   { "id": "<the run's case id>" },
//!   "run":    { "id": "<the run id>" },
//!   "params": { ...the step's `parameters`, with their own types (lists stay lists)... } }
//! ```
//!
//! Rendered values are data: the output is parsed by CloudFormation only (and by this module,
//! to read which parameters the template declares); nothing is passed to a shell. Templates
//! should use Handlebars for structure only (`{{#each params.snapshot_ids}}` emitting one
//! resource per item) and take every value through a stack parameter.
//!
//! ## Stack parameters
//! Each entry of `parameters` is passed to CloudFormation when the rendered template declares
//! it, under its own name or its UpperCamelCase form (`snapshot_ids` -> `SnapshotIds`;
//! CloudFormation names are alphanumeric). Values are stringified: strings as they are,
//! numbers and booleans as written, lists comma-joined (for `CommaDelimitedList`), maps as
//! JSON. Entries the template does not declare are only available to Handlebars.
//!
//! ## Stack names
//! CloudFormation allows `[A-Za-z][A-Za-z0-9-]*` (at most 128 characters); case ids may hold
//! `.` and `_`. [`stack_name`] maps every other character to `-` (and prefixes `irr-` when the
//! name does not start with a letter), so `irr-clean-room-{{case.id}}` always works; both
//! actions apply it, so the same `stack_name` finds the same stack. Two names that differ only
//! in those characters map to the same stack; the case tag check keeps cases apart.
//!
//! ## No DryRun
//! CloudFormation has no `DryRun`. In a dry run `deploy_stack` renders the template, calls
//! `ValidateTemplate` (checking capabilities and parameters where AWS reports them), and
//! reports what it would do; `delete_stack` reports what it would delete. Nothing is changed.

use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_cloudformation::types::{Capability, OnFailure, Parameter, Stack, StackEvent, Tag};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::catalog::decl::*;
use crate::catalog::{Declaration, TypeSpec};

use super::{
    aws_error, retry_transient, ts, Action, ActionCtx, ActionError, ActionOutput, AwsResource,
    TAG_CASE, TAG_RUN,
};

mod delete;
mod deploy;
pub use delete::*;
pub use deploy::*;

/// The largest `TemplateBody` CloudFormation accepts (bytes); larger ones need S3.
const MAX_TEMPLATE_BODY: usize = 51_200;
/// Default wait for a stack to be created or deleted.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How many failure reasons the error message lists (all are in `stack-events.json`).
const MAX_REASONS: usize = 10;

/// The CloudFormation stack name for a requested one: characters outside `[A-Za-z0-9-]`
/// become `-`, `irr-` is prefixed when it does not start with a letter, at most 128
/// characters. `irr-clean-room-IR_2026.1` -> `irr-clean-room-IR-2026-1`.
pub fn stack_name(requested: &str) -> Result<String, ActionError> {
    let requested = requested.trim();
    if requested.is_empty() {
        return Err(ActionError::Params("stack_name is empty".into()));
    }
    let mut name: String = requested
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        name = format!("irr-{name}");
    }
    name.truncate(128);
    Ok(name)
}

/// Renders a template's text with Handlebars (strict mode, no escaping) against
/// `{case: {id}, run: {id}, params}` (see the module documentation).
pub fn render(
    text: &str,
    case_id: &str,
    run_id: &str,
    params: &Map<String, Value>,
) -> Result<String, ActionError> {
    let mut hb = handlebars::Handlebars::new();
    hb.set_strict_mode(true);
    hb.register_escape_fn(handlebars::no_escape);
    let context = json!({
        "case": {"id": case_id},
        "run": {"id": run_id},
        "params": params,
    });
    hb.render_template(text, &context)
        .map_err(|e| ActionError::Params(format!("template: {e}")))
}

/// Reads the template file `template`: a relative path inside `playbook_dir` (no absolute
/// path, no `..`, no symbolic link leading out of it), a regular file of at most
/// [`crate::load::MAX_FILE_BYTES`] of UTF-8, read without blocking on a FIFO. A playbook is
/// hostile input: its template must not be a way to read, render and send to AWS (or write
/// into a compiled state machine) any file the responder's machine holds.
pub fn read_template(playbook_dir: &Path, template: &str) -> Result<String, String> {
    use std::path::Component;
    let fail = |why: &str| format!("template `{template}`: {why}");
    let rel = Path::new(template);
    if template.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(fail(
            "must be a relative path inside the playbook's folder (no `/` at the start, no `.` or `..`)",
        ));
    }
    let dir = if playbook_dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        playbook_dir
    };
    let path = dir.join(rel);
    let (Ok(real_dir), Ok(real)) = (dir.canonicalize(), path.canonicalize()) else {
        return Err(fail(&format!("cannot be read ({})", path.display())));
    };
    if !real.starts_with(&real_dir) {
        return Err(fail(&format!(
            "leads out of the playbook's folder (to {}) through a symbolic link",
            real.display()
        )));
    }
    if !std::fs::metadata(&real).is_ok_and(|m| m.is_file()) {
        return Err(fail("is not a regular file"));
    }
    crate::load::read_file(&real)
        .map(|src| src.text().to_owned())
        .map_err(|d| fail(&d.message))
}

/// Reads the template file `template` ([`read_template`]) and renders it.
pub fn render_file(
    playbook_dir: &Path,
    template: &str,
    case_id: &str,
    run_id: &str,
    params: &Map<String, Value>,
) -> Result<String, ActionError> {
    let text = read_template(playbook_dir, template).map_err(ActionError::Params)?;
    render(&text, case_id, run_id, params).map_err(|e| match e {
        ActionError::Params(m) => ActionError::Params(format!("`{template}`: {m}")),
        other => other,
    })
}

/// The top-level sections of a rendered template that this module reads.
struct TemplateFacts {
    /// Declared parameter names.
    parameters: Vec<String>,
    /// Those declared `NoEcho: true`: their values are masked wherever the run writes.
    no_echo: Vec<String>,
    /// Number of resources.
    resources: usize,
    /// `json` or `yaml`.
    format: &'static str,
}

fn template_facts(body: &str) -> Result<TemplateFacts, ActionError> {
    let doc: serde_yaml::Value = serde_yaml::from_str(body).map_err(|e| {
        ActionError::Params(format!(
            "the rendered template is not valid YAML or JSON: {e}"
        ))
    })?;
    let serde_yaml::Value::Mapping(top) = &doc else {
        return Err(ActionError::Params(
            "the rendered template is not a mapping".into(),
        ));
    };
    let keys = |section: &str| -> Vec<String> {
        match top.get(section) {
            Some(serde_yaml::Value::Mapping(m)) => m
                .keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    };
    let resources = keys("Resources").len();
    if resources == 0 {
        return Err(ActionError::Params(
            "the rendered template has no Resources".into(),
        ));
    }
    let no_echo = match top.get("Parameters") {
        Some(serde_yaml::Value::Mapping(m)) => m
            .iter()
            .filter(|(_, decl)| {
                matches!(decl.get("NoEcho"), Some(serde_yaml::Value::Bool(true)))
                    || decl
                        .get("NoEcho")
                        .and_then(serde_yaml::Value::as_str)
                        .is_some_and(|t| t.eq_ignore_ascii_case("true"))
            })
            .filter_map(|(k, _)| k.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    Ok(TemplateFacts {
        parameters: keys("Parameters"),
        no_echo,
        resources,
        format: if body.trim_start().starts_with('{') {
            "json"
        } else {
            "yaml"
        },
    })
}

/// `snapshot_ids` -> `SnapshotIds`.
fn upper_camel(name: &str) -> String {
    name.split(['_', '-'])
        .filter(|s| !s.is_empty())
        .map(|s| {
            let mut c = s.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// A parameter value as CloudFormation takes it (see the module documentation).
fn param_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

/// The values given for the parameters the template declares `NoEcho: true`: as passed
/// (stringified) and, for a list, each item.
fn no_echo_values(facts: &TemplateFacts, given: &Map<String, Value>) -> Vec<Value> {
    let mut out = Vec::new();
    for (k, v) in given {
        if facts
            .no_echo
            .iter()
            .any(|n| *n == *k || *n == upper_camel(k))
        {
            out.push(Value::String(param_string(v)));
            out.push(v.clone());
        }
    }
    out
}

/// The values of `NoEcho` parameters a `cloudformation.deploy_stack` step would pass, as far
/// as they are known before the run (for masking `irr plan`): the template rendered with the
/// planned parameters. Empty when it cannot be rendered yet.
pub fn planned_no_echo_values(
    playbook_dir: &Path,
    params: &Value,
    case_id: &str,
    run_id: &str,
) -> Vec<Value> {
    let (Some(template), Some(given)) = (
        params.get("template").and_then(Value::as_str),
        params.get("parameters").and_then(Value::as_object),
    ) else {
        return Vec::new();
    };
    render_file(playbook_dir, template, case_id, run_id, given)
        .ok()
        .and_then(|body| template_facts(&body).ok())
        .map(|facts| no_echo_values(&facts, given))
        .unwrap_or_default()
}

fn param_string_item(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The stack parameters to pass (CloudFormation name, value), and the names of the entries
/// the template does not declare (Handlebars only).
fn stack_parameters(
    declared: &[String],
    given: &Map<String, Value>,
) -> (Vec<(String, String)>, Vec<String>) {
    let mut pass = Vec::new();
    let mut render_only = Vec::new();
    for (k, v) in given {
        let camel = upper_camel(k);
        let name = if declared.iter().any(|d| d == k) {
            Some(k.clone())
        } else if declared.contains(&camel) {
            Some(camel)
        } else {
            None
        };
        match name {
            Some(n) if !pass.iter().any(|(p, _): &(String, String)| *p == n) => {
                pass.push((n, param_string(v)))
            }
            _ => render_only.push(k.clone()),
        }
    }
    (pass, render_only)
}

fn timeout_of(v: Option<&Value>) -> Result<Duration, ActionError> {
    match v {
        None | Some(Value::Null) => Ok(DEFAULT_TIMEOUT),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Duration::from_secs)
            .ok_or_else(|| ActionError::Params(format!("invalid timeout {n}"))),
        Some(Value::String(s)) => crate::actions::iam::parse_duration(s),
        Some(other) => Err(ActionError::Params(format!("invalid timeout {other}"))),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn status(s: &Stack) -> &str {
    s.stack_status().map(|s| s.as_str()).unwrap_or("")
}

fn tag_of<'a>(s: &'a Stack, key: &str) -> Option<&'a str> {
    s.tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

/// What a stack looks like, for the evidence.
fn stack_json(s: &Stack) -> Value {
    json!({
        "stack_id": s.stack_id(),
        "stack_name": s.stack_name(),
        "status": status(s),
        "status_reason": s.stack_status_reason(),
        "description": s.description(),
        "creation_time": ts(s.creation_time()),
        "last_updated_time": ts(s.last_updated_time()),
        "parameters": s.parameters().iter().map(|p| json!({
            "key": p.parameter_key(), "value": p.parameter_value()
        })).collect::<Vec<_>>(),
        "capabilities": s.capabilities().iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        "tags": s.tags().iter().map(|t| (t.key().unwrap_or_default().to_owned(),
            Value::from(t.value().unwrap_or_default()))).collect::<Map<_, _>>(),
        "outputs": outputs_of(s),
        "timeout_in_minutes": s.timeout_in_minutes(),
        "disable_rollback": s.disable_rollback(),
    })
}

fn outputs_of(s: &Stack) -> Map<String, Value> {
    s.outputs()
        .iter()
        .filter_map(|o| {
            Some((
                o.output_key()?.to_owned(),
                Value::from(o.output_value().unwrap_or_default()),
            ))
        })
        .collect()
}

fn event_json(e: &StackEvent) -> Value {
    json!({
        "timestamp": ts(e.timestamp()),
        "logical_resource_id": e.logical_resource_id(),
        "physical_resource_id": e.physical_resource_id(),
        "resource_type": e.resource_type(),
        "status": e.resource_status().map(|s| s.as_str()),
        "reason": e.resource_status_reason(),
    })
}

/// `true` for DescribeStacks' answer about a stack that does not exist (or no longer does).
fn is_missing<E: ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("ValidationError") && e.message().is_some_and(|m| m.contains("does not exist"))
}

/// The stack named (or with the id) `name_or_id`; `None` when there is none. A deleted stack
/// looked up by id comes back with `DELETE_COMPLETE`.
async fn describe(ctx: &ActionCtx, name_or_id: &str) -> Result<Option<Stack>, ActionError> {
    match ctx
        .aws
        .cloudformation
        .describe_stacks()
        .stack_name(name_or_id)
        .send()
        .await
    {
        Ok(out) => Ok(out.stacks().first().cloned()),
        Err(e) if is_missing(&e) => Ok(None),
        Err(e) => Err(aws_error("cloudformation", "DescribeStacks", &e)),
    }
}

/// Every event of the stack, oldest first (DescribeStackEvents pages newest first).
async fn events(ctx: &ActionCtx, stack_id: &str) -> Result<Vec<StackEvent>, ActionError> {
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..50 {
        let out = match ctx
            .aws
            .cloudformation
            .describe_stack_events()
            .stack_name(stack_id)
            .set_next_token(token.clone())
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) if is_missing(&e) => break,
            Err(e) => return Err(aws_error("cloudformation", "DescribeStackEvents", &e)),
        };
        all.extend(out.stack_events().iter().cloned());
        token = out.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    all.reverse();
    Ok(all)
}

/// The failed resources' reasons, root causes first ("Resource creation cancelled" and the
/// stack's own summary last), as `LogicalId (Type): reason`.
fn failure_reasons(events: &[StackEvent], stack_name: &str) -> Vec<String> {
    let mut primary = Vec::new();
    let mut secondary = Vec::new();
    for e in events {
        let failed = e
            .resource_status()
            .is_some_and(|s| s.as_str().ends_with("_FAILED"));
        let Some(reason) = e.resource_status_reason().filter(|r| !r.is_empty()) else {
            continue;
        };
        if !failed {
            continue;
        }
        let line = format!(
            "{} ({}): {}",
            e.logical_resource_id().unwrap_or("?"),
            e.resource_type().unwrap_or("?"),
            reason
        );
        let is_stack = e.resource_type() == Some("AWS::CloudFormation::Stack")
            && e.logical_resource_id() == Some(stack_name);
        if is_stack || reason.contains("cancelled") {
            secondary.push(line);
        } else {
            primary.push(line);
        }
    }
    primary.extend(secondary);
    primary.dedup();
    primary
}

fn reasons_text(reasons: &[String]) -> String {
    if reasons.is_empty() {
        return "no failure events recorded (see stack-events.json)".into();
    }
    let mut text = reasons
        .iter()
        .take(MAX_REASONS)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if reasons.len() > MAX_REASONS {
        text.push_str(&format!(
            "; and {} more (see stack-events.json)",
            reasons.len() - MAX_REASONS
        ));
    }
    text
}

fn in_progress(status: &str) -> bool {
    status.ends_with("_IN_PROGRESS") && status != "REVIEW_IN_PROGRESS"
}

/// A stack in one of these states is complete and can be reused as it is.
fn usable(status: &str) -> bool {
    matches!(
        status,
        "CREATE_COMPLETE"
            | "UPDATE_COMPLETE"
            | "UPDATE_ROLLBACK_COMPLETE"
            | "IMPORT_COMPLETE"
            | "IMPORT_ROLLBACK_COMPLETE"
    )
}

/// Polls the stack (by id) until it leaves every `*_IN_PROGRESS` state or `deadline` passes,
/// with a backoff from 2 s to 30 s. CloudFormation works asynchronously in AWS (the emulator
/// answers at once). `None`: the stack no longer exists.
async fn settle(
    ctx: &ActionCtx,
    stack_id: &str,
    deadline: Instant,
) -> Result<Option<Stack>, ActionError> {
    let mut delay = Duration::from_secs(2);
    loop {
        let stack = describe(ctx, stack_id).await?;
        match &stack {
            Some(s) if in_progress(status(s)) => {}
            _ => return Ok(stack),
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(stack);
        }
        tokio::time::sleep(delay.min(deadline - now)).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// Records the stack as an AWS resource of the run.
fn record_stack(ctx: &ActionCtx, stack_id: &str, name: &str, status: &str, extra: Value) {
    let mut details = Map::new();
    details.insert("name".into(), Value::from(name));
    details.insert("status".into(), Value::from(status));
    if let Value::Object(m) = extra {
        details.extend(m);
    }
    ctx.recorder.resource(AwsResource {
        kind: "cloudformation-stack".into(),
        id: stack_id.to_owned(),
        details,
    });
}

/// The resources of a stack (logical id, type, physical id, status), for the evidence.
async fn resources_json(ctx: &ActionCtx, stack_id: &str) -> Result<Value, ActionError> {
    match ctx
        .aws
        .cloudformation
        .describe_stack_resources()
        .stack_name(stack_id)
        .send()
        .await
    {
        Ok(out) => Ok(Value::Array(
            out.stack_resources()
                .iter()
                .map(|r| {
                    json!({
                        "logical_resource_id": r.logical_resource_id(),
                        "resource_type": r.resource_type(),
                        "physical_resource_id": r.physical_resource_id(),
                        "status": r.resource_status().map(|s| s.as_str()),
                        "reason": r.resource_status_reason(),
                    })
                })
                .collect(),
        )),
        Err(e) if is_missing(&e) => Ok(Value::Array(Vec::new())),
        Err(e) => Err(aws_error("cloudformation", "DescribeStackResources", &e)),
    }
}

/// Deletes the stack `stack_id` (journaled) and waits until it is gone.
///
/// AWS deletes asynchronously: a resource it cannot delete leaves the stack in
/// `DELETE_FAILED`, whose events name it. The emulator (moto) deletes synchronously and,
/// when a resource cannot go (a VPC with dependants: `DependencyViolation`), fails the
/// `DeleteStack` call itself after dropping the stack's record, leaving the remaining
/// resources behind; that answer is reported as such.
async fn delete_and_wait(
    ctx: &ActionCtx,
    stack_id: &str,
    name: &str,
    why: &str,
    timeout: Duration,
) -> Result<(), ActionError> {
    let deadline = Instant::now() + timeout;
    let deleted = ctx
        .mutating(
            "cloudformation",
            "DeleteStack",
            json!({"stack_name": name, "stack_id": stack_id, "why": why}),
            ctx.aws
                .cloudformation
                .delete_stack()
                .stack_name(stack_id)
                .send(),
            |_| json!({}),
        )
        .await;
    if let Err(e) = deleted {
        let gone = match describe(ctx, stack_id).await {
            Ok(None) => true,
            Ok(Some(s)) => status(&s) == "DELETE_COMPLETE",
            Err(_) => false,
        };
        return Err(match e {
            ActionError::Aws {
                service,
                operation,
                code,
                message,
                request_id,
            } if gone => ActionError::Aws {
                message: format!(
                    "{message} (stack {name}: its record is gone but resources it could not \
                     delete remain; this is the local emulator's synchronous DeleteStack, \
                     which AWS answers with DELETE_FAILED instead; see \
                     stack-resources-before.json for what the stack held)"
                ),
                service,
                operation,
                code,
                request_id,
            },
            other => other,
        });
    }
    match settle(ctx, stack_id, deadline).await? {
        None => Ok(()),
        Some(s) if status(&s) == "DELETE_COMPLETE" => Ok(()),
        Some(s) if in_progress(status(&s)) => Err(ActionError::Target(format!(
            "stack {name} is still {} after {}s; CloudFormation goes on deleting it",
            status(&s),
            timeout.as_secs()
        ))),
        Some(s) => {
            let evs = events(ctx, stack_id).await?;
            ctx.evidence(
                "stack-delete-events.json",
                &json!({"stack_id": stack_id, "events": evs.iter().map(event_json).collect::<Vec<_>>()}),
                "cloudformation:DescribeStackEvents",
            )?;
            Err(ActionError::Target(format!(
                "stack {name} could not be deleted ({}): {}",
                status(&s),
                reasons_text(&failure_reasons(&evs, name))
            )))
        }
    }
}

/// Error codes of `CreateStack` worth retrying with the same client request token.
fn create_retryable(e: &ActionError) -> bool {
    crate::actions::is_transient(e) || matches!(e.code(), "InternalFailure" | "ServiceUnavailable")
}

#[cfg(test)]
mod not_created_tests {
    use super::*;

    #[test]
    fn resources_complete_without_a_physical_id_are_not_created() {
        let resources = json!([
            {"logical_resource_id": "Vpc", "resource_type": "AWS::EC2::VPC", "physical_resource_id": "vpc-1", "status": "CREATE_COMPLETE"},
            {"logical_resource_id": "EvidenceVolume0", "resource_type": "AWS::EC2::Volume", "physical_resource_id": "unknown", "status": "CREATE_COMPLETE"},
            {"logical_resource_id": "EvidenceAttachment0", "resource_type": "AWS::EC2::VolumeAttachment", "physical_resource_id": null, "status": "UPDATE_COMPLETE"},
            {"logical_resource_id": "Pending", "resource_type": "AWS::EC2::Volume", "physical_resource_id": null, "status": "CREATE_IN_PROGRESS"},
            {"logical_resource_id": "Gone", "resource_type": "AWS::EC2::Volume", "physical_resource_id": null, "status": "DELETE_COMPLETE"},
        ]);
        let got = not_created(&resources);
        let ids: Vec<&str> = got
            .iter()
            .map(|r| r["logical_resource_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["EvidenceVolume0", "EvidenceAttachment0"]);
        assert!(not_created(&json!(null)).is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_names_are_sanitised() {
        assert_eq!(
            stack_name("irr-clean-room-IR-2026-0042").unwrap(),
            "irr-clean-room-IR-2026-0042"
        );
        assert_eq!(
            stack_name("irr-clean-room-IR_2026.1").unwrap(),
            "irr-clean-room-IR-2026-1"
        );
        assert_eq!(stack_name("42").unwrap(), "irr-42");
        assert_eq!(stack_name(&"a".repeat(300)).unwrap().len(), 128);
        assert!(stack_name("  ").is_err());
    }

    #[test]
    fn parameters_map_to_declared_names_and_are_stringified() {
        let declared = vec![
            "SnapshotIds".to_owned(),
            "VolumeSize".to_owned(),
            "x".to_owned(),
        ];
        let given = json!({
            "snapshot_ids": ["snap-1", "snap-2"],
            "volume_size": 8,
            "x": true,
            "only_for_handlebars": "v",
        });
        let (pass, only) = stack_parameters(&declared, given.as_object().unwrap());
        assert_eq!(
            pass,
            vec![
                ("SnapshotIds".to_owned(), "snap-1,snap-2".to_owned()),
                ("VolumeSize".to_owned(), "8".to_owned()),
                ("x".to_owned(), "true".to_owned()),
            ]
        );
        assert_eq!(only, vec!["only_for_handlebars".to_owned()]);
    }

    #[test]
    fn rendering_is_strict_and_unescaped() {
        let params = json!({"names": ["a<b", "c&d"]});
        let out = render(
            "case {{case.id}} run {{run.id}}\n{{#each params.names}}\n- {{@index}}: {{this}}\n{{/each}}\n",
            "IR-1",
            "r1",
            params.as_object().unwrap(),
        )
        .unwrap();
        assert_eq!(out, "case IR-1 run r1\n- 0: a<b\n- 1: c&d\n");
        let e = render("{{params.missing}}", "c", "r", &Map::new()).unwrap_err();
        assert_eq!(e.code(), "params");
    }

    #[test]
    fn the_clean_room_renders_one_volume_per_snapshot() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../playbooks");
        let params = json!({
            "snapshot_ids": ["snap-1", "snap-2", "snap-3"],
            "evidence_bucket": "b",
        });
        let body = render_file(
            &dir,
            "templates/forensic-clean-room.yaml",
            "IR-1",
            "run-1",
            params.as_object().unwrap(),
        )
        .unwrap();
        let facts = template_facts(&body).unwrap();
        assert!(facts.parameters.contains(&"SnapshotIds".to_owned()));
        let doc: serde_yaml::Value = serde_yaml::from_str(&body).unwrap();
        let res = doc["Resources"].as_mapping().unwrap();
        for i in 0..3 {
            assert!(
                res.contains_key(format!("EvidenceVolume{i}").as_str()),
                "{body}"
            );
            assert!(res.contains_key(format!("EvidenceAttachment{i}").as_str()));
        }
        assert!(!res.contains_key("EvidenceVolume3"));
        for (id, r) in res {
            let ty = r["Type"].as_str().unwrap_or_default();
            assert!(
                !matches!(
                    ty,
                    "AWS::EC2::InternetGateway"
                        | "AWS::EC2::NatGateway"
                        | "AWS::EC2::VPCGatewayAttachment"
                        | "AWS::EC2::EgressOnlyInternetGateway"
                        | "AWS::EC2::SecurityGroupIngress"
                        | "AWS::EC2::EIP"
                ),
                "{id:?}: {ty}"
            );
        }
        let sg = &res["WorkstationSecurityGroup"]["Properties"];
        assert!(sg.get("SecurityGroupIngress").is_none());
        assert_eq!(sg["SecurityGroupEgress"].as_sequence().unwrap().len(), 1);
        assert!(body.contains("Default: \"IR-1\""));
    }

    #[test]
    fn emulator_list_parameters_compare_equal() {
        assert_eq!(normalise_list("['snap-1', 'snap-2']"), "snap-1,snap-2");
        assert_eq!(normalise_list("snap-1, snap-2"), "snap-1,snap-2");
    }

    // ---- the AWS behaviour the emulator cannot produce (asynchronous failure) ------------

    use aws_sdk_cloudformation::operation::delete_stack::DeleteStackOutput;
    use aws_sdk_cloudformation::operation::describe_stack_events::DescribeStackEventsOutput;
    use aws_sdk_cloudformation::operation::describe_stack_resources::DescribeStackResourcesOutput;
    use aws_sdk_cloudformation::operation::describe_stacks::{
        DescribeStacksError, DescribeStacksOutput,
    };
    use aws_sdk_cloudformation::types::{ResourceStatus, StackStatus};
    use aws_sdk_cloudformation::Client;
    use aws_smithy_mocks::{mock, Rule, RuleMode};
    use aws_smithy_types::error::ErrorMetadata;
    use std::sync::Arc;

    fn ctx_with_cfn(
        dir: &Path,
        rules: &[&Rule],
    ) -> (ActionCtx, Arc<super::super::test_support::NullRecorder>) {
        let mut interceptor =
            aws_smithy_mocks::MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny);
        for r in rules {
            interceptor = interceptor.with_rule(r);
        }
        let conf = aws_sdk_cloudformation::Config::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_cloudformation::config::Credentials::new(
                "k", "s", None, None, "test",
            ))
            .http_client(aws_smithy_mocks::create_mock_http_client())
            .interceptor(interceptor)
            .build();
        let mut ctx = super::super::test_support::ctx_with_iam("case-1", RuleMode::MatchAny, &[]);
        ctx.aws.cloudformation = Client::from_conf(conf);
        ctx.playbook_dir = dir.to_owned();
        let rec = Arc::new(super::super::test_support::NullRecorder::default());
        ctx.recorder = rec.clone();
        (ctx, rec)
    }

    fn stack(status: StackStatus) -> Stack {
        Stack::builder()
            .stack_id("arn:aws:cloudformation:us-east-1:123456789012:stack/s/1")
            .stack_name("s")
            .stack_status(status)
            .tags(Tag::builder().key(TAG_CASE).value("case-1").build())
            .tags(Tag::builder().key(TAG_RUN).value("run-1").build())
            .build()
    }

    fn event(logical: &str, ty: &str, status: ResourceStatus, reason: &str) -> StackEvent {
        StackEvent::builder()
            .stack_id("arn:aws:cloudformation:us-east-1:123456789012:stack/s/1")
            .stack_name("s")
            .event_id(logical)
            .logical_resource_id(logical)
            .resource_type(ty)
            .resource_status(status)
            .resource_status_reason(reason)
            .timestamp(aws_smithy_types::DateTime::from_secs(0))
            .build()
    }

    fn template_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("t.yaml"),
            "Resources:\n  Vpc:\n    Type: AWS::EC2::VPC\n    Properties:\n      CidrBlock: 10.0.0.0/16\n",
        )
        .unwrap();
        dir
    }

    /// AWS: CreateStack succeeds, the stack rolls back later; the reasons are reported (root
    /// cause first) and the stack is deleted.
    #[tokio::test]
    async fn asynchronous_failure_reports_reasons_and_deletes_the_stack() {
        let describe = mock!(Client::describe_stacks)
            .sequence()
            .error(|| {
                DescribeStacksError::generic(
                    ErrorMetadata::builder()
                        .code("ValidationError")
                        .message("Stack with id s does not exist")
                        .build(),
                )
            })
            .output(|| {
                DescribeStacksOutput::builder()
                    .stacks(stack(StackStatus::RollbackComplete))
                    .build()
            })
            .output(|| {
                DescribeStacksOutput::builder()
                    .stacks(stack(StackStatus::DeleteComplete))
                    .build()
            })
            .build();
        let create = mock!(Client::create_stack).then_output(|| {
            aws_sdk_cloudformation::operation::create_stack::CreateStackOutput::builder()
                .stack_id("arn:aws:cloudformation:us-east-1:123456789012:stack/s/1")
                .build()
        });
        let evs = mock!(Client::describe_stack_events).then_output(|| {
            // Newest first, as AWS pages them.
            DescribeStackEventsOutput::builder()
                .stack_events(event(
                    "s",
                    "AWS::CloudFormation::Stack",
                    ResourceStatus::CreateFailed,
                    "The following resource(s) failed to create: [Sub].",
                ))
                .stack_events(event(
                    "Vpc",
                    "AWS::EC2::VPC",
                    ResourceStatus::CreateFailed,
                    "Resource creation cancelled",
                ))
                .stack_events(event(
                    "Sub",
                    "AWS::EC2::Subnet",
                    ResourceStatus::CreateFailed,
                    "Value (x) for parameter cidrBlock is invalid",
                ))
                .build()
        });
        let resources = mock!(Client::describe_stack_resources)
            .then_output(|| DescribeStackResourcesOutput::builder().build());
        let delete =
            mock!(Client::delete_stack).then_output(|| DeleteStackOutput::builder().build());
        let dir = template_dir();
        let (ctx, rec) = ctx_with_cfn(dir.path(), &[&describe, &create, &evs, &resources, &delete]);
        let e = super::super::dispatch(
            "cloudformation.deploy_stack",
            &ctx,
            json!({"stack_name": "s", "template": "t.yaml"}),
        )
        .await
        .unwrap_err();
        let msg = e.to_string();
        assert_eq!(e.code(), "target", "{msg}");
        let sub = msg.find("Sub (AWS::EC2::Subnet): Value (x)").expect(&msg);
        let vpc = msg
            .find("Vpc (AWS::EC2::VPC): Resource creation cancelled")
            .expect(&msg);
        assert!(sub < vpc, "root cause first: {msg}");
        assert!(msg.contains("the failed stack was deleted"), "{msg}");
        assert_eq!(delete.num_calls(), 1);
        let calls: Vec<String> = rec
            .calls
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.0.clone())
            .collect();
        assert_eq!(
            calls,
            ["cloudformation:CreateStack", "cloudformation:DeleteStack"]
        );
    }

    /// A stack of that name belonging to another case is neither reused nor replaced.
    #[tokio::test]
    async fn stack_of_another_case_is_refused() {
        let describe = mock!(Client::describe_stacks).then_output(|| {
            DescribeStacksOutput::builder()
                .stacks(
                    Stack::builder()
                        .stack_id("id")
                        .stack_name("s")
                        .stack_status(StackStatus::CreateComplete)
                        .tags(Tag::builder().key(TAG_CASE).value("other").build())
                        .build(),
                )
                .build()
        });
        let dir = template_dir();
        let (ctx, rec) = ctx_with_cfn(dir.path(), &[&describe]);
        let e = super::super::dispatch(
            "cloudformation.deploy_stack",
            &ctx,
            json!({"stack_name": "s", "template": "t.yaml"}),
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("other"), "{e}");
        let e = super::super::dispatch(
            "cloudformation.delete_stack",
            &ctx,
            json!({"stack_name": "s"}),
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("refusing to delete"), "{e}");
        assert!(rec.calls.lock().unwrap().is_empty());
    }

    /// AWS: a deletion that fails asynchronously (DELETE_FAILED) names the resource.
    #[tokio::test]
    async fn delete_failed_names_the_resource() {
        let describe = mock!(Client::describe_stacks)
            .sequence()
            .output(|| {
                DescribeStacksOutput::builder()
                    .stacks(stack(StackStatus::CreateComplete))
                    .build()
            })
            .output(|| {
                DescribeStacksOutput::builder()
                    .stacks(stack(StackStatus::DeleteFailed))
                    .build()
            })
            .build();
        let resources = mock!(Client::describe_stack_resources)
            .then_output(|| DescribeStackResourcesOutput::builder().build());
        let evs = mock!(Client::describe_stack_events).then_output(|| {
            DescribeStackEventsOutput::builder()
                .stack_events(event(
                    "Vpc",
                    "AWS::EC2::VPC",
                    ResourceStatus::DeleteFailed,
                    "The vpc has dependencies and cannot be deleted",
                ))
                .build()
        });
        let delete =
            mock!(Client::delete_stack).then_output(|| DeleteStackOutput::builder().build());
        let dir = template_dir();
        let (ctx, _rec) = ctx_with_cfn(dir.path(), &[&describe, &resources, &evs, &delete]);
        let e = super::super::dispatch(
            "cloudformation.delete_stack",
            &ctx,
            json!({"stack_name": "s"}),
        )
        .await
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("Vpc (AWS::EC2::VPC): The vpc has dependencies"),
            "{e}"
        );
    }

    /// A playbook's template is read only from inside its folder, as a bounded regular file.
    #[test]
    fn a_template_outside_the_playbooks_folder_or_not_a_file_is_refused() {
        let dir = template_dir();
        let d = dir.path();
        assert!(read_template(d, "t.yaml")
            .unwrap()
            .contains("AWS::EC2::VPC"));
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/u.yaml"), "Resources: {}\n").unwrap();
        assert_eq!(read_template(d, "sub/u.yaml").unwrap(), "Resources: {}\n");
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "key = s3cr3t\n").unwrap();
        let refused = |name: &str, why: &str| {
            let e = read_template(d, name).unwrap_err();
            assert!(e.contains(why), "{name}: {e}");
            assert!(!e.contains("s3cr3t"), "{e}");
        };
        refused(
            outside.path().join("secret").to_str().unwrap(),
            "relative path inside",
        );
        refused("../secret", "relative path inside");
        refused("sub/../t.yaml", "relative path inside");
        refused("./t.yaml", "relative path inside");
        refused("", "relative path inside");
        std::os::unix::fs::symlink(outside.path().join("secret"), d.join("link.yaml")).unwrap();
        refused("link.yaml", "leads out of the playbook's folder");
        refused("sub", "not a regular file");
        refused("missing.yaml", "cannot be read");
        // A FIFO is refused at once, never opened (it would block).
        let fifo = d.join("fifo.yaml");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        refused("fifo.yaml", "not a regular file");
        // Bounded: larger than a playbook may be.
        std::fs::write(
            d.join("big.yaml"),
            vec![b'#'; crate::load::MAX_FILE_BYTES as usize + 1],
        )
        .unwrap();
        refused("big.yaml", "larger than");
    }
}
