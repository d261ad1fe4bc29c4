//! The headless binary's local control: one JSON object per line in, one per line out.
//!
//! A request is `{"cmd": NAME, ...arguments, "id"?: any}`; the answer echoes `id` and is
//! `{"ok": true, "result": {...}}` or `{"ok": false, "error": "..."}`. Names and arguments:
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
//! | `set_status` | `active`, `duration_minutes` |
//! | `set_impression` | `agent_id`, `score`, `note` |
//! | `get_impression` | `agent_id` |
//! | `set_rate_limit` | `limit` (0 default, -1 unlimited, n per minute), `agent_id` (absent = global) |
//! | `discover_domain` | `domain` |
//! | `list_connections`, `list_pending`, `list_inbox`, `list_sent`, `identity`, `status`, `network_info`, `list_discovered`, `discover_local`, `announce`, `shutdown` | none |

use proto_core::limits::HOPS_MAX;
use proto_core::{Command, Event, ForwardArgs, SendArgs, Targets};
use serde_json::{json, Map, Value};

/// Default `timeout_ms` of `wait_for_response`.
pub const WAIT_TIMEOUT_MS_DEFAULT: u64 = 60_000;

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
    /// Stop the node.
    Shutdown,
}

fn text(args: &Map<String, Value>, name: &str) -> Result<String, String> {
    match args.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("'{name}' must be a string")),
        None => Err(format!("'{name}' is required")),
    }
}

fn opt_text(args: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("'{name}' must be a string")),
    }
}

fn opt_bool(args: &Map<String, Value>, name: &str) -> Result<Option<bool>, String> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(format!("'{name}' must be true or false")),
    }
}

fn opt_u64(args: &Map<String, Value>, name: &str) -> Result<Option<u64>, String> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| format!("'{name}' must be a whole number ≥ 0")),
    }
}

fn targets(args: &Map<String, Value>) -> Result<Vec<String>, String> {
    if let Some(one) = opt_text(args, "target_agent_id")? {
        return Ok(vec![one]);
    }
    match args.get("target_agent_ids") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| "'target_agent_ids' must hold strings".to_owned()))
            .collect(),
        Some(_) => Err("'target_agent_ids' must be an array".to_owned()),
    }
}

