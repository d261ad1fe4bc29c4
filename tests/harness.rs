//! A tiny deterministic harness: a few in-memory [`Node`]s on a perfect network, one clock, and a
//! trace of one readable line per event. Delivery is FIFO and instant unless the clock is advanced,
//! so the same script always produces the same trace.

use std::collections::VecDeque;

use core::net::IpAddr;
use proto_core::{
    Command, CommandError, CommandId, Config, Event, HttpResponse, InboundId, InboundRequest, Method, Node, Now,
    Output, Passport, Table, Transmit,
};
use serde_json::Value;

/// 2026-01-01T00:00:00Z in µs: every harness clock starts here.
pub const EPOCH_US: i64 = 1_767_225_600_000_000;

/// One node in the harness.
pub struct Peer {
    /// Short name used in traces (`A`, `B`, ...).
    pub name: String,
    /// Its node.
    pub node: Node,
    /// Where it listens.
    pub url: String,
    /// The address its requests come from.
    pub ip: IpAddr,
    /// Everything it persisted, as the last value per key (what would survive a crash).
    pub disk: std::collections::BTreeMap<(Table, String), Vec<u8>>,
    /// Events it emitted, in order.
    pub events: Vec<Event>,
    /// Agents it asked to spawn, in order (end one with [`Mesh::spawn_exit`]).
    pub spawns: Vec<proto_core::spawn::SpawnRequest>,
    /// Payments it asked its wallet to check, in order (answer with `handle_payment_checked`).
    pub checks: Vec<proto_core::PaymentCheck>,
    /// Pool upstream calls it asked for (answer with `handle_upstream`).
    pub upstream: Vec<proto_core::pool::UpstreamCall>,
    /// Its passport's seed (tests sign in its name with it).
    pub seed: [u8; 32],
    /// Its configuration (a restart uses it: change `public_url` to restart on a new address).
    pub config: Config,
}

/// The harness.
pub struct Mesh {
    /// The nodes.
    pub peers: Vec<Peer>,
    /// Current time.
    pub now: Now,
    /// The trace so far.
    pub trace: Vec<String>,
    inflight: VecDeque<(usize, Transmit)>,
    done: Vec<(CommandId, Result<Value, CommandError>)>,
    next_id: u64,
    /// Drop transmits to these nodes (a partition), reporting a transport error.
    pub unreachable: Vec<usize>,
    /// Transmits to these nodes wait in `held` (a slow peer) until [`Mesh::release`].
    pub slow: Vec<usize>,
    /// Fixed answers (status, JSON body) for URLs starting with the given prefix, checked before
    /// the nodes: a scripted (possibly lying) peer that is not a node.
    pub canned: Vec<(String, u16, Value)>,
    held: VecDeque<(usize, Transmit)>,
}

impl Default for Mesh {
    fn default() -> Self {
        Self::new()
    }
}

impl Mesh {
    /// An empty mesh at [`EPOCH_US`].
    pub fn new() -> Self {
        Self {
            peers: Vec::new(),
            now: Now::new(0, EPOCH_US),
            trace: Vec::new(),
            inflight: VecDeque::new(),
            done: Vec::new(),
            next_id: 1,
            unreachable: Vec::new(),
            slow: Vec::new(),
            canned: Vec::new(),
            held: VecDeque::new(),
        }
    }

    /// Adds a node named `name`; `local` nodes send from 10.0.0.x (auto-accepted), others from
    /// 203.0.113.x (left pending).
    pub fn add(&mut self, name: &str, local: bool) -> usize {
        self.add_with(name, local, Config::default())
    }

