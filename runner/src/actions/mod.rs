//! The responder moves themselves: one module per AWS service family.
//!
//! Every action is declared once, in its module, as an [`Action`] impl (typed parameters,
//! declaration, implementation) listed in [`REGISTRY`]; the catalog (`crate::catalog`) is
//! derived from the registry. The executor renders the step's `with` against the run's
//! context, then calls [`dispatch`], which deserialises the parameters into the action's typed
//! struct and runs it.
//!
//! Rules every action follows:
//! - record what it saw before it changed anything (`ctx.recorder.artifact(..)`);
//! - wrap every mutating AWS call in [`ActionCtx::mutating`], so the journal holds an entry
//!   before the call and one after it (with the AWS request id), flushed before the next call;
//! - be idempotent: find what an earlier attempt made (by the case tag or a client token) and
//!   reuse it, so a retried or resumed step never creates a second copy of anything;
//! - honour `ctx.dry_run`: ask AWS whether the call would be permitted (EC2 `DryRun`) and
//!   change nothing.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_types::request_id::RequestId;
use irr_forensics::awserr::RawBody;
use serde_json::Value;

use crate::catalog::ActionSpec;

/// The AWS clients an action may use, all built from one `SdkConfig`.
#[derive(Clone, Debug)]
pub struct AwsClients {
    /// EC2.
    pub ec2: aws_sdk_ec2::Client,
    /// IAM.
    pub iam: aws_sdk_iam::Client,
    /// S3 (path-style when an endpoint override is set).
    pub s3: aws_sdk_s3::Client,
    /// STS.
    pub sts: aws_sdk_sts::Client,
    /// CloudFormation.
    pub cloudformation: aws_sdk_cloudformation::Client,
    /// EC2 Auto Scaling (to take a contained instance out of its group).
    pub autoscaling: aws_sdk_autoscaling::Client,
    /// The EBS direct APIs (snapshot blocks). With an endpoint override (an emulator) its
    /// `ListSnapshotBlocks` answers are mended for moto ([`ebs::moto`]).
    pub ebs: OnFirstUse<aws_sdk_ebs::Client>,
    /// The account's EBS direct API quotas, shared by every snapshot hashed in this process.
    pub ebs_quota: std::sync::Arc<ebs::Quota>,
    /// Systems Manager (Run Command on a managed instance: `ssm.capture_volatile`).
    pub ssm: OnFirstUse<aws_sdk_ssm::Client>,
    /// Step Functions (reading an execution's history: `irr evidence seal --execution`).
    pub sfn: OnFirstUse<aws_sdk_sfn::Client>,
    /// irr's copy of EC2's token buckets for this account-region, in front of `ec2`'s HTTP
    /// client (`None` with `IRR_EC2_BUCKETS=off`).
    pub ec2_limiter: Option<std::sync::Arc<crate::ratelimit::Limiter>>,
    /// `true` with an endpoint override (an emulator on loopback): where an emulator lacks
    /// what AWS has, an action asks in the form the emulator knows (docs/emulator-notes.md).
    pub endpoint_override: bool,
    /// Reads batched across a `for_each` step's items ([`ec2::Fleet`]), and the case's
    /// isolation groups per VPC, made once per run.
    pub fleet: std::sync::Arc<ec2::Fleet>,
}

impl AwsClients {
    /// Builds every client from one loaded configuration. S3 uses path-style addressing when
    /// `path_style` is set (needed against an emulator on loopback; set exactly when there is
    /// an endpoint override, which also mends moto's EBS listings).
    pub fn from_conf(conf: &aws_config::SdkConfig, path_style: bool) -> Self {
        AwsClients::from_conf_in(conf, path_style, None)
    }

