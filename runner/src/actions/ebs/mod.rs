//! EBS direct API actions: `ebs.hash_snapshots`, the whole-image SHA-256 of snapshots with
//! no helper instance and no restored volume.
//!
//! The hash is of the raw image, every block in order with zeros for the blocks never
//! written, so an examiner who restores a volume from the snapshot and runs `sha256sum` on
//! its device gets the same value. The hashing itself is in `image.rs`; against an emulator,
//! `moto.rs` mends moto's listing before the SDK reads it.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::catalog::decl::*;
use crate::catalog::Declaration;

use super::{Action, ActionCtx, ActionError, ActionOutput, AwsResource};

pub mod image;
pub mod moto;

pub use image::{Geometry, ImageHash, Listing, Page, Quota};

/// Parameters of `ebs.hash_snapshots`.
///
/// Each field's doc comment is the parameter's description in the catalog.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HashParams {
    /// the snapshots to hash (e.g. `steps.snapshot.outputs.snapshot_ids`)
    // Hashed one after another (each at the per-snapshot quota; the account's quota is the
    // same), a duplicate once.
    pub snapshot_ids: Vec<String>,
}

/// `ebs.hash_snapshots`: its declaration (see [`Action`]); the parameters are [`HashParams`].
pub struct HashSnapshots;

/// The snapshots the EBS direct APIs read: scoped to snapshots, any id (they are an earlier
/// step's output).
const SNAPSHOT: &[&str] = &["arn:aws:ec2:{region}::snapshot/*"];

impl Action for HashSnapshots {
    type Params = HashParams;
    const DECLARATION: Declaration = Declaration {
        name: "ebs.hash_snapshots",
        summary: "SHA-256 of each snapshot's whole disk image through the EBS direct APIs (every block, unwritten blocks as zeros, each block's checksum checked), as sha256sum of a volume restored from it gives",
        exactly_one_of: &[],
        outputs: &[
            out("hashes", STRING_MAP, "snapshot id -> SHA-256 of its raw image (hex)"),
            ARTIFACTS,
        ],
        api_calls: &["ebs:ListSnapshotBlocks", "ebs:GetSnapshotBlock"],
        permissions: &[
            perm("ebs:ListSnapshotBlocks", SNAPSHOT),
            perm("ebs:GetSnapshotBlock", SNAPSHOT),
        ],
        mutating: false,
        idempotency: "read-only: a retry hashes the snapshots again (a completed snapshot never changes)",
        undo: None,
    };
    async fn run(ctx: &ActionCtx, params: HashParams) -> Result<ActionOutput, ActionError> {
        hash_snapshots(ctx, params).await
    }
}

