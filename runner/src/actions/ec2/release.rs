//! `ec2.release_instance`: undo the isolation from what was recorded.

use super::*;
use crate::actions::record::Originals;

/// `ec2.release_instance`: its declaration (see [`Action`]); the parameters are [`InstanceParams`].
pub struct ReleaseInstance;

impl Action for ReleaseInstance {
    type Params = InstanceParams;
    const DECLARATION: Declaration = Declaration {
            name: "ec2.release_instance",
            summary: "restore the recorded security groups on every interface and the instance profile (drills, false positives)",
            exactly_one_of: &[],
            outputs: &[],
            api_calls: &["ec2:DescribeInstances", "ec2:DescribeNetworkInterfaces", "ec2:DescribeIamInstanceProfileAssociations", "ec2:ModifyNetworkInterfaceAttribute", "ec2:DeleteTags", "ec2:AssociateIamInstanceProfile", "autoscaling:DescribeAutoScalingInstances", "autoscaling:AttachInstances"],
            permissions: &[
                perm("ec2:DescribeInstances", ANY),
                perm("ec2:DescribeNetworkInterfaces", ANY),
                perm("ec2:DescribeIamInstanceProfileAssociations", ANY),
                // Only for an instance isolate_instance took out of an Auto Scaling group.
                perm("autoscaling:DescribeAutoScalingInstances", ANY),
                perm("autoscaling:AttachInstances", AUTOSCALING_GROUP),
                perm("ec2:ModifyNetworkInterfaceAttribute", &["arn:aws:ec2:{region}:{account}:network-interface/*", "arn:aws:ec2:{region}:{account}:security-group/*"]),
                perm("ec2:AssociateIamInstanceProfile", INSTANCE),
                // Re-attaching the recorded instance profile passes its role to EC2, and only
                // to EC2.
                pass_role_to(&["arn:aws:iam::{account}:role/*"], "ec2.amazonaws.com"),
                perm("ec2:DeleteTags", &["arn:aws:ec2:{region}:{account}:network-interface/*", "arn:aws:ec2:{region}:{account}:instance/{instance_id}"]),
            ],
            mutating: true,
            idempotency: "an interface without a recorded original is left as it is",
            undo: Some("ec2.isolate_instance"),
    };
    async fn run(ctx: &ActionCtx, params: InstanceParams) -> Result<ActionOutput, ActionError> {
        release_instance(ctx, params).await
    }
}

