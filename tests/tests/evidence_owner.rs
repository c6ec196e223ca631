//! The evidence bucket's owner: every request irr makes on an S3 evidence bucket carries
//! `ExpectedBucketOwner` (`--evidence-owner`, else the caller's account), so a bucket of that
//! name in another account (a look-alike) is refused before anything is written to it.
//!
//! moto ignores `x-amz-expected-bucket-owner` (moto 5.2.1: no S3 handler reads it; pinned by
//! `moto_ignores_the_expected_bucket_owner`). So the proof is in two parts, both through the
//! project's fault proxy in front of moto: its request log shows the header, with the right
//! account, on every request to the evidence bucket; and its `s3_bucket_owner` check answers a
//! request naming another owner as S3 does (403 `AccessDenied`), which is how the refusal and
//! its message are tested.

use std::path::Path;
use std::process::Output;

use aws_sdk_s3::Client;
use irr_forensics::{
    Bundle, Collector, EvidenceLocation, ItemMeta, PlaybookRef, RunInfo, S3Settings, Sha256Digest,
    Source, Store, Timestamp,
};
use irr_runner::proxy::{FaultProxy, ProxySpec, SeenRequest};
use irr_tests::{json_lines, output_text, playbook, unique};

const OTHER_ACCOUNT: &str = "111111111111";

fn s3_of(conf: &aws_config::SdkConfig) -> Client {
    Client::from_conf(
        aws_sdk_s3::config::Builder::from(conf)
            .force_path_style(true)
            .build(),
    )
}

/// An S3 client straight to moto.
async fn s3() -> Client {
    s3_of(&irr_tests::sdk_config().await)
}

/// An S3 client through the proxy.
async fn s3_via(proxy: &FaultProxy) -> Client {
    s3_of(&irr_tests::sdk_config_for(proxy.url(), ("testing", "testing")).await)
}

/// The account of the tests' credentials, as STS says (moto: 123456789012).
async fn caller_account() -> String {
    let conf = irr_tests::sdk_config().await;
    aws_sdk_sts::Client::new(&conf)
        .get_caller_identity()
        .send()
        .await
        .unwrap()
        .account()
        .unwrap()
        .to_owned()
}

/// A bucket fit for evidence (versioning, Object Lock, encryption), made straight in moto.
async fn evidence_bucket() -> String {
    let bucket = unique("irr-ev-owner").to_lowercase();
    let loc = EvidenceLocation::parse(&format!("s3://{bucket}")).unwrap();
    let Store::S3(st) = Store::open(&loc, Some(s3().await), S3Settings::default()).unwrap() else {
        unreachable!()
    };
    st.ensure_bucket(true).await.expect("evidence bucket");
    bucket
}

/// A plain bucket for the s3-bucket-exposure playbook to close.
async fn exposed_bucket() -> String {
    let bucket = unique("irr-exposed").to_lowercase();
    s3().await
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    bucket
}

/// Every object version and delete marker in a bucket, straight from moto.
async fn everything_in(bucket: &str) -> Vec<String> {
    let out = s3()
        .await
        .list_object_versions()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    out.versions()
        .iter()
        .filter_map(|v| v.key().map(|k| format!("version {k}")))
        .chain(
            out.delete_markers()
                .iter()
                .filter_map(|d| d.key().map(|k| format!("delete marker {k}"))),
        )
        .collect()
}

/// Runs irr against `endpoint` (the proxy) on a blocking thread, so the proxy keeps serving.
async fn irr(args: Vec<String>, state: &Path, endpoint: &str) -> Output {
    irr_env(args, state, endpoint, &[]).await
}

