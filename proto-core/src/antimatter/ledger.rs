//! The payee's AntiMatter ledger: which payments started a game, each game's state, and fees accrued
//! below the payable minimum. Everything here is persisted (one [`Table::AntiMatter`] row per entry),
//! because "paid once" must survive a restart.
//!
//! A flow goes `initiated → forwarded → resolved(paid | kept | timeout)`. The result handler and the
//! watchdog both end a flow through [`Ledger::resolve`], which answers a payout only for the first of
//! them: whichever comes second finds the flow resolved and pays nothing.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::limits::{
    ANTIMATTER_ACCRUALS_MAX, ANTIMATTER_FLOWS_MAX, ANTIMATTER_LOG_MAX, ANTIMATTER_SIGNAL_AGE_MAX_S,
    ANTIMATTER_SOL_PAYABLE_MIN, ANTIMATTER_STARTED_MAX, ANTIMATTER_WATCHDOG_GRACE_S, PAYMENT_AGE_MAX_S,
    PAYMENT_CLOCK_SKEW_S,
};
use crate::store::{self, Change, Record, RecordError, Table};

/// Where a flow stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlowState {
    /// The payment was verified and our own game is being played.
    Initiated,
    /// The signal went on to a veteran; we wait for its result.
    Forwarded,
    /// Settled: the fee was paid (or accrued) to the named destination.
    Paid,
    /// Settled: we keep the fee (terminal here, or a timeout without a superagent wallet).
    Kept,
    /// Settled: paid (or accrued) to the payer's superagent after the signal timed out.
    Timeout,
}

impl FlowState {
    /// Whether the flow is over.
    pub fn is_resolved(self) -> bool {
        matches!(self, Self::Paid | Self::Kept | Self::Timeout)
    }
}

/// One payment's fee on its way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// The signal.
    pub signal_id: String,
    /// The payment that started it.
    pub tx_signature: String,
    /// The payer A.
    pub payer: String,
    /// `SOL` or a mint.
    pub asset: String,
    /// Decimals of `asset`.
    pub decimals: u8,
    /// The fee, base units.
    pub fee: u64,
    /// Where a timeout pays: A's word in its signed notice.
    pub superagent_wallet: Option<String>,
    /// Wall µs when it started.
    pub started_us: i64,
    /// Where it stands.
    pub state: FlowState,
    /// Who got the fee, once resolved.
    pub destination: Option<String>,
}

impl Record for Flow {}

/// A payment that started a game (the row keeps the transaction from starting another).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    /// Its signal.
    pub signal_id: String,
    /// Wall µs.
    pub at_us: i64,
}

impl Record for Started {}

/// Base units owed to one destination, not yet worth a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accrued(pub u64);

impl Record for Accrued {}

/// A transfer the runtime's wallet must make, once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Payout {
    /// The signal it settles.
    pub signal_id: String,
    /// The recipient's wallet.
    pub to_wallet: String,
    /// `SOL` or a mint.
    pub asset: String,
    /// Decimals of `asset`.
    pub decimals: u8,
    /// Base units: this fee and what had accrued for the recipient.
    pub units: u64,
}

/// How a flow is to end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settle {
    /// Pay this wallet (a match, or a terminal veteran down the chain).
    To(String),
    /// Keep the fee (we are terminal).
    Keep,
    /// The signal timed out: pay the payer's superagent, or keep without one.
    Timeout,
}

/// What resolving a flow decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Make this transfer.
    Pay(Payout),
    /// The fee was added to what the destination is owed (below the payable minimum).
    Accrued {
        /// The destination.
        to_wallet: String,
        /// What it is owed now.
        total: u64,
    },
    /// We keep the fee.
    Kept,
}

/// Why a verified payment starts no game.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum StartError {
    /// This transaction already started one.
    #[error("this payment already started an AntiMatter signal")]
    AlreadyStarted,
    /// [`ANTIMATTER_FLOWS_MAX`] flows are open, or [`ANTIMATTER_STARTED_MAX`] payments remembered.
    #[error("too many AntiMatter signals in flight")]
    Full,
    /// 1 % of the payment is zero base units.
    #[error("the fee of this payment is zero")]
    NoFee,
}

