//! `Spawner`: when the node wakes an agent to handle something while its user is away.
//!
//! The core decides; the runtime starts the process. A trigger is a queued message from a connection
//! (never a broadcast, never a stranger's message) or a connection request whose requester proved its
//! key. Each start is checked against four limits, in this order:
//! - one live child per message (or request) id: a second trigger for the same id is ignored;
//! - a requester gets one spawn per [`SPAWN_REQUESTER_QUIET_MS`], so repeating a request costs nothing;
//! - at most [`SpawnConfig::concurrent_max`] live children;
//! - at most [`SpawnConfig::per_hour_max`] starts in a sliding hour, and at most
//!   [`SpawnConfig::per_sender_per_hour_max`] of them for one sender (so one chatty peer cannot use the
//!   whole budget), both counted at start time on the monotonic clock.
//!
//! A start refused by a limit leaves the message queued in the inbox and waits here
//! ([`SPAWN_WAITING_MAX`]); it is tried again when a child exits or when the hour window moves on. The
//! refusal texts of the first two limits are 0.5.3's, which users already grep their logs for.
//!
//! What a child is told (the sender, our trust in it, the relevant memory) leaves as facts in a
//! [`SpawnRequest`]; the prompt's words are the runtime's concern.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;
use thiserror::Error;

use crate::limits::{
    SPAWN_CONCURRENT_DEFAULT, SPAWN_PER_HOUR_DEFAULT, SPAWN_PER_SENDER_PER_HOUR_DEFAULT, SPAWN_REQUESTER_QUIET_MS,
    SPAWN_WAITING_MAX, SPAWN_WINDOW_MS,
};

/// Spawning settings (`DARKMATTER_AGENT_*`). `None` in [`crate::node::Config::spawn`] turns spawning off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpawnConfig {
    /// Live children at most (`DARKMATTER_AGENT_MAX_CONCURRENT`).
    pub concurrent_max: usize,
    /// Starts per sliding hour at most (`DARKMATTER_AGENT_MAX_PER_HOUR`); 0 never starts one.
    pub per_hour_max: usize,
    /// Starts per sliding hour for one sender at most.
    pub per_sender_per_hour_max: usize,
}

impl Default for SpawnConfig {
    fn default() -> Self {
        Self {
            concurrent_max: SPAWN_CONCURRENT_DEFAULT,
            per_hour_max: SPAWN_PER_HOUR_DEFAULT,
            per_sender_per_hour_max: SPAWN_PER_SENDER_PER_HOUR_DEFAULT,
        }
    }
}

/// Names one spawned child; chosen by the node, echoed in [`crate::Node::handle_spawn_exit`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct SpawnId(pub u64);

/// What a child is woken for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum SpawnTrigger {
    /// A message waiting in the inbox.
    Message {
        /// Its id.
        message_id: String,
    },
    /// A pending connection request whose requester proved its key.
    ConnectionRequest {
        /// The pending request.
        request_id: String,
        /// The requester's bio (its words: untrusted).
        bio: String,
    },
}

impl SpawnTrigger {
    /// The message or request id: at most one live child per id.
    pub fn key(&self) -> &str {
        match self {
            Self::Message { message_id } => message_id,
            Self::ConnectionRequest { request_id, .. } => request_id,
        }
    }
}

/// One line of the conversation memory a child gets, most relevant first.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ContextLine {
    /// When (wall µs).
    pub at_us: i64,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// `direct`, `broadcast`, `reply` or `forward`.
    pub kind: String,
    /// The other side: sender when inbound, first recipient when outbound.
    pub peer: String,
    /// That side's display name when it is a connection (else empty).
    pub peer_name: String,
    /// All recipients when outbound.
    pub to_agent_ids: Vec<String>,
    /// The text, cut to [`crate::limits::SPAWN_CONTEXT_LINE_CHARS_MAX`].
    pub excerpt: String,
}

/// Start a child agent for this; report its end with [`crate::Node::handle_spawn_exit`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SpawnRequest {
    /// Echo this when the child ends.
    pub spawn_id: SpawnId,
    /// What the child handles.
    pub trigger: SpawnTrigger,
    /// Who sent the message or asked to connect.
    pub sender_id: String,
    /// Their display name as we know it (empty when unknown).
    pub sender_name: String,
    /// Our trust score of the sender, −1 … 1.
    pub sender_trust: f64,
    /// The relevant memory ranked by recency × trust, best first, at most
    /// [`crate::limits::SPAWN_CONTEXT_LINES_MAX`] lines.
    pub context: Vec<ContextLine>,
}

