//! IAM actions: time-bounded responder access, and containing a compromised principal.
//!
//! IAM has no `DryRun`: in a dry run these actions read and record as usual, make no mutating
//! call, and report what they would do (output `would`). IAM is eventually consistent (a role
//! just created may not be usable by the next call for a few seconds), so calls that follow a
//! creation are retried on the errors that propagation causes.

use aws_sdk_iam::types::Tag;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::catalog::decl::*;
use crate::catalog::{Declaration, TypeSpec};

use super::{
    aws_error, is_transient, read_err, retry_transient, ts, Action, ActionCtx, ActionError,
    ActionOutput, AwsResource, TAG_CASE, TAG_RUN,
};

/// Tag on a responder role: when its trust policy stops allowing `sts:AssumeRole`.
pub const TAG_EXPIRES_AT: &str = "irr:expires-at";
/// Name of the inline policy holding the responder's permissions.
pub const RESPONDER_POLICY_NAME: &str = "irr-responder";
/// Name of the inline deny policy `iam.revoke_sessions` puts on a principal.
pub const REVOKE_POLICY_NAME: &str = "irr-revoke-sessions";

/// Parameters of `iam.grant_responder_access`.
///
/// Each field's doc comment is the parameter's description in the catalog.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantParams {
    /// who may assume the role (an empty list trusts the account itself, still MFA-guarded)
    // ARNs of users, roles, accounts.
    #[schemars(extend("x-irr-type" = "arn"))]
    pub principals: Vec<String>,
    /// how long the role can be assumed; the trust policy expires after it (aws:CurrentTime)
    // e.g. `4h`, `30m`, `1h30m`.
    #[schemars(extend("x-irr-type" = "duration", "default" = "4h"))]
    pub duration: Option<String>,
    /// require aws:MultiFactorAuthPresent
    #[schemars(extend("default" = true))]
    pub require_mfa: Option<bool>,
    /// name of the role
    #[schemars(extend("default" = "irr-responder-{{case.id}}"))]
    pub role_name: Option<String>,
    /// the role's permissions; default: built-in read-and-contain responder policy
    // An IAM policy document; the default is `default_responder_policy`.
    #[schemars(extend("x-irr-type" = "policy_document"))]
    pub policy: Option<Value>,
}

/// Parameters of `iam.revoke_responder_access`.
///
/// Each field's doc comment is the parameter's description in the catalog.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeParams {
    /// the responder role
    pub role_name: String,
}

/// Parameters of `iam.capture_principal`: exactly one of `user_name` and `role_name`.
///
/// Each field's doc comment is the parameter's description in the catalog.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrincipalParams {
    /// the IAM user
    pub user_name: Option<String>,
    /// the IAM role
    pub role_name: Option<String>,
}

/// Parameters of `iam.revoke_sessions`: exactly one of `user_name` and `role_name`.
///
/// Each field's doc comment is the parameter's description in the catalog.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeSessionsParams {
    /// the IAM user
    pub user_name: Option<String>,
    /// the IAM role (not a service-linked role)
    pub role_name: Option<String>,
}

/// Parameters of `iam.deactivate_access_key`.
///
/// Each field's doc comment is the parameter's description in the catalog.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeactivateKeyParams {
    /// the key's user
    pub user_name: String,
    /// the key
    // The key id (`AKIA...`); never the secret.
    #[schemars(extend("x-irr-type" = "access_key_id"))]
    pub access_key_id: String,
}

enum Principal {
    User(String),
    Role(String),
}

impl Principal {
    fn from_params(
        action: &str,
        user_name: Option<String>,
        role_name: Option<String>,
    ) -> Result<Principal, ActionError> {
        match (user_name, role_name) {
            (Some(u), None) => Ok(Principal::User(u)),
            (None, Some(r)) => Ok(Principal::Role(r)),
            _ => Err(ActionError::Params(format!(
                "{action}: give exactly one of `user_name` and `role_name`"
            ))),
        }
    }
}

fn iam_tag(key: &str, value: &str) -> Result<Tag, ActionError> {
    Tag::builder()
        .key(key)
        .value(value)
        .build()
        .map_err(|e| ActionError::Params(e.to_string()))
}

/// IAM returns policy documents URL-encoded (RFC 3986); decodes and parses one.
pub fn policy_document(raw: &str) -> Value {
    let decoded = percent_decode(raw);
    serde_json::from_str(&decoded)
        .or_else(|_| serde_json::from_str(raw))
        .unwrap_or(Value::String(decoded))
}

/// RFC 3986 percent-decoding (`+` stays `+`: IAM documents are not form-encoded), by the
/// `percent-encoding` crate rather than by hand.
pub(crate) fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Parses a duration as the playbook format writes it (`crate::types::parse_duration`: the
/// one parser of the workspace), as an action's parameter error.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, ActionError> {
    crate::types::parse_duration(s).map_err(ActionError::Params)
}

/// Makes a valid IAM role name (`[\w+=,.@-]`, at most 64 characters) from any text.
pub fn sanitise_role_name(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@-_".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    cleaned.chars().take(64).collect()
}

/// The built-in responder policy: read everything an investigation needs, and the
/// containment moves of the catalog. No data-plane reads (no `s3:GetObject`), no deletions.
pub fn default_responder_policy() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "IrrInvestigate",
                "Effect": "Allow",
                "Action": [
                    "ec2:Describe*", "ec2:GetConsoleOutput", "ec2:GetConsoleScreenshot",
                    "iam:Get*", "iam:List*", "iam:GenerateCredentialReport",
                    "s3:GetBucket*", "s3:GetAccountPublicAccessBlock", "s3:ListAllMyBuckets",
                    "s3:GetEncryptionConfiguration",
                    "cloudtrail:LookupEvents", "cloudtrail:Describe*", "cloudtrail:Get*",
                    "logs:Describe*", "logs:FilterLogEvents", "logs:GetLogEvents",
                    "guardduty:Get*", "guardduty:List*",
                    "autoscaling:Describe*", "sts:GetCallerIdentity"
                ],
                "Resource": "*"
            },
            {
                "Sid": "IrrContain",
                "Effect": "Allow",
                "Action": [
                    "ec2:CreateSnapshot", "ec2:CreateSnapshots", "ec2:CreateTags",
                    "ec2:ModifyInstanceAttribute", "ec2:ModifyNetworkInterfaceAttribute",
                    "ec2:CreateSecurityGroup", "ec2:AuthorizeSecurityGroupIngress",
                    "ec2:AuthorizeSecurityGroupEgress", "ec2:RevokeSecurityGroupIngress",
                    "ec2:RevokeSecurityGroupEgress", "ec2:DisassociateIamInstanceProfile",
                    "ec2:StopInstances", "ec2:CreateNetworkAcl", "ec2:CreateNetworkAclEntry",
                    "ec2:ReplaceNetworkAclAssociation",
                    "autoscaling:DetachInstances", "autoscaling:EnterStandby",
                    "iam:UpdateAccessKey", "iam:PutUserPolicy", "iam:PutRolePolicy",
                    "s3:PutBucketPublicAccessBlock"
                ],
                "Resource": "*"
            }
        ]
    })
}

