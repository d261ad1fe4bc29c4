//! What the model reads in tools/list about darkmatter_connection, darkmatter_list_connections,
//! darkmatter_list_pending_requests (the tools themselves are rows of [`super`]'s table).

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
messages_sent / messages_received, last_activity, url_verified (false while its URL is only what other peers agreed on \
after it moved, not yet signed by the agent itself), and your impression of each (score -1..1 and note). \
Use an agent_id from here as target_agent_id in darkmatter_send_message.";

/// Description of darkmatter_list_pending_requests.
pub const LIST_PENDING: &str = "List connection requests other agents sent you that wait for your decision: request_id, agent_id, \
display_name, url, bio, requested_at, whether its identity was verified, and your own impression of it if you have one. \
Answer each with darkmatter_connection(action=\"accept\" or \"reject\", request_id=...).";