/// `ec2.release_instance`: undoes `ec2.isolate_instance` from the case's own record (the
/// isolation artifacts of this run and of the case's sealed runs, each checked against the
/// hash recorded when it was captured: `actions::record`), never from AWS tags, which anyone
/// with `ec2:CreateTags` on the instance can rewrite. Each interface still in irr's groups
/// gets back its recorded groups, the recorded instance profile is associated again, the
/// instance rejoins the recorded Auto Scaling group; the `irr:original-*` tags are hints only:
/// where they disagree with the record, the record wins and the difference is reported
/// (output `tag_differences`, the evidence). With no verifiable record it refuses and changes
/// nothing. For drills and false positives. Outputs `restored_groups` (interface id -> group
/// ids), `instance_profile_arn`, `auto_scaling_group`. Idempotent: an interface no longer in
/// irr's groups is left as it is. irr's security groups are left in place (other instances of
/// the case may use them).
pub async fn release_instance(
    ctx: &ActionCtx,
    p: InstanceParams,
) -> Result<ActionOutput, ActionError> {
    let id = p.instance_id.as_str();
    let inst = describe_instance(ctx, id).await?;
    let enis = instance_enis(ctx, id).await?;
    let assocs = profile_associations(ctx, id).await?;
    let record = crate::actions::record::isolation_record(ctx, id).await;
    if !record.problems.is_empty() {
        return Err(ActionError::Target(format!(
            "refusing to release {id}: the case's record of its isolation cannot be verified ({}); nothing was changed",
            record.problems.join("; ")
        )));
    }
    if record.entries.is_empty() {
        return Err(ActionError::Target(format!(
            "refusing to release {id}: case {} holds no verifiable record of its isolation (looked in this run's artifacts and the case's sealed runs{}); the {TAG_ORIGINAL_GROUPS} / {TAG_ORIGINAL_PROFILE} tags are not trusted (anyone with ec2:CreateTags can write them); nothing was changed",
            ctx.case_id,
            ctx.recorder
                .evidence_location()
                .map(|l| format!(" in {l}"))
                .unwrap_or_default()
        )));
    }
    let rec = record.originals();
    let case_groups = match inst.vpc_id() {
        Some(vpc) => {
            describe_groups(
                ctx,
                vec![
                    filter("vpc-id", [vpc]),
                    filter(&format!("tag:{TAG_CASE}"), [ctx.case_id.as_str()]),
                ],
            )
            .await?
        }
        None => Vec::new(),
    };
    let ours: BTreeSet<&str> = case_groups
        .iter()
        .filter_map(|g| g.group_id())
        .chain(rec.irr_groups.iter().map(String::as_str))
        .collect();
    let before = ctx.evidence(
        "release-before.json",
        &json!({
            "instance_id": id,
            "network_interfaces": enis.iter().map(eni_json).collect::<Vec<_>>(),
            "instance_profile_associations": assocs.iter().map(assoc_json).collect::<Vec<_>>(),
            "instance_tags": tags_json(inst.tags()),
            "record": record.origins(),
            "recorded": {
                "original_groups": rec.groups,
                "instance_profile_arn": rec.profile,
                "auto_scaling_group": rec.auto_scaling_group,
            },
        }),
        "ec2:DescribeNetworkInterfaces",
    )?;
    let mut restored = Map::new();
    let mut report = Report::default();
    restore_groups(ctx, &enis, &rec, &ours, &mut restored, &mut report).await?;

    let profile = restore_profile(ctx, id, &inst, &assocs, &rec, &mut report).await?;

    let asg = restore_asg(ctx, id, &inst, &rec, &mut report).await?;
    let after = ctx.evidence(
        "release.json",
        &json!({"instance_id": id, "dry_run": ctx.dry_run, "restored_groups": restored,
                "instance_profile_arn": profile, "auto_scaling_group": asg,
                "record": record.origins(), "tag_differences": report.differences, "notes": report.notes}),
        "irr",
    )?;
    let mut out = ActionOutput::default()
        .with("restored_groups", restored)
        .with("instance_profile_arn", profile)
        .with("auto_scaling_group", asg)
        .with("tag_differences", report.differences)
        .with("artifacts", vec![before, after]);
    if !report.would.is_empty() {
        out = out.with("would", report.would);
    }
    Ok(out)
}

/// What a release found and did besides restoring: notes, the dry run's `would`, and where the
/// tags disagree with the record.
#[derive(Default)]
pub(super) struct Report {
    notes: Vec<String>,
    would: Vec<String>,
    differences: Vec<Value>,
}

/// Puts each interface still in irr's groups (`ours`) back into its recorded groups.
async fn restore_groups(
    ctx: &ActionCtx,
    enis: &[NetworkInterface],
    rec: &Originals,
    ours: &BTreeSet<&str>,
    restored: &mut Map<String, Value>,
    report: &mut Report,
) -> Result<(), ActionError> {
    for n in enis {
        let eni = n.network_interface_id().unwrap_or_default();
        let tag_hint = tag_value(n.tag_set(), TAG_ORIGINAL_GROUPS).map(split_groups);
        let Some(groups) = rec.groups.get(eni) else {
            if let Some(t) = &tag_hint {
                report.notes.push(format!("{eni}: its {TAG_ORIGINAL_GROUPS} tag says {} but the case's record has nothing for it: left as is", t.join(",")));
                report
                    .differences
                    .push(json!({"interface": eni, "tag": t, "record": null}));
            }
            continue;
        };
        if let Some(t) = tag_hint.as_ref().filter(|t| *t != groups) {
            report.notes.push(format!(
                "WARNING: {eni}'s {TAG_ORIGINAL_GROUPS} tag ({}) disagrees with the case's record ({}): the record is restored",
                t.join(","),
                groups.join(",")
            ));
            report
                .differences
                .push(json!({"interface": eni, "tag": t, "record": groups}));
        }
        let current: Vec<String> = n
            .groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_owned))
            .collect();
        if &current != groups {
            if current.is_empty() || !current.iter().all(|g| ours.contains(g.as_str())) {
                report.notes.push(format!(
                    "{eni} is not in irr's groups now ({}): left as is",
                    current.join(",")
                ));
                continue;
            }
            set_eni_groups(ctx, eni, groups, "restore").await?;
            restored.insert(eni.to_owned(), groups.clone().into());
        }
        if tag_hint.is_some() {
            delete_tags(ctx, eni, &[TAG_ORIGINAL_GROUPS]).await?;
        }
    }
    Ok(())
}

