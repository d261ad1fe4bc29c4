//! The anchor client's state (SPEC §20): which anchors we use, whether we are behind NAT, when we
//! register next, and the poll loop of each relay mailbox.
//!
//! A node reaches anchors only when configured. It registers (signed) at start, on every change of
//! URL or bio and every [`RELAY_REGISTER_INTERVAL_MS`]. It is behind NAT when its URL cannot be
//! dialled from elsewhere (loopback, private) or when an anchor's probe of its URL found nothing
//! answering ([`RELAY_PROBE_INTERVAL_MS`], at start and on every change of URL). It polls its
//! mailboxes while behind NAT and for [`RELAY_POLL_AFTER_UNREACHABLE_MS`] after any period in which
//! peers could not reach it: its start, a change of URL, the end of a probed NAT, a stall of the
//! node itself ([`RELAY_STALL_MS`]), or relayed entries found by a poll (someone could not reach us
//! directly). The message mailbox is long-polled, so a relayed message arrives as soon as it is posted.
//!
//! Relayed bodies are sealed end to end ([`crate::e2e`]) with randomness from an [`Entropy`] the
//! runtime passes in: the core's own generator is seeded (deterministic simulations) and a nonce
//! repeated under version 1's static key reveals the plaintexts' XOR and the Poly1305 key.

use crate::limits::{
    RELAY_ANCHORS_MAX, RELAY_LONG_POLL_S, RELAY_POLL_AFTER_UNREACHABLE_MS, RELAY_POLL_EMPTY_BEFORE_BACKOFF,
    RELAY_POLL_HELD_MS, RELAY_POLL_INTERVAL_MAX_MS, RELAY_POLL_INTERVAL_MS, RELAY_PROBE_INTERVAL_MS,
    RELAY_PROBE_SPACING_MS, RELAY_REGISTER_INTERVAL_MS, RELAY_STALL_MS,
};
use crate::time::Now;

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

/// The reachability probe of our URL: one round asks every anchor; answers of an older round (our
/// URL changed since) are ignored.
#[derive(Clone, Debug, Default)]
struct ProbeRound {
    /// When the next round is due (monotonic ms); `None` when we do not probe.
    due_ms: Option<u64>,
    /// When the last round went out.
    last_ms: Option<u64>,
    /// Which round is current.
    generation: u64,
    /// Anchors whose answer to the current round is awaited.
    outstanding: usize,
    /// Answers of the current round that found our status page, and that found nothing.
    reachable: usize,
    unreachable: usize,
}

/// The anchor client.
#[derive(Debug, Default)]
pub(crate) struct Relay {
    anchors: Vec<String>,
    /// Our public URL is loopback, private or invalid: peers elsewhere cannot dial it, whatever a
    /// probe says.
    url_local: bool,
    /// What the last complete probe round said: `Some(true)` = some anchor found nothing answering.
    probed_nat: Option<bool>,
    probe: ProbeRound,
    /// Poll until then (monotonic ms) even when not behind NAT.
    poll_until_ms: u64,
    /// The last timer handled, to notice a node that did not run.
    last_timer: Option<Now>,
    next_register_ms: Option<u64>,
    polls: [PollLoop; 3],
}

