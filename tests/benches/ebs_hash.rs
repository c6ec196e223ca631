//! `irr run` of `tests/fixtures/hash-snapshots.yaml` (`ebs.hash_snapshots`) against moto,
//! against `sha256sum` of the same raw image, in the same process run: MB/s of the image
//! hashed and of the block data fetched, and the ratio of the two wall times.
//!
//! ```text
//! cargo bench -p irr-tests --bench ebs_hash                   # debug or release irr, as built
//! IRR_BENCH_EBS_BLOCKS=4096 IRR_BENCH_RUNS=3                  # the defaults
//! ```
//!
//! Two snapshots of a 1 GiB volume (moto's smallest; its blocks are 512 bytes, so 2,097,152
//! blocks) are written through the EBS direct APIs once: "dense", the first
//! `IRR_BENCH_EBS_BLOCKS` blocks written (pattern data), and "one block", a single block
//! (the rest of either image is zeros, which irr hashes without a request). Each run times
//! `sha256sum` of the raw image (a sparse file in the temp dir) and `irr run` (the whole
//! process: start, identity, listing, every block fetched and checked, hashing, seal), and
//! reads the action's own hashing time from `images.json`. The hash is checked equal every
//! time. The figures are moto's: it serves about 150-300 requests a second of 512 bytes each,
//! where AWS serves 1,000 a second of 512 KiB.

use std::path::Path;
use std::time::{Duration, Instant};

use irr_tests::ebs::{run_hash, sha256sum, KnownImage, GIB};
use serde_json::Value;

fn env_num(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn mb_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

/// One `irr run`: its wall time and the action's own seconds for the snapshot.
fn irr_once(endpoint: &str, id: &str, work: &Path, i: usize, want: &str) -> (Duration, Duration) {
    let state = work.join(format!("state-{i}"));
    let evidence = work.join(format!("evidence-{i}"));
    let t = Instant::now();
    let (_, out) = run_hash(endpoint, &[id], &state, &evidence, &[]);
    let wall = t.elapsed();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        irr_tests::output_text(&out)
    );
    let last: Value = irr_tests::json_lines(&out).pop().unwrap();
    let loc = Path::new(last["evidence"]["location"].as_str().unwrap()).to_owned();
    let images: Value =
        serde_json::from_slice(&std::fs::read(loc.join("artifacts/hash/images.json")).unwrap())
            .unwrap();
    let img = &images["images"][0];
    assert_eq!(img["sha256"], want, "irr and sha256sum disagree");
    let hashing = Duration::from_secs_f64(img["seconds"].as_f64().unwrap());
    let _ = std::process::Command::new("chmod")
        .args(["-R", "u+w"])
        .arg(&evidence)
        .status();
    let _ = std::fs::remove_dir_all(&evidence);
    let _ = std::fs::remove_dir_all(&state);
    (wall, hashing)
}

fn main() {
    let bin = irr_tests::bench_irr_binary();
    std::env::set_var("IRR_BIN_OVERRIDE", &bin);
    let blocks = env_num("IRR_BENCH_EBS_BLOCKS", 4096).clamp(1, 2_097_152) as i32;
    let runs = env_num("IRR_BENCH_RUNS", 3).max(1) as usize;
    let endpoint = irr_tests::endpoint();
    let work = tempfile::Builder::new()
        .prefix("irr-ebs-bench")
        .tempdir()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ebs = rt.block_on(async { aws_sdk_ebs::Client::new(&irr_tests::sdk_config().await) });
    println!("irr binary: {}, runs per figure: {runs}", bin.display());
    println!("| image (1 GiB volume, 512 B blocks) | blocks written | sha256sum of the raw image | irr run, wall | irr hashing (images.json) | image MB/s (hashing) | block data MB/s | GetSnapshotBlock/s | irr run / sha256sum |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, img) in [
        ("dense", KnownImage::with_blocks(1, 0..blocks)),
        ("one block", KnownImage::with_blocks(1, [0])),
    ] {
        let t = Instant::now();
        let id = rt.block_on(img.write(&ebs, 1));
        eprintln!(
            "{name}: wrote {} blocks through PutSnapshotBlock in {:.1}s",
            img.blocks.len(),
            t.elapsed().as_secs_f64()
        );
        let raw = work.path().join(format!("{id}.raw"));
        img.raw_image(&raw);
        let (mut base, mut walls, mut hashing) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..runs {
            let t = Instant::now();
            let want = sha256sum(&raw);
            base.push(t.elapsed());
            let (wall, h) = irr_once(&endpoint, &id, work.path(), i, &want);
            walls.push(wall);
            hashing.push(h);
        }
        std::fs::remove_file(&raw).unwrap();
        let (b, w, h) = (median(base), median(walls), median(hashing));
        println!(
            "| {name} | {} | {:.2} s ({:.0} MB/s) | {:.2} s | {:.2} s | {:.0} | {:.3} | {} | {:.1}x |",
            img.blocks.len(),
            b.as_secs_f64(),
            mb_s(GIB, b),
            w.as_secs_f64(),
            h.as_secs_f64(),
            mb_s(GIB, h),
            mb_s(img.written_bytes(), h),
            // A rate of one request says nothing.
            match img.blocks.len() {
                1 => "(1 block)".to_owned(),
                n => format!("{:.0}", n as f64 / h.as_secs_f64()),
            },
            w.as_secs_f64() / b.as_secs_f64(),
        );
    }
}
