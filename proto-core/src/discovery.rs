//! Discovery: the well-known card and status views peers read, and signed LAN beacons.
//!
//! Stricter than 0.5.3: a beacon's key must equal its agent id and its timestamp must be fresh;
//! discovered peers expire and are kept in a bounded table the agent can read.

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
