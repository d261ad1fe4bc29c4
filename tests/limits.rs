//! Every limit at its edge: at the limit accepted, one past it refused with a clear error.

use core::net::IpAddr;

use darkmatter_tests::harness::{Mesh, EPOCH_US};
use proto_core::limits::*;
use proto_core::replay::{ReplayCache, ReplayError};
use proto_core::sign::{legacy_message_bytes, sign_hex};
use proto_core::time::format_iso;
use proto_core::{Command, Config, Method, Passport, SendArgs, Targets};
use serde_json::{json, Map, Value};

const OUTSIDER_SEED: [u8; 32] = [0x77; 32];

fn outsider() -> Passport {
    Passport::from_seed(OUTSIDER_SEED)
}

/// A legacy-signed envelope from `p`, as a 0.5.3 node would send it.
fn envelope(p: &Passport, id: &str, content: &str, wall_us: i64, extra: Value) -> Vec<u8> {
    let ts = format_iso(wall_us);
    let from = p.agent_id().as_str();
    let sig = sign_hex(p, &legacy_message_bytes(from, id, &ts, content).unwrap());
    let mut v = json!({
        "message_id": id, "content": content, "webhook": format!("http://outsider.example:8100/__darkmatter__/webhook/{id}"),
        "hops_remaining": 10, "metadata": {}, "timestamp": ts, "from_agent_id": from, "from_public_key_hex": from, "signature_hex": sig,
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    serde_json::to_vec(&v).unwrap()
}

/// Connects as a 0.5.3 node would: an unsigned request, then the challenge proof. Returns the answer
/// to the proof (`accepted: true` when a local request was auto-accepted once proven).
fn legacy_connect(m: &mut Mesh, to: usize, p: &Passport, url: &str, src: IpAddr) -> Value {
    let req = json!({"from_agent_id": p.agent_id().as_str(), "from_agent_url": url});
    let (s, v) = m.inject(to, Method::Post, "/__darkmatter__/connection_request", req.to_string().as_bytes(), src);
    assert_eq!(
        (s, &v["auto_accepted"]),
        (200, &json!(false)),
        "an unsigned request is never accepted before its proof: {v}"
    );
    let challenge = v["challenge_hex"].as_str().unwrap();
    let proof_hex =
        sign_hex(p, &proto_core::sign::domain_bytes(proto_core::sign::DOMAIN_CHALLENGE, &[challenge]).unwrap());
    let proof = json!({"challenge_id": v["challenge_id"], "proof_hex": proof_hex, "agent_id": p.agent_id().as_str(), "public_key_hex": p.agent_id().as_str()});
    let (s, v) = m.inject(to, Method::Post, "/__darkmatter__/connection_proof", proof.to_string().as_bytes(), src);
    assert_eq!(s, 200, "{v}");
    v
}

fn public_ip() -> IpAddr {
    "203.0.113.50".parse().unwrap()
}

fn post(m: &mut Mesh, to: usize, body: &[u8]) -> (u16, Value) {
    m.inject(to, Method::Post, "/__darkmatter__/message", body, public_ip())
}

fn one_node() -> (Mesh, usize) {
    let mut m = Mesh::new();
    let b = m.add("B", true);
    (m, b)
}

#[test]
fn content_is_counted_in_characters_up_to_the_limit() {
    let (mut m, b) = one_node();
    let p = outsider();
    let at = "é".repeat(CONTENT_CHARS_MAX);
    assert_eq!(post(&mut m, b, &envelope(&p, "m-at", &at, EPOCH_US, json!({}))).0, 200);
    let over = "é".repeat(CONTENT_CHARS_MAX + 1);
    let (s, v) = post(&mut m, b, &envelope(&p, "m-over", &over, EPOCH_US, json!({})));
    assert_eq!(s, 413);
    assert!(v["error"].as_str().unwrap().contains("65536"));
}

#[test]
fn agent_id_length_then_key_binding() {
    let (mut m, b) = one_node();
    let p = outsider();
    let long = "a".repeat(AGENT_ID_BYTES_MAX + 1);
    let (s, v) = post(&mut m, b, &envelope(&p, "m1", "hi", EPOCH_US, json!({"from_agent_id": long})));
    assert_eq!((s, v["error"].as_str().unwrap()), (400, "from_agent_id too long"));
    let at = "a".repeat(AGENT_ID_BYTES_MAX);
    let (s, v) =
        post(&mut m, b, &envelope(&p, "m2", "hi", EPOCH_US, json!({"from_agent_id": at, "from_public_key_hex": null})));
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().contains("64-digit"), "{v}");
    // A key that differs from the claimed id.
    let other = Passport::from_seed([0x78; 32]);
    let (s, _) =
        post(&mut m, b, &envelope(&p, "m3", "hi", EPOCH_US, json!({"from_public_key_hex": other.agent_id().as_str()})));
    assert_eq!(s, 403);
}

#[test]
fn webhook_url_length_and_scheme() {
    let (mut m, b) = one_node();
    let p = outsider();
    let base = "http://outsider.example:8100/";
    let at = format!("{base}{}", "x".repeat(URL_BYTES_MAX - base.len()));
    assert_eq!(post(&mut m, b, &envelope(&p, "u1", "hi", EPOCH_US, json!({"webhook": at}))).0, 200);
    let over = format!("{at}x");
    let (s, v) = post(&mut m, b, &envelope(&p, "u2", "hi", EPOCH_US, json!({"webhook": over})));
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().contains("maximum length"));
    let (s, v) = post(&mut m, b, &envelope(&p, "u3", "hi", EPOCH_US, json!({"webhook": "ftp://203.0.113.50/x"})));
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().contains("got 'ftp'"));
}

