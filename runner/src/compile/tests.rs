use super::*;

fn playbook(text: &str) -> Playbook {
    crate::validate::validate(&crate::diagnostic::Source::new("pb.yaml", text))
        .unwrap_or_else(|d| panic!("{d:?}"))
}

fn fixture() -> Playbook {
    playbook(include_str!("../../tests/fixtures/compile/contain.yaml"))
}

fn states(c: &Compiled) -> &Map<String, Value> {
    c.definition["States"].as_object().expect("states")
}

/// Every `Next`, `Default`, `StartAt` and `Catch` target names a state of its scope.
fn check_links(scope: &Map<String, Value>, start: &str) {
    assert!(scope.contains_key(start), "StartAt {start}");
    for (name, s) in scope {
        let mut targets: Vec<&str> = Vec::new();
        if let Some(n) = s["Next"].as_str() {
            targets.push(n);
        }
        if let Some(n) = s["Default"].as_str() {
            targets.push(n);
        }
        for c in s["Choices"].as_array().into_iter().flatten() {
            targets.push(c["Next"].as_str().expect("choice Next"));
        }
        for c in s["Catch"].as_array().into_iter().flatten() {
            targets.push(c["Next"].as_str().expect("catch Next"));
        }
        for t in targets {
            assert!(scope.contains_key(t), "{name} -> {t}: no such state");
        }
        let ty = s["Type"].as_str().expect("Type");
        if !matches!(ty, "Choice" | "Fail" | "Succeed") {
            assert!(
                s.get("Next").is_some() != s.get("End").is_some(),
                "{name}: exactly one of Next and End"
            );
        }
        for b in s["Branches"].as_array().into_iter().flatten() {
            check_links(
                b["States"].as_object().expect("states"),
                b["StartAt"].as_str().expect("start"),
            );
        }
        if let Some(p) = s.get("ItemProcessor") {
            check_links(
                p["States"].as_object().expect("states"),
                p["StartAt"].as_str().expect("start"),
            );
        }
    }
}

#[test]
fn the_fixture_compiles_with_every_link_resolved() {
    let c = compile(&fixture(), Map::new()).expect("compiles");
    let d = &c.definition;
    assert!(d["Comment"]
        .as_str()
        .unwrap()
        .starts_with("irr playbook contain-ec2 1.0.0 sha256:"));
    check_links(states(&c), d["StartAt"].as_str().unwrap());
    // One wrapper per step, retried as the step is, its failure caught.
    let isolate = &states(&c)["isolate"];
    assert_eq!(isolate["Type"], "Parallel");
    assert_eq!(isolate["Catch"][0]["Next"], "isolate: attempt failed");
    let again = &states(&c)["isolate: attempt failed"];
    assert_eq!(again["Choices"][0]["NumericLessThan"], 1);
    assert_eq!(again["Default"], "isolate: failed");
    assert_eq!(
        states(&c)["isolate: pause before the next attempt"]["Next"],
        "isolate"
    );
    // A failed aborting step goes to the finally branch; a `continue` step goes on.
    assert_eq!(states(&c)["isolate: failed"]["Next"], "irr: aborted");
    assert_eq!(states(&c)["tag: failed"]["Next"], "irr: finally");
    assert_eq!(states(&c)["irr: aborted"]["Next"], "irr: finally");
    // `when` is a Choice before the step; the needs are checked too.
    let run = &states(&c)["tag: run?"];
    assert_eq!(
        run["Choices"][0]["Not"]["Variable"],
        "$.steps['snapshots-completed'].status"
    );
    assert_eq!(
        run["Choices"][1]["Not"],
        json!({"Variable": "$.inputs['tag_snapshots']", "BooleanEquals": true})
    );
    // Timeouts bound each task of the step.
    let text = serde_json::to_string(&isolate["Branches"]).unwrap();
    assert!(text.contains("\"TimeoutSeconds\":300"), "{text}");
    assert!(text.contains("arn:aws:states:::aws-sdk:ec2:modifyNetworkInterfaceAttribute"));
    // Template defaults are computed in the first states.
    assert_eq!(
        states(&c)["irr: defaults"]["Parameters"]["note.$"],
        "States.Format('contained by irr in {}', $.aws.account_id)"
    );
    assert!(c.stack.contains("AWS::StepFunctions::StateMachine"));
}

