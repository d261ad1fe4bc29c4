//! What the node persists: one table per kind of record, values encoded with postcard.
//!
//! The node emits [`Change`]s in [`crate::io::Output::Persist`] batches; a batch is one atomic
//! commit. [`crate::Node::restore`] rebuilds a node from every record read back. Records carry wall
//! times, never monotonic ones, because monotonic time does not survive a restart.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::identity::AgentId;
use crate::limits::RateLimit;

/// The tables.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Table {
    /// The single `self` record: name, bio, status, creation time.
    Profile,
    /// Connections by agent id.
    Connections,
    /// Pending incoming connection requests by request id.
    PendingIn,
    /// Our outbound connection requests awaiting an answer, by target base URL.
    PendingOut,
    /// Inbox by message id.
    Inbox,
    /// Sent messages by message id.
    Sent,
    /// Impressions by agent id.
    Impressions,
    /// Replay cache: message id → expiry (wall µs).
    Replay,
    /// Shards by `<author>/<shard_id>`.
    Shards,
    /// Conversation log by zero-padded sequence number.
    Conversations,
    /// Webhook updates to sent messages, one row each, by [`child_key`] (message id, index).
    SentUpdates,
    /// Replies to sent messages, one row each, by [`child_key`] (message id, index).
    SentResponses,
    /// Acceptances we sent that the peer has not confirmed yet: agent id → attempts sent (`u32`).
    Acceptances,
    /// The proof behind each connection's URL ([`UrlProof`]) by agent id; under our own id, the URL
    /// we last announced.
    UrlProofs,
    /// AntiMatter's ledger: `started/<tx>`, `flow/<signal_id>`, `accrued/<asset>/<wallet>`.
    AntiMatter,
    /// Pools: `pool/<pool_id>`, `token/<token_id>`, `paid/<tx_signature>` (SPEC §22).
    Pools,
}

impl Table {
    /// Every table, for drivers that create them up front.
    pub const ALL: [Table; 16] = [
        Table::Profile,
        Table::Connections,
        Table::PendingIn,
        Table::PendingOut,
        Table::Inbox,
        Table::Sent,
        Table::Impressions,
        Table::Replay,
        Table::Shards,
        Table::Conversations,
        Table::SentUpdates,
        Table::SentResponses,
        Table::Acceptances,
        Table::UrlProofs,
        Table::AntiMatter,
        Table::Pools,
    ];

    /// A stable name for the table (used as the redb table name).
    pub fn name(self) -> &'static str {
        match self {
            Table::Profile => "profile",
            Table::Connections => "connections",
            Table::PendingIn => "pending_in",
            Table::PendingOut => "pending_out",
            Table::Inbox => "inbox",
            Table::Sent => "sent",
            Table::Impressions => "impressions",
            Table::Replay => "replay",
            Table::Shards => "shards",
            Table::Conversations => "conversations",
            Table::SentUpdates => "sent_updates",
            Table::SentResponses => "sent_responses",
            Table::Acceptances => "acceptances",
            Table::UrlProofs => "url_proofs",
            Table::AntiMatter => "antimatter",
            Table::Pools => "pools",
        }
    }
}

/// One write: `value: None` deletes the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Table.
    pub table: Table,
    /// Key.
    pub key: String,
    /// postcard bytes, or `None` to delete.
    pub value: Option<Vec<u8>>,
}

impl Change {
    /// A put of a record (its schema version byte, then postcard).
    pub fn put<T: Record>(table: Table, key: &str, value: &T) -> Self {
        Self { table, key: key.to_owned(), value: Some(encode(value)) }
    }

    /// A delete.
    pub fn delete(table: Table, key: &str) -> Self {
        Self { table, key: key.to_owned(), value: None }
    }
}

/// A kind of record the node stores.
///
/// Every stored value is one byte of schema version followed by the record in postcard. postcard is
/// not self-describing, so a field added to a record makes bytes written before unreadable: each
/// change of layout bumps [`Record::VERSION`] and teaches [`Record::upgrade`] the old layout, and a
/// node restored from an older build's state loses nothing.
pub trait Record: Serialize + DeserializeOwned {
    /// The layout this build writes.
    const VERSION: u8 = 1;

