//! Templates: Handlebars in strict mode, with the typed single-expression rule.
//!
//! A string that is exactly one expression (`"{{steps.snapshot.outputs.snapshot_ids}}"`)
//! keeps the referenced value's own type (list, map, number, boolean). Text mixed with
//! expressions renders to a string through Handlebars in strict mode (a reference to anything
//! missing is an error) with HTML escaping off. Rendered values are data: nothing is passed
//! to a shell or parsed again as YAML.
//!
//! [`scan`] finds every reference in a template so the validator can check it statically.

use std::sync::OnceLock;

use handlebars::Handlebars;
use serde_json::Value;

/// One reference found in a template, e.g. `steps.snapshot.outputs.snapshot_ids`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// The path, split on dots.
    pub path: Vec<String>,
    /// Byte offset of the path in the template string.
    pub offset: usize,
    /// Byte length of the path text.
    pub len: usize,
}

impl Reference {
    /// The path as written.
    pub fn text(&self) -> String {
        self.path.join(".")
    }
}

/// A template that cannot be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateError {
    /// Byte offset in the template string.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

/// Helpers usable in templates (Handlebars built-ins).
const HELPERS: &[&str] = &[
    "if", "unless", "each", "with", "lookup", "eq", "ne", "gt", "gte", "lt", "lte", "and", "or",
    "not", "len",
];

/// `true` if the string contains a template expression.
pub fn is_template(s: &str) -> bool {
    s.contains("{{")
}

/// If `s` is exactly one expression naming a path, that reference.
pub fn single_expression(s: &str) -> Option<Reference> {
    let inner = s.strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("}}") {
        return None;
    }
    let trimmed = inner.trim();
    if trimmed.is_empty() || trimmed.contains(char::is_whitespace) || !is_path(trimmed) {
        return None;
    }
    let lead = inner.len() - inner.trim_start().len();
    Some(Reference {
        path: trimmed.split('.').map(str::to_owned).collect(),
        offset: 2 + lead,
        len: trimmed.len(),
    })
}

fn is_path(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|seg| {
            !seg.is_empty()
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
        && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
}

fn is_literal(tok: &str) -> bool {
    tok.starts_with('"')
        || tok.starts_with('\'')
        || tok.parse::<f64>().is_ok()
        || matches!(tok, "true" | "false" | "null")
}

/// Every reference in a template, or the first syntax problem.
pub fn scan(s: &str) -> Result<Vec<Reference>, TemplateError> {
    let mut refs = Vec::new();
    let mut pos = 0;
    while let Some(open) = s[pos..].find("{{") {
        let start = pos + open;
        let Some(close) = s[start + 2..].find("}}") else {
            return Err(TemplateError {
                offset: start,
                message: "\"{{\" is never closed with \"}}\"".to_owned(),
            });
        };
        let body_start = start + 2;
        let body_end = body_start + close;
        pos = body_end + 2;
        let mut body = &s[body_start..body_end];
        let mut base = body_start;
        // Triple stash, whitespace control and comments.
        for prefix in ["{", "~"] {
            if let Some(rest) = body.strip_prefix(prefix) {
                body = rest;
                base += prefix.len();
            }
        }
        if body.starts_with('!') {
            continue;
        }
        let body = body.trim_end_matches(['~', '}']);
        let mut block_helper = false;
        let mut tokens: Vec<(usize, &str)> = Vec::new();
        let mut i = 0;
        let bytes = body.as_bytes();
        while i < bytes.len() {
            if bytes[i].is_ascii_whitespace() {
                i += 1;
                continue;
            }
            let tok_start = i;
            if bytes[i] == b'"' || bytes[i] == b'\'' {
                let q = bytes[i];
                i += 1;
                while i < bytes.len() && bytes[i] != q {
                    i += 1;
                }
                i = (i + 1).min(bytes.len());
            } else {
                while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                    i += 1;
                }
            }
            tokens.push((tok_start, &body[tok_start..i]));
        }
        let Some(&(first_off, first)) = tokens.first() else {
            return Err(TemplateError {
                offset: start,
                message: "empty expression \"{{}}\"".to_owned(),
            });
        };
        let mut rest_tokens = &tokens[..];
        if let Some(name) = first.strip_prefix('#').or_else(|| first.strip_prefix('^')) {
            block_helper = true;
            if !HELPERS.contains(&name) {
                return Err(TemplateError {
                    offset: base + first_off,
                    message: format!("unknown block helper \"{name}\""),
                });
            }
            rest_tokens = &tokens[1..];
        } else if first.starts_with('/') || first == "else" {
            continue;
        } else if tokens.len() > 1 {
            if !HELPERS.contains(&first) {
                return Err(TemplateError {
                    offset: base + first_off,
                    message: format!(
                        "\"{first}\" is not a helper; an expression is one path such as inputs.instance_id, or a helper ({}) with arguments",
                        HELPERS.join(", ")
                    ),
                });
            }
            rest_tokens = &tokens[1..];
        }
        for &(off, tok) in rest_tokens {
            if is_literal(tok) || tok.starts_with('@') || tok == "this" || tok.starts_with("this.")
            {
                continue;
            }
            if block_helper && tok.starts_with("as") {
                break;
            }
            if !is_path(tok) {
                return Err(TemplateError {
                    offset: base + off,
                    message: format!("\"{tok}\" is not a valid reference"),
                });
            }
            refs.push(Reference {
                path: tok.split('.').map(str::to_owned).collect(),
                offset: base + off,
                len: tok.len(),
            });
        }
    }
    if let Some(close) = s[pos..].find("}}") {
        return Err(TemplateError {
            offset: pos + close,
            message: "\"}}\" without a matching \"{{\"".to_owned(),
        });
    }
    Ok(refs)
}

