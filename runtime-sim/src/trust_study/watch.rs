//! The study's observer: it steps in at the planned moments (impressions, newcomers' requests and
//! their retries, the first-round diagnosis) and tallies what the honest nodes' policies decide.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};

use proto_core::Event;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

use super::diagnose::{carried, why_not, Carried};
use super::report::{Ask, Class};
use super::setup::{plan, round2, StudyConfig, COMPROMISED_PER_MILLE, FARM_INTERVAL_US};
use super::{S, START_US, STUDY, TRUSTED_MIN};
use crate::observer::{Hooks, Observer};
use crate::rng::derive;
use crate::scenario::Action;
use crate::sim::{short, Sim};
use crate::topology::{below, unit};

/// Every first request of a newcomer has been answered and decided (or not) this long after the
/// last of them went out: then the diagnosis of its first round runs.
const FIRST_ROUND_SETTLED_US: u64 = 60 * S;
/// A refusal's reason is kept to this many characters in the tally (the rest is detail).
const REFUSAL_REASON_CHARS_MAX: usize = 70;

/// A step of a study's plan, run when its wake-up is due.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Step {
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
    /// Trust farming starts: each foothold's owner asks its Sybil something every
    /// [`FARM_INTERVAL_US`] until the attack.
    Farm,
    /// A Sybil asks honest nodes next to the footholds (`neighbours`).
    SybilAsk {
        /// The Sybil.
        sybil: u32,
    },
}

/// What a node is in the study's layout.
#[derive(Copy, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    Newcomer,
    Sybil,
    /// The honest node with this index among the honest ones.
    Honest(u32),
}

/// The study's running bookkeeping: the observer of a `trust-propagation` or `sybil` run.
pub(crate) struct StudyObserver {
    pub(crate) cfg: StudyConfig,
    rng: ChaCha8Rng,
    /// Steps by wake-up token (a step's token is its index).
    steps: Vec<Step>,
    pub(crate) asks: Vec<Ask>,
    ask_of: BTreeMap<(u32, u32), usize>,
    pub(crate) sybil_reached: u64,
    pub(crate) sybil_accepted: u64,
    pub(crate) sybil_rejected: u64,
    /// Per honest node: Sybil requests that reached it, Sybils it accepted, first acceptance time.
    pub(crate) per_node: Vec<(u32, u32, Option<u64>)>,
    /// Per honest node: connected to a Sybil at impression time; trusts one.
    pub(crate) gateway: Vec<(bool, bool)>,
    pub(crate) refusals: BTreeMap<String, u64>,
    pub(crate) voucher: BTreeMap<u32, u32>,
    /// When each Sybil request (honest node, Sybil) first reached its target, µs.
    sybil_pending_us: BTreeMap<(u32, u32), u64>,
    /// What stood behind each acceptance of a Sybil, and of a vouched newcomer.
    pub(crate) carried: Vec<Carried>,
}

/// The observer of a study run with config `cfg` under `seed`.
pub(crate) fn observer(cfg: &StudyConfig, seed: u64) -> Box<dyn Observer> {
    Box::new(StudyObserver::new(cfg, seed))
}

/// Node `who`'s trust in `about` (0 while `who` is down).
pub(crate) fn trust(sim: &Sim, who: u32, about: u32) -> f64 {
    sim.core(who).map_or(0.0, |n| n.inspect().trust_of(sim.agent(about)))
}

