//! The signature provider: the node's signature work behind a small trait.
//!
//! A [`Node`](crate::Node) signs and verifies through the [`SignatureProvider`] it was built with.
//! [`Ed25519`] is the real one and the default of [`Node::new`](crate::Node::new) and
//! [`Node::restore`](crate::Node::restore); [`Node::with_provider`](crate::Node::with_provider) and
//! [`Node::restore_with_provider`](crate::Node::restore_with_provider) take another. Canonical forms
//! and hex encoding stay in [`crate::sign`]; a provider only sees bytes, keys and raw signatures, so
//! it cannot change what is signed, only how.
//!
//! This crate ships no other provider. The simulator defines its own (a forgeable digest for
//! measurements, a counting wrapper) in `runtime-sim`, which no networked runtime depends on: a
//! node that talks to a network can only be built with a provider some crate it links defines.

// Re-exported so a provider outside this crate names the same types without its own dependency.
pub use ed25519_dalek::{Signature, VerifyingKey};

use crate::error::SignError;
use crate::identity::{lower_hex, Passport};

/// The node's signature work. Object safe; `Send + Sync` so one provider can be shared (`Arc`) by
/// every node of a simulation and a node can move between threads.
pub trait SignatureProvider: Send + Sync {
    /// The signature of `canonical` with `passport`'s key.
    fn sign(&self, passport: &Passport, canonical: &[u8]) -> [u8; 64];
    /// Whether `signature` is `key`'s over `canonical`, checked strictly (as `verify_strict`: no
    /// small-order keys or R points, canonical S).
    fn verify_strict(&self, key: &VerifyingKey, canonical: &[u8], signature: &Signature) -> bool;
}

/// Real Ed25519 (RFC 8032) with `verify_strict`: the provider of every node of the protocol.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ed25519;

impl SignatureProvider for Ed25519 {
    fn sign(&self, passport: &Passport, canonical: &[u8]) -> [u8; 64] {
        passport.sign(canonical).to_bytes()
    }

    fn verify_strict(&self, key: &VerifyingKey, canonical: &[u8], signature: &Signature) -> bool {
        key.verify_strict(canonical, signature).is_ok()
    }
}

/// Length of a signature in hex.
pub const SIGNATURE_HEX_LEN: usize = 128;

/// Decodes a hex signature; upper case is accepted, as 0.5.3's `bytes.fromhex` does.
pub fn parse_signature(sig_hex: &str) -> Result<Signature, SignError> {
    if sig_hex.len() != SIGNATURE_HEX_LEN {
        return Err(SignError::Malformed);
    }
    let mut bytes = [0u8; 64];
    hex::decode_to_slice(sig_hex, &mut bytes).map_err(|_| SignError::Malformed)?;
    Ok(Signature::from_bytes(&bytes))
}

/// Signs canonical bytes with `provider` and returns the lowercase hex signature.
pub fn sign_hex(provider: &dyn SignatureProvider, passport: &Passport, canonical: &[u8]) -> String {
    lower_hex(&provider.sign(passport, canonical))
}

/// Decodes `sig_hex` (upper case accepted, as 0.5.3's `bytes.fromhex` does) and verifies it with
/// `provider`. A malformed signature never reaches the provider.
pub fn verify_hex(
    provider: &dyn SignatureProvider,
    key: &VerifyingKey,
    canonical: &[u8],
    sig_hex: &str,
) -> Result<(), SignError> {
    let sig = parse_signature(sig_hex)?;
    if provider.verify_strict(key, canonical, &sig) {
        Ok(())
    } else {
        Err(SignError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8032 §7.1, test 1 (empty message): the default provider is Ed25519 itself.
    #[test]
    fn ed25519_provider_matches_rfc_8032() {
        let mut seed = [0u8; 32];
        hex::decode_to_slice("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", &mut seed).unwrap();
        let p = Passport::from_seed(seed);
        assert_eq!(p.agent_id().as_str(), "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
        let expected = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";
        assert_eq!(sign_hex(&Ed25519, &p, b""), expected);
        assert_eq!(verify_hex(&Ed25519, p.agent_id().key(), b"", expected), Ok(()));
        assert_eq!(verify_hex(&Ed25519, p.agent_id().key(), b"x", expected), Err(SignError::Invalid));
    }

    /// A provider that accepts everything still never sees a malformed signature.
    #[test]
    fn malformed_signatures_are_refused_before_the_provider() {
        struct AcceptAll;
        impl SignatureProvider for AcceptAll {
            fn sign(&self, _: &Passport, _: &[u8]) -> [u8; 64] {
                [0; 64]
            }
            fn verify_strict(&self, _: &VerifyingKey, _: &[u8], _: &Signature) -> bool {
                true
            }
        }
        let p = Passport::from_seed([3; 32]);
        assert_eq!(verify_hex(&AcceptAll, p.agent_id().key(), b"", &"0".repeat(128)), Ok(()));
        assert_eq!(verify_hex(&AcceptAll, p.agent_id().key(), b"", &"0".repeat(126)), Err(SignError::Malformed));
        assert_eq!(verify_hex(&AcceptAll, p.agent_id().key(), b"", &"zz".repeat(64)), Err(SignError::Malformed));
    }
}
