//! `manifest.json` and `SHA256SUMS`: what a sealed run contains, in a form anyone can check.
//!
//! # Canonical serialisation of `manifest.json`
//! The manifest's own SHA-256 chains the runs of a case, so its bytes must be reproducible
//! from its content. [`Manifest::to_canonical_bytes`] is the one serialisation:
//! - UTF-8 JSON, pretty-printed with two-space indentation and `": "` after keys (serde_json's
//!   pretty printer), non-ASCII characters written as themselves, then one `\n`; no BOM;
//! - top-level keys in the order of the evidence format: `format`, `case_id`, `run_id`,
//!   `playbook` (`name`, `version`, `sha256`), `collector` (`tool`, `aws_principal`, `host`),
//!   `started_at`, `sealed_at`, `items`, `aws_resources`, `gaps` (only when there is one),
//!   `previous_manifest_sha256`;
//! - every item has all of `path`, `sha256`, `size`, `captured_at`, `step`, `source`, `s3`
//!   in that order (`null` when unknown); `s3` is `{"version_id", "checksum_sha256"}`;
//! - items sorted by `path` (byte order); `aws_resources` sorted by (`type`, `id`), each with
//!   `type` and `id` first and its other keys sorted by name, recursively; `gaps` sorted by
//!   (`step`, `what`, `error`), each `{"step", "what", "error"}`;
//! - times in UTC as RFC 3339 with milliseconds: `2024-05-01T12:00:00.123Z`;
//! - hashes as lowercase hex; `previous_manifest_sha256` is `null` for a case's first run.
//!
//! Parsing a canonical manifest and serialising it again gives the same bytes
//! ([`Manifest::is_canonical`]).
//!
//! # `SHA256SUMS`
//! coreutils format: one line `<64 hex>  <path>\n` (two spaces) per item and one for
//! `manifest.json`, sorted by path (byte order). Paths never need coreutils' backslash escaping
//! because item paths are restricted to `A-Z a-z 0-9 . _ -` and `/`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::hash::Sha256Digest;

/// The `format` value of the manifests this crate writes.
pub const MANIFEST_FORMAT: &str = "irr-evidence-manifest/1";
/// File name of the manifest at the run's root.
pub const MANIFEST_NAME: &str = "manifest.json";
/// File name of the checksum list at the run's root.
pub const SUMS_NAME: &str = "SHA256SUMS";

/// A UTC instant with millisecond precision, written as RFC 3339 (`2024-05-01T12:00:00.123Z`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

const TS_FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
);

impl Timestamp {
    /// Now, truncated to milliseconds.
    pub fn now() -> Timestamp {
        Timestamp::from_datetime(OffsetDateTime::now_utc())
    }

    /// Converts to UTC and truncates to milliseconds.
    pub fn from_datetime(t: OffsetDateTime) -> Timestamp {
        let t = t.to_offset(time::UtcOffset::UTC);
        let ms = t.millisecond();
        Timestamp(t.replace_millisecond(ms).unwrap_or(t))
    }

    /// Parses any RFC 3339 time.
    pub fn parse(s: &str) -> Option<Timestamp> {
        OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .ok()
            .map(Timestamp::from_datetime)
    }

    /// The instant.
    pub fn datetime(&self) -> OffsetDateTime {
        self.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.format(TS_FORMAT).map_err(|_| fmt::Error)?;
        f.write_str(&s)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 time: {s:?}")))
    }
}

/// The playbook that ran: its name, version and the SHA-256 of the playbook file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaybookRef {
    /// Playbook name.
    pub name: String,
    /// Playbook version.
    pub version: String,
    /// Hex SHA-256 of the playbook file as it was run.
    pub sha256: String,
}

/// Chain of custody: who collected the evidence, with what, from where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collector {
    /// Tool and version, e.g. `irr 0.1.0`.
    pub tool: String,
    /// The AWS principal ARN the run used (`sts:GetCallerIdentity`), when known.
    pub aws_principal: Option<String>,
    /// The host name of the machine that ran the collection.
    pub host: String,
    /// The AWS Step Functions execution whose history and objects were collected (`irr
    /// evidence seal --execution`): the run was executed by that state machine, and this
    /// collector read it back and sealed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_arn: Option<String>,
}

