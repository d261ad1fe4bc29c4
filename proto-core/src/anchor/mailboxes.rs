//! The relay mailboxes: opaque bodies buffered for an agent until it polls them.
//!
//! One mailbox per (kind, target). Each is bounded by count (0.5.3's per kind) and bytes
//! ([`ANCHOR_MAILBOX_BYTES_MAX`]); all together by [`ANCHOR_BUFFERED_BYTES_MAX`] (a post over it is
//! refused, nothing is evicted for it). Entries expire after their kind's TTL.
//!
//! ## Who is evicted
//! 0.5.3 drops the oldest entry of a full mailbox, so anyone can flush an agent's mail by posting 100
//! junk entries. Here a full mailbox drops the oldest entry *of the source holding the most entries in
//! it*: a flooder evicts its own posts first, and the entries of other sources survive until the
//! flooder holds no more than they do.

use core::net::IpAddr;
use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::limits::{
    ANCHOR_BUFFERED_BYTES_MAX, ANCHOR_CONNECTION_ENTRIES_MAX, ANCHOR_CONNECTION_TTL_S, ANCHOR_ENTRY_OVERHEAD_BYTES,
    ANCHOR_MAILBOX_BYTES_MAX, ANCHOR_MESSAGE_ENTRIES_MAX, ANCHOR_MESSAGE_TTL_S, ANCHOR_SDP_ENTRIES_MAX,
    ANCHOR_SDP_TTL_S, ANCHOR_WEBHOOK_ENTRIES_MAX, ANCHOR_WEBHOOK_TTL_S,
};

/// The four mailboxes of 0.5.3's anchor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    /// Webhook callbacks for a NAT'd sender (`webhook_relay`).
    Webhook,
    /// Connection acceptances for a NAT'd requester (`connection_relay`).
    Connection,
    /// WebRTC offers and answers (`sdp_relay`).
    Sdp,
    /// Whole relayed messages, end-to-end sealed (`message_relay`).
    Message,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 4] = [Kind::Webhook, Kind::Connection, Kind::Sdp, Kind::Message];

    /// Entries one target's mailbox of this kind holds.
    pub fn entries_max(self) -> usize {
        match self {
            Kind::Webhook => ANCHOR_WEBHOOK_ENTRIES_MAX,
            Kind::Connection => ANCHOR_CONNECTION_ENTRIES_MAX,
            Kind::Sdp => ANCHOR_SDP_ENTRIES_MAX,
            Kind::Message => ANCHOR_MESSAGE_ENTRIES_MAX,
        }
    }

    /// How long an entry of this kind is kept, in seconds.
    pub fn ttl_s(self) -> u64 {
        match self {
            Kind::Webhook => ANCHOR_WEBHOOK_TTL_S,
            Kind::Connection => ANCHOR_CONNECTION_TTL_S,
            Kind::Sdp => ANCHOR_SDP_TTL_S,
            Kind::Message => ANCHOR_MESSAGE_TTL_S,
        }
    }

    /// The path word of the POST (`<word>/<target>`); the poll is `<word>_poll/<agent>`.
    pub fn path_word(self) -> &'static str {
        match self {
            Kind::Webhook => "webhook_relay",
            Kind::Connection => "connection_relay",
            Kind::Sdp => "sdp_relay",
            Kind::Message => "message_relay",
        }
    }

    /// The field of the poll answer that carries the entries (0.5.3's names).
    pub fn answer_field(self) -> &'static str {
        match self {
            Kind::Webhook | Kind::Connection => "callbacks",
            Kind::Sdp => "signals",
            Kind::Message => "messages",
        }
    }
}

/// One buffered body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Unique, increasing: the order of arrival, and the record's key.
    pub seq: u64,
    /// Its mailbox's kind.
    pub kind: Kind,
    /// The agent it waits for.
    pub target: String,
    /// The message id of a webhook callback (from the path), `None` for the other kinds.
    pub message_id: Option<String>,
    /// The source (address, IPv6 /64) that posted it.
    pub source: IpAddr,
    /// When it arrived, Unix microseconds.
    pub received_us: i64,
    /// The JSON body exactly as posted.
    pub body: Vec<u8>,
}

