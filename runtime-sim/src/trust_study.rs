//! Trust studies: how fast a newcomer vouched for by one trusted peer is accepted, and how well the
//! acceptance policy resists Sybils. Two scenarios, `trust-propagation` and `sybil`, their scripts,
//! what they measure, and the plots.
//!
//! Node layout: nodes `0..newcomers` are the newcomers (outside formation; like any fresh node they
//! auto-accept local requests, which is how their voucher connects to them), then the Sybils (their
//! own mesh, auto-accepting), then the honest mesh of `--nodes` nodes. The honest mesh forms by
//! hand-accepted connects; after [`HAND_ACCEPT_UNTIL_US`] nobody accepts by hand, so every later
//! request to an honest node is decided by proto-core's acceptance policy or not at all.
//!
//! The vouching model:
//! - at [`IMPRESS_AT_US`] every honest node trusts each honest connection with probability
//!   `trust_prob`, at a score uniform in `trust_range` (0.3–0.9); every Sybil scores every other
//!   Sybil +1;
//! - a newcomer arrives: a random honest *voucher* connects to it and scores it in `vouch_range`;
//!   ten seconds later the newcomer asks, spread over `stagger_us`: every honest connection of the
//!   voucher that trusts the voucher (at least [`TRUSTED_MIN`]: *vouched* targets), the voucher's
//!   other connections (*neighbour*), up to `two_hop_max` nodes that trust a vouched target but are
//!   not the voucher's neighbours (*two-hop*), and `controls` random nodes (*control*).
//!
//! The Sybil model: `sybils` identities on their own random mesh (degree `sybil_degree`), each
//! scoring every other +1. A fraction `gateway_frac` of them got `gateway_links` connections to
//! random honest nodes during formation (an honest agent accepted them by hand, as anyone can);
//! those honest nodes trust their Sybil with probability `gateway_trust` (0 by default: a stranger
//! they let in, neutral). From [`START_US`], over `window_us`, each Sybil asks `sybil_targets`
//! random honest nodes to connect.

use std::collections::{BTreeMap, BTreeSet};

use plotters::coord::Shift;
use plotters::prelude::*;
use proto_core::{Command, Event, TrustPolicy};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

use crate::rng::derive;
use crate::scenario::{format_duration, parse_duration, Action, Options};
use crate::sim::{short, Act, CmdKind, Ev, Sim};
use crate::topology::{self, below, unit, Topology};

const S: u64 = 1_000_000;
/// `derive` purpose of the study's own choices (the engine's purposes are 1..=8).
const STUDY: u64 = 101;
/// Formation connects (honest mesh, Sybil mesh, gateway links) happen before this.
pub const FORMATION_US: u64 = 60 * S;
/// Honest agents accept requests by hand until this time (formation), never after.
pub const HAND_ACCEPT_UNTIL_US: u64 = 90 * S;
/// When impressions are set.
pub const IMPRESS_AT_US: u64 = 100 * S;
/// Sybil requests and newcomer arrivals start here.
pub const START_US: u64 = 120 * S;
/// A peer counts as *trusted* from this impression on: the confidence minimum, so its opinion alone
/// can carry a decision (automatic deltas of a few deliveries, 0.001 each, do not make a peer trusted).
pub const TRUSTED_MIN: f64 = proto_core::limits::TRUST_CONFIDENCE_MIN;
/// An opinion smaller than this (in absolute value) is *hearsay-sized*: what a node's impression of a
/// stranger becomes from its peers' reports alone (each moves it by `TRUST_REPORT_WEIGHT` = 0.1 x
/// the reporter's weight x the gap). Every first-hand impression of the model is at least 0.3.
pub const HEARSAY_MAX: f64 = 0.2;

/// Which study.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum StudyKind {
    /// `trust-propagation`.
    Propagation,
    /// `sybil`.
    Sybil,
}

/// Everything that shapes a study run beyond the engine's options.
#[derive(Clone, Debug, PartialEq)]
pub struct StudyConfig {
    /// Which study.
    pub kind: StudyKind,
    /// Honest mesh nodes (`--nodes`).
    pub honest: u32,
    /// Newcomers (`--newcomers`).
    pub newcomers: u32,
    /// Sybil identities (`--sybils`).
    pub sybils: u32,
    /// Probability that a node trusts a given honest connection (`--trust-prob`).
    pub trust_prob: f64,
    /// Score range of those impressions (`--trust-range 0.3..0.9`).
    pub trust_range: (f64, f64),
    /// Score range of a voucher's impression of its newcomer (`--vouch-range 0.6..0.9`).
    pub vouch_range: (f64, f64),
    /// Fraction of Sybils with connections to honest nodes (`--gateway-frac`).
    pub gateway_frac: f64,
    /// Honest connections of each such Sybil (`--gateway-links`).
    pub gateway_links: u32,
    /// Probability that an honest node connected to a Sybil trusts it like any connection (`--gateway-trust`).
    pub gateway_trust: f64,
    /// Degree range of the Sybils' own mesh.
    pub sybil_degree: (u32, u32),
    /// Honest nodes each Sybil asks (`--sybil-targets`; proto-core holds at most 64 outbound requests).
    pub sybil_targets: u32,
    /// Sybil requests and newcomer arrivals are spread over this window from [`START_US`] (`--window`).
    pub window_us: u64,
    /// One newcomer's requests are spread over this long, µs.
    pub stagger_us: u64,
    /// Two-hop targets per newcomer (`--two-hop`).
    pub two_hop_max: u32,
    /// Random control targets per newcomer (`--controls`).
    pub controls: u32,
    /// A newcomer asks every target that has not accepted it again this long after its previous
    /// attempt (`--retry 30m`; 0 = never).
    pub retry_us: u64,
    /// After accepting a newcomer, a node forms its own impression of it (probability `trust_prob`,
    /// range `trust_range`) after an exponential delay of this mean (`--acquaint 10m`; 0 = never).
    pub acquaint_mean_us: u64,
    /// Each newcomer asks one random vouched target and nobody else (`--single 1`): no request of its
    /// own can colour another.
    pub single: bool,
}

impl StudyConfig {
    fn base(kind: StudyKind, honest: u32) -> Self {
        Self {
            kind,
            honest,
            newcomers: 2,
            sybils: 0,
            trust_prob: 0.5,
            trust_range: (0.3, 0.9),
            vouch_range: (0.6, 0.9),
            gateway_frac: 0.1,
            gateway_links: 3,
            gateway_trust: 0.0,
            sybil_degree: (8, 16),
            sybil_targets: 60,
            window_us: 600 * S,
            stagger_us: 30 * S,
            two_hop_max: 0,
            controls: 4,
            retry_us: 0,
            acquaint_mean_us: 0,
            single: false,
        }
    }

