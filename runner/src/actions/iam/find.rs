//! `iam.find_access_key`: whose access key is it? A finding (or a leak report) names a key id;
//! containment needs the user.
//!
//! `sts:GetAccessKeyInfo` names the key's account. When it names another account, the user
//! cannot be looked up from here: the step says so (output `in_this_account: false`, a gap in
//! the evidence) and outputs that account. When it names this account, or cannot be asked
//! (denied; an emulator that lacks it), the account's users are searched: `ListUsers`, then
//! `ListAccessKeys` for each, a few at a time, until the key is found. The search is bounded
//! ([`MAX_USERS`]); a key that is not found fails the step, naming what was searched.

use futures::StreamExt as _;

use super::*;

/// At most this many users are searched (IAM's default quota is 5000 an account).
const MAX_USERS: usize = 10_000;
/// At most this many `ListUsers` pages: bounded time whatever IAM (or a hostile endpoint)
/// answers, e.g. empty pages that always carry a marker.
const MAX_PAGES: usize = 200;
/// `ListAccessKeys` calls in flight at once.
const CONCURRENT_READS: usize = 8;

/// Parameters of `iam.find_access_key`.
///
/// Each field's doc comment is the parameter's description in the catalog.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FindAccessKeyParams {
    /// the access key id to find the owner of (from a finding, CloudTrail or a leak report)
    #[schemars(extend("x-irr-type" = "access_key_id"))]
    pub access_key_id: String,
}

/// `iam.find_access_key`: its declaration (see [`Action`]); the parameters are [`FindAccessKeyParams`].
pub struct FindAccessKey;

impl Action for FindAccessKey {
    type Params = FindAccessKeyParams;
    const DECLARATION: Declaration = Declaration {
        name: "iam.find_access_key",
        summary: "find the IAM user that owns an access key (its account through sts:GetAccessKeyInfo, then a search of this account's users)",
        exactly_one_of: &[],
        outputs: &[
            out("user_name", TypeSpec::String, "the user owning the key (null when the key belongs to another account)"),
            out("user_arn", TypeSpec::Arn, "the user's ARN (null when the key belongs to another account)"),
            out("account_id", TypeSpec::String, "the account the key belongs to"),
            out("in_this_account", TypeSpec::Boolean, "false when the key belongs to another account than the run's: run the containment there"),
            out("status", TypeSpec::String, "the key's status, `Active` or `Inactive` (null when the key belongs to another account)"),
            out("create_date", TypeSpec::String, "when the key was created, RFC 3339 (null when the key belongs to another account)"),
            ARTIFACTS,
        ],
        api_calls: &["sts:GetCallerIdentity", "sts:GetAccessKeyInfo", "iam:ListUsers", "iam:ListAccessKeys"],
        permissions: &[
            // A denial is a gap: the account's users are searched instead.
            perm("sts:GetAccessKeyInfo", ANY),
            // ListUsers takes no resource scoping (IAM evaluates it against `*`).
            perm("iam:ListUsers", ANY),
            perm("iam:ListAccessKeys", &["arn:aws:iam::{account}:user/*"]),
        ],
        mutating: false,
        idempotency: "read-only",
        undo: None,
    };
    async fn run(
        ctx: &ActionCtx,
        params: FindAccessKeyParams,
    ) -> Result<ActionOutput, ActionError> {
        find_access_key(ctx, params).await
    }
}

/// The key found on a user of this account.
struct Owner {
    user: aws_sdk_iam::types::User,
    key: aws_sdk_iam::types::AccessKeyMetadata,
}

/// What the search of this account's users saw.
#[derive(Default)]
struct Search {
    owner: Option<Owner>,
    users_listed: usize,
    users_searched: usize,
    /// Users whose keys could not be listed, with why (at most a few kept).
    unreadable: Vec<Value>,
    unreadable_count: usize,
    capped: bool,
}

