//! The soak, short: the headless node under a mixed flood (junk, trickling bodies and heads, connected
//! peers flooding valid messages, throwaway connection requests, each from an address of its own) for
//! [`FLOOD_S`] seconds keeps serving legitimate peers, its memory stays bounded, and after a kill -9
//! at a seeded random moment (and one more at the end) every message it acknowledged is in its inbox
//! or was read from it. The full run is `benches/soak.rs` (ten minutes; figures in BENCHMARKS.md);
//! both drive `benches/load/`.

#[path = "../benches/load/mod.rs"]
mod load;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use load::soak::{self, SoakConfig};
use load::stats::Kind;

/// How long the flood runs, in seconds (with start-up and the final check the test takes about 50 s).
const FLOOD_S: u64 = 40;
/// The whole test must end within this (a loaded 2-core machine included).
const RUN_LIMIT: Duration = Duration::from_secs(75);
/// Least share of peer messages and of status reads served: a flood that crowds out legitimate
/// peers brings it far lower (5 % was measured with the global window spent by junk).
const SERVED_MIN: f64 = 0.9;
/// Most resident memory at any sample, KiB (a debug build; an idle node holds about 10 MiB).
const RSS_MAX_KIB: u64 = 128 * 1024;
/// Names the seed of the kill point, so a failing run can be repeated exactly (as tests/smol_crash.rs).
const SEED_VAR: &str = "DARKMATTER_CRASH_SEED";

fn seed() -> u64 {
    match std::env::var(SEED_VAR) {
        Ok(text) => text.trim().parse::<u64>().unwrap_or_else(|_| panic!("{SEED_VAR} must be a u64, got {text:?}")) | 1,
        Err(_) => SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_nanos() as u64 | 1,
    }
}

fn config() -> SoakConfig {
    SoakConfig {
        node: PathBuf::from(env!("CARGO_BIN_EXE_smol-node")),
        duration: Duration::from_secs(FLOOD_S),
        seed: seed(),
        kills: 1,
        peers: 3,
        flood_peers: 3,
        flood_per_s: 20,
        junk_per_s: 45,
        slow_bodies: 35,
        slow_heads: 150,
        throwaway_burst: 10,
        throwaway_every: Duration::from_secs(5),
        // The operator lifts the global window, as tests/smol_crash.rs does. Before issue 12's budgets,
        // junk spent it (5.9 % of peer messages served); with them, the flooders (each held to its own
        // window of 30 a minute) and the throwaway keys together still fill its 200 a minute, which can
        // leave the honest peers near this floor (BENCHMARKS.md, "Soak"). The test checks what else holds.
        global_unlimited: true,
        served_min: SERVED_MIN,
        rss_max_kib: RSS_MAX_KIB,
        progress_every: None,
    }
}

#[test]
fn a_node_under_a_mixed_flood_serves_peers_stays_bounded_and_loses_nothing_acknowledged() {
    let c = config();
    eprintln!("soak seed {} (re-run with {SEED_VAR}={})", c.seed, c.seed);
    let t0 = Instant::now();
    let report = soak::run(&c).unwrap_or_else(|e| panic!("the soak did not run: {e}"));
    let text = soak::render(&c, &report);
    eprintln!("{text}");
    assert!(report.violations.is_empty(), "{text}");
    // What the violations cover, stated once more on its own so that each can fail by itself.
    assert_eq!(report.kills, 2, "{text}");
    assert!(report.lost.is_empty(), "{text}");
    assert!(report.acked > 0, "nothing was acknowledged, so nothing was checked: {text}");
    let messages = &report.summaries.iter().find(|(k, _)| *k == Kind::Message).expect("peer messages").1;
    assert!(messages.attempts >= 20, "too few peer messages to measure: {text}");
    assert!(t0.elapsed() < RUN_LIMIT, "the soak took {:?}", t0.elapsed());
}

#[test]
fn growing_memory_is_caught_and_a_plateau_is_not() {
    let plateau: Vec<(f64, u64)> = (0..60).map(|i| (i as f64, 20_000 + (i % 7) * 300)).collect();
    assert_eq!(soak::levels_off(&plateau), Ok(()));
    let leak: Vec<(f64, u64)> = (0..60).map(|i| (i as f64, 20_000 + i * 1_000)).collect();
    assert!(soak::levels_off(&leak).is_err());
}

#[test]
fn kill_points_are_seeded_and_inside_the_run() {
    let d = Duration::from_secs(100);
    let a = soak::kill_points(41, 5, d);
    assert_eq!(a, soak::kill_points(41, 5, d));
    assert_ne!(a, soak::kill_points(45, 5, d));
    assert!(a.windows(2).all(|w| w[0] <= w[1]));
    assert!(a.iter().all(|k| *k >= Duration::from_secs(10) && *k < Duration::from_secs(90)), "{a:?}");
}