    /// First newcomer, first Sybil, first honest node.
    pub fn layout(&self) -> (u32, u32, u32) {
        (0, self.newcomers, self.newcomers + self.sybils)
    }
}

/// The study's keys among `--KEY VALUE` overrides.
pub fn is_key(key: &str) -> bool {
    matches!(
        key,
        "sybils"
            | "newcomers"
            | "single"
            | "trust-prob"
            | "trust-range"
            | "vouch-range"
            | "gateway-frac"
            | "gateway-links"
            | "gateway-trust"
            | "sybil-targets"
            | "window"
            | "two-hop"
            | "controls"
            | "retry"
            | "acquaint"
    )
}

fn range(key: &str, value: &str) -> Result<(f64, f64), String> {
    let (a, b) = value.split_once("..").ok_or_else(|| format!("--{key}: give MIN..MAX"))?;
    let (a, b): (f64, f64) =
        (a.parse().map_err(|_| format!("--{key}: {value}"))?, b.parse().map_err(|_| format!("--{key}: {value}"))?);
    if !(-1.0..=1.0).contains(&a) || !(-1.0..=1.0).contains(&b) || a > b {
        return Err(format!("--{key}: MIN..MAX within -1..1"));
    }
    Ok((a, b))
}

/// Applies a study override and rebuilds the study's part of the options.
pub fn apply(o: &mut Options, key: &str, value: &str) -> Result<(), String> {
    let c = o.study.as_mut().expect("a study");
    let f = || value.parse::<f64>().map_err(|_| format!("--{key}: not a number: {value}"));
    let p = || {
        f().and_then(|x| if (0.0..=1.0).contains(&x) { Ok(x) } else { Err(format!("--{key}: a probability, 0..1")) })
    };
    let u = || value.parse::<u32>().map_err(|_| format!("--{key}: not a count: {value}"));
    match key {
        "sybils" => c.sybils = u()?,
        "newcomers" => c.newcomers = u()?,
        "single" => c.single = u()? != 0,
        "trust-prob" => c.trust_prob = p()?,
        "trust-range" => c.trust_range = range(key, value)?,
        "vouch-range" => c.vouch_range = range(key, value)?,
        "gateway-frac" => c.gateway_frac = p()?,
        "gateway-links" => c.gateway_links = u()?,
        "gateway-trust" => c.gateway_trust = p()?,
        "sybil-targets" => c.sybil_targets = u()?,
        "window" => c.window_us = parse_duration(value)?.max(1),
        "two-hop" => c.two_hop_max = u()?,
        "controls" => c.controls = u()?,
        "retry" => c.retry_us = parse_duration(value)?,
        "acquaint" => c.acquaint_mean_us = parse_duration(value)?,
        _ => return Err(format!("unknown option --{key}")),
    }
    script(o);
    Ok(())
}

fn study_options(name: &str, c: StudyConfig, seed: u64, d: u64) -> Options {
    let mut o = Options::base(name, c.honest, seed, d);
    o.topology = Topology::RandomRegular { min: 8, max: 16 };
    o.formation_us = FORMATION_US;
    o.workload.impression_per_hour = 0.0;
    o.workload.adversary_per_hour = 0.0;
    o.workload.start_us = START_US;
    o.workload.accept_pending_until_us = HAND_ACCEPT_UNTIL_US;
    o.study = Some(c);
    script(&mut o);
    o
}

/// The `trust-propagation` scenario: newcomers (one per 50 nodes) vouched for by one random honest
/// node ask its neighbours, their trusting neighbours and a few strangers; nodes that accept a
/// newcomer come to like it (or not) after a while; newcomers ask again every 30 minutes.
pub fn propagation(n: u32, seed: u64, d: u64) -> Options {
    let mut c = StudyConfig::base(StudyKind::Propagation, n);
    c.newcomers = (n / 50).max(2);
    c.window_us = 180 * S;
    c.two_hop_max = 40;
    c.retry_us = 1800 * S;
    c.acquaint_mean_us = 600 * S;
    study_options("trust-propagation", c, seed, d)
}

/// The `sybil` scenario: one Sybil per four honest nodes (`--sybils` to change), one newcomer per 20.
pub fn sybil(n: u32, seed: u64, d: u64) -> Options {
    let mut c = StudyConfig::base(StudyKind::Sybil, n);
    c.newcomers = (n / 20).max(2);
    c.sybils = (n / 4).max(2);
    study_options("sybil", c, seed, d)
}

