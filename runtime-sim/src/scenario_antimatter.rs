//! The `antimatter` study (SPEC §21, T-F3): how AntiMatter signals end on a tenure-ordered random
//! graph, and how many games they take, against the closed form `1/P(N)`.
//!
//! Nodes join one a day (node 0 is the oldest) and each links to `peers / 2` random others, so the
//! mean degree is `peers`; every link is trusted. Each signal starts at a random payee, whose payer is
//! one of its connections, and walks as the node does it: at each holder the game is played with the
//! connections not on the path through the real commit-reveal code ([`Game`] against each peer's
//! [`Sessions`]), a veteran is drawn by the real [`veterans::choose`], and the same rules end it —
//! match (with a veteran), terminal (no veteran), or timeout (the hop limit). The network and the
//! signatures are left out: they change no outcome, only the time a signal takes.

use std::collections::BTreeSet;

use proto_core::antimatter::game::{Game, Sessions, NONCE_BYTES};
use proto_core::antimatter::p_match;
use proto_core::antimatter::veterans::{self, Candidate};
use proto_core::limits::{ANTIMATTER_GAME_PEERS_MAX, ANTIMATTER_HOPS_MAX};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

const DAY_US: i64 = 86_400_000_000;

/// What a run is.
#[derive(Clone, Debug)]
pub struct Options {
    /// Nodes.
    pub nodes: u32,
    /// Mean connections per node.
    pub peers: u32,
    /// Signals started.
    pub signals: u32,
    /// The one seed.
    pub seed: u64,
}

/// How the signals ended.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// A game matched with a veteran to pay.
    pub matched: u64,
    /// A holder had no veteran.
    pub terminal: u64,
    /// The hop limit was reached.
    pub timeout: u64,
    /// Games played.
    pub games: u64,
    /// Forwards made.
    pub forwards: u64,
    /// Sum of N over the games.
    pub players: u64,
    /// The hash of one line per signal (payee, outcome, games, forwards).
    pub hash: u64,
}

impl Report {
    /// The summary `darkmatter-sim antimatter` prints.
    pub fn text(&self, o: &Options) -> String {
        let signals = f64::from(o.signals.max(1));
        let share = |c: u64| 100.0 * c as f64 / signals;
        let mean_n = self.players as f64 / self.games.max(1) as f64;
        format!(
            "antimatter: {} nodes, {} peers, {} signals, seed {}\n\
             match {:.2} %  terminal {:.2} %  timeout {:.2} %\n\
             mean games {:.3}  mean forwards {:.3}  mean N {:.2}  1/P(N={}) {:.3}\n\
             trace-hash: {:016x}\n",
            o.nodes,
            o.peers,
            o.signals,
            o.seed,
            share(self.matched),
            share(self.terminal),
            share(self.timeout),
            self.games as f64 / signals,
            self.forwards as f64 / signals,
            mean_n,
            o.peers,
            1.0 / p_match(o.peers),
            self.hash
        )
    }
}

/// How one signal ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Match,
    Terminal,
    Timeout,
}

fn created_us(i: u32) -> i64 {
    i64::from(i) * DAY_US
}

fn below(rng: &mut ChaCha20Rng, n: u32) -> u32 {
    proto_core::antimatter::pick(rng, n - 1)
}

/// The graph: node `i`'s connections.
fn graph(rng: &mut ChaCha20Rng, o: &Options) -> Vec<BTreeSet<u32>> {
    let mut adj = vec![BTreeSet::new(); o.nodes as usize];
    for i in 0..o.nodes {
        for _ in 0..o.peers / 2 {
            let j = below(rng, o.nodes);
            if j != i {
                adj[i as usize].insert(j);
                adj[j as usize].insert(i);
            }
        }
    }
    adj
}

