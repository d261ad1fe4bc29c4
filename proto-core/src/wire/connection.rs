//! The connection handshake: request, answer, proof, acceptance callback, and our signed disconnect.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST /__darkmatter__/connection_request`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ConnectionRequest {
    /// The requester's id (its key).
    #[serde(default)]
    pub from_agent_id: String,
    /// Where the requester serves the mesh endpoints.
    #[serde(default)]
    pub from_agent_url: String,
    /// The requester's bio (truncated to the bio limit).
    #[serde(default)]
    pub from_agent_bio: Option<String>,
    /// Must equal `from_agent_id` when present.
    #[serde(default)]
    pub from_agent_public_key_hex: Option<String>,
    /// Informational name.
    #[serde(default)]
    pub from_agent_display_name: Option<String>,
    /// Chain → address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wallets: Option<BTreeMap<String, String>>,
    /// Legacy duplicate of `wallets.solana`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_agent_wallet_address: Option<String>,
    /// The requester's state creation time.
    #[serde(default)]
    pub created_at: Option<String>,
    /// WormHole's reverse-connect flag, echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutual: Option<bool>,
    /// Ours: the signing time of `dm_signature_hex`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// Ours: the URL the requester sent this to (binds the request to one target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_url: Option<String>,
    /// Ours: signature over id, URL, bio, name, target and timestamp; proves key possession at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dm_signature_hex: Option<String>,
}

/// The answer to a connection request: accepted at once, or pending with a challenge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ConnectionAnswer {
    /// True when the connection exists now.
    #[serde(default)]
    pub auto_accepted: bool,
    /// The target's id.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// The target's URL (when accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_url: Option<String>,
    /// The target's bio (when accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_bio: Option<String>,
    /// The target's key (when accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_public_key_hex: Option<String>,
    /// The target's name (when accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_display_name: Option<String>,
    /// The target's wallets (when accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wallets: Option<BTreeMap<String, String>>,
    /// Legacy wallet field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wallet_address: Option<String>,
    /// The target's creation time (when accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Human-readable outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Pending: the request's id on the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Pending: the challenge to prove key possession.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge_id: Option<String>,
    /// Pending: 32 random bytes, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge_hex: Option<String>,
    /// Ours: signing time of `dm_signature_hex`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// Ours: the target's signature over the answer, bound to the requester.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dm_signature_hex: Option<String>,
}

/// `POST /__darkmatter__/connection_proof`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ConnectionProof {
    /// The challenge answered.
    #[serde(default)]
    pub challenge_id: String,
    /// Signature in the challenge domain over `challenge_hex`.
    #[serde(default)]
    pub proof_hex: String,
    /// The requester.
    #[serde(default)]
    pub agent_id: String,
    /// Must equal `agent_id`.
    #[serde(default)]
    pub public_key_hex: String,
}

/// `POST /__darkmatter__/connection_accepted`: the target tells the requester it accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ConnectionAccepted {
    /// The acceptor.
    #[serde(default)]
    pub agent_id: String,
    /// The acceptor's URL (0.5.3 appends `/mcp`).
    #[serde(default)]
    pub agent_url: String,
    /// The acceptor's bio.
    #[serde(default)]
    pub agent_bio: Option<String>,
    /// Must equal `agent_id` when present.
    #[serde(default)]
    pub agent_public_key_hex: Option<String>,
    /// The acceptor's name.
    #[serde(default)]
    pub agent_display_name: Option<String>,
    /// The acceptor's wallets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wallets: Option<BTreeMap<String, String>>,
    /// Legacy wallet field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wallet_address: Option<String>,
    /// The acceptor's creation time.
    #[serde(default)]
    pub created_at: Option<String>,
    /// Ours: the requester this acceptance is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_agent_id: Option<String>,
    /// Ours: signing time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// Ours: signature over acceptor, requester, URL and timestamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dm_signature_hex: Option<String>,
}

/// `POST /__darkmatter__/disconnect` (ours): a signed notice that the sender dropped the connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Disconnect {
    /// Who disconnects.
    #[serde(default)]
    pub from_agent_id: String,
    /// Who is told.
    #[serde(default)]
    pub to_agent_id: String,
    /// Signing time.
    #[serde(default)]
    pub timestamp: String,
    /// Why, for the other agent to read.
    #[serde(default)]
    pub reason: String,
    /// Signature over all of the above.
    #[serde(default)]
    pub dm_signature_hex: String,
}

/// `{"success": true, ...}` style acknowledgements with no other content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Ack {
    /// Always true.
    pub success: bool,
}
