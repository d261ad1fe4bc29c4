//! `darkmatter-sim`: list and run scenarios, and benchmark the simulator.
//!
//! ```text
//! darkmatter-sim list
//! darkmatter-sim run <scenario> [--nodes N] [--seed S] [--duration 1h] [--out DIR] [--trace FILE] [--KEY VALUE]...
//! darkmatter-sim bench [--nodes N] [--seed S] [--duration 1h] [--timing] [--signatures real|real-inline|null]
//! ```
//!
//! `darkmatter-sim <command> --help` lists every option.

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use clap::builder::PossibleValuesParser;
use clap::error::ErrorKind;
use clap::{Arg, ArgAction, ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use runtime_sim::crypto::Signatures;
use runtime_sim::scenario::{self, format_duration, parse_duration};
use runtime_sim::{bench, scenario_churn, scenario_nat, trust_study, Options, Report, Sim, Violation};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The deterministic DarkMatter mesh simulator: the same seed and options give the same trace.
#[derive(Parser)]
#[command(name = "darkmatter-sim", version, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Lists the scenarios, each with its default node count and duration.
    List,
    /// Runs a scenario and prints a summary ending with its trace hash.
    ///
    /// The summary ends with `trace-hash: <hex>`: the same seed and options give the same trace, byte
    /// for byte. A broken invariant prints the violation, the seed, the options and the command that
    /// reproduces it, and exits 1.
    Run(RunArgs),
    /// Benchmarks the simulator on the ordinary load (20-50 connections each).
    Bench(BenchArgs),
    /// The AntiMatter study: how signals end (match, terminal, timeout) on a tenure-ordered random
    /// graph, and their games against 1/P(N). Prints a summary ending with its trace hash.
    Antimatter(AntimatterArgs),
}

#[derive(Args)]
struct AntimatterArgs {
    /// Nodes.
    #[arg(long, default_value_t = 1000)]
    nodes: u32,
    /// Mean connections per node.
    #[arg(long, default_value_t = 8)]
    peers: u32,
    /// Signals started.
    #[arg(long, default_value_t = 10_000)]
    signals: u32,
    /// The one seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Args)]
struct RunArgs {
    /// The scenario (`darkmatter-sim list` describes them).
    #[arg(value_parser = scenario_names())]
    scenario: String,
    /// Nodes (honest nodes in a trust study) [default: the scenario's].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    nodes: Option<u32>,
    /// The one seed every random choice derives from.
    #[arg(long, value_name = "S", default_value_t = 1)]
    seed: u64,
    /// Simulated duration: 1h, 20m, 90s, 250ms or plain seconds [default: the scenario's].
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    duration: Option<u64>,
    /// Writes metrics.csv and metrics.svg here (and a trust study's study.csv and study.svg).
    #[arg(long, value_name = "DIR")]
    out: Option<String>,
    /// Writes the full trace here, one line per event (`-`: standard output).
    #[arg(long, value_name = "FILE")]
    trace: Option<String>,
    #[command(flatten)]
    overrides: Overrides,
}

#[derive(Args)]
struct BenchArgs {
    /// Nodes.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    nodes: u32,
    /// The one seed every random choice derives from.
    #[arg(long, value_name = "S", default_value_t = 1)]
    seed: u64,
    /// Simulated duration: 1h, 20m, 90s, 250ms or plain seconds.
    #[arg(long, value_name = "D", default_value = "1h", value_parser = parse_duration)]
    duration: u64,
    /// Also times the core's handling of each kind of input (two clock reads per input).
    #[arg(long)]
    timing: bool,
    /// Signature work: real Ed25519 checked ahead on the other cores, real Ed25519 all on one thread, or a
    /// forgeable digest that replays the same trace (measurement only).
    #[arg(long, value_name = "KIND", default_value = "real", value_parser = Signatures::parse)]
    signatures: Signatures,
}

fn scenario_names() -> PossibleValuesParser {
    PossibleValuesParser::new(scenario::catalog().into_iter().map(|s| s.name))
}

/// One `--KEY VALUE` override of a scenario's options. Its value is checked by [`Options::apply`]
/// (the same check the library's callers get), and it joins the reproduction command as given.
struct Override {
    key: &'static str,
    value_name: &'static str,
    heading: &'static str,
    help: &'static str,
    /// The only values it takes, if it is a choice.
    choices: &'static [&'static str],
}

