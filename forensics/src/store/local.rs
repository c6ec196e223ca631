//! A local directory of evidence.
//!
//! Files are written to a temporary name in the target directory, flushed to disk, then linked
//! to their final name with `link(2)` (which fails when the name exists, so evidence is never
//! overwritten, even by a concurrent writer), and made read-only.
//!
//! Reading back (verification, adopting an interrupted seal) treats the directory as hostile:
//! below the root no symbolic link is ever followed (each component is opened with
//! `O_NOFOLLOW` relative to its parent), nothing but a regular file is opened (a FIFO or a
//! device would block the reader or never end: its type is checked without opening it, and
//! again with `fstat` on what was opened, `O_NONBLOCK`, so a swap in between is caught), and
//! no more bytes are read than the caller expects plus one.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Found, Listed, Source, StoredObject};
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
        let root = self.root.clone();
        let key = key.to_string();
        let path = self.path_of(&key);
        tokio::task::spawn_blocking(move || {
            let (f, size) = match open_entry(&root, &key).map_err(|e| Error::io(&path, e))? {
                Entry::Missing => return Ok(None),
                Entry::NotAFile(found) => {
                    return Err(Error::NotAFile {
                        location: path.display().to_string(),
                        found,
                    })
                }
                Entry::File(f, size) => (f, size),
            };
            let too_large = || Error::Unreadable {
                what: "file",
                location: path.display().to_string(),
                reason: format!("larger than {limit} bytes"),
            };
            if size > limit {
                return Err(too_large());
            }
            let mut buf = Vec::new();
            f.take(limit + 1)
                .read_to_end(&mut buf)
                .map_err(|e| Error::io(&path, e))?;
            if buf.len() as u64 > limit {
                return Err(too_large());
            }
            Ok(Some(buf))
        })
        .await
        .map_err(Error::task)?
    }

    pub(crate) async fn hash_object(&self, key: &str) -> Result<Option<(Sha256Digest, u64)>> {
        let root = self.root.clone();
        let key = key.to_string();
        let path = self.path_of(&key);
        tokio::task::spawn_blocking(move || {
            match open_entry(&root, &key).map_err(|e| Error::io(&path, e))? {
                Entry::Missing => Ok(None),
                Entry::NotAFile(found) => Err(Error::NotAFile {
                    location: path.display().to_string(),
                    found,
                }),
                Entry::File(f, _) => hash::hash_reader(f)
                    .map(Some)
                    .map_err(|e| Error::io(&path, e)),
            }
        })
        .await
        .map_err(Error::task)?
    }

    /// Re-reads `key` expecting `expected_size` bytes: nothing is read unless the file is a
    /// regular file of that size, and never more than `expected_size + 1` bytes (a file that
    /// grows while it is read is caught at that byte).
    pub(crate) async fn check_object(&self, key: &str, expected_size: u64) -> Result<Found> {
        let root = self.root.clone();
        let key = key.to_string();
        let path = self.path_of(&key);
        tokio::task::spawn_blocking(move || {
            let (f, size) = match open_entry(&root, &key).map_err(|e| Error::io(&path, e))? {
                Entry::Missing => return Ok(Found::Missing),
                Entry::NotAFile(found) => return Ok(Found::NotAFile(found)),
                Entry::File(f, size) => (f, size),
            };
            if size != expected_size {
                return Ok(Found::OtherSize {
                    size,
                    at_least: false,
                });
            }
            let (digest, read) = hash::hash_reader(f.take(expected_size.saturating_add(1)))
                .map_err(|e| Error::io(&path, e))?;
            Ok(if read == expected_size {
                Found::Hashed(digest)
            } else {
                Found::OtherSize {
                    size: read,
                    at_least: read > expected_size,
                }
            })
        })
        .await
        .map_err(Error::task)?
    }

    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        let dir = self.path_of(prefix);
        let root = self.root.clone();
        let prefix = prefix.trim_end_matches('/').to_string();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            // Never walk into a link: a run folder that is a link to `/` would list the disk.
            if !real_dirs_below(&root, &prefix) {
                return Ok(out);
            }
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

