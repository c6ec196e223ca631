//! The checked playbook: what [`crate::validate`] produces and every later stage consumes.
//!
//! Only a validated playbook exists as a [`Playbook`]: every action is in the catalog, every
//! parameter is declared and typed, every `needs` and template reference resolves, and the
//! step graph has no cycle.

use std::time::Duration;

use serde_json::Value;

use crate::catalog::ActionSpec;
use crate::diagnostic::{Source, Span};
use crate::types::ValueType;

/// A validated playbook.
#[derive(Clone, Debug)]
pub struct Playbook {
    /// The file it came from.
    pub source: Source,
    /// SHA-256 of the file's bytes (recorded in the evidence manifest).
    pub sha256: String,
    /// `metadata`.
    pub metadata: Metadata,
    /// `inputs`, in file order.
    pub inputs: Vec<InputDecl>,
    /// `evidence`.
    pub evidence: EvidenceDecl,
    /// `targets`: the accounts and regions the run fans out to (`None`: the caller's own).
    pub targets: Option<crate::targets::TargetsDecl>,
    /// `steps`, in file order.
    pub steps: Vec<Step>,
    /// `finally`, in file order.
    pub finally: Vec<Step>,
    /// `trigger`: the findings that start it and how they map onto its inputs.
    pub trigger: Option<Trigger>,
}

impl Playbook {
    /// The input declared as `name`.
    pub fn input(&self, name: &str) -> Option<&InputDecl> {
        self.inputs.iter().find(|i| i.name == name)
    }

    /// The step (in `steps` or `finally`) with this id.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().chain(&self.finally).find(|s| s.id == id)
    }

    /// The names of the inputs declared `secret: true`.
    pub fn secret_inputs(&self) -> impl Iterator<Item = &str> {
        self.inputs
            .iter()
            .filter(|i| i.secret)
            .map(|i| i.name.as_str())
    }

    /// Whether the value of input `name` is rendered as a template: only a default is (a
    /// value given with `--input`, an inputs file or the environment is data, never
    /// rendered). `defaulted` lists the inputs that took their default; without it (a run
    /// recorded before that list existed) a value equal to the declared default counts.
    pub fn renders_input(&self, name: &str, value: &Value, defaulted: Option<&[String]>) -> bool {
        match defaulted {
            Some(d) => d.iter().any(|n| n == name),
            None => self
                .input(name)
                .and_then(|i| i.default.as_ref())
                .is_some_and(|d| d == value),
        }
    }

    /// Every step: `steps`, then `finally`.
    pub fn all_steps(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().chain(&self.finally)
    }
}

/// `metadata`.
#[derive(Clone, Debug)]
pub struct Metadata {
    /// `[a-z0-9][a-z0-9-]*`.
    pub name: String,
    /// Semver.
    pub version: String,
    /// What the playbook is for.
    pub description: Option<String>,
    /// Who owns it.
    pub owner: Option<String>,
    /// Free labels.
    pub labels: Vec<String>,
}

/// One declared input.
#[derive(Clone, Debug)]
pub struct InputDecl {
    /// Name (`inputs.NAME`).
    pub name: String,
    /// Type.
    pub ty: ValueType,
    /// What it is.
    pub description: Option<String>,
    /// Default; an input without one is required. May hold templates.
    pub default: Option<Value>,
    /// `secret: true`: its value is masked wherever the run writes (journal, evidence,
    /// output, report) and never stored (`run.json` included). Never has a default.
    pub secret: bool,
    /// Where it is declared.
    pub span: Span,
}

/// S3 Object Lock mode for evidence objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    /// Can be lifted by a principal with `s3:BypassGovernanceRetention`.
    Governance,
    /// Cannot be lifted by anyone until retention ends.
    Compliance,
}

/// `evidence`: where evidence goes by default.
#[derive(Clone, Debug)]
pub struct EvidenceDecl {
    /// `s3://bucket/prefix` or a local directory; may hold templates.
    pub location: Option<String>,
    /// Object Lock retention in days (default 90).
    pub retention_days: u32,
    /// Object Lock mode (default governance).
    pub lock_mode: LockMode,
    /// `signing_key`: a KMS key ARN or a PEM private key file (relative to the playbook's
    /// folder) that signs each seal.
    pub signing_key: Option<String>,
}

impl Default for EvidenceDecl {
    fn default() -> Self {
        EvidenceDecl {
            location: None,
            retention_days: 90,
            lock_mode: LockMode::Governance,
            signing_key: None,
        }
    }
}

/// What happens to the run when a step fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Stop starting new steps; run `finally`; the run fails.
    Abort,
    /// Record the failure; steps that need this one are skipped, others go on.
    Continue,
}

