//! The `darkmatter-sim` binary: listing, a run with outputs, and a failing invariant.

use std::process::Command;

fn sim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_darkmatter-sim"))
}

#[test]
fn list_names_the_required_scenarios() {
    let out = sim().arg("list").output().expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for name in ["formation", "partition-heal", "churn", "broadcast-storm"] {
        assert!(text.lines().any(|l| l.starts_with(name)), "{name} missing from:\n{text}");
    }
}

#[test]
fn run_writes_csv_and_svg_and_ends_with_the_trace_hash() {
    let dir = std::env::temp_dir().join(format!("dm-sim-cli-{}", std::process::id()));
    let out = sim()
        .args(["run", "formation", "--nodes", "20", "--seed", "3", "--duration", "3m", "--out"])
        .arg(&dir)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in ["events processed", "simulated/wall", "delivery ratio", "invariant checks"] {
        assert!(text.contains(needle), "summary lacks {needle}:\n{text}");
    }
    let last = text.lines().last().unwrap();
    assert!(last.starts_with("trace-hash: ") && last.len() == "trace-hash: ".len() + 16, "{last}");
    let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    assert!(csv.starts_with("time_s,events,"));
    assert!(csv.lines().count() >= 4);
    let svg = std::fs::read_to_string(dir.join("metrics.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("delivery ratio"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_broken_invariant_exits_non_zero_with_the_reproduction_command() {
    let out = sim().args(["run", "restart", "--seed", "4", "--sabotage", "lose-replay"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("INVARIANT VIOLATED: invariant 'inbox-once'"), "{text}");
    assert!(text.contains("seed: 4"));
    assert!(text.contains("options: Options {"));
    assert!(
        text.contains("darkmatter-sim run restart --nodes 4 --seed 4 --duration 1m --sabotage lose-replay"),
        "{text}"
    );
}

#[test]
fn bad_arguments_are_refused() {
    let out = sim().args(["run", "nope"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let out = sim().args(["run", "formation", "--loss", "2"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
}

fn stderr_of(args: &[&str]) -> (Option<i32>, String) {
    let out = sim().args(args).output().expect("runs");
    (out.status.code(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn every_subcommand_explains_its_options() {
    for (sub, needles) in [
        (
            "run",
            &["--duration <D>", "--out <DIR>", "--trace <FILE>", "--loss <P>", "--policy <POLICY>", "--sybils <N>"][..],
        ),
        ("bench", &["--nodes <N>", "--duration <D>", "--timing"][..]),
        ("list", &["Usage: darkmatter-sim list"][..]),
    ] {
        let out = sim().args([sub, "--help"]).output().expect("runs");
        assert!(out.status.success(), "{sub} --help");
        let text = String::from_utf8(out.stdout).unwrap();
        for needle in needles {
            assert!(text.contains(needle), "{sub} --help lacks {needle}:\n{text}");
        }
    }
}

#[test]
fn bad_values_name_the_option_and_exit_2() {
    for (args, needle) in [
        (&["run", "formation", "--duration", "1x"][..], "--duration"),
        (&["run", "formation", "--nodes", "0"][..], "--nodes"),
        (&["run", "formation", "--seed", "x"][..], "--seed"),
        (&["run", "formation", "--policy", "lenient"][..], "--policy"),
        (&["run", "formation", "--loss", "abc"][..], "--loss"),
        (&["run", "formation", "--sybils", "5"][..], "trust studies only"),
        (&["bench", "--duration", "soon"][..], "--duration"),
        (&["bench", "--loss", "0.1"][..], "--loss"),
    ] {
        let (code, err) = stderr_of(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?} does not name {needle}: {err}");
    }
}

#[test]
fn durations_take_units_and_overrides_keep_their_order() {
    let out = sim().args(["run", "handshake", "--duration", "90s"]).output().expect("runs");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("scenario           handshake (3 nodes, seed 1, 90s)"), "{text}");
    for overrides in
        [["--jitter-ms", "0", "--sabotage", "lose-replay"], ["--sabotage", "lose-replay", "--jitter-ms", "0"]]
    {
        let out = sim().args(["run", "restart", "--seed", "4"]).args(overrides).output().expect("runs");
        assert_eq!(out.status.code(), Some(1));
        let text = String::from_utf8(out.stdout).unwrap();
        let expected = format!("darkmatter-sim run restart --nodes 4 --seed 4 --duration 1m {}", overrides.join(" "));
        assert!(text.contains(&expected), "{expected}\nnot in:\n{text}");
    }
}
