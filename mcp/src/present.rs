//! Presentation: what the tools add to the node's typed results for a model to read. The core
//! answers data ([`proto_core::CommandOutput`]); the advice naming darkmatter_* tools, the previews
//! of long texts and other prose live here, next to the tools they name.
//!
//! Each function takes a result as the node gave it (its JSON) and returns what the tool shows. A
//! value that is not the expected shape (a test double's answer) passes through unchanged.

use proto_core::identity::truncate_chars;
use proto_core::output::{Activity, StatusReport};
use serde_json::Value;

/// Characters of a message's content that a list shows; the full text is one get call away.
pub const PREVIEW_CHARS_MAX: usize = 200;

/// What a pending connection request tells the model.
const PENDING_NOTE: &str = "Connection request sent. Waiting for acceptance.";

/// darkmatter_connection: a request left pending says so in words.
pub fn connection(mut v: Value) -> Value {
    if v.is_object() && v["status"] == "pending" {
        v["message"] = Value::from(PENDING_NOTE);
    }
    v
}

/// darkmatter_list_inbox and darkmatter_list_messages: each message's content as a preview.
pub fn message_list(mut v: Value) -> Value {
    if let Some(messages) = v.get_mut("messages") {
        previews(messages);
    }
    v
}

/// darkmatter_status: previews of the new conversations, the LAN summary and the suggested next
/// steps, all computed from the report's own counts.
pub fn status(mut v: Value) -> Value {
    let Ok(report) = serde_json::from_value::<StatusReport>(v.clone()) else { return v };
    previews(&mut v["new_context"]);
    let lan = report.discovered.peers.iter().filter(|d| d.source == "lan").count();
    v["discovered"]["summary"] = Value::from(format!("{lan} agents discovered on LAN"));
    v["suggested_actions"] = Value::from(suggested_actions(&report));
    v
}

/// The conversation entries a status report showed: the newest one's sequence number, to mark
/// them shown through (`None` when there were none).
pub fn shown_through(v: &Value) -> Option<u64> {
    v["new_context"].as_array()?.iter().filter_map(|e| e["seq"].as_u64()).max()
}

/// Replaces the `content` of every object in `list` by its first [`PREVIEW_CHARS_MAX`] characters.
fn previews(list: &mut Value) {
    let Some(items) = list.as_array_mut() else { return };
    for item in items {
        if let Some(text) = item["content"].as_str() {
            item["content"] = Value::from(truncate_chars(text, PREVIEW_CHARS_MAX));
        }
    }
}

/// What the agent could do next, in the order a person would look: own availability, requests
/// waiting, messages, replies awaited, connections, then knowledge to explore.
fn suggested_actions(r: &StatusReport) -> Vec<String> {
    let mut actions = Vec::new();
    if r.identity.status == Activity::Inactive {
        actions.push("You are inactive: peers get 503. darkmatter_set_status(status=\"active\") to return.".to_owned());
    }
    if r.pending_requests > 0 {
        actions.push(format!(
            "{} connection request(s) waiting: darkmatter_list_pending_requests, then accept or reject.",
            r.pending_requests
        ));
    }
    if r.inbox > 0 {
        actions
            .push(format!("{} inbox message(s): darkmatter_list_inbox and reply (in_reply_to) or forward.", r.inbox));
    }
    if let Some(first) = r.awaiting_replies.first() {
        actions.push(format!(
            "{} message(s) awaiting replies: darkmatter_wait_for_response(message_id=\"{first}\").",
            r.awaiting_replies.len()
        ));
    }
    if r.connections.total == 0 {
        actions.push(match r.discovered.total {
            0 => "No connections: darkmatter_discover_local, or darkmatter_connection(action=\"request\", target_url=...).".to_owned(),
            n => format!("No connections, {n} agent(s) discovered: connect with darkmatter_connection(action=\"request\", target_url=...)."),
        });
    }
    if r.memory.peer_shards > 0 {
        actions.push(format!("{} peer shard(s): darkmatter_view_shards to explore.", r.memory.peer_shards));
    }
    actions
}

#[cfg(test)]
mod tests {
    use proto_core::Passport;
    use serde_json::json;

    use super::*;

    fn report(connections: usize, discovered: usize) -> Value {
        let me = Passport::from_seed([3; 32]).agent_id().to_string();
        json!({
            "new_context": [], "memory": {"conversations": 0, "own_shards": 0, "peer_shards": 0},
            "identity": {"agent_id": me, "public_key_hex": me, "display_name": "a", "bio": "", "url": "http://a",
                "status": "active", "created_at": "t"},
            "connections": {"total": connections, "max": 50}, "inbox": 0, "pending_requests": 0,
            "discovered": {"total": discovered, "peers": []}, "awaiting_replies": [],
        })
    }

    #[test]
    fn a_quiet_node_is_told_how_to_find_peers_and_a_connected_one_nothing() {
        let alone = status(report(0, 0));
        assert_eq!(
            alone["suggested_actions"],
            json!(["No connections: darkmatter_discover_local, or darkmatter_connection(action=\"request\", target_url=...)."])
        );
        assert_eq!(alone["discovered"]["summary"], "0 agents discovered on LAN");
        assert_eq!(status(report(1, 0))["suggested_actions"], json!([]));
        assert_eq!(shown_through(&report(1, 0)), None, "nothing shown, nothing to mark");
    }

    #[test]
    fn other_shapes_pass_through() {
        assert_eq!(status(json!({"ok": true})), json!({"ok": true}));
        assert_eq!(message_list(json!(["x"])), json!(["x"]));
        assert_eq!(connection(json!("pending")), json!("pending"));
    }
}
