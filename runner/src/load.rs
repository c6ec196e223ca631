//! Stage 1: YAML text -> a tree of [`Node`]s that remember where they came from.
//!
//! `serde_yaml` only locates its own syntax errors, but every semantic diagnostic ("unknown
//! action on line 25") needs the position of the node it is about. So the loader builds its
//! own tree from `yaml-rust2`'s marked parser events: each node keeps its byte span, line and
//! column. Scalars are resolved to YAML 1.2 core types (null, bool, int, float, string);
//! quoted scalars are always strings. Anchors and aliases are expanded.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::diagnostic::{Diagnostic, Source, Span};

/// A YAML node with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// What the node holds.
    pub kind: NodeKind,
    /// Where it is in the source.
    pub span: Span,
}

/// The value of a node.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeKind {
    /// `null`, `~` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string (any quoted scalar, or a plain one that is not another type).
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in source order. Keys are nodes too (for their positions).
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// A short name of the node's type for messages ("a string", "a list", ...).
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            NodeKind::Null => "null",
            NodeKind::Bool(_) => "a boolean",
            NodeKind::Int(_) => "an integer",
            NodeKind::Float(_) => "a number",
            NodeKind::Str(_) => "a string",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }

    /// The string, if this is a string scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The entries, if this is a mapping.
    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            NodeKind::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The items, if this is a sequence.
    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            NodeKind::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// Looks up a key of a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// The scalar as text (for keys and messages); `None` for collections.
    pub fn scalar_text(&self) -> Option<String> {
        Some(match &self.kind {
            NodeKind::Null => "null".to_owned(),
            NodeKind::Bool(b) => b.to_string(),
            NodeKind::Int(i) => i.to_string(),
            NodeKind::Float(f) => f.to_string(),
            NodeKind::Str(s) => s.clone(),
            NodeKind::Seq(_) | NodeKind::Map(_) => return None,
        })
    }

    /// Converts to JSON (positions dropped). Mapping keys become strings.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            NodeKind::Null => Value::Null,
            NodeKind::Bool(b) => Value::Bool(*b),
            NodeKind::Int(i) => Value::from(*i),
            NodeKind::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            NodeKind::Str(s) => Value::String(s.clone()),
            NodeKind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeKind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.scalar_text().unwrap_or_default(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// Parses one YAML document. A syntax error, or a duplicate mapping key, is returned as a
/// diagnostic at its position. An empty document is a `Null` node.
pub fn parse(source: &Source) -> Result<Node, Vec<Diagnostic>> {
    let text = source.text();
    let mut builder = Builder {
        source,
        stack: Vec::new(),
        anchors: HashMap::new(),
        root: None,
        docs: 0,
        skip: 0,
        problems: Vec::new(),
    };
    let mut parser = Parser::new_from_str(text);
    // Event by event rather than `Parser::load`, which recurses once per nesting level and
    // overflows the stack on deeply nested input before any limit applies.
    loop {
        match parser.next_token() {
            Ok((Event::StreamEnd, _)) => break,
            Ok((ev, mark)) => builder.on_event(ev, mark),
            Err(e) => {
                return Err(vec![syntax_error(
                    source,
                    source.char_to_byte(e.marker().index()),
                    e.info(),
                )])
            }
        }
    }
    if !builder.problems.is_empty() {
        return Err(builder.problems);
    }
    Ok(builder.root.unwrap_or(Node {
        kind: NodeKind::Null,
        span: source.span_at(0, 0),
    }))
}

/// A YAML syntax error, moved to where the fix goes and explained for a playbook author.
///
/// The parser reports where it gave up, which is often a token after the real mistake: the
/// `:` of a mis-indented key, or a line after an unclosed bracket. So the common mistakes are
/// recognised here and pointed at where they are.
fn syntax_error(source: &Source, index: usize, info: &str) -> Diagnostic {
    let text = source.text();
    let index = index.min(text.len());
    if let Some((open, ch)) = unclosed_bracket(text, index) {
        let close = if ch == '[' { ']' } else { '}' };
        let (what, example) = if ch == '[' {
            ("list", "needs: [capture, snapshot]")
        } else {
            ("mapping", "with: {instance_id: i-0abc1234def567890}")
        };
        let span = source.span_at(open, 1);
        return Diagnostic::error(span, format!("YAML syntax error: \"{ch}\" is never closed"))
            .with_help(format!(
                "close the {what} with \"{close}\" on the same line, e.g. \"{example}\""
            ));
    }
    let line_start = text[..index].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[index..].find('\n').map_or(text.len(), |i| index + i);
    let line = &text[line_start..line_end];
    let indent = line.len() - line.trim_start_matches(' ').len();
    let at = text[index..].chars().next();
    let key_start = line_start + indent;
    // An unquoted template: YAML reads `{{` as the start of a flow mapping.
    if let Some(pos) = line.find(": {{").or_else(|| line.find("- {{")) {
        let span = source.span_at(line_start + pos + 2, 2);
        return Diagnostic::error(
            span,
            "YAML syntax error: a value that starts with \"{{\" must be quoted",
        )
        .with_help("write the template in quotes, e.g. instance_id: \"{{inputs.instance_id}}\"");
    }
    let mut span = source.span_at(index, 1);
    let help: String = if info.contains("tab") {
        "indent with spaces, not tabs".into()
    } else if info.contains("quoted scalar") && info.contains("end of stream")
        || info.contains("indentation in quoted scalar")
    {
        "the quote that starts here is never closed; add the closing quote on the same line".into()
    } else if info.contains("trailing content after") && !open_brackets(text, index).is_empty() {
        "separate the entries of a [...] or {...} with commas".into()
    } else if info.contains("trailing content after") {
        "a quote inside a quoted value must be escaped: inside '...' write '' for ', inside \"...\" write \\\"; or quote the value with the other kind of quote".into()
    } else if info.contains("mapping values are not allowed") {
        let before = text[key_start..index].trim_end();
        let is_key_only = !before.is_empty()
            && before
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if is_key_only && previous_indent(text, line_start).is_some_and(|p| p < indent) {
            span = source.span_at(key_start, before.len());
            "this key is indented more than the line above it; keys of one mapping start in the same column".into()
        } else {
            "a value containing \": \" must be quoted, e.g. description: \"Contain: an instance\""
                .into()
        }
    } else if info.contains("did not find expected key") && at == Some(':') {
        let key = text[key_start..index].trim_end();
        span = source.span_at(key_start, key.len().max(1));
        "this key is not aligned with the keys above it; keys of one mapping start in the same column".into()
    } else if info.contains("did not find expected '-' indicator") {
        if at == Some(':') {
            let key = text[key_start..index].trim_end();
            span = source.span_at(key_start, key.len().max(1));
        }
        "this line is neither a new list item (\"- \") nor aligned with the keys of the item above; fix its indentation".into()
    } else if matches!(at, Some(']' | '}')) {
        format!("this \"{}\" closes nothing; remove it", at.unwrap_or(']'))
    } else if info.contains("did not find expected") || info.contains("while parsing") {
        "check the indentation and that brackets and quotes are closed".into()
    } else if info.contains("unexpected character") || info.contains("cannot start any") {
        "a value starting with this character must be quoted".into()
    } else {
        "check the indentation and quoting around this point".into()
    };
    Diagnostic::error(span, format!("YAML syntax error: {info}")).with_help(help)
}

/// The indentation of the last non-blank, non-comment line before the line at `line_start`.
fn previous_indent(text: &str, line_start: usize) -> Option<usize> {
    text[..line_start.saturating_sub(1).min(text.len())]
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| l.len() - l.trim_start_matches(' ').len())
}

