//! The core task: the only owner of the [`Node`] and the only reader of the clocks.
//!
//! It waits for an [`Input`] or the node's deadline, then takes that input and every other one already
//! queued (up to [`BATCH_INPUTS_MAX`]) — a *group commit*. For each it reads [`Clock::now`] once,
//! hands the input in, and drains [`Node::poll_output`] in order:
//! - `Persist` → its changes join the batch's one write transaction;
//! - every output after the batch's first `Persist` waits, in order, until that transaction is
//!   committed (one fsync for the whole batch); outputs before it are carried out at once;
//! - `Reply` → back to the connection task waiting for it;
//! - `Transmit` → a blocking ureq call on the bounded pool, whose result comes back as an input;
//! - `Event` → every subscriber; `Done` → the command's waiter; `Timeout` → the next deadline.
//!
//! So the core's contract holds — nothing after a `Persist` happens before it is durable, and no
//! peer is acknowledged before its message is committed — while a busy node pays one fsync per batch
//! instead of one per input. A failed commit stops the node: nothing that waited on it is carried out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_channel::{Receiver, Sender};
use proto_core::antimatter::ledger::Payout;
use proto_core::{
    Change, Command, CommandError, CommandId, CommandOutput, Event, HttpResponse, InboundId, InboundRequest, Method,
    Node, Now, OutboundId, Output, Reply, Transmit,
};

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
/// Inputs handled before their persists are committed together. Bounds the latency a batch adds to
/// its first input and the size of one write transaction.
pub const BATCH_INPUTS_MAX: usize = 256;

/// Something for the core to hand to the node.
pub enum Input {
    /// A peer's request; the reply goes back on `reply`.
    Request {
        /// Method.
        method: Method,
        /// Path without query.
        path: String,
        /// The query string, still percent-encoded (the node reads none; the anchor's polls do).
        query: String,
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
    Command(Command, Sender<Result<CommandOutput, CommandError>>),
    /// A LAN datagram.
    Datagram(IpAddr, Vec<u8>),
    /// Send our LAN beacon now.
    Announce,
    /// A spawned agent ended (or never started).
    SpawnExit(proto_core::spawn::SpawnId, proto_core::spawn::SpawnOutcome),
    /// The wallet verified this payment notice on-chain (`units` arrived): AntiMatter may start its
    /// signal. The answer is the signal id, or why none started.
    VerifiedPayment {
        /// The notice in the inbox.
        message_id: String,
        /// Base units that arrived.
        units: u64,
        /// Where the answer goes.
        done: Sender<Result<String, String>>,
    },
    /// The wallet could not make this AntiMatter payout: it is owed again.
    PayoutFailed(Payout),
    /// A pool's upstream answered (or failed).
    Upstream(proto_core::pool::UpstreamId, Result<proto_core::pool::UpstreamResponse, proto_core::pool::UpstreamError>),
    /// The wallet's verdict on a payment the core asked it to check.
    PaymentChecked(proto_core::CheckId, proto_core::PaymentVerdict),
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
        self.origin
            .checked_add(Duration::from_millis(mono_ms))
            .unwrap_or_else(|| self.origin + Duration::from_secs(86_400 * 365))
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
    /// Where beacons go to be multicast (`None`: no LAN socket, beacons are dropped).
    pub datagrams: Option<Sender<Vec<u8>>>,
    /// Where transmit results go (a clone of the inputs' sender).
    pub loopback: Sender<Input>,
    /// Executor that runs transmit tasks.
    pub net: Arc<Executor<'static>>,
    /// HTTP client.
    pub client: Client,
    /// Event subscribers.
    pub subscribers: Subscribers,
    /// Builds spawned agents (`None`: spawning is off, the core's config says so too).
    pub launcher: Option<Arc<dyn crate::spawn::Launcher>>,
    /// Where live children are counted (and recorded, for the next start after a crash).
    pub children: crate::spawn::Children,
    /// Where AntiMatter payouts go once the flow they settle is committed (`None`: no wallet takes
    /// them; they are dropped and logged, and the fee stays with this node).
    pub payouts: Option<Sender<Payout>>,
    /// The node's wallet: it checks claimed payments (`None`: every claim is refused).
    pub wallet: Option<Arc<crate::solana_wallet::WalletService>>,
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
    probe_pool: Arc<Semaphore>,
    subscribers: Subscribers,
    replies: HashMap<InboundId, Sender<Reply>>,
    commands: HashMap<CommandId, Sender<Result<CommandOutput, CommandError>>>,
    next_inbound: u64,
    next_command: u64,
    deadline: Option<u64>,
    /// The open batch's changes, committed together by [`Core::commit`].
    pending: Vec<Change>,
    /// Outputs that came after the open batch's first persist, carried out once it is committed.
    waiting: Vec<Output>,
    datagrams: Option<Sender<Vec<u8>>>,
    launcher: Option<Arc<dyn crate::spawn::Launcher>>,
    children: crate::spawn::Children,
    payouts: Option<Sender<Payout>>,
    wallet: Option<Arc<crate::solana_wallet::WalletService>>,
}

/// The operating system's CSPRNG: it alone seals relayed bodies (SPEC §2.7) and makes commit-reveal
/// nonces (SPEC §21.3).
struct OsEntropy;

impl proto_core::Entropy for OsEntropy {
    fn fill(&self, buf: &mut [u8]) -> Result<(), String> {
        getrandom::getrandom(buf).map_err(|e| format!("OS random source failed: {e}"))
    }
}

/// Runs the core until shutdown. Blocks the calling thread (run it on its own).
pub fn run(parts: CoreParts) -> CoreExit {
    let clock = Clock::start();
    let now = clock.now();
    let (mut node, skipped) = Node::restore(parts.passport, parts.config, parts.seed, now, parts.records);
    // Relayed bodies and commit-reveal nonces come from the OS, never from the core's seeded RNG.
    node.set_entropy(Arc::new(OsEntropy));
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
        probe_pool: Arc::new(Semaphore::new(crate::discovery::SCAN_CONCURRENT_MAX)),
        subscribers: parts.subscribers,
        replies: HashMap::new(),
        commands: HashMap::new(),
        next_inbound: 1,
        next_command: 1,
        deadline: None,
        pending: Vec::new(),
        waiting: Vec::new(),
        datagrams: parts.datagrams,
        launcher: parts.launcher,
        children: parts.children,
        payouts: parts.payouts,
        wallet: parts.wallet,
    };
    let exit = smol::block_on(core.run(parts.inputs));
    // Nobody would enforce their timeouts once the node is gone.
    core.children.kill_all();
    exit
}

