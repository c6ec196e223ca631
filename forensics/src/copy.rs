//! A verified local copy of a sealed run (drills keep one: their evidence lives in an emulator
//! that stops when the drill ends).
//!
//! [`copy_run`] reads the run's `manifest.json`, copies every listed item (in S3, the exact
//! version recorded), `manifest.json`, `SHA256SUMS` and the signature sidecars
//! (`manifest.sig.json`, `public-key.pem`) byte for byte into
//! `DEST/CASE_ID/RUN_ID/`, then verifies the copy like any local run. The copy is a local
//! evidence folder: `irr evidence verify DEST/CASE_ID/RUN_ID` checks it.

use std::path::{Path, PathBuf};

use crate::bundle::SMALL_FILE_LIMIT;
use crate::location::{check_component, check_item_path};
use crate::manifest::{Manifest, MANIFEST_NAME, SUMS_NAME};
use crate::signing::{PUBLIC_KEY_NAME, SIG_NAME};
use crate::store::{S3Settings, Store};
use crate::{Error, EvidenceLocation, Result, Sha256Digest, VerifyReport};

/// What [`copy_run`] made.
#[derive(Debug, Clone)]
pub struct RunCopy {
    /// `DEST/CASE_ID/RUN_ID`.
    pub location: EvidenceLocation,
    /// SHA-256 of the copied `manifest.json` (the original's, byte for byte).
    pub manifest_sha256: Sha256Digest,
    /// Items copied.
    pub items: usize,
    /// Bytes copied (items only).
    pub bytes: u64,
    /// The copy, verified.
    pub report: VerifyReport,
}

/// Copies run `run_id` of case `case_id` from `from` into `dest` (a local directory, which
/// must not hold that run yet) and verifies the copy.
pub async fn copy_run(from: &Store, case_id: &str, run_id: &str, dest: &Path) -> Result<RunCopy> {
    check_component("case id", case_id)?;
    check_component("run id", run_id)?;
    let prefix = format!("{case_id}/{run_id}");
    let run_dir: PathBuf = dest.join(case_id).join(run_id);
    if tokio::fs::symlink_metadata(&run_dir).await.is_ok() {
        return Err(Error::Exists {
            location: run_dir.display().to_string(),
        });
    }
    let manifest_bytes = from
        .read(&format!("{prefix}/{MANIFEST_NAME}"), None, SMALL_FILE_LIMIT)
        .await?
        .ok_or_else(|| Error::NotARun {
            location: from.describe(&prefix),
            reason: "no manifest.json: the run is not sealed".into(),
        })?;
    let manifest = Manifest::from_slice(&manifest_bytes).map_err(|e| Error::Unreadable {
        what: "manifest.json",
        location: from.describe(&format!("{prefix}/{MANIFEST_NAME}")),
        reason: e.to_string(),
    })?;
    let sums = from
        .read(&format!("{prefix}/{SUMS_NAME}"), None, SMALL_FILE_LIMIT)
        .await?;
    tokio::fs::create_dir_all(&run_dir)
        .await
        .map_err(|e| Error::io(&run_dir, e))?;
    let is_s3 = matches!(from, Store::S3(_));
    let mut bytes = 0u64;
    for item in &manifest.items {
        // A path irr never writes is not copied; verification of the copy reports it.
        if check_item_path(&item.path).is_err() {
            continue;
        }
        let target = item.path.split('/').fold(run_dir.clone(), |p, c| p.join(c));
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| Error::io(parent, e))?;
        }
        let version = if is_s3 {
            item.s3.as_ref().and_then(|s| s.version_id.as_deref())
        } else {
            None
        };
        if let Some((_, size)) = from
            .download(&format!("{prefix}/{}", item.path), version, &target)
            .await?
        {
            bytes += size;
        }
    }
    write_new(&run_dir.join(MANIFEST_NAME), &manifest_bytes).await?;
    if let Some(s) = sums {
        write_new(&run_dir.join(SUMS_NAME), &s).await?;
    }
    // The signature sidecars come along as they are; verifying the copy checks them.
    for (name, limit) in [
        (SIG_NAME, crate::signing::SIG_FILE_LIMIT),
        (PUBLIC_KEY_NAME, crate::signing::keys::KEY_FILE_LIMIT),
    ] {
        if let Some(b) = from.read(&format!("{prefix}/{name}"), None, limit).await? {
            write_new(&run_dir.join(name), &b).await?;
        }
    }
    let location = EvidenceLocation::Local(run_dir.clone());
    let local = Store::open(
        &EvidenceLocation::Local(dest.to_path_buf()),
        None,
        S3Settings::default(),
    )?;
    let report = crate::verify_run(&local, case_id, run_id).await?;
    Ok(RunCopy {
        location,
        manifest_sha256: Sha256Digest::of(&manifest_bytes),
        items: manifest.items.len(),
        bytes,
        report,
    })
}

async fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut f = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .await
        .map_err(|e| Error::io(path, e))?;
    f.write_all(bytes).await.map_err(|e| Error::io(path, e))?;
    f.sync_all().await.map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Bundle, Collector, PlaybookRef, RunInfo, Timestamp};

    #[tokio::test]
    async fn a_local_run_copies_and_verifies_and_a_tampered_copy_does_not() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let loc = EvidenceLocation::Local(src.path().to_path_buf());
        let store = Store::open(&loc, None, S3Settings::default()).unwrap();
        let info = RunInfo {
            playbook: PlaybookRef {
                name: "p".into(),
                version: "1".into(),
                sha256: "x".into(),
            },
            collector: Collector::this_host("irr test", None),
            started_at: Timestamp::now(),
        };
        let b = Bundle::new(store.clone(), "c1", "r1", info).unwrap();
        b.capture_json("s", "a.json", &serde_json::json!({"a": 1}), None)
            .await
            .unwrap();
        b.seal().await.unwrap();
        let copy = copy_run(&store, "c1", "r1", dst.path()).await.unwrap();
        assert!(copy.report.is_ok(), "{}", copy.report);
        assert_eq!(copy.items, 1);
        // A second copy over the first is refused.
        assert!(matches!(
            copy_run(&store, "c1", "r1", dst.path()).await,
            Err(Error::Exists { .. })
        ));
        let f = dst.path().join("c1/r1/artifacts/s/a.json");
        let mut perm = std::fs::metadata(&f).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        std::fs::set_permissions(&f, perm).unwrap();
        std::fs::write(&f, b"{\"a\":2}").unwrap();
        let r = crate::verify(&copy.location, None).await.unwrap();
        assert!(!r.is_ok());
    }
}
