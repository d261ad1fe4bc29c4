//! [`PaymentChecks`]: the claimed payments the runtime's wallet is verifying on-chain for this node,
//! and what each payment notice came to.
//!
//! The core never decides that money moved: a claim (a payment notice's metadata, a pool purchase's
//! `tx_signature`) becomes a [`PaymentCheck`] for the runtime, whose wallet fetches the transaction,
//! checks it (R-G8) and credits it once under the check's key in its one persisted ledger. The answer
//! comes back as a [`crate::io::PaymentVerdict`]; an unavailable answer (RPC down, transaction not final yet) is
//! asked again a few times, later.
//!
//! Nothing here is persisted: the wallet's ledger is the record of what was credited, and asking it
//! again about a credited claim answers the same, so a restarted node simply checks its notices again.

use std::collections::{BTreeMap, VecDeque};

use thiserror::Error;

use crate::io::{CheckId, PaymentCheck};
use crate::limits::{PAYMENT_CHECKS_MAX, PAYMENT_CHECK_ATTEMPTS_MAX, PAYMENT_NOTICES_MAX, PAYMENT_RECHECK_MS};

/// What a check is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// A payment notice in the inbox: verified, it starts its AntiMatter signal.
    Notice {
        /// The notice's message id.
        message_id: String,
    },
    /// A pool purchase whose HTTP request waits for the verdict.
    PoolBuy(crate::pool::Purchase),
}

/// What a payment notice came to, as `get_message` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoticeStatus {
    /// The wallet is checking it (or will again).
    Checking,
    /// It counts: this many base units arrived.
    Verified(u64),
    /// It does not count, and why.
    Refused(String),
}

/// Why a check was not started.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CheckError {
    /// `PAYMENT_CHECKS_MAX` checks are already waiting for the wallet.
    #[error("too many payments being checked; try again later")]
    Busy,
}

struct InFlight {
    purpose: Purpose,
    check: PaymentCheck,
    attempts: u32,
}

/// The checks waiting for the wallet, those to ask again, and the notices' outcomes.
#[derive(Default)]
pub struct PaymentChecks {
    next_id: u64,
    in_flight: BTreeMap<CheckId, InFlight>,
    /// (due monotonic ms, check) to ask again, in due order.
    rechecks: VecDeque<(u64, InFlight)>,
    notices: BTreeMap<String, NoticeStatus>,
    /// Notice ids in the order they were first seen, to forget the oldest beyond the bound.
    notice_order: VecDeque<String>,
}

impl PaymentChecks {
    /// Registers a check of `check` (its id is assigned here) for `purpose`; answers it with its id.
    pub fn start(&mut self, purpose: Purpose, mut check: PaymentCheck) -> Result<PaymentCheck, CheckError> {
        if self.in_flight.len() + self.rechecks.len() >= PAYMENT_CHECKS_MAX {
            return Err(CheckError::Busy);
        }
        self.next_id += 1;
        check.id = CheckId(self.next_id);
        if let Purpose::Notice { message_id } = &purpose {
            self.set_notice(message_id, NoticeStatus::Checking);
        }
        self.in_flight.insert(check.id, InFlight { purpose, check: check.clone(), attempts: 1 });
        Ok(check)
    }

    /// The purpose of check `id`, now answered (`None`: unknown, or answered before).
    pub fn finish(&mut self, id: CheckId) -> Option<(Purpose, PaymentCheck, u32)> {
        self.in_flight.remove(&id).map(|f| (f.purpose, f.check, f.attempts))
    }

    /// Asks again at `due_ms` (for an unavailable answer), unless `attempts` are spent: then false.
    pub fn recheck(&mut self, due_ms: u64, purpose: Purpose, check: PaymentCheck, attempts: u32) -> bool {
        if attempts >= PAYMENT_CHECK_ATTEMPTS_MAX {
            return false;
        }
        self.rechecks.push_back((due_ms, InFlight { purpose, check, attempts }));
        true
    }

