//! The conformance suite: the same cases against two independent AWS emulators, moto and
//! LocalStack (community core). LocalStack's S3, CloudFormation and Step Functions are its own
//! implementations (its EC2, IAM and STS are built on moto's backends), so a code path shaped
//! by one emulator's quirks shows here.
//!
//! Every case runs twice, `CASE::moto` and `CASE::localstack` (`cargo test --test conformance
//! -- localstack` runs one side). Each asserts the resulting state through the emulator's API.
//! Where an emulator lacks something, the case asserts what irr does about it, never passes
//! silently:
//! - LocalStack has no Auto Scaling (every call answers `InternalFailure`, "not included in
//!   your current license plan"): the containment run records that read as a gap in the
//!   evidence manifest and goes on;
//! - LocalStack's `RunInstances` refuses the instance profiles its IAM creates (`NoSuchEntity`):
//!   the incident is seeded without one, the check on it is a named skip (the drill's
//!   scorecard; here an assertion that LocalStack still refuses, so the skip goes when it
//!   stops).
//!
//! - a fan-out (issue 14) runs on both: LocalStack, like moto, keeps each account's state
//!   apart for the credentials of a role assumed in it (its STS is moto's), so the same
//!   targets file contains an incident in two accounts x two regions on each.
//!
//! Endpoints: moto as in every suite (`IRR_TEST_ENDPOINT` or a private server), LocalStack
//! from `IRR_TEST_LOCALSTACK_ENDPOINT` or a private one (`scripts/ensure-localstack`).

use std::path::Path;
use std::process::{Command, Output};

use aws_sdk_ec2::types::Filter;
use aws_sdk_s3::primitives::ByteStream;
use irr_forensics::{EvidenceLocation, Store};
use irr_runner::actions::AwsClients;
use irr_runner::emulator::EmulatorKind;
use irr_tests::{
    add_second_interface, compromised_instance_on, contained, endpoint_of, irr_with, json_lines,
    output_text, playbook, sdk_config_of, unique, Contained,
};
use serde_json::Value;

