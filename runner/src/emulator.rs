//! The local AWS emulator (moto's standalone server) on loopback.
//!
//! Drills (`irr gameday`) and the test suite run against it, never against a real account.
//! [`Emulator::start`] starts `moto_server` (or `python3 -m moto.server`) on a free port of
//! 127.0.0.1, waits until it answers, and stops it when dropped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running emulator, stopped when dropped.
#[derive(Debug)]
pub struct Emulator {
    child: Child,
    port: u16,
}

/// Why the emulator could not be started.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// Neither `moto_server` nor `python3 -m moto.server` could be started.
    #[error("could not start the AWS emulator (moto_server): {0}; install it with: pip install 'moto[server]==5.2.1'")]
    Spawn(String),
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
        let mut emu = Emulator { child, port };
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

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }
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
