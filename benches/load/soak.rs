//! The soak: a node under a mixed flood for a while keeps serving legitimate peers, its memory stays
//! bounded, and after kill -9 at seeded random moments nothing it acknowledged is lost.
//!
//! The mix, each part from an address of its own: junk POSTs, trickling bodies and heads, connected
//! peers flooding valid signed messages (beyond their per-peer window), and signed connection
//! requests from throwaway keys; beside it the legitimate load of [`super::legit`] (peers' messages,
//! newcomers, status reads, an agent reading its inbox). The node runs with local auto-accept off (so
//! requests wait for the agent, as from remote hosts) on a fixed port, so a restart on the same state
//! directory is the same node to every client.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::attack::{self, Attack, Running};
use super::legit::{drain_inbox, Config, Ledger, Legit, Peer, Target};
use super::net::{source, Sink};
use super::node::{self, NodeProc, Spec, TempDir};
use super::stats::{Kind, Summary};
use super::Rng;

/// Interval between resident-memory samples.
pub const RSS_SAMPLE_MS: u64 = 1_000;
/// The first share of a run, in percent, left out of the levelling-off check (start-up, first burst).
pub const RSS_WARMUP_PCT: usize = 20;
/// How much the later half of a run's memory samples may exceed the earlier half's peak: a factor
/// in percent and a constant in KiB (allocator noise), beyond which memory is taken to be growing.
pub const RSS_GROWTH_PCT_MAX: u64 = 125;
/// See [`RSS_GROWTH_PCT_MAX`].
pub const RSS_GROWTH_SLACK_KIB: u64 = 8 * 1024;
/// Kill points fall within this share of the run, in percent (not at its very start or end).
pub const KILL_WINDOW_PCT: (u64, u64) = (10, 90);

/// A soak run's settings.
#[derive(Clone, Debug)]
pub struct SoakConfig {
    /// The node binary.
    pub node: PathBuf,
    /// How long the flood runs.
    pub duration: Duration,
    /// Seed of the kill points.
    pub seed: u64,
    /// kill -9 during the run (one more follows at its end, before the loss check).
    pub kills: usize,
    /// Legitimate peers.
    pub peers: usize,
    /// Connected peers flooding valid messages, and each one's rate.
    pub flood_peers: usize,
    /// See `flood_peers`.
    pub flood_per_s: u32,
    /// Junk requests per second (after a burst of 210).
    pub junk_per_s: u32,
    /// Trickling bodies and heads.
    pub slow_bodies: usize,
    /// See `slow_bodies`.
    pub slow_heads: usize,
    /// Throwaway connection requests: a burst every interval.
    pub throwaway_burst: usize,
    /// See `throwaway_burst`.
    pub throwaway_every: Duration,
    /// The operator lifts the node's global window (`set_rate_limit -1`), as tests/smol_crash.rs does.
    pub global_unlimited: bool,
    /// Least share of peer messages and of status reads that must be served.
    pub served_min: f64,
    /// Most resident memory allowed at any sample, KiB.
    pub rss_max_kib: u64,
    /// Print a progress line this often (`None`: quiet).
    pub progress_every: Option<Duration>,
}

/// What a soak run measured and what it found wrong.
#[derive(Debug, Default)]
pub struct SoakReport {
    /// Legitimate figures per kind, in [`Kind::ALL`] order.
    pub summaries: Vec<(Kind, Summary)>,
    /// Memory samples: seconds into the run, KiB.
    pub rss: Vec<(f64, u64)>,
    /// kill -9 done (the final one included).
    pub kills: usize,
    /// Messages acknowledged (legitimate and flood).
    pub acked: usize,
    /// Acknowledged messages missing at the end.
    pub lost: Vec<String>,
    /// Every broken expectation, in words; empty when the run passed.
    pub violations: Vec<String>,
    /// What the attackers saw, per part of the mix.
    pub attacks: Vec<(String, String)>,
}

impl SoakReport {
    /// Highest sample, KiB.
    pub fn rss_peak_kib(&self) -> u64 {
        self.rss.iter().map(|s| s.1).max().unwrap_or(0)
    }
}

/// The kill moments: `kills` offsets inside [`KILL_WINDOW_PCT`] of the run, sorted.
pub fn kill_points(seed: u64, kills: usize, duration: Duration) -> Vec<Duration> {
    let mut rng = Rng(seed | 1);
    let ms = duration.as_millis() as u64;
    let (lo, hi) = (ms * KILL_WINDOW_PCT.0 / 100, (ms * KILL_WINDOW_PCT.1 / 100).max(ms * KILL_WINDOW_PCT.0 / 100 + 1));
    let mut points: Vec<Duration> = (0..kills).map(|_| Duration::from_millis(rng.next_in(lo, hi))).collect();
    points.sort_unstable();
    points
}

