//! The translation on histories recorded from LocalStack (`runner/tests/fixtures/
//! step-functions/`), the checks of the ARN, the definition's comment, the input and the
//! keys, and the fetch of an evidence object whose bytes are not what S3 answered.

use base64::Engine as _;
use serde_json::{json, Value};

use super::*;
use crate::events::StepStatus;

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/step-functions/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The run a recorded execution is, as `prepare` builds it from AWS's answers.
fn run_of(f: &Value) -> Run {
    let ex = &f["execution"];
    let s = |k: &str| ex.get(k).and_then(Value::as_str).map(str::to_owned);
    let ts = |k: &str| {
        s(k).and_then(|t| irr_forensics::Timestamp::parse(&t))
            .map(|t| t.to_string())
    };
    let definition = f["definition"].as_str().unwrap().to_owned();
    let input = parse_input(s("input").as_deref()).unwrap();
    Run {
        execution: Execution {
            arn: s("executionArn").unwrap(),
            name: s("name").unwrap(),
            state_machine_arn: s("stateMachineArn").unwrap(),
            status: s("status").unwrap(),
            started_at: ts("startDate").unwrap(),
            stopped_at: ts("stopDate"),
            output: s("output"),
            error: s("error"),
            cause: s("cause"),
            definition: definition.clone(),
            role_arn: f["roleArn"].as_str().unwrap().to_owned(),
        },
        case_id: input.case_id,
        playbook: parse_comment(&definition).unwrap(),
        notes: vec!["a note".to_owned()],
    }
}

fn events_of(f: &Value) -> Vec<HistoryEvent> {
    history::from_json(f).unwrap()
}

/// What fetching each object would find: the bytes S3's checksum says.
fn fetched_as_recorded(t: &Translation) -> Vec<Option<Fetched>> {
    t.objects
        .iter()
        .map(|o| {
            let digest = base64::engine::general_purpose::STANDARD
                .decode(o.checksum_sha256.as_deref().unwrap())
                .unwrap();
            (!o.superseded).then(|| Fetched {
                sha256: hex::encode(digest),
                size: 91,
            })
        })
        .collect()
}

fn step<'a>(t: &'a Translation, id: &str) -> &'a crate::events::StepSummary {
    t.steps.iter().find(|s| s.id == id).unwrap()
}

#[test]
fn a_recorded_history_reads_as_steps_calls_and_evidence() {
    let f = fixture("execution-succeeded.json");
    let run = run_of(&f);
    assert_eq!(run.playbook.name, "fixture-playbook");
    assert_eq!(run.playbook.version, "1.2.0");
    assert_eq!(run.case_id, "IR-2026-0042");
    let t = translate(&run, &events_of(&f), &[]);

    // The execution succeeded, but a step failed (caught): the run failed, as a CLI run with
    // a failed step does.
    assert_eq!(run.execution.status, "SUCCEEDED");
    assert_eq!(t.status, RunStatus::Failed);
    let ids: Vec<&str> = t.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["probe", "isolate", "release"]);
    let probe = step(&t, "probe");
    assert_eq!(probe.status, StepStatus::Succeeded);
    assert_eq!(probe.attempts, 1);
    assert!(probe.outputs["instance_id"]
        .as_str()
        .unwrap()
        .starts_with("i-"));
    assert!(probe.started_at.as_deref().unwrap() < probe.finished_at.as_deref().unwrap());
    let isolate = step(&t, "isolate");
    assert_eq!(isolate.status, StepStatus::Failed);
    let err = isolate.error.as_deref().unwrap();
    assert!(
        err.starts_with("EC2.EC2Exception: The instance ID 'i-00000000deadbeef0' does not exist"),
        "{err}"
    );
    let release = step(&t, "release");
    assert_eq!((release.status, release.attempts), (StepStatus::Skipped, 0));
    assert_eq!(release.error.as_deref(), Some("when was false"));

    // The one evidence object, inside the run's folder, and where the bundle goes by default.
    assert_eq!(t.objects.len(), 1);
    let o = &t.objects[0];
    assert_eq!(o.bucket, "irr-evidence-fixture");
    assert_eq!(o.prefix, "cases");
    assert_eq!(
        o.key,
        "cases/IR-2026-0042/r-fixture-succeeded/artifacts/probe/before.json"
    );
    assert_eq!(
        (o.path.as_str(), o.step.as_str()),
        ("artifacts/probe/before.json", "probe")
    );
    assert_eq!(
        o.checksum_sha256.as_deref(),
        Some("ESwiGQoQB04YZ3sjojGXagvtvMiS7HlZP6nm4h1LXBs=")
    );
    assert_eq!(
        o.version_id.as_deref(),
        Some("AaI_SJh9xAtTWutsZKYMSBkwtxfSLD3_")
    );
    assert_eq!(
        t.default_location().as_deref(),
        Some("s3://irr-evidence-fixture/cases")
    );
}

