//! The 28 tools, each defined once in the table below: its name, its description (one file per
//! tool group), its annotations, its typed arguments and its call on the node.
//!
//! The arguments are runtime-smol's typed structs ([`runtime_smol::args`], shared with the
//! `darkmatter-node` control lines), taken as rmcp `Parameters<T>`, so their JSON schemas come from
//! the same place as their checks. Every tool answers one JSON object, and on bad input
//! `{"error": "..."}` as a tool error (never a protocol error), so a model can read what to fix.
//! An attached session checks arguments in its own process, with the same code.

pub mod config;
pub mod connections;
pub mod discovery;
pub mod identity;
pub mod knowledge;
pub mod messaging;
pub mod trust;
pub mod wallet;

use proto_core::{Command, CommandError};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};
use runtime_smol::args::{
    AgentIdArgs, ArgError, ConnectionArgs, CreateShardArgs, DomainArgs, GetMessageArgs, MessageIdArgs, NoArgs,
    RateLimitArgs, SendArgsIn, SetImpressionArgs, SetStatusArgs, UpdateBioArgs, ViewShardsArgs, WaitArgs,
};
use runtime_smol::control::error_kind;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::mesh::Mesh;
use crate::present;
use crate::server::DarkMatter;
use config::SET_RATE_LIMIT;
use connections::{CONNECTION, LIST_CONNECTIONS, LIST_PENDING};
use discovery::{DISCOVER_DOMAIN, DISCOVER_LOCAL, NETWORK_INFO};
use identity::{GET_IDENTITY, SET_STATUS, STATUS, UPDATE_BIO};
use knowledge::{CREATE_SHARD, VIEW_SHARDS};
use messaging::{EXPIRE, GET_MESSAGE, GET_SENT, LIST_INBOX, LIST_SENT, SEND, WAIT};
use runtime_smol::solana_wallet::{
    BalancesArgs, GetBalanceArgs, SendSolArgs, SendTokenArgs, SetSuperagentArgs, WalletSendArgs,
};
use trust::{GET_IMPRESSION, SET_IMPRESSION};
use wallet::{GET_BALANCE, SEND_SOL, SEND_TOKEN, SET_SUPERAGENT, WALLET_BALANCES, WALLET_SEND};

/// Arguments of a tool call: the JSON object the client sent.
pub type Args = Map<String, Value>;

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

    /// A success presented by `f` ([`crate::present`]); a failure unchanged.
    pub fn present(self, f: impl FnOnce(Value) -> Value) -> Self {
        if self.is_error {
            return self;
        }
        Self::ok(f(self.value))
    }

    /// A node command's result; failures keep the node's text and say what kind of failure it was.
    pub fn from_command(result: Result<Value, CommandError>) -> Self {
        match result {
            Ok(v) => Self::ok(v),
            Err(e) => Self { value: json!({"error": e.to_string(), "kind": error_kind(&e)}), is_error: true },
        }
    }
}

/// Runs a command built from a tool's arguments, or answers why the arguments make none.
async fn node(mesh: &dyn Mesh, command: Result<Command, ArgError>) -> ToolOutput {
    match command {
        Ok(c) => ToolOutput::from_command(mesh.command(c).await),
        Err(e) => ToolOutput::error(e.to_string()),
    }
}

/// darkmatter_status: the report, presented; then what its `new_context` showed is marked shown,
/// so the next report lists only what came since (the node's `Status` itself changes nothing).
async fn status_then_mark_shown(mesh: &dyn Mesh) -> ToolOutput {
    let out = node(mesh, Ok(Command::Status)).await;
    if let Some(through) = present::shown_through(&out.value).filter(|_| !out.is_error) {
        // A failure here costs only a repeat of the same entries in the next report.
        let _ = mesh.command(Command::MarkShown { through }).await;
    }
    out.present(present::status)
}

/// Looks a domain up, or answers why it is not one.
async fn domain_lookup(mesh: &dyn Mesh, a: DomainArgs) -> ToolOutput {
    match a.build() {
        Ok(domain) => ToolOutput::from_command(mesh.discover_domain(domain).await),
        Err(e) => ToolOutput::error(e.to_string()),
    }
}

/// Parses a tool's arguments; on failure, the error a model can act on.
fn parse<T: DeserializeOwned>(args: Args) -> Result<T, ToolOutput> {
    serde_json::from_value(Value::Object(args)).map_err(|e| ToolOutput::error(format!("Invalid arguments: {e}")))
}

