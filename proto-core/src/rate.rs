//! [`RateLimits`]: how many requests the node admits per sliding window, from everyone together and
//! from each connected peer.
//!
//! The global window is passed by every peer request that does work, before any decoding; a peer's
//! own window only after its signature verified, so nobody can spend another peer's budget by
//! claiming its id. The limits themselves are settings stored with the profile and the connection
//! (see [`crate::store`]); this owner keeps only the windows, which are never persisted: a restart
//! starts every window empty.

use std::collections::BTreeMap;

use crate::error::Refusal;
use crate::limits::{RateLimit, RateWindow, RATE_GLOBAL_DEFAULT, RATE_PER_PEER_DEFAULT};

/// The admission windows: one global, one per connected peer that has sent since it connected.
#[derive(Debug, Default)]
pub(crate) struct RateLimits {
    global: RateWindow,
    /// Only connected peers have a window; [`RateLimits::forget`] drops it with the connection.
    peers: BTreeMap<String, RateWindow>,
}

impl RateLimits {
    /// Admits one request from anyone at `now_ms` under the configured global `limit`.
    pub(crate) fn admit_global(&mut self, now_ms: u64, limit: RateLimit) -> Result<(), Refusal> {
        if self.global.try_admit(now_ms, limit, RATE_GLOBAL_DEFAULT) {
            return Ok(());
        }
        let shown = shown_limit(limit, RATE_GLOBAL_DEFAULT);
        Err(Refusal::Limited(format!("Global rate limit exceeded ({shown} requests per 60s)")))
    }

    /// Admits one request from the connected `peer` at `now_ms` under its connection's `limit`.
    pub(crate) fn admit_peer(&mut self, peer: &str, now_ms: u64, limit: RateLimit) -> Result<(), Refusal> {
        // The usual case is a peer with a window already: no key allocation then.
        let admitted = match self.peers.get_mut(peer) {
            Some(window) => window.try_admit(now_ms, limit, RATE_PER_PEER_DEFAULT),
            None => self.peers.entry(peer.to_owned()).or_default().try_admit(now_ms, limit, RATE_PER_PEER_DEFAULT),
        };
        if admitted {
            return Ok(());
        }
        let shown = shown_limit(limit, RATE_PER_PEER_DEFAULT);
        Err(Refusal::Limited(format!("Rate limit exceeded for this connection ({shown} requests per 60s)")))
    }

    /// Drops a peer's window (its connection ended), so the map never outgrows the connections.
    pub(crate) fn forget(&mut self, peer: &str) {
        self.peers.remove(peer);
    }
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
    use crate::limits::RATE_WINDOW_MS;

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
        assert!(r.admit_global(RATE_WINDOW_MS, RateLimit::Unlimited).is_ok());
    }

    #[test]
    fn the_refusal_names_the_limit_in_force() {
        let mut r = RateLimits::default();
        assert!(r.admit_global(0, RateLimit::PerWindow(1)).is_ok());
        let err = r.admit_global(0, RateLimit::PerWindow(1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            Refusal::Limited("Global rate limit exceeded (1 requests per 60s)".into()).to_string()
        );
        assert_eq!(effective_per_minute(RateLimit::Unlimited, 7), None);
        assert_eq!(effective_per_minute(RateLimit::Default, 7), Some(7));
    }
}
