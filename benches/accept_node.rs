//! `accept-node`: the inbound accept path of a real node process, for counting its instructions
//! under callgrind (used by `benches/compare.sh`).
//!
//! ```text
//! accept-node <node-binary> <count> [<wrapper> <args>...]
//! ```
//! Starts two headless nodes (`<node-binary>` is `darkmatter-node` or the tests' `smol-node`) on
//! loopback: A plainly, B under `<wrapper> <args>...` (e.g. `valgrind --tool=callgrind ...`). A
//! connects to B through the real handshake; B's rate limits are lifted. Then `count` envelopes
//! signed with A's key in both forms (exactly as A's own send signs them) are POSTed to B one at a
//! time on one keep-alive connection, each answered 200. Their webhooks point at a sink in this
//! process; each message is sent only after B's `received` callback for the one before arrived, so
//! B's work for two messages never overlaps and its count does not depend on thread timing. Then B
//! is stopped (end of its stdin). `count` is at most the inbox size, so nothing has to be consumed: B's process does the
//! accept path (HTTP read and parse, checks, one signature verification, replay record, inbox
//! insert, persist, reply, callback) and nothing else per message.
//!
//! B's total instructions include its start-up and shutdown; the difference between two counts,
//! divided by the difference in messages, is the cost of one message. Prints one JSON line.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proto_core::limits::INBOX_MAX;
use proto_core::message::envelope_v2_bytes;
use proto_core::wire::message::MessageEnvelope;
use proto_core::{sign, Passport};
use serde_json::{json, Value};

