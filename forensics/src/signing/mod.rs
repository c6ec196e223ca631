//! Signed seals: `manifest.sig.json` (a DSSE envelope around an in-toto Statement v1) and
//! `public-key.pem` beside `manifest.json` and `SHA256SUMS`.
//!
//! A seal's hashes prove that nothing changed since the seal, but anyone who can write the
//! bundle can rewrite items, manifest and sums consistently. The signature closes that: the
//! statement lists every item and `manifest.json` with their SHA-256, and is signed with a key
//! the rewriter does not hold (a KMS key, or a local private key kept elsewhere). Trust comes
//! from outside the bundle: `public-key.pem` only proves the bundle is self-consistent; the
//! verifier compares with a key it trusts ([`TrustedKey`]).
//!
//! [`sign_run`] signs a sealed run (right after the seal, or later with `irr evidence sign`).
//! It never overwrites: `public-key.pem` is written first, then `manifest.sig.json` (the
//! envelope is what makes a run signed); a run signed already by the same key is reported as
//! such, and a run signed by another key is refused (a second signature would need a second
//! object, and the first one is evidence). Each statement carries the signature of the run its
//! manifest chains to, so the signatures chain like the manifests do.
//!
//! [`check`] is the verifier's side, called by [`crate::verify`].

pub(crate) mod check;
pub mod envelope;
pub mod keys;

use bytes::Bytes;

use crate::bundle::{case_runs, SMALL_FILE_LIMIT};
use crate::hash::Sha256Digest;
use crate::manifest::{Manifest, MANIFEST_NAME, SUMS_NAME};
use crate::store::{Source, Store};
use crate::{Error, Result};

pub use check::{SignatureCheck, SignatureOptions, TrustedKey};
pub use envelope::{pae, Envelope, PreviousSignature, SealPredicate, Statement, Subject};
pub use keys::{KeyAlgorithm, KeyRef, PublicKey, Signer};

/// The signature of a sealed run: a DSSE envelope.
pub const SIG_NAME: &str = "manifest.sig.json";
/// The public key that made it, PEM.
pub const PUBLIC_KEY_NAME: &str = "public-key.pem";
/// Largest `manifest.sig.json` read: the statement of the largest manifest irr reads, in
/// base64, with room to spare. A larger one is refused before it is read.
pub const SIG_FILE_LIMIT: u64 = SMALL_FILE_LIMIT * 3 / 2;

/// A run's signature, as [`sign_run`] found or made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRun {
    /// The key's id (`sha256:HEX`).
    pub keyid: String,
    /// Where `manifest.sig.json` is.
    pub location: String,
    /// The previous run's signature the statement carries, if that run was signed.
    pub previous_signature: Option<PreviousSignature>,
    /// Things worth saying that did not stop the signature (the previous run's signature
    /// could not be read, ...).
    pub warnings: Vec<String>,
}

/// What [`sign_run`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignOutcome {
    /// Signed now.
    Signed(SignedRun),
    /// Signed before by the same key; nothing was written.
    AlreadySigned(SignedRun),
}

impl SignOutcome {
    /// The signature, either way.
    pub fn signed(&self) -> &SignedRun {
        match self {
            SignOutcome::Signed(s) | SignOutcome::AlreadySigned(s) => s,
        }
    }
}

/// Signs sealed run `run_id` of case `case_id` in `store` with `signer`: writes
/// `public-key.pem`, then `manifest.sig.json` (see the module docs). A run that is not sealed,
/// or that another key signed, is refused ([`Error::NotARun`], [`Error::SignedByAnotherKey`]).
pub async fn sign_run(
    store: &Store,
    case_id: &str,
    run_id: &str,
    signer: &Signer,
) -> Result<SignOutcome> {
    crate::location::check_component("case id", case_id)?;
    crate::location::check_component("run id", run_id)?;
    let key = |name: &str| format!("{case_id}/{run_id}/{name}");
    let not_sealed = |reason: &str| Error::NotARun {
        location: store.describe(&format!("{case_id}/{run_id}")),
        reason: reason.to_string(),
    };
    let manifest_bytes = store
        .read(&key(MANIFEST_NAME), None, SMALL_FILE_LIMIT)
        .await?
        .ok_or_else(|| {
            not_sealed("no manifest.json: the run is not sealed, so it cannot be signed")
        })?;
    if !store.exists(&key(SUMS_NAME)).await? {
        return Err(not_sealed(
            "no SHA256SUMS: the seal is incomplete (`irr resume` completes it); it is signed once sealed",
        ));
    }
    let manifest = Manifest::from_slice(&manifest_bytes).map_err(|e| Error::Unreadable {
        what: "manifest.json",
        location: store.describe(&key(MANIFEST_NAME)),
        reason: e.to_string(),
    })?;
    let manifest_sha256 = Sha256Digest::of(&manifest_bytes);
    let keyid = signer.public_key().keyid();
    let sig_location = store.describe(&key(SIG_NAME));
    if let Some(done) =
        existing_signature(store, &key(SIG_NAME), signer, &manifest, manifest_sha256).await?
    {
        return Ok(SignOutcome::AlreadySigned(done));
    }
    put_public_key(store, &key(PUBLIC_KEY_NAME), signer).await?;
    let (previous_signature, warnings) = previous_signature(store, &manifest).await?;
    let statement = Statement::for_seal(&manifest, manifest_sha256, previous_signature.clone());
    let payload = statement.to_bytes();
    let sig = signer.sign(&pae(envelope::PAYLOAD_TYPE, &payload)).await?;
    let env = Envelope::new(&payload, &keyid, &sig);
    match store
        .put(&key(SIG_NAME), Source::Bytes(Bytes::from(env.to_bytes())))
        .await
    {
        Ok(_) => {}
        // Another signer got there between our check and our write.
        Err(Error::Exists { .. }) => {
            if let Some(done) =
                existing_signature(store, &key(SIG_NAME), signer, &manifest, manifest_sha256)
                    .await?
            {
                return Ok(SignOutcome::AlreadySigned(done));
            }
        }
        Err(e) => return Err(e),
    }
    Ok(SignOutcome::Signed(SignedRun {
        keyid,
        location: sig_location,
        previous_signature,
        warnings,
    }))
}