#[test]
fn the_journal_events_keep_aws_times_and_pair_every_call() {
    let f = fixture("execution-succeeded.json");
    let run = run_of(&f);
    let history = events_of(&f);
    let t = translate(&run, &history, &[]);
    let evs = events(&run, &t, &fetched_as_recorded(&t));
    let names: Vec<String> = evs
        .iter()
        .map(|(_, e)| {
            serde_json::to_value(e).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(names[0], "run_started");
    assert_eq!(names[1], "note");
    // The first event at the history's first time, in the journal's form.
    assert_eq!(
        evs[0].0,
        irr_forensics::Timestamp::parse(f["events"][0]["timestamp"].as_str().unwrap())
            .unwrap()
            .to_string()
    );
    assert!(evs[0].0.ends_with('Z'));
    let RunEvent::RunStarted {
        playbook,
        playbook_sha256,
        aws_principal,
        run_id,
        case_id,
        ..
    } = &evs[0].1
    else {
        panic!("{:?}", evs[0]);
    };
    assert_eq!(
        (playbook.as_str(), run_id.as_str(), case_id.as_str()),
        ("fixture-playbook", "r-fixture-succeeded", "IR-2026-0042")
    );
    assert_eq!(playbook_sha256.len(), 64);
    assert_eq!(
        aws_principal.as_deref(),
        Some("arn:aws:iam::000000000000:role/irr-sfn")
    );
    // Times never go back.
    assert!(evs.windows(2).all(|w| w[0].0 <= w[1].0), "{evs:#?}");

    let calls: Vec<(u64, &str, &str, &str)> = evs
        .iter()
        .filter_map(|(_, e)| match e {
            RunEvent::CallStarted {
                call,
                step,
                service,
                operation,
                ..
            } => Some((*call, step.as_str(), service.as_str(), operation.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        calls,
        [
            (1, "probe", "ec2", "DescribeInstances"),
            (2, "probe", "s3", "PutObject"),
            (3, "isolate", "ec2", "ModifyInstanceAttribute"),
            (4, "isolate", "ec2", "CreateTags"),
        ]
    );
    let finished: Vec<(u64, &crate::actions::CallOutcome)> = evs
        .iter()
        .filter_map(|(_, e)| match e {
            RunEvent::CallFinished { call, outcome } => Some((*call, outcome)),
            _ => None,
        })
        .collect();
    assert_eq!(
        finished.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    let failed = finished[2].1;
    assert!(!failed.ok);
    assert_eq!(failed.error_code.as_deref(), Some("EC2.EC2Exception"));
    assert_eq!(
        failed.request_id.as_deref(),
        Some("bd139faa-f3b6-46f9-990e-7b9734c17170")
    );
    assert!(
        finished[3].1.ok,
        "CreateTags ended after its branch's sibling failed: still paired"
    );
    // The object's bytes are not journaled as a call parameter.
    let put = evs
        .iter()
        .find_map(|(_, e)| match e {
            RunEvent::CallStarted {
                operation, params, ..
            } if operation == "PutObject" => Some(params.clone()),
            _ => None,
        })
        .unwrap();
    assert!(
        put["Body"]
            .as_str()
            .unwrap()
            .contains("bytes: the object written"),
        "{put}"
    );
    assert_eq!(
        put["Key"],
        "cases/IR-2026-0042/r-fixture-succeeded/artifacts/probe/before.json"
    );
    // The capture, after its call ended.
    let captured = evs
        .iter()
        .position(|(_, e)| matches!(e, RunEvent::EvidenceCaptured { path, step, .. } if path == "artifacts/probe/before.json" && step == "probe"))
        .unwrap();
    assert_eq!(names[captured - 1], "call_finished");
}

#[test]
fn the_translation_reads_back_through_the_journal_as_a_cli_run_does() {
    let f = fixture("execution-succeeded.json");
    let run = run_of(&f);
    let t = translate(&run, &events_of(&f), &[]);
    let evs = events(&run, &t, &fetched_as_recorded(&t));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    let j = Journal::open(&path).unwrap();
    for (ts, e) in &evs {
        j.append_at(e, ts).unwrap();
    }
    let entries = journal::read(&path).unwrap();
    assert_eq!(entries.len(), evs.len());
    assert!(
        entries.iter().all(|e| e.event.is_some()),
        "every line is a known event"
    );
    assert_eq!(entries[0].ts, evs[0].0);
    let state = journal::replay(&entries);
    let results = state.step_results();
    assert_eq!(results["probe"].status, StepStatus::Succeeded);
    assert_eq!(results["isolate"].status, StepStatus::Failed);
    assert_eq!(results["release"].status, StepStatus::Skipped);
    let arts = state.artifacts();
    assert_eq!(arts.len(), 1);
    assert_eq!(arts[0].path, "artifacts/probe/before.json");
    assert_eq!(state.in_flight().count(), 0, "every call has its end");
    // The same history translates to the same bytes (an interrupted seal is continued only
    // when its journal begins with them).
    let again = dir.path().join("again.jsonl");
    let j = Journal::open(&again).unwrap();
    for (ts, e) in &events(
        &run,
        &translate(&run, &events_of(&f), &[]),
        &fetched_as_recorded(&t),
    ) {
        j.append_at(e, ts).unwrap();
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        std::fs::read(&again).unwrap()
    );
}

#[test]
fn a_failed_execution_fails_the_step_it_stopped_in_and_skips_the_rest() {
    let f = fixture("execution-failed.json");
    let run = run_of(&f);
    assert_eq!(run.execution.status, "FAILED");
    let t = translate(&run, &events_of(&f), &[]);
    assert_eq!(t.status, RunStatus::Failed);
    assert_eq!(step(&t, "probe").status, StepStatus::Succeeded);
    let isolate = step(&t, "isolate");
    assert_eq!((isolate.status, isolate.attempts), (StepStatus::Failed, 1));
    let err = isolate.error.as_deref().unwrap();
    assert!(
        err.starts_with("the execution ended (FAILED: EC2.EC2Exception: The instance ID"),
        "{err}"
    );
    let release = step(&t, "release");
    assert_eq!((release.status, release.attempts), (StepStatus::Skipped, 0));
    assert!(
        release
            .error
            .as_deref()
            .unwrap()
            .starts_with("not reached: the execution ended (FAILED"),
        "{release:?}"
    );
    // An aborted execution is an aborted run.
    let mut aborted = run.clone();
    aborted.execution.status = "ABORTED".into();
    assert_eq!(
        translate(&aborted, &events_of(&f), &[]).status,
        RunStatus::Aborted
    );
}

/// The succeeded fixture with its putObject's key (in the scheduled parameters) replaced.
fn with_key(key: &str) -> Value {
    let mut f = fixture("execution-succeeded.json");
    for e in f["events"].as_array_mut().unwrap() {
        if e["type"] == "TaskScheduled" && e["taskScheduledEventDetails"]["resource"] == "putObject"
        {
            let d = &mut e["taskScheduledEventDetails"];
            let mut p: Value = serde_json::from_str(d["parameters"].as_str().unwrap()).unwrap();
            p["Key"] = json!(key);
            d["parameters"] = json!(p.to_string());
        }
    }
    f
}

#[test]
fn a_key_outside_the_runs_folder_is_never_followed() {
    for key in [
        "cases/IR-2026-0042/r-fixture-succeeded/artifacts/../../../IR-1/r-1/manifest.json",
        "cases/IR-OTHER/r-fixture-succeeded/artifacts/probe/before.json",
        "cases/IR-2026-0042/r-other/artifacts/probe/before.json",
        "cases/IR-2026-0042/r-fixture-succeeded/manifest.json",
        "cases/IR-2026-0042/r-fixture-succeeded/artifacts/before.json",
        "cases/IR-2026-0042/r-fixture-succeeded/artifacts/probe/.hidden",
        "cases/IR-2026-0042/r-fixture-succeeded/artifacts/probe//x",
        "/IR-2026-0042/r-fixture-succeeded/artifacts/probe/x",
        "a/../IR-2026-0042/r-fixture-succeeded/artifacts/probe/x",
    ] {
        let f = with_key(key);
        let run = run_of(&f);
        let t = translate(&run, &events_of(&f), &[]);
        assert!(t.objects.is_empty(), "{key}: {:?}", t.objects);
        let gap = t
            .facts
            .iter()
            .find_map(|(_, fact)| match fact {
                Fact::Gap(g) => Some(g.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{key}: no gap"));
        assert_eq!(gap.what, format!("s3://irr-evidence-fixture/{key}"));
        assert!(gap.error.starts_with("not followed: "), "{gap:?}");
        assert_eq!(gap.step, "probe");
    }
    // No prefix at all is a location of its own (the bucket's root).
    let f = with_key("IR-2026-0042/r-fixture-succeeded/artifacts/probe/before.json");
    let t = translate(&run_of(&f), &events_of(&f), &[]);
    assert_eq!(
        t.default_location().as_deref(),
        Some("s3://irr-evidence-fixture")
    );
    assert_eq!(t.objects[0].path, "artifacts/probe/before.json");
    // Deeper item paths of the format: a for_each item's, a later attempt's.
    assert_eq!(
        item_of_key("p/q/C/R/artifacts/s/attempt-2/x.json", "C", "R").unwrap(),
        (
            "p/q".to_owned(),
            "artifacts/s/attempt-2/x.json".to_owned(),
            "s".to_owned()
        )
    );
    assert!(item_of_key("p/C/R/artifacts/s/a/b/c/d", "C", "R").is_err());
}

#[test]
fn an_object_written_again_is_sealed_once_its_first_version_a_gap() {
    let mut f = fixture("execution-succeeded.json");
    // The store task ran a second time (events 11-15 again, new ids, chained the same way).
    let list = f["events"].as_array_mut().unwrap();
    let again: Vec<Value> = list
        .iter()
        .filter(|e| (11..=15).contains(&e["id"].as_i64().unwrap()))
        .map(|e| {
            let mut e = e.clone();
            e["id"] = json!(e["id"].as_i64().unwrap() + 100);
            e["previousEventId"] = json!(e["previousEventId"].as_i64().unwrap() + 100);
            if e["type"] == "TaskSucceeded" {
                let out = e["taskSucceededEventDetails"]["output"]
                    .as_str()
                    .unwrap()
                    .replace("AaI_SJh9xAtTWutsZKYMSBkwtxfSLD3_", "second-version");
                e["taskSucceededEventDetails"]["output"] = json!(out);
            }
            e
        })
        .collect();
    let at = list.iter().position(|e| e["id"] == 16).unwrap();
    for (i, e) in again.into_iter().enumerate() {
        list.insert(at + i, e);
    }
    let run = run_of(&f);
    let t = translate(&run, &events_of(&f), &[]);
    assert_eq!(t.objects.len(), 2);
    assert!(t.objects[0].superseded && !t.objects[1].superseded);
    let captured: Vec<usize> = t
        .facts
        .iter()
        .filter_map(|(_, x)| match x {
            Fact::Captured(i) => Some(*i),
            _ => None,
        })
        .collect();
    assert_eq!(captured, [1]);
    let gap = t
        .facts
        .iter()
        .find_map(|(_, x)| match x {
            Fact::Gap(g) => Some(g),
            _ => None,
        })
        .unwrap();
    assert!(
        gap.what
            .ends_with("?versionId=AaI_SJh9xAtTWutsZKYMSBkwtxfSLD3_"),
        "{gap:?}"
    );
    assert!(gap.error.contains("second-version"), "{gap:?}");
    let evs = events(&run, &t, &fetched_as_recorded(&t));
    assert_eq!(
        evs.iter()
            .filter(|(_, e)| matches!(e, RunEvent::EvidenceCaptured { .. }))
            .count(),
        1
    );
}

#[test]
fn map_run_children_add_their_calls_to_the_steps() {
    let f = fixture("execution-succeeded.json");
    let run = run_of(&f);
    let child = ChildHistory {
        arn: "arn:aws:states:us-east-1:000000000000:execution:sm/map:child-1".into(),
        events: history::from_json(&json!({"events": [
            {"timestamp": "2026-12-04T04:21:30.000Z", "type": "ExecutionStarted", "id": 1, "previousEventId": 0, "executionStartedEventDetails": {"input": "{}"}},
            {"timestamp": "2026-12-04T04:21:30.100Z", "type": "TaskStateEntered", "id": 2, "previousEventId": 1, "stateEnteredEventDetails": {"name": "probe: volumes", "input": "{}"}},
            {"timestamp": 1796358090.2, "type": "TaskScheduled", "id": 3, "previousEventId": 2, "taskScheduledEventDetails": {"resourceType": "aws-sdk:ec2", "resource": "createSnapshots", "region": "us-east-1", "parameters": "{\"InstanceSpecification\": {\"InstanceId\": \"i-1\"}}"}},
            {"timestamp": "2026-12-04T04:21:30.300Z", "type": "TaskStarted", "id": 4, "previousEventId": 3, "taskStartedEventDetails": {"resourceType": "aws-sdk:ec2", "resource": "createSnapshots"}},
            {"timestamp": "2026-12-04T04:21:30.400Z", "type": "TaskSucceeded", "id": 5, "previousEventId": 4, "taskSucceededEventDetails": {"resourceType": "aws-sdk:ec2", "resource": "createSnapshots", "output": "{\"Snapshots\": [{\"SnapshotId\": \"snap-0abc\", \"VolumeId\": \"vol-1\", \"State\": \"pending\"}, {\"SnapshotId\": \"snap-</script>\"}]}"}},
        ]}))
        .unwrap(),
    };
    let t = translate(&run, &events_of(&f), &[child]);
    let evs = events(&run, &t, &fetched_as_recorded(&t));
    let snapshot_call = evs.iter().find_map(|(ts, e)| match e {
        RunEvent::CallStarted {
            call,
            step,
            operation,
            ..
        } if operation == "CreateSnapshots" => Some((ts.clone(), *call, step.clone())),
        _ => None,
    });
    let (ts, call, step) = snapshot_call.unwrap();
    assert_eq!(step, "probe");
    assert_eq!(call, 5, "numbered after the execution's own four");
    assert_eq!(
        ts, "2026-12-04T04:21:30.200Z",
        "an epoch-seconds timestamp read as the wire sends it"
    );
    let resources: Vec<&crate::actions::AwsResource> = evs
        .iter()
        .filter_map(|(_, e)| match e {
            RunEvent::ResourceRecorded { resource, .. } => Some(resource),
            _ => None,
        })
        .collect();
    assert_eq!(
        resources.len(),
        1,
        "a hostile id is not recorded: {resources:?}"
    );
    assert_eq!(resources[0].id, "snap-0abc");
    assert_eq!(resources[0].details["volume_id"], "vol-1");
}

#[test]
fn only_irr_state_machines_are_sealed() {
    let hex = "ab".repeat(32);
    let def = |c: &str| json!({"Comment": c, "StartAt": "x", "States": {}}).to_string();
    let pb = parse_comment(&def(&format!(
        "irr playbook ec2-compromise 1.4.0 sha256:{hex}"
    )))
    .unwrap();
    assert_eq!(
        (pb.name.as_str(), pb.version.as_str(), pb.sha256.as_str()),
        ("ec2-compromise", "1.4.0", hex.as_str())
    );
    for bad in [
        "a state machine".to_owned(),
        format!("irr playbook ec2-compromise 1.4.0 {hex}"),
        format!("irr playbook ec2-compromise sha256:{hex}"),
        "irr playbook x 1 sha256:abc".to_owned(),
        format!("irr playbook x 1 sha256:{hex} extra"),
    ] {
        let e = parse_comment(&def(&bad)).unwrap_err();
        assert!(e.contains("not an irr state machine"), "{bad}: {e}");
    }
    let e = parse_comment(r#"{"StartAt": "x", "States": {}}"#).unwrap_err();
    assert!(e.contains("no Comment"), "{e}");
    assert_eq!(
        definition_steps(
            fixture("execution-succeeded.json")["definition"]
                .as_str()
                .unwrap()
        ),
        ["probe", "isolate", "release"]
    );
}

#[test]
fn execution_arns_inputs_and_names_are_checked() {
    let ok = parse_arn("arn:aws:states:eu-west-1:123456789012:execution:irr-ec2:r-1").unwrap();
    assert_eq!(
        (ok.region.as_str(), ok.account.as_str(), ok.name.as_str()),
        ("eu-west-1", "123456789012", "r-1")
    );
    let e = parse_arn("arn:aws:states:eu-west-1:123456789012:express:irr-ec2:r-1:x").unwrap_err();
    assert!(e.contains("express"), "{e}");
    for bad in [
        "arn:aws:states:eu-west-1:123456789012:stateMachine:irr-ec2",
        "arn:aws:states:eu-west-1:1234:execution:irr-ec2:r-1",
        "arn:aws:lambda:eu-west-1:123456789012:execution:irr-ec2:r-1",
        "r-1",
    ] {
        assert!(
            parse_arn(bad)
                .unwrap_err()
                .contains("is not an execution ARN"),
            "{bad}"
        );
    }
    for name in ["..", ".hidden", "a:b", "a/b"] {
        let e = parse_arn(&format!(
            "arn:aws:states:eu-west-1:123456789012:execution:m:{name}"
        ))
        .unwrap_err();
        assert!(
            e.contains("cannot be a run id") || e.contains("is not an execution ARN"),
            "{name}: {e}"
        );
    }

    let i = parse_input(Some(r#"{"case_id": "IR-1", "inputs": {"a": 1}, "target": {"account": "210987654321", "role_arn": "arn:aws:iam::210987654321:role/r"}}"#)).unwrap();
    assert_eq!(i.case_id, "IR-1");
    assert_eq!(i.inputs["a"], 1);
    assert_eq!(i.target_account.as_deref(), Some("210987654321"));
    assert_eq!(
        parse_input(Some(r#"{"case_id": "IR-1"}"#))
            .unwrap()
            .inputs
            .len(),
        0
    );
    for (bad, says) in [
        (None, "not JSON"),
        (Some("{}"), "no case_id"),
        (Some(r#"{"case_id": "../x"}"#), "case id"),
        (
            Some(r#"{"case_id": "IR-1", "inputs": []}"#),
            "not an object",
        ),
        (
            Some(r#"{"case_id": "IR-1", "target": {"account": "x"}}"#),
            "target.account",
        ),
    ] {
        let e = parse_input(bad).unwrap_err();
        assert!(e.contains(says), "{bad:?}: {e}");
    }
}

/// An S3 client whose one `GetObject` answers `body`, with `stored` as the object's
/// `ChecksumSHA256`.
fn s3_answering(body: &'static [u8], stored: Option<String>) -> aws_sdk_s3::Client {
    use aws_smithy_mocks::{mock, MockResponseInterceptor, RuleMode};
    let rule = mock!(aws_sdk_s3::Client::get_object).then_output(move || {
        aws_sdk_s3::operation::get_object::GetObjectOutput::builder()
            .body(aws_sdk_s3::primitives::ByteStream::from_static(body))
            .content_length(body.len() as i64)
            .version_id("v1")
            .set_checksum_sha256(stored.clone())
            .build()
    });
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "k", "s", None, None, "t",
        ))
        .http_client(aws_smithy_mocks::create_mock_http_client())
        .interceptor(
            MockResponseInterceptor::new()
                .rule_mode(RuleMode::MatchAny)
                .with_rule(&rule),
        )
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

fn object(checksum: &str) -> EvidenceObject {
    EvidenceObject {
        bucket: "b".into(),
        key: "p/IR-1/r-1/artifacts/s/a.json".into(),
        prefix: "p".into(),
        path: "artifacts/s/a.json".into(),
        step: "s".into(),
        version_id: Some("v1".into()),
        checksum_sha256: Some(checksum.into()),
        ts: "2026-01-01T00:00:00.000Z".into(),
        superseded: false,
    }
}

#[tokio::test]
async fn an_object_whose_bytes_are_not_what_s3_answered_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let written = b"{\"a\": 1}\n";
    let checksum = objects::checksum_of(&<sha2::Sha256 as sha2::Digest>::digest(written));
    // As written: fetched, hashed, staged.
    let s3 = s3_answering(b"{\"a\": 1}\n", Some(checksum.clone()));
    let dest = dir.path().join("ok/artifacts/s/a.json");
    let got = objects::fetch(&s3, None, &object(&checksum), &dest)
        .await
        .unwrap();
    assert_eq!(
        got.sha256,
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(written))
    );
    assert_eq!(got.size, written.len() as u64);
    assert_eq!(std::fs::read(&dest).unwrap(), written);
    // Other bytes than the execution wrote (the history's checksum): refused.
    let s3 = s3_answering(b"{\"a\": 2}\n", None);
    let dest = dir.path().join("bad/artifacts/s/a.json");
    let e = objects::fetch(&s3, None, &object(&checksum), &dest)
        .await
        .unwrap_err();
    assert!(matches!(e, objects::FetchError::Mismatch(_)), "{e}");
    assert!(
        e.to_string().contains("not what the execution wrote"),
        "{e}"
    );
    // The bytes as written, but S3 keeps another checksum with them: refused too.
    let s3 = s3_answering(b"{\"a\": 1}\n", Some("AAAA".into()));
    let dest = dir.path().join("other/artifacts/s/a.json");
    let e = objects::fetch(&s3, None, &object(&checksum), &dest)
        .await
        .unwrap_err();
    assert!(matches!(e, objects::FetchError::Mismatch(_)), "{e}");
    // No checksum recorded: the object cannot be tied to the execution.
    let mut unchecked = object(&checksum);
    unchecked.checksum_sha256 = None;
    let e = objects::fetch(&s3, None, &unchecked, &dir.path().join("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, objects::FetchError::Refused(_)) && e.to_string().contains("ChecksumSha256"),
        "{e}"
    );
}

#[tokio::test]
async fn a_mismatch_stops_the_seal_with_nothing_left_staged() {
    let f = fixture("execution-succeeded.json");
    let t = translate(&run_of(&f), &events_of(&f), &[]);
    let dir = tempfile::tempdir().unwrap();
    // The object as recorded, then (here) bytes that are not what the execution wrote.
    let s3 = s3_answering(b"{\"InstanceId\": \"i-forged\"}", None);
    let stop = fetch_all(&s3, None, &t, dir.path()).await.unwrap_err();
    assert_eq!(stop.exit, Exit::EvidenceMismatch, "{stop:?}");
    assert!(
        stop.message.contains("artifacts/probe/before.json"),
        "{stop:?}"
    );
    assert!(stop.message.contains("nothing was sealed"), "{stop:?}");
    assert!(
        !dir.path()
            .join("evidence/artifacts/probe/before.json")
            .exists(),
        "no staged copy left"
    );
}

#[test]
fn an_interrupted_seal_continues_only_the_same_journal() {
    let f = fixture("execution-succeeded.json");
    let run = run_of(&f);
    let t = translate(&run, &events_of(&f), &[]);
    let evs = events(&run, &t, &fetched_as_recorded(&t));
    let dir = tempfile::tempdir().unwrap();
    let record = RunRecord {
        run_id: run.execution.name.clone(),
        case_id: run.case_id.clone(),
        execution: Some(run.execution.arn.clone()),
        ..RunRecord::default()
    };
    write_run(dir.path(), &record, &evs).unwrap();
    let path = dir.path().join("journal.jsonl");
    let first = std::fs::read(&path).unwrap();
    // A seal that stopped after journaling its evidence_sealed: the same translation goes on.
    Journal::open(&path)
        .unwrap()
        .append(&RunEvent::Note {
            message: "sealing".into(),
        })
        .unwrap();
    write_run(dir.path(), &record, &evs).unwrap();
    assert!(std::fs::read(&path).unwrap().starts_with(&first));
    assert!(matches!(
        existing(dir.path(), &run.execution.arn),
        Ok(Existing::Unfinished)
    ));
    // Another translation (a history that changed, a journal edited) is refused.
    let e = write_run(dir.path(), &record, &evs[..evs.len() - 1]).map(|_| ());
    assert!(e.is_ok(), "a prefix of what is there is the same start");
    let mut other = evs.clone();
    other[1].1 = RunEvent::Note {
        message: "forged".into(),
    };
    let e = write_run(dir.path(), &record, &other).unwrap_err();
    assert!(
        e.message.contains("is not this execution's translation"),
        "{e:?}"
    );
    assert!(!dir.path().join("journal.jsonl.new").exists());
    // Another run's folder of that name is never taken over.
    let e = existing(
        dir.path(),
        "arn:aws:states:us-east-1:000000000000:execution:m:other",
    );
    assert!(matches!(&e, Err(s) if s.message.contains("holds another run")));
}
