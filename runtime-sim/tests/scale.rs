//! A 1,000-node mesh in CI: formation, then a third of the mesh partitioned away and healed.
//! Every invariant is checked on every event; after healing, messages must get through again.

use runtime_sim::{find, Sim};

#[test]
fn thousand_nodes_form_partition_and_heal() {
    let sc = find("partition-heal").expect("exists");
    let mut opts = (sc.build)(1000, 11, 360_000_000);
    opts.net.lan_size = 4;
    let started = std::time::Instant::now();
    let mut sim = Sim::new(opts.clone());
    let report = sim.run(&mut |_, _| {}).unwrap_or_else(|v| panic!("{v}\nreproduce: {}", opts.command_line()));
    let wall = started.elapsed();
    eprintln!(
        "1000 nodes, 6 simulated minutes: {} events in {:.1} s; {} connections; delivery {:?}, after healing {:?}; {} checks",
        report.events,
        wall.as_secs_f64(),
        report.connections,
        report.delivery_ratio,
        report.delivery_after,
        report.checks
    );
    // Formation: nearly every edge of the 8-regular graph became a connection.
    assert!(report.connections >= 3_800, "only {} connections formed", report.connections);
    // The partition hurt while it lasted ...
    let during = sim.metrics().window_ratio(2).expect("messages sent during the partition");
    assert!(during < 0.9, "partition did not cut anything: {during}");
    // ... and after healing delivery is back.
    let after = report.delivery_after.expect("messages sent after healing");
    assert!(after >= 0.97, "delivery after healing {after}");
    assert!(report.checks > 10_000);
    assert_eq!(report.nodes_up, 1000);
}
