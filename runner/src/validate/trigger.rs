//! `trigger:`: which findings start the playbook and the paths that map a finding onto its
//! inputs and target. Every path is parsed here (RFC 9535 JSONPath, `serde_json_path`), so a
//! run never meets a path it cannot evaluate, and a parse error points at the character.

use serde_json_path::JsonPath;

use super::*;
use crate::model::{FieldPath, FindingMapping, GuardDutyTrigger, SecurityHubTrigger, Trigger};

const TRIGGER_KEYS: &[&str] = &["guardduty", "securityhub", "inputs", "targets"];
const GUARDDUTY_KEYS: &[&str] = &["types", "inputs", "targets"];
const SECURITYHUB_KEYS: &[&str] = &["custom_action", "inputs", "targets"];
const TARGET_KEYS: &[&str] = &["account", "region"];

/// The one filter a path may end in: `| arn_resource`.
pub const ARN_RESOURCE: &str = "arn_resource";

/// The longest path, in bytes (a path is a few dozen characters; this bounds the parser).
const MAX_PATH_LEN: usize = 1024;

const PATH_HELP: &str = "an RFC 9535 JSONPath from the finding's root, e.g. \"$.Resource.InstanceDetails.InstanceId\", optionally followed by \"| arn_resource\"";

/// A path's query text and whether it ends in `| arn_resource`; `Err` names an unknown filter.
pub fn split_filter(s: &str) -> Result<(&str, bool), String> {
    if let Some(i) = s.rfind('|') {
        let (query, filter) = (s[..i].trim(), s[i + 1..].trim());
        if filter == ARN_RESOURCE {
            return Ok((query, true));
        }
        let word = !filter.is_empty()
            && filter
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if word && JsonPath::parse(query).is_ok() {
            return Err(format!("unknown filter \"| {filter}\""));
        }
    }
    Ok((s.trim(), false))
}