/// `iam.find_access_key`: see the module docs. Records what it asked and saw
/// (`find-access-key.json`). Read-only; the same in a dry run.
pub async fn find_access_key(
    ctx: &ActionCtx,
    p: FindAccessKeyParams,
) -> Result<ActionOutput, ActionError> {
    let key_id = p.access_key_id.as_str();
    crate::types::ValueType::AccessKeyId
        .check(&Value::from(key_id))
        .map_err(|e| ActionError::Params(format!("iam.find_access_key: `access_key_id`: {e}")))?;
    let me = ctx
        .aws
        .sts
        .get_caller_identity()
        .send()
        .await
        .map_err(read_err("sts", "GetCallerIdentity"))?;
    let this_account = me.account().unwrap_or_default().to_owned();
    let info = ctx
        .aws
        .sts
        .get_access_key_info()
        .access_key_id(key_id)
        .send()
        .await
        .map_err(read_err("sts", "GetAccessKeyInfo"));
    let key_account = ctx
        .or_gap("sts:GetAccessKeyInfo", info)
        .and_then(|o| o.account().map(str::to_owned));
    let mut record = json!({
        "access_key_id": key_id,
        "caller_account": this_account,
        "key_account": key_account,
    });
    if let Some(other) = key_account.as_deref().filter(|a| *a != this_account) {
        return in_another_account(ctx, record, other);
    }
    if key_id.starts_with("ASIA") {
        // A session's key is never listed by ListAccessKeys: searching would only cost calls.
        record["found"] = json!(false);
        let artifact = ctx.evidence("find-access-key.json", &record, "sts:GetAccessKeyInfo")?;
        return Err(ActionError::Target(format!(
            "access key {key_id} (account {}) is a temporary session credential (ASIA), never a user's key: no user owns it; find the session that was issued it in CloudTrail (its AssumeRole, GetSessionToken or GetFederationToken answer names the key) and contain that principal (recorded in {artifact})",
            key_account.as_deref().unwrap_or(&this_account)
        )));
    }
    let search = match search_users(ctx, key_id).await {
        Ok(s) => s,
        Err(e) => {
            // What was learnt before the search failed is evidence too.
            record["error"] = json!(e.to_string());
            ctx.evidence("find-access-key.json", &record, "sts:GetAccessKeyInfo")?;
            return Err(e);
        }
    };
    record["users_listed"] = json!(search.users_listed);
    record["users_searched"] = json!(search.users_searched);
    record["complete"] = json!(!search.capped && search.unreadable_count == 0);
    record["unreadable_users"] = json!(search.unreadable_count);
    record["unreadable"] = Value::Array(search.unreadable.clone());
    let Some(Owner { user, key }) = &search.owner else {
        record["found"] = json!(false);
        let artifact = ctx.evidence("find-access-key.json", &record, "iam:ListAccessKeys")?;
        return Err(not_found(key_id, &this_account, &search, &artifact));
    };
    let user_json = json!({
        "user_name": user.user_name(),
        "user_id": user.user_id(),
        "arn": user.arn(),
        "path": user.path(),
        "create_date": ts(Some(user.create_date())),
    });
    let key_json = json!({
        "access_key_id": key.access_key_id(),
        "status": key.status().map(|s| s.as_str()),
        "create_date": ts(key.create_date()),
    });
    record["found"] = json!(true);
    record["user"] = user_json;
    record["key"] = key_json.clone();
    let artifact = ctx.evidence("find-access-key.json", &record, "iam:ListAccessKeys")?;
    // The account from the user's ARN (arn:aws:iam::ACCOUNT:user/NAME), else the caller's.
    let account = user
        .arn()
        .split(':')
        .nth(4)
        .filter(|a| !a.is_empty())
        .unwrap_or(&this_account);
    Ok(ActionOutput::default()
        .with("user_name", user.user_name())
        .with("user_arn", user.arn())
        .with("account_id", account)
        .with("in_this_account", true)
        .with("status", key_json["status"].clone())
        .with("create_date", key_json["create_date"].clone())
        .with("artifacts", vec![artifact]))
}

