//! The connection handshake: request, answer, proof, acceptance, rejection and disconnect; pending
//! requests in both directions; key pinning.
//!
//! Rules that differ from 0.5.3 (SPEC.md §Connections):
//! - agent id = key, always: a request whose key differs from its id is refused;
//! - nothing is accepted without proof of key possession: a request signed in our form proves it at
//!   once; a 0.5.3 request proves it by answering the challenge (0.5.3 sends correct proofs, it only
//!   checks them wrongly);
//! - local auto-accept trusts the TCP source address (of the request and of the proof), never the URL a
//!   requester claims;
//! - an acceptance must match a pending outbound request *and* come from the agent that answered it,
//!   signed in our form when that agent speaks it; nobody can accept on our behalf (no `accept_pending`
//!   endpoint exists);
//! - a repeated request never re-points a connection or a proven pending request (only a request or
//!   peer update signed in our form does), and never downgrades what was proven;
//! - disconnect is a signed notice the other side honours.

use std::collections::BTreeMap;

use core::net::IpAddr;

use serde_json::json;

use crate::connections::acceptance_row;
use crate::crypto;
use crate::error::{CommandError, Refusal};
use crate::identity::{truncate_chars, AgentId};
use crate::io::{CommandId, Event, HttpResponse, InboundRequest, Method};
use crate::limits::{
    self, BIO_CHARS_MAX, CHALLENGE_TTL_S, DISPLAY_NAME_CHARS_MAX, REQUEST_EXPIRY_S, TIMESTAMP_FIELD_CHARS_MAX,
    WALLETS_MAX, WALLET_FIELD_BYTES_MAX,
};
use crate::node::{Call, Node};
use crate::output::{CommandOutput, ConnectOutput, Disconnected, RequestAnswered};
use crate::replay::{check_fresh, sig_key};
use crate::sign::{self, DOMAIN_CHALLENGE, V2_ACCEPTED, V2_CONNECT, V2_CONNECT_ANSWER, V2_DISCONNECT};
use crate::store::{Change, PendingIn, PendingOut, Table};
use crate::time::parse_iso;
use crate::url;
use crate::wallet::SOLANA_CHAIN;
use crate::wire::connection::{
    Ack, ConnectionAccepted, ConnectionAnswer, ConnectionProof, ConnectionRequest, Disconnect,
};
use crate::wire::{self, ErrorBody};

fn opt(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("")
}

