//! Node glue for memory: logging conversations and presenting the feed.

use crate::memory::{rank, seq_key};
use serde_json::{json, Value};

use crate::identity::truncate_chars;
use crate::limits::{CONVERSATIONS_MAX, CONVERSATION_CONTENT_CHARS_MAX, FEED_DIRECT_MAX, FEED_NETWORK_MAX};
use crate::node::Node;
use crate::store::{Change, ConversationEntry, Table};

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
