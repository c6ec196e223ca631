//! Evidence stores: where item bytes go. One interface, [`Store`], over a local directory
//! ([`LocalStore`]) and an S3 bucket with versioning and Object Lock ([`S3Store`]).
//!
//! Keys are `/`-separated paths relative to the store's root (the evidence location), e.g.
//! `case-1/run-1/artifacts/snapshot/volumes.json`. A store never overwrites: writing a key that
//! exists fails with [`crate::Error::Exists`].

mod local;
mod s3;

use std::io::Read;
use std::path::PathBuf;

use bytes::Bytes;

pub use local::LocalStore;
pub use s3::{
    check_account_id, Encryption, PresignedPart, RemoteObject, RemoteUpload, RetentionMode,
    S3Settings, S3Store,
};

use crate::hash::Sha256Digest;
use crate::{Error, EvidenceLocation, Result};

/// The bytes of one item to store. Read exactly once, on tokio's blocking pool.
pub enum Source {
    /// Bytes in memory (a JSON document, a small log).
    Bytes(Bytes),
    /// A local file, streamed.
    File(PathBuf),
    /// Any blocking reader, streamed to its end (a pipe, a decompressor, an
    /// `tokio_util::io::SyncIoBridge` over an async stream).
    Reader(Box<dyn Read + Send>),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Bytes(b) => write!(f, "Source::Bytes({} bytes)", b.len()),
            Source::File(p) => write!(f, "Source::File({})", p.display()),
            Source::Reader(_) => f.write_str("Source::Reader(..)"),
        }
    }
}

impl From<Vec<u8>> for Source {
    fn from(v: Vec<u8>) -> Source {
        Source::Bytes(Bytes::from(v))
    }
}

impl From<Bytes> for Source {
    fn from(b: Bytes) -> Source {
        Source::Bytes(b)
    }
}

/// What a store wrote: the hash computed in the same pass, and S3's record of the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// The key written.
    pub key: String,
    /// SHA-256 of the whole content.
    pub sha256: Sha256Digest,
    /// Size in bytes.
    pub size: u64,
    /// S3 version id (S3 only).
    pub version_id: Option<String>,
    /// S3's `ChecksumSHA256` of the object (S3 only; for multipart objects a checksum of the
    /// part checksums with a `-N` suffix, not the file's hash).
    pub checksum_sha256: Option<String>,
}

/// What re-reading one item found ([`Store::check_object`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Nothing at the key (in S3: not that version).
    Missing,
    /// Something that is not a regular file (a local store only): what it is, e.g. "a FIFO
    /// (named pipe)" or "a symbolic link to /etc/passwd". It was not followed or read.
    NotAFile(String),
    /// Of another size than expected: nothing was hashed. `at_least` when it grew while being
    /// read (reading stopped one byte past the expected size).
    OtherSize {
        /// Its size (or the bytes read, when `at_least`).
        size: u64,
        /// The object is at least `size` bytes.
        at_least: bool,
    },
    /// Of the expected size: the hash of its bytes.
    Hashed(Sha256Digest),
}

/// One object (or object version, or S3 delete marker) found under a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Key relative to the store root.
    pub key: String,
    /// S3 version id; `None` for local files.
    pub version_id: Option<String>,
    /// `true` for the current version (always for local files).
    pub is_latest: bool,
    /// `true` for an S3 delete marker.
    pub delete_marker: bool,
    /// Size in bytes (0 for delete markers).
    pub size: u64,
}

/// A store of evidence: a local directory or an S3 bucket.
#[derive(Debug, Clone)]
pub enum Store {
    /// A local directory.
    Local(LocalStore),
    /// An S3 bucket and prefix.
    S3(S3Store),
}

impl Store {
    /// The store for `location`. S3 locations need a client (configured by the caller: region,
    /// credentials, and `force_path_style(true)` against an emulator); the bucket is not
    /// checked here, see [`S3Store::ensure_bucket`].
    pub fn open(
        location: &EvidenceLocation,
        s3_client: Option<aws_sdk_s3::Client>,
        settings: S3Settings,
    ) -> Result<Store> {
        match location {
            EvidenceLocation::Local(p) => Ok(Store::Local(LocalStore::new(p.clone()))),
            EvidenceLocation::S3 { bucket, prefix } => {
                let client = s3_client.ok_or_else(|| Error::NoS3Client {
                    location: location.to_string(),
                })?;
                Ok(Store::S3(S3Store::new(client, bucket, prefix, settings)?))
            }
        }
    }

    /// The store's root location.
    pub fn location(&self) -> EvidenceLocation {
        match self {
            Store::Local(s) => EvidenceLocation::Local(s.root().to_path_buf()),
            Store::S3(s) => EvidenceLocation::S3 {
                bucket: s.bucket().to_string(),
                prefix: s.prefix().to_string(),
            },
        }
    }

    /// Where `key` is, for messages (`/dir/key` or `s3://bucket/prefix/key`).
    pub fn describe(&self, key: &str) -> String {
        match self {
            Store::Local(s) => s.path_of(key).display().to_string(),
            Store::S3(s) => format!("s3://{}/{}", s.bucket(), s.full_key(key)),
        }
    }

    /// Writes `key` from `source`, hashing in the same pass. Fails with
    /// [`Error::Exists`] when `key` exists.
    pub async fn put(&self, key: &str, source: Source) -> Result<StoredObject> {
        match self {
            Store::Local(s) => s.put(key, source).await,
            Store::S3(s) => s.put(key, source).await,
        }
    }

