//! The validator's contract, checked through the `irr` binary as a user meets it.
//!
//! `tests/fixtures/invalid/*.yaml` are playbooks with the mistakes new users make. Each
//! declares, in its leading comments, every diagnostic `irr validate` must report:
//!
//! ```text
//! # expect: 12:13 unknown action "ec2.snapshot_volume"
//! # expect-help: did you mean "ec2.snapshot_volumes"?
//! ```
//!
//! (line:column, then a substring of the message; an `expect-help` line applies to the
//! `expect` above it). The harness requires exit code 2, every expected diagnostic at exactly
//! that position, and no other error. `tests/fixtures/valid/*.yaml` and the shipped playbooks
//! must validate cleanly. The rest checks `--input` problems and that `plan`, `policy`,
//! `actions` and `schema` work on the shipped playbooks.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const IRR: &str = env!("CARGO_BIN_EXE_irr");

fn irr(args: &[&str]) -> Output {
    Command::new(IRR)
        .args(args)
        .current_dir(workspace())
        .output()
        .expect("irr runs")
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("runner is in the workspace")
        .to_owned()
}

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind);
    yaml_files(&dir)
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn shipped_playbooks() -> Vec<PathBuf> {
    yaml_files(&workspace().join("playbooks"))
}

fn json_of(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// One diagnostic a fixture expects.
#[derive(Debug)]
struct Expected {
    line: u64,
    column: u64,
    message: String,
    help: Option<String>,
}

/// The `# expect:` lines of a fixture's leading comments.
fn expectations(text: &str) -> Vec<Expected> {
    let mut out: Vec<Expected> = Vec::new();
    for line in text.lines().take_while(|l| l.starts_with('#')) {
        if let Some(rest) = line.strip_prefix("# expect:") {
            let (pos, message) = rest
                .trim_start()
                .split_once(' ')
                .unwrap_or_else(|| panic!("bad expect line {line:?}"));
            let (l, c) = pos
                .split_once(':')
                .unwrap_or_else(|| panic!("bad position in {line:?}"));
            out.push(Expected {
                line: l.parse().expect("line number"),
                column: c.parse().expect("column number"),
                message: message.to_owned(),
                help: None,
            });
        } else if let Some(help) = line.strip_prefix("# expect-help:") {
            let last = out.last_mut().expect("expect-help follows an expect line");
            last.help = Some(help.trim().to_owned());
        }
    }
    out
}

/// Checks one invalid fixture; returns what is wrong with the validator's answer.
fn check_invalid(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("fixture reads");
    let expected = expectations(&text);
    let name = path.display().to_string();
    let mut failures = Vec::new();
    if expected.is_empty() {
        return vec![format!("{name}: no \"# expect:\" lines")];
    }
    let out = irr(&["validate", "--output", "json", &name]);
    if out.status.code() != Some(2) {
        failures.push(format!("{name}: exit {:?}, expected 2", out.status.code()));
    }
    let report = json_of(&out);
    let problems = report["problems"].as_array().cloned().unwrap_or_default();
    let errors: Vec<&Value> = problems
        .iter()
        .filter(|p| p["severity"] == "error")
        .collect();
    for e in &expected {
        let found = errors.iter().any(|p| {
            p["line"] == e.line
                && p["column"] == e.column
                && p["message"].as_str().unwrap_or("").contains(&e.message)
                && e.help
                    .as_ref()
                    .is_none_or(|h| p["help"].as_str().unwrap_or("").contains(h.as_str()))
        });
        if !found {
            failures.push(format!("{name}: missing {e:?}"));
        }
    }
    if errors.len() != expected.len() {
        failures.push(format!(
            "{name}: {} errors reported, {} expected",
            errors.len(),
            expected.len()
        ));
    }
    for p in &errors {
        if p["file"] != name.as_str() {
            failures.push(format!("{name}: diagnostic names file {}", p["file"]));
        }
    }
    if !failures.is_empty() {
        let got: Vec<String> = errors
            .iter()
            .map(|p| {
                format!(
                    "  {}:{} {} (help: {})",
                    p["line"], p["column"], p["message"], p["help"]
                )
            })
            .collect();
        failures.push(format!("{name}: reported:\n{}", got.join("\n")));
    }
    failures
}

#[test]
fn invalid_fixtures_report_exactly_their_diagnostics() {
    let files = fixtures("invalid");
    assert!(files.len() >= 40, "only {} invalid fixtures", files.len());
    let failures: Vec<String> = files.iter().flat_map(|f| check_invalid(f)).collect();
    assert!(
        failures.is_empty(),
        "{} problem(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn expectation_lines_parse() {
    let e = expectations(
        "# a comment\n# expect: 12:13 unknown action \"x\"\n# expect-help: did you mean\n# expect: 1:1 b c\nsteps:\n# expect: 9:9 not header\n",
    );
    assert_eq!(e.len(), 2);
    assert_eq!((e[0].line, e[0].column), (12, 13));
    assert_eq!(e[0].message, "unknown action \"x\"");
    assert_eq!(e[0].help.as_deref(), Some("did you mean"));
    assert_eq!(e[1].message, "b c");
}

#[test]
fn valid_fixtures_and_shipped_playbooks_validate() {
    let files: Vec<PathBuf> = fixtures("valid")
        .into_iter()
        .chain(shipped_playbooks())
        .collect();
    assert!(files.len() >= 5, "{files:?}");
    for f in files {
        let name = f.display().to_string();
        let out = irr(&["validate", "--output", "json", &name]);
        let report = json_of(&out);
        assert_eq!(out.status.code(), Some(0), "{name}: {report:#}");
        assert_eq!(report["problems"], serde_json::json!([]), "{name}");
    }
}

#[test]
fn text_output_shows_position_source_line_and_underline() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid");
    let file = dir.join("action-unknown-didyoumean.yaml");
    let name = file.display().to_string();
    let text = std::fs::read_to_string(&file).unwrap();
    let e = &expectations(&text)[0];
    let out = irr(&["validate", &name]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{name}:{}:{}", e.line, e.column)),
        "{stderr}"
    );
    let source_line = text.lines().nth(e.line as usize - 1).unwrap();
    assert!(
        stderr.contains(&format!("{} | {source_line}", e.line)),
        "{stderr}"
    );
    let underline = format!(
        "| {}{}",
        " ".repeat(e.column as usize - 1),
        "^".repeat("ec2.snapshot_volume".len())
    );
    assert!(stderr.contains(&underline), "{stderr}");
    assert!(
        stderr.contains("help: did you mean \"ec2.snapshot_volumes\"?"),
        "{stderr}"
    );
    assert!(stderr.contains("1 error found"), "{stderr}");
}

#[test]
fn several_files_are_checked_in_one_call() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let bad = dir.join("invalid/param-unknown.yaml");
    let good = dir.join("valid/fleet-isolation.yaml");
    let out = irr(&[
        "validate",
        "--output",
        "json",
        &good.display().to_string(),
        &bad.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let report = json_of(&out);
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{report:#}");
    assert_eq!(problems[0]["file"], bad.display().to_string());
}

// ---- --input problems ------------------------------------------------------------------

const EC2: &str = "playbooks/ec2-instance-compromise.yaml";

fn plan_problems(args: &[&str]) -> Vec<Value> {
    let mut all = vec!["plan", EC2, "--output", "json"];
    all.extend_from_slice(args);
    let out = irr(&all);
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    json_of(&out)["problems"].as_array().cloned().unwrap()
}

#[test]
fn unknown_input_suggests_the_declared_one() {
    let p = plan_problems(&["--input", "instance=i-0abc1234def567890"]);
    let unknown = p
        .iter()
        .find(|d| d["message"] == "unknown input \"instance\"")
        .unwrap_or_else(|| panic!("{p:#?}"));
    assert_eq!(unknown["help"], "did you mean \"instance_id\"?");
}

#[test]
fn input_value_must_fit_its_type() {
    let p = plan_problems(&["--input", "instance_id=i-123"]);
    assert_eq!(p.len(), 1, "{p:#?}");
    let msg = p[0]["message"].as_str().unwrap();
    assert!(msg.contains("input \"instance_id\""), "{msg}");
    assert!(msg.contains("\"i-123\" is not an instance id"), "{msg}");

    let p = plan_problems(&[
        "--input",
        "instance_id=i-0abc1234def567890",
        "--input",
        "responders=alice",
    ]);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(
        p[0]["message"].as_str().unwrap().contains("not an ARN"),
        "{p:#?}"
    );

    let p = plan_problems(&[
        "--input",
        "instance_id=i-0abc1234def567890",
        "--input",
        "access_duration=4 hours",
    ]);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(
        p[0]["message"].as_str().unwrap().contains("not a duration"),
        "{p:#?}"
    );
}

#[test]
fn a_required_input_must_be_given() {
    let p = plan_problems(&[]);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!(
        p[0]["message"],
        "input \"instance_id\" is required and was not given"
    );
    assert_eq!(p[0]["file"], EC2);
    assert!(
        p[0]["line"].as_u64().unwrap() > 0,
        "points at the declaration"
    );
}

#[test]
fn an_input_that_is_not_name_equals_value_is_refused() {
    let p = plan_problems(&["--input", "i-0abc1234def567890"]);
    assert!(
        p.iter()
            .any(|d| d["message"].as_str().unwrap().contains("is not name=value")),
        "{p:#?}"
    );
}

// ---- plan, policy, actions, schema on the shipped playbooks -----------------------------

/// A value that fits an input type, for the inputs a playbook requires.
fn sample(ty: &str, items: Option<&str>) -> String {
    match ty {
        "instance_id" => "i-0abc1234def567890".into(),
        "volume_id" => "vol-0abc1234def567890".into(),
        "arn" => "arn:aws:iam::123456789012:role/responder".into(),
        "account_id" => "123456789012".into(),
        "region" => "eu-west-1".into(),
        "cidr" => "10.0.0.0/16".into(),
        "access_key_id" => "AKIAIOSFODNN7EXAMPLE".into(),
        "bucket_name" => "evidence-bucket".into(),
        "duration" => "1h".into(),
        "integer" => "3".into(),
        "boolean" => "true".into(),
        "list" => sample(items.unwrap_or("string"), None),
        _ => "alice".into(),
    }
}

/// `--input` arguments for every required input of a playbook.
fn required_inputs(playbook: &Path) -> Vec<String> {
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(playbook).unwrap()).unwrap();
    let mut args = Vec::new();
    if let Some(inputs) = yaml.get("inputs").and_then(|i| i.as_mapping()) {
        for (name, decl) in inputs {
            if decl.get("default").is_some() {
                continue;
            }
            let ty = decl["type"].as_str().unwrap_or("string");
            let items = decl.get("items").and_then(|i| i.as_str());
            args.push("--input".to_owned());
            args.push(format!("{}={}", name.as_str().unwrap(), sample(ty, items)));
        }
    }
    args
}

#[test]
fn plan_lists_the_steps_in_order_with_their_iam_actions() {
    for pb in shipped_playbooks() {
        let name = pb.display().to_string();
        let mut args: Vec<String> = vec![
            "plan".into(),
            name.clone(),
            "--output".into(),
            "json".into(),
        ];
        args.extend(required_inputs(&pb));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = irr(&args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let plan = json_of(&out);

        let yaml: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&pb).unwrap()).unwrap();
        let declared: Vec<&str> = yaml["steps"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap())
            .collect();
        let steps = plan["steps"].as_array().unwrap();
        let ids: Vec<&str> = steps.iter().map(|s| s["id"].as_str().unwrap()).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        let mut want = declared.clone();
        want.sort_unstable();
        assert_eq!(sorted, want, "{name}: every step is planned once");

        // Execution order: a step comes after everything it needs, in a later group.
        let mut last_group = 0;
        for (i, s) in steps.iter().enumerate() {
            let group = s["group"].as_u64().unwrap();
            assert!(group >= last_group, "{name}: groups go up");
            last_group = group;
            for dep in s["needs"].as_array().unwrap() {
                let j = ids
                    .iter()
                    .position(|id| *id == dep.as_str().unwrap())
                    .unwrap_or_else(|| panic!("{name}: {dep} is not planned"));
                assert!(
                    j < i,
                    "{name}: {} planned before what it needs ({dep})",
                    ids[i]
                );
                assert!(steps[j]["group"].as_u64().unwrap() < group, "{name}");
            }
            let iam = s["iam_actions"].as_array().unwrap();
            if s["mutating"] == true {
                assert!(
                    !iam.is_empty(),
                    "{name}: {} changes AWS with no IAM action",
                    ids[i]
                );
            }
            for a in iam {
                let a = a.as_str().unwrap();
                assert!(
                    a.split_once(':')
                        .is_some_and(|(svc, op)| !svc.is_empty() && !op.is_empty()),
                    "{name}: {a} is not service:Action"
                );
            }
            assert!(
                !s["api_calls"].as_array().unwrap().is_empty(),
                "{name}: {}",
                ids[i]
            );
        }
        assert_eq!(
            plan["groups"].as_array().unwrap().len() as u64,
            last_group,
            "{name}: one group per level"
        );

        // The same plan as text.
        let mut text_args = args.clone();
        text_args.retain(|a| *a != "--output" && *a != "json");
        let out = irr(&text_args);
        assert_eq!(out.status.code(), Some(0));
        let text = String::from_utf8_lossy(&out.stdout);
        for id in &ids {
            assert!(text.contains(id), "{name}: text plan lacks {id}:\n{text}");
        }
        assert!(text.contains("IAM: "), "{text}");
    }
}

#[test]
fn policy_allows_exactly_what_the_plan_needs() {
    for pb in shipped_playbooks() {
        let name = pb.display().to_string();
        let out = irr(&["policy", &name]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let policy = json_of(&out);
        assert_eq!(policy["Version"], "2012-10-17", "{name}");
        let mut allowed: Vec<String> = Vec::new();
        for st in policy["Statement"].as_array().unwrap() {
            assert_eq!(st["Effect"], "Allow", "{name}");
            match &st["Action"] {
                Value::String(a) => allowed.push(a.clone()),
                Value::Array(a) => allowed.extend(a.iter().map(|x| x.as_str().unwrap().to_owned())),
                other => panic!("{name}: Action {other}"),
            }
            assert!(
                !allowed.iter().any(|a| a.contains('*')),
                "{name}: wildcard action"
            );
        }

        let mut args: Vec<String> = vec![
            "plan".into(),
            name.clone(),
            "--output".into(),
            "json".into(),
        ];
        args.extend(required_inputs(&pb));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let plan = json_of(&irr(&args));
        for s in plan["steps"]
            .as_array()
            .unwrap()
            .iter()
            .chain(plan["finally"].as_array().unwrap())
        {
            for a in s["iam_actions"].as_array().unwrap() {
                assert!(
                    allowed.iter().any(|x| x == a.as_str().unwrap()),
                    "{name}: policy lacks {a}"
                );
            }
        }
    }
}

#[test]
fn actions_lists_the_catalog() {
    let out = irr(&["actions", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let list = json_of(&out);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    for required in [
        "iam.grant_responder_access",
        "iam.revoke_responder_access",
        "ec2.snapshot_volumes",
        "ec2.isolate_instance",
        "evidence.capture",
        "control.approve",
    ] {
        assert!(names.contains(&required), "{names:?}");
    }
    let one = irr(&["actions", "ec2.snapshot_volumes", "--output", "json"]);
    assert_eq!(one.status.code(), Some(0));
    assert_eq!(json_of(&one)["name"], "ec2.snapshot_volumes");
    let text = irr(&["actions"]);
    assert_eq!(text.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&text.stdout).contains("ec2.isolate_instance"));
}

#[test]
fn schema_is_json() {
    let out = irr(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let schema = json_of(&out);
    assert_eq!(schema["type"], "object");
    assert!(schema["properties"]["steps"].is_object(), "{schema:#}");
}
