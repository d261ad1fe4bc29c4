//! Memory: every conversation, in and out, logged (capped, oldest dropped) and ranked by recency and
//! trust into a context feed with a direct and a network section.
//!
//! Ranking is 0.5.3's formula: `score = 2^(−age_s / 3600) × trust_weight × type_boost`, where
//! `trust_weight` is 1 for our own messages and `max(0.1, (trust_at_time + 1) / 2)` otherwise, and
//! `type_boost` is 10 for the message being answered, 2 direct, 1.5 reply, 1 broadcast, 0.5 forward.
//! Unlike 0.5.3 (whose network section is always empty), direct and reply entries go to the direct
//! section and broadcasts and forwards to the network section.

use serde_json::{json, Value};

use crate::identity::truncate_chars;
use crate::limits::{CONVERSATIONS_MAX, CONVERSATION_CONTENT_CHARS_MAX, FEED_DIRECT_MAX, FEED_NETWORK_MAX};
use crate::node::Node;
use crate::store::{Change, ConversationEntry, Table};

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

fn seq_key(seq: u64) -> String {
    format!("{seq:020}")
}

impl Node {
    /// Logs one conversation entry, dropping the oldest past [`CONVERSATIONS_MAX`].
    pub(crate) fn log_conversation(
        &mut self,
        message_id: &str,
        content: &str,
        peer: &str,
        to: Vec<String>,
        kind: &str,
        inbound: bool,
    ) {
        let seq = self.next_seq();
        let trust_at_time = if inbound { self.trust_of(peer) } else { 0.0 };
        let entry = ConversationEntry {
            seq,
            message_id: message_id.to_owned(),
            content: truncate_chars(content, CONVERSATION_CONTENT_CHARS_MAX),
            peer: peer.to_owned(),
            to_agent_ids: to,
            at_us: self.now.wall_us,
            kind: kind.to_owned(),
            direction: if inbound { "inbound" } else { "outbound" }.to_owned(),
            trust_at_time,
        };
        let mut changes = vec![Change::put(Table::Conversations, &seq_key(seq), &entry)];
        self.conversations.insert(seq, entry);
        while self.conversations.len() > CONVERSATIONS_MAX {
            let (oldest, _) = self.conversations.pop_first().expect("non-empty");
            changes.push(Change::delete(Table::Conversations, &seq_key(oldest)));
        }
        self.persist(changes);
    }

    pub(crate) fn restore_conversation(&mut self, e: ConversationEntry) {
        self.next_seq = self.next_seq.max(e.seq + 1);
        self.conversations.insert(e.seq, e);
    }

    fn entry_json(&self, e: &ConversationEntry, score: f64) -> Value {
        let name = |id: &str| {
            self.connections
                .get(id)
                .map(|c| c.display_name.clone())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| id.chars().take(12).collect())
        };
        json!({
            "message_id": e.message_id, "kind": e.kind, "direction": e.direction, "peer": e.peer, "peer_name": name(&e.peer),
            "to_agent_ids": e.to_agent_ids, "at": crate::time::format_iso(e.at_us), "content": truncate_chars(&e.content, 200),
            "trust_at_time": e.trust_at_time, "score": score, "seq": e.seq,
        })
    }

    /// The ranked feed: `direct` (direct messages and replies) and `network` (broadcasts and
    /// forwards), each deduplicated by message id and sorted by rank, best first.
    pub fn context_feed(&self, focus: Option<&str>) -> Value {
        let now = self.now.wall_us;
        let mut ranked: Vec<(f64, &ConversationEntry)> =
            self.conversations.values().map(|e| (rank(e, now, focus), e)).collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.seq.cmp(&a.1.seq)));
        let mut seen = std::collections::BTreeSet::new();
        let (mut direct, mut network) = (Vec::new(), Vec::new());
        for (score, e) in ranked {
            if !seen.insert(e.message_id.as_str()) {
                continue;
            }
            let section = if matches!(e.kind.as_str(), "direct" | "reply") { &mut direct } else { &mut network };
            let max = if matches!(e.kind.as_str(), "direct" | "reply") { FEED_DIRECT_MAX } else { FEED_NETWORK_MAX };
            if section.len() < max {
                section.push(self.entry_json(e, score));
            }
        }
        json!({"direct": direct, "network": network})
    }

    /// Entries logged after `since_seq`, oldest first (what is new since the caller last looked).
    pub(crate) fn conversations_since(&self, since_seq: u64) -> Vec<Value> {
        let now = self.now.wall_us;
        self.conversations.range(since_seq + 1..).map(|(_, e)| self.entry_json(e, rank(e, now, None))).collect()
    }
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
