//! `irr policy`: the least-privilege IAM policy a run of a playbook needs.
//!
//! Only the IAM actions its steps' actions declare (plus writing evidence and learning the
//! caller's identity), with resources scoped wherever the action allows it: a step's
//! rendered parameters fill the resource patterns of the catalog (`instance/{instance_id}`),
//! and anything not known before the run becomes `*`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::catalog::{Permission, RUN_PERMISSIONS, S3_EVIDENCE_PERMISSIONS};
use crate::plan::{Plan, PlannedStep};
use crate::template;

/// The policy document for a plan.
pub fn policy(plan: &Plan) -> Value {
    // (action) -> resources
    let mut grants: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let region = known(&plan.context, &["aws", "region"]);
    let account = known(&plan.context, &["aws", "account_id"]);
    let case = known(&plan.context, &["case", "id"]);
    let mut add = |perm: &Permission, fill: &dyn Fn(&str) -> Option<String>| {
        let entry = grants.entry(perm.action.to_owned()).or_default();
        for pattern in perm.resources {
            entry.insert(fill_pattern(pattern, &|name| match name {
                "region" => region.clone(),
                "account" => account.clone(),
                "case" => case.clone(),
                other => fill(other),
            }));
        }
    };
    for perm in RUN_PERMISSIONS {
        add(perm, &|_| None);
    }
    for step in plan.steps.iter().chain(&plan.finally) {
        let Some(spec) = step.spec else { continue };
        for perm in spec.permissions {
            if perm
                .when_param
                .is_some_and(|p| step.params.get(p).is_none())
            {
                continue;
            }
            add(perm, &|name| param_value(step, plan, name));
        }
    }
    if let Some((bucket, prefix)) = plan.evidence_location.as_deref().and_then(s3_location) {
        for perm in S3_EVIDENCE_PERMISSIONS {
            add(perm, &|name| match name {
                "bucket" => Some(bucket.clone()),
                "prefix" => Some(prefix.clone()),
                _ => None,
            });
        }
    }
    // A resource list holding "*" is just "*".
    for resources in grants.values_mut() {
        if resources.contains("*") {
            *resources = BTreeSet::from(["*".to_owned()]);
        }
    }
    // One statement per distinct resource set.
    let mut statements: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
    for (action, resources) in grants {
        statements
            .entry(resources.into_iter().collect())
            .or_default()
            .push(action);
    }
    let statements: Vec<Value> = statements
        .into_iter()
        .enumerate()
        .map(|(i, (resources, actions))| {
            json!({
                "Sid": format!("Irr{}", i + 1),
                "Effect": "Allow",
                "Action": actions,
                "Resource": if resources.len() == 1 { json!(resources[0]) } else { json!(resources) },
            })
        })
        .collect();
    json!({ "Version": "2012-10-17", "Statement": statements })
}

fn known(ctx: &Value, path: &[&str]) -> Option<String> {
    path.iter()
        .try_fold(ctx, |v, k| v.get(k))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Replaces `{name}` placeholders; unknown ones become `*` (and what follows a `*` in the
/// same segment stays as it is).
fn fill_pattern(pattern: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            out.push_str(&rest[open..]);
            return out;
        };
        let name = &rest[open + 1..open + close];
        out.push_str(&lookup(name).unwrap_or_else(|| "*".to_owned()));
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    // "role/*" rather than "role/**"
    while out.contains("**") {
        out = out.replace("**", "*");
    }
    out
}

/// A step's parameter as a concrete string for a resource ARN, when it is known before the
/// run. A reference to a responder role created by an earlier step resolves to that step's
/// role name pattern.
fn param_value(step: &PlannedStep, plan: &Plan, name: &str) -> Option<String> {
    let v = step.params.get(name)?;
    let s = v.as_str()?;
    if !template::is_template(s) {
        return Some(s.to_owned());
    }
    let Some(r) = template::single_expression(s) else {
        // Mixed text: what comes before the first expression is fixed.
        let fixed = s.split("{{").next().unwrap_or("");
        return (!fixed.is_empty()).then(|| format!("{fixed}*"));
    };
    match r
        .path
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["steps", sid, "outputs", "role_name"] => {
            let grant = plan
                .steps
                .iter()
                .chain(&plan.finally)
                .find(|p| p.id == *sid)?;
            param_value(grant, plan, "role_name")
        }
        _ => None,
    }
}

