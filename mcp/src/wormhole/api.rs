//! The JSON API of the page: 0.5.3's route names and shapes where the feature is kept (R-E7), each
//! action one command of this node (checked by runtime-smol's control-line parser, the same checks
//! the MCP tools and `darkmatter-node` apply). Nothing here reaches another node except through
//! those commands.

use serde_json::{json, Map, Value};

use runtime_smol::control::{self, Request as Line};

use super::http::{Request, Response};
use super::{spawn_panel, topology, Wormhole};

/// Sent messages shown in the timeline (newest first), each read whole with its replies and updates.
pub const OUTBOX_SHOWN_MAX: usize = 50;

/// Routes the API; unknown routes are 404.
pub async fn route(wh: &Wormhole, req: &Request) -> Response {
    let body = match body_object(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let arg = |k: &str| body.get(k).cloned().unwrap_or(Value::Null);
    let (method, path) = (req.method.as_str(), req.path.as_str());
    let tail = |prefix: &str| path.strip_prefix(prefix).filter(|t| !t.is_empty() && !t.contains('/'));
    if method == "POST" {
        if let Some(rid) = tail("/accept/") {
            return run(wh, json!({"cmd": "accept", "request_id": rid})).await;
        }
        if let Some(rid) = tail("/reject/") {
            return run(wh, json!({"cmd": "reject", "request_id": rid})).await;
        }
        if let Some(aid) = tail("/disconnect/") {
            return run(wh, json!({"cmd": "disconnect", "agent_id": aid})).await;
        }
        if let Some(mid) = tail("/respond/") {
            return respond(wh, mid, arg("response")).await;
        }
        if let Some(group) = tail("/api/spawn/kill/") {
            return spawn_panel::kill(wh, group);
        }
    }
    match (method, path) {
        ("GET", "/api/poll") => Response::json(200, &poll(wh).await),
        ("GET", "/api/info") => Response::json(200, &self_view(wh).await),
        ("GET", "/api/mesh-topology") => Response::json(200, &topology::topology(wh).await),
        ("GET", "/api/spawn") => Response::json(200, &spawn_panel::list(wh)),
        // Read-only: the log is the node's own record; nothing on the page changes it.
        ("GET", "/api/antimatter") => Response::json(200, &get(wh, proto_core::Command::AntiMatterLog).await),
        ("POST", "/connect") => run(wh, json!({"cmd": "connect", "target_url": arg("url")})).await,
        ("POST", "/send") => send(wh, &body).await,
        ("POST", "/api/checkin") => {
            let line = json!({"cmd": "send", "content": CHECK_IN_TEXT, "broadcast": true, "trust_min": -1.0});
            run(wh, line).await
        }
        ("POST", "/api/scan") => run(wh, json!({"cmd": "discover_local"})).await,
        ("POST", "/api/name") => run(wh, json!({"cmd": "rename", "display_name": arg("display_name")})).await,
        ("POST", "/api/bio") => run(wh, json!({"cmd": "update_bio", "bio": arg("bio")})).await,
        ("POST", "/api/impression") => {
            let mut line = json!({"cmd": "set_impression", "agent_id": arg("agent_id"), "score": arg("score")});
            if let Some(note) = body.get("note").filter(|n| n.as_str().is_some_and(|s| !s.is_empty())) {
                line["note"] = note.clone();
            }
            run(wh, line).await
        }
        ("POST", "/api/spawn/toggle") => spawn_panel::toggle(wh, &body).await,
        ("POST", "/api/spawn/sandbox") => {
            let ip = req.peer.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
            spawn_panel::sandbox(wh, &body, ip).await
        }
        _ => Response::error(404, "Not Found"),
    }
}

fn body_object(req: &Request) -> Result<Map<String, Value>, Response> {
    if req.body.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(Response::error(400, "The body must be a JSON object")),
    }
}

/// Runs one control line as a command of this node: `{"success": true, ...result}` or an error.
async fn run(wh: &Wormhole, line: Value) -> Response {
    let command = match control::parse(&line) {
        Ok(Line::Node(c)) => c,
        Ok(Line::DiscoverLocal) => proto_core::Command::DiscoverLocal,
        Ok(_) => return Response::error(400, "Not available from the page"),
        Err(e) => return Response::error(400, &e),
    };
    match wh.mesh.command(command).await {
        Ok(mut v) => {
            if let Value::Object(m) = &mut v {
                m.entry("success").or_insert(Value::Bool(true));
            }
            Response::json(200, &v)
        }
        Err(e) => Response::error(409, &e.to_string()),
    }
}

