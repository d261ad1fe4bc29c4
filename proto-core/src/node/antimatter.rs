//! AntiMatter routing on the node (SPEC §21): a verified payment starts a signal, games are played over
//! `/__darkmatter__/antimatter_match`, signals go to veterans over `/antimatter_signal`, results come
//! back over `/antimatter_result`, and the payee's ledger pays each fee once.
//!
//! The node never moves money: a settled fee becomes a [`Payout`] the driver takes with
//! [`Node::take_payouts`] and hands to its wallet, reporting a failure with [`Node::payout_failed`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde_json::{json, Map, Value};
use thiserror::Error;

use super::{Call, Node};
use crate::antimatter::game::{needs_nonce, Game, Sessions, NONCE_BYTES};
use crate::antimatter::ledger::{Decision, Flow, FlowState, Ledger, LogEvent, Payout, Settle};
use crate::antimatter::notice::{disagreement_loss, Disagreement, Started};
use crate::antimatter::payer::{Awaited, Awaiting, AWAITED_PREFIX};
use crate::antimatter::reports::Reports;
use crate::antimatter::signal::{Resolution, ResultReport, Signal};
use crate::antimatter::veterans::{self, Candidate};
use crate::antimatter::{
    fee, RATE, RATE_TOLERANCE, TRUST_COMMIT_FRAUD_PENALTY, TRUST_DISAGREEMENT_PENALTY, TRUST_NON_ROUTING_PENALTY,
    TRUST_SUCCESS,
};
use crate::error::Refusal;
use crate::identity::AgentId;
use crate::io::{HttpResponse, InboundRequest, Method};
use crate::limits::{
    ANTIMATTER_CALL_TIMEOUT_MS, ANTIMATTER_FLOWS_MAX, ANTIMATTER_GAME_PEERS_MAX, ANTIMATTER_HOPS_MAX,
    ANTIMATTER_ONLINE_S, ANTIMATTER_REPORT_FANOUT_MAX, ANTIMATTER_SIGNAL_AGE_MAX_S, ANTIMATTER_SIGNAL_ID_BYTES_MAX,
    ANTIMATTER_STATUS_RECENT_MAX, ID_BYTES_MAX, TRUST_VOUCH_SCORE_MIN,
};
use crate::output::{AntiMatterCounts, AntiMatterEvent, AntiMatterLogView, AntiMatterStatus};
use crate::replay::{check_fresh, sig_key};
use crate::store::RecordError;
use crate::time::parse_iso;
use crate::wire;

/// The chain whose wallets AntiMatter pays on.
const CHAIN: &str = "solana";
/// Why a node without the OS's randomness refuses to commit or to take a signal.
const NO_ENTROPY: &str = "This node has no OS randomness to play AntiMatter";

/// A game this node is playing for a signal (its own or one forwarded to it).
pub(crate) struct Playing {
    game: Game,
    signal: Signal,
    /// Whether a connection marked as local handed us the signal (its callback may be local too).
    local: bool,
}

/// The node's AntiMatter state.
#[derive(Default)]
pub(crate) struct AntiMatter {
    pub(crate) ledger: Ledger,
    /// As payer: our payment notices awaiting their payee's started notice.
    awaiting: Awaiting,
    /// Disagreement reports taken lately, per reporter.
    reports: Reports,
    sessions: Sessions,
    playing: BTreeMap<String, Playing>,
    payouts: VecDeque<Payout>,
}

impl AntiMatter {
    /// Reads back one stored [`crate::store::Table::AntiMatter`] row, whichever owner it belongs to.
    pub(crate) fn restore_row(&mut self, key: &str, value: &[u8]) -> Result<(), RecordError> {
        match key.strip_prefix(AWAITED_PREFIX) {
            Some(tx) => self.awaiting.restore_row(tx, value),
            None => self.ledger.restore_row(key, value),
        }
    }
}

/// Why a verified payment starts no signal.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PaymentError {
    /// No such message in the inbox.
    #[error("no message {0} in the inbox")]
    UnknownMessage(String),
    /// The message is not an AntiMatter-eligible payment notice from a connection.
    #[error("not an AntiMatter payment notice: {0}")]
    NotEligible(&'static str),
    /// The ledger refused it (already started, full, no fee).
    #[error(transparent)]
    Ledger(#[from] crate::antimatter::ledger::StartError),
}

fn event_view(e: &LogEvent) -> AntiMatterEvent {
    AntiMatterEvent {
        kind: e.kind.to_owned(),
        signal_id: e.signal_id.clone(),
        detail: e.detail.clone(),
        timestamp: crate::time::format_iso(e.at_us),
    }
}

fn field<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    m.get(k).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

fn truthy(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::Bool(true))) || v.and_then(Value::as_str).is_some_and(|s| s == "true")
}

