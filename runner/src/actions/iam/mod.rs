//! IAM actions: time-bounded responder access, and containing a compromised principal.
//!
//! IAM has no `DryRun`: in a dry run these actions read and record as usual, make no mutating
//! call, and report what they would do (output `would`). IAM is eventually consistent (a role
//! just created may not be usable by the next call for a few seconds), so calls that follow a
//! creation are retried on the errors that propagation causes.

use aws_sdk_iam::types::Tag;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::catalog::decl::*;
use crate::catalog::{Declaration, TypeSpec};

use super::{
    aws_error, is_transient, read_err, retry_transient, ts, Action, ActionCtx, ActionError,
    ActionOutput, AwsResource, TAG_CASE, TAG_RUN,
};

mod contain;
mod find;
mod principal;
mod responder;
pub use contain::*;
pub use find::*;
pub use principal::*;
pub use responder::*;

/// Tag on a responder role: when its trust policy stops allowing `sts:AssumeRole`.
pub const TAG_EXPIRES_AT: &str = "irr:expires-at";
/// Name of the inline policy holding the responder's permissions.
pub const RESPONDER_POLICY_NAME: &str = "irr-responder";
/// Name of the inline deny policy `iam.revoke_sessions` puts on a principal.
pub const REVOKE_POLICY_NAME: &str = "irr-revoke-sessions";

/// Parameters of `iam.capture_principal`: exactly one of `user_name` and `role_name`.
///
/// Each field's doc comment is the parameter's description in the catalog.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrincipalParams {
    /// the IAM user
    pub user_name: Option<String>,
    /// the IAM role
    pub role_name: Option<String>,
}

enum Principal {
    User(String),
    Role(String),
}

impl Principal {
    fn from_params(
        action: &str,
        user_name: Option<String>,
        role_name: Option<String>,
    ) -> Result<Principal, ActionError> {
        match (user_name, role_name) {
            (Some(u), None) => Ok(Principal::User(u)),
            (None, Some(r)) => Ok(Principal::Role(r)),
            _ => Err(ActionError::Params(format!(
                "{action}: give exactly one of `user_name` and `role_name`"
            ))),
        }
    }
}

fn iam_tag(key: &str, value: &str) -> Result<Tag, ActionError> {
    Tag::builder()
        .key(key)
        .value(value)
        .build()
        .map_err(|e| ActionError::Params(e.to_string()))
}

/// IAM returns policy documents URL-encoded (RFC 3986); decodes and parses one.
pub fn policy_document(raw: &str) -> Value {
    let decoded = percent_decode(raw);
    serde_json::from_str(&decoded)
        .or_else(|_| serde_json::from_str(raw))
        .unwrap_or(Value::String(decoded))
}

/// RFC 3986 percent-decoding (`+` stays `+`: IAM documents are not form-encoded), by the
/// `percent-encoding` crate rather than by hand.
pub(crate) fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Parses a duration as the playbook format writes it (`crate::types::parse_duration`: the
/// one parser of the workspace), as an action's parameter error.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, ActionError> {
    crate::types::parse_duration(s).map_err(ActionError::Params)
}

/// Makes a valid IAM role name (`[\w+=,.@-]`, at most 64 characters) from any text.
pub fn sanitise_role_name(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@-_".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    cleaned.chars().take(64).collect()
}

