//! The 22 tools: their arguments (with JSON schemas), descriptions, and what each one asks the node.
//!
//! One file per tool group. Every tool takes flat arguments, answers with one JSON object, and on bad
//! input answers `{"error": "..."}` as a tool error (never a protocol error), so a model can read what
//! to fix. Argument parsing happens here, on the node's side, so an attached session gets exactly
//! the same checks as the session that owns the node.

pub mod config;
pub mod connections;
pub mod discovery;
pub mod identity;
pub mod knowledge;
pub mod messaging;
pub mod trust;

use std::future::Future;

use proto_core::{Command, CommandError};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::mesh::Mesh;

/// Arguments of a tool call: the JSON object the client sent.
pub type Args = Map<String, Value>;

/// Every tool this server lists, in the order the README lists them. The six wallet tools come later.
pub const TOOL_NAMES: [&str; 22] = [
    "darkmatter_connection",
    "darkmatter_list_connections",
    "darkmatter_list_pending_requests",
    "darkmatter_send_message",
    "darkmatter_list_inbox",
    "darkmatter_get_message",
    "darkmatter_list_messages",
    "darkmatter_get_sent_message",
    "darkmatter_expire_message",
    "darkmatter_wait_for_response",
    "darkmatter_get_identity",
    "darkmatter_update_bio",
    "darkmatter_set_status",
    "darkmatter_status",
    "darkmatter_network_info",
    "darkmatter_discover_local",
    "darkmatter_discover_domain",
    "darkmatter_set_impression",
    "darkmatter_get_impression",
    "darkmatter_create_shard",
    "darkmatter_view_shards",
    "darkmatter_set_rate_limit",
];

/// What a tool answers: one JSON object, and whether it is an error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolOutput {
    /// The object (on error it has an `error` field).
    pub value: Value,
    /// True when the call failed.
    pub is_error: bool,
}

impl ToolOutput {
    /// A success.
    pub fn ok(value: Value) -> Self {
        Self { value, is_error: false }
    }

    /// A failure with this text as `error`.
    pub fn error(text: impl Into<String>) -> Self {
        Self { value: json!({"error": text.into()}), is_error: true }
    }

    /// A node command's result; failures keep the node's text and say what kind of failure it was.
    pub fn from_command(result: Result<Value, CommandError>) -> Self {
        match result {
            Ok(v) => Self::ok(v),
            Err(e) => {
                let kind = match &e {
                    CommandError::InvalidArgument(_) => "invalid_argument",
                    CommandError::NotFound(_) => "not_found",
                    CommandError::Limited(_) => "limited",
                    CommandError::Peer(_) => "peer",
                };
                Self { value: json!({"error": e.to_string(), "kind": kind}), is_error: true }
            }
        }
    }
}

/// Arguments of a tool that takes none (unknown arguments are refused, not ignored).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

/// Parses the arguments; on failure, the error a model can act on.
pub(crate) fn parse<T: DeserializeOwned>(args: Args) -> Result<T, ToolOutput> {
    serde_json::from_value(Value::Object(args)).map_err(|e| ToolOutput::error(format!("Invalid arguments: {e}")))
}

/// A required identifier argument: trimmed, non-empty, at most 256 bytes, one line.
pub(crate) fn id_arg(name: &str, value: Option<String>) -> Result<String, ToolOutput> {
    let v = value.map(|s| s.trim().to_owned()).unwrap_or_default();
    if v.is_empty() {
        return Err(ToolOutput::error(format!("{name} is required")));
    }
    if v.len() > 256 || v.contains('\n') {
        return Err(ToolOutput::error(format!("{name} is not a valid identifier")));
    }
    Ok(v)
}

/// Runs a command and wraps its result.
pub(crate) async fn command(mesh: &dyn Mesh, c: Command) -> ToolOutput {
    ToolOutput::from_command(mesh.command(c).await)
}

async fn run<A, F, Fut>(args: Args, f: F) -> ToolOutput
where
    A: DeserializeOwned,
    F: FnOnce(A) -> Fut,
    Fut: Future<Output = ToolOutput>,
{
    match parse::<A>(args) {
        Ok(a) => f(a).await,
        Err(e) => e,
    }
}

/// Runs tool `tool` with `args` against `mesh`.
pub async fn call(mesh: &dyn Mesh, tool: &str, args: Args) -> ToolOutput {
    match tool {
        "darkmatter_connection" => run(args, |a| connections::connection(mesh, a)).await,
        "darkmatter_list_connections" => run(args, |NoArgs {}| command(mesh, Command::ListConnections)).await,
        "darkmatter_list_pending_requests" => run(args, |NoArgs {}| command(mesh, Command::ListPending)).await,
        "darkmatter_send_message" => run(args, |a| messaging::send(mesh, a)).await,
        "darkmatter_list_inbox" => run(args, |NoArgs {}| command(mesh, Command::ListInbox)).await,
        "darkmatter_get_message" => run(args, |a| messaging::get_message(mesh, a)).await,
        "darkmatter_list_messages" => run(args, |NoArgs {}| command(mesh, Command::ListSent)).await,
        "darkmatter_get_sent_message" => run(args, |a| messaging::get_sent(mesh, a)).await,
        "darkmatter_expire_message" => run(args, |a| messaging::expire(mesh, a)).await,
        "darkmatter_wait_for_response" => run(args, |a| messaging::wait(mesh, a)).await,
        "darkmatter_get_identity" => run(args, |NoArgs {}| command(mesh, Command::GetIdentity)).await,
        "darkmatter_update_bio" => run(args, |a| identity::update_bio(mesh, a)).await,
        "darkmatter_set_status" => run(args, |a| identity::set_status(mesh, a)).await,
        "darkmatter_status" => run(args, |NoArgs {}| command(mesh, Command::Status)).await,
        "darkmatter_network_info" => run(args, |NoArgs {}| command(mesh, Command::NetworkInfo)).await,
        "darkmatter_discover_local" => run(args, |NoArgs {}| discovery::local(mesh)).await,
        "darkmatter_discover_domain" => run(args, |a| discovery::domain(mesh, a)).await,
        "darkmatter_set_impression" => run(args, |a| trust::set_impression(mesh, a)).await,
        "darkmatter_get_impression" => run(args, |a| trust::get_impression(mesh, a)).await,
        "darkmatter_create_shard" => run(args, |a| knowledge::create_shard(mesh, a)).await,
        "darkmatter_view_shards" => run(args, |a| knowledge::view_shards(mesh, a)).await,
        "darkmatter_set_rate_limit" => run(args, |a| config::set_rate_limit(mesh, a)).await,
        other => ToolOutput::error(format!("Unknown tool '{other}'")),
    }
}
