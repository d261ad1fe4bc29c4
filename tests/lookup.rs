//! Peer lookups (SPEC §9.4), driven through in-memory nodes: a peer that moved is found again on its
//! own signature, never on a relayer's say-so; 0.5.3 peers that sign nothing are found only by
//! agreement plus their card; a flapping peer costs one fan-out a minute; a restart on a new address
//! is announced.

use core::net::IpAddr;

use darkmatter_tests::harness::Mesh;
use proto_core::limits::{LOOKUP_COOLDOWN_MS, LOOKUP_UNSIGNED_AGREE_MIN, WEBHOOK_RECOVERY_WINDOW_MS};
use proto_core::sign::{domain_bytes, sign_hex, DOMAIN_PEER_UPDATE};
use proto_core::time::format_iso;
use proto_core::{Command, Event, ForwardArgs, Method, Passport, RecoveredVia, SendArgs, Targets};
use serde_json::{json, Map, Value};

fn connect(m: &mut Mesh, from: usize, to: usize) {
    let url = m.peers[to].url.clone();
    m.command(from, Command::Connect { target_url: url }).expect("connect");
}

fn impression(m: &mut Mesh, at: usize, of: &str, score: f64) {
    m.command(at, Command::SetImpression { agent_id: of.to_owned(), score, note: None }).unwrap();
}

fn send(m: &mut Mesh, from: usize, to: usize, content: &str) -> Value {
    let targets = Targets::Agents(vec![m.id(to)]);
    let args =
        SendArgs { content: content.into(), targets, metadata: Map::new(), in_reply_to: None, hops_remaining: 1 };
    m.command(from, Command::Send(args)).unwrap()
}

fn inbox_has(m: &mut Mesh, at: usize, content: &str) -> bool {
    m.command(at, Command::ListInbox).unwrap().to_string().contains(content)
}

fn connection(m: &mut Mesh, at: usize, of: usize) -> Value {
    let id = m.id(of);
    let list = m.command(at, Command::ListConnections).unwrap();
    let conn = list["connections"].as_array().unwrap().iter().find(|c| c["agent_id"] == id.as_str()).cloned();
    conn.unwrap_or_else(|| panic!("{id} not in {list}"))
}

fn url_of(m: &mut Mesh, at: usize, of: usize) -> String {
    connection(m, at, of)["url"].as_str().unwrap().to_owned()
}

fn url_verified(m: &mut Mesh, at: usize, of: usize) -> bool {
    connection(m, at, of)["url_verified"].as_bool().expect("url_verified listed")
}

/// Moves node `p` to `new_url`; its signed update reaches only the nodes in `told`.
fn move_node(m: &mut Mesh, p: usize, new_url: &str, told: &[usize]) {
    m.advance(1_000);
    let others: Vec<usize> = (0..m.peers.len()).filter(|i| *i != p && !told.contains(i)).collect();
    m.unreachable = others;
    m.peers[p].url = new_url.to_owned();
    m.command(p, Command::SetUrl { url: new_url.to_owned() }).unwrap();
    m.unreachable.clear();
}

fn lookups_sent(m: &Mesh, from: &str) -> usize {
    m.trace.iter().filter(|l| l.contains(&format!(" {from} -> ")) && l.contains("peer_lookup")).count()
}

fn recovered(m: &Mesh, at: usize) -> Vec<(String, bool)> {
    m.peers[at]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::PeerUrlRecovered { new_url, verified, via, .. } => {
                assert_eq!(*via, RecoveredVia::Peer, "only connections were asked");
                Some((new_url.clone(), *verified))
            }
            _ => None,
        })
        .collect()
}

fn not_found(m: &Mesh, at: usize) -> usize {
    m.peers[at].events.iter().filter(|e| matches!(e, Event::PeerNotFound { .. })).count()
}

/// C, P, Q1..Q3: everyone connected to P and C connected to each Q; C trusts Q2 and Q3 more than Q1.
fn mesh() -> (Mesh, usize, usize, [usize; 3]) {
    let mut m = Mesh::new();
    let c = m.add("C", true);
    let p = m.add("P", true);
    let q = [m.add("Q1", true), m.add("Q2", true), m.add("Q3", true)];
    for &x in [c].iter().chain(&q) {
        connect(&mut m, p, x);
    }
    for &x in &q {
        connect(&mut m, c, x);
    }
    for (x, score) in q.iter().zip([0.1, 0.9, 0.9]) {
        let id = m.id(*x);
        impression(&mut m, c, &id, score);
    }
    (m, c, p, q)
}

