//! `soak`: a node under a mixed flood for `--duration-s` seconds (default 600) keeps serving
//! legitimate peers, its memory stays bounded, and after kill -9 at seeded random moments nothing it
//! acknowledged is lost (see `load/soak.rs` for the mix and the checks).
//!
//! ```text
//! soak [--node <darkmatter-node>] [--duration-s <s>] [--seed <u64>] [--kills <n>]
//!      [--global-unlimited] [--served-min <0..1>] [--rss-max-mib <MiB>]
//! ```
//! Prints the seed first (a failing run is repeated with `--seed`), a progress line every 30 s, then
//! the report. Exit status 1 on any violation, 2 on bad arguments.

#[path = "load/mod.rs"]
mod load;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use load::soak::{self, SoakConfig};

/// Resident memory allowed by default, MiB: an idle node holds about 10; the server's own bounds
/// (256 connections, 64 bodies in flight of at most `BODY_BYTES_MAX`) allow some 40 more.
const RSS_MAX_MIB_DEFAULT: u64 = 256;
/// Least share served by default (peer messages and status reads).
const SERVED_MIN_DEFAULT: f64 = 0.9;

fn parse_args() -> Result<SoakConfig, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1) | 1;
    let mut c = SoakConfig {
        node: exe.with_file_name("darkmatter-node"),
        duration: Duration::from_secs(600),
        seed,
        kills: 5,
        peers: 3,
        flood_peers: 4,
        flood_per_s: 50,
        junk_per_s: 45,
        slow_bodies: 35,
        slow_heads: 150,
        throwaway_burst: 10,
        throwaway_every: Duration::from_secs(5),
        global_unlimited: false,
        served_min: SERVED_MIN_DEFAULT,
        rss_max_kib: RSS_MAX_MIB_DEFAULT * 1024,
        progress_every: Some(Duration::from_secs(30)),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{e}"));
        match arg.as_str() {
            "--node" => c.node = PathBuf::from(value()?),
            "--duration-s" => c.duration = Duration::from_secs(num(value()?)?),
            "--seed" => c.seed = num(value()?)? | 1,
            "--kills" => c.kills = num(value()?)? as usize,
            "--global-unlimited" => c.global_unlimited = true,
            "--served-min" => c.served_min = value()?.parse().map_err(|e| format!("{e}"))?,
            "--rss-max-mib" => c.rss_max_kib = num(value()?)? * 1024,
            _ => return Err(format!("unknown argument {arg}")),
        }
    }
    Ok(c)
}

fn main() -> ExitCode {
    let c = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("soak: {e}");
            return ExitCode::from(2);
        }
    };
    eprintln!("soak: seed {} (repeat with --seed {}), node {}", c.seed, c.seed, c.node.display());
    match soak::run(&c) {
        Ok(report) => {
            print!("{}", soak::render(&c, &report));
            if report.violations.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::FAILURE
        }
    }
}