/// The responder role's trust policy: the principals may assume it until `expires_at`, with
/// MFA when `require_mfa`.
pub fn trust_policy(principals: &[String], require_mfa: bool, expires_at: &str) -> Value {
    let mut condition = serde_json::Map::new();
    if require_mfa {
        condition.insert("Bool".into(), json!({"aws:MultiFactorAuthPresent": "true"}));
    }
    condition.insert(
        "DateLessThan".into(),
        json!({"aws:CurrentTime": expires_at}),
    );
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "IrrResponderAccess",
            "Effect": "Allow",
            "Principal": {"AWS": principals},
            "Action": "sts:AssumeRole",
            "Condition": condition,
        }]
    })
}

/// A role as recorded in evidence.
fn role_json(r: &aws_sdk_iam::types::Role) -> Value {
    json!({
        "role_name": r.role_name(),
        "arn": r.arn(),
        "path": r.path(),
        "role_id": r.role_id(),
        "created": ts(Some(r.create_date())),
        "max_session_duration": r.max_session_duration(),
        "assume_role_policy": r.assume_role_policy_document().map(policy_document),
        "tags": r.tags().iter().map(|t| (t.key().to_owned(), Value::from(t.value()))).collect::<serde_json::Map<_, _>>(),
        "last_used": r.role_last_used().map(|u| json!({
            "date": ts(u.last_used_date()),
            "region": u.region(),
        })),
        "permissions_boundary": r.permissions_boundary().and_then(|b| b.permissions_boundary_arn()),
    })
}

fn role_case(r: &aws_sdk_iam::types::Role) -> Option<&str> {
    r.tags()
        .iter()
        .find(|t| t.key() == TAG_CASE)
        .map(|t| t.value())
}

async fn get_role(
    ctx: &ActionCtx,
    name: &str,
) -> Result<Option<aws_sdk_iam::types::Role>, ActionError> {
    match ctx.aws.iam.get_role().role_name(name).send().await {
        Ok(o) => Ok(o.role().cloned()),
        Err(e) if e.code() == Some("NoSuchEntity") => Ok(None),
        Err(e) => Err(aws_error("iam", "GetRole", &e)),
    }
}

/// `arn:PARTITION:iam::ACCOUNT:root` of the caller's account.
async fn account_root(ctx: &ActionCtx) -> Result<String, ActionError> {
    let me = ctx
        .aws
        .sts
        .get_caller_identity()
        .send()
        .await
        .map_err(read_err("sts", "GetCallerIdentity"))?;
    let account = me
        .account()
        .ok_or_else(|| ActionError::Target("sts:GetCallerIdentity returned no account".into()))?;
    let partition = me.arn().and_then(|a| a.split(':').nth(1)).unwrap_or("aws");
    Ok(format!("arn:{partition}:iam::{account}:root"))
}

/// `iam.grant_responder_access`: its declaration (see [`Action`]); the parameters are [`GrantParams`].
pub struct GrantResponderAccess;

impl Action for GrantResponderAccess {
    type Params = GrantParams;
    const DECLARATION: Declaration = Declaration {
            name: "iam.grant_responder_access",
            summary: "create (or reuse) a time-bounded, MFA-guarded responder role trusted by the principals, tagged with the case",
            exactly_one_of: &[],
            outputs: &[
                out("role_arn", TypeSpec::Arn, "the responder role's ARN"),
                out("role_name", TypeSpec::String, "the responder role's name"),
                out("expires_at", TypeSpec::String, "RFC 3339 time after which the role can no longer be assumed"),
            ],
            api_calls: &["sts:GetCallerIdentity", "iam:GetRole", "iam:CreateRole", "iam:UpdateAssumeRolePolicy", "iam:UpdateRole", "iam:TagRole", "iam:PutRolePolicy"],
            permissions: &[
                perm("sts:GetCallerIdentity", ANY),
                perm("iam:GetRole", ROLE),
                perm("iam:CreateRole", ROLE),
                perm("iam:UpdateAssumeRolePolicy", ROLE),
                // A reused role gets its session length brought up to date.
                perm("iam:UpdateRole", ROLE),
                perm("iam:PutRolePolicy", ROLE),
                perm("iam:TagRole", ROLE),
            ],
            mutating: true,
            idempotency: "finds the role by name and case tag and reuses it (its trust policy is brought up to date); a concurrent creation (EntityAlreadyExists) is reused too",
            undo: Some("iam.revoke_responder_access"),
    };
    async fn run(ctx: &ActionCtx, params: GrantParams) -> Result<ActionOutput, ActionError> {
        grant_responder_access(ctx, params).await
    }
}