#[test]
fn private_webhooks_only_from_local_peers() {
    let (mut m, b) = one_node();
    let p = outsider();
    let hook = json!({"webhook": "http://10.1.2.3:1/hook"});
    let (s, v) = post(&mut m, b, &envelope(&p, "w1", "hi", EPOCH_US, hook.clone()));
    assert_eq!(s, 400, "{v}");
    let local: IpAddr = "10.9.9.9".parse().unwrap();
    let (s, _) = m.inject(b, Method::Post, "/__darkmatter__/message", &envelope(&p, "w2", "hi", EPOCH_US, hook), local);
    assert_eq!(s, 200);
    // Every special-purpose range, not only private ones: cloud metadata in CGNAT space, benchmarking,
    // IETF assignments, reserved space, the NAT64 prefix, multicast.
    for (i, url) in [
        "http://100.100.100.200/latest/meta-data",
        "http://198.18.0.1/",
        "http://192.0.0.9/",
        "http://240.0.0.1/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://224.0.0.1/",
    ]
    .iter()
    .enumerate()
    {
        let body = envelope(&p, &format!("s{i}"), "hi", EPOCH_US, json!({"webhook": url}));
        let (s, v) = post(&mut m, b, &body);
        assert_eq!(
            (s, v["error"].as_str()),
            (400, Some("Invalid webhook: private or special-purpose address from a non-local peer")),
            "{url}"
        );
    }
    let body = envelope(&p, "pub", "hi", EPOCH_US, json!({"webhook": "http://8.8.8.8/hook"}));
    assert_eq!(post(&mut m, b, &body).0, 200, "a public webhook is accepted");
}

#[test]
fn freshness_window_is_inclusive_both_ways() {
    let (mut m, b) = one_node();
    let p = outsider();
    let w = FRESHNESS_WINDOW_S as i64 * 1_000_000;
    let now = EPOCH_US;
    assert_eq!(post(&mut m, b, &envelope(&p, "f1", "hi", now - w, json!({}))).0, 200);
    assert_eq!(post(&mut m, b, &envelope(&p, "f2", "hi", now + w, json!({}))).0, 200);
    assert_eq!(post(&mut m, b, &envelope(&p, "f3", "hi", now - w - 1, json!({}))).0, 403);
    assert_eq!(post(&mut m, b, &envelope(&p, "f4", "hi", now + w + 1, json!({}))).0, 403);
    let (s, _) = post(&mut m, b, &envelope(&p, "f5", "hi", now, json!({"timestamp": "2026-01-01T00:00:00"})));
    assert_eq!(s, 403, "a naive timestamp is refused");
}

