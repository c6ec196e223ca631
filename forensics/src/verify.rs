//! Verification of a sealed run: `verify(LOCATION/CASE_ID/RUN_ID)`.
//!
//! Every listed item is read back (in S3, the exact version recorded) and re-hashed, and
//! reported `ok`, `altered` or `missing`; anything else under the run (a file not in the
//! manifest; in S3 any other object version or delete marker) is `unlisted`. `SHA256SUMS` must
//! list exactly the items and `manifest.json` with the same hashes, and `manifest.json`'s line
//! must match its bytes. The case's chain is checked across all its sealed runs: every
//! `previous_manifest_sha256` must be the hash of another run's `manifest.json`, with one first
//! run and no forks; a run removed from the middle is named (in S3, from the manifest version
//! hidden behind its delete marker; locally, by the gap it leaves).
//!
//! A signed run's `manifest.sig.json` and `public-key.pem` are checked too
//! ([`crate::signing`]): the statement against the manifest, the signature against the stored
//! key and, when given, the trusted key ([`SignatureOptions`]).
//!
//! Problems found are not errors: they are in the [`VerifyReport`], whose
//! [`VerifyReport::is_ok`] says whether the run verified clean. Errors are for what prevents
//! checking (no such run, S3 unreachable).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use futures::StreamExt;
use serde::Serialize;

use crate::bundle::{case_runs, CaseRun, SMALL_FILE_LIMIT};
use crate::hash::Sha256Digest;
use crate::location::{check_component, check_item_path};
use crate::manifest::{
    FailedItem, Manifest, ManifestItem, Sha256Sums, Target, Timestamp, MANIFEST_FORMAT,
    MANIFEST_NAME, SUMS_NAME,
};
use crate::signing::check::check_signature;
use crate::signing::{SignatureCheck, SignatureOptions, PUBLIC_KEY_NAME, SIG_NAME};
use crate::store::{Found, Listed, S3Settings, Store};
use crate::{Error, EvidenceLocation, Result};

/// Items re-hashed at once.
const CONCURRENT_HASHES: usize = 4;

/// Overall outcome of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Nothing wrong.
    Ok,
    /// Something does not match.
    Mismatch,
}

impl Status {
    fn from_ok(ok: bool) -> Status {
        if ok {
            Status::Ok
        } else {
            Status::Mismatch
        }
    }
}

/// What was found for one item (or one unlisted object).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemStatus {
    /// Present, same hash and size as recorded.
    Ok,
    /// Present, but its hash or size differs from the manifest's.
    Altered,
    /// Listed in the manifest but not found (in S3: the recorded version is gone).
    Missing,
    /// Present under the run but not listed in the manifest (in S3: also other versions and
    /// delete markers).
    Unlisted,
}

impl fmt::Display for ItemStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ItemStatus::Ok => "ok",
            ItemStatus::Altered => "altered",
            ItemStatus::Missing => "missing",
            ItemStatus::Unlisted => "unlisted",
        })
    }
}

/// The check of one item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemCheck {
    /// Path relative to the run.
    pub path: String,
    /// What was found.
    pub status: ItemStatus,
    /// Hash in the manifest.
    pub expected_sha256: Option<Sha256Digest>,
    /// Hash of what was read.
    pub actual_sha256: Option<Sha256Digest>,
    /// Size in the manifest.
    pub expected_size: Option<u64>,
    /// Size of what was read.
    pub actual_size: Option<u64>,
    /// S3 version checked (recorded version for items, the found version for unlisted ones).
    pub version_id: Option<String>,
    /// Explanation, for anything but `ok`.
    pub detail: Option<String>,
}

/// The check of `manifest.json` or `SHA256SUMS` themselves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileCheck {
    /// `ok` when `problems` is empty.
    pub status: Status,
    /// What is wrong.
    pub problems: Vec<String>,
}

impl FileCheck {
    fn new(problems: Vec<String>) -> FileCheck {
        FileCheck {
            status: Status::from_ok(problems.is_empty()),
            problems,
        }
    }
}

/// One run of the case's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainRun {
    /// The run.
    pub run_id: String,
    /// SHA-256 of its `manifest.json`.
    pub manifest_sha256: Sha256Digest,
    /// What its manifest chains to.
    pub previous_manifest_sha256: Option<Sha256Digest>,
    /// When it was sealed (if its manifest could be read).
    pub sealed_at: Option<Timestamp>,
    /// `true` when its `manifest.json` is hidden behind an S3 delete marker.
    pub removed: bool,
}

