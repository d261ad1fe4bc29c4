//! The typed arguments of the node's commands and the one place they become a [`Command`].
//!
//! Every front end parses here: the `darkmatter` MCP tools take these structs as their arguments
//! (their JSON schemas come from the doc comments below), and the `darkmatter-node` control lines
//! ([`crate::control`]) are read into the same structs. So a default, a trim or a limit is written
//! once, and every limit is proto-core's constant ([`proto_core::limits`]), never restated.
//!
//! Each struct refuses unknown fields (a misspelt argument is an error, not silently ignored), and
//! `build` methods check what serde cannot (ranges, combinations) before the node sees anything.

use proto_core::limits::{
    CONTENT_CHARS_MAX, HOPS_MAX, ID_BYTES_MAX, INACTIVE_MINUTES_MAX, NOTE_CHARS_MAX, WAIT_TIMEOUT_S_MAX,
};
use proto_core::{Command, ForwardArgs, SendArgs, ShardArgs, Targets};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};
use thiserror::Error;

/// Default wait of `WaitForResponse` when the caller gives none, in ms.
pub const WAIT_TIMEOUT_MS_DEFAULT: u64 = 60_000;

/// Longest host name a domain lookup takes (RFC 1035), in bytes.
pub const DOMAIN_BYTES_MAX: usize = 253;

/// Longest label of a host name (RFC 1035), in bytes.
pub const DOMAIN_LABEL_BYTES_MAX: usize = 63;

