//! Knowledge shards: signed, trust-gated units of knowledge that sync to qualifying peers.
//!
//! Sync, not a one-time push (0.5.3 pushes once at creation): an author's shard reaches every
//! connected peer whose trust meets its threshold when it is created, updated or deleted, when a
//! peer's trust rises past the threshold, and when a new peer connects; updates and deletions also go
//! to every peer that ever received it. Receivers re-check the author's signature and their *own*
//! trust in the author, and drop their copy when the author's newer version no longer qualifies them.
//!
//! Between nodes of this project each push is signed by the author in our form over every field, the
//! receiver and the push time: it is fresh within the window and never replayed, so nobody can relay
//! an old version. Toward 0.5.3 peers the author also signs 0.5.3's form (`shard_id, author, content,
//! sorted tags`) when the content has no newline (a newline would make that form ambiguous). A shard
//! received in 0.5.3's form is kept as first received: its summary and threshold are not signed there,
//! so later copies of it (from anyone) change nothing but raise its threshold (`Shards::legacy_threshold`:
//! the safest value wins, and no unsigned copy deletes anything), and its summary is not shown.
//!
//! Caches expire [`SHARD_CACHE_TTL_S`] after the author last sent the shard; authors re-send their
//! shards in rounds that start at most every [`SHARD_REFRESH_INTERVAL_MS`] (a quarter of the TTL),
//! at most [`SHARD_REFRESH_BATCH_MAX`] pushes per housekeeping tick, so a cached
//! shard lives as long as its author stays connected and trusting. Our own tombstones are re-sent the
//! same way until the TTL has passed, then forgotten.
//!
//! Cache eviction order when full: expired first, then shards whose author we trust least, then the
//! least recently updated.

use crate::limits::{
    CONTENT_CHARS_MAX, SHARDS_CACHED_MAX, SHARD_CACHE_TTL_S, SHARD_SUMMARY_CHARS_MAX, SHARD_TAGS_MAX,
    SHARD_TAG_CHARS_MAX,
};
use crate::sign::{self, DOMAIN_SHARD, V2_SHARD};
use std::collections::BTreeMap;
use std::ops::Range;

use crate::store::{self, Change, RecordError, Shard, Table};

/// Pushes the round-robin refresh may start in one housekeeping tick.
pub const SHARD_REFRESH_BATCH_MAX: usize = 64;
/// A refresh round starts at most this often (a quarter of the TTL), in milliseconds: each round
/// costs every receiver a signature check and a commit per shard, so it is paced to the TTL.
pub const SHARD_REFRESH_INTERVAL_MS: u64 = SHARD_CACHE_TTL_S * 1000 / 4;
/// Shards pushed at once to a peer that just connected (the rest follow with the refresh).
pub const SHARD_CONNECT_PUSH_MAX: usize = 64;

/// A new or updated shard from the agent.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardArgs {
    /// Body, 1..=[`CONTENT_CHARS_MAX`] characters.
    pub content: String,
    /// 1..=[`SHARD_TAGS_MAX`] tags.
    pub tags: Vec<String>,
    /// 0..1.
    pub trust_threshold: f64,
    /// Optional summary.
    pub summary: Option<String>,
}

/// 0.5.3's `tags_str`: tags sorted by code point and joined with commas.
pub fn tags_str(tags: &[String]) -> String {
    let mut sorted: Vec<&str> = tags.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.join(",")
}

pub(crate) fn key(author: &str, shard_id: &str) -> String {
    format!("{author}/{shard_id}")
}

/// Our signed form of one push: every shard field, the receiver and the push time.
pub(crate) fn v2_bytes(s: &Shard, to: &str, pushed_at: &str) -> Vec<u8> {
    let threshold = s.trust_threshold.to_string();
    let tags = serde_json::to_string(&s.tags).expect("strings serialise");
    let deleted = if s.deleted { "1" } else { "0" };
    sign::v2_bytes(
        V2_SHARD,
        &[
            &s.shard_id,
            &s.author,
            &s.content,
            &tags,
            &threshold,
            s.summary.as_deref().unwrap_or(""),
            &s.created_at,
            &s.updated_at,
            deleted,
            to,
            pushed_at,
        ],
    )
}

