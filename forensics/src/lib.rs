//! Evidence handling for irr: streaming SHA-256, evidence stores (a local directory or S3 with
//! Object Lock), the sealed manifest of a run and its `SHA256SUMS`, and verification.
//!
//! This crate knows nothing of playbooks: it stores bytes under
//! `LOCATION/CASE_ID/RUN_ID/`, records what it stored, seals the run and checks a sealed run
//! later. The contract it implements is the evidence format (`docs/evidence.md`):
//!
//! ```text
//! LOCATION/CASE_ID/RUN_ID/
//!   artifacts/STEP_ID/NAME   what each step captured
//!   journal.jsonl            the run's journal
//!   manifest.json            written by `Bundle::seal`, canonical JSON
//!   SHA256SUMS               written last; `sha256sum -c SHA256SUMS` passes in the folder
//!   manifest.sig.json        optional: a DSSE envelope signing the seal (`signing`)
//!   public-key.pem           the key that signed it
//! ```
//!
//! The usual flow:
//!
//! ```no_run
//! # async fn demo() -> Result<(), irr_forensics::Error> {
//! use irr_forensics::{Bundle, Collector, EvidenceLocation, ItemMeta, PlaybookRef, RunInfo,
//!                     S3Settings, Source, Store, Timestamp};
//! let location = EvidenceLocation::parse("/var/lib/irr/evidence")?;
//! let store = Store::open(&location, None, S3Settings::default())?;
//! let info = RunInfo {
//!     playbook: PlaybookRef { name: "isolate-ec2".into(), version: "1".into(), sha256: "...".into() },
//!     collector: Collector::this_host("irr 0.1.0", Some("arn:aws:iam::123456789012:user/me".into())),
//!     started_at: Timestamp::now(),
//! };
//! let bundle = Bundle::new(store, "case-42", "run-1", info)?;
//! bundle.capture_json("snapshot", "volumes.json", &serde_json::json!({"Volumes": []}),
//!                     Some("ec2:DescribeVolumes")).await?;
//! bundle.capture("journal.jsonl", Source::File("/tmp/journal.jsonl".into()), ItemMeta::default()).await?;
//! let outcome = bundle.seal().await?;
//! println!("sealed, manifest sha256 {}", outcome.seal().manifest_sha256);
//! let report = irr_forensics::verify(&EvidenceLocation::parse("/var/lib/irr/evidence/case-42/run-1")?, None).await?;
//! assert!(report.is_ok());
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod awserr;
mod bundle;
pub mod capture;
pub mod clock;
mod copy;
mod error;
pub mod hash;
pub mod location;
pub mod manifest;
pub mod signing;
pub mod store;
pub mod verify;

pub use bundle::{artifact_path, Bundle, ItemMeta, RunInfo, Seal, SealOutcome};
pub use capture::{copy_file_hashed, CaptureError, FileCapture};
pub use copy::{copy_run, RunCopy};
pub use error::Error;
pub use hash::Sha256Digest;
pub use location::EvidenceLocation;
pub use manifest::{
    AwsResource, ChildRun, Collector, FailedItem, Gap, Manifest, ManifestItem, PlaybookRef,
    S3ObjectRef, Sha256Sums, Target, Timestamp, MANIFEST_FORMAT, MANIFEST_NAME, SUMS_NAME,
};
pub use signing::{
    sign_run, KeyRef, PublicKey, SignOutcome, SignatureCheck, SignatureOptions, SignedRun, Signer,
    TrustedKey, PUBLIC_KEY_NAME, SIG_NAME,
};
pub use store::{
    check_account_id, Encryption, Found, PresignedPart, RemoteObject, RemoteUpload, RetentionMode,
    S3Settings, S3Store, Source, Store, StoredObject,
};
pub use verify::{
    verify, verify_run, verify_run_with, verify_with_options, verify_with_owner, ChildCheck,
    ItemCheck, ItemStatus, VerifyReport,
};

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
