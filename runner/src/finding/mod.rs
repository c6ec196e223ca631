//! `irr run FILE --finding FINDING.json`: a GuardDuty or Security Hub (ASFF) finding, bare or
//! in its EventBridge event, becomes the run's inputs and target through the playbook's
//! `trigger:` ([`crate::model::Trigger`]).
//!
//! Three stages, each refusing with what is wrong before anything changes: [`read`] (a bounded
//! read: the file is hostile input), [`parse`] (which source, the bare finding, the custom
//! action an envelope names) and [`map`] (is the playbook for this finding; every path
//! evaluated, each value converted to its input's type). [`map`] knows nothing of the command
//! line: the Step Functions compiler and the fan-out read the same [`Mapped`].

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;

use serde_json::Value;

use crate::model::{FieldPath, FindingSource, Playbook, Trigger};
use crate::types::ValueType;

#[cfg(test)]
mod tests;

/// The largest finding file read (1 MiB): a GuardDuty finding is a few KiB, an ASFF finding
/// at most 240 KB (Security Hub's own limit), an EventBridge event at most 256 KB.
pub const MAX_FINDING_BYTES: u64 = 1 << 20;

/// The longest string taken from a finding as an input's value.
const MAX_VALUE_BYTES: usize = 4096;

/// The bundle path of the finding in the run's evidence (its first item).
pub const EVIDENCE_PATH: &str = "finding/finding.json";

/// The manifest's `step` of the finding: the trigger captured it, no step did.
pub const EVIDENCE_STEP: &str = "trigger";

/// What kind of problem a finding has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file cannot be read.
    Read,
    /// The file is larger than [`MAX_FINDING_BYTES`].
    TooLarge,
    /// The file is not JSON.
    NotJson,
    /// JSON, but not a finding (or an event holding other than one finding).
    NotAFinding,
    /// A finding this playbook is not for (source, type, custom action), or the playbook has
    /// no `trigger:`.
    NotForThisPlaybook,
    /// A path found nothing, or a value does not fit its input or target.
    Unmapped,
}

/// Why a finding cannot start the run; nothing was changed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("finding {file}: {message}")]
pub struct FindingError {
    /// What kind of problem.
    pub kind: ErrorKind,
    /// The finding file, as given.
    pub file: String,
    /// What is wrong (values from the finding shortened and escaped).
    pub message: String,
}

/// A parsed finding.
#[derive(Clone, Debug)]
pub struct Finding {
    /// GuardDuty or Security Hub.
    pub source: FindingSource,
    /// The bare finding (the paths' root), out of any envelope.
    pub bare: Value,
    /// GuardDuty's `Type`; for ASFF its first `Types` entry (empty if none).
    pub finding_type: String,
    /// The finding's `Id`.
    pub id: Option<String>,
    /// The custom action the EventBridge event names (its id, from `resources`, and its
    /// `detail.actionName`), for a "Security Hub Findings - Custom Action" event.
    pub custom_action: Option<(String, Option<String>)>,
    /// The event's `detail-type` when the finding came in an EventBridge event.
    pub envelope: Option<String>,
}

/// What a finding maps to: the run's inputs and, for the fan-out, its target.
#[derive(Clone, Debug, PartialEq)]
pub struct Mapped {
    /// Input name -> value, typed as the input is declared.
    pub inputs: serde_json::Map<String, Value>,
    /// Input name -> the path (as written) its value came from.
    pub paths: BTreeMap<String, String>,
    /// `trigger.targets.account`: the account the finding names.
    pub account: Option<String>,
    /// `trigger.targets.region`: the region the finding names.
    pub region: Option<String>,
    /// The finding's type.
    pub finding_type: String,
    /// GuardDuty or Security Hub.
    pub source: FindingSource,
}

impl Mapped {
    /// The mapped inputs as [`crate::validate::Given`] values, each saying where it came
    /// from (so a second value for it, `--input`, is refused naming the path).
    pub fn given(&self) -> crate::validate::Given {
        self.inputs
            .iter()
            .map(|(name, v)| {
                let path = self.paths.get(name).map(String::as_str).unwrap_or("");
                let whence = format!("mapped from the finding by the playbook's trigger ({path})");
                (name.clone(), v.clone(), whence)
            })
            .collect()
    }
}

