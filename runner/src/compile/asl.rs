//! Building Amazon States Language: a sequence of states linked in order, tasks that call
//! AWS through `aws-sdk:*` integrations, and the evidence object each step writes.

use serde_json::{json, Map, Value};

use super::expr::Expr;

/// The states of one branch, in order. A state pushed without `Next` (and that is not a
/// `Choice`, `Succeed` or `Fail`) goes on to the state pushed after it; the last one ends the
/// branch ([`Seq::finish`]).
#[derive(Debug, Default)]
pub struct Seq {
    states: Vec<(String, Value)>,
}

/// A finished branch: `StartAt` and `States`.
#[derive(Clone, Debug)]
pub struct Branch {
    /// The first state.
    pub start: String,
    /// Every state, by name.
    pub states: Map<String, Value>,
}

impl Branch {
    /// As the `Branches` entry of a `Parallel` (or a Map's `ItemProcessor`, with `ProcessorConfig` added).
    pub fn to_json(&self) -> Value {
        json!({"StartAt": self.start, "States": self.states})
    }
}

impl Seq {
    /// Adds a state named `name`.
    pub fn push(&mut self, name: impl Into<String>, state: Value) -> &mut Self {
        self.states.push((name.into(), state));
        self
    }

    /// Links the states and returns the branch; state names must be unique.
    pub fn finish(self) -> Branch {
        let names: Vec<String> = self.states.iter().map(|(n, _)| n.clone()).collect();
        let mut states = Map::new();
        for (i, (name, mut state)) in self.states.into_iter().enumerate() {
            let terminal = matches!(state["Type"].as_str(), Some("Choice" | "Succeed" | "Fail"));
            if !terminal && state.get("Next").is_none() && state.get("End").is_none() {
                match names.get(i + 1) {
                    Some(next) => state["Next"] = json!(next),
                    None => state["End"] = json!(true),
                }
            }
            debug_assert!(!states.contains_key(&name), "state {name} twice");
            states.insert(name, state);
        }
        Branch {
            start: names.first().cloned().unwrap_or_default(),
            states,
        }
    }
}

/// How the tasks of one step call AWS.
#[derive(Clone, Debug)]
pub struct Calls {
    /// `TimeoutSeconds` of each task (the step's `timeout`).
    pub timeout: Option<u64>,
    /// The playbook's Object Lock retention of each evidence object (`evidence:`).
    pub retention: Retention,
}

/// Object Lock retention of evidence objects, as the CLI writes them: `mode` (`GOVERNANCE`,
/// `COMPLIANCE`) until `days` after each object is written.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    pub mode: &'static str,
    pub days: u32,
}

impl Retention {
    /// The retention `evidence:` declares.
    pub fn of(decl: &crate::model::EvidenceDecl) -> Retention {
        Retention {
            mode: match decl.lock_mode {
                crate::model::LockMode::Governance => "GOVERNANCE",
                crate::model::LockMode::Compliance => "COMPLIANCE",
            },
            days: decl.retention_days,
        }
    }
}

impl Calls {
    /// A task calling `service:api` (`ec2:describeInstances`) with these `Parameters`. EC2,
    /// Auto Scaling and IAM tasks run in the target account, through `Credentials.RoleArn`
    /// (`$.target.role_arn`); S3 evidence writes run as the state machine's own role.
    pub fn task(&self, api: &str, params: Value) -> Value {
        let mut t = json!({
            "Type": "Task",
            "Resource": format!("arn:aws:states:::aws-sdk:{api}"),
            "Parameters": params,
        });
        if !api.starts_with("s3:") {
            t["Credentials"] = json!({"RoleArn.$": "$.target.role_arn"});
        }
        if let Some(s) = self.timeout {
            t["TimeoutSeconds"] = json!(s);
        }
        t
    }

    /// [`Calls::task`] whose answer, through `selector`, lands at `result_path`.
    pub fn read(&self, api: &str, params: Value, selector: Value, result_path: &str) -> Value {
        answered(self.task(api, params), selector, result_path)
    }

    /// [`Calls::task`] whose answer is dropped (the state goes on unchanged).
    pub fn change(&self, api: &str, params: Value) -> Value {
        let mut t = self.task(api, params);
        t["ResultPath"] = Value::Null;
        t
    }

    /// [`Calls::task`] run in the target account whatever the service: an `s3:*` call on
    /// the incident's bucket (not the evidence bucket) goes through `Credentials.RoleArn` too.
    pub fn task_in_target(&self, api: &str, params: Value) -> Value {
        let mut t = self.task(api, params);
        t["Credentials"] = json!({"RoleArn.$": "$.target.role_arn"});
        t
    }

