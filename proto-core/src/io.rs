//! What goes into a [`crate::Node`] and what comes out.

use core::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::error::CommandError;
use crate::identity::AgentId;
use crate::output::CommandOutput;
use crate::store::Change;

/// Names one inbound HTTP request; chosen by the driver, echoed in the [`Reply`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InboundId(pub u64);

/// Names one outbound call; chosen by the node, echoed by the driver in
/// [`crate::Node::handle_response`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OutboundId(pub u64);

/// Names one local command; chosen by the driver, echoed in [`Output::Done`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommandId(pub u64);

/// HTTP method of a peer request.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// POST.
    Post,
    /// Anything else (answered 405).
    Other,
}

/// A peer's HTTP request, as the runtime read it off the socket.
#[derive(Clone, Debug)]
pub struct InboundRequest {
    /// The driver's name for it.
    pub id: InboundId,
    /// Method.
    pub method: Method,
    /// Path without the query string, e.g. `/__darkmatter__/message`.
    pub path: String,
    /// Raw body (the runtime has already refused anything over [`crate::limits::BODY_BYTES_MAX`]).
    pub body: Vec<u8>,
    /// The real source address of the TCP connection, when known. Local auto-accept trusts only this,
    /// never the URL a requester claims.
    pub source: Option<IpAddr>,
}

/// The answer to one of our outbound calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Body (already capped by the runtime).
    pub body: Vec<u8>,
}

/// An outbound HTTP call for the driver to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Echo this in [`crate::Node::handle_response`].
    pub id: OutboundId,
    /// GET or POST.
    pub method: Method,
    /// Full URL.
    pub url: String,
    /// JSON body for POST.
    pub body: Vec<u8>,
    /// Give up after this long, in milliseconds, and report a transport error.
    pub timeout_ms: u64,
    /// The runtime must refuse to connect if the host resolves to a private, loopback or link-local
    /// address (webhooks from non-local peers: no SSRF into the local network).
    pub forbid_private: bool,
    /// A discovery probe of a port that may have nobody behind it: the runtime uses a client with a
    /// short connect timeout, so a scan of closed ports ends fast.
    pub probe: bool,
}

/// Our answer to an inbound request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The request answered.
    pub id: InboundId,
    /// Status code.
    pub status: u16,
    /// JSON body (always an object; 0.5.3 treats any JSON object as delivered).
    pub body: Vec<u8>,
    /// The request authenticated as a connected peer (its signature verified against that peer's
    /// key) and was charged to that peer's budget here. A driver that charged the request to its
    /// network source before parsing may give that charge back: a connection's traffic is bounded
    /// by its own per-peer limits, not by the address it comes from.
    pub peer: bool,
}

/// Who named the URL a lookup adopted (`PeerUrlRecovered`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecoveredVia {
    /// A connection's `peer_lookup` answer.
    Peer,
    /// A configured anchor's directory.
    Anchor,
}