/// A finding given to `irr run`: its bytes (the evidence, exactly as read) and what it maps
/// to.
#[derive(Clone, Debug)]
pub struct Triggered {
    /// The file, as given.
    pub file: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// The parsed finding.
    pub finding: Finding,
    /// Its inputs and target.
    pub mapped: Mapped,
}

impl Triggered {
    /// Where the finding's evidence item says it came from.
    pub fn evidence_source(&self) -> String {
        let id = self.finding.id.as_deref().unwrap_or("no Id");
        let via = match &self.finding.envelope {
            Some(e) => format!(", in an EventBridge \"{e}\" event"),
            None => String::new(),
        };
        shorten(&format!(
            "{} finding {} ({}){via}, --finding {}",
            self.finding.source, self.finding.finding_type, id, self.file
        ))
    }
}

fn error(kind: ErrorKind, file: &str, message: impl Into<String>) -> FindingError {
    FindingError {
        kind,
        file: file.to_owned(),
        message: message.into(),
    }
}

/// Reads, parses and maps the finding at `path` for `playbook`: everything `irr run
/// --finding` checks before anything changes.
pub fn load(path: &Path, playbook: &Playbook) -> Result<Triggered, FindingError> {
    let file = path.display().to_string();
    let Some(trigger) = &playbook.trigger else {
        return Err(error(
            ErrorKind::NotForThisPlaybook,
            &file,
            format!(
                "playbook {} has no trigger: section, so nothing says how a finding becomes its inputs; add one (docs/playbook-reference.md#trigger) or give the inputs with --input",
                playbook.metadata.name
            ),
        ));
    };
    let bytes = read(path)?;
    let finding = parse(&bytes).map_err(|(kind, m)| error(kind, &file, m))?;
    let mapped = map(trigger, playbook, &finding).map_err(|(kind, m)| error(kind, &file, m))?;
    Ok(Triggered {
        file,
        bytes,
        finding,
        mapped,
    })
}

/// Reads a finding file: at most [`MAX_FINDING_BYTES`] (checked while reading, so a device
/// or a pipe is not read whole), never blocking on a FIFO without a writer.
pub fn read(path: &Path) -> Result<Vec<u8>, FindingError> {
    let file = path.display().to_string();
    let fail = |e: std::io::Error| error(ErrorKind::Read, &file, format!("cannot read it: {e}"));
    let mut f = crate::load::open_nonblocking(path).map_err(fail)?;
    let meta = f.metadata().map_err(fail)?;
    if meta.is_dir() {
        return Err(error(
            ErrorKind::Read,
            &file,
            "it is a directory, not a finding file",
        ));
    }
    let too_large = |size: String| {
        error(
            ErrorKind::TooLarge,
            &file,
            format!(
                "it is {size} bytes; a finding file is at most {MAX_FINDING_BYTES} bytes (1 MiB: a GuardDuty finding is a few KiB, an ASFF finding at most 240 KB)"
            ),
        )
    };
    if meta.is_file() && meta.len() > MAX_FINDING_BYTES {
        return Err(too_large(meta.len().to_string()));
    }
    let mut bytes = Vec::new();
    (&mut f)
        .take(MAX_FINDING_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(fail)?;
    if bytes.len() as u64 > MAX_FINDING_BYTES {
        return Err(too_large(format!("more than {MAX_FINDING_BYTES}")));
    }
    Ok(bytes)
}

type Problem = (ErrorKind, String);

/// Parses a finding: a GuardDuty finding or one ASFF finding, bare, in the CLI's
/// `{"Findings": [...]}`, or in its EventBridge event (`detail` of a "GuardDuty Finding";
/// `detail.findings` of a "Security Hub Findings - Imported" or "- Custom Action" event).
/// A list of findings must hold exactly one.
pub fn parse(bytes: &[u8]) -> Result<Finding, Problem> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        (
            ErrorKind::NotJson,
            format!(
                "not JSON: {} (line {}, column {})",
                strip_position(&e.to_string()),
                e.line(),
                e.column()
            ),
        )
    })?;
    let not_a = |m: String| (ErrorKind::NotAFinding, m);
    let Value::Object(obj) = &value else {
        return Err(not_a(format!(
            "not a finding: a finding is a JSON object, and this is {}",
            kind_of(&value)
        )));
    };
    if obj.contains_key("detail-type") || obj.contains_key("detail") {
        return from_event(&value);
    }
    if let Some(list) = obj.get("Findings") {
        let one = exactly_one(list, "Findings").map_err(not_a)?;
        return bare(one.clone(), None, None);
    }
    bare(value, None, None)
}

