//! `darkmatter anchor`: drives [`proto_core::anchor::Anchor`] with the node's own bounded HTTP server
//! ([`crate::server`], with its per-source admission) and a redb file ([`store`]).
//!
//! Two threads, as for a node: `dm-anchor-net` runs the HTTP server, which hands each whole request to
//! `dm-anchor-core` over a bounded channel; the core thread takes every request already queued (up to
//! [`ANCHOR_BATCH_MAX`]), hands them to the anchor one by one, commits all their writes in one
//! transaction, and only then sends the answers (group commit): no registration or post is
//! acknowledged, and no mailbox entry handed out, before the change is on disk. A failed commit stops the
//! anchor without answering.

pub mod store;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use async_channel::{Receiver, Sender, WeakSender};
use proto_core::anchor::{Anchor, AnchorOutput, AnchorRequest, AnchorWrite};
use proto_core::limits::ANCHOR_PROBE_TIMEOUT_MS;
use proto_core::{InboundId, Method, OutboundId, Reply, Transmit};
use smol::{Async, Executor, Timer};
use thiserror::Error;

use crate::client::Client;
use crate::driver::{Clock, Input};
use crate::storage::{ensure_dir, StorageError};
use crate::{admission, server};

pub use store::AnchorStore;

/// Default port: 0.5.3's standalone anchor's (`DARKMATTER_ANCHOR_PORT`, 5001).
pub const ANCHOR_PORT_DEFAULT: u16 = 5001;
/// Default bind address: loopback, as 0.5.3's standalone anchor; put it behind a TLS proxy, or bind
/// `0.0.0.0` on purpose.
pub const ANCHOR_HOST_DEFAULT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Default state directory (relative to the working directory).
pub const ANCHOR_STATE_DIR_DEFAULT: &str = ".darkmatter-anchor";
/// Name of the database file inside the state directory.
pub const ANCHOR_DB_FILE: &str = "anchor.redb";
/// Requests taken into one batch (one transaction) at most.
pub const ANCHOR_BATCH_MAX: usize = 256;
/// Requests queued toward the core; the HTTP server waits beyond it (backpressure, not loss).
pub const ANCHOR_INPUT_QUEUE_MAX: usize = 1_024;
/// How long a stopping anchor lets open connections finish, in ms.
pub const ANCHOR_SHUTDOWN_GRACE_MS: u64 = 2_000;

/// Where and how the anchor runs.
#[derive(Clone, Debug)]
pub struct AnchorConfig {
    /// Address to bind.
    pub host: IpAddr,
    /// Port to bind (`0` = any free one).
    pub port: u16,
    /// State directory (created 0700).
    pub state_dir: PathBuf,
    /// Stop on SIGINT/SIGTERM.
    pub handle_signals: bool,
}

impl Default for AnchorConfig {
    fn default() -> Self {
        Self {
            host: ANCHOR_HOST_DEFAULT,
            port: ANCHOR_PORT_DEFAULT,
            state_dir: PathBuf::from(ANCHOR_STATE_DIR_DEFAULT),
            handle_signals: false,
        }
    }
}

/// Why the anchor did not start, or stopped.
#[derive(Debug, Error)]
pub enum AnchorError {
    /// Its state could not be opened, read or written.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A thread or signal handler could not be set up.
    #[error("cannot start the anchor: {0}")]
    Runtime(std::io::Error),
}

/// A running anchor.
pub struct RunningAnchor {
    /// The address it listens on.
    pub local_addr: SocketAddr,
    stop: Sender<()>,
    threads: Vec<JoinHandle<()>>,
    exit: Receiver<Result<(), StorageError>>,
}

impl RunningAnchor {
    /// `http://<addr>` of the listener.
    pub fn url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// Asks it to stop (as a signal would).
    pub fn stop(&self) {
        self.stop.close();
    }

