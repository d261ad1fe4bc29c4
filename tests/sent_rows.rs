//! A sent message's webhook updates and replies are rows of their own (SPEC.md §14): an update
//! writes one small row instead of rewriting the growing sent record, the rows come back after a
//! restart, go when their message is dropped, and version-1 records that held them inline move
//! them out at restore without losing any.

use darkmatter_tests::harness::Mesh;
use proto_core::limits::{SENT_MAX, UNSIGNED_UPDATES_PER_SENT_MAX, UPDATES_PER_SENT_MAX};
use proto_core::sign;
use proto_core::store::{child_key, decode, encode, Record, ResponseRecord, SentMessage, SentStatus, UpdateRecord};
use proto_core::{Command, Config, Method, Node, Now, Output, Passport, SendArgs, Table, Targets};
use serde_json::{json, Map, Value};

fn pair() -> (Mesh, usize, usize) {
    let mut m = Mesh::new();
    let a = m.add("A", true);
    let b = m.add("B", true);
    let url = m.peers[b].url.clone();
    m.command(a, Command::Connect { target_url: url }).expect("connect");
    (m, a, b)
}

fn send(m: &mut Mesh, from: usize, to: usize, content: &str, in_reply_to: Option<String>) -> String {
    let args = SendArgs {
        content: content.into(),
        targets: Targets::Agents(vec![m.id(to)]),
        metadata: Map::new(),
        in_reply_to,
        hops_remaining: 1,
    };
    let r = m.command(from, Command::Send(args)).expect("send");
    r["message_id"].as_str().expect("an id").to_owned()
}

fn rows(m: &Mesh, node: usize, table: Table) -> Vec<String> {
    m.peers[node].disk.keys().filter(|(t, _)| *t == table).map(|(_, k)| k.clone()).collect()
}

/// An unsigned `received` update, as a 0.5.3 peer posts it.
fn legacy_update(m: &mut Mesh, to: usize, message_id: &str, reporter: &str) -> u16 {
    let body = serde_json::to_vec(&json!({"type": "received", "agent_id": reporter})).unwrap();
    m.inject(to, Method::Post, &format!("/__darkmatter__/webhook/{message_id}"), &body, next_source()).0
}

/// Each reporter from its own LAN address: one address alone would meet its rate share first.
fn next_source() -> std::net::IpAddr {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::net::IpAddr::from([10, 0, (n >> 8) as u8 + 1, n as u8])
}

#[test]
fn an_update_writes_one_row_and_leaves_the_sent_record_alone() {
    let (mut m, a, b) = pair();
    let mid = send(&mut m, a, b, "hello", None);
    let before = m.peers[a].disk[&(Table::Sent, mid.clone())].clone();
    let first = rows(&m, a, Table::SentUpdates).len();
    assert!(first >= 1, "B's signed `received` update is a row");
    assert_eq!(legacy_update(&mut m, a, &mid, "a-0.5.3-peer"), 200);
    assert_eq!(m.peers[a].disk[&(Table::Sent, mid.clone())], before, "the sent record is not rewritten");
    assert_eq!(rows(&m, a, Table::SentUpdates), (0..=first).map(|i| child_key(&mid, i)).collect::<Vec<_>>());
    let stored: SentMessage = decode(&before).unwrap();
    assert!(stored.updates.is_empty() && stored.responses.is_empty(), "the record holds neither");
    let row: UpdateRecord = decode(&m.peers[a].disk[&(Table::SentUpdates, child_key(&mid, first))]).unwrap();
    assert_eq!((row.kind.as_str(), row.agent_id.as_str(), row.verified), ("received", "a-0.5.3-peer", false));
}

#[test]
fn updates_and_replies_come_back_after_a_restart() {
    let (mut m, a, b) = pair();
    let mid = send(&mut m, a, b, "question", None);
    send(&mut m, b, a, "answer", Some(mid.clone()));
    assert_eq!(legacy_update(&mut m, a, &mid, "a-0.5.3-peer"), 200);
    let before = m.command(a, Command::GetSent { message_id: mid.clone() }).unwrap();
    assert_eq!(before["status"], "responded", "{before}");
    assert_eq!(before["responses"][0]["content"], "answer", "{before}");
    assert!(before["updates"].as_array().unwrap().len() >= 2, "{before}");
    assert_eq!(rows(&m, a, Table::SentResponses), vec![child_key(&mid, 0)]);
    m.restart(a);
    assert_eq!(m.command(a, Command::GetSent { message_id: mid.clone() }).unwrap(), before);
    // Numbering goes on where it stopped: nothing on disk is overwritten.
    let updates = rows(&m, a, Table::SentUpdates).len();
    assert_eq!(legacy_update(&mut m, a, &mid, "another-peer"), 200);
    assert!(m.peers[a].disk.contains_key(&(Table::SentUpdates, child_key(&mid, updates))));
}

