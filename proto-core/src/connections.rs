//! Connections: the handshake's state. This first part holds [`Acceptances`], the
//! `connection_accepted` calls that have not been confirmed yet; the connections and the pending
//! requests themselves still live in `node/connection.rs`.
//!
//! An acceptance that did not get through is sent again at housekeeping, up to
//! [`ACCEPTANCE_ATTEMPTS_MAX`] attempts in all; the attempts made are persisted (table
//! `acceptances`) so that a restart sends a lost acceptance again instead of leaving the link
//! half-open.

use std::collections::BTreeMap;

use crate::limits::ACCEPTANCE_ATTEMPTS_MAX;
use crate::store::{self, Change, RecordError, Table};

/// Accepted peers whose `connection_accepted` is to be sent again, with the attempts made.
#[derive(Debug, Default)]
pub(crate) struct Acceptances {
    retries: BTreeMap<String, u32>,
    /// Rows read back at restore, until [`Acceptances::finish_restore`] (they need the connections).
    restored: Vec<(String, u32)>,
}

/// The row that records `attempts` unconfirmed acceptances to `peer` (0: settled, the row goes).
pub(crate) fn acceptance_row(peer: &str, attempts: u32) -> Change {
    if attempts == 0 {
        Change::delete(Table::Acceptances, peer)
    } else {
        Change::put(Table::Acceptances, peer, &attempts)
    }
}

impl Acceptances {
    /// After attempt number `attempt` was lost: schedules another if attempts are left (returns
    /// true), else the caller settles the row.
    pub(crate) fn retry_later(&mut self, peer: &str, attempt: u32) -> bool {
        if attempt >= ACCEPTANCE_ATTEMPTS_MAX {
            return false;
        }
        self.retries.insert(peer.to_owned(), attempt);
        true
    }

    /// The acceptances due again, with the attempts made so far; none stay scheduled.
    pub(crate) fn take_due(&mut self) -> BTreeMap<String, u32> {
        std::mem::take(&mut self.retries)
    }

    /// Forgets a peer's retry (its connection went).
    pub(crate) fn forget(&mut self, peer: &str) {
        self.retries.remove(peer);
    }

    /// Takes one [`Table::Acceptances`] row read back from storage.
    pub(crate) fn restore_row(&mut self, peer: String, value: &[u8]) -> Result<(), RecordError> {
        let attempts = store::decode::<u32>(value)?;
        self.restored.push((peer, attempts));
        Ok(())
    }

    /// Schedules the restored acceptances of peers still connected (attempts left permitting);
    /// returns the deletes of the other rows.
    pub(crate) fn finish_restore(&mut self, is_connected: impl Fn(&str) -> bool) -> Vec<Change> {
        let mut settled = Vec::new();
        for (peer, attempts) in std::mem::take(&mut self.restored) {
            if is_connected(&peer) && attempts < ACCEPTANCE_ATTEMPTS_MAX {
                self.retries.insert(peer, attempts);
            } else {
                settled.push(acceptance_row(&peer, 0));
            }
        }
        settled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_acceptance_is_retried_until_its_attempts_run_out() {
        let mut a = Acceptances::default();
        assert!(a.retry_later("p", 1));
        assert!(a.retry_later("p", ACCEPTANCE_ATTEMPTS_MAX - 1));
        assert!(!a.retry_later("q", ACCEPTANCE_ATTEMPTS_MAX));
        assert_eq!(a.take_due().into_iter().collect::<Vec<_>>(), [("p".to_owned(), ACCEPTANCE_ATTEMPTS_MAX - 1)]);
        assert!(a.take_due().is_empty());
    }
}