    /// [`AwsClients::from_conf`] for one account-region of a fan-out (`partition`:
    /// `ACCOUNT/REGION`): EC2, IAM and STS get a retry partition of their own, so the SDK's
    /// retry quota spent on one target's throttling is never another's (irr's own EC2 buckets
    /// are per client set already).
    pub fn from_conf_in(
        conf: &aws_config::SdkConfig,
        path_style: bool,
        partition: Option<&str>,
    ) -> Self {
        use aws_sdk_ec2::config::retry::RetryPartition;
        let part =
            |service: &str| partition.map(|p| RetryPartition::new(format!("irr-{service}-{p}")));
        let iam = match part("iam") {
            Some(p) => aws_sdk_iam::Client::from_conf(
                aws_sdk_iam::config::Builder::from(conf)
                    .retry_partition(p)
                    .build(),
            ),
            None => aws_sdk_iam::Client::new(conf),
        };
        let sts = match part("sts") {
            Some(p) => aws_sdk_sts::Client::from_conf(
                aws_sdk_sts::config::Builder::from(conf)
                    .retry_partition(p)
                    .build(),
            ),
            None => aws_sdk_sts::Client::new(conf),
        };
        let s3_conf = aws_sdk_s3::config::Builder::from(conf)
            .force_path_style(path_style)
            .build();
        let ec2_limiter = crate::ratelimit::enabled()
            .then(|| std::sync::Arc::new(crate::ratelimit::Limiter::new()));
        let ec2 = match &ec2_limiter {
            Some(limiter) => {
                let inner = conf
                    .http_client()
                    .unwrap_or_else(crate::ratelimit::default_https_client);
                // A call waiting for its token has not started sending its body: the SDK's
                // upload stall check (0 B/s for 5 s) would take that wait for a stalled
                // upload. EC2's query bodies are a few KiB sent at once; downloads keep theirs.
                let stall = aws_sdk_ec2::config::StalledStreamProtectionConfig::enabled()
                    .upload_enabled(false)
                    .build();
                let mut b = aws_sdk_ec2::config::Builder::from(conf)
                    .http_client(crate::ratelimit::LimitedHttpClient::new(
                        inner,
                        limiter.clone(),
                    ))
                    .stalled_stream_protection(stall);
                if let Some(p) = part("ec2") {
                    b = b.retry_partition(p);
                }
                aws_sdk_ec2::Client::from_conf(b.build())
            }
            None => match part("ec2") {
                Some(p) => aws_sdk_ec2::Client::from_conf(
                    aws_sdk_ec2::config::Builder::from(conf)
                        .retry_partition(p)
                        .build(),
                ),
                None => aws_sdk_ec2::Client::new(conf),
            },
        };
        AwsClients {
            ec2,
            ec2_limiter,
            endpoint_override: path_style,
            fleet: std::sync::Arc::default(),
            iam,
            s3: aws_sdk_s3::Client::from_conf(s3_conf),
            sts,
            cloudformation: aws_sdk_cloudformation::Client::new(conf),
            autoscaling: aws_sdk_autoscaling::Client::new(conf),
            ebs: {
                let conf = conf.clone();
                OnFirstUse::new(move || ebs_client(&conf, path_style))
            },
            ebs_quota: std::sync::Arc::default(),
            ssm: {
                let conf = conf.clone();
                OnFirstUse::new(move || aws_sdk_ssm::Client::new(&conf))
            },
            sfn: {
                let conf = conf.clone();
                OnFirstUse::new(move || aws_sdk_sfn::Client::new(&conf))
            },
        }
    }
}

/// A client built on its first use: the services only some playbooks call (the EBS direct
/// APIs, SSM) or only one command uses (Step Functions) cost a run that never calls them
/// nothing (no memory, no start-up work).
#[derive(Clone)]
pub struct OnFirstUse<T> {
    cell: Arc<std::sync::OnceLock<T>>,
    make: Arc<dyn Fn() -> T + Send + Sync>,
}

impl<T> OnFirstUse<T> {
    /// Built by `make` when first used.
    pub fn new(make: impl Fn() -> T + Send + Sync + 'static) -> Self {
        OnFirstUse {
            cell: Arc::default(),
            make: Arc::new(make),
        }
    }

    /// Already built (tests with a mocked client).
    pub fn ready(client: T) -> Self
    where
        T: Clone + Send + Sync + 'static,
    {
        let cell = std::sync::OnceLock::new();
        let _ = cell.set(client.clone());
        OnFirstUse {
            cell: Arc::new(cell),
            make: Arc::new(move || client.clone()),
        }
    }
}

impl<T> std::ops::Deref for OnFirstUse<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.cell.get_or_init(|| (self.make)())
    }
}

impl<T> std::fmt::Debug for OnFirstUse<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.cell.get().is_some() {
            "OnFirstUse(built)"
        } else {
            "OnFirstUse(not yet built)"
        })
    }
}

/// The EBS client; against an emulator (`emulator`: an endpoint override) its HTTP client
/// mends moto's listings ([`ebs::moto`]).
fn ebs_client(conf: &aws_config::SdkConfig, emulator: bool) -> aws_sdk_ebs::Client {
    if !emulator {
        return aws_sdk_ebs::Client::new(conf);
    }
    let inner = conf
        .http_client()
        .unwrap_or_else(crate::ratelimit::default_https_client);
    aws_sdk_ebs::Client::from_conf(
        aws_sdk_ebs::config::Builder::from(conf)
            .http_client(ebs::moto::MotoListingClient::new(inner))
            .build(),
    )
}

/// How one mutating AWS call ended, as the journal records it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct CallOutcome {
    /// `true` when AWS accepted the call.
    pub ok: bool,
    /// AWS request id, when the response carried one.
    pub request_id: Option<String>,
    /// AWS error code (e.g. `InvalidGroup.NotFound`), on failure.
    pub error_code: Option<String>,
    /// Human-readable error, on failure.
    pub error_message: Option<String>,
    /// Key facts of the result (ids created, previous values). Never secrets.
    pub result: Value,
}

/// An AWS resource the run created or relied on that cannot be hashed as bytes
/// (snapshots, stacks, roles); listed in the evidence manifest's `aws_resources`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct AwsResource {
    /// e.g. `ebs-snapshot`, `security-group`, `iam-role`, `cloudformation-stack`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The resource's identifier.
    pub id: String,
    /// Further identifying facts (`volume_id`, `state`, ...), flattened into the entry.
    #[serde(flatten)]
    pub details: serde_json::Map<String, Value>,
}

