//! Reaching a node through anchors (SPEC §20): registrations, anchors as lookup answerers, the
//! end-to-end sealed relay (send when direct delivery and lookup failed; receive by polling) and the
//! dispatch of what was relayed through the normal pipelines. State lives in [`crate::relay`].

use core::net::IpAddr;

use serde_json::{json, Value};

use crate::crypto;
use crate::e2e::{self, Fresh, Nonce, NONCE_BYTES, V2_NONCE_BYTES};
use crate::healing::Candidate;
use crate::identity::AgentId;
use crate::io::RecoveredVia;
use crate::io::{Event, HttpResponse, InboundId, InboundRequest, Method};
use crate::limits::{
    ANCHOR_ENTRY_BYTES_MAX, RELAY_LOOKUP_TIMEOUT_MS, RELAY_POLL_ENTRIES_MAX, RELAY_POST_TIMEOUT_MS,
    RELAY_PROBE_TIMEOUT_MS, RELAY_REGISTER_TIMEOUT_MS,
};
use crate::node::{Call, Node};
use crate::relay::Mailbox;
use crate::sign::{self, DOMAIN_PEER_UPDATE, DOMAIN_RELAY_POLL, V2_ANCHOR_REGISTER};
use crate::url;
use crate::wire::{self, peer::PeerLookupAnswer};

/// Paths a relayed body may name; anything else is dropped with an event.
const RELAYED_PATHS: [&str; 3] =
    ["/__darkmatter__/message", "/__darkmatter__/connection_accepted", "/__darkmatter__/peer_update"];

/// An anchor's weight as a lookup answerer: the floor of a connection's (0.5.3's 0.1), so that an
/// anchor alone never adopts an unsigned URL (anchors are the last resort; their signed answers count).
const ANCHOR_ANSWER_WEIGHT: f64 = 0.1;

/// What a relayed post is for, so that its outcome reaches the right place.
#[derive(Clone, Debug)]
pub(crate) enum RelayFor {
    /// A message delivery of a batch; `direct` is how the direct delivery failed (reported if the
    /// relay fails too).
    Delivery { batch: u64, direct: Result<HttpResponse, String> },
    /// Our acceptance to a requester we could not reach.
    Acceptance { attempt: u32 },
    /// A peer update (best effort).
    Notice,
}

/// Whether a URL can be dialled only from this machine or its network (loopback, private,
/// link-local, unspecified) or is not a valid URL: peers elsewhere cannot reach it.
pub(crate) fn unroutable(public_url: &str) -> bool {
    url::validate(public_url).map_or(true, |u| url::is_local_url(&u))
}

/// The IP of an anchor URL given as an address (the source of what is polled from it).
fn anchor_ip(anchor: &str) -> Option<IpAddr> {
    match url::validate(anchor).ok()?.host()? {
        ::url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        ::url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        ::url::Host::Domain(_) => None,
    }
}

impl Node {
    /// Registrations, probes and polls that are due.
    pub(crate) fn relay_timers(&mut self) {
        let now_ms = self.now.mono_ms;
        self.relay.timer(self.now);
        if self.relay.take_registration_due(now_ms) {
            self.register_with_anchors();
        }
        if let Some(generation) = self.relay.take_probe_due(now_ms) {
            self.probe_reachability(generation);
        }
        for kind in self.relay.take_polls_due(now_ms) {
            self.poll_mailbox(kind);
        }
    }

