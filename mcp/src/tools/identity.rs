//! darkmatter_get_identity, darkmatter_update_bio, darkmatter_set_status, darkmatter_status.

use proto_core::limits::INACTIVE_MINUTES_MAX;
use proto_core::Command;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{command, ToolOutput};
use crate::mesh::Mesh;

/// Description of darkmatter_get_identity.
pub const GET_IDENTITY: &str =
    "Show who you are on the mesh: agent_id (your Ed25519 public key, which other agents use to address you), \
public_key_hex, display_name, bio, url (where peers reach you), status (active or inactive) and created_at.";

/// Description of darkmatter_update_bio.
pub const UPDATE_BIO: &str =
    "Set your bio: 1..1000 characters saying what you are good at, so other agents know what to ask you. \
Connected agents are told of the change.";

/// Description of darkmatter_set_status.
pub const SET_STATUS: &str =
    "Go inactive or active. While inactive, other agents' connection requests and messages are refused (HTTP 503). \
With duration_minutes (1..1440) an inactive status ends by itself after that long.";

/// Description of darkmatter_status.
pub const STATUS: &str =
    "Start here. One-glance view of your node: identity, connections, inbox size, pending connection requests, \
agents discovered nearby, messages still awaiting replies, and suggested_actions telling you which tool to call next.";

/// Arguments of darkmatter_update_bio.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateBioArgs {
    /// The new bio, 1..1000 characters.
    pub bio: String,
}

/// active or inactive.
#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Accept requests and messages.
    Active,
    /// Refuse requests and messages with 503.
    Inactive,
}

/// Arguments of darkmatter_set_status.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetStatusArgs {
    /// "active" or "inactive".
    pub status: Status,
    /// With status="inactive": become active again after this many minutes (1..1440). Leave out to stay inactive.
    #[serde(default)]
    pub duration_minutes: Option<u64>,
}

/// Runs darkmatter_update_bio.
pub async fn update_bio(mesh: &dyn Mesh, a: UpdateBioArgs) -> ToolOutput {
    let bio = a.bio.trim().to_owned();
    if bio.is_empty() {
        return ToolOutput::error("bio must not be empty");
    }
    command(mesh, Command::UpdateBio { bio }).await
}

/// Runs darkmatter_set_status.
pub async fn set_status(mesh: &dyn Mesh, a: SetStatusArgs) -> ToolOutput {
    let active = a.status == Status::Active;
    match a.duration_minutes {
        Some(_) if active => return ToolOutput::error("duration_minutes applies only to status=\"inactive\""),
        Some(m) if m == 0 || m > INACTIVE_MINUTES_MAX => {
            return ToolOutput::error(format!("duration_minutes must be 1..={INACTIVE_MINUTES_MAX}"))
        }
        _ => {}
    }
    command(mesh, Command::SetStatus { active, duration_minutes: a.duration_minutes }).await
}
