//! `flood`: the floods of issue 12 against a real node, each beside a no-flood baseline measured in
//! the same run, with legitimate traffic measured throughout.
//!
//! ```text
//! flood [--node <darkmatter-node>] [--duration-s <s>] [--only <name>,...]
//! ```
//! Each row is a fresh node (state in a temporary directory, loopback, discovery off) with three
//! connected peers (child nodes, connected through the real handshake), under one flood from
//! 127.0.0.2 while the legitimate load runs for `--duration-s` seconds (default 30):
//! - each peer posts a message signed with its key every 2.5 s (24 a minute, under the default
//!   per-peer window of 30), from an address of its own (127.0.0.11-13);
//! - a newcomer with a fresh key sends a signed connection request every 3 s, from 127.0.0.20-29 in
//!   turn; it is served when auto-accepted, or when the agent, who looks every 2 s, still finds it
//!   pending and accepts it (ten a row at most: the connection table of 50 never fills by itself);
//! - a monitor reads `GET /__darkmatter__/status` every second from 127.0.0.5;
//! - the agent reads its inbox every 2 s (but a stranger's messages, which it ignores).
//!
//! Prints one markdown row per flood: served share, p50 and p99 of each kind of legitimate request,
//! what was not served (by status), and the p99 of peer messages as a ratio to the baseline's. Exit
//! status 1 if a node failed.

#[path = "load/mod.rs"]
mod load;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use load::attack::{self, Attack};
use load::legit::{Config, Ledger, Legit, Peer, Target};
use load::net::{source, Sink};
use load::node::{self, NodeProc, Spec, TempDir};
use load::stats::{Kind, Probes, Summary};

/// Legitimate peers per row.
const PEERS: usize = 3;
/// The attacker's address.
const ATTACKER: u8 = 2;

/// A row's flood: an attack as it is, or a flood of valid messages from a connected peer of its own
/// (whose key is known once its node runs).
#[derive(Clone)]
enum Plan {
    Attack(Attack),
    FromFloodPeer { per_s: u32, connections: usize },
}

/// One row: a name, the flood (none for a baseline), and whether local auto-accept is on.
struct Row {
    name: &'static str,
    plan: Option<Plan>,
    auto_accept_local: bool,
    /// Messages whose id starts with this stay unread (the agent ignores a stranger).
    leave_unread: Option<&'static str>,
}

fn rows() -> Vec<Row> {
    let row = |name, attack: Option<Attack>, auto_accept_local| Row {
        name,
        plan: attack.map(Plan::Attack),
        auto_accept_local,
        leave_unread: None,
    };
    vec![
        row("baseline (no flood)", None, false),
        row("1a junk: 210 one-byte POSTs, then 45/s", Some(Attack::Junk { burst: 210, per_s: 45 }), false),
        Row {
            name: "1b 1,000 valid messages/s from one connected peer",
            plan: Some(Plan::FromFloodPeer { per_s: 1_000, connections: 4 }),
            auto_accept_local: false,
            leave_unread: None,
        },
        row("2a slow bodies: 70 × Content-Length 400,000 at 1 byte/s", Some(Attack::SlowBodies { sockets: 70 }), false),
        row("2b slow heads: 300 sockets trickling headers", Some(Attack::SlowHeads { sockets: 300 }), false),
        Row {
            name: "3 a stranger's key fills the inbox (50, then 1/s)",
            plan: Some(Plan::Attack(Attack::StrangerInbox { burst: 50, per_s: 1 })),
            auto_accept_local: false,
            leave_unread: Some("stranger-"),
        },
        row(
            "4a 60 signed requests from throwaway keys every 5 s",
            Some(Attack::ThrowawayRequests { burst: 60, every: Duration::from_secs(5) }),
            false,
        ),
        row("baseline, local auto-accept on", None, true),
        row(
            "4b 50 local auto-accepts of throwaway keys every 10 s",
            Some(Attack::ThrowawayRequests { burst: 50, every: Duration::from_secs(10) }),
            true,
        ),
    ]
}

struct Args {
    node: PathBuf,
    duration: Duration,
    only: Option<Vec<String>>,
}

