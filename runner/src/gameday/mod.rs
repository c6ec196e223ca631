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

mod chaos;
mod check;
mod junit;
mod scorecard;
mod seed;

use chaos::{chaos_outcomes, load_chaos};
pub use check::LOCALSTACK_NO_CFN_VOLUMES;
use check::{check, skip_reason};
pub use junit::junit_xml;
pub use scorecard::{check_name, history_dir, render_scorecard};
use scorecard::{check_targets, save_history, scorecard};
pub use seed::LOCALSTACK_NO_PROFILE;
use seed::{seed, EmulatorGaps};

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
    /// Playbook inputs; may refer to `{{seed.ID.FIELD}}`, and to `{{drill.evidence_bucket}}`
    /// (the drill's own evidence bucket) and `{{drill.account_id}}`.
    #[serde(default)]
    pub inputs: serde_json::Map<String, Value>,
    /// Evidence location for the drill (default `s3://BUCKET/cases` in a bucket of the
    /// drill's own, [`new_drill_bucket`], created with Object Lock).
    #[serde(default)]
    pub evidence: Option<String>,
    /// What must hold afterwards.
    pub expect: Vec<Expectation>,
    /// Times the drill must beat (`time_to_contain: 2s`, `time_to_evidence: 10s`); a target
    /// missed is a failed check.
    #[serde(default)]
    pub targets: Option<Targets>,
    /// Faults injected into the run's AWS traffic (a chaos drill): the fault proxy's spec
    /// (`irr_runner::proxy::ProxySpec`); `--chaos FILE` replaces it.
    #[serde(default)]
    pub chaos: Option<crate::proxy::ProxySpec>,
}

/// Times a drill must beat.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    /// From the start of the run until the last containment step finished (`2s`, `500ms`).
    #[serde(default)]
    pub time_to_contain: Option<String>,
    /// From the start of the run until its evidence was sealed.
    #[serde(default)]
    pub time_to_evidence: Option<String>,
}

/// `2s`, `1m30s`, `500ms` as seconds.
pub fn parse_target(s: &str) -> Result<f64, String> {
    let t = s.trim();
    if let Some(ms) = t.strip_suffix("ms") {
        return ms
            .parse::<u64>()
            .map(|n| n as f64 / 1000.0)
            .map_err(|_| format!("\"{s}\" is not a duration; e.g. 500ms, 2s, 1m30s"));
    }
    crate::types::parse_duration(t).map(|d| d.as_secs_f64())
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
    /// A target of the scenario (`targets:`), checked against the scorecard's times.
    #[serde(skip_deserializing)]
    Target {
        /// `time_to_contain` or `time_to_evidence`.
        metric: String,
        /// The target, as written (`2s`).
        max: String,
    },
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
    /// Held (`false` for a skipped check).
    pub passed: bool,
    /// What was seen.
    pub detail: String,
    /// Why it was not checked: the emulator lacks what it needs (e.g. LocalStack's EC2 cannot
    /// launch an instance with a profile). Skipped checks are named in the scorecard and left
    /// out of the score; they never count as passed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
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
    /// When the drill started (RFC 3339).
    pub started_at: String,
    /// The verified local copy of the sealed evidence (`STATE_DIR/runs/RUN_ID/evidence-copy/CASE/RUN`).
    pub evidence_copy: Option<String>,
    /// A chaos drill's injected faults and what the playbook did about each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chaos: Vec<ChaosOutcome>,
}

