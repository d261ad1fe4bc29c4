//! Connections: the handshake's state. [`Connections`] owns the connected peers and the pending
//! requests in both directions (at most [`PENDING_REQUESTS_MAX`] in, [`PENDING_OUTBOUND_MAX`] out, one
//! incoming request per agent, never more peers than the configured cap); [`Acceptances`] holds the
//! `connection_accepted` calls that have not been confirmed yet, and [`RequestSources`] what each
//! source address may still ask of us. The conversations themselves (signatures, answers, notices)
//! are driven from `node/connection.rs`, which calls these owners.
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
use crate::identity::AgentId;
use crate::limits::{
    RateWindow, ACCEPTANCE_ATTEMPTS_MAX, AUTO_ACCEPTS_MAX, AUTO_ACCEPTS_PER_SOURCE_MAX, AUTO_ACCEPT_WINDOW_S,
    CONNECTIONS_RESERVED_FOR_AGENT, PENDING_OUTBOUND_MAX, PENDING_PER_SOURCE_MAX, PENDING_REQUESTS_MAX,
};
use crate::store::{self, Change, Connection, PendingIn, PendingOut, RecordError, Table};
use crate::url::source_prefix;

/// The connected peers (by agent id) and the pending requests: incoming ones by request id,
/// outgoing ones by target URL. Every change to a table comes back as the [`Change`] that persists
/// it, so the caller cannot forget the row.
#[derive(Debug)]
pub(crate) struct Connections {
    peers: BTreeMap<String, Connection>,
    pending_in: BTreeMap<String, PendingIn>,
    pending_out: BTreeMap<String, PendingOut>,
    /// The configured cap on `peers` (already clamped to the ceiling).
    max: usize,
}

impl Connections {
    /// No peers and nothing pending, under the cap `max`.
    pub(crate) fn new(max: usize) -> Self {
        Self { peers: BTreeMap::new(), pending_in: BTreeMap::new(), pending_out: BTreeMap::new(), max }
    }

    /// The cap on connections.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// Whether another connection fits under the cap.
    pub(crate) fn has_room(&self) -> bool {
        self.peers.len() < self.max
    }

    /// Whether automatic acceptance may add a connection (see [`automatic_room`]).
    pub(crate) fn has_automatic_room(&self) -> bool {
        automatic_room(self.peers.len(), self.max)
    }

    // ----- connected peers -----

    /// The connection to `id`.
    pub(crate) fn get(&self, id: &str) -> Option<&Connection> {
        self.peers.get(id)
    }

    /// The connection to `id` with its stored key (borrowed for as long as the table).
    pub(crate) fn get_key_value(&self, id: &str) -> Option<(&String, &Connection)> {
        self.peers.get_key_value(id)
    }

    /// The connection to `id`, to update its details or counters; the caller persists it.
    pub(crate) fn get_mut(&mut self, id: &str) -> Option<&mut Connection> {
        self.peers.get_mut(id)
    }

    /// Whether we are connected to `id`.
    pub(crate) fn contains_key(&self, id: &str) -> bool {
        self.peers.contains_key(id)
    }

    /// How many peers we are connected to.
    pub(crate) fn len(&self) -> usize {
        self.peers.len()
    }

