//! Per-source admission for the peer server: what one network source may hold and spend.
//!
//! The server's global bounds ([`crate::server::CONNECTIONS_MAX`], [`crate::server::IN_FLIGHT_MAX`])
//! keep the node alive, but alone they let one stranger take all of them. [`Admission`] keeps one small
//! record per source ([`SourceKey`]) and refuses that source, and only that source, once it holds
//! - [`SOURCE_CONNECTIONS_MAX`] open connections (503; the connection is closed),
//! - [`SOURCE_BODIES_MAX`] request bodies being read at once (503; the connection is closed), or
//! - has spent its request budget, a token bucket of [`SOURCE_REQUESTS_BURST`] requests refilled at
//!   [`SOURCE_REQUESTS_PER_S`] (429). Every request is charged when its first byte arrives, before its
//!   head is parsed, so junk and heads that do not parse cost their own source's budget and never
//!   reach the core (nor its global window). A request the core authenticated as a connected peer's
//!   and accepted is refunded ([`ConnectionTicket::refund_request`]): the core's per-peer limits bound
//!   a connection, so a busy peer is never refused for its address.
//!
//! The table itself is bounded: at most [`SOURCES_MAX`] sources are remembered. A new source over the
//! bound evicts the idle source (no open connection) seen least recently. Sources with an open
//! connection are never evicted; there are at most [`crate::server::CONNECTIONS_MAX`] of them, fewer
//! than [`SOURCES_MAX`], so with the default limits a newcomer always finds room.
//!
//! Every operation takes `now` and holds the table's lock for a few map operations only (one scan of
//! the table when a newcomer meets a full table), never across an await.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use thiserror::Error;

/// Connections one source may hold open at once: twice what one honest node opens toward one peer
/// (`driver::TRANSMITS_CONCURRENT_MAX` = 32 calls at once), and a quarter of
/// [`crate::server::CONNECTIONS_MAX`], so one source never takes more than a quarter of the server.
pub const SOURCE_CONNECTIONS_MAX: usize = 64;
/// Request bodies one source may have being read at once. A body holds a buffer of up to
/// `BODY_BYTES_MAX` until it is complete; one honest node sends at most 32 at once.
pub const SOURCE_BODIES_MAX: usize = 32;
/// Requests one source may send in a burst: one default global window of the core
/// (`RATE_GLOBAL_DEFAULT` = 200), so an honest source is never refused here before the core would.
pub const SOURCE_REQUESTS_BURST: u32 = 200;
/// Requests per second refilling a source's budget: far above what one source needs under the core's
/// default windows (200 a minute), so a sender whose limits an operator lifted still keeps the node
/// busy, yet a fraction of what the node accepts (some 350 signed, persisted messages a second on a
/// small machine), so one source cannot crowd out the others; a flood beyond it is refused unparsed.
pub const SOURCE_REQUESTS_PER_S: u32 = 100;
/// Sources remembered at once (about 100 bytes each); must exceed
/// [`crate::server::CONNECTIONS_MAX`] so that sources holding connections never fill the table.
pub const SOURCES_MAX: usize = 4_096;

// One source never holds the whole server, and sources holding connections never fill the table.
const _: () = assert!(SOURCE_CONNECTIONS_MAX < crate::server::CONNECTIONS_MAX);
const _: () = assert!(SOURCE_BODIES_MAX <= SOURCE_CONNECTIONS_MAX);
const _: () = assert!(SOURCES_MAX > crate::server::CONNECTIONS_MAX);

/// Milli-tokens in one request's worth of budget (the bucket counts in thousandths so that the refill
/// is exact in integer arithmetic at millisecond steps).
const MILLI: u64 = 1_000;

/// The per-source limits. Defaults are the named constants; tests shrink them (all of loopback is one
/// source unless a test binds its sockets to different 127.0.0.x addresses).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// See [`SOURCE_CONNECTIONS_MAX`].
    pub connections_max: usize,
    /// See [`SOURCE_BODIES_MAX`].
    pub bodies_max: usize,
    /// See [`SOURCE_REQUESTS_BURST`].
    pub requests_burst: u32,
    /// See [`SOURCE_REQUESTS_PER_S`].
    pub requests_per_s: u32,
    /// See [`SOURCES_MAX`].
    pub sources_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            connections_max: SOURCE_CONNECTIONS_MAX,
            bodies_max: SOURCE_BODIES_MAX,
            requests_burst: SOURCE_REQUESTS_BURST,
            requests_per_s: SOURCE_REQUESTS_PER_S,
            sources_max: SOURCES_MAX,
        }
    }
}

