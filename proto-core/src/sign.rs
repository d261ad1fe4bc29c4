//! Canonical forms, domain tags, signing and `verify_strict`.
//!
//! Three forms exist:
//! - the **legacy message form** of 0.5.3: `from \n message_id \n timestamp \n content`, no domain;
//! - the **0.5.3 domain form**: `domain \n field1 \n field2 ...`;
//! - **our form** ([`v2_bytes`]): a fixed prefix, the domain, then every field as a netstring
//!   (`<len>:<bytes>,`). It is unambiguous for any field content and is what two nodes of this project
//!   check between themselves; it covers every field that changes a message's meaning.
//!
//! Fields are joined with `\n` in the first two forms, so a newline inside any field but the last would
//! move the boundaries. We refuse to sign such a field ([`SignError::AmbiguousField`]) rather than sign
//! something a verifier could read two ways.

use ed25519_dalek::VerifyingKey;

use crate::crypto::Ed25519;
use crate::error::SignError;
use crate::identity::Passport;

/// 0.5.3's peer_update domain (the tag really is just this word).
pub const DOMAIN_PEER_UPDATE: &str = "peer_update";
/// 0.5.3's anchor relay poll domain.
pub const DOMAIN_RELAY_POLL: &str = "relay_poll";
/// 0.5.3's WebRTC SDP domain.
pub const DOMAIN_SDP: &str = "darkmatter.sdp.v1";
/// 0.5.3's shard domain.
pub const DOMAIN_SHARD: &str = "darkmatter.shard.v1";
/// 0.5.3's LAN beacon domain.
pub const DOMAIN_LAN_BEACON: &str = "darkmatter.lan_beacon.v1";
/// 0.5.3's connection challenge domain (0.5.3 checks it wrongly; we check it).
pub const DOMAIN_CHALLENGE: &str = "darkmatter.challenge_response.v1";
/// 0.5.3's genome domain.
pub const DOMAIN_GENOME: &str = "darkmatter.genome.v1";

/// Prefix of every signature in our own form; no 0.5.3 canonical string can start with it.
pub const V2_PREFIX: &str = "darkmatter-rs/2\n";
/// Our domain for a message envelope.
pub const V2_MESSAGE: &str = "message";
/// Our domain for a connection request.
pub const V2_CONNECT: &str = "connect";
/// Our domain for the answer to a connection request (pending or accepted).
pub const V2_CONNECT_ANSWER: &str = "connect-answer";
/// Our domain for the acceptance callback.
pub const V2_ACCEPTED: &str = "accepted";
/// Our domain for a disconnect notice.
pub const V2_DISCONNECT: &str = "disconnect";
/// Our domain for a peer update.
pub const V2_PEER_UPDATE: &str = "peer-update";
/// Our domain for a webhook update.
pub const V2_WEBHOOK: &str = "webhook";

/// Our domain for a trust query.
pub const V2_TRUST_QUERY: &str = "trust-query";
/// Our domain for a trust answer.
pub const V2_TRUST_ANSWER: &str = "trust-answer";
/// Our domain for a shard.
pub const V2_SHARD: &str = "shard";
/// Our domain for a pool purchase: pool_id, consumer id, tx_signature, timestamp (SPEC §22.3).
pub const V2_POOL_BUY: &str = "pool-buy";
/// Our domain for a pool call: pool_id, token_id, method, path, SHA-256 of the body (hex), timestamp.
pub const V2_POOL_CALL: &str = "pool-call";
/// Our domain for a registration with an anchor.
pub const V2_ANCHOR_REGISTER: &str = "anchor-register";

// Decoding a signature is the provider's side of the line (it sees raw signatures only).
pub use crate::crypto::{parse_signature, SIGNATURE_HEX_LEN};

/// Bytes of the legacy message form. Refuses ids and timestamps that contain a newline.
pub fn legacy_message_bytes(
    from: &str,
    message_id: &str,
    timestamp: &str,
    content: &str,
) -> Result<Vec<u8>, SignError> {
    domain_bytes_parts(&[from, message_id, timestamp], content)
}

/// Bytes of the 0.5.3 domain form. Refuses a newline in any field but the last.
pub fn domain_bytes(domain: &str, fields: &[&str]) -> Result<Vec<u8>, SignError> {
    match fields.split_last() {
        None => domain_bytes_parts(&[], domain),
        Some((last, head)) => {
            let mut all = Vec::with_capacity(head.len() + 1);
            all.push(domain);
            all.extend_from_slice(head);
            domain_bytes_parts(&all, last)
        }
    }
}