#[test]
fn the_two_step_swap_compensates_and_never_fails_an_iteration() {
    let c = compile(&fixture(), Map::new()).expect("compiles");
    let branch = &states(&c)["isolate"]["Branches"][0]["States"];
    let map = &branch["isolate: interfaces"];
    let iter = &map["ItemProcessor"]["States"];
    assert_eq!(
        iter["isolate: to allow-all group"]["Catch"][0]["Next"],
        "isolate: compensate to isolation"
    );
    assert_eq!(
        iter["isolate: to isolation group"]["Next"],
        "isolate: interface isolated"
    );
    assert_eq!(
        iter["isolate: compensate to isolation"]["Catch"][0]["Next"],
        "isolate: compensate to original groups"
    );
    // Every iteration ends in a Pass (a status), none in a Fail.
    for (name, s) in iter.as_object().unwrap() {
        assert_ne!(s["Type"], "Fail", "{name}");
    }
    assert_eq!(
        branch["isolate: not every interface isolated"]["Type"],
        "Fail"
    );
}

#[test]
fn untranslated_actions_and_templates_are_refused_with_their_location() {
    let pb = playbook(
        "apiVersion: irr/v1\nkind: Playbook\nmetadata: {name: x, version: 1.0.0}\ninputs:\n  instance_id: {type: instance_id}\n  flag: {type: boolean, default: true}\nsteps:\n  - id: grant\n    action: ssm.capture_volatile\n    with:\n      instance_id: i-0123456789abcdef0\n  - id: snap\n    action: ec2.snapshot_volumes\n    with:\n      instance_id: \"{{inputs.instance_id}}\"\n      wait: \"{{inputs.flag}}\"\n",
    );
    let err = compile(&pb, Map::new()).expect_err("refused");
    assert_eq!(err.len(), 2, "{err:?}");
    assert!(
        err[0].message.contains("ssm.capture_volatile"),
        "{}",
        err[0].message
    );
    assert_eq!(err[0].span.line, 9);
    assert!(
        err[1].message.contains("parameter \"wait\""),
        "{}",
        err[1].message
    );
    assert_eq!((err[1].span.line, err[1].span.column), (16, 13));
}

#[test]
fn secret_inputs_are_refused() {
    let pb = playbook(
        "apiVersion: irr/v1\nkind: Playbook\nmetadata: {name: x, version: 1.0.0}\ninputs:\n  token: {type: string, secret: true}\n  instance_id: {type: instance_id}\nsteps:\n  - id: snap\n    action: ec2.snapshot_volumes\n    with:\n      instance_id: \"{{inputs.instance_id}}\"\n",
    );
    let err = compile(&pb, Map::new()).expect_err("refused");
    assert!(err[0].message.contains("secret"));
    assert_eq!(err[0].span.line, 5);
}

#[test]
fn independent_steps_run_side_by_side_and_inputs_can_be_fixed() {
    let pb = playbook(
        "apiVersion: irr/v1\nkind: Playbook\nmetadata: {name: x, version: 1.0.0}\ninputs:\n  a: {type: instance_id}\n  b: {type: instance_id}\nsteps:\n  - id: pa\n    action: ec2.protect_instance\n    with: {instance_id: \"{{inputs.a}}\"}\n  - id: pb\n    action: ec2.protect_instance\n    with: {instance_id: \"{{inputs.b}}\"}\n",
    );
    let mut fixed = Map::new();
    fixed.insert("b".into(), json!("i-0123456789abcdef0"));
    let c = compile(&pb, fixed).expect("compiles");
    let s = states(&c);
    let layer = &s["irr: steps 1"];
    assert_eq!(layer["Type"], "Parallel");
    assert_eq!(layer["Branches"].as_array().unwrap().len(), 2);
    assert_eq!(
        s["irr: steps 1 merged"]["Parameters"]["steps.$"],
        "States.JsonMerge(States.JsonMerge($.steps, $.layer[0], false), $.layer[1], false)"
    );
    // The fixed input is written in, and no longer required from the execution.
    let text = serde_json::to_string(&layer).unwrap();
    assert!(text.contains("\"i-0123456789abcdef0\""));
    let required = serde_json::to_string(&s["irr: required inputs"]).unwrap();
    assert!(
        required.contains("$.inputs['a']") && !required.contains("$.inputs['b']"),
        "{required}"
    );
}

