//! Capturing a file from the host as evidence: one read of the source that hashes and writes
//! the evidence copy in the same pass, in a fixed buffer.
//!
//! The source is hostile (a responder points at a log on a compromised host):
//! - **Symlinks are followed** (a responder may legitimately name `/var/log/syslog` or a
//!   `current` link); what was read is the file the link pointed to when it was opened, and
//!   [`FileCapture::resolved`] says which. The copy is made from the opened descriptor, so a
//!   link swapped after the open changes nothing.
//! - **Only regular files.** The source is opened with `O_NONBLOCK` (opening a FIFO never
//!   waits for a writer) and checked with `fstat` on the opened descriptor: a FIFO, socket,
//!   device or directory is refused with [`CaptureError::NotRegular`], naming what it is.
//! - **Bounded.** At most the size `fstat` reported at open is read (a file that grows while
//!   it is read, a log being written, cannot keep the capture going); memory is one
//!   [`BUFFER_SIZE`] buffer whatever the size.
//! - **Changes are detected.** The size and modification time are taken again after the read;
//!   a file that grew, shrank or was written during the read is reported
//!   ([`FileCapture::changed`]). The copy and its hash are exactly the bytes read.
//! - **Cancellable.** The copy checks a flag between buffers, so a caller that gives up (a
//!   step timeout) stops it and the partial copy is removed.
//!
//! The copy is written to a new file (`create_new`) and flushed (`fsync`) before this
//! returns, so the hash recorded for it describes bytes that are on disk.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use crate::hash::{Sha256Digest, StreamHasher, BUFFER_SIZE};

/// What [`copy_file_hashed`] read and wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCapture {
    /// SHA-256 of exactly the bytes read (= the copy's bytes).
    pub sha256: Sha256Digest,
    /// Bytes read and written.
    pub size: u64,
    /// The source's size when it was opened.
    pub size_at_open: u64,
    /// The source's size after the read.
    pub size_after: u64,
    /// The file the source path named when it was opened (symlinks resolved), when that
    /// differs from the path given.
    pub resolved: Option<PathBuf>,
    /// Why the copy may not be the whole file as it is now: grew, shrank or was written
    /// while it was read. `None` when it was stable.
    pub changed: Option<String>,
}

/// Why a file could not be captured.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The source is not a regular file.
    #[error("{path}: is {kind}, not a regular file; evidence.capture copies regular files only")]
    NotRegular {
        /// The source.
        path: PathBuf,
        /// `a FIFO`, `a directory`, ...
        kind: &'static str,
    },
    /// The caller cancelled the copy.
    #[error("{path}: the capture was cancelled")]
    Cancelled {
        /// The source.
        path: PathBuf,
    },
    /// Reading the source or writing the copy failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CaptureError + '_ {
    move |source| CaptureError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(unix)]
fn kind_of(ft: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO (named pipe)"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

#[cfg(not(unix))]
fn kind_of(ft: &fs::FileType) -> &'static str {
    if ft.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

fn open_source(src: &Path) -> Result<File, CaptureError> {
    let mut o = OpenOptions::new();
    o.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // A FIFO's open must not wait for a writer; regular files ignore the flag.
        o.custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY);
    }
    o.open(src).map_err(io_err(src))
}

fn mtime(m: &fs::Metadata) -> Option<SystemTime> {
    m.modified().ok()
}

/// Copies the regular file `src` to the new file `dest` (which must not exist), hashing in
/// the same pass with one [`BUFFER_SIZE`] buffer, reading at most the size `src` had when it
/// was opened. `dest` is flushed to disk before this returns; on any error it is removed.
/// Blocking: call it from a blocking thread (`tokio::task::spawn_blocking`).
pub fn copy_file_hashed(
    src: &Path,
    dest: &Path,
    cancel: &AtomicBool,
) -> Result<FileCapture, CaptureError> {
    copy_with_hook(src, dest, cancel, || {})
}

/// [`copy_file_hashed`], calling `after_open` once the source is open and measured (tests
/// change the file there).
fn copy_with_hook(
    src: &Path,
    dest: &Path,
    cancel: &AtomicBool,
    after_open: impl FnOnce(),
) -> Result<FileCapture, CaptureError> {
    let file = open_source(src)?;
    let meta = file.metadata().map_err(io_err(src))?;
    if !meta.file_type().is_file() {
        return Err(CaptureError::NotRegular {
            path: src.to_owned(),
            kind: kind_of(&meta.file_type()),
        });
    }
    let size_at_open = meta.len();
    let mtime_at_open = mtime(&meta);
    let resolved = fs::canonicalize(src)
        .ok()
        .filter(|r| r.as_path() != src && src.symlink_metadata().is_ok_and(|m| m.is_symlink()));
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(io_err(dest))?;
    after_open();
    let copied = copy_bounded(&file, src, &mut out, dest, size_at_open, cancel);
    let (sha256, size) = match copied {
        Ok(r) => r,
        Err(e) => {
            drop(out);
            let _ = fs::remove_file(dest);
            return Err(e);
        }
    };
    if let Err(e) = out.sync_data() {
        let _ = fs::remove_file(dest);
        return Err(io_err(dest)(e));
    }
    let after = file.metadata().map_err(io_err(src))?;
    let size_after = after.len();
    let changed = if size != size_at_open {
        Some(format!(
            "the file shrank while it was read: {size_at_open} bytes at open, {size} read, {size_after} now"
        ))
    } else if size_after > size_at_open {
        Some(format!(
            "the file grew while it was read: {size_at_open} bytes at open (all read), {size_after} now; the bytes past {size_at_open} were not captured"
        ))
    } else if size_after != size_at_open || mtime(&after) != mtime_at_open {
        Some(format!(
            "the file was written while it was read ({size_at_open} bytes at open, {size_after} now, modification time changed)"
        ))
    } else {
        None
    };
    Ok(FileCapture {
        sha256,
        size,
        size_at_open,
        size_after,
        resolved,
        changed,
    })
}

