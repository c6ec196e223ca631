//! `irr report RUN_ID` end to end, against the emulator: a real run, then its report in every
//! format checked against the run's own journal and sealed manifest; tampered evidence; an
//! edited journal; a run killed mid-call, then resumed; evidence in S3; attacker-controlled
//! values escaped; and the HTML rendered in headless Chromium.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use irr_tests::{json_lines, output_text as text, playbook as shipped_playbook};
use serde_json::Value;

/// `irr ARGS` against the emulator, with the test credentials.
fn irr_output(args: &[&str], state: &Path) -> Output {
    irr_env(args, state, &[])
}

fn irr_env(args: &[&str], state: &Path, env: &[(&str, &str)]) -> Output {
    irr_tests::irr_with(
        args,
        state,
        &irr_tests::endpoint(),
        ("testing", "testing"),
        env,
    )
}

/// `irr report` must exist in the binary under test (a stale `target/debug/irr` from before
/// this command would make every test here fail for the wrong reason).
fn require_report_command() {
    let help = std::process::Command::new(irr_tests::irr_bin())
        .arg("--help")
        .output()
        .expect("run irr --help");
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("report"),
        "target/debug/irr has no `report` command: it is stale, run `cargo build -p irr-runner`"
    );
}

/// `irr report RUN --format F` (stdout).
fn report(state: &Path, run_id: &str, format: &str) -> Output {
    irr_output(&["report", run_id, "--format", format], state)
}

fn report_json(state: &Path, run_id: &str) -> (Option<i32>, Value) {
    let out = report(state, run_id, "json");
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("report is not JSON ({e}): {}", text(&out)));
    (out.status.code(), v)
}

