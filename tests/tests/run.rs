//! `irr run` and `irr resume` end to end, as a responder runs them, against the emulator:
//! the containment playbook's resulting AWS state, the sealed evidence, the journal, exit
//! codes, and crash safety (SIGKILL at step boundaries and in the middle of steps, then
//! `irr resume`: the same final state as an uninterrupted run, nothing created twice).

use std::path::Path;
use std::process::{Command, Output};

use irr_tests::{compromised_instance, contained, json_lines, playbook, Contained};
use serde_json::Value;

/// `irr ARGS` against the shared emulator; a run of the EC2 playbook gets the clean-room
/// volume size the emulator needs.
fn irr(args: &[&str], state: &Path, env: &[(&str, &str)]) -> Output {
    let mut all: Vec<&str> = args.to_vec();
    if args.first() == Some(&"run")
        && args
            .iter()
            .any(|a| a.ends_with("ec2-instance-compromise.yaml"))
    {
        all.extend(["--input", "clean_room_volume_size=8"]);
    }
    irr_tests::irr_with(
        &all,
        state,
        &irr_tests::endpoint(),
        ("testing", "testing"),
        env,
    )
}

/// `irr run` of the EC2 containment playbook with `--yes --output json`.
fn contain(input: &str, case: &str, state: &Path, env: &[(&str, &str)]) -> Output {
    let pb = playbook("ec2-instance-compromise.yaml");
    irr(
        &[
            "run",
            pb.to_str().unwrap(),
            "--case",
            case,
            "--input",
            input,
            "--yes",
            "--output",
            "json",
        ],
        state,
        env,
    )
}

fn expected(volumes: usize) -> Contained {
    Contained::expected(volumes)
}

