//! Trust: local impressions, the events that move them, peer trust queries and the acceptance policy
//! they feed, and the gates that read them (the rate limits live in `rate.rs`).
//!
//! Impressions are private. 0.5.3 serves them to anyone who can reach the port; we answer only a
//! signed query from a connected peer we trust at least neutrally (SPEC.md §Trust).
//!
//! Every automatic change uses 0.5.3's diminishing update — a gain of `d·(1−s)`, a loss of `d·(1+s)` —
//! so a score approaches ±1 but never leaves -1..1; a gain never lifts a score past
//! [`TRUST_AUTO_CEILING`] (see [`adjust_automatic`]).
//!
//! Defences against Sybils (SPEC.md §Trust, argued with the study in SIMULATIONS.md): automatic trust
//! stays below a voucher's weight; each peer has a vouch budget ([`Vouches`]): a peer that speaks
//! strongly of more than [`TRUST_VOUCHES_PER_PEER_MAX`] requesters in [`TRUST_VOUCH_WINDOW_S`] counts
//! for nothing on any of them; and the policy holds every decision for [`crate::limits::TRUST_DECISION_HOLD_S`],
//! so that a crowd shows before its first vouch carries.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::limits::{
    IMPRESSIONS_MAX, TRUST_AUTO_CEILING, TRUST_NEGATIVE_MARGIN, TRUST_VOUCHES_PER_PEER_MAX, TRUST_VOUCH_RECORDS_MAX,
    TRUST_VOUCH_SCORE_MIN, TRUST_VOUCH_WINDOW_S,
};
use crate::sign::{self, V2_TRUST_ANSWER, V2_TRUST_QUERY};
use crate::store::{self, Change, Impression, PeerTrust, RecordError, Table};
use crate::wire::trust::{TrustAnswer, TrustQuery};

/// How answers to a trust query are combined.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum TrustPolicy {
    /// Each opinion counts by our own trust in the peer who gave it; peers we do not trust (≤ 0)
    /// count for nothing. The default, and the point of asking *our* peers.
    #[default]
    Weighted,
    /// Every opinion counts the same. Only for the simulator's comparison: it lets colluding
    /// identities vouch each other in.
    PlainAverage,
    /// The weighted policy without the Sybil defences (no automatic ceiling, no vouch budget, no
    /// decision hold): the rules before them. Only for the simulator's old-and-new comparison.
    WeightedUnbounded,
}

impl TrustPolicy {
    /// Whether opinions are weighted by our trust in their givers.
    pub fn weighted(self) -> bool {
        matches!(self, TrustPolicy::Weighted | TrustPolicy::WeightedUnbounded)
    }

    /// Whether the Sybil defences apply (the automatic ceiling, the vouch budget, the decision hold):
    /// under the default policy only; the simulator's comparisons keep the rules they had.
    pub fn bounded(self) -> bool {
        self == TrustPolicy::Weighted
    }
}

/// The diminishing update: gains shrink near +1, losses shrink near -1. Always within -1..1.
pub fn adjust(score: f64, delta: f64) -> f64 {
    if !delta.is_finite() || !score.is_finite() {
        return score.clamp(-1.0, 1.0);
    }
    let s = if delta >= 0.0 { score + delta * (1.0 - score) } else { score + delta * (1.0 + score) };
    s.clamp(-1.0, 1.0)
}

/// An automatic change (a delivery, a reply): the diminishing update, except that a gain never lifts
/// a score past [`TRUST_AUTO_CEILING`] (a score the agent set higher keeps its value). Losses are
/// not bounded: misbehaviour should cost.
pub fn adjust_automatic(score: f64, delta: f64) -> f64 {
    let moved = adjust(score, delta);
    if delta > 0.0 {
        moved.min(score.max(TRUST_AUTO_CEILING))
    } else {
        moved
    }
}

pub(crate) fn score_text(score: Option<f64>) -> String {
    score.map(|s| s.to_string()).unwrap_or_default()
}

pub(crate) fn query_bytes(q: &TrustQuery) -> Vec<u8> {
    sign::v2_bytes(V2_TRUST_QUERY, &[&q.from_agent_id, &q.to_agent_id, &q.subject_agent_id, &q.query_id, &q.timestamp])
}

pub(crate) fn answer_bytes(a: &TrustAnswer) -> Vec<u8> {
    let has = if a.has_impression { "1" } else { "0" };
    sign::v2_bytes(
        V2_TRUST_ANSWER,
        &[&a.from_agent_id, &a.to_agent_id, &a.subject_agent_id, &a.query_id, has, &score_text(a.score), &a.timestamp],
    )
}

/// The weighted mean of a request's opinions and their total weight (no score without weight).
pub(crate) fn combine(t: &mut PeerTrust) {
    let weight: f64 = t.opinions.iter().map(|o| o.2).sum::<f64>() + 0.0;
    t.weight = weight;
    t.score = (weight > 0.0).then(|| t.opinions.iter().map(|o| o.1 * o.2).sum::<f64>() / weight);
}

