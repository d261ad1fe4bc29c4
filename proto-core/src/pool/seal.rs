//! Provider credentials at rest (R-H1): ChaCha20-Poly1305 under a key derived from the passport seed
//! (HKDF-SHA256, info `darkmatter-rs/2 pool-credentials`), a fresh 12-byte nonce from the OS for
//! every seal, and the provider's id as associated data, so a sealed value moved to another provider
//! does not open. The state file alone never reveals a credential.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::ChaCha20Poly1305;
use hkdf::Hkdf;
use sha2::Sha256;
use thiserror::Error;

use crate::identity::Passport;

/// HKDF info of the credential key.
pub const CREDENTIAL_KEY_INFO: &[u8] = b"darkmatter-rs/2 pool-credentials";
/// Bytes of a ChaCha20-Poly1305 nonce.
pub const NONCE_BYTES: usize = 12;

/// Why a credential could not be sealed or opened.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SealError {
    /// The runtime gave no OS randomness (a nonce must never repeat): nothing is sealed.
    #[error("no OS randomness to seal a credential with")]
    NoEntropy,
    /// The sealed value is damaged, or belongs to another passport or provider.
    #[error("the stored credential does not open")]
    Damaged,
}

fn cipher(passport: &Passport) -> Result<ChaCha20Poly1305, SealError> {
    let mut key = [0u8; 32];
    Hkdf::<Sha256>::new(None, &passport.seed())
        .expand(CREDENTIAL_KEY_INFO, &mut key)
        .map_err(|_| SealError::Damaged)?;
    Ok(ChaCha20Poly1305::new(&key.into()))
}

/// `nonce ‖ ciphertext` of `secret`, bound to `provider_id`.
pub fn seal(
    passport: &Passport,
    nonce: [u8; NONCE_BYTES],
    provider_id: &str,
    secret: &str,
) -> Result<Vec<u8>, SealError> {
    let payload = Payload { msg: secret.as_bytes(), aad: provider_id.as_bytes() };
    let sealed = cipher(passport)?.encrypt(&nonce.into(), payload).map_err(|_| SealError::Damaged)?;
    Ok([nonce.as_slice(), &sealed].concat())
}

/// The secret of a value [`seal`] made for `provider_id`.
pub fn open(passport: &Passport, provider_id: &str, sealed: &[u8]) -> Result<String, SealError> {
    if sealed.len() < NONCE_BYTES {
        return Err(SealError::Damaged);
    }
    let (nonce, body) = sealed.split_at(NONCE_BYTES);
    let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| SealError::Damaged)?;
    let payload = Payload { msg: body, aad: provider_id.as_bytes() };
    let plain = cipher(passport)?.decrypt(&nonce.into(), payload).map_err(|_| SealError::Damaged)?;
    String::from_utf8(plain).map_err(|_| SealError::Damaged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_opens_only_for_its_passport_and_provider() {
        let (a, b) = (Passport::from_seed([1; 32]), Passport::from_seed([2; 32]));
        let sealed = seal(&a, [7; NONCE_BYTES], "pv-1", "sk-secret").unwrap();
        assert!(!sealed.windows(9).any(|w| w == b"sk-secret"), "not in the clear");
        assert_eq!(open(&a, "pv-1", &sealed).unwrap(), "sk-secret");
        assert_eq!(open(&a, "pv-2", &sealed), Err(SealError::Damaged));
        assert_eq!(open(&b, "pv-1", &sealed), Err(SealError::Damaged));
        assert_eq!(open(&a, "pv-1", &sealed[..5]), Err(SealError::Damaged));
    }
}
