//! LAN discovery through the core's inputs and outputs: beacons come out of each node's own timer as
//! `Output::Datagram`, the simulator delivers them to the node's segment (with loss), and within a few
//! beacon intervals every node lists exactly its segment's peers.

use proto_core::discovery::BEACON_INTERVAL_S;
use runtime_sim::{lan_discovery, Sim, LAN_DISCOVERY_SEGMENT};

/// Beacon intervals within which every node must have found its segment.
const INTERVALS_MAX: u64 = 3;

#[test]
fn every_node_discovers_its_segment_and_no_one_else_within_three_intervals() {
    let nodes = 4 * LAN_DISCOVERY_SEGMENT;
    let duration_us = INTERVALS_MAX * BEACON_INTERVAL_S * 1_000_000;
    for seed in [1, 2, 3] {
        let mut sim = Sim::new(lan_discovery(nodes, seed, duration_us));
        let report = sim.run(&mut |_, _| {}).unwrap_or_else(|v| panic!("seed {seed}: {v}"));
        assert!(report.counters.beacons >= u64::from(nodes) * INTERVALS_MAX, "the core's timer beaconed");
        for i in 0..nodes {
            assert_eq!(sim.lan_discovery_gaps(i), (0, 0), "seed {seed}: node {i}");
        }
    }
}

#[test]
fn a_lan_that_loses_every_beacon_fails_the_check() {
    let mut opts = lan_discovery(2 * LAN_DISCOVERY_SEGMENT, 1, BEACON_INTERVAL_S * 1_000_000);
    opts.net.loss = 1.0;
    opts.net.burst_enter = 0.0;
    let err = Sim::new(opts).run(&mut |_, _| {}).expect_err("nobody can be found");
    assert_eq!(err.rule, "lan-discovery");
}