/// `iam.grant_responder_access`: creates (or reuses) a responder role that the principals may
/// assume, with MFA, until now + `duration`; outputs `role_arn`, `role_name`, `expires_at`.
///
/// The expiry lives in the trust policy (`DateLessThan aws:CurrentTime`), so access ends even
/// if nobody runs `iam.revoke_responder_access`. A session assumed just before the expiry
/// can last up to the role's `MaxSessionDuration`, which is set to the grant's duration
/// (clamped to IAM's 1 h..12 h); deleting the role (`iam.revoke_responder_access`) ends every
/// session's permissions at once.
///
/// Idempotent: a role of that name carrying this case's `irr:case` tag is reused and
/// reconciled (trust policy, session length, tags and policy updated). Parallel runs racing
/// to create it are handled: `EntityAlreadyExists` leads to reuse, never a second role. A role
/// of that name belonging to another case, or not made by irr, is refused.
pub async fn grant_responder_access(
    ctx: &ActionCtx,
    p: GrantParams,
) -> Result<ActionOutput, ActionError> {
    let duration = parse_duration(p.duration.as_deref().unwrap_or("4h"))?;
    if duration < std::time::Duration::from_secs(15 * 60)
        || duration > std::time::Duration::from_secs(7 * 86_400)
    {
        return Err(ActionError::Params(
            "iam.grant_responder_access: duration must be between 15m and 7d".into(),
        ));
    }
    let require_mfa = p.require_mfa.unwrap_or(true);
    let role_name = match &p.role_name {
        Some(n) if sanitise_role_name(n) != *n || n.is_empty() => {
            return Err(ActionError::Params(format!("invalid IAM role name `{n}`")));
        }
        Some(n) => n.clone(),
        None => sanitise_role_name(&format!("irr-responder-{}", ctx.case_id)),
    };
    for arn in &p.principals {
        if !arn.starts_with("arn:") {
            return Err(ActionError::Params(format!(
                "iam.grant_responder_access: principal `{arn}` is not an ARN"
            )));
        }
    }
    let policy = p.policy.clone().unwrap_or_else(default_responder_policy);
    if !policy.is_object() {
        return Err(ActionError::Params(
            "iam.grant_responder_access: `policy` must be a policy document (a map)".into(),
        ));
    }

    // With no principal named, trust the account itself (its root principal): then any
    // identity of this account whose own IAM policy allows sts:AssumeRole on the role can
    // assume it, and still only with MFA and before the expiry. This keeps the grant useful
    // ("whoever the account's admins allow") without ever trusting another account, and it is
    // never an open trust: a trust policy cannot name "*" here.
    let principals = if p.principals.is_empty() {
        vec![account_root(ctx).await?]
    } else {
        p.principals.clone()
    };

    let now = time::OffsetDateTime::now_utc();
    let expires = now + duration;
    let expires_at = irr_forensics::clock::rfc3339_seconds(expires);
    let max_session = duration.as_secs().clamp(3_600, 43_200) as i32;
    let trust = trust_policy(&principals, require_mfa, &expires_at);
    let trust_text = trust.to_string();
    let policy_text = policy.to_string();

    let existing = get_role(ctx, &role_name).await?;
    let artifact = ctx.evidence(
        "responder-role-before.json",
        &json!({
            "role_name": role_name,
            "existing": existing.as_ref().map(role_json),
            "trust_policy": trust,
            "policy": policy,
            "max_session_duration": max_session,
            "expires_at": expires_at,
        }),
        "iam:GetRole",
    )?;
    if let Some(r) = &existing {
        check_case(ctx, r)?;
    }

    let mut out = ActionOutput::default()
        .with("role_name", role_name.clone())
        .with("expires_at", expires_at.clone())
        .with("max_session_duration", max_session)
        .with("artifacts", vec![artifact])
        .with("reused", existing.is_some());

    if ctx.dry_run {
        let arn = match &existing {
            Some(r) => r.arn().to_owned(),
            None => {
                let root = account_root(ctx).await?;
                root.trim_end_matches(":root").to_owned() + ":role/" + &role_name
            }
        };
        let would = if existing.is_some() {
            vec![
                format!("iam:UpdateAssumeRolePolicy {role_name} (expires {expires_at})"),
                format!("iam:UpdateRole {role_name} MaxSessionDuration={max_session}"),
                format!("iam:TagRole {role_name}"),
                format!("iam:PutRolePolicy {role_name} {RESPONDER_POLICY_NAME}"),
            ]
        } else {
            vec![
                format!("iam:CreateRole {role_name} (expires {expires_at})"),
                format!("iam:PutRolePolicy {role_name} {RESPONDER_POLICY_NAME}"),
            ]
        };
        return Ok(out.with("role_arn", arn).with("would", would));
    }

    let tags = vec![
        iam_tag(TAG_CASE, &ctx.case_id)?,
        iam_tag(TAG_RUN, &ctx.run_id)?,
        iam_tag(TAG_EXPIRES_AT, &expires_at)?,
    ];
    let key = json!({"role_name": role_name, "expires_at": expires_at, "principals": principals,
                     "require_mfa": require_mfa, "max_session_duration": max_session});

    let mut role = existing;
    if role.is_none() {
        let created = ctx
            .mutating(
                "iam",
                "CreateRole",
                key.clone(),
                ctx.aws
                    .iam
                    .create_role()
                    .role_name(&role_name)
                    .assume_role_policy_document(&trust_text)
                    .max_session_duration(max_session)
                    .description(format!("irr-responder-access-for-case-{}", ctx.case_id))
                    .set_tags(Some(tags.clone()))
                    .send(),
                |o| json!({"role_arn": o.role().map(|r| r.arn())}),
            )
            .await;
        match created {
            Ok(o) => role = o.role().cloned(),
            // Another run of the same case created it between our GetRole and CreateRole
            // (cloud-forensics-utils #370): reuse it, after checking it is ours.
            Err(e) if e.code() == "EntityAlreadyExists" => {
                let r = get_role(ctx, &role_name).await?.ok_or_else(|| {
                    ActionError::Target(format!("role {role_name} exists and vanished"))
                })?;
                check_case(ctx, &r)?;
                out = out.with("reused", true);
                reconcile_role(ctx, &role_name, &trust_text, max_session, &tags, &key).await?;
                role = Some(r);
            }
            Err(e) => return Err(e),
        }
    } else {
        reconcile_role(ctx, &role_name, &trust_text, max_session, &tags, &key).await?;
    }
    let role =
        role.ok_or_else(|| ActionError::Target(format!("role {role_name}: no role returned")))?;

    // Right after CreateRole the role may not be visible to PutRolePolicy yet.
    retry_transient(
        || {
            ctx.mutating(
                "iam",
                "PutRolePolicy",
                json!({"role_name": role_name, "policy_name": RESPONDER_POLICY_NAME}),
                ctx.aws
                    .iam
                    .put_role_policy()
                    .role_name(&role_name)
                    .policy_name(RESPONDER_POLICY_NAME)
                    .policy_document(&policy_text)
                    .send(),
                |_| json!({}),
            )
        },
        |e| is_transient(e) || e.code() == "NoSuchEntity",
    )
    .await?;

    let mut details = serde_json::Map::new();
    details.insert("role_name".into(), role_name.clone().into());
    details.insert("expires_at".into(), expires_at.clone().into());
    details.insert("purpose".into(), "responder-access".into());
    ctx.recorder.resource(AwsResource {
        kind: "iam-role".into(),
        id: role.arn().to_owned(),
        details,
    });
    Ok(out.with("role_arn", role.arn()))
}

fn check_case(ctx: &ActionCtx, r: &aws_sdk_iam::types::Role) -> Result<(), ActionError> {
    match role_case(r) {
        Some(c) if c == ctx.case_id => Ok(()),
        Some(c) => Err(ActionError::Target(format!(
            "role {} belongs to case {c}, not {}; choose another role_name",
            r.role_name(),
            ctx.case_id
        ))),
        None => Err(ActionError::Target(format!(
            "role {} exists and was not made by irr (no {TAG_CASE} tag); refusing to take it over",
            r.role_name()
        ))),
    }
}

/// Brings a reused responder role to the wanted trust, session length and tags. IAM
/// propagation (a principal or role just created) is retried.
async fn reconcile_role(
    ctx: &ActionCtx,
    role_name: &str,
    trust_text: &str,
    max_session: i32,
    tags: &[Tag],
    key: &Value,
) -> Result<(), ActionError> {
    let propagation = |e: &ActionError| {
        is_transient(e)
            || e.code() == "NoSuchEntity"
            || (e.code() == "MalformedPolicyDocument"
                && e.to_string().contains("Invalid principal"))
    };
    retry_transient(
        || {
            ctx.mutating(
                "iam",
                "UpdateAssumeRolePolicy",
                key.clone(),
                ctx.aws
                    .iam
                    .update_assume_role_policy()
                    .role_name(role_name)
                    .policy_document(trust_text)
                    .send(),
                |_| json!({}),
            )
        },
        propagation,
    )
    .await?;
    retry_transient(
        || {
            ctx.mutating(
                "iam",
                "UpdateRole",
                json!({"role_name": role_name, "max_session_duration": max_session}),
                ctx.aws
                    .iam
                    .update_role()
                    .role_name(role_name)
                    .max_session_duration(max_session)
                    .send(),
                |_| json!({}),
            )
        },
        propagation,
    )
    .await?;
    retry_transient(
        || {
            ctx.mutating(
                "iam",
                "TagRole",
                json!({"role_name": role_name, "tags": tags.iter().map(|t| (t.key().to_owned(), Value::from(t.value()))).collect::<serde_json::Map<_, _>>()}),
                ctx.aws
                    .iam
                    .tag_role()
                    .role_name(role_name)
                    .set_tags(Some(tags.to_vec()))
                    .send(),
                |_| json!({}),
            )
        },
        propagation,
    )
    .await?;
    Ok(())
}