#[test]
fn for_each_becomes_a_map() {
    let pb = playbook(
        "apiVersion: irr/v1\nkind: Playbook\nmetadata: {name: x, version: 1.0.0}\ninputs:\n  ids: {type: list, items: instance_id}\nsteps:\n  - id: snap\n    action: ec2.snapshot_volumes\n    for_each: \"{{inputs.ids}}\"\n    retries: 3\n    with:\n      instance_id: \"{{item}}\"\n",
    );
    let c = compile(&pb, Map::new()).expect("compiles");
    let map = &states(&c)["snap"]["Branches"][0]["States"]["snap: items"];
    assert_eq!(map["ItemsPath"], "$.inputs['ids']");
    // A run-time list may be long: child executions.
    assert_eq!(
        map["ItemProcessor"]["ProcessorConfig"]["Mode"],
        "DISTRIBUTED"
    );
    let item = &map["ItemProcessor"]["States"];
    assert_eq!(
        item["snap: item"]["Catch"][0]["Next"],
        "snap: item attempt failed"
    );
    assert_eq!(
        item["snap: item attempt failed"]["Choices"][0]["NumericLessThan"],
        3
    );
    // An item never fails its iteration.
    for (name, s) in item.as_object().unwrap() {
        assert_ne!(s["Type"], "Fail", "{name}");
    }
    assert!(!states(&c).contains_key("snap: attempt failed"));
}

/// Every state of the definition, nested ones included, by name.
fn all_states(scope: &Map<String, Value>, out: &mut Vec<(String, Value)>) {
    for (name, s) in scope {
        out.push((name.clone(), s.clone()));
        for b in s["Branches"].as_array().into_iter().flatten() {
            all_states(b["States"].as_object().expect("states"), out);
        }
        if let Some(p) = s.get("ItemProcessor") {
            all_states(p["States"].as_object().expect("states"), out);
        }
    }
}

fn shipped(name: &str) -> Compiled {
    let path = format!("{}/../playbooks/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("shipped playbook");
    let c = compile(&playbook(&text), Map::new()).expect("compiles");
    check_links(states(&c), c.definition["StartAt"].as_str().unwrap());
    c
}

fn state<'a>(all: &'a [(String, Value)], name: &str) -> &'a Value {
    &all.iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no state {name}"))
        .1
}

/// The tasks' credentials: evidence writes as the machine's role, every other call (the
/// incident's bucket included) in the target account.
fn assert_credentials(all: &[(String, Value)]) {
    let mut calls = 0;
    for (name, s) in all {
        let Some(resource) = s["Resource"].as_str() else {
            continue;
        };
        if resource.ends_with(":s3:putObject") {
            assert!(s.get("Credentials").is_none(), "{name}: evidence write");
            assert_eq!(
                s["Arguments"]["Bucket"], "{% $states.input.evidence.bucket %}",
                "{name}"
            );
            // Locked as the CLI locks each object: the playbook's mode, from the write.
            assert_eq!(s["Arguments"]["ObjectLockMode"], "GOVERNANCE", "{name}");
            assert!(
                s["Arguments"]["ObjectLockRetainUntilDate"]
                    .as_str()
                    .unwrap()
                    .contains("EnteredTime) + 7776000000,"),
                "{name}: 90 days"
            );
        } else {
            calls += 1;
            assert_eq!(
                s["Credentials"],
                json!({"RoleArn.$": "$.target.role_arn"}),
                "{name}: {resource} in the target account"
            );
        }
        assert!(name.contains(": "), "{name}: named STEP: what");
    }
    assert!(calls > 0);
}

