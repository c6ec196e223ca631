//! Shared harness for the integration tests: one AWS emulator per test process.
//!
//! When `IRR_TEST_ENDPOINT` is set (`.ci/run` starts one moto server and sets it), every test
//! uses that server; otherwise the first test to ask starts a private one on a free loopback
//! port. Tests share the server, so each test names its own resources (unique buckets, its own
//! instances) and asserts only on those.
//!
//! The conformance suite (`tests/conformance.rs`) runs the same cases against a second
//! emulator, LocalStack: `IRR_TEST_LOCALSTACK_ENDPOINT` (`.ci/run` starts one with
//! `scripts/start-localstack`), else a private one started from the venv
//! `scripts/ensure-localstack` installs ([`endpoint_of`]).

use std::sync::OnceLock;

pub mod ebs;
pub mod sfn;

use irr_runner::emulator::{Emulator, EmulatorKind};

static PRIVATE: OnceLock<Emulator> = OnceLock::new();
static PRIVATE_LOCALSTACK: OnceLock<Emulator> = OnceLock::new();

/// The endpoint of an emulator of that kind (moto: [`endpoint`]; LocalStack:
/// `IRR_TEST_LOCALSTACK_ENDPOINT`, else a private LocalStack of this test process).
pub fn endpoint_of(kind: EmulatorKind) -> String {
    match kind {
        EmulatorKind::Moto => endpoint(),
        EmulatorKind::Localstack => {
            if let Ok(ep) = std::env::var("IRR_TEST_LOCALSTACK_ENDPOINT") {
                assert!(
                    irr_runner::emulator::loopback_addr(&ep).is_some(),
                    "IRR_TEST_LOCALSTACK_ENDPOINT must be a loopback http endpoint, got {ep}"
                );
                return ep;
            }
            PRIVATE_LOCALSTACK
                .get_or_init(|| {
                    Emulator::start_kind(EmulatorKind::Localstack).unwrap_or_else(|e| {
                        panic!("{e} (the conformance suite runs against LocalStack too: scripts/ensure-localstack installs it, or set IRR_TEST_LOCALSTACK_ENDPOINT)")
                    })
                })
                .endpoint()
        }
    }
}

/// An SDK configuration pointed at an emulator of that kind (us-east-1, dummy credentials).
pub async fn sdk_config_of(kind: EmulatorKind) -> aws_config::SdkConfig {
    sdk_config_for(&endpoint_of(kind), ("testing", "testing")).await
}

/// The endpoint of the emulator the tests use (`http://127.0.0.1:PORT`).
pub fn endpoint() -> String {
    if let Ok(ep) = std::env::var("IRR_TEST_ENDPOINT") {
        assert!(
            irr_runner::emulator::loopback_addr(&ep).is_some(),
            "IRR_TEST_ENDPOINT must be a loopback http endpoint, got {ep}"
        );
        return ep;
    }
    PRIVATE
        .get_or_init(|| Emulator::start().expect("start the AWS emulator for tests"))
        .endpoint()
}

/// An SDK configuration pointed at the emulator: region us-east-1, dummy credentials.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sts::config::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "irr-tests",
        ))
        .load()
        .await
}

/// A name unique to this process and call, for buckets, roles and tags.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{:x}", std::process::id(), t)
}

// ---- in-memory recorder for the action tests ----------------------------------------------

use std::sync::{Arc, Mutex};

use irr_runner::actions::{ActionCtx, ActionError, AwsClients, AwsResource, CallOutcome, Recorder};
use serde_json::Value;

/// One mutating call as an action reported it.
#[derive(Clone, Debug)]
pub struct RecordedCall {
    /// Sequence number handed out by `call_started`.
    pub seq: u64,
    /// The step it belonged to.
    pub step: String,
    /// e.g. `ec2`.
    pub service: String,
    /// e.g. `CreateSnapshot`.
    pub operation: String,
    /// Key parameters recorded before the call.
    pub params: Value,
    /// How it ended; `None` while unfinished (a bug in the action if it stays so).
    pub outcome: Option<CallOutcome>,
}

/// One stored artifact.
#[derive(Clone, Debug)]
pub struct RecordedArtifact {
    /// The step it belonged to.
    pub step: String,
    /// Its name (`instance.json`).
    pub name: String,
    /// Its bytes.
    pub content: Vec<u8>,
    /// What it came from (`ec2:DescribeInstances`).
    pub source: String,
    /// The path returned to the action.
    pub path: String,
}

