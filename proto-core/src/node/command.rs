//! Node glue for local commands: routes each [`Command`] to the code that carries it out.

use crate::command::Command;

use crate::error::CommandError;
use crate::io::CommandId;
use crate::limits::{RateLimit, INACTIVE_MINUTES_MAX, RATE_GLOBAL_DEFAULT, RATE_PER_PEER_DEFAULT};
use crate::node::Node;
use crate::output::{
    Activity, ActivitySet, CommandOutput, ConnectionCounts, ConnectionList, ConnectionView, DiscoveredCounts,
    DiscoveredList, DiscoveredPeer, IdentityView, ImpressionBrief, MarkedShown, MemoryCounts, Opinion, PeerTrustView,
    PendingList, PendingView, ProvenBy, RateLimitSet, RateScope, StatusReport,
};
use crate::rate::effective_per_minute;
use crate::store::{Change, PendingIn, Table};
use crate::time::Now;

impl Node {
    /// A local command. Its result comes out as [`crate::io::Output::Done`] with the same id, now or
    /// once the peers involved have answered.
    pub fn handle_command(&mut self, now: Now, id: CommandId, command: Command) {
        self.now = now;
        match self.run_command(id, command) {
            Ok(Some(out)) => self.done(id, Ok(out)),
            Ok(None) => {}
            Err(e) => self.done(id, Err(e)),
        }
    }

    /// Carries a command out: its result now, or `None` when it completes later (a call to peers).
    fn run_command(&mut self, id: CommandId, command: Command) -> Result<Option<CommandOutput>, CommandError> {
        use CommandOutput as O;
        Ok(Some(match command {
            Command::Connect { target_url } => return self.cmd_connect(id, &target_url).map(|()| None),
            Command::Accept { request_id } => return self.cmd_accept(id, &request_id).map(|()| None),
            Command::Reject { request_id } => return self.cmd_reject(id, &request_id).map(|()| None),
            Command::Disconnect { agent_id } => return self.cmd_disconnect(id, &agent_id).map(|()| None),
            Command::Send(args) => return self.cmd_send(id, args).map(|()| None),
            Command::Forward(args) => return self.cmd_forward(id, args).map(|()| None),
            Command::WaitForResponse { message_id, timeout_ms } => {
                return self.cmd_wait(id, &message_id, timeout_ms).map(|()| None)
            }
            Command::DiscoverDomain { domain } => return self.cmd_discover_domain(id, &domain).map(|()| None),
            Command::DiscoverLocal => return Ok(self.cmd_discover_local(id).map(O::Scan)),
            Command::ListConnections => O::Connections(self.cmd_list_connections()),
            Command::ListPending => O::Pending(self.cmd_list_pending()),
            Command::ListInbox => O::Inbox(self.cmd_list_inbox()),
            Command::GetMessage { message_id, consume } => {
                O::Message(Box::new(self.cmd_get_message(&message_id, consume)?))
            }
            Command::ListSent => O::SentList(self.cmd_list_sent()),
            Command::GetSent { message_id } => O::Sent(Box::new(self.cmd_get_sent(&message_id)?)),
            Command::ExpireSent { message_id } => O::Expired(self.cmd_expire_sent(&message_id)?),
            Command::GetIdentity => O::Identity(Box::new(self.cmd_identity())),
            Command::UpdateBio { bio } => O::Bio(self.cmd_update_bio(&bio)?),
            Command::Rename { display_name } => O::Renamed(self.cmd_rename(&display_name)?),
            Command::SetStatus { active, duration_minutes } => {
                O::Activity(self.cmd_set_status(active, duration_minutes)?)
            }
            Command::SetUrl { url } => O::Url(self.cmd_set_url(&url)?),
            Command::SetSpawning { enabled } => O::Spawning(self.cmd_set_spawning(enabled)?),
            Command::SetImpression { agent_id, score, note } => {
                O::ImpressionSet(Box::new(self.cmd_set_impression(&agent_id, score, note)?))
            }
            Command::GetImpression { agent_id } => O::Impression(Box::new(self.cmd_get_impression(&agent_id))),
            Command::SetRateLimit { agent_id, limit } => {
                O::RateLimit(Box::new(self.cmd_set_rate_limit(agent_id.as_deref(), limit)?))
            }
            Command::Status => O::Status(Box::new(self.cmd_status())),
            Command::MarkShown { through } => {
                O::MarkedShown(MarkedShown { shown_through: self.memory.mark_shown(through) })
            }
            Command::NetworkInfo => O::NetworkInfo(Box::new(self.network_info())),
            Command::AntiMatterLog => O::AntiMatterLog(Box::new(self.cmd_antimatter_log())),
            Command::ListDiscovered => O::Discovered(DiscoveredList { discovered: self.discovered_peers() }),
            Command::CreateShard(args) => O::ShardSynced(self.cmd_create_shard(args)?),
            Command::UpdateShard { shard_id, args } => O::ShardSynced(self.cmd_update_shard(&shard_id, args)?),
            Command::DeleteShard { shard_id } => O::ShardSynced(self.cmd_delete_shard(&shard_id)?),
            Command::ViewShards { tags, author } => O::Shards(self.cmd_view_shards(&tags, author.as_deref())),
            Command::GetShard { shard_id, author } => {
                O::Shard(Box::new(self.cmd_get_shard(&shard_id, author.as_deref())?))
            }
            Command::ContextFeed { focus } => O::Feed(self.context_feed(focus.as_deref())),
            Command::Pool(pool) => return self.cmd_pool(id, *pool).map(|v| v.map(|v| O::Pool(Box::new(v)))),
        }))
    }

