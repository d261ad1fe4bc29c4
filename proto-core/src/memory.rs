//! Memory: every conversation, in and out, logged (capped, oldest dropped) and ranked by recency and
//! trust into a context feed with a direct and a network section.
//!
//! Ranking is 0.5.3's formula: `score = 2^(−age_s / 3600) × trust_weight × type_boost`, where
//! `trust_weight` is 1 for our own messages and `max(0.1, (trust_at_time + 1) / 2)` otherwise, and
//! `type_boost` is 10 for the message being answered, 2 direct, 1.5 reply, 1 broadcast, 0.5 forward.
//! Unlike 0.5.3 (whose network section is always empty), direct and reply entries go to the direct
//! section and broadcasts and forwards to the network section.

use std::collections::BTreeMap;

use crate::limits::{CONVERSATIONS_MAX, FEED_DIRECT_MAX, FEED_NETWORK_MAX};
use crate::store::{self, Change, ConversationEntry, RecordError, Table};

/// Half-life of a conversation's weight, in seconds.
pub const MEMORY_HALF_LIFE_S: f64 = 3_600.0;
/// Boost of the message being answered.
pub const BOOST_FOCUS: f64 = 10.0;
/// Boost of a direct message.
pub const BOOST_DIRECT: f64 = 2.0;
/// Boost of a reply.
pub const BOOST_REPLY: f64 = 1.5;
/// Boost of a broadcast.
pub const BOOST_BROADCAST: f64 = 1.0;
/// Boost of a forward.
pub const BOOST_FORWARD: f64 = 0.5;
/// Least trust weight of another agent's message.
pub const TRUST_WEIGHT_MIN: f64 = 0.1;

/// The rank of one entry at `now_us`, with `focus` the message being answered, if any.
pub fn rank(e: &ConversationEntry, now_us: i64, focus: Option<&str>) -> f64 {
    let age_s = ((now_us - e.at_us) as f64 / 1e6).max(0.0);
    let recency = (-age_s / MEMORY_HALF_LIFE_S).exp2();
    let trust_weight =
        if e.direction == "outbound" { 1.0 } else { ((e.trust_at_time + 1.0) / 2.0).max(TRUST_WEIGHT_MIN) };
    let boost = if focus == Some(e.message_id.as_str()) {
        BOOST_FOCUS
    } else {
        match e.kind.as_str() {
            "direct" => BOOST_DIRECT,
            "reply" => BOOST_REPLY,
            "broadcast" => BOOST_BROADCAST,
            _ => BOOST_FORWARD,
        }
    };
    recency * trust_weight * boost
}

fn seq_key(seq: u64) -> String {
    format!("{seq:020}")
}

/// The conversation log: at most [`CONVERSATIONS_MAX`] entries by sequence number, and how far
/// `get_status` has shown it.
#[derive(Debug, Default)]
pub(crate) struct Memory {
    log: BTreeMap<u64, ConversationEntry>,
    /// The newest entry a status report has shown (0: none).
    shown_seq: u64,
}

/// One ranked feed: `(rank, entry)` per section, best first.
pub(crate) type Ranked<'a> = Vec<(f64, &'a ConversationEntry)>;

impl Memory {
    /// Logs an entry, dropping the oldest past [`CONVERSATIONS_MAX`]; returns the changes to persist.
    pub(crate) fn log(&mut self, entry: ConversationEntry) -> Vec<Change> {
        let seq = entry.seq;
        let mut changes = vec![Change::put(Table::Conversations, &seq_key(seq), &entry)];
        self.log.insert(seq, entry);
        while self.log.len() > CONVERSATIONS_MAX {
            let (oldest, _) = self.log.pop_first().expect("longer than the cap, so not empty");
            changes.push(Change::delete(Table::Conversations, &seq_key(oldest)));
        }
        debug_assert!(self.log.len() <= CONVERSATIONS_MAX);
        changes
    }

    /// Takes one [`Table::Conversations`] row read back from storage; returns its sequence number.
    pub(crate) fn restore_row(&mut self, value: &[u8]) -> Result<u64, RecordError> {
        let e: ConversationEntry = store::decode(value)?;
        let seq = e.seq;
        self.log.insert(seq, e);
        Ok(seq)
    }

    /// Entries logged.
    pub(crate) fn len(&self) -> usize {
        self.log.len()
    }

    /// The feed at `now_us`: `direct` (direct messages and replies) and `network` (broadcasts and
    /// forwards), each deduplicated by message id, sorted by rank (best first) and capped.
    pub(crate) fn feed(&self, now_us: i64, focus: Option<&str>) -> (Ranked<'_>, Ranked<'_>) {
        let mut ranked: Ranked<'_> = self.log.values().map(|e| (rank(e, now_us, focus), e)).collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.seq.cmp(&a.1.seq)));
        let mut seen = std::collections::BTreeSet::new();
        let (mut direct, mut network) = (Vec::new(), Vec::new());
        for (score, e) in ranked {
            if !seen.insert(e.message_id.as_str()) {
                continue;
            }
            let is_direct = matches!(e.kind.as_str(), "direct" | "reply");
            let (section, max) =
                if is_direct { (&mut direct, FEED_DIRECT_MAX) } else { (&mut network, FEED_NETWORK_MAX) };
            if section.len() < max {
                section.push((score, e));
            }
        }
        (direct, network)
    }

