//! The S3 actions as states. The incident's bucket is in the target account: its tasks go
//! through `Credentials.RoleArn` (`Calls::read_in_target`), while the evidence is written
//! to the evidence bucket as the machine's own role (`Calls::evidence`).
//!
//! The CLI tells "never configured" (recorded as absent) from "no such bucket" (the step
//! fails) and from any other error (a gap) by S3's error code. The integration's error does
//! not carry that code: a missing bucket is its own error (`S3.NoSuchBucketException`), and
//! every other S3 answer is `S3.S3Exception` with S3's status in `Cause`. A bucket
//! setting's read answers 404 for exactly two reasons, no such bucket and never configured:
//! so a 404 that is not `NoSuchBucketException` is "never configured".

use serde_json::{json, Value};

use super::asl::{
    attempt_dir, choice, fail_with, optional, params, pluck, present, set, set_const, Calls, Seq,
};
use super::expr::Expr;
use super::{Params, Refusal, Translated};

/// The four settings of a public access block: the API's field, the CLI's key.
const SETTINGS: [(&str, &str); 4] = [
    ("BlockPublicAcls", "block_public_acls"),
    ("IgnorePublicAcls", "ignore_public_acls"),
    ("BlockPublicPolicy", "block_public_policy"),
    ("RestrictPublicBuckets", "restrict_public_buckets"),
];

/// One bucket setting read: its state names' `what`, the API, the answer's selector.
struct Setting<'a> {
    what: &'a str,
    /// `$.r.KEY`: the answer (`{answer}`) or the error.
    key: &'a str,
    api: &'a str,
    answer: &'a str,
}

/// Where a setting's read goes once it has answered or failed.
struct Outcomes {
    read: String,
    absent: String,
    gap: String,
}

/// Reads a setting (optional) and goes on by its outcome: answered, no such bucket (the
/// step fails), never configured (404), anything else (a gap).
fn read_setting(seq: &mut Seq, id: &str, c: &Calls, bucket: &Expr, s: &Setting) -> Outcomes {
    let what = s.what;
    let path = format!("$.r.{}", s.key);
    let outcome = format!("{id}: {what} read");
    let out = Outcomes {
        read: format!("{id}: {what} as read"),
        absent: format!("{id}: {what} absent"),
        gap: format!("{id}: {what} not read"),
    };
    let no_bucket = format!("{id}: no such bucket ({what})");
    seq.push(
        format!("{id}: {what} (optional)"),
        optional(
            c.read_in_target(
                s.api,
                params(&[("Bucket", bucket)]),
                json!({"answer.$": s.answer}),
                &path,
            ),
            &outcome,
        ),
    );
    seq.push(
        outcome,
        json!({"Type": "Choice", "Choices": [
            {"Variable": format!("{path}.answer"), "IsPresent": true, "Next": out.read},
            {"Variable": format!("{path}.Error"), "StringMatches": "*.NoSuchBucketException", "Next": no_bucket},
            {"Not": present(&format!("{path}.Cause")), "Next": out.gap},
            {"Variable": format!("{path}.Cause"), "StringMatches": "*(Service: S3, Status Code: 404,*", "Next": out.absent},
        ], "Default": out.gap}),
    );
    seq.push(no_bucket, fail_with(&path));
    out
}

/// The evidence body `{bucket, captured, present, FIELD: value}`.
fn body(bucket: &Expr, captured: bool, present: Value, field: &str, value: &Expr) -> Value {
    let mut b = params(&[("bucket", bucket), (field, value)]);
    b["captured"] = json!(captured);
    b["present"] = present;
    b
}

/// A value read from the state.
fn at(path: &str) -> Expr {
    Expr::Path(path.to_owned())
}

/// `null`.
fn null() -> Expr {
    Expr::Lit(Value::Null)
}

/// Sets `$.r.body` and goes to `next`.
fn body_then(b: Value, next: &str) -> Value {
    let mut s = set("$.r.body", b);
    s["Next"] = json!(next);
    s
}

