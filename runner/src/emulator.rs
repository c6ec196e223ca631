//! The local AWS emulators on loopback: moto's standalone server (the default) and
//! LocalStack (community core, a second, independent implementation of S3, CloudFormation and
//! Step Functions; its EC2, IAM and STS are built on moto's backends).
//!
//! Drills (`irr gameday`) and the test suite run against them, never against a real account.
//! [`Emulator::start`] starts `moto_server` (or `python3 -m moto.server`) on a free port of
//! 127.0.0.1, waits until it answers, and stops it when dropped; [`Emulator::start_kind`]
//! starts either, LocalStack from the venv `scripts/ensure-localstack` installs
//! ([`localstack_home`]).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which emulator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum EmulatorKind {
    /// moto's standalone server (`moto[server]`, installed by `scripts/ensure-emulator`).
    #[default]
    Moto,
    /// LocalStack community core (installed by `scripts/ensure-localstack`).
    Localstack,
}

impl EmulatorKind {
    /// `moto` / `localstack`.
    pub fn as_str(self) -> &'static str {
        match self {
            EmulatorKind::Moto => "moto",
            EmulatorKind::Localstack => "localstack",
        }
    }

    /// The account id the emulator answers for (any credentials).
    pub fn account_id(self) -> &'static str {
        match self {
            EmulatorKind::Moto => "123456789012",
            EmulatorKind::Localstack => "000000000000",
        }
    }
}

/// The services irr uses, which LocalStack must report available before it is used.
pub const LOCALSTACK_SERVICES: &[&str] = &[
    "ec2",
    "iam",
    "s3",
    "sts",
    "cloudformation",
    "stepfunctions",
    "kms",
    "logs",
    "events",
    "sns",
];

/// A running emulator, stopped when dropped.
#[derive(Debug)]
pub struct Emulator {
    child: Child,
    port: u16,
    kind: EmulatorKind,
}

/// Why the emulator could not be started.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// Neither `moto_server` nor `python3 -m moto.server` could be started.
    #[error("could not start the AWS emulator (moto_server): {0}; install it with: pip install 'moto[server]==5.2.1'")]
    Spawn(String),
    /// LocalStack is not installed where `scripts/ensure-localstack` puts it, or exited.
    #[error("could not start LocalStack: {0}")]
    LocalStack(String),
    /// It started but never answered.
    #[error("the AWS emulator on port {port} did not answer within {secs} s")]
    NotReady {
        /// The port it was started on.
        port: u16,
        /// How long we waited.
        secs: u64,
    },
}

impl Emulator {
    /// Starts moto's server on a free loopback port and waits (up to 60 s) until it answers.
    pub fn start() -> Result<Emulator, EmulatorError> {
        Emulator::start_with_env(&[])
    }

