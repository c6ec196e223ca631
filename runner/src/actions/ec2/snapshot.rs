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
    /// How it was made: `CreateSnapshots`, `CreateSnapshot`, or `reused`.
    call: &'static str,
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
            "ec2:CreateSnapshots",
            "ec2:CreateSnapshot",
        ],
        permissions: &[
            perm("ec2:DescribeInstances", ANY),
            perm("ec2:DescribeVolumes", ANY),
            perm("ec2:DescribeSnapshots", ANY),
            // One call per instance: crash-consistent across its volumes.
            perm(
                "ec2:CreateSnapshots",
                &[
                    "arn:aws:ec2:{region}:{account}:instance/{instance_id}",
                    "arn:aws:ec2:{region}:{account}:volume/*",
                    "arn:aws:ec2:{region}::snapshot/*",
                ],
            ),
            // Per volume, where CreateSnapshots cannot serve (a volume it did not cover, a
            // resumed run that has some volumes' snapshots already).
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
        idempotency:
            "an existing snapshot of the volume (its own volume id) tagged with the case is reused",
        undo: None,
    };
    async fn run(ctx: &ActionCtx, params: SnapshotParams) -> Result<ActionOutput, ActionError> {
        snapshot_volumes(ctx, params).await
    }
    async fn prefetch(ctx: &ActionCtx, items: &[SnapshotParams]) -> Result<(), ActionError> {
        let wants = super::Wants {
            volumes: true,
            case_snapshots: true,
            ..Default::default()
        };
        let ids = items.iter().map(|p| p.instance_id.clone()).collect();
        super::fleet::prefetch_instances(ctx, ids, wants).await
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
    // The step's batch (fleet.rs) on a first attempt, else AWS afresh.
    let pre = ctx.aws.fleet.take(ctx, id).unwrap_or_default();
    let (inst, described) = instance_and_volumes(ctx, id, pre.instance, pre.volumes).await;
    let inst = inst?;
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
    let results = take_snapshots(ctx, id, &vols, pre.case_snapshots).await?;
    let pending: Vec<(String, i32)> = results
        .iter()
        .filter(|r| r.state != "completed" && r.state != "dry-run")
        .map(|r| {
            (
                r.snapshot_id.clone(),
                sizes.get(&r.volume_id).copied().unwrap_or(0),
            )
        })
        .collect();
    let mut results = results;
    let described: Vec<Value> = if ctx.dry_run {
        Vec::new()
    } else {
        // One read for all of the instance's snapshots, which also waits for them.
        let ids: Vec<String> = results.iter().map(|r| r.snapshot_id.clone()).collect();
        let got = if wait && !pending.is_empty() {
            wait_for_snapshots(ctx, &ids, &pending, per_gib)
                .await
                .map(Some)?
        } else {
            ctx.or_gap("ec2:DescribeSnapshots", describe_snapshots(ctx, &ids).await)
        };
        for r in results.iter_mut() {
            if let Some(s) = got
                .iter()
                .flatten()
                .find(|s| s.snapshot_id() == Some(r.snapshot_id.as_str()))
            {
                if let Some(state) = s.state() {
                    r.state = state.as_str().to_owned();
                }
            }
        }
        got.iter().flatten().map(snapshot_json).collect()
    };

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
    let after = ctx.evidence(
        "snapshots.json",
        &json!({"instance_id": id, "dry_run": ctx.dry_run, "snapshots": results.iter().map(|r| json!({
            "volume_id": r.volume_id, "snapshot_id": r.snapshot_id, "state": r.state, "reused": r.reused, "call": r.call,
        })).collect::<Vec<_>>(), "described": described}),
        "ec2:DescribeSnapshots",
    )?;
    Ok(ActionOutput::default()
        .with("snapshot_ids", ids)
        .with("volumes", map)
        .with("artifacts", vec![before, after]))
}

