//! Containment under attack and partial failure (issue 8): optional reads that are denied,
//! a swap of security groups cut in half, a release asked to restore what an attacker planted,
//! and the smaller holes (`for_each` items that die, many original groups, resume in another
//! region). Every test asserts the resulting AWS state and the sealed evidence, not only the
//! exit code.

use std::path::Path;

use aws_sdk_ec2::types::Filter;
use irr_tests::{
    compromised_instance, contained, fixture, irr_with, json_lines, output_text, unique,
    CompromisedInstance, PrivateEmulator,
};
use serde_json::{json, Value};

/// A private emulator enforcing IAM, and admin clients on it (as in `least_privilege.rs`).
struct World {
    emu: PrivateEmulator,
    ec2: aws_sdk_ec2::Client,
    iam: aws_sdk_iam::Client,
    autoscaling: aws_sdk_autoscaling::Client,
}

impl World {
    async fn start() -> World {
        let (emu, conf) = irr_tests::iam_enforcing_emulator().await;
        World {
            ec2: aws_sdk_ec2::Client::new(&conf),
            iam: aws_sdk_iam::Client::new(&conf),
            autoscaling: aws_sdk_autoscaling::Client::new(&conf),
            emu,
        }
    }

    /// A new user whose only permissions are `doc`; returns its access key.
    async fn user_with(&self, doc: &Value) -> (String, String) {
        irr_tests::iam_user_with(&self.iam, doc).await
    }

    /// An instance launched by an Auto Scaling group of its own (in its own VPC, in a wide-open
    /// group); returns it and the group's name.
    async fn instance_in_group(&self) -> (CompromisedInstance, String) {
        let ec2 = &self.ec2;
        let vpc_id = ec2
            .create_vpc()
            .cidr_block("10.7.0.0/16")
            .send()
            .await
            .unwrap()
            .vpc
            .unwrap()
            .vpc_id
            .unwrap();
        let subnet = ec2
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block("10.7.0.0/17")
            .send()
            .await
            .unwrap()
            .subnet
            .unwrap()
            .subnet_id
            .unwrap();
        let open_group = ec2
            .create_security_group()
            .group_name(unique("open"))
            .description("wide-open")
            .vpc_id(&vpc_id)
            .send()
            .await
            .unwrap()
            .group_id
            .unwrap();
        let lt = web_launch_template(ec2, &subnet, &open_group).await;
        let group = unique("web-asg");
        self.autoscaling
            .create_auto_scaling_group()
            .auto_scaling_group_name(&group)
            .launch_template(
                aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                    .launch_template_name(&lt)
                    .version("$Latest")
                    .build(),
            )
            .min_size(1)
            .max_size(1)
            .desired_capacity(1)
            .vpc_zone_identifier(&subnet)
            .send()
            .await
            .unwrap();
        let g = self
            .autoscaling
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(&group)
            .send()
            .await
            .unwrap();
        let instance_id = g.auto_scaling_groups()[0].instances()[0]
            .instance_id()
            .unwrap()
            .to_owned();
        let volumes: Vec<String> = ec2
            .describe_volumes()
            .filters(
                Filter::builder()
                    .name("attachment.instance-id")
                    .values(&instance_id)
                    .build(),
            )
            .send()
            .await
            .unwrap()
            .volumes()
            .iter()
            .filter_map(|v| v.volume_id().map(str::to_owned))
            .collect();
        assert!(!volumes.is_empty(), "the group's instance has a volume");
        (
            CompromisedInstance {
                instance_id,
                vpc_id,
                volumes,
                open_group,
                profile: None,
            },
            group,
        )
    }

    fn irr(
        &self,
        args: &[&str],
        state: &Path,
        key: &(String, String),
        env: &[(&str, &str)],
    ) -> std::process::Output {
        irr_with(args, state, &self.emu.endpoint(), (&key.0, &key.1), env)
    }
}