impl Collector {
    /// A collector on this machine: `host` is this machine's host name.
    pub fn this_host(tool: impl Into<String>, aws_principal: Option<String>) -> Collector {
        Collector {
            tool: tool.into(),
            aws_principal,
            host: host_name(),
            execution_arn: None,
        }
    }
}

/// This machine's host name (`/proc/sys/kernel/hostname`, `/etc/hostname`, `$HOSTNAME`), or
/// `unknown`.
pub fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .chain(std::env::var("HOSTNAME").ok())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// Where an item lives in S3: the exact object version and S3's own checksum of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3ObjectRef {
    /// The object's version id.
    pub version_id: Option<String>,
    /// `ChecksumSHA256` as S3 reports it (base64; for a multipart object, the checksum of the
    /// part checksums followed by `-N`, which is not the file's hash).
    pub checksum_sha256: Option<String>,
}

/// One captured item of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestItem {
    /// Path relative to the run's folder, e.g. `artifacts/snapshot/volumes.json`.
    pub path: String,
    /// SHA-256 of the whole item, computed while it was written.
    pub sha256: Sha256Digest,
    /// Size in bytes.
    pub size: u64,
    /// When it was captured.
    pub captured_at: Timestamp,
    /// The step that captured it.
    #[serde(default)]
    pub step: Option<String>,
    /// What it came from, e.g. `ec2:DescribeVolumes`.
    #[serde(default)]
    pub source: Option<String>,
    /// The attempt of its step that captured it (1-based; attempt N > 1 lives under
    /// `artifacts/STEP/attempt-N/`). Absent for items no step captured (the journal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// The S3 object version, for items stored in S3.
    #[serde(default)]
    pub s3: Option<S3ObjectRef>,
}

/// An item that a run captured but that could not be stored: the seal went on without it
/// and records it here, so that a missing piece of evidence is known rather than silent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedItem {
    /// The path it would have had.
    pub path: String,
    /// The step that captured it.
    #[serde(default)]
    pub step: Option<String>,
    /// The attempt of that step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// Why it could not be stored.
    pub error: String,
}

/// A resource that cannot be hashed as bytes (an EBS snapshot, a stack), listed by its
/// identifiers and state: `{"type": ..., "id": ..., other keys...}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AwsResource {
    /// Kind, e.g. `ebs-snapshot`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Identifier, e.g. `snap-0123`.
    pub id: String,
    /// Other identifiers and state (`volume_id`, `state`, ...).
    #[serde(flatten)]
    pub details: BTreeMap<String, serde_json::Value>,
}

impl AwsResource {
    /// A resource with no details yet.
    pub fn new(kind: impl Into<String>, id: impl Into<String>) -> AwsResource {
        AwsResource {
            kind: kind.into(),
            id: id.into(),
            details: BTreeMap::new(),
        }
    }

    /// Adds a detail (`"state"`, `"completed"`).
    pub fn with(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.details.insert(key.into(), value.into());
        self
    }
}

impl Serialize for AwsResource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let details: Vec<_> = self
            .details
            .iter()
            .filter(|(k, _)| k.as_str() != "type" && k.as_str() != "id")
            .collect();
        let mut m = s.serialize_map(Some(2 + details.len()))?;
        m.serialize_entry("type", &self.kind)?;
        m.serialize_entry("id", &self.id)?;
        for (k, v) in details {
            m.serialize_entry(k, &sorted_value(v))?;
        }
        m.end()
    }
}

/// A JSON value with every object's keys sorted (serde_json keeps insertion order here).
fn sorted_value(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(o) => {
            let mut keys: Vec<_> = o.keys().collect();
            keys.sort();
            let mut out = serde_json::Map::new();
            for k in keys {
                out.insert(k.clone(), sorted_value(&o[k]));
            }
            serde_json::Value::Object(out)
        }
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.iter().map(sorted_value).collect())
        }
        other => other.clone(),
    }
}

