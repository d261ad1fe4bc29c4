//! The path of one request through the simulated network: a transmit leaves its node, meets the
//! network (loss, partitions, latency), arrives where its URL points (or finds nothing listening),
//! queues behind the target's other requests, is handled, and its answer travels back, unless the
//! caller's deadline passes first. Timers and LAN datagrams are here too: the other inputs that
//! come from outside a node.

use std::time::Instant;

use proto_core::{HttpResponse, InboundId, InboundRequest, OutboundId, Output, Transmit};

use crate::net::{split_url, Fate};
use crate::rng::id_key;
use crate::sim::{envelope_id, method_word, request_bucket, short, Captured, Ctx, Ev, Origin, Req, Sim};
use crate::trace::{method_code, outcome, Kind, EXTERNAL, NONE};

/// Envelopes the adversary keeps in each pool (intercepted, and let through).
const ADVERSARY_POOL_MAX: usize = 4;

impl Sim {
    pub(crate) fn transmit(&mut self, from: u32, t: Transmit, ctx: &Ctx) {
        let (base, path) = split_url(&t.url);
        let to = self.by_url.get(base).copied();
        let path = path.to_owned();
        let mut intercepted = false;
        if path == "/__darkmatter__/message" {
            intercepted = self.note_envelope(from, to, &t.body, ctx);
        }
        if self.observer.is_some() && self.offer_transmit(from, &t) {
            return;
        }
        let deadline = self.now + t.timeout_ms * 1000;
        let inc = self.nodes[from as usize].inc;
        let m = method_code(t.method) << 8;
        let Some(to) = to else {
            self.trace.rec(self.now, from as u64, Kind::Send, NONE, m | outcome::UNRESOLVED, short(&path));
            self.fail_at(from, inc, t.id, NONE, path, "could not resolve host", self.now);
            return;
        };
        if intercepted {
            self.trace.rec(self.now, from as u64, Kind::Send, to as u64, m | outcome::INTERCEPTED, short(&path));
            self.fail_at(from, inc, t.id, to as u64, path, "timed out", deadline);
            return;
        }
        if t.forbid_private {
            // Every sim address is private; a real runtime refuses these after resolving.
            self.trace.rec(self.now, from as u64, Kind::Send, to as u64, m | outcome::FORBIDDEN, short(&path));
            self.fail_at(from, inc, t.id, to as u64, path, "refused: private address", self.now);
            return;
        }
        match self.net.fate(from, to, false) {
            Fate::Deliver(lat) => {
                self.trace.rec(self.now, from as u64, Kind::Send, to as u64, m | outcome::SENT, short(&path));
                let arrive = self.now + lat;
                let mut reply_wanted = true;
                if arrive > deadline {
                    self.fail_at(from, inc, t.id, to as u64, path.clone(), "timed out", deadline);
                    reply_wanted = false;
                }
                let req = Req {
                    to,
                    gen: self.nodes[to as usize].gen,
                    inc: 0,
                    from: Origin::Node { idx: from, inc, oid: t.id },
                    method: t.method,
                    path,
                    body: t.body,
                    source: self.nodes[from as usize].ip,
                    deadline,
                    reply_wanted,
                };
                self.queue.push(arrive, Ev::Arrive(Box::new(req)));
            }
            fate => {
                let o = if fate == Fate::Lost { outcome::LOST } else { outcome::BLOCKED };
                self.trace.rec(self.now, from as u64, Kind::Send, to as u64, m | o, short(&path));
                self.fail_at(from, inc, t.id, to as u64, path, "timed out", deadline);
            }
        }
    }

    /// Bookkeeping for a message transmit: honest-sender record, delivery accounting, and the
    /// adversary's man-in-the-middle. It intercepts every other envelope while its pool has room (they
    /// never arrive, so each bent copy it sends later meets the signature checks, not the duplicate
    /// check) and keeps copies of the latest ones it let through (replayed, they meet the duplicate
    /// check; re-posted elsewhere, the recipient binding). Returns whether this one was intercepted.
    pub(crate) fn note_envelope(&mut self, from: u32, to: Option<u32>, body: &[u8], ctx: &Ctx) -> bool {
        let Some(id) = envelope_id(body) else { return false };
        let key = id_key(id);
        self.inv.note_honest(from, key);
        if ctx.forwarding {
            self.counters.forwarded += 1;
        }
        let Some(to) = to else { return false };
        if self.keep_envelopes {
            self.envelopes.push(Captured { sender: from, target: to, body: body.to_vec() });
        }
        if ctx.sending && self.opts.workload.adversary_per_hour > 0.0 {
            let copy = Captured { sender: from, target: to, body: body.to_vec() };
            let intercept = self.intercept_next;
            self.intercept_next = !intercept;
            if intercept && self.captured.len() < ADVERSARY_POOL_MAX {
                self.captured.push_back(copy);
                self.counters.intercepted += 1;
                return true;
            }
            if self.observed.len() >= ADVERSARY_POOL_MAX {
                self.observed.pop_front();
            }
            self.observed.push_back(copy);
        }
        if ctx.sending {
            self.counters.intended += 1;
            self.metrics.intend(self.now);
            self.sent_at.entry(key).or_insert((from, self.now));
        }
        false
    }

