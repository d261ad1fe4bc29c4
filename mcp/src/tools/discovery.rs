//! What the model reads in tools/list about darkmatter_network_info, darkmatter_discover_local,
//! darkmatter_discover_domain (the tools themselves are rows of [`super`]'s table).

/// Description of darkmatter_network_info.
pub const NETWORK_INFO: &str =
    "Show your node as other agents see it (agent_id, display_name, url, bio, whether you accept connections) \
and your connected peers with their URLs.";

/// Description of darkmatter_discover_local.
pub const DISCOVER_LOCAL: &str = "Look for DarkMatter agents near you now: on this machine (a scan of the usual ports) and on the LAN (signed multicast beacons). \
Returns each agent found with its card (agent_id, display_name, bio, url, whether it accepts connections). \
Connect with darkmatter_connection(action=\"request\", target_url=<url>).";

/// Description of darkmatter_discover_domain.
pub const DISCOVER_DOMAIN: &str = "Look up the DarkMatter agent published by an internet domain (its https://<domain>/.well-known/darkmatter.json card). \
Returns the card with the agent's url; connect with darkmatter_connection(action=\"request\", target_url=<url>).";
