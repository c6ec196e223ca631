//! `ssm.capture_volatile` in the shipped EC2 playbook, against moto with S3 evidence under
//! Object Lock.
//!
//! moto emulates `SendCommand`, `ListCommands` and `GetCommandInvocation` but runs no agent
//! (every invocation is `Success` at once, with no output), and has no
//! `DescribeInstanceInformation` or `CancelCommand`. So the fault proxy stands in for the
//! agent's side of SSM (`irr_runner::proxy::SsmAgent`: the instance is listed as managed and
//! online; `GetCommandInvocation` answers `InProgress` until the test's stand-in agent is
//! done, then `Success` with what it printed), and the test is the agent: it reads the
//! command moto stored (`ListCommands`, the script in `Parameters`), and runs that very
//! script under bash on this machine, with `avml` a shell function that prints a known
//! "memory image". The script sends each part to the presigned URL irr made for it, with its
//! `Content-MD5`, through the proxy to moto, and prints its own SHA-256 of each stream.
//! Nothing here shows that SSM delivers the script or that S3 checks the signatures (moto
//! does not check them): see docs/emulator-notes.md.

use std::path::{Path, PathBuf};
use std::process::Output;

use aws_sdk_s3::types::ObjectLockMode;
use aws_sdk_s3::Client;
use irr_forensics::{EvidenceLocation, S3Settings, Sha256Digest, Store};
use irr_runner::proxy::{FaultKind, FaultProxy, ProxySpec, Rule, SsmAgent};
use irr_tests::{
    compromised_instance, contained, irr_with, json_lines, output_text, playbook, unique,
    CompromisedInstance, Contained,
};
use serde_json::Value;

/// irr's credentials in these tests: the secret must never be in the command.
const KEY: (&str, &str) = (
    "AKIAIRRVOLATILE00001",
    "irr-volatile-secret-never-sent-0000000000",
);

async fn s3() -> Client {
    let conf = irr_tests::sdk_config().await;
    Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    )
}

/// A bucket fit for evidence (versioning, Object Lock, encryption), made straight in moto.
async fn evidence_bucket() -> String {
    let bucket = unique("irr-ev-volatile").to_lowercase();
    let loc = EvidenceLocation::parse(&format!("s3://{bucket}")).unwrap();
    let Store::S3(st) = Store::open(&loc, Some(s3().await), S3Settings::default()).unwrap() else {
        unreachable!()
    };
    st.ensure_bucket(true).await.expect("evidence bucket");
    bucket
}

/// Runs the shipped EC2 playbook through `endpoint` with `evidence` and extra inputs.
async fn run_ec2(
    endpoint: &str,
    inc: &CompromisedInstance,
    case: &str,
    evidence: &str,
    inputs: &[&str],
) -> (Output, tempfile::TempDir) {
    let state = tempfile::tempdir().unwrap();
    let pb = playbook("ec2-instance-compromise.yaml");
    let mut args: Vec<String> = [
        "run",
        pb.to_str().unwrap(),
        "--case",
        case,
        "--input",
        &format!("instance_id={}", inc.instance_id),
        "--yes",
        "--evidence",
        evidence,
        "--output",
        "json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // moto needs a size for the clean room's volumes.
    for i in inputs.iter().chain(&["clean_room_volume_size=8"]) {
        args.extend(["--input".to_owned(), (*i).to_owned()]);
    }
    let (dir, endpoint) = (state.path().to_owned(), endpoint.to_owned());
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        irr_with(&args, &dir, &endpoint, KEY, &[("IRR_SSM_POLL_MS", "200")])
    })
    .await
    .unwrap();
    (out, state)
}

/// The run summary (the last JSON line).
fn summary(out: &Output) -> Value {
    json_lines(out)
        .pop()
        .unwrap_or_else(|| panic!("{}", output_text(out)))
}

