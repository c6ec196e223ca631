//! Fan-out through EC2's throttling (issue 14): the same incident of N instances (default 20,
//! each with two interfaces and two volumes) in one account-region, then in 3 accounts x 2
//! regions, each contained by one `irr run --targets` (`tests/fixtures/fanout-containment.yaml`:
//! find by tag, protect, snapshot, isolate) through the fault proxy's EC2 model: 60 ms a call
//! and EC2's default token buckets, kept per account-region (the request's signing key and
//! region), as EC2 meters them.
//!
//! ```text
//! cargo build --release -p irr-runner --bin irr && cargo bench -p irr-tests --bench fanout
//! ```
//!
//! Buckets are per account-region, so six account-regions should take about as long as one:
//! each run prints both wall times (one `irr run` process from spawn to exit, evidence
//! sealed) and their ratio, measured interleaved on the same emulator, median of
//! `IRR_BENCH_RUNS` (default 3). Every instance of every account-region is checked contained
//! through that account's own role. `IRR_BENCH_FLEET` sets N, `IRR_BENCH_LATENCY_MS` the
//! latency.

use std::time::Instant;

use irr_runner::proxy::{FaultProxy, ProxySpec, ThrottleModel};
use irr_tests::{
    add_second_interfaces, bench_irr_binary, compromised_instances, contained, fixture, irr_with,
    json_lines, reset_emulator, CompromisedInstance, Contained,
};

const ROLE: &str = "irr-responder";
const TAG: &str = "IR-BENCH-FAN";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The emulator as `account` sees it through the role, in `region`.
async fn account_conf(endpoint: &str, account: &str, region: &str) -> aws_config::SdkConfig {
    irr_tests::assumed_role_config(endpoint, account, ROLE, region).await
}

struct Place {
    ec2: aws_sdk_ec2::Client,
    iam: aws_sdk_iam::Client,
    fleet: Vec<CompromisedInstance>,
}

async fn seed(endpoint: &str, account: &str, region: &str, n: i32) -> Place {
    let conf = account_conf(endpoint, account, region).await;
    let (ec2, iam) = (
        aws_sdk_ec2::Client::new(&conf),
        aws_sdk_iam::Client::new(&conf),
    );
    let fleet = compromised_instances(&ec2, &iam, n).await;
    add_second_interfaces(&ec2, &fleet).await;
    let mut tag = ec2.create_tags().tags(
        aws_sdk_ec2::types::Tag::builder()
            .key("incident")
            .value(TAG)
            .build(),
    );
    for i in &fleet {
        tag = tag.resources(&i.instance_id);
    }
    tag.send().await.unwrap();
    Place { ec2, iam, fleet }
}

