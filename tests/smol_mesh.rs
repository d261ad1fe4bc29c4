//! Rust nodes on runtime-smol talking over loopback: connecting (local auto-accept, and pending then
//! accept), messages both ways, forwarding across three nodes, and a restart that keeps the state.

#[path = "smol_common.rs"]
mod common;

use std::time::Duration;

use common::{connect, wait_for, Node, TempDir};
use proto_core::{Command, Event, ForwardArgs, SendArgs, Targets};
use serde_json::{Map, Value};

fn send(from: &Node, to: &str, content: &str, in_reply_to: Option<String>) -> String {
    let r = from.cmd(Command::Send(SendArgs {
        content: content.into(),
        targets: Targets::Agents(vec![to.into()]),
        metadata: Map::new(),
        in_reply_to,
        hops_remaining: 3,
    }));
    assert_eq!(r["routed_to"], serde_json::json!([to]), "{r}");
    r["message_id"].as_str().unwrap().to_owned()
}

fn inbox_ids(n: &Node) -> Vec<String> {
    n.cmd(Command::ListInbox)["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_owned())
        .collect()
}

fn connection_ids(n: &Node) -> Vec<String> {
    n.cmd(Command::ListConnections)["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["agent_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn two_nodes_auto_accept_locally_and_message_both_ways() {
    let (da, db) = (TempDir::new("a"), TempDir::new("b"));
    let (a, b) = (Node::start(da.path(), "alice", &[]), Node::start(db.path(), "bob", &[]));
    let b_events = b.handle.events();
    connect(&a, &b);
    assert_eq!(connection_ids(&a), vec![b.id()]);

    let m1 = send(&a, &b.id(), "hello bob", None);
    assert_eq!(inbox_ids(&b), vec![m1.clone()]);
    let got = b.cmd(Command::GetMessage { message_id: m1.clone(), consume: false });
    assert_eq!((got["content"].as_str(), got["from_agent_id"].as_str()), (Some("hello bob"), Some(a.id().as_str())));

    let m2 = send(&b, &a.id(), "hello alice", Some(m1.clone()));
    assert_eq!(inbox_ids(&a), vec![m2.clone()]);
    let sent = a.cmd(Command::GetSent { message_id: m1 });
    assert_eq!(sent["responses"][0]["content"], "hello alice", "{sent}");

    // Bob's agent heard about both the connection and the message.
    let mut seen = Vec::new();
    while let Ok(e) = b_events.try_recv() {
        seen.push(e);
    }
    assert!(seen.iter().any(|e| matches!(e, Event::Connected { agent_id } if agent_id.as_str() == a.id())), "{seen:?}");
    assert!(seen.iter().any(|e| matches!(e, Event::MessageReceived { .. })), "{seen:?}");
    a.stop();
    b.stop();
}

#[test]
fn pending_request_is_accepted_by_the_agent() {
    let (da, db) = (TempDir::new("a"), TempDir::new("b"));
    let a = Node::start(da.path(), "alice", &[]);
    let b = Node::start(db.path(), "bob", &[("DARKMATTER_AUTO_ACCEPT_LOCAL", "false")]);
    let b_events = b.handle.events();
    let r = a.cmd(Command::Connect { target_url: b.url() });
    assert_eq!(r["status"], "pending", "{r}");
    assert!(connection_ids(&a).is_empty());
    let pending = b.cmd(Command::ListPending);
    assert_eq!(pending["total"], 1, "{pending}");
    assert_eq!(pending["requests"][0]["agent_id"].as_str(), Some(a.id().as_str()));
    let request_id = pending["requests"][0]["request_id"].as_str().unwrap().to_owned();
    let ev = smol::block_on(b_events.recv()).unwrap();
    assert!(matches!(&ev, Event::ConnectionRequested { request_id: r, .. } if *r == request_id), "{ev:?}");

    let acc = b.cmd(Command::Accept { request_id });
    assert_eq!(acc["accepted"], true, "{acc}");
    assert_eq!(connection_ids(&b), vec![a.id()]);
    // The requester learns of the acceptance over /connection_accepted.
    wait_for("alice to hold the connection", Duration::from_secs(5), || {
        (connection_ids(&a) == vec![b.id()]).then_some(())
    });

    let m1 = send(&a, &b.id(), "ping", None);
    let m2 = send(&b, &a.id(), "pong", Some(m1.clone()));
    assert_eq!(inbox_ids(&b), vec![m1]);
    assert_eq!(inbox_ids(&a), vec![m2]);
    a.stop();
    b.stop();
}

#[test]
fn a_message_is_forwarded_across_three_nodes() {
    let dirs: Vec<TempDir> = ["a", "b", "c"].iter().map(|t| TempDir::new(t)).collect();
    let a = Node::start(dirs[0].path(), "alice", &[]);
    let b = Node::start(dirs[1].path(), "bob", &[]);
    let c = Node::start(dirs[2].path(), "carol", &[]);
    connect(&a, &b);
    connect(&b, &c);
    let m = send(&a, &b.id(), "please pass this to carol", None);
    let f = b.cmd(Command::Forward(ForwardArgs {
        message_id: m.clone(),
        targets: vec![c.id()],
        note: Some("for you".into()),
    }));
    assert_eq!(f["routed_to"], serde_json::json!([c.id()]), "{f}");
    assert!(inbox_ids(&b).is_empty(), "a forwarded message leaves the inbox");
    assert_eq!(inbox_ids(&c), vec![m.clone()]);
    let got = c.cmd(Command::GetMessage { message_id: m.clone(), consume: false });
    assert_eq!(got["content"], "please pass this to carol");
    assert_eq!(got["hops_remaining"], 2);
    assert_eq!(got["from_agent_id"].as_str(), Some(b.id().as_str()));
    // The original sender's webhook hears about the forward.
    wait_for("alice's webhook to record the forward", Duration::from_secs(5), || {
        let s = a.cmd(Command::GetSent { message_id: m.clone() });
        s["updates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["type"] == "forwarded" && u["target_agent_id"] == c.id().as_str())
            .then_some(())
    });
    a.stop();
    b.stop();
    c.stop();
}

#[test]
fn a_restarted_node_keeps_connections_inbox_and_sent() {
    let (da, db) = (TempDir::new("a"), TempDir::new("b"));
    let a = Node::start(da.path(), "alice", &[]);
    let b = Node::start(db.path(), "bob", &[]);
    connect(&a, &b);
    let to_b = send(&a, &b.id(), "kept across restarts", None);
    let from_b = send(&b, &a.id(), "also kept", None);
    let (b_id, b_port) = (b.id(), b.addr().port());
    b.stop();

    // While bob is down, a send fails cleanly.
    let r = a.cmd(Command::Send(SendArgs {
        content: "lost".into(),
        targets: Targets::Agents(vec![b_id.clone()]),
        metadata: Map::new(),
        in_reply_to: None,
        hops_remaining: 1,
    }));
    assert_eq!(r["routed_to"], serde_json::json!([]), "{r}");

    let port = b_port.to_string();
    let b = Node::start(db.path(), "bob", &[("DARKMATTER_PORT", &port)]);
    assert_eq!(b.id(), b_id, "same passport, same identity");
    assert_eq!(connection_ids(&b), vec![a.id()]);
    assert_eq!(inbox_ids(&b), vec![to_b.clone()]);
    let sent: Vec<Value> = b.cmd(Command::ListSent)["messages"].as_array().unwrap().clone();
    assert_eq!(sent.iter().map(|s| s["message_id"].as_str().unwrap()).collect::<Vec<_>>(), vec![from_b.as_str()]);
    // The peer still reaches bob at the URL it stored.
    let again = send(&a, &b_id, "after restart", None);
    assert_eq!(inbox_ids(&b), vec![to_b, again]);
    a.stop();
    b.stop();
}

#[test]
fn a_second_node_with_the_same_identity_is_refused() {
    let d = TempDir::new("dup");
    let a = Node::start(d.path(), "alice", &[]);
    let err = runtime_smol::start(common::test_config(d.path(), "alice", &[])).err().expect("second start must fail");
    assert!(matches!(err, runtime_smol::StartError::AlreadyRunning(_)), "{err}");
    assert!(err.to_string().contains("already running"), "{err}");
    a.stop();
}
