//! EC2 actions: record, preserve and contain an instance.
//!
//! Containment follows AWS's own runbook (AWSSupport-ContainEC2Instance): every network
//! interface first goes to an allow-all group, which turns its tracked connections into
//! untracked ones, then to an isolation group with no rule at all, which cuts them. Security
//! groups are set per interface (`ModifyNetworkInterfaceAttribute`), because AWS refuses
//! `ModifyInstanceAttribute(Groups)` on an instance with several interfaces.
//!
//! What a later run needs to undo containment is kept on AWS itself, as tags, so that
//! `ec2.release_instance` works from any machine: `irr:original-groups` on each interface,
//! `irr:original-profile` and `irr:original-asg` on the instance.
//!
//! In a dry run every mutating EC2 call is sent with `DryRun` (AWS answers whether it would be
//! permitted); Auto Scaling has no `DryRun`, so its calls are only reported.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{
    Filter, Instance, IpPermission, IpRange, Ipv6Range, NetworkInterface, ResourceType,
    SecurityGroup, Tag, TagSpecification,
};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::catalog::decl::*;
use crate::catalog::{Declaration, TypeSpec};

use super::{
    aws_error, is_transient, read_err, retry_transient, ts, Action, ActionCtx, ActionError,
    ActionOutput, AwsResource, TAG_CASE,
};

/// Tag on a network interface: its security groups before isolation (comma-separated ids).
pub const TAG_ORIGINAL_GROUPS: &str = "irr:original-groups";
/// Tag on an instance: the ARN of the instance profile detached by isolation.
pub const TAG_ORIGINAL_PROFILE: &str = "irr:original-profile";
/// Tag on an instance: the Auto Scaling group it was detached from by isolation.
pub const TAG_ORIGINAL_ASG: &str = "irr:original-asg";
/// Tag AWS puts on an instance an Auto Scaling group launched: the group's name. The
/// fallback when Auto Scaling itself cannot be asked.
pub const ASG_NAME_TAG: &str = "aws:autoscaling:groupName";
/// Tag on a security group irr made: what it is for (`isolation`, `allow-all`, ...).
pub const TAG_PURPOSE: &str = "irr:purpose";
/// Tag on a snapshot: the volume it was taken of.
pub const TAG_VOLUME: &str = "irr:volume";
/// Tag on a snapshot: the instance the volume was attached to.
pub const TAG_INSTANCE: &str = "irr:instance";

/// How long containment lets an optional read (Auto Scaling membership) take.
const OPTIONAL_READ_BUDGET: std::time::Duration = std::time::Duration::from_secs(20);

/// What stays possible after isolation, written into the evidence.
const ISOLATION_NOTES: &[&str] = &[
    "security groups do not cut ICMP flows, nor flows through NAT gateways, load balancers, PrivateLink endpoints or transit gateways, which stay tracked: add a network ACL step (deny all on the instance's subnet, or a quarantine subnet) to cut them",
    "for the moments between the two swaps each interface is in the allow-all group (all inbound and outbound allowed): this is what turns tracked flows into untracked ones",
    "detaching the instance profile stops new credentials from reaching the instance, but credentials already issued to it stay valid until they expire: run iam.revoke_sessions on the profile's role",
];

/// Parameters of the actions that take only an instance.
///
/// Each field's doc comment is the parameter's description in the catalog.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceParams {
    /// the instance
    #[schemars(extend("x-irr-type" = "instance_id"))]
    pub instance_id: String,
}

/// Parameters of `ec2.snapshot_volumes`.
///
/// Each field's doc comment is the parameter's description in the catalog.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotParams {
    /// the instance
    // The instance whose attached volumes are snapshotted.
    #[schemars(extend("x-irr-type" = "instance_id"))]
    pub instance_id: String,
    /// wait until every snapshot is completed
    #[schemars(extend("default" = true))]
    pub wait: Option<bool>,
    /// wait budget per GiB of volume, on top of 10 minutes
    // In seconds (a first, full snapshot of a large volume can take hours).
    #[schemars(extend("default" = 60))]
    pub wait_seconds_per_gib: Option<u64>,
}

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

/// Parameters of `ec2.tag_resources`.
///
/// Each field's doc comment is the parameter's description in the catalog.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TagParams {
    /// EC2 resource ids (instances, volumes, snapshots, ...)
    pub resource_ids: Vec<String>,
    /// tag key -> value
    // Existing values of the same keys are replaced.
    pub tags: BTreeMap<String, String>,
}

/// AWS's limit on a tag value, in characters.
const TAG_VALUE_MAX: usize = 256;

/// A comma-separated group list (an `irr:original-groups` tag).
fn split_groups(v: &str) -> Vec<String> {
    v.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn filter(name: &str, values: impl IntoIterator<Item = impl Into<String>>) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.into_iter().map(Into::into).collect()))
        .build()
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

fn tag_value<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

fn tags_json(tags: &[Tag]) -> Value {
    Value::Object(
        tags.iter()
            .filter_map(|t| {
                Some((
                    t.key()?.to_owned(),
                    Value::from(t.value().unwrap_or_default()),
                ))
            })
            .collect(),
    )
}

fn run_tags(ctx: &ActionCtx) -> Vec<Tag> {
    ctx.run_tags().iter().map(|(k, v)| tag(k, v)).collect()
}

fn tag_spec(kind: ResourceType, tags: Vec<Tag>) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(kind)
        .set_tags(Some(tags))
        .build()
}

// ---- evidence shapes ------------------------------------------------------------------------

fn perm_json(p: &IpPermission) -> Value {
    json!({
        "protocol": p.ip_protocol(),
        "from_port": p.from_port(),
        "to_port": p.to_port(),
        "ipv4": p.ip_ranges().iter().map(|r| json!({"cidr": r.cidr_ip(), "description": r.description()})).collect::<Vec<_>>(),
        "ipv6": p.ipv6_ranges().iter().map(|r| json!({"cidr": r.cidr_ipv6(), "description": r.description()})).collect::<Vec<_>>(),
        "groups": p.user_id_group_pairs().iter().map(|g| json!({"group_id": g.group_id(), "user_id": g.user_id(), "description": g.description()})).collect::<Vec<_>>(),
        "prefix_lists": p.prefix_list_ids().iter().map(|l| l.prefix_list_id()).collect::<Vec<_>>(),
    })
}

fn group_json(g: &SecurityGroup) -> Value {
    json!({
        "group_id": g.group_id(),
        "group_name": g.group_name(),
        "description": g.description(),
        "vpc_id": g.vpc_id(),
        "owner_id": g.owner_id(),
        "ingress": g.ip_permissions().iter().map(perm_json).collect::<Vec<_>>(),
        "egress": g.ip_permissions_egress().iter().map(perm_json).collect::<Vec<_>>(),
        "tags": tags_json(g.tags()),
    })
}

fn eni_json(n: &NetworkInterface) -> Value {
    json!({
        "network_interface_id": n.network_interface_id(),
        "description": n.description(),
        "interface_type": n.interface_type().map(|t| t.as_str()),
        "status": n.status().map(|s| s.as_str()),
        "vpc_id": n.vpc_id(),
        "subnet_id": n.subnet_id(),
        "availability_zone": n.availability_zone(),
        "mac_address": n.mac_address(),
        "private_ip_address": n.private_ip_address(),
        "private_ip_addresses": n.private_ip_addresses().iter().map(|a| a.private_ip_address()).collect::<Vec<_>>(),
        "ipv6_addresses": n.ipv6_addresses().iter().map(|a| a.ipv6_address()).collect::<Vec<_>>(),
        "public_ip": n.association().and_then(|a| a.public_ip()),
        "source_dest_check": n.source_dest_check(),
        "requester_managed": n.requester_managed(),
        "groups": n.groups().iter().map(|g| json!({"group_id": g.group_id(), "group_name": g.group_name()})).collect::<Vec<_>>(),
        "attachment": n.attachment().map(|a| json!({
            "attachment_id": a.attachment_id(),
            "device_index": a.device_index(),
            "instance_id": a.instance_id(),
            "status": a.status().map(|s| s.as_str()),
            "delete_on_termination": a.delete_on_termination(),
            "attach_time": ts(a.attach_time()),
        })),
        "tags": tags_json(n.tag_set()),
    })
}

