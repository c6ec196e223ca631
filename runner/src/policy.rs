//! `irr policy`: the least-privilege IAM policy a run of a playbook needs.
//!
//! Only the IAM actions its steps' actions declare (plus writing evidence and learning the
//! caller's identity), with resources scoped wherever the action allows it: a step's
//! rendered parameters fill the resource patterns of the catalog (`instance/{instance_id}`),
//! and anything not known before the run becomes `*`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::catalog::{
    Permission, RUN_PERMISSIONS, S3_EVIDENCE_PERMISSIONS, SIGNING_KMS_PERMISSIONS,
};
use crate::plan::{Plan, PlannedStep};
use crate::template;

/// The policy document for a plan.
pub fn policy(plan: &Plan) -> Value {
    // (action, service a role may be passed to) -> resources
    let mut grants: BTreeMap<(String, Option<&'static str>), BTreeSet<String>> = BTreeMap::new();
    let region = known(&plan.context, &["aws", "region"]);
    // A fan-out acts in each target's account and region: the steps' grants name any.
    let account = known(&plan.context, &["aws", "account_id"]).filter(|_| plan.targets.is_none());
    let region = region.filter(|_| plan.targets.is_none());
    let case = known(&plan.context, &["case", "id"]);
    let mut add = |perm: &Permission, fill: &dyn Fn(&str) -> Option<String>| {
        let entry = grants
            .entry((perm.action.to_owned(), perm.passed_to))
            .or_default();
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
    let evidence = plan.evidence_location.as_deref().and_then(s3_location);
    for step in plan.steps.iter().chain(&plan.finally) {
        let Some(spec) = step.spec else { continue };
        for perm in spec.permissions {
            if perm
                .when_param
                .is_some_and(|p| step.params.get(p).is_none())
            {
                continue;
            }
            // Permissions on the run's S3 evidence (`{evidence_bucket}`): none with local
            // evidence, where the action makes no such call.
            if perm.on_evidence() && evidence.is_none() {
                continue;
            }
            add(perm, &|name| match (name, &evidence) {
                ("evidence_bucket", Some((bucket, _))) => Some(bucket.clone()),
                ("evidence_prefix", Some((_, prefix))) => Some(prefix.clone()),
                _ => param_value(step, plan, name),
            });
        }
    }
    if let Some((bucket, prefix)) = evidence {
        for perm in S3_EVIDENCE_PERMISSIONS {
            add(perm, &|name| match name {
                "bucket" => Some(bucket.clone()),
                "prefix" => Some(prefix.clone()),
                _ => None,
            });
        }
    }
    // A KMS signing key: its public key and Sign, on that key only.
    let kms_key = plan
        .signing_key
        .as_deref()
        .filter(|k| crate::signing::needs_aws(Some(k)));
    if let Some(arn) = kms_key {
        for perm in SIGNING_KMS_PERMISSIONS {
            add(perm, &|name| (name == "key").then(|| arn.to_owned()));
        }
    }
    // A fan-out: the caller assumes the role in each account (and finds the organization's
    // accounts); the steps' grants are what that role needs there.
    if let Some(t) = &plan.targets {
        let roles: BTreeSet<String> = match &t.accounts {
            crate::targets::AccountSet::Ids(ids) => ids
                .iter()
                .map(|a| crate::targets::role_arn("aws", a, &t.role))
                .collect(),
            crate::targets::AccountSet::Organization(_) => {
                BTreeSet::from([crate::targets::role_arn("aws", "*", &t.role)])
            }
        };
        grants
            .entry(("sts:AssumeRole".to_owned(), None))
            .or_default()
            .extend(roles);
        if matches!(t.accounts, crate::targets::AccountSet::Organization(_)) {
            for action in [
                "organizations:ListAccountsForParent",
                "organizations:ListOrganizationalUnitsForParent",
            ] {
                grants
                    .entry((action.to_owned(), None))
                    .or_default()
                    .insert("*".to_owned());
            }
        }
    }
    // A resource list holding "*" is just "*".
    for resources in grants.values_mut() {
        if resources.contains("*") {
            *resources = BTreeSet::from(["*".to_owned()]);
        }
    }
    // One statement per distinct resource set (and PassRole condition).
    let mut statements: BTreeMap<(Option<&'static str>, Vec<String>), Vec<String>> =
        BTreeMap::new();
    for ((action, passed_to), resources) in grants {
        statements
            .entry((passed_to, resources.into_iter().collect()))
            .or_default()
            .push(action);
    }
    let statements: Vec<Value> = statements
        .into_iter()
        .enumerate()
        .map(|(i, ((passed_to, resources), actions))| {
            let mut s = json!({
                "Sid": format!("Irr{}", i + 1),
                "Effect": "Allow",
                "Action": actions,
                "Resource": if resources.len() == 1 { json!(resources[0]) } else { json!(resources) },
            });
            if let Some(service) = passed_to {
                s["Condition"] = json!({"StringEquals": {"iam:PassedToService": service}});
            }
            s
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

    /// The policy of a shipped playbook, for case IR-9 in 123456789012/us-east-1.
    fn shipped(text: &str, pairs: &[&str]) -> Value {
        let pb = validate(&Source::new("shipped.yaml", text)).unwrap();
        let pairs: Vec<String> = pairs.iter().map(|p| (*p).to_owned()).collect();
        let inputs = crate::validate::resolve_inputs(&pb, &pairs, None, true).unwrap();
        let ctx = PlanContext {
            case_id: Some("IR-9".into()),
            region: Some("us-east-1".into()),
            account_id: Some("123456789012".into()),
            ..Default::default()
        };
        policy(&plan(&pb, inputs, &ctx))
    }

    /// Every (action, resources) pair of a document.
    fn grants(doc: &Value) -> BTreeMap<String, Vec<String>> {
        let mut out = BTreeMap::new();
        for s in doc["Statement"].as_array().unwrap() {
            assert_eq!(s["Effect"], "Allow");
            assert!(s.get("Condition").is_none(), "{s}");
            let resources: Vec<String> = match &s["Resource"] {
                Value::String(r) => vec![r.clone()],
                Value::Array(rs) => rs.iter().map(|r| r.as_str().unwrap().to_owned()).collect(),
                other => panic!("resource {other}"),
            };
            for a in s["Action"].as_array().unwrap() {
                let prev = out.insert(a.as_str().unwrap().to_owned(), resources.clone());
                assert!(prev.is_none(), "{a} in two statements");
            }
        }
        out
    }

    /// Actions AWS allows no resource scoping for (or that are only ever read-only lists).
    fn unscopable(action: &str) -> bool {
        let (service, name) = action.split_once(':').unwrap();
        matches!(service, "ec2" | "autoscaling") && name.starts_with("Describe")
            || action == "sts:GetCallerIdentity"
    }

    const EC2_PB: &str = include_str!("../../playbooks/ec2-instance-compromise.yaml");
    const CRED_PB: &str = include_str!("../../playbooks/iam-credential-compromise.yaml");
    const S3_PB: &str = include_str!("../../playbooks/s3-bucket-exposure.yaml");
    const INSTANCE_ARN: &str = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0";

    /// The containment steps of the shipped EC2 playbook, without its CloudFormation clean
    /// room (whose stack creates roles, instances and more, with its own scoping).
    const CONTAINMENT_PB: &str = "apiVersion: irr/v1\nkind: Playbook\nmetadata: {name: t, version: 1.0.0}\ninputs:\n  instance_id: {type: instance_id}\nsteps:\n  - {id: grant, action: iam.grant_responder_access, with: {principals: []}}\n  - {id: capture, action: ec2.capture_instance_metadata, with: {instance_id: \"{{inputs.instance_id}}\"}}\n  - {id: protect, action: ec2.protect_instance, needs: [capture], with: {instance_id: \"{{inputs.instance_id}}\"}}\n  - {id: snapshot, action: ec2.snapshot_volumes, needs: [protect], with: {instance_id: \"{{inputs.instance_id}}\"}}\n  - {id: isolate, action: ec2.isolate_instance, needs: [snapshot], with: {instance_id: \"{{inputs.instance_id}}\"}}\n  - {id: tag, action: ec2.tag_resources, with: {resource_ids: \"{{steps.snapshot.outputs.snapshot_ids}}\", tags: {irr:state: contained}}}\nfinally:\n  - {id: revoke, action: iam.revoke_responder_access, with: {role_name: \"{{steps.grant.outputs.role_name}}\"}}\n";

    /// The volatile capture's S3 calls are on the run's S3 evidence (bucket and prefix), and
    /// not asked for with local evidence, where the capture makes none.
    #[test]
    fn volatile_capture_is_scoped_to_the_evidence_bucket() {
        let pb = EC2_PB.replace(
            "evidence:\n  retention_days: 90\n",
            "evidence:\n  retention_days: 90\n  location: s3://ev-bucket/cases\n",
        );
        let g = grants(&shipped(&pb, &["instance_id=i-0123456789abcdef0"]));
        assert_eq!(
            g["s3:ListMultipartUploadParts"],
            vec!["arn:aws:s3:::ev-bucket/cases/*".to_owned()]
        );
        assert_eq!(
            g["s3:ListBucketMultipartUploads"],
            vec!["arn:aws:s3:::ev-bucket".to_owned()]
        );
        assert!(g["s3:AbortMultipartUpload"].contains(&"arn:aws:s3:::ev-bucket/cases/*".to_owned()));
        let send = &g["ssm:SendCommand"];
        assert!(send.contains(&INSTANCE_ARN.to_owned()), "{send:?}");
        assert!(
            send.contains(&"arn:aws:ssm:us-east-1::document/AWS-RunShellScript".to_owned()),
            "{send:?}"
        );
        let local = grants(&shipped(EC2_PB, &["instance_id=i-0123456789abcdef0"]));
        assert!(
            !local.contains_key("s3:ListMultipartUploadParts"),
            "{local:?}"
        );
        assert!(local.contains_key("ssm:DescribeInstanceInformation"));
    }

    #[test]
    fn shipped_containment_playbook_scopes_instance_actions() {
        let g = grants(&shipped(EC2_PB, &["instance_id=i-0123456789abcdef0"]));
        for a in [
            "ec2:ModifyInstanceAttribute",
            "ec2:GetConsoleOutput",
            "ec2:DisassociateIamInstanceProfile",
        ] {
            assert!(g[a].contains(&INSTANCE_ARN.to_owned()), "{a}: {:?}", g[a]);
            assert!(!g[a].iter().any(|r| r == "*"), "{a}: {:?}", g[a]);
        }
        assert!(g["iam:DeleteRole"]
            .contains(&"arn:aws:iam::123456789012:role/irr-responder-IR-9".to_owned()));
    }

    #[test]
    fn containment_policy_scopes_instance_and_role_actions() {
        let g = grants(&shipped(
            CONTAINMENT_PB,
            &["instance_id=i-0123456789abcdef0"],
        ));
        // Actions on the instance itself: that instance only.
        for a in [
            "ec2:ModifyInstanceAttribute",
            "ec2:GetConsoleOutput",
            "ec2:DisassociateIamInstanceProfile",
        ] {
            assert_eq!(g[a], [INSTANCE_ARN], "{a}");
        }
        // Tags on the instance name it; no other instance.
        assert!(g["ec2:CreateTags"].contains(&INSTANCE_ARN.to_owned()));
        assert!(!g["ec2:CreateTags"]
            .iter()
            .any(|r| r.contains(":instance/*")));
        // Every IAM action on roles: the responder role of the case, nothing else.
        let role = "arn:aws:iam::123456789012:role/irr-responder-IR-9";
        for (a, r) in &g {
            if a.starts_with("iam:") && a.contains("Role") {
                assert!(r.contains(&role.to_owned()), "{a}: {r:?}");
                assert!(
                    r.iter()
                        .all(|x| x == role || x.contains(":instance-profile/")),
                    "{a}: {r:?}"
                );
            }
        }
        for a in [
            "iam:CreateRole",
            "iam:DeleteRole",
            "iam:PutRolePolicy",
            "iam:UpdateAssumeRolePolicy",
            "iam:UpdateRole",
            "iam:GetRole",
        ] {
            assert_eq!(g[a], [role], "{a}");
        }
        // Group and interface changes: security groups and interfaces of the account/region.
        assert_eq!(
            g["ec2:ModifyNetworkInterfaceAttribute"],
            [
                "arn:aws:ec2:us-east-1:123456789012:network-interface/*",
                "arn:aws:ec2:us-east-1:123456789012:security-group/*"
            ]
        );
        for a in [
            "ec2:AuthorizeSecurityGroupEgress",
            "ec2:AuthorizeSecurityGroupIngress",
            "ec2:RevokeSecurityGroupEgress",
            "ec2:RevokeSecurityGroupIngress",
        ] {
            assert_eq!(
                g[a],
                ["arn:aws:ec2:us-east-1:123456789012:security-group/*"],
                "{a}"
            );
        }
        assert_eq!(
            g["ec2:CreateSnapshot"],
            [
                "arn:aws:ec2:us-east-1:123456789012:volume/*",
                "arn:aws:ec2:us-east-1::snapshot/*"
            ]
        );
        // "*" only where AWS allows no scoping.
        for (a, r) in &g {
            if r.iter().any(|x| x == "*") {
                assert!(unscopable(a), "{a} is granted on *");
                assert_eq!(r.len(), 1, "{a}");
            }
        }
        // No wildcard action, nothing the playbook does not do.
        assert!(!g.keys().any(|a| a.contains('*')));
        for a in [
            "iam:PassRole",
            "ec2:AssociateIamInstanceProfile",
            "ec2:DeleteTags",
        ] {
            assert!(!g.contains_key(a), "{a} is for release_instance only");
        }
    }

    #[test]
    fn credential_policy_scopes_to_the_user() {
        let g = grants(&shipped(
            CRED_PB,
            &["user_name=ci-deploy", "access_key_id=AKIAIOSFODNN7EXAMPLE"],
        ));
        let user = "arn:aws:iam::123456789012:user/ci-deploy";
        for (a, r) in &g {
            if a.starts_with("iam:") && a.contains("User")
                || ["iam:ListAccessKeys", "iam:UpdateAccessKey"].contains(&a.as_str())
            {
                assert_eq!(r, &[user], "{a}");
            }
            if r.iter().any(|x| x == "*") {
                assert!(unscopable(a) || a == "iam:GetAccessKeyLastUsed", "{a} on *");
            }
        }
        for a in [
            "iam:PutUserPolicy",
            "iam:GetUserPolicy",
            "iam:UpdateAccessKey",
        ] {
            assert!(g.contains_key(a), "{a}");
        }
        // The role variants of the same actions are not needed for a user.
        for a in ["iam:GetRole", "iam:PutRolePolicy", "iam:GetRolePolicy"] {
            assert!(!g.contains_key(a), "{a}");
        }
        assert_eq!(
            g["iam:GetPolicyVersion"],
            [
                "arn:aws:iam::123456789012:policy/*",
                "arn:aws:iam::aws:policy/*"
            ]
        );
    }

    #[test]
    fn bucket_policy_scopes_to_the_bucket() {
        let g = grants(&shipped(S3_PB, &["bucket=exposed-bucket"]));
        for (a, r) in &g {
            if a.starts_with("s3:") {
                assert_eq!(r, &["arn:aws:s3:::exposed-bucket"], "{a}");
            }
        }
        assert!(g.contains_key("s3:PutBucketPublicAccessBlock"));
        assert!(g.contains_key("s3:GetBucketOwnershipControls"));
    }

    /// Only a playbook that re-attaches an instance profile (`ec2.release_instance`) gets
    /// `iam:PassRole`, and only for EC2 (`iam:PassedToService`): the containment path never.
    #[test]
    fn pass_role_only_to_release_and_only_to_ec2() {
        let release = CONTAINMENT_PB.replace(
            "finally:\n",
            "  - {id: release, action: ec2.release_instance, needs: [isolate], with: {instance_id: \"{{inputs.instance_id}}\"}}\nfinally:\n",
        );
        let d = shipped(&release, &["instance_id=i-0123456789abcdef0"]);
        let pass: Vec<&Value> = d["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| {
                s["Action"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|a| a == "iam:PassRole")
            })
            .collect();
        assert_eq!(pass.len(), 1, "{d:#}");
        assert_eq!(
            pass[0]["Action"],
            json!(["iam:PassRole"]),
            "alone in its statement"
        );
        assert_eq!(
            pass[0]["Condition"],
            json!({"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}})
        );
        assert_eq!(
            pass[0]["Resource"],
            json!("arn:aws:iam::123456789012:role/*")
        );
        // No other statement carries a condition.
        let conditioned = d["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s.get("Condition").is_some())
            .count();
        assert_eq!(conditioned, 1);
        let contain = shipped(CONTAINMENT_PB, &["instance_id=i-0123456789abcdef0"]);
        assert!(!contain.to_string().contains("iam:PassRole"), "{contain:#}");
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
