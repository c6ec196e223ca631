//! The action catalog: every action as data, derived from the actions' own declarations.
//!
//! Each action declares itself once, in its own module under `crate::actions` (a typed
//! parameter struct and an [`crate::actions::Action`] impl with its [`Declaration`]); the
//! registry (`crate::actions::REGISTRY`) lists them. This module turns those declarations into
//! [`ActionSpec`]s, deriving the parameters from the struct's JSON Schema ([`params_of`]). The
//! validator checks `with` against them, `irr plan` lists the API calls and IAM actions,
//! `irr policy` builds the least-privilege policy from the permissions, and `irr schema` and
//! `irr actions` print them.

use crate::types::ValueType;

/// A parameter or output type, in a form that can live in a `static`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeSpec {
    /// See [`ValueType::String`].
    String,
    /// See [`ValueType::Integer`].
    Integer,
    /// See [`ValueType::Boolean`].
    Boolean,
    /// See [`ValueType::InstanceId`].
    InstanceId,
    /// See [`ValueType::Arn`].
    Arn,
    /// See [`ValueType::Cidr`].
    Cidr,
    /// See [`ValueType::AccessKeyId`].
    AccessKeyId,
    /// See [`ValueType::BucketName`].
    BucketName,
    /// See [`ValueType::Duration`].
    Duration,
    /// See [`ValueType::PolicyDocument`].
    PolicyDocument,
    /// See [`ValueType::IpAddress`].
    IpAddress,
    /// See [`ValueType::Timestamp`].
    Timestamp,
    /// See [`ValueType::SecurityGroupId`].
    SecurityGroupId,
    /// See [`ValueType::VpcId`].
    VpcId,
    /// See [`ValueType::SubnetId`].
    SubnetId,
    /// See [`ValueType::ImageId`].
    ImageId,
    /// See [`ValueType::Any`].
    Any,
    /// A list of the inner type.
    List(&'static TypeSpec),
    /// A mapping of strings to the inner type.
    Map(&'static TypeSpec),
}

impl TypeSpec {
    /// The checking type.
    pub fn value_type(self) -> ValueType {
        match self {
            TypeSpec::String => ValueType::String,
            TypeSpec::Integer => ValueType::Integer,
            TypeSpec::Boolean => ValueType::Boolean,
            TypeSpec::InstanceId => ValueType::InstanceId,
            TypeSpec::Arn => ValueType::Arn,
            TypeSpec::Cidr => ValueType::Cidr,
            TypeSpec::AccessKeyId => ValueType::AccessKeyId,
            TypeSpec::BucketName => ValueType::BucketName,
            TypeSpec::Duration => ValueType::Duration,
            TypeSpec::PolicyDocument => ValueType::PolicyDocument,
            TypeSpec::IpAddress => ValueType::IpAddress,
            TypeSpec::Timestamp => ValueType::Timestamp,
            TypeSpec::SecurityGroupId => ValueType::SecurityGroupId,
            TypeSpec::VpcId => ValueType::VpcId,
            TypeSpec::SubnetId => ValueType::SubnetId,
            TypeSpec::ImageId => ValueType::ImageId,
            TypeSpec::Any => ValueType::Any,
            TypeSpec::List(t) => ValueType::List(Box::new(t.value_type())),
            TypeSpec::Map(t) => ValueType::Map(Box::new(t.value_type())),
        }
    }
}

/// One parameter of an action.
#[derive(Debug)]
pub struct ParamSpec {
    /// Name in `with`.
    pub name: &'static str,
    /// Type.
    pub ty: TypeSpec,
    /// Must be given.
    pub required: bool,
    /// Default when not given (YAML text), for documentation and rendering.
    pub default: Option<&'static str>,
    /// What it is.
    pub description: &'static str,
}

/// One output of an action (`steps.ID.outputs.NAME`).
#[derive(Debug)]
pub struct OutputSpec {
    /// Name.
    pub name: &'static str,
    /// Type.
    pub ty: TypeSpec,
    /// What it is.
    pub description: &'static str,
}

/// An IAM action a step needs, with the resources it can be scoped to.
///
/// Resource patterns may hold `{param}` (the step's rendered parameter), `{region}`,
/// `{account}` and `{case}`; anything not known when the policy is generated becomes `*`.
#[derive(Debug)]
pub struct Permission {
    /// e.g. `ec2:CreateSnapshot`.
    pub action: &'static str,
    /// Resource ARN patterns; `["*"]` where the action allows no resource scoping.
    pub resources: &'static [&'static str],
    /// Only needed when this parameter is given (e.g. `user_name` vs `role_name`).
    pub when_param: Option<&'static str>,
    /// For `iam:PassRole`: the one service the role may be passed to (the policy's
    /// `Condition: StringEquals iam:PassedToService`).
    pub passed_to: Option<&'static str>,
}

