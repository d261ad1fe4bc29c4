//! The healing study (issue 14): a share of the mesh changes address within the hour, some while
//! running (they tell their peers at once), some while down (they announce at their restart), while
//! a share of the nodes lie when asked where a peer is. Measured: how soon each link to a moved peer
//! works again (its holder stores the peer's new URL), URLs adopted that are not the peer's (must be
//! none), and the lookup questions each node answers.
//!
//! Links heal two ways: the moved peer's signed `peer_update` reaches the link's holder, or the
//! holder's next delivery fails and its lookup finds the peer's own signed update at a connection
//! that has it. The study makes every holder of a link to a moved peer send it one message within
//! [`PROBE_WINDOW_US`] of the move (an agent that has something to say), so a link that missed the
//! announcement is tried, as a real conversation would try it.

use std::any::Any;
use std::collections::BTreeMap;

use plotters::prelude::*;
use proto_core::Event;
use serde_json::{json, Value};

use crate::observer::{Hooks, Observer};
use crate::rng::{derive, SplitMix};
use crate::scenario::{Action, Options};
use crate::sim::Sim;
use crate::topology::Topology;
use crate::trust_study::plot::{cumulative, line_chart, Series};

const S: u64 = 1_000_000;
/// Share of the nodes that move, once each, within the hour after formation.
pub const MOVERS: f64 = 0.10;
/// Share of the movers that move while down (the move happens across a crash and restart).
pub const MOVERS_OFFLINE: f64 = 0.5;
/// Share of the nodes that lie when asked where a peer is.
pub const LIARS: f64 = 0.05;
/// An offline mover is down this long, at least and at most, µs.
pub const DOWN_US: (u64, u64) = (20 * S, 120 * S);
/// Every holder of a link to a moved peer sends it a message within this of the move (after its
/// restart, for an offline mover), µs.
pub const PROBE_WINDOW_US: u64 = 120 * S;
/// The target: links to moved peers working again within this of the move, µs.
pub const TARGET_US: u64 = 300 * S;
/// Moves start after formation settles, µs.
const MOVES_FROM_US: u64 = 120 * S;
/// Moves happen within this hour, µs.
const MOVES_WITHIN_US: u64 = 3_600 * S;
/// The seed purpose of this study's choices (distinct from the engine's).
const PURPOSE: u64 = 0x6865_616c;

/// The study's settings, carried in [`Options`].
#[derive(Clone, Debug, PartialEq)]
pub struct HealConfig {
    /// Nodes that lie in their `peer_lookup` answers (sorted).
    pub liars: Vec<u32>,
}

/// `churn-heal`: a small world of degree 8 (friends of friends: a link's holder shares connections
/// with the peer, as in meshes grown by introductions; `--topology random` gives the worst case for
/// lookups, where almost no holder shares one), light traffic, 10 % movers, 5 % liars.
pub fn build(n: u32, seed: u64, d: u64) -> Options {
    let mut o = Options::base("churn-heal", n, seed, d);
    o.topology = Topology::SmallWorld { k: 8, rewire: 0.1 };
    o.workload.direct_per_hour = 1.0;
    o.workload.broadcast_per_hour = 0.0;
    // Some peers are down when a mover announces itself (they miss the update).
    o.workload.crash_per_hour = 0.1;
    o.workload.down_us = 60 * S;
    o.workload.move_on_restart = 0.0;
    let liars = (0..n).filter(|&i| pick(seed, 1, i as u64) < LIARS).collect();
    o.heal = Some(HealConfig { liars });
    o
}

/// A uniform draw in [0, 1) for the study's choice `what` about `i`.
fn pick(seed: u64, what: u64, i: u64) -> f64 {
    SplitMix(derive(seed, PURPOSE, what, i)).unit()
}

/// The lying answerers: each lies one way, by its index: names itself with no proof (a hijack),
/// names itself with a forged signed update (the peer's last one, re-pointed and re-dated, its
/// signature no longer matching), or names itself beside the first signed update it ever served
/// for that peer (a genuine but older one, replayed).
#[derive(Debug, Default)]
pub struct Liars {
    is_liar: Vec<bool>,
    /// (liar, peer) → the first signed update the liar served for the peer.
    first_served: BTreeMap<(u32, String), Value>,
    /// Lookup questions answered by every node (liars included).
    pub answered: u64,
    /// Answers a liar bent.
    pub lies: u64,
}

