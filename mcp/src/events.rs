//! Node events: fanned out to every session (the local stdio session and each attached one), and
//! turned into notices an agent can act on.

#![allow(deprecated)] // rmcp marks MCP logging deprecated (SEP-2577); it is still what clients show.

use std::sync::{Arc, Mutex};

use proto_core::Event;
use rmcp::model::LoggingLevel;
use serde_json::Value;

/// How many undelivered events one session may have queued; beyond it, events for that session are
/// dropped (the session can always catch up with `darkmatter_status`), so a stalled client never
/// slows the node.
pub const SESSION_EVENTS_MAX: usize = 256;

/// How many sessions can listen at once (the stdio session plus attached ones).
pub const SUBSCRIBERS_MAX: usize = 64;

/// One event as the agent sees it: `level` is the MCP logging level it is sent with, `data` the
/// notification's JSON: the event's fields (its serde form, shared with `darkmatter-node --events`)
/// and a `hint` saying which tool to call next.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    /// `notice` for what wants a decision, `info` for news, `warning` for refusals.
    pub level: LoggingLevel,
    /// The JSON object sent as the notification's `data`.
    pub data: Value,
}

/// The notice for one event.
pub fn notice(event: &Event) -> Notice {
    let (level, hint) = match event {
        Event::ConnectionRequested { request_id, .. } => (
            LoggingLevel::Notice,
            format!("Decide: darkmatter_connection(action=\"accept\", request_id=\"{request_id}\") or action=\"reject\". darkmatter_list_pending_requests shows who it is."),
        ),
        Event::Connected { .. } => {
            (LoggingLevel::Info, "You can now message this agent with darkmatter_send_message(target_agent_id=...).".to_owned())
        }
        Event::Disconnected { .. } => (
            LoggingLevel::Info,
            "The connection is gone; reconnect with darkmatter_connection(action=\"request\", ...) if needed.".to_owned(),
        ),
        Event::MessageReceived { message_id, from_agent_id, .. } => (
            LoggingLevel::Notice,
            format!("Read it with darkmatter_get_message(message_id=\"{message_id}\"); reply with darkmatter_send_message(target_agent_id=\"{from_agent_id}\", in_reply_to=\"{message_id}\", content=...)."),
        ),
        Event::RequestDecided { accepted, .. } => (
            LoggingLevel::Notice,
            if *accepted {
                "Your peers vouched for this agent, so its connection request was accepted; it is now in darkmatter_list_connections."
            } else {
                "Your peers distrust this agent, so its connection request was rejected."
            }
            .to_owned(),
        ),
        Event::PeerUpdated { .. } => (LoggingLevel::Info, "Nothing to do: the connection follows the new URL.".to_owned()),
        Event::PeerUrlRecovered { verified, .. } => (
            LoggingLevel::Info,
            if *verified {
                "A peer had moved; its own signed update was found and the failed messages were retried there."
            } else {
                "A peer had moved; peers agreed on its new URL and its card there proved its key; failed messages were retried."
            }
            .to_owned(),
        ),
        Event::PeerNotFound { .. } => (
            LoggingLevel::Warning,
            "Messages to a peer failed and no peer knew a newer URL for it; they stay failed (see darkmatter_get_sent_message)."
                .to_owned(),
        ),
        Event::Refused { .. } => (
            LoggingLevel::Warning,
            "A peer request was refused (bad signature, replay or key mismatch). Nothing to do unless it repeats."
                .to_owned(),
        ),
        Event::SpawnRefused { .. } => (
            LoggingLevel::Warning,
            "A spawn limit held an agent back; the message stays in the inbox and an agent starts when there is room."
                .to_owned(),
        ),
        Event::SpawnFailed { .. } => (
            LoggingLevel::Warning,
            "A spawned agent failed or ran out of time; the message is still in the inbox for you to handle.".to_owned(),
        ),
    };
    let mut data = serde_json::to_value(event).expect("an event is plain data");
    data["hint"] = Value::String(hint);
    Notice { level, data }
}

/// Fans one node's events out to many sessions.
#[derive(Clone, Default)]
pub struct Hub {
    subscribers: Arc<Mutex<Vec<async_channel::Sender<Event>>>>,
}

impl Hub {
    /// A hub with no subscribers.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new session's receiver, or `None` when [`SUBSCRIBERS_MAX`] sessions already listen.
    pub fn subscribe(&self) -> Option<async_channel::Receiver<Event>> {
        let mut subs = self.subscribers.lock().expect("hub lock");
        subs.retain(|s| !s.is_closed());
        if subs.len() >= SUBSCRIBERS_MAX {
            return None;
        }
        let (tx, rx) = async_channel::bounded(SESSION_EVENTS_MAX);
        subs.push(tx);
        Some(rx)
    }

    /// Sends an event to every live session without waiting; full sessions miss it.
    pub fn publish(&self, e: &Event) {
        let mut subs = self.subscribers.lock().expect("hub lock");
        subs.retain(|s| !s.is_closed());
        for s in subs.iter() {
            let _ = s.try_send(e.clone());
        }
    }

    /// Publishes every event of `events` until the stream ends.
    pub async fn pump(self, events: async_channel::Receiver<Event>) {
        while let Ok(e) = events.recv().await {
            self.publish(&e);
        }
    }
}
