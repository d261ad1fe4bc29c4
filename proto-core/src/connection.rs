//! The connection handshake: request, answer, proof, acceptance, rejection and disconnect; pending
//! requests in both directions; key pinning.
//!
//! Rules that differ from 0.5.3 (SPEC.md §Connections):
//! - agent id = key, always: a request whose key differs from its id is refused;
//! - local auto-accept trusts the TCP source address, never the URL the requester claims;
//! - an acceptance must match a pending outbound request *and* come from the agent that answered it,
//!   signed in our form when that agent speaks it; nobody can accept on our behalf (no `accept_pending`
//!   endpoint exists);
//! - a repeated request from a connected agent never re-points its URL (only a signed `peer_update` or
//!   a request signed in our form does);
//! - the challenge proof is really checked;
//! - disconnect is a signed notice the other side honours.

use serde_json::json;

use crate::error::{CommandError, Refusal};
use crate::identity::{truncate_chars, AgentId};
use crate::io::{CommandId, Event, HttpResponse, InboundRequest, Method};
use crate::limits::{self, BIO_CHARS_MAX, CHALLENGE_TTL_S, DISPLAY_NAME_CHARS_MAX, PENDING_OUTBOUND_MAX, PENDING_REQUESTS_MAX, REQUEST_EXPIRY_S};
use crate::node::{Call, Node};
use crate::sign::{self, DOMAIN_CHALLENGE, V2_ACCEPTED, V2_CONNECT, V2_CONNECT_ANSWER, V2_DISCONNECT};
use crate::store::{Change, Connection, PendingIn, PendingOut, Table};
use crate::time::{is_fresh, parse_iso};
use crate::url;
use crate::wire::connection::{Ack, ConnectionAccepted, ConnectionAnswer, ConnectionProof, ConnectionRequest, Disconnect};
use crate::wire::{self, ErrorBody};

/// Parses a peer-supplied id and its optional key field, binding one to the other.
pub(crate) fn bind_identity(agent_id: &str, key_hex: Option<&str>) -> Result<AgentId, Refusal> {
    let id = AgentId::parse(agent_id).map_err(|e| Refusal::Invalid(e.to_string()))?;
    match key_hex {
        Some(k) if !k.is_empty() && k != agent_id => Err(Refusal::Unauthorized("Public key must match agent_id".to_owned())),
        _ => Ok(id),
    }
}

/// Checks a timestamp we were given for freshness.
pub(crate) fn check_fresh(now_us: i64, stamp: &str) -> Result<i64, Refusal> {
    let t = parse_iso(stamp).ok_or(Refusal::Stale(limits::FRESHNESS_WINDOW_S))?;
    if !is_fresh(now_us, t, limits::FRESHNESS_WINDOW_S) {
        return Err(Refusal::Stale(limits::FRESHNESS_WINDOW_S));
    }
    Ok(t)
}

/// What we learn about a peer from a handshake.
pub(crate) struct PeerDetails {
    pub agent_id: AgentId,
    pub url: String,
    pub display_name: String,
    pub bio: String,
    pub wallets: std::collections::BTreeMap<String, String>,
    pub created_at: Option<String>,
}

fn opt(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("")
}

impl Node {
    // ----- inbound: someone asks us -----

