//! `ec2.capture_instance_metadata`: record the instance and everything around it.

use super::*;

/// `ec2.capture_instance_metadata`: its declaration (see [`Action`]); the parameters are [`InstanceParams`].
pub struct CaptureInstanceMetadata;

impl Action for CaptureInstanceMetadata {
    type Params = InstanceParams;
    const DECLARATION: Declaration = Declaration {
            name: "ec2.capture_instance_metadata",
            summary: "record the instance, its volumes, network interfaces, security groups with rules, instance profile, tags and console output",
            exactly_one_of: &[],
            outputs: &[ARTIFACTS],
            api_calls: &["ec2:DescribeInstances", "ec2:DescribeVolumes", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSecurityGroups", "ec2:DescribeIamInstanceProfileAssociations", "iam:GetInstanceProfile", "autoscaling:DescribeAutoScalingInstances", "ec2:GetConsoleOutput"],
            permissions: &[
                perm("ec2:DescribeInstances", ANY),
                perm("ec2:DescribeVolumes", ANY),
                perm("ec2:DescribeNetworkInterfaces", ANY),
                perm("ec2:DescribeSecurityGroups", ANY),
                perm("ec2:DescribeIamInstanceProfileAssociations", ANY),
                // The profile's roles; a denial is recorded in the artifact, not fatal.
                perm("iam:GetInstanceProfile", INSTANCE_PROFILE),
                perm("autoscaling:DescribeAutoScalingInstances", ANY),
                // A denial is recorded in console-output.txt, not fatal.
                perm("ec2:GetConsoleOutput", INSTANCE),
            ],
            mutating: false,
            idempotency: "read-only",
            undo: None,
    };
    async fn run(ctx: &ActionCtx, params: InstanceParams) -> Result<ActionOutput, ActionError> {
        capture_instance_metadata(ctx, params).await
    }
}

/// `ec2.capture_instance_metadata`: records the instance, its volumes, network interfaces,
/// security groups with their rules, instance profile (and its roles), Auto Scaling membership,
/// tags and console output, one artifact each. Output `artifacts`. Read-only.
pub async fn capture_instance_metadata(
    ctx: &ActionCtx,
    p: InstanceParams,
) -> Result<ActionOutput, ActionError> {
    let id = p.instance_id.as_str();
    // The instance itself is the one read the capture cannot do without. Every other read
    // is optional: one that fails is a gap in the evidence (ActionCtx::or_gap) and the
    // capture goes on, so that a denied read never holds up the containment after it.
    let inst = describe_instance(ctx, id).await?;
    let mut artifacts = vec![ctx.evidence(
        "instance.json",
        &instance_json(&inst),
        "ec2:DescribeInstances",
    )?];
    artifacts.push(ctx.evidence(
        "tags.json",
        &json!({"instance_id": id, "tags": tags_json(inst.tags())}),
        "ec2:DescribeInstances",
    )?);

    let volumes = instance_volumes(ctx, id).await;
    let volumes = ctx.or_gap("ec2:DescribeVolumes", volumes);
    artifacts.push(ctx.evidence(
        "volumes.json",
        &json!({"instance_id": id, "captured": volumes.is_some(), "volumes": volumes.map(|v| v.iter().map(volume_json).collect::<Vec<_>>())}),
        "ec2:DescribeVolumes",
    )?);

    let enis = ctx.or_gap(
        "ec2:DescribeNetworkInterfaces",
        instance_enis(ctx, id).await,
    );
    artifacts.push(ctx.evidence(
        "network-interfaces.json",
        &json!({"instance_id": id, "captured": enis.is_some(), "network_interfaces": enis.as_ref().map(|e| e.iter().map(eni_json).collect::<Vec<_>>())}),
        "ec2:DescribeNetworkInterfaces",
    )?);

    let group_ids: BTreeSet<String> = enis
        .iter()
        .flatten()
        .flat_map(|n| n.groups())
        .chain(inst.security_groups())
        .filter_map(|g| g.group_id().map(str::to_owned))
        .collect();
    let groups = if group_ids.is_empty() {
        Some(Vec::new())
    } else {
        ctx.or_gap(
            "ec2:DescribeSecurityGroups",
            describe_groups(ctx, vec![filter("group-id", group_ids)]).await,
        )
    };
    artifacts.push(ctx.evidence(
        "security-groups.json",
        &json!({"instance_id": id, "captured": groups.is_some(), "security_groups": groups.map(|g| g.iter().map(group_json).collect::<Vec<_>>())}),
        "ec2:DescribeSecurityGroups",
    )?);

    artifacts.push(profile_artifact(ctx, id).await?);
    let asg = ctx.or_gap(
        "autoscaling:DescribeAutoScalingInstances",
        autoscaling_membership(ctx, id).await,
    );
    artifacts.push(ctx.evidence(
        "autoscaling.json",
        &json!({
            "instance_id": id,
            "captured": asg.is_some(),
            "auto_scaling_group": asg.flatten().as_ref().map(|(g, s)| json!({"name": g, "lifecycle_state": s})),
            "auto_scaling_group_tag": tag_value(inst.tags(), ASG_NAME_TAG),
        }),
        "autoscaling:DescribeAutoScalingInstances",
    )?);

    artifacts.push(console_artifact(ctx, id).await?);
    Ok(ActionOutput::default().with("artifacts", artifacts))
}

/// Records the console output (`console-output.txt`); returns its path.
async fn console_artifact(ctx: &ActionCtx, id: &str) -> Result<String, ActionError> {
    let ec2 = &ctx.aws.ec2;
    // The console output is evidence but not essential (some instance types have none).
    let console = ec2
        .get_console_output()
        .instance_id(id)
        .send()
        .await
        .map_err(read_err("ec2", "GetConsoleOutput"));
    let console = match console {
        Ok(o) => {
            use base64::Engine as _;
            let raw = o.output().unwrap_or_default();
            let text = base64::engine::general_purpose::STANDARD
                .decode(raw.trim())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_else(|_| raw.to_owned());
            format!(
                "# instance {id}, console output at {}\n{text}",
                ts(o.timestamp())
            )
        }
        Err(e) => {
            ctx.gap("ec2:GetConsoleOutput", &e);
            format!("# instance {id}: no console output: {e}")
        }
    };
    ctx.recorder.artifact(
        &ctx.step_id,
        "console-output.txt",
        console.as_bytes(),
        "ec2:GetConsoleOutput",
    )
}

/// Records the instance profile associations and their roles (`instance-profile.json`);
/// returns its path.
async fn profile_artifact(ctx: &ActionCtx, id: &str) -> Result<String, ActionError> {
    let assocs = ctx.or_gap(
        "ec2:DescribeIamInstanceProfileAssociations",
        profile_associations(ctx, id).await,
    );
    let mut profiles = Vec::new();
    for a in assocs.iter().flatten() {
        let arn = a
            .iam_instance_profile()
            .and_then(|p| p.arn())
            .unwrap_or_default();
        // arn:aws:iam::ACCOUNT:instance-profile/PATH/NAME: the name is the last segment.
        let name = arn.rsplit('/').next().unwrap_or_default();
        // The roles matter (they are what iam.revoke_sessions needs) but a denied lookup
        // must not lose the rest of the capture: a gap.
        let got = ctx
            .aws
            .iam
            .get_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
            .map_err(read_err("iam", "GetInstanceProfile"));
        let roles = match got {
            Err(e) => {
                ctx.gap("iam:GetInstanceProfile", &e);
                json!({"error": e.to_string()})
            }
            Ok(o) => json!(o
                .instance_profile()
                .map(|p| {
                    p.roles()
                        .iter()
                        .map(|r| json!({"role_name": r.role_name(), "arn": r.arn()}))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()),
        };
        profiles.push(
            json!({"association": assoc_json(a), "instance_profile_name": name, "roles": roles}),
        );
    }
    ctx.evidence(
        "instance-profile.json",
        &json!({"instance_id": id, "captured": assocs.is_some(), "associations": profiles}),
        "ec2:DescribeIamInstanceProfileAssociations",
    )
}

// ---- ec2.protect_instance -------------------------------------------------------------------