#[test]
fn the_peers_own_signed_update_wins_over_a_trusted_stale_majority() {
    let (mut m, c, p, q) = mesh();
    assert!(url_verified(&mut m, c, p), "from the handshake");
    move_node(&mut m, p, "http://p2.test:8100", &[q[0]]);
    assert_eq!(url_of(&mut m, c, p), "http://p.test:8100", "C was not told");
    send(&mut m, c, p, "found you");
    assert!(inbox_has(&mut m, p, "found you"), "the failed delivery was retried at the new URL");
    assert_eq!(url_of(&mut m, c, p), "http://p2.test:8100");
    assert!(url_verified(&mut m, c, p), "P signed it");
    assert_eq!(recovered(&m, c), vec![("http://p2.test:8100".to_owned(), true)]);
    // The proof travels on: C now serves P's own signature to whoever asks.
    let (status, answer) = m.inject(c, Method::Get, &format!("/__darkmatter__/peer_lookup/{}", m.id(p)), b"", ip());
    assert_eq!(status, 200);
    assert_eq!(answer["signed_update"]["new_url"], "http://p2.test:8100", "{answer}");
    assert!(answer["signed_update"]["dm_signature_hex"].is_string(), "{answer}");
}

#[test]
fn an_older_update_replayed_by_a_relayer_is_refused() {
    let (mut m, c, p, q) = mesh();
    // P moves twice: Q1 keeps the first update, C receives the second directly.
    move_node(&mut m, p, "http://p2.test:8100", &[q[0]]);
    m.advance(1_000);
    move_node(&mut m, p, "http://p3.test:8100", &[c]);
    assert_eq!(url_of(&mut m, c, p), "http://p3.test:8100");
    // Q1 re-posts the older, genuinely signed update to C: refused.
    let older = m.inject(q[0], Method::Get, &format!("/__darkmatter__/peer_lookup/{}", m.id(p)), b"", ip()).1;
    let mut update = older["signed_update"].clone();
    update["public_key_hex"] = json!(m.id(p));
    let (status, body) = m.inject(c, Method::Post, "/__darkmatter__/peer_update", update.to_string().as_bytes(), ip());
    assert_ne!(status, 200, "{body}");
    // P goes offline at p3: a lookup finds only the older update and adopts nothing.
    m.unreachable = vec![p];
    send(&mut m, c, p, "where are you");
    assert_eq!(url_of(&mut m, c, p), "http://p3.test:8100", "never back to an older URL");
    assert!(recovered(&m, c).is_empty());
    assert_eq!(not_found(&m, c), 1);
}

#[test]
fn a_webhook_callback_to_a_peer_that_moved_is_posted_again_at_its_new_url() {
    let (mut m, c, p, q) = mesh();
    let message_id = send(&mut m, p, c, "pass it on")["message_id"].as_str().unwrap().to_owned();
    // P moves and tells only Q1; C forwards P's message to Q2, and its `forwarded` callback to P's
    // webhook fails at the old URL.
    move_node(&mut m, p, "http://p2.test:8100", &[q[0]]);
    let targets = vec![m.id(q[1])];
    m.command(c, Command::Forward(ForwardArgs { message_id: message_id.clone(), targets, note: None })).unwrap();
    m.run();
    let old_hook = format!("http://p.test:8100/__darkmatter__/webhook/{message_id}");
    assert!(m.trace.iter().any(|l| l.contains(" C -> ? Post") && l.contains(&old_hook)), "{:#?}", m.trace);
    assert_eq!(url_of(&mut m, c, p), "http://p2.test:8100", "found on P's own signature");
    let sent = m.command(p, Command::GetSent { message_id }).unwrap();
    let kinds: Vec<&str> = sent["updates"].as_array().unwrap().iter().filter_map(|u| u["type"].as_str()).collect();
    assert!(kinds.contains(&"forwarded"), "{sent}");
}

/// P's message reaches C, P moves (telling Q1), C forwards it while the Qs answer `delay_ms` late:
/// whether C's `forwarded` callback reached P's new URL.
fn forwarded_callback_arrives_after(delay_ms: u64) -> bool {
    let (mut m, c, p, q) = mesh();
    let message_id = send(&mut m, p, c, "pass it on")["message_id"].as_str().unwrap().to_owned();
    move_node(&mut m, p, "http://p2.test:8100", &[q[0]]);
    m.slow = q.to_vec();
    let targets = vec![m.id(q[1])];
    m.start(c, Command::Forward(ForwardArgs { message_id: message_id.clone(), targets, note: None }));
    m.run();
    m.advance(delay_ms);
    m.release();
    assert_eq!(url_of(&mut m, c, p), "http://p2.test:8100", "the lookup itself succeeded");
    let sent = m.command(p, Command::GetSent { message_id }).unwrap();
    sent["updates"].as_array().unwrap().iter().any(|u| u["type"] == "forwarded")
}

