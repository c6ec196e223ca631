//! `irr gameday`: a drill. Stand up a realistic incident, run the playbook against it, check
//! the outcome, print a scorecard.
//!
//! A scenario file (`playbooks/scenarios/NAME.yaml`) says what to seed (a VPC, an open
//! security group, an instance with volumes and a profile, a user with a key, a public
//! bucket, ...), which inputs the playbook gets from the seeded resources, and what must hold
//! afterwards (declarative assertions on AWS state and on the evidence). With no endpoint
//! configured the local emulator is started on a free loopback port and stopped afterwards;
//! a real account is seeded only when its id is given explicitly and matches the credentials.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, IamInstanceProfileSpecification,
    InstanceNetworkInterfaceSpecification, IpPermission, IpRange,
};
use aws_smithy_types::error::display::DisplayErrorContext;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::actions::AwsClients;
use crate::aws::{self, AwsOptions};
use crate::emulator::{self, Emulator};
use crate::events::{RunStatus, StepStatus};
use crate::exit_codes::Exit;
use crate::model::Playbook;
use crate::run::{self, RunRequest};
use crate::template;

/// A scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// `irr/v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// `Scenario`.
    pub kind: String,
    /// Name and description.
    pub metadata: ScenarioMeta,
    /// What to stand up, in order.
    #[serde(default)]
    pub seed: Vec<SeedItem>,
    /// Playbook inputs; may refer to `{{seed.ID.FIELD}}`.
    #[serde(default)]
    pub inputs: serde_json::Map<String, Value>,
    /// Evidence location for the drill (default `s3://irr-gameday-evidence/cases`, created
    /// with Object Lock in the emulator).
    #[serde(default)]
    pub evidence: Option<String>,
    /// What must hold afterwards.
    pub expect: Vec<Expectation>,
}

/// Scenario metadata.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioMeta {
    /// Name (usually the playbook's).
    pub name: String,
    /// The incident, in a sentence.
    #[serde(default)]
    pub description: Option<String>,
}

/// One resource to seed. (Unknown keys are refused by the resource's own fields.)
#[derive(Debug, Clone, Deserialize)]
pub struct SeedItem {
    /// Name for references (`{{seed.ID.id}}`).
    pub id: String,
    /// What it is.
    #[serde(flatten)]
    pub resource: SeedResource,
}

/// The kinds of resource a scenario can seed.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SeedResource {
    /// A VPC.
    Vpc {
        /// CIDR block.
        cidr: String,
    },
    /// A subnet.
    Subnet {
        /// The VPC (id or reference).
        vpc: String,
        /// CIDR block.
        cidr: String,
    },
    /// A security group; `open: true` allows all traffic in from anywhere.
    SecurityGroup {
        /// The VPC.
        vpc: String,
        /// Allow everything in from 0.0.0.0/0.
        #[serde(default)]
        open: bool,
    },
    /// An IAM role trusted by EC2 and its instance profile.
    InstanceProfile {},
    /// An EC2 instance.
    Instance {
        /// Subnet.
        subnet: String,
        /// Security groups.
        security_groups: Vec<String>,
        /// Instance profile name.
        #[serde(default)]
        instance_profile: Option<String>,
        /// Volume sizes in GiB, the first being the root volume.
        #[serde(default = "default_volumes")]
        volumes: Vec<i32>,
        /// Network interfaces beyond the first.
        #[serde(default)]
        extra_interfaces: u32,
        /// AMI (default one the emulator knows).
        #[serde(default)]
        image_id: Option<String>,
    },
    /// An IAM user, optionally with an access key (its secret is never kept).
    IamUser {
        /// Create an access key.
        #[serde(default)]
        access_key: bool,
    },
    /// An S3 bucket; `public: true` opens it with a bucket policy.
    Bucket {
        /// Open to the world.
        #[serde(default)]
        public: bool,
    },
}

fn default_volumes() -> Vec<i32> {
    vec![8]
}

