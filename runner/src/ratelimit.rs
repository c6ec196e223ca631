//! EC2's request throttling, as a table both sides use: the fault proxy's throttle model
//! answers like EC2 from it (`crate::proxy`), and irr's own client-side buckets keep every
//! EC2 call within it ([`LimitedHttpClient`]).
//!
//! EC2 meters each account and region with token buckets (EC2 developer guide, "Request
//! throttling for the Amazon EC2 API"): a bucket per category of call, and some actions with a
//! bucket of their own. The SDK's adaptive retry mode has one limiter per retry partition
//! (`ec2-REGION`, shared by every operation), so a throttled `ModifyNetworkInterfaceAttribute`
//! would slow `CreateTags` and the reads too; irr keeps one bucket per EC2 bucket instead, in
//! front of the HTTP client of each account-region's EC2 client, and the SDK's standard retry
//! mode is then the one retry layer for throttling.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

/// How EC2 meters a call (which bucket it draws from).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Meter {
    /// Not an EC2 call.
    Other,
    /// An EC2 Describe*/Get*/List* with a filter or pagination.
    Read,
    /// An EC2 Describe* with neither a filter nor pagination.
    UnfilteredRead,
    /// An EC2 call that changes something.
    Mutating,
}

impl Meter {
    /// How EC2 meters `operation`, given its query-protocol request text (`Filter.`,
    /// `MaxResults=` or `NextToken=` make a read filtered or paginated).
    pub fn of_ec2(operation: &str, request: &str) -> Meter {
        if ["Describe", "Get", "List"]
            .iter()
            .any(|p| operation.starts_with(p))
        {
            let filtered = request.contains("Filter.")
                || request.contains("MaxResults=")
                || request.contains("NextToken=");
            if filtered || !operation.starts_with("Describe") {
                Meter::Read
            } else {
                Meter::UnfilteredRead
            }
        } else {
            Meter::Mutating
        }
    }
}

/// Actions with a bucket of their own: 100 tokens, 5 a second.
pub const OWN_BUCKET: [&str; 6] = [
    "CreateSnapshot",
    "CreateSnapshots",
    "CreateVolume",
    "ModifyNetworkInterfaceAttribute",
    "AssociateIamInstanceProfile",
    "DisassociateIamInstanceProfile",
];

/// Security-group rule changes: a bucket of their own category.
pub const SG_RULES: [&str; 4] = [
    "AuthorizeSecurityGroupIngress",
    "AuthorizeSecurityGroupEgress",
    "RevokeSecurityGroupIngress",
    "RevokeSecurityGroupEgress",
];

/// EC2's default buckets: `(name, capacity, refill per second)`.
pub fn ec2_default_buckets() -> Vec<(&'static str, f64, f64)> {
    let mut v = vec![
        ("non-mutating", 100.0, 20.0),
        ("unfiltered-non-mutating", 50.0, 10.0),
        ("mutating", 50.0, 5.0),
        ("security-group-rules", 50.0, 5.0),
        ("tags", 100.0, 10.0),
    ];
    v.extend(OWN_BUCKET.iter().map(|op| (*op, 100.0, 5.0)));
    v
}

/// The bucket an EC2 call (`ec2:Operation`) draws from; `None` for a call EC2 does not meter
/// (not EC2).
pub fn bucket_of(action: &str, meter: Meter) -> Option<&'static str> {
    let op = action.strip_prefix("ec2:")?;
    if let Some(own) = OWN_BUCKET.iter().find(|o| **o == op) {
        return Some(own);
    }
    if SG_RULES.contains(&op) {
        return Some("security-group-rules");
    }
    if op == "CreateTags" || op == "DeleteTags" {
        return Some("tags");
    }
    match meter {
        Meter::Other => None,
        Meter::Read => Some("non-mutating"),
        Meter::UnfilteredRead => Some("unfiltered-non-mutating"),
        Meter::Mutating => Some("mutating"),
    }
}

/// One token bucket. `tokens` may go below zero on the client side: each caller reserves
/// its token and waits until the bucket would have refilled to it, so callers are served in
/// arrival order at exactly the refill rate, with no polling.
#[derive(Clone, Debug)]
pub struct Bucket {
    capacity: f64,
    refill: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(capacity: f64, refill: f64, at: Instant) -> Bucket {
        Bucket {
            capacity,
            refill,
            tokens: capacity,
            at,
        }
    }

    fn refill_to(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * self.refill).min(self.capacity);
        self.at = now;
    }

    /// Takes a token if there is one (EC2's side: an empty bucket refuses).
    pub fn take(&mut self, now: Instant) -> bool {
        self.refill_to(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Reserves a token and returns how long to wait until it is there (the client's side).
    pub fn reserve(&mut self, now: Instant) -> Duration {
        self.refill_to(now);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.refill)
        }
    }

    /// EC2 said the bucket is empty: no token until one has refilled from zero.
    pub fn drain(&mut self, now: Instant) {
        self.refill_to(now);
        self.tokens = self.tokens.min(0.0);
    }
}

