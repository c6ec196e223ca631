//! The command line: raw arguments (clap) -> the command that does the work -> an exit code.
//!
//! Every command returns an [`ExitCode`] through [`crate::exit_codes`], the one place that
//! maps outcomes to the codes of the CLI contract.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::exit_codes::Exit;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};

use crate::catalog;
use crate::diagnostic::{Diagnostic, Source, Span};
use crate::exit_codes;
use crate::model::Playbook;
use crate::plan::{self, PlanContext};
use crate::validate;

/// Prints to stdout, ignoring a closed pipe (`irr plan ... | head`).
macro_rules! out {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// irr: incident-response playbooks for AWS, as code.
#[derive(Debug, Parser)]
#[command(name = "irr", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// AWS profile to use.
    #[arg(long, global = true, env = "AWS_PROFILE")]
    pub profile: Option<String>,
    /// AWS region.
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// AWS endpoint override (e.g. the local emulator).
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,
    /// Where runs are kept (runs live in STATE_DIR/runs/RUN_ID/).
    #[arg(long, global = true, default_value = ".irr")]
    pub state_dir: PathBuf,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Print the full detail of AWS errors (the SDK's chain of causes) to stderr.
    #[arg(long, global = true)]
    pub verbose: bool,
}

/// What `irr compile` compiles to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CompileTarget {
    /// An Amazon States Language state machine and its CloudFormation stack.
    StepFunctions,
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people.
    Text,
    /// For programs.
    Json,
    /// SARIF 2.1.0, for code-scanning annotations (`irr validate` only).
    Sarif,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check playbooks; print every problem with file:line:col.
    Validate {
        /// Playbook files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show what a run would do, step by step; changes nothing.
    Plan {
        /// Playbook file.
        file: PathBuf,
        #[command(flatten)]
        inputs: InputArgs,
    },
    /// Print the least-privilege IAM policy (JSON) that running this playbook needs.
    Policy {
        /// Playbook file.
        file: PathBuf,
        #[command(flatten)]
        inputs: InputArgs,
        /// Scope resources to this account.
        #[arg(long)]
        account_id: Option<String>,
    },
    /// Compile the playbook into an AWS Step Functions state machine and the CloudFormation
    /// stack that runs it (docs/step-functions.md).
    Compile {
        /// Playbook file.
        file: PathBuf,
        /// What to compile to.
        #[arg(long, value_enum)]
        target: CompileTarget,
        /// Folder to write state-machine.asl.json and stack.yaml into.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// An input fixed in the definition, NAME=VALUE (repeatable); the others come from
        /// each execution's input.
        #[arg(long = "input", value_name = "NAME=VALUE")]
        input: Vec<String>,
    },
    /// Create or update the CloudFormation stack `irr compile` wrote into DIR.
    Deploy {
        /// The folder `irr compile` wrote (its stack.yaml).
        dir: PathBuf,
        /// The stack's name (also the state machine's).
        #[arg(long, value_name = "NAME")]
        stack_name: String,
        /// A stack parameter, KEY=VALUE (repeatable); EvidenceBucket is required.
        #[arg(long = "parameter", value_name = "KEY=VALUE")]
        parameter: Vec<String>,
    },
    /// Answer a Step Functions approval (a compiled control.approve step) with the task
    /// token its message carries.
    #[command(group(clap::ArgGroup::new("answer").required(true).args(["yes", "no"])))]
    Approve {
        /// The task token from the approval message.
        token: String,
        /// Approve: the execution goes on.
        #[arg(long)]
        yes: bool,
        /// Decline: the step fails, and the run with it (its finally steps still run).
        #[arg(long)]
        no: bool,
    },
    /// The action catalog: parameters, outputs, IAM actions, whether it can be undone.
    Actions {
        /// One action to show in full.
        name: Option<String>,
    },
    /// JSON Schema of the playbook format, for editors.
    Schema,
    /// Execute a playbook.
    Run {
        /// Playbook file.
        file: PathBuf,
        #[command(flatten)]
        inputs: InputArgs,
        /// Evidence location: s3://bucket/prefix or a local directory (default: the
        /// playbook's evidence.location, else STATE_DIR/evidence).
        #[arg(long, value_name = "LOCATION")]
        evidence: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        /// Change nothing: ask AWS whether each mutating call would be permitted.
        #[arg(long)]
        dry_run: bool,
        /// Steps (and for_each items) running at once. irr's own EC2 buckets pace the calls,
        /// so a fleet is bounded by EC2's limits, not by this.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Act in another account through this role.
        #[arg(long, value_name = "ARN")]
        assume_role: Option<String>,
        /// The account that must own the S3 evidence bucket (12 digits; default: the
        /// caller's account). Every request on the bucket carries it as ExpectedBucketOwner, so
        /// a bucket of that name in another account is refused.
        #[arg(long, value_name = "ACCOUNT", value_parser = parse_account_id)]
        evidence_owner: Option<String>,
        /// Sign the seal with this key: a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID) or a
        /// PEM private key file (default: the playbook's evidence.signing_key).
        #[arg(long, value_name = "KEY")]
        signing_key: Option<String>,
        /// Fan out over these accounts and regions: a YAML file with the keys of the
        /// playbook's `targets:` section (replacing it, if the playbook has one).
        #[arg(long, value_name = "FILE")]
        targets: Option<PathBuf>,
        /// Start from a finding: a GuardDuty or Security Hub (ASFF) finding, JSON, bare or
        /// in its EventBridge event. The playbook's trigger maps it onto inputs and the
        /// account and region to act in; it is the run's first evidence item.
        #[arg(long, value_name = "FILE")]
        finding: Option<PathBuf>,
    },
    /// Continue an interrupted run from its journal; finished steps are not repeated.
    Resume {
        /// The run id (a folder under STATE_DIR/runs/).
        run_id: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        /// Act in another account through this role.
        #[arg(long, value_name = "ARN")]
        assume_role: Option<String>,
        /// A secret input again, NAME=VALUE (run.json never holds them); else the
        /// environment variable IRR_INPUT_NAME is read. Repeatable.
        #[arg(long = "input", value_name = "NAME=VALUE")]
        input: Vec<String>,
        /// The account that must own the S3 evidence bucket: the one recorded when the run
        /// started (default), which this may only repeat.
        #[arg(long, value_name = "ACCOUNT", value_parser = parse_account_id)]
        evidence_owner: Option<String>,
    },
    /// A drill: stand up an incident (in a local emulator by default), run the playbook,
    /// check the outcome, print a scorecard.
    Gameday {
        /// Playbook file.
        file: PathBuf,
        /// Scenario file (default: scenarios/NAME.yaml beside the playbook).
        #[arg(long, value_name = "FILE")]
        scenario: Option<PathBuf>,
        /// Seed a real account (not the emulator): its id, which must match the credentials.
        #[arg(long, value_name = "ACCOUNT")]
        account_id: Option<String>,
        /// The local emulator to start (moto, the default, or localstack, installed by
        /// scripts/ensure-localstack). With --endpoint-url nothing is started: this names the
        /// emulator behind it (default: LocalStack if it answers /_localstack/health, else moto).
        #[arg(long, value_enum, value_name = "KIND")]
        emulator: Option<crate::emulator::EmulatorKind>,
        /// Also write the checks as JUnit XML (one test case per check) to FILE.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// A chaos drill: inject the faults of SPEC (the fault proxy's YAML: rules by
        /// service:Operation, random faults, throttling) into the run's AWS traffic.
        #[arg(long, value_name = "SPEC")]
        chaos: Option<PathBuf>,
    },
    /// Past drills' scorecards over time: time to contain, time to sealed evidence, checks
    /// passed, per playbook.
    History {
        /// A playbook name or file (default: every playbook drilled).
        playbook: Option<String>,
    },
    /// Evidence commands.
    Evidence {
        #[command(subcommand)]
        command: EvidenceCommand,
    },
    /// The run's timeline, steps, AWS calls and evidence, for post-incident review.
    Report {
        /// The run id (a folder under STATE_DIR/runs/).
        run_id: String,
        /// md, html (one self-contained file) or json [default: md; json with --output json].
        #[arg(long, value_enum)]
        format: Option<crate::report::Format>,
        /// Write the report to FILE instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// The account that must own the S3 evidence bucket (default: the one recorded when
        /// the run started, else the caller's account).
        #[arg(long, value_name = "ACCOUNT", value_parser = parse_account_id)]
        evidence_owner: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum EvidenceCommand {
    /// Re-hash every item of a sealed run's evidence against its manifest.
    Verify {
        /// The run's evidence folder: LOCATION/CASE_ID/RUN_ID (local or s3://).
        location: String,
        /// The account that must own the S3 evidence bucket (12 digits; default: the
        /// caller's account). Every request on the bucket carries it as ExpectedBucketOwner, so
        /// a bucket of that name in another account is refused.
        #[arg(long, value_name = "ACCOUNT", value_parser = parse_account_id)]
        evidence_owner: Option<String>,
        /// The key the signature must be made by: a PEM public key file (no AWS access
        /// needed) or a KMS key ARN (checked with KMS GetPublicKey and Verify).
        #[arg(long, value_name = "PEM|KMS-ARN")]
        trusted_key: Option<String>,
        /// Fail (exit 3) when the run has no signature (manifest.sig.json).
        #[arg(long)]
        require_signature: bool,
    },
    /// Sign a sealed run afterwards (its seal was interrupted before the signature, or it was
    /// sealed unsigned). A run signed by another key is refused: a signature is evidence and
    /// is never overwritten.
    Sign {
        /// The run's evidence folder: LOCATION/CASE_ID/RUN_ID (local or s3://).
        location: String,
        /// A KMS key ARN or a PEM private key file.
        #[arg(long, value_name = "KEY")]
        signing_key: String,
    },
    /// Seal a Step Functions execution of a compiled playbook as a run: its history becomes
    /// the run's journal (STATE_DIR/runs/EXECUTION_NAME/), the evidence objects it wrote are
    /// checked against S3's checksums and sealed with it, as `irr run` seals.
    Seal {
        /// The execution: arn:aws:states:REGION:ACCOUNT:execution:STATE_MACHINE:NAME.
        #[arg(long, value_name = "ARN")]
        execution: String,
        /// Where to seal: s3://bucket/prefix or a local directory (default: the bucket and
        /// prefix the execution wrote its evidence objects under).
        #[arg(long, value_name = "LOCATION")]
        evidence: Option<String>,
        /// The account that must own the S3 buckets read and written (12 digits; default: the
        /// caller's account), sent as ExpectedBucketOwner.
        #[arg(long, value_name = "ACCOUNT", value_parser = parse_account_id)]
        evidence_owner: Option<String>,
    },
}

/// `--input`, `--inputs` and `--case`.
#[derive(Debug, Args)]
struct InputArgs {
    /// An input value, NAME=VALUE (a list as comma-separated values or JSON). Repeatable.
    #[arg(long = "input", value_name = "NAME=VALUE")]
    input: Vec<String>,
    /// A YAML file of input values.
    #[arg(long = "inputs", value_name = "FILE")]
    inputs_file: Option<PathBuf>,
    /// The case id (renders `{{case.id}}`).
    #[arg(long = "case", value_name = "ID")]
    case: Option<String>,
}

/// Parses the arguments and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    run(cli).into()
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Exit {
    let g = &cli.global;
    irr_forensics::awserr::set_verbose(g.verbose);
    if g.output == Output::Sarif && !matches!(cli.command, Command::Validate { .. }) {
        let _ = writeln!(
            std::io::stderr().lock(),
            "error: --output sarif is for `irr validate`; use text or json here"
        );
        return exit_codes::INVALID;
    }
    match cli.command {
        Command::Validate { files } => validate_files(&files, g.output),
        Command::Plan { file, inputs } => plan_cmd(&file, &inputs, g),
        Command::Policy {
            file,
            inputs,
            account_id,
        } => policy_cmd(&file, &inputs, account_id, g),
        Command::Actions { name } => actions_cmd(name.as_deref(), g.output),
        c @ (Command::Compile { .. } | Command::Deploy { .. } | Command::Approve { .. }) => {
            step_functions_cmd(c, g)
        }
        Command::Schema => {
            out!("{}", pretty(&crate::schema::schema()));
            exit_codes::SUCCESS
        }
        Command::Run {
            file,
            inputs,
            evidence,
            yes,
            dry_run,
            concurrency,
            assume_role,
            evidence_owner,
            signing_key,
            targets,
            finding,
        } => {
            let targets = match targets.map(|t| targets_file(&t)).transpose() {
                Ok(t) => t,
                Err((problems, sources)) => {
                    report_problems(&problems, &sources, g.output);
                    return exit_codes::INVALID;
                }
            };
            let Some(case_id) = inputs.case.clone() else {
                report_problems(
                    &[
                        Diagnostic::error(Span::none("irr run"), "--case is required")
                            .with_help("name the incident, e.g. --case IR-2026-0042"),
                    ],
                    &[],
                    g.output,
                );
                return exit_codes::INVALID;
            };
            let loaded = load_with_finding(&file, &inputs, g.output, finding.as_deref());
            let (pb, values, finding) = match loaded {
                Ok(x) => x,
                Err(code) => return code,
            };
            let req = crate::run::RunRequest {
                playbook_path: file,
                playbook: pb,
                inputs: values.values,
                defaulted_inputs: values.defaulted,
                case_id,
                evidence,
                yes,
                dry_run,
                concurrency,
                state_dir: g.state_dir.clone(),
                json: g.output == Output::Json,
                aws: aws_options(g, assume_role),
                create_evidence_bucket: false,
                evidence_owner,
                signing_key,
                targets,
                finding,
            };
            block_on(crate::run::run(req)).exit
        }
        Command::Resume {
            run_id,
            yes,
            assume_role,
            input,
            evidence_owner,
        } => resume_cmd(&run_id, yes, assume_role, &input, evidence_owner, g),
        Command::Evidence { command } => evidence_cmd(command, g),
        c @ Command::Report { .. } => report_cmd(c, g),
        Command::History { playbook } => {
            crate::history::command(&g.state_dir, playbook.as_deref(), g.output == Output::Json)
        }
        Command::Gameday {
            file,
            scenario,
            account_id,
            junit,
            emulator,
            chaos,
        } => gameday_cmd(file, scenario, account_id, junit, emulator, chaos, g),
    }
}

/// `irr resume`: goes on with an interrupted run.
fn resume_cmd(
    run_id: &str,
    yes: bool,
    assume_role: Option<String>,
    input: &[String],
    evidence_owner: Option<String>,
    g: &GlobalArgs,
) -> Exit {
    let opts = aws_options(g, assume_role);
    block_on(crate::run::resume(
        run_id,
        &g.state_dir,
        yes,
        g.output == Output::Json,
        opts,
        input,
        evidence_owner,
    ))
    .exit
}

/// `irr gameday`: validates the playbook, then runs the drill.
fn gameday_cmd(
    file: PathBuf,
    scenario: Option<PathBuf>,
    account_id: Option<String>,
    junit: Option<PathBuf>,
    emulator: Option<crate::emulator::EmulatorKind>,
    chaos: Option<PathBuf>,
    g: &GlobalArgs,
) -> Exit {
    let src = match read_source(&file) {
        Ok(s) => s,
        Err(d) => {
            report_problems(&[d], &[], g.output);
            return exit_codes::INVALID;
        }
    };
    let playbook = match validate::validate(&src) {
        Ok(p) => p,
        Err(problems) => {
            report_problems(&problems, std::slice::from_ref(&src), g.output);
            return exit_codes::INVALID;
        }
    };
    let req = crate::gameday::GamedayRequest {
        playbook_path: file,
        playbook,
        scenario_path: scenario,
        aws: aws_options(g, None),
        account_id,
        emulator,
        state_dir: g.state_dir.clone(),
        json: g.output == Output::Json,
        junit,
        chaos,
    };
    block_on(crate::gameday::gameday(req))
}

fn aws_options(g: &GlobalArgs, assume_role: Option<String>) -> crate::aws::AwsOptions {
    crate::aws::AwsOptions {
        profile: g.profile.clone(),
        region: g.region.clone(),
        endpoint_url: g.endpoint_url.clone(),
        assume_role,
        static_credentials: None,
    }
}

/// Runs `f` to completion on a multi-threaded runtime.
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Headroom over the 2 MiB default: an action's SDK futures are large in a debug
        // build (the big ones are boxed; this is the margin, not the fix).
        .thread_stack_size(8 << 20)
        .build()
        .expect("start the async runtime")
        .block_on(f)
}

/// `--evidence-owner`: a 12-digit AWS account id.
fn parse_account_id(s: &str) -> Result<String, String> {
    irr_forensics::check_account_id(s).map(|()| s.to_owned())
}

/// `irr evidence verify`, `irr evidence sign` and `irr evidence seal`.
fn evidence_cmd(command: EvidenceCommand, g: &GlobalArgs) -> Exit {
    match command {
        EvidenceCommand::Verify {
            location,
            evidence_owner,
            trusted_key,
            require_signature,
        } => {
            let sig = SignatureArgs {
                trusted_key,
                require_signature,
            };
            verify_cmd(&location, evidence_owner.as_deref(), &sig, g)
        }
        EvidenceCommand::Sign {
            location,
            signing_key,
        } => crate::signing::sign_cmd(
            &location,
            &signing_key,
            &aws_options(g, None),
            g.output == Output::Json,
        ),
        EvidenceCommand::Seal {
            execution,
            evidence,
            evidence_owner,
        } => crate::execution::command(crate::execution::SealRequest {
            execution_arn: execution,
            evidence,
            evidence_owner,
            state_dir: g.state_dir.clone(),
            json: g.output == Output::Json,
            aws: aws_options(g, None),
        }),
    }
}

/// `irr evidence verify`'s signature flags.
struct SignatureArgs {
    trusted_key: Option<String>,
    require_signature: bool,
}

/// The S3 client and expected owner for an S3 location (`None`s for a local one), and the
/// signature options; `Err((unreadable, message))`.
async fn verify_setup(
    loc: &irr_forensics::EvidenceLocation,
    evidence_owner: Option<&str>,
    sig: &SignatureArgs,
    g: &GlobalArgs,
) -> Result<
    (
        Option<aws_sdk_s3::Client>,
        Option<String>,
        irr_forensics::SignatureOptions,
    ),
    (bool, String),
> {
    let s3 = matches!(loc, irr_forensics::EvidenceLocation::S3 { .. });
    let kms = crate::signing::needs_aws(sig.trusted_key.as_deref());
    let aws = if s3 || kms {
        Some(
            crate::aws::connect(&aws_options(g, None))
                .await
                .map_err(|e| (true, e.to_string()))?,
        )
    } else {
        None
    };
    let trusted_key = sig
        .trusted_key
        .as_deref()
        .map(|t| crate::signing::trusted_key(t, aws.as_ref().map(|a| &a.config)))
        .transpose()
        .map_err(|e| (false, e))?;
    let opts = irr_forensics::SignatureOptions {
        trusted_key,
        require_signature: sig.require_signature,
    };
    let Some(aws) = aws.filter(|_| s3) else {
        return Ok((None, None, opts));
    };
    // S3: every request carries the expected owner (--evidence-owner, else the caller's
    // account), so a look-alike bucket in another account is refused, not verified.
    let owner = match evidence_owner {
        Some(o) => o.to_owned(),
        None => {
            aws.identity()
                .await
                .map_err(|e| (true, e.to_string()))?
                .account_id
        }
    };
    Ok((Some(aws.clients.s3), Some(owner), opts))
}

fn verify_cmd(
    location: &str,
    evidence_owner: Option<&str>,
    sig: &SignatureArgs,
    g: &GlobalArgs,
) -> Exit {
    let loc = match irr_forensics::EvidenceLocation::parse(location) {
        Ok(l) => l,
        Err(e) => {
            report_problems(
                &[Diagnostic::error(Span::none(location), e.to_string())],
                &[],
                g.output,
            );
            return exit_codes::INVALID;
        }
    };
    // Err((unreadable, message)): unreadable = the evidence could not be read (exit 5),
    // else it is not there or not a run (exit 3).
    // A trusted key file that cannot be read is a usage error, found before anything is read.
    if let Some(t) = sig.trusted_key.as_deref() {
        if !crate::signing::needs_aws(Some(t)) {
            if let Err(e) = crate::signing::trusted_key(t, None) {
                report_problems(&[Diagnostic::error(Span::none(t), e)], &[], g.output);
                return exit_codes::INVALID;
            }
        }
    }
    let report = block_on(async {
        let (client, owner, opts) = verify_setup(&loc, evidence_owner, sig, g).await?;
        irr_forensics::verify_with_options(&loc, client.as_ref(), owner.as_deref(), &opts)
            .await
            .map_err(|e| (e.is_unreadable(), e.to_string()))
    });
    match report {
        Err((unreadable, e)) => {
            let status = if unreadable { "unverifiable" } else { "error" };
            match g.output {
                Output::Json => out!(
                    "{}",
                    json!({"status": status, "location": location, "message": e})
                ),
                Output::Text | Output::Sarif if unreadable => {
                    let _ = writeln!(
                        std::io::stderr().lock(),
                        "unverifiable: cannot read {location}, so nothing was verified (nothing is known to be altered): {e}"
                    );
                }
                Output::Text | Output::Sarif => {
                    let _ = writeln!(
                        std::io::stderr().lock(),
                        "error: cannot verify {location}: {e}"
                    );
                }
            }
            if unreadable {
                exit_codes::UNVERIFIABLE
            } else {
                exit_codes::EVIDENCE_MISMATCH
            }
        }
        Ok(report) => {
            match g.output {
                Output::Json => out!(
                    "{}",
                    pretty(&serde_json::to_value(&report).unwrap_or_default())
                ),
                Output::Text | Output::Sarif => {
                    let _ = write!(std::io::stdout().lock(), "{report}");
                }
            }
            if report.is_ok() {
                exit_codes::SUCCESS
            } else {
                exit_codes::EVIDENCE_MISMATCH
            }
        }
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// Prints diagnostics: rendered to stderr (text), or as one `{"problems": [...]}` object on
/// stdout (json).
/// Reads and checks `--targets FILE`; `Err` is every problem, with the file to show them in.
fn targets_file(
    path: &Path,
) -> Result<crate::targets::TargetsDecl, (Vec<Diagnostic>, Vec<Source>)> {
    let source = crate::load::read_file(path).map_err(|d| (vec![d], Vec::new()))?;
    crate::validate::targets_file(&source).map_err(|p| (p, vec![source]))
}

pub(crate) fn report_problems(problems: &[Diagnostic], sources: &[Source], output: Output) {
    match output {
        Output::Json => {
            let list: Vec<Value> = problems.iter().map(Diagnostic::to_json).collect();
            out!(
                "{}",
                pretty(
                    &json!({ "valid": !problems.iter().any(Diagnostic::is_error), "problems": list })
                )
            );
        }
        Output::Text | Output::Sarif => {
            let mut err = std::io::stderr().lock();
            for d in problems {
                let src = sources.iter().find(|s| s.name() == d.span.file);
                let _ = writeln!(err, "{}", d.render(src));
            }
            let errors = problems.iter().filter(|d| d.is_error()).count();
            if errors > 0 {
                let _ = writeln!(
                    err,
                    "{errors} error{} found; nothing was changed",
                    if errors == 1 { "" } else { "s" }
                );
            }
        }
    }
}

/// A playbook or inputs file, read within the loader's size limit.
fn read_source(path: &Path) -> Result<Source, Diagnostic> {
    crate::load::read_file(path)
}

fn validate_files(files: &[PathBuf], output: Output) -> Exit {
    let mut problems = Vec::new();
    let mut sources = Vec::new();
    let mut ok = Vec::new();
    for f in files {
        match read_source(f) {
            Err(d) => problems.push(d),
            Ok(src) => {
                let (pb, p) = validate::check(&src);
                if let Some(pb) = pb {
                    ok.push((f.display().to_string(), pb.steps.len() + pb.finally.len()));
                }
                problems.extend(p);
                sources.push(src);
            }
        }
    }
    let failed = problems.iter().any(Diagnostic::is_error);
    if output == Output::Sarif {
        out!("{}", pretty(&crate::diagnostic::sarif(&problems)));
        return if failed {
            exit_codes::INVALID
        } else {
            exit_codes::SUCCESS
        };
    }
    if output == Output::Json || !problems.is_empty() {
        report_problems(&problems, &sources, output);
    }
    if output == Output::Text {
        for (f, n) in ok {
            out!("ok: {f} ({n} steps)");
        }
    }
    if failed {
        exit_codes::INVALID
    } else {
        exit_codes::SUCCESS
    }
}

/// Loads, validates and resolves inputs (secret inputs also from `IRR_INPUT_NAME`); on any
/// problem prints it and returns the exit code.
fn load_with_inputs(
    file: &Path,
    args: &InputArgs,
    output: Output,
    require_all: bool,
) -> Result<(Playbook, validate::ResolvedInputs), Exit> {
    load_with_given(file, args, output, require_all, None).map(|(pb, inputs, _)| (pb, inputs))
}

/// [`load_with_inputs`] for `irr run`, with the inputs that `--finding` maps through the
/// playbook's trigger (`crate::finding`): a finding the trigger cannot use is refused here,
/// naming what is wrong, before anything changes; an input it maps may not be given again.
fn load_with_finding(
    file: &Path,
    args: &InputArgs,
    output: Output,
    finding: Option<&Path>,
) -> Result<LoadedRun, Exit> {
    load_with_given(file, args, output, true, finding)
}

/// A playbook, its inputs and the finding that starts the run.
type LoadedRun = (
    Playbook,
    validate::ResolvedInputs,
    Option<crate::finding::Triggered>,
);

fn load_with_given(
    file: &Path,
    args: &InputArgs,
    output: Output,
    require_all: bool,
    finding: Option<&Path>,
) -> Result<LoadedRun, Exit> {
    let src = read_source(file).map_err(|d| {
        report_problems(&[d], &[], output);
        exit_codes::INVALID
    })?;
    let pb = validate::validate(&src).map_err(|p| {
        report_problems(&p, std::slice::from_ref(&src), output);
        exit_codes::INVALID
    })?;
    if let Some(case) = &args.case {
        if let Err(e) = check_case_id(case) {
            report_problems(
                &[Diagnostic::error(Span::none(format!("--case {case}")), e)],
                &[],
                output,
            );
            return Err(exit_codes::INVALID);
        }
    }
    let inputs_src = match &args.inputs_file {
        None => None,
        Some(p) => Some(read_source(p).map_err(|d| {
            report_problems(&[d], &[], output);
            exit_codes::INVALID
        })?),
    };
    let triggered = match finding {
        None => None,
        Some(f) => Some(crate::finding::load(f, &pb).map_err(|e| {
            let msg = format!("--finding {}: {}", f.display(), e.message);
            let d = Diagnostic::error(Span::none("irr run"), msg)
                .with_help("the playbook's trigger: section says which findings it takes and the JSONPath of each input (docs/playbook-reference.md#trigger)");
            report_problems(&[d], &[], output);
            exit_codes::INVALID
        })?),
    };
    let given = triggered
        .as_ref()
        .map(|t| t.mapped.given())
        .unwrap_or_default();
    let env = |var: &str| std::env::var(var).ok();
    let inputs = validate::resolve_inputs_given(
        &pb,
        &args.input,
        inputs_src.as_ref(),
        &given,
        require_all,
        &env,
    )
    .map_err(|p| {
        let mut sources = vec![src.clone()];
        sources.extend(inputs_src.clone());
        report_problems(&p, &sources, output);
        exit_codes::INVALID
    })?;
    Ok((pb, inputs, triggered))
}

/// A case id names folders and tags: letters, digits, `.`, `_` and `-`, at most 64.
pub fn check_case_id(case: &str) -> Result<(), String> {
    let ok = !case.is_empty()
        && case.len() <= 64
        && case
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !case.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "case id \"{case}\" must be 1-64 letters, digits, '.', '_' or '-' (e.g. IR-2026-0042)"
        ))
    }
}

fn plan_cmd(file: &Path, args: &InputArgs, g: &GlobalArgs) -> Exit {
    let (pb, inputs) = match load_with_inputs(file, args, g.output, true) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let ctx = PlanContext {
        case_id: args.case.clone(),
        region: g.region.clone(),
        defaulted_inputs: Some(inputs.defaulted.clone()),
        ..Default::default()
    };
    let plan = plan::plan(&pb, inputs.values, &ctx);
    let secrets = plan::secrets(&pb, &plan, file.parent().unwrap_or(Path::new(".")));
    match g.output {
        Output::Json => out!(
            "{}",
            pretty(&secrets.mask_value(&serde_json::to_value(&plan).unwrap_or_default()))
        ),
        Output::Text | Output::Sarif => {
            let _ = write!(
                std::io::stdout().lock(),
                "{}",
                secrets.mask_str(&plan.render_text())
            );
        }
    }
    exit_codes::SUCCESS
}

/// `irr report RUN_ID`.
fn report_cmd(c: Command, g: &GlobalArgs) -> Exit {
    let Command::Report {
        run_id,
        format,
        out,
        evidence_owner,
    } = c
    else {
        unreachable!("only report comes here")
    };

    let format = format.unwrap_or(match g.output {
        Output::Json => crate::report::Format::Json,
        Output::Text | Output::Sarif => crate::report::Format::Md,
    });
    let aws = aws_options(g, None);
    crate::report::command(
        &run_id,
        format,
        out.as_deref(),
        &g.state_dir,
        aws,
        evidence_owner,
    )
}

/// `irr compile` and `irr deploy` (`crate::compile::command`).
fn step_functions_cmd(c: Command, g: &GlobalArgs) -> Exit {
    match c {
        Command::Compile {
            file,
            target: CompileTarget::StepFunctions,
            out,
            input,
        } => {
            let args = InputArgs {
                input,
                inputs_file: None,
                case: None,
            };
            match load_with_inputs(&file, &args, g.output, false) {
                Ok((pb, inputs)) => crate::compile::command::compile(&pb, inputs, &out, g.output),
                Err(code) => code,
            }
        }
        Command::Deploy {
            dir,
            stack_name,
            parameter,
        } => crate::compile::command::deploy(
            &dir,
            &stack_name,
            &parameter,
            &aws_options(g, None),
            g.output,
        ),
        Command::Approve { token, yes, .. } => {
            crate::compile::command::approve(&token, yes, &aws_options(g, None), g.output)
        }
        _ => unreachable!("only compile, deploy and approve come here"),
    }
}

fn policy_cmd(file: &Path, args: &InputArgs, account_id: Option<String>, g: &GlobalArgs) -> Exit {
    let (pb, inputs) = match load_with_inputs(file, args, g.output, false) {
        Ok(x) => x,
        Err(code) => return code,
    };
    if let Some(a) = &account_id {
        if a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()) {
            report_problems(
                &[Diagnostic::error(
                    Span::none(format!("--account-id {a}")),
                    "an account id is 12 digits",
                )],
                &[],
                g.output,
            );
            return exit_codes::INVALID;
        }
    }
    let ctx = PlanContext {
        case_id: args.case.clone(),
        region: g.region.clone(),
        account_id,
        defaulted_inputs: Some(inputs.defaulted.clone()),
        ..Default::default()
    };
    let plan = plan::plan(&pb, inputs.values, &ctx);
    let secrets = plan::secrets(&pb, &plan, file.parent().unwrap_or(Path::new(".")));
    out!(
        "{}",
        pretty(&secrets.mask_value(&crate::policy::policy(&plan)))
    );
    exit_codes::SUCCESS
}