/// Why arguments do not make a command. The text is what a model or an operator reads, so it says
/// what to fix.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum ArgError {
    /// A required argument is missing or blank.
    #[error("{0} is required")]
    Required(&'static str),
    /// An argument required by the chosen action is missing or blank.
    #[error("{name} is required for action=\"{action}\"")]
    RequiredFor {
        /// The argument.
        name: &'static str,
        /// The action that needs it.
        action: &'static str,
    },
    /// An identifier is longer than proto-core's `ID_BYTES_MAX` or spans lines.
    #[error("{0} is not a valid identifier")]
    NotAnId(&'static str),
    /// An argument was given that the chosen connection action does not take.
    #[error("{name} does not apply to action=\"{action}\"")]
    NotForAction {
        /// The argument.
        name: &'static str,
        /// The action.
        action: &'static str,
    },
    /// An argument of new messages was given with `message_id` (a forward).
    #[error("{0} does not apply when forwarding (message_id)")]
    NotWhenForwarding(&'static str),
    /// A value is outside what the node accepts.
    #[error("{name} must be {allowed}")]
    OutOfRange {
        /// The argument.
        name: &'static str,
        /// What it may be.
        allowed: String,
    },
    /// The arguments combine in a way that makes no command; the text says which way does.
    #[error("{0}")]
    Combination(&'static str),
    /// A domain lookup was given something that is not a host name.
    #[error("domain {0}: give a host name like \"example.com\"")]
    BadDomain(&'static str),
}

fn out_of_range(name: &'static str, allowed: impl Into<String>) -> ArgError {
    ArgError::OutOfRange { name, allowed: allowed.into() }
}

/// A required identifier: trimmed, non-empty, at most [`ID_BYTES_MAX`] bytes, one line.
pub fn id(name: &'static str, value: Option<String>) -> Result<String, ArgError> {
    let v = value.map(|s| s.trim().to_owned()).unwrap_or_default();
    if v.is_empty() {
        return Err(ArgError::Required(name));
    }
    if v.len() > ID_BYTES_MAX || v.contains('\n') {
        return Err(ArgError::NotAnId(name));
    }
    Ok(v)
}

fn opt_id(name: &'static str, value: Option<String>) -> Result<Option<String>, ArgError> {
    value.map(|v| id(name, Some(v))).transpose()
}

fn unit_range(name: &'static str, v: f64, low: f64) -> Result<f64, ArgError> {
    if !v.is_finite() || !(low..=1.0).contains(&v) {
        return Err(out_of_range(name, format!("within {low}..1")));
    }
    Ok(v)
}

/// Arguments of a tool that takes none (unknown arguments are refused, not ignored).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

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

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Request => "request",
            Action::Accept => "accept",
            Action::Reject => "reject",
            Action::Disconnect => "disconnect",
        }
    }

    /// The one argument the action takes.
    fn argument(self) -> &'static str {
        match self {
            Action::Request => "target_url",
            Action::Accept | Action::Reject => "request_id",
            Action::Disconnect => "agent_id",
        }
    }
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

impl ConnectionArgs {
    /// The command, or why there is none: each action takes its one argument and no other.
    pub fn build(self) -> Result<Command, ArgError> {
        let (action, wanted) = (self.action.name(), self.action.argument());
        let given = [
            ("target_url", self.target_url.is_some()),
            ("request_id", self.request_id.is_some()),
            ("agent_id", self.agent_id.is_some()),
        ];
        if let Some((name, _)) = given.iter().find(|(name, present)| *present && *name != wanted) {
            return Err(ArgError::NotForAction { name, action });
        }
        let value = match self.action {
            Action::Request => self.target_url,
            Action::Accept | Action::Reject => self.request_id,
            Action::Disconnect => self.agent_id,
        };
        let value = value.map(|v| v.trim().to_owned()).unwrap_or_default();
        if value.is_empty() {
            return Err(ArgError::RequiredFor { name: wanted, action });
        }
        Ok(match self.action {
            Action::Request => Command::Connect { target_url: value },
            Action::Accept => Command::Accept { request_id: id(wanted, Some(value))? },
            Action::Reject => Command::Reject { request_id: id(wanted, Some(value))? },
            Action::Disconnect => Command::Disconnect { agent_id: id(wanted, Some(value))? },
        })
    }
}

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

impl SendArgsIn {
    /// A new message (`Send`) when `content` is given, a forward (`Forward`) when `message_id` is.
    pub fn build(mut self) -> Result<Command, ArgError> {
        let targets = self.targets()?;
        match (self.content.take(), self.message_id.take()) {
            (Some(_), Some(_)) => {
                Err(ArgError::Combination("Give either content (a new message) or message_id (a forward), not both"))
            }
            (None, None) => {
                Err(ArgError::Combination("content is required (or message_id to forward an inbox message)"))
            }
            (None, Some(message_id)) => self.forward(message_id, targets),
            (Some(content), None) => self.send(content, targets),
        }
    }

    /// Both target forms together, each checked as an identifier.
    fn targets(&mut self) -> Result<Vec<String>, ArgError> {
        let mut ids = Vec::new();
        if let Some(one) = self.target_agent_id.take() {
            ids.push(id("target_agent_id", Some(one))?);
        }
        for one in self.target_agent_ids.take().unwrap_or_default() {
            ids.push(id("target_agent_ids[]", Some(one))?);
        }
        Ok(ids)
    }

    fn forward(self, message_id: String, targets: Vec<String>) -> Result<Command, ArgError> {
        for (name, given) in [
            ("broadcast", self.broadcast.unwrap_or(false)),
            ("trust_min", self.trust_min.is_some()),
            ("metadata", self.metadata.is_some()),
            ("in_reply_to", self.in_reply_to.is_some()),
            ("hops_remaining", self.hops_remaining.is_some()),
        ] {
            if given {
                return Err(ArgError::NotWhenForwarding(name));
            }
        }
        if targets.is_empty() {
            return Err(ArgError::Combination("Forwarding needs target_agent_id or target_agent_ids"));
        }
        Ok(Command::Forward(ForwardArgs { message_id: id("message_id", Some(message_id))?, targets, note: self.note }))
    }

    fn send(self, content: String, targets: Vec<String>) -> Result<Command, ArgError> {
        if self.note.is_some() {
            return Err(ArgError::Combination("note applies only when forwarding (message_id)"));
        }
        let targets = match (self.broadcast.unwrap_or(false), targets.is_empty()) {
            (true, false) => {
                return Err(ArgError::Combination("Give either broadcast=true or target agents, not both"))
            }
            (true, true) => {
                Targets::Broadcast { trust_min: unit_range("trust_min", self.trust_min.unwrap_or(0.0), -1.0)? }
            }
            (false, true) => {
                return Err(ArgError::Combination("Give target_agent_id, target_agent_ids or broadcast=true"))
            }
            (false, false) if self.trust_min.is_some() => {
                return Err(ArgError::Combination("trust_min applies only with broadcast=true"))
            }
            (false, false) => Targets::Agents(targets),
        };
        let hops_remaining = self.hops_remaining.unwrap_or(HOPS_MAX);
        if hops_remaining > HOPS_MAX {
            return Err(out_of_range("hops_remaining", format!("0..={HOPS_MAX}")));
        }
        Ok(Command::Send(SendArgs {
            content,
            targets,
            metadata: self.metadata.unwrap_or_default(),
            in_reply_to: opt_id("in_reply_to", self.in_reply_to)?,
            hops_remaining,
        }))
    }
}

/// Arguments of a tool that names one message.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageIdArgs {
    /// The message_id.
    pub message_id: String,
}

