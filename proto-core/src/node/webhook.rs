//! Node glue for webhooks: updates and replies posted to the webhook of a message we sent, the
//! status query, and the best-effort updates we post to others' webhooks. It may touch the outbox
//! (updates and replies of sent messages), the replay cache and rate limits.

use core::net::IpAddr;

use serde_json::{json, Value};

use crate::crypto;
use crate::error::Refusal;
use crate::healing::Held;
use crate::io::{HttpResponse, Method};
use crate::limits::{
    self, CONTENT_CHARS_MAX, NOTE_CHARS_MAX, RESPONSES_PER_SENT_MAX, WEBHOOK_RECOVERY_ATTEMPTS_MAX,
    WEBHOOK_RECOVERY_WINDOW_MS,
};
use crate::node::{Call, Node};
use crate::outbox::update_room;
use crate::replay::{check_fresh, sig_key};
use crate::sign;
use crate::store::UpdateRecord;
use crate::url;
use crate::wire;
use crate::wire::webhook::{RecordedUpdate, WebhookRecorded, WebhookStatus, WebhookUpdate};

/// Our signed form of a webhook update.
fn webhook_v2_bytes(
    kind: &str,
    agent: &str,
    message_id: &str,
    target: Option<&str>,
    note: Option<&str>,
    stamp: &str,
) -> Vec<u8> {
    sign::v2_bytes(sign::V2_WEBHOOK, &[kind, agent, message_id, target.unwrap_or(""), note.unwrap_or(""), stamp])
}

impl Node {
    /// Posts a status update to a webhook, best effort. Webhooks were validated when their message
    /// was accepted.
    pub(super) fn notify_webhook(&mut self, webhook: &str, body: Value, forbid_private: bool) {
        let body = wire::encode(&body);
        let call = Call::Webhook { url: webhook.to_owned(), body: body.clone(), attempts: 1, until_ms: None };
        self.transmit(Method::Post, webhook.to_owned(), body, limits::PEER_CALL_TIMEOUT_MS, forbid_private, call);
    }

    /// A webhook callback's answer: one that failed the way a move explains is held for a lookup of
    /// the connection whose webhook it is (0.5.3's webhook recovery), within
    /// [`WEBHOOK_RECOVERY_ATTEMPTS_MAX`] posts and [`WEBHOOK_RECOVERY_WINDOW_MS`] of the first failure.
    pub(super) fn on_webhook_answer(
        &mut self,
        url: &str,
        body: Vec<u8>,
        attempts: u32,
        until_ms: Option<u64>,
        result: Result<HttpResponse, String>,
    ) {
        let until_ms = until_ms.unwrap_or(self.now.mono_ms + WEBHOOK_RECOVERY_WINDOW_MS);
        if attempts >= WEBHOOK_RECOVERY_ATTEMPTS_MAX || self.now.mono_ms > until_ms {
            return;
        }
        let Some((owner, path)) = self.webhook_owner(url) else { return };
        // Not held: the callback is dropped, as every failed callback is.
        let _ = self.hold_for_lookup(Held::Webhook { path, attempts, until_ms }, &owner, body, result);
    }

    /// The connection a webhook URL belongs to (its URL is the webhook's base) and the webhook's
    /// path, if that path is one 0.5.3 recovers (a webhook elsewhere is nobody's to look up).
    fn webhook_owner(&self, webhook: &str) -> Option<(String, String)> {
        self.connections.values().find_map(|c| {
            let path = webhook.strip_prefix(&url::base(&c.url))?;
            let recoverable = ["/__darkmatter__/webhook/", "/__darkmatter__/webhook_relay/"];
            recoverable.iter().any(|p| path.starts_with(p)).then(|| (c.agent_id.to_string(), path.to_owned()))
        })
    }

    pub(crate) fn on_webhook_update(
        &mut self,
        message_id: &str,
        body: &[u8],
        source: Option<IpAddr>,
    ) -> Result<Vec<u8>, Refusal> {
        if !self.sent.contains_key(message_id) {
            return Err(Refusal::NotFound(format!("No sent message with ID '{message_id}'")));
        }
        let u: WebhookUpdate = wire::decode(body)?;
        if u.agent_id.len() > limits::AGENT_ID_BYTES_MAX
            || u.target_agent_id.as_ref().is_some_and(|t| t.len() > limits::AGENT_ID_BYTES_MAX)
        {
            return Err(Refusal::Invalid("agent_id too long".to_owned()));
        }
        let note = u.note.as_deref().map(|n| crate::identity::truncate_chars(n, NOTE_CHARS_MAX));
        match u.kind.as_str() {
            "response" => {
                self.admit(None, source)?;
                self.on_webhook_response(message_id, &u)?;
            }
            "received" | "responding" | "forwarded" | "expired" => {
                let verified = self.verify_webhook_update(message_id, &u)?;
                let sent = self.sent.get(message_id).expect("checked above");
                update_room(&sent.updates, verified).map_err(|e| Refusal::Limited(e.to_string()))?;
                // Charged once checked: a signed update to its signer (a connection's own share),
                // an unsigned one (0.5.3 never signs them) to its source address, so strangers
                // posting from a peer's address cannot crowd out that peer's signed updates.
                self.admit(verified.then_some(u.agent_id.as_str()), source)?;
                let update = UpdateRecord {
                    kind: u.kind.clone(),
                    agent_id: u.agent_id.clone(),
                    target_agent_id: u.target_agent_id.clone(),
                    note,
                    timestamp: self.now.iso(),
                    verified,
                };
                let changes = self.sent.add_update(message_id, update).into_iter().collect();
                self.persist(changes);
            }
            other => return Err(Refusal::Invalid(format!("Unknown update type: '{other}'"))),
        }
        Ok(wire::encode(&WebhookRecorded { success: true, recorded: u.kind }))
    }

