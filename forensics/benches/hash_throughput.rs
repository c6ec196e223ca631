//! Hashing throughput of `irr_forensics::hash::hash_file` against coreutils `sha256sum` and
//! `openssl dgst -sha256` on the same file, in the same run.
//!
//! `cargo bench -p irr-forensics --bench hash_throughput`
//! Size: `IRR_BENCH_HASH_MIB` (default 1024, i.e. 1 GiB). Rounds: `IRR_BENCH_ROUNDS` (default 3);
//! the best round of each is reported. The file is generated in a temporary directory and read
//! once before timing, so every tool reads it from the page cache.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use irr_forensics::hash::hash_file;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Writes `mib` MiB of xorshift output (incompressible, not all alike).
fn generate(path: &Path, mib: usize) {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for chunk in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&buf).unwrap();
    }
    f.flush().unwrap();
}

fn tool(cmd: &str, args: &[&str], path: &Path) -> (Duration, String) {
    let start = Instant::now();
    let out = Command::new(cmd)
        .args(args)
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("run {cmd}: {e}"));
    let elapsed = start.elapsed();
    assert!(out.status.success(), "{cmd} failed");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    // `sha256sum`: "<hex>  path"; openssl: "SHA2-256(path)= <hex>".
    let hex = text
        .split(|c: char| c.is_whitespace() || c == '=')
        .find(|w| w.len() == 64 && w.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("no digest in {cmd} output: {text}"))
        .to_lowercase();
    (elapsed, hex)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let mib = env_usize("IRR_BENCH_HASH_MIB", 1024);
    let rounds = env_usize("IRR_BENCH_ROUNDS", 3).max(1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evidence.bin");
    generate(&path, mib);
    let bytes = (mib as f64) * 1024.0 * 1024.0;
    let _ = hash_file(&path).unwrap(); // warm the page cache

    let mut best = [Duration::MAX; 3];
    let mut digests = [String::new(), String::new(), String::new()];
    for _ in 0..rounds {
        let (t, d) = tool("openssl", &["dgst", "-sha256"], &path);
        best[0] = best[0].min(t);
        digests[0] = d;
        let (t, d) = tool("sha256sum", &[], &path);
        best[1] = best[1].min(t);
        digests[1] = d;
        let start = Instant::now();
        let (d, n) = hash_file(&path).unwrap();
        best[2] = best[2].min(start.elapsed());
        assert_eq!(n as f64, bytes);
        digests[2] = d.to_hex();
    }
    assert!(
        digests.iter().all(|d| d == &digests[0]),
        "digests differ: {digests:?}"
    );

    let rate = |t: Duration| bytes / t.as_secs_f64() / 1e6;
    let openssl = rate(best[0]);
    println!("hash_throughput: {mib} MiB file, best of {rounds} rounds, page cache warm, MB = 10^6 bytes");
    println!("  sha256: {}", digests[0]);
    println!(
        "  {:<28} {:>8.0} MB/s  {:>6.3} s",
        "openssl dgst -sha256",
        openssl,
        best[0].as_secs_f64()
    );
    println!(
        "  {:<28} {:>8.0} MB/s  {:>6.3} s  ({:.0}% of openssl)",
        "sha256sum (coreutils)",
        rate(best[1]),
        best[1].as_secs_f64(),
        100.0 * rate(best[1]) / openssl
    );
    println!(
        "  {:<28} {:>8.0} MB/s  {:>6.3} s  ({:.0}% of openssl)",
        "irr_forensics::hash_file",
        rate(best[2]),
        best[2].as_secs_f64(),
        100.0 * rate(best[2]) / openssl
    );
    let ratio = rate(best[2]) / openssl;
    println!(
        "  irr/openssl ratio: {ratio:.3} (aim >= 0.90): {}",
        if ratio >= 0.9 { "met" } else { "NOT met" }
    );
}
