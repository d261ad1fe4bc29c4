//! What happens *to* the nodes: agents' habits, workload firings, scripted actions and faults
//! (partitions, crashes and restarts, address moves, skew), and the adversary.

use std::time::Instant;

use proto_core::output::InboxMessageView;
use proto_core::wire::message::MessageEnvelope;
use proto_core::{Command, CommandError, CommandId, CommandOutput, Method, Node, Passport, SendArgs, Table, Targets};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use serde_json::Value;

use crate::net::{ip_of, url_of, Cut, Fate};
use crate::rng::{derive, purpose};
use crate::scenario::{Action, Sabotage};
use crate::sim::{Act, CmdKind, Ctx, Ev, Origin, Req, Sim, PREFIX};
use crate::topology::{below, unit};
use crate::trace::{Kind, EXTERNAL, NONE};
use crate::workload::{Forgery, Gen};

impl Sim {
    pub(crate) fn schedule_gen(&mut self, g: Gen, from: u64) {
        let per_us = g.rate(&self.opts.workload) * self.opts.nodes as f64 / 3.6e9;
        if per_us <= 0.0 {
            return;
        }
        let dt = -(1.0 - unit(&mut self.rng)).ln() / per_us;
        let at = from.saturating_add(dt as u64 + 1);
        if at <= self.opts.duration_us {
            self.queue.push(at, Ev::Gen(g));
        }
    }

    fn random_peer(&mut self, i: u32) -> Option<u32> {
        let peers = &self.nodes[i as usize].peers;
        if peers.is_empty() {
            return None;
        }
        let k = below(&mut self.rng, peers.len() as u64) as usize;
        Some(self.nodes[i as usize].peers[k])
    }

    pub(crate) fn on_gen(&mut self, g: Gen) {
        self.schedule_gen(g, self.now);
        let i = below(&mut self.rng, self.opts.nodes as u64) as u32;
        if self.nodes[i as usize].node.is_none() {
            return;
        }
        match g {
            Gen::Direct => {
                if let Some(p) = self.random_peer(i) {
                    self.send(i, Some(p), None);
                }
            }
            Gen::Broadcast => {
                if !self.nodes[i as usize].peers.is_empty() {
                    self.send(i, None, None);
                }
            }
            Gen::Health => {
                if let Some(p) = self.random_peer(i) {
                    self.health(i, p);
                }
            }
            Gen::Beacon => self.beacon(i),
            Gen::Churn => {
                if self.nodes[i as usize].peers.len() > 1 {
                    let p = self.random_peer(i).expect("non-empty");
                    let agent = self.nodes[p as usize].agent.clone();
                    self.command(
                        i,
                        CmdKind::Disconnect,
                        Command::Disconnect { agent_id: agent },
                        p as u64,
                        "disconnect",
                    );
                    let n = self.opts.nodes as u64;
                    for _ in 0..8 {
                        let c = below(&mut self.rng, n) as u32;
                        if c != i && self.nodes[i as usize].peers.binary_search(&c).is_err() {
                            let at = self.now + self.think();
                            let inc = self.nodes[i as usize].inc;
                            self.queue.push(at, Ev::Agent { node: i, inc, act: Act::Connect(c) });
                            break;
                        }
                    }
                }
            }
            Gen::Impression => {
                if let Some(p) = self.random_peer(i) {
                    let score = (unit(&mut self.rng) * 200.0).round() / 100.0 - 1.0;
                    let agent_id = self.nodes[p as usize].agent.clone();
                    self.command(
                        i,
                        CmdKind::Impression,
                        Command::SetImpression { agent_id, score, note: None },
                        p as u64,
                        "impression",
                    );
                }
            }
            Gen::Adversary => self.forge(),
            Gen::Crash => {
                let mv = unit(&mut self.rng) < self.opts.workload.move_on_restart;
                let down = self.opts.workload.down_us;
                self.crash(i, down, mv);
            }
        }
    }

