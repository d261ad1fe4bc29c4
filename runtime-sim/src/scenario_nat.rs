//! The NAT study (issue 14): a share of the mesh can only dial out (a NAT without port mapping), and
//! every node is configured with the same anchors, simulated here with the core's own anchor
//! ([`proto_core::anchor::Anchor`]). Measured: how many messages reach NAT'd recipients (through the
//! relay) and public ones (directly), how long they take, whether acceptances to NAT'd requesters and
//! peer updates to NAT'd peers arrive, and what the anchors carry.
//!
//! The study takes over two kinds of calls ([`Observer::on_transmit`]): calls to an anchor, which it
//! hands to that anchor and answers with the anchor's replies (a held long poll is answered when the
//! post that fills it arrives, or when the anchor's timer ends it), and calls to a NAT'd node from
//! anyone else, which time out as a NAT that drops unsolicited inbound traffic makes them. An anchor's
//! reachability probe is answered from what the study knows (the anchor's own probe needs an address
//! literal; simulated URLs are names). Everything else goes through the engine's network as usual.
//!
//! The mesh is formed by the study: each node dials [`LINKS_PER_NODE`] random others, a NAT'd node
//! always being the one that dials (nobody can dial it); two NAT'd nodes cannot connect at all. Every
//! request is accepted by hand after a think time, so each acceptance is its own call, relayed when
//! its requester is NAT'd. [`MOVERS`] of the nodes change address once, so their peer updates flow to
//! NAT'd peers (relayed) and from NAT'd movers (directly).

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use proto_core::anchor::{Anchor, AnchorOutput, AnchorRequest, RequestId};
use proto_core::relay::Entropy;
use proto_core::{Event, HttpResponse, Method, OutboundId, Transmit};

use crate::net::{ip_of, split_url};
use crate::observer::{Hooks, Observer};
use crate::rng::{derive, SplitMix};
use crate::scenario::{Action, Options};
use crate::sim::{envelope_id, Sim, EPOCH_US};
use crate::trust_study::plot::{cumulative, line_chart, Series};

const S: u64 = 1_000_000;
/// Share of the nodes behind NAT.
pub const NATTED: f64 = 0.30;
/// Anchors every node is configured with.
pub const ANCHORS: u32 = 2;
/// Connections each node dials at formation.
pub const LINKS_PER_NODE: u32 = 4;
/// Share of the nodes that change address once, after formation.
pub const MOVERS: f64 = 0.10;
/// One-way latency between any node and an anchor, µs.
pub const ANCHOR_ONE_WAY_US: u64 = 15_000;
/// Formation window, µs.
const FORMATION_US: u64 = 60 * S;
/// Moves happen in this window, µs (from, to).
const MOVES_US: (u64, u64) = (300 * S, 900 * S);
/// Wake-up tokens from here on name a mover (token − base = node).
const MOVER_TOKEN: u64 = 1 << 32;
/// The seed purpose of this study's choices.
const PURPOSE: u64 = 0x6e61_7400;

/// The study's settings, carried in [`Options`].
#[derive(Clone, Debug, PartialEq)]
pub struct NatConfig {
    /// Nodes behind NAT (sorted).
    pub natted: Vec<u32>,
    /// The anchors' base URLs, every node's `DARKMATTER_ANCHOR_NODES`.
    pub anchors: Vec<String>,
}

/// The base URL of anchor `k`.
pub fn anchor_url(k: u32) -> String {
    format!("http://anchor-{k}.sim:5001")
}

fn pick(seed: u64, what: u64, i: u64) -> f64 {
    SplitMix(derive(seed, PURPOSE, what, i)).unit()
}

