//! The discovery actions against moto (issue 14, part 2): `ec2.find_instances` finds the
//! instances a finding points at and a `for_each` contains exactly those, `iam.find_access_key`
//! finds the user of a key (in this account, or says which other account holds it),
//! `s3.find_buckets` finds buckets by pattern, tag and exposure, and a malformed criterion is
//! refused before anything runs. The resulting AWS state and the recorded evidence are
//! asserted, not only the exit codes.

use std::collections::BTreeMap;
use std::path::Path;

use aws_sdk_ec2::types::{Filter, InstanceNetworkInterfaceSpecification, Tag};
use irr_runner::actions::{self, ActionCtx};
use irr_tests::{
    action_ctx, endpoint, fixture, irr_with, json_lines, output_text, sdk_config, unique,
    MemoryRecorder,
};
use serde_json::{json, Value};

/// A VPC of the test's own (10.213.0.0/16: no other suite uses it), two groups, and instances
/// with known addresses, groups and tags.
struct Seeded {
    vpc_id: String,
    web: String,
    db: String,
    /// Name -> instance id.
    ids: BTreeMap<&'static str, String>,
    /// The value of the `incident` tag of this test's incident.
    incident: String,
}

impl Seeded {
    fn id(&self, name: &str) -> String {
        self.ids[name].clone()
    }
}

async fn group(ec2: &aws_sdk_ec2::Client, vpc: &str, name: &str) -> String {
    ec2.create_security_group()
        .group_name(unique(name))
        .description(name)
        .vpc_id(vpc)
        .send()
        .await
        .unwrap()
        .group_id
        .unwrap()
}

/// Six instances in one subnet: `a` (.10, web), `b` (.11, web, the incident's tag), `c` (.12,
/// db, the incident's tag), `d` (.13, db, another incident's tag), `e` (.14, web, no tag) and
/// `f` (.15, the incident's tag, terminated).
async fn seed(ec2: &aws_sdk_ec2::Client) -> Seeded {
    let vpc_id = ec2
        .create_vpc()
        .cidr_block("10.213.0.0/16")
        .send()
        .await
        .unwrap()
        .vpc
        .unwrap()
        .vpc_id
        .unwrap();
    let subnet = ec2
        .create_subnet()
        .vpc_id(&vpc_id)
        .cidr_block("10.213.1.0/24")
        .send()
        .await
        .unwrap()
        .subnet
        .unwrap()
        .subnet_id
        .unwrap();
    let (web, db) = (
        group(ec2, &vpc_id, "web").await,
        group(ec2, &vpc_id, "db").await,
    );
    let incident = unique("incident");
    let other = unique("other-incident");
    let plan: [(&str, u8, &str, Option<&str>); 6] = [
        ("a", 10, &web, None),
        ("b", 11, &web, Some(&incident)),
        ("c", 12, &db, Some(&incident)),
        ("d", 13, &db, Some(&other)),
        ("e", 14, &web, None),
        ("f", 15, &web, Some(&incident)),
    ];
    let mut ids = BTreeMap::new();
    for (name, host, group, tag) in plan {
        // Groups on the interface (not SecurityGroupIds): moto then keeps them per interface,
        // as AWS does (docs/emulator-notes.md).
        let run = ec2
            .run_instances()
            .image_id("ami-12c6146b")
            .min_count(1)
            .max_count(1)
            .network_interfaces(
                InstanceNetworkInterfaceSpecification::builder()
                    .device_index(0)
                    .subnet_id(&subnet)
                    .private_ip_address(format!("10.213.1.{host}"))
                    .groups(group)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let id = run.instances()[0].instance_id().unwrap().to_owned();
        if let Some(v) = tag {
            ec2.create_tags()
                .resources(&id)
                .tags(Tag::builder().key("incident").value(v).build())
                .send()
                .await
                .unwrap();
        }
        ids.insert(name, id);
    }
    ec2.terminate_instances()
        .instance_ids(&ids["f"])
        .send()
        .await
        .unwrap();
    Seeded {
        vpc_id,
        web,
        db,
        ids,
        incident,
    }
}

/// Each interface's groups, by interface.
async fn interface_groups(ec2: &aws_sdk_ec2::Client, id: &str) -> Vec<Vec<String>> {
    let out = ec2
        .describe_network_interfaces()
        .filters(
            Filter::builder()
                .name("attachment.instance-id")
                .values(id)
                .build(),
        )
        .send()
        .await
        .unwrap();
    out.network_interfaces()
        .iter()
        .map(|n| {
            n.groups()
                .iter()
                .filter_map(|g| g.group_id().map(str::to_owned))
                .collect()
        })
        .collect()
}

/// The case's isolation group in the VPC.
async fn isolation_group(ec2: &aws_sdk_ec2::Client, vpc: &str, case: &str) -> String {
    let out = ec2
        .describe_security_groups()
        .filters(Filter::builder().name("vpc-id").values(vpc).build())
        .filters(Filter::builder().name("tag:irr:case").values(case).build())
        .filters(
            Filter::builder()
                .name("tag:irr:purpose")
                .values("isolation")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(out.security_groups().len(), 1, "{out:?}");
    out.security_groups()[0].group_id().unwrap().to_owned()
}

fn summary(out: &std::process::Output) -> Value {
    json_lines(out)
        .pop()
        .unwrap_or_else(|| panic!("no summary: {}", output_text(out)))
}

fn step<'a>(sum: &'a Value, id: &str) -> &'a Value {
    sum["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step {id}: {sum:#}"))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{path:?}: {e}")))
        .unwrap()
}