/// The asset of a payment notice (`SOL` or a mint) and its decimals (9 for SOL; the notice's, at most
/// 18, for a token).
fn asset_of(meta: &Map<String, Value>) -> (String, u8) {
    let token = field(meta, "token").unwrap_or("SOL");
    if token.eq_ignore_ascii_case("SOL") {
        return ("SOL".to_owned(), 9);
    }
    (token.to_owned(), meta.get("decimals").and_then(Value::as_u64).map_or(0, |d| d.min(18) as u8))
}

/// The base units a payment notice says were paid (`amount` as decimal text or, as 0.5.3 writes it,
/// a JSON number), if it says so readably.
fn notice_units(meta: &Map<String, Value>) -> Option<u64> {
    let text = match meta.get("amount")? {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    crate::wallet::parse_amount(&text, asset_of(meta).1).ok()
}

/// The transaction of an AntiMatter payment notice's metadata (R-F1: `type` `solana_payment`,
/// `antimatter_eligible` or the WormHole's `gas_eligible`), or why it is none.
fn eligible_tx(meta: &Map<String, Value>) -> Result<&str, &'static str> {
    if field(meta, "type") != Some("solana_payment") {
        return Err("type is not solana_payment");
    }
    if !truthy(meta.get("antimatter_eligible")) && !truthy(meta.get("gas_eligible")) {
        return Err("not antimatter_eligible");
    }
    field(meta, "tx_signature").ok_or("tx_signature")
}

impl Node {
    /// The payment notice `message_id` was verified on-chain by the runtime's wallet (R-G8) and
    /// `units` base units arrived: start its AntiMatter signal (R-F1). Nothing else starts one.
    pub fn handle_verified_payment(
        &mut self,
        now: crate::Now,
        message_id: &str,
        units: u64,
    ) -> Result<String, PaymentError> {
        self.now = now;
        let msg = self.inbox.get(message_id).ok_or_else(|| PaymentError::UnknownMessage(message_id.to_owned()))?;
        let payer = msg.from_agent_id.clone();
        if !msg.verified || !self.connections.contains_key(&payer) {
            return Err(PaymentError::NotEligible("the sender is not a verified connection"));
        }
        let meta: Map<String, Value> = serde_json::from_str(&msg.metadata_json).unwrap_or_default();
        let tx = eligible_tx(&meta).map_err(PaymentError::NotEligible)?.to_owned();
        let (asset, decimals) = asset_of(&meta);
        let rate = meta.get("antimatter_rate").or_else(|| meta.get("gas_rate")).and_then(Value::as_f64);
        let superagent = field(&meta, "sender_superagent_wallet").map(str::to_owned);
        let signal_id = format!("am-{}", self.random_hex(6));
        let flow = Flow {
            signal_id: signal_id.clone(),
            tx_signature: tx.clone(),
            payer: payer.clone(),
            asset: asset.clone(),
            decimals,
            fee: fee(units),
            superagent_wallet: superagent.clone(),
            started_us: self.now.wall_us,
            state: FlowState::Initiated,
            destination: None,
        };
        let changes = self.antimatter.ledger.start(flow, self.now.wall_us)?;
        self.persist(changes);
        if let Some(r) = rate.filter(|r| (r - RATE).abs() > RATE_TOLERANCE) {
            self.antimatter.ledger.log(self.now.wall_us, "rate_disagreement", &signal_id, payer.clone());
            self.nudge(&payer, -TRUST_DISAGREEMENT_PENALTY);
            self.report_disagreement(&payer, &tx, r);
        } else {
            self.nudge(&payer, TRUST_SUCCESS);
        }
        let signal = Signal {
            signal_id: signal_id.clone(),
            original_tx: tx,
            sender_agent_id: payer,
            amount: crate::wallet::format_amount(fee(units), decimals),
            token: asset,
            token_decimals: decimals,
            sender_superagent_wallet: superagent,
            callback_url: crate::url::endpoint(&self.config.public_url, "antimatter_result"),
            hops: 0,
            max_hops: ANTIMATTER_HOPS_MAX,
            created_at: self.now.iso(),
            path: vec![self.me().to_owned()],
            hop_chain: Vec::new(),
        };
        match self.nonce() {
            Some(nonce) => {
                self.send_started(&signal);
                self.play(signal, true, nonce)
            }
            // SPEC §21.3: a commitment nonce from a seeded generator could be predicted by whoever
            // knows the seed, so without the OS's randomness no game is played and the payee keeps
            // the fee (the payment stays started: it never plays later either).
            None => {
                let why = "no OS randomness: no game played".to_owned();
                self.antimatter.ledger.log(self.now.wall_us, "antimatter_no_game", &signal_id, why);
                self.settle(&signal_id, Settle::Keep);
            }
        }
        Ok(signal_id)
    }