impl MessageIdArgs {
    /// `GetSent`.
    pub fn get_sent(self) -> Result<Command, ArgError> {
        Ok(Command::GetSent { message_id: id("message_id", Some(self.message_id))? })
    }

    /// `ExpireSent`.
    pub fn expire(self) -> Result<Command, ArgError> {
        Ok(Command::ExpireSent { message_id: id("message_id", Some(self.message_id))? })
    }
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

impl GetMessageArgs {
    /// `GetMessage`.
    pub fn build(self) -> Result<Command, ArgError> {
        let message_id = id("message_id", Some(self.message_id))?;
        Ok(Command::GetMessage { message_id, consume: self.consume.unwrap_or(false) })
    }
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

impl WaitArgs {
    /// `WaitForResponse`, the seconds turned into milliseconds.
    pub fn build(self) -> Result<Command, ArgError> {
        let s = self.timeout_seconds.unwrap_or(WAIT_TIMEOUT_MS_DEFAULT as f64 / 1000.0);
        if !s.is_finite() || s < 0.0 || s > WAIT_TIMEOUT_S_MAX as f64 {
            return Err(out_of_range("timeout_seconds", format!("0..={WAIT_TIMEOUT_S_MAX}")));
        }
        wait(self.message_id, Some((s * 1000.0) as u64))
    }
}

/// `WaitForResponse` for `timeout_ms` (default [`WAIT_TIMEOUT_MS_DEFAULT`], at most
/// `WAIT_TIMEOUT_S_MAX` seconds).
pub fn wait(message_id: String, timeout_ms: Option<u64>) -> Result<Command, ArgError> {
    let timeout_ms = timeout_ms.unwrap_or(WAIT_TIMEOUT_MS_DEFAULT);
    if timeout_ms > WAIT_TIMEOUT_S_MAX * 1000 {
        return Err(out_of_range("timeout_ms", format!("0..={}", WAIT_TIMEOUT_S_MAX * 1000)));
    }
    Ok(Command::WaitForResponse { message_id: id("message_id", Some(message_id))?, timeout_ms })
}

/// Arguments of darkmatter_update_bio.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateBioArgs {
    /// The new bio, 1..1000 characters.
    pub bio: String,
}

impl UpdateBioArgs {
    /// `UpdateBio`, trimmed (the node checks the length).
    pub fn build(self) -> Result<Command, ArgError> {
        let bio = self.bio.trim().to_owned();
        if bio.is_empty() {
            return Err(ArgError::Combination("bio must not be empty"));
        }
        Ok(Command::UpdateBio { bio })
    }
}

/// active or inactive.
#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Accept requests and messages.
    Active,
    /// Refuse requests and messages with 503.
    Inactive,
}

/// Arguments of darkmatter_set_status.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetStatusArgs {
    /// "active" or "inactive".
    pub status: Status,
    /// With status="inactive": become active again after this many minutes (1..1440). Leave out to stay inactive.
    #[serde(default)]
    pub duration_minutes: Option<u64>,
}

