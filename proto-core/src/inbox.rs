//! [`Inbox`]: the messages peers sent us that the agent has not consumed yet.
//!
//! Messages keyed by message id, in two rooms: [`INBOX_MAX`] for messages from connections, and
//! [`INBOX_STRANGERS_MAX`] for messages from signers that are not connections (strangers), at most
//! [`INBOX_PER_STRANGER_MAX`] from any one of them. Strangers never take a connection's room, so a
//! throwaway key cannot make the node refuse its peers. A full room refuses new messages (429) rather
//! than drop unread ones. A message stays until the agent consumes or forwards it, and its id counts
//! as seen for as long as it stays (even after its replay entry expired). Which room a message is in
//! is stored with it (`from_connection`), so the counts are the same after a restart.

use std::collections::BTreeMap;

use crate::error::InboxFull;
use crate::limits::{INBOX_MAX, INBOX_PER_STRANGER_MAX, INBOX_STRANGERS_MAX};
use crate::store::{self, Change, InboxMessage, RecordError, Table};

/// The unread messages, by id.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    by_id: BTreeMap<String, InboxMessage>,
    /// Messages waiting from each stranger (only strangers with one waiting): at most
    /// [`INBOX_STRANGERS_MAX`] entries.
    strangers: BTreeMap<String, usize>,
    /// The sum of `strangers`.
    strangers_total: usize,
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

    /// Whether another message from `sender` fits in its room: a connection's (`connected`) or the
    /// strangers' and that stranger's share of it.
    pub(crate) fn has_room(&self, connected: bool, sender: &str) -> Result<(), InboxFull> {
        if connected {
            if self.by_id.len() - self.strangers_total >= INBOX_MAX {
                return Err(InboxFull::Connections);
            }
        } else if self.strangers_total >= INBOX_STRANGERS_MAX {
            return Err(InboxFull::Strangers);
        } else if self.strangers.get(sender).is_some_and(|&n| n >= INBOX_PER_STRANGER_MAX) {
            return Err(InboxFull::Stranger);
        }
        Ok(())
    }

    /// The message with this id.
    pub(crate) fn get(&self, message_id: &str) -> Option<&InboxMessage> {
        self.by_id.get(message_id)
    }

    /// Takes in an accepted message (the caller checked [`Inbox::has_room`]); returns its row.
    pub(crate) fn accept(&mut self, msg: InboxMessage) -> Change {
        debug_assert!(!self.contains(&msg.message_id), "a duplicate is refused before");
        debug_assert!(self.has_room(msg.from_connection, &msg.from_agent_id).is_ok());
        let change = Change::put(Table::Inbox, &msg.message_id, &msg);
        self.insert(msg.message_id.clone(), msg);
        debug_assert!(self.strangers_total <= INBOX_STRANGERS_MAX);
        debug_assert!(self.by_id.len() - self.strangers_total <= INBOX_MAX);
        change
    }

    /// Consumes (or forwards) a message; returns the delete of its row.
    pub(crate) fn remove(&mut self, message_id: &str) -> Change {
        if let Some(msg) = self.by_id.remove(message_id) {
            if !msg.from_connection {
                self.strangers_total -= 1;
                match self.strangers.get_mut(&msg.from_agent_id) {
                    Some(n) if *n > 1 => *n -= 1,
                    _ => {
                        self.strangers.remove(&msg.from_agent_id);
                    }
                }
            }
        }
        Change::delete(Table::Inbox, message_id)
    }

    /// Adds `msg` under `message_id`, counting it in its room. A row read twice replaces the first
    /// without counting it twice.
    fn insert(&mut self, message_id: String, msg: InboxMessage) {
        let _ = self.remove(&message_id);
        if !msg.from_connection {
            self.strangers_total += 1;
            *self.strangers.entry(msg.from_agent_id.clone()).or_default() += 1;
        }
        self.by_id.insert(message_id, msg);
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
        self.insert(message_id, m);
        Ok(seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str, from: &str, from_connection: bool) -> InboxMessage {
        InboxMessage {
            message_id: id.to_owned(),
            from_agent_id: from.to_owned(),
            content: "hi".to_owned(),
            received_at: String::new(),
            verified: true,
            verification: store::Verification::SignedForUs,
            hops_remaining: 0,
            in_reply_to: None,
            webhook: String::new(),
            metadata_json: "{}".to_owned(),
            timestamp: String::new(),
            from_connection,
            from_local: false,
            seq: 0,
        }
    }

    /// Takes `msg` in if it has room, as the accept path does.
    fn offer(inbox: &mut Inbox, m: InboxMessage) -> Result<Change, InboxFull> {
        inbox.has_room(m.from_connection, &m.from_agent_id)?;
        Ok(inbox.accept(m))
    }

    #[test]
    fn one_stranger_gets_its_share_and_strangers_together_their_room() {
        let mut inbox = Inbox::default();
        for i in 0..INBOX_PER_STRANGER_MAX {
            assert!(offer(&mut inbox, msg(&format!("a{i}"), "a", false)).is_ok());
        }
        assert_eq!(offer(&mut inbox, msg("a-more", "a", false)).unwrap_err(), InboxFull::Stranger);
        for n in INBOX_PER_STRANGER_MAX..INBOX_STRANGERS_MAX {
            assert!(offer(&mut inbox, msg(&format!("s{n}"), &format!("s{n}"), false)).is_ok());
        }
        assert_eq!(offer(&mut inbox, msg("new", "someone-new", false)).unwrap_err(), InboxFull::Strangers);
        // Consuming one makes room for one.
        let _ = inbox.remove("a0");
        assert!(offer(&mut inbox, msg("a-more", "a", false)).is_ok());
        assert_eq!(offer(&mut inbox, msg("a-last", "a", false)).unwrap_err(), InboxFull::Strangers);
    }

    #[test]
    fn strangers_never_take_the_room_of_connections() {
        let mut inbox = Inbox::default();
        for i in 0..INBOX_STRANGERS_MAX {
            assert!(offer(&mut inbox, msg(&format!("s{i}"), &format!("stranger{i}"), false)).is_ok());
        }
        for i in 0..INBOX_MAX {
            assert!(offer(&mut inbox, msg(&format!("c{i}"), "peer", true)).is_ok(), "connection message {i}");
        }
        assert_eq!(offer(&mut inbox, msg("c-more", "peer", true)).unwrap_err(), InboxFull::Connections);
        assert_eq!(inbox.len(), INBOX_MAX + INBOX_STRANGERS_MAX);
    }

    #[test]
    fn the_counts_survive_a_restart() {
        let mut inbox = Inbox::default();
        let mut rows = Vec::new();
        for i in 0..INBOX_PER_STRANGER_MAX {
            let m = msg(&format!("a{i}"), "a", false);
            rows.push((m.message_id.clone(), store::encode(&m)));
            assert!(offer(&mut inbox, m).is_ok());
        }
        let mut restored = Inbox::default();
        for (id, row) in rows.iter().chain(rows.iter()) {
            restored.restore_row(id.clone(), row).unwrap();
        }
        assert_eq!(restored.len(), INBOX_PER_STRANGER_MAX);
        assert_eq!(restored.has_room(false, "a").unwrap_err(), InboxFull::Stranger);
        assert!(restored.has_room(false, "b").is_ok());
    }
}
