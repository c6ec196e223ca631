//! Containment benchmark against a private emulator: wall time, mutating AWS calls (from the
//! journal) and time until the isolation group is on every interface, for 1 instance and for
//! 100 instances in one run (`tests/fixtures/fleet-containment.yaml`, `for_each`), at several
//! `--concurrency` values.
//!
//! ```text
//! cargo build --release -p irr-runner && cargo bench -p irr-tests --bench containment
//! ```
//!
//! `IRR_BENCH_FLEET` changes the fleet size (default 100), `IRR_BENCH_CONCURRENCY` the list of
//! concurrency values for the fleet (default `4,16,32`).

use std::path::Path;
use std::time::Instant;

use irr_tests::{compromised_instances, contained, fixture, irr_with, json_lines, Contained};
use serde_json::Value;

use irr_tests::{bench_irr_binary as irr_binary, reset_emulator as reset};

struct Figures {
    wall_s: f64,
    mutating_calls: usize,
    isolated_after_s: f64,
    snapshots: usize,
}

fn ts(v: &Value) -> f64 {
    let t = time::OffsetDateTime::parse(
        v.as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    t.unix_timestamp_nanos() as f64 / 1e9
}

async fn contain(
    endpoint: &str,
    ec2: &aws_sdk_ec2::Client,
    iam: &aws_sdk_iam::Client,
    n: i32,
    concurrency: usize,
) -> Figures {
    // A fresh emulator state for every measurement: moto's describe calls scan all of it, so
    // leftovers of an earlier measurement would slow a later one.
    reset(endpoint);
    let fleet = compromised_instances(ec2, iam, n).await;
    let ids: Vec<&str> = fleet.iter().map(|i| i.instance_id.as_str()).collect();
    let case = irr_tests::unique("IR-bench");
    let state = tempfile::tempdir().unwrap();
    let evidence = tempfile::tempdir().unwrap();
    let pb = fixture("fleet-containment.yaml");
    let input = format!("instance_ids={}", ids.join(","));
    let conc = concurrency.to_string();
    let args = [
        "run",
        pb.to_str().unwrap(),
        "--case",
        &case,
        "--input",
        &input,
        "--yes",
        "--concurrency",
        &conc,
        "--evidence",
        evidence.path().to_str().unwrap(),
        "--output",
        "json",
    ];
    let started = Instant::now();
    let out = irr_with(&args, state.path(), endpoint, ("testing", "testing"), &[]);
    let wall_s = started.elapsed().as_secs_f64();
    let events = json_lines(&out);
    let last = events.last().expect("a summary");
    assert_eq!(
        last["status"],
        "succeeded",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run_id = last["run_id"].as_str().unwrap();
    let journal = std::fs::read_to_string(
        Path::new(state.path())
            .join("runs")
            .join(run_id)
            .join("journal.jsonl"),
    )
    .unwrap();
    let entries: Vec<Value> = journal
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mutating_calls = entries
        .iter()
        .filter(|e| e["event"] == "call_started")
        .count();
    let start = entries
        .iter()
        .find(|e| e["event"] == "run_started")
        .map(|e| ts(&e["ts"]))
        .unwrap();
    let isolated = entries
        .iter()
        .find(|e| e["event"] == "step_finished" && e["id"] == "isolate")
        .map(|e| ts(&e["ts"]))
        .unwrap();
    // Every instance contained, one snapshot per volume.
    let mut snapshots = 0;
    for inc in &fleet {
        let c = contained(ec2, iam, inc, &case).await;
        assert_eq!(
            c,
            Contained::expected(inc.volumes.len()),
            "{}",
            inc.instance_id
        );
        snapshots += c.snapshots_per_volume.iter().sum::<usize>();
    }
    Figures {
        wall_s,
        mutating_calls,
        isolated_after_s: isolated - start,
        snapshots,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let bin = irr_binary();
    // irr_tests::irr_with finds the binary next to the test binaries: point it here.
    std::env::set_var("IRR_BIN_OVERRIDE", &bin);
    let fleet: i32 = std::env::var("IRR_BENCH_FLEET")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let concurrency: Vec<usize> = std::env::var("IRR_BENCH_CONCURRENCY")
        .unwrap_or_else(|_| "4,16,32".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let emu = irr_tests::PrivateEmulator::start(&[]);
    let endpoint = emu.endpoint();
    let conf = irr_tests::sdk_config_for(&endpoint, ("testing", "testing")).await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let iam = aws_sdk_iam::Client::new(&conf);
    println!("irr binary: {}", bin.display());
    // Warm the emulator (first requests import moto's service modules).
    let _ = contain(&endpoint, &ec2, &iam, 1, 4).await;
    let one = contain(&endpoint, &ec2, &iam, 1, 4).await;
    println!(
        "| instances | --concurrency | wall time | mutating calls | isolated on every interface after | snapshots | ratio to 1 |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| 1 | 4 | {:.2} s | {} | {:.2} s | {} | 1.0x |",
        one.wall_s, one.mutating_calls, one.isolated_after_s, one.snapshots
    );
    for c in concurrency {
        let f = contain(&endpoint, &ec2, &iam, fleet, c).await;
        println!(
            "| {fleet} | {c} | {:.2} s | {} | {:.2} s | {} | {:.1}x |",
            f.wall_s,
            f.mutating_calls,
            f.isolated_after_s,
            f.snapshots,
            f.wall_s / one.wall_s
        );
    }
}