/// `true` when every component of `prefix` below `root` is a directory (not a link to one).
fn real_dirs_below(root: &Path, prefix: &str) -> bool {
    let mut p = root.to_path_buf();
    for c in prefix.split('/').filter(|c| !c.is_empty()) {
        p.push(c);
        match p.symlink_metadata() {
            Ok(m) if m.is_dir() => {}
            _ => return false,
        }
    }
    true
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

/// What is at a key below a store's root.
enum Entry {
    /// Nothing (or the root itself is missing).
    Missing,
    /// Something that is not a regular file, described ("a FIFO", "a symbolic link to
    /// /etc/passwd", ...). It was not opened, or was opened without blocking and not read.
    NotAFile(String),
    /// A regular file, opened, and its size (from `fstat` on the open file).
    File(fs::File, u64),
}

/// Opens `key` below `root` for reading, never following a symbolic link below the root,
/// never opening anything but a regular file or a directory, never blocking.
#[cfg(unix)]
fn open_entry(root: &Path, key: &str) -> io::Result<Entry> {
    use rustix::fs::{fstat, openat, statat, AtFlags, FileType, Mode, OFlags, CWD};
    use std::os::fd::OwnedFd;

    let not_found =
        |e: &rustix::io::Errno| *e == rustix::io::Errno::NOENT || *e == rustix::io::Errno::NOTDIR;
    let components: Vec<&str> = key.split('/').filter(|c| !c.is_empty()).collect();
    let Some((last, dirs)) = components.split_last() else {
        return Ok(Entry::NotAFile("the store's root directory".into()));
    };
    // The root is the caller's choice and may be reached through links; below it nothing is.
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut dir: OwnedFd = match openat(CWD, root, dir_flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(e) if not_found(&e) => return Ok(Entry::Missing),
        Err(e) => return Err(e.into()),
    };
    for name in dirs {
        match statat(&dir, *name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(e) if not_found(&e) => return Ok(Entry::Missing),
            Err(e) => return Err(e.into()),
            Ok(st) if FileType::from_raw_mode(st.st_mode as _) != FileType::Directory => {
                let what = describe(&dir, name, FileType::from_raw_mode(st.st_mode as _));
                return Ok(Entry::NotAFile(format!(
                    "{what} in place of the directory {name}"
                )));
            }
            Ok(_) => {}
        }
        dir = match openat(&dir, *name, dir_flags | OFlags::NOFOLLOW, Mode::empty()) {
            Ok(fd) => fd,
            Err(e) if not_found(&e) => return Ok(Entry::Missing),
            Err(rustix::io::Errno::LOOP) => {
                return Ok(Entry::NotAFile(format!(
                    "a symbolic link in place of the directory {name}"
                )))
            }
            Err(e) => return Err(e.into()),
        };
    }
    // The type first, without opening: opening a device can have effects of its own.
    match statat(&dir, *last, AtFlags::SYMLINK_NOFOLLOW) {
        Err(e) if not_found(&e) => return Ok(Entry::Missing),
        Err(e) => return Err(e.into()),
        Ok(st) => {
            let ft = FileType::from_raw_mode(st.st_mode as _);
            if ft != FileType::RegularFile {
                return Ok(Entry::NotAFile(describe(&dir, last, ft)));
            }
        }
    }
    // Then open without following or blocking, and look again at what was opened: it may
    // have been swapped in between.
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = match openat(&dir, *last, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(e) if not_found(&e) => return Ok(Entry::Missing),
        Err(rustix::io::Errno::LOOP) => return Ok(Entry::NotAFile("a symbolic link".into())),
        Err(rustix::io::Errno::NXIO) => return Ok(Entry::NotAFile("a socket".into())),
        Err(e) => return Err(e.into()),
    };
    let st = fstat(&fd)?;
    let ft = FileType::from_raw_mode(st.st_mode as _);
    if ft != FileType::RegularFile {
        return Ok(Entry::NotAFile(describe(&dir, last, ft)));
    }
    Ok(Entry::File(fs::File::from(fd), st.st_size.max(0) as u64))
}

/// Without `openat` (not Unix): `symlink_metadata` of every component, then an open.
#[cfg(not(unix))]
fn open_entry(root: &Path, key: &str) -> io::Result<Entry> {
    let mut path = root.to_path_buf();
    for name in key.split('/').filter(|c| !c.is_empty()) {
        path.push(name);
        match path.symlink_metadata() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Entry::Missing),
            Err(e) => return Err(e),
            Ok(m) if m.file_type().is_symlink() => {
                return Ok(Entry::NotAFile("a symbolic link".into()))
            }
            Ok(_) => {}
        }
    }
    let meta = path.symlink_metadata()?;
    if !meta.is_file() {
        return Ok(Entry::NotAFile("not a regular file".into()));
    }
    let f = fs::File::open(&path)?;
    let size = f.metadata()?.len();
    Ok(Entry::File(f, size))
}

/// "a FIFO", "a symbolic link to /etc/passwd", ... for messages.
#[cfg(unix)]
fn describe(dir: &std::os::fd::OwnedFd, name: &str, ft: rustix::fs::FileType) -> String {
    use rustix::fs::FileType;
    match ft {
        FileType::Symlink => match rustix::fs::readlinkat(dir, name, Vec::new()) {
            Ok(target) => format!("a symbolic link to {}", target.to_string_lossy()),
            Err(_) => "a symbolic link".into(),
        },
        FileType::Fifo => "a FIFO (named pipe)".into(),
        FileType::CharacterDevice => "a character device".into(),
        FileType::BlockDevice => "a block device".into(),
        FileType::Socket => "a socket".into(),
        FileType::Directory => "a directory".into(),
        FileType::RegularFile => "a regular file".into(),
        FileType::Unknown => "a file of unknown type".into(),
    }
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
