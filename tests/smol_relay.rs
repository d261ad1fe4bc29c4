//! Reaching a node through an anchor (SPEC §20), over real sockets: two Rust nodes and our anchor
//! (in-process). Node A is "behind NAT": its public URL points at a closed port, so nobody can dial
//! it; node B is reachable. Acceptance, messages, replies and peer updates flow both ways, whatever
//! cannot go directly going through the anchor sealed end to end, and the anchor's storage never
//! holds the message text.

mod netns;
mod smol_common;

use std::time::Duration;

use proto_core::{Command, SendArgs, Targets};
use runtime_smol::anchor::{self, AnchorConfig, RunningAnchor};
use serde_json::{Map, Value};
use smol_common::{free_port, wait_for, Node, TempDir};

const WAIT: Duration = Duration::from_secs(20);

fn start_anchor(dir: &TempDir) -> RunningAnchor {
    let config = AnchorConfig { port: 0, state_dir: dir.path().join("anchor"), ..AnchorConfig::default() };
    anchor::start(config).expect("anchor starts")
}

fn send(from: &Node, to: &Node, content: &str, in_reply_to: Option<String>) -> Value {
    from.cmd(Command::Send(SendArgs {
        content: content.into(),
        targets: Targets::Agents(vec![to.id()]),
        metadata: Map::new(),
        in_reply_to,
        hops_remaining: 3,
    }))
}

fn inbox_has(node: &Node, message_id: &str) -> Option<Value> {
    let inbox = node.cmd(Command::ListInbox);
    inbox["messages"].as_array()?.iter().find(|m| m["message_id"] == message_id).cloned()
}

fn connection(node: &Node, peer: &str) -> Option<Value> {
    let l = node.cmd(Command::ListConnections);
    l["connections"].as_array()?.iter().find(|c| c["agent_id"] == peer).cloned()
}