impl Relay {
    /// The client for `anchors` (base URLs, at most [`RELAY_ANCHORS_MAX`] kept), started at `now_ms`
    /// with a URL that is `url_local` or not: it registers at once, probes a URL that is not local at
    /// once, and polls for [`RELAY_POLL_AFTER_UNREACHABLE_MS`] (it was down until now).
    pub(crate) fn new(mut anchors: Vec<String>, url_local: bool, now_ms: u64) -> Self {
        anchors.truncate(RELAY_ANCHORS_MAX);
        let on = !anchors.is_empty();
        Self {
            anchors,
            url_local,
            probe: ProbeRound { due_ms: (on && !url_local).then_some(now_ms), ..ProbeRound::default() },
            poll_until_ms: now_ms + RELAY_POLL_AFTER_UNREACHABLE_MS,
            next_register_ms: on.then_some(now_ms),
            polls: std::array::from_fn(|_| PollLoop { next_ms: now_ms, ..PollLoop::default() }),
            ..Self::default()
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

    /// Whether peers elsewhere cannot reach us directly (as far as we know): our URL is local, or
    /// the last probe round found nothing answering at it.
    pub(crate) fn nat_detected(&self) -> bool {
        self.url_local || self.probed_nat == Some(true)
    }

    /// Peers could not reach us until `now_ms` (or cannot now): poll for
    /// [`RELAY_POLL_AFTER_UNREACHABLE_MS`] from here, whatever was planned.
    pub(crate) fn unreachable_until(&mut self, now_ms: u64) {
        self.poll_until_ms = self.poll_until_ms.max(now_ms + RELAY_POLL_AFTER_UNREACHABLE_MS);
    }

    /// Our URL changed to one that is `url_local` or not: the old probe answers are void, a URL
    /// that is not local is probed again (no sooner than [`RELAY_PROBE_SPACING_MS`] after the last
    /// round), and peers that still hold the old URL cannot reach us until they learn the new one.
    pub(crate) fn url_changed(&mut self, url_local: bool, now_ms: u64) {
        self.url_local = url_local;
        self.probed_nat = None;
        let on = self.enabled();
        let p = &mut self.probe;
        p.generation += 1;
        p.outstanding = 0;
        let earliest = p.last_ms.map_or(now_ms, |last| now_ms.max(last + RELAY_PROBE_SPACING_MS));
        p.due_ms = (on && !url_local).then_some(earliest);
        self.unreachable_until(now_ms);
    }

    /// A timer at `now`: a gap since the last one beyond [`RELAY_STALL_MS`], on either clock (the
    /// monotonic one stops while a machine sleeps), means the node did not run, so peers could not
    /// reach it.
    pub(crate) fn timer(&mut self, now: Now) {
        if let Some(last) = self.last_timer {
            let mono_gap_ms = now.mono_ms.saturating_sub(last.mono_ms);
            let wall_gap_ms = u64::try_from(now.wall_us.saturating_sub(last.wall_us) / 1_000).unwrap_or(0);
            if mono_gap_ms.max(wall_gap_ms) > RELAY_STALL_MS {
                self.unreachable_until(now.mono_ms);
            }
        }
        self.last_timer = Some(now);
    }

    /// The probe round due at `now_ms`, if any (its generation); it is marked sent to every anchor.
    pub(crate) fn take_probe_due(&mut self, now_ms: u64) -> Option<u64> {
        let p = &mut self.probe;
        let due = p.due_ms.is_some_and(|at| at <= now_ms) && p.outstanding == 0 && !self.url_local;
        if !due || self.anchors.is_empty() {
            return None;
        }
        p.outstanding = self.anchors.len();
        (p.reachable, p.unreachable) = (0, 0);
        p.last_ms = Some(now_ms);
        p.due_ms = Some(now_ms + RELAY_PROBE_INTERVAL_MS);
        Some(p.generation)
    }

    /// One anchor's answer to probe round `generation`: `Some(reachable)`, or `None` when it gave no
    /// usable answer (0.5.3 anchors without the route, a refusal). Once every anchor answered: behind
    /// NAT if any found nothing at our URL (polling costs little; a missed relay costs a message), not
    /// if some found it; and leaving a probed NAT is the end of a period in which we could not be
    /// reached. Returns whether the NAT state changed.
    pub(crate) fn probe_answered(&mut self, generation: u64, now_ms: u64, answer: Option<bool>) -> bool {
        let p = &mut self.probe;
        if generation != p.generation || p.outstanding == 0 {
            return false;
        }
        p.outstanding -= 1;
        match answer {
            Some(true) => p.reachable += 1,
            Some(false) => p.unreachable += 1,
            None => {}
        }
        if p.outstanding > 0 {
            return false;
        }
        let (reachable, unreachable) = (p.reachable, p.unreachable);
        let before = self.nat_detected();
        let was_probed_nat = self.probed_nat == Some(true);
        if unreachable > 0 {
            self.probed_nat = Some(true);
        } else if reachable > 0 {
            self.probed_nat = Some(false);
            if was_probed_nat {
                self.unreachable_until(now_ms);
            }
        }
        before != self.nat_detected()
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
        self.enabled() && (self.nat_detected() || now_ms < self.poll_until_ms)
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
        let nat = self.nat_detected();
        let live = |p: &&PollLoop| p.in_flight_since_ms.is_none() && (nat || p.next_ms < self.poll_until_ms);
        let polls = self.polls.iter().filter(live).map(|p| p.next_ms).min().filter(|_| self.enabled());
        let probe = self.probe.due_ms.filter(|_| self.enabled() && self.probe.outstanding == 0);
        [self.next_register_ms, polls, probe].into_iter().flatten().min()
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

    fn polls_at(r: &mut Relay, now_ms: u64) -> usize {
        let due = r.take_polls_due(now_ms);
        for k in &due {
            r.poll_sent(*k, 1);
            r.poll_answered(*k, now_ms, 0, false);
        }
        due.len()
    }

    #[test]
    fn a_probe_that_finds_nothing_means_nat_until_a_later_round_finds_us_then_an_hour_of_polls() {
        let mut r = relay(false);
        assert!(!r.nat_detected());
        let round = r.take_probe_due(0).expect("probed at start");
        assert_eq!(r.take_probe_due(0), None, "one round at a time");
        assert!(r.probe_answered(round, 0, Some(false)));
        assert!(r.nat_detected());
        let later = 5 * RELAY_POLL_AFTER_UNREACHABLE_MS;
        assert_eq!(polls_at(&mut r, later), 3, "behind NAT: polls whatever the time");
        assert_eq!(r.take_probe_due(later - 1 - 4 * RELAY_POLL_AFTER_UNREACHABLE_MS), None);
        let round = r.take_probe_due(later).expect("hourly");
        assert!(r.probe_answered(round, later, Some(true)));
        assert!(!r.nat_detected());
        let within = later + RELAY_POLL_AFTER_UNREACHABLE_MS - RELAY_POLL_INTERVAL_MAX_MS;
        assert!(polls_at(&mut r, within) > 0, "the NAT period ended: polls go on for an hour");
        assert_eq!(polls_at(&mut r, later + RELAY_POLL_AFTER_UNREACHABLE_MS), 0);
    }

    #[test]
    fn any_anchor_finding_nothing_wins_and_no_usable_answer_changes_nothing() {
        let anchors = vec!["http://a:1".to_owned(), "http://b:1".to_owned()];
        let mut r = Relay::new(anchors, false, 0);
        let round = r.take_probe_due(0).unwrap();
        assert!(!r.probe_answered(round, 0, Some(true)));
        assert!(r.probe_answered(round, 0, Some(false)));
        assert!(r.nat_detected());
        let round = r.take_probe_due(RELAY_PROBE_INTERVAL_MS).unwrap();
        r.probe_answered(round, RELAY_PROBE_INTERVAL_MS, None);
        r.probe_answered(round, RELAY_PROBE_INTERVAL_MS, None);
        assert!(r.nat_detected(), "0.5.3 anchors without the route say nothing");
    }

    #[test]
    fn a_local_url_is_never_probed_and_a_change_of_url_voids_the_round_in_flight() {
        let mut r = relay(true);
        assert_eq!(r.take_probe_due(0), None);
        assert!(r.nat_detected());
        r.url_changed(false, 100);
        assert!(!r.nat_detected());
        let old = r.take_probe_due(100).expect("a new public URL is probed");
        r.url_changed(false, 200);
        assert!(!r.probe_answered(old, 200, Some(false)), "an answer about the old URL");
        assert!(!r.nat_detected());
        assert_eq!(r.take_probe_due(100 + RELAY_PROBE_SPACING_MS - 1), None, "spaced");
        assert!(r.take_probe_due(100 + RELAY_PROBE_SPACING_MS).is_some());
    }

    #[test]
    fn a_change_of_url_and_a_stall_each_start_an_hour_of_polls() {
        let now = |mono_ms: u64, wall_ms: i64| Now { mono_ms, wall_us: wall_ms * 1_000 };
        let t = 2 * RELAY_POLL_AFTER_UNREACHABLE_MS;
        let mut r = relay(false);
        r.url_changed(false, t);
        assert_eq!(polls_at(&mut r, t), 3, "a new URL: peers with the old one relay meanwhile");

        for (gap_mono, gap_wall) in [(RELAY_STALL_MS + 1, RELAY_STALL_MS + 1), (10, RELAY_STALL_MS + 1)] {
            let t = 10 * RELAY_POLL_AFTER_UNREACHABLE_MS;
            let mut r = relay(false);
            r.timer(now(t, t as i64));
            r.timer(now(t + RELAY_STALL_MS, (t + RELAY_STALL_MS) as i64));
            assert_eq!(polls_at(&mut r, t + RELAY_STALL_MS), 0, "a timer on time is no stall");
            let (m, w) = (t + RELAY_STALL_MS + gap_mono, (t + RELAY_STALL_MS) as i64 + gap_wall as i64);
            r.timer(now(m, w));
            assert_eq!(polls_at(&mut r, m), 3, "stalled {gap_mono} ms by the clock, {gap_wall} ms by the wall");
        }
    }
}
