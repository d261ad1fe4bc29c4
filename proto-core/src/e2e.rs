//! End-to-end encryption of relayed messages: version 1, 0.5.3's construction byte for byte, and
//! version 2, between nodes of this project ([`seal_v2`]).
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
//! `timestamp` with AAD would break 0.5.3 interop; that binding is version 2's.
//!
//! Version 2 (for peers that advertise it through `dm_protocol`) adds an ephemeral X25519 key per
//! message (forward secrecy against a later theft of the sender's key: the sender's key alone no
//! longer opens what it sealed), XChaCha20-Poly1305 with a 24-byte nonce, and associated data that
//! binds sender id, recipient id and the envelope's timestamp. The ephemeral secret and the nonce
//! come from the runtime's OS CSPRNG in a [`Fresh`], like version 1's nonce.
//!
//! How the relay uses it (`node/relay.rs`, SPEC §20): to send through an anchor, the node builds the inner
//! JSON with [`inner_plaintext`], seals it with a fresh OS nonce, and posts
//! `{"e2e_encrypted":true,"encrypted_payload":{"nonce","ciphertext","sender_public_key_hex"},…}`
//! (hex from [`Sealed`]); to a version 2 peer it posts `{"e2e_version":2,"eph_pub","nonce",
//! "ciphertext"}` from [`seal_v2`] instead. It never posts plaintext. On a polled envelope it parses
//! the sender id from `sender_public_key_hex` (else `from_agent_id`), calls [`open_hex`] (or
//! [`open_v2_hex`]), and dispatches only if the decrypted payload's sender equals that id.
//!
//! Pure: no I/O, no clock, no randomness.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, XChaCha20Poly1305};
use curve25519_dalek::montgomery::MontgomeryPoint;
use hkdf::Hkdf;
use sha2::{Digest, Sha256, Sha512};

use crate::crypto::{sign_hex, SignatureProvider};
use crate::error::SignError;
use crate::identity::{lower_hex, AgentId, Passport};
use crate::limits::E2E_PLAINTEXT_BYTES_MAX;
use crate::sign::v2_bytes;

mod pyjson;

/// Characters of the sorted payload JSON that a relayed body's legacy `signature` covers (0.5.3's `[:256]`).
pub const INNER_SIGNED_CHARS: usize = 256;

/// Bytes of a version 1 nonce (ChaCha20-Poly1305, IETF).
pub const NONCE_BYTES: usize = 12;
/// Bytes of the Poly1305 tag appended to the ciphertext.
pub const TAG_BYTES: usize = 16;
/// HKDF `info` of version 1, as 0.5.3 writes it.
pub const V1_INFO: &[u8] = b"darkmatter-e2e-v1";

/// A version 1 nonce. The runtime fills it from the OS CSPRNG, one per message; never from a
/// seeded RNG, never reused. Neither `Clone` nor `Copy`: [`seal`] consumes it, so one drawn nonce
/// cannot seal two messages by accident.
#[derive(Debug, PartialEq, Eq)]
pub struct Nonce(pub [u8; NONCE_BYTES]);

/// A sealed message: the nonce it was sealed with and the ciphertext with its tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed {
    /// The nonce, sent beside the ciphertext.
    pub nonce: [u8; NONCE_BYTES],
    /// Ciphertext ‖ 16-byte tag.
    pub ciphertext: Vec<u8>,
}

