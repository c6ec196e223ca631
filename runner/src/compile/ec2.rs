//! The EC2 actions as states: what each CLI action does, call for call where a state machine
//! can, with the CLI's names and tags so that the CLI and an execution find each other's
//! groups and snapshots (docs/step-functions.md, "Actions").

use serde_json::{json, Value};

use super::asl::{self, attempt_dir, choice, filter, one, params, pluck, present, set, Calls, Seq};
use super::expr::Expr;
use super::{Params, Refusal, Translated};

fn tag(key: &str, value: &Expr) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("Key".into(), json!(key));
    value.put(&mut m, "Value");
    Value::Object(m)
}

fn case() -> Expr {
    Expr::Path("$.case_id".into())
}

fn run_id() -> Expr {
    Expr::Path("$$.Execution.Name".into())
}

/// `DescribeInstances` of one instance, its description at `$.r.described.instance`.
pub(super) fn describe_instance(seq: &mut Seq, id: &str, c: &Calls, instance: &Expr) {
    seq.push(
        format!("{id}: describe instance"),
        c.read(
            "ec2:describeInstances",
            params(&[("InstanceIds", &one(instance))]),
            json!({"instance.$": "$.Reservations[0].Instances[0]"}),
            "$.r.described",
        ),
    );
}

/// An optional read: on failure its error is kept where its answer would have been and the
/// step goes on (the CLI's "optional reads degrade": a gap, never a blocked containment).
/// Its state name ends in `(optional)`, which `irr evidence seal --execution` reads as a gap.
fn optional(mut task: Value, next: &str) -> Value {
    let path = task["ResultPath"].clone();
    task["Catch"] = json!([{"ErrorEquals": ["States.ALL"], "ResultPath": path, "Next": next}]);
    task["Next"] = json!(next);
    task
}

/// `ec2.protect_instance`.
pub fn protect(id: &str, p: &Params, c: &Calls) -> Result<Translated, Refusal> {
    let inst = p.required("instance_id")?;
    let mut seq = Seq::default();
    attempt_dir(&mut seq, id, p.in_map);
    describe_instance(&mut seq, id, c, inst);
    let shutdown = format!("{id}: shutdown behaviour (optional)");
    let before = format!("{id}: before-state");
    seq.push(
        format!("{id}: termination protection (optional)"),
        optional(
            c.read(
                "ec2:describeInstanceAttribute",
                params(&[
                    ("InstanceId", inst),
                    ("Attribute", &Expr::Lit(json!("disableApiTermination"))),
                ]),
                json!({"value.$": "$.DisableApiTermination.Value"}),
                "$.r.termination",
            ),
            &shutdown,
        ),
    );
    seq.push(
        shutdown,
        optional(
            c.read(
                "ec2:describeInstanceAttribute",
                params(&[
                    ("InstanceId", inst),
                    (
                        "Attribute",
                        &Expr::Lit(json!("instanceInitiatedShutdownBehavior")),
                    ),
                ]),
                json!({"value.$": "$.InstanceInitiatedShutdownBehavior.Value"}),
                "$.r.shutdown",
            ),
            &before,
        ),
    );
    let mut b = params(&[("instance_id", inst)]);
    b["previous"] = json!({
        "disable_api_termination.$": "$.r.termination",
        "instance_initiated_shutdown_behavior.$": "$.r.shutdown",
        "block_device_mappings.$": "$.r.described.instance.BlockDeviceMappings",
    });
    seq.push(before, set("$.r.before", b));
    seq.push(
        format!("{id}: record"),
        c.evidence("protection-before.json", "$.r.before"),
    );
    seq.push(
        format!("{id}: termination protection on"),
        c.change(
            "ec2:modifyInstanceAttribute",
            params(&[
                ("InstanceId", inst),
                ("DisableApiTermination", &Expr::Lit(json!({"Value": true}))),
            ]),
        ),
    );
    // The Attribute/Value form, as the CLI (docs/emulator-notes.md).
    seq.push(
        format!("{id}: stop on shutdown"),
        c.change(
            "ec2:modifyInstanceAttribute",
            params(&[
                ("InstanceId", inst),
                (
                    "Attribute",
                    &Expr::Lit(json!("instanceInitiatedShutdownBehavior")),
                ),
                ("Value", &Expr::Lit(json!("stop"))),
            ]),
        ),
    );
    let keep = format!("{id}: keep volumes");
    let outputs = format!("{id}: outputs");
    seq.push(
        format!("{id}: volumes"),
        json!({
            "Type": "Map",
            "ItemsPath": "$.r.described.instance.BlockDeviceMappings",
            "ItemSelector": {"DeviceName.$": "$$.Map.Item.Value.DeviceName"},
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "INLINE"},
                "StartAt": format!("{id}: volume kept on termination"),
                "States": {format!("{id}: volume kept on termination"): {
                    "Type": "Pass",
                    "Parameters": {"DeviceName.$": "$.DeviceName", "Ebs": {"DeleteOnTermination": false}},
                    "End": true
                }}
            },
            "ResultPath": "$.r.keep",
        }),
    );
    seq.push(
        format!("{id}: any volumes"),
        choice(present("$.r.keep[0]"), &keep, &outputs),
    );
    seq.push(
        keep,
        c.change(
            "ec2:modifyInstanceAttribute",
            params(&[
                ("InstanceId", inst),
                ("BlockDeviceMappings", &Expr::Path("$.r.keep".into())),
            ]),
        ),
    );
    seq.push(
        outputs,
        json!({"Type": "Pass", "Parameters": {"previous.$": "$.r.before.previous"}, "End": true}),
    );
    Ok(Translated {
        branch: seq.finish(),
        outputs: vec!["previous"],
    })
}