/// How a child ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpawnOutcome {
    /// It exited by itself (`code` is `None` when a signal ended it).
    Exited {
        /// Exit status.
        code: Option<i32>,
    },
    /// It ran past its time and its process group was killed.
    TimedOut,
    /// It never ran (command not found, a config file it needs is unreadable, …).
    FailedToStart {
        /// Why, for the user.
        reason: String,
    },
}

/// Why a start was refused.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum SpawnRefusal {
    /// A child is already handling this message or request.
    #[error("An agent is already handling {0}")]
    AlreadyLive(String),
    /// This requester already woke an agent within the quiet period.
    #[error("An agent was already started for this requester within the hour")]
    RequesterRecent,
    /// Live children are at [`SpawnConfig::concurrent_max`] (0.5.3's text).
    #[error("Concurrency limit reached ({live}/{max})")]
    Concurrency {
        /// Live children.
        live: usize,
        /// The limit.
        max: usize,
    },
    /// Starts in the last hour are at [`SpawnConfig::per_hour_max`] (0.5.3's text).
    #[error("Hourly rate limit reached ({count}/{max})")]
    Hourly {
        /// Starts in the window.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// This sender's starts in the last hour are at [`SpawnConfig::per_sender_per_hour_max`].
    #[error("Per-sender hourly limit reached ({count}/{max})")]
    Sender {
        /// The sender's starts in the window.
        count: usize,
        /// The limit.
        max: usize,
    },
}

impl SpawnRefusal {
    /// Whether the trigger should wait for room (a limit), rather than be dropped.
    pub fn waits(&self) -> bool {
        matches!(self, Self::Concurrency { .. } | Self::Hourly { .. } | Self::Sender { .. })
    }
}

/// A trigger that waits for room, with its sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Waiting {
    pub(crate) trigger: SpawnTrigger,
    pub(crate) sender: String,
}

/// A live child.
#[derive(Clone, Debug)]
struct Live {
    key: String,
}

/// The spawn decisions: live children, the hour's starts, requesters recently spawned for, and the
/// triggers waiting for room.
#[derive(Debug, Default)]
pub(crate) struct Spawner {
    config: Option<SpawnConfig>,
    /// Switched off at run time by the node's user ([`crate::Command::SetSpawning`]); not kept across
    /// restarts: at start the configuration decides.
    switched_off: bool,
    /// At most `concurrent_max` entries.
    live: BTreeMap<SpawnId, Live>,
    /// `(start ms, sender)` of the starts within [`SPAWN_WINDOW_MS`]: at most `per_hour_max`.
    starts: VecDeque<(u64, String)>,
    /// Requester → last start for it within [`SPAWN_REQUESTER_QUIET_MS`]; each entry is also a start
    /// in `starts`, so it is at most `per_hour_max` long.
    requesters: BTreeMap<String, u64>,
    /// At most [`SPAWN_WAITING_MAX`] entries, oldest first.
    waiting: VecDeque<Waiting>,
    next_id: u64,
}

impl Spawner {
    /// A spawner with these settings (`None`: spawning off).
    pub(crate) fn new(config: Option<SpawnConfig>) -> Self {
        Self { config, next_id: 1, ..Self::default() }
    }

    /// Whether spawning is on: configured and not switched off.
    pub(crate) fn enabled(&self) -> bool {
        self.config.is_some() && !self.switched_off
    }

    /// Whether this node spawns at all (it has spawn settings), on or switched off.
    pub(crate) fn configured(&self) -> bool {
        self.config.is_some()
    }

    /// Switches spawning on or off; `false` when the node has no spawn settings (nothing to switch).
    /// Live children keep running: switching off only stops new starts.
    pub(crate) fn switch(&mut self, on: bool) -> bool {
        if self.config.is_none() {
            return false;
        }
        self.switched_off = !on;
        true
    }

    /// Live children.
    pub(crate) fn live_count(&self) -> usize {
        self.live.len()
    }

