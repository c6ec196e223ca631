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

/// The `apiVersion` this build reads.
pub const API_VERSION: &str = "irr/v1";

const TOP_KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "inputs",
    "evidence",
    "steps",
    "finally",
];
const METADATA_KEYS: &[&str] = &["name", "version", "description", "owner", "labels"];
const INPUT_KEYS: &[&str] = &["type", "description", "default", "items", "secret"];
const EVIDENCE_KEYS: &[&str] = &["location", "retention_days", "lock_mode"];
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
    let mut v = Validator {
        source,
        problems: Vec::new(),
        inputs_misplaced: false,
        renamed_inputs: Vec::new(),
    };
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

#[derive(Clone)]
struct StepInfo {
    action: Option<&'static ActionSpec>,
    is_finally: bool,
    for_each: bool,
    span: Span,
}

impl Validator<'_> {
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

        let evidence = self.evidence(evidence_node, &inputs, &infos);

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
            steps,
            finally,
        })
    }

    fn metadata(&mut self, root: &Node) -> Option<Metadata> {
        let Some(node) = root.get("metadata") else {
            self.missing(root, "metadata", TOP_KEYS, &root.span, "missing \"metadata\"", "add metadata with a name and a version, e.g. \"metadata: {name: my-playbook, version: 1.0.0}\"");
            return None;
        };
        if matches!(node.kind, NodeKind::Null)
            && root
                .as_map()
                .unwrap_or(&[])
                .iter()
                .any(|(k, _)| k.as_str().is_some_and(|k| METADATA_KEYS.contains(&k)))
        {
            // `name:` and `version:` written unindented below it: reported there.
            return None;
        }
        self.mapping(node, "metadata", METADATA_KEYS)?;
        let at = key_span(root, "metadata").unwrap_or_else(|| node.span.clone());
        let name = match node.get("name") {
            None => {
                self.missing(node, "name", METADATA_KEYS, &at, "missing \"metadata.name\"", "add a name such as \"ec2-instance-compromise\"");
                None
            }
            Some(n) => self.string(n, "metadata.name").and_then(|s| {
                if is_name(s, false) {
                    Some(s.to_owned())
                } else {
                    let fixed = slug(s);
                    self.help(&n.span, format!("metadata.name \"{s}\" must be lowercase letters, digits and hyphens, starting with a letter or digit"), format!("e.g. \"{fixed}\""));
                    None
                }
            }),
        };
        let version = match node.get("version") {
            None => {
                self.missing(
                    node,
                    "version",
                    METADATA_KEYS,
                    &at,
                    "missing \"metadata.version\"",
                    "add a semantic version such as \"1.0.0\"",
                );
                None
            }
            Some(n) => {
                let text = n.scalar_text();
                match (&n.kind, text) {
                    (NodeKind::Str(s), _) if is_semver(s) => Some(s.clone()),
                    (_, Some(_)) => {
                        let t = self.source_text(&n.span);
                        self.help(
                            &n.span,
                            format!("metadata.version \"{t}\" is not a semantic version"),
                            "write MAJOR.MINOR.PATCH, e.g. \"1.0.0\"",
                        );
                        None
                    }
                    (_, None) => {
                        self.help(
                            &n.span,
                            "metadata.version must be a string",
                            "write MAJOR.MINOR.PATCH, e.g. \"1.0.0\"",
                        );
                        None
                    }
                }
            }
        };
        let description = node
            .get("description")
            .and_then(|n| self.string(n, "metadata.description"))
            .map(str::to_owned);
        let owner = node
            .get("owner")
            .and_then(|n| self.string(n, "metadata.owner"))
            .map(str::to_owned);
        let labels = match node.get("labels") {
            None => Vec::new(),
            Some(n) => match n.as_seq() {
                Some(items) => items
                    .iter()
                    .filter_map(|i| self.string(i, "a label").map(str::to_owned))
                    .collect(),
                None => {
                    self.help(
                        &n.span,
                        format!("metadata.labels must be a list, found {}", n.type_name()),
                        "e.g. \"labels: [ec2, containment]\"",
                    );
                    Vec::new()
                }
            },
        };
        Some(Metadata {
            name: name?,
            version: version?,
            description,
            owner,
            labels,
        })
    }

    fn inputs(&mut self, node: &Node) -> Vec<InputDecl> {
        let mut out = Vec::new();
        if matches!(node.kind, NodeKind::Null) {
            self.help(
                &node.span,
                "\"inputs\" is empty",
                "declare inputs under it, e.g. \"  instance_id: {type: instance_id}\", or remove it",
            );
            return out;
        }
        let Some(entries) = node.as_map() else {
            self.help(
                &node.span,
                format!(
                    "inputs must be a mapping of input names to declarations, found {}",
                    node.type_name()
                ),
                "e.g. \"inputs: {instance_id: {type: instance_id}}\"",
            );
            return out;
        };
        for (k, decl) in entries {
            let name = k.scalar_text().unwrap_or_default();
            if !is_ident(&name) {
                let fixed = slug(&name).replace('-', "_");
                self.help(&k.span, format!("input name \"{name}\" must be lowercase letters, digits and underscores, starting with a letter"), format!("e.g. \"{fixed}\""));
                self.renamed_inputs.push(fixed);
            }
            if decl.as_map().is_none() {
                // `instance_id: i-0abc...` (a value) or `instance_id: instance_id` (a type).
                let what = decl.scalar_text().unwrap_or_default();
                let ty = if ValueType::scalar_from_name(&what).is_some() || what == "list" {
                    what.clone()
                } else {
                    // A value: the most specific type it fits.
                    let json = decl.to_json();
                    [
                        "instance_id",
                        "volume_id",
                        "arn",
                        "account_id",
                        "region",
                        "cidr",
                        "access_key_id",
                        "duration",
                        "integer",
                        "boolean",
                    ]
                    .into_iter()
                    .find(|t| {
                        ValueType::scalar_from_name(t).is_some_and(|ty| ty.check(&json).is_ok())
                    })
                    .unwrap_or("string")
                    .to_owned()
                };
                self.help(
                    &decl.span,
                    format!("input \"{name}\" must be a declaration (a mapping), found {}", decl.type_name()),
                    format!("declare it as \"{name}: {{type: {ty}}}\"; its value is given at run time with --input {name}=VALUE, or as its default"),
                );
                out.push(InputDecl {
                    name,
                    ty: ValueType::Any,
                    description: None,
                    default: None,
                    secret: false,
                    span: k.span.clone(),
                });
                continue;
            }
            self.mapping(decl, &format!("input \"{name}\""), INPUT_KEYS);
            let ty = match decl.get("type") {
                None => {
                    self.help(
                        &decl.span,
                        format!("input \"{name}\" has no type"),
                        format!("add \"type:\" with one of: {}", INPUT_TYPE_NAMES.join(", ")),
                    );
                    None
                }
                Some(t) => self.input_type(t, decl, &name),
            };
            let description = decl
                .get("description")
                .and_then(|n| self.string(n, "an input's description"))
                .map(str::to_owned);
            let default = decl.get("default").map(Node::to_json);
            let secret = self.input_secret(decl, &name);
            if let (true, Some(dnode)) = (secret, decl.get("default")) {
                self.help(
                    &dnode.span,
                    format!("secret input \"{name}\" may not have a default: it would be written in the playbook"),
                    format!("remove the default and give the value at run time with --input {name}=VALUE or the environment variable {}", crate::secrets::env_var(&name)),
                );
            }
            if let (Some(ty), Some(default), Some(dnode)) = (&ty, &default, decl.get("default")) {
                if template::strings_in(default)
                    .iter()
                    .any(|s| template::is_template(s))
                {
                    let scope_steps = HashMap::new();
                    let scope = Scope {
                        inputs: &[],
                        steps: &scope_steps,
                        current: None,
                        current_is_finally: false,
                        item: false,
                        steps_allowed: false,
                        inputs_allowed: false,
                    };
                    self.templates_in(dnode, &scope);
                } else if let Err(e) = ty.check(default) {
                    self.help(
                        &dnode.span,
                        format!("the default of input \"{name}\" does not fit its type: {e}"),
                        format!(
                            "give a default that is {ty}, or remove it to make the input required"
                        ),
                    );
                }
            }
            // An input whose type is wrong is still declared (as any type), so references to
            // it do not pile up more errors; the playbook does not validate anyway.
            let ty = ty.or(Some(ValueType::Any));
            if let Some(ty) = ty {
                out.push(InputDecl {
                    name,
                    ty,
                    description,
                    default,
                    secret,
                    span: k.span.clone(),
                });
            }
        }
        out
    }

    /// `secret:` of an input: a boolean (absent is false).
    fn input_secret(&mut self, decl: &Node, name: &str) -> bool {
        match decl.get("secret") {
            None => false,
            Some(n) => match n.to_json() {
                Value::Bool(b) => b,
                _ => {
                    self.help(
                        &n.span,
                        format!(
                            "\"secret\" of input \"{name}\" must be true or false, found {}",
                            n.type_name()
                        ),
                        "write \"secret: true\"",
                    );
                    false
                }
            },
        }
    }

    fn input_type(&mut self, t: &Node, decl: &Node, name: &str) -> Option<ValueType> {
        let tname = self.string(t, "an input's type")?;
        if tname == "list" {
            let Some(items) = decl.get("items") else {
                self.help(
                    &t.span,
                    format!("input \"{name}\" is a list but does not say of what"),
                    "add \"items:\" with the item type, e.g. \"items: arn\"",
                );
                return None;
            };
            let iname = self.string(items, "items")?;
            match ValueType::scalar_from_name(iname) {
                Some(it) => Some(ValueType::List(Box::new(it))),
                None => {
                    let help = suggestion(iname, INPUT_TYPE_NAMES);
                    self.help(&items.span, format!("unknown item type \"{iname}\""), help);
                    None
                }
            }
        } else {
            if let Some(items) = decl.get("items") {
                self.help(
                    &items.span,
                    format!(
                        "\"items\" only applies to inputs of type list, and \"{name}\" is {tname}"
                    ),
                    "remove \"items\", or make the type \"list\"",
                );
            }
            match ValueType::scalar_from_name(tname) {
                Some(ty) => Some(ty),
                None => {
                    let help = suggestion(tname, INPUT_TYPE_NAMES);
                    self.help(&t.span, format!("unknown input type \"{tname}\""), help);
                    None
                }
            }
        }
    }

    fn evidence(
        &mut self,
        node: Option<&Node>,
        inputs: &[InputDecl],
        infos: &HashMap<String, StepInfo>,
    ) -> EvidenceDecl {
        let mut ev = EvidenceDecl::default();
        let Some(node) = node else { return ev };
        if self.mapping(node, "evidence", EVIDENCE_KEYS).is_none() {
            return ev;
        }
        if let Some(loc) = node.get("location") {
            if let Some(s) = self.string(loc, "evidence.location") {
                let scope = Scope {
                    inputs,
                    steps: infos,
                    current: None,
                    current_is_finally: false,
                    item: false,
                    steps_allowed: false,
                    inputs_allowed: true,
                };
                self.templates_in(loc, &scope);
                if s.trim().is_empty() {
                    self.help(
                        &loc.span,
                        "evidence.location is empty",
                        "give \"s3://bucket/prefix\" or a local directory",
                    );
                } else if s.starts_with("s3:") && !s.starts_with("s3://") {
                    self.help(
                        &loc.span,
                        format!("evidence.location \"{s}\" is not an S3 URL"),
                        "write \"s3://bucket/prefix\"",
                    );
                }
                ev.location = Some(s.to_owned());
            }
        }
        if let Some(r) = node.get("retention_days") {
            match r.kind {
                NodeKind::Int(d) if (1..=36_500).contains(&d) => ev.retention_days = d as u32,
                _ => {
                    let t = r.scalar_text().unwrap_or_else(|| r.type_name().to_owned());
                    self.help(&r.span, format!("evidence.retention_days \"{t}\" must be a whole number of days from 1 to 36500"), "e.g. \"retention_days: 90\"");
                }
            }
        }
        if let Some(m) = node.get("lock_mode") {
            match m.as_str() {
                Some("governance" | "GOVERNANCE") => ev.lock_mode = LockMode::Governance,
                Some("compliance" | "COMPLIANCE") => ev.lock_mode = LockMode::Compliance,
                _ => {
                    let t = m.scalar_text().unwrap_or_default();
                    self.help(
                        &m.span,
                        format!("evidence.lock_mode \"{t}\" is not an Object Lock mode"),
                        "use \"governance\" or \"compliance\"",
                    );
                }
            }
        }
        ev
    }

    fn step_list<'n>(&mut self, node: &'n Node, what: &str, required: bool) -> Vec<&'n Node> {
        if matches!(node.kind, NodeKind::Null) {
            let (msg, help) = if required {
                (
                    "no steps".to_owned(),
                    "a playbook needs at least one step under \"steps:\", e.g. \"  - id: capture\"",
                )
            } else {
                (
                    format!("\"{what}\" is empty"),
                    "add steps under it, or remove it",
                )
            };
            self.help(&node.span, msg, help);
            return Vec::new();
        }
        let Some(items) = node.as_seq() else {
            self.help(
                &node.span,
                format!(
                    "\"{what}\" must be a list of steps, found {}",
                    node.type_name()
                ),
                "each step starts with \"- id: ...\"",
            );
            return Vec::new();
        };
        if items.is_empty() && required {
            self.help(
                &node.span,
                "no steps",
                "a playbook needs at least one step under \"steps:\"",
            );
        }
        items
            .iter()
            .filter_map(|item| match item.as_map() {
                // `- step: {id: ..., action: ...}`: one key wrapping the real step.
                Some([(k, inner)])
                    if !k.as_str().is_some_and(|k| STEP_KEYS.contains(&k))
                        && (inner.get("id").is_some() || inner.get("action").is_some()) =>
                {
                    let key = k.scalar_text().unwrap_or_default();
                    self.help(
                        &k.span,
                        format!("a step is written directly as a list item, not under \"{key}:\""),
                        format!("remove \"{key}:\" and indent the step's keys as \"- id: ...\""),
                    );
                    Some(inner)
                }
                Some(_) => Some(item),
                None => {
                    self.help(
                        &item.span,
                        format!("a step must be a mapping, found {}", item.type_name()),
                        "a step looks like \"- id: snapshot\\n    action: ec2.snapshot_volumes\"",
                    );
                    None
                }
            })
            .collect()
    }

    fn step_id(&mut self, node: &Node) -> Option<(String, Span)> {
        let Some(idn) = node.get("id") else {
            let action = node.get("action").and_then(Node::as_str).unwrap_or("?");
            self.missing(
                node,
                "id",
                STEP_KEYS,
                &node.span,
                format!("a step has no \"id\" (action \"{action}\")"),
                "give every step a unique id, e.g. \"id: snapshot\"",
            );
            return None;
        };
        if matches!(idn.kind, NodeKind::Null) {
            self.help(
                &idn.span,
                "a step's id is empty",
                "give every step a unique id, e.g. \"id: snapshot\"",
            );
            return None;
        }
        let id = idn.scalar_text().unwrap_or_default();
        if !is_step_id(&id) {
            self.help(&idn.span, format!("step id \"{id}\" must be lowercase letters, digits, \"_\" and \"-\", starting with a letter or digit"), format!("e.g. \"{}\"", slug(&id)));
        }
        Some((id, idn.span.clone()))
    }

    fn step_action(&mut self, node: &Node) -> Option<&'static ActionSpec> {
        let Some(an) = node.get("action") else {
            let id = node
                .get("id")
                .and_then(Node::scalar_text)
                .unwrap_or_default();
            self.missing(
                node,
                "action",
                STEP_KEYS,
                &node.span,
                format!("step \"{id}\" has no \"action\""),
                "add \"action:\" with an action from `irr actions`",
            );
            return None;
        };
        if matches!(an.kind, NodeKind::Null) {
            self.help(
                &an.span,
                "a step's action is empty",
                "name an action from `irr actions`, e.g. \"action: ec2.snapshot_volumes\"",
            );
            return None;
        }
        let name = self.string(an, "action")?;
        match catalog::find(name) {
            Some(a) => Some(a),
            None => {
                let names = catalog::names();
                let help = match did_you_mean(name, names.iter().copied()) {
                    Some(best) => format!("did you mean \"{best}\"?"),
                    None => "run `irr actions` to list the actions".to_owned(),
                };
                self.help(&an.span, format!("unknown action \"{name}\""), help);
                None
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        node: &Node,
        is_finally: bool,
        id: Option<String>,
        action: Option<&'static ActionSpec>,
        duplicate: bool,
        inputs: &[InputDecl],
        infos: &HashMap<String, StepInfo>,
    ) -> Option<Step> {
        let id_text = id.clone().unwrap_or_default();
        // A parameter written at the step's level (`with:` forgotten or under-indented).
        let misplaced: Vec<&str> = node
            .as_map()
            .unwrap_or(&[])
            .iter()
            .filter_map(|(k, _)| k.as_str())
            .filter(|k| !STEP_KEYS.contains(k) && action.is_some_and(|a| a.param(k).is_some()))
            .collect();
        let action_name = action.map(|a| a.name).unwrap_or_default();
        self.mapping_hinted(node, &format!("step \"{id_text}\""), STEP_KEYS, &|key| {
            misplaced.contains(&key).then(|| {
                format!("\"{key}\" is a parameter of {action_name}: indent it under \"with:\"")
            })
        });
        let description = node
            .get("description")
            .and_then(|n| self.string(n, "a step's description"))
            .map(str::to_owned);

        // needs
        let mut needs: Vec<String> = Vec::new();
        if let Some(n) = node.get("needs") {
            match n.as_seq() {
                None => {
                    let t = n.scalar_text().unwrap_or_default();
                    self.help(
                        &n.span,
                        format!("needs must be a list of step ids, found {}", n.type_name()),
                        format!("write \"needs: [{t}]\""),
                    );
                }
                Some(items) => {
                    for item in items {
                        let Some(dep) = self.string(item, "a step id in needs") else {
                            continue;
                        };
                        if dep == id_text && !duplicate {
                            self.help(
                                &item.span,
                                format!("step \"{dep}\" needs itself"),
                                "remove it from needs",
                            );
                            continue;
                        }
                        match infos.get(dep) {
                            None => {
                                let by_action: Vec<&str> = infos
                                    .iter()
                                    .filter(|(_, i)| i.action.is_some_and(|a| a.name == dep))
                                    .map(|(id, _)| id.as_str())
                                    .collect();
                                let mut ids: Vec<&str> = infos.keys().map(String::as_str).collect();
                                ids.sort_unstable();
                                let help = match by_action.as_slice() {
                                    [one] => format!("needs takes step ids, not actions: did you mean \"{one}\"?"),
                                    _ => suggestion(dep, &ids),
                                };
                                self.help(
                                    &item.span,
                                    format!("needs names an unknown step \"{dep}\""),
                                    help,
                                );
                            }
                            Some(info) if info.is_finally && !is_finally => {
                                self.help(&item.span, format!("step \"{id_text}\" needs \"{dep}\", a finally step, which only runs after all steps"), "move the step to finally, or drop the need");
                            }
                            Some(info) if !info.is_finally && is_finally => {
                                // Finally steps always run after every step: nothing to order.
                            }
                            Some(_) => {
                                if !needs.iter().any(|x| x == dep) {
                                    needs.push(dep.to_owned());
                                }
                            }
                        }
                    }
                }
            }
        }

        let for_each_node = node.get("for_each");
        let scope = Scope {
            inputs,
            steps: infos,
            current: id.as_deref().filter(|_| !duplicate),
            current_is_finally: is_finally,
            item: for_each_node.is_some(),
            steps_allowed: true,
            inputs_allowed: true,
        };

        // with
        let mut with = serde_json::Map::new();
        let with_node = node.get("with");
        if let Some(wn) = with_node {
            if wn.as_map().is_none() && !matches!(wn.kind, NodeKind::Null) {
                self.help(
                    &wn.span,
                    format!(
                        "with must be a mapping of parameter names to values, found {}",
                        wn.type_name()
                    ),
                    "e.g. \"with: {instance_id: \\\"{{inputs.instance_id}}\\\"}\"",
                );
            }
        }
        let entries: &[(Node, Node)] = with_node.and_then(Node::as_map).unwrap_or(&[]);
        let mut implicit: BTreeSet<String> = BTreeSet::new();
        let mut after_set: BTreeSet<String> = BTreeSet::new();
        for (k, v) in entries {
            let pname = k.scalar_text().unwrap_or_default();
            let refs = self.templates_in(v, &scope);
            implicit.extend(upstream_of(&refs, is_finally, infos));
            after_set.extend(after_of(&refs, is_finally, infos));
            with.insert(pname.clone(), v.to_json());
            let Some(action) = action else { continue };
            let Some(param) = action.param(&pname) else {
                let names: Vec<&str> = action.params.iter().map(|p| p.name).collect();
                let help = match did_you_mean(&pname, names.iter().copied()) {
                    Some(best) => format!("did you mean \"{best}\"?"),
                    None if names.is_empty() => format!("{} takes no parameters", action.name),
                    None => format!("{} takes: {}", action.name, names.join(", ")),
                };
                self.help(
                    &k.span,
                    format!("unknown parameter \"{pname}\" for action {}", action.name),
                    help,
                );
                continue;
            };
            self.param_type(
                v,
                &param.ty.value_type(),
                &format!("parameter \"{pname}\" of {}", action.name),
                &scope,
            );
            if action.name == "evidence.capture" && pname == "name" {
                if let Some(name) = v.as_str().filter(|s| !template::is_template(s)) {
                    if let Err((msg, help)) = check_capture_name(name) {
                        self.help(&v.span, msg, help);
                    }
                }
            }
        }
        // Missing parameters are not reported when `with` itself is what is wrong.
        let with_broken = with_node
            .is_some_and(|w| w.as_map().is_none() && !matches!(w.kind, NodeKind::Null))
            || misspelled(node, "with", STEP_KEYS);
        if let (Some(action), false) = (action, with_broken) {
            let anchor = key_span(node, "with")
                .or_else(|| node.get("action").map(|a| a.span.clone()))
                .unwrap_or_else(|| node.span.clone());
            for p in action.params.iter().filter(|p| p.required) {
                if !with.contains_key(p.name) && !misplaced.contains(&p.name) {
                    self.help(
                        &anchor,
                        format!(
                            "step \"{id_text}\": missing required parameter \"{}\" for action {}",
                            p.name, action.name
                        ),
                        format!("add \"{}:\" ({}) under with", p.name, p.ty.value_type()),
                    );
                }
            }
            for group in action.exactly_one_of {
                let given: Vec<&str> = group
                    .iter()
                    .copied()
                    .filter(|g| with.contains_key(*g))
                    .collect();
                if given.len() != 1 {
                    let what = if given.is_empty() {
                        "none was given"
                    } else {
                        "several were given"
                    };
                    self.help(
                        &anchor,
                        format!(
                            "step \"{id_text}\": action {} takes exactly one of {}; {what}",
                            action.name,
                            group.join(", ")
                        ),
                        format!("keep one of: {}", group.join(", ")),
                    );
                }
            }
        }

        // when
        let when = node.get("when").map(|n| {
            match &n.kind {
                NodeKind::Bool(_) => {}
                NodeKind::Map(_) if self.unquoted_template(n).is_some() => {
                    self.templates_in(n, &scope);
                }
                NodeKind::Str(s) if template::is_template(s) => {
                    let scope = Scope {
                        item: false,
                        ..scope.clone()
                    };
                    let refs = self.templates_in(n, &scope);
                    implicit.extend(upstream_of(&refs, is_finally, infos));
                    after_set.extend(after_of(&refs, is_finally, infos));
                    if let Some(op) = comparison_outside_expression(s) {
                        self.help(
                            &n.span,
                            format!("\"{op}\" outside {{{{ }}}} is plain text: this condition renders to a non-empty string, which is always true"),
                            "compare inside the expression with a helper, e.g. \"{{eq steps.capture.status 'failed'}}\"",
                        );
                    }
                }
                _ => {
                    let t = n.scalar_text().unwrap_or_else(|| n.type_name().to_owned());
                    self.help(
                        &n.span,
                        format!("when must be true, false or a template, found \"{t}\""),
                        "e.g. \"when: \\\"{{inputs.snapshot}}\\\"\"",
                    );
                }
            }
            n.to_json()
        });

        // timeout, retries, on_failure
        let timeout = node.get("timeout").and_then(|n| {
            let text = n.scalar_text().unwrap_or_default();
            match (&n.kind, parse_duration(&text)) {
                (NodeKind::Str(_), Ok(d)) => Some(d),
                (NodeKind::Str(_), Err(e)) => {
                    self.help(&n.span, format!("bad timeout: {e}"), "");
                    None
                }
                _ => {
                    self.help(
                        &n.span,
                        format!("bad timeout \"{text}\": a duration needs a unit"),
                        format!("e.g. \"{text}s\" or \"{text}m\""),
                    );
                    None
                }
            }
        });
        let retries = match node.get("retries") {
            None => 0,
            Some(n) => match n.kind {
                NodeKind::Int(r) if (0..=MAX_RETRIES).contains(&r) => r as u32,
                _ => {
                    let t = n.scalar_text().unwrap_or_else(|| n.type_name().to_owned());
                    self.help(
                        &n.span,
                        format!("retries \"{t}\" must be a whole number from 0 to {MAX_RETRIES}"),
                        "e.g. \"retries: 2\"",
                    );
                    0
                }
            },
        };
        let on_failure = match node.get("on_failure") {
            None => OnFailure::Abort,
            Some(n) => match n.as_str() {
                Some("abort") => OnFailure::Abort,
                Some("continue") => OnFailure::Continue,
                _ => {
                    let t = n.scalar_text().unwrap_or_else(|| n.type_name().to_owned());
                    let help = suggestion(&t, &["abort", "continue"]);
                    self.help(
                        &n.span,
                        format!("on_failure \"{t}\" is not abort or continue"),
                        help,
                    );
                    OnFailure::Abort
                }
            },
        };

        // for_each
        let for_each = for_each_node.map(|n| {
            let scope = Scope { item: false, ..scope.clone() };
            match &n.kind {
                NodeKind::Seq(_) => {
                    let refs = self.templates_in(n, &scope);
                    implicit.extend(upstream_of(&refs, is_finally, infos));
                    after_set.extend(after_of(&refs, is_finally, infos));
                }
                NodeKind::Str(s) if template::single_expression(s).is_some() => {
                    let refs = self.templates_in(n, &scope);
                    implicit.extend(upstream_of(&refs, is_finally, infos));
                    after_set.extend(after_of(&refs, is_finally, infos));
                    if let Some(r) = refs.first() {
                        if let Some(t) = self.reference_type(r, &scope) {
                            if !matches!(t, ValueType::List(_) | ValueType::Any) {
                                self.help(&n.span, format!("for_each needs a list, but \"{}\" is {t}", r.text()), "for_each takes a list input (type: list) or a list output, or a literal list");
                            }
                        }
                    }
                }
                NodeKind::Map(_) if self.unquoted_template(n).is_some() => {
                    self.templates_in(n, &scope);
                }
                _ => {
                    let t = n.scalar_text().unwrap_or_else(|| n.type_name().to_owned());
                    self.help(&n.span, format!("for_each needs a list, found {} \"{t}\"", n.type_name()), "give a literal list, or one expression naming a list, e.g. \"for_each: \\\"{{inputs.instance_ids}}\\\"\"");
                }
            }
            n.to_json()
        });

        for dep in implicit {
            if Some(dep.as_str()) != id.as_deref() && !needs.contains(&dep) {
                needs.push(dep);
            }
        }
        let after: Vec<String> = after_set
            .into_iter()
            .filter(|d| Some(d.as_str()) != id.as_deref() && !needs.contains(d))
            .collect();
        if duplicate {
            // Checked above, but it is not a step of its own: the first one with the id is.
            return None;
        }
        Some(Step {
            id: id?,
            action: action?,
            description,
            with,
            needs,
            after,
            when,
            timeout,
            retries,
            on_failure,
            for_each,
            is_finally,
            span: node.span.clone(),
        })
    }

    /// Checks a parameter value against its declared type: literals fully, single
    /// expressions by the referenced value's type, mixed text as a string.
    fn param_type(&mut self, v: &Node, ty: &ValueType, what: &str, scope: &Scope<'_>) {
        match &v.kind {
            // Reported by `templates_in`.
            NodeKind::Map(_) if self.unquoted_template(v).is_some() => {}
            NodeKind::Str(s) if template::is_template(s) => {
                if let Some(r) = template::single_expression(s) {
                    if let Some(found) = self.reference_type(&r, scope) {
                        if !ty.accepts(&found) {
                            self.help(
                                &v.span,
                                format!("{what} must be {ty}, but \"{}\" is {found}", r.text()),
                                hint_for(ty),
                            );
                        }
                    }
                } else if !ty.is_stringy() && !matches!(ty, ValueType::Any) {
                    self.help(&v.span, format!("{what} must be {ty}, but text mixed with expressions always renders to a string"), "use exactly one expression, e.g. \"{{inputs.name}}\", to keep the value's type");
                }
            }
            NodeKind::Seq(items) if matches!(ty, ValueType::List(_)) => {
                let ValueType::List(item_ty) = ty else { return };
                for (i, item) in items.iter().enumerate() {
                    self.param_type(item, item_ty, &format!("item {} of {what}", i + 1), scope);
                }
            }
            NodeKind::Map(entries) if matches!(ty, ValueType::Map(_)) => {
                let ValueType::Map(item_ty) = ty else { return };
                for (k, item) in entries {
                    let key = k.scalar_text().unwrap_or_default();
                    self.param_type(item, item_ty, &format!("\"{key}\" of {what}"), scope);
                }
            }
            _ => {
                let json = v.to_json();
                let has_template = template::strings_in(&json)
                    .iter()
                    .any(|s| template::is_template(s));
                if has_template {
                    return;
                }
                if let Err(e) = ty.check(&json) {
                    let scalar = matches!(
                        v.kind,
                        NodeKind::Int(_) | NodeKind::Float(_) | NodeKind::Bool(_)
                    );
                    let help = match json.as_str().and_then(brace_typo) {
                        Some(fixed) => format!("templates use double braces: \"{fixed}\""),
                        None if scalar && ty.is_stringy() => {
                            format!(
                                "write \"{}\" in quotes to make it a string",
                                self.source_text(&v.span)
                            )
                        }
                        None => hint_for(ty),
                    };
                    self.help(&v.span, format!("{what}: {e}"), help);
                }
            }
        }
    }

    /// `{{inputs.x}}` written without quotes, which YAML reads as a mapping in a mapping:
    /// the expression as written.
    fn unquoted_template(&self, node: &Node) -> Option<String> {
        node.as_map()?;
        let rest = self.source.text().get(node.span.start..)?;
        if !rest.starts_with("{{") {
            return None;
        }
        let line = rest.lines().next().unwrap_or("");
        let end = line.find("}}").map_or(line.len(), |i| i + 2);
        Some(line[..end].to_owned())
    }

    fn report_unquoted(&mut self, node: &Node, expr: &str) {
        let span = self.source.span_at(node.span.start, expr.len());
        self.help(
            &span,
            format!("the template {expr} must be quoted"),
            format!("write \"{expr}\": without quotes YAML reads {{ as the start of a mapping"),
        );
    }

    /// Checks every template string inside `node`; returns the references found.
    fn templates_in(&mut self, node: &Node, scope: &Scope<'_>) -> Vec<Reference> {
        let mut refs = Vec::new();
        if let Some(expr) = self.unquoted_template(node) {
            self.report_unquoted(node, &expr);
            return refs;
        }
        match &node.kind {
            NodeKind::Str(s) if template::is_template(s) => match template::scan(s) {
                Err(e) => {
                    let span = self.inner_span(node, s, e.offset, 2);
                    self.help(
                        &span,
                        format!("bad template: {}", e.message),
                        "expressions look like \"{{inputs.instance_id}}\"",
                    );
                }
                Ok(found) => {
                    for r in found {
                        let span = self.inner_span(node, s, r.offset, r.len);
                        if self.reference(&r, scope, &span) {
                            refs.push(r);
                        }
                    }
                }
            },
            NodeKind::Seq(items) => {
                for i in items {
                    refs.extend(self.templates_in(i, scope));
                }
            }
            NodeKind::Map(entries) => {
                for (_, v) in entries {
                    refs.extend(self.templates_in(v, scope));
                }
            }
            _ => {}
        }
        refs
    }

    /// The span of `len` bytes at `offset` inside the string value of `node`, when the source
    /// text shows it literally; else the node's span.
    fn inner_span(&self, node: &Node, value: &str, offset: usize, len: usize) -> Span {
        let text = self.source.text();
        let src = text.get(node.span.start..).unwrap_or("");
        let quoted = src.starts_with('"') || src.starts_with('\'');
        let body_start = node.span.start + usize::from(quoted);
        let needle = &value[..(offset + len).min(value.len())];
        if text
            .get(body_start..)
            .is_some_and(|t| t.starts_with(needle))
        {
            self.source.span_at(body_start + offset, len)
        } else {
            node.span.clone()
        }
    }

    /// Checks one reference; returns whether it resolves.
    fn reference(&mut self, r: &Reference, scope: &Scope<'_>, span: &Span) -> bool {
        let p: Vec<&str> = r.path.iter().map(String::as_str).collect();
        let text = r.text();
        const ROOTS: &[&str] = &[
            "inputs",
            "steps",
            "case",
            "run",
            "playbook",
            "aws",
            "item",
            "item_index",
        ];
        let fixed = |this: &mut Self, allowed: &[&str], root: &str| -> bool {
            match p.get(1) {
                Some(f) if allowed.contains(f) && p.len() == 2 => true,
                _ => {
                    let field = p.get(1).copied().unwrap_or("");
                    let help = format!(
                        "{root} has: {}",
                        allowed
                            .iter()
                            .map(|a| format!("{root}.{a}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    this.help(
                        span,
                        format!("unknown reference \"{text}\": {root} has no \"{field}\""),
                        help,
                    );
                    false
                }
            }
        };
        match p[0] {
            "inputs" if !scope.inputs_allowed => {
                self.help(
                    span,
                    format!("\"{text}\" cannot be used here"),
                    "an input's default may refer only to case, run, playbook and aws",
                );
                false
            }
            "inputs" => {
                let Some(name) = p.get(1) else {
                    self.help(
                        span,
                        "\"inputs\" needs an input name",
                        "e.g. \"{{inputs.instance_id}}\"",
                    );
                    return false;
                };
                if scope.inputs.iter().any(|i| i.name == *name) {
                    true
                } else if self.inputs_misplaced || self.renamed_inputs.iter().any(|n| n == name) {
                    // Already reported where the inputs are declared.
                    true
                } else {
                    let names: Vec<&str> = scope.inputs.iter().map(|i| i.name.as_str()).collect();
                    let help = match did_you_mean(name, names.iter().copied()) {
                        Some(b) => format!("did you mean \"inputs.{b}\"?"),
                        None if names.is_empty() => {
                            "the playbook declares no inputs; declare it under \"inputs:\""
                                .to_owned()
                        }
                        None => format!("declared inputs: {}", names.join(", ")),
                    };
                    self.help(
                        span,
                        format!("unknown input \"{name}\" in \"{text}\""),
                        help,
                    );
                    false
                }
            }
            "steps" if !scope.steps_allowed => {
                self.help(
                    span,
                    format!("\"{text}\" cannot be used here"),
                    "step outputs are known only while the run goes on; refer to inputs here",
                );
                false
            }
            "steps" => self.step_reference(&p, &text, scope, span),
            "case" => fixed(self, &["id"], "case"),
            "run" => fixed(self, &["id", "started_at"], "run"),
            "playbook" => fixed(self, &["name", "version"], "playbook"),
            "aws" => fixed(self, &["account_id", "region"], "aws"),
            "item" | "item_index" if scope.item => {
                if p[0] == "item_index" && p.len() > 1 {
                    self.error(span, "item_index is a number and has no fields");
                    return false;
                }
                true
            }
            "item" | "item_index" => {
                self.help(
                    span,
                    format!("\"{text}\" is only defined in the with of a step that has for_each"),
                    "add for_each to the step, or refer to an input",
                );
                false
            }
            other => {
                let help = match did_you_mean(other, ROOTS.iter().copied()) {
                    Some(b) => format!("did you mean \"{b}\"?"),
                    None => "references start with inputs., steps., case., run., playbook. or aws."
                        .to_owned(),
                };
                self.help(span, format!("unknown reference \"{text}\""), help);
                false
            }
        }
    }

    fn step_reference(&mut self, p: &[&str], text: &str, scope: &Scope<'_>, span: &Span) -> bool {
        let Some(&sid) = p.get(1) else {
            self.help(
                span,
                "\"steps\" needs a step id",
                "e.g. \"{{steps.snapshot.outputs.snapshot_ids}}\"",
            );
            return false;
        };
        let Some(info) = scope.steps.get(sid) else {
            let mut ids: Vec<&str> = scope.steps.keys().map(String::as_str).collect();
            ids.sort_unstable();
            let help = suggestion(sid, &ids);
            self.help(span, format!("unknown step \"{sid}\" in \"{text}\""), help);
            return false;
        };
        if Some(sid) == scope.current {
            self.help(
                span,
                format!("step \"{sid}\" refers to itself in \"{text}\""),
                "a step can use the outputs of the steps before it, not its own",
            );
            return false;
        }
        if info.is_finally && !scope.current_is_finally {
            self.help(span, format!("\"{text}\" refers to finally step \"{sid}\", which is not upstream: it only runs after all steps"), "refer to it from a finally step, or move it into steps");
            return false;
        }
        match p.get(2).copied() {
            Some("status") if p.len() == 3 => true,
            Some("outputs") => {
                let Some(&oname) = p.get(3) else {
                    self.help(
                        span,
                        format!("\"{text}\" needs an output name"),
                        "e.g. steps.ID.outputs.NAME",
                    );
                    return false;
                };
                let Some(action) = info.action else {
                    return true;
                };
                if action.output(oname).is_some() {
                    true
                } else {
                    let names: Vec<&str> = action.outputs.iter().map(|o| o.name).collect();
                    let help = match did_you_mean(oname, names.iter().copied()) {
                        Some(b) => format!("did you mean \"steps.{sid}.outputs.{b}\"?"),
                        None if names.is_empty() => format!("{} has no outputs", action.name),
                        None => format!("{} outputs: {}", action.name, names.join(", ")),
                    };
                    self.help(
                        span,
                        format!("step \"{sid}\" ({}) has no output \"{oname}\"", action.name),
                        help,
                    );
                    false
                }
            }
            _ => {
                self.help(
                    span,
                    format!("unknown reference \"{text}\""),
                    format!("a step has steps.{sid}.outputs.NAME and steps.{sid}.status"),
                );
                false
            }
        }
    }

    /// The type a (valid) reference will have, when it is known statically.
    fn reference_type(&self, r: &Reference, scope: &Scope<'_>) -> Option<ValueType> {
        let p: Vec<&str> = r.path.iter().map(String::as_str).collect();
        match p.as_slice() {
            ["inputs", name] => scope
                .inputs
                .iter()
                .find(|i| i.name == *name)
                .map(|i| i.ty.clone()),
            ["steps", sid, "outputs", oname] => {
                let info = scope.steps.get(*sid)?;
                let ty = info.action?.output(oname)?.ty.value_type();
                Some(if info.for_each {
                    ValueType::List(Box::new(ty))
                } else {
                    ty
                })
            }
            ["steps", _, "status"]
            | ["case", ..]
            | ["run", ..]
            | ["playbook", ..]
            | ["aws", ..] => Some(ValueType::String),
            ["item_index"] => Some(ValueType::Integer),
            _ => None,
        }
    }

    /// Reports each dependency cycle once, naming its steps.
    fn cycles(&mut self, steps: &[Step], infos: &HashMap<String, StepInfo>) {
        let index: HashMap<&str, usize> = steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i))
            .collect();
        // 0 = unvisited, 1 = on stack, 2 = done
        let mut state = vec![0u8; steps.len()];
        let mut stack: Vec<usize> = Vec::new();
        let mut reported: BTreeSet<Vec<usize>> = BTreeSet::new();
        fn visit(
            i: usize,
            steps: &[Step],
            index: &HashMap<&str, usize>,
            state: &mut [u8],
            stack: &mut Vec<usize>,
            found: &mut Vec<Vec<usize>>,
        ) {
            state[i] = 1;
            stack.push(i);
            for dep in steps[i].needs.iter().chain(&steps[i].after) {
                let Some(&j) = index.get(dep.as_str()) else {
                    continue;
                };
                if state[j] == 1 {
                    let pos = stack.iter().position(|&x| x == j).unwrap_or(0);
                    found.push(stack[pos..].to_vec());
                } else if state[j] == 0 {
                    visit(j, steps, index, state, stack, found);
                }
            }
            stack.pop();
            state[i] = 2;
        }
        let mut found = Vec::new();
        for i in 0..steps.len() {
            if state[i] == 0 {
                visit(i, steps, &index, &mut state, &mut stack, &mut found);
            }
        }
        for cycle in found {
            let mut key = cycle.clone();
            key.sort_unstable();
            if !reported.insert(key) {
                continue;
            }
            // Report at the step that appears first in the file.
            let first = *cycle.iter().min().expect("a cycle has steps");
            let start = cycle.iter().position(|&x| x == first).expect("present");
            let ordered: Vec<&str> = cycle[start..]
                .iter()
                .chain(&cycle[..start])
                .map(|&i| steps[i].id.as_str())
                .collect();
            // The walk follows `needs`, so reverse it to read in run order: a runs before b.
            let mut chain: Vec<&str> = ordered.clone();
            chain.push(ordered[0]);
            let span = infos
                .get(&steps[first].id)
                .map_or_else(|| steps[first].span.clone(), |i| i.span.clone());
            self.help(
                &span,
                format!("dependency cycle: {}", chain.join(" needs ")),
                "steps in a cycle can never start; remove one of these needs (or output references)",
            );
        }
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

/// Steps a step implicitly needs because it references them.
///
/// A reference to a step's outputs means the step must have succeeded (`needs`); a
/// reference to its `status` only means it must have ended (see [`after_of`]), so a `when`
/// can react to a failure.
fn upstream_of(
    refs: &[Reference],
    is_finally: bool,
    infos: &HashMap<String, StepInfo>,
) -> Vec<String> {
    refs.iter()
        .filter(|r| r.path.first().map(String::as_str) == Some("steps"))
        .filter(|r| r.path.get(2).map(String::as_str) != Some("status"))
        .filter_map(|r| r.path.get(1))
        .filter(|sid| infos.get(*sid).is_some_and(|i| i.is_finally == is_finally))
        .cloned()
        .collect()
}

/// Steps a step must wait for, whatever their outcome, because it reads their `status`.
fn after_of(
    refs: &[Reference],
    is_finally: bool,
    infos: &HashMap<String, StepInfo>,
) -> Vec<String> {
    refs.iter()
        .filter(|r| r.path.first().map(String::as_str) == Some("steps"))
        .filter(|r| r.path.get(2).map(String::as_str) == Some("status"))
        .filter_map(|r| r.path.get(1))
        .filter(|sid| infos.get(*sid).is_some_and(|i| i.is_finally == is_finally))
        .cloned()
        .collect()
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

/// Checks a value given for an input (from `--input` or an inputs file) against the input's
/// declaration: parses it by type and checks it.
pub fn parse_input_value(decl: &InputDecl, raw: &str) -> Result<Value, String> {
    let v = match &decl.ty {
        ValueType::Integer => raw
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| format!("\"{raw}\" is not an integer"))?,
        ValueType::Boolean => match raw.trim() {
            "true" | "yes" => Value::Bool(true),
            "false" | "no" => Value::Bool(false),
            _ => return Err(format!("\"{raw}\" is not true or false")),
        },
        ValueType::List(_) => {
            let t = raw.trim();
            if t.starts_with('[') {
                serde_json::from_str(t).map_err(|e| format!("not a JSON list: {e}"))?
            } else if t.is_empty() {
                Value::Array(Vec::new())
            } else {
                Value::Array(
                    t.split(',')
                        .map(|s| Value::String(s.trim().to_owned()))
                        .collect(),
                )
            }
        }
        _ => Value::String(raw.to_owned()),
    };
    decl.ty.check(&v)?;
    Ok(v)
}

/// Resolves the inputs of a run: values from an inputs file (a YAML mapping), then
/// `--input name=value` pairs (which win), then defaults. Every problem is reported: unknown
/// names, values that do not fit, required inputs not given.
///
/// With `require_all` false (for `irr policy`), required inputs that were not given are left
/// out instead of being errors.
pub fn resolve_inputs(
    playbook: &Playbook,
    pairs: &[String],
    inputs_file: Option<&Source>,
    require_all: bool,
) -> Result<serde_json::Map<String, Value>, Vec<Diagnostic>> {
    resolve_inputs_from(playbook, pairs, inputs_file, require_all, &|_| None).map(|r| r.values)
}

/// Inputs of a run, and where each came from.
#[derive(Clone, Debug, Default)]
pub struct ResolvedInputs {
    /// Name -> value.
    pub values: serde_json::Map<String, Value>,
    /// The inputs whose value is the playbook's default (the only values that are rendered
    /// as templates: a value given with `--input`, an inputs file or the environment is data).
    pub defaulted: Vec<String>,
}

/// [`resolve_inputs`], also reading secret inputs that were not given otherwise from the
/// environment (`env(IRR_INPUT_NAME)`, see [`crate::secrets::env_var`]), and saying which
/// values are defaults. A secret value is never quoted in a diagnostic.
pub fn resolve_inputs_from(
    playbook: &Playbook,
    pairs: &[String],
    inputs_file: Option<&Source>,
    require_all: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ResolvedInputs, Vec<Diagnostic>> {
    let mut problems = Vec::new();
    let mut values = serde_json::Map::new();
    let names: Vec<&str> = playbook.inputs.iter().map(|i| i.name.as_str()).collect();
    let unknown = |name: &str, span: Span| {
        let help = match did_you_mean(name, names.iter().copied()) {
            Some(b) => format!("did you mean \"{b}\"?"),
            None if names.is_empty() => "the playbook declares no inputs".to_owned(),
            None => format!("the playbook's inputs: {}", names.join(", ")),
        };
        Diagnostic::error(span, format!("unknown input \"{name}\"")).with_help(help)
    };
    // A secret's value is never echoed: the problem names the input and its type only.
    let unfit = |decl: &InputDecl, span: Span, e: String| {
        let msg = if decl.secret {
            format!(
                "input \"{}\": the value given is not {} (secret: the value is not shown)",
                decl.name, decl.ty
            )
        } else {
            format!("input \"{}\": {e}", decl.name)
        };
        Diagnostic::error(span, msg).with_help(format!("\"{}\" is {}", decl.name, decl.ty))
    };
    if let Some(src) = inputs_file {
        match load::parse(src) {
            Err(d) => problems.extend(d),
            Ok(root) => match root.as_map() {
                None if matches!(root.kind, NodeKind::Null) => {}
                None => problems.push(Diagnostic::error(
                    root.span.clone(),
                    "an inputs file must be a mapping of input names to values",
                )),
                Some(entries) => {
                    for (k, v) in entries {
                        let name = k.scalar_text().unwrap_or_default();
                        let Some(decl) = playbook.input(&name) else {
                            problems.push(unknown(&name, k.span.clone()));
                            continue;
                        };
                        // The caret view would print the line holding a secret's value.
                        let span = if decl.secret {
                            Span::none(format!("{}: input {name}", src.name()))
                        } else {
                            v.span.clone()
                        };
                        let mut json = v.to_json();
                        if let (Value::String(s), false) = (&json, decl.ty.is_stringy()) {
                            match parse_input_value(decl, s) {
                                Ok(parsed) => json = parsed,
                                Err(e) => {
                                    problems.push(unfit(decl, span, e));
                                    continue;
                                }
                            }
                        }
                        match decl.ty.check(&json) {
                            Ok(()) => {
                                values.insert(name, json);
                            }
                            Err(e) => problems.push(unfit(decl, span, e)),
                        }
                    }
                }
            },
        }
    }
    for pair in pairs {
        let Some((name, raw)) = pair.split_once('=') else {
            problems.push(
                Diagnostic::error(
                    Span::none(format!("--input {pair}")),
                    format!("--input \"{pair}\" is not name=value"),
                )
                .with_help("e.g. --input instance_id=i-0abc1234def567890"),
            );
            continue;
        };
        let span = |secret: bool| {
            Span::none(if secret {
                format!("--input {}=***", name.trim())
            } else {
                format!("--input {pair}")
            })
        };
        match playbook.input(name.trim()) {
            // A mistyped name of a secret input must not echo its value either.
            None => problems.push(unknown(
                name.trim(),
                span(playbook.secret_inputs().next().is_some()),
            )),
            Some(decl) => match parse_input_value(decl, raw) {
                Ok(v) => {
                    values.insert(decl.name.clone(), v);
                }
                Err(e) => problems.push(unfit(decl, span(decl.secret), e)),
            },
        }
    }
    for decl in playbook.inputs.iter().filter(|d| d.secret) {
        if values.contains_key(&decl.name) {
            continue;
        }
        let var = crate::secrets::env_var(&decl.name);
        if let Some(raw) = env(&var) {
            match parse_input_value(decl, &raw) {
                Ok(v) => {
                    values.insert(decl.name.clone(), v);
                }
                Err(e) => problems.push(unfit(decl, Span::none(format!("environment {var}")), e)),
            }
        }
    }
    let mentioned: Vec<String> = problems
        .iter()
        .filter_map(|d: &Diagnostic| {
            d.message
                .strip_prefix("input \"")
                .and_then(|m| m.split('"').next())
                .map(str::to_owned)
        })
        .collect();
    let mut defaulted = Vec::new();
    for decl in &playbook.inputs {
        if values.contains_key(&decl.name) || mentioned.contains(&decl.name) {
            continue;
        }
        match &decl.default {
            Some(d) => {
                values.insert(decl.name.clone(), d.clone());
                defaulted.push(decl.name.clone());
            }
            None if !require_all => {}
            None => {
                let how = if decl.secret {
                    format!(
                        "give it with --input {}=VALUE or the environment variable {} ({}, secret)",
                        decl.name,
                        crate::secrets::env_var(&decl.name),
                        decl.ty
                    )
                } else {
                    format!("give it with --input {}=VALUE ({})", decl.name, decl.ty)
                };
                problems.push(
                    Diagnostic::error(
                        decl.span.clone(),
                        format!("input \"{}\" is required and was not given", decl.name),
                    )
                    .with_help(how),
                )
            }
        }
    }
    if problems.is_empty() {
        Ok(ResolvedInputs { values, defaulted })
    } else {
        Err(problems)
    }
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
