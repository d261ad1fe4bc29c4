//! Trust that propagates, shards that sync, memory that ranks: the rules of SPEC.md §Trust, §Shards
//! and §Memory, driven through in-memory nodes.

use darkmatter_tests::harness::Mesh;
use proto_core::limits::{
    PENDING_REQUESTS_MAX, TRUST_ANSWER_MIN, TRUST_AUTO_CEILING, TRUST_DECISION_HOLD_S, TRUST_NEGATIVE_TIMEOUT_S,
    TRUST_QUERY_ASKED_MAX, TRUST_QUERY_FANOUT_MAX,
};
use proto_core::{Command, Config, Event, SendArgs, ShardArgs, Targets, TrustPolicy};
use quickcheck::quickcheck;
use serde_json::{json, Map, Value};

fn connect(m: &mut Mesh, from: usize, to: usize) -> Value {
    connect_result(m, from, to).expect("connect")
}

fn impression(m: &mut Mesh, at: usize, of: usize, score: f64) {
    let id = m.id(of);
    m.command(at, Command::SetImpression { agent_id: id, score, note: None }).unwrap();
}

fn shard(content: &str, threshold: f64) -> Command {
    Command::CreateShard(ShardArgs {
        content: content.into(),
        tags: vec!["topic:sol".into()],
        trust_threshold: threshold,
        summary: None,
    })
}

/// Past the decision hold, to the housekeeping that decides what the policy can.
const PAST_HOLD_MS: u64 = TRUST_DECISION_HOLD_S * 1000 + 60_000;

fn decided(m: &Mesh, at: usize, accepted: bool) -> bool {
    m.peers[at].events.iter().any(|e| matches!(e, Event::RequestDecided { accepted: a, .. } if *a == accepted))
}

/// A trusts B; B vouches for C; C asks A. Returns the mesh and (a, b, c).
fn vouched(policy: Config) -> (Mesh, usize, usize, usize) {
    let mut m = Mesh::new();
    let a = m.add_with("A", true, policy);
    let b = m.add("B", true);
    let c = m.add("C", false);
    connect(&mut m, b, a);
    impression(&mut m, a, b, 0.8);
    connect(&mut m, b, c);
    impression(&mut m, b, c, 0.9);
    (m, a, b, c)
}

#[test]
fn a_sees_what_its_trusted_peer_thinks_of_a_pending_requester() {
    let (mut m, a, b, c) = vouched(Config { trust_accept_min: None, trust_reject_max: None, ..Config::default() });
    let r = connect(&mut m, c, a);
    assert_eq!(r["status"], "pending", "C is not local to A");
    let pending = m.command(a, Command::ListPending).unwrap();
    let t = &pending["requests"][0]["peer_trust"];
    assert_eq!(t["asked"], 1);
    assert_eq!(t["complete"], true);
    assert_eq!(t["opinions"][0]["agent_id"], m.id(b).as_str());
    assert_eq!(t["opinions"][0]["their_score"], 0.9);
    assert_eq!(t["opinions"][0]["your_trust_in_them"], 0.8);
    assert_eq!(t["score"], 0.9);
    // B's report moved A's own impression of C a little: 0.1 × 0.8 × 0.9.
    let imp = m.command(a, Command::GetImpression { agent_id: m.id(c) }).unwrap();
    assert!((imp["score"].as_f64().unwrap() - 0.072).abs() < 1e-9, "{imp}");
    insta::assert_snapshot!(m.trace.join("\n"));
}

#[test]
fn the_default_policy_accepts_a_vouched_newcomer() {
    let (mut m, a, _b, c) = vouched(Config::default());
    connect(&mut m, c, a);
    assert!(!decided(&m, a, true), "held: a voucher for a crowd would show in the meantime");
    m.advance(PAST_HOLD_MS);
    assert!(decided(&m, a, true));
    assert_eq!(m.command(a, Command::ListConnections).unwrap()["total"], 2);
    assert_eq!(m.command(c, Command::ListConnections).unwrap()["total"], 2, "C learned of the acceptance");
}

#[test]
fn the_default_policy_rejects_a_newcomer_its_trusted_peer_distrusts() {
    let (mut m, a, b, c) = vouched(Config::default());
    impression(&mut m, b, c, -0.9);
    connect(&mut m, c, a);
    m.advance(PAST_HOLD_MS);
    assert!(decided(&m, a, false));
    assert_eq!(m.command(a, Command::ListPending).unwrap()["total"], 0);
}

#[test]
fn opinions_of_untrusted_peers_count_for_nothing() {
    let (mut m, a, b, c) = vouched(Config::default());
    impression(&mut m, a, b, 0.0);
    connect(&mut m, c, a);
    let pending = m.command(a, Command::ListPending).unwrap();
    let t = &pending["requests"][0]["peer_trust"];
    assert_eq!(t["opinions"][0]["your_trust_in_them"], 0.0);
    assert_eq!(t["score"], Value::Null, "no weight, no combined score");
    assert!(!m.peers[a].events.iter().any(|e| matches!(e, Event::RequestDecided { .. })), "left to the agent");
}

