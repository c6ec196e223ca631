//! `iam.grant_responder_access` and `iam.revoke_responder_access`: the time-bounded responder role.

use super::*;

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
    let (duration, require_mfa, role_name, policy) = grant_params(ctx, &p)?;

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
        let (arn, would) =
            grant_would(ctx, existing.as_ref(), &role_name, &expires_at, max_session).await?;
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

/// The grant's checked parameters: duration, MFA, role name and policy (defaults applied).
fn grant_params(
    ctx: &ActionCtx,
    p: &GrantParams,
) -> Result<(std::time::Duration, bool, String, Value), ActionError> {
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
    Ok((duration, require_mfa, role_name, policy))
}

/// In a dry run: the role's ARN and what the grant would do.
async fn grant_would(
    ctx: &ActionCtx,
    existing: Option<&aws_sdk_iam::types::Role>,
    role_name: &str,
    expires_at: &str,
    max_session: i32,
) -> Result<(String, Vec<String>), ActionError> {
    let arn = match existing {
        Some(r) => r.arn().to_owned(),
        None => {
            let root = account_root(ctx).await?;
            root.trim_end_matches(":root").to_owned() + ":role/" + role_name
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
    Ok((arn, would))
}

pub(super) fn check_case(ctx: &ActionCtx, r: &aws_sdk_iam::types::Role) -> Result<(), ActionError> {
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
pub(super) async fn reconcile_role(
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

    let (inline, attached, profiles) = role_attachments(ctx, name).await?;
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

/// The role's inline policy names, attached policy ARNs and instance profile names (empty
/// when the role went away meanwhile).
async fn role_attachments(
    ctx: &ActionCtx,
    name: &str,
) -> Result<(Vec<String>, Vec<String>, Vec<String>), ActionError> {
    let iam = &ctx.aws.iam;
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
    Ok((inline, attached, profiles))
}