impl Core {
    async fn run(&mut self, inputs: Receiver<Input>) -> CoreExit {
        // What restoring produced (timers, repairs) is carried out before the first wait.
        self.stage();
        if let Err(e) = self.commit() {
            return CoreExit::PersistFailed(e);
        }
        loop {
            let timer = match self.deadline {
                Some(ms) => Timer::at(self.clock.instant(ms)),
                None => Timer::never(),
            };
            let next = smol::future::or(async { inputs.recv().await.ok() }, async {
                timer.await;
                None
            })
            .await;
            let mut stop = match next {
                None if inputs.is_closed() && inputs.is_empty() => true,
                None => {
                    self.node.handle_timeout(self.clock.now());
                    false
                }
                Some(input) => self.take(input),
            };
            self.stage();
            // Group commit: everything that queued up meanwhile joins this batch.
            for _ in 1..BATCH_INPUTS_MAX {
                if stop {
                    break;
                }
                let Ok(input) = inputs.try_recv() else { break };
                stop = self.take(input);
                self.stage();
            }
            // Under a steady stream of inputs the wait above never sees the timer fire: a deadline
            // that has passed is honoured here, so housekeeping and waits are not starved.
            let now = self.clock.now();
            if self.deadline.is_some_and(|ms| now.mono_ms >= ms) {
                self.node.handle_timeout(now);
                self.stage();
            }
            if let Err(e) = self.commit() {
                return CoreExit::PersistFailed(e);
            }
            if stop {
                return CoreExit::Stopped;
            }
        }
    }

    /// Hands one input to the node; true for [`Input::Shutdown`].
    fn take(&mut self, input: Input) -> bool {
        if matches!(input, Input::Shutdown) {
            return true;
        }
        let now = self.clock.now();
        self.handle(now, input);
        false
    }