    /// Reads `body` written under an older `version`. Types that never changed layout know none.
    fn upgrade(version: u8, body: &[u8]) -> Result<Self, RecordError> {
        let _ = body;
        Err(RecordError::NoUpgrade { version })
    }
}

/// Why a stored record could not be read. Such a record is skipped at restore and left on disk
/// untouched, so the build that wrote it can still read it.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The value is empty: not even a version byte.
    #[error("empty record")]
    Empty,
    /// Written by a newer build than this one.
    #[error("record version {version} is newer than this build's {known}")]
    Newer {
        /// The version found.
        version: u8,
        /// The newest this build knows.
        known: u8,
    },
    /// An older version this build has no upgrade for.
    #[error("record version {version} has no upgrade")]
    NoUpgrade {
        /// The version found.
        version: u8,
    },
    /// The bytes do not decode as their version's layout.
    #[error("record does not decode: {0}")]
    Corrupt(#[from] postcard::Error),
}

/// Encodes a record for storage: version byte, then postcard.
pub fn encode<T: Record>(value: &T) -> Vec<u8> {
    // Sized first, then written into one exact allocation: a Vec grown by doubling reallocated
    // several times per record and kept up to twice the bytes (drivers may hold values long).
    let size = postcard::experimental::serialized_size(value).expect("records always serialise");
    let mut out = Vec::with_capacity(1 + size);
    out.push(T::VERSION);
    postcard::to_extend(value, out).expect("records always serialise")
}

/// Decodes a record read back from storage, upgrading an older layout.
pub fn decode<T: Record>(bytes: &[u8]) -> Result<T, RecordError> {
    let (&version, body) = bytes.split_first().ok_or(RecordError::Empty)?;
    match version.cmp(&T::VERSION) {
        std::cmp::Ordering::Equal => Ok(postcard::from_bytes(body)?),
        std::cmp::Ordering::Less => T::upgrade(version, body),
        std::cmp::Ordering::Greater => Err(RecordError::Newer { version, known: T::VERSION }),
    }
}

/// Replay cache rows: the expiry (wall µs).
impl Record for i64 {}
/// Acceptance rows: attempts sent.
impl Record for u32 {}
impl Record for Profile {}
impl Record for Connection {}
impl Record for PendingIn {
    /// 2: `peer_trust.asked_peers` added.
    const VERSION: u8 = 2;

    fn upgrade(version: u8, body: &[u8]) -> Result<Self, RecordError> {
        match version {
            1 => Ok(postcard::from_bytes::<PendingInV1>(body)?.into()),
            _ => Err(RecordError::NoUpgrade { version }),
        }
    }
}
impl Record for PendingOut {}
impl Record for InboxMessage {
    /// 2: `verification` added (a 0.5.3-form envelope from a non-connection is no longer verified).
    const VERSION: u8 = 2;

    fn upgrade(version: u8, body: &[u8]) -> Result<Self, RecordError> {
        match version {
            1 => Ok(postcard::from_bytes::<InboxMessageV1>(body)?.into()),
            _ => Err(RecordError::NoUpgrade { version }),
        }
    }
}
impl Record for SentMessage {
    /// 2: `responses` and `updates` moved to rows of their own ([`Table::SentResponses`],
    /// [`Table::SentUpdates`]), so an update writes one small row instead of the whole, growing
    /// record (a broadcast to 50 peers rewrote it 50 times). 3: `relayed` added.
    const VERSION: u8 = 3;

    fn upgrade(version: u8, body: &[u8]) -> Result<Self, RecordError> {
        match version {
            1 => Ok(postcard::from_bytes::<SentMessageV1>(body)?.into()),
            2 => Ok(postcard::from_bytes::<SentMessageV2>(body)?.into()),
            _ => Err(RecordError::NoUpgrade { version }),
        }
    }
}
impl Record for UpdateRecord {}
impl Record for ResponseRecord {}
impl Record for Impression {
    /// 2: `first_hand` added.
    const VERSION: u8 = 2;

