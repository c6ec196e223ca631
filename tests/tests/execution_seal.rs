//! `irr evidence seal --execution ARN` against LocalStack's Step Functions (a real Amazon
//! States Language interpreter whose `aws-sdk:*` tasks call its own EC2 and S3).
//!
//! A small hand-written state machine follows the conventions compiled playbooks follow
//! (`docs/step-functions.md`): a definition `Comment` naming the playbook, a step `probe`
//! whose wrapper `Parallel` holds an `aws-sdk:ec2:describeInstances` task and an
//! `aws-sdk:s3:putObject` task writing `artifacts/probe/before.json` into an Object Lock bucket
//! with default retention, then a `Pass` storing `$.steps.probe`. Each test runs an
//! execution, seals it with the `irr` binary, and asserts the state: the run folder, the
//! journal, the manifest and every object version in S3, `irr evidence verify` and
//! `irr report` on the result. What cannot happen through S3 (an object whose bytes are not
//! what the execution wrote: Object Lock keeps the version) is the unit tests'
//! (`runner/src/execution/tests.rs`).
//!
//! LocalStack: `IRR_TEST_LOCALSTACK_ENDPOINT`, else a private one (`scripts/ensure-localstack`).

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use irr_runner::actions::AwsClients;
use irr_runner::emulator::EmulatorKind;
use irr_tests::sfn::{clients, evidence_bucket};
use irr_tests::{endpoint_of, irr_with, json_lines, output_text, unique};
use serde_json::{json, Value};
use sha2::Digest as _;

const ROLE: &str = "arn:aws:iam::000000000000:role/irr-sfn-tests";

fn irr(args: &[&str], state: &Path) -> Output {
    irr_with(
        args,
        state,
        &endpoint_of(EmulatorKind::Localstack),
        ("testing", "testing"),
        &[],
    )
}

/// The playbook a definition names, and its hash.
const PLAYBOOK: (&str, &str) = ("sfn-probe", "1.0.0");

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn playbook_sha256() -> String {
    to_hex(&sha2::Sha256::digest(b"the sfn-probe playbook"))
}

/// The conventions' state machine: `probe` reads the instances and stores what it saw, then
/// (`hold`) waits `hold_seconds` when that is not zero.
fn definition(bucket: &str, hold_seconds: u64) -> Value {
    let store = json!({
        "Type": "Task",
        "Resource": "arn:aws:states:::aws-sdk:s3:putObject",
        "Parameters": {
            "Bucket": bucket,
            "Key.$": "States.Format('evidence/{}/{}/artifacts/probe/before.json', $.case_id, $$.Execution.Name)",
            "Body.$": "States.JsonToString($.before)",
            "ChecksumAlgorithm": "SHA256"
        },
        "ResultSelector": {"VersionId.$": "$.VersionId"},
        "ResultPath": "$.stored",
        "End": true
    });
    let mut states = json!({
        "irr: inputs": {"Type": "Pass", "Parameters": {"case_id.$": "$.case_id", "inputs.$": "$.inputs", "steps": {}}, "Next": "probe"},
        "probe": {
            "Type": "Parallel",
            "ResultPath": "$.probe_result",
            "Next": "probe: succeeded",
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "probe: failed"}],
            "Branches": [{"StartAt": "probe: describe", "States": {
                "probe: describe": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::aws-sdk:ec2:describeInstances",
                    "Parameters": {"MaxResults": 5},
                    "ResultSelector": {"reservations.$": "States.ArrayLength($.Reservations)"},
                    "ResultPath": "$.before",
                    "Next": "probe: store before.json"
                },
                "probe: store before.json": store
            }}]
        },
        "probe: succeeded": {"Type": "Pass", "Parameters": {"status": "succeeded", "outputs": {"version.$": "$.probe_result[0].stored.VersionId"}}, "ResultPath": "$.steps.probe", "Next": if hold_seconds > 0 { "hold" } else { "irr: done" }},
        "probe: failed": {"Type": "Pass", "Parameters": {"status": "failed", "outputs": {}, "error.$": "$.error.Error", "cause.$": "$.error.Cause"}, "ResultPath": "$.steps.probe", "Next": "irr: done"},
        "irr: done": {"Type": "Succeed"}
    });
    if hold_seconds > 0 {
        states["hold"] = json!({
            "Type": "Parallel", "ResultPath": "$.hold_result", "Next": "hold: succeeded",
            "Branches": [{"StartAt": "hold: wait", "States": {"hold: wait": {"Type": "Wait", "Seconds": hold_seconds, "End": true}}}]
        });
        states["hold: succeeded"] = json!({"Type": "Pass", "Parameters": {"status": "succeeded", "outputs": {}}, "ResultPath": "$.steps.hold", "Next": "irr: done"});
    }
    json!({
        "Comment": format!("irr playbook {} {} sha256:{}", PLAYBOOK.0, PLAYBOOK.1, playbook_sha256()),
        "StartAt": "irr: inputs",
        "States": states
    })
}