/// Parses one control line.
pub fn parse(line: &Value) -> Result<Request, String> {
    let args = line.as_object().ok_or("a control line must be a JSON object")?;
    let cmd = text(args, "cmd")?;
    let node = |c: Command| Ok(Request::Node(c));
    match cmd.as_str() {
        "connect" => node(Command::Connect { target_url: text(args, "target_url")? }),
        "accept" => node(Command::Accept { request_id: text(args, "request_id")? }),
        "reject" => node(Command::Reject { request_id: text(args, "request_id")? }),
        "disconnect" => node(Command::Disconnect { agent_id: text(args, "agent_id")? }),
        "list_connections" => node(Command::ListConnections),
        "list_pending" => node(Command::ListPending),
        "send" => {
            let targets = if opt_bool(args, "broadcast")?.unwrap_or(false) {
                let trust_min = match args.get("trust_min") {
                    None | Some(Value::Null) => 0.0,
                    Some(v) => v.as_f64().ok_or("'trust_min' must be a number")?,
                };
                Targets::Broadcast { trust_min }
            } else {
                Targets::Agents(targets(args)?)
            };
            let metadata = match args.get("metadata") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(m)) => m.clone(),
                Some(_) => return Err("'metadata' must be an object".to_owned()),
            };
            let hops = opt_u64(args, "hops_remaining")?.unwrap_or(u64::from(HOPS_MAX));
            let hops_remaining = u32::try_from(hops).map_err(|_| "'hops_remaining' is too large".to_owned())?;
            node(Command::Send(SendArgs {
                content: text(args, "content")?,
                targets,
                metadata,
                in_reply_to: opt_text(args, "in_reply_to")?,
                hops_remaining,
            }))
        }
        "forward" => node(Command::Forward(ForwardArgs {
            message_id: text(args, "message_id")?,
            targets: targets(args)?,
            note: opt_text(args, "note")?,
        })),
        "list_inbox" => node(Command::ListInbox),
        "get_message" => node(Command::GetMessage {
            message_id: text(args, "message_id")?,
            consume: opt_bool(args, "consume")?.unwrap_or(false),
        }),
        "list_sent" => node(Command::ListSent),
        "get_sent" => node(Command::GetSent { message_id: text(args, "message_id")? }),
        "expire_sent" => node(Command::ExpireSent { message_id: text(args, "message_id")? }),
        "wait_for_response" => node(Command::WaitForResponse {
            message_id: text(args, "message_id")?,
            timeout_ms: opt_u64(args, "timeout_ms")?.unwrap_or(WAIT_TIMEOUT_MS_DEFAULT),
        }),
        "identity" => node(Command::GetIdentity),
        "update_bio" => node(Command::UpdateBio { bio: text(args, "bio")? }),
        "set_status" => node(Command::SetStatus {
            active: opt_bool(args, "active")?.ok_or("'active' is required")?,
            duration_minutes: opt_u64(args, "duration_minutes")?,
        }),
        "set_impression" => {
            let score = args.get("score").and_then(Value::as_f64).ok_or("'score' must be a number")?;
            node(Command::SetImpression { agent_id: text(args, "agent_id")?, score, note: opt_text(args, "note")? })
        }
        "get_impression" => node(Command::GetImpression { agent_id: text(args, "agent_id")? }),
        "set_rate_limit" => {
            let limit = args.get("limit").and_then(Value::as_i64).ok_or("'limit' must be a whole number")?;
            node(Command::SetRateLimit { agent_id: opt_text(args, "agent_id")?, limit })
        }
        "status" => node(Command::Status),
        "network_info" => node(Command::NetworkInfo),
        "list_discovered" => node(Command::ListDiscovered),
        "discover_local" => Ok(Request::DiscoverLocal),
        "discover_domain" => Ok(Request::DiscoverDomain(text(args, "domain")?)),
        "announce" => Ok(Request::Announce),
        "shutdown" => Ok(Request::Shutdown),
        other => Err(format!("unknown cmd '{other}'")),
    }
}

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

/// An event as a JSON line (`--events`), also useful to any front end.
pub fn event_json(e: &Event) -> Value {
    match e {
        Event::ConnectionRequested { request_id, agent_id, display_name } => {
            json!({"event": "connection_requested", "request_id": request_id, "agent_id": agent_id, "display_name": display_name})
        }
        Event::Connected { agent_id } => json!({"event": "connected", "agent_id": agent_id}),
        Event::Disconnected { agent_id, by_peer } => {
            json!({"event": "disconnected", "agent_id": agent_id, "by_peer": by_peer})
        }
        Event::MessageReceived { message_id, from_agent_id, in_reply_to } => {
            json!({"event": "message_received", "message_id": message_id, "from_agent_id": from_agent_id, "in_reply_to": in_reply_to})
        }
        Event::PeerUpdated { agent_id, url } => json!({"event": "peer_updated", "agent_id": agent_id, "url": url}),
        Event::Refused { path, status, reason } => {
            json!({"event": "refused", "path": path, "status": status, "reason": reason})
        }
        Event::RequestDecided { request_id, agent_id, accepted, peer_score } => {
            json!({"event": "request_decided", "request_id": request_id, "agent_id": agent_id, "accepted": accepted, "peer_score": peer_score})
        }
    }
}

#[cfg(test)]
mod tests {
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
    fn answers_echo_the_id() {
        assert_eq!(answer(Some(&json!(7)), Ok(json!({"a": 1}))), json!({"id": 7, "ok": true, "result": {"a": 1}}));
        assert_eq!(answer(None, Err("no".into())), json!({"ok": false, "error": "no"}));
    }
}