/// The check of the case's chain of sealed runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainCheck {
    /// `ok` when `problems` is empty.
    pub status: Status,
    /// The runs found, in order of sealing.
    pub runs: Vec<ChainRun>,
    /// What is wrong.
    pub problems: Vec<String>,
}

impl ChainCheck {
    /// A fan-out child's: it is not in the case's chain, its parent's manifest anchors it.
    fn of_child() -> ChainCheck {
        ChainCheck {
            status: Status::Ok,
            runs: Vec::new(),
            problems: Vec::new(),
        }
    }
}

/// Everything `verify` found about one run. Serialises to
/// `{"status": "ok"|"mismatch", "location", "case_id", "run_id", "manifest_sha256",
/// "items": [...], "manifest": {...}, "sha256sums": {...}, "chain": {...}}`; `Display` renders
/// it as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// `ok` only when every item is `ok` and every other check passed.
    pub status: Status,
    /// The run verified.
    pub location: String,
    /// The case.
    pub case_id: String,
    /// The run.
    pub run_id: String,
    /// SHA-256 of the run's `manifest.json`, if there is one.
    pub manifest_sha256: Option<Sha256Digest>,
    /// Every listed item, then every unlisted object.
    pub items: Vec<ItemCheck>,
    /// Items the run captured but could not store, as its manifest records them: warnings
    /// (the evidence is incomplete, and says so), not integrity failures.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed_items: Vec<FailedItem>,
    /// `manifest.json` itself: present, readable, canonical, naming this case and run.
    pub manifest: FileCheck,
    /// `SHA256SUMS` against the manifest.
    pub sha256sums: FileCheck,
    /// The case's chain of sealed runs.
    pub chain: ChainCheck,
    /// The run's signature (`manifest.sig.json`, `public-key.pem`).
    pub signature: SignatureCheck,
    /// What the manifest says the evidence lacks (optional reads that failed): warnings,
    /// never a failure. Absent from the JSON when there is none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<crate::manifest::Gap>,
    /// A fan-out parent's children, each verified as a run of its own (absent for a run with
    /// none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<ChildCheck>,
}

/// The check of one fan-out child that a parent's manifest lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChildCheck {
    /// The child's account.
    pub account: String,
    /// The child's region.
    pub region: String,
    /// The hash of its `manifest.json` as the parent lists it.
    pub listed_manifest_sha256: Sha256Digest,
    /// `ok` when `problems` is empty and the child's own report is ok.
    pub status: Status,
    /// What is wrong with the listing itself (a path irr never writes, another hash).
    pub problems: Vec<String>,
    /// The child verified as a run (`None` when its listing names no place irr writes).
    pub report: Option<Box<VerifyReport>>,
}

