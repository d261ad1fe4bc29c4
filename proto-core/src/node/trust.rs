//! Node glue for trust: impressions moved by events, trust queries asked and answered, the
//! acceptance policy applied to pending requests, auto-disconnect.

use crate::trust::{adjust, adjust_automatic, answer_bytes, combine, is_vouch, query_bytes, told_score, TrustPolicy};

use crate::crypto;
use crate::error::{CommandError, Refusal};
use crate::identity::truncate_chars;
use crate::io::{Event, HttpResponse, Method};
use crate::limits::{
    self, IMPRESSIONS_MAX, NOTE_CHARS_MAX, TRUST_ANSWER_MIN, TRUST_CONFIDENCE_MIN, TRUST_DECISION_HOLD_S,
    TRUST_NEGATIVE_TIMEOUT_S, TRUST_QUERY_ASKED_MAX, TRUST_QUERY_FANOUT_MAX, TRUST_QUERY_TIMEOUT_MS,
    TRUST_REPORT_WEIGHT,
};
use crate::node::{Call, Node};
use crate::output::{ImpressionDetail, ImpressionSet, ImpressionView};
use crate::replay::{check_fresh, sig_key};
use crate::store::{Change, PeerTrust, Table};
use crate::url;
use crate::wire::{
    self,
    trust::{TrustAnswer, TrustQuery},
};

impl Node {
    /// Our impression score of an agent; 0.0 (neutral) when we have none.
    pub(crate) fn trust_of(&self, agent_id: &str) -> f64 {
        self.impressions.score(agent_id)
    }

    /// Sets a score, persists it, then does what follows from the change: the negative-since mark,
    /// shard sync when it rises past a threshold.
    /// `first_hand`: the change comes from our own dealings with the agent (see
    /// [`Impression::first_hand`]); a hearsay change leaves the flag as it was.
    pub(crate) fn set_score(&mut self, agent_id: &str, score: f64, note: Option<String>, first_hand: bool) {
        let old = self.trust_of(agent_id);
        let change = self.impressions.set(agent_id, score, note, first_hand, self.now.wall_us, self.now.iso());
        self.persist(vec![change]);
        if score > old {
            self.on_trust_rose(agent_id, old, score);
        }
    }

    /// Moves an impression by an event's delta (diminishing, clamped; a gain stops at the automatic
    /// ceiling under the bounded policies) and persists it.
    pub(crate) fn nudge(&mut self, agent_id: &str, delta: f64) {
        if !self.impressions.has_room_for(agent_id) {
            return;
        }
        let old = self.trust_of(agent_id);
        let score = if self.config.trust_policy.bounded() { adjust_automatic(old, delta) } else { adjust(old, delta) };
        if self.config.trust_policy.bounded()
            && score == old
            && self.impressions.get(agent_id).is_some_and(|i| i.first_hand)
        {
            // At the ceiling: nothing to write.
            return;
        }
        self.set_score(agent_id, score, None, true);
    }

    pub(crate) fn cmd_set_impression(
        &mut self,
        agent_id: &str,
        score: f64,
        note: Option<String>,
    ) -> Result<ImpressionSet, CommandError> {
        let id = self.agent_id(agent_id).map_err(|e| CommandError::InvalidArgument(e.to_string()))?;
        if !score.is_finite() || !(-1.0..=1.0).contains(&score) {
            return Err(CommandError::InvalidArgument("score must be within -1.0..1.0".to_owned()));
        }
        let note = note.unwrap_or_default();
        if note.chars().count() > NOTE_CHARS_MAX {
            return Err(CommandError::InvalidArgument(format!("note must be at most {NOTE_CHARS_MAX} characters")));
        }
        if !self.impressions.has_room_for(agent_id) {
            return Err(CommandError::Limited(format!("At most {IMPRESSIONS_MAX} impressions")));
        }
        self.set_score(agent_id, score, Some(truncate_chars(&note, NOTE_CHARS_MAX)), true);
        Ok(ImpressionSet { agent_id: id, score, note })
    }

    pub(crate) fn cmd_get_impression(&self, agent_id: &str) -> ImpressionView {
        let impression = self.impressions.get(agent_id).map(|i| ImpressionDetail {
            score: i.score,
            note: i.note.clone(),
            updated_at: i.updated_at.clone(),
            negative_since: i.negative_since_us.map(crate::time::format_iso),
            first_hand: i.first_hand,
        });
        ImpressionView { agent_id: agent_id.to_owned(), has_impression: impression.is_some(), impression }
    }