/// `iam.revoke_responder_access`: its declaration (see [`Action`]); the parameters are [`RevokeParams`].
pub struct RevokeResponderAccess;

impl Action for RevokeResponderAccess {
    type Params = RevokeParams;
    const DECLARATION: Declaration = Declaration {
        name: "iam.revoke_responder_access",
        summary: "remove the responder role's policies and trust, and delete it",
        exactly_one_of: &[],
        outputs: &[],
        api_calls: &[
            "iam:GetRole",
            "iam:ListRolePolicies",
            "iam:DeleteRolePolicy",
            "iam:ListAttachedRolePolicies",
            "iam:DetachRolePolicy",
            "iam:ListInstanceProfilesForRole",
            "iam:RemoveRoleFromInstanceProfile",
            "iam:DeleteRole",
        ],
        permissions: &[
            perm("iam:GetRole", ROLE),
            perm("iam:ListRolePolicies", ROLE),
            perm("iam:DeleteRolePolicy", ROLE),
            perm("iam:ListAttachedRolePolicies", ROLE),
            perm("iam:DetachRolePolicy", ROLE),
            perm("iam:ListInstanceProfilesForRole", ROLE),
            perm(
                "iam:RemoveRoleFromInstanceProfile",
                &[
                    "arn:aws:iam::{account}:instance-profile/*",
                    "arn:aws:iam::{account}:role/{role_name}",
                ],
            ),
            perm("iam:DeleteRole", ROLE),
        ],
        mutating: true,
        idempotency: "a role already gone counts as revoked",
        undo: None,
    };
    async fn run(ctx: &ActionCtx, params: RevokeParams) -> Result<ActionOutput, ActionError> {
        revoke_responder_access(ctx, params).await
    }
}

/// `iam.revoke_responder_access`: deletes a responder role made by this case: its inline
/// policies, attached managed policies and instance-profile memberships first, then the role.
/// Deleting the role ends the permissions of every session issued from it.
///
/// Idempotent: a role that is already gone is success (`deleted: false`). A role of another
/// case, or not made by irr, is refused. Not undoable (grant again).
pub async fn revoke_responder_access(
    ctx: &ActionCtx,
    p: RevokeParams,
) -> Result<ActionOutput, ActionError> {
    let name = p.role_name.as_str();
    let Some(role) = get_role(ctx, name).await? else {
        let artifact = ctx.evidence(
            "responder-role-before.json",
            &json!({"role_name": name, "existing": null}),
            "iam:GetRole",
        )?;
        return Ok(ActionOutput::default()
            .with("deleted", false)
            .with("artifacts", vec![artifact]));
    };
    check_case(ctx, &role)?;
    let iam = &ctx.aws.iam;
    let gone = |e: &ActionError| e.code() == "NoSuchEntity";

    let inline: Vec<String> = match iam
        .list_role_policies()
        .role_name(name)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
    {
        Ok(v) => v,
        Err(e) if e.code() == Some("NoSuchEntity") => Vec::new(),
        Err(e) => return Err(aws_error("iam", "ListRolePolicies", &e)),
    };
    let attached: Vec<String> = match iam
        .list_attached_role_policies()
        .role_name(name)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
    {
        Ok(v) => v
            .iter()
            .filter_map(|a| a.policy_arn().map(str::to_owned))
            .collect(),
        Err(e) if e.code() == Some("NoSuchEntity") => Vec::new(),
        Err(e) => return Err(aws_error("iam", "ListAttachedRolePolicies", &e)),
    };
    let profiles: Vec<String> = match iam
        .list_instance_profiles_for_role()
        .role_name(name)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
    {
        Ok(v) => v
            .iter()
            .map(|p| p.instance_profile_name().to_owned())
            .collect(),
        Err(e) if e.code() == Some("NoSuchEntity") => Vec::new(),
        Err(e) => return Err(aws_error("iam", "ListInstanceProfilesForRole", &e)),
    };
    let artifact = ctx.evidence(
        "responder-role-before.json",
        &json!({"role_name": name, "existing": role_json(&role), "inline_policies": inline,
                "attached_policies": attached, "instance_profiles": profiles}),
        "iam:GetRole",
    )?;
    let out = ActionOutput::default().with("artifacts", vec![artifact]);
    if ctx.dry_run {
        let mut would: Vec<String> = inline
            .iter()
            .map(|p| format!("iam:DeleteRolePolicy {name} {p}"))
            .collect();
        would.extend(
            attached
                .iter()
                .map(|p| format!("iam:DetachRolePolicy {name} {p}")),
        );
        would.extend(
            profiles
                .iter()
                .map(|p| format!("iam:RemoveRoleFromInstanceProfile {p} {name}")),
        );
        would.push(format!("iam:DeleteRole {name}"));
        return Ok(out.with("deleted", false).with("would", would));
    }
    // A concurrent revoke may delete things under us: NoSuchEntity at any point means done.
    let ok_if_gone = |r: Result<(), ActionError>| match r {
        Err(e) if gone(&e) => Ok(()),
        other => other,
    };
    for pol in &inline {
        ok_if_gone(
            ctx.mutating(
                "iam",
                "DeleteRolePolicy",
                json!({"role_name": name, "policy_name": pol}),
                iam.delete_role_policy()
                    .role_name(name)
                    .policy_name(pol)
                    .send(),
                |_| json!({}),
            )
            .await
            .map(drop),
        )?;
    }
    for arn in &attached {
        ok_if_gone(
            ctx.mutating(
                "iam",
                "DetachRolePolicy",
                json!({"role_name": name, "policy_arn": arn}),
                iam.detach_role_policy()
                    .role_name(name)
                    .policy_arn(arn)
                    .send(),
                |_| json!({}),
            )
            .await
            .map(drop),
        )?;
    }
    for prof in &profiles {
        ok_if_gone(
            ctx.mutating(
                "iam",
                "RemoveRoleFromInstanceProfile",
                json!({"role_name": name, "instance_profile_name": prof}),
                iam.remove_role_from_instance_profile()
                    .role_name(name)
                    .instance_profile_name(prof)
                    .send(),
                |_| json!({}),
            )
            .await
            .map(drop),
        )?;
    }
    // DeleteConflict: IAM has not yet seen the detachments above; retry.
    let deleted = retry_transient(
        || async {
            match ctx
                .mutating(
                    "iam",
                    "DeleteRole",
                    json!({"role_name": name}),
                    iam.delete_role().role_name(name).send(),
                    |_| json!({}),
                )
                .await
            {
                Ok(_) => Ok(true),
                Err(e) if gone(&e) => Ok(false),
                Err(e) => Err(e),
            }
        },
        |e| is_transient(e) || e.code() == "DeleteConflict",
    )
    .await?;
    Ok(out.with("deleted", deleted))
}

/// `iam.capture_principal`: its declaration (see [`Action`]); the parameters are [`PrincipalParams`].
pub struct CapturePrincipal;