/// Why a source is refused. The text is the JSON `error` of the answer.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The source already holds its [`Limits::connections_max`] open connections.
    #[error("Too many connections from your address; try again shortly")]
    Connections,
    /// The source already has [`Limits::bodies_max`] request bodies being read.
    #[error("Too many requests from your address being read; try again shortly")]
    Bodies,
    /// The source has spent its request budget ([`Limits::requests_burst`], refilled at
    /// [`Limits::requests_per_s`]).
    #[error("Rate limit exceeded for your address; slow down")]
    Budget,
    /// The table is full of sources that hold connections (only with limits smaller than the defaults).
    #[error("Too many sources; try again shortly")]
    Sources,
}

impl Refusal {
    /// The HTTP status answering this refusal: 429 for a spent budget, 503 for capacity.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Budget => 429,
            Refusal::Connections | Refusal::Bodies | Refusal::Sources => 503,
        }
    }
}

/// The unit a budget is kept for: an IPv4 address, or the /64 prefix of an IPv6 address.
///
/// Why /64: one IPv6 host (or one home network) is routinely given a whole /64 and may pick any address
/// in it (SLAAC, privacy addresses), so counting IPv6 per address would hand one host 2^64 budgets. An
/// IPv4 address is the smallest unit a host gets; grouping wider (say /24) would make neighbours pay for
/// each other. IPv4-mapped IPv6 addresses count as the IPv4 address they map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SourceKey(IpAddr);

impl SourceKey {
    /// The source a TCP peer address belongs to.
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => SourceKey(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let s = v6.segments();
                SourceKey(IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0)))
            }
        }
    }
}

/// What is remembered of one source.
#[derive(Debug)]
struct Source {
    open: usize,
    bodies: usize,
    /// Request budget left, in thousandths of a request.
    tokens_milli: u64,
    /// When `tokens_milli` was last brought up to date.
    refilled: Instant,
    /// Last time the source connected or sent a request (eviction order).
    seen: Instant,
}

impl Source {
    fn new(limits: &Limits, now: Instant) -> Self {
        let full = u64::from(limits.requests_burst) * MILLI;
        Self { open: 0, bodies: 0, tokens_milli: full, refilled: now, seen: now }
    }

    fn refill(&mut self, limits: &Limits, now: Instant) {
        let elapsed_ms = now.saturating_duration_since(self.refilled).as_millis();
        let elapsed_ms = u64::try_from(elapsed_ms).unwrap_or(u64::MAX);
        // requests_per_s requests a second = requests_per_s milli-tokens a millisecond.
        let added = elapsed_ms.saturating_mul(u64::from(limits.requests_per_s));
        let full = u64::from(limits.requests_burst) * MILLI;
        self.tokens_milli = self.tokens_milli.saturating_add(added).min(full);
        self.refilled = now;
    }

    fn idle(&self) -> bool {
        self.open == 0 && self.bodies == 0
    }
}

/// The per-source table and its limits, shared by every connection task.
#[derive(Debug)]
pub struct Admission {
    limits: Limits,
    table: Mutex<HashMap<SourceKey, Source>>,
}

