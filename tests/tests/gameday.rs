//! `irr gameday` for every shipped playbook: the drill seeds the incident, runs the playbook,
//! and every assertion of its scenario must pass on the real emulator state.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn irr_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/debug")
        .join("irr")
}

fn gameday(playbook: &str, extra: &[&str]) -> Output {
    let state = tempfile::tempdir().unwrap();
    let pb = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../playbooks")
        .join(playbook);
    Command::new(irr_bin())
        .arg("--state-dir")
        .arg(state.path())
        .args(["--output", "json", "gameday"])
        .arg(pb)
        .args(extra)
        .env("AWS_ENDPOINT_URL", irr_tests::endpoint())
        .env_remove("AWS_PROFILE")
        .output()
        .expect("run irr gameday")
}

fn scorecard(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| {
        panic!(
            "last line is not JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn drill_passes(playbook: &str, expected_checks: usize) {
    let out = gameday(playbook, &[]);
    let card = scorecard(&out);
    assert_eq!(card["event"], "gameday_finished", "{card:#}");
    let checks = card["checks"].as_array().unwrap();
    let failed: Vec<&Value> = checks.iter().filter(|c| c["passed"] != true).collect();
    assert!(failed.is_empty(), "failed checks: {failed:#?}");
    assert_eq!(checks.len(), expected_checks);
    assert_eq!(card["status"], "succeeded");
    assert!(
        card["time_to_contain_s"].as_f64().is_some_and(|t| t > 0.0),
        "{card:#}"
    );
    assert!(card["time_to_sealed_evidence_s"]
        .as_f64()
        .is_some_and(|t| t > 0.0));
    assert!(card["mutating_api_calls"].as_u64().is_some_and(|n| n > 0));
    assert!(
        card["evidence"]
            .as_str()
            .is_some_and(|e| e.starts_with("s3://")),
        "drills seal evidence in the emulator's S3"
    );
    assert!(out.status.success(), "exit {:?}", out.status.code());
}

/// Each drill seals into a bucket of its own, named for the account it runs in
/// (`irr-gameday-ACCOUNT-STAMP-RANDOM`): two drills never share one, and a bucket someone
/// made beforehand under a fixed name is never used.
#[test]
fn two_drills_get_two_buckets_named_for_the_account() {
    let bucket_of = |out: &Output| -> String {
        let card = scorecard(out);
        assert!(out.status.success(), "{card:#}");
        let ev = card["evidence"].as_str().unwrap().to_owned();
        ev.trim_start_matches("s3://")
            .split('/')
            .next()
            .unwrap()
            .to_owned()
    };
    let a = bucket_of(&gameday("s3-bucket-exposure.yaml", &[]));
    let b = bucket_of(&gameday("s3-bucket-exposure.yaml", &[]));
    assert_ne!(a, b);
    for bucket in [&a, &b] {
        // The emulator's account (moto: 123456789012), then the time and a random part.
        let rest = bucket
            .strip_prefix("irr-gameday-123456789012-")
            .unwrap_or_else(|| panic!("{bucket}"));
        let (stamp, random) = rest.split_once('-').unwrap();
        assert_eq!(stamp.len(), 14, "{bucket}");
        assert!(stamp.bytes().all(|c| c.is_ascii_digit()), "{bucket}");
        assert_eq!(random.len(), 8, "{bucket}");
        assert!(random
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert!(bucket.len() <= 63);
    }
}

#[test]
fn ec2_instance_compromise_drill_passes() {
    drill_passes("ec2-instance-compromise.yaml", 7);
}

#[test]
fn iam_credential_compromise_drill_passes() {
    drill_passes("iam-credential-compromise.yaml", 4);
}

#[test]
fn s3_bucket_exposure_drill_passes() {
    drill_passes("s3-bucket-exposure.yaml", 3);
}

#[test]
fn a_real_endpoint_is_refused_without_an_account_id() {
    let state = tempfile::tempdir().unwrap();
    let pb = Path::new(env!("CARGO_MANIFEST_DIR")).join("../playbooks/s3-bucket-exposure.yaml");
    let out = Command::new(irr_bin())
        .arg("--state-dir")
        .arg(state.path())
        .args(["gameday"])
        .arg(pb)
        .env("AWS_ENDPOINT_URL", "https://s3.us-east-1.amazonaws.com")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--account-id"), "{err}");
    assert!(!state.path().join("runs").exists(), "nothing ran");
}

#[test]
fn a_broken_scenario_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let sc = dir.path().join("bad.yaml");
    std::fs::write(&sc, "apiVersion: irr/v1\nkind: Scenario\nmetadata: {name: x}\nseed:\n  - id: a\n    type: volcano\nexpect: []\n").unwrap();
    let out = gameday(
        "s3-bucket-exposure.yaml",
        &["--scenario", sc.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("bad.yaml:5:") || stdout.contains("bad.yaml:6:"),
        "{stdout}"
    );
    assert!(stdout.contains("volcano"), "{stdout}");
}