    pub(crate) fn on_connection_request(&mut self, r: &InboundRequest) -> Result<Vec<u8>, Refusal> {
        if self.is_inactive() {
            return Err(Refusal::Unavailable("Agent is currently inactive".to_owned()));
        }
        self.admit_global()?;
        let req: ConnectionRequest = wire::decode(&r.body)?;
        let mut missing = Vec::new();
        if req.from_agent_id.is_empty() {
            missing.push("from_agent_id");
        }
        if req.from_agent_url.is_empty() {
            missing.push("from_agent_url");
        }
        if !missing.is_empty() {
            return Err(Refusal::MissingFields(missing.join(", ")));
        }
        let id = bind_identity(&req.from_agent_id, req.from_agent_public_key_hex.as_deref())?;
        url::validate(&req.from_agent_url).map_err(Refusal::Invalid)?;
        if id == *self.passport.agent_id() {
            return Err(Refusal::Invalid("Cannot connect to yourself".to_owned()));
        }
        let speaks_v2 = self.verify_connect_signature(&id, &req)?;
        let peer_url = url::base(&req.from_agent_url);
        let name = truncate_chars(opt(&req.from_agent_display_name), DISPLAY_NAME_CHARS_MAX);
        let bio = truncate_chars(opt(&req.from_agent_bio), BIO_CHARS_MAX);
        let wallets = req.wallets.clone().unwrap_or_default();

        if let Some(conn) = self.connections.get_mut(id.as_str()) {
            // Only a request signed in our form may move a connection (0.5.3 lets anyone re-point it).
            if speaks_v2 {
                conn.url = peer_url;
                conn.speaks_v2 = true;
                conn.identity_verified = true;
                let change = Change::put(Table::Connections, id.as_str(), &*conn);
                self.persist(vec![change]);
            }
            let answer = self.accepted_answer(&id, speaks_v2, "Already connected.");
            return Ok(wire::encode(&answer));
        }

        let source_local = r.source.is_some_and(url::is_local_ip);
        if source_local && self.config.auto_accept_local && self.accepting_connections() {
            let conn = self.new_connection(PeerDetails { agent_id: id.clone(), url: peer_url, display_name: name, bio, wallets, created_at: req.created_at.clone() }, speaks_v2);
            let change = Change::put(Table::Connections, id.as_str(), &conn);
            self.connections.insert(id.as_str().to_owned(), conn);
            self.persist(vec![change]);
            self.emit(Event::Connected { agent_id: id.to_string() });
            let answer = self.accepted_answer(&id, speaks_v2, "Auto-accepted (local network).");
            return Ok(wire::encode(&answer));
        }

        let existing = self.pending_in.values().find(|p| p.agent_id == id).map(|p| p.request_id.clone());
        if existing.is_none() && self.pending_in.len() >= PENDING_REQUESTS_MAX {
            return Err(Refusal::Limited("Too many pending requests".to_owned()));
        }
        let request_id = existing.unwrap_or_else(|| format!("req-{}", self.random_hex(4)));
        let challenge_id = format!("ch-{}", self.random_hex(8));
        let challenge_hex = self.random_hex(32);
        let pending = PendingIn {
            request_id: request_id.clone(),
            agent_id: id.clone(),
            url: peer_url,
            display_name: name.clone(),
            bio,
            requested_at: self.now.iso(),
            requested_us: self.now.wall_us,
            challenge_id: challenge_id.clone(),
            challenge_hex: challenge_hex.clone(),
            identity_verified: speaks_v2,
            speaks_v2,
            wallets,
            created_at: req.created_at.clone(),
        };
        let change = Change::put(Table::PendingIn, &request_id, &pending);
        self.pending_in.insert(request_id.clone(), pending);
        self.persist(vec![change]);
        self.emit(Event::ConnectionRequested { request_id: request_id.clone(), agent_id: id.to_string(), display_name: name });
        let mut answer = ConnectionAnswer {
            auto_accepted: false,
            agent_id: Some(self.me().to_owned()),
            request_id: Some(request_id.clone()),
            challenge_id: Some(challenge_id),
            challenge_hex: Some(challenge_hex),
            message: Some("Connection request queued. Awaiting agent decision. Prove identity with challenge.".to_owned()),
            ..Default::default()
        };
        if speaks_v2 {
            self.sign_answer(&mut answer, &id, "pending");
        }
        Ok(wire::encode(&answer))
    }

    /// Verifies our signed form on a connection request, when present. Returns whether it was.
    fn verify_connect_signature(&mut self, id: &AgentId, req: &ConnectionRequest) -> Result<bool, Refusal> {
        let Some(sig) = req.dm_signature_hex.as_deref() else { return Ok(false) };
        let stamp = req.timestamp.as_deref().ok_or_else(|| Refusal::Unauthorized("Signed request needs a timestamp".to_owned()))?;
        check_fresh(self.now.wall_us, stamp)?;
        let bytes = sign::v2_bytes(
            V2_CONNECT,
            &[id.as_str(), &req.from_agent_url, opt(&req.from_agent_bio), opt(&req.from_agent_display_name), opt(&req.target_url), stamp],
        );
        sign::verify_hex(id.key(), &bytes, sig).map_err(|_| Refusal::Unauthorized("Invalid signature on connection request".to_owned()))?;
        Ok(true)
    }

