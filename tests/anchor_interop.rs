//! Interop of our anchor (`darkmatter anchor`) with unmodified dmagent 0.5.3 nodes (from PyPI, in the
//! venv `darkmatter_tests::python` creates), on loopback.
//!
//! Two 0.5.3 nodes, A and B, have our anchor as their only anchor (`DARKMATTER_ANCHOR_NODES`), reached
//! through a recording TCP proxy so the test sees every request line they send it. Both register at
//! start-up; B connects to A. A then restarts with a public URL nothing listens on (`127.0.0.1:1`), so it
//! registers that URL, counts itself as behind NAT and polls the anchor. B's next message to A fails
//! directly, B looks A up (peers, then our anchor), fails again, seals the message for A and posts it
//! to A's message mailbox; A's next poll (0.5.3 polls every 60 s) drains it, and it lands verified in A's
//! inbox.
//!
//! Then a Rust node and a 0.5.3 node, each announcing a URL nobody listens on, relay sealed messages to
//! each other through our anchor: each opens what the other sealed (E2E version 1, 0.5.3's). The same
//! exchange runs through 0.5.3's own anchor (`interop/anchor_053.py`, vendored, served by Flask in the
//! venv): the Rust node registers there, polls there and relays through it (T-B3).
//!
//! A missing venv is a failure, not a skip: `python::python()` creates it (network access to PyPI).

#[path = "smol_common.rs"]
mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Proc, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{free_port, http, ChildNode, TempDir};
use darkmatter_tests::python;
use proto_core::Passport;
use runtime_smol::anchor::{self, AnchorConfig};
use serde_json::{json, Value};

fn venv_python() -> PathBuf {
    python::python().unwrap_or_else(|e| panic!("cannot create the dmagent 0.5.3 virtualenv: {e}"))
}

/// A TCP proxy to `upstream` that records the request line of every request passing through it.
struct Recorder {
    addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let seen = lines.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(upstream) else { continue };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let seen = seen.clone();
                std::thread::spawn(move || pump(client, server, Some(seen)));
                std::thread::spawn(move || pump(s2, c2, None));
            }
        });
        Self { addr, lines }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The request lines seen so far that start with `prefix` (e.g. `GET /__darkmatter__/peer_lookup/`).
    fn seen(&self, prefix: &str) -> Vec<String> {
        self.lines.lock().unwrap().iter().filter(|l| l.starts_with(prefix)).cloned().collect()
    }
}

