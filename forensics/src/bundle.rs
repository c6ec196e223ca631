//! One run's evidence: capture items under `LOCATION/CASE_ID/RUN_ID/`, then seal.
//!
//! [`Bundle::seal`] writes `manifest.json` and then `SHA256SUMS`, last, so a run without them
//! is not sealed. It chains the run to the case's previous sealed run
//! (`previous_manifest_sha256`): the head of the case's chain, i.e. the sealed run no other run
//! points to (the latest `sealed_at` if there are several). Sealing is idempotent: a run that is
//! sealed already is reported as such and never written twice, and a seal that was interrupted
//! after `manifest.json` is completed from that manifest.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Mutex;

use bytes::Bytes;

use crate::hash::Sha256Digest;
use crate::location::{check_component, check_item_path};
use crate::manifest::{
    AwsResource, ChildRun, Collector, FailedItem, Gap, Manifest, ManifestItem, PlaybookRef,
    S3ObjectRef, Sha256Sums, Target, Timestamp, MANIFEST_FORMAT, MANIFEST_NAME, SUMS_NAME,
};
use crate::store::{Source, Store};
use crate::{Error, EvidenceLocation, Result};

/// Largest `manifest.json` or `SHA256SUMS` that is read back (64 MiB).
pub(crate) const SMALL_FILE_LIMIT: u64 = 64 * 1024 * 1024;

/// What the manifest records about the run as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    /// The playbook that ran.
    pub playbook: PlaybookRef,
    /// Who collected, with what, from where.
    pub collector: Collector,
    /// When the run started.
    pub started_at: Timestamp,
}

/// The manifest fields of one item that the caller knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemMeta {
    /// The step that captured it (`None` for the journal).
    pub step: Option<String>,
    /// What it came from, e.g. `ec2:DescribeVolumes`.
    pub source: Option<String>,
    /// The attempt of the step that captured it.
    pub attempt: Option<u32>,
}

impl ItemMeta {
    /// Meta of an item captured by `step` from `source`.
    pub fn new(step: impl Into<String>, source: Option<&str>) -> ItemMeta {
        ItemMeta {
            step: Some(step.into()),
            source: source.map(str::to_string),
            attempt: None,
        }
    }

    /// The same, captured by attempt `attempt` of its step.
    pub fn with_attempt(mut self, attempt: u32) -> ItemMeta {
        self.attempt = Some(attempt);
        self
    }
}

/// A sealed run.
#[derive(Debug, Clone, PartialEq)]
pub struct Seal {
    /// The run's location (`LOCATION/CASE_ID/RUN_ID`).
    pub location: EvidenceLocation,
    /// SHA-256 of `manifest.json`'s bytes: record it outside the store to anchor the chain.
    pub manifest_sha256: Sha256Digest,
    /// The manifest as written.
    pub manifest: Manifest,
}

/// What [`Bundle::seal`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum SealOutcome {
    /// Sealed now (or an interrupted seal was completed now).
    Sealed(Seal),
    /// The run was sealed before; nothing was written.
    AlreadySealed(Seal),
}

impl SealOutcome {
    /// The seal, either way.
    pub fn seal(&self) -> &Seal {
        match self {
            SealOutcome::Sealed(s) | SealOutcome::AlreadySealed(s) => s,
        }
    }

    /// `true` when the run had been sealed before this call.
    pub fn was_already_sealed(&self) -> bool {
        matches!(self, SealOutcome::AlreadySealed(_))
    }
}

/// `artifacts/STEP_ID/NAME`, checked.
pub fn artifact_path(step: &str, name: &str) -> Result<String> {
    check_component("step id", step)?;
    check_component("artifact name", name)?;
    Ok(format!("artifacts/{step}/{name}"))
}