/// One fault a chaos drill injected, and what the run did about it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChaosOutcome {
    /// `service:Operation`.
    pub action: String,
    /// The fault (`throttle`, `deny`, `drop_after`, ...).
    pub fault: crate::proxy::FaultKind,
    /// How many requests got it.
    pub times: u64,
    /// `recorded a gap`, `failed safe`, or `retried`.
    pub outcome: String,
    /// Which gap, which failed step, or how it was retried.
    pub detail: String,
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
    /// `--emulator`: which emulator to start (default moto), or which one a loopback
    /// `--endpoint-url` is (default: probed).
    pub emulator: Option<emulator::EmulatorKind>,
    /// `--state-dir`.
    pub state_dir: PathBuf,
    /// JSON Lines.
    pub json: bool,
    /// `--junit FILE`: the checks as JUnit XML.
    pub junit: Option<PathBuf>,
    /// `--chaos FILE`: faults to inject into the run's AWS traffic (replaces the scenario's
    /// `chaos:`).
    pub chaos: Option<PathBuf>,
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
    if let Some(t) = &sc.targets {
        for (name, v) in [
            ("time_to_contain", &t.time_to_contain),
            ("time_to_evidence", &t.time_to_evidence),
        ] {
            if let Some(v) = v {
                parse_target(v).map_err(|e| format!("{}: targets.{name}: {e}", path.display()))?;
            }
        }
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

/// The playbook as a drill runs it: in the emulator's one account (its `targets:`, if any,
/// are not fanned out to).
fn in_one_account(pb: &crate::model::Playbook) -> crate::model::Playbook {
    let mut pb = pb.clone();
    pb.targets = None;
    pb
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
    // Where to seed: the given endpoint, else a private emulator (kept until the drill ends).
    let target = match Target::of(&req) {
        Ok(t) => t,
        Err(exit) => return exit,
    };
    let opts = &target.opts;
    let (aws, account) = match connect(&req, opts).await {
        Ok(a) => a,
        Err(exit) => return exit,
    };
    let drill_bucket = new_drill_bucket(&account);
    if !req.json {
        let _ = writeln!(
            std::io::stderr().lock(),
            "gameday: {} on {}",
            scenario.metadata.name,
            target.name
        );
        if let Some(d) = &scenario.metadata.description {
            let _ = writeln!(std::io::stderr().lock(), "  {d}");
        }
    }

    // Seed.
    let drill_started = irr_forensics::clock::now_rfc3339();
    let seed_start = Instant::now();
    let gaps = EmulatorGaps::of(target.kind);
    let mut skipped_profiles = Vec::new();
    let seeded = match seed(&aws.clients, &scenario.seed, &gaps, &mut skipped_profiles).await {
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
    let ctx = json!({
        "seed": seeded,
        "drill": { "evidence_bucket": drill_bucket, "account_id": account },
    });
    let inputs = match run_inputs(&req, &scenario, &ctx) {
        Ok(i) => i,
        Err(exit) => return exit,
    };
    // Unique per drill: the run id's time and random suffix.
    let case_id = format!(
        "GAMEDAY-{}",
        crate::executor::new_run_id().trim_start_matches("r-")
    );
    // The drill's own bucket (unique per account and per drill, created with Object Lock),
    // unless the scenario names one.
    let evidence = scenario
        .evidence
        .clone()
        .unwrap_or_else(|| format!("s3://{drill_bucket}/cases"));
    let (proxy, run_opts) = match chaos_proxy(&req, &scenario, opts).await {
        Ok(p) => p,
        Err(exit) => return exit,
    };
    let result = run::run(RunRequest {
        playbook_path: req.playbook_path.clone(),
        playbook: in_one_account(&req.playbook),
        inputs: inputs.values,
        defaulted_inputs: inputs.defaulted,
        case_id: case_id.clone(),
        evidence: Some(evidence),
        yes: true,
        dry_run: false,
        concurrency: 4,
        state_dir: req.state_dir.clone(),
        json: req.json,
        aws: run_opts,
        create_evidence_bucket: true,
        evidence_owner: Some(account.clone()),
        // The playbook's evidence.signing_key, if any, signs the drill's seal too.
        signing_key: None,
        targets: None,
        finding: None,
    })
    .await;

    // Keep a verified local copy of the sealed bundle: the emulator (and the evidence in it)
    // is gone once the drill ends, and the drill must stay reviewable.
    let evidence_copy = keep_copy(&aws.clients, &account, &req.state_dir, &result).await;
    if let Err(e) = &evidence_copy {
        say(req.json, &format!("warning: {e}"));
    }

    // Check.
    let drill = Drill {
        case_id: &case_id,
        account: &account,
        kind: target.kind,
        skipped_profiles: &skipped_profiles,
    };
    let mut card = scorecard(
        &scenario,
        &req,
        &result,
        &case_id,
        seed_s,
        run_checks(&aws.clients, &req, &scenario, &ctx, &result, &drill).await,
        target.name.clone(),
    );
    card.evidence_copy = match &evidence_copy {
        Ok(Some(c)) => Some(c.location.to_string()),
        _ => None,
    };
    card.started_at = drill_started;
    if let Some(p) = &proxy {
        card.chaos = chaos_outcomes(&p.injected(), &req.state_dir, &result);
    }
    if let Some(t) = &scenario.targets {
        check_targets(&mut card, t);
    }
    finish(&req, &card, &result)
}

/// Where a drill seeds and runs.
struct Target {
    /// The AWS options of the seeding and the checks (the run's differ for a chaos drill).
    opts: AwsOptions,
    /// Emulator or account, for the scorecard.
    name: String,
    /// The emulator behind the target, for what it lacks (None: a real account).
    kind: Option<emulator::EmulatorKind>,
    /// The emulator started for this drill, stopped when the drill ends.
    _emulator: Option<Emulator>,
}

impl Target {
    /// The given endpoint (a loopback emulator, or an account confirmed with `--account-id`),
    /// the account of `--account-id`, else a private emulator started now.
    fn of(req: &GamedayRequest) -> Result<Target, Exit> {
        let mut opts = req.aws.clone();
        match &opts.endpoint_url {
            Some(ep) if emulator::loopback_addr(ep).is_some() => {
                let k = req.emulator.unwrap_or_else(|| {
                    if emulator::localstack_ready(ep) {
                        emulator::EmulatorKind::Localstack
                    } else {
                        emulator::EmulatorKind::Moto
                    }
                });
                let name = format!("{} emulator at {ep}", k.as_str());
                if opts.static_credentials.is_none() {
                    opts.static_credentials = Some(("gameday".into(), "gameday".into()));
                }
                Ok(Target {
                    opts,
                    name,
                    kind: Some(k),
                    _emulator: None,
                })
            }
            Some(ep) => {
                if req.account_id.is_none() {
                    say(req.json, &format!("refused: {ep} is not a local emulator; a drill seeds resources, so give --account-id ACCOUNT to confirm the account it may seed"));
                    return Err(Exit::Invalid);
                }
                let name = format!(
                    "account {} via {ep}",
                    req.account_id.as_deref().unwrap_or("")
                );
                Ok(Target {
                    opts,
                    name,
                    kind: None,
                    _emulator: None,
                })
            }
            None if req.account_id.is_some() => Ok(Target {
                name: format!("account {}", req.account_id.as_deref().unwrap_or("")),
                opts,
                kind: None,
                _emulator: None,
            }),
            None => Target::start_emulator(req, opts),
        }
    }

    /// A private emulator on a free loopback port, for this drill only.
    fn start_emulator(req: &GamedayRequest, mut opts: AwsOptions) -> Result<Target, Exit> {
        let k = req.emulator.unwrap_or_default();
        if !req.json {
            let _ = writeln!(
                std::io::stderr().lock(),
                "gameday: starting the {} emulator...",
                k.as_str()
            );
        }
        let e = match Emulator::start_kind(k) {
            Ok(e) => e,
            Err(e) => {
                say(req.json, &format!("error: {e}"));
                return Err(Exit::Invalid);
            }
        };
        opts.endpoint_url = Some(e.endpoint());
        let name = format!(
            "local {} emulator at {} (started for this drill)",
            k.as_str(),
            e.endpoint()
        );
        opts.static_credentials = Some(("gameday".into(), "gameday".into()));
        opts.region.get_or_insert_with(|| "us-east-1".to_owned());
        Ok(Target {
            opts,
            name,
            kind: Some(k),
            _emulator: Some(e),
        })
    }
}

/// The AWS clients, and the account of the credentials (which names the drill's evidence
/// bucket and must own it: ExpectedBucketOwner); refused when `--account-id` says another.
async fn connect(req: &GamedayRequest, opts: &AwsOptions) -> Result<(aws::Aws, String), Exit> {
    let aws = match aws::connect(opts).await {
        Ok(a) => a,
        Err(e) => {
            say(req.json, &format!("error: {e}"));
            return Err(Exit::Invalid);
        }
    };
    let account = match aws.identity().await {
        Ok(id) => match &req.account_id {
            Some(want) if &id.account_id != want => {
                say(req.json, &format!("refused: the credentials are for account {}, not {want}; nothing was seeded", id.account_id));
                return Err(Exit::Invalid);
            }
            _ => id.account_id,
        },
        Err(e) => {
            say(req.json, &format!("error: {e}"));
            return Err(Exit::Invalid);
        }
    };
    Ok((aws, account))
}

/// The run's inputs: the scenario's, rendered from the seed and checked against the
/// playbook's declarations.
fn run_inputs(
    req: &GamedayRequest,
    scenario: &Scenario,
    ctx: &Value,
) -> Result<crate::validate::ResolvedInputs, Exit> {
    let mut pairs = Vec::new();
    for (k, v) in &scenario.inputs {
        let rendered = template::render_value(v, ctx).unwrap_or_else(|_| v.clone());
        let text = match rendered {
            Value::String(s) => s,
            other => other.to_string(),
        };
        pairs.push(format!("{k}={text}"));
    }
    let env = |var: &str| std::env::var(var).ok();
    crate::validate::resolve_inputs_from(&req.playbook, &pairs, None, true, &env).map_err(
        |problems| {
            for p in problems {
                say(req.json, &p.render(None));
            }
            Exit::Invalid
        },
    )
}

/// A chaos drill: the run (only the run: not the seeding, not the checks) talks to the
/// emulator through the fault proxy. The proxy (while it lives) and the run's AWS options.
async fn chaos_proxy(
    req: &GamedayRequest,
    scenario: &Scenario,
    opts: &AwsOptions,
) -> Result<(Option<crate::proxy::FaultProxy>, AwsOptions), Exit> {
    let chaos = match &req.chaos {
        Some(path) => match load_chaos(path) {
            Ok(spec) => Some(spec),
            Err(e) => {
                say(req.json, &format!("error: {e}"));
                return Err(Exit::Invalid);
            }
        },
        None => scenario.chaos.clone(),
    };
    let mut run_opts = opts.clone();
    let proxy = match (&chaos, &opts.endpoint_url) {
        (Some(spec), Some(endpoint)) => {
            match crate::proxy::FaultProxy::start(endpoint, spec.clone()).await {
                Ok(p) => {
                    run_opts.endpoint_url = Some(p.url().to_owned());
                    Some(p)
                }
                Err(e) => {
                    say(
                        req.json,
                        &format!("error: the chaos proxy did not start: {e}"),
                    );
                    return Err(Exit::Invalid);
                }
            }
        }
        (Some(_), None) => {
            say(req.json, "error: a chaos drill runs against an emulator (or --endpoint-url), never an account's own endpoints");
            return Err(Exit::Invalid);
        }
        (None, _) => None,
    };
    Ok((proxy, run_opts))
}

/// What the checks of a drill need to know of it.
struct Drill<'a> {
    case_id: &'a str,
    account: &'a str,
    kind: Option<emulator::EmulatorKind>,
    skipped_profiles: &'a [String],
}

/// The scenario's assertions, rendered from the seed, each checked or skipped.
async fn run_checks(
    aws: &AwsClients,
    req: &GamedayRequest,
    scenario: &Scenario,
    ctx: &Value,
    result: &run::RunResult,
    drill: &Drill<'_>,
) -> Vec<CheckResult> {
    let render = |v: &str| -> String {
        match template::render_str(v, ctx) {
            Ok(Value::String(s)) => s,
            Ok(other) => other.to_string(),
            Err(_) => v.to_owned(),
        }
    };
    let mut checks = Vec::new();
    for exp in &scenario.expect {
        let exp = render_expectation(exp, &render);
        if let Some(why) = skip_reason(&exp, drill.skipped_profiles, result, drill.kind) {
            checks.push(CheckResult {
                check: exp,
                passed: false,
                detail: format!("skipped: {why}"),
                skipped: Some(why),
            });
            continue;
        }
        let (passed, detail) = check(
            aws,
            &exp,
            drill.case_id,
            result,
            &req.state_dir,
            drill.account,
        )
        .await;
        checks.push(CheckResult {
            check: exp,
            passed,
            detail,
            skipped: None,
        });
    }
    checks
}

/// Keeps the scorecard, writes the JUnit file, prints the scorecard; the drill's exit code.
fn finish(req: &GamedayRequest, card: &Scorecard, result: &run::RunResult) -> Exit {
    match save_history(&req.state_dir, card) {
        Ok(path) => {
            if !req.json {
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "scorecard kept in {}",
                    path.display()
                );
            }
        }
        Err(e) => say(req.json, &format!("warning: {e}")),
    }
    if let Some(path) = &req.junit {
        if let Err(e) = std::fs::write(path, junit_xml(card)) {
            say(
                req.json,
                &format!("error: cannot write {}: {e}", path.display()),
            );
            return Exit::Invalid;
        }
    }
    if req.json {
        let mut line = serde_json::to_value(card).unwrap_or_default();
        line["event"] = json!("gameday_finished");
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    } else {
        print!("{}", render_scorecard(card));
    }
    let all_passed = card.checks.iter().all(|c| c.passed || c.skipped.is_some());
    if result.status == Some(RunStatus::Succeeded) && all_passed {
        Exit::Success
    } else {
        Exit::RunFailed
    }
}

