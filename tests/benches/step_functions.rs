//! A fleet through Step Functions against the CLI (issue 13): N instances (default 50, each
//! with two volumes), contained by the compiled `contain-fleet` playbook
//! (`runner/tests/fixtures/compile/contain-fleet.yaml`: protect, snapshot, isolate, each a
//! `for_each`) on LocalStack's Step Functions interpreter, and by `irr run` of the same
//! playbook against the same LocalStack, a fresh fleet each.
//!
//! ```text
//! cargo build -p irr-runner && cargo bench -p irr-tests --bench step_functions
//! ```
//!
//! Prints both wall times (the execution from StartExecution to its end; the `irr run`
//! process from spawn to exit, evidence sealed) and their ratio. Every instance is checked
//! contained both ways. `IRR_BENCH_FLEET` sets N. LocalStack: `IRR_TEST_LOCALSTACK_ENDPOINT`,
//! else a private one.

use std::time::{Duration, Instant};

use irr_runner::emulator::EmulatorKind;
use irr_tests::sfn::{clients, compile, create_machine, ended, evidence_bucket, start};
use irr_tests::{compromised_instances_with, contained, endpoint_of, irr_with, unique, Contained};
use serde_json::json;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let n: i32 = env_or("IRR_BENCH_FLEET", 50);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = clients().await;
        let playbook = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../runner/tests/fixtures/compile/contain-fleet.yaml");
        let dir = tempfile::tempdir().unwrap();
        let definition = compile(&playbook, dir.path(), &[]);
        let bucket = evidence_bucket(&c).await;
        let machine = create_machine(&c, &definition, &bucket).await;

        // The CLI.
        let fleet = compromised_instances_with(&c.ec2, &c.iam, n, false).await;
        let ids: Vec<&str> = fleet.iter().map(|i| i.instance_id.as_str()).collect();
        let case = unique("IR-bench-cli");
        let evidence = dir.path().join("evidence");
        let list = serde_json::to_string(&ids).unwrap();
        let t = Instant::now();
        let o = irr_with(
            &[
                "run", &playbook.display().to_string(), "--case", &case, "--yes",
                "--input", &format!("instance_ids={list}"),
                "--evidence", &evidence.display().to_string(),
            ],
            dir.path(),
            &endpoint_of(EmulatorKind::Localstack),
            ("testing", "testing"),
            &[],
        );
        let cli = t.elapsed();
        assert!(o.status.success(), "irr run: {}", irr_tests::output_text(&o));
        for inc in &fleet {
            assert_eq!(contained(&c.ec2, &c.iam, inc, &case).await, Contained::expected(inc.volumes.len()));
        }

        // The state machine.
        let fleet = compromised_instances_with(&c.ec2, &c.iam, n, false).await;
        let ids: Vec<&str> = fleet.iter().map(|i| i.instance_id.as_str()).collect();
        let case = unique("IR-bench-sfn");
        let t = Instant::now();
        let arn = start(&c, &machine, &unique("bench"), &json!({"case_id": case, "inputs": {"instance_ids": ids}})).await;
        let (status, _) = ended(&c, &arn, Duration::from_secs(3600)).await;
        let sfn = t.elapsed();
        assert_eq!(status, "SUCCEEDED");
        for inc in &fleet {
            assert_eq!(contained(&c.ec2, &c.iam, inc, &case).await, Contained::expected(inc.volumes.len()));
        }
        println!(
            "fleet of {n} on LocalStack: irr run {:.1} s, Step Functions execution {:.1} s ({:.1}x the CLI); every instance contained both ways",
            cli.as_secs_f64(),
            sfn.as_secs_f64(),
            sfn.as_secs_f64() / cli.as_secs_f64()
        );
    });
}
