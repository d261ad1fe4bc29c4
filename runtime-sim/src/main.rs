//! `darkmatter-sim`: list and run scenarios, and benchmark the simulator.
//!
//! ```text
//! darkmatter-sim list
//! darkmatter-sim run <scenario> [--nodes N] [--seed S] [--duration 1h] [--out DIR] [--trace FILE] [--KEY VALUE]...
//! darkmatter-sim bench [--nodes N] [--seed S] [--duration 1h] [--timing] [--signatures real|null]
//! ```

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use runtime_sim::crypto::Signatures;
use runtime_sim::scenario::{self, format_duration, parse_duration};
use runtime_sim::{bench, Options, Report, Sim, Violation};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage:
  darkmatter-sim list
  darkmatter-sim run <scenario> [--nodes N] [--seed S] [--duration 1h] [--out DIR] [--trace FILE]
                     [--loss P] [--burst P] [--latency-ms MIN..MAX] [--jitter-ms MS] [--cost-us US]
                     [--skew-ms MS] [--degree D|MIN..MAX] [--max-connections N] [--direct R] [--broadcast R]
                     [--health R] [--beacon R] [--churn R] [--adversary R] [--crash R] [--forward P] [--reply P]
                     [--sabotage none|lose-replay] [--policy weighted|plain] [--signatures real|null]
                     (rates R are per node per simulated hour; --signatures null is measurement only)
                     trust studies (trust-propagation, sybil): [--sybils N] [--newcomers N] [--sybil-targets N]
                     [--gateway-frac P] [--gateway-links N] [--gateway-trust P] [--trust-prob P] [--trust-range A..B]
                     [--vouch-range A..B] [--single 0|1] [--window 10m] [--two-hop N] [--controls N] [--retry 30m] [--acquaint 10m]
  darkmatter-sim bench [--nodes N] [--seed S] [--duration 1h] [--timing] [--signatures real|null]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("list") => {
            for s in scenario::catalog() {
                println!(
                    "{:<16} {} (default {} nodes, {})",
                    s.name,
                    s.about,
                    s.default_nodes,
                    format_duration(s.default_duration_us)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Some("run") => run(&args[1..]),
        Some("bench") => bench_cmd(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

/// `--key value` pairs after the positional arguments.
fn pairs(args: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let key = a.strip_prefix("--").ok_or_else(|| format!("unexpected argument {a}\n{USAGE}"))?;
        if key == "timing" {
            out.push((key.to_owned(), String::new()));
            continue;
        }
        let value = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
        out.push((key.to_owned(), value.clone()));
    }
    Ok(out)
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

fn run(args: &[String]) -> Result<ExitCode, String> {
    let name = args.first().ok_or_else(|| format!("run needs a scenario name\n{USAGE}"))?;
    let sc = scenario::find(name).ok_or_else(|| format!("no scenario named {name}; darkmatter-sim list names them"))?;
    let mut nodes = sc.default_nodes;
    let mut seed = 1u64;
    let mut duration = sc.default_duration_us;
    let mut out_dir = None;
    let mut trace_file = None;
    let mut overrides = Vec::new();
    for (k, v) in pairs(&args[1..])? {
        match k.as_str() {
            "nodes" => nodes = v.parse().map_err(|_| format!("--nodes: not a count: {v}"))?,
            "seed" => seed = v.parse().map_err(|_| format!("--seed: not an integer: {v}"))?,
            "duration" => duration = parse_duration(&v)?,
            "out" => out_dir = Some(v),
            "trace" => trace_file = Some(v),
            _ => overrides.push((k, v)),
        }
    }
    if nodes == 0 {
        return Err("--nodes must be at least 1".to_owned());
    }
    let mut opts: Options = (sc.build)(nodes, seed, duration);
    for (k, v) in &overrides {
        opts.apply(k, v)?;
    }
    if trace_file.is_some() {
        opts.capture_trace = true;
    }
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

fn bench_cmd(args: &[String]) -> Result<ExitCode, String> {
    let mut nodes = 1000;
    let mut seed = 1;
    let mut duration = 3_600_000_000;
    let mut timing = false;
    let mut signatures = Signatures::Real;
    for (k, v) in pairs(args)? {
        match k.as_str() {
            "nodes" => nodes = v.parse().map_err(|_| format!("--nodes: {v}"))?,
            "seed" => seed = v.parse().map_err(|_| format!("--seed: {v}"))?,
            "duration" => duration = parse_duration(&v)?,
            "timing" => timing = true,
            "signatures" => signatures = Signatures::parse(&v)?,
            _ => return Err(format!("bench: unknown option --{k}")),
        }
    }
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
            if signatures == Signatures::Null {
                o.apply("signatures", "null")?;
            }
            print_violation(&o, &v);
            Ok(ExitCode::from(1))
        }
    }
}
