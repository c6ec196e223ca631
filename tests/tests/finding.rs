//! `irr run --finding`: a GuardDuty finding and a Security Hub ASFF finding drive the shipped
//! EC2 playbook to containment through its `trigger:`, and the finding is the run's first
//! evidence item (hashed in the sealed manifest and SHA256SUMS). A finding the trigger cannot
//! use is refused before anything changes: EC2 as it was, no run written.

use std::path::Path;
use std::process::{Command, Output};

use aws_sdk_ec2::types::Filter;
use irr_tests::{
    compromised_instance, contained, json_lines, output_text, playbook, CompromisedInstance,
    Contained,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The id the fixtures name, replaced by the seeded instance's.
const FIXTURE_INSTANCE: &str = "i-99999999";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(irr_tests::fixture(&format!("findings/{name}"))).unwrap()
}

/// The GuardDuty fixture about `instance`.
fn guardduty_finding(instance: &str) -> String {
    fixture("guardduty-ssh-bruteforce.json").replace(FIXTURE_INSTANCE, instance)
}

/// The ASFF fixture about `instance`, in the EventBridge event Security Hub sends for its
/// `irr-contain` custom action.
fn securityhub_event(instance: &str) -> String {
    let finding = fixture("securityhub-ec2.json").replace(FIXTURE_INSTANCE, instance);
    format!(
        r#"{{"version":"0","id":"6f3b2c1d-0a9e-4b8c-9d7e-1f2a3b4c5d6e","detail-type":"Security Hub Findings - Custom Action","source":"aws.securityhub","account":"123456789012","time":"2026-12-03T06:55:00Z","region":"us-east-1","resources":["arn:aws:securityhub:us-east-1:123456789012:action/custom/irr-contain"],"detail":{{"actionName":"irr-contain","actionDescription":"Contain with irr","findings":[{finding}]}}}}"#
    )
}

/// `irr run` of the shipped EC2 playbook with `--finding FILE` and `extra` arguments.
fn run_with_finding(finding: &Path, case: &str, state: &Path, extra: &[&str]) -> Output {
    let pb = playbook("ec2-instance-compromise.yaml");
    let mut args = vec![
        "run",
        pb.to_str().unwrap(),
        "--case",
        case,
        "--finding",
        finding.to_str().unwrap(),
        "--yes",
        "--output",
        "json",
    ];
    args.extend(extra);
    irr_tests::irr_with(
        &args,
        state,
        &irr_tests::endpoint(),
        ("testing", "testing"),
        &[],
    )
}

async fn clients() -> (aws_sdk_ec2::Client, aws_sdk_iam::Client) {
    let conf = irr_tests::sdk_config().await;
    (
        aws_sdk_ec2::Client::new(&conf),
        aws_sdk_iam::Client::new(&conf),
    )
}

