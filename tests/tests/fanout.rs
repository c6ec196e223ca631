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
use irr_tests::{fixture, irr_with, json_lines, output_text, PrivateEmulator};
use serde_json::Value;

const ROLE: &str = "irr-responder";
const REACHABLE: [&str; 2] = ["111111111111", "222222222222"];
const UNREACHABLE: &str = "333333333333";
const REGIONS: [&str; 2] = ["us-east-1", "us-west-2"];

/// Clients acting in `account` through the role, as the test's own view of that account.
async fn account_conf(endpoint: &str, account: &str) -> aws_config::SdkConfig {
    let caller = irr_tests::sdk_config_for(endpoint, ("testing", "testing")).await;
    let sts = aws_sdk_sts::Client::new(&caller);
    let creds = sts
        .assume_role()
        .role_arn(format!("arn:aws:iam::{account}:role/{ROLE}"))
        .role_session_name("irr-tests")
        .send()
        .await
        .unwrap()
        .credentials
        .unwrap();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sts::config::Credentials::new(
            creds.access_key_id(),
            creds.secret_access_key(),
            Some(creds.session_token().to_owned()),
            None,
            "irr-tests-assumed",
        ))
        .load()
        .await
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