/// (Re)builds node count, formation exclusions, hand-accept list and script from the study config.
fn script(o: &mut Options) {
    let c = o.study.clone().expect("a study");
    let (_, first_sybil, first_honest) = c.layout();
    let n = first_honest + c.honest;
    o.nodes = n;
    o.isolated = first_honest;
    o.manual_accept = (first_honest..n).collect();
    o.script.clear();
    let mut r = ChaCha8Rng::seed_from_u64(derive(o.seed, STUDY, 0, 0));
    let honest = |r: &mut ChaCha8Rng| first_honest + below(r, c.honest.max(1) as u64) as u32;
    let mut plan: Vec<(u64, Action)> = Vec::new();
    if c.honest > 0 {
        // The Sybils' own mesh and their footholds in the honest one.
        let (lo, hi) =
            (c.sybil_degree.0.min(c.sybils.saturating_sub(1)), c.sybil_degree.1.min(c.sybils.saturating_sub(1)));
        for (a, b) in topology::build(&Topology::RandomRegular { min: lo, max: hi }, c.sybils, &mut r) {
            plan.push((below(&mut r, FORMATION_US), Action::Connect(first_sybil + a, first_sybil + b)));
        }
        for s in first_sybil..first_honest {
            if unit(&mut r) < c.gateway_frac {
                let mut chosen = BTreeSet::new();
                for _ in 0..c.gateway_links.min(c.honest) * 8 {
                    if chosen.len() >= c.gateway_links.min(c.honest) as usize {
                        break;
                    }
                    chosen.insert(honest(&mut r));
                }
                for g in chosen {
                    plan.push((below(&mut r, FORMATION_US), Action::Connect(g, s)));
                }
            }
        }
        plan.push((IMPRESS_AT_US, Action::Study(Step::Impress)));
        // Every Sybil asks many honest nodes.
        for s in first_sybil..first_honest {
            let k = c.sybil_targets.min(c.honest);
            let mut chosen = BTreeSet::new();
            while chosen.len() < k as usize {
                chosen.insert(honest(&mut r));
            }
            for t in chosen {
                plan.push((START_US + below(&mut r, c.window_us), Action::Connect(s, t)));
            }
        }
        // Newcomers arrive, each with one voucher.
        for k in 0..first_sybil {
            let voucher = honest(&mut r);
            let at = START_US + below(&mut r, c.window_us);
            let score = round2(c.vouch_range.0 + (c.vouch_range.1 - c.vouch_range.0) * unit(&mut r));
            plan.push((at, Action::Connect(voucher, k)));
            plan.push((at + 5 * S, Action::Impression(voucher, k, score)));
            plan.push((at + 10 * S, Action::Study(Step::Ask { newcomer: k, voucher })));
        }
    }
    // Stable by time (ties keep plan order): scripted actions then fire in a fixed order.
    plan.sort_by_key(|p| p.0);
    o.script = plan;
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// A step of a study's script.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Honest nodes trust a random subset of their connections; Sybils score each other +1.
    Impress,
    /// A newcomer picks its targets around its voucher and asks them.
    Ask {
        /// The newcomer.
        newcomer: u32,
        /// Its voucher.
        voucher: u32,
    },
    /// A newcomer asks again every target that has not accepted it yet.
    Retry {
        /// The newcomer.
        newcomer: u32,
    },
    /// Notes why each of a newcomer's requests not accepted by now was not (after its first round).
    Diagnose {
        /// The newcomer.
        newcomer: u32,
    },
}

/// How a newcomer's target relates to its voucher.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// A connection of the voucher that trusts the voucher: "vouched for by a trusted peer".
    Vouched,
    /// A connection of the voucher that does not trust it.
    Neighbour,
    /// Not a connection of the voucher, but trusts one of the vouched targets.
    TwoHop,
    /// A random node not near the voucher.
    Control,
}

impl Class {
    /// Every class.
    pub const ALL: [Class; 4] = [Class::Vouched, Class::Neighbour, Class::TwoHop, Class::Control];

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Class::Vouched => "vouched",
            Class::Neighbour => "neighbour",
            Class::TwoHop => "two-hop",
            Class::Control => "control",
        }
    }

    fn color(self) -> RGBColor {
        match self {
            Class::Vouched => RGBColor(0, 90, 200),
            Class::Neighbour => RGBColor(230, 140, 0),
            Class::TwoHop => RGBColor(0, 150, 60),
            Class::Control => RGBColor(120, 120, 120),
        }
    }
}

/// One newcomer's request to one target, as it went.
#[derive(Clone, Debug)]
pub struct Ask {
    /// The newcomer.
    pub newcomer: u32,
    /// The target.
    pub target: u32,
    /// How the target relates to the voucher.
    pub class: Class,
    /// When the newcomer first asked, µs.
    pub first_us: u64,
    /// How many times it asked.
    pub attempts: u32,
    /// When the target first held it as pending (it reached the target and was queued), µs.
    pub pending_us: Option<u64>,
    /// When the target's policy accepted it, µs.
    pub accepted_us: Option<u64>,
    /// How many times the target's policy rejected it.
    pub rejected: u32,
    /// Why the first round did not get it accepted (read from the target's pending record).
    pub first_failure: Option<&'static str>,
}

/// The study's running bookkeeping inside [`Sim`].
pub struct StudyState {
    cfg: StudyConfig,
    rng: ChaCha8Rng,
    asks: Vec<Ask>,
    ask_of: BTreeMap<(u32, u32), usize>,
    sybil_reached: u64,
    sybil_accepted: u64,
    sybil_rejected: u64,
    /// Per honest node: Sybil requests that reached it, Sybils it accepted, first acceptance time.
    per_node: Vec<(u32, u32, Option<u64>)>,
    /// Per honest node: connected to a Sybil at impression time; trusts one.
    gateway: Vec<(bool, bool)>,
    refusals: BTreeMap<String, u64>,
    voucher: BTreeMap<u32, u32>,
}

impl StudyState {
    /// Fresh bookkeeping for a run.
    pub fn new(cfg: &StudyConfig, seed: u64) -> Self {
        Self {
            cfg: cfg.clone(),
            rng: ChaCha8Rng::seed_from_u64(derive(seed, STUDY, 1, 0)),
            asks: Vec::new(),
            ask_of: BTreeMap::new(),
            sybil_reached: 0,
            sybil_accepted: 0,
            sybil_rejected: 0,
            per_node: vec![(0, 0, None); cfg.honest as usize],
            gateway: vec![(false, false); cfg.honest as usize],
            refusals: BTreeMap::new(),
            voucher: BTreeMap::new(),
        }
    }

    fn role(&self, i: u32) -> Role {
        let (_, first_sybil, first_honest) = self.cfg.layout();
        if i < first_sybil {
            Role::Newcomer
        } else if i < first_honest {
            Role::Sybil
        } else {
            Role::Honest(i - first_honest)
        }
    }
}

#[derive(Copy, Clone, PartialEq, Eq)]
enum Role {
    Newcomer,
    Sybil,
    Honest(u32),
}

impl Sim {
    fn st(&mut self) -> &mut StudyState {
        self.study.as_mut().expect("a study run")
    }

    fn trust(&self, who: u32, about: u32) -> f64 {
        self.nodes[who as usize].node.as_ref().map_or(0.0, |n| n.trust_of(&self.nodes[about as usize].agent))
    }

    fn honest_peers(&self, i: u32) -> Vec<u32> {
        let first_honest = self.study.as_ref().expect("study").cfg.layout().2;
        self.nodes[i as usize].peers.iter().copied().filter(|&p| p >= first_honest).collect()
    }

    fn impress(&mut self, a: u32, b: u32, score: f64) {
        let agent_id = self.nodes[b as usize].agent.clone();
        self.command(
            a,
            CmdKind::Impression,
            Command::SetImpression { agent_id, score, note: None },
            b as u64,
            "impression",
        );
    }

