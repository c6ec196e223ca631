//! `ebs.hash_snapshots` through the `irr` binary against moto: snapshots of known content are
//! written through the EBS direct APIs (moto serves those APIs only for snapshots made with
//! `StartSnapshot`), hashed by `irr run`, and the hash compared with the real `sha256sum` of
//! the same raw image built in a temp dir. Also asserted: the evidence (the `ebs-snapshot`
//! resources of the sealed manifest with `sha256`, `size` and `block_size`, `images.json`,
//! `images.sha256`), a block whose data does not match its checksum failing the step with the
//! snapshot and block named, a listing out of order refused, and the dry run.
//!
//! moto's geometry (docs/emulator-notes.md): 512-byte blocks (AWS: 524,288) on volumes of
//! whole GiB, so a 1 GiB volume is 2,097,152 blocks; moto writes about 150-300 blocks a
//! second. "Dense" is therefore every block of the volume's first 256 KiB (512 blocks, no
//! zero block among them) and the rest unwritten; a fully written image is the mocked unit
//! test's (`runner/src/actions/ebs/tests.rs`, AWS's geometry).

use std::path::Path;

use irr_tests::ebs::{run_hash, KnownImage, GIB, MOTO_BLOCK};
use irr_tests::{endpoint, json_lines, output_text, sdk_config};
use serde_json::Value;

async fn ebs() -> aws_sdk_ebs::Client {
    aws_sdk_ebs::Client::new(&sdk_config().await)
}

/// The run's summary (its last JSON line).
fn summary(out: &std::process::Output) -> Value {
    json_lines(out)
        .pop()
        .unwrap_or_else(|| panic!("no summary: {}", output_text(out)))
}

fn step<'a>(sum: &'a Value, id: &str) -> &'a Value {
    sum["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step {id}: {sum:#}"))
}

fn bundle(out: &std::process::Output) -> std::path::PathBuf {
    summary(out)["evidence"]["location"]
        .as_str()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| panic!("no evidence location: {}", output_text(out)))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{path:?}: {e}")))
        .unwrap()
}