/// Why rendering failed at run time.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RenderError(pub String);

fn registry() -> &'static Handlebars<'static> {
    static REG: OnceLock<Handlebars<'static>> = OnceLock::new();
    REG.get_or_init(|| {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.register_escape_fn(handlebars::no_escape);
        hb
    })
}

/// Looks a dotted path up in the context.
pub fn lookup<'a>(ctx: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(ctx, |v, seg| match v {
        Value::Object(m) => m.get(seg),
        Value::Array(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// Renders one string against the context, applying the single-expression rule.
pub fn render_str(s: &str, ctx: &Value) -> Result<Value, RenderError> {
    if !is_template(s) {
        return Ok(Value::String(s.to_owned()));
    }
    if let Some(r) = single_expression(s) {
        return lookup(ctx, &r.path)
            .cloned()
            .ok_or_else(|| RenderError(format!("\"{}\" does not exist", r.text())));
    }
    registry()
        .render_template(s, ctx)
        .map(Value::String)
        .map_err(|e| RenderError(e.to_string()))
}

/// Renders every string inside a value (lists and mappings recursively).
pub fn render_value(v: &Value, ctx: &Value) -> Result<Value, RenderError> {
    Ok(match v {
        Value::String(s) => render_str(s, ctx)?,
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| render_value(i, ctx))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), render_value(v, ctx)?)))
                .collect::<Result<_, RenderError>>()?,
        ),
        other => other.clone(),
    })
}

/// Like [`render_value`], but strings whose references are not all in the context are kept as
/// written (the plan shows `{{steps.x.outputs.y}}` for values only known at run time).
pub fn render_partial(v: &Value, ctx: &Value) -> Value {
    match v {
        Value::String(s) => {
            let known = scan(s)
                .map(|refs| refs.iter().all(|r| lookup(ctx, &r.path).is_some()))
                .unwrap_or(false);
            if known {
                render_str(s, ctx).unwrap_or_else(|_| v.clone())
            } else {
                v.clone()
            }
        }
        Value::Array(items) => Value::Array(items.iter().map(|i| render_partial(i, ctx)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), render_partial(v, ctx)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Every string inside a value, with a path for messages.
pub fn strings_in(v: &Value) -> Vec<&str> {
    let mut out = Vec::new();
    fn walk<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::String(s) => out.push(s),
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            Value::Object(m) => m.values().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    walk(v, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn single_expression_keeps_type() {
        let ctx = json!({"steps": {"snap": {"outputs": {"ids": ["snap-1", "snap-2"]}}}});
        let v = render_str("{{steps.snap.outputs.ids}}", &ctx).unwrap();
        assert_eq!(v, json!(["snap-1", "snap-2"]));
        let v = render_str("{{ steps.snap.outputs.ids }}", &ctx).unwrap();
        assert_eq!(v, json!(["snap-1", "snap-2"]));
    }

    #[test]
    fn mixed_text_is_a_string_and_not_escaped() {
        let ctx = json!({"case": {"id": "IR-1&2"}, "inputs": {"n": 3}});
        let v = render_str("case <{{case.id}}> n={{inputs.n}}", &ctx).unwrap();
        assert_eq!(v, json!("case <IR-1&2> n=3"));
    }

    #[test]
    fn strict_mode_rejects_missing() {
        let ctx = json!({"inputs": {}});
        assert!(render_str("{{inputs.nope}}", &ctx).is_err());
        assert!(render_str("x {{inputs.nope}}", &ctx).is_err());
    }

    #[test]
    fn hyphenated_step_ids_render() {
        let ctx = json!({"steps": {"isolate-fleet": {"status": "succeeded"}}});
        let v = render_str("s={{steps.isolate-fleet.status}}", &ctx).unwrap();
        assert_eq!(v, json!("s=succeeded"));
    }

    #[test]
    fn scan_finds_references_with_offsets() {
        let s = "a {{inputs.x}} b {{#if steps.s.outputs.y}}c{{/if}} {{eq inputs.z \"q\"}}";
        let refs = scan(s).unwrap();
        let texts: Vec<_> = refs.iter().map(Reference::text).collect();
        assert_eq!(texts, ["inputs.x", "steps.s.outputs.y", "inputs.z"]);
        assert_eq!(&s[refs[0].offset..refs[0].offset + refs[0].len], "inputs.x");
    }

    #[test]
    fn scan_reports_syntax_problems() {
        assert!(scan("{{inputs.x").is_err());
        assert!(scan("{{frobnicate inputs.x}}").is_err());
        assert!(scan("{{}}").is_err());
    }

    #[test]
    fn partial_rendering_keeps_unknowns() {
        let ctx = json!({"inputs": {"i": "i-12345678"}});
        let v = render_partial(
            &json!({"a": "{{inputs.i}}", "b": "{{steps.x.outputs.y}}"}),
            &ctx,
        );
        assert_eq!(v, json!({"a": "i-12345678", "b": "{{steps.x.outputs.y}}"}));
    }
}