#[test]
fn impressions_are_answered_only_to_connected_peers_we_do_not_distrust() {
    // B's impression of A at the edge is answered; a hair below it, A's question goes unanswered.
    for (b_trusts_a, answers) in [(TRUST_ANSWER_MIN, 1), (TRUST_ANSWER_MIN - 1e-6, 0), (-0.5, 0)] {
        let (mut m, a, b, c) = vouched(Config { trust_accept_min: None, trust_reject_max: None, ..Config::default() });
        impression(&mut m, b, a, b_trusts_a);
        connect(&mut m, c, a);
        let t = m.command(a, Command::ListPending).unwrap()["requests"][0]["peer_trust"].clone();
        assert_eq!(
            (t["asked"].as_u64(), t["opinions"].as_array().unwrap().len()),
            (Some(1), answers),
            "B trusts A {b_trusts_a}"
        );
    }
    let (mut m, _, b, c) = vouched(Config::default());
    // And 0.5.3's unauthenticated query is refused outright.
    let path = format!("/__darkmatter__/impression/{}", m.id(c));
    let (s, _) = m.inject(b, proto_core::Method::Get, &path, b"", "203.0.113.7".parse().unwrap());
    assert_eq!(s, 403);
}

/// A (policy off, so requests wait) trusts B; `n` non-local requesters ask A, each vouched for by a
/// peer of its own when `vouched` (one peer vouching for them all would be vouching for a crowd, and
/// count for nothing), the newest voucher trusted most so that it is in the first round.
/// Returns the mesh, A, B and the requesters.
fn full_queue(n: usize, vouched: bool) -> (Mesh, usize, usize, Vec<usize>) {
    let mut m = Mesh::new();
    // Room for a voucher per requester.
    let max_connections = 2 * PENDING_REQUESTS_MAX + 1;
    let policy_off = Config { trust_accept_min: None, trust_reject_max: None, max_connections, ..Config::default() };
    let a = m.add_with("A", true, policy_off);
    let b = m.add("B", true);
    connect(&mut m, b, a);
    impression(&mut m, a, b, 0.8);
    let mut requesters = Vec::new();
    for i in 0..n {
        let c = m.add(&format!("C{i}"), false);
        if vouched {
            let v = m.add(&format!("V{i}"), true);
            // A asks V (V's own auto-accept budget is fresh): fifty requests the other way would
            // spend A's.
            connect(&mut m, a, v);
            impression(&mut m, a, v, 0.3 + 0.01 * i as f64);
            impression(&mut m, v, c, 0.9);
        }
        assert_eq!(connect(&mut m, c, a)["status"], "pending");
        // A request and its proof each: spread so that strangers stay inside their rate share.
        m.advance(1_300);
        requesters.push(c);
    }
    (m, a, b, requesters)
}

#[test]
fn requests_our_peers_vouch_for_are_never_displaced_from_a_full_queue() {
    let (mut m, a, _, cs) = full_queue(PENDING_REQUESTS_MAX, true);
    let d = m.add("D", false);
    assert!(connect_result(&mut m, d, a).is_err(), "nothing to displace: D is refused");
    let w = m.pending_agents(a);
    assert_eq!(w.len(), PENDING_REQUESTS_MAX);
    assert!(!w.contains(&m.id(d)) && w.contains(&m.id(cs[0])));
}

#[test]
fn a_vouched_newcomer_displaces_the_oldest_unvouched_request() {
    let (mut m, a, b, cs) = full_queue(PENDING_REQUESTS_MAX, false);
    let d = m.add("D", false);
    impression(&mut m, b, d, 0.9);
    assert_eq!(connect(&mut m, d, a)["status"], "pending");
    let w = m.pending_agents(a);
    assert_eq!(w.len(), PENDING_REQUESTS_MAX);
    assert!(w.contains(&m.id(d)) && !w.contains(&m.id(cs[0])) && w.contains(&m.id(cs[1])));
    let pending = m.command(a, Command::ListPending).unwrap();
    let mine =
        pending["requests"].as_array().unwrap().iter().find(|r| r["agent_id"] == m.id(d).as_str()).unwrap().clone();
    assert_eq!(mine["peer_trust"]["score"], 0.9, "B's vouch is on record for the agent");
}

fn connect_result(m: &mut Mesh, from: usize, to: usize) -> Result<Value, proto_core::CommandError> {
    let url = m.peers[to].url.clone();
    m.command(from, Command::Connect { target_url: url })
}

