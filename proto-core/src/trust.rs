//! Trust: local impressions, the events that move them, peer trust queries and the acceptance policy
//! they feed, and the gates that read them (the rate limits live in `rate.rs`).
//!
//! Impressions are private. 0.5.3 serves them to anyone who can reach the port; we answer only a
//! signed query from a connected peer we trust at least neutrally (SPEC.md §Trust).
//!
//! Every automatic change uses 0.5.3's diminishing update — a gain of `d·(1−s)`, a loss of `d·(1+s)` —
//! so a score approaches ±1 but never leaves -1..1.

use crate::sign::{self, V2_TRUST_ANSWER, V2_TRUST_QUERY};
use crate::store::PeerTrust;
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
}

/// The diminishing update: gains shrink near +1, losses shrink near -1. Always within -1..1.
pub fn adjust(score: f64, delta: f64) -> f64 {
    if !delta.is_finite() || !score.is_finite() {
        return score.clamp(-1.0, 1.0);
    }
    let s = if delta >= 0.0 { score + delta * (1.0 - score) } else { score + delta * (1.0 + score) };
    s.clamp(-1.0, 1.0)
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

#[cfg(test)]
mod tests {
    use super::adjust;

    #[test]
    fn adjust_diminishes_and_stays_in_range() {
        assert!((adjust(0.0, 0.1) - 0.1).abs() < 1e-12);
        assert!((adjust(0.5, 0.1) - 0.55).abs() < 1e-12);
        assert!((adjust(-0.5, -0.1) + 0.55).abs() < 1e-12);
        assert_eq!(adjust(1.0, 1.0), 1.0);
        assert_eq!(adjust(-1.0, -1.0), -1.0);
        assert_eq!(adjust(0.9, 5.0), 1.0);
    }
}
