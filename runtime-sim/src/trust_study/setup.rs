//! A study run's options: its configuration, the `--KEY VALUE` overrides, and its plan (the node
//! layout; the Sybils' mesh and footholds; who asks whom to connect, and when; the study's own steps).

use std::collections::BTreeSet;

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

use super::watch::Step;
use super::{FORMATION_US, HAND_ACCEPT_UNTIL_US, IMPRESS_AT_US, S, START_US, STUDY};
use crate::rng::derive;
use crate::scenario::{format_duration, parse_duration, Action, Options};
use crate::topology::{self, below, unit, Topology};

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
    /// The adversary's strategies (`--strategy farm,neighbours,...`; none = the plain burst).
    pub adversary: Adversary,
    /// Sybil requests start this long after [`START_US`] (`--attack-after 12h`): the farming time.
    pub attack_after_us: u64,
}

/// What the Sybils do beyond asking honest nodes to connect (each a named strategy, combinable).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Adversary {
    /// *Trust farming* (`farm`): every honest owner of a foothold asks its Sybil something every
    /// [`FARM_INTERVAL_US`] from [`START_US`] until the attack, and the Sybils answer every message,
    /// earning the automatic reply bonus each time; then they vouch for their cluster.
    pub farm: bool,
    /// *Targeting the footholds' neighbours* (`neighbours`): each Sybil asks honest nodes connected to
    /// a foothold (the nodes most likely to trust a foothold's owner) rather than random ones.
    pub neighbours: bool,
    /// *Slander* (`slander`): every Sybil scores each honest newcomer −1 as it arrives, so a target
    /// that trusts a Sybil hears a warning against the newcomer.
    pub slander: bool,
    /// *Compromised honest nodes* (`compromised`): [`COMPROMISED_PER_MILLE`] of honest nodes, trusted by
    /// their neighbours like any other, score every Sybil +1 (they vouch for the cluster).
    pub compromised: bool,
}

impl Adversary {
    /// Every strategy's name.
    pub const NAMES: [&'static str; 4] = ["farm", "neighbours", "slander", "compromised"];

    fn parse(value: &str) -> Result<Self, String> {
        let mut a = Adversary::default();
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty() && *n != "none") {
            match name {
                "farm" => a.farm = true,
                "neighbours" => a.neighbours = true,
                "slander" => a.slander = true,
                "compromised" => a.compromised = true,
                "all" => a = Adversary { farm: true, neighbours: true, slander: true, compromised: true },
                _ => return Err(format!("--strategy: {name} is not one of {} (or all)", Self::NAMES.join(", "))),
            }
        }
        Ok(a)
    }
}

/// How often a foothold's owner asks its farming Sybil something.
pub const FARM_INTERVAL_US: u64 = 600 * S;
/// Compromised honest nodes per thousand honest nodes (`compromised`).
pub const COMPROMISED_PER_MILLE: u32 = 5;

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
            adversary: Adversary::default(),
            attack_after_us: 0,
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
            | "strategy"
            | "attack-after"
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
        "strategy" => c.adversary = Adversary::parse(value)?,
        "attack-after" => c.attack_after_us = parse_duration(value)?,
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
    let first_honest = c.layout().2;
    let n = first_honest + c.honest;
    o.nodes = n;
    o.isolated = first_honest;
    o.manual_accept = (first_honest..n).collect();
    // Farming Sybils answer every message; otherwise the Sybils behave like anyone.
    o.workload.helpful = if c.adversary.farm { c.layout().1..first_honest } else { 0..0 };
    o.script = plan(&c, o.seed).script;
}

/// What a study run schedules before it starts.
pub(crate) struct Plan {
    /// The engine's script: connects and the vouchers' impressions, in time order.
    pub script: Vec<(u64, Action)>,
    /// The study's own steps, in time order.
    pub steps: Vec<(u64, Step)>,
}

/// The plan of a run: a pure function of the config and the seed, so the options (the script) and
/// the observer (the steps) each build the same one.
pub(crate) fn plan(c: &StudyConfig, seed: u64) -> Plan {
    let (_, first_sybil, first_honest) = c.layout();
    let mut r = ChaCha8Rng::seed_from_u64(derive(seed, STUDY, 0, 0));
    let honest = |r: &mut ChaCha8Rng| first_honest + below(r, c.honest.max(1) as u64) as u32;
    let mut script: Vec<(u64, Action)> = Vec::new();
    let mut steps: Vec<(u64, Step)> = Vec::new();
    if c.honest > 0 {
        // The Sybils' own mesh and their footholds in the honest one.
        let (lo, hi) =
            (c.sybil_degree.0.min(c.sybils.saturating_sub(1)), c.sybil_degree.1.min(c.sybils.saturating_sub(1)));
        for (a, b) in topology::build(&Topology::RandomRegular { min: lo, max: hi }, c.sybils, &mut r) {
            script.push((below(&mut r, FORMATION_US), Action::Connect(first_sybil + a, first_sybil + b)));
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
                    script.push((below(&mut r, FORMATION_US), Action::Connect(g, s)));
                }
            }
        }
        steps.push((IMPRESS_AT_US, Step::Impress));
        if c.adversary.farm {
            steps.push((START_US, Step::Farm));
        }
        // Every Sybil asks many honest nodes (random ones here; the footholds' neighbours in a step).
        let attack_us = START_US + c.attack_after_us;
        for s in first_sybil..first_honest {
            if c.adversary.neighbours {
                steps.push((attack_us + below(&mut r, c.window_us), Step::SybilAsk { sybil: s }));
                continue;
            }
            let k = c.sybil_targets.min(c.honest);
            let mut chosen = BTreeSet::new();
            while chosen.len() < k as usize {
                chosen.insert(honest(&mut r));
            }
            for t in chosen {
                script.push((attack_us + below(&mut r, c.window_us), Action::Connect(s, t)));
            }
        }
        // Newcomers arrive, each with one voucher.
        for k in 0..first_sybil {
            let voucher = honest(&mut r);
            let at = attack_us + below(&mut r, c.window_us);
            let score = round2(c.vouch_range.0 + (c.vouch_range.1 - c.vouch_range.0) * unit(&mut r));
            script.push((at, Action::Connect(voucher, k)));
            script.push((at + 5 * S, Action::Impression(voucher, k, score)));
            steps.push((at + 10 * S, Step::Ask { newcomer: k, voucher }));
        }
    }
    // Stable by time (ties keep plan order): scripted actions then fire in a fixed order.
    script.sort_by_key(|p| p.0);
    steps.sort_by_key(|p| p.0);
    Plan { script, steps }
}

/// A score rounded to hundredths (as an agent would give it).
pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
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
    use proto_core::TrustPolicy;

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
