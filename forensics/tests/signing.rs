//! Signed seals on a local store: sign, verify with the stored and a trusted key, every way a
//! signature can be wrong, the chain of signatures, and a hostile `manifest.sig.json`.

use std::path::PathBuf;

use base64::Engine as _;
use irr_forensics::signing::{envelope, Envelope, Statement};
use irr_forensics::{
    sign_run, Bundle, Collector, Error, EvidenceLocation, ItemStatus, PlaybookRef, PublicKey,
    RunInfo, S3Settings, SignOutcome, SignatureOptions, Signer, Store, Timestamp, TrustedKey,
    VerifyReport, MANIFEST_NAME, PUBLIC_KEY_NAME, SIG_NAME, SUMS_NAME,
};

struct Case {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

const CASE: &str = "case-s";

/// A fresh P-256 key, PKCS #8 PEM.
fn key() -> Signer {
    use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
    let doc = EcdsaKeyPair::generate_pkcs8(
        &ECDSA_P256_SHA256_ASN1_SIGNING,
        &aws_lc_rs::rand::SystemRandom::new(),
    )
    .unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(doc.as_ref());
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n");
    Signer::from_pem(pem.as_bytes(), "test key").unwrap()
}

impl Case {
    fn new() -> Case {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("evidence");
        Case { _dir: dir, root }
    }

    fn store(&self) -> Store {
        Store::open(
            &EvidenceLocation::Local(self.root.clone()),
            None,
            S3Settings::default(),
        )
        .unwrap()
    }

    fn file(&self, run: &str, name: &str) -> PathBuf {
        self.root.join(CASE).join(run).join(name)
    }

    async fn seal(&self, run: &str) {
        let info = RunInfo {
            playbook: PlaybookRef {
                name: "p".into(),
                version: "1".into(),
                sha256: "0".repeat(64),
            },
            collector: Collector::this_host("irr test", None),
            started_at: Timestamp::now(),
        };
        let b = Bundle::new(self.store(), CASE, run, info).unwrap();
        b.capture_json("s1", "a.json", &serde_json::json!({"a": run}), Some("test"))
            .await
            .unwrap();
        b.seal().await.unwrap();
    }

    async fn verify(&self, run: &str, trusted: Option<&PublicKey>, require: bool) -> VerifyReport {
        let opts = SignatureOptions {
            trusted_key: trusted.map(|k| TrustedKey::Pem(k.clone())),
            require_signature: require,
        };
        irr_forensics::verify_run_with(&self.store(), CASE, run, &opts)
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn a_signed_seal_verifies_with_the_trusted_key_and_a_tampered_one_does_not() {
    let case = Case::new();
    let signer = key();
    case.seal("r1").await;
    let out = sign_run(&case.store(), CASE, "r1", &signer).await.unwrap();
    assert!(matches!(out, SignOutcome::Signed(_)), "{out:?}");
    assert!(case.file("r1", SIG_NAME).is_file() && case.file("r1", PUBLIC_KEY_NAME).is_file());
    // The envelope names every item and manifest.json.
    let env = Envelope::parse(&std::fs::read(case.file("r1", SIG_NAME)).unwrap()).unwrap();
    let st = Statement::parse(&env.payload_bytes().unwrap()).unwrap();
    let names: Vec<&str> = st.subject.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["artifacts/s1/a.json", MANIFEST_NAME]);
    assert_eq!(env.signatures[0].keyid, signer.public_key().keyid());

    let report = case.verify("r1", Some(signer.public_key()), true).await;
    assert!(report.is_ok(), "{report}");
    assert!(report.signature.signed && report.signature.trusted == Some(true));
    assert!(
        report.items_with(ItemStatus::Unlisted).next().is_none(),
        "{report}"
    );
    assert!(report.to_string().contains("signature: ok"), "{report}");

    // Signing again with the same key writes nothing; another key is refused.
    let again = sign_run(&case.store(), CASE, "r1", &signer).await.unwrap();
    assert!(matches!(again, SignOutcome::AlreadySigned(_)), "{again:?}");
    let e = sign_run(&case.store(), CASE, "r1", &key())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::SignedByAnotherKey { .. }), "{e}");

