//! `evidence.capture file:` streams (issue 10, item 4), through the `irr` binary: a 200 MiB
//! (sparse) file is captured into local and into S3 evidence with the `irr` process's peak RSS
//! (its own `wait4` rusage) under 64 MiB, the sealed item's hash equal to `sha256sum`'s, the
//! staged copy adopted into local evidence without a second copy; a FIFO is refused at once.

use std::path::Path;

use irr_tests::{irr_command, run_measured, Measured};
use serde_json::Value;

const MIB: u64 = 1024 * 1024;
const LIMIT_KIB: u64 = 64 * 1024;

fn playbook(dir: &Path, file: &str) -> std::path::PathBuf {
    let pb = dir.join("capture.yaml");
    std::fs::write(
        &pb,
        format!(
            "apiVersion: irr/v1\nkind: Playbook\nmetadata: {{name: capture-file, version: 1.0.0}}\nsteps:\n  - id: grab\n    action: evidence.capture\n    timeout: 10m\n    with: {{name: big.bin, file: {file}}}\n"
        ),
    )
    .unwrap();
    pb
}

fn text(m: &Measured) -> String {
    format!(
        "exit {:?}, peak anonymous {} KiB, peak RSS {} KiB\n--- stderr\n{}\n--- stdout\n{}",
        m.code,
        m.max_anon_kib,
        m.max_rss_kib,
        String::from_utf8_lossy(&m.stderr),
        String::from_utf8_lossy(&m.stdout)
    )
}

fn sha256sum(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// A 200 MiB sparse file with a few written regions (so the hash is not that of zeros only).
fn big_file(dir: &Path) -> std::path::PathBuf {
    use std::io::{Seek, SeekFrom, Write};
    let p = dir.join("big.bin");
    let mut f = std::fs::File::create(&p).unwrap();
    f.set_len(200 * MIB).unwrap();
    for at in [0, 77 * MIB + 13, 200 * MIB - 5] {
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(b"irr!!").unwrap();
    }
    p
}

fn manifest_item(manifest: &Value, path: &str) -> Value {
    manifest["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["path"] == path)
        .cloned()
        .unwrap_or_else(|| panic!("{path} not in the manifest: {manifest}"))
}

#[test]
fn a_200_mib_file_is_captured_into_local_evidence_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let src = big_file(dir.path());
    let expected = sha256sum(&src);
    let pb = playbook(dir.path(), "big.bin");
    let state = dir.path().join("state");
    let evidence = dir.path().join("evidence");
    let m = run_measured(irr_command(
        &[
            "run",
            pb.to_str().unwrap(),
            "--case",
            "IR-big",
            "--yes",
            "--output",
            "json",
            "--evidence",
            evidence.to_str().unwrap(),
        ],
        &state,
        &irr_tests::endpoint(),
    ));
    assert_eq!(m.code, Some(0), "{}", text(&m));
    // The capture's own memory (RssAnon); the peak RSS also counts the pages of the debug
    // binary it ran, which grow with every SDK crate linked in (shown in the message).
    assert!(
        m.max_anon_kib < LIMIT_KIB,
        "peak anonymous memory {} KiB, limit {LIMIT_KIB} KiB: {}",
        m.max_anon_kib,
        text(&m)
    );
    let events: Vec<Value> = String::from_utf8_lossy(&m.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let run_id = events[0]["run_id"].as_str().unwrap().to_owned();
    let captured = events
        .iter()
        .find(|e| e["event"] == "evidence_captured")
        .expect("evidence_captured");
    assert_eq!(captured["sha256"], expected.as_str());
    assert_eq!(captured["size"], 200 * MIB);

    let bundle = evidence.join("IR-big").join(&run_id);
    let stored = bundle.join("artifacts/grab/big.bin");
    assert_eq!(sha256sum(&stored), expected);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(bundle.join("manifest.json")).unwrap()).unwrap();
    let item = manifest_item(&manifest, "artifacts/grab/big.bin");
    assert_eq!(item["sha256"], expected.as_str());
    assert_eq!(item["size"], 200 * MIB);
    // Adopted, not copied: the staged copy was moved into the evidence (same file system).
    let staged = state
        .join("runs")
        .join(&run_id)
        .join("evidence/artifacts/grab/big.bin");
    assert!(!staged.exists(), "a second copy stayed in staging");
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&stored).unwrap();
        assert_eq!(meta.nlink(), 1, "one name for the evidence copy");
        assert_eq!(meta.mode() & 0o222, 0, "evidence is read-only");
    }
    let verify = irr_tests::irr_with(
        &["evidence", "verify", bundle.to_str().unwrap()],
        &state,
        &irr_tests::endpoint(),
        ("testing", "testing"),
        &[],
    );
    assert!(
        verify.status.success(),
        "{}",
        irr_tests::output_text(&verify)
    );
}