    fn upgrade(version: u8, body: &[u8]) -> Result<Self, RecordError> {
        match version {
            // Version 1 told peers every impression, so each keeps being told.
            1 => {
                let v1: ImpressionV1 = postcard::from_bytes(body)?;
                Ok(Impression {
                    score: v1.score,
                    note: v1.note,
                    updated_at: v1.updated_at,
                    negative_since_us: v1.negative_since_us,
                    first_hand: true,
                })
            }
            _ => Err(RecordError::NoUpgrade { version }),
        }
    }
}
impl Record for Shard {}
impl Record for UrlProof {}
impl Record for ConversationEntry {}

/// What justified a peer's current URL: its own signed `peer_update` (served to peers that look it
/// up, so they can check it themselves), or nothing better than agreement (an unsigned adoption).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UrlProof {
    /// The URL (a base URL).
    pub url: String,
    /// The signed timestamp, as signed (ISO).
    pub timestamp: String,
    /// The same, parsed (wall µs): a newer proof replaces an older one, never the reverse.
    pub stamp_us: i64,
    /// How the URL is proven.
    pub form: ProofForm,
}

/// How a [`UrlProof`] proves its URL.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ProofForm {
    /// Our signed form of `peer_update` (also covers bio and name).
    V2 {
        /// `dm_signature_hex`.
        signature: String,
        /// The bio signed with it.
        bio: String,
        /// The name signed with it.
        display_name: String,
    },
    /// 0.5.3's form: `peer_update` over agent id, URL and timestamp.
    Legacy {
        /// `signature`.
        signature: String,
    },
    /// Adopted from unsigned lookup answers that agreed and whose card proved the key; never served
    /// as proof, and replaced by the first signed update.
    Unsigned,
}

impl UrlProof {
    /// Whether the peer itself signed this URL.
    pub fn signed(&self) -> bool {
        !matches!(self.form, ProofForm::Unsigned)
    }
}

/// The node's own profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Display name.
    pub display_name: String,
    /// Bio.
    pub bio: String,
    /// When this identity's state was created (ISO).
    pub created_at: String,
    /// Inactive until this wall time (µs), if set.
    pub inactive_until_us: Option<i64>,
    /// Global rate limit override.
    pub rate_global: RateLimit,
}

/// A connection to a peer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    /// The peer (its key).
    pub agent_id: AgentId,
    /// Where to reach it.
    pub url: String,
    /// Its name.
    pub display_name: String,
    /// Its bio.
    pub bio: String,
    /// When the connection was made (ISO).
    pub connected_at: String,
    /// Messages we delivered to it.
    pub messages_sent: u64,
    /// Messages it delivered to us.
    pub messages_received: u64,
    /// Last exchange (ISO).
    pub last_activity: String,
    /// The peer proved it speaks our signed form; from now on we require it (no downgrade).
    pub speaks_v2: bool,
    /// The peer proved possession of its key (challenge or signed request).
    pub identity_verified: bool,
    /// Per-peer rate limit.
    pub rate_limit: RateLimit,
    /// Its wallets.
    pub wallets: BTreeMap<String, String>,
    /// Its state creation time, as it claims.
    pub peer_created_at: Option<String>,
    /// Its URL may name a private or loopback address: the agent chose it, or the peer's requests come
    /// from a local address. Otherwise the runtime refuses private addresses for it (no SSRF).
    pub local: bool,
}

/// A connection request waiting for the agent's decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingIn {
    /// `req-<8 hex>`.
    pub request_id: String,
    /// Who asks.
    pub agent_id: AgentId,
    /// Their URL.
    pub url: String,
    /// Their name.
    pub display_name: String,
    /// Their bio.
    pub bio: String,
    /// When (ISO).
    pub requested_at: String,
    /// When (wall µs), for expiry.
    pub requested_us: i64,
    /// Challenge id.
    pub challenge_id: String,
    /// Challenge bytes, hex.
    pub challenge_hex: String,
    /// When the challenge was issued (wall µs); it may be answered for [`crate::limits::CHALLENGE_TTL_S`].
    pub challenge_us: i64,
    /// Key possession proven (signed request or answered challenge).
    pub identity_verified: bool,
    /// The request carried our signed form.
    pub speaks_v2: bool,
    /// Their wallets.
    pub wallets: BTreeMap<String, String>,
    /// Their creation time.
    pub created_at: Option<String>,
    /// The request came from a local address.
    pub source_local: bool,
    /// What our peers said about the requester (filled in as their answers arrive).
    pub peer_trust: Option<PeerTrust>,
}

