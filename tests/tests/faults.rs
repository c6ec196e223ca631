//! Fault injection: the shared fault proxy (`irr_runner::proxy`) between `irr` and the
//! emulator answers about 10% of requests with throttling (EC2: 503 `RequestLimitExceeded`,
//! S3: 503 `SlowDown`, others: 400 `Throttling`), HTTP 500 `InternalError`, a dropped
//! connection (before the request reaches the emulator, or after it was processed, so the
//! answer is lost), or added latency. The containment playbook must still succeed with the
//! same final AWS state as an unfaulted run: isolated, one snapshot per volume, nothing
//! created twice.
//!
//! Faults are chosen by a seeded generator over the requests in arrival order; besides that,
//! the first request of each non-idempotent operation (`CreateSnapshots`, `CreateSecurityGroup`,
//! `CreateRole`, `DisassociateIamInstanceProfile`) is processed by the emulator and its answer
//! dropped: the client's retry must then reconcile with what was already done.

use irr_runner::proxy::{FaultKind, FaultProxy, ProxySpec, RandomFaults, Rule};
use irr_tests::{
    compromised_instance, contained, irr_with, json_lines, output_text, playbook, unique, Contained,
};

/// Operations whose answer is lost the first time they are seen.
const TARGETED: [&str; 4] = [
    "ec2:CreateSnapshots",
    "ec2:CreateSecurityGroup",
    "iam:CreateRole",
    "ec2:DisassociateIamInstanceProfile",
];

/// About one request in ten faulted at random, plus the first answer of each [`TARGETED`]
/// operation lost after the emulator did the work.
fn spec() -> ProxySpec {
    ProxySpec {
        rules: TARGETED
            .iter()
            .map(|a| Rule {
                action: (*a).to_owned(),
                fault: FaultKind::DropAfter,
                nth: None,
                times: None,
                latency_ms: None,
                contains: None,
            })
            .collect(),
        random: Some(RandomFaults {
            seed: 0x1bad_5eed,
            one_in: 10,
            kinds: None,
        }),
        ..ProxySpec::default()
    }
}

/// `irr run` of the shipped EC2 playbook on `instance_id` through `endpoint`, evidence into
/// `evidence`, with `extra` arguments after the playbook's inputs.
fn run_containment(
    endpoint: &str,
    instance_id: &str,
    case: &str,
    evidence: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    let state = tempfile::tempdir().unwrap();
    let pb = playbook("ec2-instance-compromise.yaml");
    let input = format!("instance_id={instance_id}");
    let mut args = vec![
        "run",
        pb.to_str().unwrap(),
        "--case",
        case,
        "--input",
        &input,
        "--yes",
        "--evidence",
        evidence.to_str().unwrap(),
        "--output",
        "json",
    ];
    args.extend(extra);
    tokio::task::block_in_place(|| {
        irr_with(&args, state.path(), endpoint, ("testing", "testing"), &[])
    })
}

/// The CloudFormation clean room is judged by its own tests (it is being built, and moto's
/// CloudFormation is synchronous and partial); this test is about the containment steps.
const NOT_JUDGED: &[&str] = &["clean-room"];

