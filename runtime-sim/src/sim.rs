//! The engine: nodes, the event loop, the network path of every request, and the drain loop.
//!
//! One queue event is one input to one node (or one network/agent/fault step). Every node input
//! is followed by a full drain of `poll_output`, carrying outputs out in order: persists go to the
//! node's simulated disk at once (so a reply that follows a persist is durable before it leaves),
//! transmits enter the network, replies go back, events and completions reach the agent.

use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use core::net::IpAddr;

use proto_core::{
    Command, CommandId, Config, Event, HttpResponse, Method, Node, Now, OutboundId, Output, Passport, Table,
};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

use proto_core::crypto::SignatureProvider;
use proto_core::store::{self, InboxMessage};

use crate::crypto::Counting;
use crate::event_queue::EventQueue;
use crate::invariants::{table_index, Invariants, Violation, TABLES};
use crate::metrics::{Counters, Metrics, Row};
use crate::net::{ip_of, url_of, Network};
use crate::observer::Observer;
use crate::rng::{derive, id_key, purpose, FxMap, SimEntropy};
use crate::scenario::Options;
use crate::topology::{self, below};
use crate::trace::{Kind, Trace, EXTERNAL, NONE};
use crate::workload::{Forgery, Gen};

/// Every node's wall clock starts here (2026-01-01T00:00:00Z), plus its skew.
pub const EPOCH_US: i64 = 1_767_225_600_000_000;
/// The mesh path prefix.
pub const PREFIX: &str = "/__darkmatter__";
/// Deliveries of messages sent in the last this-many µs of a run are not counted (still in flight).
pub const TAIL_US: u64 = 15_000_000;

/// Who made a request.
pub(crate) enum Origin {
    /// A node's transmit.
    Node { idx: u32, inc: u32, oid: OutboundId },
    /// The health monitor beside node `idx`.
    Health { idx: u32, sent_us: u64 },
    /// The adversary.
    Adversary { variant: Forgery },
}

/// A request on its way.
pub(crate) struct Req {
    pub to: u32,
    pub gen: u32,
    pub inc: u32,
    pub from: Origin,
    pub method: Method,
    pub path: String,
    pub body: Vec<u8>,
    pub source: IpAddr,
    pub deadline: u64,
    pub reply_wanted: bool,
}

/// What an agent does next.
pub(crate) enum Act {
    Connect(u32),
    Accept(String),
    Read(String),
    Consume(String),
    Forward(String, Vec<String>),
    Reply(u32, String),
    /// A spawned agent ends (the simulator's stand-in child does nothing but end).
    SpawnExit(proto_core::spawn::SpawnId),
}

/// What a command was for (so its completion reaches the right habit).
pub(crate) enum CmdKind {
    Connect,
    Accept,
    Send,
    Read,
    Consume,
    Forward(String),
    Disconnect,
    Impression,
    Probe(Vec<String>),
    SetUrl,
}

/// A queue event (`Wake`: the observer's wake-up, with its token).
pub(crate) enum Ev {
    Arrive(Box<Req>),
    Handle(Box<Req>),
    Response { to: u32, inc: u32, oid: OutboundId, peer: u64, path: String, result: Result<HttpResponse, String> },
    Timer { node: u32, inc: u32, at: u64 },
    Datagram { to: u32, from: u32, payload: Rc<[u8]> },
    Gen(Gen),
    Agent { node: u32, inc: u32, act: Act },
    Script(usize),
    Restart(u32),
    Sample,
    Wake(u64),
}

/// One simulated machine: the core node (absent while crashed), its disk, its address.
pub struct SimNode {
    pub(crate) seed32: [u8; 32],
    pub(crate) agent: String,
    pub(crate) node: Option<Node>,
    pub(crate) inc: u32,
    pub(crate) gen: u32,
    pub(crate) url: String,
    pub(crate) ip: IpAddr,
    pub(crate) skew_us: i64,
    /// The node's disk: what it persisted. Hashed for cheap writes; sorted when read back.
    pub(crate) store: FxMap<(Table, String), Vec<u8>>,
    pub(crate) counts: [u32; TABLES],
    pub(crate) busy_until: u64,
    pub(crate) timer_at: Option<u64>,
    pub(crate) peers: Vec<u32>,
    pub(crate) unconsumed: std::collections::BTreeSet<String>,
    pub(crate) expected_inbox: Vec<String>,
    pub(crate) move_on_restart: bool,
    pub(crate) max_connections: usize,
    pub(crate) auto_accept: bool,
}

