//! Options of a run and the named scenarios.
//!
//! A run is fully determined by its [`Options`]; a scenario builds them from a name, a node count, a
//! seed and a duration (plus any command-line overrides), so the command that reproduces a run is
//! just those arguments ([`Options::command_line`]).

use crate::net::{Cut, NetConfig};
use crate::observer::Observer;
use crate::topology::Topology;
use crate::workload::WorkloadConfig;

/// A scheduled action of a scripted scenario (or a fault of a large one).
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// `from` runs `Command::Connect` to `to`'s current URL.
    Connect(u32, u32),
    /// `from` sends a direct message to `to`.
    Send(u32, u32),
    /// `from` broadcasts to its connections.
    Broadcast(u32),
    /// `from` drops its connection to `to`.
    Disconnect(u32, u32),
    /// `from` scores `about`.
    Impression(u32, u32, f64),
    /// Every node scores each of its current connections.
    ImpressPeers(f64),
    /// Partition `id`: cut the given nodes off from the rest.
    Partition { id: u32, nodes: Vec<u32>, cut: Cut },
    /// Partition `id`: cut a random `fraction` of the nodes off from the rest.
    PartitionFraction { id: u32, fraction: f64, cut: Cut },
    /// Heal partition `id`.
    Heal(u32),
    /// The node crashes (keeps only what it persisted) and restarts after `down_us` (0 = never).
    Crash { node: u32, down_us: u64, move_on_restart: bool },
    /// A random `fraction` of nodes crash, each restarting after `down_us`.
    CrashFraction { fraction: f64, down_us: u64, move_on_restart: bool },
    /// The node moves to a new address while running and tells its peers.
    Move(u32),
    /// The node's wall clock is set off by `skew_us` from now on.
    Skew(u32, i64),
    /// The adversary replays the k-th message envelope of the run (0-based) to its target.
    Replay(usize),
    /// From now on, delivery ratios count toward the "after" figure.
    MeasureFrom,
}

/// Deliberate harness bugs, to show that the invariant checkers catch them.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Sabotage {
    /// None.
    None,
    /// A restarting node loses its persisted replay table (a storage bug): replays get in twice.
    LoseReplayOnRestart,
}

/// Everything that determines a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// Scenario name.
    pub scenario: String,
    /// Node count.
    pub nodes: u32,
    /// The one seed.
    pub seed: u64,
    /// Simulated duration, µs.
    pub duration_us: u64,
    /// Formation topology.
    pub topology: Topology,
    /// Formation connects are spread over this window, µs.
    pub formation_us: u64,
    /// Network.
    pub net: NetConfig,
    /// Traffic and agent habits.
    pub workload: WorkloadConfig,
    /// Scheduled actions `(time µs, action)`.
    pub script: Vec<(u64, Action)>,
    /// `max_connections` of ordinary nodes.
    pub max_connections: usize,
    /// `max_connections` of anchors (nodes `0..anchors` in a star).
    pub anchor_max_connections: usize,
    /// Anchor count (for `anchor_max_connections`).
    pub anchors: u32,
    /// Nodes that do *not* auto-accept local requests (their agents accept by hand, if at all).
    pub manual_accept: Vec<u32>,
    /// Nodes `0..isolated` take no part in formation (newcomers of a scenario).
    pub isolated: u32,
    /// Metrics sampling interval, µs.
    pub metrics_interval_us: u64,
    /// Keep the text trace.
    pub capture_trace: bool,
    /// Time the core's handle_* calls by kind (costs two clock reads per input).
    pub timing: bool,
    /// A deliberate bug.
    pub sabotage: Sabotage,
    /// Background discovery on every node (beacons from the core's timer), checked at the end.
    pub discovery: bool,
    /// Minimum delivery ratio after the `MeasureFrom` mark (checked at the end), if any.
    pub min_delivery_after: Option<f64>,
    /// Command-line overrides given, in order (for the reproduction command).
    pub overrides: Vec<(String, String)>,
    /// How every node combines its peers' answers to a trust query (`--policy weighted|plain|unbounded`).
    pub trust_policy: proto_core::TrustPolicy,
    /// The trust study this run is, if any (its nodes beyond `--nodes`, its script, its measures).
    pub study: Option<crate::trust_study::StudyConfig>,
    /// The healing study this run is, if any (its liars; its observer moves nodes and times links).
    pub heal: Option<crate::scenario_churn::HealConfig>,
    /// The NAT study this run is, if any (who is behind NAT, the anchors every node is configured with).
    pub nat: Option<crate::scenario_nat::NatConfig>,
    /// Which signature provider the nodes use (`--signatures real|real-inline|null`; null is measurement only).
    pub signatures: crate::crypto::Signatures,
    /// Every node spawns agents (`--spawn 1`, default limits); a simulated agent ends one think time
    /// after it starts.
    pub spawn: bool,
}