/// The key belongs to `other`: its user cannot be looked up from this account.
fn in_another_account(
    ctx: &ActionCtx,
    mut record: Value,
    other: &str,
) -> Result<ActionOutput, ActionError> {
    let this = record["caller_account"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let why = format!(
        "the key belongs to account {other}, not this run's account {this}: its user was not looked up (run iam.find_access_key with credentials of {other})"
    );
    record["found"] = json!(false);
    record["in_this_account"] = json!(false);
    record["note"] = json!(why);
    let artifact = ctx.evidence("find-access-key.json", &record, "sts:GetAccessKeyInfo")?;
    ctx.gap("iam:ListAccessKeys", &ActionError::Target(why));
    Ok(ActionOutput::default()
        .with("user_name", Value::Null)
        .with("user_arn", Value::Null)
        .with("account_id", other)
        .with("in_this_account", false)
        .with("status", Value::Null)
        .with("create_date", Value::Null)
        .with("artifacts", vec![artifact]))
}

fn not_found(key_id: &str, account: &str, s: &Search, artifact: &str) -> ActionError {
    let mut msg = format!(
        "access key {key_id} belongs to no user of account {account}: searched {} of {} users",
        s.users_searched, s.users_listed
    );
    if s.capped {
        msg.push_str(&format!(" (the search stops at {MAX_USERS} users)"));
    }
    if s.unreadable_count > 0 {
        let first = s
            .unreadable
            .first()
            .map(|u| u["error"].to_string())
            .unwrap_or_default();
        msg.push_str(&format!(
            "; the keys of {} users could not be listed (first: {first})",
            s.unreadable_count
        ));
    }
    msg.push_str(&format!(" (recorded in {artifact})"));
    ActionError::Target(msg)
}

/// Lists the account's users (at most [`MAX_USERS`]) and their keys, a few at a time, until
/// one holds `key_id`.
async fn search_users(ctx: &ActionCtx, key_id: &str) -> Result<Search, ActionError> {
    let mut search = Search::default();
    let mut users = Vec::new();
    let mut pages = ctx
        .aws
        .iam
        .list_users()
        .max_items(1000)
        .into_paginator()
        .send();
    let mut n = 0;
    while let Some(page) = pages.next().await {
        let page = page.map_err(read_err("iam", "ListUsers"))?;
        users.extend(page.users().iter().cloned());
        n += 1;
        if n >= MAX_PAGES && page.is_truncated() {
            search.capped = true;
            break;
        }
        if users.len() >= MAX_USERS {
            search.capped = users.len() > MAX_USERS || page.is_truncated();
            users.truncate(MAX_USERS);
            break;
        }
    }
    search.users_listed = users.len();
    let iam = ctx.aws.iam.clone();
    let mut reads = futures::stream::iter(users)
        .map(|user| {
            let iam = iam.clone();
            async move {
                let keys = iam
                    .list_access_keys()
                    .user_name(user.user_name())
                    .send()
                    .await
                    .map_err(read_err("iam", "ListAccessKeys"));
                (user, keys)
            }
        })
        .buffer_unordered(CONCURRENT_READS);
    while let Some((user, keys)) = reads.next().await {
        search.users_searched += 1;
        match keys {
            Ok(out) => {
                if let Some(key) = out
                    .access_key_metadata()
                    .iter()
                    .find(|k| k.access_key_id() == Some(key_id))
                {
                    search.owner = Some(Owner {
                        user,
                        key: key.clone(),
                    });
                    break;
                }
            }
            Err(e) => {
                search.unreadable_count += 1;
                if search.unreadable.len() < 20 {
                    search
                        .unreadable
                        .push(json!({"user_name": user.user_name(), "error": e.to_string()}));
                }
            }
        }
    }
    Ok(search)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use aws_sdk_iam::operation::list_access_keys::ListAccessKeysOutput;
    use aws_sdk_iam::operation::list_users::ListUsersOutput;
    use aws_sdk_iam::types::{AccessKeyMetadata, StatusType, User};
    use aws_sdk_sts::operation::get_access_key_info::GetAccessKeyInfoError;
    use aws_sdk_sts::operation::get_caller_identity::GetCallerIdentityOutput;
    use aws_smithy_mocks::{mock, MockResponseInterceptor, RuleMode};

    use super::*;
    use crate::actions::test_support::{ctx_with_iam, NullRecorder};

    fn user(name: &str) -> User {
        User::builder()
            .user_name(name)
            .user_id(format!("AID{name}"))
            .path("/")
            .arn(format!("arn:aws:iam::111122223333:user/{name}"))
            .create_date(aws_smithy_types::DateTime::from_secs(1_700_000_000))
            .build()
            .unwrap()
    }

    /// IAM with users `alice` (no key) and `bob` (AKIABOB...), listed over two pages; STS whose
    /// GetAccessKeyInfo is unavailable (as in an emulator that lacks it).
    fn ctx(rec: Arc<NullRecorder>) -> ActionCtx {
        let page1 = mock!(aws_sdk_iam::Client::list_users)
            .match_requests(|r| r.marker().is_none())
            .then_output(|| {
                ListUsersOutput::builder()
                    .users(user("alice"))
                    .is_truncated(true)
                    .marker("m1")
                    .build()
                    .unwrap()
            });
        let page2 = mock!(aws_sdk_iam::Client::list_users)
            .match_requests(|r| r.marker() == Some("m1"))
            .then_output(|| {
                ListUsersOutput::builder()
                    .users(user("bob"))
                    .build()
                    .unwrap()
            });
        let keys = mock!(aws_sdk_iam::Client::list_access_keys).then_compute_output(|r| {
            let keys = if r.user_name() == Some("bob") {
                vec![AccessKeyMetadata::builder()
                    .user_name("bob")
                    .access_key_id("AKIABOB0000000000000")
                    .status(StatusType::Active)
                    .create_date(aws_smithy_types::DateTime::from_secs(1_710_000_000))
                    .build()]
            } else {
                Vec::new()
            };
            ListAccessKeysOutput::builder()
                .set_access_key_metadata(Some(keys))
                .build()
                .unwrap()
        });
        let mut ctx = ctx_with_iam("IR-1", RuleMode::MatchAny, &[&page1, &page2, &keys]);
        let me = mock!(aws_sdk_sts::Client::get_caller_identity).then_output(|| {
            GetCallerIdentityOutput::builder()
                .account("111122223333")
                .arn("arn:aws:iam::111122223333:user/responder")
                .build()
        });
        let info = mock!(aws_sdk_sts::Client::get_access_key_info).then_error(|| {
            GetAccessKeyInfoError::generic(
                aws_smithy_types::error::ErrorMetadata::builder()
                    .code("InvalidAction")
                    .message("not implemented")
                    .build(),
            )
        });
        let interceptor = MockResponseInterceptor::new()
            .rule_mode(RuleMode::MatchAny)
            .with_rule(&me)
            .with_rule(&info);
        let conf = aws_sdk_sts::Config::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sts::config::Credentials::new(
                "k", "s", None, None, "t",
            ))
            .http_client(aws_smithy_mocks::create_mock_http_client())
            .interceptor(interceptor)
            .build();
        ctx.aws.sts = aws_sdk_sts::Client::from_conf(conf);
        ctx.recorder = rec;
        ctx
    }

    #[tokio::test]
    async fn without_get_access_key_info_the_users_are_searched() {
        let rec = Arc::new(NullRecorder::default());
        let ctx = ctx(rec.clone());
        let p = FindAccessKeyParams {
            access_key_id: "AKIABOB0000000000000".into(),
        };
        let out = find_access_key(&ctx, p).await.unwrap().outputs;
        assert_eq!(out["user_name"], "bob");
        assert_eq!(out["user_arn"], "arn:aws:iam::111122223333:user/bob");
        assert_eq!(out["account_id"], "111122223333");
        assert_eq!(out["in_this_account"], true);
        assert_eq!(out["status"], "Active");
        assert_eq!(out["create_date"], "2024-03-09T16:00:00Z");
        let gaps = rec.gaps.lock().unwrap();
        assert_eq!(gaps.len(), 1, "{gaps:?}");
        assert_eq!(gaps[0].what, "sts:GetAccessKeyInfo");
    }

    #[tokio::test]
    async fn a_key_no_user_holds_fails_the_step_naming_the_search() {
        let ctx = ctx(Arc::new(NullRecorder::default()));
        let p = FindAccessKeyParams {
            access_key_id: "AKIAZZZZZZZZZZZZZZZZ".into(),
        };
        let err = find_access_key(&ctx, p).await.unwrap_err().to_string();
        assert!(
            err.contains("belongs to no user of account 111122223333: searched 2 of 2 users"),
            "{err}"
        );
        // A session's key: no search, and where to look instead.
        let p = FindAccessKeyParams {
            access_key_id: "ASIAZZZZZZZZZZZZZZZZ".into(),
        };
        let err = find_access_key(&ctx, p).await.unwrap_err().to_string();
        assert!(
            err.contains("temporary session credential") && err.contains("CloudTrail"),
            "{err}"
        );
    }
}