    /// Hands `caller` a transport error for its call `oid` at time `at`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn fail_at(
        &mut self,
        caller: u32,
        inc: u32,
        oid: OutboundId,
        peer: u64,
        path: String,
        err: &str,
        at: u64,
    ) {
        self.queue
            .push(at.max(self.now), Ev::Response { to: caller, inc, oid, peer, path, result: Err(err.to_owned()) });
    }

    pub(crate) fn origin_peer(o: &Origin) -> u64 {
        match o {
            Origin::Node { idx, .. } | Origin::Health { idx, .. } => *idx as u64,
            Origin::Adversary { .. } => EXTERNAL,
        }
    }

    pub(crate) fn on_arrive(&mut self, mut req: Box<Req>) {
        let to = req.to as usize;
        if self.nodes[to].node.is_none() || self.nodes[to].gen != req.gen {
            self.refuse(&req, "connection refused");
            return;
        }
        let cost = self.net.config().handling_cost_us;
        let start = self.now.max(self.nodes[to].busy_until);
        self.nodes[to].busy_until = start + cost;
        req.inc = self.nodes[to].inc;
        if req.reply_wanted && start + cost > req.deadline {
            if let Origin::Node { idx, inc, oid } = req.from {
                self.fail_at(idx, inc, oid, req.to as u64, req.path.clone(), "timed out", req.deadline);
            }
            req.reply_wanted = false;
        }
        if start > self.now {
            self.queue.push(start, Ev::Handle(req));
        } else {
            self.on_handle(req);
        }
    }

    /// Nothing listens at the address (down, or moved away).
    pub(crate) fn refuse(&mut self, req: &Req, err: &str) {
        self.trace.rec(
            self.now,
            req.to as u64,
            Kind::Down,
            Self::origin_peer(&req.from),
            method_code(req.method),
            short(&req.path),
        );
        if let Origin::Node { idx, inc, oid } = req.from {
            if req.reply_wanted {
                let back = self.net.base_latency_us(req.to, idx);
                self.fail_at(idx, inc, oid, req.to as u64, req.path.clone(), err, (self.now + back).min(req.deadline));
            }
        }
    }

    pub(crate) fn on_handle(&mut self, req: Box<Req>) {
        let to = req.to;
        let n = &self.nodes[to as usize];
        if n.node.is_none() || n.inc != req.inc || n.gen != req.gen {
            self.refuse(&req, "connection reset");
            return;
        }
        let Req { from, method, path, body, source, deadline, reply_wanted, .. } = *req;
        let id = InboundId(self.next_inbound);
        self.next_inbound += 1;
        let now = self.node_now(to);
        let mut ctx = Ctx {
            expect_reply: true,
            forged: if let Origin::Adversary { variant } = from { Some(variant) } else { None },
            ..Ctx::default()
        };
        self.counters.wire_bytes_in += body.len() as u64;
        let request = InboundRequest { id, method, path: path.clone(), body, source: Some(source) };
        let clock = self.timing.is_some().then(Instant::now);
        self.nodes[to as usize].node.as_mut().expect("checked").handle_request(now, request);
        if let Some(c) = clock {
            let bucket = request_bucket(&path);
            self.timing.as_mut().expect("on").add(bucket, c.elapsed());
        }
        let (outs, timeout) = self.collect(to);
        let status =
            outs.iter().find_map(|o| if let Output::Reply(r) = o { Some(r.status) } else { None }).unwrap_or(0);
        self.trace.rec(
            self.now,
            to as u64,
            Kind::Recv,
            Self::origin_peer(&from),
            (method_code(method) << 16) | status as u64,
            short(&path),
        );
        self.process(to, outs, timeout, &mut ctx);
        let Some(reply) = ctx.reply.take() else {
            self.fail(to, "one-reply", format!("no reply to {} {}", method_word(method), path));
            return;
        };
        if reply.id != id {
            self.fail(to, "one-reply", format!("reply carries id {:?}, request was {:?}", reply.id, id));
            return;
        }
        match status {
            200..=299 => self.counters.ok += 1,
            429 => self.counters.rate_limited += 1,
            _ => self.counters.refused += 1,
        }
        if let Some(v) = ctx.forged {
            self.counters.forgeries += 1;
            self.inv.checks += 1;
            if status == 200 && v.must_refuse() && !ctx.forged_unverified {
                self.fail(to, "authentic", format!("a {} envelope was answered 200", v.name()));
                return;
            }
            if status != 200 {
                self.counters.forgeries_refused += 1;
            }
        }
        match from {
            Origin::Node { idx, inc, oid } if reply_wanted => {
                let leave = self.now + self.net.config().handling_cost_us;
                match self.net.fate(to, idx, false) {
                    Fate::Deliver(lat) if leave + lat <= deadline => {
                        let body = match &mut self.liars {
                            Some(l) => l.answer(to, &self.nodes[to as usize].url, &path, status, reply.body),
                            None => reply.body,
                        };
                        let result = Ok(HttpResponse { status, body });
                        self.queue.push(leave + lat, Ev::Response { to: idx, inc, oid, peer: to as u64, path, result });
                    }
                    _ => self.fail_at(idx, inc, oid, to as u64, path, "timed out", deadline),
                }
            }
            Origin::Health { sent_us, .. } if status == 200 => {
                self.counters.health_ok += 1;
                self.metrics.health_ok(sent_us);
            }
            _ => {}
        }
    }

    pub(crate) fn on_response(
        &mut self,
        to: u32,
        inc: u32,
        oid: OutboundId,
        peer: u64,
        path: String,
        result: Result<HttpResponse, String>,
    ) {
        let n = &self.nodes[to as usize];
        if n.node.is_none() || n.inc != inc {
            self.trace.rec(self.now, to as u64, Kind::Lost, peer, 0, short(&path));
            return;
        }
        match &result {
            Ok(r) => self.trace.rec(self.now, to as u64, Kind::Resp, peer, r.status as u64, short(&path)),
            Err(e) => {
                self.counters.transport_errors += 1;
                let text = format!("{e} ({})", short(&path));
                self.trace.rec(self.now, to as u64, Kind::Resp, peer, 0, &text);
            }
        }
        if let Ok(r) = &result {
            self.counters.wire_bytes_in += r.body.len() as u64;
        }
        let now = self.node_now(to);
        let clock = self.timing.is_some().then(Instant::now);
        self.nodes[to as usize].node.as_mut().expect("checked").handle_response(now, oid, result);
        if let Some(c) = clock {
            self.timing.as_mut().expect("on").add(5, c.elapsed());
        }
        self.drain(to, &mut Ctx::default());
    }

    pub(crate) fn on_timer(&mut self, i: u32, inc: u32, at: u64) {
        let n = &mut self.nodes[i as usize];
        if n.inc != inc || n.timer_at != Some(at) || n.node.is_none() {
            return;
        }
        n.timer_at = None;
        self.trace.rec(self.now, i as u64, Kind::Timer, NONE, 0, "");
        let now = self.node_now(i);
        let clock = self.timing.is_some().then(Instant::now);
        self.nodes[i as usize].node.as_mut().expect("checked").handle_timeout(now);
        if let Some(c) = clock {
            self.timing.as_mut().expect("on").add(10, c.elapsed());
        }
        self.drain(i, &mut Ctx::default());
    }

    pub(crate) fn arm_timer(&mut self, i: u32, t: Option<u64>) {
        let Some(ms) = t else { return };
        let at = (ms * 1000).max(self.now);
        let n = &mut self.nodes[i as usize];
        if n.timer_at.is_some_and(|x| x <= at) {
            return;
        }
        n.timer_at = Some(at);
        let inc = n.inc;
        self.queue.push(at, Ev::Timer { node: i, inc, at });
    }

    pub(crate) fn on_datagram(&mut self, to: u32, from: u32, payload: &[u8]) {
        if self.nodes[to as usize].node.is_none() {
            return;
        }
        self.counters.datagrams += 1;
        self.counters.wire_bytes_in += payload.len() as u64;
        self.trace.rec(self.now, to as u64, Kind::Datagram, from as u64, 0, "");
        let now = self.node_now(to);
        let source = self.nodes[from as usize].ip;
        let clock = self.timing.is_some().then(Instant::now);
        self.nodes[to as usize].node.as_mut().expect("checked").handle_datagram(now, source, payload);
        if let Some(c) = clock {
            self.timing.as_mut().expect("on").add(9, c.elapsed());
        }
        self.drain(to, &mut Ctx::default());
    }
}