/// What we tell a peer asking about `subject`, whose first-hand score is `score`: the score, except
/// that a good word for a subject that is itself over its vouch budget with us (it vouched for a
/// crowd) is held down to [`TRUST_AUTO_CEILING`], what our dealings alone could have given it. A trusted
/// foothold that vouches for its cluster at our node then stops being vouched *in* by us at our friends:
/// the one path the budget alone leaves open (SPEC.md §8.4).
pub fn told_score(score: f64, subject_over_budget: bool) -> f64 {
    if subject_over_budget && score > TRUST_AUTO_CEILING {
        TRUST_AUTO_CEILING
    } else {
        score
    }
}

/// Whether an opinion is strong enough to be charged to its giver's vouch budget.
pub fn is_vouch(score: f64) -> bool {
    score.abs() >= TRUST_VOUCH_SCORE_MIN
}

/// The vouch budget: which requesters each peer has vouched for (or warned against) lately, as the
/// answers to our trust queries told us. At most [`TRUST_VOUCH_RECORDS_MAX`] records, oldest dropped
/// first; kept in memory only (a restart forgets, and the decision hold starts again with it).
#[derive(Debug, Default)]
pub(crate) struct Vouches {
    /// (peer, requester, when, µs), oldest first.
    records: VecDeque<(String, String, i64)>,
}

impl Vouches {
    /// Notes that `peer` spoke strongly of `subject` at `now_us` (weak opinions are not vouches).
    pub(crate) fn note(&mut self, peer: &str, subject: &str, score: f64, now_us: i64) {
        if !is_vouch(score) {
            return;
        }
        self.records.retain(|r| !(r.0 == peer && r.1 == subject));
        if self.records.len() >= TRUST_VOUCH_RECORDS_MAX {
            self.records.pop_front();
        }
        self.records.push_back((peer.to_owned(), subject.to_owned(), now_us));
        debug_assert!(self.records.len() <= TRUST_VOUCH_RECORDS_MAX);
    }

    /// How many distinct requesters `peer` spoke strongly of within the window before `now_us`.
    pub(crate) fn spoken_for(&self, peer: &str, now_us: i64) -> usize {
        let since = now_us - TRUST_VOUCH_WINDOW_S as i64 * 1_000_000;
        self.records.iter().filter(|r| r.0 == peer && r.2 >= since).map(|r| r.1.as_str()).collect::<BTreeSet<_>>().len()
    }

    /// Whether `peer`'s strong opinions still count: it has not vouched for a crowd.
    pub(crate) fn within_budget(&self, peer: &str, now_us: i64) -> bool {
        self.spoken_for(peer, now_us) <= TRUST_VOUCHES_PER_PEER_MAX
    }
}

/// Our impressions of other agents: at most [`IMPRESSIONS_MAX`], one per agent, each score within
/// -1..1 and marked negative from when it first fell below the margin.
#[derive(Debug, Default)]
pub(crate) struct Impressions {
    by_agent: BTreeMap<String, Impression>,
}

impl Impressions {
    /// Our score of an agent; 0.0 (neutral) when we have none.
    pub(crate) fn score(&self, agent_id: &str) -> f64 {
        self.by_agent.get(agent_id).map_or(0.0, |i| i.score)
    }

    /// Our impression of an agent, if we formed one.
    pub(crate) fn get(&self, agent_id: &str) -> Option<&Impression> {
        self.by_agent.get(agent_id)
    }