/// What one drain needs to know about the input that caused it.
#[derive(Default)]
pub(crate) struct Ctx {
    pub expect_reply: bool,
    pub reply: Option<proto_core::Reply>,
    pub received: Vec<String>,
    pub forged: Option<Forgery>,
    /// The forged envelope entered the inbox shown unverified.
    pub forged_unverified: bool,
    pub sending: bool,
    pub forwarding: bool,
}

/// A captured envelope the adversary may bend.
pub(crate) struct Captured {
    pub sender: u32,
    pub target: u32,
    pub body: Vec<u8>,
}

/// Wall time spent inside the core, by kind of input.
#[derive(Clone, Debug, Default)]
pub struct Timing {
    /// `(label, calls, time)`.
    pub buckets: Vec<(&'static str, u64, Duration)>,
}

impl Timing {
    fn new() -> Self {
        let labels = [
            "request /message",
            "request /connection_*",
            "request /webhook",
            "request /peer_update",
            "request /status and other",
            "response",
            "command send/forward",
            "command connect/accept",
            "command other",
            "datagram",
            "timeout",
            "beacon",
            "restore",
        ];
        Self { buckets: labels.iter().map(|l| (*l, 0, Duration::ZERO)).collect() }
    }
    pub(crate) fn add(&mut self, i: usize, d: Duration) {
        self.buckets[i].1 += 1;
        self.buckets[i].2 += d;
    }
    /// Total time in the core.
    pub fn total(&self) -> Duration {
        self.buckets.iter().map(|b| b.2).sum()
    }
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct Report {
    /// Events processed.
    pub events: u64,
    /// Simulated time reached, µs.
    pub sim_us: u64,
    /// Wall time of the event loop.
    pub wall: Duration,
    /// Wall time to build the nodes.
    pub setup: Duration,
    /// Trace hash.
    pub trace_hash: String,
    /// Counters at the end.
    pub counters: Counters,
    /// Delivery ratio over the run (messages sent before the last 15 s).
    pub delivery_ratio: Option<f64>,
    /// Delivery ratio after the `MeasureFrom` mark.
    pub delivery_after: Option<f64>,
    /// Invariant checks performed.
    pub checks: u64,
    /// Nodes up at the end, and connections.
    pub nodes_up: u32,
    /// See `nodes_up`.
    pub connections: u64,
    /// Most events waiting at once.
    pub queue_peak: usize,
    /// Largest persisted replay table of any node (the core never deletes these rows).
    pub replay_rows_max: u32,
    /// Timing inside the core, if asked.
    pub timing: Option<Timing>,
    /// Agent-id parses (point decompressions) of peers' ids the nodes performed.
    pub key_parses: u64,
    /// After address moves: (connections whose stored URL is not the peer's current one, all
    /// connections), read from what the nodes persisted.
    pub stale_links: Option<(u64, u64)>,
    /// Signatures the nodes made, counted by the provider.
    pub signs: u64,
    /// Signatures the nodes checked, counted by the provider.
    pub verifies: u64,
    /// Of those, checked on the simulator's own thread (all unless checked ahead).
    pub verifies_on_loop: u64,
    /// Checks ahead: found ready, waited for, found behind, missed (`None` when not checking ahead).
    pub ahead: Option<[u64; 4]>,
}

/// The simulator.
pub struct Sim {
    pub(crate) opts: Options,
    pub(crate) now: u64,
    pub(crate) queue: EventQueue<Ev>,
    pub(crate) nodes: Vec<SimNode>,
    pub(crate) by_url: FxMap<String, u32>,
    pub(crate) by_agent: FxMap<String, u32>,
    pub(crate) net: Network,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) trace: Trace,
    pub(crate) inv: Invariants,
    pub(crate) metrics: Metrics,
    pub(crate) counters: Counters,
    pub(crate) cmds: FxMap<u64, (u32, CmdKind)>,
    pub(crate) sent_at: FxMap<u64, (u32, u64)>,
    pub(crate) captured: VecDeque<Captured>,
    /// Copies of envelopes the adversary let through (for replays and downgrades).
    pub(crate) observed: VecDeque<Captured>,
    /// The adversary intercepts every other honest envelope (while its pool has room).
    pub(crate) intercept_next: bool,
    /// Envelopes the adversary has bent so far.
    pub(crate) forgeries_made: u64,
    pub(crate) envelopes: Vec<Captured>,
    pub(crate) keep_envelopes: bool,
    pub(crate) next_cmd: u64,
    pub(crate) next_inbound: u64,
    pub(crate) events: u64,
    pub(crate) violation: Option<Violation>,
    pub(crate) timing: Option<Timing>,
    pub(crate) scratch: Vec<Output>,
    pub(crate) setup: Duration,
    pub(crate) replay_rows_max: u32,
    /// Agent-id parses done by node instances that crashed (their counters went with them).
    pub(crate) key_parses_gone: u64,
    /// What watches the run beside the engine (a study), if anything.
    pub(crate) observer: Option<Box<dyn Observer>>,
    /// The provider every node signs and verifies through (one for all, counting for the report).
    pub(crate) signatures: Arc<Counting>,
    /// The healing study's lying lookup answerers, if it runs.
    pub(crate) liars: Option<crate::scenario_churn::Liars>,
}

impl Sim {
    /// Builds the mesh (every node fresh, at time 0) and schedules formation, script and workload,
    /// with the observer the scenario attaches ([`Options::observer`]), if any.
    pub fn new(opts: Options) -> Self {
        let observer = opts.observer();
        Self::with_observer(opts, observer)
    }