async fn clients() -> (aws_sdk_ec2::Client, aws_sdk_iam::Client) {
    let conf = irr_tests::sdk_config().await;
    (
        aws_sdk_ec2::Client::new(&conf),
        aws_sdk_iam::Client::new(&conf),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_contains_the_instance_and_seals_verifiable_evidence() {
    let (ec2, iam) = clients().await;
    let inc = compromised_instance(&ec2, &iam).await;
    let state = tempfile::tempdir().unwrap();
    let case = irr_tests::unique("IR-run");
    let input = format!("instance_id={}", inc.instance_id);
    let out = contain(&input, &case, state.path(), &[]);
    assert!(
        out.status.success(),
        "irr run failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let events = json_lines(&out);
    let last = events.last().expect("events");
    assert_eq!(
        last["event"], "run_finished",
        "the summary is the last line"
    );
    assert_eq!(last["status"], "succeeded");
    // The shipped playbook's ten steps, the optional volatile capture among them.
    let steps = last["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 10, "{steps:?}");
    // Isolation does not wait for the snapshots to complete: the snapshots are waited for
    // after it, and they are the snapshot step's own (found by the case tag, none made twice).
    let step = |id: &str| steps.iter().find(|s| s["id"] == id).unwrap();
    let (taken, completed) = (step("snapshot"), step("snapshots-completed"));
    assert_eq!(
        taken["outputs"]["snapshot_ids"], completed["outputs"]["snapshot_ids"],
        "{steps:?}"
    );
    let started = |id: &str| {
        events
            .iter()
            .position(|e| e["event"] == "step_started" && e["step"] == id)
            .unwrap()
    };
    let isolate_finished = events
        .iter()
        .position(|e| e["event"] == "step_finished" && e["id"] == "isolate")
        .unwrap_or_else(|| panic!("isolate finished: {events:?}"));
    assert!(started("isolate") < started("snapshots-completed"));
    assert!(isolate_finished < started("snapshots-completed"));
    assert!(steps.iter().any(|s| s["id"] == "volatile"), "{steps:?}");
    assert!(events.iter().any(|e| e["event"] == "evidence_captured"));
    assert_eq!(
        contained(&ec2, &iam, &inc, &case).await,
        expected(inc.volumes.len())
    );
    // The open group is no longer on the instance, but it still exists (recorded for release).
    let still = ec2
        .describe_security_groups()
        .group_ids(&inc.open_group)
        .send()
        .await
        .unwrap();
    assert_eq!(still.security_groups().len(), 1);

    // Evidence: sealed, verifiable by irr and by coreutils.
    let location = last["evidence"]["location"].as_str().unwrap().to_owned();
    assert!(last["evidence"]["manifest_sha256"]
        .as_str()
        .is_some_and(|h| h.len() == 64));
    let verify = irr(&["evidence", "verify", &location], state.path(), &[]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let sums = Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(&location)
        .output()
        .unwrap();
    assert!(
        sums.status.success(),
        "{}",
        String::from_utf8_lossy(&sums.stdout)
    );
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(Path::new(&location).join("manifest.json")).unwrap())
            .unwrap();
    let paths: Vec<&str> = manifest["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"journal.jsonl"), "{paths:?}");
    assert!(
        paths.iter().any(|p| p.starts_with("artifacts/capture/")),
        "{paths:?}"
    );
    let snaps: Vec<&Value> = manifest["aws_resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["type"] == "ebs-snapshot")
        .collect();
    assert_eq!(snaps.len(), inc.volumes.len(), "{manifest:#}");

    // The journal: a chain of entries, a call_started before every call_finished.
    let run_id = last["run_id"].as_str().unwrap();
    let journal =
        std::fs::read_to_string(state.path().join("runs").join(run_id).join("journal.jsonl"))
            .unwrap();
    let entries: Vec<Value> = journal
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let started = entries
        .iter()
        .filter(|e| e["event"] == "call_started")
        .count();
    let finished = entries
        .iter()
        .filter(|e| e["event"] == "call_finished")
        .count();
    assert!(started >= 8, "mutating calls journaled: {started}");
    assert_eq!(started, finished);
    assert!(
        !journal.contains("SecretAccessKey") && !journal.contains("\"testing\""),
        "no secrets in the journal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_exits_1_and_still_seals_its_evidence() {
    let state = tempfile::tempdir().unwrap();
    let case = irr_tests::unique("IR-fail");
    let out = irr(
        &[
            "run",
            playbook("ec2-instance-compromise.yaml").to_str().unwrap(),
            "--case",
            &case,
            "--input",
            "instance_id=i-0000000000000dead",
            "--yes",
            "--output",
            "json",
        ],
        state.path(),
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = json_lines(&out);
    let last = events.last().unwrap();
    assert_eq!(last["status"], "failed");
    let status_of = |id: &str| {
        last["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .map(|s| s["status"].as_str().unwrap().to_owned())
    };
    assert_eq!(status_of("capture").as_deref(), Some("failed"));
    assert_eq!(
        status_of("isolate").as_deref(),
        Some("skipped"),
        "nothing after a failed abort step runs"
    );
    assert_eq!(
        status_of("revoke-access").as_deref(),
        Some("succeeded"),
        "finally always runs"
    );
    let location = last["evidence"]["location"].as_str().unwrap();
    assert!(
        Path::new(location).join("SHA256SUMS").exists(),
        "a failed run is sealed too"
    );
    let verify = irr(&["evidence", "verify", location], state.path(), &[]);
    assert!(verify.status.success());
}

#[test]
fn without_yes_and_without_a_terminal_irr_refuses_and_changes_nothing() {
    let state = tempfile::tempdir().unwrap();
    let out = irr(
        &[
            "run",
            playbook("s3-bucket-exposure.yaml").to_str().unwrap(),
            "--case",
            "IR-no-tty",
            "--input",
            "bucket=some-bucket",
        ],
        state.path(),
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"));
    assert!(!state.path().join("runs").exists(), "no run was started");
}

#[test]
fn invalid_input_exits_2_before_touching_aws() {
    let state = tempfile::tempdir().unwrap();
    let out = irr(
        &[
            "run",
            playbook("ec2-instance-compromise.yaml").to_str().unwrap(),
            "--case",
            "IR-x",
            "--input",
            "instance_id=web-1",
            "--yes",
        ],
        state.path(),
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"web-1\" is not an instance id"), "{err}");
    assert!(!state.path().join("runs").exists());
}

/// Kills the runner with SIGKILL right after a chosen journal entry, resumes, and checks the
/// final state equals an uninterrupted run's, with no duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_any_point_then_resumed_ends_in_the_same_state() {
    let (ec2, iam) = clients().await;
    // A reference run tells where the boundaries are.
    let reference = compromised_instance(&ec2, &iam).await;
    let state = tempfile::tempdir().unwrap();
    let case = irr_tests::unique("IR-ref");
    let input = format!("instance_id={}", reference.instance_id);
    let out = contain(&input, &case, state.path(), &[]);
    assert!(out.status.success());
    let events = json_lines(&out);
    // Entry seq = line number in the journal = position in the event stream.
    let points: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            // Every step boundary, and the middle of every step: each mutating call journaled
            // as started but not yet made.
            matches!(
                e["event"].as_str(),
                Some("step_started" | "call_started" | "step_finished")
            )
        })
        .map(|(i, _)| i + 1)
        .collect();
    assert!(points.len() > 20, "{}", points.len());
    let chosen = points;
    for at in chosen {
        let inc = compromised_instance(&ec2, &iam).await;
        let case = irr_tests::unique("IR-crash");
        let input = format!("instance_id={}", inc.instance_id);
        let killed = contain(
            &input,
            &case,
            state.path(),
            &[("IRR_FAULT_KILL_AT_SEQ", &at.to_string())],
        );
        assert_eq!(
            killed.status.code(),
            None,
            "killed by a signal at entry {at}"
        );
        let run_id = json_lines(&killed)
            .first()
            .and_then(|e| e["run_id"].as_str().map(str::to_owned))
            .expect("run_started was printed");
        let resumed = irr(
            &["resume", &run_id, "--yes", "--output", "json"],
            state.path(),
            &[],
        );
        assert!(
            resumed.status.success(),
            "resume after a kill at entry {at} failed: {}\n{}",
            String::from_utf8_lossy(&resumed.stderr),
            String::from_utf8_lossy(&resumed.stdout)
        );
        let last = json_lines(&resumed).pop().unwrap();
        assert_eq!(last["status"], "succeeded", "after a kill at entry {at}");
        assert_eq!(
            contained(&ec2, &iam, &inc, &case).await,
            expected(inc.volumes.len()),
            "state after a kill at entry {at}"
        );
        // The journal tells the whole story: both starts, the resume, one chain.
        let journal = std::fs::read_to_string(
            state
                .path()
                .join("runs")
                .join(&run_id)
                .join("journal.jsonl"),
        )
        .unwrap();
        let starts: Vec<Value> = journal
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|e| e["event"] == "run_started")
            .collect();
        assert_eq!(starts.len(), 2);
        assert_eq!(starts[1]["resumed"], true);
        let verify = irr(
            &[
                "evidence",
                "verify",
                last["evidence"]["location"].as_str().unwrap(),
            ],
            state.path(),
            &[],
        );
        assert!(
            verify.status.success(),
            "evidence after a kill at entry {at}: {}",
            String::from_utf8_lossy(&verify.stdout)
        );
    }
}

/// Ctrl-C in the middle of a run: the step in flight finishes, no new step starts, finally
/// runs, the evidence is sealed, exit 4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_cleanly_runs_finally_and_seals() {
    let (ec2, iam) = clients().await;
    let state = tempfile::tempdir().unwrap();
    // Where does the snapshot step start? Ask a reference run.
    let reference = compromised_instance(&ec2, &iam).await;
    let input = format!("instance_id={}", reference.instance_id);
    let case = irr_tests::unique("IR-int-ref");
    let out = contain(&input, &case, state.path(), &[]);
    let at = json_lines(&out)
        .iter()
        .position(|e| e["event"] == "step_started" && e["step"] == "snapshot")
        .expect("the snapshot step started")
        + 1;

    let inc = compromised_instance(&ec2, &iam).await;
    let input = format!("instance_id={}", inc.instance_id);
    let case = irr_tests::unique("IR-int");
    let out = contain(
        &input,
        &case,
        state.path(),
        &[("IRR_FAULT_SIGINT_AT_SEQ", &at.to_string())],
    );
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = json_lines(&out);
    let last = events.last().unwrap();
    assert_eq!(last["event"], "run_finished");
    assert_eq!(last["status"], "aborted");
    let status_of = |id: &str| {
        last["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .map(|s| s["status"].as_str().unwrap().to_owned())
    };
    assert_eq!(
        status_of("snapshot").as_deref(),
        Some("succeeded"),
        "the step in flight finished"
    );
    assert_eq!(
        status_of("isolate").as_deref(),
        Some("skipped"),
        "no new step started"
    );
    assert_eq!(
        status_of("revoke-access").as_deref(),
        Some("succeeded"),
        "finally ran"
    );
    assert!(events.iter().any(|e| e["event"] == "note"
        && e["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("interrupted"))));
    let state_now = contained(&ec2, &iam, &inc, &case).await;
    assert!(!state_now.isolated, "isolation never started");
    assert_eq!(state_now.snapshots_per_volume, vec![1; inc.volumes.len()]);
    assert_eq!(state_now.responder_roles, 0);
    let verify = irr(
        &[
            "evidence",
            "verify",
            last["evidence"]["location"].as_str().unwrap(),
        ],
        state.path(),
        &[],
    );
    assert!(verify.status.success(), "an aborted run is sealed too");
}