    /// `i` sends a direct message to `to`, or broadcasts (`to` = None); `in_reply_to` for replies.
    fn send(&mut self, i: u32, to: Option<u32>, in_reply_to: Option<String>) {
        let content = format!("m{} from node-{i}", self.next_cmd);
        let (targets, hops, verb, peer) = match to {
            Some(p) => (
                Targets::Agents(vec![self.nodes[p as usize].agent.clone()]),
                2,
                if in_reply_to.is_some() { "reply" } else { "send" },
                p as u64,
            ),
            None => (Targets::Broadcast { trust_min: 0.0 }, self.opts.workload.broadcast_hops, "broadcast", NONE),
        };
        let args = SendArgs { content, targets, metadata: Default::default(), in_reply_to, hops_remaining: hops };
        self.command(i, CmdKind::Send, Command::Send(args), peer, verb);
    }

    /// A health monitor beside `from` asks `to` for `/status`.
    fn health(&mut self, from: u32, to: u32) {
        self.counters.health_sent += 1;
        self.metrics.health_sent(self.now);
        let path = format!("{PREFIX}/status");
        let fate = self.net.fate(from, to, false);
        let o = match fate {
            Fate::Deliver(_) => crate::trace::outcome::SENT,
            Fate::Lost => crate::trace::outcome::LOST,
            Fate::Blocked => crate::trace::outcome::BLOCKED,
        };
        self.trace.rec(self.now, from as u64, Kind::Send, to as u64, (1 << 8) | o, "/status");
        if let Fate::Deliver(lat) = fate {
            let req = Req {
                to,
                gen: self.nodes[to as usize].gen,
                inc: 0,
                from: Origin::Health { idx: from, sent_us: self.now },
                method: Method::Get,
                path,
                body: Vec::new(),
                source: self.nodes[from as usize].ip,
                deadline: self.now + 10_000_000,
                reply_wanted: true,
            };
            self.queue.push(self.now + lat, Ev::Arrive(Box::new(req)));
        }
    }

    /// `i` multicasts a beacon to the rest of its LAN segment.
    fn beacon(&mut self, i: u32) {
        // `Node::beacon` stamps the time of the node's last input; hand it the time first.
        let now = self.node_now(i);
        let clock = Instant::now();
        let node = self.nodes[i as usize].node.as_mut().expect("up");
        node.handle_timeout(now);
        self.drain(i, &mut Ctx::default());
        let payload: std::rc::Rc<[u8]> = match self.nodes[i as usize].node.as_ref() {
            Some(n) => n.inspect().beacon(now, 8100).into(),
            None => return,
        };
        self.time_core(11, clock.elapsed());
        self.multicast(i, payload);
    }

    /// Delivers `payload` from `i` to the rest of its LAN segment (each copy subject to loss); the
    /// agent's beacons and the core's own (`Output::Datagram`) both go this way.
    pub(crate) fn multicast(&mut self, i: u32, payload: std::rc::Rc<[u8]>) {
        self.counters.beacons += 1;
        self.counters.wire_bytes_out += payload.len() as u64;
        let lan = self.opts.net.lan_size.max(1);
        let start = i / lan * lan;
        let end = (start + lan).min(self.opts.nodes);
        let mut count = 0;
        for j in start..end {
            if j == i {
                continue;
            }
            if let Fate::Deliver(lat) = self.net.fate(i, j, true) {
                count += 1;
                self.queue.push(self.now + lat, Ev::Datagram { to: j, from: i, payload: payload.clone() });
            }
        }
        self.trace.rec(self.now, i as u64, Kind::Beacon, count, 0, "");
    }

