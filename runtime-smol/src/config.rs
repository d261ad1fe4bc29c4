//! Configuration from the `DARKMATTER_*` environment variables of dmagent 0.5.3's README.
//!
//! Every variable is parsed and validated at start-up, including those only later work will use
//! (agent spawning, sandbox, anchors): an invalid value stops start-up with an error that names the
//! variable. An empty value counts as unset, except `DARKMATTER_ANCHOR_NODES`, where empty means "no
//! anchors" as in 0.5.3.
//!
//! Booleans accept `true/false`, `1/0`, `yes/no`, `on/off` (any case); 0.5.3 silently reads any
//! other word as false, we refuse it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use proto_core::limits::{BIO_CHARS_MAX, CONNECTIONS_MAX_CEILING, CONNECTIONS_MAX_DEFAULT, DISPLAY_NAME_CHARS_MAX};
use thiserror::Error;

pub use crate::sandbox::Net as SandboxNet;

/// Default HTTP port (`DARKMATTER_PORT`).
pub const PORT_DEFAULT: u16 = 8100;
/// Default bio of a fresh identity (`DARKMATTER_BIO`), 0.5.3's.
pub const BIO_DEFAULT: &str = "A DarkMatter mesh agent.";
/// Default localhost scan range (`DARKMATTER_DISCOVERY_PORTS`).
pub const DISCOVERY_PORTS_DEFAULT: (u16, u16) = (8100, 8110);
/// Most ports one localhost scan may probe.
pub const DISCOVERY_PORTS_MAX: usize = 1_024;
/// 0.5.3's public anchor, which 0.5.3 contacts by default. Ours is empty by default (a node contacts no
/// third party unless configured); `DARKMATTER_ANCHOR_NODES=https://loseylabs.ai` joins it.
pub const ANCHOR_NODE_PUBLIC: &str = "https://loseylabs.ai";
/// Most anchors that may be configured.
pub const ANCHOR_NODES_MAX: usize = proto_core::limits::RELAY_ANCHORS_MAX;
/// Default `DARKMATTER_AGENT_MAX_CONCURRENT`.
pub const AGENT_MAX_CONCURRENT_DEFAULT: u32 = 2;
/// Largest `DARKMATTER_AGENT_MAX_CONCURRENT` accepted.
pub const AGENT_MAX_CONCURRENT_CEILING: u32 = 64;
/// Default `DARKMATTER_AGENT_MAX_PER_HOUR`.
pub const AGENT_MAX_PER_HOUR_DEFAULT: u32 = 15;
/// Largest `DARKMATTER_AGENT_MAX_PER_HOUR` accepted.
pub const AGENT_MAX_PER_HOUR_CEILING: u32 = 10_000;
/// Default `DARKMATTER_AGENT_TIMEOUT`, in seconds.
pub const AGENT_TIMEOUT_S_DEFAULT: u64 = 300;
/// Largest `DARKMATTER_AGENT_TIMEOUT` accepted, in seconds (one day).
pub const AGENT_TIMEOUT_S_CEILING: u64 = 86_400;
/// Longest `DARKMATTER_AGENT_COMMAND`, `_ARGS` or `_ENV_CLEANUP` value, in bytes.
pub const AGENT_OVERRIDE_BYTES_MAX: usize = 4_096;
/// Most entries in `DARKMATTER_AGENT_ARGS` or `DARKMATTER_AGENT_ENV_CLEANUP`.
pub const AGENT_OVERRIDE_ITEMS_MAX: usize = 64;
/// Name of the state directory under the working directory, as 0.5.3 names it.
pub const STATE_DIR_NAME: &str = ".darkmatter";

/// Why the configuration was refused. The message always names the variable.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A variable holds a value that does not parse or is out of range.
    #[error("{var}={value:?} is invalid: {reason}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// What it held.
        value: String,
        /// What was expected.
        reason: String,
    },
    /// A variable is set but is not valid Unicode.
    #[error("{var} is not valid UTF-8")]
    NotUnicode {
        /// The variable.
        var: &'static str,
    },
    /// The working directory (home of `.darkmatter/`) could not be read.
    #[error("cannot read the working directory: {0}")]
    NoWorkingDir(String),
}

