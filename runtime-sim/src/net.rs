//! The simulated network between nodes' URLs.
//!
//! - Every directed link has its own random stream (loss, jitter, burst state), created on first use
//!   from the run's seed and the link's ends, so traffic on one link never shifts another's draws.
//! - A link's base latency is a pure function of the seed and the unordered pair of nodes.
//! - Loss is Gilbert-Elliott: a good state with `loss`, a bad state with `burst_loss`, switching with
//!   `burst_enter` / `burst_exit` per packet (mean burst length `1 / burst_exit`).
//! - Partitions cut a side off from the rest, in both directions or one.
//! - Addresses: node `i` at address generation `g` listens at `http://node-i[-g].sim:8100`, from the
//!   private address `10.g.(i >> 8).(i & 255)` (so the core's local auto-accept applies).

use core::net::{IpAddr, Ipv4Addr};

use crate::rng::{derive, purpose, FxMap, SplitMix};

/// Network parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct NetConfig {
    /// Shortest base latency of a link, µs.
    pub latency_min_us: u64,
    /// Longest base latency of a link, µs (drawn skewed toward the short end).
    pub latency_max_us: u64,
    /// Mean of the exponential per-packet jitter, µs.
    pub jitter_mean_us: u64,
    /// Latency within a LAN segment (beacons), µs.
    pub lan_latency_us: u64,
    /// Loss probability per packet in the good state.
    pub loss: f64,
    /// Probability per packet of entering a loss burst.
    pub burst_enter: f64,
    /// Probability per packet of leaving a loss burst.
    pub burst_exit: f64,
    /// Loss probability per packet inside a burst.
    pub burst_loss: f64,
    /// CPU time a node spends answering one request, µs; requests queue behind each other.
    pub handling_cost_us: u64,
    /// Largest wall-clock skew of a node, either way, µs.
    pub skew_max_us: u64,
    /// Nodes per LAN segment (beacons reach the others in the segment).
    pub lan_size: u32,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            latency_min_us: 2_000,
            latency_max_us: 80_000,
            jitter_mean_us: 1_000,
            lan_latency_us: 300,
            loss: 0.001,
            burst_enter: 0.0005,
            burst_exit: 0.25,
            burst_loss: 0.5,
            handling_cost_us: 100,
            skew_max_us: 2_000_000,
            lan_size: 8,
        }
    }
}

/// What became of one packet.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Arrives after this many µs.
    Deliver(u64),
    /// Lost on the way.
    Lost,
    /// Cut by a partition.
    Blocked,
}

/// Which way a partition cuts.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Neither side reaches the other.
    Both,
    /// The side cannot reach the rest; the rest still reaches the side.
    OutOfSide,
    /// The rest cannot reach the side; the side still reaches the rest.
    IntoSide,
}

struct Partition {
    id: u32,
    side: Vec<bool>,
    cut: Cut,
}

struct Link {
    rng: SplitMix,
    base_us: u32,
    bad: bool,
}

/// The network state.
pub struct Network {
    cfg: NetConfig,
    seed: u64,
    links: FxMap<u64, Link>,
    partitions: Vec<Partition>,
    /// Packets handed to the network, lost, blocked.
    pub stats: NetStats,
}

/// Counters.
#[derive(Clone, Debug, Default)]
pub struct NetStats {
    /// Packets offered.
    pub packets: u64,
    /// Lost.
    pub lost: u64,
    /// Blocked by partitions.
    pub blocked: u64,
}

impl Network {
    /// A network for a run with this seed.
    pub fn new(cfg: NetConfig, seed: u64) -> Self {
        Self { cfg, seed, links: FxMap::default(), partitions: Vec::new(), stats: NetStats::default() }
    }

    /// The parameters.
    pub fn config(&self) -> &NetConfig {
        &self.cfg
    }

    /// The base latency of the link between `a` and `b`, µs (symmetric).
    pub fn base_latency_us(&self, a: u32, b: u32) -> u64 {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let u = SplitMix(derive(self.seed, purpose::LATENCY, lo as u64, hi as u64)).unit();
        self.cfg.latency_min_us + ((self.cfg.latency_max_us - self.cfg.latency_min_us) as f64 * u * u) as u64
    }

    /// Whether a partition cuts `from -> to` now.
    pub fn blocked(&self, from: u32, to: u32) -> bool {
        self.partitions.iter().any(|p| {
            let (f, t) = (p.side[from as usize], p.side[to as usize]);
            match p.cut {
                Cut::Both => f != t,
                Cut::OutOfSide => f && !t,
                Cut::IntoSide => !f && t,
            }
        })
    }