impl Validator<'_> {
    /// `trigger:`.
    pub(super) fn trigger(&mut self, node: &Node, inputs: &[InputDecl]) -> Option<Trigger> {
        if matches!(node.kind, NodeKind::Null) {
            self.help(
                &node.span,
                "trigger is empty",
                "say which findings start the playbook, e.g. \"guardduty: {types: [UnauthorizedAccess:EC2/SSHBruteForce]}\", or remove it",
            );
            return None;
        }
        self.mapping(node, "trigger", TRIGGER_KEYS)?;
        let guardduty = node
            .get("guardduty")
            .and_then(|n| self.guardduty(n, inputs));
        let securityhub = node
            .get("securityhub")
            .and_then(|n| self.securityhub(n, inputs));
        let shared = self.finding_mapping(node, "trigger", inputs);
        let no_source = node.get("guardduty").is_none() && node.get("securityhub").is_none();
        if no_source
            && !misspelled(node, "guardduty", TRIGGER_KEYS)
            && !misspelled(node, "securityhub", TRIGGER_KEYS)
        {
            self.help(
                &node.span,
                "trigger names no findings: it needs \"guardduty\" or \"securityhub\"",
                "add \"guardduty: {types: [...]}\" (GuardDuty finding types) and/or \"securityhub: {custom_action: ID}\"",
            );
        }
        if let Some(g) = &guardduty {
            self.mapped_twice(&g.mapping, &shared, "guardduty");
        }
        if let Some(s) = &securityhub {
            self.mapped_twice(&s.mapping, &shared, "securityhub");
        }
        Some(Trigger {
            guardduty,
            securityhub,
            shared,
            span: node.span.clone(),
        })
    }

    fn guardduty(&mut self, node: &Node, inputs: &[InputDecl]) -> Option<GuardDutyTrigger> {
        self.mapping(node, "trigger.guardduty", GUARDDUTY_KEYS)?;
        let mut types = Vec::new();
        match node.get("types") {
            None => self.missing(
                node,
                "types",
                GUARDDUTY_KEYS,
                &node.span,
                "trigger.guardduty has no \"types\"",
                "list the GuardDuty finding types that start the playbook, e.g. \"types: [UnauthorizedAccess:EC2/SSHBruteForce]\"",
            ),
            Some(n) => match n.as_seq() {
                Some([]) | None => self.help(
                    &n.span,
                    format!(
                        "trigger.guardduty.types must be a list of finding types, found {}",
                        if n.as_seq().is_some() { "an empty list" } else { n.type_name() }
                    ),
                    "e.g. \"types: [UnauthorizedAccess:EC2/SSHBruteForce]\"",
                ),
                Some(items) => {
                    for item in items {
                        if let Some(t) = self.string(item, "trigger.guardduty.types: a type") {
                            if is_guardduty_type(t) {
                                types.push(t.to_owned());
                            } else {
                                self.help(&item.span, format!("trigger.guardduty.types: \"{}\" is not a GuardDuty finding type", t.escape_debug()), "a type is THREAT_PURPOSE:RESOURCE/THREAT_FAMILY, e.g. \"UnauthorizedAccess:EC2/SSHBruteForce\"");
                            }
                        }
                    }
                }
            },
        }
        let mapping = self.finding_mapping(node, "trigger.guardduty", inputs);
        Some(GuardDutyTrigger { types, mapping })
    }

    fn securityhub(&mut self, node: &Node, inputs: &[InputDecl]) -> Option<SecurityHubTrigger> {
        if matches!(node.kind, NodeKind::Null) {
            // `securityhub:` alone: any Security Hub finding.
            return Some(SecurityHubTrigger {
                custom_action: None,
                mapping: FindingMapping::default(),
            });
        }
        self.mapping(node, "trigger.securityhub", SECURITYHUB_KEYS)?;
        let custom_action = match node.get("custom_action") {
            None => None,
            Some(n) => {
                let s = self.string(n, "trigger.securityhub.custom_action")?;
                let ok = !s.is_empty()
                    && s.len() <= 20
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
                if !ok {
                    self.help(&n.span, format!("trigger.securityhub.custom_action \"{}\" is not a custom action id", s.escape_debug()), "give the id of the Security Hub custom action (1-20 letters, digits, \"-\" or \"_\"), the end of its ARN arn:aws:securityhub:REGION:ACCOUNT:action/custom/ID");
                }
                Some(s.to_owned())
            }
        };
        let mapping = self.finding_mapping(node, "trigger.securityhub", inputs);
        Some(SecurityHubTrigger {
            custom_action,
            mapping,
        })
    }

    /// `inputs:` and `targets:` of `parent` (`trigger`, or one of its sources).
    fn finding_mapping(
        &mut self,
        parent: &Node,
        what: &str,
        decls: &[InputDecl],
    ) -> FindingMapping {
        let mut out = FindingMapping::default();
        if let Some(node) = parent.get("inputs") {
            let what = format!("{what}.inputs");
            if let Some(entries) = self.mapping_of_paths(node, &what) {
                for (k, v) in entries {
                    let name = k.scalar_text().unwrap_or_default();
                    self.mapped_input(&name, k, decls, &what);
                    if let Some(p) = self.field_path(v, &format!("{what}.{name}")) {
                        out.inputs.push((name, p));
                    }
                }
            }
        }
        if let Some(node) = parent.get("targets") {
            let what = format!("{what}.targets");
            if self.mapping(node, &what, TARGET_KEYS).is_some() {
                out.account = node
                    .get("account")
                    .and_then(|n| self.field_path(n, &format!("{what}.account")));
                out.region = node
                    .get("region")
                    .and_then(|n| self.field_path(n, &format!("{what}.region")));
            }
        }
        out
    }

    /// A mapping of input names to paths (any key allowed: each is checked as an input).
    fn mapping_of_paths<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [(Node, Node)]> {
        match node.as_map() {
            Some(entries) => Some(entries),
            None => {
                self.help(
                    &node.span,
                    format!(
                        "{what} must be a mapping of input names to paths, found {}",
                        node.type_name()
                    ),
                    "e.g. \"inputs: {instance_id: \\\"$.Resource.InstanceDetails.InstanceId\\\"}\"",
                );
                None
            }
        }
    }

    /// The input a trigger maps: declared, and not secret (the finding is kept as evidence).
    fn mapped_input(&mut self, name: &str, k: &Node, decls: &[InputDecl], what: &str) {
        match decls.iter().find(|d| d.name == name) {
            None if self.inputs_misplaced => {}
            None => {
                let names: Vec<&str> = decls.iter().map(|d| d.name.as_str()).collect();
                let help = match did_you_mean(name, names.iter().copied()) {
                    Some(b) => format!("did you mean \"{b}\"?"),
                    None if names.is_empty() => "the playbook declares no inputs; declare it under \"inputs:\"".to_owned(),
                    None => format!("the playbook's inputs: {}", names.join(", ")),
                };
                self.help(&k.span, format!("{what}: unknown input \"{name}\""), help);
            }
            Some(d) if d.secret => self.help(
                &k.span,
                format!("{what}: input \"{name}\" is secret and cannot come from a finding"),
                "the finding is kept as evidence, and a secret is never written; give it with --input or IRR_INPUT_NAME",
            ),
            Some(_) => {}
        }
    }

    /// One path: a string, an RFC 9535 JSONPath, optionally `| arn_resource`.
    fn field_path(&mut self, node: &Node, what: &str) -> Option<FieldPath> {
        let Some(s) = node.as_str() else {
            self.help(
                &node.span,
                format!(
                    "{what} must be a string (a JSONPath), found {}",
                    node.type_name()
                ),
                PATH_HELP,
            );
            return None;
        };
        if s.len() > MAX_PATH_LEN {
            self.help(
                &node.span,
                format!(
                    "{what}: the path is {} bytes long; at most {MAX_PATH_LEN}",
                    s.len()
                ),
                PATH_HELP,
            );
            return None;
        }
        let (query, arn_resource) = match split_filter(s) {
            Ok(q) => q,
            Err(e) => {
                self.help(
                    &node.span,
                    format!("{what}: {e}"),
                    "the only filter is \"| arn_resource\" (the resource id at the end of an ARN)",
                );
                return None;
            }
        };
        match JsonPath::parse(query) {
            Ok(q) => Some(FieldPath {
                text: s.to_owned(),
                query: q,
                arn_resource,
                span: node.span.clone(),
            }),
            Err(e) => {
                let lead = s.len() - s.trim_start().len();
                let at = self.span_in_string(node, s, lead + e.position().saturating_sub(1));
                let shown: String = query.escape_debug().collect();
                self.help(
                    &at,
                    format!("{what}: \"{shown}\" is not a JSONPath: {}", e.message()),
                    PATH_HELP,
                );
                None
            }
        }
    }

    /// The span of byte `offset` of the string `value` that `node` holds: exact when the
    /// file spells the string as it is (plain or quoted, no escapes), else the whole node.
    fn span_in_string(&self, node: &Node, value: &str, offset: usize) -> Span {
        let span = &node.span;
        let raw = self
            .source
            .text()
            .get(span.start..span.start + span.len)
            .unwrap_or("");
        let quoted = raw.starts_with(['"', '\'']);
        let body = if quoted {
            raw.get(1..raw.len().saturating_sub(1)).unwrap_or("")
        } else {
            raw
        };
        if body != value || offset >= value.len() {
            return span.clone();
        }
        let start = span.start + usize::from(quoted) + offset;
        self.source.span_at(start, value.len() - offset)
    }

    /// An input or target a source maps that the shared `trigger.inputs`/`targets` map too.
    fn mapped_twice(&mut self, own: &FindingMapping, shared: &FindingMapping, source: &str) {
        let help = format!("map it in one place: under trigger for every source, or under trigger.{source} for those findings only");
        for (name, p) in &own.inputs {
            if let Some((_, first)) = shared.inputs.iter().find(|(n, _)| n == name) {
                let line = first.span.line;
                self.help(&p.span, format!("trigger.{source}.inputs maps input \"{name}\", which trigger.inputs (line {line}) maps too"), help.clone());
            }
        }
        for (what, o, s) in [
            ("account", &own.account, &shared.account),
            ("region", &own.region, &shared.region),
        ] {
            if let (Some(o), Some(s)) = (o, s) {
                let line = s.span.line;
                self.help(&o.span, format!("trigger.{source}.targets maps the {what}, which trigger.targets (line {line}) maps too"), help.clone());
            }
        }
    }
}

