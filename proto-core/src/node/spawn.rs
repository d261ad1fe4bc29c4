//! Node glue for spawning: which inputs wake an agent, and the facts it is given. The decisions
//! (limits, waiting) are [`crate::spawn::Spawner`]'s.

use serde_json::Value;

use crate::error::CommandError;
use crate::identity::truncate_chars;
use crate::io::{Event, Output};
use crate::limits::{SPAWN_CONTEXT_LINES_MAX, SPAWN_CONTEXT_LINE_CHARS_MAX, SPAWN_RESPAWN_AGE_S_MAX};
use crate::node::Node;
use crate::output::SpawningSet;
use crate::spawn::{ContextLine, SpawnId, SpawnOutcome, SpawnRequest, SpawnTrigger, Waiting};
use crate::store::InboxMessage;
use crate::time::{parse_iso, Now};

impl Node {
    /// A spawned agent ended (or never started): frees its slot, so a waiting message may spawn.
    /// An unknown or already reported id changes nothing.
    pub fn handle_spawn_exit(&mut self, now: Now, spawn_id: SpawnId, outcome: SpawnOutcome) {
        self.now = now;
        let Some(key) = self.spawner.finish(spawn_id) else { return };
        match outcome {
            SpawnOutcome::Exited { .. } => {}
            SpawnOutcome::TimedOut => {
                let reason = "timed out; its process group was killed".to_owned();
                self.emit(Event::SpawnFailed { key, reason });
            }
            SpawnOutcome::FailedToStart { reason } => self.emit(Event::SpawnFailed { key, reason }),
        }
        self.retry_waiting();
    }

    /// Live spawned agents.
    pub fn spawned_agents(&self) -> usize {
        self.spawner.live_count()
    }

    /// Whether agent spawning is on.
    pub fn spawning_enabled(&self) -> bool {
        self.spawner.enabled()
    }

    /// The user switched spawning on or off. Switching on wakes agents for the messages queued
    /// meanwhile (as a restart would) and retries the waiting triggers.
    pub(crate) fn cmd_set_spawning(&mut self, on: bool) -> Result<SpawningSet, CommandError> {
        if !self.spawner.switch(on) {
            return Err(CommandError::InvalidArgument(
                "This node has no spawn settings: spawning is configured at start (DARKMATTER_AGENT_ENABLED)"
                    .to_owned(),
            ));
        }
        let before = self.spawner.live_count();
        if on {
            self.retry_waiting();
            self.respawn_queued();
        }
        let live = self.spawner.live_count();
        Ok(SpawningSet { spawning: self.spawner.enabled(), live, started: live - before })
    }

    /// A message entered the inbox: a direct one (not a broadcast) from a connection wakes an agent.
    pub(crate) fn spawn_for_message(&mut self, message_id: &str, sender: &str, is_broadcast: bool) {
        if is_broadcast || !self.connections.contains_key(sender) {
            return;
        }
        let trigger = SpawnTrigger::Message { message_id: message_id.to_owned() };
        self.offer_spawn(trigger, sender.to_owned(), true);
    }

    /// A pending request may have become proven: a proven one wakes an agent (once an hour per
    /// requester, see [`crate::spawn`]); an unproven one never does, so a flood of throwaway requests
    /// costs no spawns.
    pub(crate) fn spawn_for_request(&mut self, request_id: &str) {
        let Some(p) = self.connections.pending(request_id).filter(|p| p.identity_verified) else { return };
        // Our peers are still being asked: the agent wakes when their answers are in (the query's end
        // calls this again), so its prompt carries the trust they moved.
        if p.peer_trust.as_ref().is_some_and(|t| !t.complete()) {
            return;
        }
        let trigger = SpawnTrigger::ConnectionRequest { request_id: request_id.to_owned(), bio: p.bio.clone() };
        let sender = p.agent_id.as_str().to_owned();
        self.offer_spawn(trigger, sender, true);
    }

    /// A request that is, or just became, proven: our peers are asked about the requester first, and
    /// the agent wakes when that query ends ([`Node::spawn_for_request`]); a request whose query ran
    /// before (a repeated request) may wake one now.
    pub(crate) fn ask_then_spawn(&mut self, request_id: &str) {
        let asked_before = self.connections.pending(request_id).is_some_and(|p| p.peer_trust.is_some());
        self.start_trust_query(request_id);
        if asked_before {
            self.spawn_for_request(request_id);
        }
    }

