//! Stage 2: the positioned YAML tree -> a checked [`Playbook`], or every problem in it.
//!
//! The validator never stops at the first problem: it walks the whole file and collects a
//! [`Diagnostic`] for each, with the position of the offending node and, where it can, what
//! would be right. Only when there is no error does a [`Playbook`] come out.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::catalog::{self, ActionSpec};
use crate::diagnostic::{did_you_mean, suggestion, Diagnostic, Source, Span};
use crate::load::{self, Node, NodeKind};
use crate::model::{EvidenceDecl, InputDecl, LockMode, Metadata, OnFailure, Playbook, Step};
use crate::template::{self, Reference};
use crate::types::{parse_duration, ValueType, INPUT_TYPE_NAMES};

mod references;
mod resolve;
mod sections;
mod step;
mod targets;
mod trigger;

pub use resolve::{
    parse_input_value, parse_value, resolve_inputs, resolve_inputs_from, resolve_inputs_given,
    Given, ResolvedInputs,
};
pub use targets::targets_file;
pub use trigger::{split_filter, ARN_RESOURCE};

/// The `apiVersion` this build reads.
pub const API_VERSION: &str = "irr/v1";

const TOP_KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "inputs",
    "evidence",
    "targets",
    "steps",
    "finally",
    "trigger",
];
const METADATA_KEYS: &[&str] = &["name", "version", "description", "owner", "labels"];
const INPUT_KEYS: &[&str] = &["type", "description", "default", "items", "secret"];
const EVIDENCE_KEYS: &[&str] = &["location", "retention_days", "lock_mode", "signing_key"];
const STEP_KEYS: &[&str] = &[
    "id",
    "action",
    "description",
    "with",
    "needs",
    "when",
    "timeout",
    "retries",
    "on_failure",
    "for_each",
];
/// The most re-tries a step may ask for.
pub const MAX_RETRIES: i64 = 10;

/// The longest `evidence.capture` name, in bytes (a file name on every file system).
pub const MAX_CAPTURE_NAME: usize = 128;

/// Names the evidence format reserves: at the bundle's top (written by the seal) or beside
/// an attempt's folder (`attempt-N`).
const RESERVED_NAMES: &[&str] = &[
    "manifest.json",
    "SHA256SUMS",
    "journal.jsonl",
    "manifest.sig.json",
    "public-key.pem",
];

/// Checks an `evidence.capture` name: one file name under `artifacts/STEP_ID/` (letters,
/// digits, `.`, `_`, `-`; not empty, not hidden, at most [`MAX_CAPTURE_NAME`] bytes), never a
/// path, a control character or a name the evidence format reserves. The validator checks
/// literal names; the executor checks the rendered name before anything is written.
/// `Err((message, help))`.
pub fn check_capture_name(name: &str) -> Result<(), (String, String)> {
    let shown: String = name
        .chars()
        .take(60)
        .collect::<String>()
        .escape_debug()
        .to_string();
    let shown = if name.chars().count() > 60 {
        format!("\"{shown}...\"")
    } else {
        format!("\"{shown}\"")
    };
    let rule = "a name is one file name of letters, digits, \".\", \"_\" and \"-\", e.g. \"instance.json\"";
    let err = |msg: String, help: &str| Err((msg, help.to_owned()));
    if name.is_empty() {
        return err("evidence name is empty".into(), rule);
    }
    if name.chars().any(char::is_control) {
        return err(
            format!("evidence name {shown} holds a control character"),
            rule,
        );
    }
    if name.starts_with('/') || name.contains('/') || name.contains('\\') {
        let what = if name.split(['/', '\\']).any(|c| c == "..") {
            "climbs out of the step's folder (\"..\")"
        } else if name.starts_with('/') {
            "is an absolute path"
        } else {
            "is a path, not a file name"
        };
        return err(
            format!("evidence name {shown} {what}"),
            "artifacts go under artifacts/STEP_ID/ in the evidence; give a file name without \"/\"",
        );
    }
    if name == "." || name == ".." || name.contains("..") {
        return err(format!("evidence name {shown} holds \"..\""), rule);
    }
    if name.len() > MAX_CAPTURE_NAME {
        return err(
            format!(
                "evidence name {shown} is {} bytes long; at most {MAX_CAPTURE_NAME}",
                name.len()
            ),
            "shorten the name",
        );
    }
    if name.starts_with('.') {
        return err(
            format!("evidence name {shown} starts with \".\" (a hidden file)"),
            rule,
        );
    }
    if RESERVED_NAMES.contains(&name)
        || name
            .strip_prefix("attempt-")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    {
        return err(
            format!("evidence name {shown} is reserved by the evidence format"),
            "manifest.json, SHA256SUMS, journal.jsonl, manifest.sig.json, public-key.pem and attempt-N are the seal's and retries' own names; pick another",
        );
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return err(
            format!("evidence name {shown} holds {:?}, which is not allowed", c),
            rule,
        );
    }
    Ok(())
}

