//! Fields no signature covers, on the real socket (SPEC.md §5.8, §5.9, §11.4): a re-posted legacy
//! envelope is not passed off as its author's, made-up webhook updates neither pass for nor crowd out
//! a forwarder's signed one, and an unsigned shard threshold neither shows a shard to less trust nor
//! deletes a held copy.

#[path = "smol_common.rs"]
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{connect, http, wait_for, Node, TempDir};
use proto_core::limits::UNSIGNED_UPDATES_PER_SENT_MAX;
use proto_core::shards::tags_str;
use proto_core::{sign, Command, ForwardArgs, Passport, SendArgs, Targets};
use serde_json::{json, Map, Value};

const WAIT: Duration = Duration::from_secs(10);

/// The passport a node created in its state directory.
fn passport_of(dir: &TempDir) -> Passport {
    let text = std::fs::read_to_string(dir.path().join(".darkmatter").join("passport.key")).expect("passport");
    Passport::from_file_contents(&text).expect("0.5.3's passport format")
}

fn post(addr: SocketAddr, path: &str, body: &Value) -> (u16, Value) {
    http(addr, "POST", path, body.to_string().as_bytes()).expect("an answer")
}

fn inbox_entry(node: &Node, message_id: &str) -> Option<Value> {
    node.cmd(Command::ListInbox)["messages"].as_array().unwrap().iter().find(|m| m["message_id"] == message_id).cloned()
}

fn send(from: &Node, to: &Node, content: &str) -> String {
    let args = SendArgs {
        content: content.into(),
        targets: Targets::Agents(vec![to.id()]),
        metadata: Map::new(),
        in_reply_to: None,
        hops_remaining: 3,
    };
    let r = from.cmd(Command::Send(args));
    assert_eq!(r["routed_to"], json!([to.id()]), "{r}");
    r["message_id"].as_str().unwrap().to_owned()
}

#[test]
fn a_recipient_re_posting_a_message_without_our_signature_does_not_pass_it_off_as_the_authors() {
    let dirs = (TempDir::new("integ-s"), TempDir::new("integ-b"), TempDir::new("integ-d"));
    let s = Node::start(dirs.0.path(), "S", &[]);
    let b = Node::start(dirs.1.path(), "B", &[]);
    let d = Node::start(dirs.2.path(), "D", &[]);
    connect(&s, &b);
    let content = "for B only";
    let mid = send(&s, &b, content);
    let at_b = wait_for("S's message at B", WAIT, || inbox_entry(&b, &mid));
    assert_eq!(at_b["verified"], true, "{at_b}");

    // B holds S's envelope; its legacy signature is the one S sent (Ed25519 is deterministic).
    let stamp = b.cmd(Command::GetMessage { message_id: mid.clone(), consume: false })["timestamp"]
        .as_str()
        .unwrap()
        .to_owned();
    let bytes = sign::legacy_message_bytes(&s.id(), &mid, &stamp, content).unwrap();
    let legacy = sign::sign_hex(&passport_of(&dirs.0), &bytes);
    // B strips the signature that binds the envelope to it and re-posts it to D (not connected to
    // S) with its own webhook and metadata, within the freshness window.
    let re_posted = json!({
        "message_id": mid, "content": content, "timestamp": stamp, "from_agent_id": s.id(),
        "signature_hex": legacy, "webhook": format!("{}/__darkmatter__/webhook/{mid}", b.url()),
        "hops_remaining": 10, "metadata": {"note": "from S, honest"},
    });
    let (status, answer) = post(d.addr(), "/__darkmatter__/message", &re_posted);
    assert_eq!(status, 200, "0.5.3's forwards arrive this way, so it is taken: {answer}");
    let at_d = inbox_entry(&d, &mid).expect("queued at D");
    assert_eq!(at_d["from_agent_id"], s.id().as_str(), "{at_d}");
    assert_eq!(at_d["verified"], false, "shown as S's, verified: {at_d}");
    assert_eq!(at_d["verification"], "legacy-relayable", "{at_d}");
    assert_eq!(at_b["verification"], "signed-for-us", "bound to B by our form: {at_b}");
    let full = d.cmd(Command::GetMessage { message_id: mid.clone(), consume: false });
    assert_eq!((&full["verified"], &full["verification"]), (&json!(false), &json!("legacy-relayable")), "{full}");
}

