//! Diagnostics: what is wrong, where (file:line:col), and what would be right.
//!
//! Rendered like a compiler error, with the offending text underlined:
//!
//! ```text
//! error: unknown action "ec2.snapshot_volume"
//!   --> playbooks/x.yaml:25:13
//!    |
//! 25 |     action: ec2.snapshot_volume
//!    |             ^^^^^^^^^^^^^^^^^^^
//!    = help: did you mean "ec2.snapshot_volumes"?
//! ```

use std::fmt::Write as _;
use std::sync::Arc;

use serde::Serialize;

/// A source file: its name (as given on the command line) and text.
#[derive(Clone, Debug)]
pub struct Source {
    inner: Arc<SourceInner>,
}

#[derive(Debug)]
struct SourceInner {
    name: String,
    text: String,
    line_starts: Vec<usize>,
    /// Byte offset of each char, when the text is not all ASCII (else char = byte).
    char_starts: Option<Vec<usize>>,
}

impl Source {
    /// A source named `name` holding `text`.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Source {
        let text = text.into();
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        let char_starts = (!text.is_ascii()).then(|| text.char_indices().map(|(i, _)| i).collect());
        Source {
            inner: Arc::new(SourceInner {
                name: name.into(),
                text,
                line_starts,
                char_starts,
            }),
        }
    }

    /// The file name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The whole text.
    pub fn text(&self) -> &str {
        &self.inner.text
    }

    /// The byte offset of the `index`th char (the YAML parser counts chars); clamped to the
    /// end of the text.
    pub fn char_to_byte(&self, index: usize) -> usize {
        match &self.inner.char_starts {
            None => index.min(self.text().len()),
            Some(starts) => starts.get(index).copied().unwrap_or(self.text().len()),
        }
    }

    /// A span of `len` bytes starting at byte `start` (clamped to the text).
    pub fn span_at(&self, start: usize, len: usize) -> Span {
        let text = self.text();
        let mut start = start.min(text.len());
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let line_idx = match self.inner.line_starts.binary_search(&start) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let line_start = self.inner.line_starts[line_idx];
        // In O(log n), not by counting the line's chars: a one-line file of a million
        // values would otherwise take quadratic time.
        let column = match &self.inner.char_starts {
            None => start - line_start,
            Some(starts) => {
                starts.partition_point(|&b| b < start) - starts.partition_point(|&b| b < line_start)
            }
        } + 1;
        let mut end = (start + len).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        Span {
            file: self.name().to_owned(),
            start,
            len: end - start,
            line: line_idx + 1,
            column,
        }
    }

    /// The byte offset where the line holding byte `at` ends (its newline, or the end of
    /// the text).
    pub fn line_end(&self, at: usize) -> usize {
        let starts = &self.inner.line_starts;
        let next = starts.partition_point(|&s| s <= at);
        starts
            .get(next)
            .map_or(self.text().len(), |&s| s - 1)
            .max(at.min(self.text().len()))
    }

    /// The text of line `line` (1-based), without its newline.
    pub fn line_text(&self, line: usize) -> &str {
        let starts = &self.inner.line_starts;
        let Some(&start) = starts.get(line.wrapping_sub(1)) else {
            return "";
        };
        let end = starts.get(line).map(|e| e - 1).unwrap_or(self.text().len());
        self.text()[start..end.max(start)].trim_end_matches('\r')
    }
}

/// Where a node is: file, byte offset and length, 1-based line and column (in characters).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Span {
    /// File name.
    pub file: String,
    /// Byte offset of the start.
    #[serde(skip)]
    pub start: usize,
    /// Length in bytes (for the underline).
    #[serde(skip)]
    pub len: usize,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl Span {
    /// A span that points at no file position (command-line input).
    pub fn none(what: impl Into<String>) -> Span {
        Span {
            file: what.into(),
            start: 0,
            len: 0,
            line: 0,
            column: 0,
        }
    }
}

/// How bad a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The playbook cannot run.
    Error,
    /// It can run, but probably not as meant.
    Warning,
}

