//! Node glue for memory: logging conversations and presenting the feed.

use crate::memory::rank;
use serde_json::{json, Value};

use crate::identity::truncate_chars;
use crate::limits::CONVERSATION_CONTENT_CHARS_MAX;
use crate::node::Node;
use crate::store::ConversationEntry;

impl Node {
    /// Logs one conversation entry (the log drops the oldest past its cap).
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
        let changes = self.memory.log(entry);
        self.persist(changes);
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
        let (direct, network) = self.memory.feed(self.now.wall_us, focus);
        let direct: Vec<Value> = direct.into_iter().map(|(score, e)| self.entry_json(e, score)).collect();
        let network: Vec<Value> = network.into_iter().map(|(score, e)| self.entry_json(e, score)).collect();
        json!({"direct": direct, "network": network})
    }

    /// Entries no status report has shown yet, oldest first, as JSON.
    pub(crate) fn unshown_conversations(&self) -> Vec<Value> {
        let now = self.now.wall_us;
        self.memory.unshown().map(|e| self.entry_json(e, rank(e, now, None))).collect()
    }
}