/// `s3://bucket/prefix` -> (bucket, prefix ending in "/" or empty). A prefix holding an
/// unrendered template is cut before it.
pub fn s3_location(loc: &str) -> Option<(String, String)> {
    let rest = loc.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() || template::is_template(bucket) {
        return None;
    }
    let prefix = prefix.split("{{").next().unwrap_or("");
    let prefix = if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_owned()
    } else {
        format!("{prefix}/")
    };
    Some((bucket.to_owned(), prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::Source;
    use crate::plan::{plan, PlanContext};
    use crate::validate::validate;

    fn doc(text: &str, inputs: &[(&str, Value)], ctx: PlanContext) -> Value {
        let pb = validate(&Source::new("t.yaml", text)).unwrap();
        let inputs = inputs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        policy(&plan(&pb, inputs, &ctx))
    }

    fn statement_for<'a>(doc: &'a Value, action: &str) -> &'a Value {
        doc["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["Action"].as_array().unwrap().iter().any(|a| a == action))
            .unwrap_or_else(|| panic!("no statement for {action}: {doc:#}"))
    }

    const PB: &str = "apiVersion: irr/v1\nkind: Playbook\nmetadata: {name: t, version: 1.0.0}\ninputs:\n  instance_id: {type: instance_id}\nevidence: {location: \"s3://ev-bucket/cases\"}\nsteps:\n  - id: protect\n    action: ec2.protect_instance\n    with: {instance_id: \"{{inputs.instance_id}}\"}\n  - id: grant\n    action: iam.grant_responder_access\n    with: {principals: []}\nfinally:\n  - id: revoke\n    action: iam.revoke_responder_access\n    with: {role_name: \"{{steps.grant.outputs.role_name}}\"}\n";

    #[test]
    fn only_needed_actions_scoped_to_known_resources() {
        let ctx = PlanContext {
            case_id: Some("IR-9".into()),
            region: Some("us-east-1".into()),
            account_id: Some("123456789012".into()),
            ..Default::default()
        };
        let d = doc(PB, &[("instance_id", json!("i-0123456789abcdef0"))], ctx);
        let modify = statement_for(&d, "ec2:ModifyInstanceAttribute");
        assert_eq!(
            modify["Resource"],
            json!("arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0")
        );
        let delete = statement_for(&d, "iam:DeleteRole");
        assert_eq!(
            delete["Resource"],
            json!("arn:aws:iam::123456789012:role/irr-responder-IR-9")
        );
        let put = statement_for(&d, "s3:PutObject");
        assert_eq!(put["Resource"], json!("arn:aws:s3:::ev-bucket/cases/*"));
        let describe = statement_for(&d, "ec2:DescribeInstances");
        assert_eq!(describe["Resource"], json!("*"));
        let all: Vec<&str> = d["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["Action"].as_array().unwrap())
            .map(|a| a.as_str().unwrap())
            .collect();
        assert!(!all.contains(&"ec2:CreateSnapshot"), "{all:?}");
        assert!(!all.iter().any(|a| a.contains('*')), "{all:?}");
    }

    #[test]
    fn unknowns_become_wildcards_in_their_segment() {
        let d = doc(
            PB,
            &[("instance_id", json!("i-0123456789abcdef0"))],
            PlanContext::default(),
        );
        let modify = statement_for(&d, "ec2:ModifyInstanceAttribute");
        assert_eq!(
            modify["Resource"],
            json!("arn:aws:ec2:*:*:instance/i-0123456789abcdef0")
        );
    }

    #[test]
    fn patterns() {
        assert_eq!(fill_pattern("role/{x}", &|_| None), "role/*");
        assert_eq!(
            s3_location("s3://b/p/{{case.id}}"),
            Some(("b".into(), "p/".into()))
        );
        assert_eq!(s3_location("s3://b"), Some(("b".into(), String::new())));
    }
}