    fn accepted_answer(&mut self, peer: &AgentId, speaks_v2: bool, message: &str) -> ConnectionAnswer {
        let mut answer = ConnectionAnswer {
            auto_accepted: true,
            agent_id: Some(self.me().to_owned()),
            agent_url: Some(self.config.public_url.clone()),
            agent_bio: Some(self.profile.bio.clone()),
            agent_public_key_hex: Some(self.me().to_owned()),
            agent_display_name: Some(self.profile.display_name.clone()),
            wallets: Some(Default::default()),
            created_at: Some(self.profile.created_at.clone()),
            message: Some(message.to_owned()),
            ..Default::default()
        };
        if speaks_v2 {
            self.sign_answer(&mut answer, peer, "accepted");
        }
        answer
    }

    fn sign_answer(&mut self, answer: &mut ConnectionAnswer, requester: &AgentId, outcome: &str) {
        let stamp = self.now.iso();
        let bytes = answer_bytes(self.me(), requester.as_str(), outcome, answer, &stamp);
        answer.dm_signature_hex = Some(sign::sign_hex(&self.passport, &bytes));
        answer.timestamp = Some(stamp);
    }

    pub(crate) fn on_connection_proof(&mut self, body: &[u8]) -> Result<Vec<u8>, Refusal> {
        let proof: ConnectionProof = wire::decode(body)?;
        let mut missing = Vec::new();
        for (name, value) in [("challenge_id", &proof.challenge_id), ("proof_hex", &proof.proof_hex), ("agent_id", &proof.agent_id), ("public_key_hex", &proof.public_key_hex)] {
            if value.is_empty() {
                missing.push(name);
            }
        }
        if !missing.is_empty() {
            return Err(Refusal::MissingFields(missing.join(", ")));
        }
        if proof.public_key_hex != proof.agent_id {
            return Err(Refusal::Invalid("Public key must match agent_id".to_owned()));
        }
        let id = bind_identity(&proof.agent_id, None)?;
        let Some(pending) = self.pending_in.values_mut().find(|p| p.challenge_id == proof.challenge_id && p.agent_id == id) else {
            return Err(Refusal::NotFound("No matching pending request for this challenge".to_owned()));
        };
        if self.now.wall_us > pending.requested_us + CHALLENGE_TTL_S as i64 * 1_000_000 {
            return Err(Refusal::Unauthorized("Challenge expired".to_owned()));
        }
        let bytes = sign::domain_bytes(DOMAIN_CHALLENGE, &[&pending.challenge_hex]).map_err(|e| Refusal::Invalid(e.to_string()))?;
        sign::verify_hex(id.key(), &bytes, &proof.proof_hex).map_err(|_| Refusal::Unauthorized("Invalid proof — identity verification failed".to_owned()))?;
        pending.identity_verified = true;
        let change = Change::put(Table::PendingIn, &pending.request_id.clone(), &*pending);
        self.persist(vec![change]);
        Ok(wire::encode(&json!({"success": true, "identity_verified": true})))
    }

