//! The headless binary's local control: one JSON object per line in, one per line out.
//!
//! A request is `{"cmd": NAME, ...arguments, "id"?: any}`; the answer echoes `id` and is
//! `{"ok": true, "result": {...}}` or `{"ok": false, "error": "..."}` (with `"kind"` when the node refused:
//! `invalid_argument`, `not_found`, `limited`, `peer`). The arguments are read into the typed structs of
//! [`crate::args`], the same ones the MCP tools take, so both front ends share every default and
//! limit; unknown arguments are refused. Names and arguments:
//!
//! | cmd | arguments |
//! |---|---|
//! | `connect` | `target_url` |
//! | `accept`, `reject` | `request_id` |
//! | `disconnect` | `agent_id` |
//! | `send` | `content`; `target_agent_id` or `target_agent_ids` or `broadcast: true` (+ `trust_min`); `metadata`, `in_reply_to`, `hops_remaining` |
//! | `forward` | `message_id`; `target_agent_id` or `target_agent_ids`; `note` |
//! | `get_message` | `message_id`, `consume` (default false) |
//! | `get_sent`, `expire_sent` | `message_id` |
//! | `wait_for_response` | `message_id`, `timeout_ms` (default 60000) |
//! | `update_bio` | `bio` |
//! | `rename` | `display_name` (trimmed; the node checks its length) |
//! | `set_spawning` | `enabled` (a local switch of the node's agent spawning; never taken from a spawned agent) |
//! | `set_sandbox` | `on`: the spawned agents' sandbox, answered only where the spawner runs (the MCP server's process) |
//! | `set_status` | `active`, `duration_minutes` |
//! | `set_impression` | `agent_id`, `score`, `note` |
//! | `get_impression` | `agent_id` |
//! | `set_rate_limit` | `limit` (0 default, -1 unlimited, n per minute), `agent_id` (absent = global) |
//! | `mark_shown` | `through` (the newest `new_context` `seq` of a `status`, which itself never changes state) |
//! | `create_shard` | `content`, `tags`, `trust_threshold`, `summary` |
//! | `view_shards` | `tags`, `author` |
//! | `discover_domain` | `domain` |
//! | `list_connections`, `list_pending`, `list_inbox`, `list_sent`, `identity`, `status`, `network_info`, `list_discovered`, `discover_local`, `announce`, `shutdown` | none |
//! | `pool_create` | `name`, `tags`, `description`, `price_token` (`SOL` or a mint), `price_decimals` (a mint's) |
//! | `pool_add_provider` | `pool_id`, `base_url` (https), `credential_header`, `credential_value` (sealed at once, never answered), `allowed_paths`, `allow_query`, `allowed_headers`, `price_per_call` (decimal text), `handler` (`passthrough`, `llm-tokens` with `input_per_1k`, `output_per_1k`), `charge_client_errors` |
//! | `pool_set_provider` | `pool_id`, `provider_id`, `enabled` |
//! | `pool_revoke` | `token_id` |
//! | `pool_list` | none |
//! | `pool_publish` | `pool_id` (a shard tagged `pool:*`) |
//! | `pool_buy` | `owner`, `pool_id`, `amount`, `token`; pays on-chain (spending limit applies) unless `tx_signature` names a payment made, then asks the owner to credit it |
//! | `pool_call` | `owner`, `pool_id`, `token_id`, `method`, `path`, `headers`, `body` |
//! | `pool_info` | `owner`, `pool_id` |
//! | `wallet` | `op` (`balances`, `get_balance`, `send_sol`, `send_token`, `set_superagent`) and its fields: the node's own wallet (spending off until `DARKMATTER_WALLET_SPEND_LIMIT` is set; refused to spawned sessions) |
//!
//! `connect`/`accept`/`reject`/`disconnect` are darkmatter_connection's four actions and `send`/
//! `forward` are darkmatter_send_message (so `send` takes `target_agent_id` and `target_agent_ids`
//! together, and refuses `broadcast` with targets); only `wait_for_response` (`timeout_ms`) and
//! `set_status` (`active`) keep argument shapes of their own, checked by the same functions.

