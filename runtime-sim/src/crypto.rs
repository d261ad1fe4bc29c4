//! The simulator's signature providers (see `proto_core::crypto`): which one a run uses
//! ([`Signatures`], the `--signatures real|real-inline|null` option), the forgeable [`NullSignatures`] for
//! measurements, and [`Counting`], which every simulated node signs and verifies through.
//!
//! [`NullSignatures`] lives here and nowhere else on purpose: proto-core ships only real Ed25519 and
//! the networked runtime does not depend on this crate, so no node that talks to a network can be
//! built with fake signatures, whatever features a workspace build turns on.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use proto_core::crypto::{Ed25519, Signature, SignatureProvider, VerifyingKey};
use proto_core::Passport;

use crate::verify_ahead::VerifyAhead;

/// Which signature provider the nodes of a run use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Signatures {
    /// Real Ed25519, as every node of the protocol, checked ahead on the other cores
    /// ([`VerifyAhead`]): the default.
    #[default]
    Real,
    /// Real Ed25519, every check on the simulator's one thread (to measure what checking ahead saves).
    RealInline,
    /// [`NullSignatures`]: measurement only.
    Null,
}

impl Signatures {
    /// Parses the option's value (`real` or `null`).
    pub fn parse(value: &str) -> Result<Self, String> {
        match value {
            "real" => Ok(Self::Real),
            "real-inline" => Ok(Self::RealInline),
            "null" => Ok(Self::Null),
            other => Err(format!("--signatures: real, real-inline or null, not {other}")),
        }
    }

    /// The provider itself.
    pub fn provider(self) -> Arc<dyn SignatureProvider> {
        match self {
            Self::Real => Arc::new(VerifyAhead::with_spare_cores(Arc::new(Ed25519))),
            Self::RealInline => Arc::new(Ed25519),
            Self::Null => Arc::new(NullSignatures),
        }
    }
}

impl fmt::Display for Signatures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Real => "real",
            Self::RealInline => "real-inline",
            Self::Null => "null",
        })
    }
}

/// Measurement only: a 64-bit FNV-1a digest of key and bytes, repeated to 64 bytes, in place of
/// Ed25519. Anyone can forge it. It keeps every accept/refuse decision of a simulation the same as
/// with real signatures (an honest node's signature checks out, a bent envelope or a wrong key does
/// not), so a run has the same trace hash while costing almost nothing: the simulator can time
/// everything but signature work on the same trace.
#[derive(Clone, Copy, Debug, Default)]
pub struct NullSignatures;

impl NullSignatures {
    fn digest(key: &VerifyingKey, canonical: &[u8]) -> [u8; 64] {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key.as_bytes().iter().chain(canonical) {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        let mut out = [0u8; 64];
        for (i, chunk) in out.chunks_exact_mut(8).enumerate() {
            chunk.copy_from_slice(&h.wrapping_add(i as u64).to_le_bytes());
        }
        out
    }
}

impl SignatureProvider for NullSignatures {
    fn sign(&self, passport: &Passport, canonical: &[u8]) -> [u8; 64] {
        Self::digest(passport.agent_id().key(), canonical)
    }

    fn verify_strict(&self, key: &VerifyingKey, canonical: &[u8], signature: &Signature) -> bool {
        signature.to_bytes() == Self::digest(key, canonical)
    }
}

/// Counts the signatures made and checked by the provider it wraps (one relaxed atomic add per
/// call: nothing next to an Ed25519 operation, and the simulator runs on one thread).
pub struct Counting {
    inner: Arc<dyn SignatureProvider>,
    /// The same provider when it checks ahead, for its figures.
    ahead: Option<Arc<VerifyAhead>>,
    signs: AtomicU64,
    verifies: AtomicU64,
}

impl Counting {
    /// Wraps `inner` with both counts at zero.
    pub fn new(inner: Arc<dyn SignatureProvider>) -> Self {
        Self { inner, ahead: None, signs: AtomicU64::new(0), verifies: AtomicU64::new(0) }
    }

