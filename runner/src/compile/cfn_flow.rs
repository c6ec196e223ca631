//! The calls of `cloudformation.deploy_stack` after its request is recorded
//! ([`super::cfn`]): the stack of that name found and recorded, refused (another case's, or
//! this case's with other parameter values), reused, or replaced (a failed earlier attempt,
//! deleted and waited for) and created with a client request token; then waited for (2 s
//! doubling to 30 s, until the step's deadline), and recorded when complete, or rolled back
//! (its events' failure reasons in the error, the stack deleted) when it failed, as the CLI.

use serde_json::{json, Value};

use super::asl::{choice, fail_with, set_const, Calls, Seq};
use super::cfn::set;

/// The pause of a wait loop: `wait` for the `$.r.w.wait` seconds the assessment computed,
/// then `longer` makes its next delay (`$.r.w.next`) the current one and goes back to
/// `describe`.
fn back_off(seq: &mut Seq, wait: &str, longer: &str, describe: &str) {
    seq.push(wait, json!({"Type": "Wait", "SecondsPath": "$.r.w.wait"}));
    seq.push(
        longer,
        json!({"Type": "Pass", "InputPath": "$.r.w.next", "ResultPath": "$.r.delay", "Next": describe}),
    );
}

/// Where a missing stack's error says so (`ValidationError`, "... does not exist").
const MISSING: &str = "*does not exist*";

/// `describeStacks` of the stack at `name_path` into `result`; a stack that does not exist
/// is `{"Stacks": []}`; any other error fails the step. Then `next`.
fn describe(seq: &mut Seq, c: &Calls, state: &str, name_path: &str, result: &str, next: &str) {
    let mut t = c.read(
        "cloudformation:describeStacks",
        json!({"StackName.$": name_path}),
        Value::Null,
        result,
    );
    let err = format!("{result}_error");
    t["Catch"] = json!([{"ErrorEquals": ["States.ALL"], "ResultPath": err, "Next": format!("{state} failed")}]);
    t["Next"] = json!(next);
    seq.push(state, t);
    seq.push(
        format!("{state} failed"),
        choice(
            json!({"Variable": format!("{err}.Cause"), "StringMatches": MISSING}),
            &format!("{state} none"),
            &format!("{state} not read"),
        ),
    );
    seq.push(format!("{state} not read"), fail_with(&err));
    let mut none = set_const(result, json!({"Stacks": []}));
    none["Next"] = json!(next);
    seq.push(format!("{state} none"), none);
}

/// A `Fail` whose cause is the text at `path`.
fn fail(error: &str, path: &str) -> Value {
    json!({"Type": "Fail", "Error": error, "CausePath": path})
}

/// The states after the request is recorded (see the module documentation).
pub fn flow(seq: &mut Seq, id: &str, c: &Calls) {
    let n = |s: &str| format!("{id}: {s}");
    describe(
        seq,
        c,
        &n("existing"),
        "$.r.t.stack_name",
        "$.r.found",
        &n("assess"),
    );
    seq.push(n("assess"), set("a", ASSESS));
    seq.push(
        n("stack before"),
        choice(
            json!({"Variable": "$.r.a.exists", "BooleanEquals": true}),
            &n("record stack-before"),
            &n("decide"),
        ),
    );
    seq.push(
        n("record stack-before"),
        c.evidence("stack-before.json", "$.r.a.record"),
    );
    let decisions = [
        ("create", n("token")),
        ("not ours", n("not this case's")),
        ("differs", n("other parameter values")),
        ("reuse", n("reuse")),
    ];
    let rules: Vec<Value> = decisions
        .iter()
        .map(|(d, next)| json!({"Variable": "$.r.a.decision", "StringEquals": d, "Next": next}))
        .collect();
    seq.push(
        n("decide"),
        json!({"Type": "Choice", "Choices": rules, "Default": n("replace: delete")}),
    );
    seq.push(
        n("not this case's"),
        fail("irr.NotThisCase", "$.r.a.message"),
    );
    seq.push(
        n("other parameter values"),
        fail("irr.StackDiffers", "$.r.a.message"),
    );
    let mut reuse = json!({"Type": "Pass", "Parameters": {"stack_id.$": "$.r.a.stack_id", "reused": true}, "ResultPath": "$.r.c"});
    reuse["Next"] = json!(n("settle"));
    seq.push(n("reuse"), reuse);
    delete_loop(
        seq,
        id,
        c,
        "replace",
        "$.r.a.stack_id",
        &n("token"),
        &n("replace failed"),
    );
    seq.push(n("replace failed"), fail("irr.StackNotDeleted", "$.r.dp"));
    create(seq, id, c);
    settle(seq, id, c);
    complete(seq, id, c);
    roll_back(seq, id, c);
}