/// [`irr`] with extra environment.
async fn irr_env(
    args: Vec<String>,
    state: &Path,
    endpoint: &str,
    env: &[(&'static str, &str)],
) -> Output {
    let (state, endpoint) = (state.to_owned(), endpoint.to_owned());
    let env: Vec<(&'static str, String)> = env.iter().map(|(k, v)| (*k, v.to_string())).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        irr_tests::irr_with(&args, &state, &endpoint, ("testing", "testing"), &env)
    })
    .await
    .unwrap()
}

fn run_args(case: &str, victim: &str, evidence: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "run",
        playbook("s3-bucket-exposure.yaml").to_str().unwrap(),
        "--case",
        case,
        "--input",
        &format!("bucket={victim}"),
        "--evidence",
        evidence,
        "--yes",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// The requests the proxy saw on `bucket`.
fn on_bucket(proxy: &FaultProxy, bucket: &str) -> Vec<SeenRequest> {
    on_bucket_after(proxy, bucket, 0)
}

/// The requests the proxy saw on `bucket` after its first `after` requests.
fn on_bucket_after(proxy: &FaultProxy, bucket: &str, after: u64) -> Vec<SeenRequest> {
    proxy
        .request_log()
        .into_iter()
        .filter(|r| r.request > after && r.s3_bucket().as_deref() == Some(bucket))
        .collect()
}

/// Asserts every request in `seen` (but CreateBucket, which has no such parameter) carried
/// `x-amz-expected-bucket-owner: owner`.
fn assert_all_carry(seen: &[SeenRequest], owner: &str) {
    assert!(!seen.is_empty(), "no request on the bucket was seen");
    let missing: Vec<String> = seen
        .iter()
        .filter(|r| r.action != "s3:CreateBucket")
        .filter(|r| r.header("x-amz-expected-bucket-owner") != Some(owner))
        .map(|r| {
            format!(
                "#{} {} {} {}: x-amz-expected-bucket-owner = {:?}",
                r.request,
                r.action,
                r.method,
                r.target,
                r.header("x-amz-expected-bucket-owner")
            )
        })
        .collect();
    assert!(
        missing.is_empty(),
        "requests on the evidence bucket without ExpectedBucketOwner {owner}:\n{}",
        missing.join("\n")
    );
}

fn actions(seen: &[SeenRequest]) -> std::collections::BTreeSet<String> {
    seen.iter().map(|r| r.action.clone()).collect()
}

fn assert_has(seen: &[SeenRequest], wanted: &[&str]) {
    let got = actions(seen);
    for w in wanted {
        assert!(got.contains(*w), "no {w} among {got:?}");
    }
}

/// The moto quirk the other tests work around: moto answers a request whose
/// `ExpectedBucketOwner` names another account as if it were not there. When this fails, moto
/// makes S3's check itself: the proxy's `s3_bucket_owner` and the note in
/// docs/emulator-notes.md can go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_ignores_the_expected_bucket_owner() {
    let bucket = evidence_bucket().await;
    let head = s3()
        .await
        .head_bucket()
        .bucket(&bucket)
        .expected_bucket_owner(OTHER_ACCOUNT)
        .send()
        .await;
    assert!(
        head.is_ok(),
        "moto now refuses a wrong ExpectedBucketOwner: {head:?}"
    );
    // Through the proxy's check, the same request gets S3's answer.
    let proxy = FaultProxy::start(
        &irr_tests::endpoint(),
        ProxySpec {
            s3_bucket_owner: Some(caller_account().await),
            ..ProxySpec::default()
        },
    )
    .await
    .unwrap();
    let c = s3_via(&proxy).await;
    let err = c
        .get_bucket_versioning()
        .bucket(&bucket)
        .expected_bucket_owner(OTHER_ACCOUNT)
        .send()
        .await
        .unwrap_err();
    let raw = err.raw_response().expect("an answer");
    assert_eq!(raw.status().as_u16(), 403);
    assert_eq!(
        aws_sdk_s3::error::ProvideErrorMetadata::code(&err),
        Some("AccessDenied")
    );
    // The right owner, or no header at all, goes through.
    if let Err(e) = c
        .get_bucket_versioning()
        .bucket(&bucket)
        .expected_bucket_owner(caller_account().await)
        .send()
        .await
    {
        // moto's versioning answer has a root the SDK cannot parse (a 200 all the same).
        assert_eq!(
            e.raw_response().map(|r| r.status().as_u16()),
            Some(200),
            "the owner's own request: {e:?}"
        );
    }
    c.head_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("a request without the header is not checked");
    assert_eq!(proxy.injected().len(), 1, "{:?}", proxy.injected());
}

/// `irr run`, `irr evidence verify` and `irr report` with S3 evidence: every request on the
/// evidence bucket names the caller's account (STS) as its owner, and they are many kinds of
/// request (the bucket checks, the writes, the reads, the listings).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_on_the_evidence_bucket_names_its_owner() {
    let account = caller_account().await;
    let bucket = evidence_bucket().await;
    let victim = exposed_bucket().await;
    let proxy = FaultProxy::start(&irr_tests::endpoint(), ProxySpec::default())
        .await
        .unwrap();
    let state = tempfile::tempdir().unwrap();
    let case = unique("IR-owner");
    let evidence = format!("s3://{bucket}/cases");
    let out = irr(
        run_args(&case, &victim, &evidence, &["--output", "json"]),
        state.path(),
        proxy.url(),
    )
    .await;
    assert!(out.status.success(), "{}", output_text(&out));
    let summary = json_lines(&out).pop().unwrap();
    let run_id = summary["run_id"].as_str().unwrap().to_owned();
    let location = summary["evidence"]["location"].as_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{evidence}/{case}/")),
        "{location}"
    );
    let run_seen = on_bucket(&proxy, &bucket);
    assert_has(
        &run_seen,
        &[
            "s3:HeadBucket",
            "s3:GetBucketVersioning",
            "s3:GetObjectLockConfiguration",
            "s3:GetBucketEncryption",
            "s3:PutObject",
        ],
    );
    assert_all_carry(&run_seen, &account);
    // The owner is in run.json, for resume and report.
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(state.path().join("runs").join(&run_id).join("run.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["evidence_owner"], account.as_str());

    let verify = irr(
        vec!["evidence".into(), "verify".into(), location.clone()],
        state.path(),
        proxy.url(),
    )
    .await;
    assert!(verify.status.success(), "{}", output_text(&verify));
    let report = irr(
        vec![
            "report".into(),
            run_id.clone(),
            "--format".into(),
            "json".into(),
        ],
        state.path(),
        proxy.url(),
    )
    .await;
    assert!(report.status.success(), "{}", output_text(&report));
    let r: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(r["evidence"]["status"], "verified", "{:#}", r["evidence"]);
    let all = on_bucket(&proxy, &bucket);
    assert!(
        all.len() > run_seen.len(),
        "verify and report read the bucket"
    );
    assert_has(&all, &["s3:ListObjectVersions", "s3:GetObject"]);
    assert_all_carry(&all, &account);
    // The victim bucket is not the evidence bucket: its requests are the playbook's own.
    assert!(!on_bucket(&proxy, &victim).is_empty());
}

/// The store itself, request by request: creating a bucket, a multipart upload, a small
/// object, reading, listing, a hidden (deleted) object, a copy and a verification. Every
/// request on the bucket but CreateBucket carries the owner given in the settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_the_store_makes_names_the_owner() {
    let owner = caller_account().await;
    let proxy = FaultProxy::start(&irr_tests::endpoint(), ProxySpec::default())
        .await
        .unwrap();
    let c = s3_via(&proxy).await;
    let bucket = unique("irr-ev-store-owner").to_lowercase();
    let loc = EvidenceLocation::parse(&format!("s3://{bucket}/evidence")).unwrap();
    let settings = S3Settings {
        retention_days: 1,
        expected_owner: Some(owner.clone()),
        ..S3Settings::default()
    };
    let store = Store::open(&loc, Some(c.clone()), settings).unwrap();
    let Store::S3(st) = &store else {
        unreachable!()
    };
    assert_eq!(st.expected_owner(), Some(owner.as_str()));
    st.ensure_bucket(true).await.expect("create the bucket");
    st.ensure_bucket(false).await.expect("check the bucket");
    let info = RunInfo {
        playbook: PlaybookRef {
            name: "p".into(),
            version: "1".into(),
            sha256: Sha256Digest::of(b"p").to_hex(),
        },
        collector: Collector::this_host("irr test", None),
        started_at: Timestamp::now(),
    };
    let b = Bundle::new(store.clone(), "case-o", "run-1", info).unwrap();
    // 11 MiB: a multipart upload of three parts.
    let big: Vec<u8> = (0..11 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    b.capture(
        "artifacts/s/big.bin",
        Source::from(big),
        ItemMeta::new("s", None),
    )
    .await
    .unwrap();
    b.capture_json("s", "small.json", &serde_json::json!({"a": 1}), None)
        .await
        .unwrap();
    b.seal().await.unwrap();
    assert!(store.exists("case-o/run-1/manifest.json").await.unwrap());
    assert!(store.list_children("case-o/").await.unwrap() == ["run-1"]);
    // An object hidden by a delete marker (made straight in moto), read back by the store.
    store
        .put("case-o/hidden.json", Source::from(b"{}".to_vec()))
        .await
        .unwrap();
    s3().await
        .delete_object()
        .bucket(&bucket)
        .key("evidence/case-o/hidden.json")
        .send()
        .await
        .unwrap();
    assert!(store
        .read_hidden("case-o/hidden.json", 1024)
        .await
        .unwrap()
        .is_some());
    let copy_dir = tempfile::tempdir().unwrap();
    let copy = irr_forensics::copy_run(&store, "case-o", "run-1", copy_dir.path())
        .await
        .unwrap();
    assert!(copy.report.is_ok(), "{}", copy.report);
    let r =
        irr_forensics::verify_with_owner(&loc.join("case-o").join("run-1"), Some(&c), Some(&owner))
            .await
            .unwrap();
    assert!(r.is_ok(), "{r}");
    let seen = on_bucket(&proxy, &bucket);
    assert_has(
        &seen,
        &[
            "s3:HeadBucket",
            "s3:CreateBucket",
            "s3:PutBucketVersioning",
            "s3:PutBucketEncryption",
            "s3:PutPublicAccessBlock",
            "s3:PutObjectLockConfiguration",
            "s3:GetBucketVersioning",
            "s3:GetObjectLockConfiguration",
            "s3:GetBucketEncryption",
            "s3:CreateMultipartUpload",
            "s3:UploadPart",
            "s3:CompleteMultipartUpload",
            "s3:HeadObject",
            "s3:PutObject",
            "s3:GetObject",
            "s3:ListObjectVersions",
        ],
    );
    assert_all_carry(&seen, &owner);
}

/// irr's refusal of a bucket another account owns: one line, naming the bucket, the account,
/// S3's answer and the flag, and saying that nothing was changed.
fn assert_one_line_refusal(out: &Output, bucket: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    let line = lines[0];
    eprintln!("irr said: {line}");
    for part in [
        format!("evidence bucket {bucket} is not owned by account {OTHER_ACCOUNT}"),
        "403 AccessDenied".to_owned(),
        "--evidence-owner".to_owned(),
        "nothing was changed".to_owned(),
    ] {
        assert!(line.contains(&part), "{part:?} missing from: {line}");
    }
    assert!(
        !line.contains("Error {") && !line.contains("DispatchFailure"),
        "{line}"
    );
}

/// Nothing written anywhere: not to the evidence bucket, not to the exposed bucket, no run.
async fn assert_nothing_written(bucket: &str, victim: &str, state: &Path) {
    // Nothing written anywhere.
    assert_eq!(everything_in(bucket).await, Vec::<String>::new());
    let pab = s3()
        .await
        .get_public_access_block()
        .bucket(victim)
        .send()
        .await;
    assert!(pab.is_err(), "the exposed bucket was not touched: {pab:?}");
    let runs = state.join("runs");
    assert!(
        !runs.exists() || std::fs::read_dir(&runs).unwrap().next().is_none(),
        "no run was started"
    );
}

/// Reading a sealed run back as if it were another account's: verify and report refuse,
/// exit 5 / unverifiable, with the same one line.
async fn reading_as_another_account_is_refused(
    location: &str,
    run_id: &str,
    state: &Path,
    proxy_url: &str,
) {
    // Reading it back as if it were another account's: verify and report refuse, exit 5 /
    // unverifiable, with the same one line.
    let verify = irr(
        vec![
            "evidence".into(),
            "verify".into(),
            location.to_owned(),
            "--evidence-owner".into(),
            OTHER_ACCOUNT.into(),
        ],
        state,
        proxy_url,
    )
    .await;
    assert_eq!(verify.status.code(), Some(5), "{}", output_text(&verify));
    let v = String::from_utf8_lossy(&verify.stderr);
    assert!(
        v.contains(&format!("is not owned by account {OTHER_ACCOUNT}"))
            && v.contains("--evidence-owner"),
        "{v}"
    );
    let report = irr(
        vec![
            "report".into(),
            run_id.to_owned(),
            "--format".into(),
            "json".into(),
            "--evidence-owner".into(),
            OTHER_ACCOUNT.into(),
        ],
        state,
        proxy_url,
    )
    .await;
    let r: serde_json::Value = serde_json::from_slice(&report.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", output_text(&report)));
    assert_eq!(
        r["evidence"]["status"], "unverifiable",
        "{:#}",
        r["evidence"]
    );
    assert!(
        r["evidence"]["verify_error"]
            .as_str()
            .is_some_and(|e| e.contains(&format!("is not owned by account {OTHER_ACCOUNT}"))),
        "{:#}",
        r["evidence"]
    );
}

/// `--evidence-owner` naming another account than the bucket's: S3 (here the proxy's check,
/// moto does not make it) refuses the first request, irr says so in one line and how to fix
/// it, exits 2, and nothing is written: not to the bucket, not to the exposed bucket, not even
/// a run folder. With the bucket's true owner the same run goes through the same check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_of_another_account_than_expected_is_refused_and_nothing_is_written() {
    let account = caller_account().await;
    assert_ne!(account, OTHER_ACCOUNT);
    let bucket = evidence_bucket().await;
    let victim = exposed_bucket().await;
    let proxy = FaultProxy::start(
        &irr_tests::endpoint(),
        ProxySpec {
            s3_bucket_owner: Some(account.clone()),
            ..ProxySpec::default()
        },
    )
    .await
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let evidence = format!("s3://{bucket}/cases");
    let out = irr(
        run_args(
            &unique("IR-lookalike"),
            &victim,
            &evidence,
            &["--evidence-owner", OTHER_ACCOUNT],
        ),
        state.path(),
        proxy.url(),
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert_one_line_refusal(&out, &bucket);
    assert_nothing_written(&bucket, &victim, state.path()).await;
    // The refusal came from the owner check, on irr's first request, which named the flag's
    // account.
    let seen = on_bucket(&proxy, &bucket);
    assert_eq!(
        actions(&seen).into_iter().collect::<Vec<_>>(),
        ["s3:HeadBucket"]
    );
    assert_all_carry(&seen, OTHER_ACCOUNT);
    assert_eq!(proxy.injected().len(), 1);
    assert_eq!(proxy.injected()[0].cause, "s3_bucket_owner");

    // A malformed owner is a usage error before anything is asked of AWS.
    let before = proxy.requests();
    let bad = irr(
        run_args(
            &unique("IR-bad"),
            &victim,
            &evidence,
            &["--evidence-owner", "12345"],
        ),
        state.path(),
        proxy.url(),
    )
    .await;
    assert_eq!(bad.status.code(), Some(2), "{}", output_text(&bad));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("--evidence-owner") && err.contains("12 digits"),
        "{err}"
    );
    assert_eq!(proxy.requests(), before, "no request for a malformed owner");

    // The true owner, named or by default: the same run, through the same check, is sealed.
    let case = unique("IR-owned");
    let ok = irr(
        run_args(
            &case,
            &victim,
            &evidence,
            &["--evidence-owner", &account, "--output", "json"],
        ),
        state.path(),
        proxy.url(),
    )
    .await;
    assert!(ok.status.success(), "{}", output_text(&ok));
    let summary = json_lines(&ok).pop().unwrap();
    let location = summary["evidence"]["location"].as_str().unwrap().to_owned();
    let run_id = summary["run_id"].as_str().unwrap().to_owned();
    let stored = everything_in(&bucket).await;
    assert!(
        stored
            .iter()
            .any(|k| k.ends_with(&format!("{case}/{run_id}/manifest.json"))),
        "{stored:?}"
    );
    reading_as_another_account_is_refused(&location, &run_id, state.path(), proxy.url()).await;
    // Without the flag, verify names the caller's account and passes the check.
    let verify = irr(
        vec!["evidence".into(), "verify".into(), location],
        state.path(),
        proxy.url(),
    )
    .await;
    assert!(verify.status.success(), "{}", output_text(&verify));
}

/// `irr resume` uses the owner the run recorded (checked when it started): a different
/// `--evidence-owner` is refused before anything is done, and the resumed run's requests on the
/// bucket, through S3's owner check, all name the recorded account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_run_keeps_the_owner_it_recorded() {
    let account = caller_account().await;
    let bucket = evidence_bucket().await;
    let victim = exposed_bucket().await;
    let proxy = FaultProxy::start(
        &irr_tests::endpoint(),
        ProxySpec {
            s3_bucket_owner: Some(account.clone()),
            ..ProxySpec::default()
        },
    )
    .await
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let case = unique("IR-resume-owner");
    let killed = irr_env(
        run_args(
            &case,
            &victim,
            &format!("s3://{bucket}/cases"),
            &["--output", "json"],
        ),
        state.path(),
        proxy.url(),
        &[("IRR_FAULT_KILL_AT_SEQ", "3")],
    )
    .await;
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
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(state.path().join("runs").join(&run_id).join("run.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["evidence_owner"], account.as_str());
    assert_eq!(
        everything_in(&bucket).await,
        Vec::<String>::new(),
        "not sealed yet"
    );

    let refused = irr(
        vec![
            "resume".into(),
            run_id.clone(),
            "--yes".into(),
            "--evidence-owner".into(),
            OTHER_ACCOUNT.into(),
        ],
        state.path(),
        proxy.url(),
    )
    .await;
    assert_eq!(refused.status.code(), Some(2), "{}", output_text(&refused));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains(&format!("a bucket of account {account}"))
            && err.contains(&format!("--evidence-owner says {OTHER_ACCOUNT}"))
            && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(everything_in(&bucket).await, Vec::<String>::new());

    let before = proxy.requests();
    let resumed = irr(
        vec![
            "resume".into(),
            run_id.clone(),
            "--yes".into(),
            "--output".into(),
            "json".into(),
        ],
        state.path(),
        proxy.url(),
    )
    .await;
    assert!(resumed.status.success(), "{}", output_text(&resumed));
    let seen = on_bucket_after(&proxy, &bucket, before);
    assert_has(&seen, &["s3:HeadBucket", "s3:PutObject"]);
    assert_all_carry(&seen, &account);
    assert!(proxy.injected().is_empty(), "{:?}", proxy.injected());
    let stored = everything_in(&bucket).await;
    assert!(
        stored
            .iter()
            .any(|k| k.ends_with(&format!("{case}/{run_id}/manifest.json"))),
        "{stored:?}"
    );
}

/// A release reads the case's earlier sealed runs from the evidence bucket (its record of
/// the isolation): those reads name the owner too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_case_record_read_by_a_release_names_the_owner() {
    let account = caller_account().await;
    let conf = irr_tests::sdk_config().await;
    let (ec2, iam) = (
        aws_sdk_ec2::Client::new(&conf),
        aws_sdk_iam::Client::new(&conf),
    );
    let inc = irr_tests::compromised_instance(&ec2, &iam).await;
    let bucket = evidence_bucket().await;
    let evidence = format!("s3://{bucket}/cases");
    let proxy = FaultProxy::start(
        &irr_tests::endpoint(),
        ProxySpec {
            s3_bucket_owner: Some(account.clone()),
            ..ProxySpec::default()
        },
    )
    .await
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let case = unique("IR-release-owner");
    let run = |pb: &str| {
        vec![
            "run".to_owned(),
            irr_tests::fixture(pb).to_str().unwrap().to_owned(),
            "--case".into(),
            case.clone(),
            "--input".into(),
            format!("instance_id={}", inc.instance_id),
            "--evidence".into(),
            evidence.clone(),
            "--yes".into(),
            "--output".into(),
            "json".into(),
        ]
    };
    let contain = irr(run("contain-core.yaml"), state.path(), proxy.url()).await;
    assert!(contain.status.success(), "{}", output_text(&contain));
    let contain_run = json_lines(&contain).pop().unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = proxy.requests();
    let release = irr(run("release.yaml"), state.path(), proxy.url()).await;
    assert!(release.status.success(), "{}", output_text(&release));
    let seen = on_bucket_after(&proxy, &bucket, before);
    // The release listed the case's runs and read the containment run's sealed manifest.
    assert!(
        seen.iter().any(|r| r.action == "s3:ListObjectVersions"
            && r.target.contains("delimiter=%2F")
            && r.target.contains(&case)),
        "{seen:#?}"
    );
    assert!(
        seen.iter().any(|r| r.action == "s3:GetObject"
            && r.target.contains(&format!("{contain_run}/manifest.json"))),
        "{seen:#?}"
    );
    assert_all_carry(&seen, &account);
    assert!(proxy.injected().is_empty(), "{:?}", proxy.injected());
}