impl Action for CapturePrincipal {
    type Params = PrincipalParams;
    const DECLARATION: Declaration = Declaration {
        name: "iam.capture_principal",
        summary:
            "record a user's or role's policies, access keys (never secrets), groups and last use",
        exactly_one_of: &[&["user_name", "role_name"]],
        outputs: &[ARTIFACTS],
        api_calls: &[
            "iam:GetUser",
            "iam:ListUserPolicies",
            "iam:GetUserPolicy",
            "iam:ListAttachedUserPolicies",
            "iam:GetPolicy",
            "iam:GetPolicyVersion",
            "iam:ListGroupsForUser",
            "iam:ListAccessKeys",
            "iam:GetAccessKeyLastUsed",
            "iam:GetRole",
            "iam:ListRolePolicies",
            "iam:GetRolePolicy",
            "iam:ListAttachedRolePolicies",
            "iam:ListInstanceProfilesForRole",
        ],
        permissions: &[
            perm_if("user_name", "iam:GetUser", USER),
            perm_if("user_name", "iam:ListUserPolicies", USER),
            perm_if("user_name", "iam:GetUserPolicy", USER),
            perm_if("user_name", "iam:ListAttachedUserPolicies", USER),
            perm_if("user_name", "iam:ListAccessKeys", USER),
            perm_if("user_name", "iam:GetAccessKeyLastUsed", USER),
            perm_if("user_name", "iam:ListGroupsForUser", USER),
            perm_if("role_name", "iam:GetRole", ROLE),
            perm_if("role_name", "iam:ListRolePolicies", ROLE),
            perm_if("role_name", "iam:GetRolePolicy", ROLE),
            perm_if("role_name", "iam:ListAttachedRolePolicies", ROLE),
            perm_if("role_name", "iam:ListInstanceProfilesForRole", ROLE),
            // The documents of attached managed policies (customer or AWS managed).
            perm("iam:GetPolicy", MANAGED_POLICY),
            perm("iam:GetPolicyVersion", MANAGED_POLICY),
        ],
        mutating: false,
        idempotency: "read-only",
        undo: None,
    };
    async fn run(ctx: &ActionCtx, params: PrincipalParams) -> Result<ActionOutput, ActionError> {
        capture_principal(ctx, params).await
    }
}

/// `iam.capture_principal`: records a user's or role's identity, inline policies (documents),
/// attached managed policies (with their default version's document), group memberships,
/// access keys (id, status, created, last used; never secrets) and tags. Output `artifacts`.
pub async fn capture_principal(
    ctx: &ActionCtx,
    p: PrincipalParams,
) -> Result<ActionOutput, ActionError> {
    let iam = &ctx.aws.iam;
    let mut artifacts = Vec::new();
    match Principal::from_params("iam.capture_principal", p.user_name, p.role_name)? {
        Principal::User(user) => {
            let u = iam.get_user().user_name(&user).send().await.map_err(|e| {
                if e.code() == Some("NoSuchEntity") {
                    ActionError::Target(format!("no such IAM user: {user}"))
                } else {
                    aws_error("iam", "GetUser", &e)
                }
            })?;
            let u = u
                .user()
                .ok_or_else(|| ActionError::Target(format!("no such IAM user: {user}")))?;
            artifacts.push(ctx.evidence(
                "user.json",
                &json!({
                    "user_name": u.user_name(), "arn": u.arn(), "user_id": u.user_id(), "path": u.path(),
                    "created": ts(Some(u.create_date())), "password_last_used": ts(u.password_last_used()),
                    "tags": u.tags().iter().map(|t| (t.key().to_owned(), Value::from(t.value()))).collect::<serde_json::Map<_, _>>(),
                    "permissions_boundary": u.permissions_boundary().and_then(|b| b.permissions_boundary_arn()),
                }),
                "iam:GetUser",
            )?);

            let names = iam
                .list_user_policies()
                .user_name(&user)
                .into_paginator()
                .items()
                .send()
                .collect::<Result<Vec<_>, _>>()
                .await
                .map_err(read_err("iam", "ListUserPolicies"));
            let names = ctx
                .or_gap("iam:ListUserPolicies", names)
                .unwrap_or_default();
            let mut inline = serde_json::Map::new();
            for n in names {
                let d = iam
                    .get_user_policy()
                    .user_name(&user)
                    .policy_name(&n)
                    .send()
                    .await
                    .map_err(read_err("iam", "GetUserPolicy"));
                let Some(d) = ctx.or_gap("iam:GetUserPolicy", d) else {
                    inline.insert(n, Value::Null);
                    continue;
                };
                inline.insert(n, policy_document(d.policy_document()));
            }
            let attached = iam
                .list_attached_user_policies()
                .user_name(&user)
                .into_paginator()
                .items()
                .send()
                .collect::<Result<Vec<_>, _>>()
                .await
                .map_err(read_err("iam", "ListAttachedUserPolicies"));
            let attached = ctx
                .or_gap("iam:ListAttachedUserPolicies", attached)
                .unwrap_or_default();
            let attached = attached_documents(ctx, &attached).await?;
            artifacts.push(ctx.evidence(
                "policies.json",
                &json!({"user_name": user, "inline": inline, "attached": attached}),
                "iam:ListUserPolicies",
            )?);

            let groups = iam
                .list_groups_for_user()
                .user_name(&user)
                .into_paginator()
                .items()
                .send()
                .collect::<Result<Vec<_>, _>>()
                .await
                .map_err(read_err("iam", "ListGroupsForUser"));
            let groups = ctx
                .or_gap("iam:ListGroupsForUser", groups)
                .unwrap_or_default();
            artifacts.push(ctx.evidence(
                "groups.json",
                &json!({"user_name": user, "groups": groups.iter().map(|g| json!({
                    "group_name": g.group_name(), "arn": g.arn(),
                })).collect::<Vec<_>>()}),
                "iam:ListGroupsForUser",
            )?);

            let keys = iam
                .list_access_keys()
                .user_name(&user)
                .into_paginator()
                .items()
                .send()
                .collect::<Result<Vec<_>, _>>()
                .await
                .map_err(read_err("iam", "ListAccessKeys"));
            let keys = ctx.or_gap("iam:ListAccessKeys", keys).unwrap_or_default();
            let mut key_docs = Vec::new();
            for k in &keys {
                let id = k.access_key_id().unwrap_or_default();
                let last = iam
                    .get_access_key_last_used()
                    .access_key_id(id)
                    .send()
                    .await
                    .map_err(read_err("iam", "GetAccessKeyLastUsed"));
                let last = ctx.or_gap("iam:GetAccessKeyLastUsed", last);
                let l = last.as_ref().and_then(|o| o.access_key_last_used());
                key_docs.push(json!({
                    "access_key_id": id,
                    "status": k.status().map(|s| s.as_str()),
                    "created": ts(k.create_date()),
                    "last_used": l.map(|l| json!({
                        "date": ts(l.last_used_date()), "service": l.service_name(), "region": l.region(),
                    })),
                }));
            }
            artifacts.push(ctx.evidence(
                "access-keys.json",
                &json!({"user_name": user, "access_keys": key_docs}),
                "iam:ListAccessKeys",
            )?);
        }
        Principal::Role(role_name) => {
            let role = get_role(ctx, &role_name)
                .await?
                .ok_or_else(|| ActionError::Target(format!("no such IAM role: {role_name}")))?;
            artifacts.push(ctx.evidence("role.json", &role_json(&role), "iam:GetRole")?);
            let names = iam
                .list_role_policies()
                .role_name(&role_name)
                .into_paginator()
                .items()
                .send()
                .collect::<Result<Vec<_>, _>>()
                .await
                .map_err(read_err("iam", "ListRolePolicies"));
            let names = ctx
                .or_gap("iam:ListRolePolicies", names)
                .unwrap_or_default();
            let mut inline = serde_json::Map::new();
            for n in names {
                let d = iam
                    .get_role_policy()
                    .role_name(&role_name)
                    .policy_name(&n)
                    .send()
                    .await
                    .map_err(read_err("iam", "GetRolePolicy"));
                let Some(d) = ctx.or_gap("iam:GetRolePolicy", d) else {
                    inline.insert(n, Value::Null);
                    continue;
                };
                inline.insert(n, policy_document(d.policy_document()));
            }
            let attached = iam
                .list_attached_role_policies()
                .role_name(&role_name)
                .into_paginator()
                .items()
                .send()
                .collect::<Result<Vec<_>, _>>()
                .await
                .map_err(read_err("iam", "ListAttachedRolePolicies"));
            let attached = ctx
                .or_gap("iam:ListAttachedRolePolicies", attached)
                .unwrap_or_default();
            let attached = attached_documents(ctx, &attached).await?;
            artifacts.push(ctx.evidence(
                "policies.json",
                &json!({"role_name": role_name, "inline": inline, "attached": attached}),
                "iam:ListRolePolicies",
            )?);
            let profiles = iam
                .list_instance_profiles_for_role()
                .role_name(&role_name)
                .into_paginator()
                .items()
                .send()
                .collect::<Result<Vec<_>, _>>()
                .await
                .map_err(read_err("iam", "ListInstanceProfilesForRole"));
            let profiles = ctx
                .or_gap("iam:ListInstanceProfilesForRole", profiles)
                .unwrap_or_default();
            artifacts.push(ctx.evidence(
                "instance-profiles.json",
                &json!({"role_name": role_name, "instance_profiles": profiles.iter().map(|p| json!({
                    "instance_profile_name": p.instance_profile_name(), "arn": p.arn(),
                })).collect::<Vec<_>>()}),
                "iam:ListInstanceProfilesForRole",
            )?);
        }
    }
    Ok(ActionOutput::default().with("artifacts", artifacts))
}

