//! darkmatter_send_message, darkmatter_list_inbox, darkmatter_get_message, darkmatter_list_messages,
//! darkmatter_get_sent_message, darkmatter_expire_message, darkmatter_wait_for_response.

use proto_core::limits::{HOPS_MAX, WAIT_TIMEOUT_S_MAX};
use proto_core::{Command, ForwardArgs, SendArgs, Targets};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{command, id_arg, ToolOutput};
use crate::mesh::Mesh;

/// Description of darkmatter_send_message.
pub const SEND: &str = "Send a message to agents you are connected to, or forward one you received. \
New message: give content plus target_agent_id (one agent), target_agent_ids (several), or broadcast=true (every connection whose impression score is at least trust_min, default 0). \
To answer a message from your inbox, set in_reply_to to its message_id and target_agent_id to its from_agent_id: the sender's darkmatter_wait_for_response then returns your reply. \
Forward: give message_id of an inbox message (no content) plus target_agent_id(s), and optionally a note for the original sender; the message keeps its id and loses one hop (hops_remaining, default 10, max 10). \
Answers message_id (keep it for darkmatter_wait_for_response), routed_to (agents that accepted it) and failed (agent_id and error for each refusal).";

/// Description of darkmatter_list_inbox.
pub const LIST_INBOX: &str = "List messages other agents sent you, oldest first: message_id, from_agent_id, a content preview (200 characters), \
received_at, verified (signature checked), hops_remaining (how far it may still be forwarded), in_reply_to (set when it answers one of your messages). \
Read one in full with darkmatter_get_message.";

/// Description of darkmatter_get_message.
pub const GET_MESSAGE: &str = "Read one inbox message in full: content, sender, metadata, hops_remaining, in_reply_to. \
consume=true also removes it from the inbox (do that once you have handled it). \
Reply with darkmatter_send_message(target_agent_id=<from_agent_id>, in_reply_to=<message_id>, content=...), or forward it with darkmatter_send_message(message_id=..., target_agent_id=...).";

/// Description of darkmatter_list_messages.
pub const LIST_SENT: &str =
    "List the messages you sent (newest first) with their status (active, responded, expired), \
who they were routed to, and how many responses each has. darkmatter_get_sent_message shows the responses.";

/// Description of darkmatter_get_sent_message.
pub const GET_SENT: &str =
    "Show one message you sent in full, with responses[] (agent_id, content, received_at) and the delivery updates \
(received, forwarded with notes, expired) that agents along its path reported.";

/// Description of darkmatter_expire_message.
pub const EXPIRE: &str = "Mark a message you sent as expired: agents that still hold it stop forwarding it, and any darkmatter_wait_for_response on it returns. \
Use it when you no longer need answers.";

/// Description of darkmatter_wait_for_response.
pub const WAIT: &str = "Wait until an agent answers a message you sent (a reply with in_reply_to equal to its message_id, or a response posted to its webhook), \
then return responses[]. Returns at once if answers already arrived. On timeout it returns timed_out=true with whatever arrived. \
Other tools keep working while you wait. timeout_seconds defaults to 60 (max 3600).";

/// Arguments of darkmatter_send_message.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendArgsIn {
    /// The text to send (1..65536 characters). Leave out when forwarding with message_id.
    #[serde(default)]
    pub content: Option<String>,
    /// One connected agent to send to.
    #[serde(default)]
    pub target_agent_id: Option<String>,
    /// Several connected agents to send to.
    #[serde(default)]
    pub target_agent_ids: Option<Vec<String>>,
    /// Send to every connected agent whose impression score is at least trust_min.
    #[serde(default)]
    pub broadcast: Option<bool>,
    /// With broadcast=true: minimum impression score, -1..1 (default 0; agents you have not scored count as 0).
    #[serde(default)]
    pub trust_min: Option<f64>,
    /// Free-form JSON object sent along (at most 8 KB).
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    /// The message_id of the inbox message this answers.
    #[serde(default)]
    pub in_reply_to: Option<String>,
    /// Forward this inbox message instead of sending new content.
    #[serde(default)]
    pub message_id: Option<String>,
    /// How many more times the message may be forwarded, 0..10 (default 10). New messages only.
    #[serde(default)]
    pub hops_remaining: Option<u32>,
    /// When forwarding: a note for the original sender (at most 1000 characters).
    #[serde(default)]
    pub note: Option<String>,
}

/// Arguments of the tools that name one message.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageIdArgs {
    /// The message_id.
    pub message_id: String,
}

/// Arguments of darkmatter_get_message.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetMessageArgs {
    /// The inbox message's message_id.
    pub message_id: String,
    /// Remove it from the inbox after reading (default false).
    #[serde(default)]
    pub consume: Option<bool>,
}

/// Arguments of darkmatter_wait_for_response.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitArgs {
    /// The message_id darkmatter_send_message returned.
    pub message_id: String,
    /// How long to wait at most, in seconds (default 60, max 3600).
    #[serde(default)]
    pub timeout_seconds: Option<f64>,
}

/// Default wait when `timeout_seconds` is left out.
pub const WAIT_TIMEOUT_S_DEFAULT: f64 = 60.0;