/// Where actions report what they do: the executor's journal and evidence store.
///
/// Implementations must make `call_started` durable (flushed) before returning: the call is
/// made only after it returns.
pub trait Recorder: Send + Sync {
    /// A mutating call is about to be made. Returns a sequence number for `call_finished`.
    fn call_started(&self, step: &str, service: &str, operation: &str, params: &Value) -> u64;
    /// The call numbered `seq` ended.
    fn call_finished(&self, seq: u64, outcome: &CallOutcome);
    /// `false` once the journal could not be written: no further mutating call may be made,
    /// since it could not be recorded.
    fn journal_ok(&self) -> bool {
        true
    }
    /// Stores an artifact (`artifacts/STEP/NAME` in the evidence), returning its path in the
    /// bundle. `source` names what it came from, e.g. `ec2:DescribeInstances`.
    fn artifact(
        &self,
        step: &str,
        name: &str,
        content: &[u8],
        source: &str,
    ) -> Result<String, ActionError>;
    /// Records an AWS resource for the manifest.
    fn resource(&self, resource: AwsResource);
    /// Records a gap: an optional read that failed (denied, throttled out, unsupported), so
    /// the evidence says what it lacks and why (the manifest's `gaps`, a warning in the run
    /// summary and the report). The action goes on.
    fn gap(&self, gap: Gap);
    /// This run's artifacts so far (every attempt's, an earlier process's included when the
    /// run was resumed) whose name, the last segment of the path, is `name`, as
    /// `(capture order, path, bytes)`: the bytes read back and checked against the SHA-256
    /// recorded when the artifact was captured, or why they could not be (altered, missing).
    /// Part of the case's record (`actions::record`).
    /// (No default: a recorder that wraps another, as the executor's per-attempt one does,
    /// must pass it on, or a release would find no record.)
    fn captured(&self, name: &str) -> Vec<(usize, String, Result<Vec<u8>, String>)>;
    /// This run's evidence location (`LOCATION`; the case's earlier sealed runs are under
    /// `LOCATION/CASE_ID/`), when there is one.
    fn evidence_location(&self) -> Option<String>;
    /// The account the evidence bucket must belong to (sent as `ExpectedBucketOwner` when the
    /// case's earlier runs are read from S3), when there is one.
    fn evidence_owner(&self) -> Option<String>;
    /// A fan-out child's account and region: its bundle is the parent run's
    /// `children/ACCOUNT/REGION/`, and the case's record is read from the same place in
    /// earlier runs. (No default, as for [`Recorder::captured`].)
    fn target(&self) -> Option<irr_forensics::manifest::Target>;
    /// A value that must never be written (a `NoEcho` stack parameter): from now on it is
    /// masked wherever the run writes. Must be called before the value is journaled.
    fn secret(&self, value: &str);
    /// The run's evidence store, opened and checked, when the recorder has one (the run's
    /// does): for actions whose evidence is written straight into it (`ssm.capture_volatile`).
    fn evidence_store(&self) -> Option<irr_forensics::Store> {
        None
    }
    /// The path in the bundle an artifact `name` of `step` gets from this recorder
    /// (`artifacts/STEP/NAME`, or `artifacts/STEP/attempt-N/NAME` for a later attempt).
    fn artifact_path(&self, step: &str, name: &str) -> String {
        format!("artifacts/{step}/{name}")
    }
    /// Records an artifact that is already in the evidence store at the run's
    /// [`Recorder::artifact_path`] of `name` (written there by someone else, then hashed by irr
    /// reading it back: `sha256`, `size`), so the seal lists it. Returns its path.
    fn stored_artifact(
        &self,
        step: &str,
        name: &str,
        sha256: &str,
        size: u64,
        source: &str,
    ) -> Result<String, ActionError> {
        let _ = (step, name, sha256, size, source);
        Err(ActionError::Evidence(
            "this recorder cannot record evidence written straight into the store".into(),
        ))
    }
}

/// An optional read that failed: `{"step", "what", "error"}` (the manifest's `gaps`).
pub use irr_forensics::Gap;

/// Everything an action needs to run one step (or one `for_each` item).
#[derive(Clone)]
pub struct ActionCtx {
    /// AWS clients.
    pub aws: AwsClients,
    /// The case this run belongs to; tags every resource the run creates (`irr:case`).
    pub case_id: String,
    /// This run's id (`irr:run` tag).
    pub run_id: String,
    /// The step being run (artifacts go under `artifacts/STEP_ID/`).
    pub step_id: String,
    /// Ask AWS whether each mutating call would be permitted; change nothing.
    pub dry_run: bool,
    /// Auto-approve `control.approve` (`--yes`, drills).
    pub assume_yes: bool,
    /// The journal and evidence sink.
    pub recorder: Arc<dyn Recorder>,
    /// The directory of the playbook being run: files a step names (e.g. a
    /// `cloudformation.deploy_stack` template) are relative to it.
    pub playbook_dir: std::path::PathBuf,
}

