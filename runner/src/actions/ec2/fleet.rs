//! Fleet work: reads batched across the items of a `for_each` step, and the case's isolation
//! groups per VPC, made once per run.
//!
//! Before a `for_each` step of an EC2 action runs its items, the executor calls the action's
//! `prefetch` with every item's parameters; the action reads what all of them need in one
//! paginated call per kind (`DescribeInstances`, `DescribeNetworkInterfaces`,
//! `DescribeVolumes`, `DescribeIamInstanceProfileAssociations` and the case's snapshots with
//! filters of up to [`CHUNK`] values, `DescribeAutoScalingInstances` in 50s) and keeps each
//! instance's part here, keyed by step. An item takes its part once: its first attempt uses
//! the batch, a retried attempt reads AWS afresh. Filters and pagination put the batched reads
//! in EC2's larger non-mutating bucket.
//!
//! A batch is as old as the step: an item that runs later sees what AWS said when the step
//! began (its `*-before.json` evidence says when). Isolation does not depend on it: the swap
//! sets an interface's groups whatever they were.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_sdk_ec2::types::{IamInstanceProfileAssociation, Snapshot, Volume};

use super::*;

/// Values per filter in one batched read (EC2 accepts up to 200).
pub const CHUNK: usize = 100;
/// Instances per `DescribeAutoScalingInstances` (its limit).
const ASG_CHUNK: usize = 50;

/// What one instance's reads returned, for one step.
#[derive(Clone, Debug, Default)]
pub struct Prefetched {
    /// `DescribeInstances`.
    pub instance: Option<Instance>,
    /// `DescribeNetworkInterfaces` (attachment.instance-id), when read.
    pub enis: Option<Vec<NetworkInterface>>,
    /// `DescribeVolumes` (attachment.instance-id), when read.
    pub volumes: Option<Vec<Volume>>,
    /// `DescribeIamInstanceProfileAssociations`, when read.
    pub associations: Option<Vec<IamInstanceProfileAssociation>>,
    /// Auto Scaling membership, when it could be read.
    pub autoscaling: Option<Option<(String, String)>>,
    /// The case's snapshots of the instance's volumes (volume id -> snapshots), when read.
    pub case_snapshots: Option<HashMap<String, Vec<Snapshot>>>,
}

/// This case's groups in one VPC, found or made once for the whole run.
#[derive(Clone, Debug)]
pub struct VpcGroups {
    /// The allow-all group (`None` in a dry run when it does not exist yet).
    pub allow_all: Option<String>,
    /// The isolation group (`None` in a dry run when it does not exist yet).
    pub isolation: Option<String>,
}

/// The batches of a run's `for_each` steps and its groups per VPC.
#[derive(Debug, Default)]
pub struct Fleet {
    prefetched: Mutex<HashMap<(String, String), Prefetched>>,
    groups: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<VpcGroups>>>>,
    case_groups: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Vec<SecurityGroup>>>>>,
    /// Batched `DescribeInstances` in flight, by id list: steps that start together (a
    /// fleet's protection and snapshots) share one read instead of making the same one twice.
    instances_in_flight: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Vec<Instance>>>>>,
    /// Snapshot-state reads waiting for the next batched `DescribeSnapshots`.
    snapshot_reads: Arc<Mutex<SnapshotReads>>,
}

/// Where one waiting item gets its snapshots (or the read's error).
type SnapshotAnswer = tokio::sync::oneshot::Sender<Result<Vec<Snapshot>, ActionError>>;

/// Items waiting for their snapshots' states, and whether a reader is running.
#[derive(Debug, Default)]
struct SnapshotReads {
    waiting: Vec<(Vec<String>, SnapshotAnswer)>,
    reading: bool,
}

/// The cell under `key` in `map`, made empty if there is none.
fn cell<T>(
    map: &Mutex<HashMap<String, Arc<tokio::sync::OnceCell<T>>>>,
    key: String,
) -> Arc<tokio::sync::OnceCell<T>> {
    map.lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(key)
        .or_default()
        .clone()
}