    /// Stores a file that the caller already wrote and hashed (`sha256`, `size`: e.g. an
    /// artifact staged while it was captured) as `key`, with as little I/O as the store
    /// allows. Local: the file is linked into place and its own name removed (no copy, no
    /// re-read; a copy only across file systems). S3: the file is streamed up once
    /// (multipart, bounded memory, hashed in the same pass), and the hash must be `sha256`.
    /// Fails with [`Error::Exists`] when `key` exists.
    pub async fn adopt_file(
        &self,
        key: &str,
        file: PathBuf,
        sha256: Sha256Digest,
        size: u64,
    ) -> Result<StoredObject> {
        match self {
            Store::Local(s) => s.adopt_file(key, file, sha256, size).await,
            Store::S3(s) => {
                let stored = s.put(key, Source::File(file.clone())).await?;
                if stored.sha256 != sha256 || stored.size != size {
                    return Err(Error::Unreadable {
                        what: "staged file",
                        location: file.display().to_string(),
                        reason: format!(
                            "changed after it was captured: sha256 {sha256} ({size} bytes) then, {} ({} bytes) uploaded",
                            stored.sha256, stored.size
                        ),
                    });
                }
                Ok(stored)
            }
        }
    }

    /// `true` when `key` exists (its current version, in S3).
    pub async fn exists(&self, key: &str) -> Result<bool> {
        match self {
            Store::Local(s) => s.exists(key).await,
            Store::S3(s) => s.exists(key).await,
        }
    }

    /// Reads a small object whole (`manifest.json`, `SHA256SUMS`): `None` when absent. At most
    /// `limit` bytes are accepted (a larger object is refused before it is read, and reading
    /// stops one byte past `limit`); locally, something that is not a regular file is
    /// [`Error::NotAFile`] and is neither followed nor read.
    pub async fn read(
        &self,
        key: &str,
        version_id: Option<&str>,
        limit: u64,
    ) -> Result<Option<Vec<u8>>> {
        match self {
            Store::Local(s) => s.read(key, limit).await,
            Store::S3(s) => s.read(key, version_id, limit).await,
        }
    }

    /// Re-hashes an object by streaming it whole (the exact version when given, in S3): `None`
    /// when it is absent; locally [`Error::NotAFile`] for anything but a regular file.
    pub async fn hash_object(
        &self,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<(Sha256Digest, u64)>> {
        match self {
            Store::Local(s) => s.hash_object(key).await,
            Store::S3(s) => s.hash_object(key, version_id).await,
        }
    }

    /// Re-reads an item recorded with `expected_size` bytes (the exact version when given, in
    /// S3) and hashes it, reading at most `expected_size + 1` bytes, and nothing when its size
    /// already differs. Locally nothing but a regular file is opened and no symbolic link is
    /// followed. Verification uses this: a hostile bundle can neither hang it nor make it
    /// read without end.
    pub async fn check_object(
        &self,
        key: &str,
        version_id: Option<&str>,
        expected_size: u64,
    ) -> Result<Found> {
        match self {
            Store::Local(s) => s.check_object(key, expected_size).await,
            Store::S3(s) => s.check_object(key, version_id, expected_size).await,
        }
    }

    /// Everything under `prefix` (a key prefix ending in `/`): for S3 every version and delete
    /// marker, for a local directory every file (and symbolic link) below it.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        match self {
            Store::Local(s) => s.list(prefix).await,
            Store::S3(s) => s.list(prefix).await,
        }
    }

    /// The names directly below `prefix` (a key prefix ending in `/`), i.e. its
    /// sub-directories; in S3 including those that only hold old versions or delete markers.
    pub async fn list_children(&self, prefix: &str) -> Result<Vec<String>> {
        match self {
            Store::Local(s) => s.list_children(prefix).await,
            Store::S3(s) => s.list_children(prefix).await,
        }
    }

    /// Copies an object (the exact version when given, in S3) into a new local file `dest`,
    /// hashing it in the same pass: `None` when it is absent. `dest` must not exist.
    pub async fn download(
        &self,
        key: &str,
        version_id: Option<&str>,
        dest: &std::path::Path,
    ) -> Result<Option<(Sha256Digest, u64)>> {
        match self {
            Store::Local(s) => {
                let src = s.path_of(key);
                let dest = dest.to_path_buf();
                tokio::task::spawn_blocking(move || {
                    let mut from = match std::fs::File::open(&src) {
                        Ok(f) => f,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                        Err(e) => return Err(Error::io(src, e)),
                    };
                    let mut to = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&dest)
                        .map_err(|e| Error::io(&dest, e))?;
                    let mut hasher = crate::hash::StreamHasher::new();
                    let mut buf = vec![0u8; 256 * 1024];
                    loop {
                        let n = from.read(&mut buf).map_err(|e| Error::io(&src, e))?;
                        if n == 0 {
                            break;
                        }
                        hasher.update(&buf[..n]);
                        std::io::Write::write_all(&mut to, &buf[..n])
                            .map_err(|e| Error::io(&dest, e))?;
                    }
                    to.sync_all().map_err(|e| Error::io(&dest, e))?;
                    Ok(Some(hasher.finish()))
                })
                .await
                .map_err(Error::task)?
            }
            Store::S3(s) => s.download(key, version_id, dest).await,
        }
    }

    /// When `key`'s current version is an S3 delete marker over earlier versions: the newest
    /// earlier version's id and bytes (at most `limit`). Always `None` for local stores.
    pub async fn read_hidden(&self, key: &str, limit: u64) -> Result<Option<(String, Vec<u8>)>> {
        match self {
            Store::Local(_) => Ok(None),
            Store::S3(s) => s.read_hidden(key, limit).await,
        }
    }
}