    /// Carries out one study step.
    pub(crate) fn study_step(&mut self, step: Step) {
        match step {
            Step::Impress => self.study_impress(),
            Step::Ask { newcomer, voucher } => self.study_ask(newcomer, voucher),
            Step::Retry { newcomer } => self.study_retry(newcomer),
            Step::Diagnose { newcomer } => {
                let voucher = self.st().voucher.get(&newcomer).copied();
                let open: Vec<usize> = self
                    .st()
                    .asks
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| a.newcomer == newcomer && a.accepted_us.is_none() && a.first_failure.is_none())
                    .map(|(k, _)| k)
                    .collect();
                for k in open {
                    let ask = self.st().asks[k].clone();
                    let why = self.why_not(&ask, voucher);
                    self.st().asks[k].first_failure = Some(why);
                }
            }
        }
    }

    fn study_impress(&mut self) {
        let cfg = self.st().cfg.clone();
        let (_, first_sybil, first_honest) = cfg.layout();
        let (lo, hi) = cfg.trust_range;
        for a in first_honest..self.opts.nodes {
            for b in self.nodes[a as usize].peers.clone() {
                let sybil = (first_sybil..first_honest).contains(&b);
                if b < first_sybil {
                    continue;
                }
                let st = self.st();
                if sybil {
                    st.gateway[(a - first_honest) as usize].0 = true;
                }
                let p = if sybil { cfg.gateway_trust } else { cfg.trust_prob };
                if unit(&mut st.rng) < p {
                    let score = round2(lo + (hi - lo) * unit(&mut st.rng));
                    if sybil {
                        st.gateway[(a - first_honest) as usize].1 = true;
                    }
                    self.impress(a, b, score);
                }
            }
        }
        for a in first_sybil..first_honest {
            for b in first_sybil..first_honest {
                if a != b {
                    self.impress(a, b, 1.0);
                }
            }
        }
    }

    fn study_ask(&mut self, newcomer: u32, voucher: u32) {
        let cfg = self.st().cfg.clone();
        let first_honest = cfg.layout().2;
        self.st().voucher.insert(newcomer, voucher);
        let near = self.honest_peers(voucher);
        let (mut vouched, mut neighbour): (Vec<u32>, Vec<u32>) =
            near.iter().partition(|&&t| self.trust(t, voucher) >= TRUSTED_MIN);
        if cfg.single {
            if !vouched.is_empty() {
                let k = below(&mut self.st().rng, vouched.len() as u64) as usize;
                vouched = vec![vouched[k]];
            }
            neighbour.clear();
        }
        let mut two_hop = Vec::new();
        if cfg.two_hop_max > 0 && !cfg.single {
            let mut set = BTreeSet::new();
            for &t in &vouched {
                for u in self.honest_peers(t) {
                    if u != voucher && !near.contains(&u) && self.trust(u, t) >= TRUSTED_MIN {
                        set.insert(u);
                    }
                }
            }
            two_hop = set.into_iter().collect();
            let rng = &mut self.st().rng;
            for j in (1..two_hop.len()).rev() {
                two_hop.swap(j, below(rng, j as u64 + 1) as usize);
            }
            two_hop.truncate(cfg.two_hop_max as usize);
            two_hop.sort_unstable();
        }
        let mut controls = Vec::new();
        for _ in 0..if cfg.single { 0 } else { cfg.controls * 20 } {
            if controls.len() >= cfg.controls as usize {
                break;
            }
            let c = first_honest + below(&mut self.st().rng, cfg.honest as u64) as u32;
            if c != voucher && !near.contains(&c) && !two_hop.contains(&c) && !controls.contains(&c) {
                controls.push(c);
            }
        }
        let targets = vouched
            .iter()
            .map(|&t| (t, Class::Vouched))
            .chain(neighbour.iter().map(|&t| (t, Class::Neighbour)))
            .chain(two_hop.iter().map(|&t| (t, Class::TwoHop)))
            .chain(controls.iter().map(|&t| (t, Class::Control)));
        let inc = self.nodes[newcomer as usize].inc;
        for (target, class) in targets.collect::<Vec<_>>() {
            let at = self.now + below(&mut self.st().rng, cfg.stagger_us.max(1));
            let st = self.st();
            if st.ask_of.contains_key(&(newcomer, target)) {
                continue;
            }
            st.ask_of.insert((newcomer, target), st.asks.len());
            st.asks.push(Ask {
                newcomer,
                target,
                class,
                first_us: at,
                attempts: 1,
                pending_us: None,
                accepted_us: None,
                rejected: 0,
                first_failure: None,
            });
            self.queue.push(at, Ev::Agent { node: newcomer, inc, act: Act::Connect(target) });
        }
        // Every first request has been answered and decided (or not) a minute after the last went out.
        let at = self.now + cfg.stagger_us + 60 * S;
        self.opts.script.push((at, Action::Study(Step::Diagnose { newcomer })));
        self.queue.push(at, Ev::Script(self.opts.script.len() - 1));
        self.schedule_retry(newcomer);
    }

    fn schedule_retry(&mut self, newcomer: u32) {
        let retry = self.st().cfg.retry_us;
        if retry > 0 && self.now + retry <= self.opts.duration_us {
            let at = self.now + retry;
            self.opts.script.push((at, Action::Study(Step::Retry { newcomer })));
            self.queue.push(at, Ev::Script(self.opts.script.len() - 1));
        }
    }

    fn study_retry(&mut self, newcomer: u32) {
        let stagger = self.st().cfg.stagger_us.max(1);
        let inc = self.nodes[newcomer as usize].inc;
        let open: Vec<usize> = {
            let st = self.st();
            st.asks
                .iter()
                .enumerate()
                .filter(|(_, a)| a.newcomer == newcomer && a.accepted_us.is_none())
                .map(|(k, _)| k)
                .collect()
        };
        for k in open {
            let at = self.now + below(&mut self.st().rng, stagger);
            let st = self.st();
            st.asks[k].attempts += 1;
            let target = st.asks[k].target;
            self.queue.push(at, Ev::Agent { node: newcomer, inc, act: Act::Connect(target) });
        }
        self.schedule_retry(newcomer);
    }

    /// Watches the events that matter to the study (called for every event when a study runs).
    pub(crate) fn study_event(&mut self, i: u32, e: &Event) {
        let (agent, decided) = match e {
            Event::ConnectionRequested { agent_id, .. } => (agent_id, None),
            Event::RequestDecided { agent_id, accepted, .. } => (agent_id, Some(*accepted)),
            Event::Refused { path, status, reason } => {
                if self.now < START_US {
                    // Formation's half-open connections refuse a few queries; not the study's business.
                    return;
                }
                let who = match self.st().role(i) {
                    Role::Newcomer => "newcomer",
                    Role::Sybil => "sybil",
                    Role::Honest(_) => "honest",
                };
                let reason: String = reason.chars().take(70).collect();
                *self.st().refusals.entry(format!("{who} answered {} {status}: {reason}", short(path))).or_default() +=
                    1;
                return;
            }
            _ => return,
        };
        let Some(&p) = self.by_agent.get(agent) else { return };
        let now = self.now;
        let st = self.st();
        let Role::Honest(h) = st.role(i) else { return };
        match st.role(p) {
            Role::Sybil => match decided {
                None => {
                    st.sybil_reached += 1;
                    st.per_node[h as usize].0 += 1;
                }
                Some(true) => {
                    st.sybil_accepted += 1;
                    let n = &mut st.per_node[h as usize];
                    n.1 += 1;
                    n.2.get_or_insert(now);
                }
                Some(false) => st.sybil_rejected += 1,
            },
            Role::Newcomer => {
                let Some(&k) = st.ask_of.get(&(p, i)) else { return };
                let a = &mut st.asks[k];
                match decided {
                    None => {
                        a.pending_us.get_or_insert(now);
                    }
                    Some(true) => {
                        a.accepted_us.get_or_insert(now);
                        let (mean, prob, (lo, hi)) = (st.cfg.acquaint_mean_us, st.cfg.trust_prob, st.cfg.trust_range);
                        if mean > 0 && unit(&mut st.rng) < prob {
                            // The accepting agent gets to know the newcomer and forms its own view.
                            let delay = -(1.0 - unit(&mut st.rng)).ln() * mean as f64;
                            let score = round2(lo + (hi - lo) * unit(&mut st.rng));
                            let at = now + delay as u64 + 1;
                            self.opts.script.push((at, Action::Impression(i, p, score)));
                            self.queue.push(at, Ev::Script(self.opts.script.len() - 1));
                        }
                    }
                    Some(false) => a.rejected += 1,
                }
            }
            Role::Honest(_) => {}
        }
    }

    /// What the study measured, if this run is one.
    pub fn study_report(&self) -> Option<StudyReport> {
        let st = self.study.as_ref()?;
        let c = &st.cfg;
        let mut classes = Vec::new();
        for class in Class::ALL {
            let asks: Vec<&Ask> = st.asks.iter().filter(|a| a.class == class).collect();
            let mut delays: Vec<f64> =
                asks.iter().filter_map(|a| a.accepted_us.map(|t| t.saturating_sub(a.first_us) as f64 / 1e6)).collect();
            delays.sort_by(f64::total_cmp);
            let mut at: Vec<f64> = asks.iter().filter_map(|a| a.accepted_us.map(|t| t as f64 / 1e6)).collect();
            at.sort_by(f64::total_cmp);
            classes.push(ClassStats {
                class,
                asked: asks.len() as u32,
                reached: asks.iter().filter(|a| a.pending_us.is_some()).count() as u32,
                accepted: delays.len() as u32,
                rejected: asks.iter().filter(|a| a.rejected > 0).count() as u32,
                delays_s: delays,
                accepted_at_s: at,
            });
        }
        // Per newcomer: accepted by at least one / every vouched target.
        let mut by_newcomer: BTreeMap<u32, (u32, u32, u64, bool)> = BTreeMap::new();
        for a in st.asks.iter().filter(|a| a.class == Class::Vouched) {
            let e = by_newcomer.entry(a.newcomer).or_insert((0, 0, u64::MAX, false));
            e.0 += 1;
            e.1 += a.accepted_us.is_some() as u32;
            // The newcomer's first vouched request: no earlier acceptance of its own can colour it.
            if a.first_us < e.2 {
                e.2 = a.first_us;
                e.3 = a.accepted_us.is_some_and(|t| t < a.first_us + 60 * S);
            }
        }
        let accepted_first = by_newcomer.values().filter(|v| v.3).count() as u32;
        let with_vouched = by_newcomer.len() as u32;
        let accepted_any = by_newcomer.values().filter(|v| v.1 > 0).count() as u32;
        let accepted_all = by_newcomer.values().filter(|v| v.1 == v.0).count() as u32;
        let mut first_accepts: Vec<f64> = st.per_node.iter().filter_map(|n| n.2.map(|t| t as f64 / 1e6)).collect();
        first_accepts.sort_by(f64::total_cmp);
        let accepting = |gw: Option<bool>| {
            st.per_node.iter().zip(&st.gateway).filter(|(n, g)| n.1 > 0 && gw.is_none_or(|want| g.0 == want)).count()
                as u32
        };
        let (first_sybil, first_honest) = (c.layout().1, c.layout().2);
        let mut failures: BTreeMap<&'static str, u32> = BTreeMap::new();
        for a in st.asks.iter().filter(|a| a.class == Class::Vouched) {
            if let Some(why) = a.first_failure {
                *failures.entry(why).or_default() += 1;
            }
        }
        let pending_at_end: Vec<u32> = (first_honest..self.opts.nodes)
            .map(|i| self.nodes[i as usize].counts[crate::invariants::table_index(proto_core::Table::PendingIn)])
            .collect();
        let linked_at_end = (first_honest..self.opts.nodes)
            .filter(|&i| self.nodes[i as usize].peers.iter().any(|p| (first_sybil..first_honest).contains(p)))
            .count() as u32;
        Some(StudyReport {
            kind: c.kind,
            policy: self.opts.trust_policy,
            honest: c.honest,
            newcomers: c.newcomers,
            sybils: c.sybils,
            duration_s: self.opts.duration_us as f64 / 1e6,
            classes,
            newcomers_with_vouched: with_vouched,
            newcomers_accepted_any: accepted_any,
            newcomers_accepted_all: accepted_all,
            newcomers_first_accepted: accepted_first,
            sybil_requests_planned: self.opts.script.iter().filter(|(_, a)| matches!(a, Action::Connect(s, t) if (first_sybil..first_honest).contains(s) && *t >= first_honest)).count() as u64,
            sybil_requests_reached: st.sybil_reached,
            sybil_accepted: st.sybil_accepted,
            sybil_rejected: st.sybil_rejected,
            honest_accepting_sybil: accepting(None),
            gateway_accepting_sybil: accepting(Some(true)),
            gateways: st.gateway.iter().filter(|g| g.0).count() as u32,
            trusting_gateways: st.gateway.iter().filter(|g| g.1).count() as u32,
            honest_linked_to_sybil_at_end: linked_at_end,
            sybil_first_accepts_s: first_accepts,
            max_sybil_requests_at_one_node: st.per_node.iter().map(|n| n.0).max().unwrap_or(0),
            pending_max_at_end: pending_at_end.iter().copied().max().unwrap_or(0),
            pending_full_at_end: pending_at_end.iter().filter(|&&c| c as usize >= proto_core::limits::PENDING_REQUESTS_MAX).count() as u32,
            refusals: st.refusals.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            asks: st.asks.clone(),
            vouched_failures: failures.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            end_failures: {
                let mut m: BTreeMap<(Class, &'static str), u32> = BTreeMap::new();
                for a in st.asks.iter().filter(|a| a.accepted_us.is_none()) {
                    *m.entry((a.class, self.why_not(a, st.voucher.get(&a.newcomer).copied()))).or_default() += 1;
                }
                m.into_iter().map(|((c, k), v)| (c, k.to_owned(), v)).collect()
            },
        })
    }

    /// Why a request is not accepted, read from the pending record the target holds now.
    fn why_not(&self, a: &Ask, voucher: Option<u32>) -> &'static str {
        let newcomer = &self.nodes[a.newcomer as usize].agent;
        let target = &self.nodes[a.target as usize];
        let pending = target
            .store
            .iter()
            .filter(|((t, _), _)| *t == proto_core::Table::PendingIn)
            .filter_map(|(_, bytes)| proto_core::store::decode::<proto_core::store::PendingIn>(bytes).ok())
            .find(|p| p.agent_id.as_str() == newcomer);
        let Some(p) = pending else { return "not pending at the target (never reached it, or expired)" };
        let Some(t) = p.peer_trust.filter(|t| t.complete()) else { return "peer opinions not all in" };
        if let (Class::Vouched, Some(v)) = (a.class, voucher) {
            let v_agent = &self.nodes[v as usize].agent;
            if !t.opinions.iter().any(|o| &o.0 == v_agent) {
                // Where the voucher ranks among the target's connections (most trusted first, ties by id).
                let tv = self.trust(a.target, v);
                let rank = target
                    .peers
                    .iter()
                    .filter(|&&q| q != a.newcomer && q != v)
                    .filter(|&&q| {
                        let tq = self.trust(a.target, q);
                        tq > tv || (tq == tv && self.nodes[q as usize].agent < *v_agent)
                    })
                    .count();
                return if rank >= proto_core::limits::TRUST_QUERY_FANOUT_MAX {
                    "voucher not among the 8 most trusted peers asked"
                } else if self.trust(v, a.target) < proto_core::limits::TRUST_ANSWER_MIN {
                    "voucher refused to answer: its impression of the target fell below 0"
                } else {
                    "voucher asked but gave no opinion (lost, or a half-open connection)"
                };
            }
        }
        let weighted = self.opts.trust_policy == TrustPolicy::Weighted;
        if weighted && t.weight == 0.0 || !weighted && t.opinions.is_empty() {
            return "no opinion from a peer it trusts";
        }
        if weighted && t.weight < proto_core::limits::TRUST_CONFIDENCE_MIN {
            return "total weight below the confidence minimum";
        }
        let score = t.score.unwrap_or(0.0);
        let min = proto_core::limits::TRUST_ACCEPT_MIN_DEFAULT;
        if score >= min {
            return "score high enough, yet not accepted (target full?)";
        }
        // Would the first-hand opinions alone have carried it? Hearsay-sized scores (|s| < 0.2) are
        // what a node's impression becomes from peers' reports alone (TRUST_REPORT_WEIGHT = 0.1).
        let firm: Vec<&(String, f64, f64)> =
            t.opinions.iter().filter(|o| o.1.abs() >= HEARSAY_MAX && o.2 > 0.0).collect();
        let w: f64 = firm.iter().map(|o| o.2).sum();
        if w > 0.0
            && firm.iter().map(|o| o.1 * o.2).sum::<f64>() / w >= min
            && (!weighted || w >= proto_core::limits::TRUST_CONFIDENCE_MIN)
        {
            "averaged below 0.5 by hearsay-sized opinions"
        } else if firm.is_empty() {
            "only hearsay-sized opinions"
        } else {
            "first-hand opinions average below 0.5"
        }
    }
}