/// Every step but [`NOT_JUDGED`] succeeded.
fn contained_ok(out: &std::process::Output) -> Result<(), String> {
    let last = json_lines(out).pop().ok_or_else(|| output_text(out))?;
    let bad: Vec<String> = last["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| {
            s["status"] != "succeeded" && !NOT_JUDGED.contains(&s["id"].as_str().unwrap_or(""))
        })
        .map(|s| format!("{} {} {}", s["id"], s["status"], s["error"]))
        .collect();
    if bad.is_empty() && last["steps"].as_array().is_some_and(|s| s.len() >= 7) {
        Ok(())
    } else {
        Err(format!("{bad:#?}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn containment_survives_throttling_errors_drops_and_latency() {
    let conf = irr_tests::sdk_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let iam = aws_sdk_iam::Client::new(&conf);

    // The unfaulted reference.
    let plain = compromised_instance(&ec2, &iam).await;
    let plain_case = unique("IR-plain");
    let evidence = tempfile::tempdir().unwrap();
    let out = run_containment(
        &irr_tests::endpoint(),
        &plain.instance_id,
        &plain_case,
        evidence.path(),
        &[],
    );
    contained_ok(&out).unwrap_or_else(|e| panic!("the unfaulted run failed: {e}"));
    let reference = contained(&ec2, &iam, &plain, &plain_case).await;
    assert_eq!(reference, Contained::expected(plain.volumes.len()));

    // The same through the faulty proxy.
    let proxy = FaultProxy::start(&irr_tests::endpoint(), spec())
        .await
        .expect("proxy");
    let inc = compromised_instance(&ec2, &iam).await;
    let case = unique("IR-faults");
    let evidence = tempfile::tempdir().unwrap();
    let out = run_containment(proxy.url(), &inc.instance_id, &case, evidence.path(), &[]);
    let injected = proxy.injected();
    let log = injected
        .iter()
        .map(|i| format!("#{} {:?} {} ({})", i.request, i.fault, i.action, i.cause))
        .collect::<Vec<_>>()
        .join("\n");
    if let Err(e) = contained_ok(&out) {
        panic!("the run failed under faults:\n{log}\n{e}");
    }
    let faulted = contained(&ec2, &iam, &inc, &case).await;
    assert_eq!(faulted, reference, "faults injected:\n{log}");

    // Every kind of fault was injected, and every targeted operation lost an answer.
    for k in FaultKind::ALL {
        assert!(
            injected.iter().any(|i| i.fault == k && i.cause == "random"),
            "{k:?} never injected:\n{log}"
        );
    }
    for op in TARGETED {
        assert!(
            injected.iter().any(|i| i.action == op
                && i.fault == FaultKind::DropAfter
                && i.cause.starts_with("rule")),
            "{op} never lost an answer: {:?}",
            proxy.stats()
        );
    }
    eprintln!("{} requests, faults:\n{log}", proxy.requests());
}

/// Snapshots that stay `pending` (as AWS's do for minutes to hours; moto completes them at
/// once): the proxy says so in the answers to `CreateSnapshots` and the first
/// `DescribeSnapshots`. The shipped playbook isolates the instance while they are pending (the
/// snapshot step records them `pending`), then its `snapshots-completed` step waits for the
/// same snapshots (its wait loop polls until they are `completed`); none is made twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_does_not_wait_for_pending_snapshots() {
    let conf = irr_tests::sdk_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let iam = aws_sdk_iam::Client::new(&conf);
    let inc = compromised_instance(&ec2, &iam).await;
    let pending = |action: &str, times: u64| Rule {
        action: action.to_owned(),
        fault: FaultKind::SnapshotPending,
        nth: None,
        times: Some(times),
        latency_ms: None,
        contains: None,
    };
    let spec = ProxySpec {
        rules: vec![
            pending("ec2:CreateSnapshots", 1),
            pending("ec2:DescribeSnapshots", 4),
        ],
        ..ProxySpec::default()
    };
    let proxy = FaultProxy::start(&irr_tests::endpoint(), spec)
        .await
        .expect("proxy");
    let case = unique("IR-pending");
    let dir = tempfile::tempdir().unwrap();
    let evidence = dir.path().join("evidence");
    // The emulator needs a size for the clean room's restored volumes.
    let out = run_containment(
        proxy.url(),
        &inc.instance_id,
        &case,
        &evidence,
        &["--input", "clean_room_volume_size=8"],
    );
    contained_ok(&out).unwrap_or_else(|e| panic!("{e}\n{}", output_text(&out)));
    let events = json_lines(&out);
    let last = events.last().unwrap();
    let position = |event: &str, key: &str, id: &str| {
        events
            .iter()
            .position(|e| e["event"] == event && e[key] == id)
            .unwrap_or_else(|| panic!("no {event} of {id}: {}", output_text(&out)))
    };
    assert!(
        position("step_finished", "id", "isolate")
            < position("step_started", "step", "snapshots-completed"),
        "isolated before the snapshots completed"
    );
    let run_dir = evidence.join(&case).join(last["run_id"].as_str().unwrap());
    let states = |step: &str| -> Vec<String> {
        let path = run_dir.join("artifacts").join(step).join("snapshots.json");
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        v["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["state"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        states("snapshot"),
        vec!["pending"; inc.volumes.len()],
        "the snapshot step did not wait"
    );
    assert_eq!(
        states("snapshots-completed"),
        vec!["completed"; inc.volumes.len()],
        "the later step waited until they were completed"
    );
    let step = |id: &str| {
        last["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap()
            .clone()
    };
    let waited = step("snapshots-completed");
    let secs = |v: &serde_json::Value| {
        epoch_secs(v.as_str().unwrap_or_else(|| panic!("a time: {waited:#}")))
    };
    assert!(
        secs(&waited["finished_at"]) - secs(&waited["started_at"]) >= 1.9,
        "its wait loop polled again after 2 s: {waited:#}"
    );
    assert_eq!(
        step("snapshot")["outputs"]["snapshot_ids"],
        waited["outputs"]["snapshot_ids"]
    );
    assert_eq!(
        step("clean-room")["status"],
        "succeeded",
        "restored from the completed snapshots"
    );
    assert_eq!(
        contained(&ec2, &iam, &inc, &case).await,
        Contained::expected(inc.volumes.len()),
        "contained, one snapshot per volume"
    );
}

/// Seconds since the epoch of an RFC 3339 time (`2026-12-04T02:56:57.721Z`).
fn epoch_secs(t: &str) -> f64 {
    let parsed = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{t}: {e}"));
    parsed.unix_timestamp_nanos() as f64 / 1e9
}