/// The built-in responder policy: read everything an investigation needs, and the
/// containment moves of the catalog. No data-plane reads (no `s3:GetObject`), no deletions.
pub fn default_responder_policy() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "IrrInvestigate",
                "Effect": "Allow",
                "Action": [
                    "ec2:Describe*", "ec2:GetConsoleOutput", "ec2:GetConsoleScreenshot",
                    "iam:Get*", "iam:List*", "iam:GenerateCredentialReport",
                    "s3:GetBucket*", "s3:GetAccountPublicAccessBlock", "s3:ListAllMyBuckets",
                    "s3:GetEncryptionConfiguration",
                    "cloudtrail:LookupEvents", "cloudtrail:Describe*", "cloudtrail:Get*",
                    "logs:Describe*", "logs:FilterLogEvents", "logs:GetLogEvents",
                    "guardduty:Get*", "guardduty:List*",
                    "autoscaling:Describe*", "sts:GetCallerIdentity"
                ],
                "Resource": "*"
            },
            {
                "Sid": "IrrContain",
                "Effect": "Allow",
                "Action": [
                    "ec2:CreateSnapshot", "ec2:CreateSnapshots", "ec2:CreateTags",
                    "ec2:ModifyInstanceAttribute", "ec2:ModifyNetworkInterfaceAttribute",
                    "ec2:CreateSecurityGroup", "ec2:AuthorizeSecurityGroupIngress",
                    "ec2:AuthorizeSecurityGroupEgress", "ec2:RevokeSecurityGroupIngress",
                    "ec2:RevokeSecurityGroupEgress", "ec2:DisassociateIamInstanceProfile",
                    "ec2:StopInstances", "ec2:CreateNetworkAcl", "ec2:CreateNetworkAclEntry",
                    "ec2:ReplaceNetworkAclAssociation",
                    "autoscaling:DetachInstances", "autoscaling:EnterStandby",
                    "iam:UpdateAccessKey", "iam:PutUserPolicy", "iam:PutRolePolicy",
                    "s3:PutBucketPublicAccessBlock"
                ],
                "Resource": "*"
            }
        ]
    })
}

/// The responder role's trust policy: the principals may assume it until `expires_at`, with
/// MFA when `require_mfa`.
pub fn trust_policy(principals: &[String], require_mfa: bool, expires_at: &str) -> Value {
    let mut condition = serde_json::Map::new();
    if require_mfa {
        condition.insert("Bool".into(), json!({"aws:MultiFactorAuthPresent": "true"}));
    }
    condition.insert(
        "DateLessThan".into(),
        json!({"aws:CurrentTime": expires_at}),
    );
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "IrrResponderAccess",
            "Effect": "Allow",
            "Principal": {"AWS": principals},
            "Action": "sts:AssumeRole",
            "Condition": condition,
        }]
    })
}

/// A role as recorded in evidence.
fn role_json(r: &aws_sdk_iam::types::Role) -> Value {
    json!({
        "role_name": r.role_name(),
        "arn": r.arn(),
        "path": r.path(),
        "role_id": r.role_id(),
        "created": ts(Some(r.create_date())),
        "max_session_duration": r.max_session_duration(),
        "assume_role_policy": r.assume_role_policy_document().map(policy_document),
        "tags": r.tags().iter().map(|t| (t.key().to_owned(), Value::from(t.value()))).collect::<serde_json::Map<_, _>>(),
        "last_used": r.role_last_used().map(|u| json!({
            "date": ts(u.last_used_date()),
            "region": u.region(),
        })),
        "permissions_boundary": r.permissions_boundary().and_then(|b| b.permissions_boundary_arn()),
    })
}

fn role_case(r: &aws_sdk_iam::types::Role) -> Option<&str> {
    r.tags()
        .iter()
        .find(|t| t.key() == TAG_CASE)
        .map(|t| t.value())
}

async fn get_role(
    ctx: &ActionCtx,
    name: &str,
) -> Result<Option<aws_sdk_iam::types::Role>, ActionError> {
    match ctx.aws.iam.get_role().role_name(name).send().await {
        Ok(o) => Ok(o.role().cloned()),
        Err(e) if e.code() == Some("NoSuchEntity") => Ok(None),
        Err(e) => Err(aws_error("iam", "GetRole", &e)),
    }
}