impl VerifyReport {
    /// `true` when the run verified clean (the CLI exits 0; otherwise 3).
    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }

    /// Items with a given status.
    pub fn items_with(&self, status: ItemStatus) -> impl Iterator<Item = &ItemCheck> {
        self.items.iter().filter(move |i| i.status == status)
    }

    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises")
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.is_ok() { "OK" } else { "MISMATCH" };
        writeln!(f, "evidence {}: {verdict}", self.location)?;
        write!(f, "case {}, run {}", self.case_id, self.run_id)?;
        match &self.manifest_sha256 {
            Some(h) => writeln!(f, ", manifest sha256 {h}")?,
            None => writeln!(f, ", no manifest")?,
        }
        let n_ok = self.items_with(ItemStatus::Ok).count();
        writeln!(
            f,
            "items: {n_ok} ok of {} listed",
            self.items
                .iter()
                .filter(|i| i.status != ItemStatus::Unlisted)
                .count()
        )?;
        for i in &self.items {
            let label = match i.status {
                ItemStatus::Ok => "ok",
                ItemStatus::Altered => "ALTERED",
                ItemStatus::Missing => "MISSING",
                ItemStatus::Unlisted => "UNLISTED",
            };
            write!(f, "  {label:<9} {}", i.path)?;
            if let Some(d) = &i.detail {
                write!(f, ": {d}")?;
            }
            writeln!(f)?;
        }
        for i in &self.failed_items {
            writeln!(
                f,
                "  warning   {}: not in the evidence, the run could not store it: {}",
                i.path, i.error
            )?;
        }
        for (name, check) in [
            ("manifest.json", &self.manifest),
            ("SHA256SUMS", &self.sha256sums),
        ] {
            if check.problems.is_empty() {
                writeln!(f, "{name}: ok")?;
            } else {
                writeln!(f, "{name}: MISMATCH")?;
                for p in &check.problems {
                    writeln!(f, "  - {p}")?;
                }
            }
        }
        let order: Vec<&str> = self
            .chain
            .runs
            .iter()
            .filter(|r| !r.removed)
            .map(|r| r.run_id.as_str())
            .collect();
        if self.chain.problems.is_empty() {
            writeln!(
                f,
                "chain: ok ({} sealed runs: {})",
                order.len(),
                order.join(" -> ")
            )?;
        } else {
            writeln!(f, "chain: BROKEN")?;
            for p in &self.chain.problems {
                writeln!(f, "  - {p}")?;
            }
        }
        write_signature(f, &self.signature)?;
        if !self.gaps.is_empty() {
            writeln!(
                f,
                "warnings: {} gap(s) recorded at capture (optional reads that failed; not an integrity problem):",
                self.gaps.len()
            )?;
            for g in &self.gaps {
                writeln!(
                    f,
                    "  - WARNING {}: {} not captured: {}",
                    g.step, g.what, g.error
                )?;
            }
        }
        write_children(f, &self.children)
    }
}

/// A fan-out parent's lines for its children: one line each, and the whole report of any
/// that did not verify, indented.
fn write_children(f: &mut fmt::Formatter<'_>, children: &[ChildCheck]) -> fmt::Result {
    if children.is_empty() {
        return Ok(());
    }
    let ok = children.iter().filter(|c| c.status == Status::Ok).count();
    writeln!(f, "children: {ok} ok of {}", children.len())?;
    for c in children {
        let verdict = if c.status == Status::Ok {
            "ok"
        } else {
            "MISMATCH"
        };
        let items = c.report.as_ref().map_or(0, |r| r.items.len());
        writeln!(
            f,
            "  {verdict:<9} {}/{} ({items} items)",
            c.account, c.region
        )?;
        for p in &c.problems {
            writeln!(f, "    - {p}")?;
        }
        if let Some(r) = c.report.as_ref().filter(|_| c.status != Status::Ok) {
            for line in r.to_string().lines() {
                writeln!(f, "    {line}")?;
            }
        }
    }
    Ok(())
}

/// The signature's lines of the text report.
fn write_signature(f: &mut fmt::Formatter<'_>, s: &SignatureCheck) -> fmt::Result {
    let key = s.keyid.as_deref().unwrap_or("?");
    match (s.signed, s.problems.is_empty()) {
        (false, true) => writeln!(f, "signature: none (unsigned)")?,
        (true, true) => {
            let trust = match s.trusted {
                Some(true) => ", the trusted key",
                _ => ", not checked against a trusted key (--trusted-key)",
            };
            writeln!(f, "signature: ok (key {key}{trust})")?;
        }
        (_, false) => {
            writeln!(f, "signature: MISMATCH")?;
            for p in &s.problems {
                writeln!(f, "  - {p}")?;
            }
        }
    }
    if let Some(p) = &s.previous_signature {
        writeln!(
            f,
            "  carries the signature of run {} (key {})",
            p.run_id, p.keyid
        )?;
    }
    for w in &s.warnings {
        writeln!(f, "  - WARNING {w}")?;
    }
    Ok(())
}

/// Verifies the run at `location` (`LOCATION/CASE_ID/RUN_ID`, local or `s3://`). S3 locations
/// need a client. No `ExpectedBucketOwner` is sent: see [`verify_with_owner`].
pub async fn verify(
    location: &EvidenceLocation,
    s3_client: Option<&aws_sdk_s3::Client>,
) -> Result<VerifyReport> {
    verify_with_owner(location, s3_client, None).await
}

/// [`verify`], every S3 request carrying `ExpectedBucketOwner: expected_owner` (a 12-digit
/// account), so that a bucket of that name in another account is refused
/// ([`Error::NotOwned`]) instead of verified.
pub async fn verify_with_owner(
    location: &EvidenceLocation,
    s3_client: Option<&aws_sdk_s3::Client>,
    expected_owner: Option<&str>,
) -> Result<VerifyReport> {
    verify_with_options(
        location,
        s3_client,
        expected_owner,
        &SignatureOptions::default(),
    )
    .await
}

