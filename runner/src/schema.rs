//! `irr schema`: the JSON Schema of the playbook format, generated from the catalog so that
//! an editor knows every action's parameters.
//!
//! Where a parameter is not a string, a template string (`"{{...}}"`) is accepted as well:
//! the validator checks such values; the schema only helps an editor complete and flag.

use serde_json::{json, Value};

use crate::catalog::{self, TypeSpec};
use crate::types::INPUT_TYPE_NAMES;

const TEMPLATE: &str = "\\{\\{.*\\}\\}";

fn type_schema(ty: TypeSpec) -> Value {
    let templated =
        |schema: Value| json!({"anyOf": [schema, {"type": "string", "pattern": TEMPLATE}]});
    match ty {
        TypeSpec::String => json!({"type": "string"}),
        TypeSpec::Integer => templated(json!({"type": "integer"})),
        TypeSpec::Boolean => templated(json!({"type": "boolean"})),
        TypeSpec::InstanceId => {
            json!({"type": "string", "pattern": "^(i-([0-9a-f]{8}|[0-9a-f]{17})|.*\\{\\{.*\\}\\}.*)$"})
        }
        TypeSpec::Arn => {
            json!({"type": "string", "pattern": "^(arn:aws[a-z-]*:.+|.*\\{\\{.*\\}\\}.*)$"})
        }
        TypeSpec::Cidr
        | TypeSpec::AccessKeyId
        | TypeSpec::BucketName
        | TypeSpec::IpAddress
        | TypeSpec::Timestamp => json!({"type": "string"}),
        TypeSpec::SecurityGroupId => resource_id("sg"),
        TypeSpec::VpcId => resource_id("vpc"),
        TypeSpec::SubnetId => resource_id("subnet"),
        TypeSpec::ImageId => resource_id("ami"),
        TypeSpec::Duration => {
            json!({"type": "string", "pattern": "^(([0-9]+[smhd])+|.*\\{\\{.*\\}\\}.*)$"})
        }
        TypeSpec::PolicyDocument => templated(json!({"type": "object", "required": ["Statement"]})),
        TypeSpec::Any => json!({}),
        TypeSpec::List(t) => templated(json!({"type": "array", "items": type_schema(*t)})),
        TypeSpec::Map(t) => {
            templated(json!({"type": "object", "additionalProperties": type_schema(*t)}))
        }
    }
}

/// A string that is `PREFIX-` and 8 or 17 hex digits, or holds a template.
fn resource_id(prefix: &str) -> Value {
    json!({"type": "string", "pattern": format!("^({prefix}-([0-9a-f]{{8}}|[0-9a-f]{{17}})|.*\\{{\\{{.*\\}}\\}}.*)$")})
}

/// The schema document (JSON Schema draft 2020-12).
pub fn schema() -> Value {
    let names: Vec<&str> = catalog::names();
    let per_action = per_action_schemas();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://irr.dev/schema/irr-v1.json",
        "title": "irr playbook (irr/v1)",
        "type": "object",
        "additionalProperties": false,
        "required": ["apiVersion", "kind", "metadata", "steps"],
        "properties": {
            "apiVersion": {"const": "irr/v1"},
            "kind": {"const": "Playbook"},
            "metadata": {
                "type": "object",
                "additionalProperties": false,
                "required": ["name", "version"],
                "properties": {
                    "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]*$"},
                    "version": {"type": "string", "pattern": "^(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)([-+][0-9A-Za-z.+-]*)?$"},
                    "description": {"type": "string"},
                    "owner": {"type": "string"},
                    "labels": {"type": "array", "items": {"type": "string"}},
                },
            },
            "inputs": {
                "type": "object",
                "propertyNames": {"pattern": "^[a-z_][a-z0-9_]*$"},
                "additionalProperties": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["type"],
                    "properties": {
                        "type": {"enum": INPUT_TYPE_NAMES},
                        "items": {"enum": INPUT_TYPE_NAMES.iter().filter(|t| **t != "list").collect::<Vec<_>>()},
                        "description": {"type": "string"},
                        "default": {},
                        "secret": {"type": "boolean"},
                    },
                    // A secret input may not have a default (it would be in the file).
                    "if": {"properties": {"secret": {"const": true}}, "required": ["secret"]},
                    "then": {"not": {"required": ["default"]}},
                },
            },
            "evidence": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "location": {"type": "string"},
                    "retention_days": {"type": "integer", "minimum": 1, "maximum": 36500},
                    "lock_mode": {"enum": ["governance", "compliance", "GOVERNANCE", "COMPLIANCE"]},
                    "signing_key": {
                        "type": "string",
                        "description": "a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID) or a PEM private key file that signs each seal",
                    },
                },
            },
            "targets": targets_schema(),
            "steps": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/step"}},
            "finally": {"type": "array", "items": {"$ref": "#/$defs/step"}},
            "trigger": trigger_schema(),
        },
        "$defs": {
            "step": {
                "type": "object",
                "additionalProperties": false,
                "required": ["id", "action"],
                "properties": {
                    "id": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]*$"},
                    "action": {"enum": names},
                    "description": {"type": "string"},
                    "with": {"type": "object"},
                    "needs": {"type": "array", "items": {"type": "string"}},
                    "when": {"anyOf": [{"type": "boolean"}, {"type": "string", "pattern": TEMPLATE}]},
                    "timeout": {"type": "string", "pattern": "^([0-9]+[smhd])+$"},
                    "retries": {"type": "integer", "minimum": 0, "maximum": crate::validate::MAX_RETRIES},
                    "on_failure": {"enum": ["abort", "continue"]},
                    "for_each": {"anyOf": [{"type": "array"}, {"type": "string", "pattern": TEMPLATE}]},
                },
                "allOf": per_action,
            },
        },
    })
}

