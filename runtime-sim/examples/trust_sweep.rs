//! Runs the trust studies of SIMULATIONS.md and writes their tables and plots.
//!
//! ```text
//! cargo run --release -p runtime-sim --example trust_sweep -- --out runtime-sim/results/trust [--jobs 2] [--nodes 1000]
//! ```
//!
//! Every run is also a plain `darkmatter-sim run ...` command (printed with its trace hash), so any
//! row of the tables can be reproduced, traced and plotted on its own.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use clap::Parser;
use plotters::prelude::*;
use runtime_sim::scenario::parse_duration;
use runtime_sim::trust_study::{cumulative, line_chart, quantile, Class, Series, StudyReport};
use runtime_sim::{find, Sim};

struct Run {
    group: &'static str,
    variant: String,
    scenario: &'static str,
    nodes: u32,
    seed: u64,
    overrides: Vec<(String, String)>,
}

struct Done {
    run: Run,
    report: StudyReport,
    hash: String,
    command: String,
    wall_s: f64,
}

fn run_one(r: Run) -> Result<Done, String> {
    let sc = find(r.scenario).ok_or("no such scenario")?;
    let mut opts = (sc.build)(r.nodes, r.seed, sc.default_duration_us);
    for (k, v) in &r.overrides {
        if k == "duration" {
            opts = (sc.build)(r.nodes, r.seed, parse_duration(v)?);
        }
    }
    for (k, v) in &r.overrides {
        if k != "duration" {
            opts.apply(k, v)?;
        }
    }
    let command = opts.command_line();
    let started = std::time::Instant::now();
    let mut sim = Sim::new(opts);
    let report = sim.run(&mut |_, _| {}).map_err(|v| format!("{command}: {v}"))?;
    let study = sim.study_report().ok_or("not a study")?;
    Ok(Done { run: r, report: study, hash: report.trace_hash, command, wall_s: started.elapsed().as_secs_f64() })
}

fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn plan(n: u32) -> Vec<Run> {
    let mut runs = Vec::new();
    for seed in [1, 2] {
        for sybils in [100, 250, 500] {
            for policy in ["weighted", "plain"] {
                let sy = (sybils * n / 1000).to_string();
                runs.push(Run {
                    group: "sybil",
                    variant: "default".into(),
                    scenario: "sybil",
                    nodes: n,
                    seed,
                    overrides: kv(&[("sybils", &sy), ("policy", policy)]),
                });
            }
        }
    }
    let sy = (250 * n / 1000).to_string();
    for seed in [1, 2] {
        for policy in ["weighted", "plain"] {
            runs.push(Run {
                group: "sensitivity",
                variant: "gateway-trust 0.5".into(),
                scenario: "sybil",
                nodes: n,
                seed,
                overrides: kv(&[("sybils", &sy), ("policy", policy), ("gateway-trust", "0.5")]),
            });
            runs.push(Run {
                group: "sensitivity",
                variant: "degree 20..50".into(),
                scenario: "sybil",
                nodes: n,
                seed,
                overrides: kv(&[("sybils", &sy), ("policy", policy), ("degree", "20..50")]),
            });
            runs.push(Run {
                group: "sensitivity",
                variant: "vouch 0.3..0.9".into(),
                scenario: "sybil",
                nodes: n,
                seed,
                overrides: kv(&[("sybils", &sy), ("policy", policy), ("vouch-range", "0.3..0.9")]),
            });
            runs.push(Run {
                group: "sensitivity",
                variant: "one vouched request each".into(),
                scenario: "sybil",
                nodes: n,
                seed,
                overrides: kv(&[("sybils", &sy), ("policy", policy), ("single", "1")]),
            });
        }
    }
    // Beyond the issue's range: enough Sybils to fill honest nodes' pending queues.
    runs.push(Run {
        group: "stress",
        variant: "1,000 Sybils".into(),
        scenario: "sybil",
        nodes: n,
        seed: 1,
        overrides: kv(&[("sybils", &n.to_string()), ("policy", "weighted")]),
    });
    for seed in [1, 2] {
        for (policy, retry) in [("weighted", "30m"), ("weighted", "65m"), ("plain", "65m")] {
            runs.push(Run {
                group: "propagation",
                variant: format!("{policy}, retry {retry}"),
                scenario: "trust-propagation",
                nodes: n,
                seed,
                overrides: kv(&[("policy", policy), ("retry", retry)]),
            });
        }
    }
    runs
}