#[test]
fn inbox_holds_fifty_from_connections_and_ten_from_strangers() {
    let (mut m, b) = one_node();
    // A stranger (a signer that is not a connection) may leave three messages.
    let p = outsider();
    for i in 0..INBOX_PER_STRANGER_MAX {
        assert_eq!(post(&mut m, b, &envelope(&p, &format!("i{i}"), "hi", EPOCH_US, json!({}))).0, 200, "message {i}");
    }
    let (s, v) = post(&mut m, b, &envelope(&p, "i-more", "hi", EPOCH_US, json!({})));
    assert_eq!((s, v["error"].as_str().unwrap()), (429, "Message queue full for this sender (not a connection)"));
    // Strangers together fill their room of ten...
    for i in INBOX_PER_STRANGER_MAX..INBOX_STRANGERS_MAX {
        let q = Passport::from_seed([i as u8 + 1; 32]);
        let src: IpAddr = format!("203.0.113.{}", i + 1).parse().unwrap();
        let (s, _) = m.inject(
            b,
            Method::Post,
            "/__darkmatter__/message",
            &envelope(&q, &format!("s{i}"), "hi", EPOCH_US, json!({})),
            src,
        );
        assert_eq!(s, 200, "stranger message {i}");
    }
    let q = Passport::from_seed([0xab; 32]);
    let (s, v) = post(&mut m, b, &envelope(&q, "s-more", "hi", EPOCH_US, json!({})));
    assert_eq!((s, v["error"].as_str().unwrap()), (429, "Message queue full for agents not connected"));
    // ...which leaves all fifty places of the connections free.
    let pa = Passport::from_seed([0x55; 32]);
    let src: IpAddr = "10.0.0.99".parse().unwrap();
    assert_eq!(legacy_connect(&mut m, b, &pa, "http://10.0.0.99:8100", src)["accepted"], true);
    m.command(b, Command::SetRateLimit { agent_id: Some(pa.agent_id().to_string()), limit: -1 }).unwrap();
    let from_peer = |m: &mut Mesh, id: &str| {
        m.inject(b, Method::Post, "/__darkmatter__/message", &envelope(&pa, id, "hi", EPOCH_US, json!({})), src)
    };
    for i in 0..INBOX_MAX {
        assert_eq!(from_peer(&mut m, &format!("c{i}")).0, 200, "connection message {i}");
    }
    let (s, v) = from_peer(&mut m, "c-last");
    assert_eq!((s, v["error"].as_str().unwrap()), (429, "Message queue full"));
    // Consuming one makes room.
    m.command(b, Command::GetMessage { message_id: "c0".into(), consume: true }).unwrap();
    assert_eq!(from_peer(&mut m, "c-last").0, 200);
}

#[test]
fn inbound_hops_are_capped_and_outbound_hops_checked() {
    let (mut m, b) = one_node();
    let p = outsider();
    assert_eq!(post(&mut m, b, &envelope(&p, "h1", "hi", EPOCH_US, json!({"hops_remaining": 50}))).0, 200);
    assert_eq!(
        m.command(b, Command::GetMessage { message_id: "h1".into(), consume: false }).unwrap()["hops_remaining"],
        HOPS_MAX
    );
    assert_eq!(post(&mut m, b, &envelope(&p, "h2", "hi", EPOCH_US, json!({"hops_remaining": -1}))).0, 400);
    let a = m.add("A", true);
    let url = m.peers[b].url.clone();
    m.command(a, Command::Connect { target_url: url }).unwrap();
    let send = |hops| {
        Command::Send(SendArgs {
            content: "x".into(),
            targets: Targets::Agents(vec![]),
            metadata: Map::new(),
            in_reply_to: None,
            hops_remaining: hops,
        })
    };
    let mut s = send(HOPS_MAX + 1);
    if let Command::Send(args) = &mut s {
        args.targets = Targets::Agents(vec![m.id(b)]);
    }
    assert!(m.command(a, s).unwrap_err().to_string().contains("hops_remaining"));
    let mut s = send(HOPS_MAX);
    if let Command::Send(args) = &mut s {
        args.targets = Targets::Agents(vec![m.id(b)]);
    }
    assert!(m.command(a, s).is_ok());
}