/// A launch template for the group's instance: one interface in `subnet` and `open_group`,
/// one 8 GiB volume; returns its name.
async fn web_launch_template(ec2: &aws_sdk_ec2::Client, subnet: &str, open_group: &str) -> String {
    use aws_sdk_ec2::types::{
        LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest,
        LaunchTemplateInstanceNetworkInterfaceSpecificationRequest, RequestLaunchTemplateData,
    };
    let lt = unique("web-lt");
    ec2.create_launch_template()
        .launch_template_name(&lt)
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id("ami-12c6146b")
                .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
                // The group on the interface, not the instance: moto adds an instance's
                // launch-time `SecurityGroupIds` to every interface it describes, so no
                // ModifyNetworkInterfaceAttribute could ever take them off
                // (docs/emulator-notes.md).
                .network_interfaces(
                    LaunchTemplateInstanceNetworkInterfaceSpecificationRequest::builder()
                        .device_index(0)
                        .groups(open_group)
                        .subnet_id(subnet)
                        .build(),
                )
                .block_device_mappings(
                    LaunchTemplateBlockDeviceMappingRequest::builder()
                        .device_name("/dev/sda1")
                        .ebs(
                            LaunchTemplateEbsBlockDeviceRequest::builder()
                                .volume_size(8)
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    lt
}

/// `irr run FIXTURE --case CASE --input instance_id=ID --yes --evidence EV --output json`.
fn run_args<'a>(pb: &'a str, case: &'a str, input: &'a str, ev: &'a str) -> Vec<&'a str> {
    vec![
        "run",
        pb,
        "--case",
        case,
        "--input",
        input,
        "--yes",
        "--evidence",
        ev,
        "--output",
        "json",
    ]
}

/// The run's `run_finished` line.
fn finished(out: &std::process::Output) -> Value {
    json_lines(out)
        .into_iter()
        .rev()
        .find(|l| l["event"] == "run_finished")
        .unwrap_or_else(|| panic!("no run_finished: {}", output_text(out)))
}

/// The sealed manifest of the run that printed `out`.
fn sealed_manifest(out: &std::process::Output) -> (String, Value) {
    let loc = finished(out)["evidence"]["location"]
        .as_str()
        .unwrap()
        .to_owned();
    let m = std::fs::read(Path::new(&loc).join("manifest.json")).expect("sealed manifest");
    (loc, serde_json::from_slice(&m).unwrap())
}

/// Reads a sealed artifact as JSON.
fn artifact(loc: &str, path: &str) -> Value {
    serde_json::from_slice(&std::fs::read(Path::new(loc).join(path)).unwrap()).unwrap()
}

fn gaps_of<'a>(gaps: &'a Value, what: &str) -> Vec<&'a Value> {
    gaps.as_array()
        .map(|g| {
            g.iter()
                .filter(|g| g["what"].as_str().is_some_and(|w| w.starts_with(what)))
                .collect()
        })
        .unwrap_or_default()
}

// ---- item 3: optional reads degrade ---------------------------------------------------------

/// The runner is denied `autoscaling:*` (an SCP, a hand-made responder role). An instance in
/// no group and one in an Auto Scaling group both end isolated, protected and snapshotted;
/// the denied reads are gaps in the sealed manifest, in the run summary and in verify's
/// output; for the group's instance irr fell back to its `aws:autoscaling:groupName` tag, tried
/// to detach it, and says loudly that it could not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscaling_denied_still_contains_and_records_the_gaps() {
    let world = World::start().await;
    let key = world
        .user_with(&json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"},
            {"Effect": "Deny", "Action": "autoscaling:*", "Resource": "*"},
        ]}))
        .await;
    let plain = compromised_instance(&world.ec2, &world.iam).await;
    let (grouped, group) = world.instance_in_group().await;
    let pb = fixture("contain-core.yaml");
    let pb = pb.to_str().unwrap();
    for (inc, in_group) in [(&plain, false), (&grouped, true)] {
        let case = unique("IR-gap");
        let state = tempfile::tempdir().unwrap();
        let evidence = tempfile::tempdir().unwrap();
        let input = format!("instance_id={}", inc.instance_id);
        let out = world.irr(
            &run_args(pb, &case, &input, evidence.path().to_str().unwrap()),
            state.path(),
            &key,
            &[],
        );
        assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));

        // AWS state: contained.
        let c = contained(&world.ec2, &world.iam, inc, &case).await;
        assert!(c.isolated, "{inc:?}: {c:?}\n{}", output_text(&out));
        assert!(c.isolation_group_empty, "{c:?}");
        assert!(c.termination_protected, "{c:?}");
        assert_eq!(c.profile_associations, 0, "{c:?}");
        assert_eq!(c.snapshots_per_volume, vec![1; inc.volumes.len()], "{c:?}");

        // The evidence: the gaps, sealed.
        let (loc, manifest) = sealed_manifest(&out);
        let gaps = &manifest["gaps"];
        for step in ["capture", "isolate"] {
            let g: Vec<_> = gaps_of(gaps, "autoscaling:DescribeAutoScalingInstances")
                .into_iter()
                .filter(|g| g["step"] == step)
                .collect();
            assert_eq!(g.len(), 1, "{step}: {gaps:#}");
            assert!(
                g[0]["error"]
                    .as_str()
                    .unwrap()
                    .contains("autoscaling:DescribeAutoScalingInstances"),
                "{g:?}"
            );
        }
        let summary = finished(&out);
        assert_eq!(summary["status"], "succeeded");
        assert!(
            !gaps_of(&summary["gaps"], "autoscaling:DescribeAutoScalingInstances").is_empty(),
            "run_finished shows the gaps: {summary:#}"
        );
        let isolation = artifact(&loc, "artifacts/isolate/isolation.json");
        let before = artifact(&loc, "artifacts/isolate/isolation-before.json");
        assert_eq!(before["auto_scaling_membership_from_tag"], true);
        let detach = gaps_of(gaps, "autoscaling:DetachInstances");
        if in_group {
            // Fallback to the tag; DetachInstances tried (and denied), said loudly.
            assert_eq!(isolation["auto_scaling"]["group"], group.as_str());
            assert_eq!(isolation["auto_scaling"]["membership_from_tag"], true);
            assert_eq!(isolation["auto_scaling"]["detached"], false);
            assert_eq!(detach.len(), 1, "{gaps:#}");
            assert!(detach[0]["what"].as_str().unwrap().contains(&group));
            let notes = isolation["notes"].to_string();
            assert!(
                notes
                    .contains("WARNING: the instance could not be taken out of Auto Scaling group"),
                "{notes}"
            );
            let member = world
                .autoscaling
                .describe_auto_scaling_instances()
                .instance_ids(&inc.instance_id)
                .send()
                .await
                .unwrap();
            assert_eq!(
                member.auto_scaling_instances().len(),
                1,
                "the denied detach left it in the group"
            );
        } else {
            assert!(isolation["auto_scaling"].is_null(), "{isolation:#}");
            assert!(detach.is_empty(), "{gaps:#}");
        }

        // verify: clean, the gaps shown as warnings.
        let v = world.irr(&["evidence", "verify", &loc], state.path(), &key, &[]);
        let text = output_text(&v);
        assert_eq!(v.status.code(), Some(0), "{text}");
        assert!(
            text.contains("WARNING capture: autoscaling:DescribeAutoScalingInstances not captured"),
            "{text}"
        );
    }
}

