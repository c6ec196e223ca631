//! Drills a team runs every week, through the binary: a finished drill stays reviewable after
//! its emulator is gone (its verified local evidence copy); AWS errors are one readable line
//! (a stopped emulator, no credentials, a denied call) and "could not read" (exit 5) is told
//! apart from "altered" (exit 3); a playbook that makes no AWS call runs without AWS; drill
//! history and targets; JUnit XML checked against the Jenkins JUnit XSD with `xmllint`; a
//! chaos drill (`--chaos`) still contains and says what it did about each injected fault.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use irr_tests::{irr_bin, output_text as text, playbook};
use serde_json::Value;

fn last_json(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("last line is not JSON ({e}): {}", text(out)))
}

/// `irr` with no AWS settings at all: no AWS_* variables, HOME an empty directory (no
/// ~/.aws), the instance role disabled (no IMDS wait).
fn irr_bare(args: &[&str], home: &Path) -> Output {
    Command::new(irr_bin())
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("run irr")
}

/// A loopback port that nothing listens on: an emulator that was stopped.
fn stopped_endpoint() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

/// One readable line: no Rust debug output.
fn assert_one_readable_line(s: &str) {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected, got: {s}");
    let l = lines[0];
    assert!(!l.contains('{'), "no braces: {l}");
    assert!(!l.contains("Error {"), "no debug dump: {l}");
    assert!(!l.contains("DispatchFailure"), "no debug dump: {l}");
    assert!(
        l.len() < 600,
        "short enough to read: {} chars: {l}",
        l.len()
    );
}

fn xmllint_validates(xml: &Path) {
    let xsd =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../runner/tests/schemas/junit-jenkins.xsd");
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(&xsd)
        .arg(xml)
        .output()
        .expect("xmllint (apt-get install libxml2-utils; .ci/run installs it)");
    assert!(
        out.status.success(),
        "JUnit XML does not validate against {}: {}\n{}",
        xsd.display(),
        text(&out),
        std::fs::read_to_string(xml).unwrap_or_default()
    );
}

/// Appends a byte to one artifact of a local evidence folder (made writable first).
fn tamper_an_artifact(copy: &str) {
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(Path::new(copy).join("manifest.json")).unwrap())
            .unwrap();
    let victim = manifest["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap())
        .find(|p| p.starts_with("artifacts/"))
        .unwrap()
        .to_owned();
    let f = Path::new(copy).join(&victim);
    let mut perm = std::fs::metadata(&f).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&f, perm).unwrap();
    let mut bytes = std::fs::read(&f).unwrap();
    bytes.extend_from_slice(b" ");
    std::fs::write(&f, bytes).unwrap();
}