/// `nat`: [`NATTED`] of the nodes behind NAT, [`ANCHORS`] anchors, light direct traffic with replies,
/// hand acceptances, [`MOVERS`] movers.
pub fn build(n: u32, seed: u64, d: u64) -> Options {
    let mut o = Options::base("nat", n, seed, d);
    // The study forms the mesh itself (a NAT'd node must be the one that dials).
    o.isolated = n;
    o.manual_accept = (0..n).collect();
    o.workload.accept_pending_until_us = d;
    o.workload.direct_per_hour = 4.0;
    o.workload.broadcast_per_hour = 0.0;
    o.workload.reply_prob = 0.5;
    o.workload.start_us = FORMATION_US + 30 * S;
    let natted = (0..n).filter(|&i| pick(seed, 1, i as u64) < NATTED).collect();
    o.nat = Some(NatConfig { natted, anchors: (0..ANCHORS).map(anchor_url).collect() });
    o
}

/// The simulator's stand-in for the OS random source: a seeded stream, so that a run replays byte
/// for byte. Only the simulator uses it; a real node takes its nonces from the OS.
#[derive(Debug)]
pub struct SimEntropy(AtomicU64);

impl SimEntropy {
    /// A stream from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(AtomicU64::new(seed))
    }
}

impl Entropy for SimEntropy {
    fn fill(&self, buf: &mut [u8]) -> Result<(), String> {
        for chunk in buf.chunks_mut(8) {
            let state = self.0.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
            let word = SplitMix(state).next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        Ok(())
    }
}

/// What the anchors were asked, by route.
#[derive(Clone, Debug, Default)]
pub struct AnchorLoad {
    /// Registrations.
    pub registrations: u64,
    /// Lookups.
    pub lookups: u64,
    /// Relay posts (and of those, answered 200).
    pub posts: (u64, u64),
    /// Polls.
    pub polls: u64,
    /// Probes.
    pub probes: u64,
    /// Bytes posted.
    pub bytes_posted: u64,
    /// Most bytes buffered at once (both anchors).
    pub peak_buffered: usize,
}

/// One message the study saw leave, and when it arrived.
#[derive(Clone, Debug)]
struct Sent {
    to: u32,
    at_us: u64,
    arrived_us: Option<u64>,
}

/// The study's observer: the anchors, the NAT, and the measurements.
pub struct Watch {
    seed: u64,
    natted: Vec<bool>,
    anchors: Vec<Anchor>,
    /// Anchor requests awaiting their reply: (anchor, request) → (node, call, path).
    pending: BTreeMap<(usize, RequestId), (u32, OutboundId, String)>,
    next_request: RequestId,
    /// The time each anchor's timer is set for, µs.
    timers: Vec<Option<u64>>,
    sent: BTreeMap<String, Sent>,
    /// Calls to NAT'd nodes dropped by their NAT.
    pub dropped_at_nat: u64,
    /// What the anchors carried.
    pub load: AnchorLoad,
    /// Links planned at formation: (dialer, target).
    planned: Vec<(u32, u32)>,
    /// Pairs the study could not link (both NAT'd).
    pub impossible: u64,
    /// Connected events, by whether the node that saw it is NAT'd.
    pub connected: (u64, u64),
    /// Movers and their move time.
    moved: BTreeMap<u32, u64>,
    /// Peer updates about movers that reached their peers: (to NAT'd peers, to public peers).
    pub updates: (u64, u64),
    duration_us: u64,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").field("sent", &self.sent.len()).field("load", &self.load).finish()
    }
}

impl Watch {
    /// The observer of a run of `opts` with `config`.
    pub fn new(opts: &Options, config: &NatConfig) -> Self {
        let mut natted = vec![false; opts.nodes as usize];
        for &i in &config.natted {
            natted[i as usize] = true;
        }
        Self {
            seed: opts.seed,
            natted,
            anchors: config.anchors.iter().map(|_| Anchor::new()).collect(),
            pending: BTreeMap::new(),
            next_request: 1,
            timers: vec![None; config.anchors.len()],
            sent: BTreeMap::new(),
            dropped_at_nat: 0,
            load: AnchorLoad::default(),
            planned: Vec::new(),
            impossible: 0,
            connected: (0, 0),
            moved: BTreeMap::new(),
            updates: (0, 0),
            duration_us: opts.duration_us,
        }
    }