impl Options {
    /// Defaults for a scenario of `nodes` nodes.
    pub fn base(scenario: &str, nodes: u32, seed: u64, duration_us: u64) -> Self {
        Self {
            scenario: scenario.to_owned(),
            nodes,
            seed,
            duration_us,
            topology: Topology::RandomRegular { min: 8, max: 8 },
            formation_us: 30_000_000,
            net: NetConfig::default(),
            workload: WorkloadConfig::default(),
            script: Vec::new(),
            max_connections: proto_core::limits::CONNECTIONS_MAX_DEFAULT,
            anchor_max_connections: proto_core::limits::CONNECTIONS_MAX_CEILING,
            anchors: 0,
            manual_accept: Vec::new(),
            isolated: 0,
            metrics_interval_us: 60_000_000,
            capture_trace: false,
            timing: false,
            sabotage: Sabotage::None,
            min_delivery_after: None,
            discovery: false,
            overrides: Vec::new(),
            trust_policy: proto_core::TrustPolicy::Weighted,
            study: None,
            heal: None,
            nat: None,
            signatures: crate::crypto::Signatures::Real,
            spawn: false,
        }
    }

    /// What the scenario watches the run with beside the engine: a trust study's observer, or none.
    pub fn observer(&self) -> Option<Box<dyn Observer>> {
        if let Some(nat) = &self.nat {
            return Some(Box::new(crate::scenario_nat::Watch::new(self, nat)));
        }
        if self.heal.is_some() {
            return Some(Box::new(crate::scenario_churn::Watch::new(self)));
        }
        self.study.as_ref().map(|c| crate::trust_study::observer(c, self.seed))
    }

    /// The command that reproduces this run.
    pub fn command_line(&self) -> String {
        // A trust study adds newcomers and Sybils to the `--nodes` honest mesh.
        let nodes = self.study.as_ref().map_or(self.nodes, |s| s.honest);
        let mut s = format!(
            "darkmatter-sim run {} --nodes {} --seed {} --duration {}",
            self.scenario,
            nodes,
            self.seed,
            format_duration(self.duration_us)
        );
        for (k, v) in &self.overrides {
            s.push_str(&format!(" --{k} {v}"));
        }
        s
    }

