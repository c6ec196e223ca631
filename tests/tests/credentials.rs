//! Containing leaked credentials against the emulator: capture the principal, deactivate the
//! key, revoke the sessions; then assert what IAM holds.

use irr_runner::actions;
use irr_tests::{action_ctx, sdk_config, unique, MemoryRecorder};
use serde_json::json;

/// A user with an inline policy, a group and an access key; returns (user, key id, secret).
async fn leaked_user(iam: &aws_sdk_iam::Client) -> (String, String, String) {
    let user = unique("leaky");
    iam.create_user().user_name(&user).send().await.unwrap();
    iam.put_user_policy()
        .user_name(&user)
        .policy_name("app")
        .policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    let group = unique("devs");
    iam.create_group().group_name(&group).send().await.unwrap();
    iam.add_user_to_group()
        .group_name(&group)
        .user_name(&user)
        .send()
        .await
        .unwrap();
    let key = iam
        .create_access_key()
        .user_name(&user)
        .send()
        .await
        .unwrap();
    let key = key.access_key().unwrap();
    (
        user,
        key.access_key_id().to_owned(),
        key.secret_access_key().to_owned(),
    )
}

/// `iam.capture_principal` records the user's keys, policies (decoded) and groups, and never
/// the key's secret.
async fn captures_the_leaked_user(
    conf: &aws_config::SdkConfig,
    case: &str,
    rec: &std::sync::Arc<MemoryRecorder>,
    user: &str,
    key_id: &str,
    secret: &str,
) {
    let out = actions::dispatch(
        "iam.capture_principal",
        &action_ctx(conf, case, "capture", false, rec.clone()),
        json!({"user_name": user}),
    )
    .await
    .unwrap();
    assert_eq!(out.outputs["artifacts"].as_array().unwrap().len(), 4);
    let keys = rec.artifact_json("access-keys.json").unwrap();
    assert_eq!(keys["access_keys"][0]["access_key_id"], key_id);
    assert_eq!(keys["access_keys"][0]["status"], "Active");
    assert!(keys["access_keys"][0].get("last_used").is_some());
    let policies = rec.artifact_json("policies.json").unwrap();
    assert_eq!(
        policies["inline"]["app"]["Statement"][0]["Action"], "s3:*",
        "inline policy decoded"
    );
    let groups = rec.artifact_json("groups.json").unwrap();
    assert_eq!(groups["groups"].as_array().unwrap().len(), 1);
    for a in rec.artifacts() {
        assert!(
            !String::from_utf8_lossy(&a.content).contains(secret),
            "secret in {}",
            a.name
        );
    }
}