fn copy_bounded(
    mut file: &File,
    src: &Path,
    out: &mut File,
    dest: &Path,
    limit: u64,
    cancel: &AtomicBool,
) -> Result<(Sha256Digest, u64), CaptureError> {
    let mut hasher = StreamHasher::new();
    let mut buf = vec![0u8; BUFFER_SIZE];
    let mut left = limit;
    while left > 0 {
        if cancel.load(Ordering::Relaxed) {
            return Err(CaptureError::Cancelled {
                path: src.to_owned(),
            });
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match file.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(src)(e)),
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(io_err(dest))?;
        left -= n as u64;
    }
    Ok(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_and_hashes_in_one_pass() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.bin");
        let data: Vec<u8> = (0..(BUFFER_SIZE * 2 + 123))
            .map(|i| (i % 251) as u8)
            .collect();
        fs::write(&src, &data).unwrap();
        let dest = dir.path().join("dest.bin");
        let c = copy_file_hashed(&src, &dest, &AtomicBool::new(false)).unwrap();
        assert_eq!(c.sha256, Sha256Digest::of(&data));
        assert_eq!(
            (c.size, c.size_at_open, c.size_after),
            (data.len() as u64, data.len() as u64, data.len() as u64)
        );
        assert_eq!(c.changed, None);
        assert_eq!(c.resolved, None);
        assert_eq!(fs::read(&dest).unwrap(), data);
        // Never over an existing file.
        assert!(copy_file_hashed(&src, &dest, &AtomicBool::new(false)).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_at_once_and_a_symlink_followed() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let dest = dir.path().join("out");
        let t = std::time::Instant::now();
        let e = copy_file_hashed(&fifo, &dest, &AtomicBool::new(false)).unwrap_err();
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
        assert!(e.to_string().contains("FIFO"), "{e}");
        assert!(!dest.exists());
        let e = copy_file_hashed(dir.path(), &dest, &AtomicBool::new(false)).unwrap_err();
        assert!(e.to_string().contains("directory"), "{e}");
        let e =
            copy_file_hashed(Path::new("/dev/zero"), &dest, &AtomicBool::new(false)).unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");

        let real = dir.path().join("real.log");
        fs::write(&real, b"log line\n").unwrap();
        let link = dir.path().join("current.log");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let c = copy_file_hashed(&link, &dest, &AtomicBool::new(false)).unwrap();
        assert_eq!(c.sha256, Sha256Digest::of(b"log line\n"));
        assert_eq!(c.resolved, Some(fs::canonicalize(&real).unwrap()));
    }

    #[test]
    fn cancelled_copies_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::write(&src, vec![7u8; BUFFER_SIZE * 3]).unwrap();
        let dest = dir.path().join("dest");
        let e = copy_file_hashed(&src, &dest, &AtomicBool::new(true)).unwrap_err();
        assert!(matches!(e, CaptureError::Cancelled { .. }), "{e}");
        assert!(!dest.exists());
    }

    /// Reads at most the size at open: a file appended to while it is read is captured as it
    /// was when opened, and the growth is reported; one truncated is captured as read.
    #[test]
    fn changes_during_the_read_are_bounded_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("growing.log");
        let first = vec![b'a'; BUFFER_SIZE + 10];
        fs::write(&src, &first).unwrap();
        let no = AtomicBool::new(false);
        let c = copy_with_hook(&src, &dir.path().join("d1"), &no, || {
            let mut f = OpenOptions::new().append(true).open(&src).unwrap();
            f.write_all(&[b'b'; 4096]).unwrap();
        })
        .unwrap();
        assert_eq!(
            (c.size, c.size_at_open),
            (first.len() as u64, first.len() as u64)
        );
        assert_eq!(c.size_after, first.len() as u64 + 4096);
        assert_eq!(c.sha256, Sha256Digest::of(&first));
        assert!(c.changed.as_deref().unwrap().contains("grew"), "{c:?}");

        let c = copy_with_hook(&src, &dir.path().join("d2"), &no, || {
            OpenOptions::new()
                .write(true)
                .open(&src)
                .unwrap()
                .set_len(100)
                .unwrap();
        })
        .unwrap();
        assert_eq!(c.size, 100);
        assert_eq!(c.sha256, Sha256Digest::of(&first[..100]));
        assert_eq!(fs::read(dir.path().join("d2")).unwrap(), &first[..100]);
        assert!(c.changed.as_deref().unwrap().contains("shrank"), "{c:?}");
    }
}
