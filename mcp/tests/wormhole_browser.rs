//! The WormHole in a real browser (T-E4, T-E6 and the views of R-E4): Debian's headless Chromium,
//! driven by Python Playwright (a venv this test makes; the browser is the system's, never
//! downloaded), logs in, accepts a pending request, connects to a node by URL, renames itself (the
//! peer sees the new name), sends it a message and sees the reply threaded, sets an impression, sees the mesh view draw a second-degree edge,
//! and kills a stand-in spawned agent. Screenshots of each view land in
//! `target/wormhole-screenshots/`. Without Chromium the test skips loudly; under `CI=true` it fails.

mod wormhole;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command as Proc, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proto_core::Command;
use runtime_smol::control::{self, Request};
use runtime_smol::{NodeHandle, Running, RuntimeConfig};
use serde_json::{json, Value};
use wormhole::{Scratch, Wormhole};

/// Playwright's Python package, pinned (its own browsers are never installed).
const PLAYWRIGHT: &str = "playwright==1.65.2";

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("CHROMIUM").map(PathBuf::from).unwrap_or_else(|| "/usr/bin/chromium".into());
    path.exists().then_some(path)
}

/// Skips with a loud message, or fails under CI.
fn unavailable(why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("the WormHole browser test cannot run under CI: {why}");
    }
    eprintln!("\n**********\nSKIPPED wormhole_browser: {why}\n**********\n");
}