/// Every byte the anchor keeps on disk, to look for plaintext in.
fn anchor_bytes(dir: &TempDir) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir.path().join("anchor")).expect("anchor state dir") {
        let path = entry.unwrap().path();
        if path.is_file() {
            out.extend(std::fs::read(path).unwrap());
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn a_node_behind_nat_is_reached_through_the_anchor_both_ways() {
    let dirs = (TempDir::new("relay-anchor"), TempDir::new("relay-a"), TempDir::new("relay-b"));
    let anchor = start_anchor(&dirs.0);
    let anchors = anchor.url();
    // Nobody listens there: A cannot be dialled, only A can dial out.
    let unreachable = format!("http://127.0.0.1:{}", free_port());
    let a = Node::start(
        dirs.1.path(),
        "a",
        &[("DARKMATTER_ANCHOR_NODES", anchors.as_str()), ("DARKMATTER_PUBLIC_URL", unreachable.as_str())],
    );
    // B decides requests itself, so its acceptance is a separate call that must reach A.
    let b = Node::start(
        dirs.2.path(),
        "b",
        &[
            ("DARKMATTER_ANCHOR_NODES", anchors.as_str()),
            ("DARKMATTER_AUTO_ACCEPT_LOCAL", "false"),
            ("DARKMATTER_TRUST_DECIDE", "false"),
        ],
    );
    let identity = a.cmd(Command::GetIdentity);
    assert_eq!(identity["nat_detected"], true, "{identity}");

    // A asks B; B's acceptance cannot be posted to A, so it goes through the anchor.
    let r = a.cmd(Command::Connect { target_url: b.url() });
    assert_ne!(r["status"], "connected", "B decides itself: {r}");
    let request_id = wait_for("B to hold A's request", WAIT, || {
        let p = b.cmd(Command::ListPending);
        p["requests"].as_array()?.first()?["request_id"].as_str().map(str::to_owned)
    });
    b.cmd(Command::Accept { request_id });
    wait_for("A to be connected by B's relayed acceptance", WAIT, || connection(&a, &b.id()));

    // B → A: direct fails, the lookup finds nothing newer, the message is relayed.
    let text = "relayed-secret-7f3a9c: the plans are in the blue folder";
    let sent = send(&b, &a, text, None);
    let message_id = sent["message_id"].as_str().unwrap().to_owned();
    assert_eq!(sent["relayed"], serde_json::json!([a.id()]), "reported relayed, not delivered: {sent}");
    assert_eq!(sent["routed_to"], serde_json::json!([]), "{sent}");
    let got = wait_for("A to poll the relayed message", WAIT, || inbox_has(&a, &message_id));
    assert_eq!(got["content"], text);
    let record = b.cmd(Command::GetSent { message_id: message_id.clone() });
    assert_eq!(record["relayed"], serde_json::json!([a.id()]), "the sent record says relayed: {record}");

    // A → B: a reply, direct (B is reachable).
    let reply = send(&a, &b, "reply from behind NAT", Some(message_id.clone()));
    assert_eq!(reply["routed_to"], serde_json::json!([b.id()]), "{reply}");
    let reply_id = reply["message_id"].as_str().unwrap().to_owned();
    wait_for("B to get A's reply", WAIT, || inbox_has(&b, &reply_id));

    // A reply from B to A goes through the anchor too.
    let back = send(&b, &a, "and back again", Some(reply_id));
    let back_id = back["message_id"].as_str().unwrap().to_owned();
    assert_eq!(back["relayed"], serde_json::json!([a.id()]), "{back}");
    wait_for("A to get B's relayed reply", WAIT, || inbox_has(&a, &back_id));

    // Peer updates: B's cannot be posted to A and is relayed; A's goes directly.
    b.cmd(Command::UpdateBio { bio: "b moved its bio".into() });
    wait_for("A to take B's relayed peer update", WAIT, || {
        connection(&a, &b.id()).filter(|c| c["bio"] == "b moved its bio")
    });
    a.cmd(Command::UpdateBio { bio: "a behind nat".into() });
    wait_for("B to take A's peer update", WAIT, || connection(&b, &a.id()).filter(|c| c["bio"] == "a behind nat"));

    assert!(!contains(&anchor_bytes(&dirs.0), "relayed-secret-7f3a9c"), "the anchor stored plaintext");
    a.stop();
    b.stop();
    anchor.stop();
}

// ----- behind a simulated NAT: network namespaces -----

use netns::VethPair;
use smol_common::ChildNode;
use std::path::Path;
use std::process::{Child, Command as Proc, Stdio};

/// The anchor binary in the public namespace, on all its addresses; killed when dropped.
struct AnchorChild(Child);

impl Drop for AnchorChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_anchor_in(ns: &VethPair, state: &Path) -> AnchorChild {
    use std::io::{BufRead, BufReader};
    let mut args = ns.exec_args(0, Path::new(env!("CARGO_BIN_EXE_smol-anchor")));
    args.extend([state.to_str().unwrap().to_owned(), "5001".into(), "0.0.0.0".into()]);
    let mut child =
        Proc::new("ip").args(&args).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("spawn anchor");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let ready: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("anchor ready line: {line:?}"));
    assert_eq!(ready["ready"], true, "{ready}");
    AnchorChild(child)
}

fn child_connection(node: &mut ChildNode, peer: &str) -> Option<Value> {
    let l = node.ok(serde_json::json!({"cmd": "list_connections"}));
    l["connections"].as_array()?.iter().find(|c| c["agent_id"] == peer).cloned()
}

fn child_inbox_has(node: &mut ChildNode, message_id: &str) -> Option<Value> {
    let inbox = node.ok(serde_json::json!({"cmd": "list_inbox"}));
    inbox["messages"].as_array()?.iter().find(|m| m["message_id"] == message_id).cloned()
}

#[test]
fn a_node_in_a_namespace_that_cannot_be_dialled_talks_through_the_anchor() {
    const TEST: &str = "a_node_in_a_namespace_that_cannot_be_dialled_talks_through_the_anchor";
    // A public namespace (anchor and node B) and a NAT'd one (node A): A listens on its loopback
    // only, so it can dial out but nobody can dial it, a NAT without port mapping.
    let Some(ns) = netns::pair_for(TEST, 'r', 69, false) else { return };
    use serde_json::json;
    let dirs = (TempDir::new("nat-anchor"), TempDir::new("nat-a"), TempDir::new("nat-b"));
    let _anchor = spawn_anchor_in(&ns, &dirs.0.path().join("anchor"));
    let anchor_url = format!("http://{}:5001", ns.addr(0));
    let node = smol_common::node_binary();
    let b_url = format!("http://{}:8100", ns.addr(0));
    let a_url = format!("http://{}:8100", ns.addr(1));
    let args_b = ns.exec_args(0, &node);
    let mut b = ChildNode::spawn_with(
        Path::new("ip"),
        &args_b.iter().map(String::as_str).collect::<Vec<_>>(),
        dirs.2.path(),
        &[
            ("DARKMATTER_HOST", "0.0.0.0"),
            ("DARKMATTER_PORT", "8100"),
            ("DARKMATTER_PUBLIC_URL", b_url.as_str()),
            ("DARKMATTER_DISCOVERY", "false"),
            ("DARKMATTER_ANCHOR_NODES", anchor_url.as_str()),
            ("DARKMATTER_AUTO_ACCEPT_LOCAL", "false"),
            ("DARKMATTER_TRUST_DECIDE", "false"),
            ("DARKMATTER_DISPLAY_NAME", "public-b"),
        ],
    );
    let args_a = ns.exec_args(1, &node);
    let mut a = ChildNode::spawn_with(
        Path::new("ip"),
        &args_a.iter().map(String::as_str).collect::<Vec<_>>(),
        dirs.1.path(),
        &[
            // Listening on its loopback only: the address it names cannot be dialled.
            ("DARKMATTER_HOST", "127.0.0.1"),
            ("DARKMATTER_PORT", "8100"),
            ("DARKMATTER_PUBLIC_URL", a_url.as_str()),
            ("DARKMATTER_DISCOVERY", "false"),
            ("DARKMATTER_ANCHOR_NODES", anchor_url.as_str()),
            ("DARKMATTER_DISPLAY_NAME", "natted-a"),
        ],
    );
    let (a_id, b_id) = (a.agent_id(), b.agent_id());

    // A asks; B's acceptance reaches A only through the anchor.
    a.ok(json!({"cmd": "connect", "target_url": b_url}));
    let request_id = wait_for("B to hold A's request", WAIT, || {
        let p = b.ok(json!({"cmd": "list_pending"}));
        p["requests"].as_array()?.first()?["request_id"].as_str().map(str::to_owned)
    });
    b.ok(json!({"cmd": "accept", "request_id": request_id}));
    wait_for("A to be connected", WAIT, || child_connection(&mut a, &b_id));

    let sent = b.ok(json!({"cmd": "send", "content": "through the anchor", "target_agent_id": a_id}));
    assert_eq!(sent["relayed"], json!([a_id]), "{sent}");
    let id = sent["message_id"].as_str().unwrap().to_owned();
    wait_for("A to poll B's message", WAIT, || child_inbox_has(&mut a, &id));

    let reply = a.ok(json!({"cmd": "send", "content": "from behind NAT", "target_agent_id": b_id, "in_reply_to": id}));
    assert_eq!(reply["routed_to"], json!([b_id]), "A dials out directly: {reply}");
    let reply_id = reply["message_id"].as_str().unwrap().to_owned();
    wait_for("B to get A's reply", WAIT, || child_inbox_has(&mut b, &reply_id));

    b.ok(json!({"cmd": "update_bio", "bio": "b's new bio"}));
    wait_for("A to take B's relayed peer update", WAIT, || {
        child_connection(&mut a, &b_id).filter(|c| c["bio"] == "b's new bio")
    });
    a.ok(json!({"cmd": "update_bio", "bio": "a's new bio"}));
    wait_for("B to take A's peer update", WAIT, || {
        child_connection(&mut b, &a_id).filter(|c| c["bio"] == "a's new bio")
    });
    a.close_and_wait(Duration::from_secs(10));
    b.close_and_wait(Duration::from_secs(10));
}

/// Gives namespace `i` of `ns` the extra address `198.51.100.<i+1>/24` on its veth end: an address no
/// local-address rule calls private, so only a probe can tell whether it can be dialled.
fn add_routable_looking_address(ns: &VethPair, tag: char, i: usize) -> String {
    let pid = std::process::id();
    let side = if i == 0 { 'a' } else { 'b' };
    let (name, link) = (format!("dm{tag}{pid}{side}"), format!("dm{tag}v{pid}{side}"));
    let addr = format!("198.51.100.{}", i + 1);
    netns::ip(&["-n", &name, "addr", "add", &format!("{addr}/24"), "dev", &link]).expect("address added");
    let _ = ns;
    addr
}

#[test]
fn a_node_whose_public_url_is_closed_is_found_behind_nat_by_the_anchors_probe() {
    const TEST: &str = "a_node_whose_public_url_is_closed_is_found_behind_nat_by_the_anchors_probe";
    let Some(ns) = netns::pair_for(TEST, 'p', 70, false) else { return };
    use serde_json::json;
    let (pub_ip, nat_ip) = (add_routable_looking_address(&ns, 'p', 0), add_routable_looking_address(&ns, 'p', 1));
    let dirs = (TempDir::new("probe-anchor"), TempDir::new("probe-a"), TempDir::new("probe-b"));
    let _anchor = spawn_anchor_in(&ns, &dirs.0.path().join("anchor"));
    let anchor_url = format!("http://{pub_ip}:5001");
    let node = smol_common::node_binary();
    let spawn = |i: usize, dir: &Path, host: &str, url: &str| {
        let args = ns.exec_args(i, &node);
        ChildNode::spawn_with(
            Path::new("ip"),
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            dir,
            &[
                ("DARKMATTER_HOST", host),
                ("DARKMATTER_PORT", "8100"),
                ("DARKMATTER_PUBLIC_URL", url),
                ("DARKMATTER_DISCOVERY", "false"),
                ("DARKMATTER_ANCHOR_NODES", anchor_url.as_str()),
            ],
        )
    };
    // B serves on its address; A names its address but listens on its loopback only (a NAT
    // without port mapping): neither URL is loopback or private.
    let mut b = spawn(0, dirs.2.path(), "0.0.0.0", &format!("http://{pub_ip}:8100"));
    let mut a = spawn(1, dirs.1.path(), "127.0.0.1", &format!("http://{nat_ip}:8100"));
    wait_for("the probe to find A behind NAT", WAIT, || {
        let id = a.ok(json!({"cmd": "identity"}));
        (id["nat_detected"] == true).then_some(())
    });
    // B's probe found it: B is not behind NAT (a probe runs once at start, so this is settled).
    std::thread::sleep(Duration::from_millis(500));
    let id = b.ok(json!({"cmd": "identity"}));
    assert_eq!(id["nat_detected"], false, "{id}");
    a.close_and_wait(Duration::from_secs(10));
    b.close_and_wait(Duration::from_secs(10));
}
