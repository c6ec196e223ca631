//! `iam.grant_responder_access` as states: the CLI's calls, in the target account, with the
//! expiry computed by one `QueryLanguage: JSONata` state.
//!
//! The trust policy expires at the grant's time plus `duration` (`DateLessThan
//! aws:CurrentTime`), and JSONPath has no date arithmetic: a JSONata `Pass` state (the
//! machine's other states stay JSONPath; AWS allows the two per state) parses the duration
//! as the CLI does (`10s`, `5m`, `4h`, `1d`, `1h30m`), checks it is within 15 minutes and 7
//! days, the role name and the principals as the CLI does, and writes `expires_at` (RFC 3339
//! to the second, from the state's `EnteredTime`), the session length (the duration clamped
//! to IAM's 1 h..12 h), the trust policy and the role's default name. Invalid parameters fail
//! the step (`irr.InvalidParams`) before anything is read or changed.

use serde_json::{json, Value};

use super::asl::{attempt_dir, choice, fail_with, params, present, set, Calls, Seq};
use super::expr::Expr;
use super::iam::{case_check, no_such_entity, transient_retry};
use super::{Params, Refusal, Translated};
use crate::actions::iam::{default_responder_policy, RESPONDER_POLICY_NAME, TAG_EXPIRES_AT};
use crate::actions::{TAG_CASE, TAG_RUN};

/// What an IAM error's name ends with when the role exists already.
const ALREADY_EXISTS: &str = "*.EntityAlreadyExistsException";

/// The JSONata expression of the grant's checks and computed values: `$.r.g` (the
/// parameters) and `$.r.caller` (GetCallerIdentity, when no principal is named) in, `$.r.t`
/// out.
fn expiry_expression() -> String {
    let e = r#"(
  $g := $states.input.r.g;
  $units := {'s': 1, 'm': 60, 'h': 3600, 'd': 86400};
  $form := $type($g.duration) = 'string' ? $match($g.duration, /^([0-9]+[smhd])+$/) : [];
  $secs := $exists($form[0]) ? $sum($match($g.duration, /([0-9]+)([smhd])/).($number(groups[0]) * $lookup($units, groups[1]))) : 0;
  $default := $substring($replace('irr-responder-' & $states.input.case_id, /[^A-Za-z0-9+=,.@_-]/, '-'), 0, 64);
  $name := $exists($g.role_name) and $g.role_name != null ? $g.role_name : $default;
  $clean := $type($name) = 'string' ? $substring($replace($name, /[^A-Za-z0-9+=,.@_-]/, '-'), 0, 64) : '';
  $listed := $type($g.principals) = 'array' ? $g.principals : null;
  $bad := $filter($listed, function($p) { $type($p) = 'string' ? $substring($p, 0, 4) != 'arn:' : true });
  $caller := $states.input.r.caller;
  $root := $exists($caller.arn) ? 'arn:' & $split($caller.arn, ':')[1] & ':iam::' & $caller.account & ':root' : null;
  $principals := $count($listed) > 0 ? $listed : [$root];
  $problem :=
    $not($exists($form[0])) ? 'iam.grant_responder_access: duration ' & $string($g.duration) & ' is not a duration; write a number and a unit (s, m, h or d), e.g. 30s, 5m, 4h or 1h30m' :
    ($secs < 900 or $secs > 604800) ? 'iam.grant_responder_access: duration must be between 15m and 7d' :
    ($type($g.require_mfa) != 'boolean') ? 'iam.grant_responder_access: require_mfa must be true or false' :
    ($name = '' or $clean != $name) ? 'invalid IAM role name `' & $string($name) & '`' :
    ($listed = null) ? 'iam.grant_responder_access: principals must be a list of ARNs' :
    ($count($bad) > 0) ? 'iam.grant_responder_access: principal `' & $string($bad[0]) & '` is not an ARN' :
    ($type($g.policy) != 'object') ? 'iam.grant_responder_access: `policy` must be a policy document (a map)' :
    '';
  $expires := $problem = '' ? $fromMillis($toMillis($states.context.State.EnteredTime) + $secs * 1000, '[Y0001]-[M01]-[D01]T[H01]:[m01]:[s01]Z') : '';
  $condition := $merge([
    $g.require_mfa = true ? {'Bool': {'aws:MultiFactorAuthPresent': 'true'}} : {},
    {'DateLessThan': {'aws:CurrentTime': $expires}}
  ]);
  $trust := {
    'Version': '2012-10-17',
    'Statement': [{
      'Sid': 'IrrResponderAccess',
      'Effect': 'Allow',
      'Principal': {'AWS': $principals},
      'Action': 'sts:AssumeRole',
      'Condition': $condition
    }]
  };
  $merge([$states.input, {'r': $merge([$states.input.r, {'t': {
    'valid': $problem = '',
    'problem': $problem,
    'expires_at': $expires,
    'max_session': $min([$max([$secs, 3600]), 43200]),
    'role_name': $clean,
    'trust': $trust,
    'trust_text': $string($trust),
    'policy_text': $string($g.policy)
  }}])}])
)"#;
    format!(
        "{{% {} %}}",
        e.split_whitespace().collect::<Vec<_>>().join(" ")
    )
}

