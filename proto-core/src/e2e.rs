//! End-to-end encryption of relayed messages, version 1: 0.5.3's construction, byte for byte.
//!
//! A message that cannot be delivered directly travels through an anchor's relay mailbox, which
//! anyone can read. Version 1 seals it for the recipient with keys both sides already have:
//! - X25519 secret = the clamped first half of SHA-512(Ed25519 seed) (libsodium's
//!   `crypto_sign_ed25519_sk_to_curve25519`), public = the Montgomery form of the Ed25519 key;
//! - key = HKDF-SHA256(ikm = X25519(our secret, their public), no salt, info [`V1_INFO`], 32 bytes);
//! - ChaCha20-Poly1305 (IETF, 96-bit nonce), no AAD, output ciphertext ‖ 16-byte tag.
//!
//! The key is static–static: sender and recipient derive the same one, so the nonce alone keeps two
//! messages apart. This module never makes a nonce (the core has no randomness but the simulation's
//! seeded RNG, and a nonce repeated under a static key reveals the XOR of two plaintexts and the
//! Poly1305 key): the runtime fills a [`Nonce`] from the operating system's CSPRNG for every
//! message, and [`seal`] refuses the all-zero nonce that an unfilled buffer would be.
//!
//! Defences beyond 0.5.3 that keep interop: a key whose X25519 product is the identity (a
//! small-order point: the "shared" secret would be known to anyone) is refused on both sides; sizes
//! are bounded before any hex is decoded or any byte decrypted ([`E2E_PLAINTEXT_BYTES_MAX`]); the
//! caller names the sender whose key opens the message, so the relay must check that this sender is
//! the one the decrypted payload claims (0.5.3 does not). Binding the outer `from_agent_id` and
//! `timestamp` with AAD would break 0.5.3 interop; that binding is version 2's (not built yet).
//!
//! How the relay will use it (not wired yet): to send through an anchor, the node seals the inner
//! JSON `{"path","payload","from_agent_id","timestamp","signature"}` with a fresh OS nonce and posts
//! `{"e2e_encrypted":true,"encrypted_payload":{"nonce","ciphertext","sender_public_key_hex"},…}`
//! (hex from [`Sealed`]); it never posts plaintext. On a polled envelope it parses the sender id from
//! `sender_public_key_hex` (else `from_agent_id`), calls [`open_hex`], and dispatches only if the
//! decrypted payload's sender equals that id.
//!
//! Pure: no I/O, no clock, no randomness.

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use curve25519_dalek::montgomery::MontgomeryPoint;
use hkdf::Hkdf;
use sha2::{Digest, Sha256, Sha512};

use crate::identity::{lower_hex, AgentId, Passport};
use crate::limits::E2E_PLAINTEXT_BYTES_MAX;

/// Bytes of a version 1 nonce (ChaCha20-Poly1305, IETF).
pub const NONCE_BYTES: usize = 12;
/// Bytes of the Poly1305 tag appended to the ciphertext.
pub const TAG_BYTES: usize = 16;
/// HKDF `info` of version 1, as 0.5.3 writes it.
pub const V1_INFO: &[u8] = b"darkmatter-e2e-v1";

/// A version 1 nonce. The runtime fills it from the OS CSPRNG, one per message; never from a
/// seeded RNG, never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nonce(pub [u8; NONCE_BYTES]);

/// A sealed message: the nonce it was sealed with and the ciphertext with its tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed {
    /// The nonce, sent beside the ciphertext.
    pub nonce: Nonce,
    /// Ciphertext ‖ 16-byte tag.
    pub ciphertext: Vec<u8>,
}

impl Sealed {
    /// The nonce in lowercase hex, as the envelope's `nonce` field carries it.
    pub fn nonce_hex(&self) -> String {
        lower_hex(&self.nonce.0)
    }

    /// Ciphertext ‖ tag in lowercase hex, as the envelope's `ciphertext` field carries it.
    pub fn ciphertext_hex(&self) -> String {
        lower_hex(&self.ciphertext)
    }
}

