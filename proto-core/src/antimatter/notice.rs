//! The two signed notices AntiMatter adds to 0.5.3's wire (R-F7), both ours, both one POST:
//!
//! - [`Started`]: the payee B tells the payer A that a signal started for A's payment. A expects it
//!   after each payment notice it sends ([`super::payer`]): it raises A's trust in B when it comes, and
//!   its absence lowers it (the SPEC's non-routing rule, §3.4).
//! - [`Disagreement`]: B tells each of its connections that A's notice claimed a rate other than 1 %.
//!   Each receiver lowers its impression of A by the penalty times its trust in B (the SPEC's §4.2).
//!
//! Each is signed by its sender over its own domain and names its receiver, so a copy sent to one
//! peer is worth nothing at another; freshness and replay are checked as for every signed body.

use serde::{Deserialize, Serialize};

use crate::crypto::{self, SignatureProvider};
use crate::identity::{AgentId, Passport};
use crate::sign::v2_bytes;

/// Our domain for a started notice.
pub const V2_ANTIMATTER_STARTED: &str = "antimatter-started";
/// Our domain for a disagreement report.
pub const V2_ANTIMATTER_DISAGREEMENT: &str = "antimatter-disagreement";

/// `POST /__darkmatter__/antimatter_started`: the payee B started `signal_id` for A's payment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    /// The payee B, who signs.
    pub from_agent_id: String,
    /// The payer A.
    pub to_agent_id: String,
    /// The signal B started.
    pub signal_id: String,
    /// A's payment.
    pub tx_signature: String,
    /// When (ISO).
    pub timestamp: String,
    /// B's signature over [`started_bytes`].
    #[serde(default)]
    pub dm_signature_hex: String,
}

/// `POST /__darkmatter__/antimatter_disagreement`: the reporter B says that `subject_agent_id`'s
/// payment notice for `tx_signature` claimed `rate` instead of 1 %.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disagreement {
    /// The reporter B, who signs.
    pub from_agent_id: String,
    /// The connection of B it is sent to.
    pub to_agent_id: String,
    /// The payer A whose notice disagreed.
    pub subject_agent_id: String,
    /// A's payment.
    pub tx_signature: String,
    /// The rate A's notice claimed, as B read it (decimal text).
    pub rate: String,
    /// When (ISO).
    pub timestamp: String,
    /// B's signature over [`disagreement_bytes`].
    #[serde(default)]
    pub dm_signature_hex: String,
}

/// Bytes B signs for a started notice.
pub fn started_bytes(s: &Started) -> Vec<u8> {
    v2_bytes(V2_ANTIMATTER_STARTED, &[&s.from_agent_id, &s.to_agent_id, &s.signal_id, &s.tx_signature, &s.timestamp])
}

/// Bytes B signs for a disagreement report.
pub fn disagreement_bytes(d: &Disagreement) -> Vec<u8> {
    v2_bytes(
        V2_ANTIMATTER_DISAGREEMENT,
        &[&d.from_agent_id, &d.to_agent_id, &d.subject_agent_id, &d.tx_signature, &d.rate, &d.timestamp],
    )
}

/// Whether `sig_hex` is `from`'s signature over `bytes` (`from` an agent id, i.e. its key).
fn verify(signer: &dyn SignatureProvider, from: &str, bytes: &[u8], sig_hex: &str) -> bool {
    AgentId::parse(from).is_ok_and(|id| crypto::verify_hex(signer, id.key(), bytes, sig_hex).is_ok())
}

impl Started {
    /// Signs the notice as its sender.
    pub fn sign(&mut self, signer: &dyn SignatureProvider, passport: &Passport) {
        self.dm_signature_hex = crypto::sign_hex(signer, passport, &started_bytes(self));
    }

    /// Whether the notice carries its sender's valid signature.
    pub fn verifies(&self, signer: &dyn SignatureProvider) -> bool {
        verify(signer, &self.from_agent_id, &started_bytes(self), &self.dm_signature_hex)
    }
}

