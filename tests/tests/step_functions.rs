//! Compiled playbooks executed for real on LocalStack's Step Functions interpreter
//! (`irr compile --target step-functions`): the resulting EC2 state and the evidence objects
//! are asserted through the APIs, as the CLI tests do.
//!
//! LocalStack: `IRR_TEST_LOCALSTACK_ENDPOINT`, else a private one (`scripts/ensure-localstack`).

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ec2::types::Filter;
use irr_runner::emulator::EmulatorKind;
use irr_tests::sfn::{
    assert_every_object_verified, clients, compile, create_machine, ended, evidence_bucket,
    evidence_objects, history, seal_and_verify, start,
};
use irr_tests::{add_second_interface, compromised_instance_on, contained, unique, Contained};
use serde_json::{json, Value};

fn compile_fixture(name: &str) -> (tempfile::TempDir, Value) {
    let dir = tempfile::tempdir().unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../runner/tests/fixtures/compile")
        .join(name);
    let definition = compile(&path, dir.path(), &[]);
    (dir, definition)
}

/// The execution sealed as a run: every evidence object verified, the steps and the calls in
/// the report.
fn assert_sealed_as_run(
    arn: &str,
    bucket: &str,
    case: &str,
    name: &str,
    objects: &BTreeMap<String, Vec<u8>>,
) {
    let (verified, report) = seal_and_verify(arn, bucket, case, name);
    assert_every_object_verified(&verified, objects);
    assert_eq!(report["run"]["status"], "succeeded");
    let steps: Vec<(&str, &str)> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    for step in [
        "capture",
        "protect",
        "snapshot",
        "isolate",
        "snapshots-completed",
        "tag",
        "mark",
    ] {
        assert!(steps.contains(&(step, "succeeded")), "{step}: {steps:?}");
    }
    let ops: Vec<&str> = report["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["operation"].as_str())
        .collect();
    for op in [
        "CreateSnapshots",
        "ModifyNetworkInterfaceAttribute",
        "CreateSecurityGroup",
        "ModifyInstanceAttribute",
        "PutObject",
    ] {
        assert!(ops.contains(&op), "{op} in {ops:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compiled_playbook_contains_an_instance_on_localstacks_interpreter() {
    let c = clients().await;
    let inc = compromised_instance_on(EmulatorKind::Localstack, &c.ec2, &c.iam).await;
    let second = add_second_interface(&c.ec2, &inc).await;
    let bucket = evidence_bucket(&c).await;
    let (_dir, definition) = compile_fixture("contain.yaml");
    let machine = create_machine(&c, &definition, &bucket).await;
    let case = unique("IR-sfn");
    let name = unique("x");
    let arn = start(
        &c,
        &machine,
        &name,
        &json!({"case_id": case, "inputs": {"instance_id": inc.instance_id}}),
    )
    .await;
    let (status, output) = ended(&c, &arn, Duration::from_secs(180)).await;
    let output = output.unwrap_or_default();
    assert_eq!(status, "SUCCEEDED", "{output:#}");
    for step in [
        "capture",
        "protect",
        "snapshot",
        "isolate",
        "snapshots-completed",
        "tag",
        "mark",
    ] {
        assert_eq!(
            output["steps"][step]["status"], "succeeded",
            "{step}: {output:#}"
        );
    }

    // Contained, as the CLI leaves it: every interface (both) in the empty isolation group
    // only, termination protection on, one snapshot per volume.
    assert_eq!(
        contained(&c.ec2, &c.iam, &inc, &case).await,
        Contained::expected(inc.volumes.len())
    );
    // The two snapshot steps name the same snapshots (the second found them by the case tag),
    // and the tag step tagged them.
    let ids = |step: &str| -> Vec<String> {
        let mut v: Vec<String> = output["steps"][step]["outputs"]["snapshot_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        v.sort_unstable();
        v
    };
    let (a, b) = (ids("snapshot"), ids("snapshots-completed"));
    assert_eq!(a.len(), inc.volumes.len(), "{a:?}");
    assert_eq!(a, b);
    let snaps = c
        .ec2
        .describe_snapshots()
        .filters(
            Filter::builder()
                .name("tag:irr:state")
                .values("contained")
                .build(),
        )
        .filters(Filter::builder().name("tag:irr:case").values(&case).build())
        .send()
        .await
        .unwrap();
    assert_eq!(snaps.snapshots().len(), inc.volumes.len());
    // The finally step tagged the instance with the execution.
    let tags = c
        .ec2
        .describe_tags()
        .filters(
            Filter::builder()
                .name("resource-id")
                .values(&inc.instance_id)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(
        tags.tags()
            .iter()
            .any(|t| t.key() == Some("irr:contained-by") && t.value() == Some(name.as_str())),
        "{tags:?}"
    );

    // The evidence: each step's before-state, hashed by S3, locked.
    let objects = evidence_objects(&c, &bucket, &case, &name).await;
    for item in [
        "capture/instance.json",
        "capture/volumes.json",
        "capture/network-interfaces.json",
        "protect/protection-before.json",
        "isolate/isolation-before.json",
        "tag/tags-before.json",
        "mark/tags-before.json",
    ] {
        assert!(objects.contains_key(item), "{item} in {:?}", objects.keys());
    }
    // The originals are recorded: each interface with its open group, before isolation.
    let before: Value = serde_json::from_slice(&objects["isolate/isolation-before.json"]).unwrap();
    let enis = before["network_interfaces"].as_array().unwrap();
    assert_eq!(enis.len(), 2, "{before:#}");
    assert!(enis
        .iter()
        .any(|e| e["NetworkInterfaceId"] == second.as_str()));
    for e in enis {
        assert_eq!(e["Groups"][0]["GroupId"], inc.open_group.as_str(), "{e:#}");
    }
    let protection: Value =
        serde_json::from_slice(&objects["protect/protection-before.json"]).unwrap();
    assert_eq!(
        protection["previous"]["disable_api_termination"]["value"], false,
        "{protection:#}"
    );
    // Auto Scaling is not in LocalStack's community edition: the optional read failed and
    // the isolation went on, as the CLI's does.
    let asg_failed = history(&c, &arn).await.iter().any(|e| {
        e.task_failed_event_details()
            .is_some_and(|d| d.resource() == "describeAutoScalingInstances")
    });
    assert!(
        asg_failed,
        "the Auto Scaling read failed on LocalStack and was tolerated"
    );

    assert_sealed_as_run(&arn, &bucket, &case, &name, &objects);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_step_takes_the_catch_path_and_the_finally_step_still_runs() {
    let c = clients().await;
    let inc = compromised_instance_on(EmulatorKind::Localstack, &c.ec2, &c.iam).await;
    let bucket = evidence_bucket(&c).await;
    let (_dir, definition) = compile_fixture("contain-fails.yaml");
    let machine = create_machine(&c, &definition, &bucket).await;
    let case = unique("IR-sfn");
    let name = unique("x");
    // The fault: a step's instance does not exist, so its EC2 calls fail.
    let input = json!({"case_id": case, "inputs": {"instance_id": inc.instance_id, "decoy_id": "i-0000000000000dead"}});
    let arn = start(&c, &machine, &name, &input).await;
    let (status, _) = ended(&c, &arn, Duration::from_secs(180)).await;
    assert_eq!(status, "FAILED");
    let events = history(&c, &arn).await;
    let failed = events
        .iter()
        .find_map(|e| e.execution_failed_event_details())
        .expect("ExecutionFailed");
    assert_eq!(failed.error(), Some("irr.RunFailed"));
    // Its steps, as the last state holds them: the failing step retried once, then failed;
    // the step that needs it never ran; the finally step ran.
    let last_state: Value = events
        .iter()
        .rev()
        .find_map(|e| e.state_exited_event_details().and_then(|d| d.output()))
        .map(|o| serde_json::from_str(o).unwrap())
        .unwrap();
    assert_eq!(last_state["steps"]["protect"]["status"], "succeeded");
    assert_eq!(
        last_state["steps"]["break"]["status"], "failed",
        "{last_state:#}"
    );
    assert!(last_state["steps"]["break"]["cause"]
        .as_str()
        .unwrap()
        .contains("i-0000000000000dead"));
    assert_eq!(last_state["steps"]["break"]["status"], "failed");
    assert_eq!(last_state["attempts"]["break"]["n"], 1, "one retry");
    assert_eq!(last_state["steps"]["snapshot"]["status"], "pending");
    assert_eq!(last_state["steps"]["mark"]["status"], "succeeded");
    // AWS state: protected (before the failure), not isolated, no snapshot, tagged by finally.
    let state = contained(&c.ec2, &c.iam, &inc, &case).await;
    assert!(state.termination_protected);
    assert!(!state.isolated);
    assert_eq!(state.snapshots_per_volume, vec![0; inc.volumes.len()]);
    let tags = c
        .ec2
        .describe_tags()
        .filters(
            Filter::builder()
                .name("resource-id")
                .values(&inc.instance_id)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(tags
        .tags()
        .iter()
        .any(|t| t.key() == Some("irr:finally") && t.value() == Some(name.as_str())));
    // The failed step's attempts each kept their evidence folder.
    let objects = evidence_objects(&c, &bucket, &case, &name).await;
    assert!(
        objects.contains_key("protect/protection-before.json"),
        "{:?}",
        objects.keys()
    );
    // Sealed as a failed run: the failing step failed, the finally step succeeded.
    let (_, report) = seal_and_verify(&arn, &bucket, &case, &name);
    assert_eq!(report["run"]["status"], "failed", "{:#}", report["run"]);
    let status = |id: &str| {
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .map(|s| s["status"].as_str().unwrap().to_owned())
    };
    assert_eq!(status("break").as_deref(), Some("failed"));
    assert_eq!(status("mark").as_deref(), Some("succeeded"));
}

/// `irr deploy` makes the stack (state machine, role, the trigger's rules); a GuardDuty
/// finding put on the event bus starts an execution through the rule's input transformer,
/// which maps the (camelCase) finding onto the inputs and contains the instance. A finding
/// of a type the playbook does not take starts nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_deployed_stack_is_started_by_a_guardduty_finding() {
    let c = clients().await;
    let inc = compromised_instance_on(EmulatorKind::Localstack, &c.ec2, &c.iam).await;
    let bucket = evidence_bucket(&c).await;
    let (dir, _) = compile_fixture("contain.yaml");
    // A stack an earlier run of this test left on the same LocalStack has the same rule: it
    // would start a second execution for the same finding.
    delete_stacks_named(&c, "irr-sfn-stack").await;
    let stack = unique("irr-sfn-stack");
    let o = irr_tests::irr_with(
        &[
            "deploy",
            &dir.path().display().to_string(),
            "--stack-name",
            &stack,
            "--parameter",
            &format!("EvidenceBucket={bucket}"),
            "--output",
            "json",
        ],
        dir.path(),
        &irr_tests::endpoint_of(EmulatorKind::Localstack),
        ("testing", "testing"),
        &[],
    );
    assert!(
        o.status.success(),
        "irr deploy: {}",
        irr_tests::output_text(&o)
    );
    let deployed: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(deployed["action"], "created");
    let machine = deployed["outputs"]["StateMachineArn"]
        .as_str()
        .unwrap()
        .to_owned();
    let definition = c
        .sfn
        .describe_state_machine()
        .state_machine_arn(&machine)
        .send()
        .await
        .unwrap();
    assert!(
        definition.definition().contains(&bucket),
        "the bucket is substituted in"
    );
    // The template it was made from is kept, content-addressed, in the evidence bucket.
    let kept =
        c.s3.list_objects_v2()
            .bucket(&bucket)
            .prefix(format!("irr-deploy/{stack}/"))
            .send()
            .await
            .unwrap();
    assert_eq!(kept.contents().len(), 1);

    let conf = irr_tests::sdk_config_of(EmulatorKind::Localstack).await;
    let events = aws_sdk_eventbridge::Client::new(&conf);
    let put = |kind: &'static str, id: String| {
        let detail = json!({
            "schemaVersion": "2.0", "accountId": "000000000000", "region": "us-east-1",
            "partition": "aws", "id": id, "type": kind,
            "resource": {"resourceType": "Instance", "instanceDetails": {"instanceId": inc.instance_id}},
        });
        events
            .put_events()
            .entries(
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .source("aws.guardduty")
                    .detail_type("GuardDuty Finding")
                    .detail(detail.to_string())
                    .build(),
            )
            .send()
    };
    let other = format!("{:032x}", rand_id());
    put("Recon:EC2/PortProbeUnprotectedPort", other)
        .await
        .unwrap();
    let finding_id = format!("{:032x}", rand_id());
    put("UnauthorizedAccess:EC2/SSHBruteForce", finding_id.clone())
        .await
        .unwrap();
    // The execution the rule started.
    let t0 = std::time::Instant::now();
    let arn = loop {
        let list = c
            .sfn
            .list_executions()
            .state_machine_arn(&machine)
            .send()
            .await
            .unwrap();
        if let Some(e) = list.executions().first() {
            break e.execution_arn().to_owned();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no execution started"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let (status, output) = ended(&c, &arn, Duration::from_secs(180)).await;
    assert_eq!(status, "SUCCEEDED", "{output:?}");
    let output = output.unwrap();
    let case = format!("gd-{finding_id}");
    assert_eq!(output["case_id"], case.as_str());
    assert_eq!(output["inputs"]["instance_id"], inc.instance_id.as_str());
    assert_eq!(
        contained(&c.ec2, &c.iam, &inc, &case).await,
        Contained::expected(inc.volumes.len())
    );
    // Only the finding of a type the playbook takes started an execution.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let list = c
        .sfn
        .list_executions()
        .state_machine_arn(&machine)
        .send()
        .await
        .unwrap();
    assert_eq!(list.executions().len(), 1, "{:?}", list.executions());
    delete_stacks_named(&c, &stack).await;
}

/// A Security Hub custom action's event, as its rule hands it over: exactly one finding,
/// mapped with `| arn_resource`; two findings in one event are refused, nothing changed.
#[tokio::test(flavor = "multi_thread")]
async fn a_security_hub_finding_is_mapped_and_two_are_refused() {
    let c = clients().await;
    let inc = compromised_instance_on(EmulatorKind::Localstack, &c.ec2, &c.iam).await;
    let bucket = evidence_bucket(&c).await;
    let (_dir, definition) = compile_fixture("contain.yaml");
    let machine = create_machine(&c, &definition, &bucket).await;
    let finding = json!({
        "SchemaVersion": "2018-10-08", "Id": "f-1", "AwsAccountId": "000000000000", "Region": "us-east-1",
        "ProductArn": "arn:aws:securityhub:us-east-1::product/aws/guardduty",
        "Resources": [
            {"Type": "AwsAccount", "Id": "AWS::::Account:000000000000"},
            {"Type": "AwsEc2Instance", "Id": format!("arn:aws:ec2:us-east-1:000000000000:instance/{}", inc.instance_id)},
        ],
    });
    let two = start(
        &c,
        &machine,
        &unique("x"),
        &json!({"case_id": "sh-2", "source": "securityhub", "findings": [finding, finding]}),
    )
    .await;
    let (status, _) = ended(&c, &two, Duration::from_secs(60)).await;
    assert_eq!(status, "FAILED");
    let failed = history(&c, &two)
        .await
        .into_iter()
        .find_map(|e| e.execution_failed_event_details().cloned())
        .unwrap();
    assert_eq!(failed.error(), Some("irr.InvalidInput"));
    assert!(
        !contained(&c.ec2, &c.iam, &inc, "sh-2")
            .await
            .termination_protected,
        "nothing changed"
    );

    // A finding with no EC2 instance among its resources maps to nothing: refused.
    let mut no_instance = finding.clone();
    no_instance["Resources"] = json!([{"Type": "AwsAccount", "Id": "AWS::::Account:000000000000"}]);
    let none = start(
        &c,
        &machine,
        &unique("x"),
        &json!({"case_id": "sh-0", "source": "securityhub", "findings": [no_instance]}),
    )
    .await;
    assert_eq!(ended(&c, &none, Duration::from_secs(60)).await.0, "FAILED");
    let failed = history(&c, &none)
        .await
        .into_iter()
        .find_map(|e| e.execution_failed_event_details().cloned())
        .unwrap();
    assert_eq!(failed.error(), Some("irr.InvalidInput"));
    let case = unique("sh");
    let one = start(
        &c,
        &machine,
        &unique("x"),
        &json!({"case_id": case, "source": "securityhub", "findings": [finding]}),
    )
    .await;
    let (status, output) = ended(&c, &one, Duration::from_secs(180)).await;
    assert_eq!(status, "SUCCEEDED", "{output:?}");
    assert_eq!(
        output.unwrap()["inputs"]["instance_id"],
        inc.instance_id.as_str()
    );
    assert_eq!(
        contained(&c.ec2, &c.iam, &inc, &case).await,
        Contained::expected(inc.volumes.len())
    );
}

/// Deletes the stacks whose names start with `prefix`, and waits until they are gone.
async fn delete_stacks_named(c: &irr_runner::actions::AwsClients, prefix: &str) {
    let listed = c.cloudformation.describe_stacks().send().await.unwrap();
    for st in listed.stacks() {
        let name = st.stack_name().unwrap_or_default();
        if name.starts_with(prefix)
            && st.stack_status().map(|s| s.as_str()) != Some("DELETE_COMPLETE")
        {
            c.cloudformation
                .delete_stack()
                .stack_name(name)
                .send()
                .await
                .unwrap();
        }
    }
    let t0 = std::time::Instant::now();
    loop {
        let listed = c.cloudformation.describe_stacks().send().await.unwrap();
        let left = listed.stacks().iter().any(|st| {
            st.stack_name().unwrap_or_default().starts_with(prefix)
                && st.stack_status().map(|s| s.as_str()) != Some("DELETE_COMPLETE")
        });
        if !left {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "stacks {prefix}* not deleted"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn rand_id() -> u128 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    t.as_nanos() ^ (u128::from(std::process::id()) << 64)
}

/// A fleet through `Map`: each instance its own iteration (a run-time list: child
/// executions), every one contained.
#[tokio::test(flavor = "multi_thread")]
async fn a_fleet_is_contained_through_map() {
    let c = clients().await;
    let fleet = irr_tests::compromised_instances_with(&c.ec2, &c.iam, 3, false).await;
    let bucket = evidence_bucket(&c).await;
    let (_dir, definition) = compile_fixture("contain-fleet.yaml");
    let machine = create_machine(&c, &definition, &bucket).await;
    let case = unique("IR-sfn-fleet");
    let ids: Vec<&str> = fleet.iter().map(|i| i.instance_id.as_str()).collect();
    let name = unique("x");
    let arn = start(
        &c,
        &machine,
        &name,
        &json!({"case_id": case, "inputs": {"instance_ids": ids}}),
    )
    .await;
    let (status, output) = ended(&c, &arn, Duration::from_secs(300)).await;
    assert_eq!(status, "SUCCEEDED", "{output:?}");
    let output = output.unwrap();
    // A distributed Map's items keep only their status in the state (its 256 KiB limit);
    // their outputs are in the child executions.
    for step in ["protect", "snapshot", "isolate"] {
        assert_eq!(
            output["steps"][step]["outputs"]["items"],
            json!([{"status": "succeeded"}, {"status": "succeeded"}, {"status": "succeeded"}]),
            "{step}"
        );
    }
    for inc in &fleet {
        assert_eq!(
            contained(&c.ec2, &c.iam, inc, &case).await,
            Contained::expected(inc.volumes.len()),
            "{}",
            inc.instance_id
        );
    }
    // Each item's evidence, under the execution's folder (LocalStack cannot list a map
    // run's children, so the seal of this execution is a gap there: docs/emulator-notes.md).
    let objects = evidence_objects(&c, &bucket, &case, &name).await;
    for step in ["protect", "isolate"] {
        let n = objects
            .keys()
            .filter(|k| k.starts_with(&format!("{step}/")))
            .count();
        assert_eq!(n, 3, "{step}: {:?}", objects.keys());
    }
}

/// The approval's task token, from the message the execution published (its history).
async fn approval_token(c: &irr_runner::actions::AwsClients, arn: &str) -> String {
    let t0 = std::time::Instant::now();
    loop {
        for e in history(c, arn).await {
            if let Some(d) = e.task_scheduled_event_details() {
                if d.resource() == "publish.waitForTaskToken" {
                    let p: Value = serde_json::from_str(d.parameters()).unwrap();
                    let msg = p["Message"].as_str().unwrap();
                    let token = msg
                        .split("irr approve ")
                        .nth(1)
                        .unwrap()
                        .split(' ')
                        .next()
                        .unwrap();
                    assert!(msg.starts_with("Protect i-"), "{msg}");
                    return token.to_owned();
                }
            }
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "no approval asked");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `control.approve` waits for `irr approve TOKEN --yes|--no`: approved, the execution goes
/// on and names who approved; declined, the step that needs it never runs.
#[tokio::test(flavor = "multi_thread")]
async fn an_approval_waits_for_irr_approve() {
    let c = clients().await;
    let conf = irr_tests::sdk_config_of(EmulatorKind::Localstack).await;
    let topic = aws_sdk_sns::Client::new(&conf)
        .create_topic()
        .name(unique("irr-approvals"))
        .send()
        .await
        .unwrap()
        .topic_arn()
        .unwrap()
        .to_owned();
    let bucket = evidence_bucket(&c).await;
    let (dir, definition) = compile_fixture("contain-approve.yaml");
    let machine = irr_tests::sfn::create_machine_with(
        &c,
        &definition,
        &bucket,
        &[("ApprovalTopicArn", &topic)],
    )
    .await;
    let answer = |token: &str, flag: &str| {
        let o = irr_tests::irr_with(
            &["approve", token, flag],
            dir.path(),
            &irr_tests::endpoint_of(EmulatorKind::Localstack),
            ("testing", "testing"),
            &[],
        );
        assert!(
            o.status.success(),
            "irr approve: {}",
            irr_tests::output_text(&o)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    for (flag, expected) in [("--yes", "SUCCEEDED"), ("--no", "FAILED")] {
        let inc = compromised_instance_on(EmulatorKind::Localstack, &c.ec2, &c.iam).await;
        let case = unique("IR-sfn-ok");
        let arn = start(
            &c,
            &machine,
            &unique("x"),
            &json!({"case_id": case, "inputs": {"instance_id": inc.instance_id}}),
        )
        .await;
        let token = approval_token(&c, &arn).await;
        // Nothing changes before the answer.
        assert!(
            !contained(&c.ec2, &c.iam, &inc, &case)
                .await
                .termination_protected
        );
        let said = answer(&token, flag);
        let (status, _) = ended(&c, &arn, Duration::from_secs(120)).await;
        assert_eq!(status, expected, "{flag}: {said}");
        let protected = contained(&c.ec2, &c.iam, &inc, &case)
            .await
            .termination_protected;
        if flag == "--yes" {
            assert!(said.starts_with("approved by arn:"), "{said}");
            assert!(protected);
        } else {
            assert!(said.starts_with("declined by arn:"), "{said}");
            assert!(!protected, "declined: nothing changed");
            let failed = history(&c, &arn)
                .await
                .into_iter()
                .find_map(|e| e.execution_failed_event_details().cloned())
                .unwrap();
            assert_eq!(failed.error(), Some("irr.RunFailed"));
        }
    }
}

/// A target account in the execution's input: the EC2 tasks run there through
/// `Credentials.RoleArn` (`arn:aws:iam::ACCOUNT:role/irr-responder`), the evidence stays in
/// the security account's bucket.
#[tokio::test(flavor = "multi_thread")]
async fn a_target_account_in_the_input_is_acted_in_through_its_role() {
    let c = clients().await;
    let account = "777777777777";
    let there = irr_tests::assumed_role_config(
        &irr_tests::endpoint_of(EmulatorKind::Localstack),
        account,
        "irr-responder",
        "us-east-1",
    )
    .await;
    let (ec2, iam) = (
        aws_sdk_ec2::Client::new(&there),
        aws_sdk_iam::Client::new(&there),
    );
    let inc = compromised_instance_on(EmulatorKind::Localstack, &ec2, &iam).await;
    let bucket = evidence_bucket(&c).await;
    let (_dir, definition) = compile_fixture("contain.yaml");
    let machine = create_machine(&c, &definition, &bucket).await;
    let case = unique("IR-sfn-x");
    let name = unique("x");
    let input = json!({"case_id": case, "inputs": {"instance_id": inc.instance_id}, "target": {"account": account}});
    let arn = start(&c, &machine, &name, &input).await;
    let (status, output) = ended(&c, &arn, Duration::from_secs(300)).await;
    assert_eq!(status, "SUCCEEDED", "{output:?}");
    assert_eq!(
        contained(&ec2, &iam, &inc, &case).await,
        Contained::expected(inc.volumes.len())
    );
    // The instance is not in the security account at all.
    let here = c
        .ec2
        .describe_instances()
        .instance_ids(&inc.instance_id)
        .send()
        .await;
    assert!(here.is_err() || here.unwrap().reservations().is_empty());
    // Its tasks named that account's role.
    let roles: Vec<String> = history(&c, &arn)
        .await
        .iter()
        .filter_map(|e| e.task_scheduled_event_details())
        .filter(|d| d.resource_type() == "aws-sdk:ec2")
        .filter_map(|d| {
            d.task_credentials()
                .and_then(|t| t.role_arn())
                .map(str::to_owned)
        })
        .collect();
    assert!(!roles.is_empty());
    assert!(
        roles
            .iter()
            .all(|r| r == "arn:aws:iam::777777777777:role/irr-responder"),
        "{roles:?}"
    );
}
