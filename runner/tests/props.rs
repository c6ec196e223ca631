//! Property tests: the loader and validator take anything and answer with diagnostics.
//!
//! Random text, YAML-ish token soup and mutations of the shipped playbooks (a line deleted,
//! duplicated, re-indented, characters swapped, the file truncated) go through
//! [`irr_runner::validate::check`]. Whatever comes in: no panic; no playbook means at least
//! one error; every diagnostic points inside the file.

use irr_runner::diagnostic::{Diagnostic, Source};
use irr_runner::validate::check;
use proptest::prelude::*;

const SHIPPED: &[&str] = &[
    include_str!("../../playbooks/ec2-instance-compromise.yaml"),
    include_str!("../../playbooks/iam-credential-compromise.yaml"),
    include_str!("../../playbooks/s3-bucket-exposure.yaml"),
    include_str!("fixtures/valid/fleet-isolation.yaml"),
    include_str!("fixtures/valid/conditional-snapshot.yaml"),
    include_str!("fixtures/valid/compact-flow-style.yaml"),
];

fn fuzz_cases() -> u32 {
    std::env::var("IRR_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200)
}

/// Runs the validator and checks the invariants; returns a description of the first breach.
fn invariants(text: &str) -> Result<(), TestCaseError> {
    let source = Source::new("fuzz.yaml", text);
    let (playbook, problems) = check(&source);
    if playbook.is_none() {
        prop_assert!(
            problems.iter().any(Diagnostic::is_error),
            "no playbook and no error for {text:?}"
        );
    } else {
        prop_assert!(
            !problems.iter().any(Diagnostic::is_error),
            "a playbook despite errors"
        );
    }
    let lines = text.split('\n').count();
    for d in &problems {
        prop_assert_eq!(&d.span.file, "fuzz.yaml");
        prop_assert!(
            d.span.line >= 1 && d.span.line <= lines + 1,
            "line {} outside 1..={} for {:?} in {text:?}",
            d.span.line,
            lines + 1,
            d.message
        );
        prop_assert!(d.span.column >= 1, "column 0 for {:?}", d.message);
        let line_chars = source.line_text(d.span.line).chars().count();
        prop_assert!(
            d.span.column <= line_chars + 2,
            "column {} past the end of line {} ({} chars) for {:?} in {text:?}",
            d.span.column,
            d.span.line,
            line_chars,
            d.message
        );
        prop_assert!(!d.message.is_empty());
        // Rendering must not panic either (it slices the source by the span).
        let rendered = d.render(Some(&source));
        prop_assert!(rendered.contains("fuzz.yaml"));
    }
    Ok(())
}

#[derive(Clone, Debug)]
enum Mutation {
    DeleteLine(usize),
    DuplicateLine(usize),
    Indent(usize, usize),
    Dedent(usize, usize),
    SwapChars(usize),
    Truncate(usize),
    Insert(usize, &'static str),
    DeleteChar(usize),
}

const SNIPPETS: &[&str] = &[
    ":",
    "-",
    " ",
    "\t",
    "\"",
    "'",
    "{{",
    "}}",
    "[",
    "]",
    "{",
    "}",
    "#",
    "&a ",
    "*a",
    "---\n",
    "\n",
    ": x",
    "- ",
    "{{steps.",
    "{{inputs.",
    "{{item}}",
    "needs: [",
    "id: ",
    "~",
    "é",
    "\u{0}",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::DeleteLine),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        (any::<usize>(), 1..5usize).prop_map(|(l, n)| Mutation::Indent(l, n)),
        (any::<usize>(), 1..5usize).prop_map(|(l, n)| Mutation::Dedent(l, n)),
        any::<usize>().prop_map(Mutation::SwapChars),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), prop::sample::select(SNIPPETS)).prop_map(|(p, s)| Mutation::Insert(p, s)),
        any::<usize>().prop_map(Mutation::DeleteChar),
    ]
}