/// Reads and validates a playbook file.
pub fn validate_file(path: &std::path::Path) -> Result<Playbook, Vec<Diagnostic>> {
    let source = load::read_file(path).map_err(|d| vec![d])?;
    validate(&source)
}

/// Validates a playbook's text. `Err` holds every problem found (errors first, in file
/// order); warnings alone do not fail validation and are dropped here (see [`check`]).
pub fn validate(source: &Source) -> Result<Playbook, Vec<Diagnostic>> {
    let (playbook, problems) = check(source);
    match playbook {
        Some(p) if !problems.iter().any(Diagnostic::is_error) => Ok(p),
        _ => Err(problems),
    }
}

/// Validates and returns the playbook (when there is no error) and every diagnostic,
/// warnings included, sorted by position.
pub fn check(source: &Source) -> (Option<Playbook>, Vec<Diagnostic>) {
    let root = match load::parse(source) {
        Ok(root) => root,
        Err(d) => return (None, d),
    };
    let mut v = Validator::new(source);
    let playbook = v.playbook(&root);
    let mut problems = v.problems;
    problems.sort_by_key(|d| (d.span.line, d.span.column));
    problems.dedup();
    let has_error = problems.iter().any(Diagnostic::is_error);
    if problems.len() > MAX_DIAGNOSTICS {
        let more = problems.len() - MAX_DIAGNOSTICS;
        let last_line = problems[MAX_DIAGNOSTICS - 1].span.line;
        problems.truncate(MAX_DIAGNOSTICS);
        let mut d = Diagnostic::error(
            source.span_at(0, 0),
            format!("{more} more problems after line {last_line} are not listed"),
        );
        d.help = Some(format!(
            "irr lists the first {MAX_DIAGNOSTICS}; fix these and validate again"
        ));
        problems.push(d);
    }
    (playbook.filter(|_| !has_error), problems)
}

/// At most this many diagnostics are listed for one file (a file of thousands of mistakes
/// is answered in bounded time and output).
const MAX_DIAGNOSTICS: usize = 200;

/// At most this many unknown keys of one mapping are reported (and searched for "did you
/// mean"); the rest are counted in one more diagnostic.
const MAX_UNKNOWN_KEYS: usize = 20;

struct Validator<'a> {
    source: &'a Source,
    problems: Vec<Diagnostic>,
    /// The playbook declares its inputs under a misspelled key (reported once).
    inputs_misplaced: bool,
    /// Corrected names of inputs whose declared name is invalid (reported once).
    renamed_inputs: Vec<String>,
}

/// What a template may refer to from a given place.
#[derive(Clone)]
struct Scope<'a> {
    inputs: &'a [InputDecl],
    steps: &'a HashMap<String, StepInfo>,
    /// The referring step (None for input defaults and evidence).
    current: Option<&'a str>,
    current_is_finally: bool,
    /// `item` / `item_index` are allowed (inside a `for_each` step's `with`).
    item: bool,
    /// `steps.*` may be referenced at all.
    steps_allowed: bool,
    /// `inputs.*` may be referenced.
    inputs_allowed: bool,
}

/// A step after the first pass: its node, whether it is a finally step, its id, its action,
/// and whether its id repeats an earlier one.
type FirstPass<'n> = (
    &'n Node,
    bool,
    Option<String>,
    Option<&'static ActionSpec>,
    bool,
);

