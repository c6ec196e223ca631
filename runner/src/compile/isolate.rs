//! `ec2.isolate_instance` as states: the case's two groups in the instance's VPC (found by
//! their tags, else made, their rules brought to what they must be), the before-state
//! recorded, Auto Scaling left, every interface moved through the two-step swap with the
//! CLI's compensation, the instance profile detached.

use serde_json::{json, Value};

use super::asl::{attempt_dir, choice, filter, one, params, pluck, present, Calls, Seq};
use super::expr::Expr;
use super::{Params, Refusal, Translated};

fn tag(key: &str, value: &Expr) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("Key".into(), json!(key));
    value.put(&mut m, "Value");
    Value::Object(m)
}

/// An interface's swap ends in one of these; anything but the first fails the step.
const ISOLATED: &str = "isolated";

/// `ec2.isolate_instance`.
pub fn isolate(id: &str, p: &Params, c: &Calls) -> Result<Translated, Refusal> {
    let inst = p.required("instance_id")?;
    let allow_cidr = match p.get("allow_cidr") {
        None => None,
        Some(Expr::Lit(Value::String(s))) => {
            s.parse::<ipnet::IpNet>().map_err(|_| {
                Refusal::param("allow_cidr", &format!("\"{s}\" is not a CIDR block"))
            })?;
            Some(s.clone())
        }
        Some(_) => {
            return Err(Refusal::param(
                "allow_cidr",
                "must be known when compiling (written in the playbook or given with --input): it decides the isolation group's rules",
            ))
        }
    };
    let detach_profile = p.lit_bool("detach_profile", true)?;
    let leave_asg = p.lit_bool("leave_autoscaling", true)?;
    let decrement = p.lit_bool("decrement_desired_capacity", false)?;

    let mut seq = Seq::default();
    attempt_dir(&mut seq, id, p.in_map);
    super::ec2::describe_instance(&mut seq, id, c, inst);
    let record = format!("{id}: before-state");
    let after_profile = if leave_asg {
        format!("{id}: auto scaling group (optional)")
    } else {
        record.clone()
    };
    if detach_profile {
        let mut read = c.read(
            "ec2:describeIamInstanceProfileAssociations",
            json!({"Filters": [filter("instance-id", inst), {"Name": "state", "Values": ["associated"]}]}),
            json!({"associations.$": "$.IamInstanceProfileAssociations"}),
            "$.r.profile",
        );
        read["Catch"] = json!([{"ErrorEquals": ["States.ALL"], "ResultPath": "$.r.profile", "Next": after_profile}]);
        seq.push(format!("{id}: instance profile (optional)"), read);
    }
    if leave_asg {
        let mut read = c.read(
            "autoscaling:describeAutoScalingInstances",
            params(&[("InstanceIds", &one(inst))]),
            json!({"instances.$": "$.AutoScalingInstances"}),
            "$.r.asg",
        );
        read["Catch"] =
            json!([{"ErrorEquals": ["States.ALL"], "ResultPath": "$.r.asg", "Next": record}]);
        seq.push(after_profile, read);
    }
    let mut before = params(&[("instance_id", inst)]);
    before["vpc_id.$"] = json!("$.r.described.instance.VpcId");
    before["network_interfaces.$"] = json!("$.r.described.instance.NetworkInterfaces");
    before["security_groups.$"] = json!("$.r.described.instance.SecurityGroups");
    if detach_profile {
        before["instance_profile.$"] = json!("$.r.profile");
    }
    if leave_asg {
        before["auto_scaling.$"] = json!("$.r.asg");
    }
    seq.push(record, super::asl::set("$.r.before", before));
    seq.push(
        format!("{id}: record"),
        c.evidence("isolation-before.json", "$.r.before"),
    );
    if leave_asg {
        let leave = format!("{id}: leave auto scaling group");
        let next = format!("{id}: find allow-all group");
        seq.push(
            format!("{id}: in a group"),
            choice(present("$.r.asg.instances[0]"), &leave, &next),
        );
        let mut detach = params(&[("InstanceIds", &one(inst))]);
        detach["AutoScalingGroupName.$"] = json!("$.r.asg.instances[0].AutoScalingGroupName");
        detach["ShouldDecrementDesiredCapacity"] = json!(decrement);
        seq.push(leave, c.change("autoscaling:detachInstances", detach));
    }
    group(&mut seq, id, c, "allow-all", "allow_all", None);
    let purpose = match &allow_cidr {
        None => "isolation".to_owned(),
        Some(cidr) => format!("isolation-ssh-from-{cidr}"),
    };
    group(
        &mut seq,
        id,
        c,
        &purpose,
        "isolation",
        Some(allow_cidr.as_deref()),
    );
    interfaces(&mut seq, id, c);
    let outputs = format!("{id}: outputs");
    if detach_profile {
        let detach = format!("{id}: detach instance profile");
        seq.push(
            format!("{id}: has a profile"),
            choice(present("$.r.profile.associations[0]"), &detach, &outputs),
        );
        seq.push(
            detach,
            c.change(
                "ec2:disassociateIamInstanceProfile",
                json!({"AssociationId.$": "$.r.profile.associations[0].AssociationId"}),
            ),
        );
    }
    seq.push(
        outputs,
        json!({"Type": "Pass", "Parameters": {
            "isolation_group_id.$": "$.r.isolation.id",
            "allow_all_group_id.$": "$.r.allow_all.id",
        }, "End": true}),
    );
    Ok(Translated {
        branch: seq.finish(),
        outputs: vec!["isolation_group_id", "allow_all_group_id"],
    })
}

