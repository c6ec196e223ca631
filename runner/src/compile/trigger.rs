//! `trigger:` as EventBridge rules (one per finding source) and the state machine's first
//! states, which map the finding onto the inputs and the target account with the same
//! paths `irr run --finding` evaluates (`crate::finding`).
//!
//! A rule sends `{"id", "case_id", "source", "finding"}` (`id`: the EventBridge event's id,
//! which LocalStack also needs to name the execution; GuardDuty: the event's `detail`; Security
//! Hub: its `detail.findings`, of which there must be exactly one, as for the CLI). A
//! GuardDuty finding in an EventBridge event is written in camelCase (`detail.resource.
//! instanceDetails.instanceId`) where the playbook's paths name the API's PascalCase
//! (`$.Resource.InstanceDetails.InstanceId`): each path segment is turned to camelCase for it.

use serde_json::{json, Map, Value};

use crate::diagnostic::Diagnostic;
use crate::model::{FieldPath, FindingSource, Playbook};

/// The EventBridge rules (logical id, resource) that start the machine.
pub fn rules(pb: &Playbook) -> Vec<(String, Value)> {
    let Some(t) = &pb.trigger else {
        return Vec::new();
    };
    let target = |paths: Value, template: &str| {
        json!([{
            "Id": "irr",
            "Arn": {"Ref": "StateMachine"},
            "RoleArn": {"Fn::GetAtt": ["TriggerRole", "Arn"]},
            "InputTransformer": {"InputPathsMap": paths, "InputTemplate": template},
        }])
    };
    let mut out = Vec::new();
    if let Some(g) = &t.guardduty {
        out.push(("GuardDutyRule".to_owned(), json!({
            "Type": "AWS::Events::Rule",
            "Properties": {
                "Description": format!("irr playbook {}: GuardDuty findings of its trigger's types", pb.metadata.name),
                "State": "ENABLED",
                "EventPattern": {"source": ["aws.guardduty"], "detail-type": ["GuardDuty Finding"], "detail": {"type": g.types}},
                "Targets": target(
                    json!({"finding": "$.detail", "finding_id": "$.detail.id", "event_id": "$.id"}),
                    r#"{"id": "<event_id>", "case_id": "gd-<finding_id>", "source": "guardduty", "finding": <finding>}"#,
                ),
            }
        })));
    }
    if let Some(s) = &t.securityhub {
        let pattern = match &s.custom_action {
            Some(id) => json!({
                "source": ["aws.securityhub"],
                "detail-type": ["Security Hub Findings - Custom Action"],
                "resources": [{"Fn::Sub": format!("arn:${{AWS::Partition}}:securityhub:${{AWS::Region}}:${{AWS::AccountId}}:action/custom/{id}")}],
            }),
            None => {
                json!({"source": ["aws.securityhub"], "detail-type": ["Security Hub Findings - Imported"]})
            }
        };
        out.push(("SecurityHubRule".to_owned(), json!({
            "Type": "AWS::Events::Rule",
            "Properties": {
                "Description": format!("irr playbook {}: Security Hub findings sent to it", pb.metadata.name),
                "State": "ENABLED",
                "EventPattern": pattern,
                "Targets": target(
                    json!({"findings": "$.detail.findings", "event_id": "$.id"}),
                    r#"{"id": "<event_id>", "case_id": "sh-<event_id>", "source": "securityhub", "findings": <findings>}"#,
                ),
            }
        })));
    }
    out
}

/// A path into the finding as a reference path into the state (`$.finding...`), or why it
/// has none. Only names and indexes: filters and wildcards are refused.
fn path(fp: &FieldPath, camel: bool) -> Result<String, String> {
    // `| arn_resource` is the caller's (`FieldPath::arn_resource`).
    let text = fp.text.split('|').next().unwrap_or_default().trim();
    let rest = text.strip_prefix('$').ok_or("a path starts with $")?;
    let mut out = String::from("$.finding");
    let mut chars = rest.chars().peekable();
    let seg = |s: &str| -> String {
        let mut c = s.chars();
        match (camel, c.next()) {
            (true, Some(f)) => f.to_ascii_lowercase().to_string() + c.as_str(),
            _ => s.to_owned(),
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                let mut name = String::new();
                while let Some(&n) = chars.peek() {
                    if n == '.' || n == '[' {
                        break;
                    }
                    name.push(n);
                    chars.next();
                }
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!(
                        "\"{text}\": only plain names, quoted names and indexes translate"
                    ));
                }
                out.push('.');
                out.push_str(&seg(&name));
            }
            '[' => {
                let mut inner = String::new();
                for n in chars.by_ref() {
                    if n == ']' {
                        break;
                    }
                    inner.push(n);
                }
                if inner.parse::<usize>().is_ok() {
                    out.push_str(&format!("[{inner}]"));
                } else if let Some(q) = inner
                    .strip_prefix('\'')
                    .and_then(|i| i.strip_suffix('\''))
                    .filter(|q| q.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
                {
                    out.push('.');
                    out.push_str(&seg(q));
                } else {
                    return Err(format!("\"{text}\": a filter or wildcard in a trigger path has no translation in a state machine (a JSONPath wildcard that matches one value is not a list on every interpreter)"));
                }
            }
            _ => return Err(format!("\"{text}\": unexpected \"{c}\"")),
        }
    }
    Ok(out)
}

