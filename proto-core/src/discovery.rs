//! Discovery: the well-known card and status views peers read, and signed LAN beacons.
//!
//! Stricter than 0.5.3: a beacon's key must equal its agent id and its timestamp must be fresh;
//! discovered peers expire and are kept in a bounded table the agent can read.
//!
//! Cards come in as answers to the node's own transmits (localhost scan probes, a domain's card fetch)
//! and are checked here ([`validate_card`]); open scans are counted (`Scans`) so `DiscoverLocal` is
//! done exactly when its last probe has answered. The node's timers (`node/discovery.rs`) decide when
//! to beacon and to scan.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::identity::{truncate_chars, AgentId};
use crate::io::CommandId;
use crate::limits::DISPLAY_NAME_CHARS_MAX;
use crate::output::{DiscoveredPeer, DomainReport};
use crate::wire::card::WellKnownCard;

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

/// Default localhost scan range, inclusive (`DARKMATTER_DISCOVERY_PORTS`).
pub const SCAN_PORTS_DEFAULT: (u16, u16) = (8100, 8110);
/// Seconds between background localhost scans (0.5.3's discovery loop period).
pub const SCAN_INTERVAL_S: u64 = 30;
/// The first background scan runs this long after start, in ms (lets the local server come up).
pub const SCAN_FIRST_DELAY_MS: u64 = 1_000;
/// Overall time allowed to one port probe, in ms (the runtime's probe client caps connect lower).
pub const PROBE_TIMEOUT_MS: u64 = 500;
/// Time allowed to a domain card fetch, in ms.
pub const DOMAIN_FETCH_MS: u64 = 5_000;
/// Longest domain accepted by `discover_domain`, in bytes.
pub const DOMAIN_BYTES_MAX: usize = 253 + 16;
/// Bio characters kept from a card, as from a beacon.
pub const CARD_BIO_CHARS_MAX: usize = 100;
/// Scans open at once; a further background scan is skipped while this many run (each holds at
/// most one probe per scanned port, so the calls in flight stay bounded).
pub const SCANS_OPEN_MAX: usize = 4;
/// The path of the well-known card.
pub const CARD_PATH: &str = "/.well-known/darkmatter.json";

/// Why a fetched card was not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CardError {
    /// The body is not JSON of the card's shape.
    #[error("not a DarkMatter card: {0}")]
    Undecodable(String),
    /// The card says `darkmatter: false`.
    #[error("not a DarkMatter card")]
    NotDarkMatter,
    /// No `agent_id` (an anchor's card has none).
    #[error("card has no agent_id (an anchor?)")]
    NoAgentId,
    /// The `agent_id` is not a key.
    #[error("{0}")]
    BadAgentId(String),
    /// `public_key_hex` differs from `agent_id`.
    #[error("card's public_key_hex does not equal its agent_id")]
    KeyMismatch,
    /// The card is our own.
    #[error("that is this node")]
    Ourselves,
}

/// Checks a fetched card; `url` is where we reached it (kept as the connect URL, not what it claims).
pub fn validate_card(body: &[u8], me: &str, url: String, source: &str) -> Result<Discovered, CardError> {
    let card: WellKnownCard = crate::wire::decode(body).map_err(|e| CardError::Undecodable(e.to_string()))?;
    if !card.darkmatter {
        return Err(CardError::NotDarkMatter);
    }
    let id = card.agent_id.as_deref().ok_or(CardError::NoAgentId)?;
    AgentId::parse(id).map_err(|e| CardError::BadAgentId(e.to_string()))?;
    if card.public_key_hex.as_deref() != Some(id) {
        return Err(CardError::KeyMismatch);
    }
    if id == me {
        return Err(CardError::Ourselves);
    }
    Ok(Discovered {
        agent_id: id.to_owned(),
        url,
        display_name: truncate_chars(card.display_name.as_deref().unwrap_or(""), DISPLAY_NAME_CHARS_MAX),
        bio: truncate_chars(card.bio.as_deref().unwrap_or(""), CARD_BIO_CHARS_MAX),
        source: source.to_owned(),
        accepting: card.accepting_connections,
        seen_us: 0,
    })
}

/// The base URL to fetch a domain's card from: an explicit scheme is kept; otherwise `http` for
/// localhost and loopback addresses, `https` for everything else.
pub fn domain_base(domain: &str) -> Result<String, String> {
    let d = domain.trim().trim_end_matches('/');
    if d.is_empty() || d.len() > DOMAIN_BYTES_MAX {
        return Err(format!("domain must be 1..={DOMAIN_BYTES_MAX} characters"));
    }
    let with_scheme = if d.contains("://") { d.to_owned() } else { format!("https://{d}") };
    let mut url = crate::url::validate(&with_scheme)?;
    if !d.contains("://")
        && crate::url::is_local_url(&url)
        && url.host_str().is_some_and(|h| h == "localhost" || h.starts_with("127.") || h == "[::1]")
    {
        url.set_scheme("http").map_err(|()| "cannot use http".to_owned())?;
    }
    Ok(format!("{}://{}", url.scheme(), &url[::url::Position::BeforeHost..::url::Position::AfterPort]))
}

/// One localhost scan in progress: how many probes are out, what they found, who waits for it.
#[derive(Debug)]
struct Scan {
    /// The `discover_local` command to complete, or `None` for a background scan.
    cmd: Option<CommandId>,
    outstanding: usize,
    found: Vec<Discovered>,
}

/// Open localhost scans, each finished when its last probe has answered. At most [`SCANS_OPEN_MAX`].
#[derive(Debug, Default)]
pub(crate) struct Scans {
    open: BTreeMap<u64, Scan>,
    next_id: u64,
}

impl Scans {
    /// Whether a background scan may start (an agent's scan always may: it is bounded by the agent).
    pub(crate) fn has_room(&self) -> bool {
        self.open.len() < SCANS_OPEN_MAX
    }

    /// Opens a scan expecting `probes` answers; returns its id.
    pub(crate) fn open(&mut self, cmd: Option<CommandId>, probes: usize) -> u64 {
        self.next_id += 1;
        self.open.insert(self.next_id, Scan { cmd, outstanding: probes, found: Vec::new() });
        self.next_id
    }

    /// One probe of scan `id` answered (with a peer or not). When it was the last, the scan closes and
    /// its command (if any) and findings are handed back.
    pub(crate) fn answered(
        &mut self,
        id: u64,
        found: Option<Discovered>,
    ) -> Option<(Option<CommandId>, Vec<Discovered>)> {
        let scan = self.open.get_mut(&id)?;
        debug_assert!(scan.outstanding > 0);
        scan.outstanding = scan.outstanding.saturating_sub(1);
        scan.found.extend(found);
        if scan.outstanding > 0 {
            return None;
        }
        let scan = self.open.remove(&id)?;
        Some((scan.cmd, scan.found))
    }
}

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

impl From<&Discovered> for DiscoveredPeer {
    fn from(d: &Discovered) -> Self {
        DiscoveredPeer {
            agent_id: d.agent_id.clone(),
            url: d.url.clone(),
            display_name: d.display_name.clone(),
            bio: d.bio.clone(),
            source: d.source.clone(),
            accepting: d.accepting,
            seen_us: d.seen_us,
        }
    }
}

impl From<&Discovered> for DomainReport {
    fn from(d: &Discovered) -> Self {
        DomainReport {
            found: true,
            agent_id: d.agent_id.clone(),
            url: d.url.clone(),
            display_name: d.display_name.clone(),
            bio: d.bio.clone(),
            accepting_connections: d.accepting,
        }
    }
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
