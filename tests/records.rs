//! Stored records across builds (SPEC.md §14): each value carries its schema version, records this
//! build cannot read are skipped and left alone, and a stored profile is never overwritten by a
//! fresh one because it could not be read.

use proto_core::store::{encode, Impression, Record};
use proto_core::{Command, CommandId, Config, Node, Now, Output, Passport, Table};

const EPOCH_US: i64 = 1_790_000_000_000_000;

fn restore(records: Vec<(Table, String, Vec<u8>)>) -> (Node, usize, Vec<Output>) {
    let (mut node, skipped) =
        Node::restore(Passport::from_seed([9; 32]), Config::default(), 1, Now::new(0, EPOCH_US), records);
    let mut outputs = Vec::new();
    loop {
        match node.poll_output() {
            Output::Timeout(_) => break,
            o => outputs.push(o),
        }
    }
    (node, skipped, outputs)
}

fn writes_to(outputs: &[Output], table: Table) -> usize {
    outputs
        .iter()
        .map(|o| if let Output::Persist(c) = o { c.iter().filter(|c| c.table == table).count() } else { 0 })
        .sum()
}

fn impression(score: f64) -> Impression {
    Impression {
        score,
        note: String::new(),
        updated_at: "2026-11-01T00:00:00+00:00".into(),
        negative_since_us: None,
        first_hand: true,
    }
}

#[test]
fn readable_records_come_back() {
    let peer = Passport::from_seed([5; 32]).agent_id().to_string();
    let (mut node, skipped, _) = restore(vec![(Table::Impressions, peer.clone(), encode(&impression(0.5)))]);
    assert_eq!(skipped, 0);
    node.handle_command(Now::new(1, EPOCH_US + 1_000), CommandId(1), Command::GetImpression { agent_id: peer });
    let answer = loop {
        match node.poll_output() {
            Output::Done { result, .. } => break result.expect("known impression").to_json(),
            Output::Timeout(_) => panic!("no answer"),
            _ => {}
        }
    };
    assert_eq!(answer["score"], 0.5, "{answer}");
}

#[test]
fn a_newer_builds_records_are_skipped_and_never_overwritten() {
    let mut newer_profile = encode(&impression(0.0));
    newer_profile[0] = <proto_core::store::Profile as Record>::VERSION + 1;
    let mut newer_impression = encode(&impression(0.5));
    newer_impression[0] = <Impression as Record>::VERSION + 1;
    let (_, skipped, outputs) = restore(vec![
        (Table::Profile, "self".into(), newer_profile),
        (Table::Impressions, "peer".into(), newer_impression),
    ]);
    assert_eq!(skipped, 2);
    assert_eq!(writes_to(&outputs, Table::Profile), 0, "the unreadable profile stays as it is on disk");
    assert_eq!(writes_to(&outputs, Table::Impressions), 0);
}

#[test]
fn a_fresh_node_writes_its_profile() {
    let (_, skipped, outputs) = restore(Vec::new());
    assert_eq!(skipped, 0);
    assert_eq!(writes_to(&outputs, Table::Profile), 1);
}

/// What version 1 of an impression held (before `first_hand`).
#[derive(serde::Serialize)]
struct ImpressionV1 {
    score: f64,
    note: String,
    updated_at: String,
    negative_since_us: Option<i64>,
}

#[test]
fn a_version_1_impression_is_upgraded_and_still_told_to_peers() {
    let v1 = ImpressionV1 {
        score: -0.25,
        note: "late twice".into(),
        updated_at: "2026-11-01T00:00:00+00:00".into(),
        negative_since_us: Some(EPOCH_US),
    };
    let mut bytes = vec![1];
    bytes.extend(postcard::to_allocvec(&v1).unwrap());
    let got: Impression = proto_core::store::decode(&bytes).unwrap();
    assert_eq!(
        got,
        Impression {
            score: -0.25,
            note: "late twice".into(),
            updated_at: v1.updated_at.clone(),
            negative_since_us: Some(EPOCH_US),
            first_hand: true
        }
    );
    assert_eq!(<Impression as Record>::VERSION, 2);
}

/// Version 1 of a pending request's peer opinions (before `asked_peers`).
#[derive(serde::Serialize)]
struct PeerTrustV1 {
    asked: u32,
    finished: u32,
    opinions: Vec<(String, f64, f64)>,
    score: Option<f64>,
    weight: f64,
}

/// Version 1 of a pending request.
#[derive(serde::Serialize)]
struct PendingInV1 {
    request_id: String,
    agent_id: String,
    url: String,
    display_name: String,
    bio: String,
    requested_at: String,
    requested_us: i64,
    challenge_id: String,
    challenge_hex: String,
    challenge_us: i64,
    identity_verified: bool,
    speaks_v2: bool,
    wallets: std::collections::BTreeMap<String, String>,
    created_at: Option<String>,
    source_local: bool,
    peer_trust: Option<PeerTrustV1>,
}

#[test]
fn a_version_1_pending_request_is_upgraded_with_the_peers_that_answered() {
    let requester = Passport::from_seed([6; 32]).agent_id().to_string();
    let voucher = Passport::from_seed([7; 32]).agent_id().to_string();
    let v1 = PendingInV1 {
        request_id: "req-0a0b0c0d".into(),
        agent_id: requester.clone(),
        url: "http://c.test:8100".into(),
        display_name: "C".into(),
        bio: String::new(),
        requested_at: "2026-11-01T00:00:00+00:00".into(),
        requested_us: EPOCH_US,
        challenge_id: String::new(),
        challenge_hex: String::new(),
        challenge_us: EPOCH_US,
        identity_verified: true,
        speaks_v2: true,
        wallets: Default::default(),
        created_at: None,
        source_local: false,
        peer_trust: Some(PeerTrustV1 {
            asked: 2,
            finished: 2,
            opinions: vec![(voucher.clone(), 0.9, 0.8)],
            score: Some(0.9),
            weight: 0.8,
        }),
    };
    let mut bytes = vec![1];
    bytes.extend(postcard::to_allocvec(&v1).unwrap());
    let got: proto_core::store::PendingIn = proto_core::store::decode(&bytes).unwrap();
    assert_eq!(got.agent_id.as_str(), requester);
    let t = got.peer_trust.expect("opinions kept");
    assert_eq!((t.asked, t.finished, t.score, t.weight), (2, 2, Some(0.9), 0.8));
    assert_eq!(t.asked_peers, vec![voucher]);
    assert_eq!(<proto_core::store::PendingIn as Record>::VERSION, 2);
}