    /// Transfers the wallet must make, in order, each once.
    pub fn take_payouts(&mut self) -> Vec<Payout> {
        self.antimatter.payouts.drain(..).collect()
    }

    /// A payout the wallet could not make: it is owed again and paid with the next fee to that wallet.
    pub fn payout_failed(&mut self, now: crate::Now, payout: &Payout) {
        self.now = now;
        let changes = self.antimatter.ledger.payout_failed(payout, now.wall_us);
        self.persist(changes);
    }

    /// The newest AntiMatter events, oldest first (R-F10).
    pub fn antimatter_log(&self) -> Vec<LogEvent> {
        self.antimatter.ledger.events().cloned().collect()
    }

    fn antimatter_counts(&self) -> AntiMatterCounts {
        let mut events = BTreeMap::new();
        for e in self.antimatter.ledger.events() {
            *events.entry(e.kind.to_owned()).or_insert(0) += 1;
        }
        AntiMatterCounts {
            events,
            open_signals: self.antimatter.ledger.open(),
            awaited_payments: self.antimatter.awaiting.len(),
            owed_destinations: self.antimatter.ledger.accrued().len(),
        }
    }

    /// The status report's AntiMatter part, or `None` while there is nothing to show.
    pub(crate) fn antimatter_status(&self) -> Option<AntiMatterStatus> {
        let counts = self.antimatter_counts();
        let idle = counts.events.is_empty()
            && counts.open_signals == 0
            && counts.awaited_payments == 0
            && counts.owed_destinations == 0;
        if idle {
            return None;
        }
        let skip = self.antimatter.ledger.events().len().saturating_sub(ANTIMATTER_STATUS_RECENT_MAX);
        let recent = self.antimatter.ledger.events().skip(skip).map(event_view).collect();
        Some(AntiMatterStatus { counts, recent })
    }

    /// `AntiMatterLog`: the counts and the whole kept log.
    pub(crate) fn cmd_antimatter_log(&self) -> AntiMatterLogView {
        let antimatter_log = self.antimatter.ledger.events().map(event_view).collect();
        AntiMatterLogView { counts: self.antimatter_counts(), antimatter_log }
    }

    /// The flow of a signal this node originated, if it knows it.
    pub fn antimatter_flow(&self, signal_id: &str) -> Option<Flow> {
        self.antimatter.ledger.flow(signal_id).cloned()
    }

    /// A commit-reveal nonce from the runtime's OS randomness (the one that seals relayed bodies), or
    /// `None` when the runtime gave none or it failed. Never from the core's seeded generator: anyone
    /// who learnt the seed could open our commitments before we reveal (SPEC §21.3). The simulator
    /// passes its own deterministic source explicitly.
    fn nonce(&mut self) -> Option<[u8; NONCE_BYTES]> {
        let mut nonce = [0u8; NONCE_BYTES];
        self.entropy.as_ref()?.fill(&mut nonce).ok()?;
        Some(nonce)
    }

    /// Starts our game for `signal` with our commitment's `nonce`: commit requests to every eligible
    /// peer.
    fn play(&mut self, signal: Signal, local: bool, nonce: [u8; NONCE_BYTES]) {
        let peers: Vec<String> = self
            .connections
            .values()
            .filter(|c| c.wallets.contains_key(CHAIN) && !signal.path.iter().any(|p| p == c.agent_id.as_str()))
            .map(|c| c.agent_id.as_str().to_owned())
            .take(ANTIMATTER_GAME_PEERS_MAX)
            .collect();
        let game = Game::new(peers.clone(), &mut self.rng, nonce);
        let body = crate::wire::encode(&game.commit_request(&signal.signal_id));
        let id = signal.signal_id.clone();
        self.antimatter.playing.insert(id.clone(), Playing { game, signal, local });
        if peers.is_empty() {
            return self.finish(&id);
        }
        for peer in peers {
            self.match_call(&id, &peer, body.clone(), false);
        }
    }

    fn match_call(&mut self, signal_id: &str, peer: &str, body: Vec<u8>, reveal: bool) {
        let Some(conn) = self.connections.get(peer) else {
            return self.on_match_answer(signal_id.to_owned(), peer.to_owned(), reveal, Err(String::new()));
        };
        let url = crate::url::endpoint(&conn.url, "antimatter_match");
        let call = Call::AntiMatterMatch { signal_id: signal_id.to_owned(), peer: peer.to_owned(), reveal };
        let local = conn.local;
        self.transmit(Method::Post, url, body, ANTIMATTER_CALL_TIMEOUT_MS, !local, call);
    }