/// One game at `x` with its players; answers whether it matched.
fn play(rng: &mut ChaCha20Rng, sessions: &mut [Sessions], players: &[u32], signal: &str) -> bool {
    let mut nonce = [0u8; NONCE_BYTES];
    rng.fill_bytes(&mut nonce);
    let names: Vec<String> = players.iter().map(u32::to_string).collect();
    let mut game = Game::new(names, rng, nonce);
    let commit = game.commit_request(signal);
    for &p in players {
        rng.fill_bytes(&mut nonce);
        let answer = sessions[p as usize].handle(&commit, 0, rng, nonce).ok();
        game.on_commit(&p.to_string(), answer.as_ref());
    }
    for (peer, reveal) in game.reveal_requests() {
        let p: usize = peer.parse().expect("named by index");
        let answer = sessions[p].handle(&reveal, 0, rng, nonce).ok();
        // Every player here is honest: a reveal always opens its commitment.
        let _ = game.on_reveal(&peer, answer.as_ref());
    }
    game.is_match()
}

/// Runs the study.
pub fn run(o: &Options) -> Report {
    assert!(o.nodes >= 2, "a payment needs two nodes");
    let mut rng = ChaCha20Rng::seed_from_u64(o.seed);
    let adj = graph(&mut rng, o);
    let mut sessions: Vec<Sessions> = (0..o.nodes).map(|_| Sessions::default()).collect();
    let now_us = created_us(o.nodes) + DAY_US;
    let mut report = Report { hash: 0xcbf2_9ce4_8422_2325, ..Report::default() };
    for s in 0..o.signals {
        let signal = format!("am-{s:012}");
        let payee = below(&mut rng, o.nodes);
        let mut path = vec![payee];
        let (mut x, mut hops, mut games) = (payee, 0u32, 0u64);
        let end = loop {
            let players: Vec<u32> =
                adj[x as usize].iter().copied().filter(|p| !path.contains(p)).take(ANTIMATTER_GAME_PEERS_MAX).collect();
            report.players += players.len() as u64;
            games += 1;
            let matched = play(&mut rng, &mut sessions, &players, &signal);
            let candidates: Vec<Candidate> = adj[x as usize]
                .iter()
                .map(|&p| Candidate {
                    agent_id: p.to_string(),
                    created_us: Some(created_us(p)),
                    first_seen_us: created_us(p.max(x)),
                    score: 0.5,
                    online: true,
                    wallet: Some(p.to_string()),
                })
                .collect();
            let on_path: Vec<String> = path.iter().map(u32::to_string).collect();
            let Some(veteran) = veterans::choose(&mut rng, now_us, created_us(x), &candidates, &on_path) else {
                break End::Terminal;
            };
            if matched {
                break End::Match;
            }
            if hops + 1 >= ANTIMATTER_HOPS_MAX {
                break End::Timeout;
            }
            x = veteran.agent_id.parse().expect("named by index");
            hops += 1;
            path.push(x);
        };
        match end {
            End::Match => report.matched += 1,
            End::Terminal => report.terminal += 1,
            End::Timeout => report.timeout += 1,
        }
        report.games += games;
        report.forwards += u64::from(hops);
        for b in format!("{payee} {end:?} {games} {hops}\n").bytes() {
            report.hash = (report.hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Same seed, same report; and the outcomes account for every signal.
    #[test]
    fn the_study_is_deterministic_and_complete() {
        let o = Options { nodes: 200, peers: 8, signals: 2_000, seed: 7 };
        let (a, b) = (run(&o), run(&o));
        assert_eq!(a, b);
        assert_eq!(a.matched + a.terminal + a.timeout, u64::from(o.signals));
        assert!(a.timeout == 0, "a tenure-ordered walk reaches the oldest long before ten hops: {a:?}");
    }

    /// On a graph where nobody is terminal early (a complete one), games per signal approach 1/P(N).
    #[test]
    fn games_per_signal_follow_the_match_probability_when_veterans_abound() {
        let o = Options { nodes: 400, peers: 40, signals: 4_000, seed: 3 };
        let r = run(&o);
        let mean = r.games as f64 / f64::from(o.signals);
        let n = r.players as f64 / r.games as f64;
        // Terminals cut chains short, so the mean can only be at most the geometric one.
        assert!(mean <= 1.0 / p_match(n.round() as u32) + 0.05, "{mean} vs N≈{n}");
        assert!(r.matched as f64 / f64::from(o.signals) > 0.5, "{r:?}");
    }
}