#[derive(Clone)]
struct StepInfo {
    action: Option<&'static ActionSpec>,
    is_finally: bool,
    for_each: bool,
    span: Span,
}

impl<'a> Validator<'a> {
    fn new(source: &'a Source) -> Validator<'a> {
        Validator {
            source,
            problems: Vec::new(),
            inputs_misplaced: false,
            renamed_inputs: Vec::new(),
        }
    }

    fn error(&mut self, span: &Span, msg: impl Into<String>) -> &mut Diagnostic {
        self.problems.push(Diagnostic::error(span.clone(), msg));
        self.problems.last_mut().expect("just pushed")
    }

    fn help(&mut self, span: &Span, msg: impl Into<String>, help: impl Into<String>) {
        let help = help.into();
        self.error(span, msg).help = (!help.is_empty()).then_some(help);
    }

    /// The text of a span as written in the file.
    fn source_text(&self, span: &Span) -> String {
        self.source
            .text()
            .get(span.start..span.start + span.len)
            .unwrap_or("")
            .trim_matches(['"', '\''])
            .to_owned()
    }

    fn root_span(&self) -> Span {
        self.source.span_at(0, 0)
    }

    /// Checks that `node` is a mapping with only `allowed` keys; reports the others.
    fn mapping<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
        allowed: &[&'static str],
    ) -> Option<&'n [(Node, Node)]> {
        self.mapping_hinted(node, what, allowed, &|_| None)
    }