#[test]
fn made_up_webhook_updates_neither_pass_for_nor_crowd_out_a_forwarders_signed_one() {
    let dirs = (TempDir::new("integ-a"), TempDir::new("integ-b"), TempDir::new("integ-c"));
    let a = Node::start(dirs.0.path(), "A", &[]);
    let b = Node::start(dirs.1.path(), "B", &[]);
    let c = Node::start(dirs.2.path(), "C", &[]);
    connect(&a, &b);
    connect(&b, &c);
    let mid = send(&a, &b, "pass it on");
    wait_for("A's message at B", WAIT, || inbox_entry(&b, &mid));
    let hook = format!("/__darkmatter__/webhook/{mid}");

    // Anyone may post unsigned updates naming anyone, until A stops taking them.
    let (mut taken, mut refusal) = (0, Value::Null);
    for i in 0..100 {
        let made_up =
            json!({"type": "forwarded", "agent_id": format!("made-up-{i}"), "target_agent_id": "x", "note": "lies"});
        let (status, answer) = post(a.addr(), &hook, &made_up);
        if status == 429 {
            refusal = answer;
            break;
        }
        assert_eq!(status, 200, "{answer}");
        taken += 1;
    }

    let forwarded = ForwardArgs { message_id: mid.clone(), targets: vec![c.id()], note: Some("to C".into()) };
    b.cmd(Command::Forward(forwarded));
    let by_b = |u: &&Value| u["type"] == "forwarded" && u["agent_id"] == b.id().as_str();
    let sent = wait_for("B's signed forward at A", WAIT, || {
        let s = a.cmd(Command::GetSent { message_id: mid.clone() });
        s["updates"].as_array().unwrap().iter().any(|u| by_b(&u)).then_some(s)
    });
    assert!(refusal["error"].as_str().unwrap().contains("Unsigned update limit"), "{refusal}");
    assert!(taken < UNSIGNED_UPDATES_PER_SENT_MAX, "B's own `received` shares the unsigned budget: {taken}");
    let updates = sent["updates"].as_array().unwrap();
    assert_eq!(updates.iter().find(by_b).unwrap()["verified"], true, "{sent}");
    let made_up: Vec<&Value> = updates.iter().filter(|u| u["note"] == "lies").collect();
    assert_eq!(made_up.len(), taken, "{sent}");
    assert!(made_up.iter().all(|u| u["verified"] == false), "{sent}");

    // The unauthenticated status page carries the same marks.
    let (status, page) = http(a.addr(), "GET", &hook, b"").expect("an answer");
    assert_eq!(status, 200, "{page}");
    let listed = page["updates"].as_array().unwrap();
    assert_eq!(listed.iter().find(by_b).unwrap()["verified"], true, "{page}");
    assert!(listed.iter().filter(|u| u["note"] == "lies").all(|u| u["verified"] == false), "{page}");
}

/// A test-run agent that speaks only 0.5.3's forms, connected to `d` by 0.5.3's handshake.
fn connect_legacy_author(d: &Node, author: &Passport) {
    let id = author.agent_id().to_string();
    let request = json!({
        "from_agent_id": id, "from_agent_url": "http://127.0.0.1:9", "from_agent_public_key_hex": id,
        "from_agent_display_name": "old-author",
    });
    let (status, pending) = post(d.addr(), "/__darkmatter__/connection_request", &request);
    assert_eq!(status, 200, "{pending}");
    let challenge = pending["challenge_hex"].as_str().expect("a challenge");
    let proof = sign::sign_hex(author, &sign::domain_bytes(sign::DOMAIN_CHALLENGE, &[challenge]).unwrap());
    let answer =
        json!({"challenge_id": pending["challenge_id"], "proof_hex": proof, "agent_id": id, "public_key_hex": id});
    let (status, proven) = post(d.addr(), "/__darkmatter__/connection_proof", &answer);
    assert_eq!((status, &proven["accepted"]), (200, &json!(true)), "{proven}");
}

