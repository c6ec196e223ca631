//! Stage 3: a validated playbook and its inputs -> the [`Plan`]: steps in execution order
//! with their concurrency groups, parameters rendered from the inputs, the AWS API calls each
//! step will make and the IAM actions it needs. Planning changes nothing and calls nothing.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{json, Value};

use crate::catalog::ActionSpec;
use crate::model::{OnFailure, Playbook, Step};
use crate::secrets::Secrets;
use crate::template;

/// What the plan knows of the run it is for.
#[derive(Clone, Debug, Default)]
pub struct PlanContext {
    /// `--case`, if given.
    pub case_id: Option<String>,
    /// The run id, if one is being planned for a run.
    pub run_id: Option<String>,
    /// When the run started (RFC 3339).
    pub started_at: Option<String>,
    /// `--region` (or the profile's).
    pub region: Option<String>,
    /// The account, when known.
    pub account_id: Option<String>,
    /// The inputs that took their default (from
    /// [`crate::validate::ResolvedInputs::defaulted`]): only those are rendered as templates.
    /// `None`: a value equal to the declared default is rendered.
    pub defaulted_inputs: Option<Vec<String>>,
}

/// The plan of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// `metadata.name`.
    pub playbook: String,
    /// `metadata.version`.
    pub version: String,
    /// SHA-256 of the playbook file.
    pub playbook_sha256: String,
    /// Resolved inputs.
    pub inputs: serde_json::Map<String, Value>,
    /// Concurrency groups of `steps`: the steps of a group may run at the same time once
    /// every earlier group they need has finished.
    pub groups: Vec<Vec<String>>,
    /// `steps` in execution order.
    pub steps: Vec<PlannedStep>,
    /// `finally` in execution order.
    pub finally: Vec<PlannedStep>,
    /// The evidence location with inputs rendered, if the playbook sets one.
    pub evidence_location: Option<String>,
    /// The playbook's `evidence.signing_key` (a KMS key ARN or a PEM file path), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<String>,
    /// The template context known before the run (inputs, case, run, playbook, aws).
    #[serde(skip)]
    pub context: Value,
    /// The playbook's `targets:` (the role assumed in each account), if it fans out.
    #[serde(skip)]
    pub targets: Option<crate::targets::TargetsDecl>,
}

/// One step of the plan.
#[derive(Clone, Debug, Serialize)]
pub struct PlannedStep {
    /// Step id.
    pub id: String,
    /// Action name.
    pub action: String,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// 1-based concurrency group.
    pub group: usize,
    /// Steps that must succeed first (explicit and implied by references).
    pub needs: Vec<String>,
    /// Parameters, rendered where the inputs tell; `{{steps...}}` where only the run will.
    pub params: Value,
    /// The `when` condition (rendered where known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<Value>,
    /// The `for_each` list (rendered where known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub for_each: Option<Value>,
    /// How many items `for_each` has, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<usize>,
    /// AWS API operations the step calls.
    pub api_calls: Vec<String>,
    /// IAM actions the step needs.
    pub iam_actions: Vec<String>,
    /// Whether the step changes anything.
    pub mutating: bool,
    /// Timeout per attempt, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    /// Re-tries.
    pub retries: u32,
    /// abort or continue.
    pub on_failure: OnFailure,
    /// How the action is undone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undo: Option<String>,
    /// The catalog entry.
    #[serde(skip)]
    pub spec: Option<&'static ActionSpec>,
}