    /// Like [`Emulator::start`], with environment variables for the server (e.g.
    /// `INITIAL_NO_AUTH_ACTION_COUNT` to make it enforce IAM).
    pub fn start_with_env(env: &[(&str, &str)]) -> Result<Emulator, EmulatorError> {
        let port = free_port().map_err(|e| EmulatorError::Spawn(e.to_string()))?;
        let child = spawn(port, env)?;
        let mut emu = Emulator {
            child,
            port,
            kind: EmulatorKind::Moto,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = emu.child.try_wait() {
                return Err(EmulatorError::Spawn(format!(
                    "moto_server exited with {status}"
                )));
            }
            if is_ready(&emu.endpoint()) {
                return Ok(emu);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = emu.child.kill();
        Err(EmulatorError::NotReady { port, secs: 60 })
    }

    /// Starts an emulator of that kind on a free loopback port and waits until it answers
    /// (moto: 60 s; LocalStack: 180 s, until its health check shows [`LOCALSTACK_SERVICES`]
    /// available).
    pub fn start_kind(kind: EmulatorKind) -> Result<Emulator, EmulatorError> {
        match kind {
            EmulatorKind::Moto => Emulator::start(),
            EmulatorKind::Localstack => Emulator::start_localstack(),
        }
    }

    fn start_localstack() -> Result<Emulator, EmulatorError> {
        let home = localstack_home().ok_or_else(|| {
            EmulatorError::LocalStack(
                "neither IRR_LOCALSTACK_HOME, XDG_CACHE_HOME nor HOME is set".into(),
            )
        })?;
        let python = home.join("venv/bin/python");
        let cert = home.join("server.pem");
        if !python.exists() || !cert.exists() {
            return Err(EmulatorError::LocalStack(format!(
                "it is not installed in {} (no venv/bin/python or server.pem); install it with scripts/ensure-localstack",
                home.display()
            )));
        }
        let port = free_port().map_err(|e| EmulatorError::LocalStack(e.to_string()))?;
        // The same settings as scripts/start-localstack: loopback only, no DNS server, no
        // certificate download, no usage events; its data lives in a temporary directory that
        // the supervisor removes once LocalStack has stopped. Through `irr_localstack` (JSONata
        // without a JVM download) where scripts/ensure-localstack has installed it.
        let script = format!(
            "d=$(mktemp -d \"${{TMPDIR:-/tmp}}/irr-localstack-{port}.XXXXXX\") || exit 1; \
             e=irr_localstack; \"$IRR_LS_PYTHON\" -c 'import irr_localstack' 2>/dev/null || e=localstack.runtime.main; \
             LOCALSTACK_VOLUME_DIR=\"$d\" \"$IRR_LS_PYTHON\" -m $e & \
             m=$!; trap 'kill $m 2>/dev/null; wait $m; rm -rf \"$d\"' EXIT; trap 'exit' TERM INT; \
             while kill -0 {parent} 2>/dev/null && kill -0 $m 2>/dev/null; do sleep 1; done",
            parent = std::process::id()
        );
        let listen = format!("127.0.0.1:{port}");
        let services = LOCALSTACK_SERVICES.join(",");
        let child = Command::new("sh")
            .args(["-c", &script])
            .env("IRR_LS_PYTHON", &python)
            .env("CUSTOM_SSL_CERT_PATH", &cert)
            .env("SKIP_SSL_CERT_DOWNLOAD", "1")
            .env("RUNTIME_COMPONENTS", "aws")
            .env("GATEWAY_LISTEN", &listen)
            .env("LOCALSTACK_HOST", &listen)
            .env("DNS_ADDRESS", "0")
            .env("DISABLE_EVENTS", "1")
            // Access keys LocalStack creates start AKIA, as AWS's do (by default LKIA, which
            // an access_key_id input rightly refuses: docs/emulator-notes.md).
            .env("PARITY_AWS_ACCESS_KEY_ID", "1")
            .env("SERVICES", &services)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| EmulatorError::LocalStack(e.to_string()))?;
        let mut emu = Emulator {
            child,
            port,
            kind: EmulatorKind::Localstack,
        };
        let secs = 180;
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = emu.child.try_wait() {
                return Err(EmulatorError::LocalStack(format!(
                    "it exited with {status} (run scripts/start-localstack to see its log)"
                )));
            }
            if localstack_ready(&emu.endpoint()) {
                return Ok(emu);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        // Drop stops it.
        Err(EmulatorError::NotReady { port, secs })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Which emulator it is.
    pub fn kind(&self) -> EmulatorKind {
        self.kind
    }
}

/// Where `scripts/ensure-localstack` installs LocalStack (`venv/`, `server.pem`):
/// `$IRR_LOCALSTACK_HOME`, else `$XDG_CACHE_HOME/irr/localstack`, else
/// `$HOME/.cache/irr/localstack`.
pub fn localstack_home() -> Option<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(h) = var("IRR_LOCALSTACK_HOME") {
        return Some(PathBuf::from(h));
    }
    let cache = var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(cache.join("irr").join("localstack"))
}

/// `true` when LocalStack's `GET ENDPOINT/_localstack/health` reports every service of
/// [`LOCALSTACK_SERVICES`] `available` or `running`. Only loopback endpoints are probed; the
/// answer is read up to 256 KiB.
pub fn localstack_ready(endpoint: &str) -> bool {
    let Some(body) = http_get(endpoint, "/_localstack/health") else {
        return false;
    };
    localstack_health_ok(&body)
}

/// Whether a health document shows every needed service available or running.
pub fn localstack_health_ok(body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    LOCALSTACK_SERVICES.iter().all(|s| {
        matches!(
            v["services"][s].as_str(),
            Some("available") | Some("running")
        )
    })
}

/// The body of a 200 answer to `GET PATH` (HTTP/1.1, `Connection: close`), at most 256 KiB.
fn http_get(endpoint: &str, path: &str) -> Option<Vec<u8>> {
    let addr = loopback_addr(endpoint)?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).ok()?;
    let mut all = Vec::new();
    stream.take(256 * 1024).read_to_end(&mut all).ok()?;
    if !all.starts_with(b"HTTP/1.1 200") {
        return None;
    }
    let split = all.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&all[..split]).to_ascii_lowercase();
    let body = &all[split + 4..];
    if head.contains("transfer-encoding: chunked") {
        return Some(dechunk(body));
    }
    Some(body.to_vec())
}