/// A `forwarded` update signed in our form by the agent of `seed`, as a forwarder of this project posts it.
fn signed_update(m: &mut Mesh, to: usize, message_id: &str, seed: [u8; 32], target: &str) -> u16 {
    let signer = Passport::from_seed(seed);
    let agent = signer.agent_id().to_string();
    let stamp = proto_core::time::format_iso(m.now.wall_us);
    let fields = ["forwarded", agent.as_str(), message_id, target, "", stamp.as_str()];
    let sig = sign::sign_hex(&signer, &sign::v2_bytes(sign::V2_WEBHOOK, &fields));
    let body = json!({"type": "forwarded", "agent_id": agent, "target_agent_id": target, "timestamp": stamp, "dm_signature_hex": sig});
    m.inject(
        to,
        Method::Post,
        &format!("/__darkmatter__/webhook/{message_id}"),
        &serde_json::to_vec(&body).unwrap(),
        next_source(),
    )
    .0
}

#[test]
fn unsigned_updates_have_a_budget_of_their_own() {
    let (mut m, a, b) = pair();
    let mid = send(&mut m, a, b, "hello", None);
    let mut statuses = Vec::new();
    for i in 0..UNSIGNED_UPDATES_PER_SENT_MAX + 1 {
        statuses.push(legacy_update(&mut m, a, &mid, &format!("peer-{i}")));
    }
    let taken = rows(&m, a, Table::SentUpdates).len();
    assert_eq!(taken, UNSIGNED_UPDATES_PER_SENT_MAX, "unsigned rows stop at their budget");
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        statuses.len() + 1 - UNSIGNED_UPDATES_PER_SENT_MAX,
        "B's own (unsigned) `received` update was the first row"
    );
    // A full unsigned budget takes nothing from the signed one. (A fresh rate window first: the
    // reporters are not connections, and together they may use only their share of one window.)
    m.advance(proto_core::limits::RATE_WINDOW_MS);
    let target = m.id(b);
    for i in 0..UPDATES_PER_SENT_MAX {
        assert_eq!(signed_update(&mut m, a, &mid, [100 + i as u8; 32], &target), 200, "signed update {i}");
    }
    assert_eq!(signed_update(&mut m, a, &mid, [99; 32], &target), 429, "the signed budget has its own end");
    assert_eq!(rows(&m, a, Table::SentUpdates).len(), UNSIGNED_UPDATES_PER_SENT_MAX + UPDATES_PER_SENT_MAX);
    let sent = m.command(a, Command::GetSent { message_id: mid }).unwrap();
    let updates = sent["updates"].as_array().unwrap();
    assert_eq!(updates.iter().filter(|u| u["verified"] == true).count(), UPDATES_PER_SENT_MAX, "{sent}");
    assert_eq!(updates.iter().filter(|u| u["verified"] == false).count(), UNSIGNED_UPDATES_PER_SENT_MAX);
}

#[test]
fn a_dropped_sent_message_takes_its_rows_along() {
    let (mut m, a, b) = pair();
    m.command(b, Command::SetRateLimit { agent_id: Some(m.id(a)), limit: -1 }).unwrap();
    let first = send(&mut m, a, b, "n0", None);
    m.command(b, Command::GetMessage { message_id: first.clone(), consume: true }).unwrap();
    assert!(rows(&m, a, Table::SentUpdates).iter().any(|k| k.starts_with(&first)));
    for i in 1..=SENT_MAX {
        let mid = send(&mut m, a, b, &format!("n{i}"), None);
        m.command(b, Command::GetMessage { message_id: mid, consume: true }).unwrap();
    }
    assert!(!m.peers[a].disk.contains_key(&(Table::Sent, first.clone())));
    assert!(rows(&m, a, Table::SentUpdates).iter().all(|k| !k.starts_with(&first)), "no orphaned update rows");
    assert!(rows(&m, a, Table::SentUpdates).len() <= SENT_MAX * (UPDATES_PER_SENT_MAX + UNSIGNED_UPDATES_PER_SENT_MAX));
}

// ----- restore, straight through the core -----

const EPOCH_US: i64 = 1_790_000_000_000_000;

fn restore(records: Vec<(Table, String, Vec<u8>)>) -> (Node, usize, Vec<(Table, String, bool)>) {
    let (mut node, skipped) =
        Node::restore(Passport::from_seed([9; 32]), Config::default(), 1, Now::new(0, EPOCH_US), records);
    let mut writes = Vec::new();
    loop {
        match node.poll_output() {
            Output::Timeout(_) => break,
            Output::Persist(changes) => writes.extend(changes.into_iter().map(|c| (c.table, c.key, c.value.is_some()))),
            _ => {}
        }
    }
    (node, skipped, writes)
}

