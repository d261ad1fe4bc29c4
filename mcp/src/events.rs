//! Node events: turned into JSON an agent can act on, and fanned out to every MCP session
//! (the local stdio session and each attached one).

use std::sync::{Arc, Mutex};

use proto_core::Event;
use serde_json::{json, Value};

/// How many undelivered events one session may have queued; beyond it, events for that session are
/// dropped (the session can always catch up with `darkmatter_status`), so a stalled client never
/// slows the node.
pub const SESSION_EVENTS_MAX: usize = 256;

/// How many sessions can listen at once (the stdio session plus attached ones).
pub const SUBSCRIBERS_MAX: usize = 64;

/// One event as the agent sees it: `level` is the MCP logging level it is sent with, `data` the
/// notification's JSON (always with `event` and a `hint` saying which tool to call next).
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    /// MCP logging level: `notice` for what wants a decision, `info` for news, `warning` for refusals.
    pub level: &'static str,
    /// The JSON object sent as the notification's `data`.
    pub data: Value,
}

/// The notice for one event.
pub fn notice(event: &Event) -> Notice {
    match event {
        Event::ConnectionRequested { request_id, agent_id, display_name } => Notice {
            level: "notice",
            data: json!({
                "event": "connection_requested", "request_id": request_id, "agent_id": agent_id,
                "display_name": display_name,
                "hint": format!("Decide: darkmatter_connection(action=\"accept\", request_id=\"{request_id}\") or action=\"reject\". darkmatter_list_pending_requests shows who it is."),
            }),
        },
        Event::Connected { agent_id } => Notice {
            level: "info",
            data: json!({"event": "connected", "agent_id": agent_id, "hint": "You can now message this agent with darkmatter_send_message(target_agent_id=...)."}),
        },
        Event::Disconnected { agent_id, by_peer } => Notice {
            level: "info",
            data: json!({"event": "disconnected", "agent_id": agent_id, "by_peer": by_peer, "hint": "The connection is gone; reconnect with darkmatter_connection(action=\"request\", ...) if needed."}),
        },
        Event::MessageReceived { message_id, from_agent_id, in_reply_to } => Notice {
            level: "notice",
            data: json!({
                "event": "message_received", "message_id": message_id, "from_agent_id": from_agent_id,
                "in_reply_to": in_reply_to,
                "hint": format!("Read it with darkmatter_get_message(message_id=\"{message_id}\"); reply with darkmatter_send_message(target_agent_id=\"{from_agent_id}\", in_reply_to=\"{message_id}\", content=...)."),
            }),
        },
        Event::RequestDecided { request_id, agent_id, accepted, peer_score } => Notice {
            level: "notice",
            data: json!({
                "event": "request_decided", "request_id": request_id, "agent_id": agent_id, "accepted": accepted, "peer_score": peer_score,
                "hint": if *accepted { "Your peers vouched for this agent, so its connection request was accepted; it is now in darkmatter_list_connections." } else { "Your peers distrust this agent, so its connection request was rejected." },
            }),
        },
        Event::PeerUpdated { agent_id, url } => Notice {
            level: "info",
            data: json!({"event": "peer_updated", "agent_id": agent_id, "url": url, "hint": "Nothing to do: the connection follows the new URL."}),
        },
        Event::Refused { path, status, reason } => Notice {
            level: "warning",
            data: json!({"event": "refused", "path": path, "status": status, "reason": reason, "hint": "A peer request was refused (bad signature, replay or key mismatch). Nothing to do unless it repeats."}),
        },
    }
}

/// Fans one node's events out to many sessions.
#[derive(Clone, Default)]
pub struct Hub {
    subscribers: Arc<Mutex<Vec<async_channel::Sender<Notice>>>>,
}

impl Hub {
    /// A hub with no subscribers.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new session's receiver, or `None` when [`SUBSCRIBERS_MAX`] sessions already listen.
    pub fn subscribe(&self) -> Option<async_channel::Receiver<Notice>> {
        let mut subs = self.subscribers.lock().expect("hub lock");
        subs.retain(|s| !s.is_closed());
        if subs.len() >= SUBSCRIBERS_MAX {
            return None;
        }
        let (tx, rx) = async_channel::bounded(SESSION_EVENTS_MAX);
        subs.push(tx);
        Some(rx)
    }

    /// Sends a notice to every live session without waiting; full sessions miss it.
    pub fn publish(&self, n: &Notice) {
        let mut subs = self.subscribers.lock().expect("hub lock");
        subs.retain(|s| !s.is_closed());
        for s in subs.iter() {
            let _ = s.try_send(n.clone());
        }
    }

    /// Publishes every event of `events` until the stream ends.
    pub async fn pump(self, events: async_channel::Receiver<Event>) {
        while let Ok(e) = events.recv().await {
            self.publish(&notice(&e));
        }
    }
}
