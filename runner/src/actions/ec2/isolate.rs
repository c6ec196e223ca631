//! `ec2.isolate_instance`: the two-step security group swap, the isolation groups and the profile.

use super::swap::swap_interface;
use super::*;
use crate::actions::record::Originals;

/// Parameters of `ec2.isolate_instance`.
///
/// Each field's doc comment is the parameter's description in the catalog.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IsolateParams {
    /// the instance
    #[schemars(extend("x-irr-type" = "instance_id"))]
    pub instance_id: String,
    /// forensic access: ingress on tcp/22 from this block only
    // IPv4 or IPv6; default none.
    #[schemars(extend("x-irr-type" = "cidr"))]
    pub allow_cidr: Option<String>,
    /// detach the instance profile
    #[schemars(extend("default" = true))]
    pub detach_profile: Option<bool>,
    /// detach the instance from its Auto Scaling group first, so it is not replaced (and terminated) as unhealthy
    // Otherwise the group may terminate it (its health checks fail once isolated), destroying evidence.
    #[schemars(extend("default" = true))]
    pub leave_autoscaling: Option<bool>,
    /// when leaving Auto Scaling, lower the group's desired capacity instead of letting it launch a replacement
    // A replacement keeps the service up.
    #[schemars(extend("default" = false))]
    pub decrement_desired_capacity: Option<bool>,
}

/// What a security group irr makes should allow.
pub(super) enum GroupRules {
    /// All protocols in and out, IPv4 and IPv6 (turns tracked flows into untracked ones).
    AllowAll,
    /// Nothing out; nothing in, or TCP 22 from one CIDR.
    Isolation { ssh_from: Option<String> },
}

pub(super) fn is_v6(cidr: &str) -> bool {
    matches!(cidr.parse::<ipnet::IpNet>(), Ok(ipnet::IpNet::V6(_)))
}

pub(super) fn all_traffic(cidrs: &[&str]) -> IpPermission {
    let mut p = IpPermission::builder().ip_protocol("-1");
    for c in cidrs {
        p = if is_v6(c) {
            p.ipv6_ranges(Ipv6Range::builder().cidr_ipv6(*c).build())
        } else {
            p.ip_ranges(IpRange::builder().cidr_ip(*c).build())
        };
    }
    p.build()
}

pub(super) fn ssh_from(cidr: &str) -> IpPermission {
    let p = IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(22)
        .to_port(22);
    if is_v6(cidr) {
        p.ipv6_ranges(
            Ipv6Range::builder()
                .cidr_ipv6(cidr)
                .description("irr-forensic-access")
                .build(),
        )
        .build()
    } else {
        p.ip_ranges(
            IpRange::builder()
                .cidr_ip(cidr)
                .description("irr-forensic-access")
                .build(),
        )
        .build()
    }
}

pub(super) fn allows_all_from(perms: &[IpPermission], cidr: &str) -> bool {
    perms.iter().any(|p| {
        p.ip_protocol() == Some("-1")
            && (p.ip_ranges().iter().any(|r| r.cidr_ip() == Some(cidr))
                || p.ipv6_ranges().iter().any(|r| r.cidr_ipv6() == Some(cidr)))
    })
}

pub(super) fn is_exactly_ssh_from(p: &IpPermission, cidr: &str) -> bool {
    let sources: Vec<&str> = p
        .ip_ranges()
        .iter()
        .filter_map(|r| r.cidr_ip())
        .chain(p.ipv6_ranges().iter().filter_map(|r| r.cidr_ipv6()))
        .collect();
    p.ip_protocol() == Some("tcp")
        && p.from_port() == Some(22)
        && p.to_port() == Some(22)
        && sources == [cidr]
        && p.user_id_group_pairs().is_empty()
        && p.prefix_list_ids().is_empty()
}

/// Security group names allow a limited character set; anything else becomes `-`.
pub(super) fn group_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || " ._-:/()#,@[]+=&;{}!$*".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(255)
        .collect()
}

