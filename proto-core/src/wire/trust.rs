//! `GET /__darkmatter__/impression/<agent_id>`: one node's opinion of another.

use serde::{Deserialize, Serialize};

/// The answer to an impression query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ImpressionAnswer {
    /// The agent asked about.
    pub agent_id: String,
    /// Whether the answering node has an opinion.
    pub has_impression: bool,
    /// Score in -1..1 when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// Note when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `POST /__darkmatter__/trust_query` (ours): "what is your impression of this agent?", signed by
/// the asker. Answered only to connected peers the answerer trusts at least neutrally.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TrustQuery {
    /// The asker.
    #[serde(default)]
    pub from_agent_id: String,
    /// The peer asked.
    #[serde(default)]
    pub to_agent_id: String,
    /// The agent asked about.
    #[serde(default)]
    pub subject_agent_id: String,
    /// Matches the answer to the question.
    #[serde(default)]
    pub query_id: String,
    /// Signing time.
    #[serde(default)]
    pub timestamp: String,
    /// Signature over all of the above.
    #[serde(default)]
    pub dm_signature_hex: String,
}

/// The signed answer to a [`TrustQuery`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TrustAnswer {
    /// The answerer.
    #[serde(default)]
    pub from_agent_id: String,
    /// The asker.
    #[serde(default)]
    pub to_agent_id: String,
    /// The agent asked about.
    #[serde(default)]
    pub subject_agent_id: String,
    /// From the query.
    #[serde(default)]
    pub query_id: String,
    /// Whether the answerer has an opinion.
    #[serde(default)]
    pub has_impression: bool,
    /// Its score, -1..1, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// Signing time.
    #[serde(default)]
    pub timestamp: String,
    /// Signature over all of the above.
    #[serde(default)]
    pub dm_signature_hex: String,
}
