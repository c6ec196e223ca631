//! Peer benchmark (issue 10): irr's full containment against aws_ir 0.3.3 and Google's
//! libcloudforensics, on the same private emulator, each measurement on a freshly reset and
//! seeded incident (`irr_tests::compromised_instances`), each run timed as one process from spawn
//! to exit, median of 3 (`IRR_BENCH_RUNS`).
//!
//! ```text
//! scripts/peer-venvs                                        # once: target/peers/{aws_ir,lcf}
//! cargo test --workspace --bench peers                      # release irr when built, else debug
//! ```
//!
//! - irr: `irr run tests/fixtures/fleet-containment.yaml --case C --input instance_ids=IDS --yes
//!   --evidence DIR --output json` (`--concurrency 32` for the fleet), every instance asserted
//!   fully contained (`irr_tests::contained`).
//! - aws_ir: `aws_ir --case-number C --examiner-cidr-range 10.9.9.9/32 instance-compromise
//!   --target ID` (the fleet: `--targets FILE`, one id a line; aws_ir processes them one after
//!   the other) `--plugins gather_host,isolate_host,snapshotdisks_host,tag_host`.
//! - libcloudforensics: `tests/benches/peers/lcf_contain.py` (InstanceNetworkQuarantine,
//!   InstanceProfileMitigator, AWSVolume.Snapshot per volume), one instance after the other
//!   (not an issue-10 target for the fleet: its fleet row is for information).
//!
//! Emulator quirks that shape the figures: moto's RunInstances associates the instance profile
//! with the first instance of a multi-instance launch only (so in the fleet only that one has a
//! profile to detach, for every tool alike); moto keeps an interface's own groups after
//! `ModifyInstanceAttribute(Groups)` (which both peers isolate with) and shows the new group
//! beside them, where AWS replaces the primary interface's groups: a peer's isolation is
//! checked on the instance's groups, and the "left" table shows the interface view.
//!
//! The peers reach the emulator through `AWS_ENDPOINT_URL` (both venvs hold a boto3 recent
//! enough to honour it) with a clean environment (no proxy, no AWS config files, no instance
//! metadata) and `tests/benches/peers/sitecustomize.py` refusing any connection that is not to
//! loopback. A peer's figure counts only when it exited 0 and left what its steps promise
//! (checked after the run); otherwise its row says what failed.
//!
//! `IRR_BENCH_FLEET` changes the fleet size (default 20), `IRR_PEERS_DIR` the venvs' folder.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use aws_sdk_ec2::types::Filter;
use irr_tests::{
    compromised_instances, contained, fixture, irr_with, json_lines, CompromisedInstance, Contained,
};

/// The examiner range given to both peers (a security-group rule only: nothing is sent there).
const EXAMINER_CIDR: &str = "10.9.9.9/32";
const AWS_IR_PLUGINS: &str = "gather_host,isolate_host,snapshotdisks_host,tag_host";

/// `target/`, from this bench binary's path (`target/PROFILE/deps/peers-HASH`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_owned()
}

/// `target/release/irr` when built, else `target/debug/irr` (said so in the output).
fn irr_binary() -> PathBuf {
    let target = target_dir();
    for profile in ["release", "debug"] {
        let b = target.join(profile).join("irr");
        if b.exists() {
            return b;
        }
    }
    panic!("build irr first: cargo build --release -p irr-runner");
}

/// `POST /moto-api/reset`: clears the emulator's state.
fn reset(endpoint: &str) {
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

/// `tests/benches/peers/`: the libcloudforensics driver and the loopback guard.
fn drivers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benches")
        .join("peers")
}

/// The two peer venvs made by `scripts/peer-venvs`.
struct Peers {
    aws_ir: PathBuf,
    lcf_python: PathBuf,
}

