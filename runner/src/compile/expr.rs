//! Templates as Amazon States Language: JSONPath reference paths, `States.Format` and Choice
//! rules.
//!
//! A playbook's `{{...}}` expressions are Handlebars; a state machine has JSONPath and a few
//! intrinsic functions. Only what has an exact counterpart is translated:
//! - `{{path}}` alone keeps the value's type: a reference path (`"Key.$": "$.inputs.x"`);
//! - text with `{{path}}`s in it: `States.Format('text {}', path...)`;
//! - a `when` of `eq`/`ne`/`gt`/`gte`/`lt`/`lte` (a path against a literal), `not`, `and`,
//!   `or`, or a boolean path: a `Choice` rule.
//!
//! Anything else (`#if`, `#each`, `lookup`, `len`, a comparison of two paths...) is refused
//! with its reason: the compiler never approximates.

use serde_json::{json, Map, Value};

/// A value a state reads: known when compiling, or read from the state at run time.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// Known when compiling.
    Lit(Value),
    /// A reference path (`$.inputs.instance_id`, `$$.Execution.Name`).
    Path(String),
    /// An intrinsic function call (`States.Format(...)`).
    Call(String),
}

impl Expr {
    /// Sets `key` of a `Parameters`/`ResultSelector` object to this value (`key.$` for a path
    /// or a call).
    pub fn put(&self, obj: &mut Map<String, Value>, key: &str) {
        match self {
            Expr::Lit(v) => {
                obj.insert(key.to_owned(), v.clone());
            }
            Expr::Path(p) | Expr::Call(p) => {
                obj.insert(format!("{key}.$"), Value::String(p.clone()));
            }
        }
    }

    /// As an argument of an intrinsic function.
    pub fn arg(&self) -> String {
        match self {
            Expr::Lit(Value::String(s)) => quote(s),
            Expr::Lit(v) => v.to_string(),
            Expr::Path(p) | Expr::Call(p) => p.clone(),
        }
    }

    /// The literal string, if this is one.
    pub fn as_lit_str(&self) -> Option<&str> {
        match self {
            Expr::Lit(Value::String(s)) => Some(s),
            _ => None,
        }
    }
}

/// What names resolve to in the state (see `docs/step-functions.md`, "The state").
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// Inputs fixed when compiling (`--input`): their values are written into the definition.
    pub fixed: Map<String, Value>,
    /// Inside a `Map` over a `for_each` list: `item` and `item_index` are defined.
    pub in_map: bool,
    /// Steps whose outputs the compiled machine holds, each with the output names it holds
    /// exactly as the CLI's (other outputs are refused when referenced).
    pub outputs: std::collections::BTreeMap<String, Vec<&'static str>>,
    /// The playbook's directory (templates are read relative to it).
    pub dir: Option<std::path::PathBuf>,
}

/// JSONPath of a step's entry in the state (`$.steps['ID']`).
pub fn step_path(id: &str) -> String {
    format!("$.steps['{id}']")
}

