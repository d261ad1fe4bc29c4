//! What the model reads in tools/list about darkmatter_get_identity, darkmatter_update_bio,
//! darkmatter_set_status, darkmatter_status (the tools themselves are rows of [`super`]'s table).

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