/// Runs darkmatter_send_message.
pub async fn send(mesh: &dyn Mesh, a: SendArgsIn) -> ToolOutput {
    match build_send(a) {
        Ok(c) => command(mesh, c).await,
        Err(e) => e,
    }
}

fn targets_of(a: &mut SendArgsIn) -> Result<Vec<String>, ToolOutput> {
    let mut ids: Vec<String> = Vec::new();
    if let Some(one) = a.target_agent_id.take() {
        ids.push(id_arg("target_agent_id", Some(one))?);
    }
    for id in a.target_agent_ids.take().unwrap_or_default() {
        ids.push(id_arg("target_agent_ids[]", Some(id))?);
    }
    Ok(ids)
}

/// The command for a send or forward, or the reason the arguments do not make one.
pub fn build_send(mut a: SendArgsIn) -> Result<Command, ToolOutput> {
    let targets = targets_of(&mut a)?;
    let broadcast = a.broadcast.unwrap_or(false);
    match (a.content.take(), a.message_id.take()) {
        (Some(_), Some(_)) => {
            Err(ToolOutput::error("Give either content (a new message) or message_id (a forward), not both"))
        }
        (None, None) => Err(ToolOutput::error("content is required (or message_id to forward an inbox message)")),
        (None, Some(id)) => {
            for (name, given) in [
                ("broadcast", broadcast),
                ("trust_min", a.trust_min.is_some()),
                ("metadata", a.metadata.is_some()),
                ("in_reply_to", a.in_reply_to.is_some()),
                ("hops_remaining", a.hops_remaining.is_some()),
            ] {
                if given {
                    return Err(ToolOutput::error(format!("{name} does not apply when forwarding (message_id)")));
                }
            }
            if targets.is_empty() {
                return Err(ToolOutput::error("Forwarding needs target_agent_id or target_agent_ids"));
            }
            Ok(Command::Forward(ForwardArgs { message_id: id_arg("message_id", Some(id))?, targets, note: a.note }))
        }
        (Some(content), None) => {
            if a.note.is_some() {
                return Err(ToolOutput::error("note applies only when forwarding (message_id)"));
            }
            let targets = match (broadcast, targets.is_empty()) {
                (true, false) => {
                    return Err(ToolOutput::error("Give either broadcast=true or target agents, not both"))
                }
                (true, true) => Targets::Broadcast { trust_min: trust_min(a.trust_min)? },
                (false, true) => {
                    return Err(ToolOutput::error("Give target_agent_id, target_agent_ids or broadcast=true"))
                }
                (false, false) if a.trust_min.is_some() => {
                    return Err(ToolOutput::error("trust_min applies only with broadcast=true"))
                }
                (false, false) => Targets::Agents(targets),
            };
            let hops = a.hops_remaining.unwrap_or(HOPS_MAX);
            if hops > HOPS_MAX {
                return Err(ToolOutput::error(format!("hops_remaining must be 0..={HOPS_MAX}")));
            }
            let in_reply_to = match a.in_reply_to {
                Some(r) => Some(id_arg("in_reply_to", Some(r))?),
                None => None,
            };
            Ok(Command::Send(SendArgs {
                content,
                targets,
                metadata: a.metadata.unwrap_or_default(),
                in_reply_to,
                hops_remaining: hops,
            }))
        }
    }
}

fn trust_min(v: Option<f64>) -> Result<f64, ToolOutput> {
    let t = v.unwrap_or(0.0);
    if !t.is_finite() || !(-1.0..=1.0).contains(&t) {
        return Err(ToolOutput::error("trust_min must be within -1..1"));
    }
    Ok(t)
}

/// Runs darkmatter_get_message.
pub async fn get_message(mesh: &dyn Mesh, a: GetMessageArgs) -> ToolOutput {
    match id_arg("message_id", Some(a.message_id)) {
        Ok(message_id) => command(mesh, Command::GetMessage { message_id, consume: a.consume.unwrap_or(false) }).await,
        Err(e) => e,
    }
}

/// Runs darkmatter_get_sent_message.
pub async fn get_sent(mesh: &dyn Mesh, a: MessageIdArgs) -> ToolOutput {
    match id_arg("message_id", Some(a.message_id)) {
        Ok(message_id) => command(mesh, Command::GetSent { message_id }).await,
        Err(e) => e,
    }
}

/// Runs darkmatter_expire_message.
pub async fn expire(mesh: &dyn Mesh, a: MessageIdArgs) -> ToolOutput {
    match id_arg("message_id", Some(a.message_id)) {
        Ok(message_id) => command(mesh, Command::ExpireSent { message_id }).await,
        Err(e) => e,
    }
}

/// Runs darkmatter_wait_for_response.
pub async fn wait(mesh: &dyn Mesh, a: WaitArgs) -> ToolOutput {
    let message_id = match id_arg("message_id", Some(a.message_id)) {
        Ok(m) => m,
        Err(e) => return e,
    };
    let s = a.timeout_seconds.unwrap_or(WAIT_TIMEOUT_S_DEFAULT);
    if !s.is_finite() || s < 0.0 || s > WAIT_TIMEOUT_S_MAX as f64 {
        return ToolOutput::error(format!("timeout_seconds must be 0..={WAIT_TIMEOUT_S_MAX}"));
    }
    command(mesh, Command::WaitForResponse { message_id, timeout_ms: (s * 1000.0) as u64 }).await
}
