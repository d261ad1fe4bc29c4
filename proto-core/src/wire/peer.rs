//! Self-healing: `POST /__darkmatter__/peer_update` and `GET /__darkmatter__/peer_lookup/<id>`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A signed announcement of a peer's new URL (and bio/name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PeerUpdate {
    /// Who moved.
    #[serde(default)]
    pub agent_id: String,
    /// The new URL.
    #[serde(default)]
    pub new_url: String,
    /// Transport → address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<BTreeMap<String, String>>,
    /// Signing time (we require it).
    #[serde(default)]
    pub timestamp: Option<String>,
    /// New bio (covered only by our signature).
    #[serde(default)]
    pub bio: Option<String>,
    /// New name (covered only by our signature).
    #[serde(default)]
    pub display_name: Option<String>,
    /// Must equal `agent_id`.
    #[serde(default)]
    pub public_key_hex: Option<String>,
    /// 0.5.3 form over (agent_id, new_url, timestamp). Note: not `signature_hex`.
    #[serde(default)]
    pub signature: Option<String>,
    /// Ours: over agent, URL, bio, name, timestamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dm_signature_hex: Option<String>,
}

/// `{"success":true,"updated":true}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerUpdated {
    /// Always true.
    pub success: bool,
    /// Always true.
    pub updated: bool,
}

/// The answer to a peer lookup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PeerLookupAnswer {
    /// The agent asked about.
    pub agent_id: String,
    /// Its URL as we have it.
    pub url: String,
    /// Its transports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<BTreeMap<String, String>>,
    /// `connected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Ours: the peer's own signed `peer_update` behind `url` (either form), so the asker can check
    /// the URL against the peer's key instead of trusting us. Absent when we hold no signed update
    /// (0.5.3 never sends it and ignores it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_update: Option<PeerUpdate>,
}