/// The instance and the volumes EC2 lists as attached to it: from the step's batch, else
/// read, both at once (both name the instance).
async fn instance_and_volumes(
    ctx: &ActionCtx,
    id: &str,
    instance: Option<Instance>,
    volumes: Option<Vec<aws_sdk_ec2::types::Volume>>,
) -> (
    Result<Instance, ActionError>,
    Result<Vec<aws_sdk_ec2::types::Volume>, ActionError>,
) {
    // The instance and its volumes are read at once (both name the instance).
    // The volumes' details are evidence and size the wait; the snapshots never wait on
    // them: without them (a gap) each wait gets the 10-minute base budget. They are read by
    // attachment, not by the ids of the block device mappings, so that a volume attached
    // but missing from the mappings (moto shows one for instances an Auto Scaling group
    // launched) is snapshotted too: every volume EC2 says is attached gets a snapshot.
    tokio::join!(
        Box::pin(async {
            match instance {
                Some(i) => Ok(i),
                None => describe_instance(ctx, id).await,
            }
        }),
        async {
            match volumes {
                Some(v) => Ok(v),
                None => instance_volumes(ctx, id).await,
            }
        }
    )
}

/// One snapshot per volume, in `vols` order: the case's existing ones reused (from the
/// step's batch, or one read), then, when none exists yet, one `CreateSnapshots` for the
/// whole instance (crash-consistent across its volumes, tagged at creation), and
/// `CreateSnapshot` for each volume it did not cover (or all of them, when some were already
/// taken: `CreateSnapshots` cannot be told to skip a data volume everywhere, moto ignores
/// `ExcludeDataVolumeIds`).
async fn take_snapshots(
    ctx: &ActionCtx,
    instance_id: &str,
    vols: &[(String, String)],
    prefetched: Option<std::collections::HashMap<String, Vec<aws_sdk_ec2::types::Snapshot>>>,
) -> Result<Vec<SnapshotDone>, ActionError> {
    let volume_ids: Vec<String> = vols.iter().map(|(_, v)| v.clone()).collect();
    let existing = match prefetched {
        Some(p) if volume_ids.iter().all(|v| p.contains_key(v)) => p,
        _ if ctx.dry_run => Default::default(),
        _ => super::fleet::case_snapshots_of(ctx, &volume_ids).await?,
    };
    let mut done: BTreeMap<String, SnapshotDone> = BTreeMap::new();
    for v in &volume_ids {
        if let Some((sid, state)) = existing.get(v).and_then(|l| best_usable(l)) {
            done.insert(
                v.clone(),
                SnapshotDone {
                    volume_id: v.clone(),
                    snapshot_id: sid,
                    state,
                    reused: true,
                    call: "reused",
                },
            );
        }
    }
    if done.is_empty() {
        for d in create_instance_snapshots(ctx, instance_id, &volume_ids).await? {
            done.insert(d.volume_id.clone(), d);
        }
    }
    let missing: Vec<&(String, String)> =
        vols.iter().filter(|(_, v)| !done.contains_key(v)).collect();
    let singles = futures::future::try_join_all(
        missing
            .iter()
            .map(|(dev, vol)| snapshot_one(ctx, instance_id, dev, vol)),
    )
    .await?;
    for d in singles {
        done.insert(d.volume_id.clone(), d);
    }
    Ok(volume_ids.iter().filter_map(|v| done.remove(v)).collect())
}