    /// At start-up: messages from connections queued at most [`SPAWN_RESPAWN_AGE_S_MAX`] ago wake an
    /// agent again, oldest first (their first agent died with the node).
    pub(crate) fn respawn_queued(&mut self) {
        if !self.spawner.enabled() {
            return;
        }
        let oldest_us = self.now.wall_us - (SPAWN_RESPAWN_AGE_S_MAX as i64) * 1_000_000;
        let due: Vec<(String, String, bool)> = self
            .inbox
            .sorted()
            .into_iter()
            .filter(|m| m.from_connection && parse_iso(&m.received_at).is_some_and(|t| t >= oldest_us))
            .map(|m| (m.message_id.clone(), m.from_agent_id.clone(), is_broadcast(m)))
            .collect();
        for (message_id, sender, broadcast) in due {
            self.spawn_for_message(&message_id, &sender, broadcast);
        }
    }

    /// Retries waiting triggers when the hour window frees a start.
    pub(crate) fn spawn_timers(&mut self) {
        if self.spawner.next_retry_ms().is_some_and(|t| self.now.mono_ms >= t) {
            self.retry_waiting();
        }
    }

    /// Offers every waiting trigger again, oldest first; those whose message was consumed (or whose
    /// request was settled) meanwhile are dropped. A refusal already reported is not reported again.
    fn retry_waiting(&mut self) {
        for w in self.spawner.take_waiting() {
            if self.still_wanted(&w.trigger) {
                self.offer_spawn(w.trigger, w.sender, false);
            }
        }
    }

    fn still_wanted(&self, trigger: &SpawnTrigger) -> bool {
        match trigger {
            SpawnTrigger::Message { message_id } => self.inbox.contains(message_id),
            SpawnTrigger::ConnectionRequest { request_id, .. } => {
                self.connections.pending(request_id).is_some_and(|p| p.identity_verified)
            }
        }
    }

    /// Starts an agent for `trigger` if the limits allow; else it waits (and, when `report`, the
    /// refusal becomes an [`Event::SpawnRefused`]).
    fn offer_spawn(&mut self, trigger: SpawnTrigger, sender: String, report: bool) {
        if !self.spawner.enabled() {
            return;
        }
        match self.spawner.try_start(self.now.mono_ms, &trigger, &sender) {
            Ok(spawn_id) => {
                let request = self.spawn_request(spawn_id, trigger, sender);
                self.push(Output::Spawn(request));
            }
            Err(refusal) if refusal.waits() => {
                if report {
                    self.emit(Event::SpawnRefused { key: trigger.key().to_owned(), reason: refusal.to_string() });
                }
                self.spawner.wait(Waiting { trigger, sender });
            }
            Err(_) => {}
        }
    }

    /// The facts a spawned agent's prompt is built from.
    fn spawn_request(&self, spawn_id: SpawnId, trigger: SpawnTrigger, sender_id: String) -> SpawnRequest {
        let sender_name = match &trigger {
            SpawnTrigger::ConnectionRequest { request_id, .. } => {
                self.connections.pending(request_id).map(|p| p.display_name.clone())
            }
            SpawnTrigger::Message { .. } => self.connections.get(&sender_id).map(|c| c.display_name.clone()),
        };
        let exclude = match &trigger {
            SpawnTrigger::Message { message_id } => Some(message_id.as_str()),
            SpawnTrigger::ConnectionRequest { .. } => None,
        };
        let context = self
            .memory
            .best(self.now.wall_us, exclude, SPAWN_CONTEXT_LINES_MAX)
            .into_iter()
            .map(|(_, e)| ContextLine {
                at_us: e.at_us,
                direction: e.direction.clone(),
                kind: e.kind.clone(),
                peer: e.peer.clone(),
                peer_name: self.connections.get(&e.peer).map(|c| c.display_name.clone()).unwrap_or_default(),
                to_agent_ids: e.to_agent_ids.clone(),
                excerpt: truncate_chars(&e.content, SPAWN_CONTEXT_LINE_CHARS_MAX),
            })
            .collect();
        SpawnRequest {
            spawn_id,
            sender_trust: self.trust_of(&sender_id),
            sender_name: sender_name.unwrap_or_default(),
            sender_id,
            trigger,
            context,
        }
    }
}

/// Whether a queued message is a broadcast (its metadata says so).
fn is_broadcast(m: &InboxMessage) -> bool {
    serde_json::from_str::<Value>(&m.metadata_json).is_ok_and(|v| v["type"] == "broadcast")
}