/// Whether memory levelled off: past the warm-up, the later half's peak is within
/// [`RSS_GROWTH_PCT_MAX`] (plus [`RSS_GROWTH_SLACK_KIB`]) of the earlier half's.
pub fn levels_off(samples: &[(f64, u64)]) -> Result<(), String> {
    let settled = &samples[samples.len() * RSS_WARMUP_PCT / 100..];
    if settled.len() < 4 {
        return Ok(());
    }
    let (early, late) = settled.split_at(settled.len() / 2);
    let peak = |s: &[(f64, u64)]| s.iter().map(|x| x.1).max().unwrap_or(0);
    let allowed = peak(early) * RSS_GROWTH_PCT_MAX / 100 + RSS_GROWTH_SLACK_KIB;
    if peak(late) > allowed {
        return Err(format!(
            "memory grows: the later half peaked at {} KiB, the earlier at {} KiB (allowed {allowed})",
            peak(late),
            peak(early)
        ));
    }
    Ok(())
}

/// The processes of a run.
struct Cast {
    dirs: TempDir,
    spec: Spec,
    target: Arc<Target>,
    peers: Vec<NodeProc>,
}

fn cast(c: &SoakConfig) -> Result<Cast, String> {
    let dirs = TempDir::new("soak")?;
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    let spec = Spec::new(&c.node, &dirs.join("target"), "target", port).var("DARKMATTER_AUTO_ACCEPT_LOCAL", "false");
    let target = NodeProc::spawn(&spec)?;
    let mut peers = Vec::new();
    for i in 0..c.peers + c.flood_peers {
        let p = NodeProc::spawn(&Spec::new(&c.node, &dirs.join(&format!("peer{i}")), &format!("peer{i}"), 0))?;
        node::connect(&p, &target)?;
        peers.push(p);
    }
    if c.global_unlimited {
        target.call(json!({"cmd": "set_rate_limit", "limit": -1}))?;
    }
    Ok(Cast { target: Arc::new(Target::new(target)?), dirs, spec, peers })
}

fn legit_config(c: &SoakConfig, cast: &Cast, sink_url: &str) -> Result<Config, String> {
    let mut peers = Vec::new();
    for i in 0..c.peers {
        let passport = node::passport_in(&cast.dirs.join(&format!("peer{i}")))?;
        peers.push(Peer { passport, url: cast.peers[i].url(), source: source(11 + i as u8) });
    }
    Ok(Config {
        peers,
        message_every: Duration::from_millis(2_500),
        newcomer_every: Duration::from_secs(5),
        newcomer_sources: (20, 10),
        status_every: Duration::from_secs(1),
        status_source: 5,
        review_every: Duration::from_secs(2),
        leave_unread: None,
        let_go: true,
        sink_url: sink_url.to_owned(),
        id_prefix: "legit".to_owned(),
    })
}

/// Starts every part of the mix; each with its name.
fn start_mix(
    c: &SoakConfig,
    cast: &Cast,
    ledger: &Arc<Ledger>,
    sink_url: &str,
) -> Result<Vec<(String, Running)>, String> {
    let mut mix = vec![
        ("junk".to_owned(), Attack::Junk { burst: 210, per_s: c.junk_per_s }, 2),
        ("slow bodies".to_owned(), Attack::SlowBodies { sockets: c.slow_bodies }, 3),
        ("slow heads".to_owned(), Attack::SlowHeads { sockets: c.slow_heads }, 4),
        (
            "throwaway requests".to_owned(),
            Attack::ThrowawayRequests { burst: c.throwaway_burst, every: c.throwaway_every },
            9,
        ),
    ];
    for i in 0..c.flood_peers {
        let passport = Arc::new(node::passport_in(&cast.dirs.join(&format!("peer{}", c.peers + i)))?);
        let url = cast.peers[c.peers + i].url();
        let a = Attack::ValidFlood { passport, url, per_s: c.flood_per_s, connections: 1 };
        mix.push((format!("valid flood {i}"), a, 30 + i as u8));
    }
    Ok(mix
        .into_iter()
        .map(|(name, a, from)| (name, attack::start(a, cast.target.clone(), ledger.clone(), source(from), sink_url)))
        .collect())
}

/// kill -9 and a restart on the same state directory and port; re-applies the operator's setting.
fn crash_and_restart(c: &SoakConfig, cast: &Cast) -> Result<(), String> {
    cast.target.down.store(true, Ordering::Release);
    cast.target.restarts.fetch_add(1, Ordering::AcqRel);
    cast.target.node().kill9();
    let node = NodeProc::spawn(&cast.spec)?;
    if c.global_unlimited {
        node.call(json!({"cmd": "set_rate_limit", "limit": -1}))?;
    }
    cast.target.replace(node);
    cast.target.down.store(false, Ordering::Release);
    Ok(())
}

