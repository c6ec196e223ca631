//! The run's sealed evidence: finding it, verifying it (local or S3), and checking the journal
//! against it.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::Value;

use irr_forensics::{
    EvidenceLocation, Manifest, ManifestItem, S3Settings, Store, Target, VerifyReport,
};

use crate::aws::AwsOptions;
use crate::events::EvidenceSummary;
use crate::executor::RunRecord;
use crate::journal::{LenientRead, RunState};

use super::model::{
    Check, EvidenceItem, EvidenceReport, EvidenceStatus, Finding, ItemState, Report,
    ResourceReport, Severity,
};
use super::MANIFEST_LIMIT;

/// The last `evidence_sealed` of the journal.
fn last_sealed(state: &RunState) -> Option<&EvidenceSummary> {
    state.sealed.last().map(|(_, s)| s)
}

/// What the journal says was captured: path to SHA-256, the last capture of each path.
fn captured(state: &RunState) -> BTreeMap<&str, &str> {
    state
        .artifacts()
        .into_iter()
        .map(|a| (a.path.as_str(), a.sha256.as_str()))
        .collect()
}

/// The run's evidence folder: where the last `evidence_sealed` says, else where `run.json`
/// says the run would have sealed it.
pub(crate) fn evidence_run_location(record: &RunRecord, state: &RunState) -> Option<String> {
    let sealed = last_sealed(state)
        .map(|s| s.location.as_str())
        .filter(|l| !l.is_empty())
        .map(str::to_owned);
    sealed.or_else(|| {
        EvidenceLocation::parse(&record.evidence_location)
            .ok()
            .map(|l| l.join(&record.case_id).join(&record.run_id).to_string())
    })
}

/// A drill's local evidence copy, from `STATE_DIR/runs/RUN_ID/evidence-copy.json`.
pub(crate) struct CopyMarker {
    /// `STATE_DIR/runs/RUN_ID/evidence-copy/CASE/RUN` (derived, never read from the marker).
    pub location: String,
    /// The original (`s3://...` in the drill's emulator).
    pub copy_of: String,
    /// The manifest hash the copy was made of.
    pub manifest_sha256: Option<String>,
}

pub(crate) fn read_copy_marker(dir: &Path, record: &RunRecord) -> Option<CopyMarker> {
    let path = dir.join(crate::gameday::COPY_MARKER);
    let meta = std::fs::symlink_metadata(&path).ok()?;
    if !meta.is_file() || meta.len() > 64 * 1024 {
        return None;
    }
    let v: Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    let root = dir.join(crate::gameday::COPY_DIR);
    let location = root
        .join(&record.case_id)
        .join(&record.run_id)
        .display()
        .to_string();
    let field = |key: &str| v.get(key).and_then(Value::as_str);
    Some(CopyMarker {
        location,
        copy_of: field("copy_of").unwrap_or("(unknown)").to_owned(),
        manifest_sha256: field("manifest_sha256").map(str::to_owned),
    })
}

/// What the evidence store said.
#[derive(Clone)]
pub(crate) struct EvidenceFound {
    /// The error says the evidence is not as sealed (not merely unreadable).
    not_as_sealed: bool,
    /// For a drill's copy: the original and the manifest hash the copy was made of.
    pub copy_of: Option<(String, Option<String>)>,
    location: Option<String>,
    verify: Result<VerifyReport, String>,
    /// `true` when the store holds nothing for the run.
    nothing_stored: bool,
    manifest: Option<Manifest>,
    /// A fan-out parent's children's manifests, as stored (`None`: unreadable).
    children: Vec<(Target, Option<Manifest>)>,
}