/// A new name for a drill's evidence bucket: `irr-gameday-ACCOUNT-YYYYMMDDHHMMSS-RANDOM`
/// (8 hex digits from the OS's random source). Unique per account (bucket names are global:
/// the account id keeps two accounts' drills apart) and per drill (the time and the random
/// part keep two drills, even at the same second, apart), and not guessable ahead of time,
/// so nobody can have created it first; a bucket of that name that does exist is refused
/// anyway (every request carries ExpectedBucketOwner).
pub fn new_drill_bucket(account: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is keyed from the OS's random source, per instance.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    let now = time::OffsetDateTime::now_utc();
    let stamp = format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    drill_bucket_name(account, &stamp, h.finish() as u32)
}

/// `irr-gameday-ACCOUNT-STAMP-RANDOM`, lowercase, at most 63 characters: the account's
/// digits (at most 12), the stamp's digits (at most 14), 8 hex digits.
pub fn drill_bucket_name(account: &str, stamp: &str, random: u32) -> String {
    let digits =
        |s: &str, n: usize| -> String { s.chars().filter(char::is_ascii_digit).take(n).collect() };
    let account = digits(account, 12);
    let stamp = digits(stamp, 14);
    let mut name = String::from("irr-gameday-");
    for part in [account, stamp] {
        if !part.is_empty() {
            name.push_str(&part);
            name.push('-');
        }
    }
    name.push_str(&format!("{random:08x}"));
    name
}

