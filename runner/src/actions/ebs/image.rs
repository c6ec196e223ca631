//! The whole-image SHA-256 of one snapshot through the EBS direct APIs.
//!
//! One pass, in block order, in bounded memory:
//! - the listing (`ListSnapshotBlocks`, paginated) is read one page at a time, only as far
//!   as the blocks in flight need, and checked as a hostile answer ([`Listing::accept`]):
//!   the geometry is sane and constant, the indexes within the volume and strictly
//!   ascending across pages, a listing that never ends cut off;
//! - the written blocks are fetched (`GetSnapshotBlock`) at most [`WINDOW`] at a time,
//!   within the quotas ([`Quota`]), and handed on in block order (`FuturesOrdered`: a
//!   reorder window of in-flight blocks, never the whole image); each block's data is checked
//!   against its own SHA-256 checksum before it is hashed;
//! - one blocking thread hashes them, with zeros for every block never written, so the
//!   result is `sha256sum` of the raw image of a volume restored from the snapshot.
//!
//! Any doubt (a bad checksum, a short block, an index out of order) fails the snapshot with
//! its id and the block index: a wrong hash is never given.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use futures::stream::StreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::actions::{read_err, ActionCtx, ActionError};
use crate::ratelimit::Bucket;

/// One GiB: EBS volume sizes are whole GiB.
pub const GIB: u64 = 1 << 30;
/// The largest EBS volume (io2 Block Express): 64 TiB. A larger `VolumeSize` is refused.
pub const MAX_VOLUME_GIB: u64 = 65_536;
/// The block sizes accepted: powers of two from 512 B (moto's) to 512 KiB (AWS's).
pub const BLOCK_SIZES: std::ops::RangeInclusive<u64> = 512..=524_288;
/// `ListSnapshotBlocks` page size (its maximum).
pub const PAGE: i32 = 10_000;
/// `GetSnapshotBlock` calls in flight per snapshot: the reorder window. With AWS's 512 KiB
/// blocks that is at most 32 MiB of block data held at once.
pub const WINDOW: usize = 64;
/// Consecutive pages with no block (but a `NextToken`) accepted before the listing is
/// taken for a loop.
const MAX_EMPTY_PAGES: u32 = 16;

/// EBS direct API quotas (per account and region; `GetSnapshotBlock` also per snapshot):
/// token buckets refilled 2% slower than AWS's rate, as irr's EC2 buckets are
/// (`crate::ratelimit`). A call that is throttled anyway is retried by the SDK.
#[derive(Debug)]
pub struct Quota {
    get: Mutex<Bucket>,
    list: Mutex<Bucket>,
}

/// `GetSnapshotBlock` requests a second (per account, and per snapshot).
pub const GET_RATE: f64 = 1_000.0;
/// `ListSnapshotBlocks` requests a second (per account).
pub const LIST_RATE: f64 = 50.0;

impl Default for Quota {
    fn default() -> Self {
        Quota::new()
    }
}

impl Quota {
    /// The account's buckets, full.
    pub fn new() -> Quota {
        Quota {
            get: Mutex::new(get_bucket()),
            list: Mutex::new(Bucket::new(
                LIST_RATE / 10.0,
                LIST_RATE * 0.98,
                Instant::now(),
            )),
        }
    }
}

/// A `GetSnapshotBlock` bucket (the account's or one snapshot's): a tenth of a second's burst.
fn get_bucket() -> Bucket {
    Bucket::new(GET_RATE / 10.0, GET_RATE * 0.98, Instant::now())
}

/// Waits for a token from every bucket named.
async fn take(buckets: &[&Mutex<Bucket>]) {
    let now = Instant::now();
    let wait = buckets
        .iter()
        .map(|b| b.lock().unwrap_or_else(|e| e.into_inner()).reserve(now))
        .max()
        .unwrap_or(Duration::ZERO);
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
}

/// A snapshot's geometry as its listing gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Geometry {
    /// `VolumeSize`, in GiB.
    pub volume_gib: u64,
    /// `BlockSize`, in bytes.
    pub block_size: u64,
    /// Blocks in the image (`volume_gib` GiB / `block_size`).
    pub blocks: u64,
}