impl EvidenceFound {
    /// What was found for the fan-out child in `target`: its check within the parent's
    /// verification, and its manifest.
    pub(crate) fn for_child(&self, target: &Target) -> EvidenceFound {
        let verify = match &self.verify {
            Ok(v) => v
                .children
                .iter()
                .find(|c| c.account == target.account && c.region == target.region)
                .and_then(|c| c.report.as_deref().cloned())
                .ok_or_else(|| "the parent's manifest does not list this target's run".to_owned()),
            Err(e) => Err(format!("the parent's evidence: {e}")),
        };
        EvidenceFound {
            not_as_sealed: self.not_as_sealed,
            copy_of: None,
            location: self
                .location
                .as_ref()
                .map(|l| format!("{}/{}", l.trim_end_matches('/'), target.dir())),
            verify,
            nothing_stored: false,
            manifest: self
                .children
                .iter()
                .find(|(t, _)| t == target)
                .and_then(|(_, m)| m.clone()),
            children: Vec::new(),
        }
    }
}

pub(crate) async fn check_evidence(
    location: Option<&str>,
    record: &RunRecord,
    aws: &AwsOptions,
    evidence_owner: Option<&str>,
) -> EvidenceFound {
    let mut found = EvidenceFound {
        not_as_sealed: false,
        copy_of: None,
        location: location.map(str::to_owned),
        verify: Err("no evidence location".to_owned()),
        nothing_stored: false,
        manifest: None,
        children: Vec::new(),
    };
    let Some(location) = location else {
        return found;
    };
    let loc = match EvidenceLocation::parse(location) {
        Ok(l) => l,
        Err(e) => {
            found.verify = Err(e.to_string());
            return found;
        }
    };
    let client = if matches!(loc, EvidenceLocation::S3 { .. }) {
        let mut opts = aws.clone();
        if opts.region.is_none() && !record.region.is_empty() {
            opts.region = Some(record.region.clone());
        }
        match crate::aws::connect(&opts).await {
            Ok(a) => Some(a),
            Err(e) => {
                found.verify = Err(format!("cannot reach S3: {e}"));
                return found;
            }
        }
    } else {
        None
    };
    let owner = match (&client, evidence_owner, record.evidence_owner.as_deref()) {
        (None, _, _) => None,
        (Some(_), Some(o), _) | (Some(_), None, Some(o)) => Some(o.to_owned()),
        (Some(a), None, None) => match a.identity().await {
            Ok(id) => Some(id.account_id),
            Err(e) => {
                found.verify = Err(format!(
                    "cannot tell which account must own the evidence bucket: {e}"
                ));
                return found;
            }
        },
    };
    let client = client.map(|a| a.clients.s3);
    found.verify =
        match irr_forensics::verify_with_owner(&loc, client.as_ref(), owner.as_deref()).await {
            Ok(r) => Ok(r),
            Err(irr_forensics::Error::NotARun { reason, .. }) => {
                found.nothing_stored = true;
                Err(reason)
            }
            Err(e) => {
                // Only "could not read" is unverifiable; anything else (an oversized manifest,
                // a bad name) says the evidence is not what irr sealed.
                found.not_as_sealed = !e.is_unreadable();
                Err(e.to_string())
            }
        };
    if let Some((root, case, run)) = loc.split_run() {
        let settings = S3Settings {
            expected_owner: owner,
            ..S3Settings::default()
        };
        if let Ok(store) = Store::open(&root, client, settings) {
            let key = format!("{case}/{run}/{}", irr_forensics::MANIFEST_NAME);
            if let Ok(Some(bytes)) = store.read(&key, None, MANIFEST_LIMIT).await {
                found.manifest = Manifest::from_slice(&bytes).ok();
            }
            for c in found.manifest.iter().flat_map(|m| &m.children) {
                let key = format!("{case}/{run}/{}", c.path);
                let m = match store.read(&key, None, MANIFEST_LIMIT).await {
                    Ok(Some(bytes)) => Manifest::from_slice(&bytes).ok(),
                    _ => None,
                };
                found.children.push((c.target(), m));
            }
        }
    }
    found
}

fn problems(list: &[String]) -> Check {
    Check {
        ok: list.is_empty(),
        problems: list.to_vec(),
    }
}

/// The sealed manifest's items by path.
type ByPath<'a> = HashMap<&'a str, &'a ManifestItem>;

fn critical(area: &str, message: String) -> Finding {
    Finding {
        severity: Severity::Critical,
        area: area.to_owned(),
        message,
    }
}

