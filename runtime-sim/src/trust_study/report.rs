//! What a study run measured: per class of newcomer request, per newcomer, the Sybils' reach; the
//! summary `darkmatter-sim run` prints, the CSV of every request, and the plot.

use std::collections::BTreeMap;

use plotters::prelude::*;
use proto_core::limits::PENDING_REQUESTS_MAX;
use proto_core::{Table, TrustPolicy};

use super::diagnose::{carried_text, why_not};
use super::plot::{cumulative, line_chart, Series};
use super::watch::StudyObserver;
use super::{StudyKind, S};
use crate::scenario::Action;
use crate::sim::Sim;

/// A newcomer's first vouched request counts as accepted by its target when within this long: the
/// decision hold and two housekeeping rounds.
const FIRST_ACCEPT_WITHIN_US: u64 = proto_core::limits::TRUST_DECISION_HOLD_S * S + 120 * S;

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
    /// What carried the Sybils and the vouched newcomers that were accepted, and what candidate
    /// rules would have let through (summary lines).
    pub carried: String,
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
            TrustPolicy::WeightedUnbounded => "weighted without the Sybil defences (old rules)",
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
        s += &self.carried;
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

impl Sim {
    /// What the trust study measured, if this run is one.
    pub fn study_report(&self) -> Option<StudyReport> {
        self.observer::<StudyObserver>().map(|st| st.report(self))
    }
}

/// Per class: how its requests went.
fn class_stats(asks: &[Ask]) -> Vec<ClassStats> {
    let mut classes = Vec::new();
    for class in Class::ALL {
        let asks: Vec<&Ask> = asks.iter().filter(|a| a.class == class).collect();
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
    classes
}

/// Per newcomer with a vouched target: (vouched targets, of them accepted, first vouched request's
/// time, whether that one was accepted within [`FIRST_ACCEPT_WITHIN_US`]).
fn vouched_by_newcomer(asks: &[Ask]) -> BTreeMap<u32, (u32, u32, u64, bool)> {
    let mut by_newcomer: BTreeMap<u32, (u32, u32, u64, bool)> = BTreeMap::new();
    for a in asks.iter().filter(|a| a.class == Class::Vouched) {
        let e = by_newcomer.entry(a.newcomer).or_insert((0, 0, u64::MAX, false));
        e.0 += 1;
        e.1 += a.accepted_us.is_some() as u32;
        // The newcomer's first vouched request: no earlier acceptance of its own can colour it.
        if a.first_us < e.2 {
            e.2 = a.first_us;
            e.3 = a.accepted_us.is_some_and(|t| t < a.first_us + FIRST_ACCEPT_WITHIN_US);
        }
    }
    by_newcomer
}

impl StudyObserver {
    /// The report of the run so far.
    pub(crate) fn report(&self, sim: &Sim) -> StudyReport {
        let c = &self.cfg;
        let opts = sim.options();
        let by_newcomer = vouched_by_newcomer(&self.asks);
        let mut first_accepts: Vec<f64> = self.per_node.iter().filter_map(|n| n.2.map(|t| t as f64 / 1e6)).collect();
        first_accepts.sort_by(f64::total_cmp);
        let accepting = |gw: Option<bool>| {
            self.per_node
                .iter()
                .zip(&self.gateway)
                .filter(|(n, g)| n.1 > 0 && gw.is_none_or(|want| g.0 == want))
                .count() as u32
        };
        let (_, first_sybil, first_honest) = c.layout();
        let sybils = first_sybil..first_honest;
        let pending_at_end: Vec<u32> =
            (first_honest..opts.nodes).map(|i| sim.persisted_count(i, Table::PendingIn)).collect();
        StudyReport {
            kind: c.kind,
            policy: opts.trust_policy,
            honest: c.honest,
            newcomers: c.newcomers,
            sybils: c.sybils,
            duration_s: opts.duration_us as f64 / 1e6,
            classes: class_stats(&self.asks),
            newcomers_with_vouched: by_newcomer.len() as u32,
            newcomers_accepted_any: by_newcomer.values().filter(|v| v.1 > 0).count() as u32,
            newcomers_accepted_all: by_newcomer.values().filter(|v| v.1 == v.0).count() as u32,
            newcomers_first_accepted: by_newcomer.values().filter(|v| v.3).count() as u32,
            sybil_requests_planned: opts
                .script
                .iter()
                .filter(|(_, a)| matches!(a, Action::Connect(s, t) if sybils.contains(s) && *t >= first_honest))
                .count() as u64,
            sybil_requests_reached: self.sybil_reached,
            sybil_accepted: self.sybil_accepted,
            sybil_rejected: self.sybil_rejected,
            honest_accepting_sybil: accepting(None),
            gateway_accepting_sybil: accepting(Some(true)),
            gateways: self.gateway.iter().filter(|g| g.0).count() as u32,
            trusting_gateways: self.gateway.iter().filter(|g| g.1).count() as u32,
            honest_linked_to_sybil_at_end: (first_honest..opts.nodes)
                .filter(|&i| sim.peers(i).iter().any(|p| sybils.contains(p)))
                .count() as u32,
            sybil_first_accepts_s: first_accepts,
            max_sybil_requests_at_one_node: self.per_node.iter().map(|n| n.0).max().unwrap_or(0),
            pending_max_at_end: pending_at_end.iter().copied().max().unwrap_or(0),
            pending_full_at_end: pending_at_end.iter().filter(|&&c| c as usize >= PENDING_REQUESTS_MAX).count() as u32,
            refusals: self.refusals.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            asks: self.asks.clone(),
            vouched_failures: self.vouched_failures(),
            end_failures: self.end_failures(sim),
            carried: carried_text(&self.carried),
        }
    }

    /// Why vouched requests were not accepted in their first round (cause, count).
    fn vouched_failures(&self) -> Vec<(String, u32)> {
        let mut failures: BTreeMap<&'static str, u32> = BTreeMap::new();
        for a in self.asks.iter().filter(|a| a.class == Class::Vouched) {
            if let Some(why) = a.first_failure {
                *failures.entry(why).or_default() += 1;
            }
        }
        failures.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    /// Why requests still not accepted are not, by class (from the targets' pending records now).
    fn end_failures(&self, sim: &Sim) -> Vec<(Class, String, u32)> {
        let policy = sim.options().trust_policy;
        let mut m: BTreeMap<(Class, &'static str), u32> = BTreeMap::new();
        for a in self.asks.iter().filter(|a| a.accepted_us.is_none()) {
            *m.entry((a.class, why_not(sim, a, self.voucher.get(&a.newcomer).copied(), policy))).or_default() += 1;
        }
        m.into_iter().map(|((c, k), v)| (c, k.to_owned(), v)).collect()
    }
}
