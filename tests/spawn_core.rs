//! Agent spawning decisions in the core, with a fake clock (SPEC §14.1): which inputs wake an agent,
//! the limits at their edges, waiting and retrying, start-up respawn, and the facts an agent is given.

use core::net::IpAddr;

use darkmatter_tests::harness::Mesh;
use proto_core::limits::{SPAWN_REQUESTER_QUIET_MS, SPAWN_RESPAWN_AGE_S_MAX, SPAWN_WINDOW_MS};
use proto_core::sign::{legacy_message_bytes, sign_hex};
use proto_core::spawn::{SpawnConfig, SpawnOutcome, SpawnTrigger};
use proto_core::time::format_iso;
use proto_core::{Command, Config, Event, Method, Passport};
use serde_json::{json, Value};

fn local_ip() -> IpAddr {
    "10.0.0.77".parse().unwrap()
}

fn public_ip() -> IpAddr {
    "203.0.113.50".parse().unwrap()
}

fn peer(n: u8) -> Passport {
    Passport::from_seed([0x40 + n; 32])
}

fn spawning(config: SpawnConfig) -> Config {
    Config { spawn: Some(config), ..Config::default() }
}

/// The node under test, with spawning configured (or off with `None`).
fn node(spawn: Option<SpawnConfig>) -> (Mesh, usize) {
    let mut m = Mesh::new();
    let b = m.add_with("B", true, Config { spawn, ..Config::default() });
    (m, b)
}

/// A legacy-signed envelope from `p`, stamped now.
fn envelope(m: &Mesh, p: &Passport, id: &str, content: &str, extra: Value) -> Vec<u8> {
    let ts = format_iso(m.now.wall_us);
    let from = p.agent_id().as_str();
    let sig = sign_hex(p, &legacy_message_bytes(from, id, &ts, content).unwrap());
    let mut v = json!({
        "message_id": id, "content": content, "webhook": format!("http://peer.example:8100/__darkmatter__/webhook/{id}"),
        "hops_remaining": 10, "metadata": {}, "timestamp": ts, "from_agent_id": from, "from_public_key_hex": from, "signature_hex": sig,
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    serde_json::to_vec(&v).unwrap()
}

fn post(m: &mut Mesh, to: usize, p: &Passport, id: &str, extra: Value) -> u16 {
    let body = envelope(m, p, id, &format!("hello from {id}"), extra);
    m.inject(to, Method::Post, "/__darkmatter__/message", &body, public_ip()).0
}

/// Asks to connect as a 0.5.3 node does (unsigned request, then the challenge proof) from `src`.
/// `prove` false stops after the request. Returns the request id.
fn request(m: &mut Mesh, to: usize, p: &Passport, name: &str, src: IpAddr, prove: bool) -> String {
    let req = json!({"from_agent_id": p.agent_id().as_str(), "from_agent_url": "http://peer.example:8100",
        "from_agent_display_name": name, "from_agent_bio": "I sell widgets."});
    let (s, v) = m.inject(to, Method::Post, "/__darkmatter__/connection_request", req.to_string().as_bytes(), src);
    assert_eq!(s, 200, "{v}");
    let request_id = v["request_id"].as_str().unwrap().to_owned();
    if prove {
        let challenge = v["challenge_hex"].as_str().unwrap();
        let proof_hex =
            sign_hex(p, &proto_core::sign::domain_bytes(proto_core::sign::DOMAIN_CHALLENGE, &[challenge]).unwrap());
        let proof = json!({"challenge_id": v["challenge_id"], "proof_hex": proof_hex, "agent_id": p.agent_id().as_str(), "public_key_hex": p.agent_id().as_str()});
        let (s, v) = m.inject(to, Method::Post, "/__darkmatter__/connection_proof", proof.to_string().as_bytes(), src);
        assert_eq!(s, 200, "{v}");
    }
    request_id
}

/// Makes `p` a connection of `to` (a local, proven request is auto-accepted).
fn connect(m: &mut Mesh, to: usize, p: &Passport, name: &str) {
    request(m, to, p, name, local_ip(), true);
    let list = m.command(to, Command::ListConnections).unwrap();
    assert!(list.to_string().contains(p.agent_id().as_str()), "connected: {list}");
}

fn spawned_keys(m: &Mesh, i: usize) -> Vec<String> {
    m.peers[i].spawns.iter().map(|s| s.trigger.key().to_owned()).collect()
}

fn refusals(m: &Mesh, i: usize) -> Vec<String> {
    m.peers[i]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::SpawnRefused { key, reason } => Some(format!("{key}: {reason}")),
            _ => None,
        })
        .collect()
}

fn exit_nth(m: &mut Mesh, i: usize, n: usize) {
    let id = m.peers[i].spawns[n].spawn_id;
    m.spawn_exit(i, id, SpawnOutcome::Exited { code: Some(0) });
}

