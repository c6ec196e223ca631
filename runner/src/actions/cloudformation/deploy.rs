//! `cloudformation.deploy_stack`: create (or reuse) the case's stack, wait, report and roll back.

use super::*;

/// Parameters of `cloudformation.deploy_stack`.
///
/// Each field's doc comment is the parameter's description in the catalog.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployParams {
    /// the stack; characters outside [A-Za-z0-9-] become `-`
    // Sanitised with `stack_name`.
    pub stack_name: String,
    /// a file inside the playbook's folder (a relative path: no `..`, no symbolic link out of it; at most 2 MiB); rendered with Handlebars (strict) against {case: {id}, run: {id}, params}
    pub template: String,
    /// stack parameters (a declared NAME or its UpperCamelCase form; lists comma-joined), also `params` for Handlebars
    pub parameters: Option<Map<String, Value>>,
    /// e.g. CAPABILITY_IAM
    pub capabilities: Option<Vec<String>>,
    /// stack tags (irr:case and irr:run are always added)
    #[schemars(extend("x-irr-type" = "string"))]
    pub tags: Option<Map<String, Value>>,
    /// how long to wait for completion (also the stack's TimeoutInMinutes)
    // `30m`, or seconds.
    #[schemars(extend("x-irr-type" = "duration", "default" = "30m"))]
    pub timeout: Option<Value>,
}

/// `cloudformation.deploy_stack`: its declaration (see [`Action`]); the parameters are [`DeployParams`].
pub struct DeployStack;

