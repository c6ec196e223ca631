//! AWS access: the standard credential chain, `--profile`, `--region`, the endpoint override
//! (the local emulator), and `--assume-role` to act in another account.
//!
//! Throttling and transient errors are retried by the SDK's standard retry mode (exponential
//! backoff with jitter, up to 8 attempts): the one retry layer for throttling. Rate limiting is
//! irr's own, per EC2 bucket (`crate::ratelimit`), not the SDK's adaptive mode, whose one
//! limiter per retry partition would let a throttled action slow every other. Waits sized to
//! the work (snapshots per GiB) and retries for eventual consistency live in the actions.

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

use crate::actions::AwsClients;

/// How to reach AWS.
#[derive(Clone, Debug, Default)]
pub struct AwsOptions {
    /// `--profile`.
    pub profile: Option<String>,
    /// `--region`.
    pub region: Option<String>,
    /// `--endpoint-url` / `AWS_ENDPOINT_URL`.
    pub endpoint_url: Option<String>,
    /// `--assume-role ARN`.
    pub assume_role: Option<String>,
    /// Fixed credentials (the local emulator in drills); `None` uses the standard chain.
    pub static_credentials: Option<(String, String)>,
}

/// Who the credentials belong to.
#[derive(Clone, Debug)]
pub struct Identity {
    /// 12-digit account.
    pub account_id: String,
    /// The caller's ARN.
    pub arn: String,
}

/// A connection to AWS.
#[derive(Clone, Debug)]
pub struct Aws {
    /// The loaded configuration.
    pub config: SdkConfig,
    /// Clients for every service the actions use.
    pub clients: AwsClients,
    /// The region in use.
    pub region: String,
}

/// Why AWS could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// No region anywhere.
    #[error("no AWS region: give --region, or set AWS_REGION or a region in the profile")]
    NoRegion,
    /// STS GetCallerIdentity failed: no or bad credentials, or no network (one line, from
    /// [`irr_forensics::awserr::describe`]).
    #[error("cannot confirm the AWS identity: {}", .0.line())]
    Identity(Box<irr_forensics::awserr::AwsFailure>),
}

/// Loads the configuration and builds the clients.
pub async fn connect(opts: &AwsOptions) -> Result<Aws, AwsError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(8));
    if let Some(p) = &opts.profile {
        loader = loader.profile_name(p);
    }
    let mut region = opts.region.clone();
    if region.is_none() && opts.endpoint_url.is_some() && std::env::var_os("AWS_REGION").is_none() {
        // An emulator does not care; us-east-1 is what moto defaults to.
        region = Some("us-east-1".to_owned());
    }
    if let Some(r) = &region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let Some(e) = &opts.endpoint_url {
        loader = loader.endpoint_url(e);
    }
    if let Some((id, secret)) = &opts.static_credentials {
        loader = loader.credentials_provider(aws_credential_types::Credentials::new(
            id,
            secret,
            None,
            None,
            "irr-static",
        ));
    }
    let mut config = loader.load().await;
    let region = config
        .region()
        .map(|r| r.to_string())
        .ok_or(AwsError::NoRegion)?;
    if let Some(arn) = &opts.assume_role {
        let provider = aws_config::sts::AssumeRoleProvider::builder(arn)
            .session_name(format!("irr-{}", std::process::id()))
            .configure(&config)
            .build()
            .await;
        config = config
            .into_builder()
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(provider),
            )
            .build();
    }
    let clients = AwsClients::from_conf(&config, opts.endpoint_url.is_some());
    Ok(Aws {
        config,
        clients,
        region,
    })
}

/// Clients that are never used: for a run whose steps make no AWS call and whose evidence
/// is local. Nothing is loaded (no region, no credential chain); a call made through them
/// would fail for lack of credentials.
pub fn offline(region: Option<&str>) -> Aws {
    let config = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.unwrap_or("none").to_owned()))
        .build();
    let clients = AwsClients::from_conf(&config, false);
    Aws {
        config,
        clients,
        region: region.unwrap_or_default().to_owned(),
    }
}

/// Whether a playbook needs AWS at all: a step whose action makes an AWS call, or evidence
/// that may go to S3 (`s3://`, or a location rendered from a template).
pub fn playbook_needs_aws(pb: &crate::model::Playbook, evidence: Option<&str>) -> bool {
    let steps = pb
        .all_steps()
        .any(|s| !s.action.api_calls.is_empty() || !s.action.permissions.is_empty());
    let location = evidence.or(pb.evidence.location.as_deref());
    let s3 = location.is_some_and(|l| l.trim_start().starts_with("s3:") || l.contains("{{"));
    steps || s3
}

impl Aws {
    /// Asks STS who we are.
    pub async fn identity(&self) -> Result<Identity, AwsError> {
        let out = self
            .clients
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| {
                AwsError::Identity(Box::new(irr_forensics::awserr::describe(
                    "sts",
                    "GetCallerIdentity",
                    &e,
                )))
            })?;
        Ok(Identity {
            account_id: out.account().unwrap_or_default().to_owned(),
            arn: out.arn().unwrap_or_default().to_owned(),
        })
    }
}
