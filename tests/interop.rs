//! Interop with the original node: dmagent 0.5.3 from PyPI (in the venv `darkmatter_tests::python`
//! creates) against the Rust headless node, both on loopback.
//!
//! The Python node runs as `python -m darkmatter.app` in plain HTTP mode (no stdio MCP), with anchors,
//! discovery, agent spawning and the WormHole web UI off and `DARKMATTER_PUBLIC_URL` set (without it
//! 0.5.3 probes UPnP at start-up and dies on a host with no LAN). Its `HOME` and state file live in a
//! temporary directory. Its "user" is `tests/interop/dmctl.py`, which drives the node's own MCP tools
//! over `/mcp` with the official `mcp` 1.x client and answers JSON lines like the Rust control does.
//!
//! Tests (each with its own nodes):
//! - `rust_and_python_connect_both_ways_and_exchange_signed_messages`: a Rust node requests and the
//!   Python node auto-accepts; the Python node requests and a Rust node's user accepts; both sides
//!   list each other with the pinned key; signed messages both ways land verified; webhook callbacks.
//! - `replays_and_forgeries_are_refused_both_ways`: real envelopes each side sent (captured by a
//!   logging fake peer that both nodes are connected to) posted again and tampered.
//! - `signed_peer_updates_move_stored_urls_both_ways`: each node restarts on a new port and announces
//!   it with a signed `peer_update`; the other side's stored URL follows.
//!
//! The benchmark of the issue (`bench_signed_messages_rust_pair_vs_python_pair`) is `#[ignore]`d;
//! run it in release mode, see its documentation.
//!
//! A missing venv is a failure, not a skip: `python::python()` creates it (network access to PyPI).

#[path = "smol_common.rs"]
mod common;

use std::fs::File;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Proc, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{free_port, http, now_us, read_response, ChildNode, TempDir};
use darkmatter_tests::python;
use proto_core::{sign, Passport};
use serde_json::{json, Value};

// ------------------------------------------------------------------------------------------------
// The Python node and its user
// ------------------------------------------------------------------------------------------------

/// The venv's python; panics (fails the test) when the venv cannot be created.
fn venv_python() -> PathBuf {
    python::python().unwrap_or_else(|e| {
        panic!("cannot create the dmagent 0.5.3 virtualenv (pip install dmagent==0.5.3 'mcp[cli]<2'): {e}")
    })
}

fn dmctl_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop").join("dmctl.py")
}

/// A dmagent 0.5.3 node as a child process, with its working directory (identity) and state file.
struct PyNode {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
    log: PathBuf,
}

impl PyNode {
    /// Starts 0.5.3 in `dir` on a free port (another one if the port was taken meanwhile).
    fn start_on_free_port(dir: &Path, name: &str) -> Self {
        let mut last = String::new();
        for _ in 0..5 {
            match Self::try_start(dir, free_port(), name) {
                Ok(node) => return node,
                Err(log) if log.contains("address already in use") => last = log,
                Err(log) => panic!("dmagent 0.5.3 exited at start-up:\n{log}"),
            }
        }
        panic!("no free port for dmagent 0.5.3:\n{last}");
    }

    /// Starts 0.5.3 in `dir` on `port`; panics if it does not come up.
    fn start(dir: &Path, port: u16, name: &str) -> Self {
        Self::try_start(dir, port, name).unwrap_or_else(|log| panic!("dmagent 0.5.3 exited at start-up:\n{log}"))
    }