/// Finds this case's group of `purpose` in the VPC, or creates it, then brings its rules to
/// `rules` (which also repairs a group left half-made by an interrupted run). Returns its id,
/// or `None` in a dry run when it would be created.
pub(super) async fn ensure_group(
    ctx: &ActionCtx,
    vpc_id: &str,
    case_groups: &[SecurityGroup],
    purpose: &str,
    rules: &GroupRules,
) -> Result<Option<String>, ActionError> {
    let ec2 = &ctx.aws.ec2;
    let name = group_name(&format!("irr-{purpose}-{}", ctx.case_id));
    let mut group = case_groups
        .iter()
        .find(|g| tag_value(g.tags(), TAG_PURPOSE) == Some(purpose))
        .cloned();
    if group.is_none() {
        let mut tags = run_tags(ctx);
        tags.push(tag(TAG_PURPOSE, purpose));
        tags.push(tag("Name", &name));
        let description = match rules {
            GroupRules::AllowAll => {
                "irr-containment-step-1:allow-all(tracked-flows-become-untracked)".to_owned()
            }
            GroupRules::Isolation { ssh_from: None } => {
                "irr-isolation:no-inbound,no-outbound".to_owned()
            }
            GroupRules::Isolation { ssh_from: Some(c) } => {
                format!("irr-isolation:no-outbound,inbound-only-tcp-22-from-{c}")
            }
        };
        let created = ctx
            .mutating_dry(
                "ec2",
                "CreateSecurityGroup",
                json!({"vpc_id": vpc_id, "group_name": name, "purpose": purpose}),
                ec2.create_security_group()
                    .vpc_id(vpc_id)
                    .group_name(&name)
                    .description(description)
                    .tag_specifications(tag_spec(ResourceType::SecurityGroup, tags))
                    .dry_run(ctx.dry_run)
                    .send(),
                |o| json!({"group_id": o.group_id()}),
            )
            .await;
        let id = match created {
            Ok(None) => return Ok(None),
            Ok(Some(o)) => o.group_id().unwrap_or_default().to_owned(),
            // Another isolation of the same case in this VPC created it first: reuse it.
            Err(e) if e.code() == "InvalidGroup.Duplicate" => {
                let found = describe_groups(
                    ctx,
                    vec![
                        filter("vpc-id", [vpc_id]),
                        filter("group-name", [name.as_str()]),
                    ],
                )
                .await?;
                let g = found.first().ok_or_else(|| {
                    ActionError::Target(format!("security group {name} exists but cannot be found"))
                })?;
                if tag_value(g.tags(), TAG_CASE) != Some(ctx.case_id.as_str()) {
                    return Err(ActionError::Target(format!(
                        "security group {name} in {vpc_id} exists without this case's {TAG_CASE} tag; refusing to use it"
                    )));
                }
                g.group_id().unwrap_or_default().to_owned()
            }
            Err(e) => return Err(e),
        };
        // Read it back (its default egress rule is needed); a new group may take a moment
        // to show up in EC2's eventually consistent reads.
        for attempt in 0..10 {
            group = describe_groups(ctx, vec![filter("group-id", [id.as_str()])])
                .await?
                .into_iter()
                .next();
            if group.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500 * (attempt + 1))).await;
        }
    }
    let g = group.ok_or_else(|| ActionError::Target(format!("security group {name} vanished")))?;
    let gid = g.group_id().unwrap_or_default().to_owned();
    reconcile_rules(ctx, &g, rules).await?;
    if !ctx.dry_run {
        let mut details = Map::new();
        details.insert("purpose".into(), purpose.into());
        details.insert("vpc_id".into(), vpc_id.into());
        ctx.recorder.resource(AwsResource {
            kind: "security-group".into(),
            id: gid.clone(),
            details,
        });
    }
    Ok(Some(gid))
}

/// Adds and removes rules so that the group allows exactly `rules`. A rule another run already
/// added (`InvalidPermission.Duplicate`) or removed (`InvalidPermission.NotFound`) is fine.
pub(super) async fn reconcile_rules(
    ctx: &ActionCtx,
    g: &SecurityGroup,
    rules: &GroupRules,
) -> Result<(), ActionError> {
    let ec2 = &ctx.aws.ec2;
    let gid = g.group_id().unwrap_or_default();
    let (add_in, add_out, drop_in, drop_out): (
        Vec<IpPermission>,
        Vec<IpPermission>,
        Vec<IpPermission>,
        Vec<IpPermission>,
    ) = match rules {
        GroupRules::AllowAll => {
            let missing = |perms: &[IpPermission]| -> Vec<IpPermission> {
                let m: Vec<&str> = ["0.0.0.0/0", "::/0"]
                    .into_iter()
                    .filter(|c| !allows_all_from(perms, c))
                    .collect();
                if m.is_empty() {
                    vec![]
                } else {
                    vec![all_traffic(&m)]
                }
            };
            (
                missing(g.ip_permissions()),
                missing(g.ip_permissions_egress()),
                vec![],
                vec![],
            )
        }
        GroupRules::Isolation { ssh_from: allow } => {
            let drop_in: Vec<IpPermission> = g
                .ip_permissions()
                .iter()
                .filter(|p| !allow.as_deref().is_some_and(|c| is_exactly_ssh_from(p, c)))
                .cloned()
                .collect();
            let add_in = match allow {
                Some(c) if !g.ip_permissions().iter().any(|p| is_exactly_ssh_from(p, c)) => {
                    vec![ssh_from(c)]
                }
                _ => vec![],
            };
            // The default egress rule (IPv4, and IPv6 where AWS adds one) must go: an
            // isolation group that still allows all egress isolates nothing.
            (add_in, vec![], drop_in, g.ip_permissions_egress().to_vec())
        }
    };
    let dry = ctx.dry_run;
    // Each change touches other rules (and the calls for an empty list are not made): they
    // run at once, each to its end (none is cut off by another's failure).
    let (a, b, c, d) = tokio::join!(
        Box::pin(change_rules(
            ctx,
            gid,
            "RevokeSecurityGroupEgress",
            &drop_out,
            || {
                ec2.revoke_security_group_egress()
                    .group_id(gid)
                    .set_ip_permissions(Some(drop_out.clone()))
                    .dry_run(dry)
                    .send()
            }
        )),
        Box::pin(change_rules(
            ctx,
            gid,
            "RevokeSecurityGroupIngress",
            &drop_in,
            || {
                ec2.revoke_security_group_ingress()
                    .group_id(gid)
                    .set_ip_permissions(Some(drop_in.clone()))
                    .dry_run(dry)
                    .send()
            }
        )),
        Box::pin(change_rules(
            ctx,
            gid,
            "AuthorizeSecurityGroupIngress",
            &add_in,
            || {
                ec2.authorize_security_group_ingress()
                    .group_id(gid)
                    .set_ip_permissions(Some(add_in.clone()))
                    .dry_run(dry)
                    .send()
            }
        )),
        Box::pin(change_rules(
            ctx,
            gid,
            "AuthorizeSecurityGroupEgress",
            &add_out,
            || {
                ec2.authorize_security_group_egress()
                    .group_id(gid)
                    .set_ip_permissions(Some(add_out.clone()))
                    .dry_run(dry)
                    .send()
            }
        )),
    );
    a.and(b).and(c).and(d)
}