/// Creates the state machine and starts one execution of it for a new case; returns the
/// execution's ARN, its name and the case.
async fn start(c: &AwsClients, definition: &Value) -> (String, String, String) {
    let machine = c
        .sfn
        .create_state_machine()
        .name(unique("irr-sfn"))
        .definition(definition.to_string())
        .role_arn(ROLE)
        .send()
        .await
        .unwrap();
    let case = unique("IR-sfn");
    let name = unique("r-sfn");
    let ex = c
        .sfn
        .start_execution()
        .state_machine_arn(machine.state_machine_arn())
        .name(&name)
        .input(json!({"case_id": case, "inputs": {"note": "drill"}}).to_string())
        .send()
        .await
        .unwrap();
    (ex.execution_arn().to_owned(), name, case)
}

/// Waits until the execution is no longer running; its status.
async fn ended(c: &AwsClients, arn: &str) -> String {
    let t0 = Instant::now();
    loop {
        let d = c
            .sfn
            .describe_execution()
            .execution_arn(arn)
            .send()
            .await
            .unwrap();
        let status = d.status().as_str().to_owned();
        if status != "RUNNING" {
            return status;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{arn} still running"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the execution's history shows its `putObject` succeeded.
async fn evidence_written(c: &AwsClients, arn: &str) {
    let t0 = Instant::now();
    loop {
        let h = c
            .sfn
            .get_execution_history()
            .execution_arn(arn)
            .max_results(1000)
            .send()
            .await
            .unwrap();
        if h.events().iter().any(|e| {
            e.task_succeeded_event_details()
                .is_some_and(|d| d.resource() == "putObject")
        }) {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{arn} wrote nothing"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn object_bytes(c: &AwsClients, bucket: &str, key: &str) -> Vec<u8> {
    let o =
        c.s3.get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("s3://{bucket}/{key}: {e:?}"));
    o.body.collect().await.unwrap().into_bytes().to_vec()
}

/// `irr evidence seal --execution ARN --output json [extra]`: the run_finished line.
fn seal(arn: &str, extra: &[&str], state: &Path) -> Value {
    let mut args = vec!["--output", "json", "evidence", "seal", "--execution", arn];
    args.extend(extra);
    let out = irr(&args, state);
    assert!(out.status.success(), "{}", output_text(&out));
    let last = json_lines(&out).pop().expect("a summary line");
    assert_eq!(last["event"], "run_finished", "{last:#}");
    last
}

fn journal_events(state: &Path, run: &str) -> Vec<Value> {
    let entries = irr_runner::journal::read(&state.join("runs").join(run).join("journal.jsonl"))
        .expect("the journal's chain holds");
    entries.into_iter().map(|e| e.value).collect()
}

/// An execution sealed in place (the bundle beside the objects it wrote), verified and
/// reported; sealed again, it says where; sealed into a local folder, the objects are copied
/// in and verify there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_is_sealed_where_it_wrote_its_evidence() {
    let c = clients().await;
    let bucket = evidence_bucket(&c).await;
    let (arn, run, case) = start(&c, &definition(&bucket, 0)).await;
    assert_eq!(ended(&c, &arn).await, "SUCCEEDED");
    let key = format!("evidence/{case}/{run}/artifacts/probe/before.json");
    let written = object_bytes(&c, &bucket, &key).await;

    let state = tempfile::tempdir().unwrap();
    let summary = seal(&arn, &[], state.path());
    assert_eq!(summary["status"], "succeeded", "{summary:#}");
    assert_eq!(summary["run_id"], run.as_str());
    assert_eq!(summary["case_id"], case.as_str());
    let location = format!("s3://{bucket}/evidence/{case}/{run}");
    assert_eq!(
        summary["evidence"]["location"],
        location.as_str(),
        "{summary:#}"
    );
    assert_eq!(
        summary["evidence"]["items"], 2,
        "the object and the journal: {summary:#}"
    );
    assert_eq!(summary["steps"][0]["id"], "probe");
    assert_eq!(summary["steps"][0]["status"], "succeeded");

    let lines = assert_run_folder(state.path(), &arn, &run, &case, &written);
    assert_manifest_in_s3(
        &c,
        &bucket,
        &arn,
        &format!("evidence/{case}/{run}/"),
        &written,
    )
    .await;
    assert_verify_and_report(state.path(), &location, &run);

    // Sealed again: where it is, nothing written twice.
    let out = irr(&["evidence", "seal", "--execution", &arn], state.path());
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("sealed already"),
        "{}",
        output_text(&out)
    );
    assert_eq!(journal_events(state.path(), &run).len(), lines.len());

    // Into a local folder (another state directory): the object copied in, verified there.
    let state2 = tempfile::tempdir().unwrap();
    let local = tempfile::tempdir().unwrap();
    let summary = seal(
        &arn,
        &["--evidence", local.path().to_str().unwrap()],
        state2.path(),
    );
    let folder = local.path().join(&case).join(&run);
    assert_eq!(
        summary["evidence"]["location"],
        folder.display().to_string().as_str()
    );
    assert_eq!(
        std::fs::read(folder.join("artifacts/probe/before.json")).unwrap(),
        written
    );
    let out = irr(
        &["evidence", "verify", folder.to_str().unwrap()],
        state2.path(),
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let sums = std::process::Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(&folder)
        .output()
        .unwrap();
    assert!(sums.status.success(), "{}", output_text(&sums));
}

/// The run folder: `run.json` names the execution; the journal is the history translated,
/// its chain whole. Returns the journal's lines.
fn assert_run_folder(state: &Path, arn: &str, run: &str, case: &str, written: &[u8]) -> Vec<Value> {
    let record: Value = serde_json::from_slice(
        &std::fs::read(state.join("runs").join(run).join("run.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["execution"], arn);
    assert_eq!(record["case_id"], case);
    assert_eq!(record["aws_principal"], ROLE);
    assert_eq!(record["inputs"]["note"], "drill");
    let lines = journal_events(state, run);
    let names: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(names.first(), Some(&"run_started"));
    assert_eq!(
        &names[names.len() - 2..],
        ["evidence_sealed", "run_finished"]
    );
    assert_eq!(lines[0]["playbook"], PLAYBOOK.0);
    assert_eq!(lines[0]["playbook_sha256"], playbook_sha256().as_str());
    let calls: Vec<(String, String)> = lines
        .iter()
        .filter(|l| l["event"] == "call_started")
        .map(|l| {
            (
                l["service"].as_str().unwrap().to_owned(),
                l["operation"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        calls,
        [
            ("ec2".to_owned(), "DescribeInstances".to_owned()),
            ("s3".to_owned(), "PutObject".to_owned())
        ]
    );
    let ok = lines
        .iter()
        .filter(|l| l["event"] == "call_finished" && l["ok"] == true)
        .count();
    assert_eq!(ok, 2);
    let captured = lines
        .iter()
        .find(|l| l["event"] == "evidence_captured")
        .expect("the object captured");
    assert_eq!(captured["path"], "artifacts/probe/before.json");
    assert_eq!(
        captured["sha256"],
        to_hex(&sha2::Sha256::digest(written)).as_str()
    );
    lines
}

/// The manifest, in S3 beside the object: names the execution, lists the object as the
/// version the execution wrote (adopted, not written again), and every version under the
/// run's folder is locked.
async fn assert_manifest_in_s3(
    c: &AwsClients,
    bucket: &str,
    arn: &str,
    prefix: &str,
    written: &[u8],
) {
    let key = format!("{prefix}artifacts/probe/before.json");
    let manifest: Value =
        serde_json::from_slice(&object_bytes(c, bucket, &format!("{prefix}manifest.json")).await)
            .unwrap();
    assert_eq!(manifest["collector"]["execution_arn"], arn);
    assert_eq!(manifest["playbook"]["name"], PLAYBOOK.0);
    assert_eq!(manifest["playbook"]["version"], PLAYBOOK.1);
    assert_eq!(manifest["playbook"]["sha256"], playbook_sha256().as_str());
    let item = manifest["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["path"] == "artifacts/probe/before.json")
        .expect("the artifact in the manifest");
    assert_eq!(item["step"], "probe");
    assert_eq!(item["size"], written.len());
    let versions =
        c.s3.list_object_versions()
            .bucket(bucket)
            .prefix(prefix)
            .send()
            .await
            .unwrap();
    let artifact_versions: Vec<&str> = versions
        .versions()
        .iter()
        .filter(|v| v.key() == Some(key.as_str()))
        .filter_map(|v| v.version_id())
        .collect();
    assert_eq!(
        artifact_versions.len(),
        1,
        "the object was adopted, not written again"
    );
    assert_eq!(item["s3"]["version_id"], artifact_versions[0]);
    for v in versions.versions() {
        let h =
            c.s3.head_object()
                .bucket(bucket)
                .key(v.key().unwrap())
                .version_id(v.version_id().unwrap())
                .send()
                .await
                .unwrap();
        assert!(h.object_lock_mode().is_some(), "{:?} is locked", v.key());
    }
}

/// `irr evidence verify` and `irr report` take the sealed execution as any run.
fn assert_verify_and_report(state: &Path, location: &str, run: &str) {
    let out = irr(&["--output", "json", "evidence", "verify", location], state);
    assert!(out.status.success(), "{}", output_text(&out));
    let verified: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verified["status"], "ok", "{verified:#}");
    let artifact = verified["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["path"] == "artifacts/probe/before.json" && i["status"] == "ok");
    assert!(artifact, "{verified:#}");
    let out = irr(&["report", run, "--format", "json"], state);
    assert!(out.status.success(), "{}", output_text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["integrity_ok"], true, "{:#}", report["findings"]);
    assert_eq!(report["run"]["status"], "succeeded");
    assert_eq!(report["steps"][0]["id"], "probe");
    assert_eq!(report["steps"][0]["status"], "succeeded");
    assert_eq!(report["steps"][0]["calls"], 2);
    let ops: Vec<&str> = report["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["operation"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["DescribeInstances", "PutObject"]);
    assert_eq!(
        report["evidence"]["status"], "verified",
        "{:#}",
        report["evidence"]
    );
    assert_eq!(report["journal"]["sealed_copy_ok"], true);
}

/// A running execution is refused; aborted, it is sealed as an aborted run, the step it
/// stopped in failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_execution_is_refused_and_an_aborted_one_sealed() {
    let c = clients().await;
    let bucket = evidence_bucket(&c).await;
    let (arn, run, _case) = start(&c, &definition(&bucket, 120)).await;
    evidence_written(&c, &arn).await;
    let state = tempfile::tempdir().unwrap();
    let out = irr(&["evidence", "seal", "--execution", &arn], state.path());
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("still running; seal it when it has ended"),
        "{}",
        output_text(&out)
    );
    assert!(
        !state.path().join("runs").join(&run).exists(),
        "nothing written"
    );

    c.sfn
        .stop_execution()
        .execution_arn(&arn)
        .error("responder")
        .cause("stopped by the test")
        .send()
        .await
        .unwrap();
    assert_eq!(ended(&c, &arn).await, "ABORTED");
    let summary = seal(&arn, &[], state.path());
    assert_eq!(summary["status"], "aborted", "{summary:#}");
    let steps = summary["steps"].as_array().unwrap();
    let hold = steps
        .iter()
        .find(|s| s["id"] == "hold")
        .expect("the step it stopped in");
    assert_eq!(hold["status"], "failed");
    assert!(
        hold["error"].as_str().unwrap().contains("ABORTED"),
        "{hold:#}"
    );
    assert_eq!(
        steps.iter().find(|s| s["id"] == "probe").unwrap()["status"],
        "succeeded"
    );
    let location = summary["evidence"]["location"].as_str().unwrap();
    let out = irr(&["evidence", "verify", location], state.path());
    assert!(out.status.success(), "{}", output_text(&out));
    let out = irr(&["report", &run, "--format", "json"], state.path());
    assert!(out.status.success(), "{}", output_text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["run"]["status"], "aborted");
}

/// Not an irr state machine (no `Comment` naming a playbook): refused, nothing written. An
/// evidence object gone from S3 since the execution wrote it (a GOVERNANCE version removed
/// with the bypass): refused, nothing sealed, nothing left in the state directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_cannot_be_tied_to_an_irr_execution_is_not_sealed() {
    let c = clients().await;
    let bucket = evidence_bucket(&c).await;
    let mut foreign = definition(&bucket, 0);
    foreign["Comment"] = json!("someone else's state machine");
    let (arn, run, _) = start(&c, &foreign).await;
    ended(&c, &arn).await;
    let state = tempfile::tempdir().unwrap();
    let out = irr(&["evidence", "seal", "--execution", &arn], state.path());
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("not an irr state machine"),
        "{}",
        output_text(&out)
    );
    assert!(!state.path().join("runs").join(&run).exists());

    let (arn, run, case) = start(&c, &definition(&bucket, 0)).await;
    assert_eq!(ended(&c, &arn).await, "SUCCEEDED");
    let key = format!("evidence/{case}/{run}/artifacts/probe/before.json");
    let versions =
        c.s3.list_object_versions()
            .bucket(&bucket)
            .prefix(&key)
            .send()
            .await
            .unwrap();
    let version = versions.versions()[0].version_id().unwrap().to_owned();
    c.s3.delete_object()
        .bucket(&bucket)
        .key(&key)
        .version_id(&version)
        .bypass_governance_retention(true)
        .send()
        .await
        .unwrap();
    let out = irr(&["evidence", "seal", "--execution", &arn], state.path());
    assert_eq!(out.status.code(), Some(5), "{}", output_text(&out));
    let text = output_text(&out);
    assert!(
        text.contains(&key) && text.contains("nothing was sealed"),
        "{text}"
    );
    assert!(
        !state.path().join("runs").join(&run).exists(),
        "no run folder left"
    );
    let listed =
        c.s3.list_objects_v2()
            .bucket(&bucket)
            .prefix(format!("evidence/{case}/{run}/manifest.json"))
            .send()
            .await
            .unwrap();
    assert_eq!(listed.key_count(), Some(0), "no manifest written");
}
