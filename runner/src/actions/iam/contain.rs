//! `iam.deactivate_access_key` and `iam.revoke_sessions`: contain a compromised principal.

use super::*;

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
    let (kind, name, existing) = revoke_policy_before(ctx, &principal).await?;
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

/// The principal's kind (`role`/`user`), name and current `irr-revoke-sessions` policy (if
/// any), refusing a missing principal or a service-linked role.
async fn revoke_policy_before(
    ctx: &ActionCtx,
    principal: &Principal,
) -> Result<(&'static str, String, Option<Value>), ActionError> {
    let iam = &ctx.aws.iam;
    Ok(match principal {
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
    })
}