/// Runs the trust studies of SIMULATIONS.md and writes their tables and plots.
#[derive(Parser)]
struct Cli {
    /// Where runs.csv, tables.md, summaries.txt and the plots go.
    #[arg(long, value_name = "DIR", default_value = "runtime-sim/results/trust")]
    out: String,
    /// Runs at once.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    jobs: u16,
    /// Honest nodes of every run (Sybil counts scale with it).
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    nodes: u32,
    /// Only this group of runs.
    #[arg(long, value_name = "GROUP", value_parser = ["sybil", "sensitivity", "stress", "propagation"])]
    only: Option<String>,
}

fn main() -> Result<(), String> {
    let Cli { out, jobs, nodes, only } = Cli::parse();
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let runs: Vec<Run> = plan(nodes).into_iter().filter(|r| only.as_deref().is_none_or(|g| g == r.group)).collect();
    let total = runs.len();
    let queue = Mutex::new(runs.into_iter().enumerate().collect::<Vec<_>>());
    let results: Mutex<Vec<(usize, Done)>> = Mutex::new(Vec::new());
    let failed = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                let next = queue.lock().expect("queue").pop();
                let Some((k, r)) = next else { break };
                match run_one(r) {
                    Ok(d) => {
                        eprintln!("[{}/{}] {:.0} s  {}  trace-hash {}", k + 1, total, d.wall_s, d.command, d.hash);
                        results.lock().expect("results").push((k, d));
                    }
                    Err(e) => {
                        eprintln!("FAILED: {e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    if failed.load(Ordering::Relaxed) > 0 {
        return Err("some runs failed".to_owned());
    }
    let mut done = results.into_inner().expect("results");
    done.sort_by_key(|d| d.0);
    let done: Vec<Done> = done.into_iter().map(|d| d.1).collect();
    write(&format!("{out}/runs.csv"), &runs_csv(&done))?;
    write(&format!("{out}/tables.md"), &tables(&done))?;
    let mut summaries = String::new();
    for d in &done {
        let _ = write!(summaries, "$ {}\n{}trace-hash: {}\n\n", d.command, d.report.text(), d.hash);
    }
    write(&format!("{out}/summaries.txt"), &summaries)?;
    if done.iter().any(|d| d.run.group == "sybil") {
        write(&format!("{out}/sybil_vs_count.svg"), &sybil_plot(&done)?)?;
        write(&format!("{out}/time_to_accept.svg"), &delay_plot(&done)?)?;
    }
    if done.iter().any(|d| d.run.group == "propagation") {
        write(&format!("{out}/propagation.svg"), &propagation_plot(&done)?)?;
    }
    print!("{}", tables(&done));
    Ok(())
}

fn write(path: &str, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{path}: {e}"))
}

fn policy(d: &Done) -> &'static str {
    match d.report.policy {
        proto_core::TrustPolicy::Weighted => "weighted",
        proto_core::TrustPolicy::PlainAverage => "plain",
        proto_core::TrustPolicy::WeightedUnbounded => "unbounded",
    }
}

fn failures(d: &Done, needle: &str) -> u32 {
    d.report.vouched_failures.iter().filter(|(k, _)| k.contains(needle)).map(|(_, v)| *v).sum()
}

fn runs_csv(done: &[Done]) -> String {
    let mut s = String::from("group,variant,seed,honest,sybils,policy,honest_accepting_sybil,honest_accepting_sybil_pct,footholds,trusting_footholds,sybil_requests,sybil_accepted,max_sybil_pending_at_one_node,pending_max_at_end,pending_full_nodes_at_end,vouched_asked,vouched_accepted,vouched_pct,vouched_median_s,vouched_p90_s,newcomers,first_vouched_accepted,accepted_by_any,fail_fanout,fail_hearsay,fail_other,neighbour_pct,two_hop_asked,two_hop_accepted,control_accepted,trace_hash,command\n");
    for d in done {
        let r = &d.report;
        let v = r.class(Class::Vouched);
        let other = r.vouched_failures.iter().map(|x| x.1).sum::<u32>()
            - failures(d, "8 most trusted")
            - failures(d, "hearsay");
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{:.2},{},{},{},{},{},{},{},{},{},{:.1},{:.3},{:.3},{},{},{},{},{},{},{:.1},{},{},{},{},\"{}\"",
            d.run.group,
            d.run.variant,
            d.run.seed,
            r.honest,
            r.sybils,
            policy(d),
            r.honest_accepting_sybil,
            100.0 * r.sybil_node_ratio(),
            r.gateways,
            r.trusting_gateways,
            r.sybil_requests_planned,
            r.sybil_accepted,
            r.max_sybil_requests_at_one_node,
            r.pending_max_at_end,
            r.pending_full_at_end,
            v.asked,
            v.accepted,
            100.0 * v.ratio(),
            quantile(&v.delays_s, 0.5).unwrap_or(f64::NAN),
            quantile(&v.delays_s, 0.9).unwrap_or(f64::NAN),
            r.newcomers_with_vouched,
            r.newcomers_first_accepted,
            r.newcomers_accepted_any,
            failures(d, "8 most trusted"),
            failures(d, "hearsay"),
            other,
            100.0 * r.class(Class::Neighbour).ratio(),
            r.class(Class::TwoHop).asked,
            r.class(Class::TwoHop).accepted,
            r.class(Class::Control).accepted,
            d.hash,
            d.command
        );
    }
    s
}