use proto_core::{Command, CommandError, ForwardArgs, SendArgs, ShardArgs, Targets};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use thiserror::Error;

use crate::args::{
    self, AgentIdArgs, ArgError, ConnectionArgs, CreateShardArgs, DomainArgs, GetMessageArgs, MessageIdArgs, NoArgs,
    RateLimitArgs, SendArgsIn, SetImpressionArgs, UpdateBioArgs, ViewShardsArgs,
};
use crate::handle::Mesh;

pub use crate::args::WAIT_TIMEOUT_MS_DEFAULT;

/// What one control line asks for.
#[derive(Debug, PartialEq)]
pub enum Request {
    /// A node command.
    Node(Command),
    /// Scan localhost.
    DiscoverLocal,
    /// Fetch a domain's card.
    DiscoverDomain(String),
    /// Send a LAN beacon now.
    Announce,
    /// Switch the spawned agents' sandbox on or off.
    SetSandbox(bool),
    /// Stop the node.
    Shutdown,
    /// A wallet operation (the line's other fields are the call, tagged by `op`).
    Wallet(crate::solana_wallet::WalletCall),
    /// Buy credit in a connection's pool: pay it on-chain (unless `tx_signature` names a payment
    /// already made), then ask the owner to credit it.
    PoolBuy(PoolBuyArgs),
}