    /// Decides the fate of one packet `from -> to` (`lan`: a datagram within a segment).
    pub fn fate(&mut self, from: u32, to: u32, lan: bool) -> Fate {
        self.stats.packets += 1;
        if self.blocked(from, to) {
            self.stats.blocked += 1;
            return Fate::Blocked;
        }
        let key = ((from as u64) << 32) | to as u64;
        let (seed, cfg) = (self.seed, &self.cfg);
        let base = if lan { 0 } else { self.base_latency_us(from, to) as u32 };
        let link = self.links.entry(key).or_insert_with(|| Link {
            rng: SplitMix(derive(seed, purpose::LINK, from as u64, to as u64)),
            base_us: base,
            bad: false,
        });
        let r = link.rng.unit();
        let lost = if link.bad { r < cfg.burst_loss } else { r < cfg.loss };
        let s = link.rng.unit();
        link.bad = if link.bad { s >= cfg.burst_exit } else { s < cfg.burst_enter };
        let j = link.rng.unit();
        if lost {
            self.stats.lost += 1;
            return Fate::Lost;
        }
        let jitter = -(cfg.jitter_mean_us as f64) * (1.0 - j).ln();
        let base = if lan { cfg.lan_latency_us } else { link.base_us as u64 };
        Fate::Deliver(base + jitter as u64)
    }

    /// Starts a partition cutting `side` off (`side[i]` for node `i`). Returns its id.
    pub fn partition(&mut self, id: u32, side: Vec<bool>, cut: Cut) {
        self.partitions.push(Partition { id, side, cut });
    }

    /// Heals partition `id`.
    pub fn heal(&mut self, id: u32) {
        self.partitions.retain(|p| p.id != id);
    }

    /// Partitions in force.
    pub fn partitions_active(&self) -> usize {
        self.partitions.len()
    }

    /// Directed links that have carried traffic.
    pub fn links_used(&self) -> usize {
        self.links.len()
    }
}

/// The base URL of node `i` at address generation `gen`.
pub fn url_of(i: u32, gen: u32) -> String {
    if gen == 0 {
        format!("http://node-{i}.sim:8100")
    } else {
        format!("http://node-{i}-{gen}.sim:8100")
    }
}

/// The source address of node `i` at address generation `gen` (private: the core trusts it as local).
pub fn ip_of(i: u32, gen: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, (gen % 256) as u8, ((i >> 8) & 0xff) as u8, (i & 0xff) as u8))
}

/// Splits a full URL into (base, path): `http://h:1/__darkmatter__/x` → (`http://h:1`, `/__darkmatter__/x`).
pub fn split_url(url: &str) -> (&str, &str) {
    let after = url.find("://").map_or(0, |p| p + 3);
    match url[after..].find('/') {
        Some(p) => url.split_at(after + p),
        None => (url, "/"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_is_symmetric_and_in_range() {
        let n = Network::new(NetConfig::default(), 7);
        for (a, b) in [(0, 1), (5, 900), (33, 2)] {
            let l = n.base_latency_us(a, b);
            assert_eq!(l, n.base_latency_us(b, a));
            assert!((2_000..=80_000).contains(&l));
        }
    }

    #[test]
    fn partitions_cut_the_right_directions() {
        let mut n = Network::new(NetConfig { loss: 0.0, burst_enter: 0.0, ..NetConfig::default() }, 1);
        n.partition(1, vec![true, false, false], Cut::OutOfSide);
        assert_eq!(n.fate(0, 1, false), Fate::Blocked);
        assert!(matches!(n.fate(1, 0, false), Fate::Deliver(_)));
        assert!(matches!(n.fate(1, 2, false), Fate::Deliver(_)));
        n.heal(1);
        assert!(matches!(n.fate(0, 1, false), Fate::Deliver(_)));
        n.partition(2, vec![true, false, false], Cut::Both);
        assert_eq!(n.fate(1, 0, false), Fate::Blocked);
    }

    #[test]
    fn bursts_lose_more_than_the_base_rate() {
        let cfg = NetConfig { loss: 0.0, burst_enter: 0.05, burst_exit: 0.2, burst_loss: 1.0, ..NetConfig::default() };
        let mut n = Network::new(cfg, 3);
        let lost = (0..10_000).filter(|_| n.fate(0, 1, false) == Fate::Lost).count();
        // Stationary share of the bad state: 0.05 / (0.05 + 0.2) = 20%.
        assert!((1_400..2_600).contains(&lost), "{lost}");
    }

    #[test]
    fn urls_split_and_addresses_are_private() {
        assert_eq!(
            split_url("http://node-3.sim:8100/__darkmatter__/message"),
            ("http://node-3.sim:8100", "/__darkmatter__/message")
        );
        assert_eq!(url_of(3, 0), "http://node-3.sim:8100");
        assert_eq!(url_of(3, 2), "http://node-3-2.sim:8100");
        assert!(proto_core::url::is_local_ip(ip_of(9999, 1)));
    }
}