impl Sealed {
    /// The nonce in lowercase hex, as the envelope's `nonce` field carries it.
    pub fn nonce_hex(&self) -> String {
        lower_hex(&self.nonce)
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
    /// The ephemeral secret is all zero: the runtime did not fill it from the OS.
    #[error("ephemeral secret is all zero")]
    ZeroEphemeral,
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
    x25519(x25519_secret(ours), x25519_public(peer))
}

/// X25519(secret, u), refusing a `u` of small order.
fn x25519(secret: [u8; 32], u: [u8; 32]) -> Result<[u8; 32], E2eError> {
    let shared = MontgomeryPoint(u).mul_clamped(secret).to_bytes();
    // All zero iff `u` has small order (the cofactor in the clamp kills any torsion).
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
    Ok(Sealed { nonce: nonce.0, ciphertext })
}

/// Opens `ciphertext` (with its tag) that `sender` sealed for `recipient` with `nonce`.
pub fn open(
    recipient: &Passport,
    sender: &AgentId,
    nonce: &[u8; NONCE_BYTES],
    ciphertext: &[u8],
) -> Result<Vec<u8>, E2eError> {
    if ciphertext.len() > E2E_PLAINTEXT_BYTES_MAX + TAG_BYTES {
        return Err(E2eError::CiphertextTooLong);
    }
    let cipher = cipher(recipient, sender)?;
    cipher.decrypt(&(*nonce).into(), ciphertext).map_err(|_| E2eError::Aead)
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
    open(recipient, sender, &nonce, &ciphertext)
}

/// The AEAD keyed for the pair (ours, peer); the same from either side.
fn cipher(ours: &Passport, peer: &AgentId) -> Result<ChaCha20Poly1305, E2eError> {
    let key = v1_key(&shared_secret(ours, peer)?);
    Ok(ChaCha20Poly1305::new(&key.into()))
}

// ---------------------------------------------------------------------------------------------------
// Version 2, between nodes of this project
// ---------------------------------------------------------------------------------------------------

/// Bytes of a version 2 nonce (XChaCha20-Poly1305).
pub const V2_NONCE_BYTES: usize = 24;
/// HKDF `info` of version 2.
pub const V2_INFO: &[u8] = b"darkmatter-rs/2 relay";
/// Domain of version 2's associated data, in our signed form's layout (sender, recipient, timestamp).
pub const V2_AAD_DOMAIN: &str = "relay-e2e";

/// Version 2's fresh randomness for one message, filled by the runtime from the OS CSPRNG. Neither
/// `Clone` nor `Copy` ([`seal_v2`] consumes it), and its `Debug` never prints the secret.
pub struct Fresh {
    /// The X25519 ephemeral secret (clamped on use); forgotten once the message is sealed.
    pub ephemeral_secret: [u8; 32],
    /// The XChaCha20-Poly1305 nonce.
    pub nonce: [u8; V2_NONCE_BYTES],
}

impl std::fmt::Debug for Fresh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fresh(nonce {})", lower_hex(&self.nonce))
    }
}

/// A version 2 sealed message: what the envelope carries beside the outer sender id and timestamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedV2 {
    /// The X25519 ephemeral public key.
    pub eph_pub: [u8; 32],
    /// The nonce.
    pub nonce: [u8; V2_NONCE_BYTES],
    /// Ciphertext ‖ 16-byte tag.
    pub ciphertext: Vec<u8>,
}

/// Seals `plaintext` from `sender` for `recipient`, bound to both ids and the envelope's `timestamp`.
///
/// Key = HKDF-SHA256(X25519(eph, recipient) ‖ X25519(sender, recipient), salt = eph_pub ‖ recipient u,
/// [`V2_INFO`]): the ephemeral half gives forward secrecy against a later theft of the sender's key, the
/// static half authenticates the sender; the AAD stops a relay from re-labelling sender, recipient or time.
pub fn seal_v2(
    sender: &Passport,
    recipient: &AgentId,
    timestamp: &str,
    fresh: Fresh,
    plaintext: &[u8],
) -> Result<SealedV2, E2eError> {
    if fresh.ephemeral_secret == [0u8; 32] {
        return Err(E2eError::ZeroEphemeral);
    }
    if fresh.nonce == [0u8; V2_NONCE_BYTES] {
        return Err(E2eError::ZeroNonce);
    }
    if plaintext.len() > E2E_PLAINTEXT_BYTES_MAX {
        return Err(E2eError::PlaintextTooLong);
    }
    let eph_pub = MontgomeryPoint::mul_base_clamped(fresh.ephemeral_secret).to_bytes();
    let recipient_u = x25519_public(recipient);
    let ephemeral = x25519(fresh.ephemeral_secret, recipient_u)?;
    let static_ = x25519(x25519_secret(sender), recipient_u)?;
    let cipher = v2_cipher(&ephemeral, &static_, &eph_pub, &recipient_u);
    let aad = v2_aad(sender.agent_id(), recipient, timestamp);
    let ciphertext =
        cipher.encrypt(&fresh.nonce.into(), Payload { msg: plaintext, aad: &aad }).map_err(|_| E2eError::Aead)?;
    Ok(SealedV2 { eph_pub, nonce: fresh.nonce, ciphertext })
}

/// Opens a version 2 message that `sender` says it sealed for `recipient` at `timestamp`.
pub fn open_v2(
    recipient: &Passport,
    sender: &AgentId,
    timestamp: &str,
    sealed: &SealedV2,
) -> Result<Vec<u8>, E2eError> {
    if sealed.ciphertext.len() > E2E_PLAINTEXT_BYTES_MAX + TAG_BYTES {
        return Err(E2eError::CiphertextTooLong);
    }
    let ours = x25519_secret(recipient);
    let recipient_u = x25519_public(recipient.agent_id());
    let ephemeral = x25519(ours, sealed.eph_pub)?;
    let static_ = x25519(ours, x25519_public(sender))?;
    let cipher = v2_cipher(&ephemeral, &static_, &sealed.eph_pub, &recipient_u);
    let aad = v2_aad(sender, recipient.agent_id(), timestamp);
    let payload = Payload { msg: &sealed.ciphertext, aad: &aad };
    cipher.decrypt(&sealed.nonce.into(), payload).map_err(|_| E2eError::Aead)
}

