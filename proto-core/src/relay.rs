//! The anchor client's state (SPEC §20): which anchors we use, whether we are behind NAT, when we
//! register next, and the poll loop of each relay mailbox.
//!
//! A node reaches anchors only when configured. It registers (signed) at start, on every change of
//! URL or bio and every [`RELAY_REGISTER_INTERVAL_MS`]; it polls its mailboxes while it is behind
//! NAT and for [`RELAY_POLL_AFTER_UNREACHABLE_MS`] after it starts (what was buffered while it was down);
//! the message mailbox is long-polled, so a relayed message arrives as soon as it is posted.
//!
//! Relayed bodies are sealed end to end ([`crate::e2e`]) with randomness from an [`Entropy`] the
//! runtime passes in: the core's own generator is seeded (deterministic simulations) and a nonce
//! repeated under version 1's static key reveals the plaintexts' XOR and the Poly1305 key.

use crate::limits::{
    RELAY_ANCHORS_MAX, RELAY_LONG_POLL_S, RELAY_POLL_AFTER_UNREACHABLE_MS, RELAY_POLL_EMPTY_BEFORE_BACKOFF,
    RELAY_POLL_HELD_MS, RELAY_POLL_INTERVAL_MAX_MS, RELAY_POLL_INTERVAL_MS, RELAY_REGISTER_INTERVAL_MS,
};

/// The operating system's cryptographically secure random source, as the runtime provides it. The
/// core never fills a relay nonce or ephemeral key any other way (without one it does not relay);
/// AntiMatter's commit-reveal nonces come from it too (SPEC §21.3).
pub trait Entropy: Send + Sync {
    /// Fills `buf` with fresh random bytes, or says why it could not.
    fn fill(&self, buf: &mut [u8]) -> Result<(), String>;
}

/// The three mailboxes a node polls (the fourth, SDP, carries WebRTC signals we never use).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Mailbox {
    /// `message_relay`: sealed bodies (messages, acceptances, peer updates); long-polled.
    Message,
    /// `connection_relay`: acceptances a 0.5.3 peer could not deliver (plain, as 0.5.3 posts them).
    Connection,
    /// `webhook_relay`: webhook callbacks about messages we sent while behind NAT.
    Webhook,
}

impl Mailbox {
    /// Every polled mailbox.
    pub(crate) const ALL: [Mailbox; 3] = [Mailbox::Message, Mailbox::Connection, Mailbox::Webhook];

