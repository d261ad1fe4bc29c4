//! # runtime-smol: one DarkMatter node on real sockets, files and clocks
//!
//! A thin driver around [`proto_core::Node`]: the core decides everything, this crate moves bytes.
//!
//! ## Threads
//! - **`dm-core`** owns the node, the redb database and the clocks ([`driver`]). It is the only
//!   place that reads time; it commits every persist batch before carrying out what follows it, so a
//!   message is acknowledged (HTTP 200) only once it is on disk. Inputs that queue up while it works
//!   are handled together and their persists share one commit (group commit: one fsync per batch).
//! - **`dm-net`** runs a smol executor with the peer HTTP server ([`server`]), the LAN beacon sender
//!   and listener and the periodic localhost scan ([`discovery`]), and the tasks that run outbound
//!   calls ([`client`]) on smol's blocking pool, at most [`driver::TRANSMITS_CONCURRENT_MAX`] at once.
//! - **`dm-signals`** (optional) turns SIGINT/SIGTERM into a graceful stop ([`signals`]).
//!
//! ## Group commit
//! The core task waits for one input (or the node's deadline), then takes every other input already
//! queued, up to [`driver::BATCH_INPUTS_MAX`], and hands them in one by one. Their `Persist` outputs
//! join one write transaction; every output after the batch's first `Persist` waits, in order, until
//! that transaction is committed (one fsync per batch), so the core's rule holds: nothing after a
//! `Persist` is carried out before it is durable, and no peer is answered 200 before its effect is on
//! disk. A failed commit stops the node; nothing that waited on it is carried out. The input queue
//! holds [`driver::INPUT_QUEUE_MAX`] (senders wait: backpressure, not loss); at most
//! [`driver::TRANSMITS_CONCURRENT_MAX`] outbound calls run at once, the rest wait their turn. Each start
//! seeds the node from OS randomness, so a restart never repeats ids or challenges.
//!
//! ## Peer HTTP server
//! [`server`] frames HTTP/1.1 itself ([`http`]) so that every resource a peer can hold is bounded:
//! open connections ([`server::CONNECTIONS_MAX`]), requests waiting on the core
//! ([`server::IN_FLIGHT_MAX`]), head size and field count ([`http::HEADER_BYTES_MAX`],
//! [`http::HEADERS_MAX`]), body size ([`proto_core::limits::BODY_BYTES_MAX`], refused from
//! `Content-Length` before a byte is read), and time ([`server::REQUEST_READ_MS`] for a whole request,
//! rate floors for heads and bodies after [`server::RATE_GRACE_MS`], [`server::IDLE_MS`] idle,
//! [`server::WRITE_MS`] per response, [`server::REPLY_WAIT_MS`] for the core). No one source may take
//! all of them: [`admission`] caps each source's connections and bodies being read and charges every
//! request to its source's budget before the head is parsed, in a table of bounded size.
//! Every refusal has a JSON `{"error": ...}` body; SPEC.md §4.1 lists them with their texts. Outbound
//! calls ([`client`]) follow no redirects, read at most [`client::RESPONSE_BODY_BYTES_MAX`], and, when a
//! transmit has `forbid_private`, resolve the host and drop local addresses *before* connecting.
//!
//! Inputs reach the core over a bounded async-channel; replies, command results and events leave it
//! over channels too. [`start`] returns a [`NodeHandle`] (commands, events, discovery, shutdown) and a
//! [`Running`] to wait on.
//!
//! ## State
//! `<cwd>/.darkmatter/passport.key` (0.5.3's format, created 0600 with OS randomness when missing)
//! and `<cwd>/.darkmatter/state-<id prefix>.redb` ([`storage`]). The directory is its owner's only
//! (0700) and so is every file in it (0600): the database is created 0600 before redb opens it, and
//! state that an older build left readable by others is tightened at start-up, never widened.
//! redb's file lock makes one node per
//! identity: a second start fails with [`StartError::AlreadyRunning`]. Each stored value is one byte of
//! record version and a postcard record (see `proto_core::store`); a `meta` table holds
//! `record_format` = [`storage::RECORD_FORMAT`]. A file without it (written before record versions)
//! is rewritten at open, in one transaction, with version byte 1 in front of every value; a file of a
//! newer format is refused at start-up, unchanged ([`StorageError::NewerFormat`]).
//!
//! ## Configuration
//! The `DARKMATTER_*` variables of 0.5.3's README, parsed and validated by [`config`]. When
//! `DARKMATTER_PUBLIC_URL` is unset the URL is derived as [`RuntimeConfig::public_url`] documents
//! (`http://127.0.0.1:<port>` for a loopback host, the LAN address for `0.0.0.0`).
//!
//! ## Running headless
//! The `darkmatter-node` binary ([`headless`]) runs a node until SIGINT/SIGTERM or end of standard
//! input. Its first line on stdout is `{"ready":true,"agent_id":..,"url":..,"listen":..,"state":..}`;
//! then it reads one JSON command per line on stdin and writes one JSON result per line on stdout:
//!
//! ```text
//! {"id":1,"cmd":"connect","target_url":"http://127.0.0.1:8101"}
//! {"id":1,"ok":true,"result":{"status":"connected","agent_id":"…",…}}
//! {"cmd":"send","target_agent_id":"…","content":"hi"}
//! {"cmd":"list_inbox"}
//! ```
//! Commands: `connect`, `accept`, `reject`, `disconnect`, `list_connections`, `list_pending`, `send`,
//! `forward`, `list_inbox`, `get_message`, `list_sent`, `get_sent`, `expire_sent`,
//! `wait_for_response`, `identity`, `update_bio`, `set_status`, `set_impression`, `get_impression`,
//! `set_rate_limit`, `status`, `network_info`, `list_discovered`, `discover_local`,
//! `discover_domain`, `create_shard`, `view_shards`, `announce`, `shutdown`, `wallet` (the node's own
//! wallet, [`solana_wallet`]), and the pool lines `pool_create`, `pool_add_provider`, `pool_set_provider`,
//! `pool_revoke`, `pool_list`, `pool_publish`, `pool_buy`, `pool_call`, `pool_info` ([`pool`]; see [`control`]; the
//! arguments are [`args`]' typed structs, shared with the MCP tools). Flags: `--no-stdin` (ignore stdin, run
//! until a signal), `--events` (also print `{"event":..}` lines). Control is deliberately not on the
//! network port.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod admission;
pub mod anchor;
pub mod args;
pub mod client;
pub mod config;
pub mod control;
pub mod discovery;
pub mod driver;
pub mod handle;
pub mod headless;
pub mod http;
pub mod lan_url;
pub mod pool;
pub mod sandbox;
pub mod server;
pub mod signals;
pub mod solana;
pub mod solana_wallet;
pub mod spawn;
pub mod storage;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smol::{Async, Executor, Timer};
use thiserror::Error;

