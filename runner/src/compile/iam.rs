//! The IAM actions as states: what each CLI action reads, records and changes, call for call,
//! in the target account (`Calls::task` gives every IAM task `Credentials.RoleArn`).
//!
//! What a state machine cannot do as the CLI does, and how it is kept faithful:
//! - IAM answers lists in pages. Each list is read as one page of at most [`MAX_ITEMS`] (every
//!   IAM quota on what these lists hold is far below it: 2 access keys, 10 groups, 20 managed
//!   policies per principal); a truncated answer fails the step (`irr.Truncated`) rather than
//!   record part of the list.
//! - An IAM error is told apart by its name (`Iam.NoSuchEntityException` on AWS,
//!   `IAM.NoSuchEntityException` on LocalStack: matched as `*.NoSuchEntityException`).
//! - Policy documents are recorded as IAM answers them (URL-encoded text on AWS): there is no
//!   URL decoding among the intrinsic functions.
//! - A record the CLI builds from an answer with fixed fields is built the same (snake_case
//!   keys, `null` where the CLI writes `null`); a user or role is recorded as `GetUser` /
//!   `GetRole` answer it (their tags are a list: a state machine cannot turn one into a map).
//!
//! docs/step-functions.md, "Actions", says what each translation records and what differs.

use serde_json::{json, Value};

use super::asl::{
    attempt_dir, choice, each, fail_with, optional, params, present, set, set_const, Branch, Calls,
    Seq,
};
use super::expr::Expr;
use super::{Params, Refusal, Translated};
use crate::actions::iam::REVOKE_POLICY_NAME;

/// The page size of every IAM list (IAM's largest `MaxItems`).
const MAX_ITEMS: u64 = 1000;
/// Per-item reads of one list run side by side, at most this many at once.
const READ_CONCURRENCY: u32 = 4;
/// What an IAM error's name ends with when the entity does not exist.
const NO_SUCH_ENTITY: &str = "*.NoSuchEntityException";

/// The user or the role a step names (exactly one, as validation checks).
#[derive(Clone, Copy)]
struct Principal<'a> {
    name: &'a Expr,
    /// `user` or `role`.
    kind: &'static str,
}

impl Principal<'_> {
    /// `User` or `Role`, as in the API names (`iam:getUserPolicy`).
    fn api(&self) -> &'static str {
        if self.kind == "user" {
            "User"
        } else {
            "Role"
        }
    }

    /// The API's parameter naming it (`UserName`).
    fn param(&self) -> String {
        format!("{}Name", self.api())
    }

    /// The CLI's key for it in evidence (`user_name`).
    fn field(&self) -> String {
        format!("{}_name", self.kind)
    }
}

fn principal(p: &Params) -> Result<Principal<'_>, Refusal> {
    p.check("user_name")?;
    p.check("role_name")?;
    match (p.get("user_name"), p.get("role_name")) {
        (Some(name), None) => Ok(Principal { name, kind: "user" }),
        (None, Some(name)) => Ok(Principal { name, kind: "role" }),
        _ => Err(Refusal::param(
            "user_name",
            "give exactly one of user_name and role_name",
        )),
    }
}

/// The rule "the error caught at `path` is IAM's NoSuchEntity".
pub(super) fn no_such_entity(path: &str) -> Value {
    json!({"Variable": format!("{path}.Error"), "StringMatches": NO_SUCH_ENTITY})
}

/// A task `Retry` on IAM's transient errors (each code as `Iam.CODEException` and
/// `IAM.CODEException`), doubling from 1 s to 16 s for about a minute: the CLI's
/// `retry_transient`.
pub(super) fn transient_retry(codes: &[&str]) -> Value {
    let names: Vec<String> = codes
        .iter()
        .flat_map(|c| [format!("Iam.{c}Exception"), format!("IAM.{c}Exception")])
        .collect();
    json!([{"ErrorEquals": names, "IntervalSeconds": 1, "BackoffRate": 2.0, "MaxAttempts": 7, "MaxDelaySeconds": 16}])
}

/// A `Pass` ending an iteration with `params` as its result.
fn result(params: Value) -> Value {
    json!({"Type": "Pass", "Parameters": params, "End": true})
}

/// What each iteration over a list is given: the item at `$.v`, the target (for its
/// calls' credentials) and the principal's name at `$.principal`.
fn item_selector(name: &Expr) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("v.$".into(), json!("$$.Map.Item.Value"));
    m.insert("target.$".into(), json!("$.target"));
    name.put(&mut m, "principal");
    Value::Object(m)
}