fn instance_json(i: &Instance) -> Value {
    json!({
        "instance_id": i.instance_id(),
        "instance_type": i.instance_type().map(|t| t.as_str()),
        "image_id": i.image_id(),
        "state": i.state().and_then(|s| s.name()).map(|s| s.as_str()),
        "launch_time": ts(i.launch_time()),
        "vpc_id": i.vpc_id(),
        "subnet_id": i.subnet_id(),
        "availability_zone": i.placement().and_then(|p| p.availability_zone()),
        "private_ip_address": i.private_ip_address(),
        "public_ip_address": i.public_ip_address(),
        "private_dns_name": i.private_dns_name(),
        "public_dns_name": i.public_dns_name(),
        "key_name": i.key_name(),
        "architecture": i.architecture().map(|a| a.as_str()),
        "platform_details": i.platform_details(),
        "root_device_name": i.root_device_name(),
        "root_device_type": i.root_device_type().map(|t| t.as_str()),
        "iam_instance_profile": i.iam_instance_profile().map(|p| json!({"arn": p.arn(), "id": p.id()})),
        "security_groups": i.security_groups().iter().map(|g| json!({"group_id": g.group_id(), "group_name": g.group_name()})).collect::<Vec<_>>(),
        "network_interfaces": i.network_interfaces().iter().map(|n| n.network_interface_id()).collect::<Vec<_>>(),
        "block_device_mappings": i.block_device_mappings().iter().map(|m| json!({
            "device_name": m.device_name(),
            "volume_id": m.ebs().and_then(|e| e.volume_id()),
            "delete_on_termination": m.ebs().and_then(|e| e.delete_on_termination()),
            "status": m.ebs().and_then(|e| e.status()).map(|s| s.as_str()),
            "attach_time": ts(m.ebs().and_then(|e| e.attach_time())),
        })).collect::<Vec<_>>(),
        "metadata_options": i.metadata_options().map(|m| json!({
            "http_tokens": m.http_tokens().map(|t| t.as_str()),
            "http_endpoint": m.http_endpoint().map(|t| t.as_str()),
            "http_put_response_hop_limit": m.http_put_response_hop_limit(),
        })),
        "source_dest_check": i.source_dest_check(),
        "tags": tags_json(i.tags()),
    })
}

fn volume_json(v: &aws_sdk_ec2::types::Volume) -> Value {
    json!({
        "volume_id": v.volume_id(),
        "size_gib": v.size(),
        "volume_type": v.volume_type().map(|t| t.as_str()),
        "iops": v.iops(),
        "throughput": v.throughput(),
        "encrypted": v.encrypted(),
        "kms_key_id": v.kms_key_id(),
        "snapshot_id": v.snapshot_id(),
        "availability_zone": v.availability_zone(),
        "state": v.state().map(|s| s.as_str()),
        "create_time": ts(v.create_time()),
        "multi_attach_enabled": v.multi_attach_enabled(),
        "attachments": v.attachments().iter().map(|a| json!({
            "instance_id": a.instance_id(),
            "device": a.device(),
            "state": a.state().map(|s| s.as_str()),
            "delete_on_termination": a.delete_on_termination(),
            "attach_time": ts(a.attach_time()),
        })).collect::<Vec<_>>(),
        "tags": tags_json(v.tags()),
    })
}

fn snapshot_json(s: &aws_sdk_ec2::types::Snapshot) -> Value {
    json!({
        "snapshot_id": s.snapshot_id(),
        "volume_id": s.volume_id(),
        "state": s.state().map(|s| s.as_str()),
        "progress": s.progress(),
        "start_time": ts(s.start_time()),
        "volume_size_gib": s.volume_size(),
        "encrypted": s.encrypted(),
        "description": s.description(),
        "tags": tags_json(s.tags()),
    })
}

// ---- reads ----------------------------------------------------------------------------------

async fn describe_instance(ctx: &ActionCtx, id: &str) -> Result<Instance, ActionError> {
    let out = match ctx
        .aws
        .ec2
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
    {
        Ok(o) => o,
        Err(e) if e.code().is_some_and(|c| c.starts_with("InvalidInstanceID")) => {
            return Err(ActionError::Target(format!("no such instance: {id}")))
        }
        Err(e) => return Err(aws_error("ec2", "DescribeInstances", &e)),
    };
    out.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find(|i| i.instance_id() == Some(id))
        .cloned()
        .ok_or_else(|| ActionError::Target(format!("no such instance: {id}")))
}

/// The instance's network interfaces, by device index.
async fn instance_enis(ctx: &ActionCtx, id: &str) -> Result<Vec<NetworkInterface>, ActionError> {
    let mut enis: Vec<NetworkInterface> = ctx
        .aws
        .ec2
        .describe_network_interfaces()
        .filters(filter("attachment.instance-id", [id]))
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(read_err("ec2", "DescribeNetworkInterfaces"))?;
    enis.sort_by_key(|n| {
        n.attachment()
            .and_then(|a| a.device_index())
            .unwrap_or(i32::MAX)
    });
    Ok(enis)
}

async fn describe_groups(
    ctx: &ActionCtx,
    filters: Vec<Filter>,
) -> Result<Vec<SecurityGroup>, ActionError> {
    ctx.aws
        .ec2
        .describe_security_groups()
        .set_filters(Some(filters))
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(read_err("ec2", "DescribeSecurityGroups"))
}

/// Current (associated or associating) instance profile associations of the instance.
async fn profile_associations(
    ctx: &ActionCtx,
    id: &str,
) -> Result<Vec<aws_sdk_ec2::types::IamInstanceProfileAssociation>, ActionError> {
    let all = ctx
        .aws
        .ec2
        .describe_iam_instance_profile_associations()
        .filters(filter("instance-id", [id]))
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(read_err("ec2", "DescribeIamInstanceProfileAssociations"))?;
    use aws_sdk_ec2::types::IamInstanceProfileAssociationState as S;
    Ok(all
        .into_iter()
        .filter(|a| matches!(a.state(), Some(S::Associated) | Some(S::Associating)))
        .collect())
}

fn assoc_json(a: &aws_sdk_ec2::types::IamInstanceProfileAssociation) -> Value {
    json!({
        "association_id": a.association_id(),
        "instance_profile_arn": a.iam_instance_profile().and_then(|p| p.arn()),
        "state": a.state().map(|s| s.as_str()),
    })
}

/// The instance's Auto Scaling group and lifecycle state, if it belongs to one.
async fn autoscaling_membership(
    ctx: &ActionCtx,
    id: &str,
) -> Result<Option<(String, String)>, ActionError> {
    let out = ctx
        .aws
        .autoscaling
        .describe_auto_scaling_instances()
        .instance_ids(id)
        .send()
        .await
        .map_err(read_err("autoscaling", "DescribeAutoScalingInstances"))?;
    Ok(out
        .auto_scaling_instances()
        .iter()
        .find(|i| i.instance_id() == Some(id))
        .map(|i| {
            (
                i.auto_scaling_group_name().unwrap_or_default().to_owned(),
                i.lifecycle_state().unwrap_or_default().to_owned(),
            )
        }))
}

/// EBS volumes attached to the instance as `(device, volume id)`, root device first, then by
/// device name.
fn attached_volumes(i: &Instance) -> Vec<(String, String)> {
    let root = i.root_device_name().unwrap_or_default();
    let mut v: Vec<(String, String)> = i
        .block_device_mappings()
        .iter()
        .filter_map(|m| {
            Some((
                m.device_name().unwrap_or_default().to_owned(),
                m.ebs()?.volume_id()?.to_owned(),
            ))
        })
        .collect();
    v.sort_by(|a, b| (a.0 != root, &a.0).cmp(&(b.0 != root, &b.0)));
    v
}

// ---- ec2.capture_instance_metadata ----------------------------------------------------------

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
    let ec2 = &ctx.aws.ec2;
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

    let volumes = ec2
        .describe_volumes()
        .filters(filter("attachment.instance-id", [id]))
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(read_err("ec2", "DescribeVolumes"));
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
    artifacts.push(ctx.evidence(
        "instance-profile.json",
        &json!({"instance_id": id, "captured": assocs.is_some(), "associations": profiles}),
        "ec2:DescribeIamInstanceProfileAssociations",
    )?);

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
    artifacts.push(ctx.recorder.artifact(
        &ctx.step_id,
        "console-output.txt",
        console.as_bytes(),
        "ec2:GetConsoleOutput",
    )?);
    Ok(ActionOutput::default().with("artifacts", artifacts))
}

// ---- ec2.protect_instance -------------------------------------------------------------------

/// `ec2.protect_instance`: its declaration (see [`Action`]); the parameters are [`InstanceParams`].
pub struct ProtectInstance;

impl Action for ProtectInstance {
    type Params = InstanceParams;
    const DECLARATION: Declaration = Declaration {
            name: "ec2.protect_instance",
            summary: "termination protection on, shutdown behaviour stop, DeleteOnTermination off on every volume",
            exactly_one_of: &[],
            outputs: &[out("previous", ANY_MAP, "the settings before the change")],
            api_calls: &["ec2:DescribeInstances", "ec2:DescribeInstanceAttribute", "ec2:ModifyInstanceAttribute"],
            permissions: &[
                perm("ec2:DescribeInstances", ANY),
                perm("ec2:DescribeInstanceAttribute", ANY),
                perm("ec2:ModifyInstanceAttribute", INSTANCE),
            ],
            mutating: true,
            idempotency: "setting a value already set changes nothing",
            undo: Some("ec2:ModifyInstanceAttribute back to the recorded previous values"),
    };
    async fn run(ctx: &ActionCtx, params: InstanceParams) -> Result<ActionOutput, ActionError> {
        protect_instance(ctx, params).await
    }
}

