//! Signed seals end to end (issue 12, part 3), through the `irr` binary.
//!
//! A run signed with a local PEM key verifies offline against the trusted public key; a
//! consistent rewrite (item, manifest.json and SHA256SUMS) re-signed with a forger's key fails
//! against it (exit 3); `--require-signature` fails an unsigned bundle, which `irr evidence
//! sign` then signs; a second run of the case carries the first run's signature; a KMS key in
//! the emulator signs and verifies by ARN; and openssl, knowing nothing of irr, verifies the
//! signature over DSSE's pre-authentication encoding.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;
use irr_tests::output_text;
use serde_json::Value;

const PLAYBOOK: &str = r#"apiVersion: irr/v1
kind: Playbook
metadata: {name: signing-test, version: 1.0.0}
steps:
  - id: note
    action: evidence.capture
    with:
      name: note.txt
      content: "seal me {{case.id}}"
"#;

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let s = Setup {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(s.path("pb.yaml"), PLAYBOOK).unwrap();
        s
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A P-256 key pair made with openssl: `NAME.pem` (PKCS #8) and `NAME.pub.pem`.
    fn key(&self, name: &str) -> (PathBuf, PathBuf) {
        let key = self.path(&format!("{name}.pem"));
        let public = self.path(&format!("{name}.pub.pem"));
        sh(&format!(
            "openssl ecparam -genkey -name prime256v1 | openssl pkcs8 -topk8 -nocrypt -out {k} && openssl pkey -in {k} -pubout -out {p}",
            k = key.display(),
            p = public.display()
        ));
        (key, public)
    }

    /// `irr ARGS` offline: no endpoint, no credentials.
    fn irr(&self, args: &[&str]) -> Output {
        Command::new(irr_tests::irr_bin())
            .args(args)
            .arg("--state-dir")
            .arg(self.path("state"))
            .current_dir(self.dir.path())
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_PROFILE")
            .output()
            .unwrap()
    }

    /// Runs the playbook for `case` signed with `key`; the run's evidence folder.
    fn run(&self, case: &str, extra: &[&str]) -> PathBuf {
        let mut args = vec![
            "run",
            "pb.yaml",
            "--case",
            case,
            "--yes",
            "--evidence",
            "ev",
        ];
        args.extend_from_slice(extra);
        let case_dir = self.path("ev").join(case);
        let before = runs_of(&case_dir);
        let out = self.irr(&args);
        assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
        let mut new: Vec<PathBuf> = runs_of(&case_dir)
            .into_iter()
            .filter(|r| !before.contains(r))
            .collect();
        assert_eq!(new.len(), 1, "one new run");
        new.pop().unwrap()
    }
}

fn sh(script: &str) {
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert!(out.status.success(), "{script}: {}", output_text(&out));
}

/// The runs under a folder (none when it does not exist).
fn runs_of(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

/// The one run under a folder.
fn only_run(dir: &Path) -> PathBuf {
    let mut runs = runs_of(dir);
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs.pop().unwrap()
}

fn verify(s: &Setup, run: &Path, extra: &[&str]) -> (Option<i32>, Value) {
    let mut args = vec![
        "--output",
        "json",
        "evidence",
        "verify",
        run.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = s.irr(&args);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("a JSON report: {}", output_text(&out)));
    (out.status.code(), report)
}

fn envelope(run: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(run.join("manifest.sig.json")).unwrap()).unwrap()
}

fn b64(s: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s.as_str().unwrap())
        .unwrap()
}

/// The auditor's check of docs/evidence.md: PAE and signature out of the envelope with
/// python3, then openssl over them with the public key.
fn openssl_verifies(run: &Path, public: &Path) -> bool {
    let tmp = tempfile::tempdir().unwrap();
    let script = format!(
        r#"cd {run} && python3 - <<'EOF'
import base64, json
env = json.load(open("manifest.sig.json"))
body = base64.b64decode(env["payload"]); t = env["payloadType"].encode()
open("{tmp}/pae.bin", "wb").write(b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body))
open("{tmp}/sig.der", "wb").write(base64.b64decode(env["signatures"][0]["sig"]))
EOF
openssl dgst -sha256 -verify {public} -signature {tmp}/sig.der {tmp}/pae.bin"#,
        run = run.display(),
        public = public.display(),
        tmp = tmp.path().display(),
    );
    let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
    String::from_utf8_lossy(&out.stdout).contains("Verified OK") && out.status.success()
}