    /// Posts our signed registration to every anchor: 0.5.3's `peer_update` form and our
    /// `anchor-register` form, exactly what an anchor checks (SPEC §19.2).
    pub(crate) fn register_with_anchors(&mut self) {
        if !self.relay.enabled() {
            return;
        }
        self.relay.registered(self.now.mono_ms);
        let stamp = self.now.iso();
        let (me, url_now) = (self.me().to_owned(), self.config.public_url.clone());
        let legacy = sign::domain_bytes(DOMAIN_PEER_UPDATE, &[&me, &url_now, &stamp])
            .ok()
            .map(|b| crypto::sign_hex(&*self.signatures, &self.passport, &b));
        let ours = sign::v2_bytes(V2_ANCHOR_REGISTER, &[&me, &url_now, &stamp]);
        let body = json!({
            "agent_id": me,
            "new_url": url_now,
            "public_key_hex": me,
            "timestamp": stamp,
            "signature": legacy,
            "dm_signature_hex": crypto::sign_hex(&*self.signatures, &self.passport, &ours),
            "bio": self.profile.bio,
            "display_name": self.profile.display_name,
        });
        let body = serde_json::to_vec(&body).expect("a JSON value serialises");
        for anchor in self.relay.anchors().to_vec() {
            let to = url::endpoint(&anchor, "peer_update");
            self.transmit(Method::Post, to, body.clone(), RELAY_REGISTER_TIMEOUT_MS, false, Call::FireAndForget);
        }
    }

    /// Asks every anchor to fetch our status page (SPEC §19.7): the one test of whether peers
    /// elsewhere can dial our URL that NAT hairpinning cannot fake.
    fn probe_reachability(&mut self, generation: u64) {
        let status = url::endpoint(&self.config.public_url, "status");
        let body = serde_json::to_vec(&json!({ "url": status })).expect("a JSON value serialises");
        for base in self.relay.anchors().to_vec() {
            let to = url::endpoint(&base, "probe_reachability");
            let call = Call::ReachProbe { generation };
            self.transmit(Method::Post, to, body.clone(), RELAY_PROBE_TIMEOUT_MS, false, call);
        }
    }

    /// An anchor's answer to a probe: `{"reachable": bool}` on 200 counts, anything else is no answer
    /// (a 0.5.3 anchor without the route, a refusal, a timeout).
    pub(crate) fn on_reach_probe_answer(&mut self, generation: u64, result: Result<HttpResponse, String>) {
        let answer = result
            .ok()
            .filter(|r| r.status == 200)
            .and_then(|r| serde_json::from_slice::<Value>(&r.body).ok())
            .and_then(|v| v.get("reachable").and_then(Value::as_bool));
        self.relay.probe_answered(generation, self.now.mono_ms, answer);
    }

    /// The webhook our messages carry: our own URL's, or, behind NAT with an anchor, the first
    /// anchor's webhook mailbox for us (0.5.3's form), which we poll.
    pub(crate) fn webhook_for(&self, message_id: &str) -> String {
        match self.relay.anchors().first() {
            Some(anchor) if self.relay.nat_detected() => {
                url::endpoint(anchor, &format!("webhook_relay/{}/{message_id}", self.me()))
            }
            _ => url::endpoint(&self.config.public_url, &format!("webhook/{message_id}")),
        }
    }

    // ----- anchors in lookups -----

    /// Asks every anchor where `peer` is (beside the connections); returns how many were asked.
    pub(crate) fn ask_anchors(&mut self, peer: &str) -> usize {
        let anchors = self.relay.anchors().to_vec();
        for (index, anchor) in anchors.iter().enumerate() {
            let to = url::endpoint(anchor, &format!("peer_lookup/{peer}"));
            let call = Call::AnchorLookup { peer: peer.to_owned(), anchor: index };
            self.transmit(Method::Get, to, Vec::new(), RELAY_LOOKUP_TIMEOUT_MS, false, call);
        }
        anchors.len()
    }

    /// An anchor's answer to a lookup: counted like a connection's, at the lowest weight, so an
    /// anchor alone adopts nothing unless the peer's own signature is in its answer.
    pub(crate) fn on_anchor_lookup_answer(&mut self, peer: &str, anchor: usize, result: Result<HttpResponse, String>) {
        let candidate = self.anchor_candidate(peer, anchor, result);
        self.lookup_answered(peer, candidate);
    }