impl Liars {
    /// The liars of `config` among `nodes` nodes.
    pub fn new(config: &HealConfig, nodes: u32) -> Self {
        let mut is_liar = vec![false; nodes as usize];
        for &i in &config.liars {
            is_liar[i as usize] = true;
        }
        Self { is_liar, ..Self::default() }
    }

    /// Node `at` (reached at `own_url`) answered `path` with `status` and `body`: what the asker
    /// gets.
    pub fn answer(&mut self, at: u32, own_url: &str, path: &str, status: u16, body: Vec<u8>) -> Vec<u8> {
        if !path.starts_with("/__darkmatter__/peer_lookup/") {
            return body;
        }
        self.answered += 1;
        if status != 200 || !self.is_liar.get(at as usize).copied().unwrap_or(false) {
            return body;
        }
        let Ok(mut v) = serde_json::from_slice::<Value>(&body) else { return body };
        let peer = v["agent_id"].as_str().unwrap_or_default().to_owned();
        let genuine = v.get("signed_update").cloned();
        if let Some(g) = &genuine {
            self.first_served.entry((at, peer.clone())).or_insert_with(|| g.clone());
        }
        self.lies += 1;
        v["url"] = json!(own_url);
        match at % 3 {
            0 => {
                v.as_object_mut().map(|o| o.remove("signed_update"));
            }
            1 => {
                let mut forged = genuine.unwrap_or_else(|| {
                    json!({"agent_id": peer, "signature": "00".repeat(64), "timestamp": "2026-01-01T00:00:00+00:00"})
                });
                forged["new_url"] = json!(own_url);
                // Newer than anything the peer signed: only the signature can tell.
                forged["timestamp"] = json!("2026-12-31T00:00:00+00:00");
                v["signed_update"] = forged;
            }
            _ => {
                if let Some(first) = self.first_served.get(&(at, peer)) {
                    v["signed_update"] = first.clone();
                }
            }
        }
        serde_json::to_vec(&v).unwrap_or(body)
    }
}

/// One link to a moved peer: who holds it, and when it worked again.
#[derive(Clone, Debug)]
struct Link {
    holder: u32,
    moved_at_us: u64,
    offline: bool,
    healed_at_us: Option<u64>,
    by_lookup: bool,
}

/// The study's observer: schedules the moves and the probes, and times every link's recovery.
#[derive(Debug, Default)]
pub struct Watch {
    seed: u64,
    /// Per moved node: its links.
    links: BTreeMap<u32, Vec<Link>>,
    /// Adoptions of a URL that was not the peer's current one: (holder, peer, URL).
    pub wrong: Vec<(u32, u32, String)>,
    /// Adoptions through lookups, and of those, on agreement alone.
    pub recovered: (u64, u64),
    /// Lookups that found nothing.
    pub not_found: u64,
    duration_us: u64,
}

/// Wake-up tokens: a move of node `i` is `i`; its offline restart is done by the engine.
impl Watch {
    /// The observer of a run of `opts`.
    pub fn new(opts: &Options) -> Self {
        Self { seed: opts.seed, duration_us: opts.duration_us, ..Self::default() }
    }

    fn record(&mut self, sim: &Sim, holder: u32, peer: u32, url: &str, by_lookup: bool) {
        if url != sim.url(peer) {
            self.wrong.push((holder, peer, url.to_owned()));
            return;
        }
        let now = sim.now_us();
        let Some(links) = self.links.get_mut(&peer) else { return };
        for l in links.iter_mut().filter(|l| l.holder == holder && l.healed_at_us.is_none() && now >= l.moved_at_us) {
            l.healed_at_us = Some(now);
            l.by_lookup = by_lookup;
        }
    }

    /// Seconds from move to recovery of every healed link (sorted), and the link count, of the links
    /// `keep` selects.
    fn delays(&self, keep: impl Fn(&Link) -> bool) -> (Vec<f64>, usize) {
        let all: Vec<&Link> = self.links.values().flatten().filter(|l| keep(l)).collect();
        let mut d: Vec<f64> =
            all.iter().filter_map(|l| l.healed_at_us.map(|h| (h - l.moved_at_us) as f64 / S as f64)).collect();
        d.sort_by(f64::total_cmp);
        (d, all.len())
    }