impl SetStatusArgs {
    /// `SetStatus`.
    pub fn build(self) -> Result<Command, ArgError> {
        set_status(self.status == Status::Active, self.duration_minutes)
    }
}

/// `SetStatus`: a duration only when going inactive, 1..=`INACTIVE_MINUTES_MAX` minutes.
pub fn set_status(active: bool, duration_minutes: Option<u64>) -> Result<Command, ArgError> {
    match duration_minutes {
        Some(_) if active => return Err(ArgError::Combination("duration_minutes applies only to status=\"inactive\"")),
        Some(m) if m == 0 || m > INACTIVE_MINUTES_MAX => {
            return Err(out_of_range("duration_minutes", format!("1..={INACTIVE_MINUTES_MAX}")))
        }
        _ => {}
    }
    Ok(Command::SetStatus { active, duration_minutes })
}

/// Arguments of darkmatter_discover_domain.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DomainArgs {
    /// A domain name such as "example.com" (optionally with :port), no scheme or path.
    pub domain: String,
}

impl DomainArgs {
    /// The domain (with an optional port), lowercased; refuses schemes, paths and anything not a
    /// host name.
    pub fn build(self) -> Result<String, ArgError> {
        let d = self.domain.trim().trim_end_matches('.').to_ascii_lowercase();
        if d.is_empty() {
            return Err(ArgError::BadDomain("is empty"));
        }
        if d.contains("://") || d.contains('/') {
            return Err(ArgError::BadDomain("must not contain a scheme or path"));
        }
        let (host, port) = match d.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d.as_str(), None),
        };
        if port.is_some_and(|p| p.parse::<u16>().map_or(true, |p| p == 0)) {
            return Err(ArgError::BadDomain("has an invalid port"));
        }
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= DOMAIN_LABEL_BYTES_MAX
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        if host.len() > DOMAIN_BYTES_MAX || !host.split('.').all(label_ok) {
            return Err(ArgError::BadDomain("is not a valid host name"));
        }
        Ok(d)
    }
}

/// Arguments of darkmatter_set_impression.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetImpressionArgs {
    /// The agent's agent_id.
    pub agent_id: String,
    /// -1 (worst) .. 1 (best).
    pub score: f64,
    /// Why (at most 1000 characters).
    #[serde(default)]
    pub note: Option<String>,
}

impl SetImpressionArgs {
    /// `SetImpression`.
    pub fn build(self) -> Result<Command, ArgError> {
        let agent_id = id("agent_id", Some(self.agent_id))?;
        let score = unit_range("score", self.score, -1.0)?;
        if self.note.as_ref().is_some_and(|n| n.chars().count() > NOTE_CHARS_MAX) {
            return Err(out_of_range("note", format!("at most {NOTE_CHARS_MAX} characters")));
        }
        Ok(Command::SetImpression { agent_id, score, note: self.note })
    }
}

/// Arguments of darkmatter_get_impression.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentIdArgs {
    /// The agent's agent_id.
    pub agent_id: String,
}

impl AgentIdArgs {
    /// `GetImpression`.
    pub fn get_impression(self) -> Result<Command, ArgError> {
        Ok(Command::GetImpression { agent_id: id("agent_id", Some(self.agent_id))? })
    }
}

/// Arguments of darkmatter_create_shard.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateShardArgs {
    /// The knowledge itself (1..65536 characters).
    pub content: String,
    /// At least one tag, e.g. ["weather", "pool:llm"].
    pub tags: Vec<String>,
    /// Only agents you rate at least this (0..1) receive it; default 0.
    #[serde(default)]
    pub trust_threshold: Option<f64>,
    /// A one-line summary (at most 1000 characters).
    #[serde(default)]
    pub summary: Option<String>,
}

