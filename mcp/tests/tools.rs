//! Each tool's arguments become the right node command (checked against a fake node), and node
//! errors come back as tool errors with their kind.

#[path = "common/fake.rs"]
mod fake;

use darkmatter_mcp::tools::{call, ToolOutput};
use fake::Fake;
use proto_core::{Command, ForwardArgs, SendArgs, ShardArgs, Targets};
use serde_json::{json, Map, Value};

fn run(fake: &Fake, tool: &str, args: Value) -> ToolOutput {
    let Value::Object(args) = args else { panic!("args must be an object") };
    smol::block_on(call(fake, tool, args))
}

fn commands() -> Vec<(&'static str, Value, Command)> {
    let s = |x: &str| x.to_owned();
    vec![
        (
            "darkmatter_connection",
            json!({"action": "request", "target_url": " http://10.0.0.2:8100 "}),
            Command::Connect { target_url: s("http://10.0.0.2:8100") },
        ),
        (
            "darkmatter_connection",
            json!({"action": "accept", "request_id": "req-1"}),
            Command::Accept { request_id: s("req-1") },
        ),
        (
            "darkmatter_connection",
            json!({"action": "reject", "request_id": "req-1", "target_url": null}),
            Command::Reject { request_id: s("req-1") },
        ),
        (
            "darkmatter_connection",
            json!({"action": "disconnect", "agent_id": "ab"}),
            Command::Disconnect { agent_id: s("ab") },
        ),
        ("darkmatter_list_connections", json!({}), Command::ListConnections),
        ("darkmatter_list_pending_requests", json!({}), Command::ListPending),
        (
            "darkmatter_send_message",
            json!({"content": "hi", "target_agent_id": "a", "target_agent_ids": ["b"], "metadata": {"k": 1}, "in_reply_to": "msg-1", "hops_remaining": 3}),
            Command::Send(SendArgs {
                content: s("hi"),
                targets: Targets::Agents(vec![s("a"), s("b")]),
                metadata: json!({"k": 1}).as_object().unwrap().clone(),
                in_reply_to: Some(s("msg-1")),
                hops_remaining: 3,
            }),
        ),
        (
            "darkmatter_send_message",
            json!({"content": "all", "broadcast": true, "trust_min": 0.5}),
            Command::Send(SendArgs {
                content: s("all"),
                targets: Targets::Broadcast { trust_min: 0.5 },
                metadata: Map::new(),
                in_reply_to: None,
                hops_remaining: 10,
            }),
        ),
        (
            "darkmatter_send_message",
            json!({"message_id": "msg-9", "target_agent_ids": ["c"], "note": "c knows"}),
            Command::Forward(ForwardArgs { message_id: s("msg-9"), targets: vec![s("c")], note: Some(s("c knows")) }),
        ),
        ("darkmatter_list_inbox", json!({}), Command::ListInbox),
        (
            "darkmatter_get_message",
            json!({"message_id": "msg-1"}),
            Command::GetMessage { message_id: s("msg-1"), consume: false },
        ),
        (
            "darkmatter_get_message",
            json!({"message_id": "msg-1", "consume": true}),
            Command::GetMessage { message_id: s("msg-1"), consume: true },
        ),
        ("darkmatter_list_messages", json!({}), Command::ListSent),
        ("darkmatter_get_sent_message", json!({"message_id": "msg-1"}), Command::GetSent { message_id: s("msg-1") }),
        ("darkmatter_expire_message", json!({"message_id": "msg-1"}), Command::ExpireSent { message_id: s("msg-1") }),
        ("darkmatter_get_identity", json!({}), Command::GetIdentity),
        ("darkmatter_update_bio", json!({"bio": " new bio "}), Command::UpdateBio { bio: s("new bio") }),
        (
            "darkmatter_set_status",
            json!({"status": "inactive", "duration_minutes": 30}),
            Command::SetStatus { active: false, duration_minutes: Some(30) },
        ),
        (
            "darkmatter_set_status",
            json!({"status": "active"}),
            Command::SetStatus { active: true, duration_minutes: None },
        ),
        ("darkmatter_status", json!({}), Command::Status),
        ("darkmatter_network_info", json!({}), Command::NetworkInfo),
        (
            "darkmatter_set_impression",
            json!({"agent_id": "a", "score": -0.5, "note": "spam"}),
            Command::SetImpression { agent_id: s("a"), score: -0.5, note: Some(s("spam")) },
        ),
        ("darkmatter_get_impression", json!({"agent_id": "a"}), Command::GetImpression { agent_id: s("a") }),
        (
            "darkmatter_set_rate_limit",
            json!({"agent_id": "a", "limit": -1}),
            Command::SetRateLimit { agent_id: Some(s("a")), limit: -1 },
        ),
        ("darkmatter_set_rate_limit", json!({"limit": 0}), Command::SetRateLimit { agent_id: None, limit: 0 }),
        (
            "darkmatter_create_shard",
            json!({"content": "c", "tags": ["a", "b:c"], "summary": "s"}),
            Command::CreateShard(ShardArgs {
                content: s("c"),
                tags: vec![s("a"), s("b:c")],
                trust_threshold: 0.0,
                summary: Some(s("s")),
            }),
        ),
        ("darkmatter_view_shards", json!({}), Command::ViewShards { tags: vec![], author: None }),
        (
            "darkmatter_view_shards",
            json!({"tags": ["t"], "author": " ab "}),
            Command::ViewShards { tags: vec![s("t")], author: Some(s("ab")) },
        ),
    ]
}

