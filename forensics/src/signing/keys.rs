//! Keys: the public key a seal is verified with, and the signers (a local PEM private key or an
//! AWS KMS asymmetric key).
//!
//! The cryptography is aws-lc-rs (already in the build through rustls, maintained by AWS,
//! FIPS-validated lineage): ECDSA P-256 with SHA-256 (ASN.1 DER signatures, what KMS and
//! openssl produce) and RSA with SHA-256 (PKCS #1 v1.5, or PSS for a KMS key that offers only
//! PSS). PEM is read with rustls-pki-types' parser (also already in the build). A key's id is
//! `sha256:` and the hex SHA-256 of its DER SubjectPublicKeyInfo, which an auditor computes
//! with `openssl pkey -pubin -in public-key.pem -outform DER | sha256sum`.
//!
//! A private key never leaves this module: no `Debug` of a signer shows it, no error quotes
//! the key file's content, and the bytes read are zeroed once parsed.

use std::path::{Path, PathBuf};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, KeyPair, ParsedPublicKey, RsaKeyPair, ECDSA_P256_SHA256_ASN1,
    ECDSA_P256_SHA256_ASN1_SIGNING,
};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};
use base64::Engine as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, SubjectPublicKeyInfoDer};
use zeroize::Zeroize;

use crate::hash::Sha256Digest;
use crate::{Error, Result};

/// Largest key file read (a PEM key is a few KiB).
pub const KEY_FILE_LIMIT: u64 = 64 * 1024;

/// The signature algorithm of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// ECDSA on P-256 with SHA-256, DER signatures (KMS `ECDSA_SHA_256`).
    EcdsaP256Sha256,
    /// RSA with SHA-256 (KMS `RSASSA_PKCS1_V1_5_SHA_256`, or `RSASSA_PSS_SHA_256`).
    RsaSha256,
}

/// A public key (DER SubjectPublicKeyInfo) that seals are verified with.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    der: Vec<u8>,
    algorithm: KeyAlgorithm,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({:?}, {})", self.algorithm, self.keyid())
    }
}

impl PublicKey {
    /// A key from its DER SubjectPublicKeyInfo: ECDSA P-256 or RSA (2048 to 8192 bits).
    pub fn from_der(der: &[u8]) -> std::result::Result<PublicKey, String> {
        // A bare EC point is accepted by aws-lc-rs; the format stores the SPKI only.
        if der.first() != Some(&0x30) {
            return Err("not a DER SubjectPublicKeyInfo".into());
        }
        if ParsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, der).is_ok() {
            return Ok(PublicKey {
                der: der.to_vec(),
                algorithm: KeyAlgorithm::EcdsaP256Sha256,
            });
        }
        if ParsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, der).is_ok() {
            return Ok(PublicKey {
                der: der.to_vec(),
                algorithm: KeyAlgorithm::RsaSha256,
            });
        }
        Err("not an ECDSA P-256 or RSA (2048 to 8192 bits) public key".into())
    }

    /// A key from PEM (`-----BEGIN PUBLIC KEY-----`, as `openssl pkey -pubout` writes).
    pub fn from_pem(pem: &[u8]) -> std::result::Result<PublicKey, String> {
        let der = SubjectPublicKeyInfoDer::from_pem_slice(pem)
            .map_err(|_| "no PEM \"PUBLIC KEY\" block in it".to_string())?;
        PublicKey::from_der(der.as_ref())
    }

    /// A key from a PEM file, at most [`KEY_FILE_LIMIT`] bytes.
    pub fn from_pem_file(path: &Path) -> Result<PublicKey> {
        let bytes = read_key_file(path)?;
        PublicKey::from_pem(&bytes).map_err(|reason| Error::Key {
            what: path.display().to_string(),
            reason,
        })
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// `sha256:HEX` of the DER: the envelope's `keyid`.
    pub fn keyid(&self) -> String {
        format!("sha256:{}", Sha256Digest::of(&self.der).to_hex())
    }

    /// The key as PEM (`public-key.pem`), 64 characters a line, final newline.
    pub fn to_pem(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(&self.der);
        let mut out = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            out.push('\n');
        }
        out.push_str("-----END PUBLIC KEY-----\n");
        out
    }

    /// `true` when `sig` is this key's signature of `message` (ECDSA: DER; RSA: PKCS #1 v1.5
    /// or PSS, both with SHA-256).
    pub fn verifies(&self, message: &[u8], sig: &[u8]) -> bool {
        let algs: &[&'static dyn signature::VerificationAlgorithm] = match self.algorithm {
            KeyAlgorithm::EcdsaP256Sha256 => &[&ECDSA_P256_SHA256_ASN1],
            KeyAlgorithm::RsaSha256 => &[
                &signature::RSA_PKCS1_2048_8192_SHA256,
                &signature::RSA_PSS_2048_8192_SHA256,
            ],
        };
        algs.iter().any(|alg| {
            ParsedPublicKey::new(*alg, &self.der)
                .map(|k| k.verify_sig(message, sig).is_ok())
                .unwrap_or(false)
        })
    }
}