/// `arn:PARTITION:iam::ACCOUNT:root` of the caller's account.
async fn account_root(ctx: &ActionCtx) -> Result<String, ActionError> {
    let me = ctx
        .aws
        .sts
        .get_caller_identity()
        .send()
        .await
        .map_err(read_err("sts", "GetCallerIdentity"))?;
    let account = me
        .account()
        .ok_or_else(|| ActionError::Target("sts:GetCallerIdentity returned no account".into()))?;
    let partition = me.arn().and_then(|a| a.split(':').nth(1)).unwrap_or("aws");
    Ok(format!("arn:{partition}:iam::{account}:root"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("4h").unwrap().as_secs(), 4 * 3600);
        assert_eq!(parse_duration("30m").unwrap().as_secs(), 1800);
        assert_eq!(parse_duration("1h30m").unwrap().as_secs(), 5400);
        assert_eq!(parse_duration("2d").unwrap().as_secs(), 2 * 86_400);
        // The playbook format's rule (`crate::types::parse_duration`): a unit is required and
        // zero is no duration.
        for bad in ["", "h", "4x", "4h3", "-1h", "900", "0s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn role_names_are_sanitised() {
        assert_eq!(
            sanitise_role_name("irr-responder-case 42/x"),
            "irr-responder-case-42-x"
        );
        assert_eq!(sanitise_role_name(&"a".repeat(80)).len(), 64);
    }

    #[test]
    fn trust_policy_requires_mfa_and_expires() {
        let t = trust_policy(
            &["arn:aws:iam::123456789012:root".into()],
            true,
            "2030-01-01T00:00:00Z",
        );
        let c = &t["Statement"][0]["Condition"];
        assert_eq!(c["Bool"]["aws:MultiFactorAuthPresent"], "true");
        assert_eq!(c["DateLessThan"]["aws:CurrentTime"], "2030-01-01T00:00:00Z");
        assert_eq!(
            t["Statement"][0]["Principal"]["AWS"][0],
            "arn:aws:iam::123456789012:root"
        );
        let t = trust_policy(&[], false, "2030-01-01T00:00:00Z");
        assert!(t["Statement"][0]["Condition"].get("Bool").is_none());
    }

    #[test]
    fn revoke_policy_denies_older_tokens() {
        let p = revoke_sessions_policy("2024-01-01T00:00:00Z");
        assert_eq!(p["Statement"][0]["Effect"], "Deny");
        assert_eq!(p["Statement"][0]["Action"], "*");
        assert_eq!(
            p["Statement"][0]["Condition"]["DateLessThan"]["aws:TokenIssueTime"],
            "2024-01-01T00:00:00Z"
        );
    }

    #[test]
    fn policy_documents_are_decoded() {
        let v = policy_document("%7B%22Version%22%3A%20%222012-10-17%22%7D");
        assert_eq!(v["Version"], "2012-10-17");
        let v = policy_document("{\"a\":1}");
        assert_eq!(v["a"], 1);
        assert_eq!(percent_decode("100%"), "100%");
        // RFC 3986: `+` is a plus sign, not a form-encoded space.
        assert_eq!(percent_decode("a+b%20c"), "a+b c");
    }

    /// The race of cloud-forensics-utils #370, which the emulator cannot stage: GetRole says
    /// there is no role, CreateRole says it exists (a parallel run made it in between). The
    /// action must reuse that role, never fail or make a second.
    #[tokio::test]
    async fn create_role_race_reuses_the_role() {
        use aws_sdk_iam::operation::create_role::CreateRoleError;
        use aws_sdk_iam::operation::get_role::{GetRoleError, GetRoleOutput};
        use aws_sdk_iam::types::error::{EntityAlreadyExistsException, NoSuchEntityException};
        use aws_sdk_iam::types::Role;
        use aws_sdk_iam::Client;
        use aws_smithy_mocks::{mock, RuleMode};
        use aws_smithy_types::error::ErrorMetadata;

        let role = || {
            Role::builder()
                .role_name("irr-responder-case-1")
                .path("/")
                .role_id("AROAEXAMPLE")
                .arn("arn:aws:iam::123456789012:role/irr-responder-case-1")
                .create_date(aws_smithy_types::DateTime::from_secs(0))
                .tags(iam_tag(TAG_CASE, "case-1").unwrap())
                .build()
                .unwrap()
        };
        let get_role = mock!(Client::get_role)
            .sequence()
            .error(|| {
                GetRoleError::NoSuchEntityException(
                    NoSuchEntityException::builder()
                        .meta(ErrorMetadata::builder().code("NoSuchEntity").build())
                        .build(),
                )
            })
            .output(move || GetRoleOutput::builder().role(role()).build())
            .build();
        let create_role = mock!(Client::create_role).then_error(|| {
            CreateRoleError::EntityAlreadyExistsException(
                EntityAlreadyExistsException::builder()
                    .meta(ErrorMetadata::builder().code("EntityAlreadyExists").build())
                    .build(),
            )
        });
        let update_trust = mock!(Client::update_assume_role_policy)
            .then_output(|| aws_sdk_iam::operation::update_assume_role_policy::UpdateAssumeRolePolicyOutput::builder().build());
        let update_role = mock!(Client::update_role).then_output(|| {
            aws_sdk_iam::operation::update_role::UpdateRoleOutput::builder().build()
        });
        let tag_role = mock!(Client::tag_role)
            .then_output(|| aws_sdk_iam::operation::tag_role::TagRoleOutput::builder().build());
        let put_policy = mock!(Client::put_role_policy).then_output(|| {
            aws_sdk_iam::operation::put_role_policy::PutRolePolicyOutput::builder().build()
        });
        let rules = [
            &get_role,
            &create_role,
            &update_trust,
            &update_role,
            &tag_role,
            &put_policy,
        ];
        let ctx = crate::actions::test_support::ctx_with_iam("case-1", RuleMode::MatchAny, &rules);

        let out = super::super::dispatch(
            "iam.grant_responder_access",
            &ctx,
            json!({"principals": ["arn:aws:iam::123456789012:user/alice"], "role_name": "irr-responder-case-1"}),
        )
        .await
        .unwrap();
        assert_eq!(
            out.outputs["role_arn"],
            "arn:aws:iam::123456789012:role/irr-responder-case-1"
        );
        assert_eq!(out.outputs["reused"], true);
        assert_eq!(create_role.num_calls(), 1);
        assert_eq!(
            update_trust.num_calls(),
            1,
            "the trust policy is reconciled"
        );
        assert_eq!(put_policy.num_calls(), 1);
    }

    /// A role of another case is refused, and nothing is changed.
    #[tokio::test]
    async fn role_of_another_case_is_refused() {
        use aws_sdk_iam::operation::get_role::GetRoleOutput;
        use aws_sdk_iam::types::Role;
        use aws_sdk_iam::Client;
        use aws_smithy_mocks::{mock, RuleMode};

        let get_role = mock!(Client::get_role).then_output(|| {
            GetRoleOutput::builder()
                .role(
                    Role::builder()
                        .role_name("shared")
                        .path("/")
                        .role_id("AROAEXAMPLE")
                        .arn("arn:aws:iam::123456789012:role/shared")
                        .create_date(aws_smithy_types::DateTime::from_secs(0))
                        .tags(iam_tag(TAG_CASE, "other-case").unwrap())
                        .build()
                        .unwrap(),
                )
                .build()
        });
        let ctx =
            crate::actions::test_support::ctx_with_iam("case-1", RuleMode::MatchAny, &[&get_role]);
        let e = super::super::dispatch(
            "iam.revoke_responder_access",
            &ctx,
            json!({"role_name": "shared"}),
        )
        .await
        .unwrap_err();
        assert_eq!(e.code(), "target");
        assert!(e.to_string().contains("other-case"), "{e}");
    }
}