#[test]
fn hearsay_is_not_passed_on_as_an_opinion() {
    // A's impression of C comes only from B's report (0.1 × 0.8 × 0.9).
    let (mut m, a, _b, c) = vouched(Config { trust_accept_min: None, trust_reject_max: None, ..Config::default() });
    connect(&mut m, c, a);
    let imp = m.command(a, Command::GetImpression { agent_id: m.id(c) }).unwrap();
    assert_eq!((imp["has_impression"].as_bool(), imp["first_hand"].as_bool()), (Some(true), Some(false)), "{imp}");
    // D trusts A and asks it about C: A has no opinion of its own to give.
    let d = m.add_with("D", true, Config { trust_accept_min: None, trust_reject_max: None, ..Config::default() });
    connect(&mut m, a, d);
    impression(&mut m, d, a, 0.8);
    connect(&mut m, c, d);
    let t = m.command(d, Command::ListPending).unwrap()["requests"][0]["peer_trust"].clone();
    assert_eq!((t["asked"].as_u64(), t["opinions"].as_array().unwrap().len()), (Some(1), 0), "{t}");
    // Once A's agent forms its own view, A tells it.
    impression(&mut m, a, c, 0.6);
    let e = m.add_with("E", true, Config { trust_accept_min: None, trust_reject_max: None, ..Config::default() });
    connect(&mut m, a, e);
    impression(&mut m, e, a, 0.8);
    connect(&mut m, c, e);
    let t = m.command(e, Command::ListPending).unwrap()["requests"][0]["peer_trust"].clone();
    assert_eq!(t["opinions"][0]["their_score"], 0.6, "{t}");
}

#[test]
fn a_round_asks_at_most_the_fan_out_and_all_rounds_at_most_the_cap() {
    // Eight trusted peers who vouch: one round settles it, however many peers A has.
    let mut m = Mesh::new();
    let a = m.add_with("A", true, Config { trust_accept_min: None, trust_reject_max: None, ..Config::default() });
    let c = m.add("C", false);
    for i in 0..TRUST_QUERY_ASKED_MAX + 5 {
        let p = m.add(&format!("P{i}"), true);
        connect(&mut m, p, a);
        if i < TRUST_QUERY_FANOUT_MAX {
            impression(&mut m, a, p, 0.5);
            impression(&mut m, p, c, 0.9);
        }
    }
    connect(&mut m, c, a);
    let t = m.command(a, Command::ListPending).unwrap()["requests"][0]["peer_trust"].clone();
    assert_eq!(
        (t["asked"].as_u64(), t["opinions"].as_array().unwrap().len()),
        (Some(TRUST_QUERY_FANOUT_MAX as u64), TRUST_QUERY_FANOUT_MAX)
    );

    // Nobody knows the requester: A keeps asking the peers it trusts, round after round, up to the
    // cap and no further.
    let mut m = Mesh::new();
    let a = m.add("A", true);
    for i in 0..TRUST_QUERY_ASKED_MAX + 5 {
        let p = m.add(&format!("P{i}"), true);
        connect(&mut m, p, a);
        impression(&mut m, a, p, 0.3);
    }
    let c = m.add("C", false);
    connect(&mut m, c, a);
    let t = m.command(a, Command::ListPending).unwrap()["requests"][0]["peer_trust"].clone();
    assert_eq!(t["asked"].as_u64(), Some(TRUST_QUERY_ASKED_MAX as u64));
    let asked: std::collections::BTreeSet<&str> =
        m.trace.iter().filter(|l| l.contains("/trust_query")).filter_map(|l| l.split_whitespace().nth(3)).collect();
    assert_eq!(asked.len(), TRUST_QUERY_ASKED_MAX, "each peer asked once");
    // Housekeeping finds nobody new to ask.
    let before = m.trace.iter().filter(|l| l.contains("/trust_query")).count();
    m.advance(120_000);
    assert_eq!(m.trace.iter().filter(|l| l.contains("/trust_query")).count(), before);
}

#[test]
fn later_rounds_ask_only_peers_whose_answer_counts() {
    let mut m = Mesh::new();
    let a = m.add("A", true);
    for i in 0..3 * TRUST_QUERY_FANOUT_MAX {
        let p = m.add(&format!("P{i}"), true);
        connect(&mut m, p, a);
        // Two trusted peers beyond the first round's eight; the rest A has no view of.
        if i < 2 {
            impression(&mut m, a, p, 0.1);
        }
    }
    let c = m.add("C", false);
    connect(&mut m, c, a);
    let t = m.command(a, Command::ListPending).unwrap()["requests"][0]["peer_trust"].clone();
    assert_eq!(
        t["asked"].as_u64(),
        Some(TRUST_QUERY_FANOUT_MAX as u64),
        "the first round only: P0 and P1 were in it, nobody else counts"
    );
}

#[test]
fn a_voucher_outside_the_first_round_is_found_in_a_dense_mesh() {
    let (mut m, a, c) = (Mesh::new(), 0, 1);
    m.add("A", true);
    m.add("C", false);
    for i in 0..2 * TRUST_QUERY_FANOUT_MAX + 4 {
        let p = m.add(&format!("P{i}"), true);
        connect(&mut m, p, a);
        impression(&mut m, a, p, 0.3);
    }
    // V ranks below every other peer of A's, so the first two rounds miss it.
    let v = m.add("V", true);
    connect(&mut m, v, a);
    impression(&mut m, a, v, 0.25);
    impression(&mut m, v, c, 0.9);
    connect(&mut m, c, a);
    m.advance(PAST_HOLD_MS);
    assert!(
        m.peers[a].events.iter().any(|e| matches!(e, Event::RequestDecided { accepted: true, .. })),
        "V's vouch was heard"
    );
}