#[test]
fn a_run_signed_with_a_local_key_verifies_offline_and_with_openssl() {
    let s = Setup::new();
    let (key, public) = s.key("seal");
    let run = s.run("IR-SIG-1", &["--signing-key", key.to_str().unwrap()]);
    for f in [
        "manifest.json",
        "SHA256SUMS",
        "manifest.sig.json",
        "public-key.pem",
    ] {
        assert!(run.join(f).is_file(), "{f} is in the bundle");
    }
    let env = envelope(&run);
    assert_eq!(env["payloadType"], "application/vnd.in-toto+json");
    let statement: Value = serde_json::from_slice(&b64(&env["payload"])).unwrap();
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(
        statement["predicateType"],
        "https://irr.dev/evidence-seal/v1"
    );
    let names: Vec<&str> = statement["subject"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["artifacts/note/note.txt", "journal.jsonl", "manifest.json"]
    );
    let manifest_sha =
        irr_forensics::Sha256Digest::of(&std::fs::read(run.join("manifest.json")).unwrap());
    assert_eq!(
        statement["subject"][2]["digest"]["sha256"],
        manifest_sha.to_hex()
    );
    assert_eq!(statement["predicate"]["case_id"], "IR-SIG-1");

    let (code, report) = verify(
        &s,
        &run,
        &[
            "--trusted-key",
            public.to_str().unwrap(),
            "--require-signature",
        ],
    );
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["signature"]["trusted"], true);
    assert!(
        report["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["status"] == "ok"),
        "the sidecars are not unlisted: {report:#}"
    );
    assert!(
        openssl_verifies(&run, &public),
        "openssl verifies the PAE signature"
    );
    // The keyid is the SHA-256 of the public key's DER, as openssl computes it.
    let der = Command::new("openssl")
        .args(["pkey", "-pubin", "-outform", "DER", "-in"])
        .arg(run.join("public-key.pem"))
        .output()
        .unwrap()
        .stdout;
    assert_eq!(
        env["signatures"][0]["keyid"],
        format!("sha256:{}", irr_forensics::Sha256Digest::of(&der).to_hex())
    );
    // The private key is nowhere but in its file: not in the bundle, the state, the output.
    let secret = std::fs::read_to_string(&key).unwrap();
    let body: String = secret.lines().filter(|l| !l.starts_with("-----")).collect();
    sh(&format!(
        "! grep -rqF -- '{}' {} {}",
        &body[8..48],
        s.path("ev").display(),
        s.path("state").display()
    ));
    let journal =
        std::fs::read_to_string(only_run(&s.path("state/runs")).join("journal.jsonl")).unwrap();
    assert!(
        journal.contains("\"signed_by\":\"sha256:"),
        "the journal records the signature"
    );
    // The report shows the signature, and no report holds the key.
    let run_id = run.file_name().unwrap().to_str().unwrap().to_owned();
    for format in ["md", "json", "html"] {
        let out = s.irr(&["report", &run_id, "--format", format]);
        assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.contains(&body[8..48]),
            "{format} report holds the key"
        );
        assert!(
            text.contains(&env["signatures"][0]["keyid"].as_str().unwrap()[7..]),
            "{format} report names the signing key"
        );
    }
}