/// The MCP client profile (`DARKMATTER_CLIENT`): which agent CLI a spawned agent would run.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ClientProfile {
    /// `claude-code` (default).
    ClaudeCode,
    /// `cursor`.
    Cursor,
    /// `gemini`.
    Gemini,
    /// `codex`.
    Codex,
    /// `kimi`.
    Kimi,
    /// `opencode`.
    OpenCode,
    /// `openclaw`.
    OpenClaw,
}

impl ClientProfile {
    /// Every profile with its variable value.
    pub const ALL: [(&'static str, ClientProfile); 7] = [
        ("claude-code", ClientProfile::ClaudeCode),
        ("cursor", ClientProfile::Cursor),
        ("gemini", ClientProfile::Gemini),
        ("codex", ClientProfile::Codex),
        ("kimi", ClientProfile::Kimi),
        ("opencode", ClientProfile::OpenCode),
        ("openclaw", ClientProfile::OpenClaw),
    ];

    /// The variable value naming this profile.
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, p)| *p == self).map(|(n, _)| *n).expect("every profile is listed")
    }
}

/// Everything the runtime needs to start a node.
#[derive(Clone, Debug, PartialEq)]
pub struct RuntimeConfig {
    /// `DARKMATTER_DISPLAY_NAME`; empty = `agent-<first 8 hex of the id>`.
    pub display_name: String,
    /// `DARKMATTER_BIO`: the bio of a fresh identity.
    pub bio: String,
    /// `DARKMATTER_HOST`: bind address (default `0.0.0.0`).
    pub host: IpAddr,
    /// `DARKMATTER_PORT` (default 8100; 0 = any free port, for tests).
    pub port: u16,
    /// `DARKMATTER_PUBLIC_URL`: the URL peers reach us at; `None` = derived, see [`RuntimeConfig::public_url`].
    pub public_url: Option<String>,
    /// `DARKMATTER_DISCOVERY`: LAN beacons and localhost scans.
    pub discovery: bool,
    /// `DARKMATTER_DISCOVERY_PORTS`: localhost ports to scan (`A-B`, `A`, or a comma list of those).
    pub discovery_ports: Vec<u16>,
    /// `DARKMATTER_MAX_CONNECTIONS` (1..=1000).
    pub max_connections: usize,
    /// `DARKMATTER_AUTO_ACCEPT_LOCAL`: accept connection requests whose TCP source is local.
    pub auto_accept_local: bool,
    /// `DARKMATTER_CLIENT`.
    pub client: ClientProfile,
    /// `DARKMATTER_AGENT_ENABLED`.
    pub agent_enabled: bool,
    /// `DARKMATTER_AGENT_MAX_CONCURRENT`.
    pub agent_max_concurrent: u32,
    /// `DARKMATTER_AGENT_MAX_PER_HOUR`.
    pub agent_max_per_hour: u32,
    /// `DARKMATTER_AGENT_TIMEOUT`, in seconds.
    pub agent_timeout_s: u64,
    /// `DARKMATTER_AGENT_COMMAND`: the program instead of the profile's.
    pub agent_command: Option<String>,
    /// `DARKMATTER_AGENT_ARGS` (comma-separated): the arguments instead of the profile's fixed ones.
    pub agent_args: Option<Vec<String>>,
    /// `DARKMATTER_AGENT_ENV_CLEANUP` (comma-separated): variables removed for the child instead of the
    /// profile's.
    pub agent_env_cleanup: Option<Vec<String>>,
    /// `DARKMATTER_SANDBOX`.
    pub sandbox: bool,
    /// `DARKMATTER_SANDBOX_NETWORK`: `true` (open), `false` (no TCP, no UDP) or `api` (TCP to 443 only).
    pub sandbox_network: SandboxNet,
    /// `DARKMATTER_ANCHOR_NODES` (validated URLs; empty = no anchors).
    pub anchor_nodes: Vec<String>,
    /// `DARKMATTER_SOLANA_RPC`: the Solana JSON-RPC endpoint (https, or http to this machine).
    pub solana_rpc: String,
    /// `DARKMATTER_WALLET_SPEND_LIMIT`: daily spending limits per asset; none = spending off.
    pub wallet_spend_limit: crate::solana_wallet::SpendLimits,
    /// `DARKMATTER_TRUST_ACCEPT_MIN`: the policy accepts a request whose combined peer score is at least
    /// this (`off` = never).
    pub trust_accept_min: Option<f64>,
    /// `DARKMATTER_TRUST_REJECT_MAX`: the policy rejects a request whose combined peer score is at most
    /// this (`off` = never).
    pub trust_reject_max: Option<f64>,
    /// `DARKMATTER_TRUST_DECIDE`: `false` turns policy decisions off, so every request waits for the
    /// agent (peer opinions are still gathered and shown).
    pub trust_decide: bool,
    /// Where the passport and the state file live: `<cwd>/.darkmatter` (not an environment variable).
    pub state_dir: PathBuf,
    /// Whether [`crate::start`] installs SIGINT/SIGTERM handlers that shut the node down.
    pub handle_signals: bool,
}