/// Runs `CASE(kind)` once per emulator: `CASE::moto` and `CASE::localstack`.
macro_rules! on_both {
    ($($case:ident $([moto: $mi:literal])? $([localstack: $li:literal])?),* $(,)?) => {$(
        mod $case {
            use irr_runner::emulator::EmulatorKind;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            $(#[ignore = $mi])?
            async fn moto() {
                super::$case(EmulatorKind::Moto).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            $(#[ignore = $li])?
            async fn localstack() {
                super::$case(EmulatorKind::Localstack).await
            }
        }
    )*};
}

// The cases marked ignored failed on their first run (2026-12-01) and are open work, named
// in the session note: each reason says what the emulator answered.
on_both!(
    containment_playbook,
    credential_playbook,
    s3_playbook,
    evidence_in_s3_with_object_lock,
    clean_room_stack,
    ec2_drill,
    credential_drill,
    s3_drill,
    fan_out_across_accounts_and_regions,
);

/// `irr ARGS` against the emulator of that kind (us-east-1, dummy credentials).
fn irr(kind: EmulatorKind, args: &[&str], state: &Path) -> Output {
    irr_with(args, state, &endpoint_of(kind), ("testing", "testing"), &[])
}

/// `irr run PLAYBOOK --case CASE --input ... --yes --output json [extra]`; asserts success and
/// returns the summary line.
fn run_playbook(
    kind: EmulatorKind,
    name: &str,
    case: &str,
    inputs: &[String],
    extra: &[&str],
    state: &Path,
) -> Value {
    let pb = playbook(name);
    let mut args = vec!["run", pb.to_str().unwrap(), "--case", case];
    for i in inputs {
        args.extend(["--input", i.as_str()]);
    }
    args.extend(["--yes", "--output", "json"]);
    args.extend(extra);
    let out = irr(kind, &args, state);
    assert!(
        out.status.success(),
        "{name} on {}: {}",
        kind.as_str(),
        output_text(&out)
    );
    let last = json_lines(&out).pop().expect("a summary line");
    assert_eq!(last["event"], "run_finished", "{last:#}");
    assert_eq!(last["status"], "succeeded", "{last:#}");
    last
}

/// The sealed manifest of a run whose evidence is local.
fn local_manifest(summary: &Value) -> Value {
    let loc = summary["evidence"]["location"]
        .as_str()
        .expect("evidence location");
    serde_json::from_slice(&std::fs::read(Path::new(loc).join("manifest.json")).unwrap()).unwrap()
}

fn item_paths(manifest: &Value) -> Vec<String> {
    manifest["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap().to_owned())
        .collect()
}

/// The manifest's gaps (optional reads that failed), as text for matching.
fn gaps(manifest: &Value) -> Vec<String> {
    manifest["gaps"]
        .as_array()
        .map(|g| g.iter().map(Value::to_string).collect())
        .unwrap_or_default()
}

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

fn s3_client(conf: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(conf)
            .force_path_style(true)
            .build(),
    )
}

/// The clean room of a `cloudformation.deploy_stack` step's outputs: no internet or NAT
/// gateway in its VPC, and the workstation's restored volumes (attached at /dev/sdf and
/// after), one per snapshot. LocalStack's CloudFormation does not create `AWS::EC2::Volume`
/// (it reports it complete with physical id `unknown`): there, irr must name every evidence
/// volume in `not_created` (and as a gap), and none is attached.
async fn assert_clean_room(
    ec2: &aws_sdk_ec2::Client,
    step_outputs: &Value,
    snapshots: usize,
    kind: EmulatorKind,
) {
    let outputs = &step_outputs["outputs"];
    let not_created: Vec<&str> = step_outputs["not_created"]
        .as_array()
        .expect("not_created output")
        .iter()
        .filter(|r| r["resource_type"] == "AWS::EC2::Volume")
        .filter_map(|r| r["logical_resource_id"].as_str())
        .collect();
    let expected_restored = match kind {
        EmulatorKind::Localstack => {
            let all: Vec<String> = (0..snapshots)
                .map(|i| format!("EvidenceVolume{i}"))
                .collect();
            assert_eq!(
                not_created, all,
                "LocalStack: irr names the volumes it lacks"
            );
            0
        }
        EmulatorKind::Moto => {
            assert!(not_created.is_empty(), "{step_outputs:#}");
            snapshots
        }
    };
    let vpc = outputs["VpcId"].as_str().expect("VpcId output");
    let ws = outputs["WorkstationId"]
        .as_str()
        .expect("WorkstationId output");
    let igws = ec2
        .describe_internet_gateways()
        .filters(filter("attachment.vpc-id", vpc))
        .send()
        .await
        .unwrap();
    assert!(igws.internet_gateways().is_empty(), "{igws:?}");
    let nats = ec2
        .describe_nat_gateways()
        .filter(filter("vpc-id", vpc))
        .send()
        .await
        .unwrap();
    assert!(nats.nat_gateways().is_empty(), "{nats:?}");
    let vols = ec2
        .describe_volumes()
        .filters(filter("attachment.instance-id", ws))
        .send()
        .await
        .unwrap();
    let restored = vols
        .volumes()
        .iter()
        .filter(|v| {
            v.attachments()
                .iter()
                .any(|a| a.device().is_some_and(|d| d >= "/dev/sdf"))
        })
        .count();
    assert_eq!(restored, expected_restored, "restored volumes: {vols:?}");
    let inst = ec2
        .describe_instances()
        .instance_ids(ws)
        .send()
        .await
        .unwrap();
    let i = &inst.reservations()[0].instances()[0];
    match kind {
        EmulatorKind::Moto => assert_eq!(
            i.vpc_id(),
            Some(vpc),
            "the workstation is in the clean room's VPC"
        ),
        // LocalStack's CloudFormation launches an AWS::EC2::Instance in the default VPC,
        // whatever its SubnetId or NetworkInterfaces say (docs/emulator-notes.md). Pinned
        // here so that the day it places the workstation, this fails and the note goes.
        EmulatorKind::Localstack => assert_ne!(
            i.vpc_id(),
            Some(vpc),
            "LocalStack now places the clean room's workstation: drop the quirk"
        ),
    }
}

// ---- the playbooks ------------------------------------------------------------------------

/// The containment playbook on an instance with two interfaces and two volumes: every
/// interface holds only the empty isolation group, one snapshot per volume, termination
/// protection on, the profile detached, the responder role gone, the clean room up.
async fn containment_playbook(kind: EmulatorKind) {
    let conf = sdk_config_of(kind).await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let iam = aws_sdk_iam::Client::new(&conf);
    let inc = compromised_instance_on(kind, &ec2, &iam).await;
    add_second_interface(&ec2, &inc).await;
    let state = tempfile::tempdir().unwrap();
    let case = unique("IR-conf");
    let summary = run_playbook(
        kind,
        "ec2-instance-compromise.yaml",
        &case,
        &[
            format!("instance_id={}", inc.instance_id),
            "clean_room_volume_size=8".into(),
        ],
        &[],
        state.path(),
    );

    let enis = ec2
        .describe_network_interfaces()
        .filters(filter("attachment.instance-id", &inc.instance_id))
        .send()
        .await
        .unwrap();
    assert_eq!(enis.network_interfaces().len(), 2, "both interfaces seen");
    assert_eq!(
        contained(&ec2, &iam, &inc, &case).await,
        Contained::expected(inc.volumes.len()),
        "on {}",
        kind.as_str()
    );
    // The originals are recorded, the open group still exists.
    let still = ec2
        .describe_security_groups()
        .group_ids(&inc.open_group)
        .send()
        .await
        .unwrap();
    assert_eq!(still.security_groups().len(), 1);

    let manifest = local_manifest(&summary);
    let snaps = manifest["aws_resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["type"] == "ebs-snapshot")
        .count();
    assert_eq!(snaps, inc.volumes.len(), "{manifest:#}");
    let asg_gaps: Vec<String> = gaps(&manifest)
        .into_iter()
        .filter(|g| g.to_ascii_lowercase().contains("autoscaling"))
        .collect();
    match kind {
        EmulatorKind::Moto => {
            assert!(asg_gaps.is_empty(), "moto has Auto Scaling: {asg_gaps:?}");
            assert!(inc.profile.is_some(), "launched with its profile");
        }
        EmulatorKind::Localstack => {
            // No Auto Scaling in LocalStack's community edition: the read is a recorded gap,
            // and the instance was contained all the same.
            assert!(
                !asg_gaps.is_empty(),
                "the missing Auto Scaling read is recorded as a gap: {:#}",
                manifest["gaps"]
            );
            // The named skip: the profile check is vacuous here, and is so only while
            // LocalStack still refuses profiles on RunInstances.
            assert!(inc.profile.is_none());
            assert_eq!(
                irr_tests::localstack_refuses_launch_profiles(&ec2, &iam).await,
                Ok(true),
                "LocalStack launches with instance profiles now: seed with one and drop the skip"
            );
        }
    }

    // The clean room, from the run's own step outputs.
    let clean = summary["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "clean-room")
        .expect("clean-room step");
    assert_eq!(clean["status"], "succeeded");
    assert_clean_room(&ec2, &clean["outputs"], inc.volumes.len(), kind).await;
}

/// The credential playbook: the leaked key is inactive, sessions are revoked, the principal
/// is recorded in the evidence without the secret.
async fn credential_playbook(kind: EmulatorKind) {
    let conf = sdk_config_of(kind).await;
    let iam = aws_sdk_iam::Client::new(&conf);
    let user = unique("deployer");
    iam.create_user().user_name(&user).send().await.unwrap();
    let key = iam
        .create_access_key()
        .user_name(&user)
        .send()
        .await
        .unwrap();
    let key = key.access_key().unwrap();
    let (key_id, secret) = (
        key.access_key_id().to_owned(),
        key.secret_access_key().to_owned(),
    );
    let state = tempfile::tempdir().unwrap();
    let case = unique("IR-cred");
    let summary = run_playbook(
        kind,
        "iam-credential-compromise.yaml",
        &case,
        &[
            format!("user_name={user}"),
            format!("access_key_id={key_id}"),
        ],
        &[],
        state.path(),
    );
    let keys = iam
        .list_access_keys()
        .user_name(&user)
        .send()
        .await
        .unwrap();
    let status = keys
        .access_key_metadata()
        .iter()
        .find(|k| k.access_key_id() == Some(key_id.as_str()))
        .and_then(|k| k.status())
        .map(|s| s.as_str().to_owned());
    assert_eq!(status.as_deref(), Some("Inactive"));
    let deny = iam
        .get_user_policy()
        .user_name(&user)
        .policy_name("irr-revoke-sessions")
        .send()
        .await
        .unwrap();
    let doc = irr_runner::actions::iam::policy_document(deny.policy_document());
    assert_eq!(doc["Statement"][0]["Effect"], "Deny", "{doc}");
    assert!(doc.to_string().contains("aws:TokenIssueTime"), "{doc}");

    let manifest = local_manifest(&summary);
    let paths = item_paths(&manifest);
    assert!(
        paths.iter().any(|p| p.starts_with("artifacts/capture/")),
        "{paths:?}"
    );
    let loc = summary["evidence"]["location"].as_str().unwrap();
    for p in &paths {
        let bytes = std::fs::read(Path::new(loc).join(p)).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&secret),
            "the secret is in {p}"
        );
    }
}

/// A bucket opened to the world by its policy: the playbook records the configuration and
/// turns on all four public access block settings.
async fn s3_playbook(kind: EmulatorKind) {
    let conf = sdk_config_of(kind).await;
    let s3 = s3_client(&conf);
    let bucket = exposed_bucket(&s3).await;
    let before = s3.get_public_access_block().bucket(&bucket).send().await;
    assert!(
        before.is_err(),
        "no public access block before the run: {before:?}"
    );
    let state = tempfile::tempdir().unwrap();
    let case = unique("IR-s3");
    let summary = run_playbook(
        kind,
        "s3-bucket-exposure.yaml",
        &case,
        &[format!("bucket={bucket}")],
        &[],
        state.path(),
    );
    let pab = s3
        .get_public_access_block()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let c = pab.public_access_block_configuration().unwrap();
    assert_eq!(
        (
            c.block_public_acls(),
            c.ignore_public_acls(),
            c.block_public_policy(),
            c.restrict_public_buckets()
        ),
        (Some(true), Some(true), Some(true), Some(true))
    );
    // The policy as it was is in the evidence.
    let manifest = local_manifest(&summary);
    let loc = summary["evidence"]["location"].as_str().unwrap();
    let captured: Vec<String> = item_paths(&manifest)
        .into_iter()
        .filter(|p| p.starts_with("artifacts/capture/"))
        .collect();
    let all: String = captured
        .iter()
        .map(|p| std::fs::read_to_string(Path::new(loc).join(p)).unwrap_or_default())
        .collect();
    assert!(
        all.contains(&format!("arn:aws:s3:::{bucket}/*")),
        "the public policy is recorded: {captured:?}"
    );
}

/// A bucket with a public-read bucket policy.
async fn exposed_bucket(s3: &aws_sdk_s3::Client) -> String {
    let bucket = unique("exposed").to_lowercase();
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    // New buckets block public policies (AWS since 2023 and LocalStack; moto does not): lift
    // the block as whoever exposed the bucket had to, so that the playbook's block is real.
    s3.delete_public_access_block()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let policy = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Sid": "Public", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": format!("arn:aws:s3:::{bucket}/*")}]});
    s3.put_bucket_policy()
        .bucket(&bucket)
        .policy(policy.to_string())
        .send()
        .await
        .unwrap();
    bucket
}