/// One assertion.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "check", rename_all = "snake_case", deny_unknown_fields)]
pub enum Expectation {
    /// Every interface of the instance holds only the case's isolation group, which has no
    /// ingress and no egress rules.
    Isolated {
        /// Instance id (or reference).
        instance: String,
    },
    /// Termination protection is on.
    TerminationProtected {
        /// Instance.
        instance: String,
    },
    /// No instance profile is associated.
    ProfileDetached {
        /// Instance.
        instance: String,
    },
    /// Each attached volume has exactly `per_volume` completed, case-tagged snapshots.
    Snapshots {
        /// Instance.
        instance: String,
        /// How many per volume (default 1).
        #[serde(default = "one")]
        per_volume: usize,
    },
    /// The access key has this status.
    AccessKey {
        /// User.
        user: String,
        /// Key id.
        key: String,
        /// `Active` or `Inactive`.
        status: String,
    },
    /// The principal has the session-revoking deny policy.
    SessionsRevoked {
        /// User.
        user: String,
    },
    /// All four public access block settings are on.
    PublicAccessBlocked {
        /// Bucket.
        bucket: String,
    },
    /// The case's responder role does not exist any more.
    ResponderRoleRemoved {},
    /// A step ended with this status.
    Step {
        /// Step id.
        id: String,
        /// `succeeded`, `failed` or `skipped`.
        status: String,
    },
    /// The run's evidence is sealed and verifies.
    EvidenceVerified {},
    /// The clean room deployed by step `stack_step` is isolated (its VPC has no internet and
    /// no NAT gateway) and its workstation has one attached volume per snapshot of step
    /// `snapshot_step`.
    CleanRoom {
        /// The `cloudformation.deploy_stack` step.
        stack_step: String,
        /// The `ec2.snapshot_volumes` step.
        snapshot_step: String,
    },
}

fn one() -> usize {
    1
}

/// One assertion's result.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// The assertion.
    pub check: Expectation,
    /// Held.
    pub passed: bool,
    /// What was seen.
    pub detail: String,
}

/// The scorecard of a drill.
#[derive(Debug, Clone, Serialize)]
pub struct Scorecard {
    /// Scenario name.
    pub scenario: String,
    /// Playbook name.
    pub playbook: String,
    /// The run.
    pub run_id: Option<String>,
    /// Case.
    pub case_id: String,
    /// Run status.
    pub status: Option<RunStatus>,
    /// Seconds from the start of the run until the last containment step finished
    /// (isolation, key deactivation, public access block).
    pub time_to_contain_s: Option<f64>,
    /// Seconds from the start of the run until its evidence was sealed.
    pub time_to_sealed_evidence_s: Option<f64>,
    /// Seconds spent seeding the incident.
    pub seed_s: f64,
    /// Mutating AWS calls the run made (from its journal).
    pub mutating_api_calls: usize,
    /// Each step: id, status, attempts, seconds.
    pub steps: Vec<Value>,
    /// Assertions.
    pub checks: Vec<CheckResult>,
    /// `passed / total` assertions.
    pub score: String,
    /// Evidence location of the run.
    pub evidence: Option<String>,
    /// Emulator or account.
    pub target: String,
}

/// Options of `irr gameday`.
#[derive(Debug, Clone)]
pub struct GamedayRequest {
    /// The playbook file.
    pub playbook_path: PathBuf,
    /// The validated playbook.
    pub playbook: Playbook,
    /// `--scenario`, else `scenarios/NAME.yaml` beside the playbook.
    pub scenario_path: Option<PathBuf>,
    /// AWS options (an endpoint means: use it rather than starting the emulator).
    pub aws: AwsOptions,
    /// `--account-id`: required to seed anything that is not a loopback emulator.
    pub account_id: Option<String>,
    /// `--state-dir`.
    pub state_dir: PathBuf,
    /// JSON Lines.
    pub json: bool,
}

fn say(json: bool, msg: &str) {
    if json {
        let _ = writeln!(
            std::io::stdout().lock(),
            "{}",
            json!({"event": "error", "message": msg})
        );
    } else {
        let _ = writeln!(std::io::stderr().lock(), "{msg}");
    }
}