/// Attached managed policies with their default version's document.
async fn attached_documents(
    ctx: &ActionCtx,
    attached: &[aws_sdk_iam::types::AttachedPolicy],
) -> Result<Vec<Value>, ActionError> {
    let mut out = Vec::new();
    for a in attached {
        let arn = a.policy_arn().unwrap_or_default();
        let pol = ctx
            .aws
            .iam
            .get_policy()
            .policy_arn(arn)
            .send()
            .await
            .map_err(read_err("iam", "GetPolicy"));
        let pol = ctx.or_gap("iam:GetPolicy", pol);
        let version = pol
            .as_ref()
            .and_then(|p| p.policy())
            .and_then(|p| p.default_version_id())
            .map(str::to_owned);
        let document = match &version {
            Some(v) => {
                let d = ctx
                    .aws
                    .iam
                    .get_policy_version()
                    .policy_arn(arn)
                    .version_id(v)
                    .send()
                    .await
                    .map_err(read_err("iam", "GetPolicyVersion"));
                ctx.or_gap("iam:GetPolicyVersion", d)
                    .as_ref()
                    .and_then(|d| d.policy_version())
                    .and_then(|pv| pv.document())
                    .map(policy_document)
            }
            None => None,
        };
        out.push(json!({
            "policy_name": a.policy_name(), "policy_arn": arn,
            "default_version": version, "document": document,
        }));
    }
    Ok(out)
}

/// `iam.deactivate_access_key`: its declaration (see [`Action`]); the parameters are [`DeactivateKeyParams`].
pub struct DeactivateAccessKey;

impl Action for DeactivateAccessKey {
    type Params = DeactivateKeyParams;
    const DECLARATION: Declaration = Declaration {
        name: "iam.deactivate_access_key",
        summary: "set an access key inactive",
        exactly_one_of: &[],
        outputs: &[out(
            "previous_status",
            TypeSpec::String,
            "Active or Inactive, before the change",
        )],
        api_calls: &["iam:ListAccessKeys", "iam:UpdateAccessKey"],
        permissions: &[
            perm("iam:ListAccessKeys", USER),
            perm("iam:UpdateAccessKey", USER),
        ],
        mutating: true,
        idempotency: "an inactive key stays inactive",
        undo: Some("iam:UpdateAccessKey with Status=Active (by hand, once the key is known safe)"),
    };
    async fn run(
        ctx: &ActionCtx,
        params: DeactivateKeyParams,
    ) -> Result<ActionOutput, ActionError> {
        deactivate_access_key(ctx, params).await
    }
}

/// `iam.deactivate_access_key`: sets an access key inactive. Output `previous_status`.
/// Idempotent (no call when already inactive). Undo: `iam:UpdateAccessKey` back to `Active`.
pub async fn deactivate_access_key(
    ctx: &ActionCtx,
    p: DeactivateKeyParams,
) -> Result<ActionOutput, ActionError> {
    let keys = match ctx
        .aws
        .iam
        .list_access_keys()
        .user_name(&p.user_name)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
    {
        Ok(k) => k,
        Err(e) if e.code() == Some("NoSuchEntity") => {
            return Err(ActionError::Target(format!(
                "no such IAM user: {}",
                p.user_name
            )))
        }
        Err(e) => return Err(aws_error("iam", "ListAccessKeys", &e)),
    };
    let key = keys
        .iter()
        .find(|k| k.access_key_id() == Some(p.access_key_id.as_str()))
        .ok_or_else(|| {
            ActionError::Target(format!(
                "user {} has no access key {}",
                p.user_name, p.access_key_id
            ))
        })?;
    let previous = key
        .status()
        .map(|s| s.as_str().to_owned())
        .unwrap_or_default();
    let artifact = ctx.evidence(
        "access-key-before.json",
        &json!({"user_name": p.user_name, "access_key_id": p.access_key_id,
                "status": previous, "created": ts(key.create_date())}),
        "iam:ListAccessKeys",
    )?;
    let out = ActionOutput::default()
        .with("previous_status", previous.clone())
        .with("artifacts", vec![artifact]);
    if previous == "Inactive" {
        return Ok(out.with("changed", false));
    }
    if ctx.dry_run {
        return Ok(out.with("changed", false).with(
            "would",
            vec![format!(
                "iam:UpdateAccessKey {} {} Inactive",
                p.user_name, p.access_key_id
            )],
        ));
    }
    ctx.mutating(
        "iam",
        "UpdateAccessKey",
        json!({"user_name": p.user_name, "access_key_id": p.access_key_id, "status": "Inactive"}),
        ctx.aws
            .iam
            .update_access_key()
            .user_name(&p.user_name)
            .access_key_id(&p.access_key_id)
            .status(aws_sdk_iam::types::StatusType::Inactive)
            .send(),
        |_| json!({"previous_status": previous}),
    )
    .await?;
    Ok(out.with("changed", true))
}