/// The path of a reference (`inputs.x`, `steps.S.outputs.O`, `case.id`, ...), or why it has
/// no translation.
pub fn reference(path: &[String], scope: &Scope) -> Result<Expr, String> {
    let segs: Vec<&str> = path.iter().map(String::as_str).collect();
    let sub = |rest: &[&str]| -> String { rest.iter().map(|s| format!("['{s}']")).collect() };
    match segs.as_slice() {
        ["inputs", name, rest @ ..] => {
            if let Some(v) = scope.fixed.get(*name) {
                let mut v = v;
                for r in rest {
                    v = v
                        .get(r)
                        .ok_or_else(|| format!("inputs.{name} has no field \"{r}\""))?;
                }
                return Ok(Expr::Lit(v.clone()));
            }
            Ok(Expr::Path(format!("$.inputs['{name}']{}", sub(rest))))
        }
        ["case", "id"] => Ok(Expr::Path("$.case_id".into())),
        ["run", "id"] => Ok(Expr::Path("$$.Execution.Name".into())),
        ["run", "started_at"] => Ok(Expr::Path("$$.Execution.StartTime".into())),
        ["aws", "account_id"] => Ok(Expr::Path("$.aws.account_id".into())),
        ["aws", "region"] => Ok(Expr::Path("$.aws.region".into())),
        ["item", rest @ ..] if scope.in_map => Ok(Expr::Path(format!("$.item{}", sub(rest)))),
        ["item_index"] if scope.in_map => Ok(Expr::Path("$.item_index".into())),
        ["steps", id, "status"] => Ok(Expr::Path(format!("{}.status", step_path(id)))),
        ["steps", id, "outputs", out, rest @ ..] => match scope.outputs.get(*id) {
            Some(held) if held.contains(out) => Ok(Expr::Path(format!(
                "{}.outputs['{out}']{}",
                step_path(id),
                sub(rest)
            ))),
            Some(_) => Err(format!(
                "output \"{out}\" of step \"{id}\" has no exact translation in the compiled step (it holds: {})",
                scope.outputs[*id].join(", ")
            )),
            None => Err(format!("outputs of step \"{id}\" are not held by the compiled state machine")),
        },
        _ => Err(format!("\"{}\" has no counterpart in a Step Functions execution", path.join("."))),
    }
}

/// Quotes a literal for an intrinsic function: `'...'` with `'`, `{`, `}` and `\` escaped.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if matches!(c, '\'' | '{' | '}' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// A parameter value as written in the playbook, translated.
///
/// Strings are templates; lists and maps are translated element by element (a list with
/// run-time elements becomes `States.Array(...)`, a map a nested `Parameters` object).
pub fn value(v: &Value, scope: &Scope) -> Result<Expr, String> {
    match v {
        Value::String(s) => string(s, scope),
        Value::Array(items) => {
            let exprs = items
                .iter()
                .map(|i| value(i, scope))
                .collect::<Result<Vec<_>, _>>()?;
            if exprs.iter().all(|e| matches!(e, Expr::Lit(_))) {
                return Ok(Expr::Lit(Value::Array(
                    exprs
                        .into_iter()
                        .map(|e| match e {
                            Expr::Lit(v) => v,
                            _ => Value::Null,
                        })
                        .collect(),
                )));
            }
            if exprs
                .iter()
                .any(|e| matches!(e, Expr::Lit(Value::Object(_) | Value::Array(_))))
            {
                return Err(
                    "a list mixing run-time values with lists or maps has no translation".into(),
                );
            }
            let args: Vec<String> = exprs.iter().map(Expr::arg).collect();
            Ok(Expr::Call(format!("States.Array({})", args.join(", "))))
        }
        Value::Object(m) => {
            let mut out = Map::new();
            let mut literal = true;
            for (k, v) in m {
                if k.ends_with(".$") {
                    return Err(format!(
                        "key \"{k}\" ends in \".$\", which a state machine reads as a path"
                    ));
                }
                let e = value(v, scope)?;
                literal &= matches!(e, Expr::Lit(_));
                e.put(&mut out, k);
            }
            if literal {
                return Ok(Expr::Lit(Value::Object(out)));
            }
            Err("a map with run-time values has no translation as one value".into())
        }
        other => Ok(Expr::Lit(other.clone())),
    }
}

