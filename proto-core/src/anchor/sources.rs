//! Per-source budgets of the anchor, and the poll log that makes each poll signature good once per
//! mailbox.
//!
//! A source is the TCP peer address the driver saw (an IPv6 address counted by its /64), never a
//! header a client wrote: 0.5.3 counts `X-Forwarded-For`, which any client sets.

use core::net::IpAddr;
use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::mailboxes::Kind;
use crate::limits::{
    RateWindow, ANCHOR_POLLS_PER_MAILBOX_MAX, ANCHOR_POSTS_PER_SOURCE, ANCHOR_PROBES_PER_SOURCE,
    ANCHOR_REGISTRATIONS_PER_SOURCE, ANCHOR_SOURCES_MAX, ANCHOR_SOURCE_WINDOW_MS, FRESHNESS_WINDOW_S,
};

/// What a source spends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spend {
    /// A registration (`peer_update`).
    Registration,
    /// A post to any mailbox.
    Post,
    /// A reachability probe (one outbound GET by the anchor).
    Probe,
}

#[derive(Debug, Default)]
struct Windows {
    registrations: RateWindow,
    posts: RateWindow,
    probes: RateWindow,
    last_ms: u64,
}

/// The windows of at most [`ANCHOR_SOURCES_MAX`] sources.
#[derive(Debug, Default)]
pub struct Budgets {
    sources: HashMap<IpAddr, Windows>,
}

impl Budgets {
    /// Spends one `what` of `source` at `now_ms`; `false` = over its budget (nothing is spent).
    pub fn spend(&mut self, source: IpAddr, what: Spend, now_ms: u64) -> bool {
        let source = crate::url::source_prefix(source);
        if !self.sources.contains_key(&source) && self.sources.len() >= ANCHOR_SOURCES_MAX {
            self.evict_least_recent();
        }
        let windows = self.sources.entry(source).or_default();
        windows.last_ms = now_ms;
        let (window, max) = match what {
            Spend::Registration => (&mut windows.registrations, ANCHOR_REGISTRATIONS_PER_SOURCE),
            Spend::Post => (&mut windows.posts, ANCHOR_POSTS_PER_SOURCE),
            Spend::Probe => (&mut windows.probes, ANCHOR_PROBES_PER_SOURCE),
        };
        if !window.has_room(now_ms, ANCHOR_SOURCE_WINDOW_MS, max) {
            return false;
        }
        window.record(now_ms);
        debug_assert!(self.sources.len() <= ANCHOR_SOURCES_MAX);
        true
    }

    fn evict_least_recent(&mut self) {
        if let Some(oldest) = self.sources.iter().min_by_key(|(_, w)| w.last_ms).map(|(ip, _)| *ip) {
            self.sources.remove(&oldest);
        }
    }
}

/// One remembered poll: who polled which mailbox with which signed timestamp, until when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollSeen {
    /// The polling agent.
    pub agent_id: String,
    /// The mailbox polled.
    pub kind: Kind,
    /// The signed timestamp, Unix microseconds.
    pub stamp_us: i64,
    /// When it may be forgotten (the timestamp is no longer fresh), Unix microseconds.
    pub expires_us: i64,
}

/// Why a poll was refused by the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PollError {
    /// This mailbox was already polled with this signed timestamp.
    #[error("Replayed poll")]
    Replayed,
    /// [`ANCHOR_POLLS_PER_MAILBOX_MAX`] polls of this mailbox are still within the freshness window.
    #[error("Too many polls; slow down")]
    TooMany,
}

/// The polls seen within the freshness window, by (agent, mailbox). Keyed per mailbox because 0.5.3
/// signs one `relay_poll` timestamp and uses it for two or three mailboxes in a row.
#[derive(Debug, Default)]
pub struct PollLog {
    seen: HashMap<(String, Kind), VecDeque<PollSeen>>,
}

impl PollLog {
    /// Records a poll; the second element lists polls forgotten on the way (to delete).
    pub fn record(
        &mut self,
        agent_id: &str,
        kind: Kind,
        stamp_us: i64,
        now_us: i64,
    ) -> (Result<PollSeen, PollError>, Vec<PollSeen>) {
        let key = (agent_id.to_owned(), kind);
        let log = self.seen.entry(key).or_default();
        let mut forgotten = Vec::new();
        while let Some(pos) = log.iter().position(|p| p.expires_us < now_us) {
            forgotten.extend(log.remove(pos));
        }
        if log.iter().any(|p| p.stamp_us == stamp_us) {
            return (Err(PollError::Replayed), forgotten);
        }
        if log.len() >= ANCHOR_POLLS_PER_MAILBOX_MAX {
            return (Err(PollError::TooMany), forgotten);
        }
        let window_us = (FRESHNESS_WINDOW_S as i64) * 1_000_000;
        let seen = PollSeen { agent_id: agent_id.to_owned(), kind, stamp_us, expires_us: stamp_us + window_us };
        log.push_back(seen.clone());
        (Ok(seen), forgotten)
    }