    /// Applies one `--key value` override. Returns an error text for unknown keys or bad values.
    pub fn apply(&mut self, key: &str, value: &str) -> Result<(), String> {
        let f = || value.parse::<f64>().map_err(|_| format!("--{key}: not a number: {value}"));
        let u = || value.parse::<u64>().map_err(|_| format!("--{key}: not an integer: {value}"));
        match key {
            "loss" => self.net.loss = f()?,
            "burst" => self.net.burst_enter = f()?,
            "latency-ms" => {
                let (lo, hi) = value.split_once("..").ok_or("--latency-ms: give MIN..MAX")?;
                self.net.latency_min_us = lo.parse::<u64>().map_err(|e| e.to_string())? * 1000;
                self.net.latency_max_us = hi.parse::<u64>().map_err(|e| e.to_string())? * 1000;
                if self.net.latency_max_us < self.net.latency_min_us {
                    return Err("--latency-ms: MAX < MIN".to_owned());
                }
            }
            "jitter-ms" => self.net.jitter_mean_us = (f()? * 1000.0) as u64,
            "cost-us" => self.net.handling_cost_us = u()?,
            "skew-ms" => self.net.skew_max_us = u()? * 1000,
            "topology" => {
                self.topology = match value {
                    "random" => Topology::RandomRegular { min: 8, max: 8 },
                    "small-world" => Topology::SmallWorld { k: 8, rewire: 0.1 },
                    _ => return Err(format!("--topology: random or small-world, not {value}")),
                }
            }
            "degree" => {
                let (lo, hi) = match value.split_once("..") {
                    Some((a, b)) => {
                        (a.parse::<u32>().map_err(|e| e.to_string())?, b.parse::<u32>().map_err(|e| e.to_string())?)
                    }
                    None => {
                        let d = value.parse::<u32>().map_err(|e| e.to_string())?;
                        (d, d)
                    }
                };
                self.topology = Topology::RandomRegular { min: lo.min(hi), max: lo.max(hi) };
            }
            "max-connections" => self.max_connections = u()? as usize,
            "direct" => self.workload.direct_per_hour = f()?,
            "broadcast" => self.workload.broadcast_per_hour = f()?,
            "health" => self.workload.health_per_hour = f()?,
            "beacon" => self.workload.beacon_per_hour = f()?,
            "churn" => self.workload.churn_per_hour = f()?,
            "adversary" => self.workload.adversary_per_hour = f()?,
            "crash" => self.workload.crash_per_hour = f()?,
            "forward" => self.workload.forward_prob = f()?,
            "reply" => self.workload.reply_prob = f()?,
            "spawn" => {
                self.spawn = match value {
                    "0" => false,
                    "1" => true,
                    _ => return Err(format!("--spawn: 0 or 1, not {value}")),
                }
            }
            "policy" => {
                self.trust_policy = match value {
                    "weighted" => proto_core::TrustPolicy::Weighted,
                    "plain" => proto_core::TrustPolicy::PlainAverage,
                    "unbounded" => proto_core::TrustPolicy::WeightedUnbounded,
                    _ => return Err(format!("--policy: weighted, plain or unbounded, not {value}")),
                }
            }
            _ if self.study.is_some() && crate::trust_study::is_key(key) => {
                crate::trust_study::apply(self, key, value)?
            }
            "signatures" => self.signatures = crate::crypto::Signatures::parse(value)?,
            "sabotage" => {
                self.sabotage = match value {
                    "none" => Sabotage::None,
                    "lose-replay" => Sabotage::LoseReplayOnRestart,
                    _ => return Err(format!("--sabotage: none or lose-replay, not {value}")),
                }
            }
            _ => return Err(format!("unknown option --{key}")),
        }
        if self.net.loss.is_nan() || !(0.0..=1.0).contains(&self.net.loss) {
            return Err("--loss must be within 0..1".to_owned());
        }
        self.overrides.push((key.to_owned(), value.to_owned()));
        Ok(())
    }
}

/// Parses `90s`, `15m`, `1h`, `250ms` or plain seconds into µs.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(p) => t.split_at(p),
        None => (t, "s"),
    };
    let n: f64 = num.parse().map_err(|_| format!("bad duration: {text}"))?;
    let us = match unit {
        "ms" => 1e3,
        "s" => 1e6,
        "m" | "min" => 60e6,
        "h" => 3600e6,
        _ => return Err(format!("bad duration unit in {text} (ms, s, m, h)")),
    };
    if !n.is_finite() || n < 0.0 {
        return Err(format!("bad duration: {text}"));
    }
    Ok((n * us) as u64)
}