#[test]
fn the_credential_playbook_compiles_its_iam_actions_call_for_call() {
    let c = shipped("iam-credential-compromise.yaml");
    let mut all = Vec::new();
    all_states(states(&c), &mut all);
    assert_credentials(&all);
    // The capture: the user first (not optional), then optional reads, one page each.
    let user = state(&all, "capture: user");
    assert_eq!(user["Resource"], "arn:aws:states:::aws-sdk:iam:getUser");
    assert!(user.get("Catch").is_none());
    let inline = state(&all, "capture: inline policies (optional)");
    assert_eq!(inline["Parameters"]["MaxItems"], 1000);
    assert_eq!(
        inline["Catch"][0]["Next"],
        "capture: inline policies listed"
    );
    assert_eq!(
        state(&all, "capture: too many inline policies")["Error"],
        "irr.Truncated"
    );
    for (name, s) in &all {
        if name.ends_with("(optional)") {
            assert_eq!(
                s["Catch"][0]["ErrorEquals"],
                json!(["States.ALL"]),
                "{name}"
            );
            assert_eq!(s["Catch"][0]["ResultPath"], s["ResultPath"], "{name}");
        }
    }
    for item in [
        "user.json",
        "policies.json",
        "groups.json",
        "access-keys.json",
    ] {
        assert!(
            all.iter().any(|(_, s)| s["Arguments"]["Key"]
                .as_str()
                .is_some_and(|k| k.contains(item))),
            "{item} recorded"
        );
    }
    // The key: found, recorded, set inactive unless it is.
    let found = state(&all, "deactivate-key: is it the key");
    assert_eq!(found["Choices"][0]["Variable"], "$.r.key.v.AccessKeyId");
    assert_eq!(found["Choices"][0]["Next"], "deactivate-key: before-state");
    assert_eq!(
        state(&all, "deactivate-key: already inactive")["Choices"][0]["StringEquals"],
        "Inactive"
    );
    assert_eq!(
        state(&all, "deactivate-key: deactivate")["Parameters"],
        json!({"UserName.$": "$.inputs['user_name']", "AccessKeyId.$": "$.inputs['access_key_id']", "Status": "Inactive"})
    );
    // The cut-off is when the step runs; the policy is written from it.
    assert_eq!(
        state(&all, "revoke-sessions: cut-off")["Parameters"]["at.$"],
        "$$.State.EnteredTime"
    );
    let statement = &state(&all, "revoke-sessions: deny statement")["Parameters"];
    assert_eq!(statement["Effect"], "Deny");
    assert_eq!(
        statement["Condition"]["DateLessThan"]["aws:TokenIssueTime.$"],
        "$.r.cutoff.at"
    );
    let put = state(&all, "revoke-sessions: deny older sessions");
    assert_eq!(
        put["Resource"],
        "arn:aws:states:::aws-sdk:iam:putUserPolicy"
    );
    assert_eq!(put["Parameters"]["PolicyName"], "irr-revoke-sessions");
    assert_eq!(
        put["Parameters"]["PolicyDocument.$"],
        "States.JsonToString($.r.policy)"
    );
    assert_eq!(put["Retry"][0]["MaxDelaySeconds"], 16);
    // NoSuchEntity on the policy: the user is checked; any other error fails the step.
    let there = state(&all, "revoke-sessions: policy there");
    assert_eq!(
        there["Choices"][0]["StringMatches"],
        "*.NoSuchEntityException"
    );
    assert_eq!(there["Choices"][0]["Next"], "revoke-sessions: user exists");
    assert_eq!(
        state(&all, "revoke-sessions: policy not read")["CausePath"],
        "$.r.existing_error.Cause"
    );
    // The outputs the CLI's actions have.
    assert_eq!(
        state(&all, "deactivate-key: outputs")["Parameters"],
        json!({"previous_status.$": "$.r.before.status"})
    );
    assert_eq!(
        state(&all, "revoke-sessions: outputs")["Parameters"],
        json!({"revoked_before.$": "$.r.cutoff.at"})
    );
}