/// One problem found in a playbook or an input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Where.
    pub span: Span,
    /// What is wrong (lowercase, no trailing period).
    pub message: String,
    /// What would be right, when known.
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error at `span`.
    pub fn error(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            span,
            message: message.into(),
            help: None,
        }
    }

    /// A warning at `span`.
    pub fn warning(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(span, message)
        }
    }

    /// Adds a suggestion.
    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        let help = help.into();
        if !help.is_empty() {
            self.help = Some(help);
        }
        self
    }

    /// The stable rule id of this diagnostic (`IRR0003`), see [`rule_of`].
    pub fn code(&self) -> &'static str {
        rule_of(&self.message).id
    }

    /// `true` for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Renders for a terminal, with the source line and a caret underline when `source` is
    /// the file the span points into.
    pub fn render(&self, source: Option<&Source>) -> String {
        let mut out = String::new();
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let _ = writeln!(out, "{label}: {}", self.message);
        if self.span.line == 0 {
            let _ = writeln!(out, "  --> {}", self.span.file);
        } else {
            let _ = writeln!(
                out,
                "  --> {}:{}:{}",
                self.span.file, self.span.line, self.span.column
            );
        }
        if let Some(src) = source.filter(|s| s.name() == self.span.file && self.span.line > 0) {
            let (line, column) = window(src, self.span.line, self.span.start, self.span.column);
            let num = self.span.line.to_string();
            let pad = " ".repeat(num.len());
            let before: String = line.chars().take(column - 1).collect();
            let indent: String = before
                .chars()
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let rest_chars = line.chars().count().saturating_sub(column - 1);
            let width = src
                .text()
                .get(self.span.start..self.span.start + self.span.len)
                .map(|t| t.lines().next().unwrap_or("").chars().count())
                .unwrap_or(1)
                .clamp(1, rest_chars.max(1));
            let _ = writeln!(out, "{pad} |");
            let _ = writeln!(out, "{num} | {line}");
            let _ = writeln!(out, "{pad} | {indent}{}", "^".repeat(width));
            if let Some(help) = &self.help {
                let _ = writeln!(out, "{pad} = help: {help}");
            }
        } else if let Some(help) = &self.help {
            let _ = writeln!(out, "   = help: {help}");
        }
        out
    }

    /// The JSON form of the CLI contract: `file`, `line`, `column`, `message` (plus
    /// `severity` and `help`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "code": self.code(),
            "file": self.span.file,
            "line": self.span.line,
            "column": self.span.column,
            "severity": self.severity,
            "message": self.message,
            "help": self.help,
        })
    }
}

/// A kind of diagnostic with a stable id (`IRR0001`, ...): the SARIF rule id, the `code` of
/// `irr validate --output json`, documented in `docs/playbook-reference.md`. Ids are never
/// reused or renumbered; a new kind of mistake gets the next free id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// `IRR0001`.
    pub id: &'static str,
    /// `yaml-syntax`.
    pub name: &'static str,
    /// One sentence.
    pub summary: &'static str,
}

const fn rule(id: &'static str, name: &'static str, summary: &'static str) -> Rule {
    Rule { id, name, summary }
}