    /// [`Self::mapping`], with `hint` giving the help for an unknown key when it knows better.
    fn mapping_hinted<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
        allowed: &[&'static str],
        hint: &dyn Fn(&str) -> Option<String>,
    ) -> Option<&'n [(Node, Node)]> {
        let Some(entries) = node.as_map() else {
            let help = if matches!(node.kind, NodeKind::Null) {
                format!("write the keys of {what} on the lines below it, indented")
            } else {
                format!(
                    "{what} holds \"key: value\" lines, one of: {}",
                    allowed.join(", ")
                )
            };
            self.help(
                &node.span,
                format!("{what} must be a mapping, found {}", node.type_name()),
                help,
            );
            return None;
        };
        let mut unknown = entries.iter().filter_map(|(k, _)| {
            let key = k.scalar_text().unwrap_or_default();
            (!allowed.contains(&key.as_str())).then_some((k, key))
        });
        for (k, key) in unknown.by_ref().take(MAX_UNKNOWN_KEYS) {
            let help = match (hint(&key), intended_key(&key, allowed)) {
                (Some(h), _) => h,
                (None, Some(best)) => format!("did you mean \"{best}\"?"),
                (None, None) => suggestion(&key, allowed),
            };
            self.help(&k.span, format!("unknown key \"{key}\" in {what}"), help);
        }
        if let Some((k, _)) = unknown.next() {
            let more = 1 + unknown.count();
            self.help(
                &k.span,
                format!("{more} more unknown keys in {what}, from here on"),
                format!("{what} has only these keys: {}", allowed.join(", ")),
            );
        }
        Some(entries)
    }

    /// Reports that `node` lacks `key`, unless a misspelling of it is reported already.
    fn missing(
        &mut self,
        node: &Node,
        key: &str,
        allowed: &[&'static str],
        span: &Span,
        msg: impl Into<String>,
        help: impl Into<String>,
    ) {
        if !misspelled(node, key, allowed) {
            self.help(span, msg, help);
        }
    }

    fn string<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n str> {
        match &node.kind {
            NodeKind::Str(s) => Some(s),
            _ => {
                self.error(
                    &node.span,
                    format!("{what} must be a string, found {}", node.type_name()),
                );
                None
            }
        }
    }

    fn playbook(&mut self, root: &Node) -> Option<Playbook> {
        if matches!(root.kind, NodeKind::Null) {
            self.help(
                &self.root_span(),
                "the file is empty",
                "a playbook starts with \"apiVersion: irr/v1\" and \"kind: Playbook\"",
            );
            return None;
        }
        self.mapping_hinted(root, "the playbook", TOP_KEYS, &|key| {
            METADATA_KEYS
                .contains(&key)
                .then(|| format!("\"{key}\" belongs under \"metadata:\", indented"))
        })?;

        self.api_version_and_kind(root);
        let metadata = self.metadata(root);
        let inputs = root
            .get("inputs")
            .map(|n| self.inputs(n))
            .unwrap_or_default();
        // Inputs declared under a misspelled key: references to them would only repeat that.
        self.inputs_misplaced =
            root.get("inputs").is_none() && misspelled(root, "inputs", TOP_KEYS);
        let evidence_node = root.get("evidence");

        let steps_node = root.get("steps");
        let finally_node = root.get("finally");
        let step_nodes = match steps_node {
            None => {
                self.missing(
                    root,
                    "steps",
                    TOP_KEYS,
                    &root.span,
                    "missing \"steps\"",
                    "a playbook needs at least one step under \"steps:\"",
                );
                Vec::new()
            }
            Some(n) => self.step_list(n, "steps", true),
        };
        let finally_nodes = finally_node
            .map(|n| self.step_list(n, "finally", false))
            .unwrap_or_default();

        // First pass: ids and actions, so references can be checked in any order.
        let (infos, first_pass) = self.first_pass(&step_nodes, &finally_nodes);

        let evidence = self.evidence(evidence_node, &inputs, &infos);
        let targets = root.get("targets").and_then(|n| self.targets(n));
        let trigger = root.get("trigger").and_then(|n| self.trigger(n, &inputs));

        let mut steps = Vec::new();
        let mut finally = Vec::new();
        for (node, is_finally, id, action, duplicate) in first_pass {
            let step = self.step(node, is_finally, id, action, duplicate, &inputs, &infos);
            if let Some(step) = step {
                if is_finally {
                    finally.push(step);
                } else {
                    steps.push(step);
                }
            }
        }
        self.cycles(&steps, &infos);
        self.cycles(&finally, &infos);

        let metadata = metadata?;
        Some(Playbook {
            source: self.source.clone(),
            sha256: hex::encode(Sha256::digest(self.source.text().as_bytes())),
            metadata,
            inputs,
            evidence,
            targets,
            steps,
            finally,
            trigger,
        })
    }

    /// `apiVersion: irr/v1` and `kind: Playbook`.
    fn api_version_and_kind(&mut self, root: &Node) {
        match root.get("apiVersion") {
            None => self.missing(
                root,
                "apiVersion",
                TOP_KEYS,
                &root.span,
                "missing \"apiVersion\"",
                "add \"apiVersion: irr/v1\" at the top",
            ),
            Some(n) => match n.as_str() {
                Some(API_VERSION) => {}
                _ => {
                    let found = n.scalar_text().unwrap_or_else(|| n.type_name().to_owned());
                    self.help(
                        &n.span,
                        format!("unsupported apiVersion \"{found}\""),
                        format!("this irr reads \"{API_VERSION}\""),
                    );
                }
            },
        }
        match root.get("kind") {
            None => self.missing(
                root,
                "kind",
                TOP_KEYS,
                &root.span,
                "missing \"kind\"",
                "add \"kind: Playbook\"",
            ),
            Some(n) if n.as_str() == Some("Playbook") => {}
            Some(n) => {
                let found = n.scalar_text().unwrap_or_else(|| n.type_name().to_owned());
                self.help(
                    &n.span,
                    format!("unsupported kind \"{found}\""),
                    "the kind of a playbook is \"Playbook\"",
                );
            }
        }
    }

    /// The first pass over the steps and finally steps: each one's id and action (the ids
    /// known, so references can be checked in any order), duplicates reported.
    fn first_pass<'n>(
        &mut self,
        step_nodes: &[&'n Node],
        finally_nodes: &[&'n Node],
    ) -> (HashMap<String, StepInfo>, Vec<FirstPass<'n>>) {
        let mut infos: HashMap<String, StepInfo> = HashMap::new();
        let mut first_pass = Vec::new();
        for (node, is_finally) in step_nodes
            .iter()
            .map(|n| (*n, false))
            .chain(finally_nodes.iter().map(|n| (*n, true)))
        {
            let id = self.step_id(node);
            let action = self.step_action(node);
            let mut duplicate = false;
            if let Some((id, id_span)) = &id {
                if let Some(prev) = infos.get(id) {
                    duplicate = true;
                    let line = prev.span.line;
                    self.help(id_span, format!("duplicate step id \"{id}\""), format!("\"{id}\" is already the id of the step on line {line}; ids must be unique across steps and finally"));
                } else {
                    infos.insert(
                        id.clone(),
                        StepInfo {
                            action,
                            is_finally,
                            for_each: node.get("for_each").is_some(),
                            span: id_span.clone(),
                        },
                    );
                }
            }
            first_pass.push((node, is_finally, id.map(|(i, _)| i), action, duplicate));
        }
        (infos, first_pass)
    }
}

/// Keys that people coming from other tools write for ours.
const KEY_ALIASES: &[(&str, &str)] = &[
    ("params", "with"),
    ("parameters", "with"),
    ("args", "with"),
    ("arguments", "with"),
    ("input", "with"),
    ("depends_on", "needs"),
    ("dependsOn", "needs"),
    ("depends", "needs"),
    ("after", "needs"),
    ("requires", "needs"),
    ("uses", "action"),
    ("run", "action"),
    ("type", "action"),
    ("name", "id"),
    ("if", "when"),
    ("condition", "when"),
    ("loop", "for_each"),
    ("foreach", "for_each"),
    ("forEach", "for_each"),
    ("with_items", "for_each"),
    ("items", "for_each"),
    ("retry", "retries"),
    ("continue_on_error", "on_failure"),
    ("ignore_errors", "on_failure"),
    ("onFailure", "on_failure"),
    ("timeout_seconds", "timeout"),
    ("vars", "inputs"),
    ("parameters", "inputs"),
    ("params", "inputs"),
    ("args", "inputs"),
    ("arguments", "inputs"),
    ("variables", "inputs"),
    ("api_version", "apiVersion"),
    ("apiversion", "apiVersion"),
    ("meta", "metadata"),
    ("tasks", "steps"),
    ("always", "finally"),
    ("cleanup", "finally"),
    ("default_value", "default"),
    ("item_type", "items"),
];

/// The allowed key `key` was probably meant to be: a known alias, or a near miss.
fn intended_key(key: &str, allowed: &[&'static str]) -> Option<&'static str> {
    KEY_ALIASES
        .iter()
        .filter(|(alias, _)| *alias == key)
        .find_map(|(_, k)| allowed.iter().copied().find(|a| a == k))
        .or_else(|| did_you_mean(key, allowed.iter().copied()))
        .filter(|k| *k != key)
}

/// Whether `node` has an unknown key that was probably meant to be `key` (so a "missing
/// `key`" error would only repeat the "unknown key" one).
fn misspelled(node: &Node, key: &str, allowed: &[&'static str]) -> bool {
    node.as_map()
        .unwrap_or(&[])
        .iter()
        .filter_map(|(k, _)| k.as_str().filter(|k| !allowed.contains(k)))
        .take(MAX_UNKNOWN_KEYS)
        .any(|k| intended_key(k, allowed) == Some(key))
}

/// The span of the key `key` of the mapping `node`.
fn key_span(node: &Node, key: &str) -> Option<Span> {
    node.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(k, _)| k.span.clone())
}

/// A comparison operator written in the text around a template's expressions.
fn comparison_outside_expression(s: &str) -> Option<&'static str> {
    let mut text = String::new();
    let mut rest = s;
    while let Some(open) = rest.find("{{") {
        text.push_str(&rest[..open]);
        text.push(' ');
        rest = rest[open..]
            .find("}}")
            .map_or("", |c| &rest[open + c + 2..]);
    }
    text.push_str(rest);
    ["==", "!=", ">=", "<=", "&&", "||", " > ", " < "]
        .into_iter()
        .find(|op| text.contains(op))
        .map(str::trim)
}

/// `{inputs.x}` or `${inputs.x}` (another tool's syntax) for `{{inputs.x}}`: the fixed text.
fn brace_typo(s: &str) -> Option<String> {
    if s.contains("{{") {
        return None;
    }
    let open = s.find('{')?;
    let close = open + s[open..].find('}')?;
    let inner = s[open + 1..close].trim();
    let root = inner.split('.').next().unwrap_or("");
    if ![
        "inputs",
        "steps",
        "case",
        "run",
        "playbook",
        "aws",
        "item",
        "item_index",
    ]
    .contains(&root)
    {
        return None;
    }
    let start = if s[..open].ends_with('$') {
        open - 1
    } else {
        open
    };
    Some(format!("{}{{{{{inner}}}}}{}", &s[..start], &s[close + 1..]))
}

fn hint_for(ty: &ValueType) -> String {
    match ty {
        ValueType::List(_) => {
            "give a list, e.g. [a, b], or one expression naming a list input".to_owned()
        }
        ValueType::Duration => "e.g. 30m, 4h or 1h30m".to_owned(),
        ValueType::Boolean => "write true or false (without quotes)".to_owned(),
        ValueType::Integer => "write a whole number (without quotes)".to_owned(),
        _ => String::new(),
    }
}

/// `[a-z0-9][a-z0-9-]*` (metadata names) or with `_` too (step ids).
fn is_name(s: &str, underscore: bool) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (underscore && c == '_')
        })
}