#[test]
fn per_peer_rate_limit_thirty_then_override() {
    let (mut m, b) = one_node();
    // A 0.5.3-style peer: unsigned request from a local address, legacy-signed messages.
    let pa = Passport::from_seed([0x55; 32]);
    let src: IpAddr = "10.0.0.99".parse().unwrap();
    let v = legacy_connect(&mut m, b, &pa, "http://10.0.0.99:8100", src);
    assert_eq!(v["accepted"], true);
    let a_id = pa.agent_id().to_string();
    for i in 0..RATE_PER_PEER_DEFAULT {
        let (s, _) = m.inject(
            b,
            Method::Post,
            "/__darkmatter__/message",
            &envelope(&pa, &format!("r{i}"), "hi", EPOCH_US, json!({})),
            src,
        );
        assert_eq!(s, 200, "request {i}");
    }
    let (s, v) =
        m.inject(b, Method::Post, "/__darkmatter__/message", &envelope(&pa, "r-over", "hi", EPOCH_US, json!({})), src);
    assert_eq!(s, 429);
    assert!(v["error"].as_str().unwrap().contains("30 requests per 60s"));
    // Unlimited for this peer really changes the limiter.
    m.command(b, Command::SetRateLimit { agent_id: Some(a_id.clone()), limit: -1 }).unwrap();
    for i in 0..10 {
        let (s, _) = m.inject(
            b,
            Method::Post,
            "/__darkmatter__/message",
            &envelope(&pa, &format!("u{i}"), "hi", EPOCH_US, json!({})),
            src,
        );
        assert_eq!(s, 200);
    }
    assert!(m.command(b, Command::SetRateLimit { agent_id: Some(a_id), limit: -2 }).is_err());
}

/// `n` peers connected to `b` the 0.5.3 way, each from its own local address; their passports and
/// addresses. Their requests are then forgotten by the rate windows.
fn connected_peers(m: &mut Mesh, b: usize, n: usize) -> Vec<(Passport, IpAddr)> {
    let peers: Vec<(Passport, IpAddr)> = (0..n)
        .map(|i| (Passport::from_seed([i as u8 + 0x60; 32]), format!("10.0.1.{}", i + 1).parse().unwrap()))
        .collect();
    for (i, (p, src)) in peers.iter().enumerate() {
        assert_eq!(legacy_connect(m, b, p, &format!("http://10.0.1.{}:8100", i + 1), *src)["accepted"], true);
    }
    m.advance(RATE_WINDOW_MS);
    peers
}

#[test]
fn global_rate_limit_two_hundred_shared_fairly() {
    let (mut m, b) = one_node();
    let peers = connected_peers(&mut m, b, 4);
    let share = (RATE_GLOBAL_DEFAULT / RATE_PARTY_SHARE_DIVISOR) as usize;
    let strangers = (RATE_GLOBAL_DEFAULT / RATE_STRANGERS_SHARE_DIVISOR) as usize;
    let lookup = format!("/__darkmatter__/peer_lookup/{}", peers[0].0.agent_id());
    let from = |i: u8| -> IpAddr { format!("203.0.113.{i}").parse().unwrap() };
    // One address gets its share of the global window, then 429 at that address only.
    for i in 0..share {
        assert_eq!(m.inject(b, Method::Get, &lookup, b"", from(1)).0, 200, "request {i}");
    }
    let (s, v) = m.inject(b, Method::Get, &lookup, b"", from(1));
    assert_eq!((s, v["error"].as_str().unwrap()), (429, "Rate limit exceeded for your address (50 requests per 60s)"));
    // Unconnected agents together get their share...
    let mut source = 2;
    for _ in share..strangers {
        while m.inject(b, Method::Get, &lookup, b"", from(source)).0 != 200 {
            source += 1;
        }
    }
    let (s, v) = m.inject(b, Method::Get, &lookup, b"", from(200));
    assert_eq!(s, 429);
    assert!(v["error"].as_str().unwrap().contains("agents not connected"), "{v}");
    // ...and the rest of the window is the connected peers': 4 x 25 messages fill it exactly.
    for (n, (p, src)) in peers.iter().enumerate() {
        for i in 0..(RATE_GLOBAL_DEFAULT as usize - strangers) / peers.len() {
            let id = format!("g{n}-{i}");
            let body = envelope(p, &id, "hi", EPOCH_US, json!({}));
            let (s, v) = m.inject(b, Method::Post, "/__darkmatter__/message", &body, *src);
            assert_eq!(s, 200, "peer {n} message {i}: {v}");
            // Read at once, so that the inbox is not what refuses.
            m.command(b, Command::GetMessage { message_id: id, consume: true }).unwrap();
        }
    }
    let body = envelope(&peers[0].0, "g-over", "hi", EPOCH_US, json!({}));
    let (s, v) = m.inject(b, Method::Post, "/__darkmatter__/message", &body, peers[0].1);
    assert_eq!((s, v["error"].as_str().unwrap()), (429, "Global rate limit exceeded (200 requests per 60s)"));
    m.advance(RATE_WINDOW_MS);
    assert_eq!(m.inject(b, Method::Post, "/__darkmatter__/message", &body, peers[0].1).0, 200);
}