    /// Starts 0.5.3 in `dir` (its passport lives in `dir/.darkmatter/`) on `port`, and waits until it
    /// serves its card. `Err` holds its log when it exited first.
    fn try_start(dir: &Path, port: u16, name: &str) -> Result<Self, String> {
        let py = venv_python();
        let log = dir.join(format!("node-{port}.log"));
        let out = File::create(&log).unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let child = Proc::new(&py)
            .args(["-m", "darkmatter.app"])
            .current_dir(dir)
            .env("HOME", dir)
            .env("DARKMATTER_HOST", "127.0.0.1")
            .env("DARKMATTER_PORT", port.to_string())
            .env("DARKMATTER_PUBLIC_URL", &url)
            .env("DARKMATTER_ANCHOR_NODES", "")
            .env("DARKMATTER_DISCOVERY", "false")
            .env("DARKMATTER_AGENT_ENABLED", "false")
            .env("DARKMATTER_ENTRYPOINT_AUTOSTART", "false")
            .env("DARKMATTER_TRANSPORT", "http")
            .env("DARKMATTER_STATE_FILE", dir.join("state.json"))
            .env("DARKMATTER_DISPLAY_NAME", name)
            .env("COLUMNS", "200")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} -m darkmatter.app: {e}", py.display()));
        let mut node = Self { child: Some(child), dir: dir.to_owned(), port, log };
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, card)) = http(addr, "GET", "/.well-known/darkmatter.json", b"") {
                assert_eq!(card["mesh_url"], format!("{url}/__darkmatter__"), "{card}");
                break;
            }
            if let Some(status) = node.child.as_mut().unwrap().try_wait().unwrap() {
                node.child = None;
                return Err(format!("({status})\n{}", node.log_text()));
            }
            assert!(Instant::now() < end, "dmagent 0.5.3 did not serve its card within 60 s:\n{}", node.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(node)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn addr(&self) -> SocketAddr {
        format!("127.0.0.1:{}", self.port).parse().unwrap()
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn agent_id(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join(".darkmatter").join("passport.key")).unwrap();
        Passport::from_file_contents(&text).unwrap().agent_id().as_str().to_owned()
    }

    fn state_file(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM (uvicorn's graceful stop), then SIGKILL after 10 s.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Proc::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The node's user: `dmctl.py` with an MCP session on this node.
    fn user(&self) -> ChildNode {
        let py = venv_python();
        let script = dmctl_script();
        let state = self.state_file();
        let dir = self.dir.to_string_lossy().into_owned();
        ChildNode::spawn_with(
            &py,
            &[script.to_str().unwrap(), &self.url(), state.to_str().unwrap()],
            &self.dir,
            &[("HOME", &dir)],
        )
    }
}

impl Drop for PyNode {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The Python node's persisted connections (with the pinned keys), by agent id.
fn py_connections(user: &mut ChildNode) -> serde_json::Map<String, Value> {
    user.ok(json!({"cmd": "state"}))["connections"].as_object().cloned().unwrap_or_default()
}

// ------------------------------------------------------------------------------------------------
// Rust nodes
// ------------------------------------------------------------------------------------------------

const RUST_VARS: [(&str, &str); 4] = [
    ("DARKMATTER_HOST", "127.0.0.1"),
    ("DARKMATTER_PORT", "0"),
    ("DARKMATTER_DISCOVERY", "false"),
    ("DARKMATTER_ANCHOR_NODES", ""),
];

fn rust_node(dir: &Path, name: &str, extra: &[(&str, &str)]) -> ChildNode {
    let mut vars: Vec<(&str, &str)> = RUST_VARS.to_vec();
    vars.push(("DARKMATTER_DISPLAY_NAME", name));
    vars.extend_from_slice(extra);
    ChildNode::spawn(dir, &vars)
}

fn rust_connection(node: &mut ChildNode, agent_id: &str) -> Option<Value> {
    let l = node.ok(json!({"cmd": "list_connections"}));
    l["connections"].as_array().unwrap().iter().find(|c| c["agent_id"] == agent_id).cloned()
}

fn rust_inbox_message(node: &mut ChildNode, message_id: &str) -> Option<Value> {
    let l = node.ok(json!({"cmd": "list_inbox"}));
    l["messages"].as_array().unwrap().iter().find(|m| m["message_id"] == message_id).cloned()
}

fn py_inbox_message(user: &mut ChildNode, message_id: &str) -> Option<Value> {
    let l = user.ok(json!({"cmd": "inbox"}));
    l["messages"].as_array().unwrap().iter().find(|m| m["message_id"] == message_id).cloned()
}

/// Polls every 100 ms (each probe is a control round trip) until `f` returns `Some`.
fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ------------------------------------------------------------------------------------------------
// A logging fake peer: records every request, answers 200 {"success":true} (400 to WebRTC offers)
// ------------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Captured {
    method: String,
    path: String,
    body: Vec<u8>,
}

struct Logger {
    addr: SocketAddr,
    passport: Passport,
    log: Arc<Mutex<Vec<Captured>>>,
}

impl Logger {
    fn start(seed: u8) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let log: Arc<Mutex<Vec<Captured>>> = Arc::default();
        let sink = log.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { return };
                let sink = sink.clone();
                std::thread::spawn(move || {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    let Ok(raw) = read_response(&mut s) else { return };
                    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else { return };
                    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
                    let mut parts = head.split(' ');
                    let (method, path) = (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("").to_owned());
                    let (status, body) = if path.ends_with("/webrtc_offer") {
                        ("400 Bad Request", r#"{"error":"no WebRTC here"}"#)
                    } else {
                        ("200 OK", r#"{"success":true}"#)
                    };
                    sink.lock().unwrap().push(Captured { method, path, body: raw[end + 4..].to_vec() });
                    let _ = write!(s, "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                });
            }
        });
        Self { addr, passport: Passport::from_seed([seed; 32]), log }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn id(&self) -> String {
        self.passport.agent_id().as_str().to_owned()
    }

    /// The body of the message envelope `pred` picks, once it has arrived.
    fn wait_message(&self, what: &str, pred: impl Fn(&Value) -> bool) -> (Vec<u8>, Value) {
        poll(what, Duration::from_secs(20), || {
            self.log
                .lock()
                .unwrap()
                .iter()
                .filter(|c| c.method == "POST" && c.path == "/__darkmatter__/message")
                .find_map(|c| {
                    let v: Value = serde_json::from_slice(&c.body).ok()?;
                    pred(&v).then(|| (c.body.clone(), v))
                })
        })
    }

    /// Asks `target` for a connection the way 0.5.3 does, proving its key when challenged.
    fn request_connection(&self, target: SocketAddr) -> Value {
        let req = json!({
            "from_agent_id": self.id(), "from_agent_url": self.url(), "from_agent_bio": "a logging fake peer",
            "from_agent_public_key_hex": self.id(), "from_agent_display_name": "logger", "created_at": proto_core::time::format_iso(now_us()),
        });
        let (status, answer) =
            http(target, "POST", "/__darkmatter__/connection_request", req.to_string().as_bytes()).unwrap();
        assert_eq!(status, 200, "{answer}");
        if let (Some(ch_id), Some(ch_hex)) = (answer["challenge_id"].as_str(), answer["challenge_hex"].as_str()) {
            let bytes = sign::domain_bytes(sign::DOMAIN_CHALLENGE, &[ch_hex]).unwrap();
            let proof = json!({"challenge_id": ch_id, "proof_hex": sign::sign_hex(&self.passport, &bytes), "agent_id": self.id(), "public_key_hex": self.id()});
            let (status, body) =
                http(target, "POST", "/__darkmatter__/connection_proof", proof.to_string().as_bytes()).unwrap();
            assert_eq!(status, 200, "the Rust node checks a correct proof: {body}");
        }
        answer
    }
}

// ------------------------------------------------------------------------------------------------
// Envelopes
// ------------------------------------------------------------------------------------------------

/// A message envelope in 0.5.3's form (legacy signature only), signed by `signer` for `from`.
fn legacy_envelope(
    signer: &Passport,
    from: &str,
    key_hex: Option<&str>,
    message_id: &str,
    content: &str,
    webhook: &str,
) -> Value {
    let ts = proto_core::time::format_iso(now_us());
    let bytes = sign::legacy_message_bytes(from, message_id, &ts, content).unwrap();
    let mut e = json!({
        "message_id": message_id, "content": content, "webhook": webhook, "hops_remaining": 10, "metadata": {},
        "timestamp": ts, "from_agent_id": from, "signature_hex": sign::sign_hex(signer, &bytes),
    });
    if let Some(k) = key_hex {
        e["from_public_key_hex"] = json!(k);
    }
    e
}

fn post_message(to: SocketAddr, body: &[u8]) -> (u16, Value) {
    http(to, "POST", "/__darkmatter__/message", body).unwrap()
}

/// `(status, body)` of posting `envelope` with one top-level string field replaced.
fn post_tampered(to: SocketAddr, envelope: &Value, field: &str, value: &str) -> (u16, Value) {
    let mut e = envelope.clone();
    e[field] = json!(value);
    post_message(to, e.to_string().as_bytes())
}

// ------------------------------------------------------------------------------------------------
// Tests
// ------------------------------------------------------------------------------------------------

#[test]
fn rust_and_python_connect_both_ways_and_exchange_signed_messages() {
    let (dp, d1, d2) = (TempDir::new("py"), TempDir::new("r1"), TempDir::new("r2"));
    let py = PyNode::start_on_free_port(dp.path(), "py-node");
    let p_id = py.agent_id();
    let mut user = py.user();
    let mut r1 = rust_node(d1.path(), "rust-requester", &[]);
    let mut r2 = rust_node(d2.path(), "rust-acceptor", &[("DARKMATTER_AUTO_ACCEPT_LOCAL", "false")]);
    let (r1_id, r2_id) = (r1.agent_id(), r2.agent_id());

    // 1. The Rust node requests; 0.5.3 auto-accepts a local requester; the answer is the acceptance.
    let c = r1.ok(json!({"cmd": "connect", "target_url": py.url()}));
    assert_eq!(c["status"], "connected", "{c}");
    assert_eq!(c["agent_id"], p_id.as_str(), "{c}");
    let conn = rust_connection(&mut r1, &p_id).expect("the Rust node lists the Python node");
    // The Rust node pins the key the id is (it binds agent_id == public key, so `agent_id` is the key).
    // 0.5.3's auto-accept answer proves nothing, so the requester does not mark it identity-verified.
    assert_eq!(conn["url"].as_str(), Some(py.url().as_str()), "{conn}");
    let pc = py_connections(&mut user);
    let pinned = pc.get(&r1_id).unwrap_or_else(|| panic!("0.5.3 lists the Rust node: {pc:?}"));
    assert_eq!(pinned["agent_public_key_hex"], r1_id.as_str(), "0.5.3 pinned the Rust node's key: {pinned}");
    assert_eq!(pinned["agent_url"], r1.url().as_str(), "{pinned}");

    // 2. The Python node requests; the Rust node (auto-accept off) queues it once 0.5.3's proof
    //    verifies; its user accepts; 0.5.3 takes the /connection_accepted callback.
    let req = user.ok(json!({"cmd": "connect", "target_url": r2.url()}));
    assert_eq!((req["success"].as_bool(), req["status"].as_str()), (Some(true), Some("pending")), "{req}");
    let pending = poll("the Rust node to list the pending request", Duration::from_secs(10), || {
        let l = r2.ok(json!({"cmd": "list_pending"}));
        l["requests"].as_array().unwrap().iter().find(|r| r["agent_id"] == p_id.as_str()).cloned()
    });
    assert_eq!(
        pending["request_id"], req["request_id"],
        "the Rust node answered with the request id it lists: {pending}"
    );
    assert_eq!(pending["identity_verified"], true, "0.5.3's challenge proof verified: {pending}");
    assert_eq!(pending["url"], py.url().as_str(), "{pending}");
    let acc = r2.ok(json!({"cmd": "accept", "request_id": pending["request_id"]}));
    assert_eq!((acc["accepted"].as_bool(), acc["status"].as_str()), (Some(true), Some("connected")), "{acc}");
    let conn = rust_connection(&mut r2, &p_id).expect("the accepting Rust node lists the Python node");
    assert_eq!(conn["identity_verified"], true, "{conn}");
    let pinned = poll("0.5.3 to store the accepted connection", Duration::from_secs(10), || {
        py_connections(&mut user).get(&r2_id).cloned()
    });
    assert_eq!(pinned["agent_public_key_hex"], r2_id.as_str(), "{pinned}");
    assert_eq!(pinned["agent_url"], r2.url().as_str(), "{pinned}");

    // 3. Rust -> Python: a signed message lands verified; 0.5.3's `received` callback is recorded.
    let s = r1.ok(json!({"cmd": "send", "target_agent_id": p_id, "content": "hello 0.5.3 ✓\nfrom rust"}));
    assert_eq!(s["routed_to"], json!([p_id]), "{s}");
    let m1 = s["message_id"].as_str().unwrap().to_owned();
    let got = poll("the message in 0.5.3's inbox", Duration::from_secs(10), || py_inbox_message(&mut user, &m1));
    assert_eq!((got["verified"].as_bool(), got["from_agent_id"].as_str()), (Some(true), Some(r1_id.as_str())), "{got}");
    let full = user.ok(json!({"cmd": "get_message", "message_id": m1}));
    assert_eq!(full["content"], "hello 0.5.3 ✓\nfrom rust", "{full}");
    let sent = poll("0.5.3's received callback on the Rust node", Duration::from_secs(15), || {
        let s = r1.ok(json!({"cmd": "get_sent", "message_id": m1}));
        s["updates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["type"] == "received" && u["agent_id"] == p_id.as_str())
            .then_some(s)
    });
    let receipt = sent["updates"].as_array().unwrap().iter().find(|u| u["agent_id"] == p_id.as_str()).cloned();
    assert_eq!(receipt.unwrap()["verified"], false, "0.5.3 does not sign its updates: {sent}");
    assert_eq!(sent["status"], "active", "{sent}");

    // 4. Python -> Rust, to each Rust node.
    for (r, r_id) in [(&mut r1, &r1_id), (&mut r2, &r2_id)] {
        let s = user.ok(json!({"cmd": "send", "target_agent_id": r_id, "content": "hello rust, from 0.5.3"}));
        assert_eq!((s["success"].as_bool(), &s["routed_to"]), (Some(true), &json!([r_id])), "{s}");
        let m2 = s["message_id"].as_str().unwrap().to_owned();
        let got = poll("the message in the Rust inbox", Duration::from_secs(10), || rust_inbox_message(r, &m2));
        assert_eq!(
            (got["verified"].as_bool(), got["from_agent_id"].as_str(), got["from_connection"].as_bool()),
            (Some(true), Some(p_id.as_str()), Some(true)),
            "{got}"
        );
        // 0.5.3 signs only the legacy form; its author is the connection, so it is shown verified.
        assert_eq!(got["verification"], "legacy-from-connection", "{got}");
        assert_eq!(got["content"], "hello rust, from 0.5.3", "{got}");
        // The Rust node calls back 0.5.3's webhook with `received`. 0.5.3 records a sent message only
        // after every delivery of it has returned, so a prompt callback can find no record (404);
        // the callback itself must have been made.
        let line = format!("\"POST /__darkmatter__/webhook/{m2} HTTP/1.1\"");
        let seen = poll("the Rust node's received callback at 0.5.3", Duration::from_secs(15), || {
            py.log_text().lines().find(|l| l.contains(&line)).map(str::to_owned)
        });
        let record = user.ok(json!({"cmd": "get", "path": format!("/__darkmatter__/webhook/{m2}")}));
        eprintln!("Rust -> 0.5.3 received callback: {seen}\n  0.5.3's webhook record: {}", record["body"]);
    }

    drop(user);
    r1.close_and_wait(Duration::from_secs(10));
    r2.close_and_wait(Duration::from_secs(10));
}

#[test]
fn replays_and_forgeries_are_refused_both_ways() {
    let (dp, dr) = (TempDir::new("py"), TempDir::new("r"));
    let py = PyNode::start_on_free_port(dp.path(), "py-node");
    let p_id = py.agent_id();
    let mut user = py.user();
    let mut r = rust_node(dr.path(), "rust-node", &[]);
    let r_id = r.agent_id();
    let r_addr: SocketAddr = r.ready["listen"].as_str().unwrap().parse().unwrap();
    let c = r.ok(json!({"cmd": "connect", "target_url": py.url()}));
    assert_eq!(c["status"], "connected", "{c}");

    // A fake peer both nodes are connected to records the exact envelopes each one sends.
    let logger = Logger::start(0x4c);
    let a = logger.request_connection(py.addr());
    assert_eq!(a["auto_accepted"], true, "{a}");
    let a = logger.request_connection(r_addr);
    assert!(a["auto_accepted"] == true || a["challenge_id"].is_string(), "{a}");
    poll("the Rust node to accept the proven local logger", Duration::from_secs(10), || {
        rust_connection(&mut r, &logger.id())
    });

    // --- 0.5.3's envelope, refused by the Rust node when replayed or tampered ---
    // No target: 0.5.3 posts one envelope to every connection (the Rust node and the logger).
    let s = user.ok(json!({"cmd": "send", "content": "from 0.5.3 to everyone"}));
    let mp = s["message_id"].as_str().unwrap().to_owned();
    assert_eq!(s["routed_to"].as_array().map(Vec::len), Some(2), "{s}");
    poll("the original in the Rust inbox", Duration::from_secs(10), || rust_inbox_message(&mut r, &mp));
    let (raw, env) = logger.wait_message("0.5.3's envelope at the logger", |v| v["message_id"] == mp.as_str());
    assert_eq!(
        (env["from_agent_id"].as_str(), env["signature_hex"].as_str().map(str::len)),
        (Some(p_id.as_str()), Some(128)),
        "{env}"
    );
    let (st, body) = post_message(r_addr, &raw);
    assert_eq!(st, 409, "replayed 0.5.3 envelope: {body}");
    let (st, body) = post_tampered(r_addr, &env, "message_id", "msg-0badc0ffee01");
    assert_eq!(st, 403, "0.5.3 envelope under a new id (signature covers the id): {body}");
    // Tampered content under an id the Rust node has not seen: an envelope 0.5.3 sent to the logger only.
    let s = user.ok(json!({"cmd": "send", "target_agent_id": logger.id(), "content": "from 0.5.3 to the logger"}));
    let mp2 = s["message_id"].as_str().unwrap().to_owned();
    let (_, env2) = logger.wait_message("0.5.3's second envelope at the logger", |v| v["message_id"] == mp2.as_str());
    let (st, body) = post_tampered(r_addr, &env2, "content", "from 0.5.3 to the logger, tampered");
    assert_eq!(st, 403, "tampered 0.5.3 envelope: {body}");
    let forged = legacy_envelope(
        &logger.passport,
        &p_id,
        Some(&logger.id()),
        "msg-f0f0f0f0f001",
        "forged as 0.5.3",
        "http://127.0.0.1:9/__darkmatter__/webhook/x",
    );
    let (st, body) = post_message(r_addr, forged.to_string().as_bytes());
    assert_eq!(st, 403, "claims 0.5.3's id, signed by another key: {body}");
    let forged = legacy_envelope(
        &logger.passport,
        &p_id,
        None,
        "msg-f0f0f0f0f002",
        "forged as 0.5.3",
        "http://127.0.0.1:9/__darkmatter__/webhook/x",
    );
    let (st, body) = post_message(r_addr, forged.to_string().as_bytes());
    assert_eq!(st, 403, "claims 0.5.3's id, no key, wrong signer: {body}");
    let ids: Vec<String> = r.ok(json!({"cmd": "list_inbox"}))["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, vec![mp.clone()], "only the original reached the Rust inbox");

    // --- the Rust node's envelope, refused by 0.5.3 when replayed or tampered ---
    let s = r.ok(json!({"cmd": "send", "target_agent_ids": [p_id, logger.id()], "content": "from rust to both"}));
    let mr = s["message_id"].as_str().unwrap().to_owned();
    assert_eq!(s["routed_to"].as_array().map(Vec::len), Some(2), "{s}");
    poll("the original in 0.5.3's inbox", Duration::from_secs(10), || py_inbox_message(&mut user, &mr));
    let (raw, env) = logger.wait_message("the Rust envelope at the logger", |v| v["message_id"] == mr.as_str());
    // The logger's copy carries the same legacy-signed fields (0.5.3 checks only those) and our own
    // recipient-bound signature for the logger, which 0.5.3 ignores.
    assert_eq!(
        (env["from_agent_id"].as_str(), env["to_agent_id"].as_str()),
        (Some(r_id.as_str()), Some(logger.id().as_str())),
        "{env}"
    );
    let (st, body) = post_message(py.addr(), &raw);
    assert_eq!(st, 409, "replayed Rust envelope: {body}");
    let (st, body) = post_tampered(py.addr(), &env, "message_id", "msg-0badc0ffee02");
    assert_eq!(st, 403, "Rust envelope under a new id: {body}");
    // Tampered content under an id 0.5.3 has not seen: an envelope the Rust node sent to the logger only.
    let s = r.ok(json!({"cmd": "send", "target_agent_id": logger.id(), "content": "from rust to the logger"}));
    let mr2 = s["message_id"].as_str().unwrap().to_owned();
    let (_, env2) = logger.wait_message("the second Rust envelope at the logger", |v| v["message_id"] == mr2.as_str());
    let (st, body) = post_tampered(py.addr(), &env2, "content", "from rust to the logger, tampered");
    assert_eq!(st, 403, "tampered Rust envelope: {body}");
    let forged = legacy_envelope(
        &logger.passport,
        &r_id,
        Some(&logger.id()),
        "msg-f0f0f0f0f003",
        "forged as rust",
        "http://127.0.0.1:9/__darkmatter__/webhook/x",
    );
    let (st, body) = post_message(py.addr(), forged.to_string().as_bytes());
    assert_eq!(st, 403, "claims the Rust id, signed by another key: {body}");
    let forged = legacy_envelope(
        &logger.passport,
        &r_id,
        None,
        "msg-f0f0f0f0f004",
        "forged as rust",
        "http://127.0.0.1:9/__darkmatter__/webhook/x",
    );
    let (st, body) = post_message(py.addr(), forged.to_string().as_bytes());
    assert_eq!(st, 403, "claims the Rust id, no key, wrong signer: {body}");
    let inbox = user.ok(json!({"cmd": "inbox"}));
    let ids: Vec<&str> =
        inbox["messages"].as_array().unwrap().iter().map(|m| m["message_id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![mr.as_str()], "only the original reached 0.5.3's inbox: {inbox}");

    drop(user);
    r.close_and_wait(Duration::from_secs(10));
}

#[test]
fn signed_peer_updates_move_stored_urls_both_ways() {
    let (dp, dr) = (TempDir::new("py"), TempDir::new("r"));
    let mut py = PyNode::start_on_free_port(dp.path(), "py-node");
    let p_id = py.agent_id();
    let mut user = py.user();
    let mut r = rust_node(dr.path(), "rust-node", &[]);
    let r_id = r.agent_id();
    let c = r.ok(json!({"cmd": "connect", "target_url": py.url()}));
    assert_eq!(c["status"], "connected", "{c}");
    let old_r_url = r.url();

    // The Rust node moves: same identity and state, new port. It notices the move at start-up and
    // announces its new URL with a signed peer_update.
    r.close_and_wait(Duration::from_secs(10)).expect("the Rust node stops");
    let mut r = rust_node(dr.path(), "rust-node", &[]);
    assert_eq!(r.agent_id(), r_id);
    let new_r_url = r.url();
    assert_ne!(new_r_url, old_r_url);
    let moved = poll("0.5.3 to store the Rust node's new URL", Duration::from_secs(10), || {
        py_connections(&mut user).get(&r_id).filter(|c| c["agent_url"] == new_r_url.as_str()).cloned()
    });
    assert_eq!(moved["agent_bio"], "A DarkMatter mesh agent.", "{moved}");
    // A bio change is announced the same way (only after the start-up announcement landed, so that
    // the two cannot overtake each other).
    let b = r.ok(json!({"cmd": "update_bio", "bio": "moved to a new port"}));
    assert_eq!(b["peers_notified"], 1, "{b}");
    poll("0.5.3 to store the Rust node's new bio", Duration::from_secs(10), || {
        py_connections(&mut user).get(&r_id).filter(|c| c["agent_bio"] == "moved to a new port").cloned()
    });
    // 0.5.3 reaches the Rust node at its new address.
    let s = user.ok(json!({"cmd": "send", "target_agent_id": r_id, "content": "found you"}));
    let m = s["message_id"].as_str().unwrap().to_owned();
    assert_eq!(s["routed_to"], json!([r_id]), "{s}");
    poll("the message at the moved Rust node", Duration::from_secs(10), || rust_inbox_message(&mut r, &m));

    // The Python node moves: same working directory (passport) and state file, new port. 0.5.3
    // announces to peers only on a bio change when it has no anchors.
    drop(user);
    py.stop();
    let py = PyNode::start_on_free_port(dp.path(), "py-node");
    assert_eq!(py.agent_id(), p_id);
    let mut user = py.user();
    // 0.5.3 tells a *local* peer its LAN URL, built by its own code: http://<LAN IP or localhost>:<port>.
    let announced = user.ok(json!({"cmd": "peer_update_url", "port": py.port}));
    let announced = announced.as_str().unwrap().to_owned();
    let b = user.ok(json!({"cmd": "update_bio", "bio": "0.5.3 moved too"}));
    assert_eq!(b["success"], true, "{b}");
    let conn = poll("the Rust node to store 0.5.3's new URL", Duration::from_secs(10), || {
        rust_connection(&mut r, &p_id).filter(|c| c["url"] == announced.as_str())
    });
    assert_eq!(conn["bio"], "0.5.3 moved too", "{conn}");
    eprintln!("0.5.3 announced {announced} (its bind address is {})", py.url());
    if announced.starts_with("http://localhost:") || announced.starts_with("http://127.0.0.1:") {
        let s = r.ok(json!({"cmd": "send", "target_agent_id": p_id, "content": "found you too"}));
        assert_eq!(s["routed_to"], json!([p_id]), "{s}");
    }

    drop(user);
    r.close_and_wait(Duration::from_secs(10));
}

// ------------------------------------------------------------------------------------------------
// Benchmark: signed messages from node A to node B, Rust pair vs dmagent 0.5.3 pair
// ------------------------------------------------------------------------------------------------

/// Messages in the throughput run.
const BENCH_MESSAGES: usize = 2_000;
/// Messages (untimed) sent and consumed before the throughput run.
const BENCH_WARMUP: usize = 50;
/// Single messages timed one at a time for the latency figures.
const BENCH_SINGLE: usize = 300;
/// Concurrent keep-alive HTTP connections posting to B.
const BENCH_CLIENTS: usize = 8;
/// Consume commands the drainer keeps in flight on B's user interface.
const BENCH_DRAIN_IN_FLIGHT: usize = 8;
/// Bursts of 50 messages (one inbox's worth) for the receive-path-only figure.
const BENCH_BURSTS: usize = 10;

/// A child process answering JSON lines (the Rust headless control, or `dmctl.py`), with pipelining:
/// `send` returns at once, answers arrive on `answers`.
struct Ctl {
    child: Child,
    stdin: std::process::ChildStdin,
    answers: std::sync::mpsc::Receiver<Value>,
    /// The sending side of `answers`, so that other threads can wake a reader of `answers`.
    tx: std::sync::mpsc::Sender<Value>,
    next_id: u64,
    ready: Value,
}

impl Ctl {
    fn spawn(program: &Path, args: &[&str], cwd: &Path, vars: &[(&str, &str)]) -> Self {
        use std::io::BufRead;
        let mut cmd = Proc::new(program);
        cmd.args(args).current_dir(cwd).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
        let stdout = child.stdout.take().unwrap();
        let (tx, answers) = std::sync::mpsc::channel();
        let reader_tx = tx.clone();
        std::thread::spawn(move || {
            let tx = reader_tx;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        });
        let ready = answers.recv_timeout(Duration::from_secs(60)).expect("ready line");
        assert_eq!(ready["ready"], true, "{ready}");
        let stdin = child.stdin.take().unwrap();
        Self { child, stdin, answers, tx, next_id: 1, ready }
    }

    fn send(&mut self, mut line: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        line["id"] = json!(id);
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
        id
    }

    /// One command, waiting for its answer; it must succeed.
    fn call(&mut self, line: Value) -> Value {
        let what = line.to_string();
        let id = self.send(line);
        loop {
            let v =
                self.answers.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("no answer to {what}"));
            if v["id"] == json!(id) {
                assert_eq!(v["ok"], true, "{what}: {v}");
                return v["result"].clone();
            }
        }
    }
}

impl Drop for Ctl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `VmHWM` and `VmRSS` of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// User plus system CPU time of a process so far (`/proc/<pid>/stat`, in clock ticks of 10 ms).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest.split_whitespace().map(|v| v.parse().unwrap_or(0)).collect();
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

/// CPU ticks per thread name of a process (`/proc/<pid>/task/*/stat`).
fn thread_ticks(pid: u32) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return out };
    for t in tasks.flatten() {
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let name = stat[open + 1..close].to_owned();
        let f: Vec<u64> = stat[close + 1..].split_whitespace().map(|v| v.parse().unwrap_or(0)).collect();
        *out.entry(name).or_insert(0) += f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    }
    out
}

/// One pair under test: where B listens, who A is (its passport signs the envelopes, as A's own
/// send would), how B's user consumes a message, and B's process for its memory.
struct BenchPair {
    label: &'static str,
    a_passport: Passport,
    a_url: String,
    b_id: String,
    b_addr: SocketAddr,
    b_pid: u32,
    a_pid: u32,
    /// B's user interface: Rust control `get_message consume:true`, or dmctl.py `get_message`
    /// (0.5.3's MCP `darkmatter_inbox(message_id)`, which removes the message from the queue).
    b_user: Ctl,
    /// Sign in the Rust form too (a Rust A signs both forms; a Rust B requires ours from a peer that
    /// speaks it), else 0.5.3's legacy form only.
    rust_form: bool,
    _keep: Vec<Box<dyn std::any::Any>>,
}

impl BenchPair {
    fn passport_in(dir: &Path) -> Passport {
        Passport::from_file_contents(&std::fs::read_to_string(dir.join(".darkmatter").join("passport.key")).unwrap())
            .unwrap()
    }

    fn rust(dirs: &[TempDir; 2]) -> Self {
        let bin = common::node_binary();
        let vars = |name: &'static str| -> Vec<(&'static str, &'static str)> {
            let mut v = RUST_VARS.to_vec();
            v.push(("DARKMATTER_DISPLAY_NAME", name));
            v
        };
        let mut a = Ctl::spawn(&bin, &[], dirs[0].path(), &vars("bench-a"));
        let mut b = Ctl::spawn(&bin, &[], dirs[1].path(), &vars("bench-b"));
        let (a_id, b_id) =
            (a.ready["agent_id"].as_str().unwrap().to_owned(), b.ready["agent_id"].as_str().unwrap().to_owned());
        let c = a.call(json!({"cmd": "connect", "target_url": b.ready["url"]}));
        assert_eq!(c["status"], "connected", "{c}");
        // Both nodes default to 0.5.3's 30/min per peer and 200/min overall; the benchmark lifts them.
        b.call(json!({"cmd": "set_rate_limit", "limit": -1}));
        b.call(json!({"cmd": "set_rate_limit", "limit": -1, "agent_id": a_id}));
        Self {
            label: "Rust pair (darkmatter-node)",
            a_passport: Self::passport_in(dirs[0].path()),
            a_url: a.ready["url"].as_str().unwrap().to_owned(),
            b_id,
            b_addr: b.ready["listen"].as_str().unwrap().parse().unwrap(),
            b_pid: b.child.id(),
            a_pid: a.child.id(),
            b_user: b,
            rust_form: true,
            _keep: vec![Box::new(a)],
        }
    }

    fn python(dirs: &[TempDir; 2]) -> Self {
        let a = PyNode::start_on_free_port(dirs[0].path(), "bench-a");
        let mut b = PyNode::start_on_free_port(dirs[1].path(), "bench-b");
        let b_port = b.port;
        let a_id = a.agent_id();
        {
            let mut a_user = a.user();
            let c = a_user.ok(json!({"cmd": "connect", "target_url": b.url()}));
            assert_eq!(c["status"], "connected", "{c}");
        }
        // 0.5.3 has no command for its rate limits; they are persisted state (-1 = unlimited for
        // both, `identity.py:201-232`). Stop B, lift them in its state file, start it again.
        b.stop();
        let mut state: Value = serde_json::from_str(&std::fs::read_to_string(b.state_file()).unwrap()).unwrap();
        state["rate_limit_global"] = json!(-1);
        state["connections"][&a_id]["rate_limit"] = json!(-1);
        std::fs::write(b.state_file(), serde_json::to_vec_pretty(&state).unwrap()).unwrap();
        let b = PyNode::start(dirs[1].path(), b_port, "bench-b");
        let py = venv_python();
        let (script, st, home) = (dmctl_script(), b.state_file(), b.dir.to_string_lossy().into_owned());
        let b_user =
            Ctl::spawn(&py, &[script.to_str().unwrap(), &b.url(), st.to_str().unwrap()], &b.dir, &[("HOME", &home)]);
        Self {
            label: "dmagent 0.5.3 pair (python -m darkmatter.app)",
            a_passport: Self::passport_in(dirs[0].path()),
            a_url: a.url(),
            b_id: b.agent_id(),
            b_addr: b.addr(),
            b_pid: b.pid(),
            a_pid: a.pid(),
            b_user,
            rust_form: false,
            _keep: vec![Box::new(b), Box::new(a)],
        }
    }

    /// A POST of one envelope from A, as raw HTTP/1.1 keep-alive request bytes.
    fn request(&self, message_id: &str, content: &str) -> Vec<u8> {
        use proto_core::message::envelope_v2_bytes;
        use proto_core::wire::message::MessageEnvelope;
        let a_id = self.a_passport.agent_id().as_str().to_owned();
        let ts = proto_core::time::format_iso(now_us());
        let legacy = sign::legacy_message_bytes(&a_id, message_id, &ts, content).unwrap();
        let mut e = MessageEnvelope {
            message_id: message_id.to_owned(),
            content: content.to_owned(),
            webhook: format!("{}/__darkmatter__/webhook/{message_id}", self.a_url),
            hops_remaining: 10,
            metadata: Some(Default::default()),
            timestamp: ts,
            from_agent_id: a_id.clone(),
            from_public_key_hex: Some(a_id),
            signature_hex: sign::sign_hex(&self.a_passport, &legacy),
            ..Default::default()
        };
        if self.rust_form {
            e.to_agent_id = Some(self.b_id.clone());
            e.dm_signature_hex = Some(sign::sign_hex(&self.a_passport, &envelope_v2_bytes(&e, "{}")));
        }
        let body = proto_core::wire::encode(&e);
        let mut req = format!("POST /__darkmatter__/message HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", self.b_addr, body.len()).into_bytes();
        req.extend_from_slice(&body);
        req
    }

    fn content(i: usize) -> String {
        // About the size of a short agent message.
        format!("benchmark message {i:05}: the quick brown fox jumps over the lazy dog, twice over, to make a realistic ~150-byte text body.")
    }

    /// Consumes these messages through B's user interface, waiting for every answer.
    fn consume(&mut self, ids: &[String]) {
        for chunk in ids.chunks(BENCH_DRAIN_IN_FLIGHT) {
            let sent: Vec<u64> = chunk
                .iter()
                .map(|id| self.b_user.send(json!({"cmd": "get_message", "message_id": id, "consume": true})))
                .collect();
            let mut left = sent.len();
            while left > 0 {
                let v = self.b_user.answers.recv_timeout(Duration::from_secs(60)).expect("consume answer");
                assert_eq!(v["ok"], true, "consume: {v}");
                assert!(v["result"]["message_id"].is_string(), "consume: {v}");
                left -= 1;
            }
        }
    }
}

/// One request/response on a keep-alive connection; returns the status. A connection the server
/// closed while idle (uvicorn's keep-alive timeout is 5 s) is reopened once.
fn exchange(s: &mut TcpStream, addr: SocketAddr, req: &[u8]) -> u16 {
    for _ in 0..2 {
        if s.write_all(req).is_ok() {
            if let Ok(raw) = read_response(s) {
                if raw.len() >= 12 {
                    return std::str::from_utf8(&raw[..12]).unwrap()[9..12].parse().unwrap();
                }
            }
        }
        *s = connect_to(addr);
    }
    panic!("B closed the connection twice");
}

fn connect_to(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

struct BenchResult {
    label: &'static str,
    throughput: f64,
    elapsed: Duration,
    drained: Duration,
    retries_429: usize,
    loaded_p50: Duration,
    burst_throughput: f64,
    median: Duration,
    p99: Duration,
    rss_before_kib: u64,
    hwm_kib: u64,
    /// CPU time per message during the throughput run, in µs: B, A.
    cpu_us_per_msg: (f64, f64),
    /// B's CPU per message by thread during the throughput run, in µs.
    b_threads: Vec<(String, f64)>,
}

/// Posts `reqs` back-to-back from `BENCH_CLIENTS` keep-alive connections. Each acknowledged index is
/// sent as `{"acked": i}` on `acked` (B's user channel, so one reader sees acks and answers); a 429
/// "queue full" is retried after 1 ms. Returns the per-request latencies and the 429 count.
fn post_all(
    addr: SocketAddr,
    reqs: Arc<Vec<Vec<u8>>>,
    acked: std::sync::mpsc::Sender<Value>,
) -> (Vec<Duration>, usize) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..BENCH_CLIENTS)
        .map(|_| {
            let (reqs, next, retries, acked) = (reqs.clone(), next.clone(), retries.clone(), acked.clone());
            std::thread::spawn(move || {
                let mut s = connect_to(addr);
                let mut lat = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= reqs.len() {
                        return lat;
                    }
                    let t = Instant::now();
                    loop {
                        match exchange(&mut s, addr, &reqs[i]) {
                            200 => break,
                            429 => {
                                retries.fetch_add(1, Ordering::Relaxed);
                                std::thread::sleep(Duration::from_millis(1));
                            }
                            other => panic!("message {i}: HTTP {other}"),
                        }
                    }
                    lat.push(t.elapsed());
                    let _ = acked.send(json!({"acked": i}));
                }
            })
        })
        .collect();
    let lat = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    (lat, retries.load(Ordering::Relaxed))
}

fn run_bench(mut pair: BenchPair) -> BenchResult {
    let (_, rss_before_kib) = memory_kib(pair.b_pid);
    let tag = if pair.rust_form { "r" } else { "p" };
    // Warm-up (untimed): connections, caches, first state-file writes.
    let mut s = connect_to(pair.b_addr);
    for i in 0..BENCH_WARMUP {
        let id = format!("msg-{tag}w{i:010x}");
        let req = pair.request(&id, &BenchPair::content(i));
        assert_eq!(exchange(&mut s, pair.b_addr, &req), 200);
        pair.consume(&[id]);
    }

    // Throughput: BENCH_MESSAGES envelopes, signed before the clock starts, posted back-to-back while
    // B's user consumes every accepted message as soon as it is acknowledged.
    let ids: Vec<String> = (0..BENCH_MESSAGES).map(|i| format!("msg-{tag}{i:011x}")).collect();
    let reqs: Arc<Vec<Vec<u8>>> =
        Arc::new(ids.iter().enumerate().map(|(i, id)| pair.request(id, &BenchPair::content(i))).collect());
    let (b_cpu0, a_cpu0, b_threads0) = (cpu_ticks(pair.b_pid), cpu_ticks(pair.a_pid), thread_ticks(pair.b_pid));
    let start = Instant::now();
    let poster = {
        let (addr, reqs, acked) = (pair.b_addr, reqs.clone(), pair.b_user.tx.clone());
        std::thread::spawn(move || {
            let r = post_all(addr, reqs, acked.clone());
            let _ = acked.send(json!({"all_acked": true}));
            r
        })
    };
    let (mut queued, mut in_flight, mut consumed) = (std::collections::VecDeque::new(), 0usize, 0usize);
    let mut elapsed = None;
    while consumed < BENCH_MESSAGES {
        let v =
            pair.b_user.answers.recv_timeout(Duration::from_secs(120)).expect("acks and consume answers keep coming");
        if let Some(i) = v["acked"].as_u64() {
            queued.push_back(i as usize);
        } else if v["all_acked"] == true {
            elapsed = Some(start.elapsed());
        } else {
            assert_eq!(v["ok"], true, "consume: {v}");
            assert!(v["result"]["message_id"].is_string(), "consume: {v}");
            in_flight -= 1;
            consumed += 1;
        }
        while in_flight < BENCH_DRAIN_IN_FLIGHT {
            let Some(i) = queued.pop_front() else { break };
            pair.b_user.send(json!({"cmd": "get_message", "message_id": ids[i], "consume": true}));
            in_flight += 1;
        }
    }
    let drained = start.elapsed();
    let per_msg = |ticks: u64| ticks as f64 * 10_000.0 / BENCH_MESSAGES as f64;
    let cpu_us_per_msg = (per_msg(cpu_ticks(pair.b_pid) - b_cpu0), per_msg(cpu_ticks(pair.a_pid) - a_cpu0));
    let mut b_threads: Vec<(String, f64)> = thread_ticks(pair.b_pid)
        .into_iter()
        .map(|(name, t)| (name.clone(), per_msg(t.saturating_sub(b_threads0.get(&name).copied().unwrap_or(0)))))
        .filter(|(_, us)| *us > 0.0)
        .collect();
    b_threads.sort_by(|x, y| y.1.total_cmp(&x.1));
    let (mut loaded, retries_429) = poster.join().unwrap();
    let elapsed = match elapsed {
        Some(e) => e,
        None => {
            let v = pair.b_user.answers.recv_timeout(Duration::from_secs(10)).expect("the end-of-run marker");
            assert_eq!(v["all_acked"], true, "{v}");
            drained
        }
    };
    loaded.sort();

    // Receive path alone: bursts of 50 (an inbox's worth) posted the same way and timed; the
    // inbox is emptied between bursts, off the clock.
    let mut burst_time = Duration::ZERO;
    let burst_ids: Vec<String> = (0..BENCH_BURSTS * 50).map(|i| format!("msg-{tag}b{i:010x}")).collect();
    for chunk in burst_ids.chunks(50) {
        let reqs: Arc<Vec<Vec<u8>>> =
            Arc::new(chunk.iter().enumerate().map(|(i, id)| pair.request(id, &BenchPair::content(i))).collect());
        let (tx, rx) = std::sync::mpsc::channel();
        let t = Instant::now();
        let (_, retries) = post_all(pair.b_addr, reqs, tx);
        burst_time += t.elapsed();
        assert_eq!(retries, 0, "a burst fits the inbox");
        assert_eq!(rx.try_iter().count(), chunk.len());
        pair.consume(chunk);
    }

    // Latency: single messages, one at a time on one keep-alive connection; each is consumed
    // (untimed) before the next is sent, so B is idle and its inbox empty when a message arrives.
    let mut single = Vec::with_capacity(BENCH_SINGLE);
    for i in 0..BENCH_SINGLE {
        let id = format!("msg-{tag}s{i:010x}");
        let req = pair.request(&id, &BenchPair::content(i));
        let t = Instant::now();
        assert_eq!(exchange(&mut s, pair.b_addr, &req), 200);
        single.push(t.elapsed());
        pair.consume(&[id]);
    }
    single.sort();
    let (hwm_kib, _) = memory_kib(pair.b_pid);
    BenchResult {
        label: pair.label,
        throughput: BENCH_MESSAGES as f64 / elapsed.as_secs_f64(),
        elapsed,
        drained,
        retries_429,
        loaded_p50: percentile(&loaded, 0.5),
        burst_throughput: (BENCH_BURSTS * 50) as f64 / burst_time.as_secs_f64(),
        median: percentile(&single, 0.5),
        p99: percentile(&single, 0.99),
        rss_before_kib,
        hwm_kib,
        cpu_us_per_msg,
        b_threads,
    }
}

fn report(r: &BenchResult) {
    eprintln!(
        "{}:\n  throughput {:.0} msg/s ({} messages acknowledged in {:.3} s, all consumed at {:.3} s, {} x 429 retried, per-request p50 under load {:.2} ms)\n  receive path alone ({} bursts of 50, inbox emptied between bursts off the clock): {:.0} msg/s\n  single message latency: median {:.3} ms, p99 {:.3} ms ({} samples)\n  CPU per message during the throughput run: B {:.0} µs (incl. its consume commands), A {:.0} µs (webhook callbacks)\n  B's memory: VmRSS {} KiB before the load, peak VmHWM {} KiB",
        r.label,
        r.throughput,
        BENCH_MESSAGES,
        r.elapsed.as_secs_f64(),
        r.drained.as_secs_f64(),
        r.retries_429,
        r.loaded_p50.as_secs_f64() * 1e3,
        BENCH_BURSTS,
        r.burst_throughput,
        r.median.as_secs_f64() * 1e3,
        r.p99.as_secs_f64() * 1e3,
        BENCH_SINGLE,
        r.cpu_us_per_msg.0,
        r.cpu_us_per_msg.1,
        r.rss_before_kib,
        r.hwm_kib
    );
    let threads: Vec<String> = r.b_threads.iter().map(|(n, us)| format!("{n} {us:.0} µs")).collect();
    eprintln!("  B's CPU per message by thread: {}", threads.join(", "));
}

/// The issue's benchmark. Run in release mode:
///
/// ```sh
/// cargo test --release -p darkmatter-tests --test interop -- --ignored --nocapture bench_signed_messages
/// ```
///
/// What is measured, identically for both pairs (A and B are two nodes of one implementation,
/// connected, on loopback; B's rate limits are lifted — 0.5.3's 30/min per peer and 200/min overall,
/// which the Rust node copies, would otherwise refuse all but 30 messages):
/// - **throughput**: 2,000 message envelopes signed with A's key exactly as A's own send would sign
///   them (0.5.3's legacy form; the Rust A adds its recipient-bound form, which the Rust B verifies
///   instead) are POSTed to B's `/__darkmatter__/message` by 8 keep-alive connections back-to-back,
///   while B's user consumes every accepted message through B's own interface (Rust: control
///   `get_message consume:true`; 0.5.3: MCP `darkmatter_inbox(message_id)`) because both inboxes
///   hold 50. Figure = 2,000 / time until the last 200. Signing happens before the clock starts.
///   B does all its per-message work on this path: parse, checks, one signature verification,
///   replay record, persist, the `received` callback to A's webhook (0.5.3 awaits it before
///   answering; the Rust node sends it after answering). A 50-message warm-up, sent and consumed
///   one at a time, precedes it.
/// - **receive path alone**: 10 bursts of 50 (one inbox's worth) posted the same way and timed; the
///   inbox is emptied between bursts off the clock.
/// - **latency**: 300 single messages, one at a time, POST to 200 on a keep-alive connection, B idle
///   with an empty inbox (each is consumed, off the clock, before the next).
/// - **memory**: B's `VmHWM` (peak resident set) from `/proc/<pid>/status` after all of the above,
///   and its `VmRSS` before the load.
/// - **CPU**: user + system time of B and of A per message during the throughput run, and B's by
///   thread (`/proc/<pid>/task/*/stat`), to show where the time goes.
///
/// The machine is shared: the load average at start and end is printed with the figures.
#[test]
#[ignore = "benchmark: run with --release -- --ignored --nocapture"]
fn bench_signed_messages_rust_pair_vs_python_pair() {
    let loadavg = || {
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    };
    eprintln!("load average at start: {}", loadavg());
    // DM_BENCH_ONLY=rust|python runs one pair (for looking at one side; no ratio then).
    let only = std::env::var("DM_BENCH_ONLY").unwrap_or_default();
    let rust = (only != "python").then(|| {
        let dirs = [TempDir::new("bench-ra"), TempDir::new("bench-rb")];
        let r = run_bench(BenchPair::rust(&dirs));
        report(&r);
        r
    });
    let py = (only != "rust").then(|| {
        let dirs = [TempDir::new("bench-pa"), TempDir::new("bench-pb")];
        let r = run_bench(BenchPair::python(&dirs));
        report(&r);
        r
    });
    eprintln!("load average at end: {}", loadavg());
    let (Some(rust), Some(py)) = (rust, py) else { return };
    let ratio = rust.throughput / py.throughput;
    eprintln!(
        "throughput ratio Rust / 0.5.3: {ratio:.1}x (target >= 50x); Rust throughput {:.0} msg/s (target >= 2000)",
        rust.throughput
    );
    assert!(rust.throughput >= 2_000.0, "Rust pair below 2,000 signed messages/s");
    assert!(ratio >= 50.0, "Rust pair below 50x the 0.5.3 pair");
}

// ------------------------------------------------------------------------------------------------
// Pools (SPEC §22, T-H5): a Rust consumer of a 0.5.3 owner's pool
// ------------------------------------------------------------------------------------------------

/// A local upstream answering every request 200 with the authorization values it got.
fn echo_upstream() -> (String, Arc<Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut auth, mut line) = (Vec::new(), String::new());
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line.trim_end() != "" {
                if let Some((n, v)) = line.trim_end().split_once(':') {
                    if n.eq_ignore_ascii_case("authorization") {
                        auth.push(v.trim().to_owned());
                    }
                }
                line.clear();
            }
            log.lock().unwrap().push(auth.join("|"));
            let body = json!({"upstream": "ok", "auth_headers": auth.len()}).to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, seen)
}

