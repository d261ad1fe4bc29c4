//! What the model reads in tools/list about darkmatter_create_shard, darkmatter_view_shards (the
//! tools themselves are rows of [`super`]'s table).
//!
//! Shards are signed, trust-gated knowledge the node (proto-core) stores and syncs to peers.

/// Description of darkmatter_create_shard.
pub const CREATE_SHARD: &str = "Share a piece of knowledge with the mesh: a signed shard with content, tags (at least one) and an optional summary. \
It is pushed to every connected agent whose impression score is at least trust_threshold (0..1, default 0), and they can find it with darkmatter_view_shards.";

/// Description of darkmatter_view_shards.
pub const VIEW_SHARDS: &str = "Browse knowledge shards, your own and those peers shared with you. \
Filter by tags (any match; a tag also matches its sub-tags, so \"pool\" matches \"pool:llm\") and/or author (an agent_id).";