    /// Discovered peers as results list them.
    fn discovered_peers(&self) -> Vec<DiscoveredPeer> {
        self.discovered().iter().map(DiscoveredPeer::from).collect()
    }

    fn activity(&self) -> Activity {
        if self.is_inactive() {
            Activity::Inactive
        } else {
            Activity::Active
        }
    }

    fn cmd_identity(&self) -> IdentityView {
        let me = self.passport.agent_id().clone();
        IdentityView {
            agent_id: me.clone(),
            public_key_hex: me,
            display_name: self.profile.display_name.clone(),
            bio: self.profile.bio.clone(),
            url: self.config.public_url.clone(),
            status: self.activity(),
            created_at: self.profile.created_at.clone(),
            nat_detected: self.relay.enabled().then(|| self.relay.nat_detected()),
        }
    }

    fn cmd_list_connections(&self) -> ConnectionList {
        let connections: Vec<ConnectionView> = self
            .connections
            .values()
            .map(|c| ConnectionView {
                agent_id: c.agent_id.clone(),
                display_name: c.display_name.clone(),
                url: c.url.clone(),
                bio: c.bio.clone(),
                connected_at: c.connected_at.clone(),
                messages_sent: c.messages_sent,
                messages_received: c.messages_received,
                last_activity: c.last_activity.clone(),
                identity_verified: c.identity_verified,
                signed_form: c.speaks_v2,
                url_verified: self.url_verified(c.agent_id.as_str()),
                rate_limit: c.rate_limit.to_tool_value(),
                impression: self
                    .impressions
                    .get(c.agent_id.as_str())
                    .map(|i| ImpressionBrief { score: i.score, note: i.note.clone() }),
                wallets: c.wallets.clone(),
            })
            .collect();
        ConnectionList { total: connections.len(), max: self.connections.max(), connections }
    }

    fn cmd_list_pending(&self) -> PendingList {
        let mut v: Vec<_> = self.connections.pending_requests().collect();
        v.sort_by_key(|p| p.requested_us);
        let requests: Vec<PendingView> = v.into_iter().map(|p| self.pending_view(p)).collect();
        PendingList { total: requests.len(), requests }
    }