/// `iam.grant_responder_access`: the parameters checked and the expiry computed (one JSONata
/// state), the role read and the before-state recorded, then the role created with its tags
/// (or, when it exists with this case's `irr:case` tag or another execution created it
/// meanwhile, its trust policy, session length and tags brought up to date), and its inline
/// policy put (retried while IAM has not yet seen a new role), as the CLI does.
pub fn grant(id: &str, p: &Params, c: &Calls) -> Result<Translated, Refusal> {
    let principals = p.required("principals")?;
    p.check("duration")?;
    p.check("require_mfa")?;
    p.check("role_name")?;
    p.check("policy")?;
    let default_duration = Expr::Lit(json!("4h"));
    let default_mfa = Expr::Lit(json!(true));
    let no_name = Expr::Lit(Value::Null);
    let default_policy = Expr::Lit(default_responder_policy());
    let g = params(&[
        ("principals", principals),
        ("duration", p.get("duration").unwrap_or(&default_duration)),
        ("require_mfa", p.get("require_mfa").unwrap_or(&default_mfa)),
        ("role_name", p.get("role_name").unwrap_or(&no_name)),
        ("policy", p.get("policy").unwrap_or(&default_policy)),
    ]);
    let n = |s: &str| format!("{id}: {s}");
    let mut seq = Seq::default();
    attempt_dir(&mut seq, id, p.in_map);
    seq.push(n("parameters"), set("$.r.g", g));
    seq.push(
        n("principals named"),
        choice(present("$.r.g.principals[0]"), &n("expiry"), &n("account")),
    );
    // No principal named: the account itself is trusted (its root), as the CLI does.
    seq.push(
        n("account"),
        c.read(
            "sts:getCallerIdentity",
            json!({}),
            json!({"arn.$": "$.Arn", "account.$": "$.Account"}),
            "$.r.caller",
        ),
    );
    seq.push(
        n("expiry"),
        json!({"Type": "Pass", "QueryLanguage": "JSONata", "Output": expiry_expression()}),
    );
    seq.push(
        n("parameters valid"),
        choice(
            json!({"Variable": "$.r.t.valid", "BooleanEquals": true}),
            &n("role"),
            &n("invalid parameters"),
        ),
    );
    seq.push(
        n("invalid parameters"),
        json!({"Type": "Fail", "Error": "irr.InvalidParams", "CausePath": "$.r.t.problem"}),
    );
    role_read(&mut seq, id, c);
    create(&mut seq, id, c);
    case_check(&mut seq, id, &n("trust policy"));
    reconcile(&mut seq, id, c);
    let mut put = c.change(
        "iam:putRolePolicy",
        json!({
            "RoleName.$": "$.r.t.role_name",
            "PolicyName": RESPONDER_POLICY_NAME,
            "PolicyDocument.$": "$.r.t.policy_text",
        }),
    );
    put["Retry"] = transient_retry(&["NoSuchEntity", "ConcurrentModification", "ServiceFailure"]);
    seq.push(n("responder policy"), put);
    seq.push(
        n("outputs"),
        json!({"Type": "Pass", "Parameters": {
            "role_arn.$": "$.r.arn",
            "role_name.$": "$.r.t.role_name",
            "expires_at.$": "$.r.t.expires_at",
            "max_session_duration.$": "$.r.t.max_session",
        }, "End": true}),
    );
    Ok(Translated {
        branch: seq.finish(),
        outputs: vec!["role_arn", "role_name", "expires_at"],
    })
}

