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

/// What stood behind one accepted request, read from the network at the moment of the decision: the
/// target's connections holding a strong opinion of the requester (the opinions its policy could have
/// heard), each with what the target and the voucher know of each other and of the requester.
#[derive(Clone, Debug)]
pub struct Carried {
    /// The requester was a Sybil (else a newcomer, at one of its vouched targets).
    pub sybil: bool,
    /// The honest node that accepted.
    pub target: u32,
    /// The target had a Sybil connection of its own.
    pub target_has_sybil: bool,
    /// Time from the request reaching the target to the decision, s.
    pub decided_after_s: f64,
    /// The target's connections with an opinion of the requester of at least the vouch size.
    pub vouchers: Vec<Voucher>,
}

/// One connection of the target with a strong opinion of the requester.
#[derive(Clone, Debug)]
pub struct Voucher {
    /// What the voucher is.
    pub kind: VoucherKind,
    /// Its score of the requester.
    pub score: f64,
    /// The target's trust in it (the opinion's weight, before the vouch budget).
    pub weight: f64,
    /// How long it has been connected to the requester, s (None: not connected).
    pub knows_requester_s: Option<f64>,
    /// How long the target has been connected to it, s.
    pub known_by_target_s: f64,
}

/// What a voucher is, in the study's layout.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum VoucherKind {
    /// An honest node connected to the requester: a newcomer's voucher, or a foothold's owner.
    HonestConnected,
    /// An honest node not connected to the requester (a compromised node).
    HonestStranger,
    /// A Sybil.
    Sybil,
}

impl VoucherKind {
    /// Its name in the summary.
    pub fn name(self) -> &'static str {
        match self {
            VoucherKind::HonestConnected => "an honest node connected to the requester",
            VoucherKind::HonestStranger => "an honest node not connected to it",
            VoucherKind::Sybil => "a Sybil",
        }
    }
}

/// How long node `who` has been connected to node `to`, s, by its own connection record.
fn connected_for_s(sim: &Sim, who: u32, to: u32) -> Option<f64> {
    let agent = sim.agent(to);
    let (_, bytes) = sim.persisted(who, Table::Connections).find(|(k, _)| *k == agent)?;
    let c: proto_core::store::Connection = decode(bytes).ok()?;
    let since = proto_core::time::parse_iso(&c.connected_at)?;
    Some((sim.node_now(who).wall_us - since) as f64 / 1e6)
}

/// What stood behind `target`'s acceptance of `requester` (`sybils`: the Sybils' node range).
pub(crate) fn carried(
    sim: &Sim,
    target: u32,
    requester: u32,
    sybils: std::ops::Range<u32>,
    decided_after_s: f64,
) -> Carried {
    let about = sim.agent(requester);
    let mut vouchers = Vec::new();
    for &q in sim.peers(target).iter().filter(|&&q| q != requester) {
        let Some(score) = sim.core(q).map(|n| n.inspect().trust_of(about)) else { continue };
        if !proto_core::trust::is_vouch(score) {
            continue;
        }
        let knows_requester_s = connected_for_s(sim, q, requester);
        let kind = match (sybils.contains(&q), knows_requester_s.is_some()) {
            (true, _) => VoucherKind::Sybil,
            (false, true) => VoucherKind::HonestConnected,
            (false, false) => VoucherKind::HonestStranger,
        };
        vouchers.push(Voucher {
            kind,
            score,
            weight: trust(sim, target, q).max(0.0),
            knows_requester_s,
            known_by_target_s: connected_for_s(sim, target, q).unwrap_or(0.0),
        });
    }
    Carried {
        sybil: sybils.contains(&requester),
        target,
        // Before this acceptance: the requester may be the Sybil just accepted.
        target_has_sybil: sim.peers(target).iter().any(|p| *p != requester && sybils.contains(p)),
        decided_after_s,
        vouchers,
    }
}

/// Strong positive opinions that weigh (the ones that can carry a decision on their own).
fn carriers(c: &Carried) -> impl Iterator<Item = &Voucher> {
    c.vouchers.iter().filter(|v| v.score >= TRUST_CONFIDENCE_MIN && v.weight >= TRUST_CONFIDENCE_MIN)
}

/// The weighted mean of the strong opinions (the policy's score, were they all it heard).
fn mean_score(c: &Carried) -> f64 {
    let w: f64 = c.vouchers.iter().map(|v| v.weight).sum();
    if w > 0.0 {
        c.vouchers.iter().map(|v| v.score * v.weight).sum::<f64>() / w
    } else {
        0.0
    }
}

/// One hour, s.
const HOUR_S: f64 = 3600.0;

