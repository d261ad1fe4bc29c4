//! Node glue for sending: the `send_message` and `forward_message` commands, the signed envelopes,
//! their deliveries (batches) and the sent records they leave in the outbox. It may touch the
//! outbox, the inbox (a forward consumes its message) and the connections' counters.

use crate::message::{canonical_metadata, envelope_v2_bytes, ForwardArgs, SendArgs, Targets};

use serde_json::{json, Map, Value};

use crate::crypto;
use crate::error::CommandError;
use crate::healing::Held;
use crate::io::{CommandId, HttpResponse, Method};
use crate::limits::{self, CONTENT_CHARS_MAX, HOPS_MAX, ID_BYTES_MAX, METADATA_BYTES_MAX, NOTE_CHARS_MAX};
use crate::node::{Call, Node};
use crate::outbox::Batch;
use crate::output::{CommandOutput, Delivery, Failure};
use crate::sign;
use crate::store::{self, Change, SentMessage, SentStatus, Table};
use crate::url;
use crate::wire::message::MessageEnvelope;
use crate::wire::{self, ErrorBody};

/// Failed deliveries as a result lists them.
pub(super) fn failures(failed: &[(String, String)]) -> Vec<Failure> {
    failed.iter().map(|(a, e)| Failure { agent_id: a.clone(), error: e.clone() }).collect()
}

impl Node {
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
            webhook: self.webhook_for(&message_id),
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
        if let Some(metadata) = envelope.metadata.as_ref() {
            self.await_started(&message_id, metadata, &targets);
        }
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
            relayed: Vec::new(),
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
                relayed: Vec::new(),
                failed: Vec::new(),
                hops_remaining: hops,
            };
            self.done(cmd, Ok(CommandOutput::Delivered(Box::new(delivery))));
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
                relayed: Vec::new(),
                failed: Vec::new(),
            },
        );
        let metadata_json = canonical_metadata(template.metadata.as_ref().expect("set by the caller"));
        let legacy = self.legacy_signature(&template);
        for target in targets {
            let (url, local) = (self.connections[target.as_str()].url.clone(), self.connections[target.as_str()].local);
            let envelope = self.sign_envelope(&template, &target, &metadata_json, &legacy);
            let body = wire::encode(&envelope);
            let call = Call::Deliver { batch: batch_id, target, body: body.clone(), retried: false };
            self.transmit(
                Method::Post,
                url::endpoint(&url, "message"),
                body,
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

    /// A delivery's answer. A first failure that looks like a move is held for a peer lookup
    /// ([`Node::hold_for_lookup`]), which retries it or fails it later.
    pub(crate) fn on_delivery(
        &mut self,
        batch_id: u64,
        target: String,
        body: Vec<u8>,
        retried: bool,
        result: Result<HttpResponse, String>,
    ) {
        let failed = !matches!(&result, Ok(r) if (200..300).contains(&r.status));
        if !failed {
            return self.record_delivery(batch_id, target, result);
        }
        let result = if retried {
            result
        } else {
            // The body is needed again if the lookup cannot run and the delivery is relayed.
            match self.hold_for_lookup(Held::Delivery { batch: batch_id }, &target, body.clone(), result) {
                Ok(()) => return,
                Err(result) => result,
            }
        };
        self.relay_or_fail(batch_id, target, body, result);
    }

    /// Records a delivery that went through an anchor's relay: buffered there, not acknowledged by
    /// the recipient, so it is reported `relayed`, never `delivered`.
    pub(crate) fn record_relayed(&mut self, batch_id: u64, target: String) {
        if let Some(sent) = self.batches.message_id(batch_id).and_then(|id| self.sent.get_mut(id)) {
            sent.relayed.push(target.clone());
        }
        if let Some(batch) = self.batches.record_relayed(batch_id, target) {
            self.finish_batch(batch);
        }
    }

    /// Records a delivery's final outcome in its batch.
    pub(crate) fn record_delivery(&mut self, batch_id: u64, target: String, result: Result<HttpResponse, String>) {
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
                relayed: batch.relayed,
                hops_remaining: batch.hops_remaining,
            };
            self.done(cmd, Ok(CommandOutput::Delivered(Box::new(delivery))));
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
}
