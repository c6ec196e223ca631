//! The runner's side of evidence: where a run's evidence goes, and sealing it.
//!
//! Actions stage their artifacts in the run directory (`STATE_DIR/runs/RUN_ID/evidence/`),
//! hashed as they are written (see `crate::executor::RunRecorder`): the staged file *is* the
//! evidence copy. When the run ends — succeeded, failed or aborted — [`seal`] adopts every
//! staged artifact into the evidence store through `irr-forensics` (`Bundle::adopt`: a local
//! store links the file into place, no copy and no re-read; S3 streams it up once, multipart
//! with bounded memory, Object Lock and `ChecksumSHA256`, and checks the recorded hash), adds
//! the journal, then writes `manifest.json` and `SHA256SUMS`. A resumed run seals once, with
//! the artifacts of every attempt (the staged files survive a crash).

use std::path::Path;

use futures::StreamExt as _;
use irr_forensics::{
    Bundle, Collector, EvidenceLocation, ItemMeta, PlaybookRef, RetentionMode, RunInfo, S3Settings,
    Sha256Digest, Source, Store, Timestamp,
};

use crate::actions::AwsResource;
use crate::events::EvidenceSummary;
use crate::executor::{RunRecord, StagedArtifact};
use crate::model::{EvidenceDecl, LockMode, Playbook};

/// Staged artifacts adopted into the store at once by the seal, and the largest artifact
/// adopted beside others (larger ones stream one at a time: bounded memory).
const ADOPTS_IN_FLIGHT: usize = 8;
const ADOPT_AT_ONCE_MAX_SIZE: u64 = 1 << 20;

/// The S3 settings for a playbook's evidence declaration; every request on the bucket
/// carries `ExpectedBucketOwner: expected_owner` when given.
pub fn s3_settings(decl: &EvidenceDecl, expected_owner: Option<&str>) -> S3Settings {
    S3Settings {
        retention_mode: match decl.lock_mode {
            LockMode::Governance => RetentionMode::Governance,
            LockMode::Compliance => RetentionMode::Compliance,
        },
        retention_days: decl.retention_days,
        expected_owner: expected_owner.map(str::to_owned),
        ..S3Settings::default()
    }
}

/// The settings to read evidence with (another run's, a drill's copy): only the expected
/// owner matters.
pub fn read_settings(expected_owner: Option<&str>) -> S3Settings {
    S3Settings {
        expected_owner: expected_owner.map(str::to_owned),
        ..S3Settings::default()
    }
}

/// The account the evidence bucket must belong to: `--evidence-owner` when given (checked:
/// 12 digits), else the caller's own account (`caller`, from STS `GetCallerIdentity`;
/// `None` when irr runs without AWS, then there is no S3 evidence to check).
pub fn evidence_owner(flag: Option<&str>, caller: Option<&str>) -> Result<Option<String>, String> {
    match flag {
        Some(f) => irr_forensics::check_account_id(f)
            .map(|()| Some(f.to_owned()))
            .map_err(|e| format!("--evidence-owner: {e}")),
        None => Ok(caller.filter(|c| !c.is_empty()).map(str::to_owned)),
    }
}

/// Opens the store at `location` and, for S3, checks the bucket is fit for evidence
/// (versioning, Object Lock, default encryption) — or creates it so when `create` is set
/// (drills). Every request on the bucket carries `ExpectedBucketOwner: expected_owner`, so a
/// bucket of that name in another account is refused here, before anything is written.
/// Called before the first change, so a bad location changes nothing.
pub async fn open_store(
    location: &str,
    s3: Option<aws_sdk_s3::Client>,
    decl: &EvidenceDecl,
    create: bool,
    expected_owner: Option<&str>,
) -> Result<Store, String> {
    let loc = EvidenceLocation::parse(location).map_err(|e| e.to_string())?;
    let store =
        Store::open(&loc, s3, s3_settings(decl, expected_owner)).map_err(|e| e.to_string())?;
    if let Store::S3(s3) = &store {
        s3.ensure_bucket(create).await.map_err(|e| e.to_string())?;
    }
    Ok(store)
}

/// `LOCATION/CASE/RUN/` as a string, for messages and the summary.
pub fn run_location(store: &Store, case_id: &str, run_id: &str) -> String {
    store.location().join(case_id).join(run_id).to_string()
}