    /// [`Sim::new`] with the given observer instead of the scenario's.
    pub fn with_observer(opts: Options, observer: Option<Box<dyn Observer>>) -> Self {
        let started = Instant::now();
        let n = opts.nodes;
        let seed = opts.seed;
        let mut sim = Sim {
            now: 0,
            queue: EventQueue::default(),
            nodes: Vec::with_capacity(n as usize),
            by_url: FxMap::default(),
            by_agent: FxMap::default(),
            net: Network::new(opts.net.clone(), seed),
            rng: ChaCha8Rng::seed_from_u64(derive(seed, purpose::WORKLOAD, 0, 0)),
            trace: Trace::new(n, opts.capture_trace),
            inv: Invariants::default(),
            metrics: Metrics::new(opts.metrics_interval_us),
            counters: Counters::default(),
            cmds: FxMap::default(),
            sent_at: FxMap::default(),
            captured: VecDeque::new(),
            observed: VecDeque::new(),
            intercept_next: true,
            forgeries_made: 0,
            envelopes: Vec::new(),
            keep_envelopes: opts.script.iter().any(|(_, a)| matches!(a, crate::scenario::Action::Replay(_))),
            next_cmd: 1,
            next_inbound: 1,
            events: 0,
            violation: None,
            timing: opts.timing.then(Timing::new),
            scratch: Vec::new(),
            setup: Duration::ZERO,
            replay_rows_max: 0,
            key_parses_gone: 0,
            observer,
            signatures: Arc::new(Counting::for_run(opts.signatures)),
            liars: opts.heal.as_ref().map(|h| crate::scenario_churn::Liars::new(h, n)),
            opts,
        };
        for i in 0..n {
            let seed32 = seed32(seed, i);
            let passport = Passport::from_seed(seed32);
            let agent = passport.agent_id().as_str().to_owned();
            let url = url_of(i, 0);
            let skew_range = sim.opts.net.skew_max_us as i64;
            let skew_us = if skew_range == 0 {
                0
            } else {
                (derive(seed, purpose::SKEW, i as u64, 0) % (2 * skew_range as u64 + 1)) as i64 - skew_range
            };
            let max_connections =
                if i < sim.opts.anchors { sim.opts.anchor_max_connections } else { sim.opts.max_connections };
            sim.by_url.insert(url.clone(), i);
            sim.by_agent.insert(agent.clone(), i);
            sim.nodes.push(SimNode {
                seed32,
                agent,
                node: None,
                inc: 0,
                gen: 0,
                url,
                ip: ip_of(i, 0),
                skew_us,
                store: FxMap::default(),
                counts: [0; TABLES],
                busy_until: 0,
                timer_at: None,
                peers: Vec::new(),
                unconsumed: Default::default(),
                expected_inbox: Vec::new(),
                move_on_restart: false,
                max_connections,
                auto_accept: !sim.opts.manual_accept.contains(&i),
            });
            let mut node = Node::with_provider(
                passport,
                sim.config(i),
                derive(seed, purpose::NODE, i as u64, 0),
                sim.node_now(i),
                sim.provider(),
            );
            node.set_entropy(Arc::new(SimEntropy::new(derive(seed, purpose::ENTROPY, i as u64, 0))));
            sim.nodes[i as usize].node = Some(node);
            sim.give_entropy(i);
            sim.drain(i, &mut Ctx::default());
        }
        // Formation: each edge's connect at a random time in the formation window.
        let mut trng = ChaCha8Rng::seed_from_u64(derive(seed, purpose::TOPOLOGY, 0, 0));
        let iso = sim.opts.isolated.min(n);
        let edges = topology::build(&sim.opts.topology, n - iso, &mut trng);
        let window = sim.opts.formation_us.max(1);
        for (a, b) in edges {
            let t = below(&mut trng, window);
            sim.queue.push(t, Ev::Agent { node: a + iso, inc: 0, act: Act::Connect(b + iso) });
        }
        for i in 0..sim.opts.script.len() {
            let t = sim.opts.script[i].0;
            sim.queue.push(t, Ev::Script(i));
        }
        sim.notify(|o, sim, hooks| o.start(sim, hooks));
        for g in Gen::ALL {
            if g.rate(&sim.opts.workload) > 0.0 {
                let start = sim.opts.workload.start_us;
                sim.schedule_gen(g, start);
            }
        }
        sim.queue.push(0, Ev::Sample);
        sim.metrics.tail_from_us = sim.opts.duration_us.saturating_sub(TAIL_US);
        sim.setup = started.elapsed();
        sim
    }