#[test]
fn a_finished_drill_is_reviewable_after_its_emulator_is_gone() {
    let state = tempfile::tempdir().unwrap();
    let junit = state.path().join("junit.xml");
    // No endpoint: the drill starts its own emulator and stops it at the end.
    let out = Command::new(irr_bin())
        .arg("--state-dir")
        .arg(state.path())
        .args(["--output", "json", "gameday"])
        .arg(playbook("s3-bucket-exposure.yaml"))
        .arg("--junit")
        .arg(&junit)
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    let card = last_json(&out);
    assert_eq!(out.status.code(), Some(0), "{card:#}\n{}", text(&out));
    let run_id = card["run_id"].as_str().unwrap().to_owned();
    let copy = card["evidence_copy"]
        .as_str()
        .expect("a verified local copy")
        .to_owned();
    assert!(
        copy.starts_with(
            &state
                .path()
                .join("runs")
                .join(&run_id)
                .join("evidence-copy")
                .display()
                .to_string()
        ),
        "{copy}"
    );
    assert!(
        card["evidence"].as_str().unwrap().starts_with("s3://"),
        "drills seal in the emulator's S3"
    );

    // The emulator is gone; the report verifies the copy, says so, exits 0.
    let home = tempfile::tempdir().unwrap();
    let state_s = state.path().display().to_string();
    let rep = irr_bare(
        &[
            "--state-dir",
            &state_s,
            "report",
            &run_id,
            "--format",
            "json",
        ],
        home.path(),
    );
    assert_eq!(rep.status.code(), Some(0), "{}", text(&rep));
    let r: Value = serde_json::from_slice(&rep.stdout).unwrap();
    assert_eq!(r["integrity_ok"], true, "{r:#}");
    assert_eq!(r["evidence"]["status"], "verified");
    assert_eq!(r["evidence"]["location"], copy.as_str());
    assert_eq!(r["evidence"]["copy_of"], card["evidence"]);
    assert!(r["evidence"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["status"] == "ok"));
    let md = irr_bare(&["--state-dir", &state_s, "report", &run_id], home.path());
    assert_eq!(md.status.code(), Some(0));
    let md = String::from_utf8_lossy(&md.stdout);
    assert!(md.contains("**Integrity: OK.**"), "{md}");
    assert!(md.contains("verified the local **copy**"), "{md}");

    // The copy is a local evidence folder that `irr evidence verify` checks.
    let v = irr_bare(&["evidence", "verify", &copy], home.path());
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    // Tampered: exit 3, from both.
    tamper_an_artifact(&copy);
    let v = irr_bare(&["evidence", "verify", &copy], home.path());
    assert_eq!(v.status.code(), Some(3), "{}", text(&v));
    assert!(String::from_utf8_lossy(&v.stdout).contains("ALTERED"));
    let rep = irr_bare(
        &[
            "--state-dir",
            &state_s,
            "report",
            &run_id,
            "--format",
            "json",
        ],
        home.path(),
    );
    assert_eq!(rep.status.code(), Some(3), "{}", text(&rep));

    // The JUnit XML: valid, one case per check (plus the run), all passing.
    xmllint_validates(&junit);
    let xml = std::fs::read_to_string(&junit).unwrap();
    let checks = card["checks"].as_array().unwrap().len();
    assert_eq!(xml.matches("<testcase ").count(), checks + 1, "{xml}");
    assert!(!xml.contains("<failure"), "{xml}");

    // The scorecard is kept, and history shows it.
    let h = irr_bare(
        &[
            "--state-dir",
            &state_s,
            "--output",
            "json",
            "history",
            "s3-bucket-exposure",
        ],
        home.path(),
    );
    assert_eq!(h.status.code(), Some(0), "{}", text(&h));
    let h: Value = serde_json::from_slice(&h.stdout).unwrap();
    let drills = h["playbooks"][0]["drills"].as_array().unwrap();
    assert_eq!(drills.len(), 1, "{h:#}");
    assert_eq!(drills[0]["run_id"], run_id.as_str());
    assert_eq!(drills[0]["checks_passed"], checks);
    assert_eq!(drills[0]["time_to_contain_s"], card["time_to_contain_s"]);
}

