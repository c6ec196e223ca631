//! The signed seal's wire format: a DSSE envelope around an in-toto Statement v1.
//!
//! DSSE (<https://github.com/secure-systems-lab/dsse>) signs the pre-authentication encoding
//! of the payload, never the JSON of the envelope, so the payload bytes are signed exactly as
//! they are stored (base64 in `payload`) and no canonical JSON is needed:
//!
//! ```text
//! PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body
//! ```
//!
//! with `LEN` the decimal byte length. The statement names every item of the manifest and
//! `manifest.json` itself as subjects; the predicate ([`SealPredicate`]) ties it to the case,
//! the run, the playbook and the previous run's signature.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::hash::Sha256Digest;
use crate::manifest::{Manifest, PlaybookRef, Timestamp, MANIFEST_NAME};

/// `payloadType` of the envelope: an in-toto statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// `_type` of the statement.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// `predicateType` of an irr evidence seal.
pub const PREDICATE_TYPE: &str = "https://irr.dev/evidence-seal/v1";

/// DSSE's pre-authentication encoding of `body` of type `payload_type`: the bytes that are
/// signed.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload_type.len() + body.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(body);
    out
}

/// A DSSE envelope (`manifest.sig.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Always [`PAYLOAD_TYPE`] for irr.
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// The statement's JSON bytes, base64 (standard alphabet, padded).
    pub payload: String,
    /// The signatures; irr writes one.
    pub signatures: Vec<EnvelopeSignature>,
}

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// The signing key's fingerprint: `sha256:` and the hex SHA-256 of its DER
    /// SubjectPublicKeyInfo (the bytes of `public-key.pem`).
    #[serde(default)]
    pub keyid: String,
    /// The signature over the PAE, base64: ASN.1 DER for ECDSA, the raw block for RSA.
    pub sig: String,
}

impl Envelope {
    /// An envelope for `payload` (the statement's bytes) with one signature.
    pub fn new(payload: &[u8], keyid: &str, sig: &[u8]) -> Envelope {
        let b64 = base64::engine::general_purpose::STANDARD;
        Envelope {
            payload_type: PAYLOAD_TYPE.to_string(),
            payload: b64.encode(payload),
            signatures: vec![EnvelopeSignature {
                keyid: keyid.to_string(),
                sig: b64.encode(sig),
            }],
        }
    }

    /// The envelope as stored: pretty-printed JSON with a final newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("an envelope always serialises");
        out.push(b'\n');
        out
    }

    /// Parses `manifest.sig.json`, checking its shape: the payload type, at least one
    /// signature, base64 that decodes. Errors say what is wrong, in one line.
    pub fn parse(bytes: &[u8]) -> Result<Envelope, String> {
        let env: Envelope =
            serde_json::from_slice(bytes).map_err(|e| format!("it is not a DSSE envelope: {e}"))?;
        if env.payload_type != PAYLOAD_TYPE {
            return Err(format!(
                "its payloadType is {:?}, expected {PAYLOAD_TYPE:?}",
                shorten(&env.payload_type)
            ));
        }
        if env.signatures.is_empty() {
            return Err("it holds no signature".into());
        }
        env.payload_bytes()?;
        for (i, s) in env.signatures.iter().enumerate() {
            decode(&s.sig).map_err(|e| format!("signature {i} is not base64: {e}"))?;
        }
        Ok(env)
    }

    /// The payload's bytes (base64-decoded).
    pub fn payload_bytes(&self) -> Result<Vec<u8>, String> {
        decode(&self.payload).map_err(|e| format!("its payload is not base64: {e}"))
    }

    /// The bytes that were signed: the PAE of the payload.
    pub fn pae(&self) -> Result<Vec<u8>, String> {
        Ok(pae(&self.payload_type, &self.payload_bytes()?))
    }
}

/// Decodes standard base64 (padded, or not).
pub(crate) fn decode(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    b64.decode(s)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(s))
}

/// At most 80 characters of a value read from a hostile file, for a message.
pub(crate) fn shorten(s: &str) -> String {
    if s.chars().count() <= 80 {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(80).collect::<String>())
    }
}

