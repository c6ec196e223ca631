//! `irr compile FILE --target step-functions`: a validated playbook as an Amazon States
//! Language state machine (`state-machine.asl.json`) and the CloudFormation stack that runs
//! it (`stack.yaml`).
//!
//! The translation keeps the playbook's meaning or refuses it: `needs` become the order of
//! the states (steps with no order between them side by side in a `Parallel`), each step a
//! `Parallel` of one branch (its `Retry` is the step's `retries`, its `Catch` the step's
//! failure, which aborts to `finally` or, with `on_failure: continue`, goes on), `when` a
//! `Choice`, `for_each` a `Map`, `timeout` each task's `TimeoutSeconds`, and each action the
//! `aws-sdk:*` tasks that do what the CLI action does (`ec2.rs`, `isolate.rs`). An action,
//! parameter or template without a faithful translation is refused with its location.
//! docs/step-functions.md is the reference; `crate::execution` seals an execution.

mod asl;
mod cfn;
mod cfn_flow;
pub mod command;
mod control;
pub mod deploy;
mod ec2;
pub mod expr;
mod grant;
pub mod hbs;
mod iam;
mod isolate;
mod s3;
mod stack;
mod trigger;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use crate::diagnostic::{Diagnostic, Span};
use crate::load::Node;
use crate::model::{OnFailure, Playbook, Step};
use crate::types::ValueType;
use asl::{choice, present, set_const, Branch, Calls, Retention, Seq};

/// `for_each` items at once: the CLI's default `--concurrency`.
const MAP_CONCURRENCY: u64 = 32;

/// Seconds between a failed attempt of a step (or of a `for_each` item) and the next.
const RETRY_PAUSE_SECONDS: u64 = 2;
use expr::{Expr, Scope, When};

/// What `irr compile` writes.
#[derive(Debug)]
pub struct Compiled {
    /// `state-machine.asl.json`, with `${EvidenceBucket}`, `${EvidencePrefix}` and
    /// `${TargetRoleArn}` left for the stack's `DefinitionSubstitutions`.
    pub definition: Value,
    /// `stack.yaml`.
    pub stack: String,
}

/// The placeholders a definition holds until deployed ([`substitute`]).
pub const SUBSTITUTIONS: &[&str] = &[
    "EvidenceBucket",
    "EvidencePrefix",
    "TargetRoleArn",
    "ApprovalTopicArn",
];

/// The definition with its placeholders filled in, as the stack's
/// `DefinitionSubstitutions` does (for a machine created without the stack, e.g. in tests).
pub fn substitute(definition: &Value, values: &[(&str, &str)]) -> String {
    let mut text = definition.to_string();
    for (k, v) in values {
        let escaped = serde_json::to_string(v).unwrap_or_default();
        text = text.replace(&format!("${{{k}}}"), escaped.trim_matches('"'));
    }
    text
}

/// Why a step has no translation: the whole action, or one of its parameters.
#[derive(Debug)]
pub struct Refusal {
    param: Option<String>,
    message: String,
}

impl Refusal {
    fn param(name: &str, message: &str) -> Refusal {
        Refusal {
            param: Some(name.to_owned()),
            message: format!("parameter \"{name}\": {message}"),
        }
    }
}

/// A step's `with`, translated on demand; a parameter no translation reads is refused.
pub struct Params {
    raw: Map<String, Value>,
    values: BTreeMap<String, Result<Expr, String>>,
    used: RefCell<BTreeSet<String>>,
    /// What names resolve to.
    pub scope: Scope,
    /// The step runs once per `for_each` item.
    pub in_map: bool,
    /// The step's `timeout` in seconds.
    pub timeout: Option<u64>,
}

impl Params {
    fn new(step: &Step, scope: Scope) -> Params {
        let values = step
            .with
            .iter()
            .map(|(k, v)| (k.clone(), expr::value(v, &scope)))
            .collect();
        Params {
            raw: step.with.clone(),
            values,
            used: RefCell::default(),
            in_map: scope.in_map,
            scope,
            timeout: step.timeout.map(|d| d.as_secs().max(1)),
        }
    }