#[test]
fn spawning_is_off_by_default() {
    let (mut m, b) = node(None);
    let p = peer(1);
    connect(&mut m, b, &p, "P1");
    assert_eq!(post(&mut m, b, &p, "m1", json!({})), 200);
    assert!(m.peers[b].spawns.is_empty());
    assert!(!m.peers[b].node.spawning_enabled());
    // Nothing about spawning shows when it is off.
    assert!(get(&mut m, b, "/.well-known/darkmatter.json").get("spawned_agents").is_none());
    assert!(m.command(b, Command::Status).unwrap().get("spawned_agents").is_none());
}

#[test]
fn a_message_from_a_connection_wakes_an_agent_with_the_facts_it_needs() {
    let (mut m, b) = node(Some(SpawnConfig::default()));
    let p = peer(1);
    connect(&mut m, b, &p, "Alice");
    assert_eq!(post(&mut m, b, &p, "m-earlier", json!({})), 200);
    exit_nth(&mut m, b, 0);
    m.advance(1_000);
    assert_eq!(post(&mut m, b, &p, "m-now", json!({})), 200);
    let s = m.peers[b].spawns.last().unwrap().clone();
    assert_eq!(s.trigger, SpawnTrigger::Message { message_id: "m-now".to_owned() });
    assert_eq!(s.sender_id, p.agent_id().as_str());
    assert_eq!(s.sender_name, "Alice");
    assert_eq!(s.sender_trust, m.peers[b].node.inspect().trust_of(p.agent_id().as_str()));
    // The memory holds the earlier message; the one being handled is read through a tool, not given.
    let excerpts: Vec<&str> = s.context.iter().map(|c| c.excerpt.as_str()).collect();
    assert_eq!(excerpts, ["hello from m-earlier"]);
    assert_eq!(s.context[0].peer_name, "Alice");
    assert_eq!(m.peers[b].node.spawned_agents(), 1);
    // Reported where the user and peers look (R-C9).
    assert_eq!(get(&mut m, b, "/__darkmatter__/status")["spawned_agents"], 1);
    assert_eq!(get(&mut m, b, "/.well-known/darkmatter.json")["spawned_agents"], 1);
    assert_eq!(m.command(b, Command::Status).unwrap()["spawned_agents"], 1);
}

#[test]
fn strangers_and_broadcasts_never_wake_an_agent() {
    let (mut m, b) = node(Some(SpawnConfig::default()));
    let stranger = peer(1);
    assert_eq!(post(&mut m, b, &stranger, "m-stranger", json!({})), 200);
    let p = peer(2);
    connect(&mut m, b, &p, "P2");
    assert_eq!(post(&mut m, b, &p, "m-broadcast", json!({"metadata": {"type": "broadcast"}})), 200);
    assert!(m.peers[b].spawns.is_empty(), "{:?}", spawned_keys(&m, b));
    assert_eq!(post(&mut m, b, &p, "m-direct", json!({})), 200);
    assert_eq!(spawned_keys(&m, b), ["m-direct"]);
}

#[test]
fn three_messages_with_two_slots_spawn_two_then_the_third_when_one_exits() {
    let (mut m, b) = node(Some(SpawnConfig::default()));
    let senders: Vec<Passport> = (1..=3).map(peer).collect();
    for (n, p) in senders.iter().enumerate() {
        connect(&mut m, b, p, &format!("P{n}"));
    }
    for (n, p) in senders.iter().enumerate() {
        assert_eq!(post(&mut m, b, p, &format!("m{n}"), json!({})), 200);
    }
    assert_eq!(spawned_keys(&m, b), ["m0", "m1"]);
    assert_eq!(refusals(&m, b), ["m2: Concurrency limit reached (2/2)"]);
    // The refused message stays queued.
    assert!(m.command(b, Command::GetMessage { message_id: "m2".into(), consume: false }).is_ok());
    exit_nth(&mut m, b, 0);
    assert_eq!(spawned_keys(&m, b), ["m0", "m1", "m2"]);
    assert_eq!(m.peers[b].node.spawned_agents(), 2);
    assert_eq!(refusals(&m, b).len(), 1, "a retry refused again is not reported again");
}

