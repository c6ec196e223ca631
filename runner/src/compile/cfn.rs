//! `cloudformation.deploy_stack` as states: the template rendered at run time by a JSONata
//! expression ([`super::hbs`]), then the CLI's calls in the target account: the case's
//! stack found, reused, replaced or created, waited for, recorded, and rolled back when it
//! fails.
//!
//! What differs from the CLI, and why (docs/step-functions.md says the same):
//! - The declared parameters (and which are `NoEcho`) come from `ValidateTemplate` of the
//!   rendered body (the CLI parses the YAML itself: a state machine cannot). A given value
//!   for a `NoEcho` parameter fails the step before anything is recorded or created: the
//!   value is in the execution's history already, which the CLI's masking cannot reach.
//! - The rendered template is recorded as a JSON string, `template.yaml.json` (Step
//!   Functions writes a string `Body` as JSON): `jq -r . template.yaml.json` is the CLI's
//!   `template.yaml`. `stack-request.json` has no `template_sha256` (a state machine cannot
//!   hash; the seal's manifest holds the object's) and no resource count.
//! - Stack events are one page of `DescribeStackEvents` (the newest 100; `truncated` says
//!   when there are more), oldest first.

use serde_json::{json, Map, Value};

use super::asl::{attempt_dir, choice, Calls, Seq};
use super::{Params, Refusal, Translated};