/// The stack found, judged as the CLI's `case_stack` and `reuse_or_replace`.
const ASSESS: &str = r#"(
  $st := $list($s.r.found.Stacks)[0];
  $there := $exists($st.StackId);
  $status := $there ? $st.StackStatus : '';
  $owner := $n($filter($list($st.Tags), function($t) { $t.Key = 'irr:case' })[0].Value);
  $name := $s.r.t.stack_name;
  $differ := $there ? $filter($map0($s.r.q.cfn_params, function($p) { (
      $was := $filter($list($st.Parameters), function($x) { $x.ParameterKey = $p.ParameterKey })[0].ParameterValue;
      $exists($was) ? (($was = '****' or $norm($was) = $norm($p.ParameterValue)) ? '' : $p.ParameterKey & ': ' & $was & ' -> ' & $p.ParameterValue) : $p.ParameterKey & ': not set -> ' & $p.ParameterValue
    ) }), function($d) { $d != '' }) : [];
  $decision := $not($there) ? 'create' : $owner != $s.case_id ? 'not ours' : ($usable($status) or $inProgress($status)) ? ($count($differ) > 0 ? 'differs' : 'reuse') : 'replace';
  {
    'exists': $there,
    'status': $status,
    'stack_id': $there ? $st.StackId : '',
    'record': $there ? $stackJson($st) : null,
    'decision': $decision,
    'message': $decision = 'not ours' ?
        'a stack named ' & $name & ' already exists (' & $status & ") and is not this case's (irr:case=" & ($owner = null ? 'absent' : $owner) & '): refusing to reuse or replace it; choose another stack_name' :
      $decision = 'differs' ?
        'stack ' & $name & ' of this case exists (' & $status & ') with other parameter values (' & $join($differ, '; ') & '): it is not reused; delete it first (cloudformation.delete_stack) or choose another stack_name' : ''
  }
)"#;

/// `CreateStack` with a client request token; a failed call that left this execution's
/// stack behind has it rolled back, any other failure fails the step.
fn create(seq: &mut Seq, id: &str, c: &Calls) {
    let n = |s: &str| format!("{id}: {s}");
    seq.push(
        n("token"),
        json!({"Type": "Pass", "Parameters": {"token.$": "States.Format('irr-{}', States.UUID())"}, "ResultPath": "$.r.token"}),
    );
    let mut t = c.read(
        "cloudformation:createStack",
        json!({
            "StackName.$": "$.r.t.stack_name",
            "TemplateBody.$": "$.r.t.body",
            "Parameters.$": "$.r.q.cfn_params",
            "Capabilities.$": "$.r.g.capabilities",
            "Tags.$": "$.r.t.tags",
            "TimeoutInMinutes.$": "$.r.t.timeout_minutes",
            "OnFailure": "ROLLBACK",
            "ClientRequestToken.$": "$.r.token.token",
        }),
        json!({"stack_id.$": "$.StackId", "reused": false}),
        "$.r.c",
    );
    t["Catch"] = json!([{"ErrorEquals": ["States.ALL"], "ResultPath": "$.r.create_error", "Next": n("left behind")}]);
    t["Next"] = json!(n("settle"));
    seq.push(n("create"), t);
    describe(
        seq,
        c,
        &n("left behind"),
        "$.r.t.stack_name",
        "$.r.now",
        &n("left behind?"),
    );
    seq.push(
        n("left behind?"),
        set(
            "left",
            r#"(
  $st := $list($s.r.now.Stacks)[0];
  $tag := function($k) { $filter($list($st.Tags), function($t) { $t.Key = $k })[0].Value };
  $exists($st.StackId) and $tag('irr:case') = $s.case_id and $tag('irr:run') = $states.context.Execution.Name and $st.StackStatus != 'DELETE_COMPLETE'
)"#,
        ),
    );
    seq.push(
        n("roll back what was left"),
        choice(
            json!({"Variable": "$.r.left", "BooleanEquals": true}),
            &n("roll back"),
            &n("not created"),
        ),
    );
    seq.push(n("not created"), fail_with("$.r.create_error"));
}