#[test]
fn sixteen_messages_in_an_hour_spawn_fifteen_and_the_last_when_the_window_moves() {
    let config = SpawnConfig { per_sender_per_hour_max: 100, ..SpawnConfig::default() };
    let mut m = Mesh::new();
    let b = m.add_with("B", true, spawning(config));
    let p = peer(1);
    connect(&mut m, b, &p, "P");
    let start_ms = m.now.mono_ms;
    for n in 0..16 {
        assert_eq!(post(&mut m, b, &p, &format!("m{n}"), json!({})), 200);
        if n < 15 {
            exit_nth(&mut m, b, n);
        }
        m.advance(60_000);
    }
    assert_eq!(m.peers[b].spawns.len(), 15);
    assert_eq!(refusals(&m, b), ["m15: Hourly rate limit reached (15/15)"]);
    // The first start leaves the window one window after it: not a millisecond before.
    let elapsed = m.now.mono_ms - start_ms;
    m.advance(SPAWN_WINDOW_MS - elapsed - 1);
    assert_eq!(m.peers[b].spawns.len(), 15);
    let due = m.peers[b].node.poll_timeout().unwrap();
    m.advance(due - m.now.mono_ms);
    assert_eq!(spawned_keys(&m, b).last().map(String::as_str), Some("m15"));
}

#[test]
fn one_sender_gets_four_an_hour() {
    let (mut m, b) = node(Some(SpawnConfig { concurrent_max: 64, ..SpawnConfig::default() }));
    let p = peer(1);
    connect(&mut m, b, &p, "P");
    for n in 0..5 {
        assert_eq!(post(&mut m, b, &p, &format!("m{n}"), json!({})), 200);
    }
    assert_eq!(m.peers[b].spawns.len(), 4);
    assert_eq!(refusals(&m, b), ["m4: Per-sender hourly limit reached (4/4)"]);
}

#[test]
fn a_consumed_message_no_longer_waits() {
    let (mut m, b) = node(Some(SpawnConfig { concurrent_max: 1, ..SpawnConfig::default() }));
    let p = peer(1);
    connect(&mut m, b, &p, "P");
    assert_eq!(post(&mut m, b, &p, "m0", json!({})), 200);
    assert_eq!(post(&mut m, b, &p, "m1", json!({})), 200);
    // The user read m1 meanwhile: nobody needs an agent for it.
    m.command(b, Command::GetMessage { message_id: "m1".into(), consume: true }).unwrap();
    exit_nth(&mut m, b, 0);
    assert_eq!(spawned_keys(&m, b), ["m0"]);
    assert_eq!(m.peers[b].node.spawned_agents(), 0);
}

#[test]
fn a_failed_or_timed_out_agent_is_reported_and_frees_its_slot() {
    let (mut m, b) = node(Some(SpawnConfig { concurrent_max: 1, ..SpawnConfig::default() }));
    let p = peer(1);
    connect(&mut m, b, &p, "P");
    assert_eq!(post(&mut m, b, &p, "m0", json!({})), 200);
    assert_eq!(post(&mut m, b, &p, "m1", json!({})), 200);
    let id = m.peers[b].spawns[0].spawn_id;
    let reason = "command not found: claude (DARKMATTER_CLIENT=claude-code)".to_owned();
    m.spawn_exit(b, id, SpawnOutcome::FailedToStart { reason: reason.clone() });
    assert!(m.peers[b].events.contains(&Event::SpawnFailed { key: "m0".into(), reason }));
    assert_eq!(spawned_keys(&m, b), ["m0", "m1"]);
    // A second report of the same child changes nothing.
    m.spawn_exit(b, id, SpawnOutcome::TimedOut);
    assert_eq!(m.peers[b].node.spawned_agents(), 1);
    let id = m.peers[b].spawns[1].spawn_id;
    m.spawn_exit(b, id, SpawnOutcome::TimedOut);
    assert!(m.peers[b].events.iter().any(|e| matches!(e, Event::SpawnFailed { key, .. } if key == "m1")));
    assert_eq!(m.peers[b].node.spawned_agents(), 0);
}

#[test]
fn only_a_proven_pending_request_wakes_an_agent_once_an_hour_per_requester() {
    let (mut m, b) = node(Some(SpawnConfig::default()));
    let p = peer(1);
    // Unproven: no agent.
    let unproven = request(&mut m, b, &p, "Mallory", public_ip(), false);
    assert!(m.peers[b].spawns.is_empty());
    // Proven (the same request, its challenge answered): exactly one.
    let proven = request(&mut m, b, &p, "Mallory", public_ip(), true);
    assert_eq!(unproven, proven);
    assert_eq!(spawned_keys(&m, b), std::slice::from_ref(&proven));
    let s = m.peers[b].spawns[0].clone();
    assert_eq!(
        s.trigger,
        SpawnTrigger::ConnectionRequest { request_id: proven.clone(), bio: "I sell widgets.".into() }
    );
    assert_eq!(s.sender_name, "Mallory");
    exit_nth(&mut m, b, 0);
    // Rejected, asked again and proven again within the hour: no second agent.
    m.command(b, Command::Reject { request_id: proven }).unwrap();
    m.advance(60_000);
    request(&mut m, b, &p, "Mallory", public_ip(), true);
    assert_eq!(m.peers[b].spawns.len(), 1);
    assert!(refusals(&m, b).is_empty(), "not a limit: nothing to report");
    // After the quiet period a new request may wake one.
    let pending = m.command(b, Command::ListPending).unwrap();
    let again = pending["requests"][0]["request_id"].as_str().unwrap().to_owned();
    m.command(b, Command::Reject { request_id: again }).unwrap();
    m.advance(SPAWN_REQUESTER_QUIET_MS);
    request(&mut m, b, &p, "Mallory", public_ip(), true);
    assert_eq!(m.peers[b].spawns.len(), 2);
}