/// The shortest exact form of a duration.
#[allow(clippy::manual_is_multiple_of)] // `is_multiple_of` is newer than the workspace's rust-version
pub fn format_duration(us: u64) -> String {
    if us % 3_600_000_000 == 0 && us > 0 {
        format!("{}h", us / 3_600_000_000)
    } else if us % 60_000_000 == 0 && us > 0 {
        format!("{}m", us / 60_000_000)
    } else if us % 1_000_000 == 0 {
        format!("{}s", us / 1_000_000)
    } else {
        format!("{}ms", us / 1000)
    }
}

/// A named scenario.
pub struct Scenario {
    /// Its name.
    pub name: &'static str,
    /// One line about it.
    pub about: &'static str,
    /// Builds its options.
    pub build: fn(nodes: u32, seed: u64, duration_us: u64) -> Options,
    /// Node count when none is given.
    pub default_nodes: u32,
    /// Duration when none is given, µs.
    pub default_duration_us: u64,
}

const S: u64 = 1_000_000;

/// Every scenario.
pub fn catalog() -> Vec<Scenario> {
    vec![
        Scenario { name: "formation", about: "mesh formation over a random regular graph, then ordinary traffic", build: formation, default_nodes: 200, default_duration_us: 600 * S },
        Scenario { name: "partition-heal", about: "a third of the mesh is cut off for a while, then the partition heals", build: partition_heal, default_nodes: 200, default_duration_us: 900 * S },
        Scenario { name: "churn", about: "connection churn, crashes and restarts at new addresses", build: churn, default_nodes: 200, default_duration_us: 900 * S },
        Scenario { name: "broadcast-storm", about: "agents forward every broadcast on: amplification and rate limits", build: broadcast_storm, default_nodes: 200, default_duration_us: 600 * S },
        Scenario { name: "small-world", about: "formation over a Watts-Strogatz small world", build: small_world, default_nodes: 200, default_duration_us: 600 * S },
        Scenario { name: "clustered", about: "dense clusters joined by a few bridges; the bridges' side is partitioned", build: clustered, default_nodes: 200, default_duration_us: 900 * S },
        Scenario { name: "star", about: "everyone hangs on three anchors; one anchor crashes", build: star, default_nodes: 200, default_duration_us: 600 * S },
        Scenario { name: "trust", about: "two newcomers ask everyone; a third of the mesh likes one and dislikes the other, the rest ask their peers", build: trust, default_nodes: 40, default_duration_us: 180 * S + proto_core::limits::TRUST_DECISION_HOLD_S * S },
        Scenario { name: "trust-propagation", about: "newcomers vouched for by one trusted peer ask its neighbours and their neighbours; acceptance over time", build: crate::trust_study::propagation, default_nodes: 1000, default_duration_us: 4 * 3600 * S },
        Scenario { name: "sybil", about: "colluding identities that vouch for each other ask honest nodes to connect, while vouched newcomers ask too", build: crate::trust_study::sybil, default_nodes: 1000, default_duration_us: 1200 * S },
        Scenario { name: "nat", about: "30 % of the nodes can only dial out: reached through two anchors (messages, replies, acceptances, peer updates)", build: crate::scenario_nat::build, default_nodes: 1_000, default_duration_us: 1_800 * S },
        Scenario { name: "churn-heal", about: "10 % of the nodes change address within the hour (half while down), 5 % lie in lookup answers: links to moved peers healed over time", build: crate::scenario_churn::build, default_nodes: 10_000, default_duration_us: 3_900 * S },
        Scenario { name: "lan-discovery", about: "LAN segments of 5 with background discovery: each node finds its segment's peers by beacon, none outside", build: lan_discovery, default_nodes: 40, default_duration_us: 300 * S },
        Scenario { name: "ordinary", about: "the benchmark load: 20-50 connections each, ordinary traffic", build: ordinary, default_nodes: 1000, default_duration_us: 3600 * S },
        Scenario { name: "handshake", about: "3 nodes: auto-accepted and hand-accepted handshakes", build: handshake, default_nodes: 3, default_duration_us: 20 * S },
        Scenario { name: "message", about: "3 nodes: a direct message, a reply, a broadcast", build: message, default_nodes: 3, default_duration_us: 30 * S },
        Scenario { name: "partition-send", about: "4 nodes: a send during a partition times out, after healing it arrives", build: partition_send, default_nodes: 4, default_duration_us: 60 * S },
        Scenario { name: "restart", about: "4 nodes: a receiver crashes before reading and restarts at a new address", build: restart, default_nodes: 4, default_duration_us: 60 * S },
        Scenario { name: "skew", about: "3 nodes: one clock runs 400 s fast, so its signed timestamps are stale to the others", build: skew, default_nodes: 3, default_duration_us: 30 * S },
        Scenario { name: "forgery", about: "5 nodes: the adversary tampers, strips, impersonates, retargets, replays and re-posts downgraded", build: forgery, default_nodes: 5, default_duration_us: 40 * S },
    ]
}

