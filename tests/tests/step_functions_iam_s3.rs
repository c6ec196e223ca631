//! The shipped IAM and S3 playbooks compiled (`irr compile --target step-functions`) and
//! executed for real on LocalStack's Step Functions interpreter, against a target account
//! that is not the machine's own (the evidence is written to the machine's own bucket). The
//! resulting IAM and S3 state and the evidence objects are asserted through the APIs, as the
//! CLI tests (`credentials.rs`, `s3_exposure.rs`) do.
//!
//! IAM is per account on LocalStack: an IAM task without the target's `Credentials.RoleArn`
//! would not find the user. Its S3 is one namespace across accounts and its history has no
//! `taskCredentials`, so that the S3 tasks on the incident's bucket carry the target's
//! credentials is asserted on the definition (`runner/src/compile/tests.rs`).
//!
//! LocalStack: `IRR_TEST_LOCALSTACK_ENDPOINT`, else a private one (`scripts/ensure-localstack`).

use std::collections::BTreeMap;
use std::time::Duration;

use irr_runner::actions::AwsClients;
use irr_runner::emulator::EmulatorKind;
use irr_tests::sfn::{
    clients, compile, create_machine, ended, evidence_bucket, evidence_objects, history, start,
};
use irr_tests::{assumed_role_config, endpoint_of, playbook, unique};
use serde_json::{json, Value};

/// The incident's account: not LocalStack's default one, where the machine and its
/// evidence bucket are.
const TARGET: &str = "111111111111";

/// Clients in the target account, as its responder role.
async fn target_clients() -> AwsClients {
    let conf = assumed_role_config(
        &endpoint_of(EmulatorKind::Localstack),
        TARGET,
        "irr-responder",
        "us-east-1",
    )
    .await;
    AwsClients::from_conf(&conf, true)
}

fn object(objects: &BTreeMap<String, Vec<u8>>, path: &str) -> Value {
    let bytes = objects
        .get(path)
        .unwrap_or_else(|| panic!("{path} in {:?}", objects.keys()));
    serde_json::from_slice(bytes).unwrap()
}

/// The SDK tasks an execution scheduled, as `service:resource` (`iam:updateAccessKey`).
async fn scheduled(c: &AwsClients, arn: &str) -> Vec<String> {
    history(c, arn)
        .await
        .iter()
        .filter_map(|e| e.task_scheduled_event_details())
        .map(|d| {
            format!(
                "{}:{}",
                d.resource_type().trim_start_matches("aws-sdk:"),
                d.resource()
            )
        })
        .collect()
}

/// Runs one execution of `machine` against the target account; its name, ARN, output.
async fn execute(
    c: &AwsClients,
    machine: &str,
    case: &str,
    inputs: Value,
) -> (String, String, Value) {
    let name = unique("x");
    let input = json!({"case_id": case, "inputs": inputs, "target": {"account": TARGET}});
    let arn = start(c, machine, &name, &input).await;
    let (status, output) = ended(c, &arn, Duration::from_secs(180)).await;
    let output = output.unwrap_or_default();
    assert_eq!(status, "SUCCEEDED", "{output:#}");
    (name, arn, output)
}

/// A user with an inline policy, a group, a managed policy and an access key, in the target
/// account; (user, key id, secret).
async fn leaked_user(iam: &aws_sdk_iam::Client) -> (String, String, String) {
    let user = unique("leaky");
    iam.create_user().user_name(&user).send().await.unwrap();
    let allow = |action: &str| {
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]}).to_string()
    };
    iam.put_user_policy()
        .user_name(&user)
        .policy_name("app")
        .policy_document(allow("s3:*"))
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
    let managed = iam
        .create_policy()
        .policy_name(unique("ec2-admin"))
        .policy_document(allow("ec2:*"))
        .send()
        .await
        .unwrap();
    iam.attach_user_policy()
        .user_name(&user)
        .policy_arn(managed.policy().unwrap().arn().unwrap())
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

fn rfc3339(s: &str) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// The `irr-revoke-sessions` policy of the user, decoded.
async fn revoke_policy(iam: &aws_sdk_iam::Client, user: &str) -> Value {
    let doc = iam
        .get_user_policy()
        .user_name(user)
        .policy_name("irr-revoke-sessions")
        .send()
        .await
        .expect("the deny-old-sessions policy is there");
    irr_runner::actions::iam::policy_document(doc.policy_document())
}