/// The byte offset of a char boundary near `n` (mod the length).
fn boundary(text: &str, n: usize) -> usize {
    if text.is_empty() {
        return 0;
    }
    let mut i = n % (text.len() + 1);
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn apply(text: &str, m: &Mutation) -> String {
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    let pick = |n: usize| n % lines.len();
    match *m {
        Mutation::DeleteLine(n) => {
            let i = pick(n);
            lines.remove(i);
        }
        Mutation::DuplicateLine(n) => {
            let i = pick(n);
            let l = lines[i].clone();
            lines.insert(i, l);
        }
        Mutation::Indent(n, by) => {
            let i = pick(n);
            lines[i] = format!("{}{}", " ".repeat(by), lines[i]);
        }
        Mutation::Dedent(n, by) => {
            let i = pick(n);
            let spaces = lines[i].len() - lines[i].trim_start_matches(' ').len();
            lines[i] = lines[i][spaces.min(by)..].to_owned();
        }
        Mutation::SwapChars(n) => {
            let mut chars: Vec<char> = text.chars().collect();
            if chars.len() >= 2 {
                let i = n % (chars.len() - 1);
                chars.swap(i, i + 1);
            }
            return chars.into_iter().collect();
        }
        Mutation::Truncate(n) => return text[..boundary(text, n)].to_owned(),
        Mutation::Insert(n, s) => {
            let i = boundary(text, n);
            return format!("{}{s}{}", &text[..i], &text[i..]);
        }
        Mutation::DeleteChar(n) => {
            let i = boundary(text, n);
            let mut out = text.to_owned();
            if i < out.len() {
                out.remove(i);
            }
            return out;
        }
    }
    lines.join("\n")
}

/// Text made of YAML and playbook fragments, more likely than random text to get past the
/// YAML parser and into the validator.
fn token_soup() -> impl Strategy<Value = String> {
    const TOKENS: &[&str] = &[
        "apiVersion: irr/v1\n",
        "kind: Playbook\n",
        "metadata:\n",
        "  name: x\n",
        "  version: 1.0.0\n",
        "inputs:\n",
        "  a: {type: list, items: arn}\n",
        "  b: {type: instance_id, default: i-12345678}\n",
        "steps:\n",
        "finally:\n",
        "  - id: s\n",
        "  - id: t\n",
        "    action: ec2.snapshot_volumes\n",
        "    action: control.approve\n",
        "    with: {prompt: \"{{steps.s.outputs.approved_by}}\"}\n",
        "    with:\n",
        "      instance_id: \"{{inputs.b}}\"\n",
        "      instance_id: {{item}}\n",
        "    needs: [t]\n",
        "    needs: [s]\n",
        "    for_each: \"{{inputs.a}}\"\n",
        "    when: \"{{inputs.b}} == 1\"\n",
        "    timeout: 5m\n",
        "    retries: -1\n",
        "    on_failure: ignore\n",
        "evidence: {location: \"s3://{{inputs.b}}\"}\n",
        "  ",
        "\t",
        "- ",
        ": ",
        "{",
        "}",
        "[",
        "]",
        "\"",
        "'",
        "\n",
        "---\n",
        "&x ",
        "*x",
        "? ",
        "# c\n",
        "{{",
        "}}",
    ];
    prop::collection::vec(prop::sample::select(TOKENS), 0..40).prop_map(|t| t.concat())
}

proptest! {
    // Modest by default so the suite stays fast in debug; IRR_FUZZ_CASES=N for a longer run.
    #![proptest_config(ProptestConfig { cases: fuzz_cases(), ..ProptestConfig::default() })]

    #[test]
    fn random_text(text in any::<String>()) {
        invariants(&text)?;
    }

    #[test]
    fn random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        invariants(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn yaml_token_soup(text in token_soup()) {
        invariants(&text)?;
    }

    #[test]
    fn mutated_playbooks(
        which in 0..SHIPPED.len(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let mut text = SHIPPED[which].to_owned();
        for m in &mutations {
            text = apply(&text, m);
        }
        invariants(&text)?;
    }
}

#[test]
fn unmutated_playbooks_validate() {
    for text in SHIPPED {
        let (playbook, problems) = check(&Source::new("p.yaml", *text));
        assert!(playbook.is_some(), "{problems:?}");
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let flow = format!("a: {}", "[".repeat(100_000));
    let block: String = (0..5_000)
        .map(|i| format!("{}k:\n", " ".repeat(i)))
        .collect();
    let seq: String = (0..5_000)
        .map(|i| format!("{}-\n", " ".repeat(i)))
        .collect();
    for text in [flow, block, seq] {
        let (playbook, problems) = check(&Source::new("deep.yaml", text.as_str()));
        assert!(playbook.is_none());
        assert!(problems.iter().any(Diagnostic::is_error));
    }
}