/// Joins the chunks of a chunked body (a malformed one yields what could be read).
fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(nl) = b.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&b[..nl])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok());
        let Some(size) = size.filter(|n| *n > 0) else {
            break;
        };
        let start = nl + 2;
        let Some(chunk) = b.get(start..start + size) else {
            break;
        };
        out.extend_from_slice(chunk);
        b = b.get(start + size + 2..).unwrap_or_default();
    }
    out
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // SIGTERM lets the supervisor stop the server on its way out.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn spawn(port: u16, env: &[(&str, &str)]) -> Result<Child, EmulatorError> {
    // A small supervisor runs the server and stops it when this process goes away, even if
    // it never gets to drop the `Emulator` (a test harness keeping one in a static, a panic,
    // a kill): it polls our pid once a second.
    let script = format!(
        "if command -v moto_server >/dev/null 2>&1; then moto_server -H 127.0.0.1 -p {port} & \
         else python3 -m moto.server -H 127.0.0.1 -p {port} & fi; \
         m=$!; trap 'kill $m 2>/dev/null' EXIT TERM INT; \
         while kill -0 {parent} 2>/dev/null && kill -0 $m 2>/dev/null; do sleep 1; done",
        parent = std::process::id()
    );
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &script]).envs(env.iter().copied());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| EmulatorError::Spawn(e.to_string()))
}

/// `true` when `GET ENDPOINT/moto-api/` answers 200. Only loopback endpoints are probed.
pub fn is_ready(endpoint: &str) -> bool {
    let Some(addr) = loopback_addr(endpoint) else {
        return false;
    };
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET /moto-api/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// Parses `http://127.0.0.1:PORT` (or `localhost`) into a socket address.
pub fn loopback_addr(endpoint: &str) -> Option<SocketAddr> {
    let rest = endpoint.strip_prefix("http://")?;
    let hostport = rest.split('/').next()?;
    let (host, port) = hostport.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let ip = match host {
        "localhost" | "127.0.0.1" => std::net::Ipv4Addr::LOCALHOST,
        _ => return None,
    };
    Some(SocketAddr::from((ip, port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_needs_every_service() {
        let all: serde_json::Map<String, serde_json::Value> = LOCALSTACK_SERVICES
            .iter()
            .map(|s| (s.to_string(), serde_json::json!("available")))
            .collect();
        let mut doc = serde_json::json!({"services": all, "version": "2026.3.0"});
        assert!(localstack_health_ok(doc.to_string().as_bytes()));
        doc["services"]["s3"] = serde_json::json!("running");
        assert!(localstack_health_ok(doc.to_string().as_bytes()));
        doc["services"]["ec2"] = serde_json::json!("initializing");
        assert!(!localstack_health_ok(doc.to_string().as_bytes()));
        doc["services"].as_object_mut().unwrap().remove("ec2");
        assert!(!localstack_health_ok(doc.to_string().as_bytes()));
        assert!(!localstack_health_ok(b"<html>"));
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(
            dechunk(b"4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n"),
            b"Wikipedia"
        );
        assert_eq!(dechunk(b"zz\r\nWiki"), b"");
        assert_eq!(dechunk(b"ff\r\nWiki"), b"");
    }

    #[test]
    fn localstack_home_prefers_its_own_variable() {
        // Read-only check of the precedence on this process's environment.
        if let Some(h) = std::env::var_os("IRR_LOCALSTACK_HOME").filter(|v| !v.is_empty()) {
            assert_eq!(localstack_home(), Some(PathBuf::from(h)));
        } else if let Some(home) = localstack_home() {
            assert!(home.ends_with("irr/localstack"), "{}", home.display());
        }
    }
}