const NET: &str = "Network";
const LOAD: &str = "Workload (rates R are per node per simulated hour)";
const TRUST: &str = "Trust";
const STUDY: &str = "Trust studies (trust-propagation, sybil)";

const fn o(key: &'static str, value_name: &'static str, heading: &'static str, help: &'static str) -> Override {
    Override { key, value_name, heading, help, choices: &[] }
}

/// Every override, in the order `--help` lists them.
const OVERRIDES: &[Override] = &[
    o("loss", "P", NET, "Probability that a datagram or request is lost"),
    o("burst", "P", NET, "Probability of entering a loss burst (Gilbert-Elliott)"),
    o("latency-ms", "MIN..MAX", NET, "Per-link base latency range, ms"),
    o("jitter-ms", "MS", NET, "Mean exponential jitter, ms"),
    o("cost-us", "US", NET, "A node's handling cost per request, µs (requests queue behind it)"),
    o("skew-ms", "MS", NET, "Largest clock skew of a node, ms"),
    o("degree", "D|MIN..MAX", NET, "Formation degree (random regular)"),
    o("topology", "random|small-world", NET, "Formation topology: random 8-regular or a small world of degree 8"),
    o("max-connections", "N", NET, "max_connections of every ordinary node"),
    o("direct", "R", LOAD, "Direct messages"),
    o("broadcast", "R", LOAD, "Broadcasts"),
    o("health", "R", LOAD, "GET /status health checks"),
    o("beacon", "R", LOAD, "LAN beacons"),
    o("churn", "R", LOAD, "Disconnects and reconnects"),
    o("adversary", "R", LOAD, "Envelopes the adversary bends"),
    o("crash", "R", LOAD, "Crashes"),
    o("forward", "P", LOAD, "Probability that an agent forwards a broadcast"),
    o("reply", "P", LOAD, "Probability that an agent replies to a message"),
    o("spawn", "0|1", LOAD, "1: nodes spawn agents (default limits); each ends one think time after it starts"),
    Override {
        key: "sabotage",
        value_name: "BUG",
        heading: LOAD,
        help: "A deliberate harness bug, to show that the invariants catch it",
        choices: &["none", "lose-replay"],
    },
    Override {
        key: "policy",
        value_name: "POLICY",
        heading: TRUST,
        help: "How nodes combine their peers' answers to a trust query",
        choices: &["weighted", "plain", "unbounded"],
    },
    Override {
        key: "signatures",
        value_name: "KIND",
        heading: NET,
        help: "Signature work: real Ed25519 (checked ahead on other cores, or all inline), or a forgeable digest \
               with the same trace (measurement only)",
        choices: &["real", "real-inline", "null"],
    },
    o("sybils", "N", STUDY, "Sybil identities"),
    o("newcomers", "N", STUDY, "Vouched newcomers"),
    o("sybil-targets", "N", STUDY, "Honest nodes each Sybil asks to connect"),
    o("gateway-frac", "P", STUDY, "Fraction of Sybils with connections to honest nodes"),
    o("gateway-links", "N", STUDY, "Honest connections of each such Sybil"),
    o("gateway-trust", "P", STUDY, "Probability that an honest node trusts its Sybil like any connection"),
    o("strategy", "S,S", STUDY, "The Sybils' strategies: farm, neighbours, slander, compromised (or all)"),
    o("attack-after", "D", STUDY, "Sybil requests and newcomers start this long after 120 s (the farming time)"),
    o("trust-prob", "P", STUDY, "Probability that a node trusts a given honest connection"),
    o("trust-range", "A..B", STUDY, "Score range of those impressions"),
    o("vouch-range", "A..B", STUDY, "Score range of a voucher's impression of its newcomer"),
    o("single", "0|1", STUDY, "1: each newcomer asks one random vouched target and nobody else"),
    o("window", "D", STUDY, "Sybil requests and newcomer arrivals are spread over this"),
    o("two-hop", "N", STUDY, "Two-hop targets per newcomer"),
    o("controls", "N", STUDY, "Random control targets per newcomer"),
    o("retry", "D", STUDY, "A newcomer asks again this long after its previous attempt (0: never)"),
    o("acquaint", "D", STUDY, "Mean delay before a node that accepted a newcomer forms its own view (0: never)"),
];