/// A template string translated.
pub fn string(s: &str, scope: &Scope) -> Result<Expr, String> {
    if !crate::template::is_template(s) {
        return Ok(Expr::Lit(Value::String(s.to_owned())));
    }
    if let Some(r) = crate::template::single_expression(s) {
        return reference(&r.path, scope);
    }
    let mut fmt = String::new();
    let mut args = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find("{{") {
        let text = &rest[..open];
        let close = rest[open..]
            .find("}}")
            .ok_or("\"{{\" is never closed with \"}}\"")?
            + open;
        let inner = rest[open + 2..close].trim();
        let is_path = !inner.is_empty()
            && inner
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !is_path {
            return Err(format!(
                "\"{{{{{inner}}}}}\" is a helper or block; only plain references are translated inside text"
            ));
        }
        let path: Vec<String> = inner.split('.').map(str::to_owned).collect();
        let e = reference(&path, scope)?;
        push_text(&mut fmt, text);
        match e {
            Expr::Lit(Value::String(v)) => push_text(&mut fmt, &v),
            Expr::Lit(v @ (Value::Number(_) | Value::Bool(_))) => {
                push_text(&mut fmt, &v.to_string())
            }
            Expr::Lit(_) => return Err(format!("\"{inner}\" is a list or map inside text")),
            other => {
                fmt.push_str("{}");
                args.push(other.arg());
            }
        }
        rest = &rest[close + 2..];
    }
    push_text(&mut fmt, rest);
    if args.is_empty() {
        // Every reference was fixed when compiling: the text is known.
        return Ok(Expr::Lit(Value::String(unescape(&fmt))));
    }
    Ok(Expr::Call(format!(
        "States.Format('{fmt}', {})",
        args.join(", ")
    )))
}

fn push_text(fmt: &mut String, text: &str) {
    for c in text.chars() {
        if matches!(c, '\'' | '{' | '}' | '\\') {
            fmt.push('\\');
        }
        fmt.push(c);
    }
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut esc = false;
    for c in s.chars() {
        if esc || c != '\\' {
            out.push(c);
            esc = false;
        } else {
            esc = true;
        }
    }
    out
}

/// A `when` condition: `Ok(None)` always true, `Ok(Some(rule))` a Choice rule (without
/// `Next`) that holds when the step runs, `Err` why it has no translation. `Ok(Some(false
/// rule))` is never produced: a condition fixed to false is [`When::Never`].
#[derive(Debug, PartialEq)]
pub enum When {
    /// Always runs.
    Always,
    /// Never runs (the condition is false when compiling).
    Never,
    /// Runs when the rule holds.
    Rule(Value),
}

/// Translates a step's `when`.
pub fn when(v: &Value, scope: &Scope) -> Result<When, String> {
    match v {
        Value::Bool(true) => Ok(When::Always),
        Value::Bool(false) => Ok(When::Never),
        Value::String(s) => {
            let inner = s
                .trim()
                .strip_prefix("{{")
                .and_then(|r| r.strip_suffix("}}"))
                .filter(|i| !i.contains("{{") && !i.contains("}}"))
                .ok_or("a condition must be one {{...}} expression")?;
            let tokens = tokenize(inner)?;
            let mut pos = 0;
            let cond = parse_cond(&tokens, &mut pos, scope, true)?;
            if pos != tokens.len() {
                return Err("unexpected text after the condition".into());
            }
            Ok(match cond {
                Cond::Fixed(true) => When::Always,
                Cond::Fixed(false) => When::Never,
                Cond::Rule(r) => When::Rule(r),
            })
        }
        other => Err(format!(
            "a condition must be a boolean or a template, found {other}"
        )),
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Open,
    Close,
    Str(String),
    Word(String),
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            ' ' | '\t' => {
                chars.next();
            }
            '(' => {
                chars.next();
                out.push(Tok::Open);
            }
            ')' => {
                chars.next();
                out.push(Tok::Close);
            }
            '"' | '\'' => {
                chars.next();
                let mut v = String::new();
                loop {
                    match chars.next() {
                        Some(x) if x == c => break,
                        Some(x) => v.push(x),
                        None => return Err("a quoted string is never closed".into()),
                    }
                }
                out.push(Tok::Str(v));
            }
            _ => {
                let mut w = String::new();
                while let Some(&x) = chars.peek() {
                    if matches!(x, ' ' | '\t' | '(' | ')') {
                        break;
                    }
                    w.push(x);
                    chars.next();
                }
                out.push(Tok::Word(w));
            }
        }
    }
    Ok(out)
}

enum Cond {
    Fixed(bool),
    Rule(Value),
}

enum Operand {
    Lit(Value),
    Path(String),
}