/// The template context known before a run starts.
pub fn base_context(
    playbook: &Playbook,
    inputs: &serde_json::Map<String, Value>,
    ctx: &PlanContext,
) -> Value {
    let mut root = json!({
        "playbook": {"name": playbook.metadata.name, "version": playbook.metadata.version},
    });
    let obj = root.as_object_mut().expect("object");
    if let Some(c) = &ctx.case_id {
        obj.insert("case".into(), json!({ "id": c }));
    }
    let mut run = serde_json::Map::new();
    if let Some(r) = &ctx.run_id {
        run.insert("id".into(), json!(r));
    }
    if let Some(t) = &ctx.started_at {
        run.insert("started_at".into(), json!(t));
    }
    if !run.is_empty() {
        obj.insert("run".into(), Value::Object(run));
    }
    let mut aws = serde_json::Map::new();
    if let Some(r) = &ctx.region {
        aws.insert("region".into(), json!(r));
    }
    if let Some(a) = &ctx.account_id {
        aws.insert("account_id".into(), json!(a));
    }
    if !aws.is_empty() {
        obj.insert("aws".into(), Value::Object(aws));
    }
    // Input defaults may use case/run/playbook/aws; render them against what is known.
    let rendered: serde_json::Map<String, Value> = inputs
        .iter()
        .map(|(k, v)| {
            let v = if playbook.renders_input(k, v, ctx.defaulted_inputs.as_deref()) {
                template::render_partial(v, &root)
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect();
    root["inputs"] = Value::Object(rendered);
    root
}

/// Orders `steps` into concurrency groups: a step's group is one more than the highest group
/// of the steps it needs. Within a group, file order.
pub fn groups(steps: &[Step]) -> Vec<Vec<String>> {
    let index: HashMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let mut level: Vec<Option<usize>> = vec![None; steps.len()];
    fn level_of(
        i: usize,
        steps: &[Step],
        index: &HashMap<&str, usize>,
        level: &mut [Option<usize>],
        depth: usize,
    ) -> usize {
        if let Some(l) = level[i] {
            return l;
        }
        // A validated playbook has no cycle; the depth bound only guards against misuse.
        let l = if depth > steps.len() {
            0
        } else {
            steps[i]
                .needs
                .iter()
                .chain(&steps[i].after)
                .filter_map(|d| index.get(d.as_str()))
                .map(|&j| level_of(j, steps, index, level, depth + 1) + 1)
                .max()
                .unwrap_or(0)
        };
        level[i] = Some(l);
        l
    }
    let mut out: Vec<Vec<String>> = Vec::new();
    for i in 0..steps.len() {
        let l = level_of(i, steps, &index, &mut level, 0);
        if out.len() <= l {
            out.resize(l + 1, Vec::new());
        }
        out[l].push(steps[i].id.clone());
    }
    out
}

/// Builds the plan. `inputs` must come from [`crate::validate::resolve_inputs`].
pub fn plan(
    playbook: &Playbook,
    inputs: serde_json::Map<String, Value>,
    ctx: &PlanContext,
) -> Plan {
    let context = base_context(playbook, &inputs, ctx);
    let evidence_location = playbook.evidence.location.as_ref().map(|l| {
        match template::render_partial(&Value::String(l.clone()), &context) {
            Value::String(s) => s,
            other => other.to_string(),
        }
    });
    // The same rule as the policy's (`crate::policy`): permissions on S3 evidence only with it.
    let s3_evidence = evidence_location
        .as_deref()
        .and_then(crate::policy::s3_location)
        .is_some();
    let step_groups = groups(&playbook.steps);
    let finally_groups = groups(&playbook.finally);
    let planned = |steps: &[Step], groups: &[Vec<String>]| -> Vec<PlannedStep> {
        // By id, not a search per step: plans of thousands of steps stay linear.
        let by_id: HashMap<&str, &Step> = steps.iter().map(|s| (s.id.as_str(), s)).collect();
        groups
            .iter()
            .enumerate()
            .flat_map(|(g, ids)| ids.iter().map(move |id| (g + 1, id)))
            .filter_map(|(g, id)| {
                by_id
                    .get(id.as_str())
                    .map(|s| planned_step(s, g, &context, s3_evidence))
            })
            .collect()
    };
    let steps = planned(&playbook.steps, &step_groups);
    let finally = planned(&playbook.finally, &finally_groups);
    Plan {
        playbook: playbook.metadata.name.clone(),
        version: playbook.metadata.version.clone(),
        playbook_sha256: playbook.sha256.clone(),
        inputs: context["inputs"].as_object().cloned().unwrap_or_default(),
        groups: step_groups,
        steps,
        finally,
        evidence_location,
        signing_key: playbook.evidence.signing_key.clone(),
        context,
        targets: playbook.targets.clone(),
    }
}

fn planned_step(step: &Step, group: usize, ctx: &Value, s3_evidence: bool) -> PlannedStep {
    let spec = step.action;
    let mut params = serde_json::Map::new();
    for p in spec.params {
        match step.with.get(p.name) {
            Some(v) => {
                params.insert(p.name.to_owned(), template::render_partial(v, ctx));
            }
            None => {
                if let Some(d) = p.default {
                    params.insert(
                        p.name.to_owned(),
                        template::render_partial(&default_value(d), ctx),
                    );
                }
            }
        }
    }
    let for_each = step
        .for_each
        .as_ref()
        .map(|f| template::render_partial(f, ctx));
    let items = for_each.as_ref().and_then(|f| f.as_array().map(Vec::len));
    let mut iam: Vec<String> = spec
        .permissions
        .iter()
        .filter(|p| p.when_param.is_none_or(|w| step.with.contains_key(w)))
        .filter(|p| s3_evidence || !p.on_evidence())
        .map(|p| p.action.to_owned())
        .collect();
    iam.sort();
    iam.dedup();
    PlannedStep {
        id: step.id.clone(),
        action: spec.name.to_owned(),
        description: step.description.clone(),
        group,
        needs: step.needs.clone(),
        params: Value::Object(params),
        when: step.when.as_ref().map(|w| template::render_partial(w, ctx)),
        for_each,
        items,
        api_calls: spec.api_calls.iter().map(|s| (*s).to_owned()).collect(),
        iam_actions: iam,
        mutating: spec.mutating,
        timeout_secs: step.timeout.map(|t| t.as_secs()),
        retries: step.retries,
        on_failure: step.on_failure,
        undo: spec.undo.map(str::to_owned),
        spec: Some(spec),
    }
}

/// The values a plan's output must not show: the secret inputs, and what the
/// `cloudformation.deploy_stack` steps would pass for `NoEcho` parameters (as far as the
/// template renders before the run). `playbook_dir` is where the templates are.
pub fn secrets(playbook: &Playbook, plan: &Plan, playbook_dir: &std::path::Path) -> Secrets {
    let s = Secrets::for_inputs(playbook, &plan.inputs);
    let known = |k: &str| {
        plan.context
            .get(k)
            .and_then(|c| c.get("id"))
            .and_then(Value::as_str)
            .unwrap_or("<unknown>")
            .to_owned()
    };
    for step in plan
        .steps
        .iter()
        .chain(&plan.finally)
        .filter(|s| s.action == "cloudformation.deploy_stack")
    {
        for v in crate::actions::cloudformation::planned_no_echo_values(
            playbook_dir,
            &step.params,
            &known("case"),
            &known("run"),
        ) {
            s.add_value(&v);
        }
    }
    s
}

/// A catalog default (YAML text) as a value: `true` -> boolean, digits -> number, else string.
pub fn default_value(text: &str) -> Value {
    match text {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        t => t
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(t.to_owned())),
    }
}

impl Plan {
    /// The plan as text for a terminal.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let mutating = self
            .steps
            .iter()
            .chain(&self.finally)
            .filter(|s| s.mutating)
            .count();
        let _ = writeln!(
            out,
            "Plan: {} {} — {} steps in {} groups, {} finally; {} change AWS",
            self.playbook,
            self.version,
            self.steps.len(),
            self.groups.len(),
            self.finally.len(),
            mutating
        );
        if !self.inputs.is_empty() {
            let _ = writeln!(out, "\nInputs:");
            for (k, v) in &self.inputs {
                let _ = writeln!(out, "  {k} = {}", compact(v));
            }
        }
        if let Some(loc) = &self.evidence_location {
            let _ = writeln!(out, "\nEvidence: {loc}");
        }
        let section = |title: &str, steps: &[PlannedStep], out: &mut String| {
            let mut last_group = 0;
            for s in steps {
                if s.group != last_group {
                    last_group = s.group;
                    let n = steps.iter().filter(|x| x.group == s.group).count();
                    let conc = if n > 1 {
                        format!(" ({n} steps at once)")
                    } else {
                        String::new()
                    };
                    let _ = writeln!(out, "\n{title} group {}{conc}", s.group);
                }
                let tag = if s.mutating {
                    "changes AWS"
                } else {
                    "read-only"
                };
                let _ = writeln!(out, "  {} [{}] {tag}", s.id, s.action);
                if let Some(d) = &s.description {
                    let _ = writeln!(out, "      {d}");
                }
                if !s.needs.is_empty() {
                    let _ = writeln!(out, "      needs: {}", s.needs.join(", "));
                }
                if let Some(w) = &s.when {
                    let _ = writeln!(out, "      when: {}", compact(w));
                }
                if let Some(f) = &s.for_each {
                    let n = s.items.map(|n| format!(" ({n} items)")).unwrap_or_default();
                    let _ = writeln!(out, "      for each{n}: {}", compact(f));
                }
                if let Value::Object(params) = &s.params {
                    for (k, v) in params {
                        let _ = writeln!(out, "      {k}: {}", compact(v));
                    }
                }
                if !s.api_calls.is_empty() {
                    let _ = writeln!(out, "      API calls: {}", s.api_calls.join(", "));
                }
                if !s.iam_actions.is_empty() {
                    let _ = writeln!(out, "      IAM: {}", s.iam_actions.join(", "));
                }
                if let Some(u) = &s.undo {
                    let _ = writeln!(out, "      undo: {u}");
                }
            }
        };
        section("Steps", &self.steps, &mut out);
        section("Finally", &self.finally, &mut out);
        out
    }
}

fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::Source;
    use crate::validate::validate;

    #[test]
    fn groups_follow_needs_and_renders_inputs() {
        let text = "apiVersion: irr/v1\nkind: Playbook\nmetadata: {name: t, version: 1.0.0}\ninputs:\n  instance_id: {type: instance_id}\nsteps:\n  - id: meta\n    action: ec2.capture_instance_metadata\n    with: {instance_id: \"{{inputs.instance_id}}\"}\n  - id: snap\n    action: ec2.snapshot_volumes\n    with: {instance_id: \"{{inputs.instance_id}}\"}\n  - id: tag\n    action: ec2.tag_resources\n    with: {resource_ids: \"{{steps.snap.outputs.snapshot_ids}}\", tags: {case: \"{{case.id}}\"}}\n";
        let pb = validate(&Source::new("t.yaml", text)).unwrap();
        let mut inputs = serde_json::Map::new();
        inputs.insert("instance_id".into(), json!("i-12345678"));
        let ctx = PlanContext {
            case_id: Some("IR-7".into()),
            ..Default::default()
        };
        let p = plan(&pb, inputs, &ctx);
        assert_eq!(
            p.groups,
            vec![
                vec!["meta".to_owned(), "snap".to_owned()],
                vec!["tag".to_owned()]
            ]
        );
        assert_eq!(p.steps[1].params["instance_id"], json!("i-12345678"));
        assert_eq!(
            p.steps[2].params["resource_ids"],
            json!("{{steps.snap.outputs.snapshot_ids}}")
        );
        assert_eq!(p.steps[2].params["tags"]["case"], json!("IR-7"));
        assert!(p.steps[1]
            .iam_actions
            .contains(&"ec2:CreateSnapshot".to_owned()));
        let text = p.render_text();
        assert!(text.contains("Steps group 1 (2 steps at once)"), "{text}");
    }

    #[test]
    fn a_status_reference_orders_without_needing_success() {
        let text = "apiVersion: irr/v1\nkind: Playbook\nmetadata: {name: t, version: 1.0.0}\nsteps:\n  - id: a\n    action: control.approve\n    with: {prompt: go}\n  - id: b\n    action: control.approve\n    when: \"{{eq steps.a.status \\\"failed\\\"}}\"\n    with: {prompt: fallback}\n";
        let pb = validate(&Source::new("t.yaml", text)).unwrap();
        assert!(pb.steps[1].needs.is_empty());
        assert_eq!(pb.steps[1].after, ["a"]);
        let p = plan(&pb, serde_json::Map::new(), &PlanContext::default());
        assert_eq!(p.groups, vec![vec!["a".to_owned()], vec!["b".to_owned()]]);
        let ctx = json!({"steps": {"a": {"status": "failed"}}});
        assert_eq!(
            template::render_str("{{eq steps.a.status \"failed\"}}", &ctx).unwrap(),
            json!("true")
        );
    }
}
