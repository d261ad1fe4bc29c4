//! Strangers who trickle or flood, on the real socket: one source's abuse is refused at that source,
//! while other sources and a connected peer are still served.
//!
//! All of loopback is one source to the server, so each test client binds its socket to its own
//! 127.0.0.x address (on Linux all of 127.0.0.0/8 is loopback): 127.0.0.1 is the connected peer's node,
//! 127.0.0.2 the attacker (127.0.0.4 a second one), 127.0.0.3 a bystander. Tests run one at a time: each opens hundreds of
//! sockets and measures time.

#[path = "smol_common.rs"]
mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{connect, parse_response, read_response, wait_for, Node, TempDir};
use proto_core::{Command, SendArgs, Targets};
use runtime_smol::admission::{Admission, Limits, Refusal, SOURCE_BODIES_MAX, SOURCE_CONNECTIONS_MAX};
use runtime_smol::server::{CONNECTIONS_MAX, IN_FLIGHT_MAX, RATE_GRACE_MS, REQUEST_READ_MS};
use serde_json::{Map, Value};

const ATTACKER: u8 = 2;
const BYSTANDER: u8 = 3;
/// Wait for one answer or one delivery, in ms.
const ANSWER_WAIT_MS: u64 = 5_000;

fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A TCP connection to `addr` from 127.0.0.`from`.
fn connect_from(from: u8, addr: SocketAddr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&SocketAddr::from((Ipv4Addr::new(127, 0, 0, from), 0)).into())?;
    socket.connect_timeout(&addr.into(), Duration::from_millis(ANSWER_WAIT_MS))?;
    let s: TcpStream = socket.into();
    s.set_read_timeout(Some(Duration::from_millis(ANSWER_WAIT_MS)))?;
    s.set_write_timeout(Some(Duration::from_millis(ANSWER_WAIT_MS)))?;
    Ok(s)
}

/// One request from 127.0.0.`from` with `Connection: close`: status and JSON body.
fn http_from(from: u8, addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, Value)> {
    let mut s = connect_from(from, addr)?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(&[head.as_bytes(), body].concat())?;
    let raw = read_response(&mut s)?;
    if raw.is_empty() {
        return Err(ErrorKind::UnexpectedEof.into());
    }
    Ok(parse_response(&raw))
}

fn status_from(from: u8, addr: SocketAddr) -> u16 {
    http_from(from, addr, "GET", "/__darkmatter__/status", b"").map(|(s, _)| s).unwrap_or(0)
}

/// `from` sends `to` a message; returns its id.
fn send(from: &Node, to: &Node, content: &str) -> String {
    let r = from.cmd(Command::Send(SendArgs {
        content: content.into(),
        targets: Targets::Agents(vec![to.id()]),
        metadata: Map::new(),
        in_reply_to: None,
        hops_remaining: 3,
    }));
    r["message_id"].as_str().unwrap_or_else(|| panic!("no message id in {r}")).to_owned()
}

