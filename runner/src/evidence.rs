//! The runner's side of evidence: where a run's evidence goes, and sealing it.
//!
//! Actions stage their artifacts in the run directory (`STATE_DIR/runs/RUN_ID/evidence/`),
//! hashed as they are written (see `crate::executor::RunRecorder`). When the run ends —
//! succeeded, failed or aborted — [`seal`] streams every staged artifact and the journal into
//! the evidence store through `irr-forensics` (hashing again in the same pass, Object Lock and
//! `ChecksumSHA256` in S3), then writes `manifest.json` and `SHA256SUMS`. A resumed run seals
//! once, with the artifacts of every attempt (the staged files survive a crash).

use std::path::{Path, PathBuf};

use irr_forensics::{
    Bundle, Collector, EvidenceLocation, ItemMeta, PlaybookRef, RetentionMode, RunInfo, S3Settings,
    Source, Store, Timestamp,
};

use crate::actions::AwsResource;
use crate::events::EvidenceSummary;
use crate::executor::{RunRecord, StagedArtifact};
use crate::model::{EvidenceDecl, LockMode, Playbook};

/// The S3 settings for a playbook's evidence declaration.
pub fn s3_settings(decl: &EvidenceDecl) -> S3Settings {
    S3Settings {
        retention_mode: match decl.lock_mode {
            LockMode::Governance => RetentionMode::Governance,
            LockMode::Compliance => RetentionMode::Compliance,
        },
        retention_days: decl.retention_days,
        ..S3Settings::default()
    }
}

/// Opens the store at `location` and, for S3, checks the bucket is fit for evidence
/// (versioning, Object Lock, default encryption) — or creates it so when `create` is set
/// (drills). Called before the first change, so a bad location changes nothing.
pub async fn open_store(
    location: &str,
    s3: Option<aws_sdk_s3::Client>,
    decl: &EvidenceDecl,
    create: bool,
) -> Result<Store, String> {
    let loc = EvidenceLocation::parse(location).map_err(|e| e.to_string())?;
    let store = Store::open(&loc, s3, s3_settings(decl)).map_err(|e| e.to_string())?;
    if let Store::S3(s3) = &store {
        s3.ensure_bucket(create).await.map_err(|e| e.to_string())?;
    }
    Ok(store)
}

/// `LOCATION/CASE/RUN/` as a string, for messages and the summary.
pub fn run_location(store: &Store, case_id: &str, run_id: &str) -> String {
    store.location().join(case_id).join(run_id).to_string()
}

/// Seals a run: every staged artifact, then the journal, then manifest and SHA256SUMS.
#[allow(clippy::too_many_arguments)]
pub async fn seal(
    store: Store,
    playbook: &Playbook,
    record: &RunRecord,
    staging: &Path,
    artifacts: &[StagedArtifact],
    resources: &[AwsResource],
    journal: &Path,
) -> EvidenceSummary {
    let location = run_location(&store, &record.case_id, &record.run_id);
    let fail = |error: String| EvidenceSummary {
        location: location.clone(),
        manifest_sha256: None,
        items: 0,
        error: Some(error),
    };
    let info = RunInfo {
        playbook: PlaybookRef {
            name: playbook.metadata.name.clone(),
            version: playbook.metadata.version.clone(),
            sha256: playbook.sha256.clone(),
        },
        collector: Collector::this_host(
            format!("irr {}", env!("CARGO_PKG_VERSION")),
            Some(record.aws_principal.clone()).filter(|p| !p.is_empty()),
        ),
        started_at: Timestamp::parse(&record.started_at).unwrap_or_else(Timestamp::now),
    };
    let resources: Vec<irr_forensics::AwsResource> = resources
        .iter()
        .map(|r| {
            let mut f = irr_forensics::AwsResource::new(r.kind.clone(), r.id.clone());
            f.details = r
                .details
                .iter()
                .filter(|(k, _)| *k != "step")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            f
        })
        .collect();
    let bundle = match Bundle::resume(
        store,
        &record.case_id,
        &record.run_id,
        info,
        Vec::new(),
        resources,
    ) {
        Ok(b) => b,
        Err(e) => return fail(e.to_string()),
    };
    for art in artifacts {
        let file: PathBuf = staging.join(&art.path);
        let meta = ItemMeta::new(art.step.clone(), Some(&art.source));
        match bundle.capture(&art.path, Source::File(file), meta).await {
            Ok(item) if item.sha256.to_hex() != art.sha256 => {
                return fail(format!(
                    "{} changed on disk after it was captured (sha256 {} at capture, {} now)",
                    art.path,
                    art.sha256,
                    item.sha256.to_hex()
                ));
            }
            Ok(_) => {}
            // Already stored by an earlier attempt of this seal: the bundle keeps it.
            Err(irr_forensics::Error::Exists { .. }) => {}
            Err(e) => return fail(format!("{}: {e}", art.path)),
        }
    }
    match bundle
        .capture(
            "journal.jsonl",
            Source::File(journal.to_owned()),
            ItemMeta::default(),
        )
        .await
    {
        Ok(_) | Err(irr_forensics::Error::Exists { .. }) => {}
        Err(e) => return fail(format!("journal.jsonl: {e}")),
    }
    match bundle.seal().await {
        Ok(outcome) => {
            let seal = outcome.seal();
            EvidenceSummary {
                location,
                manifest_sha256: Some(seal.manifest_sha256.to_hex()),
                items: seal.manifest.items.len(),
                error: None,
            }
        }
        Err(e) => fail(e.to_string()),
    }
}