    /// Links whose move was at least [`TARGET_US`] before the end (the others had no full chance).
    fn judged(&self, l: &Link) -> bool {
        l.moved_at_us + TARGET_US <= self.duration_us
    }

    /// The findings as text.
    pub fn text(&self, sim: &Sim, nodes: u32) -> String {
        let (d, total) = self.delays(|l| self.judged(l));
        let within = d.iter().filter(|&&s| s <= (TARGET_US / S) as f64).count();
        let share = within as f64 / total.max(1) as f64;
        let by_lookup = self.links.values().flatten().filter(|l| l.by_lookup).count();
        let liars = sim.liars().map_or((0, 0), |l| (l.answered, l.lies));
        let pct = |p: f64| d.get(((d.len() as f64 * p) as usize).min(d.len().saturating_sub(1))).copied();
        let fmt = |x: Option<f64>| x.map_or("-".to_owned(), |s| format!("{s:.1} s"));
        let mut t = String::new();
        t += &format!("moved nodes        {} ({} links to them judged)\n", self.links.len(), total);
        t += &format!(
            "links working again within {} s: {within}/{total} = {:.4} (target >= 0.99)\n",
            TARGET_US / S,
            share
        );
        t += &format!("  healed by lookup {by_lookup}; never healed {}\n", total - d.len());
        t += &format!("  delay median {}, p99 {}, max {}\n", fmt(pct(0.5)), fmt(pct(0.99)), fmt(d.last().copied()));
        t += &format!("wrong URLs adopted {} (target 0)\n", self.wrong.len());
        t += &format!(
            "lookups            {} recovered ({} on agreement alone), {} found nothing\n",
            self.recovered.0, self.recovered.1, self.not_found
        );
        t += &format!(
            "lookup questions   {} answered ({:.3} per node), {} bent by liars\n",
            liars.0,
            liars.0 as f64 / nodes.max(1) as f64,
            liars.1
        );
        t
    }

    /// The fraction of links to moved peers working again against seconds since the move.
    pub fn svg(&self, title: &str) -> Result<String, String> {
        let end = 600.0;
        let curve = |keep: &dyn Fn(&Link) -> bool| {
            let (d, total) = self.delays(|l| self.judged(l) && keep(l));
            cumulative(&d, total as f64, end)
        };
        let series = vec![
            Series::new("all links to moved peers".into(), BLUE, curve(&|_| true)),
            Series::new("peer moved while running".into(), GREEN, curve(&|l| !l.offline)),
            Series::new("peer moved while down".into(), RED, curve(&|l| l.offline)),
            Series {
                dashed: true,
                width: 1,
                ..Series::new("target 0.99 at 300 s".into(), BLACK, vec![(0.0, 0.99), (300.0, 0.99), (300.0, 0.0)])
            },
        ];
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (800, 480)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| e.to_string())?;
            let (x_desc, y_desc) = ("seconds since the move", "links working again");
            line_chart(&root, title, x_desc, y_desc, (0.0, end), false, SeriesLabelPosition::LowerRight, &series)?;
            root.present().map_err(|e| e.to_string())?;
        }
        Ok(svg)
    }
}

impl Observer for Watch {
    fn start(&mut self, sim: &Sim, hooks: &mut Hooks) {
        let n = sim.options().nodes;
        let window = MOVES_WITHIN_US.min(self.duration_us.saturating_sub(MOVES_FROM_US));
        for i in 0..n {
            if pick(self.seed, 2, i as u64) >= MOVERS {
                continue;
            }
            let at = MOVES_FROM_US + (pick(self.seed, 3, i as u64) * window as f64) as u64;
            hooks.wake(at, i as u64);
        }
    }