#[test]
fn a_200_mib_file_is_captured_into_s3_evidence_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let src = big_file(dir.path());
    let expected = sha256sum(&src);
    let pb = playbook(dir.path(), "big.bin");
    let state = dir.path().join("state");
    let bucket = irr_tests::unique("irr-capture").to_lowercase();
    let bucket: String = bucket
        .chars()
        .take(60)
        .collect::<String>()
        .trim_end_matches('-')
        .to_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s3 = rt.block_on(async {
        let conf = irr_tests::sdk_config().await;
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&conf)
                .force_path_style(true)
                .build(),
        )
    });
    rt.block_on(async {
        irr_runner::evidence::open_store(
            &format!("s3://{}", bucket),
            Some(s3.clone()),
            &irr_runner::model::EvidenceDecl::default(),
            true,
            None,
        )
        .await
        .unwrap();
    });
    let location = format!("s3://{bucket}/cases");
    let m = run_measured(irr_command(
        &[
            "run",
            pb.to_str().unwrap(),
            "--case",
            "IR-big-s3",
            "--yes",
            "--output",
            "json",
            "--evidence",
            &location,
        ],
        &state,
        &irr_tests::endpoint(),
    ));
    assert_eq!(m.code, Some(0), "{}", text(&m));
    // The capture's own memory (RssAnon); the peak RSS also counts the pages of the debug
    // binary it ran, which grow with every SDK crate linked in (shown in the message).
    assert!(
        m.max_anon_kib < LIMIT_KIB,
        "peak anonymous memory {} KiB, limit {LIMIT_KIB} KiB: {}",
        m.max_anon_kib,
        text(&m)
    );
    let events: Vec<Value> = String::from_utf8_lossy(&m.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let run_id = events[0]["run_id"].as_str().unwrap().to_owned();
    let manifest = rt.block_on(async {
        let o = s3
            .get_object()
            .bucket(&bucket)
            .key(format!("cases/IR-big-s3/{run_id}/manifest.json"))
            .send()
            .await
            .unwrap();
        o.body.collect().await.unwrap().into_bytes()
    });
    let manifest: Value = serde_json::from_slice(&manifest).unwrap();
    let item = manifest_item(&manifest, "artifacts/grab/big.bin");
    assert_eq!(item["sha256"], expected.as_str());
    assert_eq!(item["size"], 200 * MIB);
    let head = rt.block_on(async {
        s3.head_object()
            .bucket(&bucket)
            .key(format!("cases/IR-big-s3/{run_id}/artifacts/grab/big.bin"))
            .send()
            .await
            .unwrap()
    });
    assert_eq!(head.content_length(), Some((200 * MIB) as i64));
}

#[cfg(unix)]
#[test]
fn a_fifo_is_refused_at_once_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let pb = playbook(dir.path(), "pipe");
    let state = dir.path().join("state");
    let evidence = dir.path().join("evidence");
    let m = run_measured(irr_command(
        &[
            "run",
            pb.to_str().unwrap(),
            "--case",
            "IR-fifo",
            "--yes",
            "--output",
            "json",
            "--evidence",
            evidence.to_str().unwrap(),
        ],
        &state,
        &irr_tests::endpoint(),
    ));
    assert_eq!(m.code, Some(1), "{}", text(&m));
    assert!(
        m.wall < std::time::Duration::from_secs(60),
        "took {:?}",
        m.wall
    );
    let out = String::from_utf8_lossy(&m.stdout);
    let finished = out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["event"] == "step_finished" && e["id"] == "grab")
        .expect("step_finished");
    let error = finished["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("FIFO") && error.contains("not a regular file"),
        "{error}"
    );
}