/// The wait for the stack at `$.r.c.stack_id`, then complete, still in progress, gone or
/// failed.
fn settle(seq: &mut Seq, id: &str, c: &Calls) {
    let n = |s: &str| format!("{id}: {s}");
    seq.push(n("settle"), set_const("$.r.delay", json!(2)));
    describe(
        seq,
        c,
        &n("settle: describe"),
        "$.r.c.stack_id",
        "$.r.now",
        &n("settle: assess"),
    );
    seq.push(
        n("settle: assess"),
        set("w", &wait_expression("$s.r.t.deadline")),
    );
    let status = "$.r.w.status";
    seq.push(
        n("settle: settled?"),
        json!({"Type": "Choice", "Choices": [
            {"And": [{"Variable": "$.r.w.in_progress", "BooleanEquals": true}, {"Variable": "$.r.w.past", "BooleanEquals": false}], "Next": n("settle: wait")},
            {"Variable": status, "StringEquals": "", "Next": n("gone")},
            {"Variable": "$.r.w.in_progress", "BooleanEquals": true, "Next": n("still in progress: read events")},
            {"Variable": "$.r.w.usable", "BooleanEquals": true, "Next": n("complete")},
        ], "Default": n("roll back")}),
    );
    back_off(
        seq,
        &n("settle: wait"),
        &n("settle: longer"),
        &n("settle: describe"),
    );
    seq.push(
        n("gone"),
        set(
            "msg",
            "'stack ' & $s.r.t.stack_name & ' (' & $s.r.c.stack_id & ') disappeared while it was being created'",
        ),
    );
    seq.push(n("stack gone"), fail("irr.StackGone", "$.r.msg"));
    events(seq, id, c, "still in progress", "$.r.c.stack_id");
    seq.push(
        n("still in progress: record"),
        c.evidence("stack-events.json", "$.r.ev"),
    );
    seq.push(
        n("still in progress: message"),
        set(
            "msg",
            "'stack ' & $s.r.t.stack_name & ' is still ' & $s.r.w.status & ' after ' & $string($s.r.t.timeout_seconds) & 's; CloudFormation rolls it back itself when its own timeout (' & $string($s.r.t.timeout_minutes) & ' min) passes; running the step again reuses or replaces it'",
        ),
    );
    seq.push(
        n("still in progress: fail"),
        fail("irr.StackInProgress", "$.r.msg"),
    );
}

/// The JSONata of one poll: the stack's status at `$.r.now`, whether it is in progress,
/// whether `deadline` (milliseconds) has passed, the wait before the next poll and the
/// delay after it (2 s doubling to 30 s).
fn wait_expression(deadline: &str) -> String {
    r#"(
  $st := $list($s.r.now.Stacks)[0];
  $status := $exists($st.StackId) ? $st.StackStatus : '';
  $now := $toMillis($states.context.State.EnteredTime);
  $left := $ceil((DEADLINE - $now) / 1000);
  {
    'status': $status,
    'in_progress': $inProgress($status),
    'usable': $usable($status),
    'past': $now >= DEADLINE,
    'wait': $max([1, $min([$s.r.delay, $left])]),
    'next': $min([$s.r.delay * 2, 30])
  }
)"#
    .replace("DEADLINE", deadline)
}

/// One page of the stack's events (the newest 100) at `$.r.ev` as `{stack_id, events,
/// truncated}`, oldest first; none when they cannot be read (as the CLI's
/// `unwrap_or_default`).
fn events(seq: &mut Seq, id: &str, c: &Calls, what: &str, stack: &str) {
    let n = |s: &str| format!("{id}: {what}: {s}");
    let mut t = c.read(
        "cloudformation:describeStackEvents",
        json!({"StackName.$": stack}),
        Value::Null,
        "$.r.page",
    );
    t["Catch"] = json!([{"ErrorEquals": ["States.ALL"], "ResultPath": "$.r.page_error", "Next": n("no events")}]);
    t["Next"] = json!(n("events"));
    seq.push(n("read events"), t);
    let mut none = set_const("$.r.page", json!({"StackEvents": []}));
    none["Next"] = json!(n("events"));
    seq.push(n("no events"), none);
    seq.push(
        n("events"),
        set(
            "ev",
            &format!(
                "{{'stack_id': {}, 'events': $map0($reverse($list($s.r.page.StackEvents)), $eventJson), 'truncated': $exists($s.r.page.NextToken)}}",
                stack.replacen('$', "$s", 1)
            ),
        ),
    );
}