/// Runs the soak.
pub fn run(c: &SoakConfig) -> Result<SoakReport, String> {
    let sink = Sink::start().map_err(|e| format!("sink: {e}"))?;
    let cast = cast(c)?;
    let ledger = Arc::new(Ledger::default());
    let mix = start_mix(c, &cast, &ledger, &sink.url)?;
    let legit = Legit::start(cast.target.clone(), legit_config(c, &cast, &sink.url)?, ledger.clone());
    let mut report = SoakReport::default();
    let result = watch(c, &cast, &mut report);
    let probes = legit.stop();
    for (name, running) in mix {
        report.attacks.push((name, running.stop().line()));
    }
    result?;
    report.summaries = Kind::ALL.iter().map(|k| (*k, probes.summary(*k))).collect();
    // One last crash, then what survived.
    crash_and_restart(c, &cast)?;
    report.kills += 1;
    let inbox = drain_inbox(&cast.target.node(), &ledger, None)?;
    report.lost = ledger.lost(&inbox);
    report.acked = ledger.acked.lock().unwrap_or_else(|p| p.into_inner()).len();
    judge(c, &mut report);
    for p in &cast.peers {
        p.stop();
    }
    cast.target.node().stop();
    Ok(report)
}

/// The run's clock: samples memory, kills at the seeded points, notices a node that died by itself.
fn watch(c: &SoakConfig, cast: &Cast, report: &mut SoakReport) -> Result<(), String> {
    let start = Instant::now();
    let mut kills = kill_points(c.seed, c.kills, c.duration).into_iter().peekable();
    let mut next_progress = c.progress_every.map(|p| start + p);
    while start.elapsed() < c.duration {
        std::thread::sleep(Duration::from_millis(RSS_SAMPLE_MS));
        let node = cast.target.node();
        if let Some(status) = node.exited() {
            report.violations.push(format!("the node exited by itself ({status}) after {:?}", start.elapsed()));
            return Err(report.violations.join("; "));
        }
        if let Some(kib) = node.rss_kib() {
            report.rss.push((start.elapsed().as_secs_f64(), kib));
        }
        if kills.peek().is_some_and(|k| start.elapsed() >= *k) {
            kills.next();
            crash_and_restart(c, cast)?;
            report.kills += 1;
        }
        if next_progress.is_some_and(|t| Instant::now() >= t) {
            next_progress = c.progress_every.map(|p| Instant::now() + p);
            let kib = report.rss.last().map(|s| s.1).unwrap_or(0);
            eprintln!("soak: {:>5.0} s, RSS {kib} KiB, {} kill -9 so far", start.elapsed().as_secs_f64(), report.kills);
        }
    }
    Ok(())
}

/// Adds a violation for each broken expectation.
fn judge(c: &SoakConfig, r: &mut SoakReport) {
    for (kind, s) in &r.summaries {
        if *kind != Kind::Newcomer && s.share() < c.served_min {
            r.violations.push(format!(
                "{}: {:.1} % served ({}/{}), below {:.1} %",
                kind.name(),
                100.0 * s.share(),
                s.served,
                s.attempts,
                100.0 * c.served_min
            ));
        }
    }
    if r.rss_peak_kib() > c.rss_max_kib {
        r.violations.push(format!("resident memory peaked at {} KiB, above {} KiB", r.rss_peak_kib(), c.rss_max_kib));
    }
    if let Err(e) = levels_off(&r.rss) {
        r.violations.push(e);
    }
    if !r.lost.is_empty() {
        let some: HashSet<&String> = r.lost.iter().take(5).collect();
        r.violations.push(format!("{} acknowledged messages lost, e.g. {some:?}", r.lost.len()));
    }
    if r.kills < c.kills + 1 {
        r.violations.push(format!("only {} of {} kill -9 happened", r.kills, c.kills + 1));
    }
}

/// The report as text: one line per kind, memory, kills, losses, attackers, violations.
pub fn render(c: &SoakConfig, r: &SoakReport) -> String {
    let mut out = format!(
        "soak: {} s, seed {} (repeat with --seed {}), {} kill -9 (the last one at the end)\n",
        c.duration.as_secs(),
        c.seed,
        c.seed,
        r.kills
    );
    for (kind, s) in &r.summaries {
        out += &format!(
            "  {:<14} {:>6.1} % served ({}/{}), p50 {:.1} ms, p99 {:.1} ms; not served: {}\n",
            kind.name(),
            100.0 * s.share(),
            s.served,
            s.attempts,
            s.p50_ms,
            s.p99_ms,
            s.unserved_line()
        );
    }
    let first = r.rss.iter().take(5).map(|s| s.1).max().unwrap_or(0);
    out += &format!(
        "  RSS: {} samples, first 5 s peak {first} KiB, peak {} KiB, last {} KiB\n",
        r.rss.len(),
        r.rss_peak_kib(),
        r.rss.last().map(|s| s.1).unwrap_or(0)
    );
    out += &format!("  acknowledged messages: {}, lost after the kills: {}\n", r.acked, r.lost.len());
    for (name, tally) in &r.attacks {
        out += &format!("  {name:<18} {tally}\n");
    }
    for v in &r.violations {
        out += &format!("  VIOLATION: {v}\n");
    }
    out
}