/// Why an action failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ActionError {
    /// The rendered parameters do not fit the action (caught at run time).
    #[error("invalid parameters: {0}")]
    Params(String),
    /// AWS refused or failed a call.
    #[error("{service}:{operation} failed: {code}: {message}")]
    Aws {
        /// e.g. `ec2`.
        service: String,
        /// e.g. `CreateSnapshot`.
        operation: String,
        /// AWS error code, e.g. `UnauthorizedOperation`, or `dispatch`/`timeout`.
        code: String,
        /// AWS message.
        message: String,
        /// AWS request id, when there was one.
        request_id: Option<String>,
    },
    /// The target is not in a state the action can work with (e.g. no such instance).
    #[error("{0}")]
    Target(String),
    /// A human declined (control.approve).
    #[error("declined: {0}")]
    Declined(String),
    /// Storing evidence failed.
    #[error("evidence: {0}")]
    Evidence(String),
}

/// What an action returns: its declared outputs (by name).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ActionOutput {
    /// Output name -> value, matching the catalog's declared outputs.
    pub outputs: serde_json::Map<String, Value>,
}

impl ActionCtx {
    /// This run's bundle in the evidence store: `CASE/RUN/`, or a fan-out child's
    /// `CASE/RUN/children/ACCOUNT/REGION/`.
    pub fn bundle_prefix(&self) -> String {
        match self.recorder.target() {
            Some(t) => format!("{}/{}/{}/", self.case_id, self.run_id, t.dir()),
            None => format!("{}/{}/", self.case_id, self.run_id),
        }
    }

    /// Wraps one mutating AWS call: records the intent (durably) before it, runs it, and
    /// records the outcome (request id or error) after it.
    ///
    /// `summarise` turns a successful response into the key facts the journal keeps (ids
    /// created, previous values; never secrets).
    pub async fn mutating<T, E, Fut>(
        &self,
        service: &str,
        operation: &str,
        params: Value,
        call: Fut,
        summarise: impl FnOnce(&T) -> Value,
    ) -> Result<T, ActionError>
    where
        Fut: Future<Output = Result<T, E>>,
        T: RequestId,
        E: ProvideErrorMetadata + RequestId + RawBody + std::error::Error + 'static,
    {
        let seq = self
            .recorder
            .call_started(&self.step_id, service, operation, &params);
        self.refuse_unrecorded(seq, service, operation)?;
        match call.await {
            Ok(out) => {
                let outcome = CallOutcome {
                    ok: true,
                    request_id: out.request_id().map(str::to_owned),
                    error_code: None,
                    error_message: None,
                    result: summarise(&out),
                };
                self.recorder.call_finished(seq, &outcome);
                Ok(out)
            }
            Err(err) => {
                let e = aws_error(service, operation, &err);
                let outcome = CallOutcome {
                    ok: false,
                    request_id: err.request_id().map(str::to_owned),
                    error_code: Some(e.code().to_owned()),
                    error_message: Some(e.to_string()),
                    result: Value::Null,
                };
                self.recorder.call_finished(seq, &outcome);
                Err(e)
            }
        }
    }
}

impl ActionCtx {
    /// A call whose intent could not be journaled is not made.
    /// The call `seq` is closed as not made, so nothing reads it as in flight.
    fn refuse_unrecorded(
        &self,
        seq: u64,
        service: &str,
        operation: &str,
    ) -> Result<(), ActionError> {
        if self.recorder.journal_ok() {
            return Ok(());
        }
        let message = format!("{service}:{operation} was not made: the journal cannot be written, so the call could not be recorded");
        self.recorder.call_finished(
            seq,
            &CallOutcome {
                ok: false,
                request_id: None,
                error_code: Some("not_made".to_owned()),
                error_message: Some(message.clone()),
                result: Value::Null,
            },
        );
        Err(ActionError::Evidence(message))
    }
}

/// Turns an SDK error into an [`ActionError::Aws`] keeping the AWS error code and request id;
/// the message is the one line of [`irr_forensics::awserr::describe`] (what failed and what to
/// do), never a debug dump. Without an AWS code the code is `no_credentials` or `dispatch`
/// (no answer: connection refused, timeout), which callers retry.
pub fn aws_error<E>(service: &str, operation: &str, err: &E) -> ActionError
where
    E: ProvideErrorMetadata + RequestId + RawBody + std::error::Error + 'static,
{
    let f = irr_forensics::awserr::describe(service, operation, err);
    let code = match (&f.code, f.kind) {
        (Some(c), _) => c.clone(),
        (None, irr_forensics::awserr::FailureKind::NoCredentials) => "no_credentials".to_owned(),
        (None, _) => "dispatch".to_owned(),
    };
    // AWS's own message first (it names what was denied), then what to do.
    let message = match f.hint.is_empty() {
        true => f.message,
        false => format!("{}; {}", f.message, f.hint),
    };
    ActionError::Aws {
        service: service.to_owned(),
        operation: operation.to_owned(),
        code,
        message,
        request_id: err.request_id().map(str::to_owned),
    }
}

impl ActionError {
    /// The AWS error code, or a short word for non-AWS failures.
    pub fn code(&self) -> &str {
        match self {
            ActionError::Params(_) => "params",
            ActionError::Aws { code, .. } => code,
            ActionError::Target(_) => "target",
            ActionError::Declined(_) => "declined",
            ActionError::Evidence(_) => "evidence",
        }
    }
}