/// An optional read that failed (denied, throttled out, unsupported): what the evidence lacks
/// and why. Listed in the manifest's `gaps`; verify and report show them as warnings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Gap {
    /// The step (or `STEP/ITEM`) whose read failed.
    pub step: String,
    /// What could not be read, e.g. `autoscaling:DescribeAutoScalingInstances`.
    pub what: String,
    /// The error (AWS error code and message).
    pub error: String,
}

/// The account and region a fan-out child run acted in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Target {
    /// The 12-digit account.
    pub account: String,
    /// The region.
    pub region: String,
}

impl Target {
    /// `children/ACCOUNT/REGION`: where the child's bundle is, relative to its parent run.
    pub fn dir(&self) -> String {
        format!("children/{}/{}", self.account, self.region)
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.account, self.region)
    }
}

/// One child run as its parent's manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildRun {
    /// The child's account.
    pub account: String,
    /// The child's region.
    pub region: String,
    /// `children/ACCOUNT/REGION/manifest.json`, relative to the parent run.
    pub path: String,
    /// SHA-256 of the child's `manifest.json` bytes.
    pub manifest_sha256: Sha256Digest,
}

impl ChildRun {
    /// The account and region.
    pub fn target(&self) -> Target {
        Target {
            account: self.account.clone(),
            region: self.region.clone(),
        }
    }
}

/// The manifest of one sealed run (`manifest.json`), exactly as in the evidence format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// The case.
    pub case_id: String,
    /// The run.
    pub run_id: String,
    /// A fan-out child's account and region (the child is stored under its parent run, at
    /// `children/ACCOUNT/REGION/`); absent for a run that is not a child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// The playbook that ran.
    pub playbook: PlaybookRef,
    /// Who collected, with what tool, from which host.
    pub collector: Collector,
    /// When the run started.
    pub started_at: Timestamp,
    /// When the run was sealed.
    pub sealed_at: Timestamp,
    /// Every captured item (including `journal.jsonl`).
    pub items: Vec<ManifestItem>,
    /// Items that could not be stored (not in `items` nor in `SHA256SUMS`); verification
    /// reports them as warnings. Absent when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_items: Vec<FailedItem>,
    /// Resources that cannot be hashed as bytes.
    #[serde(default)]
    pub aws_resources: Vec<AwsResource>,
    /// Optional reads that failed: what the evidence lacks (absent from the JSON when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<Gap>,
    /// A fan-out parent's child runs, each with the hash of its `manifest.json` (absent for a
    /// run that fanned out to no target).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<ChildRun>,
    /// Hex SHA-256 of the case's previous sealed manifest; `None` for the case's first run.
    pub previous_manifest_sha256: Option<Sha256Digest>,
}

impl Manifest {
    /// Puts items and resources in canonical order (see the module documentation).
    pub fn normalise(&mut self) {
        self.items
            .sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
        self.failed_items
            .sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
        self.aws_resources
            .sort_by(|a, b| (&a.kind, &a.id).cmp(&(&b.kind, &b.id)));
        self.gaps.sort();
        self.gaps.dedup();
        self.children
            .sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    }

    /// The canonical bytes of `manifest.json` (see the module documentation). Items and
    /// resources are written in canonical order whatever their order in `self`.
    pub fn to_canonical_bytes(&self) -> Vec<u8> {
        let mut m = self.clone();
        m.normalise();
        let mut out = serde_json::to_vec_pretty(&m).expect("a manifest always serialises");
        out.push(b'\n');
        out
    }

    /// The SHA-256 of the canonical bytes: the value the next run's
    /// `previous_manifest_sha256` holds.
    pub fn canonical_sha256(&self) -> Sha256Digest {
        Sha256Digest::of(&self.to_canonical_bytes())
    }

    /// Parses `manifest.json` bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Manifest, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// `true` when `bytes` are exactly the canonical serialisation of what they contain.
    pub fn is_canonical(bytes: &[u8]) -> bool {
        Manifest::from_slice(bytes)
            .map(|m| m.to_canonical_bytes() == bytes)
            .unwrap_or(false)
    }
}