pub(super) async fn create_tags(
    ctx: &ActionCtx,
    resource: &str,
    tags: Vec<Tag>,
) -> Result<(), ActionError> {
    ctx.mutating_dry(
        "ec2",
        "CreateTags",
        json!({"resource_ids": [resource], "tags": tags_json(&tags)}),
        ctx.aws
            .ec2
            .create_tags()
            .resources(resource)
            .set_tags(Some(tags.clone()))
            .dry_run(ctx.dry_run)
            .send(),
        |_| json!({}),
    )
    .await
    .map(drop)
}

pub(super) async fn delete_tags(
    ctx: &ActionCtx,
    resource: &str,
    keys: &[&str],
) -> Result<(), ActionError> {
    ctx.mutating_dry(
        "ec2",
        "DeleteTags",
        json!({"resource_ids": [resource], "tag_keys": keys}),
        ctx.aws
            .ec2
            .delete_tags()
            .resources(resource)
            .set_tags(Some(
                keys.iter()
                    .map(|k| Tag::builder().key(*k).build())
                    .collect(),
            ))
            .dry_run(ctx.dry_run)
            .send(),
        |_| json!({}),
    )
    .await
    .map(drop)
}

pub(super) async fn set_eni_groups(
    ctx: &ActionCtx,
    eni: &str,
    groups: &[String],
    step: &str,
) -> Result<(), ActionError> {
    retry_transient(
        || async move {
            ctx.mutating_dry(
                "ec2",
                "ModifyNetworkInterfaceAttribute",
                json!({"network_interface_id": eni, "groups": groups, "step": step}),
                ctx.aws
                    .ec2
                    .modify_network_interface_attribute()
                    .network_interface_id(eni)
                    .set_groups(Some(groups.to_vec()))
                    .dry_run(ctx.dry_run)
                    .send(),
                |_| json!({}),
            )
            .await
            .map(drop)
        },
        fresh_group,
    )
    .await
}

/// EC2 is eventually consistent: a security group just created may not yet be known to the
/// next call (`InvalidGroup.NotFound`) for a few seconds.
/// One change of a group's rules (`operation` on `perms`): journaled, EC2 `DryRun`
/// honoured, retried while a just-made group is not yet visible. A rule already there (or
/// already gone) counts as done; no call is made for an empty list.
pub(super) async fn change_rules<T, E, Fut>(
    ctx: &ActionCtx,
    gid: &str,
    operation: &str,
    perms: &[IpPermission],
    call: impl Fn() -> Fut,
) -> Result<(), ActionError>
where
    Fut: std::future::Future<Output = Result<T, E>>,
    T: aws_types::request_id::RequestId,
    E: ProvideErrorMetadata
        + aws_types::request_id::RequestId
        + irr_forensics::awserr::RawBody
        + std::error::Error
        + 'static,
{
    if perms.is_empty() {
        return Ok(());
    }
    let params =
        json!({"group_id": gid, "ip_permissions": perms.iter().map(perm_json).collect::<Vec<_>>()});
    retry_transient(
        || async {
            match ctx
                .mutating_dry("ec2", operation, params.clone(), call(), |_| json!({}))
                .await
            {
                Err(e)
                    if e.code() == "InvalidPermission.Duplicate"
                        || e.code() == "InvalidPermission.NotFound" =>
                {
                    Ok(())
                }
                other => other.map(drop),
            }
        },
        fresh_group,
    )
    .await
}

pub(super) fn fresh_group(e: &ActionError) -> bool {
    is_transient(e) || e.code() == "InvalidGroup.NotFound"
}

/// `ec2.isolate_instance`: its declaration (see [`Action`]); the parameters are [`IsolateParams`].
pub struct IsolateInstance;