/// The step a `STEP/ITEM` step key belongs to.
fn step_of(ctx: &ActionCtx) -> String {
    ctx.step_id
        .split_once('/')
        .map_or(ctx.step_id.as_str(), |(s, _)| s)
        .to_owned()
}

impl Fleet {
    /// Takes the instance's batch for this step, if the step prefetched one.
    pub fn take(&self, ctx: &ActionCtx, instance_id: &str) -> Option<Prefetched> {
        self.prefetched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(step_of(ctx), instance_id.to_owned()))
    }

    fn put(&self, step: &str, batches: HashMap<String, Prefetched>) {
        let mut map = self.prefetched.lock().unwrap_or_else(|e| e.into_inner());
        for (id, p) in batches {
            map.insert((step.to_owned(), id), p);
        }
    }

    /// The case's groups in `vpc_id` for isolation purpose `purpose`, made by the first item
    /// that asks and shared by every other (which waits for it). A failure is not kept: the
    /// next item tries again.
    pub async fn vpc_groups<F, Fut>(
        &self,
        ctx: &ActionCtx,
        vpc_id: &str,
        purpose: &str,
        make: F,
    ) -> Result<VpcGroups, ActionError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<VpcGroups, ActionError>>,
    {
        let key = format!(
            "{}\u{0}{vpc_id}\u{0}{purpose}\u{0}{}",
            ctx.case_id, ctx.dry_run
        );
        cell(&self.groups, key).get_or_try_init(make).await.cloned()
    }

    /// The snapshots `ids` as EC2 describes them now, read together with those every other
    /// item of the run asks for meanwhile: the first request is read at once, the requests
    /// that arrive while it is in flight share the next read (one `DescribeSnapshots` with a
    /// `snapshot-id` filter per [`CHUNK`] ids, so a fleet polling its snapshots makes a few
    /// calls, not one per instance). The reader is a task of its own, so an item that gives
    /// up waiting (its step timed out) never strands the others.
    pub async fn snapshots(
        &self,
        ctx: &ActionCtx,
        ids: &[String],
    ) -> Result<Vec<Snapshot>, ActionError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let start_reader = {
            let mut r = self
                .snapshot_reads
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            r.waiting.push((ids.to_vec(), tx));
            !std::mem::replace(&mut r.reading, true)
        };
        if start_reader {
            tokio::spawn(read_snapshots(ctx.clone(), self.snapshot_reads.clone()));
        }
        rx.await.unwrap_or_else(|_| {
            Err(ActionError::Target(
                "the batched snapshot read ended abnormally".into(),
            ))
        })
    }

    /// The instances `ids` (one filtered, paginated read per [`CHUNK`]), shared with any
    /// other step asking for the same ids at the same moment; a read that has ended is not
    /// kept (the next one asks AWS afresh).
    async fn instances(
        &self,
        ctx: &ActionCtx,
        ids: &[String],
    ) -> Result<Vec<Instance>, ActionError> {
        let key = ids.join(",");
        let cell = cell(&self.instances_in_flight, key.clone());
        let read = cell
            .get_or_try_init(|| async {
                let mut all = Vec::new();
                for chunk in ids.chunks(CHUNK) {
                    let found = ctx
                        .aws
                        .ec2
                        .describe_instances()
                        .filters(filter("instance-id", chunk.iter().cloned()))
                        .into_paginator()
                        .items()
                        .send()
                        .collect::<Result<Vec<_>, _>>()
                        .await
                        .map_err(read_err("ec2", "DescribeInstances"))?;
                    all.extend(found.iter().flat_map(|r| r.instances()).cloned());
                }
                Ok::<_, ActionError>(all)
            })
            .await
            .cloned();
        let mut map = self
            .instances_in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if map.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            map.remove(&key);
        }
        read
    }

    /// The case's groups in `vpc_id` as they were when the run first asked (one read per VPC
    /// for the whole run; the groups the run makes are known from [`Fleet::vpc_groups`]).
    pub async fn case_groups(
        &self,
        ctx: &ActionCtx,
        vpc_id: &str,
    ) -> Result<Vec<SecurityGroup>, ActionError> {
        let key = format!("{}\u{0}{vpc_id}", ctx.case_id);
        cell(&self.case_groups, key)
            .get_or_try_init(|| {
                describe_groups(
                    ctx,
                    vec![
                        filter("vpc-id", [vpc_id]),
                        filter(&format!("tag:{TAG_CASE}"), [ctx.case_id.as_str()]),
                    ],
                )
            })
            .await
            .cloned()
    }
}