/// An opening `[` or `{` of a flow collection, on a line before the one holding `end`, that
/// is still open at `end`. Quotes, comments and brackets inside plain text are skipped.
fn unclosed_bracket(text: &str, end: usize) -> Option<(usize, char)> {
    let line_start = text[..end].rfind('\n').map_or(0, |i| i + 1);
    open_brackets(text, end)
        .into_iter()
        .next()
        .filter(|(i, _)| *i < line_start)
}

/// The flow collections (`[` or `{`, with their offsets) still open at `end`.
fn open_brackets(text: &str, end: usize) -> Vec<(usize, char)> {
    let mut stack: Vec<(usize, char)> = Vec::new();
    let mut quote: Option<char> = None;
    let mut prev = '\n'; // previous significant character on the line
    let mut last = '\n'; // previous character
    let mut comment = false;
    for (i, c) in text[..end].char_indices() {
        if c == '\n' {
            comment = false;
            if stack.is_empty() {
                prev = '\n';
            }
            last = c;
            continue;
        }
        if comment {
            continue;
        }
        match quote {
            Some(q) => {
                if c == q && !(q == '"' && last == '\\') {
                    quote = None;
                }
            }
            None => match c {
                '#' if last.is_whitespace() || last == '\n' => comment = true,
                '"' | '\''
                    if matches!(prev, ':' | '-' | ',' | '[' | '{' | '\n')
                        && (last.is_whitespace() || matches!(last, '[' | '{' | ',' | '\n')) =>
                {
                    quote = Some(c)
                }
                '[' | '{' if !stack.is_empty() || matches!(prev, ':' | '-' | '\n') => {
                    stack.push((i, c))
                }
                ']' | '}' if !stack.is_empty() => {
                    stack.pop();
                }
                _ => {}
            },
        }
        if !c.is_whitespace() {
            prev = c;
        }
        last = c;
    }
    stack
}