impl Action for IsolateInstance {
    type Params = IsolateParams;
    const DECLARATION: Declaration = Declaration {
            name: "ec2.isolate_instance",
            summary: "move every network interface to an allow-all group, then to an isolation group with no rules; detach the instance profile",
            exactly_one_of: &[],
            outputs: &[
                out("isolation_group_id", TypeSpec::String, "the security group with no rules now on every interface"),
                out("original_groups", TypeSpec::Map(&STRINGS), "interface id -> its groups before isolation"),
                out("allow_all_group_id", TypeSpec::String, "the allow-all group used for the first step of the swap"),
            ],
            api_calls: &["ec2:DescribeInstances", "ec2:DescribeNetworkInterfaces", "ec2:DescribeIamInstanceProfileAssociations", "autoscaling:DescribeAutoScalingInstances", "ec2:DescribeSecurityGroups", "ec2:CreateTags", "autoscaling:DetachInstances", "ec2:CreateSecurityGroup", "ec2:RevokeSecurityGroupEgress", "ec2:RevokeSecurityGroupIngress", "ec2:AuthorizeSecurityGroupIngress", "ec2:AuthorizeSecurityGroupEgress", "ec2:ModifyNetworkInterfaceAttribute", "ec2:DisassociateIamInstanceProfile"],
            permissions: &[
                perm("ec2:DescribeInstances", ANY),
                perm("ec2:DescribeNetworkInterfaces", ANY),
                perm("ec2:DescribeSecurityGroups", ANY),
                perm("ec2:DescribeIamInstanceProfileAssociations", ANY),
                perm("autoscaling:DescribeAutoScalingInstances", ANY),
                // Only for an instance in an Auto Scaling group (taken out before it is isolated).
                perm("autoscaling:DetachInstances", AUTOSCALING_GROUP),
                perm("ec2:CreateSecurityGroup", &["arn:aws:ec2:{region}:{account}:vpc/*", "arn:aws:ec2:{region}:{account}:security-group/*"]),
                perm("ec2:AuthorizeSecurityGroupIngress", &["arn:aws:ec2:{region}:{account}:security-group/*"]),
                perm("ec2:AuthorizeSecurityGroupEgress", &["arn:aws:ec2:{region}:{account}:security-group/*"]),
                perm("ec2:RevokeSecurityGroupEgress", &["arn:aws:ec2:{region}:{account}:security-group/*"]),
                // Only when a reused isolation group carries inbound rules it should not have.
                perm("ec2:RevokeSecurityGroupIngress", &["arn:aws:ec2:{region}:{account}:security-group/*"]),
                perm("ec2:CreateTags", &["arn:aws:ec2:{region}:{account}:security-group/*", "arn:aws:ec2:{region}:{account}:network-interface/*", "arn:aws:ec2:{region}:{account}:instance/{instance_id}"]),
                perm("ec2:ModifyNetworkInterfaceAttribute", &["arn:aws:ec2:{region}:{account}:network-interface/*", "arn:aws:ec2:{region}:{account}:security-group/*"]),
                perm("ec2:DisassociateIamInstanceProfile", INSTANCE),
            ],
            mutating: true,
            idempotency: "groups are found by case tag and reused; interfaces already isolated are left; the original groups are recorded once",
            undo: Some("ec2.release_instance"),
    };
    async fn run(ctx: &ActionCtx, params: IsolateParams) -> Result<ActionOutput, ActionError> {
        isolate_instance(ctx, params).await
    }
    async fn prefetch(ctx: &ActionCtx, items: &[IsolateParams]) -> Result<(), ActionError> {
        let wants = super::Wants {
            enis: true,
            associations: true,
            autoscaling: true,
            ..Default::default()
        };
        let ids = items.iter().map(|p| p.instance_id.clone()).collect();
        super::fleet::prefetch_instances(ctx, ids, wants).await
    }
}