/// Finds the case's group of `purpose` in the instance's VPC by its tags, else makes it (a
/// concurrent maker's group is found again), then brings its rules to what they must be;
/// its id lands at `$.r.KEY.id`. `isolation`: `None` for the allow-all group, else the
/// isolation group with its one optional SSH source.
fn group(
    seq: &mut Seq,
    id: &str,
    c: &Calls,
    purpose: &str,
    key: &str,
    isolation: Option<Option<&str>>,
) {
    let label = if isolation.is_some() {
        "isolation"
    } else {
        "allow-all"
    };
    let vpc = Expr::Path("$.r.described.instance.VpcId".into());
    let case = Expr::Path("$.case_id".into());
    let purpose_e = Expr::Lit(json!(purpose));
    let find = json!({"Filters": [
        filter("vpc-id", &vpc),
        filter("tag:irr:case", &case),
        filter("tag:irr:purpose", &purpose_e),
    ]});
    let found = format!("$.r.found_{key}");
    let use_it = format!("{id}: use {label} group");
    let create = format!("{id}: create {label} group");
    let rules = format!("{id}: {label} group rules");
    seq.push(
        format!("{id}: find {label} group"),
        c.read(
            "ec2:describeSecurityGroups",
            find.clone(),
            json!({"groups.$": "$.SecurityGroups"}),
            &found,
        ),
    );
    seq.push(
        format!("{id}: {label} group exists"),
        choice(present(&format!("{found}.groups[0]")), &use_it, &create),
    );
    let name = Expr::Call(format!(
        "States.Format('irr-{}-{{}}', $.case_id)",
        super::expr::quote(purpose).trim_matches('\'')
    ));
    let description = match isolation {
        None => "irr-containment-step-1:allow-all(tracked-flows-become-untracked)".to_owned(),
        Some(None) => "irr-isolation:no-inbound,no-outbound".to_owned(),
        Some(Some(cidr)) => format!("irr-isolation:no-outbound,inbound-only-tcp-22-from-{cidr}"),
    };
    let mut make = params(&[("VpcId", &vpc), ("GroupName", &name)]);
    make["Description"] = json!(description);
    make["TagSpecifications"] = json!([{"ResourceType": "security-group", "Tags": [
        tag("irr:case", &case),
        tag("irr:run", &Expr::Path("$$.Execution.Name".into())),
        tag("irr:purpose", &purpose_e),
        tag("Name", &name),
    ]}]);
    let raced = format!("{id}: find {label} group after a race");
    let mut created = c.read(
        "ec2:createSecurityGroup",
        make,
        json!({"id.$": "$.GroupId"}),
        &format!("$.r.{key}"),
    );
    created["Catch"] =
        json!([{"ErrorEquals": ["States.ALL"], "ResultPath": "$.r.create_error", "Next": raced}]);
    created["Next"] = json!(rules);
    seq.push(create, created);
    let missing = format!("{id}: no {label} group");
    let mut again = c.read(
        "ec2:describeSecurityGroups",
        find,
        json!({"groups.$": "$.SecurityGroups"}),
        &found,
    );
    again["Next"] = json!(format!("{id}: {label} group made by another"));
    seq.push(raced, again);
    seq.push(
        format!("{id}: {label} group made by another"),
        choice(present(&format!("{found}.groups[0]")), &use_it, &missing),
    );
    seq.push(
        missing,
        json!({"Type": "Fail", "Error": "irr.GroupNotMade", "Cause": format!("the case's {label} security group could not be created, and none was found")}),
    );
    let mut use_state = super::asl::set(
        &format!("$.r.{key}"),
        json!({"id.$": format!("{found}.groups[0].GroupId")}),
    );
    use_state["Next"] = json!(rules);
    seq.push(use_it, use_state);
    let gid = Expr::Path(format!("$.r.{key}.id"));
    match isolation {
        None => allow_all_rules(seq, id, c, &gid, &rules),
        Some(ssh) => isolation_rules(seq, id, c, &gid, &rules, ssh),
    }
}

