//! darkmatter_network_info, darkmatter_discover_local, darkmatter_discover_domain.

use schemars::JsonSchema;
use serde::Deserialize;

use super::ToolOutput;
use crate::mesh::Mesh;

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

/// Arguments of darkmatter_discover_domain.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DomainArgs {
    /// A domain name such as "example.com" (optionally with :port), no scheme or path.
    pub domain: String,
}

/// Runs darkmatter_discover_local.
pub async fn local(mesh: &dyn Mesh) -> ToolOutput {
    ToolOutput::from_command(mesh.discover_local().await)
}

/// Runs darkmatter_discover_domain.
pub async fn domain(mesh: &dyn Mesh, a: DomainArgs) -> ToolOutput {
    match check_domain(&a.domain) {
        Ok(d) => ToolOutput::from_command(mesh.discover_domain(d).await),
        Err(e) => e,
    }
}

/// A domain (with an optional port), lowercased; refuses schemes, paths and anything not a host name.
pub fn check_domain(raw: &str) -> Result<String, ToolOutput> {
    let d = raw.trim().trim_end_matches('.').to_ascii_lowercase();
    let bad = |why: &str| Err(ToolOutput::error(format!("domain {why}: give a host name like \"example.com\"")));
    if d.is_empty() {
        return bad("is empty");
    }
    if d.contains("://") || d.contains('/') {
        return bad("must not contain a scheme or path");
    }
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d.as_str(), None),
    };
    if let Some(p) = port {
        if p.parse::<u16>().map_or(true, |p| p == 0) {
            return bad("has an invalid port");
        }
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if host.len() > 253 || !host.split('.').all(label_ok) {
        return bad("is not a valid host name");
    }
    Ok(d)
}
