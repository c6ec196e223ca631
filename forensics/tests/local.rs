//! The local store end to end: capture, seal, `sha256sum -c`, and every tamper case.

use std::path::{Path, PathBuf};
use std::process::Command;

use irr_forensics::{
    AwsResource, Bundle, Collector, Error, EvidenceLocation, ItemMeta, ItemStatus, Manifest,
    PlaybookRef, RunInfo, S3Settings, SealOutcome, Sha256Digest, Source, Store, Timestamp,
    VerifyReport,
};

/// A case in a temporary evidence directory.
struct Case {
    _dir: tempfile::TempDir,
    root: PathBuf,
    case_id: String,
}

fn info() -> RunInfo {
    RunInfo {
        playbook: PlaybookRef {
            name: "isolate-ec2".into(),
            version: "1.0.0".into(),
            sha256: Sha256Digest::of(b"playbook").to_hex(),
        },
        collector: Collector::this_host(
            "irr 0.1.0",
            Some("arn:aws:iam::123456789012:user/ir".into()),
        ),
        started_at: Timestamp::now(),
    }
}

/// Bytes that are not all alike, so a flipped byte changes the hash.
fn blob(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[1] ^ seed)
        .collect()
}

impl Case {
    fn new() -> Case {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("evidence");
        Case {
            _dir: dir,
            root,
            case_id: "case-7".into(),
        }
    }

    fn store(&self) -> Store {
        Store::open(
            &EvidenceLocation::Local(self.root.clone()),
            None,
            S3Settings::default(),
        )
        .unwrap()
    }

    fn run_dir(&self, run: &str) -> PathBuf {
        self.root.join(&self.case_id).join(run)
    }

    fn location(&self, run: &str) -> EvidenceLocation {
        EvidenceLocation::Local(self.run_dir(run))
    }

    fn bundle(&self, run: &str) -> Bundle {
        Bundle::new(self.store(), &self.case_id, run, info()).unwrap()
    }

    /// Captures two JSON artifacts, a 3 MiB binary, the journal (from a file) and a resource,
    /// then seals.
    async fn sealed_run(&self, run: &str) -> SealOutcome {
        let b = self.bundle(run);
        b.capture_json(
            "snapshot",
            "volumes.json",
            &serde_json::json!({"Volumes": [{"VolumeId": "vol-1"}]}),
            Some("ec2:DescribeVolumes"),
        )
        .await
        .unwrap();
        b.capture_json(
            "describe",
            "instance.json",
            &serde_json::json!({"InstanceId": "i-1", "run": run}),
            Some("ec2:DescribeInstances"),
        )
        .await
        .unwrap();
        b.capture(
            "artifacts/memory/dump.bin",
            Source::from(blob(3 << 20, 7)),
            ItemMeta::new("memory", Some("ssm:SendCommand")),
        )
        .await
        .unwrap();
        let journal = self._dir.path().join(format!("{run}.journal.jsonl"));
        std::fs::write(
            &journal,
            format!("{{\"event\":\"run_started\",\"run\":\"{run}\"}}\n"),
        )
        .unwrap();
        b.capture("journal.jsonl", Source::File(journal), ItemMeta::default())
            .await
            .unwrap();
        b.add_resource(
            AwsResource::new("ebs-snapshot", "snap-0123")
                .with("volume_id", "vol-1")
                .with("state", "completed"),
        );
        b.seal().await.unwrap()
    }

    async fn verify(&self, run: &str) -> VerifyReport {
        irr_forensics::verify(&self.location(run), None)
            .await
            .unwrap()
    }
}

fn writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

fn item<'a>(r: &'a VerifyReport, path: &str) -> &'a irr_forensics::ItemCheck {
    r.items
        .iter()
        .find(|i| i.path == path)
        .unwrap_or_else(|| panic!("{path} not in report:\n{r}"))
}