/// `ec2.isolate_instance`: cuts the instance off the network, interface by interface, keeping
/// what is needed to undo it. Outputs `isolation_group_id` and `original_groups` (interface id
/// -> group ids).
///
/// In order: take the instance out of its Auto Scaling group (else the group, seeing it
/// unhealthy, terminates it; `irr:original-asg` tag); find or create this case's allow-all and
/// isolation groups in the instance's VPC (by the `irr:case` and `irr:purpose` tags), the
/// isolation group with no egress rule at all (the default one revoked) and no ingress, or
/// only TCP 22 from `allow_cidr`; for each interface, record its groups (`irr:original-groups`
/// tag), move it to the allow-all group, then to the isolation group; record the instance
/// profile (`irr:original-profile` tag) and detach it.
///
/// Idempotent: groups are reused, an interface already in the isolation group is skipped, and
/// an interface left in irr's groups by an interrupted run keeps its recorded originals.
/// Undo: `ec2.release_instance`.
pub async fn isolate_instance(
    ctx: &ActionCtx,
    p: IsolateParams,
) -> Result<ActionOutput, ActionError> {
    check_cidr(p.allow_cidr.as_deref())?;
    let id = p.instance_id.as_str();
    // The step's batch (fleet.rs) on a first attempt, else AWS afresh.
    let pre = ctx.aws.fleet.take(ctx, id).unwrap_or_default();
    let (start, asg_read) = instance_state(ctx, id, pre).await;
    let Start {
        inst,
        vpc_id,
        case_groups,
        enis,
        assocs,
    } = start?;
    let asg_tag = tag_value(inst.tags(), ASG_NAME_TAG).map(str::to_owned);
    let mut report = Report::new(&[]);
    let asg_known = ctx.or_gap("autoscaling:DescribeAutoScalingInstances", asg_read);
    let asg_from_tag = asg_known.is_none();
    let asg = membership(asg_known, asg_tag.as_deref());
    // The originals come from the case's own record (this run's earlier attempts, the case's
    // sealed runs), never back from a tag: an attacker may have rewritten the tag between a
    // crash and this attempt.
    let record = crate::actions::record::isolation_record(ctx, id).await;
    let recorded = record.originals();
    report.record_problems(&record.problems);

    let before = ctx.evidence(
        "isolation-before.json",
        &json!({
            "instance_id": id,
            "vpc_id": vpc_id,
            "network_interfaces": enis.iter().map(eni_json).collect::<Vec<_>>(),
            "instance_profile_associations": assocs.iter().map(assoc_json).collect::<Vec<_>>(),
            "instance_tags": tags_json(inst.tags()),
            "auto_scaling_group": asg.as_ref().map(|(g, s)| json!({"name": g, "lifecycle_state": s})),
            "auto_scaling_group_tag": asg_tag,
            "auto_scaling_membership_from_tag": asg_from_tag,
            "case_security_groups": case_groups.iter().map(group_json).collect::<Vec<_>>(),
        }),
        "ec2:DescribeNetworkInterfaces",
    )?;
    // 1. Leave Auto Scaling first: once isolated, the group's health checks fail and it
    //    would terminate the instance (termination protection does not stop Auto Scaling).
    let mut autoscaling =
        leave_autoscaling(ctx, id, &p, &asg, &asg_tag, asg_from_tag, &mut report).await?;

    // 2. The two groups, found or made once per VPC for the whole run.
    let groups = isolation_groups(
        ctx,
        &vpc_id,
        &case_groups,
        p.allow_cidr.as_deref(),
        &mut report,
    )
    .await?;
    let (allow_all, isolation) = (groups.allow_all, groups.isolation);
    let ours: BTreeSet<&str> = case_groups
        .iter()
        .filter_map(|g| g.group_id())
        .chain(recorded.irr_groups.iter().map(String::as_str))
        .chain(allow_all.as_deref())
        .chain(isolation.as_deref())
        .collect();

    // 3. Each interface (record, allow-all, isolation) and 4. the instance profile, at once:
    //    they are independent, and each runs to its end even when the other fails.
    let mut profile_report = Report::default();
    let (swapped, profile) = tokio::join!(
        Box::pin(isolate_interfaces(
            ctx,
            &enis,
            &ours,
            &recorded,
            &allow_all,
            &isolation,
            &mut report,
        )),
        Box::pin(detach_profile(
            ctx,
            id,
            p.detach_profile.unwrap_or(true),
            &assocs,
            &recorded,
            &mut profile_report,
        ))
    );
    report.merge(profile_report);
    let (original_groups, skipped) = swapped?;
    let profile = profile?;
    if autoscaling.is_null() && asg.is_none() {
        if let Some(g) = &recorded.auto_scaling_group {
            autoscaling = json!({"group": g, "detached": true, "note": "detached by an earlier run (the case's record)"});
        }
    }

    let after = ctx.evidence(
        "isolation.json",
        &json!({
            "instance_id": id,
            "vpc_id": vpc_id,
            "dry_run": ctx.dry_run,
            "isolation_group_id": isolation,
            "allow_all_group_id": allow_all,
            "allow_cidr": p.allow_cidr,
            "original_groups": original_groups,
            "already_isolated_interfaces": skipped,
            "record": record.origins(),
            "tag_differences": report.tag_differences,
            "instance_profile": profile,
            "auto_scaling": autoscaling,
            "original_tags": {"instance_profile": TAG_ORIGINAL_PROFILE, "auto_scaling_group": TAG_ORIGINAL_ASG},
            "notes": report.notes,
            "advice": "add a network ACL step to cut ICMP and flows through NAT gateways, load balancers, PrivateLink or transit gateways",
        }),
        "irr",
    )?;
    let mut out = ActionOutput::default()
        .with(
            "isolation_group_id",
            isolation.map(Value::from).unwrap_or(Value::Null),
        )
        .with(
            "allow_all_group_id",
            allow_all.map(Value::from).unwrap_or(Value::Null),
        )
        .with("original_groups", original_groups)
        .with("artifacts", vec![before, after]);
    if !report.would.is_empty() {
        out = out.with("would", report.would);
    }
    Ok(out)
}

/// What an isolation starts from: the instance, its VPC, the case's groups there (as they
/// were when the run first asked), its interfaces (by device index) and its profile
/// associations.
struct Start {
    inst: Instance,
    vpc_id: String,
    case_groups: Vec<SecurityGroup>,
    enis: Vec<NetworkInterface>,
    assocs: Vec<aws_sdk_ec2::types::IamInstanceProfileAssociation>,
}

