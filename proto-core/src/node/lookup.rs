//! Peer lookups (SPEC §9.4): a delivery to a connection that fails the way a move explains is held,
//! our most trusted connections are asked where the peer is, and the delivery is retried once at a
//! URL the peer itself signed, or, for 0.5.3 peers, one that answerers agree on and whose card
//! proves the peer's key. A webhook callback to a connection that moved is held and posted again the
//! same way (0.5.3's webhook recovery). State lives in [`crate::healing`].

use crate::crypto;
use crate::healing::{decide, Candidate, Decision, Held, Parked};
use crate::io::{Event, HttpResponse, Method, RecoveredVia};
use crate::limits::{self, LOOKUP_ASK_MAX, LOOKUP_FUTURE_S_MAX, LOOKUP_TIMEOUT_MS};
use crate::node::{Call, Node};
use crate::sign::{self, DOMAIN_PEER_UPDATE, V2_PEER_UPDATE};
use crate::store::{Change, ProofForm, Table, UrlProof};
use crate::time::parse_iso;
use crate::url;
use crate::wire::{self, card::WellKnownCard, peer::PeerLookupAnswer};

/// Whether a failed delivery looks like the peer moved: no answer, a timeout, a server error, or an
/// answer that is not JSON (a proxy's error page). A refusal by the peer itself (4xx) is not.
pub(crate) fn looks_moved(result: &Result<HttpResponse, String>) -> bool {
    match result {
        Err(_) => true,
        Ok(r) if r.status >= 500 => true,
        Ok(r) if (200..300).contains(&r.status) => false,
        Ok(r) => serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&r.body).is_err(),
    }
}

impl Node {
    /// A delivery or webhook callback to `target` failed: holds it for a lookup if the failure looks
    /// like a move and a lookup runs or may start; gives the result back otherwise (it fails as it is).
    pub(crate) fn hold_for_lookup(
        &mut self,
        held: Held,
        target: &str,
        body: Vec<u8>,
        result: Result<HttpResponse, String>,
    ) -> Result<(), Result<HttpResponse, String>> {
        if !looks_moved(&result) || !self.connections.contains_key(target) {
            return Err(result);
        }
        let parked = Parked { held, body, result };
        let parked = match self.healing.park(target, parked) {
            Ok(()) => return Ok(()),
            Err(p) => p,
        };
        self.healing.start(self.now.mono_ms, target, parked).map_err(|p| p.result)?;
        if self.ask_where(target) == 0 {
            self.conclude_lookup(target);
        }
        Ok(())
    }

    /// Asks up to [`LOOKUP_ASK_MAX`] connections (most trusted first, never the peer) where `peer` is.
    fn ask_where(&mut self, peer: &str) -> usize {
        let mut asked: Vec<(f64, String, String, bool)> = self
            .connections
            .values()
            .filter(|c| c.agent_id.as_str() != peer)
            .map(|c| (self.trust_of(c.agent_id.as_str()), c.agent_id.to_string(), c.url.clone(), c.local))
            .collect();
        asked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        asked.truncate(LOOKUP_ASK_MAX);
        // Anchors are asked beside the connections (SPEC §20.3); their answers count the same way.
        let anchors = self.ask_anchors(peer);
        if let Some(l) = self.healing.lookup_mut(peer) {
            l.asked = asked.len() + anchors;
        }
        for (_, answerer, answerer_url, local) in &asked {
            let call = Call::Lookup { peer: peer.to_owned(), answerer: answerer.clone() };
            let path = format!("peer_lookup/{peer}");
            self.transmit(Method::Get, url::endpoint(answerer_url, &path), Vec::new(), LOOKUP_TIMEOUT_MS, !local, call);
        }
        asked.len() + anchors
    }

    /// One answer to a lookup question.
    pub(crate) fn on_lookup_answer(&mut self, peer: &str, answerer: &str, result: Result<HttpResponse, String>) {
        let candidate = self.candidate(peer, answerer, result);
        self.lookup_answered(peer, candidate);
    }

    /// Counts one answer (a connection's or an anchor's) and concludes once all are in.
    pub(crate) fn lookup_answered(&mut self, peer: &str, candidate: Option<Candidate>) {
        let Some(l) = self.healing.lookup_mut(peer) else { return };
        l.finished += 1;
        l.candidates.extend(candidate);
        if l.finished >= l.asked {
            self.conclude_lookup(peer);
        }
    }

