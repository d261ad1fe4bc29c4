//! Spawning in the simulator: with `--spawn 1` every node spawns agents for its connections' messages
//! within the core's limits, deterministically; the invariants hold as without it.

use runtime_sim::{Options, Sim};

fn run(spawn: bool) -> runtime_sim::Report {
    let sc = runtime_sim::find("ordinary").expect("exists");
    let mut o: Options = (sc.build)(30, 1, 600_000_000);
    o.min_delivery_after = None;
    o.apply("spawn", if spawn { "1" } else { "0" }).unwrap();
    Sim::new(o.clone()).run(&mut |_, _| {}).unwrap_or_else(|v| panic!("{v}\nreproduce: {}", o.command_line()))
}

#[test]
fn nodes_spawn_within_their_limits_and_runs_stay_deterministic() {
    let on = run(true);
    assert!(on.counters.spawns > 0, "messages from connections spawn agents");
    // 30 nodes, 15 an hour each, over ten minutes.
    assert!(on.counters.spawns <= 30 * 15, "the hourly limit holds: {}", on.counters.spawns);
    assert_eq!(run(true).trace_hash, on.trace_hash, "same seed, same run");
    let off = run(false);
    assert_eq!((off.counters.spawns, off.counters.spawns_refused), (0, 0));
}