/// A path with one filter, `$.LIST[?@.FIELD == 'VALUE'].TAIL` (or `[?(@.FIELD == 'VALUE')]`),
/// as (the list's state path, FIELD, VALUE, TAIL); `None` when the path has no filter.
fn filter_path(
    fp: &FieldPath,
    camel: bool,
) -> Option<Result<(String, String, String, String), String>> {
    let text = fp.text.split('|').next().unwrap_or_default().trim();
    let open = text.find("[?")?;
    let close = text[open..].find(']').map(|c| open + c)?;
    let cond = text[open + 2..close]
        .trim()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .trim();
    let tail = &text[close + 1..];
    let parsed = (|| {
        let (lhs, rhs) = cond.split_once("==")?;
        let field = lhs.trim().strip_prefix("@.")?;
        let value = rhs.trim().strip_prefix('\'')?.strip_suffix('\'')?;
        let tail = tail.strip_prefix('.')?;
        let plain =
            |x: &str| !x.is_empty() && x.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        (plain(field) && plain(tail) && !value.contains(['\'', '\\', '{', '}']))
            .then(|| (field.to_owned(), value.to_owned(), tail.to_owned()))
    })();
    let Some((field, value, tail)) = parsed else {
        return Some(Err(format!(
            "\"{text}\": a filter translates only as [?@.FIELD == 'VALUE'].FIELD"
        )));
    };
    let list = FieldPath {
        text: text[..open].to_owned(),
        ..fp.clone()
    };
    let camel_of = |x: &str| {
        if camel {
            let mut c = x.chars();
            c.next()
                .map(|f| f.to_ascii_lowercase().to_string() + c.as_str())
                .unwrap_or_default()
        } else {
            x.to_owned()
        }
    };
    Some(path(&list, camel).map(|base| (base, camel_of(&field), value, camel_of(&tail))))
}

/// The states that find the one element of a list whose FIELD is VALUE and put its TAIL at
/// `$.m_NAME.value.v` (an inline Map, each element a Choice: a JSONPath filter's answer for
/// one match is a bare value on some interpreters, a list on others); none, or two
/// different ones, is an invalid input, as `irr run --finding` refuses them. Returns the
/// first state's name.
#[allow(clippy::too_many_arguments)]
fn filter_states(
    s: &mut Map<String, Value>,
    name: &str,
    label: &str,
    (list, field, value, tail): &(String, String, String, String),
    invalid: &str,
    next: &str,
) -> String {
    let n = |x: &str| format!("irr: finding {name} ({label}) {x}");
    let m = format!("$.m_{name}");
    s.insert(n("each"), json!({
        "Type": "Map",
        "ItemsPath": list,
        "ItemSelector": {"t.$": format!("$$.Map.Item.Value.{field}"), "v.$": format!("$$.Map.Item.Value.{tail}")},
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "INLINE"},
            "StartAt": n("matches?"),
            "States": {
                n("matches?"): {"Type": "Choice", "Choices": [{"Variable": "$.t", "StringEquals": value, "Next": n("match")}], "Default": n("no match")},
                n("match"): {"Type": "Pass", "OutputPath": "$.v", "End": true},
                n("no match"): {"Type": "Pass", "Result": "", "End": true},
            }
        },
        "ResultPath": format!("{m}.all"),
        "Next": n("distinct"),
    }));
    s.insert(
        n("distinct"),
        json!({"Type": "Pass", "Parameters": {
        "u.$": format!("States.ArrayUnique({m}.all)"),
        "n.$": format!("States.ArrayLength(States.ArrayUnique({m}.all))"),
    }, "ResultPath": m, "Next": n("how many")}),
    );
    s.insert(
        n("how many"),
        json!({"Type": "Choice", "Choices": [
        {"Variable": format!("{m}.n"), "NumericEquals": 1, "Next": n("one")},
        {"Variable": format!("{m}.n"), "NumericEquals": 2, "Next": n("two")},
    ], "Default": invalid}),
    );
    s.insert(n("one"), json!({"Type": "Pass", "Parameters": {"v.$": format!("States.ArrayGetItem({m}.u, 0)")}, "ResultPath": format!("{m}.value"), "Next": n("found")}));
    s.insert(n("two"), json!({"Type": "Pass", "Parameters": {"a.$": format!("States.ArrayGetItem({m}.u, 0)"), "b.$": format!("States.ArrayGetItem({m}.u, 1)")}, "ResultPath": format!("{m}.pair"), "Next": n("which")}));
    s.insert(
        n("which"),
        json!({"Type": "Choice", "Choices": [
        {"Variable": format!("{m}.pair.a"), "StringEquals": "", "Next": n("second")},
        {"Variable": format!("{m}.pair.b"), "StringEquals": "", "Next": n("first")},
    ], "Default": invalid}),
    );
    s.insert(n("second"), json!({"Type": "Pass", "Parameters": {"v.$": format!("{m}.pair.b")}, "ResultPath": format!("{m}.value"), "Next": n("found")}));
    s.insert(n("first"), json!({"Type": "Pass", "Parameters": {"v.$": format!("{m}.pair.a")}, "ResultPath": format!("{m}.value"), "Next": n("found")}));
    s.insert(
        n("found"),
        json!({"Type": "Choice", "Choices": [
        {"Variable": format!("{m}.value.v"), "StringEquals": "", "Next": invalid},
    ], "Default": next}),
    );
    n("each")
}