/// Reads the [`Start`] (what the step's batch did not read) and the instance's Auto Scaling
/// membership, at once: every read names the instance, except the case's groups, which wait
/// for its VPC (and are read once per VPC for the whole run). Auto Scaling is an optional
/// read, bounded in time: its result (an error is a gap) is returned beside.
async fn instance_state(
    ctx: &ActionCtx,
    id: &str,
    pre: super::Prefetched,
) -> (
    Result<Start, ActionError>,
    Result<Option<(String, String)>, ActionError>,
) {
    let (inst, enis, assocs, asg) = (pre.instance, pre.enis, pre.associations, pre.autoscaling);
    let (found, enis, assocs, asg) = tokio::join!(
        Box::pin(async {
            let inst = match inst {
                Some(i) => i,
                None => describe_instance(ctx, id).await?,
            };
            let vpc_id = inst
                .vpc_id()
                .ok_or_else(|| ActionError::Target(format!("instance {id} is not in a VPC")))?
                .to_owned();
            let groups = ctx.aws.fleet.case_groups(ctx, &vpc_id).await?;
            Ok::<_, ActionError>((inst, vpc_id, groups))
        }),
        async {
            match enis {
                Some(e) => Ok(e),
                None => instance_enis(ctx, id).await,
            }
        },
        async {
            match assocs {
                Some(a) => Ok(a),
                None => profile_associations(ctx, id).await,
            }
        },
        async {
            match asg {
                Some(m) => Ok(m),
                None => optional_membership(ctx, id).await,
            }
        }
    );
    let start = (|| {
        // The instance's own error (not found, denied) comes first.
        let (inst, vpc_id, case_groups) = found?;
        let enis = enis?;
        if enis.is_empty() {
            return Err(ActionError::Target(format!(
                "instance {id} has no network interface"
            )));
        }
        Ok(Start {
            inst,
            vpc_id,
            case_groups,
            enis,
            assocs: assocs?,
        })
    })();
    (start, asg)
}

/// The instance's Auto Scaling group and lifecycle state: as Auto Scaling answered, or, when
/// it could not be asked (`known` is `None`), from the instance's group-name tag.
fn membership(
    known: Option<Option<(String, String)>>,
    asg_tag: Option<&str>,
) -> Option<(String, String)> {
    match known {
        Some(m) => m,
        None => asg_tag.map(|g| (g.to_owned(), format!("unknown: Auto Scaling could not be asked, the group is from the {ASG_NAME_TAG} tag"))),
    }
}

impl Report {
    /// The standing notes, and a warning per part of the case's record that could not be
    /// verified.
    fn new(problems: &[String]) -> Report {
        let mut report = Report {
            notes: ISOLATION_NOTES.iter().map(|s| s.to_string()).collect(),
            ..Report::default()
        };
        report.record_problems(problems);
        report
    }

    /// Adds what another part of the isolation said.
    fn merge(&mut self, other: Report) {
        self.notes.extend(other.notes);
        self.would.extend(other.would);
        self.tag_differences.extend(other.tag_differences);
    }

    fn record_problems(&mut self, problems: &[String]) {
        for p in problems {
            self.notes.push(format!(
                "WARNING: part of the case's record cannot be verified and was not used: {p}"
            ));
        }
    }
}

/// Step 2: this case's allow-all and isolation groups in the VPC, found or created once for
/// the whole run ([`super::Fleet::vpc_groups`]: the items of a fleet wait for the first one
/// instead of racing it), with the case's groups as they were before.
async fn isolation_groups(
    ctx: &ActionCtx,
    vpc_id: &str,
    case_groups: &[SecurityGroup],
    allow_cidr: Option<&str>,
    report: &mut Report,
) -> Result<super::VpcGroups, ActionError> {
    let purpose_iso = match allow_cidr {
        None => "isolation".to_owned(),
        Some(c) => format!("isolation-ssh-from-{c}"),
    };
    if let Some(c) = allow_cidr {
        report.notes.push(format!(
            "the isolation group allows inbound TCP 22 from {c} only (allow_cidr), and no outbound"
        ));
    }
    ctx.aws
        .fleet
        .vpc_groups(ctx, vpc_id, &purpose_iso, || async {
            // The two groups are independent: made (and their rules set) at once.
            let iso_rules = GroupRules::Isolation {
                ssh_from: allow_cidr.map(str::to_owned),
            };
            // Boxed: two SDK call chains side by side make a future too big for a worker
            // thread's stack in a debug build.
            let (allow_all, isolation) = tokio::join!(
                Box::pin(ensure_group(
                    ctx,
                    vpc_id,
                    case_groups,
                    "allow-all",
                    &GroupRules::AllowAll
                )),
                Box::pin(ensure_group(
                    ctx,
                    vpc_id,
                    case_groups,
                    &purpose_iso,
                    &iso_rules
                ))
            );
            let (allow_all, isolation) = (allow_all?, isolation?);
            Ok(super::VpcGroups {
                allow_all,
                isolation,
            })
        })
        .await
}