/// The public access block answered at `$.r.KEY.answer` as the CLI records it (`{configured:
/// true, block_public_acls, ...}`, a setting S3 left out is `false`) at `into`.
fn settings_as_cli(seq: &mut Seq, id: &str, key: &str, into: &str) {
    let defaults: serde_json::Map<String, Value> = SETTINGS
        .iter()
        .map(|(k, _)| ((*k).into(), json!(false)))
        .collect();
    seq.push(
        format!("{id}: public access block with defaults"),
        set(
            "$.r.pab_merge",
            json!({"defaults": defaults, "given.$": format!("$.r.{key}.answer")}),
        ),
    );
    seq.push(
        format!("{id}: public access block merged"),
        set(
            "$.r.pab_merge",
            json!({"v.$": "States.JsonMerge($.r.pab_merge.defaults, $.r.pab_merge.given, false)"}),
        ),
    );
    let mut m = serde_json::Map::new();
    m.insert("configured".into(), json!(true));
    for (api, cli) in SETTINGS {
        m.insert(format!("{cli}.$"), json!(format!("$.r.pab_merge.v.{api}")));
    }
    seq.push(
        format!("{id}: public access block settings"),
        set(into, Value::Object(m)),
    );
}

/// A public access block never configured, as the CLI records it.
fn unconfigured() -> Value {
    let mut m = serde_json::Map::new();
    m.insert("configured".into(), json!(false));
    for (_, cli) in SETTINGS {
        m.insert(cli.into(), json!(false));
    }
    Value::Object(m)
}

/// `s3.capture_bucket_config`: the bucket's ACL (first: it tells a missing bucket), policy,
/// public access block, default encryption, versioning and ownership controls, each read
/// optional (never configured: recorded absent), one evidence item each as the CLI's.
pub fn capture(id: &str, p: &Params, c: &Calls) -> Result<Translated, Refusal> {
    let bucket = p.required("bucket")?;
    let mut seq = Seq::default();
    attempt_dir(&mut seq, id, p.in_map);
    // (what, key, api, answer, file, field)
    let simple = [
        (
            "bucket ACL",
            "acl",
            "s3:getBucketAcl",
            "$",
            "bucket-acl.json",
            "acl",
        ),
        (
            "bucket policy",
            "policy",
            "s3:getBucketPolicy",
            "States.StringToJson($.Policy)",
            "bucket-policy.json",
            "policy",
        ),
    ];
    for (what, key, api, answer, file, field) in simple {
        let s = Setting {
            what,
            key,
            api,
            answer,
        };
        let record = format!("{id}: record {what}");
        let o = read_setting(&mut seq, id, c, bucket, &s);
        let answered = format!("$.r.{key}.answer");
        seq.push(
            o.absent,
            body_then(body(bucket, true, json!(false), field, &null()), &record),
        );
        seq.push(
            o.gap,
            body_then(gap(bucket, field, key, json!(false)), &record),
        );
        seq.push(
            o.read,
            set(
                "$.r.body",
                body(bucket, true, json!(true), field, &at(&answered)),
            ),
        );
        seq.push(record, c.evidence(file, "$.r.body"));
    }
    public_access_block(&mut seq, id, c, bucket);
    encryption(&mut seq, id, c, bucket);
    versioning(&mut seq, id, c, bucket);
    ownership(&mut seq, id, c, bucket);
    seq.push(
        format!("{id}: outputs"),
        json!({"Type": "Pass", "Parameters": {}, "End": true}),
    );
    Ok(Translated {
        branch: seq.finish(),
        outputs: vec![],
    })
}

/// A gap's body: not captured, `present` as the CLI writes it, the read's error kept.
fn gap(bucket: &Expr, field: &str, key: &str, present: Value) -> Value {
    let mut b = body(bucket, false, present, field, &null());
    b["error.$"] = json!(format!("$.r.{key}"));
    b
}