impl RuntimeConfig {
    /// The defaults of every variable, with the state directory under `cwd`.
    pub fn defaults(cwd: PathBuf) -> Self {
        Self {
            display_name: String::new(),
            bio: BIO_DEFAULT.to_owned(),
            host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: PORT_DEFAULT,
            public_url: None,
            discovery: true,
            discovery_ports: (DISCOVERY_PORTS_DEFAULT.0..=DISCOVERY_PORTS_DEFAULT.1).collect(),
            max_connections: CONNECTIONS_MAX_DEFAULT,
            auto_accept_local: true,
            client: ClientProfile::ClaudeCode,
            agent_enabled: true,
            agent_max_concurrent: AGENT_MAX_CONCURRENT_DEFAULT,
            agent_max_per_hour: AGENT_MAX_PER_HOUR_DEFAULT,
            agent_timeout_s: AGENT_TIMEOUT_S_DEFAULT,
            agent_command: None,
            agent_args: None,
            agent_env_cleanup: None,
            sandbox: false,
            sandbox_network: SandboxNet::On,
            anchor_nodes: Vec::new(),
            solana_rpc: crate::solana::SOLANA_RPC_DEFAULT.to_owned(),
            wallet_spend_limit: crate::solana_wallet::SpendLimits::default(),
            trust_accept_min: Some(proto_core::limits::TRUST_ACCEPT_MIN_DEFAULT),
            trust_reject_max: Some(proto_core::limits::TRUST_REJECT_MAX_DEFAULT),
            trust_decide: true,
            state_dir: cwd.join(STATE_DIR_NAME),
            handle_signals: true,
        }
    }

    /// Reads the process environment; the state directory is `<cwd>/.darkmatter`.
    pub fn from_env() -> Result<Self, ConfigError> {
        let cwd = std::env::current_dir().map_err(|e| ConfigError::NoWorkingDir(e.to_string()))?;
        let mut not_unicode = None;
        let config = Self::from_lookup(cwd, |var| match std::env::var(var) {
            Ok(v) => Some(v),
            Err(std::env::VarError::NotPresent) => None,
            Err(std::env::VarError::NotUnicode(_)) => {
                not_unicode = Some(var);
                None
            }
        });
        if let Some(var) = not_unicode {
            return Err(ConfigError::NotUnicode { var });
        }
        config
    }