/// The combined answer of our peers to "what is your impression of this requester?".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct PeerTrust {
    /// Peers asked.
    pub asked: u32,
    /// Peers that answered (with or without an opinion) or failed.
    pub finished: u32,
    /// Each opinion: (peer, its score of the requester, the weight we gave it).
    pub opinions: Vec<(String, f64, f64)>,
    /// Weighted mean of the opinions, when any opinion had weight.
    pub score: Option<f64>,
    /// Sum of the weights: how much the opinions count.
    pub weight: f64,
    /// Every peer asked so far, over all rounds (a round asks peers not asked before).
    pub asked_peers: Vec<String>,
}

/// [`PeerTrust`] as version 1 of [`PendingIn`] stored it: no `asked_peers`.
#[derive(Deserialize)]
struct PeerTrustV1 {
    asked: u32,
    finished: u32,
    opinions: Vec<(String, f64, f64)>,
    score: Option<f64>,
    weight: f64,
}

/// [`PendingIn`] version 1.
#[derive(Deserialize)]
struct PendingInV1 {
    request_id: String,
    agent_id: AgentId,
    url: String,
    display_name: String,
    bio: String,
    requested_at: String,
    requested_us: i64,
    challenge_id: String,
    challenge_hex: String,
    challenge_us: i64,
    identity_verified: bool,
    speaks_v2: bool,
    wallets: BTreeMap<String, String>,
    created_at: Option<String>,
    source_local: bool,
    peer_trust: Option<PeerTrustV1>,
}

impl From<PendingInV1> for PendingIn {
    fn from(v1: PendingInV1) -> Self {
        // Peers that answered with an opinion are known to have been asked; the others may be asked
        // again, which costs a query and nothing else.
        let peer_trust = v1.peer_trust.map(|t| PeerTrust {
            asked_peers: t.opinions.iter().map(|o| o.0.clone()).collect(),
            asked: t.asked,
            finished: t.finished,
            opinions: t.opinions,
            score: t.score,
            weight: t.weight,
        });
        PendingIn {
            request_id: v1.request_id,
            agent_id: v1.agent_id,
            url: v1.url,
            display_name: v1.display_name,
            bio: v1.bio,
            requested_at: v1.requested_at,
            requested_us: v1.requested_us,
            challenge_id: v1.challenge_id,
            challenge_hex: v1.challenge_hex,
            challenge_us: v1.challenge_us,
            identity_verified: v1.identity_verified,
            speaks_v2: v1.speaks_v2,
            wallets: v1.wallets,
            created_at: v1.created_at,
            source_local: v1.source_local,
            peer_trust,
        }
    }
}

impl PeerTrust {
    /// Every peer asked has answered or failed.
    pub fn complete(&self) -> bool {
        self.finished >= self.asked
    }
}

/// An outbound connection request waiting for the target's acceptance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingOut {
    /// The target's base URL.
    pub target_url: String,
    /// The id the target told us it has; the acceptance must come from it.
    pub agent_id: Option<AgentId>,
    /// The target's request id.
    pub request_id: Option<String>,
    /// The target signed its answer in our form, so its acceptance must be signed too.
    pub speaks_v2: bool,
    /// When (wall µs), for expiry.
    pub created_us: i64,
}