/// `public-access-block.json`: `{bucket, captured, present, public_access_block}`.
fn public_access_block(seq: &mut Seq, id: &str, c: &Calls, bucket: &Expr) {
    let s = Setting {
        what: "public access block",
        key: "pab",
        api: "s3:getPublicAccessBlock",
        answer: "$.PublicAccessBlockConfiguration",
    };
    let record = format!("{id}: record public access block");
    let field = "public_access_block";
    let o = read_setting(seq, id, c, bucket, &s);
    seq.push(
        o.absent,
        body_then(
            body(
                bucket,
                true,
                json!(false),
                field,
                &Expr::Lit(unconfigured()),
            ),
            &record,
        ),
    );
    seq.push(
        o.gap,
        body_then(gap(bucket, field, "pab", Value::Null), &record),
    );
    seq.push(o.read, json!({"Type": "Pass"}));
    settings_as_cli(seq, id, "pab", "$.r.pab_cli");
    seq.push(
        format!("{id}: public access block recorded"),
        set(
            "$.r.body",
            body(bucket, true, json!(true), field, &at("$.r.pab_cli")),
        ),
    );
    seq.push(record, c.evidence("public-access-block.json", "$.r.body"));
}

/// `bucket-encryption.json`: `{bucket, captured, present, rules}` (the rules as S3
/// answers them).
fn encryption(seq: &mut Seq, id: &str, c: &Calls, bucket: &Expr) {
    let s = Setting {
        what: "default encryption",
        key: "encryption",
        api: "s3:getBucketEncryption",
        answer: "$.ServerSideEncryptionConfiguration.Rules",
    };
    let record = format!("{id}: record default encryption");
    let o = read_setting(seq, id, c, bucket, &s);
    seq.push(
        o.absent,
        body_then(body(bucket, true, json!(false), "rules", &null()), &record),
    );
    seq.push(
        o.gap,
        body_then(gap(bucket, "rules", "encryption", json!(false)), &record),
    );
    seq.push(
        o.read,
        set(
            "$.r.body",
            body(
                bucket,
                true,
                json!(true),
                "rules",
                &at("$.r.encryption.answer"),
            ),
        ),
    );
    seq.push(record, c.evidence("bucket-encryption.json", "$.r.body"));
}

/// `bucket-versioning.json`: `{bucket, captured, present, status, versioning}` (`present`:
/// versioning was ever enabled; `versioning`, S3's answer, holds the MFA delete setting).
fn versioning(seq: &mut Seq, id: &str, c: &Calls, bucket: &Expr) {
    let s = Setting {
        what: "versioning",
        key: "versioning",
        api: "s3:getBucketVersioning",
        answer: "$",
    };
    let record = format!("{id}: record versioning");
    let o = read_setting(seq, id, c, bucket, &s);
    let with_answer = |present: bool, status: Expr| {
        let mut b = body(bucket, true, json!(present), "status", &status);
        b["versioning.$"] = json!("$.r.versioning.answer");
        b
    };
    let mut absent = body(bucket, true, json!(false), "status", &null());
    absent["versioning"] = Value::Null;
    seq.push(o.absent, body_then(absent, &record));
    let mut g = gap(bucket, "status", "versioning", json!(false));
    g["versioning"] = Value::Null;
    seq.push(o.gap, body_then(g, &record));
    let never = format!("{id}: versioning never enabled");
    let enabled = format!("{id}: versioning status");
    seq.push(
        o.read,
        choice(present("$.r.versioning.answer.Status"), &enabled, &never),
    );
    seq.push(never, body_then(with_answer(false, null()), &record));
    seq.push(
        enabled,
        set(
            "$.r.body",
            with_answer(true, at("$.r.versioning.answer.Status")),
        ),
    );
    seq.push(record, c.evidence("bucket-versioning.json", "$.r.body"));
}