fn domain_bytes_parts(head: &[&str], last: &str) -> Result<Vec<u8>, SignError> {
    let mut out = Vec::with_capacity(head.iter().map(|f| f.len() + 1).sum::<usize>() + last.len());
    for (index, field) in head.iter().enumerate() {
        if field.contains('\n') {
            return Err(SignError::AmbiguousField { index });
        }
        out.extend_from_slice(field.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(last.as_bytes());
    Ok(out)
}

/// Bytes of our own form: prefix, domain, then each field as a netstring. Total for any input.
pub fn v2_bytes(domain: &str, fields: &[&str]) -> Vec<u8> {
    let len = V2_PREFIX.len() + domain.len() + 1 + fields.iter().map(|f| f.len() + 22).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(V2_PREFIX.as_bytes());
    out.extend_from_slice(domain.as_bytes());
    out.push(b'\n');
    for field in fields {
        out.extend_from_slice(field.len().to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(field.as_bytes());
        out.push(b',');
    }
    out
}

/// Signs canonical bytes with real Ed25519 and returns the lowercase hex signature. A node signs
/// through its provider ([`crate::crypto::sign_hex`]); this is for tests, vectors and tools.
pub fn sign_hex(passport: &Passport, canonical: &[u8]) -> String {
    crate::crypto::sign_hex(&Ed25519, passport, canonical)
}

/// Verifies with real Ed25519's `verify_strict`: no small-order keys or R points, canonical S. A
/// node verifies through its provider ([`crate::crypto::verify_hex`]); this is for tests and vectors.
pub fn verify_hex(key: &VerifyingKey, canonical: &[u8], sig_hex: &str) -> Result<(), SignError> {
    crate::crypto::verify_hex(&Ed25519, key, canonical, sig_hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8032's first Ed25519 test vector, through the free helpers tests and vectors use.
    #[test]
    fn signatures_are_ed25519() {
        let mut seed = [0u8; 32];
        hex::decode_to_slice("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", &mut seed).unwrap();
        let p = Passport::from_seed(seed);
        assert_eq!(p.agent_id().as_str(), "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
        let expected = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";
        assert_eq!(sign_hex(&p, b""), expected, "sign_hex does not sign with Ed25519");
        assert!(verify_hex(p.agent_id().key(), b"", expected).is_ok());
    }

    #[test]
    fn newline_in_a_non_final_field_is_refused() {
        assert_eq!(legacy_message_bytes("a\nb", "m", "t", "c"), Err(SignError::AmbiguousField { index: 0 }));
        assert_eq!(legacy_message_bytes("a", "m\n", "t", "c"), Err(SignError::AmbiguousField { index: 1 }));
        assert!(legacy_message_bytes("a", "m", "t", "multi\nline").is_ok());
        assert_eq!(domain_bytes("d", &["x\ny", "z"]), Err(SignError::AmbiguousField { index: 1 }));
        assert_eq!(domain_bytes("d", &["x", "y"]).unwrap(), b"d\nx\ny");
    }

    #[test]
    fn v2_form_separates_fields_that_legacy_would_merge() {
        assert_ne!(v2_bytes("d", &["a\nb", "c"]), v2_bytes("d", &["a", "b\nc"]));
        assert_ne!(v2_bytes("d", &["ab", ""]), v2_bytes("d", &["a", "b"]));
        assert_eq!(v2_bytes("d", &["ab", ""]), b"darkmatter-rs/2\nd\n2:ab,0:,");
    }

    #[test]
    fn signatures_verify_and_tampering_fails() {
        let p = Passport::from_seed([7; 32]);
        let bytes = v2_bytes(V2_MESSAGE, &["hello"]);
        let sig = sign_hex(&p, &bytes);
        assert!(verify_hex(p.agent_id().key(), &bytes, &sig).is_ok());
        assert!(verify_hex(p.agent_id().key(), &bytes, &sig.to_uppercase()).is_ok());
        assert_eq!(verify_hex(p.agent_id().key(), b"other", &sig), Err(SignError::Invalid));
        assert_eq!(verify_hex(p.agent_id().key(), &bytes, &sig[..126]), Err(SignError::Malformed));
        assert_eq!(verify_hex(p.agent_id().key(), &bytes, &"zz".repeat(64)), Err(SignError::Malformed));
    }
}