    /// Whether node `i` is behind NAT.
    pub fn is_natted(&self, i: u32) -> bool {
        self.natted.get(i as usize).copied().unwrap_or(false)
    }

    fn anchor_now(now_us: u64) -> proto_core::Now {
        proto_core::Now::new(now_us / 1_000, EPOCH_US + now_us as i64)
    }

    /// Hands a call to anchor `k` and answers what it answered.
    fn call_anchor(&mut self, sim: &Sim, k: usize, from: u32, t: &Transmit, path: &str, hooks: &mut Hooks) {
        let (path_only, query) = path.split_once('?').unwrap_or((path, ""));
        self.count(k, path_only, t);
        if path_only == "/__darkmatter__/probe_reachability" {
            let body = serde_json::json!({"reachable": !self.is_natted(from), "status_code": 200});
            let result = Ok(HttpResponse { status: 200, body: serde_json::to_vec(&body).unwrap_or_default() });
            hooks.respond(sim.now_us() + 2 * ANCHOR_ONE_WAY_US, from, t.id, path_only.to_owned(), result);
            return;
        }
        let id = self.next_request;
        self.next_request += 1;
        self.pending.insert((k, id), (from, t.id, path_only.to_owned()));
        let request = AnchorRequest {
            id,
            method: t.method,
            path: path_only.to_owned(),
            query: query.to_owned(),
            body: t.body.clone(),
            source: Some(ip_of(from, 0)),
        };
        let arrive = sim.now_us() + ANCHOR_ONE_WAY_US;
        self.anchors[k].handle_request(Self::anchor_now(arrive), request);
        self.drain(k, arrive, hooks);
    }

    fn count(&mut self, _k: usize, path: &str, t: &Transmit) {
        let l = &mut self.load;
        let rest = path.strip_prefix("/__darkmatter__/").unwrap_or(path);
        match rest.split('/').next().unwrap_or("") {
            "peer_update" => l.registrations += 1,
            "peer_lookup" => l.lookups += 1,
            "probe_reachability" => l.probes += 1,
            word if word.ends_with("_poll") => l.polls += 1,
            _ if t.method == Method::Post => {
                l.posts.0 += 1;
                l.bytes_posted += t.body.len() as u64;
            }
            _ => {}
        }
    }

    /// Answers every reply anchor `k` queued (each back to its caller after the one-way latency),
    /// and sets its timer.
    fn drain(&mut self, k: usize, at_us: u64, hooks: &mut Hooks) {
        while let Some(out) = self.anchors[k].poll_output() {
            let AnchorOutput::Reply { request, status, body } = out else { continue };
            let Some((node, oid, path)) = self.pending.remove(&(k, request)) else { continue };
            if status == 200 && path.contains("_relay/") {
                self.load.posts.1 += 1;
            }
            hooks.respond(at_us + ANCHOR_ONE_WAY_US, node, oid, path, Ok(HttpResponse { status, body }));
        }
        let buffered: usize = self.anchors.iter().map(Anchor::buffered_bytes).sum();
        self.load.peak_buffered = self.load.peak_buffered.max(buffered);
        let due_us = self.anchors[k].poll_timeout() * 1_000;
        if self.timers[k].is_none_or(|t| due_us < t || t <= at_us) {
            self.timers[k] = Some(due_us);
            hooks.wake(due_us, k as u64);
        }
    }

    /// Seconds from send to arrival of the messages to NAT'd (or public) recipients, sorted, and
    /// how many were sent early enough to be judged.
    fn delays(&self, natted: bool) -> (Vec<f64>, usize) {
        let judged: Vec<&Sent> = self
            .sent
            .values()
            .filter(|s| self.is_natted(s.to) == natted && s.at_us + 120 * S <= self.duration_us)
            .collect();
        let mut d: Vec<f64> =
            judged.iter().filter_map(|s| s.arrived_us.map(|a| (a - s.at_us) as f64 / S as f64)).collect();
        d.sort_by(f64::total_cmp);
        (d, judged.len())
    }