#[test]
fn a_webhook_callback_is_posted_again_only_within_its_recovery_window() {
    assert!(forwarded_callback_arrives_after(WEBHOOK_RECOVERY_WINDOW_MS));
    assert!(!forwarded_callback_arrives_after(WEBHOOK_RECOVERY_WINDOW_MS + 1));
}

fn ip() -> IpAddr {
    "203.0.113.200".parse().unwrap()
}

/// Makes a scripted peer (a passport, no node) a connection of `to`, answering at `url`.
fn scripted_connection(m: &mut Mesh, to: usize, who: &Passport, url: &str) {
    let local: IpAddr = "10.0.0.99".parse().unwrap();
    let req = json!({"from_agent_id": who.agent_id().as_str(), "from_agent_url": url, "from_agent_display_name": "S"});
    let (s, v) = m.inject(to, Method::Post, "/__darkmatter__/connection_request", req.to_string().as_bytes(), local);
    assert_eq!(s, 200, "{v}");
    let challenge = v["challenge_hex"].as_str().unwrap();
    let proof_hex = sign_hex(who, &domain_bytes(proto_core::sign::DOMAIN_CHALLENGE, &[challenge]).unwrap());
    let proof = json!({"challenge_id": v["challenge_id"], "proof_hex": proof_hex,
        "agent_id": who.agent_id().as_str(), "public_key_hex": who.agent_id().as_str()});
    let (s, v) = m.inject(to, Method::Post, "/__darkmatter__/connection_proof", proof.to_string().as_bytes(), local);
    assert_eq!((s, v["accepted"].as_bool()), (200, Some(true)), "{v}");
}

/// A 0.5.3-form update for `agent` at `url`, signed by `signer`.
fn legacy_update(signer: &Passport, agent: &str, url: &str, wall_us: i64) -> Value {
    let stamp = format_iso(wall_us);
    let sig = sign_hex(signer, &domain_bytes(DOMAIN_PEER_UPDATE, &[agent, url, &stamp]).unwrap());
    json!({"agent_id": agent, "new_url": url, "timestamp": stamp, "signature": sig})
}

#[test]
fn a_forged_signed_update_is_ignored_and_one_unsigned_answer_is_not_enough() {
    let mut m = Mesh::new();
    let c = m.add("C", true);
    let p = m.add("P", true);
    connect(&mut m, p, c);
    let liar = Passport::from_seed([0x77; 32]);
    scripted_connection(&mut m, c, &liar, "http://liar.test:8100");
    let pid = m.id(p);
    m.advance(1_000);
    // The liar names its own trap, "signed" with its own key instead of P's (and newer than ours).
    let forged = legacy_update(&liar, &pid, "http://trap.test:8100", m.now.wall_us);
    let answer = json!({"agent_id": pid, "url": "http://trap.test:8100", "signed_update": forged});
    m.canned.push((format!("http://liar.test:8100/__darkmatter__/peer_lookup/{pid}"), 200, answer));
    m.canned.push(("http://trap.test:8100".to_owned(), 200, json!({"agent_id": pid, "public_key_hex": pid})));
    m.unreachable = vec![p];
    send(&mut m, c, p, "secret");
    assert_eq!(url_of(&mut m, c, p), "http://p.test:8100", "nothing adopted");
    assert!(!m.trace.iter().any(|l| l.contains("trap.test") && l.contains("/message")), "no content went to the trap");
    assert_eq!(not_found(&m, c), 1);
}

#[test]
fn agreeing_unsigned_answers_are_adopted_only_when_the_card_there_proves_the_key() {
    let mut m = Mesh::new();
    let c = m.add("C", true);
    let p = m.add("P", true);
    connect(&mut m, p, c);
    let pid = m.id(p);
    // Two 0.5.3 peers (they serve no signed update) agree on P's new URL.
    let answerers: Vec<Passport> =
        (0..LOOKUP_UNSIGNED_AGREE_MIN as u8).map(|i| Passport::from_seed([0x60 + i; 32])).collect();
    for (i, a) in answerers.iter().enumerate() {
        let url = format!("http://old{i}.test:8100");
        scripted_connection(&mut m, c, a, &url);
        let answer = json!({"agent_id": pid, "url": "http://p2.test:8100", "status": "connected"});
        m.canned.push((format!("{url}/__darkmatter__/peer_lookup/{pid}"), 200, answer));
    }
    // P moved without telling anyone; its card at the new URL is its own.
    move_node(&mut m, p, "http://p2.test:8100", &[]);
    send(&mut m, c, p, "via agreement");
    assert!(inbox_has(&mut m, p, "via agreement"));
    assert_eq!(recovered(&m, c), vec![("http://p2.test:8100".to_owned(), false)]);
    assert!(!url_verified(&mut m, c, p), "adopted on agreement alone");
    // Unverified: not served as proof to others, and the first signed update replaces it.
    let (_, answer) = m.inject(c, Method::Get, &format!("/__darkmatter__/peer_lookup/{pid}"), b"", ip());
    assert!(answer.get("signed_update").is_none(), "{answer}");
    m.advance(1_000);
    move_node(&mut m, p, "http://p3.test:8100", &[c]);
    assert_eq!(url_of(&mut m, c, p), "http://p3.test:8100");
    assert!(url_verified(&mut m, c, p), "P's own signed update replaced it");
}