#[derive(Default)]
struct Recorded {
    calls: Vec<RecordedCall>,
    artifacts: Vec<RecordedArtifact>,
    resources: Vec<AwsResource>,
    gaps: Vec<irr_runner::actions::Gap>,
}

/// A [`Recorder`] keeping calls, artifacts and resources in memory, for assertions.
#[derive(Default)]
pub struct MemoryRecorder {
    inner: Mutex<Recorded>,
}

impl Recorder for MemoryRecorder {
    fn call_started(&self, step: &str, service: &str, operation: &str, params: &Value) -> u64 {
        let mut r = self.inner.lock().unwrap();
        let seq = r.calls.len() as u64;
        r.calls.push(RecordedCall {
            seq,
            step: step.to_owned(),
            service: service.to_owned(),
            operation: operation.to_owned(),
            params: params.clone(),
            outcome: None,
        });
        seq
    }

    fn call_finished(&self, seq: u64, outcome: &CallOutcome) {
        let mut r = self.inner.lock().unwrap();
        let call = &mut r.calls[seq as usize];
        assert!(call.outcome.is_none(), "call {seq} finished twice");
        call.outcome = Some(outcome.clone());
    }

    fn artifact(
        &self,
        step: &str,
        name: &str,
        content: &[u8],
        source: &str,
    ) -> Result<String, ActionError> {
        let path = format!("artifacts/{step}/{name}");
        self.inner.lock().unwrap().artifacts.push(RecordedArtifact {
            step: step.to_owned(),
            name: name.to_owned(),
            content: content.to_vec(),
            source: source.to_owned(),
            path: path.clone(),
        });
        Ok(path)
    }

    fn resource(&self, resource: AwsResource) {
        self.inner.lock().unwrap().resources.push(resource);
    }

    fn gap(&self, gap: irr_runner::actions::Gap) {
        self.inner.lock().unwrap().gaps.push(gap);
    }

    fn captured(&self, name: &str) -> Vec<(usize, String, Result<Vec<u8>, String>)> {
        self.inner
            .lock()
            .unwrap()
            .artifacts
            .iter()
            .enumerate()
            .filter(|(_, a)| a.name == name)
            .map(|(i, a)| (i, a.path.clone(), Ok(a.content.clone())))
            .collect()
    }

    /// No evidence location: the record is this recorder's artifacts only.
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

impl MemoryRecorder {
    /// A new, empty recorder.
    pub fn new() -> Arc<MemoryRecorder> {
        Arc::new(MemoryRecorder::default())
    }

    /// Every mutating call so far.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.inner.lock().unwrap().calls.clone()
    }

    /// The mutating calls of one operation.
    pub fn calls_of(&self, operation: &str) -> Vec<RecordedCall> {
        self.calls()
            .into_iter()
            .filter(|c| c.operation == operation)
            .collect()
    }

    /// Every artifact so far.
    pub fn artifacts(&self) -> Vec<RecordedArtifact> {
        self.inner.lock().unwrap().artifacts.clone()
    }

    /// The last artifact of that name, parsed as JSON.
    pub fn artifact_json(&self, name: &str) -> Option<Value> {
        self.artifacts()
            .iter()
            .rev()
            .find(|a| a.name == name)
            .map(|a| serde_json::from_slice(&a.content).expect("artifact is JSON"))
    }

    /// Every resource recorded so far.
    pub fn resources(&self) -> Vec<AwsResource> {
        self.inner.lock().unwrap().resources.clone()
    }

    /// Every gap (optional read that failed) recorded so far.
    pub fn gaps(&self) -> Vec<irr_runner::actions::Gap> {
        self.inner.lock().unwrap().gaps.clone()
    }

    /// Asserts every call that started also finished, successfully, and (for the services
    /// whose request id moto returns in a header the SDK reads) with a request id.
    pub fn assert_calls_ok(&self) {
        for c in self.calls() {
            let o = c.outcome.as_ref().unwrap_or_else(|| {
                panic!(
                    "call {} {}:{} never finished",
                    c.seq, c.service, c.operation
                )
            });
            assert!(o.ok, "call {}:{} failed: {:?}", c.service, c.operation, o);
            // moto sends `x-amzn-requestid`; the S3 SDK reads `x-amz-request-id`, which moto
            // does not send (see docs/emulator-notes.md).
            if c.service != "s3" {
                assert!(
                    o.request_id.as_deref().is_some_and(|r| !r.is_empty()),
                    "call {}:{} has no request id",
                    c.service,
                    c.operation
                );
            }
        }
    }
}