    // Another trusted key: the signature is not the trusted one's.
    let report = case.verify("r1", Some(key().public_key()), false).await;
    assert!(!report.is_ok());
    assert_eq!(report.signature.trusted, Some(false));
    assert!(
        report.signature.problems[0].contains("not signed by the trusted key"),
        "{report}"
    );

    // A tampered payload (one subject's hash changed) fails with the stored key.
    let mut forged = env.clone();
    let text = String::from_utf8(env.payload_bytes().unwrap()).unwrap();
    let st_hash = &st.subject[0].digest["sha256"];
    forged.payload = base64::engine::general_purpose::STANDARD
        .encode(text.replace(st_hash.as_str(), &"0".repeat(64)));
    std::fs::write(case.file("r1", SIG_NAME), forged.to_bytes()).unwrap();
    let report = case.verify("r1", None, false).await;
    assert!(!report.is_ok());
    let problems = report.signature.problems.join("\n");
    assert!(
        problems.contains("does not verify with public-key.pem"),
        "{problems}"
    );
    assert!(problems.contains("the signed sha256 is 0000"), "{problems}");
}

#[tokio::test]
async fn a_consistent_rewrite_re_signed_by_a_forger_fails_against_the_trusted_key() {
    let case = Case::new();
    let owner = key();
    case.seal("r1").await;
    sign_run(&case.store(), CASE, "r1", &owner).await.unwrap();
    // The forger rewrites the item, the manifest and the sums, and re-signs with a key of their
    // own: everything is consistent, so only the trusted key catches it.
    let item = case.file("r1", "artifacts/s1/a.json");
    let forged_item = b"{\"a\": \"forged\"}\n";
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(case.file("r1", MANIFEST_NAME)).unwrap()).unwrap();
    let new_hash = irr_forensics::Sha256Digest::of(forged_item);
    manifest["items"][0]["sha256"] = new_hash.to_hex().into();
    manifest["items"][0]["size"] = forged_item.len().into();
    let m = irr_forensics::Manifest::from_slice(&serde_json::to_vec(&manifest).unwrap()).unwrap();
    let m_bytes = m.to_canonical_bytes();
    let m_hash = irr_forensics::Sha256Digest::of(&m_bytes);
    for name in [SIG_NAME, PUBLIC_KEY_NAME, MANIFEST_NAME, SUMS_NAME] {
        std::fs::remove_file(case.file("r1", name)).unwrap();
    }
    std::fs::remove_file(&item).unwrap();
    std::fs::write(&item, forged_item).unwrap();
    std::fs::write(case.file("r1", MANIFEST_NAME), &m_bytes).unwrap();
    std::fs::write(
        case.file("r1", SUMS_NAME),
        irr_forensics::Sha256Sums::for_manifest(&m, m_hash).to_bytes(),
    )
    .unwrap();
    let forger = key();
    sign_run(&case.store(), CASE, "r1", &forger).await.unwrap();
    // Without a trusted key it is self-consistent ...
    let plain = case.verify("r1", None, true).await;
    assert!(plain.is_ok(), "{plain}");
    // ... with the trusted key it fails.
    let report = case.verify("r1", Some(owner.public_key()), true).await;
    assert!(!report.is_ok(), "{report}");
    assert_eq!(report.signature.trusted, Some(false));
    assert!(
        report.to_string().contains("signature: MISMATCH"),
        "{report}"
    );
}

#[tokio::test]
async fn an_unsigned_run_fails_only_when_a_signature_is_required() {
    let case = Case::new();
    case.seal("r1").await;
    let report = case.verify("r1", None, false).await;
    assert!(report.is_ok(), "{report}");
    assert!(!report.signature.signed);
    assert!(report.to_string().contains("signature: none"), "{report}");
    let report = case.verify("r1", None, true).await;
    assert!(!report.is_ok());
    assert!(
        report.signature.problems[0].contains("--require-signature"),
        "{report}"
    );
}