    /// The adversary bends a captured envelope and sends it.
    fn forge(&mut self) {
        if self.captured.is_empty() && self.observed.is_empty() {
            return;
        }
        // Each envelope is bent one way and spent: replays and downgrades take one that arrived.
        let variant = if self.opts.workload.adversary_in_turn {
            Forgery::ALL[self.forgeries_made as usize % Forgery::ALL.len()]
        } else {
            Forgery::ALL[below(&mut self.rng, Forgery::ALL.len() as u64) as usize]
        };
        let pool = if variant.bends_delivered() { &mut self.observed } else { &mut self.captured };
        // In turn, a variant whose pool is empty waits for the next chance.
        let Some(c) = pool.pop_front() else { return };
        self.forgeries_made += 1;
        let (sender, mut target) = (c.sender, c.target);
        let Ok(mut env) = serde_json::from_slice::<MessageEnvelope>(&c.body) else { return };
        let n = self.opts.nodes;
        let other = |sim: &mut Sim| loop {
            let c = below(&mut sim.rng, n as u64) as u32;
            if c != sender && c != target {
                break c;
            }
        };
        if n < 3 && matches!(variant, Forgery::Impersonate | Forgery::Retarget | Forgery::Downgrade) {
            return;
        }
        match variant {
            Forgery::Tamper => env.content.push_str(" (edited)"),
            Forgery::Unsigned => {
                env.signature_hex.clear();
                env.dm_signature_hex = None;
            }
            Forgery::Impersonate => {
                let o = other(self);
                env.from_agent_id = self.nodes[o as usize].agent.clone();
                env.from_public_key_hex = Some(env.from_agent_id.clone());
            }
            Forgery::Retarget => target = other(self),
            Forgery::Replay => {}
            Forgery::Downgrade => {
                // A recipient re-posts what it got elsewhere, without the signature that binds it.
                env.dm_signature_hex = None;
                env.to_agent_id = None;
                target = other(self);
            }
        }
        let body = serde_json::to_vec(&env).expect("serialisable");
        self.inject(target, variant, body);
    }

    /// Delivers an adversary request to `target` (the adversary sits next to it: 1 ms).
    fn inject(&mut self, target: u32, variant: Forgery, body: Vec<u8>) {
        let path = format!("{PREFIX}/message");
        let label = format!("/message [{}]", variant.name());
        self.trace.rec(self.now, EXTERNAL, Kind::Send, target as u64, 2 << 8, &label);
        let req = Req {
            to: target,
            gen: self.nodes[target as usize].gen,
            inc: 0,
            from: Origin::Adversary { variant },
            method: Method::Post,
            path,
            body,
            source: "198.51.100.7".parse().expect("literal"),
            deadline: self.now + 10_000_000,
            reply_wanted: false,
        };
        self.queue.push(self.now + 1000, Ev::Arrive(Box::new(req)));
    }

    pub(crate) fn on_agent(&mut self, i: u32, inc: u32, act: Act) {
        let n = &self.nodes[i as usize];
        if n.inc != inc || n.node.is_none() {
            return;
        }
        match act {
            Act::Connect(to) => {
                let target_url = self.nodes[to as usize].url.clone();
                self.command(i, CmdKind::Connect, Command::Connect { target_url }, to as u64, "connect");
            }
            Act::Accept(request_id) => {
                self.command(i, CmdKind::Accept, Command::Accept { request_id }, NONE, "accept");
            }
            Act::Read(message_id) => {
                self.command(i, CmdKind::Read, Command::GetMessage { message_id, consume: false }, NONE, "read");
            }
            Act::Consume(message_id) => {
                self.command(i, CmdKind::Consume, Command::GetMessage { message_id, consume: true }, NONE, "consume");
            }
            Act::Forward(message_id, targets) => {
                let args = proto_core::ForwardArgs { message_id: message_id.clone(), targets, note: None };
                self.command(i, CmdKind::Forward(message_id), Command::Forward(args), NONE, "forward");
            }
            Act::Reply(to, in_reply_to) => self.send(i, Some(to), Some(in_reply_to)),
            Act::SpawnExit(id) => self.spawn_exit(i, id),
        }
    }

