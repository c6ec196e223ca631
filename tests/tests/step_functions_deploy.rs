//! Compiled `cloudformation.deploy_stack` steps executed on LocalStack's Step Functions
//! interpreter: the template rendered by the state machine (byte for byte the CLI's
//! rendering), the stack created, reused, refused, replaced and rolled back as the CLI does,
//! asserted through CloudFormation and the evidence objects.
//!
//! LocalStack: `IRR_TEST_LOCALSTACK_ENDPOINT`, else a private one (`scripts/ensure-localstack`).

use std::collections::BTreeMap;
use std::time::Duration;

use irr_runner::actions::AwsClients;
use irr_tests::sfn::{
    assert_every_object_verified, clients, compile, create_machine, ended, evidence_bucket,
    evidence_objects, history, seal_and_verify, start,
};
use irr_tests::unique;
use serde_json::{json, Value};

/// A state machine of `playbook` (written with `files` beside it) and the evidence bucket.
async fn machine_of(
    c: &AwsClients,
    playbook: &str,
    files: &[(&str, &str)],
) -> (tempfile::TempDir, String, String) {
    let bucket = evidence_bucket(c).await;
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let path = dir.path().join("playbook.yaml");
    std::fs::write(&path, playbook).unwrap();
    let definition = compile(&path, dir.path(), &[]);
    let machine = create_machine(c, &definition, &bucket).await;
    (dir, machine, bucket)
}

/// Runs one execution; its name, ARN, status and output.
async fn run(c: &AwsClients, machine: &str, input: &Value) -> (String, String, String, Value) {
    let name = unique("x");
    let arn = start(c, machine, &name, input).await;
    let (status, output) = ended(c, &arn, Duration::from_secs(600)).await;
    (name, arn, status, output.unwrap_or_default())
}

fn object(objects: &BTreeMap<String, Vec<u8>>, path: &str) -> Value {
    let bytes = objects
        .get(path)
        .unwrap_or_else(|| panic!("{path} in {:?}", objects.keys()));
    serde_json::from_slice(bytes).unwrap()
}

/// The shipped clean room deployed by a compiled `cloudformation.deploy_stack` step.
const CLEAN_ROOM: &str = "apiVersion: irr/v1
kind: Playbook
metadata: {name: clean-room, version: 1.0.0}
inputs:
  snapshot_ids: {type: list, items: string}
  ami: {type: string, default: ami-12c6146b}
steps:
  - id: clean-room
    action: cloudformation.deploy_stack
    timeout: 20m
    with:
      stack_name: \"irr-clean-room-{{case.id}}\"
      template: forensic-clean-room.yaml
      parameters:
        snapshot_ids: \"{{inputs.snapshot_ids}}\"
        evidence_bucket: irr-evidence-sfn
        evidence_prefix: cases
        workstation_ami: \"{{inputs.ami}}\"
        volume_size: 8
        s3_prefix_list_id: pl-63a5400a
      capabilities: [CAPABILITY_IAM]
      tags:
        irr:purpose: forensic-clean-room
      timeout: 10m
";

/// Two snapshots of a new volume; their ids.
async fn two_snapshots(ec2: &aws_sdk_ec2::Client) -> Vec<String> {
    let vol = ec2
        .create_volume()
        .size(8)
        .availability_zone("us-east-1a")
        .send()
        .await
        .unwrap();
    let mut snaps = Vec::new();
    for _ in 0..2 {
        let s = ec2
            .create_snapshot()
            .volume_id(vol.volume_id().unwrap())
            .send()
            .await
            .unwrap();
        snaps.push(s.snapshot_id().unwrap().to_owned());
    }
    snaps
}