/// The playbook contained the instance: every step but the clean room (judged by its own
/// tests) succeeded, and EC2 says so.
async fn assert_contained(out: &Output, inc: &CompromisedInstance, case: &str) {
    let s = summary(out);
    let bad: Vec<String> = s["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|st| st["status"] != "succeeded" && st["id"] != "clean-room")
        .map(|st| format!("{} {} {}", st["id"], st["status"], st["error"]))
        .collect();
    assert!(bad.is_empty(), "{bad:#?}\n{}", output_text(out));
    let conf = irr_tests::sdk_config().await;
    let (ec2, iam) = (
        aws_sdk_ec2::Client::new(&conf),
        aws_sdk_iam::Client::new(&conf),
    );
    let c = contained(&ec2, &iam, inc, case).await;
    assert_eq!(
        c,
        Contained::expected(inc.volumes.len()),
        "{}",
        output_text(out)
    );
}

/// The run's location in the bucket (`cases/CASE/RUN`) and its sealed manifest.
async fn sealed(c: &Client, bucket: &str, out: &Output) -> (String, Value) {
    let loc = summary(out)["evidence"]["location"]
        .as_str()
        .unwrap()
        .to_owned();
    let prefix = loc
        .strip_prefix(&format!("s3://{bucket}/"))
        .unwrap_or_else(|| panic!("{loc}"))
        .to_owned();
    let m = get(c, bucket, &format!("{prefix}/manifest.json")).await;
    (prefix, serde_json::from_slice(&m).unwrap())
}

async fn get(c: &Client, bucket: &str, key: &str) -> Vec<u8> {
    let o = c
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{key}: {e:?}"));
    o.body.collect().await.unwrap().into_bytes().to_vec()
}

fn gaps<'a>(manifest: &'a Value, what: &str) -> Vec<&'a Value> {
    manifest["gaps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["what"].as_str().is_some_and(|w| w.starts_with(what)))
        .collect()
}

/// The stand-in agent: waits for irr's command to the instance in moto, runs its script
/// under bash with `avml` printing `memory`, and writes what the script printed to
/// `output` (when it is done, all at once). Returns the script.
async fn stand_in_agent(
    instance_id: String,
    case: String,
    memory: PathBuf,
    output: PathBuf,
) -> String {
    let ssm = aws_sdk_ssm::Client::new(&irr_tests::sdk_config().await);
    let script = loop {
        let cmds = ssm
            .list_commands()
            .instance_id(&instance_id)
            .send()
            .await
            .unwrap();
        let found = cmds.commands().iter().find_map(|c| {
            c.comment()
                .is_some_and(|m| m.starts_with("irr ") && m.contains(&case))
                .then(|| c.parameters()?.get("commands")?.first().cloned())
                .flatten()
        });
        if let Some(s) = found {
            break s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let dir = output.parent().unwrap().to_owned();
    let file = dir.join("capture-script.sh");
    std::fs::write(&file, &script).unwrap();
    let run = format!(
        "avml() {{ cat '{}'; }}; source '{}'",
        memory.display(),
        file.display()
    );
    let out = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(run)
        .output()
        .await
        .unwrap();
    let tmp = dir.join("agent-output.partial");
    std::fs::write(&tmp, &out.stdout).unwrap();
    std::fs::rename(&tmp, &output).unwrap();
    script
}

/// The per-part signatures a script holds (`N:HEX` words of its `IRR_P_` lists).
fn signatures(script: &str) -> Vec<String> {
    script
        .lines()
        .filter(|l| l.starts_with("IRR_P_"))
        .flat_map(|l| l.split(['(', ')', ' ']))
        .filter_map(|w| w.split_once(':').map(|(_, s)| s.to_owned()))
        .filter(|s| s.len() == 64)
        .collect()
}

/// Every file below `dir`, read.
fn files_below(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if let Ok(b) = std::fs::read(&p) {
                out.push((p, b));
            }
        }
    }
    out
}