    /// 0.5.3's unauthenticated `GET /impression/<id>`: impressions are private, so always refused.
    /// It does no work, so it spends no budget.
    pub(crate) fn on_impression_query(&mut self, _agent_id: &str) -> Result<Vec<u8>, Refusal> {
        Err(Refusal::Unauthorized(
            "Impressions are private; ask with a signed trust_query as a connected peer".to_owned(),
        ))
    }

    // ----- peer trust queries: answering -----

    pub(crate) fn on_trust_query(&mut self, body: &[u8]) -> Result<Vec<u8>, Refusal> {
        let q: TrustQuery = wire::decode(body)?;
        if q.from_agent_id.is_empty()
            || q.subject_agent_id.is_empty()
            || q.query_id.is_empty()
            || q.dm_signature_hex.is_empty()
        {
            return Err(Refusal::MissingFields(
                "from_agent_id, subject_agent_id, query_id, dm_signature_hex".to_owned(),
            ));
        }
        if q.to_agent_id != self.me() {
            return Err(Refusal::Invalid("Query is addressed to another agent".to_owned()));
        }
        if q.query_id.len() > crate::limits::ID_BYTES_MAX {
            return Err(Refusal::Invalid("query_id too long".to_owned()));
        }
        let Some(conn) = self.connections.get(&q.from_agent_id) else {
            return Err(Refusal::Unauthorized("Trust queries are answered to connected peers only".to_owned()));
        };
        let key = *conn.agent_id.key();
        let stamp_us = check_fresh(self.now.wall_us, &q.timestamp)?;
        crypto::verify_hex(&*self.signatures, &key, &query_bytes(&q), &q.dm_signature_hex)
            .map_err(|_| Refusal::Unauthorized("Invalid signature".to_owned()))?;
        self.admit(Some(&q.from_agent_id), None)?;
        if self.trust_of(&q.from_agent_id) < TRUST_ANSWER_MIN {
            return Err(Refusal::Unauthorized("Not answered: this node does not trust the asker".to_owned()));
        }
        let subject = self.bind_identity(&q.subject_agent_id, None)?;
        let replay = sig_key("trust-query", &q.dm_signature_hex);
        let change = self.replay.admit(&replay, stamp_us, self.now.wall_us)?;
        self.persist(vec![change]);
        // Hearsay is not an opinion: only what we formed ourselves is told, and no good word for a
        // peer we saw vouching for a crowd.
        let over_budget =
            self.config.trust_policy.bounded() && !self.vouches.within_budget(subject.as_str(), self.now.wall_us);
        let score =
            self.impressions.get(subject.as_str()).filter(|i| i.first_hand).map(|i| told_score(i.score, over_budget));
        let mut a = TrustAnswer {
            from_agent_id: self.me().to_owned(),
            to_agent_id: q.from_agent_id.clone(),
            subject_agent_id: subject.to_string(),
            query_id: q.query_id.clone(),
            has_impression: score.is_some(),
            score,
            timestamp: self.now.iso(),
            dm_signature_hex: String::new(),
        };
        a.dm_signature_hex = crypto::sign_hex(&*self.signatures, &self.passport, &answer_bytes(&a));
        Ok(wire::encode(&a))
    }

    // ----- peer trust queries: asking -----

    /// Starts asking our connected peers what they think of a new requester. Answers arrive through
    /// [`Node::on_trust_answer`]; a round that leaves us unsure asks the next peers (see
    /// [`Node::ask_next_peers`]).
    pub(crate) fn start_trust_query(&mut self, request_id: &str) {
        // Only for a requester that proved its key: otherwise anyone could make us query our peers
        // (and move our impressions) in someone else's name.
        let Some(p) =
            self.connections.pending_mut(request_id).filter(|p| p.identity_verified && p.peer_trust.is_none())
        else {
            return;
        };
        p.peer_trust = Some(PeerTrust::default());
        if self.ask_next_peers(request_id) == 0 {
            self.finish_trust_query_if_complete(request_id);
        }
    }

