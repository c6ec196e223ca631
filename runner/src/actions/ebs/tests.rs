//! Unit tests of `ebs.hash_snapshots`: the listing's checks on hostile answers, and the
//! whole pipeline against a mocked EBS (pages, checksums, zeros), where the emulator cannot
//! produce the case.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_ebs::operation::get_snapshot_block::GetSnapshotBlockOutput;
use aws_sdk_ebs::operation::list_snapshot_blocks::ListSnapshotBlocksOutput;
use aws_sdk_ebs::primitives::ByteStream;
use aws_sdk_ebs::types::{Block, ChecksumAlgorithm};
use aws_smithy_mocks::{mock, MockResponseInterceptor, RuleMode};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::image::{Geometry, Listing, Page, GIB};
use super::*;
use crate::actions::test_support::{ctx_with_iam, NullRecorder};

const SNAP: &str = "snap-0123456789abcdef0";

fn page(blocks: &[i32], next: Option<&str>) -> Page {
    Page {
        volume_size: Some(1),
        block_size: Some(512),
        blocks: blocks
            .iter()
            .map(|i| (Some(*i), Some(format!("t{i}"))))
            .collect(),
        next_token: next.map(str::to_owned),
    }
}

fn refused(r: Result<Vec<image::Written>, ActionError>, says: &str) {
    let e = r.expect_err("a hostile page must be refused").to_string();
    assert!(e.contains(SNAP) && e.contains(says), "{e}");
}

#[test]
fn geometry_accepts_aws_and_moto_and_refuses_the_rest() {
    let aws = Geometry::new(SNAP, Some(8), Some(524_288)).unwrap();
    assert_eq!((aws.blocks, aws.size()), (16_384, 8 * GIB));
    let moto = Geometry::new(SNAP, Some(1), Some(512)).unwrap();
    assert_eq!(moto.blocks, 2_097_152);
    for (v, b, says) in [
        (Some(0), Some(512), "VolumeSize 0"),
        (Some(-1), Some(512), "VolumeSize -1"),
        (Some(65_537), Some(524_288), "VolumeSize 65537"),
        (Some(i64::MAX), Some(524_288), "VolumeSize"),
        (None, Some(512), "no VolumeSize"),
        (Some(1), Some(0), "BlockSize 0"),
        (Some(1), Some(1000), "BlockSize 1000"),
        (Some(1), Some(1 << 20), "BlockSize 1048576"),
        (Some(1), None, "no BlockSize"),
        // 64 TiB of 512-byte blocks: more than a 32-bit block index addresses.
        (Some(65_536), Some(512), "more than a block index"),
    ] {
        let e = Geometry::new(SNAP, v, b).unwrap_err().to_string();
        assert!(e.contains(says) && e.contains(SNAP), "{v:?} {b:?}: {e}");
    }
}

#[test]
fn listing_pages_chain_in_order() {
    let mut l = Listing::new(SNAP);
    assert_eq!(l.accept(page(&[0, 5], Some("n1"))).unwrap().len(), 2);
    assert!(!l.done());
    assert_eq!(l.accept(page(&[], Some("n2"))).unwrap(), vec![]);
    let last = l.accept(page(&[6, 2_097_151], None)).unwrap();
    assert_eq!(
        last,
        vec![(6, "t6".to_owned()), (2_097_151, "t2097151".to_owned())]
    );
    assert!(l.done());
    assert_eq!((l.pages(), l.written()), (3, 4));
}

#[test]
fn listing_refuses_hostile_pages() {
    let fresh = || Listing::new(SNAP);
    refused(fresh().accept(page(&[3, 1], None)), "out of order");
    refused(fresh().accept(page(&[3, 3], None)), "duplicated");
    refused(fresh().accept(page(&[-1], None)), "block index -1");
    refused(fresh().accept(page(&[2_097_152], None)), "beyond the last");
    // Across pages: an index at or before the previous page's last.
    let mut l = fresh();
    l.accept(page(&[4, 9], Some("n"))).unwrap();
    refused(
        l.accept(page(&[9], None)),
        "block index 9 after block index 9",
    );
    // The geometry may not change between pages.
    let mut l = fresh();
    l.accept(page(&[1], Some("n"))).unwrap();
    let mut other = page(&[2], None);
    other.block_size = Some(1024);
    refused(l.accept(other), "BlockSize 1024 after");
    // A block without a token, a page larger than asked for.
    let mut p = page(&[1], None);
    p.blocks[0].1 = None;
    refused(fresh().accept(p), "without a block token");
    let big: Vec<i32> = (0..10_001).collect();
    refused(fresh().accept(page(&big, None)), "more than the 10000");
    // Listings that never end: the same token twice, endless empty pages, a token after
    // the last block.
    let mut l = fresh();
    l.accept(page(&[1], Some("same"))).unwrap();
    refused(l.accept(page(&[2], Some("same"))), "the same NextToken");
    let mut l = fresh();
    let mut r = Ok(vec![]);
    for n in 0..100 {
        r = l.accept(page(&[], Some(&format!("e{n}"))));
        if r.is_err() {
            break;
        }
    }
    refused(r, "empty pages");
    // After the last block a NextToken may come (a full last page), but only empty pages.
    let mut l = fresh();
    l.accept(page(&[2_097_151], Some("more"))).unwrap();
    assert_eq!(l.accept(page(&[], None)).unwrap(), vec![]);
    assert!(l.done());
}