// ---- evidence in S3 with Object Lock ------------------------------------------------------

/// Each version has a lock mode and is retained until a future date.
async fn assert_every_version_locked(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    versions: &[aws_sdk_s3::types::ObjectVersion],
) {
    let now = aws_sdk_s3::primitives::DateTime::from(std::time::SystemTime::now());
    // Each version's lock, as HeadObject reports it (x-amz-object-lock-mode and
    // -retain-until-date): moto answers GetObjectRetention on some keys with the object's
    // bytes instead of the retention XML (docs/emulator-notes.md).
    for v in versions {
        let h = s3
            .head_object()
            .bucket(bucket)
            .key(v.key().unwrap())
            .version_id(v.version_id().unwrap())
            .send()
            .await
            .unwrap_or_else(|e| panic!("head of {:?}: {e:?}", v.key()));
        assert!(
            h.object_lock_mode().is_some(),
            "{:?} has a lock mode",
            v.key()
        );
        assert!(
            h.object_lock_retain_until_date()
                .is_some_and(|d| d.secs() > now.secs()),
            "{:?} locked until a future date",
            v.key()
        );
    }
}

/// A run sealed into an Object Lock bucket: every object locked, deletion of a version
/// refused, `irr evidence verify` passes; then an altered artifact (a new version over it)
/// and an added object are each caught and named (exit 3).
async fn evidence_in_s3_with_object_lock(kind: EmulatorKind) {
    let conf = sdk_config_of(kind).await;
    let s3 = s3_client(&conf);
    let evidence_bucket = unique("irr-ev-conf").to_lowercase();
    let loc = EvidenceLocation::parse(&format!("s3://{evidence_bucket}/cases")).unwrap();
    let store = Store::open(&loc, Some(s3.clone()), irr_forensics::S3Settings::default()).unwrap();
    let Store::S3(st) = &store else {
        unreachable!()
    };
    st.ensure_bucket(true)
        .await
        .expect("create the evidence bucket with Object Lock");
    let lock = s3
        .get_object_lock_configuration()
        .bucket(&evidence_bucket)
        .send()
        .await
        .unwrap();
    assert_eq!(
        lock.object_lock_configuration()
            .and_then(|c| c.object_lock_enabled())
            .map(|e| e.as_str()),
        Some("Enabled")
    );

    let bucket = exposed_bucket(&s3).await;
    let state = tempfile::tempdir().unwrap();
    let case = unique("IR-ev");
    let summary = run_playbook(
        kind,
        "s3-bucket-exposure.yaml",
        &case,
        &[format!("bucket={bucket}")],
        &["--evidence", &format!("s3://{evidence_bucket}/cases")],
        state.path(),
    );
    let location = summary["evidence"]["location"].as_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("s3://{evidence_bucket}/cases/{case}/")),
        "{location}"
    );
    let verify = irr(kind, &["evidence", "verify", &location], state.path());
    assert!(verify.status.success(), "{}", output_text(&verify));

    // Every object is locked until a future date.
    let prefix = location
        .trim_start_matches(&format!("s3://{evidence_bucket}/"))
        .trim_end_matches('/')
        .to_owned()
        + "/";
    let listed = s3
        .list_object_versions()
        .bucket(&evidence_bucket)
        .prefix(&prefix)
        .send()
        .await
        .unwrap();
    let versions = listed.versions();
    assert!(
        versions.len() >= 3,
        "manifest, SHA256SUMS, items: {versions:?}"
    );
    assert_every_version_locked(&s3, &evidence_bucket, versions).await;
    // Deleting a locked version is refused.
    let manifest_key = format!("{prefix}manifest.json");
    let mv = versions
        .iter()
        .find(|v| v.key() == Some(manifest_key.as_str()))
        .expect("manifest version");
    let del = s3
        .delete_object()
        .bucket(&evidence_bucket)
        .key(&manifest_key)
        .version_id(mv.version_id().unwrap())
        .send()
        .await;
    assert!(del.is_err(), "a locked version cannot be deleted: {del:?}");

    // Tampering: a new version over an artifact.
    let art = versions
        .iter()
        .filter_map(|v| v.key())
        .find(|k| k.contains("/artifacts/capture/"))
        .expect("a captured artifact")
        .to_owned();
    s3.put_object()
        .bucket(&evidence_bucket)
        .key(&art)
        .body(ByteStream::from_static(b"{\"policy\": \"nothing to see\"}"))
        .send()
        .await
        .unwrap();
    // And an object that was never in the manifest.
    let extra = format!("{prefix}artifacts/capture/planted.json");
    s3.put_object()
        .bucket(&evidence_bucket)
        .key(&extra)
        .body(ByteStream::from_static(b"{}"))
        .send()
        .await
        .unwrap();
    let verify = irr(
        kind,
        &["--output", "json", "evidence", "verify", &location],
        state.path(),
    );
    assert_eq!(verify.status.code(), Some(3), "{}", output_text(&verify));
    let text = String::from_utf8_lossy(&verify.stdout).into_owned();
    let rel = art.trim_start_matches(&prefix);
    assert!(
        text.contains(rel),
        "the altered artifact {rel} is named: {text}"
    );
    assert!(
        text.contains("artifacts/capture/planted.json"),
        "the planted object is named: {text}"
    );
}

