//! The evidence objects an execution wrote, fetched for the seal: each exact version
//! (`GetObject` with the version id its `putObject` answered), streamed into the run's staging
//! folder with its SHA-256 computed in the same pass and at most [`MAX_OBJECT`] bytes read,
//! then held against the `ChecksumSHA256` S3 answered when the execution wrote it (and the one
//! S3 keeps with the object). Any difference is an error: an object is never sealed on trust.

use std::path::Path;

use base64::Engine as _;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt as _;

use super::translate::{EvidenceObject, Fetched};

/// The largest evidence object fetched (a `putObject` of a state machine writes at most a
/// state's payload, 256 KiB; anything far larger is not what the execution wrote).
pub const MAX_OBJECT: u64 = 64 << 20;

/// Why an object cannot be sealed.
#[derive(Debug)]
pub enum FetchError {
    /// S3 could not be read (unreachable, denied, missing version).
    Unreadable(String),
    /// The bytes are not what the execution wrote: their SHA-256 is not the checksum S3
    /// answered then.
    Mismatch(String),
    /// The object cannot be tied to the execution (no checksum or version was recorded), or
    /// is too large.
    Refused(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Unreadable(m) | FetchError::Mismatch(m) | FetchError::Refused(m) => {
                f.write_str(m)
            }
        }
    }
}

/// The base64 of a SHA-256 digest, as S3 writes `ChecksumSHA256`.
pub fn checksum_of(digest: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(digest)
}

/// Fetches `object` into the new file `dest` and checks it; `owner` is sent as
/// `ExpectedBucketOwner`.
pub async fn fetch(
    s3: &aws_sdk_s3::Client,
    owner: Option<&str>,
    object: &EvidenceObject,
    dest: &Path,
) -> Result<Fetched, FetchError> {
    let at = object.source();
    let (Some(version), Some(recorded)) = (&object.version_id, &object.checksum_sha256) else {
        return Err(FetchError::Refused(format!(
            "{at}: the execution's putObject answered no {}: the object cannot be tied to what it wrote (write evidence with ChecksumAlgorithm SHA256 into a versioned bucket with Object Lock)",
            if object.version_id.is_none() { "VersionId" } else { "ChecksumSha256" }
        )));
    };
    let out = s3
        .get_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .version_id(version)
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .set_expected_bucket_owner(owner.map(str::to_owned))
        .send()
        .await
        .map_err(|e| {
            FetchError::Unreadable(format!(
                "{at}: {}",
                irr_forensics::awserr::describe("s3", "GetObject", &e).line()
            ))
        })?;
    if let Some(len) = out.content_length().filter(|l| *l as u64 > MAX_OBJECT) {
        return Err(FetchError::Refused(format!(
            "{at}: {len} bytes, more than the {MAX_OBJECT} irr fetches"
        )));
    }
    if out.version_id().is_some_and(|v| v != version) {
        return Err(FetchError::Mismatch(format!(
            "{at}: S3 answered version {} for version {version}",
            out.version_id().unwrap_or_default()
        )));
    }
    let stored = out.checksum_sha256().map(str::to_owned);
    let (digest, size) = stream(out.body, dest, &at).await?;
    let got = checksum_of(&digest);
    if &got != recorded {
        return Err(FetchError::Mismatch(format!(
            "{at}: its bytes hash to ChecksumSHA256 {got}, but S3 answered {recorded} when the execution wrote it: the object is not what the execution wrote; nothing was sealed"
        )));
    }
    if let Some(stored) = stored.filter(|s| s != recorded) {
        return Err(FetchError::Mismatch(format!(
            "{at}: S3 keeps ChecksumSHA256 {stored} with it, but answered {recorded} when the execution wrote it; nothing was sealed"
        )));
    }
    Ok(Fetched {
        sha256: hex::encode(digest),
        size,
    })
}

/// Streams `body` into the new file `dest`, hashing it, at most [`MAX_OBJECT`] bytes.
async fn stream(
    mut body: aws_sdk_s3::primitives::ByteStream,
    dest: &Path,
    at: &str,
) -> Result<(Vec<u8>, u64), FetchError> {
    let io = |e: std::io::Error| FetchError::Unreadable(format!("{}: {e}", dest.display()));
    if let Some(parent) = dest.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(io)?;
    }
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .await
        .map_err(io)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    loop {
        let chunk = body
            .try_next()
            .await
            .map_err(|e| FetchError::Unreadable(format!("{at}: reading it: {e}")))?;
        let Some(chunk) = chunk else { break };
        size += chunk.len() as u64;
        if size > MAX_OBJECT {
            return Err(FetchError::Refused(format!(
                "{at}: more than the {MAX_OBJECT} bytes irr fetches"
            )));
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.sync_all().await.map_err(io)?;
    Ok((hasher.finalize().to_vec(), size))
}
