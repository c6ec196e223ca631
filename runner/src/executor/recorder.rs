//! The run's recorder: where actions report what they do (`actions::Recorder`). It journals
//! calls, gaps and resources through the run's [`Sink`], stages artifacts under the run's
//! evidence directory (attempt-scoped, write-once, hashed as written) and reads the case's own
//! record back from the typed journal.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::Sink;
use crate::actions::{self, ActionError, AwsResource, CallOutcome, Recorder};
use crate::events::RunEvent;
use irr_forensics::clock::now_rfc3339;

/// Where an artifact of attempt `attempt` of a step goes in the bundle: the first attempt
/// keeps `artifacts/STEP/NAME`, attempt N > 1 writes `artifacts/STEP/attempt-N/NAME`
/// (`shared/spec/evidence-format.md`, wave 2), so a retry or a resumed run never overwrites
/// what an earlier attempt saw. `step` is the step id, `STEP/ITEM` for a `for_each` item.
pub fn artifact_path(step: &str, attempt: u32, name: &str) -> String {
    let clean = |s: &str| -> String {
        s.split('/')
            .filter(|seg| !seg.is_empty() && *seg != "." && *seg != "..")
            .collect::<Vec<_>>()
            .join("/")
    };
    if attempt > 1 {
        format!(
            "artifacts/{}/attempt-{attempt}/{}",
            clean(step),
            clean(name)
        )
    } else {
        format!("artifacts/{}/{}", clean(step), clean(name))
    }
}

/// The attempt an artifact path of step `step` belongs to (the inverse of
/// [`artifact_path`]; 1 for the first attempt's plain path).
pub fn attempt_of(path: &str, step: &str) -> u32 {
    path.strip_prefix("artifacts/")
        .and_then(|p| p.strip_prefix(step))
        .and_then(|p| p.strip_prefix("/attempt-"))
        .and_then(|p| p.split_once('/'))
        .and_then(|(n, name)| (!name.is_empty()).then_some(n))
        .and_then(|n| n.parse().ok())
        .filter(|n| *n > 1)
        .unwrap_or(1)
}

fn first_attempt() -> u32 {
    1
}

/// An artifact staged in the run directory until the evidence is sealed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StagedArtifact {
    /// Path in the bundle (`artifacts/STEP/NAME`, `artifacts/STEP/attempt-N/NAME`).
    pub path: String,
    /// The attempt of its step that captured it (1-based, counted across resumes).
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    /// SHA-256.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
    /// Step id.
    pub step: String,
    /// What it came from.
    pub source: String,
    /// RFC 3339.
    pub captured_at: String,
}

/// The message for a staging file that could not be created: "captured already" when it exists.
fn already_or(rel: &str, e: std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::AlreadyExists {
        format!("{rel} was captured already in this attempt; evidence is never overwritten")
    } else {
        format!("{rel}: {e}")
    }
}

/// The actions' [`Recorder`]: journal entries around every mutating call, artifacts staged
/// under the run directory with their SHA-256, resources for the manifest.
pub struct RunRecorder {
    sink: Arc<Sink>,
    staging: PathBuf,
    evidence_location: String,
    evidence_owner: Option<String>,
    store: Option<irr_forensics::Store>,
    target: Option<irr_forensics::manifest::Target>,
    calls: AtomicU64,
    artifacts: Mutex<Vec<StagedArtifact>>,
    resources: Mutex<Vec<AwsResource>>,
}

impl RunRecorder {
    /// The recorder of a run whose evidence is staged under `staging`.
    pub(super) fn open(
        sink: Arc<Sink>,
        staging: PathBuf,
        evidence_location: String,
        evidence_owner: Option<String>,
        store: Option<irr_forensics::Store>,
        target: Option<irr_forensics::manifest::Target>,
    ) -> RunRecorder {
        RunRecorder {
            sink,
            staging,
            evidence_location,
            evidence_owner,
            store,
            target,
            calls: AtomicU64::new(0),
            artifacts: Mutex::new(Vec::new()),
            resources: Mutex::new(Vec::new()),
        }
    }

    /// Stages an artifact of attempt `attempt` of `step`. Write-once: a path that is staged
    /// already is refused, never replaced.
    pub(super) fn stage(
        &self,
        step: &str,
        attempt: u32,
        name: &str,
        content: &[u8],
        source: &str,
    ) -> Result<StagedArtifact, ActionError> {
        let name = self.sink.secrets().mask_str(name).into_owned();
        let rel = artifact_path(step, attempt, &name);
        self.stage_at(rel, step, attempt, content, source)
    }