/// [`verify_with_owner`], checking the signature as `opts` says (a trusted key, a signature
/// required).
pub async fn verify_with_options(
    location: &EvidenceLocation,
    s3_client: Option<&aws_sdk_s3::Client>,
    expected_owner: Option<&str>,
    opts: &SignatureOptions,
) -> Result<VerifyReport> {
    let (root, case_id, run_id) = location.split_run().ok_or_else(|| Error::NotARun {
        location: location.to_string(),
        reason: "expected LOCATION/CASE_ID/RUN_ID".into(),
    })?;
    let settings = S3Settings {
        expected_owner: expected_owner.map(str::to_owned),
        ..S3Settings::default()
    };
    let store = Store::open(&root, s3_client.cloned(), settings)?;
    verify_run_with(&store, &case_id, &run_id, opts).await
}

/// Verifies run `run_id` of case `case_id` in `store`.
pub async fn verify_run(store: &Store, case_id: &str, run_id: &str) -> Result<VerifyReport> {
    verify_run_with(store, case_id, run_id, &SignatureOptions::default()).await
}

/// [`verify_run`], checking the signature as `opts` says. A fan-out parent's children
/// (`children/ACCOUNT/REGION/`, listed in its manifest) are verified too, each as a run of
/// its own whose `manifest.json` must hash to what the parent lists.
pub async fn verify_run_with(
    store: &Store,
    case_id: &str,
    run_id: &str,
    opts: &SignatureOptions,
) -> Result<VerifyReport> {
    let (mut report, manifest) = verify_bundle(store, case_id, run_id, None, opts).await?;
    let listed = manifest.map(|m| m.children).unwrap_or_default();
    for child in listed {
        let target = child.target();
        let mut check = ChildCheck {
            account: child.account.clone(),
            region: child.region.clone(),
            listed_manifest_sha256: child.manifest_sha256,
            status: Status::Ok,
            problems: Vec::new(),
            report: None,
        };
        let placed = check_component("account", &target.account).is_ok()
            && check_component("region", &target.region).is_ok()
            && child.path == format!("{}/{MANIFEST_NAME}", target.dir());
        if placed {
            let (r, _) = verify_bundle(store, case_id, run_id, Some(&target), opts).await?;
            match r.manifest_sha256 {
                Some(h) if h != child.manifest_sha256 => check.problems.push(format!(
                    "its manifest.json hashes to {h}; the parent lists {}",
                    child.manifest_sha256
                )),
                _ => {}
            }
            check.status = Status::from_ok(check.problems.is_empty() && r.is_ok());
            check.report = Some(Box::new(r));
        } else {
            check.problems.push(format!(
                "the parent lists a child at {:?}, a place irr never writes one",
                child.path
            ));
            check.status = Status::Mismatch;
        }
        report.children.push(check);
    }
    if report.children.iter().any(|c| c.status != Status::Ok) {
        report.status = Status::Mismatch;
    }
    Ok(report)
}