    pub(crate) fn on_done(&mut self, i: u32, id: CommandId, result: Result<CommandOutput, CommandError>) {
        let Some((owner, kind)) = self.cmds.remove(&id.0) else {
            self.fail(i, "one-done", format!("completion for unknown command {}", id.0));
            return;
        };
        if owner != i {
            self.fail(i, "one-done", format!("command {} of node {owner} completed on node {i}", id.0));
            return;
        }
        let verb = match kind {
            CmdKind::Connect => "connect",
            CmdKind::Accept => "accept",
            CmdKind::Send => "send",
            CmdKind::Read => "read",
            CmdKind::Consume => "consume",
            CmdKind::Forward(_) => "forward",
            CmdKind::Disconnect => "disconnect",
            CmdKind::Impression => "impression",
            CmdKind::Probe(_) => "list_inbox",
            CmdKind::SetUrl => "set_url",
        };
        match &result {
            Ok(_) => self.trace.rec(self.now, i as u64, Kind::Done, NONE, 1, verb),
            Err(e) => {
                self.counters.command_errors += 1;
                let text = format!("{verb}: {e}");
                self.trace.rec(self.now, i as u64, Kind::Done, NONE, 0, &text);
            }
        }
        let inc = self.nodes[i as usize].inc;
        match (kind, result) {
            (CmdKind::Send, Ok(CommandOutput::Delivered(d))) => self.counters.acked += d.routed_to.len() as u64,
            (CmdKind::Read, Ok(CommandOutput::Message(m))) => self.after_read(i, *m),
            (CmdKind::Forward(m), Err(_)) => {
                self.queue.push(self.now, Ev::Agent { node: i, inc, act: Act::Consume(m) })
            }
            (CmdKind::Probe(expected), Ok(out)) => {
                let listed: Vec<String> = match out {
                    CommandOutput::Inbox(inbox) => inbox.messages.into_iter().map(|m| m.message_id).collect(),
                    _ => Vec::new(),
                };
                self.inv.checks += 1;
                self.trace.rec(
                    self.now,
                    i as u64,
                    Kind::Check,
                    expected.len() as u64,
                    0,
                    "acknowledged messages in the restored inbox:",
                );
                if let Some(missing) = expected.iter().find(|m| !listed.contains(m)) {
                    self.fail(
                        i,
                        "survives-restart",
                        format!("acknowledged message {missing} is missing after restart"),
                    );
                    return;
                }
                for m in listed {
                    let at = self.now + self.think();
                    self.queue.push(at, Ev::Agent { node: i, inc, act: Act::Read(m) });
                }
            }
            _ => {}
        }
    }