    /// Like [`Mesh::add`] with a given configuration (its name and URL are set here).
    pub fn add_with(&mut self, name: &str, local: bool, config: Config) -> usize {
        let i = self.peers.len();
        let seed = [i as u8 + 1; 32];
        let url = format!("http://{}.test:8100", name.to_lowercase());
        let config = Config { display_name: name.to_owned(), public_url: url.clone(), ..config };
        let node = Node::new(Passport::from_seed(seed), config.clone(), i as u64, self.now);
        let ip: IpAddr =
            if local { format!("10.0.0.{}", i + 1) } else { format!("203.0.113.{}", i + 1) }.parse().unwrap();
        self.peers.push(Peer {
            name: name.to_owned(),
            node,
            url,
            ip,
            disk: Default::default(),
            events: Vec::new(),
            spawns: Vec::new(),
            checks: Vec::new(),
            upstream: Vec::new(),
            seed,
            config,
        });
        self.drain(i);
        i
    }

    /// A node's agent id.
    pub fn id(&self, i: usize) -> String {
        self.peers[i].node.passport().agent_id().to_string()
    }

    /// The agent ids of node `at`'s pending requests, as `ListPending` lists them.
    pub fn pending_agents(&mut self, at: usize) -> Vec<String> {
        let pending = self.command(at, Command::ListPending).expect("list pending");
        pending["requests"]
            .as_array()
            .expect("requests")
            .iter()
            .map(|r| r["agent_id"].as_str().expect("agent_id").to_owned())
            .collect()
    }

    /// Replaces every agent id in `text` by its node's name, for readable traces.
    pub fn names(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for p in &self.peers {
            out = out.replace(p.node.passport().agent_id().as_str(), &format!("<{}>", p.name));
        }
        out
    }

    fn log(&mut self, line: String) {
        let line = format!("{:>8.3} {}", self.now.mono_ms as f64 / 1000.0, self.names(&line));
        self.trace.push(line);
    }

    /// Advances both clocks by `ms` and fires due timers.
    pub fn advance(&mut self, ms: u64) {
        self.now = Now::new(self.now.mono_ms + ms, self.now.wall_us + ms as i64 * 1000);
        for i in 0..self.peers.len() {
            let now = self.now;
            self.peers[i].node.handle_timeout(now);
            self.drain(i);
        }
        self.run();
    }

    /// Runs a command on node `i` and delivers everything until the network is quiet.
    pub fn command(&mut self, i: usize, command: Command) -> Result<Value, CommandError> {
        let id = CommandId(self.next_id);
        self.next_id += 1;
        let label = self.names(&format!("{command:?}"));
        let label: String = label.chars().take(100).collect();
        self.log(format!("{} cmd {}", self.peers[i].name, label));
        let now = self.now;
        self.peers[i].node.handle_command(now, id, command);
        self.drain(i);
        self.run();
        let pos = self.done.iter().position(|(d, _)| *d == id);
        match pos {
            Some(p) => self.done.remove(p).1,
            None => Err(CommandError::Peer("command still pending".to_owned())),
        }
    }

    /// Starts a command without waiting (for `WaitForResponse`); collect with [`Mesh::take_done`].
    pub fn start(&mut self, i: usize, command: Command) -> CommandId {
        let id = CommandId(self.next_id);
        self.next_id += 1;
        self.log(format!("{} cmd {:?}", self.peers[i].name, command));
        let now = self.now;
        self.peers[i].node.handle_command(now, id, command);
        self.drain(i);
        self.run();
        id
    }

    /// The result of a started command, if it finished.
    pub fn take_done(&mut self, id: CommandId) -> Option<Result<Value, CommandError>> {
        let p = self.done.iter().position(|(d, _)| *d == id)?;
        Some(self.done.remove(p).1)
    }

    /// Sends a raw request to node `to` as if from `source`; returns status and body.
    pub fn inject(&mut self, to: usize, method: Method, path: &str, body: &[u8], source: IpAddr) -> (u16, Value) {
        let id = InboundId(self.next_id);
        self.next_id += 1;
        let now = self.now;
        self.peers[to].node.handle_request(
            now,
            InboundRequest { id, method, path: path.to_owned(), body: body.to_vec(), source: Some(source) },
        );
        let replies = self.drain(to);
        let (status, body) = replies
            .into_iter()
            .find(|(rid, _, _)| *rid == id)
            .map(|(_, s, b)| (s, b))
            .expect("every request is answered");
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        self.log(format!("inject -> {} {:?} {} -> {} {}", self.peers[to].name, method, path, status, summary(&v)));
        self.run();
        (status, v)
    }