impl Admission {
    /// An empty table enforcing `limits`.
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self { limits, table: Mutex::new(HashMap::new()) })
    }

    /// The limits enforced.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Sources remembered now (at most [`Limits::sources_max`]).
    pub fn sources(&self) -> usize {
        self.lock().len()
    }

    /// Admits one new connection from `ip`; the connection counts against its source until the ticket
    /// is dropped.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Result<ConnectionTicket, Refusal> {
        let key = SourceKey::of(ip);
        let mut table = self.lock();
        if !table.contains_key(&key) {
            self.make_room(&mut table)?;
            table.insert(key, Source::new(&self.limits, now));
        }
        let Some(source) = table.get_mut(&key) else { return Err(Refusal::Sources) };
        source.seen = now;
        if source.open >= self.limits.connections_max {
            return Err(Refusal::Connections);
        }
        source.open += 1;
        Ok(ConnectionTicket { admission: self.clone(), key })
    }

    /// Evicts the least recently seen idle source if the table is full.
    fn make_room(&self, table: &mut HashMap<SourceKey, Source>) -> Result<(), Refusal> {
        if table.len() < self.limits.sources_max {
            return Ok(());
        }
        let oldest = table.iter().filter(|(_, s)| s.idle()).min_by_key(|(_, s)| s.seen).map(|(k, _)| *k);
        let key = oldest.ok_or(Refusal::Sources)?;
        table.remove(&key);
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SourceKey, Source>> {
        // The table stays consistent at every step, so a panic elsewhere leaves nothing to repair.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with_source<T>(&self, key: SourceKey, f: impl FnOnce(&mut Source) -> T) -> Option<T> {
        self.lock().get_mut(&key).map(f)
    }
}

/// One admitted connection; its source's count drops when this is dropped.
#[derive(Debug)]
pub struct ConnectionTicket {
    admission: Arc<Admission>,
    key: SourceKey,
}

impl ConnectionTicket {
    /// The source this connection counts against.
    pub fn source(&self) -> SourceKey {
        self.key
    }

    /// Charges one request to the source's budget.
    pub fn spend_request(&self, now: Instant) -> Result<(), Refusal> {
        let limits = &self.admission.limits;
        let spent = self.admission.with_source(self.key, |s| {
            s.seen = now;
            s.refill(limits, now);
            let ok = s.tokens_milli >= MILLI;
            if ok {
                s.tokens_milli -= MILLI;
            }
            ok
        });
        // The entry of a source with an open connection is never evicted; a missing one refuses.
        if spent == Some(true) {
            Ok(())
        } else {
            Err(Refusal::Budget)
        }
    }

    /// Gives back one request's charge (up to the burst): the core authenticated the request as a
    /// connected peer's, and a connection's traffic is bounded by its per-peer limits there, not by
    /// its address. Junk, strangers and refused requests are never refunded.
    pub fn refund_request(&self, now: Instant) {
        let limits = &self.admission.limits;
        self.admission.with_source(self.key, |s| {
            s.refill(limits, now);
            let full = u64::from(limits.requests_burst) * MILLI;
            s.tokens_milli = s.tokens_milli.saturating_add(MILLI).min(full);
        });
    }

    /// Starts reading one request body; it counts against the source until the ticket is dropped.
    pub fn begin_body(&self) -> Result<BodyTicket<'_>, Refusal> {
        let max = self.admission.limits.bodies_max;
        let taken = self.admission.with_source(self.key, |s| {
            let ok = s.bodies < max;
            if ok {
                s.bodies += 1;
            }
            ok
        });
        if taken == Some(true) {
            Ok(BodyTicket(self))
        } else {
            Err(Refusal::Bodies)
        }
    }
}

impl Drop for ConnectionTicket {
    fn drop(&mut self) {
        self.admission.with_source(self.key, |s| s.open = s.open.saturating_sub(1));
    }
}

/// One body being read; its source's count drops when this is dropped.
#[derive(Debug)]
pub struct BodyTicket<'a>(&'a ConnectionTicket);