#[derive(Default)]
struct State {
    items: BTreeMap<String, ManifestItem>,
    failed: BTreeMap<String, FailedItem>,
    in_progress: BTreeSet<String>,
    resources: Vec<AwsResource>,
    gaps: Vec<Gap>,
    children: BTreeMap<String, ChildRun>,
    sealed: Option<Seal>,
}

/// The evidence of one run being collected. Share it between tasks with an `Arc`: every
/// method takes `&self`.
pub struct Bundle {
    store: Store,
    case_id: String,
    run_id: String,
    /// A fan-out child's account and region: the bundle is `CASE_ID/RUN_ID/children/A/R/`.
    target: Option<Target>,
    info: RunInfo,
    state: Mutex<State>,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("location", &self.location())
            .finish_non_exhaustive()
    }
}

impl Bundle {
    /// A new run's evidence in `store` under `CASE_ID/RUN_ID/`.
    pub fn new(store: Store, case_id: &str, run_id: &str, info: RunInfo) -> Result<Bundle> {
        Bundle::resume(store, case_id, run_id, info, Vec::new(), Vec::new())
    }

    /// A run resumed after an interruption: `items` and `resources` are those captured before
    /// (e.g. replayed from the run's journal, where the caller recorded each returned
    /// [`ManifestItem`]).
    pub fn resume(
        store: Store,
        case_id: &str,
        run_id: &str,
        info: RunInfo,
        items: Vec<ManifestItem>,
        resources: Vec<AwsResource>,
    ) -> Result<Bundle> {
        check_component("case id", case_id)?;
        check_component("run id", run_id)?;
        let mut state = State::default();
        for item in items {
            check_item_path(&item.path)?;
            if state
                .items
                .insert(item.path.clone(), item.clone())
                .is_some()
            {
                return Err(Error::AlreadyCaptured { path: item.path });
            }
        }
        state.resources = resources;
        Ok(Bundle {
            store,
            case_id: case_id.to_string(),
            run_id: run_id.to_string(),
            target: None,
            info,
            state: Mutex::new(state),
        })
    }

    /// The same bundle as the fan-out child of run `RUN_ID` that acted in `target`: stored
    /// at `CASE_ID/RUN_ID/children/ACCOUNT/REGION/`, its manifest names the target, and it
    /// is not chained to the case's runs (its parent's manifest lists its hash).
    pub fn within_parent(mut self, target: Target) -> Result<Bundle> {
        check_component("account", &target.account)?;
        check_component("region", &target.region)?;
        self.target = Some(target);
        Ok(self)
    }

    /// The fan-out child's account and region, if this is a child.
    pub fn target(&self) -> Option<&Target> {
        self.target.as_ref()
    }

    /// Lists a sealed child run in this (parent) run's manifest. Listing the same child again
    /// replaces it.
    pub fn add_child(&self, target: &Target, manifest_sha256: Sha256Digest) {
        let path = format!("{}/{MANIFEST_NAME}", target.dir());
        self.lock().children.insert(
            path.clone(),
            ChildRun {
                account: target.account.clone(),
                region: target.region.clone(),
                path,
                manifest_sha256,
            },
        );
    }

    /// The case.
    pub fn case_id(&self) -> &str {
        &self.case_id
    }

    /// The run.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The run's location, `LOCATION/CASE_ID/RUN_ID` (a child's:
    /// `.../RUN_ID/children/ACCOUNT/REGION`): what `verify` takes is the parent's.
    pub fn location(&self) -> EvidenceLocation {
        let run = self.store.location().join(&self.case_id).join(&self.run_id);
        match &self.target {
            Some(t) => run.join("children").join(&t.account).join(&t.region),
            None => run,
        }
    }