    /// Every impression with its agent, in agent order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &Impression)> {
        self.by_agent.iter()
    }

    /// Whether an impression of `agent_id` can be set without passing the cap.
    pub(crate) fn has_room_for(&self, agent_id: &str) -> bool {
        self.by_agent.contains_key(agent_id) || self.by_agent.len() < IMPRESSIONS_MAX
    }

    /// Sets a score at `now_us` (`now_iso` the same instant); returns the row to persist.
    /// `first_hand`: the change comes from our own dealings with the agent (see
    /// [`Impression::first_hand`]); a hearsay change leaves the flag as it was.
    pub(crate) fn set(
        &mut self,
        agent_id: &str,
        score: f64,
        note: Option<String>,
        first_hand: bool,
        now_us: i64,
        now_iso: String,
    ) -> Change {
        debug_assert!((-1.0..=1.0).contains(&score));
        let imp = self.by_agent.entry(agent_id.to_owned()).or_insert_with(|| Impression {
            score: 0.0,
            note: String::new(),
            updated_at: now_iso.clone(),
            negative_since_us: None,
            first_hand: false,
        });
        imp.score = score;
        imp.first_hand |= first_hand;
        imp.updated_at = now_iso;
        if let Some(n) = note {
            imp.note = n;
        }
        // "Negative" means below a small margin, so that rounding-sized automatic nudges (one failed
        // delivery) never start the auto-disconnect clock.
        imp.negative_since_us = match (score < -TRUST_NEGATIVE_MARGIN, imp.negative_since_us) {
            (true, Some(since)) => Some(since),
            (true, None) => Some(now_us),
            (false, _) => None,
        };
        Change::put(Table::Impressions, agent_id, &*imp)
    }

    /// A new connection: an old grudge does not end it at once, its clock restarts at `now_us`.
    /// Returns the row to persist when there was a grudge.
    pub(crate) fn restart_grudge(&mut self, agent_id: &str, now_us: i64) -> Option<Change> {
        let imp = self.by_agent.get_mut(agent_id).filter(|i| i.negative_since_us.is_some())?;
        imp.negative_since_us = Some(now_us);
        Some(Change::put(Table::Impressions, agent_id, &*imp))
    }

    /// Takes one [`Table::Impressions`] row read back from storage.
    pub(crate) fn restore_row(&mut self, agent_id: String, value: &[u8]) -> Result<(), RecordError> {
        let imp: Impression = store::decode(value)?;
        self.by_agent.insert(agent_id, imp);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjust_diminishes_and_stays_in_range() {
        assert!((adjust(0.0, 0.1) - 0.1).abs() < 1e-12);
        assert!((adjust(0.5, 0.1) - 0.55).abs() < 1e-12);
        assert!((adjust(-0.5, -0.1) + 0.55).abs() < 1e-12);
        assert_eq!(adjust(1.0, 1.0), 1.0);
        assert_eq!(adjust(-1.0, -1.0), -1.0);
        assert_eq!(adjust(0.9, 5.0), 1.0);
    }

    #[test]
    fn automatic_gains_stop_at_the_ceiling_and_losses_do_not() {
        let mut s = 0.0;
        for _ in 0..1_000 {
            s = adjust_automatic(s, 0.02);
        }
        assert_eq!(s, TRUST_AUTO_CEILING, "farming replies never makes a voucher");
        const { assert!(TRUST_AUTO_CEILING < TRUST_VOUCH_SCORE_MIN) };
        // A score the agent set above the ceiling is neither raised nor pulled down by a gain.
        assert_eq!(adjust_automatic(0.6, 0.02), 0.6);
        assert!(adjust_automatic(0.6, -0.005) < 0.6);
        assert!(adjust_automatic(TRUST_AUTO_CEILING, -0.005) < TRUST_AUTO_CEILING);
    }

    #[test]
    fn a_peer_that_vouches_for_a_crowd_loses_its_budget_within_the_window() {
        let day = TRUST_VOUCH_WINDOW_S as i64 * 1_000_000;
        let mut v = Vouches::default();
        v.note("p", "a", 0.1, 0);
        assert_eq!(v.spoken_for("p", 0), 0, "a weak opinion is not a vouch");
        v.note("p", "a", 0.9, 0);
        v.note("p", "a", 0.8, 10);
        assert!(v.within_budget("p", 10), "the same requester twice is one vouch");
        v.note("p", "b", 0.9, 15);
        assert!(v.within_budget("p", 15), "two introductions a day are within budget");
        v.note("p", "c", -0.9, 20);
        assert_eq!(v.spoken_for("p", 20), 3);
        assert!(!v.within_budget("p", 20), "a warning is charged like a vouch");
        assert!(v.within_budget("q", 20));
        // Outside the window the old vouch no longer counts.
        assert!(v.within_budget("p", day + 15));
        for k in 0..TRUST_VOUCH_RECORDS_MAX + 10 {
            v.note("x", &k.to_string(), 1.0, 30);
        }
        assert_eq!(v.records.len(), TRUST_VOUCH_RECORDS_MAX);
    }

    #[test]
    fn a_good_word_for_a_crowd_voucher_is_held_to_the_ceiling() {
        let mut v = Vouches::default();
        for (k, who) in ["a", "b"].iter().enumerate() {
            v.note("s", who, 1.0, k as i64);
        }
        // At the budget's edge the subject still gets our full word.
        assert_eq!(v.spoken_for("s", 5), TRUST_VOUCHES_PER_PEER_MAX);
        assert_eq!(told_score(0.7, !v.within_budget("s", 5)), 0.7);
        // One requester more: our good word for it is held to the automatic ceiling.
        v.note("s", "c", 1.0, 6);
        assert_eq!(told_score(0.7, !v.within_budget("s", 6)), TRUST_AUTO_CEILING);
        // A warning, or a score already below the ceiling, is told as it is.
        assert_eq!(told_score(-0.7, true), -0.7);
        assert_eq!(told_score(0.1, true), 0.1);
    }

    #[test]
    fn a_negative_mark_starts_once_below_the_margin_and_ends_above_it() {
        let mut t = Impressions::default();
        let _ = t.set("a", -TRUST_NEGATIVE_MARGIN, None, true, 10, "t".into());
        assert_eq!(t.get("a").unwrap().negative_since_us, None);
        let _ = t.set("a", -0.5, None, true, 20, "t".into());
        let _ = t.set("a", -0.6, None, false, 30, "t".into());
        assert_eq!(t.get("a").unwrap().negative_since_us, Some(20));
        assert!(t.get("a").unwrap().first_hand, "hearsay leaves the flag as it was");
        assert!(t.restart_grudge("a", 40).is_some());
        assert_eq!(t.get("a").unwrap().negative_since_us, Some(40));
        let _ = t.set("a", 0.0, None, true, 50, "t".into());
        assert_eq!(t.get("a").unwrap().negative_since_us, None);
        assert!(t.restart_grudge("a", 60).is_none());
    }
}