    /// One round of questions: up to [`TRUST_QUERY_FANOUT_MAX`] connected peers not asked before
    /// about this request, most trusted first, within [`TRUST_QUERY_ASKED_MAX`] per request. The
    /// round is persisted before it goes out, so a restart asks again. Returns how many were asked.
    pub(crate) fn ask_next_peers(&mut self, request_id: &str) -> usize {
        let Some(p) = self.connections.pending(request_id) else { return 0 };
        let Some(t) = p.peer_trust.as_ref() else { return 0 };
        let subject = p.agent_id.to_string();
        let room = TRUST_QUERY_ASKED_MAX.saturating_sub(t.asked_peers.len()).min(TRUST_QUERY_FANOUT_MAX);
        if room == 0 {
            return 0;
        }
        // The first round asks the most trusted peers whatever their weight (the agent sees every
        // opinion); a later round only asks peers whose answer can count, so a request nobody vouches
        // for cannot make us question the whole neighbourhood.
        let first_round = t.asked_peers.is_empty();
        let mut peers: Vec<(f64, String, String)> = self
            .connections
            .values()
            .filter(|c| c.agent_id.as_str() != subject && !t.asked_peers.iter().any(|a| a == c.agent_id.as_str()))
            .filter(|c| first_round || self.peer_weight(c.agent_id.as_str()) > 0.0)
            .map(|c| (self.trust_of(c.agent_id.as_str()), c.agent_id.to_string(), c.url.clone()))
            .collect();
        // Most trusted first; ties by id so the choice is deterministic.
        peers.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        peers.truncate(room);
        if peers.is_empty() {
            return 0;
        }
        let Some(p) = self.connections.pending_mut(request_id) else { return 0 };
        let t = p.peer_trust.as_mut().expect("checked above");
        t.asked += peers.len() as u32;
        t.asked_peers.extend(peers.iter().map(|(_, id, _)| id.clone()));
        debug_assert!(t.asked_peers.len() <= TRUST_QUERY_ASKED_MAX);
        let change = Change::put(Table::PendingIn, request_id, &*p);
        self.persist(vec![change]);
        let asked = peers.len();
        for (_, peer, peer_url) in peers {
            let query_id = format!("tq-{}", self.random_hex(6));
            let mut q = TrustQuery {
                from_agent_id: self.me().to_owned(),
                to_agent_id: peer.clone(),
                subject_agent_id: subject.clone(),
                query_id: query_id.clone(),
                timestamp: self.now.iso(),
                dm_signature_hex: String::new(),
            };
            q.dm_signature_hex = crypto::sign_hex(&*self.signatures, &self.passport, &query_bytes(&q));
            let local = self.connections.get(&peer).is_some_and(|c| c.local);
            let call = Call::TrustQuery { request_id: request_id.to_owned(), peer, query_id };
            self.transmit(
                Method::Post,
                url::endpoint(&peer_url, "trust_query"),
                wire::encode(&q),
                TRUST_QUERY_TIMEOUT_MS,
                !local,
                call,
            );
        }
        asked
    }

    pub(crate) fn on_trust_answer(
        &mut self,
        request_id: &str,
        peer: &str,
        query_id: &str,
        result: Result<HttpResponse, String>,
    ) {
        let opinion = match self.check_trust_answer(request_id, peer, query_id, result) {
            Answer::Opinion(score) => Some(score),
            Answer::Nothing => None,
            Answer::Misbehaved => {
                // Signed by the peer itself yet wrong: the one kind of bad packet that is attributable.
                self.nudge(peer, limits::TRUST_DELTA_FORGED);
                None
            }
        };
        let Some(subject) = self.connections.pending(request_id).map(|p| p.agent_id.to_string()) else { return };
        if let Some(score) = opinion {
            self.vouches.note(peer, &subject, score, self.now.wall_us);
        }
        let weight = opinion.map_or(0.0, |score| self.opinion_weight(peer, score));
        let Some(p) = self.connections.pending_mut(request_id) else { return };
        let Some(t) = p.peer_trust.as_mut() else { return };
        t.finished += 1;
        if let Some(score) = opinion {
            t.opinions.push((peer.to_owned(), score, weight));
        }
        // A trusted peer's report moves our own impression of the subject a little.
        if let Some(score) = opinion {
            if weight > 0.0 && self.config.trust_policy.weighted() {
                let ours = self.trust_of(&subject);
                let moved = (ours + TRUST_REPORT_WEIGHT * weight * (score - ours)).clamp(-1.0, 1.0);
                if self.impressions.has_room_for(&subject) {
                    self.set_score(&subject, moved, None, false);
                }
            }
        }
        self.finish_trust_query_if_complete(request_id);
    }