    /// The options of this run.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// The trace so far.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// The metrics so far.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Simulated time now, µs.
    pub fn now_us(&self) -> u64 {
        self.now
    }

    /// Node `i`'s connections as its agent last heard of them (sorted).
    pub fn peers(&self, i: u32) -> &[u32] {
        &self.nodes[i as usize].peers
    }

    /// Node `i`'s current URL.
    pub fn url(&self, i: u32) -> &str {
        &self.nodes[i as usize].url
    }

    /// The healing study's lying answerers (and the lookup questions counted), if it runs.
    pub fn liars(&self) -> Option<&crate::scenario_churn::Liars> {
        self.liars.as_ref()
    }

    /// Node `i`'s agent id.
    pub fn agent(&self, i: u32) -> &str {
        &self.nodes[i as usize].agent
    }

    /// The node whose agent id is `agent_id`.
    pub fn index_of(&self, agent_id: &str) -> Option<u32> {
        self.by_agent.get(agent_id).copied()
    }

    /// Node `i`'s protocol core, unless it is down.
    pub fn core(&self, i: u32) -> Option<&Node> {
        self.nodes[i as usize].node.as_ref()
    }

    /// The records node `i` has persisted in `table`, `(key, encoded value)`, in storage order.
    pub fn persisted(&self, i: u32, table: Table) -> impl Iterator<Item = (&str, &[u8])> {
        self.nodes[i as usize]
            .store
            .iter()
            .filter(move |((t, _), _)| *t == table)
            .map(|((_, k), v)| (k.as_str(), &v[..]))
    }

    /// How many records node `i` has persisted in `table`.
    pub fn persisted_count(&self, i: u32, table: Table) -> u32 {
        self.nodes[i as usize].counts[table_index(table)]
    }

    /// The observer, if it is a `T`.
    pub fn observer<T: Observer + 'static>(&self) -> Option<&T> {
        self.observer.as_ref()?.as_any().downcast_ref()
    }

    /// With anchors, node `i` gets the study's deterministic stand-in for OS randomness (a seeded run
    /// must replay byte for byte; real nodes take theirs from the OS).
    pub(crate) fn give_entropy(&mut self, i: u32) {
        if self.opts.nat.is_none() {
            return;
        }
        let inc = self.nodes[i as usize].inc;
        let entropy = crate::scenario_nat::SimEntropy::new(derive(self.opts.seed, 0x6e61_7401, i as u64, inc as u64));
        if let Some(node) = self.nodes[i as usize].node.as_mut() {
            node.set_entropy(Arc::new(entropy));
        }
    }

    pub(crate) fn config(&self, i: u32) -> Config {
        let n = &self.nodes[i as usize];
        Config {
            display_name: format!("node-{i}"),
            bio: "A simulated DarkMatter agent.".to_owned(),
            public_url: n.url.clone(),
            max_connections: n.max_connections,
            auto_accept_local: n.auto_accept,
            trust_policy: self.opts.trust_policy,
            discovery: self.opts.discovery,
            // A simulated LAN has no localhost neighbours: discovery is by beacon only.
            scan_ports: Vec::new(),
            spawn: self.opts.spawn.then(proto_core::spawn::SpawnConfig::default),
            anchors: self.opts.nat.as_ref().map(|c| c.anchors.clone()).unwrap_or_default(),
            ..Config::default()
        }
    }

    /// With background discovery, every live node lists exactly the live peers of its LAN segment
    /// (each heard within the last [`proto_core::discovery::DISCOVERED_TTL_S`]) and no one outside it.
    fn check_lan_discovery(&mut self, end: u64) -> Result<(), Violation> {
        for i in 0..self.opts.nodes {
            self.inv.checks += 1;
            let (missing, foreign) = self.lan_discovery_gaps(i);
            if missing + foreign > 0 {
                let detail = format!("node {i} misses {missing} segment peer(s), lists {foreign} from outside");
                return Err(Violation { at_us: end, node: i, rule: "lan-discovery", detail });
            }
        }
        Ok(())
    }