impl Action for DeployStack {
    type Params = DeployParams;
    const DECLARATION: Declaration = Declaration {
            name: "cloudformation.deploy_stack",
            summary: "render a Handlebars template, create (or reuse) the case's stack, wait, report failure events and roll back",
            exactly_one_of: &[],
            outputs: &[
                out("stack_id", TypeSpec::String, "the stack's id"),
                out("outputs", STRING_MAP, "the stack's outputs (OutputKey -> OutputValue)"),
                out("stack_name", TypeSpec::String, "the stack's name as created (sanitised)"),
                out("reused", TypeSpec::Boolean, "the case's existing stack was reused"),
            ],
            api_calls: &["cloudformation:DescribeStacks", "cloudformation:ValidateTemplate", "cloudformation:CreateStack", "cloudformation:DescribeStackResources", "cloudformation:DescribeStackEvents", "cloudformation:DeleteStack"],
            permissions: &[
                perm("cloudformation:DescribeStacks", STACK),
                // Dry runs only (CloudFormation has no DryRun).
                perm("cloudformation:ValidateTemplate", ANY),
                perm("cloudformation:CreateStack", STACK),
                perm("cloudformation:DescribeStackResources", STACK),
                perm("cloudformation:DescribeStackEvents", STACK),
                // Rolling back a failed stack, or replacing one an earlier attempt left failed.
                perm("cloudformation:DeleteStack", STACK),
                // CloudFormation creates (and on failure deletes) the template's resources with the
                // caller's credentials. These depend on the template: they cover the shipped clean
                // room (playbooks/templates/forensic-clean-room.yaml); another template needs its
                // own. The template keeps its roles and instance profile under the path /irr/.
                perm("ec2:DescribeAvailabilityZones", ANY),
                perm("ec2:CreateVpc", &["arn:aws:ec2:{region}:{account}:vpc/*"]),
                perm("ec2:ModifyVpcAttribute", &["arn:aws:ec2:{region}:{account}:vpc/*"]),
                perm("ec2:DescribeVpcs", ANY),
                perm("ec2:DescribeVpcAttribute", &["arn:aws:ec2:{region}:{account}:vpc/*"]),
                perm("ec2:DeleteVpc", &["arn:aws:ec2:{region}:{account}:vpc/*"]),
                perm("ec2:CreateSubnet", &["arn:aws:ec2:{region}:{account}:subnet/*", "arn:aws:ec2:{region}:{account}:vpc/*"]),
                perm("ec2:ModifySubnetAttribute", &["arn:aws:ec2:{region}:{account}:subnet/*"]),
                perm("ec2:DescribeSubnets", ANY),
                perm("ec2:DeleteSubnet", &["arn:aws:ec2:{region}:{account}:subnet/*"]),
                perm("ec2:CreateRouteTable", &["arn:aws:ec2:{region}:{account}:route-table/*", "arn:aws:ec2:{region}:{account}:vpc/*"]),
                perm("ec2:AssociateRouteTable", &["arn:aws:ec2:{region}:{account}:route-table/*", "arn:aws:ec2:{region}:{account}:subnet/*"]),
                perm("ec2:DescribeRouteTables", ANY),
                perm("ec2:DisassociateRouteTable", &["arn:aws:ec2:{region}:{account}:route-table/*", "arn:aws:ec2:{region}:{account}:subnet/*"]),
                perm("ec2:DeleteRouteTable", &["arn:aws:ec2:{region}:{account}:route-table/*"]),
                perm("ec2:CreateVpcEndpoint", &["arn:aws:ec2:{region}:{account}:vpc-endpoint/*", "arn:aws:ec2:{region}:{account}:vpc/*", "arn:aws:ec2:{region}:{account}:route-table/*"]),
                perm("ec2:ModifyVpcEndpoint", &["arn:aws:ec2:{region}:{account}:vpc-endpoint/*", "arn:aws:ec2:{region}:{account}:route-table/*"]),
                perm("ec2:DescribeVpcEndpoints", ANY),
                perm("ec2:DescribePrefixLists", ANY),
                perm("ec2:DeleteVpcEndpoints", &["arn:aws:ec2:{region}:{account}:vpc-endpoint/*"]),
                perm("ec2:CreateSecurityGroup", &["arn:aws:ec2:{region}:{account}:security-group/*", "arn:aws:ec2:{region}:{account}:vpc/*"]),
                perm("ec2:AuthorizeSecurityGroupEgress", &["arn:aws:ec2:{region}:{account}:security-group/*"]),
                perm("ec2:RevokeSecurityGroupEgress", &["arn:aws:ec2:{region}:{account}:security-group/*"]),
                perm("ec2:DescribeSecurityGroups", ANY),
                perm("ec2:DeleteSecurityGroup", &["arn:aws:ec2:{region}:{account}:security-group/*"]),
                perm("ec2:CreateFlowLogs", &["arn:aws:ec2:{region}:{account}:vpc-flow-log/*", "arn:aws:ec2:{region}:{account}:vpc/*"]),
                perm("ec2:DescribeFlowLogs", ANY),
                perm("ec2:DeleteFlowLogs", &["arn:aws:ec2:{region}:{account}:vpc-flow-log/*"]),
                perm("ec2:RunInstances", &["arn:aws:ec2:{region}:{account}:instance/*", "arn:aws:ec2:{region}:{account}:network-interface/*", "arn:aws:ec2:{region}:{account}:security-group/*", "arn:aws:ec2:{region}:{account}:subnet/*", "arn:aws:ec2:{region}:{account}:volume/*", "arn:aws:ec2:{region}::image/*"]),
                perm("ec2:DescribeInstances", ANY),
                perm("ec2:TerminateInstances", &["arn:aws:ec2:{region}:{account}:instance/*"]),
                perm("ec2:CreateVolume", &["arn:aws:ec2:{region}:{account}:volume/*", "arn:aws:ec2:{region}::snapshot/*"]),
                perm("ec2:DescribeVolumes", ANY),
                perm("ec2:AttachVolume", &["arn:aws:ec2:{region}:{account}:instance/*", "arn:aws:ec2:{region}:{account}:volume/*"]),
                perm("ec2:DetachVolume", &["arn:aws:ec2:{region}:{account}:instance/*", "arn:aws:ec2:{region}:{account}:volume/*"]),
                perm("ec2:DeleteVolume", &["arn:aws:ec2:{region}:{account}:volume/*"]),
                perm("ec2:CreateTags", &["arn:aws:ec2:{region}:{account}:vpc/*", "arn:aws:ec2:{region}:{account}:subnet/*", "arn:aws:ec2:{region}:{account}:route-table/*", "arn:aws:ec2:{region}:{account}:security-group/*", "arn:aws:ec2:{region}:{account}:vpc-endpoint/*", "arn:aws:ec2:{region}:{account}:vpc-flow-log/*", "arn:aws:ec2:{region}:{account}:instance/*", "arn:aws:ec2:{region}:{account}:network-interface/*", "arn:aws:ec2:{region}:{account}:volume/*"]),
                perm("iam:CreateRole", &["arn:aws:iam::{account}:role/irr/*"]),
                perm("iam:GetRole", &["arn:aws:iam::{account}:role/irr/*"]),
                perm("iam:TagRole", &["arn:aws:iam::{account}:role/irr/*"]),
                perm("iam:PutRolePolicy", &["arn:aws:iam::{account}:role/irr/*"]),
                perm("iam:GetRolePolicy", &["arn:aws:iam::{account}:role/irr/*"]),
                perm("iam:DeleteRolePolicy", &["arn:aws:iam::{account}:role/irr/*"]),
                perm("iam:DeleteRole", &["arn:aws:iam::{account}:role/irr/*"]),
                // The workstation's role to EC2, the flow logs' role to VPC flow logs.
                perm("iam:PassRole", &["arn:aws:iam::{account}:role/irr/*"]),
                perm("iam:CreateInstanceProfile", &["arn:aws:iam::{account}:instance-profile/irr/*"]),
                perm("iam:GetInstanceProfile", &["arn:aws:iam::{account}:instance-profile/irr/*"]),
                perm("iam:TagInstanceProfile", &["arn:aws:iam::{account}:instance-profile/irr/*"]),
                perm("iam:AddRoleToInstanceProfile", &["arn:aws:iam::{account}:instance-profile/irr/*"]),
                perm("iam:RemoveRoleFromInstanceProfile", &["arn:aws:iam::{account}:instance-profile/irr/*"]),
                perm("iam:DeleteInstanceProfile", &["arn:aws:iam::{account}:instance-profile/irr/*"]),
                // The flow log group (kept when the stack is deleted: DeletionPolicy Retain).
                perm("logs:CreateLogGroup", &["arn:aws:logs:{region}:{account}:log-group:*"]),
                perm("logs:PutRetentionPolicy", &["arn:aws:logs:{region}:{account}:log-group:*"]),
                perm("logs:TagResource", &["arn:aws:logs:{region}:{account}:log-group:*"]),
                perm("logs:DescribeLogGroups", &["arn:aws:logs:{region}:{account}:log-group:*"]),
                // Volumes restored from encrypted snapshots (default EBS encryption, customer keys).
                perm("kms:DescribeKey", &["arn:aws:kms:{region}:{account}:key/*"]),
                perm("kms:CreateGrant", &["arn:aws:kms:{region}:{account}:key/*"]),
                perm("kms:Decrypt", &["arn:aws:kms:{region}:{account}:key/*"]),
                perm("kms:GenerateDataKeyWithoutPlaintext", &["arn:aws:kms:{region}:{account}:key/*"]),
                perm("kms:ReEncryptFrom", &["arn:aws:kms:{region}:{account}:key/*"]),
                perm("kms:ReEncryptTo", &["arn:aws:kms:{region}:{account}:key/*"]),
            ],
            mutating: true,
            idempotency: "the case's stack of that name (irr:case tag) is reused when complete with the same parameter values; one left failed is deleted and created again; another case's stack, or the case's with other values, is refused; CreateStack carries a client request token",
            undo: Some("cloudformation.delete_stack"),
    };
    async fn run(ctx: &ActionCtx, params: DeployParams) -> Result<ActionOutput, ActionError> {
        deploy_stack(ctx, params).await
    }
}