/// The scenario named `name`.
pub fn find(name: &str) -> Option<Scenario> {
    catalog().into_iter().find(|s| s.name == name)
}

fn formation(n: u32, seed: u64, d: u64) -> Options {
    let mut o = Options::base("formation", n, seed, d);
    o.topology = Topology::RandomRegular { min: 8, max: 8 };
    o
}

fn partition_heal(n: u32, seed: u64, d: u64) -> Options {
    let mut o = Options::base("partition-heal", n, seed, d);
    o.topology = Topology::RandomRegular { min: 8, max: 8 };
    o.workload.direct_per_hour = 12.0;
    let (cut, heal) = (d * 3 / 10, d * 6 / 10);
    o.script.push((cut, Action::PartitionFraction { id: 1, fraction: 1.0 / 3.0, cut: Cut::Both }));
    o.script.push((heal, Action::Heal(1)));
    o.script.push((heal + 30 * S, Action::MeasureFrom));
    o.min_delivery_after = Some(0.95);
    o
}

fn churn(n: u32, seed: u64, d: u64) -> Options {
    let mut o = Options::base("churn", n, seed, d);
    o.topology = Topology::RandomRegular { min: 8, max: 8 };
    o.workload.churn_per_hour = 6.0;
    o.workload.crash_per_hour = 0.5;
    o.workload.down_us = 60 * S;
    o.workload.move_on_restart = 0.5;
    o.workload.adversary_per_hour = 1.0;
    o
}

fn broadcast_storm(n: u32, seed: u64, d: u64) -> Options {
    let mut o = Options::base("broadcast-storm", n, seed, d);
    o.topology = Topology::RandomRegular { min: 8, max: 8 };
    o.workload.broadcast_per_hour = 6.0;
    o.workload.broadcast_hops = 3;
    o.workload.forward_prob = 1.0;
    o.workload.forward_fanout = 8;
    o.workload.reply_prob = 0.0;
    o
}

fn small_world(n: u32, seed: u64, d: u64) -> Options {
    let mut o = Options::base("small-world", n, seed, d);
    o.topology = Topology::SmallWorld { k: 8, rewire: 0.1 };
    o
}

fn clustered(n: u32, seed: u64, d: u64) -> Options {
    let mut o = Options::base("clustered", n, seed, d);
    o.topology = Topology::Clustered { size: 20, degree: 6, bridges: 3 };
    o.script.push((d / 3, Action::PartitionFraction { id: 1, fraction: 0.5, cut: Cut::OutOfSide }));
    o.script.push((d * 2 / 3, Action::Heal(1)));
    o.script.push((d * 2 / 3 + 30 * S, Action::MeasureFrom));
    o
}

fn star(n: u32, seed: u64, d: u64) -> Options {
    let mut o = Options::base("star", n, seed, d);
    o.topology = Topology::Star { anchors: 3, links: 2 };
    o.anchors = 3;
    o.workload.broadcast_per_hour = 0.2;
    o.script.push((d / 2, Action::Crash { node: 0, down_us: 60 * S, move_on_restart: false }));
    o
}