/// A candidate rule: its name, and whether an acceptance would still pass under it.
type Rule = (&'static str, fn(&Carried) -> bool);

/// Candidate rules the diagnosis weighs, each as "would this acceptance still pass".
pub(crate) const CANDIDATE_RULES: [Rule; 7] = [
    ("two independent vouchers weighing >= 0.2", |c| carriers(c).count() >= 2),
    ("the voucher is connected to the requester", |c| carriers(c).any(|v| v.knows_requester_s.is_some())),
    ("the voucher has known the requester for at most 1 h", |c| {
        carriers(c).any(|v| v.knows_requester_s.is_some_and(|s| s <= HOUR_S))
    }),
    ("the target has known the voucher for at least 1 h", |c| carriers(c).any(|v| v.known_by_target_s >= HOUR_S)),
    ("acceptance threshold 0.6 instead of 0.5", |c| mean_score(c) >= 0.6),
    ("damping 0.2 toward first-hand trust (a stranger's: none)", |c| 0.8 * mean_score(c) >= TRUST_ACCEPT_MIN_DEFAULT),
    ("the voucher weighs at least 0.5", |c| carriers(c).any(|v| v.weight >= 0.5)),
];

fn median(mut xs: Vec<f64>) -> String {
    xs.sort_by(f64::total_cmp);
    super::quantile(&xs, 0.5).map_or("-".to_owned(), |m| format!("{m:.2}"))
}

/// The summary lines of the acceptances' diagnosis: what carried Sybils in, what carried vouched
/// newcomers in, and what each candidate rule would have let through.
pub(crate) fn carried_text(all: &[Carried]) -> String {
    let mut s = String::new();
    for (sybil, what) in [(true, "Sybil"), (false, "vouched newcomer")] {
        let cs: Vec<&Carried> = all.iter().filter(|c| c.sybil == sybil).collect();
        if cs.is_empty() {
            continue;
        }
        let solo = cs.iter().filter(|c| carriers(c).count() <= 1).count();
        s += &format!(
            "  carried          {} {what} acceptances ({} at a node with a Sybil connection): {solo} on one voucher's word; decided after median {} s\n",
            cs.len(),
            cs.iter().filter(|c| c.target_has_sybil).count(),
            median(cs.iter().map(|c| c.decided_after_s).collect())
        );
        let vs: Vec<&Voucher> = cs.iter().flat_map(|c| carriers(c)).collect();
        for kind in [VoucherKind::HonestConnected, VoucherKind::HonestStranger, VoucherKind::Sybil] {
            let k: Vec<&&Voucher> = vs.iter().filter(|v| v.kind == kind).collect();
            if k.is_empty() {
                continue;
            }
            s += &format!(
                "    by {}: {}; its score median {}, its weight median {}, it had known the requester median {} h, the target had known it median {} h\n",
                kind.name(),
                k.len(),
                median(k.iter().map(|v| v.score).collect()),
                median(k.iter().map(|v| v.weight).collect()),
                median(k.iter().filter_map(|v| v.knows_requester_s.map(|x| x / HOUR_S)).collect()),
                median(k.iter().map(|v| v.known_by_target_s / HOUR_S).collect())
            );
        }
    }
    for (name, passes) in CANDIDATE_RULES {
        let sybil: Vec<&Carried> = all.iter().filter(|c| c.sybil && passes(c)).collect();
        let nodes: std::collections::BTreeSet<u32> = sybil.iter().map(|c| c.target).collect();
        let newcomer = all.iter().filter(|c| !c.sybil && passes(c)).count();
        s += &format!(
            "  rule would pass  {name}: {} of {} Sybil acceptances (at {} nodes), {} of {} vouched newcomer acceptances\n",
            sybil.len(),
            all.iter().filter(|c| c.sybil).count(),
            nodes.len(),
            newcomer,
            all.iter().filter(|c| !c.sybil).count()
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(kind: VoucherKind, score: f64, weight: f64, knows_requester_s: Option<f64>) -> Voucher {
        Voucher { kind, score, weight, knows_requester_s, known_by_target_s: 2.0 * HOUR_S }
    }

    fn accepted(sybil: bool, vouchers: Vec<Voucher>) -> Carried {
        Carried { sybil, target: 7, target_has_sybil: false, decided_after_s: 630.0, vouchers }
    }

    fn passes(rule: &str, c: &Carried) -> bool {
        let (_, f) = CANDIDATE_RULES.iter().find(|r| r.0.starts_with(rule)).expect("a rule");
        f(c)
    }

    #[test]
    fn each_candidate_rule_reads_the_opinions_it_names() {
        // A newcomer introduced ten minutes ago; a foothold its owner has known for a day.
        let newcomer = accepted(false, vec![one(VoucherKind::HonestConnected, 0.75, 0.6, Some(600.0))]);
        let foothold = accepted(true, vec![one(VoucherKind::HonestConnected, 0.55, 0.4, Some(24.0 * HOUR_S))]);
        assert!(!passes("two independent", &newcomer), "one voucher is not two");
        assert!(passes("the voucher is connected", &foothold));
        assert!(passes("the voucher has known the requester for at most", &newcomer));
        assert!(!passes("the voucher has known the requester for at most", &foothold));
        assert!(passes("acceptance threshold 0.6", &newcomer));
        assert!(!passes("acceptance threshold 0.6", &foothold));
        assert!(!passes("the voucher weighs at least 0.5", &foothold));
        // A Sybil's word for another Sybil it is not connected to; and a slanderer's warning, which
        // carries nothing but pulls the mean down.
        let cluster = accepted(true, vec![one(VoucherKind::Sybil, 1.0, 0.56, None)]);
        assert!(!passes("the voucher is connected", &cluster));
        assert!(passes("damping", &cluster));
        let slandered = accepted(
            false,
            vec![one(VoucherKind::HonestConnected, 0.75, 0.6, Some(600.0)), one(VoucherKind::Sybil, -1.0, 0.2, None)],
        );
        assert_eq!(carriers(&slandered).count(), 1);
        assert!(!passes("acceptance threshold 0.6", &slandered), "mean {}", mean_score(&slandered));
        let text = carried_text(&[newcomer, foothold, cluster]);
        assert!(text.contains("2 Sybil acceptances"), "{text}");
        assert!(
            text.contains("two independent vouchers weighing >= 0.2: 0 of 2 Sybil acceptances (at 0 nodes), 0 of 1"),
            "{text}"
        );
    }
}
