//! `ec2.protect_instance`: keep the instance and its volumes from being destroyed.

use super::*;

/// `ec2.protect_instance`: its declaration (see [`Action`]); the parameters are [`InstanceParams`].
pub struct ProtectInstance;

impl Action for ProtectInstance {
    type Params = InstanceParams;
    const DECLARATION: Declaration = Declaration {
            name: "ec2.protect_instance",
            summary: "termination protection on, shutdown behaviour stop, DeleteOnTermination off on every volume",
            exactly_one_of: &[],
            outputs: &[out("previous", ANY_MAP, "the settings before the change")],
            api_calls: &["ec2:DescribeInstances", "ec2:DescribeInstanceAttribute", "ec2:ModifyInstanceAttribute"],
            permissions: &[
                perm("ec2:DescribeInstances", ANY),
                perm("ec2:DescribeInstanceAttribute", ANY),
                perm("ec2:ModifyInstanceAttribute", INSTANCE),
            ],
            mutating: true,
            idempotency: "setting a value already set changes nothing",
            undo: Some("ec2:ModifyInstanceAttribute back to the recorded previous values"),
    };
    async fn run(ctx: &ActionCtx, params: InstanceParams) -> Result<ActionOutput, ActionError> {
        protect_instance(ctx, params).await
    }
    async fn prefetch(ctx: &ActionCtx, items: &[InstanceParams]) -> Result<(), ActionError> {
        let ids = items.iter().map(|p| p.instance_id.clone()).collect();
        super::fleet::prefetch_instances(ctx, ids, super::Wants::default()).await
    }
}

