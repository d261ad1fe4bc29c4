//! `POST /__darkmatter__/message`: the signed message envelope and its acknowledgement.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A message as it travels. 0.5.3 signs `from_agent_id`, `message_id`, `timestamp`, `content`; our
/// `dm_signature_hex` also covers the recipient, webhook, hops, reply link and metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MessageEnvelope {
    /// `msg-<12 hex>` for new messages; forwards keep the original id.
    #[serde(default)]
    pub message_id: String,
    /// The text, at most [`crate::limits::CONTENT_CHARS_MAX`] characters.
    #[serde(default)]
    pub content: String,
    /// Where the receiver posts status updates (`received`, `forwarded`, `response`).
    #[serde(default)]
    pub webhook: String,
    /// Forwarding budget left; absent means the default.
    #[serde(default = "default_hops")]
    pub hops_remaining: i64,
    /// Free-form metadata (`type`, `forwarded`, `forwarded_by`, ...). `null` is read as `{}`.
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    /// ISO 8601 with offset; signed as the exact string.
    #[serde(default)]
    pub timestamp: String,
    /// The signer (for a forward: the forwarder).
    #[serde(default)]
    pub from_agent_id: String,
    /// Must equal `from_agent_id` when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_public_key_hex: Option<String>,
    /// The legacy-form signature (0.5.3 verifies this).
    #[serde(default)]
    pub signature_hex: String,
    /// The message this one answers (ours; covered by `dm_signature_hex`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<String>,
    /// The intended recipient (ours; binds the signature to one receiver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_agent_id: Option<String>,
    /// Our signature over every field (see SPEC.md §Signatures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dm_signature_hex: Option<String>,
}

fn default_hops() -> i64 {
    crate::limits::HOPS_MAX as i64
}

/// The success answer: `{"success":true,"queued":true,"queue_position":N}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageQueued {
    /// Always true.
    pub success: bool,
    /// Always true.
    pub queued: bool,
    /// 1-based position in the receiver's inbox.
    pub queue_position: usize,
}

/// The answer to a broadcast: `{"status":"broadcast_received"}` (0.5.3 logs broadcasts, we queue them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BroadcastReceived {
    /// `broadcast_received`.
    pub status: String,
}