    /// Takes back a remembered poll at start-up; `false` if it can be forgotten.
    pub fn restore(&mut self, seen: PollSeen, now_us: i64) -> bool {
        let log = self.seen.entry((seen.agent_id.clone(), seen.kind)).or_default();
        if seen.expires_us < now_us || log.len() >= ANCHOR_POLLS_PER_MAILBOX_MAX {
            return false;
        }
        log.push_back(seen);
        true
    }

    /// Forgets every poll whose timestamp is no longer fresh; returns them (to delete).
    pub fn expire(&mut self, now_us: i64) -> Vec<PollSeen> {
        let mut forgotten = Vec::new();
        self.seen.retain(|_, log| {
            log.retain(|p| {
                let keep = p.expires_us >= now_us;
                if !keep {
                    forgotten.push(p.clone());
                }
                keep
            });
            !log.is_empty()
        });
        forgotten
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poll_signature_is_good_once_per_mailbox() {
        let mut log = PollLog::default();
        assert!(log.record("a", Kind::Webhook, 5, 5).0.is_ok());
        assert_eq!(log.record("a", Kind::Webhook, 5, 6).0, Err(PollError::Replayed));
        // 0.5.3 reuses the signature on its connection poll: that is a different mailbox.
        assert!(log.record("a", Kind::Connection, 5, 6).0.is_ok());
        assert!(log.record("b", Kind::Webhook, 5, 6).0.is_ok());
    }

    #[test]
    fn polls_per_mailbox_cap_edge() {
        let mut log = PollLog::default();
        for i in 0..ANCHOR_POLLS_PER_MAILBOX_MAX as i64 {
            assert!(log.record("a", Kind::Message, i, i).0.is_ok());
        }
        let n = ANCHOR_POLLS_PER_MAILBOX_MAX as i64;
        assert_eq!(log.record("a", Kind::Message, n, n).0, Err(PollError::TooMany));
        // Once the first poll's timestamp is stale it is forgotten and there is room again.
        let later = (FRESHNESS_WINDOW_S as i64) * 1_000_000 + 1;
        let (ok, forgotten) = log.record("a", Kind::Message, later, later);
        assert!(ok.is_ok());
        assert_eq!(forgotten.len(), 1);
    }

    #[test]
    fn registrations_per_source_edge_and_sources_apart() {
        let mut b = Budgets::default();
        let (one, two) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        for _ in 0..ANCHOR_REGISTRATIONS_PER_SOURCE {
            assert!(b.spend(one, Spend::Registration, 0));
        }
        assert!(!b.spend(one, Spend::Registration, 0));
        assert!(b.spend(one, Spend::Post, 0), "posts have their own budget");
        assert!(b.spend(two, Spend::Registration, 0), "another source is not charged");
        assert!(b.spend(one, Spend::Registration, ANCHOR_SOURCE_WINDOW_MS));
    }

    #[test]
    fn posts_per_source_edge() {
        let mut b = Budgets::default();
        let one = IpAddr::from([10, 0, 0, 1]);
        for _ in 0..ANCHOR_POSTS_PER_SOURCE {
            assert!(b.spend(one, Spend::Post, 0));
        }
        assert!(!b.spend(one, Spend::Post, 1));
    }

    #[test]
    fn probes_per_source_edge() {
        let mut b = Budgets::default();
        let one = IpAddr::from([10, 0, 0, 1]);
        for _ in 0..ANCHOR_PROBES_PER_SOURCE {
            assert!(b.spend(one, Spend::Probe, 0));
        }
        assert!(!b.spend(one, Spend::Probe, 1));
        assert!(b.spend(one, Spend::Post, 1), "posts have their own budget");
        assert!(b.spend(one, Spend::Probe, ANCHOR_SOURCE_WINDOW_MS));
    }

    #[test]
    fn sources_table_is_bounded() {
        let mut b = Budgets::default();
        for i in 0..(ANCHOR_SOURCES_MAX as u32 + 10) {
            assert!(b.spend(IpAddr::from(i.to_be_bytes()), Spend::Post, u64::from(i)));
        }
        assert_eq!(b.sources.len(), ANCHOR_SOURCES_MAX);
    }
}
