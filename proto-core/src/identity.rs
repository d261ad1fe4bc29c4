//! Identity: the Ed25519 passport, agent ids bound to keys, display name and bio.
//!
//! An agent id *is* the lowercase hex of the 32-byte public key, so binding id to key is a parse:
//! [`AgentId::parse`] refuses anything that is not 64 lowercase hex digits of a valid point.

use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::error::IdentityError;
use crate::limits::AGENT_ID_BYTES_MAX;

/// Length of an agent id in hex digits.
pub const AGENT_ID_HEX_LEN: usize = 64;

/// A peer's identity: the lowercase-hex Ed25519 public key, validated, with the decoded key kept
/// beside it so verification never parses twice.
#[derive(Clone, PartialEq, Eq)]
pub struct AgentId {
    hex: String,
    key: VerifyingKey,
}

impl AgentId {
    /// Parses an agent id as sent on the wire.
    pub fn parse(text: &str) -> Result<Self, IdentityError> {
        if text.len() > AGENT_ID_BYTES_MAX {
            return Err(IdentityError::TooLong);
        }
        if text.len() != AGENT_ID_HEX_LEN || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(IdentityError::NotAKey);
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| IdentityError::NotAKey)?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| IdentityError::NotAKey)?;
        // A weak (small-order) key can be made to "verify" forged signatures under lax rules.
        if key.is_weak() {
            return Err(IdentityError::WeakKey);
        }
        Ok(Self { hex: text.to_owned(), key })
    }

    /// The id from a verifying key.
    pub fn from_key(key: VerifyingKey) -> Self {
        Self { hex: lower_hex(key.as_bytes()), key }
    }

    /// The lowercase hex form, as on the wire.
    pub fn as_str(&self) -> &str {
        &self.hex
    }

    /// The Ed25519 key this id names.
    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }

    /// The first twelve hex digits, for logs and traces.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }
}

impl fmt::Debug for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AgentId({})", self.short())
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex)
    }
}

impl PartialOrd for AgentId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for AgentId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.hex.cmp(&other.hex)
    }
}

impl std::hash::Hash for AgentId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.hex.hash(state)
    }
}

impl Serialize for AgentId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex)
    }
}

impl<'de> Deserialize<'de> for AgentId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        AgentId::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Agent ids parsed lately that name no connection, kept so that a peer heard from again (a LAN
/// neighbour's beacons, the later steps of a handshake) costs a comparison instead of a point
/// decompression. Parsing is a pure function of the text, so a hit answers exactly what a parse
/// would; only valid ids are kept. Bounded: when full, the oldest entry is replaced.
#[derive(Clone, Debug, Default)]
pub struct KeyCache {
    ids: Vec<AgentId>,
    next: usize,
    parses: u64,
}

/// Entries a [`KeyCache`] holds: a LAN segment's beacons and a few handshakes in flight.
pub const KEY_CACHE_MAX: usize = 16;

impl KeyCache {
    /// The id `text` names, from the cache or parsed (and then cached).
    pub fn parse(&mut self, text: &str) -> Result<AgentId, IdentityError> {
        if let Some(id) = self.ids.iter().find(|id| id.hex == text) {
            return Ok(id.clone());
        }
        self.parses += 1;
        let id = AgentId::parse(text)?;
        if self.ids.len() < KEY_CACHE_MAX {
            self.ids.push(id.clone());
        } else {
            self.ids[self.next] = id.clone();
            self.next = (self.next + 1) % KEY_CACHE_MAX;
        }
        Ok(id)
    }

    /// Parses performed (cache misses) so far.
    pub fn parses(&self) -> u64 {
        self.parses
    }
}

/// The node's own key pair. The file form is 0.5.3's `.darkmatter/passport.key`: the lowercase hex of
/// the 32-byte seed and a newline.
pub struct Passport {
    signing: SigningKey,
    id: AgentId,
}

impl Passport {
    /// The passport for a 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(&seed);
        let id = AgentId::from_key(signing.verifying_key());
        Self { signing, id }
    }

    /// Reads the contents of a passport file (surrounding whitespace ignored, as 0.5.3 does).
    pub fn from_file_contents(text: &str) -> Result<Self, IdentityError> {
        let hex_seed = text.trim();
        let mut seed = [0u8; 32];
        if hex_seed.len() != 64 {
            return Err(IdentityError::BadPassport);
        }
        hex::decode_to_slice(hex_seed, &mut seed).map_err(|_| IdentityError::BadPassport)?;
        Ok(Self::from_seed(seed))
    }

    /// What to write to the passport file.
    pub fn to_file_contents(&self) -> String {
        format!("{}\n", lower_hex(&self.signing.to_bytes()))
    }

    /// This node's agent id.
    pub fn agent_id(&self) -> &AgentId {
        &self.id
    }

    /// Signs bytes that [`crate::sign`] has already put in canonical form.
    pub fn sign(&self, canonical: &[u8]) -> Signature {
        self.signing.sign(canonical)
    }

    /// The raw seed, for deriving other keys (the relay's X25519 key, the wallet).
    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }
}