fn parse_args() -> Result<Args, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut a = Args { node: exe.with_file_name("darkmatter-node"), duration: Duration::from_secs(30), only: None };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--node" => a.node = PathBuf::from(value()?),
            "--duration-s" => a.duration = Duration::from_secs(value()?.parse().map_err(|e| format!("{e}"))?),
            "--only" => a.only = Some(value()?.split(',').map(str::to_owned).collect()),
            _ => return Err(format!("unknown argument {arg}")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("flood: {e}\nusage: flood [--node <darkmatter-node>] [--duration-s <s>] [--only <prefix>,...]");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flood: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let sink = Sink::start().map_err(|e| format!("sink: {e}"))?;
    println!("flood: {} s per row, node {}", args.duration.as_secs(), args.node.display());
    println!(
        "| flood | peer messages served | p50 ms | p99 ms | p99 / baseline | not served | new requests served | p99 ms | not served | GET /status served | p99 ms | attacker's requests |"
    );
    println!("|---|---:|---:|---:|---:|---|---:|---:|---|---:|---:|---|");
    let mut baseline_p99 = None;
    for row in rows() {
        let name = row.name;
        if args.only.as_ref().is_some_and(|o| !o.iter().any(|p| name.starts_with(p.as_str()))) {
            continue;
        }
        let (summaries, tally) = measure(args, &row, &sink.url)?;
        let m = &summaries[0];
        if row.plan.is_none() && !row.auto_accept_local {
            baseline_p99 = Some(m.p99_ms);
        }
        let ratio = baseline_p99.filter(|b| *b > 0.0).map(|b| format!("{:.2}", m.p99_ms / b)).unwrap_or("—".into());
        println!(
            "| {name} | {} | {:.1} | {:.1} | {ratio} | {} | {} | {:.1} | {} | {} | {:.1} | {tally} |",
            share(m),
            m.p50_ms,
            m.p99_ms,
            m.unserved_line(),
            share(&summaries[1]),
            summaries[1].p99_ms,
            summaries[1].unserved_line(),
            share(&summaries[2]),
            summaries[2].p99_ms,
        );
    }
    Ok(())
}

fn share(s: &Summary) -> String {
    format!("{:.0} % ({}/{})", 100.0 * s.share(), s.served, s.attempts)
}

/// The three peers' nodes (and a flood peer's when the row needs one), connected to the target.
struct Cast {
    _dirs: TempDir,
    target: Arc<Target>,
    peers: Vec<NodeProc>,
    peer_dirs: Vec<PathBuf>,
}

fn cast(args: &Args, auto_accept_local: bool, extra_peers: usize) -> Result<Cast, String> {
    let dirs = TempDir::new("flood")?;
    let accept = if auto_accept_local { "true" } else { "false" };
    let spec = Spec::new(&args.node, &dirs.join("target"), "target", 0).var("DARKMATTER_AUTO_ACCEPT_LOCAL", accept);
    let target = NodeProc::spawn(&spec)?;
    let mut peers = Vec::new();
    let mut peer_dirs = Vec::new();
    for i in 0..PEERS + extra_peers {
        let dir = dirs.join(&format!("peer{i}"));
        let p = NodeProc::spawn(&Spec::new(&args.node, &dir, &format!("peer{i}"), 0))?;
        node::connect(&p, &target)?;
        peers.push(p);
        peer_dirs.push(dir);
    }
    Ok(Cast { _dirs: dirs, target: Arc::new(Target::new(target)?), peers, peer_dirs })
}

fn legit_config(cast: &Cast, sink_url: &str, leave_unread: Option<&str>) -> Result<Config, String> {
    let mut peers = Vec::new();
    for i in 0..PEERS {
        let passport = node::passport_in(&cast.peer_dirs[i])?;
        peers.push(Peer { passport, url: cast.peers[i].url(), source: source(11 + i as u8) });
    }
    Ok(Config {
        peers,
        message_every: Duration::from_millis(2_500),
        newcomer_every: Duration::from_secs(3),
        newcomer_sources: (20, 10),
        status_every: Duration::from_secs(1),
        status_source: 5,
        review_every: Duration::from_secs(2),
        leave_unread: leave_unread.map(str::to_owned),
        let_go: false,
        sink_url: sink_url.to_owned(),
        id_prefix: "legit".to_owned(),
    })
}

/// Runs one row: its figures per kind (in [`Kind::ALL`] order) and the attacker's tally.
fn measure(args: &Args, row: &Row, sink_url: &str) -> Result<([Summary; 3], String), String> {
    let flood_peer = matches!(row.plan, Some(Plan::FromFloodPeer { .. }));
    let cast = cast(args, row.auto_accept_local, usize::from(flood_peer))?;
    let ledger = Arc::new(Ledger::default());
    let attack = match row.plan.clone() {
        None => None,
        Some(Plan::Attack(a)) => Some(a),
        Some(Plan::FromFloodPeer { per_s, connections }) => {
            let passport = Arc::new(node::passport_in(&cast.peer_dirs[PEERS])?);
            Some(Attack::ValidFlood { passport, url: cast.peers[PEERS].url(), per_s, connections })
        }
    };
    let attack = attack.map(|a| attack::start(a, cast.target.clone(), ledger.clone(), source(ATTACKER), sink_url));
    let legit = Legit::start(cast.target.clone(), legit_config(&cast, sink_url, row.leave_unread)?, ledger);
    std::thread::sleep(args.duration);
    let probes: Arc<Probes> = legit.stop();
    let tally = attack.map(|a| a.stop().line()).unwrap_or_else(|| "—".to_owned());
    if let Some(status) = cast.target.node().exited() {
        return Err(format!("{}: the target exited ({status})", row.name));
    }
    for p in &cast.peers {
        p.stop();
    }
    cast.target.node().stop();
    Ok((Kind::ALL.map(|k| probes.summary(k)), tally))
}
