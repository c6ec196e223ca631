//! S3 actions: record a bucket's exposure and close it.
//!
//! S3 has no `DryRun`: in a dry run these actions read, record, and report what they would
//! change, making no mutating call.

use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::catalog::decl::*;
use crate::catalog::Declaration;

use super::{aws_error, Action, ActionCtx, ActionError, ActionOutput};

mod find;
pub use find::*;

/// Parameters of `s3.capture_bucket_config` and `s3.block_public_access`.
///
/// Each field's doc comment is the parameter's description in the catalog.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BucketParams {
    /// the bucket
    #[schemars(extend("x-irr-type" = "bucket_name"))]
    pub bucket: String,
}

/// Error codes S3 answers when a configuration was never set: recorded as absent.
const ABSENT: &[&str] = &[
    "NoSuchBucketPolicy",
    "NoSuchPublicAccessBlockConfiguration",
    "ServerSideEncryptionConfigurationNotFoundError",
    "OwnershipControlsNotFoundError",
];

/// Turns a read's result into `Ok(Some)`, `Ok(None)` for "never configured", or an error
/// (`NoSuchBucket` becomes a target error naming the bucket).
fn absent_ok<T, E>(
    bucket: &str,
    op: &'static str,
    r: Result<T, E>,
) -> Result<Option<T>, ActionError>
where
    E: ProvideErrorMetadata
        + aws_types::request_id::RequestId
        + irr_forensics::awserr::RawBody
        + std::error::Error
        + 'static,
{
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.code().is_some_and(|c| ABSENT.contains(&c)) => Ok(None),
        Err(e) if e.code() == Some("NoSuchBucket") => {
            Err(ActionError::Target(format!("no such bucket: {bucket}")))
        }
        Err(e) => Err(aws_error("s3", op, &e)),
    }
}

/// An optional read of a bucket setting: a target error (no such bucket) fails the action,
/// any other error (denied, throttled out, unsupported) is a gap and `None`.
fn or_gap<T>(
    ctx: &ActionCtx,
    what: &str,
    r: Result<T, ActionError>,
) -> Result<Option<T>, ActionError> {
    match r {
        Err(e @ ActionError::Target(_)) => Err(e),
        r => Ok(ctx.or_gap(what, r)),
    }
}

/// The bucket's public access block, as `{configured, block_public_acls, ...}`.
async fn public_access_block(ctx: &ActionCtx, bucket: &str) -> Result<Value, ActionError> {
    let r = ctx
        .aws
        .s3
        .get_public_access_block()
        .bucket(bucket)
        .send()
        .await;
    let pab = absent_ok(bucket, "GetPublicAccessBlock", r)?;
    let c = pab
        .as_ref()
        .and_then(|o| o.public_access_block_configuration());
    Ok(json!({
        "configured": c.is_some(),
        "block_public_acls": c.and_then(|c| c.block_public_acls()).unwrap_or(false),
        "ignore_public_acls": c.and_then(|c| c.ignore_public_acls()).unwrap_or(false),
        "block_public_policy": c.and_then(|c| c.block_public_policy()).unwrap_or(false),
        "restrict_public_buckets": c.and_then(|c| c.restrict_public_buckets()).unwrap_or(false),
    }))
}

/// `s3.capture_bucket_config`: its declaration (see [`Action`]); the parameters are [`BucketParams`].
pub struct CaptureBucketConfig;

impl Action for CaptureBucketConfig {
    type Params = BucketParams;
    const DECLARATION: Declaration = Declaration {
        name: "s3.capture_bucket_config",
        summary: "record a bucket's policy, ACL, public access block, encryption and versioning",
        exactly_one_of: &[],
        outputs: &[ARTIFACTS],
        api_calls: &[
            "s3:GetBucketAcl",
            "s3:GetBucketPolicy",
            "s3:GetPublicAccessBlock",
            "s3:GetBucketEncryption",
            "s3:GetBucketVersioning",
            "s3:GetBucketOwnershipControls",
        ],
        permissions: &[
            perm("s3:GetBucketPolicy", BUCKET),
            perm("s3:GetBucketAcl", BUCKET),
            perm("s3:GetBucketPublicAccessBlock", BUCKET),
            perm("s3:GetEncryptionConfiguration", BUCKET),
            perm("s3:GetBucketVersioning", BUCKET),
            perm("s3:GetBucketOwnershipControls", BUCKET),
        ],
        mutating: false,
        idempotency: "read-only",
        undo: None,
    };
    async fn run(ctx: &ActionCtx, params: BucketParams) -> Result<ActionOutput, ActionError> {
        capture_bucket_config(ctx, params).await
    }
}

