//! One step: its id and action, `needs`, `with` (parameters against the catalog), `when`,
//! `timeout`, `retries`, `on_failure`, `for_each`; and the dependency cycles among steps.

use super::*;

impl Validator<'_> {
    pub(super) fn step_list<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
        required: bool,
    ) -> Vec<&'n Node> {
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

    pub(super) fn step_id(&mut self, node: &Node) -> Option<(String, Span)> {
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

    pub(super) fn step_action(&mut self, node: &Node) -> Option<&'static ActionSpec> {
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
    pub(super) fn step(
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
        let mut needs = match node.get("needs") {
            Some(n) => self.step_needs(n, &id_text, is_finally, duplicate, infos),
            None => Vec::new(),
        };

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
        let mut deps = Deps::new(is_finally, infos);
        let with = self.step_with(node, action, &scope, &mut deps);
        // Missing parameters are not reported when `with` itself is what is wrong.
        let with_broken = node
            .get("with")
            .is_some_and(|w| w.as_map().is_none() && !matches!(w.kind, NodeKind::Null))
            || misspelled(node, "with", STEP_KEYS);
        if let (Some(action), false) = (action, with_broken) {
            self.required_params(node, action, &with, &misplaced, &id_text);
        }
        let when = node
            .get("when")
            .map(|n| self.step_when(n, &scope, &mut deps));
        let timeout = node.get("timeout").and_then(|n| self.step_timeout(n));
        let retries = node.get("retries").map_or(0, |n| self.step_retries(n));
        let on_failure = node
            .get("on_failure")
            .map_or(OnFailure::Abort, |n| self.step_on_failure(n));
        let for_each = for_each_node.map(|n| self.step_for_each(n, &scope, &mut deps));

        for dep in deps.implicit {
            if Some(dep.as_str()) != id.as_deref() && !needs.contains(&dep) {
                needs.push(dep);
            }
        }
        let after: Vec<String> = deps
            .after
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

    /// `needs:`: the step ids it names that exist, each once (a finally step's need of a
    /// step is dropped: finally steps always run after every step).
    fn step_needs(
        &mut self,
        n: &Node,
        id_text: &str,
        is_finally: bool,
        duplicate: bool,
        infos: &HashMap<String, StepInfo>,
    ) -> Vec<String> {
        let mut needs: Vec<String> = Vec::new();
        let Some(items) = n.as_seq() else {
            let t = n.scalar_text().unwrap_or_default();
            self.help(
                &n.span,
                format!("needs must be a list of step ids, found {}", n.type_name()),
                format!("write \"needs: [{t}]\""),
            );
            return needs;
        };
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
                None => self.unknown_need(item, dep, infos),
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
        needs
    }

    /// A need naming no step: perhaps an action's name where its step's id belongs.
    fn unknown_need(&mut self, item: &Node, dep: &str, infos: &HashMap<String, StepInfo>) {
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

    /// `with:`: every parameter's templates, name (against the action's) and type.
    fn step_with(
        &mut self,
        node: &Node,
        action: Option<&'static ActionSpec>,
        scope: &Scope<'_>,
        deps: &mut Deps<'_>,
    ) -> serde_json::Map<String, Value> {
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
        for (k, v) in entries {
            let pname = k.scalar_text().unwrap_or_default();
            let refs = self.templates_in(v, scope);
            deps.add(&refs);
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
                scope,
            );
            if action.name == "evidence.capture" && pname == "name" {
                if let Some(name) = v.as_str().filter(|s| !template::is_template(s)) {
                    if let Err((msg, help)) = check_capture_name(name) {
                        self.help(&v.span, msg, help);
                    }
                }
            }
        }
        with
    }

    /// The action's required parameters, its exactly-one-of and its at-least-one-of groups,
    /// against `with`.
    fn required_params(
        &mut self,
        node: &Node,
        action: &'static ActionSpec,
        with: &serde_json::Map<String, Value>,
        misplaced: &[&str],
        id_text: &str,
    ) {
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
        for group in action.at_least_one_of {
            // An empty mapping or nothing (`tags: {}`, `vpc_id:`) narrows nothing.
            let narrows = |v: &Value| match v {
                Value::Null => false,
                Value::Object(m) => !m.is_empty(),
                _ => true,
            };
            if !group
                .iter()
                .any(|g| with.get(*g).is_some_and(narrows) || misplaced.contains(g))
            {
                self.help(
                    &anchor,
                    format!(
                        "step \"{id_text}\": action {} needs at least one of {}; none was given, so it would match everything in the account",
                        action.name,
                        group.join(", ")
                    ),
                    format!("say what to find with one or more of: {}", group.join(", ")),
                );
            }
        }
    }

    /// `when:`: true, false or a template (not `item`: it is decided once for the step).
    fn step_when(&mut self, n: &Node, scope: &Scope<'_>, deps: &mut Deps<'_>) -> Value {
        match &n.kind {
            NodeKind::Bool(_) => {}
            NodeKind::Map(_) if self.unquoted_template(n).is_some() => {
                self.templates_in(n, scope);
            }
            NodeKind::Str(s) if template::is_template(s) => {
                let scope = Scope {
                    item: false,
                    ..scope.clone()
                };
                let refs = self.templates_in(n, &scope);
                deps.add(&refs);
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
    }

    /// `timeout:`: a duration with its unit.
    fn step_timeout(&mut self, n: &Node) -> Option<std::time::Duration> {
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
    }

    /// `retries:`: a whole number from 0 to [`MAX_RETRIES`].
    fn step_retries(&mut self, n: &Node) -> u32 {
        match n.kind {
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
        }
    }

    /// `on_failure:`: abort or continue.
    fn step_on_failure(&mut self, n: &Node) -> OnFailure {
        match n.as_str() {
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
        }
    }

    /// `for_each:`: a literal list, or one expression naming a list.
    fn step_for_each(&mut self, n: &Node, scope: &Scope<'_>, deps: &mut Deps<'_>) -> Value {
        let scope = Scope {
            item: false,
            ..scope.clone()
        };
        match &n.kind {
            NodeKind::Seq(_) => {
                let refs = self.templates_in(n, &scope);
                deps.add(&refs);
            }
            NodeKind::Str(s) if template::single_expression(s).is_some() => {
                let refs = self.templates_in(n, &scope);
                deps.add(&refs);
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
    }

    /// Reports each dependency cycle once, naming its steps.
    pub(super) fn cycles(&mut self, steps: &[Step], infos: &HashMap<String, StepInfo>) {
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

/// The steps a step's references make it wait for: `implicit` ones it needs (it reads their
/// outputs), `after` ones it only follows (it reads their status).
struct Deps<'a> {
    is_finally: bool,
    infos: &'a HashMap<String, StepInfo>,
    implicit: BTreeSet<String>,
    after: BTreeSet<String>,
}

impl<'a> Deps<'a> {
    fn new(is_finally: bool, infos: &'a HashMap<String, StepInfo>) -> Deps<'a> {
        Deps {
            is_finally,
            infos,
            implicit: BTreeSet::new(),
            after: BTreeSet::new(),
        }
    }

    fn add(&mut self, refs: &[Reference]) {
        self.implicit
            .extend(upstream_of(refs, self.is_finally, self.infos));
        self.after
            .extend(after_of(refs, self.is_finally, self.infos));
    }
}