/// The role read (`$.r.role.role`, null when there is none) and the before-state recorded;
/// then to "create role" or, for a role that exists, to its case check.
fn role_read(seq: &mut Seq, id: &str, c: &Calls) {
    let n = |s: &str| format!("{id}: {s}");
    let mut read = c.read(
        "iam:getRole",
        json!({"RoleName.$": "$.r.t.role_name"}),
        json!({"role.$": "$.Role"}),
        "$.r.role",
    );
    read["Catch"] = json!([{"ErrorEquals": ["States.ALL"], "ResultPath": "$.r.role_error", "Next": n("role not there")}]);
    read["Next"] = json!(n("before-state"));
    seq.push(n("role"), read);
    seq.push(
        n("role not there"),
        choice(
            no_such_entity("$.r.role_error"),
            &n("no role"),
            &n("role not read"),
        ),
    );
    seq.push(n("role not read"), fail_with("$.r.role_error"));
    let mut none = set("$.r.role", json!({"role": null}));
    none["Next"] = json!(n("before-state"));
    seq.push(n("no role"), none);
    seq.push(
        n("before-state"),
        set(
            "$.r.before",
            json!({
                "role_name.$": "$.r.t.role_name",
                "existing.$": "$.r.role.role",
                "trust_policy.$": "$.r.t.trust",
                "policy.$": "$.r.g.policy",
                "max_session_duration.$": "$.r.t.max_session",
                "expires_at.$": "$.r.t.expires_at",
            }),
        ),
    );
    seq.push(
        n("record"),
        c.evidence("responder-role-before.json", "$.r.before"),
    );
    seq.push(
        n("role exists"),
        choice(
            json!({"Variable": "$.r.role.role", "IsNull": true}),
            &n("create role"),
            &n("tagged"),
        ),
    );
}

/// The role's tags: the case, the execution and the expiry.
fn tags() -> Value {
    json!([
        {"Key": TAG_CASE, "Value.$": "$.case_id"},
        {"Key": TAG_RUN, "Value.$": "$$.Execution.Name"},
        {"Key": TAG_EXPIRES_AT, "Value.$": "$.r.t.expires_at"},
    ])
}

/// CreateRole; one created meanwhile by another execution (EntityAlreadyExists) is read
/// and reused after the case check, as the CLI does.
fn create(seq: &mut Seq, id: &str, c: &Calls) {
    let n = |s: &str| format!("{id}: {s}");
    let mut t = c.read(
        "iam:createRole",
        json!({
            "RoleName.$": "$.r.t.role_name",
            "AssumeRolePolicyDocument.$": "$.r.t.trust_text",
            "MaxSessionDuration.$": "$.r.t.max_session",
            "Description.$": "States.Format('irr-responder-access-for-case-{}', $.case_id)",
            "Tags": tags(),
        }),
        json!({"Arn.$": "$.Role.Arn"}),
        "$.r.created",
    );
    t["Retry"] = transient_retry(&["ConcurrentModification", "ServiceFailure"]);
    t["Catch"] = json!([{"ErrorEquals": ["States.ALL"], "ResultPath": "$.r.create_error", "Next": n("role not created")}]);
    t["Next"] = json!(n("created role"));
    seq.push(n("create role"), t);
    seq.push(
        n("role not created"),
        choice(
            json!({"Variable": "$.r.create_error.Error", "StringMatches": ALREADY_EXISTS}),
            &n("role created meanwhile"),
            &n("creation failed"),
        ),
    );
    seq.push(n("creation failed"), fail_with("$.r.create_error"));
    let mut again = c.read(
        "iam:getRole",
        json!({"RoleName.$": "$.r.t.role_name"}),
        json!({"role.$": "$.Role"}),
        "$.r.role",
    );
    again["Next"] = json!(n("tagged"));
    seq.push(n("role created meanwhile"), again);
    let mut arn = json!({"Type": "Pass", "InputPath": "$.r.created.Arn", "ResultPath": "$.r.arn"});
    arn["Next"] = json!(n("responder policy"));
    seq.push(n("created role"), arn);
}

/// A reused role's trust policy, session length and tags brought up to date, each retried
/// while IAM has not yet seen a new principal or role; its ARN at `$.r.arn`.
fn reconcile(seq: &mut Seq, id: &str, c: &Calls) {
    let n = |s: &str| format!("{id}: {s}");
    let calls = [
        (
            "trust policy",
            "iam:updateAssumeRolePolicy",
            json!({"RoleName.$": "$.r.t.role_name", "PolicyDocument.$": "$.r.t.trust_text"}),
        ),
        (
            "session length",
            "iam:updateRole",
            json!({"RoleName.$": "$.r.t.role_name", "MaxSessionDuration.$": "$.r.t.max_session"}),
        ),
        (
            "tags",
            "iam:tagRole",
            json!({"RoleName.$": "$.r.t.role_name", "Tags": tags()}),
        ),
    ];
    for (what, api, args) in calls {
        let mut t = c.change(api, args);
        t["Retry"] = transient_retry(&["NoSuchEntity", "ConcurrentModification", "ServiceFailure"]);
        seq.push(n(what), t);
    }
    seq.push(
        n("reused role"),
        json!({"Type": "Pass", "InputPath": "$.r.role.role.Arn", "ResultPath": "$.r.arn"}),
    );
}