#[tokio::test]
async fn each_signature_carries_the_previous_runs_and_a_key_change_is_reported() {
    let case = Case::new();
    let (k1, k2) = (key(), key());
    case.seal("r1").await;
    sign_run(&case.store(), CASE, "r1", &k1).await.unwrap();
    case.seal("r2").await;
    let out = sign_run(&case.store(), CASE, "r2", &k2).await.unwrap();
    let prev = out.signed().previous_signature.clone().expect("chained");
    let env1 = Envelope::parse(&std::fs::read(case.file("r1", SIG_NAME)).unwrap()).unwrap();
    assert_eq!(prev.run_id, "r1");
    assert_eq!(prev.sig, env1.signatures[0].sig);
    let report = case.verify("r2", None, true).await;
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.signature.previous_signature.as_ref(), Some(&prev));
    let warnings = report.signature.warnings.join("\n");
    assert!(
        warnings.contains("key change: the case's earlier run r1"),
        "{warnings}"
    );
}

#[tokio::test]
async fn a_hostile_signature_file_is_a_problem_not_a_crash() {
    let case = Case::new();
    case.seal("r1").await;
    let sig = case.file("r1", SIG_NAME);
    // Too large: refused before it is read.
    let f = std::fs::File::create(&sig).unwrap();
    f.set_len(irr_forensics::signing::SIG_FILE_LIMIT + 1)
        .unwrap();
    let report = case.verify("r1", None, false).await;
    assert!(!report.is_ok());
    assert!(
        report.signature.problems[0].contains("irr never writes one so large"),
        "{report}"
    );
    // Not JSON.
    std::fs::write(&sig, b"\x00\xffnot json").unwrap();
    let report = case.verify("r1", None, false).await;
    assert!(
        report.signature.problems[0].contains("not a DSSE envelope"),
        "{report}"
    );
    // A symbolic link is not followed.
    std::fs::remove_file(&sig).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", &sig).unwrap();
    let report = case.verify("r1", None, false).await;
    assert!(!report.is_ok());
    assert!(
        report.signature.problems[0].contains("not followed"),
        "{report}"
    );
    // The sidecars are never unlisted.
    assert!(
        report.items_with(ItemStatus::Unlisted).next().is_none(),
        "{report}"
    );
    let _ = envelope::PAYLOAD_TYPE;
}

/// Keys as openssl writes them: SEC1 (`ecparam -genkey`, with its EC PARAMETERS block), PKCS #8
/// ECDSA, PKCS #8 and PKCS #1 RSA. Each signs, its signature verifies with the public key
/// openssl derives, and openssl verifies the signature too.
#[tokio::test]
async fn keys_in_the_formats_openssl_writes_sign_and_openssl_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let sh = |script: &str| {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for (name, make) in [
        ("sec1", "openssl ecparam -genkey -name prime256v1 -out sec1.pem"),
        ("ec8", "openssl ecparam -genkey -name prime256v1 | openssl pkcs8 -topk8 -nocrypt -out ec8.pem"),
        ("rsa8", "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa8.pem"),
        ("rsa1", "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 | openssl rsa -traditional -out rsa1.pem"),
    ] {
        sh(make);
        sh(&format!("openssl pkey -in {name}.pem -pubout -out {name}.pub"));
        let signer = Signer::from_pem_file(&dir.path().join(format!("{name}.pem")))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let public = PublicKey::from_pem_file(&dir.path().join(format!("{name}.pub"))).unwrap();
        assert_eq!(public, *signer.public_key(), "{name}");
        let msg = envelope::pae(envelope::PAYLOAD_TYPE, b"{\"k\":1}");
        let sig = signer.sign(&msg).await.unwrap();
        assert!(public.verifies(&msg, &sig), "{name}");
        std::fs::write(dir.path().join("msg.bin"), &msg).unwrap();
        std::fs::write(dir.path().join("sig.bin"), &sig).unwrap();
        let out = sh(&format!(
            "openssl dgst -sha256 -verify {name}.pub -signature sig.bin msg.bin"
        ));
        assert!(out.contains("Verified OK"), "{name}: {out}");
    }
}
