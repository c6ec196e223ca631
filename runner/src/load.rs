//! Stage 1: YAML text -> a tree of [`Node`]s that remember where they came from.
//!
//! `serde_yaml` only locates its own syntax errors, but every semantic diagnostic ("unknown
//! action on line 25") needs the position of the node it is about. So the loader builds its
//! own tree from `yaml-rust2`'s marked parser events: each node keeps its byte span, line and
//! column. Scalars are resolved to YAML 1.2 core types (null, bool, int, float, string);
//! quoted scalars are always strings. Anchors and aliases are expanded.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::Path;

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
///
/// Loading is bounded whatever the text: nesting ([`MAX_DEPTH`]), values ([`MAX_NODES`])
/// and what aliases may copy ([`MAX_ALIASES`], [`MAX_ALIAS_NODES`], [`MAX_ALIAS_BYTES`]) are
/// capped, and each refusal names the alias (and its anchor) or the place where a limit was
/// passed. Every step costs time in proportion to the text or to what it builds (no scan of
/// a whole line or mapping per value), so a file of [`MAX_FILE_BYTES`] loads in well under a
/// second.
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
        nodes: 0,
        aliases: 0,
        alias_nodes: 0,
        alias_bytes: 0,
        fatal: None,
    };
    let mut parser = Parser::new_from_str(text);
    // Event by event rather than `Parser::load`, which recurses once per nesting level and
    // overflows the stack on deeply nested input before any limit applies.
    loop {
        match parser.next_token() {
            Ok((Event::StreamEnd, _)) => break,
            Ok((ev, mark)) => {
                builder.on_event(ev, mark);
                if let Some(fatal) = builder.fatal.take() {
                    // A limit was passed: stop at once, so that loading stays bounded.
                    let mut problems = builder.problems;
                    problems.push(fatal);
                    return Err(problems);
                }
            }
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
    if info.contains("recursion limit") {
        // The scanner's own guard (about 256 open brackets), before MAX_DEPTH can apply.
        return Diagnostic::error(
            source.span_at(index, 1),
            format!("the YAML nests too deep here (more than {MAX_DEPTH} levels are refused)"),
        )
        .with_help("a playbook nests a few levels; close the brackets or split the value");
    }
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

/// The largest file read as a playbook, scenario or inputs file (2 MiB; a large real
/// playbook is tens of KiB). Checked while reading, so that `/dev/zero` is not read whole.
pub const MAX_FILE_BYTES: u64 = 2 * 1024 * 1024;
/// The deepest nesting of collections the loader builds, aliases included.
pub const MAX_DEPTH: usize = 64;
/// The most values (scalars and collections) a loaded tree may hold, alias copies included.
pub const MAX_NODES: usize = 50_000;
/// The most aliases one file may use.
pub const MAX_ALIASES: usize = 1_000;
/// The most values all aliases together may add to the tree.
pub const MAX_ALIAS_NODES: usize = 20_000;
/// The most scalar bytes all aliases together may add to the tree.
pub const MAX_ALIAS_BYTES: usize = 1024 * 1024;

/// Reads a YAML file (a playbook, a scenario, an inputs file) into a [`Source`], refusing
/// anything larger than [`MAX_FILE_BYTES`] before it is read whole, and text that is not
/// UTF-8. A FIFO with no writer reads as empty instead of blocking the open.
pub fn read_file(path: &Path) -> Result<Source, Diagnostic> {
    let name = path.display().to_string();
    let fail = |msg: String| Diagnostic::error(Span::none(&name), msg);
    let mut file = open_nonblocking(path).map_err(|e| fail(format!("cannot read {name}: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| fail(format!("cannot read {name}: {e}")))?;
    if meta.is_dir() {
        return Err(fail(format!("cannot read {name}: it is a directory")));
    }
    let too_large = || {
        fail(format!(
            "{name} is larger than {} MiB; a playbook, scenario or inputs file is at most {} bytes",
            MAX_FILE_BYTES / (1024 * 1024),
            MAX_FILE_BYTES
        ))
        .with_help("this is not a playbook; check the path")
    };
    if meta.is_file() && meta.len() > MAX_FILE_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    (&mut file)
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("cannot read {name}: {e}")))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large());
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        fail(format!(
            "cannot read {name}: it is not UTF-8 text (invalid byte at offset {at})"
        ))
    })?;
    Ok(Source::new(name, text))
}

