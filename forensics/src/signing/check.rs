//! The verifier's side of signed seals: checks a run's `manifest.sig.json` and
//! `public-key.pem` against its manifest, the key it names, the key the verifier trusts and the
//! case's other runs. The bundle is hostile: every file is read within a bound, and what a
//! file says is quoted shortened.

use std::collections::BTreeSet;

use serde::Serialize;

use super::envelope::{decode, shorten, Envelope, PreviousSignature, Statement};
use super::keys::{kms_public_key, kms_verifies, PublicKey, KEY_FILE_LIMIT};
use super::{PUBLIC_KEY_NAME, SIG_FILE_LIMIT, SIG_NAME};
use crate::bundle::case_runs;
use crate::hash::Sha256Digest;
use crate::manifest::Manifest;
use crate::store::Store;
use crate::verify::Status;
use crate::{Error, Result};

/// A key the verifier trusts, from outside the bundle.
#[derive(Clone)]
pub enum TrustedKey {
    /// A public key (a PEM file): verification needs no AWS access.
    Pem(PublicKey),
    /// A KMS key: its public key from `GetPublicKey`, the signature checked with `Verify`.
    Kms {
        /// A client for the key's region.
        client: aws_sdk_kms::Client,
        /// The key's ARN.
        arn: String,
    },
}

impl std::fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrustedKey::Pem(k) => write!(f, "TrustedKey::Pem({})", k.keyid()),
            TrustedKey::Kms { arn, .. } => write!(f, "TrustedKey::Kms({arn})"),
        }
    }
}

/// The check of a run's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignatureCheck {
    /// `ok` when `problems` is empty.
    pub status: Status,
    /// `true` when the run has a `manifest.sig.json`.
    pub signed: bool,
    /// The key the envelope names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyid: Option<String>,
    /// The trusted key's id, when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted_keyid: Option<String>,
    /// Whether the signature verified with the trusted key (`None`: no trusted key given, or
    /// nothing to check).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted: Option<bool>,
    /// The previous run's signature the statement carries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_signature: Option<PreviousSignature>,
    /// What is wrong: each one fails verification.
    pub problems: Vec<String>,
    /// Worth knowing, not a failure by itself: the key changed across the case's runs, the
    /// run is unsigned.
    pub warnings: Vec<String>,
}