    /// Checks our signature on a webhook update, when present. Unsigned updates are recorded as
    /// unverified (0.5.3 never signs them), except from a peer known to speak our form.
    fn verify_webhook_update(&mut self, message_id: &str, u: &WebhookUpdate) -> Result<bool, Refusal> {
        let Some(sig) = u.dm_signature_hex.as_deref() else {
            if self.connections.get(&u.agent_id).is_some_and(|c| c.speaks_v2) && u.kind != "received" {
                return Err(Refusal::Unauthorized(
                    "Signature required in the signed form this peer speaks (no downgrade).".to_owned(),
                ));
            }
            return Ok(false);
        };
        let id = self.bind_identity(&u.agent_id, None)?;
        let stamp = u.timestamp.as_deref().unwrap_or("");
        let stamp_us = check_fresh(self.now.wall_us, stamp)?;
        let bytes =
            webhook_v2_bytes(&u.kind, id.as_str(), message_id, u.target_agent_id.as_deref(), u.note.as_deref(), stamp);
        crypto::verify_hex(&*self.signatures, id.key(), &bytes, sig)
            .map_err(|_| Refusal::Unauthorized("Invalid signature".to_owned()))?;
        // Before the replay entry is spent, so that a refused update can be sent again later.
        if let Some(sent) = self.sent.get(message_id) {
            update_room(&sent.updates, true).map_err(|e| Refusal::Limited(e.to_string()))?;
        }
        let replay_key = sig_key("webhook", sig);
        let change = self.replay.admit(&replay_key, stamp_us, self.now.wall_us)?;
        self.persist(vec![change]);
        Ok(true)
    }

    /// A signed `forwarded` or `expired` update from us.
    pub(super) fn signed_update(
        &self,
        kind: &str,
        message_id: &str,
        target: Option<&str>,
        note: Option<&str>,
    ) -> Value {
        let stamp = self.now.iso();
        let bytes = webhook_v2_bytes(kind, self.me(), message_id, target, note, &stamp);
        json!({
            "type": kind, "agent_id": self.me(), "target_agent_id": target, "note": note, "timestamp": stamp,
            "dm_signature_hex": crypto::sign_hex(&*self.signatures, &self.passport, &bytes),
        })
    }

    /// A webhook `response` counts only when signed by its agent (0.5.3 takes it unsigned).
    fn on_webhook_response(&mut self, message_id: &str, u: &WebhookUpdate) -> Result<(), Refusal> {
        let (Some(text), Some(stamp), Some(sig)) = (&u.response, &u.timestamp, &u.signature_hex) else {
            return Err(Refusal::Unauthorized(
                "A response must be signed (agent_id, timestamp, signature_hex)".to_owned(),
            ));
        };
        if text.chars().count() > CONTENT_CHARS_MAX {
            return Err(Refusal::ContentTooLong(CONTENT_CHARS_MAX));
        }
        let id = self.bind_identity(&u.agent_id, u.from_public_key_hex.as_deref())?;
        let stamp_us = check_fresh(self.now.wall_us, stamp)?;
        let bytes = sign::legacy_message_bytes(id.as_str(), message_id, stamp, text)
            .map_err(|e| Refusal::Invalid(e.to_string()))?;
        crypto::verify_hex(&*self.signatures, id.key(), &bytes, sig)
            .map_err(|_| Refusal::Unauthorized("Invalid signature".to_owned()))?;
        if !self.may_answer(message_id, id.as_str()) {
            return Err(Refusal::Unauthorized("This agent was not sent this message".to_owned()));
        }
        if self.sent.get(message_id).is_some_and(|s| s.rows.responses >= RESPONSES_PER_SENT_MAX) {
            return Err(Refusal::Limited(format!(
                "Response limit reached ({RESPONSES_PER_SENT_MAX}) for this message"
            )));
        }
        let replay_key = sig_key("response", sig);
        let mut changes = vec![self.replay.admit(&replay_key, stamp_us, self.now.wall_us)?];
        let earns = match self.link_reply(message_id, id.as_str(), text, None) {
            Some((link, earns)) => {
                changes.extend(link);
                earns
            }
            None => false,
        };
        self.persist(changes);
        if earns {
            self.nudge(id.as_str(), limits::TRUST_DELTA_REPLIED);
        }
        // Logged under its own id: the original's id already names our outbound entry.
        let entry_id = format!("{message_id}#response-{}", self.sent.get(message_id).map_or(0, |s| s.responses.len()));
        self.log_conversation(&entry_id, text, id.as_str(), Vec::new(), "reply", true);
        self.wake_waiters();
        Ok(())
    }

    pub(crate) fn on_webhook_status(&mut self, message_id: &str) -> Result<Vec<u8>, Refusal> {
        let Some(sent) = self.sent.get(message_id) else {
            return Err(Refusal::NotFound(format!("No sent message with ID '{message_id}'")));
        };
        let status = WebhookStatus {
            message_id: sent.message_id.clone(),
            status: sent.status.as_str().to_owned(),
            initial_hops: sent.initial_hops as i64,
            created_at: sent.created_at.clone(),
            updates: sent
                .updates
                .iter()
                .map(|u| RecordedUpdate {
                    kind: u.kind.clone(),
                    agent_id: u.agent_id.clone(),
                    target_agent_id: u.target_agent_id.clone(),
                    note: u.note.clone(),
                    timestamp: u.timestamp.clone(),
                    verified: u.verified,
                })
                .collect(),
        };
        Ok(wire::encode(&status))
    }
}