/// The states that take a finding (`$.finding` or `$.findings` present) to the usual input
/// (`case_id`, `inputs`, `target`) and go on to `next`; `invalid` refuses an input.
pub fn states(
    pb: &Playbook,
    invalid: &str,
    next: &str,
    problems: &mut Vec<Diagnostic>,
) -> Map<String, Value> {
    let mut s = Map::new();
    let Some(t) = &pb.trigger else {
        return s;
    };
    let mut routes = Vec::new();
    for source in [FindingSource::GuardDuty, FindingSource::SecurityHub] {
        if !t.takes(source) {
            continue;
        }
        let (key, label, camel) = match source {
            FindingSource::GuardDuty => ("guardduty", "GuardDuty", true),
            FindingSource::SecurityHub => ("securityhub", "Security Hub", false),
        };
        let map_state = format!("irr: finding ({label})");
        let mut entry = map_state.clone();
        if source == FindingSource::SecurityHub {
            // Exactly one finding, as `irr run --finding`.
            let one = "irr: one Security Hub finding";
            s.insert("irr: Security Hub findings".into(), json!({"Type": "Pass", "Parameters": {"n.$": "States.ArrayLength($.findings)"}, "ResultPath": "$.count", "Next": "irr: how many findings"}));
            s.insert("irr: how many findings".into(), json!({"Type": "Choice", "Choices": [{"Variable": "$.count.n", "NumericEquals": 1, "Next": one}], "Default": invalid}));
            s.insert(one.into(), json!({"Type": "Pass", "Parameters": {"v.$": "States.ArrayGetItem($.findings, 0)"}, "ResultPath": "$.one", "Next": "irr: the Security Hub finding"}));
            s.insert("irr: the Security Hub finding".into(), json!({"Type": "Pass", "Parameters": {"case_id.$": "$.case_id", "source.$": "$.source", "finding.$": "$.one.v"}, "Next": map_state.clone()}));
            entry = "irr: Security Hub findings".into();
        }
        routes.push(json!({"Variable": "$.source", "StringEquals": key, "Next": entry}));
        let mapping = t.mapping_for(source);
        let mut inputs = Map::new();
        let mut arn_inputs = Vec::new();
        let mut filters = Vec::new();
        for (name, fp) in &mapping.inputs {
            let found = match filter_path(fp, camel) {
                None => path(fp, camel),
                Some(Ok(f)) => {
                    filters.push((name.clone(), f));
                    Ok(format!("$.m_{name}.value.v"))
                }
                Some(Err(m)) => Err(m),
            };
            match found {
                Ok(p) if fp.arn_resource => {
                    let split = format!("States.StringSplit({p}, '/')");
                    inputs.insert(format!("{name}.$"), json!(format!("States.ArrayGetItem({split}, States.MathAdd(States.ArrayLength({split}), -1))")));
                    arn_inputs.push(name.clone());
                }
                Ok(p) => {
                    inputs.insert(format!("{name}.$"), json!(p));
                }
                Err(m) => {
                    problems.push(Diagnostic::error(fp.span.clone(), format!("trigger: {m}")))
                }
            }
        }
        let mut params = json!({"case_id.$": "$.case_id", "inputs": inputs});
        if let Some(a) = &mapping.account {
            match path(a, camel) {
                Ok(p) => params["target"] = json!({"account.$": p}),
                Err(m) => problems.push(Diagnostic::error(a.span.clone(), format!("trigger: {m}"))),
            }
        }
        let mut after_map = next.to_owned();
        if let Some(r) = &mapping.region {
            match path(r, camel) {
                Ok(p) => {
                    params["region.$"] = json!(p);
                    after_map = format!("irr: finding region ({label})");
                    s.insert(after_map.clone(), json!({"Type": "Pass", "Parameters": {"v.$": "States.ArrayGetItem(States.StringSplit($$.StateMachine.Id, ':'), 3)"}, "ResultPath": "$.own_region", "Next": format!("irr: finding in this region ({label})")}));
                    s.insert(
                        format!("irr: finding in this region ({label})"),
                        json!({"Type": "Choice", "Choices": [
                        {"Variable": "$.region", "StringEqualsPath": "$.own_region.v", "Next": next}
                    ], "Default": "irr: finding in another region"}),
                    );
                }
                Err(m) => problems.push(Diagnostic::error(r.span.clone(), format!("trigger: {m}"))),
            }
        }
        let mut pass = json!({"Type": "Pass", "Parameters": params, "Next": after_map});
        // An ARN with no "/" names no resource id the CLI would take either way: refused.
        if !arn_inputs.is_empty() {
            let check = format!("irr: finding resource ids ({label})");
            pass["Next"] = json!(check);
            let rules: Vec<Value> = arn_inputs
                .iter()
                .map(|n| json!({"Variable": format!("$.inputs['{n}']"), "StringMatches": "arn:*", "Next": invalid}))
                .collect();
            s.insert(
                check,
                json!({"Type": "Choice", "Choices": rules, "Default": after_map}),
            );
        }
        s.insert(map_state.clone(), pass);
        // The filters' states come first, each going on to the next, the last to the mapping.
        let mut first = map_state;
        for (name, f) in filters.iter().rev() {
            first = filter_states(&mut s, name, label, f, invalid, &first);
        }
        let after_findings = if source == FindingSource::SecurityHub {
            "irr: the Security Hub finding"
        } else {
            ""
        };
        match s.get_mut(after_findings) {
            Some(st) => st["Next"] = json!(first),
            None => {
                if let Some(r) = routes.last_mut() {
                    r["Next"] = json!(first);
                }
            }
        }
    }
    s.insert(
        "irr: finding".into(),
        json!({"Type": "Choice", "Choices": routes, "Default": invalid}),
    );
    s.insert("irr: finding in another region".into(), json!({"Type": "Fail", "Error": "irr.InvalidInput", "Cause": "the finding is in another region than this state machine (the playbook's trigger targets.region): deploy the stack in that region"}));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(text: &str) -> FieldPath {
        FieldPath {
            text: text.into(),
            query: serde_json_path::JsonPath::parse(text).unwrap(),
            arn_resource: false,
            span: crate::diagnostic::Span::none("t"),
        }
    }

    #[test]
    fn paths_become_state_paths_in_the_events_case() {
        assert_eq!(
            path(&fp("$.Resource.InstanceDetails.InstanceId"), true).unwrap(),
            "$.finding.resource.instanceDetails.instanceId"
        );
        assert_eq!(
            path(&fp("$.Resources[0].Id"), false).unwrap(),
            "$.finding.Resources[0].Id"
        );
        assert_eq!(
            path(&fp("$['AccountId']"), true).unwrap(),
            "$.finding.accountId"
        );
        assert!(path(&fp("$.Resources[?@.Type == 'AwsEc2Instance'].Id"), false).is_err());
        assert!(path(&fp("$.Resources[*].Id"), false).is_err());
        let (list, field, value, tail) =
            filter_path(&fp("$.Resources[?@.Type == 'AwsEc2Instance'].Id"), false)
                .unwrap()
                .unwrap();
        assert_eq!(
            (list.as_str(), field.as_str(), value.as_str(), tail.as_str()),
            ("$.finding.Resources", "Type", "AwsEc2Instance", "Id")
        );
        assert!(filter_path(&fp("$.Resources[0].Id"), false).is_none());
        assert!(filter_path(&fp("$.Resources[?@.Type != 'x'].Id"), false)
            .unwrap()
            .is_err());
    }
}
