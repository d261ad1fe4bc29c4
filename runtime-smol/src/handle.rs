//! [`NodeHandle`]: what the front end (the MCP server, the headless binary, tests) holds, and
//! [`Mesh`]: the node's command surface as a trait, so a front end talks the same way to the node in
//! its own process and to one it reaches over a socket.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use async_channel::{Receiver, Sender};
use proto_core::{Command, CommandError, CommandOutput, Event};
use serde_json::{json, Value};

use crate::driver::{CoreExit, Input, Subscribers, EVENTS_BUFFERED_MAX};

/// A boxed, sendable future: what [`Mesh`]'s async methods return (keeps the trait object-safe).
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A running DarkMatter node as its clients see it: the in-process [`NodeHandle`], the `darkmatter`
/// attach-mode client, test fakes. Every method is callable from any executor: results come back
/// over runtime-agnostic channels, never through the reactor of a particular runtime.
pub trait Mesh: Send + Sync + 'static {
    /// Runs one proto-core command; answers with its JSON result once the node (and, for sends,
    /// connects and waits, the peers involved) has answered.
    fn command(&self, command: Command) -> BoxFut<'_, Result<Value, CommandError>>;

    /// Looks for peers now: a localhost port scan. Answers with the peers found, each with its card.
    /// An ordinary command ([`Command::DiscoverLocal`]); a client may override it.
    fn discover_local(&self) -> BoxFut<'_, Result<Value, CommandError>> {
        self.command(Command::DiscoverLocal)
    }

    /// Fetches `https://<domain>/.well-known/darkmatter.json` and answers with the card found there.
    /// An ordinary command ([`Command::DiscoverDomain`]); a client may override it.
    fn discover_domain(&self, domain: String) -> BoxFut<'_, Result<Value, CommandError>> {
        self.command(Command::DiscoverDomain { domain })
    }

    /// One wallet operation ([`crate::solana_wallet::WalletCall`]). Only a mesh that holds a wallet
    /// service answers it (the MCP server's); the node alone has none.
    fn wallet(&self, call: crate::solana_wallet::WalletCall) -> BoxFut<'_, Result<Value, CommandError>> {
        let _ = call;
        Box::pin(async { Err(CommandError::InvalidArgument("This node has no wallet service".to_owned())) })
    }

    /// Switches the sandbox of spawned agents on or off. Only a mesh that holds the spawner answers
    /// it (the MCP server's, where the agents are built); the node alone has none.
    fn sandbox(&self, on: bool) -> BoxFut<'_, Result<Value, CommandError>> {
        let _ = on;
        Box::pin(async {
            Err(CommandError::InvalidArgument("This node spawns no agents here: no sandbox to switch".to_owned()))
        })
    }

    /// The wallet verified payment notice `message_id` on-chain (`units` arrived): AntiMatter starts
    /// its signal (SPEC §21.1). Answers the signal id. Only a mesh that owns its node answers it.
    fn verified_payment(&self, message_id: String, units: u64) -> BoxFut<'_, Result<String, String>> {
        let _ = (message_id, units);
        Box::pin(async { Err("This mesh does not own its node".to_owned()) })
    }

    /// AntiMatter payouts for the wallet to make, each once (SPEC §21.6): `None` for a mesh that does
    /// not own its node.
    fn payouts(&self) -> Option<Receiver<proto_core::antimatter::ledger::Payout>> {
        None
    }

    /// The wallet could not make `payout`: the node owes it again.
    fn payout_failed(&self, payout: proto_core::antimatter::ledger::Payout) {
        let _ = payout;
    }

    /// The node's events. Implementations may hand every caller the same stream, so call it once
    /// and fan out.
    fn events(&self) -> Receiver<Event>;

    /// Stops the node (flushes state, closes the port), or, for a client of a node another process
    /// owns, lets go of it. Idempotent.
    fn shutdown(&self) -> BoxFut<'_, ()>;
}

impl Mesh for NodeHandle {
    fn command(&self, command: Command) -> BoxFut<'_, Result<Value, CommandError>> {
        Box::pin(NodeHandle::command(self, command))
    }

    fn verified_payment(&self, message_id: String, units: u64) -> BoxFut<'_, Result<String, String>> {
        Box::pin(async move {
            let (done, rx) = async_channel::bounded(1);
            let input = Input::VerifiedPayment { message_id, units, done };
            self.shared.inputs.send(input).await.map_err(|_| stopped().to_string())?;
            rx.recv().await.map_err(|_| stopped().to_string())?
        })
    }

    /// Runs on the blocking pool: a send waits for the cluster to confirm.
    fn wallet(&self, call: crate::solana_wallet::WalletCall) -> BoxFut<'_, Result<Value, CommandError>> {
        let wallet = self.shared.wallet.clone();
        Box::pin(async move {
            smol::unblock(move || wallet.call(call)).await.map_err(|e| CommandError::InvalidArgument(e.0))
        })
    }

    fn events(&self) -> Receiver<Event> {
        NodeHandle::events(self)
    }

    fn shutdown(&self) -> BoxFut<'_, ()> {
        Box::pin(NodeHandle::shutdown(self))
    }
}