/// A message in the inbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InboxMessage {
    /// Id.
    pub message_id: String,
    /// Last hop.
    pub from_agent_id: String,
    /// Text.
    pub content: String,
    /// When we accepted it (ISO).
    pub received_at: String,
    /// Its signature binds it to its author *and* to us (see [`Verification`]); false for a 0.5.3-form
    /// envelope that anyone it reached may have re-sent to us.
    pub verified: bool,
    /// What its signature established.
    pub verification: Verification,
    /// Hops left.
    pub hops_remaining: u32,
    /// The sent message it answers.
    pub in_reply_to: Option<String>,
    /// The sender's webhook.
    pub webhook: String,
    /// Metadata as canonical JSON.
    pub metadata_json: String,
    /// The sender's signed timestamp.
    pub timestamp: String,
    /// Whether the sender was a connection.
    pub from_connection: bool,
    /// Whether the request came from a local address (its webhook may then be local too).
    pub from_local: bool,
    /// Arrival order.
    pub seq: u64,
}

/// What an accepted message's signature established. Every accepted message is signed by the agent
/// it names; the difference is what else the signature covers.
// Postcard stores the variant's index, so the kebab-case names (what tool results show) do not
// change the stored bytes.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verification {
    /// Our form: signed for us, over every field (recipient, webhook, hops, metadata, reply link).
    SignedForUs,
    /// 0.5.3's form from an author that is a connection of ours (and so speaks only 0.5.3: a v2 peer
    /// is refused this form). It covers author, id, time and content, never the recipient; 0.5.3
    /// sends the same envelope to every target, so nothing more can be had from such a peer.
    LegacyFromConnection,
    /// 0.5.3's form from an author that is not a connection: the author wrote the content, but any
    /// agent it reached within the freshness window may have re-sent it to us with its own webhook
    /// and metadata. Shown unverified.
    LegacyRelayable,
}

impl Verification {
    /// The word shown to the agent.
    pub fn as_str(self) -> &'static str {
        match self {
            Verification::SignedForUs => "signed-for-us",
            Verification::LegacyFromConnection => "legacy-from-connection",
            Verification::LegacyRelayable => "legacy-relayable",
        }
    }

    /// Whether the message is shown as verified from its author.
    pub fn verified(self) -> bool {
        self != Verification::LegacyRelayable
    }
}

/// [`InboxMessage`] as version 1 stored it: no `verification` (and `verified` always true).
#[derive(Deserialize)]
struct InboxMessageV1 {
    message_id: String,
    from_agent_id: String,
    content: String,
    received_at: String,
    _verified: bool,
    hops_remaining: u32,
    in_reply_to: Option<String>,
    webhook: String,
    metadata_json: String,
    timestamp: String,
    from_connection: bool,
    from_local: bool,
    seq: u64,
}

impl From<InboxMessageV1> for InboxMessage {
    fn from(v1: InboxMessageV1) -> Self {
        // Version 1 did not record which form was verified. A message from a connection was signed
        // by it in one of the forms that count as verified; one from anyone else may have been a
        // re-sent 0.5.3 envelope, so it is no longer shown as verified.
        let verification =
            if v1.from_connection { Verification::LegacyFromConnection } else { Verification::LegacyRelayable };
        InboxMessage {
            message_id: v1.message_id,
            from_agent_id: v1.from_agent_id,
            content: v1.content,
            received_at: v1.received_at,
            verified: verification.verified(),
            verification,
            hops_remaining: v1.hops_remaining,
            in_reply_to: v1.in_reply_to,
            webhook: v1.webhook,
            metadata_json: v1.metadata_json,
            timestamp: v1.timestamp,
            from_connection: v1.from_connection,
            from_local: v1.from_local,
            seq: v1.seq,
        }
    }
}

/// Delivery state of a sent message.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SentStatus {
    /// Waiting for replies.
    Active,
    /// At least one reply arrived.
    Responded,
    /// The agent expired it (forwarders stop).
    Expired,
}

impl SentStatus {
    /// The wire word.
    pub fn as_str(self) -> &'static str {
        match self {
            SentStatus::Active => "active",
            SentStatus::Responded => "responded",
            SentStatus::Expired => "expired",
        }
    }
}

/// One reply to a sent message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResponseRecord {
    /// Who replied.
    pub agent_id: String,
    /// The reply text.
    pub content: String,
    /// When (ISO).
    pub received_at: String,
    /// The reply's own message id (absent for webhook responses).
    pub message_id: Option<String>,
}