    /// The parameter as written.
    fn raw(&self, name: &str) -> Option<&Value> {
        self.used.borrow_mut().insert(name.to_owned());
        self.raw.get(name)
    }

    /// The parameter translated, if given; a template without translation refuses the step.
    fn get(&self, name: &str) -> Option<&Expr> {
        self.used.borrow_mut().insert(name.to_owned());
        self.values.get(name)?.as_ref().ok()
    }

    fn check(&self, name: &str) -> Result<(), Refusal> {
        match self.values.get(name) {
            Some(Err(m)) => Err(Refusal::param(name, m)),
            _ => Ok(()),
        }
    }

    fn required(&self, name: &str) -> Result<&Expr, Refusal> {
        self.check(name)?;
        self.get(name)
            .ok_or_else(|| Refusal::param(name, "is required"))
    }

    fn lit_bool(&self, name: &str, default: bool) -> Result<bool, Refusal> {
        self.check(name)?;
        match self.get(name) {
            None => Ok(default),
            Some(Expr::Lit(Value::Bool(b))) => Ok(*b),
            Some(_) => Err(Refusal::param(name, "must be known when compiling (written in the playbook or given with --input): it decides which states exist")),
        }
    }

    fn lit_u64(&self, name: &str, default: u64) -> Result<u64, Refusal> {
        self.check(name)?;
        match self.get(name) {
            None => Ok(default),
            Some(Expr::Lit(v)) if v.as_u64().is_some() => Ok(v.as_u64().unwrap_or(default)),
            Some(_) => Err(Refusal::param(
                name,
                "must be a whole number known when compiling",
            )),
        }
    }

    /// A parameter given in the playbook that the translation did not read.
    fn unread(&self) -> Option<String> {
        let used = self.used.borrow();
        self.raw.keys().find(|k| !used.contains(*k)).cloned()
    }
}

/// A step's action as states: a branch whose output is the step's outputs, and the names
/// of the outputs it holds as the CLI's action does.
pub struct Translated {
    branch: Branch,
    outputs: Vec<&'static str>,
}

/// Why each action of the catalog that is not translated is refused (docs/step-functions.md).
fn untranslated(action: &str) -> &'static str {
    match action {
        "ssm.capture_volatile" => "the instance uploads through presigned S3 URLs that irr signs, so that no credential reaches it, and a state machine cannot sign (no HMAC, no secret key); every way around that changes the trust model (docs/step-functions.md, \"Actions\")",
        _ => "it has no Step Functions translation yet",
    }
}

fn translate(step: &Step, p: &Params, c: &Calls) -> Result<Translated, Refusal> {
    let id = step.id.as_str();
    let t = match step.action.name {
        "ec2.protect_instance" => ec2::protect(id, p, c),
        "ec2.snapshot_volumes" => ec2::snapshot(id, p, c),
        "ec2.isolate_instance" => isolate::isolate(id, p, c),
        "ec2.tag_resources" => ec2::tag_resources(id, p, c),
        "ec2.capture_instance_metadata" => ec2::capture(id, p, c),
        "control.approve" => control::approve(id, p),
        "iam.capture_principal" => iam::capture(id, p, c),
        "iam.deactivate_access_key" => iam::deactivate_key(id, p, c),
        "iam.revoke_sessions" => iam::revoke_sessions(id, p, c),
        "iam.grant_responder_access" => grant::grant(id, p, c),
        "iam.revoke_responder_access" => iam::revoke_responder(id, p, c),
        "s3.capture_bucket_config" => s3::capture(id, p, c),
        "cloudformation.deploy_stack" => cfn::deploy(id, p, c),
        "s3.block_public_access" => s3::block_public_access(id, p, c),
        other => {
            return Err(Refusal {
                param: None,
                message: format!("action \"{other}\" is refused: {}", untranslated(other)),
            })
        }
    }?;
    if let Some(k) = p.unread() {
        return Err(Refusal::param(&k, "has no translation"));
    }
    Ok(t)
}