/// The deny-all policy for sessions issued before `before`.
pub fn revoke_sessions_policy(before: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "IrrRevokeOlderSessions",
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {"DateLessThan": {"aws:TokenIssueTime": before}},
        }]
    })
}

/// `iam.revoke_sessions`: its declaration (see [`Action`]); the parameters are [`RevokeSessionsParams`].
pub struct RevokeSessions;

impl Action for RevokeSessions {
    type Params = RevokeSessionsParams;
    const DECLARATION: Declaration = Declaration {
        name: "iam.revoke_sessions",
        summary:
            "deny everything to sessions issued before now (inline Deny with aws:TokenIssueTime)",
        exactly_one_of: &[&["user_name", "role_name"]],
        outputs: &[out(
            "revoked_before",
            TypeSpec::String,
            "RFC 3339 time; sessions issued before it are denied",
        )],
        api_calls: &[
            "iam:GetUserPolicy",
            "iam:GetUser",
            "iam:PutUserPolicy",
            "iam:GetRole",
            "iam:GetRolePolicy",
            "iam:PutRolePolicy",
        ],
        permissions: &[
            // The policy already there is recorded first; GetUser tells "no such user" from
            // "no such policy".
            perm_if("user_name", "iam:GetUserPolicy", USER),
            perm_if("user_name", "iam:GetUser", USER),
            perm_if("user_name", "iam:PutUserPolicy", USER),
            perm_if("role_name", "iam:GetRole", ROLE),
            perm_if("role_name", "iam:GetRolePolicy", ROLE),
            perm_if("role_name", "iam:PutRolePolicy", ROLE),
        ],
        mutating: true,
        idempotency: "rewrites the one inline policy irr-revoke-sessions",
        undo: Some("delete the inline policy irr-revoke-sessions"),
    };
    async fn run(
        ctx: &ActionCtx,
        params: RevokeSessionsParams,
    ) -> Result<ActionOutput, ActionError> {
        revoke_sessions(ctx, params).await
    }
}

