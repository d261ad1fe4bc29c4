//! What a local command answers: [`CommandOutput`], one variant per kind of command, each a typed
//! struct. Their serde form is the JSON every front end shows (the `darkmatter-node` control lines,
//! the MCP tools before presentation); field names and shapes are those of 0.5.3's tools.
//!
//! Only data lives here. Advice to a model, previews and tool names belong to the MCP crate, which
//! adds them to these shapes; the status report carries the counts that advice is built from.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::identity::AgentId;
use crate::store::SentStatus;
use crate::wire::card::NetworkInfo;

/// The result of one [`crate::Command`]. Untagged: each variant serializes as its struct alone.
/// Large results are boxed so that every [`crate::Output`] stays small (outputs are queued on the
/// accept path; command results are not).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum CommandOutput {
    /// `Connect`.
    Connect(Box<ConnectOutput>),
    /// `Accept` and `Reject`.
    Answered(Box<RequestAnswered>),
    /// `Disconnect`.
    Disconnected(Box<Disconnected>),
    /// `ListConnections`.
    Connections(ConnectionList),
    /// `ListPending`.
    Pending(PendingList),
    /// `Send` and `Forward`, once every delivery has answered.
    Delivered(Box<Delivery>),
    /// `ListInbox`.
    Inbox(InboxList),
    /// `GetMessage`.
    Message(Box<InboxMessageView>),
    /// `ListSent`.
    SentList(SentList),
    /// `GetSent`.
    Sent(Box<SentView>),
    /// `ExpireSent`.
    Expired(ExpiredSent),
    /// `WaitForResponse`.
    Wait(WaitResult),
    /// `GetIdentity`.
    Identity(Box<IdentityView>),
    /// `UpdateBio`.
    Bio(BioUpdated),
    /// `Rename`.
    Renamed(Renamed),
    /// `SetStatus`.
    Activity(ActivitySet),
    /// `SetSpawning`.
    Spawning(SpawningSet),
    /// `SetUrl`.
    Url(UrlUpdated),
    /// `SetImpression`.
    ImpressionSet(Box<ImpressionSet>),
    /// `GetImpression`.
    Impression(Box<ImpressionView>),
    /// `SetRateLimit`.
    RateLimit(Box<RateLimitSet>),
    /// `Status`.
    Status(Box<StatusReport>),
    /// `MarkShown`.
    MarkedShown(MarkedShown),
    /// `NetworkInfo`.
    NetworkInfo(Box<NetworkInfo>),
    /// `AntiMatterLog`.
    AntiMatterLog(Box<AntiMatterLogView>),
    /// `ListDiscovered`.
    Discovered(DiscoveredList),
    /// `DiscoverLocal`.
    Scan(ScanReport),
    /// `DiscoverDomain`.
    Domain(Box<DomainReport>),
    /// `CreateShard`, `UpdateShard` and `DeleteShard`.
    ShardSynced(ShardSynced),
    /// `ViewShards`.
    Shards(ShardList),
    /// `GetShard`.
    Shard(Box<ShardView>),
    /// `ContextFeed`.
    Feed(Feed),
    /// `Pool`: the pool's answer, in the JSON shapes of 0.5.3's pool endpoints (which the consumer
    /// commands relay as the owner gave them, with `http_status`).
    Pool(Box<Value>),
}

/// Outputs are moved through the node's queue on every input; a result must not make them large.
const _: () = assert!(std::mem::size_of::<CommandOutput>() <= 96);

impl CommandOutput {
    /// The JSON object a front end shows.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("outputs are plain data with string keys")
    }
}

/// `Connect`: connected at once, or waiting for the target's decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ConnectOutput {
    /// The target accepted automatically.
    Connected {
        /// The peer.
        agent_id: AgentId,
        /// Its name, as it gave it ("" when it gave none).
        display_name: String,
        /// Its note, as it gave it ("" when it gave none).
        message: String,
    },
    /// The target holds the request until its agent decides.
    Pending {
        /// The target.
        agent_id: AgentId,
        /// The target's name for the request.
        request_id: String,
    },
}