fn config(dir: &Path, name: &str, vars: &[(&str, &str)]) -> RuntimeConfig {
    let mut map: std::collections::HashMap<String, String> = [
        ("DARKMATTER_HOST", "127.0.0.1"),
        ("DARKMATTER_PORT", "0"),
        ("DARKMATTER_DISCOVERY", "false"),
        ("DARKMATTER_DISPLAY_NAME", name),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    map.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let mut c = RuntimeConfig::from_lookup(dir.to_owned(), |k| map.get(k).cloned()).unwrap();
    c.handle_signals = false;
    c
}

struct Node {
    handle: NodeHandle,
    _running: Running,
}

impl Node {
    fn start(dir: &Path, name: &str) -> Self {
        let (handle, running) = runtime_smol::start(config(dir, name, &[])).expect("node starts");
        Self { handle, _running: running }
    }

    fn line(&self, line: Value) -> Value {
        let Ok(Request::Node(c)) = control::parse(&line) else { panic!("bad line {line}") };
        self.handle.command_blocking(c).unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    fn id(&self) -> String {
        self.handle.agent_id().to_owned()
    }
}

/// Answers every inbox message with `re: <content>`, threaded by `in_reply_to`, until `stop`.
fn auto_reply(node: NodeHandle, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let inbox = node.command_blocking(Command::ListInbox).unwrap();
            for m in inbox["messages"].as_array().into_iter().flatten() {
                let (id, from, text) = (m["message_id"].as_str().unwrap(), &m["from_agent_id"], &m["content"]);
                let reply = json!({"cmd": "send", "content": format!("re: {}", text.as_str().unwrap()), "target_agent_id": from, "in_reply_to": id});
                let Ok(Request::Node(c)) = control::parse(&reply) else { panic!() };
                let _ = node.command_blocking(c);
                let _ = node.command_blocking(Command::GetMessage { message_id: id.to_owned(), consume: true });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("target"));
    target.join("wormhole-screenshots")
}

#[test]
fn a_person_steers_the_mesh_from_a_browser() {
    let Some(chromium) = chromium() else {
        return unavailable("no chromium at /usr/bin/chromium (apt-get install chromium)");
    };
    let python = match darkmatter_tests::python::venv("wormhole-venv", &[PLAYWRIGHT]) {
        Ok(p) => p,
        Err(e) => return unavailable(&format!("cannot make the Playwright venv: {e}")),
    };
    let dir = Scratch::new("browser");
    let [bob_dir, carol_dir, dave_dir, agent_dir, wh_dir] =
        ["bob", "carol", "dave", "agent", "wh"].map(|n| dir.0.join(n));
    for d in [&bob_dir, &carol_dir, &dave_dir, &agent_dir, &wh_dir] {
        std::fs::create_dir_all(d).unwrap();
    }
    let (bob, carol, dave) =
        (Node::start(&bob_dir, "bob"), Node::start(&carol_dir, "carol"), Node::start(&dave_dir, "dave"));
    // Bob already knows Dave: the mesh view must find that edge through Bob.
    assert_eq!(bob.line(json!({"cmd": "connect", "target_url": dave.handle.public_url()}))["status"], "connected");
    let stop = Arc::new(AtomicBool::new(false));
    let replier = auto_reply(bob.handle.clone(), stop.clone());

    // A stand-in spawned agent of a local node: its own process group, recorded as the node records it.
    let mut stand_in = Proc::new("sleep").arg("300").process_group(0).stdin(Stdio::null()).spawn().unwrap();
    let group = stand_in.id() as i32;
    let node_state = agent_dir.join(".darkmatter");
    runtime_smol::spawn::orphans::record(&node_state.join("spawn").join("live"), group).unwrap();
    std::fs::write(node_state.join("spawn").join("m1.log"), "stand-in agent: thinking about the mesh\n").unwrap();

    let agent_arg = node_state.to_str().unwrap().to_owned();
    let wh = Wormhole::start(&wh_dir, &["--agent", &agent_arg], &[("DARKMATTER_AUTO_ACCEPT_LOCAL", "false")]);
    // Carol asks the WormHole; with local auto-accept off it waits for the person.
    let asked = carol.line(json!({"cmd": "connect", "target_url": wh.peer_url}));
    assert_eq!(asked["status"], "pending", "{asked}");

    let shots = screenshots_dir();
    let args = json!({
        "login_url": wh.login_url, "chromium": chromium, "shots": shots,
        "bob": bob.id(), "bob_url": bob.handle.public_url(), "carol": carol.id(), "dave": dave.id(), "group": group,
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("wormhole").join("browser.py");
    let status = Proc::new(&python).arg(&script).arg(args.to_string()).status().expect("run the browser script");
    stop.store(true, Ordering::Relaxed);
    let _ = replier.join();
    let killed = stand_in.try_wait().unwrap();
    if killed.is_none() {
        let _ = stand_in.kill();
    }
    assert!(status.success(), "the browser story failed (screenshots in {})", shots.display());
    assert!(killed.is_some(), "Kill on the page ended the stand-in agent's process group");

    // What the page did, seen from the other nodes: the impression and the connection are real.
    let imp = wh_impression(&wh, &bob.id());
    assert_eq!(imp["score"], 0.8, "{imp}");
    let carol_conns = carol.line(json!({"cmd": "list_connections"}));
    assert!(carol_conns["connections"].as_array().unwrap().iter().any(|c| c["agent_id"] == wh.agent_id.as_str()));
    // The rename reached Bob in the WormHole's signed update.
    let bob_conns = bob.line(json!({"cmd": "list_connections"}));
    let seen = bob_conns["connections"].as_array().unwrap().iter().find(|c| c["agent_id"] == wh.agent_id.as_str());
    assert_eq!(seen.map(|c| c["display_name"].clone()), Some(json!("Ada at the browser")), "{bob_conns}");
    for name in ["01-login", "02-pending", "03-timeline", "04-connections", "05-mesh", "06-agents", "08-phone"] {
        assert!(shots.join(format!("{name}.png")).exists(), "{name}.png");
    }
}

/// The WormHole's impression of `agent`, read through its own API.
fn wh_impression(wh: &Wormhole, agent: &str) -> Value {
    let session = wh.session();
    let poll = wh.get(&session, "/api/poll").json();
    poll["connections"].as_array().unwrap().iter().find(|c| c["agent_id"] == agent).unwrap()["impression"].clone()
}