/// One class of newcomer requests.
#[derive(Clone, Debug)]
pub struct ClassStats {
    /// Which.
    pub class: Class,
    /// Requests (newcomer, target) of this class.
    pub asked: u32,
    /// Of those, held as pending by the target at least once.
    pub reached: u32,
    /// Accepted by the target's policy.
    pub accepted: u32,
    /// Rejected by it at least once.
    pub rejected: u32,
    /// Time from the first request to acceptance, s, sorted.
    pub delays_s: Vec<f64>,
    /// Simulated time of each acceptance, s, sorted.
    pub accepted_at_s: Vec<f64>,
}

impl ClassStats {
    /// Accepted fraction.
    pub fn ratio(&self) -> f64 {
        if self.asked == 0 {
            f64::NAN
        } else {
            self.accepted as f64 / self.asked as f64
        }
    }
}

/// The `q` quantile (0..1) of sorted values.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let k = ((sorted.len() - 1) as f64 * q).round() as usize;
    Some(sorted[k])
}

/// What a study run measured.
#[derive(Clone, Debug)]
pub struct StudyReport {
    /// Which study.
    pub kind: StudyKind,
    /// The policy every node ran.
    pub policy: TrustPolicy,
    /// Honest mesh nodes.
    pub honest: u32,
    /// Newcomers.
    pub newcomers: u32,
    /// Sybils.
    pub sybils: u32,
    /// Simulated duration, s.
    pub duration_s: f64,
    /// Newcomer requests by class.
    pub classes: Vec<ClassStats>,
    /// Newcomers with at least one vouched target.
    pub newcomers_with_vouched: u32,
    /// Of those, accepted by at least one vouched target.
    pub newcomers_accepted_any: u32,
    /// Of those, accepted by every vouched target.
    pub newcomers_accepted_all: u32,
    /// Of those, accepted (within a minute) by the vouched target they asked first.
    pub newcomers_first_accepted: u32,
    /// Sybil requests scripted.
    pub sybil_requests_planned: u64,
    /// Sybil requests an honest node held as pending.
    pub sybil_requests_reached: u64,
    /// Sybil requests honest nodes' policies accepted.
    pub sybil_accepted: u64,
    /// Sybil requests honest nodes' policies rejected.
    pub sybil_rejected: u64,
    /// Honest nodes that auto-accepted at least one Sybil.
    pub honest_accepting_sybil: u32,
    /// Of those, nodes that had a Sybil connection before the attack.
    pub gateway_accepting_sybil: u32,
    /// Honest nodes with a Sybil connection before the attack.
    pub gateways: u32,
    /// Of those, nodes that trust their Sybil.
    pub trusting_gateways: u32,
    /// Honest nodes connected to at least one Sybil at the end.
    pub honest_linked_to_sybil_at_end: u32,
    /// When each honest node first accepted a Sybil, s, sorted.
    pub sybil_first_accepts_s: Vec<f64>,
    /// Most Sybil requests that reached one honest node (over the run).
    pub max_sybil_requests_at_one_node: u32,
    /// Largest queue of pending requests at an honest node at the end.
    pub pending_max_at_end: u32,
    /// Honest nodes whose pending queue is full (`PENDING_REQUESTS_MAX`) at the end: they refuse
    /// every new request, a vouched newcomer's included.
    pub pending_full_at_end: u32,
    /// Refusals seen, by who, endpoint, status and reason.
    pub refusals: Vec<(String, u64)>,
    /// Every newcomer request.
    pub asks: Vec<Ask>,
    /// Why vouched requests were not accepted in their first round (cause, count).
    pub vouched_failures: Vec<(String, u32)>,
    /// Why requests still not accepted at the end are not, by class (from the targets' pending records).
    pub end_failures: Vec<(Class, String, u32)>,
}