/// No credential in the command (no secret, no token; only presigned URL templates), and none
/// of its presigned signatures anywhere irr writes.
async fn assert_no_credential_and_no_signature_written(
    script: &str,
    c: &Client,
    bucket: &str,
    prefix: &str,
    manifest: &Value,
    out: &Output,
    state: &Path,
) {
    // No credential in the command: no secret, no token; only presigned URL templates.
    assert!(!script.contains(KEY.1), "the secret key is in the script");
    assert!(!script.contains("X-Amz-Security-Token"), "{script}");
    assert!(!script
        .to_ascii_lowercase()
        .contains("aws_secret_access_key"));
    assert!(script.contains("X-Amz-Signature=@S@"), "{script}");
    let sigs = signatures(script);
    assert!(
        sigs.len() >= 5 + 2,
        "one signature per presigned part: {}",
        sigs.len()
    );
    // Presigned URLs are bearer credentials: none of their signatures anywhere irr writes.
    let mut written = files_below(state);
    written.push(("stdout".into(), out.stdout.clone()));
    written.push(("stderr".into(), out.stderr.clone()));
    for i in manifest["items"].as_array().unwrap() {
        let p = i["path"].as_str().unwrap();
        if !p.ends_with("memory.lime") {
            written.push((p.into(), get(c, bucket, &format!("{prefix}/{p}")).await));
        }
    }
    for (path, bytes) in &written {
        let text = String::from_utf8_lossy(bytes);
        for s in &sigs {
            assert!(
                !text.contains(s.as_str()),
                "a presigned signature is in {}",
                path.display()
            );
        }
        assert!(
            !text.contains(KEY.1),
            "the secret key is in {}",
            path.display()
        );
    }
}