/// `CreateSnapshots` for the instance: the snapshots it made of `volume_ids` (the volumes it
/// did not cover are left to `CreateSnapshot`), placeholders in a dry run, nothing when the
/// emulator or the account cannot serve it. Like `CreateSnapshot` it takes no client token,
/// so the SDK does not retry it: after an unclear failure the case's snapshots are looked for
/// before another attempt.
async fn create_instance_snapshots(
    ctx: &ActionCtx,
    instance_id: &str,
    volume_ids: &[String],
) -> Result<Vec<SnapshotDone>, ActionError> {
    use aws_sdk_ec2::types::InstanceSpecification;
    let mut tags = run_tags(ctx);
    tags.push(tag(TAG_INSTANCE, instance_id));
    tags.push(tag("Name", &format!("irr-{}-{instance_id}", ctx.case_id)));
    let mut attempt = 0;
    let mut delay = std::time::Duration::from_millis(500);
    loop {
        attempt += 1;
        let created = ctx
            .mutating_dry(
                "ec2",
                "CreateSnapshots",
                json!({"instance_id": instance_id, "volume_ids": volume_ids}),
                ctx.aws
                    .ec2
                    .create_snapshots()
                    .instance_specification(
                        InstanceSpecification::builder()
                            .instance_id(instance_id)
                            .exclude_boot_volume(false)
                            .build(),
                    )
                    .description(format!(
                        "irr-case-{}-run-{}:volumes-of-{instance_id}",
                        ctx.case_id, ctx.run_id
                    ))
                    .tag_specifications(tag_spec(ResourceType::Snapshot, tags.clone()))
                    .dry_run(ctx.dry_run)
                    .customize()
                    .config_override(aws_sdk_ec2::config::Builder::default().retry_config(
                        aws_sdk_ec2::config::retry::RetryConfig::disabled(),
                    ))
                    .send(),
                |o| json!({"snapshots": o.snapshots().iter().map(|s| json!({"snapshot_id": s.snapshot_id(), "volume_id": s.volume_id(), "state": s.state().map(|s| s.as_str())})).collect::<Vec<_>>()}),
            )
            .await;
        match created {
            Ok(None) => {
                return Ok(volume_ids
                    .iter()
                    .map(|v| SnapshotDone {
                        volume_id: v.clone(),
                        snapshot_id: format!("dry-run:{v}"),
                        state: "dry-run".into(),
                        reused: false,
                        call: "CreateSnapshots",
                    })
                    .collect())
            }
            Ok(Some(o)) => {
                return Ok(o
                    .snapshots()
                    .iter()
                    .filter_map(|s| {
                        let v = s.volume_id()?;
                        volume_ids.iter().any(|x| x == v).then(|| SnapshotDone {
                            volume_id: v.to_owned(),
                            snapshot_id: s.snapshot_id().unwrap_or_default().to_owned(),
                            state: s.state().map(|s| s.as_str().to_owned()).unwrap_or_default(),
                            reused: false,
                            call: "CreateSnapshots",
                        })
                    })
                    .collect())
            }
            Err(e) if attempt < 8 && retryable_create(&e) => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(16));
                if ctx.dry_run {
                    continue;
                }
                let found = super::fleet::case_snapshots_of(ctx, volume_ids).await?;
                let reused: Vec<SnapshotDone> = volume_ids
                    .iter()
                    .filter_map(|v| {
                        let (sid, state) = best_usable(found.get(v)?)?;
                        Some(SnapshotDone {
                            volume_id: v.clone(),
                            snapshot_id: sid,
                            state,
                            reused: true,
                            call: "CreateSnapshots",
                        })
                    })
                    .collect();
                if !reused.is_empty() {
                    return Ok(reused);
                }
            }
            // Not served here (an emulator or a partition without it): each volume gets its
            // own CreateSnapshot. The refused call is in the journal. A denial is not
            // hidden: it fails the step like any other.
            Err(e)
                if !ctx.dry_run
                    && matches!(
                        e.code(),
                        "InvalidAction" | "UnsupportedOperation" | "NotImplemented"
                    ) =>
            {
                tracing::info!("CreateSnapshots not served ({e}); one CreateSnapshot per volume");
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        }
    }
}

/// The instance's snapshots, one read shared with the other items of the run that ask at
/// the same time (a `snapshot-id` filter: EC2's larger bucket; see [`super::Fleet::snapshots`]).
async fn describe_snapshots(
    ctx: &ActionCtx,
    ids: &[String],
) -> Result<Vec<aws_sdk_ec2::types::Snapshot>, ActionError> {
    ctx.aws.fleet.snapshots(ctx, ids).await
}