pub(crate) fn legacy_bytes(shard_id: &str, author: &str, content: &str, tags: &[String]) -> Option<Vec<u8>> {
    sign::domain_bytes(DOMAIN_SHARD, &[shard_id, author, content, &tags_str(tags)]).ok()
}

/// Checks tags, threshold, content and summary; returns why not.
pub(crate) fn validate(content: &str, tags: &[String], threshold: f64, summary: Option<&str>) -> Result<(), String> {
    let n = content.chars().count();
    if n == 0 || n > CONTENT_CHARS_MAX {
        return Err(format!("content must be 1..={CONTENT_CHARS_MAX} characters (got {n})"));
    }
    if tags.is_empty() || tags.len() > SHARD_TAGS_MAX {
        return Err(format!("tags must have 1..={SHARD_TAGS_MAX} entries"));
    }
    for t in tags {
        let c = t.chars().count();
        if c == 0 || c > SHARD_TAG_CHARS_MAX || t.contains([',', '\n']) {
            return Err(format!("each tag must be 1..={SHARD_TAG_CHARS_MAX} characters without commas or newlines"));
        }
    }
    if !threshold.is_finite() || !(0.0..=1.0).contains(&threshold) {
        return Err("trust_threshold must be within 0.0..1.0".to_owned());
    }
    if summary.is_some_and(|s| s.chars().count() > SHARD_SUMMARY_CHARS_MAX) {
        return Err(format!("summary must be at most {SHARD_SUMMARY_CHARS_MAX} characters"));
    }
    Ok(())
}

/// Every shard we hold, ours and cached, keyed `author/shard_id`, and where the refresh round is.
#[derive(Debug)]
pub(crate) struct Shards {
    by_key: BTreeMap<String, Shard>,
    /// Position of the running refresh round in its list of (shard, peer) pairs; 0: no round runs.
    refresh_cursor: usize,
    /// The next round may start at this monotonic time (ms).
    refresh_next_ms: u64,
}

impl Shards {
    /// An empty store whose first refresh round may start an interval after `now_ms`.
    pub(crate) fn new(now_ms: u64) -> Self {
        Self { by_key: BTreeMap::new(), refresh_cursor: 0, refresh_next_ms: now_ms + SHARD_REFRESH_INTERVAL_MS }
    }

    /// The shard stored under `k`.
    pub(crate) fn get(&self, k: &str) -> Option<&Shard> {
        self.by_key.get(k)
    }

