//! Self-healing: signed peer updates (a peer moved or changed its bio) and peer lookups.
//!
//! Stricter than 0.5.3: an update is accepted only from a connection, always signed (0.5.3 takes an
//! unsigned one when no key is pinned, but the key *is* the id), always fresh, never twice, and our
//! signed form (which also covers bio and name) is required from peers that speak it.

use crate::crypto;
use crate::error::{CommandError, Refusal};
use crate::identity::truncate_chars;
use crate::io::{Event, InboundRequest, Method};
use crate::limits::{self, BIO_CHARS_MAX, DISPLAY_NAME_CHARS_MAX};
use crate::node::{Call, Node};
use crate::output::{BioUpdated, Renamed, UrlUpdated};
use crate::replay::check_fresh;
use crate::sign::{self, DOMAIN_PEER_UPDATE, V2_PEER_UPDATE};
use crate::store::{Change, ProofForm, Table, UrlProof};
use crate::url;
use crate::wire::{
    self,
    peer::{PeerLookupAnswer, PeerUpdate, PeerUpdated},
};
use core::net::IpAddr;

fn opt(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("")
}

fn v2_fields<'a>(u: &'a PeerUpdate, stamp: &'a str) -> [&'a str; 5] {
    [&u.agent_id, &u.new_url, opt(&u.bio), opt(&u.display_name), stamp]
}

impl Node {
    pub(crate) fn on_peer_update(&mut self, r: &InboundRequest) -> Result<Vec<u8>, Refusal> {
        let u: PeerUpdate = wire::decode(&r.body)?;
        if u.agent_id.is_empty() || u.new_url.is_empty() {
            return Err(Refusal::MissingFields("agent_id, new_url".to_owned()));
        }
        let new_url = url::validate(&u.new_url).map_err(Refusal::Invalid)?;
        let source_local = r.source.is_some_and(url::is_local_ip);
        if !source_local && url::is_local_url(&new_url) {
            return Err(Refusal::Invalid("A private or loopback URL is only accepted from a local address".to_owned()));
        }
        let Some(conn) = self.connections.get(&u.agent_id) else {
            return Err(Refusal::NotFound("Unknown agent".to_owned()));
        };
        if u.public_key_hex.as_deref().is_some_and(|k| k != u.agent_id) {
            return Err(Refusal::Unauthorized("Public key mismatch".to_owned()));
        }
        let stamp = u
            .timestamp
            .as_deref()
            .ok_or_else(|| Refusal::Unauthorized("Signature required — known public key on file".to_owned()))?;
        let stamp_us = check_fresh(self.now.wall_us, stamp)?;
        let key = *conn.agent_id.key();
        let speaks_v2 = conn.speaks_v2;
        let signed_v2 = match u.dm_signature_hex.as_deref() {
            Some(sig) => {
                crypto::verify_hex(
                    &*self.signatures,
                    &key,
                    &sign::v2_bytes(V2_PEER_UPDATE, &v2_fields(&u, stamp)),
                    sig,
                )
                .map_err(|_| Refusal::Unauthorized("Invalid signature".to_owned()))?;
                true
            }
            None if speaks_v2 => {
                return Err(Refusal::Unauthorized(
                    "Signature required in the signed form this peer speaks (no downgrade).".to_owned(),
                ))
            }
            None => {
                let sig = u
                    .signature
                    .as_deref()
                    .ok_or_else(|| Refusal::Unauthorized("Signature required — known public key on file".to_owned()))?;
                let bytes = sign::domain_bytes(DOMAIN_PEER_UPDATE, &[&u.agent_id, &u.new_url, stamp])
                    .map_err(|e| Refusal::Invalid(e.to_string()))?;
                crypto::verify_hex(&*self.signatures, &key, &bytes, sig)
                    .map_err(|_| Refusal::Unauthorized("Invalid signature".to_owned()))?;
                false
            }
        };
        // A relayer may re-post an older update the peer really signed: never go back to it.
        if self.healing.proof(&u.agent_id).is_some_and(|p| p.signed() && stamp_us <= p.stamp_us) {
            return Err(Refusal::Invalid("Older than the update already accepted from this agent".to_owned()));
        }
        self.admit(Some(&u.agent_id), r.source)?;
        let replay_key = format!("peer_update:{}:{stamp}", u.agent_id);
        let replay_change = self.replay.admit(&replay_key, stamp_us, self.now.wall_us)?;
        let conn = self.connections.get_mut(&u.agent_id).expect("checked above");
        conn.url = url::base(&u.new_url);
        // Bio and name are only covered by our form; from a 0.5.3 peer they are informational, as there.
        if let Some(bio) = &u.bio {
            conn.bio = truncate_chars(bio, BIO_CHARS_MAX);
        }
        if let Some(name) = &u.display_name {
            conn.display_name = truncate_chars(name, DISPLAY_NAME_CHARS_MAX);
        }
        if signed_v2 {
            conn.speaks_v2 = true;
        }
        // A peer that moved to a public address is no longer treated as local.
        conn.local = source_local;
        let conn_change = Change::put(Table::Connections, &u.agent_id, &*conn);
        let url_now = conn.url.clone();
        let peer = conn.agent_id.clone();
        // Kept, so that peers looking this agent up can check its URL against its own key.
        let form = match &u.dm_signature_hex {
            Some(sig) if signed_v2 => ProofForm::V2 {
                signature: sig.clone(),
                bio: opt(&u.bio).to_owned(),
                display_name: opt(&u.display_name).to_owned(),
            },
            _ => ProofForm::Legacy { signature: opt(&u.signature).to_owned() },
        };
        let proof = UrlProof { url: u.new_url.clone(), timestamp: stamp.to_owned(), stamp_us, form };
        let proof_change = self.healing.put_proof(&u.agent_id, proof);
        let changes = vec![conn_change, replay_change, proof_change];
        self.persist(changes);
        self.emit(Event::PeerUpdated { agent_id: peer, url: url_now });
        Ok(wire::encode(&PeerUpdated { success: true, updated: true }))
    }

