//! The anchor: a directory of agents' URLs and relay mailboxes for agents behind NAT, as a sans-IO
//! state machine (SPEC §19). `darkmatter anchor` drives it.
//!
//! It speaks 0.5.3's anchor protocol (same paths, statuses, error texts and JSON fields), and is stricter
//! where 0.5.3 is open: a registration's key must be its agent id, an older registration never
//! replaces a newer one, a poll signature drains each mailbox once, mailboxes accept posts only for
//! registered agents and evict a flooder's own entries first, and registrations and posts are counted
//! per TCP source. Everything stored is opaque to the anchor: relayed messages are sealed end to end by
//! their senders.
//!
//! ## Driving it
//! 1. Hand in each request with [`Anchor::handle_request`] (`now`, a request id, method, path, query,
//!    body, TCP source).
//! 2. Drain [`Anchor::poll_output`] until `None`. A [`AnchorOutput::Persist`] must be durable before any
//!    output after it is carried out: an answer (`200` to a registration or a post, the entries of a
//!    poll) is only ever given once what it acknowledges (or deletes) is on disk.
//! 3. Call [`Anchor::handle_timeout`] at [`Anchor::poll_timeout`] (long polls end, entries expire) and
//!    drain again.
//!
//! At start-up, [`Anchor::restore`] takes back the stored records.

mod directory;
mod mailboxes;
mod probe;
mod sources;

use core::net::{IpAddr, Ipv4Addr};
use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

pub use directory::{Directory, RegisterError, Registration};
pub use mailboxes::{Entry, Kind, Mailboxes, PostError};
pub use probe::{probe_target, PROBE_PATH, PROBE_REFUSED};
pub use sources::{PollError, PollSeen};

use crate::crypto::{verify_hex, Ed25519};
use crate::identity::AgentId;
use crate::io::Method;
use crate::limits::{
    AGENT_ID_BYTES_MAX, ANCHOR_ENTRY_BYTES_MAX, ANCHOR_LONG_POLLS_MAX, ANCHOR_LONG_POLL_S_MAX,
    ANCHOR_PROBES_IN_FLIGHT_MAX, FRESHNESS_WINDOW_S, ID_BYTES_MAX,
};
use crate::sign::{domain_bytes, v2_bytes, DOMAIN_PEER_UPDATE, DOMAIN_RELAY_POLL, V2_ANCHOR_REGISTER};
use crate::time::{is_fresh, parse_iso, Now};
use sources::{Budgets, PollLog, Spend};

/// How often expired entries, stale registrations and old polls are dropped, in ms.
pub const ANCHOR_HOUSEKEEPING_INTERVAL_MS: u64 = 60_000;
/// The `protocol_version` of the anchor card (0.5.3's value).
pub const ANCHOR_PROTOCOL_VERSION: &str = "0.2";

/// The driver's name for one HTTP request, so a held (long) poll can be answered later.
pub type RequestId = u64;

/// One HTTP request as the driver read it.
#[derive(Clone, Debug)]
pub struct AnchorRequest {
    /// The driver's id for it; its answer carries the same.
    pub id: RequestId,
    /// GET, POST or other.
    pub method: Method,
    /// The path, without the query.
    pub path: String,
    /// The query string (after `?`, still percent-encoded), empty when there is none.
    pub query: String,
    /// The body.
    pub body: Vec<u8>,
    /// The TCP peer address (`None` only in tests that do not care).
    pub source: Option<IpAddr>,
}

/// One durable change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AnchorWrite {
    /// Store (or replace) a registration, keyed by its agent id.
    PutRegistration(Registration),
    /// Delete the registration of this agent id.
    DeleteRegistration(String),
    /// Store a mailbox entry, keyed by its sequence number.
    PutEntry(Entry),
    /// Delete the mailbox entry with this sequence number.
    DeleteEntry(u64),
    /// Remember a poll (keyed by agent, kind, timestamp).
    PutPoll(PollSeen),
    /// Forget a poll.
    DeletePoll(PollSeen),
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnchorOutput {
    /// Make these changes durable, in one transaction, before carrying out any later output.
    Persist(Vec<AnchorWrite>),
    /// GET `url` (a requester's own status page, [`probe_target`]) without following redirects,
    /// within [`crate::limits::ANCHOR_PROBE_TIMEOUT_MS`], ignoring the body; hand the status (or the
    /// failure) to [`Anchor::handle_probe_result`] with the same `request`.
    Probe {
        /// The request the probe answers.
        request: RequestId,
        /// The URL to fetch.
        url: String,
    },
    /// Answer request `request` with `status` and a JSON body.
    Reply {
        /// The request answered.
        request: RequestId,
        /// HTTP status.
        status: u16,
        /// JSON body.
        body: Vec<u8>,
    },
}

