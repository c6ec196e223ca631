//! `ec2.snapshot_volumes`: snapshot every attached volume.

use super::*;

/// Parameters of `ec2.snapshot_volumes`.
///
/// Each field's doc comment is the parameter's description in the catalog.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotParams {
    /// the instance
    // The instance whose attached volumes are snapshotted.
    #[schemars(extend("x-irr-type" = "instance_id"))]
    pub instance_id: String,
    /// wait until every snapshot is completed
    #[schemars(extend("default" = true))]
    pub wait: Option<bool>,
    /// wait budget per GiB of volume, on top of 10 minutes
    // In seconds (a first, full snapshot of a large volume can take hours).
    #[schemars(extend("default" = 60))]
    pub wait_seconds_per_gib: Option<u64>,
}

pub(super) struct SnapshotDone {
    volume_id: String,
    snapshot_id: String,
    state: String,
    reused: bool,
}

/// `ec2.snapshot_volumes`: its declaration (see [`Action`]); the parameters are [`SnapshotParams`].
pub struct SnapshotVolumes;

impl Action for SnapshotVolumes {
    type Params = SnapshotParams;
    const DECLARATION: Declaration = Declaration {
        name: "ec2.snapshot_volumes",
        summary:
            "snapshot every attached volume concurrently, tag with the case, wait until completed",
        exactly_one_of: &[],
        outputs: &[
            out(
                "snapshot_ids",
                STRINGS,
                "one snapshot per volume, in device order",
            ),
            out("volumes", STRING_MAP, "volume id -> snapshot id"),
        ],
        api_calls: &[
            "ec2:DescribeInstances",
            "ec2:DescribeVolumes",
            "ec2:DescribeSnapshots",
            "ec2:CreateSnapshot",
        ],
        permissions: &[
            perm("ec2:DescribeInstances", ANY),
            perm("ec2:DescribeVolumes", ANY),
            perm("ec2:DescribeSnapshots", ANY),
            perm(
                "ec2:CreateSnapshot",
                &[
                    "arn:aws:ec2:{region}:{account}:volume/*",
                    "arn:aws:ec2:{region}::snapshot/*",
                ],
            ),
            // Tags are set on creation (TagSpecifications), which needs ec2:CreateTags.
            perm("ec2:CreateTags", &["arn:aws:ec2:{region}::snapshot/*"]),
        ],
        mutating: true,
        idempotency: "an existing snapshot tagged with the case and the volume is reused",
        undo: None,
    };
    async fn run(ctx: &ActionCtx, params: SnapshotParams) -> Result<ActionOutput, ActionError> {
        snapshot_volumes(ctx, params).await
    }
}