pub use config::{ConfigError, RuntimeConfig};
pub use handle::{BoxFut, Mesh, NodeHandle, Running};
pub use storage::StorageError;

/// How long a stopping node lets open connections finish, in ms.
pub const SHUTDOWN_GRACE_MS: u64 = 2_000;
pub use proto_core::identity::DEFAULT_NAME_ID_HEX;
/// Beacons queued for the multicast socket; the core makes one per interval (or per `announce`), so
/// more than this waiting means the socket is stuck and the newest are dropped.
pub const BEACONS_QUEUED_MAX: usize = 4;

/// Why a node did not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// A node with this identity already runs (its state file is locked).
    #[error("a node with this identity is already running (state file {} is locked); attach to it instead", .0.display())]
    AlreadyRunning(std::path::PathBuf),
    /// The state directory, passport or database could not be opened.
    #[error(transparent)]
    Storage(StorageError),
    /// The peer port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The wallet could not be opened (its ledger is damaged, the RPC URL is invalid).
    #[error("cannot open the wallet: {0}")]
    Wallet(String),
    /// A thread or signal handler could not be set up.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

impl From<StorageError> for StartError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::AlreadyOpen(path) => StartError::AlreadyRunning(path),
            other => StartError::Storage(other),
        }
    }
}

fn random_u64() -> Result<u64, StartError> {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).map_err(|e| StartError::Storage(StorageError::Random(e.to_string())))?;
    Ok(u64::from_le_bytes(b))
}

fn spawn_thread(name: &str, f: impl FnOnce() + Send + 'static) -> Result<std::thread::JoinHandle<()>, StartError> {
    std::thread::Builder::new().name(name.to_owned()).spawn(f).map_err(StartError::Runtime)
}