    /// The provider a run with `signatures` uses, counted.
    pub fn for_run(signatures: Signatures) -> Self {
        match signatures {
            Signatures::Real => {
                let ahead = Arc::new(VerifyAhead::with_spare_cores(Arc::new(Ed25519)));
                Self { ahead: Some(ahead.clone()), ..Self::new(ahead) }
            }
            other => Self::new(other.provider()),
        }
    }

    /// Checks the simulator's own thread did (all of them unless checked ahead): those not found in
    /// the table, or found still queued.
    pub fn verifies_on_loop(&self) -> u64 {
        match &self.ahead {
            Some(a) => a.stats().missed.load(Ordering::Relaxed) + a.stats().behind.load(Ordering::Relaxed),
            None => self.verifies(),
        }
    }

    /// How checks ahead were answered: ready, waited for, behind, missed (`None` without checking ahead).
    pub fn ahead_stats(&self) -> Option<[u64; 4]> {
        let s = self.ahead.as_ref()?.stats();
        Some([&s.ready, &s.waited, &s.behind, &s.missed].map(|c| c.load(Ordering::Relaxed)))
    }

    /// Signatures made so far.
    pub fn signs(&self) -> u64 {
        self.signs.load(Ordering::Relaxed)
    }

    /// Signatures checked so far (valid or not; malformed hex never reaches a provider).
    pub fn verifies(&self) -> u64 {
        self.verifies.load(Ordering::Relaxed)
    }
}

impl SignatureProvider for Counting {
    fn sign(&self, passport: &Passport, canonical: &[u8]) -> [u8; 64] {
        self.signs.fetch_add(1, Ordering::Relaxed);
        self.inner.sign(passport, canonical)
    }

    fn verify_strict(&self, key: &VerifyingKey, canonical: &[u8], signature: &Signature) -> bool {
        self.verifies.fetch_add(1, Ordering::Relaxed);
        self.inner.verify_strict(key, canonical, signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto_core::crypto::{sign_hex, verify_hex};
    use proto_core::error::SignError;

    #[test]
    fn null_signatures_accept_the_signer_and_refuse_other_bytes_and_keys() {
        let a = Passport::from_seed([1; 32]);
        let b = Passport::from_seed([2; 32]);
        let sig = sign_hex(&NullSignatures, &a, b"hello");
        assert_eq!(verify_hex(&NullSignatures, a.agent_id().key(), b"hello", &sig), Ok(()));
        assert_eq!(verify_hex(&NullSignatures, a.agent_id().key(), b"hellp", &sig), Err(SignError::Invalid));
        assert_eq!(verify_hex(&NullSignatures, b.agent_id().key(), b"hello", &sig), Err(SignError::Invalid));
        // Not Ed25519: a real verifier refuses it.
        assert_eq!(verify_hex(&Ed25519, a.agent_id().key(), b"hello", &sig), Err(SignError::Invalid));
    }

    #[test]
    fn counting_counts_every_call_and_changes_no_answer() {
        let p = Passport::from_seed([3; 32]);
        let counting = Counting::new(Signatures::Real.provider());
        let sig = sign_hex(&counting, &p, b"x");
        assert_eq!(sig, proto_core::sign::sign_hex(&p, b"x"));
        assert_eq!(verify_hex(&counting, p.agent_id().key(), b"x", &sig), Ok(()));
        assert_eq!(verify_hex(&counting, p.agent_id().key(), b"y", &sig), Err(SignError::Invalid));
        assert_eq!(verify_hex(&counting, p.agent_id().key(), b"x", "00"), Err(SignError::Malformed));
        assert_eq!((counting.signs(), counting.verifies()), (1, 2));
    }

    #[test]
    fn the_option_parses_and_prints_both_values() {
        for s in [Signatures::Real, Signatures::RealInline, Signatures::Null] {
            assert_eq!(Signatures::parse(&s.to_string()), Ok(s));
        }
        assert!(Signatures::parse("fake").is_err());
        assert_eq!(Signatures::default(), Signatures::Real);
    }
}