/// An iteration keeping fields of the item, renamed (`(to, from)`).
fn projection(id: &str, what: &str, fields: &[(&str, &str)]) -> Branch {
    let mut m = serde_json::Map::new();
    for (to, from) in fields {
        m.insert(format!("{to}.$"), json!(format!("$.v.{from}")));
    }
    let mut it = Seq::default();
    it.push(format!("{id}: {what}"), result(Value::Object(m)));
    it.finish()
}

/// An iteration giving one field of the item (`None`: the item itself).
fn pick(id: &str, what: &str, field: Option<&str>) -> Branch {
    let path = field.map_or("$.v".to_owned(), |f| format!("$.v.{f}"));
    let mut it = Seq::default();
    it.push(
        format!("{id}: {what}"),
        json!({"Type": "Pass", "OutputPath": path, "End": true}),
    );
    it.finish()
}

/// One IAM list: its page at `$.r.KEY_list` (`answer`, or the error), every item through an
/// iteration, the results at `$.r.KEY` (`[]` when there is none).
struct List<'a> {
    key: &'a str,
    what: &'a str,
    api: &'a str,
    /// The principal the list is of.
    of: Principal<'a>,
    /// The field of the answer holding the items.
    field: &'a str,
}

/// How a failed list is taken.
#[derive(Clone, Copy, PartialEq)]
enum Failed {
    /// A gap: no items, the step goes on (the CLI's optional reads).
    Gap,
    /// NoSuchEntity is no items (the principal went away meanwhile); any other error fails.
    Fails,
}

/// The states of one list, its items through `iteration` (`concurrency` at a time).
fn list(
    seq: &mut Seq,
    id: &str,
    c: &Calls,
    l: &List,
    failed: Failed,
    iteration: (Value, Branch, u32),
) {
    let page = format!("$.r.{}_list", l.key);
    let answer = format!("{page}.answer");
    let what = l.what;
    let listed = format!("{id}: {what} listed");
    let complete = format!("{id}: {what} complete");
    let too_many = format!("{id}: too many {what}");
    let each_one = format!("{id}: each of the {what}");
    let none = format!("{id}: no {what}");
    let done = format!("{id}: {what} done");
    let mut args = params(&[(&l.of.param(), l.of.name)]);
    args["MaxItems"] = json!(MAX_ITEMS);
    let read = c.read(l.api, args, json!({"answer.$": "$"}), &page);
    match failed {
        Failed::Gap => seq.push(format!("{id}: {what} (optional)"), optional(read, &listed)),
        Failed::Fails => {
            let not_listed = format!("{id}: {what} not listed");
            let list_failed = format!("{id}: {what} list failed");
            let mut read = read;
            read["Catch"] =
                json!([{"ErrorEquals": ["States.ALL"], "ResultPath": page, "Next": not_listed}]);
            read["Next"] = json!(listed);
            seq.push(format!("{id}: {what}"), read);
            seq.push(
                not_listed,
                choice(no_such_entity(&page), &none, &list_failed),
            );
            seq.push(list_failed, fail_with(&page))
        }
    };
    seq.push(
        listed,
        json!({"Type": "Choice", "Choices": [
            {"Not": present(&format!("{answer}.{}[0]", l.field)), "Next": none},
            {"Not": present(&format!("{answer}.IsTruncated")), "Next": each_one},
        ], "Default": complete}),
    );
    seq.push(
        complete,
        choice(
            json!({"Variable": format!("{answer}.IsTruncated"), "BooleanEquals": true}),
            &too_many,
            &each_one,
        ),
    );
    seq.push(too_many, json!({"Type": "Fail", "Error": "irr.Truncated", "Cause": format!(
        "IAM listed more than {MAX_ITEMS} {what} of the {}: recording part of them is refused", l.of.kind
    )}));
    let (selector, branch, concurrency) = iteration;
    let mut m = each(
        &format!("{answer}.{}", l.field),
        selector,
        branch,
        concurrency,
        json!(format!("$.r.{}", l.key)),
    );
    m["Next"] = json!(done);
    seq.push(each_one, m);
    seq.push(none, set_const(&format!("$.r.{}", l.key), json!([])));
    seq.push(done, json!({"Type": "Pass"}));
}

