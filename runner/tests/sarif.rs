//! `irr validate --output sarif` against the SARIF 2.1.0 JSON schema (vendored in
//! `tests/schemas/sarif-schema-2.1.0.json`, the OASIS schema), and the stable diagnostic codes:
//! every diagnostic of every invalid fixture gets a specific rule id (never the catch-all
//! `IRR0000`), the same in `--output json`, and every rule is documented.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const IRR: &str = env!("CARGO_BIN_EXE_irr");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_owned()
}

fn invalid_fixtures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("tests/fixtures/invalid"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

fn sarif_validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_slice(
        &std::fs::read(root().join("tests/schemas/sarif-schema-2.1.0.json")).unwrap(),
    )
    .unwrap();
    jsonschema::validator_for(&schema).expect("the SARIF schema compiles")
}

fn validate(args: &[&str], files: &[PathBuf]) -> (Option<i32>, Value) {
    let out = Command::new(IRR)
        .arg("validate")
        .args(files)
        .args(args)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), v)
}

#[test]
fn sarif_of_every_invalid_fixture_validates_against_the_sarif_schema() {
    let v = sarif_validator();
    let files = invalid_fixtures();
    assert!(files.len() > 100);
    let (code, log) = validate(&["--output", "sarif"], &files);
    assert_eq!(code, Some(2));
    let errors: Vec<String> = v
        .iter_errors(&log)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "SARIF schema errors: {errors:#?}");
    assert_eq!(log["version"], "2.1.0");
    let run = &log["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    let results = run["results"].as_array().unwrap();
    assert!(results.len() >= files.len(), "{} results", results.len());
    for r in results {
        let id = r["ruleId"].as_str().unwrap();
        assert!(id.len() == 7 && id.starts_with("IRR"), "{r:#}");
        assert_ne!(
            id, "IRR0000",
            "a fixture diagnostic has no specific rule: {r:#}"
        );
        let idx = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[idx]["id"], id);
        assert!(
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
                .as_str()
                .unwrap()
                .ends_with(".yaml")
        );
    }
    // A mutated log does not validate: the check can fail.
    let mut bad = log.clone();
    bad["runs"][0]["results"][0]["level"] = Value::String("fatal".into());
    assert!(!v.is_valid(&bad));
}

#[test]
fn json_output_carries_the_same_codes_and_a_clean_playbook_gives_an_empty_sarif_run() {
    let files = invalid_fixtures();
    let (_, sarif) = validate(&["--output", "sarif"], &files);
    let (_, json) = validate(&["--output", "json"], &files);
    let from_sarif: Vec<&str> = sarif["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ruleId"].as_str().unwrap())
        .collect();
    let from_json: Vec<&str> = json["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap())
        .collect();
    assert_eq!(from_sarif, from_json);
    let shipped = root().join("../playbooks/ec2-instance-compromise.yaml");
    let (code, log) = validate(&["--output", "sarif"], &[shipped]);
    assert_eq!(code, Some(0));
    assert!(sarif_validator().is_valid(&log));
    assert_eq!(log["runs"][0]["results"].as_array().unwrap().len(), 0);
}

#[test]
fn every_rule_is_documented_in_the_playbook_reference() {
    let doc = std::fs::read_to_string(root().join("../docs/playbook-reference.md")).unwrap();
    for r in irr_runner::diagnostic::RULES {
        assert!(
            doc.contains(&format!("| `{}` | `{}` |", r.id, r.name)),
            "{} ({}) is not in the table of docs/playbook-reference.md",
            r.id,
            r.name
        );
    }
}

#[test]
fn sarif_is_only_for_validate() {
    let out = Command::new(IRR)
        .args(["--output", "sarif", "actions"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