/// When `manifest.sig.json` exists: `Some` if `signer` made it and it signs this manifest;
/// an error if another key did, or if it is damaged (it is never overwritten).
async fn existing_signature(
    store: &Store,
    key: &str,
    signer: &Signer,
    manifest: &Manifest,
    manifest_sha256: Sha256Digest,
) -> Result<Option<SignedRun>> {
    let Some(bytes) = store.read(key, None, SIG_FILE_LIMIT).await? else {
        return Ok(None);
    };
    let location = store.describe(key);
    let damaged = |reason: String| {
        Error::Unreadable {
        what: "manifest.sig.json",
        location: location.clone(),
        reason: format!("{reason}; it is evidence and is never overwritten: `irr evidence verify` shows what is wrong"),
    }
    };
    let env = Envelope::parse(&bytes).map_err(damaged)?;
    let keyid = signer.public_key().keyid();
    let Some(mine) = env.signatures.iter().find(|s| s.keyid == keyid) else {
        return Err(Error::SignedByAnotherKey {
            location,
            keyid: env.signatures[0].keyid.clone(),
            signer: keyid,
        });
    };
    let statement = Statement::parse(&env.payload_bytes().map_err(damaged)?).map_err(damaged)?;
    let differences = statement.differences(manifest, manifest_sha256);
    let sig = envelope::decode(&mine.sig).map_err(|e| damaged(e.to_string()))?;
    if !differences.is_empty()
        || !signer
            .public_key()
            .verifies(&env.pae().map_err(damaged)?, &sig)
    {
        return Err(damaged(format!(
            "it names this key but does not sign this manifest{}",
            differences
                .first()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        )));
    }
    Ok(Some(SignedRun {
        keyid,
        location,
        previous_signature: statement.predicate.previous_signature,
        warnings: Vec::new(),
    }))
}

/// Writes `public-key.pem`, or checks the one there is the signer's (a crash after it was
/// written leaves it there).
async fn put_public_key(store: &Store, key: &str, signer: &Signer) -> Result<()> {
    let pem = signer.public_key().to_pem();
    let check = |found: Vec<u8>| -> Result<()> {
        match PublicKey::from_pem(&found) {
            Ok(k) if k == *signer.public_key() => Ok(()),
            _ => Err(Error::SignedByAnotherKey {
                location: store.describe(key),
                keyid: PublicKey::from_pem(&found)
                    .map(|k| k.keyid())
                    .unwrap_or_else(|_| "unreadable".into()),
                signer: signer.public_key().keyid(),
            }),
        }
    };
    if let Some(found) = store.read(key, None, keys::KEY_FILE_LIMIT).await? {
        return check(found);
    }
    match store
        .put(key, Source::Bytes(Bytes::from(pem.into_bytes())))
        .await
    {
        Ok(_) => Ok(()),
        Err(Error::Exists { .. }) => match store.read(key, None, keys::KEY_FILE_LIMIT).await? {
            Some(found) => check(found),
            None => Ok(()),
        },
        Err(e) => Err(e),
    }
}

/// The signature of the run `manifest` chains to (`previous_manifest_sha256`), if that run
/// is signed; a warning when it has a signature that cannot be read.
async fn previous_signature(
    store: &Store,
    manifest: &Manifest,
) -> Result<(Option<PreviousSignature>, Vec<String>)> {
    let Some(prev) = manifest.previous_manifest_sha256 else {
        return Ok((None, Vec::new()));
    };
    let (runs, _, _) = case_runs(store, &manifest.case_id).await?;
    let Some(run) = runs.iter().find(|r| r.manifest_sha256 == prev) else {
        return Ok((None, Vec::new()));
    };
    let key = format!("{}/{}/{SIG_NAME}", manifest.case_id, run.run_id);
    let bytes = match store.read(&key, None, SIG_FILE_LIMIT).await {
        Ok(Some(b)) => b,
        Ok(None) => return Ok((None, Vec::new())),
        Err(e) if !e.is_unreadable() => {
            return Ok((
                None,
                vec![format!(
                    "the previous run {}'s signature cannot be read ({e}); this signature does not carry it",
                    run.run_id
                )],
            ))
        }
        Err(e) => return Err(e),
    };
    match Envelope::parse(&bytes) {
        Ok(env) => {
            let s = &env.signatures[0];
            Ok((
                Some(PreviousSignature {
                    run_id: run.run_id.clone(),
                    keyid: s.keyid.clone(),
                    sig: s.sig.clone(),
                }),
                Vec::new(),
            ))
        }
        Err(e) => Ok((
            None,
            vec![format!(
                "the previous run {}'s manifest.sig.json is damaged ({e}); this signature does not carry it",
                run.run_id
            )],
        )),
    }
}