/// States that find the element of the list at `list` whose `field` is `wanted`, putting it
/// at `AT.v` and going to `found`; `missing` when there is none. The list must be present.
struct Find<'a> {
    what: &'a str,
    list: &'a str,
    field: &'a str,
    wanted: &'a Expr,
    at: &'a str,
}

fn find(seq: &mut Seq, id: &str, f: &Find, found: &str, missing: &str) {
    let what = f.what;
    let state = format!("{}_search", f.at);
    let left = format!("{id}: {what} left");
    let next = format!("{id}: next {what}");
    let is_it = format!("{id}: is it the {what}");
    let after = format!("{id}: after this {what}");
    let mut start = serde_json::Map::new();
    start.insert(
        "n.$".into(),
        json!(format!("States.ArrayLength({})", f.list)),
    );
    start.insert("i".into(), json!(0));
    f.wanted.put(&mut start, "wanted");
    seq.push(
        format!("{id}: look for the {what}"),
        set(&state, Value::Object(start)),
    );
    seq.push(
        left.clone(),
        choice(
            json!({"Variable": format!("{state}.i"), "NumericLessThanPath": format!("{state}.n")}),
            &next,
            missing,
        ),
    );
    seq.push(
        next,
        set(
            f.at,
            json!({"v.$": format!("States.ArrayGetItem({}, {state}.i)", f.list)}),
        ),
    );
    seq.push(
        is_it,
        choice(
            json!({"Variable": format!("{}.v.{}", f.at, f.field), "StringEqualsPath": format!("{state}.wanted")}),
            found,
            &after,
        ),
    );
    let mut step = set(
        &state,
        json!({"n.$": format!("{state}.n"), "wanted.$": format!("{state}.wanted"), "i.$": format!("States.MathAdd({state}.i, 1)")}),
    );
    step["Next"] = json!(left);
    seq.push(after, step);
}

