//! The per-request hot path: what a node spends on one inbound message before it reaches the inbox.
//!
//! The ratio that matters is `verify_strict` / `duplicate_rejection`: the dedup cache is checked
//! before any signature work, so a replayed message must cost a tree lookup, not an Ed25519 verify.
//! Run with `cargo bench -p darkmatter-benches --bench hot_path`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use darkmatter_benches::{drain, first_reply_status, fixture, inbox_ids, NOW_US};
use proto_core::limits::REPLAY_ENTRIES_MAX;
use proto_core::replay::{ReplayCache, ReplayError};
use proto_core::sign;
use proto_core::{Command, CommandId, InboundId, InboundRequest, Method, Passport};

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
    c.bench_function("verify_strict", |b| {
        b.iter(|| sign::verify_hex(black_box(&key), black_box(&bytes), black_box(&sig)))
    });
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
    c.bench_function("duplicate_rejection", |b| {
        b.iter(|| cache.record(black_box(&present), black_box(NOW_US), black_box(NOW_US)))
    });
}

// ---------------------------------------------------------------------------------------------------
// The whole inbound path through `Node`: decode, duplicate pre-check, limits, identity binding,
// freshness, one verify_strict (our signed form), replay record, inbox insert, persist batch, reply,
// event and webhook transmit. Compared with a bare verify_strict of the same canonical bytes.

/// Envelopes per fixture; the inbox holds 50, so each accepted message is consumed (untimed).
const ENVELOPES: usize = 256;

fn accept_path(c: &mut Criterion) {
    let mut f = fixture(ENVELOPES);
    assert_eq!(sign::verify_hex(f.key.key(), &f.canonical, &f.signature), Ok(()));
    let mut group = c.benchmark_group("accept_path");
    group.bench_function("verify_strict_same_bytes", |b| {
        b.iter(|| sign::verify_hex(black_box(f.key.key()), black_box(&f.canonical), black_box(&f.signature)))
    });
    let mut next = 0u64;
    group.bench_function("whole_accept", |bch| {
        bch.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iters {
                // Each envelope is accepted once per fixture; rebuild when they run out (untimed).
                if (next as usize).is_multiple_of(ENVELOPES) && next > 0 {
                    f = fixture(ENVELOPES);
                }
                let body = f.bodies[next as usize % ENVELOPES].clone();
                next += 1;
                let req = InboundRequest {
                    id: InboundId(next),
                    method: Method::Post,
                    path: "/__darkmatter__/message".into(),
                    body,
                    source: Some("127.0.0.1".parse().unwrap()),
                };
                let start = std::time::Instant::now();
                f.b.handle_request(f.now, req);
                let status = first_reply_status(&mut f.b);
                total += start.elapsed();
                assert_eq!(status, 200);
                // Keep the inbox from filling: consume what was just accepted (untimed).
                f.b.handle_command(f.now, CommandId(1_000_000 + next), Command::ListInbox);
                let ids = inbox_ids(&mut f.b);
                for id in ids {
                    f.b.handle_command(
                        f.now,
                        CommandId(2_000_000 + next),
                        Command::GetMessage { message_id: id, consume: true },
                    );
                    drain(&mut f.b);
                }
            }
            total
        })
    });
    // A duplicate as a whole request: the pre-check answers 409 before decoding the envelope.
    let dup = f.bodies[0].clone();
    f.b.handle_request(
        f.now,
        InboundRequest {
            id: InboundId(u64::MAX - 1),
            method: Method::Post,
            path: "/__darkmatter__/message".into(),
            body: dup.clone(),
            source: None,
        },
    );
    drain(&mut f.b);
    group.bench_function("duplicate_request", |b| {
        b.iter(|| {
            f.b.handle_request(
                f.now,
                InboundRequest {
                    id: InboundId(7),
                    method: Method::Post,
                    path: "/__darkmatter__/message".into(),
                    body: dup.clone(),
                    source: None,
                },
            );
            let status = first_reply_status(&mut f.b);
            assert_eq!(status, 409);
        })
    });
    group.finish();
}

criterion_group!(hot_path, sign_message, verify_message, dedup_lookup, duplicate_rejection, accept_path);
criterion_main!(hot_path);