// ---- item 1: release from the record, not from tags -----------------------------------------

/// `irr ARGS` against the shared emulator with the emulator's default key.
fn irr(args: &[&str], state: &Path, env: &[(&str, &str)]) -> std::process::Output {
    irr_with(
        args,
        state,
        &irr_tests::endpoint(),
        ("testing", "testing"),
        env,
    )
}

async fn shared() -> (aws_sdk_ec2::Client, aws_sdk_iam::Client) {
    let conf = irr_tests::sdk_config().await;
    (
        aws_sdk_ec2::Client::new(&conf),
        aws_sdk_iam::Client::new(&conf),
    )
}

/// Interface id -> its groups, sorted, for an instance.
async fn eni_groups(
    ec2: &aws_sdk_ec2::Client,
    instance: &str,
) -> std::collections::BTreeMap<String, Vec<String>> {
    ec2.describe_network_interfaces()
        .filters(
            Filter::builder()
                .name("attachment.instance-id")
                .values(instance)
                .build(),
        )
        .send()
        .await
        .unwrap()
        .network_interfaces()
        .iter()
        .map(|n| {
            let mut g: Vec<String> = n
                .groups()
                .iter()
                .filter_map(|g| g.group_id().map(str::to_owned))
                .collect();
            g.sort();
            (n.network_interface_id().unwrap().to_owned(), g)
        })
        .collect()
}

async fn profile_arns(ec2: &aws_sdk_ec2::Client, instance: &str) -> Vec<String> {
    ec2.describe_iam_instance_profile_associations()
        .filters(
            Filter::builder()
                .name("instance-id")
                .values(instance)
                .build(),
        )
        .send()
        .await
        .unwrap()
        .iam_instance_profile_associations()
        .iter()
        .filter(|a| a.state().map(|s| s.as_str()) == Some("associated"))
        .filter_map(|a| {
            a.iam_instance_profile()
                .and_then(|p| p.arn())
                .map(str::to_owned)
        })
        .collect()
}

/// What an attacker with `ec2:CreateTags` and an open group of their own plants: the
/// `irr:original-*` tags pointing at their group and their admin profile.
async fn plant_tags(
    ec2: &aws_sdk_ec2::Client,
    iam: &aws_sdk_iam::Client,
    inc: &CompromisedInstance,
) -> (String, String) {
    let evil_group = ec2
        .create_security_group()
        .group_name(unique("attacker-open"))
        .description("attacker")
        .vpc_id(&inc.vpc_id)
        .send()
        .await
        .unwrap()
        .group_id
        .unwrap();
    let evil_profile = unique("attacker-admin");
    let arn = iam
        .create_instance_profile()
        .instance_profile_name(&evil_profile)
        .send()
        .await
        .unwrap()
        .instance_profile
        .unwrap()
        .arn;
    for eni in eni_groups(ec2, &inc.instance_id).await.keys() {
        ec2.create_tags()
            .resources(eni)
            .tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key("irr:original-groups")
                    .value(&evil_group)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    ec2.create_tags()
        .resources(&inc.instance_id)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("irr:original-profile")
                .value(&arn)
                .build(),
        )
        .send()
        .await
        .unwrap();
    (evil_group, arn)
}