    /// The connected peers' ids, in order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &String> {
        self.peers.keys()
    }

    /// The connections, in id order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &Connection> {
        self.peers.values()
    }

    /// The connection to `id`, created empty (at `url`, connected `now`) if there is none; with
    /// whether it is new. The caller checked the cap: an existing connection may always be refreshed.
    pub(crate) fn entry(&mut self, id: &AgentId, url: &str, now: String) -> (&mut Connection, bool) {
        let is_new = !self.peers.contains_key(id.as_str());
        let conn = self.peers.entry(id.as_str().to_owned()).or_insert_with(|| Connection {
            agent_id: id.clone(),
            url: url.to_owned(),
            display_name: String::new(),
            bio: String::new(),
            connected_at: now.clone(),
            messages_sent: 0,
            messages_received: 0,
            last_activity: now,
            speaks_v2: false,
            identity_verified: false,
            rate_limit: Default::default(),
            wallets: BTreeMap::new(),
            peer_created_at: None,
            local: false,
        });
        (conn, is_new)
    }

    /// Ends the connection to `id`: returns it with the delete of its row. What else the peer held
    /// (its rate window, an acceptance retry) belongs to other owners; the caller drops those.
    pub(crate) fn remove(&mut self, id: &str) -> Option<(Connection, Change)> {
        let conn = self.peers.remove(id)?;
        Some((conn, Change::delete(Table::Connections, id)))
    }

    // ----- incoming requests -----

    /// The pending incoming request `request_id`.
    pub(crate) fn pending(&self, request_id: &str) -> Option<&PendingIn> {
        self.pending_in.get(request_id)
    }

    /// The pending incoming request `request_id`, to update; the caller persists it.
    pub(crate) fn pending_mut(&mut self, request_id: &str) -> Option<&mut PendingIn> {
        self.pending_in.get_mut(request_id)
    }

    /// The pending incoming requests, in request-id order.
    pub(crate) fn pending_requests(&self) -> impl Iterator<Item = &PendingIn> {
        self.pending_in.values()
    }

    /// The pending incoming requests by id (for [`RequestSources`]).
    pub(crate) fn pending_table(&self) -> &BTreeMap<String, PendingIn> {
        &self.pending_in
    }

    /// How many incoming requests are pending.
    pub(crate) fn pending_count(&self) -> usize {
        self.pending_in.len()
    }

    /// Whether a new incoming request fits without displacing one.
    pub(crate) fn pending_has_room(&self) -> bool {
        self.pending_in.len() < PENDING_REQUESTS_MAX
    }

    /// `agent`'s pending request: there is at most one, it is refreshed rather than repeated.
    pub(crate) fn pending_from(&self, agent: &AgentId) -> Option<&PendingIn> {
        self.pending_in.values().find(|p| p.agent_id == *agent)
    }

    /// The ids of `agent`'s pending requests (one at most, more only in tables from older builds).
    pub(crate) fn pending_ids_from(&self, agent: &AgentId) -> Vec<String> {
        self.pending_in.values().filter(|p| p.agent_id == *agent).map(|p| p.request_id.clone()).collect()
    }

    /// Stores (or replaces) the pending request `request_id`; returns the put of its row. The caller
    /// made room (see [`Connections::pending_has_room`]) or refreshes the agent's own request.
    pub(crate) fn put_pending(&mut self, request_id: String, pending: PendingIn) -> Change {
        let change = Change::put(Table::PendingIn, &request_id, &pending);
        self.pending_in.insert(request_id, pending);
        change
    }

    /// Removes the pending request `request_id`: returns it with the delete of its row.
    pub(crate) fn take_pending(&mut self, request_id: &str) -> Option<(PendingIn, Change)> {
        let p = self.pending_in.remove(request_id)?;
        Some((p, Change::delete(Table::PendingIn, request_id)))
    }

    // ----- outgoing requests -----

    /// Whether another outgoing request fits.
    pub(crate) fn outbound_has_room(&self) -> bool {
        self.pending_out.len() < PENDING_OUTBOUND_MAX
    }

    /// The target URL and a copy of our pending request that `agent` answered.
    pub(crate) fn outbound_to(&self, agent: &AgentId) -> Option<(String, PendingOut)> {
        self.pending_out.iter().find(|(_, p)| p.agent_id.as_ref() == Some(agent)).map(|(k, p)| (k.clone(), p.clone()))
    }

    /// Stores our pending request to `target_url`; returns the put of its row.
    pub(crate) fn put_outbound(&mut self, target_url: &str, pending: PendingOut) -> Change {
        let change = Change::put(Table::PendingOut, target_url, &pending);
        self.pending_out.insert(target_url.to_owned(), pending);
        change
    }

    /// Removes our pending request to `target_url`; returns the delete of its row if there was one.
    pub(crate) fn take_outbound(&mut self, target_url: &str) -> Option<Change> {
        self.pending_out.remove(target_url)?;
        Some(Change::delete(Table::PendingOut, target_url))
    }

    /// Drops pending requests (both directions) made before `cutoff_us`; returns the deletes.
    pub(crate) fn expire(&mut self, cutoff_us: i64) -> Vec<Change> {
        let old_in: Vec<String> =
            self.pending_in.iter().filter(|(_, p)| p.requested_us < cutoff_us).map(|(k, _)| k.clone()).collect();
        let old_out: Vec<String> =
            self.pending_out.iter().filter(|(_, p)| p.created_us < cutoff_us).map(|(k, _)| k.clone()).collect();
        let mut changes = Vec::new();
        for k in old_in {
            self.pending_in.remove(&k);
            changes.push(Change::delete(Table::PendingIn, &k));
        }
        for k in old_out {
            self.pending_out.remove(&k);
            changes.push(Change::delete(Table::PendingOut, &k));
        }
        changes
    }

    /// Takes one row of [`Table::Connections`], [`Table::PendingIn`] or [`Table::PendingOut`] read
    /// back from storage (other tables are not ours and are ignored).
    pub(crate) fn restore_row(&mut self, table: Table, key: String, value: &[u8]) -> Result<(), RecordError> {
        match table {
            Table::Connections => {
                let c: Connection = store::decode(value)?;
                self.peers.insert(c.agent_id.as_str().to_owned(), c);
            }
            Table::PendingIn => {
                self.pending_in.insert(key, store::decode(value)?);
            }
            Table::PendingOut => {
                self.pending_out.insert(key, store::decode(value)?);
            }
            _ => {}
        }
        Ok(())
    }
}