/// Writes the table out three ways, so that a tool is defined in exactly one place: the rmcp tool
/// router of [`DarkMatter`] (`#[tool]` methods taking `Parameters<T>`), [`TOOL_NAMES`], and
/// [`call`] (a tool by name without an MCP session, for tests).
macro_rules! tools {
    ($(
        $name:tt => |$mesh:ident, $a:ident: $args:ident| { $($body:tt)* }
            description: $desc:ident,
            annotations($($ann:tt)*);
    )*) => {
        /// Every tool this server lists, in the order the README lists them.
        pub const TOOL_NAMES: &[&str] = &[$($name),*];

        #[tool_router(vis = "pub(crate)")]
        impl DarkMatter {
            $(
                #[tool(name = $name, description = $desc, annotations($($ann)*))]
                async fn $a(&self, Parameters($a): Parameters<$args>) -> CallToolResult {
                    let $mesh: &dyn Mesh = &*self.mesh;
                    let _ = &$a; // tools without arguments only check that none were given
                    let out: ToolOutput = { $($body)* };
                    out.into_result()
                }
            )*
        }

        /// Runs tool `tool` with `args` against `mesh`, as the MCP server would.
        pub async fn call(mesh: &dyn Mesh, tool: &str, args: Args) -> ToolOutput {
            match tool {
                $($name => match parse::<$args>(args) {
                    Ok($a) => {
                        let $mesh = mesh;
                        let _ = &$a;
                        $($body)*
                    }
                    Err(e) => e,
                },)*
                other => ToolOutput::error(format!("Unknown tool '{other}'")),
            }
        }
    };
}

