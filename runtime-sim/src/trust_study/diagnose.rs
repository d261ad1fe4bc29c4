//! Why a newcomer's request is not accepted, read from the pending record its target holds now.

use proto_core::limits::{
    TRUST_ACCEPT_MIN_DEFAULT, TRUST_ANSWER_MIN, TRUST_CONFIDENCE_MIN, TRUST_DECISION_HOLD_S, TRUST_QUERY_FANOUT_MAX,
};
use proto_core::store::{decode, PendingIn};
use proto_core::{Table, TrustPolicy};

use super::report::{Ask, Class};
use super::watch::trust;
use super::HEARSAY_MAX;
use crate::sim::Sim;

/// Why request `a` is not accepted (`voucher`: the newcomer's voucher), as one of a few fixed causes.
pub(crate) fn why_not(sim: &Sim, a: &Ask, voucher: Option<u32>, policy: TrustPolicy) -> &'static str {
    let newcomer = sim.agent(a.newcomer);
    let pending = sim
        .persisted(a.target, Table::PendingIn)
        .filter_map(|(_, bytes)| decode::<PendingIn>(bytes).ok())
        .find(|p| p.agent_id.as_str() == newcomer);
    let Some(p) = pending else { return "not pending at the target (never reached it, or expired)" };
    let Some(t) = p.peer_trust.filter(|t| t.complete()) else { return "peer opinions not all in" };
    if let (Class::Vouched, Some(v)) = (a.class, voucher) {
        if !t.opinions.iter().any(|o| o.0 == sim.agent(v)) {
            return voucher_silent(sim, a, v);
        }
    }
    let weighted = policy.weighted();
    if weighted && t.weight == 0.0 || !weighted && t.opinions.is_empty() {
        return "no opinion from a peer it trusts";
    }
    if weighted && t.weight < TRUST_CONFIDENCE_MIN {
        return "total weight below the confidence minimum";
    }
    let score = t.score.unwrap_or(0.0);
    let min = TRUST_ACCEPT_MIN_DEFAULT;
    // The hold and the housekeeping after it (a minute).
    let decided_by_us = (TRUST_DECISION_HOLD_S + 60) * 1_000_000;
    let held = policy.bounded() && a.pending_us.is_none_or(|at| sim.now_us() < at + decided_by_us);
    if score >= min && held {
        return "held: the policy decides after the decision hold";
    }
    if score >= min {
        return "score high enough, yet not accepted (target full?)";
    }
    // Would the first-hand opinions alone have carried it? Hearsay-sized scores (|s| < 0.2) are
    // what a node's impression becomes from peers' reports alone (TRUST_REPORT_WEIGHT = 0.1).
    let firm: Vec<&(String, f64, f64)> = t.opinions.iter().filter(|o| o.1.abs() >= HEARSAY_MAX && o.2 > 0.0).collect();
    let w: f64 = firm.iter().map(|o| o.2).sum();
    if w > 0.0 && firm.iter().map(|o| o.1 * o.2).sum::<f64>() / w >= min && (!weighted || w >= TRUST_CONFIDENCE_MIN) {
        "averaged below 0.5 by hearsay-sized opinions"
    } else if firm.is_empty() {
        "only hearsay-sized opinions"
    } else {
        "first-hand opinions average below 0.5"
    }
}

/// Why the target holds no opinion from voucher `v`.
fn voucher_silent(sim: &Sim, a: &Ask, v: u32) -> &'static str {
    // Where the voucher ranks among the target's connections (most trusted first, ties by id).
    let v_agent = sim.agent(v);
    let tv = trust(sim, a.target, v);
    let rank = sim
        .peers(a.target)
        .iter()
        .filter(|&&q| q != a.newcomer && q != v)
        .filter(|&&q| {
            let tq = trust(sim, a.target, q);
            tq > tv || (tq == tv && sim.agent(q) < v_agent)
        })
        .count();
    if rank >= TRUST_QUERY_FANOUT_MAX {
        "voucher not among the 8 most trusted peers asked"
    } else if trust(sim, v, a.target) < TRUST_ANSWER_MIN {
        "voucher refused to answer: its impression of the target fell below 0"
    } else {
        "voucher asked but gave no opinion (lost, or a half-open connection)"
    }
}
