//! The core task: the only owner of the [`Node`] and the only reader of the clocks.
//!
//! It waits for an [`Input`] or the node's deadline, reads [`Clock::now`] once, hands the input in,
//! and drains [`Node::poll_output`] in order:
//! - `Persist` → one redb commit, synchronously, before anything after it (a failed commit stops the
//!   node: nothing after it, in particular no acknowledgement, is carried out);
//! - `Reply` → back to the connection task waiting for it;
//! - `Transmit` → a blocking ureq call on the bounded pool, whose result comes back as an input;
//! - `Event` → every subscriber; `Done` → the command's waiter; `Timeout` → the next deadline.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_channel::{Receiver, Sender};
use proto_core::discovery::Discovered;
use proto_core::{Command, CommandError, CommandId, Event, HttpResponse, InboundId, InboundRequest, Method, Node, Now, OutboundId, Output, Reply, Transmit};
use serde_json::Value;
use smol::lock::Semaphore;
use smol::{Executor, Timer};

use crate::client::Client;
use crate::storage::Storage;

/// Inputs queued for the core before senders wait (backpressure, not loss).
pub const INPUT_QUEUE_MAX: usize = 1_024;
/// Outbound HTTP calls running at once on the blocking pool; more wait their turn.
pub const TRANSMITS_CONCURRENT_MAX: usize = 32;
/// Events buffered per subscriber; a subscriber that falls further behind misses events.
pub const EVENTS_BUFFERED_MAX: usize = 1_024;

/// Something for the core to hand to the node.
pub enum Input {
    /// A peer's request; the reply goes back on `reply`.
    Request {
        /// Method.
        method: Method,
        /// Path without query.
        path: String,
        /// Body (already capped).
        body: Vec<u8>,
        /// Real TCP source.
        source: Option<IpAddr>,
        /// Where the connection task waits.
        reply: Sender<Reply>,
    },
    /// The result of a transmit.
    Response(OutboundId, Result<HttpResponse, String>),
    /// A local command.
    Command(Command, Sender<Result<Value, CommandError>>),
    /// A LAN datagram.
    Datagram(IpAddr, Vec<u8>),
    /// A peer found by a scan (its `seen_us` is filled in by the core).
    Discovered(Discovered),
    /// Make a beacon for this HTTP port.
    Beacon(u16, Sender<Vec<u8>>),
    /// Stop: drain nothing more, close the state.
    Shutdown,
}

/// The two clocks. Only the core task holds one.
pub struct Clock {
    origin: Instant,
}

impl Clock {
    /// Starts the monotonic origin now.
    pub fn start() -> Self {
        Self { origin: Instant::now() }
    }

    /// Both clocks, read once.
    pub fn now(&self) -> Now {
        let mono_ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        let wall_us = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
        };
        Now::new(mono_ms, wall_us)
    }

    /// The instant of a monotonic deadline.
    pub fn instant(&self, mono_ms: u64) -> Instant {
        self.origin.checked_add(Duration::from_millis(mono_ms)).unwrap_or_else(|| self.origin + Duration::from_secs(86_400 * 365))
    }
}

/// Event subscribers, shared with the handle.
pub type Subscribers = Arc<Mutex<Vec<Sender<Event>>>>;

/// What the core needs to build and drive its node.
pub struct CoreParts {
    /// Identity.
    pub passport: proto_core::Passport,
    /// Core settings.
    pub config: proto_core::Config,
    /// RNG seed for the node.
    pub seed: u64,
    /// Records read back from storage.
    pub records: Vec<(proto_core::Table, String, Vec<u8>)>,
    /// Storage to commit to.
    pub storage: Storage,
    /// Inputs.
    pub inputs: Receiver<Input>,
    /// Where transmit results go (a clone of the inputs' sender).
    pub loopback: Sender<Input>,
    /// Executor that runs transmit tasks.
    pub net: Arc<Executor<'static>>,
    /// HTTP client.
    pub client: Client,
    /// Event subscribers.
    pub subscribers: Subscribers,
}

/// Why the core stopped.
#[derive(Debug, thiserror::Error)]
pub enum CoreExit {
    /// Asked to stop, or every sender went away.
    #[error("stopped")]
    Stopped,
    /// A commit failed; the node stopped before acknowledging anything that depended on it.
    #[error("state commit failed, node stopped: {0}")]
    PersistFailed(crate::storage::StorageError),
}

