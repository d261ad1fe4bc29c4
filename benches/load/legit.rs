//! The legitimate side of a run: connected peers sending signed messages at a steady rate, newcomers
//! asking to connect from addresses of their own, a monitor reading `GET /status`, and the agent, who
//! reads its inbox and decides pending requests every so often.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use proto_core::Passport;
use serde_json::{json, Value};

use super::net::{self, source};
use super::node::NodeProc;
use super::sign;
use super::sleep_until;
use super::stats::{Kind, Probes};

/// Wait for one legitimate answer, in ms: longer is counted as not served.
pub const ANSWER_WAIT_MS: u64 = 10_000;

/// The node under load. A kill -9 replaces its process; `down` is set meanwhile and `restarts` counts
/// them: a request that starts or ends while the node is down, or spans a restart, is not counted
/// (the outage is the test's own doing).
pub struct Target {
    current: Mutex<Arc<NodeProc>>,
    /// Its listening address (the same across restarts).
    pub addr: SocketAddr,
    /// Its agent id.
    pub id: String,
    /// Its peer URL.
    pub url: String,
    /// Set from a kill until the restarted node is ready.
    pub down: AtomicBool,
    /// kill -9 so far.
    pub restarts: AtomicU64,
}

impl Target {
    /// Wraps a running node.
    pub fn new(node: NodeProc) -> Result<Self, String> {
        let (addr, id, url) = (node.addr()?, node.agent_id(), node.url());
        Ok(Self {
            current: Mutex::new(Arc::new(node)),
            addr,
            id,
            url,
            down: AtomicBool::new(false),
            restarts: AtomicU64::new(0),
        })
    }

    /// The running process.
    pub fn node(&self) -> Arc<NodeProc> {
        self.current.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts a restarted process in place.
    pub fn replace(&self, node: NodeProc) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(node);
    }

    fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Acquire)
    }
}

/// A connected peer whose key the load generator signs with.
pub struct Peer {
    /// Its key (read from its node's state directory).
    pub passport: Passport,
    /// Its node's URL (its messages' webhooks point there).
    pub url: String,
    /// The source address its messages come from.
    pub source: Ipv4Addr,
}

/// Every message the node acknowledged (2xx) and every message the agent read: after any number
/// of kill -9, the first must be a subset of the second plus what is still in the inbox.
#[derive(Default)]
pub struct Ledger {
    /// Ids answered 2xx.
    pub acked: Mutex<HashSet<String>>,
    /// Ids the agent saw listed in the inbox (and then read away).
    pub read: Mutex<HashSet<String>>,
}

impl Ledger {
    /// Acknowledged ids neither read nor in `inbox`.
    pub fn lost(&self, inbox: &HashSet<String>) -> Vec<String> {
        let read = self.read.lock().unwrap_or_else(|p| p.into_inner());
        let acked = self.acked.lock().unwrap_or_else(|p| p.into_inner());
        let mut lost: Vec<String> =
            acked.iter().filter(|id| !read.contains(*id) && !inbox.contains(*id)).cloned().collect();
        lost.sort();
        lost
    }
}

/// The legitimate load.
pub struct Config {
    /// Connected peers, each sending one message every `message_every`.
    pub peers: Vec<Peer>,
    /// Interval between one peer's messages.
    pub message_every: Duration,
    /// Interval between newcomers' requests.
    pub newcomer_every: Duration,
    /// Newcomers come from 127.0.0.`first`, `first + 1`, ... (`count` addresses in turn).
    pub newcomer_sources: (u8, u8),
    /// Interval between status reads.
    pub status_every: Duration,
    /// The status reader's address.
    pub status_source: u8,
    /// Interval between the agent's rounds (read the inbox, decide pending requests).
    pub review_every: Duration,
    /// Messages whose id starts with this stay unread (an agent ignoring a stranger); `None`: all read.
    pub leave_unread: Option<String>,
    /// Whether the agent disconnects each newcomer once it is connected, so that over a long run the
    /// legitimate load never fills the connection table by itself (a short run leaves them: a slot
    /// freed that way would be taken by whatever arrives next).
    pub let_go: bool,
    /// Where newcomers say they serve (a [`net::Sink`]).
    pub sink_url: String,
    /// Prefix of the legitimate messages' ids.
    pub id_prefix: String,
}

