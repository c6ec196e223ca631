//! Secrets stay out (issue 8, item 8), end to end against the emulator.
//!
//! A playbook with a `secret: true` input used in an `evidence.capture` content and as a
//! CloudFormation parameter the template declares `NoEcho`, plus a `NoEcho` parameter whose
//! value is only in the playbook (not an input), plus a stack output that echoes the secret
//! back. The run is killed after its first step, `irr resume` is refused without the secret
//! (naming it, changing nothing), then resumed with it from the environment. Afterwards
//! every file under the state directory and the evidence bundle, every command's stdout and
//! stderr, `irr plan` and the report in md, json and html are searched for the secret values:
//! none holds one. `run.json` holds no secret input. A value given with `--input` that looks
//! like a template arrives verbatim. A secret echoed back in an AWS error message is masked.

use std::path::Path;
use std::process::Output;

use irr_tests::{json_lines, output_text};
use serde_json::Value;

/// The secret input's value: distinctive, with characters that JSON and URLs escape.
const SECRET: &str = "Hunter2-s3cr3t/\"q\" &x=1";
/// A NoEcho parameter's value written in the playbook (not an input).
const NO_ECHO_LITERAL: &str = "nO-eCh0-l1teral-7f3a9c";
/// A value given with `--input` that looks like a template: data, never rendered.
const TEMPLATE_LOOKING: &str = "{{case.id}} and {{#each steps}}x{{/each}}";

const TEMPLATE: &str = r#"AWSTemplateFormatVersion: "2010-09-09"
Description: irr secrets test
Parameters:
  DbPassword:
    Type: String
    NoEcho: true
  ApiKey:
    Type: String
    NoEcho: "true"
  Label:
    Type: String
Resources:
  Queue:
    Type: AWS::SQS::Queue
Outputs:
  Echo:
    Value: !Ref DbPassword
  EchoKey:
    Value: !Ref ApiKey
"#;

fn playbook_text() -> String {
    format!(
        r#"apiVersion: irr/v1
kind: Playbook
metadata: {{name: secrets-test, version: 1.0.0}}
inputs:
  db_password:
    type: string
    secret: true
  label:
    type: string
steps:
  - id: note
    action: evidence.capture
    with:
      name: note.txt
      content: "password [{{{{inputs.db_password}}}}] label [{{{{inputs.label}}}}] case [{{{{case.id}}}}]"
  - id: stack
    action: cloudformation.deploy_stack
    needs: [note]
    with:
      stack_name: "irr-secret-{{{{case.id}}}}"
      template: stack.yaml
      parameters:
        db_password: "{{{{inputs.db_password}}}}"
        api_key: {NO_ECHO_LITERAL}
        label: "{{{{inputs.label}}}}"
  - id: echo
    action: evidence.capture
    needs: [stack]
    with:
      name: outputs.json
      content: "{{{{steps.stack.outputs.outputs}}}}"
"#
    )
}

fn irr(args: &[&str], state: &Path, env: &[(&str, &str)]) -> Output {
    irr_tests::irr_with(
        args,
        state,
        &irr_tests::endpoint(),
        ("testing", "testing"),
        env,
    )
}

/// The forms a secret could be written in: as is, JSON-escaped, HTML-escaped (the html
/// report), and its distinctive core (a form-encoded or otherwise escaped copy still holds it).
fn forms(secret: &str) -> Vec<String> {
    let json = serde_json::to_string(secret).unwrap();
    let html = secret
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;");
    let core: String = secret
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let mut f = vec![secret.to_owned(), json[1..json.len() - 1].to_owned(), html];
    if core.len() >= 8 {
        f.push(core);
    }
    f.dedup();
    f
}

fn contains(hay: &[u8], needle: &str) -> bool {
    let n = needle.as_bytes();
    hay.windows(n.len()).any(|w| w == n)
}

/// Every file under `dir` (recursively) that holds one of `secrets`.
fn files_holding(dir: &Path, secrets: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    let mut files = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            files += 1;
            let bytes = std::fs::read(&p).unwrap();
            for s in secrets {
                for f in forms(s) {
                    if contains(&bytes, &f) {
                        found.push(format!("{} holds {f:?}", p.display()));
                    }
                }
            }
        }
    }
    assert!(files > 0, "nothing under {}", dir.display());
    found
}

fn assert_clean(what: &str, out: &Output, secrets: &[&str]) {
    for s in secrets {
        for f in forms(s) {
            assert!(
                !contains(&out.stdout, &f) && !contains(&out.stderr, &f),
                "{what} shows {f:?}:\n{}",
                output_text(out)
            );
        }
    }
}

