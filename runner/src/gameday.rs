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
    // The emulator behind the target, for what it lacks (None: a real account).
    let mut kind: Option<emulator::EmulatorKind> = None;
    match &opts.endpoint_url {
        Some(ep) if emulator::loopback_addr(ep).is_some() => {
            let k = req.emulator.unwrap_or_else(|| {
                if emulator::localstack_ready(ep) {
                    emulator::EmulatorKind::Localstack
                } else {
                    emulator::EmulatorKind::Moto
                }
            });
            kind = Some(k);
            target = format!("{} emulator at {ep}", k.as_str());
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
            let k = req.emulator.unwrap_or_default();
            kind = Some(k);
            if !req.json {
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "gameday: starting the {} emulator...",
                    k.as_str()
                );
            }
            match Emulator::start_kind(k) {
                Ok(e) => {
                    opts.endpoint_url = Some(e.endpoint());
                    target = format!(
                        "local {} emulator at {} (started for this drill)",
                        k.as_str(),
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
    // The account names the drill's evidence bucket and must own it (ExpectedBucketOwner).
    let account = match aws.identity().await {
        Ok(id) => match &req.account_id {
            Some(want) if &id.account_id != want => {
                say(req.json, &format!("refused: the credentials are for account {}, not {want}; nothing was seeded", id.account_id));
                return Exit::Invalid;
            }
            _ => id.account_id,
        },
        Err(e) => {
            say(req.json, &format!("error: {e}"));
            return Exit::Invalid;
        }
    };
    let drill_bucket = new_drill_bucket(&account);
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
    let drill_started = irr_forensics::clock::now_rfc3339();
    let seed_start = Instant::now();
    let gaps = EmulatorGaps::of(kind);
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
    let env = |var: &str| std::env::var(var).ok();
    let inputs = match crate::validate::resolve_inputs_from(&req.playbook, &pairs, None, true, &env)
    {
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
    // The drill's own bucket (unique per account and per drill, created with Object Lock),
    // unless the scenario names one.
    let evidence = scenario
        .evidence
        .clone()
        .unwrap_or_else(|| format!("s3://{drill_bucket}/cases"));
    // A chaos drill: the run (only the run: not the seeding, not the checks) talks to the
    // emulator through the fault proxy.
    let chaos = match &req.chaos {
        Some(path) => match load_chaos(path) {
            Ok(spec) => Some(spec),
            Err(e) => {
                say(req.json, &format!("error: {e}"));
                return Exit::Invalid;
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
                    return Exit::Invalid;
                }
            }
        }
        (Some(_), None) => {
            say(req.json, "error: a chaos drill runs against an emulator (or --endpoint-url), never an account's own endpoints");
            return Exit::Invalid;
        }
        (None, _) => None,
    };
    let result = run::run(RunRequest {
        playbook_path: req.playbook_path.clone(),
        playbook: req.playbook.clone(),
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
    })
    .await;

    // Keep a verified local copy of the sealed bundle: the emulator (and the evidence in it)
    // is gone once the drill ends, and the drill must stay reviewable.
    let evidence_copy = keep_copy(&aws.clients, &account, &req.state_dir, &result).await;
    if let Err(e) = &evidence_copy {
        say(req.json, &format!("warning: {e}"));
    }

    // Check.
    let mut checks = Vec::new();
    for exp in &scenario.expect {
        let exp = render_expectation(exp, &render);
        if let Some(why) = skip_reason(&exp, &skipped_profiles, &result, kind) {
            checks.push(CheckResult {
                check: exp,
                passed: false,
                detail: format!("skipped: {why}"),
                skipped: Some(why),
            });
            continue;
        }
        let (passed, detail) = check(
            &aws.clients,
            &exp,
            &case_id,
            &result,
            &req.state_dir,
            &account,
        )
        .await;
        checks.push(CheckResult {
            check: exp,
            passed,
            detail,
            skipped: None,
        });
    }
    let mut card = scorecard(&scenario, &req, &result, &case_id, seed_s, checks, target);
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
    match save_history(&req.state_dir, &card) {
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
        if let Err(e) = std::fs::write(path, junit_xml(&card)) {
            say(
                req.json,
                &format!("error: cannot write {}: {e}", path.display()),
            );
            return Exit::Invalid;
        }
    }
    if req.json {
        let mut line = serde_json::to_value(&card).unwrap_or_default();
        line["event"] = json!("gameday_finished");
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    } else {
        print!("{}", render_scorecard(&card));
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

/// Reads a `--chaos FILE` through the bounded loader first (an alias bomb is refused like in
/// a playbook), then as the fault proxy's spec.
fn load_chaos(path: &Path) -> Result<crate::proxy::ProxySpec, String> {
    let src = crate::load::read_file(path).map_err(|d| d.render(None))?;
    if let Err(problems) = crate::load::parse(&src) {
        return Err(problems
            .iter()
            .map(|d| d.render(Some(&src)))
            .collect::<Vec<_>>()
            .join("\n"));
    }
    crate::proxy::ProxySpec::from_yaml(src.text()).map_err(|e| format!("{}: {e}", path.display()))
}

/// What the run did about each injected fault, from its journal: a gap recorded for that
/// action, a step that failed on it (failed safe: the journal says what was and was not
/// changed), or retried (the SDK's or the step's retry went on).
fn chaos_outcomes(
    injected: &[crate::proxy::Injected],
    state_dir: &Path,
    run: &run::RunResult,
) -> Vec<ChaosOutcome> {
    let journal = run
        .run_id
        .as_ref()
        .map(|id| crate::executor::run_dir(state_dir, id).join("journal.jsonl"))
        .and_then(|p| crate::journal::read(&p).ok())
        .map(|e| crate::journal::replay(&e))
        .unwrap_or_default();
    let mut grouped: BTreeMap<(String, crate::proxy::FaultKind), u64> = BTreeMap::new();
    for i in injected {
        *grouped.entry((i.action.clone(), i.fault)).or_default() += 1;
    }
    grouped
        .into_iter()
        .map(|((action, fault), times)| {
            let (service, operation) = action.split_once(':').unwrap_or((&action, ""));
            let gap = journal
                .gaps
                .iter()
                .map(|(_, g)| g)
                .find(|g| g.what.starts_with(&action));
            let failed_call = journal.calls.iter().find(|c| {
                c.finished.as_ref().is_some_and(|(_, o)| {
                    !o.ok
                        && o.error_message.as_deref().is_some_and(|m| {
                            m.starts_with(&format!("{service}:{operation} failed"))
                        })
                })
            });
            let failed_step = run.steps.iter().find(|s| {
                s.status == StepStatus::Failed
                    && s.error.as_deref().is_some_and(|e| e.contains(&action))
            });
            let (outcome, detail) = match (gap, failed_step, failed_call) {
                (Some(g), _, _) => ("recorded a gap", format!("step {}: {}", g.step, g.what)),
                (None, Some(s), _) => (
                    "failed safe",
                    format!(
                        "step {} failed; the journal records every change made",
                        s.id
                    ),
                ),
                (None, None, Some(_)) => (
                    "retried",
                    "a call failed and the step's retry went on".to_owned(),
                ),
                (None, None, None) => (
                    "retried",
                    "the SDK's retry went on; no step saw it".to_owned(),
                ),
            };
            ChaosOutcome {
                action,
                fault,
                times,
                outcome: outcome.to_owned(),
                detail,
            }
        })
        .collect()
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

/// What the emulator behind a drill cannot do, and so what the drill seeds differently.
#[derive(Debug, Clone, Copy, Default)]
struct EmulatorGaps {
    /// `RunInstances` with `IamInstanceProfile` fails (LocalStack: its EC2 does not see the
    /// profiles its IAM creates, `NoSuchEntity`): instances are seeded without their profile
    /// and the checks on it are skipped.
    no_instance_profile_on_launch: bool,
}

/// Why LocalStack cannot launch an instance with a profile (named in the scorecard).
pub const LOCALSTACK_NO_PROFILE: &str = "LocalStack's EC2 does not see instance profiles created through its IAM (RunInstances with IamInstanceProfile answers NoSuchEntity): the instance was seeded without its profile";

impl EmulatorGaps {
    fn of(kind: Option<emulator::EmulatorKind>) -> EmulatorGaps {
        EmulatorGaps {
            no_instance_profile_on_launch: kind == Some(emulator::EmulatorKind::Localstack),
        }
    }
}

/// Why LocalStack's clean room has no restored volume (named in the scorecard).
pub const LOCALSTACK_NO_CFN_VOLUMES: &str = "LocalStack's CloudFormation does not create AWS::EC2::Volume or AWS::EC2::VolumeAttachment (it reports them CREATE_COMPLETE with physical id \"unknown\"), so no volume is restored from the snapshots (the run records each as a gap), and it launches the workstation in the default VPC whatever its SubnetId says: the clean room cannot be built there";

/// A check that cannot be made because of what the emulator cannot do: the seed had to
/// leave a profile out, or LocalStack's CloudFormation did not create the clean room's
/// volumes (the stack step's `not_created` output; on any other target that is a failed
/// check, not a skipped one).
fn skip_reason(
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

async fn seed(
    aws: &AwsClients,
    items: &[SeedItem],
    gaps: &EmulatorGaps,
    skipped_profiles: &mut Vec<String>,
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
                let g = aws
                    .ec2
                    .create_security_group()
                    .group_name(&uniq)
                    .description("seeded by irr gameday")
                    .vpc_id(r(vpc))
                    .send()
                    .await
                    .map_err(|e| {
                        err(
                            "create security group",
                            &aws_line("ec2", "CreateSecurityGroup", &e),
                        )
                    })?;
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
                        .map_err(|e| {
                            err(
                                "open security group",
                                &aws_line("ec2", "AuthorizeSecurityGroupIngress", &e),
                            )
                        })?;
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
                    .map_err(|e| err("create role", &aws_line("iam", "CreateRole", &e)))?;
                aws.iam
                    .create_instance_profile()
                    .instance_profile_name(&uniq)
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
                    .instance_profile_name(&uniq)
                    .role_name(&uniq)
                    .send()
                    .await
                    .map_err(|e| {
                        err(
                            "add role to profile",
                            &aws_line("iam", "AddRoleToInstanceProfile", &e),
                        )
                    })?;
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
                // The groups go on the interface after launch: both emulators add groups
                // given at launch to every interface they describe, whatever isolation sets
                // later (docs/emulator-notes.md); AWS keeps them per interface.
                let nic = InstanceNetworkInterfaceSpecification::builder()
                    .device_index(0)
                    .subnet_id(&subnet);
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
                let with_profile =
                    instance_profile.is_some() && !gaps.no_instance_profile_on_launch;
                if let Some(p) = instance_profile.as_ref().filter(|_| with_profile) {
                    req = req.iam_instance_profile(
                        IamInstanceProfileSpecification::builder()
                            .name(r(p))
                            .build(),
                    );
                }
                let out = req
                    .send()
                    .await
                    .map_err(|e| err("run instance", &aws_line("ec2", "RunInstances", &e)))?;
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
                    aws.ec2
                        .modify_network_interface_attribute()
                        .network_interface_id(eni)
                        .set_groups(Some(groups.clone()))
                        .send()
                        .await
                        .map_err(|e| {
                            err(
                                "set the interface's groups",
                                &aws_line("ec2", "ModifyNetworkInterfaceAttribute", &e),
                            )
                        })?;
                }
                for n in 0..*extra_interfaces {
                    let mut eni = aws.ec2.create_network_interface().subnet_id(&subnet);
                    for g in &groups {
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
                        .instance_id(&id)
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

async fn check(
    aws: &AwsClients,
    exp: &Expectation,
    case: &str,
    run: &run::RunResult,
    state_dir: &Path,
    evidence_owner: &str,
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
                Err(e) => fail(&aws_line("iam", "ListAccessKeys", &e)),
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
            match irr_forensics::verify_with_owner(&parsed, Some(&aws.s3), Some(evidence_owner))
                .await
            {
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
    let started = journal.first().map(|e| e.ts.clone());
    let journal = crate::journal::replay(&journal);
    let sealed = journal.sealed.first().map(|(ts, _)| ts.clone());
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
    let skipped = checks.iter().filter(|c| c.skipped.is_some()).count();
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
        mutating_api_calls: journal.calls.len(),
        steps,
        score: format!("{passed}/{}", checks.len() - skipped),
        checks,
        evidence: run.evidence.as_ref().map(|e| e.location.clone()),
        target,
        evidence_copy: None,
        chaos: Vec::new(),
        started_at: String::new(),
    }
}

/// Adds a check per target of the scenario: passed when the time was measured and is within.
fn check_targets(card: &mut Scorecard, t: &Targets) {
    for (metric, max, seen) in [
        (
            "time_to_contain",
            &t.time_to_contain,
            card.time_to_contain_s,
        ),
        (
            "time_to_evidence",
            &t.time_to_evidence,
            card.time_to_sealed_evidence_s,
        ),
    ] {
        let Some(max) = max else { continue };
        let limit = parse_target(max).unwrap_or(0.0);
        let (passed, detail) = match seen {
            Some(v) if v <= limit => (true, format!("{v:.2} s, target {max}")),
            Some(v) => (false, format!("{v:.2} s, MISSED the target {max}")),
            None => (false, format!("not measured (target {max})")),
        };
        card.checks.push(CheckResult {
            check: Expectation::Target {
                metric: metric.to_owned(),
                max: max.clone(),
            },
            passed,
            detail,
            skipped: None,
        });
    }
    let passed = card.checks.iter().filter(|c| c.passed).count();
    let skipped = card.checks.iter().filter(|c| c.skipped.is_some()).count();
    card.score = format!("{passed}/{}", card.checks.len() - skipped);
}

/// `STATE_DIR/gamedays/`: one scorecard per drill.
pub fn history_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("gamedays")
}

/// Keeps the scorecard as `STATE_DIR/gamedays/STARTED-CASE.json`.
fn save_history(state_dir: &Path, card: &Scorecard) -> Result<PathBuf, String> {
    let dir = history_dir(state_dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("cannot keep the scorecard in {}: {e}", dir.display()))?;
    let stamp: String = card
        .started_at
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let path = dir.join(format!("{stamp}-{}.json", card.case_id));
    let body = serde_json::to_vec_pretty(card).unwrap_or_default();
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .and_then(|mut f| f.write_all(&body))
        .map_err(|e| format!("cannot keep the scorecard in {}: {e}", path.display()))?;
    Ok(path)
}

/// The name of a check, as the scorecard and JUnit show it (`isolated i-0abc...`).
pub fn check_name(c: &CheckResult) -> String {
    let v = serde_json::to_value(&c.check).unwrap_or_default();
    let kind = v["check"].as_str().unwrap_or("check").to_owned();
    let subject: Vec<String> = v
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.as_str() != "check")
                .map(|(_, v)| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    if subject.is_empty() {
        kind
    } else {
        format!("{kind} {}", subject.join(" "))
    }
}

/// Text for XML: `&<>"'` escaped, characters XML 1.0 cannot hold dropped.
fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// The scorecard as JUnit XML (the schema Jenkins, GitLab and nextest read): one test suite
/// for the drill, one test case per check, a `<failure>` with the check's detail for each
/// failed one; a run that did not succeed is one more failed case, `run`.
pub fn junit_xml(card: &Scorecard) -> String {
    use std::fmt::Write as _;
    let class = format!("irr.gameday.{}", card.playbook);
    let mut cases = Vec::new();
    let status = card
        .status
        .map(|s| format!("{s:?}").to_lowercase())
        .unwrap_or_else(|| "did not run".into());
    cases.push((
        "run".to_owned(),
        card.status == Some(RunStatus::Succeeded),
        format!("run {}: {status}", card.run_id.as_deref().unwrap_or("-")),
        None,
    ));
    for c in &card.checks {
        cases.push((check_name(c), c.passed, c.detail.clone(), c.skipped.clone()));
    }
    let failures = cases.iter().filter(|c| !c.1 && c.3.is_none()).count();
    let skipped = cases.iter().filter(|c| c.3.is_some()).count();
    let total_s = card.time_to_sealed_evidence_s.unwrap_or(0.0) + card.seed_s;
    let mut o = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        o,
        "<testsuites name=\"irr gameday\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{total_s:.3}\">",
        cases.len()
    );
    let _ = writeln!(
        o,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{total_s:.3}\" timestamp=\"{}\" package=\"{}\">",
        xml_escape(&format!("gameday {}", card.scenario)),
        cases.len(),
        xml_escape(card.started_at.trim_end_matches('Z')),
        xml_escape(&class)
    );
    for (name, passed, detail, skip) in &cases {
        let _ = write!(
            o,
            "    <testcase name=\"{}\" classname=\"{}\" time=\"0\"",
            xml_escape(name),
            xml_escape(&class)
        );
        if let Some(why) = skip {
            let _ = writeln!(
                o,
                ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                xml_escape(why)
            );
        } else if *passed {
            o.push_str("/>\n");
        } else {
            let _ = writeln!(
                o,
                ">\n      <failure message=\"{}\" type=\"check\">{}</failure>\n    </testcase>",
                xml_escape(detail),
                xml_escape(detail)
            );
        }
    }
    let _ = writeln!(
        o,
        "    <system-out>{}</system-out>",
        xml_escape(&format!(
            "case {} run {} target {} score {}",
            card.case_id,
            card.run_id.as_deref().unwrap_or("-"),
            card.target,
            card.score
        ))
    );
    o.push_str("  </testsuite>\n</testsuites>\n");
    o
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
    if !c.chaos.is_empty() {
        let _ = writeln!(
            out,
            "\n  chaos (faults injected into the run's AWS traffic):"
        );
        for f in &c.chaos {
            let fault = serde_json::to_value(f.fault)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "    {:<44} {fault} x{}: {} ({})",
                f.action, f.times, f.outcome, f.detail
            );
        }
    }
    let _ = writeln!(out, "\n  checks:");
    for ch in &c.checks {
        let name = serde_json::to_value(&ch.check)
            .ok()
            .and_then(|v| v["check"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let name = match &ch.check {
            Expectation::Target { metric, .. } => format!("target {metric}"),
            _ => name,
        };
        let _ = writeln!(
            out,
            "    {} {:<24} {}",
            if ch.skipped.is_some() {
                "skip"
            } else if ch.passed {
                "pass"
            } else {
                "FAIL"
            },
            name,
            ch.detail
        );
    }
    if let Some(e) = &c.evidence {
        let _ = writeln!(out, "\n  evidence: {e}");
    }
    if let Some(e) = &c.evidence_copy {
        let _ = writeln!(out, "  verified local copy: {e}");
    }
    let skipped = c.checks.iter().filter(|ch| ch.skipped.is_some()).count();
    if skipped > 0 {
        let _ = writeln!(
            out,
            "\n  score: {} checks passed ({skipped} skipped: the emulator lacks what they need)",
            c.score
        );
    } else {
        let _ = writeln!(out, "\n  score: {} checks passed", c.score);
    }
    out
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
