//! The AntiMatter signal and result on the wire (0.5.3's keys), and our signatures over them.
//!
//! A signal walks from the payee B through veterans; each forward appends a [`Hop`] signed by the
//! forwarder (domain `antimatter-hop`), so the path is a signature chain that starts at B. The node
//! that resolves the signal POSTs a [`ResultReport`] to B's callback, signed by itself (domain
//! `antimatter-result`) and carrying the chain; B pays only what [`verify_chain`] accepts.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::crypto::{self, SignatureProvider};
use crate::identity::{AgentId, Passport};
use crate::limits::{ANTIMATTER_HOPS_MAX, ANTIMATTER_SIGNAL_AGE_MAX_S, ANTIMATTER_SIGNAL_ID_BYTES_MAX};
use crate::sign::v2_bytes;

/// Our domain for one forward of a signal.
pub const V2_ANTIMATTER_HOP: &str = "antimatter-hop";
/// Our domain for a signal's result.
pub const V2_ANTIMATTER_RESULT: &str = "antimatter-result";

/// One forward: `agent_id` sent the signal (then at `hops`) to `next`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hop {
    /// The forwarder.
    pub agent_id: String,
    /// Whom it forwarded to.
    pub next: String,
    /// The signal's hop count when it left the forwarder.
    pub hops: u32,
    /// When (ISO).
    pub timestamp: String,
    /// The forwarder's signature over [`hop_bytes`].
    pub dm_signature_hex: String,
}

/// The signal (0.5.3's keys; `hop_chain` is ours and 0.5.3 carries it along untouched).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal {
    /// `am-<12 hex>`.
    pub signal_id: String,
    /// The payment's transaction signature.
    pub original_tx: String,
    /// The payer A.
    pub sender_agent_id: String,
    /// The fee as a decimal text, informational: only B pays, from its own ledger.
    pub amount: String,
    /// `SOL` or a mint.
    pub token: String,
    /// Decimals of `token`.
    pub token_decimals: u8,
    /// Where a timeout pays (A's word, signed in its notice).
    #[serde(default)]
    pub sender_superagent_wallet: Option<String>,
    /// B's `/__darkmatter__/antimatter_result`.
    pub callback_url: String,
    /// Forwards so far.
    pub hops: u32,
    /// Forwards allowed.
    pub max_hops: u32,
    /// When B started it (ISO).
    pub created_at: String,
    /// Agents visited, B first (0.5.3's loop check).
    #[serde(default)]
    pub path: Vec<String>,
    /// The signed forwards, B's first.
    #[serde(default)]
    pub hop_chain: Vec<Hop>,
}

/// How a signal ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// A game matched: the fee goes to the resolver's veteran.
    Match,
    /// The resolver had no veteran: the fee stays with it.
    Terminal,
    /// Too many hops or too old: the fee goes to A's superagent.
    Timeout,
}

impl Resolution {
    /// The wire word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Match => "match",
            Self::Terminal => "terminal",
            Self::Timeout => "timeout",
        }
    }
}

/// The result POSTed to B's callback. 0.5.3 sends only the first four fields, unsigned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultReport {
    /// The signal.
    pub signal_id: String,
    /// Where the fee goes.
    #[serde(default)]
    pub destination_wallet: Option<String>,
    /// Who resolved it.
    pub resolved_by: String,
    /// How.
    pub resolution: Resolution,
    /// The agent whose wallet is `destination_wallet` (ours).
    #[serde(default)]
    pub destination_agent_id: Option<String>,
    /// When (ISO, ours).
    #[serde(default)]
    pub timestamp: Option<String>,
    /// The signal's chain as the resolver received it (ours).
    #[serde(default)]
    pub hop_chain: Vec<Hop>,
    /// The resolver's signature over [`result_bytes`] (ours).
    #[serde(default)]
    pub dm_signature_hex: Option<String>,
}

/// Why a signal is refused; the texts are 0.5.3's.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SignalError {
    /// A field is missing, too long or impossible.
    #[error("Invalid antimatter signal: {0}")]
    Invalid(&'static str),
    /// It has travelled its hops.
    #[error("Signal expired (max hops)")]
    MaxHops,
    /// It is older than the age limit.
    #[error("Signal expired (age)")]
    Age,
    /// We are already on its path.
    #[error("Loop detected")]
    Loop,
    /// Its hop chain does not verify or does not end at us.
    #[error("Invalid antimatter signal: hop chain")]
    Chain,
}

/// Bytes a forwarder signs for one hop.
pub fn hop_bytes(signal_id: &str, previous: &str, hop: &Hop) -> Vec<u8> {
    v2_bytes(V2_ANTIMATTER_HOP, &[signal_id, previous, &hop.agent_id, &hop.next, &hop.hops.to_string(), &hop.timestamp])
}

/// Bytes a resolver signs for its result.
pub fn result_bytes(r: &ResultReport) -> Vec<u8> {
    v2_bytes(
        V2_ANTIMATTER_RESULT,
        &[
            &r.signal_id,
            r.resolution.as_str(),
            &r.resolved_by,
            r.destination_agent_id.as_deref().unwrap_or(""),
            r.destination_wallet.as_deref().unwrap_or(""),
            r.timestamp.as_deref().unwrap_or(""),
        ],
    )
}