impl CreateShardArgs {
    /// `CreateShard`.
    pub fn build(self) -> Result<Command, ArgError> {
        if self.content.trim().is_empty() || self.content.chars().count() > CONTENT_CHARS_MAX {
            return Err(out_of_range("content", format!("1..={CONTENT_CHARS_MAX} characters")));
        }
        if self.tags.is_empty() || self.tags.iter().any(|t| t.trim().is_empty()) {
            return Err(ArgError::Combination("tags must hold at least one non-empty tag"));
        }
        let trust_threshold = unit_range("trust_threshold", self.trust_threshold.unwrap_or(0.0), 0.0)?;
        if self.summary.as_ref().is_some_and(|s| s.chars().count() > NOTE_CHARS_MAX) {
            return Err(out_of_range("summary", format!("at most {NOTE_CHARS_MAX} characters")));
        }
        Ok(Command::CreateShard(ShardArgs {
            content: self.content,
            tags: self.tags,
            trust_threshold,
            summary: self.summary,
        }))
    }
}

/// Arguments of darkmatter_view_shards.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ViewShardsArgs {
    /// Only shards with any of these tags (prefix match on ":"-separated tags).
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Only shards by this agent_id.
    #[serde(default)]
    pub author: Option<String>,
}

impl ViewShardsArgs {
    /// `ViewShards`.
    pub fn build(self) -> Result<Command, ArgError> {
        let author = match self.author.map(|s| s.trim().to_owned()) {
            Some(s) if s.is_empty() => return Err(ArgError::Combination("author must not be empty")),
            other => other,
        };
        Ok(Command::ViewShards { tags: self.tags.unwrap_or_default(), author })
    }
}

/// Arguments of darkmatter_set_rate_limit.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitArgs {
    /// A connected agent's agent_id; leave out for the global limit.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// 0 = default, -1 = unlimited, n > 0 = n requests per minute.
    pub limit: i64,
}

impl RateLimitArgs {
    /// `SetRateLimit`.
    pub fn build(self) -> Result<Command, ArgError> {
        if self.limit < -1 {
            return Err(out_of_range("limit", "-1 (unlimited), 0 (default) or a positive number per minute"));
        }
        Ok(Command::SetRateLimit { agent_id: opt_id("agent_id", self.agent_id)?, limit: self.limit })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_bounded_by_the_core_limit() {
        assert_eq!(id("x", Some(format!(" {} ", "a".repeat(ID_BYTES_MAX)))), Ok("a".repeat(ID_BYTES_MAX)));
        assert_eq!(id("x", Some("a".repeat(ID_BYTES_MAX + 1))), Err(ArgError::NotAnId("x")));
        assert_eq!(id("x", Some("a\nb".into())), Err(ArgError::NotAnId("x")));
        assert_eq!(id("x", Some("  ".into())), Err(ArgError::Required("x")));
    }

    #[test]
    fn waits_are_bounded_in_both_units() {
        let w = |s: f64| WaitArgs { message_id: "m".into(), timeout_seconds: Some(s) }.build();
        assert_eq!(w(2.5), Ok(Command::WaitForResponse { message_id: "m".into(), timeout_ms: 2500 }));
        assert!(w(WAIT_TIMEOUT_S_MAX as f64 + 1.0).unwrap_err().to_string().contains("timeout_seconds"));
        assert!(wait("m".into(), Some(WAIT_TIMEOUT_S_MAX * 1000 + 1)).unwrap_err().to_string().contains("timeout_ms"));
        assert_eq!(
            wait("m".into(), None),
            Ok(Command::WaitForResponse { message_id: "m".into(), timeout_ms: WAIT_TIMEOUT_MS_DEFAULT })
        );
    }

    #[test]
    fn connection_arguments_must_fit_the_action() {
        let c = |v: Value| serde_json::from_value::<ConnectionArgs>(v).unwrap().build();
        assert_eq!(
            c(serde_json::json!({"action": "accept", "request_id": "r", "agent_id": "a"})).unwrap_err().to_string(),
            "agent_id does not apply to action=\"accept\""
        );
        assert_eq!(
            c(serde_json::json!({"action": "disconnect", "agent_id": " "})).unwrap_err().to_string(),
            "agent_id is required for action=\"disconnect\""
        );
    }
}