#[test]
fn the_bucket_playbook_calls_the_incidents_bucket_in_the_target_account() {
    let c = shipped("s3-bucket-exposure.yaml");
    let mut all = Vec::new();
    all_states(states(&c), &mut all);
    assert_credentials(&all);
    let outcome = state(&all, "capture: bucket policy read");
    let rules = outcome["Choices"].as_array().unwrap();
    assert_eq!(rules[0]["Next"], "capture: bucket policy as read");
    assert_eq!(rules[1]["StringMatches"], "*.NoSuchBucketException");
    assert_eq!(rules[1]["Next"], "capture: no such bucket (bucket policy)");
    assert_eq!(rules[3]["Next"], "capture: bucket policy absent");
    assert_eq!(outcome["Default"], "capture: bucket policy not read");
    assert_eq!(
        state(&all, "capture: bucket policy (optional)")["ResultSelector"],
        json!({"answer.$": "States.StringToJson($.Policy)"})
    );
    assert_eq!(
        state(&all, "capture: bucket policy absent")["Parameters"],
        json!({"bucket.$": "$.inputs['bucket']", "captured": true, "present": false, "policy": null})
    );
    let put = state(&all, "block: block public access");
    assert_eq!(
        put["Resource"],
        "arn:aws:states:::aws-sdk:s3:putPublicAccessBlock"
    );
    assert_eq!(
        put["Parameters"]["PublicAccessBlockConfiguration"],
        json!({"BlockPublicAcls": true, "IgnorePublicAcls": true, "BlockPublicPolicy": true, "RestrictPublicBuckets": true})
    );
    let all_on = state(&all, "block: all on");
    assert_eq!(all_on["Choices"][0]["IsNull"], true);
    assert_eq!(all_on["Choices"][0]["Next"], "block: block public access");
    assert_eq!(all_on["Choices"][1]["Next"], "block: outputs");
    assert_eq!(all_on["Choices"][1]["And"].as_array().unwrap().len(), 4);
    assert_eq!(
        state(&all, "block: public access block absent")["Result"]["configured"],
        false
    );
}

#[test]
fn held_iam_and_s3_outputs_can_be_referenced_and_others_are_refused() {
    let pb = playbook(
        "apiVersion: irr/v1\nkind: Playbook\nmetadata: {name: x, version: 1.0.0}\ninputs:\n  user: {type: string}\n  key: {type: access_key_id}\n  bucket: {type: bucket_name}\nsteps:\n  - id: key\n    action: iam.deactivate_access_key\n    with: {user_name: \"{{inputs.user}}\", access_key_id: \"{{inputs.key}}\"}\n  - id: block\n    action: s3.block_public_access\n    with: {bucket: \"{{inputs.bucket}}\"}\n  - id: capture\n    action: iam.capture_principal\n    with: {user_name: \"{{inputs.user}}\"}\n  - id: tag\n    action: ec2.tag_resources\n    needs: [key, block]\n    with:\n      resource_ids: [i-0123456789abcdef0]\n      tags: {was: \"{{steps.key.outputs.previous_status}}\", pab: \"{{steps.block.outputs.previous.configured}}\"}\n",
    );
    compile(&pb, Map::new()).expect("held outputs compile");
    let pb = playbook(
        "apiVersion: irr/v1\nkind: Playbook\nmetadata: {name: x, version: 1.0.0}\ninputs:\n  user: {type: string}\nsteps:\n  - id: capture\n    action: iam.capture_principal\n    with: {user_name: \"{{inputs.user}}\"}\n  - id: tag\n    action: ec2.tag_resources\n    with:\n      resource_ids: \"{{steps.capture.outputs.artifacts}}\"\n      tags: {a: b}\n",
    );
    let err = compile(&pb, Map::new()).expect_err("artifacts are not held");
    assert!(err[0].message.contains("artifacts"), "{}", err[0].message);
}

