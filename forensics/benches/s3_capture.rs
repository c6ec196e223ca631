//! Capturing a large file into the emulator's S3: time and peak memory of one capture
//! (whole-file SHA-256 + per-part SHA-256 + multipart upload, one pass) against hashing alone
//! and uploading alone.
//!
//! `cargo bench -p irr-forensics --bench s3_capture`
//! - `IRR_BENCH_S3_MIB`: file size in MiB (default 2048, i.e. 2 GiB; moto keeps objects in RAM).
//! - `IRR_BENCH_ENDPOINT`: an emulator to use; otherwise `moto_server -H 127.0.0.1 -p PORT` is
//!   started on a free port and stopped at the end.
//! - `IRR_BENCH_PART_MIB` (default 8) and `IRR_BENCH_IN_FLIGHT` (default 2).
//!
//! Peak memory is this process's `VmHWM` from `/proc/self/status`, reset before each phase
//! through `/proc/self/clear_refs` (Linux >= 4.0), so each phase reports its own peak.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use irr_forensics::hash::hash_file;
use irr_forensics::{Encryption, EvidenceLocation, RetentionMode, S3Settings, Source, Store};

const MIB: usize = 1024 * 1024;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_moto() -> (Moto, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let moto = Moto(
        Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server (pip install 'moto[server]')"),
    );
    let endpoint = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.write_all(format!("GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").as_bytes());
            let mut head = [0u8; 12];
            if s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200") {
                return (moto, endpoint);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("moto_server did not answer on {endpoint}");
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Resets the peak RSS to the current RSS. `false` when the kernel does not allow it.
fn reset_hwm() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn generate(path: &Path, mib: usize) {
    let mut f = std::io::BufWriter::with_capacity(MIB, std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut buf = vec![0u8; MIB];
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

/// Upload alone: the same multipart upload (same part size, same parts in flight), reading the
/// file once, with no hashing at all (SDK request checksums off).
async fn upload_only(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    path: &Path,
    part_size: usize,
    in_flight: usize,
) {
    let up = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap().to_string();
    let mut file = std::fs::File::open(path).unwrap();
    let mut set = tokio::task::JoinSet::new();
    let mut parts = Vec::new();
    let mut n = 0;
    loop {
        while set.len() >= in_flight {
            parts.push(set.join_next().await.unwrap().unwrap());
        }
        let buf = tokio::task::block_in_place(|| {
            let mut buf = vec![0u8; part_size];
            let mut filled = 0;
            while filled < part_size {
                let r = file.read(&mut buf[filled..]).unwrap();
                if r == 0 {
                    break;
                }
                filled += r;
            }
            buf.truncate(filled);
            buf
        });
        if buf.is_empty() {
            break;
        }
        n += 1;
        let req = client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(&id)
            .part_number(n)
            .body(ByteStream::from(buf));
        set.spawn(async move {
            let out = req.send().await.unwrap();
            CompletedPart::builder()
                .part_number(n)
                .set_e_tag(out.e_tag().map(str::to_string))
                .build()
        });
    }
    while let Some(p) = set.join_next().await {
        parts.push(p.unwrap());
    }
    parts.sort_by_key(|p| p.part_number());
    let done = client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await;
    match done {
        Ok(_) => {}
        // moto's answer has a root element the SDK cannot parse (docs/emulator-notes.md).
        Err(aws_sdk_s3::error::SdkError::ServiceError(se)) if se.raw().status().as_u16() == 200 => {
        }
        Err(e) => panic!("CompleteMultipartUpload: {e:?}"),
    }
}

/// An S3 client for the emulator (path-style), and one that sends no checksum it is not
/// required to (the plain upload's).
async fn clients(endpoint: &str) -> (aws_sdk_s3::Client, aws_sdk_s3::Client) {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "testing", "testing", None, None, "bench",
        ))
        .load()
        .await;
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    );
    let plain = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .build(),
    );
    (client, plain)
}

/// The evidence store in a new Object Lock bucket (GOVERNANCE, 1 day, SSE-S3).
async fn open_store(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    part_size: usize,
    in_flight: usize,
) -> Store {
    let settings = S3Settings {
        retention_mode: RetentionMode::Governance,
        retention_days: 1,
        encryption: Encryption::S3Managed,
        part_size,
        max_parts_in_flight: in_flight,
        expected_owner: None,
    };
    let store = Store::open(
        &EvidenceLocation::parse(&format!("s3://{bucket}")).unwrap(),
        Some(client.clone()),
        settings,
    )
    .unwrap();
    let Store::S3(s3) = &store else {
        unreachable!()
    };
    s3.ensure_bucket(true).await.unwrap();
    store
}