/// Verifies one bundle: the run `case_id/run_id`, or (with `target`) its fan-out child at
/// `case_id/run_id/children/ACCOUNT/REGION/`, whose chain is its parent (no case chain, no
/// signature of its own). Also returns the manifest, when it could be read.
async fn verify_bundle(
    store: &Store,
    case_id: &str,
    run_id: &str,
    target: Option<&Target>,
    opts: &SignatureOptions,
) -> Result<(VerifyReport, Option<Manifest>)> {
    let mut location = store.location().join(case_id).join(run_id);
    if let Some(t) = target {
        location = location.join("children").join(&t.account).join(&t.region);
    }
    let not_a_run = |reason: &str| Error::NotARun {
        location: location.to_string(),
        reason: reason.to_string(),
    };
    check_component("case id", case_id).map_err(|e| not_a_run(&e.to_string()))?;
    check_component("run id", run_id).map_err(|e| not_a_run(&e.to_string()))?;
    let run_prefix = match target {
        Some(t) => format!("{case_id}/{run_id}/{}/", t.dir()),
        None => format!("{case_id}/{run_id}/"),
    };
    let key = |p: &str| format!("{run_prefix}{p}");
    let listed = store.list(&run_prefix).await?;
    let mut manifest_problems = Vec::new();
    let manifest_bytes = match read_evidence_file(store, &key(MANIFEST_NAME)).await? {
        Ok(bytes) => bytes,
        Err(problem) => {
            manifest_problems.push(format!("manifest.json {problem}"));
            None
        }
    };
    if listed.is_empty()
        && manifest_bytes.is_none()
        && manifest_problems.is_empty()
        && target.is_none()
    {
        return Err(not_a_run("nothing is stored there"));
    }

    let manifest_sha256 = manifest_bytes.as_deref().map(Sha256Digest::of);
    let manifest = match &manifest_bytes {
        None if !manifest_problems.is_empty() => None,
        None => {
            manifest_problems.push("manifest.json is missing: the run is not sealed".to_string());
            None
        }
        Some(bytes) => check_manifest(bytes, case_id, run_id, target, &mut manifest_problems),
    };

    // Re-hash every listed item.
    let is_s3 = matches!(store, Store::S3(_));
    let empty = Vec::new();
    let items_in_manifest = manifest.as_ref().map(|m| &m.items).unwrap_or(&empty);
    let mut items: Vec<ItemCheck> = futures::stream::iter(items_in_manifest.iter().map(|item| {
        let version = if is_s3 {
            item.s3.as_ref().and_then(|s| s.version_id.clone())
        } else {
            None
        };
        check_item(store, &run_prefix, item, version)
    }))
    .buffered(CONCURRENT_HASHES)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<Result<_>>()?;

    // Anything else under the run is unlisted (a listed child's folder is its own bundle,
    // verified as such).
    let children: Vec<String> = manifest
        .iter()
        .flat_map(|m| &m.children)
        .map(|c| format!("{}/", c.target().dir()))
        .collect();
    let listed: Vec<Listed> = listed
        .into_iter()
        .filter(|l| {
            let path = l.key.strip_prefix(&run_prefix).unwrap_or(&l.key);
            !children.iter().any(|c| path.starts_with(c.as_str()))
        })
        .collect();
    items.extend(unlisted(
        &listed,
        &run_prefix,
        items_in_manifest,
        is_s3,
        target.is_some(),
    ));

    let sums_problems = match (&manifest, manifest_sha256) {
        (Some(m), Some(md)) => check_sums(store, &key(SUMS_NAME), m, md).await?,
        _ => Vec::new(),
    };

    let (chain, signature) = match target {
        Some(_) => (ChainCheck::of_child(), SignatureCheck::of_child()),
        None => (
            check_chain(store, case_id).await?,
            check_signature(
                store,
                case_id,
                run_id,
                manifest.as_ref().zip(manifest_sha256),
                opts,
            )
            .await?,
        ),
    };
    let ok = items.iter().all(|i| i.status == ItemStatus::Ok)
        && manifest_problems.is_empty()
        && sums_problems.is_empty()
        && chain.problems.is_empty()
        && signature.problems.is_empty();
    let (failed_items, gaps) = manifest
        .as_ref()
        .map(|m| (m.failed_items.clone(), m.gaps.clone()))
        .unwrap_or_default();
    let report = VerifyReport {
        status: Status::from_ok(ok),
        location: location.to_string(),
        case_id: case_id.to_string(),
        run_id: run_id.to_string(),
        manifest_sha256,
        items,
        failed_items,
        manifest: FileCheck::new(manifest_problems),
        sha256sums: FileCheck::new(sums_problems),
        chain,
        signature,
        gaps,
        children: Vec::new(),
    };
    Ok((report, manifest))
}

/// Reads `manifest.json` or `SHA256SUMS` within [`SMALL_FILE_LIMIT`]. What the bundle holds
/// in their place (something that is not a file, a file too large for irr to have written)
/// is a problem of the bundle (`Ok(Err(what))`, tampering), not a failure to verify.
async fn read_evidence_file(
    store: &Store,
    key: &str,
) -> Result<std::result::Result<Option<Vec<u8>>, String>> {
    match store.read(key, None, SMALL_FILE_LIMIT).await {
        Ok(bytes) => Ok(Ok(bytes)),
        Err(Error::NotAFile { found, .. }) => Ok(Err(format!(
            "is {found}, not a file (not followed, not read)"
        ))),
        Err(Error::Unreadable { reason, .. }) => Ok(Err(format!(
            "is {reason}; irr never writes one so large (not read)"
        ))),
        Err(e) => Err(e),
    }
}