/// `pool_buy`'s arguments.
#[derive(Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolBuyArgs {
    /// The pool's owner (a connection).
    pub owner: String,
    /// The pool.
    pub pool_id: String,
    /// Decimal text in the pool's asset.
    pub amount: String,
    /// `SOL` (default) or the pool's mint.
    #[serde(default)]
    pub token: Option<String>,
    /// A payment already made (skips paying).
    #[serde(default)]
    pub tx_signature: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolCreateArgs {
    name: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    price_token: Option<String>,
    #[serde(default)]
    price_decimals: Option<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolSetProviderArgs {
    pool_id: String,
    provider_id: String,
    enabled: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolTokenArgs {
    token_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolIdArgs {
    pool_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolInfoArgs {
    owner: String,
    pool_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolCallArgs {
    owner: String,
    pool_id: String,
    token_id: String,
    #[serde(default = "get_method")]
    method: String,
    path: String,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    body: Option<String>,
}

fn get_method() -> String {
    "GET".to_owned()
}

/// The pool owner's commands and the consumer's calls: local lines only (never the peer port, and
/// never carried over the attach socket, see [`line`]).
fn pool_request(cmd: &str, args: Map<String, Value>) -> Result<Option<Request>, LineError> {
    use proto_core::pool::PoolCommand as P;
    let pool = |c: P| Some(Request::Node(Command::Pool(Box::new(c))));
    Ok(match cmd {
        "pool_create" => {
            let a = typed::<PoolCreateArgs>(args)?;
            pool(P::Create {
                name: a.name,
                tags: a.tags,
                description: a.description,
                price_token: a.price_token,
                price_decimals: a.price_decimals,
            })
        }
        "pool_add_provider" => pool(P::AddProvider(Box::new(typed::<proto_core::pool::AddProviderArgs>(args)?))),
        "pool_set_provider" => {
            let a = typed::<PoolSetProviderArgs>(args)?;
            pool(P::SetProvider { pool_id: a.pool_id, provider_id: a.provider_id, enabled: a.enabled })
        }
        "pool_revoke" => pool(P::Revoke { token_id: typed::<PoolTokenArgs>(args)?.token_id }),
        "pool_list" => {
            typed::<NoArgs>(args)?;
            pool(P::List)
        }
        "pool_publish" => pool(P::Publish { pool_id: typed::<PoolIdArgs>(args)?.pool_id }),
        "pool_info" => {
            let a = typed::<PoolInfoArgs>(args)?;
            pool(P::Info { owner: a.owner, pool_id: a.pool_id })
        }
        "pool_call" => {
            let a = typed::<PoolCallArgs>(args)?;
            pool(P::Call {
                owner: a.owner,
                pool_id: a.pool_id,
                token_id: a.token_id,
                method: a.method,
                path: a.path,
                headers: a.headers,
                body: a.body,
            })
        }
        "pool_buy" => Some(Request::PoolBuy(typed::<PoolBuyArgs>(args)?)),
        _ => None,
    })
}

/// Why a control line is refused.
#[derive(Debug, Error)]
pub enum LineError {
    /// The line is not a JSON object.
    #[error("a control line must be a JSON object")]
    NotAnObject,
    /// `cmd` is missing or not a string.
    #[error("'cmd' is required and must be a string")]
    NoCmd,
    /// `cmd` names no command.
    #[error("unknown cmd '{0}'")]
    Unknown(String),
    /// An argument is missing, of the wrong type, or not one the command takes.
    #[error("{0}")]
    Shape(#[from] serde_path_to_error::Error<serde_json::Error>),
    /// The arguments are well-formed but make no command.
    #[error("{0}")]
    Args(#[from] ArgError),
}

/// `wait_for_response` takes milliseconds on a control line (the MCP tool takes seconds).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitMsArgs {
    message_id: String,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

/// `mark_shown` takes the newest conversation `seq` a status report showed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MarkShownArgs {
    through: u64,
}

/// `rename` takes the new display name (no MCP tool: a person renames from the WormHole page).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenameArgs {
    display_name: String,
}

/// `set_spawning` takes `enabled: bool`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetSpawningArgs {
    enabled: bool,
}

/// `set_sandbox` takes `on: bool`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetSandboxArgs {
    on: bool,
}

/// `set_status` takes `active: bool` on a control line (the MCP tool takes `status`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetActiveArgs {
    active: bool,
    #[serde(default)]
    duration_minutes: Option<u64>,
}

fn typed<T: DeserializeOwned>(args: Map<String, Value>) -> Result<T, LineError> {
    Ok(serde_path_to_error::deserialize(Value::Object(args))?)
}

/// Parses one control line.
pub fn parse(line: &Value) -> Result<Request, String> {
    let obj = line.as_object().ok_or(LineError::NotAnObject).map_err(|e| e.to_string())?;
    let Some(Value::String(cmd)) = obj.get("cmd") else { return Err(LineError::NoCmd.to_string()) };
    let mut args = obj.clone();
    args.remove("cmd");
    args.remove("id");
    request(cmd, args).map_err(|e| e.to_string())
}

/// `connect`, `accept`, `reject` and `disconnect` are darkmatter_connection's four actions.
fn connection(mut args: Map<String, Value>, action: &str) -> Result<Request, LineError> {
    args.insert("action".to_owned(), Value::from(action));
    Ok(Request::Node(typed::<ConnectionArgs>(args)?.build()?))
}

fn request(cmd: &str, args: Map<String, Value>) -> Result<Request, LineError> {
    if cmd.starts_with("pool_") {
        return pool_request(cmd, args)?.ok_or_else(|| LineError::Unknown(cmd.to_owned()));
    }
    let plain = |args: Map<String, Value>, r: Request| typed::<NoArgs>(args).map(|NoArgs {}| r);
    let node = |c: Command| Request::Node(c);
    match cmd {
        "connect" => connection(args, "request"),
        "accept" => connection(args, "accept"),
        "reject" => connection(args, "reject"),
        "disconnect" => connection(args, "disconnect"),
        "send" => Ok(node(typed::<SendArgsIn>(args)?.build()?)),
        "forward" if !args.contains_key("message_id") => Err(ArgError::Required("message_id").into()),
        "forward" => Ok(node(typed::<SendArgsIn>(args)?.build()?)),
        "get_message" => Ok(node(typed::<GetMessageArgs>(args)?.build()?)),
        "get_sent" => Ok(node(typed::<MessageIdArgs>(args)?.get_sent()?)),
        "expire_sent" => Ok(node(typed::<MessageIdArgs>(args)?.expire()?)),
        "wait_for_response" => {
            let a = typed::<WaitMsArgs>(args)?;
            Ok(node(args::wait(a.message_id, a.timeout_ms)?))
        }
        "update_bio" => Ok(node(typed::<UpdateBioArgs>(args)?.build()?)),
        "rename" => {
            Ok(node(Command::Rename { display_name: typed::<RenameArgs>(args)?.display_name.trim().to_owned() }))
        }
        "set_status" => {
            let a = typed::<SetActiveArgs>(args)?;
            Ok(node(args::set_status(a.active, a.duration_minutes)?))
        }
        "set_spawning" => Ok(node(Command::SetSpawning { enabled: typed::<SetSpawningArgs>(args)?.enabled })),
        "set_sandbox" => Ok(Request::SetSandbox(typed::<SetSandboxArgs>(args)?.on)),
        "set_impression" => Ok(node(typed::<SetImpressionArgs>(args)?.build()?)),
        "get_impression" => Ok(node(typed::<AgentIdArgs>(args)?.get_impression()?)),
        "set_rate_limit" => Ok(node(typed::<RateLimitArgs>(args)?.build()?)),
        "create_shard" => Ok(node(typed::<CreateShardArgs>(args)?.build()?)),
        "view_shards" => Ok(node(typed::<ViewShardsArgs>(args)?.build()?)),
        "discover_domain" => Ok(Request::DiscoverDomain(typed::<DomainArgs>(args)?.build()?)),
        "list_connections" => plain(args, node(Command::ListConnections)),
        "list_pending" => plain(args, node(Command::ListPending)),
        "list_inbox" => plain(args, node(Command::ListInbox)),
        "list_sent" => plain(args, node(Command::ListSent)),
        "identity" => plain(args, node(Command::GetIdentity)),
        "status" => plain(args, node(Command::Status)),
        "mark_shown" => Ok(node(Command::MarkShown { through: typed::<MarkShownArgs>(args)?.through })),
        "network_info" => plain(args, node(Command::NetworkInfo)),
        "antimatter_log" => plain(args, node(Command::AntiMatterLog)),
        "list_discovered" => plain(args, node(Command::ListDiscovered)),
        "discover_local" => plain(args, Request::DiscoverLocal),
        "announce" => plain(args, Request::Announce),
        "shutdown" => plain(args, Request::Shutdown),
        "wallet" => Ok(Request::Wallet(typed::<crate::solana_wallet::WalletCall>(args)?)),
        other => Err(LineError::Unknown(other.to_owned())),
    }
}

/// The control line that [`parse`] reads back as `Request::Node(command)`: how a command crosses a
/// process boundary (the `darkmatter` attach socket speaks this protocol). `None` for the commands
/// the line protocol does not carry.
pub fn line(command: &Command) -> Option<Value> {
    Some(match command {
        Command::Connect { target_url } => json!({"cmd": "connect", "target_url": target_url}),
        Command::Accept { request_id } => json!({"cmd": "accept", "request_id": request_id}),
        Command::Reject { request_id } => json!({"cmd": "reject", "request_id": request_id}),
        Command::Disconnect { agent_id } => json!({"cmd": "disconnect", "agent_id": agent_id}),
        Command::ListConnections => json!({"cmd": "list_connections"}),
        Command::ListPending => json!({"cmd": "list_pending"}),
        Command::Send(s) => send_line(s),
        Command::Forward(ForwardArgs { message_id, targets, note }) => {
            json!({"cmd": "forward", "message_id": message_id, "target_agent_ids": targets, "note": note})
        }
        Command::ListInbox => json!({"cmd": "list_inbox"}),
        Command::GetMessage { message_id, consume } => {
            json!({"cmd": "get_message", "message_id": message_id, "consume": consume})
        }
        Command::ListSent => json!({"cmd": "list_sent"}),
        Command::GetSent { message_id } => json!({"cmd": "get_sent", "message_id": message_id}),
        Command::ExpireSent { message_id } => json!({"cmd": "expire_sent", "message_id": message_id}),
        Command::WaitForResponse { message_id, timeout_ms } => {
            json!({"cmd": "wait_for_response", "message_id": message_id, "timeout_ms": timeout_ms})
        }
        Command::GetIdentity => json!({"cmd": "identity"}),
        Command::UpdateBio { bio } => json!({"cmd": "update_bio", "bio": bio}),
        Command::Rename { display_name } => json!({"cmd": "rename", "display_name": display_name}),
        Command::SetSpawning { enabled } => json!({"cmd": "set_spawning", "enabled": enabled}),
        Command::SetStatus { active, duration_minutes } => {
            json!({"cmd": "set_status", "active": active, "duration_minutes": duration_minutes})
        }
        Command::SetImpression { agent_id, score, note } => {
            json!({"cmd": "set_impression", "agent_id": agent_id, "score": score, "note": note})
        }
        Command::GetImpression { agent_id } => json!({"cmd": "get_impression", "agent_id": agent_id}),
        Command::SetRateLimit { agent_id, limit } => {
            json!({"cmd": "set_rate_limit", "agent_id": agent_id, "limit": limit})
        }
        Command::Status => json!({"cmd": "status"}),
        Command::MarkShown { through } => json!({"cmd": "mark_shown", "through": through}),
        Command::NetworkInfo => json!({"cmd": "network_info"}),
        Command::AntiMatterLog => json!({"cmd": "antimatter_log"}),
        Command::ListDiscovered => json!({"cmd": "list_discovered"}),
        Command::DiscoverLocal => json!({"cmd": "discover_local"}),
        Command::DiscoverDomain { domain } => json!({"cmd": "discover_domain", "domain": domain}),
        Command::CreateShard(ShardArgs { content, tags, trust_threshold, summary }) => {
            json!({"cmd": "create_shard", "content": content, "tags": tags, "trust_threshold": trust_threshold, "summary": summary})
        }
        Command::ViewShards { tags, author } => json!({"cmd": "view_shards", "tags": tags, "author": author}),
        // Named one by one (no `_`) so that a new command is a compile error here, not a silent gap.
        Command::SetUrl { .. }
        | Command::UpdateShard { .. }
        | Command::DeleteShard { .. }
        | Command::GetShard { .. }
        | Command::ContextFeed { .. }
        // Pool commands are the owner's, typed at its own console, never forwarded.
        | Command::Pool(_) => return None,
    })
}

fn send_line(s: &SendArgs) -> Value {
    let mut v = json!({"cmd": "send", "content": s.content, "metadata": s.metadata, "in_reply_to": s.in_reply_to,
        "hops_remaining": s.hops_remaining});
    match &s.targets {
        Targets::Agents(ids) => v["target_agent_ids"] = json!(ids),
        Targets::Broadcast { trust_min } => {
            v["broadcast"] = Value::Bool(true);
            v["trust_min"] = json!(trust_min);
        }
    }
    v
}

/// Runs what a line asks of a node through any client of it. `announce` and `shutdown` belong to
/// the process that owns the node, so they are refused here.
pub async fn run(mesh: &dyn Mesh, request: Request) -> Result<Value, CommandError> {
    match request {
        Request::Node(c) => mesh.command(c).await,
        Request::DiscoverLocal => mesh.discover_local().await,
        Request::DiscoverDomain(d) => mesh.discover_domain(d).await,
        Request::Wallet(call) => mesh.wallet(call).await,
        Request::SetSandbox(on) => mesh.sandbox(on).await,
        Request::PoolBuy(a) => pool_buy(mesh, a).await,
        Request::Announce | Request::Shutdown => Err(CommandError::InvalidArgument(
            "announce and shutdown are taken only by the process that owns the node".to_owned(),
        )),
    }
}

/// `pool_buy`: pays the owner's advertised wallet through the wallet (its spending limit applies, and
/// a spawned session may not spend), then has the node ask the owner to credit the payment.
async fn pool_buy(mesh: &dyn Mesh, a: PoolBuyArgs) -> Result<Value, CommandError> {
    let tx = match a.tx_signature.clone() {
        Some(tx) => tx,
        None => {
            let list = mesh.command(Command::ListConnections).await?;
            let owner = list["connections"].as_array().and_then(|c| c.iter().find(|c| c["agent_id"] == a.owner));
            let wallet = owner
                .and_then(|c| c["wallets"]["solana"].as_str())
                .ok_or_else(|| {
                    CommandError::NotFound(format!("'{}' is not a connection with a Solana wallet", a.owner))
                })?
                .to_owned();
            let amount = crate::solana_wallet::AmountArg::Text(a.amount.clone());
            let call = match a.token.as_deref().filter(|t| !t.eq_ignore_ascii_case("SOL")) {
                None => crate::solana_wallet::WalletCall::SendSol { to_wallet: wallet, amount },
                Some(mint) => crate::solana_wallet::WalletCall::SendToken {
                    to_wallet: wallet,
                    mint: mint.to_owned(),
                    amount,
                    decimals: None,
                },
            };
            let paid = mesh.wallet(call).await?;
            if paid["status"] != "confirmed" {
                return Err(CommandError::Peer(format!("the payment did not confirm: {paid}")));
            }
            paid["tx_signature"].as_str().unwrap_or_default().to_owned()
        }
    };
    let buy =
        proto_core::pool::PoolCommand::Buy { owner: a.owner, pool_id: a.pool_id, amount: a.amount, tx_signature: tx };
    let mut answer = mesh.command(Command::Pool(Box::new(buy.clone()))).await?;
    // A transfer just confirmed may not be final yet where the owner looks (503: not checked); each
    // retry is signed anew, and the owner credits the transaction once whatever happens.
    for _ in 1..POOL_BUY_ATTEMPTS_MAX {
        if answer["http_status"] != 503 {
            break;
        }
        smol::Timer::after(std::time::Duration::from_millis(POOL_BUY_RETRY_MS)).await;
        answer = mesh.command(Command::Pool(Box::new(buy.clone()))).await?;
    }
    Ok(answer)
}

/// Times `pool_buy` asks the owner to credit a payment it could not check yet (503).
pub const POOL_BUY_ATTEMPTS_MAX: u32 = 6;
/// Wait between those asks, in milliseconds (finality takes about 13 s after confirmation).
pub const POOL_BUY_RETRY_MS: u64 = 5_000;

/// The answer line for a result, echoing the request's `id` when it had one.
pub fn answer(id: Option<&Value>, result: Result<Value, String>) -> Value {
    let mut out = match result {
        Ok(v) => json!({"ok": true, "result": v}),
        Err(e) => json!({"ok": false, "error": e}),
    };
    if let Some(id) = id {
        out["id"] = id.clone();
    }
    out
}

/// The answer line for a node's result; a failure also says its `kind` ([`error_kind`]).
pub fn answer_node(id: Option<&Value>, result: Result<Value, CommandError>) -> Value {
    let kind = result.as_ref().err().map(error_kind);
    let mut out = answer(id, result.map_err(|e| e.to_string()));
    if let Some(kind) = kind {
        out["kind"] = Value::from(kind);
    }
    out
}

/// The wire name of a command error's kind.
pub fn error_kind(e: &CommandError) -> &'static str {
    match e {
        CommandError::InvalidArgument(_) => "invalid_argument",
        CommandError::NotFound(_) => "not_found",
        CommandError::Limited(_) => "limited",
        CommandError::Peer(_) => "peer",
    }
}

/// Reads an answer line back (the inverse of [`answer_node`]); an error without a known kind is an
/// invalid argument (the line itself was refused).
pub fn read_answer(v: &Value) -> Result<Value, CommandError> {
    if v["ok"] == Value::Bool(true) {
        return Ok(v["result"].clone());
    }
    let text = v["error"].as_str().unwrap_or("malformed answer").to_owned();
    Err(match v["kind"].as_str() {
        Some("not_found") => CommandError::NotFound(text),
        Some("limited") => CommandError::Limited(text),
        Some("peer") => CommandError::Peer(text),
        _ => CommandError::InvalidArgument(text),
    })
}

#[cfg(test)]
mod tests {
    use proto_core::limits::HOPS_MAX;

    use super::*;

    #[test]
    fn lines_map_to_commands() {
        assert_eq!(
            parse(&json!({"cmd": "connect", "target_url": "http://x"})),
            Ok(Request::Node(Command::Connect { target_url: "http://x".into() }))
        );
        assert_eq!(
            parse(&json!({"cmd": "get_message", "message_id": "m", "consume": true})),
            Ok(Request::Node(Command::GetMessage { message_id: "m".into(), consume: true }))
        );
        let Ok(Request::Node(Command::Send(s))) =
            parse(&json!({"cmd": "send", "content": "hi", "target_agent_ids": ["a", "b"]}))
        else {
            panic!()
        };
        assert_eq!((s.targets, s.hops_remaining), (Targets::Agents(vec!["a".into(), "b".into()]), HOPS_MAX));
        let Ok(Request::Node(Command::Send(s))) = parse(&json!({"cmd": "send", "content": "hi", "broadcast": true}))
        else {
            panic!()
        };
        assert_eq!(s.targets, Targets::Broadcast { trust_min: 0.0 });
        assert_eq!(
            parse(&json!({"cmd": "set_rate_limit", "limit": -1})),
            Ok(Request::Node(Command::SetRateLimit { agent_id: None, limit: -1 }))
        );
        assert_eq!(
            parse(&json!({"cmd": "discover_domain", "domain": "a.example"})),
            Ok(Request::DiscoverDomain("a.example".into()))
        );
    }

    #[test]
    fn bad_lines_say_why() {
        assert!(parse(&json!([1])).unwrap_err().contains("object"));
        assert!(parse(&json!({"cmd": "nope"})).unwrap_err().contains("unknown"));
        assert!(parse(&json!({"cmd": "connect"})).unwrap_err().contains("target_url"));
        assert!(parse(&json!({"cmd": "send", "content": 5})).unwrap_err().contains("content"));
        assert!(parse(&json!({"cmd": "send", "content": "x", "hops_remaining": -1}))
            .unwrap_err()
            .contains("hops_remaining"));
    }

    #[test]
    fn every_line_command_reads_back_as_itself() {
        let s = |x: &str| x.to_owned();
        let commands = [
            Command::Connect { target_url: s("http://x") },
            Command::Accept { request_id: s("r") },
            Command::Reject { request_id: s("r") },
            Command::Disconnect { agent_id: s("a") },
            Command::ListConnections,
            Command::ListPending,
            Command::Send(SendArgs {
                content: s("hi"),
                targets: Targets::Agents(vec![s("a"), s("b")]),
                metadata: json!({"k": [1]}).as_object().unwrap().clone(),
                in_reply_to: Some(s("m0")),
                hops_remaining: 3,
            }),
            Command::Send(SendArgs {
                content: s("all"),
                targets: Targets::Broadcast { trust_min: -0.25 },
                metadata: Map::new(),
                in_reply_to: None,
                hops_remaining: 0,
            }),
            Command::Forward(ForwardArgs { message_id: s("m"), targets: vec![s("c")], note: Some(s("n")) }),
            Command::Forward(ForwardArgs { message_id: s("m"), targets: vec![s("c")], note: None }),
            Command::ListInbox,
            Command::GetMessage { message_id: s("m"), consume: true },
            Command::ListSent,
            Command::GetSent { message_id: s("m") },
            Command::ExpireSent { message_id: s("m") },
            Command::WaitForResponse { message_id: s("m"), timeout_ms: 1001 },
            Command::GetIdentity,
            Command::UpdateBio { bio: s("b") },
            Command::Rename { display_name: s("Ada") },
            Command::SetSpawning { enabled: false },
            Command::SetStatus { active: false, duration_minutes: Some(5) },
            Command::SetStatus { active: true, duration_minutes: None },
            Command::SetImpression { agent_id: s("a"), score: 0.5, note: None },
            Command::GetImpression { agent_id: s("a") },
            Command::SetRateLimit { agent_id: None, limit: -1 },
            Command::SetRateLimit { agent_id: Some(s("a")), limit: 7 },
            Command::Status,
            Command::MarkShown { through: 7 },
            Command::NetworkInfo,
            Command::AntiMatterLog,
            Command::ListDiscovered,
            Command::CreateShard(ShardArgs {
                content: s("c"),
                tags: vec![s("t")],
                trust_threshold: 0.5,
                summary: Some(s("s")),
            }),
            Command::ViewShards { tags: vec![s("t")], author: Some(s("a")) },
        ];
        for c in commands {
            let l = line(&c).unwrap_or_else(|| panic!("{c:?} has a line"));
            assert_eq!(parse(&l), Ok(Request::Node(c.clone())), "{l}");
        }
        assert_eq!(line(&Command::SetUrl { url: s("http://y") }), None);
    }

    #[test]
    fn node_errors_keep_their_kind_across_a_line() {
        for e in [
            CommandError::InvalidArgument("i".into()),
            CommandError::NotFound("n".into()),
            CommandError::Limited("l".into()),
            CommandError::Peer("p".into()),
        ] {
            assert_eq!(read_answer(&answer_node(Some(&json!(1)), Err(e.clone()))), Err(e));
        }
        assert_eq!(read_answer(&answer_node(None, Ok(json!({"a": 1})))), Ok(json!({"a": 1})));
    }

    #[test]
    fn lines_get_the_same_checks_as_the_tools() {
        let err = |v: Value| parse(&v).unwrap_err();
        assert!(err(json!({"cmd": "status", "x": 1})).contains("unknown field"));
        let long = "m".repeat(proto_core::limits::ID_BYTES_MAX + 1);
        assert!(err(json!({"cmd": "get_sent", "message_id": long})).contains("not a valid identifier"));
        assert!(
            err(json!({"cmd": "send", "content": "x", "broadcast": true, "target_agent_id": "a"})).contains("not both")
        );
        assert!(err(json!({"cmd": "send", "content": "x", "target_agent_id": "a", "hops_remaining": 11}))
            .contains("0..=10"));
        assert!(err(json!({"cmd": "forward", "target_agent_id": "a"})).contains("message_id is required"));
        assert!(
            err(json!({"cmd": "wait_for_response", "message_id": "m", "timeout_ms": 3_600_001})).contains("timeout_ms")
        );
        assert_eq!(
            parse(
                &json!({"id": 3, "cmd": "send", "content": "x", "target_agent_id": " a ", "target_agent_ids": ["b"]})
            ),
            parse(&json!({"cmd": "send", "content": "x", "target_agent_ids": ["a", "b"]})),
            "both target forms together, trimmed"
        );
        assert_eq!(
            parse(&json!({"cmd": "view_shards", "tags": ["t"]})),
            Ok(Request::Node(Command::ViewShards { tags: vec!["t".into()], author: None }))
        );
    }

    #[test]
    fn answers_echo_the_id() {
        assert_eq!(answer(Some(&json!(7)), Ok(json!({"a": 1}))), json!({"id": 7, "ok": true, "result": {"a": 1}}));
        assert_eq!(answer(None, Err("no".into())), json!({"ok": false, "error": "no"}));
    }
}
