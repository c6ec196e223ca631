//! The fault and throttle proxy: an HTTP proxy on loopback between irr and a local AWS
//! emulator, which makes the emulator answer like a struggling AWS.
//!
//! One proxy serves the integration tests (faults, partial failures), the benchmarks (EC2's
//! request throttling) and chaos drills (`irr gameday --chaos`). It is never in the AWS client
//! path of a live run: only the tests, the benchmarks and `gameday` start it, and it refuses
//! an upstream that is not a loopback address.
//!
//! What it can do, from a [`ProxySpec`]:
//! - **rules**: for calls matching `service:Operation` (or `service:*`, or `*`), from the
//!   Nth match on, a number of times (or always): throttle, answer 500, deny (403
//!   `AccessDenied`/`UnauthorizedOperation`), drop the connection before forwarding, forward
//!   and then drop the answer (AWS did the work, the client never hears), add latency, or
//!   forward and say the answer's completed snapshots are still pending (as AWS's are while
//!   it copies them);
//! - **random faults**: one request in `one_in`, chosen by a seeded generator in arrival
//!   order, cycling through the fault kinds so a short run still sees each;
//! - **latency**: a fixed delay before every forwarded call (AWS's round trip);
//! - **the EC2 throttle model**: EC2's documented default token buckets (EC2 developer
//!   guide, "Request throttling for the Amazon EC2 API"), answering HTTP 503
//!   `RequestLimitExceeded` when a bucket is empty;
//! - **S3's bucket-owner check**, which moto does not make: with `s3_bucket_owner`, an S3
//!   request whose `x-amz-expected-bucket-owner` names another account is answered 403
//!   `AccessDenied`, as S3 answers it.
//!
//! It counts every call per `service:Operation`, lists every fault it injected, and keeps the
//! head (method, target, headers; never the body, credentials redacted) of every request
//! ([`FaultProxy::request_log`]).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod http;

use crate::ratelimit::{Buckets, Meter};
use http::{head_of, header, query_operation, read_message, s3_operation, service_of};

/// What the proxy does to the traffic. Deserialised from a chaos file (YAML or JSON) or
/// built in code.
///
/// ```yaml
/// rules:
///   - { action: "autoscaling:*", fault: deny }
///   - { action: "ec2:ModifyNetworkInterfaceAttribute", fault: throttle, times: 5 }
///   - { action: "ec2:CreateSnapshot", fault: drop_after }
/// latency_ms: 60
/// throttle: ec2
/// ```
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProxySpec {
    /// Targeted faults, checked in order; the first rule that fires decides.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Faults on a seeded random share of all requests.
    #[serde(default)]
    pub random: Option<RandomFaults>,
    /// Added before every forwarded call, in milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
    /// Request throttling as AWS meters it.
    #[serde(default)]
    pub throttle: Option<ThrottleModel>,
    /// The 12-digit account that owns every bucket behind the proxy. moto ignores
    /// `ExpectedBucketOwner`; with this set, the proxy makes S3's check: an S3 request whose
    /// `x-amz-expected-bucket-owner` header names another account is not forwarded and gets
    /// S3's answer, 403 `AccessDenied` (a request without the header is not checked, as in S3).
    #[serde(default)]
    pub s3_bucket_owner: Option<String>,
    /// A stand-in for instances' SSM agents, which moto does not emulate (see [`SsmAgent`]).
    #[serde(default)]
    pub ssm_agent: Option<SsmAgent>,
}

/// What the proxy answers for SSM in place of instances' agents. moto 5.2.1 emulates
/// `SendCommand`, `ListCommands` and `GetCommandInvocation` (no agent runs: every invocation
/// is `Success` at once, with no output), and not `DescribeInstanceInformation` or
/// `CancelCommand`. With this set:
/// - `DescribeInstanceInformation` lists the `online` instances as managed, `PingStatus`
///   `Online` (and no other);
/// - `GetCommandInvocation` answers `InProgress` until `output_file` exists (the test's
///   stand-in agent, which reads the command from moto and uploads where it says, writes it
///   when it is done), then `Success` with the file's contents as the standard output; so
///   irr can never read a command as finished before its stand-in agent is;
/// - `CancelCommand` is answered as AWS does (an empty success), and counted.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SsmAgent {
    /// Instance ids whose agent is online.
    #[serde(default)]
    pub online: Vec<String>,
    /// The stand-in agent's standard output, once it is done.
    #[serde(default)]
    pub output_file: Option<std::path::PathBuf>,
}