/// Contains `inc` for `case` with evidence in `ev`; returns the run's output.
fn contain_core(
    inc: &CompromisedInstance,
    case: &str,
    state: &Path,
    ev: &str,
) -> std::process::Output {
    let pb = fixture("contain-core.yaml");
    let input = format!("instance_id={}", inc.instance_id);
    let out = irr(
        &run_args(pb.to_str().unwrap(), case, &input, ev),
        state,
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    out
}

fn release(inc: &CompromisedInstance, case: &str, state: &Path, ev: &str) -> std::process::Output {
    let pb = fixture("release.yaml");
    let input = format!("instance_id={}", inc.instance_id);
    irr(
        &run_args(pb.to_str().unwrap(), case, &input, ev),
        state,
        &[],
    )
}

fn step_of<'a>(out: &'a Value, id: &str) -> &'a Value {
    out["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step {id}: {out:#}"))
}

/// After containment an attacker rewrites the `irr:original-*` tags to their open group and
/// admin profile. A release in a later run of the case restores what the case's sealed
/// record says, and reports that the tags disagreed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_restores_the_record_not_planted_tags() {
    let (ec2, iam) = shared().await;
    let inc = compromised_instance(&ec2, &iam).await;
    let before = eni_groups(&ec2, &inc.instance_id).await;
    let profile_before = profile_arns(&ec2, &inc.instance_id).await;
    assert_eq!(profile_before.len(), 1);
    let case = unique("IR-rel");
    let state = tempfile::tempdir().unwrap();
    let evidence = tempfile::tempdir().unwrap();
    let ev = evidence.path().to_str().unwrap();
    contain_core(&inc, &case, state.path(), ev);
    assert!(contained(&ec2, &iam, &inc, &case).await.isolated);
    let (evil_group, evil_profile) = plant_tags(&ec2, &iam, &inc).await;

    let out = release(&inc, &case, state.path(), ev);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(
        eni_groups(&ec2, &inc.instance_id).await,
        before,
        "the recorded groups"
    );
    assert_eq!(
        profile_arns(&ec2, &inc.instance_id).await,
        profile_before,
        "the recorded profile, not {evil_profile}"
    );
    for groups in eni_groups(&ec2, &inc.instance_id).await.values() {
        assert!(!groups.contains(&evil_group));
    }
    let summary = finished(&out);
    let step = step_of(&summary, "release");
    let diffs = step["outputs"]["tag_differences"].as_array().unwrap();
    assert!(
        diffs.iter().any(|d| d["tag"] == json!([evil_group])),
        "{diffs:?}"
    );
    assert!(
        diffs
            .iter()
            .any(|d| d["instance_profile"]["tag"] == evil_profile.as_str()),
        "{diffs:?}"
    );
    let (loc, _) = sealed_manifest(&out);
    let rel = artifact(&loc, "artifacts/release/release.json");
    assert!(rel["notes"]
        .to_string()
        .contains("disagrees with the case's record"));
    assert!(
        rel["record"]
            .to_string()
            .contains("artifacts/isolate/isolation.json"),
        "{rel:#}"
    );
}

/// A release for a case that never isolated the instance (the tags are there, planted or
/// from another case) refuses, and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_without_a_record_refuses_and_changes_nothing() {
    let (ec2, iam) = shared().await;
    let inc = compromised_instance(&ec2, &iam).await;
    let state = tempfile::tempdir().unwrap();
    let evidence = tempfile::tempdir().unwrap();
    let ev = evidence.path().to_str().unwrap();
    contain_core(&inc, &unique("IR-a"), state.path(), ev);
    let isolated = eni_groups(&ec2, &inc.instance_id).await;
    let out = release(&inc, &unique("IR-b"), state.path(), ev);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let summary = finished(&out);
    let err = step_of(&summary, "release")["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        err.contains("refusing to release") && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(eni_groups(&ec2, &inc.instance_id).await, isolated);
    assert!(profile_arns(&ec2, &inc.instance_id).await.is_empty());
    assert!(
        !json_lines(&out)
            .iter()
            .any(|e| e["event"] == "call_started"),
        "no mutating call was made"
    );
}

