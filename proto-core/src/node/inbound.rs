//! Node glue for an inbound message: the accept path and the link of a reply to what we sent.
//! It may touch the inbox, the outbox (to link replies), the replay cache, rate limits and the
//! memory; it answers the sender and tells the agent.
//!
//! The inbound path is ordered cheapest-first so that junk costs little: activity, a duplicate
//! pre-check that reads only `message_id`, the full decode, field limits, room in the inbox, identity
//! binding, freshness, and only then one signature verification. Rate budgets (the peer's own, then
//! its party's share of the global window) are spent only after verification, so that junk spends
//! nobody's budget and nobody can spend another peer's by claiming its id.

use crate::message::{canonical_metadata, envelope_v2_bytes};
use core::net::IpAddr;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::crypto;
use crate::error::Refusal;
use crate::identity::AgentId;
use crate::io::{Event, InboundRequest};
use crate::limits::{self, CONTENT_CHARS_MAX, HOPS_MAX, ID_BYTES_MAX, METADATA_BYTES_MAX};
use crate::node::Node;
use crate::replay::check_fresh;
use crate::sign;
use crate::store::{Change, InboxMessage, ResponseRecord, Table, Verification};
use crate::url;
use crate::wire;
use crate::wire::message::{MessageEnvelope, MessageQueued};

/// Just the id, for the duplicate pre-check: serde skips every other field without building it.
#[derive(Deserialize)]
struct IdOnly<'a> {
    #[serde(borrow, default)]
    message_id: Option<std::borrow::Cow<'a, str>>,
}

/// The id of a body that starts `{"message_id":"<id>"`, as both 0.5.3 and we write envelopes, read
/// without parsing the rest. `None` (fall back to parsing) for any other shape or an escaped id.
fn leading_message_id(body: &[u8]) -> Option<&str> {
    const PREFIX: &[u8] = b"{\"message_id\":";
    let rest = body.strip_prefix(PREFIX)?;
    let rest = rest.strip_prefix(b" ").unwrap_or(rest).strip_prefix(b"\"")?;
    let end = rest.iter().take(ID_BYTES_MAX + 1).position(|&b| b == b'"' || b == b'\\')?;
    if rest[end] != b'"' {
        return None;
    }
    std::str::from_utf8(&rest[..end]).ok()
}

/// What the checks established about an inbound envelope.
struct Checked {
    /// The sender, its key parsed once by the checks.
    from: AgentId,
    /// What the signature established.
    verification: Verification,
    stamp_us: i64,
    metadata_json: String,
    from_local: bool,
    is_broadcast: bool,
    is_forward: bool,
}

impl Node {
    // ----- inbound -----

    pub(crate) fn on_message(&mut self, r: &InboundRequest) -> Result<Vec<u8>, Refusal> {
        if self.is_inactive() {
            return Err(Refusal::Unavailable("Agent is currently inactive".to_owned()));
        }
        // Duplicate pre-check before any other work (and long before any signature work).
        let duplicate = match leading_message_id(&r.body) {
            Some(id) => self.is_duplicate(id),
            None => {
                matches!(serde_json::from_slice::<IdOnly>(&r.body), Ok(IdOnly { message_id: Some(id) }) if self.is_duplicate(&id))
            }
        };
        if duplicate {
            return Err(Refusal::Duplicate);
        }
        let env: MessageEnvelope = wire::decode(&r.body)?;
        let checked = self.check_envelope(&env, r.source)?;
        // Budgets are spent only now that the signature verified: junk and forgeries spend none.
        self.admit_peer(&env.from_agent_id)?;
        self.admit(Some(&env.from_agent_id), r.source)?;
        self.accept_message(env, checked)
    }

    fn is_duplicate(&self, message_id: &str) -> bool {
        // Our own (or forwarded-by-us) messages coming back are loops.
        // An unread message keeps its id even after its replay entry expires.
        self.replay.seen(message_id, self.now.wall_us)
            || self.sent.contains_key(message_id)
            || self.inbox.contains(message_id)
    }