/// `cloudformation.deploy_stack`: renders the template, creates the stack (or reuses this
/// case's stack of that name), waits until it is complete, and outputs `stack_id`,
/// `outputs` (OutputKey -> OutputValue), `stack_name` (as sanitised) and `reused`.
///
/// - A stack of that name not tagged with this case is refused (nothing is changed).
/// - This case's stack is reused when complete and created with the same parameter values;
///   with different values it is refused (delete it first, or choose another name); one left
///   failed by an earlier attempt is deleted and created again.
/// - On failure the failed resources' reasons (stack events) are reported in the error and
///   the stack is deleted (journaled): a failed clean room never stays behind.
/// - The stack is created with `TimeoutInMinutes` = `timeout`, so CloudFormation rolls it back
///   itself if this run stops waiting.
///
/// Evidence: `template.yaml`/`.json` (the rendered template), `stack-request.json`,
/// `stack-before.json` (a stack found under that name), `stack.json`, `stack-resources.json`,
/// `stack-events.json`.
pub async fn deploy_stack(ctx: &ActionCtx, p: DeployParams) -> Result<ActionOutput, ActionError> {
    let name = stack_name(&p.stack_name)?;
    let timeout = timeout_of(p.timeout.as_ref())?;
    let given = p.parameters.clone().unwrap_or_default();
    let capabilities = p.capabilities.clone().unwrap_or_default();

    let body = render_file(
        &ctx.playbook_dir,
        &p.template,
        &ctx.case_id,
        &ctx.run_id,
        &given,
    )?;
    let facts = template_facts(&body)?;
    if body.len() > MAX_TEMPLATE_BODY {
        return Err(ActionError::Params(format!(
            "the rendered template is {} bytes; CloudFormation takes at most {MAX_TEMPLATE_BODY} in a request",
            body.len()
        )));
    }
    let (cfn_params, render_only) = stack_parameters(&facts.parameters, &given);
    // NoEcho values are masked from here on: before the template, the request or any call
    // is recorded.
    mask_no_echo(ctx, &facts, &given);
    let tags = stack_tags(ctx, &p);
    let template_sha256 = sha256_hex(body.as_bytes());

    // What is about to be asked, before anything is changed.
    let template_path = ctx.recorder.artifact(
        &ctx.step_id,
        &format!("template.{}", facts.format),
        body.as_bytes(),
        &format!("file:{}", p.template),
    )?;
    ctx.evidence(
        "stack-request.json",
        &json!({
            "stack_name": name,
            "requested_stack_name": p.stack_name,
            "template": p.template,
            "rendered_template": template_path,
            "template_sha256": template_sha256,
            "resources": facts.resources,
            "parameters": cfn_params.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect::<Map<_, _>>(),
            "render_only_parameters": render_only,
            "capabilities": capabilities,
            "tags": tags.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect::<Map<_, _>>(),
            "timeout_seconds": timeout.as_secs(),
        }),
        "irr:cloudformation.deploy_stack",
    )?;

    let existing = case_stack(ctx, &name).await?;

    if ctx.dry_run {
        return dry_run(
            ctx,
            &name,
            &body,
            &facts,
            &cfn_params,
            &capabilities,
            existing,
        )
        .await;
    }

    let deadline = Instant::now() + timeout;
    let stack_id = reuse_or_replace(ctx, existing.as_ref(), &name, &cfn_params, timeout).await?;
    let reused = stack_id.is_some();

    let stack_id = match stack_id {
        Some(id) => id,
        None => {
            create(
                ctx,
                &name,
                &body,
                &template_sha256,
                &cfn_params,
                &capabilities,
                &tags,
                timeout,
            )
            .await?
        }
    };

    let settled = settle(ctx, &stack_id, deadline).await?;
    let Some(stack) = settled else {
        return Err(ActionError::Target(format!(
            "stack {name} ({stack_id}) disappeared while it was being created"
        )));
    };
    let st = status(&stack).to_owned();
    if in_progress(&st) {
        return Err(still_in_progress(ctx, &stack_id, &name, &st, reused, timeout).await?);
    }
    if !usable(&st) {
        return Err(fail_and_roll_back(ctx, &stack, &name, &st, None, timeout).await);
    }

    complete(ctx, &stack, &stack_id, name, &st, reused, &template_sha256).await
}