/// Exactly the given (path, status) pairs are not ok.
fn assert_only(r: &VerifyReport, bad: &[(&str, ItemStatus)]) {
    assert!(!r.is_ok(), "expected a mismatch:\n{r}");
    let mut found: Vec<(String, ItemStatus)> = r
        .items
        .iter()
        .filter(|i| i.status != ItemStatus::Ok)
        .map(|i| (i.path.clone(), i.status))
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want: Vec<(String, ItemStatus)> =
        bad.iter().map(|(p, s)| (p.to_string(), *s)).collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(found, want, "{r}");
}

fn sha256sum_c(dir: &Path) -> std::process::Output {
    Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(dir)
        .output()
        .expect("run sha256sum")
}

#[tokio::test]
async fn sealed_bundle_passes_coreutils_and_verifies_clean() {
    let case = Case::new();
    let outcome = case.sealed_run("run-1").await;
    assert!(!outcome.was_already_sealed());
    let dir = case.run_dir("run-1");

    // The layout of the evidence format, read-only files.
    for f in [
        "artifacts/snapshot/volumes.json",
        "artifacts/describe/instance.json",
        "artifacts/memory/dump.bin",
        "journal.jsonl",
        "manifest.json",
        "SHA256SUMS",
    ] {
        let meta = std::fs::metadata(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(meta.permissions().readonly(), "{f} is writable");
    }
    // Pretty-printed JSON artifacts.
    let vols = std::fs::read_to_string(dir.join("artifacts/snapshot/volumes.json")).unwrap();
    assert!(
        vols.starts_with("{\n  \"Volumes\": [") && vols.ends_with("}\n"),
        "{vols}"
    );

    // Real coreutils.
    let out = sha256sum_c(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sha256sum -c failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "artifacts/memory/dump.bin: OK",
        "journal.jsonl: OK",
        "manifest.json: OK",
        "artifacts/snapshot/volumes.json: OK",
    ] {
        assert!(stdout.contains(f), "{stdout}");
    }
    assert_eq!(stdout.lines().count(), 5);

    // The manifest on disk is canonical, and its hash is the one reported.
    let bytes = std::fs::read(dir.join("manifest.json")).unwrap();
    assert!(Manifest::is_canonical(&bytes));
    assert_eq!(Sha256Digest::of(&bytes), outcome.seal().manifest_sha256);
    let m = Manifest::from_slice(&bytes).unwrap();
    assert_eq!(m.format, "irr-evidence-manifest/1");
    assert_eq!((m.case_id.as_str(), m.run_id.as_str()), ("case-7", "run-1"));
    assert_eq!(m.previous_manifest_sha256, None);
    assert_eq!(m.items.len(), 4);
    let dump = m
        .items
        .iter()
        .find(|i| i.path == "artifacts/memory/dump.bin")
        .unwrap();
    assert_eq!(dump.sha256, Sha256Digest::of(&blob(3 << 20, 7)));
    assert_eq!(dump.size, 3 << 20);
    assert_eq!(dump.step.as_deref(), Some("memory"));
    assert_eq!(m.aws_resources[0].id, "snap-0123");
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.contains("\"aws_principal\": \"arn:aws:iam::123456789012:user/ir\""));

    let r = case.verify("run-1").await;
    assert!(r.is_ok(), "{r}");
    assert_eq!(r.items.len(), 4);
    assert!(r.items.iter().all(|i| i.status == ItemStatus::Ok));
    let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(json["status"], "ok");
    assert_eq!(json["items"].as_array().unwrap().len(), 4);
    assert_eq!(json["items"][0]["status"], "ok");
    assert_eq!(json["chain"]["status"], "ok");
    assert!(r
        .to_string()
        .starts_with(&format!("evidence {}: OK", case.run_dir("run-1").display())));
}

