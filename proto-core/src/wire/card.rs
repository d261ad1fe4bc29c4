//! Read-only descriptions of a node: the well-known card, `/status` and `/network_info`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `GET /.well-known/darkmatter.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct WellKnownCard {
    /// Always true for a DarkMatter node.
    #[serde(default)]
    pub darkmatter: bool,
    /// `"0.2"`.
    #[serde(default)]
    pub protocol_version: String,
    /// Absent on anchors, which scanners then skip.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Informational name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Must equal `agent_id`.
    #[serde(default)]
    pub public_key_hex: Option<String>,
    /// Bio.
    #[serde(default)]
    pub bio: Option<String>,
    /// `active` or `inactive`.
    #[serde(default)]
    pub status: Option<String>,
    /// Below the connection limit.
    #[serde(default)]
    pub accepting_connections: bool,
    /// `<base>/__darkmatter__`.
    #[serde(default)]
    pub mesh_url: Option<String>,
    /// `<base>/mcp` (0.5.3) or null.
    #[serde(default)]
    pub mcp_url: Option<String>,
    /// We never do WebRTC.
    #[serde(default)]
    pub webrtc_enabled: bool,
    /// Anchors set this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<bool>,
    /// Ours: [`super::DM_PROTOCOL`] when the node speaks our signed form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dm_protocol: Option<String>,
    /// Live spawned agents, present only when the node spawns agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spawned_agents: Option<usize>,
}

/// `GET /__darkmatter__/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StatusBody {
    /// Id.
    pub agent_id: String,
    /// Name.
    pub display_name: String,
    /// Key (= id).
    pub public_key_hex: String,
    /// Bio.
    pub bio: String,
    /// `active` or `inactive`.
    pub status: String,
    /// Connections held.
    pub num_connections: usize,
    /// Below the connection limit.
    pub accepting_connections: bool,
    /// Spawned agents running.
    #[serde(default)]
    pub spawned_agents: usize,
}

/// One peer in `/network_info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PeerInfo {
    /// Id.
    pub agent_id: String,
    /// URL.
    pub agent_url: String,
    /// Bio.
    pub agent_bio: String,
}

/// `GET /__darkmatter__/network_info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct NetworkInfo {
    /// Id.
    pub agent_id: String,
    /// Name.
    pub display_name: String,
    /// Key (= id).
    pub public_key_hex: String,
    /// Our URL.
    pub agent_url: String,
    /// Bio.
    pub bio: String,
    /// Below the connection limit.
    pub accepting_connections: bool,
    /// Chain → address.
    #[serde(default)]
    pub wallets: BTreeMap<String, String>,
    /// Connected peers.
    #[serde(default)]
    pub peers: Vec<PeerInfo>,
}