    /// Stages an item that no step's attempt captured at bundle path `rel` (the finding of
    /// `irr run --finding`, `finding/finding.json`), as [`Self::stage`] does: write-once,
    /// hashed as written, journaled.
    pub(super) fn stage_item(
        &self,
        item: &super::FirstItem,
    ) -> Result<StagedArtifact, ActionError> {
        self.stage_at(
            item.path.clone(),
            &item.step,
            1,
            &item.content,
            &item.source,
        )
    }

    fn stage_at(
        &self,
        rel: String,
        step: &str,
        attempt: u32,
        content: &[u8],
        source: &str,
    ) -> Result<StagedArtifact, ActionError> {
        use std::io::Write as _;
        let secrets = self.sink.secrets();
        let content = secrets.mask_bytes(content);
        let content: &[u8] = &content;
        let source = secrets.mask_str(source);
        let full = self.staging.join(&rel);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| ActionError::Evidence(format!("{rel}: {e}")))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&full)
            .map_err(|e| ActionError::Evidence(already_or(&rel, e)))?;
        file.write_all(content)
            .and_then(|()| file.sync_data())
            .map_err(|e| ActionError::Evidence(format!("{rel}: {e}")))?;
        let art = StagedArtifact {
            path: rel,
            attempt,
            sha256: hex::encode(Sha256::digest(content)),
            size: content.len() as u64,
            step: step.to_owned(),
            source: source.into_owned(),
            captured_at: now_rfc3339(),
        };
        Ok(self.staged(art))
    }

    /// Records an artifact of attempt `attempt` that is in the evidence store already (written
    /// there by an instance's agent, hashed by irr reading it back): journaled like a staged
    /// one; the seal finds it in the store, checks its hash again and lists it.
    pub(super) fn stored(
        &self,
        step: &str,
        attempt: u32,
        name: &str,
        sha256: &str,
        size: u64,
        source: &str,
    ) -> Result<StagedArtifact, ActionError> {
        if self.store.is_none() {
            return Err(ActionError::Evidence(
                "the run has no evidence store to hold it".into(),
            ));
        }
        let secrets = self.sink.secrets();
        Ok(self.staged(StagedArtifact {
            path: artifact_path(step, attempt, &secrets.mask_str(name)),
            attempt,
            sha256: sha256.to_owned(),
            size,
            step: step.to_owned(),
            source: secrets.mask_str(source).into_owned(),
            captured_at: now_rfc3339(),
        }))
    }

    /// The bundle path of an artifact of attempt `attempt` ([`artifact_path`]) and its staging
    /// file (directory created).
    fn staged_path(
        &self,
        step: &str,
        attempt: u32,
        name: &str,
    ) -> Result<(String, PathBuf), ActionError> {
        let rel = artifact_path(step, attempt, name);
        let full = self.staging.join(&rel);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| ActionError::Evidence(format!("{rel}: {e}")))?;
        }
        Ok((rel, full))
    }

    /// Streams the regular file `src` into staging as an artifact of attempt `attempt`: one
    /// read that hashes and writes the evidence copy at once, in a fixed buffer, on the
    /// blocking pool (`irr_forensics::copy_file_hashed`: FIFOs and devices refused, at most the
    /// size at open read, changes during the read reported as a note). The staged file is
    /// flushed and linked into place (never over an existing one) before the journal records
    /// it; the seal adopts it without a copy. Dropping the future (a step timeout) stops the
    /// copy.
    pub(super) async fn stage_file(
        &self,
        step: &str,
        attempt: u32,
        name: &str,
        src: PathBuf,
        source: &str,
    ) -> Result<StagedArtifact, ActionError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let secrets = self.sink.secrets();
        let name = secrets.mask_str(name).into_owned();
        let mut source = secrets.mask_str(source).into_owned();
        let (rel, full) = self.staged_path(step, attempt, &name)?;
        let tmp = full.with_file_name(format!(
            ".{}.capture-{}-{}",
            full.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        struct CancelOnDrop(Arc<AtomicBool>);
        impl Drop for CancelOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let cancel = CancelOnDrop(Arc::new(AtomicBool::new(false)));
        let flag = cancel.0.clone();
        let dest = full.clone();
        let rel_for_task = rel.clone();
        let copied = tokio::task::spawn_blocking(move || {
            let c =
                irr_forensics::copy_file_hashed(&src, &tmp, &flag).map_err(|e| e.to_string())?;
            // A hard link, not a rename: it fails on an existing file (write-once).
            let placed = std::fs::hard_link(&tmp, &dest);
            let _ = std::fs::remove_file(&tmp);
            placed
                .and_then(|()| {
                    // The link is durable before the journal says the artifact exists.
                    match dest.parent() {
                        Some(d) => std::fs::File::open(d)?.sync_all(),
                        None => Ok(()),
                    }
                })
                .map_err(|e| already_or(&rel_for_task, e))?;
            Ok::<_, String>(c)
        })
        .await;
        drop(cancel);
        let c = match copied {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(ActionError::Evidence(secrets.mask_str(&e).into_owned())),
            Err(e) => return Err(ActionError::Evidence(format!("{rel}: {e}"))),
        };
        if let Some(r) = &c.resolved {
            source = format!("{source} -> {}", secrets.mask_str(&r.display().to_string()));
        }
        if let Some(why) = &c.changed {
            self.sink.emit(RunEvent::Note {
                message: format!(
                    "{rel}: {why}; the artifact is exactly the {} bytes read (sha256 {})",
                    c.size, c.sha256
                ),
            });
        }
        Ok(self.staged(StagedArtifact {
            path: rel,
            attempt,
            sha256: c.sha256.to_hex(),
            size: c.size,
            step: step.to_owned(),
            source,
            captured_at: now_rfc3339(),
        }))
    }

    /// Records a staged artifact (for the seal) and journals it.
    fn staged(&self, art: StagedArtifact) -> StagedArtifact {
        let mut list = self.artifacts.lock().unwrap_or_else(|e| e.into_inner());
        list.push(art.clone());
        drop(list);
        self.sink.emit(RunEvent::EvidenceCaptured {
            step: art.step.clone(),
            path: art.path.clone(),
            sha256: art.sha256.clone(),
            size: art.size,
            source: art.source.clone(),
        });
        art
    }

    /// Artifacts staged so far.
    pub fn artifacts(&self) -> Vec<StagedArtifact> {
        self.artifacts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Resources recorded so far.
    pub fn resources(&self) -> Vec<AwsResource> {
        self.resources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Recorder for RunRecorder {
    fn call_started(&self, step: &str, service: &str, operation: &str, params: &Value) -> u64 {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        self.sink.emit(RunEvent::CallStarted {
            call,
            step: step.to_owned(),
            service: service.to_owned(),
            operation: operation.to_owned(),
            params: redact(params),
        });
        call
    }

    fn journal_ok(&self) -> bool {
        !self.sink.broken()
    }

    fn call_finished(&self, seq: u64, outcome: &CallOutcome) {
        let mut outcome = outcome.clone();
        outcome.result = redact(&outcome.result);
        self.sink
            .emit(RunEvent::CallFinished { call: seq, outcome });
    }

    fn artifact(
        &self,
        step: &str,
        name: &str,
        content: &[u8],
        source: &str,
    ) -> Result<String, ActionError> {
        self.stage(step, 1, name, content, source).map(|a| a.path)
    }

    fn secret(&self, value: &str) {
        self.sink.secrets().add(value);
    }

    fn resource(&self, resource: AwsResource) {
        let resource = self
            .sink
            .secrets()
            .mask_serde(&resource)
            .unwrap_or(AwsResource {
                kind: resource.kind,
                id: crate::secrets::MASK.to_owned(),
                details: Default::default(),
            });
        let step = resource
            .details
            .get("step")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        self.resources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(resource.clone());
        self.sink
            .emit(RunEvent::ResourceRecorded { step, resource });
    }

    fn captured(&self, name: &str) -> Vec<(usize, String, Result<Vec<u8>, String>)> {
        // The journal lists every artifact of the run, earlier processes' included, with the
        // SHA-256 taken when it was staged.
        let Some(journal) = self.staging.parent().map(|d| d.join("journal.jsonl")) else {
            return Vec::new();
        };
        let Ok(entries) = crate::journal::read(&journal) else {
            return Vec::new();
        };
        // A path staged twice (a retried step) holds its last bytes: check those.
        let state = crate::journal::replay(&entries);
        let last: Vec<(usize, &str, &str)> = state
            .artifacts()
            .into_iter()
            .filter(|a| a.path.rsplit('/').next() == Some(name))
            .map(|a| (a.order, a.path.as_str(), a.sha256.as_str()))
            .collect();
        let mut out = Vec::new();
        for (order, path, want) in last {
            let bytes = std::fs::read(self.staging.join(path))
                .map_err(|err| format!("staged copy unreadable: {err}"))
                .and_then(|b| {
                    let got = hex::encode(Sha256::digest(&b));
                    if got == want {
                        Ok(b)
                    } else {
                        Err(format!(
                            "staged copy altered since it was captured (sha256 {got}, journaled {want})"
                        ))
                    }
                });
            out.push((order, path.to_owned(), bytes));
        }
        out
    }

    fn evidence_location(&self) -> Option<String> {
        Some(self.evidence_location.clone()).filter(|l| !l.is_empty())
    }

    fn evidence_owner(&self) -> Option<String> {
        self.evidence_owner.clone()
    }

    fn target(&self) -> Option<irr_forensics::manifest::Target> {
        self.target.clone()
    }

    fn evidence_store(&self) -> Option<irr_forensics::Store> {
        self.store.clone()
    }

    fn artifact_path(&self, step: &str, name: &str) -> String {
        artifact_path(step, 1, name)
    }

    fn stored_artifact(
        &self,
        step: &str,
        name: &str,
        sha256: &str,
        size: u64,
        source: &str,
    ) -> Result<String, ActionError> {
        self.stored(step, 1, name, sha256, size, source)
            .map(|a| a.path)
    }

    fn gap(&self, gap: actions::Gap) {
        // The journal is the record: the seal and the run summary read gaps back from it, so
        // a resumed run keeps those of its earlier attempts.
        self.sink.emit(RunEvent::GapRecorded(gap));
    }
}

/// The recorder one attempt of one step sees: the run's, with its artifacts under the
/// attempt's own paths ([`artifact_path`]). Bound when the attempt starts, so that even a
/// write that outlives a timed-out attempt lands under that attempt, never over another's.
pub(super) struct AttemptRecorder {
    pub(super) run: Arc<RunRecorder>,
    pub(super) attempt: u32,
}

impl Recorder for AttemptRecorder {
    fn call_started(&self, step: &str, service: &str, operation: &str, params: &Value) -> u64 {
        self.run.call_started(step, service, operation, params)
    }

    fn call_finished(&self, seq: u64, outcome: &CallOutcome) {
        self.run.call_finished(seq, outcome)
    }

    fn journal_ok(&self) -> bool {
        self.run.journal_ok()
    }

    fn artifact(
        &self,
        step: &str,
        name: &str,
        content: &[u8],
        source: &str,
    ) -> Result<String, ActionError> {
        self.run
            .stage(step, self.attempt, name, content, source)
            .map(|a| a.path)
    }

    fn resource(&self, resource: AwsResource) {
        self.run.resource(resource)
    }

    fn gap(&self, gap: actions::Gap) {
        self.run.gap(gap)
    }

    fn secret(&self, value: &str) {
        self.run.secret(value)
    }

    fn captured(&self, name: &str) -> Vec<(usize, String, Result<Vec<u8>, String>)> {
        self.run.captured(name)
    }

    fn evidence_location(&self) -> Option<String> {
        self.run.evidence_location()
    }

    fn evidence_owner(&self) -> Option<String> {
        self.run.evidence_owner()
    }

    fn target(&self) -> Option<irr_forensics::manifest::Target> {
        self.run.target()
    }

    fn evidence_store(&self) -> Option<irr_forensics::Store> {
        self.run.evidence_store()
    }

    fn artifact_path(&self, step: &str, name: &str) -> String {
        artifact_path(step, self.attempt, name)
    }

    fn stored_artifact(
        &self,
        step: &str,
        name: &str,
        sha256: &str,
        size: u64,
        source: &str,
    ) -> Result<String, ActionError> {
        self.run
            .stored(step, self.attempt, name, sha256, size, source)
            .map(|a| a.path)
    }
}

/// Replaces the values of secret-looking keys, wherever they are, with `[redacted]`.
pub fn redact(v: &Value) -> Value {
    const SECRET: &[&str] = &[
        "secret",
        "password",
        "session_token",
        "sessiontoken",
        "private_key",
        "credentials",
    ];
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let lk = k.to_ascii_lowercase();
                    if SECRET.iter().any(|s| lk.contains(s)) {
                        (k.clone(), json!("[redacted]"))
                    } else {
                        (k.clone(), redact(v))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        other => other.clone(),
    }
}

impl std::fmt::Debug for RunRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunRecorder")
            .field("staging", &self.staging)
            .finish()
    }
}