    fn on_wake(&mut self, sim: &Sim, token: u64, hooks: &mut Hooks) {
        let i = token as u32;
        if sim.core(i).is_none() || self.links.contains_key(&i) {
            return;
        }
        let now = sim.now_us();
        let offline = pick(self.seed, 4, i as u64) < MOVERS_OFFLINE;
        let down = DOWN_US.0 + (pick(self.seed, 5, i as u64) * (DOWN_US.1 - DOWN_US.0) as f64) as u64;
        let back = if offline { now + down } else { now };
        let links: Vec<Link> = sim
            .peers(i)
            .iter()
            .map(|&holder| Link { holder, moved_at_us: now, offline, healed_at_us: None, by_lookup: false })
            .collect();
        for (k, l) in links.iter().enumerate() {
            let delay = (pick(self.seed, 6, (i as u64) << 16 | k as u64) * PROBE_WINDOW_US as f64) as u64;
            hooks.schedule(back + delay, Action::Send(l.holder, i));
        }
        self.links.insert(i, links);
        if offline {
            hooks.schedule(now, Action::Crash { node: i, down_us: down, move_on_restart: true });
        } else {
            hooks.schedule(now, Action::Move(i));
        }
    }

    fn on_event(&mut self, sim: &Sim, node: u32, event: &Event, _hooks: &mut Hooks) {
        match event {
            Event::PeerUpdated { agent_id, url } => {
                if let Some(peer) = sim.index_of(agent_id.as_str()) {
                    self.record(sim, node, peer, url, false);
                }
            }
            Event::PeerUrlRecovered { agent_id, new_url, verified, .. } => {
                self.recovered.0 += 1;
                self.recovered.1 += u64::from(!verified);
                if let Some(peer) = sim.index_of(agent_id.as_str()) {
                    self.record(sim, node, peer, new_url, true);
                }
            }
            Event::PeerNotFound { .. } => self.not_found += 1,
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

    fn liars_all(n: u32) -> Liars {
        Liars::new(&HealConfig { liars: (0..n).collect() }, n)
    }

    fn honest(signed: Option<Value>) -> Vec<u8> {
        let mut v = json!({"agent_id": "p", "url": "http://p2:1", "status": "connected"});
        if let Some(s) = signed {
            v["signed_update"] = s;
        }
        serde_json::to_vec(&v).unwrap()
    }

    fn bent(l: &mut Liars, at: u32, body: Vec<u8>) -> Value {
        serde_json::from_slice(&l.answer(at, "http://liar:1", "/__darkmatter__/peer_lookup/p", 200, body)).unwrap()
    }

    #[test]
    fn each_liar_bends_its_answers_its_own_way_and_only_lookups() {
        let mut l = liars_all(3);
        let old = json!({"agent_id": "p", "new_url": "http://p1:1", "timestamp": "t1", "signature": "s1"});
        let new = json!({"agent_id": "p", "new_url": "http://p2:1", "timestamp": "t2", "signature": "s2"});
        let hijack = bent(&mut l, 0, honest(Some(new.clone())));
        assert_eq!((hijack["url"].as_str(), hijack.get("signed_update")), (Some("http://liar:1"), None));
        let forged = bent(&mut l, 1, honest(Some(new.clone())));
        assert_eq!(forged["signed_update"]["new_url"], "http://liar:1");
        assert_eq!(forged["signed_update"]["signature"], "s2", "the peer's signature over other words");
        bent(&mut l, 2, honest(Some(old.clone())));
        let replayed = bent(&mut l, 2, honest(Some(new)));
        assert_eq!(replayed["signed_update"], old, "the first update it served, replayed");
        let other = l.answer(0, "http://liar:1", "/__darkmatter__/status", 200, b"{}".to_vec());
        assert_eq!(other, b"{}".to_vec());
        assert_eq!((l.answered, l.lies), (4, 4));
        let mut none = Liars::new(&HealConfig { liars: vec![] }, 3);
        assert_eq!(none.answer(1, "http://x:1", "/__darkmatter__/peer_lookup/p", 200, honest(None)), honest(None));
    }

    #[test]
    fn a_small_run_heals_links_and_adopts_no_wrong_url() {
        let mut o = build(150, 1, 900 * S);
        o.apply("topology", "small-world").unwrap();
        let mut sim = Sim::new(o);
        sim.run(&mut |_, _| {}).expect("no violation");
        let w = sim.observer::<Watch>().expect("the study's observer");
        let (healed, total) = w.delays(|l| w.judged(l));
        assert!(total > 20, "{total} links to moved peers");
        assert!(healed.len() as f64 >= 0.9 * total as f64, "{} of {total} healed", healed.len());
        assert!(w.wrong.is_empty(), "{:?}", w.wrong);
        assert!(sim.liars().expect("liars").answered > 0);
    }
}