struct Core {
    node: Node,
    clock: Clock,
    storage: Storage,
    loopback: Sender<Input>,
    net: Arc<Executor<'static>>,
    client: Client,
    pool: Arc<Semaphore>,
    subscribers: Subscribers,
    replies: HashMap<InboundId, Sender<Reply>>,
    commands: HashMap<CommandId, Sender<Result<Value, CommandError>>>,
    next_inbound: u64,
    next_command: u64,
    deadline: Option<u64>,
}

/// Runs the core until shutdown. Blocks the calling thread (run it on its own).
pub fn run(parts: CoreParts) -> CoreExit {
    let clock = Clock::start();
    let now = clock.now();
    let (node, skipped) = Node::restore(parts.passport, parts.config, parts.seed, now, parts.records);
    if skipped > 0 {
        eprintln!("darkmatter: {skipped} stored record(s) could not be decoded and were skipped");
    }
    let mut core = Core {
        node,
        clock,
        storage: parts.storage,
        loopback: parts.loopback,
        net: parts.net,
        client: parts.client,
        pool: Arc::new(Semaphore::new(TRANSMITS_CONCURRENT_MAX)),
        subscribers: parts.subscribers,
        replies: HashMap::new(),
        commands: HashMap::new(),
        next_inbound: 1,
        next_command: 1,
        deadline: None,
    };
    smol::block_on(core.run(parts.inputs))
}

impl Core {
    async fn run(&mut self, inputs: Receiver<Input>) -> CoreExit {
        loop {
            if let Err(e) = self.drain() {
                return CoreExit::PersistFailed(e);
            }
            let timer = match self.deadline {
                Some(ms) => Timer::at(self.clock.instant(ms)),
                None => Timer::never(),
            };
            let next = smol::future::or(async { inputs.recv().await.ok() }, async {
                timer.await;
                None
            })
            .await;
            let now = self.clock.now();
            match next {
                None if inputs.is_closed() && inputs.is_empty() => return CoreExit::Stopped,
                None => self.node.handle_timeout(now),
                Some(Input::Shutdown) => return CoreExit::Stopped,
                Some(input) => self.handle(now, input),
            }
        }
    }

    fn handle(&mut self, now: Now, input: Input) {
        match input {
            Input::Request { method, path, body, source, reply } => {
                let id = InboundId(self.next_inbound);
                self.next_inbound += 1;
                self.replies.insert(id, reply);
                self.node.handle_request(now, InboundRequest { id, method, path, body, source });
            }
            Input::Response(id, result) => self.node.handle_response(now, id, result),
            Input::Command(command, done) => {
                let id = CommandId(self.next_command);
                self.next_command += 1;
                self.commands.insert(id, done);
                self.node.handle_command(now, id, command);
            }
            Input::Datagram(source, payload) => self.node.handle_datagram(now, source, &payload),
            Input::Discovered(d) => self.node.note_discovered(now, d),
            Input::Beacon(port, out) => {
                let _ = out.try_send(self.node.beacon(now, port));
            }
            Input::Shutdown => unreachable!("handled by the loop"),
        }
    }

    /// Carries out every queued output, in order. Stops at the first failed commit.
    fn drain(&mut self) -> Result<(), crate::storage::StorageError> {
        loop {
            match self.node.poll_output() {
                Output::Persist(changes) => self.storage.apply(&changes)?,
                Output::Reply(reply) => {
                    if let Some(tx) = self.replies.remove(&reply.id) {
                        let _ = tx.try_send(reply);
                    }
                }
                Output::Transmit(t) => self.transmit(t),
                Output::Event(e) => self.broadcast(e),
                Output::Done { id, result } => {
                    if let Some(tx) = self.commands.remove(&id) {
                        let _ = tx.try_send(result);
                    }
                }
                Output::Timeout(deadline) => {
                    self.deadline = deadline;
                    return Ok(());
                }
            }
        }
    }

    fn transmit(&self, t: Transmit) {
        let pool = self.pool.clone();
        let client = self.client.clone();
        let back = self.loopback.clone();
        self.net
            .spawn(async move {
                let _permit = pool.acquire_arc().await;
                let id = t.id;
                let result = smol::unblock(move || client.call(&t)).await;
                // The core may be gone (shutdown): then nobody needs the answer.
                let _ = back.send(Input::Response(id, result)).await;
            })
            .detach();
    }

    fn broadcast(&self, event: Event) {
        let mut subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        subs.retain(|tx| match tx.try_send(event.clone()) {
            Ok(()) | Err(async_channel::TrySendError::Full(_)) => true,
            Err(async_channel::TrySendError::Closed(_)) => false,
        });
    }
}
