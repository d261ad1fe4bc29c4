//! Node glue for memory: logging conversations and presenting the feed.

use crate::memory::rank;
use crate::output::{ConversationView, Feed};

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

    fn entry_view(&self, e: &ConversationEntry, score: f64) -> ConversationView {
        let name = |id: &str| {
            self.connections
                .get(id)
                .map(|c| c.display_name.clone())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| id.chars().take(12).collect())
        };
        ConversationView {
            message_id: e.message_id.clone(),
            kind: e.kind.clone(),
            direction: e.direction.clone(),
            peer: e.peer.clone(),
            peer_name: name(&e.peer),
            to_agent_ids: e.to_agent_ids.clone(),
            at: crate::time::format_iso(e.at_us),
            content: e.content.clone(),
            trust_at_time: e.trust_at_time,
            score,
            seq: e.seq,
        }
    }

    /// The ranked feed: `direct` (direct messages and replies) and `network` (broadcasts and
    /// forwards), each deduplicated by message id and sorted by rank, best first.
    pub(crate) fn context_feed(&self, focus: Option<&str>) -> Feed {
        let (direct, network) = self.memory.feed(self.now.wall_us, focus);
        let direct = direct.into_iter().map(|(score, e)| self.entry_view(e, score)).collect();
        let network = network.into_iter().map(|(score, e)| self.entry_view(e, score)).collect();
        Feed { direct, network }
    }

    /// Entries not marked shown yet, oldest first.
    pub(crate) fn unshown_conversations(&self) -> Vec<ConversationView> {
        let now = self.now.wall_us;
        self.memory.unshown().map(|e| self.entry_view(e, rank(e, now, None))).collect()
    }
}