#[test]
fn an_undecided_request_is_decided_once_trust_in_its_voucher_grows() {
    let (mut m, a, b, c) = vouched(Config::default());
    impression(&mut m, a, b, 0.1);
    connect(&mut m, c, a);
    assert_eq!(m.command(a, Command::ListPending).unwrap()["total"], 1, "0.1 of weight is not enough to act on");
    impression(&mut m, a, b, 0.8);
    m.advance(PAST_HOLD_MS);
    assert!(m.peers[a].events.iter().any(|e| matches!(e, Event::RequestDecided { accepted: true, .. })));
    assert_eq!(m.command(a, Command::ListPending).unwrap()["total"], 0);
}

#[test]
fn a_peer_connected_later_is_asked_about_an_undecided_request() {
    let mut m = Mesh::new();
    let a = m.add("A", true);
    let b = m.add("B", true);
    let c = m.add("C", false);
    connect(&mut m, c, a);
    assert_eq!(
        m.command(a, Command::ListPending).unwrap()["requests"][0]["peer_trust"]["asked"],
        0,
        "nobody to ask yet"
    );
    impression(&mut m, b, c, 0.9);
    connect(&mut m, b, a);
    impression(&mut m, a, b, 0.8);
    m.advance(PAST_HOLD_MS);
    assert!(
        m.peers[a].events.iter().any(|e| matches!(e, Event::RequestDecided { accepted: true, .. })),
        "B was asked at housekeeping"
    );
}

#[test]
fn shards_reach_peers_whose_trust_meets_the_threshold_and_sync_when_it_rises() {
    let mut m = Mesh::new();
    let a = m.add("A", true);
    let b = m.add("B", true);
    let d = m.add("D", true);
    connect(&mut m, b, a);
    connect(&mut m, d, a);
    impression(&mut m, a, b, 0.8);
    for x in [b, d] {
        impression(&mut m, x, a, 0.9);
    }
    let r = m.command(a, shard("SOL staking yields 7%", 0.5)).unwrap();
    let shard_id = r["shard_id"].as_str().unwrap().to_owned();
    assert_eq!(r["sent_to"], json!([m.id(b)]));
    let view = |m: &mut Mesh, x: usize| {
        m.command(x, Command::ViewShards { tags: vec!["topic".into()], author: None }).unwrap()
    };
    assert_eq!(view(&mut m, b)["count"], 1, "prefix tag match");
    assert_eq!(view(&mut m, d)["count"], 0);
    // D's trust rises past the threshold: the shard follows.
    impression(&mut m, a, d, 0.6);
    assert_eq!(view(&mut m, d)["count"], 1);
    // Updates and deletes reach the holders.
    m.advance(1_000);
    let args = ShardArgs {
        content: "SOL staking yields 6%".into(),
        tags: vec!["topic:sol".into()],
        trust_threshold: 0.5,
        summary: Some("yields".into()),
    };
    m.command(a, Command::UpdateShard { shard_id: shard_id.clone(), args }).unwrap();
    assert_eq!(view(&mut m, b)["shards"][0]["summary"], "yields");
    m.advance(1_000);
    m.command(a, Command::DeleteShard { shard_id }).unwrap();
    assert_eq!(view(&mut m, b)["count"], 0);
    assert_eq!(view(&mut m, d)["count"], 0);
    insta::assert_snapshot!(m.trace.join("\n"));
}

#[test]
fn a_new_connection_receives_qualifying_shards_and_a_receiver_rechecks_its_own_trust() {
    let mut m = Mesh::new();
    let a = m.add("A", true);
    let b = m.add("B", true);
    m.command(a, shard("public note", 0.0)).unwrap();
    m.command(a, shard("private note", 0.9)).unwrap();
    connect(&mut m, b, a);
    let v = m.command(b, Command::ViewShards { tags: vec![], author: None }).unwrap();
    assert_eq!(v["count"], 1);
    assert_eq!(v["shards"][0]["content"], "public note");
    // B stops trusting A below the shard's threshold of 0: it no longer shows.
    impression(&mut m, b, a, -0.2);
    assert_eq!(m.command(b, Command::ViewShards { tags: vec![], author: None }).unwrap()["count"], 0);
}

#[test]
fn a_peer_negative_for_over_an_hour_is_disconnected_on_both_sides() {
    let mut m = Mesh::new();
    let a = m.add("A", true);
    let b = m.add("B", true);
    connect(&mut m, a, b);
    impression(&mut m, a, b, -0.3);
    m.advance(TRUST_NEGATIVE_TIMEOUT_S * 1000 - 60_000);
    assert_eq!(m.command(a, Command::ListConnections).unwrap()["total"], 1, "not yet: under an hour");
    m.advance(120_000);
    assert_eq!(m.command(a, Command::ListConnections).unwrap()["total"], 0);
    assert_eq!(m.command(b, Command::ListConnections).unwrap()["total"], 0, "B honoured the signed notice");
    assert!(m.peers[b].events.iter().any(|e| matches!(e, Event::Disconnected { by_peer: true, .. })));
}

