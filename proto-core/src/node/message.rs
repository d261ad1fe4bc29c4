//! Node glue for messages: the inbound accept path, the inbox, sending, forwarding, replies,
//! webhooks and waiters (to be split into the Inbox and Outbox owners).
//!
//! The inbound path is ordered cheapest-first so that junk costs little: activity, a duplicate
//! pre-check that reads only `message_id`, the full decode, field limits, room in the inbox, identity
//! binding, freshness, and only then one signature verification. Rate budgets (the peer's own, then
//! its party's share of the global window) are spent only after verification, so that junk spends
//! nobody's budget and nobody can spend another peer's by claiming its id.

use crate::message::{canonical_metadata, envelope_v2_bytes, ForwardArgs, SendArgs, Targets};
use core::net::IpAddr;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::crypto;
use crate::error::{CommandError, Refusal};
use crate::identity::AgentId;
use crate::io::{CommandId, Event, HttpResponse, InboundRequest, Method};
use crate::limits::{
    self, CONTENT_CHARS_MAX, HOPS_MAX, ID_BYTES_MAX, METADATA_BYTES_MAX, NOTE_CHARS_MAX, RESPONSES_PER_SENT_MAX,
};
use crate::node::{Call, Node};
use crate::outbox::{update_room, Batch};
use crate::output::{
    CommandOutput, Delivery, ExpiredSent, Failure, InboxEntry, InboxList, InboxMessageView, ResponseView, SentList,
    SentState, SentView, UpdateView, WaitResult,
};
use crate::replay::{check_fresh, sig_key};
use crate::sign::{self};
use crate::store::{
    self, Change, InboxMessage, ResponseRecord, SentMessage, SentStatus, Table, UpdateRecord, Verification,
};
use crate::url;
use crate::wire::message::{MessageEnvelope, MessageQueued};
use crate::wire::webhook::{RecordedUpdate, WebhookRecorded, WebhookStatus, WebhookUpdate};
use crate::wire::{self, ErrorBody};

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
    fn link_reply(
        &mut self,
        original: &str,
        from: &str,
        content: &str,
        reply_id: Option<&str>,
    ) -> Option<(Vec<Change>, bool)> {
        if !self.may_answer(original, from) {
            return None;
        }
        let response = ResponseRecord {
            agent_id: from.to_owned(),
            content: content.to_owned(),
            received_at: self.now.iso(),
            message_id: reply_id.map(str::to_owned),
        };
        self.sent.add_response(original, response)
    }

    /// Who may answer a sent message: a connection, an agent we sent it to, or the target of a
    /// signed forward made by someone who could already answer (so a stranger cannot sign a forward
    /// to itself and then answer).
    fn may_answer(&self, original: &str, from: &str) -> bool {
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

    /// Posts a status update to a webhook, best effort. Webhooks were validated when their message
    /// was accepted.
    fn notify_webhook(&mut self, webhook: &str, body: Value, forbid_private: bool) {
        self.transmit(
            Method::Post,
            webhook.to_owned(),
            wire::encode(&body),
            limits::PEER_CALL_TIMEOUT_MS,
            forbid_private,
            Call::FireAndForget,
        );
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
    fn signed_update(&self, kind: &str, message_id: &str, target: Option<&str>, note: Option<&str>) -> Value {
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

    // ----- outbound -----

    pub(crate) fn cmd_send(&mut self, cmd: CommandId, args: SendArgs) -> Result<(), CommandError> {
        let n = args.content.chars().count();
        if n == 0 || n > CONTENT_CHARS_MAX {
            return Err(CommandError::InvalidArgument(format!(
                "content must be 1..={CONTENT_CHARS_MAX} characters (got {n})"
            )));
        }
        if args.hops_remaining > HOPS_MAX {
            return Err(CommandError::InvalidArgument(format!("hops_remaining must be at most {HOPS_MAX}")));
        }
        if args.in_reply_to.as_ref().is_some_and(|r| r.len() > ID_BYTES_MAX || r.contains('\n')) {
            return Err(CommandError::InvalidArgument("in_reply_to is not a message id".to_owned()));
        }
        let (targets, kind) = self.resolve_targets(&args.targets)?;
        let mut metadata = args.metadata.clone();
        if kind == "broadcast" {
            metadata.insert("type".to_owned(), Value::String("broadcast".to_owned()));
        }
        // Checked after our own additions: receivers apply the same limit to what we send.
        if canonical_metadata(&metadata).len() > METADATA_BYTES_MAX {
            return Err(CommandError::InvalidArgument(format!("metadata exceeds {METADATA_BYTES_MAX} bytes")));
        }
        self.check_in_flight(targets.len())?;
        let message_id = self.unused_message_id();
        let envelope = MessageEnvelope {
            message_id: message_id.clone(),
            content: args.content.clone(),
            webhook: url::endpoint(&self.config.public_url, &format!("webhook/{message_id}")),
            hops_remaining: args.hops_remaining as i64,
            metadata: Some(metadata),
            in_reply_to: args.in_reply_to.clone(),
            ..Default::default()
        };
        let kind = if kind == "direct" && args.in_reply_to.is_some() { "reply" } else { kind };
        self.record_sent(&message_id, &args.content, kind, args.hops_remaining, args.in_reply_to.clone());
        self.log_conversation(
            &message_id,
            &args.content,
            targets.first().map_or("", String::as_str),
            targets.clone(),
            kind,
            false,
        );
        self.deliver(cmd, envelope, targets);
        Ok(())
    }

    /// Refuses a send before any side effect if its deliveries would exceed the in-flight bound.
    fn check_in_flight(&self, deliveries: usize) -> Result<(), CommandError> {
        if self.calls_in_flight() + deliveries > limits::OUTBOUND_IN_FLIGHT_MAX {
            return Err(CommandError::Limited("Too many calls in flight; try again shortly".to_owned()));
        }
        Ok(())
    }

    /// A fresh `msg-<12 hex>` id that names none of our records (a restored RNG could repeat one).
    fn unused_message_id(&mut self) -> String {
        loop {
            let id = format!("msg-{}", self.random_hex(6));
            if !self.sent.contains_key(&id) && !self.inbox.contains(&id) && !self.replay.seen(&id, self.now.wall_us) {
                return id;
            }
        }
    }

    fn resolve_targets(&self, targets: &Targets) -> Result<(Vec<String>, &'static str), CommandError> {
        match targets {
            Targets::Agents(ids) => {
                if ids.is_empty() {
                    return Err(CommandError::InvalidArgument(
                        "Give target_agent_id, target_agent_ids or broadcast=true".to_owned(),
                    ));
                }
                if ids.len() > limits::TARGETS_PER_SEND_MAX {
                    return Err(CommandError::InvalidArgument("Too many targets".to_owned()));
                }
                let mut out: Vec<String> = Vec::new();
                for id in ids {
                    if !self.connections.contains_key(id) {
                        return Err(CommandError::NotFound(format!("Not connected to '{id}'")));
                    }
                    if !out.contains(id) {
                        out.push(id.clone());
                    }
                }
                Ok((out, "direct"))
            }
            Targets::Broadcast { trust_min } => {
                if !(-1.0..=1.0).contains(trust_min) {
                    return Err(CommandError::InvalidArgument("trust_min must be within -1..1".to_owned()));
                }
                let out = self.connections.keys().filter(|id| self.trust_of(id) >= *trust_min).cloned().collect();
                Ok((out, "broadcast"))
            }
        }
    }

    fn record_sent(&mut self, message_id: &str, content: &str, kind: &str, hops: u32, in_reply_to: Option<String>) {
        let seq = self.next_seq();
        let sent = SentMessage {
            message_id: message_id.to_owned(),
            content: content.to_owned(),
            kind: kind.to_owned(),
            created_at: self.now.iso(),
            routed_to: Vec::new(),
            failed: Vec::new(),
            status: SentStatus::Active,
            initial_hops: hops,
            in_reply_to,
            responses: Vec::new(),
            updates: Vec::new(),
            seq,
            rows: store::ChildRows::default(),
        };
        let changes = self.sent.record(sent);
        self.persist(changes);
    }

    /// Signs one envelope per target and sends them; the command completes when all have answered.
    fn deliver(&mut self, cmd: CommandId, template: MessageEnvelope, targets: Vec<String>) {
        let batch_id = self.batches.next_id();
        let hops = template.hops_remaining as u32;
        if targets.is_empty() {
            let delivery = Delivery {
                message_id: template.message_id,
                routed_to: Vec::new(),
                failed: Vec::new(),
                hops_remaining: hops,
            };
            self.done(cmd, Ok(CommandOutput::Delivered(delivery)));
            return;
        }
        self.batches.open(
            batch_id,
            Batch {
                cmd: Some(cmd),
                message_id: template.message_id.clone(),
                hops_remaining: hops,
                outstanding: targets.len(),
                routed_to: Vec::new(),
                failed: Vec::new(),
            },
        );
        let metadata_json = canonical_metadata(template.metadata.as_ref().expect("set by the caller"));
        let legacy = self.legacy_signature(&template);
        for target in targets {
            let (url, local) = (self.connections[target.as_str()].url.clone(), self.connections[target.as_str()].local);
            let envelope = self.sign_envelope(&template, &target, &metadata_json, &legacy);
            let call = Call::Deliver { batch: batch_id, target };
            self.transmit(
                Method::Post,
                url::endpoint(&url, "message"),
                wire::encode(&envelope),
                limits::PEER_CALL_TIMEOUT_MS,
                !local,
                call,
            );
        }
    }

    /// Brings back sent messages' update and reply rows (see [`crate::outbox::Outbox::restore_rows`]);
    /// returns how many were skipped.
    pub(crate) fn restore_sent_rows(
        &mut self,
        rows: Vec<(Table, String, Vec<u8>)>,
        legacy: Vec<String>,
        on_disk: &std::collections::BTreeSet<String>,
    ) -> usize {
        let (changes, skipped) = self.sent.restore_rows(rows, legacy, on_disk);
        self.persist(changes);
        skipped
    }

    /// The legacy signature covers neither recipient nor metadata, so one send signs it once; our
    /// form is signed per recipient (it binds `to_agent_id`).
    fn sign_envelope(
        &self,
        template: &MessageEnvelope,
        target: &str,
        metadata_json: &str,
        legacy: &(String, String),
    ) -> MessageEnvelope {
        let mut e = template.clone();
        e.from_agent_id = self.me().to_owned();
        e.from_public_key_hex = Some(self.me().to_owned());
        e.to_agent_id = Some(target.to_owned());
        e.timestamp = legacy.0.clone();
        e.signature_hex = legacy.1.clone();
        e.dm_signature_hex =
            Some(crypto::sign_hex(&*self.signatures, &self.passport, &envelope_v2_bytes(&e, metadata_json)));
        e
    }

    /// The timestamp and legacy-form signature shared by every envelope of one send.
    fn legacy_signature(&self, template: &MessageEnvelope) -> (String, String) {
        let stamp = self.now.iso();
        // Our ids and timestamps never contain newlines, so the legacy form is always unambiguous.
        let bytes = sign::legacy_message_bytes(self.me(), &template.message_id, &stamp, &template.content)
            .expect("our ids have no newline");
        (stamp, crypto::sign_hex(&*self.signatures, &self.passport, &bytes))
    }

    pub(crate) fn on_delivery(&mut self, batch_id: u64, target: String, result: Result<HttpResponse, String>) {
        let outcome = match result {
            Ok(r) if (200..300).contains(&r.status) => Ok(()),
            Ok(r) => Err(wire::decode::<ErrorBody>(&r.body)
                .map(|b| b.error)
                .unwrap_or_else(|_| format!("HTTP {}", r.status))),
            Err(e) => Err(e),
        };
        let Some(message_id) = self.batches.message_id(batch_id) else { return };
        if outcome.is_ok() {
            // At once in memory, not when the slowest target has answered: a reply from this
            // target may arrive before then, and it may answer and earn the reply bonus.
            if let Some(sent) = self.sent.get_mut(message_id) {
                sent.routed_to.push(target.clone());
            }
        }
        if let Some(batch) = self.batches.record(batch_id, target, outcome) {
            self.finish_batch(batch);
        }
    }

    fn finish_batch(&mut self, batch: Batch) {
        let mut changes = Vec::new();
        let now_iso = self.now.iso();
        for target in &batch.routed_to {
            if let Some(conn) = self.connections.get_mut(target) {
                conn.messages_sent += 1;
                conn.last_activity = now_iso.clone();
                changes.push(Change::put(Table::Connections, target, &*conn));
            }
        }
        for target in &batch.routed_to {
            if self.connections.contains_key(target) {
                self.nudge(target, limits::TRUST_DELTA_DELIVERED);
            }
        }
        for (target, _) in &batch.failed {
            if self.connections.contains_key(target) {
                self.nudge(target, limits::TRUST_DELTA_DELIVERY_FAILED);
            }
        }
        if let Some(sent) = self.sent.get_mut(&batch.message_id) {
            // routed_to grew as each delivery succeeded (on_delivery); stored once, here.
            sent.failed.extend(batch.failed.iter().cloned());
            changes.push(Change::put(Table::Sent, &batch.message_id, &*sent));
        }
        self.persist(changes);
        if let Some(cmd) = batch.cmd {
            let delivery = Delivery {
                failed: failures(&batch.failed),
                message_id: batch.message_id,
                routed_to: batch.routed_to,
                hops_remaining: batch.hops_remaining,
            };
            self.done(cmd, Ok(CommandOutput::Delivered(delivery)));
        }
    }

    pub(crate) fn cmd_forward(&mut self, cmd: CommandId, args: ForwardArgs) -> Result<(), CommandError> {
        let Some(msg) = self.inbox.get(&args.message_id).cloned() else {
            return Err(CommandError::NotFound(format!("No inbox message with ID '{}'", args.message_id)));
        };
        if args.note.as_ref().is_some_and(|n| n.chars().count() > NOTE_CHARS_MAX) {
            return Err(CommandError::InvalidArgument(format!("note must be at most {NOTE_CHARS_MAX} characters")));
        }
        let (targets, _) = self.resolve_targets(&Targets::Agents(args.targets.clone()))?;
        let mut metadata: Map<String, Value> = serde_json::from_str(&msg.metadata_json).unwrap_or_default();
        let mut path: Vec<String> = metadata
            .get("forwarded_path")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        if !path.contains(&msg.from_agent_id) {
            path.push(msg.from_agent_id.clone());
        }
        if let Some(looping) = targets.iter().find(|t| path.contains(t)) {
            return Err(CommandError::InvalidArgument(format!("Loop: '{looping}' already carried this message")));
        }
        if msg.hops_remaining == 0 {
            let update =
                self.signed_update("expired", &msg.message_id, None, Some("Message expired — no hops remaining."));
            self.notify_webhook(&msg.webhook, update, !msg.from_local);
            return Err(CommandError::InvalidArgument(
                "Message has no hops remaining; it cannot be forwarded".to_owned(),
            ));
        }
        self.check_in_flight(targets.len() * 2)?;
        path.push(self.me().to_owned());
        metadata.insert("forwarded".to_owned(), Value::Bool(true));
        metadata.insert("forwarded_by".to_owned(), Value::String(self.me().to_owned()));
        metadata.insert("forwarded_path".to_owned(), json!(path));
        if canonical_metadata(&metadata).len() > METADATA_BYTES_MAX {
            return Err(CommandError::Limited("Forwarding path too long for metadata".to_owned()));
        }
        for t in &targets {
            let update = self.signed_update("forwarded", &msg.message_id, Some(t), args.note.as_deref());
            self.notify_webhook(&msg.webhook, update, !msg.from_local);
        }
        let hops = msg.hops_remaining - 1;
        let envelope = MessageEnvelope {
            message_id: msg.message_id.clone(),
            content: msg.content.clone(),
            webhook: msg.webhook.clone(),
            hops_remaining: hops as i64,
            metadata: Some(metadata),
            in_reply_to: msg.in_reply_to.clone(),
            ..Default::default()
        };
        let change = self.inbox.remove(&msg.message_id);
        self.persist(vec![change]);
        self.record_sent(&msg.message_id, &msg.content, "forward", hops, msg.in_reply_to.clone());
        self.log_conversation(
            &msg.message_id,
            &msg.content,
            targets.first().map_or("", String::as_str),
            targets.clone(),
            "forward",
            false,
        );
        self.deliver(cmd, envelope, targets);
        Ok(())
    }

    // ----- local views -----

    pub(crate) fn inbox_sorted(&self) -> Vec<&InboxMessage> {
        self.inbox.sorted()
    }

    pub(crate) fn cmd_list_inbox(&self) -> InboxList {
        let messages: Vec<InboxEntry> = self
            .inbox_sorted()
            .into_iter()
            .map(|m| InboxEntry {
                message_id: m.message_id.clone(),
                from_agent_id: m.from_agent_id.clone(),
                from_display_name: self.connections.get(&m.from_agent_id).map(|c| c.display_name.clone()),
                content: m.content.clone(),
                received_at: m.received_at.clone(),
                verified: m.verified,
                verification: m.verification,
                hops_remaining: m.hops_remaining,
                in_reply_to: m.in_reply_to.clone(),
                from_connection: m.from_connection,
            })
            .collect();
        InboxList { total: messages.len(), messages }
    }

    fn message_view(m: &InboxMessage) -> InboxMessageView {
        // Most messages carry no metadata: skip the parser for the canonical empty object.
        let metadata: Value = match m.metadata_json.as_str() {
            "{}" => Value::Object(Map::new()),
            text => serde_json::from_str(text).unwrap_or(Value::Object(Map::new())),
        };
        InboxMessageView {
            message_id: m.message_id.clone(),
            from_agent_id: m.from_agent_id.clone(),
            content: m.content.clone(),
            received_at: m.received_at.clone(),
            timestamp: m.timestamp.clone(),
            verified: m.verified,
            verification: m.verification,
            hops_remaining: m.hops_remaining,
            can_forward: m.hops_remaining > 0,
            in_reply_to: m.in_reply_to.clone(),
            metadata,
            webhook: m.webhook.clone(),
            from_connection: m.from_connection,
            consumed: false,
        }
    }

    pub(crate) fn cmd_get_message(
        &mut self,
        message_id: &str,
        consume: bool,
    ) -> Result<InboxMessageView, CommandError> {
        let Some(m) = self.inbox.get(message_id) else {
            return Err(CommandError::NotFound(format!("No inbox message with ID '{message_id}'")));
        };
        let mut out = Self::message_view(m);
        if consume {
            let change = self.inbox.remove(message_id);
            self.persist(vec![change]);
            out.consumed = true;
        }
        Ok(out)
    }

    fn sent_view(s: &SentMessage, full: bool) -> SentView {
        SentView {
            message_id: s.message_id.clone(),
            kind: s.kind.clone(),
            status: s.status.into(),
            created_at: s.created_at.clone(),
            routed_to: s.routed_to.clone(),
            failed: failures(&s.failed),
            initial_hops: s.initial_hops,
            in_reply_to: s.in_reply_to.clone(),
            response_count: s.responses.len(),
            content: s.content.clone(),
            responses: full.then(|| responses(s)),
            updates: full.then(|| {
                s.updates
                    .iter()
                    .map(|u| UpdateView {
                        kind: u.kind.clone(),
                        agent_id: u.agent_id.clone(),
                        target_agent_id: u.target_agent_id.clone(),
                        note: u.note.clone(),
                        timestamp: u.timestamp.clone(),
                        verified: u.verified,
                    })
                    .collect()
            }),
        }
    }

    pub(crate) fn cmd_list_sent(&self) -> SentList {
        let mut v: Vec<&SentMessage> = self.sent.values().collect();
        v.sort_by_key(|s| std::cmp::Reverse(s.seq));
        let messages: Vec<SentView> = v.into_iter().map(|s| Self::sent_view(s, false)).collect();
        SentList { total: messages.len(), messages }
    }

    pub(crate) fn cmd_get_sent(&self, message_id: &str) -> Result<SentView, CommandError> {
        self.sent
            .get(message_id)
            .map(|s| Self::sent_view(s, true))
            .ok_or_else(|| CommandError::NotFound(format!("No sent message with ID '{message_id}'")))
    }

    pub(crate) fn cmd_expire_sent(&mut self, message_id: &str) -> Result<ExpiredSent, CommandError> {
        let Some(s) = self.sent.get_mut(message_id) else {
            return Err(CommandError::NotFound(format!("No sent message with ID '{message_id}'")));
        };
        s.status = SentStatus::Expired;
        let change = Change::put(Table::Sent, message_id, &*s);
        self.persist(vec![change]);
        self.wake_waiters();
        Ok(ExpiredSent { message_id: message_id.to_owned(), status: SentState::Expired })
    }

    pub(crate) fn cmd_wait(&mut self, cmd: CommandId, message_id: &str, timeout_ms: u64) -> Result<(), CommandError> {
        if !self.sent.contains_key(message_id) {
            return Err(CommandError::NotFound(format!("No sent message with ID '{message_id}'")));
        }
        if timeout_ms > limits::WAIT_TIMEOUT_S_MAX * 1000 {
            return Err(CommandError::InvalidArgument(format!(
                "timeout_seconds must be at most {}",
                limits::WAIT_TIMEOUT_S_MAX
            )));
        }
        let deadline_ms = self.now.mono_ms.saturating_add(timeout_ms);
        self.waiters.add(cmd, message_id, deadline_ms).map_err(|e| CommandError::Limited(e.to_string()))?;
        self.wake_waiters();
        Ok(())
    }

    /// Completes every wait whose message has a response or was expired.
    pub(crate) fn wake_waiters(&mut self) {
        let sent = &self.sent;
        let ready = self.waiters.take_where(|w| {
            sent.get(&w.message_id).is_none_or(|s| !s.responses.is_empty() || s.status == SentStatus::Expired)
        });
        for w in ready {
            let result = if self.sent.contains_key(&w.message_id) {
                Ok(CommandOutput::Wait(self.wait_result(&w.message_id, false)))
            } else {
                Err(CommandError::NotFound(format!("Sent message '{}' was dropped", w.message_id)))
            };
            self.done(w.cmd, result);
        }
    }

    pub(crate) fn expire_waiters(&mut self) {
        for w in self.waiters.take_expired(self.now.mono_ms) {
            let v = self.wait_result(&w.message_id, true);
            self.done(w.cmd, Ok(CommandOutput::Wait(v)));
        }
    }

    fn wait_result(&self, message_id: &str, timed_out: bool) -> WaitResult {
        let s = self.sent.get(message_id);
        WaitResult {
            message_id: message_id.to_owned(),
            timed_out,
            status: s.map(|s| s.status.into()),
            responses: s.map(responses).unwrap_or_default(),
        }
    }
}

/// Failed deliveries as a result lists them.
fn failures(failed: &[(String, String)]) -> Vec<Failure> {
    failed.iter().map(|(a, e)| Failure { agent_id: a.clone(), error: e.clone() }).collect()
}

/// A sent message's replies as a result lists them.
fn responses(s: &SentMessage) -> Vec<ResponseView> {
    s.responses
        .iter()
        .map(|r| ResponseView {
            agent_id: r.agent_id.clone(),
            content: r.content.clone(),
            received_at: r.received_at.clone(),
            message_id: r.message_id.clone(),
        })
        .collect()
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
