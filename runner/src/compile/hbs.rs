//! A Handlebars template (as `cloudformation.deploy_stack` renders it: strict mode, no
//! escaping, against `{case: {id}, run: {id}, params}`) as one JSONata expression giving the
//! same text, for a state machine to render it at run time.
//!
//! Translated: text, comments, `{{path}}` / `{{{path}}}` (a string as it is, a number or a
//! boolean as text, null as nothing, anything missing an error as in strict mode),
//! `{{#each path}}...{{else}}...{{/each}}` over a list (`this`, `@index`, `@first`,
//! `@last`, paths into the item, `../` to the enclosing context), and `{{#if path}}` /
//! `{{#unless path}}` with `{{else}}` (Handlebars' truthiness). Any other helper, partial,
//! decorator or block parameter is refused when compiling, with its text.

use handlebars::template::{HelperTemplate, Parameter, Template, TemplateElement};
use handlebars::Path;

/// What a rendering error is in the text, as `{{MARK MESSAGE :MARK}}` (a JSONata error would be
/// `States.Runtime` on LocalStack, which no `Catch` takes); a template holding it is refused.
pub const MARK: &str = "irr-template-error:";

/// The JSONata functions the expression uses, declared once before it.
const PRELUDE: &str = "$irrFail := function($m) { '{{irr-template-error: ' & $m & ' :irr-template-error}}' }; \
$irrText := function($v, $what) { $exists($v) ? ($type($v) = 'string' ? $v : $type($v) = 'null' ? '' : ($type($v) = 'number' or $type($v) = 'boolean') ? $string($v) : $irrFail('template: ' & $what & ' is a list or a map: it has no text') ) : $irrFail('template: ' & $what & ' is not defined (strict mode)') }; \
$irrTrue := function($v) { $exists($v) and $type($v) != 'null' and $v != false and $v != '' and $not($type($v) = 'number' and $v = 0) and $not($type($v) = 'array' and $count($v) = 0) and $not($type($v) = 'object' and $count($keys($v)) = 0) }; \
$irrGet := function($o, $k) { $type($o) = 'object' ? $lookup($o, $k) : undefined };";

/// One enclosing context: the JSONata variable holding it, and in an `each`, its index's.
#[derive(Clone)]
struct Frame {
    value: String,
    index: Option<(String, String)>,
}

/// The template's JSONata expression; `context` is a JSONata expression giving the
/// rendering context (`{'case': {'id': ...}, 'run': {'id': ...}, 'params': ...}`).
pub fn expression(source: &str, context: &str) -> Result<String, String> {
    if source.contains(MARK) {
        return Err(format!(
            "the template holds \"{MARK}\", which marks rendering errors"
        ));
    }
    let t = Template::compile(source).map_err(|e| format!("the template does not parse: {e}"))?;
    let mut tr = Translator { depth: 0 };
    let frames = vec![Frame {
        value: "$irrRoot".into(),
        index: None,
    }];
    let body = tr.template(&t, &frames)?;
    Ok(format!("({PRELUDE} $irrRoot := {context}; {body})"))
}

struct Translator {
    depth: usize,
}

/// A JSONata string literal of `s`. `${` is written `$\u007b`: a state machine's
/// `DefinitionSubstitutions` would replace `${EvidenceBucket}` in the text (CloudFormation's
/// own `!Sub "${...}"` in a template).
fn literal(s: &str) -> String {
    serde_json::to_string(s)
        .unwrap_or_default()
        .replace("${", "$\\u007b")
}

impl Translator {
    fn template(&mut self, t: &Template, frames: &[Frame]) -> Result<String, String> {
        let mut parts = Vec::new();
        for e in &t.elements {
            match e {
                TemplateElement::RawString(s) => parts.push(literal(s)),
                TemplateElement::Comment(_) => {}
                TemplateElement::Expression(h) | TemplateElement::HtmlExpression(h) => {
                    if !h.params.is_empty() || !h.hash.is_empty() {
                        return Err(format!(
                            "the helper {{{{{} ...}}}} has no translation",
                            name(h)
                        ));
                    }
                    let (v, what) = self.path(&h.name, frames)?;
                    parts.push(format!("$irrText({v}, {})", literal(&what)));
                }
                TemplateElement::HelperBlock(h) => parts.push(self.block(h, frames)?),
                _ => return Err("partials and decorators have no translation".into()),
            }
        }
        if parts.is_empty() {
            return Ok("''".into());
        }
        Ok(format!("({})", parts.join(" & ")))
    }

