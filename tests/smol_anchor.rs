//! `darkmatter anchor` over real sockets: the 0.5.3 wire (register, lookup, the four mailboxes, polls),
//! where we are stricter (key = id, stale registrations, poll replay per mailbox, floods from one
//! source, posts for strangers, oversized bodies), the long-poll extension, and a kill -9 restart that
//! keeps everything acknowledged.
//!
//! Each test starts its own anchor on a free loopback port (in-process, or the `smol-anchor` binary
//! when it must be killed). Clients bind 127.0.0.x addresses to be sources of their own.

mod smol_common;

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use proto_core::sign::{domain_bytes, sign_hex, DOMAIN_PEER_UPDATE, DOMAIN_RELAY_POLL};
use proto_core::time::format_iso;
use proto_core::Passport;
use runtime_smol::anchor::{self, AnchorConfig, RunningAnchor};
use serde_json::{json, Value};
use smol_common::{now_us, parse_response, passport, read_response, TempDir};

/// An in-process anchor on a free loopback port.
fn start_anchor(dir: &TempDir) -> RunningAnchor {
    let config = AnchorConfig { port: 0, state_dir: dir.path().join("anchor"), ..AnchorConfig::default() };
    anchor::start(config).expect("anchor starts")
}

/// One request from source `127.0.0.<src>`; status and JSON body.
fn http_from(src: u8, addr: SocketAddr, method: &str, target: &str, body: &[u8]) -> (u16, Value) {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(IpAddr::from([127, 0, 0, src]), 0).into()).unwrap();
    socket.connect_timeout(&addr.into(), Duration::from_secs(5)).unwrap();
    let mut s: TcpStream = socket.into();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    std::io::Write::write_all(&mut s, &req).unwrap();
    parse_response(&read_response(&mut s).unwrap())
}

fn registration_at(p: &Passport, url: &str, stamp_us: i64) -> Vec<u8> {
    let id = p.agent_id().as_str();
    let ts = format_iso(stamp_us);
    let sig = sign_hex(p, &domain_bytes(DOMAIN_PEER_UPDATE, &[id, url, &ts]).unwrap());
    // The body a 0.5.3 node sends (its extra fields are ignored).
    serde_json::to_vec(&json!({
        "agent_id": id, "new_url": url, "addresses": {"http": url}, "timestamp": ts, "bio": "b",
        "display_name": "n", "public_key_hex": id, "signature": sig,
    }))
    .unwrap()
}

fn register(addr: SocketAddr, src: u8, p: &Passport, url: &str) -> (u16, Value) {
    http_from(src, addr, "POST", "/__darkmatter__/peer_update", &registration_at(p, url, now_us()))
}

/// `?signature=..&timestamp=..` of a 0.5.3 relay poll signed now (plus `extra`).
fn poll_query(p: &Passport, stamp_us: i64, extra: &str) -> String {
    let ts = format_iso(stamp_us);
    let sig = sign_hex(p, &domain_bytes(DOMAIN_RELAY_POLL, &[p.agent_id().as_str(), &ts]).unwrap());
    // Percent-encoded as httpx does: `+` and `:` of the ISO timestamp.
    let ts = ts.replace(':', "%3A").replace('+', "%2B");
    format!("?signature={sig}&timestamp={ts}{extra}")
}

fn poll(addr: SocketAddr, p: &Passport, word: &str, query: &str) -> (u16, Value) {
    http_from(9, addr, "GET", &format!("/__darkmatter__/{word}_poll/{}{query}", p.agent_id().as_str()), b"")
}