    /// Every check of an inbound envelope, signature last.
    fn check_envelope(&mut self, env: &MessageEnvelope, source: Option<IpAddr>) -> Result<Checked, Refusal> {
        let mut missing = Vec::new();
        for (name, value) in [("message_id", &env.message_id), ("content", &env.content), ("webhook", &env.webhook)] {
            if value.is_empty() {
                missing.push(name);
            }
        }
        if !missing.is_empty() {
            return Err(Refusal::MissingFields(missing.join(", ")));
        }
        if env.message_id.len() > ID_BYTES_MAX || env.message_id.contains('\n') {
            return Err(Refusal::Invalid("message_id too long or malformed".to_owned()));
        }
        if env.content.chars().count() > CONTENT_CHARS_MAX {
            return Err(Refusal::ContentTooLong(CONTENT_CHARS_MAX));
        }
        if env.from_agent_id.is_empty() {
            return Err(Refusal::Invalid("Missing from_agent_id.".to_owned()));
        }
        if env.from_agent_id.len() > limits::AGENT_ID_BYTES_MAX {
            return Err(Refusal::Invalid("from_agent_id too long".to_owned()));
        }
        if self.is_duplicate(&env.message_id) {
            return Err(Refusal::Duplicate);
        }
        self.inbox.has_room(self.connections.contains_key(&env.from_agent_id), &env.from_agent_id)?;
        let from_local = source.is_some_and(url::is_local_ip);
        let hook = url::validate(&env.webhook).map_err(|e| Refusal::Invalid(format!("Invalid webhook: {e}")))?;
        // A remote peer must not make us call into our own network, or into any other address
        // that is not an ordinary public host (cloud metadata sits in CGNAT space).
        if !from_local && url::is_special_purpose_url(&hook) {
            return Err(Refusal::Invalid(
                "Invalid webhook: private or special-purpose address from a non-local peer".to_owned(),
            ));
        }
        if env.hops_remaining < 0 {
            return Err(Refusal::Invalid("hops_remaining must not be negative".to_owned()));
        }
        let no_metadata = Map::new();
        let metadata = env.metadata.as_ref().unwrap_or(&no_metadata);
        let metadata_json = canonical_metadata(metadata);
        if metadata_json.len() > METADATA_BYTES_MAX {
            return Err(Refusal::Invalid(format!("metadata exceeds {METADATA_BYTES_MAX} bytes")));
        }
        if let Some(reply) = &env.in_reply_to {
            if reply.len() > ID_BYTES_MAX {
                return Err(Refusal::Invalid("in_reply_to too long".to_owned()));
            }
        }
        // A connected sender's key is already parsed; decompressing it again would cost a tenth of
        // a verification.
        let id = match self.connections.get(&env.from_agent_id) {
            Some(conn) if env.from_public_key_hex.as_deref().is_none_or(|k| k == env.from_agent_id) => {
                conn.agent_id.clone()
            }
            _ => self.bind_identity(&env.from_agent_id, env.from_public_key_hex.as_deref())?,
        };
        if id == *self.passport.agent_id() {
            return Err(Refusal::Unauthorized("Message claims to be from this node".to_owned()));
        }
        if let Some(to) = &env.to_agent_id {
            if to != self.me() {
                return Err(Refusal::Unauthorized("Message is addressed to another agent".to_owned()));
            }
        }
        if env.signature_hex.is_empty() && env.dm_signature_hex.is_none() {
            return Err(Refusal::Unauthorized("Signature required — unsigned messages are not accepted.".to_owned()));
        }
        let stamp_us = check_fresh(self.now.wall_us, &env.timestamp)?;
        let speaks_v2 = self.connections.get(id.as_str()).is_some_and(|c| c.speaks_v2);
        let key = *id.key();
        let verification = match env.dm_signature_hex.as_deref() {
            // Our form covers every legacy field too, so one verification suffices.
            Some(sig) => {
                if env.to_agent_id.is_none() {
                    return Err(Refusal::Unauthorized("Signed form requires to_agent_id".to_owned()));
                }
                crypto::verify_hex(&*self.signatures, &key, &envelope_v2_bytes(env, &metadata_json), sig).map_err(
                    |_| {
                        Refusal::Unauthorized(
                            "Invalid signature — message authenticity could not be verified.".to_owned(),
                        )
                    },
                )?;
                Verification::SignedForUs
            }
            None if speaks_v2 => {
                return Err(Refusal::Unauthorized(
                    "Signature required in the signed form this peer speaks (no downgrade).".to_owned(),
                ));
            }
            None => {
                let bytes =
                    sign::legacy_message_bytes(&env.from_agent_id, &env.message_id, &env.timestamp, &env.content)
                        .map_err(|e| Refusal::Invalid(e.to_string()))?;
                crypto::verify_hex(&*self.signatures, &key, &bytes, &env.signature_hex).map_err(|_| {
                    Refusal::Unauthorized("Invalid signature — message authenticity could not be verified.".to_owned())
                })?;
                // The legacy form names no recipient: only a connection's own 0.5.3 envelopes are
                // taken as meant for us; anyone else's may be re-sent by an agent they reached.
                if self.connections.contains_key(id.as_str()) {
                    Verification::LegacyFromConnection
                } else {
                    Verification::LegacyRelayable
                }
            }
        };
        Ok(Checked {
            from: id,
            verification,
            stamp_us,
            metadata_json,
            from_local,
            is_broadcast: metadata.get("type").and_then(Value::as_str) == Some("broadcast"),
            is_forward: metadata.get("forwarded").and_then(Value::as_bool) == Some(true),
        })
    }

