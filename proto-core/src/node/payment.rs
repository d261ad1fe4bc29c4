//! Payments on the node (SPEC §17.5): a payment notice is checked in the background as it arrives,
//! through the runtime's wallet ([`Output::CheckPayment`] out, [`Node::handle_payment_checked`] in);
//! a verified one is marked `payment_verified` and starts its AntiMatter signal, whether or not an
//! agent ever reads it. Pool purchases are checked the same way (`node/pool.rs`).

use serde_json::Value;

use super::Node;
use crate::io::{CheckId, Output, PaymentCheck, PaymentVerdict};
use crate::payments::{NoticeStatus, PaymentChecks, Purpose};

/// The chain whose wallets payments are checked on.
const CHAIN: &str = "solana";

/// The claim a notice's metadata makes, or why it makes none we can check.
fn notice_claim(meta: &Value) -> Result<(String, String, String, Option<String>), &'static str> {
    let field = |k: &str| meta.get(k).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
    let tx = field("tx_signature").ok_or("the notice names no tx_signature")?;
    let token = field("token").unwrap_or("SOL");
    let amount = match meta.get("amount") {
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err("the notice names no amount"),
    };
    Ok((tx.to_owned(), token.to_owned(), amount, field("memo").map(str::to_owned)))
}

impl Node {
    /// A message just entered the inbox: a payment notice is checked on-chain (nothing else is).
    pub(crate) fn check_notice(&mut self, message_id: &str) {
        let Some(msg) = self.inbox.get(message_id) else { return };
        let meta: Value = match msg.metadata_json.as_str() {
            "{}" => return,
            text => serde_json::from_str(text).unwrap_or(Value::Null),
        };
        if meta.get("type").and_then(Value::as_str) != Some("solana_payment") {
            return;
        }
        let payer = self
            .connections
            .get(&msg.from_agent_id)
            .filter(|_| msg.verified)
            .and_then(|c| c.wallets.get(CHAIN).cloned());
        let Some(payer) = payer else {
            let why = "the notice is not bound to a connection with a Solana wallet".to_owned();
            return self.payments.set_notice(message_id, NoticeStatus::Refused(why));
        };
        let (tx_signature, token, amount, memo) = match notice_claim(&meta) {
            Ok(claim) => claim,
            Err(why) => return self.payments.set_notice(message_id, NoticeStatus::Refused(why.to_owned())),
        };
        let check = PaymentCheck {
            id: CheckId(0),
            // Prefixed: a message id is the sender's choice, and must never name another purpose's
            // credit (a pool purchase is `pool:<pool>:<tx>`).
            credit_key: format!("notice:{message_id}"),
            payer_wallet: payer,
            tx_signature,
            token,
            amount,
            memo,
        };
        let purpose = Purpose::Notice { message_id: message_id.to_owned() };
        match self.payments.start(purpose, check) {
            Ok(check) => self.push_check(check),
            Err(e) => self.payments.set_notice(message_id, NoticeStatus::Refused(e.to_string())),
        }
    }

    /// Every payment notice in the inbox is checked again (after a restart: the wallet's ledger
    /// answers a credited one the same, so nothing is credited twice).
    pub(crate) fn recheck_notices(&mut self) {
        let ids: Vec<String> = self
            .inbox
            .sorted()
            .into_iter()
            .filter(|m| m.metadata_json.contains("solana_payment"))
            .map(|m| m.message_id.clone())
            .collect();
        for id in ids {
            self.check_notice(&id);
        }
    }

    /// The wallet's verdict on payment check `id`.
    pub fn handle_payment_checked(&mut self, now: crate::Now, id: CheckId, verdict: PaymentVerdict) {
        self.now = now;
        let Some((purpose, check, attempts)) = self.payments.finish(id) else { return };
        // A purchase's request is waiting: it is answered now, never asked again later.
        if let (PaymentVerdict::Unavailable(why), Purpose::Notice { .. }) = (&verdict, &purpose) {
            let due = PaymentChecks::recheck_at(now.mono_ms);
            if self.payments.recheck(due, purpose.clone(), check, attempts) {
                return;
            }
            return self.on_verdict(purpose, PaymentVerdict::Refused(format!("could not be checked: {why}")));
        }
        self.on_verdict(purpose, verdict);
    }

    fn on_verdict(&mut self, purpose: Purpose, verdict: PaymentVerdict) {
        match purpose {
            Purpose::Notice { message_id } => self.on_notice_verdict(&message_id, verdict),
            Purpose::PoolBuy(purchase) => self.on_purchase_verdict(purchase, verdict),
        }
    }

    fn on_notice_verdict(&mut self, message_id: &str, verdict: PaymentVerdict) {
        match verdict {
            PaymentVerdict::Verified(units) => {
                self.payments.set_notice(message_id, NoticeStatus::Verified(units));
                // Starts once: the AntiMatter ledger refuses a transaction it has seen, and a notice
                // that is not eligible starts nothing; either way the payment stays verified.
                let now = self.now;
                let _ = self.handle_verified_payment(now, message_id, units);
            }
            PaymentVerdict::Refused(why) | PaymentVerdict::Unavailable(why) => {
                self.payments.set_notice(message_id, NoticeStatus::Refused(why));
            }
        }
    }

    /// Checks that came due again.
    pub(crate) fn payment_timers(&mut self) {
        for check in self.payments.due(self.now.mono_ms) {
            self.push_check(check);
        }
    }

    pub(crate) fn push_check(&mut self, check: PaymentCheck) {
        self.push_output(Output::CheckPayment(check));
    }

    /// `payment_verified` (and why not) of a notice, for `get_message`.
    pub(crate) fn notice_status(&self, message_id: &str) -> Option<(bool, Option<String>)> {
        Some(match self.payments.notice(message_id)? {
            NoticeStatus::Verified(_) => (true, None),
            NoticeStatus::Checking => (false, Some("being checked on-chain".to_owned())),
            NoticeStatus::Refused(why) => (false, Some(why.clone())),
        })
    }
}
