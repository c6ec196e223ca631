//! Containment of a compromised instance against the emulator: the actions of the containment
//! playbook run in order, and the AWS state afterwards is asserted, not just the return values.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{
    AttributeBooleanValue, BlockDeviceMapping, EbsBlockDevice, Filter,
    IamInstanceProfileSpecification, InstanceAttributeName, InstanceNetworkInterfaceSpecification,
    IpPermission, IpRange, Ipv6Range, SecurityGroup,
};
use irr_runner::actions::{self, ActionCtx};
use irr_tests::{action_ctx, sdk_config, unique, MemoryRecorder};
use serde_json::{json, Value};

/// The compromised instance the tests contain.
struct Compromised {
    instance_id: String,
    vpc_id: String,
    /// Interface id -> its groups at launch, device index 0 first.
    groups: BTreeMap<String, Vec<String>>,
    volumes: Vec<String>,
    profile_arn: String,
}

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

async fn ami(ec2: &aws_sdk_ec2::Client) -> String {
    let images = ec2.describe_images().send().await.unwrap();
    images.images()[0].image_id().unwrap().to_owned()
}

/// Stands up the scenario of issue 3: a VPC with an open security group, an instance with two
/// network interfaces (the second attached after launch, with two groups), two EBS volumes
/// that would be deleted on termination, a shutdown behaviour of `terminate`, and an instance
/// profile with a role.
async fn compromised_instance(conf: &aws_config::SdkConfig) -> Compromised {
    let ec2 = aws_sdk_ec2::Client::new(conf);
    let iam = aws_sdk_iam::Client::new(conf);
    let vpc_id = ec2
        .create_vpc()
        .cidr_block("10.20.0.0/16")
        .send()
        .await
        .unwrap()
        .vpc()
        .unwrap()
        .vpc_id()
        .unwrap()
        .to_owned();
    let subnet_id = ec2
        .create_subnet()
        .vpc_id(&vpc_id)
        .cidr_block("10.20.1.0/24")
        .send()
        .await
        .unwrap()
        .subnet()
        .unwrap()
        .subnet_id()
        .unwrap()
        .to_owned();
    let open = open_group(&ec2, &vpc_id).await;
    let web = ec2
        .create_security_group()
        .vpc_id(&vpc_id)
        .group_name(unique("web"))
        .description("https")
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_owned();

    let profile_arn = app_profile(&iam).await;

    // Launched with NetworkInterfaces (not SecurityGroupIds): moto then keeps groups per
    // interface, as AWS does (docs/emulator-notes.md).
    let run = ec2
        .run_instances()
        .image_id(ami(&ec2).await)
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .network_interfaces(
            InstanceNetworkInterfaceSpecification::builder()
                .device_index(0)
                .subnet_id(&subnet_id)
                .groups(&open)
                .build(),
        )
        .block_device_mappings(
            BlockDeviceMapping::builder()
                .device_name("/dev/sda1")
                .ebs(
                    EbsBlockDevice::builder()
                        .volume_size(8)
                        .delete_on_termination(true)
                        .build(),
                )
                .build(),
        )
        .block_device_mappings(
            BlockDeviceMapping::builder()
                .device_name("/dev/sdf")
                .ebs(
                    EbsBlockDevice::builder()
                        .volume_size(2)
                        .delete_on_termination(true)
                        .build(),
                )
                .build(),
        )
        .iam_instance_profile(
            IamInstanceProfileSpecification::builder()
                .arn(&profile_arn)
                .build(),
        )
        .instance_initiated_shutdown_behavior(aws_sdk_ec2::types::ShutdownBehavior::Terminate)
        .send()
        .await
        .unwrap();
    let inst = &run.instances()[0];
    let instance_id = inst.instance_id().unwrap().to_owned();
    let volumes: Vec<String> = inst
        .block_device_mappings()
        .iter()
        .map(|m| m.ebs().unwrap().volume_id().unwrap().to_owned())
        .collect();
    assert_eq!(volumes.len(), 2, "root and one extra volume");

    let eni1 = attach_second_interface(&ec2, &subnet_id, &instance_id, [&open, &web]).await;
    let groups = eni_groups(&ec2, &instance_id).await;
    assert_eq!(groups.len(), 2, "two network interfaces");
    assert_eq!(groups[&eni1], vec![open.clone(), web.clone()]);
    Compromised {
        instance_id,
        vpc_id,
        groups,
        volumes,
        profile_arn,
    }
}