    /// What one answer is worth: nothing unless it names the peer and a valid URL (a private one only
    /// from a local answerer); its signed update only if it verifies under the peer's key.
    fn candidate(&self, peer: &str, answerer: &str, result: Result<HttpResponse, String>) -> Option<Candidate> {
        let resp = result.ok().filter(|r| r.status == 200)?;
        let a: PeerLookupAnswer = wire::decode(&resp.body).ok()?;
        let answerer_local = self.connections.get(answerer)?.local;
        if a.agent_id != peer {
            return None;
        }
        let usable = |text: &str| {
            url::validate(text).ok().filter(|u| answerer_local || !url::is_local_url(u)).map(|_| url::base(text))
        };
        let signed =
            a.signed_update.as_ref().and_then(|u| self.verified_update(peer, u)).filter(|p| usable(&p.url).is_some());
        let url = match &signed {
            Some(p) => url::base(&p.url),
            None => usable(&a.url)?,
        };
        let weight = self.impressions.get(answerer).map_or(0.5, |i| i.score.max(0.1));
        Some(Candidate { answerer: answerer.to_owned(), url, weight, signed, via: RecoveredVia::Peer })
    }

    /// A relayed `peer_update` that `peer` signed (either form), as a proof; `None` if it does not
    /// verify, names another agent or lies more than [`LOOKUP_FUTURE_S_MAX`] in the future.
    pub(crate) fn verified_update(&self, peer: &str, u: &crate::wire::peer::PeerUpdate) -> Option<UrlProof> {
        let key = self.connections.get(peer)?.agent_id.key();
        let stamp = u.timestamp.as_deref()?;
        let stamp_us = parse_iso(stamp)?;
        if u.agent_id != peer || stamp_us > self.now.wall_us + LOOKUP_FUTURE_S_MAX * 1_000_000 {
            return None;
        }
        let opt = |s: &Option<String>| s.clone().unwrap_or_default();
        let form = if let Some(sig) = &u.dm_signature_hex {
            let (bio, name) = (opt(&u.bio), opt(&u.display_name));
            let bytes = sign::v2_bytes(V2_PEER_UPDATE, &[&u.agent_id, &u.new_url, &bio, &name, stamp]);
            crypto::verify_hex(&*self.signatures, key, &bytes, sig).ok()?;
            ProofForm::V2 { signature: sig.clone(), bio, display_name: name }
        } else {
            let sig = u.signature.as_ref()?;
            let bytes = sign::domain_bytes(DOMAIN_PEER_UPDATE, &[&u.agent_id, &u.new_url, stamp]).ok()?;
            crypto::verify_hex(&*self.signatures, key, &bytes, sig).ok()?;
            ProofForm::Legacy { signature: sig.clone() }
        };
        // The URL as signed (re-served byte for byte); its base is what a connection stores.
        Some(UrlProof { url: u.new_url.clone(), timestamp: stamp.to_owned(), stamp_us, form })
    }

    /// Every question is answered: adopt what the answers prove, check an unsigned candidate's card,
    /// or fail the held deliveries.
    fn conclude_lookup(&mut self, peer: &str) {
        let Some(l) = self.healing.lookup_mut(peer) else { return };
        let candidates = std::mem::take(&mut l.candidates);
        let failed_url = self.connections.get(peer).map(|c| url::base(&c.url)).unwrap_or_default();
        match decide(&candidates, self.held_proof_us(peer), &failed_url) {
            Decision::Signed(proof) => {
                let naming = || candidates.iter().filter(|c| c.signed.as_ref() == Some(&proof));
                let local = naming().any(|c| self.is_local_peer(&c.answerer));
                let via = via_of(naming());
                self.adopt(peer, proof, (local, via));
            }
            Decision::Unsigned(candidate) => {
                let naming = || candidates.iter().filter(|c| c.url == candidate);
                let local = naming().any(|c| self.is_local_peer(&c.answerer));
                let via = via_of(naming());
                let card_url = format!("{candidate}/.well-known/darkmatter.json");
                let call = Call::LookupCard { peer: peer.to_owned(), url: candidate, local, via };
                self.transmit(Method::Get, card_url, Vec::new(), LOOKUP_TIMEOUT_MS, !local, call);
            }
            Decision::Nothing => self.fail_lookup(peer),
        }
    }