async fn check_sums(
    store: &Store,
    key: &str,
    manifest: &Manifest,
    manifest_sha256: Sha256Digest,
) -> Result<Vec<String>> {
    let bytes = match read_evidence_file(store, key).await? {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(vec!["SHA256SUMS is missing: the seal is incomplete".into()]),
        Err(problem) => return Ok(vec![format!("SHA256SUMS {problem}")]),
    };
    let (sums, mut problems) = Sha256Sums::parse(&bytes);
    let mut expected: BTreeMap<&str, Sha256Digest> = manifest
        .items
        .iter()
        .map(|i| (i.path.as_str(), i.sha256))
        .collect();
    for c in &manifest.children {
        expected.insert(c.path.as_str(), c.manifest_sha256);
    }
    expected.insert(MANIFEST_NAME, manifest_sha256);
    let mut seen = HashSet::new();
    for (path, digest) in &sums.entries {
        if !seen.insert(path.as_str()) {
            problems.push(format!("{path} is listed twice"));
            continue;
        }
        match expected.get(path.as_str()) {
            None => problems.push(format!("{path} is listed but is not in the manifest")),
            Some(e) if e != digest => problems.push(if path == MANIFEST_NAME {
                format!("manifest.json: SHA256SUMS says {digest}, the file's hash is {e}")
            } else {
                format!("{path}: SHA256SUMS says {digest}, the manifest says {e}")
            }),
            Some(_) => {}
        }
    }
    for path in expected.keys() {
        if !seen.contains(path) {
            problems.push(format!("{path} is not listed"));
        }
    }
    let canonical = Sha256Sums::for_manifest(manifest, manifest_sha256).to_bytes();
    if problems.is_empty() && canonical != bytes {
        problems.push("it is not in the form irr writes (order or spacing changed)".into());
    }
    Ok(problems)
}

/// The manifest's own checks: its format, the run it names, its canonical form, no item
/// listed twice. `None` when it cannot be read at all.
fn check_manifest(
    bytes: &[u8],
    case_id: &str,
    run_id: &str,
    target: Option<&Target>,
    manifest_problems: &mut Vec<String>,
) -> Option<Manifest> {
    match Manifest::from_slice(bytes) {
        Ok(m) => {
            if m.format != MANIFEST_FORMAT {
                manifest_problems.push(format!(
                    "format is {:?}, expected {MANIFEST_FORMAT:?}",
                    m.format
                ));
            }
            if m.case_id != case_id || m.run_id != run_id {
                manifest_problems.push(format!(
                    "it names case {:?} run {:?}, but it is stored as case {case_id:?} run {run_id:?}",
                    m.case_id, m.run_id
                ));
            }
            if m.target.as_ref() != target {
                let name = |t: Option<&Target>| {
                    t.map_or_else(|| "no target".to_owned(), |t| format!("target {t}"))
                };
                manifest_problems.push(format!(
                    "it names {}, but it is stored as {} (copied or moved)",
                    name(m.target.as_ref()),
                    name(target)
                ));
            }
            if target.is_some() && !m.children.is_empty() {
                manifest_problems
                    .push("a child run lists children of its own; irr never writes one".into());
            }
            if !Manifest::is_canonical(bytes) {
                manifest_problems.push(
                    "it is not in canonical form (it was edited or re-serialised)".to_string(),
                );
            }
            let mut seen = HashSet::new();
            for i in &m.items {
                if !seen.insert(i.path.as_str()) {
                    manifest_problems.push(format!("item {} is listed twice", i.path));
                }
            }
            Some(m)
        }
        Err(e) => {
            manifest_problems.push(format!("manifest.json is unreadable: {e}"));
            None
        }
    }
}

