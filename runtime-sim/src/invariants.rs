//! Invariant checkers. They run as part of every event (each check is incremental and costs a
//! set look-up); the first violation stops the run, and the runner prints the seed, the full option
//! set and the command that reproduces it.
//!
//! - **inbox-once**: no message id enters one node's inbox twice.
//! - **authentic**: nothing forged is accepted: a message enters an inbox only if the node it names as
//!   sender really transmitted that id, and no tampered, unsigned, impersonating or retargeted
//!   envelope is ever answered 200.
//! - **limits**: no persisted table exceeds its limit (connections, inbox, sent, pending, impressions).
//! - **ack-after-commit**: a message is acknowledged (200) only once its inbox record is persisted.
//! - **survives-restart**: every acknowledged message not yet consumed is in the inbox of the node
//!   restored from what it had persisted.
//! - **one-reply**: every request gets exactly one reply with its own id.

use std::fmt;

use proto_core::limits;
use proto_core::Table;

use crate::rng::FxSet;

/// A broken invariant.
#[derive(Clone, Debug, PartialEq)]
pub struct Violation {
    /// Simulated time, µs.
    pub at_us: u64,
    /// The node concerned.
    pub node: u32,
    /// Which invariant.
    pub rule: &'static str,
    /// What exactly.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invariant '{}' violated at {:.6} s on node {}: {}",
            self.rule,
            self.at_us as f64 / 1e6,
            self.node,
            self.detail
        )
    }
}

/// The checkers' state.
#[derive(Default)]
pub struct Invariants {
    /// Checks performed.
    pub checks: u64,
    inboxed: FxSet<(u32, u64)>,
    honest: FxSet<(u32, u64)>,
}

/// Tables counted per node.
pub const TABLES: usize = Table::ALL.len();

/// Table positions in per-node counters.
pub fn table_index(t: Table) -> usize {
    Table::ALL.iter().position(|&x| x == t).expect("every table is in ALL")
}

impl Invariants {
    /// `sender` transmitted message `key` (its own or a forward).
    pub fn note_honest(&mut self, sender: u32, key: u64) {
        self.honest.insert((sender, key));
    }

    /// A message entered `receiver`'s inbox, naming `sender` (None: not a sim node).
    pub fn on_inbox(
        &mut self,
        receiver: u32,
        key: u64,
        sender: Option<u32>,
        id: &str,
    ) -> Result<(), (&'static str, String)> {
        self.checks += 2;
        if !self.inboxed.insert((receiver, key)) {
            return Err(("inbox-once", format!("message {id} entered the inbox a second time")));
        }
        match sender {
            Some(s) if self.honest.contains(&(s, key)) => Ok(()),
            Some(s) => Err(("authentic", format!("accepted {id} as from node {s}, which never sent it"))),
            None => Err(("authentic", format!("accepted {id} from an agent that is no node of the mesh"))),
        }
    }

    /// Checks per-table record counts after a persist.
    pub fn check_limits(
        &mut self,
        counts: &[u32; TABLES],
        max_connections: usize,
    ) -> Result<(), (&'static str, String)> {
        self.checks += 1;
        let bounds = [
            (Table::Connections, max_connections),
            (Table::Inbox, limits::INBOX_MAX + limits::INBOX_STRANGERS_MAX),
            (Table::Sent, limits::SENT_MAX),
            (Table::PendingIn, limits::PENDING_REQUESTS_MAX),
            (Table::PendingOut, limits::PENDING_OUTBOUND_MAX),
            (Table::Impressions, limits::IMPRESSIONS_MAX),
            (Table::Shards, limits::SHARDS_OWN_MAX + limits::SHARDS_CACHED_MAX),
            (Table::Conversations, limits::CONVERSATIONS_MAX),
            // A dropped sent message takes its rows along, so these never outgrow the sent table.
            (
                Table::SentUpdates,
                limits::SENT_MAX * (limits::UPDATES_PER_SENT_MAX + limits::UNSIGNED_UPDATES_PER_SENT_MAX),
            ),
            (Table::SentResponses, limits::SENT_MAX * limits::RESPONSES_PER_SENT_MAX),
        ];
        for (t, max) in bounds {
            let n = counts[table_index(t)] as usize;
            if n > max {
                return Err(("limits", format!("{} holds {n} records, limit {max}", t.name())));
            }
        }
        Ok(())
    }

    /// Messages that ever entered some inbox.
    pub fn inboxed(&self) -> usize {
        self.inboxed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_entry_and_unknown_sender_are_caught() {
        let mut inv = Invariants::default();
        inv.note_honest(1, 42);
        assert!(inv.on_inbox(2, 42, Some(1), "m").is_ok());
        assert_eq!(inv.on_inbox(2, 42, Some(1), "m").unwrap_err().0, "inbox-once");
        assert_eq!(inv.on_inbox(3, 42, Some(4), "m").unwrap_err().0, "authentic");
        assert!(inv.on_inbox(5, 42, Some(1), "m").is_ok());
    }

    #[test]
    fn limits_are_checked_per_table() {
        let mut inv = Invariants::default();
        let mut c = [0u32; TABLES];
        c[table_index(Table::Connections)] = 5;
        assert!(inv.check_limits(&c, 5).is_ok());
        assert!(inv.check_limits(&c, 4).is_err());
        c[table_index(Table::Inbox)] = (limits::INBOX_MAX + limits::INBOX_STRANGERS_MAX) as u32 + 1;
        assert!(inv.check_limits(&c, 50).is_err());
    }
}