impl Permission {
    /// On the run's own S3 evidence (`{evidence_bucket}`): needed only when the evidence is in
    /// S3; with local evidence the action makes no such call.
    pub fn on_evidence(&self) -> bool {
        self.resources
            .iter()
            .any(|r| r.contains("{evidence_bucket}"))
    }
}

/// One action of the catalog: its [`Declaration`] plus the parameters derived from its typed
/// parameter struct ([`crate::actions::Action::Params`]).
#[derive(Debug)]
pub struct ActionSpec {
    /// e.g. `ec2.snapshot_volumes`.
    pub name: &'static str,
    /// One line: what it does.
    pub summary: &'static str,
    /// Parameters, in the order of the parameter struct's fields.
    pub params: &'static [ParamSpec],
    /// Groups of parameters of which exactly one must be given.
    pub exactly_one_of: &'static [&'static [&'static str]],
    /// Groups of parameters of which at least one must be given
    /// ([`crate::actions::Action::AT_LEAST_ONE_OF`]: a discovery with no criterion).
    pub at_least_one_of: &'static [&'static [&'static str]],
    /// Outputs.
    pub outputs: &'static [OutputSpec],
    /// The AWS API operations it calls, in order (`service:Operation`).
    pub api_calls: &'static [&'static str],
    /// IAM actions it needs.
    pub permissions: &'static [Permission],
    /// Whether it changes anything (confirmation, dry run and journal apply).
    pub mutating: bool,
    /// How running it twice is made safe.
    pub idempotency: &'static str,
    /// How to undo it, if it can be.
    pub undo: Option<&'static str>,
}

/// What an action declares besides its parameters, next to its implementation (the
/// `DECLARATION` of [`crate::actions::Action`]). The parameters come from the action's typed
/// parameter struct (see [`params_of`]).
#[derive(Debug)]
pub struct Declaration {
    /// e.g. `ec2.snapshot_volumes`.
    pub name: &'static str,
    /// One line: what it does.
    pub summary: &'static str,
    /// Groups of parameters of which exactly one must be given.
    pub exactly_one_of: &'static [&'static [&'static str]],
    /// Outputs (`steps.ID.outputs.NAME`).
    pub outputs: &'static [OutputSpec],
    /// The AWS API operations it calls, in order (`service:Operation`), reads included.
    pub api_calls: &'static [&'static str],
    /// IAM actions it needs, with resource patterns.
    pub permissions: &'static [Permission],
    /// Whether it changes anything.
    pub mutating: bool,
    /// How running it twice is made safe.
    pub idempotency: &'static str,
    /// How to undo it, if it can be.
    pub undo: Option<&'static str>,
}

impl ActionSpec {
    /// The parameter named `name`.
    pub fn param(&self, name: &str) -> Option<&'static ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }

    /// The output named `name`.
    pub fn output(&self, name: &str) -> Option<&'static OutputSpec> {
        self.outputs.iter().find(|o| o.name == name)
    }