impl Geometry {
    /// Checks a listing's `VolumeSize` and `BlockSize`.
    pub fn new(
        snapshot: &str,
        volume_gib: Option<i64>,
        block_size: Option<i32>,
    ) -> Result<Geometry, ActionError> {
        let bad = |what: String| {
            ActionError::Target(format!(
                "snapshot {snapshot}: ebs:ListSnapshotBlocks answered {what}: no image hash"
            ))
        };
        let gib = match volume_gib {
            Some(v) if (1..=MAX_VOLUME_GIB as i64).contains(&v) => v as u64,
            Some(v) => {
                return Err(bad(format!(
                    "VolumeSize {v} GiB (an EBS volume has 1 to {MAX_VOLUME_GIB})"
                )))
            }
            None => return Err(bad("no VolumeSize".to_owned())),
        };
        let bs = match block_size {
            Some(b)
                if b > 0 && BLOCK_SIZES.contains(&(b as u64)) && (b as u64).is_power_of_two() =>
            {
                b as u64
            }
            Some(b) => {
                return Err(bad(format!(
                    "BlockSize {b} (expected a power of two from 512 to 524288 bytes)"
                )))
            }
            None => return Err(bad("no BlockSize".to_owned())),
        };
        let blocks = gib * GIB / bs;
        // GetSnapshotBlock's BlockIndex is a 32-bit integer.
        if blocks > i32::MAX as u64 + 1 {
            return Err(bad(format!(
                "{blocks} blocks of {bs} bytes, more than a block index can address"
            )));
        }
        Ok(Geometry {
            volume_gib: gib,
            block_size: bs,
            blocks,
        })
    }

    /// The image's size in bytes.
    pub fn size(&self) -> u64 {
        self.volume_gib * GIB
    }
}

/// One `ListSnapshotBlocks` answer, as the SDK gave it.
#[derive(Clone, Debug, Default)]
pub struct Page {
    /// `VolumeSize`.
    pub volume_size: Option<i64>,
    /// `BlockSize`.
    pub block_size: Option<i32>,
    /// `(BlockIndex, BlockToken)` of each block listed.
    pub blocks: Vec<(Option<i32>, Option<String>)>,
    /// `NextToken`.
    pub next_token: Option<String>,
}

/// A written block to fetch: its index and token.
pub type Written = (u64, String);

/// The listing of one snapshot, page after page, checked as it comes.
#[derive(Debug)]
pub struct Listing {
    snapshot: String,
    geometry: Option<Geometry>,
    /// The lowest index the next block listed may have.
    next_min: u64,
    token: Option<String>,
    done: bool,
    pages: u64,
    empty_run: u32,
    written: u64,
}

impl Listing {
    /// A listing not yet started.
    pub fn new(snapshot: &str) -> Listing {
        Listing {
            snapshot: snapshot.to_owned(),
            geometry: None,
            next_min: 0,
            token: None,
            done: false,
            pages: 0,
            empty_run: 0,
            written: 0,
        }
    }

    /// The geometry, once a page was accepted.
    pub fn geometry(&self) -> Option<Geometry> {
        self.geometry
    }

    /// `true` once the last page was accepted.
    pub fn done(&self) -> bool {
        self.done
    }

    /// Pages accepted so far.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// Blocks listed so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    fn bad(&self, what: String) -> ActionError {
        ActionError::Target(format!(
            "snapshot {}: ebs:ListSnapshotBlocks answered {what}: no image hash",
            self.snapshot
        ))
    }

    /// Checks the next page and returns its blocks to fetch, in order.
    pub fn accept(&mut self, page: Page) -> Result<Vec<Written>, ActionError> {
        let g = Geometry::new(&self.snapshot, page.volume_size, page.block_size)?;
        match self.geometry {
            Some(first) if first != g => {
                return Err(self.bad(format!(
                    "a page with VolumeSize {} GiB and BlockSize {} after {} GiB and {}",
                    g.volume_gib, g.block_size, first.volume_gib, first.block_size
                )))
            }
            _ => self.geometry = Some(g),
        }
        if page.blocks.len() > PAGE as usize {
            return Err(self.bad(format!(
                "{} blocks in one page, more than the {PAGE} asked for",
                page.blocks.len()
            )));
        }
        let mut out = Vec::with_capacity(page.blocks.len());
        for (index, token) in page.blocks {
            let i = match index {
                Some(i) if i >= 0 => i as u64,
                Some(i) => return Err(self.bad(format!("block index {i}"))),
                None => return Err(self.bad("a block without an index".to_owned())),
            };
            if i >= g.blocks {
                return Err(self.bad(format!(
                    "block index {i}, beyond the last of the volume's {} blocks",
                    g.blocks
                )));
            }
            if i < self.next_min {
                return Err(self.bad(format!(
                    "block index {i} after block index {} (duplicated or out of order)",
                    self.next_min - 1
                )));
            }
            let token = token
                .filter(|t| !t.is_empty())
                .ok_or_else(|| self.bad(format!("block {i} without a block token")))?;
            self.next_min = i + 1;
            out.push((i, token));
        }
        self.pages += 1;
        self.written += out.len() as u64;
        self.empty_run = if out.is_empty() {
            self.empty_run + 1
        } else {
            0
        };
        let next = page.next_token.filter(|t| !t.is_empty());
        if next.is_some() && next == self.token {
            return Err(self.bad("the same NextToken twice".to_owned()));
        }
        // A page past the last block can only be empty (the checks above), so this bounds
        // every listing that does not end.
        if next.is_some() && self.empty_run > MAX_EMPTY_PAGES {
            return Err(self.bad(format!(
                "a NextToken after {} empty pages (the listing does not end)",
                self.empty_run
            )));
        }
        self.done = next.is_none();
        self.token = next;
        Ok(out)
    }
}