/// Every rule, in id order.
pub const RULES: &[Rule] = &[
    rule("IRR0000", "other", "a problem no more specific rule covers"),
    rule(
        "IRR0001",
        "yaml-syntax",
        "the file is not well-formed YAML, is empty, holds several documents or repeats a key",
    ),
    rule(
        "IRR0002",
        "document-kind",
        "the file is not an irr/v1 Playbook mapping",
    ),
    rule(
        "IRR0003",
        "unknown-key",
        "a key the format does not have (usually a typo)",
    ),
    rule(
        "IRR0004",
        "missing-key",
        "a required key is missing or empty",
    ),
    rule(
        "IRR0005",
        "wrong-shape",
        "a value has the wrong shape (a list where a mapping belongs, ...)",
    ),
    rule(
        "IRR0006",
        "metadata",
        "metadata.name, metadata.version or metadata.labels is not valid",
    ),
    rule(
        "IRR0007",
        "unknown-action",
        "the action is not in the catalog (`irr actions` lists them)",
    ),
    rule(
        "IRR0008",
        "step-id",
        "a step id is empty, badly formed or used twice",
    ),
    rule(
        "IRR0009",
        "dependency",
        "needs names an unknown or finally step, the step itself, or makes a cycle",
    ),
    rule(
        "IRR0010",
        "parameter",
        "a parameter is unknown, missing, or does not fit its type",
    ),
    rule(
        "IRR0011",
        "reference",
        "a template refers to something that does not exist or is not available there",
    ),
    rule(
        "IRR0012",
        "template",
        "a template is malformed, unquoted, or a condition that is always true",
    ),
    rule(
        "IRR0013",
        "input-declaration",
        "an input declaration is malformed or its default does not fit its type",
    ),
    rule(
        "IRR0014",
        "step-setting",
        "timeout, retries or on_failure of a step is not valid",
    ),
    rule("IRR0015", "evidence", "the evidence section, or an evidence.capture name, is not valid"),
    rule("IRR0016", "for-each", "for_each does not give a list"),
    rule(
        "IRR0017",
        "input-value",
        "a value given with --input or --inputs is unknown, missing or does not fit",
    ),
    rule("IRR0018", "file", "a file cannot be read"),
    rule(
        "IRR0019",
        "command-line",
        "a command-line argument is missing or not valid",
    ),
    rule(
        "IRR0020",
        "limit",
        "the file passes a limit of the loader or validator (size, nesting, values, aliases, problems listed)",
    ),
    rule(
        "IRR0021",
        "trigger",
        "the trigger section is not valid: a finding type, custom action, input or JSONPath",
    ),
    rule(
        "IRR0022",
        "targets",
        "the targets section (or --targets file) is not valid: an account, unit, region, role, external id or concurrency",
    ),
];

/// The rule of a diagnostic message. Diagnostics are classified by their wording in this one
/// table (the wording is pinned by the fixture suite), so every message maps to the same id
/// on every run.
pub fn rule_of(message: &str) -> &'static Rule {
    let m = message;
    let has = |s: &str| m.contains(s);
    let starts = |s: &str| m.starts_with(s);
    let id = if starts("YAML syntax error")
        || starts("a playbook file holds exactly one")
        || starts("the file is empty")
        || starts("duplicate key")
        || starts("the file is larger")
        || starts("the document")
    {
        "IRR0001"
    } else if starts("unsupported apiVersion")
        || starts("unsupported kind")
        || starts("the playbook must be a mapping")
    {
        "IRR0002"
    } else if starts("cannot read ") {
        "IRR0018"
    } else if starts("--input")
        || (starts("input \"") && has("\": "))
        || starts("missing input")
        || (starts("unknown input \"") && !has("\" in \""))
    {
        "IRR0017"
    } else if starts("--") || starts("case id") || starts("an account id") {
        "IRR0019"
    } else if starts("alias \"")
        || starts("the YAML holds more than")
        || starts("the YAML is nested more than")
        || starts("the YAML nests too deep")
        || (has(" is larger than ") && has(" MiB"))
        || has(" more problems after line ")
    {
        "IRR0020"
    } else if starts("unknown key") || has(" more unknown keys in ") {
        "IRR0003"
    } else if starts("trigger") {
        "IRR0021"
    } else if starts("targets") || (starts("account ") && has(" is written as a number")) {
        "IRR0022"
    } else if starts("metadata") {
        "IRR0006"
    } else if starts("evidence.") || starts("evidence name ") {
        "IRR0015"
    } else if starts("unknown action") || starts("a step's action is empty") {
        "IRR0007"
    } else if starts("duplicate step id") || starts("step id ") || starts("a step's id is empty") {
        "IRR0008"
    } else if starts("needs ")
        || starts("dependency cycle")
        || has(" needs itself")
        || has("a finally step, which only runs after all steps")
    {
        "IRR0009"
    } else if starts("for_each needs") {
        "IRR0016"
    } else if has("parameter \"")
        || has("takes exactly one of")
        || has("needs at least one of")
        || starts("with must be")
    {
        "IRR0010"
    } else if starts("unknown reference")
        || starts("unknown step")
        || has(") has no output")
        || has("is only defined in the with")
        || has(" refers to itself")
        || has("refers to finally step")
        || has("cannot be used here")
        || has("needs an output name")
        || starts("unknown input \"")
    {
        "IRR0011"
    } else if starts("bad template")
        || starts("the template ")
        || has("outside {{ }}")
        || starts("when must be")
    {
        "IRR0012"
    } else if starts("unknown input type")
        || starts("the default of input")
        || starts("input name")
        || starts("input \"")
        || starts("secret input \"")
        || (starts("\"secret\" of input") && has("must be true or false"))
        || starts("unknown item type")
    {
        "IRR0013"
    } else if starts("bad timeout") || starts("retries ") || starts("on_failure ") {
        "IRR0014"
    } else if starts("missing \"")
        || has(" has no \"")
        || starts("a step has no")
        || has("\" is empty")
        || starts("no steps")
    {
        "IRR0004"
    } else if has("must be a")
        || has("found a")
        || has("found null")
        || has("is written directly as a list item")
        || has("but does not say of what")
    {
        "IRR0005"
    } else {
        "IRR0000"
    };
    RULES.iter().find(|r| r.id == id).unwrap_or(&RULES[0])
}