/// The stack's tags: the given ones (but `irr:case`/`irr:run`) and the run's.
fn stack_tags(ctx: &ActionCtx, p: &DeployParams) -> Vec<(String, String)> {
    let mut tags: Vec<(String, String)> = p
        .tags
        .clone()
        .unwrap_or_default()
        .iter()
        .filter(|(k, _)| k.as_str() != TAG_CASE && k.as_str() != TAG_RUN)
        .map(|(k, v)| (k.clone(), param_string(v)))
        .collect();
    tags.extend(ctx.run_tags());
    tags
}

/// A complete stack: recorded (the stack, its resources and events) and its outputs returned.
async fn complete(
    ctx: &ActionCtx,
    stack: &Stack,
    stack_id: &str,
    name: String,
    st: &str,
    reused: bool,
    template_sha256: &str,
) -> Result<ActionOutput, ActionError> {
    // Complete.
    ctx.evidence(
        "stack.json",
        &stack_json(stack),
        "cloudformation:DescribeStacks",
    )?;
    let resources = resources_json(ctx, stack_id).await?;
    ctx.evidence(
        "stack-resources.json",
        &json!({"stack_id": stack_id, "resources": resources}),
        "cloudformation:DescribeStackResources",
    )?;
    let not_created = not_created(&resources);
    gap_not_created(ctx, &not_created);
    let evs = events(ctx, stack_id).await?;
    ctx.evidence(
        "stack-events.json",
        &json!({"stack_id": stack_id, "events": evs.iter().map(event_json).collect::<Vec<_>>()}),
        "cloudformation:DescribeStackEvents",
    )?;
    record_stack(
        ctx,
        stack_id,
        &name,
        st,
        json!({"reused": reused, "template_sha256": template_sha256}),
    );
    Ok(ActionOutput::default()
        .with("stack_id", stack_id)
        .with("outputs", Value::Object(outputs_of(stack)))
        .with("stack_name", name)
        .with("reused", reused)
        .with("not_created", Value::Array(not_created)))
}