    /// For node `i`: live segment peers it does not list, and listed peers outside its segment.
    pub fn lan_discovery_gaps(&self, i: u32) -> (usize, usize) {
        let Some(node) = self.nodes[i as usize].node.as_ref() else { return (0, 0) };
        let lan = self.opts.net.lan_size.max(1);
        let segment = |j: u32| j / lan == i / lan;
        let id_of = |j: u32| self.nodes[j as usize].node.as_ref().map(|n| n.passport().agent_id().as_str().to_owned());
        let listed: std::collections::BTreeSet<String> =
            node.inspect().discovered().into_iter().map(|d| d.agent_id).collect();
        let peers: std::collections::BTreeSet<String> =
            (0..self.opts.nodes).filter(|&j| j != i && segment(j)).filter_map(id_of).collect();
        (peers.difference(&listed).count(), listed.difference(&peers).count())
    }

    /// Node `i`'s clocks now.
    pub(crate) fn node_now(&self, i: u32) -> Now {
        Now::new(self.now / 1000, EPOCH_US + self.now as i64 + self.nodes[i as usize].skew_us)
    }

    /// Runs to the end of the duration (or the first violation). `progress(sim_us, events)` is called
    /// every 65,536 events.
    pub fn run(&mut self, progress: &mut dyn FnMut(u64, u64)) -> Result<Report, Violation> {
        let started = Instant::now();
        let end = self.opts.duration_us;
        while let Some(t) = self.queue.peek_time() {
            if t > end {
                break;
            }
            let (t, ev) = self.queue.pop().expect("peeked");
            self.now = t;
            self.events += 1;
            self.dispatch(ev);
            if let Some(v) = self.violation.take() {
                return Err(v);
            }
            if self.events & 0xffff == 0 {
                progress(t, self.events);
            }
        }
        self.now = end;
        self.sample_row();
        let wall = started.elapsed();
        let (nodes_up, connections) = self.census();
        let delivery_ratio = self.metrics.ratio_until(end.saturating_sub(TAIL_US));
        let delivery_after = self.metrics.ratio_after();
        if self.opts.discovery {
            self.check_lan_discovery(end)?;
        }
        if let (Some(min), Some(got)) = (self.opts.min_delivery_after, delivery_after) {
            self.inv.checks += 1;
            if got < min {
                return Err(Violation {
                    at_us: end,
                    node: 0,
                    rule: "delivery-after-heal",
                    detail: format!("delivery ratio after healing {got:.4} < {min}"),
                });
            }
        }
        Ok(Report {
            events: self.events,
            sim_us: end,
            wall,
            setup: self.setup,
            trace_hash: self.trace.hash_hex(),
            counters: self.counters.clone(),
            delivery_ratio,
            delivery_after,
            checks: self.inv.checks,
            nodes_up,
            connections,
            queue_peak: self.queue.peak(),
            replay_rows_max: self.replay_rows_max,
            timing: self.timing.clone(),
            key_parses: self.key_parses_gone
                + self.nodes.iter().filter_map(|n| n.node.as_ref()).map(|n| n.inspect().key_parses()).sum::<u64>(),
            stale_links: (self.counters.moves > 0).then(|| self.stale_links()),
            signs: self.signatures.signs(),
            verifies: self.signatures.verifies(),
            verifies_on_loop: self.signatures.verifies_on_loop(),
            ahead: self.signatures.ahead_stats(),
        })
    }

    /// The signature provider a node is built with.
    pub(crate) fn provider(&self) -> Arc<dyn SignatureProvider> {
        self.signatures.clone()
    }

    /// Connections (as persisted) that point at an address their peer no longer has.
    fn stale_links(&self) -> (u64, u64) {
        let (mut stale, mut all) = (0, 0);
        for n in &self.nodes {
            for ((t, k), v) in &n.store {
                if *t != Table::Connections {
                    continue;
                }
                let (Some(&p), Ok(c)) =
                    (self.by_agent.get(k), proto_core::store::decode::<proto_core::store::Connection>(v))
                else {
                    continue;
                };
                all += 1;
                if c.url != self.nodes[p as usize].url {
                    stale += 1;
                }
            }
        }
        (stale, all)
    }

    fn dispatch(&mut self, ev: Ev) {
        match ev {
            Ev::Arrive(req) => self.on_arrive(req),
            Ev::Handle(req) => self.on_handle(req),
            Ev::Response { to, inc, oid, peer, path, result } => self.on_response(to, inc, oid, peer, path, result),
            Ev::Timer { node, inc, at } => self.on_timer(node, inc, at),
            Ev::Datagram { to, from, payload } => self.on_datagram(to, from, &payload),
            Ev::Gen(g) => self.on_gen(g),
            Ev::Agent { node, inc, act } => self.on_agent(node, inc, act),
            Ev::Script(i) => self.on_script(i),
            Ev::Restart(i) => self.restart(i),
            Ev::Wake(token) => self.notify(|o, sim, hooks| o.on_wake(sim, token, hooks)),
            Ev::Sample => {
                self.sample_row();
                let next = self.now + self.metrics.interval_us;
                if next < self.opts.duration_us {
                    self.queue.push(next, Ev::Sample);
                }
            }
        }
    }