/// CPU seconds (user + system) the emulator serving `endpoint` has used so far: the moto
/// process whose command line names its port (one Python process: what it can serve is
/// bounded by one core).
fn emulator_cpu_s(endpoint: &str) -> f64 {
    let port = endpoint.rsplit(':').next().unwrap_or_default();
    let wanted = format!("-p\0{port}");
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let dir = entry.path();
        let Ok(cmd) = std::fs::read(dir.join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd);
        if !cmd.contains(&wanted) || !cmd.contains("moto") || cmd.starts_with("sh\0") {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        // After the command's closing parenthesis: state is field 3, utime 14, stime 15.
        let rest = stat.rsplit(')').next().unwrap_or_default();
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| {
            f.get(i - 3)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        total += (ticks(14) + ticks(15)) / 100.0;
    }
    total
}

/// CPU seconds used by this process's waited-for children (the `irr` runs).
fn children_cpu_s() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// One run's figures.
struct Figures {
    wall: f64,
    emulator_cpu: f64,
    irr_cpu: f64,
}

/// One run over `places` (account, region): seeded afresh, contained, checked.
async fn one_run(endpoint: &str, places: &[(&str, &str)], n: i32, latency_ms: u64) -> Figures {
    reset_emulator(endpoint);
    let mut seeded = Vec::new();
    for (a, r) in places {
        seeded.push(seed(endpoint, a, r, n).await);
    }
    let spec = ProxySpec {
        latency_ms,
        throttle: Some(ThrottleModel::Ec2),
        ..ProxySpec::default()
    };
    let proxy = FaultProxy::start(endpoint, spec).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut accounts: Vec<&str> = places.iter().map(|p| p.0).collect();
    accounts.dedup();
    let mut regions: Vec<&str> = places.iter().map(|p| p.1).collect();
    regions.sort_unstable();
    regions.dedup();
    let quoted: Vec<String> = accounts.iter().map(|a| format!("\"{a}\"")).collect();
    let targets = dir.path().join("targets.yaml");
    std::fs::write(
        &targets,
        format!(
            "accounts: [{}]\nregions: [{}]\nrole: {ROLE}\nconcurrency: 32\n",
            quoted.join(", "),
            regions.join(", ")
        ),
    )
    .unwrap();
    let (state, evidence) = (dir.path().join("state"), dir.path().join("evidence"));
    let pb = fixture("fanout-containment.yaml");
    let url = proxy.url().to_owned();
    let (emu0, irr0) = (emulator_cpu_s(endpoint), children_cpu_s());
    let started = Instant::now();
    let out = tokio::task::block_in_place(|| {
        irr_with(
            &[
                "run",
                pb.to_str().unwrap(),
                "--case",
                TAG,
                "--yes",
                "--output",
                "json",
                "--concurrency",
                "64",
                "--evidence",
                evidence.to_str().unwrap(),
                "--targets",
                targets.to_str().unwrap(),
                "--input",
                &format!("incident_tag={TAG}"),
            ],
            &state,
            &url,
            ("testing", "testing"),
            &[],
        )
    });
    let wall = started.elapsed().as_secs_f64();
    let (emulator_cpu, irr_cpu) = (emulator_cpu_s(endpoint) - emu0, children_cpu_s() - irr0);
    let last = json_lines(&out).pop().expect("a summary");
    assert_eq!(
        last["status"],
        "succeeded",
        "{last:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for p in &seeded {
        for inc in &p.fleet {
            let c = contained(&p.ec2, &p.iam, inc, TAG).await;
            assert_eq!(
                c,
                Contained::expected(inc.volumes.len()),
                "{}",
                inc.instance_id
            );
        }
    }
    let throttled: u64 = proxy.stats().values().map(|s| s.throttled).sum();
    if throttled > 0 {
        println!("  ({throttled} RequestLimitExceeded answers)");
    }
    Figures {
        wall,
        emulator_cpu,
        irr_cpu,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let bin = bench_irr_binary();
    std::env::set_var("IRR_BIN_OVERRIDE", &bin);
    let n: i32 = env_or("IRR_BENCH_FLEET", 20);
    let runs: usize = env_or("IRR_BENCH_RUNS", 3);
    let latency_ms: u64 = env_or("IRR_BENCH_LATENCY_MS", 60);
    let emu = irr_tests::PrivateEmulator::start(&[]);
    let endpoint = emu.endpoint();
    let one = [("111111111111", "us-east-1")];
    let six: Vec<(&str, &str)> = ["111111111111", "222222222222", "333333333333"]
        .iter()
        .flat_map(|a| ["us-east-1", "us-west-2"].map(|r| (*a, r)))
        .collect();
    println!("irr binary: {}", bin.display());
    println!("{n} instances (2 interfaces, 2 volumes) per account-region, EC2 throttle model per account-region, {latency_ms} ms a call");
    println!("| run | 1 account-region: wall (emulator CPU, irr CPU) | 3 accounts x 2 regions: wall (emulator CPU, irr CPU) | wall ratio | 3 x 2 wall / its emulator CPU |");
    println!("|---:|---:|---:|---:|---:|");
    let (mut ones, mut sixes, mut bound) = (Vec::new(), Vec::new(), Vec::new());
    for r in 1..=runs {
        let a = one_run(&endpoint, &one, n, latency_ms).await;
        let b = one_run(&endpoint, &six, n, latency_ms).await;
        println!(
            "| {r} | {:.2} s ({:.2} s, {:.2} s) | {:.2} s ({:.2} s, {:.2} s) | {:.2}x | {:.2}x |",
            a.wall,
            a.emulator_cpu,
            a.irr_cpu,
            b.wall,
            b.emulator_cpu,
            b.irr_cpu,
            b.wall / a.wall,
            b.wall / b.emulator_cpu.max(0.01)
        );
        ones.push(a.wall);
        sixes.push(b.wall);
        bound.push(b.wall / b.emulator_cpu.max(0.01));
    }
    let (a, b) = (median(ones), median(sixes));
    println!(
        "median: 1 account-region {a:.2} s ({n} instances), 3 x 2 {b:.2} s ({} instances): {:.2}x; the 3 x 2 run took {:.2}x the CPU time its one emulator process spent serving it",
        n * 6,
        b / a,
        median(bound)
    );
}