/// Why a message could not be sealed or opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum E2eError {
    /// The nonce is all zero: the runtime did not fill it from the OS.
    #[error("nonce is all zero")]
    ZeroNonce,
    /// The plaintext is longer than [`E2E_PLAINTEXT_BYTES_MAX`].
    #[error("plaintext too long")]
    PlaintextTooLong,
    /// The ciphertext is longer than the largest plaintext plus its tag.
    #[error("ciphertext too long")]
    CiphertextTooLong,
    /// The nonce or ciphertext is not hex of the right length.
    #[error("malformed nonce or ciphertext")]
    Malformed,
    /// The peer's key is of small order: the shared secret would be public.
    #[error("peer key of small order")]
    LowOrder,
    /// Authentication failed: wrong key, wrong nonce, or altered bytes.
    #[error("decryption failed")]
    Aead,
}

/// Our X25519 secret: the clamped first half of SHA-512 of the Ed25519 seed.
pub fn x25519_secret(passport: &Passport) -> [u8; 32] {
    let hash = Sha512::digest(passport.seed());
    let mut secret = [0u8; 32];
    secret.copy_from_slice(&hash[..32]);
    secret[0] &= 248;
    secret[31] &= 127;
    secret[31] |= 64;
    secret
}

/// A peer's X25519 public key: the Montgomery `u` of its Ed25519 key.
pub fn x25519_public(peer: &AgentId) -> [u8; 32] {
    peer.key().to_montgomery().to_bytes()
}

/// X25519(our secret, peer's public), refusing a peer key whose product is the identity.
pub fn shared_secret(ours: &Passport, peer: &AgentId) -> Result<[u8; 32], E2eError> {
    let shared = MontgomeryPoint(x25519_public(peer)).mul_clamped(x25519_secret(ours)).to_bytes();
    // All zero iff the peer point has small order (the cofactor in the clamp kills any torsion).
    if shared == [0u8; 32] {
        return Err(E2eError::LowOrder);
    }
    Ok(shared)
}

/// The version 1 ChaCha20-Poly1305 key from a shared secret.
pub fn v1_key(shared: &[u8; 32]) -> [u8; 32] {
    let mut key = [0u8; 32];
    // HKDF-Expand fails only for outputs over 255 × 32 bytes.
    if Hkdf::<Sha256>::new(None, shared).expand(V1_INFO, &mut key).is_err() {
        unreachable!("32 bytes is a valid HKDF-SHA256 length");
    }
    key
}

/// Seals `plaintext` from `sender` for `recipient` with `nonce`.
pub fn seal(sender: &Passport, recipient: &AgentId, nonce: Nonce, plaintext: &[u8]) -> Result<Sealed, E2eError> {
    if nonce.0 == [0u8; NONCE_BYTES] {
        return Err(E2eError::ZeroNonce);
    }
    if plaintext.len() > E2E_PLAINTEXT_BYTES_MAX {
        return Err(E2eError::PlaintextTooLong);
    }
    let cipher = cipher(sender, recipient)?;
    let ciphertext = cipher.encrypt(&nonce.0.into(), plaintext).map_err(|_| E2eError::Aead)?;
    Ok(Sealed { nonce, ciphertext })
}

/// Opens `ciphertext` (with its tag) that `sender` sealed for `recipient` with `nonce`.
pub fn open(recipient: &Passport, sender: &AgentId, nonce: &Nonce, ciphertext: &[u8]) -> Result<Vec<u8>, E2eError> {
    if ciphertext.len() > E2E_PLAINTEXT_BYTES_MAX + TAG_BYTES {
        return Err(E2eError::CiphertextTooLong);
    }
    let cipher = cipher(recipient, sender)?;
    cipher.decrypt(&nonce.0.into(), ciphertext).map_err(|_| E2eError::Aead)
}