    /// The candidate's card: it must name the peer, key and id alike.
    pub(crate) fn on_lookup_card(
        &mut self,
        peer: &str,
        url: String,
        (local, via): (bool, RecoveredVia),
        result: Result<HttpResponse, String>,
    ) {
        let card = result.ok().filter(|r| r.status == 200).and_then(|r| wire::decode::<WellKnownCard>(&r.body).ok());
        let proven =
            card.is_some_and(|c| c.agent_id.as_deref() == Some(peer) && c.public_key_hex.as_deref() == Some(peer));
        if !proven {
            return self.fail_lookup(peer);
        }
        let held = self.held_proof_us(peer);
        let proof = UrlProof { url, timestamp: String::new(), stamp_us: held, form: ProofForm::Unsigned };
        self.adopt(peer, proof, (local, via));
    }

    /// The timestamp a newer proof must beat: the held signed update's, else the connection's time.
    fn held_proof_us(&self, peer: &str) -> i64 {
        match self.healing.proof(peer) {
            Some(p) => p.stamp_us,
            None => self.connections.get(peer).and_then(|c| parse_iso(&c.connected_at)).unwrap_or(i64::MIN),
        }
    }

    fn is_local_peer(&self, agent_id: &str) -> bool {
        self.connections.get(agent_id).is_some_and(|c| c.local)
    }

    /// Moves `peer` to the proven URL and retries what was held there, once; `local` when a local
    /// connection named it, `via` who did.
    fn adopt(&mut self, peer: &str, proof: UrlProof, (local, via): (bool, RecoveredVia)) {
        let now_ms = self.now.mono_ms;
        let Some(lookup) = self.healing.finish(now_ms, peer) else { return };
        let Some(conn) = self.connections.get_mut(peer) else { return };
        let old_url = std::mem::replace(&mut conn.url, url::base(&proof.url));
        conn.local = local;
        let agent_id = conn.agent_id.clone();
        let conn_change = Change::put(Table::Connections, peer, &*conn);
        let verified = proof.signed();
        let new_url = conn.url.clone();
        let proof_change = self.healing.put_proof(peer, proof);
        self.persist(vec![conn_change, proof_change]);
        self.emit(Event::PeerUrlRecovered { agent_id, old_url, new_url: new_url.clone(), verified, via });
        for p in lookup.parked {
            self.retry(peer, &new_url, local, p);
        }
    }

    /// Posts a held call again at the peer's new URL: a delivery once (final), a webhook callback at
    /// its path while its recovery window lasts.
    fn retry(&mut self, peer: &str, new_url: &str, local: bool, p: Parked) {
        let (target, call) = match p.held {
            Held::Delivery { batch } => {
                // The body is kept: a retry that fails too may still be relayed (SPEC §20.4).
                let call = Call::Deliver { batch, target: peer.to_owned(), body: p.body.clone(), retried: true };
                (url::endpoint(new_url, "message"), call)
            }
            Held::Webhook { until_ms, .. } if self.now.mono_ms > until_ms => return,
            Held::Webhook { path, attempts, until_ms } => {
                let hook = format!("{}{path}", url::base(new_url));
                let call = Call::Webhook {
                    url: hook.clone(),
                    body: p.body.clone(),
                    attempts: attempts + 1,
                    until_ms: Some(until_ms),
                };
                (hook, call)
            }
        };
        self.transmit(Method::Post, target, p.body, limits::PEER_CALL_TIMEOUT_MS, !local, call);
    }

    /// Nothing found: the held deliveries fail as they failed.
    fn fail_lookup(&mut self, peer: &str) {
        let now_ms = self.now.mono_ms;
        let Some(lookup) = self.healing.finish(now_ms, peer) else { return };
        if let Some(conn) = self.connections.get(peer) {
            let agent_id = conn.agent_id.clone();
            self.emit(Event::PeerNotFound { agent_id });
        }
        for p in lookup.parked {
            // A held webhook callback is dropped: callbacks are best effort. A delivery may still be
            // relayed (SPEC §20.4).
            if let Held::Delivery { batch } = p.held {
                self.relay_or_fail(batch, peer.to_owned(), p.body, p.result);
            }
        }
    }
}

/// Who named an adopted URL: a connection if any did (its answer is one of ours), else an anchor.
fn via_of<'a>(mut naming: impl Iterator<Item = &'a Candidate>) -> RecoveredVia {
    if naming.any(|c| c.via == RecoveredVia::Peer) {
        RecoveredVia::Peer
    } else {
        RecoveredVia::Anchor
    }
}