/// Masks the NoEcho parameter values from the run's writings (before anything is recorded).
fn mask_no_echo(ctx: &ActionCtx, facts: &TemplateFacts, given: &Map<String, Value>) {
    for v in no_echo_values(facts, given) {
        match &v {
            Value::String(s) => ctx.recorder.secret(s),
            Value::Array(items) => items
                .iter()
                .map(param_string_item)
                .for_each(|s| ctx.recorder.secret(&s)),
            other => ctx.recorder.secret(&other.to_string()),
        }
    }
}

/// The stack named `name`, recorded (`stack-before.json`) when there is one; refused when it is
/// not this case's.
async fn case_stack(ctx: &ActionCtx, name: &str) -> Result<Option<Stack>, ActionError> {
    let existing = describe(ctx, name).await?;
    if let Some(s) = &existing {
        ctx.evidence(
            "stack-before.json",
            &stack_json(s),
            "cloudformation:DescribeStacks",
        )?;
        let owner = tag_of(s, TAG_CASE);
        if owner != Some(ctx.case_id.as_str()) {
            return Err(ActionError::Target(format!(
                "a stack named {name} already exists ({}) and is not this case's ({TAG_CASE}={}): \
                 refusing to reuse or replace it; choose another stack_name",
                status(s),
                owner.unwrap_or("absent")
            )));
        }
    }
    Ok(existing)
}

/// The id of the case's stack to reuse (complete or in progress, with the same parameters);
/// a failed earlier attempt is deleted first (then `None`: create it again).
async fn reuse_or_replace(
    ctx: &ActionCtx,
    existing: Option<&Stack>,
    name: &str,
    cfn_params: &[(String, String)],
    timeout: Duration,
) -> Result<Option<String>, ActionError> {
    let mut stack_id = None;
    if let Some(s) = existing {
        let id = s.stack_id().unwrap_or(name).to_owned();
        let st = status(s).to_owned();
        if usable(&st) || in_progress(&st) {
            let differ = differing_parameters(s, cfn_params);
            if !differ.is_empty() {
                return Err(ActionError::Target(format!(
                    "stack {name} of this case exists ({st}) with other parameter values ({}): \
                     it is not reused; delete it first (cloudformation.delete_stack) or choose \
                     another stack_name",
                    differ.join("; ")
                )));
            }
            stack_id = Some(id);
        } else {
            // A failed earlier attempt (ROLLBACK_COMPLETE, CREATE_FAILED, DELETE_FAILED, ...):
            // it cannot be updated; delete it and create the stack again.
            delete_and_wait(
                ctx,
                &id,
                name,
                &format!("replace a failed earlier attempt ({st})"),
                timeout,
            )
            .await?;
        }
    }
    Ok(stack_id)
}

/// The error for a stack still in progress when the wait ended, after recording it and its
/// events.
async fn still_in_progress(
    ctx: &ActionCtx,
    stack_id: &str,
    name: &str,
    st: &str,
    reused: bool,
    timeout: Duration,
) -> Result<ActionError, ActionError> {
    record_stack(ctx, stack_id, name, st, json!({"reused": reused}));
    let evs = events(ctx, stack_id).await.unwrap_or_default();
    ctx.evidence(
        "stack-events.json",
        &json!({"stack_id": stack_id, "events": evs.iter().map(event_json).collect::<Vec<_>>()}),
        "cloudformation:DescribeStackEvents",
    )?;
    Ok(ActionError::Target(format!(
        "stack {name} is still {st} after {}s; CloudFormation rolls it back itself when its \
         own timeout ({} min) passes; running the step again reuses or replaces it",
        timeout.as_secs(),
        timeout_minutes(timeout)
    )))
}

/// A gap per resource the stack reports complete but did not create ([`not_created`]).
fn gap_not_created(ctx: &ActionCtx, not_created: &[Value]) {
    for r in not_created {
        ctx.gap(
            &format!(
                "cloudformation:{} ({}) not created",
                r["logical_resource_id"].as_str().unwrap_or("?"),
                r["resource_type"].as_str().unwrap_or("?")
            ),
            &ActionError::Target(format!(
                "the stack reports it {} with no physical resource ({}): this CloudFormation did not create it, and the clean room lacks it",
                r["status"].as_str().unwrap_or("?"),
                r["physical_resource_id"]
            )),
        );
    }
}