#[tokio::test]
async fn flipped_byte_is_altered() {
    let case = Case::new();
    case.sealed_run("run-1").await;
    let f = case.run_dir("run-1").join("artifacts/memory/dump.bin");
    writable(&f);
    let mut bytes = std::fs::read(&f).unwrap();
    bytes[1_000_000] ^= 0x01;
    std::fs::write(&f, &bytes).unwrap();
    let r = case.verify("run-1").await;
    assert_only(&r, &[("artifacts/memory/dump.bin", ItemStatus::Altered)]);
    let i = item(&r, "artifacts/memory/dump.bin");
    assert_eq!(i.actual_sha256, Some(Sha256Digest::of(&bytes)));
    assert_eq!(i.actual_size, Some(3 << 20));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&r.to_json()).unwrap()["status"],
        "mismatch"
    );
    assert!(
        r.to_string()
            .contains("ALTERED   artifacts/memory/dump.bin"),
        "{r}"
    );
    // coreutils agrees.
    let out = sha256sum_c(&case.run_dir("run-1"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("artifacts/memory/dump.bin: FAILED"));
}

#[tokio::test]
async fn truncated_item_is_altered() {
    let case = Case::new();
    case.sealed_run("run-1").await;
    let f = case
        .run_dir("run-1")
        .join("artifacts/snapshot/volumes.json");
    writable(&f);
    let len = std::fs::metadata(&f).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&f)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let r = case.verify("run-1").await;
    assert_only(
        &r,
        &[("artifacts/snapshot/volumes.json", ItemStatus::Altered)],
    );
    assert_eq!(
        item(&r, "artifacts/snapshot/volumes.json").actual_size,
        Some(len - 3)
    );
}

#[tokio::test]
async fn deleted_item_is_missing() {
    let case = Case::new();
    case.sealed_run("run-1").await;
    std::fs::remove_file(case.run_dir("run-1").join("journal.jsonl")).unwrap();
    let r = case.verify("run-1").await;
    assert_only(&r, &[("journal.jsonl", ItemStatus::Missing)]);
    assert!(r.to_string().contains("MISSING   journal.jsonl"));
}

#[tokio::test]
async fn added_file_is_unlisted() {
    let case = Case::new();
    case.sealed_run("run-1").await;
    let dir = case.run_dir("run-1");
    std::fs::write(dir.join("artifacts/snapshot/planted.json"), b"{}\n").unwrap();
    std::fs::write(dir.join("notes.txt"), b"x").unwrap();
    let r = case.verify("run-1").await;
    assert_only(
        &r,
        &[
            ("artifacts/snapshot/planted.json", ItemStatus::Unlisted),
            ("notes.txt", ItemStatus::Unlisted),
        ],
    );
    // sha256sum -c alone cannot see this: verify can.
    assert!(sha256sum_c(&dir).status.success());
}

#[tokio::test]
async fn edited_manifest_is_detected() {
    let case = Case::new();
    case.sealed_run("run-1").await;
    let f = case.run_dir("run-1").join("manifest.json");
    writable(&f);
    let text = std::fs::read_to_string(&f).unwrap();
    let edited = text.replace(
        "\"aws_principal\": \"arn:aws:iam::123456789012:user/ir\"",
        "\"aws_principal\": \"arn:aws:iam::123456789012:user/someone-else\"",
    );
    assert_ne!(text, edited);
    std::fs::write(&f, &edited).unwrap();
    let r = case.verify("run-1").await;
    assert!(!r.is_ok());
    assert!(r.items.iter().all(|i| i.status == ItemStatus::Ok), "{r}");
    assert_eq!(r.sha256sums.problems.len(), 1, "{r}");
    assert!(
        r.sha256sums.problems[0].starts_with("manifest.json: SHA256SUMS says"),
        "{r}"
    );
    assert!(!sha256sum_c(&case.run_dir("run-1")).status.success());
}