impl Drop for BodyTicket<'_> {
    fn drop(&mut self) {
        self.0.admission.with_source(self.0.key, |s| s.bodies = s.bodies.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    fn small() -> Limits {
        Limits { connections_max: 2, bodies_max: 1, requests_burst: 3, requests_per_s: 2, sources_max: 3 }
    }

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
    }

    #[test]
    fn ipv6_counts_by_64_and_ipv4_by_address() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(SourceKey::of(a), SourceKey::of(b));
        assert_ne!(SourceKey::of(a), SourceKey::of(c));
        assert_ne!(SourceKey::of(v4(1)), SourceKey::of(v4(2)));
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(SourceKey::of(mapped), SourceKey::of(v4(1)));
    }

    #[test]
    fn a_source_holds_at_most_its_connections_and_others_are_unaffected() {
        let adm = Admission::new(small());
        let now = Instant::now();
        let t1 = adm.admit(v4(1), now).unwrap();
        let _t2 = adm.admit(v4(1), now).unwrap();
        assert_eq!(adm.admit(v4(1), now).unwrap_err(), Refusal::Connections);
        assert!(adm.admit(v4(2), now).is_ok());
        drop(t1);
        assert!(adm.admit(v4(1), now).is_ok());
    }

    #[test]
    fn bodies_being_read_are_capped_per_source() {
        let adm = Admission::new(small());
        let now = Instant::now();
        let (a, b) = (adm.admit(v4(1), now).unwrap(), adm.admit(v4(1), now).unwrap());
        let body = a.begin_body().unwrap();
        assert_eq!(b.begin_body().unwrap_err(), Refusal::Bodies);
        let other = adm.admit(v4(2), now).unwrap();
        assert!(other.begin_body().is_ok());
        drop(body);
        assert!(b.begin_body().is_ok());
    }

    #[test]
    fn the_budget_refills_at_its_rate_up_to_its_burst() {
        let adm = Admission::new(small());
        let t0 = Instant::now();
        let t = adm.admit(v4(1), t0).unwrap();
        for _ in 0..3 {
            t.spend_request(t0).unwrap();
        }
        assert_eq!(t.spend_request(t0).unwrap_err(), Refusal::Budget);
        assert_eq!(Refusal::Budget.status(), 429);
        // 2 a second: one more after 500 ms, not before.
        assert!(t.spend_request(t0 + Duration::from_millis(499)).is_err());
        assert!(t.spend_request(t0 + Duration::from_millis(500)).is_ok());
        // A long pause refills only up to the burst.
        let later = t0 + Duration::from_secs(3_600);
        for _ in 0..3 {
            t.spend_request(later).unwrap();
        }
        assert!(t.spend_request(later).is_err());
        // Another source has its own budget.
        assert!(adm.admit(v4(2), t0).unwrap().spend_request(t0).is_ok());
    }

    #[test]
    fn a_refund_gives_back_one_request_and_never_exceeds_the_burst() {
        let adm = Admission::new(small());
        let t0 = Instant::now();
        let t = adm.admit(v4(1), t0).unwrap();
        let burst = adm.limits().requests_burst;
        for _ in 0..burst {
            t.spend_request(t0).unwrap();
        }
        assert!(t.spend_request(t0).is_err(), "budget spent");
        t.refund_request(t0);
        assert!(t.spend_request(t0).is_ok(), "one refunded request may be spent again");
        assert!(t.spend_request(t0).is_err(), "and only one");
        // Refunds on a full bucket are lost: the burst stays the cap.
        let u = adm.admit(v4(2), t0).unwrap();
        for _ in 0..10 {
            u.refund_request(t0);
        }
        for _ in 0..burst {
            u.spend_request(t0).unwrap();
        }
        assert!(u.spend_request(t0).is_err());
    }

    #[test]
    fn the_table_is_bounded_and_evicts_the_oldest_idle_source() {
        let adm = Admission::new(small());
        let t0 = Instant::now();
        let held = adm.admit(v4(1), t0).unwrap();
        for i in 2..50u8 {
            let at = t0 + Duration::from_millis(u64::from(i));
            drop(adm.admit(v4(i), at).unwrap());
            assert!(adm.sources() <= 3);
        }
        // The source holding a connection was never evicted: its count still stops a third one.
        let _second = adm.admit(v4(1), t0).unwrap();
        assert_eq!(adm.admit(v4(1), t0).unwrap_err(), Refusal::Connections);
        drop(held);
    }

    #[test]
    fn a_table_full_of_busy_sources_refuses_newcomers() {
        let adm = Admission::new(small());
        let now = Instant::now();
        let _held: Vec<_> = (1..=3).map(|i| adm.admit(v4(i), now).unwrap()).collect();
        assert_eq!(adm.admit(v4(9), now).unwrap_err(), Refusal::Sources);
        assert_eq!(Refusal::Sources.status(), 503);
    }
}