    /// The agent read a message: forward it on (broadcasts, in storms), answer it, or just consume it.
    fn after_read(&mut self, i: u32, v: InboxMessageView) {
        let message_id = v.message_id;
        let inc = self.nodes[i as usize].inc;
        let from = self.by_agent.get(&v.from_agent_id).copied();
        let hops = v.hops_remaining;
        let is_broadcast = v.metadata["type"].as_str() == Some("broadcast");
        let w = &self.opts.workload;
        let (forward_prob, fanout) = (w.forward_prob, w.forward_fanout);
        let reply_prob = if w.helpful.contains(&i) { 1.0 } else { w.reply_prob };
        if is_broadcast && hops > 0 && forward_prob > 0.0 && unit(&mut self.rng) < forward_prob {
            let path: Vec<&str> = v.metadata["forwarded_path"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut candidates: Vec<u32> = self.nodes[i as usize]
                .peers
                .iter()
                .copied()
                .filter(|&p| Some(p) != from && !path.contains(&self.nodes[p as usize].agent.as_str()))
                .collect();
            let mut targets = Vec::new();
            while !candidates.is_empty() && targets.len() < fanout as usize {
                let k = below(&mut self.rng, candidates.len() as u64) as usize;
                targets.push(self.nodes[candidates.swap_remove(k) as usize].agent.clone());
            }
            if !targets.is_empty() {
                self.queue.push(self.now, Ev::Agent { node: i, inc, act: Act::Forward(message_id, targets) });
                return;
            }
        }
        // Agents answer messages, not answers (no endless ping-pong).
        if let Some(f) = from.filter(|_| v.in_reply_to.is_none()) {
            if reply_prob > 0.0
                && self.nodes[i as usize].peers.binary_search(&f).is_ok()
                && unit(&mut self.rng) < reply_prob
            {
                self.queue.push(self.now, Ev::Agent { node: i, inc, act: Act::Reply(f, message_id.clone()) });
            }
        }
        self.queue.push(self.now, Ev::Agent { node: i, inc, act: Act::Consume(message_id) });
    }

    // ----- scripted actions and faults -----

    pub(crate) fn on_script(&mut self, k: usize) {
        let action = self.opts.script[k].1.clone();
        match action {
            Action::Connect(a, b) => self.on_agent(a, self.nodes[a as usize].inc, Act::Connect(b)),
            Action::Send(a, b) => {
                if self.nodes[a as usize].node.is_some() {
                    self.send(a, Some(b), None);
                }
            }
            Action::Broadcast(a) => {
                if self.nodes[a as usize].node.is_some() {
                    self.send(a, None, None);
                }
            }
            Action::Disconnect(a, b) => {
                let agent_id = self.nodes[b as usize].agent.clone();
                self.command(a, CmdKind::Disconnect, Command::Disconnect { agent_id }, b as u64, "disconnect");
            }
            Action::Impression(a, b, score) => self.impress(a, b, score),
            Action::ImpressPeers(score) => {
                for a in 0..self.opts.nodes {
                    for b in self.nodes[a as usize].peers.clone() {
                        self.impress(a, b, score);
                    }
                }
            }
            Action::Partition { id, nodes, cut } => {
                let mut side = vec![false; self.opts.nodes as usize];
                for &i in &nodes {
                    side[i as usize] = true;
                }
                self.partition(id, side, cut);
            }
            Action::PartitionFraction { id, fraction, cut } => {
                let n = self.opts.nodes as usize;
                let mut order: Vec<u32> = (0..n as u32).collect();
                let mut r = ChaCha8Rng::seed_from_u64(derive(self.opts.seed, purpose::FAULTS, id as u64, 0));
                for j in (1..n).rev() {
                    order.swap(j, below(&mut r, j as u64 + 1) as usize);
                }
                let mut side = vec![false; n];
                for &i in order.iter().take((n as f64 * fraction).round() as usize) {
                    side[i as usize] = true;
                }
                self.partition(id, side, cut);
            }
            Action::Heal(id) => {
                self.net.heal(id);
                self.trace.rec(self.now, NONE, Kind::Fault, id as u64, 0, "heal partition");
            }
            Action::Crash { node, down_us, move_on_restart } => self.crash(node, down_us, move_on_restart),
            Action::CrashFraction { fraction, down_us, move_on_restart } => {
                let n = self.opts.nodes;
                let count = (n as f64 * fraction).round() as u32;
                let mut r = ChaCha8Rng::seed_from_u64(derive(self.opts.seed, purpose::FAULTS, 1000 + k as u64, 0));
                for _ in 0..count {
                    let i = below(&mut r, n as u64) as u32;
                    self.crash(i, down_us, move_on_restart);
                }
            }
            Action::Move(i) => self.move_node(i),
            Action::Skew(i, us) => {
                self.nodes[i as usize].skew_us = us;
                self.trace.rec(self.now, i as u64, Kind::Fault, NONE, 0, &format!("clock skew now {} ms", us / 1000));
            }
            Action::Replay(k) => {
                if let Some(c) = self.envelopes.get(k) {
                    let (target, body) = (c.target, c.body.clone());
                    self.inject(target, Forgery::Replay, body);
                }
            }
            Action::MeasureFrom => {
                self.metrics.measure_from_us = Some(self.now);
                self.trace.rec(self.now, NONE, Kind::Fault, NONE, 0, "delivery measured from here");
            }
        }
    }

    /// Agent `a` scores `b`.
    pub(crate) fn impress(&mut self, a: u32, b: u32, score: f64) {
        let agent_id = self.nodes[b as usize].agent.clone();
        self.command(
            a,
            CmdKind::Impression,
            Command::SetImpression { agent_id, score, note: None },
            b as u64,
            "impression",
        );
    }

    fn partition(&mut self, id: u32, side: Vec<bool>, cut: Cut) {
        let count = side.iter().filter(|&&s| s).count() as u64;
        let what = match cut {
            Cut::Both => format!("partition {id} cuts off (both ways) nodes:"),
            Cut::OutOfSide => format!("partition {id} cuts off (outbound only) nodes:"),
            Cut::IntoSide => format!("partition {id} cuts off (inbound only) nodes:"),
        };
        self.trace.rec(self.now, NONE, Kind::Fault, count, 0, &what);
        self.net.partition(id, side, cut);
    }

    /// Node `i` crashes: its memory is gone, its disk stays. Restarts after `down_us` (0: never).
    pub(crate) fn crash(&mut self, i: u32, down_us: u64, move_on_restart: bool) {
        let Some(gone) = self.nodes[i as usize].node.take() else { return };
        self.key_parses_gone += gone.inspect().key_parses();
        let n = &mut self.nodes[i as usize];
        n.inc += 1;
        n.timer_at = None;
        n.busy_until = self.now;
        n.expected_inbox = n.unconsumed.iter().cloned().collect();
        n.move_on_restart = move_on_restart;
        self.cmds.retain(|_, (owner, _)| *owner != i);
        self.counters.crashes += 1;
        self.trace.rec(self.now, i as u64, Kind::Fault, NONE, 0, "crash");
        if down_us > 0 {
            self.queue.push(self.now + down_us, Ev::Restart(i));
        }
    }

    /// Node `i` comes back from its disk (at a new address if it was to move).
    pub(crate) fn restart(&mut self, i: u32) {
        if self.nodes[i as usize].node.is_some() {
            return;
        }
        let moved = self.nodes[i as usize].move_on_restart;
        if moved {
            self.readdress(i);
        }
        let sabotage = self.opts.sabotage;
        let n = &self.nodes[i as usize];
        let mut records: Vec<(Table, String, Vec<u8>)> = n
            .store
            .iter()
            .filter(|((t, _), _)| !(sabotage == Sabotage::LoseReplayOnRestart && *t == Table::Replay))
            .map(|((t, k), v)| (*t, k.clone(), v.clone()))
            .collect();
        // Read back in key order, as a real store would list its tables.
        records.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let passport = Passport::from_seed(n.seed32);
        let seed = derive(self.opts.seed, purpose::NODE, i as u64, n.inc as u64);
        let config = self.config(i);
        let now = self.node_now(i);
        let clock = Instant::now();
        let (mut node, skipped) = Node::restore_with_provider(passport, config, seed, now, records, self.provider());
        let entropy = derive(self.opts.seed, purpose::ENTROPY, i as u64, n.inc as u64);
        node.set_entropy(std::sync::Arc::new(crate::rng::SimEntropy::new(entropy)));
        self.time_core(12, clock.elapsed());
        self.counters.restarts += 1;
        self.trace.rec(
            self.now,
            i as u64,
            Kind::Fault,
            NONE,
            0,
            if moved { "restart at a new address" } else { "restart" },
        );
        if skipped > 0 {
            self.fail(i, "survives-restart", format!("restore skipped {skipped} persisted records"));
            return;
        }
        // The agent's view of its connections is what the node restored.
        let mut peers: Vec<u32> = self.nodes[i as usize]
            .store
            .keys()
            .filter(|(t, _)| *t == Table::Connections)
            .filter_map(|(_, k)| self.by_agent.get(k).copied())
            .collect();
        peers.sort_unstable();
        let n = &mut self.nodes[i as usize];
        n.peers = peers;
        n.node = Some(node);
        n.busy_until = self.now;
        self.give_entropy(i);
        self.drain(i, &mut Ctx::default());
        if moved {
            let url = self.nodes[i as usize].url.clone();
            self.command(i, CmdKind::SetUrl, Command::SetUrl { url }, NONE, "set_url");
        }
        let expected = std::mem::take(&mut self.nodes[i as usize].expected_inbox);
        self.command(i, CmdKind::Probe(expected), Command::ListInbox, NONE, "list_inbox");
    }

    /// Gives node `i` its next address (the old one stops answering).
    fn readdress(&mut self, i: u32) {
        let n = &mut self.nodes[i as usize];
        self.by_url.remove(&n.url);
        n.gen += 1;
        n.url = url_of(i, n.gen);
        n.ip = ip_of(i, n.gen);
        self.by_url.insert(n.url.clone(), i);
        self.counters.moves += 1;
    }

    /// Node `i` moves while running and tells its peers.
    fn move_node(&mut self, i: u32) {
        if self.nodes[i as usize].node.is_none() {
            return;
        }
        self.readdress(i);
        let url = self.nodes[i as usize].url.clone();
        self.trace.rec(self.now, i as u64, Kind::Fault, NONE, 0, &format!("moves to {url}"));
        self.command(i, CmdKind::SetUrl, Command::SetUrl { url }, NONE, "set_url");
    }
}