/// T-H5: `pool_info` and `pool_proxy` of a 0.5.3 owner, with a pool (and the Rust consumer's token)
/// written into its state file, answer the Rust consumer's commands; the upstream gets 0.5.3's
/// credential once.
#[test]
fn a_rust_consumer_calls_a_python_owner_s_pool() {
    let dirs = [TempDir::new("pool-py"), TempDir::new("pool-rs")];
    let mut py = PyNode::start_on_free_port(dirs[0].path(), "py-owner");
    let port = py.port;
    let mut rust = rust_node(dirs[1].path(), "rust-consumer", &[]);
    let c = rust.ok(json!({"cmd": "connect", "target_url": py.url()}));
    assert_eq!(c["status"], "connected", "{c}");
    let (upstream, seen) = echo_upstream();
    py.stop();
    let mut state: Value = serde_json::from_str(&std::fs::read_to_string(py.state_file()).unwrap()).unwrap();
    state["pools"] = json!([{
        "pool_id": "pool-0123456789ab", "name": "py pool", "tags": ["pool:llm"], "description": "0.5.3's",
        "providers": [{"provider_id": "pv-0123456789ab", "agent_id": py.agent_id(), "base_url": upstream,
            "credential_header": "Authorization", "credential_value": "Bearer py-secret",
            "allowed_paths": ["/v1"], "price_per_call": 0.5, "price_token": "SOL"}],
        "access_tokens": [{"token_id": "at-0123456789abcdef0123456789abcdef",
            "consumer_agent_id": rust.agent_id(), "balance": 2.0, "token_mint": "SOL",
            "total_deposited": 2.0, "total_spent": 0.0}],
        "created_at": "2026-01-01T00:00:00+00:00", "handler_type": "passthrough"}]);
    std::fs::write(py.state_file(), serde_json::to_vec_pretty(&state).unwrap()).unwrap();
    let py = PyNode::start(dirs[0].path(), port, "py-owner");
    let owner = py.agent_id();
    let info = rust.ok(json!({"cmd": "pool_info", "owner": owner, "pool_id": "pool-0123456789ab"}));
    assert_eq!(
        (&info["http_status"], &info["name"], &info["provider_count"]),
        (&json!(200), &json!("py pool"), &json!(1))
    );
    let r = rust.ok(json!({"cmd": "pool_call", "owner": owner, "pool_id": "pool-0123456789ab",
        "token_id": "at-0123456789abcdef0123456789abcdef", "method": "GET", "path": "/v1/models"}));
    assert_eq!((&r["http_status"], &r["status_code"]), (&json!(200), &json!(200)), "{r}");
    assert_eq!(r["balance_remaining"], json!(1.5), "0.5.3 debits its float price: {r}");
    assert_eq!(*seen.lock().unwrap(), vec!["Bearer py-secret".to_owned()]);
}