fn pct(a: u32, b: u32) -> String {
    if b == 0 {
        "–".to_owned()
    } else {
        format!("{:.1}%", 100.0 * a as f64 / b as f64)
    }
}

fn secs(x: Option<f64>) -> String {
    match x {
        None => "–".to_owned(),
        Some(s) if s < 60.0 => format!("{s:.2} s"),
        Some(s) => format!("{:.0} min", s / 60.0),
    }
}

fn tables(done: &[Done]) -> String {
    let mut s = String::new();
    let sybil: Vec<&Done> = done.iter().filter(|d| d.run.group != "propagation").collect();
    if !sybil.is_empty() {
        s += "| run | seed | Sybils | policy | honest nodes auto-accepting ≥1 Sybil | Sybil requests accepted | footholds (trusting) | longest pending queue (nodes full) | vouched requests accepted | newcomers: first vouched request accepted | newcomers accepted by ≥1 | time to accept (median / p90) | first-round misses: fan-out / hearsay / other | trace hash |\n";
        s += "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
        for d in sybil {
            let r = &d.report;
            let v = r.class(Class::Vouched);
            let other = r.vouched_failures.iter().map(|x| x.1).sum::<u32>()
                - failures(d, "8 most trusted")
                - failures(d, "hearsay");
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} of {} ({:.1}%) | {} of {} | {} ({}) | {} ({}) | {} of {} ({}) | {} of {} ({}) | {} | {} / {} | {} / {} / {} | `{}` |",
                d.run.variant,
                d.run.seed,
                r.sybils,
                policy(d),
                r.honest_accepting_sybil,
                r.honest,
                100.0 * r.sybil_node_ratio(),
                r.sybil_accepted,
                r.sybil_requests_planned,
                r.gateways,
                r.trusting_gateways,
                r.pending_max_at_end,
                r.pending_full_at_end,
                v.accepted,
                v.asked,
                pct(v.accepted, v.asked),
                r.newcomers_first_accepted,
                r.newcomers_with_vouched,
                pct(r.newcomers_first_accepted, r.newcomers_with_vouched),
                pct(r.newcomers_accepted_any, r.newcomers_with_vouched),
                secs(quantile(&v.delays_s, 0.5)),
                secs(quantile(&v.delays_s, 0.9)),
                failures(d, "8 most trusted"),
                failures(d, "hearsay"),
                other,
                d.hash
            );
        }
        s += "\n";
    }
    let prop: Vec<&Done> = done.iter().filter(|d| d.run.group == "propagation").collect();
    if !prop.is_empty() {
        s += "| run | seed | vouched: accepted (median time) | neighbour | two-hop: accepted (median time) | control | newcomers: first vouched request accepted | first-round misses: fan-out / hearsay / other | trace hash |\n";
        s += "|---|---|---|---|---|---|---|---|---|\n";
        for d in prop {
            let r = &d.report;
            let c = |k: Class| {
                let x = r.class(k);
                format!("{} of {} ({})", x.accepted, x.asked, pct(x.accepted, x.asked))
            };
            let other = r.vouched_failures.iter().map(|x| x.1).sum::<u32>()
                - failures(d, "8 most trusted")
                - failures(d, "hearsay");
            let _ = writeln!(
                s,
                "| {} | {} | {} ({}) | {} | {} ({}) | {} | {} of {} | {} / {} / {} | `{}` |",
                d.run.variant,
                d.run.seed,
                c(Class::Vouched),
                secs(quantile(&r.class(Class::Vouched).delays_s, 0.5)),
                c(Class::Neighbour),
                c(Class::TwoHop),
                secs(quantile(&r.class(Class::TwoHop).delays_s, 0.5)),
                c(Class::Control),
                r.newcomers_first_accepted,
                r.newcomers_with_vouched,
                failures(d, "8 most trusted"),
                failures(d, "hearsay"),
                other,
                d.hash
            );
        }
        s += "\n";
    }
    s += "Commands:\n\n```text\n";
    for d in done {
        let _ = writeln!(s, "{}", d.command);
    }
    s += "```\n";
    s
}