/// What hashing one snapshot found.
#[derive(Clone, Debug, Serialize)]
pub struct ImageHash {
    /// The snapshot.
    pub snapshot_id: String,
    /// SHA-256 of the raw image, hex.
    pub sha256: String,
    /// The image's size in bytes.
    pub size: u64,
    /// The snapshot's block size in bytes.
    pub block_size: u64,
    /// Blocks in the image.
    pub blocks: u64,
    /// Blocks written (fetched and checked); the others were hashed as zeros.
    pub blocks_written: u64,
    /// `ListSnapshotBlocks` pages read.
    pub listing_pages: u64,
    /// Wall time, in seconds.
    pub seconds: f64,
}

/// Reads one listing page, within the account's `ListSnapshotBlocks` quota.
async fn list_page(
    ctx: &ActionCtx,
    snapshot: &str,
    token: Option<String>,
    max_results: i32,
) -> Result<Page, ActionError> {
    take(&[&ctx.aws.ebs_quota.list]).await;
    let out = ctx
        .aws
        .ebs
        .list_snapshot_blocks()
        .snapshot_id(snapshot)
        .max_results(max_results)
        .set_next_token(token)
        .send()
        .await
        .map_err(read_err("ebs", "ListSnapshotBlocks"))?;
    Ok(Page {
        volume_size: out.volume_size(),
        block_size: out.block_size(),
        blocks: out
            .blocks()
            .iter()
            .map(|b| (b.block_index(), b.block_token().map(str::to_owned)))
            .collect(),
        next_token: out.next_token().map(str::to_owned),
    })
}

/// The first page of a snapshot's listing (at most `max_results` blocks): its geometry
/// (the dry run's permission check).
pub async fn first_page(
    ctx: &ActionCtx,
    snapshot: &str,
    max_results: i32,
) -> Result<(Listing, Vec<Written>), ActionError> {
    let mut listing = Listing::new(snapshot);
    let page = list_page(ctx, snapshot, None, max_results).await?;
    let first = listing.accept(page)?;
    Ok((listing, first))
}

/// One fetched, checked block.
struct Block {
    index: u64,
    data: Bytes,
}

/// Fetches block `index` and checks its data against its checksum.
async fn fetch_block(
    ctx: &ActionCtx,
    own: &Mutex<Bucket>,
    snapshot: &str,
    block_size: u64,
    (index, token): Written,
) -> Result<Block, ActionError> {
    take(&[own, &ctx.aws.ebs_quota.get]).await;
    let out = ctx
        .aws
        .ebs
        .get_snapshot_block()
        .snapshot_id(snapshot)
        .block_index(index as i32)
        .block_token(token)
        .send()
        .await
        .map_err(read_err("ebs", "GetSnapshotBlock"))?;
    let bad = |what: String| {
        ActionError::Target(format!(
            "snapshot {snapshot} block {index}: {what}: no image hash"
        ))
    };
    let algorithm = out.checksum_algorithm().map(|a| a.as_str().to_owned());
    if algorithm.as_deref() != Some("SHA256") {
        return Err(bad(format!("checksum algorithm {algorithm:?}, not SHA256")));
    }
    let want = out
        .checksum()
        .map(str::to_owned)
        .ok_or_else(|| bad("no checksum".to_owned()))?;
    if out.data_length().map(i64::from) != Some(block_size as i64) {
        let told = out
            .data_length()
            .map_or("none".to_owned(), |d| d.to_string());
        return Err(bad(format!(
            "DataLength {told}, not the block size {block_size}"
        )));
    }
    let data = read_bounded(out.block_data, block_size)
        .await
        .map_err(bad)?;
    // The check is a SHA-256 of the block: CPU work, off the async threads.
    let checked = tokio::task::spawn_blocking(move || {
        let got = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&data));
        (got == want, got, want, data)
    })
    .await
    .map_err(|e| bad(format!("checksum task: {e}")))?;
    match checked {
        (true, _, _, data) => Ok(Block { index, data }),
        (false, got, want, _) => Err(bad(format!(
            "the data does not match its checksum (SHA-256 {got}, checksum {want})"
        ))),
    }
}