/// Copies `from` to `to`; when `record` is given, keeps every line that looks like a request line.
fn pump(mut from: TcpStream, mut to: TcpStream, record: Option<Arc<Mutex<Vec<String>>>>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(lines) = &record {
            for line in String::from_utf8_lossy(&buf[..n]).split("\r\n") {
                if (line.starts_with("GET /") || line.starts_with("POST /")) && line.ends_with("HTTP/1.1") {
                    lines.lock().unwrap().push(line.to_owned());
                }
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// A dmagent 0.5.3 node with our anchor as its only anchor.
struct PyNode {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl PyNode {
    fn start(dir: &Path, port: u16, public_url: &str, anchor: &str, name: &str) -> Self {
        let log = File::create(dir.join(format!("node-{port}-{}.log", public_url.len()))).unwrap();
        let child = Proc::new(venv_python())
            .args(["-m", "darkmatter.app"])
            .current_dir(dir)
            .env("HOME", dir)
            .env("DARKMATTER_HOST", "127.0.0.1")
            .env("DARKMATTER_PORT", port.to_string())
            .env("DARKMATTER_PUBLIC_URL", public_url)
            .env("DARKMATTER_ANCHOR_NODES", anchor)
            .env("DARKMATTER_DISCOVERY", "false")
            .env("DARKMATTER_AGENT_ENABLED", "false")
            .env("DARKMATTER_ENTRYPOINT_AUTOSTART", "false")
            .env("DARKMATTER_TRANSPORT", "http")
            .env("DARKMATTER_STATE_FILE", dir.join("state.json"))
            .env("DARKMATTER_DISPLAY_NAME", name)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start dmagent 0.5.3");
        let node = Self { child, dir: dir.to_owned(), port };
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait("0.5.3 to serve its card", Duration::from_secs(60), || {
            matches!(http(addr, "GET", "/.well-known/darkmatter.json", b""), Ok((200, _))).then_some(())
        });
        node
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn agent_id(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join(".darkmatter").join("passport.key")).unwrap();
        Passport::from_file_contents(&text).unwrap().agent_id().as_str().to_owned()
    }

    /// Its user: `tests/interop/dmctl.py` with an MCP session on the node.
    fn user(&self) -> ChildNode {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop").join("dmctl.py");
        let state = self.dir.join("state.json");
        let home = self.dir.to_string_lossy().into_owned();
        let args = [script.to_str().unwrap(), &self.url(), state.to_str().unwrap()];
        ChildNode::spawn_with(&venv_python(), &args, &self.dir, &[("HOME", &home)])
    }

    fn stop(mut self) {
        let _ = Proc::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end && !matches!(self.child.try_wait(), Ok(Some(_))) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PyNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn lookup(anchor: SocketAddr, id: &str) -> (u16, Value) {
    http(anchor, "GET", &format!("/__darkmatter__/peer_lookup/{id}"), b"").unwrap()
}

#[test]
fn an_unmodified_0_5_3_node_registers_looks_up_and_relays_through_our_anchor() {
    let (da, db, ds) = (TempDir::new("anchor-py-a"), TempDir::new("anchor-py-b"), TempDir::new("anchor-state"));
    let config = AnchorConfig { port: 0, state_dir: ds.path().join("anchor"), ..AnchorConfig::default() };
    let running = anchor::start(config).expect("anchor starts");
    let proxy = Recorder::start(running.local_addr);
    let anchor_addr = running.local_addr;

    // Both register at start-up (0.5.3's broadcast_peer_update also posts to every anchor).
    let (port_a, port_b) = (free_port(), free_port());
    let a = PyNode::start(da.path(), port_a, &format!("http://127.0.0.1:{port_a}"), &proxy.url(), "py-a");
    let b = PyNode::start(db.path(), port_b, &format!("http://127.0.0.1:{port_b}"), &proxy.url(), "py-b");
    let (a_id, b_id) = (a.agent_id(), b.agent_id());
    for (id, url) in [(&a_id, a.url()), (&b_id, b.url())] {
        let found = wait("a 0.5.3 registration", Duration::from_secs(30), || {
            let (status, body) = lookup(anchor_addr, id);
            (status == 200).then_some(body)
        });
        assert_eq!(found["url"], url.as_str(), "{found}");
    }
    let card = http(anchor_addr, "GET", "/.well-known/darkmatter.json", b"").unwrap().1;
    assert_eq!(card["agents_registered"], 2, "{card}");

    // B connects to A directly (0.5.3 auto-accepts a local requester).
    let mut user_b = b.user();
    let c = user_b.ok(json!({"cmd": "connect", "target_url": a.url()}));
    assert!(c["success"].as_bool().unwrap_or(false), "{c}");
    wait("B to list A", Duration::from_secs(20), || {
        let state = user_b.ok(json!({"cmd": "state"}));
        state["connections"].get(&a_id).cloned()
    });

    // A restarts behind "NAT": its public URL is unreachable; it registers that URL and polls.
    a.stop();
    let unreachable = "http://127.0.0.1:1";
    let a = PyNode::start(da.path(), port_a, unreachable, &proxy.url(), "py-a");
    wait("A's new registration", Duration::from_secs(30), || {
        let (status, body) = lookup(anchor_addr, &a_id);
        (status == 200 && body["url"] == unreachable).then_some(())
    });

    // B's message cannot reach A directly: B looks A up at the anchor, then relays through it.
    let s = user_b.ok(json!({"cmd": "send", "target_agent_id": a_id, "content": "through the anchor"}));
    let message_id = s["message_id"].as_str().unwrap_or_else(|| panic!("{s}")).to_owned();
    wait("B's relay post", Duration::from_secs(60), || {
        (!proxy.seen(&format!("POST /__darkmatter__/message_relay/{a_id}")).is_empty()).then_some(())
    });
    assert!(
        !proxy.seen(&format!("GET /__darkmatter__/peer_lookup/{a_id}")).is_empty(),
        "B looked A up at our anchor before relaying: {:?}",
        proxy.lines.lock().unwrap()
    );

    // A's next poll (every 60 s in 0.5.3) drains its mailbox; the message is decrypted and verified.
    let mut user_a = a.user();
    let got = wait("the relayed message in A's inbox", Duration::from_secs(150), || {
        let inbox = user_a.ok(json!({"cmd": "inbox"}));
        inbox["messages"].as_array()?.iter().find(|m| m["message_id"] == message_id.as_str()).cloned()
    });
    assert_eq!((got["from_agent_id"].as_str(), got["verified"].as_bool()), (Some(b_id.as_str()), Some(true)), "{got}");
    assert!(!proxy.seen(&format!("GET /__darkmatter__/message_relay_poll/{a_id}?")).is_empty());
    // Drained: nothing is left for A.
    drop(user_a);
    running.stop();
    running.wait().unwrap();
}

/// A Rust node and a 0.5.3 node, neither of which can be dialled at the URL it announces, exchange
/// messages through our anchor both ways: each seals for the other with version 1 (0.5.3's E2E) and
/// each opens what the other sealed.
#[test]
fn a_rust_node_and_a_0_5_3_node_relay_sealed_messages_to_each_other() {
    let ds = TempDir::new("relay-anchor");
    let config = AnchorConfig { port: 0, state_dir: ds.path().join("anchor"), ..AnchorConfig::default() };
    let running = anchor::start(config).expect("anchor starts");
    let proxy = Recorder::start(running.local_addr);
    relay_both_ways(&proxy);
    running.stop();
    running.wait().unwrap();
}

/// 0.5.3's own anchor (`interop/anchor_053.py`, vendored unmodified, served by Flask), run on
/// loopback; killed when dropped.
struct PyAnchor {
    child: Child,
    addr: SocketAddr,
}

impl PyAnchor {
    fn start(dir: &Path) -> Self {
        use std::io::{BufRead, BufReader};
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop").join("run_anchor_053.py");
        let log = File::create(dir.join("anchor-053.log")).unwrap();
        let mut child = Proc::new(venv_python())
            .arg(script)
            .current_dir(dir)
            .env("DARKMATTER_ANCHOR_DIRECTORY", dir.join("directory.json"))
            .env("DARKMATTER_RELAY_BUFFER", dir.join("relay.json"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start 0.5.3's anchor");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let ready: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("anchor ready line: {line:?}"));
        let url = ready["url"].as_str().expect("url");
        let addr = url.trim_start_matches("http://").parse().expect("an address");
        Self { child, addr }
    }
}

impl Drop for PyAnchor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// T-B3: a Rust node registers with, polls and relays through 0.5.3's own anchor, and exchanges
/// sealed messages with a 0.5.3 node through it both ways.
#[test]
fn a_rust_node_registers_polls_and_relays_through_0_5_3s_own_anchor() {
    let ds = TempDir::new("anchor-053");
    let py_anchor = PyAnchor::start(ds.path());
    let proxy = Recorder::start(py_anchor.addr);
    let card = http(py_anchor.addr, "GET", "/.well-known/darkmatter.json", b"").unwrap().1;
    assert_eq!((card["anchor"].as_bool(), card["protocol_version"].as_str()), (Some(true), Some("0.2")), "{card}");
    let r_id = relay_both_ways(&proxy);
    // The Rust node's registration is what 0.5.3's anchor serves, and it polled with its signature.
    let (status, found) = lookup(py_anchor.addr, &r_id);
    assert_eq!(status, 200, "{found}");
    for mailbox in ["message_relay_poll", "connection_relay_poll", "webhook_relay_poll"] {
        assert!(!proxy.seen(&format!("GET /__darkmatter__/{mailbox}/{r_id}?")).is_empty(), "{mailbox}");
    }
}

/// The exchange behind both tests above, through the anchor behind `proxy`; returns the Rust node's id.
fn relay_both_ways(proxy: &Recorder) -> String {
    use common::Node;
    use proto_core::{Command, SendArgs, Targets};
    let (dp, dr) = (TempDir::new("relay-py"), TempDir::new("relay-rs"));

    // Both announce a URL nothing listens on; each still listens on its real port, so the Rust node
    // can ask the 0.5.3 node to connect (the answer names the unreachable URL).
    let port_p = free_port();
    let (p_public, r_public) =
        (format!("http://127.0.0.1:{}", free_port()), format!("http://127.0.0.1:{}", free_port()));
    let p = PyNode::start(dp.path(), port_p, &p_public, &proxy.url(), "py-natted");
    let r = Node::start(
        dr.path(),
        "rs-natted",
        &[("DARKMATTER_ANCHOR_NODES", proxy.url().as_str()), ("DARKMATTER_PUBLIC_URL", r_public.as_str())],
    );
    let (p_id, r_id) = (p.agent_id(), r.id());
    wait("R's registration", Duration::from_secs(30), || {
        (!proxy.seen("POST /__darkmatter__/peer_update").is_empty()).then_some(())
    });
    let c = r.cmd(Command::Connect { target_url: p.url() });
    assert_eq!(c["status"], "connected", "0.5.3 auto-accepts a local requester: {c}");
    let mut user_p = p.user();
    wait("P to list R", Duration::from_secs(20), || {
        let state = user_p.ok(json!({"cmd": "state"}));
        state["connections"].get(&r_id).cloned()
    });

    // 0.5.3 → Rust: P's post fails, P relays sealed; R's poll takes it and opens it.
    let s = user_p.ok(json!({"cmd": "send", "target_agent_id": r_id, "content": "sealed by 0.5.3"}));
    let from_p = s["message_id"].as_str().unwrap_or_else(|| panic!("{s}")).to_owned();
    let got = wait("0.5.3's relayed message in R's inbox", Duration::from_secs(90), || {
        let inbox = r.cmd(Command::ListInbox);
        inbox["messages"].as_array()?.iter().find(|m| m["message_id"] == from_p.as_str()).cloned()
    });
    assert_eq!(
        (got["from_agent_id"].as_str(), got["content"].as_str()),
        (Some(p_id.as_str()), Some("sealed by 0.5.3"))
    );
    assert!(!proxy.seen(&format!("POST /__darkmatter__/message_relay/{r_id}")).is_empty());

    // Rust → 0.5.3: R reached P at the port it dialled; P restarts on another, so R's post fails, the
    // lookup finds only P's unreachable URL, and R relays sealed (version 1: P does not speak ours);
    // P's poll (every 60 s) takes it, opens it and verifies the message.
    drop(user_p);
    p.stop();
    let p = PyNode::start(dp.path(), free_port(), &p_public, &proxy.url(), "py-natted");
    let mut user_p = p.user();
    let sent = r.cmd(Command::Send(SendArgs {
        content: "sealed by the Rust node".into(),
        targets: Targets::Agents(vec![p_id.clone()]),
        metadata: serde_json::Map::new(),
        in_reply_to: Some(from_p.clone()),
        hops_remaining: 3,
    }));
    assert_eq!(sent["relayed"], json!([p_id]), "{sent}");
    let to_p = sent["message_id"].as_str().unwrap().to_owned();
    assert!(!proxy.seen(&format!("GET /__darkmatter__/peer_lookup/{p_id}")).is_empty(), "looked up first");
    let got = wait("R's relayed message in 0.5.3's inbox", Duration::from_secs(150), || {
        let inbox = user_p.ok(json!({"cmd": "inbox"}));
        inbox["messages"].as_array()?.iter().find(|m| m["message_id"] == to_p.as_str()).cloned()
    });
    assert_eq!((got["from_agent_id"].as_str(), got["verified"].as_bool()), (Some(r_id.as_str()), Some(true)), "{got}");
    drop(user_p);
    p.stop();
    r.stop();
    r_id
}
