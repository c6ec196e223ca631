//! `irr schema` agrees with the validator: the shipped playbooks and the valid fixtures
//! validate against it, and playbooks with structural mistakes do not.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn schema() -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_irr"))
        .arg("schema")
        .output()
        .expect("irr runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("irr schema prints JSON")
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&schema()).expect("irr schema is a valid JSON Schema")
}

/// A playbook as the JSON a schema-aware editor sees.
fn as_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_owned()
}

fn yaml_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

fn errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect()
}

#[test]
fn shipped_playbooks_and_valid_fixtures_fit_the_schema() {
    let v = validator();
    let mut files = yaml_in(&root().join("../playbooks"));
    assert!(!files.is_empty());
    files.extend(yaml_in(&root().join("tests/fixtures/valid")));
    for f in files {
        let errs = errors(&v, &as_json(&f));
        assert!(errs.is_empty(), "{}:\n{}", f.display(), errs.join("\n"));
    }
}

#[test]
fn structural_mistakes_fail_the_schema() {
    let v = validator();
    let dir = root().join("tests/fixtures/invalid");
    for name in [
        "top-unknown-key",
        "step-unknown-key",
        "metadata-unknown-key",
        "input-unknown-key",
        "evidence-unknown-key",
        "action-unknown-didyoumean",
        "apiversion-wrong",
        "apiversion-missing",
        "kind-wrong",
        "steps-empty",
        "steps-missing",
        "on-failure-ignore",
        "retries-negative",
        "needs-string",
        "param-unknown",
        "param-missing",
        "metadata-name-uppercase",
        "trigger-unknown-key",
        "trigger-bad-path",
    ] {
        let doc = as_json(&dir.join(format!("{name}.yaml")));
        assert!(!v.is_valid(&doc), "{name} passes the schema");
    }
}