/// `Accept` or `Reject` of a pending request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RequestAnswered {
    /// Accepted: a connection exists.
    Connected {
        /// Always true (0.5.3's shape).
        accepted: bool,
        /// The requester.
        agent_id: AgentId,
    },
    /// Rejected.
    Rejected {
        /// Always false (0.5.3's shape).
        accepted: bool,
        /// The requester.
        agent_id: AgentId,
    },
}

/// `Disconnect`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Disconnected {
    /// The connection is gone and the peer was told.
    Disconnected {
        /// The peer.
        disconnected_from: AgentId,
    },
}

/// Our impression as a connection list shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImpressionBrief {
    /// -1..1.
    pub score: f64,
    /// The note.
    pub note: String,
}

/// One connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConnectionView {
    /// The peer.
    pub agent_id: AgentId,
    /// Its name.
    pub display_name: String,
    /// Its URL.
    pub url: String,
    /// Its bio.
    pub bio: String,
    /// When it was made.
    pub connected_at: String,
    /// Messages we sent it.
    pub messages_sent: u64,
    /// Messages it sent us.
    pub messages_received: u64,
    /// Last message either way.
    pub last_activity: String,
    /// Its key is proven.
    pub identity_verified: bool,
    /// It speaks our signed form.
    pub signed_form: bool,
    /// Its URL is proven: from the handshake or an update it signed; false for a URL adopted only
    /// because answerers agreed on it (a 0.5.3 peer that moved), until it signs an update.
    #[serde(default = "yes")]
    pub url_verified: bool,
    /// Its rate limit in the tool encoding (0 default, -1 unlimited, n per minute).
    pub rate_limit: i64,
    /// Our impression of it.
    pub impression: Option<ImpressionBrief>,
    /// Its wallets as its handshake advertised them (chain → address; bounded, SPEC §5.4).
    #[serde(default)]
    pub wallets: std::collections::BTreeMap<String, String>,
}

/// The default of a flag that older encodings lack and that was true for them.
fn yes() -> bool {
    true
}

/// `ListConnections`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConnectionList {
    /// How many.
    pub total: usize,
    /// The connection cap.
    pub max: usize,
    /// Each.
    pub connections: Vec<ConnectionView>,
}

/// How a pending request proved its key.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProvenBy {
    /// Our signed request form.
    #[serde(rename = "signed request")]
    SignedRequest,
    /// 0.5.3's challenge.
    #[serde(rename = "challenge proof (0.5.3)")]
    ChallengeProof,
    /// Not proven yet.
    #[serde(rename = "not yet")]
    NotYet,
}

/// One peer's opinion on a requester.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Opinion {
    /// The peer asked.
    pub agent_id: String,
    /// Its name, when connected.
    pub display_name: Option<String>,
    /// Its score of the requester.
    pub their_score: f64,
    /// Our trust in it now.
    pub your_trust_in_them: f64,
    /// The weight this opinion had in the combined score when it was last weighed: our trust in the
    /// peer, or 0 when we distrust it or it vouched for a crowd (see `vouched_for`).
    pub counted: f64,
    /// Requesters this peer vouched for or warned against (opinions of at least 0.2 either way) in
    /// the vouch window, this one included: above 2 its vouches count for nothing.
    pub vouched_for: u32,
}

/// What our peers think of a requester.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerTrustView {
    /// Peers asked.
    pub asked: u32,
    /// Peers that answered (or failed).
    pub answered: u32,
    /// Every peer asked has answered.
    pub complete: bool,
    /// The combined score, when any opinion came.
    pub score: Option<f64>,
    /// The weight behind it.
    pub weight: f64,
    /// Each opinion.
    pub opinions: Vec<Opinion>,
}

/// One pending incoming request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingView {
    /// Its id.
    pub request_id: String,
    /// The requester.
    pub agent_id: AgentId,
    /// Its name.
    pub display_name: String,
    /// Its URL.
    pub url: String,
    /// Its bio.
    pub bio: String,
    /// When it asked.
    pub requested_at: String,
    /// Its key is proven.
    pub identity_verified: bool,
    /// How.
    pub proven_by: ProvenBy,
    /// Our own score of it, if any.
    pub our_impression: Option<f64>,
    /// Our peers' opinions, once asked.
    pub peer_trust: Option<PeerTrustView>,
    /// When the acceptance policy may decide it, at the earliest (the decision hold); `None` when
    /// the policy is off or does not hold.
    pub policy_decides_from: Option<String>,
}

