//! Step Functions on LocalStack: the state machines `irr compile` writes, created and run
//! there (its interpreter's `aws-sdk:*` tasks change its own EC2 and S3).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_s3::types::{
    DefaultRetention, ObjectLockConfiguration, ObjectLockEnabled, ObjectLockRetentionMode,
    ObjectLockRule,
};
use base64::Engine as _;
use irr_runner::actions::AwsClients;
use irr_runner::emulator::EmulatorKind;
use serde_json::Value;
use sha2::Digest as _;

use crate::{endpoint_of, irr_with, output_text, sdk_config_of, unique};

/// The role tasks run as (LocalStack's community edition enforces no IAM).
pub const ROLE: &str = "arn:aws:iam::000000000000:role/irr-sfn-tests";

/// Clients on LocalStack.
pub async fn clients() -> AwsClients {
    AwsClients::from_conf(&sdk_config_of(EmulatorKind::Localstack).await, true)
}

/// A new bucket with Object Lock and a default retention (GOVERNANCE, 1 day) that the
/// compiled writes must not rely on: they set the playbook's own.
pub async fn evidence_bucket(c: &AwsClients) -> String {
    let bucket = unique("irr-sfn-ev").to_lowercase();
    c.s3.create_bucket()
        .bucket(&bucket)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
    let rule = ObjectLockRule::builder()
        .default_retention(
            DefaultRetention::builder()
                .mode(ObjectLockRetentionMode::Governance)
                .days(1)
                .build(),
        )
        .build();
    c.s3.put_object_lock_configuration()
        .bucket(&bucket)
        .object_lock_configuration(
            ObjectLockConfiguration::builder()
                .object_lock_enabled(ObjectLockEnabled::Enabled)
                .rule(rule)
                .build(),
        )
        .send()
        .await
        .unwrap();
    bucket
}