/// One targeted fault.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// `service:Operation` (`ec2:CreateSnapshot`), `service:*` (`autoscaling:*`) or `*`.
    /// The service is the request's signing name (`ec2`, `iam`, `s3`, `autoscaling`, ...).
    pub action: String,
    /// What to do.
    pub fault: FaultKind,
    /// The first matching call (1-based) that gets the fault. Default 1.
    #[serde(default)]
    pub nth: Option<u64>,
    /// How many consecutive matching calls get it, from `nth` on. Default: every one for
    /// `deny` (a permission stays denied), one for the others.
    #[serde(default)]
    pub times: Option<u64>,
    /// For `latency`: how long, in milliseconds (default 500).
    #[serde(default)]
    pub latency_ms: Option<u64>,
    /// Only requests whose text (head and body, percent-decoded) contains this match, e.g.
    /// `role/irr-responder` with an account id for one target's `sts:AssumeRole`, or
    /// `/us-west-2/` for one region's calls (the signature's credential scope).
    #[serde(default)]
    pub contains: Option<String>,
}

/// The kinds of fault.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// EC2: 503 `RequestLimitExceeded`; S3: 503 `SlowDown`; others: 400 `Throttling`.
    Throttle,
    /// 500 `InternalError`.
    ServerError,
    /// 403: EC2 `UnauthorizedOperation`, others `AccessDenied`(`Exception`).
    Deny,
    /// The connection is closed before the request reaches AWS.
    DropBefore,
    /// The request is processed, then the connection is closed unanswered.
    DropAfter,
    /// A delay before forwarding.
    Latency,
    /// The request is processed, and every snapshot its EC2 answer says is `completed` is
    /// said to be `pending` (`DescribeSnapshots`, `CreateSnapshot(s)`): a snapshot still
    /// being copied, as AWS answers for minutes to hours (moto completes them at once).
    SnapshotPending,
}

impl FaultKind {
    /// Every kind, in the order random faults cycle through them.
    pub const ALL: [FaultKind; 5] = [
        FaultKind::Throttle,
        FaultKind::ServerError,
        FaultKind::DropBefore,
        FaultKind::DropAfter,
        FaultKind::Latency,
    ];
}

/// Random faults: about one request in `one_in`, by a seeded generator.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RandomFaults {
    /// The generator's seed: the same seed and traffic give the same faults.
    pub seed: u64,
    /// One request in this many is faulted (at least 1).
    pub one_in: u64,
    /// The kinds to cycle through (default: all but `deny`).
    #[serde(default)]
    pub kinds: Option<Vec<FaultKind>>,
}

/// A throttle model.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ThrottleModel {
    /// EC2's default request token buckets, one set per account and region as EC2 keeps
    /// them (told apart by the request signature's access key and region).
    Ec2,
}

/// A fault the proxy injected.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Injected {
    /// Arrival number of the request (1-based, over all requests).
    pub request: u64,
    /// `service:Operation`.
    pub action: String,
    /// What was done.
    pub fault: FaultKind,
    /// Why: `rule N` (0-based index into the spec's rules), `random`, or `throttle:BUCKET`.
    pub cause: String,
}

/// Counts for one `service:Operation`.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct OpStats {
    /// Requests received.
    pub calls: u64,
    /// Requests answered `RequestLimitExceeded` by the throttle model.
    pub throttled: u64,
    /// Requests that got a fault from a rule or at random.
    pub faulted: u64,
}

/// A spec that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The upstream is not a loopback emulator.
    #[error("the proxy only fronts a local emulator on loopback, not {0:?}")]
    NotLoopback(String),
    /// A rule's action pattern is malformed.
    #[error("rule {index}: action {action:?} is not `service:Operation`, `service:*` or `*`")]
    BadAction {
        /// The rule's index.
        index: usize,
        /// What it said.
        action: String,
    },
    /// A number that must be positive is zero.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// The spec file does not parse.
    #[error("{0}")]
    Parse(String),
    /// The listener could not be bound.
    #[error("cannot listen on loopback: {0}")]
    Io(#[from] std::io::Error),
}

impl ProxySpec {
    /// Parses a spec from YAML (or JSON) text of at most 1 MiB.
    pub fn from_yaml(text: &str) -> Result<ProxySpec, ProxyError> {
        if text.len() > 1 << 20 {
            return Err(ProxyError::Parse("the chaos spec is over 1 MiB".into()));
        }
        let spec: ProxySpec =
            serde_yaml::from_str(text).map_err(|e| ProxyError::Parse(e.to_string()))?;
        spec.check()?;
        Ok(spec)
    }