    /// A peer's answer to a commit or reveal request of ours.
    pub(crate) fn on_match_answer(
        &mut self,
        signal_id: String,
        peer: String,
        reveal: bool,
        result: Result<HttpResponse, String>,
    ) {
        let answer: Option<Value> =
            result.ok().filter(|r| r.status == 200).and_then(|r| serde_json::from_slice(&r.body).ok());
        let Some(playing) = self.antimatter.playing.get_mut(&signal_id) else { return };
        if !reveal {
            playing.game.on_commit(&peer, answer.as_ref());
            if !playing.game.commits_done() {
                return;
            }
            let reveals = playing.game.reveal_requests();
            if reveals.is_empty() {
                return self.finish(&signal_id);
            }
            for (peer, body) in reveals {
                self.match_call(&signal_id, &peer, crate::wire::encode(&body), true);
            }
            return;
        }
        if playing.game.on_reveal(&peer, answer.as_ref()).is_err() {
            self.antimatter.ledger.log(self.now.wall_us, "antimatter_fraud", &signal_id, peer.clone());
            self.nudge(&peer, -TRUST_COMMIT_FRAUD_PENALTY);
        }
        if self.antimatter.playing.get(&signal_id).is_some_and(|p| p.game.reveals_done()) {
            self.finish(&signal_id);
        }
    }

    /// Our game is decided: pay, keep, forward, or report to the payee.
    fn finish(&mut self, signal_id: &str) {
        let Some(Playing { game, mut signal, local }) = self.antimatter.playing.remove(signal_id) else { return };
        let matched = game.is_match();
        let answered: BTreeSet<String> = game.answered().map(str::to_owned).collect();
        let veteran = self.veteran(&signal.path, &signal.sender_agent_id, &answered);
        let origin = signal.hop_chain.is_empty();
        self.antimatter.ledger.log(
            self.now.wall_us,
            if matched { "antimatter_match" } else { "antimatter_signal" },
            signal_id,
            format!("n={} hops={}", game.n(), signal.hops),
        );
        let (vet_id, vet_wallet) = match veteran {
            Some(v) => v,
            None if origin => return self.settle(signal_id, Settle::Keep),
            None => {
                let wallet = self.wallets.get(CHAIN).cloned();
                let me = self.me().to_owned();
                return self.report(signal, Resolution::Terminal, Some(me), wallet, local);
            }
        };
        if matched {
            if origin {
                return self.settle(signal_id, Settle::To(vet_wallet));
            }
            return self.report(signal, Resolution::Match, Some(vet_id), Some(vet_wallet), local);
        }
        let aged = self.now.wall_us.saturating_sub(parse_iso(&signal.created_at).unwrap_or(0))
            > ANTIMATTER_SIGNAL_AGE_MAX_S * 1_000_000;
        if signal.hops + 1 >= signal.max_hops || aged {
            if origin {
                return self.settle(signal_id, Settle::Timeout);
            }
            return self.report(signal, Resolution::Timeout, None, None, local);
        }
        let Some(conn) = self.connections.get(&vet_id) else { return };
        let (url, vet_local) = (crate::url::endpoint(&conn.url, "antimatter_signal"), conn.local);
        let signer = self.signatures.clone();
        signal.forward(&*signer, &self.passport, &vet_id, self.now.iso());
        if origin {
            let changes = self.antimatter.ledger.forwarded(signal_id, self.now.wall_us, &vet_id);
            self.persist(changes);
        } else {
            self.antimatter.ledger.log(self.now.wall_us, "forwarded", signal_id, vet_id.clone());
        }
        let body = crate::wire::encode(&signal);
        self.transmit(Method::Post, url, body, ANTIMATTER_CALL_TIMEOUT_MS, !vet_local, Call::FireAndForget);
    }

    /// Our veteran for this signal, never its payer: `(agent id, wallet)`, or `None` when we are terminal.
    fn veteran(&mut self, path: &[String], payer: &str, answered: &BTreeSet<String>) -> Option<(String, String)> {
        let now_us = self.now.wall_us;
        let online_us = ANTIMATTER_ONLINE_S * 1_000_000;
        let candidates: Vec<Candidate> = self
            .connections
            .values()
            // The fee is routed away from whoever paid it: a payer that got its own 1 % back would have
            // paid 99 % and routed nothing.
            .filter(|c| c.agent_id.as_str() != payer)
            .map(|c| Candidate {
                agent_id: c.agent_id.as_str().to_owned(),
                created_us: c.peer_created_at.as_deref().and_then(parse_iso),
                first_seen_us: parse_iso(&c.connected_at).unwrap_or(now_us),
                score: self.impressions.score(c.agent_id.as_str()),
                online: answered.contains(c.agent_id.as_str())
                    || parse_iso(&c.last_activity).is_some_and(|t| now_us.saturating_sub(t) <= online_us),
                wallet: c.wallets.get(CHAIN).cloned(),
            })
            .collect();
        let created = parse_iso(&self.profile.created_at).unwrap_or(now_us);
        let chosen = veterans::choose(&mut self.rng, now_us, created, &candidates, path)?;
        Some((chosen.agent_id.clone(), chosen.wallet.clone()?))
    }