/// Runs the playbook from `finding` (written to a file) and asserts containment, the run's
/// region and inputs, and the finding as the first, hashed item of the sealed evidence.
async fn contained_from(finding: String, inc: &CompromisedInstance, case: &str) {
    let (ec2, iam) = clients().await;
    let state = tempfile::tempdir().unwrap();
    let file = state.path().join("finding.json");
    std::fs::write(&file, &finding).unwrap();
    // The volume size is the one input the emulator needs that the finding does not give.
    let out = run_with_finding(
        &file,
        case,
        state.path(),
        &["--input", "clean_room_volume_size=8"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(
        contained(&ec2, &iam, inc, case).await,
        Contained::expected(inc.volumes.len())
    );

    let events = json_lines(&out);
    let last = events.last().unwrap();
    assert_eq!(last["status"], "succeeded");
    // The finding is the first item captured, before any step started.
    let first_capture = events
        .iter()
        .position(|e| e["event"] == "evidence_captured")
        .unwrap();
    let first_step = events
        .iter()
        .position(|e| e["event"] == "step_started")
        .unwrap();
    assert!(first_capture < first_step, "{events:#?}");
    assert_eq!(events[first_capture]["path"], "finding/finding.json");

    // The run acts on the instance the finding names, in its region.
    let run_id = last["run_id"].as_str().unwrap();
    let record: Value = serde_json::from_slice(
        &std::fs::read(state.path().join("runs").join(run_id).join("run.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["inputs"]["instance_id"], inc.instance_id.as_str());
    assert_eq!(record["region"], "us-east-1");
    assert_eq!(record["account_id"], "123456789012");

    // Sealed: in the manifest and SHA256SUMS with the hash of the bytes as given.
    let location = last["evidence"]["location"].as_str().unwrap();
    let want = hex(&Sha256::digest(finding.as_bytes()));
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(Path::new(location).join("manifest.json")).unwrap())
            .unwrap();
    let item = manifest["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["path"] == "finding/finding.json")
        .unwrap_or_else(|| panic!("the finding is not in the manifest: {manifest:#}"));
    assert_eq!(item["sha256"], want.as_str());
    assert_eq!(item["size"], finding.len());
    assert_eq!(item["step"], "trigger");
    assert_eq!(
        std::fs::read(Path::new(location).join("finding/finding.json")).unwrap(),
        finding.as_bytes(),
        "the evidence copy is the file as given"
    );
    let sums = std::fs::read_to_string(Path::new(location).join("SHA256SUMS")).unwrap();
    assert!(
        sums.lines()
            .any(|l| l == format!("{want}  finding/finding.json")),
        "{sums}"
    );
    let verify = Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(location)
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", output_text(&verify));
    let irr_verify = irr_tests::irr_with(
        &["evidence", "verify", location],
        state.path(),
        &irr_tests::endpoint(),
        ("testing", "testing"),
        &[],
    );
    assert!(irr_verify.status.success(), "{}", output_text(&irr_verify));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guardduty_finding_contains_its_instance() {
    let (ec2, iam) = clients().await;
    let inc = compromised_instance(&ec2, &iam).await;
    let case = irr_tests::unique("IR-gd");
    contained_from(guardduty_finding(&inc.instance_id), &inc, &case).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_security_hub_custom_action_event_contains_its_instance() {
    let (ec2, iam) = clients().await;
    let inc = compromised_instance(&ec2, &iam).await;
    let case = irr_tests::unique("IR-sh");
    contained_from(securityhub_event(&inc.instance_id), &inc, &case).await;
}

/// What the instance looks like to a test that expects nothing to have changed.
#[derive(Debug, PartialEq)]
struct Untouched {
    groups: Vec<Vec<String>>,
    termination_protected: Option<bool>,
    snapshots: usize,
}

async fn state_of(ec2: &aws_sdk_ec2::Client, inc: &CompromisedInstance) -> Untouched {
    let enis = ec2
        .describe_network_interfaces()
        .filters(
            Filter::builder()
                .name("attachment.instance-id")
                .values(&inc.instance_id)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let groups = enis
        .network_interfaces()
        .iter()
        .map(|e| {
            e.groups()
                .iter()
                .filter_map(|g| g.group_id().map(str::to_owned))
                .collect()
        })
        .collect();
    let attr = ec2
        .describe_instance_attribute()
        .instance_id(&inc.instance_id)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::DisableApiTermination)
        .send()
        .await
        .unwrap();
    let mut snapshots = 0;
    for v in &inc.volumes {
        let s = ec2
            .describe_snapshots()
            .filters(Filter::builder().name("volume-id").values(v).build())
            .send()
            .await
            .unwrap();
        snapshots += s.snapshots().len();
    }
    Untouched {
        groups,
        termination_protected: attr.disable_api_termination().and_then(|b| b.value()),
        snapshots,
    }
}

/// Runs `finding` (as a file) and asserts it is refused (exit 2) before anything changed:
/// the instance as it was, no run directory, no evidence; returns stderr.
async fn refused(
    finding: &str,
    inc: &CompromisedInstance,
    before: &Untouched,
    extra: &[&str],
) -> String {
    let (ec2, _) = clients().await;
    let state = tempfile::tempdir().unwrap();
    let file = state.path().join("finding.json");
    std::fs::write(&file, finding).unwrap();
    let case = irr_tests::unique("IR-refused");
    let out = run_with_finding(&file, &case, state.path(), extra);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(
        !state.path().join("runs").exists(),
        "a refused finding writes no run: {}",
        output_text(&out)
    );
    assert!(!state.path().join("evidence").exists());
    assert_eq!(&state_of(&ec2, inc).await, before, "nothing changed in EC2");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finding_the_trigger_cannot_use_is_refused_and_nothing_changes() {
    let (ec2, iam) = clients().await;
    let inc = compromised_instance(&ec2, &iam).await;
    let before = state_of(&ec2, &inc).await;
    assert_eq!(before.snapshots, 0);
    assert_ne!(before.termination_protected, Some(true));

    // No instance id: refused naming the path and the input.
    let mut f: Value = serde_json::from_str(&guardduty_finding(&inc.instance_id)).unwrap();
    f["Resource"]["InstanceDetails"]
        .as_object_mut()
        .unwrap()
        .remove("InstanceId");
    let msg = refused(&f.to_string(), &inc, &before, &[]).await;
    assert!(
        msg.contains("$.Resource.InstanceDetails.InstanceId")
            && msg.contains("input \\\"instance_id\\\""),
        "{msg}"
    );

    let finding = guardduty_finding(&inc.instance_id);
    // A mapped input given again.
    let again = format!("instance_id={}", inc.instance_id);
    let msg = refused(&finding, &inc, &before, &["--input", &again]).await;
    assert!(msg.contains("mapped from the finding"), "{msg}");
    // Another account than the caller's.
    let other = finding.replace(
        "\"AccountId\": \"123456789012\"",
        "\"AccountId\": \"111111111111\"",
    );
    let msg = refused(&other, &inc, &before, &[]).await;
    assert!(
        msg.contains("the finding is about account 111111111111")
            && msg.contains("are for account 123456789012"),
        "{msg}"
    );
    // Another region than --region.
    let msg = refused(&finding, &inc, &before, &["--region", "us-west-2"]).await;
    assert!(msg.contains("the finding is in region us-east-1"), "{msg}");
    // --targets beside --finding: the finding names the one account and region.
    let targets = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        targets.path(),
        "accounts: [\"123456789012\"]\nregions: [us-east-1]\nrole: irr-responder\n",
    )
    .unwrap();
    let t = targets.path().to_str().unwrap();
    let msg = refused(&finding, &inc, &before, &["--targets", t]).await;
    assert!(msg.contains("does not fan out over --targets"), "{msg}");
    // A type the playbook is not for.
    let probe = finding.replace(
        "UnauthorizedAccess:EC2/SSHBruteForce",
        "Recon:EC2/PortProbeUnprotectedPort",
    );
    let msg = refused(&probe, &inc, &before, &[]).await;
    assert!(msg.contains("not one this playbook is for"), "{msg}");
    // An event with two findings, naming the count.
    let two = securityhub_event(&inc.instance_id);
    let asff = fixture("securityhub-ec2.json").replace(FIXTURE_INSTANCE, &inc.instance_id);
    let two = two.replace("\"findings\":[", &format!("\"findings\":[{asff},"));
    let msg = refused(&two, &inc, &before, &[]).await;
    assert!(msg.contains("holds 2 findings"), "{msg}");
}
