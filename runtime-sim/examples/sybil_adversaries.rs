//! One adversary of the Sybil study under the old rules and the new, side by side (SIMULATIONS.md §3).
//!
//! ```text
//! cargo run --release -p runtime-sim --example sybil_adversaries -- --out runtime-sim/results/sybil \
//!     --name farm --seed 1 -- --sybils 250 --gateway-trust 0.5 --strategy farm --attack-after 12h --duration 24h
//! ```
//!
//! Runs `darkmatter-sim run sybil` twice (or once, `--rules new` or `old`) with the given overrides, `--policy unbounded` (the rules
//! before the Sybil defences) and `--policy weighted` (the defaults), prints both summaries, writes
//! `<name>-s<seed>.svg` (honest nodes that accepted a Sybil and vouched newcomer requests accepted, over
//! simulated time, old rules left, new right) and appends one table row per run, with its command and
//! trace hash, to `rows.md`.

use std::fmt::Write as _;
use std::io::Write as _;

use clap::Parser;
use plotters::prelude::*;
use runtime_sim::scenario::parse_duration;
use runtime_sim::trust_study::{cumulative, line_chart, Class, Series, StudyReport};
use runtime_sim::{find, Sim};

#[derive(Parser)]
struct Args {
    /// Output directory.
    #[arg(long)]
    out: std::path::PathBuf,
    /// The adversary's name in the file names and the table.
    #[arg(long)]
    name: String,
    /// Honest nodes.
    #[arg(long, default_value_t = 1000)]
    nodes: u32,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// `both` (old and new rules, and the plot), `new` (the defaults only) or `old` (the old rules only).
    #[arg(long, default_value = "both")]
    rules: String,
    /// `--KEY VALUE` overrides of the `sybil` scenario, after `--`.
    #[arg(last = true)]
    overrides: Vec<String>,
}

struct Done {
    report: StudyReport,
    hash: String,
    command: String,
}

fn run(args: &Args, policy: &str) -> Result<Done, String> {
    let sc = find("sybil").ok_or("no sybil scenario")?;
    let pairs: Vec<(String, String)> = args
        .overrides
        .chunks(2)
        .map(|kv| (kv[0].trim_start_matches("--").to_owned(), kv.get(1).cloned().unwrap_or_default()))
        .collect();
    let duration = pairs.iter().find(|(k, _)| k == "duration").map(|(_, v)| parse_duration(v)).transpose()?;
    let mut opts = (sc.build)(args.nodes, args.seed, duration.unwrap_or(sc.default_duration_us));
    for (k, v) in pairs.iter().filter(|(k, _)| k != "duration") {
        opts.apply(k, v)?;
    }
    opts.apply("policy", policy)?;
    let command = opts.command_line();
    let mut sim = Sim::new(opts);
    let report = sim.run(&mut |_, _| {}).map_err(|v| format!("{command}: {v}"))?;
    let study = sim.study_report().ok_or("not a study")?;
    Ok(Done { report: study, hash: report.trace_hash, command })
}

fn series(r: &StudyReport) -> Vec<Series> {
    let hours = r.duration_s / 3600.0;
    let sybil: Vec<f64> = r.sybil_first_accepts_s.iter().map(|t| t / 3600.0).collect();
    let vouched = r.class(Class::Vouched);
    let newcomers: Vec<f64> = vouched.accepted_at_s.iter().map(|t| t / 3600.0).collect();
    vec![
        Series::new(
            format!("honest nodes that accepted a Sybil ({})", r.honest_accepting_sybil),
            RGBColor(200, 0, 0),
            cumulative(&sybil, r.honest as f64, hours),
        ),
        Series::new(
            format!("vouched newcomer requests accepted ({} of {})", vouched.accepted, vouched.asked),
            RGBColor(0, 90, 200),
            cumulative(&newcomers, vouched.asked as f64, hours),
        ),
    ]
}

fn svg(name: &str, old: &StudyReport, new: &StudyReport) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (1200, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (left, right) = root.split_horizontally(600);
        let hours = (0.0, old.duration_s / 3600.0);
        for (area, r, rules) in [(&left, old, "old rules"), (&right, new, "new rules")] {
            let title = format!("{name}: {rules}");
            line_chart(
                area,
                &title,
                "simulated time (h)",
                "fraction",
                hours,
                false,
                SeriesLabelPosition::MiddleRight,
                &series(r),
            )?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

fn row(name: &str, seed: u64, rules: &str, d: &Done) -> String {
    let r = &d.report;
    let v = r.class(Class::Vouched);
    let mut s = String::new();
    let _ = write!(
        s,
        "| {name} | {} | {seed} | {rules} | **{} ({:.1} %)** | {} of {} | {} trusted of {} | {} of {} ({:.1} %) | {} of {} | `{}` | `{}` |",
        r.sybils,
        r.honest_accepting_sybil,
        100.0 * r.sybil_node_ratio(),
        r.sybil_accepted,
        r.sybil_requests_reached,
        r.trusting_gateways,
        r.gateways,
        v.accepted,
        v.asked,
        100.0 * v.ratio(),
        r.newcomers_accepted_any,
        r.newcomers_with_vouched,
        d.hash,
        d.command
    );
    s
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out).map_err(|e| e.to_string())?;
    let old = if args.rules != "new" { Some(run(&args, "unbounded")?) } else { None };
    let new = if args.rules != "old" { Some(run(&args, "weighted")?) } else { None };
    let mut rows = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(args.out.join("rows.md"))
        .map_err(|e| e.to_string())?;
    for (rules, d) in [("old", old.as_ref()), ("new", new.as_ref())] {
        let Some(d) = d else { continue };
        println!("{}\n{}\ntrace-hash: {}\n", d.command, d.report.text(), d.hash);
        writeln!(rows, "{}", row(&args.name, args.seed, rules, d)).map_err(|e| e.to_string())?;
    }
    if let (Some(old), Some(new)) = (&old, &new) {
        let file = format!("{}-s{}.svg", args.name, args.seed);
        std::fs::write(args.out.join(&file), svg(&args.name, &old.report, &new.report)?).map_err(|e| e.to_string())?;
        println!("wrote {}", args.out.join(file).display());
    }
    Ok(())
}