/// Uploads the file without checksums (then deletes it): the time and the peak RSS.
async fn time_upload_only(
    plain: &aws_sdk_s3::Client,
    plain_bucket: &str,
    path: &Path,
    part_size: usize,
    in_flight: usize,
) -> (Duration, u64) {
    reset_hwm();
    let start = Instant::now();
    upload_only(plain, plain_bucket, "disk.img", path, part_size, in_flight).await;
    let t_upload = start.elapsed();
    let m_upload = vm_hwm_kib();
    plain
        .delete_object()
        .bucket(plain_bucket)
        .key("disk.img")
        .send()
        .await
        .unwrap();
    (t_upload, m_upload)
}

fn main() {
    let mib = env_usize("IRR_BENCH_S3_MIB", 2048);
    let part_size = env_usize("IRR_BENCH_PART_MIB", 5) * MIB;
    let in_flight = env_usize("IRR_BENCH_IN_FLIGHT", 2);
    let (_moto, endpoint) = match std::env::var("IRR_BENCH_ENDPOINT") {
        Ok(ep) => (None, ep),
        Err(_) => {
            let (m, ep) = start_moto();
            (Some(m), ep)
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.img");
    generate(&path, mib);
    let _ = hash_file(&path).unwrap(); // page cache warm for every phase

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, plain) = clients(&endpoint).await;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let bucket = format!("irr-bench-{stamp}");
        let store = open_store(&client, &bucket, part_size, in_flight).await;
        let plain_bucket = format!("irr-bench-plain-{stamp}");
        plain
            .create_bucket()
            .bucket(&plain_bucket)
            .send()
            .await
            .unwrap();
        let base_kib = vm_hwm_kib();

        // 1. Hashing alone.
        let resettable = reset_hwm();
        let start = Instant::now();
        let (digest, size) = tokio::task::block_in_place(|| hash_file(&path)).unwrap();
        let t_hash = start.elapsed();
        let m_hash = vm_hwm_kib();

        // 2. Uploading alone.
        let (t_upload, m_upload) =
            time_upload_only(&plain, &plain_bucket, &path, part_size, in_flight).await;

        // 3. Capture: hash + part checksums + Object Lock multipart upload, one pass.
        reset_hwm();
        let start = Instant::now();
        let stored = store
            .put(
                "case/run/artifacts/image/disk.img",
                Source::File(path.clone()),
            )
            .await
            .unwrap();
        let t_capture = start.elapsed();
        let m_capture = vm_hwm_kib();
        assert_eq!((stored.sha256, stored.size), (digest, size));
        // Free the emulator's memory (GOVERNANCE lets a privileged caller delete).
        let _ = client
            .delete_object()
            .bucket(&bucket)
            .key("case/run/artifacts/image/disk.img")
            .set_version_id(stored.version_id.clone())
            .bypass_governance_retention(true)
            .send()
            .await;

        let mb = size as f64 / 1e6;
        let line = |name: &str, t: Duration, kib: u64| {
            println!(
                "  {name:<44} {:>7.2} s  {:>7.0} MB/s  peak RSS {:>6.1} MiB",
                t.as_secs_f64(),
                mb / t.as_secs_f64(),
                kib as f64 / 1024.0
            );
        };
        println!(
            "s3_capture: {mib} MiB file, {} MiB parts, {in_flight} in flight, emulator {endpoint}",
            part_size / MIB
        );
        println!(
            "  sha256 {digest}; s3 checksum {}",
            stored.checksum_sha256.as_deref().unwrap_or("-")
        );
        if !resettable {
            println!("  (peak RSS could not be reset between phases: figures are cumulative)");
        }
        println!(
            "  process baseline before the phases: peak RSS {:.1} MiB",
            base_kib as f64 / 1024.0
        );
        line("hashing alone (hash_file)", t_hash, m_hash);
        line(
            "uploading alone (multipart, no checksums)",
            t_upload,
            m_upload,
        );
        line(
            "capture (Store::put: hash + upload, 1 pass)",
            t_capture,
            m_capture,
        );
        let sum = t_hash + t_upload;
        println!(
            "  capture / (hash + upload) = {:.2} ({:.2} s vs {:.2} s); peak RSS aim < 64 MiB: {}",
            t_capture.as_secs_f64() / sum.as_secs_f64(),
            t_capture.as_secs_f64(),
            sum.as_secs_f64(),
            if m_capture < 64 * 1024 {
                "met"
            } else {
                "NOT met"
            }
        );
    });
}
