//! Seeds and small random streams.
//!
//! Every random choice of a run comes from the one `--seed`: [`derive`] splits it into independent
//! sub-seeds by purpose and index (a node's passport, a node's core RNG, a link's stream, the
//! workload), so adding a node or a link never shifts the randomness of another. The workload uses
//! ChaCha8; per-link streams use SplitMix64 because a 10,000-node mesh has hundreds of thousands of
//! links and each stream must cost eight bytes.

use std::hash::{BuildHasherDefault, Hasher};

/// SplitMix64's finaliser: a strong 64-bit mix.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// An independent sub-seed for `(purpose, a, b)` under `seed`.
pub fn derive(seed: u64, purpose: u64, a: u64, b: u64) -> u64 {
    mix64(
        mix64(mix64(seed ^ mix64(purpose.wrapping_add(0x9e37_79b9_7f4a_7c15))) ^ a)
            ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15),
    )
}

/// Purposes for [`derive`].
pub mod purpose {
    /// A node's Ed25519 seed.
    pub const PASSPORT: u64 = 1;
    /// A node's core RNG, per incarnation.
    pub const NODE: u64 = 2;
    /// A directed link's stream.
    pub const LINK: u64 = 3;
    /// A link's base latency.
    pub const LATENCY: u64 = 4;
    /// The workload generator.
    pub const WORKLOAD: u64 = 5;
    /// Topology construction.
    pub const TOPOLOGY: u64 = 6;
    /// Per-node clock skew.
    pub const SKEW: u64 = 7;
    /// Fault planning (which nodes a partition or crash takes).
    pub const FAULTS: u64 = 8;
    /// A node's stand-in for the OS's randomness ([`SimEntropy`]), per incarnation.
    pub const ENTROPY: u64 = 9;
}

/// The simulator's stand-in for the operating system's randomness, given to every node explicitly
/// (the core never draws a commitment nonce or a relay key from its own seeded generator). Seeded,
/// so a run repeats; each node and incarnation gets its own stream.
pub struct SimEntropy(std::sync::Mutex<rand_chacha::ChaCha8Rng>);

impl SimEntropy {
    /// A source seeded with `seed` (from [`derive`] with [`purpose::ENTROPY`]).
    pub fn new(seed: u64) -> Self {
        Self(std::sync::Mutex::new(rand_core::SeedableRng::seed_from_u64(seed)))
    }
}

impl proto_core::Entropy for SimEntropy {
    fn fill(&self, buf: &mut [u8]) -> Result<(), String> {
        let mut rng = self.0.lock().map_err(|_| "the simulated randomness is poisoned".to_owned())?;
        rand_core::RngCore::fill_bytes(&mut *rng, buf);
        Ok(())
    }
}

/// SplitMix64: eight bytes of state, good enough for jitter and loss draws.
#[derive(Clone, Copy, Debug)]
pub struct SplitMix(pub u64);

impl SplitMix {
    /// Next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// Uniform in `[0, 1)`.
    #[inline]
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// FxHash (rustc's hasher): fast, unkeyed, deterministic. Used only for look-ups, never iterated.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.write_u64(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        for &b in chunks.remainder() {
            self.write_u64(b as u64);
        }
    }
    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.write_u64(n as u64);
    }
    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A `HashMap` keyed by FxHash. Iteration order is never relied on.
pub type FxMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<FxHasher>>;
/// A `HashSet` keyed by FxHash. Iteration order is never relied on.
pub type FxSet<K> = std::collections::HashSet<K, BuildHasherDefault<FxHasher>>;

/// A 64-bit key for a message id (ids are compared by this key in the sim's bookkeeping).
pub fn id_key(id: &str) -> u64 {
    let mut h = FxHasher::default();
    h.write(id.as_bytes());
    mix64(h.finish() ^ id.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derive_separates_purposes_and_indices() {
        assert_ne!(derive(1, purpose::NODE, 0, 0), derive(1, purpose::PASSPORT, 0, 0));
        assert_ne!(derive(1, purpose::NODE, 0, 0), derive(1, purpose::NODE, 1, 0));
        assert_ne!(derive(1, purpose::NODE, 0, 1), derive(1, purpose::NODE, 1, 0));
        assert_eq!(derive(9, purpose::LINK, 3, 4), derive(9, purpose::LINK, 3, 4));
    }

    #[test]
    fn unit_is_in_range() {
        let mut r = SplitMix(5);
        for _ in 0..1000 {
            let u = r.unit();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
