//! The per-request hot path: what a node spends on one inbound message before it reaches the inbox.
//!
//! The ratio that matters is `verify_strict` / `duplicate_rejection`: the dedup cache is checked
//! before any signature work, so a replayed message must cost a tree lookup, not an Ed25519 verify.
//! Run with `cargo bench -p darkmatter-benches --bench hot_path`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use proto_core::limits::REPLAY_ENTRIES_MAX;
use proto_core::replay::{ReplayCache, ReplayError};
use proto_core::sign;
use proto_core::{Command, CommandId, Config, HttpResponse, InboundId, InboundRequest, Method, Node, Now, Output, Passport, SendArgs, Targets};

/// 2026-01-01T00:00:00Z in Unix microseconds; any fixed wall time works since nothing expires here.
const NOW_US: i64 = 1_767_225_600_000_000;

/// Size of the legacy message the signing benches use: a short chat message with its header fields.
const MESSAGE_BYTES: usize = 200;

fn passport() -> Passport {
    Passport::from_seed([0x1f; 32])
}

/// The legacy canonical form of a typical message, padded to exactly [`MESSAGE_BYTES`].
fn legacy_message(passport: &Passport) -> Vec<u8> {
    let from = passport.agent_id().as_str();
    let (id, ts) = ("msg-000000000001", "2026-01-01T00:00:00.000000+00:00");
    let header_bytes = from.len() + id.len() + ts.len() + 3;
    let content = "x".repeat(MESSAGE_BYTES - header_bytes);
    let bytes = sign::legacy_message_bytes(from, id, ts, &content).expect("no newline in the header fields");
    assert_eq!(bytes.len(), MESSAGE_BYTES);
    bytes
}

/// A message id in 0.5.3's format (`msg-` and 12 hex digits).
fn message_id(n: usize) -> String {
    format!("msg-{n:012x}")
}

/// A replay cache at its production capacity with every slot live.
fn full_replay_cache() -> ReplayCache {
    let mut cache = ReplayCache::with_capacity(REPLAY_ENTRIES_MAX);
    for n in 0..REPLAY_ENTRIES_MAX {
        cache.record(&message_id(n), NOW_US, NOW_US).expect("room for every id");
    }
    assert_eq!(cache.len(), 10_000);
    cache
}

fn sign_message(c: &mut Criterion) {
    let passport = passport();
    let bytes = legacy_message(&passport);
    c.bench_function("sign", |b| b.iter(|| sign::sign_hex(black_box(&passport), black_box(&bytes))));
}

fn verify_message(c: &mut Criterion) {
    let passport = passport();
    let bytes = legacy_message(&passport);
    let sig = sign::sign_hex(&passport, &bytes);
    let key = *passport.agent_id().key();
    assert_eq!(sign::verify_hex(&key, &bytes, &sig), Ok(()));
    c.bench_function("verify_strict", |b| b.iter(|| sign::verify_hex(black_box(&key), black_box(&bytes), black_box(&sig))));
}

fn dedup_lookup(c: &mut Criterion) {
    let cache = full_replay_cache();
    let present = message_id(REPLAY_ENTRIES_MAX / 2);
    let absent = message_id(REPLAY_ENTRIES_MAX + 1);
    assert!(cache.contains(&present, NOW_US));
    assert!(!cache.contains(&absent, NOW_US));
    let mut group = c.benchmark_group("dedup_lookup_10k");
    group.bench_function("present", |b| b.iter(|| cache.contains(black_box(&present), black_box(NOW_US))));
    group.bench_function("absent", |b| b.iter(|| cache.contains(black_box(&absent), black_box(NOW_US))));
    group.finish();
}

fn duplicate_rejection(c: &mut Criterion) {
    let mut cache = full_replay_cache();
    let present = message_id(REPLAY_ENTRIES_MAX / 2);
    assert_eq!(cache.record(&present, NOW_US, NOW_US), Err(ReplayError::Duplicate));
    // A duplicate returns before touching the cache, so every iteration sees the same state.
    c.bench_function("duplicate_rejection", |b| b.iter(|| cache.record(black_box(&present), black_box(NOW_US), black_box(NOW_US))));
}

// ---------------------------------------------------------------------------------------------------
// The whole inbound path through `Node`: decode, duplicate pre-check, limits, identity binding,
// freshness, one verify_strict (our signed form), replay record, inbox insert, persist batch, reply,
// event and webhook transmit. Compared with a bare verify_strict of the same canonical bytes.

/// Envelopes from A to B, signed by a real node A (both our form and the legacy form), with B's key.
struct Fixture {
    b: Node,
    bodies: Vec<Vec<u8>>,
    /// The canonical bytes and signature of the first envelope, for the bare-verify comparison.
    canonical: Vec<u8>,
    signature: String,
    key: proto_core::AgentId,
    now: Now,
}

fn drain(node: &mut Node) -> usize {
    let mut n = 0;
    loop {
        match node.poll_output() {
            Output::Timeout(_) => return n,
            out => {
                black_box(out);
                n += 1;
            }
        }
    }
}