/// What an action's prefetch reads for its instances.
#[derive(Clone, Copy, Debug, Default)]
pub struct Wants {
    /// Network interfaces.
    pub enis: bool,
    /// Attached volumes.
    pub volumes: bool,
    /// Instance profile associations.
    pub associations: bool,
    /// Auto Scaling membership.
    pub autoscaling: bool,
    /// The case's snapshots of the attached volumes.
    pub case_snapshots: bool,
}

/// Reads what `wants` says for every instance of `ids` in batches and keeps each instance's
/// part for this step. Reads that fail are left out (the items read for themselves).
pub async fn prefetch_instances(
    ctx: &ActionCtx,
    ids: Vec<String>,
    wants: Wants,
) -> Result<(), ActionError> {
    let mut ids = ids;
    ids.sort();
    ids.dedup();
    if ids.len() < 2 {
        // One item reads for itself: nothing to share.
        return Ok(());
    }
    // Every read names the instances (an `instance-id` filter or the ids), so they all go
    // at once; an id EC2 does not know matches nothing and fails in its own item.
    let (instances, enis, volumes, associations, autoscaling) = tokio::join!(
        ctx.aws.fleet.instances(ctx, &ids),
        async {
            if wants.enis {
                Some(batched_enis(ctx, &ids).await)
            } else {
                None
            }
        },
        async {
            if wants.volumes || wants.case_snapshots {
                Some(batched_volumes(ctx, &ids).await)
            } else {
                None
            }
        },
        async {
            if wants.associations {
                Some(batched_associations(ctx, &ids).await)
            } else {
                None
            }
        },
        async {
            if wants.autoscaling {
                Some(batched_autoscaling(ctx, &ids).await)
            } else {
                None
            }
        },
    );
    let mut batches: HashMap<String, Prefetched> = HashMap::new();
    for i in instances? {
        if let Some(id) = i.instance_id() {
            batches.entry(id.to_owned()).or_default().instance = Some(i.clone());
        }
    }
    if let Some(Ok(mut by)) = enis {
        for (id, b) in batches.iter_mut() {
            let mut list = by.remove(id).unwrap_or_default();
            list.sort_by_key(|n| {
                n.attachment()
                    .and_then(|a| a.device_index())
                    .unwrap_or(i32::MAX)
            });
            b.enis = Some(list);
        }
    }
    if let Some(Ok(by)) = &volumes {
        if wants.volumes {
            for (id, b) in batches.iter_mut() {
                b.volumes = Some(by.get(id).cloned().unwrap_or_default());
            }
        }
    }
    if let Some(Ok(mut by)) = associations {
        for (id, b) in batches.iter_mut() {
            b.associations = Some(by.remove(id).unwrap_or_default());
        }
    }
    if let Some(Ok(by)) = autoscaling {
        for (id, b) in batches.iter_mut() {
            b.autoscaling = Some(by.get(id).cloned());
        }
    }
    if let (true, false, Some(Ok(by))) = (wants.case_snapshots, ctx.dry_run, &volumes) {
        add_case_snapshots(ctx, &mut batches, by).await;
    }
    ctx.aws.fleet.put(&step_of(ctx), batches);
    Ok(())
}