fn pct(a: u64, b: u64) -> String {
    if b == 0 {
        "n/a".to_owned()
    } else {
        format!("{:.1}%", 100.0 * a as f64 / b as f64)
    }
}

fn secs(x: Option<f64>) -> String {
    match x {
        None => "-".to_owned(),
        Some(s) if s < 60.0 => format!("{s:.2} s"),
        Some(s) => format!("{:.1} min", s / 60.0),
    }
}

impl StudyReport {
    /// The class's stats.
    pub fn class(&self, c: Class) -> &ClassStats {
        self.classes.iter().find(|s| s.class == c).expect("every class")
    }

    /// Fraction of honest nodes that auto-accepted at least one Sybil.
    pub fn sybil_node_ratio(&self) -> f64 {
        self.honest_accepting_sybil as f64 / self.honest.max(1) as f64
    }

    /// The summary lines `darkmatter-sim run` prints.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let policy = match self.policy {
            TrustPolicy::Weighted => "weighted (default)",
            TrustPolicy::PlainAverage => "plain average",
        };
        s += &format!(
            "trust study        {} honest nodes, {} newcomers, {} Sybils; policy {policy}\n",
            self.honest, self.newcomers, self.sybils
        );
        for c in &self.classes {
            if c.asked == 0 {
                continue;
            }
            s += &format!(
                "  {:<10}       {} of {} requests accepted ({}); {} reached the target, {} rejected; time to accept median {}, p90 {}, max {}\n",
                c.class.name(),
                c.accepted,
                c.asked,
                pct(c.accepted as u64, c.asked as u64),
                c.reached,
                c.rejected,
                secs(quantile(&c.delays_s, 0.5)),
                secs(quantile(&c.delays_s, 0.9)),
                secs(c.delays_s.last().copied())
            );
        }
        s += &format!(
            "  newcomers        {} with a vouched target: {} accepted by the first one they asked ({}), {} by at least one ({}), {} by every one\n",
            self.newcomers_with_vouched,
            self.newcomers_first_accepted,
            pct(self.newcomers_first_accepted as u64, self.newcomers_with_vouched as u64),
            self.newcomers_accepted_any,
            pct(self.newcomers_accepted_any as u64, self.newcomers_with_vouched as u64),
            self.newcomers_accepted_all
        );
        if self.sybils > 0 {
            s += &format!(
                "  sybils           {} honest nodes of {} auto-accepted at least one Sybil ({}; {} of them had a Sybil connection before)\n",
                self.honest_accepting_sybil,
                self.honest,
                pct(self.honest_accepting_sybil as u64, self.honest as u64),
                self.gateway_accepting_sybil
            );
            s += &format!(
                "  sybil requests   {} sent, {} held pending, {} accepted, {} rejected; at most {} at one node\n",
                self.sybil_requests_planned,
                self.sybil_requests_reached,
                self.sybil_accepted,
                self.sybil_rejected,
                self.max_sybil_requests_at_one_node
            );
            s += &format!(
                "  pending queues   at the end: longest {} of {}; {} honest nodes full (refusing every new request)\n",
                self.pending_max_at_end,
                proto_core::limits::PENDING_REQUESTS_MAX,
                self.pending_full_at_end
            );
            s += &format!(
                "  footholds        {} honest nodes connected to a Sybil before the attack ({} trust it), {} at the end\n",
                self.gateways, self.trusting_gateways, self.honest_linked_to_sybil_at_end
            );
        }
        for (k, v) in &self.vouched_failures {
            s += &format!("  vouched, first round not accepted: {v} x {k}\n");
        }
        for (c, k, v) in &self.end_failures {
            s += &format!("  {}, not accepted at the end: {v} x {k}\n", c.name());
        }
        for (k, v) in &self.refusals {
            s += &format!("  refused          {v} x {k}\n");
        }
        s
    }

    /// One line per newcomer request.
    pub fn asks_csv(&self) -> String {
        let mut s = String::from(
            "newcomer,target,class,first_request_s,attempts,pending_s,accepted_s,rejected,first_round_failure\n",
        );
        let t = |x: Option<u64>| x.map(|v| format!("{:.3}", v as f64 / 1e6)).unwrap_or_default();
        for a in &self.asks {
            s += &format!(
                "{},{},{},{:.3},{},{},{},{},{}\n",
                a.newcomer,
                a.target,
                a.class.name(),
                a.first_us as f64 / 1e6,
                a.attempts,
                t(a.pending_us),
                t(a.accepted_us),
                a.rejected,
                a.first_failure.unwrap_or("")
            );
        }
        s
    }

    /// The plot: acceptance over simulated time (top), time from request to acceptance (bottom).
    pub fn svg(&self, title: &str) -> Result<String, String> {
        let mut out = String::new();
        {
            let root = SVGBackend::with_string(&mut out, (800, 640)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| e.to_string())?;
            let (top, bottom) = root.split_vertically(320);
            let minutes = self.duration_s / 60.0;
            let mut series = Vec::new();
            for c in &self.classes {
                if c.asked > 0 {
                    let pts: Vec<f64> = c.accepted_at_s.iter().map(|t| t / 60.0).collect();
                    series.push(Series::new(
                        format!("{} newcomer requests accepted ({})", c.class.name(), c.asked),
                        c.class.color(),
                        cumulative(&pts, c.asked as f64, minutes),
                    ));
                }
            }
            if self.sybils > 0 {
                let pts: Vec<f64> = self.sybil_first_accepts_s.iter().map(|t| t / 60.0).collect();
                series.push(Series::new(
                    "honest nodes that accepted a Sybil".to_owned(),
                    RGBColor(200, 0, 0),
                    cumulative(&pts, self.honest as f64, minutes),
                ));
            }
            line_chart(
                &top,
                &format!("{title}: acceptance over simulated time"),
                "simulated time (min)",
                "fraction",
                (0.0, minutes),
                false,
                SeriesLabelPosition::MiddleRight,
                &series,
            )?;
            let mut series = Vec::new();
            for c in &self.classes {
                if c.accepted > 0 {
                    let pts: Vec<f64> = c.delays_s.iter().map(|d| d.max(0.01)).collect();
                    series.push(Series::new(
                        format!("{} (of {} asked)", c.class.name(), c.asked),
                        c.class.color(),
                        cumulative(&pts, c.asked as f64, self.duration_s),
                    ));
                }
            }
            line_chart(
                &bottom,
                "newcomer requests accepted, by time since the newcomer's first request",
                "seconds since first request (log)",
                "fraction",
                (0.01, self.duration_s.max(1.0)),
                true,
                SeriesLabelPosition::MiddleRight,
                &series,
            )?;
            root.present().map_err(|e| e.to_string())?;
        }
        Ok(out)
    }
}