/// Reads a block's body, refusing more or fewer than `size` bytes (never holding more).
async fn read_bounded(
    mut body: aws_sdk_ebs::primitives::ByteStream,
    size: u64,
) -> Result<Bytes, String> {
    let mut buf = bytes::BytesMut::with_capacity(size as usize);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| format!("reading the block data failed: {e}"))?;
        if (buf.len() + chunk.len()) as u64 > size {
            return Err(format!("more data than the block size {size}"));
        }
        buf.extend_from_slice(&chunk);
    }
    if buf.len() as u64 != size {
        return Err(format!(
            "{} bytes of data, not the block size {size}",
            buf.len()
        ));
    }
    Ok(buf.freeze())
}

/// What the hashing thread is handed, in block order.
enum Feed {
    Block(Block),
    /// Every block was handed on: hash the trailing zeros and finish.
    End,
}

/// Zeros to hash unwritten blocks with, a MiB at a time.
static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

fn hash_zeros(h: &mut Sha256, mut n: u64) {
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        h.update(&ZEROS[..k]);
        n -= k as u64;
    }
}

/// The hashing thread: blocks in order, zeros between them; `None` when the feed stopped
/// before its end (the snapshot failed).
fn hash_feed(g: Geometry, mut rx: tokio::sync::mpsc::Receiver<Feed>) -> Option<String> {
    let mut h = Sha256::new();
    let mut next = 0u64;
    while let Some(feed) = rx.blocking_recv() {
        match feed {
            Feed::Block(b) => {
                // The listing's checks make indexes strictly ascending; were one not, no
                // hash rather than a wrong one.
                if b.index < next {
                    return None;
                }
                hash_zeros(&mut h, (b.index - next) * g.block_size);
                h.update(&b.data);
                next = b.index + 1;
            }
            Feed::End => {
                hash_zeros(&mut h, (g.blocks - next) * g.block_size);
                return Some(hex::encode(h.finalize()));
            }
        }
    }
    None
}

/// SHA-256 of the whole image of `snapshot` (see the module docs).
pub async fn hash_snapshot(ctx: &ActionCtx, snapshot: &str) -> Result<ImageHash, ActionError> {
    let started = Instant::now();
    let (mut listing, first) = first_page(ctx, snapshot, PAGE).await?;
    let g = listing
        .geometry()
        .expect("an accepted page sets the geometry");
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let hasher = tokio::task::spawn_blocking(move || hash_feed(g, rx));
    // `tx` moves in: dropped when the feeding stops, so a failed feed ends the thread too.
    let fed = feed(ctx, snapshot, &mut listing, first.into(), tx).await;
    let sha256 = hasher.await;
    fed?;
    let sha256 = sha256
        .ok()
        .flatten()
        .ok_or_else(|| ActionError::Target(format!("snapshot {snapshot}: the hashing stopped")))?;
    Ok(ImageHash {
        snapshot_id: snapshot.to_owned(),
        sha256,
        size: g.size(),
        block_size: g.block_size,
        blocks: g.blocks,
        blocks_written: listing.written(),
        listing_pages: listing.pages(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Fetches every written block, at most [`WINDOW`] at once, and hands them to the hashing
/// thread in block order. The rest of the listing is read a page at a time, only when the
/// blocks of the pages before are all in flight: at most one page of block tokens and one
/// window of block data are held.
async fn feed(
    ctx: &ActionCtx,
    snapshot: &str,
    listing: &mut Listing,
    mut pending: std::collections::VecDeque<Written>,
    tx: tokio::sync::mpsc::Sender<Feed>,
) -> Result<(), ActionError> {
    let own = Mutex::new(get_bucket());
    let block_size = listing.geometry().map_or(0, |g| g.block_size);
    let mut in_flight = futures::stream::FuturesOrdered::new();
    loop {
        while in_flight.len() < WINDOW {
            if let Some(w) = pending.pop_front() {
                in_flight.push_back(fetch_block(ctx, &own, snapshot, block_size, w));
            } else if listing.done() {
                break;
            } else {
                let page = list_page(ctx, snapshot, listing.token.clone(), PAGE).await?;
                pending.extend(listing.accept(page)?);
            }
        }
        match in_flight.next().await {
            Some(block) => {
                if tx.send(Feed::Block(block?)).await.is_err() {
                    return Ok(());
                }
            }
            None => break,
        }
    }
    let _ = tx.send(Feed::End).await;
    Ok(())
}