/// The stack (complete) recorded with its resources and events; the step's outputs.
fn complete(seq: &mut Seq, id: &str, c: &Calls) {
    let n = |s: &str| format!("{id}: {s}");
    seq.push(
        n("complete"),
        set(
            "done",
            "( $st := $list($s.r.now.Stacks)[0]; {'record': $stackJson($st)} )",
        ),
    );
    seq.push(
        n("record stack"),
        c.evidence("stack.json", "$.r.done.record"),
    );
    seq.push(
        n("resources"),
        c.read(
            "cloudformation:describeStackResources",
            json!({"StackName.$": "$.r.c.stack_id"}),
            Value::Null,
            "$.r.res",
        ),
    );
    seq.push(n("resources record"), set("rs", RESOURCES));
    seq.push(
        n("record resources"),
        c.evidence("stack-resources.json", "$.r.rs.record"),
    );
    events(seq, id, c, "complete", "$.r.c.stack_id");
    seq.push(
        n("record events"),
        c.evidence("stack-events.json", "$.r.ev"),
    );
    seq.push(
        n("outputs"),
        json!({"Type": "Pass", "Parameters": {
            "stack_id.$": "$.r.c.stack_id",
            "outputs.$": "$.r.done.record.outputs",
            "stack_name.$": "$.r.t.stack_name",
            "reused.$": "$.r.c.reused",
            "not_created.$": "$.r.rs.not_created",
        }, "End": true}),
    );
}

/// The stack's resources (`DescribeStackResources` at `$.r.res`) as the CLI records them,
/// and those it reports complete without a physical resource (`not_created`).
const RESOURCES: &str = r#"(
  $rs := $map0($s.r.res.StackResources, function($r) { {
    'logical_resource_id': $n($r.LogicalResourceId), 'resource_type': $n($r.ResourceType),
    'physical_resource_id': $n($r.PhysicalResourceId), 'status': $n($r.ResourceStatus),
    'reason': $n($r.ResourceStatusReason)
  } });
  $missing := $filter($rs, function($r) {
    $type($r.status) = 'string' and $substring($r.status, $length($r.status) - 9) = '_COMPLETE' and $substring($r.status, 0, 6) != 'DELETE'
    and ($r.physical_resource_id = null or $r.physical_resource_id = '' or $r.physical_resource_id = 'unknown') });
  {
    'record': {'stack_id': $s.r.c.stack_id, 'resources': $rs},
    'not_created': $map0($missing, function($r) { {'logical_resource_id': $r.logical_resource_id, 'resource_type': $r.resource_type, 'status': $r.status, 'physical_resource_id': $r.physical_resource_id} })
  }
)"#;

/// A failed stack (at `$.r.now`): its events, the stack and its resources recorded, the
/// stack deleted and waited for, and the step failed with the failed resources' reasons
/// (and the `CreateStack` error when the call failed).
fn roll_back(seq: &mut Seq, id: &str, c: &Calls) {
    let n = |s: &str| format!("{id}: {s}");
    seq.push(
        n("roll back"),
        set(
            "rb",
            "( $st := $list($s.r.now.Stacks)[0]; {'stack_id': $st.StackId, 'status': $st.StackStatus, 'reason': $n($st.StackStatusReason), 'record': $stackJson($st)} )",
        ),
    );
    events(seq, id, c, "roll back", "$.r.rb.stack_id");
    seq.push(
        n("roll back: record stack"),
        c.evidence("stack.json", "$.r.rb.record"),
    );
    seq.push(
        n("roll back: record events"),
        c.evidence("stack-events.json", "$.r.ev"),
    );
    let mut res = c.read(
        "cloudformation:describeStackResources",
        json!({"StackName.$": "$.r.rb.stack_id"}),
        Value::Null,
        "$.r.res",
    );
    res["Catch"] = json!([{"ErrorEquals": ["States.ALL"], "ResultPath": "$.r.res_error", "Next": n("roll back: cause")}]);
    seq.push(n("roll back: resources"), res);
    seq.push(
        n("roll back: resources record"),
        set(
            "rs",
            &RESOURCES.replace("$s.r.c.stack_id", "$s.r.rb.stack_id"),
        ),
    );
    seq.push(
        n("roll back: record resources"),
        c.evidence("stack-resources-before.json", "$.r.rs.record"),
    );
    seq.push(
        n("roll back: cause"),
        set(
            "cause",
            r#"(
  $name := $s.r.t.stack_name;
  $r0 := $reasons($s.r.page.StackEvents, $name);
  $r := ($count($r0) = 0 and $type($s.r.rb.reason) = 'string' and $s.r.rb.reason != '') ? [$name & ' (AWS::CloudFormation::Stack): ' & $s.r.rb.reason] : $r0;
  $cause := $exists($s.r.create_error) ? 'CreateStack failed: ' & $s.r.create_error.Error & ': ' & $s.r.create_error.Cause & '; stack events: ' & $reasonsText($r) : 'failed resources: ' & $reasonsText($r);
  'stack ' & $name & ' failed (' & $s.r.rb.status & '): ' & $cause
)"#,
        ),
    );
    delete_loop(
        seq,
        id,
        c,
        "roll back",
        "$.r.rb.stack_id",
        &n("roll back: deleted"),
        &n("roll back: not deleted"),
    );
    seq.push(
        n("roll back: deleted"),
        set("msg", "$s.r.cause & '; the failed stack was deleted'"),
    );
    seq.push(n("roll back: failed"), fail("irr.StackFailed", "$.r.msg"));
    seq.push(
        n("roll back: not deleted"),
        set(
            "msg",
            "$s.r.cause & '; deleting the failed stack failed too: ' & $s.r.dp",
        ),
    );
    seq.push(n("roll back: fail"), fail("irr.StackFailed", "$.r.msg"));
}