    /// Checks patterns and numbers.
    pub fn check(&self) -> Result<(), ProxyError> {
        for (index, r) in self.rules.iter().enumerate() {
            if !valid_pattern(&r.action) {
                return Err(ProxyError::BadAction {
                    index,
                    action: r.action.clone(),
                });
            }
            if r.nth == Some(0) {
                return Err(ProxyError::Zero("a rule's nth"));
            }
            if r.times == Some(0) {
                return Err(ProxyError::Zero("a rule's times"));
            }
        }
        if let Some(owner) = &self.s3_bucket_owner {
            if owner.len() != 12 || !owner.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ProxyError::Parse(format!(
                    "s3_bucket_owner {owner:?} is not a 12-digit account id"
                )));
            }
        }
        if let Some(r) = &self.random {
            if r.one_in == 0 {
                return Err(ProxyError::Zero("random.one_in"));
            }
            if r.kinds.as_ref().is_some_and(|k| k.is_empty()) {
                return Err(ProxyError::Zero("the number of random.kinds"));
            }
        }
        Ok(())
    }

    /// Whether the spec changes nothing (no rule, no random fault, no latency, no throttle,
    /// no bucket-owner check).
    pub fn is_passthrough(&self) -> bool {
        self.rules.is_empty()
            && self.random.is_none()
            && self.latency_ms == 0
            && self.throttle.is_none()
            && self.s3_bucket_owner.is_none()
            && self.ssm_agent.is_none()
    }
}

fn valid_pattern(p: &str) -> bool {
    if p == "*" {
        return true;
    }
    let Some((service, op)) = p.split_once(':') else {
        return false;
    };
    let word = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    word(service) && (op == "*" || word(op))
}

/// Whether `action` (`service:Operation`) matches `pattern`.
pub fn matches(pattern: &str, action: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.split_once(':') {
        Some((s, "*")) => action.split_once(':').is_some_and(|(a, _)| a == s),
        _ => pattern == action,
    }
}

/// The head of one request the proxy received: what a test asserts about what irr sent.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct SeenRequest {
    /// Arrival number (1-based, over all requests).
    pub request: u64,
    /// `service:Operation`.
    pub action: String,
    /// `GET`, `PUT`, ...
    pub method: String,
    /// The request target: path and query string.
    pub target: String,
    /// The headers in order, names lowercased; the values of `authorization` and
    /// `x-amz-security-token` are replaced by `[redacted]`.
    pub headers: Vec<(String, String)>,
}

impl SeenRequest {
    /// A header's value (the first, when repeated), by lowercase name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// For an S3 request, the bucket it addresses: the first path segment (path style, as irr
    /// and the tests address an emulator), else the first label of a `BUCKET.s3...` host.
    pub fn s3_bucket(&self) -> Option<String> {
        if !self.action.starts_with("s3:") {
            return None;
        }
        let path = self.target.split('?').next().unwrap_or_default();
        let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
        if !first.is_empty() {
            return Some(first.to_owned());
        }
        let host = self.header("host")?;
        host.split_once(".s3").map(|(b, _)| b.to_owned())
    }

    fn parse(request: u64, action: String, head: &str) -> SeenRequest {
        let mut lines = head.lines();
        let mut first = lines.next().unwrap_or_default().split(' ');
        let method = first.next().unwrap_or_default().to_owned();
        let target = redact_query(first.next().unwrap_or_default());
        let headers = lines
            .filter_map(|l| {
                let (n, v) = l.split_once(':')?;
                let n = n.trim().to_ascii_lowercase();
                let v = if n == "authorization" || n == "x-amz-security-token" {
                    "[redacted]".to_owned()
                } else {
                    v.trim().to_owned()
                };
                Some((n, v))
            })
            .collect();
        SeenRequest {
            request,
            action,
            method,
            target,
            headers,
        }
    }
}

/// The most request heads the proxy keeps (a few hundred bytes each); later ones are counted
/// in [`FaultProxy::requests`] but not kept.
/// A request target with a presigned URL's signature, credential and token redacted.
fn redact_query(target: &str) -> String {
    let Some((path, query)) = target.split_once('?') else {
        return target.to_owned();
    };
    let q: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _))
                if [
                    "X-Amz-Signature",
                    "X-Amz-Credential",
                    "X-Amz-Security-Token",
                ]
                .iter()
                .any(|s| k.eq_ignore_ascii_case(s)) =>
            {
                format!("{k}=[redacted]")
            }
            _ => kv.to_owned(),
        })
        .collect();
    format!("{path}?{}", q.join("&"))
}

const MAX_LOGGED: usize = 100_000;

