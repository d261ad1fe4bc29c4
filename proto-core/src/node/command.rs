//! Node glue for local commands: routes each [`Command`] to the code that carries it out.

use crate::command::Command;
use serde_json::{json, Value};

use crate::error::CommandError;
use crate::io::CommandId;
use crate::limits::{RateLimit, INACTIVE_MINUTES_MAX, RATE_GLOBAL_DEFAULT, RATE_PER_PEER_DEFAULT};
use crate::node::Node;
use crate::rate::effective_per_minute;
use crate::store::{Change, Table};
use crate::time::Now;

impl Node {
    /// A local command. Its result comes out as [`crate::io::Output::Done`] with the same id, now or
    /// once the peers involved have answered.
    pub fn handle_command(&mut self, now: Now, id: CommandId, command: Command) {
        self.now = now;
        let immediate = match command {
            Command::Connect { target_url } => self.cmd_connect(id, &target_url).map(|()| None),
            Command::Accept { request_id } => self.cmd_accept(id, &request_id).map(|()| None),
            Command::Reject { request_id } => self.cmd_reject(id, &request_id).map(|()| None),
            Command::Disconnect { agent_id } => self.cmd_disconnect(id, &agent_id).map(|()| None),
            Command::Send(args) => self.cmd_send(id, args).map(|()| None),
            Command::Forward(args) => self.cmd_forward(id, args).map(|()| None),
            Command::WaitForResponse { message_id, timeout_ms } => {
                self.cmd_wait(id, &message_id, timeout_ms).map(|()| None)
            }
            Command::ListConnections => Ok(Some(self.cmd_list_connections())),
            Command::ListPending => Ok(Some(self.cmd_list_pending())),
            Command::ListInbox => Ok(Some(self.cmd_list_inbox())),
            Command::GetMessage { message_id, consume } => self.cmd_get_message(&message_id, consume).map(Some),
            Command::ListSent => Ok(Some(self.cmd_list_sent())),
            Command::GetSent { message_id } => self.cmd_get_sent(&message_id).map(Some),
            Command::ExpireSent { message_id } => self.cmd_expire_sent(&message_id).map(Some),
            Command::GetIdentity => Ok(Some(self.cmd_identity())),
            Command::UpdateBio { bio } => self.cmd_update_bio(&bio).map(Some),
            Command::SetStatus { active, duration_minutes } => self.cmd_set_status(active, duration_minutes).map(Some),
            Command::SetUrl { url } => self.cmd_set_url(&url).map(Some),
            Command::SetImpression { agent_id, score, note } => {
                self.cmd_set_impression(&agent_id, score, note).map(Some)
            }
            Command::GetImpression { agent_id } => Ok(Some(self.cmd_get_impression(&agent_id))),
            Command::SetRateLimit { agent_id, limit } => self.cmd_set_rate_limit(agent_id.as_deref(), limit).map(Some),
            Command::Status => Ok(Some(self.cmd_status())),
            Command::NetworkInfo => Ok(Some(serde_json::to_value(self.network_info()).expect("plain struct"))),
            Command::ListDiscovered => Ok(Some(json!({"discovered": self.discovered()}))),
            Command::DiscoverLocal => Ok(self.cmd_discover_local(id)),
            Command::DiscoverDomain { domain } => self.cmd_discover_domain(id, &domain).map(|()| None),
            Command::CreateShard(args) => self.cmd_create_shard(args).map(Some),
            Command::UpdateShard { shard_id, args } => self.cmd_update_shard(&shard_id, args).map(Some),
            Command::DeleteShard { shard_id } => self.cmd_delete_shard(&shard_id).map(Some),
            Command::ViewShards { tags, author } => Ok(Some(self.cmd_view_shards(&tags, author.as_deref()))),
            Command::GetShard { shard_id, author } => self.cmd_get_shard(&shard_id, author.as_deref()).map(Some),
            Command::ContextFeed { focus } => Ok(Some(self.context_feed(focus.as_deref()))),
        };
        match immediate {
            Ok(Some(v)) => self.done(id, Ok(v)),
            Ok(None) => {}
            Err(e) => self.done(id, Err(e)),
        }
    }