    fn anchor_candidate(&self, peer: &str, anchor: usize, result: Result<HttpResponse, String>) -> Option<Candidate> {
        let anchor_url = self.relay.anchors().get(anchor)?.clone();
        let resp = result.ok().filter(|r| r.status == 200)?;
        let a: PeerLookupAnswer = wire::decode(&resp.body).ok()?;
        if a.agent_id != peer {
            return None;
        }
        let anchor_local = unroutable(&anchor_url);
        let usable = |text: &str| {
            url::validate(text).ok().filter(|u| anchor_local || !url::is_local_url(u)).map(|_| url::base(text))
        };
        // The anchor serves the registration as signed: 0.5.3's form is a peer update's; our
        // `anchor-register` form covers no bio, so only the legacy form makes a proof.
        let signed = a.signed_update.as_ref().and_then(|u| {
            let mut u = u.clone();
            u.dm_signature_hex = None;
            u.signature.as_ref().filter(|s| !s.is_empty())?;
            self.verified_update(peer, &u)
        });
        let signed = signed.filter(|p| usable(&p.url).is_some());
        let url = match &signed {
            Some(p) => url::base(&p.url),
            None => usable(&a.url)?,
        };
        let answerer = format!("anchor:{anchor_url}");
        Some(Candidate { answerer, url, weight: ANCHOR_ANSWER_WEIGHT, signed, via: RecoveredVia::Anchor })
    }

    // ----- sending through a relay -----

    /// A delivery failed for good (directly, and no lookup found the peer elsewhere): relayed when
    /// the failure looks like the peer is unreachable and an anchor is configured, else recorded.
    pub(crate) fn relay_or_fail(
        &mut self,
        batch: u64,
        target: String,
        body: Vec<u8>,
        direct: Result<HttpResponse, String>,
    ) {
        if !self.relay.enabled() || !super::lookup::looks_moved(&direct) || body.is_empty() {
            return self.record_delivery(batch, target, direct);
        }
        let purpose = RelayFor::Delivery { batch, direct };
        if let Err((purpose, why)) = self.relay_post(&target, "/__darkmatter__/message", &body, purpose) {
            self.relay_failed(&target, purpose, why);
        }
    }

    /// Seals `body` (a JSON object) for `peer` and posts it to the first anchor; gives the purpose
    /// back with the reason when it cannot be relayed at all.
    pub(crate) fn relay_post(
        &mut self,
        peer: &str,
        path: &str,
        body: &[u8],
        purpose: RelayFor,
    ) -> Result<(), (RelayFor, String)> {
        let envelope = match self.seal_for(peer, path, body) {
            Ok(e) => e,
            Err(why) => return Err((purpose, why)),
        };
        if let Err(why) = fits_anchor(envelope.len()) {
            return Err((purpose, why));
        }
        self.post_to_anchor(peer, envelope, 0, purpose);
        Ok(())
    }

    fn post_to_anchor(&mut self, peer: &str, envelope: Vec<u8>, anchor: usize, purpose: RelayFor) {
        let Some(anchor_url) = self.relay.anchors().get(anchor).cloned() else { return };
        let to = url::endpoint(&anchor_url, &format!("message_relay/{peer}"));
        let call = Call::Relay { peer: peer.to_owned(), envelope: envelope.clone(), anchor, purpose };
        self.transmit(Method::Post, to, envelope, RELAY_POST_TIMEOUT_MS, false, call);
    }

    /// An anchor's answer to a relayed post: buffered (`relayed`), else the next anchor is tried.
    pub(crate) fn on_relay_answer(
        &mut self,
        peer: String,
        envelope: Vec<u8>,
        anchor: usize,
        purpose: RelayFor,
        result: Result<HttpResponse, String>,
    ) {
        if matches!(&result, Ok(r) if r.status == 200) {
            return self.relayed(&peer, purpose);
        }
        if anchor + 1 < self.relay.anchors().len() {
            return self.post_to_anchor(&peer, envelope, anchor + 1, purpose);
        }
        let why = match result {
            Ok(r) => format!("relay refused it (HTTP {})", r.status),
            Err(e) => format!("relay unreachable: {e}"),
        };
        self.relay_failed(&peer, purpose, why);
    }

    fn relayed(&mut self, peer: &str, purpose: RelayFor) {
        match purpose {
            RelayFor::Delivery { batch, .. } => self.record_relayed(batch, peer.to_owned()),
            RelayFor::Acceptance { .. } => self.acceptance_settled(peer),
            RelayFor::Notice => {}
        }
    }

