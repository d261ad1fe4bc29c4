//! Healing's state (SPEC §9): the proof behind each peer's URL, and the lookups that look for a peer
//! whose deliveries fail.
//!
//! A URL changes only on the peer's own signature (its `peer_update`, kept here and served to peers
//! that look it up, so a relayer can pass on the peer's word but never forge it), or, for 0.5.3
//! peers that sign nothing the asker can check, on the agreement of answerers plus the peer's own
//! card at the candidate URL. A lookup holds the failed deliveries it may retry.

use std::collections::BTreeMap;

use crate::io::{HttpResponse, RecoveredVia};
use crate::limits::{
    LOOKUPS_IN_FLIGHT_MAX, LOOKUP_COOLDOWN_MS, LOOKUP_PARKED_MAX, LOOKUP_UNSIGNED_AGREE_MIN, LOOKUP_UNSIGNED_SCORE_MIN,
};
use crate::store::{Change, RecordError, Table, UrlProof};

/// What a held call was.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Held {
    /// A delivery of a send or forward batch: failed in its batch if the lookup finds nothing.
    Delivery {
        /// The batch it belongs to.
        batch: u64,
    },
    /// A callback to one of the peer's webhooks (0.5.3's webhook recovery): retried at the same path
    /// on the new URL, dropped if the lookup finds nothing (callbacks are best effort).
    Webhook {
        /// The webhook's path, from `/__darkmatter__/webhook/` or `/__darkmatter__/webhook_relay/`.
        path: String,
        /// Posts made so far (at most [`crate::limits::WEBHOOK_RECOVERY_ATTEMPTS_MAX`]).
        attempts: u32,
        /// Monotonic ms after which it is not retried (the first failure plus
        /// [`crate::limits::WEBHOOK_RECOVERY_WINDOW_MS`]).
        until_ms: u64,
    },
}

/// A failed call held by a lookup: retried as it was if the peer is found, else failed.
#[derive(Debug)]
pub(crate) struct Parked {
    /// The delivery or callback it was.
    pub(crate) held: Held,
    /// The envelope, byte for byte (a retry carries the same signatures).
    pub(crate) body: Vec<u8>,
    /// How it failed, reported if the lookup finds nothing.
    pub(crate) result: Result<HttpResponse, String>,
}

/// One answer naming a URL for the peer.
#[derive(Clone, Debug)]
pub(crate) struct Candidate {
    /// Who answered.
    pub(crate) answerer: String,
    /// The URL it named (validated, a base URL).
    pub(crate) url: String,
    /// Our weight for the answerer: max(trust, 0.1), 0.5 when we have no impression (0.5.3's rule).
    pub(crate) weight: f64,
    /// The peer's own signed update served with the answer, verified under the peer's key.
    pub(crate) signed: Option<UrlProof>,
    /// A connection or an anchor.
    pub(crate) via: RecoveredVia,
}

/// What a lookup found.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Decision {
    /// The newest signed update, newer than what we hold: adopt it.
    Signed(UrlProof),
    /// No signed update, but answerers agree on this URL: adopt it once its card proves the key.
    Unsigned(String),
    /// Nothing to adopt.
    Nothing,
}

/// One running lookup.
#[derive(Debug, Default)]
pub(crate) struct Lookup {
    /// Questions sent.
    pub(crate) asked: usize,
    /// Questions answered or failed.
    pub(crate) finished: usize,
    /// Usable answers, in arrival order.
    pub(crate) candidates: Vec<Candidate>,
    /// Deliveries waiting for the outcome (at most [`LOOKUP_PARKED_MAX`]).
    pub(crate) parked: Vec<Parked>,
}

/// The proofs and the lookups.
#[derive(Debug, Default)]
pub(crate) struct Healing {
    proofs: BTreeMap<String, UrlProof>,
    lookups: BTreeMap<String, Lookup>,
    /// Peer → monotonic ms before which no new lookup of it starts.
    cooldown_until_ms: BTreeMap<String, u64>,
}

impl Healing {
    /// The proof behind `agent_id`'s URL (under our own id: what we last announced).
    pub(crate) fn proof(&self, agent_id: &str) -> Option<&UrlProof> {
        self.proofs.get(agent_id)
    }

    /// Records a proof; returns its row.
    pub(crate) fn put_proof(&mut self, agent_id: &str, proof: UrlProof) -> Change {
        let change = Change::put(Table::UrlProofs, agent_id, &proof);
        self.proofs.insert(agent_id.to_owned(), proof);
        change
    }