/// The failure an execution ended with (`steps.ID.error`, `cause`) from its last state.
async fn step_failure(c: &AwsClients, arn: &str, step: &str) -> (String, String) {
    let events = history(c, arn).await;
    let last: Value = events
        .iter()
        .rev()
        .find_map(|e| e.state_exited_event_details().and_then(|d| d.output()))
        .map(|o| serde_json::from_str(o).unwrap())
        .unwrap();
    let s = &last["steps"][step];
    (
        s["error"].as_str().unwrap_or_default().to_owned(),
        s["cause"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compiled_clean_room_renders_the_template_creates_reuses_and_refuses_as_the_cli() {
    let c = clients().await;
    let snaps = two_snapshots(&c.ec2).await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../playbooks/templates");
    let template = std::fs::read_to_string(root.join("forensic-clean-room.yaml")).unwrap();
    let (_dir, machine, bucket) =
        machine_of(&c, CLEAN_ROOM, &[("forensic-clean-room.yaml", &template)]).await;
    let case = unique("IR-sfn-cr");
    let stack = format!("irr-clean-room-{case}");
    let input = json!({"case_id": case, "inputs": {"snapshot_ids": snaps}});
    let (name, arn, status, output) = run(&c, &machine, &input).await;
    assert_eq!(status, "SUCCEEDED", "{arn} {output:#}");
    let out = &output["steps"]["clean-room"]["outputs"];
    let st = &complete_stack(&c, &stack).await;
    assert_eq!(out["stack_id"], st.stack_id().unwrap(), "{output:#}");
    assert_eq!(out["stack_name"], stack);
    assert_eq!(out["reused"], false);
    let tags: BTreeMap<&str, &str> = st
        .tags()
        .iter()
        .map(|t| (t.key().unwrap(), t.value().unwrap()))
        .collect();
    assert_eq!(tags.get("irr:case"), Some(&case.as_str()));
    assert_eq!(tags.get("irr:run"), Some(&name.as_str()));
    assert_eq!(tags.get("irr:purpose"), Some(&"forensic-clean-room"));
    // What the CLI records, as the CLI: LocalStack makes no AWS::EC2::Volume (conformance.rs).
    let vpc = out["outputs"]["VpcId"].as_str().expect("VpcId output");
    let vpcs = c.ec2.describe_vpcs().vpc_ids(vpc).send().await.unwrap();
    assert_eq!(vpcs.vpcs().len(), 1);
    let missing: Vec<&str> = out["not_created"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["resource_type"] == "AWS::EC2::Volume")
        .map(|r| r["logical_resource_id"].as_str().unwrap())
        .collect();
    assert_eq!(missing, ["EvidenceVolume0", "EvidenceVolume1"], "{out:#}");
    let objects = evidence_objects(&c, &bucket, &case, &name).await;
    assert_clean_room_evidence(&objects, &template, &case, &name, &snaps);

    // Again, same case and values: the stack is reused (recorded before), nothing created.
    let (name2, arn, status, output) = run(&c, &machine, &input).await;
    assert_eq!(status, "SUCCEEDED", "{arn} {output:#}");
    let out2 = &output["steps"]["clean-room"]["outputs"];
    assert_eq!(out2["reused"], true);
    assert_eq!(out2["stack_id"], out["stack_id"]);
    let objects = evidence_objects(&c, &bucket, &case, &name2).await;
    assert_eq!(
        object(&objects, "clean-room/stack-before.json")["stack_id"],
        out["stack_id"]
    );

    // Other snapshots for the same case's stack: refused, the stack kept as it was.
    let other = json!({"case_id": case, "inputs": {"snapshot_ids": [snaps[0].clone()]}});
    let (_, arn, status, _) = run(&c, &machine, &other).await;
    assert_eq!(status, "FAILED");
    let (error, cause) = step_failure(&c, &arn, "clean-room").await;
    assert_eq!(error, "irr.StackDiffers", "{cause}");
    assert!(cause.contains("SnapshotIds"), "{cause}");
    let again = c
        .cloudformation
        .describe_stacks()
        .stack_name(&stack)
        .send()
        .await
        .unwrap();
    assert_eq!(again.stacks()[0].stack_id(), st.stack_id());
}

/// The evidence of the clean room the compiled step deployed, as the CLI records it: the
/// rendered template (byte for byte the CLI's rendering), the request, the stack, its
/// resources and events.
fn assert_clean_room_evidence(
    objects: &BTreeMap<String, Vec<u8>>,
    template: &str,
    case: &str,
    name: &str,
    snaps: &[String],
) {
    let params = json!({"snapshot_ids": snaps, "evidence_bucket": "irr-evidence-sfn", "evidence_prefix": "cases", "workstation_ami": "ami-12c6146b", "volume_size": 8, "s3_prefix_list_id": "pl-63a5400a"});
    let cli = irr_runner::actions::cloudformation::render(
        template,
        case,
        name,
        params.as_object().unwrap(),
    )
    .unwrap();
    let rendered = object(objects, "clean-room/template.yaml.json");
    assert_eq!(rendered.as_str(), Some(cli.as_str()));
    let request = object(objects, "clean-room/stack-request.json");
    assert_eq!(request["stack_name"], format!("irr-clean-room-{case}"));
    assert_eq!(
        request["parameters"]["SnapshotIds"],
        snaps.join(","),
        "{request:#}"
    );
    assert_eq!(request["parameters"]["VolumeSize"], "8");
    assert_eq!(request["render_only_parameters"], json!([]));
    assert_eq!(request["timeout_seconds"], 600);
    let recorded = object(objects, "clean-room/stack.json");
    assert_eq!(recorded["status"], "CREATE_COMPLETE");
    assert_eq!(recorded["tags"]["irr:case"], case);
    let resources = object(objects, "clean-room/stack-resources.json");
    assert!(
        resources["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["logical_resource_id"] == "Workstation"),
        "{resources:#}"
    );
    let evs = object(objects, "clean-room/stack-events.json");
    assert!(!evs["events"].as_array().unwrap().is_empty());
}

/// A stack of `case` left `CREATE_FAILED` (as a failed earlier attempt leaves it); its id.
async fn failed_stack(cfn: &aws_sdk_cloudformation::Client, stack: &str, case: &str) -> String {
    cfn.create_stack()
        .stack_name(stack)
        .template_body(FAILING_TEMPLATE)
        .parameters(
            aws_sdk_cloudformation::types::Parameter::builder()
                .parameter_key("Fail")
                .parameter_value("yes")
                .build(),
        )
        .on_failure(aws_sdk_cloudformation::types::OnFailure::DoNothing)
        .tags(
            aws_sdk_cloudformation::types::Tag::builder()
                .key("irr:case")
                .value(case)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut failed_id = String::new();
    for _ in 0..60 {
        let d = cfn
            .describe_stacks()
            .stack_name(stack)
            .send()
            .await
            .unwrap();
        let st = &d.stacks()[0];
        failed_id = st.stack_id().unwrap().to_owned();
        if !st.stack_status().unwrap().as_str().ends_with("IN_PROGRESS") {
            assert_eq!(st.stack_status().unwrap().as_str(), "CREATE_FAILED");
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    failed_id
}

/// A stack that fails on demand (a subnet in a VPC that does not exist) unless `fail` is
/// `no`, deployed by a compiled step.
const FAILING: &str = "apiVersion: irr/v1
kind: Playbook
metadata: {name: failing-stack, version: 1.0.0}
inputs:
  fail: {type: string}
steps:
  - id: room
    action: cloudformation.deploy_stack
    with:
      stack_name: \"irr-room-{{case.id}}\"
      template: failing.yaml
      parameters:
        fail: \"{{inputs.fail}}\"
      timeout: 5m
";

const FAILING_TEMPLATE: &str = "Parameters:
  Fail: {Type: String, Default: \"no\"}
Conditions:
  Failing: !Equals [!Ref Fail, \"yes\"]
Resources:
  Vpc:
    Type: AWS::EC2::VPC
    Properties: {CidrBlock: 10.9.0.0/24}
  Bad:
    Type: AWS::EC2::Subnet
    Condition: Failing
    Properties: {VpcId: vpc-00000000000000bad, CidrBlock: 10.9.0.0/28}
";

#[tokio::test(flavor = "multi_thread")]
async fn a_compiled_deploy_replaces_a_failed_attempt_and_rolls_back_a_failing_stack() {
    let c = clients().await;
    let (_dir, machine, bucket) =
        machine_of(&c, FAILING, &[("failing.yaml", FAILING_TEMPLATE)]).await;
    let cfn = &c.cloudformation;

    // An earlier attempt of this case left its stack failed: deleted, then created again.
    let case = unique("IR-sfn-room");
    let stack = format!("irr-room-{case}");
    let failed_id = failed_stack(cfn, &stack, &case).await;
    let name = unique("x");
    let arn = start(
        &c,
        &machine,
        &name,
        &json!({"case_id": case, "inputs": {"fail": "no"}}),
    )
    .await;
    let (status, output) = ended(&c, &arn, Duration::from_secs(300)).await;
    let output = output.unwrap_or_default();
    assert_eq!(status, "SUCCEEDED", "{arn} {output:#}");
    let out = &output["steps"]["room"]["outputs"];
    assert_eq!(out["reused"], false);
    assert_ne!(out["stack_id"], failed_id.as_str(), "a new stack");
    let d = cfn
        .describe_stacks()
        .stack_name(&stack)
        .send()
        .await
        .unwrap();
    assert_eq!(
        d.stacks()[0].stack_status().unwrap().as_str(),
        "CREATE_COMPLETE"
    );
    let objects = evidence_objects(&c, &bucket, &case, &name).await;
    let before: Value = serde_json::from_slice(&objects["room/stack-before.json"]).unwrap();
    assert_eq!(before["status"], "CREATE_FAILED");
    assert_eq!(before["stack_id"], failed_id.as_str());

    // A stack that fails: its reasons in the error, recorded, and the stack deleted.
    let case = unique("IR-sfn-room");
    let stack = format!("irr-room-{case}");
    let name = unique("x");
    let arn = start(
        &c,
        &machine,
        &name,
        &json!({"case_id": case, "inputs": {"fail": "yes"}}),
    )
    .await;
    let (status, _) = ended(&c, &arn, Duration::from_secs(300)).await;
    assert_eq!(status, "FAILED");
    let (error, cause) = step_failure(&c, &arn, "room").await;
    assert_eq!(error, "irr.StackFailed", "{cause}");
    assert!(
        cause.starts_with(&format!("stack {stack} failed (")),
        "{cause}"
    );
    assert!(
        cause.contains("Bad (AWS::EC2::Subnet): ") && cause.contains("InvalidVpcID.NotFound"),
        "{cause}"
    );
    assert!(cause.ends_with("; the failed stack was deleted"), "{cause}");
    let gone = match cfn.describe_stacks().stack_name(&stack).send().await {
        Err(_) => true,
        Ok(d) => d
            .stacks()
            .iter()
            .all(|s| s.stack_status().unwrap().as_str() == "DELETE_COMPLETE"),
    };
    assert!(gone, "the failed stack was left behind");
    let objects = evidence_objects(&c, &bucket, &case, &name).await;
    let recorded: Value = serde_json::from_slice(&objects["room/stack.json"]).unwrap();
    assert!(
        recorded["status"].as_str().unwrap().contains("FAILED")
            || recorded["status"] == "ROLLBACK_COMPLETE",
        "{recorded:#}"
    );
    let evs: Value = serde_json::from_slice(&objects["room/stack-events.json"]).unwrap();
    assert!(
        evs["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["logical_resource_id"] == "Bad" && e["status"] == "CREATE_FAILED"),
        "{evs:#}"
    );
    assert!(objects.contains_key("room/stack-resources-before.json"));
}

/// The shipped EC2 playbook with its one step that has no translation (`volatile`, and the
/// isolation's wait for it) cut out, as a team compiles it until that is decided
/// (docs/step-functions.md).
fn ec2_playbook_without_volatile() -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../playbooks");
    let text = std::fs::read_to_string(root.join("ec2-instance-compromise.yaml")).unwrap();
    let start = text.find("  - id: volatile\n").expect("the volatile step");
    let end = start
        + text[start..]
            .find("  - id: protect\n")
            .expect("the protect step");
    let cut = format!("{}{}", &text[..start], &text[end..]);
    let wait = "    # After the volatile capture has ended, in any status: it never holds up isolation.\n    when: \"{{ne steps.volatile.status \\\"pending\\\"}}\"\n";
    assert!(
        cut.contains(wait),
        "the isolation's wait for the volatile step"
    );
    cut.replace(wait, "")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_shipped_ec2_playbook_grants_contains_builds_its_clean_room_and_revokes() {
    let c = clients().await;
    let inc = irr_tests::compromised_instance_on(
        irr_runner::emulator::EmulatorKind::Localstack,
        &c.ec2,
        &c.iam,
    )
    .await;
    let second = irr_tests::add_second_interface(&c.ec2, &inc).await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../playbooks/templates");
    let template = std::fs::read_to_string(root.join("forensic-clean-room.yaml")).unwrap();
    let bucket = evidence_bucket(&c).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("templates")).unwrap();
    std::fs::write(
        dir.path().join("templates/forensic-clean-room.yaml"),
        &template,
    )
    .unwrap();
    let path = dir.path().join("ec2-instance-compromise.yaml");
    std::fs::write(&path, ec2_playbook_without_volatile()).unwrap();
    let definition = compile(&path, dir.path(), &[]);
    let machine = create_machine(&c, &definition, &bucket).await;

    let case = unique("IR-sfn-ec2");
    let input = json!({"case_id": case, "inputs": {
        "instance_id": inc.instance_id, "clean_room_volume_size": 8}});
    let (name, arn, status, output) = run(&c, &machine, &input).await;
    assert_eq!(status, "SUCCEEDED", "{arn} {output:#}");
    for step in [
        "grant",
        "capture",
        "protect",
        "snapshot",
        "isolate",
        "snapshots-completed",
        "clean-room",
        "tag",
        "revoke-access",
    ] {
        assert_eq!(
            output["steps"][step]["status"], "succeeded",
            "{step}: {output:#}"
        );
    }

    // Contained as the CLI leaves it: both interfaces in the empty group only, termination
    // protection on, one snapshot per volume.
    assert_eq!(
        irr_tests::contained(&c.ec2, &c.iam, &inc, &case).await,
        irr_tests::Contained::expected(inc.volumes.len())
    );
    let mut snaps: Vec<String> = output["steps"]["snapshots-completed"]["outputs"]["snapshot_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    snaps.sort_unstable();
    assert_eq!(snaps.len(), inc.volumes.len());

    assert_clean_room_of(&c, &case, &snaps).await;

    // The responder role was made for the case and is gone with the run (finally).
    let objects = evidence_objects(&c, &bucket, &case, &name).await;
    let granted = object(&objects, "grant/responder-role-before.json");
    let role = granted["role_name"].as_str().unwrap().to_owned();
    assert_eq!(
        output["steps"]["grant"]["outputs"]["role_name"],
        role.as_str()
    );
    assert!(role.starts_with("irr-responder-"), "{role}");
    let revoked = object(&objects, "revoke-access/responder-role-before.json");
    assert_eq!(revoked["role_name"], role.as_str());
    assert_eq!(
        revoked["inline_policies"],
        json!(["irr-responder"]),
        "{revoked:#}"
    );
    let gone = c.iam.get_role().role_name(&role).send().await;
    assert!(
        gone.as_ref()
            .err()
            .and_then(|e| e.as_service_error())
            .is_some_and(|e| e.is_no_such_entity_exception()),
        "{gone:?}"
    );

    // The evidence, each step's record, including both interfaces' originals.
    for item in [
        "capture/instance.json",
        "protect/protection-before.json",
        "isolate/isolation-before.json",
        "clean-room/template.yaml.json",
        "clean-room/stack-request.json",
        "clean-room/stack.json",
        "tag/tags-before.json",
    ] {
        assert!(objects.contains_key(item), "{item} in {:?}", objects.keys());
    }
    let before = object(&objects, "isolate/isolation-before.json");
    let enis = before["network_interfaces"].as_array().unwrap();
    assert_eq!(enis.len(), 2, "{before:#}");
    assert!(enis
        .iter()
        .any(|e| e["NetworkInterfaceId"] == second.as_str()));
    let rendered: String =
        serde_json::from_value(object(&objects, "clean-room/template.yaml.json")).unwrap();
    // One restored volume per snapshot (the ids themselves are the stack's parameter).
    assert!(
        rendered.contains("EvidenceVolume0:") && rendered.contains("EvidenceVolume1:"),
        "{rendered}"
    );
    assert!(!rendered.contains("EvidenceVolume2:"));
    assert!(!rendered.contains("{{"), "rendered: {rendered}");

    assert_sealed(&arn, &bucket, &case, &name, &objects);
}

/// The execution sealed and verified as a CLI run: every evidence object an item, the
/// report's run succeeded.
fn assert_sealed(
    arn: &str,
    bucket: &str,
    case: &str,
    name: &str,
    objects: &BTreeMap<String, Vec<u8>>,
) {
    let (verified, report) = seal_and_verify(arn, bucket, case, name);
    assert_every_object_verified(&verified, objects);
    assert_eq!(report["run"]["status"], "succeeded");
}

/// The case's clean room, complete, from exactly `snaps`, tagged with the case.
async fn assert_clean_room_of(c: &AwsClients, case: &str, snaps: &[String]) {
    let stack = format!("irr-clean-room-{case}");
    let st = &complete_stack(c, &stack).await;
    let param = |k: &str| {
        st.parameters()
            .iter()
            .find(|p| p.parameter_key() == Some(k))
            .and_then(|p| p.parameter_value())
            .unwrap_or_default()
            .to_owned()
    };
    let mut given: Vec<String> = param("SnapshotIds").split(',').map(str::to_owned).collect();
    given.sort_unstable();
    assert_eq!(given, snaps);
    assert!(st
        .tags()
        .iter()
        .any(|t| t.key() == Some("irr:case") && t.value() == Some(case)));
}

/// The stack named `stack`, which must be `CREATE_COMPLETE`.
async fn complete_stack(c: &AwsClients, stack: &str) -> aws_sdk_cloudformation::types::Stack {
    let described = c
        .cloudformation
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .unwrap();
    let st = described.stacks()[0].clone();
    assert_eq!(
        st.stack_status().map(|s| s.as_str()),
        Some("CREATE_COMPLETE")
    );
    st
}
