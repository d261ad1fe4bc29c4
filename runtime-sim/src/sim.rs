//! The engine: nodes, the event loop, the network path of every request, and the drain loop.
//!
//! One queue event is one input to one node (or one network/agent/fault step). Every node input
//! is followed by a full drain of `poll_output`, carrying outputs out in order: persists go to the
//! node's simulated disk at once (so a reply that follows a persist is durable before it leaves),
//! transmits enter the network, replies go back, events and completions reach the agent.

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use core::net::IpAddr;

use proto_core::{Command, CommandId, Config, Event, HttpResponse, InboundId, InboundRequest, Method, Node, Now, OutboundId, Output, Passport, Table, Transmit};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

use crate::event_queue::EventQueue;
use crate::invariants::{table_index, Invariants, Violation, TABLES};
use crate::metrics::{Counters, Metrics, Row};
use crate::net::{ip_of, split_url, url_of, Fate, Network};
use crate::rng::{derive, id_key, purpose, FxMap};
use crate::scenario::Options;
use crate::topology::{self, below};
use crate::trace::{method_code, outcome, Kind, Trace, EXTERNAL, NONE};
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
    Health { idx: u32 },
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

/// A queue event.
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
        let labels = ["request /message", "request /connection_*", "request /webhook", "request /peer_update", "request /status and other", "response", "command send/forward", "command connect/accept", "command other", "datagram", "timeout", "beacon", "restore"];
        Self { buckets: labels.iter().map(|l| (*l, 0, Duration::ZERO)).collect() }
    }
    fn add(&mut self, i: usize, d: Duration) {
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
    /// After address moves: (connections whose stored URL is not the peer's current one, all
    /// connections), read from what the nodes persisted.
    pub stale_links: Option<(u64, u64)>,
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
}