    /// Forgets a peer we are no longer connected to; returns the row to delete, if any.
    pub(crate) fn forget(&mut self, agent_id: &str) -> Option<Change> {
        self.cooldown_until_ms.remove(agent_id);
        self.proofs.remove(agent_id).map(|_| Change::delete(Table::UrlProofs, agent_id))
    }

    /// Takes one row read back from storage.
    pub(crate) fn restore_row(&mut self, key: String, value: &[u8]) -> Result<(), RecordError> {
        self.proofs.insert(key, crate::store::decode(value)?);
        Ok(())
    }

    /// Holds a failed delivery to `peer` for its running lookup; gives it back if none runs or the
    /// lookup holds [`LOOKUP_PARKED_MAX`] already.
    pub(crate) fn park(&mut self, peer: &str, parked: Parked) -> Result<(), Parked> {
        match self.lookups.get_mut(peer) {
            Some(l) if l.parked.len() < LOOKUP_PARKED_MAX => {
                l.parked.push(parked);
                Ok(())
            }
            _ => Err(parked),
        }
    }

    /// Starts a lookup of `peer` holding `parked`, unless one ran less than [`LOOKUP_COOLDOWN_MS`]
    /// ago or [`LOOKUPS_IN_FLIGHT_MAX`] run; gives the delivery back then.
    pub(crate) fn start(&mut self, now_ms: u64, peer: &str, parked: Parked) -> Result<(), Parked> {
        self.cooldown_until_ms.retain(|_, until| *until > now_ms);
        if self.lookups.len() >= LOOKUPS_IN_FLIGHT_MAX || self.cooldown_until_ms.contains_key(peer) {
            return Err(parked);
        }
        self.lookups.insert(peer.to_owned(), Lookup { parked: vec![parked], ..Lookup::default() });
        Ok(())
    }

    /// The running lookup of `peer`.
    pub(crate) fn lookup_mut(&mut self, peer: &str) -> Option<&mut Lookup> {
        self.lookups.get_mut(peer)
    }

    /// Ends the lookup of `peer`; the next may start [`LOOKUP_COOLDOWN_MS`] after `now_ms`.
    pub(crate) fn finish(&mut self, now_ms: u64, peer: &str) -> Option<Lookup> {
        self.cooldown_until_ms.insert(peer.to_owned(), now_ms + LOOKUP_COOLDOWN_MS);
        self.lookups.remove(peer)
    }
}