/// The newest usable (completed, else pending) snapshot among `found`, as `(id, state)`. An
/// `error` one is useless evidence and ignored.
fn best_usable(found: &[aws_sdk_ec2::types::Snapshot]) -> Option<(String, String)> {
    use aws_sdk_ec2::types::SnapshotState;
    found
        .iter()
        .filter(|s| {
            matches!(
                s.state(),
                Some(SnapshotState::Completed) | Some(SnapshotState::Pending)
            )
        })
        .max_by_key(|s| {
            (
                s.state() == Some(&SnapshotState::Completed),
                s.start_time().map(|t| t.as_nanos()).unwrap_or(0),
            )
        })
        .map(|s| {
            (
                s.snapshot_id().unwrap_or_default().to_owned(),
                s.state().map(|s| s.as_str().to_owned()).unwrap_or_default(),
            )
        })
}

pub(super) async fn snapshot_one(
    ctx: &ActionCtx,
    instance_id: &str,
    device: &str,
    volume_id: &str,
) -> Result<SnapshotDone, ActionError> {
    let ec2 = &ctx.aws.ec2;
    let (snapshot_id, state, reused) = match case_snapshot(ctx, volume_id).await? {
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
                            call: "CreateSnapshot",
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
    Ok(SnapshotDone {
        volume_id: volume_id.to_owned(),
        snapshot_id,
        state,
        reused,
        call: if reused { "reused" } else { "CreateSnapshot" },
    })
}

/// The newest usable snapshot of the volume tagged with this case, as `(id, state)`.
pub(super) async fn case_snapshot(
    ctx: &ActionCtx,
    volume_id: &str,
) -> Result<Option<(String, String)>, ActionError> {
    let found = super::fleet::case_snapshots_of(ctx, &[volume_id.to_owned()]).await?;
    Ok(found.get(volume_id).and_then(|l| best_usable(l)))
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

/// Polls the instance's snapshots (one read for all of them) until every one is completed,
/// for at most 10 minutes plus `per_gib` seconds per GiB of the largest pending volume
/// (cloud-forensics-utils #354: a fixed number of retries fails on big volumes). The interval
/// grows from 2 s to 30 s; the first read is at once. Returns the last descriptions.
pub(super) async fn wait_for_snapshots(
    ctx: &ActionCtx,
    ids: &[String],
    pending: &[(String, i32)],
    per_gib: u64,
) -> Result<Vec<aws_sdk_ec2::types::Snapshot>, ActionError> {
    use aws_sdk_ec2::types::SnapshotState;
    let size_gib = pending.iter().map(|(_, g)| *g).max().unwrap_or(0);
    let budget = std::time::Duration::from_secs(600 + per_gib * size_gib.max(1) as u64);
    let start = std::time::Instant::now();
    let mut interval = std::time::Duration::from_secs(2);
    loop {
        // Right after CreateSnapshot(s), EC2's eventually consistent reads may not know a
        // snapshot yet: it counts as not completed.
        let got = describe_snapshots(ctx, ids).await?;
        let mut open = Vec::new();
        for id in ids {
            let snap = got.iter().find(|s| s.snapshot_id() == Some(id.as_str()));
            match snap.and_then(|s| s.state()) {
                Some(SnapshotState::Completed) => {}
                Some(SnapshotState::Error) => {
                    return Err(ActionError::Target(format!(
                        "snapshot {id} failed: {}",
                        snap.and_then(|s| s.state_message()).unwrap_or("no message")
                    )))
                }
                _ => open.push((id, snap.and_then(|s| s.progress()).unwrap_or("?"))),
            }
        }
        if open.is_empty() {
            return Ok(got);
        }
        if start.elapsed() >= budget {
            let list: Vec<String> = open.iter().map(|(i, p)| format!("{i} ({p})")).collect();
            return Err(ActionError::Aws {
                service: "ec2".into(),
                operation: "DescribeSnapshots".into(),
                code: "timeout".into(),
                message: format!(
                    "snapshots not completed after {} s: {}; they go on in AWS: run the step again to wait for them",
                    budget.as_secs(),
                    list.join(", ")
                ),
                request_id: None,
            });
        }
        tokio::time::sleep(interval).await;
        interval = (interval * 2).min(std::time::Duration::from_secs(30));
    }
}

// ---- ec2.isolate_instance -------------------------------------------------------------------