/// The case's snapshots of the instance in `statuses`.
fn case_snapshots(inst: &Expr, statuses: &[&str]) -> Value {
    json!({
        "OwnerIds": ["self"],
        "Filters": [
            filter("tag:irr:case", &case()),
            filter("tag:irr:instance", inst),
            {"Name": "status", "Values": statuses},
        ]
    })
}

/// Seconds between two looks at pending snapshots.
const POLL_SECONDS: u64 = 10;

/// `ec2.snapshot_volumes`.
pub fn snapshot(id: &str, p: &Params, c: &Calls) -> Result<Translated, Refusal> {
    let inst = p.required("instance_id")?;
    let wait = p.lit_bool("wait", true)?;
    let per_gib = p.lit_u64("wait_seconds_per_gib", 60)?;
    let mut seq = Seq::default();
    seq.push(format!("{id}: start"), asl::set_const("$.r", json!({})));
    let after = if wait {
        format!("{id}: wait budget")
    } else {
        format!("{id}: snapshot ids")
    };
    let create = format!("{id}: create snapshots");
    seq.push(
        format!("{id}: find the case's snapshots"),
        c.read(
            "ec2:describeSnapshots",
            case_snapshots(inst, &["pending", "completed"]),
            json!({"Snapshots.$": "$.Snapshots"}),
            "$.r.snapshots",
        ),
    );
    seq.push(
        format!("{id}: made before"),
        choice(present("$.r.snapshots.Snapshots[0]"), &after, &create),
    );
    let mut spec = params(&[("InstanceId", inst)]);
    spec["ExcludeBootVolume"] = json!(false);
    let mut create_params = json!({
        "InstanceSpecification": spec,
        "TagSpecifications": [{"ResourceType": "snapshot", "Tags": [
            tag("irr:case", &case()),
            tag("irr:run", &run_id()),
            tag("irr:instance", inst),
            tag("Name", &Expr::Call(format!("States.Format('irr-{{}}-{{}}', $.case_id, {})", inst.arg()))),
        ]}],
    });
    Expr::Call(format!(
        "States.Format('irr-case-{{}}-run-{{}}:volumes-of-{{}}', $.case_id, $$.Execution.Name, {})",
        inst.arg()
    ))
    .put(
        create_params.as_object_mut().expect("object"),
        "Description",
    );
    let mut created = c.read(
        "ec2:createSnapshots",
        create_params,
        json!({"Snapshots.$": "$.Snapshots"}),
        "$.r.snapshots",
    );
    created["Next"] = json!(after);
    seq.push(create, created);
    if wait {
        wait_for_snapshots(
            &mut seq,
            id,
            inst,
            c,
            p.timeout.unwrap_or(600 + per_gib * 1024),
        );
    }
    seq.push(
        format!("{id}: snapshot ids"),
        pluck(id, "$.r.snapshots.Snapshots", "SnapshotId", "$.r.ids"),
    );
    seq.push(
        format!("{id}: outputs"),
        json!({"Type": "Pass", "Parameters": {"snapshot_ids.$": "$.r.ids"}, "End": true}),
    );
    Ok(Translated {
        branch: seq.finish(),
        outputs: vec!["snapshot_ids"],
    })
}

