//! The anchor's directory: which agent is reachable at which URL, as its own signed registration says.
//!
//! An entry is only ever written from a registration whose signature was checked under the key the
//! agent id *is* (the caller checks that), so nobody can register an id they do not hold. A registration
//! older than the stored one is refused, so a captured registration cannot move an agent back to an old
//! URL within the freshness window. Entries unseen for [`ANCHOR_REGISTRATION_STALE_S`] are invisible to
//! lookups and pruned.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::limits::{ANCHOR_DIRECTORY_ENTRIES_MAX, ANCHOR_REGISTRATION_STALE_S};

/// One agent's stored registration: the signed fields as received, and when we accepted it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// The agent id (its Ed25519 key, lowercase hex).
    pub agent_id: String,
    /// The URL it registered.
    pub url: String,
    /// The signed timestamp, as sent (the signature covers this exact string).
    pub timestamp: String,
    /// The signed timestamp, parsed, in Unix microseconds.
    pub stamp_us: i64,
    /// The hex signature over `peer_update\n<agent_id>\n<url>\n<timestamp>` (0.5.3's), empty when the
    /// agent sent only ours.
    pub signature: String,
    /// Our form's signature (domain `anchor-register`: agent_id, url, timestamp), empty when absent.
    pub dm_signature_hex: String,
    /// When the anchor accepted it, Unix microseconds.
    pub last_seen_us: i64,
}

/// Why a registration was not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// The stored registration of this id carries a later signed timestamp.
    #[error("Stale registration")]
    Stale,
    /// The directory holds [`ANCHOR_DIRECTORY_ENTRIES_MAX`] live entries and this id is new.
    #[error("Directory full")]
    Full,
}

/// The registrations, by agent id.
#[derive(Debug, Default)]
pub struct Directory {
    entries: HashMap<String, Registration>,
}

/// Whether a registration seen at `last_seen_us` is stale at `now_us`.
fn is_stale(last_seen_us: i64, now_us: i64) -> bool {
    (now_us as i128) - (last_seen_us as i128) > (ANCHOR_REGISTRATION_STALE_S as i128) * 1_000_000
}

impl Directory {
    /// Registrations held (stale ones included until pruned).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no registration is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Takes back a stored registration at start-up (stale ones are left out and reported for deletion).
    pub fn restore(&mut self, reg: Registration, now_us: i64) -> bool {
        if is_stale(reg.last_seen_us, now_us) || self.entries.len() >= ANCHOR_DIRECTORY_ENTRIES_MAX {
            return false;
        }
        self.entries.insert(reg.agent_id.clone(), reg);
        true
    }

    /// Stores a checked registration. `Ok(true)` = the id was not registered before. The second
    /// element lists ids pruned as stale to make room (their records must be deleted).
    pub fn register(&mut self, reg: Registration, now_us: i64) -> (Result<bool, RegisterError>, Vec<String>) {
        if let Some(old) = self.entries.get(&reg.agent_id) {
            if reg.stamp_us < old.stamp_us {
                return (Err(RegisterError::Stale), Vec::new());
            }
        }
        let mut pruned = Vec::new();
        let is_new = !self.entries.contains_key(&reg.agent_id);
        if is_new && self.entries.len() >= ANCHOR_DIRECTORY_ENTRIES_MAX {
            pruned = self.prune(now_us);
            if self.entries.len() >= ANCHOR_DIRECTORY_ENTRIES_MAX {
                return (Err(RegisterError::Full), pruned);
            }
        }
        self.entries.insert(reg.agent_id.clone(), reg);
        debug_assert!(self.entries.len() <= ANCHOR_DIRECTORY_ENTRIES_MAX);
        (Ok(is_new), pruned)
    }

    /// The live registration of `agent_id` (none once stale).
    pub fn lookup(&self, agent_id: &str, now_us: i64) -> Option<&Registration> {
        self.entries.get(agent_id).filter(|r| !is_stale(r.last_seen_us, now_us))
    }

    /// Drops every stale registration; returns their ids.
    pub fn prune(&mut self, now_us: i64) -> Vec<String> {
        let stale: Vec<String> =
            self.entries.values().filter(|r| is_stale(r.last_seen_us, now_us)).map(|r| r.agent_id.clone()).collect();
        for id in &stale {
            self.entries.remove(id);
        }
        stale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(id: usize, stamp_us: i64, seen_us: i64) -> Registration {
        Registration {
            agent_id: format!("{id:064x}"),
            url: format!("http://h{id}:1"),
            timestamp: String::new(),
            stamp_us,
            signature: String::new(),
            dm_signature_hex: String::new(),
            last_seen_us: seen_us,
        }
    }

    #[test]
    fn an_older_registration_never_replaces_a_newer_one() {
        let mut d = Directory::default();
        assert_eq!(d.register(reg(1, 10, 10), 10).0, Ok(true));
        assert_eq!(d.register(reg(1, 9, 11), 11).0, Err(RegisterError::Stale));
        assert_eq!(d.register(reg(1, 10, 12), 12).0, Ok(false));
        assert_eq!(d.lookup(&format!("{:064x}", 1), 12).unwrap().last_seen_us, 12);
    }

    #[test]
    fn directory_cap_edge_and_stale_entries_make_room() {
        let mut d = Directory::default();
        for i in 0..ANCHOR_DIRECTORY_ENTRIES_MAX {
            assert_eq!(d.register(reg(i, 0, 0), 0).0, Ok(true));
        }
        assert_eq!(d.register(reg(usize::MAX, 0, 0), 0).0, Err(RegisterError::Full));
        // A known id still refreshes at the cap.
        assert_eq!(d.register(reg(0, 1, 1), 1).0, Ok(false));
        let later = (ANCHOR_REGISTRATION_STALE_S as i64) * 1_000_000 + 2;
        let (result, pruned) = d.register(reg(usize::MAX, later, later), later);
        assert_eq!(result, Ok(true));
        assert_eq!(pruned.len(), ANCHOR_DIRECTORY_ENTRIES_MAX);
    }

    #[test]
    fn stale_entries_are_invisible() {
        let mut d = Directory::default();
        d.register(reg(1, 0, 0), 0).0.unwrap();
        let edge = (ANCHOR_REGISTRATION_STALE_S as i64) * 1_000_000;
        assert!(d.lookup(&format!("{:064x}", 1), edge).is_some());
        assert!(d.lookup(&format!("{:064x}", 1), edge + 1).is_none());
    }
}