/// Everything stored, as read back at start-up.
#[derive(Clone, Debug, Default)]
pub struct AnchorRecords {
    /// Registrations.
    pub registrations: Vec<Registration>,
    /// Mailbox entries.
    pub entries: Vec<Entry>,
    /// Remembered polls.
    pub polls: Vec<PollSeen>,
}

/// A poll held until an entry arrives or its deadline passes (the long-poll extension).
#[derive(Clone, Debug)]
struct Waiter {
    request: RequestId,
    kind: Kind,
    agent_id: String,
    deadline_ms: u64,
}

/// The anchor's state: directory, mailboxes, per-source budgets, poll log and held polls.
#[derive(Debug, Default)]
pub struct Anchor {
    directory: Directory,
    mailboxes: Mailboxes,
    budgets: Budgets,
    polls: PollLog,
    waiters: Vec<Waiter>,
    /// Probe requests whose GET is in flight (at most [`ANCHOR_PROBES_IN_FLIGHT_MAX`]).
    probes: std::collections::BTreeSet<RequestId>,
    next_housekeeping_ms: u64,
    outputs: VecDeque<AnchorOutput>,
}

/// An answer: status and JSON body.
type Answer = (u16, Vec<u8>);

fn error(status: u16, text: &str) -> Answer {
    (status, crate::wire::error_body(text))
}

fn ok_json(value: &Value) -> Answer {
    (200, serde_json::to_vec(value).unwrap_or_default())
}

impl Anchor {
    /// An empty anchor (the driver's monotonic clock starts at 0).
    pub fn new() -> Self {
        Self { next_housekeeping_ms: ANCHOR_HOUSEKEEPING_INTERVAL_MS, ..Self::default() }
    }

    /// An anchor holding `records`; what expired while it was down is dropped and its deletion queued.
    pub fn restore(records: AnchorRecords, now: Now) -> Self {
        let mut anchor = Self::new();
        let mut gone = Vec::new();
        for reg in records.registrations {
            let id = reg.agent_id.clone();
            if !anchor.directory.restore(reg, now.wall_us) {
                gone.push(AnchorWrite::DeleteRegistration(id));
            }
        }
        let mut entries = records.entries;
        entries.sort_by_key(|e| e.seq);
        for entry in entries {
            let seq = entry.seq;
            if !anchor.mailboxes.restore(entry, now.wall_us) {
                gone.push(AnchorWrite::DeleteEntry(seq));
            }
        }
        for seen in records.polls {
            if !anchor.polls.restore(seen.clone(), now.wall_us) {
                gone.push(AnchorWrite::DeletePoll(seen));
            }
        }
        anchor.persist(gone);
        anchor.next_housekeeping_ms = now.mono_ms + ANCHOR_HOUSEKEEPING_INTERVAL_MS;
        anchor
    }

    /// Live and stale registrations held.
    pub fn registrations(&self) -> usize {
        self.directory.len()
    }

    /// Bytes charged by all buffered entries.
    pub fn buffered_bytes(&self) -> usize {
        self.mailboxes.total_bytes()
    }

    /// The next output, in order.
    pub fn poll_output(&mut self) -> Option<AnchorOutput> {
        self.outputs.pop_front()
    }

    /// When [`Anchor::handle_timeout`] is next due, in monotonic ms.
    pub fn poll_timeout(&self) -> u64 {
        self.waiters.iter().map(|w| w.deadline_ms).fold(self.next_housekeeping_ms, u64::min)
    }

    /// Ends long polls whose deadline passed (with what arrived meanwhile: nothing) and, when due,
    /// drops expired entries, stale registrations and forgotten polls.
    pub fn handle_timeout(&mut self, now: Now) {
        let (due, held): (Vec<Waiter>, Vec<Waiter>) =
            std::mem::take(&mut self.waiters).into_iter().partition(|w| w.deadline_ms <= now.mono_ms);
        self.waiters = held;
        for waiter in due {
            self.answer_poll(now, waiter.request, waiter.kind, &waiter.agent_id);
        }
        if now.mono_ms >= self.next_housekeeping_ms {
            self.next_housekeeping_ms = now.mono_ms + ANCHOR_HOUSEKEEPING_INTERVAL_MS;
            let mut writes: Vec<AnchorWrite> =
                self.mailboxes.expire(now.wall_us).into_iter().map(AnchorWrite::DeleteEntry).collect();
            writes.extend(self.directory.prune(now.wall_us).into_iter().map(AnchorWrite::DeleteRegistration));
            writes.extend(self.polls.expire(now.wall_us).into_iter().map(AnchorWrite::DeletePoll));
            self.persist(writes);
        }
    }

