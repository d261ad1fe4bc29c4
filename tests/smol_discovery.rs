//! Discovery: the localhost port scan, domain card fetches, and LAN multicast beacons between two
//! network namespaces joined by a veth pair. That test needs root and `ip netns`: where it cannot run
//! it fails, unless `DARKMATTER_SKIP_NETNS=1` asks to skip it (then it says so and passes).

#[path = "smol_common.rs"]
mod common;
#[path = "netns.rs"]
mod netns;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{free_port_pair, ChildNode, Node, TempDir};
use netns::VethPair;
use proto_core::Command;
use serde_json::{json, Value};

#[test]
fn localhost_scan_finds_a_node_on_a_neighbouring_port() {
    let (da, db) = (TempDir::new("scan-a"), TempDir::new("scan-b"));
    let p = free_port_pair();
    let range = format!("{p}-{}", p + 1);
    let (pa, pb) = (p.to_string(), (p + 1).to_string());
    let a = Node::start(da.path(), "alice", &[("DARKMATTER_PORT", &pa), ("DARKMATTER_DISCOVERY_PORTS", &range)]);
    let b = Node::start(db.path(), "bob", &[("DARKMATTER_PORT", &pb), ("DARKMATTER_DISCOVERY_PORTS", &range)]);
    let t0 = Instant::now();
    let report = smol::block_on(a.handle.discover_local());
    assert!(t0.elapsed() < Duration::from_secs(1), "scan took {:?}", t0.elapsed());
    assert_eq!(report["total"], 1, "{report}");
    let found = &report["discovered"][0];
    assert_eq!(found["agent_id"].as_str(), Some(b.id().as_str()));
    assert_eq!(found["url"].as_str(), Some(format!("http://127.0.0.1:{}", p + 1).as_str()));
    assert_eq!(found["source"], "local");
    // The core keeps it for the agent, and the URL it gives connects.
    let listed = a.cmd(Command::ListDiscovered);
    assert_eq!(listed["discovered"][0]["agent_id"].as_str(), Some(b.id().as_str()), "{listed}");
    let r = a.cmd(Command::Connect { target_url: found["url"].as_str().unwrap().to_owned() });
    assert_eq!(r["status"], "connected", "{r}");
}

#[test]
fn a_full_default_scan_is_well_under_a_second() {
    let d = TempDir::new("scan-full");
    let n = Node::start(d.path(), "n", &[]);
    let t0 = Instant::now();
    let report = smol::block_on(n.handle.discover_local());
    assert!(t0.elapsed() < Duration::from_millis(900), "scan took {:?}", t0.elapsed());
    assert_eq!(report["scanned_ports"], "8100-8110", "{report}");
}

#[test]
fn domain_discovery_fetches_and_checks_the_card() {
    let (da, db) = (TempDir::new("dom-a"), TempDir::new("dom-b"));
    let a = Node::start(da.path(), "alice", &[]);
    let b = Node::start(db.path(), "bob", &[]);
    let domain = format!("127.0.0.1:{}", b.addr().port());
    let found = smol::block_on(a.handle.discover_domain(&domain)).unwrap();
    assert_eq!(found["agent_id"].as_str(), Some(b.id().as_str()), "{found}");
    assert_eq!(found["url"].as_str(), Some(b.url().as_str()));
    let listed = a.cmd(Command::ListDiscovered);
    assert_eq!(listed["discovered"][0]["source"], "domain", "{listed}");
    // Our own card is not a discovery; a closed port is an error.
    let own = format!("127.0.0.1:{}", a.addr().port());
    assert!(smol::block_on(a.handle.discover_domain(&own)).unwrap_err().contains("this node"));
    let closed = format!("127.0.0.1:{}", common::free_port());
    assert!(smol::block_on(a.handle.discover_domain(&closed)).is_err());
}

/// Starts the headless node in namespace `i` of `pair`, with LAN discovery on.
fn spawn_node(pair: &VethPair, i: usize, dir: &Path) -> ChildNode {
    let bin = common::node_binary();
    let args = pair.exec_args(i, &bin);
    ChildNode::spawn_with(
        Path::new("ip"),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        dir,
        &[
            ("DARKMATTER_HOST", "0.0.0.0"),
            ("DARKMATTER_PORT", "8100"),
            ("DARKMATTER_DISCOVERY", "true"),
            ("DARKMATTER_DISCOVERY_PORTS", "8100"),
            ("DARKMATTER_DISPLAY_NAME", if i == 0 { "ns-a" } else { "ns-b" }),
        ],
    )
}

fn lan_peer(node: &mut ChildNode, agent_id: &str) -> Option<Value> {
    let listed = node.ok(json!({"cmd": "list_discovered"}));
    listed["discovered"].as_array()?.iter().find(|d| d["agent_id"] == agent_id && d["source"] == "lan").cloned()
}

#[test]
fn lan_beacons_cross_a_veth_pair_between_namespaces() {
    let Some(pair) = netns::pair_for("lan_beacons_cross_a_veth_pair_between_namespaces", 'd', 68, true) else {
        return;
    };
    let dirs = [TempDir::new("ns-a"), TempDir::new("ns-b")];
    let mut a = spawn_node(&pair, 0, dirs[0].path());
    let mut b = spawn_node(&pair, 1, dirs[1].path());
    // Each node derives its URL from the interface the beacon group routes through.
    assert_eq!(a.url(), format!("http://{}:8100", pair.addr(0)));
    let (a_id, b_id) = (a.agent_id(), b.agent_id());
    let end = Instant::now() + Duration::from_secs(15);
    let (seen_by_b, seen_by_a) = loop {
        assert!(Instant::now() < end, "beacons did not cross the veth pair");
        // A beacon is sent at start and every 30 s; ask for one now so a late listener hears it.
        a.ok(json!({"cmd": "announce"}));
        b.ok(json!({"cmd": "announce"}));
        std::thread::sleep(Duration::from_millis(200));
        if let (Some(x), Some(y)) = (lan_peer(&mut b, &a_id), lan_peer(&mut a, &b_id)) {
            break (x, y);
        }
    };
    assert_eq!(seen_by_b["url"].as_str(), Some(format!("http://{}:8100", pair.addr(0)).as_str()), "{seen_by_b}");
    assert_eq!(seen_by_a["url"].as_str(), Some(format!("http://{}:8100", pair.addr(1)).as_str()), "{seen_by_a}");
    // The discovered URL works: the LAN request comes from a private address, so it is auto-accepted.
    let r = b.ok(json!({"cmd": "connect", "target_url": seen_by_b["url"]}));
    assert_eq!(r["status"], "connected", "{r}");
    a.close_and_wait(Duration::from_secs(10));
    b.close_and_wait(Duration::from_secs(10));
}