    /// Ends our own flow and queues its payout, once.
    fn settle(&mut self, signal_id: &str, settle: Settle) {
        let Some((decision, changes)) = self.antimatter.ledger.resolve(signal_id, settle, self.now.wall_us) else {
            return;
        };
        self.persist(changes);
        if let Decision::Pay(payout) = decision {
            self.antimatter.payouts.push_back(payout);
        }
    }

    /// Sends our signed result to the payee's callback.
    fn report(
        &mut self,
        signal: Signal,
        resolution: Resolution,
        destination_agent_id: Option<String>,
        destination_wallet: Option<String>,
        local: bool,
    ) {
        let mut r = ResultReport {
            signal_id: signal.signal_id.clone(),
            destination_wallet,
            resolved_by: self.me().to_owned(),
            resolution,
            destination_agent_id,
            timestamp: Some(self.now.iso()),
            hop_chain: signal.hop_chain,
            dm_signature_hex: None,
        };
        let signer = self.signatures.clone();
        r.sign(&*signer, &self.passport);
        self.antimatter.ledger.log(
            self.now.wall_us,
            "antimatter_resolved_callback",
            &signal.signal_id,
            resolution.as_str().into(),
        );
        let body = crate::wire::encode(&r);
        self.transmit(Method::Post, signal.callback_url, body, ANTIMATTER_CALL_TIMEOUT_MS, !local, Call::FireAndForget);
    }

    /// `POST /__darkmatter__/antimatter_match`: the peer side of a game (0.5.3's forms and errors).
    pub(crate) fn on_antimatter_match(&mut self, r: &InboundRequest) -> Result<Vec<u8>, Refusal> {
        let req: Value = serde_json::from_slice(&r.body).map_err(|e| Refusal::BadJson(e.to_string()))?;
        // 0.5.3's requests name no sender: they are charged to their source like a stranger's.
        self.admit(None, r.source)?;
        let nonce = if needs_nonce(&req) {
            self.nonce().ok_or_else(|| Refusal::Unavailable(NO_ENTROPY.to_owned()))?
        } else {
            // Unused: only a commitment takes a nonce.
            [0; NONCE_BYTES]
        };
        let mono_ms = self.now.mono_ms;
        let answer = self.antimatter.sessions.handle(&req, mono_ms, &mut self.rng, nonce);
        answer.map(|a| crate::wire::encode(&a)).map_err(|e| Refusal::Invalid(e.to_string()))
    }

    /// `POST /__darkmatter__/antimatter_signal`: a connection hands us a signal; we play our game.
    pub(crate) fn on_antimatter_signal(&mut self, r: &InboundRequest) -> Result<Vec<u8>, Refusal> {
        let signal: Signal =
            serde_json::from_slice(&r.body).map_err(|e| Refusal::Invalid(format!("Invalid antimatter signal: {e}")))?;
        let me = self.me().to_owned();
        signal.check(&me, self.now.wall_us).map_err(|e| Refusal::Invalid(e.to_string()))?;
        // Only a connection hands us a signal, and only with a chain of signed forwards ending at us.
        let sender = signal.hop_chain.last().map(|h| h.agent_id.clone()).unwrap_or_default();
        let Some(conn) = self.connections.get(&sender) else {
            return Err(Refusal::Unauthorized("Signals are accepted from connections only".to_owned()));
        };
        let local = conn.local;
        self.admit(Some(&sender), r.source)?;
        let origin = signal.hop_chain[0].agent_id.clone();
        let signer = self.signatures.clone();
        crate::antimatter::signal::verify_chain(&*signer, &signal.signal_id, &signal.hop_chain, &origin, &me)
            .map_err(|e| Refusal::Unauthorized(e.to_string()))?;
        if self.antimatter.playing.contains_key(&signal.signal_id) {
            return Err(Refusal::Invalid("Loop detected".to_owned()));
        }
        if self.antimatter.playing.len() >= ANTIMATTER_FLOWS_MAX {
            return Err(Refusal::Limited("Too many AntiMatter games in play".to_owned()));
        }
        // Refused rather than played without a secret nonce: the payee's watchdog ends the flow.
        let nonce = self.nonce().ok_or_else(|| Refusal::Unavailable(NO_ENTROPY.to_owned()))?;
        let id = signal.signal_id.clone();
        self.antimatter.ledger.log(self.now.wall_us, "antimatter_signal", &id, sender);
        self.play(signal, local, nonce);
        Ok(crate::wire::encode(&json!({"success": true, "signal_id": id})))
    }