/// One entry of `antimatter_log` (0.5.3's event names).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogEvent {
    /// 0.5.3's `antimatter_initiated`, `forwarded`, `antimatter_sent`, `antimatter_send_failed`,
    /// `antimatter_kept`, `antimatter_timeout`, `antimatter_resolved_callback`, `rate_disagreement`;
    /// ours `antimatter_accrued`, `antimatter_signal`, `antimatter_match`, `antimatter_result_refused`,
    /// `antimatter_fraud`, `antimatter_no_game`, `antimatter_started`, `antimatter_not_routed`,
    /// `antimatter_not_awaited`, `antimatter_disagreement`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The signal.
    pub signal_id: String,
    /// A short detail (a wallet, an amount, a reason).
    pub detail: String,
    /// When (wall µs).
    pub at_us: i64,
}

/// The ledger.
#[derive(Debug, Default)]
pub struct Ledger {
    flows: BTreeMap<String, Flow>,
    started: BTreeMap<String, Started>,
    accrued: BTreeMap<String, u64>,
    log: VecDeque<LogEvent>,
}

/// The smallest transfer worth making for `asset` (R-F2). A token fee is paid from one base unit: the
/// transfer creates the recipient's token account when it lacks one, at the payee's expense.
pub fn payable_min(asset: &str) -> u64 {
    if asset == "SOL" {
        ANTIMATTER_SOL_PAYABLE_MIN
    } else {
        1
    }
}

fn flow_key(id: &str) -> String {
    format!("flow/{id}")
}

fn started_key(tx: &str) -> String {
    format!("started/{tx}")
}

fn accrued_key(asset: &str, wallet: &str) -> String {
    format!("accrued/{asset}/{wallet}")
}

impl Ledger {
    /// Starts a flow for a verified payment (R-F1): at most one per transaction, ever.
    pub fn start(&mut self, flow: Flow, now_us: i64) -> Result<Vec<Change>, StartError> {
        if self.started.contains_key(&flow.tx_signature) {
            return Err(StartError::AlreadyStarted);
        }
        if flow.fee == 0 {
            return Err(StartError::NoFee);
        }
        let mut changes = self.forget_old(now_us);
        let open = self.flows.values().filter(|f| !f.state.is_resolved()).count();
        if open >= ANTIMATTER_FLOWS_MAX || self.started.len() >= ANTIMATTER_STARTED_MAX {
            return Err(StartError::Full);
        }
        let started = Started { signal_id: flow.signal_id.clone(), at_us: now_us };
        changes.push(Change::put(Table::AntiMatter, &started_key(&flow.tx_signature), &started));
        changes.push(Change::put(Table::AntiMatter, &flow_key(&flow.signal_id), &flow));
        self.started.insert(flow.tx_signature.clone(), started);
        self.log(now_us, "antimatter_initiated", &flow.signal_id, format!("{} {}", flow.fee, flow.asset));
        self.flows.insert(flow.signal_id.clone(), flow);
        Ok(changes)
    }

    /// The flow of `signal_id`.
    pub fn flow(&self, signal_id: &str) -> Option<&Flow> {
        self.flows.get(signal_id)
    }

    /// Our game did not match and the signal went to a veteran.
    pub fn forwarded(&mut self, signal_id: &str, now_us: i64, to: &str) -> Vec<Change> {
        let Some(flow) = self.flows.get_mut(signal_id).filter(|f| f.state == FlowState::Initiated) else {
            return Vec::new();
        };
        flow.state = FlowState::Forwarded;
        let change = Change::put(Table::AntiMatter, &flow_key(signal_id), &*flow);
        self.log(now_us, "forwarded", signal_id, to.to_owned());
        vec![change]
    }

    /// Ends a flow, once: the first call decides and the flow is resolved; any later call (a result
    /// after the watchdog, a second result) answers `None` and changes nothing.
    pub fn resolve(&mut self, signal_id: &str, settle: Settle, now_us: i64) -> Option<(Decision, Vec<Change>)> {
        let flow = self.flows.get_mut(signal_id).filter(|f| !f.state.is_resolved())?;
        let (state, to) = match settle {
            Settle::To(w) => (FlowState::Paid, Some(w)),
            Settle::Keep => (FlowState::Kept, None),
            Settle::Timeout => (FlowState::Timeout, flow.superagent_wallet.clone()),
        };
        flow.state = if to.is_none() { FlowState::Kept } else { state };
        flow.destination = to.clone();
        let flow = flow.clone();
        let mut changes = vec![Change::put(Table::AntiMatter, &flow_key(signal_id), &flow)];
        let decision = match to {
            None => Decision::Kept,
            Some(wallet) => self.owe(&flow, wallet, &mut changes),
        };
        let kind = match (&decision, settle_kind(state)) {
            (Decision::Kept, _) => "antimatter_kept",
            (Decision::Accrued { .. }, _) => "antimatter_accrued",
            (Decision::Pay(_), k) => k,
        };
        let detail = match &decision {
            Decision::Pay(p) => format!("{} {} to {}", p.units, p.asset, p.to_wallet),
            Decision::Accrued { to_wallet, total } => format!("{total} {} owed to {to_wallet}", flow.asset),
            Decision::Kept => format!("{} {}", flow.fee, flow.asset),
        };
        self.log(now_us, kind, signal_id, detail);
        Some((decision, changes))
    }

