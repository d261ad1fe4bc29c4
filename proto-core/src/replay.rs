//! Replay protection: the freshness window and the bounded dedup cache, owned by `Replay`.
//!
//! Every signed timestamp a peer gives us passes `check_fresh`; every id that must not be seen
//! twice (message ids, signatures of notices and queries, keyed with `sig_key`) is admitted through
//! `Replay::admit`, which hands back the row to persist so a restart still refuses the replay.
//!
//! An id is remembered until the signed timestamp it came with leaves the freshness window
//! (`stamp + FRESHNESS_WINDOW_S`): after that the freshness check refuses any replay by itself, so the
//! cache never needs to hold it longer. Expiry is by wall time, which is what lets the cache be
//! persisted and survive a restart.
//!
//! The cache is checked *before* any signature work (a duplicate costs one tree lookup) but an id is
//! recorded only *after* the request verified, so an unauthenticated request can never burn someone
//! else's id. When every slot holds a live id the cache refuses new ones rather than forget one early.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::Refusal;
use crate::limits::{FRESHNESS_WINDOW_S, REPLAY_ENTRIES_MAX};
use crate::store::{self, Change, RecordError, Table};
use crate::time::{is_fresh, parse_iso};

/// Checks a timestamp we were given for freshness; returns it in wall µs.
pub(crate) fn check_fresh(now_us: i64, stamp: &str) -> Result<i64, Refusal> {
    let t = parse_iso(stamp).ok_or(Refusal::Stale(FRESHNESS_WINDOW_S))?;
    if !is_fresh(now_us, t, FRESHNESS_WINDOW_S) {
        return Err(Refusal::Stale(FRESHNESS_WINDOW_S));
    }
    Ok(t)
}

/// The replay-cache key of a signature: lower case, because hex decoding accepts either case and a
/// re-cased copy must not count as new.
pub(crate) fn sig_key(prefix: &str, sig_hex: &str) -> String {
    format!("{prefix}:{}", sig_hex.to_ascii_lowercase())
}

/// The node's replay protection: the dedup cache and the rows that keep it across restarts.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    cache: ReplayCache,
    /// Rows read back at restore, decoded, until [`Replay::finish_restore`] loads them.
    restored: Vec<(i64, String)>,
}

impl Replay {
    /// Whether `id` was admitted and is still live: the cheap pre-check, before any signature work.
    pub(crate) fn seen(&self, id: &str, now_us: i64) -> bool {
        self.cache.contains(id, now_us)
    }

    /// Admits `id` (signed at `stamp_us`) once; returns the row that must be persisted with the
    /// request's other changes.
    pub(crate) fn admit(&mut self, id: &str, stamp_us: i64, now_us: i64) -> Result<Change, Refusal> {
        match self.cache.record(id, stamp_us, now_us) {
            Ok(()) => {}
            Err(ReplayError::Duplicate) => return Err(Refusal::Duplicate),
            Err(ReplayError::Full) => {
                return Err(Refusal::Unavailable("Replay cache full; try again shortly".to_owned()))
            }
        }
        let expires = self.cache.expires_at(id).unwrap_or(0);
        Ok(Change::put(Table::Replay, id, &expires))
    }

    /// Forgets the ids whose window has passed; returns the deletes of their rows.
    pub(crate) fn purge(&mut self, now_us: i64) -> Vec<Change> {
        self.cache.purge(now_us);
        self.cache.take_evicted().iter().map(|id| Change::delete(Table::Replay, id)).collect()
    }

    /// Takes one [`Table::Replay`] row read back from storage (loaded by [`Replay::finish_restore`]).
    pub(crate) fn restore_row(&mut self, key: String, value: &[u8]) -> Result<(), RecordError> {
        let expires = store::decode::<i64>(value)?;
        self.restored.push((expires, key));
        Ok(())
    }

    /// Loads the rows read back; returns the deletes of rows that expired or do not fit.
    pub(crate) fn finish_restore(&mut self, now_us: i64) -> Vec<Change> {
        let mut rows = std::mem::take(&mut self.restored);
        // Latest-expiring first, so that if storage ever held more than fits, the live ids win.
        rows.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut dead = Vec::new();
        for (expires, key) in rows {
            if !self.cache.restore(key.clone(), expires, now_us) {
                dead.push(Change::delete(Table::Replay, &key));
            }
        }
        dead
    }
}

/// Why an id could not be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The id is already recorded and still live.
    #[error("duplicate")]
    Duplicate,
    /// All [`REPLAY_ENTRIES_MAX`] slots hold live ids.
    #[error("replay cache full")]
    Full,
}