/// The plan, in text and JSON, masks both the secret input and the NoEcho literal, and shows
/// the template-looking value as given.
fn plans_mask_the_secrets(
    pb_s: &str,
    case: &str,
    secret_pair: &str,
    label: &str,
    state: &std::path::Path,
    all: &[&str],
) {
    for output in ["text", "json"] {
        let plan = irr(
            &[
                "plan",
                pb_s,
                "--case",
                case,
                "--input",
                secret_pair,
                "--input",
                label,
                "--output",
                output,
            ],
            state,
            &[],
        );
        assert!(plan.status.success(), "{}", output_text(&plan));
        assert_clean("irr plan", &plan, all);
        assert!(
            String::from_utf8_lossy(&plan.stdout).contains("***"),
            "the plan shows the masked values: {}",
            output_text(&plan)
        );
        // The template-looking value is shown as given, not rendered.
        let text = String::from_utf8_lossy(&plan.stdout).replace("\\\"", "\"");
        assert!(
            text.contains(TEMPLATE_LOOKING),
            "plan renders an input value: {}",
            output_text(&plan)
        );
    }
}

/// Resume without the secret: refused, naming it and how to give it; nothing changed.
fn resume_without_the_secret_is_refused(
    run_id: &str,
    run_dir: &std::path::Path,
    state: &std::path::Path,
) {
    let journal_before = std::fs::read(run_dir.join("journal.jsonl")).unwrap();
    let refused = irr(&["resume", run_id, "--yes"], state, &[]);
    assert_eq!(refused.status.code(), Some(2), "{}", output_text(&refused));
    let msg = String::from_utf8_lossy(&refused.stderr);
    assert!(
        msg.contains("db_password")
            && msg.contains("IRR_INPUT_DB_PASSWORD")
            && msg.contains("nothing was changed"),
        "{}",
        output_text(&refused)
    );
    assert_eq!(
        std::fs::read(run_dir.join("journal.jsonl")).unwrap(),
        journal_before,
        "a refused resume wrote to the journal"
    );
}

/// The stack is complete, Label verbatim, the NoEcho ones hidden (or, where the emulator shows
/// them, exactly the values given).
fn assert_stack_got_the_real_values(stack: &aws_sdk_cloudformation::types::Stack) {
    assert_eq!(
        stack.stack_status().map(|s| s.as_str()),
        Some("CREATE_COMPLETE")
    );
    let param = |k: &str| {
        stack
            .parameters()
            .iter()
            .find(|p| p.parameter_key() == Some(k))
            .and_then(|p| p.parameter_value())
            .map(str::to_owned)
    };
    assert_eq!(param("Label").as_deref(), Some(TEMPLATE_LOOKING));
    let pw = param("DbPassword").unwrap();
    assert!(
        pw == "****" || pw == SECRET,
        "DbPassword reached AWS as {pw:?}"
    );
    let key = param("ApiKey").unwrap();
    assert!(
        key == "****" || key == NO_ECHO_LITERAL,
        "ApiKey reached AWS as {key:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_inputs_and_no_echo_parameters_never_reach_disk_output_or_report() {
    let dir = tempfile::tempdir().unwrap();
    let pb = dir.path().join("secrets.yaml");
    std::fs::write(&pb, playbook_text()).unwrap();
    std::fs::write(dir.path().join("stack.yaml"), TEMPLATE).unwrap();
    let state = dir.path().join("state");
    let evidence = dir.path().join("evidence");
    let case = irr_tests::unique("IR-secret");
    let pb_s = pb.to_str().unwrap();
    let label = format!("label={TEMPLATE_LOOKING}");
    let secret_pair = format!("db_password={SECRET}");
    let all = [SECRET, NO_ECHO_LITERAL];

    // The plan masks both the secret input and the NoEcho literal.
    plans_mask_the_secrets(pb_s, &case, &secret_pair, &label, &state, &all);

    // The run, killed right after the first step finished (journal entry 4: run_started,
    // step_started, evidence_captured, step_finished).
    let killed = irr(
        &[
            "run",
            pb_s,
            "--case",
            &case,
            "--input",
            &secret_pair,
            "--input",
            &label,
            "--evidence",
            evidence.to_str().unwrap(),
            "--yes",
            "--output",
            "json",
        ],
        &state,
        &[("IRR_FAULT_KILL_AT_SEQ", "4")],
    );
    assert_eq!(killed.status.code(), None, "{}", output_text(&killed));
    assert_clean("irr run", &killed, &all);
    let run_id = json_lines(&killed)
        .first()
        .and_then(|e| e["run_id"].as_str().map(str::to_owned))
        .expect("run_started was printed");
    let run_dir = state.join("runs").join(&run_id);

    // run.json: no secret input value, but the name, so resume knows to ask.
    let record: Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("run.json")).unwrap()).unwrap();
    assert!(record["inputs"].get("db_password").is_none(), "{record}");
    assert_eq!(record["inputs"]["label"], TEMPLATE_LOOKING, "{record}");
    assert_eq!(record["secret_inputs"], serde_json::json!(["db_password"]));

    // Resume without the secret: refused, naming it and how to give it; nothing changed.
    resume_without_the_secret_is_refused(&run_id, &run_dir, &state);
    let cfn = aws_sdk_cloudformation::Client::new(&irr_tests::sdk_config().await);
    let stack_name = format!("irr-secret-{case}").replace(['_', '.'], "-");
    let before = cfn.describe_stacks().stack_name(&stack_name).send().await;
    assert!(before.is_err(), "the stack exists before the resume");

    // Resume with the secret from the environment.
    let resumed = irr(
        &["resume", &run_id, "--yes", "--output", "json"],
        &state,
        &[("IRR_INPUT_DB_PASSWORD", SECRET)],
    );
    assert_clean("irr resume", &resumed, &all);
    let last = json_lines(&resumed).pop().expect("events");
    assert_eq!(
        last["status"],
        "succeeded",
        "resume failed: {}",
        output_text(&resumed)
    );

    // AWS got the real values: the stack exists, Label verbatim, the NoEcho ones hidden (or,
    // where the emulator shows them, exactly the values given).
    let stacks = cfn
        .describe_stacks()
        .stack_name(&stack_name)
        .send()
        .await
        .unwrap();
    let stack = &stacks.stacks()[0];
    assert_stack_got_the_real_values(stack);
    // The stack's outputs echo the secret back to irr (the emulator resolves the Ref).
    let echoed: Vec<String> = stack
        .outputs()
        .iter()
        .filter_map(|o| o.output_value().map(str::to_owned))
        .collect();

    // The evidence: the note holds the label verbatim and the case id, the secret masked.
    let bundle = evidence.join(&case).join(&run_id);
    let note = std::fs::read_to_string(bundle.join("artifacts/note/note.txt")).unwrap();
    assert_eq!(
        note,
        format!("password [***] label [{TEMPLATE_LOOKING}] case [{case}]")
    );
    let outputs = std::fs::read_to_string(bundle.join("artifacts/echo/outputs.json")).unwrap();
    assert!(outputs.contains("Echo"), "{outputs}");
    if echoed.iter().any(|v| v == SECRET) {
        assert!(
            outputs.contains("***"),
            "the echoed output is masked: {outputs}"
        );
    }
    let verify = irr(
        &["evidence", "verify", bundle.to_str().unwrap()],
        &state,
        &[],
    );
    assert!(verify.status.success(), "{}", output_text(&verify));

    // Reports in every format.
    for format in ["md", "json", "html"] {
        let report = irr(&["report", &run_id, "--format", format], &state, &[]);
        assert!(
            !report.stdout.is_empty(),
            "empty {format} report: {}",
            output_text(&report)
        );
        assert_clean(&format!("the {format} report"), &report, &all);
    }

    // Nothing on disk: the state directory (run.json, journal, staging) and the evidence.
    let leaks = files_holding(&state, &all);
    assert!(leaks.is_empty(), "{leaks:#?}");
    let leaks = files_holding(&evidence, &all);
    assert!(leaks.is_empty(), "{leaks:#?}");
    // And the journal still says the calls were made (masked, not dropped).
    let journal = std::fs::read_to_string(run_dir.join("journal.jsonl")).unwrap();
    assert!(journal.contains("\"CreateStack\""), "{journal}");
    assert!(journal.contains("***"), "{journal}");
}