#[test]
fn two_status_reports_in_a_row_are_the_same() {
    let mut m = Mesh::new();
    let a = m.add("A", true);
    let b = m.add("B", true);
    connect(&mut m, a, b);
    let hello = SendArgs {
        content: "hello".into(),
        targets: Targets::Agents(vec![m.id(b)]),
        metadata: Map::new(),
        in_reply_to: None,
        hops_remaining: 3,
    };
    m.command(a, Command::Send(hello)).unwrap();
    let first = m.command(b, Command::Status).unwrap();
    assert_eq!(first["new_context"].as_array().unwrap().len(), 1);
    assert_eq!(m.command(b, Command::Status).unwrap(), first);
}

#[test]
fn marking_shown_hides_what_was_shown_and_nothing_later() {
    let mut m = Mesh::new();
    let a = m.add("A", true);
    let b = m.add("B", true);
    connect(&mut m, a, b);
    let send = |m: &mut Mesh, content: &str| {
        let args = SendArgs {
            content: content.into(),
            targets: Targets::Agents(vec![m.id(b)]),
            metadata: Map::new(),
            in_reply_to: None,
            hops_remaining: 3,
        };
        m.command(a, Command::Send(args)).unwrap();
    };
    send(&mut m, "first");
    let through = m.command(b, Command::Status).unwrap()["new_context"][0]["seq"].as_u64().unwrap();
    send(&mut m, "later");
    m.command(b, Command::MarkShown { through }).unwrap();
    let status = m.command(b, Command::Status).unwrap();
    let new: Vec<&Value> = status["new_context"].as_array().unwrap().iter().map(|e| &e["content"]).collect();
    assert_eq!(new, [&json!("later")], "an entry logged after the report stays new");
}

#[test]
fn the_feed_has_working_direct_and_network_sections_and_status_shows_what_is_new() {
    let mut m = Mesh::new();
    let a = m.add("A", true);
    let b = m.add("B", true);
    connect(&mut m, a, b);
    let send = |targets, content: &str| {
        Command::Send(SendArgs {
            content: content.into(),
            targets,
            metadata: Map::new(),
            in_reply_to: None,
            hops_remaining: 3,
        })
    };
    m.command(a, send(Targets::Agents(vec![m.id(b)]), "direct hello")).unwrap();
    m.command(a, send(Targets::Broadcast { trust_min: 0.0 }, "hello everyone")).unwrap();
    let feed = m.command(b, Command::ContextFeed { focus: None }).unwrap();
    assert_eq!(feed["direct"][0]["content"], "direct hello");
    assert_eq!(feed["network"][0]["content"], "hello everyone");
    assert_eq!(feed["network"][0]["kind"], "broadcast");
    let first = m.command(b, Command::Status).unwrap();
    let shown = first["new_context"].as_array().unwrap();
    assert_eq!(shown.len(), 2);
    assert_eq!(m.command(b, Command::Status).unwrap(), first, "a status report changes nothing");
    let through = shown.iter().filter_map(|e| e["seq"].as_u64()).max().unwrap();
    assert_eq!(m.command(b, Command::MarkShown { through }).unwrap()["shown_through"], through);
    let second = m.command(b, Command::Status).unwrap();
    assert_eq!(second["new_context"].as_array().unwrap().len(), 0, "nothing new since the last look");
    // Restart keeps the log.
    m.restart(b);
    assert_eq!(m.command(b, Command::ContextFeed { focus: None }).unwrap()["direct"].as_array().unwrap().len(), 1);
}

#[test]
fn a_reply_completes_an_exchange_and_raises_trust() {
    let mut m = Mesh::new();
    let a = m.add("A", true);
    let b = m.add("B", true);
    connect(&mut m, a, b);
    let r = m
        .command(
            a,
            Command::Send(SendArgs {
                content: "q".into(),
                targets: Targets::Agents(vec![m.id(b)]),
                metadata: Map::new(),
                in_reply_to: None,
                hops_remaining: 1,
            }),
        )
        .unwrap();
    let before = m.command(a, Command::GetImpression { agent_id: m.id(b) }).unwrap()["score"].as_f64().unwrap();
    let mid = r["message_id"].as_str().unwrap().to_owned();
    m.command(
        b,
        Command::Send(SendArgs {
            content: "a".into(),
            targets: Targets::Agents(vec![m.id(a)]),
            metadata: Map::new(),
            in_reply_to: Some(mid),
            hops_remaining: 1,
        }),
    )
    .unwrap();
    let after = m.command(a, Command::GetImpression { agent_id: m.id(b) }).unwrap()["score"].as_f64().unwrap();
    assert!(after > before + 0.019, "{before} -> {after}");
}

#[test]
fn the_old_rules_decide_at_once() {
    let (mut m, a, _b, c) = vouched(Config { trust_policy: TrustPolicy::WeightedUnbounded, ..Config::default() });
    connect(&mut m, c, a);
    assert!(decided(&m, a, true), "no hold without the Sybil defences");
}