    /// Handles one request; its answer (now, or later for a held poll) comes out of
    /// [`Anchor::poll_output`].
    pub fn handle_request(&mut self, now: Now, req: AnchorRequest) {
        let source = req.source.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let answer = self.route(now, &req, source);
        if let Some((status, body)) = answer {
            self.outputs.push_back(AnchorOutput::Reply { request: req.id, status, body });
        }
    }

    /// The answer to `req`, or `None` when it is held (a long poll).
    fn route(&mut self, now: Now, req: &AnchorRequest, source: IpAddr) -> Option<Answer> {
        let path = req.path.as_str();
        if path == "/.well-known/darkmatter.json" {
            return Some(self.card(req.method));
        }
        let Some(rest) = path.strip_prefix("/__darkmatter__/") else { return Some(error(404, "Not Found")) };
        let parts: Vec<&str> = rest.split('/').collect();
        match (req.method, parts.as_slice()) {
            (Method::Post, ["peer_update"]) => Some(self.register(now, &req.body, source)),
            (Method::Get, ["peer_lookup", id]) => Some(self.lookup(now, id)),
            (Method::Post, ["probe_reachability"]) => self.probe(now, req.id, &req.body, source),
            (Method::Get, ["webhook_relay", _, message_id]) => {
                Some(ok_json(&json!({"status": "relay", "message_id": message_id})))
            }
            (Method::Post, ["webhook_relay", target, message_id]) => {
                let answer = self.post(now, Kind::Webhook, target, Some(message_id), &req.body, source);
                self.reply_then_wake(now, req.id, answer, Kind::Webhook, target);
                None
            }
            (Method::Post, [word, target]) => {
                let Some(kind) = post_kind(word) else { return Some(error(404, "Not Found")) };
                let answer = self.post(now, kind, target, None, &req.body, source);
                self.reply_then_wake(now, req.id, answer, kind, target);
                None
            }
            (Method::Get, [word, agent_id]) => match poll_kind(word) {
                Some(kind) => self.poll(now, req.id, kind, agent_id, &req.query),
                None => Some(error(404, "Not Found")),
            },
            (Method::Other, _) => Some(error(405, "Method Not Allowed")),
            _ => Some(error(404, "Not Found")),
        }
    }

    fn card(&self, method: Method) -> Answer {
        if method != Method::Get {
            return error(405, "Method Not Allowed");
        }
        ok_json(&json!({
            "darkmatter": true,
            "anchor": true,
            "protocol_version": ANCHOR_PROTOCOL_VERSION,
            "agents_registered": self.directory.len(),
            "dm_protocol": crate::wire::DM_PROTOCOL,
            "long_poll_s_max": ANCHOR_LONG_POLL_S_MAX,
        }))
    }

    fn persist(&mut self, writes: Vec<AnchorWrite>) {
        if !writes.is_empty() {
            self.outputs.push_back(AnchorOutput::Persist(writes));
        }
    }

