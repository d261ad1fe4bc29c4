//! Discovery: the well-known card and status views peers read, and signed LAN beacons.
//!
//! Stricter than 0.5.3: a beacon's key must equal its agent id and its timestamp must be fresh;
//! discovered peers expire and are kept in a bounded table the agent can read.

use std::collections::BTreeMap;

use serde::Serialize;

/// 0.5.3's multicast group.
pub const BEACON_GROUP: &str = "239.77.68.77";
/// 0.5.3's beacon port.
pub const BEACON_PORT: u16 = 8470;
/// Seconds between beacons.
pub const BEACON_INTERVAL_S: u64 = 30;
/// A discovered peer is forgotten this long after its last beacon or card, in seconds.
pub const DISCOVERED_TTL_S: u64 = 90;
/// Discovered peers kept; when full, the stalest is replaced.
pub const DISCOVERED_MAX: usize = 256;
/// Largest beacon datagram accepted, in bytes.
pub const BEACON_BYTES_MAX: usize = 4_096;
/// The wire protocol version 0.5.3 advertises.
pub const PROTOCOL_VERSION: &str = "0.2";

/// A peer seen on the LAN or by a scan, not necessarily connected.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Discovered {
    /// Its id.
    pub agent_id: String,
    /// Where to connect.
    pub url: String,
    /// Name.
    pub display_name: String,
    /// Bio (first 100 characters).
    pub bio: String,
    /// `lan`, `local` or `domain`.
    pub source: String,
    /// Below its connection limit.
    pub accepting: bool,
    /// Last seen (wall µs).
    pub seen_us: i64,
}

/// Peers discovered and not yet expired: at most [`DISCOVERED_MAX`], each for [`DISCOVERED_TTL_S`]
/// after it was last seen.
#[derive(Debug, Default)]
pub(crate) struct Discovery {
    seen: BTreeMap<String, Discovered>,
}

impl Discovery {
    /// Records a peer seen at `d.seen_us`; when the table is full, the stalest gives way.
    pub(crate) fn remember(&mut self, d: Discovered, now_us: i64) {
        self.forget_stale(now_us);
        if !self.seen.contains_key(&d.agent_id) && self.seen.len() >= DISCOVERED_MAX {
            let stalest = self.seen.values().min_by_key(|x| x.seen_us).map(|x| x.agent_id.clone()).expect("full");
            self.seen.remove(&stalest);
        }
        self.seen.insert(d.agent_id.clone(), d);
        debug_assert!(self.seen.len() <= DISCOVERED_MAX);
    }

    /// Peers not expired at `now_us`, most recent first.
    pub(crate) fn list(&self, now_us: i64) -> Vec<Discovered> {
        let cutoff = stale_before(now_us);
        let mut v: Vec<Discovered> = self.seen.values().filter(|d| d.seen_us >= cutoff).cloned().collect();
        v.sort_by(|a, b| b.seen_us.cmp(&a.seen_us).then(a.agent_id.cmp(&b.agent_id)));
        v
    }

    fn forget_stale(&mut self, now_us: i64) {
        let cutoff = stale_before(now_us);
        self.seen.retain(|_, d| d.seen_us >= cutoff);
    }
}

/// Peers last seen before this wall time (µs) have expired.
fn stale_before(now_us: i64) -> i64 {
    now_us - DISCOVERED_TTL_S as i64 * 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: &str, seen_us: i64) -> Discovered {
        Discovered {
            agent_id: id.into(),
            url: String::new(),
            display_name: String::new(),
            bio: String::new(),
            source: "lan".into(),
            accepting: true,
            seen_us,
        }
    }

    #[test]
    fn a_full_table_drops_the_stalest_and_expired_peers_are_not_listed() {
        let mut d = Discovery::default();
        for i in 0..DISCOVERED_MAX as i64 {
            d.remember(peer(&format!("p{i}"), 1_000 + i), 1_000 + i);
        }
        d.remember(peer("new", 5_000), 5_000);
        let listed = d.list(5_000);
        assert_eq!(listed.len(), DISCOVERED_MAX);
        assert_eq!(listed[0].agent_id, "new");
        assert!(!listed.iter().any(|p| p.agent_id == "p0"));
        assert!(d.list(5_000 + DISCOVERED_TTL_S as i64 * 1_000_000 + 1).is_empty());
    }
}
