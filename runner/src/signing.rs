//! The runner's side of signed seals (`irr-forensics`' `signing` does the work): which key
//! signs a run (`--signing-key`, else the playbook's `evidence.signing_key`), loading it before
//! the first change so a bad key changes nothing, signing right after the seal, the trusted
//! key of `irr evidence verify`, and `irr evidence sign`.
//!
//! A signing failure after the seal leaves the sealed bundle as it is: the run's summary (and
//! so its journal) says why, and `irr evidence sign LOC --signing-key KEY` signs it later. Key
//! references are a KMS key ARN or a file path, never the key: `run.json`, the journal and the
//! messages hold the path or the ARN only.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use aws_config::{Region, SdkConfig};
use irr_forensics::{KeyRef, PublicKey, SignOutcome, Signer, Store, TrustedKey};

use crate::events::EvidenceSummary;
use crate::exit_codes::{self, Exit};

/// The key reference a run signs with: `flag` (relative paths from the current folder), else
/// the playbook's (relative to its folder), as a KMS ARN or an absolute path; `Err` is what to
/// say.
pub fn resolve(
    flag: Option<&str>,
    playbook_key: Option<&str>,
    playbook_dir: &Path,
) -> Result<Option<String>, String> {
    let (value, base, what) = match (flag, playbook_key) {
        (Some(f), _) => (
            f,
            std::env::current_dir().unwrap_or_default(),
            "--signing-key",
        ),
        (None, Some(p)) => (p, playbook_dir.to_owned(), "evidence.signing_key"),
        (None, None) => return Ok(None),
    };
    match KeyRef::parse(value).map_err(|e| format!("{what}: {e}"))? {
        KeyRef::Kms { arn, .. } => Ok(Some(arn)),
        KeyRef::File(p) => Ok(Some(absolute(&base, &p).display().to_string())),
    }
}

fn absolute(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_owned()
    } else {
        base.join(p)
    }
}

/// Whether signing with `spec` needs AWS (a KMS key).
pub fn needs_aws(spec: Option<&str>) -> bool {
    spec.is_some_and(|s| matches!(KeyRef::parse(s), Ok(KeyRef::Kms { .. })))
}

/// A KMS client for the key's own region (the ARN says which), with the connection's
/// credentials and endpoint.
pub fn kms_client(config: &SdkConfig, region: &str) -> aws_sdk_kms::Client {
    let conf = aws_sdk_kms::config::Builder::from(config)
        .region(Region::new(region.to_owned()))
        .build();
    aws_sdk_kms::Client::from_conf(conf)
}

/// Loads the signer `spec` names: reads and parses a PEM file, or asks KMS for the key's
/// public key. `Err` says what is wrong (never the key's content).
pub async fn load_signer(spec: &str, config: &SdkConfig) -> Result<Signer, String> {
    match KeyRef::parse(spec)? {
        KeyRef::File(p) => Signer::from_pem_file(&p).map_err(|e| e.to_string()),
        KeyRef::Kms { arn, region, .. } => Signer::kms(kms_client(config, &region), &arn)
            .await
            .map_err(|e| e.to_string()),
    }
}

/// Where a run's signing key may come from: `--signing-key` (or, on resume, the key recorded
/// when the run started), else the playbook's `evidence.signing_key` (relative to its folder).
#[derive(Debug, Clone)]
pub struct KeyChoice {
    /// `--signing-key`, or the recorded key.
    pub flag: Option<String>,
    /// `evidence.signing_key`.
    pub playbook: Option<String>,
    /// The playbook's folder.
    pub playbook_dir: PathBuf,
}

impl KeyChoice {
    /// The choice of a run of `playbook_path` (`evidence`: its evidence declaration).
    pub fn new(
        flag: Option<&str>,
        playbook_path: &Path,
        evidence: &crate::model::EvidenceDecl,
    ) -> KeyChoice {
        let path = absolute(&std::env::current_dir().unwrap_or_default(), playbook_path);
        KeyChoice {
            flag: flag.map(str::to_owned),
            playbook: evidence.signing_key.clone(),
            playbook_dir: path.parent().map(Path::to_owned).unwrap_or_default(),
        }
    }

    /// The choice of a resumed run: the key recorded when it started (a run recorded before
    /// keys were: its playbook's).
    pub fn recorded(
        record: &crate::executor::RunRecord,
        playbook: &crate::model::Playbook,
    ) -> KeyChoice {
        let flag = record.signing_key.as_deref();
        KeyChoice::new(flag, &record.playbook_path, &playbook.evidence)
    }

    /// Whether the chosen key is a KMS key (the run then needs AWS).
    pub fn needs_aws(&self) -> bool {
        needs_aws(self.flag.as_deref().or(self.playbook.as_deref()))
    }
}