    fn accept_message(&mut self, env: MessageEnvelope, checked: Checked) -> Result<Vec<u8>, Refusal> {
        let mut changes = vec![self.replay.admit(&env.message_id, checked.stamp_us, self.now.wall_us)?];
        let now_iso = self.now.iso();
        let from_connection = if let Some(conn) = self.connections.get_mut(&env.from_agent_id) {
            conn.messages_received += 1;
            conn.last_activity = now_iso.clone();
            changes.push(Change::put(Table::Connections, &env.from_agent_id, &*conn));
            true
        } else {
            false
        };
        let seq = self.next_seq();
        let hops = env.hops_remaining.min(HOPS_MAX as i64) as u32;
        let msg = InboxMessage {
            message_id: env.message_id.clone(),
            from_agent_id: env.from_agent_id.clone(),
            content: env.content,
            received_at: now_iso.clone(),
            verified: checked.verification.verified(),
            verification: checked.verification,
            hops_remaining: hops,
            in_reply_to: env.in_reply_to.clone(),
            webhook: env.webhook.clone(),
            metadata_json: checked.metadata_json,
            timestamp: env.timestamp,
            from_connection,
            from_local: checked.from_local,
            seq,
        };
        let reply_content = msg.content.clone();
        changes.push(self.inbox.accept(msg));
        let mut linked = false;
        // Only our form covers `in_reply_to`; in 0.5.3's form anyone could attach a reply link.
        let reply_link = env.in_reply_to.as_ref().filter(|_| checked.verification == Verification::SignedForUs);
        if let Some(original) = reply_link {
            if let Some((link, earns)) =
                self.link_reply(original, &env.from_agent_id, &reply_content, Some(&env.message_id))
            {
                changes.extend(link);
                linked = earns;
            }
        }
        self.persist(changes);
        if linked {
            self.nudge(&env.from_agent_id, limits::TRUST_DELTA_REPLIED);
        }
        let kind = if checked.is_broadcast {
            "broadcast"
        } else if env.in_reply_to.is_some() {
            "reply"
        } else if checked.is_forward {
            "forward"
        } else {
            "direct"
        };
        self.log_conversation(
            &env.message_id,
            &reply_content,
            &env.from_agent_id,
            vec![self.me().to_owned()],
            kind,
            true,
        );
        self.emit(Event::MessageReceived {
            message_id: env.message_id.clone(),
            from_agent_id: checked.from,
            in_reply_to: env.in_reply_to.clone(),
        });
        self.wake_waiters();
        self.spawn_for_message(&env.message_id, &env.from_agent_id, checked.is_broadcast);
        self.check_notice(&env.message_id);
        self.notify_webhook(&env.webhook, json!({"type": "received", "agent_id": self.me()}), !checked.from_local);
        let position = self.inbox.len();
        if checked.is_broadcast {
            return Ok(wire::encode(
                &json!({"status": "broadcast_received", "success": true, "queued": true, "queue_position": position}),
            ));
        }
        Ok(wire::encode(&MessageQueued { success: true, queued: true, queue_position: position }))
    }

    /// Records a reply to one of our sent messages, if `from` may answer it. Returns the change.
    /// Returns the change, and whether the reply completes an exchange that earns trust: the first
    /// answer from an agent we sent the message to (one bonus per message and agent, so replies
    /// cannot be farmed).
    pub(super) fn link_reply(
        &mut self,
        original: &str,
        from: &str,
        content: &str,
        reply_id: Option<&str>,
    ) -> Option<(Vec<Change>, bool)> {
        if !self.may_answer(original, from) {
            return None;
        }
        let now = self.now;
        self.sent.add_response(original, || ResponseRecord {
            agent_id: from.to_owned(),
            content: content.to_owned(),
            received_at: now.iso(),
            message_id: reply_id.map(str::to_owned),
        })
    }

    /// Who may answer a sent message: a connection, an agent we sent it to, or the target of a
    /// signed forward made by someone who could already answer (so a stranger cannot sign a forward
    /// to itself and then answer).
    pub(super) fn may_answer(&self, original: &str, from: &str) -> bool {
        let Some(sent) = self.sent.get(original) else { return false };
        if self.connections.contains_key(from) || sent.routed_to.iter().any(|a| a == from) {
            return true;
        }
        let mut eligible: Vec<&str> = sent.routed_to.iter().map(String::as_str).collect();
        for u in sent.updates.iter().filter(|u| u.verified && u.kind == "forwarded") {
            let reporter_ok = eligible.contains(&u.agent_id.as_str()) || self.connections.contains_key(&u.agent_id);
            if let (true, Some(t)) = (reporter_ok, u.target_agent_id.as_deref()) {
                if t == from {
                    return true;
                }
                eligible.push(t);
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::leading_message_id;

    #[test]
    fn the_fast_id_read_agrees_with_json_or_declines() {
        assert_eq!(leading_message_id(br#"{"message_id":"msg-1","content":"x"}"#), Some("msg-1"));
        assert_eq!(leading_message_id(br#"{"message_id": "msg-1"}"#), Some("msg-1"));
        assert_eq!(leading_message_id(br#"{"message_id":"a\"b"}"#), None, "escapes fall back to parsing");
        assert_eq!(leading_message_id(br#"{"content":"x","message_id":"m"}"#), None);
        assert_eq!(leading_message_id(br#"{"message_id":5}"#), None);
        assert_eq!(leading_message_id(b"{\"message_id\":\"unterminated"), None);
    }
}
