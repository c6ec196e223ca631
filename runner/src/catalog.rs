//! The action catalog: every action declared once, as data.
//!
//! The validator checks `with` against the parameters declared here, `irr plan` lists the API
//! calls and IAM actions, `irr policy` builds the least-privilege policy from the permissions,
//! `irr schema` and `irr actions` print them, and the executor's implementations
//! (`crate::actions`) take exactly these parameters and return exactly these outputs.

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

/// One action of the catalog.
#[derive(Debug)]
pub struct ActionSpec {
    /// e.g. `ec2.snapshot_volumes`.
    pub name: &'static str,
    /// One line: what it does.
    pub summary: &'static str,
    /// Parameters.
    pub params: &'static [ParamSpec],
    /// Groups of parameters of which exactly one must be given.
    pub exactly_one_of: &'static [&'static [&'static str]],
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

impl ActionSpec {
    /// The parameter named `name`.
    pub fn param(&self, name: &str) -> Option<&'static ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }

    /// The output named `name`.
    pub fn output(&self, name: &str) -> Option<&'static OutputSpec> {
        self.outputs.iter().find(|o| o.name == name)
    }
}

/// Every action.
pub fn all() -> &'static [ActionSpec] {
    CATALOG
}

/// The action named `name`.
pub fn find(name: &str) -> Option<&'static ActionSpec> {
    CATALOG.iter().find(|a| a.name == name)
}

/// The names of all actions.
pub fn names() -> Vec<&'static str> {
    CATALOG.iter().map(|a| a.name).collect()
}

/// IAM actions every run needs besides its steps': who am I (for the evidence's collector).
pub const RUN_PERMISSIONS: &[Permission] = &[perm("sts:GetCallerIdentity", ANY)];

/// IAM actions needed to write evidence to an S3 location (`{bucket}` and `{prefix}`).
pub const S3_EVIDENCE_PERMISSIONS: &[Permission] = &[
    perm(
        "s3:GetBucketObjectLockConfiguration",
        &["arn:aws:s3:::{bucket}"],
    ),
    perm("s3:GetBucketVersioning", &["arn:aws:s3:::{bucket}"]),
    perm("s3:GetEncryptionConfiguration", &["arn:aws:s3:::{bucket}"]),
    perm("s3:ListBucket", &["arn:aws:s3:::{bucket}"]),
    perm("s3:ListBucketVersions", &["arn:aws:s3:::{bucket}"]),
    perm("s3:PutObject", &["arn:aws:s3:::{bucket}/{prefix}*"]),
    perm(
        "s3:PutObjectRetention",
        &["arn:aws:s3:::{bucket}/{prefix}*"],
    ),
    perm("s3:GetObject", &["arn:aws:s3:::{bucket}/{prefix}*"]),
    perm("s3:GetObjectVersion", &["arn:aws:s3:::{bucket}/{prefix}*"]),
];

const ANY: &[&str] = &["*"];
const INSTANCE: &[&str] = &["arn:aws:ec2:{region}:{account}:instance/{instance_id}"];
const ROLE: &[&str] = &["arn:aws:iam::{account}:role/{role_name}"];
const USER: &[&str] = &["arn:aws:iam::{account}:user/{user_name}"];
const BUCKET: &[&str] = &["arn:aws:s3:::{bucket}"];
const INSTANCE_PROFILE: &[&str] = &["arn:aws:iam::{account}:instance-profile/*"];
/// Customer managed policies of the account and AWS managed ones (`arn:aws:iam::aws:policy/..`).
const MANAGED_POLICY: &[&str] = &[
    "arn:aws:iam::{account}:policy/*",
    "arn:aws:iam::aws:policy/*",
];
const AUTOSCALING_GROUP: &[&str] =
    &["arn:aws:autoscaling:{region}:{account}:autoScalingGroup:*:autoScalingGroupName/*"];
const STACK: &[&str] = &["arn:aws:cloudformation:{region}:{account}:stack/{stack_name}/*"];

const fn perm(action: &'static str, resources: &'static [&'static str]) -> Permission {
    Permission {
        action,
        resources,
        when_param: None,
        passed_to: None,
    }
}

/// `iam:PassRole` on `resources`, only to `service` (e.g. `ec2.amazonaws.com`).
const fn pass_role_to(resources: &'static [&'static str], service: &'static str) -> Permission {
    Permission {
        action: "iam:PassRole",
        resources,
        when_param: None,
        passed_to: Some(service),
    }
}

const fn perm_if(
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

const fn req(name: &'static str, ty: TypeSpec, description: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        ty,
        required: true,
        default: None,
        description,
    }
}

const fn opt(
    name: &'static str,
    ty: TypeSpec,
    default: Option<&'static str>,
    description: &'static str,
) -> ParamSpec {
    ParamSpec {
        name,
        ty,
        required: false,
        default,
        description,
    }
}

const fn out(name: &'static str, ty: TypeSpec, description: &'static str) -> OutputSpec {
    OutputSpec {
        name,
        ty,
        description,
    }
}

