//! darkmatter_create_shard, darkmatter_view_shards.
//!
//! Shards are signed, trust-gated knowledge the node (proto-core) stores and syncs to peers.

use proto_core::{Command, ShardArgs};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{command, ToolOutput};
use crate::mesh::Mesh;

/// Description of darkmatter_create_shard.
pub const CREATE_SHARD: &str = "Share a piece of knowledge with the mesh: a signed shard with content, tags (at least one) and an optional summary. \
It is pushed to every connected agent whose impression score is at least trust_threshold (0..1, default 0), and they can find it with darkmatter_view_shards.";

/// Description of darkmatter_view_shards.
pub const VIEW_SHARDS: &str = "Browse knowledge shards, your own and those peers shared with you. \
Filter by tags (any match; a tag also matches its sub-tags, so \"pool\" matches \"pool:llm\") and/or author (an agent_id).";

/// Arguments of darkmatter_create_shard.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateShardArgs {
    /// The knowledge itself (1..65536 characters).
    pub content: String,
    /// At least one tag, e.g. ["weather", "pool:llm"].
    pub tags: Vec<String>,
    /// Only agents you rate at least this (0..1) receive it; default 0.
    #[serde(default)]
    pub trust_threshold: Option<f64>,
    /// A one-line summary (at most 1000 characters).
    #[serde(default)]
    pub summary: Option<String>,
}

/// Arguments of darkmatter_view_shards.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ViewShardsArgs {
    /// Only shards with any of these tags (prefix match on ":"-separated tags).
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Only shards by this agent_id.
    #[serde(default)]
    pub author: Option<String>,
}

/// Runs darkmatter_create_shard.
pub async fn create_shard(mesh: &dyn Mesh, a: CreateShardArgs) -> ToolOutput {
    if a.content.trim().is_empty() || a.content.chars().count() > proto_core::limits::CONTENT_CHARS_MAX {
        return ToolOutput::error("content must be 1..=65536 characters");
    }
    if a.tags.is_empty() || a.tags.iter().any(|t| t.trim().is_empty()) {
        return ToolOutput::error("tags must hold at least one non-empty tag");
    }
    if let Some(t) = a.trust_threshold {
        if !t.is_finite() || !(0.0..=1.0).contains(&t) {
            return ToolOutput::error("trust_threshold must be within 0..1");
        }
    }
    if a.summary.as_ref().is_some_and(|s| s.chars().count() > proto_core::limits::NOTE_CHARS_MAX) {
        return ToolOutput::error("summary must be at most 1000 characters");
    }
    let args = ShardArgs {
        content: a.content,
        tags: a.tags,
        trust_threshold: a.trust_threshold.unwrap_or(0.0),
        summary: a.summary,
    };
    command(mesh, Command::CreateShard(args)).await
}

/// Runs darkmatter_view_shards.
pub async fn view_shards(mesh: &dyn Mesh, a: ViewShardsArgs) -> ToolOutput {
    let author = match a.author.map(|s| s.trim().to_owned()) {
        Some(s) if s.is_empty() => return ToolOutput::error("author must not be empty"),
        other => other,
    };
    command(mesh, Command::ViewShards { tags: a.tags.unwrap_or_default(), author }).await
}