/// What the credential playbook's first execution recorded: the user, its keys (never the
/// secret), policies and groups, the key's and the policy's before-states.
fn assert_credential_evidence(
    objects: &BTreeMap<String, Vec<u8>>,
    user: &str,
    key_id: &str,
    secret: &str,
    before: &str,
) {
    for (path, bytes) in objects {
        assert!(
            !String::from_utf8_lossy(bytes).contains(secret),
            "the key's secret in {path}"
        );
    }
    assert_eq!(object(objects, "capture/user.json")["UserName"], user);
    let keys = object(objects, "capture/access-keys.json");
    assert_eq!(keys["user_name"], user);
    assert_eq!(keys["access_keys"][0]["access_key_id"], key_id);
    assert_eq!(keys["access_keys"][0]["status"], "Active");
    assert!(keys["access_keys"][0]["last_used"].is_object(), "{keys:#}");
    let policies = object(objects, "capture/policies.json");
    assert_eq!(policies["inline"][0]["policy_name"], "app", "{policies:#}");
    assert_eq!(
        policies["inline"][0]["document"]["Statement"][0]["Action"],
        "s3:*"
    );
    assert_eq!(policies["attached"][0]["default_version"], "v1");
    assert_eq!(
        policies["attached"][0]["document"]["Statement"][0]["Action"],
        "ec2:*"
    );
    let groups = object(objects, "capture/groups.json");
    assert_eq!(groups["groups"].as_array().unwrap().len(), 1, "{groups:#}");
    let key_before = object(objects, "deactivate-key/access-key-before.json");
    assert_eq!(key_before["status"], "Active");
    assert_eq!(key_before["access_key_id"], key_id);
    let revoke = object(objects, "revoke-sessions/revoke-sessions-before.json");
    assert_eq!(revoke["existing_policy"], Value::Null, "{revoke:#}");
    assert_eq!(revoke["revoked_before"], before);
    assert!(revoke["note"]
        .as_str()
        .unwrap()
        .contains("long-term access keys"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_compiled_credential_playbook_contains_a_leaked_key_in_the_target_account() {
    let c = clients().await;
    let t = target_clients().await;
    let (user, key_id, secret) = leaked_user(&t.iam).await;
    let bucket = evidence_bucket(&c).await;
    let dir = tempfile::tempdir().unwrap();
    let definition = compile(&playbook("iam-credential-compromise.yaml"), dir.path(), &[]);
    let machine = create_machine(&c, &definition, &bucket).await;
    let case = unique("IR-sfn-iam");
    let inputs = json!({"user_name": user, "access_key_id": key_id});
    let (name, arn, output) = execute(&c, &machine, &case, inputs.clone()).await;
    for step in ["capture", "deactivate-key", "revoke-sessions"] {
        assert_eq!(
            output["steps"][step]["status"], "succeeded",
            "{step}: {output:#}"
        );
    }
    assert_eq!(
        output["steps"]["deactivate-key"]["outputs"]["previous_status"],
        "Active"
    );

    // The key is inactive, in the target account.
    let listed = t
        .iam
        .list_access_keys()
        .user_name(&user)
        .send()
        .await
        .unwrap();
    assert_eq!(
        listed.access_key_metadata()[0].status().unwrap().as_str(),
        "Inactive"
    );
    // Sessions issued before the step's cut-off are denied everything; the cut-off is when
    // the step ran (after the execution started).
    let before = output["steps"]["revoke-sessions"]["outputs"]["revoked_before"]
        .as_str()
        .unwrap()
        .to_owned();
    let st = &revoke_policy(&t.iam, &user).await["Statement"][0];
    assert_eq!(st["Effect"], "Deny");
    assert_eq!(st["Action"], "*");
    assert_eq!(st["Resource"], "*");
    assert_eq!(
        st["Condition"]["DateLessThan"]["aws:TokenIssueTime"],
        before
    );
    let started = c
        .sfn
        .describe_execution()
        .execution_arn(&arn)
        .send()
        .await
        .unwrap()
        .start_date()
        .secs();
    assert!(
        rfc3339(&before).unix_timestamp() >= started,
        "{before} is not before the execution started ({started})"
    );
    // Taken when the step ran, as the CLI's "now": after the capture step it needs ended
    // (a session minted meanwhile is denied too), not at the execution's start.
    let captured = history(&c, &arn)
        .await
        .iter()
        .find(|e| {
            e.state_exited_event_details()
                .is_some_and(|d| d.name() == "capture")
        })
        .map(|e| e.timestamp().as_secs_f64())
        .expect("the capture step exited");
    let cut_off = rfc3339(&before);
    let cut_off = cut_off.unix_timestamp() as f64 + f64::from(cut_off.nanosecond()) / 1e9;
    assert!(
        cut_off >= captured - 0.001,
        "revoked_before {before} is before the capture step ended ({captured})"
    );

    // The evidence: the user as it was, hashed by S3, locked, never the secret.
    let objects = evidence_objects(&c, &bucket, &case, &name).await;
    assert_credential_evidence(&objects, &user, &key_id, &secret, &before);

    // Again: the key is already inactive (no UpdateAccessKey), the policy there is recorded
    // and the cut-off moves on.
    let (name2, arn2, output2) = execute(&c, &machine, &case, inputs).await;
    assert_eq!(
        output2["steps"]["deactivate-key"]["outputs"]["previous_status"],
        "Inactive"
    );
    let calls = scheduled(&c, &arn2).await;
    assert!(
        !calls.iter().any(|s| s == "iam:updateAccessKey"),
        "{calls:?}"
    );
    assert!(calls.iter().any(|s| s == "iam:putUserPolicy"), "{calls:?}");
    let objects2 = evidence_objects(&c, &bucket, &case, &name2).await;
    let revoke2 = object(&objects2, "revoke-sessions/revoke-sessions-before.json");
    assert_eq!(
        revoke2["existing_policy"]["Statement"][0]["Condition"]["DateLessThan"]
            ["aws:TokenIssueTime"],
        before.as_str(),
        "{revoke2:#}"
    );
    let before2 = output2["steps"]["revoke-sessions"]["outputs"]["revoked_before"]
        .as_str()
        .unwrap();
    assert!(rfc3339(before2) > rfc3339(&before));
    assert_eq!(
        revoke_policy(&t.iam, &user).await["Statement"][0]["Condition"]["DateLessThan"]
            ["aws:TokenIssueTime"],
        before2
    );
}

/// A bucket in the target account with a public policy and a public-read ACL, and no public
/// access block (LocalStack, as S3, gives a new bucket one: it is taken away).
async fn exposed_bucket(s3: &aws_sdk_s3::Client) -> String {
    let bucket = unique("exposed").to_lowercase();
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    s3.delete_public_access_block()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let policy = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*",
        "Action": "s3:GetObject", "Resource": format!("arn:aws:s3:::{bucket}/*")}]});
    s3.put_bucket_policy()
        .bucket(&bucket)
        .policy(policy.to_string())
        .send()
        .await
        .unwrap();
    s3.put_bucket_acl()
        .bucket(&bucket)
        .acl(aws_sdk_s3::types::BucketCannedAcl::PublicRead)
        .send()
        .await
        .unwrap();
    bucket
}