#[test]
fn snapshot_ids_are_checked_and_deduplicated() {
    let ids = |v: &[&str]| checked_ids(v.iter().map(|s| s.to_string()).collect());
    assert_eq!(
        ids(&[SNAP, "snap-0123abcd", SNAP]).unwrap(),
        vec![SNAP.to_owned(), "snap-0123abcd".to_owned()]
    );
    for bad in [
        "vol-0123abcd",
        "snap-xyz",
        "snap-",
        "snap-0123abcd/../x",
        "",
    ] {
        assert!(ids(&[bad]).is_err(), "{bad}");
    }
}

/// A mocked snapshot: its written blocks, listed `per_page` at a time; `corrupt` names a
/// block whose checksum is not its data's.
struct Mocked {
    gib: i64,
    block_size: usize,
    blocks: BTreeMap<i32, Vec<u8>>,
    per_page: usize,
    corrupt: Option<i32>,
}

impl Mocked {
    /// `sha256sum` of the raw image, computed the plain way.
    fn expected(&self) -> String {
        let mut h = Sha256::new();
        let zero = vec![0u8; self.block_size];
        let total = self.gib as u64 * GIB / self.block_size as u64;
        for i in 0..total as i32 {
            h.update(self.blocks.get(&i).unwrap_or(&zero));
        }
        hex::encode(h.finalize())
    }

    fn ctx(self: Arc<Self>) -> (ActionCtx, aws_smithy_mocks::Rule) {
        let me = self.clone();
        let list =
            mock!(aws_sdk_ebs::Client::list_snapshot_blocks).then_compute_output(move |req| {
                let start: usize = req.next_token().map_or(0, |t| t.parse().unwrap());
                let all: Vec<(&i32, &Vec<u8>)> = me.blocks.iter().collect();
                let end = (start + me.per_page).min(all.len());
                ListSnapshotBlocksOutput::builder()
                    .volume_size(me.gib)
                    .block_size(me.block_size as i32)
                    .set_blocks(Some(
                        all[start..end]
                            .iter()
                            .map(|(i, _)| {
                                Block::builder()
                                    .block_index(**i)
                                    .block_token(format!("t{i}"))
                                    .build()
                            })
                            .collect(),
                    ))
                    .set_next_token((end < all.len()).then(|| end.to_string()))
                    .build()
            });
        let me = self.clone();
        let get = mock!(aws_sdk_ebs::Client::get_snapshot_block).then_compute_output(move |req| {
            let i = req.block_index().unwrap();
            assert_eq!(req.block_token(), Some(format!("t{i}").as_str()));
            let data = me.blocks[&i].clone();
            let mut sum = Sha256::digest(&data).to_vec();
            if me.corrupt == Some(i) {
                sum[0] ^= 1;
            }
            GetSnapshotBlockOutput::builder()
                .data_length(data.len() as i32)
                .checksum(base64::engine::general_purpose::STANDARD.encode(sum))
                .checksum_algorithm(ChecksumAlgorithm::ChecksumAlgorithmSha256)
                .block_data(ByteStream::from(data))
                .build()
        });
        let ctx = ebs_ctx(&[&list, &get]);
        (ctx, get)
    }
}

/// An action context whose EBS client answers from `rules` (with the SDK's standard retries).
fn ebs_ctx(rules: &[&aws_smithy_mocks::Rule]) -> ActionCtx {
    let mut interceptor = MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny);
    for r in rules {
        interceptor = interceptor.with_rule(r);
    }
    let conf = aws_sdk_ebs::Config::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_ebs::config::Credentials::new(
            "k", "s", None, None, "t",
        ))
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(8))
        .http_client(aws_smithy_mocks::create_mock_http_client())
        .interceptor(interceptor)
        .build();
    let mut ctx = ctx_with_iam("IR-1", RuleMode::MatchAny, &[]);
    ctx.aws.ebs = super::super::OnFirstUse::ready(aws_sdk_ebs::Client::from_conf(conf));
    ctx.recorder = Arc::new(NullRecorder::default());
    ctx
}

/// A 1 GiB volume of 64 KiB blocks: a few written (pages of 2), the rest zeros.
fn sparse(corrupt: Option<i32>) -> Arc<Mocked> {
    let blocks = [0, 1, 7, 4_000, 16_383]
        .into_iter()
        .map(|i| {
            (
                i,
                (0..65_536)
                    .map(|b| (b as u32 * 31 + i as u32) as u8)
                    .collect(),
            )
        })
        .collect();
    Arc::new(Mocked {
        gib: 1,
        block_size: 65_536,
        blocks,
        per_page: 2,
        corrupt,
    })
}

