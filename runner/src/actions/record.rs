//! The case's own record of a containment, read back from the evidence irr wrote, never from
//! AWS tags.
//!
//! `ec2.isolate_instance` writes what it saw and did as two artifacts:
//! `isolation-before.json` (every interface with its groups, the instance profile, Auto
//! Scaling membership, before anything changed) and `isolation.json` (the original groups
//! per interface, the profile and Auto Scaling group it detached, the groups it used). Anyone
//! with `ec2:CreateTags` on the instance can rewrite the `irr:original-*` tags, so an undo
//! (`ec2.release_instance`) or a repeated or resumed isolation takes the originals from these
//! artifacts only. They are found in two places, both tied to the case:
//!
//! 1. **this run**: the artifacts captured so far (every attempt's, resumed runs included),
//!    each read back from the run's staging directory and checked against the SHA-256
//!    recorded (in the journal) when it was captured ([`super::Recorder::captured`]);
//! 2. **the case's earlier sealed runs** in this run's evidence location
//!    (`LOCATION/CASE_ID/RUN_ID/`, [`super::Recorder::evidence_location`]): each run's
//!    `manifest.json` is read and every matching artifact checked against its manifest entry
//!    (SHA-256 and size, the exact S3 version when there is one). The runs of a case are
//!    chained (`previous_manifest_sha256`), so the record is the whole case's.
//!
//! An artifact that does not match what was recorded is a problem, reported by name: an
//! action that must undo from the record refuses rather than trust any of it. How far this
//! can be trusted (a local bundle can be rewritten consistently; S3 Object Lock cannot):
//! `docs/security.md`.

use std::collections::{BTreeMap, BTreeSet};

use irr_forensics::{EvidenceLocation, Manifest, S3Settings, Sha256Digest, Store, MANIFEST_NAME};
use serde_json::Value;

use super::ActionCtx;

/// The artifact names of an isolation, as `ec2.isolate_instance` writes them.
pub const BEFORE: &str = "isolation-before.json";
/// See [`BEFORE`].
pub const AFTER: &str = "isolation.json";

/// At most this many bytes of one record artifact or manifest are read.
const LIMIT: u64 = 16 * 1024 * 1024;

/// One verified artifact of the record.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Where it came from, for messages (`sealed run r-...: artifacts/isolate/isolation.json`).
    pub origin: String,
    /// `true` for `isolation.json`, `false` for `isolation-before.json`.
    pub after: bool,
    /// Its content.
    pub value: Value,
}

/// What the case's record says about one instance's containment.
#[derive(Clone, Debug, Default)]
pub struct Record {
    /// Verified artifacts about the instance, oldest first.
    pub entries: Vec<Entry>,
    /// Artifacts that could not be verified (altered, missing, unreadable), by name.
    pub problems: Vec<String>,
}

/// The originals the record holds, newest wins.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Originals {
    /// Interface id -> its groups before irr moved it.
    pub groups: BTreeMap<String, Vec<String>>,
    /// The instance profile ARN isolation detached (or found attached before).
    pub profile: Option<String>,
    /// The Auto Scaling group isolation took the instance out of.
    pub auto_scaling_group: Option<String>,
    /// Groups irr made for the case (isolation, allow-all), as the record names them.
    pub irr_groups: BTreeSet<String>,
}

impl Record {
    /// Derives the originals: entries are applied oldest first, so the newest says last.
    /// A before-state only counts for an interface whose groups were not irr's own (an
    /// interrupted run leaves an interface in irr's groups; its originals are older).
    pub fn originals(&self) -> Originals {
        let mut o = Originals::default();
        for e in &self.entries {
            let v = &e.value;
            if e.after {
                if v["dry_run"] == Value::Bool(true) {
                    continue;
                }
                for k in ["isolation_group_id", "allow_all_group_id"] {
                    if let Some(g) = v[k].as_str() {
                        o.irr_groups.insert(g.to_owned());
                    }
                }
                if let Some(map) = v["original_groups"].as_object() {
                    for (eni, groups) in map {
                        let groups = strings(groups);
                        if !groups.is_empty() && !groups.iter().all(|g| o.irr_groups.contains(g)) {
                            o.groups.insert(eni.clone(), groups);
                        }
                    }
                }
                let p = &v["instance_profile"];
                if p["detached"] == Value::Bool(true) {
                    if let Some(arn) = p["arn"].as_str().filter(|a| !a.is_empty()) {
                        o.profile = Some(arn.to_owned());
                    }
                }
                let a = &v["auto_scaling"];
                if a["detached"] == Value::Bool(true) {
                    if let Some(g) = a["group"].as_str() {
                        o.auto_scaling_group = Some(g.to_owned());
                    }
                }
            } else {
                for g in v["case_security_groups"].as_array().into_iter().flatten() {
                    if let Some(id) = g["group_id"].as_str() {
                        o.irr_groups.insert(id.to_owned());
                    }
                }
                for n in v["network_interfaces"].as_array().into_iter().flatten() {
                    let Some(eni) = n["network_interface_id"].as_str() else {
                        continue;
                    };
                    let groups: Vec<String> = n["groups"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|g| g["group_id"].as_str().map(str::to_owned))
                        .collect();
                    if !groups.is_empty() && !groups.iter().all(|g| o.irr_groups.contains(g)) {
                        o.groups.insert(eni.to_owned(), groups);
                    }
                }
                if let Some(arn) = v["instance_profile_associations"]
                    .as_array()
                    .and_then(|a| a.first())
                    .and_then(|a| a["instance_profile_arn"].as_str())
                {
                    o.profile = Some(arn.to_owned());
                }
            }
        }
        o
    }