    /// The `max` best entries at `now_us`, both sections together, best first, deduplicated by
    /// message id, without `exclude` (a spawned agent reads the message it handles through a tool).
    pub(crate) fn best(&self, now_us: i64, exclude: Option<&str>, max: usize) -> Ranked<'_> {
        let mut ranked: Ranked<'_> = self
            .log
            .values()
            .filter(|e| exclude != Some(e.message_id.as_str()))
            .map(|e| (rank(e, now_us, None), e))
            .collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.seq.cmp(&a.1.seq)));
        let mut seen = std::collections::BTreeSet::new();
        ranked.retain(|(_, e)| seen.insert(e.message_id.as_str()));
        ranked.truncate(max);
        ranked
    }

    /// Entries no status report has shown yet, oldest first.
    pub(crate) fn unshown(&self) -> impl Iterator<Item = &ConversationEntry> {
        self.log.range(self.shown_seq + 1..).map(|(_, e)| e)
    }

    /// Marks the entries up to `through` as shown; returns how far entries are shown now. Never
    /// moves back, and never past the newest entry logged (a later entry must still show as new).
    pub(crate) fn mark_shown(&mut self, through: u64) -> u64 {
        let newest = self.log.keys().next_back().copied().unwrap_or(0);
        self.shown_seq = self.shown_seq.max(through.min(newest));
        self.shown_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: &str, direction: &str, trust: f64, at_us: i64) -> ConversationEntry {
        ConversationEntry {
            seq: 1,
            message_id: "m".into(),
            content: String::new(),
            peer: "p".into(),
            to_agent_ids: vec![],
            at_us,
            kind: kind.into(),
            direction: direction.into(),
            trust_at_time: trust,
        }
    }

    #[test]
    fn the_log_keeps_the_newest_and_deletes_the_oldest_rows() {
        let mut m = Memory::default();
        let mut deletes = 0;
        for seq in 1..=(CONVERSATIONS_MAX as u64 + 2) {
            let changes = m.log(ConversationEntry { seq, ..entry("direct", "outbound", 0.0, 0) });
            deletes += changes.len() - 1;
        }
        assert_eq!(m.len(), CONVERSATIONS_MAX);
        assert_eq!(deletes, 2);
        assert_eq!(m.unshown().next().map(|e| e.seq), Some(3));
        m.mark_shown(u64::MAX);
        assert_eq!(m.unshown().count(), 0);
    }

    #[test]
    fn marking_shown_never_moves_back_nor_past_the_newest_entry() {
        let mut m = Memory::default();
        for seq in 1..=3 {
            m.log(ConversationEntry { seq, ..entry("direct", "inbound", 0.0, 0) });
        }
        assert_eq!(m.mark_shown(2), 2);
        assert_eq!(m.unshown().map(|e| e.seq).collect::<Vec<_>>(), vec![3]);
        assert_eq!(m.mark_shown(1), 2, "never back");
        assert_eq!(m.mark_shown(99), 3, "not past the newest");
        m.log(ConversationEntry { seq: 4, ..entry("direct", "inbound", 0.0, 0) });
        assert_eq!(m.unshown().map(|e| e.seq).collect::<Vec<_>>(), vec![4], "a later entry is new");
    }

    #[test]
    fn best_is_descending_capped_and_leaves_out_the_excluded_message() {
        let mut m = Memory::default();
        let now = 10_000_000_000;
        // Older entries rank lower; "m3" is the message being handled.
        for (seq, id, age_s) in [(1, "m1", 7_200), (2, "m2", 3_600), (3, "m3", 0), (4, "m4", 60)] {
            let e = ConversationEntry {
                seq,
                message_id: id.into(),
                ..entry("direct", "inbound", 1.0, now - age_s * 1_000_000)
            };
            let _ = m.log(e);
        }
        let best: Vec<&str> = m.best(now, Some("m3"), 2).iter().map(|(_, e)| e.message_id.as_str()).collect();
        assert_eq!(best, ["m4", "m2"]);
        let all = m.best(now, None, 10);
        assert_eq!(all.len(), 4);
        assert!(all.windows(2).all(|w| w[0].0 >= w[1].0), "best first");
    }

    #[test]
    fn rank_halves_every_hour_and_weighs_trust_and_type() {
        let now = 10_000_000_000;
        let fresh = rank(&entry("direct", "outbound", 0.0, now), now, None);
        assert!((fresh - 2.0).abs() < 1e-12);
        let hour_old = rank(&entry("direct", "outbound", 0.0, now - 3_600_000_000), now, None);
        assert!((hour_old - 1.0).abs() < 1e-12);
        assert!((rank(&entry("broadcast", "inbound", 1.0, now), now, None) - 1.0).abs() < 1e-12);
        assert!((rank(&entry("broadcast", "inbound", -1.0, now), now, None) - 0.1).abs() < 1e-12);
        assert!((rank(&entry("forward", "outbound", 0.0, now), now, Some("m")) - 10.0).abs() < 1e-12);
    }
}