/// Puts what the store said into the report, with the findings it implies.
pub(crate) fn attach_evidence(
    report: &mut Report,
    read: &LenientRead,
    state: &RunState,
    found: EvidenceFound,
) {
    let sealed_event = last_sealed(state);
    let ev = &mut report.evidence;
    ev.location = found.location.clone();
    ev.seal_error = sealed_event.and_then(|s| s.error.clone());
    ev.signature_error = sealed_event.and_then(|s| s.signature_error.clone());
    ev.copy_of = found.copy_of.as_ref().map(|(o, _)| o.clone());
    check_copy(report, sealed_event, &found);
    let by_path: ByPath = found
        .manifest
        .as_ref()
        .map(|m| m.items.iter().map(|i| (i.path.as_str(), i)).collect())
        .unwrap_or_default();
    match &found.verify {
        Ok(v) => verified(&mut report.evidence, v, &by_path),
        Err(e) => unverified(report, e, &found, sealed_event, &by_path),
    }
    if let Some(m) = &found.manifest {
        manifest_facts(report, m);
        journal_vs_sealed(report, read, m);
        captured_vs_sealed(report, state, &by_path);
    }
}

/// A drill's copy must be of the manifest the run sealed (the journal's evidence_sealed).
fn check_copy(report: &mut Report, sealed_event: Option<&EvidenceSummary>, found: &EvidenceFound) {
    let Some((original, _)) = &found.copy_of else {
        return;
    };
    let sealed = sealed_event.and_then(|s| s.manifest_sha256.clone());
    let copied = match &found.verify {
        Ok(v) => v.manifest_sha256.map(|h| h.to_hex()),
        Err(_) => None,
    };
    if let (Some(sealed), Some(copied)) = (&sealed, &copied) {
        if sealed != copied {
            report.findings.push(critical(
                "evidence",
                format!(
                    "the local copy of {original} has manifest sha256 {copied}, but the run sealed {sealed}: the copy was replaced"
                ),
            ));
        }
    }
}

/// An item as the manifest lists it (nothing read back yet).
fn item_from(by_path: &ByPath, path: &str, status: ItemState) -> EvidenceItem {
    let m = by_path.get(path);
    EvidenceItem {
        path: path.to_owned(),
        status,
        step: m.and_then(|m| m.step.clone()),
        attempt: m.and_then(|m| m.attempt),
        source: m.and_then(|m| m.source.clone()),
        size: m.map(|m| m.size),
        sha256: m.map(|m| m.sha256.to_hex()),
        captured_at: m.map(|m| m.captured_at.to_string()),
        s3_version_id: m
            .and_then(|m| m.s3.as_ref())
            .and_then(|s| s.version_id.clone()),
        actual_size: None,
        actual_sha256: None,
        detail: None,
    }
}

/// Verification ran: every item as found, and the checks.
fn verified(ev: &mut EvidenceReport, v: &VerifyReport, by_path: &ByPath) {
    ev.status = if v.is_ok() {
        EvidenceStatus::Verified
    } else {
        EvidenceStatus::Mismatch
    };
    ev.manifest_sha256 = v.manifest_sha256.map(|h| h.to_hex());
    ev.items = v
        .items
        .iter()
        .map(|c| {
            let mut item = item_from(by_path, &c.path, c.status.into());
            if item.sha256.is_none() {
                item.sha256 = c.expected_sha256.map(|h| h.to_hex());
                item.size = c.expected_size;
            }
            if item.s3_version_id.is_none() {
                item.s3_version_id = c.version_id.clone();
            }
            item.actual_sha256 = c.actual_sha256.map(|h| h.to_hex());
            item.actual_size = c.actual_size;
            item.detail = c.detail.clone();
            item
        })
        .collect();
    ev.manifest = problems(&v.manifest.problems);
    ev.sha256sums = problems(&v.sha256sums.problems);
    ev.chain = problems(&v.chain.problems);
    ev.signature = problems(&v.signature.problems);
    ev.signed_by = v.signature.keyid.clone().filter(|_| v.signature.signed);
    ev.chain_runs = v
        .chain
        .runs
        .iter()
        .map(|r| {
            if r.removed {
                format!("{} (removed)", r.run_id)
            } else {
                r.run_id.clone()
            }
        })
        .collect();
}

