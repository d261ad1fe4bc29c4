//! Determinism: the same seed and options give the same trace (hash) and metrics; different seeds
//! give different traces. Every named scenario runs at two seeds, twice each.

use runtime_sim::{catalog, Options, Sim};

fn run(opts: &Options) -> (String, String) {
    let mut sim = Sim::new(opts.clone());
    let report = sim
        .run(&mut |_, _| {})
        .unwrap_or_else(|v| panic!("{}: {v}\nreproduce: {}", opts.scenario, opts.command_line()));
    (report.trace_hash, sim.metrics().csv())
}

/// Small sizes keep CI fast; the dynamics are the same.
fn small(name: &str, seed: u64) -> Options {
    let sc = runtime_sim::find(name).expect("exists");
    let (nodes, duration) = match name {
        "ordinary" => (40, 300_000_000),
        "broadcast-storm" => (20, 180_000_000),
        _ if sc.default_nodes <= 5 => (sc.default_nodes, sc.default_duration_us),
        _ => (30, 300_000_000),
    };
    let mut o = (sc.build)(nodes, seed, duration);
    o.min_delivery_after = None;
    o
}

#[test]
fn every_scenario_is_deterministic_and_seed_sensitive() {
    for sc in catalog() {
        let mut hashes = Vec::new();
        for seed in [1, 2] {
            let opts = small(sc.name, seed);
            let (h1, csv1) = run(&opts);
            let (h2, csv2) = run(&opts);
            assert_eq!(h1, h2, "{} seed {seed}: trace hash differs between identical runs", sc.name);
            assert_eq!(csv1, csv2, "{} seed {seed}: metrics differ between identical runs", sc.name);
            hashes.push(h1);
        }
        assert_ne!(hashes[0], hashes[1], "{}: seeds 1 and 2 gave the same trace", sc.name);
    }
}

#[test]
fn captured_traces_are_byte_identical() {
    let mut opts = small("churn", 5);
    opts.capture_trace = true;
    let text = |o: &Options| {
        let mut sim = Sim::new(o.clone());
        sim.run(&mut |_, _| {}).expect("no violation");
        sim.trace().text()
    };
    let a = text(&opts);
    assert!(a.lines().count() > 1000);
    assert_eq!(a, text(&opts));
}

/// The null provider changes no accept/refuse decision: the adversary's bent envelopes are still
/// refused, restarts still restore, and the trace is the one real Ed25519 gives. Every node signs
/// and verifies through the provider, which counts the same work either way.
#[test]
fn null_signatures_replay_the_real_trace() {
    for name in ["ordinary", "churn"] {
        let real = small(name, 3);
        let mut null = real.clone();
        null.apply("signatures", "null").unwrap();
        assert!(null.command_line().ends_with(" --signatures null"));
        let report = |o: &Options| Sim::new(o.clone()).run(&mut |_, _| {}).expect("no violation");
        let (a, b) = (report(&real), report(&null));
        assert_eq!(a.trace_hash, b.trace_hash, "{name}: null signatures changed the trace");
        assert!(a.signs > 0 && a.verifies > 0, "{name}: the provider counted no signature work");
        assert_eq!((a.signs, a.verifies), (b.signs, b.verifies), "{name}: different signature work");
    }
}

/// Checking signatures ahead on other cores answers every check as the simulator's own thread does:
/// the same trace, the same signature work, and most checks found done (the rest checked on the loop).
#[test]
fn checking_ahead_replays_the_inline_trace() {
    for name in ["ordinary", "churn"] {
        let ahead = small(name, 3);
        let mut inline = ahead.clone();
        inline.apply("signatures", "real-inline").unwrap();
        assert!(inline.command_line().ends_with(" --signatures real-inline"));
        let report = |o: &Options| Sim::new(o.clone()).run(&mut |_, _| {}).expect("no violation");
        let (a, b) = (report(&ahead), report(&inline));
        assert_eq!(a.trace_hash, b.trace_hash, "{name}: checking ahead changed the trace");
        assert_eq!((a.signs, a.verifies), (b.signs, b.verifies), "{name}: different signature work");
        let [ready, waited, behind, missed] = a.ahead.expect("the default checks ahead");
        assert_eq!(ready + waited + behind + missed, a.verifies, "{name}: every check is accounted for");
        assert_eq!(a.verifies_on_loop, behind + missed);
        assert!(ready + waited > 0, "{name}: no check was found done ahead");
        assert!(b.ahead.is_none() && b.verifies_on_loop == b.verifies);
    }
}
