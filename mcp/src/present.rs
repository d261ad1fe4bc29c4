//! Presentation: what the tools add to the node's typed results for a model to read. The core
//! answers data ([`proto_core::CommandOutput`]); the advice naming darkmatter_* tools, the previews
//! of long texts and other prose live here, next to the tools they name.
//!
//! Each function takes a result as the node gave it (its JSON) and returns what the tool shows. A
//! value that is not the expected shape (a test double's answer) passes through unchanged.

use proto_core::identity::truncate_chars;
use proto_core::output::{Activity, PendingView, StatusReport};
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

/// darkmatter_list_pending_requests: per request, one line saying how the peers' opinions combine:
/// the combined score, who vouched and how much each counted, and when the policy may decide.
pub fn pending_list(mut v: Value) -> Value {
    let Some(requests) = v.get_mut("requests").and_then(Value::as_array_mut) else { return v };
    for r in requests {
        let Ok(p) = serde_json::from_value::<PendingView>(r.clone()) else { continue };
        r["trust_summary"] = Value::from(trust_summary(&p));
    }
    v
}

fn trust_summary(p: &PendingView) -> String {
    let Some(t) = &p.peer_trust else { return "Peers not asked yet (the requester's key is not proven).".to_owned() };
    let combined = match t.score {
        Some(s) => format!("Combined peer score {s:.2} (weight {:.2})", t.weight),
        None => "No combined score (no opinion with weight)".to_owned(),
    };
    let mut parts = Vec::new();
    for o in &t.opinions {
        let name = o.display_name.clone().unwrap_or_else(|| truncate_chars(&o.agent_id, 12));
        let share = if t.weight > 0.0 { 100.0 * o.counted / t.weight } else { 0.0 };
        let mut part = format!("{name} says {:.2}, counted {:.2} ({share:.0}%)", o.their_score, o.counted);
        if o.counted == 0.0 && o.vouched_for as usize > proto_core::limits::TRUST_VOUCHES_PER_PEER_MAX {
            part += &format!(", not counted: spoke for {} requesters lately", o.vouched_for);
        }
        parts.push(part);
    }
    let opinions = if parts.is_empty() { "no opinions".to_owned() } else { parts.join("; ") };
    let when = match &p.policy_decides_from {
        Some(at) => format!(" The policy decides from {at} at the earliest; you can accept or reject now."),
        None => String::new(),
    };
    format!("{combined} from {} of {} peers asked: {opinions}.{when}", t.answered, t.asked)
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

    #[test]
    fn a_pending_request_says_who_vouched_and_how_much_each_counted() {
        let id = |seed| Passport::from_seed([seed; 32]).agent_id().to_string();
        let opinion = |seed, name, score, trust, counted, vouched_for| {
            json!({"agent_id": id(seed), "display_name": name, "their_score": score,
                "your_trust_in_them": trust, "counted": counted, "vouched_for": vouched_for})
        };
        let v = json!({"total": 1, "requests": [{
            "request_id": "r1", "agent_id": id(1), "display_name": "c", "url": "http://c", "bio": "",
            "requested_at": "t0", "identity_verified": true, "proven_by": "signed request", "our_impression": null,
            "peer_trust": {"asked": 3, "answered": 3, "complete": true, "score": 0.9, "weight": 0.8,
                "opinions": [opinion(2, "bob", 0.9, 0.8, 0.8, 1), opinion(4, "sy", 1.0, 0.6, 0.0, 7)]},
            "policy_decides_from": "t1"}]});
        let out = pending_list(v);
        assert_eq!(
            out["requests"][0]["trust_summary"],
            "Combined peer score 0.90 (weight 0.80) from 3 of 3 peers asked: bob says 0.90, counted 0.80 (100%); \
             sy says 1.00, counted 0.00 (0%), not counted: spoke for 7 requesters lately. \
             The policy decides from t1 at the earliest; you can accept or reject now."
        );
        assert_eq!(out["requests"][0]["request_id"], "r1", "the typed fields stay");
        // Not the expected shape: unchanged.
        assert_eq!(pending_list(json!({"requests": [1]})), json!({"requests": [1]}));
    }
}
