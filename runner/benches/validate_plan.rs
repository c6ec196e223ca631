//! Validate + plan on generated playbooks of 250 to 2,000 steps (`cargo bench -p irr-runner
//! --bench validate_plan`). Each step mixes what makes validation work hard: `for_each`
//! over a list input, templates naming inputs and upstream step outputs (implicit needs),
//! and a wide dependency graph (each step needs several earlier ones, near and far).
//! Prints the best of several runs per size, and the time per step so linearity shows.

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use irr_runner::diagnostic::Source;
use irr_runner::plan::{plan, PlanContext};
use irr_runner::validate::{resolve_inputs, validate};

/// A playbook of `n` steps.
fn playbook(n: usize) -> String {
    let mut y = String::new();
    y.push_str(
        "apiVersion: irr/v1\nkind: Playbook\nmetadata:\n  name: generated\n  version: 1.0.0\n\
         inputs:\n  instance_ids:\n    type: list\n    items: instance_id\n    \
         default: [i-0abc1234def567890, i-0abc1234def567891, i-0abc1234def567892]\n  \
         instance_id:\n    type: instance_id\n    default: i-0abc1234def567890\n  \
         responders:\n    type: list\n    items: arn\n    default: [\"arn:aws:iam::123456789012:role/r\"]\n  \
         label:\n    type: string\n    default: bench\n\
         evidence:\n  location: \"s3://evidence-{{inputs.label}}/cases\"\nsteps:\n",
    );
    for i in 0..n {
        let _ = writeln!(y, "  - id: s{i}");
        match i % 4 {
            // A fan-out over the fleet.
            0 => {
                y.push_str("    action: ec2.snapshot_volumes\n");
                y.push_str("    for_each: \"{{inputs.instance_ids}}\"\n");
                y.push_str("    timeout: 30m\n    retries: 2\n");
                y.push_str("    with:\n      instance_id: \"{{item}}\"\n");
            }
            // Tags what an earlier snapshot step made (an output reference: implicit need).
            1 => {
                let src = i - 1;
                y.push_str("    action: ec2.tag_resources\n");
                y.push_str("    on_failure: continue\n");
                let _ = writeln!(
                    y,
                    "    with:\n      resource_ids: [\"{{{{inputs.instance_id}}}}\", \"{{{{steps.s{src}.outputs.volumes.x}}}}\"]\n      tags: {{case: \"{{{{case.id}}}}\", step: s{i}, label: \"{{{{inputs.label}}}}-{{{{steps.s{src}.status}}}}\"}}"
                );
            }
            // Records an earlier step's output, conditionally.
            2 => {
                let far = i / 2;
                y.push_str("    action: evidence.capture\n");
                let _ = writeln!(
                    y,
                    "    when: \"{{{{eq steps.s{far}.status 'succeeded'}}}}\""
                );
                let _ = writeln!(
                    y,
                    "    with:\n      name: \"s{i}-{{{{run.id}}}}.json\"\n      content: \"{{{{steps.s{}.outputs.snapshot_ids}}}}\"",
                    i - 2
                );
            }
            _ => {
                y.push_str("    action: ec2.isolate_instance\n");
                y.push_str("    with:\n      instance_id: \"{{inputs.instance_id}}\"\n      detach_profile: true\n");
            }
        }
        // The wide graph: the step before, a few back, and one far back.
        let mut needs: Vec<usize> = [1, 3, 7, i / 3 + 1]
            .iter()
            .filter(|&&back| back <= i && back > 0)
            .map(|back| i - back)
            .collect();
        needs.sort_unstable();
        needs.dedup();
        if !needs.is_empty() {
            let list: Vec<String> = needs.iter().map(|j| format!("s{j}")).collect();
            let _ = writeln!(y, "    needs: [{}]", list.join(", "));
        }
    }
    y.push_str("finally:\n  - id: note\n    action: evidence.capture\n    with:\n      name: done.txt\n      content: \"{{steps.s0.status}}\"\n");
    y
}

/// Validate, then resolve the inputs and plan: what `irr plan` does after reading the file.
/// Returns the time of each half.
fn validate_and_plan(text: &str) -> (Duration, Duration) {
    let t = Instant::now();
    let source = Source::new("generated.yaml", text);
    let pb = match validate(&source) {
        Ok(pb) => pb,
        Err(problems) => panic!("the generated playbook is invalid: {problems:#?}"),
    };
    let validated = t.elapsed();
    let t = Instant::now();
    let inputs = resolve_inputs(&pb, &[], None, true).expect("inputs resolve");
    let ctx = PlanContext {
        case_id: Some("IR-1".into()),
        ..PlanContext::default()
    };
    let p = black_box(plan(&pb, inputs, &ctx));
    assert_eq!(p.steps.len(), pb.steps.len());
    (validated, t.elapsed())
}

/// The best total of `runs` runs, with its two halves.
fn best_of(runs: usize, text: &str) -> (Duration, Duration) {
    (0..runs)
        .map(|_| validate_and_plan(black_box(text)))
        .min_by_key(|(v, p)| *v + *p)
        .expect("at least one run")
}

fn main() {
    // `cargo test --benches` runs this too: then a quick smoke run is enough.
    let quick = std::env::args().any(|a| a == "--test");
    let sizes: &[usize] = if quick {
        &[50]
    } else {
        &[250, 500, 1000, 2000]
    };
    let runs = if quick { 1 } else { 7 };
    println!("validate + plan, best of {runs} runs");
    println!(
        "{:>6} {:>7} {:>10} {:>10} {:>10} {:>9}",
        "steps", "lines", "validate", "plan", "total ms", "us/step"
    );
    for &n in sizes {
        let text = playbook(n);
        let (v, p) = best_of(runs, &text);
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "{n:>6} {:>7} {:>10.2} {:>10.2} {:>10.2} {:>9.1}",
            text.lines().count(),
            ms(v),
            ms(p),
            ms(v + p),
            (v + p).as_secs_f64() * 1e6 / n as f64
        );
    }
}
