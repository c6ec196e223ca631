//! Control actions: moves that involve the responder rather than AWS.

use std::io::{BufRead, IsTerminal, Write};

use schemars::JsonSchema;
use serde::Deserialize;

use crate::catalog::decl::*;
use crate::catalog::{Declaration, TypeSpec};

use super::{Action, ActionCtx, ActionError, ActionOutput};

/// Parameters of `control.approve`.
///
/// Each field's doc comment is the parameter's description in the catalog.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveParams {
    /// the question
    // Put to the responder.
    pub prompt: String,
}

/// `control.approve`: its declaration (see [`Action`]); the parameters are [`ApproveParams`].
pub struct Approve;

impl Action for Approve {
    type Params = ApproveParams;
    const DECLARATION: Declaration = Declaration {
        name: "control.approve",
        summary: "stop for a human yes/no (auto-approved with --yes and in drills)",
        exactly_one_of: &[],
        outputs: &[out("approved_by", TypeSpec::String, "who approved")],
        api_calls: &[],
        permissions: &[],
        mutating: false,
        idempotency: "an approval is asked again on resume unless it was recorded",
        undo: None,
    };
    async fn run(ctx: &ActionCtx, params: ApproveParams) -> Result<ActionOutput, ActionError> {
        approve(ctx, params).await
    }
}

/// `control.approve`: stops for a human yes/no.
///
/// Auto-approved with `--yes` (`ctx.assume_yes`, also set by drills) and in a dry run (which
/// changes nothing, so there is nothing to approve). Otherwise asks on the terminal; without a
/// terminal (CI, cron, a pipe) it refuses rather than guess. Output `approved_by`.
pub async fn approve(ctx: &ActionCtx, p: ApproveParams) -> Result<ActionOutput, ActionError> {
    if ctx.assume_yes {
        return Ok(ActionOutput::default().with("approved_by", "auto (--yes)"));
    }
    if ctx.dry_run {
        return Ok(ActionOutput::default().with("approved_by", "dry run (not asked)"));
    }
    if !std::io::stdin().is_terminal() {
        return Err(ActionError::Declined(format!(
            "{}: no terminal to ask on; run with --yes to approve in advance",
            p.prompt
        )));
    }
    let prompt = p.prompt.clone();
    let answer = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        // The one place an action talks to the terminal: the question must reach the human.
        let mut err = std::io::stderr().lock();
        write!(err, "{prompt} [y/N] ")?;
        err.flush()?;
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        Ok(line)
    })
    .await
    .map_err(|e| ActionError::Declined(format!("{}: {e}", p.prompt)))?
    .map_err(|e| ActionError::Declined(format!("{}: {e}", p.prompt)))?;
    if is_yes(&answer) {
        let who = std::env::var("USER")
            .or_else(|_| std::env::var("USERNAME"))
            .unwrap_or_else(|_| "unknown user".to_owned());
        Ok(ActionOutput::default().with("approved_by", format!("{who} (terminal)")))
    } else {
        Err(ActionError::Declined(p.prompt))
    }
}

fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

#[cfg(test)]
mod tests {
    use super::is_yes;

    #[test]
    fn only_explicit_yes_approves() {
        assert!(is_yes("y\n"));
        assert!(is_yes(" YES "));
        assert!(!is_yes("\n"));
        assert!(!is_yes("n"));
        assert!(!is_yes("yep"));
    }
}