/// Reads a scenario file; problems carry the file's line and column.
pub fn load_scenario(path: &Path) -> Result<Scenario, String> {
    // Through the playbook loader first: it bounds the file's size, nesting and aliases
    // (serde_yaml alone would expand an alias bomb far past any memory) and names the place
    // of a refusal. What it accepts is small enough for serde_yaml's typed decoding.
    let src = crate::load::read_file(path).map_err(|d| d.message)?;
    if let Err(problems) = crate::load::parse(&src) {
        return Err(problems
            .iter()
            .map(|d| {
                let help = d
                    .help
                    .as_ref()
                    .map(|h| format!(" ({h})"))
                    .unwrap_or_default();
                format!(
                    "{}:{}:{}: {}{help}",
                    d.span.file, d.span.line, d.span.column, d.message
                )
            })
            .collect::<Vec<_>>()
            .join("\n"));
    }
    let sc: Scenario = serde_yaml::from_str(src.text()).map_err(|e| match e.location() {
        Some(l) => format!("{}:{}:{}: {e}", path.display(), l.line(), l.column()),
        None => format!("{}: {e}", path.display()),
    })?;
    if sc.api_version != "irr/v1" || sc.kind != "Scenario" {
        return Err(format!(
            "{}: a scenario starts with \"apiVersion: irr/v1\" and \"kind: Scenario\"",
            path.display()
        ));
    }
    Ok(sc)
}

/// The scenario shipped beside a playbook: `scenarios/NAME.yaml`.
pub fn default_scenario(playbook_path: &Path, name: &str) -> PathBuf {
    playbook_path
        .parent()
        .unwrap_or(Path::new("."))
        .join("scenarios")
        .join(format!("{name}.yaml"))
}

/// Runs a drill.
pub async fn gameday(req: GamedayRequest) -> Exit {
    let scenario_path = req
        .scenario_path
        .clone()
        .unwrap_or_else(|| default_scenario(&req.playbook_path, &req.playbook.metadata.name));
    let scenario = match load_scenario(&scenario_path) {
        Ok(s) => s,
        Err(e) => {
            say(req.json, &format!("error: {e}"));
            return Exit::Invalid;
        }
    };
    // Where to seed: the given endpoint, else a private emulator.
    let mut _emulator: Option<Emulator> = None;
    let mut opts = req.aws.clone();
    let target;
    match &opts.endpoint_url {
        Some(ep) if emulator::loopback_addr(ep).is_some() => {
            target = format!("emulator at {ep}");
            if opts.static_credentials.is_none() {
                opts.static_credentials = Some(("gameday".into(), "gameday".into()));
            }
        }
        Some(ep) => {
            if req.account_id.is_none() {
                say(req.json, &format!("refused: {ep} is not a local emulator; a drill seeds resources, so give --account-id ACCOUNT to confirm the account it may seed"));
                return Exit::Invalid;
            }
            target = format!(
                "account {} via {ep}",
                req.account_id.as_deref().unwrap_or("")
            );
        }
        None if req.account_id.is_some() => {
            target = format!("account {}", req.account_id.as_deref().unwrap_or(""))
        }
        None => {
            match Emulator::start() {
                Ok(e) => {
                    opts.endpoint_url = Some(e.endpoint());
                    target = format!(
                        "local emulator at {} (started for this drill)",
                        e.endpoint()
                    );
                    _emulator = Some(e);
                }
                Err(e) => {
                    say(req.json, &format!("error: {e}"));
                    return Exit::Invalid;
                }
            }
            opts.static_credentials = Some(("gameday".into(), "gameday".into()));
            opts.region.get_or_insert_with(|| "us-east-1".to_owned());
        }
    }
    let aws = match aws::connect(&opts).await {
        Ok(a) => a,
        Err(e) => {
            say(req.json, &format!("error: {e}"));
            return Exit::Invalid;
        }
    };
    if let Some(want) = &req.account_id {
        match aws.identity().await {
            Ok(id) if &id.account_id == want => {}
            Ok(id) => {
                say(req.json, &format!("refused: the credentials are for account {}, not {want}; nothing was seeded", id.account_id));
                return Exit::Invalid;
            }
            Err(e) => {
                say(req.json, &format!("error: {e}"));
                return Exit::Invalid;
            }
        }
    }
    if !req.json {
        let _ = writeln!(
            std::io::stderr().lock(),
            "gameday: {} on {target}",
            scenario.metadata.name
        );
        if let Some(d) = &scenario.metadata.description {
            let _ = writeln!(std::io::stderr().lock(), "  {d}");
        }
    }

    // Seed.
    let seed_start = Instant::now();
    let seeded = match seed(&aws.clients, &scenario.seed).await {
        Ok(s) => s,
        Err(e) => {
            say(
                req.json,
                &format!("error: seeding the incident failed: {e}"),
            );
            return Exit::RunFailed;
        }
    };
    let seed_s = seed_start.elapsed().as_secs_f64();
    let ctx = json!({ "seed": seeded });
    let render = |v: &str| -> String {
        match template::render_str(v, &ctx) {
            Ok(Value::String(s)) => s,
            Ok(other) => other.to_string(),
            Err(_) => v.to_owned(),
        }
    };
    // Inputs, rendered from the seed and checked against the playbook's declarations.
    let mut pairs = Vec::new();
    for (k, v) in &scenario.inputs {
        let rendered = template::render_value(v, &ctx).unwrap_or_else(|_| v.clone());
        let text = match rendered {
            Value::String(s) => s,
            other => other.to_string(),
        };
        pairs.push(format!("{k}={text}"));
    }
    let inputs = match crate::validate::resolve_inputs(&req.playbook, &pairs, None, true) {
        Ok(i) => i,
        Err(problems) => {
            for p in problems {
                say(req.json, &p.render(None));
            }
            return Exit::Invalid;
        }
    };
    // Unique per drill: the run id's time and random suffix.
    let case_id = format!(
        "GAMEDAY-{}",
        crate::executor::new_run_id().trim_start_matches("r-")
    );
    let evidence = scenario
        .evidence
        .clone()
        .unwrap_or_else(|| "s3://irr-gameday-evidence/cases".to_owned());
    let result = run::run(RunRequest {
        playbook_path: req.playbook_path.clone(),
        playbook: req.playbook.clone(),
        inputs,
        case_id: case_id.clone(),
        evidence: Some(evidence),
        yes: true,
        dry_run: false,
        concurrency: 4,
        state_dir: req.state_dir.clone(),
        json: req.json,
        aws: opts.clone(),
        create_evidence_bucket: true,
    })
    .await;

    // Check.
    let mut checks = Vec::new();
    for exp in &scenario.expect {
        let exp = render_expectation(exp, &render);
        let (passed, detail) = check(&aws.clients, &exp, &case_id, &result, &req.state_dir).await;
        checks.push(CheckResult {
            check: exp,
            passed,
            detail,
        });
    }
    let card = scorecard(&scenario, &req, &result, &case_id, seed_s, checks, target);
    if req.json {
        let mut line = serde_json::to_value(&card).unwrap_or_default();
        line["event"] = json!("gameday_finished");
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    } else {
        print!("{}", render_scorecard(&card));
    }
    let all_passed = card.checks.iter().all(|c| c.passed);
    if result.status == Some(RunStatus::Succeeded) && all_passed {
        Exit::Success
    } else {
        Exit::RunFailed
    }
}