// ---- the clean room -----------------------------------------------------------------------

/// `cloudformation.deploy_stack` of the clean-room template from two case snapshots: the stack
/// completes, its VPC has no internet or NAT gateway, the workstation has one restored volume
/// per snapshot.
async fn clean_room_stack(kind: EmulatorKind) {
    let conf = sdk_config_of(kind).await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let case = unique("case");
    let vol = ec2
        .create_volume()
        .size(8)
        .availability_zone("us-east-1a")
        .send()
        .await
        .unwrap()
        .volume_id()
        .unwrap()
        .to_owned();
    let mut snaps = Vec::new();
    for _ in 0..2 {
        let s = ec2
            .create_snapshot()
            .volume_id(&vol)
            .description("evidence")
            .send()
            .await
            .unwrap();
        snaps.push(s.snapshot_id().unwrap().to_owned());
    }
    let stack = unique("irr-clean-room");
    let rec = irr_tests::MemoryRecorder::new();
    let with = serde_json::json!({
        "stack_name": stack,
        "template": "templates/forensic-clean-room.yaml",
        "parameters": {
            "snapshot_ids": snaps,
            "evidence_bucket": "irr-evidence-conformance",
            "evidence_prefix": "cases",
            "workstation_ami": "ami-12c6146b",
            "volume_size": 8,
            "s3_prefix_list_id": "pl-63a5400a",
        },
        "capabilities": ["CAPABILITY_IAM"],
        "tags": {"purpose": "forensic-clean-room"},
        "timeout": "10m",
    });
    let ctx = irr_tests::action_ctx(&conf, &case, "clean-room", false, rec.clone());
    let result = irr_runner::actions::dispatch("cloudformation.deploy_stack", &ctx, with)
        .await
        .unwrap_or_else(|e| panic!("deploy on {}: {e:?}", kind.as_str()));
    let o = Value::Object(result.outputs.clone());
    let described = AwsClients::from_conf(&conf, true)
        .cloudformation
        .describe_stacks()
        .stack_name(&stack)
        .send()
        .await
        .unwrap();
    let st = &described.stacks()[0];
    assert_eq!(
        st.stack_status().map(|s| s.as_str()),
        Some("CREATE_COMPLETE")
    );
    assert!(
        st.tags()
            .iter()
            .any(|t| t.key() == Some("irr:case") && t.value() == Some(case.as_str())),
        "{st:?}"
    );
    assert_clean_room(&ec2, &o, snaps.len(), kind).await;
}