    /// `POST /__darkmatter__/peer_update`: 0.5.3's checks in 0.5.3's order, then ours (key = id,
    /// nothing older than what is stored).
    fn register(&mut self, now: Now, body: &[u8], source: IpAddr) -> Answer {
        if !self.budgets.spend(source, Spend::Registration, now.mono_ms) {
            return error(429, "Rate limit exceeded");
        }
        let Some(data) = json_object(body) else { return error(400, "JSON body required") };
        let field = |name: &str| data.get(name).and_then(Value::as_str).map(str::trim).unwrap_or_default();
        let (agent_id, url) = (field("agent_id"), field("new_url"));
        if agent_id.is_empty() || url.is_empty() {
            return error(400, "Missing agent_id or new_url");
        }
        if let Err(why) = crate::url::validate(url) {
            return error(400, &why);
        }
        if agent_id.len() > AGENT_ID_BYTES_MAX {
            return error(400, "agent_id too long");
        }
        let (key_hex, signature, timestamp) = (field("public_key_hex"), field("signature"), field("timestamp"));
        let dm_signature = field("dm_signature_hex");
        if key_hex.is_empty() || (signature.is_empty() && dm_signature.is_empty()) || timestamp.is_empty() {
            return error(400, "Missing public_key_hex, signature, or timestamp");
        }
        let Some(stamp_us) = parse_iso(timestamp).filter(|&t| is_fresh(now.wall_us, t, FRESHNESS_WINDOW_S)) else {
            return error(403, "Timestamp expired or invalid");
        };
        // The key must be the id itself: 0.5.3 pins whatever key came first, so anyone could squat an id.
        let Ok(id) = AgentId::parse(agent_id).map_err(|_| ()).and_then(|id| match key_hex == agent_id {
            true => Ok(id),
            false => Err(()),
        }) else {
            return error(403, "Public key mismatch");
        };
        if !registration_signed(&id, url, timestamp, signature, dm_signature) {
            return error(403, "Invalid signature");
        }
        let reg = Registration {
            agent_id: agent_id.to_owned(),
            url: url.to_owned(),
            timestamp: timestamp.to_owned(),
            stamp_us,
            signature: signature.to_owned(),
            dm_signature_hex: dm_signature.to_owned(),
            last_seen_us: now.wall_us,
        };
        let (result, pruned) = self.directory.register(reg.clone(), now.wall_us);
        let mut writes: Vec<AnchorWrite> = pruned.into_iter().map(AnchorWrite::DeleteRegistration).collect();
        let answer = match result {
            Ok(is_new) => {
                writes.push(AnchorWrite::PutRegistration(reg));
                ok_json(&json!({"success": true, "registered": is_new}))
            }
            Err(RegisterError::Stale) => error(409, "Stale registration"),
            Err(RegisterError::Full) => error(429, "Directory full"),
        };
        self.persist(writes);
        answer
    }

    /// `GET /__darkmatter__/peer_lookup/<id>`: 0.5.3's fields, plus the signed registration so the
    /// asker can check the URL came from the agent and not from us.
    fn lookup(&self, now: Now, agent_id: &str) -> Answer {
        let Some(reg) = self.directory.lookup(agent_id, now.wall_us) else { return error(404, "Unknown agent") };
        ok_json(&json!({
            "agent_id": reg.agent_id,
            "url": reg.url,
            "last_seen": reg.last_seen_us as f64 / 1e6,
            "signed_update": {
                "agent_id": reg.agent_id,
                "new_url": reg.url,
                "public_key_hex": reg.agent_id,
                "timestamp": reg.timestamp,
                "signature": reg.signature,
                "dm_signature_hex": reg.dm_signature_hex,
            },
        }))
    }

    /// `POST /__darkmatter__/probe_reachability`: only the requester's own status page, at most
    /// [`crate::limits::ANCHOR_PROBES_PER_SOURCE`] a window per source; the answer waits for the GET.
    fn probe(&mut self, now: Now, request: RequestId, body: &[u8], source: IpAddr) -> Option<Answer> {
        if !self.budgets.spend(source, Spend::Probe, now.mono_ms) {
            return Some(error(429, "Rate limit exceeded"));
        }
        let url = match probe_target(body, source) {
            Ok(url) => url,
            Err(why) => return Some(error(400, &why)),
        };
        if self.probes.len() >= ANCHOR_PROBES_IN_FLIGHT_MAX {
            return Some(error(503, "Too many probes in flight; try again later"));
        }
        self.probes.insert(request);
        self.outputs.push_back(AnchorOutput::Probe { request, url });
        None
    }

    /// The outcome of a probe's GET: `Some(status)` when the page answered, `None` when it could not
    /// be reached. Answered as 0.5.3 does: reachable only on 200.
    pub fn handle_probe_result(&mut self, request: RequestId, status: Option<u16>) {
        if !self.probes.remove(&request) {
            return;
        }
        let body = json!({"reachable": status == Some(200), "status_code": status});
        let (status, body) = ok_json(&body);
        self.outputs.push_back(AnchorOutput::Reply { request, status, body });
    }

    /// Probes whose GET is in flight.
    pub fn probes_in_flight(&self) -> usize {
        self.probes.len()
    }