impl Peers {
    fn find() -> Result<Peers, String> {
        let dir = std::env::var_os("IRR_PEERS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| target_dir().join("peers"));
        let p = Peers {
            aws_ir: dir.join("aws_ir").join("bin").join("aws_ir"),
            lcf_python: dir.join("lcf").join("bin").join("python"),
        };
        let missing: Vec<String> = [&p.aws_ir, &p.lcf_python]
            .iter()
            .filter(|b| !b.exists())
            .map(|b| b.display().to_string())
            .collect();
        if missing.is_empty() {
            Ok(p)
        } else {
            Err(missing.join(", "))
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tool {
    Irr,
    AwsIr,
    Lcf,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Irr => "irr",
            Tool::AwsIr => "aws_ir 0.3.3",
            Tool::Lcf => "libcloudforensics",
        }
    }
}

/// What a tool left on an instance, beyond what its own check requires (for the notes).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Left {
    /// The instance's original (wide-open) group still on one of its interfaces, as the
    /// emulator describes them.
    open_group_on_interface: bool,
    /// Groups the instance itself lists (`DescribeInstances`).
    instance_groups: usize,
    /// Active instance profile associations.
    profile_associations: usize,
    /// Termination protection on.
    termination_protected: bool,
    /// Egress rules of the group that isolates it (`None`: no such group found).
    isolation_egress_rules: Option<usize>,
}

struct Ctx<'a> {
    endpoint: &'a str,
    ec2: &'a aws_sdk_ec2::Client,
    iam: &'a aws_sdk_iam::Client,
    peers: &'a Peers,
}

/// One measurement: wall time of the tool's process, or why it does not count.
type Measurement = Result<(f64, Left), String>;

/// A clean environment for a peer: the emulator through `AWS_ENDPOINT_URL`, dummy keys, no
/// config files, no proxy, no instance metadata, loopback only.
fn peer_command(program: &Path, endpoint: &str, home: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("LANG", "C.UTF-8")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", home.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            home.join("no-aws-credentials"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("PYTHONPATH", drivers_dir())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("IRR_PEER_LOOPBACK_ONLY", "1")
        .current_dir(home)
        .stdin(std::process::Stdio::null());
    cmd
}

fn tail(bytes: &[u8], lines: usize) -> String {
    let s = String::from_utf8_lossy(bytes);
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

fn timed(mut cmd: Command) -> (Output, f64) {
    let started = Instant::now();
    let out = cmd.output().expect("spawn a peer");
    (out, started.elapsed().as_secs_f64())
}

fn exited_ok(tool: Tool, out: &Output) -> Result<(), String> {
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} exited {:?}: {}",
            tool.name(),
            out.status.code(),
            tail(&out.stderr, 5)
        ))
    }
}

async fn instance_of(ec2: &aws_sdk_ec2::Client, id: &str) -> aws_sdk_ec2::types::Instance {
    ec2.describe_instances()
        .instance_ids(id)
        .send()
        .await
        .unwrap()
        .reservations()[0]
        .instances()[0]
        .clone()
}

/// Snapshots of a volume carrying tag `key=value`.
async fn snapshots_tagged(
    ec2: &aws_sdk_ec2::Client,
    volume: &str,
    key: &str,
    value: &str,
) -> usize {
    ec2.describe_snapshots()
        .filters(Filter::builder().name("volume-id").values(volume).build())
        .filters(
            Filter::builder()
                .name(format!("tag:{key}"))
                .values(value)
                .build(),
        )
        .send()
        .await
        .unwrap()
        .snapshots()
        .len()
}

async fn left_on(
    ec2: &aws_sdk_ec2::Client,
    inc: &CompromisedInstance,
    isolation_group: Option<&str>,
) -> Left {
    let inst = instance_of(ec2, &inc.instance_id).await;
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
    let open_group_on_interface = enis.network_interfaces().iter().any(|e| {
        e.groups()
            .iter()
            .any(|g| g.group_id() == Some(inc.open_group.as_str()))
    });
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
    let profile_associations = assoc
        .iam_instance_profile_associations()
        .iter()
        .filter(|a| a.state().map(|s| s.as_str()) == Some("associated"))
        .count();
    let attr = ec2
        .describe_instance_attribute()
        .instance_id(&inc.instance_id)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::DisableApiTermination)
        .send()
        .await
        .unwrap();
    let isolation_egress_rules = match isolation_group {
        Some(g) => ec2
            .describe_security_groups()
            .group_ids(g)
            .send()
            .await
            .ok()
            .and_then(|r| r.security_groups().first().cloned())
            .map(|g| g.ip_permissions_egress().len()),
        None => None,
    };
    Left {
        open_group_on_interface,
        instance_groups: inst.security_groups().len(),
        profile_associations,
        termination_protected: attr.disable_api_termination().and_then(|b| b.value()) == Some(true),
        isolation_egress_rules,
    }
}