    /// Adds the fee to what `wallet` is owed; answers a payout when the sum is worth a transaction.
    fn owe(&mut self, flow: &Flow, wallet: String, changes: &mut Vec<Change>) -> Decision {
        let key = accrued_key(&flow.asset, &wallet);
        let total = self.accrued.get(&key).copied().unwrap_or(0).saturating_add(flow.fee);
        if total >= payable_min(&flow.asset) {
            if self.accrued.remove(&key).is_some() {
                changes.push(Change::delete(Table::AntiMatter, &key));
            }
            let payout = Payout {
                signal_id: flow.signal_id.clone(),
                to_wallet: wallet,
                asset: flow.asset.clone(),
                decimals: flow.decimals,
                units: total,
            };
            return Decision::Pay(payout);
        }
        if !self.accrued.contains_key(&key) && self.accrued.len() >= ANTIMATTER_ACCRUALS_MAX {
            // No room to remember a debt: the payee keeps this small fee rather than forget others.
            return Decision::Kept;
        }
        self.accrued.insert(key.clone(), total);
        changes.push(Change::put(Table::AntiMatter, &key, &Accrued(total)));
        Decision::Accrued { to_wallet: wallet, total }
    }

    /// A payout the wallet could not make: its units are owed again (paid with the next fee there).
    pub fn payout_failed(&mut self, payout: &Payout, now_us: i64) -> Vec<Change> {
        let key = accrued_key(&payout.asset, &payout.to_wallet);
        let total = self.accrued.get(&key).copied().unwrap_or(0).saturating_add(payout.units);
        self.accrued.insert(key.clone(), total);
        self.log(now_us, "antimatter_send_failed", &payout.signal_id, format!("{total} owed again"));
        vec![Change::put(Table::AntiMatter, &key, &Accrued(total))]
    }

    /// Flows the watchdog must end now: older than the signal age plus its grace, still open.
    pub fn overdue(&self, now_us: i64) -> Vec<String> {
        let limit_us = (ANTIMATTER_SIGNAL_AGE_MAX_S + ANTIMATTER_WATCHDOG_GRACE_S) * 1_000_000;
        self.flows
            .values()
            .filter(|f| !f.state.is_resolved() && now_us.saturating_sub(f.started_us) > limit_us)
            .map(|f| f.signal_id.clone())
            .collect()
    }

    /// Flows not resolved yet.
    pub fn open(&self) -> usize {
        self.flows.values().filter(|f| !f.state.is_resolved()).count()
    }

    /// What is owed, per `asset/wallet`.
    pub fn accrued(&self) -> &BTreeMap<String, u64> {
        &self.accrued
    }

    /// Records an event in the log (the newest [`ANTIMATTER_LOG_MAX`] are kept; not persisted).
    pub fn log(&mut self, now_us: i64, kind: &'static str, signal_id: &str, detail: String) {
        if self.log.len() >= ANTIMATTER_LOG_MAX {
            self.log.pop_front();
        }
        self.log.push_back(LogEvent { kind, signal_id: signal_id.to_owned(), detail, at_us: now_us });
    }

    /// The log, oldest first.
    pub fn events(&self) -> impl ExactSizeIterator<Item = &LogEvent> {
        self.log.iter()
    }

    /// Payments too old to be credited again are forgotten with their resolved flows: a replay of one is
    /// refused by its age before it could start a second game.
    fn forget_old(&mut self, now_us: i64) -> Vec<Change> {
        let keep_us = (PAYMENT_AGE_MAX_S + PAYMENT_CLOCK_SKEW_S) * 1_000_000;
        let old: Vec<(String, String)> = self
            .started
            .iter()
            .filter(|(_, s)| now_us.saturating_sub(s.at_us) > keep_us)
            .filter(|(_, s)| self.flows.get(&s.signal_id).is_none_or(|f| f.state.is_resolved()))
            .map(|(tx, s)| (tx.clone(), s.signal_id.clone()))
            .collect();
        let mut changes = Vec::new();
        for (tx, signal_id) in old {
            self.started.remove(&tx);
            self.flows.remove(&signal_id);
            changes.push(Change::delete(Table::AntiMatter, &started_key(&tx)));
            changes.push(Change::delete(Table::AntiMatter, &flow_key(&signal_id)));
        }
        changes
    }