/// `s3.capture_bucket_config`: records the bucket's policy, ACL, public access block, default
/// encryption, versioning and ownership controls, one artifact each. A configuration that was
/// never set is recorded as absent, not as an error. Output `artifacts` (paths).
pub async fn capture_bucket_config(
    ctx: &ActionCtx,
    p: BucketParams,
) -> Result<ActionOutput, ActionError> {
    let b = p.bucket.as_str();
    let s3 = &ctx.aws.s3;
    let mut artifacts = Vec::new();

    // The ACL read first: it fails with NoSuchBucket for a bucket that does not exist.
    let acl = absent_ok(
        b,
        "GetBucketAcl",
        s3.get_bucket_acl().bucket(b).send().await,
    );
    let acl = or_gap(ctx, "s3:GetBucketAcl", acl)?;
    let captured = acl.is_some();
    let acl = acl.flatten().map(|a| {
        json!({
            "owner": a.owner().map(|o| json!({"id": o.id(), "display_name": o.display_name()})),
            "grants": a.grants().iter().map(|g| json!({
                "grantee": g.grantee().map(|ge| json!({
                    "type": ge.r#type().as_str(),
                    "id": ge.id(),
                    "uri": ge.uri(),
                    "display_name": ge.display_name(),
                    "email_address": ge.email_address(),
                })),
                "permission": g.permission().map(|p| p.as_str()),
            })).collect::<Vec<_>>(),
        })
    });
    artifacts.push(ctx.evidence(
        "bucket-acl.json",
        &json!({"bucket": b, "captured": captured, "present": acl.is_some(), "acl": acl}),
        "s3:GetBucketAcl",
    )?);

    let policy = absent_ok(
        b,
        "GetBucketPolicy",
        s3.get_bucket_policy().bucket(b).send().await,
    );
    let policy = or_gap(ctx, "s3:GetBucketPolicy", policy)?;
    let captured = policy.is_some();
    let policy = policy
        .flatten()
        .and_then(|o| o.policy().map(str::to_owned))
        .map(|text| serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text)));
    artifacts.push(ctx.evidence(
        "bucket-policy.json",
        &json!({"bucket": b, "captured": captured, "present": policy.is_some(), "policy": policy}),
        "s3:GetBucketPolicy",
    )?);

    let pab = or_gap(
        ctx,
        "s3:GetPublicAccessBlock",
        public_access_block(ctx, b).await,
    )?;
    artifacts.push(ctx.evidence(
        "public-access-block.json",
        &json!({"bucket": b, "captured": pab.is_some(), "present": pab.as_ref().map(|p| p["configured"].clone()), "public_access_block": pab}),
        "s3:GetPublicAccessBlock",
    )?);

    artifacts.push(encryption_artifact(ctx, b).await?);
    artifacts.push(versioning_artifact(ctx, b).await?);
    artifacts.push(ownership_artifact(ctx, b).await?);
    Ok(ActionOutput::default().with("artifacts", artifacts))
}

/// Records the bucket's ownership controls (`bucket-ownership-controls.json`); returns its
/// path.
async fn ownership_artifact(ctx: &ActionCtx, b: &str) -> Result<String, ActionError> {
    let s3 = &ctx.aws.s3;
    let own = absent_ok(
        b,
        "GetBucketOwnershipControls",
        s3.get_bucket_ownership_controls().bucket(b).send().await,
    );
    let own = or_gap(ctx, "s3:GetBucketOwnershipControls", own)?;
    let captured = own.is_some();
    let own_rules = own.flatten();
    let own_rules = own_rules
        .as_ref()
        .and_then(|o| o.ownership_controls())
        .map(|c| {
            c.rules()
                .iter()
                .map(|r| r.object_ownership().as_str().to_owned())
                .collect::<Vec<_>>()
        });
    ctx.evidence(
        "bucket-ownership-controls.json",
        &json!({"bucket": b, "captured": captured, "present": own_rules.is_some(), "object_ownership": own_rules}),
        "s3:GetBucketOwnershipControls",
    )
}

/// Records the bucket's versioning (`bucket-versioning.json`); returns its path.
async fn versioning_artifact(ctx: &ActionCtx, b: &str) -> Result<String, ActionError> {
    let s3 = &ctx.aws.s3;
    let mut captured = true;
    let (status, mfa_delete) = match s3.get_bucket_versioning().bucket(b).send().await {
        Ok(v) => (
            v.status().map(|s| s.as_str().to_owned()),
            v.mfa_delete().map(|s| s.as_str().to_owned()),
        ),
        Err(e) if e.code() == Some("NoSuchBucket") => {
            return Err(ActionError::Target(format!("no such bucket: {b}")))
        }
        // moto answers a never-versioned bucket with an empty `<GetBucketVersioningResponse/>`
        // where S3 sends an empty `<VersioningConfiguration/>`, and the SDK cannot parse it.
        // Read that one answer as "never enabled" (S3 itself never sends it).
        Err(e) if never_versioned_emulator_answer(&e) => (None, None),
        Err(e) => {
            ctx.gap(
                "s3:GetBucketVersioning",
                &aws_error("s3", "GetBucketVersioning", &e),
            );
            captured = false;
            (None, None)
        }
    };
    ctx.evidence(
        "bucket-versioning.json",
        &json!({
            "bucket": b,
            "captured": captured,
            // A bucket whose versioning was never enabled has no status at all.
            "present": status.is_some(),
            "status": status,
            "mfa_delete": mfa_delete,
        }),
        "s3:GetBucketVersioning",
    )
}