#[test]
fn a_missed_target_fails_the_drill_in_the_scorecard_junit_and_history() {
    let state = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(
        playbook("s3-bucket-exposure.yaml")
            .parent()
            .unwrap()
            .join("scenarios/s3-bucket-exposure.yaml"),
    )
    .unwrap();
    let sc = dir.path().join("fast.yaml");
    std::fs::write(
        &sc,
        format!("{shipped}\ntargets:\n  time_to_contain: 1ms\n  time_to_evidence: 10m\n"),
    )
    .unwrap();
    let junit = dir.path().join("junit.xml");
    let out = irr_tests::irr_with(
        &[
            "--output",
            "json",
            "gameday",
            playbook("s3-bucket-exposure.yaml").to_str().unwrap(),
            "--scenario",
            sc.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
        ],
        state.path(),
        &irr_tests::endpoint(),
        ("testing", "testing"),
        &[],
    );
    let card = last_json(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a missed target fails the drill: {card:#}"
    );
    assert_eq!(card["status"], "succeeded", "the run itself succeeded");
    let checks = card["checks"].as_array().unwrap();
    let contain = checks
        .iter()
        .find(|c| c["check"]["check"] == "target" && c["check"]["metric"] == "time_to_contain")
        .unwrap();
    assert_eq!(contain["passed"], false, "{contain:#}");
    assert!(contain["detail"]
        .as_str()
        .unwrap()
        .contains("MISSED the target 1ms"));
    let evidence = checks
        .iter()
        .find(|c| c["check"]["metric"] == "time_to_evidence")
        .unwrap();
    assert_eq!(evidence["passed"], true, "{evidence:#}");
    assert_eq!(
        card["score"],
        format!("{}/{}", checks.len() - 1, checks.len())
    );

    xmllint_validates(&junit);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<failure ").count(), 1, "{xml}");
    assert!(xml.contains("name=\"target time_to_contain 1ms\""), "{xml}");
    assert!(xml.contains("MISSED the target 1ms"), "{xml}");

    let h = irr_tests::irr_with(
        &["history"],
        state.path(),
        &irr_tests::endpoint(),
        ("testing", "testing"),
        &[],
    );
    assert_eq!(h.status.code(), Some(0));
    let h = String::from_utf8_lossy(&h.stdout);
    assert!(h.contains("s3-bucket-exposure (1 drill(s))"), "{h}");
    assert!(
        h.contains(&format!("{}/{}", checks.len() - 1, checks.len())),
        "{h}"
    );
}

#[test]
fn a_bad_target_is_refused_with_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let sc = dir.path().join("bad.yaml");
    std::fs::write(&sc, "apiVersion: irr/v1\nkind: Scenario\nmetadata: {name: x}\nexpect: []\ntargets: {time_to_contain: soon}\n").unwrap();
    let state = tempfile::tempdir().unwrap();
    let out = irr_tests::irr_with(
        &[
            "gameday",
            playbook("s3-bucket-exposure.yaml").to_str().unwrap(),
            "--scenario",
            sc.to_str().unwrap(),
        ],
        state.path(),
        &irr_tests::endpoint(),
        ("testing", "testing"),
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml: targets.time_to_contain"), "{err}");
    assert!(!state.path().join("runs").exists(), "nothing ran");
}

#[test]
fn history_files_are_hostile_input() {
    let state = tempfile::tempdir().unwrap();
    let g = state.path().join("gamedays");
    std::fs::create_dir_all(&g).unwrap();
    let good = |t: &str, contain: f64| {
        serde_json::json!({"playbook": "p1", "scenario": "p1", "started_at": t, "run_id": "r-1",
            "status": "succeeded", "time_to_contain_s": contain, "time_to_sealed_evidence_s": 3.0,
            "checks": [{"passed": true}, {"passed": false}]})
        .to_string()
    };
    std::fs::write(g.join("b.json"), good("2026-12-02T10:00:00Z", 1.5)).unwrap();
    std::fs::write(g.join("a.json"), good("2026-12-01T10:00:00Z", 2.0)).unwrap();
    std::fs::write(g.join("garbage.json"), "{not json").unwrap();
    std::fs::write(g.join("huge.json"), vec![b' '; 2 * 1024 * 1024]).unwrap();
    std::fs::write(
        g.join("badtime.json"),
        r#"{"playbook":"p1","started_at":"yesterday"}"#,
    )
    .unwrap();
    std::fs::create_dir(g.join("dir.json")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", g.join("link.json")).unwrap();
    let home = tempfile::tempdir().unwrap();
    let s = state.path().display().to_string();
    let out = irr_bare(&["--state-dir", &s, "history"], home.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("p1 (2 drill(s))"), "{stdout}");
    // Oldest first, and the change since the previous drill.
    let a = stdout.find("2026-12-01T10:00:00Z").unwrap();
    let b = stdout.find("2026-12-02T10:00:00Z").unwrap();
    assert!(a < b, "{stdout}");
    assert!(stdout.contains("contain 0.50 s faster"), "{stdout}");
    assert!(stdout.contains("1/2"), "{stdout}");
    for (f, why) in [
        ("garbage.json", "not a scorecard"),
        ("huge.json", "larger than"),
        ("badtime.json", "not an RFC 3339 time"),
        ("dir.json", "not a regular file"),
        ("link.json", "not a regular file"),
    ] {
        assert!(
            stderr.lines().any(|l| l.contains(f) && l.contains(why)),
            "{f}: {why}: {stderr}"
        );
    }
    let out = irr_bare(
        &["--state-dir", &s, "--output", "json", "history", "p1"],
        home.path(),
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["playbooks"][0]["drills"].as_array().unwrap().len(), 2);
    assert_eq!(v["problems"].as_array().unwrap().len(), 5, "{v:#}");
}

/// A playbook that only captures into local evidence.
fn local_only_playbook(dir: &Path) -> PathBuf {
    let pb = dir.join("notes.yaml");
    std::fs::write(
        &pb,
        "apiVersion: irr/v1\nkind: Playbook\nmetadata: {name: take-notes, version: 1.0.0}\nsteps:\n  - id: notes\n    action: evidence.capture\n    with:\n      name: notes.json\n      content: {who: on-call, what: first look}\n",
    )
    .unwrap();
    pb
}

#[test]
fn a_playbook_that_makes_no_aws_call_runs_without_aws() {
    let dir = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let pb = local_only_playbook(dir.path());
    let state = dir.path().join("state");
    let ev = dir.path().join("evidence");
    let out = irr_bare(
        &[
            "--state-dir",
            state.to_str().unwrap(),
            "--output",
            "json",
            "run",
            pb.to_str().unwrap(),
            "--case",
            "IR-LOCAL-1",
            "--yes",
            "--evidence",
            ev.to_str().unwrap(),
        ],
        home.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let fin = last_json(&out);
    assert_eq!(fin["status"], "succeeded", "{fin:#}");
    let loc = fin["evidence"]["location"].as_str().unwrap();
    assert!(
        Path::new(loc).join("artifacts/notes/notes.json").is_file(),
        "{loc}"
    );
    let v = irr_bare(&["evidence", "verify", loc], home.path());
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    // A playbook that does call AWS still needs it, and says so in one line.
    let out = irr_bare(
        &[
            "--state-dir",
            state.to_str().unwrap(),
            "run",
            playbook("s3-bucket-exposure.yaml").to_str().unwrap(),
            "--case",
            "IR-LOCAL-2",
            "--yes",
            "--input",
            "bucket=some-bucket",
        ],
        home.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no AWS region"));
}

#[test]
fn missing_credentials_are_one_readable_line() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = irr_bare(
        &[
            "--state-dir",
            dir.path().to_str().unwrap(),
            "--region",
            "us-east-1",
            "--endpoint-url",
            &stopped_endpoint(),
            "run",
            playbook("s3-bucket-exposure.yaml").to_str().unwrap(),
            "--case",
            "IR-NOCREDS",
            "--yes",
            "--input",
            "bucket=some-bucket",
        ],
        home.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_one_readable_line(&err);
    assert!(
        err.contains("sts:GetCallerIdentity failed: no AWS credentials found: tried the environment (AWS_ACCESS_KEY_ID), profile default"),
        "{err}"
    );
    assert!(
        err.contains("SSO") && err.contains("the instance role"),
        "{err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");
}

#[test]
fn a_stopped_emulator_is_one_readable_line_and_unverifiable_is_exit_5() {
    let state = tempfile::tempdir().unwrap();
    let endpoint = stopped_endpoint();
    let started = std::time::Instant::now();
    let out = irr_tests::irr_with(
        &["evidence", "verify", "s3://irr-evidence/cases/IR-1/r-1"],
        state.path(),
        &endpoint,
        ("testing", "testing"),
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(5),
        "unverifiable, not altered: {}",
        text(&out)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_one_readable_line(&err);
    assert!(
        err.starts_with("unverifiable: cannot read s3://irr-evidence/cases/IR-1/r-1"),
        "{err}"
    );
    assert!(err.contains("could not reach AWS"), "{err}");
    assert!(err.contains("a local emulator may have stopped"), "{err}");
    eprintln!(
        "verify against a stopped endpoint took {:?}",
        started.elapsed()
    );
    // The same through `irr run`: the identity check names the call.
    let out = irr_tests::irr_with(
        &[
            "run",
            playbook("s3-bucket-exposure.yaml").to_str().unwrap(),
            "--case",
            "IR-STOPPED",
            "--yes",
            "--input",
            "bucket=some-bucket",
        ],
        state.path(),
        &endpoint,
        ("testing", "testing"),
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_one_readable_line(&err);
    assert!(
        err.contains("sts:GetCallerIdentity failed: could not reach AWS"),
        "{err}"
    );
    // --verbose adds the SDK's full detail, on lines of its own. (The first call verify makes
    // is STS's: it names the account that must own the evidence bucket.)
    let out = irr_tests::irr_with(
        &[
            "--verbose",
            "evidence",
            "verify",
            "s3://irr-evidence/cases/IR-1/r-1",
        ],
        state.path(),
        &endpoint,
        ("testing", "testing"),
        &[],
    );
    assert_eq!(out.status.code(), Some(5));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("detail: sts:GetCallerIdentity: "),
        "{}",
        text(&out)
    );
}

/// Every S3 call denied (403 `AccessDenied`, from the fault proxy: moto's S3 under IAM
/// enforcement answers `SignatureDoesNotMatch` instead, docs/emulator-notes.md): the evidence
/// cannot be read, which is "unverifiable" (exit 5), not "altered" (3), in one readable line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_call_is_one_readable_line_and_unverifiable() {
    let proxy = irr_runner::proxy::FaultProxy::start(
        &irr_tests::endpoint(),
        irr_runner::proxy::ProxySpec {
            rules: vec![irr_runner::proxy::Rule {
                action: "s3:*".into(),
                fault: irr_runner::proxy::FaultKind::Deny,
                nth: None,
                times: None,
                latency_ms: None,
                contains: None,
            }],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let (url, dir) = (proxy.url().to_owned(), state.path().to_owned());
    let out = tokio::task::spawn_blocking(move || {
        irr_tests::irr_with(
            &["evidence", "verify", "s3://irr-evidence/cases/IR-1/r-1"],
            &dir,
            &url,
            ("testing", "testing"),
            &[],
        )
    })
    .await
    .unwrap();
    assert!(
        !proxy.injected().is_empty(),
        "the proxy denied the S3 calls"
    );
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_one_readable_line(&err);
    assert!(err.contains("AccessDenied"), "{err}");
    assert!(err.contains("may not call s3:"), "{err}");
    assert!(err.contains("irr policy PLAYBOOK"), "{err}");
}

/// A chaos drill (`--chaos SPEC`): the EC2 drill with every Auto Scaling call denied and a
/// burst of EC2 throttling injected into the run's traffic (through the fault proxy the
/// drill starts; the seeding and the checks talk to the emulator directly). The instance is
/// still contained (the drill's checks read the emulator; this test reads it too), and the
/// scorecard says what the playbook did about each fault: the denials are recorded gaps, the
/// throttling was retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chaos_drill_still_contains_and_says_what_it_did_about_each_fault() {
    let state = tempfile::tempdir().unwrap();
    let spec = state.path().join("chaos.yaml");
    std::fs::write(
        &spec,
        "rules:\n  - {action: 'autoscaling:*', fault: deny}\n  - {action: 'ec2:*', fault: throttle, nth: 4, times: 2}\n  - {action: 'ec2:DescribeInstances', fault: latency, latency_ms: 50, times: 3}\n",
    )
    .unwrap();
    let endpoint = irr_tests::endpoint();
    let (dir, ep) = (state.path().to_owned(), endpoint.clone());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(irr_bin())
            .arg("--state-dir")
            .arg(&dir)
            .args(["--output", "json", "gameday"])
            .arg(playbook("ec2-instance-compromise.yaml"))
            .arg("--chaos")
            .arg(dir.join("chaos.yaml"))
            .args(["--endpoint-url", &ep])
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_PROFILE")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let card = last_json(&out);
    assert_eq!(out.status.code(), Some(0), "{card:#}\n{}", text(&out));
    let failed: Vec<&Value> = card["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] != true)
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    let chaos = card["chaos"].as_array().expect("the scorecard's chaos");
    let of = |action: &str| {
        chaos
            .iter()
            .find(|f| f["action"] == action)
            .unwrap_or_else(|| panic!("{action} not in {chaos:#?}"))
    };
    let asg = of("autoscaling:DescribeAutoScalingInstances");
    assert_eq!(asg["fault"], "deny");
    assert_eq!(asg["outcome"], "recorded a gap", "{asg:#}");
    let throttled: Vec<&Value> = chaos.iter().filter(|f| f["fault"] == "throttle").collect();
    assert_eq!(
        throttled
            .iter()
            .map(|f| f["times"].as_u64().unwrap())
            .sum::<u64>(),
        2,
        "{chaos:#?}"
    );
    for t in &throttled {
        assert_eq!(t["outcome"], "retried", "{t:#}");
    }
    assert!(chaos.iter().any(|f| f["fault"] == "latency"), "{chaos:#?}");

    // The emulator's own state: the drill's instance holds only its isolation group.
    let isolated = card["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"]["check"] == "isolated")
        .expect("an isolated check");
    let instance = isolated["check"]["instance"].as_str().unwrap();
    let ec2 = aws_sdk_ec2::Client::new(&irr_tests::sdk_config().await);
    let enis = ec2
        .describe_network_interfaces()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("attachment.instance-id")
                .values(instance)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(!enis.network_interfaces().is_empty());
    for eni in enis.network_interfaces() {
        let names: Vec<String> = eni
            .groups()
            .iter()
            .filter_map(|g| g.group_name().map(str::to_owned))
            .collect();
        assert!(
            names.len() == 1 && names[0].starts_with("irr-isolation-"),
            "{:?}: {names:?}",
            eni.network_interface_id()
        );
    }
}