/// A plotted line.
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Colour.
    pub color: RGBColor,
    /// Points.
    pub points: Vec<(f64, f64)>,
    /// Dashed rather than solid.
    pub dashed: bool,
    /// Stroke width.
    pub width: u32,
}

impl Series {
    /// A solid line of width 2.
    pub fn new(label: String, color: RGBColor, points: Vec<(f64, f64)>) -> Self {
        Self { label, color, points, dashed: false, width: 2 }
    }
}

/// A step curve: the fraction of `total` reached by each sorted time, until `end` (at most ~300 steps).
pub fn cumulative(sorted: &[f64], total: f64, end: f64) -> Vec<(f64, f64)> {
    let mut pts = Vec::new();
    let total = total.max(1.0);
    let stride = sorted.len().div_ceil(300).max(1);
    let first = sorted.first().copied().unwrap_or(end);
    pts.push((first.min(end), 0.0));
    for (k, &t) in sorted.iter().enumerate() {
        if (k + 1) % stride == 0 || k + 1 == sorted.len() {
            let y0 = pts.last().map_or(0.0, |p| p.1);
            pts.push((t, y0));
            pts.push((t, (k + 1) as f64 / total));
        }
    }
    let y = pts.last().map_or(0.0, |p| p.1);
    pts.push((end, y));
    pts
}

