//! `s3.find_buckets`: the account's buckets by name pattern, tags and public exposure, so a
//! `for_each` can record or close them.
//!
//! `ListBuckets` gives the names; the name pattern is applied first (no call per bucket), then
//! the tags and the exposure are read only for the buckets still in the running. Those reads
//! are optional in the sense of the gaps rule: one that is denied (or fails) is a gap in the
//! evidence, and the bucket's fact is unknown. A bucket whose tags are unknown does not match
//! a tag criterion (nothing shows it has them); a bucket whose exposure is unknown matches
//! `public: true` (it may be public: better looked at than missed) and not `public: false`.

use std::collections::BTreeMap;

use futures::StreamExt as _;

use crate::actions::read_err;
use crate::catalog::TypeSpec;

use super::*;

/// The default, and the largest allowed, `max_buckets`.
const DEFAULT_MAX_BUCKETS: u64 = 1000;
const LIMIT_MAX_BUCKETS: u64 = 10_000;
/// At most this many `ListBuckets` pages (of up to 10000 names each).
const MAX_PAGES: usize = 100;
/// Buckets read at once.
const CONCURRENT_READS: usize = 8;

/// Parameters of `s3.find_buckets`: every criterion given must hold.
///
/// Each field's doc comment is the parameter's description in the catalog.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FindBucketsParams {
    /// buckets whose name matches this pattern as a whole (`*` any run of characters, `?` one character, e.g. `logs-*`)
    pub name_pattern: Option<String>,
    /// buckets carrying every one of these tags, key -> value (`*` and `?` in a value are wildcards)
    pub tags: Option<BTreeMap<String, String>>,
    /// `true`: buckets that may be public (their public access block is not fully on, or their policy status is public; unknown counts as may be); `false`: buckets that are neither
    pub public: Option<bool>,
    /// the most buckets the step may examine after the name pattern (at most 10000): when more are left, the step fails after recording what it saw
    #[schemars(extend("default" = 1000))]
    pub max_buckets: Option<u64>,
}

/// `s3.find_buckets`: its declaration (see [`Action`]); the parameters are [`FindBucketsParams`].
pub struct FindBuckets;

