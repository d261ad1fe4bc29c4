//! Memory: every conversation, in and out, logged (capped, oldest dropped) and ranked by recency and
//! trust into a context feed with a direct and a network section.
//!
//! Ranking is 0.5.3's formula: `score = 2^(−age_s / 3600) × trust_weight × type_boost`, where
//! `trust_weight` is 1 for our own messages and `max(0.1, (trust_at_time + 1) / 2)` otherwise, and
//! `type_boost` is 10 for the message being answered, 2 direct, 1.5 reply, 1 broadcast, 0.5 forward.
//! Unlike 0.5.3 (whose network section is always empty), direct and reply entries go to the direct
//! section and broadcasts and forwards to the network section.

use crate::store::ConversationEntry;

/// Half-life of a conversation's weight, in seconds.
pub const MEMORY_HALF_LIFE_S: f64 = 3_600.0;
/// Boost of the message being answered.
pub const BOOST_FOCUS: f64 = 10.0;
/// Boost of a direct message.
pub const BOOST_DIRECT: f64 = 2.0;
/// Boost of a reply.
pub const BOOST_REPLY: f64 = 1.5;
/// Boost of a broadcast.
pub const BOOST_BROADCAST: f64 = 1.0;
/// Boost of a forward.
pub const BOOST_FORWARD: f64 = 0.5;
/// Least trust weight of another agent's message.
pub const TRUST_WEIGHT_MIN: f64 = 0.1;

/// The rank of one entry at `now_us`, with `focus` the message being answered, if any.
pub fn rank(e: &ConversationEntry, now_us: i64, focus: Option<&str>) -> f64 {
    let age_s = ((now_us - e.at_us) as f64 / 1e6).max(0.0);
    let recency = (-age_s / MEMORY_HALF_LIFE_S).exp2();
    let trust_weight =
        if e.direction == "outbound" { 1.0 } else { ((e.trust_at_time + 1.0) / 2.0).max(TRUST_WEIGHT_MIN) };
    let boost = if focus == Some(e.message_id.as_str()) {
        BOOST_FOCUS
    } else {
        match e.kind.as_str() {
            "direct" => BOOST_DIRECT,
            "reply" => BOOST_REPLY,
            "broadcast" => BOOST_BROADCAST,
            _ => BOOST_FORWARD,
        }
    };
    recency * trust_weight * boost
}

pub(crate) fn seq_key(seq: u64) -> String {
    format!("{seq:020}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: &str, direction: &str, trust: f64, at_us: i64) -> ConversationEntry {
        ConversationEntry {
            seq: 1,
            message_id: "m".into(),
            content: String::new(),
            peer: "p".into(),
            to_agent_ids: vec![],
            at_us,
            kind: kind.into(),
            direction: direction.into(),
            trust_at_time: trust,
        }
    }

    #[test]
    fn rank_halves_every_hour_and_weighs_trust_and_type() {
        let now = 10_000_000_000;
        let fresh = rank(&entry("direct", "outbound", 0.0, now), now, None);
        assert!((fresh - 2.0).abs() < 1e-12);
        let hour_old = rank(&entry("direct", "outbound", 0.0, now - 3_600_000_000), now, None);
        assert!((hour_old - 1.0).abs() < 1e-12);
        assert!((rank(&entry("broadcast", "inbound", 1.0, now), now, None) - 1.0).abs() < 1e-12);
        assert!((rank(&entry("broadcast", "inbound", -1.0, now), now, None) - 0.1).abs() < 1e-12);
        assert!((rank(&entry("forward", "outbound", 0.0, now), now, Some("m")) - 10.0).abs() < 1e-12);
    }
}