/// A newcomer's request the agent has not decided yet.
struct Waiting {
    request_id: String,
    agent_id: String,
    probe: usize,
}

/// What the agent has to do: requests to decide, peers to let go again.
#[derive(Default)]
struct AgentQueue {
    waiting: Vec<Waiting>,
    disconnect: Vec<String>,
}

/// The running legitimate load.
pub struct Legit {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// What the clients saw.
    pub probes: Arc<Probes>,
    queue: Arc<Mutex<AgentQueue>>,
    target: Arc<Target>,
    ledger: Arc<Ledger>,
    config: Arc<Config>,
}

impl Legit {
    /// Starts every client and the agent.
    pub fn start(target: Arc<Target>, config: Config, ledger: Arc<Ledger>) -> Self {
        let config = Arc::new(config);
        let stop = Arc::new(AtomicBool::new(false));
        let probes = Arc::new(Probes::default());
        let queue = Arc::new(Mutex::new(AgentQueue::default()));
        let mut me = Self { stop, threads: Vec::new(), probes, queue, target, ledger, config };
        for i in 0..me.config.peers.len() {
            let w = me.worker();
            me.threads.push(std::thread::spawn(move || w.peer_loop(i)));
        }
        let w = me.worker();
        me.threads.push(std::thread::spawn(move || w.newcomer_loop()));
        let w = me.worker();
        me.threads.push(std::thread::spawn(move || w.status_loop()));
        let w = me.worker();
        me.threads.push(std::thread::spawn(move || w.agent_loop()));
        me
    }

    fn worker(&self) -> Worker {
        Worker {
            stop: self.stop.clone(),
            probes: self.probes.clone(),
            queue: self.queue.clone(),
            target: self.target.clone(),
            ledger: self.ledger.clone(),
            config: self.config.clone(),
        }
    }

    /// Stops the clients, lets the agent decide what is still waiting, and returns the probes.
    pub fn stop(mut self) -> Arc<Probes> {
        self.stop.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.worker().agent_round();
        self.probes.clone()
    }
}

/// One thread's view of the shared state.
struct Worker {
    stop: Arc<AtomicBool>,
    probes: Arc<Probes>,
    queue: Arc<Mutex<AgentQueue>>,
    target: Arc<Target>,
    ledger: Arc<Ledger>,
    config: Arc<Config>,
}

impl Worker {
    /// One request from `from`; `None` when the node was down at its start or end, or restarted
    /// meanwhile.
    fn post(&self, from: Ipv4Addr, method: &str, path: &str, body: &[u8]) -> Option<(u16, Value, Duration)> {
        let restarts = self.target.restarts();
        if self.target.is_down() {
            return None;
        }
        let t0 = Instant::now();
        let answer = net::exchange(from, self.target.addr, method, path, body, Duration::from_millis(ANSWER_WAIT_MS));
        let latency = t0.elapsed();
        if self.target.is_down() || self.target.restarts() != restarts {
            return None;
        }
        Some(answer.map(|(s, v)| (s, v, latency)).unwrap_or((0, Value::Null, latency)))
    }

    fn peer_loop(&self, i: usize) {
        let peer = &self.config.peers[i];
        let mut next = Instant::now();
        for n in 0u64.. {
            if !sleep_until(next, &self.stop) {
                return;
            }
            next += self.config.message_every;
            let id = format!("{}-{i}-{n:06}", self.config.id_prefix);
            let webhook = format!("{}/__darkmatter__/webhook/{id}", peer.url);
            let body =
                sign::message(&peer.passport, &self.target.id, &id, &format!("legitimate message {n}"), &webhook);
            let Some((status, answer, latency)) = self.post(peer.source, "POST", "/__darkmatter__/message", &body)
            else {
                continue;
            };
            let served = (200..300).contains(&status);
            if served {
                self.ledger.acked.lock().unwrap_or_else(|p| p.into_inner()).insert(id);
            }
            self.probes.record(Kind::Message, status, error_text(&answer), served, latency);
        }
    }