    pub(crate) fn fail(&mut self, node: u32, rule: &'static str, detail: String) {
        if self.violation.is_none() {
            self.violation = Some(Violation { at_us: self.now, node, rule, detail });
        }
    }

    pub(crate) fn census(&self) -> (u32, u64) {
        let up = self.nodes.iter().filter(|n| n.node.is_some()).count() as u32;
        let degree: u64 = self.nodes.iter().map(|n| n.peers.len() as u64).sum();
        (up, degree / 2)
    }

    fn sample_row(&mut self) {
        let (nodes_up, connections) = self.census();
        let row = Row {
            t_s: self.now as f64 / 1e6,
            events: self.events,
            nodes_up,
            connections,
            c: self.counters.clone(),
            partitions: self.net.partitions_active(),
            queue: self.queue.len(),
        };
        self.metrics.rows.push(row);
    }

    // ----- the drain loop -----

    pub(crate) fn drain(&mut self, i: u32, ctx: &mut Ctx) {
        let (outs, timeout) = self.collect(i);
        self.process(i, outs, timeout, ctx);
    }

    /// Whether node `i`'s persisted inbox record of `message_id` shows it unverified: what its agent
    /// is told, read from what the node committed (the event follows the commit).
    fn inbox_unverified(&self, i: u32, message_id: &str) -> bool {
        let record = self.nodes[i as usize].store.get(&(Table::Inbox, message_id.to_owned()));
        record.and_then(|r| store::decode::<InboxMessage>(r).ok()).is_some_and(|m| !m.verified)
    }

    /// Polls node `i` until it asks for a timeout.
    pub(crate) fn collect(&mut self, i: u32) -> (Vec<Output>, Option<Option<u64>>) {
        let mut outs = std::mem::take(&mut self.scratch);
        let Some(node) = self.nodes[i as usize].node.as_mut() else { return (outs, None) };
        loop {
            match node.poll_output() {
                Output::Timeout(t) => return (outs, Some(t)),
                out => outs.push(out),
            }
        }
    }

    /// Carries out collected outputs in order, then arms the node's timer.
    pub(crate) fn process(&mut self, i: u32, mut outs: Vec<Output>, timeout: Option<Option<u64>>, ctx: &mut Ctx) {
        for out in outs.drain(..) {
            match out {
                Output::Persist(changes) => self.persist(i, changes),
                Output::Reply(r) => {
                    self.counters.wire_bytes_out += r.body.len() as u64;
                    if !ctx.expect_reply || ctx.reply.is_some() {
                        self.fail(i, "one-reply", format!("unexpected reply {:?} status {}", r.id, r.status));
                    }
                    self.check_acks(i, &r, ctx);
                    ctx.reply = Some(r);
                }
                Output::Transmit(t) => {
                    self.counters.wire_bytes_out += t.body.len() as u64;
                    self.transmit(i, t, ctx);
                }
                Output::Event(e) => self.on_event(i, *e, ctx),
                Output::Done { id, result } => self.on_done(i, id, result),
                // Only nodes with background discovery (`Options::discovery`) beacon by themselves.
                Output::Datagram(payload) => self.multicast(i, payload.into()),
                // A spawned agent runs for one think time and exits.
                Output::Spawn(s) => {
                    self.counters.spawns += 1;
                    let at = self.now + self.think();
                    let inc = self.nodes[i as usize].inc;
                    self.queue.push(at, Ev::Agent { node: i, inc, act: Act::SpawnExit(s.spawn_id) });
                }
                // The simulated nodes have no wallet: a claimed payment is never checked, so it
                // starts nothing (the AntiMatter scenario hands its payments in as verified).
                Output::CheckPayment(_) => {}
                // Nor do they own pools.
                Output::Upstream(_) => {}
                Output::Timeout(_) => unreachable!("collect stops at the timeout"),
            }
        }
        self.scratch = outs;
        if let Some(t) = timeout {
            self.arm_timer(i, t);
        }
    }

    /// ack-after-commit: every message that entered the inbox during this request must be persisted
    /// by the time the reply goes out, and the reply must be a 200.
    fn check_acks(&mut self, i: u32, r: &proto_core::Reply, ctx: &mut Ctx) {
        for m in std::mem::take(&mut ctx.received) {
            self.inv.checks += 1;
            let durable = self.nodes[i as usize].store.contains_key(&(Table::Inbox, m.clone()));
            if r.status != 200 || !durable {
                self.fail(
                    i,
                    "ack-after-commit",
                    format!(
                        "message {m} answered {} with its inbox record {}",
                        r.status,
                        if durable { "persisted" } else { "not persisted" }
                    ),
                );
                return;
            }
            self.nodes[i as usize].unconsumed.insert(m);
        }
    }