#[tokio::test]
async fn edited_sha256sums_is_detected() {
    let case = Case::new();
    case.sealed_run("run-1").await;
    let f = case.run_dir("run-1").join("SHA256SUMS");
    writable(&f);
    let text = std::fs::read_to_string(&f).unwrap();
    // Drop the journal's line and claim another hash for the dump.
    let edited: String = text
        .lines()
        .filter(|l| !l.ends_with("  journal.jsonl"))
        .map(|l| {
            if l.ends_with("  artifacts/memory/dump.bin") {
                format!("{}  artifacts/memory/dump.bin\n", "0".repeat(64))
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&f, edited).unwrap();
    let r = case.verify("run-1").await;
    assert!(!r.is_ok());
    assert!(r.items.iter().all(|i| i.status == ItemStatus::Ok), "{r}");
    let p = r.sha256sums.problems.join("\n");
    assert!(
        p.contains("artifacts/memory/dump.bin: SHA256SUMS says 0000"),
        "{p}"
    );
    assert!(p.contains("journal.jsonl is not listed"), "{p}");
    let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(json["sha256sums"]["status"], "mismatch");
}

#[tokio::test]
async fn chain_of_three_and_a_dropped_middle_run() {
    let case = Case::new();
    let s1 = case.sealed_run("run-1").await.seal().clone();
    let s2 = case.sealed_run("run-2").await.seal().clone();
    let s3 = case.sealed_run("run-3").await.seal().clone();
    assert_eq!(s1.manifest.previous_manifest_sha256, None);
    assert_eq!(
        s2.manifest.previous_manifest_sha256,
        Some(s1.manifest_sha256)
    );
    assert_eq!(
        s3.manifest.previous_manifest_sha256,
        Some(s2.manifest_sha256)
    );
    // The chained hash is the hash of the previous manifest file's bytes.
    let m1 = std::fs::read(case.run_dir("run-1").join("manifest.json")).unwrap();
    assert_eq!(Sha256Digest::of(&m1), s1.manifest_sha256);
    for run in ["run-1", "run-2", "run-3"] {
        let r = case.verify(run).await;
        assert!(r.is_ok(), "{r}");
        assert_eq!(r.chain.runs.len(), 3);
    }
    assert!(case
        .verify("run-3")
        .await
        .to_string()
        .contains("run-1 -> run-2 -> run-3"));

    std::fs::remove_dir_all(case.run_dir("run-2")).unwrap();
    let r = case.verify("run-3").await;
    assert!(!r.is_ok());
    assert!(r.items.iter().all(|i| i.status == ItemStatus::Ok), "{r}");
    assert_eq!(r.chain.problems.len(), 1, "{r}");
    let p = &r.chain.problems[0];
    assert!(
        p.contains(&format!(
            "run run-3 follows a manifest with sha256 {}",
            s2.manifest_sha256
        )),
        "{p}"
    );
    assert!(p.contains("between run run-1 and run run-3"), "{p}");
    // Verifying another run of the case shows the broken chain too.
    assert!(!case.verify("run-1").await.is_ok());
}

#[tokio::test]
async fn rewritten_middle_run_breaks_the_chain() {
    // An insider alters run-2's artifact and rewrites its manifest and SHA256SUMS to match:
    // run-2 then passes `sha256sum -c`, but run-3's link exposes it.
    let case = Case::new();
    case.sealed_run("run-1").await;
    case.sealed_run("run-2").await;
    case.sealed_run("run-3").await;
    let dir = case.run_dir("run-2");
    let art = dir.join("artifacts/describe/instance.json");
    writable(&art);
    std::fs::write(&art, b"{\"InstanceId\": \"i-other\"}\n").unwrap();
    let mf = dir.join("manifest.json");
    let mut m = Manifest::from_slice(&std::fs::read(&mf).unwrap()).unwrap();
    let it = m
        .items
        .iter_mut()
        .find(|i| i.path == "artifacts/describe/instance.json")
        .unwrap();
    it.sha256 = Sha256Digest::of(b"{\"InstanceId\": \"i-other\"}\n");
    it.size = 26;
    let bytes = m.to_canonical_bytes();
    writable(&mf);
    std::fs::write(&mf, &bytes).unwrap();
    let sums = irr_forensics::Sha256Sums::for_manifest(&m, Sha256Digest::of(&bytes));
    let sf = dir.join("SHA256SUMS");
    writable(&sf);
    std::fs::write(&sf, sums.to_bytes()).unwrap();
    assert!(sha256sum_c(&dir).status.success());

    let r = case.verify("run-2").await;
    assert!(
        r.items.iter().all(|i| i.status == ItemStatus::Ok) && r.sha256sums.problems.is_empty(),
        "{r}"
    );
    assert!(!r.is_ok());
    assert!(
        r.chain
            .problems
            .iter()
            .any(|p| p.starts_with("run run-3 follows a manifest with sha256")),
        "{r}"
    );
}

#[tokio::test]
async fn sealing_is_once_per_run() {
    let case = Case::new();
    let b = case.bundle("run-1");
    b.capture_json("s", "a.json", &serde_json::json!([1]), None)
        .await
        .unwrap();
    let first = b.seal().await.unwrap();
    assert!(matches!(first, SealOutcome::Sealed(_)));
    let manifest = std::fs::read(case.run_dir("run-1").join("manifest.json")).unwrap();

    // Same bundle again, and a fresh process resuming the run: reported, not re-sealed.
    let again = b.seal().await.unwrap();
    assert!(again.was_already_sealed());
    let resumed =
        Bundle::resume(case.store(), "case-7", "run-1", info(), b.items(), vec![]).unwrap();
    let third = resumed.seal().await.unwrap();
    assert!(third.was_already_sealed());
    assert_eq!(third.seal().manifest_sha256, first.seal().manifest_sha256);
    assert_eq!(
        std::fs::read(case.run_dir("run-1").join("manifest.json")).unwrap(),
        manifest
    );

    // No capture after sealing.
    let err = b
        .capture_json("s", "b.json", &serde_json::json!([2]), None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Sealed { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "run run-1 of case case-7 is sealed; nothing more can be captured"
    );

    // A seal interrupted after manifest.json is completed, from that manifest.
    std::fs::remove_file(case.run_dir("run-1").join("SHA256SUMS")).unwrap();
    assert!(!case.verify("run-1").await.is_ok());
    let fresh = Bundle::new(case.store(), "case-7", "run-1", info()).unwrap();
    let completed = fresh.seal().await.unwrap();
    assert!(matches!(completed, SealOutcome::Sealed(_)));
    assert_eq!(
        completed.seal().manifest_sha256,
        first.seal().manifest_sha256
    );
    assert!(sha256sum_c(&case.run_dir("run-1")).status.success());
    assert!(case.verify("run-1").await.is_ok());
}

#[tokio::test]
async fn evidence_is_never_overwritten_or_captured_twice() {
    let case = Case::new();
    let b = case.bundle("run-1");
    b.capture_json("s", "a.json", &serde_json::json!(1), None)
        .await
        .unwrap();
    let err = b
        .capture_json("s", "a.json", &serde_json::json!(2), None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyCaptured { .. }), "{err}");
    // Another bundle for the same run (a restarted process) cannot overwrite the file.
    let other = case.bundle("run-1");
    let err = other
        .capture_json("s", "a.json", &serde_json::json!(3), None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Exists { .. }), "{err}");
    assert_eq!(
        std::fs::read(case.run_dir("run-1").join("artifacts/s/a.json")).unwrap(),
        b"1\n"
    );
    // Bad names are refused before anything is written.
    assert!(matches!(
        b.capture("../escape", Source::from(vec![1]), ItemMeta::default())
            .await,
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        b.capture("manifest.json", Source::from(vec![1]), ItemMeta::default())
            .await,
        Err(Error::InvalidName { .. })
    ));
    assert!(Bundle::new(case.store(), "case/7", "r", info()).is_err());
}

#[tokio::test]
async fn unsealed_run_and_non_runs() {
    let case = Case::new();
    let b = case.bundle("run-1");
    b.capture_json("s", "a.json", &serde_json::json!(1), None)
        .await
        .unwrap();
    let r = case.verify("run-1").await;
    assert!(!r.is_ok());
    assert!(r.manifest.problems[0].contains("not sealed"), "{r}");
    assert_eq!(item(&r, "artifacts/s/a.json").status, ItemStatus::Unlisted);
    let err = irr_forensics::verify(&case.location("run-404"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotARun { .. }), "{err}");
}

// ---- Hostile bundles: what is in place of an item is never followed, opened blocking or
// read past its recorded size; each case is tampering, and verification ends in seconds.

/// Verifies within a deadline: a verifier that blocks (on a FIFO, a device) fails here
/// instead of hanging the test suite.
async fn verify_quickly(case: &Case, run: &str) -> VerifyReport {
    let t = std::time::Instant::now();
    let r = tokio::time::timeout(std::time::Duration::from_secs(20), case.verify(run))
        .await
        .expect("verification blocked");
    assert!(t.elapsed().as_secs() < 10, "took {:?}", t.elapsed());
    r
}

fn mknod(path: &Path, ft: rustix::fs::FileType, dev: u64) -> rustix::io::Result<()> {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        ft,
        rustix::fs::Mode::from_raw_mode(0o644),
        dev,
    )
}

