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
fn inbox_holds_fifty() {
    let (mut m, b) = one_node();
    let p = outsider();
    for i in 0..INBOX_MAX {
        assert_eq!(post(&mut m, b, &envelope(&p, &format!("i{i}"), "hi", EPOCH_US, json!({}))).0, 200, "message {i}");
    }
    let (s, v) = post(&mut m, b, &envelope(&p, "i-last", "hi", EPOCH_US, json!({})));
    assert_eq!((s, v["error"].as_str().unwrap()), (429, "Message queue full"));
    // Consuming one makes room.
    m.command(b, Command::GetMessage { message_id: "i0".into(), consume: true }).unwrap();
    assert_eq!(post(&mut m, b, &envelope(&p, "i-last", "hi", EPOCH_US, json!({}))).0, 200);
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

#[test]
fn global_rate_limit_two_hundred() {
    let (mut m, b) = one_node();
    for i in 0..RATE_GLOBAL_DEFAULT {
        let (s, _) = m.inject(b, Method::Get, "/__darkmatter__/peer_lookup/nobody", b"", public_ip());
        assert_eq!(s, 404, "request {i}");
    }
    let (s, v) = m.inject(b, Method::Get, "/__darkmatter__/peer_lookup/nobody", b"", public_ip());
    assert_eq!(s, 429);
    assert!(v["error"].as_str().unwrap().contains("Global rate limit"));
    m.advance(RATE_WINDOW_MS);
    assert_eq!(m.inject(b, Method::Get, "/__darkmatter__/peer_lookup/nobody", b"", public_ip()).0, 404);
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
    let req = json!({"from_agent_id": p.agent_id().as_str(), "from_agent_url": url});
    m.inject(to, Method::Post, "/__darkmatter__/connection_request", req.to_string().as_bytes(), public_ip())
}

#[test]
fn pending_requests_cap_at_fifty() {
    let (mut m, b) = one_node();
    for i in 0..PENDING_REQUESTS_MAX {
        let p = Passport::from_seed([i as u8 + 100; 32]);
        assert_eq!(unsigned_request(&mut m, b, &p, &format!("http://p{i}.test:8100")).0, 200);
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
        legacy_connect(&mut m, b, &p, &format!("http://p{i}.test:8100"), public_ip());
        m.advance(1);
    }
    let (s, v) = unsigned_request(&mut m, b, &Passport::from_seed([250; 32]), "http://last.test:8100");
    assert_eq!((s, v["error"].as_str().unwrap()), (429, "Too many pending requests"));
    assert_eq!(m.pending_agents(b).len(), PENDING_REQUESTS_MAX);
}

#[test]
fn connections_cap_is_configurable_and_enforced() {
    let mut m = Mesh::new();
    let hub = m.add("HUB", true);
    let cap = CONNECTIONS_MAX_DEFAULT;
    for i in 0..cap {
        let p = Passport::from_seed([
            (i % 250) as u8 + 1,
            (i / 250) as u8 + 7,
            3,
            4,
            5,
            6,
            7,
            8,
            9,
            10,
            11,
            12,
            13,
            14,
            15,
            16,
            17,
            18,
            19,
            20,
            21,
            22,
            23,
            24,
            25,
            26,
            27,
            28,
            29,
            30,
            31,
            32,
        ]);
        let v = legacy_connect(&mut m, hub, &p, &format!("http://p{i}.test:8100"), "10.0.0.200".parse().unwrap());
        assert_eq!(v["accepted"], true, "peer {i}");
    }
    assert_eq!(m.command(hub, Command::ListConnections).unwrap()["total"], cap);
    // One more local request is proven but no longer auto-accepted: it waits.
    let p = Passport::from_seed([0xee; 32]);
    let v = legacy_connect(&mut m, hub, &p, "http://extra.test:8100", "10.0.0.200".parse().unwrap());
    assert_eq!(v.get("accepted"), None);
    let pending = m.command(hub, Command::ListPending).unwrap();
    let rid = pending["requests"][0]["request_id"].as_str().unwrap().to_owned();
    let err = m.command(hub, Command::Accept { request_id: rid }).unwrap_err();
    assert!(err.to_string().contains("Connection limit reached (50)"));
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