/// One webhook update to a sent message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpdateRecord {
    /// `received`, `forwarded`, ... (named `type` in tool results; postcard stores no field names).
    #[serde(rename = "type")]
    pub kind: String,
    /// Reporter.
    pub agent_id: String,
    /// Forward target.
    pub target_agent_id: Option<String>,
    /// Note.
    pub note: Option<String>,
    /// When (ISO).
    pub timestamp: String,
    /// Signed by its agent in our form (0.5.3 updates are not signed).
    pub verified: bool,
}

/// A message we sent (or forwarded).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SentMessage {
    /// Id.
    pub message_id: String,
    /// Text.
    pub content: String,
    /// `direct`, `broadcast` or `forward`.
    pub kind: String,
    /// When (ISO).
    pub created_at: String,
    /// Peers that acknowledged it.
    pub routed_to: Vec<String>,
    /// Peers that did not, with why.
    pub failed: Vec<(String, String)>,
    /// Delivery state.
    pub status: SentStatus,
    /// Hop budget it left with.
    pub initial_hops: u32,
    /// The message it answers.
    pub in_reply_to: Option<String>,
    /// Replies (stored as [`Table::SentResponses`] rows, not in this record).
    #[serde(skip)]
    pub responses: Vec<ResponseRecord>,
    /// Webhook updates (stored as [`Table::SentUpdates`] rows, not in this record).
    #[serde(skip)]
    pub updates: Vec<UpdateRecord>,
    /// Order of sending.
    pub seq: u64,
    /// Next free row index in each child table (not stored: counted from the rows at restore).
    #[serde(skip)]
    pub rows: ChildRows,
    /// Peers it went to through an anchor's relay: buffered there, not acknowledged by them.
    pub relayed: Vec<String>,
}

/// Next free [`child_key`] index of a sent message's updates and replies. It counts every row on
/// disk, readable or not, so a new row never overwrites one this build skipped at restore.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChildRows {
    /// In [`Table::SentUpdates`].
    pub updates: usize,
    /// In [`Table::SentResponses`].
    pub responses: usize,
}

/// [`SentMessage`] as version 1 stored it: replies and updates inside the record.
#[derive(Deserialize)]
struct SentMessageV1 {
    message_id: String,
    content: String,
    kind: String,
    created_at: String,
    routed_to: Vec<String>,
    failed: Vec<(String, String)>,
    status: SentStatus,
    initial_hops: u32,
    in_reply_to: Option<String>,
    responses: Vec<ResponseRecord>,
    updates: Vec<UpdateRecord>,
    seq: u64,
}

impl From<SentMessageV1> for SentMessage {
    fn from(v1: SentMessageV1) -> Self {
        let SentMessageV1 {
            message_id,
            content,
            kind,
            created_at,
            routed_to,
            failed,
            status,
            initial_hops,
            in_reply_to,
            responses,
            updates,
            seq,
        } = v1;
        let rows = ChildRows { updates: updates.len(), responses: responses.len() };
        Self {
            message_id,
            content,
            kind,
            created_at,
            routed_to,
            failed,
            status,
            initial_hops,
            in_reply_to,
            responses,
            updates,
            seq,
            rows,
            relayed: Vec::new(),
        }
    }
}

/// [`SentMessage`] as version 2 stored it (before `relayed`).
#[derive(Deserialize)]
struct SentMessageV2 {
    message_id: String,
    content: String,
    kind: String,
    created_at: String,
    routed_to: Vec<String>,
    failed: Vec<(String, String)>,
    status: SentStatus,
    initial_hops: u32,
    in_reply_to: Option<String>,
    seq: u64,
}

impl From<SentMessageV2> for SentMessage {
    fn from(v2: SentMessageV2) -> Self {
        let SentMessageV2 {
            message_id,
            content,
            kind,
            created_at,
            routed_to,
            failed,
            status,
            initial_hops,
            in_reply_to,
            seq,
        } = v2;
        Self {
            message_id,
            content,
            kind,
            created_at,
            routed_to,
            failed,
            status,
            initial_hops,
            in_reply_to,
            responses: Vec::new(),
            updates: Vec::new(),
            seq,
            rows: ChildRows::default(),
            relayed: Vec::new(),
        }
    }
}