impl Disagreement {
    /// Signs the report as its reporter.
    pub fn sign(&mut self, signer: &dyn SignatureProvider, passport: &Passport) {
        self.dm_signature_hex = crypto::sign_hex(signer, passport, &disagreement_bytes(self));
    }

    /// Whether the report carries its reporter's valid signature.
    pub fn verifies(&self, signer: &dyn SignatureProvider) -> bool {
        verify(signer, &self.from_agent_id, &disagreement_bytes(self), &self.dm_signature_hex)
    }
}

/// The loss a receiver applies to a reported payer: the SPEC's `penalty × trust(reporter)` (§4.2),
/// with the report weighting of peer opinions (SPEC §8.3): a reporter we do not trust (≤ 0), or one
/// over its vouch budget, weighs nothing. Never positive.
pub fn disagreement_loss(penalty: f64, trust_in_reporter: f64, reporter_within_budget: bool) -> f64 {
    // NaN compares false: it weighs nothing either.
    if !reporter_within_budget || trust_in_reporter.is_nan() || trust_in_reporter <= 0.0 {
        return 0.0;
    }
    -(penalty.abs() * trust_in_reporter.min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Ed25519;

    fn id(p: &Passport) -> String {
        p.agent_id().as_str().to_owned()
    }

    #[test]
    fn a_started_notice_is_bound_to_its_sender_receiver_and_payment() {
        let (b, a) = (Passport::from_seed([1; 32]), Passport::from_seed([2; 32]));
        let mut s = Started {
            from_agent_id: id(&b),
            to_agent_id: id(&a),
            signal_id: "am-0123456789ab".into(),
            tx_signature: "tx".into(),
            timestamp: "2026-01-01T00:00:00Z".into(),
            dm_signature_hex: String::new(),
        };
        assert!(!s.verifies(&Ed25519), "unsigned");
        s.sign(&Ed25519, &b);
        assert!(s.verifies(&Ed25519));
        for bent in [
            Started { tx_signature: "other".into(), ..s.clone() },
            Started { to_agent_id: id(&b), ..s.clone() },
            Started { signal_id: "am-x".into(), ..s.clone() },
            Started { from_agent_id: id(&a), ..s.clone() },
            Started { from_agent_id: "not an id".into(), ..s.clone() },
        ] {
            assert!(!bent.verifies(&Ed25519), "{bent:?}");
        }
    }

    #[test]
    fn a_disagreement_report_is_bound_to_its_receiver_and_subject() {
        let (b, c, a) = (Passport::from_seed([1; 32]), Passport::from_seed([3; 32]), Passport::from_seed([2; 32]));
        let mut d = Disagreement {
            from_agent_id: id(&b),
            to_agent_id: id(&c),
            subject_agent_id: id(&a),
            tx_signature: "tx".into(),
            rate: "0.05".into(),
            timestamp: "2026-01-01T00:00:00Z".into(),
            dm_signature_hex: String::new(),
        };
        d.sign(&Ed25519, &b);
        assert!(d.verifies(&Ed25519));
        assert!(!Disagreement { to_agent_id: id(&a), ..d.clone() }.verifies(&Ed25519), "sent to another peer");
        assert!(!Disagreement { subject_agent_id: id(&c), ..d.clone() }.verifies(&Ed25519), "another subject");
        assert!(!Disagreement { rate: "0.01".into(), ..d }.verifies(&Ed25519));
    }

    #[test]
    fn the_loss_is_the_penalty_times_a_positive_trust_within_budget() {
        assert_eq!(disagreement_loss(0.02, 0.5, true), -0.01);
        assert_eq!(disagreement_loss(0.02, 1.0, true), -0.02);
        assert_eq!(disagreement_loss(0.02, 0.0, true), 0.0, "a neutral reporter weighs nothing");
        assert_eq!(disagreement_loss(0.02, -0.4, true), 0.0, "a distrusted one neither");
        assert_eq!(disagreement_loss(0.02, 0.9, false), 0.0, "over its budget");
        assert_eq!(disagreement_loss(0.02, f64::NAN, true), 0.0);
    }
}