/// `ListPending`, oldest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingList {
    /// How many.
    pub total: usize,
    /// Each.
    pub requests: Vec<PendingView>,
}

/// A target that did not take a message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// The target.
    pub agent_id: String,
    /// Why.
    pub error: String,
}

/// `Send` or `Forward`: where the message went.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// The message.
    pub message_id: String,
    /// Targets that took it.
    pub routed_to: Vec<String>,
    /// Targets it went to through an anchor's relay (SPEC §20.4): buffered there, sealed for the
    /// target, not acknowledged by it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relayed: Vec<String>,
    /// Targets that did not.
    pub failed: Vec<Failure>,
    /// The hop budget it went out with.
    pub hops_remaining: u32,
}

/// One inbox message in a list (its content in full: previews are the front end's choice).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InboxEntry {
    /// Its id.
    pub message_id: String,
    /// The sender (last hop).
    pub from_agent_id: String,
    /// The sender's name, when connected.
    pub from_display_name: Option<String>,
    /// The text.
    pub content: String,
    /// When it arrived.
    pub received_at: String,
    /// Its signature verified.
    pub verified: bool,
    /// What the signature established (`signed-for-us`, `legacy-from-connection`, `legacy-relayable`).
    pub verification: crate::store::Verification,
    /// Hops left for forwarding.
    pub hops_remaining: u32,
    /// The message it answers.
    pub in_reply_to: Option<String>,
    /// The sender is a connection.
    pub from_connection: bool,
}

/// `ListInbox`, oldest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InboxList {
    /// How many.
    pub total: usize,
    /// Each.
    pub messages: Vec<InboxEntry>,
}

/// `GetMessage`: one inbox message in full.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InboxMessageView {
    /// Its id.
    pub message_id: String,
    /// The sender (last hop).
    pub from_agent_id: String,
    /// The text.
    pub content: String,
    /// When it arrived.
    pub received_at: String,
    /// The sender's stamp.
    pub timestamp: String,
    /// Its signature verified.
    pub verified: bool,
    /// What the signature established.
    pub verification: crate::store::Verification,
    /// Hops left for forwarding.
    pub hops_remaining: u32,
    /// Hops remain.
    pub can_forward: bool,
    /// The message it answers.
    pub in_reply_to: Option<String>,
    /// Its metadata object.
    pub metadata: Value,
    /// The sender's webhook.
    pub webhook: String,
    /// The sender is a connection.
    pub from_connection: bool,
    /// For a payment notice: whether the runtime's wallet verified the payment on-chain (R-G8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_verified: Option<bool>,
    /// For a payment notice not (yet) verified: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_refusal: Option<String>,
    /// Present (true) when this read removed it from the inbox.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub consumed: bool,
}

/// A sent message's state as the tools name it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SentState {
    /// Waiting for replies.
    Active,
    /// At least one reply arrived.
    Responded,
    /// Expired by the agent.
    Expired,
}

impl From<SentStatus> for SentState {
    fn from(s: SentStatus) -> Self {
        match s {
            SentStatus::Active => SentState::Active,
            SentStatus::Responded => SentState::Responded,
            SentStatus::Expired => SentState::Expired,
        }
    }
}

/// A reply to one of our messages, as stored ([`crate::store::ResponseRecord`]; the same fields).
pub type ResponseView = crate::store::ResponseRecord;

/// A webhook update on one of our messages, as stored ([`crate::store::UpdateRecord`]; `kind` is shown
/// as `type`).
pub type UpdateView = crate::store::UpdateRecord;