/// The lines of a `SHA256SUMS` file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sha256Sums {
    /// `(path, digest)` in file order.
    pub entries: Vec<(String, Sha256Digest)>,
}

impl Sha256Sums {
    /// The sums a seal writes: every item of `manifest`, each child's `manifest.json` (so
    /// `sha256sum -c` in a parent's folder checks the children's manifests, whose own sums
    /// check their items), and `manifest.json` with the hash of its bytes, sorted by path.
    pub fn for_manifest(manifest: &Manifest, manifest_sha256: Sha256Digest) -> Sha256Sums {
        let mut entries: Vec<(String, Sha256Digest)> = manifest
            .items
            .iter()
            .map(|i| (i.path.clone(), i.sha256))
            .chain(
                manifest
                    .children
                    .iter()
                    .map(|c| (c.path.clone(), c.manifest_sha256)),
            )
            .chain(std::iter::once((
                MANIFEST_NAME.to_string(),
                manifest_sha256,
            )))
            .collect();
        entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        Sha256Sums { entries }
    }

    /// coreutils format: `<hex>  <path>\n` per entry.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = String::new();
        for (path, d) in &self.entries {
            s.push_str(&d.to_hex());
            s.push_str("  ");
            s.push_str(path);
            s.push('\n');
        }
        s.into_bytes()
    }

    /// Parses coreutils `sha256sum` output (text `  ` or binary ` *` separator). Returns the
    /// entries and a description of every line that could not be read.
    pub fn parse(bytes: &[u8]) -> (Sha256Sums, Vec<String>) {
        let mut entries = Vec::new();
        let mut problems = Vec::new();
        let text = String::from_utf8_lossy(bytes);
        for (n, line) in text.lines().enumerate() {
            if line.is_empty() {
                continue;
            }
            let parsed = line
                .get(..64)
                .and_then(Sha256Digest::from_hex)
                .and_then(|d| {
                    let rest = &line[64..];
                    rest.strip_prefix("  ")
                        .or_else(|| rest.strip_prefix(" *"))
                        .filter(|p| !p.is_empty())
                        .map(|p| (p.to_string(), d))
                });
            match parsed {
                Some(e) => entries.push(e),
                None => problems.push(format!(
                    "line {} is not `<sha256>  <path>`: {line:?}",
                    n + 1
                )),
            }
        }
        (Sha256Sums { entries }, problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Manifest {
        let t = Timestamp::parse("2024-05-01T12:00:00.123456Z").unwrap();
        Manifest {
            format: MANIFEST_FORMAT.into(),
            case_id: "case-1".into(),
            run_id: "run-1".into(),
            target: None,
            playbook: PlaybookRef {
                name: "isolate".into(),
                version: "1.2".into(),
                sha256: "ab".repeat(32),
            },
            collector: Collector {
                tool: "irr 0.1.0".into(),
                aws_principal: Some("arn:aws:iam::123456789012:user/ir".into()),
                host: "ws-1".into(),
                execution_arn: None,
            },
            started_at: t,
            sealed_at: t,
            items: vec![
                ManifestItem {
                    path: "journal.jsonl".into(),
                    sha256: Sha256Digest::of(b"j"),
                    size: 1,
                    captured_at: t,
                    step: None,
                    source: None,
                    attempt: None,
                    s3: None,
                },
                ManifestItem {
                    path: "artifacts/snapshot/volumes.json".into(),
                    sha256: Sha256Digest::of(b"v"),
                    size: 1,
                    captured_at: t,
                    step: Some("snapshot".into()),
                    source: Some("ec2:DescribeVolumes".into()),
                    attempt: None,
                    s3: Some(S3ObjectRef {
                        version_id: Some("v1".into()),
                        checksum_sha256: Some("x".into()),
                    }),
                },
            ],
            failed_items: Vec::new(),
            aws_resources: vec![AwsResource::new("ebs-snapshot", "snap-1")
                .with("volume_id", "vol-1")
                .with("state", "completed")
                .with("tags", serde_json::json!({"z": 1, "a": 2}))],
            gaps: Vec::new(),
            children: Vec::new(),
            previous_manifest_sha256: None,
        }
    }

    #[test]
    fn canonical_layout_is_fixed() {
        let bytes = sample().to_canonical_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.ends_with("}\n") && !text.ends_with("\n\n"));
        assert!(text.starts_with("{\n  \"format\": \"irr-evidence-manifest/1\",\n  \"case_id\""));
        let order = [
            "\"format\"",
            "\"case_id\"",
            "\"run_id\"",
            "\"playbook\"",
            "\"collector\"",
            "\"started_at\"",
            "\"sealed_at\"",
            "\"items\"",
            "\"aws_resources\"",
            "\"previous_manifest_sha256\": null",
        ];
        let pos: Vec<usize> = order.iter().map(|k| text.find(k).unwrap()).collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]), "{text}");
        // Items sorted by path, milliseconds, nulls written, resource keys sorted.
        assert!(text.find("artifacts/snapshot").unwrap() < text.find("journal.jsonl").unwrap());
        assert!(text.contains("\"captured_at\": \"2024-05-01T12:00:00.123Z\""));
        assert!(text.contains("\"step\": null"));
        assert!(text.contains("\"s3\": null"));
        let r = text.find("\"type\": \"ebs-snapshot\"").unwrap();
        assert!(r < text.find("\"id\": \"snap-1\"").unwrap());
        assert!(text.find("\"state\"").unwrap() < text.find("\"volume_id\"").unwrap());
        assert!(text.find("\"a\": 2").unwrap() < text.find("\"z\": 1").unwrap());
    }

    #[test]
    fn canonical_round_trip_reproduces_bytes() {
        let bytes = sample().to_canonical_bytes();
        assert!(Manifest::is_canonical(&bytes));
        let back = Manifest::from_slice(&bytes).unwrap();
        assert_eq!(back.to_canonical_bytes(), bytes);
        assert_eq!(back.canonical_sha256(), Sha256Digest::of(&bytes));
        // Any re-formatting is not canonical.
        let compact = serde_json::to_vec(&back).unwrap();
        assert!(!Manifest::is_canonical(&compact));
        let mut extra_space = bytes.clone();
        extra_space.push(b'\n');
        assert!(!Manifest::is_canonical(&extra_space));
    }

    #[test]
    fn gaps_are_canonical_and_absent_when_none() {
        let none = String::from_utf8(sample().to_canonical_bytes()).unwrap();
        assert!(!none.contains("\"gaps\""), "{none}");
        let mut m = sample();
        m.gaps = vec![
            Gap {
                step: "z".into(),
                what: "ec2:GetConsoleOutput".into(),
                error: "UnauthorizedOperation: no".into(),
            },
            Gap {
                step: "a".into(),
                what: "autoscaling:DescribeAutoScalingInstances".into(),
                error: "AccessDenied: no".into(),
            },
        ];
        let bytes = m.to_canonical_bytes();
        assert!(Manifest::is_canonical(&bytes));
        let text = String::from_utf8(bytes).unwrap();
        let g = text.find("\"gaps\"").unwrap();
        assert!(text.find("\"aws_resources\"").unwrap() < g);
        assert!(g < text.find("\"previous_manifest_sha256\"").unwrap());
        assert!(text.find("\"step\": \"a\"").unwrap() < text.find("\"step\": \"z\"").unwrap());
        let back = Manifest::from_slice(text.as_bytes()).unwrap();
        assert_eq!(back.gaps.len(), 2);
    }

    #[test]
    fn sums_format_and_parse() {
        let m = sample();
        let md = m.canonical_sha256();
        let sums = Sha256Sums::for_manifest(&m, md);
        let text = String::from_utf8(sums.to_bytes()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[0],
            format!(
                "{}  artifacts/snapshot/volumes.json",
                Sha256Digest::of(b"v")
            )
        );
        assert_eq!(lines[2], format!("{md}  manifest.json"));
        let (parsed, problems) = Sha256Sums::parse(text.as_bytes());
        assert!(problems.is_empty());
        assert_eq!(parsed, sums);
        let (_, problems) = Sha256Sums::parse(b"zz  x\n");
        assert_eq!(problems.len(), 1);
    }
}