const BLUE_: RGBColor = RGBColor(0, 90, 200);
const RED_: RGBColor = RGBColor(200, 30, 30);

/// Sybil acceptance (top) and vouched acceptance (bottom) against the Sybil count, both policies.
fn sybil_plot(done: &[Done]) -> Result<String, String> {
    let e = |e: DrawingAreaErrorKind<_>| e.to_string();
    let runs: Vec<&Done> = done.iter().filter(|d| d.run.group == "sybil").collect();
    let mut by: BTreeMap<(&str, u32), Vec<(f64, f64)>> = BTreeMap::new();
    for d in &runs {
        let v = d.report.class(Class::Vouched);
        by.entry((policy(d), d.report.sybils))
            .or_default()
            .push((100.0 * d.report.sybil_node_ratio(), 100.0 * v.ratio()));
    }
    let counts: Vec<u32> = by.keys().map(|k| k.1).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let x_max = *counts.last().unwrap_or(&500) as f64 * 1.1;
    let y_max = by.values().flatten().map(|p| p.0).fold(2.0, f64::max) * 1.15;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (760, 620)).into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        let (top, bottom) = root.split_vertically(310);
        for (area, title, y_desc, which, range, target) in [
            (
                &top,
                "honest nodes that auto-accepted at least one Sybil",
                "% of honest nodes",
                0usize,
                (0.0, y_max),
                1.0,
            ),
            (
                &bottom,
                "vouched newcomer requests accepted (same runs)",
                "% of vouched requests",
                1usize,
                (50.0, 100.0),
                90.0,
            ),
        ] {
            let mut chart = ChartBuilder::on(area)
                .caption(title, ("sans-serif", 16))
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(50)
                .build_cartesian_2d(0.0..x_max, range.0..range.1)
                .map_err(e)?;
            chart
                .configure_mesh()
                .max_light_lines(1)
                .x_desc("colluding Sybil identities")
                .y_desc(y_desc)
                .draw()
                .map_err(e)?;
            chart
                .draw_series(LineSeries::new(vec![(0.0, target), (x_max, target)], BLACK.mix(0.5).stroke_width(1)))
                .map_err(e)?
                .label(format!("target ({}{target}%)", if which == 0 { "<" } else { "≥" }))
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.5)));
            for (pol, color, name) in [("weighted", BLUE_, "Weighted (default)"), ("plain", RED_, "PlainAverage")] {
                let mean: Vec<(f64, f64)> = counts
                    .iter()
                    .filter_map(|&c| {
                        by.get(&(pol, c)).map(|v| {
                            (
                                c as f64,
                                v.iter().map(|p| if which == 0 { p.0 } else { p.1 }).sum::<f64>() / v.len() as f64,
                            )
                        })
                    })
                    .collect();
                chart
                    .draw_series(LineSeries::new(mean, color.stroke_width(2)))
                    .map_err(e)?
                    .label(format!("{name}, mean of seeds"))
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
                let pts: Vec<(f64, f64)> = counts
                    .iter()
                    .flat_map(|&c| {
                        by.get(&(pol, c))
                            .into_iter()
                            .flatten()
                            .map(move |p| (c as f64, if which == 0 { p.0 } else { p.1 }))
                    })
                    .collect();
                chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled()))).map_err(e)?;
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(if which == 0 { SeriesLabelPosition::UpperLeft } else { SeriesLabelPosition::LowerLeft })
                .label_font(("sans-serif", 12))
                .draw()
                .map_err(e)?;
        }
        root.present().map_err(e)?;
    }
    Ok(out)
}