/// Replaces `rel` in the run with what `make` puts there.
fn replace(case: &Case, run: &str, rel: &str, make: impl FnOnce(&Path)) -> PathBuf {
    let p = case.run_dir(run).join(rel);
    let _ = std::fs::remove_file(&p);
    make(&p);
    p
}

fn detail<'a>(r: &'a VerifyReport, path: &str) -> &'a str {
    item(r, path).detail.as_deref().unwrap_or("")
}

#[tokio::test]
async fn a_fifo_in_place_of_an_item_is_altered_without_blocking() {
    let case = Case::new();
    case.sealed_run("run-1").await;
    replace(&case, "run-1", "artifacts/memory/dump.bin", |p| {
        mknod(p, rustix::fs::FileType::Fifo, 0).unwrap()
    });
    let r = verify_quickly(&case, "run-1").await;
    assert_only(&r, &[("artifacts/memory/dump.bin", ItemStatus::Altered)]);
    assert!(
        detail(&r, "artifacts/memory/dump.bin")
            .contains("a FIFO (named pipe) is in place of the item"),
        "{r}"
    );
    assert_eq!(item(&r, "artifacts/memory/dump.bin").actual_sha256, None);
}

#[tokio::test]
async fn a_symlink_in_place_of_an_item_is_not_followed() {
    let case = Case::new();
    case.sealed_run("run-1").await;
    // To a file that exists and to one that holds the very bytes recorded: neither passes.
    replace(&case, "run-1", "artifacts/snapshot/volumes.json", |p| {
        std::os::unix::fs::symlink("/etc/passwd", p).unwrap()
    });
    let copy = case._dir.path().join("instance-copy.json");
    std::fs::copy(
        case.run_dir("run-1")
            .join("artifacts/describe/instance.json"),
        &copy,
    )
    .unwrap();
    replace(&case, "run-1", "artifacts/describe/instance.json", |p| {
        std::os::unix::fs::symlink(&copy, p).unwrap()
    });
    let r = verify_quickly(&case, "run-1").await;
    assert_only(
        &r,
        &[
            ("artifacts/snapshot/volumes.json", ItemStatus::Altered),
            ("artifacts/describe/instance.json", ItemStatus::Altered),
        ],
    );
    assert!(
        detail(&r, "artifacts/snapshot/volumes.json")
            .contains("a symbolic link to /etc/passwd is in place of the item"),
        "{r}"
    );
    assert!(detail(&r, "artifacts/describe/instance.json").contains("symbolic link"));
}