/// A file name as a SARIF `uri-reference`: `/` kept, everything but unreserved characters
/// percent-encoded.
fn uri_reference(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The diagnostics as one SARIF 2.1.0 log (for code-scanning annotations): one run of the
/// `irr` tool, every rule of [`RULES`] in the driver, one result per diagnostic with its rule
/// id, level, message (and help) and, when it has one, its file position.
pub fn sarif(problems: &[Diagnostic]) -> serde_json::Value {
    use serde_json::json;
    let rules: Vec<serde_json::Value> = RULES
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "name": r.name,
                "shortDescription": {"text": r.summary},
                "helpUri": format!("https://github.com/irr-project/irr/blob/main/docs/playbook-reference.md#{}", r.id.to_ascii_lowercase()),
            })
        })
        .collect();
    let results: Vec<serde_json::Value> = problems
        .iter()
        .map(|d| {
            let rule = rule_of(&d.message);
            let index = RULES.iter().position(|r| r.id == rule.id).unwrap_or(0);
            let text = match &d.help {
                Some(h) => format!("{} (help: {h})", d.message),
                None => d.message.clone(),
            };
            let mut physical = json!({"artifactLocation": {"uri": uri_reference(&d.span.file)}});
            if d.span.line > 0 {
                physical["region"] = json!({
                    "startLine": d.span.line,
                    "startColumn": d.span.column.max(1),
                });
            }
            json!({
                "ruleId": rule.id,
                "ruleIndex": index,
                "level": match d.severity { Severity::Error => "error", Severity::Warning => "warning" },
                "message": {"text": text},
                "locations": [{"physicalLocation": physical}],
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "irr",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://github.com/irr-project/irr",
                "rules": rules,
            }},
            "results": results,
        }],
    })
}

/// The part of line `line` shown under a diagnostic at byte `start` (1-based `column`), and
/// the column within it. A long line is cut to a window around the column (with "..." at a
/// cut), so that rendering costs the same for a one-line file of megabytes.
fn window(src: &Source, line: usize, start: usize, column: usize) -> (String, usize) {
    const BEFORE: usize = 60;
    const AFTER: usize = 120;
    let text = src.line_text(line);
    if text.len() <= BEFORE + AFTER {
        return (text.to_owned(), column);
    }
    let line_start = text.as_ptr() as usize - src.text().as_ptr() as usize;
    let rel = start.saturating_sub(line_start).min(text.len());
    let mut from = rel.saturating_sub(BEFORE);
    while !text.is_char_boundary(from) {
        from -= 1;
    }
    let mut to = (rel + AFTER).min(text.len());
    while !text.is_char_boundary(to) {
        to += 1;
    }
    let head = if from > 0 { "..." } else { "" };
    let tail = if to < text.len() { "..." } else { "" };
    let shown = format!("{head}{}{tail}", &text[from..to]);
    (shown, text[from..rel].chars().count() + head.len() + 1)
}