#[test]
fn role_principals_and_the_responder_role_compile() {
    let pb = playbook(
        "apiVersion: irr/v1\nkind: Playbook\nmetadata: {name: x, version: 1.0.0}\ninputs:\n  roles: {type: list, items: string}\nsteps:\n  - id: capture\n    action: iam.capture_principal\n    for_each: \"{{inputs.roles}}\"\n    with: {role_name: \"{{item}}\"}\n  - id: revoke\n    action: iam.revoke_sessions\n    with: {role_name: ops}\nfinally:\n  - id: revoke-access\n    action: iam.revoke_responder_access\n    with: {role_name: \"irr-responder-{{case.id}}\"}\n",
    );
    let c = compile(&pb, Map::new()).expect("compiles");
    check_links(states(&c), c.definition["StartAt"].as_str().unwrap());
    let mut all = Vec::new();
    all_states(states(&c), &mut all);
    assert_credentials(&all);
    // Each item's evidence in its own folder.
    assert!(
        state(&all, "capture: evidence folder")["Parameters"]["dir.$"]
            .as_str()
            .unwrap()
            .contains("$.item_index")
    );
    assert_eq!(
        state(&all, "capture: role")["Parameters"],
        json!({"RoleName.$": "$.item"})
    );
    assert_eq!(
        state(&all, "revoke: service-linked")["Choices"][0]["StringMatches"],
        "/aws-service-role/*"
    );
    assert_eq!(
        state(&all, "revoke: deny older sessions")["Resource"],
        "arn:aws:states:::aws-sdk:iam:putRolePolicy"
    );
    // The responder role: gone is fine, another case's is refused, removals one at a time,
    // the deletion retried while IAM still sees attachments.
    assert_eq!(
        state(&all, "revoke-access: role gone")["Choices"][0]["Next"],
        "revoke-access: no role"
    );
    let same = state(&all, "revoke-access: same case");
    assert_eq!(same["Choices"][0]["StringEqualsPath"], "$.case_id");
    assert_eq!(same["Default"], "revoke-access: another case's role");
    assert_eq!(
        state(&all, "revoke-access: look for the case tag")["Parameters"]["wanted"],
        "irr:case"
    );
    for m in [
        "delete inline policies",
        "detach managed policies",
        "leave instance profiles",
    ] {
        assert_eq!(
            state(&all, &format!("revoke-access: {m}"))["MaxConcurrency"],
            1
        );
    }
    let delete = state(&all, "revoke-access: delete role");
    assert!(delete["Retry"][0]["ErrorEquals"]
        .as_array()
        .unwrap()
        .contains(&json!("Iam.DeleteConflictException")));
    assert_eq!(
        delete["Catch"][0]["Next"],
        "revoke-access: role deleted meanwhile"
    );
}