    /// `POST /__darkmatter__/<kind>_relay/<target>[/<message_id>]`.
    fn post(
        &mut self,
        now: Now,
        kind: Kind,
        target: &str,
        message_id: Option<&str>,
        body: &[u8],
        source: IpAddr,
    ) -> Answer {
        // Mail only for agents that registered here: the buffers are not free storage for anyone.
        if self.directory.lookup(target, now.wall_us).is_none() {
            return error(404, "Unknown agent");
        }
        if !self.budgets.spend(source, Spend::Post, now.mono_ms) {
            return error(429, "Rate limit exceeded");
        }
        if body.len() > ANCHOR_ENTRY_BYTES_MAX {
            return error(413, &format!("Body exceeds {ANCHOR_ENTRY_BYTES_MAX} bytes"));
        }
        if json_truthy(body).is_none() {
            return error(400, "JSON body required");
        }
        if message_id.is_some_and(|m| m.len() > ID_BYTES_MAX) {
            return error(400, "message_id too long");
        }
        let source = crate::url::source_prefix(source);
        let posted =
            self.mailboxes.post(kind, target, message_id.map(str::to_owned), source, body.to_vec(), now.wall_us);
        let mut writes: Vec<AnchorWrite> = posted.removed.into_iter().map(AnchorWrite::DeleteEntry).collect();
        let answer = match posted.outcome {
            Ok(seq) => {
                if let Some(entry) = self.mailboxes.entry(kind, target, seq) {
                    writes.push(AnchorWrite::PutEntry(entry.clone()));
                }
                ok_json(&json!({"success": true, "buffered": true}))
            }
            Err(PostError::Full) => error(507, &PostError::Full.to_string()),
        };
        self.persist(writes);
        answer
    }

    /// Answers a post, then a poll of that mailbox held waiting for it (after the post, so the entry
    /// is durable before it is handed out and deleted).
    fn reply_then_wake(&mut self, now: Now, request: RequestId, answer: Answer, kind: Kind, target: &str) {
        let (status, body) = answer;
        let stored = status == 200;
        self.outputs.push_back(AnchorOutput::Reply { request, status, body });
        if !stored {
            return;
        }
        if let Some(pos) = self.waiters.iter().position(|w| w.kind == kind && w.agent_id == target) {
            let waiter = self.waiters.remove(pos);
            self.answer_poll(now, waiter.request, kind, target);
        }
    }

    /// `GET /__darkmatter__/<kind>_relay_poll/<agent>?signature=&timestamp=[&wait=]`.
    fn poll(&mut self, now: Now, request: RequestId, kind: Kind, agent_id: &str, query: &str) -> Option<Answer> {
        let params = PollParams::parse(query);
        let (Some(signature), Some(timestamp)) = (params.signature.as_deref(), params.timestamp.as_deref()) else {
            return Some(error(400, "Missing signature or timestamp"));
        };
        let Some(stamp_us) = parse_iso(timestamp).filter(|&t| is_fresh(now.wall_us, t, FRESHNESS_WINDOW_S)) else {
            return Some(error(403, "Timestamp expired"));
        };
        if !self.poll_signature_ok(now, agent_id, timestamp, signature) {
            return Some(error(403, "Invalid signature"));
        }
        let (recorded, forgotten) = self.polls.record(agent_id, kind, stamp_us, now.wall_us);
        let mut writes: Vec<AnchorWrite> = forgotten.into_iter().map(AnchorWrite::DeletePoll).collect();
        let answer = match recorded {
            Ok(seen) => {
                writes.push(AnchorWrite::PutPoll(seen));
                None
            }
            Err(e @ PollError::Replayed) => Some(error(403, &e.to_string())),
            Err(e @ PollError::TooMany) => Some(error(429, &e.to_string())),
        };
        self.persist(writes);
        if answer.is_some() {
            return answer;
        }
        let wait_s = params.wait_s.min(ANCHOR_LONG_POLL_S_MAX);
        let hold =
            wait_s > 0 && self.mailboxes.waiting(kind, agent_id) == 0 && self.waiters.len() < ANCHOR_LONG_POLLS_MAX;
        if hold {
            let deadline_ms = now.mono_ms + wait_s * 1_000;
            self.waiters.push(Waiter { request, kind, agent_id: agent_id.to_owned(), deadline_ms });
            return None;
        }
        self.answer_poll(now, request, kind, agent_id);
        None
    }