impl Signal {
    /// Whether the signal is well formed, fresh and new to `me` (0.5.3's checks, ours on top).
    pub fn check(&self, me: &str, now_us: i64) -> Result<(), SignalError> {
        if self.signal_id.is_empty() || self.signal_id.len() > ANTIMATTER_SIGNAL_ID_BYTES_MAX {
            return Err(SignalError::Invalid("signal_id"));
        }
        if self.max_hops > ANTIMATTER_HOPS_MAX || self.path.len() > ANTIMATTER_HOPS_MAX as usize + 1 {
            return Err(SignalError::Invalid("max_hops"));
        }
        if self.hop_chain.len() > ANTIMATTER_HOPS_MAX as usize + 1 {
            return Err(SignalError::Invalid("hop_chain"));
        }
        if self.hops >= self.max_hops {
            return Err(SignalError::MaxHops);
        }
        let created = crate::time::parse_iso(&self.created_at).ok_or(SignalError::Invalid("created_at"))?;
        if now_us.saturating_sub(created) > ANTIMATTER_SIGNAL_AGE_MAX_S * 1_000_000 {
            return Err(SignalError::Age);
        }
        if self.path.iter().any(|a| a == me) {
            return Err(SignalError::Loop);
        }
        Ok(())
    }

    /// Appends our signed hop towards `next` and counts it.
    pub fn forward(&mut self, signer: &dyn SignatureProvider, passport: &Passport, next: &str, timestamp: String) {
        let me = passport.agent_id().as_str().to_owned();
        let previous = self.hop_chain.last().map(|h| h.agent_id.clone()).unwrap_or_default();
        let mut hop = Hop {
            agent_id: me.clone(),
            next: next.to_owned(),
            hops: self.hops,
            timestamp,
            dm_signature_hex: String::new(),
        };
        hop.dm_signature_hex = crypto::sign_hex(signer, passport, &hop_bytes(&self.signal_id, &previous, &hop));
        self.hop_chain.push(hop);
        if !self.path.contains(&me) {
            self.path.push(me);
        }
        self.hops += 1;
    }
}

/// Checks a hop chain: it starts at `origin`, every hop is signed by its forwarder, each hop's `next`
/// is the following hop's forwarder, and the last one was sent to `last_receiver`.
pub fn verify_chain(
    signer: &dyn SignatureProvider,
    signal_id: &str,
    chain: &[Hop],
    origin: &str,
    last_receiver: &str,
) -> Result<(), SignalError> {
    let first = chain.first().ok_or(SignalError::Chain)?;
    if first.agent_id != origin || chain.len() > ANTIMATTER_HOPS_MAX as usize + 1 {
        return Err(SignalError::Chain);
    }
    let mut previous = "";
    for (i, hop) in chain.iter().enumerate() {
        if hop.hops != i as u32 {
            return Err(SignalError::Chain);
        }
        if let Some(next) = chain.get(i + 1) {
            if next.agent_id != hop.next {
                return Err(SignalError::Chain);
            }
        }
        let id = AgentId::parse(&hop.agent_id).map_err(|_| SignalError::Chain)?;
        crypto::verify_hex(signer, id.key(), &hop_bytes(signal_id, previous, hop), &hop.dm_signature_hex)
            .map_err(|_| SignalError::Chain)?;
        previous = &hop.agent_id;
    }
    match chain.last() {
        Some(last) if last.next == last_receiver => Ok(()),
        _ => Err(SignalError::Chain),
    }
}

impl ResultReport {
    /// Signs the result as its resolver.
    pub fn sign(&mut self, signer: &dyn SignatureProvider, passport: &Passport) {
        self.dm_signature_hex = Some(crypto::sign_hex(signer, passport, &result_bytes(self)));
    }