impl Entry {
    /// What the entry is charged against the byte caps.
    fn charge(&self) -> usize {
        self.body.len() + ANCHOR_ENTRY_OVERHEAD_BYTES
    }

    fn expired(&self, now_us: i64) -> bool {
        (now_us as i128) - (self.received_us as i128) >= (self.kind.ttl_s() as i128) * 1_000_000
    }
}

/// Why a post was not buffered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PostError {
    /// All mailboxes together would exceed [`ANCHOR_BUFFERED_BYTES_MAX`].
    #[error("Anchor buffers are full; try again later")]
    Full,
}

/// What a post did: the entry stored (or why not), and the entries it removed (expired or evicted).
#[derive(Debug)]
pub struct Posted {
    /// The stored entry's sequence number, or why nothing was stored.
    pub outcome: Result<u64, PostError>,
    /// Sequence numbers removed to make room or because they expired.
    pub removed: Vec<u64>,
}

#[derive(Debug, Default)]
struct Mailbox {
    entries: VecDeque<Entry>,
    bytes: usize,
}

/// Every mailbox, and the byte total over all of them.
#[derive(Debug)]
pub struct Mailboxes {
    boxes: HashMap<(Kind, String), Mailbox>,
    total_bytes: usize,
    /// [`ANCHOR_BUFFERED_BYTES_MAX`]; smaller only in tests, which cannot afford the real one.
    total_bytes_max: usize,
    next_seq: u64,
}

impl Default for Mailboxes {
    fn default() -> Self {
        Self { boxes: HashMap::new(), total_bytes: 0, total_bytes_max: ANCHOR_BUFFERED_BYTES_MAX, next_seq: 0 }
    }
}

impl Mailboxes {
    /// Bytes charged by all buffered entries.
    pub fn total_bytes(&self) -> usize {
        self.total_bytes
    }

    /// Entries waiting in `target`'s mailbox of `kind`.
    pub fn waiting(&self, kind: Kind, target: &str) -> usize {
        self.boxes.get(&(kind, target.to_owned())).map_or(0, |b| b.entries.len())
    }

    /// Takes back a stored entry at start-up; `false` (to be deleted) if it expired or does not fit.
    pub fn restore(&mut self, entry: Entry, now_us: i64) -> bool {
        self.next_seq = self.next_seq.max(entry.seq + 1);
        let fits = self.total_bytes + entry.charge() <= self.total_bytes_max;
        let key = (entry.kind, entry.target.clone());
        let full = self.boxes.get(&key).is_some_and(|b| b.entries.len() >= entry.kind.entries_max());
        if entry.expired(now_us) || !fits || full {
            return false;
        }
        self.insert(entry);
        true
    }

    /// Buffers `body` for `target`, evicting from that mailbox as its caps require; the stored entry
    /// is read back with [`Mailboxes::entry`] to persist it.
    pub fn post(
        &mut self,
        kind: Kind,
        target: &str,
        message_id: Option<String>,
        source: IpAddr,
        body: Vec<u8>,
        now_us: i64,
    ) -> Posted {
        let mut removed = self.expire_one(kind, target, now_us);
        let entry = Entry {
            seq: self.next_seq,
            kind,
            target: target.to_owned(),
            message_id,
            source,
            received_us: now_us,
            body,
        };
        let charge = entry.charge();
        let key = (kind, target.to_owned());
        let victims = self.boxes.get(&key).map_or_else(Vec::new, |b| victims_for(b, kind, charge));
        let freed: usize = victims.iter().map(|&i| self.boxes[&key].entries[i].charge()).sum();
        if self.total_bytes - freed + charge > self.total_bytes_max {
            return Posted { outcome: Err(PostError::Full), removed };
        }
        if let Some(mailbox) = self.boxes.get_mut(&key) {
            // Highest index first, so the lower ones stay valid.
            for &i in victims.iter().rev() {
                if let Some(gone) = mailbox.entries.remove(i) {
                    mailbox.bytes -= gone.charge();
                    self.total_bytes -= gone.charge();
                    removed.push(gone.seq);
                }
            }
        }
        self.next_seq += 1;
        let seq = entry.seq;
        self.insert(entry);
        Posted { outcome: Ok(seq), removed }
    }

