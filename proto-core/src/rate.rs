//! [`RateLimits`]: how many requests the node admits per sliding window, from everyone together, from
//! each party, and from each connected peer's messages.
//!
//! Only work that passed its own checks is counted: a request is charged after it decoded and, where
//! it carries a signature, after the signature verified. Junk and forgeries are refused before they
//! spend anything another peer needs. Each admitted request is charged to one [`Party`]: the connected
//! peer it authenticated as, or else the source address it came from. A party may use at most
//! 1/[`RATE_PARTY_SHARE_DIVISOR`] of the global window, and everything that is not a connected peer
//! together at most 1/[`RATE_STRANGERS_SHARE_DIVISOR`], so one flood is refused at its party while
//! the others are still served. A connected peer's messages also pass its own window (its connection's
//! limit) first, so nobody can spend another peer's budget by claiming its id.
//!
//! The limits themselves are settings stored with the profile and the connection (see
//! [`crate::store`]); this owner keeps only the windows, which are never persisted: a restart starts
//! every window empty.

use std::collections::BTreeMap;

use core::net::IpAddr;

use crate::error::Refusal;
use crate::limits::{
    RateLimit, RateWindow, RATE_GLOBAL_DEFAULT, RATE_LIMIT_CEILING, RATE_PARTY_SHARE_DIVISOR, RATE_PER_PEER_DEFAULT,
    RATE_SOURCES_MAX, RATE_STRANGERS_SHARE_DIVISOR, RATE_WINDOW_MS,
};
use crate::url::source_prefix;

/// Who an admitted request is charged to.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Party<'a> {
    /// A connected peer, after the request authenticated as it, with its connection's limit: a limit
    /// the agent set for this peer (above the share, or unlimited) lets it use that much of the
    /// global window; the default leaves it its share.
    Peer(&'a str, RateLimit),
    /// Anyone else, by the source address of the request (`None`: the runtime did not say).
    Source(Option<IpAddr>),
}

/// The windows of one connected peer.
#[derive(Debug, Default)]
struct PeerWindows {
    /// Its messages, under its connection's limit.
    messages: RateWindow,
    /// All its admitted requests, under its share of the global window.
    share: RateWindow,
}

/// The admission windows: one global, one for strangers together, one per source and per peer.
#[derive(Debug, Default)]
pub(crate) struct RateLimits {
    global: RateWindow,
    strangers: RateWindow,
    /// Only connected peers have windows; [`RateLimits::forget`] drops them with the connection.
    peers: BTreeMap<String, PeerWindows>,
    /// At most [`RATE_SOURCES_MAX`], keyed by [`source_prefix`].
    sources: BTreeMap<Option<IpAddr>, RateWindow>,
}

/// The per-window maxima the global limit implies: (global, one party's share, strangers' share).
/// `None`: the global limit is unlimited, and so are the shares.
fn maxima(limit: RateLimit) -> Option<(usize, usize, usize)> {
    let global = match limit {
        RateLimit::Default => RATE_GLOBAL_DEFAULT,
        RateLimit::PerWindow(n) => n.min(RATE_LIMIT_CEILING),
        RateLimit::Unlimited => return None,
    };
    // A share rounds up so that a small global limit still leaves every party one request.
    let share = |divisor: u32| global.div_ceil(divisor) as usize;
    Some((global as usize, share(RATE_PARTY_SHARE_DIVISOR), share(RATE_STRANGERS_SHARE_DIVISOR)))
}

impl RateLimits {
    /// Admits one request of `party` at `now_ms` under the configured global `limit`: its party's
    /// share, the strangers' share (for a source) and the global window must all have room; then it
    /// counts in each, else in none.
    pub(crate) fn admit(&mut self, now_ms: u64, party: Party<'_>, limit: RateLimit) -> Result<(), Refusal> {
        let Some((global_max, share_max, strangers_max)) = maxima(limit) else { return Ok(()) };
        let share_max = match party {
            Party::Peer(_, RateLimit::PerWindow(n)) => share_max.max(n as usize),
            Party::Peer(_, RateLimit::Unlimited) => global_max,
            _ => share_max,
        };
        let party_window = match party {
            Party::Peer(peer, _) => &mut self.peer_windows(peer).share,
            Party::Source(ip) => self.source_window(now_ms, ip),
        };
        if !party_window.has_room(now_ms, RATE_WINDOW_MS, share_max) {
            return Err(share_refusal(party, share_max));
        }
        let stranger = matches!(party, Party::Source(_));
        if stranger && !self.strangers.has_room(now_ms, RATE_WINDOW_MS, strangers_max) {
            return Err(Refusal::Limited(format!(
                "Global rate limit exceeded for agents not connected ({strangers_max} requests per 60s)"
            )));
        }
        if !self.global.has_room(now_ms, RATE_WINDOW_MS, global_max) {
            return Err(Refusal::Limited(format!("Global rate limit exceeded ({global_max} requests per 60s)")));
        }
        self.global.record(now_ms);
        if stranger {
            self.strangers.record(now_ms);
        }
        match party {
            Party::Peer(peer, _) => self.peer_windows(peer).share.record(now_ms),
            Party::Source(ip) => self.source_window(now_ms, ip).record(now_ms),
        }
        Ok(())
    }

