//! Protocol traces: in-memory nodes driven by the deterministic harness through the handshake,
//! messages, replies, forwarding, disconnect, and refusals of replays and forgeries. Each trace is a
//! snapshot: one readable line per event, so a change in behaviour reads as a diff.

use darkmatter_tests::harness::Mesh;
use proto_core::{Command, Method, SendArgs, Targets};
use serde_json::{json, Map, Value};

fn send(to: &str, content: &str) -> Command {
    Command::Send(SendArgs {
        content: content.to_owned(),
        targets: Targets::Agents(vec![to.to_owned()]),
        metadata: Map::new(),
        in_reply_to: None,
        hops_remaining: 10,
    })
}

fn reply(to: &str, content: &str, in_reply_to: &str) -> Command {
    Command::Send(SendArgs {
        content: content.to_owned(),
        targets: Targets::Agents(vec![to.to_owned()]),
        metadata: Map::new(),
        in_reply_to: Some(in_reply_to.to_owned()),
        hops_remaining: 10,
    })
}

fn connect(mesh: &mut Mesh, from: usize, to: usize) -> Value {
    let url = mesh.peers[to].url.clone();
    mesh.command(from, Command::Connect { target_url: url }).expect("connect")
}

#[test]
fn handshake_local_auto_accept_and_pending_accept() {
    let mut m = Mesh::new();
    let a = m.add("A", true);
    let b = m.add("B", false);
    let c = m.add("C", true);
    // A is local to B: auto-accepted.
    let r = connect(&mut m, a, b);
    assert_eq!(r["status"], "connected");
    // B is not local to C: the request waits for C's agent.
    let r = connect(&mut m, b, c);
    assert_eq!(r["status"], "pending");
    let pending = m.command(c, Command::ListPending).unwrap();
    let request_id = pending["requests"][0]["request_id"].as_str().unwrap().to_owned();
    assert_eq!(pending["requests"][0]["identity_verified"], true, "the signed request proved B's key");
    let r = m.command(c, Command::Accept { request_id }).unwrap();
    assert_eq!(r["status"], "connected");
    // Both sides list each other, with the other's key pinned as the id.
    for (x, y) in [(a, b), (b, a), (b, c), (c, b)] {
        let list = m.command(x, Command::ListConnections).unwrap();
        let ids: Vec<&str> =
            list["connections"].as_array().unwrap().iter().map(|c| c["agent_id"].as_str().unwrap()).collect();
        assert!(ids.contains(&m.id(y).as_str()), "{} lists {}", m.peers[x].name, m.peers[y].name);
    }
    insta::assert_snapshot!(m.trace.join("\n"));
}

#[test]
fn message_reply_and_wait_for_response() {
    let mut m = Mesh::new();
    let a = m.add("A", true);
    let b = m.add("B", true);
    connect(&mut m, a, b);
    let sent = m.command(a, send(&m.id(b), "What is the SOL price?")).unwrap();
    let mid = sent["message_id"].as_str().unwrap().to_owned();
    assert_eq!(sent["routed_to"], json!([m.id(b)]));
    let wait = m.start(a, Command::WaitForResponse { message_id: mid.clone(), timeout_ms: 60_000 });
    assert!(m.take_done(wait).is_none(), "no reply yet");
    let inbox = m.command(b, Command::ListInbox).unwrap();
    assert_eq!(inbox["messages"][0]["message_id"], mid.as_str());
    assert_eq!(inbox["messages"][0]["verified"], true);
    m.advance(1_500);
    m.command(b, reply(&m.id(a), "SOL is at $142.30", &mid)).unwrap();
    let done = m.take_done(wait).expect("the reply completes the wait").unwrap();
    assert_eq!(done["timed_out"], false);
    assert_eq!(done["responses"][0]["content"], "SOL is at $142.30");
    let s = m.command(a, Command::GetSent { message_id: mid }).unwrap();
    assert_eq!(s["status"], "responded");
    insta::assert_snapshot!(m.trace.join("\n"));
}