fn render_expectation(e: &Expectation, render: &dyn Fn(&str) -> String) -> Expectation {
    let v = serde_json::to_value(e).unwrap_or_default();
    let rendered = match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| match v {
                    Value::String(s) => (k, Value::String(render(&s))),
                    other => (k, other),
                })
                .collect(),
        ),
        other => other,
    };
    serde_json::from_value(rendered).unwrap_or_else(|_| e.clone())
}

async fn seed(
    aws: &AwsClients,
    items: &[SeedItem],
) -> Result<serde_json::Map<String, Value>, String> {
    let mut out = serde_json::Map::new();
    let err = |what: &str, e: &dyn std::fmt::Display| format!("{what}: {e}");
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
                    .map_err(|e| err("create vpc", &DisplayErrorContext(e)))?;
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
                    .map_err(|e| err("create subnet", &DisplayErrorContext(e)))?;
                json!({"id": s.subnet().and_then(|v| v.subnet_id()).unwrap_or_default()})
            }
            SeedResource::SecurityGroup { vpc, open } => {
                let g = aws
                    .ec2
                    .create_security_group()
                    .group_name(&uniq)
                    .description("seeded by irr gameday")
                    .vpc_id(r(vpc))
                    .send()
                    .await
                    .map_err(|e| err("create security group", &DisplayErrorContext(e)))?;
                let id = g.group_id().unwrap_or_default().to_owned();
                if *open {
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
                        .map_err(|e| err("open security group", &DisplayErrorContext(e)))?;
                }
                json!({"id": id})
            }
            SeedResource::InstanceProfile {} => {
                let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
                aws.iam
                    .create_role()
                    .role_name(&uniq)
                    .assume_role_policy_document(trust)
                    .send()
                    .await
                    .map_err(|e| err("create role", &DisplayErrorContext(e)))?;
                aws.iam
                    .create_instance_profile()
                    .instance_profile_name(&uniq)
                    .send()
                    .await
                    .map_err(|e| err("create instance profile", &DisplayErrorContext(e)))?;
                aws.iam
                    .add_role_to_instance_profile()
                    .instance_profile_name(&uniq)
                    .role_name(&uniq)
                    .send()
                    .await
                    .map_err(|e| err("add role to profile", &DisplayErrorContext(e)))?;
                json!({"id": uniq, "role": uniq})
            }
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
                let mut nic = InstanceNetworkInterfaceSpecification::builder()
                    .device_index(0)
                    .subnet_id(&subnet);
                for g in &groups {
                    nic = nic.groups(g);
                }
                let mut req = aws
                    .ec2
                    .run_instances()
                    .image_id(
                        image_id
                            .clone()
                            .unwrap_or_else(|| "ami-12c6146b".to_owned()),
                    )
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
                if let Some(p) = instance_profile {
                    req = req.iam_instance_profile(
                        IamInstanceProfileSpecification::builder()
                            .name(r(p))
                            .build(),
                    );
                }
                let out = req
                    .send()
                    .await
                    .map_err(|e| err("run instance", &DisplayErrorContext(e)))?;
                let id = out
                    .instances()
                    .first()
                    .and_then(|i| i.instance_id())
                    .unwrap_or_default()
                    .to_owned();
                for n in 0..*extra_interfaces {
                    let mut eni = aws.ec2.create_network_interface().subnet_id(&subnet);
                    for g in &groups {
                        eni = eni.groups(g);
                    }
                    let eni = eni
                        .send()
                        .await
                        .map_err(|e| err("create interface", &DisplayErrorContext(e)))?;
                    let eni_id = eni
                        .network_interface()
                        .and_then(|n| n.network_interface_id())
                        .unwrap_or_default()
                        .to_owned();
                    aws.ec2
                        .attach_network_interface()
                        .instance_id(&id)
                        .network_interface_id(&eni_id)
                        .device_index(n as i32 + 1)
                        .send()
                        .await
                        .map_err(|e| err("attach interface", &DisplayErrorContext(e)))?;
                }
                json!({"id": id})
            }
            SeedResource::IamUser { access_key } => {
                aws.iam
                    .create_user()
                    .user_name(&uniq)
                    .send()
                    .await
                    .map_err(|e| err("create user", &DisplayErrorContext(e)))?;
                let mut v = json!({"id": uniq});
                if *access_key {
                    let k = aws
                        .iam
                        .create_access_key()
                        .user_name(&uniq)
                        .send()
                        .await
                        .map_err(|e| err("create access key", &DisplayErrorContext(e)))?;
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
                    .map_err(|e| err("create bucket", &DisplayErrorContext(e)))?;
                if *public {
                    let policy = json!({"Version": "2012-10-17", "Statement": [{"Sid": "Public", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": format!("arn:aws:s3:::{uniq}/*")}]});
                    aws.s3
                        .put_bucket_policy()
                        .bucket(&uniq)
                        .policy(policy.to_string())
                        .send()
                        .await
                        .map_err(|e| err("open bucket", &DisplayErrorContext(e)))?;
                }
                json!({"id": uniq})
            }
        };
        out.insert(item.id.clone(), value);
    }
    Ok(out)
}

async fn check(
    aws: &AwsClients,
    exp: &Expectation,
    case: &str,
    run: &run::RunResult,
    state_dir: &Path,
) -> (bool, String) {
    let ec2 = &aws.ec2;
    let fail = |e: &dyn std::fmt::Display| (false, format!("could not check: {e}"));
    match exp {
        Expectation::Isolated { instance } => {
            let groups = match ec2
                .describe_security_groups()
                .filters(Filter::builder().name("tag:irr:case").values(case).build())
                .send()
                .await
            {
                Ok(g) => g,
                Err(e) => return fail(&DisplayErrorContext(e)),
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
                Err(e) => return fail(&DisplayErrorContext(e)),
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
            (n > 0 && wrong.is_empty() && rules == 0, format!("{n} interface(s); isolation group {gid} has {rules} rule(s); not isolated: {wrong:?}"))
        }
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
            Err(e) => fail(&DisplayErrorContext(e)),
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
            Err(e) => fail(&DisplayErrorContext(e)),
        },
        Expectation::Snapshots {
            instance,
            per_volume,
        } => {
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
                Err(e) => return fail(&DisplayErrorContext(e)),
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
                    Err(e) => return fail(&DisplayErrorContext(e)),
                };
                counts.insert(vid.to_owned(), n);
            }
            let ok = !counts.is_empty() && counts.values().all(|n| n == per_volume);
            (
                ok,
                format!("completed case-tagged snapshots per volume: {counts:?}"),
            )
        }
        Expectation::AccessKey { user, key, status } => {
            match aws.iam.list_access_keys().user_name(user).send().await {
                Ok(k) => {
                    let seen = k
                        .access_key_metadata()
                        .iter()
                        .find(|m| m.access_key_id() == Some(key.as_str()))
                        .and_then(|m| m.status())
                        .map(|s| s.as_str().to_owned());
                    (
                        seen.as_deref() == Some(status.as_str()),
                        format!("key {key}: {}", seen.unwrap_or_else(|| "not found".into())),
                    )
                }
                Err(e) => fail(&DisplayErrorContext(e)),
            }
        }
        Expectation::SessionsRevoked { user } => match aws
            .iam
            .get_user_policy()
            .user_name(user)
            .policy_name("irr-revoke-sessions")
            .send()
            .await
        {
            Ok(p) => {
                let doc = urlencoding_decode(p.policy_document());
                let ok = doc.contains("Deny") && doc.contains("aws:TokenIssueTime");
                (
                    ok,
                    format!("irr-revoke-sessions present; deny on aws:TokenIssueTime: {ok}"),
                )
            }
            Err(e) => (
                false,
                format!("no irr-revoke-sessions policy: {}", DisplayErrorContext(e)),
            ),
        },
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
                Err(e) => fail(&DisplayErrorContext(e)),
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
            Err(e) => fail(&DisplayErrorContext(e)),
        },
        Expectation::Step { id, status } => {
            let seen = run.steps.iter().find(|s| &s.id == id).map(|s| s.status);
            let seen_s = seen.map(StepStatus::as_str).unwrap_or("not run");
            (seen_s == status, format!("step {id}: {seen_s}"))
        }
        Expectation::CleanRoom {
            stack_step,
            snapshot_step,
        } => {
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
                Err(e) => return fail(&DisplayErrorContext(e)),
            };
            let nats = match ec2
                .describe_nat_gateways()
                .filter(Filter::builder().name("vpc-id").values(&vpc).build())
                .send()
                .await
            {
                Ok(o) => o.nat_gateways().len(),
                Err(e) => return fail(&DisplayErrorContext(e)),
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
                Err(e) => return fail(&DisplayErrorContext(e)),
            };
            let ok = igws == 0 && nats == 0 && snapshots > 0 && attached == snapshots;
            (ok, format!("vpc {vpc}: {igws} internet gateway(s), {nats} NAT gateway(s); workstation {workstation}: {attached} restored volume(s) for {snapshots} snapshot(s)"))
        }
        Expectation::EvidenceVerified {} => {
            let Some(loc) = run
                .evidence
                .as_ref()
                .filter(|e| e.manifest_sha256.is_some())
                .map(|e| e.location.clone())
            else {
                return (false, "the run's evidence was not sealed".into());
            };
            let _ = state_dir;
            let parsed = match irr_forensics::EvidenceLocation::parse(&loc) {
                Ok(l) => l,
                Err(e) => return fail(&e),
            };
            match irr_forensics::verify(&parsed, Some(&aws.s3)).await {
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
    }
}

/// IAM returns policy documents URL-encoded.
fn urlencoding_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn seconds_between(a: &str, b: &str) -> Option<f64> {
    let fmt = &time::format_description::well_known::Rfc3339;
    let a = time::OffsetDateTime::parse(a, fmt).ok()?;
    let b = time::OffsetDateTime::parse(b, fmt).ok()?;
    Some((b - a).as_seconds_f64())
}

fn scorecard(
    sc: &Scenario,
    req: &GamedayRequest,
    run: &run::RunResult,
    case: &str,
    seed_s: f64,
    checks: Vec<CheckResult>,
    target: String,
) -> Scorecard {
    let run_dir = run
        .run_id
        .as_ref()
        .map(|id| crate::executor::run_dir(&req.state_dir, id));
    let journal = run_dir
        .as_ref()
        .and_then(|d| crate::journal::read(&d.join("journal.jsonl")).ok())
        .unwrap_or_default();
    let started = journal
        .first()
        .and_then(|e| e.value.get("ts").and_then(Value::as_str).map(str::to_owned));
    let sealed = journal
        .iter()
        .find(|e| e.event() == "evidence_sealed")
        .and_then(|e| e.value.get("ts").and_then(Value::as_str).map(str::to_owned));
    const CONTAINMENT: &[&str] = &[
        "ec2.isolate_instance",
        "iam.deactivate_access_key",
        "iam.revoke_sessions",
        "s3.block_public_access",
    ];
    let contain_end = run
        .steps
        .iter()
        .filter(|s| {
            req.playbook
                .step(&s.id)
                .is_some_and(|st| CONTAINMENT.contains(&st.action.name))
        })
        .filter_map(|s| s.finished_at.clone())
        .max();
    let steps = run
        .steps
        .iter()
        .map(|s| {
            let secs = match (&s.started_at, &s.finished_at) {
                (Some(a), Some(b)) => seconds_between(a, b),
                _ => None,
            };
            json!({"id": s.id, "status": s.status, "attempts": s.attempts, "seconds": secs})
        })
        .collect();
    let passed = checks.iter().filter(|c| c.passed).count();
    Scorecard {
        scenario: sc.metadata.name.clone(),
        playbook: req.playbook.metadata.name.clone(),
        run_id: run.run_id.clone(),
        case_id: case.to_owned(),
        status: run.status,
        time_to_contain_s: started
            .as_deref()
            .zip(contain_end.as_deref())
            .and_then(|(a, b)| seconds_between(a, b)),
        time_to_sealed_evidence_s: started
            .as_deref()
            .zip(sealed.as_deref())
            .and_then(|(a, b)| seconds_between(a, b)),
        seed_s,
        mutating_api_calls: journal
            .iter()
            .filter(|e| e.event() == "call_started")
            .count(),
        steps,
        score: format!("{passed}/{}", checks.len()),
        checks,
        evidence: run.evidence.as_ref().map(|e| e.location.clone()),
        target,
    }
}

/// The scorecard as text.
pub fn render_scorecard(c: &Scorecard) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let secs = |v: Option<f64>| v.map(|s| format!("{s:.2} s")).unwrap_or_else(|| "-".into());
    let _ = writeln!(out, "\nGameDay scorecard: {} ({})", c.scenario, c.target);
    let _ = writeln!(out, "  playbook               {}", c.playbook);
    let _ = writeln!(
        out,
        "  case / run             {} / {}",
        c.case_id,
        c.run_id.as_deref().unwrap_or("-")
    );
    let status = c
        .status
        .map(|s| format!("{s:?}").to_lowercase())
        .unwrap_or_else(|| "did not run".into());
    let _ = writeln!(out, "  run status             {status}");
    let _ = writeln!(
        out,
        "  time to contain        {}",
        secs(c.time_to_contain_s)
    );
    let _ = writeln!(
        out,
        "  time to sealed evidence {}",
        secs(c.time_to_sealed_evidence_s)
    );
    let _ = writeln!(out, "  mutating API calls     {}", c.mutating_api_calls);
    let _ = writeln!(out, "  seeding the incident   {:.2} s", c.seed_s);
    let _ = writeln!(out, "\n  steps:");
    for s in &c.steps {
        let t = s["seconds"]
            .as_f64()
            .map(|x| format!("{x:.2} s"))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "    {:<18} {:<10} attempts {}  {t}",
            s["id"].as_str().unwrap_or(""),
            s["status"].as_str().unwrap_or(""),
            s["attempts"]
        );
    }
    let _ = writeln!(out, "\n  checks:");
    for ch in &c.checks {
        let name = serde_json::to_value(&ch.check)
            .ok()
            .and_then(|v| v["check"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "    {} {:<24} {}",
            if ch.passed { "pass" } else { "FAIL" },
            name,
            ch.detail
        );
    }
    if let Some(e) = &c.evidence {
        let _ = writeln!(out, "\n  evidence: {e}");
    }
    let _ = writeln!(out, "\n  score: {} checks passed", c.score);
    out
}