#[test]
fn a_consistent_rewrite_re_signed_by_a_forger_fails_against_the_trusted_key() {
    let s = Setup::new();
    let (key, public) = s.key("owner");
    let (forger, _) = s.key("forger");
    let run = s.run("IR-SIG-2", &["--signing-key", key.to_str().unwrap()]);
    // The forger rewrites the note, the manifest and SHA256SUMS consistently and signs anew.
    let note = run.join("artifacts/note/note.txt");
    let forged = b"nothing to see here\n";
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(run.join("manifest.json")).unwrap()).unwrap();
    let item = manifest["items"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|i| i["path"] == "artifacts/note/note.txt")
        .unwrap();
    item["sha256"] = irr_forensics::Sha256Digest::of(forged).to_hex().into();
    item["size"] = forged.len().into();
    let m = irr_forensics::Manifest::from_slice(&serde_json::to_vec(&manifest).unwrap()).unwrap();
    let bytes = m.to_canonical_bytes();
    let sums = irr_forensics::Sha256Sums::for_manifest(&m, irr_forensics::Sha256Digest::of(&bytes));
    sh(&format!("cd {} && chmod -R u+w . && rm -f manifest.json SHA256SUMS manifest.sig.json public-key.pem artifacts/note/note.txt", run.display()));
    std::fs::write(&note, forged).unwrap();
    std::fs::write(run.join("manifest.json"), &bytes).unwrap();
    std::fs::write(run.join("SHA256SUMS"), sums.to_bytes()).unwrap();
    let out = s.irr(&[
        "evidence",
        "sign",
        run.to_str().unwrap(),
        "--signing-key",
        forger.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    // Self-consistent: without a trusted key it verifies ...
    let (code, _) = verify(&s, &run, &["--require-signature"]);
    assert_eq!(code, Some(0));
    // ... against the trusted key it does not.
    let (code, report) = verify(&s, &run, &["--trusted-key", public.to_str().unwrap()]);
    assert_eq!(code, Some(3), "{report:#}");
    assert_eq!(report["status"], "mismatch");
    assert_eq!(report["signature"]["trusted"], false);
    let problems = report["signature"]["problems"].to_string();
    assert!(
        problems.contains("not signed by the trusted key"),
        "{problems}"
    );
}

#[test]
fn an_unsigned_bundle_fails_when_a_signature_is_required_and_is_signed_afterwards() {
    let s = Setup::new();
    let (key, public) = s.key("late");
    let run = s.run("IR-SIG-3", &[]);
    assert!(!run.join("manifest.sig.json").exists());
    let (code, report) = verify(&s, &run, &["--require-signature"]);
    assert_eq!(code, Some(3), "{report:#}");
    assert!(report["signature"]["problems"][0]
        .as_str()
        .unwrap()
        .contains("--require-signature"));
    let (code, _) = verify(&s, &run, &[]);
    assert_eq!(code, Some(0), "unsigned is not a failure unless required");

    let run_s = run.to_str().unwrap();
    let out = s.irr(&[
        "evidence",
        "sign",
        run_s,
        "--signing-key",
        key.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let signed = std::fs::read(run.join("manifest.sig.json")).unwrap();
    let (code, report) = verify(
        &s,
        &run,
        &[
            "--trusted-key",
            public.to_str().unwrap(),
            "--require-signature",
        ],
    );
    assert_eq!(code, Some(0), "{report:#}");
    // The same key again: nothing written. Another key: refused, nothing written.
    let out = s.irr(&[
        "evidence",
        "sign",
        run_s,
        "--signing-key",
        key.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("was signed already"));
    let (other, _) = s.key("other");
    let out = s.irr(&[
        "evidence",
        "sign",
        run_s,
        "--signing-key",
        other.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("never overwritten"),
        "{}",
        output_text(&out)
    );
    assert_eq!(
        std::fs::read(run.join("manifest.sig.json")).unwrap(),
        signed
    );
}

#[test]
fn a_second_run_carries_the_first_runs_signature() {
    let s = Setup::new();
    let (key, public) = s.key("chain");
    let key = key.to_str().unwrap().to_owned();
    let first = s.run("IR-SIG-4", &["--signing-key", &key]);
    let second = s.run("IR-SIG-4", &["--signing-key", &key]);
    assert_ne!(first, second);
    let statement: Value = serde_json::from_slice(&b64(&envelope(&second)["payload"])).unwrap();
    let prev = &statement["predicate"]["previous_signature"];
    assert_eq!(prev["run_id"], first.file_name().unwrap().to_str().unwrap());
    assert_eq!(prev["sig"], envelope(&first)["signatures"][0]["sig"]);
    let (code, report) = verify(&s, &second, &["--trusted-key", public.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["signature"]["previous_signature"], *prev);
}

#[test]
fn a_bad_signing_key_in_the_playbook_is_a_diagnostic_and_a_bad_key_file_changes_nothing() {
    let s = Setup::new();
    std::fs::write(
        s.path("bad.yaml"),
        format!(
            "{PLAYBOOK}evidence:\n  signing_key: arn:aws:kms:us-east-1:111122223333:alias/seal\n"
        ),
    )
    .unwrap();
    let out = s.irr(&["validate", "bad.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let text = output_text(&out);
    assert!(
        text.contains("bad.yaml:11:16") && text.contains("alias"),
        "{text}"
    );
    std::fs::write(s.path("garbage.pem"), "not a key").unwrap();
    let out = s.irr(&[
        "run",
        "pb.yaml",
        "--case",
        "IR-SIG-5",
        "--yes",
        "--evidence",
        "ev",
        "--signing-key",
        "garbage.pem",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(output_text(&out).contains("nothing was changed"));
    assert!(!s.path("ev/IR-SIG-5").exists(), "no run started");
}

#[tokio::test]
async fn a_kms_key_signs_and_verifies_by_arn_and_its_public_key_offline() {
    let endpoint = irr_tests::endpoint();
    let kms = aws_sdk_kms::Client::new(&irr_tests::sdk_config().await);
    let created = kms
        .create_key()
        .key_spec(aws_sdk_kms::types::KeySpec::EccNistP256)
        .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
        .send()
        .await
        .unwrap();
    let arn = created.key_metadata.unwrap().arn.unwrap();
    let s = Setup::new();
    let irr = |args: &[&str]| {
        irr_tests::irr_command(args, &s.path("state"), &endpoint)
            .current_dir(s.dir.path())
            .output()
            .unwrap()
    };
    let out = irr(&[
        "run",
        "pb.yaml",
        "--case",
        "IR-SIG-KMS",
        "--yes",
        "--evidence",
        "ev",
        "--signing-key",
        &arn,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let run = only_run(&s.path("ev/IR-SIG-KMS"));
    // The stored key is the KMS key's.
    let der = kms
        .get_public_key()
        .key_id(&arn)
        .send()
        .await
        .unwrap()
        .public_key
        .unwrap()
        .into_inner();
    let stored =
        irr_forensics::PublicKey::from_pem(&std::fs::read(run.join("public-key.pem")).unwrap())
            .unwrap();
    assert_eq!(stored.der(), der.as_slice());
    // By ARN (KMS GetPublicKey and Verify) ...
    let out = irr(&[
        "--output",
        "json",
        "evidence",
        "verify",
        run.to_str().unwrap(),
        "--trusted-key",
        &arn,
        "--require-signature",
    ]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["signature"]["trusted"], true);
    // ... and offline with its public key, and with openssl.
    std::fs::write(s.path("kms.pub.pem"), stored.to_pem()).unwrap();
    let (code, report) = verify(
        &s,
        &run,
        &["--trusted-key", s.path("kms.pub.pem").to_str().unwrap()],
    );
    assert_eq!(code, Some(0), "{report:#}");
    assert!(openssl_verifies(&run, &s.path("kms.pub.pem")));
    // Another KMS key is not the trusted one.
    let other = kms
        .create_key()
        .key_spec(aws_sdk_kms::types::KeySpec::EccNistP256)
        .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .arn
        .unwrap();
    let out = irr(&[
        "evidence",
        "verify",
        run.to_str().unwrap(),
        "--trusted-key",
        &other,
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", output_text(&out));
}

#[test]
fn the_policy_grants_sign_and_get_public_key_on_the_kms_key() {
    let s = Setup::new();
    let arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    std::fs::write(
        s.path("kms.yaml"),
        format!("{PLAYBOOK}evidence:\n  signing_key: {arn}\n"),
    )
    .unwrap();
    let out = s.irr(&["policy", "kms.yaml", "--case", "IR-P"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let policy: Value = serde_json::from_slice(&out.stdout).unwrap();
    let kms: Vec<&Value> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|st| st["Action"].to_string().contains("kms:"))
        .collect();
    assert_eq!(kms.len(), 1, "{policy:#}");
    assert_eq!(
        kms[0]["Action"],
        serde_json::json!(["kms:GetPublicKey", "kms:Sign"])
    );
    assert_eq!(kms[0]["Resource"], arn);
}

#[tokio::test]
async fn a_seal_in_s3_is_signed_with_locked_objects_and_verifies_with_the_trusted_key() {
    let endpoint = irr_tests::endpoint();
    let conf = irr_tests::sdk_config().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    );
    let bucket = irr_tests::unique("irr-sig").to_lowercase();
    let loc = irr_forensics::EvidenceLocation::parse(&format!("s3://{bucket}/cases")).unwrap();
    let store = irr_forensics::Store::open(&loc, Some(s3.clone()), Default::default()).unwrap();
    let irr_forensics::Store::S3(st) = &store else {
        unreachable!()
    };
    st.ensure_bucket(true).await.unwrap();
    let s = Setup::new();
    let (key, public) = s.key("s3seal");
    let evidence = format!("s3://{bucket}/cases");
    let out = irr_tests::irr_command(
        &[
            "--output",
            "json",
            "run",
            "pb.yaml",
            "--case",
            "IR-SIG-S3",
            "--yes",
            "--evidence",
            &evidence,
            "--signing-key",
            key.to_str().unwrap(),
        ],
        &s.path("state"),
        &endpoint,
    )
    .current_dir(s.dir.path())
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let events = irr_tests::json_lines(&out);
    let sealed = events
        .iter()
        .find(|e| e["event"] == "evidence_sealed")
        .expect("evidence_sealed");
    assert!(
        sealed["signed_by"].as_str().unwrap().starts_with("sha256:"),
        "{sealed}"
    );
    let run_loc = sealed["location"].as_str().unwrap().to_owned();
    let run_id = run_loc.rsplit('/').next().unwrap();
    for name in ["manifest.sig.json", "public-key.pem"] {
        let head = s3
            .head_object()
            .bucket(&bucket)
            .key(format!("cases/IR-SIG-S3/{run_id}/{name}"))
            .send()
            .await
            .unwrap();
        assert!(head.object_lock_mode.is_some(), "{name} is locked");
        assert!(
            head.object_lock_retain_until_date.is_some(),
            "{name} is retained"
        );
    }
    let out = irr_tests::irr_command(
        &[
            "--output",
            "json",
            "evidence",
            "verify",
            &run_loc,
            "--trusted-key",
            public.to_str().unwrap(),
            "--require-signature",
        ],
        &s.path("state"),
        &endpoint,
    )
    .output()
    .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["signature"]["trusted"], true);
}