/// The signer of a run about to start, resolved ([`resolve`]) and loaded before its first
/// change (a key that cannot sign changes nothing), with the reference `run.json` records;
/// `Err` is the whole message to print.
pub async fn choose(
    key: &KeyChoice,
    config: &SdkConfig,
) -> Result<Option<(String, Signer)>, String> {
    let nothing = |e: String| format!("error: {e}; nothing was changed");
    let chosen = resolve(
        key.flag.as_deref(),
        key.playbook.as_deref(),
        &key.playbook_dir,
    );
    let Some(spec) = chosen.map_err(nothing)? else {
        return Ok(None);
    };
    let signer = load_signer(&spec, config)
        .await
        .map_err(|e| nothing(format!("the signing key cannot sign: {e}")))?;
    Ok(Some((spec, signer)))
}

/// The trusted key of `irr evidence verify --trusted-key`: a PEM public key file (no AWS
/// access then), or a KMS key ARN.
pub fn trusted_key(spec: &str, config: Option<&SdkConfig>) -> Result<TrustedKey, String> {
    match KeyRef::parse(spec).map_err(|e| format!("--trusted-key: {e}"))? {
        KeyRef::File(p) => PublicKey::from_pem_file(&p)
            .map(TrustedKey::Pem)
            .map_err(|e| format!("--trusted-key: {e}")),
        KeyRef::Kms { arn, region, .. } => {
            let config = config.ok_or("--trusted-key: a KMS key needs AWS access")?;
            Ok(TrustedKey::Kms {
                client: kms_client(config, &region),
                arn,
            })
        }
    }
}

/// Signs a run sealed just now, recording the outcome in its summary: `signed_by`, or
/// `signature_error` with how to sign it later. The sealed bundle is never touched.
pub async fn sign_sealed(
    store: &Store,
    case_id: &str,
    run_id: &str,
    signer: &Signer,
    spec: &str,
    summary: &mut EvidenceSummary,
) {
    if summary.manifest_sha256.is_none() {
        summary.signature_error = Some("not signed: the run could not be sealed".to_owned());
        return;
    }
    match irr_forensics::sign_run(store, case_id, run_id, signer).await {
        Ok(out) => summary.signed_by = Some(out.signed().keyid.clone()),
        Err(e) => {
            summary.signature_error = Some(format!(
                "sealed but not signed: {e}; the seal is intact; sign it with `irr evidence sign {} --signing-key {spec}`",
                summary.location
            ))
        }
    }
}

/// `irr evidence sign LOC --signing-key KEY`: signs a sealed run afterwards (a crash between
/// seal and signature). A run signed by this key already is reported and left as it is; one
/// signed by another key is refused, nothing written (exit 2): a signature is evidence. In S3
/// the two objects are written like all evidence, with the default Object Lock retention
/// (GOVERNANCE, 90 days).
pub fn sign_cmd(location: &str, key: &str, aws: &crate::aws::AwsOptions, json: bool) -> Exit {
    let say = |status: &str, msg: &str, extra: serde_json::Value| {
        if json {
            let mut v = serde_json::json!({"status": status, "location": location, "message": msg});
            if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
                o.extend(e.clone());
            }
            let _ = writeln!(std::io::stdout().lock(), "{v}");
        } else if status == "error" {
            let _ = writeln!(std::io::stderr().lock(), "error: {msg}");
        } else {
            let _ = writeln!(std::io::stdout().lock(), "{msg}");
        }
    };
    let result = crate::cli::block_on(sign_location(location, key, aws));
    match result {
        Ok(out) => {
            let s = out.signed();
            let (status, verb) = match &out {
                SignOutcome::Signed(_) => ("signed", "signed"),
                SignOutcome::AlreadySigned(_) => ("already_signed", "was signed already, by"),
            };
            let mut msg = format!("{location}: {verb} key {}", s.keyid);
            if let Some(p) = &s.previous_signature {
                msg.push_str(&format!("; carries run {}'s signature", p.run_id));
            }
            for w in &s.warnings {
                msg.push_str(&format!("\nwarning: {w}"));
            }
            say(
                status,
                &msg,
                serde_json::json!({"keyid": s.keyid, "signature": s.location}),
            );
            exit_codes::SUCCESS
        }
        Err((exit, msg)) => {
            say(
                "error",
                &format!("{msg}; nothing was written"),
                serde_json::json!({}),
            );
            exit
        }
    }
}

