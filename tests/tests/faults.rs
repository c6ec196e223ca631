//! Fault injection: a proxy between `irr` and the emulator answers about 10% of requests with
//! throttling (HTTP 400 `Throttling` / `RequestLimitExceeded`, S3: 503 `SlowDown`), HTTP 500
//! `InternalError`, a dropped connection (before the request reaches the emulator, or after
//! it was processed, so the answer is lost), or added latency. The containment playbook must
//! still succeed with the same final AWS state as an unfaulted run: isolated, one snapshot per
//! volume, nothing created twice.
//!
//! Faults are chosen by a seeded generator over the requests in arrival order; besides that,
//! the first request of each non-idempotent operation (`CreateSnapshot`, `CreateSecurityGroup`,
//! `CreateRole`, `DisassociateIamInstanceProfile`) is processed by the emulator and its answer
//! dropped: the client's retry must then reconcile with what was already done.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use irr_tests::{
    compromised_instance, contained, irr_with, json_lines, output_text, playbook, unique, Contained,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    /// 400 Throttling (IAM, STS, Auto Scaling, CloudFormation), 400 RequestLimitExceeded
    /// (EC2), 503 SlowDown (S3).
    Throttle,
    /// 500 InternalError.
    ServerError,
    /// Connection closed before the request is forwarded.
    DropBefore,
    /// The request is processed by the emulator, then the connection is closed unanswered.
    DropAfter,
    /// 300 to 900 ms before forwarding.
    Latency,
}

const KINDS: [Fault; 5] = [
    Fault::Throttle,
    Fault::ServerError,
    Fault::DropBefore,
    Fault::DropAfter,
    Fault::Latency,
];

/// Operations whose answer is lost the first time they are seen.
const TARGETED: [&str; 4] = [
    "CreateSnapshot",
    "CreateSecurityGroup",
    "CreateRole",
    "DisassociateIamInstanceProfile",
];

struct Proxy {
    upstream: std::net::SocketAddr,
    seed: u64,
    /// One in `one_in` requests is faulted.
    one_in: u64,
    counter: AtomicU64,
    injected: Mutex<BTreeMap<Fault, usize>>,
    targeted_done: Mutex<Vec<String>>,
    log: Mutex<Vec<String>>,
}

/// splitmix64: a small, seeded, deterministic generator.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Proxy {
    async fn start(upstream: &str, seed: u64, one_in: u64) -> (Arc<Proxy>, String) {
        let upstream = irr_runner::emulator::loopback_addr(upstream).expect("loopback emulator");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let proxy = Arc::new(Proxy {
            upstream,
            seed,
            one_in,
            counter: AtomicU64::new(0),
            injected: Mutex::new(BTreeMap::new()),
            targeted_done: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
        });
        let p = proxy.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let p = p.clone();
                tokio::spawn(async move {
                    let _ = p.serve(client).await;
                });
            }
        });
        (proxy, format!("http://{addr}"))
    }

    /// The fault for the next request (in arrival order), if any.
    fn choose(&self, operation: &str) -> Option<Fault> {
        if TARGETED.contains(&operation) {
            let mut done = self.targeted_done.lock().unwrap();
            if !done.iter().any(|o| o == operation) {
                done.push(operation.to_owned());
                return Some(Fault::DropAfter);
            }
        }
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let r = mix(self.seed ^ mix(n));
        if !r.is_multiple_of(self.one_in) {
            return None;
        }
        // Every kind in turn (so a short run still sees each), starting where the seed says.
        let faulted = self
            .injected
            .lock()
            .unwrap()
            .values()
            .copied()
            .sum::<usize>();
        Some(KINDS[(faulted + (self.seed as usize)) % KINDS.len()])
    }

    /// One request per client connection (the emulator answers `Connection: close`, and so do
    /// the proxy's own answers).
    async fn serve(&self, mut client: TcpStream) -> std::io::Result<()> {
        let Some(request) = read_message(&mut client, None).await? else {
            return Ok(());
        };
        let head = head_of(&request);
        let service = service_of(&head);
        let operation = operation_of(&request);
        let fault = self.choose(&operation);
        if let Some(f) = fault {
            *self.injected.lock().unwrap().entry(f).or_default() += 1;
            self.log
                .lock()
                .unwrap()
                .push(format!("{f:?} {service}:{operation}"));
        }
        match fault {
            Some(Fault::Throttle) => {
                let (status, body) = throttle_body(&service);
                client.write_all(&answer(status, &body)).await?;
                return client.shutdown().await;
            }
            Some(Fault::ServerError) => {
                let body = error_body(
                    &service,
                    "InternalError",
                    "We encountered an internal error. Please try again.",
                );
                client
                    .write_all(&answer("500 Internal Server Error", &body))
                    .await?;
                return client.shutdown().await;
            }
            Some(Fault::DropBefore) => return Ok(()), // dropped: the client sees EOF
            Some(Fault::Latency) => {
                let ms = 300 + mix(self.seed ^ request.len() as u64) % 600;
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            Some(Fault::DropAfter) | None => {}
        }
        let mut up = TcpStream::connect(self.upstream).await?;
        up.write_all(&request).await?;
        // The answer to a HEAD request has no body, whatever its Content-Length says.
        let response = read_message(&mut up, Some(head.starts_with("HEAD ")))
            .await?
            .unwrap_or_default();
        if fault == Some(Fault::DropAfter) {
            return Ok(()); // processed upstream; the answer is lost
        }
        client.write_all(&response).await?;
        client.shutdown().await
    }
}

