//! One readable line per AWS failure.
//!
//! Every SDK error that reaches a user goes through [`describe`]: it names the service, the
//! operation, the error code and AWS's message, and says what to do, in one line with no Rust
//! debug output (no `Error { .. }`, no `DispatchFailure(..)`). The full chain of causes (the
//! SDK's credential-provider chain, connector errors) is kept in [`AwsFailure::detail`] for the
//! journal and `--verbose`.
//!
//! It lives in this crate (not the runner) because the evidence stores format S3 errors too
//! and the runner depends on this crate, not the other way round.

use std::error::Error as StdError;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_s3::error::{ConnectorError, DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::http::Response as HttpResponse;

/// Largest error body searched for a code and message the SDK could not read.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The body of the HTTP answer behind an error, when the SDK kept it in memory (it does for
/// service errors, whose body it has read to parse them).
pub trait RawBody {
    /// The body's bytes, if any.
    fn raw_body(&self) -> Option<&[u8]>;
}

impl<E> RawBody for SdkError<E, HttpResponse> {
    fn raw_body(&self) -> Option<&[u8]> {
        self.raw_response().and_then(|r| r.body().bytes())
    }
}

/// The `Code` and `Message` of an XML error body the SDK could not parse: moto answers IAM,
/// STS and Auto Scaling errors as `<ErrorResponse><Errors><Error>...` (the EC2 shape) where
/// the query protocol, and the SDK, expect `<ErrorResponse><Error>...`. Only the first
/// 64 KiB are searched; entities are decoded; nothing else of the body is used.
pub fn code_and_message_of_body(body: &[u8]) -> Option<(String, Option<String>)> {
    let body = std::str::from_utf8(&body[..body.len().min(MAX_ERROR_BODY)]).ok()?;
    let element = |name: &str| -> Option<String> {
        let open = format!("<{name}>");
        let start = body.find(&open)? + open.len();
        let len = body[start..].find(&format!("</{name}>"))?;
        let text = body[start..start + len]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&");
        Some(one_line(text.trim()))
    };
    let code = element("Code").filter(|c| {
        !c.is_empty()
            && c.len() <= 128
            && c.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '.' || ch == '_')
    })?;
    Some((code, element("Message").filter(|m| !m.is_empty())))
}

/// What kind of failure it was, for callers that act on it (exit codes, "unverifiable").
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The credential chain found no credentials (or could not load them).
    NoCredentials,
    /// AWS (or the endpoint) could not be reached: connection refused, DNS, TLS.
    Unreachable,
    /// The call timed out.
    Timeout,
    /// AWS refused the caller: access denied, unauthorized operation.
    Denied,
    /// The credentials are expired or not valid.
    BadCredentials,
    /// AWS throttled the call (after the SDK's retries).
    Throttled,
    /// Any other error AWS answered with.
    Service,
    /// The request could not be built or the answer could not be read.
    Other,
}

/// One AWS failure, described.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AwsFailure {
    /// e.g. `ec2`.
    pub service: String,
    /// e.g. `DescribeInstances`.
    pub operation: String,
    /// What kind of failure.
    pub kind: FailureKind,
    /// AWS's error code (`AccessDenied`, ...), when AWS answered.
    pub code: Option<String>,
    /// AWS's message, or what went wrong on the way, in one line.
    pub message: String,
    /// The request id, when AWS answered.
    pub request_id: Option<String>,
    /// What to do about it.
    pub hint: String,
    /// The full chain of causes, one line (for the journal and `--verbose`).
    pub detail: String,
}

static VERBOSE: AtomicBool = AtomicBool::new(false);

/// `--verbose`: [`log_detail`] prints the full detail of each failure.
pub fn set_verbose(on: bool) {
    VERBOSE.store(on, Ordering::Relaxed);
}

/// Whether `--verbose` was given.
pub fn verbose() -> bool {
    VERBOSE.load(Ordering::Relaxed)
}

/// With `--verbose`, prints the full chain of causes to stderr (one line).
pub fn log_detail(f: &AwsFailure) {
    if verbose() && !f.detail.is_empty() {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr().lock(),
            "detail: {}:{}: {}",
            f.service,
            f.operation,
            f.detail
        );
    }
}