/// The case's snapshots of each batched instance's volumes (those EC2 lists as attached and
/// those in the block device mappings: moto lists some only there), one read for all.
async fn add_case_snapshots(
    ctx: &ActionCtx,
    batches: &mut HashMap<String, Prefetched>,
    by: &HashMap<String, Vec<Volume>>,
) {
    // The volumes EC2 lists as attached and those in the block device mappings (moto
    // lists some only there).
    let mine = |id: &str, b: &Prefetched| -> Vec<String> {
        let mut v: Vec<String> = by
            .get(id)
            .into_iter()
            .flatten()
            .filter_map(|v| v.volume_id().map(str::to_owned))
            .collect();
        if let Some(i) = &b.instance {
            v.extend(attached_volumes(i).into_iter().map(|(_, vol)| vol));
        }
        v.sort();
        v.dedup();
        v
    };
    let mut all: Vec<String> = batches.iter().flat_map(|(id, b)| mine(id, b)).collect();
    all.sort();
    all.dedup();
    if let Ok(snaps) = case_snapshots_of(ctx, &all).await {
        for (id, b) in batches.iter_mut() {
            let list = mine(id, b)
                .into_iter()
                .map(|v| {
                    let found = snaps.get(&v).cloned().unwrap_or_default();
                    (v, found)
                })
                .collect();
            b.case_snapshots = Some(list);
        }
    }
}