/// A running proxy. Dropping it stops accepting connections.
pub struct FaultProxy {
    url: String,
    state: Arc<State>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

struct State {
    upstream: SocketAddr,
    spec: ProxySpec,
    requests: AtomicU64,
    random_faults: AtomicU64,
    /// Matches seen so far per rule.
    rule_matches: Mutex<Vec<u64>>,
    /// EC2's buckets per signing scope (`ACCESS_KEY/REGION`: an account-region).
    buckets: Mutex<HashMap<String, Buckets>>,
    stats: Mutex<BTreeMap<String, OpStats>>,
    injected: Mutex<Vec<Injected>>,
    log: Mutex<Vec<SeenRequest>>,
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream` (`http://127.0.0.1:PORT`) on a free loopback
    /// port, on the current tokio runtime.
    pub async fn start(upstream: &str, spec: ProxySpec) -> Result<FaultProxy, ProxyError> {
        spec.check()?;
        let upstream_addr = crate::emulator::loopback_addr(upstream)
            .ok_or_else(|| ProxyError::NotLoopback(upstream.to_owned()))?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            upstream: upstream_addr,
            rule_matches: Mutex::new(vec![0; spec.rules.len()]),
            buckets: Mutex::default(),
            spec,
            requests: AtomicU64::new(0),
            random_faults: AtomicU64::new(0),
            stats: Mutex::new(BTreeMap::new()),
            injected: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
        });
        let s = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = s.serve(client).await;
                });
            }
        });
        Ok(FaultProxy {
            url: format!("http://{addr}"),
            state,
            accept,
        })
    }

    /// The endpoint to give irr (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Counts per `service:Operation`.
    pub fn stats(&self) -> BTreeMap<String, OpStats> {
        self.state.stats.lock().unwrap().clone()
    }

    /// Calls received for one `service:Operation` (or a pattern such as `ec2:*`).
    pub fn calls(&self, pattern: &str) -> u64 {
        self.stats()
            .iter()
            .filter(|(a, _)| matches(pattern, a))
            .map(|(_, s)| s.calls)
            .sum()
    }

    /// Every fault injected, in arrival order.
    pub fn injected(&self) -> Vec<Injected> {
        let mut v = self.state.injected.lock().unwrap().clone();
        v.sort_by_key(|i| i.request);
        v
    }

    /// The spec it runs.
    pub fn spec(&self) -> &ProxySpec {
        &self.state.spec
    }

    /// The head of every request received (the first 100,000), in arrival order.
    pub fn request_log(&self) -> Vec<SeenRequest> {
        let mut v = self.state.log.lock().unwrap().clone();
        v.sort_by_key(|r| r.request);
        v
    }
}

/// The decision for one request.
struct Decision {
    fault: Option<FaultKind>,
    latency: Duration,
}

impl State {
    #[cfg(test)]
    fn decide(&self, request: u64, action: &str, meter: Meter) -> Decision {
        self.decide_for(request, action, meter, "", "")
    }

    /// The decision for a request whose text (for rules with `contains`) is `text`, signed
    /// for `scope` (its EC2 buckets).
    fn decide_for(
        &self,
        request: u64,
        action: &str,
        meter: Meter,
        text: &str,
        scope: &str,
    ) -> Decision {
        let mut latency = Duration::from_millis(self.spec.latency_ms);
        let mut chosen: Option<(FaultKind, String)> = None;
        {
            let mut seen = self.rule_matches.lock().unwrap();
            for (i, rule) in self.spec.rules.iter().enumerate() {
                if !matches(&rule.action, action)
                    || rule.contains.as_deref().is_some_and(|c| !text.contains(c))
                {
                    continue;
                }
                seen[i] += 1;
                let n = seen[i];
                let from = rule.nth.unwrap_or(1);
                let times = rule.times.unwrap_or(match rule.fault {
                    FaultKind::Deny => u64::MAX,
                    _ => 1,
                });
                let fires = n >= from && n - from < times;
                if fires && chosen.is_none() {
                    chosen = Some((rule.fault, format!("rule {i}")));
                    if rule.fault == FaultKind::Latency {
                        latency += Duration::from_millis(rule.latency_ms.unwrap_or(500));
                    }
                }
            }
        }
        if chosen.is_none() {
            if let Some(r) = &self.spec.random {
                let x = mix(r.seed ^ mix(request));
                if x.is_multiple_of(r.one_in) {
                    let kinds: &[FaultKind] = r.kinds.as_deref().unwrap_or(&FaultKind::ALL);
                    let k = self.random_faults.fetch_add(1, Ordering::SeqCst);
                    let kind = kinds[((k + r.seed) % kinds.len() as u64) as usize];
                    if kind == FaultKind::Latency {
                        latency += Duration::from_millis(300 + mix(x) % 600);
                    }
                    chosen = Some((kind, "random".into()));
                }
            }
        }
        if chosen.is_none() && self.spec.throttle == Some(ThrottleModel::Ec2) {
            let taken = self
                .buckets
                .lock()
                .unwrap()
                .entry(scope.to_owned())
                .or_insert_with(|| Buckets::ec2(Instant::now()))
                .take(action, meter);
            if let Some(bucket) = taken {
                chosen = Some((FaultKind::Throttle, format!("throttle:{bucket}")));
            }
        }
        if let Some((fault, cause)) = &chosen {
            let mut stats = self.stats.lock().unwrap();
            let e = stats.entry(action.to_owned()).or_default();
            if cause.starts_with("throttle:") {
                e.throttled += 1;
            } else {
                e.faulted += 1;
            }
            drop(stats);
            self.injected.lock().unwrap().push(Injected {
                request,
                action: action.to_owned(),
                fault: *fault,
                cause: cause.clone(),
            });
        }
        Decision {
            fault: chosen.map(|c| c.0),
            latency,
        }
    }

