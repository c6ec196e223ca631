//! The scenario's assertions, checked on the AWS state and the evidence after the run.

use super::*;

/// Why LocalStack's clean room has no restored volume (named in the scorecard).
pub const LOCALSTACK_NO_CFN_VOLUMES: &str = "LocalStack's CloudFormation does not create AWS::EC2::Volume or AWS::EC2::VolumeAttachment (it reports them CREATE_COMPLETE with physical id \"unknown\"), so no volume is restored from the snapshots (the run records each as a gap), and it launches the workstation in the default VPC whatever its SubnetId says: the clean room cannot be built there";

/// A check that cannot be made because of what the emulator cannot do: the seed had to
/// leave a profile out, or LocalStack's CloudFormation did not create the clean room's
/// volumes (the stack step's `not_created` output; on any other target that is a failed
/// check, not a skipped one).
pub(super) fn skip_reason(
    exp: &Expectation,
    skipped_profiles: &[String],
    run: &run::RunResult,
    kind: Option<emulator::EmulatorKind>,
) -> Option<String> {
    match exp {
        Expectation::ProfileDetached { instance } if skipped_profiles.contains(instance) => {
            Some(LOCALSTACK_NO_PROFILE.to_owned())
        }
        Expectation::CleanRoom { stack_step, .. }
            if kind == Some(emulator::EmulatorKind::Localstack) =>
        {
            let stack = run.steps.iter().find(|s| &s.id == stack_step)?;
            let volumes_missing = stack.outputs["not_created"].as_array().is_some_and(|r| {
                r.iter().any(|r| {
                    r["resource_type"] == "AWS::EC2::Volume"
                        || r["resource_type"] == "AWS::EC2::VolumeAttachment"
                })
            });
            volumes_missing.then(|| LOCALSTACK_NO_CFN_VOLUMES.to_owned())
        }
        _ => None,
    }
}

pub(super) async fn check(
    aws: &AwsClients,
    exp: &Expectation,
    case: &str,
    run: &run::RunResult,
    state_dir: &Path,
    evidence_owner: &str,
) -> (bool, String) {
    let ec2 = &aws.ec2;
    let _ = state_dir;
    match exp {
        Expectation::Isolated { instance } => isolated(ec2, instance, case).await,
        Expectation::TerminationProtected { instance } => match ec2
            .describe_instance_attribute()
            .instance_id(instance)
            .attribute(aws_sdk_ec2::types::InstanceAttributeName::DisableApiTermination)
            .send()
            .await
        {
            Ok(a) => {
                let on = a.disable_api_termination().and_then(|b| b.value()) == Some(true);
                (on, format!("DisableApiTermination = {on}"))
            }
            Err(e) => fail(&aws_line("ec2", "DescribeInstanceAttribute", &e)),
        },
        Expectation::ProfileDetached { instance } => match ec2
            .describe_iam_instance_profile_associations()
            .filters(
                Filter::builder()
                    .name("instance-id")
                    .values(instance)
                    .build(),
            )
            .send()
            .await
        {
            Ok(a) => {
                let n = a
                    .iam_instance_profile_associations()
                    .iter()
                    .filter(|x| x.state().map(|s| s.as_str()) == Some("associated"))
                    .count();
                (n == 0, format!("{n} active association(s)"))
            }
            Err(e) => fail(&aws_line(
                "ec2",
                "DescribeIamInstanceProfileAssociations",
                &e,
            )),
        },
        Expectation::Snapshots {
            instance,
            per_volume,
        } => snapshots(ec2, instance, per_volume, case).await,
        Expectation::AccessKey { user, key, status } => access_key(aws, user, key, status).await,
        Expectation::SessionsRevoked { user } => sessions_revoked(aws, user).await,
        Expectation::PublicAccessBlocked { bucket } => {
            match aws.s3.get_public_access_block().bucket(bucket).send().await {
                Ok(p) => {
                    let c = p.public_access_block_configuration();
                    let all = c.is_some_and(|c| {
                        c.block_public_acls() == Some(true)
                            && c.ignore_public_acls() == Some(true)
                            && c.block_public_policy() == Some(true)
                            && c.restrict_public_buckets() == Some(true)
                    });
                    (all, format!("all four settings on: {all}"))
                }
                Err(e) => fail(&aws_line("s3", "GetPublicAccessBlock", &e)),
            }
        }
        Expectation::ResponderRoleRemoved {} => match aws.iam.list_roles().send().await {
            Ok(r) => {
                let left: Vec<String> = r
                    .roles()
                    .iter()
                    .map(|r| r.role_name().to_owned())
                    .filter(|n| n.starts_with("irr-responder") && n.contains(case))
                    .collect();
                (
                    left.is_empty(),
                    format!("responder roles of the case left: {left:?}"),
                )
            }
            Err(e) => fail(&aws_line("iam", "ListRoles", &e)),
        },
        Expectation::Target { metric, .. } => (
            false,
            format!("target {metric} is checked from the scorecard"),
        ),
        Expectation::Step { id, status } => {
            let seen = run.steps.iter().find(|s| &s.id == id).map(|s| s.status);
            let seen_s = seen.map(StepStatus::as_str).unwrap_or("not run");
            (seen_s == status, format!("step {id}: {seen_s}"))
        }
        Expectation::CleanRoom {
            stack_step,
            snapshot_step,
        } => clean_room(ec2, run, stack_step, snapshot_step).await,
        Expectation::EvidenceVerified {} => evidence_verified(aws, run, evidence_owner).await,
    }
}