/// [`open_v2`] on the envelope's hex fields, with the length bounded before anything is decoded.
pub fn open_v2_hex(
    recipient: &Passport,
    sender: &AgentId,
    timestamp: &str,
    fields: [&str; 3],
) -> Result<Vec<u8>, E2eError> {
    let [eph_pub_hex, nonce_hex, ciphertext_hex] = fields;
    if ciphertext_hex.len() > 2 * (E2E_PLAINTEXT_BYTES_MAX + TAG_BYTES) {
        return Err(E2eError::CiphertextTooLong);
    }
    let mut eph_pub = [0u8; 32];
    hex::decode_to_slice(eph_pub_hex, &mut eph_pub).map_err(|_| E2eError::Malformed)?;
    let mut nonce = [0u8; V2_NONCE_BYTES];
    hex::decode_to_slice(nonce_hex, &mut nonce).map_err(|_| E2eError::Malformed)?;
    let ciphertext = hex::decode(ciphertext_hex).map_err(|_| E2eError::Malformed)?;
    open_v2(recipient, sender, timestamp, &SealedV2 { eph_pub, nonce, ciphertext })
}

/// Version 2's AEAD from the two X25519 products.
fn v2_cipher(
    ephemeral: &[u8; 32],
    static_: &[u8; 32],
    eph_pub: &[u8; 32],
    recipient_u: &[u8; 32],
) -> XChaCha20Poly1305 {
    let mut ikm = [0u8; 64];
    ikm[..32].copy_from_slice(ephemeral);
    ikm[32..].copy_from_slice(static_);
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(eph_pub);
    salt[32..].copy_from_slice(recipient_u);
    let mut key = [0u8; 32];
    if Hkdf::<Sha256>::new(Some(&salt), &ikm).expand(V2_INFO, &mut key).is_err() {
        unreachable!("32 bytes is a valid HKDF-SHA256 length");
    }
    XChaCha20Poly1305::new(&key.into())
}

/// Version 2's associated data: sender id, recipient id and timestamp in our signed form's layout.
pub fn v2_aad(sender: &AgentId, recipient: &AgentId, timestamp: &str) -> Vec<u8> {
    v2_bytes(V2_AAD_DOMAIN, &[sender.as_str(), recipient.as_str(), timestamp])
}

// ---------------------------------------------------------------------------------------------------
// The inner plaintext
// ---------------------------------------------------------------------------------------------------

/// What 0.5.3's legacy `signature` of a relayed body covers as content: `json.dumps(payload,
/// sort_keys=True)[:256]` (all ASCII, so characters are bytes).
pub fn inner_content_str(payload: &serde_json::Value) -> String {
    let mut text = pyjson::dumps_sorted(payload);
    text.truncate(INNER_SIGNED_CHARS.min(text.len()));
    text
}