/// Records the bucket's default encryption (`bucket-encryption.json`); returns its path.
async fn encryption_artifact(ctx: &ActionCtx, b: &str) -> Result<String, ActionError> {
    let s3 = &ctx.aws.s3;
    let enc = absent_ok(
        b,
        "GetBucketEncryption",
        s3.get_bucket_encryption().bucket(b).send().await,
    );
    let enc = or_gap(ctx, "s3:GetEncryptionConfiguration", enc)?;
    let captured = enc.is_some();
    let rules = enc
        .flatten()
        .as_ref()
        .and_then(|e| e.server_side_encryption_configuration())
        .map(|c| {
            c.rules()
                .iter()
                .map(|r| {
                    let d = r.apply_server_side_encryption_by_default();
                    json!({
                        "sse_algorithm": d.map(|d| d.sse_algorithm().as_str()),
                        "kms_master_key_id": d.and_then(|d| d.kms_master_key_id()),
                        "bucket_key_enabled": r.bucket_key_enabled(),
                    })
                })
                .collect::<Vec<_>>()
        });
    ctx.evidence(
        "bucket-encryption.json",
        &json!({"bucket": b, "captured": captured, "present": rules.is_some(), "rules": rules}),
        "s3:GetEncryptionConfiguration",
    )
}

fn never_versioned_emulator_answer<E>(
    e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> bool {
    let Some(raw) = e.raw_response() else {
        return false;
    };
    raw.status().as_u16() == 200
        && raw.body().bytes().is_some_and(|b| {
            let body = String::from_utf8_lossy(b);
            body.contains("<GetBucketVersioningResponse") && !body.contains("<Status>")
        })
}

/// `s3.block_public_access`: its declaration (see [`Action`]); the parameters are [`BucketParams`].
pub struct BlockPublicAccess;

impl Action for BlockPublicAccess {
    type Params = BucketParams;
    const DECLARATION: Declaration = Declaration {
        name: "s3.block_public_access",
        summary: "turn on all four public access block settings of a bucket",
        exactly_one_of: &[],
        outputs: &[out(
            "previous",
            ANY_MAP,
            "the public access block before the change",
        )],
        api_calls: &["s3:GetPublicAccessBlock", "s3:PutPublicAccessBlock"],
        permissions: &[
            perm("s3:GetBucketPublicAccessBlock", BUCKET),
            perm("s3:PutBucketPublicAccessBlock", BUCKET),
        ],
        mutating: true,
        idempotency: "setting the block again changes nothing",
        undo: Some("s3:PutPublicAccessBlock with the recorded previous settings"),
    };
    async fn run(ctx: &ActionCtx, params: BucketParams) -> Result<ActionOutput, ActionError> {
        block_public_access(ctx, params).await
    }
}

/// `s3.block_public_access`: turns on all four public access block settings of the bucket.
/// Records the previous settings first (output `previous`); makes no call when all four are
/// already on. Undo: put `previous` back (or delete the configuration when it was absent).
///
/// The account-level public access block (S3 Control) is a separate setting and is not
/// touched here.
pub async fn block_public_access(
    ctx: &ActionCtx,
    p: BucketParams,
) -> Result<ActionOutput, ActionError> {
    let b = p.bucket.as_str();
    // Protection never waits on an optional read: when the current settings cannot be read
    // (a gap), all four are put anyway.
    let previous = or_gap(
        ctx,
        "s3:GetPublicAccessBlock",
        public_access_block(ctx, b).await,
    )?
    .unwrap_or(Value::Null);
    let artifact = ctx.evidence(
        "public-access-block-before.json",
        &json!({"bucket": b, "public_access_block": previous}),
        "s3:GetPublicAccessBlock",
    )?;
    let all_on = [
        "block_public_acls",
        "ignore_public_acls",
        "block_public_policy",
        "restrict_public_buckets",
    ]
    .iter()
    .all(|k| previous[*k] == Value::Bool(true));
    let mut out = ActionOutput::default()
        .with("previous", previous)
        .with("artifacts", vec![artifact])
        .with("changed", !all_on);
    if all_on {
        return Ok(out);
    }
    if ctx.dry_run {
        // S3 has no DryRun: report, change nothing.
        return Ok(out.with(
            "would",
            vec![format!("s3:PutPublicAccessBlock {b}: all four settings on")],
        ));
    }
    let conf = aws_sdk_s3::types::PublicAccessBlockConfiguration::builder()
        .block_public_acls(true)
        .ignore_public_acls(true)
        .block_public_policy(true)
        .restrict_public_buckets(true)
        .build();
    ctx.mutating(
        "s3",
        "PutPublicAccessBlock",
        json!({"bucket": b, "block_public_acls": true, "ignore_public_acls": true,
               "block_public_policy": true, "restrict_public_buckets": true}),
        ctx.aws
            .s3
            .put_public_access_block()
            .bucket(b)
            .public_access_block_configuration(conf)
            .send(),
        |_| json!({}),
    )
    .await?;
    out = out.with("changed", true);
    Ok(out)
}
