//! Trust: local impressions, the gates that read them, and the rate limits that protect the node.
//!
//! Impressions are private. 0.5.3 serves them to anyone who can reach the port; we refuse
//! unauthenticated impression queries (SPEC.md §Trust).

use serde_json::{json, Value};

use crate::error::{CommandError, Refusal};
use crate::identity::{truncate_chars, AgentId};
use crate::limits::{RateLimit, IMPRESSIONS_MAX, NOTE_CHARS_MAX, RATE_GLOBAL_DEFAULT, RATE_PER_PEER_DEFAULT};
use crate::node::Node;
use crate::store::{Change, Impression, Table};

impl Node {
    /// Our impression score of an agent; 0.0 (neutral) when we have none.
    pub(crate) fn trust_of(&self, agent_id: &str) -> f64 {
        self.impressions.get(agent_id).map_or(0.0, |i| i.score)
    }

    /// The global limit: every peer request that does work passes here first.
    pub(crate) fn admit_global(&mut self) -> Result<(), Refusal> {
        let limit = self.profile.rate_global;
        if self.rate_global.try_admit(self.now.mono_ms, limit, RATE_GLOBAL_DEFAULT) {
            return Ok(());
        }
        let shown = match limit {
            RateLimit::PerWindow(n) => n,
            _ => RATE_GLOBAL_DEFAULT,
        };
        Err(Refusal::Limited(format!("Global rate limit exceeded ({shown} requests per 60s)")))
    }

    /// The per-peer limit, for connected peers, applied after their signature verified.
    pub(crate) fn admit_peer(&mut self, agent_id: &str) -> Result<(), Refusal> {
        let Some(conn) = self.connections.get(agent_id) else { return Ok(()) };
        let limit = conn.rate_limit;
        let window = self.rate_peers.entry(agent_id.to_owned()).or_default();
        if window.try_admit(self.now.mono_ms, limit, RATE_PER_PEER_DEFAULT) {
            return Ok(());
        }
        let shown = match limit {
            RateLimit::PerWindow(n) => n,
            _ => RATE_PER_PEER_DEFAULT,
        };
        Err(Refusal::Limited(format!("Rate limit exceeded for this connection ({shown} requests per 60s)")))
    }

    pub(crate) fn cmd_set_rate_limit(&mut self, agent_id: Option<&str>, value: i64) -> Result<Value, CommandError> {
        let limit = RateLimit::from_tool_value(value).ok_or_else(|| {
            CommandError::InvalidArgument(format!("limit must be 0 (default), -1 (unlimited) or 1..={}", crate::limits::RATE_LIMIT_CEILING))
        })?;
        match agent_id {
            Some(id) => {
                let Some(conn) = self.connections.get_mut(id) else {
                    return Err(CommandError::NotFound(format!("Not connected to '{id}'")));
                };
                conn.rate_limit = limit;
                let change = Change::put(Table::Connections, id, &*conn);
                self.persist(vec![change]);
                Ok(json!({"agent_id": id, "limit": value, "effective_per_minute": effective(limit, RATE_PER_PEER_DEFAULT)}))
            }
            None => {
                self.profile.rate_global = limit;
                let change = Change::put(Table::Profile, "self", &self.profile);
                self.persist(vec![change]);
                Ok(json!({"scope": "global", "limit": value, "effective_per_minute": effective(limit, RATE_GLOBAL_DEFAULT)}))
            }
        }
    }

    pub(crate) fn cmd_set_impression(&mut self, agent_id: &str, score: f64, note: Option<String>) -> Result<Value, CommandError> {
        AgentId::parse(agent_id).map_err(|e| CommandError::InvalidArgument(e.to_string()))?;
        if !score.is_finite() || !(-1.0..=1.0).contains(&score) {
            return Err(CommandError::InvalidArgument("score must be within -1.0..1.0".to_owned()));
        }
        let note = note.unwrap_or_default();
        if note.chars().count() > NOTE_CHARS_MAX {
            return Err(CommandError::InvalidArgument(format!("note must be at most {NOTE_CHARS_MAX} characters")));
        }
        if !self.impressions.contains_key(agent_id) && self.impressions.len() >= IMPRESSIONS_MAX {
            return Err(CommandError::Limited(format!("At most {IMPRESSIONS_MAX} impressions")));
        }
        let imp = Impression { score, note: truncate_chars(&note, NOTE_CHARS_MAX), updated_at: self.now.iso() };
        let change = Change::put(Table::Impressions, agent_id, &imp);
        self.impressions.insert(agent_id.to_owned(), imp);
        self.persist(vec![change]);
        Ok(json!({"agent_id": agent_id, "score": score, "note": note}))
    }

    pub(crate) fn cmd_get_impression(&self, agent_id: &str) -> Value {
        match self.impressions.get(agent_id) {
            Some(i) => json!({"agent_id": agent_id, "has_impression": true, "score": i.score, "note": i.note, "updated_at": i.updated_at}),
            None => json!({"agent_id": agent_id, "has_impression": false}),
        }
    }

    pub(crate) fn on_impression_query(&mut self, _agent_id: &str) -> Result<Vec<u8>, Refusal> {
        self.admit_global()?;
        Err(Refusal::Unauthorized("Impressions are private; unauthenticated queries are not answered".to_owned()))
    }
}

fn effective(limit: RateLimit, default: u32) -> Value {
    match limit {
        RateLimit::Default => json!(default),
        RateLimit::PerWindow(n) => json!(n),
        RateLimit::Unlimited => Value::Null,
    }
}