/// Wait for a node's ready line and for each control answer, in ms (B may run under valgrind,
/// some fifty times slower than native).
const NODE_WAIT_MS: u64 = 180_000;
/// Wait for one HTTP answer from B, in ms.
const HTTP_WAIT_MS: u64 = 60_000;
/// Wait for B's webhook callback of one message, in ms.
const CALLBACKS_WAIT_MS: u64 = 120_000;
/// Wait for a node to exit after its stdin closed, in ms; then it is killed.
const EXIT_WAIT_MS: u64 = 60_000;
/// Longest HTTP head or body the sink and the client read, in bytes.
const HTTP_BYTES_MAX: usize = 1024 * 1024;
/// Sink connections served at once; callbacks beyond are refused by the closed accept loop.
const SINK_CONNECTIONS_MAX: usize = 1_000;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(node), Some(Ok(count))) = (args.first(), args.get(1).map(|c| c.parse::<usize>())) else {
        eprintln!("usage: accept-node <node-binary> <count> [<wrapper> <args>...]");
        return ExitCode::from(2);
    };
    if count == 0 || count > INBOX_MAX {
        eprintln!("accept-node: count must be 1..={INBOX_MAX} (the inbox holds {INBOX_MAX}; nothing is consumed)");
        return ExitCode::from(2);
    }
    match run(Path::new(node), count, &args[2..]) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("accept-node: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(node: &Path, count: usize, wrapper: &[String]) -> Result<Value, String> {
    let dirs = Dirs::new()?;
    let node_cmd = vec![node.to_string_lossy().into_owned()];
    let b_cmd: Vec<String> = wrapper.iter().cloned().chain(node_cmd.iter().cloned()).collect();
    let mut a = NodeProc::spawn(&node_cmd, &dirs.a, "bench-a")?;
    let mut b = NodeProc::spawn(&b_cmd, &dirs.b, "bench-b")?;
    let a_id = field(&a.ready, "agent_id")?;
    let b_id = field(&b.ready, "agent_id")?;
    let b_addr: SocketAddr = field(&b.ready, "listen")?.parse().map_err(|e| format!("B's listen address: {e}"))?;
    let c = a.call(json!({"cmd": "connect", "target_url": field(&b.ready, "url")?}))?;
    if c["status"] != "connected" {
        return Err(format!("A did not connect to B: {c}"));
    }
    b.call(json!({"cmd": "set_rate_limit", "limit": -1}))?;
    b.call(json!({"cmd": "set_rate_limit", "limit": -1, "agent_id": a_id}))?;
    let passport = passport_in(&dirs.a)?;
    let sink = Sink::start()?;
    let requests: Vec<Vec<u8>> =
        (0..count).map(|i| request(&passport, &b_id, b_addr, &sink.url, &format!("msg-acc{i:09x}"))).collect();
    let mut s = TcpStream::connect(b_addr).map_err(|e| format!("connect to B: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_millis(HTTP_WAIT_MS))).map_err(|e| e.to_string())?;
    // One message at a time, the next only after B's callback for this one has arrived: B's work
    // for different messages never interleaves, so its count does not depend on thread timing.
    for (i, req) in requests.iter().enumerate() {
        s.write_all(req).map_err(|e| format!("message {i}: {e}"))?;
        let status = read_status(&mut s).map_err(|e| format!("message {i}: {e}"))?;
        if status != 200 {
            return Err(format!("message {i}: HTTP {status}"));
        }
        sink.wait_for(i + 1)?;
    }
    drop(s);
    let b_exit = b.stop();
    a.stop();
    Ok(json!({"messages": count, "callbacks": sink.received.load(Ordering::Acquire), "b_exit": b_exit}))
}

fn field(v: &Value, name: &str) -> Result<String, String> {
    v[name].as_str().map(str::to_owned).ok_or_else(|| format!("no '{name}' in {v}"))
}

fn passport_in(dir: &Path) -> Result<Passport, String> {
    let path = dir.join(".darkmatter").join("passport.key");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Passport::from_file_contents(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// One POST of an envelope from A to B, signed in 0.5.3's legacy form and in ours, as A signs.
fn request(a: &Passport, b_id: &str, b_addr: SocketAddr, sink: &str, message_id: &str) -> Vec<u8> {
    let a_id = a.agent_id().as_str().to_owned();
    let ts = proto_core::time::format_iso(now_us());
    let content = format!("accept path {message_id}: the quick brown fox jumps over the lazy dog, a short agent text.");
    let legacy = sign::legacy_message_bytes(&a_id, message_id, &ts, &content).expect("no newline in the fields");
    let mut e = MessageEnvelope {
        message_id: message_id.to_owned(),
        content,
        webhook: format!("{sink}/__darkmatter__/webhook/{message_id}"),
        hops_remaining: 10,
        metadata: Some(Default::default()),
        timestamp: ts,
        from_agent_id: a_id.clone(),
        from_public_key_hex: Some(a_id),
        signature_hex: sign::sign_hex(a, &legacy),
        to_agent_id: Some(b_id.to_owned()),
        ..Default::default()
    };
    e.dm_signature_hex = Some(sign::sign_hex(a, &envelope_v2_bytes(&e, "{}")));
    let body = proto_core::wire::encode(&e);
    let mut req = format!(
        "POST /__darkmatter__/message HTTP/1.1\r\nHost: {b_addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    req
}

/// Reads one HTTP message (head and `Content-Length` body); returns the head's first line's
/// second word as a number (the status of a response) and the head.
fn read_message(s: &mut TcpStream) -> Result<(String, usize), String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if buf.len() > HTTP_BYTES_MAX {
            return Err("head too long".into());
        }
        match s.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            Ok(_) => return Err("closed".into()),
            Err(e) => return Err(e.to_string()),
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
        .map(|v| v.parse().unwrap_or(0))
        .unwrap_or(0);
    if len > HTTP_BYTES_MAX {
        return Err("body too long".into());
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).map_err(|e| e.to_string())?;
    Ok((head, len))
}

fn read_status(s: &mut TcpStream) -> Result<u16, String> {
    let (head, _) = read_message(s)?;
    head.split(' ').nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| format!("no status in {head:?}"))
}

/// A loopback HTTP server answering every request 200 `{}` and counting them (B's callbacks).
struct Sink {
    url: String,
    received: Arc<AtomicUsize>,
}

impl Sink {
    fn start() -> Result<Self, String> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("sink: {e}"))?;
        let url = format!("http://{}", listener.local_addr().map_err(|e| e.to_string())?);
        let received = Arc::new(AtomicUsize::new(0));
        let counter = received.clone();
        // Detached: it ends with the process.
        std::thread::spawn(move || {
            for stream in listener.incoming().take(SINK_CONNECTIONS_MAX) {
                let Ok(mut s) = stream else { continue };
                let counter = counter.clone();
                std::thread::spawn(move || {
                    let _ = s.set_read_timeout(Some(Duration::from_millis(HTTP_WAIT_MS)));
                    while read_message(&mut s).is_ok() {
                        counter.fetch_add(1, Ordering::AcqRel);
                        let ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
                        if s.write_all(ok).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Ok(Self { url, received })
    }
}

impl Sink {
    /// Waits until `n` callbacks have arrived, at most [`CALLBACKS_WAIT_MS`].
    fn wait_for(&self, n: usize) -> Result<(), String> {
        let end = Instant::now() + Duration::from_millis(CALLBACKS_WAIT_MS);
        while self.received.load(Ordering::Acquire) < n {
            if Instant::now() > end {
                return Err(format!("{} of {n} callbacks arrived", self.received.load(Ordering::Acquire)));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }
}

/// The two nodes' state directories, removed when dropped.
struct Dirs {
    root: PathBuf,
    a: PathBuf,
    b: PathBuf,
}

impl Dirs {
    fn new() -> Result<Self, String> {
        let root = std::env::temp_dir().join(format!("dm-accept-node-{}-{}", std::process::id(), now_us()));
        let (a, b) = (root.join("a"), root.join("b"));
        for d in [&a, &b] {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        Ok(Self { root, a, b })
    }
}

impl Drop for Dirs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A headless node child driven over its control lines; killed when dropped while still running.
struct NodeProc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Value>,
    ready: Value,
    next_id: u64,
}

impl NodeProc {
    fn spawn(cmd: &[String], dir: &Path, name: &str) -> Result<Self, String> {
        let mut child = Command::new(&cmd[0])
            .args(&cmd[1..])
            .current_dir(dir)
            .env("HOME", dir)
            .env("DARKMATTER_HOST", "127.0.0.1")
            .env("DARKMATTER_PORT", "0")
            .env("DARKMATTER_DISCOVERY", "false")
            .env("DARKMATTER_ANCHOR_NODES", "")
            .env("DARKMATTER_DISPLAY_NAME", name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", cmd[0]))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, lines) = mpsc::channel();
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
        let stdin = child.stdin.take();
        let mut me = Self { child, stdin, lines, ready: Value::Null, next_id: 1 };
        me.ready =
            me.lines.recv_timeout(Duration::from_millis(NODE_WAIT_MS)).map_err(|_| format!("{name}: no ready line"))?;
        if me.ready["ready"] != true {
            return Err(format!("{name}: {}", me.ready));
        }
        Ok(me)
    }

    /// One control command that must succeed; its result.
    fn call(&mut self, mut line: Value) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        line["id"] = json!(id);
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        writeln!(stdin, "{line}").and_then(|_| stdin.flush()).map_err(|e| format!("control: {e}"))?;
        let end = Instant::now() + Duration::from_millis(NODE_WAIT_MS);
        loop {
            let left = end.checked_duration_since(Instant::now()).ok_or("control answer timed out")?;
            let v = self.lines.recv_timeout(left).map_err(|_| format!("no answer to {line}"))?;
            if v["id"] == json!(id) {
                return if v["ok"] == true { Ok(v["result"].clone()) } else { Err(format!("{line}: {v}")) };
            }
        }
    }

    /// Closes stdin (a clean stop) and waits; kills after [`EXIT_WAIT_MS`]. The exit code, if any.
    fn stop(&mut self) -> Option<i32> {
        self.stdin = None;
        let end = Instant::now() + Duration::from_millis(EXIT_WAIT_MS);
        while Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        self.child.wait().ok().and_then(|s| s.code())
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