    /// S3's `ExpectedBucketOwner` check ([`ProxySpec::s3_bucket_owner`]): S3's answer when
    /// the request names another owner, else `None`.
    fn owner_check(&self, request: u64, call: &Call, head: &str) -> Option<Vec<u8>> {
        let owner = self.spec.s3_bucket_owner.as_deref()?;
        if call.service != "s3" {
            return None;
        }
        let expected = header(head, "x-amz-expected-bucket-owner")?;
        if expected == owner {
            return None;
        }
        let action = call.action();
        self.stats
            .lock()
            .unwrap()
            .entry(action.clone())
            .or_default()
            .faulted += 1;
        self.injected.lock().unwrap().push(Injected {
            request,
            action,
            fault: FaultKind::Deny,
            cause: "s3_bucket_owner".into(),
        });
        Some(call.error_answer("403 Forbidden", "AccessDenied", "Access Denied"))
    }

    /// Serves the requests of one client connection, one at a time (keep-alive honoured).
    /// The stand-in agent's answer to an SSM call ([`SsmAgent`]), when it gives one.
    async fn ssm_agent_answer(&self, call: &Call) -> Option<Vec<u8>> {
        let agent = self.spec.ssm_agent.as_ref()?;
        if call.service != "ssm" {
            return None;
        }
        let body = match call.operation.as_str() {
            "DescribeInstanceInformation" => serde_json::json!({
                "InstanceInformationList": agent.online.iter().map(|id| serde_json::json!({
                    "InstanceId": id,
                    "PingStatus": "Online",
                    "PlatformType": "Linux",
                    "ResourceType": "EC2Instance",
                })).collect::<Vec<_>>(),
            }),
            "CancelCommand" => serde_json::json!({}),
            "GetCommandInvocation" => {
                let done = match &agent.output_file {
                    Some(f) => tokio::fs::read(f).await.ok(),
                    None => None,
                };
                match done {
                    None => {
                        serde_json::json!({"Status": "InProgress", "StatusDetails": "InProgress", "ResponseCode": -1})
                    }
                    Some(out) => serde_json::json!({
                        "Status": "Success",
                        "StatusDetails": "Success",
                        "ResponseCode": 0,
                        "StandardOutputContent": String::from_utf8_lossy(&out),
                        "StandardErrorContent": "",
                    }),
                }
            }
            _ => return None,
        };
        let body = body.to_string();
        Some(format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nx-amzn-RequestId: 00000000-0000-0000-0000-0000000055a9\r\n\r\n{body}",
            body.len()
        ).into_bytes())
    }

    async fn serve(&self, mut client: TcpStream) -> std::io::Result<()> {
        let mut pending = Vec::new();
        loop {
            let Some(request) = read_message(&mut client, &mut pending, None).await? else {
                return Ok(());
            };
            let call = Call::parse(&request);
            let n = self.requests.fetch_add(1, Ordering::SeqCst) + 1;
            self.stats
                .lock()
                .unwrap()
                .entry(call.action())
                .or_default()
                .calls += 1;
            let head = head_of(&request);
            {
                let mut log = self.log.lock().unwrap();
                if log.len() < MAX_LOGGED {
                    log.push(SeenRequest::parse(n, call.action(), &head));
                }
            }
            if let Some(answer) = self.owner_check(n, &call, &head) {
                client.write_all(&answer).await?;
                continue;
            }
            let text = if self.spec.rules.iter().any(|r| r.contains.is_some()) {
                let raw = String::from_utf8_lossy(&request);
                percent_encoding::percent_decode_str(&raw)
                    .decode_utf8_lossy()
                    .into_owned()
            } else {
                String::new()
            };
            let d = self.decide_for(n, &call.action(), call.meter, &text, &signing_scope(&head));
            let agent = match d.fault {
                None => self.ssm_agent_answer(&call).await,
                Some(_) => None,
            };
            if let Some(answer) = agent {
                client.write_all(&answer).await?;
                continue;
            }
            if !d.latency.is_zero() {
                tokio::time::sleep(d.latency).await;
            }
            let canned = match d.fault {
                Some(FaultKind::Throttle) => Some(call.throttle_answer()),
                Some(FaultKind::ServerError) => Some(call.error_answer(
                    "500 Internal Server Error",
                    "InternalError",
                    "We encountered an internal error. Please try again.",
                )),
                Some(FaultKind::Deny) => Some(call.deny_answer()),
                Some(FaultKind::DropBefore) => return Ok(()),
                Some(FaultKind::DropAfter | FaultKind::Latency | FaultKind::SnapshotPending)
                | None => None,
            };
            if let Some(answer) = canned {
                client.write_all(&answer).await?;
                continue;
            }
            let mut up = TcpStream::connect(self.upstream).await?;
            up.write_all(&request).await?;
            let mut up_pending = Vec::new();
            let mut response = read_message(&mut up, &mut up_pending, Some(call.head_request))
                .await?
                .unwrap_or_default();
            // An interim `100 Continue` (to a request sent with `Expect: 100-continue`, whose
            // body the proxy has already read and forwarded whole) is not the answer.
            while response.starts_with(b"HTTP/1.1 100") {
                response = read_message(&mut up, &mut up_pending, Some(call.head_request))
                    .await?
                    .unwrap_or_default();
            }
            if d.fault == Some(FaultKind::DropAfter) {
                return Ok(()); // processed upstream; the answer is lost
            }
            if d.fault == Some(FaultKind::SnapshotPending) {
                response = snapshots_pending(&response);
            }
            client.write_all(&response).await?;
            if closes(&response) {
                return client.shutdown().await;
            }
        }
    }
}