    pub(crate) fn on_connection_accepted(&mut self, body: &[u8]) -> Result<Vec<u8>, Refusal> {
        let acc: ConnectionAccepted = wire::decode(body)?;
        let mut missing = Vec::new();
        if acc.agent_id.is_empty() {
            missing.push("agent_id");
        }
        if acc.agent_url.is_empty() {
            missing.push("agent_url");
        }
        if !missing.is_empty() {
            return Err(Refusal::MissingFields(missing.join(", ")));
        }
        let id = bind_identity(&acc.agent_id, acc.agent_public_key_hex.as_deref())?;
        url::validate(&acc.agent_url).map_err(Refusal::Invalid)?;
        let claimed_base = url::base(&acc.agent_url);
        let key = self
            .pending_out
            .iter()
            .find(|(_, p)| p.agent_id.as_ref() == Some(&id))
            .or_else(|| self.pending_out.iter().find(|(k, p)| p.agent_id.is_none() && **k == claimed_base))
            .map(|(k, _)| k.clone());
        let Some(key) = key else {
            return Err(Refusal::Unauthorized("No pending outbound connection request for this agent.".to_owned()));
        };
        let pending = self.pending_out[&key].clone();
        let signed = match acc.dm_signature_hex.as_deref() {
            Some(sig) => {
                let stamp = opt(&acc.timestamp);
                check_fresh(self.now.wall_us, stamp)?;
                if acc.to_agent_id.as_deref() != Some(self.me()) {
                    return Err(Refusal::Unauthorized("Acceptance is addressed to another agent".to_owned()));
                }
                let bytes = sign::v2_bytes(V2_ACCEPTED, &[id.as_str(), self.me(), &acc.agent_url, stamp]);
                sign::verify_hex(id.key(), &bytes, sig).map_err(|_| Refusal::Unauthorized("Invalid signature on acceptance".to_owned()))?;
                true
            }
            None => false,
        };
        if pending.speaks_v2 && !signed {
            return Err(Refusal::Unauthorized("Signature required — this agent signs its acceptances".to_owned()));
        }
        if !self.accepting_connections() {
            return Err(Refusal::Limited(format!("Connection limit reached ({})", self.config.max_connections)));
        }
        // We reached the target at the URL we used; keep that rather than a claimed one.
        let conn = self.new_connection(
            PeerDetails {
                agent_id: id.clone(),
                url: pending.target_url.clone(),
                display_name: truncate_chars(opt(&acc.agent_display_name), DISPLAY_NAME_CHARS_MAX),
                bio: truncate_chars(opt(&acc.agent_bio), BIO_CHARS_MAX),
                wallets: acc.wallets.clone().unwrap_or_default(),
                created_at: acc.created_at.clone(),
            },
            signed,
        );
        let changes = vec![Change::delete(Table::PendingOut, &key), Change::put(Table::Connections, id.as_str(), &conn)];
        self.pending_out.remove(&key);
        self.connections.insert(id.as_str().to_owned(), conn);
        self.persist(changes);
        self.emit(Event::Connected { agent_id: id.to_string() });
        Ok(wire::encode(&Ack { success: true }))
    }

    pub(crate) fn on_disconnect(&mut self, body: &[u8]) -> Result<Vec<u8>, Refusal> {
        let d: Disconnect = wire::decode(body)?;
        if d.from_agent_id.is_empty() || d.to_agent_id.is_empty() || d.timestamp.is_empty() || d.dm_signature_hex.is_empty() {
            return Err(Refusal::MissingFields("from_agent_id, to_agent_id, timestamp, dm_signature_hex".to_owned()));
        }
        if d.to_agent_id != self.me() {
            return Err(Refusal::Invalid("Disconnect is addressed to another agent".to_owned()));
        }
        let Some(conn) = self.connections.get(&d.from_agent_id) else {
            return Err(Refusal::NotFound("Not connected to that agent".to_owned()));
        };
        let stamp_us = check_fresh(self.now.wall_us, &d.timestamp)?;
        let bytes = sign::v2_bytes(V2_DISCONNECT, &[&d.from_agent_id, &d.to_agent_id, &d.timestamp, &d.reason]);
        sign::verify_hex(conn.agent_id.key(), &bytes, &d.dm_signature_hex).map_err(|_| Refusal::Unauthorized("Invalid signature".to_owned()))?;
        self.record_replay(&format!("disconnect:{}", d.dm_signature_hex), stamp_us)?;
        self.connections.remove(&d.from_agent_id);
        self.rate_peers.remove(&d.from_agent_id);
        let changes = vec![Change::delete(Table::Connections, &d.from_agent_id), self.replay_change(&format!("disconnect:{}", d.dm_signature_hex))];
        self.persist(changes);
        self.emit(Event::Disconnected { agent_id: d.from_agent_id.clone(), by_peer: true });
        Ok(wire::encode(&Ack { success: true }))
    }