fn trust(n: u32, seed: u64, d: u64) -> Options {
    let n = n.max(8);
    let mut o = Options::base("trust", n, seed, d);
    o.topology = Topology::RandomRegular { min: 6, max: 6 };
    o.isolated = 2;
    // After formation nobody accepts by hand: the acceptance policy decides from peers' opinions.
    o.manual_accept = (2..n).collect();
    o.workload.accept_pending_until_us = 35 * S;
    o.workload.direct_per_hour = 2.0;
    o.workload.broadcast_per_hour = 0.0;
    o.workload.impression_per_hour = 0.0;
    o.workload.start_us = 60 * S;
    o.script.push((40 * S, Action::ImpressPeers(0.6)));
    // A third of the mesh knows the newcomers: node 0 well, node 1 badly. The rest have no opinion.
    for i in (2..n).filter(|i| i % 3 == 0) {
        o.script.push((45 * S, Action::Impression(i, 0, 0.9)));
        o.script.push((45 * S, Action::Impression(i, 1, -0.9)));
    }
    for i in 2..n {
        o.script.push((60 * S + i as u64 * 100_000, Action::Connect(0, i)));
        o.script.push((61 * S + i as u64 * 100_000, Action::Connect(1, i)));
    }
    o
}

/// The benchmark load.
pub fn ordinary(n: u32, seed: u64, d: u64) -> Options {
    let mut o = Options::base("ordinary", n, seed, d);
    o.topology = Topology::RandomRegular { min: 20, max: 50 };
    o.formation_us = 120 * S;
    o.workload.start_us = 150 * S;
    o
}

/// Nodes in LAN segments of [`LAN_DISCOVERY_SEGMENT`], no connections and no traffic: only the core's
/// beacons, each copy lost with the network's loss rate. The run fails unless, at the end, every node
/// lists exactly its segment's peers.
pub fn lan_discovery(n: u32, seed: u64, d: u64) -> Options {
    let mut o = scripted("lan-discovery", n, seed, d);
    o.net.lan_size = LAN_DISCOVERY_SEGMENT;
    o.discovery = true;
    o.capture_trace = false;
    o
}

/// Nodes per LAN segment in `lan-discovery`.
pub const LAN_DISCOVERY_SEGMENT: u32 = 5;

fn scripted(name: &str, n: u32, seed: u64, d: u64) -> Options {
    let mut o = Options::base(name, n, seed, d);
    o.topology = Topology::None;
    o.capture_trace = true;
    o.workload = WorkloadConfig {
        direct_per_hour: 0.0,
        broadcast_per_hour: 0.0,
        health_per_hour: 0.0,
        beacon_per_hour: 0.0,
        impression_per_hour: 0.0,
        adversary_per_hour: 0.0,
        reply_prob: 0.0,
        think_min_us: 500_000,
        think_max_us: 500_000,
        ..WorkloadConfig::default()
    };
    o.metrics_interval_us = 10 * S;
    o
}

fn handshake(n: u32, seed: u64, d: u64) -> Options {
    let mut o = scripted("handshake", n.max(3), seed, d);
    o.manual_accept = vec![2];
    o.script = vec![(S, Action::Connect(0, 1)), (2 * S, Action::Connect(0, 2)), (5 * S, Action::Connect(1, 2))];
    o
}

fn message(n: u32, seed: u64, d: u64) -> Options {
    let mut o = scripted("message", n.max(3), seed, d);
    o.workload.reply_prob = 1.0;
    o.script = vec![
        (S, Action::Connect(0, 1)),
        (S, Action::Connect(0, 2)),
        (5 * S, Action::Send(0, 1)),
        (15 * S, Action::Broadcast(0)),
    ];
    o
}