/// The bounded dedup cache.
#[derive(Debug, Clone)]
pub struct ReplayCache {
    expires_us: BTreeMap<String, i64>,
    by_expiry: BTreeSet<(i64, String)>,
    capacity: usize,
    /// Ids purged since the driver last took them, so their rows can be deleted from storage.
    evicted: Vec<String>,
}

impl Default for ReplayCache {
    fn default() -> Self {
        Self::with_capacity(REPLAY_ENTRIES_MAX)
    }
}

impl ReplayCache {
    /// A cache holding at most `capacity` ids.
    pub fn with_capacity(capacity: usize) -> Self {
        assert!(capacity > 0);
        Self { expires_us: BTreeMap::new(), by_expiry: BTreeSet::new(), capacity, evicted: Vec::new() }
    }

    /// Whether `id` was recorded and is still live at `now_us`. Read-only: the cheap pre-check.
    pub fn contains(&self, id: &str, now_us: i64) -> bool {
        matches!(self.expires_us.get(id), Some(&exp) if exp > now_us)
    }

    /// Records `id`, signed with timestamp `stamp_us`, as seen at `now_us`.
    pub fn record(&mut self, id: &str, stamp_us: i64, now_us: i64) -> Result<(), ReplayError> {
        if self.contains(id, now_us) {
            return Err(ReplayError::Duplicate);
        }
        self.purge(now_us);
        if self.expires_us.len() >= self.capacity {
            return Err(ReplayError::Full);
        }
        let expires = stamp_us.saturating_add(FRESHNESS_WINDOW_S as i64 * 1_000_000);
        // An already-stale stamp would be refused by the freshness check; keep it briefly anyway.
        let expires = expires.max(now_us.saturating_add(1));
        if let Some(old) = self.expires_us.insert(id.to_owned(), expires) {
            self.by_expiry.remove(&(old, id.to_owned()));
        }
        self.by_expiry.insert((expires, id.to_owned()));
        debug_assert_eq!(self.expires_us.len(), self.by_expiry.len());
        debug_assert!(self.expires_us.len() <= self.capacity);
        Ok(())
    }

    /// Drops every id whose expiry has passed.
    pub fn purge(&mut self, now_us: i64) {
        while let Some((exp, _)) = self.by_expiry.first() {
            if *exp > now_us {
                break;
            }
            let (_, id) = self.by_expiry.pop_first().expect("checked non-empty");
            self.expires_us.remove(&id);
            // Bounded: if nobody collects them, the rows stay on disk and restore skips them.
            if self.evicted.len() < self.capacity {
                self.evicted.push(id);
            }
        }
    }

    /// Ids purged since the last call (to delete from storage).
    pub fn take_evicted(&mut self) -> Vec<String> {
        std::mem::take(&mut self.evicted)
    }

    /// When a recorded id expires (wall µs), if it is held.
    pub fn expires_at(&self, id: &str) -> Option<i64> {
        self.expires_us.get(id).copied()
    }

    /// Ids held, live or not yet purged.
    pub fn len(&self) -> usize {
        self.expires_us.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.expires_us.is_empty()
    }

    /// Every entry as `(id, expiry)`, for persistence.
    pub fn entries(&self) -> impl Iterator<Item = (&str, i64)> {
        self.expires_us.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// Restores an entry read back from storage; expired entries and entries past capacity are
    /// refused (returns false). Restore the latest-expiring first so the live ones win.
    pub fn restore(&mut self, id: String, expires_us: i64, now_us: i64) -> bool {
        if expires_us <= now_us || self.expires_us.len() >= self.capacity {
            return false;
        }
        if let Some(old) = self.expires_us.insert(id.clone(), expires_us) {
            self.by_expiry.remove(&(old, id.clone()));
        }
        self.by_expiry.insert((expires_us, id));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    #[test]
    fn an_id_is_refused_until_its_stamp_leaves_the_window() {
        let mut c = ReplayCache::default();
        let t0 = 1_000_000 * S;
        c.record("m1", t0, t0).unwrap();
        assert_eq!(c.record("m1", t0, t0 + 10 * S), Err(ReplayError::Duplicate));
        assert!(c.contains("m1", t0 + 300 * S - 1));
        assert!(!c.contains("m1", t0 + 300 * S));
        c.record("m1", t0 + 300 * S, t0 + 300 * S).unwrap();
    }

    #[test]
    fn a_full_cache_of_live_ids_refuses_instead_of_forgetting() {
        let mut c = ReplayCache::with_capacity(3);
        let t0 = 10 * S;
        for id in ["a", "b", "c"] {
            c.record(id, t0, t0).unwrap();
        }
        assert_eq!(c.record("d", t0, t0), Err(ReplayError::Full));
        assert_eq!(c.len(), 3);
        // Once the first ids expire, room returns.
        c.record("d", t0 + 300 * S, t0 + 300 * S).unwrap();
        assert_eq!(c.len(), 1);
    }
}