    fn relay_failed(&mut self, peer: &str, purpose: RelayFor, why: String) {
        match purpose {
            RelayFor::Delivery { batch, direct } => {
                let direct = match direct {
                    Err(e) => Err(format!("{e}; {why}")),
                    Ok(r) => Err(format!("HTTP {}; {why}", r.status)),
                };
                self.record_delivery(batch, peer.to_owned(), direct);
            }
            RelayFor::Acceptance { attempt } => self.acceptance_unsettled(peer, attempt),
            RelayFor::Notice => {}
        }
    }

    /// The sealed envelope for `peer`: version 2 to a peer that speaks our signed form, version 1
    /// (0.5.3's) otherwise; never plaintext.
    fn seal_for(&mut self, peer: &str, path: &str, body: &[u8]) -> Result<Vec<u8>, String> {
        let Some(conn) = self.connections.get(peer) else {
            return Err("not relayed: the recipient's key is not known".to_owned());
        };
        let (recipient, v2) = (conn.agent_id.clone(), conn.speaks_v2);
        let Some(entropy) = self.entropy.clone() else {
            return Err("not relayed: this runtime gives no OS randomness for sealing".to_owned());
        };
        let payload: Value = serde_json::from_slice(body).map_err(|e| format!("not relayed: {e}"))?;
        let stamp = self.now.iso();
        let plain = e2e::inner_plaintext(&*self.signatures, &self.passport, path, &payload, &stamp)
            .map_err(|e| format!("not relayed: {e}"))?;
        let me = self.me().to_owned();
        let envelope = if v2 {
            let mut fresh = Fresh { ephemeral_secret: [0; 32], nonce: [0; V2_NONCE_BYTES] };
            entropy.fill(&mut fresh.ephemeral_secret).map_err(|e| format!("not relayed: {e}"))?;
            entropy.fill(&mut fresh.nonce).map_err(|e| format!("not relayed: {e}"))?;
            let s = e2e::seal_v2(&self.passport, &recipient, &stamp, fresh, &plain)
                .map_err(|e| format!("not relayed: {e}"))?;
            json!({
                "e2e_version": 2,
                "eph_pub": hex::encode(s.eph_pub),
                "nonce": hex::encode(s.nonce),
                "ciphertext": hex::encode(&s.ciphertext),
                "from_agent_id": me,
                "timestamp": stamp,
            })
        } else {
            let mut nonce = [0u8; NONCE_BYTES];
            entropy.fill(&mut nonce).map_err(|e| format!("not relayed: {e}"))?;
            let s =
                e2e::seal(&self.passport, &recipient, Nonce(nonce), &plain).map_err(|e| format!("not relayed: {e}"))?;
            json!({
                "e2e_encrypted": true,
                "encrypted_payload": {
                    "nonce": s.nonce_hex(),
                    "ciphertext": s.ciphertext_hex(),
                    "sender_public_key_hex": me,
                },
                "from_agent_id": me,
                "timestamp": stamp,
            })
        };
        Ok(serde_json::to_vec(&envelope).expect("a JSON value serialises"))
    }

    /// A notice's direct answer: relayed when the peer could not be reached.
    pub(crate) fn on_notice_answer(
        &mut self,
        peer: &str,
        path: &'static str,
        body: Vec<u8>,
        result: Result<HttpResponse, String>,
    ) {
        if self.relay.enabled() && super::lookup::looks_moved(&result) {
            let _ = self.relay_post(peer, path, &body, RelayFor::Notice);
        }
    }

    // ----- polling -----

    /// Polls one mailbox at every anchor, each poll signed with its own timestamp.
    fn poll_mailbox(&mut self, kind: Mailbox) {
        let anchors = self.relay.anchors().to_vec();
        self.relay.poll_sent(kind, anchors.len());
        for (index, anchor) in anchors.iter().enumerate() {
            let stamp = self.now.iso();
            let me = self.me().to_owned();
            let Ok(bytes) = sign::domain_bytes(DOMAIN_RELAY_POLL, &[&me, &stamp]) else { continue };
            let signature = crypto::sign_hex(&*self.signatures, &self.passport, &bytes);
            let stamp_q: String = ::url::form_urlencoded::byte_serialize(stamp.as_bytes()).collect();
            let mut to =
                url::endpoint(anchor, &format!("{}/{me}?signature={signature}&timestamp={stamp_q}", kind.poll_path()));
            let mut timeout_ms = RELAY_POST_TIMEOUT_MS;
            if let Some(wait) = kind.wait_s() {
                to.push_str(&format!("&wait={wait}"));
                timeout_ms += wait * 1_000;
            }
            let call = Call::Poll { kind, anchor: index };
            self.transmit(Method::Get, to, Vec::new(), timeout_ms, false, call);
        }
    }