    /// Every shard with its key, in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &Shard)> {
        self.by_key.iter()
    }

    /// Every shard, in key order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &Shard> {
        self.by_key.values()
    }

    /// Stores `shard` under `k`; returns the row to persist.
    #[must_use = "the row must be persisted"]
    pub(crate) fn put(&mut self, k: String, shard: Shard) -> Change {
        let change = Change::put(Table::Shards, &k, &shard);
        self.by_key.insert(k, shard);
        change
    }

    /// Stores `shard` under `k` whose row the caller has already queued (it had to go out before
    /// the pushes that announce it).
    pub(crate) fn insert_persisted(&mut self, k: String, shard: Shard) {
        self.by_key.insert(k, shard);
    }

    /// Drops the shard under `k`; returns the delete of its row if it was held.
    pub(crate) fn remove(&mut self, k: &str) -> Option<Change> {
        self.by_key.remove(k).map(|_| Change::delete(Table::Shards, k))
    }

    /// When we hold `incoming`'s key at a version not older than it, the author still vouches for our
    /// copy: its time to live starts again at `now_us`. Returns the row to persist, or `None` when
    /// `incoming` is newer (or new) and must be stored instead.
    pub(crate) fn renew_if_current(&mut self, k: &str, incoming: &Shard, now_us: i64) -> Option<Change> {
        let held = self.by_key.get_mut(k)?;
        let older_or_same =
            if incoming.signed_v2 { held.signed_v2 && held.updated_us >= incoming.updated_us } else { true };
        if !older_or_same {
            return None;
        }
        held.received_us = now_us;
        Some(Change::put(Table::Shards, k, &*held))
    }

    /// The threshold a push in 0.5.3's form (threshold `pushed`) is judged by, and the row to persist
    /// when the held copy changed. 0.5.3's form does not sign the threshold, so anyone who saw the
    /// shard can send it with any value: the safest one wins. A held 0.5.3-form copy takes the higher
    /// of its threshold and the pushed one (a relay can hide it from us, never show it to more trust
    /// levels than any copy asked for); a copy in our form keeps its signed threshold, and the push
    /// is judged by the higher of the two. Nothing is ever deleted on the word of an unsigned field.
    pub(crate) fn legacy_threshold(&mut self, k: &str, pushed: f64) -> (f64, Option<Change>) {
        let Some(held) = self.by_key.get_mut(k) else { return (pushed, None) };
        let applies = held.trust_threshold.max(pushed);
        if held.signed_v2 || applies == held.trust_threshold {
            return (applies, None);
        }
        held.trust_threshold = applies;
        (applies, Some(Change::put(Table::Shards, k, &*held)))
    }

    /// Drops cached shards past their TTL, and `me`'s tombstones once every holder has had a TTL to
    /// hear of them. Returns the deletes to persist.
    pub(crate) fn prune(&mut self, me: &str, now_us: i64) -> Vec<Change> {
        let cutoff = now_us - SHARD_CACHE_TTL_S as i64 * 1_000_000;
        let old: Vec<String> = self
            .by_key
            .iter()
            .filter(|(_, s)| if s.author == me { s.deleted && s.updated_us < cutoff } else { s.received_us < cutoff })
            .map(|(k, _)| k.clone())
            .collect();
        for k in &old {
            self.by_key.remove(k);
        }
        old.iter().map(|k| Change::delete(Table::Shards, k)).collect()
    }

    /// Evicts cached shards until `incoming` fits: expired first, then the least trusted author (by
    /// `trust_of`), then the oldest. Returns the deletes to persist.
    pub(crate) fn make_room_for_cached(
        &mut self,
        incoming: &str,
        me: &str,
        now_us: i64,
        trust_of: impl Fn(&str) -> f64,
    ) -> Vec<Change> {
        let mut changes = self.prune(me, now_us);
        while !self.by_key.contains_key(incoming)
            && self.by_key.values().filter(|s| s.author != me).count() >= SHARDS_CACHED_MAX
        {
            let victim = self
                .by_key
                .iter()
                .filter(|(_, s)| s.author != me)
                .min_by(|(ka, a), (kb, b)| {
                    trust_of(&a.author)
                        .total_cmp(&trust_of(&b.author))
                        .then(a.updated_us.cmp(&b.updated_us))
                        .then(ka.cmp(kb))
                })
                .map(|(k, _)| k.clone())
                .expect("the cache is full, so non-empty");
            self.by_key.remove(&victim);
            changes.push(Change::delete(Table::Shards, &victim));
        }
        changes
    }

    /// The slice of this tick's refresh pairs (of `pairs` in all) to push, at most `room`; `None`
    /// when no round runs now. A round ends when every pair had its turn; the next starts an
    /// interval after this one did.
    pub(crate) fn refresh_step(&mut self, pairs: usize, now_ms: u64, room: usize) -> Option<Range<usize>> {
        if pairs == 0 {
            self.refresh_cursor = 0;
            return None;
        }
        if self.refresh_cursor == 0 {
            if now_ms < self.refresh_next_ms {
                return None;
            }
            self.refresh_next_ms = now_ms + SHARD_REFRESH_INTERVAL_MS;
        }
        let start = self.refresh_cursor.min(pairs);
        let end = (start + room).min(pairs);
        self.refresh_cursor = if end >= pairs { 0 } else { end };
        Some(start..end)
    }

    /// Takes one [`Table::Shards`] row read back from storage.
    pub(crate) fn restore_row(&mut self, k: String, value: &[u8]) -> Result<(), RecordError> {
        let shard: Shard = store::decode(value)?;
        self.by_key.insert(k, shard);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_sort_by_code_point() {
        assert_eq!(tags_str(&["zeta".into(), "alpha".into(), "Beta".into()]), "Beta,alpha,zeta");
    }

    #[test]
    fn validation_edges() {
        let tags = vec!["t".to_owned()];
        assert!(validate("x", &tags, 0.0, None).is_ok());
        assert!(validate("x", &tags, 1.0, None).is_ok());
        assert!(validate("x", &tags, 1.01, None).is_err());
        assert!(validate("x", &[], 0.0, None).is_err());
        assert!(validate("x", &vec!["t".to_owned(); SHARD_TAGS_MAX], 0.0, None).is_ok());
        assert!(validate("x", &vec!["t".to_owned(); SHARD_TAGS_MAX + 1], 0.0, None).is_err());
        assert!(validate("x", &["a,b".to_owned()], 0.0, None).is_err());
        assert!(validate(&"é".repeat(CONTENT_CHARS_MAX), &tags, 0.0, None).is_ok());
        assert!(validate(&"é".repeat(CONTENT_CHARS_MAX + 1), &tags, 0.0, None).is_err());
    }

    fn legacy_copy(threshold: f64, signed_v2: bool) -> Shard {
        Shard {
            shard_id: "s".into(),
            author: "a".into(),
            content: "c".into(),
            tags: vec!["t".into()],
            trust_threshold: threshold,
            summary: None,
            created_at: String::new(),
            updated_at: String::new(),
            updated_us: 0,
            deleted: false,
            signature_hex: None,
            signed_v2,
            received_us: 0,
            sent_to: Vec::new(),
        }
    }

    #[test]
    fn an_unsigned_threshold_only_ever_rises() {
        let mut sh = Shards::new(0);
        assert_eq!(sh.legacy_threshold("a/s", 0.3), (0.3, None), "nothing held: the push's own");
        let _ = sh.put("a/s".into(), legacy_copy(0.5, false));
        assert_eq!(sh.legacy_threshold("a/s", 0.0), (0.5, None), "a lower copy changes nothing");
        let (applies, change) = sh.legacy_threshold("a/s", 0.9);
        assert_eq!((applies, change.is_some()), (0.9, true), "a higher copy raises it");
        assert_eq!(sh.get("a/s").map(|s| s.trust_threshold), Some(0.9));
        let _ = sh.put("a/v2".into(), legacy_copy(0.2, true));
        assert_eq!(sh.legacy_threshold("a/v2", 1.0), (1.0, None), "a signed copy keeps its threshold");
        assert_eq!(sh.get("a/v2").map(|s| s.trust_threshold), Some(0.2));
    }

    #[test]
    fn a_refresh_round_gives_every_pair_one_turn_then_waits_an_interval() {
        let mut sh = Shards::new(0);
        assert_eq!(sh.refresh_step(5, SHARD_REFRESH_INTERVAL_MS - 1, 2), None);
        let t = SHARD_REFRESH_INTERVAL_MS;
        assert_eq!(sh.refresh_step(5, t, 2), Some(0..2));
        assert_eq!(sh.refresh_step(5, t + 1, 2), Some(2..4));
        assert_eq!(sh.refresh_step(5, t + 2, 2), Some(4..5));
        // The round ended; the next may start an interval after this one started.
        assert_eq!(sh.refresh_step(5, t + 3, 2), None);
        assert_eq!(sh.refresh_step(5, 2 * t, 2), Some(0..2));
        // No pairs ends a running round.
        assert_eq!(sh.refresh_step(0, 2 * t + 1, 2), None);
        assert_eq!(sh.refresh_step(5, 2 * t + 2, 2), None);
    }
}
