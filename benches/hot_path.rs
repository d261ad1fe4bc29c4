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
use proto_core::Passport;

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
// TODO(accept_path): the whole inbound-message path through `Node` (decode, dedup, freshness, verify,
// record, inbox, outputs) goes here once the Node API lands. Add `accept_path` to the group below.
// ---------------------------------------------------------------------------------------------------

criterion_group!(hot_path, sign_message, verify_message, dedup_lookup, duplicate_rejection);
criterion_main!(hot_path);