/// The `trigger:` section: which findings start the playbook and the paths into them.
fn trigger_schema() -> Value {
    let path = json!({
        "type": "string",
        "pattern": "^\\s*\\$",
        "description": "an RFC 9535 JSONPath into the bare finding, optionally followed by | arn_resource",
    });
    let inputs = json!({
        "type": "object",
        "propertyNames": {"pattern": "^[a-z_][a-z0-9_]*$"},
        "additionalProperties": path,
    });
    let targets = json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {"account": path, "region": path},
    });
    json!({
        "type": "object",
        "additionalProperties": false,
        "description": "which findings start the playbook (irr run --finding, the Step Functions compiler's EventBridge rule) and how they map onto its inputs",
        "anyOf": [{"required": ["guardduty"]}, {"required": ["securityhub"]}],
        "properties": {
            "guardduty": {
                "type": "object",
                "additionalProperties": false,
                "required": ["types"],
                "properties": {
                    "types": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": "^[A-Za-z0-9]+:[A-Za-z0-9]+/\\S+$"}},
                    "inputs": inputs,
                    "targets": targets,
                },
            },
            "securityhub": {
                "type": ["object", "null"],
                "additionalProperties": false,
                "properties": {
                    "custom_action": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,20}$"},
                    "inputs": inputs,
                    "targets": targets,
                },
            },
            "inputs": inputs,
            "targets": targets,
        },
    })
}

/// The `targets:` section: the accounts and regions a run fans out over.
fn targets_schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["role"],
        "description": "fan the steps out over accounts x regions, assuming the role in each",
        "properties": {
            "accounts": {"type": "array", "minItems": 1, "uniqueItems": true, "items": {"type": "string", "pattern": "^[0-9]{12}$"}},
            "organization": {
                "type": "object",
                "additionalProperties": false,
                "required": ["ous"],
                "properties": {"ous": {"type": "array", "minItems": 1, "uniqueItems": true, "items": {"type": "string", "pattern": "^ou-[0-9a-z]{4,32}-[0-9a-z]{8,32}$"}}},
            },
            "regions": {"type": "array", "minItems": 1, "uniqueItems": true, "items": {"type": "string", "pattern": "^[a-z]{2}(-[a-z]+)+-[1-9][0-9]*$"}},
            "role": {"type": "string", "pattern": "^[A-Za-z0-9+=,.@_/-]{1,512}$"},
            "external_id": {"type": "string", "minLength": 2, "maxLength": 1224},
            "concurrency": {"type": "integer", "minimum": 1, "maximum": crate::targets::MAX_CONCURRENCY},
        },
        "oneOf": [{"required": ["accounts"]}, {"required": ["organization"]}],
    })
}

/// Per action, the schema of its `with` (its parameters, their types, the required ones).
fn per_action_schemas() -> Vec<Value> {
    catalog::all()
        .iter()
        .map(|a| {
            let props: serde_json::Map<String, Value> = a
                .params
                .iter()
                .map(|p| {
                    let mut s = type_schema(p.ty);
                    if let Value::Object(m) = &mut s {
                        m.insert("description".into(), json!(p.description));
                    }
                    (p.name.to_owned(), s)
                })
                .collect();
            let required: Vec<&str> = a
                .params
                .iter()
                .filter(|p| p.required)
                .map(|p| p.name)
                .collect();
            let mut with = json!({
                "type": "object",
                "description": a.summary,
                "properties": props,
                "required": required,
                "additionalProperties": false,
            });
            // A discovery step names at least one criterion of each group.
            let at_least: Vec<Value> = a
                .at_least_one_of
                .iter()
                .map(|g| json!({"anyOf": g.iter().map(|p| json!({"required": [p]})).collect::<Vec<_>>()}))
                .collect();
            if !at_least.is_empty() {
                with["allOf"] = Value::Array(at_least);
            }
            json!({
                "if": {"properties": {"action": {"const": a.name}}, "required": ["action"]},
                "then": {"properties": {"with": with}},
            })
        })
        .collect()
}