    fn key(&self, path: &str) -> String {
        match &self.target {
            Some(t) => format!("{}/{}/{}/{}", self.case_id, self.run_id, t.dir(), path),
            None => format!("{}/{}/{}", self.case_id, self.run_id, path),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores one item at `path` (relative to the run, e.g. `artifacts/STEP/NAME` or
    /// `journal.jsonl`), hashing it in the same pass, and records it for the manifest.
    /// Returns the manifest entry (record it in the journal to be able to resume).
    pub async fn capture(
        &self,
        path: &str,
        source: Source,
        meta: ItemMeta,
    ) -> Result<ManifestItem> {
        let key = self.key(path);
        self.record(path, meta, self.store.put(&key, source)).await
    }

    /// Stores a file the caller already wrote and hashed (an artifact staged while it was
    /// captured, its `sha256` and `size` recorded then) at `path`, through
    /// [`Store::adopt_file`]: in a local store it is linked into place without being copied
    /// or read again; in S3 it is streamed up once and must hash to `sha256`.
    pub async fn adopt(
        &self,
        path: &str,
        file: std::path::PathBuf,
        sha256: Sha256Digest,
        size: u64,
        meta: ItemMeta,
    ) -> Result<ManifestItem> {
        let key = self.key(path);
        self.record(path, meta, self.store.adopt_file(&key, file, sha256, size))
            .await
    }

    /// Checks `path`, runs `store` (which writes it) and records the item for the manifest.
    async fn record(
        &self,
        path: &str,
        meta: ItemMeta,
        store: impl std::future::Future<Output = Result<crate::store::StoredObject>>,
    ) -> Result<ManifestItem> {
        check_item_path(path)?;
        {
            let mut st = self.lock();
            if st.sealed.is_some() {
                return Err(Error::Sealed {
                    case_id: self.case_id.clone(),
                    run_id: self.run_id.clone(),
                });
            }
            if st.items.contains_key(path) || !st.in_progress.insert(path.to_string()) {
                return Err(Error::AlreadyCaptured {
                    path: path.to_string(),
                });
            }
        }
        let captured_at = Timestamp::now();
        let result = store.await;
        let mut st = self.lock();
        st.in_progress.remove(path);
        let stored = result?;
        let item = ManifestItem {
            path: path.to_string(),
            sha256: stored.sha256,
            size: stored.size,
            captured_at,
            step: meta.step,
            source: meta.source,
            attempt: meta.attempt,
            s3: match self.store {
                Store::S3(_) => Some(S3ObjectRef {
                    version_id: stored.version_id,
                    checksum_sha256: stored.checksum_sha256,
                }),
                Store::Local(_) => None,
            },
        };
        st.items.insert(path.to_string(), item.clone());
        Ok(item)
    }

    /// Stores `value` as pretty-printed UTF-8 JSON (with a final newline) at
    /// `artifacts/STEP/NAME`.
    pub async fn capture_json<T: serde::Serialize + ?Sized>(
        &self,
        step: &str,
        name: &str,
        value: &T,
        source: Option<&str>,
    ) -> Result<ManifestItem> {
        let path = artifact_path(step, name)?;
        let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::Json {
            what: "artifact",
            source: e,
        })?;
        bytes.push(b'\n');
        self.capture(
            &path,
            Source::Bytes(Bytes::from(bytes)),
            ItemMeta::new(step, source),
        )
        .await
    }

    /// Records that the item at `path` could not be captured or stored, and why: the seal
    /// lists it under `failed_items` instead of aborting (one bad item never costs the
    /// rest). An item already captured at that path is taken out of `items`.
    pub fn record_failure(&self, path: &str, meta: ItemMeta, error: impl Into<String>) {
        let mut st = self.lock();
        if st.sealed.is_some() {
            return;
        }
        st.items.remove(path);
        st.failed.insert(
            path.to_string(),
            FailedItem {
                path: path.to_string(),
                step: meta.step,
                attempt: meta.attempt,
                error: error.into(),
            },
        );
    }

    /// The items recorded as failed so far.
    pub fn failed_items(&self) -> Vec<FailedItem> {
        self.lock().failed.values().cloned().collect()
    }

    /// Lists a resource that cannot be hashed as bytes (an EBS snapshot, a stack).
    pub fn add_resource(&self, resource: AwsResource) {
        self.lock().resources.push(resource);
    }

    /// Records an optional read that failed (listed in the manifest's `gaps`).
    pub fn add_gap(&self, gap: Gap) {
        self.lock().gaps.push(gap);
    }

    /// The items captured so far, by path.
    pub fn items(&self) -> Vec<ManifestItem> {
        self.lock().items.values().cloned().collect()
    }

    /// Seals the run: writes `manifest.json`, then `SHA256SUMS`. Safe to call again (and from
    /// a resumed process): a sealed run is reported as [`SealOutcome::AlreadySealed`] and not
    /// written twice. After sealing, captures are refused.
    pub async fn seal(&self) -> Result<SealOutcome> {
        {
            let st = self.lock();
            if let Some(s) = &st.sealed {
                return Ok(SealOutcome::AlreadySealed(s.clone()));
            }
            if !st.in_progress.is_empty() {
                return Err(Error::CaptureInProgress {
                    paths: st.in_progress.iter().cloned().collect(),
                });
            }
        }
        let manifest_key = self.key(MANIFEST_NAME);
        if let Some(outcome) = self.existing_seal(&manifest_key).await? {
            return Ok(outcome);
        }
        // A child is anchored by its parent's manifest, not by the case's chain.
        let previous = match self.target {
            Some(_) => None,
            None => find_previous(&self.store, &self.case_id, &self.run_id).await?,
        };
        let manifest = {
            let st = self.lock();
            let mut m = Manifest {
                format: MANIFEST_FORMAT.to_string(),
                case_id: self.case_id.clone(),
                run_id: self.run_id.clone(),
                target: self.target.clone(),
                playbook: self.info.playbook.clone(),
                collector: self.info.collector.clone(),
                started_at: self.info.started_at,
                sealed_at: Timestamp::now(),
                items: st.items.values().cloned().collect(),
                failed_items: st.failed.values().cloned().collect(),
                aws_resources: st.resources.clone(),
                gaps: st.gaps.clone(),
                children: st.children.values().cloned().collect(),
                previous_manifest_sha256: previous,
            };
            m.normalise();
            m
        };
        let bytes = manifest.to_canonical_bytes();
        let digest = Sha256Digest::of(&bytes);
        match self
            .store
            .put(&manifest_key, Source::Bytes(Bytes::from(bytes)))
            .await
        {
            Ok(_) => {}
            // Another process sealed this run between our check and our write.
            Err(Error::Exists { .. }) => {
                if let Some(outcome) = self.existing_seal(&manifest_key).await? {
                    return Ok(outcome);
                }
            }
            Err(e) => return Err(e),
        }
        self.write_sums(&manifest, digest).await?;
        let seal = Seal {
            location: self.location(),
            manifest_sha256: digest,
            manifest,
        };
        self.lock().sealed = Some(seal.clone());
        Ok(SealOutcome::Sealed(seal))
    }

    /// When `manifest.json` exists: completes `SHA256SUMS` if it is missing, and reports.
    async fn existing_seal(&self, manifest_key: &str) -> Result<Option<SealOutcome>> {
        let Some(bytes) = self
            .store
            .read(manifest_key, None, SMALL_FILE_LIMIT)
            .await?
        else {
            return Ok(None);
        };
        let manifest = Manifest::from_slice(&bytes).map_err(|e| Error::Unreadable {
            what: "manifest.json",
            location: self.store.describe(manifest_key),
            reason: e.to_string(),
        })?;
        let digest = Sha256Digest::of(&bytes);
        let seal = Seal {
            location: self.location(),
            manifest_sha256: digest,
            manifest,
        };
        let outcome = if self.store.exists(&self.key(SUMS_NAME)).await? {
            SealOutcome::AlreadySealed(seal.clone())
        } else {
            self.write_sums(&seal.manifest, digest).await?;
            SealOutcome::Sealed(seal.clone())
        };
        self.lock().sealed = Some(seal);
        Ok(Some(outcome))
    }

    async fn write_sums(&self, manifest: &Manifest, digest: Sha256Digest) -> Result<()> {
        let sums = Sha256Sums::for_manifest(manifest, digest).to_bytes();
        match self
            .store
            .put(&self.key(SUMS_NAME), Source::Bytes(Bytes::from(sums)))
            .await
        {
            Ok(_) | Err(Error::Exists { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// A sealed (or once sealed) run of a case, as found in the store.
#[derive(Debug, Clone)]
pub(crate) struct CaseRun {
    pub run_id: String,
    /// SHA-256 of the manifest's bytes.
    pub manifest_sha256: Sha256Digest,
    /// The parsed manifest, or why it could not be parsed.
    pub manifest: std::result::Result<Manifest, String>,
    /// For a manifest hidden behind an S3 delete marker: the version read.
    pub hidden_version: Option<String>,
}

/// Every run of `case_id` with a `manifest.json` (current), and separately those whose
/// manifest is hidden behind an S3 delete marker. Runs without a manifest are not sealed and
/// are left out. Runs whose `manifest.json` is not a file, or too large to be one irr wrote,
/// come third, with what is wrong (they are never read, nor followed).
pub(crate) async fn case_runs(
    store: &Store,
    case_id: &str,
) -> Result<(Vec<CaseRun>, Vec<CaseRun>, Vec<(String, String)>)> {
    let mut sealed = Vec::new();
    let mut hidden = Vec::new();
    let mut unreadable = Vec::new();
    for run_id in store.list_children(&format!("{case_id}/")).await? {
        let key = format!("{case_id}/{run_id}/{MANIFEST_NAME}");
        let read = match store.read(&key, None, SMALL_FILE_LIMIT).await {
            Ok(read) => read,
            Err(Error::NotAFile { found, .. }) => {
                unreadable.push((run_id, format!("manifest.json is {found}, not a file")));
                continue;
            }
            Err(Error::Unreadable { reason, .. }) => {
                unreadable.push((run_id, format!("manifest.json is {reason}")));
                continue;
            }
            Err(e) => return Err(e),
        };
        if let Some(bytes) = read {
            sealed.push(CaseRun {
                run_id,
                manifest_sha256: Sha256Digest::of(&bytes),
                manifest: Manifest::from_slice(&bytes).map_err(|e| e.to_string()),
                hidden_version: None,
            });
        } else if let Some((vid, bytes)) = store.read_hidden(&key, SMALL_FILE_LIMIT).await? {
            hidden.push(CaseRun {
                run_id,
                manifest_sha256: Sha256Digest::of(&bytes),
                manifest: Manifest::from_slice(&bytes).map_err(|e| e.to_string()),
                hidden_version: Some(vid),
            });
        }
    }
    Ok((sealed, hidden, unreadable))
}

/// The manifest hash the run `run_id` chains to: the head of the case's chain (a sealed run no
/// other run points to), the latest sealed if there are several heads.
async fn find_previous(store: &Store, case_id: &str, run_id: &str) -> Result<Option<Sha256Digest>> {
    let (runs, _, _) = case_runs(store, case_id).await?;
    let runs: Vec<CaseRun> = runs.into_iter().filter(|r| r.run_id != run_id).collect();
    let referenced: HashSet<Sha256Digest> = runs
        .iter()
        .filter_map(|r| r.manifest.as_ref().ok()?.previous_manifest_sha256)
        .collect();
    let head = runs
        .iter()
        .filter(|r| !referenced.contains(&r.manifest_sha256))
        .max_by_key(|r| {
            (
                r.manifest.as_ref().ok().map(|m| m.sealed_at),
                r.run_id.clone(),
            )
        });
    Ok(head.map(|r| r.manifest_sha256))
}
