//! `irr run` capturing one big file with `evidence.capture file:` (issue 10, item 4), against
//! `openssl dgst -sha256 FILE && cp FILE DEST` of the same file, in the same process run:
//! wall time (median of 3, interleaved) and the `irr` process's peak RSS (`ru_maxrss` of its
//! own `wait4` rusage), into local evidence and into S3 evidence (the emulator).
//!
//! ```text
//! cargo build --release -p irr-runner && cargo bench -p irr-tests --bench capture
//! ```
//!
//! - `IRR_BENCH_CAPTURE_GIB`: comma-separated file sizes in GiB (default `1`).
//! - `IRR_BENCH_CAPTURE_S3`: comma-separated sizes also captured into S3 (default `1`; moto
//!   keeps objects in memory, so keep this small).
//! - `IRR_BENCH_RUNS`: runs per measurement (default 3).
//! - `IRR_BENCH_DIR`: where the files go (default the system temp dir; the evidence copy
//!   is written beside it, so it needs twice the size free).
//!
//! Uses `target/release/irr` when built, else `target/debug/irr` (said so in the output).
//! The page cache is not dropped: every contender reads a file that is (or is not) cached in
//! the same way, and the runs are interleaved.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use irr_tests::{run_measured, Measured};

const GIB: u64 = 1024 * 1024 * 1024;

fn irr_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().to_owned();
    for profile in ["release", "debug"] {
        let b = target.join(profile).join("irr");
        if b.exists() {
            return b;
        }
    }
    panic!("build irr first: cargo build --release -p irr-runner");
}

fn list(var: &str, default: &str) -> Vec<u64> {
    std::env::var(var)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// A file of `size` bytes of incompressible, non-zero data (xorshift), written in 1 MiB blocks.
fn make_file(path: &Path, size: u64) {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for chunk in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n]).unwrap();
        left -= n as u64;
    }
    f.flush().unwrap();
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn irr_run(bin: &Path, pb: &Path, state: &Path, endpoint: &str, evidence: &str) -> Measured {
    let mut cmd = Command::new(bin);
    cmd.args([
        "run",
        pb.to_str().unwrap(),
        "--case",
        "IR-bench",
        "--yes",
        "--output",
        "json",
    ])
    .args(["--evidence", evidence])
    .arg("--state-dir")
    .arg(state)
    .arg("--endpoint-url")
    .arg(endpoint)
    .env("AWS_ACCESS_KEY_ID", "testing")
    .env("AWS_SECRET_ACCESS_KEY", "testing")
    .env("AWS_REGION", "us-east-1")
    .env_remove("AWS_PROFILE");
    let m = run_measured(cmd);
    assert_eq!(
        m.code,
        Some(0),
        "irr run failed: {}",
        String::from_utf8_lossy(&m.stderr)
    );
    m
}

fn s3_bucket(endpoint: &str, name: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let conf = irr_tests::sdk_config_for(endpoint, ("testing", "testing")).await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&conf)
                .force_path_style(true)
                .build(),
        );
        irr_runner::evidence::open_store(
            &format!("s3://{}", name),
            Some(s3.clone()),
            &irr_runner::model::EvidenceDecl::default(),
            true,
            None,
        )
        .await
        .unwrap();
    });
}

fn main() {
    let bin = irr_binary();
    std::env::set_var("IRR_BIN_OVERRIDE", &bin);
    let profile = bin
        .parent()
        .and_then(Path::file_name)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let runs = list("IRR_BENCH_RUNS", "3")
        .first()
        .copied()
        .unwrap_or(3)
        .max(1) as usize;
    let sizes = list("IRR_BENCH_CAPTURE_GIB", "1");
    let s3_sizes = list("IRR_BENCH_CAPTURE_S3", "1");
    let base = std::env::var_os("IRR_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let endpoint = irr_tests::endpoint();
    println!(
        "irr binary: {} ({profile} build), runs per figure: {runs}",
        bin.display()
    );
    println!("| file | contender | wall median | each run | irr peak RSS (max of runs) |");
    println!("| --- | --- | --- | --- | --- |");
    for gib in sizes {
        let work = tempfile::Builder::new()
            .prefix("irr-capture-bench")
            .tempdir_in(&base)
            .unwrap();
        let src = work.path().join("big.bin");
        let t = Instant::now();
        make_file(&src, gib * GIB);
        eprintln!("wrote {gib} GiB in {:.1}s", t.elapsed().as_secs_f64());
        let pb = work.path().join("capture.yaml");
        std::fs::write(
            &pb,
            "apiVersion: irr/v1\nkind: Playbook\nmetadata: {name: capture-bench, version: 1.0.0}\nsteps:\n  - id: grab\n    action: evidence.capture\n    with: {name: big.bin, file: big.bin}\n",
        )
        .unwrap();
        let with_s3 = s3_sizes.contains(&gib);
        let bucket = format!("irr-capture-bench-{gib}");
        if with_s3 {
            s3_bucket(&endpoint, &bucket);
        }
        let (mut local, mut s3, mut peer) = (Vec::new(), Vec::new(), Vec::new());
        let (mut local_rss, mut s3_rss) = (0u64, 0u64);
        for i in 0..runs {
            let dest = work.path().join(format!("copy-{i}.bin"));
            let t = Instant::now();
            let st = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "openssl dgst -sha256 '{}' >/dev/null && cp '{}' '{}'",
                    src.display(),
                    src.display(),
                    dest.display()
                ))
                .status()
                .unwrap();
            assert!(st.success());
            peer.push(t.elapsed());
            std::fs::remove_file(&dest).unwrap();

            let state = work.path().join(format!("state-{i}"));
            let ev = work.path().join(format!("evidence-{i}"));
            let m = irr_run(&bin, &pb, &state, &endpoint, ev.to_str().unwrap());
            local.push(m.wall);
            local_rss = local_rss.max(m.max_rss_kib);
            std::fs::remove_dir_all(&state).unwrap();
            make_writable_and_remove(&ev);

            if with_s3 {
                let state = work.path().join(format!("state-s3-{i}"));
                let m = irr_run(&bin, &pb, &state, &endpoint, &format!("s3://{bucket}/r{i}"));
                s3.push(m.wall);
                s3_rss = s3_rss.max(m.max_rss_kib);
                std::fs::remove_dir_all(&state).unwrap();
            }
        }
        let show = |v: &[Duration]| {
            v.iter()
                .map(|d| format!("{:.2}", d.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        let pm = median(peer.clone());
        println!(
            "| {gib} GiB | `openssl dgst -sha256 && cp` | {:.2} s | {} | — |",
            pm.as_secs_f64(),
            show(&peer)
        );
        let lm = median(local.clone());
        println!(
            "| {gib} GiB | `irr run`, local evidence | {:.2} s ({:.2}x the peer) | {} | {:.1} MiB |",
            lm.as_secs_f64(),
            lm.as_secs_f64() / pm.as_secs_f64(),
            show(&local),
            local_rss as f64 / 1024.0
        );
        if with_s3 {
            let sm = median(s3.clone());
            println!(
                "| {gib} GiB | `irr run`, S3 evidence (emulator) | {:.2} s ({:.2}x the peer) | {} | {:.1} MiB |",
                sm.as_secs_f64(),
                sm.as_secs_f64() / pm.as_secs_f64(),
                show(&s3),
                s3_rss as f64 / 1024.0
            );
        }
    }
}

/// Evidence is read-only: make it writable again to delete it.
fn make_writable_and_remove(dir: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut stack = vec![dir.to_owned()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p.clone());
                }
                let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755));
            }
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}