/// Something the local agent should learn about (the MCP server turns these into notifications).
///
/// Its serde form is the one event encoding every front end shares (`darkmatter-node --events`
/// lines, the attach socket, the MCP notifications' `data`): an object tagged by `"event"`, e.g.
/// `{"event": "connected", "agent_id": "..."}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A peer asked to connect and waits for the agent's decision.
    ConnectionRequested {
        /// The pending request.
        request_id: String,
        /// Who asks.
        agent_id: AgentId,
        /// Their name.
        display_name: String,
    },
    /// A connection now exists.
    Connected {
        /// The peer.
        agent_id: AgentId,
    },
    /// A connection was removed, by us or by the peer.
    Disconnected {
        /// The peer.
        agent_id: AgentId,
        /// True when the peer told us.
        by_peer: bool,
    },
    /// A message entered the inbox.
    MessageReceived {
        /// Its id.
        message_id: String,
        /// The sender (last hop).
        from_agent_id: AgentId,
        /// The sent message this answers, when it is a reply.
        in_reply_to: Option<String>,
    },
    /// The acceptance policy decided a pending request from our peers' opinions.
    RequestDecided {
        /// The request.
        request_id: String,
        /// Who asked.
        agent_id: AgentId,
        /// Accepted (true) or rejected (false).
        accepted: bool,
        /// The combined peer opinion that decided it.
        peer_score: f64,
    },
    /// A peer announced a new URL or bio.
    PeerUpdated {
        /// The peer.
        agent_id: AgentId,
        /// Its URL now.
        url: String,
    },
    /// A peer's deliveries failed and a lookup found it at a new URL (signed by the peer itself, or,
    /// for a 0.5.3 peer, agreed by answerers and proven by the peer's card there: `verified` false).
    PeerUrlRecovered {
        /// The peer.
        agent_id: AgentId,
        /// The URL that failed.
        old_url: String,
        /// The URL adopted.
        new_url: String,
        /// The peer signed it.
        verified: bool,
        /// Who named the URL adopted.
        via: RecoveredVia,
    },
    /// A peer's deliveries failed and a lookup found no URL to adopt: they stay failed.
    PeerNotFound {
        /// The peer.
        agent_id: AgentId,
    },
    /// A signed packet failed verification, a replay was refused, or a key did not match: worth a
    /// look, never acted on automatically beyond the refusal.
    Refused {
        /// Which endpoint.
        path: String,
        /// HTTP status answered.
        status: u16,
        /// Why.
        reason: String,
    },
    /// A spawn limit held an agent back; the message stays queued and spawns when there is room.
    SpawnRefused {
        /// The message or request id.
        key: String,
        /// Which limit (0.5.3's texts for concurrency and the hour).
        reason: String,
    },
    /// A spawned agent could not start, or ran out of time.
    SpawnFailed {
        /// The message or request id.
        key: String,
        /// Why.
        reason: String,
    },
}

/// One thing the node wants done. Drain with [`crate::Node::poll_output`].
#[derive(Clone, Debug)]
pub enum Output {
    /// Make this durable (atomically) before carrying out any later output.
    Persist(Vec<Change>),
    /// Answer an inbound request.
    Reply(Reply),
    /// Start an outbound call; complete it with [`crate::Node::handle_response`].
    Transmit(Transmit),
    /// Tell the local agent. Boxed: an event carries parsed agent ids (a key each), and every output
    /// is moved through the queue, so the common ones stay small.
    Event(Box<Event>),
    /// Send this datagram (our signed LAN beacon) to the multicast group
    /// ([`crate::discovery::BEACON_GROUP`]:[`crate::discovery::BEACON_PORT`]); best effort.
    Datagram(Vec<u8>),
    /// Start a child agent; report its end with [`crate::Node::handle_spawn_exit`].
    Spawn(crate::spawn::SpawnRequest),
    /// A local command finished: its typed result, or an error.
    Done {
        /// The command.
        id: CommandId,
        /// Its result.
        result: Result<CommandOutput, CommandError>,
    },
    /// Check a claimed payment on-chain (SPEC §17.5) with the runtime's wallet; answer with
    /// [`crate::Node::handle_payment_checked`]. The core never moves or sees money itself.
    CheckPayment(PaymentCheck),
    /// Make this call to a pool provider's upstream (SPEC §22.5) and answer with
    /// [`crate::Node::handle_upstream`]. It carries a credential: never log it.
    Upstream(UpstreamCall),
    /// Nothing more for now; call [`crate::Node::handle_timeout`] at this monotonic time (ms), if any.
    Timeout(Option<u64>),
}

/// Names one upstream call; chosen by the node, echoed in [`crate::Node::handle_upstream`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UpstreamId(pub u64);

/// A call for the runtime to make to a provider's upstream. It carries the credential in `headers`:
/// its `Debug` shows header names only, and nothing may log it.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamCall {
    /// Echo this in the answer.
    pub id: UpstreamId,
    /// HTTP method (upper case).
    pub method: String,
    /// Full URL.
    pub url: String,
    /// Request headers, the credential last.
    pub headers: Vec<(String, String)>,
    /// Request body.
    pub body: Vec<u8>,
    /// Give up after this long.
    pub timeout_ms: u64,
    /// Read at most this much of the answer; more is [`UpstreamError::TooLarge`].
    pub response_bytes_max: usize,
}