async fn sign_location(
    location: &str,
    key: &str,
    aws_opts: &crate::aws::AwsOptions,
) -> Result<SignOutcome, (Exit, String)> {
    let invalid = |m: String| (exit_codes::INVALID, m);
    let loc =
        irr_forensics::EvidenceLocation::parse(location).map_err(|e| invalid(e.to_string()))?;
    let (root, case_id, run_id) = loc.split_run().ok_or_else(|| {
        invalid(format!(
            "{location} is not a run: expected LOCATION/CASE_ID/RUN_ID"
        ))
    })?;
    let spec = resolve(Some(key), None, Path::new("."))
        .map_err(invalid)?
        .unwrap_or_default();
    let s3 = matches!(root, irr_forensics::EvidenceLocation::S3 { .. });
    let aws = if s3 || needs_aws(Some(&spec)) {
        Some(
            crate::aws::connect(aws_opts)
                .await
                .map_err(|e| (exit_codes::UNVERIFIABLE, e.to_string()))?,
        )
    } else {
        None
    };
    let signer = match &aws {
        Some(a) => load_signer(&spec, &a.config).await,
        None => load_signer(&spec, &crate::aws::offline(None).config).await,
    }
    .map_err(invalid)?;
    let (client, owner) = match &aws {
        Some(a) if s3 => {
            let id = a
                .identity()
                .await
                .map_err(|e| (exit_codes::UNVERIFIABLE, e.to_string()))?;
            (Some(a.clients.s3.clone()), Some(id.account_id))
        }
        _ => (None, None),
    };
    let store = Store::open(
        &root,
        client,
        crate::evidence::read_settings(owner.as_deref()),
    )
    .map_err(|e| invalid(e.to_string()))?;
    irr_forensics::sign_run(&store, &case_id, &run_id, &signer)
        .await
        .map_err(|e| {
            let code = if e.is_unreadable() {
                exit_codes::UNVERIFIABLE
            } else {
                exit_codes::INVALID
            };
            (code, e.to_string())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem_key(dir: &Path, name: &str) -> PathBuf {
        use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
        use base64::Engine as _;
        let doc = EcdsaKeyPair::generate_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            &aws_lc_rs::rand::SystemRandom::new(),
        )
        .unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(doc.as_ref());
        let path = dir.join(name);
        std::fs::write(
            &path,
            format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n"),
        )
        .unwrap();
        path
    }

    #[test]
    fn key_references_resolve_against_their_origin() {
        let dir = Path::new("/srv/playbooks");
        assert_eq!(
            resolve(None, Some("keys/seal.pem"), dir)
                .unwrap()
                .as_deref(),
            Some("/srv/playbooks/keys/seal.pem")
        );
        let arn = "arn:aws:kms:eu-west-1:111122223333:key/abcd-1234";
        assert_eq!(
            resolve(Some(arn), Some("x.pem"), dir).unwrap().as_deref(),
            Some(arn)
        );
        assert!(needs_aws(Some(arn)) && !needs_aws(Some("/k.pem")) && !needs_aws(None));
        let e = resolve(Some("arn:aws:kms:eu-west-1:1:key/x"), None, dir).unwrap_err();
        assert!(e.starts_with("--signing-key: "), "{e}");
    }

    /// A signature that cannot be made after the seal leaves the seal as it is, and the
    /// summary says why and how to sign it later.
    #[tokio::test]
    async fn a_signing_failure_after_the_seal_keeps_the_seal_and_says_how_to_fix_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ev");
        let store = Store::open(
            &irr_forensics::EvidenceLocation::Local(root.clone()),
            None,
            irr_forensics::S3Settings::default(),
        )
        .unwrap();
        let info = irr_forensics::RunInfo {
            playbook: irr_forensics::PlaybookRef {
                name: "p".into(),
                version: "1".into(),
                sha256: "0".repeat(64),
            },
            collector: irr_forensics::Collector::this_host("irr test", None),
            started_at: irr_forensics::Timestamp::now(),
        };
        let b = irr_forensics::Bundle::new(store.clone(), "C", "r", info).unwrap();
        b.capture_json("s", "a.json", &serde_json::json!({}), None)
            .await
            .unwrap();
        let seal = b.seal().await.unwrap();
        // Another signer's key is in place already (a crashed signature by someone else).
        let other = Signer::from_pem_file(&pem_key(dir.path(), "other.pem")).unwrap();
        std::fs::write(root.join("C/r/public-key.pem"), other.public_key().to_pem()).unwrap();
        let key = pem_key(dir.path(), "mine.pem");
        let signer = Signer::from_pem_file(&key).unwrap();
        let mut summary = EvidenceSummary {
            location: root.join("C/r").display().to_string(),
            manifest_sha256: Some(seal.seal().manifest_sha256.to_hex()),
            items: 1,
            error: None,
            signed_by: None,
            signature_error: None,
        };
        let spec = key.display().to_string();
        sign_sealed(&store, "C", "r", &signer, &spec, &mut summary).await;
        assert_eq!(summary.signed_by, None);
        let e = summary.signature_error.unwrap();
        assert!(e.starts_with("sealed but not signed: "), "{e}");
        assert!(e.contains("irr evidence sign") && e.contains(&spec), "{e}");
        assert!(!root.join("C/r/manifest.sig.json").exists());
        let report = irr_forensics::verify_run(&store, "C", "r").await.unwrap();
        assert!(report
            .items
            .iter()
            .all(|i| i.status == irr_forensics::ItemStatus::Ok));
        assert!(report.manifest.problems.is_empty() && report.sha256sums.problems.is_empty());
    }
}