    pub(crate) fn on_peer_lookup(&mut self, agent_id: &str, source: Option<IpAddr>) -> Result<Vec<u8>, Refusal> {
        if !self.connections.contains_key(agent_id) {
            return Err(Refusal::NotFound("Not connected to that agent".to_owned()));
        }
        // An unauthenticated question: charged to its source address.
        self.admit(None, source)?;
        let conn = &self.connections[agent_id];
        let signed_update = self
            .healing
            .proof(agent_id)
            .filter(|p| p.signed() && url::base(&p.url) == conn.url)
            .map(|p| signed_update(agent_id, p));
        let answer = PeerLookupAnswer {
            agent_id: agent_id.to_owned(),
            url: conn.url.clone(),
            addresses: Some([("http".to_owned(), conn.url.clone())].into()),
            status: Some("connected".to_owned()),
            signed_update,
        };
        Ok(wire::encode(&answer))
    }

    /// Tells every connection our URL, bio and name, signed in both forms.
    pub(crate) fn broadcast_peer_update(&mut self) -> usize {
        let stamp = self.now.iso();
        let mut u = PeerUpdate {
            agent_id: self.me().to_owned(),
            new_url: self.config.public_url.clone(),
            addresses: Some([("http".to_owned(), self.config.public_url.clone())].into()),
            timestamp: Some(stamp.clone()),
            bio: Some(self.profile.bio.clone()),
            display_name: Some(self.profile.display_name.clone()),
            public_key_hex: Some(self.me().to_owned()),
            signature: None,
            dm_signature_hex: None,
        };
        // Our URL passed validation (no control characters), so the legacy form is unambiguous;
        // if it ever were not, peers of ours still get our form.
        u.signature = sign::domain_bytes(DOMAIN_PEER_UPDATE, &[&u.agent_id, &u.new_url, &stamp])
            .ok()
            .map(|b| crypto::sign_hex(&*self.signatures, &self.passport, &b));
        u.dm_signature_hex = Some(crypto::sign_hex(
            &*self.signatures,
            &self.passport,
            &sign::v2_bytes(V2_PEER_UPDATE, &v2_fields(&u, &stamp)),
        ));
        let body = wire::encode(&u);
        // What we announced, so that a restart at another address announces again (SPEC §9.2).
        let me = self.me().to_owned();
        let stamp_us = self.now.wall_us;
        let ours = UrlProof { url: u.new_url.clone(), timestamp: stamp, stamp_us, form: ProofForm::Unsigned };
        let change = self.healing.put_proof(&me, ours);
        self.persist(vec![change]);
        let peers: Vec<(String, String, bool)> =
            self.connections.values().map(|c| (c.agent_id.to_string(), c.url.clone(), c.local)).collect();
        for (peer, peer_url, local) in &peers {
            // A peer that cannot be reached gets it through an anchor's relay (SPEC §20.4).
            let call = Call::Notice { peer: peer.clone(), path: "/__darkmatter__/peer_update", body: body.clone() };
            self.transmit(
                Method::Post,
                url::endpoint(peer_url, "peer_update"),
                body.clone(),
                limits::PEER_CALL_TIMEOUT_MS,
                !local,
                call,
            );
        }
        self.register_with_anchors();
        peers.len()
    }

