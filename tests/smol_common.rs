//! Helpers shared by the runtime-smol tests (`smol_*.rs`): temporary state directories, in-process
//! nodes, the headless node as a child process, raw HTTP on loopback, and signed envelopes.
//!
//! Every node binds 127.0.0.1 with discovery off unless a test says otherwise; every wait is bounded.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command as Proc, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proto_core::{Command, Passport};
use runtime_smol::admission::Admission;
use runtime_smol::{NodeHandle, Running, RuntimeConfig};
use serde_json::{json, Value};

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
        let p = std::env::temp_dir().join(format!("dm-smol-{tag}-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The configuration of a test node: loopback, any port, no background discovery.
pub fn test_config(dir: &Path, name: &str, vars: &[(&str, &str)]) -> RuntimeConfig {
    let mut map: HashMap<String, String> = [
        ("DARKMATTER_HOST", "127.0.0.1"),
        ("DARKMATTER_PORT", "0"),
        ("DARKMATTER_DISCOVERY", "false"),
        ("DARKMATTER_DISPLAY_NAME", name),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in vars {
        map.insert(k.to_string(), v.to_string());
    }
    let mut c = RuntimeConfig::from_lookup(dir.to_owned(), |k| map.get(k).cloned()).expect("valid test config");
    c.handle_signals = false;
    c
}

/// An in-process node with its state in `dir`.
pub struct Node {
    pub handle: NodeHandle,
    running: Option<Running>,
}

impl Node {
    pub fn start(dir: &Path, name: &str, vars: &[(&str, &str)]) -> Self {
        let (handle, running) = runtime_smol::start(test_config(dir, name, vars)).expect("node starts");
        Self { handle, running: Some(running) }
    }

    /// A node whose peer server keeps its per-source accounting in `admission`.
    pub fn start_with_admission(dir: &Path, name: &str, admission: Arc<Admission>) -> Self {
        let config = test_config(dir, name, &[]);
        let (handle, running) = runtime_smol::start_with_admission(config, admission).expect("node starts");
        Self { handle, running: Some(running) }
    }

    pub fn url(&self) -> String {
        self.handle.public_url().to_owned()
    }

    pub fn id(&self) -> String {
        self.handle.agent_id().to_owned()
    }

    pub fn addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }

    /// Runs a command, panicking on an error.
    pub fn cmd(&self, c: Command) -> Value {
        let what = format!("{c:?}");
        self.handle.command_blocking(c).unwrap_or_else(|e| panic!("{what} failed: {e}"))
    }

    pub fn stop(mut self) {
        smol::block_on(self.handle.shutdown());
        if let Some(r) = self.running.take() {
            r.wait().expect("clean stop");
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            smol::block_on(self.handle.shutdown());
            let _ = r.wait();
        }
    }
}

/// Polls `f` every 20 ms until it returns `Some`, or panics after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Connects two in-process nodes (`a` asks `b`), expecting local auto-accept on both sides.
pub fn connect(a: &Node, b: &Node) {
    let r = a.cmd(Command::Connect { target_url: b.url() });
    assert_eq!(r["status"], "connected", "{r}");
    let a_id = a.id();
    wait_for("the target to list the connection", Duration::from_secs(5), || {
        let l = b.cmd(Command::ListConnections);
        l["connections"].as_array().unwrap().iter().any(|c| c["agent_id"] == a_id.as_str()).then_some(())
    });
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Two adjacent free ports (p, p + 1).
pub fn free_port_pair() -> u16 {
    for _ in 0..200 {
        let a = free_port();
        if a < u16::MAX && TcpListener::bind(("127.0.0.1", a + 1)).is_ok() {
            return a;
        }
    }
    panic!("no adjacent free ports");
}

/// Sends raw bytes and reads the whole answer (the server closes or answers within `timeout`).
pub fn raw_exchange(addr: SocketAddr, request: &[u8], timeout: Duration) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(request)?;
    read_response(&mut s)
}

/// Reads one HTTP response (head plus `Content-Length` body) from a stream.
pub fn read_response(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                buf.truncate(end + 4 + len);
                return Ok(buf);
            }
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Ok(buf);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Status and JSON body of a raw response.
pub fn parse_response(raw: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(raw);
    let status: u16 =
        text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = find(raw, b"\r\n\r\n").map(|i| &raw[i + 4..]).unwrap_or(&[]);
    let json = serde_json::from_slice(body).unwrap_or_else(|_| panic!("body of {status} is not JSON: {text:?}"));
    (status, json)
}

/// One request with `Connection: close`; returns status and JSON body.
pub fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, Value)> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).into_bytes();
    req.extend_from_slice(body);
    let raw = raw_exchange(addr, &req, Duration::from_secs(10))?;
    if raw.is_empty() {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(parse_response(&raw))
}

