//! Every playbook that compiles for Step Functions (the shipped ones and the compiler's
//! fixtures) gives a definition `asl-validator` accepts and a stack `cfn-lint` reports nothing
//! on; a shipped playbook that does not compile is refused only for the documented reasons
//! (docs/step-functions.md, "Actions").
//!
//! `asl-validator`: `IRR_ASL_VALIDATOR`, else where `scripts/ensure-asl-validator` installs it;
//! `cfn-lint` from the PATH (`.ci/run` installs both).

use std::path::{Path, PathBuf};
use std::process::Command;

use irr_runner::diagnostic::Source;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn asl_validator() -> PathBuf {
    if let Some(p) = std::env::var_os("IRR_ASL_VALIDATOR") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
    home.join("irr/asl-validator/node_modules/.bin/asl-validator")
}

fn run(mut cmd: Command, what: &str) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {what} ({e}); install it: see scripts/ensure-asl-validator and .ci/run")
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn playbooks() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in ["playbooks", "runner/tests/fixtures/compile"] {
        for e in std::fs::read_dir(root().join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "yaml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_compiled_definition_and_stack_passes_the_linters() {
    let mut compiled = Vec::new();
    for path in playbooks() {
        let text = std::fs::read_to_string(&path).unwrap();
        let pb = irr_runner::validate::validate(&Source::new(path.display().to_string(), text))
            .unwrap_or_else(|d| panic!("{}: {d:?}", path.display()));
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        match irr_runner::compile::compile(&pb, serde_json::Map::new()) {
            Ok(c) => {
                let dir = tempfile::tempdir().unwrap();
                irr_runner::compile::write(dir.path(), &c).unwrap();
                let mut asl = Command::new(asl_validator());
                asl.arg("--json-path")
                    .arg(dir.path().join("state-machine.asl.json"));
                let (ok, out) = run(asl, "asl-validator");
                assert!(ok, "{name}: asl-validator: {out}");
                let mut lint = Command::new("cfn-lint");
                lint.arg(dir.path().join("stack.yaml"));
                let (ok, out) = run(lint, "cfn-lint");
                assert!(ok && out.trim().is_empty(), "{name}: cfn-lint: {out}");
                compiled.push(name);
            }
            Err(problems) => {
                // Only the shipped EC2 playbook is refused, for its documented actions.
                assert_eq!(name, "ec2-instance-compromise.yaml", "{name}: {problems:?}");
                let mut refused: Vec<String> = problems
                    .iter()
                    .map(|d| match d.message.split_once("action \"") {
                        Some((_, rest)) => rest.split('"').next().unwrap_or_default().to_owned(),
                        None if d.message.starts_with("trigger:")
                            && d.message.contains("a filter or wildcard") =>
                        {
                            "trigger filter".into()
                        }
                        None => d.message.clone(),
                    })
                    .collect();
                refused.sort();
                refused.dedup();
                assert_eq!(refused, ["ssm.capture_volatile"], "{problems:#?}");
            }
        }
    }
    for must in ["contain.yaml", "contain-fails.yaml", "contain-fleet.yaml"] {
        assert!(
            compiled.iter().any(|c| c == must),
            "{must} compiled: {compiled:?}"
        );
    }
}