#[tokio::test]
async fn leaked_access_key_is_contained() {
    let conf = sdk_config().await;
    let iam = aws_sdk_iam::Client::new(&conf);
    let (user, key_id, secret) = leaked_user(&iam).await;
    let case = unique("case");
    let rec = MemoryRecorder::new();

    captures_the_leaked_user(&conf, &case, &rec, &user, &key_id, &secret).await;

    // Dry run first: nothing changes.
    let dry = actions::dispatch(
        "iam.deactivate_access_key",
        &action_ctx(&conf, &case, "deactivate", true, rec.clone()),
        json!({"user_name": user, "access_key_id": key_id}),
    )
    .await
    .unwrap();
    assert!(dry.outputs["would"].to_string().contains("UpdateAccessKey"));
    actions::dispatch(
        "iam.revoke_sessions",
        &action_ctx(&conf, &case, "revoke", true, rec.clone()),
        json!({"user_name": user}),
    )
    .await
    .unwrap();
    assert!(rec.calls().is_empty(), "IAM has no DryRun: no call at all");
    let listed = iam
        .list_access_keys()
        .user_name(&user)
        .send()
        .await
        .unwrap();
    assert_eq!(
        listed.access_key_metadata()[0].status().unwrap().as_str(),
        "Active"
    );
    assert!(iam
        .get_user_policy()
        .user_name(&user)
        .policy_name("irr-revoke-sessions")
        .send()
        .await
        .is_err());

    let out = actions::dispatch(
        "iam.deactivate_access_key",
        &action_ctx(&conf, &case, "deactivate", false, rec.clone()),
        json!({"user_name": user, "access_key_id": key_id}),
    )
    .await
    .unwrap();
    assert_eq!(out.outputs["previous_status"], "Active");
    let listed = iam
        .list_access_keys()
        .user_name(&user)
        .send()
        .await
        .unwrap();
    assert_eq!(
        listed.access_key_metadata()[0].status().unwrap().as_str(),
        "Inactive"
    );
    // Again: already inactive, no call.
    let again = actions::dispatch(
        "iam.deactivate_access_key",
        &action_ctx(&conf, &case, "deactivate-again", false, rec.clone()),
        json!({"user_name": user, "access_key_id": key_id}),
    )
    .await
    .unwrap();
    assert_eq!(again.outputs["previous_status"], "Inactive");
    assert_eq!(rec.calls_of("UpdateAccessKey").len(), 1);

    let out = actions::dispatch(
        "iam.revoke_sessions",
        &action_ctx(&conf, &case, "revoke", false, rec.clone()),
        json!({"user_name": user}),
    )
    .await
    .unwrap();
    let before = out.outputs["revoked_before"].as_str().unwrap();
    let doc = iam
        .get_user_policy()
        .user_name(&user)
        .policy_name("irr-revoke-sessions")
        .send()
        .await
        .unwrap();
    let doc = actions::iam::policy_document(doc.policy_document());
    let st = &doc["Statement"][0];
    assert_eq!(st["Effect"], "Deny");
    assert_eq!(st["Action"], "*");
    assert_eq!(st["Resource"], "*");
    assert_eq!(
        st["Condition"]["DateLessThan"]["aws:TokenIssueTime"],
        before
    );
    let note = rec.artifact_json("revoke-sessions-before.json").unwrap();
    assert!(note["note"]
        .as_str()
        .unwrap()
        .contains("long-term access keys"));

    // Unknown key: a clear target error.
    let e = actions::dispatch(
        "iam.deactivate_access_key",
        &action_ctx(&conf, &case, "deactivate", false, rec.clone()),
        json!({"user_name": user, "access_key_id": "AKIANOSUCHKEY0000000"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), "target", "{e}");
    rec.assert_calls_ok();
}

#[tokio::test]
async fn compromised_role_sessions_are_revoked() {
    let conf = sdk_config().await;
    let iam = aws_sdk_iam::Client::new(&conf);
    let role = unique("app-role");
    iam.create_role()
        .role_name(&role)
        .assume_role_policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    let managed = iam
        .create_policy()
        .policy_name(unique("read"))
        .policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"}]})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    let managed_arn = managed.policy().unwrap().arn().unwrap().to_owned();
    iam.attach_role_policy()
        .role_name(&role)
        .policy_arn(&managed_arn)
        .send()
        .await
        .unwrap();
    let case = unique("case");
    let rec = MemoryRecorder::new();
    actions::dispatch(
        "iam.capture_principal",
        &action_ctx(&conf, &case, "capture", false, rec.clone()),
        json!({"role_name": role}),
    )
    .await
    .unwrap();
    let captured = rec.artifact_json("role.json").unwrap();
    assert_eq!(
        captured["assume_role_policy"]["Statement"][0]["Principal"]["Service"],
        "ec2.amazonaws.com"
    );

    let policies = rec.artifact_json("policies.json").unwrap();
    assert_eq!(policies["attached"][0]["policy_arn"], managed_arn.as_str());
    assert_eq!(
        policies["attached"][0]["document"]["Statement"][0]["Action"],
        "ec2:Describe*"
    );
    let out = actions::dispatch(
        "iam.revoke_sessions",
        &action_ctx(&conf, &case, "revoke", false, rec.clone()),
        json!({"role_name": role}),
    )
    .await
    .unwrap();
    let doc = iam
        .get_role_policy()
        .role_name(&role)
        .policy_name("irr-revoke-sessions")
        .send()
        .await
        .unwrap();
    let doc = actions::iam::policy_document(doc.policy_document());
    assert_eq!(doc["Statement"][0]["Effect"], "Deny");
    assert_eq!(
        doc["Statement"][0]["Condition"]["DateLessThan"]["aws:TokenIssueTime"],
        out.outputs["revoked_before"]
    );
    let e = actions::dispatch(
        "iam.revoke_sessions",
        &action_ctx(&conf, &case, "revoke", false, rec.clone()),
        json!({"role_name": role, "user_name": "x"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), "params");
    rec.assert_calls_ok();
}