/// Collapses any text to one line without braces: newlines become `; `, and `{`/`}` (which
/// only Rust debug output puts in an AWS error) become parentheses.
pub fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for part in s.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str(part);
    }
    out.replace('{', "(").replace('}', ")")
}

impl AwsFailure {
    /// The line a user reads: `service:Operation failed: Code: message; what to do`.
    pub fn line(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for AwsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{} failed: ", self.service, self.operation)?;
        match &self.code {
            Some(c) => write!(f, "{c}: {}", self.message)?,
            None => f.write_str(&self.message)?,
        }
        if let Some(r) = &self.request_id {
            write!(f, " (request id {r})")?;
        }
        if !self.hint.is_empty() {
            write!(f, "; {}", self.hint)?;
        }
        Ok(())
    }
}

/// The innermost cause's text (e.g. `Connection refused (os error 111)`).
fn root_cause(e: &(dyn StdError + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

fn find<'a, T: StdError + 'static>(e: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(t) = c.downcast_ref::<T>() {
            return Some(t);
        }
        cur = c.source();
    }
    None
}

/// Describes a missing-credentials failure: where the SDK looked.
pub fn no_credentials_hint() -> String {
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".to_owned());
    format!(
        "no AWS credentials found: tried the environment (AWS_ACCESS_KEY_ID), profile {profile} (~/.aws/credentials, ~/.aws/config), SSO, web identity, the container role and the instance role; give --profile, run `aws sso login`, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    )
}

/// What to do about an error code AWS answered with.
fn hint_for_code(service: &str, operation: &str, code: &str) -> (FailureKind, String) {
    match code {
        "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" | "Forbidden"
        | "AuthorizationError" | "UnauthorizedAccess" => (
            FailureKind::Denied,
            format!("the credentials may not call {service}:{operation}; `irr policy PLAYBOOK` prints the IAM policy a run needs"),
        ),
        "ExpiredToken" | "ExpiredTokenException" | "RequestExpired" | "TokenRefreshRequired" => (
            FailureKind::BadCredentials,
            "the credentials have expired: refresh them (e.g. `aws sso login`) and try again".into(),
        ),
        "InvalidClientTokenId" | "SignatureDoesNotMatch" | "InvalidAccessKeyId"
        | "AuthFailure" | "UnrecognizedClientException" | "IncompleteSignature" => (
            FailureKind::BadCredentials,
            "the credentials are not valid here: check the profile, the region and --endpoint-url".into(),
        ),
        "Throttling" | "ThrottlingException" | "RequestLimitExceeded" | "SlowDown"
        | "TooManyRequestsException" | "RequestThrottled" | "RequestThrottledException" => (
            FailureKind::Throttled,
            "AWS throttled the call after retries: wait a little and try again (or lower --concurrency)".into(),
        ),
        "NoSuchBucket" => (
            FailureKind::Service,
            "the bucket does not exist (or is in another account): check the evidence location".into(),
        ),
        _ => (FailureKind::Service, String::new()),
    }
}

/// Describes an SDK error of `service:operation` in one line (see the module docs). Takes an
/// `SdkError` or an operation's error type: anything with AWS error metadata.
pub fn describe<E>(service: &str, operation: &str, err: &E) -> AwsFailure
where
    E: ProvideErrorMetadata + RawBody + StdError + 'static,
{
    let f = classify(service, operation, err);
    log_detail(&f);
    f
}

fn classify<E>(service: &str, operation: &str, err: &E) -> AwsFailure
where
    E: ProvideErrorMetadata + RawBody + StdError + 'static,
{
    let detail = one_line(&DisplayErrorContext(err).to_string());
    let mut f = AwsFailure {
        service: service.to_owned(),
        operation: operation.to_owned(),
        kind: FailureKind::Other,
        code: None,
        message: String::new(),
        request_id: err.meta().extra("aws_request_id").map(str::to_owned),
        hint: String::new(),
        detail,
    };
    if let Some(c) = find::<CredentialsError>(err) {
        f.kind = FailureKind::NoCredentials;
        f.request_id = None;
        match c {
            CredentialsError::CredentialsNotLoaded(_) => f.message = no_credentials_hint(),
            CredentialsError::ProviderTimedOut(d) => {
                f.message = format!(
                    "loading AWS credentials timed out after {:.1} s (the instance role did not answer)",
                    d.timeout_duration().as_secs_f64()
                );
                f.hint = "check the profile (--profile) and ~/.aws/config".into();
            }
            other => {
                f.message = format!(
                    "could not load AWS credentials: {}",
                    one_line(&root_cause(other))
                );
                f.hint = "check the profile (--profile) and ~/.aws/config".into();
            }
        }
        return f;
    }
    // The code and message the SDK read, else those of a body it could not parse.
    let from_body = match err.code() {
        Some(_) => None,
        None => err.raw_body().and_then(code_and_message_of_body),
    };
    let code_message = match (err.code(), &from_body) {
        (Some(code), _) => Some((code, err.message())),
        (None, Some((code, message))) => Some((code.as_str(), message.as_deref())),
        (None, None) => None,
    };
    if let Some((code, message)) = code_message {
        f.message = one_line(message.unwrap_or("(AWS gave no message)"));
        let (kind, hint) = hint_for_code(service, operation, code);
        f.kind = kind;
        f.hint = hint;
        f.code = Some(code.to_owned());
        return f;
    }
    if let Some(m) = err.message() {
        f.message = one_line(m);
        return f;
    }
    let cause = one_line(&root_cause(err));
    if let Some(c) = find::<ConnectorError>(err) {
        if c.is_timeout() {
            f.kind = FailureKind::Timeout;
            f.message = format!("AWS did not answer in time ({cause})");
            f.hint = "check the network and the endpoint, then try again".into();
        } else {
            f.kind = FailureKind::Unreachable;
            f.message = format!("could not reach AWS ({cause})");
            f.hint = "check the network, the region and --endpoint-url (or AWS_ENDPOINT_URL); a local emulator may have stopped".into();
        }
        return f;
    }
    let lower = cause.to_ascii_lowercase();
    if lower.contains("timed out") || lower.contains("timeout") {
        f.kind = FailureKind::Timeout;
        f.message = format!("AWS did not answer in time ({cause})");
        f.hint = "check the network and the endpoint, then try again".into();
    } else if lower.contains("connection refused") || lower.contains("dns") {
        f.kind = FailureKind::Unreachable;
        f.message = format!("could not reach AWS ({cause})");
        f.hint = "check the network, the region and --endpoint-url (or AWS_ENDPOINT_URL); a local emulator may have stopped".into();
    } else {
        f.message = cause;
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_the_sdk_could_not_parse_still_gives_code_and_message() {
        let moto = br#"<?xml version="1.0" encoding="utf-8"?>
<ErrorResponse><Errors><Error><Code>AccessDenied</Code><Message>User: arn:aws:iam::123456789012:user/r is not authorized to perform: iam:GetUser &amp; more</Message><Type>Sender</Type></Error></Errors></ErrorResponse>"#;
        let (code, message) = code_and_message_of_body(moto).unwrap();
        assert_eq!(code, "AccessDenied");
        assert_eq!(
            message.as_deref(),
            Some("User: arn:aws:iam::123456789012:user/r is not authorized to perform: iam:GetUser & more")
        );
        // Not an error code: markup, spaces, or nothing.
        assert!(code_and_message_of_body(b"<Code>a b</Code>").is_none());
        assert!(code_and_message_of_body(b"<Code><x/></Code>").is_none());
        assert!(code_and_message_of_body(b"<html>oops</html>").is_none());
        assert!(code_and_message_of_body(&[0xff, 0xfe]).is_none());
        // A huge body is searched only at its start.
        let mut big = vec![b' '; 2 * MAX_ERROR_BODY];
        big.extend_from_slice(b"<Code>Late</Code>");
        assert!(code_and_message_of_body(&big).is_none());
    }

    #[test]
    fn one_line_has_no_braces_or_newlines() {
        let s = one_line("Error { code: \"X\" }\n  caused by\n\nthing");
        assert_eq!(s, "Error ( code: \"X\" ); caused by; thing");
    }
}