#[test]
fn the_grant_computes_its_expiry_in_one_jsonata_state_and_the_revoke_reads_its_role() {
    let path = format!(
        "{}/../playbooks/ec2-instance-compromise.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let pb = crate::validate::validate(&crate::diagnostic::Source::new(path, text)).unwrap();
    let err = compile(&pb, Map::new()).expect_err("refused");
    assert!(
        err.len() == 1 && err[0].message.contains("ssm.capture_volatile"),
        "{err:#?}"
    );
    let c = compile(
        &playbook("apiVersion: irr/v1\nkind: Playbook\nmetadata: {name: x, version: 1.0.0}\ninputs:\n  responders: {type: list, items: arn, default: []}\nsteps:\n  - id: grant\n    action: iam.grant_responder_access\n    with:\n      principals: \"{{inputs.responders}}\"\nfinally:\n  - id: revoke-access\n    action: iam.revoke_responder_access\n    with:\n      role_name: \"{{steps.grant.outputs.role_name}}\"\n"),
        Map::new(),
    )
    .expect("compiles");
    check_links(states(&c), c.definition["StartAt"].as_str().unwrap());
    let mut all = Vec::new();
    all_states(states(&c), &mut all);
    let expiry = state(&all, "grant: expiry");
    assert_eq!(expiry["QueryLanguage"], "JSONata");
    let e = expiry["Output"].as_str().unwrap();
    assert!(e.starts_with("{% ") && e.ends_with(" %}"), "{e}");
    for part in [
        "$states.context.State.EnteredTime",
        "aws:CurrentTime",
        "aws:MultiFactorAuthPresent",
        "604800",
        "900",
    ] {
        assert!(e.contains(part), "{part} in {e}");
    }
    // Every other state is JSONPath (the machine's default), but the evidence writes.
    let jsonata: Vec<&String> = all
        .iter()
        .filter(|(_, s)| s.get("QueryLanguage").is_some())
        .filter(|(_, s)| s["Resource"] != "arn:aws:states:::aws-sdk:s3:putObject")
        .map(|(n, _)| n)
        .collect();
    assert_eq!(jsonata, ["grant: expiry"]);
    let create = state(&all, "grant: create role");
    assert_eq!(
        create["Resource"],
        "arn:aws:states:::aws-sdk:iam:createRole"
    );
    assert_eq!(create["Credentials"]["RoleArn.$"], "$.target.role_arn");
    assert_eq!(create["Catch"][0]["Next"], "grant: role not created");
    let put = state(&all, "grant: responder policy");
    assert!(put["Retry"][0]["ErrorEquals"]
        .as_array()
        .unwrap()
        .contains(&json!("IAM.NoSuchEntityException")));
    let revoke = state(&all, "revoke-access: role");
    assert_eq!(
        revoke["Parameters"]["RoleName.$"],
        "$.steps['grant'].outputs['role_name']"
    );
}

#[test]
fn a_template_becomes_one_jsonata_expression_or_is_refused_with_what_has_no_translation() {
    use super::hbs::expression;
    let e = expression(
        "a {{case.id}} {{#each params.ids}}{{#unless @first}}, {{/unless}}{{@index}}={{this}}{{/each}} !Sub \"${Bucket}\"",
        "$ctx",
    )
    .unwrap();
    assert!(e.contains("$join($map("), "{e}");
    assert!(e.contains("$irrRoot := $ctx;"), "{e}");
    // `${` never reaches the definition (DefinitionSubstitutions would replace it).
    assert!(!e.contains("${"), "{e}");
    assert!(e.contains(r"$\u007bBucket}"), "{e}");
    for (t, why) in [
        ("{{lookup params.a 0}}", "helper"),
        ("{{> part}}", "partials"),
        ("{{#with params}}x{{/with}}", "#with"),
        ("{{#each params.ids as |i|}}{{i}}{{/each}}", "arguments"),
        ("{{@index}}", "outside"),
        ("{{irr-template-error: x :irr-template-error}}", "marks"),
        ("{{#each", "parse"),
    ] {
        let err = expression(t, "$ctx").expect_err(t);
        assert!(err.contains(why), "{t}: {err}");
    }
}

#[test]
fn a_deploy_step_compiles_with_its_template_read_when_compiling() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("t.yaml"),
        "Resources:\n  T: {Type: AWS::SNS::Topic, Properties: {TopicName: \"{{case.id}}\"}}\n",
    )
    .unwrap();
    let text = "apiVersion: irr/v1\nkind: Playbook\nmetadata: {name: x, version: 1.0.0}\nsteps:\n  - id: room\n    action: cloudformation.deploy_stack\n    with:\n      stack_name: \"room-{{case.id}}\"\n      template: t.yaml\n";
    let path = dir.path().join("p.yaml");
    let pb = crate::validate::validate(&crate::diagnostic::Source::new(
        path.display().to_string(),
        text.to_owned(),
    ))
    .unwrap();
    let c = compile(&pb, Map::new()).expect("compiles");
    check_links(states(&c), c.definition["StartAt"].as_str().unwrap());
    let mut all = Vec::new();
    all_states(states(&c), &mut all);
    let render = state(&all, "room: render");
    assert_eq!(render["QueryLanguage"], "JSONata");
    assert!(render["Output"].as_str().unwrap().contains("TopicName"));
    let create = state(&all, "room: create");
    assert_eq!(
        create["Resource"],
        "arn:aws:states:::aws-sdk:cloudformation:createStack"
    );
    assert_eq!(create["Parameters"]["OnFailure"], "ROLLBACK");
    assert_eq!(create["Credentials"]["RoleArn.$"], "$.target.role_arn");
    assert_eq!(create["Catch"][0]["Next"], "room: left behind");
    for s in ["room: settle: wait", "room: replace: wait"] {
        assert_eq!(state(&all, s)["SecondsPath"], "$.r.w.wait");
    }
    // A template named at run time cannot be read when compiling.
    let templated = text.replace("template: t.yaml", "template: \"{{case.id}}.yaml\"");
    let pb = crate::validate::validate(&crate::diagnostic::Source::new(
        path.display().to_string(),
        templated,
    ))
    .unwrap();
    let err = compile(&pb, Map::new()).expect_err("refused");
    assert!(
        err[0].message.contains("parameter \"template\""),
        "{}",
        err[0].message
    );
    // A file outside the playbook's folder is never read into the definition.
    let outside = text.replace("template: t.yaml", "template: ../t.yaml");
    let pb = crate::validate::validate(&crate::diagnostic::Source::new(
        path.display().to_string(),
        outside,
    ))
    .unwrap();
    let err = compile(&pb, Map::new()).expect_err("refused");
    assert!(
        err[0]
            .message
            .contains("relative path inside the playbook's folder"),
        "{}",
        err[0].message
    );
}