impl StudyObserver {
    /// Fresh bookkeeping for a run.
    fn new(cfg: &StudyConfig, seed: u64) -> Self {
        Self {
            cfg: cfg.clone(),
            rng: ChaCha8Rng::seed_from_u64(derive(seed, STUDY, 1, 0)),
            steps: Vec::new(),
            asks: Vec::new(),
            ask_of: BTreeMap::new(),
            sybil_reached: 0,
            sybil_accepted: 0,
            sybil_rejected: 0,
            per_node: vec![(0, 0, None); cfg.honest as usize],
            gateway: vec![(false, false); cfg.honest as usize],
            refusals: BTreeMap::new(),
            voucher: BTreeMap::new(),
            sybil_pending_us: BTreeMap::new(),
            carried: Vec::new(),
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

    fn honest_peers(&self, sim: &Sim, i: u32) -> Vec<u32> {
        let first_honest = self.cfg.layout().2;
        sim.peers(i).iter().copied().filter(|&p| p >= first_honest).collect()
    }

    /// Runs `step` at `at_us`.
    fn schedule(&mut self, hooks: &mut Hooks, at_us: u64, step: Step) {
        hooks.wake(at_us, self.steps.len() as u64);
        self.steps.push(step);
    }

    fn impress(&mut self, sim: &Sim, hooks: &mut Hooks) {
        let (_, first_sybil, first_honest) = self.cfg.layout();
        let (lo, hi) = self.cfg.trust_range;
        for a in first_honest..sim.options().nodes {
            for &b in sim.peers(a) {
                let sybil = (first_sybil..first_honest).contains(&b);
                if b < first_sybil {
                    continue;
                }
                if sybil {
                    self.gateway[(a - first_honest) as usize].0 = true;
                }
                let p = if sybil { self.cfg.gateway_trust } else { self.cfg.trust_prob };
                if unit(&mut self.rng) < p {
                    let score = round2(lo + (hi - lo) * unit(&mut self.rng));
                    if sybil {
                        self.gateway[(a - first_honest) as usize].1 = true;
                    }
                    hooks.impression(a, b, score);
                }
            }
        }
        for a in first_sybil..first_honest {
            for b in first_sybil..first_honest {
                if a != b {
                    hooks.impression(a, b, 1.0);
                }
            }
        }
        if self.cfg.adversary.compromised {
            // Compromised nodes: their own impressions of the Sybils, first-hand, served to whoever asks.
            let k = (self.cfg.honest * COMPROMISED_PER_MILLE).div_ceil(1000);
            for _ in 0..k {
                let h = first_honest + below(&mut self.rng, self.cfg.honest as u64) as u32;
                for s in first_sybil..first_honest {
                    hooks.impression(h, s, 1.0);
                }
            }
        }
    }

    /// Trust farming: each honest node with a Sybil connection sends it a message every
    /// [`FARM_INTERVAL_US`] (random phase) until the attack; the Sybil answers every one.
    fn farm(&mut self, sim: &Sim, hooks: &mut Hooks) {
        let (_, first_sybil, first_honest) = self.cfg.layout();
        let until = START_US + self.cfg.attack_after_us;
        for h in first_honest..sim.options().nodes {
            for &s in sim.peers(h).iter().filter(|&&p| (first_sybil..first_honest).contains(&p)) {
                let mut at = sim.now_us() + below(&mut self.rng, FARM_INTERVAL_US);
                while at < until {
                    hooks.schedule(at, Action::Send(h, s));
                    at += FARM_INTERVAL_US;
                }
            }
        }
    }

    /// A Sybil asks up to `sybil_targets` honest nodes connected to a foothold (an honest node with a
    /// Sybil connection), spread over the stagger.
    fn sybil_ask(&mut self, sim: &Sim, hooks: &mut Hooks, sybil: u32) {
        let (_, first_sybil, first_honest) = self.cfg.layout();
        let is_sybil = |p: &u32| (first_sybil..first_honest).contains(p);
        let mut near = BTreeSet::new();
        for h in first_honest..sim.options().nodes {
            if sim.peers(h).iter().any(is_sybil) {
                near.extend(self.honest_peers(sim, h).into_iter().filter(|&p| !sim.peers(p).iter().any(is_sybil)));
            }
        }
        let mut near: Vec<u32> = near.into_iter().collect();
        for j in (1..near.len()).rev() {
            near.swap(j, below(&mut self.rng, j as u64 + 1) as usize);
        }
        near.truncate(self.cfg.sybil_targets as usize);
        for t in near {
            let at = sim.now_us() + below(&mut self.rng, self.cfg.stagger_us.max(1));
            hooks.connect(at, sybil, t);
        }
    }

    /// The newcomer's targets around its voucher, each with its class, in asking order.
    fn targets(&mut self, sim: &Sim, voucher: u32) -> Vec<(u32, Class)> {
        let cfg = self.cfg.clone();
        let first_honest = cfg.layout().2;
        let near = self.honest_peers(sim, voucher);
        let (mut vouched, mut neighbour): (Vec<u32>, Vec<u32>) =
            near.iter().partition(|&&t| trust(sim, t, voucher) >= TRUSTED_MIN);
        if cfg.single {
            if !vouched.is_empty() {
                let k = below(&mut self.rng, vouched.len() as u64) as usize;
                vouched = vec![vouched[k]];
            }
            neighbour.clear();
        }
        let mut two_hop = Vec::new();
        if cfg.two_hop_max > 0 && !cfg.single {
            let mut set = BTreeSet::new();
            for &t in &vouched {
                for u in self.honest_peers(sim, t) {
                    if u != voucher && !near.contains(&u) && trust(sim, u, t) >= TRUSTED_MIN {
                        set.insert(u);
                    }
                }
            }
            two_hop = set.into_iter().collect();
            for j in (1..two_hop.len()).rev() {
                two_hop.swap(j, below(&mut self.rng, j as u64 + 1) as usize);
            }
            two_hop.truncate(cfg.two_hop_max as usize);
            two_hop.sort_unstable();
        }
        let mut controls = Vec::new();
        for _ in 0..if cfg.single { 0 } else { cfg.controls * 20 } {
            if controls.len() >= cfg.controls as usize {
                break;
            }
            let c = first_honest + below(&mut self.rng, cfg.honest as u64) as u32;
            if c != voucher && !near.contains(&c) && !two_hop.contains(&c) && !controls.contains(&c) {
                controls.push(c);
            }
        }
        vouched
            .iter()
            .map(|&t| (t, Class::Vouched))
            .chain(neighbour.iter().map(|&t| (t, Class::Neighbour)))
            .chain(two_hop.iter().map(|&t| (t, Class::TwoHop)))
            .chain(controls.iter().map(|&t| (t, Class::Control)))
            .collect()
    }

    fn ask(&mut self, sim: &Sim, hooks: &mut Hooks, newcomer: u32, voucher: u32) {
        let now = sim.now_us();
        let stagger = self.cfg.stagger_us;
        self.voucher.insert(newcomer, voucher);
        if self.cfg.adversary.slander {
            let (_, first_sybil, first_honest) = self.cfg.layout();
            for s in first_sybil..first_honest {
                hooks.impression(s, newcomer, -1.0);
            }
        }
        for (target, class) in self.targets(sim, voucher) {
            let at = now + below(&mut self.rng, stagger.max(1));
            if self.ask_of.contains_key(&(newcomer, target)) {
                continue;
            }
            self.ask_of.insert((newcomer, target), self.asks.len());
            self.asks.push(Ask {
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
            hooks.connect(at, newcomer, target);
        }
        self.schedule(hooks, now + stagger + FIRST_ROUND_SETTLED_US, Step::Diagnose { newcomer });
        self.schedule_retry(sim, hooks, newcomer);
    }

    fn schedule_retry(&mut self, sim: &Sim, hooks: &mut Hooks, newcomer: u32) {
        let retry = self.cfg.retry_us;
        let at = sim.now_us() + retry;
        if retry > 0 && at <= sim.options().duration_us {
            self.schedule(hooks, at, Step::Retry { newcomer });
        }
    }

    fn retry(&mut self, sim: &Sim, hooks: &mut Hooks, newcomer: u32) {
        let stagger = self.cfg.stagger_us.max(1);
        for a in self.asks.iter_mut().filter(|a| a.newcomer == newcomer && a.accepted_us.is_none()) {
            let at = sim.now_us() + below(&mut self.rng, stagger);
            a.attempts += 1;
            hooks.connect(at, newcomer, a.target);
        }
        self.schedule_retry(sim, hooks, newcomer);
    }

    fn diagnose(&mut self, sim: &Sim, newcomer: u32) {
        let voucher = self.voucher.get(&newcomer).copied();
        let policy = sim.options().trust_policy;
        for a in self.asks.iter_mut() {
            if a.newcomer == newcomer && a.accepted_us.is_none() && a.first_failure.is_none() {
                a.first_failure = Some(why_not(sim, a, voucher, policy));
            }
        }
    }

    /// A refusal after the start, tallied by who refused, where, and why.
    fn refused(&mut self, node: u32, path: &str, status: u16, reason: &str) {
        let who = match self.role(node) {
            Role::Newcomer => "newcomer",
            Role::Sybil => "sybil",
            Role::Honest(_) => "honest",
        };
        let reason: String = reason.chars().take(REFUSAL_REASON_CHARS_MAX).collect();
        *self.refusals.entry(format!("{who} answered {} {status}: {reason}", short(path))).or_default() += 1;
    }

    /// Sybil `p`'s request reached honest node `i` (the `h`th; `decided` None) or its policy decided it.
    fn sybil_request(&mut self, sim: &Sim, (i, h, p): (u32, u32, u32), decided: Option<bool>, now: u64) {
        match decided {
            None => {
                self.sybil_reached += 1;
                self.per_node[h as usize].0 += 1;
                self.sybil_pending_us.entry((i, p)).or_insert(now);
            }
            Some(true) => {
                let since = self.sybil_pending_us.get(&(i, p)).copied().unwrap_or(now);
                let (_, first_sybil, first_honest) = self.cfg.layout();
                let after_s = now.saturating_sub(since) as f64 / 1e6;
                self.carried.push(carried(sim, i, p, first_sybil..first_honest, after_s));
                self.sybil_accepted += 1;
                let n = &mut self.per_node[h as usize];
                n.1 += 1;
                n.2.get_or_insert(now);
            }
            Some(false) => self.sybil_rejected += 1,
        }
    }

    /// Newcomer `p`'s request reached honest node `i` (`decided` None) or its policy decided it.
    fn newcomer_request(&mut self, sim: &Sim, hooks: &mut Hooks, (i, p): (u32, u32), decided: Option<bool>, now: u64) {
        let Some(&k) = self.ask_of.get(&(p, i)) else { return };
        let (_, first_sybil, first_honest) = self.cfg.layout();
        let a = &mut self.asks[k];
        match decided {
            None => {
                a.pending_us.get_or_insert(now);
            }
            Some(true) => {
                if a.class == Class::Vouched && a.accepted_us.is_none() {
                    let after_s = now.saturating_sub(a.pending_us.unwrap_or(now)) as f64 / 1e6;
                    self.carried.push(carried(sim, i, p, first_sybil..first_honest, after_s));
                }
                let a = &mut self.asks[k];
                a.accepted_us.get_or_insert(now);
                let (mean, prob, (lo, hi)) = (self.cfg.acquaint_mean_us, self.cfg.trust_prob, self.cfg.trust_range);
                if mean > 0 && unit(&mut self.rng) < prob {
                    // The accepting agent gets to know the newcomer and forms its own view.
                    let delay = -(1.0 - unit(&mut self.rng)).ln() * mean as f64;
                    let score = round2(lo + (hi - lo) * unit(&mut self.rng));
                    hooks.schedule(now + delay as u64 + 1, Action::Impression(i, p, score));
                }
            }
            Some(false) => a.rejected += 1,
        }
    }
}

impl Observer for StudyObserver {
    fn start(&mut self, sim: &Sim, hooks: &mut Hooks) {
        for (at, step) in plan(&self.cfg, sim.options().seed).steps {
            self.schedule(hooks, at, step);
        }
    }

    fn on_event(&mut self, sim: &Sim, i: u32, e: &Event, hooks: &mut Hooks) {
        let (agent, decided) = match e {
            Event::ConnectionRequested { agent_id, .. } => (agent_id, None),
            Event::RequestDecided { agent_id, accepted, .. } => (agent_id, Some(*accepted)),
            // Formation's half-open connections refuse a few queries; not the study's business.
            Event::Refused { path, status, reason } if sim.now_us() >= START_US => {
                return self.refused(i, path, *status, reason)
            }
            _ => return,
        };
        let Some(p) = sim.index_of(agent.as_str()) else { return };
        let Role::Honest(h) = self.role(i) else { return };
        match self.role(p) {
            Role::Sybil => self.sybil_request(sim, (i, h, p), decided, sim.now_us()),
            Role::Newcomer => self.newcomer_request(sim, hooks, (i, p), decided, sim.now_us()),
            Role::Honest(_) => {}
        }
    }

    fn on_wake(&mut self, sim: &Sim, token: u64, hooks: &mut Hooks) {
        let Some(step) = self.steps.get(token as usize).cloned() else { return };
        match step {
            Step::Impress => self.impress(sim, hooks),
            Step::Ask { newcomer, voucher } => self.ask(sim, hooks, newcomer, voucher),
            Step::Retry { newcomer } => self.retry(sim, hooks, newcomer),
            Step::Diagnose { newcomer } => self.diagnose(sim, newcomer),
            Step::Farm => self.farm(sim, hooks),
            Step::SybilAsk { sybil } => self.sybil_ask(sim, hooks, sybil),
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