#[test]
fn junk_and_forgeries_spend_no_budget() {
    let (mut m, b) = one_node();
    let peers = connected_peers(&mut m, b, 1);
    let (p, src) = &peers[0];
    // Far more than the global window of junk, and of forgeries in the peer's name.
    for i in 0..RATE_GLOBAL_DEFAULT + 10 {
        assert_eq!(m.inject(b, Method::Post, "/__darkmatter__/message", b"x", public_ip()).0, 400);
        let forged =
            envelope(&outsider(), &format!("f{i}"), "hi", EPOCH_US, json!({"from_agent_id": p.agent_id().as_str()}));
        assert_eq!(m.inject(b, Method::Post, "/__darkmatter__/message", &forged, public_ip()).0, 403);
        assert_eq!(m.inject(b, Method::Get, "/__darkmatter__/peer_lookup/nobody", b"", public_ip()).0, 404);
    }
    // The peer's whole own budget is still there, and so is a stranger's.
    for i in 0..RATE_PER_PEER_DEFAULT {
        let body = envelope(p, &format!("ok{i}"), "hi", EPOCH_US, json!({}));
        assert_eq!(m.inject(b, Method::Post, "/__darkmatter__/message", &body, *src).0, 200, "message {i}");
    }
    let req = json!({"from_agent_id": Passport::from_seed([0x99; 32]).agent_id().as_str(), "from_agent_url": "http://new.test:8100"});
    let (s, v) =
        m.inject(b, Method::Post, "/__darkmatter__/connection_request", req.to_string().as_bytes(), public_ip());
    assert_eq!(s, 200, "{v}");
}

#[test]
fn bio_limit_on_update_and_truncation_on_receipt() {
    let mut m = Mesh::new();
    let a = m.add("A", false);
    let b = m.add("B", true);
    assert!(m.command(a, Command::UpdateBio { bio: "x".repeat(BIO_CHARS_MAX) }).is_ok());
    assert!(m.command(a, Command::UpdateBio { bio: "x".repeat(BIO_CHARS_MAX + 1) }).is_err());
    let p = Passport::from_seed([1; 32]);
    let req = json!({"from_agent_id": p.agent_id().as_str(), "from_agent_url": "http://a.test:8100", "from_agent_bio": "é".repeat(BIO_CHARS_MAX + 5)});
    let (s, _) =
        m.inject(b, Method::Post, "/__darkmatter__/connection_request", req.to_string().as_bytes(), public_ip());
    assert_eq!(s, 200);
    let pending = m.command(b, Command::ListPending).unwrap();
    assert_eq!(pending["requests"][0]["bio"].as_str().unwrap().chars().count(), BIO_CHARS_MAX);
}

/// An unsigned (0.5.3) connection request from `p`, as a public peer sends it.
fn unsigned_request(m: &mut Mesh, to: usize, p: &Passport, url: &str) -> (u16, Value) {
    unsigned_request_from(m, to, p, url, public_ip())
}

fn unsigned_request_from(m: &mut Mesh, to: usize, p: &Passport, url: &str, src: IpAddr) -> (u16, Value) {
    let req = json!({"from_agent_id": p.agent_id().as_str(), "from_agent_url": url});
    m.inject(to, Method::Post, "/__darkmatter__/connection_request", req.to_string().as_bytes(), src)
}