/// One subject of the statement: an item (or `manifest.json`) and its digest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Subject {
    /// Path relative to the run.
    pub name: String,
    /// `{"sha256": HEX}`.
    pub digest: BTreeMap<String, String>,
}

impl Subject {
    fn new(name: &str, sha256: Sha256Digest) -> Subject {
        Subject {
            name: name.to_string(),
            digest: BTreeMap::from([("sha256".to_string(), sha256.to_hex())]),
        }
    }
}

/// The previous run's signature, carried in this run's predicate: the chain of signatures, as
/// CloudTrail chains each digest file to the previous one's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousSignature {
    /// The run that `previous_manifest_sha256` points to.
    pub run_id: String,
    /// The key that signed it.
    pub keyid: String,
    /// Its signature, base64, as in its envelope.
    pub sig: String,
}

/// The predicate of an irr evidence seal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealPredicate {
    /// The case.
    pub case_id: String,
    /// The run.
    pub run_id: String,
    /// The playbook that ran (its hash is the manifest's).
    pub playbook: PlaybookRef,
    /// When the run was sealed (the manifest's `sealed_at`).
    pub sealed_at: Timestamp,
    /// The manifest's `previous_manifest_sha256`.
    pub previous_manifest_sha256: Option<Sha256Digest>,
    /// The signature of the run `previous_manifest_sha256` points to, when it was signed.
    pub previous_signature: Option<PreviousSignature>,
}

/// An in-toto Statement v1 of an irr seal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    /// [`STATEMENT_TYPE`].
    #[serde(rename = "_type")]
    pub statement_type: String,
    /// Every item of the manifest, then `manifest.json`.
    pub subject: Vec<Subject>,
    /// [`PREDICATE_TYPE`].
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// What is sealed.
    pub predicate: SealPredicate,
}

impl Statement {
    /// The statement of a sealed manifest whose bytes hash to `manifest_sha256`.
    pub fn for_seal(
        manifest: &Manifest,
        manifest_sha256: Sha256Digest,
        previous_signature: Option<PreviousSignature>,
    ) -> Statement {
        let mut subject: Vec<Subject> = manifest
            .items
            .iter()
            .map(|i| Subject::new(&i.path, i.sha256))
            .collect();
        subject.push(Subject::new(MANIFEST_NAME, manifest_sha256));
        Statement {
            statement_type: STATEMENT_TYPE.to_string(),
            subject,
            predicate_type: PREDICATE_TYPE.to_string(),
            predicate: SealPredicate {
                case_id: manifest.case_id.clone(),
                run_id: manifest.run_id.clone(),
                playbook: manifest.playbook.clone(),
                sealed_at: manifest.sealed_at,
                previous_manifest_sha256: manifest.previous_manifest_sha256,
                previous_signature,
            },
        }
    }