    /// Waits until it stopped; `Err` if a commit failed.
    pub fn wait(self) -> Result<(), AnchorError> {
        for t in self.threads {
            let _ = t.join();
        }
        match self.exit.try_recv() {
            Ok(Err(e)) => Err(AnchorError::Storage(e)),
            _ => Ok(()),
        }
    }
}

fn spawn_thread(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, AnchorError> {
    std::thread::Builder::new().name(name.to_owned()).spawn(f).map_err(AnchorError::Runtime)
}

/// Opens the state, binds, and starts serving; returns once it listens.
pub fn start(config: AnchorConfig) -> Result<RunningAnchor, AnchorError> {
    ensure_dir(&config.state_dir)?;
    let store = AnchorStore::open(&config.state_dir.join(ANCHOR_DB_FILE))?;
    let clock = Clock::start();
    let anchor = Anchor::restore(store.load()?, clock.now());
    let addr = SocketAddr::new(config.host, config.port);
    let listener = server::bind(config.host, config.port).map_err(|source| AnchorError::Bind { addr, source })?;
    let local_addr = listener.local_addr().map_err(AnchorError::Runtime)?;
    let listener = Async::new(listener).map_err(AnchorError::Runtime)?;

    let (inputs_tx, inputs_rx) = async_channel::bounded(ANCHOR_INPUT_QUEUE_MAX);
    let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
    let (exit_tx, exit_rx) = async_channel::bounded(1);
    // Weak, so that the channel still closes when the server goes away.
    let probes = inputs_tx.downgrade();
    let core = {
        let stop = stop_tx.clone();
        spawn_thread("dm-anchor-core", move || {
            let core =
                Core { anchor, store, clock, waiting: HashMap::new(), next_id: 0, probes, client: Client::new() };
            let result = core.run(inputs_rx);
            if let Err(e) = &result {
                eprintln!("darkmatter anchor: {e}");
            }
            let _ = exit_tx.try_send(result);
            stop.close();
        })?
    };
    let signals = if config.handle_signals {
        Some(crate::signals::install(stop_tx.clone()).map_err(AnchorError::Runtime)?)
    } else {
        None
    };
    let net = {
        let ex = Arc::new(Executor::new());
        let limits = admission::Limits::default();
        let server = server::Server::with_admission(
            inputs_tx.clone(),
            stop_rx.clone(),
            ex.clone(),
            admission::Admission::new(limits),
        );
        spawn_thread("dm-anchor-net", move || {
            smol::block_on(ex.run(async {
                ex.spawn(server.clone().serve(listener)).detach();
                let _ = stop_rx.recv().await;
                let grace = std::time::Instant::now() + Duration::from_millis(ANCHOR_SHUTDOWN_GRACE_MS);
                while server.open_connections() > 0 && std::time::Instant::now() < grace {
                    Timer::after(Duration::from_millis(20)).await;
                }
                let _ = inputs_tx.send(Input::Shutdown).await;
            }));
            if let Some(h) = signals {
                h.close();
            }
        })?
    };
    Ok(RunningAnchor { local_addr, stop: stop_tx, threads: vec![core, net], exit: exit_rx })
}

/// The core thread's state.
struct Core {
    anchor: Anchor,
    store: AnchorStore,
    clock: Clock,
    /// Connection tasks waiting for their answer, by request id.
    waiting: HashMap<u64, Sender<Reply>>,
    next_id: u64,
    /// Where probe outcomes come back (as [`Input::Response`] keyed by the request id).
    probes: WeakSender<Input>,
    client: Client,
}

impl Core {
    fn run(mut self, inputs: Receiver<Input>) -> Result<(), StorageError> {
        // Records dropped at restore (expired while down) are deleted first.
        self.flush()?;
        loop {
            let deadline = self.clock.instant(self.anchor.poll_timeout());
            let first = smol::block_on(async {
                smol::future::or(async { inputs.recv().await.ok() }, async {
                    Timer::at(deadline).await;
                    None
                })
                .await
            });
            if inputs.is_closed() && first.is_none() {
                return Ok(());
            }
            let mut batch: Vec<Input> = first.into_iter().collect();
            while batch.len() < ANCHOR_BATCH_MAX {
                match inputs.try_recv() {
                    Ok(input) => batch.push(input),
                    Err(_) => break,
                }
            }
            let mut stop = false;
            for input in batch {
                stop |= self.handle(input);
            }
            self.anchor.handle_timeout(self.clock.now());
            self.flush()?;
            if stop {
                return Ok(());
            }
        }
    }

    /// Hands one input to the anchor; `true` = stop.
    fn handle(&mut self, input: Input) -> bool {
        match input {
            Input::Request { method, path, query, body, source, reply } => {
                let id = self.next_id;
                self.next_id += 1;
                self.waiting.insert(id, reply);
                self.anchor.handle_request(self.clock.now(), AnchorRequest { id, method, path, query, body, source });
                false
            }
            Input::Response(OutboundId(request), result) => {
                let status = result.ok().map(|r| r.status);
                self.anchor.handle_probe_result(request, status);
                false
            }
            Input::Shutdown => true,
            // The anchor makes no other outbound calls and has no commands, beacons or agents.
            _ => false,
        }
    }

    /// Commits every write the anchor queued, then sends the answers that followed them.
    fn flush(&mut self) -> Result<(), StorageError> {
        let mut writes: Vec<AnchorWrite> = Vec::new();
        let mut replies = Vec::new();
        while let Some(output) = self.anchor.poll_output() {
            match output {
                AnchorOutput::Persist(w) => writes.extend(w),
                AnchorOutput::Reply { request, status, body } => replies.push((request, status, body)),
                AnchorOutput::Probe { request, url } => self.spawn_probe(request, url),
            }
        }
        // One transaction for the batch: every answer below waits for it, so none precedes its write.
        self.store.apply(&writes)?;
        for (request, status, body) in replies {
            if let Some(tx) = self.waiting.remove(&request) {
                let _ = tx.try_send(Reply { id: InboundId(request), status, body, peer: false });
            }
        }
        Ok(())
    }

    /// Fetches a probed status page on a thread of its own (at most
    /// [`proto_core::limits::ANCHOR_PROBES_IN_FLIGHT_MAX`] run at once: the core counts them) and hands
    /// the outcome back. The client follows no redirects; the body is read only up to its cap.
    fn spawn_probe(&self, request: u64, url: String) {
        let (client, back) = (self.client.clone(), self.probes.clone());
        let probe = move || {
            let transmit = Transmit {
                id: OutboundId(request),
                method: Method::Get,
                url,
                body: Vec::new(),
                timeout_ms: ANCHOR_PROBE_TIMEOUT_MS,
                forbid_private: false,
                probe: false,
            };
            let result = client.call(&transmit);
            if let Some(back) = back.upgrade() {
                let _ = back.send_blocking(Input::Response(OutboundId(request), result));
            }
        };
        if std::thread::Builder::new().name("dm-anchor-probe".into()).spawn(probe).is_err() {
            // No thread: answered as unreachable rather than never.
            self.anchor_probe_failed(request);
        }
    }

    fn anchor_probe_failed(&self, request: u64) {
        if let Some(back) = self.probes.upgrade() {
            let _ = back.try_send(Input::Response(OutboundId(request), Err("no thread for the probe".into())));
        }
    }
}

/// Starts the anchor, prints `{"ready":true,"url":..}` as the one line of stdout once it listens
/// (what scripts and tests wait for; everything else goes to stderr), and serves until stopped.
pub fn serve(config: AnchorConfig) -> Result<(), AnchorError> {
    let state_dir = config.state_dir.clone();
    let running = start(config)?;
    println!("{}", serde_json::json!({"ready": true, "url": running.url()}));
    eprintln!("darkmatter anchor: listening on {}, state in {}", running.url(), state_dir.display());
    running.wait()
}