/// Compiles a validated playbook; `fixed` are inputs given when compiling (`--input`),
/// written into the definition. Every refusal is reported, each with its location.
pub fn compile(pb: &Playbook, fixed: Map<String, Value>) -> Result<Compiled, Vec<Diagnostic>> {
    let root = crate::load::parse(&pb.source).ok();
    let mut c = Compiler {
        pb,
        root,
        scope: Scope {
            fixed,
            dir: std::path::Path::new(pb.source.name())
                .parent()
                .map(Into::into),
            ..Scope::default()
        },
        states: Map::new(),
        problems: Vec::new(),
    };
    for i in &pb.inputs {
        if i.secret {
            c.problems.push(Diagnostic::error(
                i.span.clone(),
                format!("input \"{}\" is secret: an execution's input is kept in clear in its history, so a secret input cannot be compiled", i.name),
            ));
        }
    }
    let definition = c.machine();
    if !c.problems.is_empty() {
        return Err(c.problems);
    }
    let stack = stack::stack(pb, &definition);
    Ok(Compiled { definition, stack })
}

struct Compiler<'a> {
    pb: &'a Playbook,
    root: Option<Node>,
    scope: Scope,
    states: Map<String, Value>,
    problems: Vec<Diagnostic>,
}

const STATE_KEYS: &[&str] = &[
    "case_id", "target", "aws", "evidence", "inputs", "steps", "attempts", "aborted",
];

/// A Pass that rebuilds the state with `steps` replaced.
fn rebuild(steps: &str, next: &str) -> Value {
    let mut p = Map::new();
    for k in STATE_KEYS {
        let v = if *k == "steps" {
            steps.to_owned()
        } else {
            format!("$.{k}")
        };
        p.insert(format!("{k}.$"), json!(v));
    }
    json!({"Type": "Pass", "Parameters": p, "Next": next})
}

/// Steps in layers: each after every layer holding a step it needs or follows.
fn layers(steps: &[Step]) -> Vec<Vec<&Step>> {
    let ids: BTreeSet<&str> = steps.iter().map(|s| s.id.as_str()).collect();
    let mut depth: BTreeMap<&str, usize> = BTreeMap::new();
    // Validation guarantees no cycle; `steps` may list a step before one it needs.
    while depth.len() < steps.len() {
        let before = depth.len();
        for s in steps {
            if depth.contains_key(s.id.as_str()) {
                continue;
            }
            let deps: Vec<&str> = s
                .needs
                .iter()
                .chain(&s.after)
                .map(String::as_str)
                .filter(|d| ids.contains(d))
                .collect();
            if deps.iter().all(|d| depth.contains_key(d)) {
                let d = deps.iter().map(|d| depth[d] + 1).max().unwrap_or(0);
                depth.insert(s.id.as_str(), d);
            }
        }
        if depth.len() == before {
            break;
        }
    }
    let n = depth.values().max().map_or(0, |m| m + 1);
    let mut out = vec![Vec::new(); n];
    for s in steps {
        if let Some(d) = depth.get(s.id.as_str()) {
            out[*d].push(s);
        }
    }
    out
}

