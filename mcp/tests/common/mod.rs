//! Helpers shared by the integration tests: a `darkmatter` process spoken to in raw JSON-RPC, and a
//! scratch project directory per node.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_darkmatter");

/// A fresh empty directory (a "project").
pub fn project(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dm-mcp-test-{}-{}-{}", name, std::process::id(), nanos()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

/// A free TCP port on 127.0.0.1 (free when asked; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `darkmatter` with its stdio.
pub struct Proc {
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Value>,
    next_id: u64,
    /// Notifications seen so far.
    pub notifications: Vec<Value>,
    pub started: Instant,
}

/// Runs `cmd` in `dir` as a test node: its home is `dir`, it serves 127.0.0.1:`port` and uses no
/// discovery and no anchors.
pub fn test_node_env<'a>(cmd: &'a mut Command, dir: &Path, port: u16) -> &'a mut Command {
    cmd.current_dir(dir)
        .env("HOME", dir)
        .env("DARKMATTER_HOST", "127.0.0.1")
        .env("DARKMATTER_PORT", port.to_string())
        .env("DARKMATTER_PUBLIC_URL", format!("http://127.0.0.1:{port}"))
        .env("DARKMATTER_DISCOVERY", "false")
        .env("DARKMATTER_ANCHOR_NODES", "")
        // A client CLI installed on the test machine must never be started by a test that is not
        // about spawning (tests/spawn.rs turns it on with stand-ins).
        .env("DARKMATTER_AGENT_ENABLED", "false")
}

impl Proc {
    /// Starts `darkmatter` in `dir` on `port` (127.0.0.1, no discovery, no anchors).
    pub fn start(dir: &Path, port: u16, extra: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(BIN);
        cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        test_node_env(&mut cmd, dir, port).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let started = Instant::now();
        let mut child = cmd.spawn().expect("spawn darkmatter");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v: Value =
                    serde_json::from_str(&line).unwrap_or_else(|e| panic!("stdout is not JSON-RPC ({e}): {line}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Proc { child, stdin, lines: rx, next_id: 1, notifications: Vec::new(), started }
    }

    /// Writes one JSON-RPC message.
    pub fn send(&mut self, v: &Value) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{v}").unwrap();
        stdin.flush().unwrap();
    }

    /// Sends a request and waits for its answer (notifications that arrive meanwhile are kept).
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        self.answer(id, Duration::from_secs(30))
    }

    /// Waits for the answer with this id.
    pub fn answer(&mut self, id: u64, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) if v["id"] == json!(id) => return v,
                Ok(v) => self.notifications.push(v),
                Err(RecvTimeoutError::Timeout) => panic!("no answer to request {id} within {timeout:?}"),
                Err(RecvTimeoutError::Disconnected) => panic!("darkmatter closed stdout before answering request {id}"),
            }
        }
    }

    /// `initialize` + `notifications/initialized`; returns the initialize result.
    pub fn initialize(&mut self) -> Value {
        let r = self.request("initialize", json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "rust-test", "version": "0"}}));
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        r["result"].clone()
    }

    /// Calls a tool; returns (is_error, structured content).
    pub fn call(&mut self, tool: &str, args: Value) -> (bool, Value) {
        let r = self.request("tools/call", json!({"name": tool, "arguments": args}));
        let res = &r["result"];
        assert!(res.is_object(), "tools/call {tool} failed at the protocol level: {r}");
        let text: Value =
            serde_json::from_str(res["content"][0]["text"].as_str().expect("text content")).expect("text is JSON");
        assert_eq!(text, res["structuredContent"], "text and structured content agree");
        (res["isError"] == json!(true), res["structuredContent"].clone())
    }

    /// Calls a tool that must succeed.
    pub fn ok(&mut self, tool: &str, args: Value) -> Value {
        let (err, v) = self.call(tool, args.clone());
        assert!(!err, "{tool}({args}) failed: {v}");
        v
    }

    /// Waits up to `timeout` for a notification matching `pred`.
    pub fn wait_notification(&mut self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        if let Some(n) = self.notifications.iter().find(|n| pred(n)) {
            return Some(n.clone());
        }
        let deadline = Instant::now() + timeout;
        while let Ok(v) = self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            let hit = pred(&v);
            self.notifications.push(v.clone());
            if hit {
                return Some(v);
            }
        }
        None
    }

    /// Closes stdin and waits (bounded) for the process to exit; returns whether it did.
    pub fn close(&mut self, timeout: Duration) -> bool {
        self.stdin.take();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stdin.take();
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            std::thread::sleep(Duration::from_millis(200));
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `f` every 50 ms for up to `timeout`.
pub fn until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}
