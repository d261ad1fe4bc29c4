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