/// The instance's every interface is in the case's isolation group alone, which has no rules.
async fn isolated(ec2: &aws_sdk_ec2::Client, instance: &str, case: &str) -> (bool, String) {
    let groups = match ec2
        .describe_security_groups()
        .filters(Filter::builder().name("tag:irr:case").values(case).build())
        .send()
        .await
    {
        Ok(g) => g,
        Err(e) => return fail(&aws_line("ec2", "DescribeSecurityGroups", &e)),
    };
    let iso: Vec<_> = groups
        .security_groups()
        .iter()
        .filter(|g| {
            g.tags()
                .iter()
                .any(|t| t.key() == Some("irr:purpose") && t.value() == Some("isolation"))
        })
        .collect();
    let Some(g) = iso.first() else {
        return (false, "no isolation group tagged with the case".into());
    };
    let gid = g.group_id().unwrap_or_default();
    let rules = g.ip_permissions().len() + g.ip_permissions_egress().len();
    let enis = match ec2
        .describe_network_interfaces()
        .filters(
            Filter::builder()
                .name("attachment.instance-id")
                .values(instance)
                .build(),
        )
        .send()
        .await
    {
        Ok(e) => e,
        Err(e) => return fail(&aws_line("ec2", "DescribeNetworkInterfaces", &e)),
    };
    let wrong: Vec<String> = enis
        .network_interfaces()
        .iter()
        .filter(|e| {
            e.groups()
                .iter()
                .filter_map(|g| g.group_id())
                .collect::<Vec<_>>()
                != [gid]
        })
        .map(|e| e.network_interface_id().unwrap_or_default().to_owned())
        .collect();
    let n = enis.network_interfaces().len();
    (
        n > 0 && wrong.is_empty() && rules == 0,
        format!(
            "{n} interface(s); isolation group {gid} has {rules} rule(s); not isolated: {wrong:?}"
        ),
    )
}

/// Each of the instance's volumes has `per_volume` completed snapshots tagged with the case.
async fn snapshots(
    ec2: &aws_sdk_ec2::Client,
    instance: &str,
    per_volume: &usize,
    case: &str,
) -> (bool, String) {
    let vols = match ec2
        .describe_volumes()
        .filters(
            Filter::builder()
                .name("attachment.instance-id")
                .values(instance)
                .build(),
        )
        .send()
        .await
    {
        Ok(v) => v,
        Err(e) => return fail(&aws_line("ec2", "DescribeVolumes", &e)),
    };
    let mut counts = BTreeMap::new();
    for v in vols.volumes() {
        let vid = v.volume_id().unwrap_or_default();
        let n = match ec2
            .describe_snapshots()
            .filters(Filter::builder().name("volume-id").values(vid).build())
            .filters(Filter::builder().name("tag:irr:case").values(case).build())
            .send()
            .await
        {
            Ok(s) => s
                .snapshots()
                .iter()
                .filter(|s| s.state().map(|x| x.as_str()) == Some("completed"))
                .count(),
            Err(e) => return fail(&aws_line("ec2", "DescribeSnapshots", &e)),
        };
        counts.insert(vid.to_owned(), n);
    }
    let ok = !counts.is_empty() && counts.values().all(|n| n == per_volume);
    (
        ok,
        format!("completed case-tagged snapshots per volume: {counts:?}"),
    )
}

/// The user's access key has the status wanted.
async fn access_key(aws: &AwsClients, user: &str, key: &str, status: &str) -> (bool, String) {
    match aws.iam.list_access_keys().user_name(user).send().await {
        Ok(k) => {
            let seen = k
                .access_key_metadata()
                .iter()
                .find(|m| m.access_key_id() == Some(key))
                .and_then(|m| m.status())
                .map(|s| s.as_str().to_owned());
            (
                seen.as_deref() == Some(status),
                format!("key {key}: {}", seen.unwrap_or_else(|| "not found".into())),
            )
        }
        Err(e) => fail(&aws_line("iam", "ListAccessKeys", &e)),
    }
}

