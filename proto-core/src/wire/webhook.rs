//! `POST|GET /__darkmatter__/webhook/<message_id>`: status callbacks on the original sender.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A status update posted to a sender's webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct WebhookUpdate {
    /// `received`, `responding`, `forwarded`, `response` or `expired`.
    #[serde(default, rename = "type")]
    pub kind: String,
    /// Who reports.
    #[serde(default)]
    pub agent_id: String,
    /// For `forwarded`: to whom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_agent_id: Option<String>,
    /// For `forwarded` / `expired`: a note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// For `response`: the reply text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    /// For `response`: the original metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// For a signed `response`: the signing time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// For a signed `response`: must equal `agent_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_public_key_hex: Option<String>,
    /// For `response`: legacy-form signature over (agent_id, message_id, timestamp, response).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_hex: Option<String>,
    /// Ours, on `forwarded` and `expired`: signature over (type, agent_id, message_id, target, note,
    /// timestamp), so a forward cannot be claimed by someone who did not make it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dm_signature_hex: Option<String>,
}

/// `{"success":true,"recorded":"<type>"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookRecorded {
    /// Always true.
    pub success: bool,
    /// The update type recorded.
    pub recorded: String,
}

/// One recorded update as `GET /webhook/<id>` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RecordedUpdate {
    /// Update type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Reporter.
    pub agent_id: String,
    /// Forward target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_agent_id: Option<String>,
    /// Note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// When we recorded it.
    pub timestamp: String,
    /// Signed by the agent it names (our form); false for an unsigned update, which anyone could
    /// have posted. Absent from 0.5.3's answers, so it reads as false.
    #[serde(default)]
    pub verified: bool,
}

/// `GET /__darkmatter__/webhook/<id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct WebhookStatus {
    /// The sent message.
    pub message_id: String,
    /// `active`, `responded` or `expired`.
    pub status: String,
    /// The hop budget it was sent with.
    pub initial_hops: i64,
    /// When it was sent.
    pub created_at: String,
    /// Updates so far.
    #[serde(default)]
    pub updates: Vec<RecordedUpdate>,
}