    /// Reads back one stored row.
    pub fn restore_row(&mut self, key: &str, value: &[u8]) -> Result<(), RecordError> {
        if let Some(id) = key.strip_prefix("flow/") {
            self.flows.insert(id.to_owned(), store::decode::<Flow>(value)?);
        } else if let Some(tx) = key.strip_prefix("started/") {
            self.started.insert(tx.to_owned(), store::decode::<Started>(value)?);
        } else if key.starts_with("accrued/") {
            self.accrued.insert(key.to_owned(), store::decode::<Accrued>(value)?.0);
        }
        Ok(())
    }
}

fn settle_kind(state: FlowState) -> &'static str {
    match state {
        FlowState::Timeout => "antimatter_timeout",
        _ => "antimatter_sent",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_000_000_000_000_000;

    fn flow(id: &str, tx: &str, fee: u64) -> Flow {
        Flow {
            signal_id: id.into(),
            tx_signature: tx.into(),
            payer: "A".into(),
            asset: "SOL".into(),
            decimals: 9,
            fee,
            superagent_wallet: Some("SUPER".into()),
            started_us: T0,
            state: FlowState::Initiated,
            destination: None,
        }
    }

    fn replay(changes: &[Change]) -> Ledger {
        let mut back = Ledger::default();
        for c in changes.iter().filter(|c| c.value.is_some()) {
            back.restore_row(&c.key, c.value.as_ref().unwrap()).unwrap();
        }
        back
    }

    #[test]
    fn a_transaction_starts_at_most_one_game_even_across_a_restart() {
        let mut l = Ledger::default();
        let changes = l.start(flow("am-1", "tx1", 1_000_000), T0).unwrap();
        assert_eq!(l.start(flow("am-2", "tx1", 1_000_000), T0), Err(StartError::AlreadyStarted));
        let mut back = replay(&changes);
        assert_eq!(back.start(flow("am-3", "tx1", 1_000_000), T0 + 1), Err(StartError::AlreadyStarted));
        assert_eq!(back.flow("am-1").unwrap().state, FlowState::Initiated);
        assert_eq!(l.start(flow("am-4", "tx2", 0), T0), Err(StartError::NoFee));
    }

    /// T-F5: the result handler and the watchdog race: only the first settles, exactly one payout.
    #[test]
    fn result_and_watchdog_pay_exactly_once_in_either_order() {
        for result_first in [true, false] {
            let mut l = Ledger::default();
            l.start(flow("am-1", "tx1", 1_000_000), T0).unwrap();
            l.forwarded("am-1", T0, "V");
            let late = T0 + (ANTIMATTER_SIGNAL_AGE_MAX_S + ANTIMATTER_WATCHDOG_GRACE_S + 1) * 1_000_000;
            assert_eq!(l.overdue(late), vec!["am-1".to_owned()]);
            let result = |l: &mut Ledger| l.resolve("am-1", Settle::To("VET".into()), late);
            let watchdog = |l: &mut Ledger| l.resolve("am-1", Settle::Timeout, late);
            let (first, second) =
                if result_first { (result(&mut l), watchdog(&mut l)) } else { (watchdog(&mut l), result(&mut l)) };
            let Some((Decision::Pay(p), _)) = first else { panic!("the first pays") };
            assert_eq!(p.to_wallet, if result_first { "VET" } else { "SUPER" });
            assert_eq!(second, None, "the second pays nothing");
            assert!(l.overdue(late).is_empty());
        }
    }

    #[test]
    fn a_resolution_survives_a_restart() {
        let mut l = Ledger::default();
        let mut changes = l.start(flow("am-1", "tx1", 1_000_000), T0).unwrap();
        changes.extend(l.resolve("am-1", Settle::To("VET".into()), T0).unwrap().1);
        let mut back = replay(&changes);
        assert_eq!(back.resolve("am-1", Settle::Timeout, T0), None);
    }

    /// R-F2: fees below the payable minimum accrue per destination and are paid once they clear it.
    #[test]
    fn small_fees_accrue_until_they_are_worth_a_transaction() {
        let mut l = Ledger::default();
        let half = ANTIMATTER_SOL_PAYABLE_MIN / 2 + 1;
        l.start(flow("am-1", "tx1", half), T0).unwrap();
        l.start(flow("am-2", "tx2", half), T0).unwrap();
        let (d, c1) = l.resolve("am-1", Settle::To("VET".into()), T0).unwrap();
        assert_eq!(d, Decision::Accrued { to_wallet: "VET".into(), total: half });
        let mut back = replay(&c1);
        assert_eq!(back.accrued().values().copied().collect::<Vec<_>>(), vec![half], "the debt is persisted");
        let (d, c2) = l.resolve("am-2", Settle::To("VET".into()), T0).unwrap();
        let Decision::Pay(p) = d else { panic!("{d:?}") };
        assert_eq!(p.units, 2 * half);
        assert!(l.accrued().is_empty());
        assert!(c2.iter().any(|c| c.key.starts_with("accrued/") && c.value.is_none()));
        let failed = l.payout_failed(&p, T0);
        assert_eq!(l.accrued().values().copied().collect::<Vec<_>>(), vec![2 * half]);
        back = replay(&failed);
        assert_eq!(back.accrued().len(), 1);
        let exact = flow("am-3", "tx3", ANTIMATTER_SOL_PAYABLE_MIN - 1);
        let mut l = Ledger::default();
        l.start(exact, T0).unwrap();
        assert!(matches!(l.resolve("am-3", Settle::To("W".into()), T0).unwrap().0, Decision::Accrued { .. }));
    }

    #[test]
    fn a_timeout_without_a_superagent_wallet_keeps_the_fee() {
        let mut l = Ledger::default();
        let mut f = flow("am-1", "tx1", 1_000_000);
        f.superagent_wallet = None;
        l.start(f, T0).unwrap();
        assert_eq!(l.resolve("am-1", Settle::Timeout, T0).unwrap().0, Decision::Kept);
        assert_eq!(l.flow("am-1").unwrap().state, FlowState::Kept);
        assert_eq!(l.events().last().unwrap().kind, "antimatter_kept");
    }

    #[test]
    fn open_flows_and_debts_are_bounded() {
        let mut l = Ledger::default();
        for i in 0..ANTIMATTER_FLOWS_MAX {
            l.start(flow(&format!("am-{i}"), &format!("tx{i}"), 1), T0).unwrap();
        }
        assert_eq!(l.start(flow("am-x", "tx-x", 1), T0), Err(StartError::Full), "one more than the bound");
        // Each resolution frees its place and owes one wallet a tiny fee.
        let settle = |l: &mut Ledger, i: usize, wallet: String| {
            if l.flow(&format!("am-{i}")).is_none() {
                l.start(flow(&format!("am-{i}"), &format!("tx{i}"), 1), T0).unwrap();
            }
            l.resolve(&format!("am-{i}"), Settle::To(wallet), T0).unwrap().0
        };
        for i in 0..ANTIMATTER_ACCRUALS_MAX {
            assert!(matches!(settle(&mut l, i, format!("W{i}")), Decision::Accrued { .. }), "{i}");
        }
        assert_eq!(l.accrued().len(), ANTIMATTER_ACCRUALS_MAX);
        let over = ANTIMATTER_ACCRUALS_MAX;
        assert_eq!(settle(&mut l, over, "new".into()), Decision::Kept, "no room for one more debt");
        let again = settle(&mut l, over + 1, "W0".into());
        assert_eq!(again, Decision::Accrued { to_wallet: "W0".into(), total: 2 }, "a known debt still grows");
    }

    #[test]
    fn the_log_keeps_the_newest_hundred() {
        let mut l = Ledger::default();
        for i in 0..ANTIMATTER_LOG_MAX + 5 {
            l.log(T0, "antimatter_signal", &format!("am-{i}"), String::new());
        }
        assert_eq!(l.events().count(), ANTIMATTER_LOG_MAX);
        assert_eq!(l.events().next().unwrap().signal_id, "am-5");
    }

    #[test]
    fn started_payments_are_forgotten_only_when_too_old_to_be_credited_again() {
        let mut l = Ledger::default();
        l.start(flow("am-1", "tx1", 1_000_000), T0).unwrap();
        l.resolve("am-1", Settle::Keep, T0).unwrap();
        let edge = T0 + (PAYMENT_AGE_MAX_S + PAYMENT_CLOCK_SKEW_S) * 1_000_000;
        assert_eq!(l.start(flow("am-2", "tx1", 1_000_000), edge), Err(StartError::AlreadyStarted));
        let changes = l.start(flow("am-3", "tx2", 1_000_000), edge + 1).unwrap();
        assert!(changes.iter().any(|c| c.key == "started/tx1" && c.value.is_none()));
        assert!(l.flow("am-1").is_none());
    }
}