    fn handle(&mut self, now: Now, input: Input) {
        match input {
            Input::Request { method, path, body, source, reply, .. } => {
                let id = InboundId(self.next_inbound);
                self.next_inbound += 1;
                self.replies.insert(id, reply);
                self.node.handle_request(now, InboundRequest { id, method, path, body, source });
            }
            Input::Response(id, result) => self.node.handle_response(now, id, result),
            Input::SpawnExit(id, outcome) => self.node.handle_spawn_exit(now, id, outcome),
            Input::Command(command, done) => {
                let id = CommandId(self.next_command);
                self.next_command += 1;
                self.commands.insert(id, done);
                self.node.handle_command(now, id, command);
            }
            Input::Datagram(source, payload) => self.node.handle_datagram(now, source, &payload),
            Input::Announce => self.node.handle_announce(now),
            Input::VerifiedPayment { message_id, units, done } => {
                let r = self.node.handle_verified_payment(now, &message_id, units).map_err(|e| e.to_string());
                let _ = done.try_send(r);
            }
            Input::PayoutFailed(payout) => self.node.payout_failed(now, &payout),
            Input::PaymentChecked(id, verdict) => self.node.handle_payment_checked(now, id, verdict),
            Input::Upstream(id, result) => self.node.handle_upstream(now, id, result),
            Input::Shutdown => {}
        }
    }

    /// Drains the node's outputs into the open batch: persists join the transaction, and anything
    /// after the batch's first persist waits for the commit; the rest is carried out now.
    fn stage(&mut self) {
        loop {
            match self.node.poll_output() {
                Output::Persist(changes) => self.pending.extend(changes),
                Output::Timeout(deadline) => {
                    self.deadline = deadline;
                    return;
                }
                output if self.pending.is_empty() => self.carry_out(output),
                output => self.waiting.push(output),
            }
        }
    }

    /// Commits the open batch in one durable transaction, then carries out what waited on it.
    fn commit(&mut self) -> Result<(), crate::storage::StorageError> {
        if !self.pending.is_empty() {
            self.storage.apply(&self.pending)?;
            self.pending.clear();
        }
        for output in std::mem::take(&mut self.waiting) {
            self.carry_out(output);
        }
        // Only now is the end of each paid flow durable: a crash before this line pays nothing, and
        // after it the flow is resolved on disk, so nothing can pay it again.
        for payout in self.node.take_payouts() {
            match &self.payouts {
                Some(tx) => {
                    let _ = tx.try_send(payout);
                }
                None => {
                    eprintln!("darkmatter: AntiMatter payout of {} {} not made: no wallet", payout.units, payout.asset)
                }
            }
        }
        Ok(())
    }

    fn carry_out(&mut self, output: Output) {
        match output {
            Output::Reply(reply) => {
                if let Some(tx) = self.replies.remove(&reply.id) {
                    let _ = tx.try_send(reply);
                }
            }
            Output::Transmit(t) => self.transmit(t),
            Output::Event(e) => self.broadcast(*e),
            Output::Datagram(payload) => {
                // Best effort, like the multicast send itself: a full queue (a flood of announces)
                // or no LAN socket drops the beacon.
                if let Some(tx) = &self.datagrams {
                    let _ = tx.try_send(payload);
                }
            }
            Output::Done { id, result } => {
                if let Some(tx) = self.commands.remove(&id) {
                    let _ = tx.try_send(result);
                }
            }
            Output::Spawn(request) => self.spawn(request),
            Output::CheckPayment(check) => self.check_payment(check),
            Output::Upstream(call) => self.upstream(call),
            Output::Persist(_) | Output::Timeout(_) => unreachable!("handled by stage"),
        }
    }

