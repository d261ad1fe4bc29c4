//! Connections: the handshake's state. This first part holds [`Acceptances`], the
//! `connection_accepted` calls that have not been confirmed yet, and [`RequestSources`], what each
//! source address may still ask of us; the connections and the pending requests themselves still live
//! in `node/connection.rs`.
//!
//! An acceptance that did not get through is sent again at housekeeping, up to
//! [`ACCEPTANCE_ATTEMPTS_MAX`] attempts in all; the attempts made are persisted (table
//! `acceptances`) so that a restart sends a lost acceptance again instead of leaving the link
//! half-open.
//!
//! Keys cost nothing, addresses do: so the limits that keep one host from filling the pending table
//! or the connection table are kept per source address ([`crate::url::source_prefix`]), and automatic
//! acceptance always leaves [`CONNECTIONS_RESERVED_FOR_AGENT`] slots for the agent's own choices.

use std::collections::BTreeMap;

use core::net::IpAddr;

use crate::error::Refusal;
use crate::limits::{
    RateWindow, ACCEPTANCE_ATTEMPTS_MAX, AUTO_ACCEPTS_MAX, AUTO_ACCEPTS_PER_SOURCE_MAX, AUTO_ACCEPT_WINDOW_S,
    CONNECTIONS_RESERVED_FOR_AGENT, PENDING_PER_SOURCE_MAX,
};
use crate::store::{self, Change, RecordError, Table};
use crate::url::source_prefix;

/// Whether automatic acceptance (local auto-accept, the trust policy) may add a connection to the
/// `connections` we have under the cap `max`: it leaves the last
/// `min(CONNECTIONS_RESERVED_FOR_AGENT, max / 2)` slots to the agent.
pub(crate) fn automatic_room(connections: usize, max: usize) -> bool {
    connections + CONNECTIONS_RESERVED_FOR_AGENT.min(max / 2) < max
}

/// The per-source state of incoming requests: which source each pending request came from, and the
/// local auto-accepts each source (and all together) were granted in the last window. Never
/// persisted: a request restored after a restart counts for no source, and the windows start empty.
#[derive(Debug, Default)]
pub(crate) struct RequestSources {
    /// Request id → its source; entries whose request is no longer pending are pruned as new ones come.
    pending: BTreeMap<String, Option<IpAddr>>,
    auto_accepts: RateWindow,
    /// Only sources with an auto-accept in the window (at most [`AUTO_ACCEPTS_MAX`] of them).
    auto_accepts_by_source: BTreeMap<Option<IpAddr>, RateWindow>,
}

const AUTO_ACCEPT_WINDOW_MS: u64 = AUTO_ACCEPT_WINDOW_S * 1_000;

impl RequestSources {
    /// Whether `source` may add a pending request to those in `pending_in`: fewer than
    /// [`PENDING_PER_SOURCE_MAX`] of them came from it.
    pub(crate) fn pending_room<P>(
        &self,
        source: Option<IpAddr>,
        pending_in: &BTreeMap<String, P>,
    ) -> Result<(), Refusal> {
        let key = source.map(source_prefix);
        let from_source =
            self.pending.iter().filter(|(id, from)| **from == key && pending_in.contains_key(id.as_str())).count();
        if from_source >= PENDING_PER_SOURCE_MAX {
            return Err(Refusal::Limited(format!(
                "Too many pending requests from your address ({PENDING_PER_SOURCE_MAX})"
            )));
        }
        Ok(())
    }

    /// Records that the pending request `request_id` came from `source`.
    pub(crate) fn note_pending<P>(
        &mut self,
        request_id: &str,
        source: Option<IpAddr>,
        pending_in: &BTreeMap<String, P>,
    ) {
        self.pending.retain(|id, _| pending_in.contains_key(id.as_str()));
        self.pending.insert(request_id.to_owned(), source.map(source_prefix));
    }

    /// Grants one local auto-accept to `source` at `now_ms` if it and all sources together are under
    /// their budgets for the window ([`AUTO_ACCEPTS_PER_SOURCE_MAX`], [`AUTO_ACCEPTS_MAX`]).
    pub(crate) fn grant_auto_accept(&mut self, now_ms: u64, source: Option<IpAddr>) -> bool {
        let key = source.map(source_prefix);
        if !self.auto_accepts.has_room(now_ms, AUTO_ACCEPT_WINDOW_MS, AUTO_ACCEPTS_MAX) {
            return false;
        }
        self.auto_accepts_by_source.retain(|_, w| !w.has_room(now_ms, AUTO_ACCEPT_WINDOW_MS, 1));
        let window = self.auto_accepts_by_source.entry(key).or_default();
        if !window.has_room(now_ms, AUTO_ACCEPT_WINDOW_MS, AUTO_ACCEPTS_PER_SOURCE_MAX) {
            return false;
        }
        window.record(now_ms);
        self.auto_accepts.record(now_ms);
        debug_assert!(self.auto_accepts_by_source.len() <= AUTO_ACCEPTS_MAX + 1);
        true
    }
}

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

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn automatic_acceptance_leaves_the_reserved_slots_to_the_agent() {
        let max = 50;
        assert!(automatic_room(max - CONNECTIONS_RESERVED_FOR_AGENT - 1, max));
        assert!(!automatic_room(max - CONNECTIONS_RESERVED_FOR_AGENT, max));
        // A small cap keeps half for automatic acceptance.
        assert!(automatic_room(1, 4));
        assert!(!automatic_room(2, 4));
        assert!(automatic_room(0, 1), "a cap of one keeps nothing back");
    }

    #[test]
    fn one_source_gets_its_auto_accepts_and_all_sources_together_theirs() {
        let mut s = RequestSources::default();
        for _ in 0..AUTO_ACCEPTS_PER_SOURCE_MAX {
            assert!(s.grant_auto_accept(0, ip("10.0.0.1")));
        }
        assert!(!s.grant_auto_accept(0, ip("10.0.0.1")), "one past the source's budget");
        let mut granted = AUTO_ACCEPTS_PER_SOURCE_MAX;
        for host in 2..=255u8 {
            while granted < AUTO_ACCEPTS_MAX && s.grant_auto_accept(0, Some(IpAddr::from([10, 0, 0, host]))) {
                granted += 1;
            }
        }
        assert_eq!(granted, AUTO_ACCEPTS_MAX);
        assert!(!s.grant_auto_accept(0, ip("10.0.1.1")), "one past the total");
        // The budgets come back one window later.
        assert!(s.grant_auto_accept(AUTO_ACCEPT_WINDOW_MS, ip("10.0.0.1")));
    }

    #[test]
    fn one_source_holds_at_most_its_share_of_pending_requests() {
        let mut s = RequestSources::default();
        let mut pending_in = BTreeMap::new();
        for i in 0..PENDING_PER_SOURCE_MAX {
            assert!(s.pending_room(ip("2001:db8::1"), &pending_in).is_ok());
            let id = format!("req-{i}");
            pending_in.insert(id.clone(), ());
            s.note_pending(&id, ip("2001:db8::1"), &pending_in);
        }
        // The same /64 is the same source; another address is not.
        assert!(s.pending_room(ip("2001:db8::ffff"), &pending_in).is_err());
        assert!(s.pending_room(ip("2001:db8:0:1::1"), &pending_in).is_ok());
        // A request that left the table no longer counts.
        pending_in.remove("req-0");
        assert!(s.pending_room(ip("2001:db8::1"), &pending_in).is_ok());
    }

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
