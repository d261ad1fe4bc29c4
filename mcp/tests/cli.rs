//! The binary's front door: `--help` and `--version` answer without starting a node, a bad argument
//! is refused, no argument is the MCP server with nothing but JSON-RPC on stdout, and a person who
//! runs it in a terminal is told what it is (on stderr) and that Ctrl-C stops it. `darkmatter anchor` prints
//! its one ready line, serves, and stops on SIGTERM.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use common::{free_port, project, test_node_env, Proc, BIN};
use serde_json::json;

/// Runs the binary in `dir` with `args` and no stdin; bounded by the test harness's own timeout.
fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env("DARKMATTER_PORT", free_port().to_string())
        .env("DARKMATTER_DISCOVERY", "false")
        .stdin(Stdio::null())
        .output()
        .expect("run darkmatter")
}

#[test]
fn help_says_what_it_is_and_starts_no_node() {
    let dir = project("help");
    for flag in ["--help", "-h"] {
        let out = run(&dir, &[flag]);
        assert!(out.status.success(), "{flag}: {out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("Usage: darkmatter"), "{text}");
        assert!(text.contains("MCP") && text.contains("DARKMATTER_"), "{text}");
        assert!(text.contains("\"command\": \"darkmatter\""), "says how to add it to a client: {text}");
    }
    assert!(!dir.join(".darkmatter").exists(), "no state was created");
}

#[test]
fn version_prints_the_crate_version() {
    let dir = project("version");
    let out = run(&dir, &["--version"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), format!("darkmatter {}", env!("CARGO_PKG_VERSION")));
    assert!(!dir.join(".darkmatter").exists(), "no state was created");
}

#[test]
fn an_unknown_argument_is_refused_before_anything_starts() {
    let dir = project("bogus");
    let out = run(&dir, &["--bogus"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty(), "nothing on stdout");
    assert!(String::from_utf8(out.stderr).unwrap().contains("--bogus"));
    assert!(!dir.join(".darkmatter").exists(), "no state was created");
}

#[test]
fn no_argument_is_the_mcp_server_and_stdout_is_only_json_rpc() {
    // Proc fails the test on any stdout line that is not JSON.
    let mut p = Proc::start(&project("noarg"), free_port(), &[]);
    let init = p.initialize();
    assert_eq!(init["serverInfo"]["name"], "darkmatter");
    let r = p.request("tools/list", json!({}));
    assert_eq!(r["result"]["tools"].as_array().map(Vec::len), Some(darkmatter_mcp::tools::TOOL_NAMES.len()));
    assert!(p.notifications.is_empty(), "no stray output: {:?}", p.notifications);
    assert!(p.close(Duration::from_secs(10)));
}

#[test]
fn its_state_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = project("modes");
    let mut p = Proc::start(&dir, free_port(), &[]);
    p.initialize();
    let r = p.request("tools/call", json!({"name": "darkmatter_update_bio", "arguments": {"bio": "private"}}));
    assert!(r["result"].is_object(), "{r}");
    let state = dir.join(".darkmatter");
    let mode = |path: &Path| std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700, "state directory");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&state).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        files.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    // The passport, the database, the attach lock and the attach socket: every kind of file it makes.
    for prefix in ["passport.key", "state-", "node.lock", "node.sock"] {
        assert!(files.iter().any(|f| f.starts_with(prefix)), "no {prefix} in {files:?}");
    }
    assert!(p.close(Duration::from_secs(10)));
}

/// `script` gives the binary a terminal; Ctrl-C typed there reaches it as SIGINT.
#[test]
fn in_a_terminal_it_explains_itself_and_ctrl_c_stops_it() {
    // util-linux's `script` is part of every Debian system; without it this test cannot run and says so.
    assert!(Command::new("script").arg("--version").output().is_ok(), "no `script` (util-linux) to give a terminal");
    let dir = project("tty");
    let port = free_port();
    let mut script = Command::new("script");
    script.args(["-q", "-e", "-f", "-c", BIN, "/dev/null"]);
    let mut child = test_node_env(&mut script, &dir, port)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run script");
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen.contains("Ctrl-C") && Instant::now() < deadline {
        if let Ok(bytes) = rx.recv_timeout(Duration::from_millis(100)) {
            seen.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(b"\x03");
    let _ = stdin.flush();
    let stopped = common::until(Duration::from_secs(15), || matches!(child.try_wait(), Ok(Some(_))));
    if !stopped {
        let _ = child.kill();
    }
    let _ = child.wait();
    assert!(seen.contains("MCP server"), "says what it is: {seen:?}");
    assert!(seen.contains("agent "), "shows the agent id: {seen:?}");
    assert!(seen.contains(&format!("http://127.0.0.1:{port}")), "shows the peer URL: {seen:?}");
    assert!(seen.contains(".darkmatter"), "shows the state directory: {seen:?}");
    assert!(seen.contains("mcpServers"), "says how to add it to a client: {seen:?}");
    assert!(stopped, "Ctrl-C stopped it: {seen:?}");
}

/// `darkmatter anchor`: exactly one `{"ready":true,"url":..}` line on stdout once it listens, it serves
/// the anchor card there, keeps its state under `--state` (not `.darkmatter/`), and SIGTERM stops it.
#[test]
fn anchor_prints_one_ready_line_serves_and_stops_on_sigterm() {
    use std::io::BufRead;
    let dir = project("anchor");
    let mut child = Command::new(BIN)
        .args(["anchor", "--port", "0", "--state", "anchor-state"])
        .current_dir(&dir)
        .env("HOME", &dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run darkmatter anchor");
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let ready: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("ready line: {line:?}"));
    assert_eq!(ready["ready"], true, "{ready}");
    let url = ready["url"].as_str().unwrap().to_owned();
    let mut s = std::net::TcpStream::connect(url.trim_start_matches("http://")).unwrap();
    s.write_all(b"GET /.well-known/darkmatter.json HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("\"anchor\":true"), "{answer}");
    assert!(dir.join("anchor-state").join("anchor.redb").exists());
    assert!(!dir.join(".darkmatter").exists(), "an anchor is not a node");
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let end = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < end, "SIGTERM did not stop the anchor");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(rest.is_empty(), "one line on stdout, then nothing: {rest:?}");
}