#[tokio::test]
async fn a_symlink_to_a_fifo_and_a_directory_are_altered() {
    let case = Case::new();
    case.sealed_run("run-1").await;
    let fifo = case._dir.path().join("fifo");
    mknod(&fifo, rustix::fs::FileType::Fifo, 0).unwrap();
    replace(&case, "run-1", "artifacts/memory/dump.bin", |p| {
        std::os::unix::fs::symlink(&fifo, p).unwrap()
    });
    replace(&case, "run-1", "artifacts/snapshot/volumes.json", |p| {
        std::fs::create_dir(p).unwrap();
        std::fs::write(p.join("inside"), b"x").unwrap();
    });
    let r = verify_quickly(&case, "run-1").await;
    // The directory's content is not listed as items of the manifest; it is unlisted.
    assert_only(
        &r,
        &[
            ("artifacts/memory/dump.bin", ItemStatus::Altered),
            ("artifacts/snapshot/volumes.json", ItemStatus::Altered),
            (
                "artifacts/snapshot/volumes.json/inside",
                ItemStatus::Unlisted,
            ),
        ],
    );
    assert!(detail(&r, "artifacts/memory/dump.bin").contains("symbolic link to"));
    assert!(detail(&r, "artifacts/snapshot/volumes.json").contains("a directory is in place"));
}