/// Whether `message_id` reaches `node`'s inbox within [`ANSWER_WAIT_MS`].
fn arrives(node: &Node, message_id: &str) -> bool {
    let end = Instant::now() + Duration::from_millis(ANSWER_WAIT_MS);
    while Instant::now() < end {
        let inbox = node.cmd(Command::ListInbox);
        if inbox["messages"].as_array().is_some_and(|m| m.iter().any(|m| m["message_id"] == message_id)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Two nodes, the peer (127.0.0.1) connected to the target.
fn target_and_peer(dirs: &(TempDir, TempDir), admission: Arc<Admission>) -> (Node, Node) {
    let target = Node::start_with_admission(dirs.0.path(), "target", admission);
    let peer = Node::start(dirs.1.path(), "peer", &[]);
    connect(&peer, &target);
    (target, peer)
}

fn dirs(tag: &str) -> (TempDir, TempDir) {
    (TempDir::new(&format!("{tag}-t")), TempDir::new(&format!("{tag}-p")))
}

/// Sockets from one source that keep requests open by trickling them, all driven by one thread.
struct Siege {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Siege {
    /// `bodies` requests announcing a 400,000-byte body and sending 512 bytes of it every 200 ms
    /// (above the body floor, far from done before the whole-request deadline), then `heads` requests
    /// whose head grows by a byte every 200 ms (above the head floor).
    fn start(from: u8, addr: SocketAddr, bodies: usize, heads: usize) -> Self {
        let body_head = "POST /__darkmatter__/message HTTP/1.1\r\nHost: x\r\nContent-Length: 400000\r\n\r\n";
        let mut socks: Vec<(TcpStream, &'static [u8])> = Vec::new();
        for i in 0..bodies + heads {
            let Ok(mut s) = connect_from(from, addr) else { continue };
            let _ = s.set_write_timeout(Some(Duration::from_millis(50)));
            let step: &'static [u8] = if i < bodies {
                let _ = s.write_all(body_head.as_bytes());
                &[b'x'; 512]
            } else {
                let _ = s.write_all(b"POST /__darkmatter__/message HTTP/1.1\r\nX-Slow: ");
                b"z"
            };
            socks.push((s, step));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Acquire) {
                for (s, step) in &mut socks {
                    let _ = s.write_all(step);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Self { stop, thread: Some(thread) }
    }
}

impl Drop for Siege {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn trickling_bodies_hold_no_slot_toward_the_core() {
    let _serial = serial();
    let dirs = dirs("bodies");
    let (target, peer) = target_and_peer(&dirs, Admission::new(Limits::default()));
    let addr = target.addr();
    // As many trickling bodies as there are slots toward the core, from two sources each at its share
    // of bodies being read (so none is refused and every one stays open).
    assert_eq!(2 * SOURCE_BODIES_MAX, IN_FLIGHT_MAX);
    let sieges = [Siege::start(ATTACKER, addr, SOURCE_BODIES_MAX, 0), Siege::start(4, addr, SOURCE_BODIES_MAX, 0)];
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(status_from(BYSTANDER, addr), 200, "another source is refused while bodies trickle");
    let id = send(&peer, &target, "past the trickling bodies");
    assert!(arrives(&target, &id), "the connected peer's send was not served while bodies trickle");
    drop(sieges);
}

#[test]
fn a_source_trickling_heads_holds_only_its_share_of_connections() {
    let _serial = serial();
    let dirs = dirs("heads");
    let (target, peer) = target_and_peer(&dirs, Admission::new(Limits::default()));
    let addr = target.addr();
    // The attack: more trickling heads than the server has connections, from one address.
    let siege = Siege::start(ATTACKER, addr, 0, CONNECTIONS_MAX + 44);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(status_from(BYSTANDER, addr), 200, "another source is refused while heads trickle");
    let id = send(&peer, &target, "past the trickling heads");
    assert!(arrives(&target, &id), "the connected peer's send was not served while heads trickle");
    // The attacker itself is held to its share.
    let (status, body) = http_from(ATTACKER, addr, "GET", "/__darkmatter__/status", b"").expect("an answer");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], Refusal::Connections.to_string());
    drop(siege);
}

#[test]
fn a_flooding_source_is_refused_at_its_own_budget() {
    let _serial = serial();
    let dirs = dirs("flood");
    let limits = Limits { requests_burst: 20, requests_per_s: 1, ..Limits::default() };
    let (target, peer) = target_and_peer(&dirs, Admission::new(limits.clone()));
    let addr = target.addr();
    // The attack: 210 one-byte POSTs, more than the core's global window (200 a minute).
    let t0 = Instant::now();
    let (mut refused, mut reached) = (0u32, 0u32);
    for _ in 0..210 {
        let (status, body) = http_from(ATTACKER, addr, "POST", "/__darkmatter__/message", b"x").expect("an answer");
        if status == 429 && body["error"] == Refusal::Budget.to_string() {
            refused += 1;
        } else {
            reached += 1;
        }
    }
    let allowed = limits.requests_burst + (t0.elapsed().as_secs() as u32 + 1) * limits.requests_per_s;
    // Everyone else is still served: another source, and the connected peer (whose budget is its own).
    assert_eq!(status_from(BYSTANDER, addr), 200);
    let id = send(&peer, &target, "after the flood");
    assert!(arrives(&target, &id), "the connected peer's send was not served after the flood");
    assert!(reached <= allowed, "{reached} junk requests reached the core (budget {allowed})");
    assert!(refused >= 210 - allowed, "only {refused} refused at the source");
    // And the flooder is still refused, cheaply, before its head is read.
    let (status, body) = http_from(ATTACKER, addr, "GARBAGE", "/", b"").expect("an answer");
    assert_eq!((status, body["error"].as_str()), (429, Some(Refusal::Budget.to_string().as_str())));
}

/// A connected peer's signed traffic is bounded by its per-peer limits in the core, not by its
/// address: with a source budget of 10 requests refilled at 1 a second, the peer still delivers 40
/// messages at once, while junk from the very same address is refused at that budget.
#[test]
fn a_connected_peers_signed_requests_are_refunded_and_junk_from_its_address_is_not() {
    let _serial = serial();
    let dirs = dirs("refund");
    let limits = Limits { requests_burst: 10, requests_per_s: 1, ..Limits::default() };
    let (target, peer) = target_and_peer(&dirs, Admission::new(limits));
    // The user lifted this peer's limit: only the socket budget could refuse it now.
    target.cmd(Command::SetRateLimit { agent_id: Some(peer.id()), limit: -1 });
    let ids: Vec<String> = (0..40).map(|i| send(&peer, &target, &format!("busy peer {i}"))).collect();
    for id in &ids {
        assert!(arrives(&target, id), "message {id} of a connected peer was refused for its address");
    }
    // Junk from the peer's own address (127.0.0.1) spends the budget and gets nothing back.
    let addr = target.addr();
    let refused = (0..15)
        .filter(|_| {
            let (status, body) = http_from(1, addr, "POST", "/__darkmatter__/message", b"x").expect("an answer");
            status == 429 && body["error"] == Refusal::Budget.to_string()
        })
        .count();
    assert!(refused >= 3, "junk from a peer's address was not charged ({refused} of 15 refused)");
}

/// Sends `prefix` at once, then `step` every `every`, until the server answers or closes; returns how
/// long that took and what it answered. Gives up after twice the whole-request deadline.
fn trickle(from: u8, addr: SocketAddr, prefix: &[u8], step: &[u8], every: Duration) -> (Duration, Vec<u8>) {
    let mut s = connect_from(from, addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let t0 = Instant::now();
    s.write_all(prefix).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let mut next = t0 + every;
    while t0.elapsed() < Duration::from_millis(2 * REQUEST_READ_MS) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let _ = s.read_to_end(&mut answer);
                break;
            }
            Err(_) => {}
        }
        if Instant::now() >= next {
            if s.write_all(step).is_err() {
                break;
            }
            next += every;
        }
    }
    (t0.elapsed(), answer)
}

#[test]
fn a_trickle_below_the_rate_floor_is_cut_before_the_request_deadline() {
    let _serial = serial();
    let dir = TempDir::new("floor");
    let target = Node::start(dir.path(), "target", &[]);
    let addr = target.addr();
    let head = std::thread::spawn(move || {
        // One head byte every 2 s: half a byte a second.
        trickle(ATTACKER, addr, b"P", b"O", Duration::from_secs(2))
    });
    let body = std::thread::spawn(move || {
        // A whole head, then 20 body bytes every 200 ms: 100 bytes a second.
        let head = b"POST /__darkmatter__/message HTTP/1.1\r\nHost: x\r\nContent-Length: 400000\r\n\r\n";
        trickle(BYSTANDER, addr, head, &[b' '; 20], Duration::from_millis(200))
    });
    let deadline = Duration::from_millis(REQUEST_READ_MS);
    for (what, t) in [("head", head), ("body", body)] {
        let (elapsed, answer) = t.join().unwrap();
        let (status, json) = parse_response(&answer);
        assert_eq!(status, 408, "{what}: {json}");
        assert!(json["error"].is_string(), "{what}: {json}");
        assert!(elapsed >= Duration::from_millis(RATE_GRACE_MS), "{what} cut off after only {elapsed:?}");
        assert!(elapsed < deadline - Duration::from_secs(4), "{what} cut off only after {elapsed:?}");
    }
    assert_eq!(status_from(BYSTANDER, addr), 200);
}

#[test]
fn the_source_table_stays_bounded_under_many_sources() {
    let _serial = serial();
    let dir = TempDir::new("sources");
    let limits = Limits { sources_max: 8, ..Limits::default() };
    let admission = Admission::new(limits.clone());
    let target = Node::start_with_admission(dir.path(), "target", admission.clone());
    let addr = target.addr();
    let mut most = 0;
    for from in 10..=110u8 {
        assert_eq!(status_from(from, addr), 200, "source 127.0.0.{from} refused");
        most = most.max(admission.sources());
    }
    assert!(most <= limits.sources_max, "the table held {most} sources");
    assert!(most >= 2, "the table never held a source");
    // A source that was evicted comes back with a fresh record and is served.
    assert_eq!(status_from(10, addr), 200);
    wait_for("the table to stay bounded", Duration::from_secs(1), || {
        (admission.sources() <= limits.sources_max).then_some(())
    });
}

#[test]
fn the_global_connection_cap_still_holds_across_sources() {
    let _serial = serial();
    let dir = TempDir::new("global");
    let target = Node::start(dir.path(), "target", &[]);
    let addr = target.addr();
    // Every source at its share fills the server (held idle, well within IDLE_MS).
    let sources = (CONNECTIONS_MAX / SOURCE_CONNECTIONS_MAX) as u8;
    let held: Vec<TcpStream> = (0..sources)
        .flat_map(|i| (0..SOURCE_CONNECTIONS_MAX).map(move |_| connect_from(10 + i, addr).expect("connect")))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let (status, body) = http_from(BYSTANDER, addr, "GET", "/__darkmatter__/status", b"").expect("an answer");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "Too many connections; try again shortly");
    drop(held);
    wait_for("the node to serve again", Duration::from_secs(5), || (status_from(BYSTANDER, addr) == 200).then_some(()));
}