/// The deepest nesting of collections the loader builds.
pub const MAX_DEPTH: usize = 64;

enum Frame {
    Seq(Vec<Node>, Span, usize),
    /// entries, pending key, span, anchor
    Map(Vec<(Node, Node)>, Option<Node>, Span, usize),
}

struct Builder<'a> {
    source: &'a Source,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    docs: usize,
    /// How deep inside a collection nested beyond [`MAX_DEPTH`] the parser is (0: not).
    skip: usize,
    problems: Vec<Diagnostic>,
}

impl Builder<'_> {
    fn push_node(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq(items, _, _)) => {
                let mut node = node;
                if node.kind == NodeKind::Null && node.span.len == 0 {
                    // An empty item: point at its `-`.
                    let text = self.source.text();
                    if let Some(dash) = text[..node.span.start.min(text.len())].rfind('-') {
                        node.span = self.source.span_at(dash, 1);
                    }
                }
                items.push(node)
            }
            Some(Frame::Map(entries, pending, _, _)) => match pending.take() {
                None => *pending = Some(node),
                Some(key) => {
                    let mut node = node;
                    if node.kind == NodeKind::Null && node.span.len == 0 {
                        node.span = key.span.clone();
                    }
                    if let Some(text) = key.scalar_text() {
                        if let Some((first, _)) = entries
                            .iter()
                            .find(|(k, _)| k.scalar_text().as_deref() == Some(&text))
                        {
                            let first_line = first.span.line;
                            self.problems.push(
                                Diagnostic::error(
                                    key.span.clone(),
                                    format!("duplicate key \"{text}\""),
                                )
                                .with_help(format!(
                                    "\"{text}\" is already set on line {first_line}; keep one"
                                )),
                            );
                        }
                    }
                    entries.push((key, node));
                }
            },
        }
    }

    fn scalar(&self, value: String, style: TScalarStyle, mark: Marker) -> Node {
        let start = self.source.char_to_byte(mark.index());
        // An empty plain scalar (`key:` with nothing after it) covers no text: its mark is
        // wherever the next token is. `push_node` places it at its key instead.
        let len = if value.is_empty() && style == TScalarStyle::Plain {
            0
        } else {
            scalar_len(self.source.text(), start, style, &value)
        };
        let span = self.source.span_at(start, len);
        let kind = if style == TScalarStyle::Plain {
            resolve_plain(value)
        } else {
            NodeKind::Str(value)
        };
        Node { kind, span }
    }
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        // Nesting beyond any real playbook: dropped (and reported once) so that nothing
        // downstream recurses deep enough to overflow the stack.
        let opens = matches!(ev, Event::SequenceStart(..) | Event::MappingStart(..));
        let closes = matches!(ev, Event::SequenceEnd | Event::MappingEnd);
        if self.skip > 0 || (opens && self.stack.len() >= MAX_DEPTH) {
            if self.skip == 0 {
                self.problems.push(
                    Diagnostic::error(
                        self.source
                            .span_at(self.source.char_to_byte(mark.index()), 1),
                        format!("the YAML is nested more than {MAX_DEPTH} levels deep"),
                    )
                    .with_help("a playbook needs a handful of levels; check the indentation"),
                );
            }
            if opens {
                self.skip += 1;
            } else if closes {
                self.skip -= 1;
            }
            return;
        }
        match ev {
            Event::DocumentStart => {
                self.docs += 1;
                if self.docs == 2 {
                    self.problems.push(
                        Diagnostic::error(
                            self.source
                                .span_at(self.source.char_to_byte(mark.index()), 3),
                            "a playbook file holds exactly one YAML document",
                        )
                        .with_help("remove the second document, or split it into its own file"),
                    );
                }
            }
            Event::Scalar(value, style, anchor, _tag) => {
                let node = self.scalar(value, style, mark);
                self.push_node(node, anchor);
            }
            Event::Alias(id) => {
                let node = match self.anchors.get(&id) {
                    Some(n) => n.clone(),
                    None => Node {
                        kind: NodeKind::Null,
                        span: self
                            .source
                            .span_at(self.source.char_to_byte(mark.index()), 1),
                    },
                };
                self.push_node(node, 0);
            }
            Event::SequenceStart(anchor, _) => {
                let span = self
                    .source
                    .span_at(self.source.char_to_byte(mark.index()), 1);
                self.stack.push(Frame::Seq(Vec::new(), span, anchor));
            }
            Event::MappingStart(anchor, _) => {
                let span = self
                    .source
                    .span_at(self.source.char_to_byte(mark.index()), 1);
                self.stack.push(Frame::Map(Vec::new(), None, span, anchor));
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq(items, span, anchor)) = self.stack.pop() {
                    self.push_node(
                        Node {
                            kind: NodeKind::Seq(items),
                            span,
                        },
                        anchor,
                    );
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(entries, _, mut span, anchor)) = self.stack.pop() {
                    // The parser marks a block mapping at its first `:`; a mapping is where
                    // its first key is (flow mappings keep their `{`).
                    let flow = self.source.text().as_bytes().get(span.start) == Some(&b'{');
                    if let (false, Some((first, _))) = (flow, entries.first()) {
                        span = first.span.clone();
                    }
                    self.push_node(
                        Node {
                            kind: NodeKind::Map(entries),
                            span,
                        },
                        anchor,
                    );
                }
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
    }
}

