//! The payer's side of AntiMatter: payment notices we sent that await the payee's started notice
//! (R-F7, the SPEC's non-routing rule).
//!
//! After a payment notice marked `antimatter_eligible` leaves for a payee B that speaks our form, the
//! payer A expects B's signed `antimatter_started` within [`ANTIMATTER_STARTED_WAIT_S`]. It comes: A
//! raises its trust in B. It does not: A lowers it. Each expectation is a persisted row (one
//! [`Table::AntiMatter`] row, `awaited/<tx>`), so a restart neither forgets nor forgives it; at most
//! [`ANTIMATTER_AWAITED_MAX`] are held, and a payment beyond them is not watched.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::limits::{ANTIMATTER_AWAITED_MAX, ANTIMATTER_STARTED_WAIT_S};
use crate::store::{self, Change, Record, RecordError, Table};

/// The key prefix of an awaited row.
pub const AWAITED_PREFIX: &str = "awaited/";

/// A payment notice we sent, awaiting its payee's started notice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Awaited {
    /// The payee B.
    pub payee: String,
    /// Our notice (its delivery decides whether B can be blamed).
    pub message_id: String,
    /// When we sent it (wall µs).
    pub sent_us: i64,
}

impl Record for Awaited {}

/// Why a payment is not watched.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AwaitError {
    /// This transaction is already awaited.
    #[error("this payment is already awaited")]
    Already,
    /// [`ANTIMATTER_AWAITED_MAX`] payments are awaited.
    #[error("too many payments awaited")]
    Full,
}

/// The awaited payments, by transaction signature.
#[derive(Debug, Default)]
pub struct Awaiting {
    by_tx: BTreeMap<String, Awaited>,
}

fn key(tx: &str) -> String {
    format!("{AWAITED_PREFIX}{tx}")
}

impl Awaiting {
    /// Starts awaiting `tx`'s started notice; answers the row to persist.
    pub fn expect(&mut self, tx: &str, awaited: Awaited) -> Result<Change, AwaitError> {
        if self.by_tx.contains_key(tx) {
            return Err(AwaitError::Already);
        }
        if self.by_tx.len() >= ANTIMATTER_AWAITED_MAX {
            return Err(AwaitError::Full);
        }
        let change = Change::put(Table::AntiMatter, &key(tx), &awaited);
        self.by_tx.insert(tx.to_owned(), awaited);
        debug_assert!(self.by_tx.len() <= ANTIMATTER_AWAITED_MAX);
        Ok(change)
    }

    /// `payee`'s started notice for `tx` came: the expectation ends (answers it and the row's
    /// deletion). A notice from anyone but the payee ends nothing.
    pub fn started(&mut self, tx: &str, payee: &str) -> Option<(Awaited, Change)> {
        if self.by_tx.get(tx)?.payee != payee {
            return None;
        }
        let awaited = self.by_tx.remove(tx)?;
        Some((awaited, Change::delete(Table::AntiMatter, &key(tx))))
    }

    /// Expectations whose wait is over at `now_us` (more than [`ANTIMATTER_STARTED_WAIT_S`] after
    /// the notice), removed, each with its row's deletion.
    pub fn overdue(&mut self, now_us: i64) -> Vec<(String, Awaited, Change)> {
        let wait_us = ANTIMATTER_STARTED_WAIT_S * 1_000_000;
        let late: Vec<String> = self
            .by_tx
            .iter()
            .filter(|(_, a)| now_us.saturating_sub(a.sent_us) > wait_us)
            .map(|(tx, _)| tx.clone())
            .collect();
        late.into_iter()
            .filter_map(|tx| {
                let awaited = self.by_tx.remove(&tx)?;
                let change = Change::delete(Table::AntiMatter, &key(&tx));
                Some((tx, awaited, change))
            })
            .collect()
    }

    /// Payments awaited.
    pub fn len(&self) -> usize {
        self.by_tx.len()
    }

    /// Whether none is awaited.
    pub fn is_empty(&self) -> bool {
        self.by_tx.is_empty()
    }

    /// Reads back one stored row (`key` without its prefix is the transaction). Rows beyond the bound
    /// (written by a build with a larger one) are dropped rather than let the table grow.
    pub fn restore_row(&mut self, tx: &str, value: &[u8]) -> Result<(), RecordError> {
        let awaited = store::decode::<Awaited>(value)?;
        if self.by_tx.len() < ANTIMATTER_AWAITED_MAX {
            self.by_tx.insert(tx.to_owned(), awaited);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_000_000_000_000_000;

    fn awaited(payee: &str) -> Awaited {
        Awaited { payee: payee.into(), message_id: "m".into(), sent_us: T0 }
    }

    #[test]
    fn only_the_payee_ends_an_expectation() {
        let mut w = Awaiting::default();
        w.expect("tx", awaited("B")).unwrap();
        assert_eq!(w.expect("tx", awaited("B")), Err(AwaitError::Already));
        assert!(w.started("tx", "C").is_none(), "someone else's notice");
        assert!(w.started("other", "B").is_none());
        let (a, change) = w.started("tx", "B").unwrap();
        assert_eq!(a.payee, "B");
        assert!(change.value.is_none(), "the row is deleted");
        assert!(w.is_empty());
        assert!(w.started("tx", "B").is_none(), "once");
    }

    #[test]
    fn the_wait_ends_just_after_ten_minutes_and_survives_a_restart() {
        let mut w = Awaiting::default();
        let row = w.expect("tx", awaited("B")).unwrap();
        let mut back = Awaiting::default();
        back.restore_row(row.key.strip_prefix(AWAITED_PREFIX).unwrap(), row.value.as_ref().unwrap()).unwrap();
        for w in [&mut w, &mut back] {
            assert!(w.overdue(T0 + ANTIMATTER_STARTED_WAIT_S * 1_000_000).is_empty(), "at the edge: still waiting");
            let late = w.overdue(T0 + ANTIMATTER_STARTED_WAIT_S * 1_000_000 + 1);
            assert_eq!(late.len(), 1);
            assert_eq!((late[0].0.as_str(), late[0].1.payee.as_str()), ("tx", "B"));
            assert!(w.is_empty());
        }
    }

    #[test]
    fn at_most_the_bound_is_awaited() {
        let mut w = Awaiting::default();
        for i in 0..ANTIMATTER_AWAITED_MAX {
            w.expect(&format!("tx{i}"), awaited("B")).unwrap();
        }
        assert_eq!(w.expect("one-more", awaited("B")), Err(AwaitError::Full));
        assert_eq!(w.len(), ANTIMATTER_AWAITED_MAX);
        let row = Change::put(Table::AntiMatter, "awaited/x", &awaited("B"));
        w.restore_row("x", row.value.as_ref().unwrap()).unwrap();
        assert_eq!(w.len(), ANTIMATTER_AWAITED_MAX, "restore keeps the bound too");
    }
}