    fn cmd_identity(&self) -> Value {
        json!({
            "agent_id": self.me(), "public_key_hex": self.me(), "display_name": self.profile.display_name,
            "bio": self.profile.bio, "url": self.config.public_url, "status": self.status_word(),
            "created_at": self.profile.created_at,
        })
    }

    fn cmd_list_connections(&self) -> Value {
        let connections: Vec<Value> = self
            .connections
            .values()
            .map(|c| {
                json!({
                    "agent_id": c.agent_id.as_str(), "display_name": c.display_name, "url": c.url, "bio": c.bio,
                    "connected_at": c.connected_at, "messages_sent": c.messages_sent, "messages_received": c.messages_received,
                    "last_activity": c.last_activity, "identity_verified": c.identity_verified, "signed_form": c.speaks_v2,
                    "rate_limit": c.rate_limit.to_tool_value(),
                    "impression": self.impressions.get(c.agent_id.as_str()).map(|i| json!({"score": i.score, "note": i.note})),
                })
            })
            .collect();
        json!({"total": connections.len(), "max": self.config.max_connections, "connections": connections})
    }

    fn cmd_list_pending(&self) -> Value {
        let mut v: Vec<_> = self.pending_in.values().collect();
        v.sort_by_key(|p| p.requested_us);
        let requests: Vec<Value> = v
            .into_iter()
            .map(|p| {
                json!({
                    "request_id": p.request_id, "agent_id": p.agent_id.as_str(), "display_name": p.display_name,
                    "url": p.url, "bio": p.bio, "requested_at": p.requested_at, "identity_verified": p.identity_verified,
                    "proven_by": if p.speaks_v2 { "signed request" } else if p.identity_verified { "challenge proof (0.5.3)" } else { "not yet" },
                    "our_impression": self.impressions.get(p.agent_id.as_str()).map(|i| i.score),
                    "peer_trust": p.peer_trust.as_ref().map(|t| json!({
                        "asked": t.asked, "answered": t.finished, "complete": t.complete(), "score": t.score, "weight": t.weight,
                        "opinions": t.opinions.iter().map(|(peer, score, weight)| json!({
                            "agent_id": peer, "display_name": self.connections.get(peer).map(|c| c.display_name.clone()),
                            "their_score": score, "your_trust_in_them": weight,
                        })).collect::<Vec<_>>(),
                    })),
                })
            })
            .collect();
        json!({"total": requests.len(), "requests": requests})
    }

    fn cmd_set_status(&mut self, active: bool, duration_minutes: Option<u64>) -> Result<Value, CommandError> {
        if active {
            self.profile.inactive_until_us = None;
        } else {
            let until = match duration_minutes {
                Some(m) if m == 0 || m > INACTIVE_MINUTES_MAX => {
                    return Err(CommandError::InvalidArgument(format!(
                        "duration_minutes must be 1..={INACTIVE_MINUTES_MAX}"
                    )));
                }
                Some(m) => self.now.wall_us.saturating_add(m as i64 * 60_000_000),
                None => i64::MAX,
            };
            self.profile.inactive_until_us = Some(until);
        }
        let change = Change::put(Table::Profile, "self", &self.profile);
        self.persist(vec![change]);
        let until = self.profile.inactive_until_us.filter(|u| *u != i64::MAX).map(crate::time::format_iso);
        Ok(json!({"status": self.status_word(), "inactive_until": until}))
    }