#[test]
fn register_lookup_and_relay_speak_the_0_5_3_wire() {
    let dir = TempDir::new("anchor-wire");
    let a = start_anchor(&dir);
    let addr = a.local_addr;
    let (alice, bob) = (passport(1), passport(2));
    assert_eq!(
        register(addr, 2, &alice, "http://alice.example:9"),
        (200, json!({"success": true, "registered": true}))
    );
    assert_eq!(register(addr, 2, &alice, "http://alice.example:9").1["registered"], false);
    register(addr, 3, &bob, "http://bob.example:9");
    let (status, card) = http_from(2, addr, "GET", "/.well-known/darkmatter.json", b"");
    assert_eq!(
        (status, &card["anchor"], &card["agents_registered"], &card["protocol_version"]),
        (200, &json!(true), &json!(2), &json!("0.2"))
    );

    let (status, found) =
        http_from(3, addr, "GET", &format!("/__darkmatter__/peer_lookup/{}", alice.agent_id().as_str()), b"");
    assert_eq!((status, found["url"].as_str()), (200, Some("http://alice.example:9")));
    assert!(found["last_seen"].as_f64().unwrap() > 1.7e9);
    let unknown =
        http_from(3, addr, "GET", &format!("/__darkmatter__/peer_lookup/{}", passport(9).agent_id().as_str()), b"");
    assert_eq!(unknown, (404, json!({"error": "Unknown agent"})));

    // One mailbox of each kind, drained by its own poll, in 0.5.3's answer shapes.
    let id = alice.agent_id().as_str();
    let buffered = json!({"success": true, "buffered": true});
    assert_eq!(
        http_from(3, addr, "POST", &format!("/__darkmatter__/webhook_relay/{id}/msg-1"), br#"{"type":"reply"}"#),
        (200, buffered.clone())
    );
    assert_eq!(
        http_from(3, addr, "GET", &format!("/__darkmatter__/webhook_relay/{id}/msg-1"), b""),
        (200, json!({"status": "relay", "message_id": "msg-1"}))
    );
    for (word, body) in [
        ("connection_relay", r#"{"agent_id":"b"}"#),
        ("sdp_relay", r#"{"type":"offer"}"#),
        ("message_relay", r#"{"e2e_encrypted":true}"#),
    ] {
        assert_eq!(
            http_from(3, addr, "POST", &format!("/__darkmatter__/{word}/{id}"), body.as_bytes()),
            (200, buffered.clone()),
            "{word}"
        );
    }
    let q = poll_query(&alice, now_us(), "");
    assert_eq!(
        poll(addr, &alice, "webhook_relay", &q),
        (200, json!({"success": true, "callbacks": [{"message_id": "msg-1", "data": {"type": "reply"}}]}))
    );
    assert_eq!(
        poll(addr, &alice, "connection_relay", &q),
        (200, json!({"success": true, "callbacks": [{"agent_id": "b"}]}))
    );
    assert_eq!(
        poll(addr, &alice, "sdp_relay", &poll_query(&alice, now_us(), "")),
        (200, json!({"success": true, "signals": [{"type": "offer"}]}))
    );
    assert_eq!(
        poll(addr, &alice, "message_relay", &poll_query(&alice, now_us() + 1, "")),
        (200, json!({"success": true, "messages": [{"e2e_encrypted": true}]}))
    );
    // Drained: the next poll is empty.
    assert_eq!(poll(addr, &alice, "message_relay", &poll_query(&alice, now_us() + 2, "")).1["messages"], json!([]));
    a.stop();
    a.wait().unwrap();
}

#[test]
fn stale_and_mismatched_registrations_are_refused() {
    let dir = TempDir::new("anchor-reg");
    let a = start_anchor(&dir);
    let addr = a.local_addr;
    let (owner, squatter) = (passport(1), passport(2));
    let t = now_us();
    let path = "/__darkmatter__/peer_update";
    assert_eq!(http_from(2, addr, "POST", path, &registration_at(&owner, "http://new.example:1", t)).0, 200);

    // An id registered with another key (0.5.3 pins whichever key came first).
    let mut squat: Value = serde_json::from_slice(&registration_at(&squatter, "http://evil:1", t)).unwrap();
    let id = passport(3).agent_id().as_str().to_owned();
    let ts = squat["timestamp"].as_str().unwrap().to_owned();
    squat["agent_id"] = json!(id);
    squat["signature"] =
        json!(sign_hex(&squatter, &domain_bytes(DOMAIN_PEER_UPDATE, &[&id, "http://evil:1", &ts]).unwrap()));
    assert_eq!(
        http_from(3, addr, "POST", path, &serde_json::to_vec(&squat).unwrap()),
        (403, json!({"error": "Public key mismatch"}))
    );
    let lookup = format!("/__darkmatter__/peer_lookup/{id}");
    assert_eq!(http_from(3, addr, "GET", &lookup, b"").0, 404, "the squatter registered nothing");

    // The owner's own, older registration (captured earlier, still fresh) cannot move it back.
    let older = registration_at(&owner, "http://old.example:1", t - 10_000_000);
    assert_eq!(http_from(3, addr, "POST", path, &older), (409, json!({"error": "Stale registration"})));
    let expired = registration_at(&owner, "http://old.example:1", t - 301_000_000);
    assert_eq!(http_from(3, addr, "POST", path, &expired), (403, json!({"error": "Timestamp expired or invalid"})));
    let mut forged: Value = serde_json::from_slice(&registration_at(&owner, "http://x.example:1", now_us())).unwrap();
    forged["new_url"] = json!("http://forged.example:1");
    assert_eq!(
        http_from(3, addr, "POST", path, &serde_json::to_vec(&forged).unwrap()),
        (403, json!({"error": "Invalid signature"}))
    );
    let found = http_from(3, addr, "GET", &format!("/__darkmatter__/peer_lookup/{}", owner.agent_id().as_str()), b"").1;
    assert_eq!(found["url"], "http://new.example:1");
    // The lookup carries the registration itself, checkable under the id.
    let su = &found["signed_update"];
    let bytes = domain_bytes(
        DOMAIN_PEER_UPDATE,
        &[su["agent_id"].as_str().unwrap(), su["new_url"].as_str().unwrap(), su["timestamp"].as_str().unwrap()],
    )
    .unwrap();
    assert!(proto_core::sign::verify_hex(owner.agent_id().key(), &bytes, su["signature"].as_str().unwrap()).is_ok());
    a.stop();
    a.wait().unwrap();
}

#[test]
fn a_replayed_poll_drains_nothing_but_0_5_3_signature_reuse_across_mailboxes_works() {
    let dir = TempDir::new("anchor-replay");
    let a = start_anchor(&dir);
    let addr = a.local_addr;
    let alice = passport(1);
    let id = alice.agent_id().as_str().to_owned();
    register(addr, 2, &alice, "http://alice.example:9");
    let q = poll_query(&alice, now_us(), "");
    assert_eq!(poll(addr, &alice, "webhook_relay", &q).0, 200);
    // A captured poll, replayed after new mail arrived, gets nothing and drains nothing.
    http_from(3, addr, "POST", &format!("/__darkmatter__/webhook_relay/{id}/m2"), br#"{"x":1}"#);
    assert_eq!(poll(addr, &alice, "webhook_relay", &q), (403, json!({"error": "Replayed poll"})));
    // 0.5.3 signs once and polls webhook then connection mailboxes with the same signature.
    assert_eq!(poll(addr, &alice, "connection_relay", &q).0, 200);
    let fresh = poll(addr, &alice, "webhook_relay", &poll_query(&alice, now_us() + 1, ""));
    assert_eq!(fresh.1["callbacks"][0]["message_id"], "m2", "the replay did not drain the mailbox");
    // Missing and stale signatures, as 0.5.3.
    assert_eq!(poll(addr, &alice, "message_relay", ""), (400, json!({"error": "Missing signature or timestamp"})));
    assert_eq!(
        poll(addr, &alice, "message_relay", &poll_query(&alice, now_us() - 301_000_000, "")),
        (403, json!({"error": "Timestamp expired"}))
    );
    assert_eq!(
        poll(addr, &passport(5), "message_relay", &poll_query(&passport(5), now_us(), "")),
        (403, json!({"error": "Invalid signature"}))
    );
    a.stop();
    a.wait().unwrap();
}

#[test]
fn a_flood_from_one_source_is_cut_while_other_sources_are_served() {
    let dir = TempDir::new("anchor-flood");
    let a = start_anchor(&dir);
    let addr = a.local_addr;
    let alice = passport(1);
    let id = alice.agent_id().as_str().to_owned();
    register(addr, 2, &alice, "http://alice.example:9");
    let path = format!("/__darkmatter__/message_relay/{id}");
    // Posts for an agent that never registered here are refused: the buffers are not free storage.
    let stranger = format!("/__darkmatter__/message_relay/{}", passport(7).agent_id().as_str());
    assert_eq!(http_from(3, addr, "POST", &stranger, br#"{"m":1}"#), (404, json!({"error": "Unknown agent"})));
    // An honest sender's message, then a flood from another source that overflows the mailbox.
    assert_eq!(http_from(3, addr, "POST", &path, br#"{"honest":true}"#).0, 200);
    let posts_max = proto_core::limits::ANCHOR_POSTS_PER_SOURCE;
    let mut accepted = 0;
    for i in 0..posts_max + 5 {
        let (status, _) = http_from(4, addr, "POST", &path, format!("{{\"junk\":{i}}}").as_bytes());
        if status == 200 {
            accepted += 1;
        } else {
            assert_eq!(status, 429, "post {i}");
        }
    }
    assert_eq!(accepted, posts_max, "the flooder's budget");
    // Others are still served while the flooder is refused.
    assert_eq!(http_from(5, addr, "POST", &path, br#"{"late":true}"#).0, 200);
    assert_eq!(http_from(4, addr, "POST", &path, br#"{"junk":-1}"#).0, 429);
    let (status, got) = poll(addr, &alice, "message_relay", &poll_query(&alice, now_us(), ""));
    assert_eq!(status, 200);
    let messages = got["messages"].as_array().unwrap();
    assert_eq!(messages.len(), proto_core::limits::ANCHOR_MESSAGE_ENTRIES_MAX);
    assert!(messages.contains(&json!({"honest": true})), "the flood evicted the honest message");
    assert!(messages.contains(&json!({"late": true})));
    // A body over the entry cap.
    let big = [b"\"".as_slice(), &vec![b'x'; 300 * 1024], b"\""].concat();
    assert_eq!(http_from(6, addr, "POST", &path, &big).0, 413);
    a.stop();
    a.wait().unwrap();
}

#[test]
fn a_long_poll_returns_as_soon_as_mail_arrives_and_a_plain_poll_does_not_wait() {
    let dir = TempDir::new("anchor-long");
    let a = start_anchor(&dir);
    let addr = a.local_addr;
    let alice = passport(1);
    let id = alice.agent_id().as_str().to_owned();
    register(addr, 2, &alice, "http://alice.example:9");
    let started = Instant::now();
    assert_eq!(poll(addr, &alice, "message_relay", &poll_query(&alice, now_us(), "")).1["messages"], json!([]));
    assert!(started.elapsed() < Duration::from_secs(2), "a plain (0.5.3) poll is answered at once");
    let q = poll_query(&alice, now_us() + 1, "&wait=20");
    let waiter = std::thread::spawn(move || {
        let t = Instant::now();
        (poll(addr, &passport(1), "message_relay", &q), t.elapsed())
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(http_from(3, addr, "POST", &format!("/__darkmatter__/message_relay/{id}"), br#"{"m":1}"#).0, 200);
    let ((status, got), waited) = waiter.join().unwrap();
    assert_eq!((status, got["messages"].clone()), (200, json!([{"m": 1}])));
    assert!(waited >= Duration::from_millis(400) && waited < Duration::from_secs(10), "{waited:?}");
    a.stop();
    a.wait().unwrap();
}

/// The `smol-anchor` binary (what `darkmatter anchor` runs) as a child; its ready line's URL.
fn spawn_anchor(state: &std::path::Path) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_smol-anchor"))
        .arg(state)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn smol-anchor");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let ready: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("ready line: {line:?}"));
    assert_eq!(ready["ready"], true);
    let url = ready["url"].as_str().unwrap();
    (child, url.trim_start_matches("http://").parse().unwrap())
}

#[test]
fn a_restart_after_kill_9_keeps_what_was_acknowledged() {
    let dir = TempDir::new("anchor-restart");
    let state = dir.path().join("anchor");
    let (mut child, addr) = spawn_anchor(&state);
    let alice = passport(1);
    let id = alice.agent_id().as_str().to_owned();
    assert_eq!(register(addr, 2, &alice, "http://alice.example:9").0, 200);
    for i in 0..3 {
        let body = format!("{{\"n\":{i}}}");
        assert_eq!(http_from(3, addr, "POST", &format!("/__darkmatter__/message_relay/{id}"), body.as_bytes()).0, 200);
    }
    assert_eq!(http_from(3, addr, "POST", &format!("/__darkmatter__/webhook_relay/{id}/m1"), br#"{"w":1}"#).0, 200);
    // A poll of the connection mailbox, captured: it must stay spent across the restart.
    let spent = poll_query(&alice, now_us(), "");
    assert_eq!(poll(addr, &alice, "connection_relay", &spent).0, 200);
    child.kill().unwrap();
    child.wait().unwrap();

    let (mut child, addr) = spawn_anchor(&state);
    let found = http_from(2, addr, "GET", &format!("/__darkmatter__/peer_lookup/{id}"), b"");
    assert_eq!((found.0, found.1["url"].as_str()), (200, Some("http://alice.example:9")));
    let (_, got) = poll(addr, &alice, "message_relay", &poll_query(&alice, now_us(), ""));
    assert_eq!(got["messages"], json!([{"n": 0}, {"n": 1}, {"n": 2}]));
    let (_, got) = poll(addr, &alice, "webhook_relay", &poll_query(&alice, now_us(), ""));
    assert_eq!(got["callbacks"], json!([{"message_id": "m1", "data": {"w": 1}}]));
    assert_eq!(poll(addr, &alice, "connection_relay", &spent), (403, json!({"error": "Replayed poll"})));
    // Drained entries stay drained across a second restart.
    child.kill().unwrap();
    child.wait().unwrap();
    let (mut child, addr) = spawn_anchor(&state);
    let (_, got) = poll(addr, &alice, "message_relay", &poll_query(&alice, now_us(), ""));
    assert_eq!(got["messages"], json!([]));
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_probe_of_another_host_is_refused_and_the_anchor_fetches_nothing() {
    let dir = TempDir::new("anchor-probe");
    let a = start_anchor(&dir);
    // A listener the anchor would have to call if it probed: it must see no connection.
    let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    target.set_nonblocking(true).unwrap();
    let url = format!("http://{}/__darkmatter__/status", target.local_addr().unwrap());
    let body = serde_json::to_vec(&json!({ "url": url })).unwrap();
    let (status, err) = http_from(2, a.local_addr, "POST", "/__darkmatter__/probe_reachability", &body);
    assert_eq!(status, 400, "{err}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(target.accept().is_err(), "the anchor connected to the probed URL");
    a.stop();
    a.wait().unwrap();
}

/// A one-shot status page on `127.0.0.<src>` answering `head` (a status line and headers).
fn status_page(src: u8, head: &'static str) -> (SocketAddr, std::thread::JoinHandle<bool>) {
    let listener = std::net::TcpListener::bind((IpAddr::from([127, 0, 0, src]), 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let served = std::thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else { return false };
        let mut line = String::new();
        let _ = BufReader::new(s.try_clone().unwrap()).read_line(&mut line);
        let ok = line.starts_with("GET /__darkmatter__/status ");
        let _ = std::io::Write::write_all(&mut s, format!("{head}\r\nContent-Length: 2\r\n\r\n{{}}").as_bytes());
        ok
    });
    (addr, served)
}

fn probe(anchor: SocketAddr, src: u8, url: &str) -> (u16, Value) {
    let body = serde_json::to_vec(&json!({ "url": url })).unwrap();
    http_from(src, anchor, "POST", "/__darkmatter__/probe_reachability", &body)
}

#[test]
fn a_probe_of_the_callers_own_address_says_whether_it_really_answers() {
    let dir = TempDir::new("anchor-probe-self");
    let a = start_anchor(&dir);
    let (page, served) = status_page(3, "HTTP/1.1 200 OK");
    let (status, got) = probe(a.local_addr, 3, &format!("http://{page}/__darkmatter__/status"));
    assert_eq!((status, &got), (200, &json!({"reachable": true, "status_code": 200})));
    assert!(served.join().unwrap(), "the anchor fetched the status page");

    // A redirect is not followed: reachable only on 200.
    let (page, served) = status_page(3, "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:9/");
    let (_, got) = probe(a.local_addr, 3, &format!("http://{page}/__darkmatter__/status"));
    assert_eq!(got, json!({"reachable": false, "status_code": 302}));
    served.join().unwrap();

    // A closed port on the caller's address: unreachable, no status.
    let closed = std::net::TcpListener::bind("127.0.0.3:0").unwrap().local_addr().unwrap();
    let (_, got) = probe(a.local_addr, 3, &format!("http://{closed}/__darkmatter__/status"));
    assert_eq!(got, json!({"reachable": false, "status_code": null}));

    // Any other path on the caller's address is refused.
    let (status, _) = probe(a.local_addr, 3, &format!("http://{closed}/admin"));
    assert_eq!(status, 400);
    a.stop();
    a.wait().unwrap();
}