#[test]
fn arguments_become_node_commands() {
    for (tool, args, want) in commands() {
        let fake = Fake::new();
        let out = run(&fake, tool, args.clone());
        assert!(!out.is_error, "{tool}({args}): {out:?}");
        assert_eq!(out.value, json!({"ok": true}));
        assert_eq!(fake.last(), Some(want), "{tool}({args})");
    }
}

#[test]
fn wait_converts_seconds_to_milliseconds_with_a_default() {
    let fake = Fake::new();
    fake.release();
    fake.release();
    run(&fake, "darkmatter_wait_for_response", json!({"message_id": "m", "timeout_seconds": 2.5}));
    assert_eq!(fake.last(), Some(Command::WaitForResponse { message_id: "m".into(), timeout_ms: 2500 }));
    run(&fake, "darkmatter_wait_for_response", json!({"message_id": "m"}));
    assert_eq!(fake.last(), Some(Command::WaitForResponse { message_id: "m".into(), timeout_ms: 60_000 }));
}

#[test]
fn discovery_goes_to_the_runtime() {
    let fake = Fake::new();
    assert_eq!(run(&fake, "darkmatter_discover_local", json!({})).value, json!({"discovered": []}));
    assert_eq!(
        run(&fake, "darkmatter_discover_domain", json!({"domain": "Example.COM."})).value,
        json!({"found": true, "domain": "example.com"})
    );
    assert_eq!(
        run(&fake, "darkmatter_discover_domain", json!({"domain": "localhost:8101"})).value["domain"],
        "localhost:8101"
    );
    assert!(fake.log.lock().unwrap().is_empty(), "no node command");
}

#[test]
fn bad_arguments_never_reach_the_node() {
    let bad = [
        ("darkmatter_connection", json!({"action": "disconnect"})),
        ("darkmatter_connection", json!({"action": "request", "target_url": "  "})),
        ("darkmatter_connection", json!({"action": "accept", "request_id": "r", "agent_id": "a"})),
        ("darkmatter_send_message", json!({})),
        ("darkmatter_send_message", json!({"content": "x", "broadcast": true, "target_agent_id": "a"})),
        ("darkmatter_send_message", json!({"content": "x", "target_agent_id": "a", "trust_min": 0.1})),
        ("darkmatter_send_message", json!({"content": "x", "target_agent_id": "a", "note": "n"})),
        ("darkmatter_send_message", json!({"message_id": "m"})),
        ("darkmatter_send_message", json!({"message_id": "m", "target_agent_id": "a", "hops_remaining": 2})),
        ("darkmatter_send_message", json!({"content": "x", "target_agent_id": "a", "hops_remaining": -1})),
        ("darkmatter_send_message", json!({"content": "x", "target_agent_id": "a\nb"})),
        ("darkmatter_get_message", json!({"message_id": ""})),
        ("darkmatter_wait_for_response", json!({"message_id": "m", "timeout_seconds": "soon"})),
        ("darkmatter_set_status", json!({"status": "inactive", "duration_minutes": 1441})),
        ("darkmatter_set_impression", json!({"agent_id": "a", "score": -1.01})),
        ("darkmatter_set_impression", json!({"agent_id": "a", "score": 0, "note": "n".repeat(1001)})),
        ("darkmatter_discover_domain", json!({"domain": "bad_host"})),
        ("darkmatter_discover_domain", json!({"domain": "example.com:0"})),
        ("darkmatter_create_shard", json!({"content": "", "tags": ["t"]})),
        ("darkmatter_create_shard", json!({"content": "c", "tags": ["t"], "trust_threshold": -0.1})),
        ("darkmatter_set_rate_limit", json!({})),
        ("darkmatter_no_such_tool", json!({})),
    ];
    for (tool, args) in bad {
        let fake = Fake::new();
        let out = run(&fake, tool, args.clone());
        assert!(out.is_error, "{tool}({args}) should fail: {out:?}");
        assert!(out.value["error"].as_str().is_some_and(|e| !e.is_empty()), "{tool}({args}): {out:?}");
        assert!(fake.log.lock().unwrap().is_empty(), "{tool}({args}) reached the node");
    }
}

#[test]
fn node_errors_keep_their_text_and_kind() {
    let fake = Fake::new();
    let out = run(&fake, "darkmatter_get_message", json!({"message_id": "missing"}));
    assert!(out.is_error);
    assert_eq!(out.value, json!({"error": "No inbox message with ID 'missing'", "kind": "not_found"}));
}
