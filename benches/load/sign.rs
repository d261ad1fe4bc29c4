//! Bodies signed as our nodes sign them: message envelopes (our form and 0.5.3's legacy form) and
//! connection requests (our signed form, which proves the key at once).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use proto_core::message::envelope_v2_bytes;
use proto_core::sign::{self, V2_CONNECT};
use proto_core::wire::connection::ConnectionRequest;
use proto_core::wire::message::MessageEnvelope;
use proto_core::Passport;

/// Wall-clock microseconds (the load generator may read clocks; the core may not).
pub fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// A key nobody used before: a counter and this process's start time make its seed, so keys differ
/// within a run and from run to run (a node's state directory outlives a kill -9).
pub fn fresh_passport() -> Passport {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static NONCE: AtomicU64 = AtomicU64::new(0);
    if NONCE.load(Ordering::Acquire) == 0 {
        let _ = NONCE.compare_exchange(0, now_us() as u64 | 1, Ordering::AcqRel, Ordering::Acquire);
    }
    let mut seed = [0x5du8; 32];
    seed[..8].copy_from_slice(&NONCE.load(Ordering::Acquire).to_le_bytes());
    seed[8..16].copy_from_slice(&COUNTER.fetch_add(1, Ordering::AcqRel).to_le_bytes());
    Passport::from_seed(seed)
}

/// The JSON body of a message from `from` to `to_id`, signed in both forms as our node's send signs it.
pub fn message(from: &Passport, to_id: &str, message_id: &str, content: &str, webhook: &str) -> Vec<u8> {
    let from_id = from.agent_id().as_str().to_owned();
    let ts = proto_core::time::format_iso(now_us());
    let legacy = sign::legacy_message_bytes(&from_id, message_id, &ts, content).unwrap_or_default();
    let mut e = MessageEnvelope {
        message_id: message_id.to_owned(),
        content: content.to_owned(),
        webhook: webhook.to_owned(),
        hops_remaining: 3,
        metadata: Some(Default::default()),
        timestamp: ts,
        from_agent_id: from_id.clone(),
        from_public_key_hex: Some(from_id),
        signature_hex: sign::sign_hex(from, &legacy),
        to_agent_id: Some(to_id.to_owned()),
        ..Default::default()
    };
    e.dm_signature_hex = Some(sign::sign_hex(from, &envelope_v2_bytes(&e, "{}")));
    proto_core::wire::encode(&e)
}

/// The JSON body of a connection request from `from` (serving at `from_url`) to `target_url`, signed
/// in our form.
pub fn connection_request(from: &Passport, from_url: &str, target_url: &str, name: &str) -> Vec<u8> {
    let id = from.agent_id().as_str().to_owned();
    let stamp = proto_core::time::format_iso(now_us());
    let target = proto_core::url::base(target_url);
    let bio = "a load generator's newcomer";
    let canonical = sign::v2_bytes(V2_CONNECT, &[&id, from_url, bio, name, &target, &stamp]);
    let req = ConnectionRequest {
        from_agent_id: id.clone(),
        from_agent_url: from_url.to_owned(),
        from_agent_bio: Some(bio.to_owned()),
        from_agent_public_key_hex: Some(id),
        from_agent_display_name: Some(name.to_owned()),
        timestamp: Some(stamp),
        target_url: Some(target),
        dm_signature_hex: Some(sign::sign_hex(from, &canonical)),
        ..Default::default()
    };
    proto_core::wire::encode(&req)
}