    /// Reads the variables through `lookup` (tests pass a map).
    pub fn from_lookup(
        cwd: PathBuf,
        mut lookup: impl FnMut(&'static str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut c = Self::defaults(cwd);
        let mut get = |var: &'static str| lookup(var).map(|v| v.trim().to_owned());
        if let Some(v) = get("DARKMATTER_DISPLAY_NAME").filter(|v| !v.is_empty()) {
            c.display_name = bounded_text("DARKMATTER_DISPLAY_NAME", v, DISPLAY_NAME_CHARS_MAX)?;
        }
        if let Some(v) = get("DARKMATTER_BIO").filter(|v| !v.is_empty()) {
            c.bio = bounded_text("DARKMATTER_BIO", v, BIO_CHARS_MAX)?;
        }
        if let Some(v) = get("DARKMATTER_HOST").filter(|v| !v.is_empty()) {
            c.host = v
                .parse()
                .map_err(|_| invalid("DARKMATTER_HOST", &v, "must be an IP address such as 0.0.0.0 or 127.0.0.1"))?;
        }
        if let Some(v) = get("DARKMATTER_PORT").filter(|v| !v.is_empty()) {
            c.port = v.parse().map_err(|_| invalid("DARKMATTER_PORT", &v, "must be a port number 0-65535"))?;
        }
        if let Some(v) = get("DARKMATTER_PUBLIC_URL").filter(|v| !v.is_empty()) {
            proto_core::url::validate(&v).map_err(|e| invalid("DARKMATTER_PUBLIC_URL", &v, &e))?;
            c.public_url = Some(proto_core::url::base(&v));
        }
        set_bool(&mut c.discovery, "DARKMATTER_DISCOVERY", get("DARKMATTER_DISCOVERY"))?;
        if let Some(v) = get("DARKMATTER_DISCOVERY_PORTS").filter(|v| !v.is_empty()) {
            c.discovery_ports = parse_ports(&v)?;
        }
        if let Some(v) = get("DARKMATTER_MAX_CONNECTIONS").filter(|v| !v.is_empty()) {
            c.max_connections =
                parse_range("DARKMATTER_MAX_CONNECTIONS", &v, 1, CONNECTIONS_MAX_CEILING as u64)? as usize;
        }
        set_bool(&mut c.auto_accept_local, "DARKMATTER_AUTO_ACCEPT_LOCAL", get("DARKMATTER_AUTO_ACCEPT_LOCAL"))?;
        if let Some(v) = get("DARKMATTER_CLIENT").filter(|v| !v.is_empty()) {
            let lower = v.to_ascii_lowercase();
            c.client = ClientProfile::ALL.iter().find(|(n, _)| *n == lower).map(|(_, p)| *p).ok_or_else(|| {
                let names: Vec<&str> = ClientProfile::ALL.iter().map(|(n, _)| *n).collect();
                invalid("DARKMATTER_CLIENT", &v, &format!("must be one of {}", names.join(", ")))
            })?;
        }
        set_bool(&mut c.agent_enabled, "DARKMATTER_AGENT_ENABLED", get("DARKMATTER_AGENT_ENABLED"))?;
        if let Some(v) = get("DARKMATTER_AGENT_MAX_CONCURRENT").filter(|v| !v.is_empty()) {
            c.agent_max_concurrent =
                parse_range("DARKMATTER_AGENT_MAX_CONCURRENT", &v, 1, AGENT_MAX_CONCURRENT_CEILING as u64)? as u32;
        }
        if let Some(v) = get("DARKMATTER_AGENT_MAX_PER_HOUR").filter(|v| !v.is_empty()) {
            c.agent_max_per_hour =
                parse_range("DARKMATTER_AGENT_MAX_PER_HOUR", &v, 0, AGENT_MAX_PER_HOUR_CEILING as u64)? as u32;
        }
        if let Some(v) = get("DARKMATTER_AGENT_TIMEOUT").filter(|v| !v.is_empty()) {
            c.agent_timeout_s = parse_range("DARKMATTER_AGENT_TIMEOUT", &v, 1, AGENT_TIMEOUT_S_CEILING)?;
        }
        if let Some(v) = get("DARKMATTER_AGENT_COMMAND").filter(|v| !v.is_empty()) {
            c.agent_command = Some(bounded_bytes("DARKMATTER_AGENT_COMMAND", v)?);
        }
        if let Some(v) = get("DARKMATTER_AGENT_ARGS") {
            c.agent_args = Some(comma_list("DARKMATTER_AGENT_ARGS", v)?);
        }
        if let Some(v) = get("DARKMATTER_AGENT_ENV_CLEANUP") {
            c.agent_env_cleanup = Some(comma_list("DARKMATTER_AGENT_ENV_CLEANUP", v)?);
        }
        set_bool(&mut c.sandbox, "DARKMATTER_SANDBOX", get("DARKMATTER_SANDBOX"))?;
        if let Some(v) = get("DARKMATTER_SANDBOX_NETWORK").filter(|v| !v.is_empty()) {
            c.sandbox_network = SandboxNet::parse(&v)
                .ok_or_else(|| invalid("DARKMATTER_SANDBOX_NETWORK", &v, "must be true, false or api"))?;
        }
        if let Some(v) = get("DARKMATTER_TRUST_ACCEPT_MIN").filter(|v| !v.is_empty()) {
            c.trust_accept_min = parse_score("DARKMATTER_TRUST_ACCEPT_MIN", &v)?;
        }
        if let Some(v) = get("DARKMATTER_TRUST_REJECT_MAX").filter(|v| !v.is_empty()) {
            c.trust_reject_max = parse_score("DARKMATTER_TRUST_REJECT_MAX", &v)?;
        }
        set_bool(&mut c.trust_decide, "DARKMATTER_TRUST_DECIDE", get("DARKMATTER_TRUST_DECIDE"))?;
        // A score that is both "accept" and "reject" would make the policy's answer depend on the
        // order it checks them in.
        if let (Some(min), Some(max)) = (c.trust_accept_min, c.trust_reject_max) {
            if min <= max {
                return Err(invalid(
                    "DARKMATTER_TRUST_ACCEPT_MIN",
                    &min.to_string(),
                    "must be above DARKMATTER_TRUST_REJECT_MAX",
                ));
            }
        }
        if let Some(v) = get("DARKMATTER_ANCHOR_NODES") {
            c.anchor_nodes = parse_anchors(&v)?;
        }
        if let Some(v) = get("DARKMATTER_SOLANA_RPC").filter(|v| !v.is_empty()) {
            crate::solana::check_rpc_url(&v).map_err(|e| invalid("DARKMATTER_SOLANA_RPC", &v, &e.to_string()))?;
            c.solana_rpc = v;
        }
        if let Some(v) = get("DARKMATTER_WALLET_SPEND_LIMIT") {
            c.wallet_spend_limit = crate::solana_wallet::SpendLimits::parse(&v)
                .map_err(|e| invalid("DARKMATTER_WALLET_SPEND_LIMIT", &v, &e.to_string()))?;
        }
        Ok(c)
    }

    /// The acceptance policy's thresholds as the core takes them: `(accept_min, reject_max)`, both
    /// `None` when `DARKMATTER_TRUST_DECIDE` is off.
    pub fn trust_thresholds(&self) -> (Option<f64>, Option<f64>) {
        if self.trust_decide {
            (self.trust_accept_min, self.trust_reject_max)
        } else {
            (None, None)
        }
    }

    /// The core's spawn limits from `DARKMATTER_AGENT_MAX_CONCURRENT` and `_MAX_PER_HOUR`.
    pub fn spawn_config(&self) -> proto_core::spawn::SpawnConfig {
        proto_core::spawn::SpawnConfig {
            concurrent_max: self.agent_max_concurrent as usize,
            per_hour_max: self.agent_max_per_hour as usize,
            ..proto_core::spawn::SpawnConfig::default()
        }
    }

    /// The project directory: where the node runs and spawned agents work (the state directory's parent).
    pub fn project_dir(&self) -> PathBuf {
        self.state_dir.parent().map(Path::to_path_buf).unwrap_or_else(|| self.state_dir.clone())
    }

    /// The URL peers reach us at, given the port actually bound:
    /// 1. `DARKMATTER_PUBLIC_URL` when set;
    /// 2. `http://127.0.0.1:<port>` when the host is a loopback address;
    /// 3. for an unspecified host (`0.0.0.0`, `::`): `http://<lan-ip>:<port>` with the address of the
    ///    interface the multicast group routes through (no packet is sent to find it), or
    ///    `http://127.0.0.1:<port>` when there is none;
    /// 4. otherwise `http://<host>:<port>`.
    ///
    /// While it runs, a derived LAN URL is re-derived ([`crate::lan_url`]).
    pub fn public_url(&self, port: u16) -> String {
        if let Some(url) = &self.public_url {
            return url.clone();
        }
        crate::lan_url::derive_url(self.host, port, &crate::lan_url::lan_addresses())
            .unwrap_or_else(|| format!("http://{}", SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)))
    }
}