/// The marker beside a drill run's evidence copy: `STATE_DIR/runs/RUN_ID/evidence-copy.json`.
pub const COPY_MARKER: &str = "evidence-copy.json";
/// The folder of a drill run's evidence copy: `STATE_DIR/runs/RUN_ID/evidence-copy/`.
pub const COPY_DIR: &str = "evidence-copy";

/// Copies the run's sealed S3 evidence to `STATE_DIR/runs/RUN_ID/evidence-copy/CASE/RUN/`,
/// verifies the copy and writes `evidence-copy.json` (the original's location and manifest
/// hash). `Ok(None)` when there is nothing to copy (not sealed, or sealed locally already).
async fn keep_copy(
    aws: &AwsClients,
    evidence_owner: &str,
    state_dir: &Path,
    run: &run::RunResult,
) -> Result<Option<irr_forensics::RunCopy>, String> {
    let (Some(run_id), Some(ev)) = (&run.run_id, &run.evidence) else {
        return Ok(None);
    };
    if ev.manifest_sha256.is_none() {
        return Ok(None);
    }
    let loc = irr_forensics::EvidenceLocation::parse(&ev.location)
        .map_err(|e| format!("cannot copy the drill's evidence: {e}"))?;
    if !matches!(loc, irr_forensics::EvidenceLocation::S3 { .. }) {
        return Ok(None);
    }
    let Some((root, case, run_part)) = loc.split_run() else {
        return Ok(None);
    };
    let store = irr_forensics::Store::open(
        &root,
        Some(aws.s3.clone()),
        crate::evidence::read_settings(Some(evidence_owner)),
    )
    .map_err(|e| format!("cannot copy the drill's evidence: {e}"))?;
    let dir = crate::executor::run_dir(state_dir, run_id);
    let copy = irr_forensics::copy_run(&store, &case, &run_part, &dir.join(COPY_DIR))
        .await
        .map_err(|e| format!("cannot copy the drill's evidence from {}: {e}", ev.location))?;
    if !copy.report.is_ok() {
        return Err(format!(
            "the local copy of the drill's evidence at {} does not verify",
            copy.location
        ));
    }
    if ev.manifest_sha256.as_deref() != Some(copy.manifest_sha256.to_hex().as_str()) {
        return Err(format!(
            "the local copy's manifest.json ({}) is not the one sealed ({})",
            copy.manifest_sha256,
            ev.manifest_sha256.as_deref().unwrap_or("")
        ));
    }
    let marker = json!({
        "copy_of": ev.location,
        "manifest_sha256": copy.manifest_sha256.to_hex(),
        "items": copy.items,
        "bytes": copy.bytes,
        "copied_at": irr_forensics::clock::now_rfc3339(),
        "verified": true,
    });
    std::fs::write(
        dir.join(COPY_MARKER),
        serde_json::to_vec_pretty(&marker).unwrap_or_default(),
    )
    .map_err(|e| format!("cannot write {}: {e}", dir.join(COPY_MARKER).display()))?;
    Ok(Some(copy))
}