#[test]
fn a_voucher_that_vouches_for_a_crowd_counts_for_nothing() {
    // B (trusted 0.8 by A) vouches for C, D and E: three requesters at once, so none gets in on its word.
    let (mut m, a, b, c) = vouched(Config::default());
    let mut crowd = vec![c];
    for name in ["D", "E"] {
        let d = m.add(name, false);
        connect(&mut m, b, d);
        impression(&mut m, b, d, 0.9);
        crowd.push(d);
    }
    for &x in &crowd {
        connect(&mut m, x, a);
    }
    m.advance(PAST_HOLD_MS);
    assert!(!decided(&m, a, true), "a crowd vouched by one peer waits for the agent");
    let pending = m.command(a, Command::ListPending).unwrap();
    assert_eq!(pending["total"], 3);
    for r in pending["requests"].as_array().unwrap() {
        let o = &r["peer_trust"]["opinions"][0];
        assert_eq!(o["agent_id"], m.id(b).as_str());
        assert_eq!((o["your_trust_in_them"].as_f64(), o["counted"].as_f64()), (Some(0.8), Some(0.0)), "{o}");
        assert_eq!(o["vouched_for"], 3);
        assert_eq!(r["peer_trust"]["score"], Value::Null);
        assert!(r["policy_decides_from"].is_string());
    }
}

/// A trusts S (0.8); F trusts A (0.8); S asks F to connect, so F asks A about S. With `crowd`, S
/// first vouched for three requesters at A. Returns whether F accepted S by policy.
fn friend_accepts_the_trusted_peer(crowd: bool) -> bool {
    let mut m = Mesh::new();
    let a = m.add("A", true);
    let s = m.add("S", false);
    let f = m.add("F", false);
    connect(&mut m, a, s);
    impression(&mut m, a, s, 0.8);
    connect(&mut m, a, f);
    impression(&mut m, f, a, 0.8);
    if crowd {
        for name in ["C", "D", "E"] {
            let x = m.add(name, false);
            impression(&mut m, s, x, 1.0);
            connect(&mut m, x, a);
        }
    }
    connect(&mut m, s, f);
    m.advance(PAST_HOLD_MS);
    decided(&m, f, true)
}

#[test]
fn a_node_does_not_pass_on_its_good_word_for_a_peer_that_vouched_for_a_crowd() {
    assert!(friend_accepts_the_trusted_peer(false), "A's word carries S in at A's friend");
    assert!(!friend_accepts_the_trusted_peer(true), "A saw S vouch for a crowd: its word is held to the ceiling");
}

#[test]
fn a_peer_that_slanders_a_crowd_cannot_reject_anyone() {
    // S (trusted 0.8 by A) speaks ill of C, D and E; V (trusted 0.6) vouches for C alone.
    let (mut m, a, s, c) = vouched(Config::default());
    impression(&mut m, s, c, -1.0);
    let mut others = Vec::new();
    for name in ["D", "E"] {
        let d = m.add(name, false);
        connect(&mut m, s, d);
        impression(&mut m, s, d, -1.0);
        others.push(d);
    }
    let v = m.add("V", true);
    connect(&mut m, v, a);
    impression(&mut m, a, v, 0.6);
    connect(&mut m, v, c);
    impression(&mut m, v, c, 0.8);
    for &d in &others {
        connect(&mut m, d, a);
    }
    connect(&mut m, c, a);
    m.advance(PAST_HOLD_MS);
    assert!(!decided(&m, a, false), "the slanderer's warnings count for nothing");
    assert!(decided(&m, a, true), "C got in on V's word");
}

#[test]
fn farmed_replies_never_make_a_voucher() {
    let mut m = Mesh::new();
    let a = m.add("A", true);
    let b = m.add("B", true);
    connect(&mut m, a, b);
    let send = |m: &mut Mesh, from: usize, to: usize, in_reply_to: Option<String>| {
        let args = SendArgs {
            content: "q".into(),
            targets: Targets::Agents(vec![m.id(to)]),
            metadata: Map::new(),
            in_reply_to,
            hops_remaining: 1,
        };
        m.command(from, Command::Send(args)).unwrap()["message_id"].as_str().unwrap().to_owned()
    };
    // Twenty helpful replies would be worth 0.33 under 0.5.3's rules.
    for _ in 0..20 {
        let q = send(&mut m, a, b, None);
        send(&mut m, b, a, Some(q));
    }
    let score = m.command(a, Command::GetImpression { agent_id: m.id(b) }).unwrap()["score"].as_f64().unwrap();
    assert!((score - TRUST_AUTO_CEILING).abs() < 1e-9, "{score}");
}

/// A point of -1..=1 from any integer (quickcheck's floats are mostly huge, NaN or infinite).
fn unit(n: i32) -> f64 {
    f64::from(n % 1001) / 1000.0
}

quickcheck! {
    /// The diminishing update: a gain never lowers a score and a loss never raises it, no step is
    /// larger than twice its delta (a gain from -1 doubles), the result stays within -1..1 for any
    /// delta, and the same gain moves a score less the closer it already is to +1 (a loss, the
    /// closer to -1).
    fn impression_updates_move_the_right_way_and_shrink_near_the_ends(a: i32, b: i32, d: i32, wild: f64) -> bool {
        let (lo, hi) = { let (x, y) = (unit(a), unit(b)); (x.min(y), x.max(y)) };
        let delta = unit(d);
        let step = |s: f64| proto_core::trust::adjust(s, delta) - s;
        let direction = if delta >= 0.0 { step(lo) >= 0.0 && step(hi) >= 0.0 } else { step(lo) <= 0.0 && step(hi) <= 0.0 };
        let bounded = step(lo).abs() <= 2.0 * delta.abs() + 1e-12 && step(hi).abs() <= 2.0 * delta.abs() + 1e-12;
        let diminishing = if delta >= 0.0 { step(hi) <= step(lo) + 1e-12 } else { step(lo) >= step(hi) - 1e-12 };
        let in_range = [lo, hi].iter().all(|s| (-1.0..=1.0).contains(&proto_core::trust::adjust(*s, wild)));
        direction && bounded && diminishing && in_range
    }
}