/// The connection to a peer the caller knows is connected (panics otherwise, like a map's index).
impl core::ops::Index<&str> for Connections {
    type Output = Connection;

    fn index(&self, id: &str) -> &Connection {
        &self.peers[id]
    }
}

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

    fn agent(seed: u8) -> AgentId {
        crate::identity::Passport::from_seed([seed; 32]).agent_id().clone()
    }

    fn pending_out(created_us: i64) -> PendingOut {
        PendingOut { target_url: String::new(), agent_id: None, request_id: None, speaks_v2: true, created_us }
    }

    #[test]
    fn the_cap_counts_new_connections_and_a_refresh_is_not_new() {
        let mut c = Connections::new(2);
        assert!(c.entry(&agent(1), "http://a", "t".to_owned()).1);
        assert!(c.has_room());
        assert!(c.entry(&agent(2), "http://b", "t".to_owned()).1);
        assert!(!c.has_room(), "two of two");
        assert!(!c.entry(&agent(1), "http://a2", "t".to_owned()).1, "an existing connection is refreshed");
        assert_eq!(c.len(), 2);
        assert_eq!(c[agent(1).as_str()].url, "http://a", "the caller, not entry, moves the URL");
    }

    #[test]
    fn removing_a_connection_hands_back_the_delete_of_its_row() {
        let mut c = Connections::new(4);
        c.entry(&agent(1), "http://a", "t".to_owned());
        let (conn, change) = c.remove(agent(1).as_str()).expect("connected");
        assert_eq!(conn.agent_id, agent(1));
        assert_eq!((change.table, change.key.as_str(), change.value), (Table::Connections, agent(1).as_str(), None));
        assert!(c.remove(agent(1).as_str()).is_none(), "gone once");
        assert!(c.has_room());
    }

    #[test]
    fn expiry_drops_requests_made_before_the_cutoff_in_both_directions() {
        let mut c = Connections::new(4);
        c.put_outbound("http://old", pending_out(10));
        c.put_outbound("http://new", pending_out(20));
        let changes = c.expire(20);
        assert_eq!(changes.len(), 1);
        assert_eq!((changes[0].table, changes[0].key.as_str()), (Table::PendingOut, "http://old"));
        assert!(c.take_outbound("http://old").is_none());
        assert!(c.take_outbound("http://new").is_some(), "made at the cutoff: kept");
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