    fn newcomer_loop(&self) {
        let (first, count) = self.config.newcomer_sources;
        let mut next = Instant::now();
        for n in 0u64.. {
            if !sleep_until(next, &self.stop) {
                return;
            }
            next += self.config.newcomer_every;
            let p = sign::fresh_passport();
            let body = sign::connection_request(&p, &self.config.sink_url, &self.target.url, &format!("newcomer-{n}"));
            let from = source(first + (n % u64::from(count.max(1))) as u8);
            let Some((status, answer, latency)) = self.post(from, "POST", "/__darkmatter__/connection_request", &body)
            else {
                continue;
            };
            let answered = (200..300).contains(&status);
            let probe = self.probes.record(Kind::Newcomer, status, error_text(&answer), answered, latency);
            let agent_id = p.agent_id().as_str().to_owned();
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            match (answered, answer["auto_accepted"].as_bool(), answer["request_id"].as_str()) {
                (true, Some(true), _) => q.disconnect.push(agent_id),
                (true, _, Some(request_id)) => {
                    q.waiting.push(Waiting { request_id: request_id.to_owned(), agent_id, probe })
                }
                (true, ..) => self.probes.settle(probe, false),
                _ => {}
            }
        }
    }

    fn status_loop(&self) {
        let mut next = Instant::now();
        while sleep_until(next, &self.stop) {
            next += self.config.status_every;
            let from = source(self.config.status_source);
            if let Some((status, answer, latency)) = self.post(from, "GET", "/__darkmatter__/status", b"") {
                self.probes.record(Kind::Status, status, error_text(&answer), status == 200, latency);
            }
        }
    }

    fn agent_loop(&self) {
        let mut next = Instant::now() + self.config.review_every;
        while sleep_until(next, &self.stop) {
            next += self.config.review_every;
            self.agent_round();
        }
    }

    /// Reads the inbox and accepts the newcomers still pending; with `let_go`, disconnects them and
    /// the auto-accepted ones again.
    fn agent_round(&self) {
        if self.target.is_down() {
            return;
        }
        let node = self.target.node();
        let _ = drain_inbox(&node, &self.ledger, self.config.leave_unread.as_deref());
        let Ok(pending) = node.call(json!({"cmd": "list_pending"})) else { return };
        let listed: HashSet<&str> = pending["requests"]
            .as_array()
            .map(|a| a.iter().filter_map(|r| r["request_id"].as_str()).collect())
            .unwrap_or_default();
        let (waiting, disconnect) = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            (std::mem::take(&mut q.waiting), std::mem::take(&mut q.disconnect))
        };
        let mut done = disconnect;
        for w in waiting {
            // Displaced from the pending table before the agent looked: not served.
            let accepted = listed.contains(w.request_id.as_str())
                && node.call(json!({"cmd": "accept", "request_id": w.request_id})).is_ok();
            self.probes.settle(w.probe, accepted);
            if accepted {
                done.push(w.agent_id);
            }
        }
        if !self.config.let_go {
            return;
        }
        for agent_id in done {
            let _ = node.call(json!({"cmd": "disconnect", "agent_id": agent_id}));
        }
    }
}

/// A refusal's text (its JSON `error`), cut to its first characters for a report line.
fn error_text(answer: &Value) -> &str {
    const CHARS_MAX: usize = 40;
    let text = answer["error"].as_str().unwrap_or("");
    let end = text.char_indices().nth(CHARS_MAX).map_or(text.len(), |(i, _)| i);
    &text[..end]
}

/// Reads away every message in the inbox (but those whose id starts with `leave_unread`). Every id
/// listed is recorded in the ledger as read at once: being listed proves it was stored, and a read
/// whose answer a kill -9 cut off may still have removed it. Returns the ids left in the inbox.
pub fn drain_inbox(node: &NodeProc, ledger: &Ledger, leave_unread: Option<&str>) -> Result<HashSet<String>, String> {
    let list = node.call(json!({"cmd": "list_inbox"}))?;
    let ids: Vec<String> = list["messages"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m["message_id"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let mut left = HashSet::new();
    ledger.read.lock().unwrap_or_else(|p| p.into_inner()).extend(ids.iter().cloned());
    for id in ids {
        if leave_unread.is_some_and(|p| id.starts_with(p)) {
            left.insert(id);
            continue;
        }
        node.call(json!({"cmd": "get_message", "message_id": id, "consume": true}))?;
    }
    Ok(left)
}
