//! Typed JSON bodies of every request and response peers exchange, one file per conversation.
//!
//! Field names and shapes are 0.5.3's. Unknown fields are tolerated (0.5.3 adds fields freely); a
//! field of the wrong type is refused with serde's message, which names the field's position. Fields
//! this project adds are optional, so 0.5.3 ignores them and we accept 0.5.3 bodies without them.

pub mod card;
pub mod connection;
pub mod discovery;
pub mod message;
pub mod peer;
pub mod shard;
pub mod trust;
pub mod webhook;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::WireError;
use crate::limits::BODY_BYTES_MAX;

/// The body of every refusal: `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, for a human or a model to read.
    pub error: String,
}

/// Decodes a JSON body into `T`, refusing oversized bodies, non-objects and wrong types.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    if body.len() > BODY_BYTES_MAX {
        return Err(WireError::TooLarge { max: BODY_BYTES_MAX });
    }
    // Only objects are valid bodies; check cheaply before serde builds anything.
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(WireError::Invalid("body must be a JSON object".to_owned()));
    }
    serde_json::from_slice(body).map_err(|e| WireError::Invalid(e.to_string()))
}

/// Encodes a body as compact JSON, as 0.5.3 sends it.
pub fn encode<T: Serialize>(body: &T) -> Vec<u8> {
    // Serialising our own plain structs cannot fail: no maps with non-string keys, no custom errors.
    serde_json::to_vec(body).expect("wire types always serialise")
}

/// The `{"error": ...}` body for a text.
pub fn error_body(text: &str) -> Vec<u8> {
    encode(&ErrorBody { error: text.to_owned() })
}

/// Marker we put in cards and handshakes: this peer speaks our signed form and expects it.
pub const DM_PROTOCOL: &str = "darkmatter-rs/2";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::message::MessageEnvelope;

    #[test]
    fn non_objects_and_wrong_types_are_refused_with_a_reason() {
        assert!(decode::<MessageEnvelope>(b"[1]").unwrap_err().to_string().contains("object"));
        assert!(decode::<MessageEnvelope>(b"not json").is_err());
        let e = decode::<MessageEnvelope>(br#"{"content": 5}"#).unwrap_err().to_string();
        assert!(e.contains("invalid type"), "{e}");
        let e = decode::<MessageEnvelope>(br#"{"hops_remaining": 1e400}"#).unwrap_err().to_string();
        assert!(!e.is_empty());
    }

    #[test]
    fn unknown_fields_are_tolerated() {
        let m: MessageEnvelope = decode(br#"{"message_id":"m","future_field":{"x":[1,2]}}"#).unwrap();
        assert_eq!(m.message_id, "m");
    }

    #[test]
    fn oversized_bodies_are_refused_before_parsing() {
        let body = vec![b' '; BODY_BYTES_MAX + 1];
        assert_eq!(decode::<MessageEnvelope>(&body), Err(WireError::TooLarge { max: BODY_BYTES_MAX }));
    }
}
