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
//!    an inbound request, [`Output::Transmit`] starts an outbound request, [`Output::Datagram`] is
//!    multicast to the LAN, [`Output::Event`] tells the local agent, [`Output::Done`] completes a command.
//! 5. **Complete** each transmit later with [`Node::handle_response`] — its answer, or the transport
//!    error — which is just another input.
//! 6. **Sleep** until the deadline of the last [`Output::Timeout`] (or until the next input), then call
//!    [`Node::handle_timeout`] and go back to step 4.
//!
//! ## Inputs
//!
//! - `handle_request(now, request)`: a peer's HTTP request: the driver's id, the method (GET, POST or
//!   other), the path without its query string, the body bytes, and the **real TCP peer address** as
//!   `source` (it decides what counts as a local request; never a claimed URL).
//! - `handle_response(now, id, result)`: the answer to one transmit (status and body), or the transport
//!   error as text. An unknown id is ignored.
//! - `handle_command(now, id, command)`: a local (tool) command.
//! - `handle_datagram(now, source, payload)`: a LAN beacon heard from `source`. Discovery is otherwise
//!   ordinary input and output: beacons leave as [`Output::Datagram`], scan probes and domain card
//!   fetches (`Command::DiscoverLocal`, `Command::DiscoverDomain`) as transmits whose answers come back
//!   through `handle_response`; the command is done when its last probe has answered.
//! - `handle_timeout(now)`: ends expired waits and, every [`node::HOUSEKEEPING_INTERVAL_MS`] of the
//!   monotonic clock, runs housekeeping. Calling it early is harmless.
//! - `handle_spawn_exit(now, spawn_id, outcome)`: a spawned agent ended (exited, timed out, or never
//!   started); its slot is free at once and a message waiting for one may spawn.
//!
//! ## Outputs
//!
//! - [`Output::Persist`]: one atomic commit. It **must be durable before any later output is carried
//!   out**: handlers queue their persists before the reply, so a `200` is an acknowledgement after
//!   commit. The core has already applied the change in memory and has no rollback, so a driver whose
//!   commit fails must stop. A driver may merge several consecutive `Persist` batches, in order, into
//!   one commit (group commit), provided nothing emitted after the first merged batch is carried out
//!   before that commit; each batch stays atomic because the merged commit is all-or-nothing.
//! - [`Output::Reply`]: exactly one per `handle_request`, always after that request's persists.
//! - [`Output::Transmit`]: start an HTTP call and enforce its `timeout_ms` (the core keeps no call
//!   timers). With `forbid_private` set, the driver must refuse to connect when the host *resolves* to a
//!   private, loopback or link-local address (the core never resolves names). With `probe` set (a
//!   discovery probe of a localhost port that may be closed) the driver should use a short connect
//!   timeout, so a scan of closed ports ends fast.
//! - [`Output::Datagram`]: send these bytes (our signed beacon) to the LAN multicast group
//!   [`discovery::BEACON_GROUP`]:[`discovery::BEACON_PORT`], best effort; a driver without a LAN drops it.
//! - [`Output::Event`]: tell the local agent (a request arrived or was decided, a peer connected or
//!   disconnected, a message arrived, a peer moved, a peer request was refused with 403 or 409).
//! - [`Output::Spawn`]: start an agent (only with [`node::Config::spawn`] set; see [`spawn`]) with the
//!   facts its prompt is built from; report its end with `handle_spawn_exit`.
//! - [`Output::CheckPayment`]: have the wallet verify a claimed payment on-chain and credit it once under
//!   the check's key; answer with `handle_payment_checked` (a driver without a wallet answers refused).
//! - [`Output::Upstream`]: make a pool's upstream call (it carries a credential: never log it), reading at
//!   most its `response_bytes_max`; answer with `handle_upstream`. Its inbound request waits for it.
//! - [`Output::Done`]: a command finished, with its typed [`CommandOutput`] or a [`CommandError`]. It may come out of a
//!   later, unrelated input: a send completes in the `handle_response` of its last delivery, a wait in
//!   the `handle_request` of the reply.
//! - [`Output::Timeout`]: the queue is empty; call `handle_timeout` at this monotonic time (the earliest
//!   of the next housekeeping, the earliest wait deadline, with `discovery` on the next beacon and the
//!   next background scan, and, when a spawn waits for the hour window, when the window frees one).
//!
//! More than [`limits::OUTPUTS_BUFFERED_MAX`] undrained outputs is a driver bug and panics. No single
//! input emits more than a few thousand (a send to [`limits::TARGETS_PER_SEND_MAX`] targets, a peer
//! update to every connection; the shard refresh is bounded per step).
//!
//! ## Determinism
//!
//! - No clock is read: timers, rate windows and housekeeping use `now.mono_ms`; signatures, freshness,
//!   expiry, lifetimes and stored times use `now.wall_us`.
//! - All randomness comes from the seed given to [`Node::new`] or [`Node::restore`] (a ChaCha20 stream):
//!   request, challenge, message, trust query and shard ids, and challenges.
//! - All state is in ordered maps, so iteration order (broadcast, shard push and trust query targets) is
//!   deterministic. The same inputs in the same order give the same outputs, byte for byte.
//! - Consequence for drivers: a production node must get a **fresh seed at every start**; restoring with
//!   the seed of an earlier run repeats that run's ids and challenges.
//!
//! ## Configuration
//!
//! [`Config`] holds what the operator chooses; it is not persisted.
//!
//! | Field | Default | Meaning |
//! |---|---|---|
//! | `display_name` | `""` | a non-empty value replaces the stored name at restore |
//! | `bio` | `A DarkMatter mesh agent.` | initial bio; the stored one wins after the first start |
//! | `public_url` | `http://127.0.0.1:8100` | where peers reach us; `SetUrl` changes it in memory |
//! | `max_connections` | [`limits::CONNECTIONS_MAX_DEFAULT`] | clamped to [`limits::CONNECTIONS_MAX_CEILING`] |
//! | `auto_accept_local` | `true` | accept proven requests whose TCP source is local |
//! | `trust_accept_min` | `Some(0.5)` | policy: accept a request signed in our form at ≥ this (`None`: never) |
//! | `trust_reject_max` | `Some(-0.5)` | policy: reject a request at ≤ this (`None`: never) |
//! | `trust_policy` | `Weighted` | weight peer opinions by our trust in each peer, with the Sybil defences (SPEC §8.4); the simulator's comparisons: average them plainly, or weigh them without the defences |
//! | `discovery` | `false` | background discovery: a beacon every `beacon_interval_s`, a localhost scan every [`discovery::SCAN_INTERVAL_S`] |
//! | `scan_ports` | [`discovery::SCAN_PORTS_DEFAULT`] | localhost ports a scan probes (`listen_port` is skipped) |
//! | `beacon_interval_s` | [`discovery::BEACON_INTERVAL_S`] | seconds between beacons |
//! | `listen_port` | `8100` | the HTTP port beacons advertise |
//!
//! ## Persistence
//!
//! Every `Persist` carries [`Change`]s to named [`Table`]s; values are postcard records behind one
//! byte of record version, so a layout change bumps that record's version and adds an upgrade from
//! the old layout ([`store`]). [`Node::restore`] takes the records back in any order; one that does
//! not decode (newer version, no upgrade, corrupt) is skipped, counted, and left on disk. Restore may
//! emit outputs (a trust query in flight at shutdown is asked again, unsettled acceptances are retried
//! at the first housekeeping).
//!
//! ## Signatures
//!
//! Every signature a node makes or checks goes through its [`crypto::SignatureProvider`]: real
//! Ed25519 with `verify_strict` ([`crypto::Ed25519`]) for [`Node::new`] and [`Node::restore`];
//! [`Node::with_provider`] and [`Node::restore_with_provider`] take another. The simulator passes
//! its own (a forgeable digest for measurements, a counting wrapper); they live in `runtime-sim`,
//! so a networked runtime, which does not link it, can never run on fake signatures. [`sign`] holds
//! the canonical forms and free Ed25519 helpers for tests and vectors.
//!
//! ## Layout
//!
//! Owners of state, each with private fields and a small API, none importing `node`: `replay`
//! (freshness window and dedup cache), `rate` (global, per-party and per-peer windows), `connections`
//! (the connected peers and pending requests both ways under their caps, acceptance retries,
//! per-source request budgets), `inbox` (unread messages), `outbox` (the sent records with their
//! update and reply rows, send batches, waits), [`trust`] (impressions, the trust policy, signed query forms), [`shards`] (the shard
//! table, cache eviction, refresh rounds), [`memory`] (the conversation log and its ranking),
//! [`discovery`] (discovered peers), [`payments`] (claimed payments being checked, notices' outcomes),
//! [`pool`] (pools, tokens, reserve and settle). [`node`] and its private `node/*` files (one per conversation:
//! connection, inbound, webhook, outbound, waiters, views, trust, shard, healing, discovery, memory,
//! command) route each input to them and queue what they hand back. The leaves — [`store`], [`wire`], [`sign`], [`identity`],
//! [`limits`], [`error`], [`io`], [`time`], [`url`] — import no owner. `tests/module_graph.rs`
//! fails on any import cycle.
//!
//! [`wallet`] is a leaf as well: the Solana key from the passport, exact amounts, transaction bytes, the
//! JSON-RPC requests and answers with the confirmation state machine, and payment verification from a
//! fetched transaction; it holds no node state (the runtime sends, the MCP layer spends). [`antimatter`]
//! is another: the SPEC's match game (P(match), uniform picks, 0.5.3's commitments) and the 1 % fee.
//!
//! ## Public API
//!
//! A driver needs only [`Node`]'s constructors, the `handle_*` inputs (including
//! [`Node::handle_announce`], the operator's "beacon now"), [`Node::poll_output`] /
//! [`Node::poll_timeout`], and the identity getters ([`Node::passport`], [`Node::public_url`]).
//! What the node answers on its own routes (card, status, network info) and the agent's context
//! feed are reached through those inputs, not through side doors. Observers that only read (the
//! simulator's measurements, tests) use [`Node::inspect`], one borrowed read-only view
//! ([`node::Inspect`]: trust scores, discovered peers, key-parse counts, the beacon a node would
//! send); grouping them there keeps every state change behind a `handle_*` call. The public
//! modules are those a driver or a test needs: the leaves above for wire bodies, records, limits,
//! canonical forms and known-answer vectors, and the owners' public helpers the tests check
//! directly ([`replay::ReplayCache`], [`trust::adjust`], [`memory`]'s ranking weights).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod anchor;
pub mod antimatter;
pub mod command;
mod connections;
pub mod crypto;
pub mod discovery;
pub mod e2e;
pub mod error;
mod healing;
pub mod identity;
mod inbox;
pub mod io;
pub mod limits;
pub mod memory;
pub mod message;
pub mod node;
mod outbox;
pub mod output;
pub mod payments;
pub mod pool;
mod rate;
pub mod relay;
pub mod replay;
pub mod shards;
pub mod sign;
pub mod spawn;
pub mod store;
pub mod time;
pub mod trust;
pub mod url;
pub mod wallet;
pub mod wire;

pub use command::Command;
pub use error::{CommandError, IdentityError, Refusal, SignError, WireError};
pub use identity::{AgentId, Passport};
pub use io::{
    CheckId, CommandId, Event, HttpResponse, InboundId, InboundRequest, Method, OutboundId, Output, PaymentCheck,
    PaymentVerdict, RecoveredVia, Reply, Transmit,
};
pub use message::{ForwardArgs, SendArgs, Targets};
pub use node::{Config, Node};
pub use output::CommandOutput;
pub use relay::Entropy;
pub use shards::ShardArgs;
pub use store::{Change, Table};
pub use time::Now;
pub use trust::TrustPolicy;