    /// The catalog entry of a declaration and its parameters.
    pub fn new(d: &Declaration, params: &'static [ParamSpec]) -> ActionSpec {
        ActionSpec {
            name: d.name,
            summary: d.summary,
            params,
            exactly_one_of: d.exactly_one_of,
            at_least_one_of: &[],
            outputs: d.outputs,
            api_calls: d.api_calls,
            permissions: d.permissions,
            mutating: d.mutating,
            idempotency: d.idempotency,
            undo: d.undo,
        }
    }
}

/// Every action, in the order of the registry (`crate::actions::REGISTRY`).
pub fn all() -> &'static [ActionSpec] {
    static CATALOG: std::sync::OnceLock<Vec<ActionSpec>> = std::sync::OnceLock::new();
    CATALOG.get_or_init(|| crate::actions::REGISTRY.iter().map(|r| r.spec()).collect())
}

/// The action named `name`.
pub fn find(name: &str) -> Option<&'static ActionSpec> {
    all().iter().find(|a| a.name == name)
}

/// The names of all actions.
pub fn names() -> Vec<&'static str> {
    all().iter().map(|a| a.name).collect()
}

/// The schema extension naming irr's type of a parameter where it is richer than JSON
/// Schema's (`#[schemars(extend("x-irr-type" = "instance_id"))]`). On a list or a map it names
/// the type of the items. Values: the names of [`TypeSpec`]'s scalar kinds in snake case
/// (`string`, `instance_id`, `arn`, `cidr`, `access_key_id`, `bucket_name`, `duration`,
/// `policy_document`, `ip_address`, `timestamp`, `security_group_id`, `vpc_id`, `subnet_id`,
/// `image_id`, `any`).
pub const IRR_TYPE: &str = "x-irr-type";

/// The parameters of a typed parameter struct, derived from its JSON Schema (`schemars`): one
/// per field, in field order; required unless the field is an `Option` (or has a serde
/// default); the type from the JSON Schema type, refined by [`IRR_TYPE`]; the default from the
/// schema's `default` (`#[schemars(extend("default" = ..))]`, shown as YAML text); the
/// description from the field's doc comment (lines joined by a space).
///
/// Computed once per action by [`all`]; the strings are kept for the life of the process.
///
/// # Panics
///
/// When the struct's schema is not an object of properties or names a type irr does not know:
/// a programming error the catalog's unit tests catch.
pub fn params_of<T: schemars::JsonSchema>() -> &'static [ParamSpec] {
    let settings = schemars::generate::SchemaSettings::draft2020_12().with(|s| {
        s.inline_subschemas = true;
    });
    let schema = settings.into_generator().into_root_schema_for::<T>();
    let root = schema.as_value();
    let required: Vec<&str> = root
        .get("required")
        .and_then(serde_json::Value::as_array)
        .map(|r| r.iter().filter_map(serde_json::Value::as_str).collect())
        .unwrap_or_default();
    let props = root
        .get("properties")
        .and_then(serde_json::Value::as_object)
        .unwrap_or_else(|| panic!("{}: parameters must be a struct", T::schema_name()));
    let params: Vec<ParamSpec> = props
        .iter()
        .map(|(name, s)| ParamSpec {
            name: leak(name.clone()),
            ty: type_of(s, None),
            required: required.contains(&name.as_str()),
            default: s.get("default").filter(|d| !d.is_null()).map(|d| match d {
                serde_json::Value::String(s) => leak(s.clone()),
                other => leak(other.to_string()),
            }),
            description: leak(
                s.get("description")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
                    .lines()
                    .map(str::trim)
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        })
        .collect();
    params.leak()
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// The irr type of one property's schema; `irr` is the [`IRR_TYPE`] of an enclosing list or
/// map, which applies to its items.
fn type_of(s: &serde_json::Value, irr: Option<&str>) -> TypeSpec {
    let irr = s.get(IRR_TYPE).and_then(serde_json::Value::as_str).or(irr);
    // `Option<T>` is `{"type": [T, "null"]}`.
    let json_type = match s.get("type") {
        Some(serde_json::Value::String(t)) => Some(t.as_str()),
        Some(serde_json::Value::Array(ts)) => ts
            .iter()
            .filter_map(serde_json::Value::as_str)
            .find(|t| *t != "null"),
        _ => None,
    };
    let inner = |key: &str| -> &'static TypeSpec {
        let item = s.get(key).cloned().unwrap_or(serde_json::Value::Bool(true));
        Box::leak(Box::new(type_of(&item, irr)))
    };
    match json_type {
        Some("array") => TypeSpec::List(inner("items")),
        Some("object") if irr != Some("policy_document") => {
            TypeSpec::Map(inner("additionalProperties"))
        }
        _ => match irr {
            Some(kind) => scalar(kind),
            None => match json_type {
                Some("string") => TypeSpec::String,
                Some("integer") => TypeSpec::Integer,
                Some("boolean") => TypeSpec::Boolean,
                None => TypeSpec::Any,
                Some(other) => panic!("no irr type for JSON Schema type {other}"),
            },
        },
    }
}