    /// The share of messages arrived against seconds since they were sent, to public and to NAT'd
    /// recipients.
    pub fn svg(&self, title: &str) -> Result<String, String> {
        use plotters::prelude::*;
        let end = 90.0;
        let curve = |natted: bool| {
            let (d, total) = self.delays(natted);
            cumulative(&d, total as f64, end)
        };
        let series = vec![
            Series::new("to public recipients (direct)".into(), BLUE, curve(false)),
            Series::new("to recipients behind NAT (relayed)".into(), RED, curve(true)),
        ];
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (800, 480)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| e.to_string())?;
            let (x_desc, y_desc) = ("seconds since the send", "messages arrived");
            line_chart(&root, title, x_desc, y_desc, (0.0, end), false, SeriesLabelPosition::LowerRight, &series)?;
            root.present().map_err(|e| e.to_string())?;
        }
        Ok(svg)
    }

    /// The findings as a Markdown table and a few lines.
    pub fn text(&self, nodes: u32) -> String {
        let natted = self.natted.iter().filter(|&&b| b).count();
        let pct = |d: &[f64], p: f64| d.get(((d.len() as f64 * p) as usize).min(d.len().saturating_sub(1))).copied();
        let fmt = |x: Option<f64>| x.map_or("-".to_owned(), |s| format!("{s:.2} s"));
        let mut t = format!(
            "nodes {nodes}, behind NAT {natted}, anchors {}; links planned {}, impossible (both NAT'd) {}\n",
            self.anchors.len(),
            self.planned.len(),
            self.impossible
        );
        t += "| recipients | messages | arrived | share | median | p99 |\n|---|---|---|---|---|---|\n";
        for (name, nat) in [("public (direct)", false), ("behind NAT (relayed)", true)] {
            let (d, total) = self.delays(nat);
            t += &format!(
                "| {name} | {total} | {} | {:.4} | {} | {} |\n",
                d.len(),
                d.len() as f64 / total.max(1) as f64,
                fmt(pct(&d, 0.5)),
                fmt(pct(&d, 0.99))
            );
        }
        t += &format!(
            "connections seen: at NAT'd nodes {}, at public nodes {} (each link counts at both ends)\n",
            self.connected.1, self.connected.0
        );
        t += &format!(
            "movers {}; their peer updates taken by NAT'd peers {}, by public peers {}\n",
            self.moved.len(),
            self.updates.1,
            self.updates.0
        );
        let l = &self.load;
        t += &format!(
            "anchor load: registrations {}, lookups {}, probes {}, polls {}, relay posts {} ({} buffered, {} bytes), \
             peak buffered {} bytes; calls dropped at a NAT {}\n",
            l.registrations,
            l.lookups,
            l.probes,
            l.polls,
            l.posts.0,
            l.posts.1,
            l.bytes_posted,
            l.peak_buffered,
            self.dropped_at_nat
        );
        t
    }
}

impl Observer for Watch {
    fn start(&mut self, sim: &Sim, hooks: &mut Hooks) {
        let n = sim.options().nodes;
        let mut rng = SplitMix(derive(self.seed, PURPOSE, 2, 0));
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..n {
            for _ in 0..LINKS_PER_NODE {
                let j = (rng.next_u64() % u64::from(n)) as u32;
                let pair = (i.min(j), i.max(j));
                if j == i || !seen.insert(pair) {
                    continue;
                }
                let (a, b) = match (self.is_natted(i), self.is_natted(j)) {
                    (true, true) => {
                        self.impossible += 1;
                        continue;
                    }
                    (false, true) => (j, i),
                    _ => (i, j),
                };
                let at = (rng.unit() * FORMATION_US as f64) as u64;
                self.planned.push((a, b));
                hooks.connect(at, a, b);
            }
        }
        for i in 0..n {
            if pick(self.seed, 3, i as u64) < MOVERS {
                let at = MOVES_US.0 + (pick(self.seed, 4, i as u64) * (MOVES_US.1 - MOVES_US.0) as f64) as u64;
                hooks.wake(at, MOVER_TOKEN + i as u64);
            }
        }
    }