/// A push in 0.5.3's form of `author`'s signed shard, carrying `threshold`, which 0.5.3 does not
/// sign: the author's own push and a relay's look alike.
fn push_legacy(d: &Node, author: &Passport, shard_id: &str, threshold: f64) -> u16 {
    let id = author.agent_id().to_string();
    let (content, tags) = (format!("knowledge {shard_id}"), vec!["topic".to_owned()]);
    let bytes = sign::domain_bytes(sign::DOMAIN_SHARD, &[shard_id, &id, &content, &tags_str(&tags)]).unwrap();
    let body = json!({
        "shard_id": shard_id, "author_agent_id": id, "content": content, "tags": tags,
        "trust_threshold": threshold, "signature_hex": sign::sign_hex(author, &bytes),
    });
    post(d.addr(), "/__darkmatter__/shard_push", &body).0
}

fn shown(d: &Node) -> Vec<(String, f64)> {
    let view = d.cmd(Command::ViewShards { tags: vec![], author: None });
    let shards = view["shards"].as_array().unwrap().iter();
    shards.map(|s| (s["shard_id"].as_str().unwrap().to_owned(), s["trust_threshold"].as_f64().unwrap())).collect()
}

fn trust(d: &Node, author: &Passport, score: f64) {
    d.cmd(Command::SetImpression { agent_id: author.agent_id().to_string(), score, note: None });
}

#[test]
fn an_unsigned_shard_threshold_neither_shows_a_shard_to_less_trust_nor_deletes_a_held_copy() {
    let dir = TempDir::new("integ-shards");
    let d = Node::start(dir.path(), "D", &[]);
    let author = Passport::from_seed([0x53; 32]);
    connect_legacy_author(&d, &author);
    trust(&d, &author, 0.5);

    // The author's copy is not for D; a relay's copy of it, threshold lowered, must not show it.
    assert_eq!(push_legacy(&d, &author, "shard-high", 0.8), 403);
    assert_eq!(push_legacy(&d, &author, "shard-high", 0.0), 403, "the relay's copy lowers nothing");
    // Relayed first with a lowered threshold: the author's copy still raises it.
    assert_eq!(push_legacy(&d, &author, "shard-first", 0.0), 200);
    assert_eq!(push_legacy(&d, &author, "shard-first", 0.9), 403);
    // Held at the author's threshold: a relay's lower copy changes nothing, a higher one deletes nothing.
    assert_eq!(push_legacy(&d, &author, "shard-low", 0.4), 200);
    assert_eq!(push_legacy(&d, &author, "shard-low", 0.0), 200);
    assert_eq!(push_legacy(&d, &author, "shard-kept", 0.2), 200);
    assert_eq!(push_legacy(&d, &author, "shard-kept", 1.0), 403);
    assert_eq!(shown(&d), vec![("shard-low".to_owned(), 0.4)], "at trust 0.5");

    // Every copy is still held: full trust shows them all, each at the highest threshold seen.
    trust(&d, &author, 1.0);
    let mut all = shown(&d);
    all.sort_by(|x, y| x.0.cmp(&y.0));
    let expected = [("shard-first", 0.9), ("shard-high", 0.8), ("shard-kept", 1.0), ("shard-low", 0.4)];
    assert_eq!(all, expected.map(|(s, t)| (s.to_owned(), t)).to_vec());
}