    /// At start-up: if our URL is not the one we last announced, every connection is told, signed
    /// (0.5.3 announces only when anchors are configured, so a node restarted on a new port was lost).
    /// A node that never announced records its URL without telling anyone: peers have it from the
    /// handshake.
    pub(crate) fn announce_if_moved(&mut self) {
        let me = self.me().to_owned();
        match self.healing.proof(&me) {
            Some(p) if p.url == self.config.public_url => {}
            Some(_) => {
                self.broadcast_peer_update();
            }
            None => {
                let url = self.config.public_url.clone();
                let ours =
                    UrlProof { url, timestamp: self.now.iso(), stamp_us: self.now.wall_us, form: ProofForm::Unsigned };
                let change = self.healing.put_proof(&me, ours);
                self.persist(vec![change]);
            }
        }
    }

    /// Forgets the proof of a connection that ended.
    pub(crate) fn forget_url_proof(&mut self, agent_id: &str) {
        if let Some(change) = self.healing.forget(agent_id) {
            self.persist(vec![change]);
        }
    }

    pub(crate) fn cmd_update_bio(&mut self, bio: &str) -> Result<BioUpdated, CommandError> {
        let n = bio.chars().count();
        if n == 0 || n > BIO_CHARS_MAX {
            return Err(CommandError::InvalidArgument(format!("bio must be 1..={BIO_CHARS_MAX} characters (got {n})")));
        }
        self.profile.bio = bio.to_owned();
        let change = Change::put(Table::Profile, "self", &self.profile);
        self.persist(vec![change]);
        let notified = self.broadcast_peer_update();
        Ok(BioUpdated { bio: bio.to_owned(), peers_notified: notified })
    }

    /// A new display name, kept in the profile and announced in the signed update that covers it.
    /// Control characters are refused: peers show the name as a line of text.
    pub(crate) fn cmd_rename(&mut self, name: &str) -> Result<Renamed, CommandError> {
        let n = name.chars().count();
        if n == 0 || n > DISPLAY_NAME_CHARS_MAX || name.chars().any(char::is_control) {
            return Err(CommandError::InvalidArgument(format!(
                "display_name must be 1..={DISPLAY_NAME_CHARS_MAX} characters without control characters (got {n})"
            )));
        }
        self.profile.display_name = name.to_owned();
        let change = Change::put(Table::Profile, "self", &self.profile);
        self.persist(vec![change]);
        let notified = self.broadcast_peer_update();
        Ok(Renamed { display_name: name.to_owned(), peers_notified: notified })
    }

    /// The runtime learned our address changed: adopt it and tell every peer.
    pub(crate) fn cmd_set_url(&mut self, new_url: &str) -> Result<UrlUpdated, CommandError> {
        url::validate(new_url).map_err(CommandError::InvalidArgument)?;
        let new_base = url::base(new_url);
        if new_base != self.config.public_url {
            self.relay.url_changed(super::relay::unroutable(&new_base), self.now.mono_ms);
        }
        self.config.public_url = new_base;
        // Already announced (a restart on this URL announces it by itself): nothing new to tell.
        let me = self.me().to_owned();
        if self.healing.proof(&me).is_some_and(|p| p.url == self.config.public_url) {
            return Ok(UrlUpdated { url: self.config.public_url.clone(), peers_notified: 0 });
        }
        let notified = self.broadcast_peer_update();
        Ok(UrlUpdated { url: self.config.public_url.clone(), peers_notified: notified })
    }
}

/// A held proof as the `signed_update` of a lookup answer: the peer's own `peer_update`, re-served.
fn signed_update(agent_id: &str, p: &UrlProof) -> PeerUpdate {
    let mut u = PeerUpdate {
        agent_id: agent_id.to_owned(),
        new_url: p.url.clone(),
        timestamp: Some(p.timestamp.clone()),
        ..PeerUpdate::default()
    };
    match &p.form {
        ProofForm::V2 { signature, bio, display_name } => {
            u.dm_signature_hex = Some(signature.clone());
            u.bio = Some(bio.clone());
            u.display_name = Some(display_name.clone());
        }
        ProofForm::Legacy { signature } => u.signature = Some(signature.clone()),
        ProofForm::Unsigned => {}
    }
    u
}
