//! `cloudformation.delete_stack`: delete the case's stack and wait.

use super::*;

/// Parameters of `cloudformation.delete_stack`.
///
/// Each field's doc comment is the parameter's description in the catalog.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteParams {
    /// the stack; characters outside [A-Za-z0-9-] become `-`
    // Sanitised with `stack_name`.
    pub stack_name: String,
    /// how long to wait for the deletion
    // `30m`, or seconds.
    #[schemars(extend("x-irr-type" = "duration", "default" = "30m"))]
    pub timeout: Option<Value>,
}

/// `cloudformation.delete_stack`: its declaration (see [`Action`]); the parameters are [`DeleteParams`].
pub struct DeleteStack;

impl Action for DeleteStack {
    type Params = DeleteParams;
    const DECLARATION: Declaration = Declaration {
        name: "cloudformation.delete_stack",
        summary: "delete the case's stack and wait; a stack already gone counts as deleted",
        exactly_one_of: &[],
        outputs: &[
            out(
                "stack_id",
                TypeSpec::String,
                "the deleted stack's id (empty when there was none)",
            ),
            out(
                "deleted",
                TypeSpec::Boolean,
                "false when the stack was already gone",
            ),
        ],
        api_calls: &[
            "cloudformation:DescribeStacks",
            "cloudformation:DescribeStackResources",
            "cloudformation:DeleteStack",
            "cloudformation:DescribeStackEvents",
        ],
        permissions: &[
            perm("cloudformation:DescribeStacks", STACK),
            perm("cloudformation:DescribeStackResources", STACK),
            perm("cloudformation:DeleteStack", STACK),
            perm("cloudformation:DescribeStackEvents", STACK),
            // CloudFormation deletes the template's resources with the caller's credentials.
            // These depend on the template: they cover the shipped clean room
            // (playbooks/templates/forensic-clean-room.yaml).
            perm("ec2:DescribeVpcs", ANY),
            perm("ec2:DeleteVpc", &["arn:aws:ec2:{region}:{account}:vpc/*"]),
            perm("ec2:DescribeSubnets", ANY),
            perm(
                "ec2:DeleteSubnet",
                &["arn:aws:ec2:{region}:{account}:subnet/*"],
            ),
            perm("ec2:DescribeRouteTables", ANY),
            perm(
                "ec2:DisassociateRouteTable",
                &[
                    "arn:aws:ec2:{region}:{account}:route-table/*",
                    "arn:aws:ec2:{region}:{account}:subnet/*",
                ],
            ),
            perm(
                "ec2:DeleteRouteTable",
                &["arn:aws:ec2:{region}:{account}:route-table/*"],
            ),
            perm("ec2:DescribeVpcEndpoints", ANY),
            perm(
                "ec2:DeleteVpcEndpoints",
                &["arn:aws:ec2:{region}:{account}:vpc-endpoint/*"],
            ),
            perm("ec2:DescribeSecurityGroups", ANY),
            perm(
                "ec2:DeleteSecurityGroup",
                &["arn:aws:ec2:{region}:{account}:security-group/*"],
            ),
            perm("ec2:DescribeFlowLogs", ANY),
            perm(
                "ec2:DeleteFlowLogs",
                &["arn:aws:ec2:{region}:{account}:vpc-flow-log/*"],
            ),
            perm("ec2:DescribeInstances", ANY),
            perm(
                "ec2:TerminateInstances",
                &["arn:aws:ec2:{region}:{account}:instance/*"],
            ),
            perm("ec2:DescribeVolumes", ANY),
            perm(
                "ec2:DetachVolume",
                &[
                    "arn:aws:ec2:{region}:{account}:instance/*",
                    "arn:aws:ec2:{region}:{account}:volume/*",
                ],
            ),
            perm(
                "ec2:DeleteVolume",
                &["arn:aws:ec2:{region}:{account}:volume/*"],
            ),
            perm("iam:GetRole", &["arn:aws:iam::{account}:role/irr/*"]),
            perm(
                "iam:DeleteRolePolicy",
                &["arn:aws:iam::{account}:role/irr/*"],
            ),
            perm("iam:DeleteRole", &["arn:aws:iam::{account}:role/irr/*"]),
            perm(
                "iam:GetInstanceProfile",
                &["arn:aws:iam::{account}:instance-profile/irr/*"],
            ),
            perm(
                "iam:RemoveRoleFromInstanceProfile",
                &["arn:aws:iam::{account}:instance-profile/irr/*"],
            ),
            perm(
                "iam:DeleteInstanceProfile",
                &["arn:aws:iam::{account}:instance-profile/irr/*"],
            ),
        ],
        mutating: true,
        idempotency: "a stack already gone counts as deleted; another case's stack is refused",
        undo: None,
    };
    async fn run(ctx: &ActionCtx, params: DeleteParams) -> Result<ActionOutput, ActionError> {
        delete_stack(ctx, params).await
    }
}

/// `cloudformation.delete_stack`: deletes this case's stack of that name and waits until it is
/// gone. A stack that does not exist counts as deleted (`deleted: false`). A stack not tagged
/// with this case is refused. Records the stack and its resources first
/// (`stack-before.json`, `stack-resources-before.json`). Outputs `stack_id` (empty when
/// there was none) and `deleted`.
pub async fn delete_stack(ctx: &ActionCtx, p: DeleteParams) -> Result<ActionOutput, ActionError> {
    let name = stack_name(&p.stack_name)?;
    let timeout = timeout_of(p.timeout.as_ref())?;
    let Some(stack) = describe(ctx, &name).await? else {
        ctx.evidence(
            "stack-before.json",
            &json!({"stack_name": name, "present": false}),
            "cloudformation:DescribeStacks",
        )?;
        return Ok(ActionOutput::default()
            .with("stack_id", "")
            .with("deleted", false));
    };
    let stack_id = stack.stack_id().unwrap_or(name.as_str()).to_owned();
    let mut before = stack_json(&stack);
    before["present"] = Value::Bool(true);
    ctx.evidence(
        "stack-before.json",
        &before,
        "cloudformation:DescribeStacks",
    )?;
    let owner = tag_of(&stack, TAG_CASE);
    if owner != Some(ctx.case_id.as_str()) {
        return Err(ActionError::Target(format!(
            "stack {name} is not this case's ({TAG_CASE}={}): refusing to delete it",
            owner.unwrap_or("absent")
        )));
    }
    let resources = resources_json(ctx, &stack_id).await?;
    ctx.evidence(
        "stack-resources-before.json",
        &json!({"stack_id": stack_id, "resources": resources}),
        "cloudformation:DescribeStackResources",
    )?;
    if ctx.dry_run {
        return Ok(ActionOutput::default()
            .with("stack_id", stack_id)
            .with("deleted", false)
            .with(
                "would",
                vec![format!(
                    "cloudformation:DeleteStack {name} ({}, {} resources) and wait",
                    status(&stack),
                    resources.as_array().map_or(0, Vec::len)
                )],
            ));
    }
    let result = delete_and_wait(ctx, &stack_id, &name, "delete_stack", timeout).await;
    record_stack(
        ctx,
        &stack_id,
        &name,
        if result.is_ok() {
            "DELETE_COMPLETE"
        } else {
            "DELETE_FAILED"
        },
        json!({}),
    );
    result?;
    Ok(ActionOutput::default()
        .with("stack_id", stack_id)
        .with("deleted", true))
}