    pub(crate) fn new_connection(&self, peer: PeerDetails, speaks_v2: bool) -> Connection {
        let now = self.now.iso();
        let PeerDetails { agent_id, url, display_name, bio, wallets, created_at: peer_created_at } = peer;
        Connection {
            agent_id,
            url,
            display_name,
            bio,
            connected_at: now.clone(),
            messages_sent: 0,
            messages_received: 0,
            last_activity: now,
            speaks_v2,
            identity_verified: speaks_v2,
            rate_limit: Default::default(),
            wallets,
            peer_created_at,
        }
    }

    /// Drops pending requests (both directions) older than [`REQUEST_EXPIRY_S`].
    pub(crate) fn expire_pending(&mut self) -> Vec<Change> {
        let cutoff = self.now.wall_us - REQUEST_EXPIRY_S as i64 * 1_000_000;
        let old_in: Vec<String> = self.pending_in.iter().filter(|(_, p)| p.requested_us < cutoff).map(|(k, _)| k.clone()).collect();
        let old_out: Vec<String> = self.pending_out.iter().filter(|(_, p)| p.created_us < cutoff).map(|(k, _)| k.clone()).collect();
        let mut changes = Vec::new();
        for k in old_in {
            self.pending_in.remove(&k);
            changes.push(Change::delete(Table::PendingIn, &k));
        }
        for k in old_out {
            self.pending_out.remove(&k);
            changes.push(Change::delete(Table::PendingOut, &k));
        }
        changes
    }

    // ----- commands: the agent asks -----

    pub(crate) fn cmd_connect(&mut self, cmd: CommandId, target_url: &str) -> Result<(), CommandError> {
        let parsed = url::validate(target_url).map_err(CommandError::InvalidArgument)?;
        drop(parsed);
        if !self.accepting_connections() {
            return Err(CommandError::Limited(format!("Connection limit reached ({})", self.config.max_connections)));
        }
        let base = url::base(target_url);
        if base == url::base(&self.config.public_url) {
            return Err(CommandError::InvalidArgument("That URL is this node".to_owned()));
        }
        if self.pending_out.len() >= PENDING_OUTBOUND_MAX {
            return Err(CommandError::Limited("Too many outbound requests pending".to_owned()));
        }
        let stamp = self.now.iso();
        let mut req = ConnectionRequest {
            from_agent_id: self.me().to_owned(),
            from_agent_url: self.config.public_url.clone(),
            from_agent_bio: Some(self.profile.bio.clone()),
            from_agent_public_key_hex: Some(self.me().to_owned()),
            from_agent_display_name: Some(self.profile.display_name.clone()),
            wallets: Some(Default::default()),
            created_at: Some(self.profile.created_at.clone()),
            timestamp: Some(stamp.clone()),
            target_url: Some(base.clone()),
            ..Default::default()
        };
        let bytes = sign::v2_bytes(
            V2_CONNECT,
            &[self.me(), &req.from_agent_url, opt(&req.from_agent_bio), opt(&req.from_agent_display_name), &base, &stamp],
        );
        req.dm_signature_hex = Some(sign::sign_hex(&self.passport, &bytes));
        let call = Call::ConnectRequest { cmd, target_url: base.clone() };
        self.transmit(Method::Post, url::endpoint(&base, "connection_request"), wire::encode(&req), limits::CONNECT_CALL_TIMEOUT_MS, false, call);
        Ok(())
    }

    pub(crate) fn on_connect_answer(&mut self, cmd: CommandId, target_url: &str, result: Result<HttpResponse, String>) {
        let outcome = self.connect_answer(target_url, result);
        self.done(cmd, outcome);
    }