#[tokio::test]
async fn a_device_in_place_of_an_item_is_altered_without_reading() {
    let case = Case::new();
    case.sealed_run("run-1").await;
    let p = case.run_dir("run-1").join("journal.jsonl");
    std::fs::remove_file(&p).unwrap();
    // /dev/zero's numbers (1, 5): reading it would never end.
    if let Err(e) = mknod(
        &p,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::makedev(1, 5),
    ) {
        eprintln!("SKIPPED: cannot create a character device here ({e}); the FIFO, symlink and directory cases cover the rest");
        return;
    }
    let r = verify_quickly(&case, "run-1").await;
    assert_only(&r, &[("journal.jsonl", ItemStatus::Altered)]);
    assert!(
        detail(&r, "journal.jsonl").contains("a character device is in place"),
        "{r}"
    );
}

#[tokio::test]
async fn an_item_grown_by_gigabytes_is_altered_without_being_read() {
    let case = Case::new();
    case.sealed_run("run-1").await;
    let f = case.run_dir("run-1").join("artifacts/memory/dump.bin");
    writable(&f);
    // 64 GiB, sparse: reading it whole would take minutes.
    let grown = 64u64 << 30;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&f)
        .unwrap()
        .set_len(grown)
        .unwrap();
    let r = verify_quickly(&case, "run-1").await;
    assert_only(&r, &[("artifacts/memory/dump.bin", ItemStatus::Altered)]);
    let i = item(&r, "artifacts/memory/dump.bin");
    assert_eq!(i.actual_size, Some(grown));
    assert_eq!(i.actual_sha256, None);
    assert!(
        detail(&r, "artifacts/memory/dump.bin").contains("not hashed"),
        "{r}"
    );
}

#[tokio::test]
async fn store_check_reads_at_most_the_recorded_size_plus_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        &EvidenceLocation::Local(dir.path().to_path_buf()),
        None,
        S3Settings::default(),
    )
    .unwrap();
    store
        .put("c/r/a.bin", Source::from(vec![7u8; 1000]))
        .await
        .unwrap();
    use irr_forensics::Found;
    assert_eq!(
        store.check_object("c/r/a.bin", None, 1000).await.unwrap(),
        Found::Hashed(Sha256Digest::of(&[7u8; 1000]))
    );
    assert_eq!(
        store.check_object("c/r/a.bin", None, 999).await.unwrap(),
        Found::OtherSize {
            size: 1000,
            at_least: false
        }
    );
    assert_eq!(
        store.check_object("c/r/none", None, 1).await.unwrap(),
        Found::Missing
    );
    // A link in a directory component below the root is not followed either.
    std::os::unix::fs::symlink(dir.path().join("c"), dir.path().join("d")).unwrap();
    match store.check_object("d/r/a.bin", None, 1000).await.unwrap() {
        Found::NotAFile(what) => assert!(what.contains("in place of the directory d"), "{what}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn manifest_and_sums_that_are_not_files_are_tampering_not_hangs() {
    for (name, make) in [
        ("manifest.json", "fifo"),
        ("manifest.json", "symlink"),
        ("manifest.json", "huge"),
        ("SHA256SUMS", "fifo"),
        ("SHA256SUMS", "huge"),
    ] {
        let case = Case::new();
        case.sealed_run("run-1").await;
        let p = case.run_dir("run-1").join(name);
        let real = case._dir.path().join("real");
        std::fs::copy(&p, &real).unwrap();
        std::fs::remove_file(&p).unwrap();
        match make {
            "fifo" => mknod(&p, rustix::fs::FileType::Fifo, 0).unwrap(),
            // A link to the genuine bytes: still not the file.
            "symlink" => std::os::unix::fs::symlink(&real, &p).unwrap(),
            _ => {
                let f = std::fs::File::create(&p).unwrap();
                f.set_len(10 << 30).unwrap();
            }
        }
        let r = verify_quickly(&case, "run-1").await;
        assert!(!r.is_ok(), "{name} {make}: {r}");
        let problems = if name == "manifest.json" {
            &r.manifest.problems
        } else {
            &r.sha256sums.problems
        };
        let want = match make {
            "fifo" => "is a FIFO (named pipe), not a file",
            "symlink" => "is a symbolic link to",
            _ => "irr never writes one so large",
        };
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with(name) && p.contains(want)),
            "{name} {make}: {problems:?}"
        );
    }
}