    /// Starts a child for `trigger` from `sender` at `now_ms` if every limit allows it.
    pub(crate) fn try_start(
        &mut self,
        now_ms: u64,
        trigger: &SpawnTrigger,
        sender: &str,
    ) -> Result<SpawnId, SpawnRefusal> {
        self.forget_old(now_ms);
        let Some(config) = &self.config else {
            // Callers check `enabled` first; an off spawner never starts anything.
            return Err(SpawnRefusal::Hourly { count: 0, max: 0 });
        };
        let key = trigger.key();
        if self.live.values().any(|l| l.key == key) {
            return Err(SpawnRefusal::AlreadyLive(key.to_owned()));
        }
        let is_request = matches!(trigger, SpawnTrigger::ConnectionRequest { .. });
        if is_request && self.requesters.contains_key(sender) {
            return Err(SpawnRefusal::RequesterRecent);
        }
        if self.live.len() >= config.concurrent_max {
            return Err(SpawnRefusal::Concurrency { live: self.live.len(), max: config.concurrent_max });
        }
        if self.starts.len() >= config.per_hour_max {
            return Err(SpawnRefusal::Hourly { count: self.starts.len(), max: config.per_hour_max });
        }
        let from_sender = self.starts.iter().filter(|(_, s)| s == sender).count();
        if from_sender >= config.per_sender_per_hour_max {
            return Err(SpawnRefusal::Sender { count: from_sender, max: config.per_sender_per_hour_max });
        }
        let id = SpawnId(self.next_id);
        self.next_id += 1;
        self.live.insert(id, Live { key: key.to_owned() });
        self.starts.push_back((now_ms, sender.to_owned()));
        if is_request {
            self.requesters.insert(sender.to_owned(), now_ms);
        }
        debug_assert!(self.live.len() <= config.concurrent_max);
        debug_assert!(self.starts.len() <= config.per_hour_max);
        Ok(id)
    }

    /// Drops starts and requesters older than their windows.
    fn forget_old(&mut self, now_ms: u64) {
        while self.starts.front().is_some_and(|(t, _)| t + SPAWN_WINDOW_MS <= now_ms) {
            self.starts.pop_front();
        }
        self.requesters.retain(|_, t| *t + SPAWN_REQUESTER_QUIET_MS > now_ms);
    }

    /// A child ended: frees its slot. Returns the message or request id it handled (`None`: unknown id).
    pub(crate) fn finish(&mut self, id: SpawnId) -> Option<String> {
        self.live.remove(&id).map(|l| l.key)
    }

    /// Keeps a trigger refused by a limit until there is room. A trigger already waiting is kept once;
    /// past [`SPAWN_WAITING_MAX`] the newest is not kept (its message stays in the inbox regardless).
    pub(crate) fn wait(&mut self, waiting: Waiting) {
        if self.waiting.len() >= SPAWN_WAITING_MAX
            || self.waiting.iter().any(|w| w.trigger.key() == waiting.trigger.key())
        {
            return;
        }
        self.waiting.push_back(waiting);
    }

    /// Takes every waiting trigger, oldest first (the caller offers each again and returns the ones
    /// still refused with [`Spawner::wait`]).
    pub(crate) fn take_waiting(&mut self) -> Vec<Waiting> {
        self.waiting.drain(..).collect()
    }