const STRINGS: TypeSpec = TypeSpec::List(&TypeSpec::String);
const ARNS: TypeSpec = TypeSpec::List(&TypeSpec::Arn);
const STRING_MAP: TypeSpec = TypeSpec::Map(&TypeSpec::String);
const ANY_MAP: TypeSpec = TypeSpec::Map(&TypeSpec::Any);
const ARTIFACTS: OutputSpec = out(
    "artifacts",
    STRINGS,
    "paths of the captured artifacts in the evidence bundle",
);
const INSTANCE_ID: ParamSpec = req("instance_id", TypeSpec::InstanceId, "the instance");

static CATALOG: &[ActionSpec] = &[
    ActionSpec {
        name: "iam.grant_responder_access",
        summary: "create (or reuse) a time-bounded, MFA-guarded responder role trusted by the principals, tagged with the case",
        params: &[
            req("principals", ARNS, "who may assume the role (an empty list trusts the account itself, still MFA-guarded)"),
            opt("duration", TypeSpec::Duration, Some("4h"), "how long the role can be assumed; the trust policy expires after it (aws:CurrentTime)"),
            opt("require_mfa", TypeSpec::Boolean, Some("true"), "require aws:MultiFactorAuthPresent"),
            opt("role_name", TypeSpec::String, Some("irr-responder-{{case.id}}"), "name of the role"),
            opt("policy", TypeSpec::PolicyDocument, None, "the role's permissions; default: built-in read-and-contain responder policy"),
        ],
        exactly_one_of: &[],
        outputs: &[
            out("role_arn", TypeSpec::Arn, "the responder role's ARN"),
            out("role_name", TypeSpec::String, "the responder role's name"),
            out("expires_at", TypeSpec::String, "RFC 3339 time after which the role can no longer be assumed"),
        ],
        api_calls: &["sts:GetCallerIdentity", "iam:GetRole", "iam:CreateRole", "iam:UpdateAssumeRolePolicy", "iam:UpdateRole", "iam:TagRole", "iam:PutRolePolicy"],
        permissions: &[
            perm("sts:GetCallerIdentity", ANY),
            perm("iam:GetRole", ROLE),
            perm("iam:CreateRole", ROLE),
            perm("iam:UpdateAssumeRolePolicy", ROLE),
            // A reused role gets its session length brought up to date.
            perm("iam:UpdateRole", ROLE),
            perm("iam:PutRolePolicy", ROLE),
            perm("iam:TagRole", ROLE),
        ],
        mutating: true,
        idempotency: "finds the role by name and case tag and reuses it (its trust policy is brought up to date); a concurrent creation (EntityAlreadyExists) is reused too",
        undo: Some("iam.revoke_responder_access"),
    },
    ActionSpec {
        name: "iam.revoke_responder_access",
        summary: "remove the responder role's policies and trust, and delete it",
        params: &[req("role_name", TypeSpec::String, "the responder role")],
        exactly_one_of: &[],
        outputs: &[],
        api_calls: &["iam:GetRole", "iam:ListRolePolicies", "iam:DeleteRolePolicy", "iam:ListAttachedRolePolicies", "iam:DetachRolePolicy", "iam:ListInstanceProfilesForRole", "iam:RemoveRoleFromInstanceProfile", "iam:DeleteRole"],
        permissions: &[
            perm("iam:GetRole", ROLE),
            perm("iam:ListRolePolicies", ROLE),
            perm("iam:DeleteRolePolicy", ROLE),
            perm("iam:ListAttachedRolePolicies", ROLE),
            perm("iam:DetachRolePolicy", ROLE),
            perm("iam:ListInstanceProfilesForRole", ROLE),
            perm("iam:RemoveRoleFromInstanceProfile", &["arn:aws:iam::{account}:instance-profile/*", "arn:aws:iam::{account}:role/{role_name}"]),
            perm("iam:DeleteRole", ROLE),
        ],
        mutating: true,
        idempotency: "a role already gone counts as revoked",
        undo: None,
    },
    ActionSpec {
        name: "iam.capture_principal",
        summary: "record a user's or role's policies, access keys (never secrets), groups and last use",
        params: &[
            opt("user_name", TypeSpec::String, None, "the IAM user"),
            opt("role_name", TypeSpec::String, None, "the IAM role"),
        ],
        exactly_one_of: &[&["user_name", "role_name"]],
        outputs: &[ARTIFACTS],
        api_calls: &["iam:GetUser", "iam:ListUserPolicies", "iam:GetUserPolicy", "iam:ListAttachedUserPolicies", "iam:GetPolicy", "iam:GetPolicyVersion", "iam:ListGroupsForUser", "iam:ListAccessKeys", "iam:GetAccessKeyLastUsed", "iam:GetRole", "iam:ListRolePolicies", "iam:GetRolePolicy", "iam:ListAttachedRolePolicies", "iam:ListInstanceProfilesForRole"],
        permissions: &[
            perm_if("user_name", "iam:GetUser", USER),
            perm_if("user_name", "iam:ListUserPolicies", USER),
            perm_if("user_name", "iam:GetUserPolicy", USER),
            perm_if("user_name", "iam:ListAttachedUserPolicies", USER),
            perm_if("user_name", "iam:ListAccessKeys", USER),
            perm_if("user_name", "iam:GetAccessKeyLastUsed", USER),
            perm_if("user_name", "iam:ListGroupsForUser", USER),
            perm_if("role_name", "iam:GetRole", ROLE),
            perm_if("role_name", "iam:ListRolePolicies", ROLE),
            perm_if("role_name", "iam:GetRolePolicy", ROLE),
            perm_if("role_name", "iam:ListAttachedRolePolicies", ROLE),
            perm_if("role_name", "iam:ListInstanceProfilesForRole", ROLE),
            // The documents of attached managed policies (customer or AWS managed).
            perm("iam:GetPolicy", MANAGED_POLICY),
            perm("iam:GetPolicyVersion", MANAGED_POLICY),
        ],
        mutating: false,
        idempotency: "read-only",
        undo: None,
    },
    ActionSpec {
        name: "iam.deactivate_access_key",
        summary: "set an access key inactive",
        params: &[
            req("user_name", TypeSpec::String, "the key's user"),
            req("access_key_id", TypeSpec::AccessKeyId, "the key"),
        ],
        exactly_one_of: &[],
        outputs: &[out("previous_status", TypeSpec::String, "Active or Inactive, before the change")],
        api_calls: &["iam:ListAccessKeys", "iam:UpdateAccessKey"],
        permissions: &[perm("iam:ListAccessKeys", USER), perm("iam:UpdateAccessKey", USER)],
        mutating: true,
        idempotency: "an inactive key stays inactive",
        undo: Some("iam:UpdateAccessKey with Status=Active (by hand, once the key is known safe)"),
    },
    ActionSpec {
        name: "iam.revoke_sessions",
        summary: "deny everything to sessions issued before now (inline Deny with aws:TokenIssueTime)",
        params: &[
            opt("user_name", TypeSpec::String, None, "the IAM user"),
            opt("role_name", TypeSpec::String, None, "the IAM role (not a service-linked role)"),
        ],
        exactly_one_of: &[&["user_name", "role_name"]],
        outputs: &[out("revoked_before", TypeSpec::String, "RFC 3339 time; sessions issued before it are denied")],
        api_calls: &["iam:GetUserPolicy", "iam:GetUser", "iam:PutUserPolicy", "iam:GetRole", "iam:GetRolePolicy", "iam:PutRolePolicy"],
        permissions: &[
            // The policy already there is recorded first; GetUser tells "no such user" from
            // "no such policy".
            perm_if("user_name", "iam:GetUserPolicy", USER),
            perm_if("user_name", "iam:GetUser", USER),
            perm_if("user_name", "iam:PutUserPolicy", USER),
            perm_if("role_name", "iam:GetRole", ROLE),
            perm_if("role_name", "iam:GetRolePolicy", ROLE),
            perm_if("role_name", "iam:PutRolePolicy", ROLE),
        ],
        mutating: true,
        idempotency: "rewrites the one inline policy irr-revoke-sessions",
        undo: Some("delete the inline policy irr-revoke-sessions"),
    },
    ActionSpec {
        name: "ec2.capture_instance_metadata",
        summary: "record the instance, its volumes, network interfaces, security groups with rules, instance profile, tags and console output",
        params: &[INSTANCE_ID],
        exactly_one_of: &[],
        outputs: &[ARTIFACTS],
        api_calls: &["ec2:DescribeInstances", "ec2:DescribeVolumes", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSecurityGroups", "ec2:DescribeIamInstanceProfileAssociations", "iam:GetInstanceProfile", "autoscaling:DescribeAutoScalingInstances", "ec2:GetConsoleOutput"],
        permissions: &[
            perm("ec2:DescribeInstances", ANY),
            perm("ec2:DescribeVolumes", ANY),
            perm("ec2:DescribeNetworkInterfaces", ANY),
            perm("ec2:DescribeSecurityGroups", ANY),
            perm("ec2:DescribeIamInstanceProfileAssociations", ANY),
            // The profile's roles; a denial is recorded in the artifact, not fatal.
            perm("iam:GetInstanceProfile", INSTANCE_PROFILE),
            perm("autoscaling:DescribeAutoScalingInstances", ANY),
            // A denial is recorded in console-output.txt, not fatal.
            perm("ec2:GetConsoleOutput", INSTANCE),
        ],
        mutating: false,
        idempotency: "read-only",
        undo: None,
    },
    ActionSpec {
        name: "ec2.protect_instance",
        summary: "termination protection on, shutdown behaviour stop, DeleteOnTermination off on every volume",
        params: &[INSTANCE_ID],
        exactly_one_of: &[],
        outputs: &[out("previous", ANY_MAP, "the settings before the change")],
        api_calls: &["ec2:DescribeInstances", "ec2:DescribeInstanceAttribute", "ec2:ModifyInstanceAttribute"],
        permissions: &[
            perm("ec2:DescribeInstances", ANY),
            perm("ec2:DescribeInstanceAttribute", ANY),
            perm("ec2:ModifyInstanceAttribute", INSTANCE),
        ],
        mutating: true,
        idempotency: "setting a value already set changes nothing",
        undo: Some("ec2:ModifyInstanceAttribute back to the recorded previous values"),
    },
    ActionSpec {
        name: "ec2.snapshot_volumes",
        summary: "snapshot every attached volume concurrently, tag with the case, wait until completed",
        params: &[
            INSTANCE_ID,
            opt("wait", TypeSpec::Boolean, Some("true"), "wait until every snapshot is completed"),
            opt("wait_seconds_per_gib", TypeSpec::Integer, Some("60"), "wait budget per GiB of volume, on top of 10 minutes"),
        ],
        exactly_one_of: &[],
        outputs: &[
            out("snapshot_ids", STRINGS, "one snapshot per volume, in device order"),
            out("volumes", STRING_MAP, "volume id -> snapshot id"),
        ],
        api_calls: &["ec2:DescribeInstances", "ec2:DescribeVolumes", "ec2:DescribeSnapshots", "ec2:CreateSnapshot"],
        permissions: &[
            perm("ec2:DescribeInstances", ANY),
            perm("ec2:DescribeVolumes", ANY),
            perm("ec2:DescribeSnapshots", ANY),
            perm("ec2:CreateSnapshot", &["arn:aws:ec2:{region}:{account}:volume/*", "arn:aws:ec2:{region}::snapshot/*"]),
            // Tags are set on creation (TagSpecifications), which needs ec2:CreateTags.
            perm("ec2:CreateTags", &["arn:aws:ec2:{region}::snapshot/*"]),
        ],
        mutating: true,
        idempotency: "an existing snapshot tagged with the case and the volume is reused",
        undo: None,
    },
    ActionSpec {
        name: "ec2.isolate_instance",
        summary: "move every network interface to an allow-all group, then to an isolation group with no rules; detach the instance profile",
        params: &[
            INSTANCE_ID,
            opt("allow_cidr", TypeSpec::Cidr, None, "forensic access: ingress on tcp/22 from this block only"),
            opt("detach_profile", TypeSpec::Boolean, Some("true"), "detach the instance profile"),
            opt("leave_autoscaling", TypeSpec::Boolean, Some("true"), "detach the instance from its Auto Scaling group first, so it is not replaced (and terminated) as unhealthy"),
            opt("decrement_desired_capacity", TypeSpec::Boolean, Some("false"), "when leaving Auto Scaling, lower the group's desired capacity instead of letting it launch a replacement"),
        ],
        exactly_one_of: &[],
        outputs: &[
            out("isolation_group_id", TypeSpec::String, "the security group with no rules now on every interface"),
            out("original_groups", TypeSpec::Map(&STRINGS), "interface id -> its groups before isolation"),
            out("allow_all_group_id", TypeSpec::String, "the allow-all group used for the first step of the swap"),
        ],
        api_calls: &["ec2:DescribeInstances", "ec2:DescribeNetworkInterfaces", "ec2:DescribeIamInstanceProfileAssociations", "autoscaling:DescribeAutoScalingInstances", "ec2:DescribeSecurityGroups", "ec2:CreateTags", "autoscaling:DetachInstances", "ec2:CreateSecurityGroup", "ec2:RevokeSecurityGroupEgress", "ec2:RevokeSecurityGroupIngress", "ec2:AuthorizeSecurityGroupIngress", "ec2:AuthorizeSecurityGroupEgress", "ec2:ModifyNetworkInterfaceAttribute", "ec2:DisassociateIamInstanceProfile"],
        permissions: &[
            perm("ec2:DescribeInstances", ANY),
            perm("ec2:DescribeNetworkInterfaces", ANY),
            perm("ec2:DescribeSecurityGroups", ANY),
            perm("ec2:DescribeIamInstanceProfileAssociations", ANY),
            perm("autoscaling:DescribeAutoScalingInstances", ANY),
            // Only for an instance in an Auto Scaling group (taken out before it is isolated).
            perm("autoscaling:DetachInstances", AUTOSCALING_GROUP),
            perm("ec2:CreateSecurityGroup", &["arn:aws:ec2:{region}:{account}:vpc/*", "arn:aws:ec2:{region}:{account}:security-group/*"]),
            perm("ec2:AuthorizeSecurityGroupIngress", &["arn:aws:ec2:{region}:{account}:security-group/*"]),
            perm("ec2:AuthorizeSecurityGroupEgress", &["arn:aws:ec2:{region}:{account}:security-group/*"]),
            perm("ec2:RevokeSecurityGroupEgress", &["arn:aws:ec2:{region}:{account}:security-group/*"]),
            // Only when a reused isolation group carries inbound rules it should not have.
            perm("ec2:RevokeSecurityGroupIngress", &["arn:aws:ec2:{region}:{account}:security-group/*"]),
            perm("ec2:CreateTags", &["arn:aws:ec2:{region}:{account}:security-group/*", "arn:aws:ec2:{region}:{account}:network-interface/*", "arn:aws:ec2:{region}:{account}:instance/{instance_id}"]),
            perm("ec2:ModifyNetworkInterfaceAttribute", &["arn:aws:ec2:{region}:{account}:network-interface/*", "arn:aws:ec2:{region}:{account}:security-group/*"]),
            perm("ec2:DisassociateIamInstanceProfile", INSTANCE),
        ],
        mutating: true,
        idempotency: "groups are found by case tag and reused; interfaces already isolated are left; the original groups are recorded once",
        undo: Some("ec2.release_instance"),
    },
    ActionSpec {
        name: "ec2.release_instance",
        summary: "restore the recorded security groups on every interface and the instance profile (drills, false positives)",
        params: &[INSTANCE_ID],
        exactly_one_of: &[],
        outputs: &[],
        api_calls: &["ec2:DescribeInstances", "ec2:DescribeNetworkInterfaces", "ec2:DescribeIamInstanceProfileAssociations", "ec2:ModifyNetworkInterfaceAttribute", "ec2:DeleteTags", "ec2:AssociateIamInstanceProfile", "autoscaling:DescribeAutoScalingInstances", "autoscaling:AttachInstances"],
        permissions: &[
            perm("ec2:DescribeInstances", ANY),
            perm("ec2:DescribeNetworkInterfaces", ANY),
            perm("ec2:DescribeIamInstanceProfileAssociations", ANY),
            // Only for an instance isolate_instance took out of an Auto Scaling group.
            perm("autoscaling:DescribeAutoScalingInstances", ANY),
            perm("autoscaling:AttachInstances", AUTOSCALING_GROUP),
            perm("ec2:ModifyNetworkInterfaceAttribute", &["arn:aws:ec2:{region}:{account}:network-interface/*", "arn:aws:ec2:{region}:{account}:security-group/*"]),
            perm("ec2:AssociateIamInstanceProfile", INSTANCE),
            // Re-attaching the recorded instance profile passes its role to EC2, and only
            // to EC2.
            pass_role_to(&["arn:aws:iam::{account}:role/*"], "ec2.amazonaws.com"),
            perm("ec2:DeleteTags", &["arn:aws:ec2:{region}:{account}:network-interface/*", "arn:aws:ec2:{region}:{account}:instance/{instance_id}"]),
        ],
        mutating: true,
        idempotency: "an interface without a recorded original is left as it is",
        undo: Some("ec2.isolate_instance"),
    },
    ActionSpec {
        name: "ec2.tag_resources",
        summary: "tag EC2 resources",
        params: &[
            req("resource_ids", STRINGS, "EC2 resource ids (instances, volumes, snapshots, ...)"),
            req("tags", STRING_MAP, "tag key -> value"),
        ],
        exactly_one_of: &[],
        outputs: &[],
        api_calls: &["ec2:DescribeTags", "ec2:CreateTags"],
        permissions: &[
            // The values the keys had before are recorded.
            perm("ec2:DescribeTags", ANY),
            perm("ec2:CreateTags", &["arn:aws:ec2:{region}:{account}:*/*", "arn:aws:ec2:{region}::snapshot/*"]),
        ],
        mutating: true,
        idempotency: "tagging again sets the same values",
        undo: Some("ec2:DeleteTags"),
    },
    ActionSpec {
        name: "evidence.capture",
        summary: "store an artifact in the run's evidence, hashed while it is written",
        params: &[
            req("name", TypeSpec::String, "file name under artifacts/STEP_ID/"),
            opt("content", TypeSpec::Any, None, "a value to store (JSON, pretty-printed; a string is stored as is)"),
            opt("file", TypeSpec::String, None, "a file to store (path relative to the playbook)"),
        ],
        exactly_one_of: &[&["content", "file"]],
        outputs: &[
            out("path", TypeSpec::String, "path in the evidence bundle"),
            out("sha256", TypeSpec::String, "SHA-256 of the stored bytes"),
        ],
        api_calls: &[],
        permissions: &[],
        mutating: false,
        idempotency: "the same name in the same step replaces the artifact before sealing",
        undo: None,
    },
    ActionSpec {
        name: "cloudformation.deploy_stack",
        summary: "render a Handlebars template, create (or reuse) the case's stack, wait, report failure events and roll back",
        params: &[
            req("stack_name", TypeSpec::String, "the stack; characters outside [A-Za-z0-9-] become `-`"),
            req("template", TypeSpec::String, "path relative to the playbook; rendered with Handlebars (strict) against {case: {id}, run: {id}, params}"),
            opt("parameters", ANY_MAP, None, "stack parameters (a declared NAME or its UpperCamelCase form; lists comma-joined), also `params` for Handlebars"),
            opt("capabilities", STRINGS, None, "e.g. CAPABILITY_IAM"),
            opt("tags", STRING_MAP, None, "stack tags (irr:case and irr:run are always added)"),
            opt("timeout", TypeSpec::Duration, Some("30m"), "how long to wait for completion (also the stack's TimeoutInMinutes)"),
        ],
        exactly_one_of: &[],
        outputs: &[
            out("stack_id", TypeSpec::String, "the stack's id"),
            out("outputs", STRING_MAP, "the stack's outputs (OutputKey -> OutputValue)"),
            out("stack_name", TypeSpec::String, "the stack's name as created (sanitised)"),
            out("reused", TypeSpec::Boolean, "the case's existing stack was reused"),
        ],
        api_calls: &["cloudformation:DescribeStacks", "cloudformation:ValidateTemplate", "cloudformation:CreateStack", "cloudformation:DescribeStackResources", "cloudformation:DescribeStackEvents", "cloudformation:DeleteStack"],
        permissions: &[
            perm("cloudformation:DescribeStacks", STACK),
            // Dry runs only (CloudFormation has no DryRun).
            perm("cloudformation:ValidateTemplate", ANY),
            perm("cloudformation:CreateStack", STACK),
            perm("cloudformation:DescribeStackResources", STACK),
            perm("cloudformation:DescribeStackEvents", STACK),
            // Rolling back a failed stack, or replacing one an earlier attempt left failed.
            perm("cloudformation:DeleteStack", STACK),
            // CloudFormation creates (and on failure deletes) the template's resources with the
            // caller's credentials. These depend on the template: they cover the shipped clean
            // room (playbooks/templates/forensic-clean-room.yaml); another template needs its
            // own. The template keeps its roles and instance profile under the path /irr/.
            perm("ec2:DescribeAvailabilityZones", ANY),
            perm("ec2:CreateVpc", &["arn:aws:ec2:{region}:{account}:vpc/*"]),
            perm("ec2:ModifyVpcAttribute", &["arn:aws:ec2:{region}:{account}:vpc/*"]),
            perm("ec2:DescribeVpcs", ANY),
            perm("ec2:DescribeVpcAttribute", &["arn:aws:ec2:{region}:{account}:vpc/*"]),
            perm("ec2:DeleteVpc", &["arn:aws:ec2:{region}:{account}:vpc/*"]),
            perm("ec2:CreateSubnet", &["arn:aws:ec2:{region}:{account}:subnet/*", "arn:aws:ec2:{region}:{account}:vpc/*"]),
            perm("ec2:ModifySubnetAttribute", &["arn:aws:ec2:{region}:{account}:subnet/*"]),
            perm("ec2:DescribeSubnets", ANY),
            perm("ec2:DeleteSubnet", &["arn:aws:ec2:{region}:{account}:subnet/*"]),
            perm("ec2:CreateRouteTable", &["arn:aws:ec2:{region}:{account}:route-table/*", "arn:aws:ec2:{region}:{account}:vpc/*"]),
            perm("ec2:AssociateRouteTable", &["arn:aws:ec2:{region}:{account}:route-table/*", "arn:aws:ec2:{region}:{account}:subnet/*"]),
            perm("ec2:DescribeRouteTables", ANY),
            perm("ec2:DisassociateRouteTable", &["arn:aws:ec2:{region}:{account}:route-table/*", "arn:aws:ec2:{region}:{account}:subnet/*"]),
            perm("ec2:DeleteRouteTable", &["arn:aws:ec2:{region}:{account}:route-table/*"]),
            perm("ec2:CreateVpcEndpoint", &["arn:aws:ec2:{region}:{account}:vpc-endpoint/*", "arn:aws:ec2:{region}:{account}:vpc/*", "arn:aws:ec2:{region}:{account}:route-table/*"]),
            perm("ec2:ModifyVpcEndpoint", &["arn:aws:ec2:{region}:{account}:vpc-endpoint/*", "arn:aws:ec2:{region}:{account}:route-table/*"]),
            perm("ec2:DescribeVpcEndpoints", ANY),
            perm("ec2:DescribePrefixLists", ANY),
            perm("ec2:DeleteVpcEndpoints", &["arn:aws:ec2:{region}:{account}:vpc-endpoint/*"]),
            perm("ec2:CreateSecurityGroup", &["arn:aws:ec2:{region}:{account}:security-group/*", "arn:aws:ec2:{region}:{account}:vpc/*"]),
            perm("ec2:AuthorizeSecurityGroupEgress", &["arn:aws:ec2:{region}:{account}:security-group/*"]),
            perm("ec2:RevokeSecurityGroupEgress", &["arn:aws:ec2:{region}:{account}:security-group/*"]),
            perm("ec2:DescribeSecurityGroups", ANY),
            perm("ec2:DeleteSecurityGroup", &["arn:aws:ec2:{region}:{account}:security-group/*"]),
            perm("ec2:CreateFlowLogs", &["arn:aws:ec2:{region}:{account}:vpc-flow-log/*", "arn:aws:ec2:{region}:{account}:vpc/*"]),
            perm("ec2:DescribeFlowLogs", ANY),
            perm("ec2:DeleteFlowLogs", &["arn:aws:ec2:{region}:{account}:vpc-flow-log/*"]),
            perm("ec2:RunInstances", &["arn:aws:ec2:{region}:{account}:instance/*", "arn:aws:ec2:{region}:{account}:network-interface/*", "arn:aws:ec2:{region}:{account}:security-group/*", "arn:aws:ec2:{region}:{account}:subnet/*", "arn:aws:ec2:{region}:{account}:volume/*", "arn:aws:ec2:{region}::image/*"]),
            perm("ec2:DescribeInstances", ANY),
            perm("ec2:TerminateInstances", &["arn:aws:ec2:{region}:{account}:instance/*"]),
            perm("ec2:CreateVolume", &["arn:aws:ec2:{region}:{account}:volume/*", "arn:aws:ec2:{region}::snapshot/*"]),
            perm("ec2:DescribeVolumes", ANY),
            perm("ec2:AttachVolume", &["arn:aws:ec2:{region}:{account}:instance/*", "arn:aws:ec2:{region}:{account}:volume/*"]),
            perm("ec2:DetachVolume", &["arn:aws:ec2:{region}:{account}:instance/*", "arn:aws:ec2:{region}:{account}:volume/*"]),
            perm("ec2:DeleteVolume", &["arn:aws:ec2:{region}:{account}:volume/*"]),
            perm("ec2:CreateTags", &["arn:aws:ec2:{region}:{account}:vpc/*", "arn:aws:ec2:{region}:{account}:subnet/*", "arn:aws:ec2:{region}:{account}:route-table/*", "arn:aws:ec2:{region}:{account}:security-group/*", "arn:aws:ec2:{region}:{account}:vpc-endpoint/*", "arn:aws:ec2:{region}:{account}:vpc-flow-log/*", "arn:aws:ec2:{region}:{account}:instance/*", "arn:aws:ec2:{region}:{account}:network-interface/*", "arn:aws:ec2:{region}:{account}:volume/*"]),
            perm("iam:CreateRole", &["arn:aws:iam::{account}:role/irr/*"]),
            perm("iam:GetRole", &["arn:aws:iam::{account}:role/irr/*"]),
            perm("iam:TagRole", &["arn:aws:iam::{account}:role/irr/*"]),
            perm("iam:PutRolePolicy", &["arn:aws:iam::{account}:role/irr/*"]),
            perm("iam:GetRolePolicy", &["arn:aws:iam::{account}:role/irr/*"]),
            perm("iam:DeleteRolePolicy", &["arn:aws:iam::{account}:role/irr/*"]),
            perm("iam:DeleteRole", &["arn:aws:iam::{account}:role/irr/*"]),
            // The workstation's role to EC2, the flow logs' role to VPC flow logs.
            perm("iam:PassRole", &["arn:aws:iam::{account}:role/irr/*"]),
            perm("iam:CreateInstanceProfile", &["arn:aws:iam::{account}:instance-profile/irr/*"]),
            perm("iam:GetInstanceProfile", &["arn:aws:iam::{account}:instance-profile/irr/*"]),
            perm("iam:TagInstanceProfile", &["arn:aws:iam::{account}:instance-profile/irr/*"]),
            perm("iam:AddRoleToInstanceProfile", &["arn:aws:iam::{account}:instance-profile/irr/*"]),
            perm("iam:RemoveRoleFromInstanceProfile", &["arn:aws:iam::{account}:instance-profile/irr/*"]),
            perm("iam:DeleteInstanceProfile", &["arn:aws:iam::{account}:instance-profile/irr/*"]),
            // The flow log group (kept when the stack is deleted: DeletionPolicy Retain).
            perm("logs:CreateLogGroup", &["arn:aws:logs:{region}:{account}:log-group:*"]),
            perm("logs:PutRetentionPolicy", &["arn:aws:logs:{region}:{account}:log-group:*"]),
            perm("logs:TagResource", &["arn:aws:logs:{region}:{account}:log-group:*"]),
            perm("logs:DescribeLogGroups", &["arn:aws:logs:{region}:{account}:log-group:*"]),
            // Volumes restored from encrypted snapshots (default EBS encryption, customer keys).
            perm("kms:DescribeKey", &["arn:aws:kms:{region}:{account}:key/*"]),
            perm("kms:CreateGrant", &["arn:aws:kms:{region}:{account}:key/*"]),
            perm("kms:Decrypt", &["arn:aws:kms:{region}:{account}:key/*"]),
            perm("kms:GenerateDataKeyWithoutPlaintext", &["arn:aws:kms:{region}:{account}:key/*"]),
            perm("kms:ReEncryptFrom", &["arn:aws:kms:{region}:{account}:key/*"]),
            perm("kms:ReEncryptTo", &["arn:aws:kms:{region}:{account}:key/*"]),
        ],
        mutating: true,
        idempotency: "the case's stack of that name (irr:case tag) is reused when complete with the same parameter values; one left failed is deleted and created again; another case's stack, or the case's with other values, is refused; CreateStack carries a client request token",
        undo: Some("cloudformation.delete_stack"),
    },
    ActionSpec {
        name: "cloudformation.delete_stack",
        summary: "delete the case's stack and wait; a stack already gone counts as deleted",
        params: &[
            req("stack_name", TypeSpec::String, "the stack; characters outside [A-Za-z0-9-] become `-`"),
            opt("timeout", TypeSpec::Duration, Some("30m"), "how long to wait for the deletion"),
        ],
        exactly_one_of: &[],
        outputs: &[
            out("stack_id", TypeSpec::String, "the deleted stack's id (empty when there was none)"),
            out("deleted", TypeSpec::Boolean, "false when the stack was already gone"),
        ],
        api_calls: &["cloudformation:DescribeStacks", "cloudformation:DescribeStackResources", "cloudformation:DeleteStack", "cloudformation:DescribeStackEvents"],
        permissions: &[
            perm("cloudformation:DescribeStacks", STACK),
            perm("cloudformation:DescribeStackResources", STACK),
            perm("cloudformation:DeleteStack", STACK),
            perm("cloudformation:DescribeStackEvents", STACK),
            // CloudFormation deletes the template's resources with the caller's credentials.
            // These depend on the template: they cover the shipped clean room
            // (playbooks/templates/forensic-clean-room.yaml).
            perm("ec2:DescribeVpcs", ANY),
            perm("ec2:DeleteVpc", &["arn:aws:ec2:{region}:{account}:vpc/*"]),
            perm("ec2:DescribeSubnets", ANY),
            perm("ec2:DeleteSubnet", &["arn:aws:ec2:{region}:{account}:subnet/*"]),
            perm("ec2:DescribeRouteTables", ANY),
            perm("ec2:DisassociateRouteTable", &["arn:aws:ec2:{region}:{account}:route-table/*", "arn:aws:ec2:{region}:{account}:subnet/*"]),
            perm("ec2:DeleteRouteTable", &["arn:aws:ec2:{region}:{account}:route-table/*"]),
            perm("ec2:DescribeVpcEndpoints", ANY),
            perm("ec2:DeleteVpcEndpoints", &["arn:aws:ec2:{region}:{account}:vpc-endpoint/*"]),
            perm("ec2:DescribeSecurityGroups", ANY),
            perm("ec2:DeleteSecurityGroup", &["arn:aws:ec2:{region}:{account}:security-group/*"]),
            perm("ec2:DescribeFlowLogs", ANY),
            perm("ec2:DeleteFlowLogs", &["arn:aws:ec2:{region}:{account}:vpc-flow-log/*"]),
            perm("ec2:DescribeInstances", ANY),
            perm("ec2:TerminateInstances", &["arn:aws:ec2:{region}:{account}:instance/*"]),
            perm("ec2:DescribeVolumes", ANY),
            perm("ec2:DetachVolume", &["arn:aws:ec2:{region}:{account}:instance/*", "arn:aws:ec2:{region}:{account}:volume/*"]),
            perm("ec2:DeleteVolume", &["arn:aws:ec2:{region}:{account}:volume/*"]),
            perm("iam:GetRole", &["arn:aws:iam::{account}:role/irr/*"]),
            perm("iam:DeleteRolePolicy", &["arn:aws:iam::{account}:role/irr/*"]),
            perm("iam:DeleteRole", &["arn:aws:iam::{account}:role/irr/*"]),
            perm("iam:GetInstanceProfile", &["arn:aws:iam::{account}:instance-profile/irr/*"]),
            perm("iam:RemoveRoleFromInstanceProfile", &["arn:aws:iam::{account}:instance-profile/irr/*"]),
            perm("iam:DeleteInstanceProfile", &["arn:aws:iam::{account}:instance-profile/irr/*"]),
        ],
        mutating: true,
        idempotency: "a stack already gone counts as deleted; another case's stack is refused",
        undo: None,
    },
    ActionSpec {
        name: "s3.capture_bucket_config",
        summary: "record a bucket's policy, ACL, public access block, encryption and versioning",
        params: &[req("bucket", TypeSpec::BucketName, "the bucket")],
        exactly_one_of: &[],
        outputs: &[ARTIFACTS],
        api_calls: &["s3:GetBucketAcl", "s3:GetBucketPolicy", "s3:GetPublicAccessBlock", "s3:GetBucketEncryption", "s3:GetBucketVersioning", "s3:GetBucketOwnershipControls"],
        permissions: &[
            perm("s3:GetBucketPolicy", BUCKET),
            perm("s3:GetBucketAcl", BUCKET),
            perm("s3:GetBucketPublicAccessBlock", BUCKET),
            perm("s3:GetEncryptionConfiguration", BUCKET),
            perm("s3:GetBucketVersioning", BUCKET),
            perm("s3:GetBucketOwnershipControls", BUCKET),
        ],
        mutating: false,
        idempotency: "read-only",
        undo: None,
    },
    ActionSpec {
        name: "s3.block_public_access",
        summary: "turn on all four public access block settings of a bucket",
        params: &[req("bucket", TypeSpec::BucketName, "the bucket")],
        exactly_one_of: &[],
        outputs: &[out("previous", ANY_MAP, "the public access block before the change")],
        api_calls: &["s3:GetPublicAccessBlock", "s3:PutPublicAccessBlock"],
        permissions: &[
            perm("s3:GetBucketPublicAccessBlock", BUCKET),
            perm("s3:PutBucketPublicAccessBlock", BUCKET),
        ],
        mutating: true,
        idempotency: "setting the block again changes nothing",
        undo: Some("s3:PutPublicAccessBlock with the recorded previous settings"),
    },
    ActionSpec {
        name: "control.approve",
        summary: "stop for a human yes/no (auto-approved with --yes and in drills)",
        params: &[req("prompt", TypeSpec::String, "the question")],
        exactly_one_of: &[],
        outputs: &[out("approved_by", TypeSpec::String, "who approved")],
        api_calls: &[],
        permissions: &[],
        mutating: false,
        idempotency: "an approval is asked again on resume unless it was recorded",
        undo: None,
    },
];

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
            for group in a.exactly_one_of {
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
}