    /// A poll's answer: every entry goes through the pipeline of its kind.
    pub(crate) fn on_poll_answer(&mut self, kind: Mailbox, anchor: usize, result: Result<HttpResponse, String>) {
        let failed = !matches!(&result, Ok(r) if r.status == 200);
        let entries = result.ok().filter(|r| r.status == 200).map(|r| poll_entries(kind, &r.body)).unwrap_or_default();
        let source = self.relay.anchors().get(anchor).and_then(|a| anchor_ip(a));
        let count = entries.len();
        for entry in entries {
            match kind {
                Mailbox::Message => self.open_relayed(&entry, source),
                Mailbox::Connection => {
                    let body = serde_json::to_vec(&entry).expect("a JSON value serialises");
                    let _ = self.dispatch_relayed("/__darkmatter__/connection_accepted", body, source);
                }
                Mailbox::Webhook => self.relayed_webhook(&entry, source),
            }
        }
        // Entries mean someone could not reach us directly: we were unreachable, so poll on.
        if count > 0 {
            self.relay.unreachable_until(self.now.mono_ms);
        }
        self.relay.poll_answered(kind, self.now.mono_ms, count, failed);
    }

    /// A buffered webhook callback `{message_id, data}`: as if posted to `/webhook/<message_id>`.
    fn relayed_webhook(&mut self, entry: &Value, source: Option<IpAddr>) {
        let Some(message_id) = entry.get("message_id").and_then(Value::as_str) else { return };
        let Some(data) = entry.get("data") else { return };
        let body = serde_json::to_vec(data).expect("a JSON value serialises");
        let path = format!("/__darkmatter__/webhook/{message_id}");
        let _ = self.dispatch_relayed(&path, body, source);
    }

    /// Opens one relayed envelope and dispatches it if the key that opened it is its sender's.
    fn open_relayed(&mut self, entry: &Value, source: Option<IpAddr>) {
        match self.open_envelope(entry) {
            Ok((path, body)) => {
                let _ = self.dispatch_relayed(&path, body, source);
            }
            Err(reason) => {
                let path = "/__darkmatter__/message_relay".to_owned();
                self.emit(Event::Refused { path, status: 403, reason });
            }
        }
    }

    /// The path and body inside a sealed envelope, after every check: it opens under the claimed
    /// sender's key, the inner sender is that key's owner, and the path is one we take relayed.
    fn open_envelope(&mut self, entry: &Value) -> Result<(String, Vec<u8>), String> {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_owned();
        let plain = if entry.get("e2e_version").and_then(Value::as_u64) == Some(2) {
            let sender = self.parse_sender(&text(entry.get("from_agent_id")))?;
            let stamp = text(entry.get("timestamp"));
            let fields = [entry.get("eph_pub"), entry.get("nonce"), entry.get("ciphertext")].map(text);
            let fields = [fields[0].as_str(), fields[1].as_str(), fields[2].as_str()];
            let plain = e2e::open_v2_hex(&self.passport, &sender, &stamp, fields).map_err(|e| e.to_string())?;
            (sender, plain)
        } else if entry.get("e2e_encrypted").and_then(Value::as_bool) == Some(true) {
            let sealed = entry.get("encrypted_payload").ok_or("relayed envelope without encrypted_payload")?;
            let claimed = match text(sealed.get("sender_public_key_hex")) {
                k if k.is_empty() => text(entry.get("from_agent_id")),
                k => k,
            };
            let sender = self.parse_sender(&claimed)?;
            let (nonce, ct) = (text(sealed.get("nonce")), text(sealed.get("ciphertext")));
            let plain = e2e::open_hex(&self.passport, &sender, &nonce, &ct).map_err(|e| e.to_string())?;
            (sender, plain)
        } else {
            return Err("relayed body is not sealed: dropped".to_owned());
        };
        let (sender, plain) = plain;
        let inner: Value = serde_json::from_slice(&plain).map_err(|_| "relayed plaintext is not JSON".to_owned())?;
        let path = text(inner.get("path"));
        if !RELAYED_PATHS.contains(&path.as_str()) {
            return Err(format!("relayed path {path:?} is not taken"));
        }
        let payload = inner.get("payload").filter(|p| p.is_object()).ok_or("relayed payload is not an object")?;
        let claimed = if path.ends_with("/message") { "from_agent_id" } else { "agent_id" };
        if payload.get(claimed).and_then(Value::as_str) != Some(sender.as_str()) {
            return Err("relayed body names another sender than the key that sealed it".to_owned());
        }
        Ok((path, serde_json::to_vec(payload).expect("a JSON value serialises")))
    }