/// `iam.revoke_sessions`: puts the inline policy `irr-revoke-sessions` (Deny `*` when
/// `aws:TokenIssueTime` is before now) on a user or role, so every temporary credential
/// issued before now stops working. Output `revoked_before`.
///
/// For a user this reaches only temporary credentials (GetSessionToken, federation); its
/// long-term access keys carry no issue time: deactivate them (`iam.deactivate_access_key`).
/// Refused on service-linked roles, where IAM forbids inline policies. Re-running moves the
/// cut-off to the new now (revoking at least as much). Undo: delete the inline policy
/// (`iam:DeleteUserPolicy` / `iam:DeleteRolePolicy`).
pub async fn revoke_sessions(
    ctx: &ActionCtx,
    p: RevokeSessionsParams,
) -> Result<ActionOutput, ActionError> {
    let principal = Principal::from_params("iam.revoke_sessions", p.user_name, p.role_name)?;
    let iam = &ctx.aws.iam;
    let before = irr_forensics::clock::now_rfc3339_seconds();
    let policy = revoke_sessions_policy(&before).to_string();
    let (kind, name, existing) = match &principal {
        Principal::Role(r) => {
            let role = get_role(ctx, r)
                .await?
                .ok_or_else(|| ActionError::Target(format!("no such IAM role: {r}")))?;
            if role.path().starts_with("/aws-service-role/") {
                return Err(ActionError::Target(format!(
                    "{r} is a service-linked role: IAM allows no inline policy on it"
                )));
            }
            let existing = match iam
                .get_role_policy()
                .role_name(r)
                .policy_name(REVOKE_POLICY_NAME)
                .send()
                .await
            {
                Ok(o) => Some(policy_document(o.policy_document())),
                Err(e) if e.code() == Some("NoSuchEntity") => None,
                Err(e) => return Err(aws_error("iam", "GetRolePolicy", &e)),
            };
            ("role", r.clone(), existing)
        }
        Principal::User(u) => {
            let existing = match iam
                .get_user_policy()
                .user_name(u)
                .policy_name(REVOKE_POLICY_NAME)
                .send()
                .await
            {
                Ok(o) => Some(policy_document(o.policy_document())),
                Err(e) if e.code() == Some("NoSuchEntity") => {
                    // NoSuchEntity both for "no such policy" and "no such user": tell apart.
                    iam.get_user().user_name(u).send().await.map_err(|e| {
                        if e.code() == Some("NoSuchEntity") {
                            ActionError::Target(format!("no such IAM user: {u}"))
                        } else {
                            aws_error("iam", "GetUser", &e)
                        }
                    })?;
                    None
                }
                Err(e) => return Err(aws_error("iam", "GetUserPolicy", &e)),
            };
            ("user", u.clone(), existing)
        }
    };
    let mut note =
        "sessions (temporary credentials) issued before revoked_before are denied everything"
            .to_owned();
    if kind == "user" {
        note.push_str(
            "; long-term access keys carry no issue time and are NOT affected: deactivate them",
        );
    }
    let artifact = ctx.evidence(
        "revoke-sessions-before.json",
        &json!({"principal_type": kind, "name": name, "existing_policy": existing,
                "policy_name": REVOKE_POLICY_NAME, "revoked_before": before, "note": note}),
        if kind == "role" {
            "iam:GetRolePolicy"
        } else {
            "iam:GetUserPolicy"
        },
    )?;
    let out = ActionOutput::default()
        .with("revoked_before", before.clone())
        .with("artifacts", vec![artifact]);
    let key = json!({"principal_type": kind, "name": name, "policy_name": REVOKE_POLICY_NAME, "revoked_before": before});
    if ctx.dry_run {
        let op = if kind == "role" {
            "iam:PutRolePolicy"
        } else {
            "iam:PutUserPolicy"
        };
        return Ok(out.with(
            "would",
            vec![format!(
                "{op} {name} {REVOKE_POLICY_NAME} (deny sessions issued before {before})"
            )],
        ));
    }
    match principal {
        Principal::Role(r) => {
            retry_transient(
                || {
                    ctx.mutating(
                        "iam",
                        "PutRolePolicy",
                        key.clone(),
                        iam.put_role_policy()
                            .role_name(&r)
                            .policy_name(REVOKE_POLICY_NAME)
                            .policy_document(&policy)
                            .send(),
                        |_| json!({}),
                    )
                },
                is_transient,
            )
            .await?;
        }
        Principal::User(u) => {
            retry_transient(
                || {
                    ctx.mutating(
                        "iam",
                        "PutUserPolicy",
                        key.clone(),
                        iam.put_user_policy()
                            .user_name(&u)
                            .policy_name(REVOKE_POLICY_NAME)
                            .policy_document(&policy)
                            .send(),
                        |_| json!({}),
                    )
                },
                is_transient,
            )
            .await?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("4h").unwrap().as_secs(), 4 * 3600);
        assert_eq!(parse_duration("30m").unwrap().as_secs(), 1800);
        assert_eq!(parse_duration("1h30m").unwrap().as_secs(), 5400);
        assert_eq!(parse_duration("2d").unwrap().as_secs(), 2 * 86_400);
        // The playbook format's rule (`crate::types::parse_duration`): a unit is required and
        // zero is no duration.
        for bad in ["", "h", "4x", "4h3", "-1h", "900", "0s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn role_names_are_sanitised() {
        assert_eq!(
            sanitise_role_name("irr-responder-case 42/x"),
            "irr-responder-case-42-x"
        );
        assert_eq!(sanitise_role_name(&"a".repeat(80)).len(), 64);
    }

    #[test]
    fn trust_policy_requires_mfa_and_expires() {
        let t = trust_policy(
            &["arn:aws:iam::123456789012:root".into()],
            true,
            "2030-01-01T00:00:00Z",
        );
        let c = &t["Statement"][0]["Condition"];
        assert_eq!(c["Bool"]["aws:MultiFactorAuthPresent"], "true");
        assert_eq!(c["DateLessThan"]["aws:CurrentTime"], "2030-01-01T00:00:00Z");
        assert_eq!(
            t["Statement"][0]["Principal"]["AWS"][0],
            "arn:aws:iam::123456789012:root"
        );
        let t = trust_policy(&[], false, "2030-01-01T00:00:00Z");
        assert!(t["Statement"][0]["Condition"].get("Bool").is_none());
    }

    #[test]
    fn revoke_policy_denies_older_tokens() {
        let p = revoke_sessions_policy("2024-01-01T00:00:00Z");
        assert_eq!(p["Statement"][0]["Effect"], "Deny");
        assert_eq!(p["Statement"][0]["Action"], "*");
        assert_eq!(
            p["Statement"][0]["Condition"]["DateLessThan"]["aws:TokenIssueTime"],
            "2024-01-01T00:00:00Z"
        );
    }

    #[test]
    fn policy_documents_are_decoded() {
        let v = policy_document("%7B%22Version%22%3A%20%222012-10-17%22%7D");
        assert_eq!(v["Version"], "2012-10-17");
        let v = policy_document("{\"a\":1}");
        assert_eq!(v["a"], 1);
        assert_eq!(percent_decode("100%"), "100%");
        // RFC 3986: `+` is a plus sign, not a form-encoded space.
        assert_eq!(percent_decode("a+b%20c"), "a+b c");
    }

    /// The race of cloud-forensics-utils #370, which the emulator cannot stage: GetRole says
    /// there is no role, CreateRole says it exists (a parallel run made it in between). The
    /// action must reuse that role, never fail or make a second.
    #[tokio::test]
    async fn create_role_race_reuses_the_role() {
        use aws_sdk_iam::operation::create_role::CreateRoleError;
        use aws_sdk_iam::operation::get_role::{GetRoleError, GetRoleOutput};
        use aws_sdk_iam::types::error::{EntityAlreadyExistsException, NoSuchEntityException};
        use aws_sdk_iam::types::Role;
        use aws_sdk_iam::Client;
        use aws_smithy_mocks::{mock, RuleMode};
        use aws_smithy_types::error::ErrorMetadata;

        let role = || {
            Role::builder()
                .role_name("irr-responder-case-1")
                .path("/")
                .role_id("AROAEXAMPLE")
                .arn("arn:aws:iam::123456789012:role/irr-responder-case-1")
                .create_date(aws_smithy_types::DateTime::from_secs(0))
                .tags(iam_tag(TAG_CASE, "case-1").unwrap())
                .build()
                .unwrap()
        };
        let get_role = mock!(Client::get_role)
            .sequence()
            .error(|| {
                GetRoleError::NoSuchEntityException(
                    NoSuchEntityException::builder()
                        .meta(ErrorMetadata::builder().code("NoSuchEntity").build())
                        .build(),
                )
            })
            .output(move || GetRoleOutput::builder().role(role()).build())
            .build();
        let create_role = mock!(Client::create_role).then_error(|| {
            CreateRoleError::EntityAlreadyExistsException(
                EntityAlreadyExistsException::builder()
                    .meta(ErrorMetadata::builder().code("EntityAlreadyExists").build())
                    .build(),
            )
        });
        let update_trust = mock!(Client::update_assume_role_policy)
            .then_output(|| aws_sdk_iam::operation::update_assume_role_policy::UpdateAssumeRolePolicyOutput::builder().build());
        let update_role = mock!(Client::update_role).then_output(|| {
            aws_sdk_iam::operation::update_role::UpdateRoleOutput::builder().build()
        });
        let tag_role = mock!(Client::tag_role)
            .then_output(|| aws_sdk_iam::operation::tag_role::TagRoleOutput::builder().build());
        let put_policy = mock!(Client::put_role_policy).then_output(|| {
            aws_sdk_iam::operation::put_role_policy::PutRolePolicyOutput::builder().build()
        });
        let rules = [
            &get_role,
            &create_role,
            &update_trust,
            &update_role,
            &tag_role,
            &put_policy,
        ];
        let ctx = crate::actions::test_support::ctx_with_iam("case-1", RuleMode::MatchAny, &rules);

        let out = super::super::dispatch(
            "iam.grant_responder_access",
            &ctx,
            json!({"principals": ["arn:aws:iam::123456789012:user/alice"], "role_name": "irr-responder-case-1"}),
        )
        .await
        .unwrap();
        assert_eq!(
            out.outputs["role_arn"],
            "arn:aws:iam::123456789012:role/irr-responder-case-1"
        );
        assert_eq!(out.outputs["reused"], true);
        assert_eq!(create_role.num_calls(), 1);
        assert_eq!(
            update_trust.num_calls(),
            1,
            "the trust policy is reconciled"
        );
        assert_eq!(put_policy.num_calls(), 1);
    }

    /// A role of another case is refused, and nothing is changed.
    #[tokio::test]
    async fn role_of_another_case_is_refused() {
        use aws_sdk_iam::operation::get_role::GetRoleOutput;
        use aws_sdk_iam::types::Role;
        use aws_sdk_iam::Client;
        use aws_smithy_mocks::{mock, RuleMode};

        let get_role = mock!(Client::get_role).then_output(|| {
            GetRoleOutput::builder()
                .role(
                    Role::builder()
                        .role_name("shared")
                        .path("/")
                        .role_id("AROAEXAMPLE")
                        .arn("arn:aws:iam::123456789012:role/shared")
                        .create_date(aws_smithy_types::DateTime::from_secs(0))
                        .tags(iam_tag(TAG_CASE, "other-case").unwrap())
                        .build()
                        .unwrap(),
                )
                .build()
        });
        let ctx =
            crate::actions::test_support::ctx_with_iam("case-1", RuleMode::MatchAny, &[&get_role]);
        let e = super::super::dispatch(
            "iam.revoke_responder_access",
            &ctx,
            json!({"role_name": "shared"}),
        )
        .await
        .unwrap_err();
        assert_eq!(e.code(), "target");
        assert!(e.to_string().contains("other-case"), "{e}");
    }
}
