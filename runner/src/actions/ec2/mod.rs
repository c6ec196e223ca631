//! EC2 actions: record, preserve and contain an instance.
//!
//! Containment follows AWS's own runbook (AWSSupport-ContainEC2Instance): every network
//! interface first goes to an allow-all group, which turns its tracked connections into
//! untracked ones, then to an isolation group with no rule at all, which cuts them. Security
//! groups are set per interface (`ModifyNetworkInterfaceAttribute`), because AWS refuses
//! `ModifyInstanceAttribute(Groups)` on an instance with several interfaces.
//!
//! What a later run needs to undo containment is the case's own record (its sealed evidence,
//! `actions/record.rs`), so that `ec2.release_instance` works from any machine that reaches
//! the evidence; `irr:original-profile` and `irr:original-asg` on the instance are hints for
//! people only. Fleet work (batched reads, groups once per VPC) is in `fleet.rs`.
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

mod capture;
mod find;
mod fleet;
mod isolate;
mod protect;
mod release;
mod snapshot;
mod swap;
mod tag;
pub use capture::*;
pub use find::*;
pub use fleet::{Fleet, Prefetched, VpcGroups, Wants};
pub use isolate::*;
pub use protect::*;
pub use release::*;
pub use snapshot::*;
pub use swap::settle;
pub use tag::*;

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

pub(crate) async fn describe_instance(ctx: &ActionCtx, id: &str) -> Result<Instance, ActionError> {
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

/// The volumes EC2 lists as attached to the instance (by attachment, not by the block device
/// mappings: a volume missing from the mappings is listed too).
async fn instance_volumes(
    ctx: &ActionCtx,
    id: &str,
) -> Result<Vec<aws_sdk_ec2::types::Volume>, ActionError> {
    ctx.aws
        .ec2
        .describe_volumes()
        .filters(filter("attachment.instance-id", [id]))
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(read_err("ec2", "DescribeVolumes"))
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

#[cfg(test)]
mod tests {
    use super::swap::swap_interface;
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