/// What a signing key was given as (`--signing-key`, `evidence.signing_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    /// An AWS KMS key: its ARN (`arn:PARTITION:kms:REGION:ACCOUNT:key/ID`).
    Kms {
        /// The ARN as given.
        arn: String,
        /// Its region.
        region: String,
        /// Its account.
        account: String,
    },
    /// A local PEM file.
    File(PathBuf),
}

impl KeyRef {
    /// Reads a key reference: anything that starts with `arn:` must be a KMS key ARN (an
    /// alias cannot be scoped in an IAM policy, so it is refused); anything else is a file
    /// path. Never echoes the value (it may be a key pasted by mistake).
    pub fn parse(s: &str) -> std::result::Result<KeyRef, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("the signing key is empty: give a KMS key ARN or a PEM file path".into());
        }
        if s.contains("-----BEGIN") || s.contains('\n') {
            return Err(
                "the signing key must be a KMS key ARN or the path of a PEM file, not the key itself"
                    .into(),
            );
        }
        if !s.starts_with("arn:") {
            return Ok(KeyRef::File(PathBuf::from(s)));
        }
        let parts: Vec<&str> = s.splitn(6, ':').collect();
        let bad = |why: &str| {
            Err(format!(
                "{why}: a KMS key ARN is arn:aws:kms:REGION:ACCOUNT:key/KEY_ID"
            ))
        };
        if parts.len() != 6 || !parts[1].starts_with("aws") || parts[2] != "kms" {
            return bad("the signing key starts with \"arn:\" but is not a KMS ARN");
        }
        let (region, account, resource) = (parts[3], parts[4], parts[5]);
        if region.is_empty()
            || !region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return bad("the KMS key ARN has no valid region");
        }
        if account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) {
            return bad("the KMS key ARN's account is not 12 digits");
        }
        if resource.starts_with("alias/") {
            return bad(
                "the KMS ARN names an alias, which an IAM policy cannot scope; use the key's ARN",
            );
        }
        let Some(id) = resource.strip_prefix("key/") else {
            return bad("the KMS ARN names no key");
        };
        if id.is_empty()
            || id.len() > 128
            || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return bad("the KMS key id is not a key id");
        }
        Ok(KeyRef::Kms {
            arn: s.to_string(),
            region: region.to_string(),
            account: account.to_string(),
        })
    }
}

/// Reads a key file whole, refusing one larger than [`KEY_FILE_LIMIT`] or not a regular file.
fn read_key_file(path: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::Key {
            what: path.display().to_string(),
            reason: "not a regular file".into(),
        });
    }
    if meta.len() > KEY_FILE_LIMIT {
        return Err(Error::Key {
            what: path.display().to_string(),
            reason: format!(
                "{} bytes; a PEM key is at most {KEY_FILE_LIMIT}",
                meta.len()
            ),
        });
    }
    let mut bytes = Vec::new();
    use std::io::Read as _;
    std::fs::File::open(path)
        .and_then(|f| f.take(KEY_FILE_LIMIT).read_to_end(&mut bytes))
        .map_err(|e| Error::io(path, e))?;
    Ok(bytes)
}