/// The finding inside an EventBridge event.
fn from_event(event: &Value) -> Result<Finding, Problem> {
    let not_a = |m: String| (ErrorKind::NotAFinding, m);
    let detail_type = event["detail-type"].as_str().unwrap_or("");
    let source = event["source"].as_str().unwrap_or("");
    match (source, detail_type) {
        ("aws.guardduty", "GuardDuty Finding") => {
            let detail = &event["detail"];
            if !detail.is_object() {
                return Err(not_a(format!(
                    "the event's \"detail\" (the GuardDuty finding) is {}, not an object",
                    kind_of(detail)
                )));
            }
            bare(pascal_case(detail.clone()), Some(detail_type), None)
        }
        (
            "aws.securityhub",
            "Security Hub Findings - Imported" | "Security Hub Findings - Custom Action",
        ) => {
            let one = exactly_one(&event["detail"]["findings"], "detail.findings").map_err(not_a)?;
            let action = if detail_type.ends_with("Custom Action") {
                let id = event["resources"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .find_map(|r| r.split_once(":action/custom/").map(|(_, id)| id.to_owned()));
                let name = event["detail"]["actionName"].as_str().map(str::to_owned);
                Some((id.unwrap_or_default(), name))
            } else {
                None
            };
            bare(one.clone(), Some(detail_type), action)
        }
        _ => Err(not_a(format!(
            "an EventBridge event of source \"{}\" and detail-type \"{}\" holds no finding irr takes: it takes \"GuardDuty Finding\" (aws.guardduty), \"Security Hub Findings - Imported\" and \"Security Hub Findings - Custom Action\" (aws.securityhub)",
            shorten(source),
            shorten(detail_type)
        ))),
    }
}

/// The one item of a list of findings; else what is wrong, naming the count.
fn exactly_one<'v>(list: &'v Value, what: &str) -> Result<&'v Value, String> {
    match list.as_array().map(Vec::as_slice) {
        Some([one]) => Ok(one),
        Some(many) => Err(format!(
            "{what} holds {} findings; irr runs a playbook for exactly one (split them and run each)",
            many.len()
        )),
        None => Err(format!(
            "{what} should be a list of findings, and it is {}",
            kind_of(list)
        )),
    }
}

/// A GuardDuty finding as EventBridge writes it (camelCase: `resource.instanceDetails.
/// instanceId`) in the API's PascalCase (`Resource.InstanceDetails.InstanceId`), which the
/// playbooks' paths name: each key's first letter upper-cased, at every depth. A finding
/// already in PascalCase (it has `Type`) is left as it is.
fn pascal_case(detail: Value) -> Value {
    fn keys(v: Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.into_iter()
                    .map(|(k, v)| {
                        let mut c = k.chars();
                        let k = match c.next() {
                            Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                            None => k,
                        };
                        (k, keys(v))
                    })
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.into_iter().map(keys).collect()),
            other => other,
        }
    }
    if detail.get("Type").is_some() || detail.get("type").is_none() {
        return detail;
    }
    keys(detail)
}

/// A bare finding: which source its shape is.
fn bare(
    value: Value,
    envelope: Option<&str>,
    custom_action: Option<(String, Option<String>)>,
) -> Result<Finding, Problem> {
    let not_a = |m: &str| (ErrorKind::NotAFinding, m.to_owned());
    let obj = value
        .as_object()
        .ok_or_else(|| not_a("not a finding: a finding is a JSON object"))?;
    let id = obj.get("Id").and_then(Value::as_str).map(str::to_owned);
    let (source, finding_type) = if obj.contains_key("AwsAccountId")
        || obj.contains_key("ProductArn")
    {
        let first = obj["Types"]
            .as_array()
            .and_then(|t| t.first())
            .and_then(Value::as_str)
            .unwrap_or("");
        (FindingSource::SecurityHub, first.to_owned())
    } else if let (Some(t), true) = (
        obj.get("Type").and_then(Value::as_str),
        obj.contains_key("Resource"),
    ) {
        (FindingSource::GuardDuty, t.to_owned())
    } else {
        return Err(not_a("not a finding: neither a GuardDuty finding (it has no \"Type\" and \"Resource\") nor a Security Hub ASFF finding (it has no \"AwsAccountId\" or \"ProductArn\")"));
    };
    Ok(Finding {
        source,
        bare: value,
        finding_type,
        id,
        custom_action,
        envelope: envelope.map(str::to_owned),
    })
}