fn run_discover_contain(
    seeded: &Seeded,
    ip: &str,
    dir: &Path,
    extra: &[&str],
) -> (String, std::process::Output) {
    let case = unique("IR-discover");
    let pb = fixture("discover-contain.yaml");
    let inputs = [
        format!("private_ip={ip}"),
        format!("vpc_id={}", seeded.vpc_id),
        format!("incident_tag={}", seeded.incident),
    ];
    let evidence = dir.join("evidence");
    let mut args = vec!["run", pb.to_str().unwrap(), "--case", &case, "--yes"];
    for i in &inputs {
        args.extend(["--input", i.as_str()]);
    }
    args.extend(["--evidence", evidence.to_str().unwrap(), "--output", "json"]);
    args.extend(extra);
    let out = irr_with(
        &args,
        &dir.join("state"),
        &endpoint(),
        ("testing", "testing"),
        &[],
    );
    (case, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn found_by_ip_and_by_tag_then_exactly_those_are_isolated() {
    let conf = sdk_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let seeded = seed(&ec2).await;
    let dir = tempfile::tempdir().unwrap();
    let (case, out) = tokio::task::block_in_place(|| {
        run_discover_contain(&seeded, "10.213.1.10", dir.path(), &[])
    });
    let sum = summary(&out);
    assert_eq!(sum["status"], "succeeded", "{}", output_text(&out));

    // What was found: `a` by its address in the VPC; `b` and `c` by the tag, not the
    // terminated `f` nor `d` of another incident.
    let mut by_tag = vec![seeded.id("b"), seeded.id("c")];
    by_tag.sort();
    assert_eq!(
        step(&sum, "by_ip")["outputs"]["instance_ids"],
        json!([seeded.id("a")])
    );
    assert_eq!(
        step(&sum, "by_tag")["outputs"]["instance_ids"],
        json!(by_tag)
    );

    // The found instances are isolated, every other one is untouched.
    let iso = isolation_group(&ec2, &seeded.vpc_id, &case).await;
    for name in ["a", "b", "c"] {
        let groups = interface_groups(&ec2, &seeded.id(name)).await;
        assert_eq!(groups, vec![vec![iso.clone()]], "{name} is isolated");
    }
    for (name, original) in [("d", &seeded.db), ("e", &seeded.web)] {
        let groups = interface_groups(&ec2, &seeded.id(name)).await;
        assert_eq!(groups, vec![vec![original.clone()]], "{name} is untouched");
    }
    // A for_each step's outputs are a list in item order.
    let items = step(&sum, "isolate_by_tag")["outputs"].clone();
    assert_eq!(
        items["isolation_group_id"].as_array().map(Vec::len),
        Some(2),
        "one item per instance found: {items:#}"
    );

    // The discovery is evidence: sealed, and saying what was asked and found.
    let loc = Path::new(sum["evidence"]["location"].as_str().unwrap()).to_owned();
    let manifest = read_json(&loc.join("manifest.json"));
    let sealed: Vec<&str> = manifest["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["path"].as_str())
        .collect();
    for p in [
        "artifacts/by_ip/find-instances.json",
        "artifacts/by_tag/find-instances.json",
    ] {
        assert!(sealed.contains(&p), "{p} not sealed: {sealed:?}");
    }
    let by_ip = read_json(&loc.join("artifacts/by_ip/find-instances.json"));
    assert_eq!(by_ip["instance_ids"], json!([seeded.id("a")]), "{by_ip:#}");
    assert_eq!(by_ip["complete"], true);
    let filters = by_ip["queries"][0].as_array().unwrap();
    assert!(
        filters.contains(&json!({"name": "private-ip-address", "values": ["10.213.1.10"]}))
            && filters.contains(&json!({"name": "vpc-id", "values": [seeded.vpc_id]})),
        "{by_ip:#}"
    );
    let recorded = by_ip["instances"][0].clone();
    assert_eq!(
        recorded["private_ip_address"], "10.213.1.10",
        "{recorded:#}"
    );
    let by_tag_rec = read_json(&loc.join("artifacts/by_tag/find-instances.json"));
    let listed: Vec<&str> = by_tag_rec["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["instance_id"].as_str())
        .collect();
    assert!(
        !listed.contains(&seeded.id("f").as_str()),
        "a terminated instance is not even asked for: {by_tag_rec:#}"
    );
    let verify = irr_with(
        &["evidence", "verify", loc.to_str().unwrap()],
        &dir.path().join("state"),
        &endpoint(),
        ("testing", "testing"),
        &[],
    );
    assert_eq!(verify.status.code(), Some(0), "{}", output_text(&verify));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_templated_address_that_is_not_one_fails_the_step_and_changes_nothing() {
    let conf = sdk_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let seeded = seed(&ec2).await;
    let dir = tempfile::tempdir().unwrap();
    let (_, out) =
        tokio::task::block_in_place(|| run_discover_contain(&seeded, "10.213.1", dir.path(), &[]));
    let sum = summary(&out);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let by_ip = step(&sum, "by_ip");
    assert_eq!(by_ip["status"], "failed", "{sum:#}");
    assert!(
        by_ip["error"]
            .as_str()
            .is_some_and(|e| e.contains("\"10.213.1\" is not an IP address")),
        "{by_ip:#}"
    );
    for name in ["a", "b", "c", "d", "e"] {
        let groups = interface_groups(&ec2, &seeded.id(name)).await;
        assert_eq!(groups.len(), 1, "{name}");
        assert!(
            groups[0] == [seeded.web.clone()] || groups[0] == [seeded.db.clone()],
            "{name} is untouched: {groups:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_finds_the_same_instances_and_changes_nothing() {
    let conf = sdk_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let seeded = seed(&ec2).await;
    let dir = tempfile::tempdir().unwrap();
    let (_, out) = tokio::task::block_in_place(|| {
        run_discover_contain(&seeded, "10.213.1.10", dir.path(), &["--dry-run"])
    });
    let sum = summary(&out);
    assert_eq!(sum["status"], "succeeded", "{}", output_text(&out));
    // The reads are made in a dry run: the for_each steps get their items.
    assert_eq!(
        step(&sum, "by_ip")["outputs"]["instance_ids"],
        json!([seeded.id("a")])
    );
    let isolated = step(&sum, "isolate_by_tag")["outputs"]["original_groups"].clone();
    assert_eq!(isolated.as_array().map(Vec::len), Some(2), "{isolated:#}");
    for (name, original) in [
        ("a", &seeded.web),
        ("b", &seeded.web),
        ("c", &seeded.db),
        ("d", &seeded.db),
    ] {
        let groups = interface_groups(&ec2, &seeded.id(name)).await;
        assert_eq!(groups, vec![vec![original.clone()]], "{name} is untouched");
    }
}

fn ctx(conf: &aws_config::SdkConfig, rec: &std::sync::Arc<MemoryRecorder>) -> ActionCtx {
    action_ctx(conf, &unique("IR-find"), "find", false, rec.clone())
}

async fn find(ctx: &ActionCtx, action: &str, with: Value) -> Result<Value, String> {
    actions::dispatch(action, ctx, with)
        .await
        .map(|o| Value::Object(o.outputs))
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn criteria_combine_and_the_answer_is_recorded() {
    let conf = sdk_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let seeded = seed(&ec2).await;
    let rec = MemoryRecorder::new();
    let ctx = ctx(&conf, &rec);
    // Tag and group together: of the incident's `b` (web) and `c` (db), only `c`.
    let got = find(
        &ctx,
        "ec2.find_instances",
        json!({"tags": {"incident": seeded.incident}, "security_group_ids": [seeded.db]}),
    )
    .await
    .unwrap();
    assert_eq!(got["instance_ids"], json!([seeded.id("c")]));
    // Ids, one unknown (not an error), and a group.
    let got = find(
        &ctx,
        "ec2.find_instances",
        json!({"instance_ids": [seeded.id("a"), seeded.id("d"), "i-0000000000000dead"], "security_group_ids": [seeded.web]}),
    )
    .await
    .unwrap();
    assert_eq!(got["instance_ids"], json!([seeded.id("a")]));
    // A tag value with a wildcard.
    let prefix = &seeded.incident[..seeded.incident.len() - 3];
    let got = find(
        &ctx,
        "ec2.find_instances",
        json!({"tags": {"incident": format!("{prefix}*")}, "vpc_id": seeded.vpc_id}),
    )
    .await
    .unwrap();
    let mut want = vec![seeded.id("b"), seeded.id("c")];
    want.sort();
    assert_eq!(got["instance_ids"], json!(want));
    // Launched after now: nothing (moto's launch times are the real clock's).
    let later = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let later = later
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let got = find(
        &ctx,
        "ec2.find_instances",
        json!({"vpc_id": seeded.vpc_id, "launched_after": later}),
    )
    .await
    .unwrap();
    assert_eq!(got["instance_ids"], json!([]));
    let record = rec.artifact_json("find-instances.json").unwrap();
    assert_eq!(record["instance_ids"], json!([]), "{record:#}");
    let left: Vec<&str> = record["left_out"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["does_not_match"].as_str())
        .collect();
    assert_eq!(
        left.len(),
        5,
        "EC2 answered with the VPC's five live instances, all launched too early: {record:#}"
    );
    assert!(
        left.iter().all(|w| w.contains("launched before")),
        "{left:?}"
    );
    // More than max_instances: nothing listed, the step fails, the answer is still recorded.
    let err = find(
        &ctx,
        "ec2.find_instances",
        json!({"vpc_id": seeded.vpc_id, "max_instances": 2}),
    )
    .await
    .unwrap_err();
    assert!(err.contains("more than 2 instances matched"), "{err}");
    let record = rec.artifact_json("find-instances.json").unwrap();
    assert_eq!(record["complete"], false, "{record:#}");
    assert!(rec.calls().is_empty(), "a discovery makes no mutating call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_of_an_access_key_is_found() {
    let conf = sdk_config().await;
    let iam = aws_sdk_iam::Client::new(&conf);
    let user = unique("leaky");
    iam.create_user().user_name(&user).send().await.unwrap();
    // A few users with keys first, so the search has more than one to look through.
    for _ in 0..3 {
        let other = unique("bystander");
        iam.create_user().user_name(&other).send().await.unwrap();
        iam.create_access_key()
            .user_name(&other)
            .send()
            .await
            .unwrap();
    }
    let key = iam
        .create_access_key()
        .user_name(&user)
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap();
    let rec = MemoryRecorder::new();
    let ctx = ctx(&conf, &rec);
    let got = find(
        &ctx,
        "iam.find_access_key",
        json!({"access_key_id": key.access_key_id()}),
    )
    .await
    .unwrap();
    assert_eq!(got["user_name"], user.as_str(), "{got:#}");
    assert_eq!(
        got["user_arn"],
        format!("arn:aws:iam::123456789012:user/{user}")
    );
    assert_eq!(got["account_id"], "123456789012");
    assert_eq!(got["in_this_account"], true);
    assert_eq!(got["status"], "Active");
    assert!(
        got["create_date"].as_str().is_some_and(|d| d.len() >= 20),
        "{got:#}"
    );
    let record = rec.artifact_json("find-access-key.json").unwrap();
    assert_eq!(record["found"], true, "{record:#}");
    assert_eq!(record["user"]["user_name"], user.as_str());
    assert_eq!(record["key"]["access_key_id"], key.access_key_id());
    // moto answers GetAccessKeyInfo with the key's account (docs/emulator-notes.md).
    assert_eq!(record["key_account"], "123456789012");

    // A key nobody holds: the step fails, saying what was searched.
    let err = find(
        &ctx,
        "iam.find_access_key",
        json!({"access_key_id": "AKIAZZZZZZZZZZZZZZZZ"}),
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("AKIAZZZZZZZZZZZZZZZZ belongs to no user of account 123456789012"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_another_account_names_that_account() {
    let conf = sdk_config().await;
    // moto keeps each account's IAM apart; a role assumed in another account id acts there.
    let sts = aws_sdk_sts::Client::new(&conf);
    let creds = sts
        .assume_role()
        .role_arn("arn:aws:iam::222233334444:role/irr-responder")
        .role_session_name("discovery-test")
        .send()
        .await
        .unwrap()
        .credentials
        .unwrap();
    let there = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sts::config::Credentials::new(
            creds.access_key_id(),
            creds.secret_access_key(),
            Some(creds.session_token().to_owned()),
            None,
            "other-account",
        ))
        .load()
        .await;
    let iam_there = aws_sdk_iam::Client::new(&there);
    let user = unique("elsewhere");
    iam_there
        .create_user()
        .user_name(&user)
        .send()
        .await
        .unwrap();
    let key = iam_there
        .create_access_key()
        .user_name(&user)
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap();
    let rec = MemoryRecorder::new();
    let ctx = ctx(&conf, &rec);
    let got = find(
        &ctx,
        "iam.find_access_key",
        json!({"access_key_id": key.access_key_id()}),
    )
    .await
    .unwrap();
    assert_eq!(got["account_id"], "222233334444", "{got:#}");
    assert_eq!(got["in_this_account"], false);
    assert!(got["user_name"].is_null(), "{got:#}");
    let gaps = rec.gaps();
    assert!(
        gaps.iter()
            .any(|g| g.error.contains("belongs to account 222233334444")),
        "{gaps:?}"
    );
    let record = rec.artifact_json("find-access-key.json").unwrap();
    assert_eq!(record["in_this_account"], false, "{record:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_are_found_by_pattern_tag_and_exposure() {
    let conf = sdk_config().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    );
    let base = unique("disc");
    let name = |s: &str| format!("{base}-{s}");
    for b in ["logs-a", "logs-b", "open", "quiet"] {
        s3.create_bucket().bucket(name(b)).send().await.unwrap();
    }
    let tag = |k: &str, v: &str| {
        aws_sdk_s3::types::Tag::builder()
            .key(k)
            .value(v)
            .build()
            .unwrap()
    };
    for (b, team) in [("logs-a", "sec"), ("logs-b", "web"), ("open", "sec")] {
        s3.put_bucket_tagging()
            .bucket(name(b))
            .tagging(
                aws_sdk_s3::types::Tagging::builder()
                    .tag_set(tag("team", team))
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    }
    // Fully blocked: logs-a and quiet. logs-b has no block at all; open has a public policy.
    for b in ["logs-a", "quiet"] {
        s3.put_public_access_block()
            .bucket(name(b))
            .public_access_block_configuration(
                aws_sdk_s3::types::PublicAccessBlockConfiguration::builder()
                    .block_public_acls(true)
                    .ignore_public_acls(true)
                    .block_public_policy(true)
                    .restrict_public_buckets(true)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    let policy = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": format!("arn:aws:s3:::{}/*", name("open"))}]});
    s3.put_bucket_policy()
        .bucket(name("open"))
        .policy(policy.to_string())
        .send()
        .await
        .unwrap();

    let rec = MemoryRecorder::new();
    let ctx = ctx(&conf, &rec);
    let buckets = |v: &[&str]| json!(v.iter().map(|b| name(b)).collect::<Vec<_>>());
    let all = format!("{base}-*");
    for (with, want) in [
        (
            json!({"name_pattern": format!("{base}-logs-*")}),
            buckets(&["logs-a", "logs-b"]),
        ),
        (
            json!({"name_pattern": format!("{base}-logs-?")}),
            buckets(&["logs-a", "logs-b"]),
        ),
        (
            json!({"name_pattern": all, "tags": {"team": "sec"}}),
            buckets(&["logs-a", "open"]),
        ),
        (
            json!({"name_pattern": all, "public": true}),
            buckets(&["logs-b", "open"]),
        ),
        (
            json!({"name_pattern": all, "public": false}),
            buckets(&["logs-a", "quiet"]),
        ),
        (
            json!({"name_pattern": all, "tags": {"team": "s*"}, "public": true}),
            buckets(&["open"]),
        ),
    ] {
        let got = find(&ctx, "s3.find_buckets", with.clone()).await.unwrap();
        assert_eq!(got["buckets"], want, "{with}");
    }
    // The last search's record: every candidate, what was learnt of it, why it was left out.
    let record = rec.artifact_json("find-buckets.json").unwrap();
    let entry = |b: &str| {
        record["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["bucket"] == name(b))
            .cloned()
            .unwrap_or_else(|| panic!("{b} not recorded: {record:#}"))
    };
    let open = entry("open");
    assert_eq!(open["matched"], true);
    assert_eq!(open["exposure"]["policy_is_public"], true, "{open:#}");
    assert_eq!(entry("logs-b")["does_not_match"], "tags");
    assert_eq!(entry("logs-a")["does_not_match"], "not public");
    assert_eq!(
        entry("logs-a")["exposure"]["public_access_block_fully_on"],
        true
    );
    assert_eq!(record["matched"], buckets(&["open"]));
    assert!(rec.gaps().is_empty(), "{:?}", rec.gaps());
    assert!(rec.calls().is_empty(), "a discovery makes no mutating call");
}

#[test]
fn a_malformed_address_is_refused_by_validate_at_its_position() {
    let state = tempfile::tempdir().unwrap();
    let pb = fixture("discover-bad-ip.yaml");
    let out = irr_with(
        &["validate", pb.to_str().unwrap()],
        state.path(),
        &endpoint(),
        ("testing", "testing"),
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("discover-bad-ip.yaml:13:34")
            && text.contains("item 2 of parameter \"private_ips\" of ec2.find_instances: \"10.0.1\" is not an IP address"),
        "{text}"
    );
}

// ---- least privilege: the discovery actions need exactly what `irr policy` grants ---------

/// `doc` as moto can evaluate it (every `Resource` widened to `*`: moto matches non-S3
/// actions against `*` only, see tests/tests/least_privilege.rs), less `without`.
fn for_moto(doc: &Value, without: Option<&str>) -> Value {
    let statements: Vec<Value> = doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| {
            let acts: Vec<Value> = s["Action"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a.as_str() != without)
                .cloned()
                .collect();
            (!acts.is_empty()).then(|| json!({"Effect": "Allow", "Action": acts, "Resource": "*"}))
        })
        .collect();
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// As the admin of an IAM-enforcing moto: a user with a key (the leak) and an instance
/// tagged with a new incident. Returns (user, key id, incident tag, instance id).
async fn seed_leak(conf: &aws_config::SdkConfig) -> (String, String, String, String) {
    let iam = aws_sdk_iam::Client::new(conf);
    let ec2 = aws_sdk_ec2::Client::new(conf);
    let leaky = unique("leaky");
    iam.create_user().user_name(&leaky).send().await.unwrap();
    let key = iam
        .create_access_key()
        .user_name(&leaky)
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap();
    let incident = unique("incident");
    let run = ec2
        .run_instances()
        .image_id("ami-12c6146b")
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .unwrap();
    let id = run.instances()[0].instance_id().unwrap().to_owned();
    ec2.create_tags()
        .resources(&id)
        .tags(Tag::builder().key("incident").value(&incident).build())
        .send()
        .await
        .unwrap();
    (leaky, key.access_key_id, incident, id)
}

/// A run with `action` removed from the policy: it fails naming the action, or (where the
/// action is optional or unchecked by moto) succeeds as the table says.
fn judge_removed(action: &str, out: &std::process::Output, leaky: &str) {
    let sum = summary(out);
    match action {
        // moto always allows who-am-I.
        "sts:GetCallerIdentity" => {
            assert_eq!(sum["status"], "succeeded", "{}", output_text(out))
        }
        // An optional read: a gap, then the users are searched.
        "sts:GetAccessKeyInfo" => {
            assert_eq!(sum["status"], "succeeded", "{}", output_text(out));
            assert_eq!(step(&sum, "owner")["outputs"]["user_name"], leaky);
            let gaps = sum["gaps"].as_array().cloned().unwrap_or_default();
            assert!(
                gaps.iter()
                    .any(|g| g["what"] == "sts:GetAccessKeyInfo" && g["step"] == "owner"),
                "the denial is a gap of the run: {sum:#}"
            );
        }
        _ => {
            assert_eq!(out.status.code(), Some(1), "{action}: {}", output_text(out));
            let text = output_text(out);
            let op = action.split(':').nth(1).unwrap();
            assert!(text.contains(op), "{action} is named: {text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_needs_exactly_the_generated_policy() {
    let (emu, admin_conf, admin) = irr_tests::iam_enforcing_emulator_with_admin().await;
    let iam = aws_sdk_iam::Client::new(&admin_conf);
    let (leaky, key_id, incident, id) = seed_leak(&admin_conf).await;
    let pb = fixture("discover-key.yaml");
    let inputs = [
        format!("access_key_id={key_id}"),
        format!("incident_tag={incident}"),
    ];
    let with_inputs = |mut args: Vec<String>| {
        for i in &inputs {
            args.extend(["--input".to_owned(), i.clone()]);
        }
        args
    };
    let dir = tempfile::tempdir().unwrap();
    let irr = |args: &[String], key: &(String, String)| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        irr_with(
            &args,
            &dir.path().join("state"),
            &emu.endpoint(),
            (&key.0, &key.1),
            &[],
        )
    };
    let policy_args = with_inputs(vec![
        "policy".into(),
        pb.to_str().unwrap().into(),
        "--case".into(),
        "IR-policy".into(),
        "--account-id".into(),
        "123456789012".into(),
        "--region".into(),
        "us-east-1".into(),
    ]);
    let out = irr(&policy_args, &admin);
    assert!(out.status.success(), "{}", output_text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut granted: Vec<String> = doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["Action"].as_array().unwrap().clone())
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    granted.sort();
    assert_eq!(
        granted,
        [
            "ec2:DescribeInstances",
            "iam:ListAccessKeys",
            "iam:ListUsers",
            "sts:GetAccessKeyInfo",
            "sts:GetCallerIdentity"
        ]
    );
    let run_as = |without: Option<&str>| {
        let doc = for_moto(&doc, without);
        let dir = &dir;
        let iam = &iam;
        let irr = &irr;
        let with_inputs = &with_inputs;
        let pb = &pb;
        async move {
            let user = irr_tests::iam_user_with(iam, &doc).await;
            let evidence = dir.path().join(unique("evidence"));
            let args = with_inputs(vec![
                "run".into(),
                pb.to_str().unwrap().into(),
                "--case".into(),
                unique("IR-lp"),
                "--yes".into(),
                "--evidence".into(),
                evidence.to_str().unwrap().into(),
                "--output".into(),
                "json".into(),
            ]);
            tokio::task::block_in_place(|| irr(&args, &user))
        }
    };
    let out = run_as(None).await;
    let sum = summary(&out);
    assert_eq!(sum["status"], "succeeded", "{}", output_text(&out));
    assert_eq!(step(&sum, "owner")["outputs"]["user_name"], leaky.as_str());
    assert_eq!(step(&sum, "find")["outputs"]["instance_ids"], json!([id]));
    assert!(
        sum.get("gaps").is_none(),
        "no gap with the whole policy: {sum:#}"
    );

    // Each action taken away: the run fails naming it, or says why not.
    for action in &granted {
        let out = run_as(Some(action)).await;
        judge_removed(action, &out, &leaky);
    }
}