#[test]
fn replies_cannot_farm_trust() {
    let mut m = Mesh::new();
    let a = m.add("A", true);
    let b = m.add("B", true);
    connect(&mut m, a, b);
    let r = m
        .command(
            a,
            Command::Send(SendArgs {
                content: "q".into(),
                targets: Targets::Agents(vec![m.id(b)]),
                metadata: Map::new(),
                in_reply_to: None,
                hops_remaining: 1,
            }),
        )
        .unwrap();
    let mid = r["message_id"].as_str().unwrap().to_owned();
    let score =
        |m: &mut Mesh| m.command(a, Command::GetImpression { agent_id: m.id(b) }).unwrap()["score"].as_f64().unwrap();
    m.command(
        b,
        Command::Send(SendArgs {
            content: "a1".into(),
            targets: Targets::Agents(vec![m.id(a)]),
            metadata: Map::new(),
            in_reply_to: Some(mid.clone()),
            hops_remaining: 1,
        }),
    )
    .unwrap();
    let once = score(&mut m);
    for i in 0..5 {
        m.command(
            b,
            Command::Send(SendArgs {
                content: format!("again {i}"),
                targets: Targets::Agents(vec![m.id(a)]),
                metadata: Map::new(),
                in_reply_to: Some(mid.clone()),
                hops_remaining: 1,
            }),
        )
        .unwrap();
    }
    assert!(
        (score(&mut m) - once).abs() < 0.01,
        "only delivery-sized nudges after the first reply: {once} -> {}",
        score(&mut m)
    );
}

#[test]
fn a_reply_before_the_slowest_delivery_still_earns_the_bonus() {
    let mut m = Mesh::new();
    let a = m.add("A", true);
    let b = m.add("B", true);
    let c = m.add("C", true);
    connect(&mut m, a, b);
    connect(&mut m, a, c);
    m.slow.push(c);
    let send = m.start(
        a,
        Command::Send(SendArgs {
            content: "q".into(),
            targets: Targets::Agents(vec![m.id(b), m.id(c)]),
            metadata: Map::new(),
            in_reply_to: None,
            hops_remaining: 1,
        }),
    );
    assert!(m.take_done(send).is_none(), "C has not answered yet");
    let mid = m.command(a, Command::ListSent).unwrap()["messages"][0]["message_id"].as_str().unwrap().to_owned();
    // No impression yet (the delivery nudge comes when the whole send has finished): 0.
    let score = |m: &mut Mesh| {
        m.command(a, Command::GetImpression { agent_id: m.id(b) }).unwrap()["score"].as_f64().unwrap_or(0.0)
    };
    let before = score(&mut m);
    m.command(
        b,
        Command::Send(SendArgs {
            content: "a".into(),
            targets: Targets::Agents(vec![m.id(a)]),
            metadata: Map::new(),
            in_reply_to: Some(mid.clone()),
            hops_remaining: 1,
        }),
    )
    .unwrap();
    let gained = score(&mut m) - before;
    assert!(
        (gained - proto_core::limits::TRUST_DELTA_REPLIED).abs() < 1e-9,
        "B answered while C was slow: {before} + {gained}"
    );
    m.release();
    let done = m.take_done(send).expect("finished once C answered").unwrap();
    assert_eq!(done["routed_to"].as_array().unwrap().len(), 2, "{done}");
    let sent = m.command(a, Command::GetSent { message_id: mid }).unwrap();
    assert_eq!(sent["routed_to"], json!([m.id(b), m.id(c)]), "each target once, in answer order: {sent}");
}

#[test]
fn floats_survive_signed_forms() {
    // A score that does not print exactly, in a trust answer and in message metadata.
    let (mut m, a, b, c) = vouched(Config { trust_accept_min: None, trust_reject_max: None, ..Config::default() });
    let odd = 0.1 + 0.2 - 0.000_000_000_000_000_1;
    m.command(b, Command::SetImpression { agent_id: m.id(c), score: odd, note: None }).unwrap();
    connect(&mut m, c, a);
    let t = m.command(a, Command::ListPending).unwrap()["requests"][0]["peer_trust"].clone();
    assert_eq!(t["opinions"][0]["their_score"].as_f64(), Some(odd));
    let mut md = Map::new();
    md.insert("x".into(), json!(-0.203_204_000_000_000_02_f64));
    let r = m
        .command(
            b,
            Command::Send(SendArgs {
                content: "f".into(),
                targets: Targets::Agents(vec![m.id(c)]),
                metadata: md,
                in_reply_to: None,
                hops_remaining: 1,
            }),
        )
        .unwrap();
    assert_eq!(r["failed"], json!([]), "{r}");
}

