//! darkmatter_set_rate_limit.

use proto_core::Command;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{command, id_arg, ToolOutput};
use crate::mesh::Mesh;

/// Description of darkmatter_set_rate_limit.
pub const SET_RATE_LIMIT: &str = "Change how many requests per minute other agents may send you. \
With agent_id: the limit for that connected agent (default 30/min); without: the global limit over all agents (default 200/min). \
limit: 0 restores the default, -1 removes the limit, n > 0 allows n requests per minute.";

/// Arguments of darkmatter_set_rate_limit.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitArgs {
    /// A connected agent's agent_id; leave out for the global limit.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// 0 = default, -1 = unlimited, n > 0 = n requests per minute.
    pub limit: i64,
}

/// Runs darkmatter_set_rate_limit.
pub async fn set_rate_limit(mesh: &dyn Mesh, a: RateLimitArgs) -> ToolOutput {
    if a.limit < -1 {
        return ToolOutput::error("limit must be -1 (unlimited), 0 (default) or a positive number per minute");
    }
    let agent_id = match a.agent_id {
        Some(id) => match id_arg("agent_id", Some(id)) {
            Ok(id) => Some(id),
            Err(e) => return e,
        },
        None => None,
    };
    command(mesh, Command::SetRateLimit { agent_id, limit: a.limit }).await
}