/// One filtered read per [`CHUNK`] ids (`read` gets the chunk), each thing found filed under
/// every id `owners` names for it.
async fn by_owner<T, F, Fut>(
    ids: &[String],
    read: F,
    owners: impl Fn(&T) -> Vec<String>,
) -> Result<HashMap<String, Vec<T>>, ActionError>
where
    T: Clone,
    F: Fn(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>, ActionError>>,
{
    let mut by: HashMap<String, Vec<T>> = HashMap::new();
    for chunk in ids.chunks(CHUNK) {
        for found in read(chunk.to_vec()).await? {
            for owner in owners(&found) {
                by.entry(owner).or_default().push(found.clone());
            }
        }
    }
    Ok(by)
}

/// Interfaces by the instance they are attached to.
async fn batched_enis(
    ctx: &ActionCtx,
    ids: &[String],
) -> Result<HashMap<String, Vec<NetworkInterface>>, ActionError> {
    let read = |chunk: Vec<String>| async move {
        ctx.aws
            .ec2
            .describe_network_interfaces()
            .filters(filter("attachment.instance-id", chunk))
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(read_err("ec2", "DescribeNetworkInterfaces"))
    };
    by_owner(ids, read, |n: &NetworkInterface| {
        n.attachment()
            .and_then(|a| a.instance_id())
            .map(str::to_owned)
            .into_iter()
            .collect()
    })
    .await
}

/// Volumes by each instance they are attached to.
async fn batched_volumes(
    ctx: &ActionCtx,
    ids: &[String],
) -> Result<HashMap<String, Vec<Volume>>, ActionError> {
    let read = |chunk: Vec<String>| async move {
        ctx.aws
            .ec2
            .describe_volumes()
            .filters(filter("attachment.instance-id", chunk))
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(read_err("ec2", "DescribeVolumes"))
    };
    by_owner(ids, read, |v: &Volume| {
        v.attachments()
            .iter()
            .filter_map(|a| a.instance_id().map(str::to_owned))
            .collect()
    })
    .await
}

/// Current (associated or associating) profile associations by instance.
async fn batched_associations(
    ctx: &ActionCtx,
    ids: &[String],
) -> Result<HashMap<String, Vec<IamInstanceProfileAssociation>>, ActionError> {
    use aws_sdk_ec2::types::IamInstanceProfileAssociationState as S;
    let read = |chunk: Vec<String>| async move {
        ctx.aws
            .ec2
            .describe_iam_instance_profile_associations()
            .filters(filter("instance-id", chunk))
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(read_err("ec2", "DescribeIamInstanceProfileAssociations"))
    };
    by_owner(ids, read, |a: &IamInstanceProfileAssociation| {
        if matches!(a.state(), Some(S::Associated) | Some(S::Associating)) {
            a.instance_id().map(str::to_owned).into_iter().collect()
        } else {
            Vec::new()
        }
    })
    .await
}

/// Auto Scaling membership by instance (instances in no group are absent), 50 a call.
async fn batched_autoscaling(
    ctx: &ActionCtx,
    ids: &[String],
) -> Result<HashMap<String, (String, String)>, ActionError> {
    let mut by = HashMap::new();
    for chunk in ids.chunks(ASG_CHUNK) {
        let out = tokio::time::timeout(
            OPTIONAL_READ_BUDGET,
            ctx.aws
                .autoscaling
                .describe_auto_scaling_instances()
                .set_instance_ids(Some(chunk.to_vec()))
                .max_records(ASG_CHUNK as i32)
                .send(),
        )
        .await
        .map_err(|_| ActionError::Target("DescribeAutoScalingInstances: no answer".into()))?
        .map_err(read_err("autoscaling", "DescribeAutoScalingInstances"))?;
        for i in out.auto_scaling_instances() {
            if let Some(id) = i.instance_id() {
                by.insert(
                    id.to_owned(),
                    (
                        i.auto_scaling_group_name().unwrap_or_default().to_owned(),
                        i.lifecycle_state().unwrap_or_default().to_owned(),
                    ),
                );
            }
        }
    }
    Ok(by)
}

/// The case's snapshots of `volume_ids` (owned by this account, tagged with the case), by
/// volume: one paginated read per [`CHUNK`] volumes. The volume id is the snapshot's own
/// (`volume-id` filter), not a tag: a tag can be rewritten, the volume a snapshot was taken of
/// cannot.
pub async fn case_snapshots_of(
    ctx: &ActionCtx,
    volume_ids: &[String],
) -> Result<HashMap<String, Vec<Snapshot>>, ActionError> {
    let read = |chunk: Vec<String>| async move {
        ctx.aws
            .ec2
            .describe_snapshots()
            .owner_ids("self")
            // The volume filter first: EC2 does not care, moto applies filters in order and
            // a tag filter over its 1,000-odd image snapshots takes 100-200 ms.
            .filters(filter("volume-id", chunk))
            .filters(filter(&format!("tag:{TAG_CASE}"), [ctx.case_id.as_str()]))
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(read_err("ec2", "DescribeSnapshots"))
    };
    by_owner(volume_ids, read, |s: &Snapshot| {
        s.volume_id().map(str::to_owned).into_iter().collect()
    })
    .await
}

/// The batched snapshot reader ([`Fleet::snapshots`]): while items are waiting, takes them
/// all, reads the union of their ids, and answers each with its own snapshots (or the
/// read's error).
async fn read_snapshots(ctx: ActionCtx, reads: Arc<Mutex<SnapshotReads>>) {
    loop {
        let waiting = {
            let mut r = reads.lock().unwrap_or_else(|e| e.into_inner());
            if r.waiting.is_empty() {
                r.reading = false;
                return;
            }
            std::mem::take(&mut r.waiting)
        };
        let mut ids: Vec<String> = waiting.iter().flat_map(|(i, _)| i.clone()).collect();
        ids.sort();
        ids.dedup();
        let read = |chunk: Vec<String>| {
            let ctx = &ctx;
            async move {
                ctx.aws
                    .ec2
                    .describe_snapshots()
                    .filters(filter("snapshot-id", chunk))
                    .into_paginator()
                    .items()
                    .send()
                    .collect::<Result<Vec<_>, _>>()
                    .await
                    .map_err(read_err("ec2", "DescribeSnapshots"))
            }
        };
        let found = by_owner(&ids, read, |s: &Snapshot| {
            s.snapshot_id().map(str::to_owned).into_iter().collect()
        })
        .await;
        for (want, tx) in waiting {
            let answer = found.as_ref().map_err(Clone::clone).map(|by| {
                want.iter()
                    .filter_map(|w| by.get(w))
                    .flatten()
                    .cloned()
                    .collect()
            });
            let _ = tx.send(answer);
        }
    }
}