    fn on_transmit(&mut self, sim: &Sim, from: u32, t: &Transmit, hooks: &mut Hooks) -> bool {
        let (base, path) = split_url(&t.url);
        if let Some(k) = (0..self.anchors.len()).find(|&k| anchor_url(k as u32) == base) {
            self.call_anchor(sim, k, from, t, path, hooks);
            return true;
        }
        let Some(&to) = sim.by_url.get(base) else { return false };
        if path == "/__darkmatter__/message" {
            if let Some(id) = envelope_id(&t.body) {
                let sent = Sent { to, at_us: sim.now_us(), arrived_us: None };
                self.sent.entry(id.to_owned()).or_insert(sent);
            }
        }
        if to == from || !self.is_natted(to) {
            return false;
        }
        // A NAT without port mapping drops unsolicited inbound traffic: the caller times out.
        self.dropped_at_nat += 1;
        let at = sim.now_us() + t.timeout_ms * 1_000;
        hooks.respond(at, from, t.id, path.to_owned(), Err("timed out".to_owned()));
        true
    }

    fn on_wake(&mut self, sim: &Sim, token: u64, hooks: &mut Hooks) {
        if token >= MOVER_TOKEN {
            let i = (token - MOVER_TOKEN) as u32;
            if sim.core(i).is_some() {
                self.moved.insert(i, sim.now_us());
                hooks.schedule(sim.now_us(), Action::Move(i));
            }
            return;
        }
        let k = token as usize;
        if self.timers.get(k).copied().flatten() != Some(sim.now_us()) {
            return;
        }
        self.timers[k] = None;
        self.anchors[k].handle_timeout(Self::anchor_now(sim.now_us()));
        self.drain(k, sim.now_us(), hooks);
    }

    fn on_event(&mut self, sim: &Sim, node: u32, event: &Event, _hooks: &mut Hooks) {
        match event {
            Event::MessageReceived { message_id, .. } => {
                if let Some(s) = self.sent.get_mut(message_id.as_str()) {
                    if s.to == node && s.arrived_us.is_none() {
                        s.arrived_us = Some(sim.now_us());
                    }
                }
            }
            Event::Connected { .. } => {
                if self.is_natted(node) {
                    self.connected.1 += 1;
                } else {
                    self.connected.0 += 1;
                }
            }
            Event::PeerUpdated { agent_id, url } => {
                let Some(peer) = sim.index_of(agent_id.as_str()) else { return };
                if self.moved.contains_key(&peer) && url == sim.url(peer) {
                    if self.is_natted(node) {
                        self.updates.1 += 1;
                    } else {
                        self.updates.0 += 1;
                    }
                }
            }
            _ => {}
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sim_entropy_stream_is_seeded_and_never_repeats_a_nonce_within_a_run() {
        let (a, b) = (SimEntropy::new(7), SimEntropy::new(7));
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..1_000 {
            let (mut x, mut y) = ([0u8; 12], [0u8; 12]);
            a.fill(&mut x).unwrap();
            b.fill(&mut y).unwrap();
            assert_eq!(x, y, "seeded: the run replays");
            assert!(seen.insert(x), "no repeated nonce");
        }
    }

    #[test]
    fn a_small_run_reaches_nat_d_nodes_through_the_anchors() {
        let o = build(60, 3, 1_200 * S);
        let mut sim = Sim::new(o);
        sim.run(&mut |_, _| {}).expect("no violation");
        let w = sim.observer::<Watch>().expect("the study's observer");
        let (relayed, total) = w.delays(true);
        assert!(total > 5, "{}", w.text(60));
        assert!(relayed.len() as f64 >= 0.9 * total as f64, "{}", w.text(60));
        assert!(w.connected.1 > 0, "NAT'd requesters got their (relayed) acceptances: {}", w.text(60));
        assert!(w.load.posts.1 > 0 && w.load.polls > 0, "{}", w.text(60));
        assert!(w.updates.1 > 0, "peer updates reached NAT'd peers: {}", w.text(60));
    }
}