/// The gaps (optional reads that failed) a run's journal records, every attempt's, in order,
/// without repeats. An unreadable journal gives none (sealing reports the journal itself).
pub fn gaps_from_journal(journal: &Path) -> Vec<irr_forensics::Gap> {
    crate::journal::read(journal)
        .map(|e| crate::journal::replay(&e).gap_list())
        .unwrap_or_default()
}

/// The run's part of the manifest.
fn run_info(playbook: &Playbook, record: &RunRecord) -> RunInfo {
    RunInfo {
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
    }
}

/// The run's resources as the manifest's `aws_resources` (the step is the journal's, not the
/// manifest's).
fn manifest_resources(resources: &[AwsResource]) -> Vec<irr_forensics::AwsResource> {
    resources
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
        .collect()
}

/// Seals a run: every staged artifact, then the journal, then manifest and SHA256SUMS.
/// The manifest's `gaps` come from the journal's `gap_recorded` entries.
#[allow(clippy::too_many_arguments)]
pub async fn seal(
    store: Store,
    playbook: &Playbook,
    record: &RunRecord,
    staging: &Path,
    artifacts: &[StagedArtifact],
    resources: &[AwsResource],
    journal: &Path,
    children: &[(irr_forensics::manifest::Target, Sha256Digest)],
) -> EvidenceSummary {
    let info = run_info(playbook, record);
    let staged = Staged {
        dir: staging,
        artifacts,
        resources,
        journal,
    };
    seal_run(store, info, record, &staged, children).await
}

/// What a run left to seal: its staged artifacts (under `dir`), resources and journal.
#[derive(Clone, Copy)]
pub struct Staged<'a> {
    /// Where the artifacts are staged (`STATE_DIR/runs/RUN_ID/evidence/`).
    pub dir: &'a Path,
    /// The artifacts, as journaled.
    pub artifacts: &'a [StagedArtifact],
    /// The resources for the manifest's `aws_resources`.
    pub resources: &'a [AwsResource],
    /// The run's journal.
    pub journal: &'a Path,
}