fn get_sent(node: &mut Node, message_id: &str) -> Value {
    node.handle_command(
        Now::new(1, EPOCH_US + 1_000),
        proto_core::CommandId(1),
        Command::GetSent { message_id: message_id.into() },
    );
    loop {
        match node.poll_output() {
            Output::Done { result, .. } => return result.expect("known message").to_json(),
            Output::Timeout(_) => panic!("no answer"),
            _ => {}
        }
    }
}

fn update(agent: &str) -> UpdateRecord {
    UpdateRecord {
        kind: "received".into(),
        agent_id: agent.into(),
        target_agent_id: None,
        note: None,
        timestamp: "2026-11-01T00:00:00+00:00".into(),
        verified: true,
    }
}

fn response(agent: &str) -> ResponseRecord {
    ResponseRecord {
        agent_id: agent.into(),
        content: "yes".into(),
        received_at: "2026-11-01T00:00:01+00:00".into(),
        message_id: None,
    }
}

/// What version 1 of a sent record held: replies and updates inside it.
#[derive(serde::Serialize)]
struct SentV1 {
    message_id: String,
    content: String,
    kind: String,
    created_at: String,
    routed_to: Vec<String>,
    failed: Vec<(String, String)>,
    status: SentStatus,
    initial_hops: u32,
    in_reply_to: Option<String>,
    responses: Vec<ResponseRecord>,
    updates: Vec<UpdateRecord>,
    seq: u64,
}

fn v1_bytes(id: &str) -> Vec<u8> {
    let v1 = SentV1 {
        message_id: id.into(),
        content: "old".into(),
        kind: "direct".into(),
        created_at: "2026-11-01T00:00:00+00:00".into(),
        routed_to: vec!["p1".into()],
        failed: Vec::new(),
        status: SentStatus::Responded,
        initial_hops: 1,
        in_reply_to: None,
        responses: vec![response("p1")],
        updates: vec![update("p1"), update("p2")],
        seq: 3,
    };
    postcard::to_extend(&v1, vec![1]).unwrap()
}

#[test]
fn a_version_1_record_moves_its_updates_and_replies_into_rows() {
    let (mut node, skipped, writes) = restore(vec![(Table::Sent, "msg-old".into(), v1_bytes("msg-old"))]);
    assert_eq!(skipped, 0);
    let sent = get_sent(&mut node, "msg-old");
    assert_eq!(sent["updates"].as_array().unwrap().len(), 2, "{sent}");
    assert_eq!(sent["responses"][0]["agent_id"], "p1", "{sent}");
    let expected = [
        (Table::SentUpdates, child_key("msg-old", 0), true),
        (Table::SentUpdates, child_key("msg-old", 1), true),
        (Table::SentResponses, child_key("msg-old", 0), true),
        (Table::Sent, "msg-old".to_owned(), true),
    ];
    for w in &expected {
        assert!(writes.contains(w), "{w:?} missing from {writes:?}");
    }
}

#[test]
fn rows_restore_in_order_orphans_go_and_unreadable_neighbours_stay() {
    let mut sent: SentMessage = decode(&v1_bytes("msg-new")).unwrap();
    sent.updates.clear();
    sent.responses.clear();
    let mut newer_update = encode(&update("p9"));
    newer_update[0] = <UpdateRecord as Record>::VERSION + 1;
    let mut newer_sent = encode(&sent);
    newer_sent[0] = <SentMessage as Record>::VERSION + 1;
    let records = vec![
        (Table::Sent, "msg-new".into(), encode(&sent)),
        (Table::SentUpdates, child_key("msg-new", 1), encode(&update("second"))),
        (Table::SentUpdates, child_key("msg-new", 0), encode(&update("first"))),
        (Table::SentUpdates, child_key("msg-new", 2), newer_update),
        (Table::SentUpdates, child_key("msg-gone", 0), encode(&update("orphan"))),
        (Table::Sent, "msg-future".into(), newer_sent),
        (Table::SentResponses, child_key("msg-future", 0), encode(&response("kept"))),
    ];
    let (mut node, skipped, writes) = restore(records);
    assert_eq!(skipped, 2, "the newer update row and the newer sent record");
    let got = get_sent(&mut node, "msg-new");
    let agents: Vec<&str> =
        got["updates"].as_array().unwrap().iter().map(|u| u["agent_id"].as_str().unwrap()).collect();
    assert_eq!(agents, ["first", "second"]);
    assert!(
        writes.contains(&(Table::SentUpdates, child_key("msg-gone", 0), false)),
        "the orphan is deleted: {writes:?}"
    );
    assert!(
        !writes.iter().any(|(_, k, _)| k.starts_with("msg-future") || *k == child_key("msg-new", 2)),
        "unreadable rows are left alone: {writes:?}"
    );
}
