//! The MCP surface of the binary, in raw JSON-RPC: initialize, tools/list, every tool's error on bad
//! input, and a clean exit when the client closes stdin.

mod common;

use std::time::Duration;

use common::{free_port, project, Proc};
use darkmatter_mcp::tools::TOOL_NAMES;
use serde_json::{json, Value};

#[test]
fn initialize_declares_tools_logging_and_instructions() {
    let mut p = Proc::start(&project("init"), free_port(), &[]);
    let init = p.initialize();
    assert_eq!(init["serverInfo"]["name"], "darkmatter");
    assert!(init["capabilities"]["tools"].is_object(), "{init}");
    assert!(init["capabilities"]["logging"].is_object(), "{init}");
    let instructions = init["instructions"].as_str().unwrap();
    assert!(
        instructions.contains("darkmatter_status") && instructions.contains("notifications/message"),
        "{instructions}"
    );
    assert!(p.close(Duration::from_secs(10)), "exits when stdin closes");
}

#[test]
fn tools_list_has_exactly_the_28_tools_with_schemas_and_annotations() {
    let mut p = Proc::start(&project("list"), free_port(), &[]);
    p.initialize();
    let r = p.request("tools/list", json!({}));
    let tools = r["result"]["tools"].as_array().unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    let mut want = TOOL_NAMES.to_vec();
    want.sort_unstable();
    assert_eq!(names, want);
    assert_eq!(names.len(), 28);
    for t in tools {
        let name = t["name"].as_str().unwrap();
        assert_eq!(t["inputSchema"]["type"], "object", "{name}");
        assert!(t["description"].as_str().is_some_and(|d| d.len() > 60), "{name} has a real description");
        let a = &t["annotations"];
        for hint in ["readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint"] {
            assert!(a[hint].is_boolean(), "{name} sets {hint}");
        }
        assert!(a["title"].is_string(), "{name} has a title");
    }
    let by_name = |n: &str| tools.iter().find(|t| t["name"] == n).unwrap().clone();
    assert_eq!(by_name("darkmatter_connection")["inputSchema"]["required"], json!(["action"]));
    assert_eq!(by_name("darkmatter_wait_for_response")["inputSchema"]["required"], json!(["message_id"]));
    assert_eq!(by_name("darkmatter_status")["annotations"]["readOnlyHint"], true);
    assert_eq!(by_name("darkmatter_send_message")["annotations"]["openWorldHint"], true);
}

/// One bad call per tool, each a different kind of mistake.
fn bad_calls() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        ("darkmatter_connection", json!({"action": "request"}), "target_url is required"),
        ("darkmatter_connection", json!({"action": "accept", "target_url": "http://x"}), "does not apply"),
        ("darkmatter_connection", json!({"action": "fly"}), "Invalid arguments"),
        ("darkmatter_list_connections", json!({"x": 1}), "unknown field"),
        ("darkmatter_list_pending_requests", json!({"x": 1}), "unknown field"),
        ("darkmatter_send_message", json!({"content": "hi"}), "target_agent_id"),
        ("darkmatter_send_message", json!({"content": "hi", "message_id": "m"}), "not both"),
        ("darkmatter_send_message", json!({"content": "hi", "broadcast": true, "trust_min": 3}), "trust_min"),
        ("darkmatter_send_message", json!({"content": "hi", "target_agent_id": "nobody"}), "Not connected"),
        (
            "darkmatter_send_message",
            json!({"content": "hi", "target_agent_id": "a", "hops_remaining": 11}),
            "hops_remaining",
        ),
        ("darkmatter_list_inbox", json!({"x": 1}), "unknown field"),
        ("darkmatter_get_message", json!({}), "missing field"),
        ("darkmatter_get_message", json!({"message_id": "msg-none"}), "No inbox message"),
        ("darkmatter_list_messages", json!({"x": 1}), "unknown field"),
        ("darkmatter_get_sent_message", json!({"message_id": 5}), "invalid type"),
        ("darkmatter_expire_message", json!({"message_id": "msg-none"}), "No sent message"),
        ("darkmatter_wait_for_response", json!({"message_id": "msg-none", "timeout_seconds": 1}), "No sent message"),
        ("darkmatter_wait_for_response", json!({"message_id": "m", "timeout_seconds": 99999}), "timeout_seconds"),
        ("darkmatter_get_identity", json!({"x": 1}), "unknown field"),
        ("darkmatter_update_bio", json!({"bio": "  "}), "bio"),
        ("darkmatter_update_bio", json!({"bio": "x".repeat(1001)}), "bio must be"),
        ("darkmatter_set_status", json!({"status": "active", "duration_minutes": 5}), "duration_minutes"),
        ("darkmatter_set_status", json!({"status": "inactive", "duration_minutes": 0}), "duration_minutes"),
        ("darkmatter_status", json!({"x": 1}), "unknown field"),
        ("darkmatter_network_info", json!({"x": 1}), "unknown field"),
        ("darkmatter_discover_local", json!({"x": 1}), "unknown field"),
        ("darkmatter_discover_domain", json!({"domain": "https://example.com/x"}), "scheme or path"),
        ("darkmatter_set_impression", json!({"agent_id": "a", "score": 1.5}), "score"),
        ("darkmatter_get_impression", json!({}), "missing field"),
        ("darkmatter_create_shard", json!({"content": "c", "tags": []}), "tags"),
        ("darkmatter_view_shards", json!({"author": 3}), "invalid type"),
        ("darkmatter_set_rate_limit", json!({"limit": -2}), "limit"),
        ("darkmatter_set_rate_limit", json!({"agent_id": "nobody", "limit": 3}), "Not connected"),
        ("darkmatter_wallet_balances", json!({"chain": "bitcoin"}), "No wallet for chain 'bitcoin'"),
        ("darkmatter_wallet_send", json!({"agent_id": "a", "amount": "1", "chain": "eth"}), "not yet implemented"),
        ("darkmatter_get_balance", json!({"mint": "nope"}), "Invalid mint"),
        ("darkmatter_send_sol", json!({"agent_id": "nobody", "amount": "1"}), "Not connected to agent 'nobody'"),
        ("darkmatter_send_token", json!({"agent_id": "nobody", "mint": "USDC"}), "missing field"),
        ("darkmatter_set_superagent", json!({"url": "ftp://x.example"}), "Invalid url"),
    ]
}

