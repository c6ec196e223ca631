//! A local directory of evidence.
//!
//! Files are written to a temporary name in the target directory, flushed to disk, then linked
//! to their final name with `link(2)` (which fails when the name exists, so evidence is never
//! overwritten, even by a concurrent writer), and made read-only.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Listed, Source, StoredObject};
use crate::hash::{self, Sha256Digest, StreamHasher};
use crate::{Error, Result};

/// Evidence in a local directory.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> LocalStore {
        LocalStore { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of `key`.
    pub fn path_of(&self, key: &str) -> PathBuf {
        let mut p = self.root.clone();
        for c in key.split('/').filter(|c| !c.is_empty()) {
            p.push(c);
        }
        p
    }

    pub(crate) async fn put(&self, key: &str, source: Source) -> Result<StoredObject> {
        let path = self.path_of(key);
        let key = key.to_string();
        tokio::task::spawn_blocking(move || {
            write_file(&path, source).map(|(sha256, size)| StoredObject {
                key,
                sha256,
                size,
                version_id: None,
                checksum_sha256: None,
            })
        })
        .await
        .map_err(Error::task)?
    }

    /// Adopts `file` (already written, flushed and hashed by the caller: `sha256`, `size`) as
    /// `key` without copying it: `link(2)` to the final name (never replacing one), the
    /// caller's name removed, read-only, the directory flushed. The bytes are not read again;
    /// only the size is checked. Across file systems, where a link cannot be made, the file
    /// is copied once (hashed in that pass, and the hash must be `sha256`).
    pub(crate) async fn adopt_file(
        &self,
        key: &str,
        file: PathBuf,
        sha256: Sha256Digest,
        size: u64,
    ) -> Result<StoredObject> {
        let path = self.path_of(key);
        let key = key.to_string();
        tokio::task::spawn_blocking(move || {
            adopt(&path, &file, sha256, size).map(|(sha256, size)| StoredObject {
                key,
                sha256,
                size,
                version_id: None,
                checksum_sha256: None,
            })
        })
        .await
        .map_err(Error::task)?
    }

    pub(crate) async fn exists(&self, key: &str) -> Result<bool> {
        let path = self.path_of(key);
        match tokio::fs::symlink_metadata(&path).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    pub(crate) async fn read(&self, key: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        let path = self.path_of(key);
        tokio::task::spawn_blocking(move || {
            let f = match fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(Error::io(path, e)),
            };
            let mut buf = Vec::new();
            f.take(limit + 1)
                .read_to_end(&mut buf)
                .map_err(|e| Error::io(&path, e))?;
            if buf.len() as u64 > limit {
                return Err(Error::Unreadable {
                    what: "file",
                    location: path.display().to_string(),
                    reason: format!("larger than {limit} bytes"),
                });
            }
            Ok(Some(buf))
        })
        .await
        .map_err(Error::task)?
    }

    pub(crate) async fn hash_object(&self, key: &str) -> Result<Option<(Sha256Digest, u64)>> {
        let path = self.path_of(key);
        tokio::task::spawn_blocking(move || match hash::hash_file(&path) {
            Ok(r) => Ok(Some(r)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        })
        .await
        .map_err(Error::task)?
    }

    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        let dir = self.path_of(prefix);
        let prefix = prefix.trim_end_matches('/').to_string();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            walk(&dir, &prefix, &mut out)?;
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
        .map_err(Error::task)?
    }

    pub(crate) async fn list_children(&self, prefix: &str) -> Result<Vec<String>> {
        let dir = self.path_of(prefix);
        tokio::task::spawn_blocking(move || {
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(Error::io(dir, e)),
            };
            let mut out = Vec::new();
            for entry in rd {
                let entry = entry.map_err(|e| Error::io(&dir, e))?;
                let ft = entry.file_type().map_err(|e| Error::io(entry.path(), e))?;
                if ft.is_dir() {
                    if let Some(name) = entry.file_name().to_str() {
                        out.push(name.to_string());
                    }
                }
            }
            out.sort();
            Ok(out)
        })
        .await
        .map_err(Error::task)?
    }
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<Listed>) -> Result<()> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let key = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let meta = entry
            .path()
            .symlink_metadata()
            .map_err(|e| Error::io(entry.path(), e))?;
        if meta.is_dir() {
            walk(&entry.path(), &key, out)?;
        } else {
            out.push(Listed {
                key,
                version_id: None,
                is_latest: true,
                delete_marker: false,
                size: meta.len(),
            });
        }
    }
    Ok(())
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Writes `path` from `source` without ever replacing an existing file: temp file, fsync,
/// `link` to the final name, fsync the directory, read-only permissions.
fn write_file(path: &Path, source: Source) -> Result<(Sha256Digest, u64)> {
    let exists = |p: &Path| Error::Exists {
        location: p.display().to_string(),
    };
    if path.symlink_metadata().is_ok() {
        return Err(exists(path));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.partial-{}-{}",
        std::process::id(),
        TMP_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| -> Result<(Sha256Digest, u64)> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        let digest = match source {
            Source::Bytes(b) => {
                let mut h = StreamHasher::new();
                h.update(&b);
                file.write_all(&b).map_err(|e| Error::io(&tmp, e))?;
                h.finish()
            }
            Source::File(src) => {
                let f = fs::File::open(&src).map_err(|e| Error::io(&src, e))?;
                hash::copy_hashed(f, &mut file).map_err(|e| Error::io(&src, e))?
            }
            Source::Reader(r) => hash::copy_hashed(r, &mut file).map_err(|e| Error::io(&tmp, e))?,
        };
        file.sync_all().map_err(|e| Error::io(&tmp, e))?;
        Ok(digest)
    })();
    let digest = match result {
        Ok(d) => d,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(exists(path)),
        Err(e) => return Err(Error::io(path, e)),
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o444))
            .map_err(|e| Error::io(path, e))?;
    }
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(digest)
}

/// See [`LocalStore::adopt_file`].
fn adopt(path: &Path, file: &Path, sha256: Sha256Digest, size: u64) -> Result<(Sha256Digest, u64)> {
    let exists = |p: &Path| Error::Exists {
        location: p.display().to_string(),
    };
    if path.symlink_metadata().is_ok() {
        return Err(exists(path));
    }
    // The staged file must be a plain file of the recorded size (a cheap check that it is
    // the one captured; `verify` re-hashes the evidence later).
    let meta = file.symlink_metadata().map_err(|e| Error::io(file, e))?;
    if !meta.is_file() || meta.len() != size {
        return Err(Error::Unreadable {
            what: "staged file",
            location: file.display().to_string(),
            reason: format!(
                "expected a regular file of {size} bytes, found {} of {} bytes",
                if meta.is_file() {
                    "a file"
                } else {
                    "something else"
                },
                meta.len()
            ),
        });
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    match fs::hard_link(file, path) {
        Ok(()) => {
            let _ = fs::remove_file(file);
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(path, fs::Permissions::from_mode(0o444))
                    .map_err(|e| Error::io(path, e))?;
            }
            if let Ok(d) = fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok((sha256, size))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(exists(path)),
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
            let (got, n) = write_file(path, Source::File(file.to_owned()))?;
            if got != sha256 || n != size {
                return Err(Error::Unreadable {
                    what: "staged file",
                    location: file.display().to_string(),
                    reason: format!(
                        "changed after it was captured: sha256 {sha256} ({size} bytes) then, {got} ({n} bytes) now"
                    ),
                });
            }
            let _ = fs::remove_file(file);
            Ok((got, n))
        }
        Err(e) => Err(Error::io(path, e)),
    }
}