/// The user has irr's policy denying sessions issued before the revocation.
async fn sessions_revoked(aws: &AwsClients, user: &str) -> (bool, String) {
    match aws
        .iam
        .get_user_policy()
        .user_name(user)
        .policy_name("irr-revoke-sessions")
        .send()
        .await
    {
        Ok(p) => {
            let doc = crate::actions::iam::percent_decode(p.policy_document());
            let ok = doc.contains("Deny") && doc.contains("aws:TokenIssueTime");
            (
                ok,
                format!("irr-revoke-sessions present; deny on aws:TokenIssueTime: {ok}"),
            )
        }
        Err(e) => (
            false,
            format!(
                "no irr-revoke-sessions policy: {}",
                aws_line("iam", "GetUserPolicy", &e)
            ),
        ),
    }
}

/// The clean room: a VPC with no way out, the workstation inside it, one restored volume
/// attached per snapshot.
async fn clean_room(
    ec2: &aws_sdk_ec2::Client,
    run: &run::RunResult,
    stack_step: &str,
    snapshot_step: &str,
) -> (bool, String) {
    let outputs = |id: &str| {
        run.steps
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.outputs.clone())
            .unwrap_or(Value::Null)
    };
    let stack = outputs(stack_step);
    let vpc = stack["outputs"]["VpcId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let workstation = stack["outputs"]["WorkstationId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let snapshots = outputs(snapshot_step)["snapshot_ids"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    if vpc.is_empty() || workstation.is_empty() {
        return (
            false,
            format!("step {stack_step} has no VpcId/WorkstationId outputs"),
        );
    }
    let igws = match ec2
        .describe_internet_gateways()
        .filters(
            Filter::builder()
                .name("attachment.vpc-id")
                .values(&vpc)
                .build(),
        )
        .send()
        .await
    {
        Ok(o) => o.internet_gateways().len(),
        Err(e) => return fail(&aws_line("ec2", "DescribeInternetGateways", &e)),
    };
    let nats = match ec2
        .describe_nat_gateways()
        .filter(Filter::builder().name("vpc-id").values(&vpc).build())
        .send()
        .await
    {
        Ok(o) => o.nat_gateways().len(),
        Err(e) => return fail(&aws_line("ec2", "DescribeNatGateways", &e)),
    };
    let attached = match ec2
        .describe_volumes()
        .filters(
            Filter::builder()
                .name("attachment.instance-id")
                .values(&workstation)
                .build(),
        )
        .send()
        .await
    {
        Ok(o) => o
            .volumes()
            .iter()
            .filter(|v| {
                v.attachments()
                    .iter()
                    .any(|a| a.device().is_some_and(|d| d >= "/dev/sdf"))
            })
            .count(),
        Err(e) => return fail(&aws_line("ec2", "DescribeVolumes", &e)),
    };
    let ws_vpc = match ec2
        .describe_instances()
        .instance_ids(&workstation)
        .send()
        .await
    {
        Ok(o) => o
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find_map(|i| i.vpc_id().map(str::to_owned))
            .unwrap_or_default(),
        Err(e) => return fail(&aws_line("ec2", "DescribeInstances", &e)),
    };
    let inside = ws_vpc == vpc;
    let ok = igws == 0 && nats == 0 && inside && snapshots > 0 && attached == snapshots;
    (ok, format!("vpc {vpc}: {igws} internet gateway(s), {nats} NAT gateway(s); workstation {workstation} {}: {attached} restored volume(s) for {snapshots} snapshot(s)", if inside { "inside it".to_owned() } else { format!("OUTSIDE it (in {ws_vpc})") }))
}

/// The run's sealed evidence re-hashes to its manifest.
async fn evidence_verified(
    aws: &AwsClients,
    run: &run::RunResult,
    evidence_owner: &str,
) -> (bool, String) {
    let Some(loc) = run
        .evidence
        .as_ref()
        .filter(|e| e.manifest_sha256.is_some())
        .map(|e| e.location.clone())
    else {
        return (false, "the run's evidence was not sealed".into());
    };
    let parsed = match irr_forensics::EvidenceLocation::parse(&loc) {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    match irr_forensics::verify_with_owner(&parsed, Some(&aws.s3), Some(evidence_owner)).await {
        Ok(report) => (
            report.is_ok(),
            format!(
                "{} item(s) re-hashed: {}",
                report.items.len(),
                if report.is_ok() { "all ok" } else { "MISMATCH" }
            ),
        ),
        Err(e) => fail(&e),
    }
}

/// An assertion that could not be checked: the call to check it failed.
fn fail(e: &dyn std::fmt::Display) -> (bool, String) {
    (false, format!("could not check: {e}"))
}