/// Time from a vouched request to its acceptance: CDF over every accepted vouched request.
fn delay_plot(done: &[Done]) -> Result<String, String> {
    let mut series = Vec::new();
    let groups: [(&str, &str, RGBColor); 3] =
        [("sybil", "weighted", BLUE_), ("sybil", "plain", RED_), ("propagation", "weighted", RGBColor(0, 150, 60))];
    for (group, pol, color) in groups {
        let mut delays = Vec::new();
        let mut asked = 0;
        for d in done.iter().filter(|d| {
            d.run.group == group
                && policy(d) == pol
                && (group == "propagation"
                    || d.report.sybils
                        == done.iter().filter(|x| x.run.group == "sybil").map(|x| x.report.sybils).max().unwrap_or(0))
        }) {
            let v = d.report.class(Class::Vouched);
            asked += v.asked;
            // Only the first round: requests accepted within a minute.
            delays.extend(v.delays_s.iter().copied().filter(|&x| x < 60.0).map(|x| x.max(0.01)));
        }
        if asked == 0 {
            continue;
        }
        delays.sort_by(f64::total_cmp);
        let label = if group == "sybil" {
            format!("{pol}, under the largest Sybil attack ({asked} vouched requests)")
        } else {
            format!("propagation runs, {pol} ({asked} vouched requests)")
        };
        series.push(Series::new(label, color, cumulative(&delays, asked as f64, 60.0)));
    }
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (760, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        line_chart(
            &root,
            "vouched requests accepted, by time since the request",
            "seconds since the request (log)",
            "fraction of vouched requests",
            (0.01, 60.0),
            true,
            SeriesLabelPosition::UpperLeft,
            &series,
        )?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// Acceptance over simulated time since the newcomers' first requests, by class and variant.
fn propagation_plot(done: &[Done]) -> Result<String, String> {
    let runs: Vec<&Done> = done.iter().filter(|d| d.run.group == "propagation").collect();
    let variants: Vec<String> =
        runs.iter().map(|d| d.run.variant.clone()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let minutes = runs.iter().map(|d| d.report.duration_s / 60.0).fold(0.0, f64::max);
    let palette = [
        RGBColor(200, 30, 30),
        RGBColor(0, 90, 200),
        RGBColor(0, 150, 60),
        RGBColor(230, 140, 0),
        RGBColor(120, 0, 160),
        RGBColor(120, 120, 120),
    ];
    let mut series = Vec::new();
    for (k, v) in variants.iter().enumerate() {
        for class in [Class::Vouched, Class::TwoHop] {
            let mut delays = Vec::new();
            let mut asked = 0;
            for d in runs.iter().filter(|d| &d.run.variant == v) {
                let c = d.report.class(class);
                asked += c.asked;
                delays.extend(c.delays_s.iter().map(|s| s / 60.0));
            }
            delays.sort_by(f64::total_cmp);
            let mut line = Series::new(
                format!("{}: {} ({} requests)", v, class.name(), asked),
                palette[k % palette.len()],
                cumulative(&delays, asked as f64, minutes),
            );
            // Two-hop dashed; earlier variants drawn wider so that coinciding curves stay visible.
            line.dashed = class == Class::TwoHop;
            line.width = 2 + (variants.len() - 1 - k) as u32;
            series.push(line);
        }
    }
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (760, 380)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        line_chart(
            &root,
            "newcomer requests accepted over simulated time (both seeds pooled)",
            "minutes since the newcomer's first request",
            "fraction accepted",
            (0.0, minutes),
            false,
            SeriesLabelPosition::MiddleRight,
            &series,
        )?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}