/// The allow-all group: everything in and out, IPv4 and IPv6. A rule already there
/// (`InvalidPermission.Duplicate`) is fine: each grant goes on whatever it answers.
fn allow_all_rules(seq: &mut Seq, id: &str, c: &Calls, gid: &Expr, first: &str) {
    let all = json!([{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}], "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}]);
    let egress = format!("{id}: allow-all egress");
    let done = format!("{id}: allow-all group ready");
    let mut ingress = params(&[("GroupId", gid)]);
    ingress["IpPermissions"] = all;
    let mut t = c.change("ec2:authorizeSecurityGroupIngress", ingress);
    t["Catch"] = json!([{"ErrorEquals": ["States.ALL"], "ResultPath": null, "Next": egress}]);
    seq.push(first, t);
    let mut out = params(&[("GroupId", gid)]);
    out["IpPermissions"] = json!([{"IpProtocol": "-1", "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}]);
    let mut t = c.change("ec2:authorizeSecurityGroupEgress", out);
    t["Catch"] = json!([{"ErrorEquals": ["States.ALL"], "ResultPath": null, "Next": done}]);
    seq.push(egress, t);
    seq.push(done, json!({"Type": "Pass"}));
}

/// The isolation group: every rule it has is revoked (whoever added it), then, with
/// `allow_cidr`, TCP 22 from that block only.
fn isolation_rules(seq: &mut Seq, id: &str, c: &Calls, gid: &Expr, first: &str, ssh: Option<&str>) {
    seq.push(
        first,
        c.read(
            "ec2:describeSecurityGroups",
            params(&[("GroupIds", &one(gid))]),
            json!({"in.$": "$.SecurityGroups[0].IpPermissions", "out.$": "$.SecurityGroups[0].IpPermissionsEgress"}),
            "$.r.rules",
        ),
    );
    let revoke_in = format!("{id}: revoke inbound");
    let check_out = format!("{id}: any outbound");
    let revoke_out = format!("{id}: revoke outbound");
    let done = format!("{id}: isolation group rules set");
    seq.push(
        format!("{id}: any inbound"),
        choice(present("$.r.rules.in[0]"), &revoke_in, &check_out),
    );
    let mut r = params(&[("GroupId", gid)]);
    r["IpPermissions.$"] = json!("$.r.rules.in");
    seq.push(revoke_in, c.change("ec2:revokeSecurityGroupIngress", r));
    seq.push(
        check_out,
        choice(present("$.r.rules.out[0]"), &revoke_out, &done),
    );
    let mut r = params(&[("GroupId", gid)]);
    r["IpPermissions.$"] = json!("$.r.rules.out");
    seq.push(revoke_out, c.change("ec2:revokeSecurityGroupEgress", r));
    seq.push(done, json!({"Type": "Pass"}));
    if let Some(cidr) = ssh {
        let range = if cidr.contains(':') {
            json!({"Ipv6Ranges": [{"CidrIpv6": cidr, "Description": "irr-forensic-access"}]})
        } else {
            json!({"IpRanges": [{"CidrIp": cidr, "Description": "irr-forensic-access"}]})
        };
        let mut perm = json!({"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22});
        for (k, v) in range.as_object().expect("object") {
            perm[k] = v.clone();
        }
        let mut g = params(&[("GroupId", gid)]);
        g["IpPermissions"] = json!([perm]);
        seq.push(
            format!("{id}: forensic access"),
            c.change("ec2:authorizeSecurityGroupIngress", g),
        );
    }
}

/// Every interface through the two-step swap, each in a `Map` iteration that never fails
/// (a failed iteration would stop its siblings, perhaps between their two moves): each ends
/// in a status, and the step fails after the `Map` unless every one is `isolated`.
fn interfaces(seq: &mut Seq, id: &str, c: &Calls) {
    let n = |s: &str| format!("{id}: {s}");
    let modify = |groups: &str| {
        let mut t = c.change(
            "ec2:modifyNetworkInterfaceAttribute",
            json!({"NetworkInterfaceId.$": "$.eni", "Groups.$": groups}),
        );
        t["Retry"] = json!([{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1, "MaxAttempts": 2, "BackoffRate": 2.0}]);
        t
    };
    let status = |s: &str| json!({"Type": "Pass", "Result": s, "End": true});
    let catch = |next: &str| json!([{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failed", "Next": next}]);
    let mut to_allow = modify("States.Array($.allow_all)");
    // A refused first move leaves the interface where it was; an unclear one may have moved
    // it: either way the isolation group is tried, as the CLI's compensation.
    to_allow.as_object_mut().expect("object").remove("Retry");
    to_allow["Catch"] = catch(&n("compensate to isolation"));
    let mut to_iso = modify("States.Array($.isolation)");
    to_iso["Catch"] = catch(&n("compensate to isolation"));
    to_iso["Next"] = json!(n("interface isolated"));
    let mut comp_iso = modify("States.Array($.isolation)");
    comp_iso["Catch"] = catch(&n("compensate to original groups"));
    comp_iso["Next"] = json!(n("compensated into isolation"));
    let mut comp_orig = modify("$.original_ids");
    comp_orig["Catch"] = catch(&n("interface may be open"));
    comp_orig["Next"] = json!(n("interface not isolated"));
    let mut iter = Seq::default();
    iter.push(
        n("original group ids"),
        pluck(
            &n("original groups"),
            "$.originals",
            "GroupId",
            "$.original_ids",
        ),
    );
    iter.push(n("to allow-all group"), to_allow);
    iter.push(n("to isolation group"), to_iso);
    iter.push(n("interface isolated"), status(ISOLATED));
    iter.push(n("compensate to isolation"), comp_iso);
    iter.push(
        n("compensated into isolation"),
        status("the move to the isolation group failed; a compensating move put it in the isolation group"),
    );
    iter.push(n("compensate to original groups"), comp_orig);
    iter.push(
        n("interface not isolated"),
        status("the moves to the isolation group failed; it was moved back to its original groups: IT IS NOT ISOLATED"),
    );
    iter.push(
        n("interface may be open"),
        status("the compensating moves failed too: IT MAY BE IN THE ALLOW-ALL GROUP, OPEN TO ALL TRAFFIC; move it to the isolation group by hand now"),
    );
    let branch = iter.finish();
    let mut processor = branch.to_json();
    processor["ProcessorConfig"] = json!({"Mode": "INLINE"});
    seq.push(
        n("interfaces"),
        json!({
            "Type": "Map",
            "ItemsPath": "$.r.described.instance.NetworkInterfaces",
            "MaxConcurrency": 10,
            "ItemSelector": {
                "eni.$": "$$.Map.Item.Value.NetworkInterfaceId",
                "originals.$": "$$.Map.Item.Value.Groups",
                "allow_all.$": "$.r.allow_all.id",
                "isolation.$": "$.r.isolation.id",
                "target.$": "$.target",
            },
            "ItemProcessor": processor,
            "ResultPath": "$.r.swaps",
        }),
    );
    // Every status the same and `isolated` (or no interface at all).
    seq.push(
        n("swap outcomes"),
        json!({"Type": "Pass", "Parameters": {"unique.$": "States.ArrayUnique($.r.swaps)", "n.$": "States.ArrayLength(States.ArrayUnique($.r.swaps))"}, "ResultPath": "$.r.outcome"}),
    );
    let first = n("first outcome");
    let ok = n("every interface isolated");
    let failed = n("not every interface isolated");
    seq.push(
        n("any interface"),
        choice(
            json!({"Variable": "$.r.outcome.n", "NumericEquals": 0}),
            &ok,
            &first,
        ),
    );
    seq.push(
        first,
        json!({"Type": "Pass", "Parameters": {"v.$": "States.ArrayGetItem($.r.outcome.unique, 0)"}, "ResultPath": "$.r.first"}),
    );
    seq.push(
        n("all isolated"),
        choice(
            json!({"And": [
                {"Variable": "$.r.outcome.n", "NumericEquals": 1},
                {"Variable": "$.r.first.v", "StringEquals": ISOLATED}
            ]}),
            &ok,
            &failed,
        ),
    );
    seq.push(
        failed,
        json!({"Type": "Fail", "Error": "irr.NotIsolated", "Cause": "an interface could not be moved to the isolation group: see the outcome of each interface in this step's Map iterations"}),
    );
    seq.push(ok, json!({"Type": "Pass"}));
}
