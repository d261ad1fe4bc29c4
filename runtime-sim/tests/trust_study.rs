//! The Sybil study, reduced so that CI runs it in seconds: 200 honest nodes, 50 colluding Sybils
//! asking 30 honest nodes each over five minutes (the footholds of a few reach 6 honest nodes each),
//! 30 vouched newcomers, direct messages as the only background traffic, 20 simulated minutes (the
//! policy holds each decision for 10). SIMULATIONS.md has the full-size study.
//!
//! Asserts the direction of the targets: at the default (weighted) policy fewer than 1% of honest
//! nodes auto-accept a Sybil while newcomers vouched for by a trusted peer get in; the plain average
//! of answers lets Sybils in at the honest nodes where they have a foothold.

use runtime_sim::trust_study::{Class, StudyReport};
use runtime_sim::{find, Options, Sim};

fn options(policy: &str) -> Options {
    let sc = find("sybil").expect("exists");
    let mut o = (sc.build)(200, 1, 1_200_000_000);
    for (k, v) in [
        ("sybils", "50"),
        ("newcomers", "30"),
        ("sybil-targets", "30"),
        ("gateway-links", "6"),
        ("window", "5m"),
        ("health", "0"),
        ("beacon", "0"),
        ("policy", policy),
    ] {
        o.apply(k, v).unwrap_or_else(|e| panic!("--{k} {v}: {e}"));
    }
    o
}

fn run(o: Options) -> StudyReport {
    let command = o.command_line();
    let mut sim = Sim::new(o);
    sim.run(&mut |_, _| {}).unwrap_or_else(|v| panic!("{v}\nreproduce: {command}"));
    let r = sim.study_report().expect("a study");
    eprintln!("{command}\n{}", r.text());
    r
}

#[test]
fn weighting_keeps_sybils_out_and_lets_vouched_newcomers_in() {
    let (weighted, plain) = std::thread::scope(|s| {
        let w = s.spawn(|| run(options("weighted")));
        let p = s.spawn(|| run(options("plain")));
        (w.join().expect("weighted run"), p.join().expect("plain run"))
    });
    assert_eq!(weighted.honest, 200);
    assert_eq!(weighted.sybils, 50);
    assert!(weighted.gateways >= 5, "the attack needs footholds in the honest mesh: {}", weighted.gateways);
    assert!(
        weighted.sybil_requests_reached >= 1400,
        "Sybil requests reached honest nodes: {}",
        weighted.sybil_requests_reached
    );

    // Default policy: Sybils stay out.
    assert!(
        weighted.sybil_node_ratio() < 0.01,
        "weighted: {} honest nodes accepted a Sybil",
        weighted.honest_accepting_sybil
    );
    // Vouched newcomers get in: the first vouched target each asks accepts it.
    let first = weighted.newcomers_first_accepted as f64 / weighted.newcomers_with_vouched as f64;
    assert!(weighted.newcomers_with_vouched >= 25);
    assert!(first >= 0.9, "weighted: {first:.3} of newcomers accepted by the first vouched target they asked");
    // Per request the default policy comes close to 90% but not always over it (SIMULATIONS.md): a
    // later vouched request is diluted by hearsay-sized opinions of nodes that accepted the newcomer a
    // moment earlier, or the voucher is not among the 8 peers asked (or its answer is lost or
    // refused). Every miss must be one of those known causes.
    let v = weighted.class(Class::Vouched);
    assert!(v.ratio() >= 0.85, "weighted: {}/{} vouched requests accepted", v.accepted, v.asked);
    for (why, n) in &weighted.vouched_failures {
        let known = ["hearsay", "8 most trusted", "voucher refused", "voucher asked but gave no opinion", "held"];
        assert!(known.iter().any(|k| why.contains(k)), "unexpected cause of {n} vouched misses: {why}");
    }
    // Strangers are not accepted on nobody's word, and acceptance comes right after the hold.
    assert_eq!(weighted.class(Class::Control).accepted, 0);
    let hold_s = proto_core::limits::TRUST_DECISION_HOLD_S as f64;
    assert!(v.delays_s.iter().all(|&d| d < hold_s + 150.0), "vouched acceptance took over the hold + 150 s");

    // The plain average: the Sybil a node let in vouches for the others.
    assert_eq!(weighted.honest_accepting_sybil, 0);
    assert!(
        plain.sybil_node_ratio() >= 0.015,
        "plain: only {} honest nodes accepted a Sybil",
        plain.honest_accepting_sybil
    );
    assert!(plain.sybil_accepted >= 10, "plain: only {} Sybil requests accepted", plain.sybil_accepted);
    assert_eq!(
        plain.gateway_accepting_sybil, plain.honest_accepting_sybil,
        "plain: only nodes with a Sybil connection can be talked into one"
    );
    let first = plain.newcomers_first_accepted as f64 / plain.newcomers_with_vouched as f64;
    assert!(first >= 0.9, "plain: {first:.3}");
}

/// Trust farming against half-trusted footholds, reduced: the Sybils answer their footholds' owners
/// for 20 minutes (two replies an owner), then ask to connect while slandering the newcomers. The old
/// rules let the footholds vouch their cluster in; the new ones keep that under 1 % of honest nodes,
/// apart from the one Sybil a node trusts itself vouched in by that node, and slander does not keep
/// vouched newcomers out.
#[test]
fn the_sybil_defences_hold_against_farming_and_slander() {
    let farmed = |policy: &str| {
        let mut o = options(policy);
        for (k, v) in [("gateway-trust", "0.5"), ("strategy", "farm,slander"), ("attack-after", "20m")] {
            o.apply(k, v).unwrap_or_else(|e| panic!("--{k} {v}: {e}"));
        }
        o.duration_us = 2_400_000_000;
        o
    };
    let (new, old) = std::thread::scope(|s| {
        let n = s.spawn(|| run(farmed("weighted")));
        let o = s.spawn(|| run(farmed("unbounded")));
        (n.join().expect("new rules"), o.join().expect("old rules"))
    });
    assert!(new.trusting_gateways >= 3, "the attack needs trusted footholds: {}", new.trusting_gateways);
    assert!(
        old.gateway_accepting_sybil >= 3,
        "old rules: only {} footholds vouched their cluster in",
        old.gateway_accepting_sybil
    );
    assert_eq!(new.gateway_accepting_sybil, 0, "new rules: a foothold vouching for a crowd counts for nothing");
    assert!(new.sybil_accepted * 10 <= old.sybil_accepted, "new {} vs old {}", new.sybil_accepted, old.sybil_accepted);
    let v = new.class(Class::Vouched);
    assert!(v.ratio() >= 0.85, "new rules under slander: {}/{} vouched requests accepted", v.accepted, v.asked);
}
