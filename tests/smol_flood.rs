//! One stranger cannot exhaust what connected peers need, on the real socket: each test replays one of
//! the floods of issue 12 (junk that spent the global window, one peer's valid flood, a stranger filling
//! the inbox, throwaway keys displacing a newcomer or filling the connection table) and checks that the
//! others are still served.
//!
//! All of loopback is one source to the server, so each attacking client binds its socket to its own
//! 127.0.0.x address (on Linux all of 127.0.0.0/8 is loopback); the nodes themselves speak from 127.0.0.1.
//! Tests run one at a time: they open hundreds of sockets.

#[path = "smol_common.rs"]
mod common;

use std::io::{ErrorKind, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::{connect, envelope, now_us, parse_response, passport, read_response, Node, TempDir};
use proto_core::limits::{AUTO_ACCEPTS_MAX, AUTO_ACCEPTS_PER_SOURCE_MAX, INBOX_PER_STRANGER_MAX};
use proto_core::{Command, Passport, SendArgs, Targets};
use serde_json::{json, Map, Value};

/// Wait for one answer or one delivery, in ms.
const ANSWER_WAIT_MS: u64 = 5_000;

fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// One request from 127.0.0.`from` with `Connection: close`: status and JSON body.
fn http_from(from: u8, addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, Value)> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&SocketAddr::from((Ipv4Addr::new(127, 0, 0, from), 0)).into())?;
    socket.connect_timeout(&addr.into(), Duration::from_millis(ANSWER_WAIT_MS))?;
    let mut s: TcpStream = socket.into();
    s.set_read_timeout(Some(Duration::from_millis(ANSWER_WAIT_MS)))?;
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

