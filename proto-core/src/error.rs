//! Errors, one enum per concern. Every variant says when it happens.

use thiserror::Error;

/// Why an agent id or passport was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum IdentityError {
    /// The id is longer than [`crate::limits::AGENT_ID_BYTES_MAX`].
    #[error("agent_id too long")]
    TooLong,
    /// The id is not 64 lowercase hex digits of a valid Ed25519 point.
    #[error("agent_id must be the 64-digit lowercase hex Ed25519 public key")]
    NotAKey,
    /// The id is a small-order point, which could verify forged signatures.
    #[error("agent_id is a weak (small-order) key")]
    WeakKey,
    /// A passport file does not hold 64 hex digits.
    #[error("passport file must hold the 64-digit hex seed")]
    BadPassport,
}

/// Why a signature could not be made or did not verify.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SignError {
    /// A field other than the last contains a newline, so the `\n`-joined form would be ambiguous.
    #[error("field {index} contains a newline; refusing an ambiguous canonical form")]
    AmbiguousField {
        /// Position of the offending field in the canonical form (the domain counts as field 0).
        index: usize,
    },
    /// The signature is not 128 hex digits.
    #[error("signature must be 128 hex digits")]
    Malformed,
    /// `verify_strict` rejected the signature.
    #[error("signature does not verify")]
    Invalid,
}

/// Why a body could not be decoded into a wire type.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WireError {
    /// The body is larger than [`crate::limits::BODY_BYTES_MAX`].
    #[error("body exceeds {max} bytes")]
    TooLarge {
        /// The limit.
        max: usize,
    },
    /// The body is not JSON, or a field has the wrong type; the text names the field when serde can.
    #[error("{0}")]
    Invalid(String),
}

/// A refusal of an inbound peer request: the status and the JSON `error` text the peer receives.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The body is not valid JSON of the expected shape (wrong type, not an object, bad UTF-8).
    #[error("Invalid JSON body: {0}")]
    BadJson(String),
    /// Required fields are missing or empty.
    #[error("Missing required fields: {0}")]
    MissingFields(String),
    /// A field breaks a validation rule (length, URL scheme, format).
    #[error("{0}")]
    Invalid(String),
    /// Content is longer than [`crate::limits::CONTENT_CHARS_MAX`] characters.
    #[error("Content exceeds {0} characters")]
    ContentTooLong(usize),
    /// The body is larger than the runtime's cap.
    #[error("Body exceeds {0} bytes")]
    BodyTooLarge(usize),
    /// A signature is missing, malformed, or does not verify, or a key does not match the id.
    #[error("{0}")]
    Unauthorized(String),
    /// The signed timestamp is outside the freshness window.
    #[error("Message timestamp outside the {0} s window — possible replay")]
    Stale(u64),
    /// This id was already accepted inside the replay window.
    #[error("Duplicate message — already received")]
    Duplicate,
    /// A request that needs an existing connection or record found none.
    #[error("{0}")]
    NotFound(String),
    /// A rate limit or a capacity limit refused the request.
    #[error("{0}")]
    Limited(String),
    /// The node is inactive (`set_status`), a bounded cache is full of live entries, or the runtime
    /// gave no OS randomness for what needs it (an AntiMatter commitment).
    #[error("{0}")]
    Unavailable(String),
    /// A pool purchase without a verified payment (SPEC §22.3).
    #[error("{0}")]
    PaymentRequired(String),
    /// A pool purchase with a transaction that already paid for one.
    #[error("{0}")]
    Conflict(String),
    /// A pool's upstream gave no usable answer.
    #[error("{0}")]
    BadGateway(String),
    /// No such endpoint.
    #[error("Not Found")]
    NoRoute,
    /// The endpoint exists but not for this method.
    #[error("Method Not Allowed")]
    BadMethod,
}

impl Refusal {
    /// The HTTP status this refusal is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::BadJson(_) | Refusal::MissingFields(_) | Refusal::Invalid(_) => 400,
            Refusal::Unauthorized(_) | Refusal::Stale(_) => 403,
            Refusal::NotFound(_) | Refusal::NoRoute => 404,
            Refusal::BadMethod => 405,
            Refusal::Duplicate => 409,
            Refusal::ContentTooLong(_) | Refusal::BodyTooLarge(_) => 413,
            Refusal::Limited(_) => 429,
            Refusal::Unavailable(_) => 503,
            Refusal::PaymentRequired(_) => 402,
            Refusal::Conflict(_) => 409,
            Refusal::BadGateway(_) => 502,
        }
    }
}

impl From<WireError> for Refusal {
    fn from(e: WireError) -> Self {
        match e {
            WireError::TooLarge { max } => Refusal::BodyTooLarge(max),
            WireError::Invalid(text) => Refusal::BadJson(text),
        }
    }
}

/// Why the inbox has no room for a message (answered `429` with this text).
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum InboxFull {
    /// The room for messages from connections holds [`crate::limits::INBOX_MAX`] already.
    #[error("Message queue full")]
    Connections,
    /// The room for messages from agents that are not connections holds
    /// [`crate::limits::INBOX_STRANGERS_MAX`] already.
    #[error("Message queue full for agents not connected")]
    Strangers,
    /// This agent, not a connection, has [`crate::limits::INBOX_PER_STRANGER_MAX`] messages waiting.
    #[error("Message queue full for this sender (not a connection)")]
    Stranger,
}

impl From<InboxFull> for Refusal {
    fn from(e: InboxFull) -> Self {
        Refusal::Limited(e.to_string())
    }
}

/// Why a local command (a tool call) failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// An argument is missing, malformed or out of range; the text says which and why.
    #[error("{0}")]
    InvalidArgument(String),
    /// The named connection, request, message or agent does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A limit refused the command (connections, waiters, in-flight calls).
    #[error("{0}")]
    Limited(String),
    /// The peer answered with a refusal or could not be reached.
    #[error("{0}")]
    Peer(String),
}