impl SignatureCheck {
    /// A fan-out child's: children are not signed; their parent's signed manifest lists the
    /// hash of each child's manifest.
    pub(crate) fn of_child() -> SignatureCheck {
        SignatureCheck {
            status: Status::Ok,
            signed: false,
            keyid: None,
            trusted_keyid: None,
            trusted: None,
            previous_signature: None,
            problems: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

/// What the verifier was asked about signatures.
#[derive(Debug, Clone, Default)]
pub struct SignatureOptions {
    /// `--trusted-key`.
    pub trusted_key: Option<TrustedKey>,
    /// `--require-signature`: a run without `manifest.sig.json` fails.
    pub require_signature: bool,
}

/// Reads a sidecar within `limit`; what the bundle holds in its place is a problem, not an
/// error.
async fn read_sidecar(
    store: &Store,
    key: &str,
    name: &str,
    limit: u64,
) -> Result<std::result::Result<Option<Vec<u8>>, String>> {
    match store.read(key, None, limit).await {
        Ok(b) => Ok(Ok(b)),
        Err(Error::NotAFile { found, .. }) => Ok(Err(format!(
            "{name} is {found}, not a file (not followed, not read)"
        ))),
        Err(Error::Unreadable { reason, .. }) => Ok(Err(format!(
            "{name} is {reason}; irr never writes one so large (not read)"
        ))),
        Err(e) => Err(e),
    }
}

/// Checks the signature of run `run_id` whose manifest (if readable) is `manifest`, hashing to
/// `manifest_sha256`.
pub(crate) async fn check_signature(
    store: &Store,
    case_id: &str,
    run_id: &str,
    manifest: Option<(&Manifest, Sha256Digest)>,
    opts: &SignatureOptions,
) -> Result<SignatureCheck> {
    let key = |name: &str| format!("{case_id}/{run_id}/{name}");
    let mut c = SignatureCheck {
        status: Status::Ok,
        signed: false,
        keyid: None,
        trusted_keyid: None,
        trusted: None,
        previous_signature: None,
        problems: Vec::new(),
        warnings: Vec::new(),
    };
    let sig_bytes = match read_sidecar(store, &key(SIG_NAME), SIG_NAME, SIG_FILE_LIMIT).await? {
        Ok(b) => b,
        Err(p) => {
            c.signed = true;
            c.problems.push(p);
            return Ok(c.finish());
        }
    };
    let key_bytes = read_sidecar(
        store,
        &key(PUBLIC_KEY_NAME),
        PUBLIC_KEY_NAME,
        KEY_FILE_LIMIT,
    )
    .await?;
    let Some(sig_bytes) = sig_bytes else {
        unsigned(&mut c, opts, matches!(key_bytes, Ok(Some(_))));
        if let Some((m, _)) = manifest {
            key_history(store, m, None, &mut c).await?;
        }
        return Ok(c.finish());
    };
    c.signed = true;
    let env = match Envelope::parse(&sig_bytes) {
        Ok(e) => e,
        Err(e) => {
            c.problems.push(format!("manifest.sig.json: {e}"));
            return Ok(c.finish());
        }
    };
    let pae = env.pae().unwrap_or_default();
    let statement = env.payload_bytes().and_then(|p| Statement::parse(&p));
    match (&statement, manifest) {
        (Err(e), _) => c.problems.push(format!("manifest.sig.json: {e}")),
        (Ok(st), Some((m, digest))) => {
            c.problems.extend(st.differences(m, digest));
            c.previous_signature = st.predicate.previous_signature.clone();
        }
        (Ok(_), None) => {}
    }
    let stored = stored_key(&env, key_bytes, &pae, &mut c);
    c.keyid = Some(
        stored
            .as_ref()
            .map(PublicKey::keyid)
            .unwrap_or_else(|| env.signatures[0].keyid.clone()),
    );
    if let Some(trusted) = &opts.trusted_key {
        check_trusted(trusted, &env, &pae, &mut c).await?;
    }
    if let Some((m, _)) = manifest {
        check_previous(store, m, &mut c).await?;
        let keyid = c.keyid.clone();
        key_history(store, m, keyid.as_deref(), &mut c).await?;
    }
    Ok(c.finish())
}

impl SignatureCheck {
    fn finish(mut self) -> SignatureCheck {
        self.status = if self.problems.is_empty() {
            Status::Ok
        } else {
            Status::Mismatch
        };
        self
    }
}

/// An unsigned run: a problem with `--require-signature`, else a warning.
fn unsigned(c: &mut SignatureCheck, opts: &SignatureOptions, key_present: bool) {
    let what = if key_present {
        "no manifest.sig.json, but a public-key.pem: the signature was interrupted (`irr evidence sign` completes it)"
    } else {
        "no manifest.sig.json: the seal is not signed"
    };
    if opts.require_signature {
        c.problems
            .push(format!("{what}, and --require-signature was given"));
    } else {
        c.warnings.push(what.to_string());
    }
    if opts.trusted_key.is_some() && !opts.require_signature {
        c.warnings.push(
            "--trusted-key was given but there is no signature to check; --require-signature makes that a failure"
                .to_string(),
        );
    }
}

/// Checks the signature with `public-key.pem`; the key, when it is readable.
fn stored_key(
    env: &Envelope,
    key_bytes: std::result::Result<Option<Vec<u8>>, String>,
    pae: &[u8],
    c: &mut SignatureCheck,
) -> Option<PublicKey> {
    let key = match key_bytes {
        Err(p) => {
            c.problems.push(p);
            return None;
        }
        Ok(None) => {
            c.problems.push(
                "public-key.pem is missing: the key that made the signature is not beside it"
                    .into(),
            );
            return None;
        }
        Ok(Some(bytes)) => match PublicKey::from_pem(&bytes) {
            Ok(k) => k,
            Err(e) => {
                c.problems.push(format!("public-key.pem: {e}"));
                return None;
            }
        },
    };
    match env.signatures.iter().find(|s| s.keyid == key.keyid()) {
        None => c.problems.push(format!(
            "public-key.pem is key {}, but the envelope is signed by {}",
            key.keyid(),
            shorten(&env.signatures[0].keyid)
        )),
        Some(s) => {
            let ok = decode(&s.sig).is_ok_and(|sig| key.verifies(pae, &sig));
            if !ok {
                c.problems.push(format!(
                    "the signature does not verify with public-key.pem (key {}): the statement or the signature was altered",
                    key.keyid()
                ));
            }
        }
    }
    Some(key)
}

/// Checks the signature against the key the verifier trusts.
async fn check_trusted(
    trusted: &TrustedKey,
    env: &Envelope,
    pae: &[u8],
    c: &mut SignatureCheck,
) -> Result<()> {
    let (public, kms) = match trusted {
        TrustedKey::Pem(k) => (k.clone(), None),
        TrustedKey::Kms { client, arn } => {
            let (k, alg) = kms_public_key(client, arn).await?;
            (k, Some((client, arn, alg)))
        }
    };
    let trusted_id = public.keyid();
    c.trusted_keyid = Some(trusted_id.clone());
    let Some(s) = env.signatures.iter().find(|s| s.keyid == trusted_id) else {
        c.trusted = Some(false);
        c.problems.push(format!(
            "not signed by the trusted key {trusted_id}: signed by {} (another key signed this bundle: it may have been rewritten and re-signed)",
            shorten(&env.signatures[0].keyid)
        ));
        return Ok(());
    };
    let Ok(sig) = decode(&s.sig) else {
        c.trusted = Some(false);
        c.problems
            .push("the trusted key's signature is not base64".into());
        return Ok(());
    };
    let via_kms = kms.is_some();
    let ok = match kms {
        None => public.verifies(pae, &sig),
        Some((client, arn, alg)) => kms_verifies(client, arn, alg, pae, &sig).await?,
    };
    c.trusted = Some(ok);
    if !ok {
        c.problems.push(format!(
            "the signature does not verify with the trusted key {trusted_id}{}",
            if via_kms { " (KMS Verify)" } else { "" }
        ));
    }
    Ok(())
}

/// The envelope of a run of the case, if it has one that parses.
async fn envelope_of(store: &Store, case_id: &str, run_id: &str) -> Result<Option<Envelope>> {
    let key = format!("{case_id}/{run_id}/{SIG_NAME}");
    Ok(
        match read_sidecar(store, &key, SIG_NAME, SIG_FILE_LIMIT).await? {
            Ok(Some(b)) => Envelope::parse(&b).ok(),
            _ => None,
        },
    )
}

/// The previous run's signature the statement carries must be that run's.
async fn check_previous(store: &Store, m: &Manifest, c: &mut SignatureCheck) -> Result<()> {
    let Some(prev) = m.previous_manifest_sha256 else {
        if let Some(p) = &c.previous_signature {
            c.problems.push(format!(
                "the signature carries a previous run's signature (run {}), but the manifest starts the chain",
                shorten(&p.run_id)
            ));
        }
        return Ok(());
    };
    let (runs, _, _) = case_runs(store, &m.case_id).await?;
    let Some(run) = runs.iter().find(|r| r.manifest_sha256 == prev) else {
        // The chain check reports the missing run.
        return Ok(());
    };
    let env = envelope_of(store, &m.case_id, &run.run_id).await?;
    match (&c.previous_signature, env) {
        (Some(p), Some(env)) => {
            let found = p.run_id == run.run_id
                && env
                    .signatures
                    .iter()
                    .any(|s| s.sig == p.sig && s.keyid == p.keyid);
            if !found {
                c.problems.push(format!(
                    "the signature chain is broken: the statement carries a signature of run {} that is not run {}'s signature",
                    shorten(&p.run_id),
                    run.run_id
                ));
            }
        }
        (Some(p), None) => c.problems.push(format!(
            "the signature chain is broken: the statement carries run {}'s signature, but run {} has no readable manifest.sig.json",
            shorten(&p.run_id),
            run.run_id
        )),
        (None, Some(_)) => c.warnings.push(format!(
            "the previous run {} is signed, but this signature does not carry its signature (it was signed after this run)",
            run.run_id
        )),
        (None, None) => {}
    }
    Ok(())
}

/// Reports keys of the case's earlier runs that differ from this run's (`keyid`; `None` for
/// an unsigned run).
async fn key_history(
    store: &Store,
    m: &Manifest,
    keyid: Option<&str>,
    c: &mut SignatureCheck,
) -> Result<()> {
    let (runs, _, _) = case_runs(store, &m.case_id).await?;
    let mut earlier: Vec<(&str, String)> = Vec::new();
    for r in &runs {
        let Ok(other) = &r.manifest else { continue };
        if r.run_id == m.run_id || other.sealed_at > m.sealed_at {
            continue;
        }
        if let Some(env) = envelope_of(store, &m.case_id, &r.run_id).await? {
            earlier.push((r.run_id.as_str(), env.signatures[0].keyid.clone()));
        }
    }
    let keys: BTreeSet<&str> = earlier.iter().map(|(_, k)| k.as_str()).collect();
    match keyid {
        None if !keys.is_empty() => c.warnings.push(format!(
            "earlier runs of the case are signed (by {}), this one is not",
            keys.iter()
                .map(|k| shorten(k))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Some(k) => {
            for (run, other) in earlier.iter().filter(|(_, o)| o != k) {
                c.warnings.push(format!(
                    "key change: the case's earlier run {run} was signed by {}, this run by {k}",
                    shorten(other)
                ));
            }
        }
        None => {}
    }
    Ok(())
}