/// `iam.capture_principal`: the user (`GetUser`) or role (`GetRole`), the one read it cannot
/// do without, then its inline and managed policies, groups and access keys (a user) or
/// instance profiles (a role), each read optional, one evidence item each as the CLI's.
pub fn capture(id: &str, p: &Params, c: &Calls) -> Result<Translated, Refusal> {
    let who = principal(p)?;
    let mut seq = Seq::default();
    attempt_dir(&mut seq, id, p.in_map);
    let api = who.api();
    let (file, key) = if who.kind == "user" {
        ("user.json", "User")
    } else {
        ("role.json", "Role")
    };
    seq.push(
        format!("{id}: {}", who.kind),
        c.read(
            &format!("iam:get{api}"),
            params(&[(&who.param(), who.name)]),
            json!({"answer.$": format!("$.{key}")}),
            "$.r.principal",
        ),
    );
    seq.push(
        format!("{id}: record {}", who.kind),
        c.evidence(file, "$.r.principal.answer"),
    );
    policies(&mut seq, id, c, who);
    if who.kind == "user" {
        groups(&mut seq, id, c, who);
        access_keys(&mut seq, id, c, who);
    } else {
        instance_profiles(&mut seq, id, c, who);
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

/// `policies.json`: `{NAME_FIELD, inline: [{policy_name, document}], attached:
/// [{policy_name, policy_arn, default_version, document}]}` (an item not read: `null`s and
/// its `error`).
fn policies(seq: &mut Seq, id: &str, c: &Calls, who: Principal) {
    let api = who.api();
    let inline = List {
        key: "inline",
        what: "inline policies",
        api: &format!("iam:list{api}Policies"),
        of: who,
        field: "PolicyNames",
    };
    let iteration = inline_policy(id, c, who);
    list(
        seq,
        id,
        c,
        &inline,
        Failed::Gap,
        (item_selector(who.name), iteration, READ_CONCURRENCY),
    );
    let attached = List {
        key: "attached",
        what: "managed policies",
        api: &format!("iam:listAttached{api}Policies"),
        of: who,
        field: "AttachedPolicies",
    };
    list(
        seq,
        id,
        c,
        &attached,
        Failed::Gap,
        (
            item_selector(who.name),
            managed_policy(id, c),
            READ_CONCURRENCY,
        ),
    );
    let mut body = params(&[(&who.field(), who.name)]);
    body["inline.$"] = json!("$.r.inline");
    body["attached.$"] = json!("$.r.attached");
    seq.push(format!("{id}: policies"), set("$.r.body", body));
    seq.push(
        format!("{id}: record policies"),
        c.evidence("policies.json", "$.r.body"),
    );
}

/// One inline policy's document (optional).
fn inline_policy(id: &str, c: &Calls, who: Principal) -> Branch {
    let read = format!("{id}: inline policy (optional)");
    let outcome = format!("{id}: inline policy read");
    let ok = format!("{id}: inline policy document");
    let failed = format!("{id}: inline policy not read");
    let mut it = Seq::default();
    let mut args = serde_json::Map::new();
    args.insert(format!("{}.$", who.param()), json!("$.principal"));
    args.insert("PolicyName.$".into(), json!("$.v"));
    it.push(
        read,
        optional(
            c.read(
                &format!("iam:get{}Policy", who.api()),
                Value::Object(args),
                json!({"answer.$": "$.PolicyDocument"}),
                "$.got",
            ),
            &outcome,
        ),
    );
    it.push(outcome, choice(present("$.got.answer"), &ok, &failed));
    it.push(
        ok,
        result(json!({"policy_name.$": "$.v", "document.$": "$.got.answer"})),
    );
    it.push(
        failed,
        result(json!({"policy_name.$": "$.v", "document": null, "error.$": "$.got"})),
    );
    it.finish()
}

/// One attached managed policy with its default version's document (both reads optional).
fn managed_policy(id: &str, c: &Calls) -> Branch {
    let n = |s: &str| format!("{id}: {s}");
    let mut it = Seq::default();
    it.push(
        n("managed policy (optional)"),
        optional(
            c.read(
                "iam:getPolicy",
                json!({"PolicyArn.$": "$.v.PolicyArn"}),
                json!({"answer.$": "$.Policy"}),
                "$.pol",
            ),
            &n("managed policy read"),
        ),
    );
    it.push(
        n("managed policy read"),
        choice(
            present("$.pol.answer.DefaultVersionId"),
            &n("managed policy version (optional)"),
            &n("managed policy not read"),
        ),
    );
    it.push(
        n("managed policy not read"),
        result(
            json!({"policy_name.$": "$.v.PolicyName", "policy_arn.$": "$.v.PolicyArn",
                      "default_version": null, "document": null, "error.$": "$.pol"}),
        ),
    );
    it.push(
        n("managed policy version (optional)"),
        optional(
            c.read(
                "iam:getPolicyVersion",
                json!({"PolicyArn.$": "$.v.PolicyArn", "VersionId.$": "$.pol.answer.DefaultVersionId"}),
                json!({"answer.$": "$.PolicyVersion"}),
                "$.ver",
            ),
            &n("managed policy version read"),
        ),
    );
    it.push(
        n("managed policy version read"),
        choice(
            present("$.ver.answer.Document"),
            &n("managed policy document"),
            &n("managed policy document not read"),
        ),
    );
    let known = json!({"policy_name.$": "$.v.PolicyName", "policy_arn.$": "$.v.PolicyArn",
                       "default_version.$": "$.pol.answer.DefaultVersionId"});
    let mut doc = known.clone();
    doc["document.$"] = json!("$.ver.answer.Document");
    it.push(n("managed policy document"), result(doc));
    let mut missing = known;
    missing["document"] = Value::Null;
    missing["error.$"] = json!("$.ver");
    it.push(n("managed policy document not read"), result(missing));
    it.finish()
}

/// `groups.json`: `{user_name, groups: [{group_name, arn}]}`.
fn groups(seq: &mut Seq, id: &str, c: &Calls, who: Principal) {
    let l = List {
        key: "groups",
        what: "groups",
        api: "iam:listGroupsForUser",
        of: who,
        field: "Groups",
    };
    let it = projection(id, "group", &[("group_name", "GroupName"), ("arn", "Arn")]);
    list(
        seq,
        id,
        c,
        &l,
        Failed::Gap,
        (item_selector(who.name), it, READ_CONCURRENCY),
    );
    let mut body = params(&[("user_name", who.name)]);
    body["groups.$"] = json!("$.r.groups");
    seq.push(format!("{id}: groups"), set("$.r.body", body));
    seq.push(
        format!("{id}: record groups"),
        c.evidence("groups.json", "$.r.body"),
    );
}

/// `instance-profiles.json`: `{role_name, instance_profiles: [{instance_profile_name, arn}]}`.
fn instance_profiles(seq: &mut Seq, id: &str, c: &Calls, who: Principal) {
    let l = List {
        key: "profiles",
        what: "instance profiles",
        api: "iam:listInstanceProfilesForRole",
        of: who,
        field: "InstanceProfiles",
    };
    let it = projection(
        id,
        "instance profile",
        &[
            ("instance_profile_name", "InstanceProfileName"),
            ("arn", "Arn"),
        ],
    );
    list(
        seq,
        id,
        c,
        &l,
        Failed::Gap,
        (item_selector(who.name), it, READ_CONCURRENCY),
    );
    let mut body = params(&[("role_name", who.name)]);
    body["instance_profiles.$"] = json!("$.r.profiles");
    seq.push(format!("{id}: instance profiles"), set("$.r.body", body));
    seq.push(
        format!("{id}: record instance profiles"),
        c.evidence("instance-profiles.json", "$.r.body"),
    );
}

/// `access-keys.json`: `{user_name, access_keys: [{access_key_id, status, created,
/// last_used: {date, service, region}}]}` (ids and metadata only: IAM never lists secrets).
fn access_keys(seq: &mut Seq, id: &str, c: &Calls, who: Principal) {
    let l = List {
        key: "keys",
        what: "access keys",
        api: "iam:listAccessKeys",
        of: who,
        field: "AccessKeyMetadata",
    };
    let n = |s: &str| format!("{id}: {s}");
    let mut it = Seq::default();
    it.push(
        n("key last used (optional)"),
        optional(
            c.read(
                "iam:getAccessKeyLastUsed",
                json!({"AccessKeyId.$": "$.v.AccessKeyId"}),
                json!({"answer.$": "$.AccessKeyLastUsed"}),
                "$.used",
            ),
            &n("key last use read"),
        ),
    );
    it.push(
        n("key last use read"),
        choice(
            present("$.used.answer"),
            &n("key last use"),
            &n("key last use not read"),
        ),
    );
    // Never used: no date. The defaults give every field the CLI records.
    it.push(
        n("key last use"),
        set(
            "$.used",
            json!({"v.$": "States.JsonMerge($.defaults, $.used.answer, false)"}),
        ),
    );
    let key = json!({"access_key_id.$": "$.v.AccessKeyId", "status.$": "$.v.Status", "created.$": "$.v.CreateDate"});
    let mut used = key.clone();
    used["last_used"] = json!({"date.$": "$.used.v.LastUsedDate", "service.$": "$.used.v.ServiceName", "region.$": "$.used.v.Region"});
    it.push(n("access key"), result(used));
    let mut unknown = key;
    unknown["last_used"] = Value::Null;
    unknown["error.$"] = json!("$.used");
    it.push(n("key last use not read"), result(unknown));
    let mut selector = item_selector(who.name);
    selector["defaults"] = json!({"LastUsedDate": null, "ServiceName": null, "Region": null});
    list(
        seq,
        id,
        c,
        &l,
        Failed::Gap,
        (selector, it.finish(), READ_CONCURRENCY),
    );
    let mut body = params(&[("user_name", who.name)]);
    body["access_keys.$"] = json!("$.r.keys");
    seq.push(format!("{id}: access keys"), set("$.r.body", body));
    seq.push(
        format!("{id}: record access keys"),
        c.evidence("access-keys.json", "$.r.body"),
    );
}

/// `iam.deactivate_access_key`: the user's keys listed (a user has at most two, one page),
/// the key found (else the step fails, as the CLI's), its status recorded, then set
/// `Inactive` unless it already is. Output `previous_status`.
pub fn deactivate_key(id: &str, p: &Params, c: &Calls) -> Result<Translated, Refusal> {
    let user = p.required("user_name")?;
    let key = p.required("access_key_id")?;
    let mut seq = Seq::default();
    attempt_dir(&mut seq, id, p.in_map);
    let n = |s: &str| format!("{id}: {s}");
    seq.push(
        n("access keys"),
        c.read(
            "iam:listAccessKeys",
            params(&[("UserName", user)]),
            Value::Null,
            "$.r.keys",
        ),
    );
    let missing = n("no such key");
    seq.push(
        n("any key"),
        choice(
            json!({"Not": present("$.r.keys.AccessKeyMetadata[0]")}),
            &missing,
            &n("look for the key"),
        ),
    );
    find(
        &mut seq,
        id,
        &Find {
            what: "key",
            list: "$.r.keys.AccessKeyMetadata",
            field: "AccessKeyId",
            wanted: key,
            at: "$.r.key",
        },
        &n("before-state"),
        &missing,
    );
    seq.push(
        missing,
        json!({"Type": "Fail", "Error": "irr.NoSuchAccessKey", "Cause": "the user has no such access key"}),
    );
    let mut before = params(&[("user_name", user), ("access_key_id", key)]);
    before["status.$"] = json!("$.r.key.v.Status");
    before["created.$"] = json!("$.r.key.v.CreateDate");
    seq.push(n("before-state"), set("$.r.before", before));
    seq.push(
        n("record"),
        c.evidence("access-key-before.json", "$.r.before"),
    );
    seq.push(
        n("already inactive"),
        choice(
            json!({"Variable": "$.r.before.status", "StringEquals": "Inactive"}),
            &n("outputs"),
            &n("deactivate"),
        ),
    );
    let mut args = params(&[("UserName", user), ("AccessKeyId", key)]);
    args["Status"] = json!("Inactive");
    seq.push(n("deactivate"), c.change("iam:updateAccessKey", args));
    seq.push(
        n("outputs"),
        json!({"Type": "Pass", "Parameters": {"previous_status.$": "$.r.before.status"}, "End": true}),
    );
    Ok(Translated {
        branch: seq.finish(),
        outputs: vec!["previous_status"],
    })
}

/// `iam.revoke_sessions`: the cut-off is now (`$$.State.EnteredTime` of the state that fixes
/// it, as the CLI takes the clock when the step runs), the principal's `irr-revoke-sessions`
/// policy recorded (a missing user or role, or a service-linked role, fails the step), then
/// the policy put: Deny `*` to sessions whose `aws:TokenIssueTime` is before the cut-off.
/// Output `revoked_before`.
pub fn revoke_sessions(id: &str, p: &Params, c: &Calls) -> Result<Translated, Refusal> {
    let who = principal(p)?;
    let n = |s: &str| format!("{id}: {s}");
    let mut seq = Seq::default();
    attempt_dir(&mut seq, id, p.in_map);
    seq.push(
        n("cut-off"),
        set("$.r.cutoff", json!({"at.$": "$$.State.EnteredTime"})),
    );
    seq.push(
        n("deny statement"),
        set(
            "$.r.statement",
            json!({
                "Sid": "IrrRevokeOlderSessions",
                "Effect": "Deny",
                "Action": "*",
                "Resource": "*",
                "Condition": {"DateLessThan": {"aws:TokenIssueTime.$": "$.r.cutoff.at"}},
            }),
        ),
    );
    seq.push(
        n("deny policy"),
        set(
            "$.r.policy",
            json!({"Version": "2012-10-17", "Statement.$": "States.Array($.r.statement)"}),
        ),
    );
    let named = params(&[(&who.param(), who.name)]);
    if who.kind == "role" {
        seq.push(
            n("role"),
            c.read(
                "iam:getRole",
                named.clone(),
                json!({"path.$": "$.Role.Path"}),
                "$.r.role",
            ),
        );
        seq.push(
            n("service-linked"),
            choice(
                json!({"Variable": "$.r.role.path", "StringMatches": "/aws-service-role/*"}),
                &n("service-linked role"),
                &n("policy before"),
            ),
        );
        seq.push(n("service-linked role"), json!({"Type": "Fail", "Error": "irr.ServiceLinkedRole", "Cause": "a service-linked role: IAM allows no inline policy on it"}));
    }
    let mut get = named.clone();
    get["PolicyName"] = json!(REVOKE_POLICY_NAME);
    let mut read = c.read(
        &format!("iam:get{}Policy", who.api()),
        get,
        json!({"doc.$": "$.PolicyDocument"}),
        "$.r.existing",
    );
    read["Catch"] = json!([{"ErrorEquals": ["States.ALL"], "ResultPath": "$.r.existing_error", "Next": n("policy there")}]);
    read["Next"] = json!(n("before-state"));
    seq.push(n("policy before"), read);
    let no_policy = n("no policy before");
    let check = if who.kind == "user" {
        n("user exists")
    } else {
        no_policy.clone()
    };
    seq.push(
        n("policy there"),
        choice(
            no_such_entity("$.r.existing_error"),
            &check,
            &n("policy not read"),
        ),
    );
    seq.push(n("policy not read"), fail_with("$.r.existing_error"));
    if who.kind == "user" {
        // NoSuchEntity both for "no such policy" and "no such user": GetUser tells them apart.
        seq.push(check, c.change("iam:getUser", named.clone()));
    }
    seq.push(no_policy, set_const("$.r.existing", json!({"doc": null})));
    let mut note =
        "sessions (temporary credentials) issued before revoked_before are denied everything"
            .to_owned();
    if who.kind == "user" {
        note.push_str(
            "; long-term access keys carry no issue time and are NOT affected: deactivate them",
        );
    }
    let mut before = params(&[("name", who.name)]);
    before["principal_type"] = json!(who.kind);
    before["existing_policy.$"] = json!("$.r.existing.doc");
    before["policy_name"] = json!(REVOKE_POLICY_NAME);
    before["revoked_before.$"] = json!("$.r.cutoff.at");
    before["note"] = json!(note);
    seq.push(n("before-state"), set("$.r.before", before));
    seq.push(
        n("record"),
        c.evidence("revoke-sessions-before.json", "$.r.before"),
    );
    let mut put = named;
    put["PolicyName"] = json!(REVOKE_POLICY_NAME);
    put["PolicyDocument.$"] = json!("States.JsonToString($.r.policy)");
    let mut change = c.change(&format!("iam:put{}Policy", who.api()), put);
    change["Retry"] = transient_retry(&["ConcurrentModification", "ServiceFailure"]);
    seq.push(n("deny older sessions"), change);
    seq.push(
        n("outputs"),
        json!({"Type": "Pass", "Parameters": {"revoked_before.$": "$.r.cutoff.at"}, "End": true}),
    );
    Ok(Translated {
        branch: seq.finish(),
        outputs: vec!["revoked_before"],
    })
}

/// `iam.revoke_responder_access`: the role read (already gone: recorded, success), refused
/// unless its `irr:case` tag is the execution's case, its policies and instance profiles
/// listed and recorded, removed one by one (each already gone is fine), then the role
/// deleted (retried while IAM has not seen the removals).
pub fn revoke_responder(id: &str, p: &Params, c: &Calls) -> Result<Translated, Refusal> {
    let role = p.required("role_name")?;
    let who = Principal {
        name: role,
        kind: "role",
    };
    let n = |s: &str| format!("{id}: {s}");
    let mut seq = Seq::default();
    attempt_dir(&mut seq, id, p.in_map);
    let mut read = c.read(
        "iam:getRole",
        params(&[("RoleName", role)]),
        json!({"role.$": "$.Role"}),
        "$.r.role",
    );
    read["Catch"] = json!([{"ErrorEquals": ["States.ALL"], "ResultPath": "$.r.role_error", "Next": n("role gone")}]);
    read["Next"] = json!(n("tagged"));
    seq.push(n("role"), read);
    seq.push(
        n("role gone"),
        choice(
            no_such_entity("$.r.role_error"),
            &n("no role"),
            &n("role not read"),
        ),
    );
    seq.push(n("role not read"), fail_with("$.r.role_error"));
    let mut gone = params(&[("role_name", role)]);
    gone["existing"] = Value::Null;
    seq.push(n("no role"), set("$.r.before", gone));
    let mut record_gone = c.evidence("responder-role-before.json", "$.r.before");
    record_gone["Next"] = json!(n("outputs"));
    seq.push(n("record no role"), record_gone);
    case_check(&mut seq, id, &n("inline policies"));
    attachments(&mut seq, id, c, who);
    let mut before = params(&[("role_name", role)]);
    before["existing.$"] = json!("$.r.role.role");
    before["inline_policies.$"] = json!("$.r.inline");
    before["attached_policies.$"] = json!("$.r.attached");
    before["instance_profiles.$"] = json!("$.r.profiles");
    seq.push(n("before-state"), set("$.r.before", before));
    seq.push(
        n("record"),
        c.evidence("responder-role-before.json", "$.r.before"),
    );
    removals(&mut seq, id, c, role);
    let mut delete = c.change("iam:deleteRole", params(&[("RoleName", role)]));
    delete["Retry"] =
        transient_retry(&["DeleteConflict", "ConcurrentModification", "ServiceFailure"]);
    delete["Catch"] = json!([{"ErrorEquals": ["States.ALL"], "ResultPath": "$.r.delete_error", "Next": n("role deleted meanwhile")}]);
    delete["Next"] = json!(n("outputs"));
    seq.push(n("delete role"), delete);
    seq.push(
        n("role deleted meanwhile"),
        choice(
            no_such_entity("$.r.delete_error"),
            &n("outputs"),
            &n("role not deleted"),
        ),
    );
    seq.push(n("role not deleted"), fail_with("$.r.delete_error"));
    seq.push(
        n("outputs"),
        json!({"Type": "Pass", "Parameters": {}, "End": true}),
    );
    Ok(Translated {
        branch: seq.finish(),
        outputs: vec![],
    })
}

/// Refuses a role (its `GetRole` answer at `$.r.role.role`) without this case's `irr:case`
/// tag (another case's, or not made by irr); goes on to `next`.
pub(super) fn case_check(seq: &mut Seq, id: &str, next: &str) {
    let n = |s: &str| format!("{id}: {s}");
    let not_irr = n("not made by irr");
    seq.push(
        n("tagged"),
        choice(
            json!({"Not": present("$.r.role.role.Tags[0]")}),
            &not_irr,
            &n("look for the case tag"),
        ),
    );
    find(
        seq,
        id,
        &Find {
            what: "case tag",
            list: "$.r.role.role.Tags",
            field: "Key",
            wanted: &Expr::Lit(json!(crate::actions::TAG_CASE)),
            at: "$.r.case_tag",
        },
        &n("same case"),
        &not_irr,
    );
    seq.push(not_irr, json!({"Type": "Fail", "Error": "irr.NotThisCase", "Cause": "the role exists and was not made by irr (no irr:case tag); refusing to take it over"}));
    seq.push(
        n("same case"),
        choice(
            json!({"Variable": "$.r.case_tag.v.Value", "StringEqualsPath": "$.case_id"}),
            next,
            &n("another case's role"),
        ),
    );
    seq.push(n("another case's role"), json!({"Type": "Fail", "Error": "irr.NotThisCase", "Cause": "the role belongs to another case (its irr:case tag); choose another role_name"}));
}

/// The role's inline policy names, attached policy ARNs and instance profile names at
/// `$.r.inline`, `$.r.attached`, `$.r.profiles` (NoSuchEntity: none, the role went away).
fn attachments(seq: &mut Seq, id: &str, c: &Calls, who: Principal) {
    let lists = [
        (
            "inline",
            "inline policies",
            "iam:listRolePolicies",
            "PolicyNames",
            None,
        ),
        (
            "attached",
            "managed policies",
            "iam:listAttachedRolePolicies",
            "AttachedPolicies",
            Some("PolicyArn"),
        ),
        (
            "profiles",
            "instance profiles",
            "iam:listInstanceProfilesForRole",
            "InstanceProfiles",
            Some("InstanceProfileName"),
        ),
    ];
    for (key, what, api, field, pick_field) in lists {
        let l = List {
            key,
            what,
            api,
            of: who,
            field,
        };
        let it = pick(id, &format!("{what} name"), pick_field);
        list(
            seq,
            id,
            c,
            &l,
            Failed::Fails,
            (json!({"v.$": "$$.Map.Item.Value"}), it, 10),
        );
    }
}

/// Each inline policy deleted, each managed policy detached, the role taken out of each
/// instance profile, one at a time (as the CLI); one already gone is fine, any other error
/// fails the step.
fn removals(seq: &mut Seq, id: &str, c: &Calls, role: &Expr) {
    let removals = [
        (
            "delete inline policies",
            "$.r.inline",
            "iam:deleteRolePolicy",
            "PolicyName",
        ),
        (
            "detach managed policies",
            "$.r.attached",
            "iam:detachRolePolicy",
            "PolicyArn",
        ),
        (
            "leave instance profiles",
            "$.r.profiles",
            "iam:removeRoleFromInstanceProfile",
            "InstanceProfileName",
        ),
    ];
    for (what, items, api, field) in removals {
        let n = |s: &str| format!("{id}: {what}: {s}");
        let mut it = Seq::default();
        let mut args = serde_json::Map::new();
        args.insert("RoleName.$".into(), json!("$.principal"));
        args.insert(format!("{field}.$"), json!("$.v"));
        let mut t = c.change(api, Value::Object(args));
        t["Catch"] =
            json!([{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": n("failed")}]);
        t["Next"] = json!(n("done"));
        it.push(n("remove"), t);
        it.push(
            n("failed"),
            choice(no_such_entity("$.error"), &n("done"), &n("not removed")),
        );
        it.push(n("not removed"), fail_with("$.error"));
        it.push(n("done"), json!({"Type": "Pass", "End": true}));
        seq.push(
            format!("{id}: {what}"),
            each(items, item_selector(role), it.finish(), 1, Value::Null),
        );
    }
}
