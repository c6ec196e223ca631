//! Seeding the incident: the scenario's resources, created in order, each one's ids kept for
//! the templates of the later ones, of the inputs and of the assertions.

use super::*;

/// What the emulator behind a drill cannot do, and so what the drill seeds differently.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct EmulatorGaps {
    /// `RunInstances` with `IamInstanceProfile` fails (LocalStack: its EC2 does not see the
    /// profiles its IAM creates, `NoSuchEntity`): instances are seeded without their profile
    /// and the checks on it are skipped.
    pub(super) no_instance_profile_on_launch: bool,
}

/// Why LocalStack cannot launch an instance with a profile (named in the scorecard).
pub const LOCALSTACK_NO_PROFILE: &str = "LocalStack's EC2 does not see instance profiles created through its IAM (RunInstances with IamInstanceProfile answers NoSuchEntity): the instance was seeded without its profile";

impl EmulatorGaps {
    pub(super) fn of(kind: Option<emulator::EmulatorKind>) -> EmulatorGaps {
        EmulatorGaps {
            no_instance_profile_on_launch: kind == Some(emulator::EmulatorKind::Localstack),
        }
    }
}

pub(super) async fn seed(
    aws: &AwsClients,
    items: &[SeedItem],
    gaps: &EmulatorGaps,
    skipped_profiles: &mut Vec<String>,
) -> Result<serde_json::Map<String, Value>, String> {
    let mut out = serde_json::Map::new();
    for item in items {
        let ctx = json!({ "seed": out });
        let r = |s: &str| -> String {
            match template::render_str(s, &ctx) {
                Ok(Value::String(v)) => v,
                Ok(other) => other.to_string(),
                Err(_) => s.to_owned(),
            }
        };
        let uniq = format!("gameday-{}-{}", item.id, std::process::id());
        let value = match &item.resource {
            SeedResource::Vpc { cidr } => {
                let vpc = aws
                    .ec2
                    .create_vpc()
                    .cidr_block(cidr)
                    .send()
                    .await
                    .map_err(|e| err("create vpc", &aws_line("ec2", "CreateVpc", &e)))?;
                json!({"id": vpc.vpc().and_then(|v| v.vpc_id()).unwrap_or_default()})
            }
            SeedResource::Subnet { vpc, cidr } => {
                let s = aws
                    .ec2
                    .create_subnet()
                    .vpc_id(r(vpc))
                    .cidr_block(cidr)
                    .send()
                    .await
                    .map_err(|e| err("create subnet", &aws_line("ec2", "CreateSubnet", &e)))?;
                json!({"id": s.subnet().and_then(|v| v.subnet_id()).unwrap_or_default()})
            }
            SeedResource::SecurityGroup { vpc, open } => {
                security_group(aws, &uniq, &r(vpc), *open).await?
            }
            SeedResource::InstanceProfile {} => instance_profile(aws, &uniq).await?,
            SeedResource::Instance {
                subnet,
                security_groups,
                instance_profile,
                volumes,
                extra_interfaces,
                image_id,
            } => {
                let subnet = r(subnet);
                let groups: Vec<String> = security_groups.iter().map(|g| r(g)).collect();
                let with_profile =
                    instance_profile.is_some() && !gaps.no_instance_profile_on_launch;
                let profile = instance_profile
                    .as_ref()
                    .filter(|_| with_profile)
                    .map(|p| r(p));
                let out = launch(aws, image_id.as_deref(), &subnet, volumes, profile).await?;
                let id = out
                    .instances()
                    .first()
                    .and_then(|i| i.instance_id())
                    .unwrap_or_default()
                    .to_owned();
                if instance_profile.is_some() && !with_profile {
                    skipped_profiles.push(id.clone());
                }
                let primary = out
                    .instances()
                    .first()
                    .and_then(|i| i.network_interfaces().first())
                    .and_then(|n| n.network_interface_id());
                if let (Some(eni), false) = (primary, groups.is_empty()) {
                    set_groups(aws, eni, &groups).await?;
                }
                for n in 0..*extra_interfaces {
                    attach_interface(aws, &id, &subnet, &groups, n).await?;
                }
                json!({"id": id})
            }
            SeedResource::IamUser { access_key } => {
                aws.iam
                    .create_user()
                    .user_name(&uniq)
                    .send()
                    .await
                    .map_err(|e| err("create user", &aws_line("iam", "CreateUser", &e)))?;
                let mut v = json!({"id": uniq});
                if *access_key {
                    let k = aws
                        .iam
                        .create_access_key()
                        .user_name(&uniq)
                        .send()
                        .await
                        .map_err(|e| {
                            err("create access key", &aws_line("iam", "CreateAccessKey", &e))
                        })?;
                    // Only the id is kept; the secret is dropped here and never printed.
                    v["access_key_id"] = json!(k
                        .access_key()
                        .map(|k| k.access_key_id())
                        .unwrap_or_default());
                }
                v
            }
            SeedResource::Bucket { public } => {
                aws.s3
                    .create_bucket()
                    .bucket(&uniq)
                    .send()
                    .await
                    .map_err(|e| err("create bucket", &aws_line("s3", "CreateBucket", &e)))?;
                if *public {
                    // New buckets block public policies (AWS since 2023, LocalStack; not
                    // moto): lift the block first, as whoever exposed the bucket had to, so
                    // the drill's block step has something to do. Not having one is fine.
                    let _ = aws
                        .s3
                        .delete_public_access_block()
                        .bucket(&uniq)
                        .send()
                        .await;
                    let policy = json!({"Version": "2012-10-17", "Statement": [{"Sid": "Public", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": format!("arn:aws:s3:::{uniq}/*")}]});
                    aws.s3
                        .put_bucket_policy()
                        .bucket(&uniq)
                        .policy(policy.to_string())
                        .send()
                        .await
                        .map_err(|e| err("open bucket", &aws_line("s3", "PutBucketPolicy", &e)))?;
                }
                json!({"id": uniq})
            }
        };
        out.insert(item.id.clone(), value);
    }
    Ok(out)
}

/// A failed seeding call: what was being done, and AWS's answer.
fn err(what: &str, e: &dyn std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// A security group in the VPC, open to the world on every port when `open`.
async fn security_group(
    aws: &AwsClients,
    uniq: &str,
    vpc: &str,
    open: bool,
) -> Result<Value, String> {
    let g = aws
        .ec2
        .create_security_group()
        .group_name(uniq)
        .description("seeded by irr gameday")
        .vpc_id(vpc)
        .send()
        .await
        .map_err(|e| {
            err(
                "create security group",
                &aws_line("ec2", "CreateSecurityGroup", &e),
            )
        })?;
    let id = g.group_id().unwrap_or_default().to_owned();
    if open {
        aws.ec2
            .authorize_security_group_ingress()
            .group_id(&id)
            .ip_permissions(
                IpPermission::builder()
                    .ip_protocol("-1")
                    .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
                    .build(),
            )
            .send()
            .await
            .map_err(|e| {
                err(
                    "open security group",
                    &aws_line("ec2", "AuthorizeSecurityGroupIngress", &e),
                )
            })?;
    }
    Ok(json!({"id": id}))
}

/// A role EC2 may assume, and an instance profile holding it.
async fn instance_profile(aws: &AwsClients, uniq: &str) -> Result<Value, String> {
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    aws.iam
        .create_role()
        .role_name(uniq)
        .assume_role_policy_document(trust)
        .send()
        .await
        .map_err(|e| err("create role", &aws_line("iam", "CreateRole", &e)))?;
    aws.iam
        .create_instance_profile()
        .instance_profile_name(uniq)
        .send()
        .await
        .map_err(|e| {
            err(
                "create instance profile",
                &aws_line("iam", "CreateInstanceProfile", &e),
            )
        })?;
    aws.iam
        .add_role_to_instance_profile()
        .instance_profile_name(uniq)
        .role_name(uniq)
        .send()
        .await
        .map_err(|e| {
            err(
                "add role to profile",
                &aws_line("iam", "AddRoleToInstanceProfile", &e),
            )
        })?;
    Ok(json!({"id": uniq, "role": uniq}))
}

/// Launches one instance in the subnet with a volume of each size (and the profile). The
/// groups go on the interface after launch: both emulators add groups given at launch to
/// every interface they describe, whatever isolation sets later (docs/emulator-notes.md);
/// AWS keeps them per interface.
async fn launch(
    aws: &AwsClients,
    image_id: Option<&str>,
    subnet: &str,
    volumes: &[i32],
    profile: Option<String>,
) -> Result<aws_sdk_ec2::operation::run_instances::RunInstancesOutput, String> {
    let nic = InstanceNetworkInterfaceSpecification::builder()
        .device_index(0)
        .subnet_id(subnet);
    let mut req = aws
        .ec2
        .run_instances()
        .image_id(image_id.unwrap_or("ami-12c6146b"))
        .min_count(1)
        .max_count(1)
        .network_interfaces(nic.build());
    for (i, size) in volumes.iter().enumerate() {
        let device = if i == 0 {
            "/dev/sda1".to_owned()
        } else {
            format!("/dev/sd{}", (b'a' + i as u8) as char)
        };
        req = req.block_device_mappings(
            BlockDeviceMapping::builder()
                .device_name(device)
                .ebs(EbsBlockDevice::builder().volume_size(*size).build())
                .build(),
        );
    }
    if let Some(p) = profile {
        req = req.iam_instance_profile(IamInstanceProfileSpecification::builder().name(p).build());
    }
    req.send()
        .await
        .map_err(|e| err("run instance", &aws_line("ec2", "RunInstances", &e)))
}

/// Puts the instance's primary interface in the seeded groups.
async fn set_groups(aws: &AwsClients, eni: &str, groups: &[String]) -> Result<(), String> {
    aws.ec2
        .modify_network_interface_attribute()
        .network_interface_id(eni)
        .set_groups(Some(groups.to_vec()))
        .send()
        .await
        .map_err(|e| {
            err(
                "set the interface's groups",
                &aws_line("ec2", "ModifyNetworkInterfaceAttribute", &e),
            )
        })?;
    Ok(())
}

/// One more interface in the subnet and groups, attached to the instance as device `n + 1`.
async fn attach_interface(
    aws: &AwsClients,
    instance: &str,
    subnet: &str,
    groups: &[String],
    n: u32,
) -> Result<(), String> {
    let mut eni = aws.ec2.create_network_interface().subnet_id(subnet);
    for g in groups {
        eni = eni.groups(g);
    }
    let eni = eni.send().await.map_err(|e| {
        err(
            "create interface",
            &aws_line("ec2", "CreateNetworkInterface", &e),
        )
    })?;
    let eni_id = eni
        .network_interface()
        .and_then(|n| n.network_interface_id())
        .unwrap_or_default()
        .to_owned();
    aws.ec2
        .attach_network_interface()
        .instance_id(instance)
        .network_interface_id(&eni_id)
        .device_index(n as i32 + 1)
        .send()
        .await
        .map_err(|e| {
            err(
                "attach interface",
                &aws_line("ec2", "AttachNetworkInterface", &e),
            )
        })?;
    Ok(())
}
