//! # proto-core: the DarkMatter mesh protocol as a pure state machine
//!
//! This crate performs **no I/O and reads no clock**. It owns no socket, file, thread or global
//! random number generator. Time comes in with every input ([`Now`]); randomness comes from a seed
//! given at construction. The same inputs in the same order always produce the same outputs, which
//! is what lets `runtime-sim` replay a thousand-node mesh byte for byte and lets tests snapshot traces.
//!
//! It speaks the wire protocol of `dmagent` 0.5.3 (JSON over HTTP, Ed25519 signatures in 0.5.3's
//! canonical forms) and, between nodes of this project, a stricter signed form that covers every field.
//! See `SPEC.md` at the repository root.
//!
//! ## The drive loop
//!
//! A driver (the production runtime, the simulator, or a test) owns one [`Node`] and repeats:
//!
//! 1. **Wait** for something: a peer's HTTP request, the answer to a request the node asked for, a
//!    local command (a tool call), a LAN datagram, or the deadline the node last asked for.
//! 2. **Read the clocks** once into a [`Now`] (monotonic milliseconds and wall-clock microseconds).
//! 3. **Hand it in** with the matching `handle_*` method ([`Node::handle_request`],
//!    [`Node::handle_response`], [`Node::handle_command`], [`Node::handle_datagram`],
//!    [`Node::handle_timeout`]); these never block and never fail: refusals become outputs.
//! 4. **Drain** [`Node::poll_output`] until it returns [`Output::Timeout`]; carry out every other
//!    output *in order*: [`Output::Persist`] must be durable before the outputs after it are carried
//!    out (that is how a message is acknowledged only after it is committed), [`Output::Reply`] answers
//!    an inbound request, [`Output::Transmit`] starts an outbound request, [`Output::Event`] tells the
//!    local agent, [`Output::Done`] completes a command.
//! 5. **Complete** each transmit later with [`Node::handle_response`] — its answer, or the transport
//!    error — which is just another input.
//! 6. **Sleep** until the deadline of the last [`Output::Timeout`] (or until the next input), then call
//!    [`Node::handle_timeout`] and go back to step 4.
//!
//! ## Layout
//!
//! Each file owns one concern: [`connection`] (handshake, pending requests, pinning, disconnect),
//! [`message`] (inbox, sending, forwarding, replies, webhooks), [`trust`] (impressions, peer trust
//! queries, acceptance policy, auto-disconnect, rate limits), [`shard`] (knowledge shards and their
//! sync), [`memory`] (the conversation log and context feed), [`healing`] (peer updates and lookups), [`discovery`] (cards and LAN beacons),
//! [`identity`] and [`sign`] (keys and canonical forms), [`replay`] and [`limits`] (the bounds),
//! [`wire`] (the JSON bodies), [`store`] (what is persisted), [`io`] (inputs and outputs).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod command;
mod connections;
pub mod discovery;
pub mod error;
pub mod identity;
mod inbox;
pub mod io;
pub mod limits;
pub mod memory;
pub mod message;
pub mod node;
mod outbox;
mod rate;
pub mod replay;
pub mod shards;
pub mod sign;
pub mod store;
pub mod time;
pub mod trust;
pub mod url;
pub mod wire;

pub use command::Command;
pub use error::{CommandError, IdentityError, Refusal, SignError, WireError};
pub use identity::{AgentId, Passport};
pub use io::{CommandId, Event, HttpResponse, InboundId, InboundRequest, Method, OutboundId, Output, Reply, Transmit};
pub use message::{ForwardArgs, SendArgs, Targets};
pub use node::{Config, Node};
pub use shards::ShardArgs;
pub use store::{Change, Table};
pub use time::Now;
pub use trust::TrustPolicy;