/// The resources (of [`resources_json`]) a stack reports complete without a physical
/// resource: LocalStack's CloudFormation marks the types it does not implement (community
/// edition: `AWS::EC2::Volume`, `AWS::EC2::VolumeAttachment`) `CREATE_COMPLETE` with the
/// physical id `unknown`. On AWS every created resource has its id; such a resource does not
/// exist, and the run says so (a gap per resource, the `not_created` output).
pub(super) fn not_created(resources: &Value) -> Vec<Value> {
    resources
        .as_array()
        .map(|rs| {
            rs.iter()
                .filter(|r| {
                    let complete = r["status"]
                        .as_str()
                        .is_some_and(|s| s.ends_with("_COMPLETE") && !s.starts_with("DELETE"));
                    let id = r["physical_resource_id"].as_str().unwrap_or("");
                    complete && (id.is_empty() || id == "unknown")
                })
                .map(|r| {
                    json!({
                        "logical_resource_id": r["logical_resource_id"],
                        "resource_type": r["resource_type"],
                        "status": r["status"],
                        "physical_resource_id": r["physical_resource_id"],
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn timeout_minutes(timeout: Duration) -> i32 {
    timeout.as_secs().div_ceil(60).clamp(1, i32::MAX as u64) as i32
}

/// Parameter values of the existing stack that differ from the ones to pass
/// (`Key: was -> now`). NoEcho values (`****`) are not compared.
pub(super) fn differing_parameters(s: &Stack, pass: &[(String, String)]) -> Vec<String> {
    pass.iter()
        .filter_map(|(k, v)| {
            let was = s
                .parameters()
                .iter()
                .find(|p| p.parameter_key() == Some(k.as_str()))
                .and_then(|p| p.parameter_value());
            match was {
                Some("****") => None,
                Some(w) if normalise_list(w) == normalise_list(v) => None,
                Some(w) => Some(format!("{k}: {w} -> {v}")),
                None => Some(format!("{k}: not set -> {v}")),
            }
        })
        .collect()
}

/// A parameter value for comparison. The emulator echoes a `CommaDelimitedList` as a Python
/// list (`['a', 'b']`); AWS as the comma-joined text (`a,b`).
pub(super) fn normalise_list(v: &str) -> String {
    let t = v.trim();
    match t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        Some(inner) => inner
            .split(',')
            .map(|i| i.trim().trim_matches(['\'', '"']))
            .collect::<Vec<_>>()
            .join(","),
        None => t.split(',').map(str::trim).collect::<Vec<_>>().join(","),
    }
}

/// Creates the stack (journaled; transient errors retried with the same client request
/// token, which makes the retry idempotent in AWS). Returns its id.
///
/// A `CreateStack` that fails after leaving a stack behind (the emulator builds resources
/// inside the call, and on a bad property answers the error but keeps the stack record in
/// `CREATE_IN_PROGRESS` forever) has that stack's events reported and the stack deleted.
#[allow(clippy::too_many_arguments)]
pub(super) async fn create(
    ctx: &ActionCtx,
    name: &str,
    body: &str,
    template_sha256: &str,
    cfn_params: &[(String, String)],
    capabilities: &[String],
    tags: &[(String, String)],
    timeout: Duration,
) -> Result<String, ActionError> {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let token = format!(
        "irr-{}",
        &sha256_hex(
            format!(
                "{}/{}/{}/{name}/{template_sha256}/{nonce}",
                ctx.case_id, ctx.run_id, ctx.step_id
            )
            .as_bytes()
        )[..40]
    );
    let journal = json!({
        "stack_name": name,
        "template_sha256": template_sha256,
        "parameters": cfn_params.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect::<Map<_, _>>(),
        "capabilities": capabilities,
        "tags": tags.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect::<Map<_, _>>(),
        "timeout_in_minutes": timeout_minutes(timeout),
        "on_failure": "ROLLBACK",
        "client_request_token": token,
    });
    let created = retry_transient(
        || {
            let req = ctx
                .aws
                .cloudformation
                .create_stack()
                .stack_name(name)
                .template_body(body)
                .set_parameters(Some(
                    cfn_params
                        .iter()
                        .map(|(k, v)| {
                            Parameter::builder()
                                .parameter_key(k)
                                .parameter_value(v)
                                .build()
                        })
                        .collect(),
                ))
                .set_capabilities(Some(
                    capabilities
                        .iter()
                        .map(|c| Capability::from(c.as_str()))
                        .collect(),
                ))
                .set_tags(Some(
                    tags.iter()
                        .map(|(k, v)| Tag::builder().key(k).value(v).build())
                        .collect(),
                ))
                .timeout_in_minutes(timeout_minutes(timeout))
                .on_failure(OnFailure::Rollback)
                .client_request_token(&token)
                // Retries are ours (same token); the SDK's own would turn an emulator's 500
                // after a half-built stack into a misleading AlreadyExistsException.
                .customize()
                .config_override(
                    aws_sdk_cloudformation::config::Builder::default().retry_config(
                        aws_sdk_cloudformation::config::retry::RetryConfig::disabled(),
                    ),
                )
                .send();
            ctx.mutating(
                "cloudformation",
                "CreateStack",
                journal.clone(),
                req,
                |o: &aws_sdk_cloudformation::operation::create_stack::CreateStackOutput| {
                    json!({"stack_id": o.stack_id()})
                },
            )
        },
        create_retryable,
    )
    .await;
    match created {
        Ok(out) => {
            let id = out.stack_id().unwrap_or(name).to_owned();
            record_stack(ctx, &id, name, "CREATE_IN_PROGRESS", json!({}));
            Ok(id)
        }
        Err(e) => {
            // Did the failed call leave a stack of this case behind?
            let left = match describe(ctx, name).await {
                Ok(s) => s.filter(|s| {
                    tag_of(s, TAG_CASE) == Some(ctx.case_id.as_str())
                        && tag_of(s, TAG_RUN) == Some(ctx.run_id.as_str())
                        && status(s) != "DELETE_COMPLETE"
                }),
                // The emulator cannot describe some half-built stacks (its DescribeStacks
                // answers 500 when an output refers to a resource it never built). Say so:
                // the stack may remain, and the next attempt will meet it.
                Err(d) => {
                    return Err(with_note(
                        e,
                        &format!(
                            "could not check whether the failed call left stack {name} behind ({d})"
                        ),
                    ))
                }
            };
            match left {
                None => Err(e),
                Some(s) => {
                    let st = status(&s).to_owned();
                    Err(fail_and_roll_back(ctx, &s, name, &st, Some(e), timeout).await)
                }
            }
        }
    }
}

/// Appends a note to an error's message, keeping its kind and AWS code.
pub(super) fn with_note(e: ActionError, note: &str) -> ActionError {
    match e {
        ActionError::Aws {
            service,
            operation,
            code,
            message,
            request_id,
        } => ActionError::Aws {
            service,
            operation,
            code,
            message: format!("{message}; {note}"),
            request_id,
        },
        ActionError::Target(m) => ActionError::Target(format!("{m}; {note}")),
        other => other,
    }
}

/// A stack that failed: records its events, deletes it (journaled), and builds the error
/// naming the failed resources' reasons (and the `CreateStack` error, if the call failed).
pub(super) async fn fail_and_roll_back(
    ctx: &ActionCtx,
    stack: &Stack,
    name: &str,
    st: &str,
    call_error: Option<ActionError>,
    timeout: Duration,
) -> ActionError {
    let stack_id = stack.stack_id().unwrap_or(name).to_owned();
    let evs = events(ctx, &stack_id).await.unwrap_or_default();
    let mut reasons = failure_reasons(&evs, name);
    if let Some(r) = stack.stack_status_reason().filter(|r| !r.is_empty()) {
        if reasons.is_empty() {
            reasons.push(format!("{name} (AWS::CloudFormation::Stack): {r}"));
        }
    }
    let _ = ctx.evidence(
        "stack.json",
        &stack_json(stack),
        "cloudformation:DescribeStacks",
    );
    let _ = ctx.evidence(
        "stack-events.json",
        &json!({"stack_id": stack_id, "events": evs.iter().map(event_json).collect::<Vec<_>>()}),
        "cloudformation:DescribeStackEvents",
    );
    if let Ok(res) = resources_json(ctx, &stack_id).await {
        let _ = ctx.evidence(
            "stack-resources-before.json",
            &json!({"stack_id": stack_id, "resources": res}),
            "cloudformation:DescribeStackResources",
        );
    }
    let cause = match &call_error {
        Some(e) => format!(
            "CreateStack failed: {e}; stack events: {}",
            reasons_text(&reasons)
        ),
        None => format!("failed resources: {}", reasons_text(&reasons)),
    };
    let rollback = delete_and_wait(ctx, &stack_id, name, "roll back a failed stack", timeout).await;
    let after = match &rollback {
        Ok(()) => "the failed stack was deleted".to_owned(),
        Err(e) => format!("deleting the failed stack failed too: {e}"),
    };
    record_stack(
        ctx,
        &stack_id,
        name,
        if rollback.is_ok() {
            "DELETE_COMPLETE"
        } else {
            st
        },
        json!({"failed_status": st}),
    );
    let message = format!("stack {name} failed ({st}): {cause}; {after}");
    match call_error {
        Some(ActionError::Aws {
            service,
            operation,
            code,
            request_id,
            ..
        }) => ActionError::Aws {
            service,
            operation,
            code,
            message,
            request_id,
        },
        _ => ActionError::Target(message),
    }
}

/// The dry run of `deploy_stack`: `ValidateTemplate` (journaled as the stand-in for
/// `CreateStack`), capability and parameter checks, and what would be done.
pub(super) async fn dry_run(
    ctx: &ActionCtx,
    name: &str,
    body: &str,
    facts: &TemplateFacts,
    cfn_params: &[(String, String)],
    capabilities: &[String],
    existing: Option<Stack>,
) -> Result<ActionOutput, ActionError> {
    let v = ctx
        .mutating(
            "cloudformation",
            "ValidateTemplate",
            json!({"dry_run": true, "stack_name": name, "template_sha256": sha256_hex(body.as_bytes())}),
            ctx.aws
                .cloudformation
                .validate_template()
                .template_body(body)
                .send(),
            |o: &aws_sdk_cloudformation::operation::validate_template::ValidateTemplateOutput| {
                json!({"capabilities": o.capabilities().iter().map(|c| c.as_str()).collect::<Vec<_>>()})
            },
        )
        .await?;
    let needed: Vec<&str> = v.capabilities().iter().map(|c| c.as_str()).collect();
    let missing_caps: Vec<&str> = needed
        .iter()
        .copied()
        .filter(|c| !capabilities.iter().any(|g| g == c))
        .collect();
    let missing_params: Vec<&str> = v
        .parameters()
        .iter()
        .filter(|tp| tp.default_value().is_none())
        .filter_map(|tp| tp.parameter_key())
        .filter(|k| !cfn_params.iter().any(|(p, _)| p == k))
        .collect();
    ctx.evidence(
        "validate-template.json",
        &json!({
            "description": v.description(),
            "capabilities": needed,
            "capabilities_reason": v.capabilities_reason(),
            "parameters": v.parameters().iter().map(|tp| json!({
                "key": tp.parameter_key(), "default": tp.default_value(),
                "no_echo": tp.no_echo(), "description": tp.description(),
            })).collect::<Vec<_>>(),
            "missing_capabilities": missing_caps,
            "missing_parameters": missing_params,
        }),
        "cloudformation:ValidateTemplate",
    )?;
    if !missing_caps.is_empty() {
        return Err(ActionError::Params(format!(
            "the template needs capabilities {} ({}); add them to `capabilities`",
            missing_caps.join(", "),
            v.capabilities_reason().unwrap_or("IAM resources")
        )));
    }
    if !missing_params.is_empty() {
        return Err(ActionError::Params(format!(
            "the template's parameters {} have no default and are not given",
            missing_params.join(", ")
        )));
    }
    let (would, stack_id, outputs) = match &existing {
        Some(s) if usable(status(s)) || in_progress(status(s)) => {
            let differ = differing_parameters(s, cfn_params);
            let what = if differ.is_empty() {
                format!("reuse stack {name} ({})", status(s))
            } else {
                format!(
                    "refuse: stack {name} exists with other parameter values ({})",
                    differ.join("; ")
                )
            };
            (
                what,
                s.stack_id().unwrap_or_default().to_owned(),
                outputs_of(s),
            )
        }
        Some(s) => (
            format!(
                "cloudformation:DeleteStack {name} (failed earlier attempt, {}), then cloudformation:CreateStack {name} ({} resources)",
                status(s),
                facts.resources
            ),
            String::new(),
            Map::new(),
        ),
        None => (
            format!(
                "cloudformation:CreateStack {name} ({} resources) and wait",
                facts.resources
            ),
            String::new(),
            Map::new(),
        ),
    };
    Ok(ActionOutput::default()
        .with("stack_id", stack_id)
        .with("outputs", Value::Object(outputs))
        .with("stack_name", name)
        .with("reused", existing.is_some())
        .with("would", vec![would]))
}