    /// Delivers in-flight transmits, FIFO, until none remain.
    pub fn run(&mut self) {
        let mut steps = 0;
        while let Some((from, t)) = self.inflight.pop_front() {
            steps += 1;
            assert!(steps < 100_000, "harness: runaway exchange");
            if self.peers.iter().position(|p| t.url.starts_with(&p.url)).is_some_and(|to| self.slow.contains(&to)) {
                self.held.push_back((from, t));
                continue;
            }
            self.deliver(from, t);
        }
    }

    /// Delivers every transmit held for a slow node, and what follows from them.
    pub fn release(&mut self) {
        self.slow.clear();
        self.inflight.extend(self.held.drain(..));
        self.run();
    }

    fn deliver(&mut self, from: usize, t: Transmit) {
        // The path after the authority (`/__darkmatter__/...` or `/.well-known/...`).
        let after_scheme = t.url.split_once("://").map_or(t.url.as_str(), |(_, rest)| rest);
        let path = after_scheme.find('/').map(|i| after_scheme[i..].to_owned()).unwrap_or_default();
        let target = self.peers.iter().position(|p| t.url.starts_with(&p.url));
        let from_name = self.peers[from].name.clone();
        let canned = self.canned.iter().find(|(prefix, _, _)| t.url.starts_with(prefix.as_str())).cloned();
        let result = match target {
            _ if canned.is_some() => {
                let (_, status, body) = canned.expect("checked");
                self.log(format!("{from_name} -> canned {:?} {} -> {status} {}", t.method, t.url, summary(&body)));
                Ok(HttpResponse { status, body: body.to_string().into_bytes() })
            }
            Some(to) if !self.unreachable.contains(&to) => {
                let id = InboundId(self.next_id);
                self.next_id += 1;
                let now = self.now;
                let source = Some(self.peers[from].ip);
                self.peers[to].node.handle_request(
                    now,
                    InboundRequest { id, method: t.method, path: path.clone(), body: t.body.clone(), source },
                );
                let replies = self.drain(to);
                let (status, body) = replies
                    .into_iter()
                    .find(|(rid, _, _)| *rid == id)
                    .map(|(_, s, b)| (s, b))
                    .expect("every request is answered");
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                self.log(format!(
                    "{from_name} -> {} {:?} {path} -> {status} {}",
                    self.peers[to].name,
                    t.method,
                    summary(&v)
                ));
                Ok(HttpResponse { status, body })
            }
            _ => {
                self.log(format!("{from_name} -> ? {:?} {} -> unreachable", t.method, t.url));
                Err("connection refused".to_owned())
            }
        };
        let now = self.now;
        self.peers[from].node.handle_response(now, t.id, result);
        self.drain(from);
    }

    /// Drains node `i`'s outputs: applies persists to its disk, queues transmits, records events and
    /// command results; returns the replies.
    fn drain(&mut self, i: usize) -> Vec<(InboundId, u16, Vec<u8>)> {
        let mut replies = Vec::new();
        loop {
            match self.peers[i].node.poll_output() {
                Output::Timeout(_) => break,
                Output::Persist(changes) => {
                    for c in changes {
                        match c.value {
                            Some(v) => {
                                self.peers[i].disk.insert((c.table, c.key), v);
                            }
                            None => {
                                self.peers[i].disk.remove(&(c.table, c.key));
                            }
                        }
                    }
                }
                Output::Reply(r) => replies.push((r.id, r.status, r.body)),
                Output::Transmit(t) => self.inflight.push_back((i, t)),
                // The harness has no LAN; its nodes run without background discovery.
                Output::Datagram(_) => {}
                Output::Spawn(s) => {
                    let line = format!("{} spawn {} for {}", self.peers[i].name, s.spawn_id.0, s.trigger.key());
                    self.peers[i].spawns.push(s);
                    self.log(line);
                }
                Output::Upstream(c) => {
                    let line = format!("{} upstream {} {}", self.peers[i].name, c.method, c.url);
                    self.peers[i].upstream.push(c);
                    self.log(line);
                }
                Output::CheckPayment(c) => {
                    let line = format!("{} check payment {} for {}", self.peers[i].name, c.tx_signature, c.credit_key);
                    self.peers[i].checks.push(c);
                    self.log(line);
                }
                Output::Event(e) => {
                    let line = format!("{} event {}", self.peers[i].name, event_line(&e));
                    self.peers[i].events.push(*e);
                    self.log(line);
                }
                Output::Done { id, result } => {
                    // The trace reads the JSON a front end would show.
                    let result = result.map(|out| out.to_json());
                    let line = match &result {
                        Ok(v) => format!("{} done {}", self.peers[i].name, summary(v)),
                        Err(e) => format!("{} done error: {e}", self.peers[i].name),
                    };
                    self.log(line);
                    self.done.push((id, result));
                }
            }
        }
        replies
    }