#[tokio::test(flavor = "multi_thread")]
async fn the_compiled_bucket_playbook_closes_an_exposed_bucket_in_the_target_account() {
    let c = clients().await;
    let t = target_clients().await;
    let exposed = exposed_bucket(&t.s3).await;
    let bucket = evidence_bucket(&c).await;
    let dir = tempfile::tempdir().unwrap();
    let definition = compile(&playbook("s3-bucket-exposure.yaml"), dir.path(), &[]);
    let machine = create_machine(&c, &definition, &bucket).await;
    let case = unique("IR-sfn-s3");
    let (name, _, output) = execute(&c, &machine, &case, json!({"bucket": exposed})).await;
    assert_eq!(output["steps"]["capture"]["status"], "succeeded");
    assert_eq!(output["steps"]["block"]["status"], "succeeded");
    let unconfigured = json!({"configured": false, "block_public_acls": false, "ignore_public_acls": false,
                              "block_public_policy": false, "restrict_public_buckets": false});
    assert_eq!(
        output["steps"]["block"]["outputs"]["previous"],
        unconfigured
    );

    // All four settings on, on the target account's bucket.
    let pab =
        t.s3.get_public_access_block()
            .bucket(&exposed)
            .send()
            .await
            .unwrap();
    let conf = pab.public_access_block_configuration().unwrap();
    assert_eq!(
        (
            conf.block_public_acls(),
            conf.ignore_public_acls(),
            conf.block_public_policy(),
            conf.restrict_public_buckets()
        ),
        (Some(true), Some(true), Some(true), Some(true))
    );

    // The evidence: how the bucket was exposed.
    let objects = evidence_objects(&c, &bucket, &case, &name).await;
    let policy = object(&objects, "capture/bucket-policy.json");
    assert_eq!(policy["bucket"], exposed);
    assert_eq!(policy["present"], true);
    assert_eq!(policy["policy"]["Statement"][0]["Principal"], "*");
    let acl = object(&objects, "capture/bucket-acl.json");
    assert_eq!(acl["present"], true);
    assert!(
        acl["acl"]["Grants"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["Grantee"].to_string().contains("AllUsers")),
        "{acl:#}"
    );
    let block = object(&objects, "capture/public-access-block.json");
    assert_eq!(
        (&block["captured"], &block["present"]),
        (&json!(true), &json!(false))
    );
    assert_eq!(block["public_access_block"], unconfigured);
    assert_eq!(
        object(&objects, "capture/bucket-versioning.json")["present"],
        false
    );
    for item in [
        "capture/bucket-encryption.json",
        "capture/bucket-ownership-controls.json",
    ] {
        assert_eq!(object(&objects, item)["captured"], true, "{item}");
    }
    assert_eq!(
        object(&objects, "block/public-access-block-before.json")["public_access_block"],
        unconfigured
    );

    // Again: already blocked, nothing put; `previous` shows all four on.
    let (_, arn2, output2) = execute(&c, &machine, &case, json!({"bucket": exposed})).await;
    let previous = &output2["steps"]["block"]["outputs"]["previous"];
    assert_eq!(previous["configured"], true, "{output2:#}");
    assert_eq!(previous["restrict_public_buckets"], true);
    let calls = scheduled(&c, &arn2).await;
    assert!(
        !calls.iter().any(|s| s == "s3:putPublicAccessBlock"),
        "{calls:?}"
    );

    // A bucket the target account does not have: the capture fails (no such bucket), the
    // block never runs.
    let name3 = unique("x");
    let input = json!({"case_id": case, "inputs": {"bucket": unique("nope").to_lowercase()}, "target": {"account": TARGET}});
    let arn3 = start(&c, &machine, &name3, &input).await;
    let (status, _) = ended(&c, &arn3, Duration::from_secs(180)).await;
    assert_eq!(status, "FAILED");
    let events = history(&c, &arn3).await;
    let last: Value = events
        .iter()
        .rev()
        .find_map(|e| e.state_exited_event_details().and_then(|d| d.output()))
        .map(|o| serde_json::from_str(o).unwrap())
        .unwrap();
    assert_eq!(last["steps"]["capture"]["status"], "failed", "{last:#}");
    assert!(
        last["steps"]["capture"]["error"]
            .as_str()
            .unwrap()
            .contains("NoSuchBucket"),
        "{last:#}"
    );
    assert_eq!(last["steps"]["block"]["status"], "pending");
}