    /// Admits one message from the connected `peer` at `now_ms` under its connection's `limit`.
    pub(crate) fn admit_peer(&mut self, peer: &str, now_ms: u64, limit: RateLimit) -> Result<(), Refusal> {
        if self.peer_windows(peer).messages.try_admit(now_ms, limit, RATE_PER_PEER_DEFAULT) {
            return Ok(());
        }
        let shown = shown_limit(limit, RATE_PER_PEER_DEFAULT);
        Err(Refusal::Limited(format!("Rate limit exceeded for this connection ({shown} requests per 60s)")))
    }

    /// Drops a peer's windows (its connection ended), so the map never outgrows the connections.
    pub(crate) fn forget(&mut self, peer: &str) {
        self.peers.remove(peer);
    }

    fn peer_windows(&mut self, peer: &str) -> &mut PeerWindows {
        // The usual case is a peer with windows already: no key allocation then.
        if !self.peers.contains_key(peer) {
            self.peers.insert(peer.to_owned(), PeerWindows::default());
        }
        self.peers.get_mut(peer).expect("inserted above")
    }

    /// The window of the source `ip` belongs to; a new source takes the place of the one idle longest
    /// when [`RATE_SOURCES_MAX`] are kept (it loses at most one window's memory of that source).
    fn source_window(&mut self, now_ms: u64, ip: Option<IpAddr>) -> &mut RateWindow {
        let key = ip.map(source_prefix);
        if !self.sources.contains_key(&key) && self.sources.len() >= RATE_SOURCES_MAX {
            // Sources whose window emptied are forgotten first: they lose nothing.
            self.sources.retain(|_, w| !w.has_room(now_ms, RATE_WINDOW_MS, 1));
            if self.sources.len() >= RATE_SOURCES_MAX {
                let idle = self.sources.iter().min_by_key(|(_, w)| w.newest_ms()).map(|(k, _)| *k);
                self.sources.remove(&idle.expect("the map is full"));
            }
        }
        debug_assert!(self.sources.len() <= RATE_SOURCES_MAX);
        self.sources.entry(key).or_default()
    }
}

fn share_refusal(party: Party<'_>, max: usize) -> Refusal {
    Refusal::Limited(match party {
        Party::Peer(..) => format!("Rate limit exceeded for this connection ({max} requests per 60s)"),
        Party::Source(_) => format!("Rate limit exceeded for your address ({max} requests per 60s)"),
    })
}

/// The limit a refusal names: the configured one, else the window's default.
fn shown_limit(limit: RateLimit, default: u32) -> u32 {
    match limit {
        RateLimit::PerWindow(n) => n,
        _ => default,
    }
}