    /// The rechecks due at `now_ms`, each under a new id, to emit again.
    pub fn due(&mut self, now_ms: u64) -> Vec<PaymentCheck> {
        let mut out = Vec::new();
        while self.rechecks.front().is_some_and(|(due, _)| *due <= now_ms) {
            let Some((_, mut f)) = self.rechecks.pop_front() else { break };
            self.next_id += 1;
            f.check.id = CheckId(self.next_id);
            f.attempts += 1;
            out.push(f.check.clone());
            self.in_flight.insert(f.check.id, f);
        }
        out
    }

    /// When the next recheck is due.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.rechecks.front().map(|(due, _)| *due)
    }

    /// The earliest time an unavailable answer at `now_ms` is asked again.
    pub fn recheck_at(now_ms: u64) -> u64 {
        now_ms.saturating_add(PAYMENT_RECHECK_MS)
    }

    /// Records what notice `message_id` came to (the oldest outcome is forgotten beyond the bound).
    pub fn set_notice(&mut self, message_id: &str, status: NoticeStatus) {
        if self.notices.insert(message_id.to_owned(), status).is_none() {
            self.notice_order.push_back(message_id.to_owned());
        }
        while self.notice_order.len() > PAYMENT_NOTICES_MAX {
            if let Some(old) = self.notice_order.pop_front() {
                self.notices.remove(&old);
            }
        }
    }

    /// What notice `message_id` came to, if it is one.
    pub fn notice(&self, message_id: &str) -> Option<&NoticeStatus> {
        self.notices.get(message_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> PaymentCheck {
        PaymentCheck {
            id: CheckId(0),
            credit_key: "m1".into(),
            payer_wallet: "w".into(),
            tx_signature: "t".into(),
            token: "SOL".into(),
            amount: "1".into(),
            memo: None,
        }
    }

    #[test]
    fn a_check_is_answered_once_and_rechecked_a_bounded_number_of_times() {
        let mut c = PaymentChecks::default();
        let notice = || Purpose::Notice { message_id: "m1".into() };
        let started = c.start(notice(), check()).unwrap();
        assert_eq!(c.notice("m1"), Some(&NoticeStatus::Checking));
        let (purpose, chk, attempts) = c.finish(started.id).unwrap();
        assert!(c.finish(started.id).is_none(), "answered once");
        assert!(c.recheck(10, purpose, chk, attempts));
        assert!(c.due(9).is_empty());
        assert_eq!(c.next_deadline_ms(), Some(10));
        let again = c.due(10);
        assert_eq!(again.len(), 1);
        assert_ne!(again[0].id, started.id, "a recheck has a new id");
        let mut attempts = 2;
        let mut id = again[0].id;
        while let Some((p, chk, a)) = c.finish(id) {
            attempts = a;
            if !c.recheck(0, p, chk, a) {
                break;
            }
            id = c.due(0)[0].id;
        }
        assert_eq!(attempts, PAYMENT_CHECK_ATTEMPTS_MAX);
    }

    #[test]
    fn checks_beyond_the_bound_are_refused() {
        let mut c = PaymentChecks::default();
        for _ in 0..PAYMENT_CHECKS_MAX {
            c.start(Purpose::Notice { message_id: "m".into() }, check()).unwrap();
        }
        assert_eq!(c.start(Purpose::Notice { message_id: "m".into() }, check()), Err(CheckError::Busy));
    }

    #[test]
    fn notice_outcomes_are_bounded() {
        let mut c = PaymentChecks::default();
        for i in 0..=PAYMENT_NOTICES_MAX {
            c.set_notice(&format!("m{i}"), NoticeStatus::Verified(1));
        }
        assert!(c.notice("m0").is_none(), "the oldest is forgotten");
        assert!(c.notice(&format!("m{PAYMENT_NOTICES_MAX}")).is_some());
    }
}
