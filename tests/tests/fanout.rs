//! Fan-out across accounts and regions (issue 14): one `irr run` with `--targets` acts in
//! every account-region through the role assumed there, each as a child run with its own
//! journal and sealed bundle under the parent's; the parent lists the children's manifests,
//! `irr evidence verify` walks them, and a target whose role cannot be assumed is reported
//! without stopping the others.
//!
//! moto keeps each account's state apart when a role in that account is assumed (the
//! credentials it hands out belong to the role's account), and its `AssumeRole` succeeds for
//! any role: the unreachable target is made by the fault proxy denying that account's
//! `sts:AssumeRole`.

use std::path::Path;
use std::process::Output;

use irr_runner::proxy::{FaultKind, FaultProxy, ProxySpec, Rule};
use irr_tests::{
    compromised_instances, contained, fixture, irr_with, json_lines, output_text,
    CompromisedInstance, Contained, PrivateEmulator,
};
use serde_json::Value;

const ROLE: &str = "irr-responder";
const REACHABLE: [&str; 2] = ["111111111111", "222222222222"];
const UNREACHABLE: &str = "333333333333";
const REGIONS: [&str; 2] = ["us-east-1", "us-west-2"];

/// Clients acting in `account` through the role, as the test's own view of that account.
async fn account_conf(endpoint: &str, account: &str) -> aws_config::SdkConfig {
    account_conf_in(endpoint, account, "us-east-1").await
}

/// [`account_conf`] in `region`.
async fn account_conf_in(endpoint: &str, account: &str, region: &str) -> aws_config::SdkConfig {
    irr_tests::assumed_role_config(endpoint, account, ROLE, region).await
}

/// A user `web-deploy` in the account, with one access key.
async fn seed_user(endpoint: &str, account: &str) {
    let iam = aws_sdk_iam::Client::new(&account_conf(endpoint, account).await);
    iam.create_user()
        .user_name("web-deploy")
        .send()
        .await
        .unwrap();
    iam.create_access_key()
        .user_name("web-deploy")
        .send()
        .await
        .unwrap();
}