/// `bucket-ownership-controls.json`: `{bucket, captured, present, object_ownership: [...]}`.
fn ownership(seq: &mut Seq, id: &str, c: &Calls, bucket: &Expr) {
    let s = Setting {
        what: "ownership controls",
        key: "ownership",
        api: "s3:getBucketOwnershipControls",
        answer: "$.OwnershipControls.Rules",
    };
    let record = format!("{id}: record ownership controls");
    let field = "object_ownership";
    let o = read_setting(seq, id, c, bucket, &s);
    seq.push(
        o.absent,
        body_then(body(bucket, true, json!(false), field, &null()), &record),
    );
    seq.push(
        o.gap,
        body_then(gap(bucket, field, "ownership", json!(false)), &record),
    );
    seq.push(
        o.read,
        pluck(
            &format!("{id}: ownership rules"),
            "$.r.ownership.answer",
            "ObjectOwnership",
            "$.r.ownership_rules",
        ),
    );
    seq.push(
        format!("{id}: ownership controls recorded"),
        set(
            "$.r.body",
            body(bucket, true, json!(true), field, &at("$.r.ownership_rules")),
        ),
    );
    seq.push(
        record,
        c.evidence("bucket-ownership-controls.json", "$.r.body"),
    );
}

/// `s3.block_public_access`: the bucket's public access block read (optional: unreadable,
/// all four are put anyway) and recorded, then all four settings on unless they already
/// are. Output `previous` (the CLI's `{configured, block_public_acls, ...}`, `null` when it
/// could not be read).
pub fn block_public_access(id: &str, p: &Params, c: &Calls) -> Result<Translated, Refusal> {
    let bucket = p.required("bucket")?;
    let n = |s: &str| format!("{id}: {s}");
    let mut seq = Seq::default();
    attempt_dir(&mut seq, id, p.in_map);
    let s = Setting {
        what: "public access block",
        key: "pab",
        api: "s3:getPublicAccessBlock",
        answer: "$.PublicAccessBlockConfiguration",
    };
    let o = read_setting(&mut seq, id, c, bucket, &s);
    let before = n("before-state");
    let mut absent = set_const("$.r.previous", unconfigured());
    absent["Next"] = json!(before);
    seq.push(o.absent, absent);
    let mut unread = set_const("$.r.previous", Value::Null);
    unread["Next"] = json!(before);
    seq.push(o.gap, unread);
    seq.push(o.read, json!({"Type": "Pass"}));
    settings_as_cli(&mut seq, id, "pab", "$.r.previous");
    let mut b = params(&[("bucket", bucket)]);
    b["public_access_block.$"] = json!("$.r.previous");
    seq.push(before, set("$.r.before", b));
    seq.push(
        n("record"),
        c.evidence("public-access-block-before.json", "$.r.before"),
    );
    let all_on: Vec<Value> = SETTINGS
        .iter()
        .map(|(_, cli)| json!({"Variable": format!("$.r.previous.{cli}"), "BooleanEquals": true}))
        .collect();
    seq.push(
        n("all on"),
        json!({"Type": "Choice", "Choices": [
            {"Variable": "$.r.previous", "IsNull": true, "Next": n("block public access")},
            {"And": all_on, "Next": n("outputs")},
        ], "Default": n("block public access")}),
    );
    let conf: serde_json::Map<String, Value> = SETTINGS
        .iter()
        .map(|(k, _)| ((*k).into(), json!(true)))
        .collect();
    let mut args = params(&[("Bucket", bucket)]);
    args["PublicAccessBlockConfiguration"] = Value::Object(conf);
    seq.push(
        n("block public access"),
        c.change_in_target("s3:putPublicAccessBlock", args),
    );
    seq.push(
        n("outputs"),
        json!({"Type": "Pass", "Parameters": {"previous.$": "$.r.previous"}, "End": true}),
    );
    Ok(Translated {
        branch: seq.finish(),
        outputs: vec!["previous"],
    })
}