/// A set of named buckets (EC2's table, or irr's copy of it).
#[derive(Debug)]
pub struct Buckets {
    named: BTreeMap<&'static str, Bucket>,
}

impl Buckets {
    /// EC2's default buckets, full.
    pub fn ec2(at: Instant) -> Buckets {
        Self::scaled(at, 1.0, 0.0)
    }

    /// EC2's default buckets with each refill rate times `rate` and each capacity less
    /// `headroom` tokens (irr's side keeps a margin so that its calls, which reach EC2 a
    /// round trip later, never find EC2's bucket empty).
    pub fn scaled(at: Instant, rate: f64, headroom: f64) -> Buckets {
        let named = ec2_default_buckets()
            .into_iter()
            .map(|(n, cap, refill)| (n, Bucket::new((cap - headroom).max(1.0), refill * rate, at)))
            .collect();
        Buckets { named }
    }

    /// EC2's side: `Some(bucket)` when the call is throttled (its bucket is empty).
    pub fn take(&mut self, action: &str, meter: Meter) -> Option<&'static str> {
        let name = bucket_of(action, meter)?;
        let bucket = self.named.get_mut(name)?;
        if bucket.take(Instant::now()) {
            None
        } else {
            Some(name)
        }
    }

    /// The bucket named `name` (tests).
    pub fn bucket(&mut self, name: &str) -> Option<&mut Bucket> {
        self.named.get_mut(name)
    }
}

/// irr's client-side copy of EC2's buckets for one account-region, with what it did.
#[derive(Debug)]
pub struct Limiter {
    buckets: Mutex<Buckets>,
    stats: Mutex<LimiterStats>,
}

/// What a [`Limiter`] did: calls let through, calls that waited and for how long, and
/// `RequestLimitExceeded` answers seen.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LimiterStats {
    /// Calls let through.
    pub calls: u64,
    /// Calls that waited for a token.
    pub waited: u64,
    /// Total time waited, in seconds.
    pub waited_s: f64,
    /// Answers that said EC2's bucket was empty (503 `RequestLimitExceeded`).
    pub throttled: u64,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new()
    }
}

impl Limiter {
    /// EC2's default buckets, refilled 2% slower than EC2 refills them and with one token of
    /// headroom.
    pub fn new() -> Limiter {
        Limiter {
            buckets: Mutex::new(Buckets::scaled(Instant::now(), 0.98, 1.0)),
            stats: Mutex::default(),
        }
    }

    /// How long the call must wait for its token (reserved now).
    pub fn reserve(&self, action: &str, meter: Meter) -> Duration {
        let wait = bucket_of(action, meter)
            .and_then(|name| {
                let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
                b.named.get_mut(name).map(|b| b.reserve(Instant::now()))
            })
            .unwrap_or(Duration::ZERO);
        let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        s.calls += 1;
        if !wait.is_zero() {
            s.waited += 1;
            s.waited_s += wait.as_secs_f64();
        }
        wait
    }

    /// EC2 answered that the call's bucket is empty (someone else draws from the account's
    /// buckets too): every later call of that bucket waits for a refill from zero, so a
    /// throttled answer never starts a storm of retries.
    pub fn throttled(&self, action: &str, meter: Meter) {
        if let Some(name) = bucket_of(action, meter) {
            let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(b) = b.named.get_mut(name) {
                b.drain(Instant::now());
            }
        }
        self.stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .throttled += 1;
    }

    /// What it did so far.
    pub fn stats(&self) -> LimiterStats {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The EC2 operation of a query-protocol request body (`Action=...&`), and how it is metered.
fn ec2_call(request: &HttpRequest) -> Option<(String, Meter)> {
    let body = std::str::from_utf8(request.body().bytes()?).ok()?;
    let op = body
        .split('&')
        .find_map(|kv| kv.strip_prefix("Action="))?
        .to_owned();
    let meter = Meter::of_ec2(&op, body);
    Some((format!("ec2:{op}"), meter))
}

/// An HTTP client for EC2 that takes a token from the [`Limiter`] before every request
/// (retries included: EC2 meters each one) and drains the bucket on a 503 answer.
#[derive(Clone, Debug)]
pub struct LimitedHttpClient {
    inner: SharedHttpClient,
    limiter: Arc<Limiter>,
}

impl LimitedHttpClient {
    /// Wraps `inner`.
    pub fn new(inner: SharedHttpClient, limiter: Arc<Limiter>) -> LimitedHttpClient {
        LimitedHttpClient { inner, limiter }
    }
}

#[derive(Clone, Debug)]
struct LimitedConnector {
    inner: SharedHttpConnector,
    limiter: Arc<Limiter>,
}

impl HttpConnector for LimitedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let call = ec2_call(&request);
        let inner = self.inner.clone();
        let limiter = self.limiter.clone();
        HttpConnectorFuture::new(async move {
            if let Some((action, meter)) = &call {
                let wait = limiter.reserve(action, *meter);
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
            }
            let response = inner.call(request).await?;
            if let Some((action, meter)) = &call {
                if response.status().as_u16() == 503 {
                    limiter.throttled(action, *meter);
                }
            }
            Ok(response)
        })
    }
}