    /// The entry with sequence number `seq` in `target`'s mailbox of `kind`.
    pub fn entry(&self, kind: Kind, target: &str, seq: u64) -> Option<&Entry> {
        self.boxes.get(&(kind, target.to_owned()))?.entries.iter().find(|e| e.seq == seq)
    }

    /// Empties `target`'s mailbox of `kind`: the live entries in arrival order, and every removed
    /// sequence number (live and expired) for the caller to delete.
    pub fn drain(&mut self, kind: Kind, target: &str, now_us: i64) -> (Vec<Entry>, Vec<u64>) {
        let Some(mailbox) = self.boxes.remove(&(kind, target.to_owned())) else { return (Vec::new(), Vec::new()) };
        self.total_bytes -= mailbox.bytes;
        let removed = mailbox.entries.iter().map(|e| e.seq).collect();
        let live = mailbox.entries.into_iter().filter(|e| !e.expired(now_us)).collect();
        (live, removed)
    }

    /// Drops every expired entry; returns their sequence numbers.
    pub fn expire(&mut self, now_us: i64) -> Vec<u64> {
        let keys: Vec<(Kind, String)> = self.boxes.keys().cloned().collect();
        keys.into_iter().flat_map(|(kind, target)| self.expire_one(kind, &target, now_us)).collect()
    }

    fn expire_one(&mut self, kind: Kind, target: &str, now_us: i64) -> Vec<u64> {
        let key = (kind, target.to_owned());
        let Some(mailbox) = self.boxes.get_mut(&key) else { return Vec::new() };
        let mut removed = Vec::new();
        // Entries arrive in time order, so the expired ones are at the front.
        while mailbox.entries.front().is_some_and(|e| e.expired(now_us)) {
            if let Some(gone) = mailbox.entries.pop_front() {
                mailbox.bytes -= gone.charge();
                self.total_bytes -= gone.charge();
                removed.push(gone.seq);
            }
        }
        if mailbox.entries.is_empty() {
            self.boxes.remove(&key);
        }
        removed
    }

    fn insert(&mut self, entry: Entry) {
        let charge = entry.charge();
        let mailbox = self.boxes.entry((entry.kind, entry.target.clone())).or_default();
        mailbox.bytes += charge;
        mailbox.entries.push_back(entry);
        self.total_bytes += charge;
        debug_assert!(mailbox.entries.len() <= mailbox.entries.front().map_or(0, |e| e.kind.entries_max()));
        debug_assert!(mailbox.bytes <= ANCHOR_MAILBOX_BYTES_MAX);
        debug_assert!(self.total_bytes <= self.total_bytes_max);
    }
}