/// What an isolation says besides its outputs: notes, the dry run's `would`, and where the
/// tags disagree with the case's record.
#[derive(Default)]
pub(super) struct Report {
    notes: Vec<String>,
    would: Vec<String>,
    tag_differences: Vec<Value>,
}

/// Refuses an `allow_cidr` that is not a CIDR.
fn check_cidr(allow_cidr: Option<&str>) -> Result<(), ActionError> {
    if let Some(c) = allow_cidr {
        let ok = c.split_once('/').is_some_and(|(addr, len)| {
            len.parse::<u8>().is_ok() && (addr.parse::<std::net::IpAddr>().is_ok())
        });
        if !ok {
            return Err(ActionError::Params(format!(
                "ec2.isolate_instance: allow_cidr `{c}` is not a CIDR"
            )));
        }
    }
    Ok(())
}

/// The instance's Auto Scaling membership: an optional read, bounded in time.
async fn optional_membership(
    ctx: &ActionCtx,
    id: &str,
) -> Result<Option<(String, String)>, ActionError> {
    match tokio::time::timeout(OPTIONAL_READ_BUDGET, autoscaling_membership(ctx, id)).await {
        Ok(r) => r,
        Err(_) => Err(ActionError::Aws {
            service: "autoscaling".into(),
            operation: "DescribeAutoScalingInstances".into(),
            code: "timeout".into(),
            message: format!(
                "no answer within {} s; containment does not wait for it",
                OPTIONAL_READ_BUDGET.as_secs()
            ),
            request_id: None,
        }),
    }
}

/// Step 1: takes the instance out of its Auto Scaling group (unless `leave_autoscaling` is
/// false); returns what the evidence says about it.
async fn leave_autoscaling(
    ctx: &ActionCtx,
    id: &str,
    p: &IsolateParams,
    asg: &Option<(String, String)>,
    asg_tag: &Option<String>,
    asg_from_tag: bool,
    report: &mut Report,
) -> Result<Value, ActionError> {
    let leave = p.leave_autoscaling.unwrap_or(true);
    let mut autoscaling = Value::Null;
    match (asg, leave) {
        (Some((group, state)), true) => {
            let decrement = p.decrement_desired_capacity.unwrap_or(false);
            report.notes.push(format!(
                "the instance was in Auto Scaling group {group} ({state}); it is detached from it{}",
                if decrement { " and the desired capacity lowered (no replacement)" } else { "; the group launches a replacement" }
            ));
            autoscaling = json!({"group": group, "lifecycle_state": state, "detached": !ctx.dry_run, "decrement_desired_capacity": decrement, "membership_from_tag": asg_from_tag});
            if let Err(e) = create_tags(ctx, id, vec![tag(TAG_ORIGINAL_ASG, group)]).await {
                report.notes.push(format!("the {TAG_ORIGINAL_ASG} hint could not be written ({e}); the case's record holds the group"));
            }
            if ctx.dry_run {
                report.would.push(format!(
                    "autoscaling:DetachInstances {group} {id} (Auto Scaling has no DryRun)"
                ));
            } else if let Err(e) = ctx.mutating(
                    "autoscaling",
                    "DetachInstances",
                    json!({"auto_scaling_group_name": group, "instance_id": id, "should_decrement_desired_capacity": decrement}),
                    ctx.aws
                        .autoscaling
                        .detach_instances()
                        .auto_scaling_group_name(group)
                        .instance_ids(id)
                        .should_decrement_desired_capacity(decrement)
                        .send(),
                    |o| json!({"activities": o.activities().iter().map(|a| a.activity_id()).collect::<Vec<_>>()}),
                )
                .await
            {
                // Isolation goes on whatever Auto Scaling says: an open instance is worse
                // than one its group may replace. Said loudly, and recorded as a gap.
                report.notes.push(format!(
                    "WARNING: the instance could not be taken out of Auto Scaling group {group} ({e}): the group may terminate it once its health checks fail; detach it by hand (autoscaling:DetachInstances) and check its evidence is preserved"
                ));
                ctx.gap(
                    &format!("autoscaling:DetachInstances (instance left in group {group}, which may terminate it)"),
                    &e,
                );
                autoscaling["detached"] = json!(false);
                autoscaling["error"] = json!(e.to_string());
            }
        }
        (Some((group, state)), false) => {
            report.notes.push(format!(
                "WARNING: the instance is in Auto Scaling group {group} ({state}) and was left in it (leave_autoscaling: false): the group may terminate it once its health checks fail"
            ));
            autoscaling = json!({"group": group, "lifecycle_state": state, "detached": false});
        }
        (None, _) => {
            if let Some(g) = asg_tag {
                report.notes.push(format!("the instance carries {ASG_NAME_TAG}={g} but Auto Scaling does not list it as a member"));
            } else if asg_from_tag {
                report.notes.push(format!("Auto Scaling could not be asked whether the instance is in a group (a gap) and it has no {ASG_NAME_TAG} tag: taken as in no group"));
            }
        }
    }
    Ok(autoscaling)
}