#[tokio::test]
async fn a_linked_run_or_artifacts_folder_is_not_walked() {
    let case = Case::new();
    case.sealed_run("run-1").await;
    // `artifacts` swapped for a link to a faithful copy of itself.
    let dir = case.run_dir("run-1");
    let copy = case._dir.path().join("artifacts-copy");
    std::fs::rename(dir.join("artifacts"), &copy).unwrap();
    std::os::unix::fs::symlink(&copy, dir.join("artifacts")).unwrap();
    let r = verify_quickly(&case, "run-1").await;
    assert!(!r.is_ok(), "{r}");
    for p in [
        "artifacts/snapshot/volumes.json",
        "artifacts/describe/instance.json",
        "artifacts/memory/dump.bin",
    ] {
        assert_eq!(item(&r, p).status, ItemStatus::Altered, "{r}");
        assert!(
            detail(&r, p).contains("in place of the directory artifacts"),
            "{r}"
        );
    }
    // The link itself is listed (unlisted), never descended into.
    assert_eq!(item(&r, "artifacts").status, ItemStatus::Unlisted, "{r}");

    // A whole run folder that is a link (to `/` it would list the disk).
    let case = Case::new();
    case.sealed_run("run-1").await;
    std::os::unix::fs::symlink("/", case.run_dir("run-2")).unwrap();
    let r = verify_quickly(&case, "run-2").await;
    assert!(!r.is_ok(), "{r}");
    assert!(
        r.manifest
            .problems
            .iter()
            .any(|p| p.contains("a symbolic link to / in place of the directory run-2")),
        "{r}"
    );
    assert!(r.items.is_empty(), "{r}");
}

#[tokio::test]
async fn an_unlisted_fifo_is_listed_never_opened() {
    let case = Case::new();
    case.sealed_run("run-1").await;
    mknod(
        &case.run_dir("run-1").join("artifacts/extra.pipe"),
        rustix::fs::FileType::Fifo,
        0,
    )
    .unwrap();
    let r = verify_quickly(&case, "run-1").await;
    assert_only(&r, &[("artifacts/extra.pipe", ItemStatus::Unlisted)]);
}

#[tokio::test]
async fn another_runs_manifest_that_is_a_fifo_breaks_the_chain_without_blocking() {
    let case = Case::new();
    case.sealed_run("run-1").await;
    case.sealed_run("run-2").await;
    let p = case.run_dir("run-1").join("manifest.json");
    std::fs::remove_file(&p).unwrap();
    mknod(&p, rustix::fs::FileType::Fifo, 0).unwrap();
    let r = verify_quickly(&case, "run-2").await;
    assert!(!r.is_ok(), "{r}");
    assert!(
        r.chain
            .problems
            .iter()
            .any(|p| p.contains("run run-1: manifest.json is a FIFO")),
        "{r}"
    );
    // Sealing a third run does not block on it either.
    let sealed = tokio::time::timeout(std::time::Duration::from_secs(20), case.sealed_run("run-3"))
        .await
        .expect("sealing blocked");
    assert!(!sealed.was_already_sealed());
}