// ---- the drills ---------------------------------------------------------------------------

/// `irr gameday PLAYBOOK --emulator KIND` against the emulator's endpoint (given: nothing is
/// started); returns the scorecard and the output.
fn gameday(kind: EmulatorKind, name: &str, endpoint: Option<&str>) -> (Value, Output) {
    let state = tempfile::tempdir().unwrap();
    let pb = playbook(name);
    let mut cmd = Command::new(irr_tests::irr_bin());
    cmd.arg("--state-dir")
        .arg(state.path())
        .args(["--output", "json", "gameday"])
        .arg(pb)
        .args(["--emulator", kind.as_str()])
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL");
    if let Some(ep) = endpoint {
        cmd.args(["--endpoint-url", ep]);
    }
    let out = cmd.output().expect("run irr gameday");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let card: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("no scorecard ({e}): {}", output_text(&out)));
    (card, out)
}

/// A drill's checks all passed except the named skips; returns the skipped checks' names.
fn drill_passes(kind: EmulatorKind, card: &Value, out: &Output, checks: usize) -> Vec<String> {
    assert_eq!(card["event"], "gameday_finished", "{card:#}");
    assert_eq!(card["status"], "succeeded", "{card:#}");
    let all = card["checks"].as_array().unwrap();
    assert_eq!(all.len(), checks, "{card:#}");
    let failed: Vec<&Value> = all
        .iter()
        .filter(|c| c["passed"] != true && c.get("skipped").is_none())
        .collect();
    assert!(failed.is_empty(), "failed checks: {failed:#?}");
    let skipped: Vec<String> = all
        .iter()
        .filter(|c| c.get("skipped").is_some())
        .map(|c| {
            assert_eq!(c["passed"], false, "a skipped check never counts as passed");
            c["check"]["check"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        card["score"],
        format!("{}/{}", checks - skipped.len(), checks - skipped.len()),
        "{card:#}"
    );
    assert!(
        card["target"]
            .as_str()
            .is_some_and(|t| t.contains(kind.as_str())),
        "{card:#}"
    );
    assert!(
        card["evidence"]
            .as_str()
            .is_some_and(|e| e.starts_with("s3://")),
        "drills seal evidence in the emulator's S3"
    );
    assert!(out.status.success(), "{}", output_text(out));
    skipped
}

/// The EC2 drill: on LocalStack the profile check is a named skip (the instance could not be
/// launched with its profile), and the clean room's (its CloudFormation creates no volume),
/// and everything else passes.
async fn ec2_drill(kind: EmulatorKind) {
    let ep = endpoint_of(kind);
    let (card, out) = gameday(kind, "ec2-instance-compromise.yaml", Some(&ep));
    let skipped = drill_passes(kind, &card, &out, 7);
    assert!(
        card["target"].as_str().unwrap().contains(&ep),
        "the given endpoint is used, nothing started: {card:#}"
    );
    match kind {
        EmulatorKind::Moto => assert!(skipped.is_empty(), "{card:#}"),
        EmulatorKind::Localstack => {
            assert_eq!(skipped, ["profile_detached", "clean_room"], "{card:#}");
            let why = |check: &str| {
                card["checks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|c| c["check"]["check"] == check)
                    .unwrap()["skipped"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            };
            let profile = why("profile_detached");
            assert!(
                profile.contains("LocalStack") && profile.contains("NoSuchEntity"),
                "{profile}"
            );
            let clean = why("clean_room");
            assert!(
                clean.contains("AWS::EC2::Volume") && clean.contains("unknown"),
                "{clean}"
            );
        }
    }
}

async fn credential_drill(kind: EmulatorKind) {
    let ep = endpoint_of(kind);
    let (card, out) = gameday(kind, "iam-credential-compromise.yaml", Some(&ep));
    assert!(drill_passes(kind, &card, &out, 4).is_empty());
}

/// The S3 drill, with the binary starting the emulator itself (no endpoint given).
async fn s3_drill(kind: EmulatorKind) {
    let (card, out) = gameday(kind, "s3-bucket-exposure.yaml", None);
    assert!(drill_passes(kind, &card, &out, 3).is_empty());
    let target = card["target"].as_str().unwrap();
    assert!(
        target.contains("started for this drill") && target.contains(kind.as_str()),
        "{target}"
    );
}

/// One `irr run --targets` over two accounts x two regions (`fanout-containment.yaml`: find by
/// the incident's tag, protect, snapshot, isolate): each account-region is a child run that
/// contains its own instance, asserted through that account's own role, and the parent bundle
/// verifies with its four children. The tag is this run's own, so nothing else on the shared
/// emulator is found.
async fn fan_out_across_accounts_and_regions(kind: EmulatorKind) {
    const ACCOUNTS: [&str; 2] = ["555555555555", "666666666666"];
    const REGIONS: [&str; 2] = ["us-east-1", "us-west-2"];
    let endpoint = endpoint_of(kind);
    let tag = unique("IR-conf-fan");
    let mut seeded = Vec::new();
    for a in ACCOUNTS {
        for r in REGIONS {
            let conf = irr_tests::assumed_role_config(&endpoint, a, "irr-responder", r).await;
            let (ec2, iam) = (
                aws_sdk_ec2::Client::new(&conf),
                aws_sdk_iam::Client::new(&conf),
            );
            let inc = compromised_instance_on(kind, &ec2, &iam).await;
            ec2.create_tags()
                .resources(&inc.instance_id)
                .tags(
                    aws_sdk_ec2::types::Tag::builder()
                        .key("incident")
                        .value(&tag)
                        .build(),
                )
                .send()
                .await
                .unwrap();
            seeded.push((a, r, ec2, iam, inc));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let (state, evidence) = (dir.path().join("state"), dir.path().join("evidence"));
    let targets = dir.path().join("targets.yaml");
    std::fs::write(
        &targets,
        format!(
            "accounts: [\"{}\", \"{}\"]\nregions: [{}]\nrole: irr-responder\nconcurrency: 2\n",
            ACCOUNTS[0],
            ACCOUNTS[1],
            REGIONS.join(", ")
        ),
    )
    .unwrap();
    let pb = irr_tests::fixture("fanout-containment.yaml");
    let case = unique("IR-conf-fan");
    let input = format!("incident_tag={tag}");
    let out = tokio::task::block_in_place(|| {
        irr(
            kind,
            &[
                "run",
                pb.to_str().unwrap(),
                "--case",
                &case,
                "--yes",
                "--output",
                "json",
                "--evidence",
                evidence.to_str().unwrap(),
                "--targets",
                targets.to_str().unwrap(),
                "--input",
                &input,
            ],
            &state,
        )
    });
    let text = output_text(&out);
    assert!(out.status.success(), "on {}: {text}", kind.as_str());
    let last = json_lines(&out).pop().expect("a summary");
    assert_eq!(last["status"], "succeeded", "{last:#}");
    for (a, r, ec2, iam, inc) in &seeded {
        assert_eq!(
            contained(ec2, iam, inc, &case).await,
            Contained::expected(inc.volumes.len()),
            "{a}/{r} {} on {}",
            inc.instance_id,
            kind.as_str()
        );
    }
    let run_dir = evidence.join(&case).join(last["run_id"].as_str().unwrap());
    for a in ACCOUNTS {
        for r in REGIONS {
            let child = run_dir.join("children").join(a).join(r);
            assert!(
                child.join("manifest.json").is_file() && child.join("SHA256SUMS").is_file(),
                "{} sealed",
                child.display()
            );
        }
    }
    let verify = tokio::task::block_in_place(|| {
        irr(
            kind,
            &["evidence", "verify", run_dir.to_str().unwrap()],
            &state,
        )
    });
    let v = output_text(&verify);
    assert_eq!(verify.status.code(), Some(0), "{v}");
    assert!(v.contains("children: 4 ok of 4"), "{v}");
}