/// One sent message; `responses` and `updates` only when read on its own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SentView {
    /// Its id.
    pub message_id: String,
    /// `direct`, `broadcast`, `forward`, ...
    pub kind: String,
    /// Its state.
    pub status: SentState,
    /// When it was sent.
    pub created_at: String,
    /// Targets that took it.
    pub routed_to: Vec<String>,
    /// Targets it went to through an anchor's relay (SPEC §20.4): buffered there, sealed for the
    /// target, not acknowledged by it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relayed: Vec<String>,
    /// Targets that did not.
    pub failed: Vec<Failure>,
    /// The hop budget it went out with.
    pub initial_hops: u32,
    /// The message it answers.
    pub in_reply_to: Option<String>,
    /// Replies so far.
    pub response_count: usize,
    /// The text (in full: previews are the front end's choice).
    pub content: String,
    /// The replies (`GetSent` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responses: Option<Vec<ResponseView>>,
    /// The forwarders' updates (`GetSent` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updates: Option<Vec<UpdateView>>,
}

/// `ListSent`, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SentList {
    /// How many.
    pub total: usize,
    /// Each.
    pub messages: Vec<SentView>,
}

/// `ExpireSent`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExpiredSent {
    /// The message.
    pub message_id: String,
    /// Always `expired`.
    pub status: SentState,
}

/// `WaitForResponse`: the replies so far, or none when it timed out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WaitResult {
    /// The message waited on.
    pub message_id: String,
    /// The wait ran out.
    pub timed_out: bool,
    /// Its state, if it still exists.
    pub status: Option<SentState>,
    /// Its replies.
    pub responses: Vec<ResponseView>,
}

/// Whether we answer peers.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activity {
    /// Peers are served.
    Active,
    /// Peers get 503.
    Inactive,
}

/// `GetIdentity`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdentityView {
    /// Our id.
    pub agent_id: AgentId,
    /// Our key (= id).
    pub public_key_hex: AgentId,
    /// Our name.
    pub display_name: String,
    /// Our bio.
    pub bio: String,
    /// Our URL.
    pub url: String,
    /// Active or not.
    pub status: Activity,
    /// When the identity was made.
    pub created_at: String,
    /// With anchors configured: whether peers elsewhere cannot dial our URL (loopback or private),
    /// so that we are reached through the anchors (SPEC §20.2). Absent without anchors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_detected: Option<bool>,
}

/// `UpdateBio`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BioUpdated {
    /// The bio now.
    pub bio: String,
    /// Peers told.
    pub peers_notified: usize,
}

/// `Rename`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Renamed {
    /// The display name now.
    pub display_name: String,
    /// Peers told.
    pub peers_notified: usize,
}

/// `SetSpawning`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpawningSet {
    /// Spawning is on now.
    pub spawning: bool,
    /// Agents still running (switching off does not stop them).
    pub live: usize,
    /// Agents started for messages that arrived while spawning was off.
    pub started: usize,
}

/// `SetStatus`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActivitySet {
    /// Active or not.
    pub status: Activity,
    /// When an inactive spell with a duration ends.
    pub inactive_until: Option<String>,
}

/// `SetUrl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UrlUpdated {
    /// The URL now.
    pub url: String,
    /// Peers told.
    pub peers_notified: usize,
}

/// `SetImpression`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImpressionSet {
    /// The agent.
    pub agent_id: AgentId,
    /// -1..1.
    pub score: f64,
    /// The note.
    pub note: String,
}

/// `GetImpression`: `has_impression` and, when true, the impression.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImpressionView {
    /// The agent asked about.
    pub agent_id: String,
    /// Whether we have one.
    pub has_impression: bool,
    /// The impression, flattened in (absent when none).
    #[serde(flatten)]
    pub impression: Option<ImpressionDetail>,
}

/// An impression in full.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImpressionDetail {
    /// -1..1.
    pub score: f64,
    /// The note.
    pub note: String,
    /// When it last changed.
    pub updated_at: String,
    /// Since when it has been negative.
    pub negative_since: Option<String>,
    /// Set by the agent (not only nudged by events).
    pub first_hand: bool,
}

/// Which limit a rate-limit change applied to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RateScope {
    /// One peer's.
    Peer {
        /// The peer.
        agent_id: AgentId,
    },
    /// The global one.
    Global {
        /// Always `global`.
        scope: String,
    },
}