/// Opens for reading without blocking on a FIFO that has no writer, then makes reads
/// blocking again (a pipe that does have a writer, `<(...)`, is read normally).
pub(crate) fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    #[cfg(unix)]
    {
        use rustix::fs::OFlags;
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags((OFlags::NONBLOCK | OFlags::NOCTTY).bits() as i32)
            .open(path)?;
        let flags = rustix::fs::fcntl_getfl(&file)?;
        rustix::fs::fcntl_setfl(&file, flags - OFlags::NONBLOCK)?;
        Ok(file)
    }
    #[cfg(not(unix))]
    {
        std::fs::File::open(path)
    }
}

enum Frame {
    /// items, span, anchor, index in the parent
    Seq(Vec<Node>, Span, usize, usize),
    /// entries, pending key, span, anchor, index in the parent, keys seen (text -> line)
    Map(
        Vec<(Node, Node)>,
        Option<Node>,
        Span,
        usize,
        usize,
        HashMap<String, usize>,
    ),
}

impl Frame {
    /// The index the next child gets (in a mapping, keys are even and values odd).
    fn next_index(&self) -> usize {
        match self {
            Frame::Seq(items, ..) => items.len(),
            Frame::Map(entries, pending, ..) => 2 * entries.len() + usize::from(pending.is_some()),
        }
    }

    fn index_in_parent(&self) -> usize {
        match self {
            Frame::Seq(_, _, _, i) | Frame::Map(_, _, _, _, i, _) => *i,
        }
    }

    /// The finished child at `index`, if it is finished.
    fn child(&self, index: usize) -> Option<&Node> {
        match self {
            Frame::Seq(items, ..) => items.get(index),
            Frame::Map(entries, pending, ..) => match entries.get(index / 2) {
                Some((k, v)) => Some(if index.is_multiple_of(2) { k } else { v }),
                None if index == 2 * entries.len() => pending.as_ref(),
                None => None,
            },
        }
    }
}

/// The child of a finished node at `index` (as [`Frame::child`]).
fn node_child(node: &Node, index: usize) -> Option<&Node> {
    match &node.kind {
        NodeKind::Seq(items) => items.get(index),
        NodeKind::Map(entries) => {
            entries
                .get(index / 2)
                .map(|(k, v)| if index.is_multiple_of(2) { k } else { v })
        }
        _ => None,
    }
}

/// What copying a node costs: values, scalar bytes, nesting levels.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Weight {
    nodes: usize,
    bytes: usize,
    height: usize,
}

/// The weight of `node`, walking at most `limit` nodes (a larger node returns a weight
/// with more than `limit` nodes, and the walk stops there).
fn weight(node: &Node, limit: usize) -> Weight {
    let mut w = Weight::default();
    let mut todo: Vec<(&Node, usize)> = vec![(node, 0)];
    while let Some((n, depth)) = todo.pop() {
        w.nodes += 1;
        if w.nodes > limit {
            break;
        }
        match &n.kind {
            NodeKind::Str(s) => w.bytes += s.len(),
            NodeKind::Seq(items) => {
                w.height = w.height.max(depth + 1);
                todo.extend(items.iter().map(|i| (i, depth + 1)));
            }
            NodeKind::Map(entries) => {
                w.height = w.height.max(depth + 1);
                for (k, v) in entries {
                    todo.push((k, depth + 1));
                    todo.push((v, depth + 1));
                }
            }
            _ => {}
        }
    }
    w
}