/// A local bundle rewritten after sealing (the isolation record's original groups replaced by
/// the attacker's) no longer matches its manifest: the release refuses and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_refuses_a_record_that_does_not_match_its_manifest() {
    let (ec2, iam) = shared().await;
    let inc = compromised_instance(&ec2, &iam).await;
    let case = unique("IR-tamper");
    let state = tempfile::tempdir().unwrap();
    let evidence = tempfile::tempdir().unwrap();
    let ev = evidence.path().to_str().unwrap();
    let out = contain_core(&inc, &case, state.path(), ev);
    let (loc, _) = sealed_manifest(&out);
    let (evil_group, _) = plant_tags(&ec2, &iam, &inc).await;
    let path = Path::new(&loc).join("artifacts/isolate/isolation.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let forged = text.replace(&inc.open_group, &evil_group);
    assert_ne!(forged, text);
    std::fs::write(&path, forged).unwrap();
    let isolated = eni_groups(&ec2, &inc.instance_id).await;
    let out = release(&inc, &case, state.path(), ev);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let err = step_of(&finished(&out), "release")["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(err.contains("does not match its manifest"), "{err}");
    assert_eq!(eni_groups(&ec2, &inc.instance_id).await, isolated);
}

/// The runner dies between the two moves of an interface (it is in the allow-all group); the
/// attacker rewrites the interface's `irr:original-groups` tag before the resume. The resumed
/// isolation records the true originals (the first attempt's before-state, from the journal)
/// and a later release restores them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_after_a_poisoned_tag_keeps_the_true_originals() {
    let (ec2, iam) = shared().await;
    let pb = fixture("contain-core.yaml");
    let pb = pb.to_str().unwrap();
    let evidence = tempfile::tempdir().unwrap();
    let ev = evidence.path().to_str().unwrap();
    // A reference run says where the first move of the first interface ends.
    let reference = compromised_instance(&ec2, &iam).await;
    let state = tempfile::tempdir().unwrap();
    let out = contain_core(&reference, &unique("IR-ref"), state.path(), ev);
    let events = json_lines(&out);
    let first_move = events
        .iter()
        .find(|e| {
            e["event"] == "call_started" && e["operation"] == "ModifyNetworkInterfaceAttribute"
        })
        .unwrap()["call"]
        .clone();
    let at = events
        .iter()
        .position(|e| e["event"] == "call_finished" && e["call"] == first_move)
        .unwrap()
        + 1;

    let inc = compromised_instance(&ec2, &iam).await;
    let before = eni_groups(&ec2, &inc.instance_id).await;
    let case = unique("IR-poison");
    let input = format!("instance_id={}", inc.instance_id);
    let killed = irr(
        &run_args(pb, &case, &input, ev),
        state.path(),
        &[("IRR_FAULT_KILL_AT_SEQ", &at.to_string())],
    );
    assert_eq!(
        killed.status.code(),
        None,
        "killed: {}",
        output_text(&killed)
    );
    let run_id = json_lines(&killed)[0]["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (evil_group, _) = plant_tags(&ec2, &iam, &inc).await;
    let resumed = irr(
        &["resume", &run_id, "--yes", "--output", "json"],
        state.path(),
        &[],
    );
    assert_eq!(resumed.status.code(), Some(0), "{}", output_text(&resumed));
    assert!(contained(&ec2, &iam, &inc, &case).await.isolated);
    // The resumed attempt is the step's second (attempts count across a resume): its
    // artifacts are beside the first attempt's, never over them.
    let (loc, manifest) = sealed_manifest(&resumed);
    let paths: Vec<&str> = manifest["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["path"].as_str())
        .filter(|p| p.starts_with("artifacts/isolate/"))
        .collect();
    assert!(
        paths.contains(&"artifacts/isolate/isolation-before.json")
            && paths.contains(&"artifacts/isolate/attempt-2/isolation.json"),
        "{paths:?}"
    );
    let iso = artifact(&loc, "artifacts/isolate/attempt-2/isolation.json");
    for (eni, groups) in &before {
        let mut recorded: Vec<String> = iso["original_groups"][eni]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g.as_str().unwrap().to_owned())
            .collect();
        recorded.sort();
        assert_eq!(&recorded, groups, "{eni}: {iso:#}");
    }
    assert!(
        iso["notes"]
            .to_string()
            .contains("disagrees with the case's record"),
        "{iso:#}"
    );
    let out = release(&inc, &case, state.path(), ev);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let after = eni_groups(&ec2, &inc.instance_id).await;
    assert_eq!(after, before);
    assert!(!after.values().any(|g| g.contains(&evil_group)));
}

// ---- item 9: the smaller holes --------------------------------------------------------------

/// 16 original groups on one interface (AWS's maximum): 16 ids of 20 characters joined by
/// commas are 335 characters, past the 256 a tag value may hold. Isolation isolates (no tag
/// per interface is written at all), the record holds all 16, and the release restores them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_original_groups_isolate_and_release() {
    use aws_sdk_ec2::types::InstanceNetworkInterfaceSpecification;
    let (ec2, iam) = shared().await;
    let base = compromised_instance(&ec2, &iam).await;
    let subnet = ec2
        .describe_subnets()
        .filters(
            Filter::builder()
                .name("vpc-id")
                .values(&base.vpc_id)
                .build(),
        )
        .send()
        .await
        .unwrap()
        .subnets()[0]
        .subnet_id()
        .unwrap()
        .to_owned();
    let mut groups = Vec::new();
    for _ in 0..16 {
        groups.push(
            ec2.create_security_group()
                .group_name(unique("many"))
                .description("one-of-sixteen")
                .vpc_id(&base.vpc_id)
                .send()
                .await
                .unwrap()
                .group_id
                .unwrap(),
        );
    }
    assert!(groups.join(",").len() > 256);
    let mut spec = InstanceNetworkInterfaceSpecification::builder()
        .device_index(0)
        .subnet_id(&subnet);
    for g in &groups {
        spec = spec.groups(g);
    }
    let run = ec2
        .run_instances()
        .image_id("ami-12c6146b")
        .min_count(1)
        .max_count(1)
        .network_interfaces(spec.build())
        .block_device_mappings(
            aws_sdk_ec2::types::BlockDeviceMapping::builder()
                .device_name("/dev/sda1")
                .ebs(
                    aws_sdk_ec2::types::EbsBlockDevice::builder()
                        .volume_size(8)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let id = run.instances()[0].instance_id().unwrap().to_owned();
    let inc = CompromisedInstance {
        instance_id: id.clone(),
        vpc_id: base.vpc_id.clone(),
        volumes: vec![],
        open_group: groups[0].clone(),
        profile: None,
    };
    let before = eni_groups(&ec2, &id).await;
    let mut sorted = groups.clone();
    sorted.sort();
    assert_eq!(
        before.values().next().unwrap(),
        &sorted,
        "moto kept 16 groups"
    );
    let case = unique("IR-16");
    let state = tempfile::tempdir().unwrap();
    let evidence = tempfile::tempdir().unwrap();
    let ev = evidence.path().to_str().unwrap();
    let out = contain_core(&inc, &case, state.path(), ev);
    assert!(contained(&ec2, &iam, &inc, &case).await.isolated);
    let (loc, _) = sealed_manifest(&out);
    let iso = artifact(&loc, "artifacts/isolate/isolation.json");
    let eni = before.keys().next().unwrap();
    assert_eq!(iso["original_groups"][eni].as_array().unwrap().len(), 16);
    let tags = ec2
        .describe_tags()
        .filters(Filter::builder().name("resource-id").values(eni).build())
        .filters(
            Filter::builder()
                .name("key")
                .values("irr:original-groups")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(
        tags.tags().is_empty(),
        "no truncated tag: {:?}",
        tags.tags()
    );

    let out = release(&inc, &case, state.path(), ev);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(eni_groups(&ec2, &id).await, before, "all 16 restored");
}

/// `irr resume` in another region than the run's refuses before anything is done (the run's
/// resources are in its own region), exit 2, the journal untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_refuses_another_region() {
    let (ec2, iam) = shared().await;
    let inc = compromised_instance(&ec2, &iam).await;
    let pb = fixture("contain-core.yaml");
    let state = tempfile::tempdir().unwrap();
    let evidence = tempfile::tempdir().unwrap();
    let case = unique("IR-region");
    let input = format!("instance_id={}", inc.instance_id);
    let killed = irr(
        &run_args(
            pb.to_str().unwrap(),
            &case,
            &input,
            evidence.path().to_str().unwrap(),
        ),
        state.path(),
        &[("IRR_FAULT_KILL_AT_SEQ", "3")],
    );
    assert_eq!(killed.status.code(), None, "{}", output_text(&killed));
    let run_id = json_lines(&killed)[0]["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let journal = state
        .path()
        .join("runs")
        .join(&run_id)
        .join("journal.jsonl");
    let lines = std::fs::read_to_string(&journal).unwrap().lines().count();
    let out = irr(
        &["resume", &run_id, "--yes", "--region", "eu-west-1"],
        state.path(),
        &[],
    );
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("acts in region us-east-1") && text.contains("nothing was changed"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(&journal).unwrap().lines().count(),
        lines,
        "the journal is untouched"
    );
    // In its own region it resumes and contains.
    let out = irr(
        &["resume", &run_id, "--yes", "--output", "json"],
        state.path(),
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(contained(&ec2, &iam, &inc, &case).await.isolated);
}

// ---- item 2: never left open ------------------------------------------------------------

/// The `ModifyNetworkInterfaceAttribute` calls of a run's journal (its JSON lines), as
/// `(swap step, ok)` in order: `allow-all`, `isolation`, `compensate:isolation`, ...
fn swap_moves(out: &std::process::Output) -> Vec<(String, bool)> {
    let lines = json_lines(out);
    let mut started = std::collections::HashMap::new();
    let mut moves = Vec::new();
    for l in &lines {
        if l["event"] == "call_started" && l["operation"] == "ModifyNetworkInterfaceAttribute" {
            started.insert(
                l["call"].as_u64().unwrap(),
                l["params"]["step"].as_str().unwrap_or("").to_owned(),
            );
        }
        if l["event"] == "call_finished" {
            if let Some(step) = started.remove(&l["call"].as_u64().unwrap()) {
                moves.push((step, l["ok"] == true));
            }
        }
    }
    assert!(
        started.is_empty(),
        "a move started and never finished: {started:?}"
    );
    moves
}

/// A run of FIXTURE on `inc` through a fault proxy: its output, the faults injected, the
/// case, and the state and evidence directories (kept for the caller).
struct ProxiedRun {
    out: std::process::Output,
    injected: Vec<irr_runner::proxy::Injected>,
    case: String,
    state: tempfile::TempDir,
    _evidence: tempfile::TempDir,
}

/// Runs FIXTURE on `inc` through a fault proxy with `rule`, evidence local.
async fn isolate_through(
    fixture_name: &str,
    inc: &CompromisedInstance,
    rule: irr_runner::proxy::Rule,
) -> ProxiedRun {
    let proxy = irr_runner::proxy::FaultProxy::start(
        &irr_tests::endpoint(),
        irr_runner::proxy::ProxySpec {
            rules: vec![rule],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let case = unique("IR-swap");
    let url = proxy.url().to_owned();
    let pb = fixture(fixture_name);
    let input = format!("instance_id={}", inc.instance_id);
    let state = tempfile::tempdir().unwrap();
    let evidence = tempfile::tempdir().unwrap();
    let (c, s, e) = (
        case.clone(),
        state.path().to_owned(),
        evidence.path().to_str().unwrap().to_owned(),
    );
    let out = tokio::task::spawn_blocking(move || {
        irr_with(
            &run_args(pb.to_str().unwrap(), &c, &input, &e),
            &s,
            &url,
            ("testing", "testing"),
            &[],
        )
    })
    .await
    .unwrap();
    ProxiedRun {
        out,
        injected: proxy.injected(),
        case,
        state,
        _evidence: evidence,
    }
}

/// Exactly the second `ModifyNetworkInterfaceAttribute` (the move from the allow-all group
/// to the isolation group) is refused: irr makes the compensating move into the isolation
/// group, journals it, and fails the step loudly. The interface ends isolated, never open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_second_move_is_compensated_and_fails_loudly() {
    let (ec2, iam) = shared().await;
    let inc = compromised_instance(&ec2, &iam).await;
    let before = eni_groups(&ec2, &inc.instance_id).await;
    assert_eq!(before.len(), 1, "{before:?}");
    let ProxiedRun {
        out,
        injected,
        case,
        ..
    } = isolate_through(
        "isolate-once.yaml",
        &inc,
        irr_runner::proxy::Rule {
            action: "ec2:ModifyNetworkInterfaceAttribute".into(),
            fault: irr_runner::proxy::FaultKind::Deny,
            nth: Some(2),
            times: Some(1),
            latency_ms: None,
            contains: None,
        },
    )
    .await;
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_eq!(injected.len(), 1, "{injected:?}");
    let summary = finished(&out);
    let step = step_of(&summary, "isolate");
    assert_eq!(step["status"], "failed", "{step:#}");
    let error = step["error"].as_str().unwrap();
    assert!(
        error.contains("a compensating move put it in the isolation group"),
        "{error}"
    );
    // Journaled: the two moves and the compensation, nothing else.
    assert_eq!(
        swap_moves(&out),
        vec![
            ("allow-all".to_owned(), true),
            ("isolation".to_owned(), false),
            ("compensate:isolation".to_owned(), true),
        ],
        "{text}"
    );
    // AWS: only the isolation group, which has no rule.
    let c = contained(&ec2, &iam, &inc, &case).await;
    assert!(c.isolated, "{c:?}");
    assert!(c.isolation_group_empty, "{c:?}");
}

/// The step's 10-second timeout fires while the second move is in flight (the proxy holds it
/// for 20 s; 10 s leave room to reach it on a loaded machine): the swap is one unit the
/// timeout cannot cut, so the move completes, the run waits for it before it ends, and the
/// interface is isolated; the step fails on its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_between_the_two_moves_does_not_leave_it_open() {
    let (ec2, iam) = shared().await;
    let inc = compromised_instance(&ec2, &iam).await;
    let ProxiedRun {
        out,
        injected,
        case,
        ..
    } = isolate_through(
        "isolate-timeout.yaml",
        &inc,
        irr_runner::proxy::Rule {
            action: "ec2:ModifyNetworkInterfaceAttribute".into(),
            fault: irr_runner::proxy::FaultKind::Latency,
            nth: Some(2),
            times: Some(1),
            latency_ms: Some(20_000),
            contains: None,
        },
    )
    .await;
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_eq!(injected.len(), 1, "{injected:?}");
    let summary = finished(&out);
    let step = step_of(&summary, "isolate");
    assert_eq!(step["status"], "failed", "{step:#}");
    assert!(
        step["error"].as_str().unwrap().contains("timed out"),
        "{step:#}"
    );
    assert_eq!(
        swap_moves(&out),
        vec![
            ("allow-all".to_owned(), true),
            ("isolation".to_owned(), true)
        ],
        "{text}"
    );
    let c = contained(&ec2, &iam, &inc, &case).await;
    assert!(c.isolated, "{c:?}");
    assert!(c.isolation_group_empty, "{c:?}");
}

// ---- item 5: write-once evidence ----------------------------------------------------------

/// The first attempt of `isolate` fails after it recorded the before-state (its first
/// `CreateSecurityGroup` is refused); the retry succeeds. Both attempts' artifacts are kept
/// (`artifacts/isolate/...` and `artifacts/isolate/attempt-2/...`), listed in the manifest
/// with their attempt, and the report names the first attempt's before-state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_keeps_the_first_attempts_before_state() {
    let (ec2, iam) = shared().await;
    let inc = compromised_instance(&ec2, &iam).await;
    let run = isolate_through(
        "isolate-retry.yaml",
        &inc,
        irr_runner::proxy::Rule {
            action: "ec2:CreateSecurityGroup".into(),
            fault: irr_runner::proxy::FaultKind::Deny,
            nth: Some(1),
            times: Some(1),
            latency_ms: None,
            contains: None,
        },
    )
    .await;
    let text = output_text(&run.out);
    assert_eq!(run.out.status.code(), Some(0), "{text}");
    assert_eq!(run.injected.len(), 1, "{:?}", run.injected);
    let summary = finished(&run.out);
    assert_eq!(step_of(&summary, "isolate")["attempts"], 2, "{summary:#}");
    let c = contained(&ec2, &iam, &inc, &run.case).await;
    assert!(c.isolated, "{c:?}");

    let (loc, manifest) = sealed_manifest(&run.out);
    let item = |path: &str| {
        manifest["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["path"] == path)
            .cloned()
            .unwrap_or_else(|| panic!("{path} not in the manifest: {manifest:#}"))
    };
    let first = item("artifacts/isolate/isolation-before.json");
    let second = item("artifacts/isolate/attempt-2/isolation-before.json");
    assert_eq!(first["attempt"], 1, "{first:#}");
    assert_eq!(second["attempt"], 2, "{second:#}");
    // Both hold the true originals (the first attempt changed nothing before it failed),
    // each in its own file, hashed apart.
    for path in [
        "artifacts/isolate/isolation-before.json",
        "artifacts/isolate/attempt-2/isolation-before.json",
    ] {
        let before = artifact(&loc, path).to_string();
        assert!(before.contains(&inc.open_group), "{path}: {before}");
    }
    // The first attempt's file is exactly what its evidence_captured line said.
    let captured: Vec<Value> = json_lines(&run.out)
        .into_iter()
        .filter(|l| l["event"] == "evidence_captured" && l["step"] == "isolate")
        .collect();
    assert!(
        captured
            .iter()
            .any(|l| l["path"] == "artifacts/isolate/isolation-before.json"
                && l["sha256"] == first["sha256"]),
        "{captured:#?}"
    );
    let v = irr(&["evidence", "verify", &loc], run.state.path(), &[]);
    assert_eq!(v.status.code(), Some(0), "{}", output_text(&v));

    let run_id = summary["run_id"].as_str().unwrap();
    let report = irr(&["report", run_id, "--format", "md"], run.state.path(), &[]);
    let md = String::from_utf8_lossy(&report.stdout);
    assert_eq!(report.status.code(), Some(0), "{}", output_text(&report));
    assert!(
        md.contains("Step `isolate` ran 2 attempts: what it saw before its first change is the first attempt's, `artifacts/isolate/isolation-before.json`"),
        "{md}"
    );
}