    /// What a peer's answer says about this request's subject.
    fn check_trust_answer(
        &self,
        request_id: &str,
        peer: &str,
        query_id: &str,
        result: Result<HttpResponse, String>,
    ) -> Answer {
        let Some(resp) = result.ok().filter(|r| r.status == 200) else { return Answer::Nothing };
        let Ok(a) = wire::decode::<TrustAnswer>(&resp.body) else { return Answer::Nothing };
        let (Some(p), Some(conn)) = (self.connections.pending(request_id), self.connections.get(peer)) else {
            return Answer::Nothing;
        };
        if a.from_agent_id != peer
            || crypto::verify_hex(&*self.signatures, conn.agent_id.key(), &answer_bytes(&a), &a.dm_signature_hex)
                .is_err()
        {
            return Answer::Nothing;
        }
        // A genuine answer meant for another asker or query looks just like this when replayed, so a
        // mismatch is no opinion, not misbehaviour.
        if a.to_agent_id != self.me() || a.subject_agent_id != p.agent_id.as_str() || a.query_id != query_id {
            return Answer::Nothing;
        }
        // Signed by the peer, for this very question, and out of range: that is the peer's doing.
        if !a.score.is_none_or(|s| s.is_finite() && (-1.0..=1.0).contains(&s)) {
            return Answer::Misbehaved;
        }
        if check_fresh(self.now.wall_us, &a.timestamp).is_err() {
            return Answer::Nothing;
        }
        match a.score {
            Some(score) if a.has_impression => Answer::Opinion(score),
            _ => Answer::Nothing,
        }
    }

    fn finish_trust_query_if_complete(&mut self, request_id: &str) {
        let Some(p) = self.connections.pending_mut(request_id) else { return };
        let Some(t) = p.peer_trust.as_mut() else { return };
        if !t.complete() {
            return;
        }
        combine(t);
        let change = Change::put(Table::PendingIn, request_id, &*p);
        self.persist(vec![change]);
        // Not enough weight yet: ask the next peers before deciding.
        if !self.confident(request_id) && self.ask_next_peers(request_id) > 0 {
            return;
        }
        self.decide_by_policy(request_id);
        // Still pending after the policy: the agent decides (if spawning is on, one wakes now).
        self.spawn_for_request(request_id);
    }

    /// Whether the opinions in on this request weigh enough for the policy to act on.
    fn confident(&self, request_id: &str) -> bool {
        let Some(t) = self.connections.pending(request_id).and_then(|p| p.peer_trust.as_ref()) else { return false };
        match self.config.trust_policy {
            TrustPolicy::Weighted | TrustPolicy::WeightedUnbounded => {
                t.score.is_some() && t.weight >= TRUST_CONFIDENCE_MIN
            }
            TrustPolicy::PlainAverage => t.score.is_some() && !t.opinions.is_empty(),
        }
    }

    /// Applies the acceptance policy to a proven request whose peer opinions are all in.
    pub(crate) fn decide_by_policy(&mut self, request_id: &str) {
        let Some(p) = self.connections.pending(request_id) else { return };
        let Some(t) = p.peer_trust.as_ref().filter(|t| t.complete()) else { return };
        let Some(score) = t.score else { return };
        if !self.confident(request_id) {
            return;
        }
        // Held: a voucher that vouches for a crowd needs time to show it (the housekeeping after the
        // hold decides).
        if self.policy_decides_from(p).is_some_and(|from| self.now.wall_us < from) {
            return;
        }
        let agent_id = p.agent_id.clone();
        // Only a request signed in our form may be accepted by policy: a 0.5.3 challenge proof signs
        // nothing but the challenge, so a node the requester talks to could relay it.
        let signed = p.speaks_v2;
        if self.config.trust_accept_min.is_some_and(|min| score >= min) && signed && self.accepting_automatically() {
            self.accept_pending(request_id);
            self.emit(Event::RequestDecided {
                request_id: request_id.to_owned(),
                agent_id,
                accepted: true,
                peer_score: score,
            });
        } else if self.config.trust_reject_max.is_some_and(|max| score <= max) {
            self.reject_pending(request_id);
            self.emit(Event::RequestDecided {
                request_id: request_id.to_owned(),
                agent_id,
                accepted: false,
                peer_score: score,
            });
        }
    }