/// Looks every [`POLL_SECONDS`] until none of the case's snapshots of the instance is pending,
/// at most `budget` seconds; fails if one is in `error`. Goes on to `ID: snapshot ids`.
fn wait_for_snapshots(seq: &mut Seq, id: &str, inst: &Expr, c: &Calls, budget: u64) {
    let polls = budget.div_ceil(POLL_SECONDS);
    let poll = format!("{id}: pending snapshots");
    seq.push(
        format!("{id}: wait budget"),
        asl::set_const("$.r.count", json!({"n": 0})),
    );
    seq.push(
        poll.clone(),
        c.read(
            "ec2:describeSnapshots",
            case_snapshots(inst, &["pending"]),
            json!({"Snapshots.$": "$.Snapshots"}),
            "$.r.pending",
        ),
    );
    let failed = format!("{id}: failed snapshots");
    let over = format!("{id}: over budget");
    seq.push(
        format!("{id}: any pending"),
        choice(present("$.r.pending.Snapshots[0]"), &over, &failed),
    );
    let wait_state = format!("{id}: wait");
    let timed_out = format!("{id}: timed out");
    seq.push(
        over,
        choice(
            json!({"Variable": "$.r.count.n", "NumericGreaterThanEquals": polls}),
            &timed_out,
            &wait_state,
        ),
    );
    seq.push(
            timed_out,
            json!({"Type": "Fail", "Error": "irr.Timeout", "Cause": format!("the snapshots were still pending after {budget} s")}),
        );
    seq.push(wait_state, json!({"Type": "Wait", "Seconds": POLL_SECONDS}));
    seq.push(
            format!("{id}: count"),
            json!({"Type": "Pass", "Parameters": {"n.$": "States.MathAdd($.r.count.n, 1)"}, "ResultPath": "$.r.count", "Next": poll}),
        );
    let errored = format!("{id}: snapshot failed");
    seq.push(
        failed,
        c.read(
            "ec2:describeSnapshots",
            case_snapshots(inst, &["error"]),
            json!({"Snapshots.$": "$.Snapshots"}),
            "$.r.errored",
        ),
    );
    seq.push(
        format!("{id}: any failed"),
        choice(
            present("$.r.errored.Snapshots[0]"),
            &errored,
            &format!("{id}: snapshot ids"),
        ),
    );
    seq.push(
            errored,
            json!({"Type": "Fail", "Error": "irr.SnapshotFailed", "Cause": "a snapshot of the instance is in the error state"}),
        );
}