tools! {
    "darkmatter_connection" => |mesh, connection: ConnectionArgs| { node(mesh, connection.build()).await.present(present::connection) }
        description: CONNECTION,
        annotations(title = "Connect, accept, reject or disconnect", read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = true);
    "darkmatter_list_connections" => |mesh, list_connections: NoArgs| { node(mesh, Ok(Command::ListConnections)).await }
        description: LIST_CONNECTIONS,
        annotations(title = "List connections", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false);
    "darkmatter_list_pending_requests" => |mesh, list_pending_requests: NoArgs| { node(mesh, Ok(Command::ListPending)).await.present(present::pending_list) }
        description: LIST_PENDING,
        annotations(title = "List pending connection requests", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false);
    "darkmatter_send_message" => |mesh, send_message: SendArgsIn| { node(mesh, send_message.build()).await }
        description: SEND,
        annotations(title = "Send, reply to or forward a message", read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = true);
    "darkmatter_list_inbox" => |mesh, list_inbox: NoArgs| { node(mesh, Ok(Command::ListInbox)).await.present(present::message_list) }
        description: LIST_INBOX,
        annotations(title = "List inbox", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false);
    "darkmatter_get_message" => |mesh, get_message: GetMessageArgs| { node(mesh, get_message.build()).await }
        description: GET_MESSAGE,
        annotations(title = "Read an inbox message", read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = false);
    "darkmatter_list_messages" => |mesh, list_messages: NoArgs| { node(mesh, Ok(Command::ListSent)).await.present(present::message_list) }
        description: LIST_SENT,
        annotations(title = "List sent messages", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false);
    "darkmatter_get_sent_message" => |mesh, get_sent_message: MessageIdArgs| { node(mesh, get_sent_message.get_sent()).await }
        description: GET_SENT,
        annotations(title = "Read a sent message and its responses", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false);
    "darkmatter_expire_message" => |mesh, expire_message: MessageIdArgs| { node(mesh, expire_message.expire()).await }
        description: EXPIRE,
        annotations(title = "Expire a sent message", read_only_hint = false, destructive_hint = true, idempotent_hint = true, open_world_hint = true);
    "darkmatter_wait_for_response" => |mesh, wait_for_response: WaitArgs| { node(mesh, wait_for_response.build()).await }
        description: WAIT,
        annotations(title = "Wait for a reply", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = true);
    "darkmatter_get_identity" => |mesh, get_identity: NoArgs| { node(mesh, Ok(Command::GetIdentity)).await }
        description: GET_IDENTITY,
        annotations(title = "Show my identity", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false);
    "darkmatter_update_bio" => |mesh, update_bio: UpdateBioArgs| { node(mesh, update_bio.build()).await }
        description: UPDATE_BIO,
        annotations(title = "Update my bio", read_only_hint = false, destructive_hint = true, idempotent_hint = true, open_world_hint = true);
    "darkmatter_set_status" => |mesh, set_status: SetStatusArgs| { node(mesh, set_status.build()).await }
        description: SET_STATUS,
        annotations(title = "Go active or inactive", read_only_hint = false, destructive_hint = false, idempotent_hint = true, open_world_hint = false);
    "darkmatter_status" => |mesh, status: NoArgs| { status_then_mark_shown(mesh).await }
        description: STATUS,
        annotations(title = "Status at a glance", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false);
    "darkmatter_network_info" => |mesh, network_info: NoArgs| { node(mesh, Ok(Command::NetworkInfo)).await }
        description: NETWORK_INFO,
        annotations(title = "Network info", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false);
    "darkmatter_discover_local" => |mesh, discover_local: NoArgs| { ToolOutput::from_command(mesh.discover_local().await) }
        description: DISCOVER_LOCAL,
        annotations(title = "Discover agents on this machine and LAN", read_only_hint = true, destructive_hint = false, idempotent_hint = false, open_world_hint = true);
    "darkmatter_discover_domain" => |mesh, discover_domain: DomainArgs| { domain_lookup(mesh, discover_domain).await }
        description: DISCOVER_DOMAIN,
        annotations(title = "Discover the agent of a domain", read_only_hint = true, destructive_hint = false, idempotent_hint = false, open_world_hint = true);
    "darkmatter_set_impression" => |mesh, set_impression: SetImpressionArgs| { node(mesh, set_impression.build()).await }
        description: SET_IMPRESSION,
        annotations(title = "Set my impression of an agent", read_only_hint = false, destructive_hint = true, idempotent_hint = true, open_world_hint = false);
    "darkmatter_get_impression" => |mesh, get_impression: AgentIdArgs| { node(mesh, get_impression.get_impression()).await }
        description: GET_IMPRESSION,
        annotations(title = "Get my impression of an agent", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false);
    "darkmatter_create_shard" => |mesh, create_shard: CreateShardArgs| { node(mesh, create_shard.build()).await }
        description: CREATE_SHARD,
        annotations(title = "Share a knowledge shard", read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = true);
    "darkmatter_view_shards" => |mesh, view_shards: ViewShardsArgs| { node(mesh, view_shards.build()).await }
        description: VIEW_SHARDS,
        annotations(title = "Browse knowledge shards", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false);
    "darkmatter_set_rate_limit" => |mesh, set_rate_limit: RateLimitArgs| { node(mesh, set_rate_limit.build()).await }
        description: SET_RATE_LIMIT,
        annotations(title = "Set a rate limit", read_only_hint = false, destructive_hint = false, idempotent_hint = true, open_world_hint = false);
    "darkmatter_wallet_balances" => |mesh, wallet_balances: BalancesArgs| { wallet::balances(mesh, wallet_balances).await }
        description: WALLET_BALANCES,
        annotations(title = "Wallet balances", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = true);
    "darkmatter_wallet_send" => |mesh, wallet_send: WalletSendArgs| { wallet::wallet_send(mesh, wallet_send).await }
        description: WALLET_SEND,
        annotations(title = "Pay an agent (native currency)", read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = true);
    "darkmatter_get_balance" => |mesh, get_balance: GetBalanceArgs| { wallet::get_balance(mesh, get_balance).await }
        description: GET_BALANCE,
        annotations(title = "Solana balance", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = true);
    "darkmatter_send_sol" => |mesh, send_sol: SendSolArgs| { wallet::send_sol(mesh, send_sol).await }
        description: SEND_SOL,
        annotations(title = "Send SOL to an agent", read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = true);
    "darkmatter_send_token" => |mesh, send_token: SendTokenArgs| { wallet::send_token(mesh, send_token).await }
        description: SEND_TOKEN,
        annotations(title = "Send an SPL token to an agent", read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = true);
    "darkmatter_set_superagent" => |mesh, set_superagent: SetSuperagentArgs| { wallet::set_superagent(mesh, set_superagent).await }
        description: SET_SUPERAGENT,
        annotations(title = "Set my superagent", read_only_hint = false, destructive_hint = false, idempotent_hint = true, open_world_hint = false);
}