    fn persist(&mut self, i: u32, changes: Vec<proto_core::Change>) {
        let n = &mut self.nodes[i as usize];
        for c in changes {
            self.counters.persisted_bytes += (c.key.len() + c.value.as_ref().map_or(0, Vec::len)) as u64;
            let t = table_index(c.table);
            match c.value {
                Some(v) => {
                    if n.store.insert((c.table, c.key), v).is_none() {
                        n.counts[t] += 1;
                    }
                }
                None => {
                    if c.table == Table::Inbox {
                        n.unconsumed.remove(&c.key);
                    }
                    if n.store.remove(&(c.table, c.key)).is_some() {
                        n.counts[t] -= 1;
                    }
                }
            }
        }
        self.replay_rows_max = self.replay_rows_max.max(n.counts[table_index(Table::Replay)]);
        let (counts, max) = (n.counts, n.max_connections);
        if let Err((rule, detail)) = self.inv.check_limits(&counts, max) {
            self.fail(i, rule, detail);
        }
    }

    fn on_event(&mut self, i: u32, e: Event, ctx: &mut Ctx) {
        if self.observer.is_some() {
            self.notify(|o, sim, hooks| o.on_event(sim, i, &e, hooks));
        }
        match e {
            Event::Connected { agent_id } => {
                self.counters.connected_events += 1;
                let p = self.by_agent.get(agent_id.as_str()).copied();
                self.trace.rec(self.now, i as u64, Kind::Connected, p.map_or(EXTERNAL, u64::from), 0, "");
                if let Some(p) = p {
                    let peers = &mut self.nodes[i as usize].peers;
                    if let Err(pos) = peers.binary_search(&p) {
                        peers.insert(pos, p);
                    }
                }
            }
            Event::Disconnected { agent_id, by_peer } => {
                let p = self.by_agent.get(agent_id.as_str()).copied();
                self.trace.rec(
                    self.now,
                    i as u64,
                    Kind::Disconnected,
                    p.map_or(EXTERNAL, u64::from),
                    by_peer as u64,
                    "",
                );
                if let Some(p) = p {
                    let peers = &mut self.nodes[i as usize].peers;
                    if let Ok(pos) = peers.binary_search(&p) {
                        peers.remove(pos);
                    }
                }
            }
            Event::ConnectionRequested { request_id, agent_id, .. } => {
                let p = self.by_agent.get(agent_id.as_str()).copied();
                self.trace.rec(self.now, i as u64, Kind::Requested, p.map_or(EXTERNAL, u64::from), 0, &request_id);
                if self.now < self.opts.workload.accept_pending_until_us {
                    let at = self.now + self.think();
                    let inc = self.nodes[i as usize].inc;
                    self.queue.push(at, Ev::Agent { node: i, inc, act: Act::Accept(request_id) });
                }
            }
            Event::MessageReceived { message_id, from_agent_id, .. } => {
                let sender = self.by_agent.get(from_agent_id.as_str()).copied();
                let unverified = self.inbox_unverified(i, &message_id);
                let peer = sender.map_or(EXTERNAL, u64::from);
                self.trace.rec(self.now, i as u64, Kind::Message, peer, u64::from(unverified), &message_id);
                let key = id_key(&message_id);
                if let Some(v) = ctx.forged.filter(|v| v.must_refuse()) {
                    if !(v.may_enter_unverified() && unverified) {
                        let shown = if unverified { "unverified" } else { "verified" };
                        self.fail(
                            i,
                            "authentic",
                            format!("a {} envelope entered the inbox {shown} as {message_id}", v.name()),
                        );
                        return;
                    }
                    ctx.forged_unverified = true;
                }
                if let Err((rule, detail)) = self.inv.on_inbox(i, key, sender, &message_id) {
                    self.fail(i, rule, detail);
                    return;
                }
                if let Some(&(orig, sent)) = self.sent_at.get(&key).filter(|_| ctx.forged.is_none()) {
                    if Some(orig) == sender {
                        self.counters.delivered += 1;
                        self.metrics.deliver(sent);
                    }
                }
                let at = self.now + self.think();
                let inc = self.nodes[i as usize].inc;
                self.queue.push(at, Ev::Agent { node: i, inc, act: Act::Read(message_id.clone()) });
                ctx.received.push(message_id);
            }
            Event::RequestDecided { agent_id, accepted, .. } => {
                if accepted {
                    self.counters.decided_accepted += 1;
                } else {
                    self.counters.decided_rejected += 1;
                }
                let p = self.by_agent.get(agent_id.as_str()).copied();
                self.trace.rec(self.now, i as u64, Kind::Decided, p.map_or(EXTERNAL, u64::from), accepted as u64, "");
            }
            Event::PeerUpdated { agent_id, url } => {
                self.counters.peer_updates += 1;
                let p = self.by_agent.get(agent_id.as_str()).copied();
                self.trace.rec(self.now, i as u64, Kind::PeerUpdated, p.map_or(EXTERNAL, u64::from), 0, &url);
            }
            Event::Refused { path, status, .. } => {
                self.trace.rec(self.now, i as u64, Kind::Refused, NONE, status as u64, short(&path));
            }
            // Counted, not traced: spawning is off in every named scenario (`--spawn 1` turns it on).
            Event::SpawnRefused { .. } => self.counters.spawns_refused += 1,
            Event::SpawnFailed { .. } => {}
            // Counted, not traced (yet): the churn scenario will trace them.
            Event::PeerUrlRecovered { .. } => self.counters.urls_recovered += 1,
            Event::PeerNotFound { .. } => self.counters.peers_not_found += 1,
        }
    }