/// `THREAT_PURPOSE:RESOURCE/THREAT_FAMILY...` (e.g. `Backdoor:EC2/C&CActivity.B!DNS`).
fn is_guardduty_type(t: &str) -> bool {
    let Some((purpose, rest)) = t.split_once(':') else {
        return false;
    };
    let Some((resource, family)) = rest.split_once('/') else {
        return false;
    };
    let word = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric());
    word(purpose)
        && word(resource)
        && !family.is_empty()
        && t.len() <= 256
        && !t.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_split_off_the_path() {
        assert_eq!(
            split_filter("$.Resources[0].Id | arn_resource"),
            Ok(("$.Resources[0].Id", true))
        );
        assert_eq!(split_filter("$.Region"), Ok(("$.Region", false)));
        // A `|` inside a name is the path's own.
        assert_eq!(split_filter("$['a|b']"), Ok(("$['a|b']", false)));
        assert_eq!(
            split_filter("$.Id | basename"),
            Err("unknown filter \"| basename\"".to_owned())
        );
    }

    fn problems(trigger: &str) -> Vec<Diagnostic> {
        let text = format!("apiVersion: irr/v1\nkind: Playbook\nmetadata: {{name: t, version: 1.0.0}}\ninputs:\n  instance_id: {{type: instance_id}}\ntrigger:\n{trigger}steps:\n  - id: p\n    action: ec2.protect_instance\n    with: {{instance_id: \"{{{{inputs.instance_id}}}}\"}}\n");
        match super::super::validate(&Source::new("t.yaml", text)) {
            Ok(pb) => {
                assert!(pb.trigger.is_some());
                Vec::new()
            }
            Err(d) => d,
        }
    }

    #[test]
    fn a_valid_trigger_and_its_shapes() {
        assert!(problems(
            "  securityhub:\n  inputs: {instance_id: \"$.Resources[0].Id | arn_resource\"}\n"
        )
        .is_empty());
        assert!(problems("  securityhub: {custom_action: irr-contain}\n").is_empty());
        assert!(problems("  guardduty: {types: [\"Backdoor:EC2/C&CActivity.B\"]}\n  targets: {region: \"$.Region\"}\n").is_empty());
    }

    #[test]
    fn trigger_problems_are_positioned() {
        let d = problems("  inputs: {instance_id: \"$.Resource.InstanceDetails.InstanceId\"}\n");
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(
            d[0].message.starts_with("trigger names no findings"),
            "{}",
            d[0].message
        );
        assert_eq!((d[0].span.line, d[0].span.column), (7, 3));
        let d =
            problems("  securityhub: {custom_action: \"not an id\"}\n  guardduty: {types: []}\n");
        let msgs: Vec<&str> = d.iter().map(|d| d.message.as_str()).collect();
        assert!(
            msgs.iter()
                .any(|m| m.contains("\"not an id\" is not a custom action id")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter().any(|m| m.contains("found an empty list")),
            "{msgs:?}"
        );
        // The caret at the character the JSONPath parser stopped at: in `$.a.[`, the segment `.[`.
        let d = problems("  securityhub:\n    inputs:\n      instance_id: \"$.a.[\"\n");
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!((d[0].span.line, d[0].span.column), (9, 24), "{:?}", d[0]);
        assert_eq!(crate::diagnostic::rule_of(&d[0].message).id, "IRR0021");
    }

    #[test]
    fn guardduty_types() {
        assert!(is_guardduty_type("UnauthorizedAccess:EC2/SSHBruteForce"));
        assert!(is_guardduty_type("Backdoor:EC2/C&CActivity.B!DNS"));
        assert!(!is_guardduty_type("SSHBruteForce"));
        assert!(!is_guardduty_type("Unauthorized Access:EC2/x"));
    }
}