/// One readable line for an SDK error (see [`irr_forensics::awserr`]).
fn aws_line<E>(service: &str, operation: &str, e: &E) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata
        + irr_forensics::awserr::RawBody
        + std::error::Error
        + 'static,
{
    irr_forensics::awserr::describe(service, operation, e).line()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// S3's rules for a bucket name (general purpose buckets): 3 to 63 characters of
    /// lowercase letters, digits, `.` and `-`, starting and ending with a letter or digit, not
    /// shaped like an IP address, no reserved prefix or suffix. Here: no `.` at all (a dotted
    /// name breaks virtual-hosted TLS).
    fn valid_bucket(name: &str) -> bool {
        (3..=63).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name.ends_with(|c: char| c.is_ascii_alphanumeric())
            && !name.contains("--")
            && !name.starts_with("xn--")
            && !name.starts_with("sthree-")
            && !name.ends_with("-s3alias")
            && !name.ends_with("--ol-s3")
    }

    #[test]
    fn a_drill_bucket_is_named_for_its_account_and_is_new_each_time() {
        let a = new_drill_bucket("123456789012");
        let b = new_drill_bucket("123456789012");
        let c = new_drill_bucket("210987654321");
        for n in [&a, &b, &c] {
            assert!(valid_bucket(n), "{n}");
            assert!(
                irr_forensics::EvidenceLocation::parse(&format!("s3://{n}/cases")).is_ok(),
                "{n}"
            );
        }
        assert!(a.starts_with("irr-gameday-123456789012-"), "{a}");
        assert!(c.starts_with("irr-gameday-210987654321-"), "{c}");
        // Two drills in the same account, even in the same second, get two buckets.
        assert_ne!(a, b);
        // A thousand drills: no name twice (the random part, not only the clock).
        let names: std::collections::BTreeSet<String> = (0..1000)
            .map(|_| new_drill_bucket("123456789012"))
            .collect();
        assert_eq!(names.len(), 1000);
    }

    #[test]
    fn a_drill_bucket_name_stays_valid_whatever_the_account_says() {
        let n = drill_bucket_name("123456789012", "20261202T011648Z", 0xdead_beef);
        assert_eq!(n, "irr-gameday-123456789012-20261202011648-deadbeef");
        assert!(n.len() <= 63);
        // Whatever STS or a test double answers, the name is a valid bucket name: only the
        // digits are used, at most 12 of the account and 14 of the stamp.
        for (account, stamp) in [
            ("", ""),
            ("000000000000", "2026"),
            ("ACCOUNT../--", "x"),
            ("1234567890123456789", "99999999999999999999"),
            ("é😀", "\u{0}"),
        ] {
            let n = drill_bucket_name(account, stamp, u32::MAX);
            assert!(valid_bucket(&n), "{account:?} {stamp:?} -> {n}");
        }
        assert_eq!(
            drill_bucket_name("", "", 1),
            "irr-gameday-00000001",
            "no empty parts"
        );
    }
}
