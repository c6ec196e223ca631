//! What happens during a run, as typed events.
//!
//! The executor emits [`RunEvent`]s; the consumers are the journal (every event, durably),
//! the terminal view and the JSON Lines output of `--output json` (see `crate::reporter`).
//! Event names and fields are part of the CLI contract (`run_started`, `step_started`,
//! `step_finished`, `evidence_captured`, ..., and `run_finished` last).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::actions::{AwsResource, CallOutcome, Gap};

/// The status of a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Ran and succeeded.
    Succeeded,
    /// Ran and failed (after its retries).
    Failed,
    /// Not run: `when` was false, or a step it needs did not succeed, or the run aborted.
    Skipped,
}

impl StepStatus {
    /// As in templates (`steps.ID.status`).
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
        }
    }
}

/// The status of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every step succeeded or was skipped by its `when`.
    Succeeded,
    /// A step failed.
    Failed,
    /// Stopped by the responder (Ctrl-C, a declined approval or confirmation).
    Aborted,
}

impl RunStatus {
    /// The worse of the two (succeeded < failed < aborted): a fan-out's status over its
    /// children.
    pub fn max_severity(self, other: RunStatus) -> RunStatus {
        let rank = |s: RunStatus| match s {
            RunStatus::Succeeded => 0,
            RunStatus::Failed => 1,
            RunStatus::Aborted => 2,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

/// One step's result, as the summary reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepSummary {
    /// Step id.
    pub id: String,
    /// Status.
    pub status: StepStatus,
    /// Attempts made (0 when skipped).
    pub attempts: u32,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The step's outputs (a list in item order for `for_each`).
    #[serde(default)]
    pub outputs: Value,
    /// Why it failed or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The evidence part of the summary.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EvidenceSummary {
    /// Where the run's evidence is (`LOCATION/CASE/RUN/`).
    pub location: String,
    /// SHA-256 of the sealed manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_sha256: Option<String>,
    /// Number of items sealed.
    pub items: usize,
    /// Why sealing failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The key that signed the seal (`sha256:HEX`), when it was signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    /// Why the sealed run could not be signed (the seal itself is intact; `irr evidence sign`
    /// signs it afterwards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_error: Option<String>,
}

/// One event of a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    /// The run began (or resumed).
    RunStarted {
        /// Run id.
        run_id: String,
        /// Case id.
        case_id: String,
        /// Playbook name.
        playbook: String,
        /// Playbook version.
        version: String,
        /// SHA-256 of the playbook file.
        playbook_sha256: String,
        /// Dry run.
        dry_run: bool,
        /// `true` when this is `irr resume`.
        resumed: bool,
        /// Who the AWS credentials belong to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        aws_principal: Option<String>,
    },
    /// A step (or one item of a `for_each` step) started an attempt.
    StepStarted {
        /// Step id.
        step: String,
        /// 1-based attempt.
        attempt: u32,
        /// `for_each` item index.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        item: Option<usize>,
    },
    /// An attempt failed and will be retried.
    StepRetrying {
        /// Step id.
        step: String,
        /// The attempt that failed.
        attempt: u32,
        /// Why.
        error: String,
        /// Wait before the next attempt.
        delay_ms: u64,
    },
    /// A mutating AWS call is about to be made (journaled before the call).
    CallStarted {
        /// Journal-wide call number.
        call: u64,
        /// Step id.
        step: String,
        /// e.g. `ec2`.
        service: String,
        /// e.g. `CreateSnapshot`.
        operation: String,
        /// Key parameters (never secrets).
        params: Value,
    },
    /// A mutating AWS call ended.
    CallFinished {
        /// The call number of its `call_started`.
        call: u64,
        /// Outcome.
        #[serde(flatten)]
        outcome: CallOutcome,
    },
    /// An artifact was stored.
    EvidenceCaptured {
        /// Step id.
        step: String,
        /// Path in the bundle.
        path: String,
        /// SHA-256 of its bytes.
        sha256: String,
        /// Size in bytes.
        size: u64,
        /// What it came from.
        source: String,
    },
    /// An AWS resource was made or used (snapshot, group, role, stack).
    ResourceRecorded {
        /// Step id.
        step: String,
        /// The resource.
        resource: AwsResource,
    },
    /// An optional read failed: the evidence lacks `what` (a warning; the step goes on).
    GapRecorded(Gap),
    /// A step ended.
    StepFinished(StepSummary),
    /// Something worth telling the responder.
    Note {
        /// The message.
        message: String,
    },
    /// The run's evidence was sealed.
    EvidenceSealed(EvidenceSummary),
    /// The run ended; always the last event.
    RunFinished {
        /// Run id.
        run_id: String,
        /// Case id.
        case_id: String,
        /// Status.
        status: RunStatus,
        /// Every step.
        steps: Vec<StepSummary>,
        /// The evidence.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        evidence: Option<EvidenceSummary>,
        /// Optional reads that failed (what the evidence lacks): warnings.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        gaps: Vec<Gap>,
    },
}