    fn block(&mut self, h: &HelperTemplate, frames: &[Frame]) -> Result<String, String> {
        let helper = name(h);
        if h.params.len() != 1 || !h.hash.is_empty() || h.block_param.is_some() {
            return Err(format!(
                "{{{{#{helper}}}}} with these arguments has no translation"
            ));
        }
        let (v, what) = self.path(&h.params[0], frames)?;
        let empty = Template::new();
        let inverse = h.inverse.as_ref().unwrap_or(&empty);
        match helper.as_str() {
            "if" | "unless" => {
                let then = self.template(h.template.as_ref().unwrap_or(&empty), frames)?;
                let other = self.template(inverse, frames)?;
                let (a, b) = if helper == "if" {
                    (then, other)
                } else {
                    (other, then)
                };
                Ok(format!("($irrTrue({v}) ? {a} : {b})"))
            }
            "each" => {
                self.depth += 1;
                let d = self.depth;
                let (item, index, list) = (
                    format!("$irrV{d}"),
                    format!("$irrI{d}"),
                    format!("$irrL{d}"),
                );
                let mut inner = frames.to_vec();
                inner.push(Frame {
                    value: item.clone(),
                    index: Some((index.clone(), list.clone())),
                });
                let body = self.template(h.template.as_ref().unwrap_or(&empty), &inner)?;
                self.depth -= 1;
                let otherwise = match &h.inverse {
                    Some(t) => self.template(t, frames)?,
                    None => format!(
                        "$irrFail({})",
                        literal(&format!(
                            "template: {{{{#each {what}}}}} is not a list (strict mode)"
                        ))
                    ),
                };
                let has_else = h.inverse.is_some();
                Ok(format!(
                    "({list} := {v}; ($type({list}) = 'array' and ($count({list}) > 0 or {})) ? $join($map({list}, function({item}, {index}) {{ {body} }}), '') : ($type({list}) = 'object' ? $irrFail('template: {{{{#each}}}} over a map has no translation') : {otherwise}))",
                    if has_else { "false" } else { "true" }
                ))
            }
            other => Err(format!(
                "the block helper {{{{#{other}}}}} has no translation"
            )),
        }
    }

    /// A path as a JSONata expression, and its text for messages.
    fn path(&self, p: &Parameter, frames: &[Frame]) -> Result<(String, String), String> {
        let Parameter::Path(path) = p else {
            return Err("a literal or subexpression argument has no translation".into());
        };
        match path {
            Path::Local((level, name, raw)) => {
                let frame = frames
                    .len()
                    .checked_sub(1 + level)
                    .and_then(|i| frames.get(i))
                    .ok_or_else(|| format!("{raw}: no enclosing block"))?;
                let Some((index, list)) = &frame.index else {
                    return Err(format!("{raw} outside an {{{{#each}}}}"));
                };
                let v = match name.as_str() {
                    "index" => index.clone(),
                    "first" => format!("({index} = 0)"),
                    "last" => format!("({index} = $count({list}) - 1)"),
                    _ => return Err(format!("{raw} has no translation")),
                };
                Ok((v, raw.clone()))
            }
            Path::Relative((_, raw)) => {
                let mut rest = raw.as_str();
                let mut up = 0;
                while let Some(r) = rest.strip_prefix("../") {
                    up += 1;
                    rest = r;
                }
                let frame = frames
                    .len()
                    .checked_sub(1 + up)
                    .and_then(|i| frames.get(i))
                    .ok_or_else(|| format!("{raw}: no enclosing block"))?;
                let rest = rest
                    .strip_prefix("this.")
                    .or_else(|| rest.strip_prefix("this/"))
                    .unwrap_or(rest);
                let mut v = frame.value.clone();
                if !(rest == "this" || rest == "." || rest.is_empty()) {
                    for seg in rest.split(['.', '/']) {
                        if seg.is_empty() || seg.starts_with('[') || seg.starts_with('@') {
                            return Err(format!("the path {raw} has no translation"));
                        }
                        v = format!("$irrGet({v}, {})", literal(seg));
                    }
                }
                Ok((v, raw.clone()))
            }
        }
    }
}

fn name(h: &HelperTemplate) -> String {
    match &h.name {
        Parameter::Name(n) => n.clone(),
        Parameter::Path(Path::Relative((_, raw)) | Path::Local((_, _, raw))) => raw.clone(),
        other => format!("{other:?}"),
    }
}
