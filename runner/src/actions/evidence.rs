//! `evidence.capture`: store an artifact in the run's evidence. Declared here like every
//! action; run by the executor itself (`executor::evidence_capture`), which writes to the run's
//! evidence store directly.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::{Action, ActionCtx, ActionError, ActionOutput};
use crate::catalog::decl::*;
use crate::catalog::{Declaration, TypeSpec};

/// Parameters of `evidence.capture`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptureParams {
    /// file name under artifacts/STEP_ID/
    pub name: String,
    /// a value to store (JSON, pretty-printed; a string is stored as is)
    pub content: Option<Value>,
    /// a file to store (path relative to the playbook)
    pub file: Option<String>,
}

/// `evidence.capture`: its declaration (see [`Action`]); the parameters are [`CaptureParams`].
pub struct Capture;

impl Action for Capture {
    type Params = CaptureParams;
    const DECLARATION: Declaration = Declaration {
        name: "evidence.capture",
        summary: "store an artifact in the run's evidence, hashed while it is written",
        exactly_one_of: &[&["content", "file"]],
        outputs: &[
            out("path", TypeSpec::String, "path in the evidence bundle"),
            out("sha256", TypeSpec::String, "SHA-256 of the stored bytes"),
        ],
        api_calls: &[],
        permissions: &[],
        mutating: false,
        idempotency: "the same name in the same step replaces the artifact before sealing",
        undo: None,
    };
    const RUN_BY_EXECUTOR: bool = true;

    /// Never called: the executor runs `evidence.capture` itself.
    async fn run(_ctx: &ActionCtx, _params: CaptureParams) -> Result<ActionOutput, ActionError> {
        Err(ActionError::Params(
            "action `evidence.capture` is not implemented by actions::dispatch".into(),
        ))
    }
}