/// `ec2.snapshot_volumes`: one snapshot of every attached EBS volume, taken concurrently,
/// tagged `irr:case`, `irr:run`, `irr:volume`, `irr:instance`; waits until every one is
/// completed (budget: 10 minutes plus `wait_seconds_per_gib` per GiB of the volume, polled
/// with a growing interval; a first snapshot of a big volume takes long). Outputs
/// `snapshot_ids` (root volume first, then by device name) and `volumes` (volume id ->
/// snapshot id).
///
/// Idempotent: a pending or completed snapshot of the volume tagged with this case is reused,
/// never a second one. Undo: `ec2:DeleteSnapshot` (not done by irr: snapshots are evidence).
pub async fn snapshot_volumes(
    ctx: &ActionCtx,
    p: SnapshotParams,
) -> Result<ActionOutput, ActionError> {
    let id = p.instance_id.as_str();
    let inst = describe_instance(ctx, id).await?;
    // The volumes' details are evidence and size the wait; the snapshots never wait on
    // them: without them (a gap) each wait gets the 10-minute base budget. They are read by
    // attachment, not by the ids of the block device mappings, so that a volume attached
    // but missing from the mappings (moto shows one for instances an Auto Scaling group
    // launched) is snapshotted too: every volume EC2 says is attached gets a snapshot.
    let described = ctx
        .aws
        .ec2
        .describe_volumes()
        .filters(filter("attachment.instance-id", [id]))
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(read_err("ec2", "DescribeVolumes"));
    let described = ctx.or_gap("ec2:DescribeVolumes", described);
    let described_volumes: &[aws_sdk_ec2::types::Volume] = described.as_deref().unwrap_or_default();
    let mut vols = attached_volumes(&inst);
    for v in described_volumes {
        let Some(vol) = v.volume_id() else { continue };
        if vols.iter().any(|(_, known)| known == vol) {
            continue;
        }
        let device = v
            .attachments()
            .iter()
            .find(|a| a.instance_id() == Some(id))
            .and_then(|a| a.device())
            .unwrap_or_default();
        vols.push((device.to_owned(), vol.to_owned()));
    }
    if vols.is_empty() {
        return Err(ActionError::Target(format!(
            "instance {id} has no EBS volume attached"
        )));
    }
    let sizes: BTreeMap<String, i32> = described_volumes
        .iter()
        .filter_map(|v| Some((v.volume_id()?.to_owned(), v.size().unwrap_or(0))))
        .collect();
    let before = ctx.evidence(
        "volumes-before.json",
        &json!({"instance_id": id, "captured": described.is_some(), "volumes": described_volumes.iter().map(volume_json).collect::<Vec<_>>()}),
        "ec2:DescribeVolumes",
    )?;
    let per_gib = p.wait_seconds_per_gib.unwrap_or(60);
    let wait = p.wait.unwrap_or(true);
    let results = futures::future::try_join_all(vols.iter().map(|(dev, vol)| {
        let size = sizes.get(vol).copied().unwrap_or(0);
        snapshot_one(ctx, id, dev, vol, size, wait, per_gib)
    }))
    .await?;

    let mut ids = Vec::new();
    let mut map = Map::new();
    for r in &results {
        ids.push(Value::from(r.snapshot_id.clone()));
        map.insert(r.volume_id.clone(), r.snapshot_id.clone().into());
        if !ctx.dry_run {
            let mut details = Map::new();
            details.insert("volume_id".into(), r.volume_id.clone().into());
            details.insert("state".into(), r.state.clone().into());
            details.insert("instance_id".into(), id.into());
            ctx.recorder.resource(AwsResource {
                kind: "ebs-snapshot".into(),
                id: r.snapshot_id.clone(),
                details,
            });
        }
    }
    let described: Vec<Value> = if ctx.dry_run {
        Vec::new()
    } else {
        let got = ctx
            .aws
            .ec2
            .describe_snapshots()
            .set_snapshot_ids(Some(
                results.iter().map(|r| r.snapshot_id.clone()).collect(),
            ))
            .send()
            .await
            .map_err(read_err("ec2", "DescribeSnapshots"));
        ctx.or_gap("ec2:DescribeSnapshots", got)
            .map(|o| o.snapshots().iter().map(snapshot_json).collect())
            .unwrap_or_default()
    };
    let after = ctx.evidence(
        "snapshots.json",
        &json!({"instance_id": id, "dry_run": ctx.dry_run, "snapshots": results.iter().map(|r| json!({
            "volume_id": r.volume_id, "snapshot_id": r.snapshot_id, "state": r.state, "reused": r.reused,
        })).collect::<Vec<_>>(), "described": described}),
        "ec2:DescribeSnapshots",
    )?;
    Ok(ActionOutput::default()
        .with("snapshot_ids", ids)
        .with("volumes", map)
        .with("artifacts", vec![before, after]))
}