/// Snapshot ids as EC2 gives them (`snap-` and 8 or 17 hex digits), each once, in order.
fn checked_ids(ids: Vec<String>) -> Result<Vec<String>, ActionError> {
    let mut out: Vec<String> = Vec::with_capacity(ids.len());
    for id in ids {
        let hex = id.strip_prefix("snap-").unwrap_or("");
        let ok = matches!(hex.len(), 8 | 17) && hex.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok {
            return Err(ActionError::Params(format!(
                "ebs.hash_snapshots: `{id}` is not a snapshot id (snap- and 8 or 17 hex digits)"
            )));
        }
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

/// `ebs.hash_snapshots`: for each snapshot, the SHA-256 of its whole raw image, read through
/// `ListSnapshotBlocks` and `GetSnapshotBlock` (see `image.rs`). Records `images.json`
/// (per snapshot: hash, size, block size, blocks, blocks written, time) and
/// `images.sha256` (`sha256sum -c` lines for restored images named `SNAPSHOT_ID.raw`), and
/// one `ebs-snapshot` resource per snapshot with `sha256`, `size` and `block_size`, so the
/// manifest and its signed statement cover the images. Output `hashes`.
///
/// In a dry run nothing is hashed: one listing page per snapshot checks that
/// `ebs:ListSnapshotBlocks` is permitted and reads the geometry (`GetSnapshotBlock` is not
/// asked).
pub async fn hash_snapshots(ctx: &ActionCtx, p: HashParams) -> Result<ActionOutput, ActionError> {
    let ids = checked_ids(p.snapshot_ids)?;
    if ctx.dry_run {
        return dry_run(ctx, &ids).await;
    }
    let mut done: Vec<ImageHash> = Vec::with_capacity(ids.len());
    for id in &ids {
        match image::hash_snapshot(ctx, id).await {
            Ok(h) => done.push(h),
            Err(e) => {
                // What was hashed before the failure is evidence too.
                images_artifact(ctx, &done, Some((id.as_str(), &e)))?;
                return Err(e);
            }
        }
    }
    let mut artifacts = images_artifact(ctx, &done, None)?;
    let sums: String = done
        .iter()
        .map(|h| format!("{}  {}.raw\n", h.sha256, h.snapshot_id))
        .collect();
    artifacts.push(ctx.recorder.artifact(
        &ctx.step_id,
        "images.sha256",
        sums.as_bytes(),
        "ebs:GetSnapshotBlock",
    )?);
    let mut hashes = Map::new();
    for h in &done {
        ctx.recorder.resource(resource(h));
        hashes.insert(h.snapshot_id.clone(), h.sha256.clone().into());
    }
    Ok(ActionOutput::default()
        .with("hashes", hashes)
        .with("artifacts", artifacts))
}

/// The manifest's record of one image.
fn resource(h: &ImageHash) -> AwsResource {
    let mut details = Map::new();
    details.insert("sha256".into(), h.sha256.clone().into());
    details.insert("size".into(), h.size.into());
    details.insert("block_size".into(), h.block_size.into());
    details.insert("blocks".into(), h.blocks.into());
    details.insert("blocks_written".into(), h.blocks_written.into());
    details.insert("hashed_by".into(), "ebs:GetSnapshotBlock".into());
    AwsResource {
        kind: "ebs-snapshot".into(),
        id: h.snapshot_id.clone(),
        details,
    }
}

/// Records `images.json`: the images hashed, and the snapshot that failed, if one did.
fn images_artifact(
    ctx: &ActionCtx,
    done: &[ImageHash],
    failed: Option<(&str, &ActionError)>,
) -> Result<Vec<String>, ActionError> {
    let images: Vec<Value> = done
        .iter()
        .map(|h| {
            json!({
                "snapshot_id": h.snapshot_id, "sha256": h.sha256, "size": h.size,
                "block_size": h.block_size, "blocks": h.blocks,
                "blocks_written": h.blocks_written, "listing_pages": h.listing_pages,
                "seconds": h.seconds,
            })
        })
        .collect();
    let doc = json!({
        "algorithm": "SHA-256 of the raw image: every block in order, blocks never written as zeros; each written block checked against its own SHA-256 checksum",
        "images": images,
        "failed": failed.map(|(id, e)| json!({"snapshot_id": id, "error": e.to_string()})),
    });
    Ok(vec![ctx.evidence(
        "images.json",
        &doc,
        "ebs:GetSnapshotBlock",
    )?])
}

/// The dry run: one small listing page per snapshot (the permission check), no hash.
async fn dry_run(ctx: &ActionCtx, ids: &[String]) -> Result<ActionOutput, ActionError> {
    let mut seen = Vec::with_capacity(ids.len());
    for id in ids {
        // 100 is ListSnapshotBlocks' smallest page.
        let (listing, _) = image::first_page(ctx, id, 100).await?;
        seen.push(json!({"snapshot_id": id, "geometry": listing.geometry()}));
    }
    let doc = json!({
        "dry_run": true,
        "note": "ebs:ListSnapshotBlocks permitted; nothing hashed (ebs:GetSnapshotBlock not asked)",
        "snapshots": seen,
    });
    let artifact = ctx.evidence("images.json", &doc, "ebs:ListSnapshotBlocks")?;
    Ok(ActionOutput::default()
        .with("hashes", Map::new())
        .with("artifacts", vec![artifact])
        .with(
            "would",
            ids.iter()
                .map(|id| format!("hash the whole image of {id} (ebs:GetSnapshotBlock)"))
                .collect::<Vec<_>>(),
        ))
}

#[cfg(test)]
mod tests;