/// `ec2.protect_instance`: termination protection on, shutdown behaviour `stop`, and
/// `DeleteOnTermination` off on every EBS volume, so neither an API call nor a shutdown from
/// inside the instance destroys the disks. Output `previous` (the three settings before).
/// Idempotent: settings already in place are not touched. Undo: `ModifyInstanceAttribute`
/// back to `previous`.
pub async fn protect_instance(
    ctx: &ActionCtx,
    p: InstanceParams,
) -> Result<ActionOutput, ActionError> {
    use aws_sdk_ec2::types::{
        AttributeBooleanValue, EbsInstanceBlockDeviceSpecification, InstanceAttributeName,
        InstanceBlockDeviceMappingSpecification,
    };
    let id = p.instance_id.as_str();
    let ec2 = &ctx.aws.ec2;
    let inst = describe_instance(ctx, id).await?;
    // The current settings are read to record them; protection never waits on that read:
    // when it fails (a gap), the setting is put anyway.
    let term = ec2
        .describe_instance_attribute()
        .instance_id(id)
        .attribute(InstanceAttributeName::DisableApiTermination)
        .send()
        .await
        .map_err(read_err("ec2", "DescribeInstanceAttribute"))
        .map(|o| {
            o.disable_api_termination()
                .and_then(|v| v.value())
                .unwrap_or(false)
        });
    let term = ctx.or_gap("ec2:DescribeInstanceAttribute(disableApiTermination)", term);
    let shutdown = ec2
        .describe_instance_attribute()
        .instance_id(id)
        .attribute(InstanceAttributeName::InstanceInitiatedShutdownBehavior)
        .send()
        .await
        .map_err(read_err("ec2", "DescribeInstanceAttribute"))
        .map(|o| {
            o.instance_initiated_shutdown_behavior()
                .and_then(|v| v.value())
                .unwrap_or("stop")
                .to_owned()
        });
    let shutdown = ctx.or_gap(
        "ec2:DescribeInstanceAttribute(instanceInitiatedShutdownBehavior)",
        shutdown,
    );
    let mut dot = Map::new();
    let mut to_keep = Vec::new();
    for m in inst.block_device_mappings() {
        let (Some(dev), Some(ebs)) = (m.device_name(), m.ebs()) else {
            continue;
        };
        let on = ebs.delete_on_termination().unwrap_or(false);
        dot.insert(
            dev.to_owned(),
            json!({"volume_id": ebs.volume_id(), "delete_on_termination": on}),
        );
        if on {
            to_keep.push((dev.to_owned(), ebs.volume_id().map(str::to_owned)));
        }
    }
    let previous = json!({
        "disable_api_termination": term,
        "instance_initiated_shutdown_behavior": shutdown,
        "delete_on_termination": dot,
    });
    let artifact = ctx.evidence(
        "protection-before.json",
        &json!({"instance_id": id, "previous": previous}),
        "ec2:DescribeInstanceAttribute",
    )?;
    let mut changed = Vec::new();
    if term != Some(true) {
        ctx.mutating_dry(
            "ec2",
            "ModifyInstanceAttribute",
            json!({"instance_id": id, "disable_api_termination": true}),
            ec2.modify_instance_attribute()
                .instance_id(id)
                .disable_api_termination(AttributeBooleanValue::builder().value(true).build())
                .dry_run(ctx.dry_run)
                .send(),
            |_| json!({"previous": term}),
        )
        .await?;
        changed.push("disable_api_termination");
    }
    if shutdown.as_deref() != Some("stop") {
        ctx.mutating_dry(
            "ec2",
            "ModifyInstanceAttribute",
            json!({"instance_id": id, "instance_initiated_shutdown_behavior": "stop"}),
            ec2.modify_instance_attribute()
                .instance_id(id)
                // The Attribute/Value form (documented for this attribute) rather than the
                // structured one, which moto 5.2 ignores (docs/emulator-notes.md).
                .attribute(InstanceAttributeName::InstanceInitiatedShutdownBehavior)
                .value("stop")
                .dry_run(ctx.dry_run)
                .send(),
            |_| json!({"previous": shutdown}),
        )
        .await?;
        changed.push("instance_initiated_shutdown_behavior");
    }
    if !to_keep.is_empty() {
        let mappings = to_keep
            .iter()
            .map(|(dev, vol)| {
                InstanceBlockDeviceMappingSpecification::builder()
                    .device_name(dev)
                    .ebs(
                        EbsInstanceBlockDeviceSpecification::builder()
                            .set_volume_id(vol.clone())
                            .delete_on_termination(false)
                            .build(),
                    )
                    .build()
            })
            .collect();
        ctx.mutating_dry(
            "ec2",
            "ModifyInstanceAttribute",
            json!({"instance_id": id, "block_device_mappings": to_keep.iter().map(|(d, v)| json!({"device_name": d, "volume_id": v, "delete_on_termination": false})).collect::<Vec<_>>()}),
            ec2.modify_instance_attribute()
                .instance_id(id)
                .set_block_device_mappings(Some(mappings))
                .dry_run(ctx.dry_run)
                .send(),
            |_| json!({}),
        )
        .await?;
        changed.push("delete_on_termination");
    }
    Ok(ActionOutput::default()
        .with("previous", previous)
        .with(
            "changed",
            changed.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .with("artifacts", vec![artifact]))
}

// ---- ec2.snapshot_volumes -------------------------------------------------------------------

struct SnapshotDone {
    volume_id: String,
    snapshot_id: String,
    state: String,
    reused: bool,
}

/// `ec2.snapshot_volumes`: its declaration (see [`Action`]); the parameters are [`SnapshotParams`].
pub struct SnapshotVolumes;

impl Action for SnapshotVolumes {
    type Params = SnapshotParams;
    const DECLARATION: Declaration = Declaration {
        name: "ec2.snapshot_volumes",
        summary:
            "snapshot every attached volume concurrently, tag with the case, wait until completed",
        exactly_one_of: &[],
        outputs: &[
            out(
                "snapshot_ids",
                STRINGS,
                "one snapshot per volume, in device order",
            ),
            out("volumes", STRING_MAP, "volume id -> snapshot id"),
        ],
        api_calls: &[
            "ec2:DescribeInstances",
            "ec2:DescribeVolumes",
            "ec2:DescribeSnapshots",
            "ec2:CreateSnapshot",
        ],
        permissions: &[
            perm("ec2:DescribeInstances", ANY),
            perm("ec2:DescribeVolumes", ANY),
            perm("ec2:DescribeSnapshots", ANY),
            perm(
                "ec2:CreateSnapshot",
                &[
                    "arn:aws:ec2:{region}:{account}:volume/*",
                    "arn:aws:ec2:{region}::snapshot/*",
                ],
            ),
            // Tags are set on creation (TagSpecifications), which needs ec2:CreateTags.
            perm("ec2:CreateTags", &["arn:aws:ec2:{region}::snapshot/*"]),
        ],
        mutating: true,
        idempotency: "an existing snapshot tagged with the case and the volume is reused",
        undo: None,
    };
    async fn run(ctx: &ActionCtx, params: SnapshotParams) -> Result<ActionOutput, ActionError> {
        snapshot_volumes(ctx, params).await
    }
}

/// `ec2.snapshot_volumes`: one snapshot of every attached EBS volume, taken concurrently,
/// tagged `irr:case`, `irr:run`, `irr:volume`, `irr:instance`; waits until every one is
/// completed (budget: 10 minutes plus `wait_seconds_per_gib` per GiB of the volume, polled
/// with a growing interval; a first snapshot of a big volume takes long). Outputs
/// `snapshot_ids` (root volume first, then by device name) and `volumes` (volume id ->
/// snapshot id).
///
/// Idempotent: a pending or completed snapshot of the volume tagged with this case is reused,
/// never a second one. Undo: `ec2:DeleteSnapshot` (not done by irr: snapshots are evidence).
pub async fn snapshot_volumes(
    ctx: &ActionCtx,
    p: SnapshotParams,
) -> Result<ActionOutput, ActionError> {
    let id = p.instance_id.as_str();
    let inst = describe_instance(ctx, id).await?;
    // The volumes' details are evidence and size the wait; the snapshots never wait on
    // them: without them (a gap) each wait gets the 10-minute base budget. They are read by
    // attachment, not by the ids of the block device mappings, so that a volume attached
    // but missing from the mappings (moto shows one for instances an Auto Scaling group
    // launched) is snapshotted too: every volume EC2 says is attached gets a snapshot.
    let described = ctx
        .aws
        .ec2
        .describe_volumes()
        .filters(filter("attachment.instance-id", [id]))
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(read_err("ec2", "DescribeVolumes"));
    let described = ctx.or_gap("ec2:DescribeVolumes", described);
    let described_volumes: &[aws_sdk_ec2::types::Volume] = described.as_deref().unwrap_or_default();
    let mut vols = attached_volumes(&inst);
    for v in described_volumes {
        let Some(vol) = v.volume_id() else { continue };
        if vols.iter().any(|(_, known)| known == vol) {
            continue;
        }
        let device = v
            .attachments()
            .iter()
            .find(|a| a.instance_id() == Some(id))
            .and_then(|a| a.device())
            .unwrap_or_default();
        vols.push((device.to_owned(), vol.to_owned()));
    }
    if vols.is_empty() {
        return Err(ActionError::Target(format!(
            "instance {id} has no EBS volume attached"
        )));
    }
    let sizes: BTreeMap<String, i32> = described_volumes
        .iter()
        .filter_map(|v| Some((v.volume_id()?.to_owned(), v.size().unwrap_or(0))))
        .collect();
    let before = ctx.evidence(
        "volumes-before.json",
        &json!({"instance_id": id, "captured": described.is_some(), "volumes": described_volumes.iter().map(volume_json).collect::<Vec<_>>()}),
        "ec2:DescribeVolumes",
    )?;
    let per_gib = p.wait_seconds_per_gib.unwrap_or(60);
    let wait = p.wait.unwrap_or(true);
    let results = futures::future::try_join_all(vols.iter().map(|(dev, vol)| {
        let size = sizes.get(vol).copied().unwrap_or(0);
        snapshot_one(ctx, id, dev, vol, size, wait, per_gib)
    }))
    .await?;

    let mut ids = Vec::new();
    let mut map = Map::new();
    for r in &results {
        ids.push(Value::from(r.snapshot_id.clone()));
        map.insert(r.volume_id.clone(), r.snapshot_id.clone().into());
        if !ctx.dry_run {
            let mut details = Map::new();
            details.insert("volume_id".into(), r.volume_id.clone().into());
            details.insert("state".into(), r.state.clone().into());
            details.insert("instance_id".into(), id.into());
            ctx.recorder.resource(AwsResource {
                kind: "ebs-snapshot".into(),
                id: r.snapshot_id.clone(),
                details,
            });
        }
    }
    let described: Vec<Value> = if ctx.dry_run {
        Vec::new()
    } else {
        let got = ctx
            .aws
            .ec2
            .describe_snapshots()
            .set_snapshot_ids(Some(
                results.iter().map(|r| r.snapshot_id.clone()).collect(),
            ))
            .send()
            .await
            .map_err(read_err("ec2", "DescribeSnapshots"));
        ctx.or_gap("ec2:DescribeSnapshots", got)
            .map(|o| o.snapshots().iter().map(snapshot_json).collect())
            .unwrap_or_default()
    };
    let after = ctx.evidence(
        "snapshots.json",
        &json!({"instance_id": id, "dry_run": ctx.dry_run, "snapshots": results.iter().map(|r| json!({
            "volume_id": r.volume_id, "snapshot_id": r.snapshot_id, "state": r.state, "reused": r.reused,
        })).collect::<Vec<_>>(), "described": described}),
        "ec2:DescribeSnapshots",
    )?;
    Ok(ActionOutput::default()
        .with("snapshot_ids", ids)
        .with("volumes", map)
        .with("artifacts", vec![before, after]))
}

async fn snapshot_one(
    ctx: &ActionCtx,
    instance_id: &str,
    device: &str,
    volume_id: &str,
    size_gib: i32,
    wait: bool,
    per_gib: u64,
) -> Result<SnapshotDone, ActionError> {
    let ec2 = &ctx.aws.ec2;
    let (snapshot_id, mut state, reused) = match case_snapshot(ctx, volume_id).await? {
        Some((id, state)) => (id, state, true),
        None => {
            let mut tags = run_tags(ctx);
            tags.push(tag(TAG_VOLUME, volume_id));
            tags.push(tag(TAG_INSTANCE, instance_id));
            tags.push(tag("Name", &format!("irr-{}-{volume_id}", ctx.case_id)));
            // CreateSnapshot takes no client token: a retry after an answer was lost (a
            // dropped connection, a 500 after the work was done) would take a second
            // snapshot. So the SDK does not retry this call; we do, and look for the
            // case's snapshot of the volume before every new attempt.
            let mut attempt = 0;
            let mut delay = std::time::Duration::from_millis(500);
            loop {
                attempt += 1;
                let created = ctx
                    .mutating_dry(
                        "ec2",
                        "CreateSnapshot",
                        json!({"volume_id": volume_id, "instance_id": instance_id, "device": device}),
                        ec2.create_snapshot()
                            .volume_id(volume_id)
                            .description(format!(
                                "irr-case-{}-run-{}:{volume_id}({device})-of-{instance_id}",
                                ctx.case_id, ctx.run_id
                            ))
                            .tag_specifications(tag_spec(ResourceType::Snapshot, tags.clone()))
                            .dry_run(ctx.dry_run)
                            .customize()
                            .config_override(
                                aws_sdk_ec2::config::Builder::default().retry_config(
                                    aws_sdk_ec2::config::retry::RetryConfig::disabled(),
                                ),
                            )
                            .send(),
                        |o| json!({"snapshot_id": o.snapshot_id(), "state": o.state().map(|s| s.as_str())}),
                    )
                    .await;
                match created {
                    Ok(None) => {
                        return Ok(SnapshotDone {
                            volume_id: volume_id.to_owned(),
                            snapshot_id: format!("dry-run:{volume_id}"),
                            state: "dry-run".into(),
                            reused: false,
                        })
                    }
                    Ok(Some(o)) => {
                        break (
                            o.snapshot_id().unwrap_or_default().to_owned(),
                            o.state().map(|s| s.as_str().to_owned()).unwrap_or_default(),
                            false,
                        )
                    }
                    Err(e) if attempt < 8 && retryable_create(&e) => {
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(std::time::Duration::from_secs(16));
                        if ctx.dry_run {
                            continue;
                        }
                        // EC2 reads are eventually consistent: against AWS a snapshot made
                        // a moment ago may not be listed yet; the wait above helps.
                        if let Some((id, state)) = case_snapshot(ctx, volume_id).await? {
                            break (id, state, true);
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    };
    if wait && state != "completed" {
        state = wait_for_snapshot(ctx, &snapshot_id, size_gib, per_gib).await?;
    }
    Ok(SnapshotDone {
        volume_id: volume_id.to_owned(),
        snapshot_id,
        state,
        reused,
    })
}

/// The newest usable (completed, else pending) snapshot of the volume tagged with this case,
/// as `(id, state)`. An `error` one is useless evidence and ignored.
async fn case_snapshot(
    ctx: &ActionCtx,
    volume_id: &str,
) -> Result<Option<(String, String)>, ActionError> {
    use aws_sdk_ec2::types::SnapshotState;
    let existing = ctx
        .aws
        .ec2
        .describe_snapshots()
        .owner_ids("self")
        .filters(filter(&format!("tag:{TAG_CASE}"), [ctx.case_id.as_str()]))
        .filters(filter(&format!("tag:{TAG_VOLUME}"), [volume_id]))
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(read_err("ec2", "DescribeSnapshots"))?;
    let mut usable: Vec<_> = existing
        .iter()
        .filter(|s| {
            matches!(
                s.state(),
                Some(SnapshotState::Completed) | Some(SnapshotState::Pending)
            )
        })
        .collect();
    usable.sort_by_key(|s| {
        (
            s.state() == Some(&SnapshotState::Completed),
            s.start_time().map(|t| t.as_nanos()).unwrap_or(0),
        )
    });
    Ok(usable.last().map(|s| {
        (
            s.snapshot_id().unwrap_or_default().to_owned(),
            s.state().map(|s| s.as_str().to_owned()).unwrap_or_default(),
        )
    }))
}

/// Errors after which a call may be tried again: throttling, server errors, and failures
/// to get an answer at all (`dispatch`: connection reset, timeout).
fn retryable_create(e: &ActionError) -> bool {
    is_transient(e)
        || matches!(
            e.code(),
            "dispatch"
                | "RequestLimitExceeded"
                | "InternalError"
                | "InternalFailure"
                | "ServiceUnavailable"
                | "Unavailable"
        )
}

/// Polls a snapshot until it is completed, for at most 10 minutes plus `per_gib` seconds per
/// GiB of the volume (cloud-forensics-utils #354: a fixed number of retries fails on big
/// volumes). The interval grows from 2 s to 30 s.
async fn wait_for_snapshot(
    ctx: &ActionCtx,
    snapshot_id: &str,
    size_gib: i32,
    per_gib: u64,
) -> Result<String, ActionError> {
    use aws_sdk_ec2::types::SnapshotState;
    let budget = std::time::Duration::from_secs(600 + per_gib * size_gib.max(1) as u64);
    let start = std::time::Instant::now();
    let mut interval = std::time::Duration::from_secs(2);
    loop {
        // Right after CreateSnapshot, EC2's eventually consistent reads may not know the
        // snapshot yet: keep polling within the budget.
        let out = match ctx
            .aws
            .ec2
            .describe_snapshots()
            .snapshot_ids(snapshot_id)
            .send()
            .await
        {
            Ok(o) => Some(o),
            Err(e) if e.code() == Some("InvalidSnapshot.NotFound") => None,
            Err(e) => return Err(aws_error("ec2", "DescribeSnapshots", &e)),
        };
        let snap = out.as_ref().and_then(|o| o.snapshots().first());
        match snap.and_then(|s| s.state()) {
            Some(SnapshotState::Completed) => return Ok("completed".into()),
            Some(SnapshotState::Error) => {
                return Err(ActionError::Target(format!(
                    "snapshot {snapshot_id} failed: {}",
                    snap.and_then(|s| s.state_message()).unwrap_or("no message")
                )))
            }
            _ => {}
        }
        if start.elapsed() >= budget {
            return Err(ActionError::Aws {
                service: "ec2".into(),
                operation: "DescribeSnapshots".into(),
                code: "timeout".into(),
                message: format!(
                    "snapshot {snapshot_id} ({size_gib} GiB) not completed after {} s (progress {}); it goes on in AWS: run the step again to wait for it",
                    budget.as_secs(),
                    snap.and_then(|s| s.progress()).unwrap_or("?")
                ),
                request_id: None,
            });
        }
        tokio::time::sleep(interval).await;
        interval = (interval * 2).min(std::time::Duration::from_secs(30));
    }
}

// ---- ec2.isolate_instance -------------------------------------------------------------------

/// What a security group irr makes should allow.
enum GroupRules {
    /// All protocols in and out, IPv4 and IPv6 (turns tracked flows into untracked ones).
    AllowAll,
    /// Nothing out; nothing in, or TCP 22 from one CIDR.
    Isolation { ssh_from: Option<String> },
}

fn is_v6(cidr: &str) -> bool {
    matches!(cidr.parse::<ipnet::IpNet>(), Ok(ipnet::IpNet::V6(_)))
}

fn all_traffic(cidrs: &[&str]) -> IpPermission {
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

fn ssh_from(cidr: &str) -> IpPermission {
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

fn allows_all_from(perms: &[IpPermission], cidr: &str) -> bool {
    perms.iter().any(|p| {
        p.ip_protocol() == Some("-1")
            && (p.ip_ranges().iter().any(|r| r.cidr_ip() == Some(cidr))
                || p.ipv6_ranges().iter().any(|r| r.cidr_ipv6() == Some(cidr)))
    })
}

fn is_exactly_ssh_from(p: &IpPermission, cidr: &str) -> bool {
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
fn group_name(s: &str) -> String {
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
async fn ensure_group(
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
async fn reconcile_rules(
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
    change_rules(ctx, gid, "RevokeSecurityGroupEgress", &drop_out, || {
        ec2.revoke_security_group_egress()
            .group_id(gid)
            .set_ip_permissions(Some(drop_out.clone()))
            .dry_run(dry)
            .send()
    })
    .await?;
    change_rules(ctx, gid, "RevokeSecurityGroupIngress", &drop_in, || {
        ec2.revoke_security_group_ingress()
            .group_id(gid)
            .set_ip_permissions(Some(drop_in.clone()))
            .dry_run(dry)
            .send()
    })
    .await?;
    change_rules(ctx, gid, "AuthorizeSecurityGroupIngress", &add_in, || {
        ec2.authorize_security_group_ingress()
            .group_id(gid)
            .set_ip_permissions(Some(add_in.clone()))
            .dry_run(dry)
            .send()
    })
    .await?;
    change_rules(ctx, gid, "AuthorizeSecurityGroupEgress", &add_out, || {
        ec2.authorize_security_group_egress()
            .group_id(gid)
            .set_ip_permissions(Some(add_out.clone()))
            .dry_run(dry)
            .send()
    })
    .await?;
    Ok(())
}

async fn create_tags(ctx: &ActionCtx, resource: &str, tags: Vec<Tag>) -> Result<(), ActionError> {
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

async fn delete_tags(ctx: &ActionCtx, resource: &str, keys: &[&str]) -> Result<(), ActionError> {
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

async fn set_eni_groups(
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

// ---- the two-step swap: one unit ------------------------------------------------------------

/// Swaps still running, in tasks of their own: [`settle`] waits for them.
static SWAPS_IN_FLIGHT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// Woken whenever a swap ends.
static SWAP_ENDED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// One lock per interface: a retried or concurrent isolation of the same interface waits
/// for the swap in flight instead of interleaving its moves with it.
fn interface_lock(eni: &str) -> std::sync::Arc<tokio::sync::Mutex<()>> {
    static LOCKS: std::sync::OnceLock<
        std::sync::Mutex<BTreeMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>,
    > = std::sync::OnceLock::new();
    let locks = LOCKS.get_or_init(Default::default);
    let mut map = locks.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(eni.to_owned()).or_default().clone()
}

/// Waits until every interface swap started by this process has ended (moved to the
/// isolation group, compensated, or failed loudly). The executor calls it before `finally`
/// and before sealing, so no swap is cut off by the end of the run or the process.
pub async fn settle() {
    use std::sync::atomic::Ordering;
    loop {
        let ended = SWAP_ENDED.notified();
        if SWAPS_IN_FLIGHT.load(Ordering::SeqCst) == 0 {
            return;
        }
        ended.await;
    }
}

/// Counts a swap as in flight for as long as it lives (even if its task panics).
struct InFlight;

impl InFlight {
    fn start() -> InFlight {
        SWAPS_IN_FLIGHT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        SWAPS_IN_FLIGHT.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        SWAP_ENDED.notify_waiters();
    }
}

/// Moves one interface to the allow-all group, then to the isolation group, as one unit that
/// a step `timeout` or Ctrl-C cannot cut in half: the two moves run in a task of their own,
/// which goes on to its end even when the step's future is dropped (and [`settle`] waits for
/// it). If the move to the isolation group fails (or the first move's outcome is unknown),
/// a compensating move follows: to the isolation group again, else back to the recorded
/// `originals`; every move is journaled, and the step fails loudly whatever the
/// compensation achieved.
async fn swap_interface(
    ctx: &ActionCtx,
    eni: &str,
    allow_all: Vec<String>,
    isolation: Vec<String>,
    originals: Vec<String>,
) -> Result<(), ActionError> {
    let ctx = ctx.clone();
    let name = eni.to_owned();
    let eni = eni.to_owned();
    let lock = interface_lock(&eni);
    let guard = InFlight::start();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _guard = guard;
        let _held = lock.lock_owned().await;
        let result = swap_unit(&ctx, &eni, &allow_all, &isolation, &originals).await;
        // The step gave up waiting (its timeout fired): a failure must still be said.
        if let Err(Err(e)) = tx.send(result) {
            ctx.gap(
                &format!("ec2:ModifyNetworkInterfaceAttribute ({eni}: the swap ended after its step timed out)"),
                &e,
            );
        }
    });
    match rx.await {
        Ok(r) => r,
        Err(_) => Err(ActionError::Target(format!(
            "the security group swap task of {name} ended abnormally; check the interface's groups"
        ))),
    }
}

async fn swap_unit(
    ctx: &ActionCtx,
    eni: &str,
    allow_all: &[String],
    isolation: &[String],
    originals: &[String],
) -> Result<(), ActionError> {
    let first = set_eni_groups(ctx, eni, allow_all, "allow-all").await;
    let failed = match first {
        // Refused: the interface is where it was, nothing to compensate.
        Err(e) if !retryable_create(&e) => return Err(e),
        // No clear answer (no response, a server error): it may be in the allow-all group.
        Err(e) => e,
        Ok(()) => match set_eni_groups(ctx, eni, isolation, "isolation").await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        },
    };
    if ctx.dry_run {
        return Err(failed);
    }
    // Compensation: the isolation group again, else the recorded originals.
    let again = set_eni_groups(ctx, eni, isolation, "compensate:isolation").await;
    let outcome = match again {
        Ok(()) => format!("a compensating move put it in the isolation group {}", isolation.join(",")),
        Err(e2) => match set_eni_groups(ctx, eni, originals, "compensate:originals").await {
            Ok(()) => format!(
                "the compensating move to the isolation group failed too ({e2}); it was moved back to its original groups {}: IT IS NOT ISOLATED",
                originals.join(",")
            ),
            Err(e3) => format!(
                "the compensating moves failed too (isolation group: {e2}; original groups: {e3}): IT MAY BE IN THE ALLOW-ALL GROUP {}, OPEN TO ALL TRAFFIC; move it by hand now: aws ec2 modify-network-interface-attribute --network-interface-id {eni} --groups {}",
                allow_all.join(","),
                isolation.join(" ")
            ),
        },
    };
    Err(ActionError::Target(format!(
        "interface {eni}: the move to the isolation group failed ({failed}); {outcome}"
    )))
}

/// EC2 is eventually consistent: a security group just created may not yet be known to the
/// next call (`InvalidGroup.NotFound`) for a few seconds.
/// One change of a group's rules (`operation` on `perms`): journaled, EC2 `DryRun`
/// honoured, retried while a just-made group is not yet visible. A rule already there (or
/// already gone) counts as done; no call is made for an empty list.
async fn change_rules<T, E, Fut>(
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

fn fresh_group(e: &ActionError) -> bool {
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
    if let Some(c) = &p.allow_cidr {
        let ok = c.split_once('/').is_some_and(|(addr, len)| {
            len.parse::<u8>().is_ok() && (addr.parse::<std::net::IpAddr>().is_ok())
        });
        if !ok {
            return Err(ActionError::Params(format!(
                "ec2.isolate_instance: allow_cidr `{c}` is not a CIDR"
            )));
        }
    }
    let id = p.instance_id.as_str();
    let inst = describe_instance(ctx, id).await?;
    let vpc_id = inst
        .vpc_id()
        .ok_or_else(|| ActionError::Target(format!("instance {id} is not in a VPC")))?
        .to_owned();
    let enis = instance_enis(ctx, id).await?;
    if enis.is_empty() {
        return Err(ActionError::Target(format!(
            "instance {id} has no network interface"
        )));
    }
    let assocs = profile_associations(ctx, id).await?;
    let asg_tag = tag_value(inst.tags(), ASG_NAME_TAG).map(str::to_owned);
    // Auto Scaling membership is an optional read: asked at the same time as the case's
    // groups, bounded in time, and when it fails (denied, throttled out, unsupported) a gap,
    // with the instance's aws:autoscaling:groupName tag as the fallback.
    let (asg_read, case_groups) = tokio::join!(
        async {
            match tokio::time::timeout(OPTIONAL_READ_BUDGET, autoscaling_membership(ctx, id)).await
            {
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
        },
        describe_groups(
            ctx,
            vec![
                filter("vpc-id", [vpc_id.as_str()]),
                filter(&format!("tag:{TAG_CASE}"), [ctx.case_id.as_str()]),
            ],
        )
    );
    let case_groups = case_groups?;
    let asg_known = ctx.or_gap("autoscaling:DescribeAutoScalingInstances", asg_read);
    let asg_from_tag = asg_known.is_none();
    let asg: Option<(String, String)> = match &asg_known {
        Some(m) => m.clone(),
        None => asg_tag
            .clone()
            .map(|g| (g, format!("unknown: Auto Scaling could not be asked, the group is from the {ASG_NAME_TAG} tag"))),
    };
    // The originals come from the case's own record (this run's earlier attempts, the case's
    // sealed runs), never back from a tag: an attacker may have rewritten the tag between a
    // crash and this attempt.
    let record = super::record::isolation_record(ctx, id).await;
    let recorded = record.originals();
    let ours: BTreeSet<&str> = case_groups
        .iter()
        .filter_map(|g| g.group_id())
        .chain(recorded.irr_groups.iter().map(String::as_str))
        .collect();

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
    let mut notes: Vec<String> = ISOLATION_NOTES.iter().map(|s| s.to_string()).collect();
    let mut would = Vec::new();
    for p in &record.problems {
        notes.push(format!(
            "WARNING: part of the case's record cannot be verified and was not used: {p}"
        ));
    }
    let mut tag_differences = Vec::new();

    // 1. Leave Auto Scaling first: once isolated, the group's health checks fail and it
    //    would terminate the instance (termination protection does not stop Auto Scaling).
    let leave = p.leave_autoscaling.unwrap_or(true);
    let mut autoscaling = Value::Null;
    match (&asg, leave) {
        (Some((group, state)), true) => {
            let decrement = p.decrement_desired_capacity.unwrap_or(false);
            notes.push(format!(
                "the instance was in Auto Scaling group {group} ({state}); it is detached from it{}",
                if decrement { " and the desired capacity lowered (no replacement)" } else { "; the group launches a replacement" }
            ));
            autoscaling = json!({"group": group, "lifecycle_state": state, "detached": !ctx.dry_run, "decrement_desired_capacity": decrement, "membership_from_tag": asg_from_tag});
            if let Err(e) = create_tags(ctx, id, vec![tag(TAG_ORIGINAL_ASG, group)]).await {
                notes.push(format!("the {TAG_ORIGINAL_ASG} hint could not be written ({e}); the case's record holds the group"));
            }
            if ctx.dry_run {
                would.push(format!(
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
                notes.push(format!(
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
            notes.push(format!(
                "WARNING: the instance is in Auto Scaling group {group} ({state}) and was left in it (leave_autoscaling: false): the group may terminate it once its health checks fail"
            ));
            autoscaling = json!({"group": group, "lifecycle_state": state, "detached": false});
        }
        (None, _) => {
            if let Some(g) = &asg_tag {
                notes.push(format!("the instance carries {ASG_NAME_TAG}={g} but Auto Scaling does not list it as a member"));
            } else if asg_from_tag {
                notes.push(format!("Auto Scaling could not be asked whether the instance is in a group (a gap) and it has no {ASG_NAME_TAG} tag: taken as in no group"));
            }
        }
    }

    // 2. The two groups.
    let purpose_iso = match &p.allow_cidr {
        None => "isolation".to_owned(),
        Some(c) => format!("isolation-ssh-from-{c}"),
    };
    if let Some(c) = &p.allow_cidr {
        notes.push(format!(
            "the isolation group allows inbound TCP 22 from {c} only (allow_cidr), and no outbound"
        ));
    }
    let allow_all = ensure_group(
        ctx,
        &vpc_id,
        &case_groups,
        "allow-all",
        &GroupRules::AllowAll,
    )
    .await?;
    let isolation = ensure_group(
        ctx,
        &vpc_id,
        &case_groups,
        &purpose_iso,
        &GroupRules::Isolation {
            ssh_from: p.allow_cidr.clone(),
        },
    )
    .await?;

    // 3. Each interface: record, allow-all, isolation.
    let mut original_groups = Map::new();
    let mut skipped = Vec::new();
    for n in &enis {
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
                    notes.push(format!(
                        "WARNING: {eni} is already in irr's groups and the case's record holds no original groups for it: they are unknown (the {TAG_ORIGINAL_GROUPS} tag is not trusted)"
                    ));
                    Vec::new()
                }
            }
        } else {
            current.clone()
        };
        if only_ours && tag_hint.is_some() && tag_hint.as_ref() != Some(&originals) {
            notes.push(format!(
                "WARNING: {eni}'s {TAG_ORIGINAL_GROUPS} tag ({}) disagrees with the case's record ({}): the record is used",
                tag_hint.clone().unwrap_or_default().join(","),
                originals.join(",")
            ));
            tag_differences.push(json!({"interface": eni, "tag": tag_hint, "record": originals}));
        }
        original_groups.insert(eni.to_owned(), originals.clone().into());
        if isolation.is_some() && current == [isolation.clone().unwrap_or_default()] {
            skipped.push(eni.to_owned());
            continue;
        }
        if !originals.is_empty() && tag_hint.as_ref() != Some(&originals) {
            // The tag is only a hint for people looking at the console: the record holds
            // the originals, so a tag that cannot be written (AWS's 256-character value
            // limit: 13 or more groups) never stops the isolation.
            let value = originals.join(",");
            if value.len() > TAG_VALUE_MAX {
                notes.push(format!(
                    "{eni} had {} groups: too many for the {TAG_ORIGINAL_GROUPS} tag ({} characters, AWS allows {TAG_VALUE_MAX}); the case's record holds them",
                    originals.len(),
                    value.len()
                ));
            } else if let Err(e) =
                create_tags(ctx, eni, vec![tag(TAG_ORIGINAL_GROUPS, &value)]).await
            {
                notes.push(format!("the {TAG_ORIGINAL_GROUPS} hint on {eni} could not be written ({e}); the case's record holds the originals"));
            }
        }
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
        swap_interface(ctx, eni, step1, step2, originals).await?;
    }

    // 4. The instance profile.
    let detach = p.detach_profile.unwrap_or(true);
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
                notes.push(format!("the {TAG_ORIGINAL_PROFILE} hint could not be written ({e}); the case's record holds the profile"));
            }
            let assoc_id = a.association_id().unwrap_or_default();
            if ctx.dry_run {
                // DisassociateIamInstanceProfile takes no DryRun flag.
                would.push(format!(
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
            notes.push("the instance profile was left attached (detach_profile: false)".into());
        }
    } else if let Some(arn) = &recorded.profile {
        profile = json!({"arn": arn, "detached": true, "note": "detached by an earlier run (the case's record)"});
    }
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
            "tag_differences": tag_differences,
            "instance_profile": profile,
            "auto_scaling": autoscaling,
            "original_tags": {"interfaces": TAG_ORIGINAL_GROUPS, "instance_profile": TAG_ORIGINAL_PROFILE, "auto_scaling_group": TAG_ORIGINAL_ASG},
            "notes": notes,
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
    if !would.is_empty() {
        out = out.with("would", would);
    }
    Ok(out)
}

// ---- ec2.release_instance -------------------------------------------------------------------

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
    let record = super::record::isolation_record(ctx, id).await;
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
    let mut notes = Vec::new();
    let mut would = Vec::new();
    let mut differences = Vec::new();
    for n in &enis {
        let eni = n.network_interface_id().unwrap_or_default();
        let tag_hint = tag_value(n.tag_set(), TAG_ORIGINAL_GROUPS).map(split_groups);
        let Some(groups) = rec.groups.get(eni) else {
            if let Some(t) = &tag_hint {
                notes.push(format!("{eni}: its {TAG_ORIGINAL_GROUPS} tag says {} but the case's record has nothing for it: left as is", t.join(",")));
                differences.push(json!({"interface": eni, "tag": t, "record": null}));
            }
            continue;
        };
        if let Some(t) = tag_hint.as_ref().filter(|t| *t != groups) {
            notes.push(format!(
                "WARNING: {eni}'s {TAG_ORIGINAL_GROUPS} tag ({}) disagrees with the case's record ({}): the record is restored",
                t.join(","),
                groups.join(",")
            ));
            differences.push(json!({"interface": eni, "tag": t, "record": groups}));
        }
        let current: Vec<String> = n
            .groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_owned))
            .collect();
        if &current != groups {
            if current.is_empty() || !current.iter().all(|g| ours.contains(g.as_str())) {
                notes.push(format!(
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

    let mut profile = Value::Null;
    let profile_tag = tag_value(inst.tags(), TAG_ORIGINAL_PROFILE);
    if let Some(t) = profile_tag.filter(|t| rec.profile.as_deref() != Some(*t)) {
        notes.push(format!(
            "WARNING: the instance's {TAG_ORIGINAL_PROFILE} tag ({t}) disagrees with the case's record ({}): the record is used",
            rec.profile.as_deref().unwrap_or("no profile")
        ));
        differences.push(json!({"instance_profile": {"tag": t, "record": rec.profile}}));
    }
    if let Some(arn) = &rec.profile {
        let current = assocs
            .iter()
            .find_map(|a| a.iam_instance_profile().and_then(|p| p.arn()));
        match current {
            None => {
                if ctx.dry_run {
                    // AssociateIamInstanceProfile takes no DryRun flag.
                    would.push(format!("ec2:AssociateIamInstanceProfile {arn} to {id}"));
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
            Some(c) => notes.push(format!(
                "instance profile {c} is associated now, not the recorded {arn}: left as is"
            )),
        }
    }
    if profile_tag.is_some() {
        delete_tags(ctx, id, &[TAG_ORIGINAL_PROFILE]).await?;
    }

    let mut asg = Value::Null;
    let asg_tag = tag_value(inst.tags(), TAG_ORIGINAL_ASG);
    if let Some(t) = asg_tag.filter(|t| rec.auto_scaling_group.as_deref() != Some(*t)) {
        notes.push(format!(
            "WARNING: the instance's {TAG_ORIGINAL_ASG} tag ({t}) disagrees with the case's record ({}): the record is used",
            rec.auto_scaling_group.as_deref().unwrap_or("no group")
        ));
        differences
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
                would.push(format!(
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
    let after = ctx.evidence(
        "release.json",
        &json!({"instance_id": id, "dry_run": ctx.dry_run, "restored_groups": restored,
                "instance_profile_arn": profile, "auto_scaling_group": asg,
                "record": record.origins(), "tag_differences": differences, "notes": notes}),
        "irr",
    )?;
    let mut out = ActionOutput::default()
        .with("restored_groups", restored)
        .with("instance_profile_arn", profile)
        .with("auto_scaling_group", asg)
        .with("tag_differences", differences)
        .with("artifacts", vec![before, after]);
    if !would.is_empty() {
        out = out.with("would", would);
    }
    Ok(out)
}

// ---- ec2.tag_resources ----------------------------------------------------------------------

/// `ec2.tag_resources`: its declaration (see [`Action`]); the parameters are [`TagParams`].
pub struct TagResources;

impl Action for TagResources {
    type Params = TagParams;
    const DECLARATION: Declaration = Declaration {
        name: "ec2.tag_resources",
        summary: "tag EC2 resources",
        exactly_one_of: &[],
        outputs: &[],
        api_calls: &["ec2:DescribeTags", "ec2:CreateTags"],
        permissions: &[
            // The values the keys had before are recorded.
            perm("ec2:DescribeTags", ANY),
            perm(
                "ec2:CreateTags",
                &[
                    "arn:aws:ec2:{region}:{account}:*/*",
                    "arn:aws:ec2:{region}::snapshot/*",
                ],
            ),
        ],
        mutating: true,
        idempotency: "tagging again sets the same values",
        undo: Some("ec2:DeleteTags"),
    };
    async fn run(ctx: &ActionCtx, params: TagParams) -> Result<ActionOutput, ActionError> {
        tag_resources(ctx, params).await
    }
}

/// `ec2.tag_resources`: sets tags on EC2 resources. Records the values the keys had before
/// (output `previous`: resource id -> key -> old value or null). Idempotent. Undo: put back
/// `previous` (`ec2:CreateTags` / `ec2:DeleteTags`).
pub async fn tag_resources(ctx: &ActionCtx, p: TagParams) -> Result<ActionOutput, ActionError> {
    if p.resource_ids.is_empty() || p.tags.is_empty() {
        return Err(ActionError::Params(
            "ec2.tag_resources: `resource_ids` and `tags` must not be empty".into(),
        ));
    }
    if let Some(k) = p
        .tags
        .keys()
        .find(|k| k.to_ascii_lowercase().starts_with("aws:"))
    {
        return Err(ActionError::Params(format!(
            "ec2.tag_resources: tag key `{k}`: the aws: prefix is reserved"
        )));
    }
    let existing = ctx
        .aws
        .ec2
        .describe_tags()
        .filters(filter("resource-id", p.resource_ids.iter().cloned()))
        .filters(filter("key", p.tags.keys().cloned()))
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(read_err("ec2", "DescribeTags"))?;
    let mut previous = Map::new();
    for r in &p.resource_ids {
        let mut m = Map::new();
        for k in p.tags.keys() {
            let v = existing
                .iter()
                .find(|t| t.resource_id() == Some(r.as_str()) && t.key() == Some(k.as_str()))
                .and_then(|t| t.value());
            m.insert(k.clone(), v.map(Value::from).unwrap_or(Value::Null));
        }
        previous.insert(r.clone(), Value::Object(m));
    }
    let artifact = ctx.evidence(
        "tags-before.json",
        &json!({"resource_ids": p.resource_ids, "tags": p.tags, "previous": previous}),
        "ec2:DescribeTags",
    )?;
    let tags: Vec<Tag> = p.tags.iter().map(|(k, v)| tag(k, v)).collect();
    ctx.mutating_dry(
        "ec2",
        "CreateTags",
        json!({"resource_ids": p.resource_ids, "tags": p.tags}),
        ctx.aws
            .ec2
            .create_tags()
            .set_resources(Some(p.resource_ids.clone()))
            .set_tags(Some(tags))
            .dry_run(ctx.dry_run)
            .send(),
        |_| json!({}),
    )
    .await?;
    Ok(ActionOutput::default()
        .with("previous", previous)
        .with("artifacts", vec![artifact]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolation_rules() {
        let p = ssh_from("10.0.0.0/24");
        assert!(is_exactly_ssh_from(&p, "10.0.0.0/24"));
        assert!(!is_exactly_ssh_from(&p, "10.0.0.0/16"));
        let a = all_traffic(&["0.0.0.0/0", "::/0"]);
        assert!(allows_all_from(std::slice::from_ref(&a), "0.0.0.0/0"));
        assert!(allows_all_from(&[a], "::/0"));
        assert!(!allows_all_from(&[p], "0.0.0.0/0"));
    }

    #[test]
    fn group_names_are_sanitised() {
        assert_eq!(group_name("irr-isolation-case|1"), "irr-isolation-case-1");
    }

    // ---- the swap as one unit (issue 8, item 2) ---------------------------------------------

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use aws_sdk_ec2::operation::modify_network_interface_attribute::{
        ModifyNetworkInterfaceAttributeError, ModifyNetworkInterfaceAttributeOutput,
    };
    use aws_smithy_mocks::{mock, RuleMode};

    use crate::actions::test_support::NullRecorder;
    use crate::actions::AwsClients;

    fn ctx_with_ec2(conf: aws_sdk_ec2::Config, recorder: Arc<NullRecorder>) -> ActionCtx {
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:9")
            .build();
        let mut aws = AwsClients::from_conf(&sdk, true);
        aws.ec2 = aws_sdk_ec2::Client::from_conf(conf);
        ActionCtx {
            aws,
            case_id: "IR-1".into(),
            run_id: "run-1".into(),
            step_id: "isolate".into(),
            dry_run: false,
            assume_yes: false,
            recorder,
            playbook_dir: std::path::PathBuf::new(),
        }
    }

    fn ec2_conf() -> aws_sdk_ec2::config::Builder {
        aws_sdk_ec2::Config::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                "k", "s", None, None, "test",
            ))
    }

    /// An EC2 client answering ModifyNetworkInterfaceAttribute from `answers`, in order
    /// (`true`: accepted; `false`: refused with UnauthorizedOperation).
    fn modify_answers(answers: &[bool], recorder: Arc<NullRecorder>) -> ActionCtx {
        let mut interceptor =
            aws_smithy_mocks::MockResponseInterceptor::new().rule_mode(RuleMode::Sequential);
        for ok in answers {
            let rule = if *ok {
                mock!(aws_sdk_ec2::Client::modify_network_interface_attribute)
                    .then_output(|| ModifyNetworkInterfaceAttributeOutput::builder().build())
            } else {
                mock!(aws_sdk_ec2::Client::modify_network_interface_attribute).then_error(|| {
                    ModifyNetworkInterfaceAttributeError::generic(
                        aws_smithy_types::error::ErrorMetadata::builder()
                            .code("UnauthorizedOperation")
                            .message("denied by the test")
                            .build(),
                    )
                })
            };
            interceptor = interceptor.with_rule(&rule);
        }
        let conf = ec2_conf()
            .http_client(aws_smithy_mocks::create_mock_http_client())
            .interceptor(interceptor)
            .build();
        ctx_with_ec2(conf, recorder)
    }

    fn outcomes(rec: &NullRecorder) -> Vec<bool> {
        rec.calls
            .lock()
            .unwrap()
            .iter()
            .map(|(op, o)| {
                assert_eq!(op, "ec2:ModifyNetworkInterfaceAttribute");
                o.as_ref().expect("every started call is finished").ok
            })
            .collect()
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    async fn swap(ctx: &ActionCtx) -> Result<(), ActionError> {
        swap_interface(
            ctx,
            "eni-1",
            ids(&["sg-allow"]),
            ids(&["sg-iso"]),
            ids(&["sg-open", "sg-web"]),
        )
        .await
    }

    #[tokio::test]
    async fn the_second_move_failing_is_compensated_into_isolation_and_fails_loudly() {
        let rec = Arc::new(NullRecorder::default());
        let ctx = modify_answers(&[true, false, true], rec.clone());
        let err = swap(&ctx).await.unwrap_err().to_string();
        assert!(
            err.contains("the move to the isolation group failed")
                && err.contains("a compensating move put it in the isolation group sg-iso"),
            "{err}"
        );
        assert_eq!(
            outcomes(&rec),
            [true, false, true],
            "journaled: both moves and the compensation"
        );
    }

    #[tokio::test]
    async fn no_isolation_possible_goes_back_to_the_originals() {
        let rec = Arc::new(NullRecorder::default());
        let ctx = modify_answers(&[true, false, false, true], rec.clone());
        let err = swap(&ctx).await.unwrap_err().to_string();
        assert!(
            err.contains("moved back to its original groups sg-open,sg-web: IT IS NOT ISOLATED"),
            "{err}"
        );
        assert_eq!(outcomes(&rec), [true, false, false, true]);
    }

    #[tokio::test]
    async fn every_move_failing_says_the_interface_may_be_open() {
        let rec = Arc::new(NullRecorder::default());
        let ctx = modify_answers(&[true, false, false, false], rec.clone());
        let err = swap(&ctx).await.unwrap_err().to_string();
        assert!(
            err.contains("OPEN TO ALL TRAFFIC")
                && err.contains("--network-interface-id eni-1 --groups sg-iso"),
            "{err}"
        );
        assert_eq!(outcomes(&rec), [true, false, false, false]);
    }

    #[tokio::test]
    async fn a_refused_first_move_changes_nothing_and_is_not_compensated() {
        let rec = Arc::new(NullRecorder::default());
        let ctx = modify_answers(&[false], rec.clone());
        let err = swap(&ctx).await.unwrap_err();
        assert_eq!(err.code(), "UnauthorizedOperation");
        assert_eq!(outcomes(&rec), [false]);
    }

    /// Answers every request with EC2's ModifyNetworkInterfaceAttribute success, the second
    /// one only after `delay`; records the request bodies and counts the answers.
    #[derive(Clone, Debug)]
    struct SlowSecond {
        bodies: Arc<Mutex<Vec<String>>>,
        answered: Arc<AtomicUsize>,
        delay: std::time::Duration,
    }

    impl aws_smithy_runtime_api::client::http::HttpConnector for SlowSecond {
        fn call(
            &self,
            request: aws_smithy_runtime_api::client::orchestrator::HttpRequest,
        ) -> aws_smithy_runtime_api::client::http::HttpConnectorFuture {
            let body = request
                .body()
                .bytes()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            let n = {
                let mut b = self.bodies.lock().unwrap();
                b.push(body);
                b.len()
            };
            let answered = self.answered.clone();
            let delay = self.delay;
            aws_smithy_runtime_api::client::http::HttpConnectorFuture::new(async move {
                if n == 2 {
                    tokio::time::sleep(delay).await;
                }
                answered.fetch_add(1, Ordering::SeqCst);
                Ok(aws_smithy_runtime_api::client::orchestrator::HttpResponse::new(
                    200.try_into().unwrap(),
                    aws_smithy_types::body::SdkBody::from(
                        "<ModifyNetworkInterfaceAttributeResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>r-1</requestId><return>true</return></ModifyNetworkInterfaceAttributeResponse>",
                    ),
                ))
            })
        }
    }

    impl aws_smithy_runtime_api::client::http::HttpClient for SlowSecond {
        fn http_connector(
            &self,
            _settings: &aws_smithy_runtime_api::client::http::HttpConnectorSettings,
            _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        ) -> aws_smithy_runtime_api::client::http::SharedHttpConnector {
            aws_smithy_runtime_api::client::http::SharedHttpConnector::new(self.clone())
        }
    }

    /// A step timeout that fires between the two moves (the executor drops the step's
    /// future, as `tokio::time::timeout` does here) does not leave the interface in the
    /// allow-all group: the move to the isolation group is made and journaled anyway, and
    /// `settle` waits for it.
    #[tokio::test]
    async fn a_timeout_between_the_two_moves_does_not_cut_the_swap() {
        let slow = SlowSecond {
            bodies: Arc::default(),
            answered: Arc::default(),
            delay: std::time::Duration::from_millis(400),
        };
        let rec = Arc::new(NullRecorder::default());
        let ctx = ctx_with_ec2(ec2_conf().http_client(slow.clone()).build(), rec.clone());
        let cut = tokio::time::timeout(std::time::Duration::from_millis(150), swap(&ctx)).await;
        assert!(cut.is_err(), "the timeout fired");
        {
            let bodies = slow.bodies.lock().unwrap();
            assert_eq!(bodies.len(), 2, "both moves were sent: {bodies:?}");
            assert!(
                bodies[0].contains("SecurityGroupId.1=sg-allow"),
                "{}",
                bodies[0]
            );
            assert!(
                bodies[1].contains("SecurityGroupId.1=sg-iso"),
                "{}",
                bodies[1]
            );
        }
        assert_eq!(
            slow.answered.load(Ordering::SeqCst),
            1,
            "cut between the two moves"
        );
        settle().await;
        assert_eq!(
            slow.answered.load(Ordering::SeqCst),
            2,
            "the move to the isolation group was completed"
        );
        assert_eq!(
            outcomes(&rec),
            [true, true],
            "both moves journaled as finished"
        );
    }
}