    /// The poll path's first segment, as the anchor serves it.
    pub(crate) fn poll_path(self) -> &'static str {
        match self {
            Mailbox::Message => "message_relay_poll",
            Mailbox::Connection => "connection_relay_poll",
            Mailbox::Webhook => "webhook_relay_poll",
        }
    }

    /// The `wait` asked for: only the message mailbox is long-polled.
    pub(crate) fn wait_s(self) -> Option<u64> {
        (self == Mailbox::Message).then_some(RELAY_LONG_POLL_S)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One mailbox's poll loop: one poll in flight at most, on an interval that backs off while empty.
#[derive(Clone, Debug, Default)]
struct PollLoop {
    /// When the poll in flight was sent (monotonic ms).
    in_flight_since_ms: Option<u64>,
    /// When the next poll is due.
    next_ms: u64,
    /// Anchors whose answer to the poll in flight is still awaited.
    outstanding: usize,
    /// Entries the answers so far brought.
    entries: usize,
    /// Some answer so far failed.
    failed: bool,
    /// Empty answers in a row.
    empty_streak: u32,
}

/// The anchor client.
#[derive(Debug, Default)]
pub(crate) struct Relay {
    anchors: Vec<String>,
    /// Our public URL is loopback or private: peers elsewhere cannot dial it.
    nat_detected: bool,
    /// Poll until then (monotonic ms) even when not behind NAT.
    poll_until_ms: u64,
    next_register_ms: Option<u64>,
    polls: [PollLoop; 3],
}

impl Relay {
    /// The client for `anchors` (base URLs, at most [`RELAY_ANCHORS_MAX`] kept), started at `now_ms`:
    /// it registers at once and polls for [`RELAY_POLL_AFTER_UNREACHABLE_MS`].
    pub(crate) fn new(mut anchors: Vec<String>, nat_detected: bool, now_ms: u64) -> Self {
        anchors.truncate(RELAY_ANCHORS_MAX);
        let on = !anchors.is_empty();
        Self {
            anchors,
            nat_detected,
            poll_until_ms: now_ms + RELAY_POLL_AFTER_UNREACHABLE_MS,
            next_register_ms: on.then_some(now_ms),
            polls: std::array::from_fn(|_| PollLoop { next_ms: now_ms, ..PollLoop::default() }),
        }
    }

    /// The configured anchors.
    pub(crate) fn anchors(&self) -> &[String] {
        &self.anchors
    }

    /// Whether any anchor is configured.
    pub(crate) fn enabled(&self) -> bool {
        !self.anchors.is_empty()
    }

    /// Whether peers elsewhere cannot reach us directly (as far as we know).
    pub(crate) fn nat_detected(&self) -> bool {
        self.nat_detected
    }

    /// Our URL changed: whether it can be dialled is judged again.
    pub(crate) fn set_nat_detected(&mut self, nat: bool) {
        self.nat_detected = nat;
    }

    /// Whether a registration is due at `now_ms`; if so, the next is scheduled.
    pub(crate) fn take_registration_due(&mut self, now_ms: u64) -> bool {
        match self.next_register_ms {
            Some(at) if at <= now_ms => {
                self.next_register_ms = Some(now_ms + RELAY_REGISTER_INTERVAL_MS);
                true
            }
            _ => false,
        }
    }

    /// A change of URL or bio was just registered: the refresh is counted from now.
    pub(crate) fn registered(&mut self, now_ms: u64) {
        if self.enabled() {
            self.next_register_ms = Some(now_ms + RELAY_REGISTER_INTERVAL_MS);
        }
    }

    /// Whether we poll at all at `now_ms`.
    fn polling(&self, now_ms: u64) -> bool {
        self.enabled() && (self.nat_detected || now_ms < self.poll_until_ms)
    }

    /// The mailboxes whose poll is due at `now_ms`, each marked in flight.
    pub(crate) fn take_polls_due(&mut self, now_ms: u64) -> Vec<Mailbox> {
        if !self.polling(now_ms) {
            return Vec::new();
        }
        let mut due = Vec::new();
        for kind in Mailbox::ALL {
            let p = &mut self.polls[kind.index()];
            if p.in_flight_since_ms.is_none() && p.next_ms <= now_ms {
                p.in_flight_since_ms = Some(now_ms);
                due.push(kind);
            }
        }
        due
    }

    /// The poll of `kind` went to `anchors` anchors.
    pub(crate) fn poll_sent(&mut self, kind: Mailbox, anchors: usize) {
        let p = &mut self.polls[kind.index()];
        p.outstanding = anchors;
        p.entries = 0;
        p.failed = false;
    }

    /// One anchor answered a poll of `kind` at `now_ms` with `entries` entries (`failed`: no usable
    /// answer). Once every anchor answered, the next poll goes out at once if the answers brought
    /// entries or were held by the anchors, else after the interval, which backs off after
    /// [`RELAY_POLL_EMPTY_BEFORE_BACKOFF`] empty polls.
    pub(crate) fn poll_answered(&mut self, kind: Mailbox, now_ms: u64, entries: usize, failed: bool) {
        let p = &mut self.polls[kind.index()];
        p.outstanding = p.outstanding.saturating_sub(1);
        p.entries += entries;
        p.failed |= failed;
        if p.outstanding > 0 {
            return;
        }
        let (entries, failed) = (p.entries, p.failed);
        let sent_ms = p.in_flight_since_ms.take().unwrap_or(now_ms);
        let held = !failed && now_ms.saturating_sub(sent_ms) >= RELAY_POLL_HELD_MS;
        if entries > 0 {
            p.empty_streak = 0;
            p.next_ms = now_ms;
            return;
        }
        p.empty_streak = p.empty_streak.saturating_add(1);
        p.next_ms = if held {
            now_ms
        } else if p.empty_streak > RELAY_POLL_EMPTY_BEFORE_BACKOFF {
            now_ms + RELAY_POLL_INTERVAL_MAX_MS
        } else {
            now_ms + RELAY_POLL_INTERVAL_MS
        };
    }

    /// The earliest time at which a registration or a poll is due.
    pub(crate) fn next_deadline_ms(&self) -> Option<u64> {
        let live =
            |p: &&PollLoop| p.in_flight_since_ms.is_none() && (self.nat_detected || p.next_ms < self.poll_until_ms);
        let polls = self.polls.iter().filter(live).map(|p| p.next_ms).min().filter(|_| self.enabled());
        [self.next_register_ms, polls].into_iter().flatten().min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(nat: bool) -> Relay {
        Relay::new(vec!["http://a:1".into()], nat, 0)
    }

    #[test]
    fn no_anchor_means_no_registration_and_no_poll() {
        let mut r = Relay::new(Vec::new(), true, 0);
        assert!(!r.take_registration_due(0));
        assert!(r.take_polls_due(0).is_empty());
        assert_eq!(r.next_deadline_ms(), None);
    }

    #[test]
    fn at_most_the_bound_of_anchors_is_kept() {
        let anchors = |n: usize| (0..n).map(|i| format!("http://a{i}:1")).collect::<Vec<_>>();
        assert_eq!(Relay::new(anchors(RELAY_ANCHORS_MAX), false, 0).anchors().len(), RELAY_ANCHORS_MAX);
        assert_eq!(Relay::new(anchors(RELAY_ANCHORS_MAX + 1), false, 0).anchors().len(), RELAY_ANCHORS_MAX);
    }

    #[test]
    fn registration_is_due_at_start_then_every_interval() {
        let mut r = relay(false);
        assert!(r.take_registration_due(0));
        assert!(!r.take_registration_due(RELAY_REGISTER_INTERVAL_MS - 1));
        assert!(r.take_registration_due(RELAY_REGISTER_INTERVAL_MS));
        r.registered(RELAY_REGISTER_INTERVAL_MS + 5);
        assert!(!r.take_registration_due(2 * RELAY_REGISTER_INTERVAL_MS));
    }

    #[test]
    fn a_public_node_polls_only_for_an_hour_after_start() {
        let mut r = relay(false);
        assert_eq!(r.take_polls_due(0).len(), 3);
        assert!(r.take_polls_due(RELAY_POLL_AFTER_UNREACHABLE_MS).is_empty(), "one in flight each, then too late");
        let mut r = relay(false);
        assert!(r.take_polls_due(RELAY_POLL_AFTER_UNREACHABLE_MS).is_empty());
        let mut r = relay(true);
        assert_eq!(r.take_polls_due(RELAY_POLL_AFTER_UNREACHABLE_MS * 10).len(), 3, "behind NAT: always");
    }

    #[test]
    fn empty_polls_back_off_and_entries_or_held_polls_repoll_at_once() {
        let mut r = relay(true);
        let k = Mailbox::Connection;
        let mut now = 0;
        for i in 1..=RELAY_POLL_EMPTY_BEFORE_BACKOFF + 1 {
            assert!(r.take_polls_due(now).contains(&k));
            r.poll_sent(k, 1);
            r.poll_answered(k, now, 0, false);
            let want =
                if i > RELAY_POLL_EMPTY_BEFORE_BACKOFF { RELAY_POLL_INTERVAL_MAX_MS } else { RELAY_POLL_INTERVAL_MS };
            assert!(!r.take_polls_due(now + want - 1).contains(&k));
            now += want;
        }
        assert!(r.take_polls_due(now).contains(&k));
        r.poll_sent(k, 2);
        r.poll_answered(k, now, 2, false);
        assert!(!r.take_polls_due(now).contains(&k), "one anchor still holds the poll");
        r.poll_answered(k, now, 0, false);
        assert!(r.take_polls_due(now).contains(&k), "entries: at once");
        r.poll_sent(k, 1);
        r.poll_answered(k, now + RELAY_POLL_HELD_MS, 0, false);
        assert!(r.take_polls_due(now + RELAY_POLL_HELD_MS).contains(&k), "held by the anchor: at once");
    }
}