/// Key of the `index`-th row belonging to sent message `message_id` ([`Table::SentUpdates`],
/// [`Table::SentResponses`]). The index is last and fixed-width, so a message's rows sort in order.
pub fn child_key(message_id: &str, index: usize) -> String {
    format!("{message_id}#{index:03}")
}

/// The message id and index of a [`child_key`]; `None` for a key no build writes.
pub fn parse_child_key(key: &str) -> Option<(&str, usize)> {
    let (message_id, index) = key.rsplit_once('#')?;
    if index.len() != 3 || !index.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((message_id, index.parse().ok()?))
}

/// Our impression of an agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Impression {
    /// -1.0 ..= 1.0.
    pub score: f64,
    /// Free text.
    pub note: String,
    /// When set (ISO).
    pub updated_at: String,
    /// Since when (wall µs) the score has been negative, if it is.
    pub negative_since_us: Option<i64>,
    /// Formed at least partly from our own dealings with the agent (set by our agent, or moved by
    /// deliveries, replies and its own signed answers), not only from what peers reported. Only such
    /// impressions are told to peers who ask: passing hearsay back as an opinion would echo and
    /// dilute the real ones.
    pub first_hand: bool,
}

/// [`Impression`] as version 1 stored it: no `first_hand`.
#[derive(Deserialize)]
struct ImpressionV1 {
    score: f64,
    note: String,
    updated_at: String,
    negative_since_us: Option<i64>,
}

/// A knowledge shard, ours or cached from its author.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Shard {
    /// `shard-<12 hex>`.
    pub shard_id: String,
    /// Its author.
    pub author: String,
    /// Body.
    pub content: String,
    /// Tags, in the author's order.
    pub tags: Vec<String>,
    /// Least trust a holder must have in the author, 0..1.
    pub trust_threshold: f64,
    /// Summary.
    pub summary: Option<String>,
    /// ISO.
    pub created_at: String,
    /// ISO.
    pub updated_at: String,
    /// `updated_at` in wall µs (orders versions).
    pub updated_us: i64,
    /// Deleted by its author (a tombstone, kept so an older copy cannot come back).
    pub deleted: bool,
    /// 0.5.3's shard-domain signature, when the content allows one (no newline).
    pub signature_hex: Option<String>,
    /// Signed in our form by its author (false: a 0.5.3 shard, whose summary and threshold are not
    /// signed, kept immutable as first received).
    pub signed_v2: bool,
    /// When we received this version, or the author last re-sent it (wall µs).
    pub received_us: i64,
    /// Our own shards: every peer it was sent to (updates and deletions go to all of them).
    pub sent_to: Vec<String>,
}

