//! The LAN beacon: one UDP multicast datagram of JSON.

use serde::{Deserialize, Serialize};

/// A beacon as 0.5.3 sends it; `port` and `ts` must be JSON integers (they are signed as `str()`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Beacon {
    /// `darkmatter`.
    pub proto: String,
    /// `0.2`.
    #[serde(default)]
    pub v: String,
    /// The sender.
    pub agent_id: String,
    /// Name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Must equal `agent_id` (0.5.3 does not check; we do).
    #[serde(default)]
    pub public_key_hex: String,
    /// First 100 characters of the bio.
    #[serde(default)]
    pub bio: Option<String>,
    /// The sender's HTTP port.
    pub port: u16,
    /// `active` / `inactive`.
    #[serde(default)]
    pub status: Option<String>,
    /// Below its connection limit.
    #[serde(default)]
    pub accepting: bool,
    /// Unix seconds.
    pub ts: i64,
    /// Signature over (agent_id, port, ts) in the beacon domain.
    #[serde(default)]
    pub beacon_signature_hex: String,
}