/// `DeleteStack` of the stack at `stack`, then a wait (its own deadline: now + the step's
/// timeout) until it is gone: then `deleted`; else the reason at `$.r.dp` and `failed`
/// (still deleting at the deadline, `DELETE_FAILED` with its events' reasons recorded in
/// `stack-delete-events.json`, or the call's error).
fn delete_loop(
    seq: &mut Seq,
    id: &str,
    c: &Calls,
    what: &str,
    stack: &str,
    deleted: &str,
    failed: &str,
) {
    let n = |s: &str| format!("{id}: {what}: {s}");
    let mut del = c.change("cloudformation:deleteStack", json!({"StackName.$": stack}));
    del["Catch"] = json!([{"ErrorEquals": ["States.ALL"], "ResultPath": "$.r.delete_error", "Next": n("delete refused")}]);
    seq.push(n("delete"), del);
    seq.push(
        n("deadline"),
        set(
            "dl",
            "$toMillis($states.context.State.EnteredTime) + $s.r.t.timeout_seconds * 1000",
        ),
    );
    seq.push(n("first poll"), set_const("$.r.delay", json!(2)));
    describe(seq, c, &n("describe"), stack, "$.r.now", &n("assess"));
    seq.push(n("assess"), set("w", &wait_expression("$s.r.dl")));
    seq.push(
        n("gone?"),
        json!({"Type": "Choice", "Choices": [
            {"Variable": "$.r.w.status", "StringEquals": "", "Next": deleted},
            {"Variable": "$.r.w.status", "StringEquals": "DELETE_COMPLETE", "Next": deleted},
            {"And": [{"Variable": "$.r.w.in_progress", "BooleanEquals": true}, {"Variable": "$.r.w.past", "BooleanEquals": false}], "Next": n("wait")},
            {"Variable": "$.r.w.in_progress", "BooleanEquals": true, "Next": n("still deleting")},
        ], "Default": n("delete failed: read events")}),
    );
    back_off(seq, &n("wait"), &n("longer"), &n("describe"));
    let mut still = set(
        "dp",
        "'stack ' & $s.r.t.stack_name & ' is still ' & $s.r.w.status & ' after ' & $string($s.r.t.timeout_seconds) & 's; CloudFormation goes on deleting it'",
    );
    still["Next"] = json!(failed);
    seq.push(n("still deleting"), still);
    events(seq, id, c, &format!("{what}: delete failed"), stack);
    seq.push(
        n("record delete events"),
        c.evidence("stack-delete-events.json", "$.r.ev"),
    );
    let mut why = set(
        "dp",
        "'stack ' & $s.r.t.stack_name & ' could not be deleted (' & $s.r.w.status & '): ' & $reasonsText($reasons($s.r.page.StackEvents, $s.r.t.stack_name))",
    );
    why["Next"] = json!(failed);
    seq.push(n("delete not complete"), why);
    let mut refused = set(
        "dp",
        "$s.r.delete_error.Error & ': ' & $s.r.delete_error.Cause",
    );
    refused["Next"] = json!(failed);
    seq.push(n("delete refused"), refused);
}