/// Hashes `images` (written in order) in one `irr run` and checks each against
/// `sha256sum` of its raw image and the evidence against both.
async fn hashes_match_sha256sum(images: &[KnownImage]) {
    let ebs = ebs().await;
    let mut ids = Vec::new();
    for img in images {
        ids.push(img.write(&ebs, 1).await);
    }
    let dir = tempfile::tempdir().unwrap();
    // The real sha256sum of each raw image, in its own process while irr runs (coreutils'
    // sha256sum takes seconds for a GiB).
    let sums: Vec<std::process::Child> = images
        .iter()
        .zip(&ids)
        .map(|(img, id)| {
            let raw = dir.path().join(format!("{id}.raw"));
            img.raw_image(&raw);
            std::process::Command::new("sha256sum")
                .arg(&raw)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("run sha256sum")
        })
        .collect();
    let (state, evidence) = (dir.path().join("state"), dir.path().join("evidence"));
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let (_, out) = run_hash(&endpoint(), &id_refs, &state, &evidence, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let loc = bundle(&out);
    let manifest = read_json(&loc.join("manifest.json"));
    let images_json = read_json(&loc.join("artifacts/hash/images.json"));
    let sums_file = std::fs::read_to_string(loc.join("artifacts/hash/images.sha256")).unwrap();
    let run = summary(&out);
    for ((img, id), sum) in images.iter().zip(&ids).zip(sums) {
        let sum = sum.wait_with_output().unwrap();
        assert!(sum.status.success(), "sha256sum failed");
        let want = String::from_utf8_lossy(&sum.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned();
        assert_eq!(want.len(), 64, "{want}");
        // The step's output.
        let got = &step(&run, "hash")["outputs"]["hashes"][id.as_str()];
        assert_eq!(got, &want, "{id}: {}", output_text(&out));
        // The sealed manifest's resource, which the signed statement covers.
        let res: Vec<&Value> = manifest["aws_resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["type"] == "ebs-snapshot" && r["id"] == id.as_str())
            .collect();
        assert_eq!(res.len(), 1, "{:#}", manifest["aws_resources"]);
        assert_eq!(res[0]["sha256"], want);
        assert_eq!(res[0]["size"], img.gib as u64 * GIB);
        assert_eq!(res[0]["block_size"], MOTO_BLOCK);
        assert_eq!(res[0]["blocks_written"], img.blocks.len());
        // The artifact: per snapshot, hash, size, block size and block counts.
        let entry = images_json["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["snapshot_id"] == id.as_str())
            .unwrap_or_else(|| panic!("{id} not in images.json: {images_json:#}"));
        assert_eq!(entry["sha256"], want);
        assert_eq!(entry["size"], img.gib as u64 * GIB);
        assert_eq!(entry["block_size"], MOTO_BLOCK);
        assert_eq!(entry["blocks"], img.gib as u64 * GIB / MOTO_BLOCK as u64);
        assert_eq!(entry["blocks_written"], img.blocks.len());
        assert!(
            sums_file.contains(&format!("{want}  {id}.raw\n")),
            "{sums_file}"
        );
    }
    // Both artifacts are sealed items, and the bundle verifies.
    let items: Vec<&str> = manifest["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["path"].as_str())
        .collect();
    for p in ["artifacts/hash/images.json", "artifacts/hash/images.sha256"] {
        assert!(items.contains(&p), "{p} not in {items:?}");
    }
    let verify = irr_tests::irr_with(
        &["evidence", "verify", loc.to_str().unwrap()],
        &state,
        &endpoint(),
        ("testing", "testing"),
        &[],
    );
    assert_eq!(verify.status.code(), Some(0), "{}", output_text(&verify));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sparse_and_dense_images_hash_as_sha256sum_of_the_raw_image() {
    // Sparse: five blocks of 2,097,152, the first and the last among them.
    let sparse = KnownImage::with_blocks(1, [0, 1, 4_095, 1_000_000, 2_097_151]);
    // Dense: every block of the first 256 KiB written (see the module docs).
    let dense = KnownImage::with_blocks(1, 0..512);
    hashes_match_sha256sum(&[sparse, dense]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_that_does_not_match_its_checksum_fails_the_step() {
    // moto takes PutSnapshotBlock's checksum at face value and echoes it on GetSnapshotBlock:
    // block 9 is served with a checksum that is not its data's.
    let mut img = KnownImage::with_blocks(1, [2, 9, 40]);
    img.wrong_checksum_at = Some(9);
    let id = img.write(&ebs().await, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let (state, evidence) = (dir.path().join("state"), dir.path().join("evidence"));
    let (_, out) = run_hash(&endpoint(), &[&id], &state, &evidence, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let sum = summary(&out);
    let s = step(&sum, "hash");
    assert_eq!(s["status"], "failed", "{s:#}");
    let err = s["error"].as_str().unwrap();
    assert!(
        err.contains(&format!("snapshot {id} block 9"))
            && err.contains("does not match its checksum"),
        "{err}"
    );
    // No hash anywhere: not in the outputs, not among the manifest's resources; the failure
    // is in images.json.
    assert!(s["outputs"]["hashes"].is_null(), "{s:#}");
    let loc = bundle(&out);
    let manifest = read_json(&loc.join("manifest.json"));
    assert!(
        !manifest["aws_resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id.as_str()),
        "{manifest:#}"
    );
    let images = read_json(&loc.join("artifacts/hash/images.json"));
    assert_eq!(images["failed"]["snapshot_id"], id.as_str(), "{images:#}");
    assert_eq!(images["images"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_out_of_order_is_refused() {
    // moto lists blocks in the order they were written: 7 before 3.
    let img = KnownImage::with_blocks(1, [7, 3]);
    let id = img.write(&ebs().await, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let (state, evidence) = (dir.path().join("state"), dir.path().join("evidence"));
    let (_, out) = run_hash(&endpoint(), &[&id], &state, &evidence, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let sum = summary(&out);
    let err = step(&sum, "hash")["error"].as_str().unwrap().to_owned();
    assert!(
        err.contains(&id) && err.contains("block index 3 after block index 7"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_reads_the_listing_and_hashes_nothing() {
    let img = KnownImage::with_blocks(1, [5]);
    let id = img.write(&ebs().await, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let (state, evidence) = (dir.path().join("state"), dir.path().join("evidence"));
    let (_, out) = run_hash(&endpoint(), &[&id], &state, &evidence, &["--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let sum = summary(&out);
    let s = step(&sum, "hash");
    assert_eq!(s["outputs"]["hashes"], serde_json::json!({}), "{s:#}");
    let images = read_json(&bundle(&out).join("artifacts/hash/images.json"));
    assert_eq!(images["dry_run"], true);
    assert_eq!(images["snapshots"][0]["geometry"]["block_size"], MOTO_BLOCK);
    assert_eq!(images["snapshots"][0]["geometry"]["volume_gib"], 1);
}

#[test]
fn irr_policy_grants_the_ebs_direct_api_reads_on_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let pb = irr_tests::fixture("hash-snapshots.yaml");
    let out = irr_tests::irr_with(
        &[
            "policy",
            pb.to_str().unwrap(),
            "--case",
            "IR-ebs-policy",
            "--input",
            "snapshot_ids=snap-0123456789abcdef0",
            "--account-id",
            "123456789012",
            "--region",
            "us-east-1",
        ],
        dir.path(),
        &endpoint(),
        ("testing", "testing"),
        &[],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    for action in ["ebs:ListSnapshotBlocks", "ebs:GetSnapshotBlock"] {
        let st = doc["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["Action"].as_array().unwrap().iter().any(|a| a == action))
            .unwrap_or_else(|| panic!("{action} not granted: {doc:#}"));
        assert_eq!(
            st["Resource"], "arn:aws:ec2:us-east-1::snapshot/*",
            "{st:#}"
        );
    }
}
