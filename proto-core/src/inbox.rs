//! [`Inbox`]: the messages peers sent us that the agent has not consumed yet.
//!
//! At most [`INBOX_MAX`] messages, keyed by message id; a full inbox refuses new messages (429)
//! rather than drop unread ones. A message stays until the agent consumes or forwards it, and its
//! id counts as seen for as long as it stays (even after its replay entry expired).

use std::collections::BTreeMap;

use crate::limits::INBOX_MAX;
use crate::store::{self, Change, InboxMessage, RecordError, Table};

/// The unread messages, by id.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    by_id: BTreeMap<String, InboxMessage>,
}

impl Inbox {
    /// Whether a message with this id is waiting.
    pub(crate) fn contains(&self, message_id: &str) -> bool {
        self.by_id.contains_key(message_id)
    }

    /// Messages waiting.
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether another message would pass [`INBOX_MAX`].
    pub(crate) fn is_full(&self) -> bool {
        self.by_id.len() >= INBOX_MAX
    }

    /// The message with this id.
    pub(crate) fn get(&self, message_id: &str) -> Option<&InboxMessage> {
        self.by_id.get(message_id)
    }

    /// Takes in an accepted message (the caller checked [`Inbox::is_full`]); returns its row.
    pub(crate) fn accept(&mut self, msg: InboxMessage) -> Change {
        debug_assert!(!self.is_full() || self.contains(&msg.message_id));
        let change = Change::put(Table::Inbox, &msg.message_id, &msg);
        self.by_id.insert(msg.message_id.clone(), msg);
        debug_assert!(self.by_id.len() <= INBOX_MAX);
        change
    }

    /// Consumes (or forwards) a message; returns the delete of its row.
    pub(crate) fn remove(&mut self, message_id: &str) -> Change {
        self.by_id.remove(message_id);
        Change::delete(Table::Inbox, message_id)
    }

    /// The waiting messages in arrival order.
    pub(crate) fn sorted(&self) -> Vec<&InboxMessage> {
        let mut v: Vec<&InboxMessage> = self.by_id.values().collect();
        v.sort_by_key(|m| m.seq);
        v
    }

    /// Takes one [`Table::Inbox`] row read back from storage; returns its sequence number.
    pub(crate) fn restore_row(&mut self, message_id: String, value: &[u8]) -> Result<u64, RecordError> {
        let m: InboxMessage = store::decode(value)?;
        let seq = m.seq;
        self.by_id.insert(message_id, m);
        Ok(seq)
    }
}