/// What 0.5.3's "Check in" asks every connection.
pub const CHECK_IN_TEXT: &str = "What are you working on right now? Give a brief status update.";

/// `POST /send {content, target, in_reply_to?}`: `target` is a connected agent's id, `all` (every
/// connection, whatever its score), or `fast` (the healthy connection with the lowest latency).
async fn send(wh: &Wormhole, body: &Map<String, Value>) -> Response {
    let mut target = body.get("target").and_then(Value::as_str).unwrap_or("all").to_owned();
    if target == "fast" {
        match topology::fastest(wh) {
            Some(id) => target = id,
            None => return Response::error(409, "No connection has answered a health check yet"),
        }
    }
    let target = target.as_str();
    let mut line = json!({"cmd": "send", "content": body.get("content").cloned().unwrap_or(Value::Null)});
    if target == "all" {
        line["broadcast"] = json!(true);
        line["trust_min"] = json!(-1.0);
    } else {
        line["target_agent_id"] = json!(target);
    }
    if let Some(r) = body.get("in_reply_to").filter(|v| !v.is_null()) {
        line["in_reply_to"] = r.clone();
    }
    run(wh, line).await
}

/// `POST /respond/<id> {response}`: a reply to an inbox message, sent to its sender.
async fn respond(wh: &Wormhole, message_id: &str, response: Value) -> Response {
    let get = json!({"cmd": "get_message", "message_id": message_id, "consume": false});
    let Ok(Line::Node(cmd)) = control::parse(&get) else { return Response::error(400, "Bad message id") };
    let from = match wh.mesh.command(cmd).await {
        Ok(m) => m.get("from_agent_id").and_then(Value::as_str).unwrap_or_default().to_owned(),
        Err(e) => return Response::error(404, &e.to_string()),
    };
    let line = json!({"cmd": "send", "content": response, "target_agent_id": from, "in_reply_to": message_id});
    run(wh, line).await
}

/// Where a sent message stands, as the timeline shows it: `answered` (a reply linked to it),
/// `delivered` (a recipient reported `received` or `forwarded`), `failed` (no recipient took it),
/// `expired`, or `sent`.
pub fn delivery(sent: &Value) -> &'static str {
    let count = |k: &str| sent[k].as_array().map_or(0, Vec::len);
    let reported = sent["updates"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|u| matches!(u["type"].as_str(), Some("received" | "forwarded")));
    if count("responses") > 0 || sent["response_count"].as_u64().unwrap_or(0) > 0 {
        "answered"
    } else if reported {
        "delivered"
    } else if count("routed_to") == 0 && count("failed") > 0 {
        "failed"
    } else if sent["status"] == "expired" {
        "expired"
    } else {
        "sent"
    }
}

async fn get(wh: &Wormhole, command: proto_core::Command) -> Value {
    wh.mesh.command(command).await.unwrap_or_else(|e| json!({"error": e.to_string()}))
}

fn list(v: &Value, key: &str) -> Value {
    v.get(key).cloned().unwrap_or_else(|| json!([]))
}

async fn self_view(wh: &Wormhole) -> Value {
    let mut id = get(wh, proto_core::Command::GetIdentity).await;
    id["connections_count"] =
        list(&get(wh, proto_core::Command::ListConnections).await, "connections").as_array().map_or(0, Vec::len).into();
    id
}

/// Everything the page draws, in one answer (0.5.3's `/api/poll` shape). The page fetches it when an
/// event says something changed, never on a timer.
pub async fn poll(wh: &Wormhole) -> Value {
    use proto_core::Command as C;
    let connections = topology::with_health(wh, list(&get(wh, C::ListConnections).await, "connections"));
    let pending = list(&get(wh, C::ListPending).await, "requests");
    let inbox = list(&get(wh, C::ListInbox).await, "messages");
    let discovered = get(wh, C::ListDiscovered).await;
    let shards = get(wh, C::ViewShards { tags: Vec::new(), author: None }).await;
    let sent = list(&get(wh, C::ListSent).await, "messages");
    let mut outbox = Vec::new();
    for m in sent.as_array().into_iter().flatten().take(OUTBOX_SHOWN_MAX) {
        let Some(id) = m.get("message_id").and_then(Value::as_str) else { continue };
        let mut full = get(wh, C::GetSent { message_id: id.to_owned() }).await;
        full["delivery"] = Value::from(delivery(&full));
        outbox.push(full);
    }
    json!({
        "self": self_view(wh).await,
        "connections": connections,
        "pending_requests": pending,
        "inbox": inbox,
        "outbox": outbox,
        "discovered": discovered,
        "shards": shards,
    })
}