impl fmt::Debug for Passport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the seed.
        write!(f, "Passport({})", self.id.short())
    }
}

/// Lowercase hex of `bytes`. The `hex` crate's `encode` collects one `char` at a time, which was
/// the simulator's largest single non-signature cost (a signature and an id per message).
pub fn lower_hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    hex::encode_to_slice(bytes, &mut out).expect("the buffer is twice the input");
    String::from_utf8(out).expect("hex digits are ASCII")
}

/// Hex digits of the agent id in the name of an agent nobody named (`agent-<hex>`).
pub const DEFAULT_NAME_ID_HEX: usize = 8;

/// The name of an agent nobody named: `agent-` and the start of its id. Chosen here, not by the
/// runtime, so that an unnamed node's rename is kept: a name the runtime configures wins at start.
pub fn default_display_name(agent_id: &AgentId) -> String {
    let id = agent_id.as_str();
    format!("agent-{}", &id[..DEFAULT_NAME_ID_HEX.min(id.len())])
}

/// Truncates to at most `max` characters, on a character boundary.
pub fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((byte, _)) => text[..byte].to_owned(),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_must_be_lowercase_hex_of_a_key() {
        let p = Passport::from_seed([0x1f; 32]);
        let id = p.agent_id().as_str().to_owned();
        assert!(AgentId::parse(&id).is_ok());
        assert_eq!(AgentId::parse(&id.to_uppercase()), Err(IdentityError::NotAKey));
        assert_eq!(AgentId::parse(&id[..63]), Err(IdentityError::NotAKey));
        assert_eq!(AgentId::parse(&"a".repeat(AGENT_ID_BYTES_MAX)), Err(IdentityError::NotAKey));
        assert_eq!(AgentId::parse(&"a".repeat(AGENT_ID_BYTES_MAX + 1)), Err(IdentityError::TooLong));
    }

    #[test]
    fn key_cache_answers_as_parse_does() {
        let mut cache = KeyCache::default();
        let ids: Vec<String> =
            (0..KEY_CACHE_MAX as u8 + 3).map(|i| Passport::from_seed([i; 32]).agent_id().as_str().to_owned()).collect();
        for round in 0..2 {
            for id in &ids {
                assert_eq!(cache.parse(id), AgentId::parse(id), "round {round}");
            }
        }
        assert_eq!(cache.parse(&ids[0][..63]), Err(IdentityError::NotAKey));
        assert_eq!(cache.parse(&ids[0].to_uppercase()), Err(IdentityError::NotAKey));
        let before = cache.parses();
        cache.parse(&ids[ids.len() - 1]).unwrap();
        assert_eq!(cache.parses(), before, "a recent id is a hit");
    }

    #[test]
    fn weak_keys_are_refused() {
        // The identity point (y = 1) has small order.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        assert_eq!(AgentId::parse(&hex::encode(weak)), Err(IdentityError::WeakKey));
    }

    #[test]
    fn passport_file_round_trips() {
        let p = Passport::from_seed([0x2a; 32]);
        let text = p.to_file_contents();
        assert_eq!(text, format!("{}\n", "2a".repeat(32)));
        let q = Passport::from_file_contents(&format!("  {text}  ")).unwrap();
        assert_eq!(p.agent_id(), q.agent_id());
        assert!(Passport::from_file_contents("zz").is_err());
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate_chars("ééé", 2), "éé");
        assert_eq!(truncate_chars("ab", 5), "ab");
    }

    #[test]
    fn lower_hex_matches_the_hex_crate() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(lower_hex(&bytes), hex::encode(&bytes));
        assert_eq!(lower_hex(&[]), "");
    }
}