/// A security group in the VPC open to the world (IPv4 and IPv6) on every port.
async fn open_group(ec2: &aws_sdk_ec2::Client, vpc_id: &str) -> String {
    let open = ec2
        .create_security_group()
        .vpc_id(vpc_id)
        .group_name(unique("open"))
        .description("wide-open")
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_owned();
    ec2.authorize_security_group_ingress()
        .group_id(&open)
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("-1")
                .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
                .ipv6_ranges(Ipv6Range::builder().cidr_ipv6("::/0").build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    open
}

/// A role for EC2 in a new instance profile; returns the profile's ARN.
async fn app_profile(iam: &aws_sdk_iam::Client) -> String {
    let role = unique("app-role");
    iam.create_role()
        .role_name(&role)
        .assume_role_policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    let profile_name = unique("app-profile");
    let profile_arn = iam
        .create_instance_profile()
        .instance_profile_name(&profile_name)
        .send()
        .await
        .unwrap()
        .instance_profile()
        .unwrap()
        .arn()
        .to_owned();
    iam.add_role_to_instance_profile()
        .instance_profile_name(&profile_name)
        .role_name(&role)
        .send()
        .await
        .unwrap();
    profile_arn
}

/// A second interface in the subnet with both groups, attached to the instance after launch.
async fn attach_second_interface(
    ec2: &aws_sdk_ec2::Client,
    subnet_id: &str,
    instance_id: &str,
    groups: [&str; 2],
) -> String {
    let eni1 = ec2
        .create_network_interface()
        .subnet_id(subnet_id)
        .groups(groups[0])
        .groups(groups[1])
        .send()
        .await
        .unwrap()
        .network_interface()
        .unwrap()
        .network_interface_id()
        .unwrap()
        .to_owned();
    ec2.attach_network_interface()
        .network_interface_id(&eni1)
        .instance_id(instance_id)
        .device_index(1)
        .send()
        .await
        .unwrap();
    eni1
}

/// Interface id -> group ids, as AWS shows them now.
async fn eni_groups(ec2: &aws_sdk_ec2::Client, instance_id: &str) -> BTreeMap<String, Vec<String>> {
    let out = ec2
        .describe_network_interfaces()
        .filters(filter("attachment.instance-id", instance_id))
        .send()
        .await
        .unwrap();
    out.network_interfaces()
        .iter()
        .map(|n| {
            (
                n.network_interface_id().unwrap().to_owned(),
                n.groups()
                    .iter()
                    .map(|g| g.group_id().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect()
}

async fn eni_tag(ec2: &aws_sdk_ec2::Client, eni: &str, key: &str) -> Option<String> {
    let out = ec2
        .describe_network_interfaces()
        .network_interface_ids(eni)
        .send()
        .await
        .unwrap();
    out.network_interfaces()[0]
        .tag_set()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value().map(str::to_owned))
}

async fn instance_tag(ec2: &aws_sdk_ec2::Client, id: &str, key: &str) -> Option<String> {
    let out = ec2
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .unwrap();
    out.reservations()[0].instances()[0]
        .tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value().map(str::to_owned))
}

async fn group(ec2: &aws_sdk_ec2::Client, id: &str) -> SecurityGroup {
    ec2.describe_security_groups()
        .group_ids(id)
        .send()
        .await
        .unwrap()
        .security_groups()[0]
        .clone()
}

async fn case_groups(ec2: &aws_sdk_ec2::Client, case: &str) -> Vec<SecurityGroup> {
    ec2.describe_security_groups()
        .filters(filter("tag:irr:case", case))
        .send()
        .await
        .unwrap()
        .security_groups()
        .to_vec()
}

/// (termination protection, shutdown behaviour, device -> DeleteOnTermination)
async fn protection(ec2: &aws_sdk_ec2::Client, id: &str) -> (bool, String, BTreeMap<String, bool>) {
    let term = ec2
        .describe_instance_attribute()
        .instance_id(id)
        .attribute(InstanceAttributeName::DisableApiTermination)
        .send()
        .await
        .unwrap()
        .disable_api_termination()
        .and_then(AttributeBooleanValue::value)
        .unwrap();
    let shutdown = ec2
        .describe_instance_attribute()
        .instance_id(id)
        .attribute(InstanceAttributeName::InstanceInitiatedShutdownBehavior)
        .send()
        .await
        .unwrap()
        .instance_initiated_shutdown_behavior()
        .and_then(|v| v.value())
        .unwrap()
        .to_owned();
    let out = ec2
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .unwrap();
    let dot = out.reservations()[0].instances()[0]
        .block_device_mappings()
        .iter()
        .map(|m| {
            (
                m.device_name().unwrap().to_owned(),
                m.ebs().unwrap().delete_on_termination().unwrap(),
            )
        })
        .collect();
    (term, shutdown, dot)
}

/// Snapshots tagged with the case, per volume.
async fn case_snapshots(
    ec2: &aws_sdk_ec2::Client,
    case: &str,
) -> BTreeMap<String, Vec<aws_sdk_ec2::types::Snapshot>> {
    let out = ec2
        .describe_snapshots()
        .owner_ids("self")
        .filters(filter("tag:irr:case", case))
        .send()
        .await
        .unwrap();
    let mut m: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for s in out.snapshots() {
        m.entry(s.volume_id().unwrap().to_owned())
            .or_default()
            .push(s.clone());
    }
    m
}

async fn profile_arns(ec2: &aws_sdk_ec2::Client, id: &str) -> Vec<String> {
    let out = ec2
        .describe_iam_instance_profile_associations()
        .filters(filter("instance-id", id))
        .send()
        .await
        .unwrap();
    out.iam_instance_profile_associations()
        .iter()
        .filter(|a| a.state().map(|s| s.as_str()) == Some("associated"))
        .map(|a| a.iam_instance_profile().unwrap().arn().unwrap().to_owned())
        .collect()
}

fn step(
    conf: &aws_config::SdkConfig,
    case: &str,
    name: &str,
    rec: &std::sync::Arc<MemoryRecorder>,
) -> ActionCtx {
    action_ctx(conf, case, name, false, rec.clone())
}

/// The end-to-end run's fixed parts: the emulator's configuration, the compromised instance,
/// the case and the recorder every step reports to.
struct EndToEnd {
    conf: aws_config::SdkConfig,
    ec2: aws_sdk_ec2::Client,
    victim: Compromised,
    case: String,
    rec: std::sync::Arc<MemoryRecorder>,
}

impl EndToEnd {
    fn id(&self) -> &str {
        &self.victim.instance_id
    }

    /// Runs `action` on the instance as step `name` of the case; it must succeed.
    async fn dispatch(&self, action: &str, name: &str) -> actions::ActionOutput {
        actions::dispatch(
            action,
            &step(&self.conf, &self.case, name, &self.rec),
            json!({"instance_id": self.id()}),
        )
        .await
        .unwrap()
    }
}

/// Evidence first: the metadata capture stores its artifacts and makes no mutating call.
async fn capture_stores_the_evidence(t: &EndToEnd) {
    let rec = &t.rec;
    let out = t.dispatch("ec2.capture_instance_metadata", "capture").await;
    let paths = out.outputs["artifacts"].as_array().unwrap();
    assert!(paths.len() >= 7, "{paths:?}");
    let groups_doc = rec.artifact_json("security-groups.json").unwrap();
    assert_eq!(groups_doc["security_groups"].as_array().unwrap().len(), 2);
    let profile_doc = rec.artifact_json("instance-profile.json").unwrap();
    assert_eq!(
        profile_doc["associations"][0]["association"]["instance_profile_arn"],
        t.victim.profile_arn.as_str()
    );
    assert_eq!(
        profile_doc["associations"][0]["roles"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(rec
        .artifacts()
        .iter()
        .any(|a| a.name == "console-output.txt" && !a.content.is_empty()));
    assert!(rec.calls().is_empty(), "capture makes no mutating call");
}

/// Protect: termination protection on, shutdown stops, no volume deleted on termination; the
/// previous settings are in the outputs.
async fn protect_keeps_the_instance_and_its_volumes(t: &EndToEnd) {
    let out = t.dispatch("ec2.protect_instance", "protect").await;
    assert_eq!(out.outputs["previous"]["disable_api_termination"], false);
    assert_eq!(
        out.outputs["previous"]["instance_initiated_shutdown_behavior"],
        "terminate"
    );
    assert_eq!(
        out.outputs["previous"]["delete_on_termination"]["/dev/sdf"]["delete_on_termination"],
        true
    );
    let (term, shutdown, dot) = protection(&t.ec2, t.id()).await;
    assert!(term, "termination protection on");
    assert_eq!(shutdown, "stop");
    assert_eq!(dot.len(), 2);
    assert!(
        dot.values().all(|d| !d),
        "DeleteOnTermination off on every volume: {dot:?}"
    );
}

/// Snapshot, twice: one completed, tagged snapshot per volume, and the second run reuses them.
async fn snapshots_are_taken_once_per_volume(t: &EndToEnd) {
    let (ec2, case, rec, victim) = (&t.ec2, t.case.as_str(), &t.rec, &t.victim);
    let out = t.dispatch("ec2.snapshot_volumes", "snapshot").await;
    let ids: Vec<String> = out.outputs["snapshot_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(
        out.outputs["volumes"][&victim.volumes[0]],
        ids[0].as_str(),
        "root volume first"
    );
    assert_eq!(out.outputs["volumes"][&victim.volumes[1]], ids[1].as_str());
    let snaps = case_snapshots(ec2, case).await;
    assert_eq!(snaps.len(), 2, "one per volume");
    for v in &victim.volumes {
        let s = &snaps[v];
        assert_eq!(s.len(), 1, "exactly one snapshot of {v}");
        assert_eq!(s[0].state().unwrap().as_str(), "completed");
        let tags: BTreeMap<_, _> = s[0]
            .tags()
            .iter()
            .map(|t| (t.key().unwrap(), t.value().unwrap()))
            .collect();
        assert_eq!(tags["irr:case"], case);
        assert_eq!(tags["irr:run"], format!("run-{case}"));
        assert_eq!(tags["irr:instance"], t.id());
    }
    let made = rec.calls_of("CreateSnapshots").len() + rec.calls_of("CreateSnapshot").len();
    assert_eq!((rec.calls_of("CreateSnapshots").len(), made), (1, 1));
    let snap_resources: Vec<_> = rec
        .resources()
        .into_iter()
        .filter(|r| r.kind == "ebs-snapshot")
        .collect();
    assert_eq!(snap_resources.len(), 2);
    assert!(snap_resources
        .iter()
        .all(|r| r.details["state"] == "completed" && r.details.contains_key("volume_id")));
    let creates = rec.calls_of("CreateSnapshot").len();
    let again = t.dispatch("ec2.snapshot_volumes", "snapshot-again").await;
    assert_eq!(again.outputs["snapshot_ids"], out.outputs["snapshot_ids"]);
    assert_eq!(
        rec.calls_of("CreateSnapshot").len(),
        creates,
        "no second snapshot"
    );
    assert_eq!(
        case_snapshots(ec2, case)
            .await
            .values()
            .map(Vec::len)
            .sum::<usize>(),
        2
    );
}

/// The groups every interface had at launch, as the isolation outputs name them.
fn original_groups(victim: &Compromised) -> Value {
    victim
        .groups
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// Isolate: every interface goes through the allow-all group to the isolation group, with the
/// evidence of before and after. Returns the isolation group's id.
async fn isolate_moves_every_interface_to_the_isolation_group(
    t: &EndToEnd,
    expected_originals: &Value,
) -> String {
    let (ec2, rec, victim) = (&t.ec2, &t.rec, &t.victim);
    let out = t.dispatch("ec2.isolate_instance", "isolate").await;
    let iso = out.outputs["isolation_group_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let allow_all = out.outputs["allow_all_group_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(&out.outputs["original_groups"], expected_originals);
    assert_isolated(ec2, victim, &iso).await;
    // The allow-all step happened on every interface, before the isolation step.
    for eni in victim.groups.keys() {
        let steps: Vec<Value> = rec
            .calls_of("ModifyNetworkInterfaceAttribute")
            .iter()
            .filter(|c| c.params["network_interface_id"] == eni.as_str())
            .map(|c| c.params["groups"].clone())
            .collect();
        assert_eq!(steps, vec![json!([allow_all]), json!([iso])], "{eni}");
    }
    let aa = group(ec2, &allow_all).await;
    for perms in [aa.ip_permissions(), aa.ip_permissions_egress()] {
        assert!(perms.iter().any(|p| p.ip_protocol() == Some("-1")
            && p.ip_ranges()
                .iter()
                .any(|r| r.cidr_ip() == Some("0.0.0.0/0"))));
        assert!(perms.iter().any(|p| p.ip_protocol() == Some("-1")
            && p.ipv6_ranges()
                .iter()
                .any(|r| r.cidr_ipv6() == Some("::/0"))));
    }
    let evidence = rec.artifact_json("isolation.json").unwrap();
    assert!(evidence["notes"].to_string().contains("network ACL"));
    assert!(evidence["notes"].to_string().contains("ICMP"));
    let before = rec.artifact_json("isolation-before.json").unwrap();
    assert_eq!(before["network_interfaces"].as_array().unwrap().len(), 2);
    assert!(rec
        .resources()
        .iter()
        .any(|r| r.kind == "security-group" && r.id == iso));
    iso
}

/// Isolate again: same groups, nothing re-done, originals kept.
async fn isolating_again_changes_nothing(t: &EndToEnd, iso: &str, expected_originals: &Value) {
    let rec = &t.rec;
    let calls_before = rec.calls().len();
    let again = t.dispatch("ec2.isolate_instance", "isolate-again").await;
    assert_eq!(again.outputs["isolation_group_id"], iso);
    assert_eq!(&again.outputs["original_groups"], expected_originals);
    let new_calls: Vec<_> = rec.calls()[calls_before..]
        .iter()
        .map(|c| c.operation.clone())
        .collect();
    assert!(
        new_calls.is_empty(),
        "re-isolating changes nothing: {new_calls:?}"
    );
    assert_eq!(
        case_groups(&t.ec2, &t.case).await.len(),
        2,
        "no second pair of groups"
    );
    assert_isolated(&t.ec2, &t.victim, iso).await;
}

/// Release restores the originals and drops the tags that recorded them; releasing twice does
/// nothing.
async fn release_restores_the_originals(t: &EndToEnd, expected_originals: &Value) {
    let (ec2, id, victim) = (&t.ec2, t.id(), &t.victim);
    let out = t.dispatch("ec2.release_instance", "release").await;
    assert_eq!(&out.outputs["restored_groups"], expected_originals);
    assert_eq!(eni_groups(ec2, id).await, victim.groups);
    assert_eq!(
        profile_arns(ec2, id).await,
        vec![victim.profile_arn.clone()]
    );
    for eni in victim.groups.keys() {
        assert_eq!(eni_tag(ec2, eni, "irr:original-groups").await, None);
    }
    assert_eq!(instance_tag(ec2, id, "irr:original-profile").await, None);
    // Releasing twice does nothing.
    let calls_before = t.rec.calls().len();
    t.dispatch("ec2.release_instance", "release-again").await;
    assert_eq!(t.rec.calls().len(), calls_before);
}

#[tokio::test]
async fn containment_end_to_end() {
    let conf = sdk_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let victim = compromised_instance(&conf).await;
    let case = unique("case");
    let rec = MemoryRecorder::new();
    let t = EndToEnd {
        conf,
        ec2,
        victim,
        case,
        rec,
    };

    capture_stores_the_evidence(&t).await;
    protect_keeps_the_instance_and_its_volumes(&t).await;
    snapshots_are_taken_once_per_volume(&t).await;
    let expected_originals = original_groups(&t.victim);
    let iso = isolate_moves_every_interface_to_the_isolation_group(&t, &expected_originals).await;
    isolating_again_changes_nothing(&t, &iso, &expected_originals).await;
    release_restores_the_originals(&t, &expected_originals).await;

    t.rec.assert_calls_ok();
}

/// Every interface holds only the isolation group, which has no rule at all; no tag per
/// interface; no instance profile is associated.
async fn assert_isolated(ec2: &aws_sdk_ec2::Client, victim: &Compromised, iso: &str) {
    let now = eni_groups(ec2, &victim.instance_id).await;
    assert_eq!(now.len(), 2);
    for (eni, groups) in &now {
        assert_eq!(
            groups,
            &vec![iso.to_owned()],
            "{eni} holds only the isolation group"
        );
        // The originals are in the case's record, not in a tag.
        assert_eq!(
            eni_tag(ec2, eni, "irr:original-groups").await,
            None,
            "{eni}"
        );
    }
    let g = group(ec2, iso).await;
    assert_eq!(g.vpc_id(), Some(victim.vpc_id.as_str()));
    assert!(
        g.ip_permissions().is_empty(),
        "no ingress: {:?}",
        g.ip_permissions()
    );
    assert!(
        g.ip_permissions_egress().is_empty(),
        "no egress (IPv4 or IPv6): {:?}",
        g.ip_permissions_egress()
    );
    assert!(
        profile_arns(ec2, &victim.instance_id).await.is_empty(),
        "no instance profile association"
    );
    assert_eq!(
        instance_tag(ec2, &victim.instance_id, "irr:original-profile")
            .await
            .as_deref(),
        Some(victim.profile_arn.as_str())
    );
}

#[tokio::test]
async fn dry_run_changes_nothing() {
    let conf = sdk_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let victim = compromised_instance(&conf).await;
    let id = victim.instance_id.as_str();
    let case = unique("case");
    let rec = MemoryRecorder::new();
    let before = protection(&ec2, id).await;
    for action in [
        "ec2.protect_instance",
        "ec2.snapshot_volumes",
        "ec2.isolate_instance",
        "ec2.release_instance",
    ] {
        let ctx = action_ctx(&conf, &case, action, true, rec.clone());
        actions::dispatch(action, &ctx, json!({"instance_id": id}))
            .await
            .unwrap_or_else(|e| panic!("{action}: {e}"));
    }
    let ctx = action_ctx(&conf, &case, "tag", true, rec.clone());
    actions::dispatch(
        "ec2.tag_resources",
        &ctx,
        json!({"resource_ids": [id], "tags": {"incident": "yes"}}),
    )
    .await
    .unwrap();

    assert_eq!(protection(&ec2, id).await, before, "protection unchanged");
    assert!(case_snapshots(&ec2, &case).await.is_empty(), "no snapshot");
    assert_eq!(
        eni_groups(&ec2, id).await,
        victim.groups,
        "groups unchanged"
    );
    assert!(
        case_groups(&ec2, &case).await.is_empty(),
        "no security group created"
    );
    assert_eq!(
        profile_arns(&ec2, id).await,
        vec![victim.profile_arn.clone()],
        "profile still attached"
    );
    for eni in victim.groups.keys() {
        assert_eq!(eni_tag(&ec2, eni, "irr:original-groups").await, None);
    }
    assert_eq!(instance_tag(&ec2, id, "incident").await, None);
    assert_eq!(instance_tag(&ec2, id, "irr:original-profile").await, None);

    // AWS was asked about every EC2 change, and said each would be permitted.
    let calls = rec.calls();
    let ops: BTreeSet<&str> = calls.iter().map(|c| c.operation.as_str()).collect();
    for op in [
        "ModifyInstanceAttribute",
        "CreateSnapshots",
        "CreateSecurityGroup",
        "ModifyNetworkInterfaceAttribute",
        "CreateTags",
    ] {
        assert!(ops.contains(op), "{op} asked with DryRun: {ops:?}");
    }
    assert!(
        !ops.contains("DisassociateIamInstanceProfile"),
        "no DryRun for it: reported instead"
    );
    for c in &calls {
        assert_eq!(c.params["dry_run"], true, "{}", c.operation);
        assert_eq!(
            c.outcome.as_ref().unwrap().result["dry_run"],
            "permitted",
            "{}",
            c.operation
        );
    }
    rec.assert_calls_ok();
}

#[tokio::test]
async fn isolation_with_forensic_access_and_interrupted_run() {
    let conf = sdk_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let victim = compromised_instance(&conf).await;
    let id = victim.instance_id.as_str();
    let case = unique("case");
    let rec = MemoryRecorder::new();

    // An earlier run was killed after moving the first interface to the allow-all group:
    // simulate it, then check the originals survive and the run completes.
    let first = actions::dispatch(
        "ec2.isolate_instance",
        &action_ctx(&conf, &case, "isolate", false, rec.clone()),
        json!({"instance_id": id, "detach_profile": false}),
    )
    .await
    .unwrap();
    let allow_all = first.outputs["allow_all_group_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let eni0 = victim.groups.keys().next().unwrap().clone();
    ec2.modify_network_interface_attribute()
        .network_interface_id(&eni0)
        .groups(&allow_all)
        .send()
        .await
        .unwrap();
    assert_eq!(
        profile_arns(&ec2, id).await,
        vec![victim.profile_arn.clone()],
        "detach_profile: false"
    );

    let out = actions::dispatch(
        "ec2.isolate_instance",
        &action_ctx(&conf, &case, "isolate-ssh", false, rec.clone()),
        json!({"instance_id": id, "allow_cidr": "192.0.2.0/24"}),
    )
    .await
    .unwrap();
    let iso = out.outputs["isolation_group_id"].as_str().unwrap();
    assert_ne!(
        iso,
        first.outputs["isolation_group_id"].as_str().unwrap(),
        "a distinct group for the SSH variant"
    );
    assert_eq!(
        out.outputs["original_groups"][&eni0],
        json!(victim.groups[&eni0]),
        "originals not overwritten"
    );
    for (eni, groups) in eni_groups(&ec2, id).await {
        assert_eq!(groups, vec![iso.to_owned()]);
        // The originals are in the case's record (above), not in a tag.
        assert_eq!(eni_tag(&ec2, &eni, "irr:original-groups").await, None);
    }
    let g = group(&ec2, iso).await;
    assert!(g.ip_permissions_egress().is_empty(), "no egress");
    assert_eq!(g.ip_permissions().len(), 1, "{:?}", g.ip_permissions());
    let p = &g.ip_permissions()[0];
    assert_eq!(
        (p.ip_protocol(), p.from_port(), p.to_port()),
        (Some("tcp"), Some(22), Some(22))
    );
    assert_eq!(p.ip_ranges().len(), 1);
    assert_eq!(p.ip_ranges()[0].cidr_ip(), Some("192.0.2.0/24"));
    assert!(p.ipv6_ranges().is_empty());
    assert!(profile_arns(&ec2, id).await.is_empty());

    actions::dispatch(
        "ec2.release_instance",
        &action_ctx(&conf, &case, "release", false, rec.clone()),
        json!({"instance_id": id}),
    )
    .await
    .unwrap();
    assert_eq!(eni_groups(&ec2, id).await, victim.groups);
    assert_eq!(
        profile_arns(&ec2, id).await,
        vec![victim.profile_arn.clone()]
    );
    rec.assert_calls_ok();
}

#[tokio::test]
async fn isolation_leaves_the_auto_scaling_group() {
    let conf = sdk_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let asg = aws_sdk_autoscaling::Client::new(&conf);
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.30.0.0/16")
        .send()
        .await
        .unwrap();
    let vpc_id = vpc.vpc().unwrap().vpc_id().unwrap().to_owned();
    let subnet = ec2
        .create_subnet()
        .vpc_id(&vpc_id)
        .cidr_block("10.30.1.0/24")
        .send()
        .await
        .unwrap();
    let subnet_id = subnet.subnet().unwrap().subnet_id().unwrap().to_owned();
    let template = unique("lt");
    ec2.create_launch_template()
        .launch_template_name(&template)
        .launch_template_data(
            aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                .image_id(ami(&ec2).await)
                .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let group_name = unique("asg");
    asg.create_auto_scaling_group()
        .auto_scaling_group_name(&group_name)
        .launch_template(
            aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                .launch_template_name(&template)
                .build(),
        )
        .min_size(1)
        .max_size(2)
        .desired_capacity(1)
        .vpc_zone_identifier(&subnet_id)
        .send()
        .await
        .unwrap();
    let groups = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(&group_name)
        .send()
        .await
        .unwrap();
    let id = groups.auto_scaling_groups()[0].instances()[0]
        .instance_id()
        .unwrap()
        .to_owned();
    let case = unique("case");
    let rec = MemoryRecorder::new();
    let out = actions::dispatch(
        "ec2.isolate_instance",
        &action_ctx(&conf, &case, "isolate", false, rec.clone()),
        json!({"instance_id": id}),
    )
    .await
    .unwrap();
    let iso = out.outputs["isolation_group_id"].as_str().unwrap();
    let member = asg
        .describe_auto_scaling_instances()
        .instance_ids(&id)
        .send()
        .await
        .unwrap();
    assert!(
        member.auto_scaling_instances().is_empty(),
        "detached from the group"
    );
    assert_eq!(
        instance_tag(&ec2, &id, "irr:original-asg").await.as_deref(),
        Some(group_name.as_str())
    );
    assert!(eni_groups(&ec2, &id)
        .await
        .values()
        .all(|g| g == &vec![iso.to_owned()]));
    let evidence = rec.artifact_json("isolation.json").unwrap();
    assert_eq!(evidence["auto_scaling"]["group"], group_name.as_str());
    assert!(evidence["notes"].to_string().contains(&group_name));

    actions::dispatch(
        "ec2.release_instance",
        &action_ctx(&conf, &case, "release", false, rec.clone()),
        json!({"instance_id": id}),
    )
    .await
    .unwrap();
    let member = asg
        .describe_auto_scaling_instances()
        .instance_ids(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        member.auto_scaling_instances()[0].auto_scaling_group_name(),
        Some(group_name.as_str())
    );
    assert_eq!(instance_tag(&ec2, &id, "irr:original-asg").await, None);
    rec.assert_calls_ok();
}

#[tokio::test]
async fn responder_access_is_granted_reused_and_revoked() {
    let conf = sdk_config().await;
    let iam = aws_sdk_iam::Client::new(&conf);
    let case = unique("case");
    let rec = MemoryRecorder::new();
    let principal = "arn:aws:iam::123456789012:user/alice";

    let out = actions::dispatch(
        "iam.grant_responder_access",
        &action_ctx(&conf, &case, "grant", false, rec.clone()),
        json!({"principals": [principal], "duration": "2h"}),
    )
    .await
    .unwrap();
    let role_name = out.outputs["role_name"].as_str().unwrap().to_owned();
    assert_eq!(
        role_name,
        irr_runner::actions::iam::sanitise_role_name(&format!("irr-responder-{case}"))
    );
    let expires_at = out.outputs["expires_at"].as_str().unwrap().to_owned();
    let role = iam.get_role().role_name(&role_name).send().await.unwrap();
    let role = role.role().unwrap();
    assert_eq!(out.outputs["role_arn"], role.arn());
    assert_eq!(role.max_session_duration(), Some(7200));
    let trust =
        irr_runner::actions::iam::policy_document(role.assume_role_policy_document().unwrap());
    let st = &trust["Statement"][0];
    assert_eq!(st["Principal"]["AWS"], json!([principal]));
    assert_eq!(
        st["Condition"]["Bool"]["aws:MultiFactorAuthPresent"],
        "true"
    );
    assert_eq!(
        st["Condition"]["DateLessThan"]["aws:CurrentTime"],
        expires_at.as_str()
    );
    let tags = iam
        .list_role_tags()
        .role_name(&role_name)
        .send()
        .await
        .unwrap();
    let tags: BTreeMap<_, _> = tags
        .tags()
        .iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect();
    assert_eq!(tags["irr:case"], case);
    assert_eq!(tags["irr:run"], format!("run-{case}"));
    assert_eq!(tags["irr:expires-at"], expires_at);
    let pol = iam
        .get_role_policy()
        .role_name(&role_name)
        .policy_name("irr-responder")
        .send()
        .await
        .unwrap();
    let pol = irr_runner::actions::iam::policy_document(pol.policy_document());
    assert_eq!(pol, irr_runner::actions::iam::default_responder_policy());
    assert!(rec
        .resources()
        .iter()
        .any(|r| r.kind == "iam-role" && r.id == role.arn()));

    // A second grant (a retried or resumed step) reuses the role; two at once still make one.
    let (ctx_a, ctx_b) = (
        action_ctx(&conf, &case, "grant-again", false, rec.clone()),
        action_ctx(&conf, &case, "grant-parallel", false, rec.clone()),
    );
    let (a, b) = futures::join!(
        actions::dispatch(
            "iam.grant_responder_access",
            &ctx_a,
            json!({"principals": [principal]})
        ),
        actions::dispatch(
            "iam.grant_responder_access",
            &ctx_b,
            json!({"principals": [principal]})
        ),
    );
    assert_eq!(a.unwrap().outputs["role_arn"], role.arn());
    assert_eq!(b.unwrap().outputs["role_arn"], role.arn());
    assert_eq!(rec.calls_of("CreateRole").len(), 1, "never created twice");

    // Another case may not take it over.
    let err = actions::dispatch(
        "iam.grant_responder_access",
        &action_ctx(&conf, &unique("other"), "grant", false, rec.clone()),
        json!({"principals": [principal], "role_name": role_name}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), "target", "{err}");

    let out = actions::dispatch(
        "iam.revoke_responder_access",
        &action_ctx(&conf, &case, "revoke", false, rec.clone()),
        json!({"role_name": role_name}),
    )
    .await
    .unwrap();
    assert_eq!(out.outputs["deleted"], true);
    let gone = iam
        .get_role()
        .role_name(&role_name)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        aws_sdk_iam::error::ProvideErrorMetadata::code(&gone),
        Some("NoSuchEntity")
    );
    let again = actions::dispatch(
        "iam.revoke_responder_access",
        &action_ctx(&conf, &case, "revoke-again", false, rec.clone()),
        json!({"role_name": role_name}),
    )
    .await
    .unwrap();
    assert_eq!(again.outputs["deleted"], false, "idempotent");
    rec.assert_calls_ok();
}

#[tokio::test]
async fn responder_access_without_principals_trusts_the_account_with_mfa() {
    let conf = sdk_config().await;
    let iam = aws_sdk_iam::Client::new(&conf);
    let case = unique("case");
    let rec = MemoryRecorder::new();
    let role_name = unique("responder");
    let dry = actions::dispatch(
        "iam.grant_responder_access",
        &action_ctx(&conf, &case, "grant", true, rec.clone()),
        json!({"principals": [], "role_name": role_name}),
    )
    .await
    .unwrap();
    assert!(dry.outputs["would"].to_string().contains("CreateRole"));
    assert!(
        iam.get_role().role_name(&role_name).send().await.is_err(),
        "dry run creates nothing"
    );
    assert!(rec.calls().is_empty());

    actions::dispatch(
        "iam.grant_responder_access",
        &action_ctx(&conf, &case, "grant", false, rec.clone()),
        json!({"principals": [], "role_name": role_name, "duration": "30m"}),
    )
    .await
    .unwrap();
    let role = iam.get_role().role_name(&role_name).send().await.unwrap();
    let role = role.role().unwrap();
    assert_eq!(role.max_session_duration(), Some(3600), "IAM's minimum");
    let trust =
        irr_runner::actions::iam::policy_document(role.assume_role_policy_document().unwrap());
    let st = &trust["Statement"][0];
    assert_eq!(
        st["Principal"]["AWS"],
        json!(["arn:aws:iam::123456789012:root"])
    );
    assert_eq!(
        st["Condition"]["Bool"]["aws:MultiFactorAuthPresent"],
        "true"
    );
    actions::dispatch(
        "iam.revoke_responder_access",
        &action_ctx(&conf, &case, "revoke", false, rec.clone()),
        json!({"role_name": role_name}),
    )
    .await
    .unwrap();
    rec.assert_calls_ok();
}

#[tokio::test]
async fn bad_targets_and_parameters_are_clear() {
    let conf = sdk_config().await;
    let rec = MemoryRecorder::new();
    let ctx = action_ctx(&conf, "case-x", "s", false, rec.clone());
    let e = actions::dispatch(
        "ec2.isolate_instance",
        &ctx,
        json!({"instance_id": "i-0123456789abcdef0"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), "target", "{e}");
    let e = actions::dispatch("ec2.isolate_instance", &ctx, json!({"instance": "i-1"}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "params", "{e}");
    let e = actions::dispatch("ec2.snapshot_volume", &ctx, json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "params", "{e}");
    let e = actions::dispatch(
        "iam.grant_responder_access",
        &ctx,
        json!({"principals": [], "duration": "4 hours"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), "params", "{e}");
    // control.approve: auto with --yes; refused without a terminal (tests have none).
    let out = actions::dispatch("control.approve", &ctx, json!({"prompt": "isolate?"}))
        .await
        .unwrap();
    assert_eq!(out.outputs["approved_by"], "auto (--yes)");
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        let mut no = ctx.clone();
        no.assume_yes = false;
        let e = actions::dispatch("control.approve", &no, json!({"prompt": "isolate?"}))
            .await
            .unwrap_err();
        assert_eq!(e.code(), "declined");
    }
    assert!(rec.calls().is_empty());
}
