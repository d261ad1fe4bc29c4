//! `POST /__darkmatter__/shard_push`: a signed knowledge shard.

use serde::{Deserialize, Serialize};

/// A shard as pushed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ShardPush {
    /// `shard-<12 hex>`.
    #[serde(default)]
    pub shard_id: String,
    /// The author (not necessarily the sender).
    #[serde(default)]
    pub author_agent_id: String,
    /// Body.
    #[serde(default)]
    pub content: String,
    /// Tags in the author's order; signed sorted and comma-joined.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Minimum trust a receiver must have in the author.
    #[serde(default)]
    pub trust_threshold: f64,
    /// Creation time.
    #[serde(default)]
    pub created_at: Option<String>,
    /// Update time.
    #[serde(default)]
    pub updated_at: Option<String>,
    /// Summary.
    #[serde(default)]
    pub summary: Option<String>,
    /// 0.5.3 shard-domain signature (empty when the content cannot be signed unambiguously that way).
    #[serde(default)]
    pub signature_hex: String,
    /// Ours: the author deleted this shard (a tombstone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<bool>,
    /// Ours: the peer this push is for (binds the signature to one receiver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_agent_id: Option<String>,
    /// Ours: when the author sent this push (fresh within the window; no relays of old pushes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed_at: Option<String>,
    /// Ours: the author's signature over every field, the receiver and the push time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dm_signature_hex: Option<String>,
}