/// Step 3: each interface: its originals recorded, moved to the allow-all group, then to the
/// isolation group. Returns the original groups (interface id -> group ids) and the
/// interfaces already isolated.
async fn isolate_interfaces(
    ctx: &ActionCtx,
    enis: &[NetworkInterface],
    ours: &BTreeSet<&str>,
    recorded: &Originals,
    allow_all: &Option<String>,
    isolation: &Option<String>,
    report: &mut Report,
) -> Result<(Map<String, Value>, Vec<String>), ActionError> {
    let mut original_groups = Map::new();
    let mut skipped = Vec::new();
    let mut swaps = Vec::new();
    for n in enis {
        let eni = n.network_interface_id().unwrap_or_default();
        let current: Vec<String> = n
            .groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_owned))
            .collect();
        let tag_hint = tag_value(n.tag_set(), TAG_ORIGINAL_GROUPS).map(split_groups);
        // Groups irr put there (an earlier, interrupted run) are not the originals: those
        // are in the case's record.
        let only_ours = !current.is_empty() && current.iter().all(|g| ours.contains(g.as_str()));
        let originals = if only_ours {
            match recorded.groups.get(eni) {
                Some(r) => r.clone(),
                None => {
                    report.notes.push(format!(
                        "WARNING: {eni} is already in irr's groups and the case's record holds no original groups for it: they are unknown (the {TAG_ORIGINAL_GROUPS} tag is not trusted)"
                    ));
                    Vec::new()
                }
            }
        } else {
            current.clone()
        };
        if only_ours && tag_hint.is_some() && tag_hint.as_ref() != Some(&originals) {
            report.notes.push(format!(
                "WARNING: {eni}'s {TAG_ORIGINAL_GROUPS} tag ({}) disagrees with the case's record ({}): the record is used",
                tag_hint.clone().unwrap_or_default().join(","),
                originals.join(",")
            ));
            report
                .tag_differences
                .push(json!({"interface": eni, "tag": tag_hint, "record": originals}));
        }
        original_groups.insert(eni.to_owned(), originals.clone().into());
        if isolation.is_some() && current == [isolation.clone().unwrap_or_default()] {
            skipped.push(eni.to_owned());
            continue;
        }
        // No `irr:original-groups` tag is written any more: the case's record holds the
        // originals (release restores from it), and a tag per interface cost a call each.
        // In a dry run a group that does not exist yet cannot be named: ask about the
        // interface's current groups instead (the permission is the same).
        let step1 = allow_all
            .clone()
            .map(|g| vec![g])
            .unwrap_or_else(|| current.clone());
        let step2 = isolation
            .clone()
            .map(|g| vec![g])
            .unwrap_or_else(|| current.clone());
        swaps.push(swap_interface(ctx, eni, step1, step2, originals));
    }
    // The interfaces are independent: their swaps run at once (each one still two moves in
    // order, under its own lock). Every swap runs to its end even when another fails.
    let results = futures::future::join_all(swaps).await;
    results.into_iter().collect::<Result<Vec<()>, _>>()?;
    Ok((original_groups, skipped))
}

/// Step 4: detaches the instance profile (unless `detach` is false); returns what the
/// evidence says about it.
async fn detach_profile(
    ctx: &ActionCtx,
    id: &str,
    detach: bool,
    assocs: &[aws_sdk_ec2::types::IamInstanceProfileAssociation],
    recorded: &Originals,
    report: &mut Report,
) -> Result<Value, ActionError> {
    let mut profile = Value::Null;
    if let Some(a) = assocs.first() {
        let arn = a
            .iam_instance_profile()
            .and_then(|p| p.arn())
            .unwrap_or_default()
            .to_owned();
        profile = json!({"arn": arn, "association_id": a.association_id(), "detached": detach && !ctx.dry_run});
        if detach {
            if let Err(e) = create_tags(ctx, id, vec![tag(TAG_ORIGINAL_PROFILE, &arn)]).await {
                report.notes.push(format!("the {TAG_ORIGINAL_PROFILE} hint could not be written ({e}); the case's record holds the profile"));
            }
            let assoc_id = a.association_id().unwrap_or_default();
            if ctx.dry_run {
                // DisassociateIamInstanceProfile takes no DryRun flag.
                report.would.push(format!(
                    "ec2:DisassociateIamInstanceProfile {assoc_id} ({arn}) of {id}"
                ));
            } else {
                ctx.mutating(
                    "ec2",
                    "DisassociateIamInstanceProfile",
                    json!({"association_id": assoc_id, "instance_id": id, "instance_profile_arn": arn}),
                    ctx.aws
                        .ec2
                        .disassociate_iam_instance_profile()
                        .association_id(assoc_id)
                        .send(),
                    |_| json!({}),
                )
                .await?;
            }
        } else {
            report
                .notes
                .push("the instance profile was left attached (detach_profile: false)".into());
        }
    } else if let Some(arn) = &recorded.profile {
        profile = json!({"arn": arn, "detached": true, "note": "detached by an earlier run (the case's record)"});
    }
    Ok(profile)
}