/// One step.
#[derive(Clone, Debug)]
pub struct Step {
    /// Unique id.
    pub id: String,
    /// The catalog entry.
    pub action: &'static ActionSpec,
    /// What it is for.
    pub description: Option<String>,
    /// Parameters as written (strings may hold templates).
    pub with: serde_json::Map<String, Value>,
    /// Steps that must succeed first: the explicit `needs` plus every step whose outputs or
    /// status it references.
    pub needs: Vec<String>,
    /// Steps that must have ended (in any status) first: those whose `status` it reads.
    pub after: Vec<String>,
    /// Skip unless this renders to true.
    pub when: Option<Value>,
    /// Per attempt.
    pub timeout: Option<Duration>,
    /// Re-tries of a failed attempt.
    pub retries: u32,
    /// Abort or continue.
    pub on_failure: OnFailure,
    /// A list (or a template rendering to one): run once per item.
    pub for_each: Option<Value>,
    /// Declared under `finally`.
    pub is_finally: bool,
    /// Where the step starts in the file.
    pub span: Span,
}

/// `trigger:`: which findings start the playbook, and how a finding becomes its inputs and
/// its target (account, region). `irr run --finding FILE` evaluates it (`crate::finding`);
/// the Step Functions compiler turns the same mapping into its EventBridge rule (one rule per
/// source, each with that source's paths), which is why each source may carry its own paths.
#[derive(Clone, Debug)]
pub struct Trigger {
    /// `trigger.guardduty`: GuardDuty findings of these types.
    pub guardduty: Option<GuardDutyTrigger>,
    /// `trigger.securityhub`: Security Hub (ASFF) findings.
    pub securityhub: Option<SecurityHubTrigger>,
    /// `trigger.inputs` and `trigger.targets`: paths shared by every source.
    pub shared: FindingMapping,
    /// Where `trigger:` is.
    pub span: Span,
}

/// `trigger.guardduty`.
#[derive(Clone, Debug)]
pub struct GuardDutyTrigger {
    /// Finding types (`Type` of the finding, e.g. `UnauthorizedAccess:EC2/SSHBruteForce`),
    /// matched exactly.
    pub types: Vec<String>,
    /// `trigger.guardduty.inputs` / `.targets`: paths for GuardDuty findings only.
    pub mapping: FindingMapping,
}

/// `trigger.securityhub`.
#[derive(Clone, Debug)]
pub struct SecurityHubTrigger {
    /// The custom action (its id, the end of `arn:...:action/custom/ID`) whose events start
    /// the playbook; `None`: any Security Hub finding (imported, or sent by any action).
    pub custom_action: Option<String>,
    /// `trigger.securityhub.inputs` / `.targets`: paths for ASFF findings only.
    pub mapping: FindingMapping,
}

/// Input and target paths into a finding.
#[derive(Clone, Debug, Default)]
pub struct FindingMapping {
    /// Input name -> path, in file order.
    pub inputs: Vec<(String, FieldPath)>,
    /// `targets.account`.
    pub account: Option<FieldPath>,
    /// `targets.region`.
    pub region: Option<FieldPath>,
}

/// One RFC 9535 JSONPath into the bare finding, optionally followed by `| arn_resource`.
#[derive(Clone, Debug)]
pub struct FieldPath {
    /// As written (the filter included).
    pub text: String,
    /// The parsed query.
    pub query: serde_json_path::JsonPath,
    /// `| arn_resource`: each value found is an ARN, and the value is its resource id (the
    /// part after the last `/`, else after the ARN's fifth `:`).
    pub arn_resource: bool,
    /// Where it is written.
    pub span: Span,
}

impl Trigger {
    /// The paths that apply to findings of `source`: the source's own, then the shared ones
    /// (the validator refuses an input or target mapped in both places).
    pub fn mapping_for(&self, source: FindingSource) -> FindingMapping {
        let own = match source {
            FindingSource::GuardDuty => self.guardduty.as_ref().map(|g| &g.mapping),
            FindingSource::SecurityHub => self.securityhub.as_ref().map(|s| &s.mapping),
        };
        let mut out = own.cloned().unwrap_or_default();
        out.inputs.extend(self.shared.inputs.iter().cloned());
        out.account = out.account.or_else(|| self.shared.account.clone());
        out.region = out.region.or_else(|| self.shared.region.clone());
        out
    }

    /// Whether findings of `source` start this playbook: its section is present.
    pub fn takes(&self, source: FindingSource) -> bool {
        match source {
            FindingSource::GuardDuty => self.guardduty.is_some(),
            FindingSource::SecurityHub => self.securityhub.is_some(),
        }
    }
}

/// Where a finding comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FindingSource {
    /// An Amazon GuardDuty finding.
    GuardDuty,
    /// An AWS Security Hub finding (ASFF).
    SecurityHub,
}

impl std::fmt::Display for FindingSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FindingSource::GuardDuty => "GuardDuty",
            FindingSource::SecurityHub => "Security Hub",
        })
    }
}