/// A playbook for a compromised role: capture it, revoke its sessions, then delete it as a
/// responder role would be (`iam.revoke_responder_access`).
const ROLE_PLAYBOOK: &str = "apiVersion: irr/v1
kind: Playbook
metadata: {name: role-compromise, version: 1.0.0}
inputs:
  role_name: {type: string}
steps:
  - id: capture
    action: iam.capture_principal
    with: {role_name: \"{{inputs.role_name}}\"}
  - id: revoke-sessions
    action: iam.revoke_sessions
    needs: [capture]
    with: {role_name: \"{{inputs.role_name}}\"}
  - id: revoke-access
    action: iam.revoke_responder_access
    needs: [revoke-sessions]
    with: {role_name: \"{{inputs.role_name}}\"}
";

/// A role of `case` (its `irr:case` tag) with an inline policy, a managed policy and an
/// instance profile, in the target account; (role, managed policy ARN, profile).
async fn responder_role(iam: &aws_sdk_iam::Client, case: &str) -> (String, String, String) {
    let role = unique("responder");
    let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{TARGET}:root")}, "Action": "sts:AssumeRole"}]});
    iam.create_role()
        .role_name(&role)
        .assume_role_policy_document(trust.to_string())
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key("team")
                .value("ir")
                .build()
                .unwrap(),
        )
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key("irr:case")
                .value(case)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let allow = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"}]}).to_string();
    iam.put_role_policy()
        .role_name(&role)
        .policy_name("irr-responder")
        .policy_document(&allow)
        .send()
        .await
        .unwrap();
    let managed = iam
        .create_policy()
        .policy_name(unique("read"))
        .policy_document(&allow)
        .send()
        .await
        .unwrap();
    let arn = managed.policy().unwrap().arn().unwrap().to_owned();
    iam.attach_role_policy()
        .role_name(&role)
        .policy_arn(&arn)
        .send()
        .await
        .unwrap();
    let profile = unique("profile");
    iam.create_instance_profile()
        .instance_profile_name(&profile)
        .send()
        .await
        .unwrap();
    iam.add_role_to_instance_profile()
        .instance_profile_name(&profile)
        .role_name(&role)
        .send()
        .await
        .unwrap();
    (role, arn, profile)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compiled_role_playbook_records_revokes_and_deletes_the_case_role() {
    let c = clients().await;
    let t = target_clients().await;
    let case = unique("IR-sfn-role");
    let (role, managed, profile) = responder_role(&t.iam, &case).await;
    let bucket = evidence_bucket(&c).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("role-compromise.yaml");
    std::fs::write(&path, ROLE_PLAYBOOK).unwrap();
    let definition = compile(&path, dir.path(), &[]);
    let machine = create_machine(&c, &definition, &bucket).await;
    let (name, _, output) = execute(&c, &machine, &case, json!({"role_name": role})).await;
    for step in ["capture", "revoke-sessions", "revoke-access"] {
        assert_eq!(
            output["steps"][step]["status"], "succeeded",
            "{step}: {output:#}"
        );
    }
    // The role is gone, and its instance profile holds no role.
    assert!(t.iam.get_role().role_name(&role).send().await.is_err());
    let p = t
        .iam
        .get_instance_profile()
        .instance_profile_name(&profile)
        .send()
        .await
        .unwrap();
    assert!(p.instance_profile().unwrap().roles().is_empty());

    let objects = evidence_objects(&c, &bucket, &case, &name).await;
    assert_eq!(object(&objects, "capture/role.json")["RoleName"], role);
    let policies = object(&objects, "capture/policies.json");
    assert_eq!(policies["role_name"], role);
    assert_eq!(policies["inline"][0]["policy_name"], "irr-responder");
    assert_eq!(policies["attached"][0]["policy_arn"], managed);
    let profiles = object(&objects, "capture/instance-profiles.json");
    assert_eq!(
        profiles["instance_profiles"][0]["instance_profile_name"],
        profile
    );
    let revoke = object(&objects, "revoke-sessions/revoke-sessions-before.json");
    assert_eq!(revoke["principal_type"], "role");
    assert!(!revoke["note"]
        .as_str()
        .unwrap()
        .contains("long-term access keys"));
    // What the role held before it was deleted, the deny policy of the step before included.
    let before = object(&objects, "revoke-access/responder-role-before.json");
    assert_eq!(before["role_name"], role);
    let mut inline: Vec<&str> = before["inline_policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    inline.sort_unstable();
    assert_eq!(
        inline,
        ["irr-responder", "irr-revoke-sessions"],
        "{before:#}"
    );
    assert_eq!(before["attached_policies"], json!([managed]));
    assert_eq!(before["instance_profiles"], json!([profile]));
    assert_eq!(before["existing"]["RoleName"], role);

    // A role already gone: recorded as such, the revoke succeeds (the CLI's idempotency).
    let only_revoke = ROLE_PLAYBOOK
        .split("  - id: capture")
        .next()
        .unwrap()
        .to_owned()
        + "  - id: revoke-access\n    action: iam.revoke_responder_access\n    with: {role_name: \"{{inputs.role_name}}\"}\n";
    std::fs::write(&path, only_revoke).unwrap();
    let definition = compile(&path, dir.path(), &[]);
    let machine = create_machine(&c, &definition, &bucket).await;
    let (name, _, output) = execute(&c, &machine, &case, json!({"role_name": role})).await;
    assert_eq!(output["steps"]["revoke-access"]["status"], "succeeded");
    let objects = evidence_objects(&c, &bucket, &case, &name).await;
    assert_eq!(
        object(&objects, "revoke-access/responder-role-before.json"),
        json!({"role_name": role, "existing": null})
    );

    // Another case's role is refused and kept.
    let (other, _, _) = responder_role(&t.iam, "IR-another-case").await;
    let name = unique("x");
    let input =
        json!({"case_id": case, "inputs": {"role_name": other}, "target": {"account": TARGET}});
    let arn = start(&c, &machine, &name, &input).await;
    let (status, _) = ended(&c, &arn, Duration::from_secs(180)).await;
    assert_eq!(status, "FAILED");
    let events = history(&c, &arn).await;
    let last: Value = events
        .iter()
        .rev()
        .find_map(|e| e.state_exited_event_details().and_then(|d| d.output()))
        .map(|o| serde_json::from_str(o).unwrap())
        .unwrap();
    assert_eq!(
        last["steps"]["revoke-access"]["error"], "irr.NotThisCase",
        "{last:#}"
    );
    assert!(t.iam.get_role().role_name(&other).send().await.is_ok());
}

/// A playbook granting responder access, as the shipped EC2 playbook's `grant` step.
const GRANT_PLAYBOOK: &str = "apiVersion: irr/v1
kind: Playbook
metadata: {name: grant, version: 1.0.0}
inputs:
  responders: {type: list, items: arn, default: []}
  access_duration: {type: duration, default: 4h}
steps:
  - id: grant
    action: iam.grant_responder_access
    with:
      principals: \"{{inputs.responders}}\"
      duration: \"{{inputs.access_duration}}\"
";

/// The role's trust policy, decoded (URL-encoded on AWS, plain on LocalStack).
async fn trust_of(iam: &aws_sdk_iam::Client, role: &str) -> (Value, i32, BTreeMap<String, String>) {
    let r = iam.get_role().role_name(role).send().await.unwrap();
    let r = r.role().unwrap();
    let doc = r.assume_role_policy_document().unwrap();
    let doc = percent_encoding::percent_decode_str(doc)
        .decode_utf8()
        .unwrap()
        .into_owned();
    let tags = r
        .tags()
        .iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect();
    (
        serde_json::from_str(&doc).unwrap(),
        r.max_session_duration().unwrap_or_default(),
        tags,
    )
}

/// When the execution's `grant: expiry` state was entered.
async fn grant_entered(c: &AwsClients, arn: &str) -> time::OffsetDateTime {
    let events = history(c, arn).await;
    let i = events
        .iter()
        .position(|e| {
            e.state_entered_event_details()
                .is_some_and(|d| d.name() == "grant: expiry")
        })
        .expect("grant: expiry entered");
    let t = events[i].timestamp();
    time::OffsetDateTime::from_unix_timestamp_nanos(t.as_nanos()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compiled_grant_creates_a_time_bounded_role_reuses_it_and_refuses_bad_durations() {
    let c = clients().await;
    let t = target_clients().await;
    let case = unique("IR-sfn-grant");
    let role = format!("irr-responder-{case}");
    let bucket = evidence_bucket(&c).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grant.yaml");
    std::fs::write(&path, GRANT_PLAYBOOK).unwrap();
    let definition = compile(&path, dir.path(), &[]);
    let machine = create_machine(&c, &definition, &bucket).await;
    let alice = format!("arn:aws:iam::{TARGET}:user/alice");

    // Named principals, 1h30m: a new role, trusted with MFA until the grant's time + 90 min.
    let (name, arn, output) = execute(
        &c,
        &machine,
        &case,
        json!({"responders": [alice], "access_duration": "1h30m"}),
    )
    .await;
    let out = &output["steps"]["grant"];
    assert_eq!(out["status"], "succeeded", "{output:#}");
    let expires = out["outputs"]["expires_at"].as_str().unwrap().to_owned();
    assert_eq!(out["outputs"]["role_name"], role);
    let lead = rfc3339(&expires) - grant_entered(&c, &arn).await;
    assert!(
        (5399..=5401).contains(&lead.whole_seconds()),
        "expires {expires}: {lead} after the grant"
    );
    let (trust, max_session, tags) = trust_of(&t.iam, &role).await;
    let st = &trust["Statement"][0];
    assert_eq!(st["Principal"]["AWS"], json!([alice]), "{trust:#}");
    assert_eq!(st["Action"], "sts:AssumeRole");
    assert_eq!(
        st["Condition"]["Bool"]["aws:MultiFactorAuthPresent"],
        "true"
    );
    assert_eq!(st["Condition"]["DateLessThan"]["aws:CurrentTime"], expires);
    assert_eq!(max_session, 5400);
    assert_eq!(tags.get("irr:case"), Some(&case));
    assert_eq!(tags.get("irr:run"), Some(&name));
    assert_eq!(tags.get("irr:expires-at"), Some(&expires));
    let created = t.iam.get_role().role_name(&role).send().await.unwrap();
    assert_eq!(
        out["outputs"]["role_arn"],
        created.role().unwrap().arn(),
        "{output:#}"
    );
    let policy = t
        .iam
        .get_role_policy()
        .role_name(&role)
        .policy_name("irr-responder")
        .send()
        .await
        .unwrap();
    let doc = percent_encoding::percent_decode_str(policy.policy_document())
        .decode_utf8()
        .unwrap()
        .into_owned();
    assert_eq!(
        serde_json::from_str::<Value>(&doc).unwrap(),
        irr_runner::actions::iam::default_responder_policy()
    );
    let objects = evidence_objects(&c, &bucket, &case, &name).await;
    let before = object(&objects, "grant/responder-role-before.json");
    assert_eq!(before["existing"], Value::Null, "{before:#}");
    assert_eq!(before["trust_policy"], trust);
    assert_eq!(before["max_session_duration"], 5400);
    assert_eq!(before["expires_at"], expires);

    // No principal, 20m: the same role reused, now trusting the account, for an hour's sessions.
    let (name, _, output) = execute(&c, &machine, &case, json!({"access_duration": "20m"})).await;
    assert_eq!(
        output["steps"]["grant"]["status"], "succeeded",
        "{output:#}"
    );
    let expires2 = output["steps"]["grant"]["outputs"]["expires_at"]
        .as_str()
        .unwrap()
        .to_owned();
    let (trust2, max_session2, tags2) = trust_of(&t.iam, &role).await;
    let st = &trust2["Statement"][0];
    assert_eq!(
        st["Principal"]["AWS"],
        json!([format!("arn:aws:iam::{TARGET}:root")]),
        "{trust2:#}"
    );
    assert_eq!(st["Condition"]["DateLessThan"]["aws:CurrentTime"], expires2);
    assert_eq!(max_session2, 3600);
    assert_eq!(tags2.get("irr:expires-at"), Some(&expires2));
    let objects = evidence_objects(&c, &bucket, &case, &name).await;
    let before = object(&objects, "grant/responder-role-before.json");
    assert_eq!(before["existing"]["RoleName"], role, "{before:#}");

    // 10 minutes is under the CLI's 15-minute floor: refused before anything changes.
    refused_grant(&c, &t, &machine, &case, &role, &trust2).await;
}

/// A grant of 10 minutes (under the CLI's 15-minute floor) fails `irr.InvalidParams` before
/// any IAM call, and the role keeps its trust policy `trust`.
async fn refused_grant(
    c: &AwsClients,
    t: &AwsClients,
    machine: &str,
    case: &str,
    role: &str,
    trust: &Value,
) {
    let input = json!({"case_id": case, "inputs": {"access_duration": "10m"}, "target": {"account": TARGET}});
    let arn = start(c, machine, &unique("x"), &input).await;
    let (status, _) = ended(c, &arn, Duration::from_secs(180)).await;
    assert_eq!(status, "FAILED");
    assert!(
        scheduled(c, &arn)
            .await
            .iter()
            .all(|s| !s.starts_with("iam:")),
        "an IAM call after invalid parameters"
    );
    let events = history(c, &arn).await;
    let failed = events
        .iter()
        .find_map(|e| e.execution_failed_event_details())
        .unwrap();
    let (trust3, _, _) = trust_of(&t.iam, role).await;
    assert_eq!(&trust3, trust, "the role changed after a refused grant");
    let last: Value = events
        .iter()
        .rev()
        .find_map(|e| e.state_exited_event_details().and_then(|d| d.output()))
        .map(|o| serde_json::from_str(o).unwrap())
        .unwrap();
    assert_eq!(
        last["steps"]["grant"]["error"], "irr.InvalidParams",
        "{last:#} {failed:?}"
    );
    assert!(
        last["steps"]["grant"]["cause"]
            .as_str()
            .unwrap_or_default()
            .contains("between 15m and 7d"),
        "{last:#}"
    );
}