fn operand(tok: &Tok, scope: &Scope) -> Result<Operand, String> {
    match tok {
        Tok::Str(s) => Ok(Operand::Lit(Value::String(s.clone()))),
        Tok::Word(w) if w == "true" || w == "false" => Ok(Operand::Lit(Value::Bool(w == "true"))),
        Tok::Word(w) if w.parse::<f64>().is_ok() => Ok(Operand::Lit(
            serde_json::from_str(w).map_err(|e| e.to_string())?,
        )),
        Tok::Word(w) => {
            let path: Vec<String> = w.split('.').map(str::to_owned).collect();
            match reference(&path, scope)? {
                Expr::Lit(v) => Ok(Operand::Lit(v)),
                Expr::Path(p) => Ok(Operand::Path(p)),
                Expr::Call(_) => Err(format!("\"{w}\" cannot be compared")),
            }
        }
        _ => Err("expected a value".into()),
    }
}

fn parse_cond(toks: &[Tok], pos: &mut usize, scope: &Scope, top: bool) -> Result<Cond, String> {
    let Some(first) = toks.get(*pos) else {
        return Err("empty condition".into());
    };
    if *first == Tok::Open {
        *pos += 1;
        let c = parse_cond(toks, pos, scope, true)?;
        if toks.get(*pos) != Some(&Tok::Close) {
            return Err("\"(\" is never closed".into());
        }
        *pos += 1;
        return Ok(c);
    }
    let Tok::Word(w) = first else {
        return Err("a condition cannot be a bare string".into());
    };
    let helper = w.as_str();
    if !top
        || !matches!(
            helper,
            "eq" | "ne" | "gt" | "gte" | "lt" | "lte" | "not" | "and" | "or"
        )
    {
        *pos += 1;
        return truthy(operand(first, scope)?);
    }
    *pos += 1;
    match helper {
        "not" => Ok(match parse_cond(toks, pos, scope, false)? {
            Cond::Fixed(b) => Cond::Fixed(!b),
            Cond::Rule(r) => Cond::Rule(json!({"Not": r})),
        }),
        "and" | "or" => {
            let mut rules = Vec::new();
            while *pos < toks.len() && toks[*pos] != Tok::Close {
                match parse_cond(toks, pos, scope, false)? {
                    Cond::Fixed(b) if b == (helper == "and") => {}
                    Cond::Fixed(b) => return Ok(Cond::Fixed(b)),
                    Cond::Rule(r) => rules.push(r),
                }
            }
            Ok(match rules.len() {
                0 => Cond::Fixed(helper == "and"),
                1 => Cond::Rule(rules.remove(0)),
                _ if helper == "and" => Cond::Rule(json!({"And": rules})),
                _ => Cond::Rule(json!({"Or": rules})),
            })
        }
        op => {
            let a = toks.get(*pos).ok_or("missing operand")?;
            let b = toks.get(*pos + 1).ok_or("missing operand")?;
            *pos += 2;
            compare(op, operand(a, scope)?, operand(b, scope)?)
        }
    }
}

fn truthy(o: Operand) -> Result<Cond, String> {
    match o {
        Operand::Lit(Value::Bool(b)) => Ok(Cond::Fixed(b)),
        Operand::Lit(v) => Err(format!("{v} is not a boolean")),
        Operand::Path(p) => Ok(Cond::Rule(json!({"Variable": p, "BooleanEquals": true}))),
    }
}