/// What the answers of a lookup allow, given the timestamp of the proof we hold (`held_us`) and the
/// URL that failed (`failed_url`): the newest verified update if it is newer than ours; otherwise,
/// only when no answerer served a verified update, the unsigned URL with the highest weight if
/// enough answerers agree on it. An unsigned answer naming the URL that failed is no candidate
/// (0.5.3 excludes URLs already tried): it says only that the answerers have heard of no move, and
/// adopting it would mark a proven URL unproven.
pub(crate) fn decide(candidates: &[Candidate], held_us: i64, failed_url: &str) -> Decision {
    let newest = candidates.iter().filter_map(|c| c.signed.as_ref()).max_by_key(|p| p.stamp_us);
    if let Some(proof) = newest {
        // A relayer can replay only what the peer signed, so an older URL is refused, and a verified
        // update that is not newer says that what we hold is the peer's latest word.
        return if proof.stamp_us > held_us { Decision::Signed(proof.clone()) } else { Decision::Nothing };
    }
    // Per URL, in first-seen order (ties go to the first): weight and distinct answerers.
    let mut tally: Vec<(&str, f64, Vec<&str>)> = Vec::new();
    for c in candidates.iter().filter(|c| c.url != failed_url) {
        match tally.iter_mut().find(|(url, _, _)| *url == c.url) {
            Some((_, weight, who)) => {
                if !who.contains(&c.answerer.as_str()) {
                    *weight += c.weight;
                    who.push(&c.answerer);
                }
            }
            None => tally.push((&c.url, c.weight, vec![&c.answerer])),
        }
    }
    let best = tally.iter().fold(None::<&(&str, f64, Vec<&str>)>, |best, t| match best {
        Some(b) if b.1 >= t.1 => Some(b),
        _ => Some(t),
    });
    match best {
        Some((url, weight, who)) if who.len() >= LOOKUP_UNSIGNED_AGREE_MIN || *weight >= LOOKUP_UNSIGNED_SCORE_MIN => {
            Decision::Unsigned((*url).to_owned())
        }
        _ => Decision::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ProofForm;

    fn proof(url: &str, stamp_us: i64) -> UrlProof {
        UrlProof {
            url: url.into(),
            timestamp: String::new(),
            stamp_us,
            form: ProofForm::Legacy { signature: "s".into() },
        }
    }

    fn answer(who: &str, url: &str, weight: f64, signed: Option<UrlProof>) -> Candidate {
        Candidate { answerer: who.into(), url: url.into(), weight, signed, via: RecoveredVia::Peer }
    }

    #[test]
    fn the_newest_signed_update_wins_over_any_majority() {
        let c = vec![
            answer("q2", "http://old:1", 1.0, None),
            answer("q3", "http://old:1", 1.0, None),
            answer("q1", "http://new:2", 0.1, Some(proof("http://new:2", 20))),
            answer("q4", "http://mid:3", 0.9, Some(proof("http://mid:3", 15))),
        ];
        assert_eq!(decide(&c, 10, "http://old:1"), Decision::Signed(proof("http://new:2", 20)));
    }

    #[test]
    fn a_signed_update_no_newer_than_ours_adopts_nothing() {
        let c = vec![answer("q1", "http://older:2", 1.0, Some(proof("http://older:2", 10)))];
        assert_eq!(decide(&c, 10, "http://x:1"), Decision::Nothing);
        let c = vec![
            answer("q1", "http://older:2", 1.0, Some(proof("http://older:2", 9))),
            answer("q2", "http://x:1", 5.0, None),
        ];
        assert_eq!(
            decide(&c, 10, "http://y:1"),
            Decision::Nothing,
            "a verified older word is not overruled by hearsay"
        );
    }

    #[test]
    fn unsigned_answers_need_two_answerers_or_enough_weight() {
        let failed = "http://old:1";
        assert_eq!(decide(&[answer("a", "http://u:1", 0.5, None)], 0, failed), Decision::Nothing);
        assert_eq!(
            decide(&[answer("a", "http://u:1", 0.5, None), answer("a", "http://u:1", 0.5, None)], 0, failed),
            Decision::Nothing,
            "one answerer twice is one"
        );
        let two = [answer("a", "http://u:1", 0.1, None), answer("b", "http://u:1", 0.1, None)];
        assert_eq!(decide(&two, 0, failed), Decision::Unsigned("http://u:1".into()));
        assert_eq!(decide(&two, 0, "http://u:1"), Decision::Nothing, "the URL that failed is no candidate");
        let one = [answer("a", "http://u:1", 1.0, None)];
        assert_eq!(decide(&one, 0, failed), Decision::Unsigned("http://u:1".into()));
        let split = [
            answer("a", "http://u:1", 0.6, None),
            answer("b", "http://v:1", 0.9, None),
            answer("c", "http://v:1", 0.2, None),
        ];
        assert_eq!(decide(&split, 0, failed), Decision::Unsigned("http://v:1".into()));
        assert_eq!(decide(&split, 0, "http://v:1"), Decision::Nothing, "u alone weighs too little");
    }

    #[test]
    fn cooldown_and_capacity_bound_the_lookups() {
        let mut h = Healing::default();
        let parked = || Parked { held: Held::Delivery { batch: 1 }, body: vec![], result: Err("down".into()) };
        for i in 0..LOOKUPS_IN_FLIGHT_MAX {
            assert!(h.start(0, &format!("p{i}"), parked()).is_ok());
        }
        assert!(h.start(0, "one-more", parked()).is_err(), "at most LOOKUPS_IN_FLIGHT_MAX at once");
        for _ in 1..LOOKUP_PARKED_MAX {
            assert!(h.park("p0", parked()).is_ok());
        }
        assert!(h.park("p0", parked()).is_err(), "at most LOOKUP_PARKED_MAX held");
        assert!(h.park("nobody", parked()).is_err());
        assert_eq!(h.finish(1_000, "p0").map(|l| l.parked.len()), Some(LOOKUP_PARKED_MAX));
        assert!(h.start(1_000 + LOOKUP_COOLDOWN_MS - 1, "p0", parked()).is_err(), "cooling down");
        assert!(h.start(1_000 + LOOKUP_COOLDOWN_MS, "p0", parked()).is_ok());
    }
}