/// The plaintext a node seals to relay `payload` to `path`: `{"path","payload","from_agent_id",
/// "timestamp","signature"}` in 0.5.3's order. The `signature` (legacy form over sender,
/// `payload.message_id` or `relay`, timestamp and [`inner_content_str`]) is produced because 0.5.3
/// sends it; nobody verifies it, and a receiver of this project ignores it (the AEAD authenticates).
pub fn inner_plaintext(
    provider: &dyn SignatureProvider,
    sender: &Passport,
    path: &str,
    payload: &serde_json::Value,
    timestamp: &str,
) -> Result<Vec<u8>, SignError> {
    let message_id = payload.get("message_id").and_then(serde_json::Value::as_str).unwrap_or("relay");
    let from = sender.agent_id().as_str();
    let signed = crate::sign::legacy_message_bytes(from, message_id, timestamp, &inner_content_str(payload))?;
    let signature = sign_hex(provider, sender, &signed);
    let mut out = String::from("{\"path\": ");
    pyjson::write_str(&mut out, path);
    out.push_str(", \"payload\": ");
    out.push_str(&pyjson::dumps_sorted(payload));
    for (key, value) in [("from_agent_id", from), ("timestamp", timestamp), ("signature", &signature)] {
        out.push_str(", ");
        pyjson::write_str(&mut out, key);
        out.push_str(": ");
        pyjson::write_str(&mut out, value);
    }
    out.push('}');
    Ok(out.into_bytes())
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
        assert_eq!(open(&b, a.agent_id(), &[1; 12], &raw_over), Err(E2eError::CiphertextTooLong));
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
        assert_eq!(open(&a, &weak, &[1; 12], &[0; 16]), Err(E2eError::LowOrder));
    }

    const FRESH: Fresh = Fresh { ephemeral_secret: [5; 32], nonce: [6; V2_NONCE_BYTES] };
    const TS: &str = "2026-01-01T00:00:00+00:00";

    #[test]
    fn v2_opens_only_with_the_same_sender_recipient_and_timestamp() {
        let (a, b) = pair();
        let c = Passport::from_seed([3; 32]);
        let sealed = seal_v2(&a, b.agent_id(), TS, FRESH, b"hello").unwrap();
        assert_eq!(open_v2(&b, a.agent_id(), TS, &sealed).as_deref(), Ok(&b"hello"[..]));
        assert_eq!(open_v2(&b, a.agent_id(), "2026-01-01T00:00:01+00:00", &sealed), Err(E2eError::Aead));
        assert_eq!(open_v2(&b, c.agent_id(), TS, &sealed), Err(E2eError::Aead));
        assert_eq!(open_v2(&c, a.agent_id(), TS, &sealed), Err(E2eError::Aead));
        let hex = [lower_hex(&sealed.eph_pub), lower_hex(&sealed.nonce), lower_hex(&sealed.ciphertext)];
        let fields = [hex[0].as_str(), hex[1].as_str(), hex[2].as_str()];
        assert_eq!(open_v2_hex(&b, a.agent_id(), TS, fields).as_deref(), Ok(&b"hello"[..]));
    }

    #[test]
    fn v2_the_sender_key_alone_does_not_open_what_it_sealed() {
        // Version 1 is symmetric: the sender's static key opens its own message. Version 2 needs the
        // ephemeral secret or the recipient's key, so a stolen sender key does not read past traffic.
        let (a, b) = pair();
        let v1 = seal(&a, b.agent_id(), Nonce([9; 12]), b"x").unwrap();
        assert_eq!(open(&a, b.agent_id(), &v1.nonce, &v1.ciphertext).as_deref(), Ok(&b"x"[..]));
        let v2 = seal_v2(&a, b.agent_id(), TS, FRESH, b"x").unwrap();
        assert_eq!(open_v2(&a, b.agent_id(), TS, &v2), Err(E2eError::Aead));
    }

    #[test]
    fn v2_refuses_unfilled_randomness_and_a_small_order_ephemeral_key() {
        let (a, b) = pair();
        let zero_eph = Fresh { ephemeral_secret: [0; 32], ..FRESH };
        assert_eq!(seal_v2(&a, b.agent_id(), TS, zero_eph, b"x"), Err(E2eError::ZeroEphemeral));
        let zero_nonce = Fresh { nonce: [0; V2_NONCE_BYTES], ..FRESH };
        assert_eq!(seal_v2(&a, b.agent_id(), TS, zero_nonce, b"x"), Err(E2eError::ZeroNonce));
        let mut sealed = seal_v2(&a, b.agent_id(), TS, FRESH, b"x").unwrap();
        sealed.eph_pub = [0; 32];
        assert_eq!(open_v2(&b, a.agent_id(), TS, &sealed), Err(E2eError::LowOrder));
    }

    #[test]
    fn v2_limits_match_version_1() {
        let (a, b) = pair();
        let over = vec![b'a'; E2E_PLAINTEXT_BYTES_MAX + 1];
        assert_eq!(seal_v2(&a, b.agent_id(), TS, FRESH, &over), Err(E2eError::PlaintextTooLong));
        let at = vec![b'a'; E2E_PLAINTEXT_BYTES_MAX];
        let mut sealed = seal_v2(&a, b.agent_id(), TS, FRESH, &at).unwrap();
        assert_eq!(open_v2(&b, a.agent_id(), TS, &sealed).map(|p| p.len()), Ok(at.len()));
        sealed.ciphertext.push(0);
        assert_eq!(open_v2(&b, a.agent_id(), TS, &sealed), Err(E2eError::CiphertextTooLong));
        let long = "zz".repeat(E2E_PLAINTEXT_BYTES_MAX + TAG_BYTES + 1);
        assert_eq!(open_v2_hex(&b, a.agent_id(), TS, ["", "", &long]), Err(E2eError::CiphertextTooLong));
    }
}