/// Checks the playbook is for `finding` (source, GuardDuty type, custom action), then
/// evaluates every path of its trigger for that source: the inputs, each converted to its
/// declared type, and the target. Every problem is named, path and input; `Err` lists them.
pub fn map(trigger: &Trigger, playbook: &Playbook, finding: &Finding) -> Result<Mapped, Problem> {
    accepts(trigger, finding).map_err(|m| (ErrorKind::NotForThisPlaybook, m))?;
    let mapping = trigger.mapping_for(finding.source);
    let source = finding.source;
    let mut problems = Vec::new();
    let mut inputs = serde_json::Map::new();
    let mut paths = BTreeMap::new();
    for (name, path) in &mapping.inputs {
        let Some(decl) = playbook.input(name) else {
            continue; // refused by the validator
        };
        let value = evaluate(path, &finding.bare, source).and_then(|v| to_input(&decl.ty, v));
        match value {
            Ok(v) => {
                inputs.insert(name.clone(), v);
                paths.insert(name.clone(), path.text.clone());
            }
            Err(e) => problems.push(format!(
                "input \"{name}\" ({}, trigger line {}): {e}",
                decl.ty, path.span.line
            )),
        }
    }
    let mut target = |what: &str, path: &Option<FieldPath>, ty: ValueType| {
        let path = path.as_ref()?;
        let value = evaluate(path, &finding.bare, source).and_then(|v| match v.as_slice() {
            [Value::String(s)] => ty
                .check(&Value::String(s.clone()))
                .map(|()| s.clone())
                .map_err(|e| clean(&e)),
            [other] => Err(format!(
                "the value at {} is {}, not {ty}",
                path.text,
                kind_of(other)
            )),
            many => Err(format!(
                "the path {} finds {} values; the target {what} is one",
                path.text,
                many.len()
            )),
        });
        match value {
            Ok(s) => Some(s),
            Err(e) => {
                problems.push(format!(
                    "target {what} (trigger line {}): {e}",
                    path.span.line
                ));
                None
            }
        }
    };
    let account = target("account", &mapping.account, ValueType::AccountId);
    let region = target("region", &mapping.region, ValueType::Region);
    if !problems.is_empty() {
        return Err((
            ErrorKind::Unmapped,
            format!(
                "the playbook's trigger cannot use this {source} finding: {}; nothing was changed",
                problems.join("; ")
            ),
        ));
    }
    Ok(Mapped {
        inputs,
        paths,
        account,
        region,
        finding_type: finding.finding_type.clone(),
        source,
    })
}

/// Whether the trigger takes the finding: its source has a section (or none has), a
/// GuardDuty type is listed, the custom action an event names is the playbook's.
fn accepts(trigger: &Trigger, finding: &Finding) -> Result<(), String> {
    let source = finding.source;
    if !trigger.takes(source) {
        let other = match source {
            FindingSource::GuardDuty => "Security Hub",
            FindingSource::SecurityHub => "GuardDuty",
        };
        return Err(format!(
            "this is a {source} finding, and the playbook's trigger takes {other} findings only (add trigger.{} to take these)",
            match source {
                FindingSource::GuardDuty => "guardduty",
                FindingSource::SecurityHub => "securityhub",
            }
        ));
    }
    if let (FindingSource::GuardDuty, Some(g)) = (source, &trigger.guardduty) {
        if !g.types.contains(&finding.finding_type) {
            return Err(format!(
                "the GuardDuty finding is of type \"{}\", which is not one this playbook is for (trigger.guardduty.types: {})",
                shorten(&finding.finding_type),
                g.types.join(", ")
            ));
        }
    }
    if let (Some(s), Some((id, name))) = (&trigger.securityhub, &finding.custom_action) {
        if let Some(want) = &s.custom_action {
            if id != want && name.as_deref() != Some(want.as_str()) {
                return Err(format!(
                    "the Security Hub event was sent by custom action \"{}\", and this playbook is for \"{want}\" (trigger.securityhub.custom_action)",
                    shorten(if id.is_empty() { name.as_deref().unwrap_or("") } else { id })
                ));
            }
        }
    }
    Ok(())
}