    /// When the policy may decide request `p` at the earliest (wall µs): the end of its decision
    /// hold; `None` when the policy is off or holds nothing.
    pub(crate) fn policy_decides_from(&self, p: &crate::store::PendingIn) -> Option<i64> {
        let off = self.config.trust_accept_min.is_none() && self.config.trust_reject_max.is_none();
        (!off && self.config.trust_policy.bounded())
            .then(|| p.requested_us.saturating_add(TRUST_DECISION_HOLD_S as i64 * 1_000_000))
    }

    /// Looks again at every pending request whose questions are all answered (at housekeeping):
    /// opinions are weighed by our trust in their givers *now* (in memory; the next housekeeping after
    /// a restart does it again), peers connected since are asked
    /// while we are still unsure, and the policy decides what has become clear. At most
    /// [`crate::limits::PENDING_REQUESTS_MAX`] requests with up to [`TRUST_QUERY_ASKED_MAX`]
    /// opinions each.
    pub(crate) fn reconsider_pending(&mut self) {
        let waiting: Vec<String> = self
            .connections
            .pending_requests()
            .filter(|p| p.peer_trust.as_ref().is_some_and(|t| t.complete()))
            .map(|p| p.request_id.clone())
            .collect();
        for request_id in waiting {
            let weights: Vec<f64> = match self.connections.pending(&request_id).and_then(|p| p.peer_trust.as_ref()) {
                Some(t) => t.opinions.iter().map(|o| self.opinion_weight(&o.0, o.1)).collect(),
                None => continue,
            };
            let Some(p) = self.connections.pending_mut(&request_id) else { continue };
            let Some(t) = p.peer_trust.as_mut() else { continue };
            // Derived from our impressions, which are stored: not persisted (trust drifts a little
            // with every delivery, and rewriting up to 50 records a minute would buy nothing).
            for (o, w) in t.opinions.iter_mut().zip(weights) {
                o.2 = w;
            }
            combine(t);
            if !self.confident(&request_id) && self.ask_next_peers(&request_id) > 0 {
                continue;
            }
            self.decide_by_policy(&request_id);
        }
    }

    /// How much any opinion of a peer can count: our trust in it (none if we distrust it), or 1 for
    /// all under the plain average.
    fn peer_weight(&self, peer: &str) -> f64 {
        if self.config.trust_policy.weighted() {
            self.trust_of(peer).max(0.0)
        } else {
            1.0
        }
    }

    /// How much a peer's opinion `score` counts now: its [`Node::peer_weight`], or nothing when it is
    /// a vouch from a peer over its vouch budget (under the bounded policies).
    pub(crate) fn opinion_weight(&self, peer: &str, score: f64) -> f64 {
        let over_budget = self.config.trust_policy.bounded()
            && is_vouch(score)
            && !self.vouches.within_budget(peer, self.now.wall_us);
        if over_budget {
            0.0
        } else {
            self.peer_weight(peer)
        }
    }

    /// Drops connections whose impression has been negative for longer than
    /// [`TRUST_NEGATIVE_TIMEOUT_S`], telling each peer with a signed notice.
    pub(crate) fn auto_disconnect(&mut self) {
        let cutoff = self.now.wall_us - TRUST_NEGATIVE_TIMEOUT_S as i64 * 1_000_000;
        // Walks the impressions, not the connections: most have no negative mark, and this runs on
        // every housekeeping tick. Both maps are keyed by agent id, so the order is the same.
        let stale: Vec<String> = self
            .impressions
            .iter()
            .filter(|(id, i)| {
                i.negative_since_us.is_some_and(|since| since <= cutoff) && self.connections.contains_key(id)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            self.disconnect(&id, "Auto-disconnected: impression negative for over an hour.");
        }
    }
}

/// What a peer's answer to a trust query amounts to.
enum Answer {
    /// A valid opinion.
    Opinion(f64),
    /// No opinion, or nothing usable (unreachable, unsigned, stale).
    Nothing,
    /// Signed by the peer for this question, with a score out of range.
    Misbehaved,
}