/// Connects A and B through the real handshake and has A sign `count` envelopes for B.
fn fixture(count: usize) -> Fixture {
    let now = Now::new(0, NOW_US);
    let a_url = "http://a.bench:8100";
    let b_url = "http://b.bench:8100";
    let mut a = Node::new(Passport::from_seed([1; 32]), Config { public_url: a_url.into(), ..Config::default() }, 1, now);
    let mut b = Node::new(Passport::from_seed([2; 32]), Config { public_url: b_url.into(), ..Config::default() }, 2, now);
    drain(&mut a);
    drain(&mut b);
    let local = Some("127.0.0.1".parse().unwrap());
    // Handshake: A asks, B auto-accepts (local source), A learns the answer.
    a.handle_command(now, CommandId(1), Command::Connect { target_url: b_url.into() });
    let t = next_transmit(&mut a);
    b.handle_request(now, InboundRequest { id: InboundId(1), method: Method::Post, path: "/__darkmatter__/connection_request".into(), body: t.body, source: local });
    let reply = next_reply(&mut b);
    a.handle_response(now, t.id, Ok(HttpResponse { status: reply.status, body: reply.body }));
    drain(&mut a);
    let a_id = a.passport().agent_id().to_string();
    let b_id = b.passport().agent_id().to_string();
    b.handle_command(now, CommandId(2), Command::SetRateLimit { agent_id: None, limit: -1 });
    b.handle_command(now, CommandId(3), Command::SetRateLimit { agent_id: Some(a_id), limit: -1 });
    drain(&mut b);
    let mut bodies = Vec::with_capacity(count);
    for i in 0..count {
        let args = SendArgs { content: "x".repeat(120), targets: Targets::Agents(vec![b_id.clone()]), metadata: Default::default(), in_reply_to: None, hops_remaining: 10 };
        a.handle_command(now, CommandId(10 + i as u64), Command::Send(args));
        let t = next_transmit(&mut a);
        a.handle_response(now, t.id, Err("not delivered in the bench".into()));
        drain(&mut a);
        bodies.push(t.body);
    }
    let env: serde_json::Value = serde_json::from_slice(&bodies[0]).unwrap();
    let envelope: proto_core::wire::message::MessageEnvelope = serde_json::from_value(env).unwrap();
    let canonical = proto_core::message::envelope_v2_bytes(&envelope, "{}");
    let signature = envelope.dm_signature_hex.clone().unwrap();
    let key = a.passport().agent_id().clone();
    Fixture { b, bodies, canonical, signature, key, now }
}

fn next_transmit(node: &mut Node) -> proto_core::Transmit {
    loop {
        match node.poll_output() {
            Output::Transmit(t) => return t,
            Output::Timeout(_) => panic!("expected a transmit"),
            _ => {}
        }
    }
}

fn next_reply(node: &mut Node) -> proto_core::Reply {
    loop {
        match node.poll_output() {
            Output::Reply(r) => return r,
            Output::Timeout(_) => panic!("expected a reply"),
            _ => {}
        }
    }
}

/// Envelopes per fixture; the inbox holds 50, so each accepted message is consumed (untimed).
const ENVELOPES: usize = 256;

fn accept_path(c: &mut Criterion) {
    let mut f = fixture(ENVELOPES);
    assert_eq!(sign::verify_hex(f.key.key(), &f.canonical, &f.signature), Ok(()));
    let mut group = c.benchmark_group("accept_path");
    group.bench_function("verify_strict_same_bytes", |b| b.iter(|| sign::verify_hex(black_box(f.key.key()), black_box(&f.canonical), black_box(&f.signature))));
    let mut next = 0u64;
    group.bench_function("whole_accept", |bch| {
        bch.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iters {
                // Each envelope is accepted once per fixture; rebuild when they run out (untimed).
                if next as usize % ENVELOPES == 0 && next > 0 {
                    f = fixture(ENVELOPES);
                }
                let body = f.bodies[next as usize % ENVELOPES].clone();
                next += 1;
                let req = InboundRequest { id: InboundId(next), method: Method::Post, path: "/__darkmatter__/message".into(), body, source: Some("127.0.0.1".parse().unwrap()) };
                let start = std::time::Instant::now();
                f.b.handle_request(f.now, req);
                let status = first_reply_status(&mut f.b);
                total += start.elapsed();
                assert_eq!(status, 200);
                // Keep the inbox from filling: consume what was just accepted (untimed).
                f.b.handle_command(f.now, CommandId(1_000_000 + next), Command::ListInbox);
                let ids = inbox_ids(&mut f.b);
                for id in ids {
                    f.b.handle_command(f.now, CommandId(2_000_000 + next), Command::GetMessage { message_id: id, consume: true });
                    drain(&mut f.b);
                }
            }
            total
        })
    });
    // A duplicate as a whole request: the pre-check answers 409 before decoding the envelope.
    let dup = f.bodies[0].clone();
    f.b.handle_request(f.now, InboundRequest { id: InboundId(u64::MAX - 1), method: Method::Post, path: "/__darkmatter__/message".into(), body: dup.clone(), source: None });
    drain(&mut f.b);
    group.bench_function("duplicate_request", |b| {
        b.iter(|| {
            f.b.handle_request(f.now, InboundRequest { id: InboundId(7), method: Method::Post, path: "/__darkmatter__/message".into(), body: dup.clone(), source: None });
            let status = first_reply_status(&mut f.b);
            assert_eq!(status, 409);
        })
    });
    group.finish();
}

fn first_reply_status(node: &mut Node) -> u16 {
    let mut status = 0;
    loop {
        match node.poll_output() {
            Output::Reply(r) => status = r.status,
            Output::Timeout(_) => return status,
            other => {
                black_box(other);
            }
        }
    }
}

fn inbox_ids(node: &mut Node) -> Vec<String> {
    loop {
        match node.poll_output() {
            Output::Done { result: Ok(v), .. } => {
                return v["messages"].as_array().unwrap().iter().map(|m| m["message_id"].as_str().unwrap().to_owned()).collect();
            }
            Output::Timeout(_) => return Vec::new(),
            _ => {}
        }
    }
}

criterion_group!(hot_path, sign_message, verify_message, dedup_lookup, duplicate_rejection, accept_path);
criterion_main!(hot_path);