/// Each object of the capture: captured, the agent's hash beside irr's and equal, listed in
/// the manifest with that hash, in S3 with those bytes, under Object Lock.
async fn assert_objects_recorded_and_locked(
    c: &Client,
    bucket: &str,
    prefix: &str,
    manifest: &Value,
    record: &Value,
) {
    let item = |name: &str| -> Value {
        manifest["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["path"] == format!("artifacts/volatile/{name}"))
            .unwrap_or_else(|| panic!("{name} not in {:#}", manifest["items"]))
            .clone()
    };
    let objects = record["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 6, "{record:#}");
    for o in objects {
        assert_eq!(o["captured"], true, "{o:#}");
        // The agent's own hash, beside irr's, and equal.
        assert_eq!(o["agent"]["sha256"], o["sha256"], "{o:#}");
        assert_eq!(o["agent_hash_matches"], true, "{o:#}");
        let it = item(o["name"].as_str().unwrap());
        assert_eq!(it["sha256"], o["sha256"]);
        // In S3: what the manifest says, under Object Lock.
        let key = format!("{prefix}/{}", it["path"].as_str().unwrap());
        let bytes = get(c, bucket, &key).await;
        assert_eq!(
            Sha256Digest::of(&bytes).to_hex(),
            it["sha256"].as_str().unwrap()
        );
        let head = c
            .head_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(
            head.object_lock_mode(),
            Some(&ObjectLockMode::Governance),
            "{key}"
        );
        assert!(head.object_lock_retain_until_date().is_some(), "{key}");
    }
}

/// The capture: the agent's upload is in the manifest with irr's hash (that of the bytes the
/// stand-in sent) and the agent's beside it, locked in S3; the script holds no credential;
/// no presigned signature is written anywhere irr writes; and the instance is contained.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn volatile_state_streams_into_locked_evidence_before_isolation() {
    let conf = irr_tests::sdk_config().await;
    let inc = compromised_instance(
        &aws_sdk_ec2::Client::new(&conf),
        &aws_sdk_iam::Client::new(&conf),
    )
    .await;
    let bucket = evidence_bucket().await;
    let work = tempfile::tempdir().unwrap();
    let output = work.path().join("agent-output.txt");
    // 20 MiB and a bit: two 16 MiB parts, the last one short.
    let memory: Vec<u8> = (0..(20 * 1024 * 1024 + 12345u32))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let memory_file = work.path().join("memory.bin");
    std::fs::write(&memory_file, &memory).unwrap();
    let proxy = FaultProxy::start(
        &irr_tests::endpoint(),
        ProxySpec {
            ssm_agent: Some(SsmAgent {
                online: vec![inc.instance_id.clone()],
                output_file: Some(output.clone()),
            }),
            ..ProxySpec::default()
        },
    )
    .await
    .unwrap();
    let case = unique("IR-volatile");
    let agent = tokio::spawn(stand_in_agent(
        inc.instance_id.clone(),
        case.clone(),
        memory_file,
        output.clone(),
    ));
    let (out, state) = run_ec2(
        proxy.url(),
        &inc,
        &case,
        &format!("s3://{bucket}/cases"),
        &["capture_volatile_timeout=2m"],
    )
    .await;
    let script = tokio::time::timeout(std::time::Duration::from_secs(60), agent)
        .await
        .unwrap_or_else(|_| panic!("no command reached the agent\n{}", output_text(&out)))
        .unwrap_or_else(|e| panic!("the stand-in agent failed: {e}\n{}", output_text(&out)));
    assert!(out.status.success(), "{}", output_text(&out));
    assert_contained(&out, &inc, &case).await;

    let c = s3().await;
    let (prefix, manifest) = sealed(&c, &bucket, &out).await;
    let item = |name: &str| -> Value {
        manifest["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["path"] == format!("artifacts/volatile/{name}"))
            .unwrap_or_else(|| panic!("{name} not in {:#}", manifest["items"]))
            .clone()
    };
    let mem = item("memory.lime");
    assert_eq!(mem["sha256"], Sha256Digest::of(&memory).to_hex(), "{mem:#}");
    assert_eq!(mem["size"], memory.len() as u64);
    let record: Value = serde_json::from_slice(
        &get(
            &c,
            &bucket,
            &format!("{prefix}/artifacts/volatile/volatile-capture.json"),
        )
        .await,
    )
    .unwrap();
    assert_objects_recorded_and_locked(&c, &bucket, &prefix, &manifest, &record).await;
    assert_eq!(record["memory_tool"], "avml", "{record:#}");
    assert!(mem["s3"]["version_id"].is_string(), "{mem:#}");
    let processes = String::from_utf8(
        get(
            &c,
            &bucket,
            &format!("{prefix}/artifacts/volatile/processes.txt"),
        )
        .await,
    )
    .unwrap();
    assert!(
        processes.contains("PID") || processes.contains("pid"),
        "{processes}"
    );
    assert!(gaps(&manifest, "ssm:").is_empty(), "{:#}", manifest["gaps"]);

    // The parts went up through the presigned URLs (no Authorization header of irr's).
    let uploads: Vec<_> = proxy
        .request_log()
        .into_iter()
        .filter(|r| r.action == "s3:UploadPart")
        .collect();
    assert_eq!(uploads.len(), 5 + 2, "five outputs and two memory parts");
    assert!(uploads.iter().all(|r| r.header("authorization").is_none()
        && r.header("content-md5").is_some()
        && r.target.contains("X-Amz-Signature=[redacted]")));

    assert_no_credential_and_no_signature_written(
        &script,
        &c,
        &bucket,
        &prefix,
        &manifest,
        &out,
        state.path(),
    )
    .await;
    let verify = tokio::task::spawn_blocking({
        let (dir, url) = (state.path().to_owned(), proxy.url().to_owned());
        let loc = format!("s3://{bucket}/{prefix}");
        move || irr_with(&["evidence", "verify", &loc], &dir, &url, KEY, &[])
    })
    .await
    .unwrap();
    assert!(verify.status.success(), "{}", output_text(&verify));
}

/// With SSM denied, with an instance that is not managed, and with local evidence, the
/// playbook still contains the instance, quickly, and the evidence says what is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_ssm_the_instance_is_still_contained_and_the_gap_recorded() {
    let conf = irr_tests::sdk_config().await;
    let (ec2, iam) = (
        aws_sdk_ec2::Client::new(&conf),
        aws_sdk_iam::Client::new(&conf),
    );
    let bucket = evidence_bucket().await;
    let c = s3().await;
    let denied = ProxySpec {
        rules: vec![Rule {
            action: "ssm:*".into(),
            fault: FaultKind::Deny,
            nth: None,
            times: None,
            latency_ms: None,
            contains: None,
        }],
        ..ProxySpec::default()
    };
    let unmanaged = ProxySpec {
        ssm_agent: Some(SsmAgent::default()),
        ..ProxySpec::default()
    };
    for (spec, what, says) in [
        (denied, "ssm:DescribeInstanceInformation", "not authorized"),
        (
            unmanaged,
            "ssm:DescribeInstanceInformation",
            "not an SSM managed instance",
        ),
    ] {
        let inc = compromised_instance(&ec2, &iam).await;
        let proxy = FaultProxy::start(&irr_tests::endpoint(), spec)
            .await
            .unwrap();
        let case = unique("IR-nossm");
        let started = std::time::Instant::now();
        let (out, _state) = run_ec2(
            proxy.url(),
            &inc,
            &case,
            &format!("s3://{bucket}/cases"),
            &[],
        )
        .await;
        assert!(out.status.success(), "{}", output_text(&out));
        assert_contained(&out, &inc, &case).await;
        let (_, manifest) = sealed(&c, &bucket, &out).await;
        let g = gaps(&manifest, what);
        assert_eq!(g.len(), 1, "{:#}", manifest["gaps"]);
        assert!(g[0]["error"].as_str().unwrap().contains(says), "{g:#?}");
        assert_eq!(g[0]["step"], "volatile");
        // Nothing was sent, nothing waited for the budget.
        assert_eq!(proxy.calls("ssm:SendCommand"), 0);
        assert!(started.elapsed() < std::time::Duration::from_secs(240));
        let ups = c
            .list_multipart_uploads()
            .bucket(&bucket)
            .send()
            .await
            .unwrap();
        assert!(ups.uploads().is_empty(), "{ups:?}");
    }
    // Local evidence: no presigned target, a gap that says so.
    let inc = compromised_instance(&ec2, &iam).await;
    let evidence = tempfile::tempdir().unwrap();
    let case = unique("IR-local");
    let (out, _state) = run_ec2(
        &irr_tests::endpoint(),
        &inc,
        &case,
        evidence.path().to_str().unwrap(),
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", output_text(&out));
    assert_contained(&out, &inc, &case).await;
    let loc = summary(&out)["evidence"]["location"]
        .as_str()
        .unwrap()
        .to_owned();
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(Path::new(&loc).join("manifest.json")).unwrap())
            .unwrap();
    let g = gaps(&manifest, "ssm:SendCommand");
    assert_eq!(g.len(), 1, "{:#}", manifest["gaps"]);
    assert!(
        g[0]["error"]
            .as_str()
            .unwrap()
            .contains("needs S3 evidence"),
        "{g:#?}"
    );
}

/// An agent that never finishes: after the budget irr cancels the command, aborts every
/// upload (nothing half-written is left), records the gap, and containment proceeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_capture_that_runs_out_of_time_is_cancelled_and_containment_proceeds() {
    let conf = irr_tests::sdk_config().await;
    let inc = compromised_instance(
        &aws_sdk_ec2::Client::new(&conf),
        &aws_sdk_iam::Client::new(&conf),
    )
    .await;
    let bucket = evidence_bucket().await;
    let work = tempfile::tempdir().unwrap();
    let proxy = FaultProxy::start(
        &irr_tests::endpoint(),
        ProxySpec {
            ssm_agent: Some(SsmAgent {
                online: vec![inc.instance_id.clone()],
                // Never written: the command stays InProgress.
                output_file: Some(work.path().join("never")),
            }),
            ..ProxySpec::default()
        },
    )
    .await
    .unwrap();
    let case = unique("IR-slow");
    let started = std::time::Instant::now();
    let (out, _state) = run_ec2(
        proxy.url(),
        &inc,
        &case,
        &format!("s3://{bucket}/cases"),
        &["capture_volatile_timeout=10s"],
    )
    .await;
    assert!(out.status.success(), "{}", output_text(&out));
    assert_contained(&out, &inc, &case).await;
    assert!(proxy.calls("ssm:CancelCommand") >= 1, "{:?}", proxy.stats());
    assert!(started.elapsed() >= std::time::Duration::from_secs(10));
    let c = s3().await;
    let (_, manifest) = sealed(&c, &bucket, &out).await;
    let g = gaps(&manifest, "ssm:GetCommandInvocation");
    assert_eq!(g.len(), 1, "{:#}", manifest["gaps"]);
    assert!(
        g[0]["error"].as_str().unwrap().contains("time budget"),
        "{g:#?}"
    );
    assert!(!gaps(&manifest, "ssm:memory-image").is_empty());
    let ups = c
        .list_multipart_uploads()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    assert!(ups.uploads().is_empty(), "uploads left: {ups:?}");
    assert!(manifest["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| !i["path"].as_str().unwrap().ends_with("memory.lime")));
}