fn compare(op: &str, a: Operand, b: Operand) -> Result<Cond, String> {
    let (path, lit, flipped) = match (a, b) {
        (Operand::Lit(x), Operand::Lit(y)) => {
            let r = match op {
                "eq" => x == y,
                "ne" => x != y,
                _ => match (x.as_f64(), y.as_f64()) {
                    (Some(x), Some(y)) => match op {
                        "gt" => x > y,
                        "gte" => x >= y,
                        "lt" => x < y,
                        _ => x <= y,
                    },
                    _ => return Err(format!("\"{op}\" compares numbers")),
                },
            };
            return Ok(Cond::Fixed(r));
        }
        (Operand::Path(p), Operand::Lit(l)) => (p, l, false),
        (Operand::Lit(l), Operand::Path(p)) => (p, l, true),
        (Operand::Path(_), Operand::Path(_)) => {
            return Err(
                "comparing two run-time values needs their types; compare with a literal".into(),
            )
        }
    };
    let kind = match &lit {
        Value::String(_) => "String",
        Value::Number(_) => "Numeric",
        Value::Bool(_) if matches!(op, "eq" | "ne") => "Boolean",
        other => return Err(format!("{other} cannot be compared with \"{op}\"")),
    };
    // `lit OP path` is `path OP' lit`.
    let op = match (op, flipped) {
        ("gt", true) => "lt",
        ("gte", true) => "lte",
        ("lt", true) => "gt",
        ("lte", true) => "gte",
        (o, _) => o,
    };
    let test = match op {
        "eq" | "ne" => "Equals",
        "gt" => "GreaterThan",
        "gte" => "GreaterThanEquals",
        "lt" => "LessThan",
        _ => "LessThanEquals",
    };
    let rule = json!({"Variable": path, format!("{kind}{test}"): lit});
    Ok(Cond::Rule(if op == "ne" {
        json!({"Not": rule})
    } else {
        rule
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        let mut s = Scope::default();
        s.outputs.insert("snap".into(), vec!["snapshot_ids"]);
        s
    }

    #[test]
    fn references_become_paths_and_text_a_format() {
        let s = scope();
        assert_eq!(
            string("{{inputs.instance_id}}", &s).unwrap(),
            Expr::Path("$.inputs['instance_id']".into())
        );
        assert_eq!(
            string("irr-clean-room-{{case.id}}", &s).unwrap(),
            Expr::Call("States.Format('irr-clean-room-{}', $.case_id)".into())
        );
        assert_eq!(
            string("it's {x} {{case.id}}", &s).unwrap(),
            Expr::Call("States.Format('it\\'s \\{x\\} {}', $.case_id)".into())
        );
        assert_eq!(
            string("{{steps.snap.outputs.snapshot_ids}}", &s).unwrap(),
            Expr::Path("$.steps['snap'].outputs['snapshot_ids']".into())
        );
        assert!(string("{{steps.snap.outputs.volumes}}", &s)
            .unwrap_err()
            .contains("no exact translation"));
        assert!(string("{{#if inputs.x}}a{{/if}}", &s).is_err());
        assert!(string("{{len inputs.x}}", &s).is_err());
    }

    #[test]
    fn fixed_inputs_are_written_in() {
        let mut s = scope();
        s.fixed.insert("n".into(), json!("web-1"));
        assert_eq!(
            string("host {{inputs.n}}", &s).unwrap(),
            Expr::Lit(json!("host web-1"))
        );
        assert_eq!(
            value(&json!(["{{inputs.n}}", "{{case.id}}"]), &s).unwrap(),
            Expr::Call("States.Array('web-1', $.case_id)".into())
        );
    }

    #[test]
    fn conditions_become_choice_rules() {
        let s = scope();
        assert_eq!(
            when(&json!("{{ne steps.volatile.status \"pending\"}}"), &s).unwrap(),
            When::Rule(
                json!({"Not": {"Variable": "$.steps['volatile'].status", "StringEquals": "pending"}})
            )
        );
        assert_eq!(
            when(&json!("{{and inputs.a (gt inputs.n 3)}}"), &s).unwrap(),
            When::Rule(json!({"And": [
                {"Variable": "$.inputs['a']", "BooleanEquals": true},
                {"Variable": "$.inputs['n']", "NumericGreaterThan": 3}
            ]}))
        );
        assert_eq!(when(&json!("{{eq 1 2}}"), &s).unwrap(), When::Never);
        assert_eq!(when(&json!(true), &s).unwrap(), When::Always);
        assert!(when(&json!("{{eq inputs.a inputs.b}}"), &s).is_err());
        assert!(when(&json!("x {{inputs.a}}"), &s).is_err());
    }
}
