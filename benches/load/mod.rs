//! Load generation against real headless nodes on loopback, shared by the `flood` and `soak` bench
//! binaries and by `tests/smol_soak.rs` (which includes this directory by path).
//!
//! All of loopback is one source to a node unless each client binds its own 127.0.0.x address (on
//! Linux all of 127.0.0.0/8 is loopback), so every party here has an address of its own: attackers
//! and legitimate clients never share a source budget.
//!
//! - [`net`]: raw HTTP/1.1 from a chosen source address, one bounded read per answer;
//! - [`node`]: a headless node as a child process, driven over its control lines;
//! - [`sign`]: envelopes and connection requests signed as our nodes sign them;
//! - [`stats`]: what legitimate clients saw (served share, p50, p99);
//! - [`legit`]: the legitimate traffic and the agent who reads the inbox and decides requests;
//! - [`attack`]: the floods;
//! - [`soak`]: the soak (a mixed flood, memory samples, kill -9 and the loss check).

#![allow(dead_code)]

pub mod attack;
pub mod legit;
pub mod net;
pub mod node;
pub mod sign;
pub mod soak;
pub mod stats;

use std::time::{Duration, Instant};

/// Sleeps until `deadline` or until `stop` is set, checking every few ms; returns whether to go on.
pub fn sleep_until(deadline: Instant, stop: &std::sync::atomic::AtomicBool) -> bool {
    const STEP_MS: u64 = 20;
    loop {
        if stop.load(std::sync::atomic::Ordering::Acquire) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(STEP_MS)));
    }
}

/// A small xorshift generator: seeded, so a run's kill points can be repeated.
pub struct Rng(pub u64);

impl Rng {
    /// A value in `lo..hi` (`hi > lo`).
    pub fn next_in(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        lo + self.0 % (hi - lo)
    }
}