    /// Whether the result carries a valid signature of `resolved_by` and a chain from `origin` (us)
    /// that ends at the resolver. A result without a signature is not ours: see the caller's rule.
    pub fn verify(&self, signer: &dyn SignatureProvider, origin: &str) -> Result<(), SignalError> {
        let sig = self.dm_signature_hex.as_deref().ok_or(SignalError::Chain)?;
        let id = AgentId::parse(&self.resolved_by).map_err(|_| SignalError::Chain)?;
        crypto::verify_hex(signer, id.key(), &result_bytes(self), sig).map_err(|_| SignalError::Chain)?;
        verify_chain(signer, &self.signal_id, &self.hop_chain, origin, &self.resolved_by)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Ed25519;

    fn passport(n: u8) -> Passport {
        Passport::from_seed([n; 32])
    }

    fn signal(origin: &Passport) -> Signal {
        Signal {
            signal_id: "am-0123456789ab".into(),
            original_tx: "tx".into(),
            sender_agent_id: passport(9).agent_id().as_str().into(),
            amount: "0.01".into(),
            token: "SOL".into(),
            token_decimals: 9,
            sender_superagent_wallet: None,
            callback_url: "http://b/__darkmatter__/antimatter_result".into(),
            hops: 0,
            max_hops: ANTIMATTER_HOPS_MAX,
            created_at: crate::time::format_iso(1_000_000_000_000_000),
            path: vec![origin.agent_id().as_str().into()],
            hop_chain: vec![],
        }
    }

    #[test]
    fn a_chain_of_signed_forwards_verifies_and_a_tampered_one_does_not() {
        let (b, v1, v2) = (passport(1), passport(2), passport(3));
        let id = |p: &Passport| p.agent_id().as_str().to_owned();
        let mut s = signal(&b);
        s.forward(&Ed25519, &b, &id(&v1), "t0".into());
        s.forward(&Ed25519, &v1, &id(&v2), "t1".into());
        assert_eq!((s.hops, s.path.len()), (2, 2));
        assert_eq!(verify_chain(&Ed25519, &s.signal_id, &s.hop_chain, &id(&b), &id(&v2)), Ok(()));
        assert!(verify_chain(&Ed25519, &s.signal_id, &s.hop_chain, &id(&v1), &id(&v2)).is_err(), "wrong origin");
        assert!(verify_chain(&Ed25519, &s.signal_id, &s.hop_chain, &id(&b), &id(&v1)).is_err(), "wrong end");
        let mut bent = s.hop_chain.clone();
        bent[1].next = id(&b);
        assert!(verify_chain(&Ed25519, &s.signal_id, &bent, &id(&b), &id(&b)).is_err(), "redirected hop");
        assert!(verify_chain(&Ed25519, "am-other", &s.hop_chain, &id(&b), &id(&v2)).is_err(), "other signal");
        let mut dropped = s.hop_chain.clone();
        dropped.remove(0);
        assert!(verify_chain(&Ed25519, &s.signal_id, &dropped, &id(&v1), &id(&v2)).is_err(), "hop count");
    }

    #[test]
    fn a_result_is_bound_to_its_resolver_and_destination() {
        let (b, v1, v2) = (passport(1), passport(2), passport(3));
        let id = |p: &Passport| p.agent_id().as_str().to_owned();
        let mut s = signal(&b);
        s.forward(&Ed25519, &b, &id(&v1), "t0".into());
        let mut r = ResultReport {
            signal_id: s.signal_id.clone(),
            destination_wallet: Some("W".into()),
            resolved_by: id(&v1),
            resolution: Resolution::Match,
            destination_agent_id: Some(id(&v2)),
            timestamp: Some("t".into()),
            hop_chain: s.hop_chain.clone(),
            dm_signature_hex: None,
        };
        assert!(r.verify(&Ed25519, &id(&b)).is_err(), "unsigned");
        r.sign(&Ed25519, &v1);
        assert_eq!(r.verify(&Ed25519, &id(&b)), Ok(()));
        let mut swapped = r.clone();
        swapped.destination_wallet = Some("Mallory".into());
        assert!(swapped.verify(&Ed25519, &id(&b)).is_err(), "wallet swapped after signing");
        let mut other = r.clone();
        other.resolved_by = id(&v2);
        other.sign(&Ed25519, &v2);
        assert!(other.verify(&Ed25519, &id(&b)).is_err(), "a resolver the chain did not reach");
    }

    #[test]
    fn signals_are_refused_with_0_5_3_texts() {
        let b = passport(1);
        let now = 1_000_000_000_000_000;
        let s = signal(&b);
        assert_eq!(s.check("x", now), Ok(()));
        assert_eq!(s.check(b.agent_id().as_str(), now), Err(SignalError::Loop));
        assert_eq!(s.check("x", now + (ANTIMATTER_SIGNAL_AGE_MAX_S + 1) * 1_000_000), Err(SignalError::Age));
        assert_eq!(s.check("x", now + ANTIMATTER_SIGNAL_AGE_MAX_S * 1_000_000), Ok(()), "at the edge");
        let spent = Signal { hops: ANTIMATTER_HOPS_MAX, ..s.clone() };
        assert_eq!(spent.check("x", now).unwrap_err().to_string(), "Signal expired (max hops)");
        let greedy = Signal { max_hops: ANTIMATTER_HOPS_MAX + 1, ..s.clone() };
        assert!(matches!(greedy.check("x", now), Err(SignalError::Invalid(_))));
        let long = Signal { signal_id: "a".repeat(ANTIMATTER_SIGNAL_ID_BYTES_MAX + 1), ..s.clone() };
        assert_eq!(long.check("x", now), Err(SignalError::Invalid("signal_id")));
        let edge = Signal { signal_id: "a".repeat(ANTIMATTER_SIGNAL_ID_BYTES_MAX), ..s.clone() };
        assert_eq!(edge.check("x", now), Ok(()));
        let bad = Signal { created_at: "yesterday".into(), ..s };
        assert_eq!(bad.check("x", now).unwrap_err().to_string(), "Invalid antimatter signal: created_at");
    }
}