/// Reads one HTTP/1.1 message (head and body: Content-Length, chunked, or, for a response
/// without either, until the connection closes). `response` is `None` for a request, else
/// whether the response answers a HEAD request. `None` when the peer closed before sending
/// anything.
async fn read_message(
    s: &mut TcpStream,
    response: Option<bool>,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(std::io::Error::other("connection closed inside a head"))
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let header = |name: &str| {
        head.lines().find_map(|l| {
            l.strip_prefix(&format!("{name}:"))
                .map(|v| v.trim().to_owned())
        })
    };
    let no_body = response.is_some_and(|to_head| {
        to_head || head.starts_with("http/1.1 204") || head.starts_with("http/1.1 304")
    });
    if no_body {
        return Ok(Some(buf));
    }
    if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while buf.len() < head_end + len {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::other("connection closed inside a body"));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.truncate(head_end + len);
        return Ok(Some(buf));
    }
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        // Walk the chunks: SIZE\r\n DATA\r\n ... 0\r\n [trailers] \r\n
        let mut pos = head_end;
        loop {
            let line_end = loop {
                if let Some(i) = find(&buf[pos..], b"\r\n") {
                    break pos + i;
                }
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::Error::other("connection closed inside a chunk"));
                }
                buf.extend_from_slice(&chunk[..n]);
            };
            let size_text = String::from_utf8_lossy(&buf[pos..line_end]).to_string();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                .map_err(|e| std::io::Error::other(format!("chunk size {size_text:?}: {e}")))?;
            if size == 0 {
                // Trailers end with an empty line.
                let mut t = line_end + 2;
                loop {
                    if let Some(i) = find(&buf[t..], b"\r\n") {
                        if i == 0 {
                            buf.truncate(t + 2);
                            return Ok(Some(buf));
                        }
                        t += i + 2;
                        continue;
                    }
                    let n = s.read(&mut chunk).await?;
                    if n == 0 {
                        return Err(std::io::Error::other("connection closed in trailers"));
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
            }
            let next = line_end + 2 + size + 2;
            while buf.len() < next {
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::Error::other("connection closed inside a chunk"));
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            pos = next;
        }
    }
    if response.is_some() {
        s.read_to_end(&mut buf).await?;
    }
    Ok(Some(buf))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn head_of(msg: &[u8]) -> String {
    let end = find(msg, b"\r\n\r\n").unwrap_or(msg.len());
    String::from_utf8_lossy(&msg[..end]).into_owned()
}

/// The signing service of a request (`Credential=KEY/DATE/REGION/SERVICE/aws4_request`).
fn service_of(head: &str) -> String {
    head.lines()
        .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
        .and_then(|l| l.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(3))
        .unwrap_or("unknown")
        .to_owned()
}

/// `Action=NAME` of a query-protocol request, or the request line for others.
fn operation_of(msg: &[u8]) -> String {
    let text = String::from_utf8_lossy(msg);
    if let Some(i) = text.find("Action=") {
        return text[i + 7..]
            .split(['&', '\r', '\n'])
            .next()
            .unwrap_or_default()
            .to_owned();
    }
    text.lines().next().unwrap_or_default().to_owned()
}