/// Requests per minute a limit allows (`None`: unlimited), as the `set_rate_limit` tool reports it.
pub(crate) fn effective_per_minute(limit: RateLimit, default: u32) -> Option<u32> {
    match limit {
        RateLimit::Default => Some(default),
        RateLimit::PerWindow(n) => Some(n),
        RateLimit::Unlimited => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn a_peer_window_is_its_own_and_goes_with_the_peer() {
        let mut r = RateLimits::default();
        let limit = RateLimit::PerWindow(2);
        assert!(r.admit_peer("a", 0, limit).is_ok());
        assert!(r.admit_peer("a", 1, limit).is_ok());
        assert!(matches!(r.admit_peer("a", 2, limit), Err(Refusal::Limited(_))));
        // Another peer's budget is untouched.
        assert!(r.admit_peer("b", 2, limit).is_ok());
        // A forgotten peer starts again with an empty window.
        r.forget("a");
        assert!(r.admit_peer("a", 3, limit).is_ok());
        assert!(r.admit(RATE_WINDOW_MS, Party::Peer("a", RateLimit::Default), RateLimit::Unlimited).is_ok());
    }

    #[test]
    fn the_refusal_names_the_limit_in_force() {
        let mut r = RateLimits::default();
        assert!(r.admit(0, Party::Peer("a", RateLimit::Default), RateLimit::PerWindow(1)).is_ok());
        let err = r.admit(0, Party::Peer("b", RateLimit::Default), RateLimit::PerWindow(1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            Refusal::Limited("Global rate limit exceeded (1 requests per 60s)".into()).to_string()
        );
        assert_eq!(effective_per_minute(RateLimit::Unlimited, 7), None);
        assert_eq!(effective_per_minute(RateLimit::Default, 7), Some(7));
    }

    #[test]
    fn one_party_gets_exactly_its_share_and_the_others_are_still_served() {
        let mut r = RateLimits::default();
        let share = (RATE_GLOBAL_DEFAULT / RATE_PARTY_SHARE_DIVISOR) as usize;
        for i in 0..share {
            assert!(
                r.admit(i as u64, Party::Peer("flood", RateLimit::Default), RateLimit::Default).is_ok(),
                "request {i}"
            );
        }
        let err = r.admit(share as u64, Party::Peer("flood", RateLimit::Default), RateLimit::Default).unwrap_err();
        assert!(err.to_string().starts_with("Rate limit exceeded for this connection (50 "), "{err}");
        // A refused request counts nowhere: the global window holds only the share.
        assert_eq!(r.global.count(share as u64), share);
        assert!(r.admit(share as u64, Party::Peer("other", RateLimit::Default), RateLimit::Default).is_ok());
        // A peer the agent lifted above the share may use that much (here: all) of the global window.
        for _ in 0..share {
            assert!(r.admit(share as u64, Party::Peer("lifted", RateLimit::Unlimited), RateLimit::Default).is_ok());
        }
        // The share comes back one window after its first request.
        assert!(r.admit(RATE_WINDOW_MS, Party::Peer("flood", RateLimit::Default), RateLimit::Default).is_ok());
    }

    #[test]
    fn strangers_together_never_take_more_than_their_share() {
        let mut r = RateLimits::default();
        let share = (RATE_GLOBAL_DEFAULT / RATE_PARTY_SHARE_DIVISOR) as usize;
        let strangers = (RATE_GLOBAL_DEFAULT / RATE_STRANGERS_SHARE_DIVISOR) as usize;
        // Two sources take their whole shares: the strangers' share is then spent...
        for s in ["10.0.0.1", "10.0.0.2"] {
            for _ in 0..share {
                assert!(r.admit(0, Party::Source(ip(s)), RateLimit::Default).is_ok());
            }
        }
        assert_eq!(r.strangers.count(0), strangers);
        let err = r.admit(0, Party::Source(ip("10.0.0.3")), RateLimit::Default).unwrap_err();
        assert!(err.to_string().contains("not connected"), "{err}");
        // ...while connected peers still have the rest of the global window.
        for i in 0..(RATE_GLOBAL_DEFAULT as usize - strangers) / share {
            assert!(r.admit(0, Party::Peer(&format!("p{i}"), RateLimit::Default), RateLimit::Default).is_ok());
        }
    }

    #[test]
    fn a_source_is_counted_by_its_address_or_its_ipv6_64() {
        let mut r = RateLimits::default();
        let limit = RateLimit::PerWindow(RATE_PARTY_SHARE_DIVISOR * 2);
        for s in ["2001:db8:1:2::1", "2001:db8:1:2:ffff::9"] {
            assert!(r.admit(0, Party::Source(ip(s)), limit).is_ok());
        }
        assert!(r.admit(0, Party::Source(ip("2001:db8:1:2::3")), limit).is_err(), "same /64, share of 2 spent");
        assert!(r.admit(0, Party::Source(ip("2001:db8:1:3::1")), limit).is_ok(), "another /64");
    }

    #[test]
    fn the_source_table_stays_bounded_and_forgets_the_idlest_source() {
        let mut r = RateLimits::default();
        for i in 0..=RATE_SOURCES_MAX as u32 {
            let addr = IpAddr::V4(core::net::Ipv4Addr::from(0x0a00_0000 + i));
            assert!(r.admit(u64::from(i), Party::Source(Some(addr)), RateLimit::Unlimited).is_ok());
            assert!(r.admit(u64::from(i), Party::Source(Some(addr)), RateLimit::PerWindow(u32::MAX)).is_ok());
        }
        assert_eq!(r.sources.len(), RATE_SOURCES_MAX);
        assert!(!r.sources.contains_key(&Some(IpAddr::V4(core::net::Ipv4Addr::from(0x0a00_0000)))));
    }

    #[test]
    fn unlimited_global_means_unlimited_shares() {
        let mut r = RateLimits::default();
        for i in 0..1_000 {
            assert!(r.admit(i, Party::Source(None), RateLimit::Unlimited).is_ok());
        }
    }
}