    /// Where the entries came from, for evidence.
    pub fn origins(&self) -> Vec<String> {
        self.entries.iter().map(|e| e.origin.clone()).collect()
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

/// An artifact of interest: one of the two names, about `instance_id`.
fn about(name_of_path: &str, value: &Value, instance_id: &str) -> Option<bool> {
    let name = name_of_path.rsplit('/').next().unwrap_or_default();
    let after = match name {
        AFTER => true,
        BEFORE => false,
        _ => return None,
    };
    (value["instance_id"].as_str() == Some(instance_id)).then_some(after)
}

/// Reads the case's record of `instance_id`: the case's earlier sealed runs first (in the
/// order they were sealed), then this run's own artifacts.
pub async fn isolation_record(ctx: &ActionCtx, instance_id: &str) -> Record {
    let mut record = Record::default();
    if let Some(location) = ctx.recorder.evidence_location() {
        sealed_runs(ctx, &location, instance_id, &mut record).await;
    }
    let mut own = Vec::new();
    for name in [BEFORE, AFTER] {
        own.extend(ctx.recorder.captured(name));
    }
    own.sort_by_key(|(order, _, _)| *order);
    for (_, path, bytes) in own {
        let bytes = match bytes {
            Ok(b) => b,
            Err(e) => {
                record.problems.push(format!("this run's {path}: {e}"));
                continue;
            }
        };
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => {
                if let Some(after) = about(&path, &v, instance_id) {
                    record.entries.push(Entry {
                        origin: format!("this run ({}): {path}", ctx.run_id),
                        after,
                        value: v,
                    });
                }
            }
            Err(e) => record
                .problems
                .push(format!("this run's {path} is not JSON: {e}")),
        }
    }
    record
}

/// The manifest of `parent`'s child in `target`, checked against the hash the parent lists;
/// `None` when the parent has no such child (or it does not match: a problem of the record).
async fn child_manifest(
    store: &Store,
    parent: &Manifest,
    target: &irr_forensics::manifest::Target,
    record: &mut Record,
) -> Option<Manifest> {
    let child = parent
        .children
        .iter()
        .find(|c| c.account == target.account && c.region == target.region)?;
    let key = format!("{}/{}/{}", parent.case_id, parent.run_id, child.path);
    let bytes = match store.read(&key, None, LIMIT).await {
        Ok(Some(b)) => b,
        Ok(None) => {
            record.problems.push(format!(
                "{}: listed by its parent but missing",
                store.describe(&key)
            ));
            return None;
        }
        Err(e) => {
            record
                .problems
                .push(format!("{}: {e}", store.describe(&key)));
            return None;
        }
    };
    if Sha256Digest::of(&bytes) != child.manifest_sha256 {
        record.problems.push(format!(
            "{}: does not hash to what its parent lists: altered",
            store.describe(&key)
        ));
        return None;
    }
    match Manifest::from_slice(&bytes) {
        Ok(m) if m.target.as_ref() == Some(target) => Some(m),
        Ok(_) => {
            record.problems.push(format!(
                "{}: names another target than where it is stored",
                store.describe(&key)
            ));
            None
        }
        Err(e) => {
            record.problems.push(format!(
                "{}: unreadable manifest: {e}",
                store.describe(&key)
            ));
            None
        }
    }
}

async fn sealed_runs(ctx: &ActionCtx, location: &str, instance_id: &str, record: &mut Record) {
    let store = match EvidenceLocation::parse(location)
        .map_err(|e| e.to_string())
        .and_then(|l| {
            // The same owner check as the run's own evidence: a look-alike bucket's
            // "records" are refused, not trusted.
            let settings = S3Settings {
                expected_owner: ctx.recorder.evidence_owner(),
                ..S3Settings::default()
            };
            Store::open(&l, Some(ctx.aws.s3.clone()), settings).map_err(|e| e.to_string())
        }) {
        Ok(s) => s,
        Err(e) => {
            record
                .problems
                .push(format!("evidence location {location}: {e}"));
            return;
        }
    };
    let case = &ctx.case_id;
    let runs = match store.list_children(&format!("{case}/")).await {
        Ok(r) => r,
        Err(e) => {
            record.problems.push(format!(
                "the case's earlier runs in {location} cannot be listed: {e}"
            ));
            return;
        }
    };
    // Each sealed run's manifest and where its items are (a fan-out child reads the same
    // account-region's child of each earlier run, anchored by the hash its parent lists).
    let mut sealed: Vec<(Manifest, String)> = Vec::new();
    let target = ctx.recorder.target();
    for run in runs.iter().filter(|r| r.as_str() != ctx.run_id) {
        let key = format!("{case}/{run}/{MANIFEST_NAME}");
        match store.read(&key, None, LIMIT).await {
            Ok(None) => {} // not sealed: its record is not the case's (yet)
            Ok(Some(bytes)) => match Manifest::from_slice(&bytes) {
                Ok(m) if &m.case_id == case && &m.run_id == run => match &target {
                    None => sealed.push((m, format!("{case}/{run}/"))),
                    Some(t) => {
                        if let Some(child) = child_manifest(&store, &m, t, record).await {
                            sealed.push((child, format!("{case}/{run}/{}/", t.dir())));
                        }
                    }
                },
                Ok(m) => record.problems.push(format!(
                    "{}: names case {} run {}, not where it is stored",
                    store.describe(&key),
                    m.case_id,
                    m.run_id
                )),
                Err(e) => record.problems.push(format!(
                    "{}: unreadable manifest: {e}",
                    store.describe(&key)
                )),
            },
            Err(e) => record
                .problems
                .push(format!("{}: {e}", store.describe(&key))),
        }
    }
    sealed.sort_by_key(|(m, _)| m.sealed_at);
    for (m, prefix) in &sealed {
        let mut items: Vec<_> = m
            .items
            .iter()
            .filter(|i| {
                let name = i.path.rsplit('/').next().unwrap_or_default();
                name == BEFORE || name == AFTER
            })
            .collect();
        items.sort_by_key(|i| i.captured_at);
        for item in items {
            let key = format!("{prefix}{}", item.path);
            let version = item.s3.as_ref().and_then(|s| s.version_id.as_deref());
            let origin = format!("sealed run {}: {}", m.run_id, item.path);
            let bytes = match store.read(&key, version, LIMIT).await {
                Ok(Some(b)) => b,
                Ok(None) => {
                    record
                        .problems
                        .push(format!("{origin} is listed in its manifest but missing"));
                    continue;
                }
                Err(e) => {
                    record.problems.push(format!("{origin}: {e}"));
                    continue;
                }
            };
            if Sha256Digest::of(&bytes) != item.sha256 || bytes.len() as u64 != item.size {
                record.problems.push(format!(
                    "{origin} does not match its manifest (sha256 {}, recorded {}): altered",
                    Sha256Digest::of(&bytes),
                    item.sha256
                ));
                continue;
            }
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(v) => {
                    if let Some(after) = about(&item.path, &v, instance_id) {
                        record.entries.push(Entry {
                            origin,
                            after,
                            value: v,
                        });
                    }
                }
                Err(e) => record.problems.push(format!("{origin} is not JSON: {e}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(after: bool, value: Value) -> Entry {
        Entry {
            origin: "t".into(),
            after,
            value,
        }
    }

    /// An interrupted isolation's second attempt sees the interface in irr's allow-all group:
    /// the originals are the first attempt's before-state, not irr's groups (nor a tag).
    #[test]
    fn originals_skip_irr_groups_and_the_newest_wins() {
        let r = Record {
            entries: vec![
                entry(
                    false,
                    json!({"instance_id": "i-1", "case_security_groups": [],
                       "network_interfaces": [{"network_interface_id": "eni-1", "groups": [{"group_id": "sg-open"}, {"group_id": "sg-web"}]}],
                       "instance_profile_associations": [{"instance_profile_arn": "arn:aws:iam::1:instance-profile/web"}]}),
                ),
                entry(
                    false,
                    json!({"instance_id": "i-1", "case_security_groups": [{"group_id": "sg-allow"}, {"group_id": "sg-iso"}],
                       "network_interfaces": [{"network_interface_id": "eni-1", "groups": [{"group_id": "sg-allow"}]}],
                       "instance_profile_associations": []}),
                ),
                entry(
                    true,
                    json!({"instance_id": "i-1", "dry_run": false, "isolation_group_id": "sg-iso", "allow_all_group_id": "sg-allow",
                       "original_groups": {"eni-1": ["sg-allow"]},
                       "instance_profile": {"arn": "arn:aws:iam::1:instance-profile/web", "detached": true},
                       "auto_scaling": {"group": "web-asg", "detached": true}}),
                ),
            ],
            problems: vec![],
        };
        let o = r.originals();
        assert_eq!(o.groups["eni-1"], vec!["sg-open", "sg-web"]);
        assert_eq!(
            o.profile.as_deref(),
            Some("arn:aws:iam::1:instance-profile/web")
        );
        assert_eq!(o.auto_scaling_group.as_deref(), Some("web-asg"));
        assert!(o.irr_groups.contains("sg-iso") && o.irr_groups.contains("sg-allow"));
    }

    #[test]
    fn a_dry_run_record_restores_nothing() {
        let r = Record {
            entries: vec![entry(
                true,
                json!({"instance_id": "i-1", "dry_run": true, "original_groups": {"eni-1": ["sg-x"]},
                   "instance_profile": {"arn": "arn:x", "detached": true}}),
            )],
            problems: vec![],
        };
        assert_eq!(r.originals(), Originals::default());
    }
}