fn write_targets(dir: &Path) -> std::path::PathBuf {
    let file = dir.join("targets.yaml");
    let accounts: Vec<String> = REACHABLE
        .iter()
        .chain([&UNREACHABLE])
        .map(|a| format!("\"{a}\""))
        .collect();
    std::fs::write(
        &file,
        format!(
            "accounts: [{}]\nregions: [{}]\nrole: {ROLE}\nconcurrency: 2\n",
            accounts.join(", "),
            REGIONS.join(", ")
        ),
    )
    .unwrap();
    file
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

/// `irr run PB --targets TARGETS` through `url`, JSON output.
fn run_fanout(url: &str, state: &Path, evidence: &Path, targets: &Path, pb: &Path) -> Output {
    irr_with(
        &[
            "run",
            pb.to_str().unwrap(),
            "--case",
            "IR-FAN",
            "--yes",
            "--output",
            "json",
            "--evidence",
            evidence.to_str().unwrap(),
            "--targets",
            targets.to_str().unwrap(),
        ],
        state,
        url,
        ("testing", "testing"),
        &[],
    )
}

/// The child of `account`/`region`: its bundle under the parent's, naming its target, not
/// chained to the case; the user read through that account's role; its own journal.
fn assert_child(run_dir: &Path, state: &Path, run_id: &str, account: &str, region: &str) {
    let child_dir = run_dir.join("children").join(account).join(region);
    let m = read_json(&child_dir.join("manifest.json"));
    assert_eq!(m["target"]["account"], account);
    assert_eq!(m["target"]["region"], region);
    assert_eq!(m["run_id"], run_id);
    assert!(m["previous_manifest_sha256"].is_null(), "{m:#}");
    let user = m["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["path"] == "artifacts/principal/user.json")
        .unwrap_or_else(|| panic!("{m:#}"));
    let bytes = std::fs::read(child_dir.join(user["path"].as_str().unwrap())).unwrap();
    let body = String::from_utf8_lossy(&bytes);
    assert!(
        body.contains(&format!("arn:aws:iam::{account}:user/web-deploy")),
        "{body}"
    );
    let journal = state
        .join("runs")
        .join(run_id)
        .join("children")
        .join(account)
        .join(region)
        .join("journal.jsonl");
    assert!(journal.is_file(), "{}", journal.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_account_region_is_a_child_run_and_an_unreachable_one_stops_no_other() {
    let emu = PrivateEmulator::start(&[]);
    let endpoint = emu.endpoint();
    for a in REACHABLE {
        seed_user(&endpoint, a).await;
    }
    let spec = ProxySpec {
        rules: vec![Rule {
            action: "sts:AssumeRole".into(),
            fault: FaultKind::Deny,
            nth: None,
            times: None,
            latency_ms: None,
            contains: Some(format!("arn:aws:iam::{UNREACHABLE}:role/{ROLE}")),
        }],
        ..ProxySpec::default()
    };
    let proxy = FaultProxy::start(&endpoint, spec).await.unwrap();
    let url = proxy.url().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let (state, evidence) = (dir.path().join("state"), dir.path().join("evidence"));
    let targets = write_targets(dir.path());
    let pb = fixture("fanout-capture.yaml");
    let out = tokio::task::block_in_place(|| run_fanout(&url, &state, &evidence, &targets, &pb));
    let text = output_text(&out);
    // One target could not be reached: the run ends failed (exit 1), the others done.
    assert_eq!(out.status.code(), Some(1), "{text}");
    let lines = json_lines(&out);
    let last = lines.last().expect("a summary");
    assert_eq!(last["event"], "run_finished", "{text}");
    assert_eq!(last["status"], "failed", "{text}");
    let run_id = last["run_id"].as_str().unwrap().to_owned();
    let steps = last["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 6, "{last:#}");
    for s in steps {
        let id = s["id"].as_str().unwrap();
        if id.starts_with(UNREACHABLE) {
            assert_eq!(s["status"], "failed", "{s:#}");
            let e = s["error"].as_str().unwrap();
            assert!(e.contains("AccessDenied") && e.contains(UNREACHABLE), "{e}");
        } else {
            assert_eq!(s["status"], "succeeded", "{s:#}");
        }
    }
    // Each child's events name their target.
    assert!(lines
        .iter()
        .any(|l| l["event"] == "step_finished" && l["target"] == "111111111111/us-west-2"));

    let run_dir = evidence.join("IR-FAN").join(&run_id);
    let parent = read_json(&run_dir.join("manifest.json"));
    let children = parent["children"].as_array().unwrap();
    assert_eq!(children.len(), 4, "{parent:#}");
    let gaps = parent["gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 2, "{parent:#}");
    assert!(gaps.iter().all(|g| g["step"]
        .as_str()
        .unwrap()
        .starts_with(&format!("targets/{UNREACHABLE}/"))));
    for a in REACHABLE {
        for r in REGIONS {
            assert_child(&run_dir, &state, &run_id, a, r);
        }
    }
    assert!(!run_dir.join("children").join(UNREACHABLE).exists());
    // `sha256sum -c` in the parent's folder checks the children's manifests too.
    let sums = std::process::Command::new("sha256sum")
        .arg("-c")
        .arg("SHA256SUMS")
        .current_dir(&run_dir)
        .output()
        .unwrap();
    assert!(sums.status.success(), "{}", output_text(&sums));
    assert!(String::from_utf8_lossy(&sums.stdout)
        .contains("children/111111111111/us-east-1/manifest.json: OK"));

    let verify = |args: &[&str]| {
        let mut a = vec!["evidence", "verify", run_dir.to_str().unwrap()];
        a.extend_from_slice(args);
        irr_with(&a, &state, &url, ("testing", "testing"), &[])
    };
    let ok = tokio::task::block_in_place(|| verify(&[]));
    let ok_text = output_text(&ok);
    assert_eq!(ok.status.code(), Some(0), "{ok_text}");
    assert!(ok_text.contains("children: 4 ok of 4"), "{ok_text}");

    // The report shows the whole case: one child report per reached target.
    let report = |state: &Path| {
        irr_with(
            &["report", &run_id, "--format", "json"],
            state,
            &url,
            ("testing", "testing"),
            &[],
        )
    };
    let rep = tokio::task::block_in_place(|| report(&state));
    let rep_json: Value = serde_json::from_slice(&rep.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", output_text(&rep));
    });
    let kids = rep_json["children"].as_array().unwrap();
    assert_eq!(kids.len(), 4, "{rep_json:#}");
    for k in kids {
        assert_eq!(k["run"]["status"], "succeeded", "{k:#}");
        assert_eq!(k["integrity_ok"], true, "{k:#}");
        assert!(REACHABLE.contains(&k["run"]["account_id"].as_str().unwrap()));
    }

    // A child's artifact altered: the parent no longer verifies, and says which child.
    let victim = run_dir.join("children/222222222222/us-west-2");
    let m = read_json(&victim.join("manifest.json"));
    let item = victim.join(m["items"][0]["path"].as_str().unwrap());
    let mut perms = std::fs::metadata(&item).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&item, perms).unwrap();
    std::fs::write(&item, b"{\"forged\": true}\n").unwrap();
    let bad = tokio::task::block_in_place(|| verify(&[]));
    let bad_text = output_text(&bad);
    assert_eq!(bad.status.code(), Some(3), "{bad_text}");
    assert!(
        bad_text.contains("MISMATCH  222222222222/us-west-2") && bad_text.contains("ALTERED"),
        "{bad_text}"
    );
    let bad_rep = tokio::task::block_in_place(|| report(&state));
    assert_eq!(bad_rep.status.code(), Some(3), "{}", output_text(&bad_rep));
}

#[test]
fn a_targets_file_with_mistakes_is_refused_with_their_places() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("targets.yaml");
    std::fs::write(&file, "accounts: [111111111111]\nregions: [Mars]\n").unwrap();
    let pb = fixture("fanout-capture.yaml");
    let out = irr_with(
        &[
            "run",
            pb.to_str().unwrap(),
            "--case",
            "IR-X",
            "--yes",
            "--targets",
            file.to_str().unwrap(),
        ],
        dir.path(),
        "http://127.0.0.1:9",
        ("testing", "testing"),
        &[],
    );
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    for want in [
        "targets.yaml:1:12",
        "is written as a number",
        "targets.yaml:2:11",
        "names no role",
    ] {
        assert!(text.contains(want), "{want} not in {text}");
    }
    assert!(!dir.path().join("runs").exists(), "nothing was started");
}

/// A fan-out killed mid-run (as a crash would stop it) is finished by `irr resume`: every
/// child that did not end resumes from its journal, the parent is sealed once all have, and
/// the whole bundle verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_fan_out_is_resumed_child_by_child() {
    let emu = PrivateEmulator::start(&[]);
    let endpoint = emu.endpoint();
    for a in REACHABLE {
        seed_user(&endpoint, a).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let (state, evidence) = (dir.path().join("state"), dir.path().join("evidence"));
    let targets = dir.path().join("targets.yaml");
    std::fs::write(
        &targets,
        format!(
            "accounts: [\"{}\", \"{}\"]\nregions: [{}]\nrole: {ROLE}\n",
            REACHABLE[0],
            REACHABLE[1],
            REGIONS.join(", ")
        ),
    )
    .unwrap();
    let pb = fixture("fanout-capture.yaml");
    let args = [
        "run",
        pb.to_str().unwrap(),
        "--case",
        "IR-FAN-R",
        "--yes",
        "--output",
        "json",
        "--evidence",
        evidence.to_str().unwrap(),
        "--targets",
        targets.to_str().unwrap(),
    ];
    // The first journal to reach its 5th entry (a child's, mid-capture) stops the process.
    let killed = tokio::task::block_in_place(|| {
        irr_with(
            &args,
            &state,
            &endpoint,
            ("testing", "testing"),
            &[("IRR_FAULT_KILL_AT_SEQ", "5")],
        )
    });
    assert_ne!(killed.status.code(), Some(0), "{}", output_text(&killed));
    let runs: Vec<_> = std::fs::read_dir(state.join("runs")).unwrap().collect();
    assert_eq!(runs.len(), 1);
    let run_id = runs[0]
        .as_ref()
        .unwrap()
        .file_name()
        .to_string_lossy()
        .into_owned();
    let run_dir = evidence.join("IR-FAN-R").join(&run_id);
    assert!(
        !run_dir.join("manifest.json").exists(),
        "the parent is not sealed yet"
    );

    let resumed = tokio::task::block_in_place(|| {
        irr_with(
            &["resume", &run_id, "--yes", "--output", "json"],
            &state,
            &endpoint,
            ("testing", "testing"),
            &[],
        )
    });
    let text = output_text(&resumed);
    assert_eq!(resumed.status.code(), Some(0), "{text}");
    let last = json_lines(&resumed).pop().unwrap();
    assert_eq!(last["status"], "succeeded", "{last:#}");
    let parent = read_json(&run_dir.join("manifest.json"));
    assert_eq!(
        parent["children"].as_array().unwrap().len(),
        4,
        "{parent:#}"
    );
    for a in REACHABLE {
        for r in REGIONS {
            assert_child(&run_dir, &state, &run_id, a, r);
        }
    }
    let ok = tokio::task::block_in_place(|| {
        irr_with(
            &["evidence", "verify", run_dir.to_str().unwrap()],
            &state,
            &endpoint,
            ("testing", "testing"),
            &[],
        )
    });
    let ok_text = output_text(&ok);
    assert_eq!(ok.status.code(), Some(0), "{ok_text}");
    assert!(ok_text.contains("children: 4 ok of 4"), "{ok_text}");
    // Resuming a sealed fan-out is refused, as for any sealed run.
    let again = tokio::task::block_in_place(|| {
        irr_with(
            &["resume", &run_id, "--yes"],
            &state,
            &endpoint,
            ("testing", "testing"),
            &[],
        )
    });
    assert!(
        output_text(&again).contains("already ended"),
        "{}",
        output_text(&again)
    );
}

/// One account-region's seeded incident: three instances, the first two tagged as the
/// incident's, the third a bystander.
struct Seeded {
    ec2: aws_sdk_ec2::Client,
    iam: aws_sdk_iam::Client,
    fleet: Vec<CompromisedInstance>,
}

async fn seed_incident(endpoint: &str, account: &str, region: &str, tag: &str) -> Seeded {
    let conf = account_conf_in(endpoint, account, region).await;
    let (ec2, iam) = (
        aws_sdk_ec2::Client::new(&conf),
        aws_sdk_iam::Client::new(&conf),
    );
    let fleet = compromised_instances(&ec2, &iam, 3).await;
    ec2.create_tags()
        .resources(&fleet[0].instance_id)
        .resources(&fleet[1].instance_id)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("incident")
                .value(tag)
                .build(),
        )
        .send()
        .await
        .unwrap();
    Seeded { ec2, iam, fleet }
}

/// The incident in 3 accounts x 2 regions, and a fourth account whose role is refused: one
/// run finds and contains every tagged instance, each account-region's state read back
/// through that account's own role; the bystanders and the refused account are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_contains_an_incident_in_three_accounts_and_two_regions() {
    const ACCOUNTS: [&str; 3] = ["111111111111", "222222222222", "444444444444"];
    let emu = PrivateEmulator::start(&[]);
    let endpoint = emu.endpoint();
    let mut seeded = Vec::new();
    for a in ACCOUNTS {
        for r in REGIONS {
            seeded.push((a, r, seed_incident(&endpoint, a, r, "IR-FAN-C").await));
        }
    }
    let refused = seed_incident(&endpoint, UNREACHABLE, "us-east-1", "IR-FAN-C").await;
    let spec = ProxySpec {
        rules: vec![Rule {
            action: "sts:AssumeRole".into(),
            fault: FaultKind::Deny,
            nth: None,
            times: None,
            latency_ms: None,
            contains: Some(format!("arn:aws:iam::{UNREACHABLE}:role/{ROLE}")),
        }],
        ..ProxySpec::default()
    };
    let proxy = FaultProxy::start(&endpoint, spec).await.unwrap();
    let url = proxy.url().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let (state, evidence) = (dir.path().join("state"), dir.path().join("evidence"));
    let targets = dir.path().join("targets.yaml");
    std::fs::write(
        &targets,
        format!(
            "accounts: [\"{}\", \"{}\", \"{UNREACHABLE}\", \"{}\"]\nregions: [{}]\nrole: {ROLE}\nconcurrency: 4\n",
            ACCOUNTS[0], ACCOUNTS[1], ACCOUNTS[2],
            REGIONS.join(", ")
        ),
    )
    .unwrap();
    let pb = fixture("fanout-containment.yaml");
    let out = tokio::task::block_in_place(|| {
        irr_with(
            &[
                "run",
                pb.to_str().unwrap(),
                "--case",
                "IR-FAN-C",
                "--yes",
                "--output",
                "json",
                "--evidence",
                evidence.to_str().unwrap(),
                "--targets",
                targets.to_str().unwrap(),
                "--input",
                "incident_tag=IR-FAN-C",
            ],
            &state,
            &url,
            ("testing", "testing"),
            &[],
        )
    });
    let text = output_text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the refused account fails the run: {text}"
    );
    let last = json_lines(&out).pop().expect("a summary");
    let steps = last["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 8, "{last:#}");
    let ok = steps.iter().filter(|s| s["status"] == "succeeded").count();
    assert_eq!(ok, 6, "every reachable account-region contained: {last:#}");
    for (a, r, s) in &seeded {
        for inc in &s.fleet[..2] {
            let c = contained(&s.ec2, &s.iam, inc, "IR-FAN-C").await;
            assert_eq!(c, Contained::expected(2), "{a}/{r} {}", inc.instance_id);
        }
        let bystander = contained(&s.ec2, &s.iam, &s.fleet[2], "IR-FAN-C").await;
        assert!(
            !bystander.isolated && !bystander.termination_protected,
            "{a}/{r}: {bystander:?}"
        );
    }
    for inc in &refused.fleet {
        let c = contained(&refused.ec2, &refused.iam, inc, "IR-FAN-C").await;
        assert!(!c.isolated && c.isolation_groups == 0, "{c:?}");
    }
    let run_id = last["run_id"].as_str().unwrap();
    let run_dir = evidence.join("IR-FAN-C").join(run_id);
    let verify = tokio::task::block_in_place(|| {
        irr_with(
            &["evidence", "verify", run_dir.to_str().unwrap()],
            &state,
            &url,
            ("testing", "testing"),
            &[],
        )
    });
    let v = output_text(&verify);
    assert_eq!(verify.status.code(), Some(0), "{v}");
    assert!(v.contains("children: 6 ok of 6"), "{v}");
}

/// S3 evidence in a fan-out stays the caller's: every child writes into the caller's bucket
/// with the caller's account as `ExpectedBucketOwner` (the proxy makes S3's owner check, which
/// moto does not), and the bundle verifies from S3 with its children.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_keeps_its_evidence_in_the_callers_bucket() {
    use irr_forensics::{EvidenceLocation, S3Settings, Store};
    let emu = PrivateEmulator::start(&[]);
    let endpoint = emu.endpoint();
    for a in REACHABLE {
        seed_user(&endpoint, a).await;
    }
    let caller = irr_tests::sdk_config_for(&endpoint, ("testing", "testing")).await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&caller)
            .force_path_style(true)
            .build(),
    );
    let bucket = irr_tests::unique("irr-fan-ev").to_lowercase();
    let loc = EvidenceLocation::parse(&format!("s3://{bucket}")).unwrap();
    let Store::S3(st) = Store::open(&loc, Some(s3.clone()), S3Settings::default()).unwrap() else {
        unreachable!()
    };
    st.ensure_bucket(true).await.expect("evidence bucket");
    let spec = ProxySpec {
        s3_bucket_owner: Some("123456789012".into()),
        ..ProxySpec::default()
    };
    let proxy = FaultProxy::start(&endpoint, spec).await.unwrap();
    let url = proxy.url().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let targets = dir.path().join("targets.yaml");
    std::fs::write(
        &targets,
        format!(
            "accounts: [\"{}\", \"{}\"]\nrole: {ROLE}\n",
            REACHABLE[0], REACHABLE[1]
        ),
    )
    .unwrap();
    let pb = fixture("fanout-capture.yaml");
    let location = format!("s3://{bucket}");
    let out = tokio::task::block_in_place(|| {
        run_fanout(&url, &state, Path::new(&location), &targets, &pb)
    });
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let run_id = json_lines(&out).pop().unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let keys: Vec<String> = s3
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    for a in REACHABLE {
        let child = format!("IR-FAN/{run_id}/children/{a}/us-east-1/manifest.json");
        assert!(keys.contains(&child), "{child} not in {keys:?}");
    }
    let on_bucket: Vec<_> = proxy
        .request_log()
        .into_iter()
        .filter(|r| r.action.starts_with("s3:") && r.target.contains(&bucket))
        .collect();
    assert!(on_bucket.len() > 10, "{on_bucket:?}");
    for r in &on_bucket {
        assert_eq!(
            r.header("x-amz-expected-bucket-owner"),
            Some("123456789012"),
            "{} {}",
            r.method,
            r.target
        );
    }
    let v = tokio::task::block_in_place(|| {
        irr_with(
            &["evidence", "verify", &format!("{location}/IR-FAN/{run_id}")],
            &state,
            &url,
            ("testing", "testing"),
            &[],
        )
    });
    let vt = output_text(&v);
    assert_eq!(v.status.code(), Some(0), "{vt}");
    assert!(vt.contains("children: 2 ok of 2"), "{vt}");
}

/// A GuardDuty finding about an instance in 222222222222/us-west-2 starts a playbook whose
/// targets are two accounts x two regions: the run narrows to that one target (a child run
/// through its role), contains the instance there, and keeps the finding as that child's
/// first item. A finding about an account the playbook does not name is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finding_narrows_a_fan_out_to_the_account_and_region_it_names() {
    let emu = PrivateEmulator::start(&[]);
    let endpoint = emu.endpoint();
    let s = seed_incident(&endpoint, "222222222222", "us-west-2", "none").await;
    let inc = &s.fleet[0];
    let template = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/findings/guardduty-ssh-bruteforce.json"),
    )
    .unwrap();
    let finding = |account: &str| {
        template
            .replace("i-99999999", &inc.instance_id)
            .replace(
                "\"AccountId\": \"123456789012\"",
                &format!("\"AccountId\": \"{account}\""),
            )
            .replace("\"Region\": \"us-east-1\"", "\"Region\": \"us-west-2\"")
    };
    let dir = tempfile::tempdir().unwrap();
    let (state, evidence) = (dir.path().join("state"), dir.path().join("evidence"));
    let file = dir.path().join("finding.json");
    let pb = fixture("fanout-finding.yaml");
    let run = |state: &Path| {
        irr_with(
            &[
                "run",
                pb.to_str().unwrap(),
                "--case",
                "IR-FIND",
                "--yes",
                "--output",
                "json",
                "--evidence",
                evidence.to_str().unwrap(),
                "--finding",
                file.to_str().unwrap(),
            ],
            state,
            &endpoint,
            ("testing", "testing"),
            &[],
        )
    };
    // An account the playbook does not name: refused before anything is done.
    std::fs::write(&file, finding("999999999999")).unwrap();
    let refused = tokio::task::block_in_place(|| run(&state));
    let rt = output_text(&refused);
    assert_eq!(refused.status.code(), Some(2), "{rt}");
    assert!(
        rt.contains("999999999999/us-west-2") && rt.contains("not among"),
        "{rt}"
    );
    assert!(!state.join("runs").exists(), "no run was started");

    std::fs::write(&file, finding("222222222222")).unwrap();
    let out = tokio::task::block_in_place(|| run(&state));
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let last = json_lines(&out).pop().unwrap();
    let steps = last["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{last:#}");
    assert_eq!(steps[0]["id"], "222222222222/us-west-2");
    let c = contained(&s.ec2, &s.iam, inc, "IR-FIND").await;
    assert_eq!(c, Contained::expected(2), "{}", inc.instance_id);
    let run_id = last["run_id"].as_str().unwrap();
    let child = evidence
        .join("IR-FIND")
        .join(run_id)
        .join("children/222222222222/us-west-2");
    let m = read_json(&child.join("manifest.json"));
    let item = m["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["path"] == "finding/finding.json")
        .unwrap_or_else(|| panic!("{m:#}"));
    assert_eq!(item["step"], "trigger");
    let kept = std::fs::read(child.join("finding/finding.json")).unwrap();
    assert_eq!(kept, std::fs::read(&file).unwrap(), "kept exactly as given");
}
