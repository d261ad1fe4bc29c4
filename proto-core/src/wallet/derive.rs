//! The wallet keypair derived from the passport seed, exactly as dmagent 0.5.3 derives it, and Solana
//! public keys (addresses) with program-derived addresses.

use std::fmt;

use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::base58;
use crate::identity::Passport;

/// Appended to the passport seed before hashing, so the wallet key differs from the passport key (0.5.3's
/// `wallet/solana.py`; changing it would move every user's funds to a new address).
pub const WALLET_SEED_DOMAIN: &[u8] = b"darkmatter-solana-v1";

/// Suffix of a program-derived address hash (Solana's `create_program_address`).
const PDA_MARKER: &[u8] = b"ProgramDerivedAddress";

/// A 32-byte Solana public key: an account address or a program id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pubkey(pub [u8; 32]);

/// Why a text is not an address.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PubkeyError {
    /// A character outside the base58 alphabet.
    #[error("not base58")]
    NotBase58,
    /// Decodes to a length other than 32 bytes.
    #[error("an address is 32 bytes, this decodes to {0}")]
    WrongLength(usize),
}

impl Pubkey {
    /// Parses a base58 address; exactly 32 bytes, so `1…1` padding cannot smuggle a longer key.
    pub fn from_base58(text: &str) -> Result<Self, PubkeyError> {
        // 32 bytes never take more than 44 characters; refusing longer texts bounds the decoder's work.
        if text.len() > 44 {
            return Err(PubkeyError::WrongLength(text.len()));
        }
        let bytes = base58::decode(text).ok_or(PubkeyError::NotBase58)?;
        let array: [u8; 32] = bytes.as_slice().try_into().map_err(|_| PubkeyError::WrongLength(bytes.len()))?;
        Ok(Self(array))
    }

    /// The address as Solana writes it.
    pub fn to_base58(&self) -> String {
        base58::encode(&self.0)
    }

    /// Whether the bytes are a point of Ed25519; program-derived addresses must not be.
    pub fn is_on_curve(&self) -> bool {
        CompressedEdwardsY(self.0).decompress().is_some()
    }
}

impl fmt::Display for Pubkey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base58())
    }
}

impl fmt::Debug for Pubkey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pubkey({self})")
    }
}

/// Solana's `find_program_address`: the first bump from 255 down whose hash is off the curve, so no one
/// holds its private key. `None` only if all 256 bumps land on the curve (never seen in practice).
pub fn find_program_address(seeds: &[&[u8]], program: &Pubkey) -> Option<(Pubkey, u8)> {
    (0..=u8::MAX).rev().find_map(|bump| {
        let mut hash = Sha256::new();
        for seed in seeds {
            hash.update(seed);
        }
        hash.update([bump]);
        hash.update(program.0);
        hash.update(PDA_MARKER);
        let candidate = Pubkey(hash.finalize().into());
        (!candidate.is_on_curve()).then_some((candidate, bump))
    })
}

/// The node's Solana keypair. Recomputed from the passport at every start and never stored, so the
/// passport stays the one secret to guard.
pub struct Wallet {
    key: SigningKey,
}

impl Wallet {
    /// `SHA-256(passport_seed ‖ "darkmatter-solana-v1")` as the Ed25519 seed.
    pub fn from_passport_seed(passport_seed: &[u8; 32]) -> Self {
        let seed: [u8; 32] =
            Sha256::new().chain_update(passport_seed).chain_update(WALLET_SEED_DOMAIN).finalize().into();
        Self { key: SigningKey::from_bytes(&seed) }
    }

    /// The wallet of this node's passport.
    pub fn from_passport(passport: &Passport) -> Self {
        Self::from_passport_seed(&passport.seed())
    }

    /// The wallet's address.
    pub fn address(&self) -> Pubkey {
        Pubkey(self.key.verifying_key().to_bytes())
    }

    /// Ed25519 signature over `bytes` (a serialized message).
    pub(crate) fn sign(&self, bytes: &[u8]) -> [u8; 64] {
        self.key.sign(bytes).to_bytes()
    }
}

impl fmt::Debug for Wallet {
    /// The address only: the key must never reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Wallet({})", self.address())
    }
}