/// [`open`] on the envelope's hex fields (upper case accepted, as 0.5.3's `bytes.fromhex`), with
/// the length bounded before anything is decoded.
pub fn open_hex(
    recipient: &Passport,
    sender: &AgentId,
    nonce_hex: &str,
    ciphertext_hex: &str,
) -> Result<Vec<u8>, E2eError> {
    if ciphertext_hex.len() > 2 * (E2E_PLAINTEXT_BYTES_MAX + TAG_BYTES) {
        return Err(E2eError::CiphertextTooLong);
    }
    let mut nonce = [0u8; NONCE_BYTES];
    hex::decode_to_slice(nonce_hex, &mut nonce).map_err(|_| E2eError::Malformed)?;
    let ciphertext = hex::decode(ciphertext_hex).map_err(|_| E2eError::Malformed)?;
    open(recipient, sender, &Nonce(nonce), &ciphertext)
}

/// The AEAD keyed for the pair (ours, peer); the same from either side.
fn cipher(ours: &Passport, peer: &AgentId) -> Result<ChaCha20Poly1305, E2eError> {
    let key = v1_key(&shared_secret(ours, peer)?);
    Ok(ChaCha20Poly1305::new(&key.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Passport, Passport) {
        (Passport::from_seed([1; 32]), Passport::from_seed([2; 32]))
    }

    #[test]
    fn both_sides_derive_the_same_shared_secret() {
        let (a, b) = pair();
        assert_eq!(shared_secret(&a, b.agent_id()), shared_secret(&b, a.agent_id()));
    }

    #[test]
    fn seal_refuses_an_unfilled_nonce() {
        let (a, b) = pair();
        assert_eq!(seal(&a, b.agent_id(), Nonce([0; 12]), b"x"), Err(E2eError::ZeroNonce));
    }

    #[test]
    fn plaintext_limit_is_inclusive() {
        let (a, b) = pair();
        let at = vec![b'a'; E2E_PLAINTEXT_BYTES_MAX];
        let sealed = seal(&a, b.agent_id(), Nonce([7; 12]), &at).expect("at the limit");
        assert_eq!(open(&b, a.agent_id(), &sealed.nonce, &sealed.ciphertext).as_deref(), Ok(&at[..]));
        let over = vec![b'a'; E2E_PLAINTEXT_BYTES_MAX + 1];
        assert_eq!(seal(&a, b.agent_id(), Nonce([7; 12]), &over), Err(E2eError::PlaintextTooLong));
    }

    #[test]
    fn ciphertext_limit_is_checked_before_decoding() {
        let (a, b) = pair();
        let over = "zz".repeat(E2E_PLAINTEXT_BYTES_MAX + TAG_BYTES + 1);
        assert_eq!(open_hex(&b, a.agent_id(), "00", &over), Err(E2eError::CiphertextTooLong));
        let at = "zz".repeat(E2E_PLAINTEXT_BYTES_MAX + TAG_BYTES);
        assert_eq!(open_hex(&b, a.agent_id(), &"01".repeat(12), &at), Err(E2eError::Malformed));
        let raw_over = vec![0u8; E2E_PLAINTEXT_BYTES_MAX + TAG_BYTES + 1];
        assert_eq!(open(&b, a.agent_id(), &Nonce([1; 12]), &raw_over), Err(E2eError::CiphertextTooLong));
    }

    #[test]
    fn a_short_nonce_is_malformed() {
        let (a, b) = pair();
        assert_eq!(open_hex(&b, a.agent_id(), "0102", "00"), Err(E2eError::Malformed));
    }

    #[test]
    fn a_small_order_peer_key_is_refused_both_ways() {
        let (a, _) = pair();
        // The Edwards identity: a valid encoding, order 1. `AgentId::parse` refuses it; `from_key` does not.
        let identity = ed25519_dalek::VerifyingKey::from_bytes(&{
            let mut y = [0u8; 32];
            y[0] = 1;
            y
        })
        .expect("the identity decodes");
        let weak = AgentId::from_key(identity);
        assert_eq!(seal(&a, &weak, Nonce([1; 12]), b"x"), Err(E2eError::LowOrder));
        assert_eq!(open(&a, &weak, &Nonce([1; 12]), &[0; 16]), Err(E2eError::LowOrder));
    }
}