#[test]
fn a_proven_request_wakes_an_agent_only_once_our_peers_have_answered() {
    let (mut m, b) = node(Some(SpawnConfig::default()));
    let v = m.add("V", true);
    let url = m.peers[b].url.clone();
    m.command(v, Command::Connect { target_url: url }).unwrap();
    m.command(b, Command::SetImpression { agent_id: m.id(v), score: 0.8, note: None }).unwrap();
    let p = peer(9);
    m.command(v, Command::SetImpression { agent_id: p.agent_id().as_str().to_owned(), score: 0.6, note: None })
        .unwrap();
    // V is slow to answer B's trust query: the proven request wakes nobody yet.
    m.slow.push(v);
    let proven = request(&mut m, b, &p, "Pat", public_ip(), true);
    assert!(spawned_keys(&m, b).is_empty(), "an agent woke before our peers answered");
    // V's answer arrives: now exactly one agent wakes, and it is told the trust V's report moved.
    m.release();
    assert_eq!(spawned_keys(&m, b), vec![proven]);
    let trust = m.peers[b].spawns[0].sender_trust;
    assert!(trust > 0.0, "the prompt's trust carries V's opinion, got {trust}");
}

#[test]
fn an_auto_accepted_request_wakes_no_agent() {
    let (mut m, b) = node(Some(SpawnConfig::default()));
    connect(&mut m, b, &peer(1), "P");
    assert!(m.peers[b].spawns.is_empty());
}

#[test]
fn at_start_up_messages_queued_at_most_thirty_minutes_ago_spawn_again() {
    let (mut m, b) = node(Some(SpawnConfig { concurrent_max: 64, per_sender_per_hour_max: 64, per_hour_max: 64 }));
    let p = peer(1);
    connect(&mut m, b, &p, "P");
    assert_eq!(post(&mut m, b, &p, "old", json!({})), 200);
    m.advance(60_000);
    assert_eq!(post(&mut m, b, &p, "edge", json!({})), 200);
    m.advance(SPAWN_RESPAWN_AGE_S_MAX * 1_000);
    assert_eq!(post(&mut m, b, &p, "fresh", json!({})), 200);
    let stranger = peer(2);
    assert_eq!(post(&mut m, b, &stranger, "stranger", json!({})), 200);
    m.peers[b].spawns.clear();
    m.restart(b);
    // "edge" arrived exactly SPAWN_RESPAWN_AGE_S_MAX ago; "old" a minute before it.
    assert_eq!(spawned_keys(&m, b), ["edge", "fresh"]);
}

/// A GET of `path` on node `i`, as a peer sees it: its JSON answer.
fn get(m: &mut Mesh, i: usize, path: &str) -> Value {
    let (status, body) = m.inject(i, Method::Get, path, b"", IpAddr::from([192, 168, 1, 60]));
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn switched_off_spawning_starts_nothing_and_switching_on_wakes_the_queued_messages() {
    let (mut m, b) = node(Some(SpawnConfig::default()));
    let p = peer(1);
    connect(&mut m, b, &p, "P1");
    let off = m.command(b, Command::SetSpawning { enabled: false }).unwrap();
    assert_eq!((off["spawning"].clone(), off["started"].clone()), (json!(false), json!(0)));
    assert!(!m.peers[b].node.spawning_enabled());
    assert_eq!(post(&mut m, b, &p, "m-while-off", json!({})), 200);
    assert!(m.peers[b].spawns.is_empty(), "off: the message waits in the inbox");
    // Still a spawning node: its status says how many agents run.
    assert_eq!(m.command(b, Command::Status).unwrap()["spawned_agents"], 0);
    let on = m.command(b, Command::SetSpawning { enabled: true }).unwrap();
    assert_eq!((on["spawning"].clone(), on["started"].clone()), (json!(true), json!(1)));
    assert_eq!(spawned_keys(&m, b), ["m-while-off"]);
}

#[test]
fn a_node_without_spawn_settings_cannot_be_switched_on() {
    let (mut m, b) = node(None);
    assert!(m.command(b, Command::SetSpawning { enabled: true }).is_err());
    assert!(!m.peers[b].node.spawning_enabled());
}