fn post_from(from: u8, node: &Node, path: &str, body: &Value) -> (u16, Value) {
    http_from(from, node.addr(), "POST", path, body.to_string().as_bytes()).expect("an answer")
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

/// A throwaway key: a new one for each `n`.
fn throwaway(n: u32) -> Passport {
    let mut seed = [0x5c; 32];
    seed[..4].copy_from_slice(&n.to_le_bytes());
    Passport::from_seed(seed)
}

/// A connection request signed in our form by `p`, as a node of this project sends it to `target`.
fn signed_request(p: &Passport, target: &Node, url: &str) -> Value {
    let id = p.agent_id().as_str();
    let stamp = proto_core::time::format_iso(now_us());
    let name = format!("t-{}", &id[..8]);
    let base = target.url();
    let bytes = proto_core::sign::v2_bytes(proto_core::sign::V2_CONNECT, &[id, url, "", &name, &base, &stamp]);
    json!({
        "from_agent_id": id, "from_agent_url": url, "from_agent_bio": "", "from_agent_display_name": name,
        "from_agent_public_key_hex": id, "target_url": base, "timestamp": stamp,
        "dm_signature_hex": proto_core::sign::sign_hex(p, &bytes),
    })
}

fn pending_ids(node: &Node) -> Vec<String> {
    let l = node.cmd(Command::ListPending);
    l["requests"].as_array().unwrap().iter().map(|r| r["agent_id"].as_str().unwrap().to_owned()).collect()
}

fn connection_count(node: &Node) -> u64 {
    node.cmd(Command::ListConnections)["total"].as_u64().unwrap()
}

#[test]
fn junk_spends_no_budget_a_peer_or_a_newcomer_needs() {
    let _serial = serial();
    let (dt, dp) = (TempDir::new("junk-t"), TempDir::new("junk-p"));
    let target = Node::start(dt.path(), "target", &[]);
    let peer = Node::start(dp.path(), "peer", &[]);
    connect(&peer, &target);
    // The attack: 210 one-byte POSTs from one address, more than the global window (200).
    for _ in 0..210 {
        let (status, _) = http_from(2, target.addr(), "POST", "/__darkmatter__/message", b"x").expect("an answer");
        assert_ne!(status, 200);
    }
    // The connected peer's next send is served...
    let id = send(&peer, &target, "after the junk");
    assert!(arrives(&target, &id), "the connected peer's send was refused after the junk");
    // ...and so is a new connection request from another address.
    let newcomer = passport(0x31);
    let req = json!({"from_agent_id": newcomer.agent_id().as_str(), "from_agent_url": "http://127.0.0.3:9"});
    let (status, body) = post_from(3, &target, "/__darkmatter__/connection_request", &req);
    assert_eq!(status, 200, "{body}");
}

#[test]
fn one_peers_valid_flood_is_refused_at_that_peer_only() {
    let _serial = serial();
    let (dt, d1, d2) = (TempDir::new("pflood-t"), TempDir::new("pflood-1"), TempDir::new("pflood-2"));
    let target = Node::start(dt.path(), "target", &[]);
    let flooder = Node::start(d1.path(), "flooder", &[]);
    let other = Node::start(d2.path(), "other", &[]);
    connect(&flooder, &target);
    connect(&other, &target);
    // More valid, signed messages than the whole global window, from one connected peer.
    for i in 0..250 {
        send(&flooder, &target, &format!("flood {i}"));
    }
    // Let the flood land before the other peer sends.
    std::thread::sleep(Duration::from_millis(2_000));
    let id = send(&other, &target, "from the other peer");
    assert!(arrives(&target, &id), "another peer was refused during one peer's flood");
}

#[test]
fn a_strangers_messages_leave_room_for_connected_peers() {
    let _serial = serial();
    let (dt, dp) = (TempDir::new("inbox-t"), TempDir::new("inbox-p"));
    let target = Node::start(dt.path(), "target", &[]);
    let peer = Node::start(dp.path(), "peer", &[]);
    connect(&peer, &target);
    // One throwaway key queues 50 messages (the whole inbox, before).
    let stranger = passport(0x41);
    let from = stranger.agent_id().as_str().to_owned();
    let mut taken = 0;
    for i in 0..50 {
        let (status, _) =
            post_from(2, &target, "/__darkmatter__/message", &envelope(&stranger, &from, &format!("junk-{i}"), "junk"));
        taken += usize::from(status == 200);
    }
    let id = send(&peer, &target, "still room for me");
    assert!(arrives(&target, &id), "a connected peer was refused: the stranger filled the inbox");
    assert_eq!(taken, INBOX_PER_STRANGER_MAX, "one stranger keeps only its share of the inbox");
}

#[test]
fn throwaway_requests_do_not_displace_a_newcomer_from_another_address() {
    let _serial = serial();
    let (dt, dn) = (TempDir::new("pend-t"), TempDir::new("pend-n"));
    let target = Node::start(dt.path(), "target", &[("DARKMATTER_AUTO_ACCEPT_LOCAL", "false")]);
    let newcomer = Node::start(dn.path(), "newcomer", &[]);
    let r = newcomer.cmd(Command::Connect { target_url: target.url() });
    assert_eq!(r["status"], "pending", "{r}");
    // 60 signed requests from throwaway keys, all from one address.
    for n in 0..60 {
        let (status, body) = post_from(
            2,
            &target,
            "/__darkmatter__/connection_request",
            &signed_request(&throwaway(n), &target, "http://127.0.0.2:9"),
        );
        assert!(status == 200 || status == 429, "{status} {body}");
    }
    assert!(pending_ids(&target).contains(&newcomer.id()), "the newcomer's request was displaced");
}

#[test]
fn throwaway_auto_accepts_leave_the_agents_own_accept_working() {
    let _serial = serial();
    let (dt, dn) = (TempDir::new("auto-t"), TempDir::new("auto-n"));
    let target = Node::start(dt.path(), "target", &[]);
    // Throwaway keys from LAN hosts: 50 from one (the attack), then more from others until every
    // budget is spent.
    let hosts = 2 + (AUTO_ACCEPTS_MAX / AUTO_ACCEPTS_PER_SOURCE_MAX) as u8;
    let mut n = 0;
    for host in 2..=hosts {
        let count = if host == 2 { 50 } else { AUTO_ACCEPTS_PER_SOURCE_MAX };
        for _ in 0..count {
            let url = format!("http://127.0.0.{host}:9");
            post_from(
                host,
                &target,
                "/__darkmatter__/connection_request",
                &signed_request(&throwaway(n), &target, &url),
            );
            n += 1;
        }
    }
    let auto_accepted = connection_count(&target);
    // A newcomer is not accepted automatically any more, but the agent can still accept it.
    let newcomer = Node::start(dn.path(), "newcomer", &[]);
    let r = newcomer.cmd(Command::Connect { target_url: target.url() });
    assert_eq!(r["status"], "pending", "{r}");
    let pending = target.cmd(Command::ListPending);
    let request_id = pending["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["agent_id"] == newcomer.id().as_str())
        .expect("the newcomer's request is pending")["request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let accepted = target.handle.command_blocking(Command::Accept { request_id });
    assert!(accepted.is_ok(), "the agent's own accept failed: {accepted:?}");
    assert!(auto_accepted <= AUTO_ACCEPTS_MAX as u64, "{auto_accepted} auto-accepted");
}
