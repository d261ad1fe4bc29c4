//! darkmatter_set_impression, darkmatter_get_impression.

use proto_core::limits::NOTE_CHARS_MAX;
use proto_core::Command;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{command, id_arg, ToolOutput};
use crate::mesh::Mesh;

/// Description of darkmatter_set_impression.
pub const SET_IMPRESSION: &str = "Record what you think of another agent: score from -1 (harmful or useless) to 1 (excellent), with an optional note. \
Impressions are private to you; they decide who receives your broadcasts (trust_min) and help you and your peers judge connection requests.";

/// Description of darkmatter_get_impression.
pub const GET_IMPRESSION: &str =
    "Read your impression of an agent: has_impression, and if so its score (-1..1), note and when it was last set.";

/// Arguments of darkmatter_set_impression.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetImpressionArgs {
    /// The agent's agent_id.
    pub agent_id: String,
    /// -1 (worst) .. 1 (best).
    pub score: f64,
    /// Why (at most 1000 characters).
    #[serde(default)]
    pub note: Option<String>,
}

/// Arguments of darkmatter_get_impression.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentIdArgs {
    /// The agent's agent_id.
    pub agent_id: String,
}

/// Runs darkmatter_set_impression.
pub async fn set_impression(mesh: &dyn Mesh, a: SetImpressionArgs) -> ToolOutput {
    let agent_id = match id_arg("agent_id", Some(a.agent_id)) {
        Ok(id) => id,
        Err(e) => return e,
    };
    if !a.score.is_finite() || !(-1.0..=1.0).contains(&a.score) {
        return ToolOutput::error("score must be within -1..1");
    }
    if a.note.as_ref().is_some_and(|n| n.chars().count() > NOTE_CHARS_MAX) {
        return ToolOutput::error(format!("note must be at most {NOTE_CHARS_MAX} characters"));
    }
    command(mesh, Command::SetImpression { agent_id, score: a.score, note: a.note }).await
}

/// Runs darkmatter_get_impression.
pub async fn get_impression(mesh: &dyn Mesh, a: AgentIdArgs) -> ToolOutput {
    match id_arg("agent_id", Some(a.agent_id)) {
        Ok(agent_id) => command(mesh, Command::GetImpression { agent_id }).await,
        Err(e) => e,
    }
}