    /// `POST /__darkmatter__/antimatter_result`: how a signal we started ended. A signed result pays
    /// what its verified chain says; an unsigned one (0.5.3) only a wallet one of our connections
    /// advertises; anything else is logged and the fee waits for the watchdog.
    pub(crate) fn on_antimatter_result(&mut self, r: &InboundRequest) -> Result<Vec<u8>, Refusal> {
        let report: ResultReport =
            serde_json::from_slice(&r.body).map_err(|e| Refusal::Invalid(format!("Invalid antimatter result: {e}")))?;
        self.admit(None, r.source)?;
        let id = report.signal_id.clone();
        match self.antimatter.ledger.flow(&id) {
            None => return Err(Refusal::NotFound("Unknown signal".to_owned())),
            Some(f) if f.state.is_resolved() => {
                return Ok(crate::wire::encode(&json!({"success": true, "already_resolved": true})))
            }
            Some(_) => {}
        }
        let settle = match self.judge(&report) {
            Ok(s) => s,
            Err(why) => {
                self.antimatter.ledger.log(self.now.wall_us, "antimatter_result_refused", &id, why.clone());
                return Err(Refusal::Unauthorized(why));
            }
        };
        self.settle(&id, settle);
        Ok(crate::wire::encode(&json!({"success": true, "signal_id": id})))
    }

    /// What a result may settle, or why it may not.
    fn judge(&self, report: &ResultReport) -> Result<Settle, String> {
        if report.dm_signature_hex.is_none() {
            let wallet = report.destination_wallet.as_deref().unwrap_or_default();
            let known = self.connections.values().any(|c| c.wallets.get(CHAIN).is_some_and(|w| w == wallet));
            // An unsigned timeout proves nothing either: anyone who learnt the signal id could cut the
            // chain short. The watchdog times the flow out instead.
            return match (report.resolution, known) {
                (Resolution::Timeout, _) => Err("An unsigned timeout is not taken; the watchdog decides".to_owned()),
                (_, true) => Ok(Settle::To(wallet.to_owned())),
                (_, false) => Err("An unsigned result names a wallet of no connection".to_owned()),
            };
        }
        report.verify(&*self.signatures, self.me()).map_err(|e| format!("Result does not verify: {e}"))?;
        match report.resolution {
            Resolution::Timeout => Ok(Settle::Timeout),
            _ => report.destination_wallet.clone().map(Settle::To).ok_or_else(|| "No destination_wallet".to_owned()),
        }
    }

    /// The watchdog (housekeeping): flows past their age and grace time out, once; payments whose
    /// payee never said it started a signal cost it trust.
    pub(crate) fn antimatter_watchdog(&mut self) {
        for id in self.antimatter.ledger.overdue(self.now.wall_us) {
            self.settle(&id, Settle::Timeout);
        }
        self.blame_non_routing();
    }

    // ----- the payer's side: the started notice (R-F7) -----

    /// Our own message is leaving: if it is an AntiMatter payment notice with a fee, await its payee's
    /// started notice. Only a payee that speaks our form can send one (0.5.3 has none), so only such a payee
    /// is awaited; a payment beyond the table's bound is not watched.
    pub(crate) fn await_started(&mut self, message_id: &str, metadata: &Map<String, Value>, targets: &[String]) {
        let Ok(tx) = eligible_tx(metadata) else { return };
        if tx.len() > ID_BYTES_MAX {
            return;
        }
        // A payment whose fee is zero base units (or whose amount we cannot read) starts no signal at the
        // payee: nothing to await, nobody to blame.
        if notice_units(metadata).is_none_or(|units| fee(units) == 0) {
            return;
        }
        let Some(payee) = targets.iter().find(|t| self.connections.get(t.as_str()).is_some_and(|c| c.speaks_v2)) else {
            return;
        };
        let awaited = Awaited { payee: payee.clone(), message_id: message_id.to_owned(), sent_us: self.now.wall_us };
        match self.antimatter.awaiting.expect(tx, awaited) {
            Ok(change) => self.persist(vec![change]),
            Err(e) => self.antimatter.ledger.log(self.now.wall_us, "antimatter_not_awaited", "", e.to_string()),
        }
    }