/// Wall-clock microseconds (tests may read clocks; the core may not).
pub fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as i64
}

/// A passport from a test-chosen seed.
pub fn passport(seed: u8) -> Passport {
    Passport::from_seed([seed; 32])
}

/// A message envelope signed in 0.5.3's legacy form by `signer`, claiming to come from `from`.
pub fn envelope(signer: &Passport, from: &str, message_id: &str, content: &str) -> Value {
    let ts = proto_core::time::format_iso(now_us());
    let bytes = proto_core::sign::legacy_message_bytes(from, message_id, &ts, content).unwrap();
    let sig = proto_core::sign::sign_hex(signer, &bytes);
    json!({
        "message_id": message_id, "content": content, "webhook": "http://127.0.0.1:1/__darkmatter__/webhook/x",
        "hops_remaining": 3, "metadata": {}, "timestamp": ts, "from_agent_id": from, "signature_hex": sig,
    })
}

/// Where the headless node binary is (built by Cargo for this test crate).
pub fn node_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_smol-node"))
}

/// The headless node as a child process, driven over its stdin/stdout control lines.
pub struct ChildNode {
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Value>,
    pub ready: Value,
    next_id: u64,
}

impl ChildNode {
    /// Starts `program args...` (the node binary, or `ip netns exec ...`) in `cwd` with `vars`.
    pub fn spawn_with(program: &Path, args: &[&str], cwd: &Path, vars: &[(&str, &str)]) -> Self {
        let mut cmd = Proc::new(program);
        cmd.args(args).current_dir(cwd).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn node");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        });
        let ready = rx.recv_timeout(Duration::from_secs(20)).expect("node printed its ready line");
        assert_eq!(ready["ready"], true, "{ready}");
        let stdin = child.stdin.take();
        Self { child, stdin, lines: rx, ready, next_id: 1 }
    }

    /// Starts the headless binary.
    pub fn spawn(cwd: &Path, vars: &[(&str, &str)]) -> Self {
        Self::spawn_with(&node_binary(), &[], cwd, vars)
    }

    /// Sends one control line and waits for its answer (`None` if the node died or did not answer).
    pub fn request(&mut self, mut line: Value, timeout: Duration) -> Option<Value> {
        let id = self.next_id;
        self.next_id += 1;
        line["id"] = json!(id);
        let stdin = self.stdin.as_mut()?;
        writeln!(stdin, "{line}").ok()?;
        stdin.flush().ok()?;
        let end = Instant::now() + timeout;
        loop {
            let left = end.checked_duration_since(Instant::now())?;
            let v = self.lines.recv_timeout(left).ok()?;
            if v["id"] == json!(id) {
                return Some(v);
            }
        }
    }

    /// A control command that must succeed; returns its result.
    pub fn ok(&mut self, line: Value) -> Value {
        let what = line.to_string();
        let v = self.request(line, Duration::from_secs(20)).unwrap_or_else(|| panic!("no answer to {what}"));
        assert_eq!(v["ok"], true, "{what}: {v}");
        v["result"].clone()
    }

    pub fn agent_id(&self) -> String {
        self.ready["agent_id"].as_str().unwrap().to_owned()
    }

    pub fn url(&self) -> String {
        self.ready["url"].as_str().unwrap().to_owned()
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Closes stdin (the node stops gracefully) and waits up to `timeout` for the exit status.
    pub fn close_and_wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.stdin.take();
        let end = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