/// The instance's groups as `DescribeInstances` lists them: exactly one, whose name is
/// accepted by `name_ok`; returns its id.
async fn single_instance_group(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
    name_ok: impl Fn(&str) -> bool,
) -> Result<String, String> {
    let inst = instance_of(ec2, id).await;
    let groups: Vec<(String, String)> = inst
        .security_groups()
        .iter()
        .map(|g| {
            (
                g.group_id().unwrap_or_default().to_owned(),
                g.group_name().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    match groups.as_slice() {
        [(gid, name)] if name_ok(name) => Ok(gid.clone()),
        _ => Err(format!("{id}: not isolated, its groups are {groups:?}")),
    }
}

/// Removes what aws_ir writes to /tmp for a case (`/tmp/CASE-*`, fixed in aws_ir).
fn remove_aws_ir_tmp(case: &str) {
    if let Ok(dir) = std::fs::read_dir("/tmp") {
        for e in dir.flatten() {
            if e.file_name().to_string_lossy().starts_with(case) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

async fn measure(ctx: &Ctx<'_>, tool: Tool, n: i32) -> Measurement {
    // A fresh emulator state for every measurement: moto's describe calls scan all of it.
    reset(ctx.endpoint);
    let fleet = compromised_instances(ctx.ec2, ctx.iam, n).await;
    let ids: Vec<&str> = fleet.iter().map(|i| i.instance_id.as_str()).collect();
    let case = irr_tests::unique("IR-peer");
    let home = tempfile::tempdir().unwrap();
    match tool {
        Tool::Irr => {
            let state = tempfile::tempdir().unwrap();
            let evidence = tempfile::tempdir().unwrap();
            let pb = fixture("fleet-containment.yaml");
            let input = format!("instance_ids={}", ids.join(","));
            let mut args = vec![
                "run",
                pb.to_str().unwrap(),
                "--case",
                &case,
                "--input",
                &input,
                "--yes",
                "--evidence",
                evidence.path().to_str().unwrap(),
                "--output",
                "json",
            ];
            if n > 1 {
                args.extend(["--concurrency", "32"]);
            }
            let started = Instant::now();
            let out = irr_with(
                &args,
                state.path(),
                ctx.endpoint,
                ("testing", "testing"),
                &[],
            );
            let wall = started.elapsed().as_secs_f64();
            let events = json_lines(&out);
            let last = events.last().expect("a summary");
            assert_eq!(
                last["status"],
                "succeeded",
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            for inc in &fleet {
                let c = contained(ctx.ec2, ctx.iam, inc, &case).await;
                assert_eq!(
                    c,
                    Contained::expected(inc.volumes.len()),
                    "{}",
                    inc.instance_id
                );
            }
            let group = first_interface_group(ctx.ec2, &fleet[0]).await;
            Ok((wall, left_on(ctx.ec2, &fleet[0], group.as_deref()).await))
        }
        Tool::AwsIr => {
            let mut cmd = peer_command(&ctx.peers.aws_ir, ctx.endpoint, home.path());
            cmd.args([
                "--case-number",
                &case,
                "--examiner-cidr-range",
                EXAMINER_CIDR,
                "instance-compromise",
            ]);
            if n == 1 {
                cmd.args(["--target", ids[0]]);
            } else {
                let file = home.path().join("targets");
                std::fs::write(&file, ids.join("\n") + "\n").unwrap();
                cmd.arg("--targets").arg(&file);
            }
            cmd.args(["--plugins", AWS_IR_PLUGINS]);
            let (out, wall) = timed(cmd);
            let checked = check_aws_ir(ctx, &fleet, &case, &out).await;
            remove_aws_ir_tmp(&case);
            checked.map(|left| (wall, left))
        }
        Tool::Lcf => {
            // libcloudforensics takes the instance's zone (it uses its region).
            let zone = instance_of(ctx.ec2, ids[0])
                .await
                .placement()
                .and_then(|p| p.availability_zone())
                .unwrap()
                .to_owned();
            let mut cmd = peer_command(&ctx.peers.lcf_python, ctx.endpoint, home.path());
            cmd.arg(drivers_dir().join("lcf_contain.py"))
                .args([zone.as_str(), &case, EXAMINER_CIDR])
                .args(ids.iter());
            let (out, wall) = timed(cmd);
            check_lcf(ctx, &fleet, &case, &out)
                .await
                .map(|left| (wall, left))
        }
    }
}

/// irr's isolation group: the one group on the first interface.
async fn first_interface_group(
    ec2: &aws_sdk_ec2::Client,
    inc: &CompromisedInstance,
) -> Option<String> {
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
        .ok()?;
    enis.network_interfaces()
        .first()?
        .groups()
        .first()?
        .group_id()
        .map(str::to_owned)
}

/// aws_ir's promise for these plugins, per instance: gather_host wrote the instance's metadata
/// and console output to /tmp, isolate_host put its `isolation-sg-CASE-ID` group (alone) on
/// the instance, snapshotdisks_host one snapshot per volume tagged `cr-case-number=CASE`,
/// tag_host that tag on the instance.
async fn check_aws_ir(
    ctx: &Ctx<'_>,
    fleet: &[CompromisedInstance],
    case: &str,
    out: &Output,
) -> Result<Left, String> {
    exited_ok(Tool::AwsIr, out)?;
    let mut first = None;
    for inc in fleet {
        let id = &inc.instance_id;
        for what in ["metadata", "console"] {
            let f = format!("/tmp/{case}-{id}-{what}.log");
            if !Path::new(&f).exists() {
                return Err(format!("gather_host: {f} missing"));
            }
        }
        let want = format!("isolation-sg-{case}-{id}");
        let group = single_instance_group(ctx.ec2, id, |n| n == want).await?;
        let inst = instance_of(ctx.ec2, id).await;
        if !inst
            .tags()
            .iter()
            .any(|t| t.key() == Some("cr-case-number") && t.value() == Some(case))
        {
            return Err(format!("tag_host: {id} has no cr-case-number tag"));
        }
        for v in &inc.volumes {
            let s = snapshots_tagged(ctx.ec2, v, "cr-case-number", case).await;
            if s != 1 {
                return Err(format!("snapshotdisks_host: {s} snapshots of {v}"));
            }
        }
        if first.is_none() {
            first = Some(left_on(ctx.ec2, inc, Some(&group)).await);
        }
    }
    Ok(first.unwrap())
}

/// libcloudforensics' promise, per instance: a `quarantine-*` group (alone) on the instance, no
/// active profile association, one snapshot per volume tagged `case=CASE` (the driver's tag).
async fn check_lcf(
    ctx: &Ctx<'_>,
    fleet: &[CompromisedInstance],
    case: &str,
    out: &Output,
) -> Result<Left, String> {
    exited_ok(Tool::Lcf, out)?;
    let mut first = None;
    for inc in fleet {
        let id = &inc.instance_id;
        let group = single_instance_group(ctx.ec2, id, |n| n.starts_with("quarantine-")).await?;
        for v in &inc.volumes {
            let s = snapshots_tagged(ctx.ec2, v, "case", case).await;
            if s != 1 {
                return Err(format!("AWSVolume.Snapshot: {s} snapshots of {v}"));
            }
        }
        let left = left_on(ctx.ec2, inc, Some(&group)).await;
        if left.profile_associations != 0 {
            return Err(format!(
                "InstanceProfileMitigator: {id} still has its profile"
            ));
        }
        first.get_or_insert(left);
    }
    Ok(first.unwrap())
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

struct Row {
    tool: Tool,
    n: i32,
    runs: Vec<Measurement>,
}

impl Row {
    fn walls(&self) -> Option<Vec<f64>> {
        self.runs
            .iter()
            .map(|r| r.as_ref().ok().map(|(w, _)| *w))
            .collect()
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let peers = match Peers::find() {
        Ok(p) => p,
        Err(missing) => {
            println!(
                "peer venvs missing ({missing}): run scripts/peer-venvs first; nothing measured"
            );
            return;
        }
    };
    let bin = irr_binary();
    // irr_tests::irr_with finds the binary next to the test binaries: point it here.
    std::env::set_var("IRR_BIN_OVERRIDE", &bin);
    let runs: usize = std::env::var("IRR_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|r| *r > 0)
        .unwrap_or(3);
    let fleet: i32 = std::env::var("IRR_BENCH_FLEET")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let emu = irr_tests::PrivateEmulator::start(&[]);
    let endpoint = emu.endpoint();
    let conf = irr_tests::sdk_config_for(&endpoint, ("testing", "testing")).await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let iam = aws_sdk_iam::Client::new(&conf);
    let ctx = Ctx {
        endpoint: &endpoint,
        ec2: &ec2,
        iam: &iam,
        peers: &peers,
    };
    println!("irr binary: {}", bin.display());
    println!("aws_ir: {}", peers.aws_ir.display());
    println!("libcloudforensics: {}", peers.lcf_python.display());
    println!("emulator: {endpoint}; {runs} runs each, interleaved");
    // Warm the emulator (the first requests import moto's service modules: EC2, IAM, S3 for
    // aws_ir's case bucket): one untimed run of each tool.
    for tool in [Tool::Irr, Tool::AwsIr, Tool::Lcf] {
        if let Err(e) = measure(&ctx, tool, 1).await {
            println!("warm-up: {} failed: {e}", tool.name());
        }
    }
    let mut rows = Vec::new();
    for n in [1, fleet] {
        let tools = [Tool::Irr, Tool::AwsIr, Tool::Lcf];
        let mut these: Vec<Row> = tools
            .iter()
            .map(|&tool| Row {
                tool,
                n,
                runs: Vec::new(),
            })
            .collect();
        // Interleaved, so that a slow moment of the machine does not fall on one tool only.
        for _ in 0..runs {
            for row in these.iter_mut() {
                let m = measure(&ctx, row.tool, n).await;
                eprintln!(
                    "{} x{n}: {}",
                    row.tool.name(),
                    match &m {
                        Ok((w, _)) => format!("{w:.2} s"),
                        Err(e) => format!("FAILED: {e}"),
                    }
                );
                row.runs.push(m);
            }
        }
        rows.extend(these);
    }
    print_times(&rows, runs);
    print_left(&rows);
}

/// The markdown table of wall times, then the runs that did not count.
fn print_times(rows: &[Row], runs: usize) {
    let run_cols: String = (1..=runs).map(|i| format!(" run {i} |")).collect();
    println!();
    println!("| tool | instances |{run_cols} median | peer/irr |");
    println!("|---|---:|{}---:|---:|", "---:|".repeat(runs));
    let mut failures = Vec::new();
    for row in rows {
        let irr_median = rows
            .iter()
            .find(|r| r.tool == Tool::Irr && r.n == row.n)
            .and_then(Row::walls)
            .map(|w| median(&w));
        let cells: String = row
            .runs
            .iter()
            .map(|r| match r {
                Ok((w, _)) => format!(" {w:.2} s |"),
                Err(_) => " failed |".to_owned(),
            })
            .collect();
        let (med, ratio) = match (row.walls(), irr_median) {
            (Some(w), Some(i)) => {
                let m = median(&w);
                let ratio = if row.tool == Tool::Irr {
                    "1.0x".to_owned()
                } else {
                    format!("{:.1}x", m / i)
                };
                (format!("{m:.2} s"), ratio)
            }
            (Some(w), None) => (format!("{:.2} s", median(&w)), "-".to_owned()),
            _ => ("-".to_owned(), "- (did not complete)".to_owned()),
        };
        println!(
            "| {} | {} |{cells} {med} | {ratio} |",
            row.tool.name(),
            row.n
        );
        for (i, r) in row.runs.iter().enumerate() {
            if let Err(e) = r {
                failures.push(format!("{} x{} run {}: {e}", row.tool.name(), row.n, i + 1));
            }
        }
    }
    if !failures.is_empty() {
        println!();
        println!("Not counted (the peer did not complete its work):");
        for f in &failures {
            println!("- {f}");
        }
    }
}

/// What each tool left on an instance (the emulator's view), from its last counted 1-instance run.
fn print_left(rows: &[Row]) {
    println!();
    println!("What each tool left on the first instance of its last single-instance run:");
    println!();
    println!("| tool | open group still on an interface | instance-level groups | active profile associations | termination protection | isolation group egress rules |");
    println!("|---|---|---:|---:|---|---:|");
    for row in rows.iter().filter(|r| r.n == 1) {
        if let Some(Ok((_, l))) = row.runs.iter().rev().find(|r| r.is_ok()) {
            println!(
                "| {} | {} | {} | {} | {} | {} |",
                row.tool.name(),
                l.open_group_on_interface,
                l.instance_groups,
                l.profile_associations,
                l.termination_protected,
                l.isolation_egress_rules
                    .map_or("-".to_owned(), |n| n.to_string())
            );
        }
    }
}