/// Re-hashes one item of the manifest (its recorded version on S3), reading at most its
/// recorded size and one byte more.
async fn check_item(
    store: &Store,
    run_prefix: &str,
    item: &ManifestItem,
    version: Option<String>,
) -> Result<ItemCheck> {
    let mut check = ItemCheck {
        path: item.path.clone(),
        status: ItemStatus::Ok,
        expected_sha256: Some(item.sha256),
        actual_sha256: None,
        expected_size: Some(item.size),
        actual_size: None,
        version_id: version.clone(),
        detail: None,
    };
    if check_item_path(&item.path).is_err() {
        check.status = ItemStatus::Altered;
        check.detail = Some("the manifest lists a path that irr never writes".into());
        return Ok(check);
    }
    match store
        .check_object(
            &format!("{run_prefix}{}", item.path),
            version.as_deref(),
            item.size,
        )
        .await?
    {
        Found::Missing => {
            check.status = ItemStatus::Missing;
            check.detail = Some(match &version {
                Some(v) => format!("version {v} not found"),
                None => "not found".into(),
            });
        }
        Found::NotAFile(what) => {
            check.status = ItemStatus::Altered;
            check.detail = Some(format!(
                "{what} is in place of the item (not followed, not read)"
            ));
        }
        Found::OtherSize { size, at_least } => {
            check.status = ItemStatus::Altered;
            check.actual_size = Some(size);
            let more = if at_least { "more than " } else { "" };
            check.detail = Some(format!(
                "{more}{} bytes, recorded {} bytes (not hashed)",
                if at_least { item.size } else { size },
                item.size
            ));
        }
        Found::Hashed(sha) => {
            check.actual_sha256 = Some(sha);
            check.actual_size = Some(item.size);
            if sha != item.sha256 {
                check.status = ItemStatus::Altered;
                check.detail = Some(format!(
                    "sha256 {sha} ({} bytes), recorded {} ({} bytes)",
                    item.size, item.sha256, item.size
                ));
            }
        }
    }
    Ok::<_, Error>(check)
}

/// What is stored under the run besides the manifest's items (their recorded versions):
/// other objects, other versions, delete markers, earlier versions of the manifest or sums.
fn unlisted(
    listed: &[Listed],
    run_prefix: &str,
    items_in_manifest: &[ManifestItem],
    is_s3: bool,
    child: bool,
) -> Vec<ItemCheck> {
    // A child is never signed: its parent's signature covers it.
    let own: &[&str] = if child {
        &[MANIFEST_NAME, SUMS_NAME]
    } else {
        &[MANIFEST_NAME, SUMS_NAME, SIG_NAME, PUBLIC_KEY_NAME]
    };
    let mut out = Vec::new();
    let recorded: HashMap<&str, Option<&str>> = items_in_manifest
        .iter()
        .map(|i| {
            (
                i.path.as_str(),
                if is_s3 {
                    i.s3.as_ref().and_then(|s| s.version_id.as_deref())
                } else {
                    None
                },
            )
        })
        .collect();
    for l in listed {
        let Some(path) = l.key.strip_prefix(run_prefix) else {
            continue;
        };
        let detail = if l.delete_marker {
            Some(if recorded.contains_key(path) {
                "a delete marker hides this listed item (its recorded version is checked above)"
                    .to_string()
            } else {
                "a delete marker".to_string()
            })
        } else if let Some(rec) = recorded.get(path) {
            match (rec, &l.version_id) {
                (Some(rec), Some(v)) if rec != v => Some(format!(
                    "another version of a listed item (recorded version {rec})"
                )),
                _ => None,
            }
        } else if own.contains(&path) {
            (!l.is_latest).then(|| format!("an earlier version of {path}: it was rewritten"))
        } else {
            Some("not in the manifest".to_string())
        };
        if let Some(detail) = detail {
            out.push(ItemCheck {
                path: path.to_string(),
                status: ItemStatus::Unlisted,
                expected_sha256: None,
                actual_sha256: None,
                expected_size: None,
                actual_size: (!l.delete_marker).then_some(l.size),
                version_id: l.version_id.clone(),
                detail: Some(detail),
            });
        }
    }
    out
}