/// Associates the recorded instance profile again; returns its ARN (null when none).
async fn restore_profile(
    ctx: &ActionCtx,
    id: &str,
    inst: &Instance,
    assocs: &[aws_sdk_ec2::types::IamInstanceProfileAssociation],
    rec: &Originals,
    report: &mut Report,
) -> Result<Value, ActionError> {
    let mut profile = Value::Null;
    let profile_tag = tag_value(inst.tags(), TAG_ORIGINAL_PROFILE);
    if let Some(t) = profile_tag.filter(|t| rec.profile.as_deref() != Some(*t)) {
        report.notes.push(format!(
            "WARNING: the instance's {TAG_ORIGINAL_PROFILE} tag ({t}) disagrees with the case's record ({}): the record is used",
            rec.profile.as_deref().unwrap_or("no profile")
        ));
        report
            .differences
            .push(json!({"instance_profile": {"tag": t, "record": rec.profile}}));
    }
    if let Some(arn) = &rec.profile {
        let current = assocs
            .iter()
            .find_map(|a| a.iam_instance_profile().and_then(|p| p.arn()));
        match current {
            None => {
                if ctx.dry_run {
                    // AssociateIamInstanceProfile takes no DryRun flag.
                    report
                        .would
                        .push(format!("ec2:AssociateIamInstanceProfile {arn} to {id}"));
                } else {
                    ctx.mutating(
                        "ec2",
                        "AssociateIamInstanceProfile",
                        json!({"instance_id": id, "instance_profile_arn": arn}),
                        ctx.aws
                            .ec2
                            .associate_iam_instance_profile()
                            .instance_id(id)
                            .iam_instance_profile(
                                aws_sdk_ec2::types::IamInstanceProfileSpecification::builder()
                                    .arn(arn)
                                    .build(),
                            )
                            .send(),
                        |o| json!({"association_id": o.iam_instance_profile_association().and_then(|a| a.association_id())}),
                    )
                    .await?;
                }
                profile = arn.clone().into();
            }
            Some(c) if c == arn => profile = arn.clone().into(),
            Some(c) => report.notes.push(format!(
                "instance profile {c} is associated now, not the recorded {arn}: left as is"
            )),
        }
    }
    if profile_tag.is_some() {
        delete_tags(ctx, id, &[TAG_ORIGINAL_PROFILE]).await?;
    }
    Ok(profile)
}

/// Attaches the instance to its recorded Auto Scaling group again; returns the group (null
/// when none).
async fn restore_asg(
    ctx: &ActionCtx,
    id: &str,
    inst: &Instance,
    rec: &Originals,
    report: &mut Report,
) -> Result<Value, ActionError> {
    let mut asg = Value::Null;
    let asg_tag = tag_value(inst.tags(), TAG_ORIGINAL_ASG);
    if let Some(t) = asg_tag.filter(|t| rec.auto_scaling_group.as_deref() != Some(*t)) {
        report.notes.push(format!(
            "WARNING: the instance's {TAG_ORIGINAL_ASG} tag ({t}) disagrees with the case's record ({}): the record is used",
            rec.auto_scaling_group.as_deref().unwrap_or("no group")
        ));
        report
            .differences
            .push(json!({"auto_scaling_group": {"tag": t, "record": rec.auto_scaling_group}}));
    }
    if let Some(group) = &rec.auto_scaling_group {
        // Membership is an optional read: when it cannot be asked, attach anyway (Auto
        // Scaling refuses an instance that is already a member).
        let member = ctx.or_gap(
            "autoscaling:DescribeAutoScalingInstances",
            autoscaling_membership(ctx, id).await,
        );
        if !matches!(member, Some(Some(_))) {
            if ctx.dry_run {
                report.would.push(format!(
                    "autoscaling:AttachInstances {group} {id} (Auto Scaling has no DryRun)"
                ));
            } else {
                ctx.mutating(
                    "autoscaling",
                    "AttachInstances",
                    json!({"auto_scaling_group_name": group, "instance_id": id}),
                    ctx.aws
                        .autoscaling
                        .attach_instances()
                        .auto_scaling_group_name(group)
                        .instance_ids(id)
                        .send(),
                    |_| json!({}),
                )
                .await?;
            }
        }
        asg = group.clone().into();
    }
    if asg_tag.is_some() {
        delete_tags(ctx, id, &[TAG_ORIGINAL_ASG]).await?;
    }
    Ok(asg)
}

// ---- ec2.tag_resources ----------------------------------------------------------------------
