//! Templates in values: every `{{...}}` reference checked against what the place may refer
//! to (inputs, earlier steps' outputs, `item`), and parameter values against their types.

use super::*;

impl Validator<'_> {
    /// Checks a parameter value against its declared type: literals fully, single
    /// expressions by the referenced value's type, mixed text as a string.
    pub(super) fn param_type(&mut self, v: &Node, ty: &ValueType, what: &str, scope: &Scope<'_>) {
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
    pub(super) fn unquoted_template(&self, node: &Node) -> Option<String> {
        node.as_map()?;
        let rest = self.source.text().get(node.span.start..)?;
        if !rest.starts_with("{{") {
            return None;
        }
        let line = rest.lines().next().unwrap_or("");
        let end = line.find("}}").map_or(line.len(), |i| i + 2);
        Some(line[..end].to_owned())
    }

    pub(super) fn report_unquoted(&mut self, node: &Node, expr: &str) {
        let span = self.source.span_at(node.span.start, expr.len());
        self.help(
            &span,
            format!("the template {expr} must be quoted"),
            format!("write \"{expr}\": without quotes YAML reads {{ as the start of a mapping"),
        );
    }

    /// Checks every template string inside `node`; returns the references found.
    pub(super) fn templates_in(&mut self, node: &Node, scope: &Scope<'_>) -> Vec<Reference> {
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
    pub(super) fn inner_span(&self, node: &Node, value: &str, offset: usize, len: usize) -> Span {
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
    pub(super) fn reference(&mut self, r: &Reference, scope: &Scope<'_>, span: &Span) -> bool {
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

    pub(super) fn step_reference(
        &mut self,
        p: &[&str],
        text: &str,
        scope: &Scope<'_>,
        span: &Span,
    ) -> bool {
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
    pub(super) fn reference_type(&self, r: &Reference, scope: &Scope<'_>) -> Option<ValueType> {
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
}
