//! Topology builders: who asks whom to connect at formation.
//!
//! Each builder returns edges `(initiator, target)`; the initiator sends `Command::Connect` to the
//! target's URL, and the real handshake does the rest (so limits, losses and partitions apply).
//! Duplicates and self-loops are removed; order is deterministic for a given RNG.

use rand_chacha::ChaCha8Rng;
use rand_core::RngCore;

use crate::rng::FxSet;

/// A topology and its parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum Topology {
    /// No edges (scripted scenarios connect by hand).
    None,
    /// Random graph with each node's degree drawn uniformly in `min..=max` (configuration model);
    /// `min == max` gives a random k-regular graph.
    RandomRegular {
        /// Smallest degree.
        min: u32,
        /// Largest degree.
        max: u32,
    },
    /// Watts-Strogatz: a ring where each node links to its `k` nearest, each edge rewired with
    /// probability `rewire`.
    SmallWorld {
        /// Ring neighbours (even).
        k: u32,
        /// Rewiring probability.
        rewire: f64,
    },
    /// Clusters of `size` nodes, random `degree`-regular inside, plus `bridges` edges from each
    /// cluster to random nodes of other clusters.
    Clustered {
        /// Nodes per cluster.
        size: u32,
        /// Degree inside a cluster.
        degree: u32,
        /// Bridge edges per cluster.
        bridges: u32,
    },
    /// Nodes `0..anchors` form a full mesh; every other node links to `links` random anchors.
    Star {
        /// Anchor count.
        anchors: u32,
        /// Anchors per node.
        links: u32,
    },
}

/// Uniform in `0..n` (n > 0).
pub fn below(rng: &mut ChaCha8Rng, n: u64) -> u64 {
    ((rng.next_u64() as u128 * n as u128) >> 64) as u64
}

/// Uniform in `[0, 1)`.
pub fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

struct Edges {
    seen: FxSet<u64>,
    out: Vec<(u32, u32)>,
}

impl Edges {
    fn new() -> Self {
        Self { seen: FxSet::default(), out: Vec::new() }
    }
    fn add(&mut self, a: u32, b: u32) -> bool {
        if a == b {
            return false;
        }
        let key = ((a.min(b) as u64) << 32) | a.max(b) as u64;
        if !self.seen.insert(key) {
            return false;
        }
        self.out.push((a, b));
        true
    }
    fn has(&self, a: u32, b: u32) -> bool {
        self.seen.contains(&(((a.min(b) as u64) << 32) | a.max(b) as u64))
    }
}

/// The edges of `topology` over nodes `0..n`.
pub fn build(topology: &Topology, n: u32, rng: &mut ChaCha8Rng) -> Vec<(u32, u32)> {
    let mut e = Edges::new();
    match *topology {
        Topology::None => {}
        Topology::RandomRegular { min, max } => {
            let nodes: Vec<u32> = (0..n).collect();
            configuration(&nodes, min, max, rng, &mut e);
        }
        Topology::SmallWorld { k, rewire } => {
            if n > 1 {
                for i in 0..n {
                    for j in 1..=(k / 2).min(n - 1) {
                        let mut t = (i + j) % n;
                        if unit(rng) < rewire {
                            for _ in 0..8 {
                                let c = below(rng, n as u64) as u32;
                                if c != i && !e.has(i, c) {
                                    t = c;
                                    break;
                                }
                            }
                        }
                        e.add(i, t);
                    }
                }
            }
        }
        Topology::Clustered { size, degree, bridges } => {
            let size = size.max(2);
            let clusters = n.div_ceil(size);
            for c in 0..clusters {
                let members: Vec<u32> = (c * size..((c + 1) * size).min(n)).collect();
                configuration(&members, degree, degree, rng, &mut e);
            }
            if clusters > 1 {
                for c in 0..clusters {
                    for _ in 0..bridges {
                        let a = c * size + below(rng, (size.min(n - c * size)) as u64) as u32;
                        let other = (c + 1 + below(rng, (clusters - 1) as u64) as u32) % clusters;
                        let b = other * size + below(rng, (size.min(n - other * size)) as u64) as u32;
                        e.add(a, b);
                    }
                }
            }
        }
        Topology::Star { anchors, links } => {
            let anchors = anchors.min(n);
            for a in 0..anchors {
                for b in a + 1..anchors {
                    e.add(b, a);
                }
            }
            if anchors > 0 {
                for i in anchors..n {
                    for _ in 0..links.min(anchors) {
                        for _ in 0..8 {
                            if e.add(i, below(rng, anchors as u64) as u32) {
                                break;
                            }
                        }
                    }
                }
            }
        }
    }
    e.out
}

/// Configuration model over `nodes`, degrees uniform in `min..=max`.
fn configuration(nodes: &[u32], min: u32, max: u32, rng: &mut ChaCha8Rng, e: &mut Edges) {
    let mut stubs = Vec::new();
    for &i in nodes {
        let d = min + below(rng, (max - min + 1) as u64) as u32;
        stubs.extend(std::iter::repeat_n(i, d.min(nodes.len() as u32 - 1) as usize));
    }
    for i in (1..stubs.len()).rev() {
        let j = below(rng, i as u64 + 1) as usize;
        stubs.swap(i, j);
    }
    for pair in stubs.chunks_exact(2) {
        e.add(pair[0], pair[1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    fn degrees(n: u32, edges: &[(u32, u32)]) -> Vec<u32> {
        let mut d = vec![0; n as usize];
        for &(a, b) in edges {
            d[a as usize] += 1;
            d[b as usize] += 1;
        }
        d
    }

    #[test]
    fn random_regular_is_nearly_regular_and_deterministic() {
        let t = Topology::RandomRegular { min: 6, max: 6 };
        let e1 = build(&t, 200, &mut ChaCha8Rng::seed_from_u64(1));
        let e2 = build(&t, 200, &mut ChaCha8Rng::seed_from_u64(1));
        assert_eq!(e1, e2);
        let d = degrees(200, &e1);
        assert!(d.iter().all(|&x| x <= 6));
        assert!(d.iter().sum::<u32>() >= 200 * 6 * 95 / 100);
    }

    #[test]
    fn builders_make_no_self_loops_or_duplicates() {
        for t in [
            Topology::SmallWorld { k: 4, rewire: 0.2 },
            Topology::Clustered { size: 10, degree: 4, bridges: 2 },
            Topology::Star { anchors: 3, links: 2 },
            Topology::RandomRegular { min: 2, max: 8 },
        ] {
            let e = build(&t, 100, &mut ChaCha8Rng::seed_from_u64(9));
            let mut seen = std::collections::BTreeSet::new();
            for (a, b) in e {
                assert_ne!(a, b);
                assert!(seen.insert((a.min(b), a.max(b))), "{t:?}");
            }
        }
    }

    #[test]
    fn star_hangs_everyone_on_anchors() {
        let e = build(&Topology::Star { anchors: 3, links: 2 }, 50, &mut ChaCha8Rng::seed_from_u64(2));
        assert!(e.iter().all(|&(a, b)| a < 3 || b < 3));
        assert_eq!(e.len(), 3 + 47 * 2);
    }
}