/// Shared between clones of a handle.
pub(crate) struct Shared {
    pub inputs: Sender<Input>,
    pub subscribers: Subscribers,
    pub stop: Sender<()>,
    pub done: Receiver<()>,
    pub agent_id: String,
    pub public_url: String,
    pub local_addr: SocketAddr,
    pub state_path: PathBuf,
    /// The node's wallet (it also makes the AntiMatter payouts, on a thread of its own).
    pub wallet: Arc<crate::solana_wallet::WalletService>,
}

/// A running node. Cheap to clone; every clone talks to the same node.
#[derive(Clone)]
pub struct NodeHandle {
    pub(crate) shared: Arc<Shared>,
}

fn stopped() -> CommandError {
    CommandError::Limited("The node is stopped".to_owned())
}

impl NodeHandle {
    /// Runs a command on the node; resolves with its typed result when the node has finished it (for
    /// `Connect`, `Send`, `Forward` and `WaitForResponse`: when the peers have answered).
    pub async fn run(&self, command: Command) -> Result<CommandOutput, CommandError> {
        let (tx, rx) = async_channel::bounded(1);
        self.shared.inputs.send(Input::Command(command, tx)).await.map_err(|_| stopped())?;
        rx.recv().await.map_err(|_| stopped())?
    }

    /// [`NodeHandle::run`], its result as the JSON object every front end shows.
    pub async fn command(&self, command: Command) -> Result<Value, CommandError> {
        self.run(command).await.map(|out| out.to_json())
    }

    /// [`NodeHandle::command`] for callers without an executor.
    pub fn command_blocking(&self, command: Command) -> Result<Value, CommandError> {
        smol::block_on(self.command(command))
    }

    /// A new subscription to the node's events (bounded: a subscriber more than
    /// [`EVENTS_BUFFERED_MAX`] events behind misses the newest ones). Drop the receiver to unsubscribe.
    pub fn events(&self) -> Receiver<Event> {
        let (tx, rx) = async_channel::bounded(EVENTS_BUFFERED_MAX);
        self.shared.subscribers.lock().unwrap_or_else(|p| p.into_inner()).push(tx);
        rx
    }

    /// Scans the localhost ports of `DARKMATTER_DISCOVERY_PORTS` (in parallel, well under a second)
    /// and notes every DarkMatter node found. Works even with `DARKMATTER_DISCOVERY=false`, which only
    /// stops background discovery.
    pub async fn discover_local(&self) -> Value {
        // The core always answers a scan with its report; only a stopped node gives an error.
        self.command(Command::DiscoverLocal).await.unwrap_or_else(|e| json!({"success": false, "error": e.to_string()}))
    }

    /// Fetches `https://<domain>/.well-known/darkmatter.json` (`http` for localhost), checks it and
    /// notes the node found.
    pub async fn discover_domain(&self, domain: &str) -> Result<Value, String> {
        self.command(Command::DiscoverDomain { domain: domain.to_owned() }).await.map_err(|e| match e {
            CommandError::Peer(why) => why,
            other => other.to_string(),
        })
    }

    /// Sends a LAN beacon now (when background discovery runs); returns whether one was asked for.
    pub fn announce(&self) -> bool {
        self.shared.inputs.try_send(Input::Announce).is_ok()
    }

    /// Stops the node gracefully and waits until it has: the server stops accepting, requests in
    /// progress get their answers (for a short grace period), the state is closed.
    pub async fn shutdown(&self) {
        self.shared.stop.close();
        let _ = self.shared.done.recv().await;
    }

    /// Whether the node has been asked to stop (or stopped by itself).
    pub fn is_stopping(&self) -> bool {
        self.shared.stop.is_closed()
    }

    /// This node's agent id.
    pub fn agent_id(&self) -> &str {
        &self.shared.agent_id
    }

    /// The URL peers reach this node at.
    pub fn public_url(&self) -> &str {
        &self.shared.public_url
    }

    /// The address the peer server listens on (the real port when 0 was configured).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The state file.
    pub fn state_path(&self) -> &Path {
        &self.shared.state_path
    }

    /// A summary for logs and the headless binary's first line.
    pub fn info(&self) -> Value {
        json!({"agent_id": self.agent_id(), "url": self.public_url(), "listen": self.local_addr().to_string(), "state": self.state_path().display().to_string()})
    }
}

/// The threads of a running node.
pub struct Running {
    pub(crate) threads: Vec<JoinHandle<()>>,
    pub(crate) exit: Arc<Mutex<Option<CoreExit>>>,
}

impl Running {
    /// Blocks until the node has stopped. `Err` when it stopped because a commit failed.
    pub fn wait(self) -> Result<(), String> {
        for t in self.threads {
            let _ = t.join();
        }
        match self.exit.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(CoreExit::PersistFailed(e)) => Err(e.to_string()),
            _ => Ok(()),
        }
    }
}