    fn connect_answer(&mut self, target_url: &str, result: Result<HttpResponse, String>) -> Result<serde_json::Value, CommandError> {
        let resp = result.map_err(|e| CommandError::Peer(format!("Could not reach {target_url}: {e}")))?;
        if !(200..300).contains(&resp.status) {
            let text = wire::decode::<ErrorBody>(&resp.body).map(|b| b.error).unwrap_or_else(|_| format!("HTTP {}", resp.status));
            return Err(CommandError::Peer(format!("Peer refused the request ({}): {text}", resp.status)));
        }
        let answer: ConnectionAnswer = wire::decode(&resp.body).map_err(|e| CommandError::Peer(format!("Peer sent an invalid answer: {e}")))?;
        let agent_id = answer.agent_id.as_deref().ok_or_else(|| CommandError::Peer("Peer's answer has no agent_id".to_owned()))?;
        let id = bind_identity(agent_id, answer.agent_public_key_hex.as_deref()).map_err(|e| CommandError::Peer(e.to_string()))?;
        let outcome = if answer.auto_accepted { "accepted" } else { "pending" };
        let signed = match (&answer.dm_signature_hex, &answer.timestamp) {
            (Some(sig), Some(stamp)) => {
                check_fresh(self.now.wall_us, stamp).map_err(|e| CommandError::Peer(e.to_string()))?;
                let bytes = answer_bytes(id.as_str(), self.me(), outcome, &answer, stamp);
                sign::verify_hex(id.key(), &bytes, sig).map_err(|_| CommandError::Peer("Peer's signed answer does not verify".to_owned()))?;
                true
            }
            _ => false,
        };
        if answer.auto_accepted {
            let conn = self.new_connection(
                PeerDetails {
                    agent_id: id.clone(),
                    url: target_url.to_owned(),
                    display_name: truncate_chars(opt(&answer.agent_display_name), DISPLAY_NAME_CHARS_MAX),
                    bio: truncate_chars(opt(&answer.agent_bio), BIO_CHARS_MAX),
                    wallets: answer.wallets.clone().unwrap_or_default(),
                    created_at: answer.created_at.clone(),
                },
                signed,
            );
            let mut changes = vec![Change::put(Table::Connections, id.as_str(), &conn)];
            if self.pending_out.remove(target_url).is_some() {
                changes.push(Change::delete(Table::PendingOut, target_url));
            }
            self.connections.insert(id.as_str().to_owned(), conn);
            self.persist(changes);
            self.emit(Event::Connected { agent_id: id.to_string() });
            return Ok(json!({"status": "connected", "agent_id": id.as_str(), "display_name": opt(&answer.agent_display_name), "message": opt(&answer.message)}));
        }
        let request_id = answer.request_id.clone().unwrap_or_default();
        if let (Some(ch_id), Some(ch_hex)) = (&answer.challenge_id, &answer.challenge_hex) {
            if let Ok(bytes) = sign::domain_bytes(DOMAIN_CHALLENGE, &[ch_hex]) {
                let proof = ConnectionProof {
                    challenge_id: ch_id.clone(),
                    proof_hex: sign::sign_hex(&self.passport, &bytes),
                    agent_id: self.me().to_owned(),
                    public_key_hex: self.me().to_owned(),
                };
                // 0.5.3 always answers 403 here (its check is broken); the answer changes nothing.
                self.transmit(Method::Post, url::endpoint(target_url, "connection_proof"), wire::encode(&proof), limits::PEER_CALL_TIMEOUT_MS, false, Call::FireAndForget);
            }
        }
        let pending = PendingOut {
            target_url: target_url.to_owned(),
            agent_id: Some(id.clone()),
            request_id: Some(request_id.clone()),
            speaks_v2: signed,
            created_us: self.now.wall_us,
        };
        let change = Change::put(Table::PendingOut, target_url, &pending);
        self.pending_out.insert(target_url.to_owned(), pending);
        self.persist(vec![change]);
        Ok(json!({"status": "pending", "agent_id": id.as_str(), "request_id": request_id, "message": "Connection request sent. Waiting for acceptance."}))
    }