#[test]
fn every_evidence_write_is_locked_as_the_playbooks_evidence_section_says() {
    let text = include_str!("../../tests/fixtures/compile/contain.yaml");
    let text = text.replacen(
        "\nsteps:",
        "\nevidence:\n  retention_days: 7\n  lock_mode: compliance\nsteps:",
        1,
    );
    let c = compile(&playbook(&text), Map::new()).expect("compiles");
    let mut all = Vec::new();
    all_states(states(&c), &mut all);
    let writes: Vec<&Value> = all
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s["Resource"] == "arn:aws:states:::aws-sdk:s3:putObject")
        .collect();
    assert!(writes.len() > 3, "{}", writes.len());
    for w in writes {
        let a = &w["Arguments"];
        assert_eq!(a["ObjectLockMode"], "COMPLIANCE", "{w:#}");
        assert_eq!(
            a["ObjectLockRetainUntilDate"],
            "{% $fromMillis($toMillis($states.context.State.EnteredTime) + 604800000, '[Y0001]-[M01]-[D01]T[H01]:[m01]:[s01]Z') %}"
        );
        assert_eq!(a["ChecksumAlgorithm"], "SHA256");
        // The state passes its input on: the answer is in the history only.
        assert_eq!(w["Output"], "{% $states.input %}");
    }
    let role = c.stack.as_str();
    assert!(role.contains("s3:PutObjectRetention"), "{role}");
}

#[test]
fn a_distributed_maps_items_keep_only_their_status_in_the_state() {
    let text = include_str!("../../tests/fixtures/compile/contain-fleet.yaml");
    let c = compile(&playbook(text), Map::new()).expect("compiles");
    let mut all = Vec::new();
    all_states(states(&c), &mut all);
    let maps: Vec<&Value> = all
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED")
        .collect();
    assert_eq!(maps.len(), 3, "protect, snapshot, isolate");
    for m in maps {
        let p = m["ItemProcessor"]["States"].as_object().unwrap();
        let (done, failed) = p
            .iter()
            .fold((None, None), |(d, f), (name, s)| match name.as_str() {
                n if n.ends_with(": item") => (Some(&s["ResultSelector"]), f),
                n if n.ends_with(": item failed") => (d, Some(&s["Parameters"])),
                _ => (d, f),
            });
        assert_eq!(done, Some(&json!({"status": "succeeded"})));
        assert_eq!(failed, Some(&json!({"status": "failed"})));
        // 1,000 items (the most the seal reads of a map run), all failed, in each of the
        // three steps, fit the 256 KiB state with the ids given, with room to spare.
        let item = json!({"status": "failed"});
        let ids = vec!["i-0123456789abcdef0"; 1000];
        let state = json!({"inputs": {"instance_ids": ids},
            "steps": {"a": {"items": vec![item.clone(); 1000]}, "b": {"items": vec![item.clone(); 1000]}, "c": {"items": vec![item; 1000]}}});
        assert!(state.to_string().len() < 128 * 1024);
    }
    // An inline map (a list written in the playbook) keeps each item's outputs.
    let inline = fixture_inline_map();
    assert!(inline.contains("\"outputs.$\":\"$[0]\""), "{inline}");
}

/// A compiled playbook whose `for_each` is a short literal list (an inline `Map`), as text.
fn fixture_inline_map() -> String {
    let text = "apiVersion: irr/v1\nkind: Playbook\nmetadata: {name: x, version: 1.0.0}\nsteps:\n  - id: protect\n    action: ec2.protect_instance\n    for_each: [i-0123456789abcdef0, i-0123456789abcdef1]\n    with:\n      instance_id: \"{{item}}\"\n";
    let c = compile(&playbook(text), Map::new()).expect("compiles");
    assert!(c.definition.to_string().contains("\"INLINE\""));
    c.definition.to_string()
}