pub mod cloudformation;
pub mod control;
pub mod ebs;
pub mod ec2;
pub mod evidence;
pub mod glob;
pub mod iam;
pub mod record;
pub mod s3;
pub mod ssm;

/// The tag every resource a run creates carries: the case id.
pub const TAG_CASE: &str = "irr:case";
/// The tag every resource a run creates carries: the run id.
pub const TAG_RUN: &str = "irr:run";

/// One action, declared once: its typed parameters, its [`Declaration`] (summary, outputs, API
/// calls, IAM permissions with resource patterns, mutating, idempotency, undo) and its
/// implementation, all in the action's own module. The catalog (`crate::catalog`), `irr schema`,
/// `irr actions`, `irr plan`, `irr policy`, the validator and [`dispatch`] are all derived from
/// the impls listed in [`REGISTRY`].
///
/// One hook has a default that changes nothing: [`Action::prefetch`] batches one action's AWS
/// reads across many `for_each` items before they run (e.g. one `DescribeInstances` for all
/// instances). The Step Functions translation of an action is not here: it works on the step's
/// templates, not on rendered parameters (`crate::compile`).
pub trait Action: 'static {
    /// The typed parameters (`with`): one struct with a doc comment per field (the parameter's
    /// description), `#[serde(deny_unknown_fields)]`, irr's richer types as
    /// `#[schemars(extend("x-irr-type" = ..))]` ([`crate::catalog::IRR_TYPE`]) and defaults as
    /// `#[schemars(extend("default" = ..))]`. The catalog's parameter list is derived from it
    /// ([`crate::catalog::params_of`]).
    type Params: serde::de::DeserializeOwned + schemars::JsonSchema + Send;

    /// Everything else the catalog says about the action.
    const DECLARATION: Declaration;

    /// Groups of parameters of which at least one must be given (`irr validate` refuses a step
    /// that gives none, at its location): a discovery action with no criterion would match
    /// everything in the account. The action checks it again at run time, on the rendered
    /// values.
    const AT_LEAST_ONE_OF: &'static [&'static [&'static str]] = &[];

    /// `true` when the executor runs the action itself (it writes to the run's evidence store
    /// directly: `evidence.capture`); [`Action::run`] is then never called by [`dispatch`].
    const RUN_BY_EXECUTOR: bool = false;

    /// Runs one step (or one `for_each` item) with its rendered, deserialised parameters.
    fn run(
        ctx: &ActionCtx,
        params: Self::Params,
    ) -> impl Future<Output = Result<ActionOutput, ActionError>> + Send;

    /// Reserved (performance issue): read what many `for_each` items of one step will need
    /// in as few AWS calls as possible, before they run. The default reads nothing; an action
    /// that batches keeps what it read in `ctx.aws.fleet` for its items' [`Action::run`],
    /// each item taking its part once (a retried attempt reads AWS afresh). The executor calls
    /// it once per `for_each` step with every item's parameters that parse; its failure is
    /// not the step's (the items then read for themselves).
    fn prefetch(
        ctx: &ActionCtx,
        items: &[Self::Params],
    ) -> impl Future<Output = Result<(), ActionError>> + Send {
        let _ = (ctx, items);
        async { Ok(()) }
    }
}

pub use crate::catalog::Declaration;

/// A registered action: its name, its catalog entry and its implementation, with the
/// parameter type erased (see [`register`]).
pub struct Registered {
    /// The action's name (`Declaration::name`).
    pub name: &'static str,
    /// `Action::RUN_BY_EXECUTOR`.
    pub run_by_executor: bool,
    spec: fn() -> ActionSpec,
    run: for<'a> fn(&'a ActionCtx, Value) -> BoxedRun<'a>,
    prefetch: for<'a> fn(&'a ActionCtx, Vec<Value>) -> BoxedPrefetch<'a>,
}

type BoxedPrefetch<'a> = Pin<Box<dyn Future<Output = Result<(), ActionError>> + Send + 'a>>;

type BoxedRun<'a> = Pin<Box<dyn Future<Output = Result<ActionOutput, ActionError>> + Send + 'a>>;

impl Registered {
    /// The action's catalog entry, its parameters derived from its parameter struct.
    pub fn spec(&self) -> ActionSpec {
        (self.spec)()
    }
}

/// The registry entry of `A`.
pub const fn register<A: Action>() -> Registered {
    Registered {
        name: A::DECLARATION.name,
        run_by_executor: A::RUN_BY_EXECUTOR,
        spec: spec_of::<A>,
        run: run_erased::<A>,
        prefetch: prefetch_erased::<A>,
    }
}

fn spec_of<A: Action>() -> ActionSpec {
    ActionSpec {
        at_least_one_of: A::AT_LEAST_ONE_OF,
        ..ActionSpec::new(&A::DECLARATION, crate::catalog::params_of::<A::Params>())
    }
}

fn run_erased<A: Action>(ctx: &ActionCtx, params: Value) -> BoxedRun<'_> {
    Box::pin(async move {
        let p: A::Params = parse_params(A::DECLARATION.name, params)?;
        A::run(ctx, p).await
    })
}