fn is_step_id(s: &str) -> bool {
    is_name(s, true)
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A lowercase-hyphen version of `s`, for suggestions.
fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-').to_owned();
    if out.is_empty() {
        "my-name".to_owned()
    } else {
        out
    }
}

/// `MAJOR.MINOR.PATCH` with an optional `-pre` and `+build` (Semantic Versioning 2.0.0, by
/// the `semver` crate).
pub fn is_semver(s: &str) -> bool {
    semver::Version::parse(s).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<Diagnostic> {
        match validate(&Source::new("t.yaml", text)) {
            Ok(_) => Vec::new(),
            Err(d) => d,
        }
    }

    const HEAD: &str = "apiVersion: irr/v1\nkind: Playbook\nmetadata: {name: t, version: 1.0.0}\n";

    #[test]
    fn a_minimal_playbook_validates() {
        let text = format!("{HEAD}inputs:\n  instance_id: {{type: instance_id}}\nsteps:\n  - id: snap\n    action: ec2.snapshot_volumes\n    with: {{instance_id: \"{{{{inputs.instance_id}}}}\"}}\n  - id: tag\n    action: ec2.tag_resources\n    with:\n      resource_ids: \"{{{{steps.snap.outputs.snapshot_ids}}}}\"\n      tags: {{a: b}}\n");
        let pb = validate(&Source::new("t.yaml", text)).unwrap();
        assert_eq!(pb.steps[1].needs, ["snap"]);
    }

    #[test]
    fn all_problems_in_one_pass() {
        let text = format!("{HEAD}steps:\n  - id: a\n    action: ec2.snapshot_volume\n  - id: a\n    action: ec2.protect_instance\n    with: {{instance: i-12345678}}\n    colour: red\n");
        let d = problems(&text);
        let msgs: Vec<&str> = d.iter().map(|d| d.message.as_str()).collect();
        assert!(
            msgs.iter()
                .any(|m| m.contains("unknown action \"ec2.snapshot_volume\"")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter().any(|m| m.contains("duplicate step id \"a\"")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.contains("unknown parameter \"instance\"")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter().any(|m| m.contains("unknown key \"colour\"")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.contains("missing required parameter \"instance_id\"")),
            "{msgs:?}"
        );
    }

    #[test]
    fn cycles_name_their_steps() {
        let text = format!("{HEAD}steps:\n  - id: a\n    action: control.approve\n    with: {{prompt: x}}\n    needs: [b]\n  - id: b\n    action: control.approve\n    with: {{prompt: x}}\n    needs: [a]\n");
        let d = problems(&text);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(
            d[0].message.contains("dependency cycle: a needs b needs a"),
            "{}",
            d[0].message
        );
    }

    #[test]
    fn semver() {
        assert!(is_semver("1.0.0"));
        assert!(is_semver("1.2.3-rc.1+b5"));
        assert!(!is_semver("1.0"));
        assert!(!is_semver("01.0.0"));
    }
}
