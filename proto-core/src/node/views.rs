//! Node glue for what the agent reads: the inbox and sent listings, one message, and expiring a
//! sent message. Read-only except `expire_sent` (which wakes waiters).

use serde_json::{Map, Value};

use crate::error::CommandError;
use crate::node::Node;
use crate::output::{
    ExpiredSent, InboxEntry, InboxList, InboxMessageView, ResponseView, SentList, SentState, SentView,
};
use crate::store::{Change, InboxMessage, SentMessage, SentStatus, Table};

use super::outbound::failures;

/// A sent message's replies as a result lists them.
pub(super) fn responses(s: &SentMessage) -> Vec<ResponseView> {
    s.responses.clone()
}

impl Node {
    // ----- local views -----

    /// Whether a connection's URL is proven: taken from the handshake or from an update the peer
    /// signed, not adopted on answerers' agreement alone (SPEC §9.4).
    pub(crate) fn url_verified(&self, agent_id: &str) -> bool {
        self.healing.proof(agent_id).is_none_or(|p| p.signed())
    }

    pub(crate) fn inbox_sorted(&self) -> Vec<&InboxMessage> {
        self.inbox.sorted()
    }

    pub(crate) fn cmd_list_inbox(&self) -> InboxList {
        let messages: Vec<InboxEntry> = self
            .inbox_sorted()
            .into_iter()
            .map(|m| InboxEntry {
                message_id: m.message_id.clone(),
                from_agent_id: m.from_agent_id.clone(),
                from_display_name: self.connections.get(&m.from_agent_id).map(|c| c.display_name.clone()),
                content: m.content.clone(),
                received_at: m.received_at.clone(),
                verified: m.verified,
                verification: m.verification,
                hops_remaining: m.hops_remaining,
                in_reply_to: m.in_reply_to.clone(),
                from_connection: m.from_connection,
            })
            .collect();
        InboxList { total: messages.len(), messages }
    }

    fn message_view(m: &InboxMessage) -> InboxMessageView {
        // Most messages carry no metadata: skip the parser for the canonical empty object.
        let metadata: Value = match m.metadata_json.as_str() {
            "{}" => Value::Object(Map::new()),
            text => serde_json::from_str(text).unwrap_or(Value::Object(Map::new())),
        };
        InboxMessageView {
            message_id: m.message_id.clone(),
            from_agent_id: m.from_agent_id.clone(),
            content: m.content.clone(),
            received_at: m.received_at.clone(),
            timestamp: m.timestamp.clone(),
            verified: m.verified,
            verification: m.verification,
            hops_remaining: m.hops_remaining,
            can_forward: m.hops_remaining > 0,
            in_reply_to: m.in_reply_to.clone(),
            metadata,
            webhook: m.webhook.clone(),
            from_connection: m.from_connection,
            payment_verified: None,
            payment_refusal: None,
            consumed: false,
        }
    }

    pub(crate) fn cmd_get_message(
        &mut self,
        message_id: &str,
        consume: bool,
    ) -> Result<InboxMessageView, CommandError> {
        let Some(m) = self.inbox.get(message_id) else {
            return Err(CommandError::NotFound(format!("No inbox message with ID '{message_id}'")));
        };
        let mut out = Self::message_view(m);
        if let Some((verified, why)) = self.notice_status(message_id) {
            out.payment_verified = Some(verified);
            out.payment_refusal = why;
        }
        if consume {
            let change = self.inbox.remove(message_id);
            self.persist(vec![change]);
            out.consumed = true;
        }
        Ok(out)
    }

    fn sent_view(s: &SentMessage, full: bool) -> SentView {
        SentView {
            message_id: s.message_id.clone(),
            kind: s.kind.clone(),
            status: s.status.into(),
            created_at: s.created_at.clone(),
            routed_to: s.routed_to.clone(),
            relayed: s.relayed.clone(),
            failed: failures(&s.failed),
            initial_hops: s.initial_hops,
            in_reply_to: s.in_reply_to.clone(),
            response_count: s.responses.len(),
            content: s.content.clone(),
            responses: full.then(|| responses(s)),
            updates: full.then(|| s.updates.clone()),
        }
    }

    pub(crate) fn cmd_list_sent(&self) -> SentList {
        let mut v: Vec<&SentMessage> = self.sent.values().collect();
        v.sort_by_key(|s| std::cmp::Reverse(s.seq));
        let messages: Vec<SentView> = v.into_iter().map(|s| Self::sent_view(s, false)).collect();
        SentList { total: messages.len(), messages }
    }

    pub(crate) fn cmd_get_sent(&self, message_id: &str) -> Result<SentView, CommandError> {
        self.sent
            .get(message_id)
            .map(|s| Self::sent_view(s, true))
            .ok_or_else(|| CommandError::NotFound(format!("No sent message with ID '{message_id}'")))
    }

    pub(crate) fn cmd_expire_sent(&mut self, message_id: &str) -> Result<ExpiredSent, CommandError> {
        let Some(s) = self.sent.get_mut(message_id) else {
            return Err(CommandError::NotFound(format!("No sent message with ID '{message_id}'")));
        };
        s.status = SentStatus::Expired;
        let change = Change::put(Table::Sent, message_id, &*s);
        self.persist(vec![change]);
        self.wake_waiters();
        Ok(ExpiredSent { message_id: message_id.to_owned(), status: SentState::Expired })
    }
}