/// Words longer than this get no "did you mean" suggestion.
const MAX_SUGGEST_LEN: usize = 128;

/// The closest candidate to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    // Nobody mistypes a word this long, and the edit distance costs its length times each
    // candidate's: a huge key in a hostile file must not make validation slow.
    if word.len() > MAX_SUGGEST_LEN {
        return None;
    }
    let limit = (word.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(word, c), c))
        .filter(|(d, c)| *d <= limit || c.starts_with(word) && !word.is_empty())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// "did you mean \"x\"?" or a list of what is allowed.
pub fn suggestion(word: &str, candidates: &[&str]) -> String {
    match did_you_mean(word, candidates.iter().copied()) {
        Some(best) => format!("did you mean \"{best}\"?"),
        None if candidates.len() <= 12 => format!("expected one of: {}", candidates.join(", ")),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_with_caret_under_the_span() {
        let src = Source::new("p.yaml", "steps:\n  - action: ec2.snap\n");
        let start = src.text().find("ec2.snap").unwrap();
        let d = Diagnostic::error(src.span_at(start, 8), "unknown action \"ec2.snap\"")
            .with_help("did you mean \"ec2.snapshot_volumes\"?");
        let text = d.render(Some(&src));
        assert!(text.contains("  --> p.yaml:2:13\n"), "{text}");
        assert!(text.contains("2 |   - action: ec2.snap\n"), "{text}");
        assert!(text.contains("  |             ^^^^^^^^\n"), "{text}");
        assert!(text.contains("= help: did you mean"), "{text}");
    }

    #[test]
    fn parser_char_offsets_map_to_bytes() {
        let src = Source::new("p.yaml", "a: \"é—\"\nb: x\n");
        let b = src.text().find('b').unwrap();
        // The YAML parser counts chars: 'b' is char 8 but byte 11.
        assert_eq!(src.char_to_byte(8), b);
        assert_eq!(src.char_to_byte(1_000), src.text().len());
        assert_eq!(Source::new("p", "abc").char_to_byte(2), 2);
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let src = Source::new("p.yaml", "name: é x\n");
        let start = src.text().find('x').unwrap();
        assert_eq!(src.span_at(start, 1).column, 9);
    }

    #[test]
    fn long_lines_render_as_a_window_around_the_column() {
        let text = format!("{}bad{}\n", "a, ".repeat(100_000), ", b".repeat(100_000));
        let src = Source::new("p.yaml", text.as_str());
        let start = src.text().find("bad").unwrap();
        let span = src.span_at(start, 3);
        assert_eq!(span.column, start + 1);
        let out = Diagnostic::error(span, "x").render(Some(&src));
        assert!(out.len() < 600, "{} bytes", out.len());
        let line = out.lines().find(|l| l.starts_with("1 |")).unwrap();
        let caret = out.lines().find(|l| l.trim_end().ends_with("^^^")).unwrap();
        let at = caret.find('^').unwrap();
        assert_eq!(&line[at..at + 3], "bad", "{out}");
    }

    #[test]
    fn line_end_finds_the_newline() {
        let src = Source::new("p", "ab\ncd\n");
        assert_eq!(src.line_end(0), 2);
        assert_eq!(src.line_end(2), 2);
        assert_eq!(src.line_end(3), 5);
        assert_eq!(Source::new("p", "abc").line_end(1), 3);
    }

    #[test]
    fn suggestions_skip_huge_words() {
        let long = "x".repeat(100_000);
        assert_eq!(did_you_mean(&long, ["x"]), None);
    }

    #[test]
    fn suggestions_find_near_misses_only() {
        let c = ["ec2.snapshot_volumes", "ec2.isolate_instance"];
        assert_eq!(
            did_you_mean("ec2.snapshot_volume", c.iter().copied()),
            Some("ec2.snapshot_volumes")
        );
        assert_eq!(did_you_mean("s3.nuke", c.iter().copied()), None);
    }
}