#[tokio::test]
async fn the_hash_is_the_raw_image_hash_across_pages_and_zeros() {
    let m = sparse(None);
    let want = m.expected();
    let (ctx, _) = m.clone().ctx();
    let out = hash_snapshots(
        &ctx,
        HashParams {
            snapshot_ids: vec![SNAP.to_owned()],
        },
    )
    .await
    .unwrap();
    assert_eq!(out.outputs["hashes"][SNAP], want);
    let h = image::hash_snapshot(&ctx, SNAP).await.unwrap();
    assert_eq!(
        (
            h.sha256.as_str(),
            h.size,
            h.block_size,
            h.blocks,
            h.blocks_written,
            h.listing_pages
        ),
        (want.as_str(), GIB, 65_536, 16_384, 5, 3)
    );
}

#[tokio::test]
async fn a_block_that_does_not_match_its_checksum_fails_naming_it() {
    let (ctx, _) = sparse(Some(4_000)).ctx();
    let e = hash_snapshots(
        &ctx,
        HashParams {
            snapshot_ids: vec![SNAP.to_owned()],
        },
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(&format!("snapshot {SNAP} block 4000"))
            && e.contains("does not match its checksum"),
        "{e}"
    );
}

#[tokio::test]
async fn a_short_block_fails_naming_it() {
    let mut m = Arc::try_unwrap(sparse(None)).ok().unwrap();
    m.blocks.get_mut(&7).unwrap().truncate(100);
    let (ctx, _) = Arc::new(m).ctx();
    let e = image::hash_snapshot(&ctx, SNAP)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("snapshot {SNAP} block 7")) && e.contains("DataLength 100"),
        "{e}"
    );
}

#[tokio::test]
async fn a_dry_run_lists_one_page_and_hashes_nothing() {
    let (mut ctx, get) = sparse(None).ctx();
    ctx.dry_run = true;
    let out = hash_snapshots(
        &ctx,
        HashParams {
            snapshot_ids: vec![SNAP.to_owned()],
        },
    )
    .await
    .unwrap();
    assert_eq!(out.outputs["hashes"], json!({}));
    assert_eq!(get.num_calls(), 0, "a dry run reads no block");
    assert!(out.outputs["would"][0].as_str().unwrap().contains(SNAP));
}

#[tokio::test]
async fn a_fully_written_image_at_aws_geometry_hashes_as_its_raw_bytes() {
    // 1 GiB of AWS's 512 KiB blocks, every one written (no zero block), listed 1,000 a page.
    let blocks = (0..2_048)
        .map(|i| (i, vec![(i % 251) as u8 + 1; 524_288]))
        .collect();
    let m = Arc::new(Mocked {
        gib: 1,
        block_size: 524_288,
        blocks,
        per_page: 1_000,
        corrupt: None,
    });
    let want = m.expected();
    let (ctx, get) = m.ctx();
    let h = image::hash_snapshot(&ctx, SNAP).await.unwrap();
    assert_eq!(h.sha256, want);
    assert_eq!(
        (h.blocks, h.blocks_written, h.listing_pages),
        (2_048, 2_048, 3)
    );
    assert_eq!(get.num_calls(), 2_048);
}

#[tokio::test]
async fn a_throttled_block_read_is_retried_by_the_sdk() {
    let data = vec![7u8; 512];
    let sum = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&data));
    let list = mock!(aws_sdk_ebs::Client::list_snapshot_blocks).then_output(|| {
        ListSnapshotBlocksOutput::builder()
            .volume_size(1)
            .block_size(512)
            .blocks(Block::builder().block_index(3).block_token("t3").build())
            .build()
    });
    let throttled = r#"{"__type":"RequestThrottledException","message":"Rate exceeded"}"#;
    let get = mock!(aws_sdk_ebs::Client::get_snapshot_block)
        .sequence()
        .http_status(400, Some(throttled.to_owned()))
        .times(2)
        .output(move || {
            GetSnapshotBlockOutput::builder()
                .data_length(512)
                .checksum(sum.clone())
                .checksum_algorithm(ChecksumAlgorithm::ChecksumAlgorithmSha256)
                .block_data(ByteStream::from(data.clone()))
                .build()
        })
        .build();
    let ctx = ebs_ctx(&[&list, &get]);
    let h = image::hash_snapshot(&ctx, SNAP).await.unwrap();
    assert_eq!(get.num_calls(), 3, "two throttled answers, then the block");
    let mut want = Sha256::new();
    let mut zeros = vec![0u8; 3 * 512];
    zeros.extend([7u8; 512]);
    want.update(&zeros);
    let rest = GIB - 4 * 512;
    let mib = vec![0u8; 1 << 20];
    let mut left = rest;
    while left > 0 {
        let n = left.min(mib.len() as u64) as usize;
        want.update(&mib[..n]);
        left -= n as u64;
    }
    assert_eq!(h.sha256, hex::encode(want.finalize()));
}
