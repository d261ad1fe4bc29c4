//! What goes into a [`crate::Node`] and what comes out.

use core::net::IpAddr;

use serde_json::Value;

use crate::error::CommandError;
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
}

/// Something the local agent should learn about (the MCP server turns these into notifications).
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A peer asked to connect and waits for the agent's decision.
    ConnectionRequested {
        /// The pending request.
        request_id: String,
        /// Who asks.
        agent_id: String,
        /// Their name.
        display_name: String,
    },
    /// A connection now exists.
    Connected {
        /// The peer.
        agent_id: String,
    },
    /// A connection was removed, by us or by the peer.
    Disconnected {
        /// The peer.
        agent_id: String,
        /// True when the peer told us.
        by_peer: bool,
    },
    /// A message entered the inbox.
    MessageReceived {
        /// Its id.
        message_id: String,
        /// The sender (last hop).
        from_agent_id: String,
        /// The sent message this answers, when it is a reply.
        in_reply_to: Option<String>,
    },
    /// The acceptance policy decided a pending request from our peers' opinions.
    RequestDecided {
        /// The request.
        request_id: String,
        /// Who asked.
        agent_id: String,
        /// Accepted (true) or rejected (false).
        accepted: bool,
        /// The combined peer opinion that decided it.
        peer_score: f64,
    },
    /// A peer announced a new URL or bio.
    PeerUpdated {
        /// The peer.
        agent_id: String,
        /// Its URL now.
        url: String,
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
    /// Tell the local agent.
    Event(Event),
    /// Send this datagram (our signed LAN beacon) to the multicast group
    /// ([`crate::discovery::BEACON_GROUP`]:[`crate::discovery::BEACON_PORT`]); best effort.
    Datagram(Vec<u8>),
    /// Start a child agent; report its end with [`crate::Node::handle_spawn_exit`].
    Spawn(crate::spawn::SpawnRequest),
    /// A local command finished: a JSON object, or an error.
    Done {
        /// The command.
        id: CommandId,
        /// Its result.
        result: Result<Value, CommandError>,
    },
    /// Nothing more for now; call [`crate::Node::handle_timeout`] at this monotonic time (ms), if any.
    Timeout(Option<u64>),
}