#[test]
fn wait_for_response_times_out_clearly() {
    let mut m = Mesh::new();
    let a = m.add("A", true);
    let b = m.add("B", true);
    connect(&mut m, a, b);
    let sent = m.command(a, send(&m.id(b), "anyone?")).unwrap();
    let mid = sent["message_id"].as_str().unwrap().to_owned();
    let wait = m.start(a, Command::WaitForResponse { message_id: mid, timeout_ms: 5_000 });
    m.advance(4_999);
    assert!(m.take_done(wait).is_none());
    m.advance(1);
    let done = m.take_done(wait).unwrap().unwrap();
    assert_eq!(done["timed_out"], true);
}

#[test]
fn forward_across_three_with_loop_refusal() {
    let mut m = Mesh::new();
    let a = m.add("A", true);
    let b = m.add("B", true);
    let c = m.add("C", true);
    connect(&mut m, a, b);
    connect(&mut m, b, c);
    let sent = m.command(a, send(&m.id(b), "please pass this to C")).unwrap();
    let mid = sent["message_id"].as_str().unwrap().to_owned();
    // B may not forward back to A: A already carried it.
    let back = m.command(
        b,
        Command::Forward(proto_core::ForwardArgs { message_id: mid.clone(), targets: vec![m.id(a)], note: None }),
    );
    assert!(back.unwrap_err().to_string().contains("Loop"));
    let fwd = m
        .command(
            b,
            Command::Forward(proto_core::ForwardArgs {
                message_id: mid.clone(),
                targets: vec![m.id(c)],
                note: Some("for you".into()),
            }),
        )
        .unwrap();
    assert_eq!(fwd["routed_to"], json!([m.id(c)]));
    assert_eq!(fwd["hops_remaining"], 9);
    let got = m.command(c, Command::GetMessage { message_id: mid.clone(), consume: false }).unwrap();
    assert_eq!(got["hops_remaining"], 9);
    assert_eq!(got["metadata"]["forwarded_by"], m.id(b).as_str());
    // A's sent record learned of the forward through its webhook.
    let s = m.command(a, Command::GetSent { message_id: mid.clone() }).unwrap();
    let kinds: Vec<&str> = s["updates"].as_array().unwrap().iter().map(|u| u["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["received", "forwarded", "received"]);
    // C answers A directly, although they are not connected: a signed reply to A's message links.
    let wait = m.start(a, Command::WaitForResponse { message_id: mid.clone(), timeout_ms: 60_000 });
    connect(&mut m, c, a);
    m.command(c, reply(&m.id(a), "got it", &mid)).unwrap();
    assert_eq!(m.take_done(wait).unwrap().unwrap()["responses"][0]["agent_id"], m.id(c).as_str());
    insta::assert_snapshot!(m.trace.join("\n"));
}

#[test]
fn disconnect_is_signed_and_seen_by_both_sides() {
    let mut m = Mesh::new();
    let a = m.add("A", true);
    let b = m.add("B", true);
    connect(&mut m, a, b);
    m.command(a, Command::Disconnect { agent_id: m.id(b) }).unwrap();
    for x in [a, b] {
        assert_eq!(m.command(x, Command::ListConnections).unwrap()["total"], 0);
    }
    insta::assert_snapshot!(m.trace.join("\n"));
}

#[test]
fn replayed_and_forged_messages_are_refused() {
    let mut m = Mesh::new();
    let a = m.add("A", true);
    let b = m.add("B", true);
    connect(&mut m, a, b);
    // Capture the envelope A sends by sending once and replaying the recorded body.
    let before = m.trace.len();
    m.command(a, send(&m.id(b), "original")).unwrap();
    assert!(m.trace[before..].iter().any(|l| l.contains("/message -> 200")));
    let body = envelope_for(&mut m, a, b, "original too");
    let src = m.peers[a].ip;
    let (s1, _) = m.inject(b, Method::Post, "/__darkmatter__/message", &body, src);
    assert_eq!(s1, 200);
    let (s2, v2) = m.inject(b, Method::Post, "/__darkmatter__/message", &body, src);
    assert_eq!((s2, v2["error"].as_str().unwrap()), (409, "Duplicate message — already received"));
    // Tampered content with the original signatures.
    let mut forged: Value = serde_json::from_slice(&envelope_for(&mut m, a, b, "pay 1 SOL to A")).unwrap();
    forged["content"] = json!("pay 100 SOL to Mallory");
    let (s3, v3) = m.inject(b, Method::Post, "/__darkmatter__/message", forged.to_string().as_bytes(), src);
    assert_eq!(s3, 403, "{v3}");
    // Our form dropped to fall back on the legacy form: refused, B knows A speaks ours (no downgrade).
    let mut downgraded: Value = serde_json::from_slice(&envelope_for(&mut m, a, b, "downgrade")).unwrap();
    downgraded.as_object_mut().unwrap().remove("dm_signature_hex");
    let (s4, v4) = m.inject(b, Method::Post, "/__darkmatter__/message", downgraded.to_string().as_bytes(), src);
    assert_eq!(s4, 403);
    assert!(v4["error"].as_str().unwrap().contains("no downgrade"));
    insta::assert_snapshot!(m.trace.join("\n"));
}

/// A fresh envelope from `from` to `to`, captured by asking `from` to send and intercepting it.
fn envelope_for(m: &mut Mesh, from: usize, to: usize, content: &str) -> Vec<u8> {
    // Sign exactly as the node does by building a second mesh-less copy would duplicate code; instead
    // send for real to an unreachable twin and read the transmit body back from the node.
    m.unreachable.push(to);
    let id = m.id(to);
    let mut body = Vec::new();
    let node = &mut m.peers[from].node;
    node.handle_command(m.now, proto_core::CommandId(9_000_000), send(&id, content));
    loop {
        match node.poll_output() {
            proto_core::Output::Transmit(t) if t.url.ends_with("/message") => body = t.body,
            proto_core::Output::Timeout(_) => break,
            _ => {}
        }
    }
    m.unreachable.retain(|x| *x != to);
    assert!(!body.is_empty());
    body
}

#[test]
fn restart_keeps_connections_inbox_and_sent() {
    let mut m = Mesh::new();
    let a = m.add("A", true);
    let b = m.add("B", true);
    connect(&mut m, a, b);
    let sent = m.command(a, send(&m.id(b), "survive this")).unwrap();
    let mid = sent["message_id"].as_str().unwrap().to_owned();
    m.restart(b);
    m.restart(a);
    assert_eq!(m.command(b, Command::ListConnections).unwrap()["total"], 1);
    assert_eq!(m.command(b, Command::ListInbox).unwrap()["messages"][0]["message_id"], mid.as_str());
    assert_eq!(m.command(a, Command::GetSent { message_id: mid.clone() }).unwrap()["routed_to"], json!([m.id(b)]));
    // The replay cache survived too: the same id is still refused after the restart.
    let body = serde_json::to_vec(&json!({"message_id": mid, "content": "x", "webhook": "http://a.test:8100/__darkmatter__/webhook/x", "from_agent_id": m.id(a), "timestamp": "2026-01-01T00:00:00+00:00", "signature_hex": "00"})).unwrap();
    let src = m.peers[a].ip;
    assert_eq!(m.inject(b, Method::Post, "/__darkmatter__/message", &body, src).0, 409);
}

#[test]
fn an_unsigned_forward_claim_does_not_let_a_stranger_answer() {
    let mut m = Mesh::new();
    let a = m.add("A", true);
    let b = m.add("B", true);
    connect(&mut m, a, b);
    let sent = m.command(a, send(&m.id(b), "private question")).unwrap();
    let mid = sent["message_id"].as_str().unwrap().to_owned();
    // Mallory claims, unsigned, that B forwarded the message to her.
    let mallory = proto_core::Passport::from_seed([0x66; 32]);
    let claim = json!({"type": "forwarded", "agent_id": m.id(b), "target_agent_id": mallory.agent_id().as_str()});
    let path = format!("/__darkmatter__/webhook/{mid}");
    let (s, v) = m.inject(a, Method::Post, &path, claim.to_string().as_bytes(), "203.0.113.9".parse().unwrap());
    assert_eq!(s, 403, "B speaks our form, so an unsigned claim in its name is refused: {v}");
    let claim = json!({"type": "forwarded", "agent_id": mallory.agent_id().as_str(), "target_agent_id": mallory.agent_id().as_str()});
    let (s, _) = m.inject(a, Method::Post, &path, claim.to_string().as_bytes(), "203.0.113.9".parse().unwrap());
    assert_eq!(s, 200, "recorded, but unverified");
    let updates = m.command(a, Command::GetSent { message_id: mid.clone() }).unwrap()["updates"].clone();
    assert_eq!(updates.as_array().unwrap().len(), 2, "received + Mallory's unverified claim");
    // Her signed reply to A's message is queued in A's inbox, but does not count as a response.
    let ts = proto_core::time::format_iso(m.now.wall_us);
    let content = "trust me";
    let sig = proto_core::sign::sign_hex(
        &mallory,
        &proto_core::sign::legacy_message_bytes(mallory.agent_id().as_str(), "msg-mallory1", &ts, content).unwrap(),
    );
    let body = json!({"message_id": "msg-mallory1", "content": content, "webhook": "http://mallory.example:8100/__darkmatter__/webhook/msg-mallory1",
        "timestamp": ts, "from_agent_id": mallory.agent_id().as_str(), "signature_hex": sig, "in_reply_to": mid});
    assert_eq!(
        m.inject(
            a,
            Method::Post,
            "/__darkmatter__/message",
            body.to_string().as_bytes(),
            "203.0.113.9".parse().unwrap()
        )
        .0,
        200
    );
    assert_eq!(m.command(a, Command::GetSent { message_id: mid }).unwrap()["response_count"], 0);
}

fn connected(m: &mut Mesh, x: usize, y: usize) -> bool {
    let list = m.command(x, Command::ListConnections).unwrap();
    list["connections"].as_array().unwrap().iter().any(|c| c["agent_id"] == m.id(y).as_str())
}

fn accept_first_pending(m: &mut Mesh, at: usize) {
    let pending = m.command(at, Command::ListPending).unwrap();
    let request_id = pending["requests"][0]["request_id"].as_str().unwrap().to_owned();
    m.command(at, Command::Accept { request_id }).unwrap();
}

/// B (not local) asks C; C accepts while B is unreachable: C holds the connection, B does not
/// know yet. Returns the mesh, B and C.
fn accepted_while_unreachable() -> (Mesh, usize, usize) {
    let mut m = Mesh::new();
    let b = m.add("B", false);
    let c = m.add("C", true);
    assert_eq!(connect(&mut m, b, c)["status"], "pending");
    m.unreachable.push(b);
    accept_first_pending(&mut m, c);
    (m, b, c)
}

#[test]
fn a_lost_acceptance_is_sent_again() {
    let (mut m, b, c) = accepted_while_unreachable();
    assert!(connected(&mut m, c, b) && !connected(&mut m, b, c));
    m.unreachable.clear();
    // The next housekeeping sends the acceptance again; now both sides have the link.
    m.advance(60_000);
    assert!(connected(&mut m, c, b) && connected(&mut m, b, c));
    // Once more (as if B's answer had been lost): B confirms the link it has rather than refusing.
    let c_passport = proto_core::Passport::from_seed(m.peers[c].seed);
    let stamp = proto_core::time::format_iso(m.now.wall_us);
    let (c_id, b_id, c_url) = (m.id(c), m.id(b), m.peers[c].url.clone());
    let bytes = proto_core::sign::v2_bytes(proto_core::sign::V2_ACCEPTED, &[&c_id, &b_id, &c_url, &stamp]);
    let again = json!({"agent_id": c_id, "agent_url": c_url, "agent_public_key_hex": c_id, "to_agent_id": b_id, "timestamp": stamp,
        "dm_signature_hex": proto_core::sign::sign_hex(&c_passport, &bytes)});
    let ip = m.peers[c].ip;
    let (status, body) =
        m.inject(b, Method::Post, "/__darkmatter__/connection_accepted", again.to_string().as_bytes(), ip);
    assert_eq!((status, &body["success"]), (200, &json!(true)), "{body}");
    insta::assert_snapshot!(m.trace.join("\n"));
}

#[test]
fn a_lost_acceptance_is_sent_again_after_a_restart() {
    let (mut m, b, c) = accepted_while_unreachable();
    assert_eq!(
        m.peers[c].disk.get(&(proto_core::Table::Acceptances, m.id(b))),
        Some(&proto_core::store::encode(&1u32)),
        "one attempt, unconfirmed, on disk"
    );
    // C crashes before its next housekeeping: what it must still do comes back from disk.
    m.restart(c);
    m.unreachable.clear();
    m.advance(60_000);
    assert!(connected(&mut m, c, b) && connected(&mut m, b, c), "the acceptance went out again after the restart");
    assert!(!m.peers[c].disk.keys().any(|(t, _)| *t == proto_core::Table::Acceptances), "confirmed: the row is gone");
}

#[test]
fn acceptance_attempts_stop_at_the_limit_across_restarts() {
    let (mut m, b, c) = accepted_while_unreachable();
    for _ in 1..proto_core::limits::ACCEPTANCE_ATTEMPTS_MAX {
        m.restart(c);
        m.advance(60_000);
    }
    let row = m.peers[c].disk.get(&(proto_core::Table::Acceptances, m.id(b))).cloned();
    assert_eq!(row, None, "after the last lost attempt nothing is left to send");
    m.restart(c);
    m.unreachable.clear();
    m.advance(60_000);
    assert!(!connected(&mut m, b, c), "no fourth attempt");
}

#[test]
fn a_refused_acceptance_ends_the_half_open_link() {
    let mut m = Mesh::new();
    let b = m.add("B", false);
    let c = m.add("C", true);
    assert_eq!(connect(&mut m, b, c)["status"], "pending");
    // B gives up: after a crash its outbound request is gone (as when its own call timed out).
    m.peers[b].disk.retain(|(t, _), _| *t != proto_core::Table::PendingOut);
    m.restart(b);
    accept_first_pending(&mut m, c);
    assert!(!connected(&mut m, c, b), "C dropped the link B refused");
    assert!(m.peers[c].events.iter().any(|e| matches!(e, proto_core::Event::Disconnected { by_peer: true, .. })));
    insta::assert_snapshot!(m.trace.join("\n"));
}

#[test]
fn a_re_posted_legacy_envelope_neither_shows_verified_nor_links_as_a_reply() {
    let mut m = Mesh::new();
    let (a, b, c) = (m.add("A", true), m.add("B", true), m.add("C", true));
    connect(&mut m, a, b);
    connect(&mut m, b, c);
    let sent = m.command(a, send(&m.id(b), "question for whoever gets it")).unwrap();
    let mid = sent["message_id"].as_str().unwrap().to_owned();
    let forward = proto_core::ForwardArgs { message_id: mid.clone(), targets: vec![m.id(c)], note: None };
    m.command(b, Command::Forward(forward)).unwrap();
    // C may answer A now (B's signed forward says C got it). C's words in 0.5.3's form, which names
    // neither recipient nor reply link, re-posted to A by whoever received them, with a link added.
    let signer = proto_core::Passport::from_seed(m.peers[c].seed);
    let (ts, content, reply_id) = (proto_core::time::format_iso(m.now.wall_us), "yes, agreed", "msg-c0ffee000001");
    let bytes = proto_core::sign::legacy_message_bytes(&m.id(c), reply_id, &ts, content).unwrap();
    let body = json!({"message_id": reply_id, "content": content, "timestamp": ts, "from_agent_id": m.id(c),
        "signature_hex": proto_core::sign::sign_hex(&signer, &bytes), "in_reply_to": mid,
        "webhook": "http://mallory.example:8100/__darkmatter__/webhook/x"});
    let (status, answer) = m.inject(
        a,
        Method::Post,
        "/__darkmatter__/message",
        body.to_string().as_bytes(),
        "203.0.113.9".parse().unwrap(),
    );
    assert_eq!(status, 200, "{answer}");
    let record = m.command(a, Command::GetSent { message_id: mid }).unwrap();
    assert_eq!((&record["response_count"], &record["status"]), (&json!(0), &json!("active")), "{record}");
    let got = m.command(a, Command::GetMessage { message_id: reply_id.into(), consume: false }).unwrap();
    assert_eq!((&got["verified"], &got["verification"]), (&json!(false), &json!("legacy-relayable")), "{got}");
}