impl Sim {
    /// Builds the mesh (every node fresh, at time 0) and schedules formation, script and workload.
    pub fn new(opts: Options) -> Self {
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
            opts,
        };
        for i in 0..n {
            let seed32 = seed32(seed, i);
            let passport = Passport::from_seed(seed32);
            let agent = passport.agent_id().as_str().to_owned();
            let url = url_of(i, 0);
            let skew_range = sim.opts.net.skew_max_us as i64;
            let skew_us = if skew_range == 0 { 0 } else { (derive(seed, purpose::SKEW, i as u64, 0) % (2 * skew_range as u64 + 1)) as i64 - skew_range };
            let max_connections = if i < sim.opts.anchors { sim.opts.anchor_max_connections } else { sim.opts.max_connections };
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
            let node = Node::new(passport, sim.config(i), derive(seed, purpose::NODE, i as u64, 0), sim.node_now(i));
            sim.nodes[i as usize].node = Some(node);
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

    pub(crate) fn config(&self, i: u32) -> Config {
        let n = &self.nodes[i as usize];
        Config {
            display_name: format!("node-{i}"),
            bio: "A simulated DarkMatter agent.".to_owned(),
            public_url: n.url.clone(),
            max_connections: n.max_connections,
            auto_accept_local: n.auto_accept,
            ..Config::default()
        }
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
        if let (Some(min), Some(got)) = (self.opts.min_delivery_after, delivery_after) {
            self.inv.checks += 1;
            if got < min {
                return Err(Violation { at_us: end, node: 0, rule: "delivery-after-heal", detail: format!("delivery ratio after healing {got:.4} < {min}") });
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
            stale_links: (self.counters.moves > 0).then(|| self.stale_links()),
        })
    }

    /// Connections (as persisted) that point at an address their peer no longer has.
    fn stale_links(&self) -> (u64, u64) {
        let (mut stale, mut all) = (0, 0);
        for n in &self.nodes {
            for ((t, k), v) in &n.store {
                if *t != Table::Connections {
                    continue;
                }
                let (Some(&p), Ok(c)) = (self.by_agent.get(k), proto_core::store::decode::<proto_core::store::Connection>(v)) else { continue };
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

    // ----- the network path of a request -----

    pub(crate) fn transmit(&mut self, from: u32, t: Transmit, ctx: &Ctx) {
        let (base, path) = split_url(&t.url);
        let to = self.by_url.get(base).copied();
        let path = path.to_owned();
        let mut intercepted = false;
        if path == "/__darkmatter__/message" {
            intercepted = self.note_envelope(from, to, &t.body, ctx);
        }
        let deadline = self.now + t.timeout_ms * 1000;
        let inc = self.nodes[from as usize].inc;
        let m = method_code(t.method) << 8;
        let Some(to) = to else {
            self.trace.rec(self.now, from as u64, Kind::Send, NONE, m | outcome::UNRESOLVED, short(&path));
            self.fail_at(from, inc, t.id, NONE, path, "could not resolve host", self.now);
            return;
        };
        if intercepted {
            self.trace.rec(self.now, from as u64, Kind::Send, to as u64, m | outcome::INTERCEPTED, short(&path));
            self.fail_at(from, inc, t.id, to as u64, path, "timed out", deadline);
            return;
        }
        if t.forbid_private {
            // Every sim address is private; a real runtime refuses these after resolving.
            self.trace.rec(self.now, from as u64, Kind::Send, to as u64, m | outcome::FORBIDDEN, short(&path));
            self.fail_at(from, inc, t.id, to as u64, path, "refused: private address", self.now);
            return;
        }
        match self.net.fate(from, to, false) {
            Fate::Deliver(lat) => {
                self.trace.rec(self.now, from as u64, Kind::Send, to as u64, m | outcome::SENT, short(&path));
                let arrive = self.now + lat;
                let mut reply_wanted = true;
                if arrive > deadline {
                    self.fail_at(from, inc, t.id, to as u64, path.clone(), "timed out", deadline);
                    reply_wanted = false;
                }
                let req = Req { to, gen: self.nodes[to as usize].gen, inc: 0, from: Origin::Node { idx: from, inc, oid: t.id }, method: t.method, path, body: t.body, source: self.nodes[from as usize].ip, deadline, reply_wanted };
                self.queue.push(arrive, Ev::Arrive(Box::new(req)));
            }
            fate => {
                let o = if fate == Fate::Lost { outcome::LOST } else { outcome::BLOCKED };
                self.trace.rec(self.now, from as u64, Kind::Send, to as u64, m | o, short(&path));
                self.fail_at(from, inc, t.id, to as u64, path, "timed out", deadline);
            }
        }
    }

    /// Bookkeeping for a message transmit: honest-sender record, delivery accounting, and the
    /// adversary's man-in-the-middle: it keeps a small pool of envelopes it intercepted (they never
    /// arrive, so each bent copy it sends later meets the signature checks, not the duplicate
    /// check). Returns whether this one was intercepted.
    fn note_envelope(&mut self, from: u32, to: Option<u32>, body: &[u8], ctx: &Ctx) -> bool {
        let Some(id) = envelope_id(body) else { return false };
        let key = id_key(id);
        self.inv.note_honest(from, key);
        if ctx.forwarding {
            self.counters.forwarded += 1;
        }
        let Some(to) = to else { return false };
        if self.keep_envelopes {
            self.envelopes.push(Captured { sender: from, target: to, body: body.to_vec() });
        }
        if ctx.sending && self.opts.workload.adversary_per_hour > 0.0 && self.captured.len() < 4 {
            self.captured.push_back(Captured { sender: from, target: to, body: body.to_vec() });
            self.counters.intercepted += 1;
            return true;
        }
        if ctx.sending {
            self.counters.intended += 1;
            self.metrics.intend(self.now);
            self.sent_at.entry(key).or_insert((from, self.now));
        }
        false
    }

    /// Hands `caller` a transport error for its call `oid` at time `at`.
    pub(crate) fn fail_at(&mut self, caller: u32, inc: u32, oid: OutboundId, peer: u64, path: String, err: &str, at: u64) {
        self.queue.push(at.max(self.now), Ev::Response { to: caller, inc, oid, peer, path, result: Err(err.to_owned()) });
    }

    fn origin_peer(o: &Origin) -> u64 {
        match o {
            Origin::Node { idx, .. } | Origin::Health { idx } => *idx as u64,
            Origin::Adversary { .. } => EXTERNAL,
        }
    }

    fn on_arrive(&mut self, mut req: Box<Req>) {
        let to = req.to as usize;
        if self.nodes[to].node.is_none() || self.nodes[to].gen != req.gen {
            self.refuse(&req, "connection refused");
            return;
        }
        let cost = self.net.config().handling_cost_us;
        let start = self.now.max(self.nodes[to].busy_until);
        self.nodes[to].busy_until = start + cost;
        req.inc = self.nodes[to].inc;
        if req.reply_wanted && start + cost > req.deadline {
            if let Origin::Node { idx, inc, oid } = req.from {
                self.fail_at(idx, inc, oid, req.to as u64, req.path.clone(), "timed out", req.deadline);
            }
            req.reply_wanted = false;
        }
        if start > self.now {
            self.queue.push(start, Ev::Handle(req));
        } else {
            self.on_handle(req);
        }
    }

    /// Nothing listens at the address (down, or moved away).
    fn refuse(&mut self, req: &Req, err: &str) {
        self.trace.rec(self.now, req.to as u64, Kind::Down, Self::origin_peer(&req.from), method_code(req.method), short(&req.path));
        if let Origin::Node { idx, inc, oid } = req.from {
            if req.reply_wanted {
                let back = self.net.base_latency_us(req.to, idx);
                self.fail_at(idx, inc, oid, req.to as u64, req.path.clone(), err, (self.now + back).min(req.deadline));
            }
        }
    }

    fn on_handle(&mut self, req: Box<Req>) {
        let to = req.to;
        let n = &self.nodes[to as usize];
        if n.node.is_none() || n.inc != req.inc || n.gen != req.gen {
            self.refuse(&req, "connection reset");
            return;
        }
        let Req { from, method, path, body, source, deadline, reply_wanted, .. } = *req;
        let id = InboundId(self.next_inbound);
        self.next_inbound += 1;
        let now = self.node_now(to);
        let mut ctx = Ctx { expect_reply: true, forged: if let Origin::Adversary { variant } = from { Some(variant) } else { None }, ..Ctx::default() };
        let request = InboundRequest { id, method, path: path.clone(), body, source: Some(source) };
        let clock = self.timing.is_some().then(Instant::now);
        self.nodes[to as usize].node.as_mut().expect("checked").handle_request(now, request);
        if let Some(c) = clock {
            let bucket = request_bucket(&path);
            self.timing.as_mut().expect("on").add(bucket, c.elapsed());
        }
        let (outs, timeout) = self.collect(to);
        let status = outs.iter().find_map(|o| if let Output::Reply(r) = o { Some(r.status) } else { None }).unwrap_or(0);
        self.trace.rec(self.now, to as u64, Kind::Recv, Self::origin_peer(&from), (method_code(method) << 16) | status as u64, short(&path));
        self.process(to, outs, timeout, &mut ctx);
        let Some(reply) = ctx.reply.take() else {
            self.fail(to, "one-reply", format!("no reply to {} {}", method_word(method), path));
            return;
        };
        if reply.id != id {
            self.fail(to, "one-reply", format!("reply carries id {:?}, request was {:?}", reply.id, id));
            return;
        }
        match status {
            200..=299 => self.counters.ok += 1,
            429 => self.counters.rate_limited += 1,
            _ => self.counters.refused += 1,
        }
        if let Some(v) = ctx.forged {
            self.counters.forgeries += 1;
            self.inv.checks += 1;
            if status == 200 && v.must_refuse() {
                self.fail(to, "authentic", format!("a {} envelope was answered 200", v.name()));
                return;
            }
            if status != 200 {
                self.counters.forgeries_refused += 1;
            }
        }
        match from {
            Origin::Node { idx, inc, oid } if reply_wanted => {
                let leave = self.now + self.net.config().handling_cost_us;
                match self.net.fate(to, idx, false) {
                    Fate::Deliver(lat) if leave + lat <= deadline => {
                        let result = Ok(HttpResponse { status, body: reply.body });
                        self.queue.push(leave + lat, Ev::Response { to: idx, inc, oid, peer: to as u64, path, result });
                    }
                    _ => self.fail_at(idx, inc, oid, to as u64, path, "timed out", deadline),
                }
            }
            Origin::Health { .. } if status == 200 => self.counters.health_ok += 1,
            _ => {}
        }
    }

    fn on_response(&mut self, to: u32, inc: u32, oid: OutboundId, peer: u64, path: String, result: Result<HttpResponse, String>) {
        let n = &self.nodes[to as usize];
        if n.node.is_none() || n.inc != inc {
            self.trace.rec(self.now, to as u64, Kind::Lost, peer, 0, short(&path));
            return;
        }
        match &result {
            Ok(r) => self.trace.rec(self.now, to as u64, Kind::Resp, peer, r.status as u64, short(&path)),
            Err(e) => {
                self.counters.transport_errors += 1;
                let text = format!("{e} ({})", short(&path));
                self.trace.rec(self.now, to as u64, Kind::Resp, peer, 0, &text);
            }
        }
        let now = self.node_now(to);
        let clock = self.timing.is_some().then(Instant::now);
        self.nodes[to as usize].node.as_mut().expect("checked").handle_response(now, oid, result);
        if let Some(c) = clock {
            self.timing.as_mut().expect("on").add(5, c.elapsed());
        }
        self.drain(to, &mut Ctx::default());
    }

    fn on_timer(&mut self, i: u32, inc: u32, at: u64) {
        let n = &mut self.nodes[i as usize];
        if n.inc != inc || n.timer_at != Some(at) || n.node.is_none() {
            return;
        }
        n.timer_at = None;
        self.trace.rec(self.now, i as u64, Kind::Timer, NONE, 0, "");
        let now = self.node_now(i);
        let clock = self.timing.is_some().then(Instant::now);
        self.nodes[i as usize].node.as_mut().expect("checked").handle_timeout(now);
        if let Some(c) = clock {
            self.timing.as_mut().expect("on").add(10, c.elapsed());
        }
        self.drain(i, &mut Ctx::default());
    }

    pub(crate) fn arm_timer(&mut self, i: u32, t: Option<u64>) {
        let Some(ms) = t else { return };
        let at = (ms * 1000).max(self.now);
        let n = &mut self.nodes[i as usize];
        if n.timer_at.is_some_and(|x| x <= at) {
            return;
        }
        n.timer_at = Some(at);
        let inc = n.inc;
        self.queue.push(at, Ev::Timer { node: i, inc, at });
    }

    fn on_datagram(&mut self, to: u32, from: u32, payload: &[u8]) {
        if self.nodes[to as usize].node.is_none() {
            return;
        }
        self.counters.datagrams += 1;
        self.trace.rec(self.now, to as u64, Kind::Datagram, from as u64, 0, "");
        let now = self.node_now(to);
        let source = self.nodes[from as usize].ip;
        let clock = self.timing.is_some().then(Instant::now);
        self.nodes[to as usize].node.as_mut().expect("checked").handle_datagram(now, source, payload);
        if let Some(c) = clock {
            self.timing.as_mut().expect("on").add(9, c.elapsed());
        }
        self.drain(to, &mut Ctx::default());
    }

    // ----- the drain loop -----

    pub(crate) fn drain(&mut self, i: u32, ctx: &mut Ctx) {
        let (outs, timeout) = self.collect(i);
        self.process(i, outs, timeout, ctx);
    }

    /// Polls node `i` until it asks for a timeout.
    fn collect(&mut self, i: u32) -> (Vec<Output>, Option<Option<u64>>) {
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
    fn process(&mut self, i: u32, mut outs: Vec<Output>, timeout: Option<Option<u64>>, ctx: &mut Ctx) {
        for out in outs.drain(..) {
            match out {
                Output::Persist(changes) => self.persist(i, changes),
                Output::Reply(r) => {
                    if !ctx.expect_reply || ctx.reply.is_some() {
                        self.fail(i, "one-reply", format!("unexpected reply {:?} status {}", r.id, r.status));
                    }
                    self.check_acks(i, &r, ctx);
                    ctx.reply = Some(r);
                }
                Output::Transmit(t) => self.transmit(i, t, ctx),
                Output::Event(e) => self.on_event(i, e, ctx),
                Output::Done { id, result } => self.on_done(i, id, result),
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
                self.fail(i, "ack-after-commit", format!("message {m} answered {} with its inbox record {}", r.status, if durable { "persisted" } else { "not persisted" }));
                return;
            }
            self.nodes[i as usize].unconsumed.insert(m);
        }
    }

    fn persist(&mut self, i: u32, changes: Vec<proto_core::Change>) {
        let n = &mut self.nodes[i as usize];
        for c in changes {
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
        match e {
            Event::Connected { agent_id } => {
                self.counters.connected_events += 1;
                let p = self.by_agent.get(&agent_id).copied();
                self.trace.rec(self.now, i as u64, Kind::Connected, p.map_or(EXTERNAL, u64::from), 0, "");
                if let Some(p) = p {
                    let peers = &mut self.nodes[i as usize].peers;
                    if let Err(pos) = peers.binary_search(&p) {
                        peers.insert(pos, p);
                    }
                }
            }
            Event::Disconnected { agent_id, by_peer } => {
                let p = self.by_agent.get(&agent_id).copied();
                self.trace.rec(self.now, i as u64, Kind::Disconnected, p.map_or(EXTERNAL, u64::from), by_peer as u64, "");
                if let Some(p) = p {
                    let peers = &mut self.nodes[i as usize].peers;
                    if let Ok(pos) = peers.binary_search(&p) {
                        peers.remove(pos);
                    }
                }
            }
            Event::ConnectionRequested { request_id, agent_id, .. } => {
                let p = self.by_agent.get(&agent_id).copied();
                self.trace.rec(self.now, i as u64, Kind::Requested, p.map_or(EXTERNAL, u64::from), 0, &request_id);
                if self.now < self.opts.workload.accept_pending_until_us {
                    let at = self.now + self.think();
                    let inc = self.nodes[i as usize].inc;
                    self.queue.push(at, Ev::Agent { node: i, inc, act: Act::Accept(request_id) });
                }
            }
            Event::MessageReceived { message_id, from_agent_id, .. } => {
                let sender = self.by_agent.get(&from_agent_id).copied();
                self.trace.rec(self.now, i as u64, Kind::Message, sender.map_or(EXTERNAL, u64::from), 0, &message_id);
                let key = id_key(&message_id);
                if let Some(v) = ctx.forged.filter(|v| v.must_refuse()) {
                    self.fail(i, "authentic", format!("a {} envelope entered the inbox as {message_id}", v.name()));
                    return;
                }
                if let Err((rule, detail)) = self.inv.on_inbox(i, key, sender, &message_id) {
                    self.fail(i, rule, detail);
                    return;
                }
                if let Some(&(orig, sent)) = self.sent_at.get(&key) {
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
                let p = self.by_agent.get(&agent_id).copied();
                self.trace.rec(self.now, i as u64, Kind::Decided, p.map_or(EXTERNAL, u64::from), accepted as u64, "");
            }
            Event::PeerUpdated { agent_id, url } => {
                self.counters.peer_updates += 1;
                let p = self.by_agent.get(&agent_id).copied();
                self.trace.rec(self.now, i as u64, Kind::PeerUpdated, p.map_or(EXTERNAL, u64::from), 0, &url);
            }
            Event::Refused { path, status, .. } => {
                self.trace.rec(self.now, i as u64, Kind::Refused, NONE, status as u64, short(&path));
            }
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
        let mut ctx = Ctx { sending: matches!(kind, CmdKind::Send), forwarding: matches!(kind, CmdKind::Forward(_)), ..Ctx::default() };
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

fn method_word(m: Method) -> &'static str {
    match m {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Other => "OTHER",
    }
}

fn request_bucket(path: &str) -> usize {
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