/// The `i`th of many public addresses (one host each).
fn public_source(i: usize) -> IpAddr {
    IpAddr::from([198, 51, (100 + i / 250) as u8, (i % 250) as u8 + 1])
}

#[test]
fn pending_requests_cap_at_fifty() {
    let (mut m, b) = one_node();
    for i in 0..PENDING_REQUESTS_MAX {
        let p = Passport::from_seed([i as u8 + 100; 32]);
        let (s, v) = unsigned_request_from(&mut m, b, &p, &format!("http://p{i}.test:8100"), public_source(i));
        assert_eq!(s, 200, "{v}");
        m.advance(1);
    }
    assert_eq!(m.pending_agents(b).len(), PENDING_REQUESTS_MAX);
    // Full of unproven requests: a new one takes the oldest one's place, and the count stays at the cap.
    let newcomer = Passport::from_seed([250; 32]);
    assert_eq!(unsigned_request(&mut m, b, &newcomer, "http://last.test:8100").0, 200);
    let waiting = m.pending_agents(b);
    assert_eq!(waiting.len(), PENDING_REQUESTS_MAX);
    assert!(waiting.contains(&newcomer.agent_id().to_string()));
    assert!(
        !waiting.contains(&Passport::from_seed([100; 32]).agent_id().to_string()),
        "the oldest unproven request made room"
    );
}

#[test]
fn an_unproven_request_never_displaces_a_proven_one() {
    let (mut m, b) = one_node();
    for i in 0..PENDING_REQUESTS_MAX {
        let p = Passport::from_seed([i as u8 + 100; 32]);
        legacy_connect(&mut m, b, &p, &format!("http://p{i}.test:8100"), public_source(i));
        // Two requests each: spread so that strangers stay inside their share of the global window.
        m.advance(2_000);
    }
    let (s, v) = unsigned_request(&mut m, b, &Passport::from_seed([250; 32]), "http://last.test:8100");
    assert_eq!((s, v["error"].as_str().unwrap()), (429, "Too many pending requests"));
    assert_eq!(m.pending_agents(b).len(), PENDING_REQUESTS_MAX);
}

/// The `i`th of many local addresses (one LAN host each).
fn local_source(i: usize) -> IpAddr {
    IpAddr::from([10, 0, (10 + i / 250) as u8, (i % 250) as u8 + 1])
}

fn throwaway(i: usize) -> Passport {
    let mut seed = [0x42; 32];
    seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
    Passport::from_seed(seed)
}