#[test]
fn every_tool_answers_bad_input_with_a_clear_error() {
    let mut p = Proc::start(&project("bad"), free_port(), &[]);
    p.initialize();
    let calls = bad_calls();
    let covered: std::collections::BTreeSet<&str> = calls.iter().map(|c| c.0).collect();
    assert_eq!(covered.len(), 28, "every tool has a bad call");
    for (tool, args, needle) in calls {
        let (err, v) = p.call(tool, args.clone());
        assert!(err, "{tool}({args}) should fail: {v}");
        let text = v["error"].as_str().unwrap_or_else(|| panic!("{tool}({args}): no error text: {v}"));
        assert!(text.contains(needle), "{tool}({args}): error {text:?} does not mention {needle:?}");
    }
}

#[test]
fn tools_that_need_no_peer_succeed_alone() {
    let dir = project("alone");
    let mut p = Proc::start(&dir, free_port(), &[("DARKMATTER_DISPLAY_NAME", "solo")]);
    p.initialize();
    let id = p.ok("darkmatter_get_identity", json!({}));
    assert_eq!(id["display_name"], "solo");
    assert_eq!(id["agent_id"], id["public_key_hex"]);
    assert!(std::fs::read_to_string(dir.join(".darkmatter/passport.key")).is_ok(), "identity lives in the project");
    for (tool, args) in [
        ("darkmatter_list_connections", json!({})),
        ("darkmatter_list_pending_requests", json!({})),
        ("darkmatter_list_inbox", json!({})),
        ("darkmatter_list_messages", json!({})),
        ("darkmatter_status", json!({})),
        ("darkmatter_network_info", json!({})),
        ("darkmatter_update_bio", json!({"bio": "Weather questions welcome."})),
        ("darkmatter_set_status", json!({"status": "inactive", "duration_minutes": 1})),
        ("darkmatter_set_status", json!({"status": "active"})),
        ("darkmatter_get_impression", json!({"agent_id": id["agent_id"]})),
        ("darkmatter_set_rate_limit", json!({"limit": -1})),
        ("darkmatter_send_message", json!({"content": "anyone?", "broadcast": true})),
    ] {
        p.ok(tool, args);
    }
    let st = p.ok("darkmatter_status", json!({}));
    assert_eq!(st["identity"]["bio"], "Weather questions welcome.");
    assert!(st["suggested_actions"].as_array().is_some_and(|a| !a.is_empty()), "{st}");
}

#[test]
fn shards_are_created_and_viewed() {
    let mut p = Proc::start(&project("shards"), free_port(), &[]);
    p.initialize();
    let me = p.ok("darkmatter_get_identity", json!({}))["agent_id"].clone();
    let s = p.ok("darkmatter_create_shard", json!({"content": "Rain tomorrow.", "tags": ["weather:forecast"], "trust_threshold": 0.5, "summary": "forecast"}));
    let id = s["shard_id"].as_str().unwrap().to_owned();
    for args in [json!({}), json!({"tags": ["weather"]}), json!({"author": me})] {
        let v = p.ok("darkmatter_view_shards", args.clone());
        assert!(v["shards"].as_array().unwrap().iter().any(|x| x["shard_id"] == id.as_str()), "{args}: {v}");
    }
    let v = p.ok("darkmatter_view_shards", json!({"tags": ["sports"]}));
    assert_eq!(v["shards"], json!([]));
}

#[test]
fn unknown_client_profile_is_refused_at_start() {
    let mut p = Proc::start(&project("client"), free_port(), &[("DARKMATTER_CLIENT", "notepad")]);
    assert!(p.close(Duration::from_secs(10)));
    assert!(!p.child.wait().unwrap().success());
}