impl Action for FindBuckets {
    type Params = FindBucketsParams;
    const DECLARATION: Declaration = Declaration {
        name: "s3.find_buckets",
        summary: "find the account's buckets that match every criterion given: a name pattern, tags, public exposure",
        exactly_one_of: &[],
        outputs: &[
            out("buckets", TypeSpec::List(&TypeSpec::BucketName), "the matching buckets' names, sorted (for `for_each`)"),
            ARTIFACTS,
        ],
        api_calls: &[
            "s3:ListBuckets",
            "s3:GetBucketTagging",
            "s3:GetPublicAccessBlock",
            "s3:GetBucketPolicyStatus",
        ],
        permissions: &[
            perm("s3:ListAllMyBuckets", ANY),
            // The reads below are gaps when denied, not failures.
            perm_if("tags", "s3:GetBucketTagging", &["arn:aws:s3:::*"]),
            perm_if("public", "s3:GetBucketPublicAccessBlock", &["arn:aws:s3:::*"]),
            perm_if("public", "s3:GetBucketPolicyStatus", &["arn:aws:s3:::*"]),
        ],
        mutating: false,
        idempotency: "read-only",
        undo: None,
    };
    const AT_LEAST_ONE_OF: &'static [&'static [&'static str]] =
        &[&["name_pattern", "tags", "public"]];
    async fn run(ctx: &ActionCtx, params: FindBucketsParams) -> Result<ActionOutput, ActionError> {
        find_buckets(ctx, params).await
    }
}

/// What was learnt of one bucket.
struct Seen {
    name: String,
    /// `None`: no tag criterion, or the read failed.
    tags: Option<BTreeMap<String, String>>,
    /// `Some(true)` may be public, `Some(false)` is not, `None` unknown or not asked.
    public: Option<bool>,
    exposure: Value,
    matched: bool,
    why_not: Option<String>,
}

fn bad(msg: String) -> ActionError {
    ActionError::Params(format!("s3.find_buckets: {msg}"))
}

/// `s3.find_buckets`: see the module docs. Records every bucket examined and what was learnt
/// of it (`find-buckets.json`); outputs `buckets`. Read-only; the same in a dry run.
pub async fn find_buckets(
    ctx: &ActionCtx,
    p: FindBucketsParams,
) -> Result<ActionOutput, ActionError> {
    let max = p.max_buckets.unwrap_or(DEFAULT_MAX_BUCKETS);
    if !(1..=LIMIT_MAX_BUCKETS).contains(&max) {
        return Err(bad(format!(
            "`max_buckets` must be from 1 to {LIMIT_MAX_BUCKETS}, got {max}"
        )));
    }
    let tags = p.tags.filter(|t| !t.is_empty());
    if p.name_pattern.is_none() && tags.is_none() && p.public.is_none() {
        return Err(bad(
            "no criterion was given, so it would match every bucket of the account: give at least one of name_pattern, tags, public".into(),
        ));
    }
    let (names, pages, complete) = list_bucket_names(ctx).await?;
    let candidates: Vec<(String, Option<String>)> = names
        .iter()
        .filter(|(n, _)| {
            p.name_pattern
                .as_deref()
                .is_none_or(|pat| crate::actions::glob::matches(pat, n))
        })
        .map(|(n, r)| (n.clone(), r.clone()))
        .collect();
    let mut record = json!({
        "criteria": {"name_pattern": p.name_pattern, "tags": tags, "public": p.public},
        "listed": names.len(),
        "pages": pages,
        "complete": complete,
        "candidates": candidates.len(),
    });
    if candidates.len() as u64 > max {
        record["complete"] = json!(false);
        record["capped"] = json!(format!(
            "{} buckets are left after the name pattern, more than max_buckets {max}",
            candidates.len()
        ));
        let artifact = ctx.evidence("find-buckets.json", &record, "s3:ListBuckets")?;
        return Err(ActionError::Target(format!(
            "s3.find_buckets: {} buckets are left after the name pattern, more than max_buckets ({max}); nothing is listed rather than part of the list (recorded in {artifact}): narrow the name pattern, or raise max_buckets (at most {LIMIT_MAX_BUCKETS})",
            candidates.len()
        )));
    }
    let regional = regional_contexts(ctx, &candidates);
    let seen: Vec<Seen> = futures::stream::iter(candidates)
        .map(|(name, region)| {
            let ctx = region.as_ref().and_then(|r| regional.get(r)).unwrap_or(ctx);
            examine(ctx, name, tags.as_ref(), p.public)
        })
        .buffered(CONCURRENT_READS)
        .collect()
        .await;
    let mut matched: Vec<String> = seen
        .iter()
        .filter(|s| s.matched)
        .map(|s| s.name.clone())
        .collect();
    matched.sort();
    record["buckets"] = Value::Array(
        seen.iter()
            .map(|s| {
                json!({
                    "bucket": s.name,
                    "region": names.get(&s.name).cloned().flatten(),
                    "matched": s.matched,
                    "does_not_match": s.why_not,
                    "tags": s.tags,
                    "public": s.public,
                    "exposure": s.exposure,
                })
            })
            .collect(),
    );
    record["matched"] = json!(matched);
    let artifact = ctx.evidence("find-buckets.json", &record, "s3:ListBuckets")?;
    Ok(ActionOutput::default()
        .with("buckets", matched)
        .with("artifacts", vec![artifact]))
}

/// Every bucket `ListBuckets` gives, name -> region where it says (bounded by
/// [`MAX_PAGES`]), the pages read, and whether the listing is complete.
async fn list_bucket_names(
    ctx: &ActionCtx,
) -> Result<(BTreeMap<String, Option<String>>, usize, bool), ActionError> {
    let mut names = BTreeMap::new();
    let mut pages = ctx.aws.s3.list_buckets().into_paginator().send();
    let mut n = 0;
    while let Some(page) = pages.next().await {
        let page = page.map_err(read_err("s3", "ListBuckets"))?;
        n += 1;
        names.extend(
            page.buckets()
                .iter()
                .filter_map(|b| Some((b.name()?.to_owned(), b.bucket_region().map(str::to_owned)))),
        );
        if n >= MAX_PAGES && page.continuation_token().is_some() {
            ctx.gap(
                "s3:ListBuckets",
                &ActionError::Target(format!("the listing stops after {MAX_PAGES} pages ({} buckets); later buckets were not examined", names.len())),
            );
            return Ok((names, n, false));
        }
    }
    Ok((names, n, true))
}

/// An action context per region of the candidates other than the run's own: S3 answers a
/// bucket's configuration only in the bucket's region (elsewhere `PermanentRedirect`), and
/// `ListBuckets` lists every region's buckets.
fn regional_contexts(
    ctx: &ActionCtx,
    candidates: &[(String, Option<String>)],
) -> BTreeMap<String, ActionCtx> {
    let own = ctx.aws.s3.config().region().map(|r| r.as_ref().to_owned());
    let mut out = BTreeMap::new();
    for region in candidates.iter().filter_map(|(_, r)| r.as_ref()) {
        if Some(region) == own.as_ref() || out.contains_key(region) {
            continue;
        }
        let conf = ctx
            .aws
            .s3
            .config()
            .to_builder()
            .region(aws_config::Region::new(region.clone()))
            .build();
        let mut c = ctx.clone();
        c.aws.s3 = aws_sdk_s3::Client::from_conf(conf);
        out.insert(region.clone(), c);
    }
    out
}

/// Reads what the criteria need of one bucket and decides whether it matches. Reads that fail
/// are gaps (the fact is then unknown); tags first, so a bucket a tag rules out costs one read.
async fn examine(
    ctx: &ActionCtx,
    name: String,
    want_tags: Option<&BTreeMap<String, String>>,
    want_public: Option<bool>,
) -> Seen {
    let mut seen = Seen {
        name,
        tags: None,
        public: None,
        exposure: Value::Null,
        matched: true,
        why_not: None,
    };
    if let Some(want) = want_tags {
        let what = format!("s3:GetBucketTagging ({})", seen.name);
        seen.tags = ctx.or_gap(&what, bucket_tags(ctx, &seen.name).await);
        let ok = seen.tags.as_ref().is_some_and(|have| {
            want.iter().all(|(k, v)| {
                have.get(k)
                    .is_some_and(|h| crate::actions::glob::matches(v, h))
            })
        });
        if !ok {
            seen.matched = false;
            seen.why_not = Some(match seen.tags {
                None => "tags unknown (the read failed)".into(),
                Some(_) => "tags".into(),
            });
            return seen;
        }
    }
    if let Some(want) = want_public {
        let (public, exposure) = exposure(ctx, &seen.name).await;
        seen.public = public;
        seen.exposure = exposure;
        // Unknown exposure counts as may be public.
        let may_be_public = public != Some(false);
        if may_be_public != want {
            seen.matched = false;
            seen.why_not = Some(match public {
                None => "exposure unknown (a read failed): counted as may be public".into(),
                Some(true) => "may be public".into(),
                Some(false) => "not public".into(),
            });
        }
    }
    seen
}

/// The bucket's tags (none: `NoSuchTagSet`).
async fn bucket_tags(
    ctx: &ActionCtx,
    bucket: &str,
) -> Result<BTreeMap<String, String>, ActionError> {
    match ctx.aws.s3.get_bucket_tagging().bucket(bucket).send().await {
        Ok(o) => Ok(o
            .tag_set()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect()),
        Err(e) if e.code() == Some("NoSuchTagSet") => Ok(BTreeMap::new()),
        Err(e) => Err(aws_error("s3", "GetBucketTagging", &e)),
    }
}

/// Whether the bucket may be public: its public access block is not fully on, or S3's policy
/// status says public. `None` when a read failed and the other does not show it public.
async fn exposure(ctx: &ActionCtx, bucket: &str) -> (Option<bool>, Value) {
    let pab = public_access_block(ctx, bucket).await;
    let pab = ctx.or_gap(&format!("s3:GetPublicAccessBlock ({bucket})"), pab);
    let block_fully_on = pab.as_ref().map(|p| {
        [
            "block_public_acls",
            "ignore_public_acls",
            "block_public_policy",
            "restrict_public_buckets",
        ]
        .iter()
        .all(|k| p[k] == json!(true))
    });
    let (status, source) = if ctx.aws.endpoint_override {
        // moto has no GetBucketPolicyStatus (it answers with an object listing): read the
        // policy itself (docs/emulator-notes.md).
        (
            policy_document_public(ctx, bucket).await,
            "s3:GetBucketPolicy",
        )
    } else {
        (
            policy_status_public(ctx, bucket).await,
            "s3:GetBucketPolicyStatus",
        )
    };
    let policy_public = ctx.or_gap(&format!("{source} ({bucket})"), status);
    let public = match (block_fully_on, policy_public) {
        (Some(false), _) | (_, Some(true)) => Some(true),
        (Some(true), Some(false)) => Some(false),
        _ => None,
    };
    let exposure = json!({
        "public_access_block": pab,
        "public_access_block_fully_on": block_fully_on,
        "policy_is_public": policy_public,
        "policy_status_from": source,
    });
    (public, exposure)
}

/// S3's own verdict on the bucket policy (`GetBucketPolicyStatus`).
async fn policy_status_public(ctx: &ActionCtx, bucket: &str) -> Result<bool, ActionError> {
    match ctx
        .aws
        .s3
        .get_bucket_policy_status()
        .bucket(bucket)
        .send()
        .await
    {
        Ok(o) => Ok(o
            .policy_status()
            .and_then(|s| s.is_public())
            .unwrap_or(false)),
        // No policy: nothing in it makes the bucket public.
        Err(e) if e.code() == Some("NoSuchBucketPolicy") => Ok(false),
        Err(e) => Err(aws_error("s3", "GetBucketPolicyStatus", &e)),
    }
}

/// Against an emulator only: whether the bucket policy allows anyone (`Principal` `*` or
/// `{"AWS": "*"}`) without a condition, the core of what S3's policy status calls public.
async fn policy_document_public(ctx: &ActionCtx, bucket: &str) -> Result<bool, ActionError> {
    let text = match ctx.aws.s3.get_bucket_policy().bucket(bucket).send().await {
        Ok(o) => o.policy().unwrap_or_default().to_owned(),
        Err(e) if e.code() == Some("NoSuchBucketPolicy") => return Ok(false),
        Err(e) => return Err(aws_error("s3", "GetBucketPolicy", &e)),
    };
    Ok(serde_json::from_str::<Value>(&text).is_ok_and(|doc| allows_anyone(&doc)))
}

/// `true` when a statement of `doc` allows anyone without a condition.
fn allows_anyone(doc: &Value) -> bool {
    let statements = match &doc["Statement"] {
        Value::Array(s) => s.clone(),
        one @ Value::Object(_) => vec![one.clone()],
        _ => Vec::new(),
    };
    let anyone = |p: &Value| match p {
        Value::String(s) => s == "*",
        Value::Array(a) => a.iter().any(|v| v == "*"),
        _ => false,
    };
    statements.iter().any(|s| {
        s["Effect"] == "Allow"
            && s.get("Condition").is_none()
            && (anyone(&s["Principal"]) || anyone(&s["Principal"]["AWS"]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_open_to_anyone() {
        let open =
            json!({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject"}]});
        assert!(allows_anyone(&open));
        let aws = json!({"Statement": {"Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::1:root", "*"]}}});
        assert!(allows_anyone(&aws));
        let conditioned = json!({"Statement": [{"Effect": "Allow", "Principal": "*", "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}]});
        assert!(!allows_anyone(&conditioned));
        let denied = json!({"Statement": [{"Effect": "Deny", "Principal": "*"}]});
        assert!(!allows_anyone(&denied));
    }

    /// An S3 client of two buckets, `a-open` and `b-closed`, whose public access block reads
    /// are denied for `a-open` and fully on for `b-closed`; no policy is public. AWS's form
    /// (no endpoint override): `GetBucketPolicyStatus`.
    fn s3_ctx(rec: std::sync::Arc<crate::actions::test_support::NullRecorder>) -> ActionCtx {
        use aws_sdk_s3::operation::get_public_access_block::{
            GetPublicAccessBlockError, GetPublicAccessBlockOutput,
        };
        use aws_smithy_mocks::{mock, MockResponseInterceptor, RuleMode};
        let list = mock!(aws_sdk_s3::Client::list_buckets).then_output(|| {
            aws_sdk_s3::operation::list_buckets::ListBucketsOutput::builder()
                .buckets(aws_sdk_s3::types::Bucket::builder().name("a-open").build())
                .buckets(
                    aws_sdk_s3::types::Bucket::builder()
                        .name("b-closed")
                        .build(),
                )
                .build()
        });
        let denied = mock!(aws_sdk_s3::Client::get_public_access_block)
            .match_requests(|r| r.bucket() == Some("a-open"))
            .then_error(|| {
                GetPublicAccessBlockError::generic(
                    aws_smithy_types::error::ErrorMetadata::builder()
                        .code("AccessDenied")
                        .message("denied by the test")
                        .build(),
                )
            });
        let on = mock!(aws_sdk_s3::Client::get_public_access_block)
            .match_requests(|r| r.bucket() == Some("b-closed"))
            .then_output(|| {
                GetPublicAccessBlockOutput::builder()
                    .public_access_block_configuration(
                        aws_sdk_s3::types::PublicAccessBlockConfiguration::builder()
                            .block_public_acls(true)
                            .ignore_public_acls(true)
                            .block_public_policy(true)
                            .restrict_public_buckets(true)
                            .build(),
                    )
                    .build()
            });
        let status = mock!(aws_sdk_s3::Client::get_bucket_policy_status).then_output(|| {
            aws_sdk_s3::operation::get_bucket_policy_status::GetBucketPolicyStatusOutput::builder()
                .policy_status(
                    aws_sdk_s3::types::PolicyStatus::builder()
                        .is_public(false)
                        .build(),
                )
                .build()
        });
        let mut interceptor = MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny);
        for r in [&list, &denied, &on, &status] {
            interceptor = interceptor.with_rule(r);
        }
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "k", "s", None, None, "t",
            ))
            .http_client(aws_smithy_mocks::create_mock_http_client())
            .interceptor(interceptor)
            .build();
        let mut ctx = crate::actions::test_support::ctx_with_iam("IR-1", RuleMode::MatchAny, &[]);
        ctx.aws.s3 = aws_sdk_s3::Client::from_conf(conf);
        ctx.aws.endpoint_override = false;
        ctx.recorder = rec;
        ctx
    }

    #[tokio::test]
    async fn a_denied_exposure_read_is_a_gap_and_counts_as_may_be_public() {
        for (public, want) in [(true, "a-open"), (false, "b-closed")] {
            let rec = std::sync::Arc::new(crate::actions::test_support::NullRecorder::default());
            let ctx = s3_ctx(rec.clone());
            let p: FindBucketsParams =
                serde_json::from_value(json!({"name_pattern": "*-*", "public": public})).unwrap();
            let out = find_buckets(&ctx, p).await.unwrap();
            assert_eq!(out.outputs["buckets"], json!([want]), "public: {public}");
            let gaps = rec.gaps.lock().unwrap();
            assert_eq!(gaps.len(), 1, "{gaps:?}");
            assert_eq!(gaps[0].what, "s3:GetPublicAccessBlock (a-open)");
            assert!(gaps[0].error.contains("AccessDenied"), "{:?}", gaps[0]);
        }
    }

    #[test]
    fn buckets_of_other_regions_are_read_there() {
        let ctx = crate::actions::test_support::ctx_with_iam(
            "IR-1",
            aws_smithy_mocks::RuleMode::Sequential,
            &[],
        );
        let candidates = [
            ("a".to_owned(), Some("us-east-1".to_owned())),
            ("b".to_owned(), Some("eu-west-1".to_owned())),
            ("c".to_owned(), Some("eu-west-1".to_owned())),
            ("d".to_owned(), None),
        ];
        let regional = regional_contexts(&ctx, &candidates);
        assert_eq!(regional.keys().collect::<Vec<_>>(), ["eu-west-1"]);
        let region = regional["eu-west-1"].aws.s3.config().region().cloned();
        assert_eq!(region.as_ref().map(|r| r.as_ref()), Some("eu-west-1"));
    }

    #[tokio::test]
    async fn a_step_without_criteria_is_refused_before_any_call() {
        let ctx = crate::actions::test_support::ctx_with_iam(
            "IR-1",
            aws_smithy_mocks::RuleMode::Sequential,
            &[],
        );
        for p in [json!({}), json!({"tags": {}}), json!({"max_buckets": 3})] {
            let p: FindBucketsParams = serde_json::from_value(p).unwrap();
            let err = find_buckets(&ctx, p).await.unwrap_err();
            assert!(
                err.to_string().contains("would match every bucket"),
                "{err}"
            );
        }
    }
}