/// The indices (ascending) to evict from `mailbox` so that an entry charged `charge` fits its count and
/// byte caps: each time the oldest entry of the source holding the most entries (ties: the source whose
/// oldest entry is oldest).
fn victims_for(mailbox: &Mailbox, kind: Kind, charge: usize) -> Vec<usize> {
    let mut gone = vec![false; mailbox.entries.len()];
    let (mut count, mut bytes) = (mailbox.entries.len(), mailbox.bytes);
    while count > 0 && (count >= kind.entries_max() || bytes + charge > ANCHOR_MAILBOX_BYTES_MAX) {
        let mut held: HashMap<IpAddr, (usize, usize)> = HashMap::new();
        for (i, e) in mailbox.entries.iter().enumerate().filter(|(i, _)| !gone[*i]) {
            let slot = held.entry(e.source).or_insert((0, i));
            slot.0 += 1;
        }
        // Most entries first; among equals, the one whose oldest entry came first.
        let Some((_, &(_, oldest))) = held.iter().max_by(|a, b| a.1 .0.cmp(&b.1 .0).then(b.1 .1.cmp(&a.1 .1))) else {
            break;
        };
        gone[oldest] = true;
        count -= 1;
        bytes -= mailbox.entries[oldest].charge();
    }
    gone.iter().enumerate().filter(|(_, &g)| g).map(|(i, _)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "target";

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn a_full_mailbox_evicts_the_biggest_holder_first() {
        let mut m = Mailboxes::default();
        let honest = m.post(Kind::Message, T, None, ip(1), b"{\"a\":1}".to_vec(), 0).outcome.unwrap();
        for i in 0..(ANCHOR_MESSAGE_ENTRIES_MAX * 3) {
            let posted = m.post(Kind::Message, T, None, ip(2), b"{\"x\":1}".to_vec(), i as i64 + 1);
            assert!(posted.outcome.is_ok());
            assert!(!posted.removed.contains(&honest), "the flood evicted the honest entry at post {i}");
        }
        assert_eq!(m.waiting(Kind::Message, T), ANCHOR_MESSAGE_ENTRIES_MAX);
        let (live, _) = m.drain(Kind::Message, T, 100);
        assert_eq!(live[0].seq, honest);
    }

    #[test]
    fn one_source_alone_loses_its_oldest_like_0_5_3() {
        let mut m = Mailboxes::default();
        let first = m.post(Kind::Sdp, T, None, ip(1), b"{}".to_vec(), 0).outcome.unwrap();
        for i in 1..ANCHOR_SDP_ENTRIES_MAX {
            assert!(m.post(Kind::Sdp, T, None, ip(1), b"{}".to_vec(), i as i64).removed.is_empty());
        }
        let posted = m.post(Kind::Sdp, T, None, ip(1), b"{}".to_vec(), 50);
        assert_eq!(posted.removed, vec![first]);
    }

    #[test]
    fn entries_expire_at_their_ttl() {
        let mut m = Mailboxes::default();
        m.post(Kind::Sdp, T, None, ip(1), b"{}".to_vec(), 0);
        let ttl_us = (ANCHOR_SDP_TTL_S as i64) * 1_000_000;
        assert!(m.expire(ttl_us - 1).is_empty());
        assert_eq!(m.expire(ttl_us).len(), 1);
        assert_eq!(m.total_bytes(), 0);
    }

    #[test]
    fn mailbox_byte_cap_edge() {
        let mut m = Mailboxes::default();
        let body_len = ANCHOR_MAILBOX_BYTES_MAX / 4 - ANCHOR_ENTRY_OVERHEAD_BYTES;
        for i in 0..4 {
            assert!(m.post(Kind::Message, T, None, ip(1), vec![b' '; body_len], i).removed.is_empty());
        }
        // Exactly at the cap; one byte more evicts the oldest.
        assert_eq!(m.total_bytes(), ANCHOR_MAILBOX_BYTES_MAX);
        assert_eq!(m.post(Kind::Message, T, None, ip(1), vec![], 9).removed.len(), 1);
    }

    /// The global cap's rule at a small cap (the real one is 256 MiB of test memory): exactly at the
    /// cap is accepted, one byte over is refused and nothing is evicted for it.
    #[test]
    fn global_byte_cap_refuses_and_keeps_everything() {
        let cap = 4 * (ANCHOR_ENTRY_OVERHEAD_BYTES + 10);
        let mut m = Mailboxes { total_bytes_max: cap, ..Mailboxes::default() };
        for t in 0..4 {
            assert!(m.post(Kind::Message, &t.to_string(), None, ip(1), vec![b' '; 10], 0).outcome.is_ok());
        }
        assert_eq!(m.total_bytes(), cap);
        let refused = m.post(Kind::Message, "new", None, ip(1), vec![], 0);
        assert_eq!(refused.outcome, Err(PostError::Full));
        assert!(refused.removed.is_empty());
        assert_eq!(m.total_bytes(), cap);
    }
}