/// The request's signing scope, `ACCESS_KEY/REGION` from its SigV4 `Authorization` header
/// (EC2 meters each account-region apart; one access key stands for one account here), or
/// empty when unsigned.
fn signing_scope(head: &str) -> String {
    let Some(auth) = header(head, "authorization") else {
        return String::new();
    };
    let Some(cred) = auth.split("Credential=").nth(1) else {
        return String::new();
    };
    let mut parts = cred.split(['/', ',']);
    let key = parts.next().unwrap_or_default();
    let region = parts.nth(1).unwrap_or_default();
    format!("{key}/{region}")
}

/// `response` with every snapshot state `completed` turned `pending` (EC2's XML names the
/// state `status` in `DescribeSnapshots` and `state` in `CreateSnapshots`) and its
/// `Content-Length` set to the new body's length. A response it cannot split is kept as is.
fn snapshots_pending(response: &[u8]) -> Vec<u8> {
    let Some(at) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return response.to_vec();
    };
    let (head, body) = (&response[..at], &response[at + 4..]);
    let Ok(text) = std::str::from_utf8(body) else {
        return response.to_vec();
    };
    let body = text
        .replace("<status>completed</status>", "<status>pending</status>")
        .replace("<state>completed</state>", "<state>pending</state>");
    let head = String::from_utf8_lossy(head);
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return response.to_vec();
    }
    let mut out = String::new();
    for line in head.split("\r\n") {
        if line.to_ascii_lowercase().starts_with("content-length:") {
            out.push_str(&format!("Content-Length: {}", body.len()));
        } else {
            out.push_str(line);
        }
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.push_str(&body);
    out.into_bytes()
}

/// Whether a response says `Connection: close`.
fn closes(response: &[u8]) -> bool {
    let head = head_of(response).to_ascii_lowercase();
    head.lines()
        .any(|l| l.starts_with("connection:") && l.contains("close"))
}

/// One parsed request.
struct Call {
    service: String,
    operation: String,
    meter: Meter,
    head_request: bool,
    json: bool,
}

impl Call {
    fn parse(msg: &[u8]) -> Call {
        let head = head_of(msg);
        let service = service_of(&head);
        let target = header(&head, "x-amz-target");
        let operation = if let Some(t) = &target {
            t.rsplit('.').next().unwrap_or(t).to_owned()
        } else if service == "s3" {
            s3_operation(&head)
        } else {
            query_operation(msg).unwrap_or_else(|| "Unknown".into())
        };
        let meter = if service != "ec2" {
            Meter::Other
        } else {
            Meter::of_ec2(&operation, &String::from_utf8_lossy(msg))
        };
        Call {
            head_request: head.starts_with("HEAD "),
            json: target.is_some(),
            service,
            operation,
            meter,
        }
    }

    fn action(&self) -> String {
        format!("{}:{}", self.service, self.operation)
    }

    fn throttle_answer(&self) -> Vec<u8> {
        match self.service.as_str() {
            "s3" => self.error_answer(
                "503 Slow Down",
                "SlowDown",
                "Please reduce your request rate.",
            ),
            "ec2" => self.error_answer(
                "503 Service Unavailable",
                "RequestLimitExceeded",
                "Request limit exceeded.",
            ),
            _ if self.json => {
                self.error_answer("400 Bad Request", "ThrottlingException", "Rate exceeded")
            }
            _ => self.error_answer("400 Bad Request", "Throttling", "Rate exceeded"),
        }
    }