/// The scalar kind an [`IRR_TYPE`] names.
fn scalar(kind: &str) -> TypeSpec {
    match kind {
        "string" => TypeSpec::String,
        "integer" => TypeSpec::Integer,
        "boolean" => TypeSpec::Boolean,
        "instance_id" => TypeSpec::InstanceId,
        "arn" => TypeSpec::Arn,
        "cidr" => TypeSpec::Cidr,
        "access_key_id" => TypeSpec::AccessKeyId,
        "bucket_name" => TypeSpec::BucketName,
        "duration" => TypeSpec::Duration,
        "policy_document" => TypeSpec::PolicyDocument,
        "ip_address" => TypeSpec::IpAddress,
        "timestamp" => TypeSpec::Timestamp,
        "security_group_id" => TypeSpec::SecurityGroupId,
        "vpc_id" => TypeSpec::VpcId,
        "subnet_id" => TypeSpec::SubnetId,
        "image_id" => TypeSpec::ImageId,
        "any" => TypeSpec::Any,
        other => panic!("unknown {IRR_TYPE} `{other}`"),
    }
}

/// IAM actions every run needs besides its steps': who am I (for the evidence's collector).
pub const RUN_PERMISSIONS: &[Permission] = &[decl::perm("sts:GetCallerIdentity", decl::ANY)];

/// IAM actions needed to sign the seal with a KMS key (`{key}`: its ARN): its public key
/// (checked before the run, stored beside the signature) and the signature itself.
pub const SIGNING_KMS_PERMISSIONS: &[Permission] = &[
    decl::perm("kms:GetPublicKey", &["{key}"]),
    decl::perm("kms:Sign", &["{key}"]),
];

/// IAM actions needed to write evidence to an S3 location (`{bucket}` and `{prefix}`).
pub const S3_EVIDENCE_PERMISSIONS: &[Permission] = &[
    decl::perm(
        "s3:GetBucketObjectLockConfiguration",
        &["arn:aws:s3:::{bucket}"],
    ),
    decl::perm("s3:GetBucketVersioning", &["arn:aws:s3:::{bucket}"]),
    decl::perm("s3:GetEncryptionConfiguration", &["arn:aws:s3:::{bucket}"]),
    decl::perm("s3:ListBucket", &["arn:aws:s3:::{bucket}"]),
    decl::perm("s3:ListBucketVersions", &["arn:aws:s3:::{bucket}"]),
    decl::perm("s3:PutObject", &["arn:aws:s3:::{bucket}/{prefix}*"]),
    decl::perm(
        "s3:PutObjectRetention",
        &["arn:aws:s3:::{bucket}/{prefix}*"],
    ),
    decl::perm("s3:GetObject", &["arn:aws:s3:::{bucket}/{prefix}*"]),
    decl::perm("s3:GetObjectVersion", &["arn:aws:s3:::{bucket}/{prefix}*"]),
];

/// The building blocks of an action's [`Declaration`]: permission and output constructors and
/// the common resource patterns and types.
pub mod decl {
    use super::{OutputSpec, Permission, TypeSpec};