impl Compiler<'_> {
    fn span_of(&self, step: &Step, keys: &[&str]) -> Span {
        let section = if step.is_finally { "finally" } else { "steps" };
        let node = self
            .root
            .as_ref()
            .and_then(|r| r.get(section))
            .and_then(Node::as_seq)
            .and_then(|seq| {
                seq.iter()
                    .find(|n| n.get("id").and_then(Node::as_str) == Some(step.id.as_str()))
            });
        let mut at = node;
        for k in keys {
            match at.and_then(|n| n.get(k)) {
                Some(n) => at = Some(n),
                None => break,
            }
        }
        at.map_or_else(|| step.span.clone(), |n| n.span.clone())
    }

    fn refuse(&mut self, step: &Step, keys: &[&str], message: String) {
        let span = self.span_of(step, keys);
        self.problems.push(
            Diagnostic::error(span, format!("step \"{}\": {message}", step.id))
                .with_help("see docs/step-functions.md for what compiles"),
        );
    }

    /// Which outputs each step's translation holds, in step order, so that a step's
    /// references to earlier steps are checked whichever order the states are built in.
    fn held_outputs(&mut self) {
        for layer in layers(&self.pb.steps)
            .into_iter()
            .chain(layers(&self.pb.finally))
        {
            for step in layer {
                if step.for_each.is_some() {
                    continue;
                }
                let p = Params::new(step, self.scope.clone());
                let calls = Calls {
                    timeout: None,
                    retention: Retention::of(&self.pb.evidence),
                };
                if let Ok(t) = translate(step, &p, &calls) {
                    self.scope.outputs.insert(step.id.clone(), t.outputs);
                }
            }
        }
    }

    fn machine(&mut self) -> Value {
        let pb = self.pb;
        self.held_outputs();
        let first_main = self.section(&pb.steps, "irr: finally", true);
        let first_finally = self.section(&pb.finally, "irr: end", false);
        let mut end = Vec::new();
        for s in &pb.finally {
            end.push(json!({"Variable": format!("{}.status", expr::step_path(&s.id)), "StringEquals": "failed", "Next": "irr: failed"}));
        }
        end.insert(
            0,
            json!({"Variable": "$.aborted", "BooleanEquals": true, "Next": "irr: failed"}),
        );
        let mut states = self.init(&first_main);
        states.insert("irr: aborted".into(), json!({"Type": "Pass", "Result": true, "ResultPath": "$.aborted", "Next": "irr: finally"}));
        states.insert(
            "irr: finally".into(),
            json!({"Type": "Pass", "Next": first_finally}),
        );
        states.insert(
            "irr: end".into(),
            json!({"Type": "Choice", "Choices": end, "Default": "irr: succeeded"}),
        );
        states.insert("irr: failed".into(), json!({"Type": "Fail", "Error": "irr.RunFailed", "Cause": "a step failed: each step's status is in the execution's state under steps"}));
        states.insert("irr: succeeded".into(), json!({"Type": "Succeed"}));
        states.append(&mut self.states);
        json!({
            "Comment": format!("irr playbook {} {} sha256:{}", pb.metadata.name, pb.metadata.version, pb.sha256),
            "StartAt": "irr: input",
            "States": states,
        })
    }

    /// The states before the first step: the execution input checked, the target, the
    /// inputs with their defaults, every step `pending`.
    fn init(&mut self, first: &str) -> Map<String, Value> {
        let pb = self.pb;
        let mut s = Map::new();
        let invalid = "irr: invalid input";
        let mut first_checks = Vec::new();
        if pb.trigger.is_some() {
            // Started by a finding (the trigger's EventBridge rule): mapped first.
            first_checks.push(json!({"Or": [present("$.finding"), present("$.findings")], "Next": "irr: finding"}));
            let mut mapping = trigger::states(pb, invalid, "irr: input", &mut self.problems);
            s.append(&mut mapping);
        }
        first_checks.extend([
            json!({"Not": present("$.case_id"), "Next": invalid}),
            json!({"Not": {"Variable": "$.case_id", "IsString": true}, "Next": invalid}),
            json!({"Not": present("$.inputs"), "Next": "irr: no inputs"}),
        ]);
        s.insert(
            "irr: input".into(),
            json!({"Type": "Choice", "Choices": first_checks, "Default": "irr: own"}),
        );
        s.insert("irr: no inputs".into(), {
            let mut p = set_const("$.inputs", json!({}));
            p["Next"] = json!("irr: own");
            p
        });
        s.insert(
            "irr: own".into(),
            json!({"Type": "Pass", "Parameters": {
            "account.$": "States.ArrayGetItem(States.StringSplit($$.StateMachine.Id, ':'), 4)",
        }, "ResultPath": "$.own", "Next": "irr: target"}),
        );
        let role = pb
            .targets
            .as_ref()
            .map_or("irr-responder", |t| t.role.as_str());
        s.insert(
            "irr: target".into(),
            json!({"Type": "Choice", "Choices": [
            {"Not": present("$.target"), "Next": "irr: own account"},
        ], "Default": "irr: target given"}),
        );
        s.insert("irr: target given".into(), json!({"Type": "Choice", "Choices": [
            {"Not": present("$.target.account"), "Next": invalid},
            {"Not": {"Variable": "$.target.account", "IsString": true}, "Next": invalid},
            // The machine's own account (a finding of the security account itself).
            {"Variable": "$.target.account", "StringEqualsPath": "$.own.account", "Next": "irr: own account"},
            {"Variable": "$.target.role_arn", "IsPresent": true, "Next": "irr: state"},
        ], "Default": "irr: target role"}));
        s.insert("irr: target role".into(), json!({"Type": "Pass", "Parameters": {
            "account.$": "$.target.account",
            "role_arn.$": format!("States.Format('arn:aws:iam::{{}}:role/{role}', $.target.account)"),
        }, "ResultPath": "$.target", "Next": "irr: state"}));
        s.insert(
            "irr: own account".into(),
            json!({"Type": "Pass", "Parameters": {
            "account.$": "$.own.account",
            "role_arn": "${TargetRoleArn}",
        }, "ResultPath": "$.target", "Next": "irr: state"}),
        );
        let steps: Map<String, Value> = pb
            .all_steps()
            .map(|st| (st.id.clone(), json!({"status": "pending"})))
            .collect();
        let attempts: Map<String, Value> = pb
            .all_steps()
            .map(|st| (st.id.clone(), json!({"n": 0})))
            .collect();
        s.insert(
            "irr: state".into(),
            json!({"Type": "Pass", "Parameters": {
            "case_id.$": "$.case_id",
            "target.$": "$.target",
            "aws": {
                "account_id.$": "$.target.account",
                "region.$": "States.ArrayGetItem(States.StringSplit($$.StateMachine.Id, ':'), 3)",
            },
            "evidence": {"bucket": "${EvidenceBucket}", "prefix": "${EvidencePrefix}"},
            "given.$": "$.inputs",
            "aborted": false,
            "steps": steps,
            "attempts": attempts,
        }, "Next": "irr: defaults"}),
        );
        self.inputs_states(&mut s, invalid, first);
        s
    }

    /// The inputs' states: defaults (templates over everything but the other inputs)
    /// computed, merged under the given values, then every required input present and of its
    /// kind, else `invalid`; then `first`.
    fn inputs_states(&mut self, s: &mut Map<String, Value>, invalid: &str, first: &str) {
        let pb = self.pb;
        let mut defaults = Map::new();
        let dscope = Scope {
            fixed: self.scope.fixed.clone(),
            ..Scope::default()
        };
        let mut checks = Vec::new();
        for i in &pb.inputs {
            if self.scope.fixed.contains_key(&i.name) {
                continue;
            }
            let path = format!("$.inputs['{}']", i.name);
            match &i.default {
                Some(d) => {
                    let reads_inputs = crate::template::strings_in(d)
                        .iter()
                        .any(|t| t.contains("inputs."));
                    match expr::value(d, &dscope) {
                        Ok(e) if !reads_inputs => e.put(&mut defaults, &i.name),
                        Ok(_) => self.problems.push(Diagnostic::error(i.span.clone(), format!("input \"{}\": a default that reads another input is not translated", i.name))),
                        Err(m) => self.problems.push(Diagnostic::error(i.span.clone(), format!("input \"{}\": its default has no translation: {m}", i.name))),
                    }
                }
                None => checks.push(json!({"Not": present(&path), "Next": invalid})),
            }
            if let Some(test) = type_test(&i.ty) {
                checks.push(json!({"And": [present(&path), {"Not": {"Variable": path, test: true}}], "Next": invalid}));
            }
        }
        s.insert("irr: defaults".into(), json!({"Type": "Pass", "Parameters": defaults, "ResultPath": "$.defaults", "Next": "irr: inputs"}));
        let mut merge = rebuild("$.steps", "irr: required inputs");
        merge["Parameters"]["inputs.$"] = json!("States.JsonMerge($.defaults, $.given, false)");
        s.insert("irr: inputs".into(), merge);
        if checks.is_empty() {
            s.insert(
                "irr: required inputs".into(),
                json!({"Type": "Pass", "Next": first}),
            );
        } else {
            s.insert(
                "irr: required inputs".into(),
                json!({"Type": "Choice", "Choices": checks, "Default": first}),
            );
        }
        let required: Vec<&str> = pb
            .inputs
            .iter()
            .filter(|i| i.default.is_none() && !self.scope.fixed.contains_key(&i.name))
            .map(|i| i.name.as_str())
            .collect();
        s.insert(invalid.into(), json!({"Type": "Fail", "Error": "irr.InvalidInput", "Cause": format!(
            "the execution input must be {{\"case_id\": \"...\", \"inputs\": {{...}}, \"target\"?: {{\"account\": \"...\", \"role_arn\"?: \"...\"}}}} with every required input ({}) of its declared type",
            if required.is_empty() { "none".to_owned() } else { required.join(", ") }
        )}));
    }

    /// The states of `steps` in layers; returns the first state's name (`next` if there is
    /// no step). `main`: a failed step aborts to `finally` (unless `on_failure: continue`).
    fn section(&mut self, steps: &[Step], next: &str, main: bool) -> String {
        let layers = layers(steps);
        let mut next = next.to_owned();
        for (n, layer) in layers.iter().enumerate().rev() {
            next = self.layer(layer, n, &next, main);
        }
        next
    }

    fn layer(&mut self, layer: &[&Step], n: usize, next: &str, main: bool) -> String {
        let aborts = |s: &Step| main && s.on_failure == OnFailure::Abort;
        if let [step] = layer {
            let on_abort = aborts(step).then_some("irr: aborted");
            let mut seq = Seq::default();
            let entry = self.block(step, next, on_abort, &mut seq);
            self.states.append(&mut seq.finish().states);
            return entry;
        }
        let name = format!("irr: steps {}", n + 1);
        let merged = format!("irr: steps {} merged", n + 1);
        let checked = format!("irr: steps {} outcome", n + 1);
        let mut branches = Vec::new();
        let mut merge = "$.steps".to_owned();
        for (i, step) in layer.iter().enumerate() {
            let mut seq = Seq::default();
            let result = format!("{}: result", step.id);
            self.block(step, &result, None, &mut seq);
            seq.push(result, json!({"Type": "Pass", "Parameters": {format!("{}.$", step.id): expr::step_path(&step.id)}, "End": true}));
            branches.push(seq.finish().to_json());
            merge = format!("States.JsonMerge({merge}, $.layer[{i}], false)");
        }
        let abort_rules: Vec<Value> = layer
            .iter()
            .filter(|s| aborts(s))
            .map(|s| json!({"Variable": format!("{}.status", expr::step_path(&s.id)), "StringEquals": "failed", "Next": "irr: aborted"}))
            .collect();
        let after = if abort_rules.is_empty() {
            next.to_owned()
        } else {
            checked.clone()
        };
        self.states.insert(name.clone(), json!({"Type": "Parallel", "Branches": branches, "ResultPath": "$.layer", "Next": merged}));
        self.states.insert(merged, rebuild(&merge, &after));
        if !abort_rules.is_empty() {
            self.states.insert(
                checked,
                json!({"Type": "Choice", "Choices": abort_rules, "Default": next}),
            );
        }
        name
    }

    /// One step's states: the check (needs succeeded, `when`), the step's `Parallel`, its
    /// failure and its skip. Returns its first state.
    fn block(&mut self, step: &Step, next: &str, on_abort: Option<&str>, seq: &mut Seq) -> String {
        let id = step.id.as_str();
        let me = expr::step_path(id);
        let skipped = format!("{id}: skipped");
        let failed = format!("{id}: failed");
        let mut rules: Vec<Value> = step
            .needs
            .iter()
            .map(|n| json!({"Not": {"Variable": format!("{}.status", expr::step_path(n)), "StringEquals": "succeeded"}, "Next": skipped}))
            .collect();
        let mut never = false;
        if let Some(w) = &step.when {
            match expr::when(w, &self.scope) {
                Ok(When::Always) => {}
                Ok(When::Never) => never = true,
                Ok(When::Rule(r)) => rules.push(json!({"Not": r, "Next": skipped})),
                Err(m) => self.refuse(step, &["when"], format!("when: {m}")),
            }
        }
        let retry = format!("{id}: attempt failed");
        let catch_to = if step.retries > 0 && step.for_each.is_none() {
            retry.clone()
        } else {
            failed.clone()
        };
        let wrapper = self.wrapper(step, &catch_to, next);
        let entry = if never {
            skipped.clone()
        } else if rules.is_empty() {
            id.to_owned()
        } else {
            let check = format!("{id}: run?");
            seq.push(
                check.clone(),
                json!({"Type": "Choice", "Choices": rules, "Default": id}),
            );
            check
        };
        seq.push(id, wrapper);
        if catch_to == retry {
            // The step's retries: another attempt, its count in the state (each attempt's
            // evidence has a folder of its own), after a pause.
            let counter = format!("$.attempts['{id}']");
            let again = format!("{id}: next attempt");
            seq.push(
                retry,
                choice(
                    json!({"Variable": format!("{counter}.n"), "NumericLessThan": step.retries}),
                    &again,
                    &failed,
                ),
            );
            seq.push(again, json!({"Type": "Pass", "Parameters": {"n.$": format!("States.MathAdd({counter}.n, 1)")}, "ResultPath": counter}));
            seq.push(
                format!("{id}: pause before the next attempt"),
                json!({"Type": "Wait", "Seconds": RETRY_PAUSE_SECONDS, "Next": id}),
            );
        }
        if never || !rules.is_empty() {
            seq.push(skipped, {
                let mut p = set_const(&me, json!({"status": "skipped"}));
                p["Next"] = json!(next);
                p
            });
        }
        seq.push(
            failed,
            json!({"Type": "Pass", "Parameters": {
            "status": "failed",
            "error.$": format!("{me}.Error"),
            "cause.$": format!("{me}.Cause"),
        }, "ResultPath": me, "Next": on_abort.unwrap_or(next)}),
        );
        entry
    }

    /// The step's `Parallel`: its action (per item for `for_each`), retried as the step is,
    /// its failure caught.
    fn wrapper(&mut self, step: &Step, failed: &str, next: &str) -> Value {
        let id = step.id.as_str();
        let me = expr::step_path(id);
        let calls = Calls {
            timeout: step.timeout.map(|d| d.as_secs().max(1)),
            retention: Retention::of(&self.pb.evidence),
        };
        let mut scope = self.scope.clone();
        scope.in_map = step.for_each.is_some();
        let p = Params::new(step, scope);
        let translated = match translate(step, &p, &calls) {
            Ok(t) => t,
            Err(r) => {
                let keys: Vec<&str> = match &r.param {
                    Some(k) => vec!["with", k.as_str()],
                    None => vec!["action"],
                };
                self.refuse(step, &keys, r.message);
                Translated {
                    branch: Seq::default().finish(),
                    outputs: vec![],
                }
            }
        };
        let branch = match &step.for_each {
            // Its outputs were registered before (`held_outputs`).
            None => translated.branch.to_json(),
            Some(list) => self.items(step, list, translated),
        };
        json!({
            "Type": "Parallel",
            "Branches": [branch],
            "ResultSelector": {"status": "succeeded", "outputs.$": "$[0]"},
            "ResultPath": me,
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": me, "Next": failed}],
            "Next": next,
        })
    }

    /// A `for_each` step's branch: a `Map` over the list, each item its own attempts. An
    /// item never fails its iteration (that would stop the others, perhaps half-way through
    /// their changes): it ends `failed`, and the step fails after the `Map` if any did.
    /// Outputs of a `for_each` step are not held (they are lists in item order in the CLI).
    fn items(&mut self, step: &Step, list: &Value, t: Translated) -> Value {
        let id = step.id.as_str();
        let n = |s: &str| format!("{id}: {s}");
        let mut seq = Seq::default();
        seq.push(n("items start"), set_const("$.r", json!({})));
        let items_path = match expr::value(list, &self.scope) {
            Ok(Expr::Path(p)) => p,
            Ok(Expr::Lit(v @ Value::Array(_))) => {
                seq.push(n("list"), set_const("$.r.list", v));
                "$.r.list".to_owned()
            }
            Ok(_) => {
                self.refuse(
                    step,
                    &["for_each"],
                    "for_each must be a list or one reference to a list".into(),
                );
                "$.r.list".to_owned()
            }
            Err(m) => {
                self.refuse(step, &["for_each"], format!("for_each: {m}"));
                "$.r.list".to_owned()
            }
        };
        // Inline up to 40 items known when compiling; a run-time list may be longer than an
        // inline Map's history allows, so it runs as child executions. Their results are
        // collected into the state (256 KiB at most), so each keeps only its status: an
        // item's outputs, error and cause stay in its child execution's history, which the
        // seal reads.
        let distributed = list.as_array().map(Vec::len).is_none_or(|k| k > 40);
        let (done, failed) = if distributed {
            (json!({"status": "succeeded"}), json!({"status": "failed"}))
        } else {
            (
                json!({"status": "succeeded", "outputs.$": "$[0]"}),
                json!({"status": "failed", "error.$": "$.error.Error", "cause.$": "$.error.Cause"}),
            )
        };
        let mut item = Seq::default();
        item.push(n("item"), json!({
            "Type": "Parallel",
            "Branches": [t.branch.to_json()],
            "ResultSelector": done,
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": n("item attempt failed")}],
            "End": true,
        }));
        item.push(
            n("item attempt failed"),
            choice(
                json!({"Variable": "$.attempt.n", "NumericLessThan": step.retries}),
                &n("item next attempt"),
                &n("item failed"),
            ),
        );
        item.push(n("item next attempt"), json!({"Type": "Pass", "Parameters": {"n.$": "States.MathAdd($.attempt.n, 1)"}, "ResultPath": "$.attempt"}));
        item.push(
            n("item pause"),
            json!({"Type": "Wait", "Seconds": RETRY_PAUSE_SECONDS, "Next": n("item")}),
        );
        item.push(
            n("item failed"),
            json!({"Type": "Pass", "Parameters": failed, "End": true}),
        );
        let mut processor = item.finish().to_json();
        processor["ProcessorConfig"] = if distributed {
            json!({"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"})
        } else {
            json!({"Mode": "INLINE"})
        };
        let mut selector = asl::carry(&[
            ("item", "$$.Map.Item.Value"),
            ("item_index", "$$.Map.Item.Index"),
        ]);
        selector["attempt"] = json!({"n": 0});
        seq.push(
            n("items"),
            json!({
                "Type": "Map",
                "ItemsPath": items_path,
                "MaxConcurrency": MAP_CONCURRENCY,
                "ItemSelector": selector,
                "ItemProcessor": processor,
                "ResultPath": "$.r.items",
            }),
        );
        seq.push(
            n("item statuses"),
            asl::pluck(&n("item status"), "$.r.items", "status", "$.r.statuses"),
        );
        seq.push(n("any item failed"), json!({"Type": "Pass", "Parameters": {"v.$": "States.ArrayContains($.r.statuses, 'failed')"}, "ResultPath": "$.r.any_failed"}));
        let failed = n("an item failed");
        let done = n("items done");
        seq.push(
            n("items outcome"),
            choice(
                json!({"Variable": "$.r.any_failed.v", "BooleanEquals": true}),
                &failed,
                &done,
            ),
        );
        seq.push(failed, json!({"Type": "Fail", "Error": "irr.ItemFailed", "Cause": "a for_each item failed: each item's status and error are in this step's Map iterations"}));
        seq.push(
            done,
            json!({"Type": "Pass", "Parameters": {"items.$": "$.r.items"}, "End": true}),
        );
        seq.finish().to_json()
    }
}

/// The Choice test that an input of this type passes, where there is one.
fn type_test(ty: &ValueType) -> Option<&'static str> {
    match ty {
        ValueType::Integer => Some("IsNumeric"),
        ValueType::Boolean => Some("IsBoolean"),
        ValueType::List(_) | ValueType::Map(_) => None,
        _ => Some("IsString"),
    }
}

/// `irr compile FILE --target step-functions --out DIR [--input k=v]...`: validates, compiles,
/// writes `DIR/state-machine.asl.json` and `DIR/stack.yaml`. Refusals are diagnostics (exit 2).
pub fn write(
    out: &std::path::Path,
    compiled: &Compiled,
) -> std::io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(out)?;
    let asl_path = out.join("state-machine.asl.json");
    let stack_path = out.join("stack.yaml");
    let mut text = serde_json::to_string_pretty(&compiled.definition)?;
    text.push('\n');
    std::fs::write(&asl_path, text)?;
    std::fs::write(&stack_path, &compiled.stack)?;
    Ok(vec![asl_path, stack_path])
}

#[cfg(test)]
mod tests;