/// The agent's own accept of the one pending request of `p`.
fn accept_pending_of(m: &mut Mesh, at: usize, p: &Passport) -> Result<Value, proto_core::CommandError> {
    let pending = m.command(at, Command::ListPending).unwrap();
    let rid = pending["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["agent_id"] == p.agent_id().as_str())
        .unwrap_or_else(|| panic!("no pending request of that agent: {pending}"))["request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    m.command(at, Command::Accept { request_id: rid })
}

#[test]
fn connections_cap_is_configurable_and_enforced() {
    let mut m = Mesh::new();
    let hub = m.add("HUB", true);
    let cap = CONNECTIONS_MAX_DEFAULT;
    for i in 0..cap {
        let p = throwaway(i);
        let v = legacy_connect(&mut m, hub, &p, &format!("http://p{i}.test:8100"), local_source(i));
        // Auto-accepted while the budgets and the unreserved slots last; the agent accepts the rest.
        if v.get("accepted").is_none() {
            accept_pending_of(&mut m, hub, &p).unwrap();
        }
        m.advance(2_000);
    }
    assert_eq!(m.command(hub, Command::ListConnections).unwrap()["total"], cap);
    // One more local request is proven but no longer accepted: it waits, and the agent is told why.
    let p = Passport::from_seed([0xee; 32]);
    let v = legacy_connect(&mut m, hub, &p, "http://extra.test:8100", local_source(cap));
    assert_eq!(v.get("accepted"), None);
    let err = accept_pending_of(&mut m, hub, &p).unwrap_err();
    assert!(err.to_string().contains("Connection limit reached (50)"));
}

#[test]
fn one_lan_host_gets_its_auto_accepts_and_then_waits_for_the_agent() {
    let mut m = Mesh::new();
    let hub = m.add("HUB", true);
    let host: IpAddr = "10.0.0.200".parse().unwrap();
    for i in 0..AUTO_ACCEPTS_PER_SOURCE_MAX {
        let v = legacy_connect(&mut m, hub, &throwaway(i), &format!("http://p{i}.test:8100"), host);
        assert_eq!(v["accepted"], true, "auto-accept {i}");
    }
    // One past the host's budget: proven, but pending; another host is still auto-accepted.
    let extra = throwaway(AUTO_ACCEPTS_PER_SOURCE_MAX);
    assert_eq!(legacy_connect(&mut m, hub, &extra, "http://extra.test:8100", host).get("accepted"), None);
    let other = Passport::from_seed([0xef; 32]);
    assert_eq!(legacy_connect(&mut m, hub, &other, "http://other.test:8100", local_source(1))["accepted"], true);
    // The host may keep only so many requests waiting; others' requests are never displaced for it.
    for i in AUTO_ACCEPTS_PER_SOURCE_MAX + 1..AUTO_ACCEPTS_PER_SOURCE_MAX + PENDING_PER_SOURCE_MAX {
        assert_eq!(
            unsigned_request_from(&mut m, hub, &throwaway(i), "http://more.test:8100", host).0,
            200,
            "request {i}"
        );
    }
    let (s, v) = unsigned_request_from(&mut m, hub, &throwaway(99), "http://more.test:8100", host);
    assert_eq!((s, v["error"].as_str().unwrap()), (429, "Too many pending requests from your address (8)"));
    // The agent's own accept works.
    accept_pending_of(&mut m, hub, &extra).unwrap();
    // A window later the host may be auto-accepted again.
    m.advance(AUTO_ACCEPT_WINDOW_S * 1_000);
    let late = throwaway(100);
    assert_eq!(legacy_connect(&mut m, hub, &late, "http://late.test:8100", host)["accepted"], true);
}

#[test]
fn all_lan_hosts_together_get_their_auto_accepts() {
    let mut m = Mesh::new();
    let hub = m.add("HUB", true);
    for i in 0..AUTO_ACCEPTS_MAX {
        let v = legacy_connect(&mut m, hub, &throwaway(i), &format!("http://p{i}.test:8100"), local_source(i));
        assert_eq!(v["accepted"], true, "auto-accept {i}");
        m.advance(2_000);
    }
    let extra = throwaway(AUTO_ACCEPTS_MAX);
    let v = legacy_connect(&mut m, hub, &extra, "http://extra.test:8100", local_source(AUTO_ACCEPTS_MAX));
    assert_eq!(v.get("accepted"), None);
    accept_pending_of(&mut m, hub, &extra).unwrap();
}

#[test]
fn automatic_acceptance_leaves_slots_for_the_agent() {
    let mut m = Mesh::new();
    let max = 2 * CONNECTIONS_RESERVED_FOR_AGENT;
    let hub = m.add_with("HUB", true, Config { max_connections: max, ..Config::default() });
    for i in 0..max - CONNECTIONS_RESERVED_FOR_AGENT {
        let v = legacy_connect(&mut m, hub, &throwaway(i), &format!("http://p{i}.test:8100"), local_source(i));
        assert_eq!(v["accepted"], true, "auto-accept {i}");
    }
    // The rest of the table is the agent's: requests wait, and its accept fills the table to the cap.
    for i in max - CONNECTIONS_RESERVED_FOR_AGENT..max {
        let p = throwaway(i);
        assert_eq!(legacy_connect(&mut m, hub, &p, "http://r.test:8100", local_source(i)).get("accepted"), None);
        accept_pending_of(&mut m, hub, &p).unwrap();
    }
    assert_eq!(m.command(hub, Command::ListConnections).unwrap()["total"], max);
}

#[test]
fn a_configured_connection_cap_of_one() {
    let mut m = Mesh::new();
    let hub = m.add_with("HUB", true, Config { max_connections: 1, ..Config::default() });
    let src: IpAddr = "127.0.0.1".parse().unwrap();
    let first = legacy_connect(&mut m, hub, &Passport::from_seed([0x31; 32]), "http://q0.test:8100", src);
    assert_eq!(first["accepted"], true);
    let second = legacy_connect(&mut m, hub, &Passport::from_seed([0x32; 32]), "http://q1.test:8100", src);
    assert_eq!(second.get("accepted"), None, "the second waits: the cap is 1");
    assert_eq!(m.command(hub, Command::ListConnections).unwrap()["total"], 1);
}

#[test]
fn metadata_size_limit() {
    let (mut m, b) = one_node();
    let p = outsider();
    // {"k":"..."} is 8 bytes of framing.
    let at = json!({"metadata": {"k": "x".repeat(METADATA_BYTES_MAX - 8)}});
    assert_eq!(post(&mut m, b, &envelope(&p, "md1", "hi", EPOCH_US, at)).0, 200);
    let over = json!({"metadata": {"k": "x".repeat(METADATA_BYTES_MAX - 7)}});
    assert_eq!(post(&mut m, b, &envelope(&p, "md2", "hi", EPOCH_US, over)).0, 400);
}

#[test]
fn replay_cache_holds_ten_thousand_live_ids() {
    let mut c = ReplayCache::default();
    let now = 1_000_000_000_000;
    for i in 0..REPLAY_ENTRIES_MAX {
        c.record(&format!("id{i}"), now, now).unwrap();
    }
    assert_eq!(c.len(), REPLAY_ENTRIES_MAX);
    assert_eq!(c.record("one-more", now, now), Err(ReplayError::Full));
    assert_eq!(c.record("id7", now, now), Err(ReplayError::Duplicate));
}

#[test]
fn sent_records_keep_the_newest_hundred() {
    let mut m = Mesh::new();
    let a = m.add("A", true);
    let b = m.add("B", true);
    let url = m.peers[b].url.clone();
    m.command(a, Command::Connect { target_url: url }).unwrap();
    m.command(b, Command::SetRateLimit { agent_id: Some(m.id(a)), limit: -1 }).unwrap();
    let mut first = String::new();
    for i in 0..=SENT_MAX {
        let r = m
            .command(
                a,
                Command::Send(SendArgs {
                    content: format!("n{i}"),
                    targets: Targets::Agents(vec![m.id(b)]),
                    metadata: Map::new(),
                    in_reply_to: None,
                    hops_remaining: 1,
                }),
            )
            .unwrap();
        if i == 0 {
            first = r["message_id"].as_str().unwrap().to_owned();
        }
        // Keep B's inbox from filling.
        let mid = r["message_id"].as_str().unwrap().to_owned();
        m.command(b, Command::GetMessage { message_id: mid, consume: true }).unwrap();
    }
    assert_eq!(m.command(a, Command::ListSent).unwrap()["total"], SENT_MAX);
    assert!(m.command(a, Command::GetSent { message_id: first }).is_err());
}

#[test]
fn waits_are_bounded() {
    let mut m = Mesh::new();
    let a = m.add("A", true);
    let b = m.add("B", true);
    let url = m.peers[b].url.clone();
    m.command(a, Command::Connect { target_url: url }).unwrap();
    let r = m
        .command(
            a,
            Command::Send(SendArgs {
                content: "q".into(),
                targets: Targets::Agents(vec![m.id(b)]),
                metadata: Map::new(),
                in_reply_to: None,
                hops_remaining: 1,
            }),
        )
        .unwrap();
    let mid = r["message_id"].as_str().unwrap().to_owned();
    for _ in 0..WAITERS_MAX {
        m.start(a, Command::WaitForResponse { message_id: mid.clone(), timeout_ms: 1_000 });
    }
    let err = m.command(a, Command::WaitForResponse { message_id: mid.clone(), timeout_ms: 1_000 }).unwrap_err();
    assert!(err.to_string().contains("At most 64 waits"));
    let too_long =
        m.command(a, Command::WaitForResponse { message_id: mid, timeout_ms: (WAIT_TIMEOUT_S_MAX + 1) * 1000 });
    assert!(too_long.is_err());
}