    fn deny_answer(&self) -> Vec<u8> {
        let message = format!(
            "User is not authorized to perform: {}:{} (denied by the chaos proxy)",
            self.service, self.operation
        );
        let code = match self.service.as_str() {
            "ec2" => "UnauthorizedOperation",
            _ if self.json => "AccessDeniedException",
            _ => "AccessDenied",
        };
        self.error_answer("403 Forbidden", code, &message)
    }

    fn error_answer(&self, status: &str, code: &str, message: &str) -> Vec<u8> {
        let rid = "00000000-0000-0000-0000-00000000fa17";
        let (ctype, body) = if self.json {
            (
                "application/x-amz-json-1.1",
                serde_json::json!({"__type": code, "message": message}).to_string(),
            )
        } else {
            let body = match self.service.as_str() {
                "ec2" => format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>{rid}</RequestID></Response>"
                ),
                "s3" => format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{rid}</RequestId></Error>"
                ),
                _ => format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>{rid}</RequestId></ErrorResponse>"
                ),
            };
            ("text/xml", body)
        };
        let mut head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nx-amzn-RequestId: {rid}\r\n",
            body.len()
        );
        if self.json {
            head.push_str(&format!("x-amzn-ErrorType: {code}\r\n"));
        }
        if self.head_request {
            // The answer to a HEAD request carries no body.
            head.push_str("\r\n");
            return head.into_bytes();
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body.as_bytes());
        out
    }
}

