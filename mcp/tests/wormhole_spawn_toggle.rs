//! The spawn panel's switch (SPEC §18.2): the page turns a watched local node's spawning off and on
//! through that node's own attach socket, the node's core answers, and a node without spawn
//! settings, or one the WormHole does not watch, cannot be switched.

mod common;
mod wormhole;

use std::time::Duration;

use common::{project, until, Proc};
use serde_json::json;
use wormhole::{Scratch, Wormhole};

fn watched_node(name: &str, spawning: bool) -> (Proc, String) {
    let dir = project(name);
    let enabled = if spawning { "true" } else { "false" };
    let mut p = Proc::start(&dir, common::free_port(), &[("DARKMATTER_AGENT_ENABLED", enabled)]);
    p.initialize();
    let sock = dir.join(".darkmatter").join("node.sock");
    assert!(until(Duration::from_secs(10), || sock.exists()), "{name} serves its attach socket");
    (p, dir.join(".darkmatter").to_string_lossy().into_owned())
}

#[test]
fn the_page_switches_a_watched_nodes_spawning_and_nothing_else() {
    let (_spawner, spawner_dir) = watched_node("wh-toggle-on", true);
    let (_plain, plain_dir) = watched_node("wh-toggle-plain", false);
    let dir = Scratch::new("toggle");
    let wh = Wormhole::start(&dir.0, &["--agent", &spawner_dir, "--agent", &plain_dir], &[]);
    let session = wh.session();
    let toggle = |node: &str, on: bool| wh.post(&session, "/api/spawn/toggle", &json!({"node": node, "spawning": on}));

    let off = toggle(&spawner_dir, false);
    assert_eq!(off.status, 200, "{}", off.body);
    assert_eq!(off.json()["spawning"], false);
    let on = toggle(&spawner_dir, true);
    assert_eq!(on.status, 200, "{}", on.body);
    assert_eq!(on.json()["spawning"], true);

    let plain = toggle(&plain_dir, true);
    assert_eq!(plain.status, 409, "{}", plain.body);
    assert!(plain.body.contains("no spawn settings"), "{}", plain.body);
    let stranger = toggle("/tmp/not-watched/.darkmatter", false);
    assert_eq!(stranger.status, 404, "{}", stranger.body);
    let bad = wh.post(&session, "/api/spawn/toggle", &json!({"node": spawner_dir}));
    assert_eq!(bad.status, 400, "{}", bad.body);
}

#[test]
fn the_sandbox_goes_off_only_with_the_passphrase_again_and_only_where_agents_are_built() {
    let (_spawner, spawner_dir) = watched_node("wh-sandbox-on", true);
    let (_plain, plain_dir) = watched_node("wh-sandbox-plain", false);
    let dir = Scratch::new("sandbox");
    let wh = Wormhole::start(&dir.0, &["--agent", &spawner_dir, "--agent", &plain_dir], &[]);
    let session = wh.session();
    let sandbox = |node: &str, body: serde_json::Value| {
        let mut body = body;
        body["node"] = json!(node);
        wh.post(&session, "/api/spawn/sandbox", &body)
    };

    let on = sandbox(&spawner_dir, json!({"on": true}));
    assert_eq!((on.status, on.json()["sandbox"].clone()), (200, json!(true)), "{}", on.body);
    let bare = sandbox(&spawner_dir, json!({"on": false}));
    assert_eq!(bare.status, 403, "a session alone cannot lift the sandbox: {}", bare.body);
    let wrong = sandbox(&spawner_dir, json!({"on": false, "passphrase": "not it"}));
    assert_eq!(wrong.status, 403, "{}", wrong.body);
    let off = sandbox(&spawner_dir, json!({"on": false, "passphrase": wormhole::PASSPHRASE}));
    assert_eq!((off.status, off.json()["sandbox"].clone()), (200, json!(false)), "{}", off.body);

    // A node that builds no agents has no sandbox to switch.
    let plain = sandbox(&plain_dir, json!({"on": true}));
    assert_eq!(plain.status, 409, "{}", plain.body);
    // Wrong passphrases count as failed logins: the sixth answer is 429 without a check.
    for _ in 0..4 {
        sandbox(&spawner_dir, json!({"on": false, "passphrase": "guess"}));
    }
    let limited = sandbox(&spawner_dir, json!({"on": false, "passphrase": wormhole::PASSPHRASE}));
    assert_eq!(limited.status, 429, "{}", limited.body);
}