    /// [`Calls::read`] in the target account ([`Calls::task_in_target`]).
    pub fn read_in_target(
        &self,
        api: &str,
        params: Value,
        selector: Value,
        result_path: &str,
    ) -> Value {
        answered(self.task_in_target(api, params), selector, result_path)
    }

    /// [`Calls::change`] in the target account ([`Calls::task_in_target`]).
    pub fn change_in_target(&self, api: &str, params: Value) -> Value {
        let mut t = self.task_in_target(api, params);
        t["ResultPath"] = Value::Null;
        t
    }

    /// Writes the JSON at `body` (a path, `$.a.b`) as the evidence item `NAME` of this
    /// step's attempt: `PREFIX/CASE/EXECUTION/artifacts/...`, the folder [`attempt_dir`] put
    /// at `$.r.dir`, with S3 computing its SHA-256 (`ChecksumAlgorithm`), under the playbook's
    /// Object Lock retention counted from the write (the state's `EnteredTime`), as the CLI
    /// writes each object. A JSONata state (JSONPath has no date arithmetic) whose output is
    /// its input.
    pub fn evidence(&self, name: &str, body: &str) -> Value {
        let body = body
            .strip_prefix("$.")
            .unwrap_or_else(|| panic!("an evidence body is a path: {body}"));
        assert!(
            body.split('.')
                .all(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')),
            "an evidence body is a plain path: {body}"
        );
        assert!(
            !name.contains(['\'', '\\']),
            "an evidence name has no quote: {name}"
        );
        let ms = u64::from(self.retention.days) * 86_400_000;
        let mut t = json!({
            "Type": "Task",
            "QueryLanguage": "JSONata",
            "Resource": "arn:aws:states:::aws-sdk:s3:putObject",
            "Arguments": {
                "Bucket": "{% $states.input.evidence.bucket %}",
                "Key": format!("{{% $states.input.r.dir & '/{name}' %}}"),
                // The JSON itself: the integration serialises it (States.JsonToString cannot
                // serialise an SDK answer's timestamps on LocalStack).
                "Body": format!("{{% $states.input.{body} %}}"),
                "ChecksumAlgorithm": "SHA256",
                "ContentType": "application/json",
                // Never over an object already there, as the CLI writes.
                "IfNoneMatch": "*",
                "ObjectLockMode": self.retention.mode,
                "ObjectLockRetainUntilDate": format!(
                    "{{% $fromMillis($toMillis($states.context.State.EnteredTime) + {ms}, '[Y0001]-[M01]-[D01]T[H01]:[m01]:[s01]Z') %}}"
                ),
            },
            // Its answer (version, S3's SHA-256) is in the history, where the seal reads it.
            "Output": "{% $states.input %}",
        });
        if let Some(s) = self.timeout {
            t["TimeoutSeconds"] = json!(s);
        }
        t
    }
}

/// A task's answer, through `selector` (unless null), put at `result_path`.
fn answered(mut t: Value, selector: Value, result_path: &str) -> Value {
    if !selector.is_null() {
        t["ResultSelector"] = selector;
    }
    t["ResultPath"] = json!(result_path);
    t
}

/// An optional read: on failure its error (`Error`, `Cause`) is kept where its answer would
/// have been and the step goes on to `next` (the CLI's "optional reads degrade"). Its state
/// name ends in `(optional)`.
pub fn optional(mut task: Value, next: &str) -> Value {
    let path = task["ResultPath"].clone();
    task["Catch"] = json!([{"ErrorEquals": ["States.ALL"], "ResultPath": path, "Next": next}]);
    task["Next"] = json!(next);
    task
}

/// A `Fail` that passes on the error caught at `path` (its `Error` and `Cause`).
pub fn fail_with(path: &str) -> Value {
    json!({"Type": "Fail", "ErrorPath": format!("{path}.Error"), "CausePath": format!("{path}.Cause")})
}

/// An inline `Map` over the list at `items`, each iteration given `selector` and run through
/// `branch`, the results at `result_path` (null: dropped).
pub fn each(
    items: &str,
    selector: Value,
    branch: Branch,
    concurrency: u32,
    result_path: Value,
) -> Value {
    let mut processor = branch.to_json();
    processor["ProcessorConfig"] = json!({"Mode": "INLINE"});
    json!({
        "Type": "Map",
        "ItemsPath": items,
        "MaxConcurrency": concurrency,
        "ItemSelector": selector,
        "ItemProcessor": processor,
        "ResultPath": result_path,
    })
}

/// A `Pass` that sets `result_path` to `params` (evaluated against the state).
pub fn set(result_path: &str, params: Value) -> Value {
    json!({"Type": "Pass", "Parameters": params, "ResultPath": result_path})
}

/// A `Pass` that sets `result_path` to a constant.
pub fn set_const(result_path: &str, value: Value) -> Value {
    json!({"Type": "Pass", "Result": value, "ResultPath": result_path})
}

/// A `Choice` that goes to `then` when `rule` holds, else to `otherwise`.
pub fn choice(rule: Value, then: &str, otherwise: &str) -> Value {
    let mut r = rule;
    r["Next"] = json!(then);
    json!({"Type": "Choice", "Choices": [r], "Default": otherwise})
}

/// The rule "the value at `path` is present".
pub fn present(path: &str) -> Value {
    json!({"Variable": path, "IsPresent": true})
}

/// Every key a step's branch reads, copied from the state (a `Parallel`'s or `Map`'s
/// `Parameters`/`ItemSelector`), plus `extra`.
pub fn carry(extra: &[(&str, &str)]) -> Value {
    let mut m = Map::new();
    for k in ["case_id", "target", "aws", "evidence", "inputs", "steps"] {
        m.insert(format!("{k}.$"), json!(format!("$.{k}")));
    }
    for (k, v) in extra {
        m.insert(format!("{k}.$"), json!(v));
    }
    Value::Object(m)
}

/// The states that put the folder of this attempt's evidence at `$.r.dir`:
/// `PREFIX/CASE/EXECUTION/artifacts/STEP` (and `/ITEM` in a `for_each`), with `/attempt-N`
/// after a retry, as the CLI's recorder lays it out.
pub fn attempt_dir(seq: &mut Seq, step: &str, item: bool) {
    let base = if item {
        format!("{{}}/{{}}/{{}}/artifacts/{step}/{{}}")
    } else {
        format!("{{}}/{{}}/{{}}/artifacts/{step}")
    };
    let args = if item {
        "$.evidence.prefix, $.case_id, $$.Execution.Name, $.item_index"
    } else {
        "$.evidence.prefix, $.case_id, $$.Execution.Name"
    };
    let attempt = if item {
        "$.attempt.n".to_owned()
    } else {
        format!("$.attempts['{step}'].n")
    };
    let first = format!("{step}: evidence folder");
    let retried = format!("{step}: evidence folder of a retry");
    let after = format!("{step}: evidence folder set");
    seq.push(
        format!("{step}: attempt"),
        choice(
            json!({"Variable": attempt, "NumericGreaterThan": 0}),
            &retried,
            &first,
        ),
    );
    seq.push(
        first,
        json!({"Type": "Pass", "Parameters": {"dir.$": format!("States.Format('{base}', {args})"), "gaps": []}, "ResultPath": "$.r", "Next": after}),
    );
    seq.push(
        retried,
        json!({"Type": "Pass", "Parameters": {"dir.$": format!("States.Format('{base}/attempt-{{}}', {args}, States.MathAdd({attempt}, 1))"), "gaps": []}, "ResultPath": "$.r"}),
    );
    seq.push(after, json!({"Type": "Pass"}));
}

/// `[value]`: a one-element list (`States.Array` for a run-time value).
pub fn one(e: &Expr) -> Expr {
    match e {
        Expr::Lit(v) => Expr::Lit(json!([v])),
        other => Expr::Call(format!("States.Array({})", other.arg())),
    }
}

/// A `Parameters` object from (key, value) pairs.
pub fn params(pairs: &[(&str, &Expr)]) -> Value {
    let mut m = Map::new();
    for (k, e) in pairs {
        e.put(&mut m, k);
    }
    Value::Object(m)
}

/// An EC2 filter with literal or run-time values.
pub fn filter(name: &str, value: &Expr) -> Value {
    let mut m = Map::new();
    m.insert("Name".into(), json!(name));
    one(value).put(&mut m, "Values");
    Value::Object(m)
}

/// A list of the strings at `field` of each element of the list at `list`, always a list
/// (an inline `Map` of `Pass` states: a JSONPath wildcard gives a bare value for one match
/// on some interpreters, docs/emulator-notes.md).
pub fn pluck(name: &str, list: &str, field: &str, result_path: &str) -> Value {
    json!({
        "Type": "Map",
        "ItemsPath": list,
        "ItemSelector": {"v.$": format!("$$.Map.Item.Value.{field}")},
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "INLINE"},
            "StartAt": format!("{name}: each"),
            "States": {format!("{name}: each"): {"Type": "Pass", "OutputPath": "$.v", "End": true}}
        },
        "ResultPath": result_path,
    })
}