/// The overrides given, in command-line order (the order they are applied and reproduced in).
struct Overrides(Vec<(String, String)>);

impl FromArgMatches for Overrides {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut given = Vec::new();
        for o in OVERRIDES {
            if let (Some(values), Some(at)) = (m.get_many::<String>(o.key), m.indices_of(o.key)) {
                given.extend(at.zip(values).map(|(i, v)| (i, o.key.to_owned(), v.clone())));
            }
        }
        given.sort_by_key(|g| g.0);
        Ok(Self(given.into_iter().map(|(_, k, v)| (k, v)).collect()))
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl Args for Overrides {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        cmd.args(OVERRIDES.iter().map(|o| {
            let arg = Arg::new(o.key)
                .long(o.key)
                .value_name(o.value_name)
                .help(o.help)
                .help_heading(o.heading)
                .action(ArgAction::Append);
            if o.choices.is_empty() {
                arg
            } else {
                arg.value_parser(PossibleValuesParser::new(o.choices))
            }
        }))
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Cmd::List => {
            list();
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run(args) => run(args),
        Cmd::Bench(args) => bench_cmd(&args),
        Cmd::Antimatter(a) => {
            if a.nodes < 2 || a.peers < 2 {
                usage_error_for("antimatter", "--nodes and --peers must be at least 2".to_owned());
            }
            let o = runtime_sim::scenario_antimatter::Options {
                nodes: a.nodes,
                peers: a.peers,
                signals: a.signals,
                seed: a.seed,
            };
            print!("{}", runtime_sim::scenario_antimatter::run(&o).text(&o));
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

fn list() {
    for s in scenario::catalog() {
        println!(
            "{:<16} {} (default {} nodes, {})",
            s.name,
            s.about,
            s.default_nodes,
            format_duration(s.default_duration_us)
        );
    }
}

fn progress_bar(duration_us: u64, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(duration_us / 1_000_000), indicatif::ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} simulated s  {msg}")
            .expect("template")
            .progress_chars("=> "),
    );
    pb
}

/// The options of a `run` (the scenario's, with the overrides applied in the order given) and the
/// node count asked for (a trust study adds newcomers and Sybils to it).
fn run_options(args: &RunArgs) -> (Options, u32) {
    let sc = scenario::find(&args.scenario).expect("the parser admits only the catalog's names");
    let nodes = args.nodes.unwrap_or(sc.default_nodes);
    let mut opts: Options = (sc.build)(nodes, args.seed, args.duration.unwrap_or(sc.default_duration_us));
    for (k, v) in &args.overrides.0 {
        if let Err(e) = opts.apply(k, v) {
            let e = if opts.study.is_none() && trust_study::is_key(k) {
                format!("--{k} applies to the trust studies only (trust-propagation, sybil)")
            } else {
                e
            };
            usage_error(e);
        }
    }
    if args.trace.is_some() {
        opts.capture_trace = true;
    }
    (opts, nodes)
}

/// Exits as clap does on a bad value (its message form, `run`'s usage, exit code 2): a value only
/// [`Options::apply`] can judge is a usage error like any other.
fn usage_error_for(sub: &str, message: String) -> ! {
    let mut cli = Cli::command();
    cli.build();
    let cmd = cli.find_subcommand_mut(sub).expect("a subcommand");
    cmd.error(ErrorKind::ValueValidation, message).exit()
}

fn usage_error(message: String) -> ! {
    let mut cli = Cli::command();
    cli.build();
    let run = cli.find_subcommand_mut("run").expect("run is a subcommand");
    run.error(ErrorKind::ValueValidation, message).exit()
}

fn run(args: RunArgs) -> Result<ExitCode, String> {
    let (opts, nodes) = run_options(&args);
    let (seed, duration) = (args.seed, opts.duration_us);
    let (out_dir, trace_file) = (args.out, args.trace);
    let long = nodes >= 500 || duration >= 1_800_000_000;
    let pb = progress_bar(duration, long);
    let mut sim = Sim::new(opts.clone());
    let started = Instant::now();
    let mut tick = |t: u64, events: u64| {
        pb.set_position(t / 1_000_000);
        pb.set_message(format!("{events} events"));
    };
    let result = sim.run(&mut tick);
    pb.finish_and_clear();
    if let Some(path) = &trace_file {
        write_text(path, &sim.trace().text())?;
    }
    match result {
        Ok(report) => {
            let study = sim.study_report();
            if let Some(dir) = &out_dir {
                std::fs::create_dir_all(dir).map_err(|e| format!("{dir}: {e}"))?;
                write_text(&format!("{dir}/metrics.csv"), &sim.metrics().csv())?;
                let svg = sim.metrics().svg(&format!("{} ({} nodes, seed {})", opts.scenario, nodes, seed))?;
                write_text(&format!("{dir}/metrics.svg"), &svg)?;
                if let Some(st) = &study {
                    write_text(&format!("{dir}/study.csv"), &st.asks_csv())?;
                    write_text(
                        &format!("{dir}/study.svg"),
                        &st.svg(&format!("{} ({} nodes, seed {})", opts.scenario, nodes, seed))?,
                    )?;
                }
            }
            if let Some(st) = &study {
                print!("{}", st.text());
            }
            if let Some(watch) = sim.observer::<scenario_churn::Watch>() {
                let title = format!("{} ({} nodes, seed {})", opts.scenario, nodes, seed);
                if let Some(dir) = &out_dir {
                    write_text(&format!("{dir}/healing.svg"), &watch.svg(&title)?)?;
                }
                print!("{}", watch.text(&sim, nodes));
            }
            if let Some(watch) = sim.observer::<scenario_nat::Watch>() {
                if let Some(dir) = &out_dir {
                    let title = format!("{} ({} nodes, seed {})", opts.scenario, nodes, seed);
                    write_text(&format!("{dir}/nat.svg"), &watch.svg(&title)?)?;
                }
                print!("{}", watch.text(nodes));
            }
            print_summary(&opts, &report, started.elapsed().as_secs_f64(), out_dir.as_deref());
            Ok(ExitCode::SUCCESS)
        }
        Err(v) => {
            print_violation(&opts, &v);
            Ok(ExitCode::from(1))
        }
    }
}

fn write_text(path: &str, text: &str) -> Result<(), String> {
    if path == "-" {
        std::io::stdout().write_all(text.as_bytes()).map_err(|e| e.to_string())
    } else {
        std::fs::write(path, text).map_err(|e| format!("{path}: {e}"))
    }
}

fn print_summary(o: &Options, r: &Report, wall: f64, out: Option<&str>) {
    let c = &r.counters;
    let sim_s = r.sim_us as f64 / 1e6;
    println!(
        "scenario           {} ({} nodes, seed {}, {})",
        o.scenario,
        o.nodes,
        o.seed,
        format_duration(o.duration_us)
    );
    println!(
        "events processed   {} in {:.2} s wall ({:.0} events/s; setup {:.2} s)",
        r.events,
        wall,
        r.events as f64 / r.wall.as_secs_f64().max(1e-9),
        r.setup.as_secs_f64()
    );
    println!("simulated/wall     {:.0} s / {:.2} s = {:.0}x", sim_s, wall, sim_s / wall.max(1e-9));
    println!("nodes up           {} of {}; connections {}", r.nodes_up, o.nodes, r.connections);
    match r.delivery_ratio {
        Some(d) => println!(
            "delivery ratio     {d:.4} ({} of {} deliveries received; {} acknowledged)",
            c.delivered, c.intended, c.acked
        ),
        None => println!("delivery ratio     n/a (no messages sent)"),
    }
    if let Some(a) = r.delivery_after {
        println!("after healing      {a:.4}");
    }
    println!(
        "answers            {} ok, {} rate-limited (429), {} refused otherwise; {} transport errors",
        c.ok, c.rate_limited, c.refused, c.transport_errors
    );
    if c.health_sent > 0 {
        println!("health checks      {} of {} answered", c.health_ok, c.health_sent);
    }
    if c.forwarded > 0 {
        println!("forwards           {}", c.forwarded);
    }
    if c.spawns > 0 || c.spawns_refused > 0 {
        println!("spawned agents     {} started, {} held back by a limit", c.spawns, c.spawns_refused);
    }
    if c.beacons > 0 {
        println!("beacons            {} sent, {} datagrams handed in", c.beacons, c.datagrams);
    }
    if c.forgeries > 0 {
        println!("adversary          {} envelopes injected, {} refused", c.forgeries, c.forgeries_refused);
    }
    if c.crashes + c.moves > 0 {
        println!(
            "faults             {} crashes, {} restarts, {} address moves, {} peer updates accepted",
            c.crashes, c.restarts, c.moves, c.peer_updates
        );
        println!("lookups            {} peers found at a new URL, {} not found", c.urls_recovered, c.peers_not_found);
    }
    if let Some((stale, all)) = r.stale_links {
        println!("stale links        {stale} of {all} connections point at an address their peer left");
    }
    if c.decided_accepted + c.decided_rejected > 0 {
        println!(
            "trust decisions    {} requests accepted, {} rejected by peers' opinions",
            c.decided_accepted, c.decided_rejected
        );
    }
    println!(
        "invariant checks   {} passed (inbox-once, authentic, limits, ack-after-commit, survives-restart, one-reply)",
        r.checks
    );
    println!("persisted replay   up to {} rows on one node", r.replay_rows_max);
    if let Some(dir) = out {
        let study = if o.study.is_some() { format!(", {dir}/study.csv, {dir}/study.svg") } else { String::new() };
        println!("output             {dir}/metrics.csv, {dir}/metrics.svg{study}");
    }
    println!("trace-hash: {}", r.trace_hash);
}

fn print_violation(o: &Options, v: &Violation) {
    println!("INVARIANT VIOLATED: {v}");
    println!("seed: {}", o.seed);
    println!("options: {o:#?}");
    println!("reproduce with:");
    println!("  {}", o.command_line());
}

fn bench_cmd(args: &BenchArgs) -> Result<ExitCode, String> {
    let BenchArgs { nodes, seed, duration, timing, signatures } = *args;
    let costs = bench::crypto_costs();
    let json = bench::json_costs();
    println!(
        "bench: ordinary traffic, {nodes} nodes, 20-50 connections each, {} simulated, seed {seed}{}{}",
        format_duration(duration),
        if timing { ", timing the core" } else { "" },
        if signatures == Signatures::Null { ", null signatures (measurement only)" } else { "" }
    );
    let pb = progress_bar(duration, true);
    let mut tick = |t: u64, events: u64| {
        pb.set_position(t / 1_000_000);
        pb.set_message(format!("{events} events"));
    };
    let result = bench::run(nodes, seed, duration, timing, signatures, &mut tick);
    pb.finish_and_clear();
    let hwm = bench::vm_hwm_kib();
    // Measured again after the loop: the machine's load changes within a run.
    let costs = costs.min(bench::crypto_costs());
    let json = json.min(bench::json_costs());
    match result {
        Ok((r, cpu)) => {
            print!("{}", bench::describe(&r, signatures, cpu, &costs, &json, hwm));
            println!("delivery ratio:          {}", r.delivery_ratio.map_or("n/a".to_owned(), |d| format!("{d:.4}")));
            println!("invariant checks:        {} passed", r.checks);
            println!("trace-hash: {}", r.trace_hash);
            Ok(ExitCode::SUCCESS)
        }
        Err(v) => {
            let mut o = scenario::ordinary(nodes, seed, duration);
            o.scenario = "ordinary".to_owned();
            if signatures != Signatures::Real {
                o.apply("signatures", &signatures.to_string())?;
            }
            print_violation(&o, &v);
            Ok(ExitCode::from(1))
        }
    }
}