fn prefetch_erased<A: Action>(ctx: &ActionCtx, items: Vec<Value>) -> BoxedPrefetch<'_> {
    Box::pin(async move {
        // Items whose parameters do not parse fail in their own run, with the reason.
        let parsed: Vec<A::Params> = items
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect();
        if parsed.is_empty() {
            return Ok(());
        }
        A::prefetch(ctx, &parsed).await
    })
}

/// Batches `action`'s reads for the items of a `for_each` step ([`Action::prefetch`]).
pub async fn prefetch(action: &str, ctx: &ActionCtx, items: Vec<Value>) -> Result<(), ActionError> {
    match REGISTRY
        .iter()
        .find(|r| r.name == action && !r.run_by_executor)
    {
        Some(r) => (r.prefetch)(ctx, items).await,
        None => Ok(()),
    }
}

/// Every action, one line each, in catalog order (`irr actions`, `irr schema`).
pub static REGISTRY: &[Registered] = &[
    register::<iam::GrantResponderAccess>(),
    register::<iam::RevokeResponderAccess>(),
    register::<iam::FindAccessKey>(),
    register::<iam::CapturePrincipal>(),
    register::<iam::DeactivateAccessKey>(),
    register::<iam::RevokeSessions>(),
    register::<ec2::FindInstances>(),
    register::<ec2::CaptureInstanceMetadata>(),
    register::<ec2::ProtectInstance>(),
    register::<ec2::SnapshotVolumes>(),
    register::<ec2::IsolateInstance>(),
    register::<ec2::ReleaseInstance>(),
    register::<ec2::TagResources>(),
    register::<evidence::Capture>(),
    register::<cloudformation::DeployStack>(),
    register::<cloudformation::DeleteStack>(),
    register::<s3::FindBuckets>(),
    register::<s3::CaptureBucketConfig>(),
    register::<s3::BlockPublicAccess>(),
    register::<ebs::HashSnapshots>(),
    register::<ssm::CaptureVolatile>(),
    register::<control::Approve>(),
];

/// The catalog names of the actions [`dispatch`] runs (all but those the executor runs itself).
pub static ACTIONS: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
    REGISTRY
        .iter()
        .filter(|r| !r.run_by_executor)
        .map(|r| r.name)
        .collect()
});

/// Runs the action named `action` (its catalog name, e.g. `ec2.isolate_instance`) with the
/// step's rendered parameters, deserialised into the action's typed struct.
///
/// Actions implemented elsewhere (`evidence.capture`) and unknown names are refused with
/// [`ActionError::Params`].
pub async fn dispatch(
    action: &str,
    ctx: &ActionCtx,
    params: Value,
) -> Result<ActionOutput, ActionError> {
    match REGISTRY
        .iter()
        .find(|r| r.name == action && !r.run_by_executor)
    {
        Some(r) => (r.run)(ctx, params).await,
        None => Err(ActionError::Params(format!(
            "action `{action}` is not implemented by actions::dispatch"
        ))),
    }
}

/// Deserialises an action's rendered parameters into its typed struct.
pub(crate) fn parse_params<T: serde::de::DeserializeOwned>(
    action: &str,
    params: Value,
) -> Result<T, ActionError> {
    // A step without `with` renders to null: treat it as an empty map so that actions whose
    // parameters are all optional still deserialise.
    let params = if params.is_null() {
        Value::Object(Default::default())
    } else {
        params
    };
    serde_json::from_value(params).map_err(|e| ActionError::Params(format!("{action}: {e}")))
}

impl ActionOutput {
    /// Adds (or replaces) one output.
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.outputs.insert(name.to_owned(), value.into());
        self
    }
}

impl ActionCtx {
    /// Stores `value` as a pretty-printed JSON artifact of the current step; returns its path.
    pub fn evidence(&self, name: &str, value: &Value, source: &str) -> Result<String, ActionError> {
        let bytes =
            serde_json::to_vec_pretty(value).map_err(|e| ActionError::Evidence(e.to_string()))?;
        self.recorder.artifact(&self.step_id, name, &bytes, source)
    }

    /// Records that the optional read `what` (e.g. `autoscaling:DescribeAutoScalingInstances`)
    /// failed with `error`: a gap in the evidence, not a failure of the step.
    pub fn gap(&self, what: &str, error: &ActionError) {
        self.recorder.gap(Gap {
            step: self.step_id.clone(),
            what: what.to_owned(),
            error: error.to_string(),
        });
    }

    /// An optional read's result: its error becomes a gap (see [`ActionCtx::gap`]) and
    /// `None`. For reads whose absence does not make containment unsafe (console output,
    /// profile details, tags, Auto Scaling membership, bucket settings, principal details):
    /// whether the read was denied, throttled out (after the SDK's retries) or is unsupported
    /// (an emulator's `InternalFailure`), the action goes on without it.
    pub fn or_gap<T>(&self, what: &str, read: Result<T, ActionError>) -> Option<T> {
        match read {
            Ok(v) => Some(v),
            Err(e) => {
                self.gap(what, &e);
                None
            }
        }
    }