fn partition_send(n: u32, seed: u64, d: u64) -> Options {
    let mut o = scripted("partition-send", n.max(4), seed, d);
    o.script = vec![
        (S, Action::Connect(0, 1)),
        (S, Action::Connect(2, 3)),
        (4 * S, Action::Partition { id: 1, nodes: vec![1], cut: Cut::Both }),
        (5 * S, Action::Send(0, 1)),
        (7 * S, Action::Send(2, 3)),
        // While that request is in flight, n03 loses its way out: it gets the message, n02 never
        // hears back.
        (7_020_000, Action::Partition { id: 2, nodes: vec![3], cut: Cut::OutOfSide }),
        (20 * S, Action::Heal(1)),
        (20 * S, Action::Heal(2)),
        (25 * S, Action::Send(0, 1)),
        (25 * S, Action::Send(2, 3)),
    ];
    o
}

fn restart(n: u32, seed: u64, d: u64) -> Options {
    let mut o = scripted("restart", n.max(4), seed, d);
    o.workload.think_min_us = 8_000_000;
    o.workload.think_max_us = 8_000_000;
    o.script = vec![
        (S, Action::Connect(0, 1)),
        (S, Action::Connect(2, 1)),
        (S, Action::Connect(3, 1)),
        (5 * S, Action::Send(0, 1)),
        (6 * S, Action::Crash { node: 1, down_us: 10 * S, move_on_restart: true }),
        // Unread and restored: refused.
        (16_500_000, Action::Replay(0)),
        (20 * S, Action::Send(2, 1)),
        // Read at 24 s; still inside the freshness window, so only the restored replay cache stops it.
        (27 * S, Action::Replay(0)),
        (30 * S, Action::Send(1, 3)),
    ];
    o
}

fn skew(n: u32, seed: u64, d: u64) -> Options {
    let mut o = scripted("skew", n.max(3), seed, d);
    o.script = vec![
        (S, Action::Connect(0, 1)),
        (S, Action::Connect(0, 2)),
        (3 * S, Action::Skew(2, 400_000_000)),
        // Both directions fail the 300 s freshness window.
        (5 * S, Action::Send(0, 2)),
        (7 * S, Action::Send(2, 0)),
        (10 * S, Action::Skew(2, 1_000_000)),
        (12 * S, Action::Send(0, 2)),
        (14 * S, Action::Send(2, 0)),
    ];
    o
}

fn forgery(n: u32, seed: u64, d: u64) -> Options {
    let mut o = scripted("forgery", n.max(5), seed, d);
    o.workload.adversary_per_hour = 3600.0 / 3.0;
    o.workload.adversary_in_turn = true;
    o.workload.start_us = 5 * S;
    o.script = vec![(S, Action::Connect(0, 1)), (S, Action::Connect(0, 2)), (S, Action::Connect(3, 4))];
    // The adversary intercepts every other message (its pool of four never fills: each forgery
    // spends one) and keeps copies of the ones it lets through, to replay them to their target
    // (duplicates) or re-post them to a third node without our recipient-bound signature.
    for k in 0..16u64 {
        let (a, b) = [(0, 1), (0, 2), (3, 4), (1, 0)][k as usize % 4];
        o.script.push((4 * S + k * 2 * S, Action::Send(a, b)));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(parse_duration("1h").unwrap(), 3_600_000_000);
        assert_eq!(parse_duration("90s").unwrap(), 90_000_000);
        assert_eq!(parse_duration("15m").unwrap(), 900_000_000);
        assert_eq!(parse_duration("250ms").unwrap(), 250_000);
        assert_eq!(parse_duration("30").unwrap(), 30_000_000);
        assert!(parse_duration("3x").is_err());
        assert_eq!(format_duration(3_600_000_000), "1h");
        assert_eq!(format_duration(90_000_000), "90s");
        assert_eq!(format_duration(250_000), "250ms");
    }

    #[test]
    fn overrides_show_up_in_the_reproduction_command() {
        let o = find("churn").unwrap();
        let mut opts = (o.build)(50, 7, 600_000_000);
        opts.apply("loss", "0.01").unwrap();
        assert!(opts.apply("nope", "1").is_err());
        assert_eq!(opts.command_line(), "darkmatter-sim run churn --nodes 50 --seed 7 --duration 10m --loss 0.01");
    }
}