fn journal(state: &Path, run_id: &str) -> Vec<Value> {
    std::fs::read_to_string(state.join("runs").join(run_id).join("journal.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn manifest(location: &str) -> Value {
    serde_json::from_slice(&std::fs::read(Path::new(location).join("manifest.json")).unwrap())
        .unwrap()
}

/// Runs a playbook with `--yes --output json`; returns the `run_finished` summary.
fn run_playbook(state: &Path, playbook: &Path, case: &str, inputs: &[String]) -> Value {
    let mut args = vec![
        "run".to_owned(),
        playbook.display().to_string(),
        "--case".to_owned(),
        case.to_owned(),
        "--yes".to_owned(),
        "--output".to_owned(),
        "json".to_owned(),
    ];
    for i in inputs {
        args.push("--input".to_owned());
        args.push(i.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = irr_output(&args, state);
    assert!(out.status.success(), "irr run failed: {}", text(&out));
    let last = json_lines(&out).pop().expect("events");
    assert_eq!(last["event"], "run_finished");
    last
}

/// The containment playbook as the tests need it: grant, capture, protect, snapshot, isolate,
/// tag, and revoke in `finally` (the shipped EC2 playbook without its clean room, whose
/// CloudFormation stack the report does not need and which is slow in the emulator).
const CONTAIN_INSTANCE: &str = r#"apiVersion: irr/v1
kind: Playbook
metadata:
  name: contain-instance
  version: 1.0.0
  description: Contain a suspected-compromised EC2 instance and preserve evidence
  owner: security@example.com
  labels: [ec2, containment]
inputs:
  instance_id:
    type: instance_id
    description: The suspected instance
  responders:
    type: list
    items: arn
    description: Principals who may assume the responder role (MFA required)
    default: []
  access_duration:
    type: duration
    description: How long the responder role can be assumed
    default: 4h
evidence:
  retention_days: 90
steps:
  - id: grant
    action: iam.grant_responder_access
    description: Time-bounded, MFA-guarded access for the responders
    with:
      principals: "{{inputs.responders}}"
      duration: "{{inputs.access_duration}}"
  - id: capture
    action: ec2.capture_instance_metadata
    description: Record the instance as it is before anything changes
    with:
      instance_id: "{{inputs.instance_id}}"
  - id: protect
    action: ec2.protect_instance
    description: Termination protection on, stop on shutdown, keep volumes
    needs: [capture]
    with:
      instance_id: "{{inputs.instance_id}}"
  - id: snapshot
    action: ec2.snapshot_volumes
    description: Snapshot every volume before the network changes
    needs: [protect]
    timeout: 2h
    retries: 2
    with:
      instance_id: "{{inputs.instance_id}}"
  - id: isolate
    action: ec2.isolate_instance
    description: Cut the instance off, tracked connections included
    needs: [snapshot]
    retries: 2
    with:
      instance_id: "{{inputs.instance_id}}"
  - id: tag
    action: ec2.tag_resources
    description: Mark the instance and its snapshots with the case
    on_failure: continue
    with:
      resource_ids: "{{steps.snapshot.outputs.snapshot_ids}}"
      tags:
        irr:case: "{{case.id}}"
        irr:state: contained
finally:
  - id: revoke-access
    action: iam.revoke_responder_access
    description: Responder access ends with the run
    with:
      role_name: "{{steps.grant.outputs.role_name}}"
"#;

async fn contained_instance_run(state: &Path) -> (String, Value) {
    let conf = irr_tests::sdk_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let iam = aws_sdk_iam::Client::new(&conf);
    let inc = irr_tests::compromised_instance(&ec2, &iam).await;
    let case = irr_tests::unique("IR-report");
    let pb = state.join("contain-instance.yaml");
    std::fs::write(&pb, CONTAIN_INSTANCE).unwrap();
    let summary = run_playbook(
        state,
        &pb,
        &case,
        &[format!("instance_id={}", inc.instance_id)],
    );
    (summary["run_id"].as_str().unwrap().to_owned(), summary)
}

async fn exposed_bucket() -> String {
    let conf = irr_tests::sdk_config().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    );
    let bucket = irr_tests::unique("exposed").to_lowercase();
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    bucket
}

fn strs<'a>(v: &'a Value, key: &str) -> Vec<&'a str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x[key].as_str().unwrap_or_default())
        .collect()
}

/// Asserts an HTML report is one self-contained file: nothing fetched, nothing run.
fn assert_self_contained(html: &str) {
    let lower = html.to_lowercase();
    for bad in [
        "src=\"http",
        "src='http",
        "href=\"http",
        "href='http",
        "url(http",
        "url(\"http",
        "url('http",
        "@import",
        "<script",
        "<link",
        "<iframe",
        "<object",
        "<embed",
    ] {
        assert!(!lower.contains(bad), "the HTML report contains {bad:?}");
    }
    assert!(lower.starts_with("<!doctype html>"));
    assert!(lower.contains("<style>"), "CSS is inline");
    assert!(
        lower.contains("default-src 'none'"),
        "a CSP forbids loading anything"
    );
}

/// Steps by id: (status, attempts).
type StepTable<'a> = BTreeMap<&'a str, (&'a str, u64)>;

/// Evidence items by path: (sha256, size, status).
type ItemTable<'a> = BTreeMap<&'a str, (&'a str, u64, &'a str)>;

/// The run: ids, playbook, principal, account, region and times as the journal and sealed
/// manifest have them.
fn assert_report_run(r: &Value, run_id: &str, summary: &Value, sealed: &Value, entries: &[Value]) {
    let run = &r["run"];
    assert_eq!(run["run_id"], run_id);
    assert_eq!(run["case_id"], summary["case_id"]);
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["playbook"]["name"], "contain-instance");
    assert_eq!(run["playbook"]["sha256"], sealed["playbook"]["sha256"]);
    assert_eq!(run["aws_principal"], sealed["collector"]["aws_principal"]);
    assert_eq!(run["account_id"], "123456789012");
    assert_eq!(run["region"], "us-east-1");
    assert_eq!(run["dry_run"], false);
    assert!(run["duration_ms"].as_i64().unwrap() >= 0);
    assert_eq!(run["started_at"], entries[0]["ts"]);
    assert_eq!(run["finished_at"], entries.last().unwrap()["ts"]);
}

/// The timeline: every journal entry, in order.
fn assert_report_timeline(r: &Value, entries: &[Value]) {
    let seqs: Vec<u64> = r["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["seq"].as_u64().unwrap())
        .collect();
    let journal_seqs: Vec<u64> = entries.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, journal_seqs);
    assert!(r["timeline"]
        .as_array()
        .unwrap()
        .windows(2)
        .all(|w| w[0]["offset_ms"].as_i64() <= w[1]["offset_ms"].as_i64()));
}

/// A list of steps by id, with status and attempts.
fn step_table(steps: &Value) -> StepTable<'_> {
    steps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap(),
                (
                    s["status"].as_str().unwrap(),
                    s["attempts"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

/// Steps: every step with the summary's status and attempts. Returns the report's steps.
fn assert_report_steps<'a>(r: &'a Value, summary: &Value) -> StepTable<'a> {
    let steps = step_table(&r["steps"]);
    let expected = step_table(&summary["steps"]);
    assert_eq!(steps, expected);
    assert_eq!(steps.len(), 7);
    steps
}

/// Calls: every call_started of the journal, with its call_finished's request id. Returns the
/// report's calls.
fn assert_report_calls<'a>(r: &'a Value, entries: &[Value]) -> &'a Vec<Value> {
    let finished: BTreeMap<u64, &Value> = entries
        .iter()
        .filter(|e| e["event"] == "call_finished")
        .map(|e| (e["call"].as_u64().unwrap(), e))
        .collect();
    let started: Vec<&Value> = entries
        .iter()
        .filter(|e| e["event"] == "call_started")
        .collect();
    let calls = r["calls"].as_array().unwrap();
    assert_eq!(calls.len(), started.len());
    assert!(calls.len() >= 8);
    for (c, s) in calls.iter().zip(&started) {
        assert_eq!(c["call"], s["call"]);
        assert_eq!(c["seq"], s["seq"]);
        assert_eq!(c["step"], s["step"]);
        assert_eq!(c["service"], s["service"]);
        assert_eq!(c["operation"], s["operation"]);
        assert_eq!(c["params"], s["params"]);
        let f = finished[&s["call"].as_u64().unwrap()];
        assert_eq!(c["status"], "ok", "{c:#}");
        assert_eq!(c["request_id"], f["request_id"]);
        assert!(c["request_id"].as_str().is_some_and(|r| !r.is_empty()));
        assert!(c["duration_ms"].as_i64().is_some());
    }
    calls
}