    fn parse_sender(&mut self, id: &str) -> Result<AgentId, String> {
        self.agent_id(id).map_err(|e| format!("relayed sender: {e}"))
    }

    /// Runs a relayed body through the route it names, as a request from `source` (the anchor it
    /// was polled from): the same checks, replay protection and budgets as direct traffic.
    fn dispatch_relayed(&mut self, path: &str, body: Vec<u8>, source: Option<IpAddr>) -> Result<(), ()> {
        let request =
            InboundRequest { id: InboundId(u64::MAX), method: Method::Post, path: path.to_owned(), body, source };
        self.request_from_peer = false;
        let outcome = self.route(&request);
        self.request_from_peer = false;
        match outcome {
            Ok(_) => Ok(()),
            Err(refusal) => {
                let (status, reason) = (refusal.status(), refusal.to_string());
                self.emit(Event::Refused { path: path.to_owned(), status, reason });
                Err(())
            }
        }
    }
}

/// An anchor buffers at most [`ANCHOR_ENTRY_BYTES_MAX`] bytes per entry: a larger envelope is
/// refused here with a clear error rather than by the anchor with a 413.
fn fits_anchor(envelope_bytes: usize) -> Result<(), String> {
    if envelope_bytes > ANCHOR_ENTRY_BYTES_MAX {
        return Err(format!(
            "too large to relay: {envelope_bytes} bytes sealed, an anchor takes at most {ANCHOR_ENTRY_BYTES_MAX}"
        ));
    }
    Ok(())
}