/// The catalog entry as JSON (for `irr actions --output json`).
pub fn action_json(a: &catalog::ActionSpec) -> Value {
    json!({
        "name": a.name,
        "summary": a.summary,
        "parameters": a.params.iter().map(|p| json!({
            "name": p.name,
            "type": p.ty.value_type().to_string(),
            "required": p.required,
            "default": p.default,
            "description": p.description,
        })).collect::<Vec<_>>(),
        "exactly_one_of": a.exactly_one_of,
        "at_least_one_of": a.at_least_one_of,
        "outputs": a.outputs.iter().map(|o| json!({
            "name": o.name,
            "type": o.ty.value_type().to_string(),
            "description": o.description,
        })).collect::<Vec<_>>(),
        "api_calls": a.api_calls,
        "iam_actions": a.permissions.iter().map(|p| p.action).collect::<Vec<_>>(),
        "mutating": a.mutating,
        "idempotency": a.idempotency,
        "undo": a.undo,
    })
}

fn actions_cmd(name: Option<&str>, output: Output) -> Exit {
    let list: Vec<&catalog::ActionSpec> = match name {
        None => catalog::all().iter().collect(),
        Some(n) => match catalog::find(n) {
            Some(a) => vec![a],
            None => {
                let help = crate::diagnostic::suggestion(n, &catalog::names());
                let d =
                    Diagnostic::error(Span::none("irr actions"), format!("unknown action \"{n}\""))
                        .with_help(help);
                report_problems(&[d], &[], output);
                return exit_codes::INVALID;
            }
        },
    };
    if output == Output::Json {
        let v: Vec<Value> = list.iter().map(|a| action_json(a)).collect();
        out!(
            "{}",
            pretty(&if name.is_some() {
                v[0].clone()
            } else {
                Value::Array(v)
            })
        );
        return exit_codes::SUCCESS;
    }
    if name.is_none() {
        let width = list.iter().map(|a| a.name.len()).max().unwrap_or(0);
        for a in list {
            let tag = if a.mutating { "changes" } else { "reads  " };
            out!("{:width$}  {tag}  {}", a.name, a.summary);
        }
        out!("\n`irr actions NAME` shows one in full.");
        return exit_codes::SUCCESS;
    }
    let a = list[0];
    out!("{}\n  {}\n", a.name, a.summary);
    out!("parameters:");
    for p in a.params {
        let req = if p.required {
            "required".to_owned()
        } else {
            p.default
                .map(|d| format!("default {d}"))
                .unwrap_or_else(|| "optional".to_owned())
        };
        out!(
            "  {} ({}, {req}): {}",
            p.name,
            p.ty.value_type(),
            p.description
        );
    }
    for group in a.exactly_one_of {
        out!("  exactly one of: {}", group.join(", "));
    }
    for group in a.at_least_one_of {
        out!("  at least one of: {}", group.join(", "));
    }
    if !a.outputs.is_empty() {
        out!("outputs:");
        for o in a.outputs {
            out!("  {} ({}): {}", o.name, o.ty.value_type(), o.description);
        }
    }
    if !a.api_calls.is_empty() {
        out!("API calls: {}", a.api_calls.join(", "));
    }
    let iam: Vec<&str> = a.permissions.iter().map(|p| p.action).collect();
    if !iam.is_empty() {
        out!("IAM actions: {}", iam.join(", "));
    }
    out!("changes AWS: {}", if a.mutating { "yes" } else { "no" });
    out!("idempotency: {}", a.idempotency);
    out!("undo: {}", a.undo.unwrap_or("cannot be undone"));
    exit_codes::SUCCESS
}