async fn check_chain(store: &Store, case_id: &str) -> Result<ChainCheck> {
    let (sealed, hidden, unreadable) = case_runs(store, case_id).await?;
    let mut problems: Vec<String> = unreadable
        .into_iter()
        .map(|(run, why)| format!("run {run}: {why}"))
        .collect();
    let sealed_at = |r: &CaseRun| r.manifest.as_ref().ok().map(|m| m.sealed_at);
    let previous = |r: &CaseRun| {
        r.manifest
            .as_ref()
            .ok()
            .and_then(|m| m.previous_manifest_sha256)
    };

    let by_hash: HashMap<Sha256Digest, &CaseRun> =
        sealed.iter().map(|r| (r.manifest_sha256, r)).collect();
    let hidden_by_hash: HashMap<Sha256Digest, &CaseRun> =
        hidden.iter().map(|r| (r.manifest_sha256, r)).collect();
    let referenced: HashSet<Sha256Digest> = sealed.iter().filter_map(previous).collect();

    let mut followers: BTreeMap<Sha256Digest, Vec<&str>> = BTreeMap::new();
    let mut firsts = Vec::new();
    for r in &sealed {
        let m = match &r.manifest {
            Ok(m) => m,
            Err(e) => {
                problems.push(format!(
                    "run {}: manifest.json is unreadable: {e}",
                    r.run_id
                ));
                continue;
            }
        };
        if m.case_id != case_id || m.run_id != r.run_id {
            problems.push(format!(
                "run {}: its manifest names case {:?} run {:?} (copied or moved)",
                r.run_id, m.case_id, m.run_id
            ));
        }
        let Some(prev) = m.previous_manifest_sha256 else {
            firsts.push(r.run_id.as_str());
            continue;
        };
        followers.entry(prev).or_default().push(r.run_id.as_str());
        if by_hash.contains_key(&prev) {
            continue;
        }
        if let Some(h) = hidden_by_hash.get(&prev) {
            problems.push(format!(
                "run {} follows run {}, which was removed: its manifest.json is hidden behind a delete marker (version {})",
                r.run_id,
                h.run_id,
                h.hidden_version.as_deref().unwrap_or("?")
            ));
            continue;
        }
        // Name the gap: the latest earlier run that nothing follows.
        let before = sealed
            .iter()
            .filter(|o| o.run_id != r.run_id && !referenced.contains(&o.manifest_sha256))
            .filter(|o| sealed_at(o) < Some(m.sealed_at))
            .max_by_key(|o| (sealed_at(o), o.run_id.clone()));
        let gap = match before {
            Some(b) => format!(
                "; the missing run came between run {} and run {}",
                b.run_id, r.run_id
            ),
            None => format!("; the missing run came before run {}", r.run_id),
        };
        problems.push(format!(
            "run {} follows a manifest with sha256 {prev} that no run of the case has: a run was removed or its manifest.json rewritten{gap}",
            r.run_id
        ));
    }
    if firsts.len() > 1 {
        problems.push(format!(
            "runs {} each start the chain (previous_manifest_sha256 null); a case has one first run",
            firsts.join(", ")
        ));
    }
    for (prev, runs) in &followers {
        if runs.len() > 1 {
            let name = by_hash
                .get(prev)
                .map(|r| format!("run {}", r.run_id))
                .unwrap_or_else(|| format!("manifest {prev}"));
            problems.push(format!(
                "the chain forks: runs {} all follow {name}",
                runs.join(", ")
            ));
        }
    }
    for h in &hidden {
        if !referenced.contains(&h.manifest_sha256) {
            problems.push(format!(
                "run {} was removed: its manifest.json is hidden behind a delete marker (version {})",
                h.run_id,
                h.hidden_version.as_deref().unwrap_or("?")
            ));
        }
    }

    let runs = chain_runs(&sealed, &hidden);
    Ok(ChainCheck {
        status: if problems.is_empty() {
            Status::Ok
        } else {
            Status::Mismatch
        },
        runs,
        problems,
    })
}

/// The runs of the case, sealed and removed, in the order they were sealed.
fn chain_runs(sealed: &[CaseRun], hidden: &[CaseRun]) -> Vec<ChainRun> {
    let sealed_at = |r: &CaseRun| r.manifest.as_ref().ok().map(|m| m.sealed_at);
    let previous = |r: &CaseRun| {
        r.manifest
            .as_ref()
            .ok()
            .and_then(|m| m.previous_manifest_sha256)
    };
    let mut runs: Vec<ChainRun> = sealed
        .iter()
        .map(|r| (r, false))
        .chain(hidden.iter().map(|r| (r, true)))
        .map(|(r, removed)| ChainRun {
            run_id: r.run_id.clone(),
            manifest_sha256: r.manifest_sha256,
            previous_manifest_sha256: previous(r),
            sealed_at: sealed_at(r),
            removed,
        })
        .collect();
    runs.sort_by(|a, b| (a.sealed_at, &a.run_id).cmp(&(b.sealed_at, &b.run_id)));
    runs
}