impl std::fmt::Debug for UpstreamCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("UpstreamCall")
            .field("id", &self.id)
            .field("method", &self.method)
            .field("url", &self.url)
            .field("header_names", &names)
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// An upstream's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamResponse {
    /// Status.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body (at most the call's `response_bytes_max`).
    pub body: Vec<u8>,
}

/// Why an upstream call produced no answer.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum UpstreamError {
    /// The answer was longer than the call allowed.
    #[error("Upstream response too large")]
    TooLarge,
    /// Connect, TLS, timeout or protocol failure.
    #[error("Provider failed: {0}")]
    Failed(String),
}

/// Names one payment check; chosen by the node, echoed in [`crate::Node::handle_payment_checked`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CheckId(pub u64);

/// A claimed payment for the runtime's wallet to verify (R-G8) and credit once under `credit_key`:
/// one ledger for every purpose, so a transaction credited to one notice or purchase never counts
/// for another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentCheck {
    /// Echo this in the answer.
    pub id: CheckId,
    /// What the payment is credited to (`notice:<message id>`, `pool:<pool id>:<tx signature>`).
    pub credit_key: String,
    /// The wallet that must have signed and paid (the payer's advertised Solana address).
    pub payer_wallet: String,
    /// The transaction signature (base58).
    pub tx_signature: String,
    /// `SOL` or a mint (address or known symbol).
    pub token: String,
    /// The amount claimed, as decimal text in whole units of `token`.
    pub amount: String,
    /// The memo the transaction must carry, when the claim names one.
    pub memo: Option<String>,
}

/// The wallet's verdict on a [`PaymentCheck`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaymentVerdict {
    /// The payment counts: this many base units arrived, now credited to the check's key.
    Verified(u64),
    /// It does not count (wrong destination, short, failed, credited elsewhere, ...): final.
    Refused(String),
    /// It could not be decided now (RPC down, transaction not found yet): may be asked again.
    Unavailable(String),
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::identity::Passport;

    fn id(seed: u8) -> AgentId {
        Passport::from_seed([seed; 32]).agent_id().clone()
    }

    #[test]
    fn events_encode_as_tagged_objects() {
        let a = id(1);
        let e = Event::MessageReceived { message_id: "m".into(), from_agent_id: a.clone(), in_reply_to: None };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"event": "message_received", "message_id": "m", "from_agent_id": a.as_str(), "in_reply_to": null})
        );
        let e = Event::Disconnected { agent_id: a.clone(), by_peer: true };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"event": "disconnected", "agent_id": a.as_str(), "by_peer": true})
        );
    }

    #[test]
    fn every_event_reads_back_as_itself() {
        let (a, s) = (id(2), |x: &str| x.to_owned());
        let events = [
            Event::ConnectionRequested { request_id: s("r"), agent_id: a.clone(), display_name: s("d") },
            Event::Connected { agent_id: a.clone() },
            Event::Disconnected { agent_id: a.clone(), by_peer: true },
            Event::MessageReceived { message_id: s("m"), from_agent_id: a.clone(), in_reply_to: None },
            Event::MessageReceived { message_id: s("m"), from_agent_id: a.clone(), in_reply_to: Some(s("m0")) },
            Event::PeerUpdated { agent_id: a.clone(), url: s("http://u") },
            Event::PeerUrlRecovered {
                agent_id: a.clone(),
                old_url: s("http://o"),
                new_url: s("http://n"),
                verified: true,
                via: RecoveredVia::Anchor,
            },
            Event::PeerNotFound { agent_id: a.clone() },
            Event::Refused { path: s("/p"), status: 403, reason: s("r") },
            Event::RequestDecided { request_id: s("r"), agent_id: a.clone(), accepted: false, peer_score: -0.5 },
        ];
        for e in events {
            let v = serde_json::to_value(&e).unwrap();
            assert_eq!(serde_json::from_value::<Event>(v).unwrap(), e);
        }
    }

    #[test]
    fn events_with_missing_or_invalid_ids_are_refused() {
        assert!(serde_json::from_value::<Event>(json!({"event": "connected"})).is_err());
        assert!(serde_json::from_value::<Event>(json!({"event": "connected", "agent_id": "a"})).is_err());
        assert!(serde_json::from_value::<Event>(json!({"event": "nope", "agent_id": "a"})).is_err());
    }
}
