//! Fleet containment through EC2's throttling, as AWS would serve it: N instances (default
//! 100), each with two interfaces and two volumes, contained in one `irr run`
//! (`tests/fixtures/fleet-containment.yaml`, `for_each`) through the fault proxy's EC2 model:
//! 60 ms a call and EC2's documented default token buckets, `RequestLimitExceeded` when one
//! is empty.
//!
//! ```text
//! cargo build --release -p irr-runner --bin irr && cargo bench -p irr-tests --bench fleet
//! ```
//!
//! The floor is the isolation's `ModifyNetworkInterfaceAttribute`: two per interface, four per
//! instance, from a bucket of 100 tokens refilled at 5 a second, so (4N - 100) / 5 s. Each run
//! prints the wall time (one `irr run` process, evidence sealed) against that floor, the EC2
//! calls per instance (mutating and reads, as the proxy counted them: batched reads count as
//! their share) and the `RequestLimitExceeded` answers. Every instance is checked contained.
//! `IRR_BENCH_FLEET` sets N, `IRR_BENCH_RUNS` the number of runs (default 3, median shown),
//! `IRR_BENCH_LATENCY_MS` the latency (default 60).

use std::time::Instant;

use irr_runner::proxy::{FaultProxy, ProxySpec, ThrottleModel};
use irr_tests::{
    add_second_interfaces, bench_irr_binary, compromised_instances, contained, json_lines,
    reset_emulator, Contained,
};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Figures {
    wall_s: f64,
    mutating: u64,
    reads: u64,
    throttled: u64,
}

async fn one_run(
    endpoint: &str,
    ec2: &aws_sdk_ec2::Client,
    iam: &aws_sdk_iam::Client,
    n: i32,
    latency_ms: u64,
) -> Figures {
    reset_emulator(endpoint);
    let fleet = compromised_instances(ec2, iam, n).await;
    add_second_interfaces(ec2, &fleet).await;
    let proxy = FaultProxy::start(
        endpoint,
        ProxySpec {
            latency_ms,
            throttle: Some(ThrottleModel::Ec2),
            ..ProxySpec::default()
        },
    )
    .await
    .unwrap();
    let ids: Vec<&str> = fleet.iter().map(|i| i.instance_id.as_str()).collect();
    let url = proxy.url().to_owned();
    let started = Instant::now();
    // The proxy serves on this runtime's other worker meanwhile.
    let (state, evidence) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (case, out) = tokio::task::block_in_place(|| {
        irr_tests::run_fleet_containment(&url, &ids, state.path(), evidence.path())
    });
    let wall_s = started.elapsed().as_secs_f64();
    let events = json_lines(&out);
    let last = events.last().expect("a summary");
    assert_eq!(
        last["status"],
        "succeeded",
        "{last:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for s in last["steps"].as_array().unwrap() {
        assert_eq!(s["status"], "succeeded", "{s}");
    }
    let stats = proxy.stats();
    let (mut mutating, mut reads, mut throttled) = (0, 0, 0);
    for (action, s) in &stats {
        let Some(op) = action.strip_prefix("ec2:") else {
            continue;
        };
        throttled += s.throttled;
        if ["Describe", "Get", "List"]
            .iter()
            .any(|p| op.starts_with(p))
        {
            reads += s.calls;
        } else {
            mutating += s.calls;
        }
    }
    // Every instance fully contained: every interface in the isolation group alone, which
    // has no rule; termination protection on; no profile; one snapshot per volume.
    for inc in &fleet {
        let c = contained(ec2, iam, inc, &case).await;
        assert_eq!(
            c,
            Contained::expected(inc.volumes.len()),
            "{}",
            inc.instance_id
        );
    }
    if std::env::var_os("IRR_BENCH_VERBOSE").is_some() {
        for (action, s) in &stats {
            println!("  {action}: {} calls, {} throttled", s.calls, s.throttled);
        }
    }
    Figures {
        wall_s,
        mutating,
        reads,
        throttled,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let bin = bench_irr_binary();
    std::env::set_var("IRR_BIN_OVERRIDE", &bin);
    let n: i32 = env_or("IRR_BENCH_FLEET", 100);
    let runs: usize = env_or("IRR_BENCH_RUNS", 3);
    let latency_ms: u64 = env_or("IRR_BENCH_LATENCY_MS", 60);
    let emu = irr_tests::PrivateEmulator::start(&[]);
    let endpoint = emu.endpoint();
    let conf = irr_tests::sdk_config_for(&endpoint, ("testing", "testing")).await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let iam = aws_sdk_iam::Client::new(&conf);
    let floor = ((4 * n - 100).max(0)) as f64 / 5.0;
    println!("irr binary: {}", bin.display());
    println!("{n} instances (2 interfaces, 2 volumes each), EC2 throttle model, {latency_ms} ms a call; floor (4N - 100) / 5 = {floor:.1} s");
    println!("| run | wall time | / floor | mutating EC2 calls / instance | read EC2 calls / instance | RequestLimitExceeded |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let mut walls = Vec::new();
    for r in 1..=runs {
        let f = one_run(&endpoint, &ec2, &iam, n, latency_ms).await;
        println!(
            "| {r} | {:.1} s | {:.2}x | {:.2} | {:.2} | {} |",
            f.wall_s,
            f.wall_s / floor.max(1.0),
            f.mutating as f64 / n as f64,
            f.reads as f64 / n as f64,
            f.throttled
        );
        walls.push(f.wall_s);
    }
    walls.sort_by(f64::total_cmp);
    let median = walls[walls.len() / 2];
    println!(
        "median {median:.1} s = {:.2}x the floor ({floor:.1} s)",
        median / floor.max(1.0)
    );
}