/// `ec2.tag_resources`.
pub fn tag_resources(id: &str, p: &Params, c: &Calls) -> Result<Translated, Refusal> {
    let ids = p.required("resource_ids")?;
    let tags = p
        .raw("tags")
        .and_then(Value::as_object)
        .ok_or_else(|| Refusal::param("tags", "must be a map written in the playbook"))?;
    let mut list = Vec::new();
    for (k, v) in tags {
        let e = super::expr::value(v, &p.scope).map_err(|m| Refusal::param("tags", &m))?;
        list.push(tag(k, &e));
    }
    let mut seq = Seq::default();
    attempt_dir(&mut seq, id, p.in_map);
    let record = format!("{id}: record");
    let mut f = json!({"Name": "resource-id"});
    ids.put(f.as_object_mut().expect("object"), "Values");
    seq.push(
        format!("{id}: tags before (optional)"),
        optional(
            c.read(
                "ec2:describeTags",
                json!({"Filters": [f]}),
                json!({"tags.$": "$.Tags"}),
                "$.r.before",
            ),
            &record,
        ),
    );
    seq.push(record, c.evidence("tags-before.json", "$.r.before"));
    let mut t = params(&[("Resources", ids)]);
    t["Tags"] = Value::Array(list);
    seq.push(format!("{id}: tag"), c.change("ec2:createTags", t));
    seq.push(
        format!("{id}: outputs"),
        json!({"Type": "Pass", "Parameters": {}, "End": true}),
    );
    Ok(Translated {
        branch: seq.finish(),
        outputs: vec![],
    })
}

/// `ec2.capture_instance_metadata`: the instance (the one read it cannot do without), then
/// its volumes, interfaces, groups, profile, Auto Scaling membership and console output,
/// each optional, one evidence item each.
pub fn capture(id: &str, p: &Params, c: &Calls) -> Result<Translated, Refusal> {
    let inst = p.required("instance_id")?;
    let mut seq = Seq::default();
    attempt_dir(&mut seq, id, p.in_map);
    describe_instance(&mut seq, id, c, inst);
    seq.push(
        format!("{id}: record instance"),
        c.evidence("instance.json", "$.r.described.instance"),
    );
    let attached = |name: &str| json!({"Filters": [filter(name, inst)]});
    let reads: Vec<(&str, &str, Value, Value, &str)> = vec![
        (
            "volumes",
            "ec2:describeVolumes",
            attached("attachment.instance-id"),
            json!({"volumes.$": "$.Volumes"}),
            "volumes.json",
        ),
        (
            "network interfaces",
            "ec2:describeNetworkInterfaces",
            attached("attachment.instance-id"),
            json!({"network_interfaces.$": "$.NetworkInterfaces"}),
            "network-interfaces.json",
        ),
        (
            "security groups",
            "ec2:describeSecurityGroups",
            json!({"Filters": [{"Name": "group-id", "Values.$": "$.r.groups"}]}),
            json!({"security_groups.$": "$.SecurityGroups"}),
            "security-groups.json",
        ),
        (
            "instance profile",
            "ec2:describeIamInstanceProfileAssociations",
            attached("instance-id"),
            json!({"associations.$": "$.IamInstanceProfileAssociations"}),
            "instance-profile.json",
        ),
        (
            "auto scaling",
            "autoscaling:describeAutoScalingInstances",
            params(&[("InstanceIds", &one(inst))]),
            json!({"instances.$": "$.AutoScalingInstances"}),
            "autoscaling.json",
        ),
        (
            "console output",
            "ec2:getConsoleOutput",
            params(&[("InstanceId", inst)]),
            json!({"output.$": "$.Output"}),
            "console-output.json",
        ),
    ];
    for (i, (what, api, args, sel, file)) in reads.into_iter().enumerate() {
        if what == "security groups" {
            seq.push(
                format!("{id}: group ids"),
                pluck(
                    &format!("{id}: groups"),
                    "$.r.described.instance.SecurityGroups",
                    "GroupId",
                    "$.r.groups",
                ),
            );
        }
        let path = format!("$.r.read{i}");
        let record = format!("{id}: record {what}");
        seq.push(
            format!("{id}: {what} (optional)"),
            optional(c.read(api, args, sel, &path), &record),
        );
        seq.push(record, c.evidence(file, &path));
    }
    seq.push(
        format!("{id}: outputs"),
        json!({"Type": "Pass", "Parameters": {}, "End": true}),
    );
    Ok(Translated {
        branch: seq.finish(),
        outputs: vec![],
    })
}