fn invalid(var: &'static str, value: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid { var, value: value.to_owned(), reason: reason.to_owned() }
}

fn bounded_bytes(var: &'static str, value: String) -> Result<String, ConfigError> {
    if value.len() > AGENT_OVERRIDE_BYTES_MAX {
        return Err(invalid(var, &value, &format!("must be at most {AGENT_OVERRIDE_BYTES_MAX} bytes")));
    }
    Ok(value)
}

/// A comma-separated list as 0.5.3 reads it: items trimmed, empty items dropped.
fn comma_list(var: &'static str, value: String) -> Result<Vec<String>, ConfigError> {
    let value = bounded_bytes(var, value)?;
    let items: Vec<String> = value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
    if items.len() > AGENT_OVERRIDE_ITEMS_MAX {
        return Err(invalid(var, &value, &format!("must have at most {AGENT_OVERRIDE_ITEMS_MAX} items")));
    }
    Ok(items)
}

fn bounded_text(var: &'static str, value: String, max_chars: usize) -> Result<String, ConfigError> {
    if value.chars().count() > max_chars {
        return Err(invalid(var, &value, &format!("must be at most {max_chars} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(var, &value, "must not contain control characters"));
    }
    Ok(value)
}

fn set_bool(slot: &mut bool, var: &'static str, value: Option<String>) -> Result<(), ConfigError> {
    let Some(v) = value.filter(|v| !v.is_empty()) else { return Ok(()) };
    *slot = match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => true,
        "false" | "0" | "no" | "off" => false,
        _ => return Err(invalid(var, &v, "must be true or false")),
    };
    Ok(())
}

/// A trust score within -1..1, or `off` (no threshold).
fn parse_score(var: &'static str, value: &str) -> Result<Option<f64>, ConfigError> {
    if value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let x: f64 = value.parse().map_err(|_| invalid(var, value, "must be a score within -1..1, or off"))?;
    if !x.is_finite() || !(-1.0..=1.0).contains(&x) {
        return Err(invalid(var, value, "must be a score within -1..1, or off"));
    }
    Ok(Some(x))
}

fn parse_range(var: &'static str, value: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    match value.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(invalid(var, value, &format!("must be a whole number {min}..={max}"))),
    }
}

fn parse_ports(value: &str) -> Result<Vec<u16>, ConfigError> {
    const VAR: &str = "DARKMATTER_DISCOVERY_PORTS";
    let bad = |why: &str| invalid(VAR, value, why);
    let port =
        |s: &str| s.trim().parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| bad("ports must be numbers 1-65535"));
    let mut ports = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => (port(part)?, port(part)?),
        };
        if lo > hi {
            return Err(bad("a range must be low-high"));
        }
        if ports.len() + usize::from(hi - lo) + 1 > DISCOVERY_PORTS_MAX {
            return Err(bad(&format!("at most {DISCOVERY_PORTS_MAX} ports may be scanned")));
        }
        ports.extend(lo..=hi);
    }
    ports.sort_unstable();
    ports.dedup();
    Ok(ports)
}