    fn cmd_status(&mut self) -> Value {
        let discovered = self.discovered();
        let awaiting: Vec<&str> = self
            .sent
            .values()
            .filter(|s| s.status == crate::store::SentStatus::Active && s.kind != "forward")
            .map(|s| s.message_id.as_str())
            .collect();
        let mut actions = Vec::new();
        if self.is_inactive() {
            actions.push(
                "You are inactive: peers get 503. darkmatter_set_status(status=\"active\") to return.".to_owned(),
            );
        }
        if !self.pending_in.is_empty() {
            actions.push(format!(
                "{} connection request(s) waiting: darkmatter_list_pending_requests, then accept or reject.",
                self.pending_in.len()
            ));
        }
        if !self.inbox.is_empty() {
            actions.push(format!(
                "{} inbox message(s): darkmatter_list_inbox and reply (in_reply_to) or forward.",
                self.inbox.len()
            ));
        }
        if !awaiting.is_empty() {
            actions.push(format!(
                "{} message(s) awaiting replies: darkmatter_wait_for_response(message_id=\"{}\").",
                awaiting.len(),
                awaiting[0]
            ));
        }
        if self.connections.is_empty() {
            if discovered.is_empty() {
                actions.push("No connections: darkmatter_discover_local, or darkmatter_connection(action=\"request\", target_url=...).".to_owned());
            } else {
                actions.push(format!("No connections, {} agent(s) discovered: connect with darkmatter_connection(action=\"request\", target_url=...).", discovered.len()));
            }
        }
        let lan = discovered.iter().filter(|d| d.source == "lan").count();
        // What is new since the agent last looked.
        let new_context = self.unshown_conversations();
        self.memory.mark_shown();
        let me = self.me().to_owned();
        let own_shards = self.shards.values().filter(|s| s.author == me && !s.deleted).count();
        let peer_shards = self.shards.values().filter(|s| s.author != me && !s.deleted).count();
        if peer_shards > 0 {
            actions.push(format!("{peer_shards} peer shard(s): darkmatter_view_shards to explore."));
        }
        let mut status = json!({
            "new_context": new_context,
            "memory": {"conversations": self.memory.len(), "own_shards": own_shards, "peer_shards": peer_shards},
            "identity": self.cmd_identity(),
            "connections": {"total": self.connections.len(), "max": self.config.max_connections},
            "inbox": self.inbox.len(),
            "pending_requests": self.pending_in.len(),
            "discovered": {"total": discovered.len(), "summary": format!("{lan} agents discovered on LAN"), "peers": discovered},
            "awaiting_replies": awaiting,
            "suggested_actions": actions,
        });
        // Only a node that spawns agents says how many run (R-C9).
        if self.spawner.enabled() {
            status["spawned_agents"] = json!(self.spawner.live_count());
        }
        status
    }

    pub(crate) fn cmd_set_rate_limit(&mut self, agent_id: Option<&str>, value: i64) -> Result<Value, CommandError> {
        let limit = RateLimit::from_tool_value(value).ok_or_else(|| {
            CommandError::InvalidArgument(format!(
                "limit must be 0 (default), -1 (unlimited) or 1..={}",
                crate::limits::RATE_LIMIT_CEILING
            ))
        })?;
        match agent_id {
            Some(id) => {
                let Some(conn) = self.connections.get_mut(id) else {
                    return Err(CommandError::NotFound(format!("Not connected to '{id}'")));
                };
                conn.rate_limit = limit;
                let change = Change::put(Table::Connections, id, &*conn);
                self.persist(vec![change]);
                Ok(
                    json!({"agent_id": id, "limit": value, "effective_per_minute": effective_per_minute(limit, RATE_PER_PEER_DEFAULT)}),
                )
            }
            None => {
                self.profile.rate_global = limit;
                let change = Change::put(Table::Profile, "self", &self.profile);
                self.persist(vec![change]);
                Ok(
                    json!({"scope": "global", "limit": value, "effective_per_minute": effective_per_minute(limit, RATE_GLOBAL_DEFAULT)}),
                )
            }
        }
    }
}