    /// Payments awaited past their wait: a payee that got our notice and said nothing loses
    /// [`TRUST_NON_ROUTING_PENALTY`]. One that never got it (the delivery failed or was only relayed)
    /// is not blamed.
    fn blame_non_routing(&mut self) {
        for (tx, awaited, change) in self.antimatter.awaiting.overdue(self.now.wall_us) {
            self.persist(vec![change]);
            let delivered = self.sent.get(&awaited.message_id).is_some_and(|s| s.routed_to.contains(&awaited.payee));
            if !delivered {
                continue;
            }
            self.nudge(&awaited.payee, -TRUST_NON_ROUTING_PENALTY);
            let detail = format!("{} started no signal for {tx}", awaited.payee);
            self.antimatter.ledger.log(self.now.wall_us, "antimatter_not_routed", "", detail);
        }
    }

    /// As payee: tells the payer that `signal` started for its payment (signed, fire and forget: a
    /// lost notice costs us the payer's non-routing penalty, nothing else).
    fn send_started(&mut self, signal: &Signal) {
        let Some(conn) = self.connections.get(&signal.sender_agent_id).filter(|c| c.speaks_v2) else { return };
        let (url, local) = (crate::url::endpoint(&conn.url, "antimatter_started"), conn.local);
        let mut notice = Started {
            from_agent_id: self.me().to_owned(),
            to_agent_id: signal.sender_agent_id.clone(),
            signal_id: signal.signal_id.clone(),
            tx_signature: signal.original_tx.clone(),
            timestamp: self.now.iso(),
            dm_signature_hex: String::new(),
        };
        let signer = self.signatures.clone();
        notice.sign(&*signer, &self.passport);
        let body = wire::encode(&notice);
        self.transmit(Method::Post, url, body, ANTIMATTER_CALL_TIMEOUT_MS, !local, Call::FireAndForget);
    }

    /// `POST /__darkmatter__/antimatter_started`: a payee says it started a signal for our payment.
    pub(crate) fn on_antimatter_started(&mut self, r: &InboundRequest) -> Result<Vec<u8>, Refusal> {
        let n: Started = wire::decode(&r.body)?;
        if [&n.from_agent_id, &n.signal_id, &n.tx_signature, &n.dm_signature_hex].iter().any(|f| f.is_empty()) {
            return Err(Refusal::MissingFields("from_agent_id, signal_id, tx_signature, dm_signature_hex".to_owned()));
        }
        if n.to_agent_id != self.me() {
            return Err(Refusal::Invalid("Notice is addressed to another agent".to_owned()));
        }
        if n.tx_signature.len() > ID_BYTES_MAX || n.signal_id.len() > ANTIMATTER_SIGNAL_ID_BYTES_MAX {
            return Err(Refusal::Invalid("tx_signature or signal_id too long".to_owned()));
        }
        let stamp_us = self.check_peer_notice(&n.from_agent_id, &n.timestamp, n.verifies(&*self.signatures), r)?;
        let change =
            self.replay.admit(&sig_key("antimatter-started", &n.dm_signature_hex), stamp_us, self.now.wall_us)?;
        self.persist(vec![change]);
        let Some((_, change)) = self.antimatter.awaiting.started(&n.tx_signature, &n.from_agent_id) else {
            return Err(Refusal::NotFound("No payment of ours awaits this notice".to_owned()));
        };
        self.persist(vec![change]);
        self.nudge(&n.from_agent_id, TRUST_SUCCESS);
        self.antimatter.ledger.log(self.now.wall_us, "antimatter_started", &n.signal_id, n.from_agent_id.clone());
        Ok(wire::encode(&json!({"success": true})))
    }

    // ----- disagreement reports (R-F7, the SPEC's §4.2) -----

    /// As payee: tells our connections (those that speak our form, but not the payer itself, at most
    /// [`ANTIMATTER_REPORT_FANOUT_MAX`]) that `payer`'s notice for `tx` claimed `rate`. Each copy is
    /// signed for its receiver.
    fn report_disagreement(&mut self, payer: &str, tx: &str, rate: f64) {
        let receivers: Vec<(String, String, bool)> = self
            .connections
            .values()
            .filter(|c| c.speaks_v2 && c.agent_id.as_str() != payer)
            .take(ANTIMATTER_REPORT_FANOUT_MAX)
            .map(|c| (c.agent_id.as_str().to_owned(), crate::url::endpoint(&c.url, "antimatter_disagreement"), c.local))
            .collect();
        let signer = self.signatures.clone();
        for (to, url, local) in receivers {
            let mut report = Disagreement {
                from_agent_id: self.me().to_owned(),
                to_agent_id: to,
                subject_agent_id: payer.to_owned(),
                tx_signature: tx.to_owned(),
                rate: rate.to_string(),
                timestamp: self.now.iso(),
                dm_signature_hex: String::new(),
            };
            report.sign(&*signer, &self.passport);
            let body = wire::encode(&report);
            self.transmit(Method::Post, url, body, ANTIMATTER_CALL_TIMEOUT_MS, !local, Call::FireAndForget);
        }
    }