    fn transmit(&self, t: Transmit) {
        // A scan's probes take turns among themselves, so a scan never crowds out message delivery.
        let pool = if t.probe { self.probe_pool.clone() } else { self.pool.clone() };
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

    /// Makes a pool's upstream call on the blocking pool, among the transmits' permits (so pool
    /// calls cannot crowd out more than their share); the answer comes back as an input.
    fn upstream(&self, call: proto_core::pool::UpstreamCall) {
        let (pool, back) = (self.pool.clone(), self.loopback.clone());
        self.net
            .spawn(async move {
                let _permit = pool.acquire_arc().await;
                let id = call.id;
                let result = smol::unblock(move || crate::pool::call(&call)).await;
                let _ = back.send(Input::Upstream(id, result)).await;
            })
            .detach();
    }

    /// Asks the wallet about a claimed payment on the blocking pool (it fetches the transaction);
    /// the verdict comes back as an input.
    fn check_payment(&self, check: proto_core::PaymentCheck) {
        let back = self.loopback.clone();
        let Some(wallet) = self.wallet.clone() else {
            let verdict = proto_core::PaymentVerdict::Refused("this node has no wallet".to_owned());
            std::thread::spawn(move || back.send_blocking(Input::PaymentChecked(check.id, verdict)));
            return;
        };
        self.net
            .spawn(async move {
                let id = check.id;
                let verdict = smol::unblock(move || wallet.verify_check(&check)).await;
                let _ = back.send(Input::PaymentChecked(id, verdict)).await;
            })
            .detach();
    }

    /// Starts a spawned agent ([`crate::spawn`]); one that cannot start is reported to the core at
    /// once, so its slot is freed and the user sees why.
    fn spawn(&self, request: proto_core::spawn::SpawnRequest) {
        let started = match &self.launcher {
            Some(launcher) => crate::spawn::start(launcher.clone(), &request, self.loopback.clone(), &self.children),
            None => Err("agent spawning is off in this runtime".to_owned()),
        };
        if let Err(reason) = started {
            let outcome = proto_core::spawn::SpawnOutcome::FailedToStart { reason };
            // The input queue is bounded; a full one is drained by this very thread, so wait on a
            // helper rather than here.
            let back = self.loopback.clone();
            std::thread::spawn(move || back.send_blocking(Input::SpawnExit(request.spawn_id, outcome)));
        }
    }

    fn broadcast(&self, event: Event) {
        let mut subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        subs.retain(|tx| match tx.try_send(event.clone()) {
            Ok(()) | Err(async_channel::TrySendError::Full(_)) => true,
            Err(async_channel::TrySendError::Closed(_)) => false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    /// T-B6, at the source: 10⁵ relay nonces drawn by two instances of the OS source (two starts of
    /// a node) never repeat. With a static sealing key, a repeated nonce would reveal plaintext XOR and
    /// the Poly1305 key; the core takes every nonce from this source (tested in proto-core).
    #[test]
    fn the_os_source_never_repeats_a_nonce_across_two_starts() {
        use proto_core::Entropy as _;
        let mut seen = std::collections::HashSet::new();
        for _start in 0..2 {
            let source = OsEntropy;
            for _ in 0..50_000 {
                let mut nonce = [0u8; proto_core::e2e::NONCE_BYTES];
                source.fill(&mut nonce).expect("the OS source answers");
                assert!(seen.insert(nonce), "a nonce repeated");
            }
        }
        assert_eq!(seen.len(), 100_000);
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("dm-driver-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        crate::storage::ensure_dir(&dir).unwrap();
        dir
    }

    /// A core with a fresh identity and default settings over this storage and input channel.
    fn parts(storage: Storage, inputs: Receiver<Input>, loopback: Sender<Input>) -> CoreParts {
        CoreParts {
            passport: proto_core::Passport::from_seed([3; 32]),
            config: proto_core::Config::default(),
            seed: 1,
            records: Vec::new(),
            storage,
            inputs,
            datagrams: None,
            launcher: None,
            children: crate::spawn::Children::default(),
            payouts: None,
            wallet: None,
            loopback,
            net: Arc::new(Executor::new()),
            client: Client::new(),
            subscribers: Arc::default(),
        }
    }

    /// Runs a core over `inputs` (already queued, then `Shutdown`) and returns its storage path and
    /// the number of commits it made.
    fn run_queued(dir: &std::path::Path, inputs: Vec<Input>) -> (std::path::PathBuf, u64) {
        let path = dir.join("state.redb");
        let storage = Storage::open(&path).unwrap();
        let commits = storage.commit_counter();
        let (tx, rx) = async_channel::bounded(INPUT_QUEUE_MAX);
        for input in inputs {
            tx.try_send(input).unwrap();
        }
        tx.try_send(Input::Shutdown).unwrap();
        assert!(matches!(run(parts(storage, rx, tx)), CoreExit::Stopped));
        (path, commits.load(Ordering::Relaxed))
    }

    #[test]
    fn queued_inputs_share_one_commit_and_are_answered_after_it() {
        let dir = temp_dir("group");
        let inputs_count = 20;
        let mut answers = Vec::new();
        let mut inputs = Vec::new();
        for i in 0..inputs_count {
            let (done, answer) = async_channel::bounded(1);
            inputs.push(Input::Command(Command::UpdateBio { bio: format!("bio number {i}") }, done));
            answers.push(answer);
        }
        // A fresh node commits its new profile on start-up; count that apart.
        let empty = temp_dir("group-empty");
        let (_, start_up) = run_queued(&empty, Vec::new());
        std::fs::remove_dir_all(&empty).unwrap();
        let (path, commits) = run_queued(&dir, inputs);
        assert_eq!(commits, start_up + 1, "one durable commit for the whole queued batch");
        for answer in answers {
            assert!(answer.try_recv().expect("every command is answered").is_ok());
        }
        // The last update is what the state file holds.
        let records = Storage::open(&path).unwrap().load().unwrap();
        let profile = records.iter().find(|(t, _, _)| *t == proto_core::Table::Profile).expect("profile record");
        let text = String::from_utf8_lossy(&profile.2);
        assert!(text.contains(&format!("bio number {}", inputs_count - 1)), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_batch_stops_at_its_limit() {
        let dir = temp_dir("limit");
        let mut answers = Vec::new();
        let mut inputs = Vec::new();
        for i in 0..BATCH_INPUTS_MAX + 1 {
            let (done, answer) = async_channel::bounded(1);
            inputs.push(Input::Command(Command::UpdateBio { bio: format!("b{i}") }, done));
            answers.push(answer);
        }
        let empty = temp_dir("limit-empty");
        let (_, start_up) = run_queued(&empty, Vec::new());
        std::fs::remove_dir_all(&empty).unwrap();
        let (_, commits) = run_queued(&dir, inputs);
        assert_eq!(commits, start_up + 2, "{BATCH_INPUTS_MAX} inputs per batch, then one more batch");
        assert!(answers.iter().all(|a| a.try_recv().is_ok_and(|r| r.is_ok())));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_steady_stream_of_inputs_does_not_starve_timers() {
        let dir = temp_dir("starve");
        let storage = Storage::open(&dir.join("state.redb")).unwrap();
        let (tx, rx) = async_channel::bounded(INPUT_QUEUE_MAX);
        let parts = parts(storage, rx, tx.clone());
        let feeder = std::thread::spawn(move || {
            let ask = |command: Command| {
                let (done, answer) = async_channel::bounded(1);
                tx.send_blocking(Input::Command(command, done)).unwrap();
                answer
            };
            // A broadcast with no connections leaves a sent record to wait on.
            let broadcast = proto_core::SendArgs {
                content: "x".into(),
                targets: proto_core::Targets::Broadcast { trust_min: -1.0 },
                metadata: Default::default(),
                in_reply_to: None,
                hops_remaining: 1,
            };
            let sent = ask(Command::Send(broadcast)).recv_blocking().unwrap().unwrap();
            let proto_core::CommandOutput::Delivered(sent) = sent else { panic!("a send answers with its delivery") };
            let message_id = sent.message_id;
            let wait = ask(Command::WaitForResponse { message_id, timeout_ms: 300 });
            // Keep the queue full (every send blocks until the core takes one) until the wait ends.
            let flood_started = Instant::now();
            let answered = loop {
                if wait.try_recv().is_ok() {
                    break true;
                }
                if flood_started.elapsed() > Duration::from_secs(20) {
                    break false;
                }
                for _ in 0..64 {
                    drop(ask(Command::Status));
                }
            };
            tx.send_blocking(Input::Shutdown).unwrap();
            answered
        });
        assert!(matches!(run(parts), CoreExit::Stopped));
        assert!(feeder.join().unwrap(), "the wait's deadline passed while inputs kept coming, and was honoured");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
