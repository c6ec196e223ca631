//! Closing an exposed bucket against the emulator: record its configuration, then block
//! public access; assert what S3 holds afterwards.

use irr_runner::actions;
use irr_tests::{action_ctx, sdk_config, unique, MemoryRecorder};
use serde_json::json;

fn s3_client(conf: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(conf)
            .force_path_style(true)
            .build(),
    )
}

#[tokio::test]
async fn exposed_bucket_is_recorded_and_closed() {
    let conf = sdk_config().await;
    let s3 = s3_client(&conf);
    let bucket = unique("exposed").to_lowercase();
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let policy = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*",
        "Action": "s3:GetObject", "Resource": format!("arn:aws:s3:::{bucket}/*")}]});
    s3.put_bucket_policy()
        .bucket(&bucket)
        .policy(policy.to_string())
        .send()
        .await
        .unwrap();
    let case = unique("case");
    let rec = MemoryRecorder::new();

    let out = actions::dispatch(
        "s3.capture_bucket_config",
        &action_ctx(&conf, &case, "capture", false, rec.clone()),
        json!({"bucket": bucket}),
    )
    .await
    .unwrap();
    assert_eq!(out.outputs["artifacts"].as_array().unwrap().len(), 6);
    let p = rec.artifact_json("bucket-policy.json").unwrap();
    assert_eq!(p["present"], true);
    assert_eq!(p["policy"]["Statement"][0]["Principal"], "*");
    // Never-set configurations are recorded as absent, not errors.
    assert_eq!(
        rec.artifact_json("public-access-block.json").unwrap()["present"],
        false
    );
    assert_eq!(
        rec.artifact_json("bucket-encryption.json").unwrap()["present"],
        false
    );
    assert_eq!(
        rec.artifact_json("bucket-versioning.json").unwrap()["present"],
        false
    );
    assert_eq!(
        rec.artifact_json("bucket-acl.json").unwrap()["present"],
        true
    );
    assert!(rec.calls().is_empty());

    // Dry run: nothing changes.
    let dry = actions::dispatch(
        "s3.block_public_access",
        &action_ctx(&conf, &case, "block", true, rec.clone()),
        json!({"bucket": bucket}),
    )
    .await
    .unwrap();
    assert!(dry.outputs["would"]
        .to_string()
        .contains("PutPublicAccessBlock"));
    assert!(
        s3.get_public_access_block()
            .bucket(&bucket)
            .send()
            .await
            .is_err(),
        "still absent"
    );
    assert!(rec.calls().is_empty());

    let out = actions::dispatch(
        "s3.block_public_access",
        &action_ctx(&conf, &case, "block", false, rec.clone()),
        json!({"bucket": bucket}),
    )
    .await
    .unwrap();
    assert_eq!(
        out.outputs["previous"],
        json!({"configured": false, "block_public_acls": false, "ignore_public_acls": false,
               "block_public_policy": false, "restrict_public_buckets": false})
    );
    let pab = s3
        .get_public_access_block()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let c = pab.public_access_block_configuration().unwrap();
    assert_eq!(
        (
            c.block_public_acls(),
            c.ignore_public_acls(),
            c.block_public_policy(),
            c.restrict_public_buckets()
        ),
        (Some(true), Some(true), Some(true), Some(true))
    );
    assert_eq!(rec.calls_of("PutPublicAccessBlock").len(), 1);

    // Again: already blocked, no call; `previous` shows all on.
    let again = actions::dispatch(
        "s3.block_public_access",
        &action_ctx(&conf, &case, "block-again", false, rec.clone()),
        json!({"bucket": bucket}),
    )
    .await
    .unwrap();
    assert_eq!(again.outputs["changed"], false);
    assert_eq!(again.outputs["previous"]["block_public_policy"], true);
    assert_eq!(rec.calls_of("PutPublicAccessBlock").len(), 1);
    rec.assert_calls_ok();
}

#[tokio::test]
async fn missing_bucket_is_a_target_error() {
    let conf = sdk_config().await;
    let rec = MemoryRecorder::new();
    let ctx = action_ctx(&conf, "case-s3", "capture", false, rec.clone());
    let e = actions::dispatch(
        "s3.capture_bucket_config",
        &ctx,
        json!({"bucket": unique("nope").to_lowercase()}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), "target", "{e}");
    let e = actions::dispatch(
        "s3.block_public_access",
        &ctx,
        json!({"bucket": unique("nope").to_lowercase()}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), "target", "{e}");
    let e = actions::dispatch(
        "s3.block_public_access",
        &ctx,
        json!({"bucket": "b", "extra": 1}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), "params", "{e}");
}