#[test]
fn one_failed_delivery_does_not_start_the_disconnect_clock() {
    let mut m = Mesh::new();
    let a = m.add("A", true);
    let b = m.add("B", true);
    connect(&mut m, a, b);
    m.unreachable.push(b);
    m.command(
        a,
        Command::Send(SendArgs {
            content: "x".into(),
            targets: Targets::Agents(vec![m.id(b)]),
            metadata: Map::new(),
            in_reply_to: None,
            hops_remaining: 1,
        }),
    )
    .unwrap();
    m.unreachable.clear();
    let imp = m.command(a, Command::GetImpression { agent_id: m.id(b) }).unwrap();
    assert!(imp["score"].as_f64().unwrap() < 0.0);
    assert_eq!(imp["negative_since"], Value::Null);
    m.advance(2 * TRUST_NEGATIVE_TIMEOUT_S * 1000);
    assert_eq!(m.command(a, Command::ListConnections).unwrap()["total"], 1);
}

#[test]
fn an_old_grudge_does_not_end_a_new_connection_at_once() {
    let mut m = Mesh::new();
    let a = m.add("A", true);
    let b = m.add("B", true);
    impression(&mut m, a, b, -0.5);
    m.advance(2 * TRUST_NEGATIVE_TIMEOUT_S * 1000);
    connect(&mut m, b, a);
    m.advance(120_000);
    assert_eq!(m.command(a, Command::ListConnections).unwrap()["total"], 1, "the hour starts at connection");
    m.advance(TRUST_NEGATIVE_TIMEOUT_S * 1000);
    assert_eq!(m.command(a, Command::ListConnections).unwrap()["total"], 0);
}

#[test]
fn unproven_requests_never_make_us_ask_our_peers() {
    let mut m = Mesh::new();
    let a = m.add("A", true);
    let b = m.add("B", true);
    connect(&mut m, b, a);
    let v = proto_core::Passport::from_seed([0x44; 32]);
    let req = json!({"from_agent_id": v.agent_id().as_str(), "from_agent_url": "http://v.example:8100"});
    let before = m.trace.len();
    m.inject(
        a,
        proto_core::Method::Post,
        "/__darkmatter__/connection_request",
        req.to_string().as_bytes(),
        "203.0.113.44".parse().unwrap(),
    );
    assert!(!m.trace[before..].iter().any(|l| l.contains("trust_query")), "no query before the proof");
    let p = m.command(a, Command::ListPending).unwrap();
    assert_eq!(p["requests"][0]["proven_by"], "not yet");
    assert_eq!(p["requests"][0]["peer_trust"], Value::Null);
}

#[test]
fn a_peer_that_no_longer_qualifies_neither_gets_nor_shows_the_update() {
    let mut m = Mesh::new();
    let a = m.add("A", true);
    let b = m.add("B", true);
    connect(&mut m, b, a);
    impression(&mut m, a, b, 0.8);
    impression(&mut m, b, a, 0.9);
    let id = m.command(a, shard("secret-ish", 0.5)).unwrap()["shard_id"].as_str().unwrap().to_owned();
    assert_eq!(m.command(b, Command::ViewShards { tags: vec![], author: None }).unwrap()["count"], 1);
    // Both sides' trust fell below the shard's threshold: A does not send B the new version (its
    // content is not for B any more), and B no longer shows the copy it holds (it lapses within the TTL).
    impression(&mut m, a, b, 0.1);
    impression(&mut m, b, a, 0.3);
    let args = ShardArgs {
        content: "secret-ish v2".into(),
        tags: vec!["topic:sol".into()],
        trust_threshold: 0.5,
        summary: None,
    };
    m.command(a, Command::UpdateShard { shard_id: id.clone(), args }).unwrap();
    assert_eq!(m.command(b, Command::ViewShards { tags: vec![], author: None }).unwrap()["count"], 0);
    assert!(m.command(b, Command::GetShard { shard_id: id, author: None }).is_err());
}

#[test]
fn a_captured_shard_push_cannot_be_replayed() {
    let mut m = Mesh::new();
    let a = m.add("A", true);
    let b = m.add("B", true);
    connect(&mut m, b, a);
    // Capture A's push to B by sending it to an unreachable B first, then deliver it twice.
    m.unreachable.push(b);
    let node = &mut m.peers[a].node;
    node.handle_command(m.now, proto_core::CommandId(777), shard("x", 0.0));
    let mut body = Vec::new();
    loop {
        match node.poll_output() {
            proto_core::Output::Transmit(t) if t.url.ends_with("/shard_push") => body = t.body,
            proto_core::Output::Timeout(_) => break,
            _ => {}
        }
    }
    m.unreachable.clear();
    let src = m.peers[a].ip;
    assert_eq!(m.inject(b, proto_core::Method::Post, "/__darkmatter__/shard_push", &body, src).0, 200);
    assert_eq!(m.inject(b, proto_core::Method::Post, "/__darkmatter__/shard_push", &body, src).0, 409);
    m.advance(400_000);
    assert_eq!(
        m.inject(b, proto_core::Method::Post, "/__darkmatter__/shard_push", &body, src).0,
        403,
        "stale after the window"
    );
}