fn parse_anchors(value: &str) -> Result<Vec<String>, ConfigError> {
    const VAR: &str = "DARKMATTER_ANCHOR_NODES";
    let mut out = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        proto_core::url::validate(part).map_err(|e| invalid(VAR, value, &e))?;
        out.push(proto_core::url::base(part));
    }
    if out.len() > ANCHOR_NODES_MAX {
        return Err(invalid(VAR, value, &format!("at most {ANCHOR_NODES_MAX} anchors")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(vars: &[(&str, &str)]) -> Result<RuntimeConfig, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        RuntimeConfig::from_lookup(PathBuf::from("/w"), |k| map.get(k).cloned())
    }

    fn err_var(vars: &[(&str, &str)]) -> &'static str {
        match parse(vars).unwrap_err() {
            ConfigError::Invalid { var, .. } => var,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn defaults_follow_the_readme() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.port, 8100);
        assert_eq!(c.host, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert!(c.discovery && c.auto_accept_local && c.agent_enabled && !c.sandbox);
        assert_eq!(c.sandbox_network, SandboxNet::On);
        assert_eq!(c.discovery_ports, (8100..=8110).collect::<Vec<_>>());
        assert_eq!(c.max_connections, 50);
        assert_eq!(c.client, ClientProfile::ClaudeCode);
        assert_eq!((c.agent_max_concurrent, c.agent_max_per_hour, c.agent_timeout_s), (2, 15, 300));
        assert!(c.anchor_nodes.is_empty(), "no third party unless configured");
        assert_eq!(c.bio, BIO_DEFAULT);
        assert_eq!(c.state_dir, PathBuf::from("/w/.darkmatter"));
        assert_eq!(c.trust_thresholds(), (Some(0.5), Some(-0.5)));
    }

    #[test]
    fn trust_policy_thresholds_are_the_users() {
        let c = parse(&[("DARKMATTER_TRUST_ACCEPT_MIN", "0.7"), ("DARKMATTER_TRUST_REJECT_MAX", "off")]).unwrap();
        assert_eq!(c.trust_thresholds(), (Some(0.7), None));
        let c = parse(&[("DARKMATTER_TRUST_ACCEPT_MIN", "OFF"), ("DARKMATTER_TRUST_REJECT_MAX", "-0.2")]).unwrap();
        assert_eq!(c.trust_thresholds(), (None, Some(-0.2)));
        // Off: every request waits for the agent, whatever the thresholds say.
        let c = parse(&[("DARKMATTER_TRUST_DECIDE", "false"), ("DARKMATTER_TRUST_ACCEPT_MIN", "0.9")]).unwrap();
        assert_eq!(c.trust_thresholds(), (None, None));
        assert_eq!(err_var(&[("DARKMATTER_TRUST_ACCEPT_MIN", "1.5")]), "DARKMATTER_TRUST_ACCEPT_MIN");
        assert_eq!(err_var(&[("DARKMATTER_TRUST_REJECT_MAX", "NaN")]), "DARKMATTER_TRUST_REJECT_MAX");
        assert_eq!(err_var(&[("DARKMATTER_TRUST_DECIDE", "maybe")]), "DARKMATTER_TRUST_DECIDE");
        // Overlapping thresholds are refused rather than resolved by check order.
        let overlap = [("DARKMATTER_TRUST_ACCEPT_MIN", "0.1"), ("DARKMATTER_TRUST_REJECT_MAX", "0.1")];
        assert_eq!(err_var(&overlap), "DARKMATTER_TRUST_ACCEPT_MIN");
    }

    #[test]
    fn every_variable_is_read() {
        let c = parse(&[
            ("DARKMATTER_DISPLAY_NAME", "alice"),
            ("DARKMATTER_BIO", "hello"),
            ("DARKMATTER_HOST", "127.0.0.1"),
            ("DARKMATTER_PORT", "9000"),
            ("DARKMATTER_PUBLIC_URL", "https://a.example/mcp"),
            ("DARKMATTER_DISCOVERY", "false"),
            ("DARKMATTER_DISCOVERY_PORTS", "9000-9002, 9010"),
            ("DARKMATTER_MAX_CONNECTIONS", "7"),
            ("DARKMATTER_AUTO_ACCEPT_LOCAL", "no"),
            ("DARKMATTER_CLIENT", "Cursor"),
            ("DARKMATTER_AGENT_ENABLED", "0"),
            ("DARKMATTER_AGENT_MAX_CONCURRENT", "3"),
            ("DARKMATTER_AGENT_MAX_PER_HOUR", "0"),
            ("DARKMATTER_AGENT_TIMEOUT", "60"),
            ("DARKMATTER_SANDBOX", "TRUE"),
            ("DARKMATTER_SANDBOX_NETWORK", "off"),
            ("DARKMATTER_ANCHOR_NODES", "https://x.example, http://y.example:5001/"),
        ])
        .unwrap();
        assert_eq!(c.display_name, "alice");
        assert_eq!(c.bio, "hello");
        assert_eq!(c.host, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(c.port, 9000);
        assert_eq!(c.public_url.as_deref(), Some("https://a.example"));
        assert!(!c.discovery && !c.auto_accept_local && !c.agent_enabled && c.sandbox);
        assert_eq!(c.sandbox_network, SandboxNet::Off);
        assert_eq!(c.discovery_ports, vec![9000, 9001, 9002, 9010]);
        assert_eq!(c.max_connections, 7);
        assert_eq!(c.client, ClientProfile::Cursor);
        assert_eq!((c.agent_max_concurrent, c.agent_max_per_hour, c.agent_timeout_s), (3, 0, 60));
        assert_eq!(c.anchor_nodes, vec!["https://x.example".to_owned(), "http://y.example:5001".to_owned()]);
    }

    #[test]
    fn sandbox_network_is_a_boolean_or_api() {
        let net = |v: &str| parse(&[("DARKMATTER_SANDBOX_NETWORK", v)]).unwrap().sandbox_network;
        assert_eq!(net("api"), SandboxNet::Api);
        assert_eq!(net("API"), SandboxNet::Api);
        assert_eq!(net("true"), SandboxNet::On);
        assert_eq!(net("0"), SandboxNet::Off);
        assert_eq!(net(""), SandboxNet::On);
    }

    #[test]
    fn empty_anchor_list_means_no_anchors_and_other_empties_mean_default() {
        let c =
            parse(&[("DARKMATTER_ANCHOR_NODES", ""), ("DARKMATTER_PORT", ""), ("DARKMATTER_DISCOVERY", " ")]).unwrap();
        assert!(c.anchor_nodes.is_empty());
        assert_eq!(c.port, 8100);
        assert!(c.discovery);
    }

    #[test]
    fn invalid_values_name_their_variable() {
        assert_eq!(err_var(&[("DARKMATTER_PORT", "80000")]), "DARKMATTER_PORT");
        assert_eq!(err_var(&[("DARKMATTER_PORT", "http")]), "DARKMATTER_PORT");
        assert_eq!(err_var(&[("DARKMATTER_HOST", "localhost")]), "DARKMATTER_HOST");
        assert_eq!(err_var(&[("DARKMATTER_PUBLIC_URL", "ftp://x")]), "DARKMATTER_PUBLIC_URL");
        assert_eq!(err_var(&[("DARKMATTER_DISCOVERY", "maybe")]), "DARKMATTER_DISCOVERY");
        assert_eq!(err_var(&[("DARKMATTER_DISCOVERY_PORTS", "9-2")]), "DARKMATTER_DISCOVERY_PORTS");
        assert_eq!(err_var(&[("DARKMATTER_DISCOVERY_PORTS", "1-65535")]), "DARKMATTER_DISCOVERY_PORTS");
        assert_eq!(err_var(&[("DARKMATTER_DISCOVERY_PORTS", "0")]), "DARKMATTER_DISCOVERY_PORTS");
        assert_eq!(err_var(&[("DARKMATTER_MAX_CONNECTIONS", "0")]), "DARKMATTER_MAX_CONNECTIONS");
        assert_eq!(err_var(&[("DARKMATTER_MAX_CONNECTIONS", "1001")]), "DARKMATTER_MAX_CONNECTIONS");
        assert_eq!(err_var(&[("DARKMATTER_AUTO_ACCEPT_LOCAL", "yes please")]), "DARKMATTER_AUTO_ACCEPT_LOCAL");
        assert_eq!(err_var(&[("DARKMATTER_CLIENT", "emacs")]), "DARKMATTER_CLIENT");
        assert_eq!(err_var(&[("DARKMATTER_AGENT_ENABLED", "2")]), "DARKMATTER_AGENT_ENABLED");
        assert_eq!(err_var(&[("DARKMATTER_AGENT_MAX_CONCURRENT", "0")]), "DARKMATTER_AGENT_MAX_CONCURRENT");
        assert_eq!(err_var(&[("DARKMATTER_AGENT_MAX_PER_HOUR", "-1")]), "DARKMATTER_AGENT_MAX_PER_HOUR");
        assert_eq!(err_var(&[("DARKMATTER_AGENT_TIMEOUT", "0")]), "DARKMATTER_AGENT_TIMEOUT");
        assert_eq!(err_var(&[("DARKMATTER_SANDBOX", "sure")]), "DARKMATTER_SANDBOX");
        assert_eq!(err_var(&[("DARKMATTER_SANDBOX_NETWORK", "x")]), "DARKMATTER_SANDBOX_NETWORK");
        assert_eq!(err_var(&[("DARKMATTER_SANDBOX_NETWORK", "apis")]), "DARKMATTER_SANDBOX_NETWORK");
        assert_eq!(err_var(&[("DARKMATTER_ANCHOR_NODES", "https://ok.example,nope")]), "DARKMATTER_ANCHOR_NODES");
        assert_eq!(err_var(&[("DARKMATTER_DISPLAY_NAME", &"n".repeat(101))]), "DARKMATTER_DISPLAY_NAME");
        assert_eq!(err_var(&[("DARKMATTER_BIO", &"b".repeat(1001))]), "DARKMATTER_BIO");
        let text = parse(&[("DARKMATTER_PORT", "x")]).unwrap_err().to_string();
        assert!(text.contains("DARKMATTER_PORT"), "{text}");
    }

    #[test]
    fn public_url_is_derived_from_host_and_port() {
        let mut c = parse(&[("DARKMATTER_HOST", "127.0.0.1")]).unwrap();
        assert_eq!(c.public_url(8123), "http://127.0.0.1:8123");
        c.host = "192.0.2.7".parse().unwrap();
        assert_eq!(c.public_url(8100), "http://192.0.2.7:8100");
        c.host = "::1".parse().unwrap();
        assert_eq!(c.public_url(8100), "http://127.0.0.1:8100");
        c.public_url = Some("https://me.example".to_owned());
        assert_eq!(c.public_url(1), "https://me.example");
        c.public_url = None;
        c.host = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        assert!(c.public_url(8100).starts_with("http://") && c.public_url(8100).ends_with(":8100"));
    }

    #[test]
    fn client_profiles_round_trip() {
        for (name, p) in ClientProfile::ALL {
            assert_eq!(p.name(), name);
            assert_eq!(parse(&[("DARKMATTER_CLIENT", name)]).unwrap().client, p);
        }
    }
}