/// A peer's wallets, bounded in count and size (they are stored and shown, never trusted).
fn bounded_wallets(w: &Option<BTreeMap<String, String>>) -> BTreeMap<String, String> {
    w.iter()
        .flatten()
        .filter(|(k, v)| k.len() <= WALLET_FIELD_BYTES_MAX && v.len() <= WALLET_FIELD_BYTES_MAX)
        .take(WALLETS_MAX)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The Solana wallet a handshake body names, as its signature covers it (`""` when none): a signed
/// handshake binds the address payments to this peer go to, so no one on the path can swap it.
fn signed_wallet(w: &Option<BTreeMap<String, String>>) -> &str {
    w.as_ref().and_then(|w| w.get(SOLANA_CHAIN)).map_or("", String::as_str)
}

/// Our signed form of a handshake body: its fields, then the wallet as one more field when there is one,
/// so a body without a wallet is signed exactly as before wallets were advertised (netstrings keep the
/// two forms distinct: a wallet can be neither stripped from nor added to a signed body).
fn handshake_bytes(domain: &str, fields: &[&str], wallet: &str) -> Vec<u8> {
    if wallet.is_empty() {
        return sign::v2_bytes(domain, fields);
    }
    let mut all = fields.to_vec();
    all.push(wallet);
    sign::v2_bytes(domain, &all)
}

fn bounded_stamp(s: &Option<String>) -> Option<String> {
    s.as_ref().filter(|t| t.chars().count() <= TIMESTAMP_FIELD_CHARS_MAX).cloned()
}

/// What we learn about a peer from a handshake.
pub(crate) struct PeerDetails {
    pub agent_id: AgentId,
    pub url: String,
    pub display_name: String,
    pub bio: String,
    pub wallets: BTreeMap<String, String>,
    pub created_at: Option<String>,
}

impl PeerDetails {
    fn from_request(id: AgentId, req: &ConnectionRequest) -> Self {
        Self {
            agent_id: id,
            url: url::base(&req.from_agent_url),
            display_name: truncate_chars(opt(&req.from_agent_display_name), DISPLAY_NAME_CHARS_MAX),
            bio: truncate_chars(opt(&req.from_agent_bio), BIO_CHARS_MAX),
            wallets: bounded_wallets(&req.wallets),
            created_at: bounded_stamp(&req.created_at),
        }
    }

    fn from_pending(p: &PendingIn) -> Self {
        Self {
            agent_id: p.agent_id.clone(),
            url: p.url.clone(),
            display_name: p.display_name.clone(),
            bio: p.bio.clone(),
            wallets: p.wallets.clone(),
            created_at: p.created_at.clone(),
        }
    }
}

impl Node {
    // ----- inbound: someone asks us -----

    pub(crate) fn on_connection_request(&mut self, r: &InboundRequest) -> Result<Vec<u8>, Refusal> {
        if self.is_inactive() {
            return Err(Refusal::Unavailable("Agent is currently inactive".to_owned()));
        }
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
        let id = self.bind_identity(&req.from_agent_id, req.from_agent_public_key_hex.as_deref())?;
        let claimed = url::validate(&req.from_agent_url).map_err(Refusal::Invalid)?;
        if id == *self.passport.agent_id() {
            return Err(Refusal::Invalid("Cannot connect to yourself".to_owned()));
        }
        let source_local = r.source.is_some_and(url::is_local_ip);
        if !source_local && url::is_local_url(&claimed) {
            return Err(Refusal::Invalid("A private or loopback URL is only accepted from a local address".to_owned()));
        }
        let speaks_v2 = self.verify_connect_signature(&id, &req)?;
        // Only a request signed in our form is known to come from the agent it names.
        self.admit(speaks_v2.then_some(id.as_str()), r.source)?;
        let details = PeerDetails::from_request(id.clone(), &req);

        if self.connections.contains_key(id.as_str()) {
            // Only a request signed in our form may move a connection (0.5.3 lets anyone re-point it).
            if speaks_v2 {
                let conn = self.connections.get_mut(id.as_str()).expect("checked above");
                conn.url = details.url;
                conn.speaks_v2 = true;
                conn.identity_verified = true;
                // Whoever moved it decides whether the new URL may be private.
                conn.local = source_local;
                let change = Change::put(Table::Connections, id.as_str(), &*conn);
                self.persist(vec![change]);
            }
            let answer = self.accepted_answer(&id, speaks_v2, "Already connected.");
            return Ok(wire::encode(&answer));
        }

        // A signed request has proven the key already: a local one is accepted at once.
        if speaks_v2 && source_local && self.auto_accept_local(r.source) {
            self.drop_pending_from(&id);
            self.add_connection(details, true, true, true);
            let answer = self.accepted_answer(&id, true, "Auto-accepted (local network).");
            return Ok(wire::encode(&answer));
        }
        self.queue_pending(id, details, speaks_v2, r.source)
    }

    /// Records (or refreshes) a pending request and answers with a challenge.
    fn queue_pending(
        &mut self,
        id: AgentId,
        details: PeerDetails,
        speaks_v2: bool,
        source: Option<IpAddr>,
    ) -> Result<Vec<u8>, Refusal> {
        let source_local = source.is_some_and(url::is_local_ip);
        let existing = self.connections.pending_from(&id).cloned();
        // A source at its cap is refused before it can displace anyone's request.
        if existing.is_none() {
            self.request_sources.pending_room(source, self.connections.pending_table())?;
        }
        if existing.is_none() && !self.connections.pending_has_room() {
            let victim = self
                .pending_victim(speaks_v2)
                .ok_or_else(|| Refusal::Limited("Too many pending requests".to_owned()))?;
            if let Some((_, change)) = self.connections.take_pending(&victim) {
                self.persist(vec![change]);
            }
        }
        let request_id = match &existing {
            Some(p) => p.request_id.clone(),
            None => format!("req-{}", self.random_hex(4)),
        };
        let challenge_id = format!("ch-{}", self.random_hex(8));
        let challenge_hex = self.random_hex(32);
        let name = details.display_name.clone();
        let mut pending = PendingIn {
            request_id: request_id.clone(),
            agent_id: id.clone(),
            url: details.url,
            display_name: details.display_name,
            bio: details.bio,
            requested_at: self.now.iso(),
            requested_us: self.now.wall_us,
            challenge_id: challenge_id.clone(),
            challenge_hex: challenge_hex.clone(),
            challenge_us: self.now.wall_us,
            identity_verified: speaks_v2,
            speaks_v2,
            wallets: details.wallets,
            created_at: details.created_at,
            source_local,
            peer_trust: None,
        };
        // An unsigned refresh of a proven request keeps what was proven (URL, name, flags); it only
        // gets a fresh challenge. An unproven request may be replaced: nothing about it was checked.
        if let Some(old) = &existing {
            if !speaks_v2 && (old.identity_verified || old.speaks_v2) {
                // Its expiry is not extended either: nobody can keep a request alive by repeating it.
                pending = PendingIn {
                    challenge_id: challenge_id.clone(),
                    challenge_hex: challenge_hex.clone(),
                    challenge_us: self.now.wall_us,
                    ..old.clone()
                };
            }
            pending.peer_trust = old.peer_trust.clone();
        }
        let change = self.connections.put_pending(request_id.clone(), pending);
        self.persist(vec![change]);
        if existing.is_none() {
            self.request_sources.note_pending(&request_id, source, self.connections.pending_table());
            self.emit(Event::ConnectionRequested {
                request_id: request_id.clone(),
                agent_id: id.clone(),
                display_name: name,
            });
        }
        // Whenever the stored request is proven (a signed request may replace an unproven one); it
        // asks nothing if a query already ran.
        self.ask_then_spawn(&request_id);
        let mut answer = ConnectionAnswer {
            auto_accepted: false,
            agent_id: Some(self.me().to_owned()),
            request_id: Some(request_id.clone()),
            challenge_id: Some(challenge_id),
            challenge_hex: Some(challenge_hex),
            message: Some(
                "Connection request queued. Awaiting agent decision. Prove identity with challenge.".to_owned(),
            ),
            ..Default::default()
        };
        if speaks_v2 {
            self.sign_answer(&mut answer, &id, "pending");
        }
        Ok(wire::encode(&answer))
    }

    /// The pending request a new one may take the place of when the queue is full, so that a flood of
    /// requests nobody vouches for cannot lock out a newcomer our peers know: the oldest unproven
    /// request; or, for a new request that proved its key, else the oldest proven one whose peer
    /// query finished without a positive opinion. Requests our peers vouch for, or whose query is
    /// still running, are never displaced; with none displaceable the new request is refused.
    fn pending_victim(&self, new_is_proven: bool) -> Option<String> {
        let displaceable = |p: &PendingIn| {
            let unvouched = p.peer_trust.as_ref().is_some_and(|t| t.complete() && t.score.is_none_or(|s| s <= 0.0));
            !p.identity_verified || (new_is_proven && unvouched)
        };
        self.connections
            .pending_requests()
            .filter(|p| displaceable(p))
            .min_by_key(|p| (p.identity_verified, p.requested_us, p.request_id.as_str()))
            .map(|p| p.request_id.clone())
    }

    fn drop_pending_from(&mut self, id: &AgentId) {
        for k in self.connections.pending_ids_from(id) {
            if let Some((_, change)) = self.connections.take_pending(&k) {
                self.persist(vec![change]);
            }
        }
    }

    /// Verifies our signed form on a connection request, when present. Returns whether it was.
    fn verify_connect_signature(&mut self, id: &AgentId, req: &ConnectionRequest) -> Result<bool, Refusal> {
        let Some(sig) = req.dm_signature_hex.as_deref() else { return Ok(false) };
        let stamp = req
            .timestamp
            .as_deref()
            .ok_or_else(|| Refusal::Unauthorized("Signed request needs a timestamp".to_owned()))?;
        let stamp_us = check_fresh(self.now.wall_us, stamp)?;
        let bytes = handshake_bytes(
            V2_CONNECT,
            &[
                id.as_str(),
                &req.from_agent_url,
                opt(&req.from_agent_bio),
                opt(&req.from_agent_display_name),
                opt(&req.target_url),
                stamp,
            ],
            signed_wallet(&req.wallets),
        );
        crypto::verify_hex(&*self.signatures, id.key(), &bytes, sig)
            .map_err(|_| Refusal::Unauthorized("Invalid signature on connection request".to_owned()))?;
        // A captured signed request must not be replayable (say, to move a connection's URL back).
        let key = sig_key("connect", sig);
        let change = self.replay.admit(&key, stamp_us, self.now.wall_us)?;
        self.persist(vec![change]);
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
            wallets: Some(self.wallets.clone()),
            wallet_address: self.wallets.get(SOLANA_CHAIN).cloned(),
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
        answer.dm_signature_hex = Some(crypto::sign_hex(&*self.signatures, &self.passport, &bytes));
        answer.timestamp = Some(stamp);
    }

    pub(crate) fn on_connection_proof(&mut self, r: &InboundRequest) -> Result<Vec<u8>, Refusal> {
        let proof: ConnectionProof = wire::decode(&r.body)?;
        let mut missing = Vec::new();
        for (name, value) in [
            ("challenge_id", &proof.challenge_id),
            ("proof_hex", &proof.proof_hex),
            ("agent_id", &proof.agent_id),
            ("public_key_hex", &proof.public_key_hex),
        ] {
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
        let id = self.bind_identity(&proof.agent_id, None)?;
        let Some(request_id) = self
            .connections
            .pending_requests()
            .find(|p| p.challenge_id == proof.challenge_id && p.agent_id == id)
            .map(|p| p.request_id.clone())
        else {
            return Err(Refusal::NotFound("No matching pending request for this challenge".to_owned()));
        };
        // The challenge id went to the requester alone: a proof naming it is no stranger's junk.
        self.admit(None, r.source)?;
        let pending = self.connections.pending_mut(&request_id).expect("found above");
        if self.now.wall_us > pending.challenge_us + CHALLENGE_TTL_S as i64 * 1_000_000 {
            return Err(Refusal::Unauthorized("Challenge expired".to_owned()));
        }
        let bytes = sign::domain_bytes(DOMAIN_CHALLENGE, &[&pending.challenge_hex])
            .map_err(|e| Refusal::Invalid(e.to_string()))?;
        crypto::verify_hex(&*self.signatures, id.key(), &bytes, &proof.proof_hex)
            .map_err(|_| Refusal::Unauthorized("Invalid proof — identity verification failed".to_owned()))?;
        pending.identity_verified = true;
        // A challenge is answered once.
        pending.challenge_id.clear();
        let local = pending.source_local && r.source.is_some_and(url::is_local_ip);
        let change = Change::put(Table::PendingIn, &request_id, &*pending);
        self.persist(vec![change]);
        if local && self.auto_accept_local(r.source) {
            self.accept_pending(&request_id);
            return Ok(wire::encode(&json!({"success": true, "identity_verified": true, "accepted": true})));
        }
        // Proven now: ask our peers about it (unproven requests never make us ask), then wake an agent.
        self.ask_then_spawn(&request_id);
        Ok(wire::encode(&json!({"success": true, "identity_verified": true})))
    }

    pub(crate) fn on_connection_accepted(&mut self, body: &[u8], source: Option<IpAddr>) -> Result<Vec<u8>, Refusal> {
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
        let id = self.bind_identity(&acc.agent_id, acc.agent_public_key_hex.as_deref())?;
        url::validate(&acc.agent_url).map_err(Refusal::Invalid)?;
        // Every pending outbound request records who answered it; only that agent may accept it.
        let Some((key, pending)) = self.connections.outbound_to(&id) else {
            // The acceptor sends again when it missed our answer: a signed acceptance of a connection
            // we already have is confirmed, so it never takes our silence for a refusal.
            if self.connections.contains_key(id.as_str()) && self.verify_acceptance(&id, &acc)? {
                self.admit(Some(id.as_str()), source)?;
                return Ok(wire::encode(&Ack { success: true }));
            }
            return Err(Refusal::Unauthorized("No pending outbound connection request for this agent.".to_owned()));
        };
        let signed = self.verify_acceptance(&id, &acc)?;
        if pending.speaks_v2 && !signed {
            return Err(Refusal::Unauthorized("Signature required — this agent signs its acceptances".to_owned()));
        }
        // It answers a request we made to this very agent.
        self.admit(None, source)?;
        if !self.connections.contains_key(id.as_str()) && !self.accepting_connections() {
            return Err(Refusal::Limited(format!("Connection limit reached ({})", self.connections.max())));
        }
        let changes = self.connections.take_outbound(&key).into_iter().collect();
        self.persist(changes);
        // We reached the target at the URL the agent chose; keep that rather than a claimed one.
        let details = PeerDetails {
            agent_id: id,
            url: pending.target_url,
            display_name: truncate_chars(opt(&acc.agent_display_name), DISPLAY_NAME_CHARS_MAX),
            bio: truncate_chars(opt(&acc.agent_bio), BIO_CHARS_MAX),
            wallets: bounded_wallets(&acc.wallets),
            created_at: bounded_stamp(&acc.created_at),
        };
        self.add_connection(details, signed, signed, true);
        Ok(wire::encode(&Ack { success: true }))
    }

    /// Checks our signed form on an acceptance, when present. Returns whether it was.
    fn verify_acceptance(&self, id: &AgentId, acc: &ConnectionAccepted) -> Result<bool, Refusal> {
        let Some(sig) = acc.dm_signature_hex.as_deref() else { return Ok(false) };
        let stamp = opt(&acc.timestamp);
        check_fresh(self.now.wall_us, stamp)?;
        if acc.to_agent_id.as_deref() != Some(self.me()) {
            return Err(Refusal::Unauthorized("Acceptance is addressed to another agent".to_owned()));
        }
        let bytes =
            handshake_bytes(V2_ACCEPTED, &[id.as_str(), self.me(), &acc.agent_url, stamp], signed_wallet(&acc.wallets));
        crypto::verify_hex(&*self.signatures, id.key(), &bytes, sig)
            .map_err(|_| Refusal::Unauthorized("Invalid signature on acceptance".to_owned()))?;
        Ok(true)
    }

    pub(crate) fn on_disconnect(&mut self, body: &[u8]) -> Result<Vec<u8>, Refusal> {
        let d: Disconnect = wire::decode(body)?;
        if d.from_agent_id.is_empty()
            || d.to_agent_id.is_empty()
            || d.timestamp.is_empty()
            || d.dm_signature_hex.is_empty()
        {
            return Err(Refusal::MissingFields("from_agent_id, to_agent_id, timestamp, dm_signature_hex".to_owned()));
        }
        if d.to_agent_id != self.me() {
            return Err(Refusal::Invalid("Disconnect is addressed to another agent".to_owned()));
        }
        let Some(conn) = self.connections.get(&d.from_agent_id) else {
            return Err(Refusal::NotFound("Not connected to that agent".to_owned()));
        };
        let stamp_us = check_fresh(self.now.wall_us, &d.timestamp)?;
        // A notice from before this connection (allowing for clock skew) belongs to an earlier one:
        // replaying it must not end this one.
        let skew_us = limits::FRESHNESS_WINDOW_S as i64 * 1_000_000;
        if parse_iso(&conn.connected_at).is_some_and(|c| stamp_us < c - skew_us) {
            return Err(Refusal::Stale(limits::FRESHNESS_WINDOW_S));
        }
        let bytes = sign::v2_bytes(V2_DISCONNECT, &[&d.from_agent_id, &d.to_agent_id, &d.timestamp, &d.reason]);
        crypto::verify_hex(&*self.signatures, conn.agent_id.key(), &bytes, &d.dm_signature_hex)
            .map_err(|_| Refusal::Unauthorized("Invalid signature".to_owned()))?;
        self.admit(Some(&d.from_agent_id), None)?;
        let key = sig_key("disconnect", &d.dm_signature_hex);
        let replay_change = self.replay.admit(&key, stamp_us, self.now.wall_us)?;
        let removed = self.connections.remove(&d.from_agent_id);
        self.rates.forget(&d.from_agent_id);
        self.forget_url_proof(&d.from_agent_id);
        let changes = vec![Change::delete(Table::Connections, &d.from_agent_id), replay_change];
        self.persist(changes);
        if let Some((conn, _)) = removed {
            self.emit(Event::Disconnected { agent_id: conn.agent_id, by_peer: true });
        }
        Ok(wire::encode(&Ack { success: true }))
    }

    /// Creates (or refreshes) a connection, persists it and tells the agent. An existing connection
    /// keeps its counters, overrides and proofs: nothing here can downgrade it.
    pub(crate) fn add_connection(&mut self, peer: PeerDetails, speaks_v2: bool, verified: bool, local: bool) {
        let key = peer.agent_id.as_str().to_owned();
        let now = self.now.iso();
        let (conn, is_new) = self.connections.entry(&peer.agent_id, &peer.url, now);
        // A new URL is as local as whoever gave it; the same URL keeps what it had.
        conn.local = if conn.url == peer.url { conn.local || local } else { local };
        conn.url = peer.url;
        conn.display_name = peer.display_name;
        conn.bio = peer.bio;
        conn.wallets = peer.wallets;
        conn.peer_created_at = peer.created_at;
        conn.speaks_v2 |= speaks_v2;
        conn.identity_verified |= verified || speaks_v2;
        let change = Change::put(Table::Connections, &key, &*conn);
        self.persist(vec![change]);
        if is_new {
            // An old grudge does not end a new connection at once: its hour starts now.
            if let Some(change) = self.impressions.restart_grudge(&key, self.now.wall_us) {
                self.persist(vec![change]);
            }
            self.emit(Event::Connected { agent_id: peer.agent_id.clone() });
            self.on_connected(&key);
        }
    }

    /// Drops pending requests (both directions) older than [`REQUEST_EXPIRY_S`].
    pub(crate) fn expire_pending(&mut self) -> Vec<Change> {
        let cutoff = self.now.wall_us - REQUEST_EXPIRY_S as i64 * 1_000_000;
        self.connections.expire(cutoff)
    }

    // ----- commands: the agent asks -----

    pub(crate) fn cmd_connect(&mut self, cmd: CommandId, target_url: &str) -> Result<(), CommandError> {
        url::validate(target_url).map_err(CommandError::InvalidArgument)?;
        if !self.accepting_connections() {
            return Err(CommandError::Limited(format!("Connection limit reached ({})", self.connections.max())));
        }
        let base = url::base(target_url);
        if base == url::base(&self.config.public_url) {
            return Err(CommandError::InvalidArgument("That URL is this node".to_owned()));
        }
        if !self.connections.outbound_has_room() {
            return Err(CommandError::Limited("Too many outbound requests pending".to_owned()));
        }
        let stamp = self.now.iso();
        let mut req = ConnectionRequest {
            from_agent_id: self.me().to_owned(),
            from_agent_url: self.config.public_url.clone(),
            from_agent_bio: Some(self.profile.bio.clone()),
            from_agent_public_key_hex: Some(self.me().to_owned()),
            from_agent_display_name: Some(self.profile.display_name.clone()),
            wallets: Some(self.wallets.clone()),
            from_agent_wallet_address: self.wallets.get(SOLANA_CHAIN).cloned(),
            created_at: Some(self.profile.created_at.clone()),
            timestamp: Some(stamp.clone()),
            target_url: Some(base.clone()),
            ..Default::default()
        };
        let bytes = handshake_bytes(
            V2_CONNECT,
            &[
                self.me(),
                &req.from_agent_url,
                opt(&req.from_agent_bio),
                opt(&req.from_agent_display_name),
                &base,
                &stamp,
            ],
            signed_wallet(&req.wallets),
        );
        req.dm_signature_hex = Some(crypto::sign_hex(&*self.signatures, &self.passport, &bytes));
        let call = Call::ConnectRequest { cmd, target_url: base.clone() };
        self.transmit(
            Method::Post,
            url::endpoint(&base, "connection_request"),
            wire::encode(&req),
            limits::CONNECT_CALL_TIMEOUT_MS,
            false,
            call,
        );
        Ok(())
    }

    pub(crate) fn on_connect_answer(&mut self, cmd: CommandId, target_url: &str, result: Result<HttpResponse, String>) {
        let outcome = self.connect_answer(target_url, result);
        self.done(cmd, outcome);
    }

    fn connect_answer(
        &mut self,
        target_url: &str,
        result: Result<HttpResponse, String>,
    ) -> Result<CommandOutput, CommandError> {
        let resp = result.map_err(|e| CommandError::Peer(format!("Could not reach {target_url}: {e}")))?;
        if !(200..300).contains(&resp.status) {
            let text = wire::decode::<ErrorBody>(&resp.body)
                .map(|b| b.error)
                .unwrap_or_else(|_| format!("HTTP {}", resp.status));
            return Err(CommandError::Peer(format!("Peer refused the request ({}): {text}", resp.status)));
        }
        let answer: ConnectionAnswer =
            wire::decode(&resp.body).map_err(|e| CommandError::Peer(format!("Peer sent an invalid answer: {e}")))?;
        let agent_id =
            answer.agent_id.as_deref().ok_or_else(|| CommandError::Peer("Peer's answer has no agent_id".to_owned()))?;
        let id = self
            .bind_identity(agent_id, answer.agent_public_key_hex.as_deref())
            .map_err(|e| CommandError::Peer(e.to_string()))?;
        if id == *self.passport.agent_id() {
            return Err(CommandError::InvalidArgument("That URL is this node".to_owned()));
        }
        let outcome = if answer.auto_accepted { "accepted" } else { "pending" };
        let signed = match (&answer.dm_signature_hex, &answer.timestamp) {
            (Some(sig), Some(stamp)) => {
                check_fresh(self.now.wall_us, stamp).map_err(|e| CommandError::Peer(e.to_string()))?;
                let bytes = answer_bytes(id.as_str(), self.me(), outcome, &answer, stamp);
                crypto::verify_hex(&*self.signatures, id.key(), &bytes, sig)
                    .map_err(|_| CommandError::Peer("Peer's signed answer does not verify".to_owned()))?;
                true
            }
            _ => false,
        };
        if answer.auto_accepted {
            if !self.connections.contains_key(id.as_str()) && !self.accepting_connections() {
                return Err(CommandError::Limited(format!("Connection limit reached ({})", self.connections.max())));
            }
            if let Some(change) = self.connections.take_outbound(target_url) {
                self.persist(vec![change]);
            }
            let details = PeerDetails {
                agent_id: id.clone(),
                url: target_url.to_owned(),
                display_name: truncate_chars(opt(&answer.agent_display_name), DISPLAY_NAME_CHARS_MAX),
                bio: truncate_chars(opt(&answer.agent_bio), BIO_CHARS_MAX),
                wallets: bounded_wallets(&answer.wallets),
                created_at: bounded_stamp(&answer.created_at),
            };
            self.add_connection(details, signed, signed, true);
            return Ok(CommandOutput::Connect(Box::new(ConnectOutput::Connected {
                agent_id: id,
                display_name: opt(&answer.agent_display_name).to_owned(),
                message: opt(&answer.message).to_owned(),
            })));
        }
        let request_id = answer.request_id.clone().unwrap_or_default();
        self.send_proof(target_url, &answer);
        let pending = PendingOut {
            target_url: target_url.to_owned(),
            agent_id: Some(id.clone()),
            request_id: Some(request_id.clone()),
            speaks_v2: signed,
            created_us: self.now.wall_us,
        };
        let change = self.connections.put_outbound(target_url, pending);
        self.persist(vec![change]);
        Ok(CommandOutput::Connect(Box::new(ConnectOutput::Pending { agent_id: id, request_id })))
    }

    /// Answers a target's challenge. Only a well-formed challenge (64 lowercase hex digits) is
    /// signed: we never sign text a peer chose.
    fn send_proof(&mut self, target_url: &str, answer: &ConnectionAnswer) {
        let (Some(ch_id), Some(ch_hex)) = (&answer.challenge_id, &answer.challenge_hex) else { return };
        let well_formed = ch_hex.len() == 64 && ch_hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !well_formed || ch_id.len() > limits::ID_BYTES_MAX {
            return;
        }
        let bytes = sign::domain_bytes(DOMAIN_CHALLENGE, &[ch_hex]).expect("hex has no newline");
        let proof = ConnectionProof {
            challenge_id: ch_id.clone(),
            proof_hex: crypto::sign_hex(&*self.signatures, &self.passport, &bytes),
            agent_id: self.me().to_owned(),
            public_key_hex: self.me().to_owned(),
        };
        // 0.5.3 always answers 403 here (its check is broken); the answer changes nothing.
        self.transmit(
            Method::Post,
            url::endpoint(target_url, "connection_proof"),
            wire::encode(&proof),
            limits::PEER_CALL_TIMEOUT_MS,
            false,
            Call::FireAndForget,
        );
    }

    pub(crate) fn cmd_accept(&mut self, cmd: CommandId, request_id: &str) -> Result<(), CommandError> {
        let Some(p) = self.connections.pending(request_id) else {
            return Err(CommandError::NotFound(format!("No pending request with ID '{request_id}'")));
        };
        if !p.identity_verified {
            return Err(CommandError::InvalidArgument(format!("Request '{request_id}' has not proven its key yet (no valid challenge proof); wait for it or reject it")));
        }
        if !self.accepting_connections() {
            return Err(CommandError::Limited(format!("Connection limit reached ({})", self.connections.max())));
        }
        let agent_id = p.agent_id.clone();
        self.accept_pending(request_id);
        let answered = RequestAnswered::Connected { accepted: true, agent_id };
        self.done(cmd, Ok(CommandOutput::Answered(Box::new(answered))));
        Ok(())
    }

    /// Turns a proven pending request into a connection and tells the requester, signed.
    pub(crate) fn accept_pending(&mut self, request_id: &str) {
        let Some((p, change)) = self.connections.take_pending(request_id) else { return };
        debug_assert!(p.identity_verified);
        self.persist(vec![change]);
        self.add_connection(PeerDetails::from_pending(&p), p.speaks_v2, p.identity_verified, p.source_local);
        self.send_acceptance(p.agent_id.as_str(), 1);
    }

    /// Records that `attempts` acceptances went to `peer` unconfirmed (0: settled), so a restart
    /// sends it again instead of leaving the link half-open.
    fn note_acceptance(&mut self, peer: &str, attempts: u32) {
        self.persist(vec![acceptance_row(peer, attempts)]);
    }

    /// Tells an accepted peer, signed, at its connection's URL. Its answer comes back to
    /// [`Node::on_acceptance_answer`].
    fn send_acceptance(&mut self, peer: &str, attempt: u32) {
        let Some(conn) = self.connections.get(peer) else {
            self.note_acceptance(peer, 0);
            return;
        };
        let (url, local) = (conn.url.clone(), conn.local);
        let call = Call::Acceptance { peer: peer.to_owned(), attempt };
        self.note_acceptance(peer, attempt);
        let body = self.acceptance_body(peer);
        self.transmit(
            Method::Post,
            url::endpoint(&url, "connection_accepted"),
            body,
            limits::PEER_CALL_TIMEOUT_MS,
            !local,
            call,
        );
    }

    /// Our signed `connection_accepted` for `peer`.
    fn acceptance_body(&self, peer: &str) -> Vec<u8> {
        let stamp = self.now.iso();
        let wallet = self.wallets.get(SOLANA_CHAIN).map_or("", String::as_str);
        let bytes = handshake_bytes(V2_ACCEPTED, &[self.me(), peer, &self.config.public_url, &stamp], wallet);
        let body = ConnectionAccepted {
            agent_id: self.me().to_owned(),
            agent_url: self.config.public_url.clone(),
            agent_bio: Some(self.profile.bio.clone()),
            agent_public_key_hex: Some(self.me().to_owned()),
            agent_display_name: Some(self.profile.display_name.clone()),
            wallets: Some(self.wallets.clone()),
            wallet_address: self.wallets.get(SOLANA_CHAIN).cloned(),
            created_at: Some(self.profile.created_at.clone()),
            to_agent_id: Some(peer.to_owned()),
            timestamp: Some(stamp),
            dm_signature_hex: Some(crypto::sign_hex(&*self.signatures, &self.passport, &bytes)),
        };
        wire::encode(&body)
    }

    /// What an accepted peer said to our acceptance. A refusal means it does not count the
    /// connection (it gave up waiting, or never got our answer to its request): keeping ours would
    /// leave a half-open link whose every trust query and delivery is refused, so it goes. A lost
    /// call is sent again at housekeeping, up to [`crate::limits::ACCEPTANCE_ATTEMPTS_MAX`] in all.
    pub(crate) fn on_acceptance_answer(&mut self, peer: &str, attempt: u32, result: Result<HttpResponse, String>) {
        let Some(conn) = self.connections.get(peer) else {
            self.note_acceptance(peer, 0);
            return;
        };
        match result {
            // A 0.5.3 peer consumes its pending record on the first acceptance and refuses a second
            // one, so after a retry its refusal may only mean that the first got through.
            Ok(r) if matches!(r.status, 400 | 403 | 404) && (attempt == 1 || conn.speaks_v2) => {
                self.drop_half_open(peer)
            }
            Ok(r) if (200..500).contains(&r.status) && r.status != 429 => self.note_acceptance(peer, 0),
            // Unreachable (behind NAT, or down): through an anchor's relay, sealed (SPEC §20.4).
            _ if self.relay.enabled() && super::lookup::looks_moved(&result) => {
                let body = self.acceptance_body(peer);
                let purpose = super::relay::RelayFor::Acceptance { attempt };
                // Not sealable (no OS randomness): sent again later, directly, as without anchors.
                if self.relay_post(peer, "/__darkmatter__/connection_accepted", &body, purpose).is_err() {
                    self.acceptance_unsettled(peer, attempt);
                }
            }
            _ => self.acceptance_unsettled(peer, attempt),
        }
    }

    /// An acceptance got through (directly, or buffered by a relay): nothing to send again.
    pub(crate) fn acceptance_settled(&mut self, peer: &str) {
        self.note_acceptance(peer, 0);
    }

    /// An acceptance did not get through: sent again at housekeeping while attempts remain.
    pub(crate) fn acceptance_unsettled(&mut self, peer: &str, attempt: u32) {
        if !self.acceptances.retry_later(peer, attempt) {
            self.note_acceptance(peer, 0);
        }
    }

    /// Sends again the acceptances that did not get through (at housekeeping).
    pub(crate) fn retry_acceptances(&mut self) {
        for (peer, attempts) in self.acceptances.take_due() {
            self.send_acceptance(&peer, attempts + 1);
        }
    }

    /// Forgets a connection the peer does not have. No notice: it has nothing to end.
    fn drop_half_open(&mut self, peer: &str) {
        let Some((conn, change)) = self.connections.remove(peer) else { return };
        self.rates.forget(peer);
        self.forget_url_proof(peer);
        self.acceptances.forget(peer);
        self.persist(vec![change, acceptance_row(peer, 0)]);
        self.emit(Event::Disconnected { agent_id: conn.agent_id, by_peer: true });
    }

    pub(crate) fn cmd_reject(&mut self, cmd: CommandId, request_id: &str) -> Result<(), CommandError> {
        let Some(p) = self.reject_pending(request_id) else {
            return Err(CommandError::NotFound(format!("No pending request with ID '{request_id}'")));
        };
        let answered = RequestAnswered::Rejected { accepted: false, agent_id: p.agent_id };
        self.done(cmd, Ok(CommandOutput::Answered(Box::new(answered))));
        Ok(())
    }

    pub(crate) fn reject_pending(&mut self, request_id: &str) -> Option<PendingIn> {
        let (p, change) = self.connections.take_pending(request_id)?;
        self.persist(vec![change]);
        Some(p)
    }

    pub(crate) fn cmd_disconnect(&mut self, cmd: CommandId, agent_id: &str) -> Result<(), CommandError> {
        let Some(peer) = self.connections.get(agent_id).map(|c| c.agent_id.clone()) else {
            return Err(CommandError::NotFound(format!("Not connected to '{agent_id}'")));
        };
        self.disconnect(agent_id, "Disconnected by the agent.");
        let out = Disconnected::Disconnected { disconnected_from: peer };
        self.done(cmd, Ok(CommandOutput::Disconnected(Box::new(out))));
        Ok(())
    }

    /// Drops a connection and sends the peer a signed notice.
    pub(crate) fn disconnect(&mut self, agent_id: &str, reason: &str) {
        let Some((conn, change)) = self.connections.remove(agent_id) else { return };
        self.rates.forget(agent_id);
        self.forget_url_proof(agent_id);
        self.persist(vec![change]);
        let stamp = self.now.iso();
        let bytes = sign::v2_bytes(V2_DISCONNECT, &[self.me(), conn.agent_id.as_str(), &stamp, reason]);
        let body = Disconnect {
            from_agent_id: self.me().to_owned(),
            to_agent_id: conn.agent_id.to_string(),
            timestamp: stamp,
            reason: reason.to_owned(),
            dm_signature_hex: crypto::sign_hex(&*self.signatures, &self.passport, &bytes),
        };
        self.transmit(
            Method::Post,
            url::endpoint(&conn.url, "disconnect"),
            wire::encode(&body),
            limits::PEER_CALL_TIMEOUT_MS,
            !conn.local,
            Call::FireAndForget,
        );
        self.emit(Event::Disconnected { agent_id: conn.agent_id, by_peer: false });
    }
}

/// Our signed form of a connection answer: target, requester, outcome, request id, URL, challenge, time,
/// wallet.
fn answer_bytes(target: &str, requester: &str, outcome: &str, a: &ConnectionAnswer, stamp: &str) -> Vec<u8> {
    handshake_bytes(
        V2_CONNECT_ANSWER,
        &[target, requester, outcome, opt(&a.request_id), opt(&a.agent_url), opt(&a.challenge_hex), stamp],
        signed_wallet(&a.wallets),
    )
}