    /// A spawned agent of node `i` ended.
    pub fn spawn_exit(&mut self, i: usize, id: proto_core::spawn::SpawnId, outcome: proto_core::spawn::SpawnOutcome) {
        let now = self.now;
        self.peers[i].node.handle_spawn_exit(now, id, outcome);
        self.drain(i);
    }

    /// Crashes node `i` and restarts it from what it had persisted.
    pub fn restart(&mut self, i: usize) {
        let p = &self.peers[i];
        let records: Vec<(Table, String, Vec<u8>)> =
            p.disk.iter().map(|((t, k), v)| (*t, k.clone(), v.clone())).collect();
        let (node, skipped) =
            Node::restore(Passport::from_seed(p.seed), p.config.clone(), 1000 + i as u64, self.now, records);
        assert_eq!(skipped, 0, "every persisted record decodes");
        self.peers[i].node = node;
        self.log(format!("{} restarted from {} records", self.peers[i].name, self.peers[i].disk.len()));
        self.drain(i);
    }
}

fn event_line(e: &Event) -> String {
    match e {
        Event::ConnectionRequested { request_id, agent_id, .. } => {
            format!("connection-requested {request_id} by {agent_id}")
        }
        Event::Connected { agent_id } => format!("connected {agent_id}"),
        Event::Disconnected { agent_id, by_peer } => format!("disconnected {agent_id} by_peer={by_peer}"),
        Event::MessageReceived { message_id, from_agent_id, in_reply_to } => {
            format!("message {message_id} from {from_agent_id} reply_to={in_reply_to:?}")
        }
        Event::PeerUpdated { agent_id, url } => format!("peer-updated {agent_id} at {url}"),
        Event::PeerUrlRecovered { agent_id, new_url, verified, .. } => {
            format!("peer-url-recovered {agent_id} at {new_url} verified={verified}")
        }
        Event::PeerNotFound { agent_id } => format!("peer-not-found {agent_id}"),
        Event::Refused { path, status, reason } => format!("refused {path} {status}: {reason}"),
        Event::RequestDecided { request_id, agent_id, accepted, peer_score } => {
            format!("request-decided {request_id} by {agent_id} accepted={accepted} peer_score={peer_score:.3}")
        }
        Event::SpawnRefused { key, reason } => format!("spawn-refused {key}: {reason}"),
        Event::SpawnFailed { key, reason } => format!("spawn-failed {key}: {reason}"),
    }
}

/// A short, stable summary of a JSON reply for traces.
pub fn summary(v: &Value) -> String {
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        return format!("error: {e}");
    }
    let mut parts = Vec::new();
    for key in [
        "status",
        "auto_accepted",
        "accepted",
        "request_id",
        "message_id",
        "shard_id",
        "routed_to",
        "failed",
        "sent_to",
        "queue_position",
        "recorded",
        "timed_out",
        "total",
        "count",
        "score",
        "success",
    ] {
        if let Some(x) = v.get(key) {
            parts.push(format!("{key}={x}"));
        }
    }
    if let Some(r) = v.get("responses").and_then(Value::as_array) {
        parts.push(format!("responses={}", r.len()));
    }
    parts.join(" ")
}