    /// Any resource (the action allows no resource scoping).
    pub const ANY: &[&str] = &["*"];
    /// The step's instance.
    pub const INSTANCE: &[&str] = &["arn:aws:ec2:{region}:{account}:instance/{instance_id}"];
    /// The step's role.
    pub const ROLE: &[&str] = &["arn:aws:iam::{account}:role/{role_name}"];
    /// The step's user.
    pub const USER: &[&str] = &["arn:aws:iam::{account}:user/{user_name}"];
    /// The step's bucket.
    pub const BUCKET: &[&str] = &["arn:aws:s3:::{bucket}"];
    /// Any instance profile of the account.
    pub const INSTANCE_PROFILE: &[&str] = &["arn:aws:iam::{account}:instance-profile/*"];
    /// Customer managed policies of the account and AWS managed ones (`arn:aws:iam::aws:policy/..`).
    pub const MANAGED_POLICY: &[&str] = &[
        "arn:aws:iam::{account}:policy/*",
        "arn:aws:iam::aws:policy/*",
    ];
    /// Any Auto Scaling group of the account and region.
    pub const AUTOSCALING_GROUP: &[&str] =
        &["arn:aws:autoscaling:{region}:{account}:autoScalingGroup:*:autoScalingGroupName/*"];
    /// The step's stack.
    pub const STACK: &[&str] = &["arn:aws:cloudformation:{region}:{account}:stack/{stack_name}/*"];

    /// `action` on `resources`.
    pub const fn perm(action: &'static str, resources: &'static [&'static str]) -> Permission {
        Permission {
            action,
            resources,
            when_param: None,
            passed_to: None,
        }
    }

    /// `iam:PassRole` on `resources`, only to `service` (e.g. `ec2.amazonaws.com`).
    pub const fn pass_role_to(
        resources: &'static [&'static str],
        service: &'static str,
    ) -> Permission {
        Permission {
            action: "iam:PassRole",
            resources,
            when_param: None,
            passed_to: Some(service),
        }
    }

    /// `action` on `resources`, only needed when the step gives `param`.
    pub const fn perm_if(
        param: &'static str,
        action: &'static str,
        resources: &'static [&'static str],
    ) -> Permission {
        Permission {
            action,
            resources,
            passed_to: None,
            when_param: Some(param),
        }
    }

    /// One output.
    pub const fn out(name: &'static str, ty: TypeSpec, description: &'static str) -> OutputSpec {
        OutputSpec {
            name,
            ty,
            description,
        }
    }

    /// A list of strings.
    pub const STRINGS: TypeSpec = TypeSpec::List(&TypeSpec::String);
    /// A list of ARNs.
    pub const ARNS: TypeSpec = TypeSpec::List(&TypeSpec::Arn);
    /// A mapping of strings to strings.
    pub const STRING_MAP: TypeSpec = TypeSpec::Map(&TypeSpec::String);
    /// A mapping of strings to anything.
    pub const ANY_MAP: TypeSpec = TypeSpec::Map(&TypeSpec::Any);
    /// The `artifacts` output of the capture actions.
    pub const ARTIFACTS: OutputSpec = out(
        "artifacts",
        STRINGS,
        "paths of the captured artifacts in the evidence bundle",
    );
}

// ---- the reference documentation ------------------------------------------------------------