/// splitmix64: a small, seeded, deterministic generator.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    #[test]
    fn snapshot_pending_rewrites_the_states_and_the_length() {
        let body = "<r><snapshotSet><item><snapshotId>snap-1</snapshotId><status>completed</status></item><item><state>completed</state></item></snapshotSet></r>";
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let out = String::from_utf8(super::snapshots_pending(response.as_bytes())).unwrap();
        let (head, new_body) = out.split_once("\r\n\r\n").unwrap();
        assert!(new_body.contains("<status>pending</status>"), "{out}");
        assert!(new_body.contains("<state>pending</state>"), "{out}");
        assert!(!new_body.contains("completed"), "{out}");
        assert!(
            head.contains(&format!("Content-Length: {}", new_body.len())),
            "{out}"
        );
        let chunked =
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        assert_eq!(
            super::snapshots_pending(chunked.as_bytes()),
            chunked.as_bytes()
        );
    }

    use super::*;

    fn ec2_request(action: &str, extra: &str) -> Vec<u8> {
        let body = format!("Action={action}&Version=2016-11-15{extra}");
        format!(
            "POST / HTTP/1.1\r\nhost: x\r\nauthorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=00\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[test]
    fn parses_query_json_and_s3_calls() {
        let c = Call::parse(&ec2_request("DescribeInstances", ""));
        assert_eq!(c.action(), "ec2:DescribeInstances");
        assert_eq!(c.meter, Meter::UnfilteredRead);
        let c = Call::parse(&ec2_request(
            "DescribeInstances",
            "&Filter.1.Name=instance-id&Filter.1.Value.1=i-1",
        ));
        assert_eq!(c.meter, Meter::Read);
        let c = Call::parse(&ec2_request("ModifyNetworkInterfaceAttribute", ""));
        assert_eq!(c.meter, Meter::Mutating);
        let json = b"POST / HTTP/1.1\r\nX-Amz-Target: AmazonSSM.SendCommand\r\nAuthorization: AWS4-HMAC-SHA256 Credential=k/20260101/us-east-1/ssm/aws4_request\r\nContent-Length: 2\r\n\r\n{}";
        let c = Call::parse(json);
        assert_eq!(c.action(), "ssm:SendCommand");
        assert!(c.json);
        let s3 = b"PUT /bucket/key?uploadId=1&partNumber=2 HTTP/1.1\r\nAuthorization: AWS4-HMAC-SHA256 Credential=k/20260101/us-east-1/s3/aws4_request\r\n\r\n";
        assert_eq!(Call::parse(s3).action(), "s3:UploadPart");
        let s3 = b"HEAD /bucket/a/b HTTP/1.1\r\nAuthorization: AWS4-HMAC-SHA256 Credential=k/20260101/us-east-1/s3/aws4_request\r\n\r\n";
        assert_eq!(Call::parse(s3).action(), "s3:HeadObject");
        let auth =
            "Authorization: AWS4-HMAC-SHA256 Credential=k/20260101/us-east-1/s3/aws4_request";
        for (line, want) in [
            ("HEAD /bucket/ HTTP/1.1", "s3:HeadBucket"),
            ("HEAD /bucket HTTP/1.1", "s3:HeadBucket"),
            ("PUT /bucket/ HTTP/1.1", "s3:CreateBucket"),
            (
                "GET /bucket/?versions&prefix=a HTTP/1.1",
                "s3:ListObjectVersions",
            ),
            ("GET /bucket/?list-type=2 HTTP/1.1", "s3:ListObjects"),
            ("PUT /bucket/k HTTP/1.1", "s3:PutObject"),
        ] {
            let msg =
                format!("{line}\r\n{auth}\r\nX-Amz-Expected-Bucket-Owner: 123456789012\r\n\r\n");
            assert_eq!(Call::parse(msg.as_bytes()).action(), want, "{line}");
            let seen = SeenRequest::parse(1, want.into(), &head_of(msg.as_bytes()));
            assert_eq!(seen.s3_bucket().as_deref(), Some("bucket"), "{line}");
            assert_eq!(
                seen.header("x-amz-expected-bucket-owner"),
                Some("123456789012")
            );
            assert_eq!(seen.header("authorization"), Some("[redacted]"));
        }
    }

    #[test]
    fn patterns() {
        assert!(matches(
            "autoscaling:*",
            "autoscaling:DescribeAutoScalingInstances"
        ));
        assert!(!matches("autoscaling:*", "ec2:DescribeInstances"));
        assert!(matches("*", "s3:PutObject"));
        assert!(matches("ec2:CreateTags", "ec2:CreateTags"));
        assert!(!matches("ec2:CreateTags", "ec2:CreateTagsX"));
        assert!(valid_pattern("ec2:*") && valid_pattern("*") && !valid_pattern("ec2"));
        assert!(!valid_pattern("ec2:Create Tags") && !valid_pattern(":x"));
    }

    #[test]
    fn spec_parses_and_refuses_nonsense() {
        let spec = ProxySpec::from_yaml(
            "rules:\n  - {action: 'autoscaling:*', fault: deny}\n  - {action: 'ec2:ModifyNetworkInterfaceAttribute', fault: server_error, nth: 2}\nlatency_ms: 60\nthrottle: ec2\n",
        )
        .unwrap();
        assert_eq!(spec.rules.len(), 2);
        assert_eq!(spec.throttle, Some(ThrottleModel::Ec2));
        assert!(ProxySpec::from_yaml("rules: [{action: ec2, fault: deny}]").is_err());
        assert!(ProxySpec::from_yaml("rules: [{action: 'ec2:X', fault: explode}]").is_err());
        assert!(ProxySpec::from_yaml("rules: [{action: 'ec2:X', fault: deny, nth: 0}]").is_err());
        assert!(ProxySpec::from_yaml("unknown: 1").is_err());
        assert!(ProxySpec::from_yaml("random: {seed: 1, one_in: 0}").is_err());
    }

    fn state(spec: ProxySpec) -> State {
        State {
            upstream: "127.0.0.1:1".parse().unwrap(),
            rule_matches: Mutex::new(vec![0; spec.rules.len()]),
            buckets: Mutex::default(),
            spec,
            requests: AtomicU64::new(0),
            random_faults: AtomicU64::new(0),
            stats: Mutex::new(BTreeMap::new()),
            injected: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
        }
    }

    #[test]
    fn rules_fire_on_the_nth_match_for_times() {
        let s = state(ProxySpec {
            rules: vec![
                Rule {
                    action: "ec2:ModifyNetworkInterfaceAttribute".into(),
                    fault: FaultKind::ServerError,
                    nth: Some(2),
                    times: Some(2),
                    latency_ms: None,
                    contains: None,
                },
                Rule {
                    action: "autoscaling:*".into(),
                    fault: FaultKind::Deny,
                    nth: None,
                    times: None,
                    latency_ms: None,
                    contains: None,
                },
            ],
            ..ProxySpec::default()
        });
        let got: Vec<_> = (1..=5)
            .map(|n| {
                s.decide(n, "ec2:ModifyNetworkInterfaceAttribute", Meter::Mutating)
                    .fault
            })
            .collect();
        assert_eq!(
            got,
            [
                None,
                Some(FaultKind::ServerError),
                Some(FaultKind::ServerError),
                None,
                None
            ]
        );
        for n in 0..10 {
            let d = s.decide(
                10 + n,
                "autoscaling:DescribeAutoScalingInstances",
                Meter::Other,
            );
            assert_eq!(d.fault, Some(FaultKind::Deny), "deny stays");
        }
        assert_eq!(s.injected.lock().unwrap().len(), 12);
    }

    #[test]
    fn random_faults_cycle_kinds_deterministically() {
        let spec = ProxySpec {
            random: Some(RandomFaults {
                seed: 7,
                one_in: 3,
                kinds: None,
            }),
            ..ProxySpec::default()
        };
        let run = || {
            let s = state(spec.clone());
            (1..=200)
                .filter_map(|n| s.decide(n, "ec2:DescribeInstances", Meter::Read).fault)
                .collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        for k in FaultKind::ALL {
            assert!(a.contains(&k), "{k:?} never chosen");
        }
        assert!(!a.contains(&FaultKind::Deny));
    }
}
