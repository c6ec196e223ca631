//! The one error type of the crate. Messages are lowercase and name the thing that failed
//! (a path, an S3 key, a bucket); AWS errors keep the service's code and request id.

use std::path::PathBuf;

/// Why an evidence operation failed. Problems found *in* evidence (altered items, a broken
/// chain) are not errors: they are reported in a [`crate::VerifyReport`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The evidence location string could not be understood.
    #[error("invalid evidence location {location:?}: {reason}")]
    InvalidLocation {
        /// What was given.
        location: String,
        /// Why it was refused.
        reason: String,
    },
    /// A case id, run id, step id or item path that cannot be used as a path component.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        /// What kind of name (`case id`, `item path`, ...).
        what: &'static str,
        /// The name given.
        value: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A local file or directory operation failed.
    #[error("i/o error on {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An S3 call failed.
    #[error("s3 {operation} on {target} failed: {code}: {message}{}", request_id.as_deref().map(|r| format!(" (request id {r})")).unwrap_or_default())]
    S3 {
        /// The S3 operation (`PutObject`, ...).
        operation: &'static str,
        /// `s3://bucket/key` (or the bucket) it was called on.
        target: String,
        /// The service's error code, or `unknown`.
        code: String,
        /// The service's message, or a description of the transport failure.
        message: String,
        /// The request id, when S3 answered.
        request_id: Option<String>,
    },
    /// S3 refused a call on the evidence bucket that carried `ExpectedBucketOwner` with 403
    /// `AccessDenied`: the bucket belongs to another account (a look-alike of the expected
    /// bucket), or the credentials may not use it (S3 gives the same answer to both).
    #[error("evidence bucket {bucket} is not owned by account {owner}, or the credentials may not call s3:{operation}: S3 refused {operation} with ExpectedBucketOwner {owner} (403 AccessDenied{detail}); for a bucket of another account give --evidence-owner ACCOUNT_ID, else see `irr policy PLAYBOOK`")]
    NotOwned {
        /// The S3 operation (`HeadBucket`, `PutObject`, ...).
        operation: &'static str,
        /// `s3://bucket/key` (or the bucket) it was called on (not in the message, which
        /// stays one short line; the location is named by the caller).
        target: String,
        /// The bucket.
        bucket: String,
        /// The account the bucket was expected to belong to.
        owner: String,
        /// `: S3's message` when it said more than "Access Denied" (a KMS denial names the
        /// key's action, for instance), then `, request id ID` when S3 gave one; else empty.
        detail: String,
    },
    /// The bucket is not fit to hold evidence (no versioning, no Object Lock, ...).
    #[error("bucket {bucket} cannot hold evidence: {problem}")]
    Bucket {
        /// The bucket.
        bucket: String,
        /// What is wrong with it.
        problem: String,
    },
    /// An S3 location was given but no S3 client.
    #[error("an s3 client is needed for {location}")]
    NoS3Client {
        /// The location.
        location: String,
    },
    /// Evidence is never overwritten: the object or file exists already.
    #[error("evidence {location} exists already; evidence is never overwritten")]
    Exists {
        /// Where.
        location: String,
    },
    /// The same item path was captured twice in one run.
    #[error("item {path} was captured already in this run")]
    AlreadyCaptured {
        /// The item path.
        path: String,
    },
    /// A capture was attempted after the run was sealed.
    #[error("run {run_id} of case {case_id} is sealed; nothing more can be captured")]
    Sealed {
        /// The case.
        case_id: String,
        /// The run.
        run_id: String,
    },
    /// `seal` was called while captures were still being written.
    #[error("captures still in progress: {}", paths.join(", "))]
    CaptureInProgress {
        /// The item paths being written.
        paths: Vec<String>,
    },
    /// A manifest (or `SHA256SUMS`) that must be read could not be parsed.
    #[error("unreadable {what} at {location}: {reason}")]
    Unreadable {
        /// `manifest.json` or `SHA256SUMS`.
        what: &'static str,
        /// Where.
        location: String,
        /// Why.
        reason: String,
    },
    /// Something that is not a regular file (a FIFO, a device, a directory, a symbolic link)
    /// where a file of evidence should be. It was not followed or read.
    #[error("{location} is {found}, not a regular file")]
    NotAFile {
        /// Where.
        location: String,
        /// What is there.
        found: String,
    },
    /// The location given to `verify` is not a run (`LOCATION/CASE_ID/RUN_ID`) that exists.
    #[error("{location} is not an evidence run: {reason}")]
    NotARun {
        /// The location.
        location: String,
        /// Why.
        reason: String,
    },
    /// Serialising JSON failed.
    #[error("could not serialise {what}: {source}")]
    Json {
        /// What was being serialised.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// A signing key (or a trusted key) that cannot be used: what it is, and why. Never
    /// quotes the key's content.
    #[error("key {what}: {reason}")]
    Key {
        /// The key file or the KMS key ARN.
        what: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// An AWS KMS call failed (described in one line).
    #[error("{0}")]
    Kms(Box<crate::awserr::AwsFailure>),
    /// The run is signed already, by another key: its signature is evidence and is never
    /// overwritten.
    #[error("{location} is signed by key {keyid}, not by {signer}; a signature is evidence and is never overwritten (verify it with `irr evidence verify --trusted-key`)")]
    SignedByAnotherKey {
        /// The signature (or public key) found.
        location: String,
        /// The key that signed it.
        keyid: String,
        /// The key that was asked to sign.
        signer: String,
    },
    /// A background task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// `true` when the error means the evidence could not be read (S3 unreachable, no
    /// credentials, no permission, a local I/O error): nothing was verified, nothing is known
    /// to be altered (`irr evidence verify` exits 5). `false` for what says the evidence is
    /// not what was sealed, or that the location is wrong.
    pub fn is_unreadable(&self) -> bool {
        matches!(
            self,
            Error::S3 { .. }
                | Error::NotOwned { .. }
                | Error::Io { .. }
                | Error::NoS3Client { .. }
                | Error::Task(_)
        ) || matches!(self, Error::Kms(f) if f.kind != crate::awserr::FailureKind::Service)
    }

    pub(crate) fn task(e: tokio::task::JoinError) -> Error {
        Error::Task(e.to_string())
    }
}