    fn pending_view(&self, p: &PendingIn) -> PendingView {
        let proven_by = if p.speaks_v2 {
            ProvenBy::SignedRequest
        } else if p.identity_verified {
            ProvenBy::ChallengeProof
        } else {
            ProvenBy::NotYet
        };
        PendingView {
            request_id: p.request_id.clone(),
            agent_id: p.agent_id.clone(),
            display_name: p.display_name.clone(),
            url: p.url.clone(),
            bio: p.bio.clone(),
            requested_at: p.requested_at.clone(),
            identity_verified: p.identity_verified,
            proven_by,
            our_impression: self.impressions.get(p.agent_id.as_str()).map(|i| i.score),
            peer_trust: p.peer_trust.as_ref().map(|t| PeerTrustView {
                asked: t.asked,
                answered: t.finished,
                complete: t.complete(),
                score: t.score,
                weight: t.weight,
                opinions: t
                    .opinions
                    .iter()
                    .map(|(peer, score, weight)| Opinion {
                        agent_id: peer.clone(),
                        display_name: self.connections.get(peer).map(|c| c.display_name.clone()),
                        their_score: *score,
                        your_trust_in_them: self.trust_of(peer),
                        counted: *weight,
                        vouched_for: self.vouches.spoken_for(peer, self.now.wall_us) as u32,
                    })
                    .collect(),
            }),
            policy_decides_from: self.policy_decides_from(p).map(crate::time::format_iso),
        }
    }

    fn cmd_set_status(&mut self, active: bool, duration_minutes: Option<u64>) -> Result<ActivitySet, CommandError> {
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
        Ok(ActivitySet { status: self.activity(), inactive_until: until })
    }

    fn cmd_status(&self) -> StatusReport {
        let discovered = self.discovered_peers();
        let awaiting: Vec<String> = self
            .sent
            .values()
            .filter(|s| s.status == crate::store::SentStatus::Active && s.kind != "forward")
            .map(|s| s.message_id.clone())
            .collect();
        // What is new since the agent last marked entries shown.
        let new_context = self.unshown_conversations();
        let me = self.me().to_owned();
        let own_shards = self.shards.values().filter(|s| s.author == me && !s.deleted).count();
        let peer_shards = self.shards.values().filter(|s| s.author != me && !s.deleted).count();
        StatusReport {
            new_context,
            memory: MemoryCounts { conversations: self.memory.len(), own_shards, peer_shards },
            identity: self.cmd_identity(),
            connections: ConnectionCounts { total: self.connections.len(), max: self.connections.max() },
            inbox: self.inbox.len(),
            pending_requests: self.connections.pending_count(),
            discovered: DiscoveredCounts { total: discovered.len(), peers: discovered },
            awaiting_replies: awaiting,
            // Only a node that spawns agents says how many run (R-C9).
            spawned_agents: self.spawner.configured().then(|| self.spawner.live_count()),
            antimatter: self.antimatter_status(),
        }
    }

    pub(crate) fn cmd_set_rate_limit(
        &mut self,
        agent_id: Option<&str>,
        value: i64,
    ) -> Result<RateLimitSet, CommandError> {
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
                let scope = RateScope::Peer { agent_id: conn.agent_id.clone() };
                let change = Change::put(Table::Connections, id, &*conn);
                self.persist(vec![change]);
                Ok(RateLimitSet {
                    scope,
                    limit: value,
                    effective_per_minute: effective_per_minute(limit, RATE_PER_PEER_DEFAULT),
                })
            }
            None => {
                self.profile.rate_global = limit;
                let change = Change::put(Table::Profile, "self", &self.profile);
                self.persist(vec![change]);
                let scope = RateScope::Global { scope: "global".to_owned() };
                Ok(RateLimitSet {
                    scope,
                    limit: value,
                    effective_per_minute: effective_per_minute(limit, RATE_GLOBAL_DEFAULT),
                })
            }
        }
    }
}