pub(super) async fn snapshot_one(
    ctx: &ActionCtx,
    instance_id: &str,
    device: &str,
    volume_id: &str,
    size_gib: i32,
    wait: bool,
    per_gib: u64,
) -> Result<SnapshotDone, ActionError> {
    let ec2 = &ctx.aws.ec2;
    let (snapshot_id, mut state, reused) = match case_snapshot(ctx, volume_id).await? {
        Some((id, state)) => (id, state, true),
        None => {
            let mut tags = run_tags(ctx);
            tags.push(tag(TAG_VOLUME, volume_id));
            tags.push(tag(TAG_INSTANCE, instance_id));
            tags.push(tag("Name", &format!("irr-{}-{volume_id}", ctx.case_id)));
            // CreateSnapshot takes no client token: a retry after an answer was lost (a
            // dropped connection, a 500 after the work was done) would take a second
            // snapshot. So the SDK does not retry this call; we do, and look for the
            // case's snapshot of the volume before every new attempt.
            let mut attempt = 0;
            let mut delay = std::time::Duration::from_millis(500);
            loop {
                attempt += 1;
                let created = ctx
                    .mutating_dry(
                        "ec2",
                        "CreateSnapshot",
                        json!({"volume_id": volume_id, "instance_id": instance_id, "device": device}),
                        ec2.create_snapshot()
                            .volume_id(volume_id)
                            .description(format!(
                                "irr-case-{}-run-{}:{volume_id}({device})-of-{instance_id}",
                                ctx.case_id, ctx.run_id
                            ))
                            .tag_specifications(tag_spec(ResourceType::Snapshot, tags.clone()))
                            .dry_run(ctx.dry_run)
                            .customize()
                            .config_override(
                                aws_sdk_ec2::config::Builder::default().retry_config(
                                    aws_sdk_ec2::config::retry::RetryConfig::disabled(),
                                ),
                            )
                            .send(),
                        |o| json!({"snapshot_id": o.snapshot_id(), "state": o.state().map(|s| s.as_str())}),
                    )
                    .await;
                match created {
                    Ok(None) => {
                        return Ok(SnapshotDone {
                            volume_id: volume_id.to_owned(),
                            snapshot_id: format!("dry-run:{volume_id}"),
                            state: "dry-run".into(),
                            reused: false,
                        })
                    }
                    Ok(Some(o)) => {
                        break (
                            o.snapshot_id().unwrap_or_default().to_owned(),
                            o.state().map(|s| s.as_str().to_owned()).unwrap_or_default(),
                            false,
                        )
                    }
                    Err(e) if attempt < 8 && retryable_create(&e) => {
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(std::time::Duration::from_secs(16));
                        if ctx.dry_run {
                            continue;
                        }
                        // EC2 reads are eventually consistent: against AWS a snapshot made
                        // a moment ago may not be listed yet; the wait above helps.
                        if let Some((id, state)) = case_snapshot(ctx, volume_id).await? {
                            break (id, state, true);
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    };
    if wait && state != "completed" {
        state = wait_for_snapshot(ctx, &snapshot_id, size_gib, per_gib).await?;
    }
    Ok(SnapshotDone {
        volume_id: volume_id.to_owned(),
        snapshot_id,
        state,
        reused,
    })
}

/// The newest usable (completed, else pending) snapshot of the volume tagged with this case,
/// as `(id, state)`. An `error` one is useless evidence and ignored.
pub(super) async fn case_snapshot(
    ctx: &ActionCtx,
    volume_id: &str,
) -> Result<Option<(String, String)>, ActionError> {
    use aws_sdk_ec2::types::SnapshotState;
    let existing = ctx
        .aws
        .ec2
        .describe_snapshots()
        .owner_ids("self")
        .filters(filter(&format!("tag:{TAG_CASE}"), [ctx.case_id.as_str()]))
        .filters(filter(&format!("tag:{TAG_VOLUME}"), [volume_id]))
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(read_err("ec2", "DescribeSnapshots"))?;
    let mut usable: Vec<_> = existing
        .iter()
        .filter(|s| {
            matches!(
                s.state(),
                Some(SnapshotState::Completed) | Some(SnapshotState::Pending)
            )
        })
        .collect();
    usable.sort_by_key(|s| {
        (
            s.state() == Some(&SnapshotState::Completed),
            s.start_time().map(|t| t.as_nanos()).unwrap_or(0),
        )
    });
    Ok(usable.last().map(|s| {
        (
            s.snapshot_id().unwrap_or_default().to_owned(),
            s.state().map(|s| s.as_str().to_owned()).unwrap_or_default(),
        )
    }))
}

/// Errors after which a call may be tried again: throttling, server errors, and failures
/// to get an answer at all (`dispatch`: connection reset, timeout).
pub(super) fn retryable_create(e: &ActionError) -> bool {
    is_transient(e)
        || matches!(
            e.code(),
            "dispatch"
                | "RequestLimitExceeded"
                | "InternalError"
                | "InternalFailure"
                | "ServiceUnavailable"
                | "Unavailable"
        )
}

/// Polls a snapshot until it is completed, for at most 10 minutes plus `per_gib` seconds per
/// GiB of the volume (cloud-forensics-utils #354: a fixed number of retries fails on big
/// volumes). The interval grows from 2 s to 30 s.
pub(super) async fn wait_for_snapshot(
    ctx: &ActionCtx,
    snapshot_id: &str,
    size_gib: i32,
    per_gib: u64,
) -> Result<String, ActionError> {
    use aws_sdk_ec2::types::SnapshotState;
    let budget = std::time::Duration::from_secs(600 + per_gib * size_gib.max(1) as u64);
    let start = std::time::Instant::now();
    let mut interval = std::time::Duration::from_secs(2);
    loop {
        // Right after CreateSnapshot, EC2's eventually consistent reads may not know the
        // snapshot yet: keep polling within the budget.
        let out = match ctx
            .aws
            .ec2
            .describe_snapshots()
            .snapshot_ids(snapshot_id)
            .send()
            .await
        {
            Ok(o) => Some(o),
            Err(e) if e.code() == Some("InvalidSnapshot.NotFound") => None,
            Err(e) => return Err(aws_error("ec2", "DescribeSnapshots", &e)),
        };
        let snap = out.as_ref().and_then(|o| o.snapshots().first());
        match snap.and_then(|s| s.state()) {
            Some(SnapshotState::Completed) => return Ok("completed".into()),
            Some(SnapshotState::Error) => {
                return Err(ActionError::Target(format!(
                    "snapshot {snapshot_id} failed: {}",
                    snap.and_then(|s| s.state_message()).unwrap_or("no message")
                )))
            }
            _ => {}
        }
        if start.elapsed() >= budget {
            return Err(ActionError::Aws {
                service: "ec2".into(),
                operation: "DescribeSnapshots".into(),
                code: "timeout".into(),
                message: format!(
                    "snapshot {snapshot_id} ({size_gib} GiB) not completed after {} s (progress {}); it goes on in AWS: run the step again to wait for it",
                    budget.as_secs(),
                    snap.and_then(|s| s.progress()).unwrap_or("?")
                ),
                request_id: None,
            });
        }
        tokio::time::sleep(interval).await;
        interval = (interval * 2).min(std::time::Duration::from_secs(30));
    }
}

// ---- ec2.isolate_instance -------------------------------------------------------------------