/// The entries of one poll answer (at most [`RELAY_POLL_ENTRIES_MAX`]).
fn poll_entries(kind: Mailbox, body: &[u8]) -> Vec<Value> {
    let field = match kind {
        Mailbox::Message => "messages",
        Mailbox::Connection | Mailbox::Webhook => "callbacks",
    };
    let Ok(Value::Object(mut answer)) = serde_json::from_slice::<Value>(body) else { return Vec::new() };
    match answer.remove(field) {
        Some(Value::Array(mut entries)) => {
            entries.truncate(RELAY_POLL_ENTRIES_MAX);
            entries
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Passport;
    use crate::node::connection::PeerDetails;
    use crate::time::Now;
    use crate::Config;

    fn node(seed: u8) -> Node {
        let config = Config { anchors: vec!["http://127.0.0.1:5001".into()], ..Config::default() };
        Node::new(Passport::from_seed([seed; 32]), config, 1, Now { mono_ms: 0, wall_us: 1_800_000_000_000_000 })
    }

    /// A version 1 envelope sealed by `from` for `to`, carrying `payload` at `path`.
    fn sealed_v1(from: &Passport, to: &Passport, path: &str, payload: Value) -> Value {
        let plain = e2e::inner_plaintext(&crate::crypto::Ed25519, from, path, &payload, "t").unwrap();
        let s = e2e::seal(from, to.agent_id(), Nonce([7; NONCE_BYTES]), &plain).unwrap();
        json!({
            "e2e_encrypted": true,
            "encrypted_payload": {"nonce": s.nonce_hex(), "ciphertext": s.ciphertext_hex(),
                "sender_public_key_hex": from.agent_id().as_str()},
            "from_agent_id": from.agent_id().as_str(), "timestamp": "t",
        })
    }

    #[test]
    fn an_envelope_opens_only_for_its_sender_and_the_paths_we_take() {
        let mut b = node(2);
        let (a, b_pass, c) = (Passport::from_seed([1; 32]), Passport::from_seed([2; 32]), Passport::from_seed([3; 32]));
        let me = a.agent_id().as_str();
        let ok = sealed_v1(&a, &b_pass, "/__darkmatter__/message", json!({"from_agent_id": me, "content": "x"}));
        let (path, body) = b.open_envelope(&ok).expect("opens");
        assert_eq!(path, "/__darkmatter__/message");
        assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["content"], "x");
        let accepted = sealed_v1(&a, &b_pass, "/__darkmatter__/connection_accepted", json!({"agent_id": me}));
        assert!(b.open_envelope(&accepted).is_ok(), "relayed acceptances are taken (0.5.3 drops them)");

        let other = c.agent_id().as_str();
        let forged = sealed_v1(&a, &b_pass, "/__darkmatter__/message", json!({"from_agent_id": other}));
        assert!(b.open_envelope(&forged).unwrap_err().contains("another sender"));
        let path = sealed_v1(&a, &b_pass, "/__darkmatter__/disconnect", json!({"agent_id": me}));
        assert!(b.open_envelope(&path).unwrap_err().contains("not taken"));
        let not_ours = sealed_v1(&a, &c, "/__darkmatter__/message", json!({"from_agent_id": me}));
        assert!(b.open_envelope(&not_ours).is_err(), "sealed for someone else");
        let mut relabelled = ok.clone();
        relabelled["encrypted_payload"]["sender_public_key_hex"] = json!(other);
        assert!(b.open_envelope(&relabelled).is_err(), "another claimed key does not open it");
        let plain = json!({"path": "/__darkmatter__/message", "payload": {"from_agent_id": me}});
        assert!(b.open_envelope(&plain).unwrap_err().contains("not sealed"), "0.5.3's plaintext fallback");
    }

    #[test]
    fn an_envelope_larger_than_an_anchor_entry_is_refused_with_a_clear_error() {
        assert!(fits_anchor(ANCHOR_ENTRY_BYTES_MAX).is_ok());
        let err = fits_anchor(ANCHOR_ENTRY_BYTES_MAX + 1).unwrap_err();
        assert!(err.contains("too large to relay"), "{err}");
    }

    #[test]
    fn a_poll_answer_yields_at_most_its_bound_of_entries() {
        let answer = |n: usize| serde_json::to_vec(&json!({"success": true, "messages": vec![json!({}); n]})).unwrap();
        assert_eq!(poll_entries(Mailbox::Message, &answer(RELAY_POLL_ENTRIES_MAX)).len(), RELAY_POLL_ENTRIES_MAX);
        assert_eq!(poll_entries(Mailbox::Message, &answer(RELAY_POLL_ENTRIES_MAX + 1)).len(), RELAY_POLL_ENTRIES_MAX);
        assert!(poll_entries(Mailbox::Connection, &answer(3)).is_empty(), "connection polls answer `callbacks`");
        assert!(poll_entries(Mailbox::Message, b"[1,2]").is_empty());
    }

    /// An entropy source that counts from where it starts: distinct sources, distinct bytes.
    struct Counting(std::sync::atomic::AtomicU64);

    impl crate::relay::Entropy for Counting {
        fn fill(&self, buf: &mut [u8]) -> Result<(), String> {
            for chunk in buf.chunks_mut(8) {
                let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_le_bytes();
                chunk.copy_from_slice(&n[..chunk.len()]);
            }
            Ok(())
        }
    }

    /// T-B6: two starts of the same node (same passport, same seed, same clock) seal with the
    /// runtime's entropy, never with anything derived from the seed: had they used the seeded
    /// generator, both starts would repeat each other's nonces under the same static key.
    #[test]
    fn two_starts_of_one_node_never_repeat_a_nonce() {
        const SEALS_PER_START: u64 = 500;
        let peer = Passport::from_seed([9; 32]);
        let mut seen = std::collections::BTreeSet::new();
        for start in 0..2u64 {
            let mut a = node(8);
            a.set_entropy(std::sync::Arc::new(Counting(std::sync::atomic::AtomicU64::new(start << 40))));
            for v2 in [false, true] {
                let details = PeerDetails {
                    agent_id: peer.agent_id().clone(),
                    url: "http://192.0.2.9:8100".into(),
                    display_name: String::new(),
                    bio: String::new(),
                    wallets: Default::default(),
                    created_at: None,
                };
                a.add_connection(details, v2, true, false);
                for _ in 0..SEALS_PER_START {
                    let sealed = a.seal_for(peer.agent_id().as_str(), "/__darkmatter__/message", b"{}").unwrap();
                    let v: Value = serde_json::from_slice(&sealed).unwrap();
                    let nonce = if v2 { &v["nonce"] } else { &v["encrypted_payload"]["nonce"] };
                    let nonce = nonce.as_str().expect("a nonce").to_owned();
                    assert!(seen.insert(nonce), "a nonce repeated (start {start}, v2 {v2})");
                }
            }
        }
        assert_eq!(seen.len() as u64, 2 * 2 * SEALS_PER_START);
    }

    #[test]
    fn without_os_entropy_nothing_is_sealed() {
        let mut b = node(2);
        // No connection and no entropy: refused before any sealing.
        let err = b.seal_for(Passport::from_seed([1; 32]).agent_id().as_str(), "/__darkmatter__/message", b"{}");
        assert!(err.is_err());
    }

    #[test]
    fn loopback_and_private_urls_are_behind_nat() {
        assert!(unroutable("http://127.0.0.1:8100"));
        assert!(unroutable("http://192.168.1.4:8100"));
        assert!(unroutable("not a url"));
        assert!(!unroutable("https://agent.example.com"));
        assert!(!unroutable("http://203.0.113.7:8100"));
    }

    #[test]
    fn a_registration_is_what_an_anchor_accepts_in_both_forms() {
        let now = Now { mono_ms: 0, wall_us: 1_800_000_000_000_000 };
        let mut n = node(4);
        n.handle_timeout(now);
        let mut registrations = Vec::new();
        loop {
            match n.poll_output() {
                crate::io::Output::Timeout(_) => break,
                crate::io::Output::Transmit(t) if t.url.ends_with("/__darkmatter__/peer_update") => {
                    registrations.push(t)
                }
                _ => {}
            }
        }
        assert_eq!(registrations.len(), 1, "one anchor, one registration at start");
        let body: Value = serde_json::from_slice(&registrations[0].body).unwrap();
        assert!(body["signature"].as_str().is_some_and(|s| !s.is_empty()), "0.5.3's form: {body}");
        assert!(body["dm_signature_hex"].as_str().is_some_and(|s| !s.is_empty()), "ours: {body}");
        let mut anchor = crate::anchor::Anchor::new();
        let path = "/__darkmatter__/peer_update".to_owned();
        let body = registrations.remove(0).body;
        let request = crate::anchor::AnchorRequest {
            id: 1,
            method: Method::Post,
            path,
            query: String::new(),
            body,
            source: None,
        };
        anchor.handle_request(now, request);
        let reply = std::iter::from_fn(|| anchor.poll_output())
            .find_map(|o| match o {
                crate::anchor::AnchorOutput::Reply { status, body, .. } => Some((status, body)),
                _ => None,
            })
            .expect("answered");
        assert_eq!(reply.0, 200, "{}", String::from_utf8_lossy(&reply.1));
        let later = Now { mono_ms: crate::limits::RELAY_REGISTER_INTERVAL_MS, ..now };
        n.handle_timeout(later);
        let again = std::iter::from_fn(|| match n.poll_output() {
            crate::io::Output::Timeout(_) => None,
            o => Some(o),
        })
        .filter(|o| matches!(o, crate::io::Output::Transmit(t) if t.url.ends_with("/peer_update")))
        .count();
        assert_eq!(again, 1, "refreshed every RELAY_REGISTER_INTERVAL_MS");
    }
}