struct Builder<'a> {
    source: &'a Source,
    stack: Vec<Frame>,
    /// Where each anchored node is in the tree (child indices from the root), and how deep
    /// it sat. Aliases copy from there: an anchor costs nothing until it is used.
    anchors: HashMap<usize, Vec<usize>>,
    root: Option<Node>,
    docs: usize,
    /// How deep inside a collection nested beyond [`MAX_DEPTH`] the parser is (0: not).
    skip: usize,
    problems: Vec<Diagnostic>,
    /// Values built so far, alias copies included.
    nodes: usize,
    aliases: usize,
    alias_nodes: usize,
    alias_bytes: usize,
    /// A limit was passed: loading stops here.
    fatal: Option<Diagnostic>,
}

impl Builder<'_> {
    fn push_node(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            let mut path: Vec<usize> = self
                .stack
                .iter()
                .skip(1)
                .map(Frame::index_in_parent)
                .collect();
            if let Some(parent) = self.stack.last() {
                path.push(parent.next_index());
            }
            self.anchors.insert(anchor, path);
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq(items, ..)) => {
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
            Some(Frame::Map(entries, pending, _, _, _, seen)) => match pending.take() {
                None => *pending = Some(node),
                Some(key) => {
                    let mut node = node;
                    if node.kind == NodeKind::Null && node.span.len == 0 {
                        node.span = key.span.clone();
                    }
                    if let Some(text) = key.scalar_text() {
                        // A map of the keys seen, not a scan of the entries: a mapping of
                        // 100,000 keys must not take quadratic time.
                        match seen.get(&text) {
                            Some(&first_line) => self.problems.push(
                                Diagnostic::error(
                                    key.span.clone(),
                                    format!("duplicate key \"{text}\""),
                                )
                                .with_help(format!(
                                    "\"{text}\" is already set on line {first_line}; keep one"
                                )),
                            ),
                            None => {
                                seen.insert(text, key.span.line);
                            }
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
            let line = self
                .source
                .text()
                .get(start..self.source.line_end(start))
                .unwrap_or("");
            scalar_len(line, style, &value)
        };
        let span = self.source.span_at(start, len);
        let kind = if style == TScalarStyle::Plain {
            resolve_plain(value)
        } else {
            NodeKind::Str(value)
        };
        Node { kind, span }
    }

    fn span_of(&self, mark: Marker, len: usize) -> Span {
        self.source
            .span_at(self.source.char_to_byte(mark.index()), len)
    }

    /// Counts one more value; past [`MAX_NODES`] loading stops.
    fn count_node(&mut self, mark: Marker) {
        self.nodes += 1;
        if self.nodes > MAX_NODES && self.fatal.is_none() {
            self.fatal = Some(
                Diagnostic::error(
                    self.span_of(mark, 1),
                    format!("the YAML holds more than {MAX_NODES} values; loading stopped here"),
                )
                .with_help("a playbook holds a few thousand at most; split the file or remove what repeats"),
            );
        }
    }

    /// The node an anchor marks, found by its path from the root (it is finished; some of
    /// its ancestors may still be open).
    fn anchored(&self, path: &[usize]) -> Option<&Node> {
        let mut frames = self.stack.iter().peekable();
        let mut node: Option<&Node> = None;
        for (depth, &index) in path.iter().enumerate() {
            node = match node {
                Some(n) => Some(node_child(n, index)?),
                None => {
                    let frame = frames.next()?;
                    match frame.child(index) {
                        Some(n) => Some(n),
                        // The child is the next open frame (an alias inside its own anchor).
                        None if frames.peek()?.index_in_parent() == index
                            && depth + 1 < path.len() =>
                        {
                            None
                        }
                        None => return None,
                    }
                }
            };
        }
        if path.is_empty() {
            return self.root.as_ref();
        }
        node
    }

    /// The text of the alias at `mark` (`*name`), for messages.
    fn alias_name(&self, mark: Marker) -> &str {
        let text = self.source.text();
        let start = self.source.char_to_byte(mark.index());
        let rest = text.get(start..).unwrap_or("");
        let end = rest
            .char_indices()
            .skip(1)
            .find(|(_, c)| c.is_whitespace() || matches!(c, ',' | '[' | ']' | '{' | '}'))
            .map_or(rest.len(), |(i, _)| i);
        &rest[..end]
    }

    /// Where the anchor an alias refers to is defined: the last `&name` before the alias.
    fn anchor_line(&self, alias: &str, before: usize) -> Option<usize> {
        let text = self.source.text();
        let anchor = format!("&{}", alias.strip_prefix('*').unwrap_or(alias));
        let mut end = before.min(text.len());
        while let Some(at) = text[..end].rfind(&anchor) {
            let next = text[at + anchor.len()..].chars().next();
            if next.is_none_or(|c| c.is_whitespace() || matches!(c, ',' | ']' | '}')) {
                return Some(self.source.span_at(at, 1).line);
            }
            end = at;
        }
        None
    }

    /// An alias: a copy of its anchor's node, within the alias limits.
    fn alias(&mut self, id: usize, mark: Marker) {
        let name = self.alias_name(mark).to_owned();
        let at = self.source.char_to_byte(mark.index());
        let span = self.source.span_at(at, name.len().max(1));
        let anchor_desc = match self.anchor_line(&name, at) {
            Some(line) => format!("anchor \"&{}\" on line {line}", &name[1..]),
            None => format!("anchor \"&{}\"", name.get(1..).unwrap_or("")),
        };
        self.aliases += 1;
        let refuse = |msg: String| {
            Diagnostic::error(span.clone(), msg).with_help(
                "anchors and aliases are for sharing a small block; write the values out, or split the file",
            )
        };
        if self.aliases > MAX_ALIASES {
            self.fatal = Some(refuse(format!(
                "alias \"{name}\" is one alias too many: a file may use at most {MAX_ALIASES}"
            )));
            return;
        }
        let node_budget = MAX_ALIAS_NODES - self.alias_nodes;
        let found = self
            .anchors
            .get(&id)
            .and_then(|path| self.anchored(path))
            .map(|n| (weight(n, node_budget), n));
        let Some((w, node)) = found else {
            // An alias inside its own anchor (recursive): nothing to copy.
            let node = Node {
                kind: NodeKind::Null,
                span,
            };
            self.push_node(node, 0);
            return;
        };
        if w.nodes > node_budget {
            self.fatal = Some(refuse(format!(
                "alias \"{name}\" ({anchor_desc}) copies more than {node_budget} values: aliases may add at most {MAX_ALIAS_NODES} values in all"
            )));
            return;
        }
        if w.bytes > MAX_ALIAS_BYTES - self.alias_bytes {
            self.fatal = Some(refuse(format!(
                "alias \"{name}\" ({anchor_desc}) copies {} bytes of text: aliases may add at most {MAX_ALIAS_BYTES} bytes in all, {} are left",
                w.bytes,
                MAX_ALIAS_BYTES - self.alias_bytes
            )));
            return;
        }
        if self.stack.len() + w.height > MAX_DEPTH {
            self.fatal = Some(refuse(format!(
                "alias \"{name}\" ({anchor_desc}) nests the YAML more than {MAX_DEPTH} levels deep"
            )));
            return;
        }
        let mut node = node.clone();
        // The copy is where the alias is, for diagnostics about it.
        node.span = span;
        self.alias_nodes += w.nodes;
        self.alias_bytes += w.bytes;
        self.nodes += w.nodes - 1;
        self.count_node(mark);
        self.push_node(node, 0);
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
                        self.span_of(mark, 1),
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
                            self.span_of(mark, 3),
                            "a playbook file holds exactly one YAML document",
                        )
                        .with_help("remove the second document, or split it into its own file"),
                    );
                }
            }
            Event::Scalar(value, style, anchor, _tag) => {
                self.count_node(mark);
                let node = self.scalar(value, style, mark);
                self.push_node(node, anchor);
            }
            Event::Alias(id) => self.alias(id, mark),
            Event::SequenceStart(anchor, _) => {
                let span = self.span_of(mark, 1);
                let index = self.stack.last().map_or(0, Frame::next_index);
                self.stack.push(Frame::Seq(Vec::new(), span, anchor, index));
            }
            Event::MappingStart(anchor, _) => {
                let span = self.span_of(mark, 1);
                let index = self.stack.last().map_or(0, Frame::next_index);
                self.stack.push(Frame::Map(
                    Vec::new(),
                    None,
                    span,
                    anchor,
                    index,
                    HashMap::new(),
                ));
            }
            Event::SequenceEnd => {
                self.count_node(mark);
                if let Some(Frame::Seq(items, span, anchor, _)) = self.stack.pop() {
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
                self.count_node(mark);
                if let Some(Frame::Map(entries, _, mut span, anchor, _, _)) = self.stack.pop() {
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

/// How many bytes of source a scalar covers (its first line, for the underline), given the
/// rest of the line it starts on. Quoted scalars include their quotes.
fn scalar_len(line: &str, style: TScalarStyle, value: &str) -> usize {
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

    #[test]
    fn aliases_expand_anchors_inside_open_collections() {
        // The anchored node's parents are still open when the alias comes.
        let n = load("a:\n  b: &x {k: [1, 2]}\n  c: *x\n  d:\n    - &y 3\n    - *y\n");
        let a = n.get("a").unwrap();
        assert_eq!(
            a.get("c").unwrap().to_json(),
            serde_json::json!({"k": [1, 2]})
        );
        assert_eq!(a.get("d").unwrap().to_json(), serde_json::json!([3, 3]));
        // The copy is placed at the alias.
        let c = a.get("c").unwrap();
        assert_eq!((c.span.line, c.span.column), (3, 6));
        // Anchored keys, and a redefined anchor (the latest wins).
        let n = load("? &k key\n: 1\nv: *k\nw: &k 2\nz: *k\n");
        assert_eq!(n.get("v").unwrap().as_str(), Some("key"));
        assert_eq!(n.get("z").unwrap().kind, NodeKind::Int(2));
    }

    #[test]
    fn an_alias_inside_its_own_anchor_is_null() {
        let n = load("a: &x [1, *x]\n");
        assert_eq!(n.get("a").unwrap().to_json(), serde_json::json!([1, null]));
    }

    fn refused(text: &str) -> Diagnostic {
        let err = parse(&Source::new("t.yaml", text)).expect_err("refused");
        err.into_iter().last().unwrap()
    }

    /// Billion laughs: each level is ten aliases of the one above.
    fn laughs(levels: usize, open: &str, close: &str) -> String {
        let mut text = format!("a0: &a0 {open}\"lol\"{close}\n");
        for i in 1..levels {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} {open}{refs}{close}\n"));
        }
        text
    }

    #[test]
    fn billion_laughs_is_refused_at_the_alias_that_passes_the_limit() {
        let d = refused(&laughs(12, "[", "]"));
        // a4 = 10,000+ values: the first alias of a4 on line 6 would bring the total past.
        assert!(d.message.starts_with("alias \"*a"), "{d:?}");
        assert!(d.message.contains("copies more than"), "{d:?}");
        assert!(d.message.contains("anchor \"&a"), "{d:?}");
        assert!(d.help.as_deref().unwrap().contains("anchors and aliases"));
        assert!(d.span.line <= 6, "{d:?}");
        // The same with mappings.
        let mut text = String::from("a0: &a0 {k: lol}\n");
        for i in 1..12 {
            let refs: Vec<String> = (0..10).map(|j| format!("k{j}: *a{}", i - 1)).collect();
            text.push_str(&format!("a{i}: &a{i} {{{}}}\n", refs.join(", ")));
        }
        let d = refused(&text);
        assert!(d.message.contains("copies more than"), "{d:?}");
    }

    #[test]
    fn aliases_of_a_huge_scalar_are_refused() {
        let big = "x".repeat(300_000);
        let text = format!("a: &big \"{big}\"\nb: [*big, *big, *big, *big]\n");
        let d = refused(&text);
        assert_eq!((d.span.line, d.span.column), (2, 23), "{d:?}");
        assert!(
            d.message
                .contains("alias \"*big\" (anchor \"&big\" on line 1) copies 300000 bytes"),
            "{d:?}"
        );
    }

    #[test]
    fn too_many_aliases_are_refused() {
        let text = format!("a: &s x\nb: [{}]\n", vec!["*s"; MAX_ALIASES + 5].join(", "));
        let d = refused(&text);
        assert!(
            d.message
                .contains("one alias too many: a file may use at most 1000"),
            "{d:?}"
        );
        assert_eq!(d.span.line, 2);
        assert_eq!(d.span.column, 5 + 4 * MAX_ALIASES);
    }

    #[test]
    fn aliases_cannot_nest_past_the_depth_limit() {
        let deep = format!("{}1{}", "[".repeat(40), "]".repeat(40));
        let text = format!("a: &d {deep}\nb: {}*d{}\n", "[".repeat(30), "]".repeat(30));
        let d = refused(&text);
        assert!(
            d.message
                .contains("nests the YAML more than 64 levels deep"),
            "{d:?}"
        );
        assert_eq!((d.span.line, d.span.column), (2, 34));
        // Chains of anchors that each add a level.
        let mut text = String::from("a0: &a0 [1]\n");
        for i in 1..100 {
            text.push_str(&format!("a{i}: &a{i} [*a{}]\n", i - 1));
        }
        let d = refused(&text);
        assert!(d.message.contains("levels deep"), "{d:?}");
    }

    #[test]
    fn too_many_values_are_refused() {
        let text = format!("[{}]", "1,".repeat(MAX_NODES + 10));
        let d = refused(&text);
        assert!(
            d.message.contains(&format!("more than {MAX_NODES} values")),
            "{d:?}"
        );
        assert_eq!(d.span.line, 1);
    }

    #[test]
    fn a_long_one_line_file_loads_in_linear_time() {
        // Each value's position must not cost a scan of the line.
        let text = format!("[{}]", "ab, ".repeat(MAX_NODES - 10));
        let t = std::time::Instant::now();
        let n = load(&text);
        assert_eq!(n.as_seq().unwrap().len(), MAX_NODES - 10);
        assert!(t.elapsed().as_secs() < 10, "{:?}", t.elapsed());
        let last = n.as_seq().unwrap().last().unwrap();
        assert_eq!(last.span.column, 2 + 4 * (MAX_NODES - 11));
    }

    #[test]
    fn a_mapping_of_many_keys_finds_duplicates_without_quadratic_time() {
        // 20,000 keys and their values stay under MAX_NODES.
        let mut text: String = (0..20_000).map(|i| format!("k{i}: 1\n")).collect();
        text.push_str("k7: 2\n");
        let t = std::time::Instant::now();
        let err = parse(&Source::new("t.yaml", text.as_str())).unwrap_err();
        assert!(t.elapsed().as_secs() < 10, "{:?}", t.elapsed());
        assert_eq!(err.len(), 1, "{err:?}");
        assert_eq!(err[0].span.line, 20_001);
        assert_eq!(
            err[0].help.as_deref(),
            Some("\"k7\" is already set on line 8; keep one")
        );
    }

    #[test]
    fn files_are_read_within_the_size_limit() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.yaml");
        std::fs::write(&big, vec![b'#'; MAX_FILE_BYTES as usize + 1]).unwrap();
        let d = read_file(&big).unwrap_err();
        assert!(d.message.contains("is larger than 2 MiB"), "{d:?}");
        let ok = dir.path().join("ok.yaml");
        std::fs::write(&ok, "a: 1\n").unwrap();
        assert_eq!(read_file(&ok).unwrap().text(), "a: 1\n");
        // A device that never ends is read only up to the limit.
        let d = read_file(Path::new("/dev/zero")).unwrap_err();
        assert!(d.message.contains("is larger than"), "{d:?}");
        let d = read_file(dir.path()).unwrap_err();
        assert!(d.message.contains("directory"), "{d:?}");
        std::fs::write(&ok, [b'a', b':', 0xff]).unwrap();
        assert!(read_file(&ok).unwrap_err().message.contains("not UTF-8"));
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_without_a_writer_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("p.yaml");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert_eq!(read_file(&fifo).unwrap().text(), "");
    }
}
