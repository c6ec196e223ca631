//! The exit codes of the CLI contract, in one place.

use std::process::ExitCode;

/// How a command ended, as the CLI contract numbers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// 0: success.
    Success = 0,
    /// 1: the run failed: a step failed and the run could not complete.
    RunFailed = 1,
    /// 2: usage error, invalid playbook or invalid input: nothing was changed.
    Invalid = 2,
    /// 3: evidence verification found an item missing, altered or unlisted.
    EvidenceMismatch = 3,
    /// 4: aborted: confirmation declined, approval denied, interrupted, or no `--yes`
    /// without a terminal.
    Aborted = 4,
    /// 5: evidence could not be read (unreachable, no credentials, no permission): nothing was
    /// verified, nothing is known to be altered.
    Unverifiable = 5,
}

/// 0.
pub const SUCCESS: Exit = Exit::Success;
/// 1.
pub const RUN_FAILED: Exit = Exit::RunFailed;
/// 2.
pub const INVALID: Exit = Exit::Invalid;
/// 3.
pub const EVIDENCE_MISMATCH: Exit = Exit::EvidenceMismatch;
/// 4.
pub const ABORTED: Exit = Exit::Aborted;
/// 5.
pub const UNVERIFIABLE: Exit = Exit::Unverifiable;

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}
