//! `iam.capture_principal`: record a user's or role's policies, keys, groups and last use.

use super::*;

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
    let artifacts = match Principal::from_params("iam.capture_principal", p.user_name, p.role_name)?
    {
        Principal::User(user) => capture_user(ctx, &user).await?,
        Principal::Role(role_name) => capture_role(ctx, &role_name).await?,
    };
    Ok(ActionOutput::default().with("artifacts", artifacts))
}

/// The role's artifacts: the role, its policies and instance profiles; returns their paths.
async fn capture_role(ctx: &ActionCtx, role_name: &str) -> Result<Vec<String>, ActionError> {
    let iam = &ctx.aws.iam;
    let mut artifacts = Vec::new();
    let role = get_role(ctx, role_name)
        .await?
        .ok_or_else(|| ActionError::Target(format!("no such IAM role: {role_name}")))?;
    artifacts.push(ctx.evidence("role.json", &role_json(&role), "iam:GetRole")?);
    let names = iam
        .list_role_policies()
        .role_name(role_name)
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
            .role_name(role_name)
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
        .role_name(role_name)
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
        .role_name(role_name)
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
    Ok(artifacts)
}

/// The user's artifacts: identity, policies, groups, access keys; returns their paths.
async fn capture_user(ctx: &ActionCtx, user: &str) -> Result<Vec<String>, ActionError> {
    let iam = &ctx.aws.iam;
    let mut artifacts = Vec::new();
    let u = iam.get_user().user_name(user).send().await.map_err(|e| {
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
        .user_name(user)
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
            .user_name(user)
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
        .user_name(user)
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
        .user_name(user)
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

    artifacts.push(access_keys_artifact(ctx, user).await?);
    Ok(artifacts)
}

/// Records the user's access keys and their last use (`access-keys.json`; never secrets);
/// returns its path.
async fn access_keys_artifact(ctx: &ActionCtx, user: &str) -> Result<String, ActionError> {
    let iam = &ctx.aws.iam;
    let keys = iam
        .list_access_keys()
        .user_name(user)
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
    ctx.evidence(
        "access-keys.json",
        &json!({"user_name": user, "access_keys": key_docs}),
        "iam:ListAccessKeys",
    )
}

/// Attached managed policies with their default version's document.
pub(super) async fn attached_documents(
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