/// Functions the JSONata states share, declared at the start of each expression.
const FUNCTIONS: &str = r#"
  $n := function($x) { $exists($x) ? $x : null };
  $list := function($x) { $type($x) = 'array' ? $x : ($exists($x) ? [$x] : []) };
  $map0 := function($x, $f) { $count($list($x)) = 0 ? [] : [$map($list($x), $f)] };
  $stackJson := function($st) { {
    'stack_id': $n($st.StackId), 'stack_name': $n($st.StackName), 'status': $n($st.StackStatus),
    'status_reason': $n($st.StackStatusReason), 'description': $n($st.Description),
    'creation_time': $n($st.CreationTime), 'last_updated_time': $n($st.LastUpdatedTime),
    'parameters': $map0($st.Parameters, function($p) { {'key': $n($p.ParameterKey), 'value': $n($p.ParameterValue)} }),
    'capabilities': $list($st.Capabilities),
    'tags': $count($list($st.Tags)) = 0 ? {} : $merge($map($list($st.Tags), function($t) { {$t.Key: $n($t.Value)} })),
    'outputs': $count($list($st.Outputs)) = 0 ? {} : $merge($map($list($st.Outputs), function($o) { {$o.OutputKey: $exists($o.OutputValue) ? $o.OutputValue : ''} })),
    'timeout_in_minutes': $n($st.TimeoutInMinutes), 'disable_rollback': $n($st.DisableRollback)
  } };
  $eventJson := function($e) { {
    'timestamp': $n($e.Timestamp), 'logical_resource_id': $n($e.LogicalResourceId),
    'physical_resource_id': $n($e.PhysicalResourceId), 'resource_type': $n($e.ResourceType),
    'status': $n($e.ResourceStatus), 'reason': $n($e.ResourceStatusReason)
  } };
  $reasons := function($evs, $name) { (
    $failed := $filter($list($evs), function($e) { $type($e.ResourceStatus) = 'string' and $type($e.ResourceStatusReason) = 'string' and $e.ResourceStatusReason != '' and $substring($e.ResourceStatus, $length($e.ResourceStatus) - 7) = '_FAILED' });
    $line := function($e) { ($type($e.LogicalResourceId) = 'string' ? $e.LogicalResourceId : '?') & ' (' & ($type($e.ResourceType) = 'string' ? $e.ResourceType : '?') & '): ' & $e.ResourceStatusReason };
    $late := function($e) { ($e.ResourceType = 'AWS::CloudFormation::Stack' and $e.LogicalResourceId = $name) or $contains($e.ResourceStatusReason, 'cancelled') };
    $all := $append($map0($filter($failed, function($e) { $not($late($e)) }), $line), $map0($filter($failed, $late), $line));
    $count($all) = 0 ? [] : $distinct($all)
  ) };
  $reasonsText := function($r) { $count($r) = 0 ? 'no failure events recorded (see stack-events.json)' :
    $join($filter($r, function($v, $i) { $i < 10 }), '; ') & ($count($r) > 10 ? '; and ' & $string($count($r) - 10) & ' more (see stack-events.json)' : '') };
  $inProgress := function($st) { $type($st) = 'string' and $substring($st, $length($st) - 12) = '_IN_PROGRESS' and $st != 'REVIEW_IN_PROGRESS' };
  $usable := function($st) { $st in ['CREATE_COMPLETE', 'UPDATE_COMPLETE', 'UPDATE_ROLLBACK_COMPLETE', 'IMPORT_COMPLETE', 'IMPORT_ROLLBACK_COMPLETE'] };
  $pstr := function($v) { $type($v) = 'string' ? $v : $type($v) = 'null' ? '' : $type($v) = 'array' ? ($count($v) = 0 ? '' : $join($map($v, function($i) { $type($i) = 'string' ? $i : $string($i) }), ',')) : $string($v) };
  $norm := function($v) { (
    $t := $trim($v);
    $inner := ($substring($t, 0, 1) = '[' and $substring($t, $length($t) - 1) = ']') ? $substring($t, 1, $length($t) - 2) : $t;
    $join($map($split($inner, ','), function($i) { $replace($replace($trim($i), /^['"]+/, ''), /['"]+$/, '') }), ',')
  ) };
  $s := $states.input;
  $g := $s.r.g;
"#;

/// A JSONata `Pass` that sets `$.r.KEY` to `value` (a JSONata expression over the
/// [`FUNCTIONS`]).
fn jsonata(key: &str, value: &str) -> Value {
    jsonata_with(key, value, "")
}

/// [`jsonata`] where `value` holds `__BODY__`, replaced by `body` after the whitespace of
/// the rest is folded (the template's text is in `body`'s string literals, kept as it is).
fn jsonata_with(key: &str, value: &str, body: &str) -> Value {
    let e = format!("({FUNCTIONS} $merge([$s, {{'r': $merge([$s.r, {{'{key}': ({value})}}])}}]))");
    let e = e.split_whitespace().collect::<Vec<_>>().join(" ");
    let e = e.replace("__BODY__", body);
    json!({"Type": "Pass", "QueryLanguage": "JSONata", "Output": format!("{{% {e} %}}")})
}

/// The step's parameters as `$.r.g` (each map entry translated on its own).
fn parameters(p: &Params) -> Result<Value, Refusal> {
    let mut g = Map::new();
    p.required("stack_name")?.put(&mut g, "stack_name");
    for (key, default) in [("capabilities", json!([])), ("timeout", json!("30m"))] {
        p.check(key)?;
        match p.get(key) {
            Some(e) => e.put(&mut g, key),
            None => {
                g.insert(key.into(), default);
            }
        }
    }
    for key in ["parameters", "tags"] {
        let mut m = Map::new();
        match p.raw(key) {
            None | Some(Value::Null) => {}
            Some(Value::Object(given)) => {
                for (k, v) in given {
                    if k.ends_with(".$") || k.contains('\'') {
                        return Err(Refusal::param(
                            key,
                            &format!("key \"{k}\" has no translation"),
                        ));
                    }
                    let e = super::expr::value(v, &p.scope).map_err(|m| Refusal::param(key, &m))?;
                    e.put(&mut m, k);
                }
            }
            Some(_) => return Err(Refusal::param(key, "must be a map")),
        }
        g.insert(key.into(), Value::Object(m));
    }
    Ok(Value::Object(g))
}

/// The expression of `$.r.t`: the stack name sanitised, the template rendered (`__BODY__`),
/// the timeout, the tags; `problem` when a parameter is invalid (as the CLI refuses it).
const RENDER: &str = r#"(
  $name0 := $type($g.stack_name) = 'string' ? $trim($g.stack_name) : '';
  $name1 := $replace($name0, /[^A-Za-z0-9-]/, '-');
  $name := $substring($exists($match($name1, /^[A-Za-z]/)) ? $name1 : 'irr-' & $name1, 0, 128);
  $units := {'s': 1, 'm': 60, 'h': 3600, 'd': 86400};
  $to := $g.timeout;
  $form := $type($to) = 'string' ? $match($to, /^([0-9]+[smhd])+$/) : [];
  $secs := $type($to) = 'number' ? ($to >= 0 and $to = $floor($to) ? $to : -1) :
    $type($to) = 'null' ? 1800 :
    $exists($form[0]) ? $sum($match($to, /([0-9]+)([smhd])/).($number(groups[0]) * $lookup($units, groups[1]))) : -1;
  $body := (__BODY__);
  $marked := $match($body, /\{\{irr-template-error: (.*?) :irr-template-error\}\}/);
  $given := $type($g.tags) = 'object' ? $g.tags : {};
  $tags := $append(
    $map0($filter($sort($keys($given)), function($k) { $k != 'irr:case' and $k != 'irr:run' }), function($k) { {'Key': $k, 'Value': $pstr($lookup($given, $k))} }),
    [{'Key': 'irr:case', 'Value': $s.case_id}, {'Key': 'irr:run', 'Value': $states.context.Execution.Name}]);
  $problem :=
    $name0 = '' ? 'stack_name is empty' :
    $secs < 0 ? 'invalid timeout ' & $string($to) :
    $secs = 0 ? 'invalid timeout ' & $string($to) :
    $exists($marked[0]) ? '`' & $s.r.template & '`: ' & $marked[0].groups[0] :
    $length($body) > 51200 ? 'the rendered template is ' & $string($length($body)) & ' bytes; CloudFormation takes at most 51200 in a request' :
    ($type($g.capabilities) != 'array') ? 'capabilities must be a list' :
    '';
  {
    'problem': $problem,
    'stack_name': $name,
    'body': $problem = '' ? $body : '',
    'format': $substring($trim($body), 0, 1) = '{' ? 'json' : 'yaml',
    'timeout_seconds': $secs,
    'timeout_minutes': $max([1, $ceil($secs / 60)]),
    'deadline': $toMillis($states.context.State.EnteredTime) + $secs * 1000,
    'tags': $tags,
    'tag_map': $merge($map($tags, function($t) { {$t.Key: $t.Value} }))
  }
)"#;

/// The expression of `$.r.q`: the given parameters matched to the declared ones
/// (`ValidateTemplate`'s answer at `$.r.validated`), as the CLI's `stack_parameters`.
const REQUEST: &str = r#"(
  $declared := $map0($s.r.validated.Parameters, function($p) { $p.ParameterKey });
  $noEcho := $map0($filter($list($s.r.validated.Parameters), function($p) { $p.NoEcho = true }), function($p) { $p.ParameterKey });
  $upper := function($k) { $join($map0($filter($split($k, /[_-]/), function($x) { $x != '' }), function($x) { $uppercase($substring($x, 0, 1)) & $substring($x, 1) }), '') };
  $given := $type($g.parameters) = 'object' ? $g.parameters : {};
  $ks := $keys($given);
  $split2 := $count($ks) = 0 ? {'names': [], 'pass': [], 'render_only': []} : $reduce($sort($ks), function($acc, $k) { (
    $nm := $k in $declared ? $k : ($upper($k) in $declared ? $upper($k) : '');
    ($nm != '' and $not($nm in $acc.names))
      ? {'names': $append($acc.names, [$nm]), 'pass': $append($acc.pass, [{'ParameterKey': $nm, 'ParameterValue': $pstr($lookup($given, $k))}]), 'render_only': $acc.render_only}
      : {'names': $acc.names, 'pass': $acc.pass, 'render_only': $append($acc.render_only, [$k])}
  ) }, {'names': [], 'pass': [], 'render_only': []});
  $secret := $filter($list($split2.names), function($nm) { $nm in $noEcho });
  {
    'problem': $count($secret) > 0 ? 'the template declares ' & $join($secret, ', ') & " NoEcho: its value would be kept in clear in the execution's history; deploy this template from the CLI" : '',
    'cfn_params': $split2.pass,
    'param_map': $count($split2.pass) = 0 ? {} : $merge($map($split2.pass, function($p) { {$p.ParameterKey: $p.ParameterValue} })),
    'render_only': $split2.render_only
  }
)"#;

/// `cloudformation.deploy_stack` (see the module documentation).
pub fn deploy(id: &str, p: &Params, c: &Calls) -> Result<Translated, Refusal> {
    let template = match p.raw("template") {
        Some(Value::String(t)) if !crate::template::is_template(t) => t.clone(),
        _ => {
            return Err(Refusal::param(
                "template",
                "must be a file name written in the playbook (it is rendered when compiling)",
            ))
        }
    };
    let dir = p.scope.dir.clone().unwrap_or_default();
    let text = crate::actions::cloudformation::read_template(&dir, &template)
        .map_err(|m| Refusal::param("template", &m))?;
    let context = "{'case': {'id': $s.case_id}, 'run': {'id': $states.context.Execution.Name}, 'params': $type($g.parameters) = 'object' ? $g.parameters : {}}";
    let body = super::hbs::expression(&text, context)
        .map_err(|m| Refusal::param("template", &format!("`{template}`: {m}")))?;
    let g = parameters(p)?;
    let n = |s: &str| format!("{id}: {s}");
    let mut seq = Seq::default();
    attempt_dir(&mut seq, id, p.in_map);
    seq.push(
        n("parameters"),
        json!({"Type": "Pass", "Parameters": g, "ResultPath": "$.r.g"}),
    );
    seq.push(
        n("template"),
        json!({"Type": "Pass", "Result": template, "ResultPath": "$.r.template"}),
    );
    seq.push(n("render"), jsonata_with("t", RENDER, &body));
    invalid(&mut seq, id, "$.r.t.problem", "render", "validate");
    let mut validate = c.read(
        "cloudformation:validateTemplate",
        json!({"TemplateBody.$": "$.r.t.body"}),
        Value::Null,
        "$.r.validated",
    );
    validate["Next"] = json!(n("request"));
    seq.push(n("validate"), validate);
    seq.push(n("request"), jsonata("q", REQUEST));
    invalid(&mut seq, id, "$.r.q.problem", "request", "template format");
    record_request(&mut seq, id, c);
    super::cfn_flow::flow(&mut seq, id, c);
    Ok(Translated {
        branch: seq.finish(),
        outputs: vec!["stack_id", "outputs", "stack_name", "reused"],
    })
}

/// A `Choice`: the problem at `path` is empty, else the step fails `irr.InvalidParams`.
fn invalid(seq: &mut Seq, id: &str, path: &str, what: &str, next: &str) {
    let n = |s: &str| format!("{id}: {s}");
    seq.push(
        n(&format!("{what} valid")),
        choice(
            json!({"Variable": path, "StringEquals": ""}),
            &n(next),
            &n(&format!("{what} invalid")),
        ),
    );
    seq.push(
        n(&format!("{what} invalid")),
        json!({"Type": "Fail", "Error": "irr.InvalidParams", "CausePath": path}),
    );
}

/// `template.yaml` (or `.json`) and `stack-request.json` recorded.
fn record_request(seq: &mut Seq, id: &str, c: &Calls) {
    let n = |s: &str| format!("{id}: {s}");
    // Step Functions writes a string `Body` as JSON (a quoted string): the rendered template
    // is recorded as that JSON string, `template.yaml.json` (`jq -r .` gives the template).
    seq.push(
        n("template format"),
        choice(
            json!({"Variable": "$.r.t.format", "StringEquals": "json"}),
            &n("record template.json.json"),
            &n("record template.yaml.json"),
        ),
    );
    for format in ["json", "yaml"] {
        let mut t = c.evidence(&format!("template.{format}.json"), "$.r.t.body");
        t["Next"] = json!(n("request record"));
        seq.push(n(&format!("record template.{format}.json")), t);
    }
    seq.push(
        n("request record"),
        jsonata(
            "request",
            r#"{
  'stack_name': $s.r.t.stack_name,
  'requested_stack_name': $g.stack_name,
  'template': $s.r.template,
  'rendered_template': 'template.' & $s.r.t.format & '.json',
  'parameters': $s.r.q.param_map,
  'render_only_parameters': $s.r.q.render_only,
  'capabilities': $g.capabilities,
  'tags': $s.r.t.tag_map,
  'timeout_seconds': $s.r.t.timeout_seconds
}"#,
        ),
    );
    seq.push(
        n("record request"),
        c.evidence("stack-request.json", "$.r.request"),
    );
}

/// The JSONata helpers, for the flow's states ([`super::cfn_flow`]).
pub(super) fn set(key: &str, value: &str) -> Value {
    jsonata(key, value)
}