impl HttpClient for LimitedHttpClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(LimitedConnector {
            inner: self.inner.http_connector(settings, components),
            limiter: self.limiter.clone(),
        })
    }
}

/// The SDK's default HTTPS client (rustls with aws-lc, proxy settings from the environment),
/// built as `aws-smithy-runtime` builds it, for wrapping.
pub fn default_https_client() -> SharedHttpClient {
    use aws_smithy_http_client::proxy::ProxyConfig;
    use aws_smithy_http_client::{tls, Builder, ConnectorBuilder};
    Builder::new().build_with_connector_fn(move |settings, runtime_components| {
        let mut conn = ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ));
        conn.set_connector_settings(settings.cloned());
        if let Some(components) = runtime_components {
            conn.set_sleep_impl(components.sleep_impl());
        }
        conn.set_proxy_config(Some(ProxyConfig::from_env()));
        conn.build()
    })
}

/// `false` when `IRR_EC2_BUCKETS=off`: irr's buckets are not used (an account whose EC2
/// limits were raised, measured against AWS's own throttling).
pub fn enabled() -> bool {
    std::env::var("IRR_EC2_BUCKETS").map_or(true, |v| v != "off")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec2_buckets_empty_and_refill() {
        let mut b = Buckets::ec2(Instant::now());
        let op = "ec2:ModifyNetworkInterfaceAttribute";
        for _ in 0..100 {
            assert_eq!(b.take(op, Meter::Mutating), None);
        }
        assert_eq!(
            b.take(op, Meter::Mutating),
            Some("ModifyNetworkInterfaceAttribute")
        );
        // Other buckets are separate.
        assert_eq!(b.take("ec2:CreateTags", Meter::Mutating), None);
        assert_eq!(b.take("ec2:DescribeInstances", Meter::Read), None);
        // 50 unfiltered reads, then throttled.
        for _ in 0..50 {
            assert_eq!(b.take("ec2:DescribeVolumes", Meter::UnfilteredRead), None);
        }
        assert_eq!(
            b.take("ec2:DescribeVolumes", Meter::UnfilteredRead),
            Some("unfiltered-non-mutating")
        );
        // Not EC2: never throttled by this model.
        assert_eq!(b.take("iam:CreateRole", Meter::Other), None);
        // Refill: 5 a second.
        let bucket = b.bucket("ModifyNetworkInterfaceAttribute").unwrap();
        let later = bucket.at + Duration::from_millis(1000);
        let taken = (0..10).filter(|_| bucket.take(later)).count();
        assert_eq!(taken, 5);
    }

    #[test]
    fn reservations_queue_callers_at_the_refill_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(3.0, 5.0, t0);
        let waits: Vec<Duration> = (0..6).map(|_| b.reserve(t0)).collect();
        assert_eq!(&waits[..3], &[Duration::ZERO; 3], "the burst is free");
        // Then one every 200 ms, in arrival order.
        for (i, w) in waits[3..].iter().enumerate() {
            let expected = 0.2 * (i + 1) as f64;
            assert!((w.as_secs_f64() - expected).abs() < 1e-9, "{i}: {w:?}");
        }
        // A throttled answer drains it: the next caller waits a full token's refill.
        let mut b = Bucket::new(100.0, 5.0, t0);
        b.drain(t0);
        let w = b.reserve(t0);
        assert!((w.as_secs_f64() - 0.2).abs() < 1e-9, "{w:?}");
    }

    #[test]
    fn the_limiter_never_lets_more_through_than_ec2_accepts() {
        // Simulated time: EC2's buckets and irr's, N calls of one action all at once; each
        // call reaches EC2 when its reservation says. None is refused.
        let t0 = Instant::now();
        let mut ec2 = Buckets::ec2(t0);
        let mut ours = Buckets::scaled(t0, 0.98, 1.0);
        let op = "ec2:ModifyNetworkInterfaceAttribute";
        let name = bucket_of(op, Meter::Mutating).unwrap();
        let mut arrivals: Vec<Duration> = (0..400)
            .map(|_| ours.bucket(name).unwrap().reserve(t0))
            .collect();
        arrivals.sort();
        let refused = arrivals
            .iter()
            .filter(|d| !ec2.bucket(name).unwrap().take(t0 + **d))
            .count();
        assert_eq!(refused, 0);
        // And the last one goes at about the floor: (400 - 100) / 5 s, 2% slower.
        let last = arrivals.last().unwrap().as_secs_f64();
        assert!(last > 60.0 && last < 63.0, "{last}");
    }

    #[test]
    fn metering_by_request_text() {
        assert_eq!(
            Meter::of_ec2(
                "DescribeInstances",
                "Action=DescribeInstances&Version=2016-11-15"
            ),
            Meter::UnfilteredRead
        );
        assert_eq!(
            Meter::of_ec2(
                "DescribeInstances",
                "Action=DescribeInstances&Filter.1.Name=instance-id"
            ),
            Meter::Read
        );
        assert_eq!(
            Meter::of_ec2("CreateTags", "Action=CreateTags"),
            Meter::Mutating
        );
    }
}