/// The catalog's part of an action's section in `docs/playbook-reference.md` (from its heading
/// to its **Undo** line; hand-written notes follow it there), derived from the declaration as
/// `irr actions` is. A test keeps the document equal to it (`IRR_BLESS_DOCS=1` rewrites it).
pub fn reference_markdown(a: &ActionSpec) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let mut summary = a.summary.to_owned();
    if let Some(first) = summary.get(..1) {
        summary.replace_range(..1, &first.to_uppercase());
    }
    let _ = writeln!(s, "### `{}`\n\n{summary}.\n", a.name);
    if a.params.is_empty() {
        s.push_str("Parameters: none.\n\n");
    } else {
        s.push_str("| parameter | type | required | default | description |\n");
        s.push_str("| --- | --- | --- | --- | --- |\n");
        for p in a.params {
            let default = p.default.map(|d| format!("`{d}`")).unwrap_or_default();
            let _ = writeln!(
                s,
                "| `{}` | {} | {} | {default} | {} |",
                p.name,
                p.ty.value_type(),
                if p.required { "yes" } else { "no" },
                p.description
            );
        }
        s.push('\n');
    }
    for group in a.exactly_one_of {
        let names: Vec<String> = group.iter().map(|n| format!("`{n}`")).collect();
        let _ = writeln!(s, "Exactly one of: {}.\n", names.join(", "));
    }
    for group in a.at_least_one_of {
        let names: Vec<String> = group.iter().map(|n| format!("`{n}`")).collect();
        let _ = writeln!(s, "At least one of: {}.\n", names.join(", "));
    }
    if a.outputs.is_empty() {
        s.push_str("Outputs: none.\n\n");
    } else {
        s.push_str("| output | type | description |\n| --- | --- | --- |\n");
        for o in a.outputs {
            let _ = writeln!(
                s,
                "| `{}` | {} | {} |",
                o.name,
                o.ty.value_type(),
                o.description
            );
        }
        s.push('\n');
    }
    let list = |items: Vec<&str>| {
        if items.is_empty() {
            "none".to_owned()
        } else {
            let quoted: Vec<String> = items.iter().map(|i| format!("`{i}`")).collect();
            quoted.join(", ")
        }
    };
    let _ = writeln!(s, "- **API calls:** {}", list(a.api_calls.to_vec()));
    let iam: Vec<&str> = a.permissions.iter().map(|p| p.action).collect();
    let _ = writeln!(s, "- **IAM actions:** {}", list(iam));
    let yes_no = if a.mutating { "yes" } else { "no" };
    let _ = writeln!(s, "- **Changes AWS:** {yes_no}");
    let _ = writeln!(s, "- **Idempotency:** {}", a.idempotency);
    let _ = writeln!(s, "- **Undo:** {}", a.undo.unwrap_or("cannot be undone"));
    s
}