/// `irr compile PLAYBOOK --target step-functions --out DIR [--input ...]`; the definition.
pub fn compile(playbook: &Path, out: &Path, inputs: &[&str]) -> Value {
    let mut args = vec![
        "compile".to_owned(),
        playbook.display().to_string(),
        "--target".into(),
        "step-functions".into(),
        "--out".into(),
        out.display().to_string(),
    ];
    for i in inputs {
        args.extend(["--input".to_owned(), (*i).to_owned()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = irr_with(
        &args,
        out,
        &endpoint_of(EmulatorKind::Localstack),
        ("testing", "testing"),
        &[],
    );
    assert!(o.status.success(), "irr compile: {}", output_text(&o));
    let text = std::fs::read_to_string(out.join("state-machine.asl.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Creates a state machine of the compiled definition, its placeholders filled in as the
/// stack's `DefinitionSubstitutions` would; its ARN.
pub async fn create_machine(c: &AwsClients, definition: &Value, bucket: &str) -> String {
    create_machine_with(c, definition, bucket, &[]).await
}

/// [`create_machine`] with more placeholders filled in (e.g. `ApprovalTopicArn`).
pub async fn create_machine_with(
    c: &AwsClients,
    definition: &Value,
    bucket: &str,
    more: &[(&str, &str)],
) -> String {
    let mut values = vec![
        ("EvidenceBucket", bucket),
        ("EvidencePrefix", "cases"),
        ("TargetRoleArn", ROLE),
    ];
    values.extend_from_slice(more);
    let text = irr_runner::compile::substitute(definition, &values);
    c.sfn
        .create_state_machine()
        .name(unique("irr-compiled"))
        .definition(text)
        .role_arn(ROLE)
        .send()
        .await
        .unwrap()
        .state_machine_arn()
        .to_owned()
}

/// Starts an execution named `name` with `input`; its ARN.
pub async fn start(c: &AwsClients, machine: &str, name: &str, input: &Value) -> String {
    c.sfn
        .start_execution()
        .state_machine_arn(machine)
        .name(name)
        .input(input.to_string())
        .send()
        .await
        .unwrap()
        .execution_arn()
        .to_owned()
}

/// Waits (at most `limit`) until the execution has ended; its status and output.
pub async fn ended(c: &AwsClients, arn: &str, limit: Duration) -> (String, Option<Value>) {
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
            let out = d.output().and_then(|o| serde_json::from_str(o).ok());
            return (status, out);
        }
        assert!(t0.elapsed() < limit, "{arn} still running after {limit:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every event of the execution's history (paginated).
pub async fn history(c: &AwsClients, arn: &str) -> Vec<aws_sdk_sfn::types::HistoryEvent> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = c
            .sfn
            .get_execution_history()
            .execution_arn(arn)
            .max_results(1000)
            .set_next_token(token)
            .send()
            .await
            .unwrap();
        out.extend(page.events().iter().cloned());
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return out;
        }
    }
}

/// The evidence objects under `cases/CASE/EXECUTION/artifacts/`: path -> bytes, each checked
/// against the SHA-256 S3 computed when it was written and kept under Object Lock.
pub async fn evidence_objects(
    c: &AwsClients,
    bucket: &str,
    case: &str,
    execution: &str,
) -> BTreeMap<String, Vec<u8>> {
    let prefix = format!("cases/{case}/{execution}/artifacts/");
    let listed =
        c.s3.list_objects_v2()
            .bucket(bucket)
            .prefix(&prefix)
            .send()
            .await
            .unwrap();
    let mut out = BTreeMap::new();
    for o in listed.contents() {
        let key = o.key().unwrap();
        let got =
            c.s3.get_object()
                .bucket(bucket)
                .key(key)
                .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
                .send()
                .await
                .unwrap();
        let stored = got
            .checksum_sha256()
            .expect("S3 holds a SHA-256")
            .to_owned();
        let bytes = got.body.collect().await.unwrap().into_bytes().to_vec();
        let digest = sha2::Sha256::digest(&bytes);
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(digest),
            stored,
            "{key}: bytes and S3's SHA-256 agree"
        );
        let retention =
            c.s3.get_object_retention()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .unwrap();
        // Locked as the playbook says (these playbooks: 90 days, governance), counted from
        // the write, not by the bucket's 1-day default.
        let r = retention.retention().expect("under Object Lock");
        assert_eq!(
            r.mode(),
            Some(&aws_sdk_s3::types::ObjectLockRetentionMode::Governance),
            "{key}"
        );
        let until = r.retain_until_date().expect("a retain-until date").secs();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let days = (until - now) as f64 / 86_400.0;
        assert!((89.9..=90.0).contains(&days), "{key}: retained {days} days");
        out.insert(key.trim_start_matches(&prefix).to_owned(), bytes);
    }
    out
}

/// `irr evidence seal --execution` on the ended execution, then `irr evidence verify` and
/// `irr report` on the sealed run, as on a CLI run; the verified items and the report.
pub fn seal_and_verify(arn: &str, bucket: &str, case: &str, name: &str) -> (Value, Value) {
    let state = tempfile::tempdir().unwrap();
    let irr = |args: &[&str]| {
        let o = irr_with(
            args,
            state.path(),
            &endpoint_of(EmulatorKind::Localstack),
            ("testing", "testing"),
            &[],
        );
        assert!(o.status.success(), "irr {args:?}: {}", output_text(&o));
        serde_json::from_slice::<Value>(&o.stdout).unwrap_or(Value::Null)
    };
    irr(&["evidence", "seal", "--execution", arn]);
    let location = format!("s3://{bucket}/cases/{case}/{name}");
    let verified = irr(&["--output", "json", "evidence", "verify", &location]);
    assert_eq!(verified["status"], "ok", "{verified:#}");
    let report = irr(&["report", name, "--format", "json"]);
    assert_eq!(report["integrity_ok"], true, "{:#}", report["findings"]);
    (verified, report)
}

/// Every evidence object the execution wrote is an `ok` item of the verified seal.
pub fn assert_every_object_verified(verified: &Value, objects: &BTreeMap<String, Vec<u8>>) {
    let items: Vec<&str> = verified["items"]
        .as_array()
        .expect("verified items")
        .iter()
        .filter(|i| i["status"] == "ok")
        .filter_map(|i| i["path"].as_str())
        .collect();
    for item in objects.keys() {
        assert!(
            items.contains(&format!("artifacts/{item}").as_str()),
            "{item} verified: {items:?}"
        );
    }
}