/// Verification could not run: why, and the manifest's items unchecked.
fn unverified(
    report: &mut Report,
    e: &str,
    found: &EvidenceFound,
    sealed_event: Option<&EvidenceSummary>,
    by_path: &ByPath,
) {
    let ev = &mut report.evidence;
    ev.status = if found.nothing_stored || found.location.is_none() {
        EvidenceStatus::NotSealed
    } else {
        EvidenceStatus::Unverifiable
    };
    ev.verify_error = Some(e.to_owned());
    if found.not_as_sealed {
        ev.status = EvidenceStatus::Mismatch;
        report.findings.push(critical(
            "evidence",
            format!("the evidence is not as sealed: {e}"),
        ));
    }
    let ev = &mut report.evidence;
    ev.manifest_sha256 = sealed_event.and_then(|s| s.manifest_sha256.clone());
    if let Some(m) = &found.manifest {
        ev.items = m
            .items
            .iter()
            .map(|i| item_from(by_path, &i.path, ItemState::Unchecked))
            .collect();
    }
}

/// What the manifest tells: gaps, when and by whom it was sealed, the resources it lists.
fn manifest_facts(report: &mut Report, m: &Manifest) {
    for g in &m.gaps {
        report.findings.push(Finding {
            severity: Severity::Warning,
            area: "evidence".into(),
            message: format!(
                "gap: step {}: {} was not captured: {}",
                g.step, g.what, g.error
            ),
        });
    }
    let ev = &mut report.evidence;
    ev.sealed_at = Some(m.sealed_at.to_string());
    ev.collector = serde_json::to_value(&m.collector).ok();
    ev.previous_manifest_sha256 = m.previous_manifest_sha256.map(|h| h.to_hex());
    for r in &mut report.resources {
        r.sealed = Some(
            m.aws_resources
                .iter()
                .any(|a| a.kind == r.kind && a.id == r.id),
        );
    }
    for a in &m.aws_resources {
        if !report
            .resources
            .iter()
            .any(|r| r.kind == a.kind && r.id == a.id)
        {
            report.resources.push(ResourceReport {
                kind: a.kind.clone(),
                id: a.id.clone(),
                step: None,
                details: a.details.clone().into_iter().collect(),
                sealed: Some(true),
            });
        }
    }
}

/// The sealed journal is the local one as it was just before `evidence_sealed`.
fn journal_vs_sealed(report: &mut Report, read: &LenientRead, m: &Manifest) {
    let Some(j) = m.items.iter().find(|i| i.path == "journal.jsonl") else {
        return;
    };
    let want = j.sha256.to_hex();
    let n = read.entries.iter().position(|l| l.prefix_sha256 == want);
    report.journal.sealed_copy_ok = Some(n.is_some());
    report.journal.sealed_copy_lines = n.map(|i| i + 1);
    if n.is_none() {
        report.findings.push(critical(
            "journal",
            format!(
                "the local journal is not what was sealed: no prefix of {} hashes to the sealed journal.jsonl ({want}); the local copy was altered after sealing",
                report.journal.path
            ),
        ));
    }
}

/// What the journal says was captured must be what was sealed.
fn captured_vs_sealed(report: &mut Report, state: &RunState, by_path: &ByPath) {
    for (path, hash) in captured(state) {
        match by_path.get(path) {
            None => report.findings.push(critical(
                "evidence",
                format!("{path} was captured (journal) but the manifest does not list it"),
            )),
            Some(i) if i.sha256.to_hex() != hash => report.findings.push(critical(
                "evidence",
                format!(
                    "{path} was captured with sha256 {hash} (journal) but sealed with {}",
                    i.sha256.to_hex()
                ),
            )),
            Some(_) => {}
        }
    }
}