/// A list of evidence items by path, with hash, size and `status(item)`.
fn item_table<'a>(items: &'a Value, status: impl Fn(&'a Value) -> &'a str) -> ItemTable<'a> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["path"].as_str().unwrap(),
                (
                    i["sha256"].as_str().unwrap(),
                    i["size"].as_u64().unwrap(),
                    status(i),
                ),
            )
        })
        .collect()
}

/// Evidence: exactly the manifest's items, same hashes and sizes, each verified ok; the journal's
/// chain and sealed copy ok. Returns the sealed manifest's items.
fn assert_report_evidence<'a>(
    r: &Value,
    location: &str,
    summary: &Value,
    sealed: &'a Value,
) -> ItemTable<'a> {
    let ev = &r["evidence"];
    assert_eq!(ev["status"], "verified");
    assert_eq!(ev["location"], location);
    assert_eq!(
        ev["manifest_sha256"],
        summary["evidence"]["manifest_sha256"]
    );
    assert_eq!(ev["sha256sums"]["ok"], true);
    assert_eq!(ev["chain"]["ok"], true);
    let items = item_table(&ev["items"], |i| i["status"].as_str().unwrap());
    let want = item_table(&sealed["items"], |_| "ok");
    assert_eq!(items, want);
    assert_eq!(r["journal"]["chain_ok"], true);
    assert_eq!(r["journal"]["sealed_copy_ok"], true);
    want
}