#[test]
fn answers_naming_the_url_that_failed_adopt_nothing() {
    let mut m = Mesh::new();
    let c = m.add("C", true);
    let p = m.add("P", true);
    connect(&mut m, p, c);
    let pid = m.id(p);
    // P is down, not moved: 0.5.3 answerers name the URL C already has, and its card is P's.
    for i in 0..2u8 {
        let a = Passport::from_seed([0x40 + i; 32]);
        let url = format!("http://q{i}.test:8100");
        scripted_connection(&mut m, c, &a, &url);
        let answer = json!({"agent_id": pid, "url": "http://p.test:8100"});
        m.canned.push((format!("{url}/__darkmatter__/peer_lookup/{pid}"), 200, answer));
    }
    let card = json!({"agent_id": pid, "public_key_hex": pid});
    m.canned.push(("http://p.test:8100/.well-known".to_owned(), 200, card));
    m.unreachable = vec![p];
    send(&mut m, c, p, "are you there");
    assert!(recovered(&m, c).is_empty(), "nothing moved");
    assert!(url_verified(&mut m, c, p), "the handshake's URL stays proven");
    assert_eq!(not_found(&m, c), 1);
}

#[test]
fn a_card_for_another_key_at_the_agreed_url_adopts_nothing() {
    let mut m = Mesh::new();
    let c = m.add("C", true);
    let p = m.add("P", true);
    connect(&mut m, p, c);
    let pid = m.id(p);
    for i in 0..2u8 {
        let a = Passport::from_seed([0x50 + i; 32]);
        let url = format!("http://sybil{i}.test:8100");
        scripted_connection(&mut m, c, &a, &url);
        m.canned.push((
            format!("{url}/__darkmatter__/peer_lookup/{pid}"),
            200,
            json!({"agent_id": pid, "url": "http://trap.test:8100"}),
        ));
    }
    let other = Passport::from_seed([0x99; 32]);
    let oid = other.agent_id().as_str().to_owned();
    m.canned.push((
        "http://trap.test:8100/.well-known".to_owned(),
        200,
        json!({"agent_id": pid, "public_key_hex": oid}),
    ));
    m.unreachable = vec![p];
    send(&mut m, c, p, "secret");
    assert_eq!(url_of(&mut m, c, p), "http://p.test:8100");
    assert!(!m.trace.iter().any(|l| l.contains("trap.test") && l.contains("/message")));
}

#[test]
fn ten_failed_deliveries_in_ten_seconds_cause_one_fan_out() {
    let (mut m, c, p, _q) = mesh();
    m.unreachable = vec![p];
    for i in 0..10 {
        send(&mut m, c, p, &format!("try {i}"));
        m.advance(1_000);
    }
    assert_eq!(lookups_sent(&m, "C"), 3, "one question to each of C's three other connections");
    // After the cooldown a new failure may ask again.
    m.advance(LOOKUP_COOLDOWN_MS);
    send(&mut m, c, p, "later");
    assert_eq!(lookups_sent(&m, "C"), 6);
}

#[test]
fn a_node_restarted_on_a_new_address_tells_every_peer() {
    let (mut m, c, p, q) = mesh();
    m.peers[p].url = "http://p9.test:8100".to_owned();
    m.peers[p].config.public_url = "http://p9.test:8100".to_owned();
    m.restart(p);
    m.run();
    for x in [c, q[0], q[1], q[2]] {
        assert_eq!(url_of(&mut m, x, p), "http://p9.test:8100");
    }
    // A restart at the same address tells nobody.
    let before = m.trace.iter().filter(|l| l.contains("peer_update")).count();
    m.restart(p);
    m.run();
    assert_eq!(m.trace.iter().filter(|l| l.contains("peer_update")).count(), before);
}