    fn poll_signature_ok(&self, now: Now, agent_id: &str, timestamp: &str, signature: &str) -> bool {
        let Some(reg) = self.directory.lookup(agent_id, now.wall_us) else { return false };
        let Ok(id) = AgentId::parse(&reg.agent_id) else { return false };
        let Ok(bytes) = domain_bytes(DOMAIN_RELAY_POLL, &[agent_id, timestamp]) else { return false };
        verify_hex(&Ed25519, id.key(), &bytes, signature).is_ok()
    }

    /// Drains the mailbox and answers `request` with its entries, after their deletion is persisted.
    fn answer_poll(&mut self, now: Now, request: RequestId, kind: Kind, agent_id: &str) {
        let (live, removed) = self.mailboxes.drain(kind, agent_id, now.wall_us);
        self.persist(removed.into_iter().map(AnchorWrite::DeleteEntry).collect());
        let body = poll_body(kind, &live);
        self.outputs.push_back(AnchorOutput::Reply { request, status: 200, body });
    }
}

/// Whether a registration carries a good signature: every signature present must verify under the id
/// (0.5.3's `peer_update` form, our `anchor-register` form), and at least one is present.
fn registration_signed(id: &AgentId, url: &str, timestamp: &str, signature: &str, dm_signature: &str) -> bool {
    let agent_id = id.as_str();
    let legacy_ok = signature.is_empty()
        || domain_bytes(DOMAIN_PEER_UPDATE, &[agent_id, url, timestamp])
            .is_ok_and(|bytes| verify_hex(&Ed25519, id.key(), &bytes, signature).is_ok());
    let v2 = v2_bytes(V2_ANCHOR_REGISTER, &[agent_id, url, timestamp]);
    let v2_ok = dm_signature.is_empty() || verify_hex(&Ed25519, id.key(), &v2, dm_signature).is_ok();
    (!signature.is_empty() || !dm_signature.is_empty()) && legacy_ok && v2_ok
}

/// `{"success":true,"<field>":[...]}` with each entry's body spliced in as posted (it was checked to be
/// JSON when it arrived), webhook callbacks wrapped as `{"message_id","data"}` as 0.5.3 does.
fn poll_body(kind: Kind, entries: &[Entry]) -> Vec<u8> {
    let mut out = format!("{{\"success\":true,\"{}\":[", kind.answer_field()).into_bytes();
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match (&entry.message_id, kind) {
            (Some(message_id), Kind::Webhook) => {
                out.extend_from_slice(b"{\"message_id\":");
                out.extend_from_slice(&serde_json::to_vec(message_id).unwrap_or_default());
                out.extend_from_slice(b",\"data\":");
                out.extend_from_slice(&entry.body);
                out.push(b'}');
            }
            _ => out.extend_from_slice(&entry.body),
        }
    }
    out.extend_from_slice(b"]}");
    out
}

fn post_kind(word: &str) -> Option<Kind> {
    Kind::ALL.into_iter().find(|k| k.path_word() == word && *k != Kind::Webhook)
}

fn poll_kind(word: &str) -> Option<Kind> {
    let stem = word.strip_suffix("_poll")?;
    Kind::ALL.into_iter().find(|k| k.path_word() == stem)
}

/// The body as a JSON object, if it is one (0.5.3 requires one for registrations).
fn json_object(body: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice(body).ok()? {
        Value::Object(map) if !map.is_empty() => Some(map),
        _ => None,
    }
}

/// `Some` when the body is JSON that Python finds true (0.5.3 answers `JSON body required` to `{}`,
/// `[]`, `""`, `0`, `false`, `null` and to anything that does not parse).
fn json_truthy(body: &[u8]) -> Option<()> {
    let truthy = match serde_json::from_slice::<Value>(body).ok()? {
        Value::Null => false,
        Value::Bool(b) => b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    };
    truthy.then_some(())
}

/// The query parameters of a poll.
#[derive(Debug, Default)]
struct PollParams {
    signature: Option<String>,
    timestamp: Option<String>,
    wait_s: u64,
}

impl PollParams {
    /// Reads `signature`, `timestamp` and `wait` (the first of each; empty counts as missing).
    fn parse(query: &str) -> Self {
        let mut params = Self::default();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let value = (!value.is_empty()).then(|| value.into_owned());
            match name.as_ref() {
                "signature" if params.signature.is_none() => params.signature = value,
                "timestamp" if params.timestamp.is_none() => params.timestamp = value,
                "wait" => params.wait_s = value.and_then(|v| v.parse().ok()).unwrap_or(0),
                _ => {}
            }
        }
        params
    }
}

#[cfg(test)]
mod tests;