    /// `POST /__darkmatter__/antimatter_disagreement`: a connection reports a payer whose notice
    /// claimed another rate. We lower our impression of the payer by the penalty times our trust in
    /// the reporter, as hearsay (never first-hand), and only as far as the report weighting of peer
    /// opinions allows: a reporter we do not trust, or one over its vouch budget (each report is
    /// charged to it as a warning), moves nothing. A report about ourselves is ignored.
    pub(crate) fn on_antimatter_disagreement(&mut self, r: &InboundRequest) -> Result<Vec<u8>, Refusal> {
        let d: Disagreement = wire::decode(&r.body)?;
        let fields = [&d.from_agent_id, &d.subject_agent_id, &d.tx_signature, &d.rate, &d.dm_signature_hex];
        if fields.iter().any(|f| f.is_empty()) {
            return Err(Refusal::MissingFields(
                "from_agent_id, subject_agent_id, tx_signature, rate, dm_signature_hex".to_owned(),
            ));
        }
        if d.to_agent_id != self.me() {
            return Err(Refusal::Invalid("Report is addressed to another agent".to_owned()));
        }
        if d.tx_signature.len() > ID_BYTES_MAX || d.rate.len() > ID_BYTES_MAX {
            return Err(Refusal::Invalid("tx_signature or rate too long".to_owned()));
        }
        let subject = AgentId::parse(&d.subject_agent_id).map_err(|e| Refusal::Invalid(e.to_string()))?;
        let stamp_us = self.check_peer_notice(&d.from_agent_id, &d.timestamp, d.verifies(&*self.signatures), r)?;
        let key = sig_key("antimatter-disagreement", &d.dm_signature_hex);
        let change = self.replay.admit(&key, stamp_us, self.now.wall_us)?;
        self.persist(vec![change]);
        if subject.as_str() == self.me() {
            return Ok(wire::encode(&json!({"success": true, "applied": false})));
        }
        if !self.antimatter.reports.admit(&d.from_agent_id, self.now.wall_us) {
            return Err(Refusal::Limited("Too many AntiMatter disagreement reports from this agent today".to_owned()));
        }
        let applied = self.apply_disagreement(&d.from_agent_id, subject.as_str());
        let weight = if applied { "applied" } else { "weighed nothing" };
        let detail = format!("{} reports {} (rate {}): {weight}", d.from_agent_id, subject.as_str(), d.rate);
        self.antimatter.ledger.log(self.now.wall_us, "antimatter_disagreement", "", detail);
        Ok(wire::encode(&json!({"success": true, "applied": applied})))
    }

    /// Applies one report of `reporter` about `subject`; answers whether it moved anything.
    fn apply_disagreement(&mut self, reporter: &str, subject: &str) -> bool {
        let now_us = self.now.wall_us;
        let bounded = self.config.trust_policy.bounded();
        if bounded {
            // A report is a warning, and a warning is charged to its giver's budget like a vouch.
            self.vouches.note(reporter, subject, -TRUST_VOUCH_SCORE_MIN, now_us);
        }
        let within = !bounded || self.vouches.within_budget(reporter, now_us);
        let loss = disagreement_loss(TRUST_DISAGREEMENT_PENALTY, self.trust_of(reporter), within);
        if loss >= 0.0 || !self.impressions.has_room_for(subject) {
            return false;
        }
        let score = crate::trust::adjust(self.trust_of(subject), loss);
        self.set_score(subject, score, None, false);
        true
    }

    /// The checks every signed AntiMatter notice passes: from a connection, fresh, signed by it (as
    /// `signed` says), within its rate. Answers the signed timestamp (µs) for the replay cache.
    fn check_peer_notice(
        &mut self,
        from: &str,
        timestamp: &str,
        signed: bool,
        r: &InboundRequest,
    ) -> Result<i64, Refusal> {
        if !self.connections.contains_key(from) {
            return Err(Refusal::Unauthorized("AntiMatter notices are accepted from connections only".to_owned()));
        }
        let stamp_us = check_fresh(self.now.wall_us, timestamp)?;
        if !signed {
            return Err(Refusal::Unauthorized("Invalid signature".to_owned()));
        }
        self.admit(Some(from), r.source)?;
        Ok(stamp_us)
    }
}