/// An [`ActionCtx`] on the emulator for one step of a test's case.
pub fn action_ctx(
    conf: &aws_config::SdkConfig,
    case_id: &str,
    step_id: &str,
    dry_run: bool,
    recorder: Arc<MemoryRecorder>,
) -> ActionCtx {
    ActionCtx {
        aws: AwsClients::from_conf(conf, true),
        case_id: case_id.to_owned(),
        run_id: format!("run-{case_id}"),
        step_id: step_id.to_owned(),
        dry_run,
        assume_yes: true,
        recorder,
        // Templates named by tests are relative to the shipped playbooks.
        playbook_dir: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../playbooks"),
    }
}

// ---- other endpoints and keys, fleets, containment state --------------------------------
//
// Shared by the least-privilege, fault-injection and benchmark suites.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, IamInstanceProfileSpecification,
    InstanceNetworkInterfaceSpecification,
};

/// The `irr` binary of this build (cargo builds it for `--workspace --all-targets`; a bench
/// binary lives in `target/PROFILE/deps` like a test binary, so this finds `target/PROFILE/irr`).
/// `IRR_BIN_OVERRIDE` names another binary (the benchmark's choice of profile).
pub fn irr_bin() -> PathBuf {
    if let Some(b) = std::env::var_os("IRR_BIN_OVERRIDE") {
        return PathBuf::from(b);
    }
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(Path::parent).expect("target/PROFILE");
    let bin = dir.join("irr");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p irr-runner`",
        bin.display()
    );
    bin
}

/// A shipped playbook's path (`playbooks/NAME`).
pub fn playbook(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../playbooks")
        .join(name)
}

/// A test fixture's path (`tests/fixtures/NAME`).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// Runs `irr ARGS --state-dir STATE --endpoint-url ENDPOINT` with the given access key
/// (region us-east-1) and extra environment.
pub fn irr_with(
    args: &[&str],
    state: &Path,
    endpoint: &str,
    key: (&str, &str),
    env: &[(&str, &str)],
) -> Output {
    let mut cmd = Command::new(irr_bin());
    cmd.args(args)
        .arg("--state-dir")
        .arg(state)
        .arg("--endpoint-url")
        .arg(endpoint)
        .env("AWS_ACCESS_KEY_ID", key.0)
        .env("AWS_SECRET_ACCESS_KEY", key.1)
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env_remove("IRR_FAULT_KILL_AT_SEQ")
        .env_remove("IRR_FAULT_SIGINT_AT_SEQ");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run irr")
}

/// The JSON objects of a command's stdout, one per line (`--output json`).
pub fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// stderr and stdout of a run, for assertion messages.
pub fn output_text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stderr\n{}\n--- stdout\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    )
}

/// A compromised instance of the tests.
#[derive(Clone, Debug)]
pub struct CompromisedInstance {
    /// The instance.
    pub instance_id: String,
    /// Its VPC (its own, so isolation groups are counted per incident).
    pub vpc_id: String,
    /// Its two volumes.
    pub volumes: Vec<String>,
    /// The wide-open group it starts in.
    pub open_group: String,
    /// The instance profile it was launched with (`None`: launched without one, as on
    /// LocalStack, whose EC2 does not see the profiles its IAM creates).
    pub profile: Option<String>,
}

/// A compromised instance: its own VPC, an open security group, an instance profile, two
/// volumes, one interface given explicitly (so moto keeps groups per interface, as AWS does).
pub async fn compromised_instance(
    ec2: &aws_sdk_ec2::Client,
    iam: &aws_sdk_iam::Client,
) -> CompromisedInstance {
    compromised_instances(ec2, iam, 1).await.remove(0)
}

/// `n` compromised instances sharing one VPC, open group and instance profile, launched in
/// one RunInstances call; each with two volumes.
pub async fn compromised_instances(
    ec2: &aws_sdk_ec2::Client,
    iam: &aws_sdk_iam::Client,
    n: i32,
) -> Vec<CompromisedInstance> {
    compromised_instances_with(ec2, iam, n, true).await
}

/// A compromised instance on an emulator of that kind: on LocalStack without an instance
/// profile (its `RunInstances` answers `NoSuchEntity` for profiles made through its IAM;
/// [`localstack_refuses_launch_profiles`] checks that this is still so).
pub async fn compromised_instance_on(
    kind: EmulatorKind,
    ec2: &aws_sdk_ec2::Client,
    iam: &aws_sdk_iam::Client,
) -> CompromisedInstance {
    compromised_instances_with(ec2, iam, 1, kind == EmulatorKind::Moto)
        .await
        .remove(0)
}

/// A role EC2 may assume, in a new instance profile; returns the profile's name.
async fn web_instance_profile(iam: &aws_sdk_iam::Client) -> String {
    let role = unique("web-role");
    iam.create_role()
        .role_name(&role)
        .assume_role_policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        )
        .send()
        .await
        .unwrap();
    let profile = unique("web-profile");
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
    profile
}

/// Puts every interface of the instances in `group` (alone).
async fn put_group_on_interfaces(ec2: &aws_sdk_ec2::Client, ids: &[String], group: &str) {
    let enis = ec2
        .describe_network_interfaces()
        .filters(
            Filter::builder()
                .name("attachment.instance-id")
                .set_values(Some(ids.to_vec()))
                .build(),
        )
        .send()
        .await
        .unwrap();
    for eni in enis.network_interfaces() {
        ec2.modify_network_interface_attribute()
            .network_interface_id(eni.network_interface_id().unwrap())
            .groups(group)
            .send()
            .await
            .unwrap();
    }
}

/// `n` compromised instances, launched with the instance profile or without.
pub async fn compromised_instances_with(
    ec2: &aws_sdk_ec2::Client,
    iam: &aws_sdk_iam::Client,
    n: i32,
    with_profile: bool,
) -> Vec<CompromisedInstance> {
    let vpc_id = ec2
        .create_vpc()
        .cidr_block("10.9.0.0/16")
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
        .cidr_block("10.9.0.0/17")
        .send()
        .await
        .unwrap()
        .subnet
        .unwrap()
        .subnet_id
        .unwrap();
    let open_group = ec2
        .create_security_group()
        .group_name(unique("open"))
        .description("wide-open") // no space: moto checks SigV4 signatures, and re-encodes a space in the form body differently
        .vpc_id(&vpc_id)
        .send()
        .await
        .unwrap()
        .group_id
        .unwrap();
    let profile = web_instance_profile(iam).await;
    let run = ec2
        .run_instances()
        .image_id("ami-12c6146b")
        .min_count(n)
        .max_count(n)
        // No groups at launch: the open group is put on the interface below. Both emulators
        // (EC2 is moto's in LocalStack too) add an instance's launch-time groups to every
        // interface they describe, whatever ModifyNetworkInterfaceAttribute sets later
        // (LocalStack also for groups given in the interface specification), where AWS keeps
        // groups per interface: docs/emulator-notes.md.
        .network_interfaces(
            InstanceNetworkInterfaceSpecification::builder()
                .device_index(0)
                .subnet_id(&subnet)
                .build(),
        )
        .set_iam_instance_profile(with_profile.then(|| {
            IamInstanceProfileSpecification::builder()
                .name(&profile)
                .build()
        }))
        // moto creates no root volume when mappings are given: map both.
        .block_device_mappings(
            BlockDeviceMapping::builder()
                .device_name("/dev/sda1")
                .ebs(EbsBlockDevice::builder().volume_size(8).build())
                .build(),
        )
        .block_device_mappings(
            BlockDeviceMapping::builder()
                .device_name("/dev/sdb")
                .ebs(EbsBlockDevice::builder().volume_size(2).build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let ids: Vec<String> = run
        .instances()
        .iter()
        .filter_map(|i| i.instance_id().map(str::to_owned))
        .collect();
    assert_eq!(ids.len(), n as usize);
    put_group_on_interfaces(ec2, &ids, &open_group).await;
    let vols = ec2
        .describe_volumes()
        .filters(
            Filter::builder()
                .name("attachment.instance-id")
                .set_values(Some(ids.clone()))
                .build(),
        )
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    ids.into_iter()
        .map(|instance_id| {
            let volumes: Vec<String> = vols
                .iter()
                .filter(|v| {
                    v.attachments()
                        .iter()
                        .any(|a| a.instance_id() == Some(instance_id.as_str()))
                })
                .filter_map(|v| v.volume_id().map(str::to_owned))
                .collect();
            assert_eq!(volumes.len(), 2, "each test instance has two volumes");
            CompromisedInstance {
                instance_id,
                vpc_id: vpc_id.clone(),
                volumes,
                open_group: open_group.clone(),
                profile: with_profile.then(|| profile.clone()),
            }
        })
        .collect()
}

/// Gives each instance a second network interface (device index 1, in the instance's subnet
/// and the open group), as the fleet benchmark's incident has: two interfaces, two volumes.
pub async fn add_second_interfaces(ec2: &aws_sdk_ec2::Client, fleet: &[CompromisedInstance]) {
    let ids: Vec<String> = fleet.iter().map(|i| i.instance_id.clone()).collect();
    let mut subnets = std::collections::HashMap::new();
    for chunk in ids.chunks(100) {
        let out = ec2
            .describe_instances()
            .set_instance_ids(Some(chunk.to_vec()))
            .send()
            .await
            .unwrap();
        for i in out.reservations().iter().flat_map(|r| r.instances()) {
            subnets.insert(
                i.instance_id().unwrap().to_owned(),
                i.subnet_id().unwrap().to_owned(),
            );
        }
    }
    for inc in fleet {
        let eni = ec2
            .create_network_interface()
            .subnet_id(&subnets[&inc.instance_id])
            .groups(&inc.open_group)
            .send()
            .await
            .unwrap()
            .network_interface
            .unwrap()
            .network_interface_id
            .unwrap();
        ec2.attach_network_interface()
            .network_interface_id(&eni)
            .instance_id(&inc.instance_id)
            .device_index(1)
            .send()
            .await
            .unwrap();
    }
}

/// The containment state of an instance, in a form two runs can be compared by.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct Contained {
    /// Each interface's groups are exactly [the isolation group].
    pub isolated: bool,
    /// The isolation group has no rules.
    pub isolation_group_empty: bool,
    /// Isolation groups for the case in the VPC.
    pub isolation_groups: usize,
    /// Termination protection on.
    pub termination_protected: bool,
    /// Active instance profile associations.
    pub profile_associations: usize,
    /// Snapshots per volume tagged with the case.
    pub snapshots_per_volume: Vec<usize>,
    /// Responder roles of the case left.
    pub responder_roles: usize,
}

impl Contained {
    /// What a successful containment of an instance with `volumes` volumes leaves.
    pub fn expected(volumes: usize) -> Contained {
        Contained {
            isolated: true,
            isolation_group_empty: true,
            isolation_groups: 1,
            termination_protected: true,
            profile_associations: 0,
            snapshots_per_volume: vec![1; volumes],
            responder_roles: 0,
        }
    }
}

/// Reads the containment state of an incident's instance for a case.
pub async fn contained(
    ec2: &aws_sdk_ec2::Client,
    iam: &aws_sdk_iam::Client,
    inc: &CompromisedInstance,
    case: &str,
) -> Contained {
    let groups = ec2
        .describe_security_groups()
        .filters(Filter::builder().name("vpc-id").values(&inc.vpc_id).build())
        .filters(Filter::builder().name("tag:irr:case").values(case).build())
        .send()
        .await
        .unwrap();
    let isolation: Vec<_> = groups
        .security_groups()
        .iter()
        .filter(|g| {
            g.tags()
                .iter()
                .any(|t| t.key() == Some("irr:purpose") && t.value() == Some("isolation"))
        })
        .collect();
    let iso_id = isolation
        .first()
        .and_then(|g| g.group_id())
        .unwrap_or("none")
        .to_owned();
    let enis = ec2
        .describe_network_interfaces()
        .filters(
            Filter::builder()
                .name("attachment.instance-id")
                .values(&inc.instance_id)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let isolated = !enis.network_interfaces().is_empty()
        && enis.network_interfaces().iter().all(|e| {
            let ids: Vec<&str> = e.groups().iter().filter_map(|g| g.group_id()).collect();
            ids == [iso_id.as_str()]
        });
    let isolation_group_empty = isolation
        .first()
        .is_some_and(|g| g.ip_permissions().is_empty() && g.ip_permissions_egress().is_empty());
    let attr = ec2
        .describe_instance_attribute()
        .instance_id(&inc.instance_id)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::DisableApiTermination)
        .send()
        .await
        .unwrap();
    let assoc = ec2
        .describe_iam_instance_profile_associations()
        .filters(
            Filter::builder()
                .name("instance-id")
                .values(&inc.instance_id)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let active = assoc
        .iam_instance_profile_associations()
        .iter()
        .filter(|a| a.state().map(|s| s.as_str()) == Some("associated"))
        .count();
    let mut per_volume = Vec::new();
    for v in &inc.volumes {
        let snaps = ec2
            .describe_snapshots()
            .filters(Filter::builder().name("volume-id").values(v).build())
            .filters(Filter::builder().name("tag:irr:case").values(case).build())
            .send()
            .await
            .unwrap();
        per_volume.push(snaps.snapshots().len());
    }
    let roles = iam.list_roles().send().await.unwrap();
    let responder_roles = roles
        .roles()
        .iter()
        // The responder role only (a clean-room stack's roles carry the case in their name too).
        .filter(|r| r.role_name().starts_with("irr-responder-") && r.role_name().contains(case))
        .count();
    Contained {
        isolated,
        isolation_group_empty,
        isolation_groups: isolation.len(),
        termination_protected: attr.disable_api_termination().and_then(|b| b.value()) == Some(true),
        profile_associations: active,
        snapshots_per_volume: per_volume,
        responder_roles,
    }
}

// ---- a private emulator with its own settings ----------------------------------------------

/// A moto server of one test's own (e.g. enforcing IAM), stopped when dropped.
pub struct PrivateEmulator(irr_runner::emulator::Emulator);

impl PrivateEmulator {
    /// Starts moto on a free loopback port with `env` set, and waits until it answers.
    pub fn start(env: &[(&str, &str)]) -> PrivateEmulator {
        PrivateEmulator(
            irr_runner::emulator::Emulator::start_with_env(env)
                .expect("start a private AWS emulator"),
        )
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        self.0.endpoint()
    }
}

/// The emulator as `account` sees it in `region`: the credentials of
/// `arn:aws:iam::ACCOUNT:role/ROLE`, assumed with the default test keys (moto and LocalStack
/// keep each account's state apart behind them; the fan-out tests and benchmark seed and read
/// each account this way).
pub async fn assumed_role_config(
    endpoint: &str,
    account: &str,
    role: &str,
    region: &str,
) -> aws_config::SdkConfig {
    let caller = sdk_config_for(endpoint, ("testing", "testing")).await;
    let creds = aws_sdk_sts::Client::new(&caller)
        .assume_role()
        .role_arn(format!("arn:aws:iam::{account}:role/{role}"))
        .role_session_name("irr-tests")
        .send()
        .await
        .unwrap()
        .credentials
        .unwrap();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(region.to_owned()))
        .credentials_provider(aws_sdk_sts::config::Credentials::new(
            creds.access_key_id(),
            creds.secret_access_key(),
            Some(creds.session_token().to_owned()),
            None,
            "irr-tests-assumed",
        ))
        .load()
        .await
}

/// An SDK configuration for an endpoint and an access key, region us-east-1.
pub async fn sdk_config_for(endpoint: &str, key: (&str, &str)) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sts::config::Credentials::new(
            key.0,
            key.1,
            None,
            None,
            "irr-tests",
        ))
        .load()
        .await
}

/// A private emulator enforcing IAM, and an SDK configuration for an admin user on it (allowed
/// everything). moto checks no request until its first three (`INITIAL_NO_AUTH_ACTION_COUNT`):
/// creating the admin, its policy and its key.
pub async fn iam_enforcing_emulator() -> (PrivateEmulator, aws_config::SdkConfig) {
    let (emu, conf, _) = iam_enforcing_emulator_with_admin().await;
    (emu, conf)
}

/// [`iam_enforcing_emulator`], with the admin's access key too (to run `irr` as the admin).
pub async fn iam_enforcing_emulator_with_admin(
) -> (PrivateEmulator, aws_config::SdkConfig, (String, String)) {
    let emu = PrivateEmulator::start(&[("INITIAL_NO_AUTH_ACTION_COUNT", "3")]);
    let boot =
        aws_sdk_iam::Client::new(&sdk_config_for(&emu.endpoint(), ("testing", "testing")).await);
    boot.create_user().user_name("admin").send().await.unwrap();
    boot.put_user_policy()
        .user_name("admin")
        .policy_name("everything")
        .policy_document(
            serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    let key = boot
        .create_access_key()
        .user_name("admin")
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap();
    let conf = sdk_config_for(
        &emu.endpoint(),
        (&key.access_key_id, &key.secret_access_key),
    )
    .await;
    assert!(
        boot.list_users().send().await.is_err(),
        "moto does not enforce IAM"
    );
    (emu, conf, (key.access_key_id, key.secret_access_key))
}

/// A new IAM user whose only permissions are `doc` (a policy document); returns its access
/// key.
pub async fn iam_user_with(iam: &aws_sdk_iam::Client, doc: &serde_json::Value) -> (String, String) {
    let name = unique("irr-runner");
    iam.create_user().user_name(&name).send().await.unwrap();
    iam.put_user_policy()
        .user_name(&name)
        .policy_name("irr")
        .policy_document(doc.to_string())
        .send()
        .await
        .unwrap();
    let k = iam
        .create_access_key()
        .user_name(&name)
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap();
    (k.access_key_id, k.secret_access_key)
}

/// How a measured child process ended.
#[derive(Clone, Debug)]
pub struct Measured {
    /// Exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Peak resident set size of the child (`ru_maxrss` from `wait4`), in KiB: its own
    /// memory plus the pages of its binary it touched (file-backed; tens of MiB for a debug
    /// build, and more with every crate linked in).
    pub max_rss_kib: u64,
    /// Peak of the memory the child itself holds (`RssAnon` in `/proc/PID/status`, sampled
    /// every 2 ms while it runs), in KiB: what a bounded-memory claim is about.
    pub max_anon_kib: u64,
    /// Wall time from spawn to exit.
    pub wall: std::time::Duration,
    /// Its stdout and stderr.
    pub stdout: Vec<u8>,
    /// Its stderr.
    pub stderr: Vec<u8>,
}

/// Runs `cmd` to its end and measures its peak RSS from its own `wait4` rusage (not the
/// test process's, not other children's). stdout and stderr go through files, so a child
/// that writes a lot never blocks on a full pipe.
pub fn run_measured(mut cmd: std::process::Command) -> Measured {
    let out = tempfile_in_tmp("stdout");
    let err = tempfile_in_tmp("stderr");
    cmd.stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .stdin(std::process::Stdio::null());
    let t = std::time::Instant::now();
    let child = cmd.spawn().expect("spawn");
    let pid = child.id() as libc::pid_t;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = 0u64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(st) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                    let anon = st
                        .lines()
                        .find_map(|l| l.strip_prefix("RssAnon:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
                    peak = peak.max(anon.unwrap_or(0));
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            peak
        })
    };
    // Wait for the exit without reaping (WNOWAIT), so the sampler never reads a reused pid;
    // then stop it and reap with wait4 for the rusage.
    // SAFETY: siginfo_t is plain data; waitid fills it for this child only.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let w = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOWAIT,
        )
    };
    assert_eq!(w, 0, "waitid: {}", std::io::Error::last_os_error());
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let max_anon_kib = sampler.join().unwrap_or(0);
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data; wait4 fills it for this child only.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    let wall = t.elapsed();
    // The child was reaped by wait4: `Child` must not wait for it again.
    std::mem::forget(child);
    let code = if libc::WIFEXITED(status) {
        Some(libc::WEXITSTATUS(status))
    } else {
        None
    };
    let m = Measured {
        code,
        max_rss_kib: usage.ru_maxrss as u64,
        max_anon_kib,
        wall,
        stdout: std::fs::read(&out).unwrap_or_default(),
        stderr: std::fs::read(&err).unwrap_or_default(),
    };
    let _ = std::fs::remove_file(out);
    let _ = std::fs::remove_file(err);
    m
}

fn tempfile_in_tmp(what: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "irr-measured-{}-{}",
        unique(what),
        std::process::id()
    ))
}

/// The `irr` command of the tests (`irr_bin()`), with `--state-dir`, the endpoint, dummy
/// credentials and region set as [`irr_with`] does, not yet run.
pub fn irr_command(args: &[&str], state: &Path, endpoint: &str) -> Command {
    let mut cmd = Command::new(irr_bin());
    cmd.args(args)
        .arg("--state-dir")
        .arg(state)
        .arg("--endpoint-url")
        .arg(endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env_remove("IRR_FAULT_KILL_AT_SEQ")
        .env_remove("IRR_FAULT_SIGINT_AT_SEQ");
    cmd
}

/// `true` while LocalStack's `RunInstances` still refuses an instance profile made through its
/// own IAM (`NoSuchEntity`): the reason the conformance suite and the drills launch without a
/// profile there. When it stops refusing, the test asserting this fails and the skip goes.
pub async fn localstack_refuses_launch_profiles(
    ec2: &aws_sdk_ec2::Client,
    iam: &aws_sdk_iam::Client,
) -> Result<bool, String> {
    let name = unique("ls-profile");
    iam.create_instance_profile()
        .instance_profile_name(&name)
        .send()
        .await
        .map_err(|e| format!("create instance profile: {e:?}"))?;
    let r = ec2
        .run_instances()
        .image_id("ami-12c6146b")
        .min_count(1)
        .max_count(1)
        .iam_instance_profile(
            IamInstanceProfileSpecification::builder()
                .name(&name)
                .build(),
        )
        .send()
        .await;
    match r {
        Ok(out) => {
            let ids: Vec<String> = out
                .instances()
                .iter()
                .filter_map(|i| i.instance_id().map(str::to_owned))
                .collect();
            let _ = ec2
                .terminate_instances()
                .set_instance_ids(Some(ids))
                .send()
                .await;
            Ok(false)
        }
        Err(e) => {
            let text = format!("{}", aws_sdk_ec2::error::DisplayErrorContext(&e));
            if text.contains("NoSuchEntity") {
                Ok(true)
            } else {
                Err(format!("RunInstances failed otherwise: {text}"))
            }
        }
    }
}

/// Attaches a second network interface (in the instance's subnet, in its open group) to the
/// incident's instance, so that "every interface isolated" is tested with two.
pub async fn add_second_interface(ec2: &aws_sdk_ec2::Client, inc: &CompromisedInstance) -> String {
    let inst = ec2
        .describe_instances()
        .instance_ids(&inc.instance_id)
        .send()
        .await
        .unwrap();
    let subnet = inst.reservations()[0].instances()[0]
        .subnet_id()
        .expect("instance subnet")
        .to_owned();
    let eni = ec2
        .create_network_interface()
        .subnet_id(&subnet)
        .groups(&inc.open_group)
        .send()
        .await
        .unwrap()
        .network_interface
        .unwrap()
        .network_interface_id
        .unwrap();
    ec2.attach_network_interface()
        .instance_id(&inc.instance_id)
        .network_interface_id(&eni)
        .device_index(1)
        .send()
        .await
        .unwrap();
    eni
}

/// The `irr` a benchmark measures: `target/release/irr` when built, else `target/debug/irr`
/// (the benchmark prints which). Found from the running bench binary's own path.
pub fn bench_irr_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().to_owned();
    for profile in ["release", "debug"] {
        let b = target.join(profile).join("irr");
        if b.exists() {
            return b;
        }
    }
    panic!("build irr first: cargo build --release -p irr-runner --bin irr");
}

/// `POST /moto-api/reset`: clears a private emulator's state (benchmarks: moto's describe
/// calls scan all of it, so leftovers of one measurement would slow the next).
pub fn reset_emulator(endpoint: &str) {
    use std::io::{Read, Write};
    let addr = irr_runner::emulator::loopback_addr(endpoint).unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /moto-api/reset HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// `irr run tests/fixtures/fleet-containment.yaml --yes` over `ids` through `endpoint` (the
/// fleet test and benchmark), with a new case; returns the case and the run's output.
pub fn run_fleet_containment(
    endpoint: &str,
    ids: &[&str],
    state: &Path,
    evidence: &Path,
) -> (String, Output) {
    let case = unique("IR-fleet");
    let pb = fixture("fleet-containment.yaml");
    let input = format!("instance_ids={}", ids.join(","));
    let args = [
        "run",
        pb.to_str().unwrap(),
        "--case",
        &case,
        "--input",
        &input,
        "--yes",
        "--evidence",
        evidence.to_str().unwrap(),
        "--output",
        "json",
    ];
    let out = irr_with(&args, state, endpoint, ("testing", "testing"), &[]);
    (case, out)
}