    /// The tags every resource this run creates carries: `irr:case` and `irr:run`.
    pub fn run_tags(&self) -> Vec<(String, String)> {
        vec![
            (TAG_CASE.to_owned(), self.case_id.clone()),
            (TAG_RUN.to_owned(), self.run_id.clone()),
        ]
    }

    /// Like [`ActionCtx::mutating`], for calls that take EC2's `DryRun` flag.
    ///
    /// In a dry run the caller builds the request with `dry_run(true)`; AWS answers
    /// `DryRunOperation` when the call would have been permitted. That answer is recorded as a
    /// success (`result: {"dry_run": "permitted"}`) and `Ok(None)` is returned; any other
    /// error (e.g. `UnauthorizedOperation`) is an error as usual. Outside a dry run the
    /// response is returned as `Ok(Some(..))`.
    pub async fn mutating_dry<T, E, Fut>(
        &self,
        service: &str,
        operation: &str,
        mut params: Value,
        call: Fut,
        summarise: impl FnOnce(&T) -> Value,
    ) -> Result<Option<T>, ActionError>
    where
        Fut: Future<Output = Result<T, E>>,
        T: RequestId,
        E: ProvideErrorMetadata + RequestId + RawBody + std::error::Error + 'static,
    {
        if !self.dry_run {
            return self
                .mutating(service, operation, params, call, summarise)
                .await
                .map(Some);
        }
        if let Value::Object(map) = &mut params {
            map.insert("dry_run".to_owned(), Value::Bool(true));
        }
        let seq = self
            .recorder
            .call_started(&self.step_id, service, operation, &params);
        self.refuse_unrecorded(seq, service, operation)?;
        let (outcome, result) = match call.await {
            Err(err) if err.code() == Some("DryRunOperation") => (
                CallOutcome {
                    ok: true,
                    request_id: err.request_id().map(str::to_owned),
                    error_code: None,
                    error_message: None,
                    result: serde_json::json!({"dry_run": "permitted"}),
                },
                Ok(None),
            ),
            Err(err) => {
                let e = aws_error(service, operation, &err);
                (
                    CallOutcome {
                        ok: false,
                        request_id: err.request_id().map(str::to_owned),
                        error_code: Some(e.code().to_owned()),
                        error_message: Some(e.to_string()),
                        result: Value::Null,
                    },
                    Err(e),
                )
            }
            // A call that succeeded despite DryRun (an emulator ignoring the flag) did change
            // something: record it faithfully.
            Ok(out) => (
                CallOutcome {
                    ok: true,
                    request_id: out.request_id().map(str::to_owned),
                    error_code: None,
                    error_message: None,
                    result: summarise(&out),
                },
                Ok(Some(out)),
            ),
        };
        self.recorder.call_finished(seq, &outcome);
        result
    }
}

/// Maps a read-only call's SDK error (not journaled) to an [`ActionError`].
pub(crate) fn read_err<E>(
    service: &'static str,
    operation: &'static str,
) -> impl FnOnce(E) -> ActionError
where
    E: ProvideErrorMetadata + RequestId + RawBody + std::error::Error + 'static,
{
    move |e| aws_error(service, operation, &e)
}

/// Retries `attempt` while `retryable` says the error is transient (IAM propagation delays,
/// concurrent modification), with a doubling backoff from 1 s, for up to about a minute.
/// Every attempt that wraps a mutating call is journaled by that call's own
/// [`ActionCtx::mutating`].
pub(crate) async fn retry_transient<T, F, Fut>(
    mut attempt: F,
    retryable: impl Fn(&ActionError) -> bool,
) -> Result<T, ActionError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ActionError>>,
{
    let mut delay = std::time::Duration::from_secs(1);
    let mut waited = std::time::Duration::ZERO;
    loop {
        match attempt().await {
            Err(e) if retryable(&e) && waited < std::time::Duration::from_secs(60) => {
                tokio::time::sleep(delay).await;
                waited += delay;
                delay = (delay * 2).min(std::time::Duration::from_secs(16));
            }
            other => return other,
        }
    }
}

/// `true` for AWS errors that clear up on their own (concurrent changes, eventual
/// consistency). Throttling is not among them: the SDK's retry (after irr's own EC2 buckets,
/// [`crate::ratelimit`]) is the one layer that retries it, so a throttled call is never
/// retried by two layers at once.
pub(crate) fn is_transient(e: &ActionError) -> bool {
    matches!(e.code(), "ConcurrentModification" | "ServiceFailure")
}

/// Formats an SDK timestamp as RFC 3339 (JSON null when absent).
pub(crate) fn ts(t: Option<&aws_smithy_types::DateTime>) -> Value {
    t.and_then(|t| t.fmt(aws_smithy_types::date_time::Format::DateTime).ok())
        .map(Value::String)
        .unwrap_or(Value::Null)
}