/// The values `path` finds in the bare finding, `| arn_resource` applied; `Err` when it
/// finds nothing.
pub fn evaluate(
    path: &FieldPath,
    finding: &Value,
    source: FindingSource,
) -> Result<Vec<Value>, String> {
    let found = path.query.query(finding).all();
    let found: Vec<&Value> = found.into_iter().filter(|v| !v.is_null()).collect();
    if found.is_empty() {
        return Err(format!("the {source} finding has nothing at {}", path.text));
    }
    if !path.arn_resource {
        return Ok(found.into_iter().cloned().collect());
    }
    found
        .into_iter()
        .map(|v| match v.as_str() {
            Some(s) => arn_resource(s).map(|r| Value::String(r.to_owned())).ok_or_else(|| {
                format!("the value at {} is \"{}\", not an ARN (| arn_resource takes the resource id out of an ARN)", path.text, shorten(s))
            }),
            None => Err(format!("the value at {} is {}, not an ARN", path.text, kind_of(v))),
        })
        .collect()
}

/// The resource id of an ARN: the part after the last `/` of its resource (`instance/i-0abc`
/// -> `i-0abc`), else the whole resource (`arn:aws:s3:::bucket` -> `bucket`).
pub fn arn_resource(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    if parts.next() != Some("arn") {
        return None;
    }
    let resource = parts.nth(4)?;
    let id = resource.rsplit('/').next().unwrap_or(resource);
    (!id.is_empty()).then_some(id)
}

/// The values found, as a value of type `ty`: a list input takes every value found (a found
/// list's items, or a single scalar as a one-item list); any other input exactly one.
fn to_input(ty: &ValueType, mut values: Vec<Value>) -> Result<Value, String> {
    match ty {
        ValueType::List(item) => {
            let items = match values.as_mut_slice() {
                [Value::Array(list)] => std::mem::take(list),
                _ => values,
            };
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| scalar(item, v).map_err(|e| format!("item {}: {e}", i + 1)))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
        }
        _ if values.len() > 1 => Err(format!(
            "the path finds {} values, and the input takes one",
            values.len()
        )),
        _ => scalar(ty, values.remove(0)),
    }
}

/// One value found, as type `ty`: text is parsed as `--input` text is (the same checks); a
/// number or boolean is itself, or its text for a string input.
fn scalar(ty: &ValueType, v: Value) -> Result<Value, String> {
    match v {
        Value::String(s) if s.len() > MAX_VALUE_BYTES => Err(format!(
            "the value is {} bytes long; a value taken from a finding is at most {MAX_VALUE_BYTES}",
            s.len()
        )),
        Value::String(s) => crate::validate::parse_value(ty, &s).map_err(|e| clean(&e)),
        v @ (Value::Number(_) | Value::Bool(_)) if *ty == ValueType::String => {
            Ok(Value::String(v.to_string()))
        }
        other => match ty.check(&other) {
            Ok(()) => Ok(other),
            Err(_) => Err(format!("the value is {}, not {ty}", kind_of(&other))),
        },
    }
}

/// A message holding text from the finding: control characters escaped, at most 300 chars.
fn clean(msg: &str) -> String {
    shorten(msg)
}

/// `s` escaped (no control character reaches a terminal) and cut to 300 characters.
fn shorten(s: &str) -> String {
    let escaped: String = s
        .chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_debug().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    if escaped.chars().count() > 300 {
        let cut: String = escaped.chars().take(300).collect();
        format!("{cut}...")
    } else {
        escaped
    }
}

/// serde_json's message without its own " at line L column C" (given separately).
fn strip_position(msg: &str) -> &str {
    msg.rfind(" at line ").map_or(msg, |i| &msg[..i])
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