/// The overview table of `docs/playbook-reference.md`'s action catalog.
pub fn reference_overview() -> String {
    let mut s = String::from("| action | changes AWS | undo |\n| --- | --- | --- |\n");
    for a in all() {
        let anchor: String = a.name.chars().filter(|c| *c != '.').collect();
        let undo = match a.undo {
            None => "—".to_owned(),
            Some(u) if find(u).is_some() => format!("`{u}`"),
            Some(_) => "see below".to_owned(),
        };
        let yes_no = if a.mutating { "yes" } else { "no" };
        s.push_str(&format!(
            "| [`{}`](#{anchor}) | {yes_no} | {undo} |\n",
            a.name
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_params_declared_once() {
        let mut names = names();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(n, names.len());
        for a in all() {
            let mut p: Vec<_> = a.params.iter().map(|p| p.name).collect();
            p.sort_unstable();
            let n = p.len();
            p.dedup();
            assert_eq!(n, p.len(), "{}", a.name);
            for group in a.exactly_one_of.iter().chain(a.at_least_one_of) {
                for name in *group {
                    assert!(a.param(name).is_some(), "{}: {name}", a.name);
                }
            }
            for perm in a.permissions {
                assert!(perm.action.contains(':'), "{}", perm.action);
                if let Some(p) = perm.when_param {
                    assert!(a.param(p).is_some(), "{}: {p}", a.name);
                }
            }
            assert!(
                !a.mutating
                    || a.permissions.iter().any(|p| !p.action.contains(":Describe")
                        && !p.action.contains(":Get")
                        && !p.action.contains(":List"))
                    || a.name == "control.approve",
                "{}",
                a.name
            );
        }
    }

    #[test]
    fn the_spec_minimum_is_present() {
        for name in [
            "iam.grant_responder_access",
            "iam.revoke_responder_access",
            "iam.capture_principal",
            "iam.deactivate_access_key",
            "iam.revoke_sessions",
            "ec2.capture_instance_metadata",
            "ec2.protect_instance",
            "ec2.snapshot_volumes",
            "ec2.isolate_instance",
            "ec2.release_instance",
            "ec2.tag_resources",
            "evidence.capture",
            "cloudformation.deploy_stack",
            "cloudformation.delete_stack",
            "s3.capture_bucket_config",
            "s3.block_public_access",
            "control.approve",
        ] {
            assert!(find(name).is_some(), "{name}");
        }
    }

    /// A parameter struct as an action declares one.
    #[allow(dead_code)]
    #[derive(serde::Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        /// the instance
        #[schemars(extend("x-irr-type" = "instance_id"))]
        instance_id: String,
        /// who may assume it,
        /// over two lines
        #[schemars(extend("x-irr-type" = "arn"))]
        principals: Vec<String>,
        /// how long
        #[schemars(extend("x-irr-type" = "duration", "default" = "4h"))]
        duration: Option<String>,
        /// wait
        #[schemars(extend("default" = true))]
        wait: Option<bool>,
        /// per GiB
        #[schemars(extend("default" = 60))]
        per_gib: Option<u64>,
        /// tags
        tags: std::collections::BTreeMap<String, String>,
        /// stack tags
        #[schemars(extend("x-irr-type" = "string"))]
        stack_tags: Option<serde_json::Map<String, serde_json::Value>>,
        /// anything
        parameters: Option<serde_json::Map<String, serde_json::Value>>,
        /// a policy
        #[schemars(extend("x-irr-type" = "policy_document"))]
        policy: Option<serde_json::Value>,
        /// a value
        content: Option<serde_json::Value>,
    }

    #[test]
    fn parameters_are_derived_from_the_struct() {
        let params = params_of::<Sample>();
        let got: Vec<_> = params
            .iter()
            .map(|p| (p.name, p.ty, p.required, p.default, p.description))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "instance_id",
                    TypeSpec::InstanceId,
                    true,
                    None,
                    "the instance"
                ),
                (
                    "principals",
                    TypeSpec::List(&TypeSpec::Arn),
                    true,
                    None,
                    "who may assume it, over two lines"
                ),
                (
                    "duration",
                    TypeSpec::Duration,
                    false,
                    Some("4h"),
                    "how long"
                ),
                ("wait", TypeSpec::Boolean, false, Some("true"), "wait"),
                ("per_gib", TypeSpec::Integer, false, Some("60"), "per GiB"),
                ("tags", TypeSpec::Map(&TypeSpec::String), true, None, "tags"),
                (
                    "stack_tags",
                    TypeSpec::Map(&TypeSpec::String),
                    false,
                    None,
                    "stack tags"
                ),
                (
                    "parameters",
                    TypeSpec::Map(&TypeSpec::Any),
                    false,
                    None,
                    "anything"
                ),
                ("policy", TypeSpec::PolicyDocument, false, None, "a policy"),
                ("content", TypeSpec::Any, false, None, "a value"),
            ]
        );
    }

    #[test]
    fn every_parameter_and_output_is_described() {
        for a in all() {
            assert!(!a.summary.is_empty(), "{}", a.name);
            for p in a.params {
                assert!(!p.description.is_empty(), "{}: {}", a.name, p.name);
            }
            for o in a.outputs {
                assert!(!o.description.is_empty(), "{}: {}", a.name, o.name);
            }
        }
    }

    #[test]
    fn the_registry_and_dispatch_agree() {
        for r in crate::actions::REGISTRY {
            assert_eq!(
                crate::actions::ACTIONS.contains(&r.name),
                !r.run_by_executor,
                "{}",
                r.name
            );
        }
        assert_eq!(
            names(),
            crate::actions::REGISTRY
                .iter()
                .map(|r| r.name)
                .collect::<Vec<_>>()
        );
    }
}