/// One logged conversation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConversationEntry {
    /// Order.
    pub seq: u64,
    /// The message.
    pub message_id: String,
    /// Text (capped).
    pub content: String,
    /// The other side: sender when inbound, first recipient when outbound.
    pub peer: String,
    /// All recipients when outbound.
    pub to_agent_ids: Vec<String>,
    /// When (wall µs).
    pub at_us: i64,
    /// `direct`, `broadcast`, `reply` or `forward`.
    pub kind: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// Our trust in the sender at the time (0 for our own messages).
    pub trust_at_time: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record type that changed layout once: version 1 had no `note`.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Grown {
        score: f64,
        note: String,
    }

    #[derive(Serialize, Deserialize)]
    struct GrownV1 {
        score: f64,
    }

    impl Record for Grown {
        const VERSION: u8 = 2;
        fn upgrade(version: u8, body: &[u8]) -> Result<Self, RecordError> {
            match version {
                1 => {
                    let old: GrownV1 = postcard::from_bytes(body)?;
                    Ok(Grown { score: old.score, note: String::new() })
                }
                _ => Err(RecordError::NoUpgrade { version }),
            }
        }
    }

    #[test]
    fn records_carry_their_version_and_round_trip() {
        let bytes = encode(&-7_i64);
        assert_eq!(bytes[0], 1);
        assert_eq!(decode::<i64>(&bytes).unwrap(), -7);
        let g = Grown { score: 0.5, note: "n".into() };
        let bytes = encode(&g);
        assert_eq!(bytes[0], 2);
        assert_eq!(decode::<Grown>(&bytes).unwrap(), g);
    }

    #[test]
    fn an_older_layout_is_upgraded() {
        let mut old = vec![1];
        old.extend(postcard::to_allocvec(&GrownV1 { score: 0.25 }).unwrap());
        assert_eq!(decode::<Grown>(&old).unwrap(), Grown { score: 0.25, note: String::new() });
    }

    /// Version 2 of [`SentMessage`] as it was written (field order is the layout): no `relayed`.
    #[derive(Serialize)]
    struct SentWrittenV2 {
        message_id: &'static str,
        content: &'static str,
        kind: &'static str,
        created_at: &'static str,
        routed_to: Vec<String>,
        failed: Vec<(String, String)>,
        status: SentStatus,
        initial_hops: u32,
        in_reply_to: Option<String>,
        seq: u64,
    }

    #[test]
    fn a_version_2_sent_message_reads_back_with_nothing_relayed() {
        let v2 = SentWrittenV2 {
            message_id: "m",
            content: "c",
            kind: "direct",
            created_at: "t",
            routed_to: vec!["p".into()],
            failed: vec![("q".into(), "down".into())],
            status: SentStatus::Active,
            initial_hops: 3,
            in_reply_to: None,
            seq: 9,
        };
        let mut bytes = vec![2];
        bytes.extend(postcard::to_allocvec(&v2).unwrap());
        let got = decode::<SentMessage>(&bytes).unwrap();
        assert_eq!((got.message_id.as_str(), got.seq, got.routed_to.len()), ("m", 9, 1));
        assert!(got.relayed.is_empty());
        let mut now = got.clone();
        now.relayed.push("r".into());
        assert_eq!(decode::<SentMessage>(&encode(&now)).unwrap().relayed, vec!["r".to_owned()]);
    }

    /// Version 1 of [`InboxMessage`] as it was written (field order is the layout).
    #[derive(Serialize)]
    struct InboxWritten {
        message_id: &'static str,
        from_agent_id: &'static str,
        content: &'static str,
        received_at: &'static str,
        verified: bool,
        hops_remaining: u32,
        in_reply_to: Option<String>,
        webhook: &'static str,
        metadata_json: &'static str,
        timestamp: &'static str,
        from_connection: bool,
        from_local: bool,
        seq: u64,
    }

    #[test]
    fn a_version_1_inbox_message_is_verified_only_from_a_connection() {
        for (from_connection, verification) in
            [(true, Verification::LegacyFromConnection), (false, Verification::LegacyRelayable)]
        {
            let v1 = InboxWritten {
                message_id: "m",
                from_agent_id: "a",
                content: "c",
                received_at: "r",
                verified: true,
                hops_remaining: 3,
                in_reply_to: Some("o".into()),
                webhook: "w",
                metadata_json: "{}",
                timestamp: "t",
                from_connection,
                from_local: true,
                seq: 9,
            };
            let mut old = vec![1];
            old.extend(postcard::to_allocvec(&v1).unwrap());
            let m = decode::<InboxMessage>(&old).unwrap();
            assert_eq!((m.verification, m.verified), (verification, verification.verified()));
            assert_eq!((m.hops_remaining, m.in_reply_to.as_deref(), m.seq, m.from_local), (3, Some("o"), 9, true));
        }
    }

    #[test]
    fn unreadable_records_say_why() {
        assert!(matches!(decode::<i64>(&[]), Err(RecordError::Empty)));
        assert!(matches!(decode::<i64>(&[2, 0]), Err(RecordError::Newer { version: 2, known: 1 })));
        assert!(matches!(decode::<i64>(&[0, 0]), Err(RecordError::NoUpgrade { version: 0 })));
        assert!(matches!(decode::<Grown>(&[2, 0xff]), Err(RecordError::Corrupt(_))));
    }
}