/// Helpers for unit tests of the actions against mocked clients (`aws-smithy-mocks`).
#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A recorder that keeps the calls and gaps and discards artifacts.
    #[derive(Default)]
    pub(crate) struct NullRecorder {
        pub(crate) calls: Mutex<Vec<(String, Option<CallOutcome>)>>,
        pub(crate) gaps: Mutex<Vec<Gap>>,
    }

    impl Recorder for NullRecorder {
        fn call_started(
            &self,
            _step: &str,
            service: &str,
            operation: &str,
            _params: &Value,
        ) -> u64 {
            let mut c = self.calls.lock().unwrap();
            c.push((format!("{service}:{operation}"), None));
            (c.len() - 1) as u64
        }
        fn call_finished(&self, seq: u64, outcome: &CallOutcome) {
            self.calls.lock().unwrap()[seq as usize].1 = Some(outcome.clone());
        }
        fn artifact(
            &self,
            step: &str,
            name: &str,
            _content: &[u8],
            _source: &str,
        ) -> Result<String, ActionError> {
            Ok(format!("artifacts/{step}/{name}"))
        }
        fn resource(&self, _resource: AwsResource) {}
        fn gap(&self, gap: Gap) {
            self.gaps.lock().unwrap().push(gap);
        }
        fn captured(&self, _name: &str) -> Vec<(usize, String, Result<Vec<u8>, String>)> {
            Vec::new()
        }
        fn evidence_location(&self) -> Option<String> {
            None
        }
        fn evidence_owner(&self) -> Option<String> {
            None
        }

        fn target(&self) -> Option<irr_forensics::manifest::Target> {
            None
        }
        fn secret(&self, _value: &str) {}
    }

    /// An action context whose IAM client answers from `rules`; the other clients point
    /// nowhere (a test using them fails loudly).
    pub(crate) fn ctx_with_iam(
        case_id: &str,
        mode: aws_smithy_mocks::RuleMode,
        rules: &[&aws_smithy_mocks::Rule],
    ) -> ActionCtx {
        let mut interceptor = aws_smithy_mocks::MockResponseInterceptor::new().rule_mode(mode);
        for r in rules {
            interceptor = interceptor.with_rule(r);
        }
        let iam_conf = aws_sdk_iam::Config::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_iam::config::Credentials::new(
                "k", "s", None, None, "test",
            ))
            .http_client(aws_smithy_mocks::create_mock_http_client())
            .interceptor(interceptor)
            .build();
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:9")
            .build();
        let mut aws = AwsClients::from_conf(&sdk, true);
        aws.iam = aws_sdk_iam::Client::from_conf(iam_conf);
        ActionCtx {
            aws,
            case_id: case_id.to_owned(),
            run_id: "run-1".to_owned(),
            step_id: "step".to_owned(),
            dry_run: false,
            assume_yes: false,
            recorder: Arc::new(NullRecorder::default()),
            playbook_dir: std::path::PathBuf::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use super::test_support::{ctx_with_iam, NullRecorder};
    use super::*;

    /// A recorder whose journal can no longer be written.
    struct BrokenJournal(NullRecorder);

    impl Recorder for BrokenJournal {
        fn call_started(&self, step: &str, service: &str, operation: &str, params: &Value) -> u64 {
            self.0.call_started(step, service, operation, params)
        }
        fn call_finished(&self, seq: u64, outcome: &CallOutcome) {
            self.0.call_finished(seq, outcome)
        }
        fn journal_ok(&self) -> bool {
            false
        }
        fn artifact(
            &self,
            step: &str,
            name: &str,
            content: &[u8],
            source: &str,
        ) -> Result<String, ActionError> {
            self.0.artifact(step, name, content, source)
        }
        fn resource(&self, resource: AwsResource) {
            self.0.resource(resource)
        }
        fn gap(&self, gap: Gap) {
            self.0.gap(gap)
        }
        fn captured(&self, name: &str) -> Vec<(usize, String, Result<Vec<u8>, String>)> {
            self.0.captured(name)
        }
        fn evidence_location(&self) -> Option<String> {
            self.0.evidence_location()
        }
        fn evidence_owner(&self) -> Option<String> {
            self.0.evidence_owner()
        }

        fn target(&self) -> Option<irr_forensics::manifest::Target> {
            self.0.target()
        }
        fn secret(&self, value: &str) {
            self.0.secret(value)
        }
    }

    #[tokio::test]
    async fn no_call_is_made_that_the_journal_cannot_record() {
        let mut ctx = ctx_with_iam("IR-1", aws_smithy_mocks::RuleMode::Sequential, &[]);
        ctx.recorder = Arc::new(BrokenJournal(NullRecorder::default()));
        let made = Arc::new(AtomicBool::new(false));
        let flag = made.clone();
        let call = async move {
            flag.store(true, Ordering::SeqCst);
            Ok::<
                _,
                aws_sdk_iam::error::SdkError<aws_sdk_iam::operation::delete_role::DeleteRoleError>,
            >(aws_sdk_iam::operation::delete_role::DeleteRoleOutput::builder().build())
        };
        let err = ctx
            .mutating(
                "iam",
                "DeleteRole",
                serde_json::json!({"role": "r"}),
                call,
                |_| Value::Null,
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("was not made"), "{err}");
        assert!(
            !made.load(Ordering::SeqCst),
            "the AWS call must not be made"
        );
    }
}