    /// The statement's bytes: compact JSON (what is base64'd into the envelope and signed).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a statement always serialises")
    }

    /// Parses a payload, checking `_type` and `predicateType`.
    pub fn parse(bytes: &[u8]) -> Result<Statement, String> {
        let st: Statement = serde_json::from_slice(bytes)
            .map_err(|e| format!("its payload is not an irr seal statement: {e}"))?;
        if st.statement_type != STATEMENT_TYPE {
            return Err(format!(
                "its statement _type is {:?}, expected {STATEMENT_TYPE:?}",
                shorten(&st.statement_type)
            ));
        }
        if st.predicate_type != PREDICATE_TYPE {
            return Err(format!(
                "its predicateType is {:?}, expected {PREDICATE_TYPE:?}",
                shorten(&st.predicate_type)
            ));
        }
        Ok(st)
    }

    /// What differs between the statement's subjects and what `manifest` (hashing to
    /// `manifest_sha256`) seals, and between its predicate and the manifest: one line each.
    pub fn differences(&self, manifest: &Manifest, manifest_sha256: Sha256Digest) -> Vec<String> {
        let expected = Statement::for_seal(manifest, manifest_sha256, None);
        let mut out = Vec::new();
        let want: BTreeMap<&str, &BTreeMap<String, String>> = expected
            .subject
            .iter()
            .map(|s| (s.name.as_str(), &s.digest))
            .collect();
        let mut seen = std::collections::HashSet::new();
        for s in &self.subject {
            if !seen.insert(s.name.as_str()) {
                out.push(format!("subject {} is listed twice", shorten(&s.name)));
                continue;
            }
            match want.get(s.name.as_str()) {
                None => out.push(format!(
                    "subject {} is signed but is not in the manifest",
                    shorten(&s.name)
                )),
                Some(d) if *d != &s.digest => out.push(format!(
                    "{}: the signed sha256 is {}, the manifest's is {}",
                    s.name,
                    shorten(s.digest.get("sha256").map(String::as_str).unwrap_or("none")),
                    d.get("sha256").map(String::as_str).unwrap_or("none")
                )),
                Some(_) => {}
            }
        }
        for name in want.keys().filter(|n| !seen.contains(*n)) {
            out.push(format!("{name} is in the manifest but not signed"));
        }
        let (p, e) = (&self.predicate, &expected.predicate);
        if p.case_id != e.case_id || p.run_id != e.run_id {
            out.push(format!(
                "the signature names case {:?} run {:?}, the manifest case {:?} run {:?}",
                shorten(&p.case_id),
                shorten(&p.run_id),
                e.case_id,
                e.run_id
            ));
        }
        if p.playbook != e.playbook {
            out.push("the signed playbook (name, version or sha256) is not the manifest's".into());
        }
        if p.sealed_at != e.sealed_at {
            out.push("the signed sealed_at is not the manifest's".into());
        }
        if p.previous_manifest_sha256 != e.previous_manifest_sha256 {
            out.push("the signed previous_manifest_sha256 is not the manifest's".into());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The PAE of the DSSE specification's own example (protocol.md, "Test vector").
    #[test]
    fn pae_matches_the_dsse_test_vector() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
        // Lengths are in bytes, not characters.
        assert_eq!(
            pae("t", "é".as_bytes()),
            "DSSEv1 1 t 2 é".as_bytes().to_vec()
        );
    }

    #[test]
    fn a_malformed_envelope_says_what_is_wrong() {
        let e = Envelope::parse(b"[1,2]").unwrap_err();
        assert!(e.starts_with("it is not a DSSE envelope"), "{e}");
        let e = Envelope::parse(br#"{"payloadType":"text/plain","payload":"","signatures":[]}"#)
            .unwrap_err();
        assert!(e.contains("payloadType is \"text/plain\""), "{e}");
        let e = Envelope::parse(
            br#"{"payloadType":"application/vnd.in-toto+json","payload":"","signatures":[]}"#,
        )
        .unwrap_err();
        assert_eq!(e, "it holds no signature");
        let e = Envelope::parse(
            br#"{"payloadType":"application/vnd.in-toto+json","payload":"@@","signatures":[{"keyid":"k","sig":"AA=="}]}"#,
        )
        .unwrap_err();
        assert!(e.starts_with("its payload is not base64"), "{e}");
        let long = "x".repeat(10_000);
        let text =
            format!(r#"{{"payloadType":"{long}","payload":"","signatures":[{{"sig":""}}]}}"#);
        let e = Envelope::parse(text.as_bytes()).unwrap_err();
        assert!(e.len() < 200, "a hostile value is not echoed whole: {e}");
    }

    #[test]
    fn an_envelope_round_trips() {
        let env = Envelope::new(b"{\"a\":1}", "sha256:00", b"\x01\x02");
        let back = Envelope::parse(&env.to_bytes()).unwrap();
        assert_eq!(back, env);
        assert_eq!(back.payload_bytes().unwrap(), b"{\"a\":1}");
        assert_eq!(
            back.pae().unwrap(),
            pae(PAYLOAD_TYPE, b"{\"a\":1}"),
            "the PAE is of the decoded payload"
        );
    }
}