/// Draws lines on `area` (fractions 0..1 on y).
#[allow(clippy::too_many_arguments)]
pub fn line_chart(
    area: &DrawingArea<SVGBackend, Shift>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    x: (f64, f64),
    log_x: bool,
    legend: SeriesLabelPosition,
    series: &[Series],
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<_>| e.to_string();
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart.configure_mesh().max_light_lines(1).x_desc(x_desc).y_desc(y_desc).draw().map_err(e)?;
            for s in series {
                let (color, width) = (s.color, s.width);
                let drawn = if s.dashed {
                    chart
                        .draw_series(DashedLineSeries::new(s.points.iter().copied(), 6, 4, color.stroke_width(width)))
                        .map_err(e)?
                } else {
                    chart
                        .draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(width)))
                        .map_err(e)?
                };
                drawn
                    .label(s.label.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(width)));
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(legend)
                .label_font(("sans-serif", 12))
                .draw()
                .map_err(e)?;
        }};
    }
    let builder = || {
        let mut b = ChartBuilder::on(area);
        b.caption(title, ("sans-serif", 16)).margin(10).x_label_area_size(35).y_label_area_size(50);
        b
    };
    if log_x {
        draw!(builder().build_cartesian_2d((x.0..x.1).log_scale(), 0.0..1.05).map_err(e)?);
    } else {
        draw!(builder().build_cartesian_2d(x.0..x.1, 0.0..1.05).map_err(e)?);
    }
    Ok(())
}

/// The duration text of a config's retry (for summaries).
pub fn retry_text(c: &StudyConfig) -> String {
    if c.retry_us == 0 {
        "never".to_owned()
    } else {
        format_duration(c.retry_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn study_overrides_rebuild_the_layout_and_reproduce() {
        let mut o = sybil(1000, 3, 1200 * S);
        assert_eq!(o.nodes, 1000 + 50 + 250);
        o.apply("sybils", "500").unwrap();
        o.apply("policy", "plain").unwrap();
        assert_eq!(o.nodes, 1000 + 50 + 500);
        assert_eq!(o.isolated, 550);
        assert_eq!(o.manual_accept.len(), 1000);
        assert_eq!(o.trust_policy, TrustPolicy::PlainAverage);
        assert_eq!(
            o.command_line(),
            "darkmatter-sim run sybil --nodes 1000 --seed 3 --duration 20m --sybils 500 --policy plain"
        );
        let requests = o
            .script
            .iter()
            .filter(|(_, a)| matches!(a, Action::Connect(s, t) if (50..550).contains(s) && *t >= 550))
            .count();
        assert_eq!(requests, 500 * 60);
        assert!(o.script.windows(2).all(|w| w[0].0 <= w[1].0), "script in time order");
        assert!(o.apply("gateway-trust", "2").is_err());
        assert!(o.apply("vouch-range", "0.9..0.1").is_err());
        // Not a study: the study's keys are unknown.
        let formation = crate::scenario::find("formation").unwrap();
        let mut f = (formation.build)(10, 1, 60 * S);
        assert!(f.apply("sybils", "5").is_err());
    }
}