/// YAML 1.2 core schema resolution of a plain scalar.
fn resolve_plain(value: String) -> NodeKind {
    match value.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return NodeKind::Null,
        "true" | "True" | "TRUE" => return NodeKind::Bool(true),
        "false" | "False" | "FALSE" => return NodeKind::Bool(false),
        _ => {}
    }
    let v = value.as_str();
    let int = if let Some(hex) = v.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()
    } else if let Some(oct) = v.strip_prefix("0o") {
        i64::from_str_radix(oct, 8).ok()
    } else if v
        .trim_start_matches(['-', '+'])
        .bytes()
        .all(|b| b.is_ascii_digit())
        && v.bytes().any(|b| b.is_ascii_digit())
    {
        v.parse::<i64>().ok()
    } else {
        None
    };
    if let Some(i) = int {
        return NodeKind::Int(i);
    }
    let looks_float = v.bytes().any(|b| b.is_ascii_digit())
        && v.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
        && v.contains(['.', 'e', 'E']);
    if looks_float {
        if let Ok(f) = v.parse::<f64>() {
            return NodeKind::Float(f);
        }
    }
    match v {
        ".inf" | ".Inf" | "+.inf" => NodeKind::Float(f64::INFINITY),
        "-.inf" | "-.Inf" => NodeKind::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" => NodeKind::Float(f64::NAN),
        _ => NodeKind::Str(value),
    }
}