enum LocalKey {
    Ecdsa(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

enum SignerKind {
    Local(LocalKey),
    Kms {
        client: aws_sdk_kms::Client,
        arn: String,
        algorithm: SigningAlgorithmSpec,
    },
}

/// A key that signs seals: a local private key or a KMS key. Its `Debug` names the key,
/// never its secret.
pub struct Signer {
    kind: SignerKind,
    public: PublicKey,
    name: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({}, {})", self.name, self.public.keyid())
    }
}

impl Signer {
    /// A signer from a PEM private key: PKCS #8 (`PRIVATE KEY`) ECDSA P-256 or RSA, SEC1 (`EC
    /// PRIVATE KEY`) P-256, or PKCS #1 (`RSA PRIVATE KEY`). `name` names it in messages.
    pub fn from_pem(pem: &[u8], name: &str) -> Result<Signer> {
        let bad = |reason: &str| Error::Key {
            what: name.to_string(),
            reason: reason.to_string(),
        };
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|_| {
            bad("no PEM private key in it (PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY); an encrypted key must be decrypted first")
        })?;
        let local = match &der {
            PrivateKeyDer::Pkcs8(k) => {
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, k.secret_pkcs8_der())
                    .map(LocalKey::Ecdsa)
                    .or_else(|_| RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()).map(LocalKey::Rsa))
            }
            PrivateKeyDer::Sec1(k) => EcdsaKeyPair::from_private_key_der(
                &ECDSA_P256_SHA256_ASN1_SIGNING,
                k.secret_sec1_der(),
            )
            .map(LocalKey::Ecdsa),
            PrivateKeyDer::Pkcs1(k) => {
                RsaKeyPair::from_der(k.secret_pkcs1_der()).map(LocalKey::Rsa)
            }
            _ => return Err(bad("an unsupported kind of private key")),
        }
        .map_err(|_| bad("not an ECDSA P-256 or RSA (2048 bits or more) private key"))?;
        let public_der = match &local {
            LocalKey::Ecdsa(k) => k.public_key().as_der().map(|d| d.as_ref().to_vec()),
            LocalKey::Rsa(k) => k.public_key().as_der().map(|d| d.as_ref().to_vec()),
        }
        .map_err(|_| bad("its public key cannot be encoded"))?;
        let public = PublicKey::from_der(&public_der).map_err(|e| bad(&e))?;
        Ok(Signer {
            kind: SignerKind::Local(local),
            public,
            name: name.to_string(),
        })
    }

    /// A signer from a PEM private key file (read whole, at most [`KEY_FILE_LIMIT`] bytes,
    /// its bytes zeroed once parsed).
    pub fn from_pem_file(path: &Path) -> Result<Signer> {
        let mut bytes = read_key_file(path)?;
        let signer = Signer::from_pem(&bytes, &path.display().to_string());
        bytes.zeroize();
        signer
    }

    /// A signer for the KMS key `arn` (an asymmetric `SIGN_VERIFY` key: ECC_NIST_P256, or RSA
    /// with a SHA-256 algorithm). Its public key and algorithm come from `GetPublicKey`.
    pub async fn kms(client: aws_sdk_kms::Client, arn: &str) -> Result<Signer> {
        let (public, algorithm) = kms_public_key(&client, arn).await?;
        Ok(Signer {
            kind: SignerKind::Kms {
                client,
                arn: arn.to_string(),
                algorithm,
            },
            public,
            name: format!("KMS key {arn}"),
        })
    }

    /// The public key (stored beside the signature as `public-key.pem`).
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The key, for messages: its file or its ARN.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Signs `message` (the PAE). KMS signs its SHA-256 (`MessageType=DIGEST`), which is the
    /// same signature as over the message itself.
    pub async fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        let sig = match &self.kind {
            SignerKind::Local(LocalKey::Ecdsa(k)) => k
                .sign(&SystemRandom::new(), message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| self.failed("the ECDSA signature could not be made"))?,
            SignerKind::Local(LocalKey::Rsa(k)) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    message,
                    &mut sig,
                )
                .map_err(|_| self.failed("the RSA signature could not be made"))?;
                sig
            }
            SignerKind::Kms {
                client,
                arn,
                algorithm,
            } => {
                let digest = Sha256Digest::of(message);
                let sig = kms_sign(client, arn, algorithm, MessageType::Digest, &digest.0)
                    .await?
                    .ok_or_else(|| self.failed("KMS Sign answered without a signature"))?;
                if !self.public.verifies(message, &sig)
                    && self.public.verifies(&digest.0, &sig)
                    && message.len() <= KMS_RAW_LIMIT
                {
                    // The endpoint ignored MessageType=DIGEST and hashed the digest again
                    // (moto does; docs/emulator-notes.md). The message fits KMS's RAW limit,
                    // so it is signed as it is: the same signature AWS KMS makes with DIGEST.
                    kms_sign(client, arn, algorithm, MessageType::Raw, message)
                        .await?
                        .ok_or_else(|| self.failed("KMS Sign answered without a signature"))?
                } else {
                    sig
                }
            }
        };
        // A signature that does not verify is never stored.
        if !self.public.verifies(message, &sig) {
            return Err(self.failed("the signature made does not verify with its public key"));
        }
        Ok(sig)
    }

    fn failed(&self, reason: &str) -> Error {
        Error::Key {
            what: self.name.clone(),
            reason: reason.to_string(),
        }
    }
}