/// Resources: the manifest's snapshots, all listed as sealed.
fn assert_report_resources(r: &Value, sealed: &Value) {
    let snaps: BTreeSet<&str> = r["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["type"] == "ebs-snapshot")
        .map(|x| {
            assert_eq!(x["sealed"], true);
            x["id"].as_str().unwrap()
        })
        .collect();
    let sealed_snaps: BTreeSet<&str> = sealed["aws_resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["type"] == "ebs-snapshot")
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(snaps, sealed_snaps);
    assert_eq!(snaps.len(), 2);
}

/// Markdown: the same facts, as tables.
fn assert_markdown_report(
    state: &Path,
    run_id: &str,
    steps: &StepTable<'_>,
    calls: &[Value],
    want: &ItemTable<'_>,
) {
    let out = report(state, run_id, "md");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let md = String::from_utf8(out.stdout).unwrap();
    assert!(md.contains("**Integrity: OK.**"), "{md}");
    for s in steps.keys() {
        assert!(
            md.contains(&format!("| {} |", s.replace('_', "\\_"))),
            "step {s}"
        );
    }
    for c in calls {
        let rid = c["request_id"].as_str().unwrap();
        assert!(md.contains(&format!("`{rid}`")), "request id {rid}");
        let op = format!(
            "{}:{}",
            c["service"].as_str().unwrap(),
            c["operation"].as_str().unwrap()
        );
        assert!(md.contains(&op), "{op}");
    }
    for (path, (sha, _, _)) in want {
        assert!(md.contains(&format!("`{sha}`")), "hash of {path}");
        assert!(md.contains(&format!("`{path}`")), "{path}");
    }
}

/// HTML, to a file: self-contained, with the same facts.
fn assert_html_report_file(
    state: &Path,
    run_id: &str,
    steps: &StepTable<'_>,
    calls: &[Value],
    want: &ItemTable<'_>,
) {
    let file = state.join("report.html");
    let out = irr_output(
        &[
            "report",
            run_id,
            "--format",
            "html",
            "--out",
            file.to_str().unwrap(),
        ],
        state,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(out.stdout.is_empty(), "--out writes nothing to stdout");
    let html = std::fs::read_to_string(&file).unwrap();
    assert_self_contained(&html);
    assert!(html.contains("Integrity verified"));
    assert!(html.contains("class=\"gantt\""), "a visual timeline");
    for c in calls {
        assert!(html.contains(c["request_id"].as_str().unwrap()));
    }
    for (sha, _, _) in want.values() {
        assert!(html.contains(sha));
    }
    for s in steps.keys() {
        assert!(html.contains(&format!("<b>{s}</b>")), "step {s}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_has_every_step_call_and_evidence_item_of_the_run() {
    require_report_command();
    let state = tempfile::tempdir().unwrap();
    let (run_id, summary) = contained_instance_run(state.path()).await;
    let location = summary["evidence"]["location"].as_str().unwrap().to_owned();
    let entries = journal(state.path(), &run_id);
    let sealed = manifest(&location);

    let (code, r) = report_json(state.path(), &run_id);
    assert_eq!(code, Some(0), "{r:#}");
    assert_eq!(r["format"], "irr-report/1");
    assert_eq!(r["integrity_ok"], true);
    assert_eq!(
        r["findings"].as_array().unwrap().len(),
        0,
        "{:#}",
        r["findings"]
    );

    assert_report_run(&r, &run_id, &summary, &sealed, &entries);
    assert_report_timeline(&r, &entries);
    let steps = assert_report_steps(&r, &summary);
    let calls = assert_report_calls(&r, &entries);
    let want = assert_report_evidence(&r, &location, &summary, &sealed);
    assert_report_resources(&r, &sealed);

    assert_markdown_report(state.path(), &run_id, &steps, calls, &want);
    assert_html_report_file(state.path(), &run_id, &steps, calls, &want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_evidence_is_reported_altered_and_exits_3() {
    require_report_command();
    let state = tempfile::tempdir().unwrap();
    let bucket = exposed_bucket().await;
    let summary = run_playbook(
        state.path(),
        &shipped_playbook("s3-bucket-exposure.yaml"),
        &irr_tests::unique("IR-tamper"),
        &[format!("bucket={bucket}")],
    );
    let run_id = summary["run_id"].as_str().unwrap();
    let location = summary["evidence"]["location"].as_str().unwrap();
    assert_eq!(report_json(state.path(), run_id).0, Some(0));

    // Someone edits one captured artifact after sealing.
    let sealed = manifest(location);
    let victim = sealed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap())
        .find(|p| p.starts_with("artifacts/"))
        .unwrap()
        .to_owned();
    let file = Path::new(location).join(&victim);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.extend_from_slice(b"\n");
    // Evidence files are written read-only; an insider makes them writable again.
    let mut perm = std::fs::metadata(&file).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&file, perm).unwrap();
    std::fs::write(&file, &bytes).unwrap();

    let (code, r) = report_json(state.path(), run_id);
    assert_eq!(code, Some(3), "evidence mismatch exits 3: {r:#}");
    assert_eq!(r["integrity_ok"], false);
    assert_eq!(r["evidence"]["status"], "mismatch");
    let item = r["evidence"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["path"] == victim.as_str())
        .unwrap();
    assert_eq!(item["status"], "altered", "{item:#}");
    assert_ne!(item["actual_sha256"], item["sha256"]);
    assert_eq!(item["actual_size"].as_u64(), Some(bytes.len() as u64));
    let others_ok = r["evidence"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["path"] != victim.as_str())
        .all(|i| i["status"] == "ok");
    assert!(others_ok);
    let first = &r["findings"][0];
    assert_eq!(first["severity"], "critical");
    assert!(
        first["message"].as_str().unwrap().contains(&victim),
        "{first:#}"
    );

    // Every format still renders, and shows it first.
    let out = report(state.path(), run_id, "md");
    assert_eq!(out.status.code(), Some(3));
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(md.contains("**INTEGRITY PROBLEMS (1).**"), "{md}");
    assert!(md.contains("**ALTERED**"));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&victim),
        "{}",
        text(&out)
    );
    let out = report(state.path(), run_id, "html");
    assert_eq!(out.status.code(), Some(3));
    let html = String::from_utf8_lossy(&out.stdout);
    assert!(html.contains("class=\"verdict bad\""));
    assert!(html.contains("Integrity problems: 1"));
    assert!(html.contains(">altered</span>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_journal_breaks_the_chain_in_the_report() {
    require_report_command();
    let state = tempfile::tempdir().unwrap();
    let bucket = exposed_bucket().await;
    let summary = run_playbook(
        state.path(),
        &shipped_playbook("s3-bucket-exposure.yaml"),
        &irr_tests::unique("IR-journal"),
        &[format!("bucket={bucket}")],
    );
    let run_id = summary["run_id"].as_str().unwrap();
    let path = state.path().join("runs").join(run_id).join("journal.jsonl");
    let original = std::fs::read_to_string(&path).unwrap();
    // Rewrite history: the block call "failed".
    let edited = original.replacen("\"ok\":true", "\"ok\":false", 1);
    assert_ne!(edited, original);
    std::fs::write(&path, edited).unwrap();

    let (code, r) = report_json(state.path(), run_id);
    assert_eq!(code, Some(3), "{r:#}");
    assert_eq!(r["journal"]["chain_ok"], false);
    assert!(r["journal"]["chain_problem"]
        .as_str()
        .unwrap()
        .starts_with("line "));
    assert_eq!(
        r["journal"]["sealed_copy_ok"], false,
        "it differs from the sealed copy"
    );
    assert_eq!(
        r["evidence"]["status"], "verified",
        "the sealed evidence itself is intact"
    );
    let messages: Vec<&str> = strs(&r["findings"], "message");
    assert!(
        messages.iter().any(|m| m.contains("hash chain is broken")),
        "{messages:#?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("not what was sealed")),
        "{messages:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_mid_call_shows_the_unfinished_call_then_the_resume() {
    require_report_command();
    let state = tempfile::tempdir().unwrap();
    let pb = shipped_playbook("s3-bucket-exposure.yaml");
    // A reference run says which journal entry is the first call_started.
    let bucket = exposed_bucket().await;
    let reference = irr_output(
        &[
            "run",
            pb.to_str().unwrap(),
            "--case",
            &irr_tests::unique("IR-ref"),
            "--input",
            &format!("bucket={bucket}"),
            "--yes",
            "--output",
            "json",
        ],
        state.path(),
    );
    assert!(reference.status.success(), "{}", text(&reference));
    let at = json_lines(&reference)
        .iter()
        .position(|e| e["event"] == "call_started")
        .expect("the playbook makes a mutating call")
        + 1;

    let bucket = exposed_bucket().await;
    let case = irr_tests::unique("IR-killed");
    let at = at.to_string();
    let killed = irr_env(
        &[
            "run",
            pb.to_str().unwrap(),
            "--case",
            &case,
            "--input",
            &format!("bucket={bucket}"),
            "--yes",
            "--output",
            "json",
        ],
        state.path(),
        &[("IRR_FAULT_KILL_AT_SEQ", &at)],
    );
    assert_eq!(killed.status.code(), None, "killed: {}", text(&killed));
    let run_id = json_lines(&killed)[0]["run_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let (code, r) = report_json(state.path(), &run_id);
    assert_eq!(code, Some(3), "not sealed: {r:#}");
    assert_eq!(r["run"]["status"], "incomplete");
    assert_eq!(r["evidence"]["status"], "not_sealed");
    let calls = r["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["status"], "unfinished");
    assert_eq!(calls[0]["seq"].as_u64(), at.parse().ok());
    assert!(calls[0]["request_id"].is_null());
    let messages = strs(&r["findings"], "message");
    assert!(
        messages.iter().any(|m| m.contains("never finished")),
        "{messages:#?}"
    );
    let md = String::from_utf8(report(state.path(), &run_id, "md").stdout).unwrap();
    assert!(md.contains("**UNFINISHED**"), "{md}");
    let html = String::from_utf8(report(state.path(), &run_id, "html").stdout).unwrap();
    assert!(
        html.contains("g-call c-unfinished"),
        "the visual timeline marks it"
    );

    // Resumed and sealed: the report tells both sessions, and the record verifies.
    let resumed = irr_output(
        &["resume", &run_id, "--yes", "--output", "json"],
        state.path(),
    );
    assert!(resumed.status.success(), "{}", text(&resumed));
    let (code, r) = report_json(state.path(), &run_id);
    assert_eq!(code, Some(0), "{:#}", r["findings"]);
    assert_eq!(r["run"]["status"], "succeeded");
    assert_eq!(r["run"]["resumed"], 1);
    assert_eq!(r["evidence"]["status"], "verified");
    let calls = r["calls"].as_array().unwrap();
    assert_eq!(calls[0]["session"], 1);
    assert_eq!(calls[0]["status"], "unfinished", "history is kept");
    assert!(calls[1..]
        .iter()
        .all(|c| c["session"] == 2 && c["status"] == "ok"));
    assert!(r["notes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["message"].as_str().unwrap().contains("in flight")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_in_s3_is_verified_with_its_version_ids() {
    require_report_command();
    let conf = irr_tests::sdk_config().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    );
    let evidence_bucket = irr_tests::unique("irr-report-ev").to_lowercase();
    let loc = irr_forensics::EvidenceLocation::parse(&format!("s3://{evidence_bucket}/evidence"))
        .unwrap();
    let store =
        irr_forensics::Store::open(&loc, Some(s3.clone()), irr_forensics::S3Settings::default())
            .unwrap();
    let irr_forensics::Store::S3(s3store) = &store else {
        unreachable!()
    };
    s3store.ensure_bucket(true).await.expect("evidence bucket");

    let state = tempfile::tempdir().unwrap();
    let bucket = exposed_bucket().await;
    let out = irr_output(
        &[
            "run",
            shipped_playbook("s3-bucket-exposure.yaml")
                .to_str()
                .unwrap(),
            "--case",
            &irr_tests::unique("IR-s3ev"),
            "--input",
            &format!("bucket={bucket}"),
            "--evidence",
            &format!("s3://{evidence_bucket}/evidence"),
            "--yes",
            "--output",
            "json",
        ],
        state.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let run_id = json_lines(&out).pop().unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let (code, r) = report_json(state.path(), &run_id);
    assert_eq!(code, Some(0), "{:#}", r["findings"]);
    let ev = &r["evidence"];
    assert_eq!(ev["status"], "verified");
    assert!(ev["location"]
        .as_str()
        .unwrap()
        .starts_with(&format!("s3://{evidence_bucket}/evidence/")));
    let items = ev["items"].as_array().unwrap();
    assert!(items.len() >= 3);
    for i in items {
        assert_eq!(i["status"], "ok", "{i:#}");
        assert!(
            i["s3_version_id"].as_str().is_some_and(|v| !v.is_empty()),
            "{i:#}"
        );
    }
    assert_eq!(r["journal"]["sealed_copy_ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacker_controlled_values_are_escaped_in_the_html_report() {
    require_report_command();
    let conf = irr_tests::sdk_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.44.0.0/16")
        .send()
        .await
        .unwrap()
        .vpc
        .unwrap()
        .vpc_id
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pb = dir.path().join("note.yaml");
    std::fs::write(
        &pb,
        r#"apiVersion: irr/v1
kind: Playbook
metadata:
  name: tag-with-note
  version: 1.0.0
  description: Tag a VPC with a note taken from the incident (attacker-influenced)
  owner: security@example.com
inputs:
  vpc_id:
    type: string
    description: The VPC
  note:
    type: string
    description: Free text copied from the compromised resource
steps:
  - id: tag
    action: ec2.tag_resources
    description: Record the note on the VPC
    with:
      resource_ids: ["{{inputs.vpc_id}}"]
      tags:
        irr:note: "{{inputs.note}}"
"#,
    )
    .unwrap();
    let evil = "<script>alert(\"pwned\")</script><img src=x onerror=alert(1)>";
    let state = tempfile::tempdir().unwrap();
    let summary = run_playbook(
        state.path(),
        &pb,
        &irr_tests::unique("IR-xss"),
        &[format!("vpc_id={vpc}"), format!("note={evil}")],
    );
    let run_id = summary["run_id"].as_str().unwrap();
    // The value really is in the journal, as AWS data would be.
    let entries = journal(state.path(), run_id);
    assert!(entries
        .iter()
        .any(|e| e["event"] == "call_started" && e["params"].to_string().contains("<script>")));

    let out = report(state.path(), run_id, "html");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let html = String::from_utf8(out.stdout).unwrap();
    assert_self_contained(&html);
    assert!(
        !html.contains("<img"),
        "markup from the journal got through"
    );
    assert!(html.contains("&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;"));
    let (_, r) = report_json(state.path(), run_id);
    assert_eq!(
        r["calls"][0]["params"]["tags"]["irr:note"], evil,
        "JSON keeps the value as it was"
    );
}

#[test]
fn an_unknown_run_id_exits_2_with_a_clear_message() {
    require_report_command();
    let state = tempfile::tempdir().unwrap();
    let out = report(state.path(), "r-20260101T000000Z-000000", "md");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no run r-20260101T000000Z-000000"), "{err}");
    assert!(out.stdout.is_empty());
}

/// Renders the HTML report of a real run in headless Chromium and keeps the screenshot at
/// `target/report-screenshot.png`. Skips (loudly) only when Chromium is not installed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_renders_in_headless_chromium() {
    let Some(chromium) = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
    else {
        eprintln!(
            "\n*** SKIPPED the_html_report_renders_in_headless_chromium: chromium is not installed \
             (apt-get install -y chromium) ***\n"
        );
        return;
    };
    require_report_command();
    let state = tempfile::tempdir().unwrap();
    let (run_id, _) = contained_instance_run(state.path()).await;
    let html = state.path().join("report.html");
    let out = irr_output(
        &[
            "report",
            &run_id,
            "--format",
            "html",
            "--out",
            html.to_str().unwrap(),
        ],
        state.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let png = state.path().join("report.png");
    let profile = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1400,2000")
        .arg(format!("file://{}", html.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "chromium failed: {status}");
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 20 * 1024,
        "the screenshot is too small to show a rendered report ({size} bytes)"
    );
    let target = irr_tests::irr_bin()
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("report-screenshot.png");
    std::fs::copy(&png, &target).unwrap();
    eprintln!("report screenshot: {} ({size} bytes)", target.display());
}