/// How many bytes of source a scalar starting at `start` covers (its first line, for the
/// underline). Quoted scalars include their quotes.
fn scalar_len(text: &str, start: usize, style: TScalarStyle, value: &str) -> usize {
    let Some(rest) = text.get(start..) else {
        return 1;
    };
    let line_end = rest.find('\n').unwrap_or(rest.len());
    let line = &rest[..line_end];
    match style {
        TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted => {
            let q = if style == TScalarStyle::SingleQuoted {
                '\''
            } else {
                '"'
            };
            let mut chars = line.char_indices().skip(1);
            let mut prev_backslash = false;
            for (i, c) in chars.by_ref() {
                if c == q && !(q == '"' && prev_backslash) {
                    if q == '\'' && line[i + 1..].starts_with('\'') {
                        continue;
                    }
                    return i + 1;
                }
                prev_backslash = c == '\\' && !prev_backslash;
            }
            line.len().max(1)
        }
        TScalarStyle::Plain => {
            let first = value.lines().next().unwrap_or("");
            if !first.is_empty() && line.starts_with(first) {
                first.len()
            } else {
                line.trim_end().len().clamp(1, 80)
            }
        }
        _ => line.trim_end().len().clamp(1, 80),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Node {
        parse(&Source::new("t.yaml", text)).expect("parses")
    }

    #[test]
    fn positions_are_one_based_lines_and_columns() {
        let n = load("a: 1\nsteps:\n  - id: x\n    action: \"ec2.foo\"\n");
        let steps = n.get("steps").unwrap().as_seq().unwrap();
        let action = steps[0].get("action").unwrap();
        assert_eq!(action.as_str(), Some("ec2.foo"));
        assert_eq!((action.span.line, action.span.column), (4, 13));
        assert_eq!(action.span.len, "\"ec2.foo\"".len());
        let id = steps[0].get("id").unwrap();
        assert_eq!((id.span.line, id.span.column, id.span.len), (3, 9, 1));
    }

    #[test]
    fn scalars_resolve_to_core_types() {
        let n = load("a: 1\nb: true\nc: '1'\nd: 1.5\ne: ~\nf: 4h\n");
        assert_eq!(n.get("a").unwrap().kind, NodeKind::Int(1));
        assert_eq!(n.get("b").unwrap().kind, NodeKind::Bool(true));
        assert_eq!(n.get("c").unwrap().kind, NodeKind::Str("1".into()));
        assert_eq!(n.get("d").unwrap().kind, NodeKind::Float(1.5));
        assert_eq!(n.get("e").unwrap().kind, NodeKind::Null);
        assert_eq!(n.get("f").unwrap().kind, NodeKind::Str("4h".into()));
    }

    #[test]
    fn duplicate_keys_are_reported_at_the_second() {
        let err = parse(&Source::new("t.yaml", "a: 1\nb: 2\na: 3\n")).unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!((err[0].span.line, err[0].span.column), (3, 1));
        assert!(err[0].message.contains("duplicate key \"a\""));
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let err = parse(&Source::new("t.yaml", "a:\n  b: [1, 2\nc: 3\n")).unwrap_err();
        assert!(err[0].message.starts_with("YAML syntax error"));
        assert!(err[0].span.line >= 2);
    }

    #[test]
    fn aliases_expand() {
        let n = load("x: &a [1, 2]\ny: *a\n");
        assert_eq!(n.get("y").unwrap().as_seq().unwrap().len(), 2);
    }
}