/// The largest message KMS signs or verifies with `MessageType=RAW`.
const KMS_RAW_LIMIT: usize = 4096;

/// One KMS `Sign` call.
async fn kms_sign(
    client: &aws_sdk_kms::Client,
    arn: &str,
    algorithm: &SigningAlgorithmSpec,
    message_type: MessageType,
    message: &[u8],
) -> Result<Option<Vec<u8>>> {
    let out = client
        .sign()
        .key_id(arn)
        .message(Blob::new(message.to_vec()))
        .message_type(message_type)
        .signing_algorithm(algorithm.clone())
        .send()
        .await
        .map_err(|e| Error::Kms(Box::new(crate::awserr::describe("kms", "Sign", &e))))?;
    Ok(out.signature.map(Blob::into_inner))
}

/// A KMS key's public key and the SHA-256 algorithm to sign with, from `GetPublicKey`.
pub(crate) async fn kms_public_key(
    client: &aws_sdk_kms::Client,
    arn: &str,
) -> Result<(PublicKey, SigningAlgorithmSpec)> {
    let bad = |reason: String| Error::Key {
        what: format!("KMS key {arn}"),
        reason,
    };
    let out = client
        .get_public_key()
        .key_id(arn)
        .send()
        .await
        .map_err(|e| Error::Kms(Box::new(crate::awserr::describe("kms", "GetPublicKey", &e))))?;
    if let Some(usage) = &out.key_usage {
        if usage.as_str() != "SIGN_VERIFY" {
            return Err(bad(format!(
                "its key usage is {}, not SIGN_VERIFY",
                usage.as_str()
            )));
        }
    }
    let der = out
        .public_key
        .map(Blob::into_inner)
        .ok_or_else(|| bad("GetPublicKey answered without a public key".into()))?;
    let public = PublicKey::from_der(&der).map_err(|e| bad(format!("its public key is {e}")))?;
    let offered = out.signing_algorithms.unwrap_or_default();
    let wanted: &[SigningAlgorithmSpec] = match public.algorithm() {
        KeyAlgorithm::EcdsaP256Sha256 => &[SigningAlgorithmSpec::EcdsaSha256],
        KeyAlgorithm::RsaSha256 => &[
            SigningAlgorithmSpec::RsassaPkcs1V15Sha256,
            SigningAlgorithmSpec::RsassaPssSha256,
        ],
    };
    let algorithm = wanted
        .iter()
        .find(|w| offered.is_empty() || offered.contains(w))
        .cloned()
        .ok_or_else(|| {
            bad(format!(
                "it offers no SHA-256 signing algorithm irr uses (it offers {})",
                offered
                    .iter()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    Ok((public, algorithm))
}

/// Asks KMS whether `sig` is key `arn`'s signature of `message` (`Verify`,
/// `MessageType=DIGEST` over its SHA-256; when KMS says no and the message fits KMS's RAW
/// limit, once more with the message itself, for an endpoint that ignores DIGEST as moto
/// does: AWS KMS answers the same either way).
pub(crate) async fn kms_verifies(
    client: &aws_sdk_kms::Client,
    arn: &str,
    algorithm: SigningAlgorithmSpec,
    message: &[u8],
    sig: &[u8],
) -> Result<bool> {
    let digest = Sha256Digest::of(message);
    let ok = kms_verify(client, arn, &algorithm, MessageType::Digest, &digest.0, sig).await?;
    if ok || message.len() > KMS_RAW_LIMIT {
        return Ok(ok);
    }
    kms_verify(client, arn, &algorithm, MessageType::Raw, message, sig).await
}

/// One KMS `Verify` call; an invalid signature is `false`.
async fn kms_verify(
    client: &aws_sdk_kms::Client,
    arn: &str,
    algorithm: &SigningAlgorithmSpec,
    message_type: MessageType,
    message: &[u8],
    sig: &[u8],
) -> Result<bool> {
    match client
        .verify()
        .key_id(arn)
        .message(Blob::new(message.to_vec()))
        .message_type(message_type)
        .signature(Blob::new(sig.to_vec()))
        .signing_algorithm(algorithm.clone())
        .send()
        .await
    {
        Ok(out) => Ok(out.signature_valid),
        // KMS answers an invalid signature with an error, not `SignatureValid: false`.
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_kms_invalid_signature_exception()) =>
        {
            Ok(false)
        }
        Err(e) => Err(Error::Kms(Box::new(crate::awserr::describe(
            "kms", "Verify", &e,
        )))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A P-256 key in PKCS #8 PEM, made for this test.
    pub(crate) fn test_key_pem() -> String {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &SystemRandom::new())
                .unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(doc.as_ref());
        format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n")
    }

    #[tokio::test]
    async fn a_local_key_signs_and_its_public_key_verifies() {
        let signer = Signer::from_pem(test_key_pem().as_bytes(), "test.pem").unwrap();
        let sig = signer.sign(b"message").await.unwrap();
        let public = PublicKey::from_pem(signer.public_key().to_pem().as_bytes()).unwrap();
        assert_eq!(public, *signer.public_key());
        assert!(public.verifies(b"message", &sig));
        assert!(
            !public.verifies(b"messagE", &sig),
            "a tampered message fails"
        );
        let other = Signer::from_pem(test_key_pem().as_bytes(), "other.pem").unwrap();
        assert!(!other.public_key().verifies(b"message", &sig));
        assert_ne!(other.public_key().keyid(), public.keyid());
        assert!(public.keyid().starts_with("sha256:") && public.keyid().len() == 71);
    }

    #[test]
    fn a_bad_key_is_refused_without_quoting_it() {
        let e = Signer::from_pem(
            b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n",
            "k.pem",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("k.pem") && !e.contains("c2VjcmV0"), "{e}");
        let e = Signer::from_pem(b"hello", "k.pem").unwrap_err().to_string();
        assert!(e.contains("no PEM private key"), "{e}");
        let debug = format!(
            "{:?}",
            Signer::from_pem(test_key_pem().as_bytes(), "t.pem").unwrap()
        );
        assert!(debug.starts_with("Signer(t.pem, sha256:"), "{debug}");
    }

    #[test]
    fn key_references_are_checked() {
        assert_eq!(
            KeyRef::parse("keys/seal.pem").unwrap(),
            KeyRef::File("keys/seal.pem".into())
        );
        let arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        assert!(
            matches!(KeyRef::parse(arn).unwrap(), KeyRef::Kms { region, .. } if region == "us-east-1")
        );
        for (bad, why) in [
            ("arn:aws:kms:us-east-1:111122223333:alias/seal", "alias"),
            ("arn:aws:kms:us-east-1:1111:key/x", "12 digits"),
            ("arn:aws:s3:::bucket", "not a KMS ARN"),
            ("arn:aws:kms:us-east-1:111122223333:key/", "not a key id"),
            ("", "empty"),
            ("-----BEGIN PRIVATE KEY-----", "not the key itself"),
        ] {
            let e = KeyRef::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