/// `ec2.protect_instance`: termination protection on, shutdown behaviour `stop`, and
/// `DeleteOnTermination` off on every EBS volume, so neither an API call nor a shutdown from
/// inside the instance destroys the disks. Output `previous` (the three settings before).
/// Idempotent: settings already in place are not touched. Undo: `ModifyInstanceAttribute`
/// back to `previous`.
pub async fn protect_instance(
    ctx: &ActionCtx,
    p: InstanceParams,
) -> Result<ActionOutput, ActionError> {
    use aws_sdk_ec2::types::{AttributeBooleanValue, InstanceAttributeName};
    let id = p.instance_id.as_str();
    let ec2 = &ctx.aws.ec2;
    // The step's batch (fleet.rs) on a first attempt, else AWS afresh.
    let inst = match ctx.aws.fleet.take(ctx, id).and_then(|p| p.instance) {
        Some(i) => i,
        None => describe_instance(ctx, id).await?,
    };
    // The current settings are read to record them; protection never waits on that read:
    // when it fails (a gap), the setting is put anyway.
    // Both settings are asked at once.
    let (term, shutdown) = tokio::join!(
        async {
            ec2.describe_instance_attribute()
                .instance_id(id)
                .attribute(InstanceAttributeName::DisableApiTermination)
                .send()
                .await
                .map_err(read_err("ec2", "DescribeInstanceAttribute"))
                .map(|o| {
                    o.disable_api_termination()
                        .and_then(|v| v.value())
                        .unwrap_or(false)
                })
        },
        async {
            ec2.describe_instance_attribute()
                .instance_id(id)
                .attribute(InstanceAttributeName::InstanceInitiatedShutdownBehavior)
                .send()
                .await
                .map_err(read_err("ec2", "DescribeInstanceAttribute"))
                .map(|o| {
                    o.instance_initiated_shutdown_behavior()
                        .and_then(|v| v.value())
                        .unwrap_or("stop")
                        .to_owned()
                })
        }
    );
    let term = ctx.or_gap("ec2:DescribeInstanceAttribute(disableApiTermination)", term);
    let shutdown = ctx.or_gap(
        "ec2:DescribeInstanceAttribute(instanceInitiatedShutdownBehavior)",
        shutdown,
    );
    let mut dot = Map::new();
    let mut to_keep = Vec::new();
    for m in inst.block_device_mappings() {
        let (Some(dev), Some(ebs)) = (m.device_name(), m.ebs()) else {
            continue;
        };
        let on = ebs.delete_on_termination().unwrap_or(false);
        dot.insert(
            dev.to_owned(),
            json!({"volume_id": ebs.volume_id(), "delete_on_termination": on}),
        );
        if on {
            to_keep.push((dev.to_owned(), ebs.volume_id().map(str::to_owned)));
        }
    }
    let previous = json!({
        "disable_api_termination": term,
        "instance_initiated_shutdown_behavior": shutdown,
        "delete_on_termination": dot,
    });
    let artifact = ctx.evidence(
        "protection-before.json",
        &json!({"instance_id": id, "previous": previous}),
        "ec2:DescribeInstanceAttribute",
    )?;
    let mut changed = Vec::new();
    if term != Some(true) {
        ctx.mutating_dry(
            "ec2",
            "ModifyInstanceAttribute",
            json!({"instance_id": id, "disable_api_termination": true}),
            ec2.modify_instance_attribute()
                .instance_id(id)
                .disable_api_termination(AttributeBooleanValue::builder().value(true).build())
                .dry_run(ctx.dry_run)
                .send(),
            |_| json!({"previous": term}),
        )
        .await?;
        changed.push("disable_api_termination");
    }
    if shutdown.as_deref() != Some("stop") {
        ctx.mutating_dry(
            "ec2",
            "ModifyInstanceAttribute",
            json!({"instance_id": id, "instance_initiated_shutdown_behavior": "stop"}),
            ec2.modify_instance_attribute()
                .instance_id(id)
                // The Attribute/Value form (documented for this attribute) rather than the
                // structured one, which moto 5.2 ignores (docs/emulator-notes.md).
                .attribute(InstanceAttributeName::InstanceInitiatedShutdownBehavior)
                .value("stop")
                .dry_run(ctx.dry_run)
                .send(),
            |_| json!({"previous": shutdown}),
        )
        .await?;
        changed.push("instance_initiated_shutdown_behavior");
    }
    if !to_keep.is_empty() {
        keep_volumes(ctx, id, &to_keep).await?;
        changed.push("delete_on_termination");
    }
    Ok(ActionOutput::default()
        .with("previous", previous)
        .with(
            "changed",
            changed.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .with("artifacts", vec![artifact]))
}

/// Turns `DeleteOnTermination` off on the volumes `to_keep` (device name, volume id).
async fn keep_volumes(
    ctx: &ActionCtx,
    id: &str,
    to_keep: &[(String, Option<String>)],
) -> Result<(), ActionError> {
    use aws_sdk_ec2::types::{
        EbsInstanceBlockDeviceSpecification, InstanceBlockDeviceMappingSpecification,
    };
    let ec2 = &ctx.aws.ec2;
    let mappings = to_keep
        .iter()
        .map(|(dev, vol)| {
            InstanceBlockDeviceMappingSpecification::builder()
                .device_name(dev)
                .ebs(
                    EbsInstanceBlockDeviceSpecification::builder()
                        .set_volume_id(vol.clone())
                        .delete_on_termination(false)
                        .build(),
                )
                .build()
        })
        .collect();
    ctx.mutating_dry(
        "ec2",
        "ModifyInstanceAttribute",
        json!({"instance_id": id, "block_device_mappings": to_keep.iter().map(|(d, v)| json!({"device_name": d, "volume_id": v, "delete_on_termination": false})).collect::<Vec<_>>()}),
        ec2.modify_instance_attribute()
            .instance_id(id)
            .set_block_device_mappings(Some(mappings))
            .dry_run(ctx.dry_run)
            .send(),
        |_| json!({}),
    )
    .await?;
    Ok(())
}

// ---- ec2.snapshot_volumes -------------------------------------------------------------------
