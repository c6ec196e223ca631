//! `control.approve` as a `.waitForTaskToken` callback: the question and the task token are
//! published to the stack's approval topic (`ApprovalTopicArn`), and the execution waits for
//! `irr approve TOKEN --yes|--no` (Step Functions' `SendTaskSuccess` / `SendTaskFailure`),
//! closed after the step's `timeout` (default 1 h): no answer is a refusal.

use serde_json::json;

use super::asl::Seq;
use super::{Params, Refusal, Translated};

/// How long an approval waits without a `timeout` on the step.
const DEFAULT_WAIT_SECONDS: u64 = 3600;

/// `control.approve`.
pub fn approve(id: &str, p: &Params) -> Result<Translated, Refusal> {
    let prompt = p.required("prompt")?;
    let mut params = serde_json::Map::new();
    params.insert("TopicArn".into(), json!("${ApprovalTopicArn}"));
    params.insert("Subject".into(), json!("irr: an approval is needed"));
    params.insert(
        "Message.$".into(),
        json!(format!(
            "States.Format('{{}} (case {{}}, execution {{}}, step {id}). Answer with: irr approve {{}} --yes (or --no)', {}, $.case_id, $$.Execution.Name, $$.Task.Token)",
            prompt.arg()
        )),
    );
    let mut seq = Seq::default();
    seq.push(
        format!("{id}: ask"),
        json!({
            "Type": "Task",
            "Resource": "arn:aws:states:::sns:publish.waitForTaskToken",
            "Parameters": params,
            "TimeoutSeconds": p.timeout.unwrap_or(DEFAULT_WAIT_SECONDS),
            "ResultSelector": {"approved_by.$": "$.approved_by"},
            "ResultPath": "$.r",
        }),
    );
    seq.push(
        format!("{id}: outputs"),
        json!({"Type": "Pass", "Parameters": {"approved_by.$": "$.r.approved_by"}, "End": true}),
    );
    Ok(Translated {
        branch: seq.finish(),
        outputs: vec!["approved_by"],
    })
}