/// A secret echoed back by AWS in an error message (the id of an instance that does not
/// exist) is masked in the journal, the output and the evidence; a secret that does not fit
/// its type is refused without being shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_in_an_aws_error_message_is_masked() {
    let dir = tempfile::tempdir().unwrap();
    let pb = dir.path().join("err.yaml");
    std::fs::write(
        &pb,
        r#"apiVersion: irr/v1
kind: Playbook
metadata: {name: secret-error, version: 1.0.0}
inputs:
  target: {type: instance_id, secret: true}
steps:
  - id: protect
    action: ec2.protect_instance
    with: {instance_id: "{{inputs.target}}"}
"#,
    )
    .unwrap();
    let state = dir.path().join("state");
    let evidence = dir.path().join("evidence");
    let secret = "i-0feedfacecafe0123";
    let case = irr_tests::unique("IR-secret-err");
    let pb_s = pb.to_str().unwrap();

    let bad = irr(
        &[
            "run",
            pb_s,
            "--case",
            &case,
            "--yes",
            "--input",
            "target=not-an-instance-x9",
        ],
        &state,
        &[],
    );
    assert_eq!(bad.status.code(), Some(2), "{}", output_text(&bad));
    assert_clean("a refused secret", &bad, &["not-an-instance-x9"]);
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("target"),
        "{}",
        output_text(&bad)
    );

    let out = irr(
        &[
            "run",
            pb_s,
            "--case",
            &case,
            "--yes",
            "--output",
            "json",
            "--evidence",
            evidence.to_str().unwrap(),
        ],
        &state,
        &[("IRR_INPUT_TARGET", secret)],
    );
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_clean("irr run", &out, &[secret]);
    let events = json_lines(&out);
    let failed = events
        .iter()
        .find(|e| e["event"] == "step_finished" && e["id"] == "protect")
        .expect("step_finished");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.contains("***"), "the error is kept, masked: {error}");
    let leaks = files_holding(&state, &[secret]);
    assert!(leaks.is_empty(), "{leaks:#?}");
    let leaks = files_holding(&evidence, &[secret]);
    assert!(leaks.is_empty(), "{leaks:#?}");
}