/// Starts a node on its own threads and returns once it is listening.
pub fn start(config: RuntimeConfig) -> Result<(NodeHandle, Running), StartError> {
    start_with_admission(config, admission::Admission::new(admission::Limits::default()))
}

/// [`start`], with the peer server's per-source accounting given: tests pass smaller limits than the
/// defaults (all of loopback is one source) and keep the `Arc` to read the table.
pub fn start_with_admission(
    config: RuntimeConfig,
    admission: Arc<admission::Admission>,
) -> Result<(NodeHandle, Running), StartError> {
    start_full(config, admission, None)
}

/// [`start`] with agent spawning: when `launcher` is given and `DARKMATTER_AGENT_ENABLED` is true the
/// core spawns agents within the `DARKMATTER_AGENT_*` limits and `launcher` builds them ([`spawn`]).
pub fn start_with_launcher(
    config: RuntimeConfig,
    launcher: Arc<dyn spawn::Launcher>,
) -> Result<(NodeHandle, Running), StartError> {
    start_full(config, admission::Admission::new(admission::Limits::default()), Some(launcher))
}

fn start_full(
    config: RuntimeConfig,
    admission: Arc<admission::Admission>,
    launcher: Option<Arc<dyn spawn::Launcher>>,
) -> Result<(NodeHandle, Running), StartError> {
    let launcher = launcher.filter(|_| config.agent_enabled);
    storage::ensure_dir(&config.state_dir)?;
    let passport = storage::load_or_create_passport(&config.state_dir)?;
    let agent_id = passport.agent_id().as_str().to_owned();
    // The wallet is the node's, whatever front end runs it: it checks the payments peers claim and
    // makes the AntiMatter payouts; spending stays off until DARKMATTER_WALLET_SPEND_LIMIT is set.
    let wallet = Arc::new(solana_wallet::WalletService::from_config(&config, &passport).map_err(StartError::Wallet)?);
    let state_path = storage::Storage::path_for(&config.state_dir, &agent_id);
    let storage = storage::Storage::open(&state_path)?;
    let records = storage.load()?;
    let addr = SocketAddr::new(config.host, config.port);
    let listener = server::bind(config.host, config.port).map_err(|source| StartError::Bind { addr, source })?;
    let local_addr = listener.local_addr().map_err(StartError::Runtime)?;
    let listener = Async::new(listener).map_err(StartError::Runtime)?;
    let public_url = config.public_url(local_addr.port());
    // Empty when unconfigured: the core names the agent then, and keeps a later rename.
    let display_name = config.display_name.clone();
    let core_config = proto_core::Config {
        display_name,
        bio: config.bio.clone(),
        public_url: public_url.clone(),
        max_connections: config.max_connections,
        auto_accept_local: config.auto_accept_local,
        discovery: config.discovery,
        scan_ports: config.discovery_ports.clone(),
        listen_port: local_addr.port(),
        spawn: launcher.as_ref().map(|l| {
            let mut spawn = config.spawn_config();
            // The launcher's cap waits like the user's: a refused start stays queued.
            if let Some(max) = l.children_max() {
                spawn.concurrent_max = spawn.concurrent_max.min(max);
            }
            spawn
        }),
        trust_accept_min: config.trust_thresholds().0,
        trust_reject_max: config.trust_thresholds().1,
        anchors: config.anchor_nodes.clone(),
        ..proto_core::Config::default()
    };

    // Even with spawning off now: agents a crashed run left must not keep running unwatched.
    let (children, killed) = spawn::Children::recorded(config.state_dir.join("spawn").join("live"));
    for group in killed {
        eprintln!("darkmatter: killed agent process group {group} left running by a crashed run");
    }
    let (inputs_tx, inputs_rx) = async_channel::bounded(driver::INPUT_QUEUE_MAX);
    let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
    let (done_tx, done_rx) = async_channel::bounded::<()>(1);
    let lan = if config.discovery { lan_sockets() } else { None };
    // A few beacons may queue behind a slow send; more are dropped by the driver (best effort).
    let (beacon_tx, beacon_rx) = async_channel::bounded::<Vec<u8>>(BEACONS_QUEUED_MAX);
    let net = Arc::new(Executor::new());
    let client = client::Client::new();
    let subscribers: driver::Subscribers = Arc::new(Mutex::new(Vec::new()));
    let exit = Arc::new(Mutex::new(None));
    // Unbounded: a payout is handed over after its flow is resolved on disk, so dropping one would
    // lose a fee; their number is bounded by ANTIMATTER_FLOWS_MAX and the wallet drains them.
    let (payouts_tx, payouts_rx) = async_channel::unbounded();

    let parts = driver::CoreParts {
        passport,
        config: core_config,
        seed: random_u64()?,
        records,
        storage,
        inputs: inputs_rx,
        datagrams: lan.is_some().then_some(beacon_tx),
        loopback: inputs_tx.clone(),
        net: net.clone(),
        client: client.clone(),
        subscribers: subscribers.clone(),
        launcher,
        children,
        payouts: Some(payouts_tx),
        wallet: Some(wallet.clone()),
    };
    let core_thread = {
        let (exit, stop, done) = (exit.clone(), stop_tx.clone(), done_tx.clone());
        spawn_thread("dm-core", move || {
            let why = driver::run(parts);
            if let driver::CoreExit::PersistFailed(e) = &why {
                eprintln!("darkmatter: {e}");
            }
            *exit.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
            stop.close();
            drop(done);
        })?
    };

    let signal_handle = if config.handle_signals {
        Some(signals::install(stop_tx.clone()).map_err(StartError::Runtime)?)
    } else {
        None
    };
    // Only a URL derived from an unspecified host can change under us (SPEC §9.2).
    let watched_url = (config.public_url.is_none() && config.host.is_unspecified())
        .then(|| (config.host, local_addr.port(), public_url.clone()));
    let net_thread = {
        let server = server::Server::with_admission(inputs_tx.clone(), stop_rx.clone(), net.clone(), admission);
        let (inputs, stop, ex) = (inputs_tx.clone(), stop_rx, net.clone());
        spawn_thread("dm-net", move || {
            smol::block_on(ex.run(async {
                ex.spawn(server.clone().serve(listener)).detach();
                if let Some((host, port, url)) = watched_url {
                    let period = Duration::from_millis(lan_url::LAN_URL_RECHECK_MS);
                    let watch = lan_url::watch_loop(
                        host,
                        port,
                        url,
                        period,
                        lan_url::lan_addresses,
                        inputs.clone(),
                        stop.clone(),
                    );
                    ex.spawn(watch).detach();
                }
                if let Some((sender, listener)) = lan {
                    ex.spawn(discovery::send_loop(sender, beacon_rx, stop.clone())).detach();
                    ex.spawn(discovery::listen_loop(listener, inputs.clone(), stop.clone())).detach();
                }
                let _ = stop.recv().await;
                let grace = Instant::now() + Duration::from_millis(SHUTDOWN_GRACE_MS);
                while server.open_connections() > 0 && Instant::now() < grace {
                    Timer::after(Duration::from_millis(20)).await;
                }
                let _ = inputs.send(driver::Input::Shutdown).await;
            }));
            if let Some(h) = signal_handle {
                h.close();
            }
            drop(done_tx);
        })?
    };

    let failed = inputs_tx.clone();
    // Called on the payout thread, never the core's: waiting for room loses no debt.
    wallet
        .clone()
        .pay_out(payouts_rx, move |p| drop(failed.send_blocking(driver::Input::PayoutFailed(p))))
        .map_err(StartError::Runtime)?;
    let handle = NodeHandle {
        shared: Arc::new(handle::Shared {
            inputs: inputs_tx,
            subscribers,
            stop: stop_tx,
            done: done_rx,
            agent_id,
            public_url,
            local_addr,
            state_path,
            wallet,
        }),
    };
    Ok((handle, Running { threads: vec![core_thread, net_thread], exit }))
}

/// The beacon sender and listener, or `None` (with a warning) when this host has no multicast.
fn lan_sockets() -> Option<(Async<std::net::UdpSocket>, Async<std::net::UdpSocket>)> {
    let open = || -> std::io::Result<_> {
        Ok((Async::new(discovery::beacon_sender()?)?, Async::new(discovery::beacon_listener()?)?))
    };
    match open() {
        Ok(pair) => Some(pair),
        Err(e) => {
            eprintln!("darkmatter: LAN discovery off (multicast unavailable: {e})");
            None
        }
    }
}