/// `SetRateLimit`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RateLimitSet {
    /// Whose.
    #[serde(flatten)]
    pub scope: RateScope,
    /// The tool encoding given.
    pub limit: i64,
    /// What it means per minute (`None`: unlimited).
    pub effective_per_minute: Option<u32>,
}

/// One conversation-log entry as the feed and the status report show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConversationView {
    /// The message.
    pub message_id: String,
    /// `direct`, `reply`, `broadcast`, `forward`.
    pub kind: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// The other side.
    pub peer: String,
    /// Its name (its id's first 12 digits when unknown).
    pub peer_name: String,
    /// Recipients.
    pub to_agent_ids: Vec<String>,
    /// When.
    pub at: String,
    /// The text as logged (previews are the front end's choice).
    pub content: String,
    /// Our trust in the sender then.
    pub trust_at_time: f64,
    /// Its rank now.
    pub score: f64,
    /// Its place in the log ([`crate::Command::MarkShown`] takes it).
    pub seq: u64,
}

/// `ContextFeed`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Feed {
    /// Direct messages and replies, best first.
    pub direct: Vec<ConversationView>,
    /// Broadcasts and forwards, best first.
    pub network: Vec<ConversationView>,
}

/// The status report's memory counts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemoryCounts {
    /// Conversation-log entries.
    pub conversations: usize,
    /// Our live shards.
    pub own_shards: usize,
    /// Others' live shards.
    pub peer_shards: usize,
}

/// The status report's connection counts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConnectionCounts {
    /// Connections.
    pub total: usize,
    /// The cap.
    pub max: usize,
}

/// The status report's discovered peers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiscoveredCounts {
    /// How many.
    pub total: usize,
    /// Each.
    pub peers: Vec<DiscoveredPeer>,
}

/// `Status`: the one-glance report. A pure read: what it shows as `new_context` stays new until
/// [`crate::Command::MarkShown`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// Conversation entries not marked shown yet, oldest first.
    pub new_context: Vec<ConversationView>,
    /// Memory counts.
    pub memory: MemoryCounts,
    /// Who we are.
    pub identity: IdentityView,
    /// Connection counts.
    pub connections: ConnectionCounts,
    /// Inbox messages.
    pub inbox: usize,
    /// Pending incoming requests.
    pub pending_requests: usize,
    /// Discovered peers.
    pub discovered: DiscoveredCounts,
    /// Our messages (not forwards) still waiting for replies.
    pub awaiting_replies: Vec<String>,
    /// Live spawned agents; present only when spawning is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spawned_agents: Option<usize>,
    /// AntiMatter at a glance; present only once this node has AntiMatter events or state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub antimatter: Option<AntiMatterStatus>,
}

/// One `antimatter_log` entry as shown (0.5.3's `type` and `timestamp` keys).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AntiMatterEvent {
    /// The event's name (0.5.3's where it has one).
    #[serde(rename = "type")]
    pub kind: String,
    /// The signal, when the event has one ("" otherwise).
    pub signal_id: String,
    /// A short detail: an amount, a wallet, an agent, a reason.
    pub detail: String,
    /// When (ISO).
    pub timestamp: String,
}

/// AntiMatter counts: the kept log's events by name, and what is open now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AntiMatterCounts {
    /// Events of the kept log, by name.
    pub events: std::collections::BTreeMap<String, usize>,
    /// Signals we started that are not resolved yet.
    pub open_signals: usize,
    /// Our payment notices awaiting their payee's started notice.
    pub awaited_payments: usize,
    /// Destinations owed a fee too small to send yet.
    pub owed_destinations: usize,
}

/// The status report's AntiMatter part: the counts and the newest few events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AntiMatterStatus {
    /// The counts.
    #[serde(flatten)]
    pub counts: AntiMatterCounts,
    /// The newest events, oldest first (at most [`crate::limits::ANTIMATTER_STATUS_RECENT_MAX`]).
    pub recent: Vec<AntiMatterEvent>,
}