    pub(crate) fn cmd_accept(&mut self, cmd: CommandId, request_id: &str) -> Result<(), CommandError> {
        if !self.pending_in.contains_key(request_id) {
            return Err(CommandError::NotFound(format!("No pending request with ID '{request_id}'")));
        }
        if !self.accepting_connections() {
            return Err(CommandError::Limited(format!("Connection limit reached ({})", self.config.max_connections)));
        }
        let p = self.pending_in.remove(request_id).expect("checked above");
        let mut conn = self.new_connection(PeerDetails { agent_id: p.agent_id.clone(), url: p.url.clone(), display_name: p.display_name.clone(), bio: p.bio.clone(), wallets: p.wallets.clone(), created_at: p.created_at.clone() }, p.speaks_v2);
        conn.identity_verified = p.identity_verified;
        let changes = vec![Change::delete(Table::PendingIn, request_id), Change::put(Table::Connections, p.agent_id.as_str(), &conn)];
        self.connections.insert(p.agent_id.as_str().to_owned(), conn);
        self.persist(changes);
        let stamp = self.now.iso();
        let bytes = sign::v2_bytes(V2_ACCEPTED, &[self.me(), p.agent_id.as_str(), &self.config.public_url, &stamp]);
        let body = ConnectionAccepted {
            agent_id: self.me().to_owned(),
            agent_url: self.config.public_url.clone(),
            agent_bio: Some(self.profile.bio.clone()),
            agent_public_key_hex: Some(self.me().to_owned()),
            agent_display_name: Some(self.profile.display_name.clone()),
            wallets: Some(Default::default()),
            wallet_address: None,
            created_at: Some(self.profile.created_at.clone()),
            to_agent_id: Some(p.agent_id.to_string()),
            timestamp: Some(stamp),
            dm_signature_hex: Some(sign::sign_hex(&self.passport, &bytes)),
        };
        self.transmit(Method::Post, url::endpoint(&p.url, "connection_accepted"), wire::encode(&body), limits::PEER_CALL_TIMEOUT_MS, false, Call::FireAndForget);
        self.emit(Event::Connected { agent_id: p.agent_id.to_string() });
        self.done(cmd, Ok(json!({"status": "connected", "accepted": true, "agent_id": p.agent_id.as_str()})));
        Ok(())
    }

    pub(crate) fn cmd_reject(&mut self, cmd: CommandId, request_id: &str) -> Result<(), CommandError> {
        let Some(p) = self.pending_in.remove(request_id) else {
            return Err(CommandError::NotFound(format!("No pending request with ID '{request_id}'")));
        };
        self.persist(vec![Change::delete(Table::PendingIn, request_id)]);
        self.done(cmd, Ok(json!({"status": "rejected", "accepted": false, "agent_id": p.agent_id.as_str()})));
        Ok(())
    }

    pub(crate) fn cmd_disconnect(&mut self, cmd: CommandId, agent_id: &str) -> Result<(), CommandError> {
        let Some(conn) = self.connections.remove(agent_id) else {
            return Err(CommandError::NotFound(format!("Not connected to '{agent_id}'")));
        };
        self.rate_peers.remove(agent_id);
        self.persist(vec![Change::delete(Table::Connections, agent_id)]);
        self.send_disconnect_notice(&conn, "Disconnected by the agent.");
        self.emit(Event::Disconnected { agent_id: agent_id.to_owned(), by_peer: false });
        self.done(cmd, Ok(json!({"status": "disconnected", "disconnected_from": agent_id})));
        Ok(())
    }

    pub(crate) fn send_disconnect_notice(&mut self, conn: &Connection, reason: &str) {
        let stamp = self.now.iso();
        let bytes = sign::v2_bytes(V2_DISCONNECT, &[self.me(), conn.agent_id.as_str(), &stamp, reason]);
        let body = Disconnect {
            from_agent_id: self.me().to_owned(),
            to_agent_id: conn.agent_id.to_string(),
            timestamp: stamp,
            reason: reason.to_owned(),
            dm_signature_hex: sign::sign_hex(&self.passport, &bytes),
        };
        self.transmit(Method::Post, url::endpoint(&conn.url, "disconnect"), wire::encode(&body), limits::PEER_CALL_TIMEOUT_MS, false, Call::FireAndForget);
    }
}

/// Our signed form of a connection answer: target, requester, outcome, request id, URL, time.
fn answer_bytes(target: &str, requester: &str, outcome: &str, a: &ConnectionAnswer, stamp: &str) -> Vec<u8> {
    sign::v2_bytes(V2_CONNECT_ANSWER, &[target, requester, outcome, opt(&a.request_id), opt(&a.agent_url), opt(&a.challenge_hex), stamp])
}
