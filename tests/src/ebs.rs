//! Snapshots of known content made through the EBS direct APIs (`StartSnapshot`,
//! `PutSnapshotBlock`, `CompleteSnapshot`: moto serves its EBS direct APIs only for snapshots
//! made this way), and the raw image a volume restored from one would hold, for `sha256sum`.
//! Shared by `tests/ebs_hash.rs` and `benches/ebs_hash.rs`.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use aws_sdk_ebs::primitives::ByteStream;
use aws_sdk_ebs::types::ChecksumAlgorithm;

/// One GiB, the unit of `VolumeSize`.
pub const GIB: u64 = 1 << 30;
/// The block size moto reports (and stores blocks at); AWS's is 524,288 bytes.
pub const MOTO_BLOCK: usize = 512;

/// A snapshot to write: its volume size and its written blocks, in the order written.
#[derive(Clone, Debug)]
pub struct KnownImage {
    /// `VolumeSize`, GiB.
    pub gib: i64,
    /// `(block index, data of MOTO_BLOCK bytes)`, in write order (moto lists blocks in the
    /// order they were first written).
    pub blocks: Vec<(i32, Vec<u8>)>,
    /// A block written with a checksum that is not its data's (moto takes it at face value).
    pub wrong_checksum_at: Option<i32>,
}

/// `n` bytes of non-zero, block-specific data (xorshift seeded by `seed`).
pub fn pattern(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x as u8) | 1
        })
        .collect()
}

impl KnownImage {
    /// A volume of `gib` GiB with these blocks written (pattern data), in ascending order.
    pub fn with_blocks(gib: i64, indexes: impl IntoIterator<Item = i32>) -> KnownImage {
        KnownImage {
            gib,
            blocks: indexes
                .into_iter()
                .map(|i| (i, pattern(i as u64 + 1, MOTO_BLOCK)))
                .collect(),
            wrong_checksum_at: None,
        }
    }

    /// Bytes of block data written.
    pub fn written_bytes(&self) -> u64 {
        self.blocks.iter().map(|(_, d)| d.len() as u64).sum()
    }

    /// Writes the snapshot through the EBS direct APIs (`concurrency` blocks at once: moto
    /// lists blocks in the order their writes arrived, so only 1 keeps the listing in
    /// order); returns its id.
    pub async fn write(&self, ebs: &aws_sdk_ebs::Client, concurrency: usize) -> String {
        use futures::StreamExt;
        let id = ebs
            .start_snapshot()
            .volume_size(self.gib)
            .description("irr test image")
            .send()
            .await
            .expect("StartSnapshot")
            .snapshot_id
            .expect("a snapshot id");
        futures::stream::iter(self.blocks.iter())
            .map(|(i, data)| self.put(ebs, &id, *i, data))
            .buffered(concurrency.max(1))
            .collect::<Vec<()>>()
            .await;
        ebs.complete_snapshot()
            .snapshot_id(&id)
            .changed_blocks_count(self.blocks.len() as i32)
            .send()
            .await
            .expect("CompleteSnapshot");
        id
    }

    async fn put(&self, ebs: &aws_sdk_ebs::Client, id: &str, i: i32, data: &[u8]) {
        use base64::Engine as _;
        use sha2::Digest;
        let mut sum = sha2::Sha256::digest(data).to_vec();
        if self.wrong_checksum_at == Some(i) {
            sum[0] ^= 0xff;
        }
        ebs.put_snapshot_block()
            .snapshot_id(id)
            .block_index(i)
            .data_length(data.len() as i32)
            .checksum(base64::engine::general_purpose::STANDARD.encode(sum))
            .checksum_algorithm(ChecksumAlgorithm::ChecksumAlgorithmSha256)
            .block_data(ByteStream::from(data.to_vec()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("PutSnapshotBlock {i}: {e:?}"));
    }

    /// The raw image of a volume restored from the snapshot, as a (sparse) file at `path`:
    /// `gib` GiB, the written blocks at their offsets, zeros elsewhere.
    pub fn raw_image(&self, path: &Path) {
        let mut f = std::fs::File::create(path).unwrap();
        f.set_len(self.gib as u64 * GIB).unwrap();
        for (i, data) in &self.blocks {
            f.seek(SeekFrom::Start(*i as u64 * MOTO_BLOCK as u64))
                .unwrap();
            f.write_all(data).unwrap();
        }
        f.sync_all().unwrap();
    }
}

/// `sha256sum FILE`'s hash (the real tool).
pub fn sha256sum(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("run sha256sum");
    assert!(out.status.success(), "sha256sum failed");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// `irr run tests/fixtures/hash-snapshots.yaml` over `ids` into local evidence at `evidence`;
/// returns the case and the run's output.
pub fn run_hash(
    endpoint: &str,
    ids: &[&str],
    state: &Path,
    evidence: &Path,
    extra: &[&str],
) -> (String, std::process::Output) {
    let case = crate::unique("IR-ebs");
    let pb = crate::fixture("hash-snapshots.yaml");
    let input = format!("snapshot_ids={}", ids.join(","));
    let mut args = vec![
        "run",
        pb.to_str().unwrap(),
        "--case",
        &case,
        "--input",
        &input,
        "--yes",
        "--evidence",
        evidence.to_str().unwrap(),
        "--output",
        "json",
    ];
    args.extend(extra);
    let out = crate::irr_with(&args, state, endpoint, ("testing", "testing"), &[]);
    (case, out)
}