/// [`seal`] with the manifest's run part given (`info`): a run that no playbook of this
/// process ran, such as a sealed Step Functions execution (`crate::execution`), whose
/// playbook is known only by name, version and hash and whose collector names the execution.
pub async fn seal_run(
    store: Store,
    info: RunInfo,
    record: &RunRecord,
    staged: &Staged<'_>,
    children: &[(irr_forensics::manifest::Target, Sha256Digest)],
) -> EvidenceSummary {
    let Staged {
        dir: staging,
        artifacts,
        resources,
        journal,
    } = *staged;
    let mut location = run_location(&store, &record.case_id, &record.run_id);
    if let Some(t) = &record.target {
        location = format!("{}/{}", location.trim_end_matches('/'), t.dir());
    }
    let fail = |error: String| EvidenceSummary {
        location: location.clone(),
        manifest_sha256: None,
        items: 0,
        error: Some(error),
        signed_by: None,
        signature_error: None,
    };
    let resources = manifest_resources(resources);
    // A seal interrupted by a crash may have stored some items already: adopt those whose
    // bytes are the staged ones, so the manifest lists them (the store never overwrites).
    let (adopted, conflicts) = match adopt_stored(&store, record, artifacts).await {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    let already: Vec<String> = adopted
        .iter()
        .map(|i| i.path.clone())
        .chain(conflicts.iter().map(|(a, _)| a.path.clone()))
        .collect();
    let bundle = Bundle::resume(
        store,
        &record.case_id,
        &record.run_id,
        info,
        adopted,
        resources,
    )
    .and_then(|b| match &record.target {
        Some(t) => b.within_parent(t.clone()),
        None => Ok(b),
    });
    let bundle = match bundle {
        Ok(b) => b,
        Err(e) => return fail(e.to_string()),
    };
    for gap in gaps_from_journal(journal) {
        bundle.add_gap(gap);
    }
    for (target, manifest_sha256) in children {
        bundle.add_child(target, *manifest_sha256);
    }
    let meta_of = |art: &StagedArtifact| {
        ItemMeta::new(art.step.clone(), Some(&art.source)).with_attempt(art.attempt)
    };
    // One item that cannot be stored never costs the others: it is recorded in the manifest
    // as a failed item (`failed_items`), the seal goes on, and the summary says so.
    for (art, why) in &conflicts {
        bundle.record_failure(&art.path, meta_of(art), why.clone());
    }
    // Small artifacts several at once (local: a link and a directory sync each; S3: one PUT
    // each), large ones one at a time, so the seal's memory stays that of one streaming
    // upload; the manifest lists items in canonical order whatever order they were stored in.
    let (small, large): (Vec<&StagedArtifact>, Vec<&StagedArtifact>) = artifacts
        .iter()
        .filter(|a| !already.contains(&a.path))
        .partition(|a| a.size <= ADOPT_AT_ONCE_MAX_SIZE);
    futures::stream::iter(small)
        .for_each_concurrent(ADOPTS_IN_FLIGHT, |art| adopt_staged(&bundle, staging, art))
        .await;
    for art in large {
        adopt_staged(&bundle, staging, art).await;
    }
    // An earlier seal may have stored the journal as it was then; it is kept (the store never
    // overwrites) and the run directory keeps the whole journal.
    if !already.iter().any(|p| p == "journal.jsonl") {
        let journal_item = bundle
            .capture(
                "journal.jsonl",
                Source::File(journal.to_owned()),
                ItemMeta::default(),
            )
            .await;
        match journal_item {
            Ok(_) | Err(irr_forensics::Error::Exists { .. }) => {}
            Err(e) => bundle.record_failure("journal.jsonl", ItemMeta::default(), e.to_string()),
        }
    }
    match bundle.seal().await {
        Ok(outcome) => {
            let seal = outcome.seal();
            let failed = &seal.manifest.failed_items;
            EvidenceSummary {
                location,
                manifest_sha256: Some(seal.manifest_sha256.to_hex()),
                items: seal.manifest.items.len(),
                // Sealed, but incomplete: the run must not look as if all was kept.
                error: (!failed.is_empty()).then(|| {
                    format!(
                        "sealed without {} item(s) that could not be stored (listed as failed_items in the manifest): {}",
                        failed.len(),
                        failed
                            .iter()
                            .map(|f| format!("{}: {}", f.path, f.error))
                            .collect::<Vec<_>>()
                            .join("; ")
                    )
                }),
                signed_by: None,
                signature_error: None,
            }
        }
        Err(e) => fail(e.to_string()),
    }
}

/// Adopts one staged artifact into the bundle; what cannot be stored is recorded as a failed
/// item, never an error of the seal.
async fn adopt_staged(bundle: &Bundle, staging: &Path, art: &StagedArtifact) {
    let meta = || ItemMeta::new(art.step.clone(), Some(&art.source)).with_attempt(art.attempt);
    let Some(sha256) = Sha256Digest::from_hex(&art.sha256) else {
        bundle.record_failure(
            &art.path,
            meta(),
            format!(
                "the journal records no valid sha256 for it ({:?})",
                art.sha256
            ),
        );
        return;
    };
    let file = staging.join(&art.path);
    // An artifact written straight into the store (a volatile capture) was adopted from the
    // store's listing already; one neither there nor staged is lost.
    if !file.exists() {
        bundle.record_failure(
            &art.path,
            meta(),
            format!("neither staged in the run directory nor found in the evidence store (recorded with sha256 {})", art.sha256),
        );
        return;
    }
    // The staged file is the evidence copy, hashed when it was written: adopted, not copied
    // or re-read (local: linked into place; S3: streamed up once, hash checked).
    match bundle
        .adopt(&art.path, file, sha256, art.size, meta())
        .await
    {
        Ok(_) => {}
        // Already stored by an earlier attempt of this seal: the bundle keeps it.
        Err(irr_forensics::Error::Exists { .. }) => {}
        Err(e) => bundle.record_failure(&art.path, meta(), e.to_string()),
    }
}

/// Items of this run already in the store (an interrupted seal), checked byte for byte
/// against what was staged; and the staged artifacts the store holds other bytes for (with
/// why), which cannot be stored.
async fn adopt_stored<'a>(
    store: &Store,
    record: &RunRecord,
    artifacts: &'a [StagedArtifact],
) -> Result<
    (
        Vec<irr_forensics::ManifestItem>,
        Vec<(&'a StagedArtifact, String)>,
    ),
    String,
> {
    let mut conflicts = Vec::new();
    let prefix = record.bundle_prefix();
    let listed = store.list(&prefix).await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for l in listed.iter().filter(|l| l.is_latest && !l.delete_marker) {
        let Some(rel) = l.key.strip_prefix(&prefix) else {
            continue;
        };
        let staged = artifacts.iter().find(|a| a.path == rel);
        let (step, source, captured_at, attempt) = match (staged, rel) {
            (Some(a), _) => (
                Some(a.step.clone()),
                Some(a.source.clone()),
                a.captured_at.clone(),
                Some(a.attempt),
            ),
            (None, "journal.jsonl") => (None, None, irr_forensics::clock::now_rfc3339(), None),
            _ => continue,
        };
        let found = match store.hash_object(&l.key, l.version_id.as_deref()).await {
            Ok(Some(found)) => found,
            Ok(None) => continue,
            Err(e) => match staged {
                Some(a) => {
                    conflicts.push((a, format!("the evidence store holds something at this path that cannot be read back: {e}")));
                    continue;
                }
                None => continue,
            },
        };
        let (sha, size) = found;
        if let Some(a) = staged {
            if sha.to_hex() != a.sha256 {
                conflicts.push((a, format!("the evidence store already holds other bytes at this path (sha256 {}) than were captured ({})", sha.to_hex(), a.sha256)));
                continue;
            }
        }
        out.push(irr_forensics::ManifestItem {
            path: rel.to_owned(),
            sha256: sha,
            size,
            captured_at: Timestamp::parse(&captured_at).unwrap_or_else(Timestamp::now),
            step,
            source,
            attempt,
            s3: l.version_id.clone().map(|v| irr_forensics::S3ObjectRef {
                version_id: Some(v),
                checksum_sha256: None,
            }),
        });
    }
    Ok((out, conflicts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::Source as Text;

    #[test]
    fn the_evidence_owner_is_the_flag_else_the_caller() {
        assert_eq!(
            evidence_owner(Some("210987654321"), Some("123456789012")).unwrap(),
            Some("210987654321".to_owned())
        );
        assert_eq!(
            evidence_owner(None, Some("123456789012")).unwrap(),
            Some("123456789012".to_owned())
        );
        // No AWS (local evidence only): no owner to check.
        assert_eq!(evidence_owner(None, Some("")).unwrap(), None);
        assert_eq!(evidence_owner(None, None).unwrap(), None);
        let e = evidence_owner(Some("acme"), Some("123456789012")).unwrap_err();
        assert!(
            e.starts_with("--evidence-owner: ") && e.contains("12 digits"),
            "{e}"
        );
        let s = s3_settings(&EvidenceDecl::default(), Some("123456789012"));
        assert_eq!(s.expected_owner.as_deref(), Some("123456789012"));
        assert_eq!(read_settings(None).expected_owner, None);
    }

    fn record(case: &str, run: &str) -> RunRecord {
        RunRecord {
            run_id: run.into(),
            case_id: case.into(),
            playbook_path: "p.yaml".into(),
            playbook_sha256: "0".repeat(64),
            inputs: Default::default(),
            secret_inputs: Vec::new(),
            defaulted_inputs: None,
            evidence_location: String::new(),
            dry_run: false,
            concurrency: 1,
            started_at: irr_forensics::clock::now_rfc3339(),
            region: "us-east-1".into(),
            account_id: "123456789012".into(),
            aws_principal: "arn:aws:iam::123456789012:user/r".into(),
            evidence_owner: None,
            signing_key: None,
            target: None,
            fanout: None,
            execution: None,
        }
    }

    /// A seal interrupted after some uploads is completed by the next one: the stored items
    /// are adopted (not re-written, which the store refuses) and listed in the manifest.
    #[tokio::test]
    async fn an_interrupted_seal_adopts_what_was_stored() {
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path().join("staging");
        let evidence = dir.path().join("evidence");
        std::fs::create_dir_all(staging.join("artifacts/s1")).unwrap();
        std::fs::write(staging.join("artifacts/s1/a.json"), b"{\"a\": 1}\n").unwrap();
        std::fs::write(staging.join("artifacts/s1/b.json"), b"{\"b\": 2}\n").unwrap();
        let journal = dir.path().join("journal.jsonl");
        std::fs::write(&journal, b"{}\n").unwrap();
        let art = |name: &str, bytes: &[u8]| StagedArtifact {
            path: format!("artifacts/s1/{name}"),
            attempt: 1,
            sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes)),
            size: bytes.len() as u64,
            step: "s1".into(),
            source: "test".into(),
            captured_at: irr_forensics::clock::now_rfc3339(),
        };
        let arts = vec![
            art("a.json", b"{\"a\": 1}\n"),
            art("b.json", b"{\"b\": 2}\n"),
        ];
        let decl = EvidenceDecl::default();
        let store = open_store(evidence.to_str().unwrap(), None, &decl, false, None)
            .await
            .unwrap();
        // The first seal got as far as one upload.
        store
            .put(
                "IR-1/r-1/artifacts/s1/a.json",
                Source::File(staging.join("artifacts/s1/a.json")),
            )
            .await
            .unwrap();
        let pb_text = "apiVersion: irr/v1\nkind: Playbook\nmetadata: {name: t, version: 1.0.0}\nsteps:\n  - id: s1\n    action: control.approve\n    with: {prompt: x}\n";
        let pb = crate::validate::validate(&Text::new("p.yaml", pb_text)).unwrap();
        let summary = seal(
            store,
            &pb,
            &record("IR-1", "r-1"),
            &staging,
            &arts,
            &[],
            &journal,
            &[],
        )
        .await;
        assert!(summary.error.is_none(), "{summary:?}");
        assert_eq!(summary.items, 3);
        let loc =
            irr_forensics::EvidenceLocation::parse(evidence.join("IR-1/r-1").to_str().unwrap())
                .unwrap();
        let report = irr_forensics::verify(&loc, None).await.unwrap();
        assert!(report.is_ok(), "{report}");
    }

    #[tokio::test]
    async fn one_item_that_cannot_be_stored_does_not_stop_the_seal() {
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path().join("staging");
        let evidence = dir.path().join("evidence");
        std::fs::create_dir_all(staging.join("artifacts/s1")).unwrap();
        std::fs::write(staging.join("artifacts/s1/a.json"), b"{}\n").unwrap();
        let journal = dir.path().join("journal.jsonl");
        std::fs::write(&journal, b"{}\n").unwrap();
        let art = |name: &str, attempt: u32| StagedArtifact {
            path: crate::executor::artifact_path("s1", attempt, name),
            attempt,
            sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"{}\n")),
            size: 3,
            step: "s1".into(),
            source: "test".into(),
            captured_at: irr_forensics::clock::now_rfc3339(),
        };
        // b.json was never staged (its file is gone): it fails, a.json is sealed.
        let arts = vec![art("a.json", 1), art("b.json", 2)];
        let store = open_store(
            evidence.to_str().unwrap(),
            None,
            &EvidenceDecl::default(),
            false,
            None,
        )
        .await
        .unwrap();
        let pb_text = "apiVersion: irr/v1\nkind: Playbook\nmetadata: {name: t, version: 1.0.0}\nsteps:\n  - id: s1\n    action: control.approve\n    with: {prompt: x}\n";
        let pb = crate::validate::validate(&Text::new("p.yaml", pb_text)).unwrap();
        let summary = seal(
            store,
            &pb,
            &record("IR-1", "r-1"),
            &staging,
            &arts,
            &[],
            &journal,
            &[],
        )
        .await;
        assert!(summary.manifest_sha256.is_some(), "{summary:?}");
        assert_eq!(summary.items, 2, "a.json and the journal");
        let err = summary.error.as_deref().unwrap();
        assert!(err.contains("sealed without 1 item(s)"), "{err}");
        assert!(err.contains("artifacts/s1/attempt-2/b.json"), "{err}");
        let loc =
            irr_forensics::EvidenceLocation::parse(evidence.join("IR-1/r-1").to_str().unwrap())
                .unwrap();
        let report = irr_forensics::verify(&loc, None).await.unwrap();
        assert!(report.is_ok(), "{report}");
        assert_eq!(report.failed_items.len(), 1);
        assert_eq!(report.failed_items[0].attempt, Some(2));
        assert!(
            report
                .to_string()
                .contains("warning   artifacts/s1/attempt-2/b.json"),
            "{report}"
        );
        let manifest = std::fs::read_to_string(evidence.join("IR-1/r-1/manifest.json")).unwrap();
        assert!(manifest.contains("\"failed_items\""), "{manifest}");
        assert!(manifest.contains("\"attempt\": 1"), "{manifest}");
    }
}
