//! Messages as the agent gives them (what to send, where, a forward) and our signed form of an
//! envelope, shared by the inbound checks and the outbound signing.

use serde_json::{Map, Value};

use crate::sign::{self, V2_MESSAGE};
use crate::wire::message::MessageEnvelope;

/// Which peers a new message goes to.
#[derive(Clone, Debug, PartialEq)]
pub enum Targets {
    /// These connected peers.
    Agents(Vec<String>),
    /// Every connected peer whose impression is at least this score (unscored peers count as 0).
    Broadcast {
        /// Minimum impression, -1..1.
        trust_min: f64,
    },
}

/// A new message from the local agent.
#[derive(Clone, Debug, PartialEq)]
pub struct SendArgs {
    /// Text.
    pub content: String,
    /// Recipients.
    pub targets: Targets,
    /// Metadata object.
    pub metadata: Map<String, Value>,
    /// The inbox message this answers.
    pub in_reply_to: Option<String>,
    /// Hop budget, 0..=[`HOPS_MAX`](crate::limits::HOPS_MAX).
    pub hops_remaining: u32,
}

/// A forward of an inbox message.
#[derive(Clone, Debug, PartialEq)]
pub struct ForwardArgs {
    /// The inbox message.
    pub message_id: String,
    /// Connected peers to forward to.
    pub targets: Vec<String>,
    /// A note for the original sender's webhook.
    pub note: Option<String>,
}

/// Canonical JSON of a metadata object: keys sorted at every depth (explicitly, so that enabling
/// serde_json's `preserve_order` anywhere in a build cannot change what we sign), compact, numbers
/// printed so they parse back to the same value.
pub fn canonical_metadata(metadata: &Map<String, Value>) -> String {
    if metadata.is_empty() {
        return "{}".to_owned();
    }
    serde_json::to_string(&sorted(&Value::Object(metadata.clone()))).expect("JSON values always serialise")
}

fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(keys.into_iter().map(|k| (k.clone(), sorted(&m[k]))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// Our signed form of an envelope: every field that changes its meaning.
pub fn envelope_v2_bytes(e: &MessageEnvelope, metadata_json: &str) -> Vec<u8> {
    let hops = e.hops_remaining.to_string();
    sign::v2_bytes(
        V2_MESSAGE,
        &[
            &e.from_agent_id,
            e.to_agent_id.as_deref().unwrap_or(""),
            &e.message_id,
            &e.timestamp,
            &e.webhook,
            &hops,
            e.in_reply_to.as_deref().unwrap_or(""),
            metadata_json,
            &e.content,
        ],
    )
}