    /// Issues a command to node `i`. Returns false if the node is down.
    pub(crate) fn command(&mut self, i: u32, kind: CmdKind, cmd: Command, peer: u64, verb: &str) -> bool {
        if self.nodes[i as usize].node.is_none() {
            return false;
        }
        let id = self.next_cmd;
        self.next_cmd += 1;
        self.counters.commands += 1;
        self.trace.rec(self.now, i as u64, Kind::Cmd, peer, 0, verb);
        let mut ctx = Ctx {
            sending: matches!(kind, CmdKind::Send),
            forwarding: matches!(kind, CmdKind::Forward(_)),
            ..Ctx::default()
        };
        let bucket = match kind {
            CmdKind::Send | CmdKind::Forward(_) => 6,
            CmdKind::Connect | CmdKind::Accept => 7,
            _ => 8,
        };
        self.cmds.insert(id, (i, kind));
        let now = self.node_now(i);
        let clock = self.timing.is_some().then(Instant::now);
        self.nodes[i as usize].node.as_mut().expect("checked").handle_command(now, CommandId(id), cmd);
        if let Some(c) = clock {
            self.timing.as_mut().expect("on").add(bucket, c.elapsed());
        }
        self.drain(i, &mut ctx);
        true
    }

    /// A simulated spawned agent of node `i` ended.
    pub(crate) fn spawn_exit(&mut self, i: u32, id: proto_core::spawn::SpawnId) {
        let now = self.node_now(i);
        let outcome = proto_core::spawn::SpawnOutcome::Exited { code: Some(0) };
        self.nodes[i as usize].node.as_mut().expect("checked by on_agent").handle_spawn_exit(now, id, outcome);
        self.drain(i, &mut Ctx::default());
    }

    pub(crate) fn time_core(&mut self, bucket: usize, d: Duration) {
        if let Some(t) = self.timing.as_mut() {
            t.add(bucket, d);
        }
    }

    /// A uniform agent think time.
    pub(crate) fn think(&mut self) -> u64 {
        let w = &self.opts.workload;
        let (lo, hi) = (w.think_min_us, w.think_max_us.max(w.think_min_us));
        lo + if hi > lo { below(&mut self.rng, hi - lo + 1) } else { 0 }
    }
}

/// Node `i`'s Ed25519 seed under the run seed.
pub fn seed32(seed: u64, i: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (k, chunk) in out.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&derive(seed, purpose::PASSPORT, i as u64, k as u64).to_le_bytes());
    }
    out
}

/// The path as traces show it (without the mesh prefix).
pub fn short(path: &str) -> &str {
    path.strip_prefix(PREFIX).unwrap_or(path)
}

pub(crate) fn method_word(m: Method) -> &'static str {
    match m {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Other => "OTHER",
    }
}

pub(crate) fn request_bucket(path: &str) -> usize {
    let p = short(path);
    if p == "/message" {
        0
    } else if p.starts_with("/connection_") {
        1
    } else if p.starts_with("/webhook") {
        2
    } else if p == "/peer_update" {
        3
    } else {
        4
    }
}

/// The `message_id` of an encoded envelope (the core writes it first), without parsing the JSON.
pub fn envelope_id(body: &[u8]) -> Option<&str> {
    const HEAD: &[u8] = b"{\"message_id\":\"";
    let rest = body.strip_prefix(HEAD)?;
    let end = rest.iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&rest[..end]).ok()
}
