//! A run's input values: from an inputs file, `--input` pairs, the environment (secrets) and
//! defaults, each checked against the playbook's declaration.

use super::*;

/// Checks a value given for an input (from `--input` or an inputs file) against the input's
/// declaration: parses it by type and checks it.
pub fn parse_input_value(decl: &InputDecl, raw: &str) -> Result<Value, String> {
    parse_value(&decl.ty, raw)
}

/// Parses a value given as text (`--input`, an inputs file, a finding's field) by type
/// `ty` and checks it: integers and booleans from their text, a list from JSON or
/// comma-separated values.
pub fn parse_value(ty: &ValueType, raw: &str) -> Result<Value, String> {
    let v = match ty {
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
    ty.check(&v)?;
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
    let none = Given::default();
    resolve_inputs_given(playbook, pairs, inputs_file, &none, require_all, env)
}

/// Values that came from elsewhere (a finding, through the playbook's `trigger:`), checked
/// already, and what to say of one given again (e.g. `mapped from the finding by
/// trigger.inputs.instance_id ($.Resource.InstanceDetails.InstanceId)`).
pub type Given = Vec<(String, Value, String)>;

/// [`resolve_inputs_from`], with `given` values set first: an input among them that the
/// inputs file or an `--input` pair names again is an error (one value, from one place).
pub fn resolve_inputs_given(
    playbook: &Playbook,
    pairs: &[String],
    inputs_file: Option<&Source>,
    given: &Given,
    require_all: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ResolvedInputs, Vec<Diagnostic>> {
    let mut problems = Vec::new();
    let mut values = serde_json::Map::new();
    if let Some(src) = inputs_file {
        from_inputs_file(playbook, src, &mut values, &mut problems);
    }
    from_pairs(playbook, pairs, &mut values, &mut problems);
    for (name, value, whence) in given {
        if values.remove(name).is_some() {
            problems.push(
                Diagnostic::error(
                    Span::none(format!("--input {name}")),
                    format!("input \"{name}\": given on the command line, but it is {whence}"),
                )
                .with_help(format!(
                    "drop --input {name} (and its line in --inputs), or run without --finding"
                )),
            );
        }
        values.insert(name.clone(), value.clone());
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
    let defaulted = defaults(playbook, require_all, &mut values, &mut problems);
    if problems.is_empty() {
        Ok(ResolvedInputs { values, defaulted })
    } else {
        Err(problems)
    }
}

/// A name that is not one of the playbook's inputs.
fn unknown(playbook: &Playbook, name: &str, span: Span) -> Diagnostic {
    let names: Vec<&str> = playbook.inputs.iter().map(|i| i.name.as_str()).collect();
    let help = match did_you_mean(name, names.iter().copied()) {
        Some(b) => format!("did you mean \"{b}\"?"),
        None if names.is_empty() => "the playbook declares no inputs".to_owned(),
        None => format!("the playbook's inputs: {}", names.join(", ")),
    };
    Diagnostic::error(span, format!("unknown input \"{name}\"")).with_help(help)
}

/// A value that does not fit its input. A secret's value is never echoed: the problem names
/// the input and its type only.
fn unfit(decl: &InputDecl, span: Span, e: String) -> Diagnostic {
    let msg = if decl.secret {
        format!(
            "input \"{}\": the value given is not {} (secret: the value is not shown)",
            decl.name, decl.ty
        )
    } else {
        format!("input \"{}\": {e}", decl.name)
    };
    Diagnostic::error(span, msg).with_help(format!("\"{}\" is {}", decl.name, decl.ty))
}

/// The values of an inputs file (a YAML mapping of input names to values).
fn from_inputs_file(
    playbook: &Playbook,
    src: &Source,
    values: &mut serde_json::Map<String, Value>,
    problems: &mut Vec<Diagnostic>,
) {
    let root = match load::parse(src) {
        Err(d) => return problems.extend(d),
        Ok(root) => root,
    };
    let entries = match root.as_map() {
        None if matches!(root.kind, NodeKind::Null) => return,
        None => {
            return problems.push(Diagnostic::error(
                root.span.clone(),
                "an inputs file must be a mapping of input names to values",
            ))
        }
        Some(entries) => entries,
    };
    for (k, v) in entries {
        let name = k.scalar_text().unwrap_or_default();
        let Some(decl) = playbook.input(&name) else {
            problems.push(unknown(playbook, &name, k.span.clone()));
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

/// The `--input name=value` pairs (which win over the inputs file).
fn from_pairs(
    playbook: &Playbook,
    pairs: &[String],
    values: &mut serde_json::Map<String, Value>,
    problems: &mut Vec<Diagnostic>,
) {
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
                playbook,
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
}

/// Defaults for the inputs not given (nor already reported); with `require_all`, a required
/// input not given is a problem. Returns the names of the defaulted inputs.
fn defaults(
    playbook: &Playbook,
    require_all: bool,
    values: &mut serde_json::Map<String, Value>,
    problems: &mut Vec<Diagnostic>,
) -> Vec<String> {
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
    defaulted
}