/// `AntiMatterLog`: the counts and the whole kept log, oldest first (read-only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AntiMatterLogView {
    /// The counts.
    #[serde(flatten)]
    pub counts: AntiMatterCounts,
    /// The newest [`crate::limits::ANTIMATTER_LOG_MAX`] events, oldest first.
    pub antimatter_log: Vec<AntiMatterEvent>,
}

/// `MarkShown`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MarkedShown {
    /// Entries up to this sequence number are no longer new.
    pub shown_through: u64,
}

/// A peer seen on the LAN or by a scan, as results list it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiscoveredPeer {
    /// Its id.
    pub agent_id: String,
    /// Where to connect.
    pub url: String,
    /// Name.
    pub display_name: String,
    /// Bio (first 100 characters).
    pub bio: String,
    /// `lan`, `local` or `domain`.
    pub source: String,
    /// Below its connection limit.
    pub accepting: bool,
    /// Last seen (wall µs).
    pub seen_us: i64,
}

/// `ListDiscovered`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiscoveredList {
    /// Each peer.
    pub discovered: Vec<DiscoveredPeer>,
}

/// `DiscoverLocal`: the peers found and the scanned range (0.5.3's shape).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScanReport {
    /// Always true.
    pub success: bool,
    /// Peers found.
    pub total: usize,
    /// `first-last`.
    pub scanned_ports: String,
    /// Each.
    pub discovered: Vec<DiscoveredPeer>,
}

impl ScanReport {
    /// The report of a scan of `ports` that found `found`.
    pub fn new(found: Vec<DiscoveredPeer>, ports: &[u16]) -> Self {
        let scanned_ports = match (ports.first(), ports.last()) {
            (Some(a), Some(b)) => format!("{a}-{b}"),
            _ => String::new(),
        };
        ScanReport { success: true, total: found.len(), scanned_ports, discovered: found }
    }
}

/// `DiscoverDomain`: the node a domain's card names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DomainReport {
    /// Always true.
    pub found: bool,
    /// Its id.
    pub agent_id: String,
    /// Its URL.
    pub url: String,
    /// Its name.
    pub display_name: String,
    /// Its bio.
    pub bio: String,
    /// Below its connection limit.
    pub accepting_connections: bool,
}

/// `CreateShard`, `UpdateShard`, `DeleteShard`: the version stored and who was sent it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardSynced {
    /// The shard.
    pub shard_id: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// Trust a peer needs to receive it.
    pub trust_threshold: f64,
    /// A tombstone.
    pub deleted: bool,
    /// Peers pushed to now.
    pub sent_to: Vec<String>,
}

/// A shard's body in a list: its summary, or else its content cut to a bound.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ShardBody {
    /// The author's summary.
    Summary {
        /// It.
        summary: String,
    },
    /// The content, cut to its first 500 characters.
    Content {
        /// It.
        content: String,
        /// It was cut.
        truncated: bool,
    },
}

/// One shard in a list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardEntry {
    /// Its id.
    pub shard_id: String,
    /// Its author.
    pub author: String,
    /// Ours.
    pub own: bool,
    /// Tags.
    pub tags: Vec<String>,
    /// Trust a peer needs to receive it.
    pub trust_threshold: f64,
    /// Made.
    pub created_at: String,
    /// Last changed.
    pub updated_at: String,
    /// `darkmatter-rs/2` or `0.5.3`.
    pub signed_form: String,
    /// The author's name, when connected.
    pub author_name: Option<String>,
    /// Summary or content.
    #[serde(flatten)]
    pub body: ShardBody,
}

/// `ViewShards`, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardList {
    /// How many.
    pub count: usize,
    /// Each.
    pub shards: Vec<ShardEntry>,
}

/// `GetShard`: one shard in full.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardView {
    /// Its id.
    pub shard_id: String,
    /// Its author.
    pub author: String,
    /// The content.
    pub content: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Trust a peer needs to receive it.
    pub trust_threshold: f64,
    /// The summary.
    pub summary: Option<String>,
    /// Made.
    pub created_at: String,
    /// Last changed.
    pub updated_at: String,
}