fn error_body(service: &str, code: &str, message: &str) -> String {
    let rid = "00000000-0000-0000-0000-00000000fa17";
    match service {
        "ec2" => format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>{rid}</RequestID></Response>"
        ),
        "s3" => format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{rid}</RequestId></Error>"
        ),
        _ => format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>{rid}</RequestId></ErrorResponse>"
        ),
    }
}

fn throttle_body(service: &str) -> (&'static str, String) {
    match service {
        "s3" => (
            "503 Slow Down",
            error_body(service, "SlowDown", "Please reduce your request rate."),
        ),
        "ec2" => (
            "400 Bad Request",
            error_body(service, "RequestLimitExceeded", "Request limit exceeded."),
        ),
        _ => (
            "400 Bad Request",
            error_body(service, "Throttling", "Rate exceeded"),
        ),
    }
}

fn answer(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nx-amzn-RequestId: 00000000-0000-0000-0000-00000000fa17\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn run_containment(
    endpoint: String,
    instance_id: String,
    case: String,
) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        let state = tempfile::tempdir().unwrap();
        let evidence = tempfile::tempdir().unwrap();
        let pb = playbook("ec2-instance-compromise.yaml");
        let input = format!("instance_id={instance_id}");
        irr_with(
            &[
                "run",
                pb.to_str().unwrap(),
                "--case",
                &case,
                "--input",
                &input,
                "--yes",
                "--evidence",
                evidence.path().to_str().unwrap(),
                "--output",
                "json",
            ],
            state.path(),
            &endpoint,
            ("testing", "testing"),
            &[],
        )
    })
    .await
    .unwrap()
}

/// The CloudFormation clean room is judged by its own tests (it is being built, and moto's
/// CloudFormation is synchronous and partial); this test is about the containment steps.
const NOT_JUDGED: &[&str] = &["clean-room"];

/// Every step but [`NOT_JUDGED`] succeeded.
fn contained_ok(out: &std::process::Output) -> Result<(), String> {
    let last = json_lines(out).pop().ok_or_else(|| output_text(out))?;
    let bad: Vec<String> = last["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| {
            s["status"] != "succeeded" && !NOT_JUDGED.contains(&s["id"].as_str().unwrap_or(""))
        })
        .map(|s| format!("{} {} {}", s["id"], s["status"], s["error"]))
        .collect();
    if bad.is_empty() && last["steps"].as_array().is_some_and(|s| s.len() >= 7) {
        Ok(())
    } else {
        Err(format!("{bad:#?}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn containment_survives_throttling_errors_drops_and_latency() {
    let conf = irr_tests::sdk_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let iam = aws_sdk_iam::Client::new(&conf);

    // The unfaulted reference.
    let plain = compromised_instance(&ec2, &iam).await;
    let plain_case = unique("IR-plain");
    let out = run_containment(
        irr_tests::endpoint(),
        plain.instance_id.clone(),
        plain_case.clone(),
    )
    .await;
    contained_ok(&out).unwrap_or_else(|e| panic!("the unfaulted run failed: {e}"));
    let reference = contained(&ec2, &iam, &plain, &plain_case).await;
    assert_eq!(reference, Contained::expected(plain.volumes.len()));

    // The same through the faulty proxy.
    let (proxy, proxy_endpoint) = Proxy::start(&irr_tests::endpoint(), 0x1bad_5eed, 10).await;
    let inc = compromised_instance(&ec2, &iam).await;
    let case = unique("IR-faults");
    let out = run_containment(proxy_endpoint, inc.instance_id.clone(), case.clone()).await;
    let log = proxy.log.lock().unwrap().join("\n");
    if let Err(e) = contained_ok(&out) {
        panic!("the run failed under faults:\n{log}\n{e}");
    }
    let faulted = contained(&ec2, &iam, &inc, &case).await;
    assert_eq!(faulted, reference, "faults injected:\n{log}");

    // Every kind of fault was injected, and every targeted operation lost an answer.
    let injected = proxy.injected.lock().unwrap().clone();
    for k in KINDS {
        assert!(
            injected.get(&k).copied().unwrap_or(0) > 0,
            "{k:?} never injected: {injected:?}\n{log}"
        );
    }
    let targeted = proxy.targeted_done.lock().unwrap().clone();
    for op in TARGETED {
        assert!(
            targeted.iter().any(|t| t == op),
            "{op} was never called through the proxy: {targeted:?}"
        );
    }
    eprintln!(
        "{} requests, faults {injected:?}\n{log}",
        proxy.counter.load(Ordering::SeqCst)
    );
}