    /// When the hour window next frees a start, if a trigger waits (a child's exit frees a slot by
    /// itself, through the node).
    pub(crate) fn next_retry_ms(&self) -> Option<u64> {
        if self.waiting.is_empty() {
            return None;
        }
        self.starts.front().map(|(t, _)| t + SPAWN_WINDOW_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str) -> SpawnTrigger {
        SpawnTrigger::Message { message_id: id.to_owned() }
    }

    fn req(id: &str) -> SpawnTrigger {
        SpawnTrigger::ConnectionRequest { request_id: id.to_owned(), bio: String::new() }
    }

    fn on(concurrent_max: usize, per_hour_max: usize, per_sender_per_hour_max: usize) -> Spawner {
        Spawner::new(Some(SpawnConfig { concurrent_max, per_hour_max, per_sender_per_hour_max }))
    }

    #[test]
    fn concurrency_admits_exactly_the_limit_and_an_exit_frees_a_slot() {
        let mut s = Spawner::new(Some(SpawnConfig::default()));
        let a = s.try_start(0, &msg("m1"), "p1").unwrap();
        s.try_start(0, &msg("m2"), "p2").unwrap();
        let refused = s.try_start(0, &msg("m3"), "p3").unwrap_err();
        assert_eq!(refused.to_string(), "Concurrency limit reached (2/2)");
        assert!(refused.waits());
        assert_eq!(s.finish(a).as_deref(), Some("m1"));
        assert_eq!(s.finish(a), None, "an exit is counted once");
        assert!(s.try_start(1, &msg("m3"), "p3").is_ok());
    }

    #[test]
    fn the_hour_admits_exactly_the_limit_and_slides() {
        let mut s = on(64, 15, 100);
        for i in 0..15 {
            let id = s.try_start(i * 1_000, &msg(&format!("m{i}")), &format!("p{i}")).unwrap();
            s.finish(id);
        }
        let refused = s.try_start(20_000, &msg("m15"), "p15").unwrap_err();
        assert_eq!(refused.to_string(), "Hourly rate limit reached (15/15)");
        // The first start leaves the window exactly one window after it.
        assert!(s.try_start(SPAWN_WINDOW_MS - 1, &msg("m15"), "p15").is_err());
        assert!(s.try_start(SPAWN_WINDOW_MS, &msg("m15"), "p15").is_ok());
    }

    #[test]
    fn zero_per_hour_never_starts() {
        let mut s = on(2, 0, 4);
        assert_eq!(s.try_start(0, &msg("m"), "p").unwrap_err(), SpawnRefusal::Hourly { count: 0, max: 0 });
    }

    #[test]
    fn one_sender_gets_its_share_of_the_hour_and_no_more() {
        let mut s = Spawner::new(Some(SpawnConfig::default()));
        for i in 0..SPAWN_PER_SENDER_PER_HOUR_DEFAULT {
            let id = s.try_start(0, &msg(&format!("m{i}")), "chatty").unwrap();
            s.finish(id);
        }
        let refused = s.try_start(0, &msg("more"), "chatty").unwrap_err();
        assert_eq!(refused, SpawnRefusal::Sender { count: 4, max: 4 });
        assert!(refused.waits());
        assert!(s.try_start(0, &msg("other"), "quiet").is_ok(), "other senders still get theirs");
    }

    #[test]
    fn one_live_child_per_message_id() {
        let mut s = Spawner::new(Some(SpawnConfig::default()));
        let a = s.try_start(0, &msg("m"), "p").unwrap();
        let refused = s.try_start(0, &msg("m"), "p").unwrap_err();
        assert_eq!(refused, SpawnRefusal::AlreadyLive("m".to_owned()));
        assert!(!refused.waits());
        s.finish(a);
        assert!(s.try_start(0, &msg("m"), "p").is_ok(), "after the child ended the id may spawn again");
    }

    #[test]
    fn a_requester_is_spawned_for_once_an_hour() {
        let mut s = on(64, 100, 100);
        let a = s.try_start(0, &req("r1"), "asker").unwrap();
        s.finish(a);
        assert_eq!(s.try_start(1, &req("r2"), "asker").unwrap_err(), SpawnRefusal::RequesterRecent);
        assert!(!SpawnRefusal::RequesterRecent.waits());
        assert!(s.try_start(SPAWN_REQUESTER_QUIET_MS - 1, &req("r2"), "asker").is_err());
        assert!(s.try_start(SPAWN_REQUESTER_QUIET_MS, &req("r2"), "asker").is_ok());
        // Messages from the same agent are not held back by its request.
        assert!(s.try_start(SPAWN_REQUESTER_QUIET_MS, &msg("m"), "asker").is_ok());
    }

    #[test]
    fn waiting_is_bounded_and_keeps_each_trigger_once() {
        let mut s = Spawner::new(Some(SpawnConfig::default()));
        assert_eq!(s.next_retry_ms(), None);
        s.wait(Waiting { trigger: msg("m"), sender: "p".into() });
        s.wait(Waiting { trigger: msg("m"), sender: "p".into() });
        for i in 0..SPAWN_WAITING_MAX + 5 {
            s.wait(Waiting { trigger: msg(&format!("x{i}")), sender: "p".into() });
        }
        let taken = s.take_waiting();
        assert_eq!(taken.len(), SPAWN_WAITING_MAX);
        assert_eq!(taken[0].trigger, msg("m"));
        assert!(s.take_waiting().is_empty());
    }

    #[test]
    fn a_waiting_trigger_is_retried_when_the_window_moves() {
        let mut s = on(2, 1, 4);
        let a = s.try_start(500, &msg("m1"), "p").unwrap();
        s.finish(a);
        s.wait(Waiting { trigger: msg("m2"), sender: "p".into() });
        assert_eq!(s.next_retry_ms(), Some(500 + SPAWN_WINDOW_MS));
    }

    #[test]
    fn a_switch_turns_a_configured_spawner_off_and_on_and_an_unconfigured_one_never_on() {
        let mut s = Spawner::new(Some(SpawnConfig::default()));
        assert!(s.switch(false));
        assert!(!s.enabled() && s.configured());
        assert!(s.switch(true));
        assert!(s.enabled());
        let mut none = Spawner::new(None);
        assert!(!none.switch(true));
        assert!(!none.enabled());
    }

    #[test]
    fn an_off_spawner_starts_nothing() {
        let mut s = Spawner::new(None);
        assert!(!s.enabled());
        assert!(s.try_start(0, &msg("m"), "p").is_err());
        assert_eq!(s.live_count(), 0);
    }
}
