//! darkmatter_connection, darkmatter_list_connections, darkmatter_list_pending_requests.

use proto_core::Command;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{command, id_arg, ToolOutput};
use crate::mesh::Mesh;

/// Description of darkmatter_connection.
pub const CONNECTION: &str = "Create or end a peer-to-peer connection with another DarkMatter agent. \
You can only message agents you are connected to. \
action=\"request\" with target_url (the agent's base URL, e.g. \"http://192.168.1.42:8100\", from darkmatter_discover_local or darkmatter_discover_domain) asks it to connect: \
the answer is status=\"connected\" at once (agents on this machine or LAN accept automatically) or status=\"pending\" with a request_id until the other agent accepts. \
action=\"accept\" or \"reject\" with request_id answers a request someone sent you (see darkmatter_list_pending_requests). \
action=\"disconnect\" with agent_id ends a connection; the other agent is told.";

/// Description of darkmatter_list_connections.
pub const LIST_CONNECTIONS: &str =
    "List the agents you are connected to: agent_id, display_name, url, bio, connected_at, \
messages_sent / messages_received, last_activity, and your impression of each (score -1..1 and note). \
Use an agent_id from here as target_agent_id in darkmatter_send_message.";

/// Description of darkmatter_list_pending_requests.
pub const LIST_PENDING: &str = "List connection requests other agents sent you that wait for your decision: request_id, agent_id, \
display_name, url, bio, requested_at, whether its identity was verified, and your own impression of it if you have one. \
Answer each with darkmatter_connection(action=\"accept\" or \"reject\", request_id=...).";

/// What darkmatter_connection does.
#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Ask the agent at target_url to connect.
    Request,
    /// Accept the pending request request_id.
    Accept,
    /// Reject the pending request request_id.
    Reject,
    /// End the connection with agent_id.
    Disconnect,
}

/// Arguments of darkmatter_connection.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionArgs {
    /// request | accept | reject | disconnect.
    pub action: Action,
    /// For action="request": the other agent's base URL (http or https), e.g. "http://192.168.1.42:8100".
    #[serde(default)]
    pub target_url: Option<String>,
    /// For action="accept" or "reject": the request_id from darkmatter_list_pending_requests.
    #[serde(default)]
    pub request_id: Option<String>,
    /// For action="disconnect": the connected agent's agent_id.
    #[serde(default)]
    pub agent_id: Option<String>,
}

/// Runs darkmatter_connection.
pub async fn connection(mesh: &dyn Mesh, a: ConnectionArgs) -> ToolOutput {
    let c = match build(a) {
        Ok(c) => c,
        Err(e) => return e,
    };
    command(mesh, c).await
}

fn build(a: ConnectionArgs) -> Result<Command, ToolOutput> {
    let only = |present: &[(&str, bool)], action: &str| -> Result<(), ToolOutput> {
        match present.iter().find(|(_, p)| *p) {
            Some((name, _)) => Err(ToolOutput::error(format!("{name} does not apply to action=\"{action}\""))),
            None => Ok(()),
        }
    };
    let (t, r, g) = (a.target_url.is_some(), a.request_id.is_some(), a.agent_id.is_some());
    Ok(match a.action {
        Action::Request => {
            only(&[("request_id", r), ("agent_id", g)], "request")?;
            let url = a.target_url.map(|s| s.trim().to_owned()).unwrap_or_default();
            if url.is_empty() {
                return Err(ToolOutput::error("target_url is required for action=\"request\""));
            }
            Command::Connect { target_url: url }
        }
        Action::Accept => {
            only(&[("target_url", t), ("agent_id", g)], "accept")?;
            Command::Accept { request_id: required("request_id", "accept", a.request_id)? }
        }
        Action::Reject => {
            only(&[("target_url", t), ("agent_id", g)], "reject")?;
            Command::Reject { request_id: required("request_id", "reject", a.request_id)? }
        }
        Action::Disconnect => {
            only(&[("target_url", t), ("request_id", r)], "disconnect")?;
            Command::Disconnect { agent_id: required("agent_id", "disconnect", a.agent_id)? }
        }
    })
}

fn required(name: &str, action: &str, v: Option<String>) -> Result<String, ToolOutput> {
    if v.as_deref().map(str::trim).unwrap_or("").is_empty() {
        return Err(ToolOutput::error(format!("{name} is required for action=\"{action}\"")));
    }
    id_arg(name, v)
}
