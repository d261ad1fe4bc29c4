//! [`Node`]: the only entry point. `handle_*(now, ..)` in, [`Node::poll_output`] out.
//!
//! This file holds the node's state, construction and restore, and the routing of inputs to the
//! files that own each concern. The behaviour itself lives in `connection.rs`, `inbound.rs`,
//! `webhook.rs`, `outbound.rs`, `waiters.rs`, `views.rs`, `trust.rs`, `healing.rs` and `discovery.rs`.

mod antimatter;
mod command;

pub use antimatter::PaymentError;
mod connection;
mod discovery;
mod healing;
mod inbound;
mod inspect;
mod lookup;
mod memory;
mod outbound;
mod payment;
mod pool;
mod relay;
mod shard;
mod spawn;
mod trust;
mod views;
mod waiters;
mod webhook;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use core::net::IpAddr;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::connections::{Acceptances, Connections, RequestSources};
use crate::crypto::{Ed25519, SignatureProvider};
use crate::discovery::{Discovery, Scans};
use crate::error::{CommandError, Refusal};
use crate::healing::Healing;
use crate::identity::{AgentId, KeyCache, Passport};
use crate::inbox::Inbox;
use crate::io::{
    CommandId, Event, HttpResponse, InboundId, InboundRequest, Method, OutboundId, Output, Reply, Transmit,
};
use crate::limits::{self, RateLimit};
use crate::memory::Memory;
use crate::outbox::{Batches, Outbox, Waiters};
use crate::output::CommandOutput;
use crate::rate::{Party, RateLimits};
use crate::replay::Replay;
use crate::shards::Shards;
use crate::spawn::{SpawnConfig, Spawner};
use crate::store::{self, Change, Profile, Table};
use crate::time::Now;
use crate::trust::Impressions;
use crate::wire;

pub use inspect::Inspect;

/// How often housekeeping runs (expiring pending requests, purging the replay cache), in ms.
pub const HOUSEKEEPING_INTERVAL_MS: u64 = 60_000;

/// Settings fixed at start-up (the `DARKMATTER_*` variables the core needs).
#[derive(Clone, Debug)]
pub struct Config {
    /// Initial display name (`DARKMATTER_DISPLAY_NAME`).
    pub display_name: String,
    /// Initial bio.
    pub bio: String,
    /// The URL peers reach us at, without a path (`DARKMATTER_PUBLIC_URL` or derived from host/port).
    pub public_url: String,
    /// `DARKMATTER_MAX_CONNECTIONS`.
    pub max_connections: usize,
    /// `DARKMATTER_AUTO_ACCEPT_LOCAL`: accept proven connection requests whose TCP source is local.
    pub auto_accept_local: bool,
    /// Auto-accept a proven request when our peers' combined opinion is at least this (`None`: never).
    pub trust_accept_min: Option<f64>,
    /// Auto-reject a request when our peers' combined opinion is at most this (`None`: never).
    pub trust_reject_max: Option<f64>,
    /// How peer opinions are combined.
    pub trust_policy: crate::trust::TrustPolicy,
    /// Background discovery (`DARKMATTER_DISCOVERY`): LAN beacons every `beacon_interval_s` and a
    /// localhost scan every [`crate::discovery::SCAN_INTERVAL_S`]. Off by default in the core: only the
    /// driver knows whether it has a LAN to beacon on. An agent's `DiscoverLocal` works either way.
    pub discovery: bool,
    /// Localhost ports a scan probes (`DARKMATTER_DISCOVERY_PORTS`); `listen_port` is skipped.
    pub scan_ports: Vec<u16>,
    /// Seconds between LAN beacons.
    pub beacon_interval_s: u64,
    /// The HTTP port we listen on: advertised in beacons, skipped by scans.
    pub listen_port: u16,
    /// Agent spawning (`DARKMATTER_AGENT_ENABLED` and its limits); `None`, the default, is off.
    pub spawn: Option<SpawnConfig>,
    /// Anchors (`DARKMATTER_ANCHOR_NODES`, base URLs): registered with, asked in lookups, relayed
    /// through (SPEC §20). Empty, the default, contacts no third party.
    pub anchors: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            display_name: String::new(),
            bio: "A DarkMatter mesh agent.".to_owned(),
            public_url: "http://127.0.0.1:8100".to_owned(),
            max_connections: limits::CONNECTIONS_MAX_DEFAULT,
            auto_accept_local: true,
            trust_accept_min: Some(limits::TRUST_ACCEPT_MIN_DEFAULT),
            trust_reject_max: Some(limits::TRUST_REJECT_MAX_DEFAULT),
            trust_policy: crate::trust::TrustPolicy::Weighted,
            discovery: false,
            scan_ports: (crate::discovery::SCAN_PORTS_DEFAULT.0..=crate::discovery::SCAN_PORTS_DEFAULT.1).collect(),
            beacon_interval_s: crate::discovery::BEACON_INTERVAL_S,
            listen_port: 8100,
            spawn: None,
            anchors: Vec::new(),
        }
    }
}

/// What a pending outbound call is for, so its answer reaches the right handler.
#[derive(Clone, Debug)]
pub(crate) enum Call {
    /// `connection_request` for a `Connect` command.
    ConnectRequest { cmd: CommandId, target_url: String },
    /// Best-effort calls (webhook updates, proofs, notices) whose answer changes nothing.
    FireAndForget,
    /// One delivery of a send or forward batch. `body` is kept (until the answer) so that a
    /// delivery failing the way a move explains can be retried at the peer's new URL, byte for byte;
    /// a `retried` one is final.
    Deliver { batch: u64, target: String, body: Vec<u8>, retried: bool },
    /// A callback to a webhook (`received`, `forwarded`, `expired`): best effort, but one that fails
    /// the way a move explains is held for a lookup of the webhook's owner and posted again (the
    /// body is kept for that); `attempts` counts posts, `until_ms` ends the retries (set at the first
    /// failure).
    Webhook { url: String, body: Vec<u8>, attempts: u32, until_ms: Option<u64> },
    /// One connection's answer to where `peer` is (a peer lookup).
    Lookup { peer: String, answerer: String },
    /// The card at the URL a lookup found for `peer` by agreement alone; `local` when a local
    /// answerer named it.
    LookupCard { peer: String, url: String, local: bool, via: crate::io::RecoveredVia },
    /// One peer's answer about a pending requester.
    TrustQuery { request_id: String, peer: String, query_id: String },
    /// Our `connection_accepted` to a requester we accepted (`attempt` counts from 1).
    Acceptance { peer: String, attempt: u32 },
    /// One port probe of a localhost scan; `base` is the URL probed.
    Probe { scan: u64, base: String },
    /// The card fetch of a `DiscoverDomain` command.
    DomainCard { cmd: CommandId, base: String },
    /// One anchor's answer to where `peer` is (a peer lookup); `anchor` indexes the configured list.
    AnchorLookup { peer: String, anchor: usize },
    /// A sealed body posted to an anchor's message mailbox for `peer`; on failure the next anchor
    /// is tried with the same envelope.
    Relay { peer: String, envelope: Vec<u8>, anchor: usize, purpose: relay::RelayFor },
    /// One anchor's answer to a poll of one of our mailboxes.
    Poll { kind: crate::relay::Mailbox, anchor: usize },
    /// One anchor's answer to probe round `generation` of our URL's reachability.
    ReachProbe { generation: u64 },
    /// A notice to `peer` (our peer update) at `path`: relayed if it cannot be delivered directly.
    Notice { peer: String, path: &'static str, body: Vec<u8> },
    /// A consumer's pool command to a pool's owner.
    Pool { cmd: CommandId },
    /// A commit (or, with `reveal`, reveal) request of our AntiMatter game for `signal_id` to `peer`.
    AntiMatterMatch { signal_id: String, peer: String, reveal: bool },
}

/// One DarkMatter node.
pub struct Node {
    pub(crate) passport: Passport,
    /// Every signature this node makes or checks goes through it (real Ed25519 unless the
    /// embedder passed another; see [`crate::crypto`]).
    pub(crate) signatures: Arc<dyn SignatureProvider>,
    pub(crate) config: Config,
    pub(crate) rng: ChaCha20Rng,
    pub(crate) profile: Profile,
    pub(crate) connections: Connections,
    pub(crate) inbox: Inbox,
    pub(crate) sent: Outbox,
    pub(crate) impressions: Impressions,
    /// Whom each peer vouched for lately (the Sybil defences' vouch budget).
    pub(crate) vouches: crate::trust::Vouches,
    pub(crate) discovery: Discovery,
    pub(crate) healing: Healing,
    pub(crate) shards: Shards,
    pub(crate) memory: Memory,
    pub(crate) replay: Replay,
    pub(crate) keys: KeyCache,
    pub(crate) rates: RateLimits,
    pub(crate) calls: BTreeMap<OutboundId, Call>,
    pub(crate) acceptances: Acceptances,
    pub(crate) request_sources: RequestSources,
    pub(crate) batches: Batches,
    pub(crate) waiters: Waiters,
    pub(crate) outputs: VecDeque<Output>,
    /// The request being handled authenticated as a connected peer and was charged to it
    /// ([`Reply::peer`]); reset for every request.
    pub(crate) request_from_peer: bool,
    pub(crate) next_outbound: u64,
    pub(crate) next_seq: u64,
    pub(crate) next_housekeeping_ms: u64,
    pub(crate) next_beacon_ms: Option<u64>,
    pub(crate) next_scan_ms: Option<u64>,
    pub(crate) scans: Scans,
    pub(crate) spawner: Spawner,
    /// The wallets this node advertises (`{"solana": <address>}`), derived from the passport at start
    /// and never stored (SPEC §17.1).
    pub(crate) wallets: BTreeMap<String, String>,
    /// The anchor client: registrations, NAT state, polls (SPEC §20).
    pub(crate) relay: crate::relay::Relay,
    /// The OS randomness that seals relayed bodies, given by the runtime; none: nothing is relayed.
    pub(crate) entropy: Option<Arc<dyn crate::relay::Entropy>>,
    /// AntiMatter: the ledger, the peer side's sessions, games in play.
    pub(crate) antimatter: antimatter::AntiMatter,
    /// Pools this node owns and the calls in flight to their upstreams (SPEC §22).
    pub(crate) pool_state: pool::PoolState,
    /// Claimed payments the runtime's wallet is checking, and what each notice came to.
    pub(crate) payments: crate::payments::PaymentChecks,
    pub(crate) now: Now,
}

impl Node {
    /// A fresh node. `seed` drives every random choice (ids, challenges); it emits a persist of its
    /// profile as its first output.
    pub fn new(passport: Passport, config: Config, seed: u64, now: Now) -> Self {
        Self::with_provider(passport, config, seed, now, Arc::new(Ed25519))
    }

    /// [`Node::new`] with its signature work done by `signatures` instead of real Ed25519.
    pub fn with_provider(
        passport: Passport,
        config: Config,
        seed: u64,
        now: Now,
        signatures: Arc<dyn SignatureProvider>,
    ) -> Self {
        let profile = Profile {
            display_name: configured_name(&passport, &config),
            bio: config.bio.clone(),
            created_at: now.iso(),
            inactive_until_us: None,
            rate_global: RateLimit::Default,
        };
        let mut node = Self::empty(passport, signatures, config, seed, now, profile);
        let change = Change::put(Table::Profile, "self", &node.profile);
        node.persist(vec![change]);
        // Records our URL, so that a restart elsewhere is announced.
        node.announce_if_moved();
        node
    }

    /// A node rebuilt from persisted records (as read back in any order). Records that fail to decode
    /// are skipped and counted in the returned number, so one bad row never stops a node.
    pub fn restore(
        passport: Passport,
        config: Config,
        seed: u64,
        now: Now,
        records: impl IntoIterator<Item = (Table, String, Vec<u8>)>,
    ) -> (Self, usize) {
        Self::restore_with_provider(passport, config, seed, now, records, Arc::new(Ed25519))
    }

    /// [`Node::restore`] with its signature work done by `signatures` instead of real Ed25519. The
    /// provider is given here, not set afterwards, because restoring may already sign (a trust
    /// query in flight at shutdown is asked again).
    pub fn restore_with_provider(
        passport: Passport,
        config: Config,
        seed: u64,
        now: Now,
        records: impl IntoIterator<Item = (Table, String, Vec<u8>)>,
        signatures: Arc<dyn SignatureProvider>,
    ) -> (Self, usize) {
        let mut skipped = 0;
        let mut profile = None;
        let mut profile_unreadable = false;
        let mut rest = Vec::new();
        for (table, key, value) in records {
            if table == Table::Profile {
                match store::decode::<Profile>(&value) {
                    Ok(p) => profile = Some(p),
                    Err(_) => {
                        skipped += 1;
                        profile_unreadable = true;
                    }
                }
            } else {
                rest.push((table, key, value));
            }
        }
        // A stored profile this build cannot read (a newer build's) is not overwritten at start-up.
        let fresh = profile.is_none() && !profile_unreadable;
        let mut profile = profile.unwrap_or_else(|| Profile {
            display_name: configured_name(&passport, &config),
            bio: config.bio.clone(),
            created_at: now.iso(),
            inactive_until_us: None,
            rate_global: RateLimit::Default,
        });
        // The environment names the agent; a configured name wins over the stored one (a rename
        // lasts until the next start then); an unconfigured node keeps its renames.
        if !config.display_name.is_empty() {
            profile.display_name = config.display_name.clone();
        }
        let mut node = Self::empty(passport, signatures, config, seed, now, profile);
        let mut sent_rows = Vec::new();
        let mut legacy_sent = Vec::new();
        let mut sent_on_disk = std::collections::BTreeSet::new();
        for (table, key, value) in rest {
            if table == Table::Acceptances {
                if node.acceptances.restore_row(key, &value).is_err() {
                    skipped += 1;
                }
            } else if table == Table::Replay {
                if node.replay.restore_row(key, &value).is_err() {
                    skipped += 1;
                }
            } else if matches!(table, Table::SentUpdates | Table::SentResponses) {
                sent_rows.push((table, key, value));
            } else {
                if table == Table::Sent {
                    sent_on_disk.insert(key.clone());
                }
                // Version 1 kept updates and replies inside the record (later ones keep them in rows).
                let legacy = table == Table::Sent && value.first().is_some_and(|v| *v < 2);
                if node.restore_record(table, key.clone(), &value).is_err() {
                    skipped += 1;
                } else if legacy {
                    legacy_sent.push(key);
                }
            }
        }
        skipped += node.restore_sent_rows(sent_rows, legacy_sent, &sent_on_disk);
        // After the connections, which they need; each settled row is its own commit, as when live.
        let connections = &node.connections;
        let settled = node.acceptances.finish_restore(|peer| connections.contains_key(peer));
        for change in settled {
            node.persist(vec![change]);
        }
        let dead = node.replay.finish_restore(now.wall_us);
        node.persist(dead);
        // Trust queries that were in flight when the node stopped are asked again.
        let unfinished: Vec<String> = node
            .connections
            .pending_requests()
            .filter(|p| p.peer_trust.as_ref().is_some_and(|t| !t.complete()))
            .map(|p| p.request_id.clone())
            .collect();
        for request_id in unfinished {
            if let Some(p) = node.connections.pending_mut(&request_id) {
                p.peer_trust = None;
            }
            node.start_trust_query(&request_id);
        }
        node.announce_if_moved();
        if fresh {
            let change = Change::put(Table::Profile, "self", &node.profile);
            node.persist(vec![change]);
        }
        node.respawn_queued();
        node.recheck_notices();
        (node, skipped)
    }

    fn restore_record(&mut self, table: Table, key: String, value: &[u8]) -> Result<(), store::RecordError> {
        match table {
            Table::Profile => {}
            Table::Connections | Table::PendingIn | Table::PendingOut => {
                self.connections.restore_row(table, key, value)?;
            }
            Table::Inbox => {
                let seq = self.inbox.restore_row(key, value)?;
                self.next_seq = self.next_seq.max(seq + 1);
            }
            Table::Sent => {
                let seq = self.sent.restore_row(key, value)?;
                self.next_seq = self.next_seq.max(seq + 1);
            }
            Table::Impressions => {
                self.impressions.restore_row(key, value)?;
            }
            Table::UrlProofs => {
                self.healing.restore_row(key, value)?;
            }
            Table::Replay | Table::SentUpdates | Table::SentResponses | Table::Acceptances => {}
            Table::Shards => {
                self.shards.restore_row(key, value)?;
            }
            Table::Conversations => {
                let seq = self.memory.restore_row(value)?;
                self.next_seq = self.next_seq.max(seq + 1);
            }
            Table::AntiMatter => self.antimatter.restore_row(&key, value)?,
            Table::Pools => self.pool_state.pools.restore_row(&key, value)?,
        }
        Ok(())
    }

    fn empty(
        passport: Passport,
        signatures: Arc<dyn SignatureProvider>,
        mut config: Config,
        seed: u64,
        now: Now,
        profile: Profile,
    ) -> Self {
        // The runtime validates its settings; the core still never trusts them to be in range.
        config.max_connections = config.max_connections.min(limits::CONNECTIONS_MAX_CEILING);
        let discovery = config.discovery;
        let spawner = Spawner::new(config.spawn.clone());
        let max_connections = config.max_connections;
        let relay =
            crate::relay::Relay::new(config.anchors.clone(), relay::unroutable(&config.public_url), now.mono_ms);
        let wallets = BTreeMap::from([(
            crate::wallet::SOLANA_CHAIN.to_owned(),
            crate::wallet::Wallet::from_passport(&passport).address().to_base58(),
        )]);
        Self {
            wallets,
            passport,
            signatures,
            config,
            rng: ChaCha20Rng::seed_from_u64(seed),
            profile,
            connections: Connections::new(max_connections),
            inbox: Inbox::default(),
            sent: Outbox::default(),
            impressions: Impressions::default(),
            vouches: crate::trust::Vouches::default(),
            discovery: Discovery::default(),
            healing: Healing::default(),
            shards: Shards::new(now.mono_ms),
            memory: Memory::default(),
            replay: Replay::default(),
            keys: KeyCache::default(),
            rates: RateLimits::default(),
            calls: BTreeMap::new(),
            acceptances: Acceptances::default(),
            request_sources: RequestSources::default(),
            batches: Batches::default(),
            waiters: Waiters::default(),
            outputs: VecDeque::new(),
            request_from_peer: false,
            next_outbound: 1,
            next_seq: 1,
            next_housekeeping_ms: now.mono_ms + HOUSEKEEPING_INTERVAL_MS,
            // Background discovery beacons at once and scans shortly after start.
            next_beacon_ms: discovery.then_some(now.mono_ms),
            next_scan_ms: discovery.then_some(now.mono_ms + crate::discovery::SCAN_FIRST_DELAY_MS),
            scans: Scans::default(),
            spawner,
            relay,
            entropy: None,
            antimatter: antimatter::AntiMatter::default(),
            payments: crate::payments::PaymentChecks::default(),
            pool_state: pool::PoolState::default(),
            now,
        }
    }

    /// Gives the node the operating system's random source, which alone seals relayed bodies
    /// (SPEC §2.7): without one the node never relays.
    pub fn set_entropy(&mut self, entropy: Arc<dyn crate::relay::Entropy>) {
        self.entropy = Some(entropy);
    }

    /// Whether peers elsewhere cannot reach our public URL (SPEC §20.2).
    pub fn nat_detected(&self) -> bool {
        self.relay.nat_detected()
    }

    /// This node's identity.
    pub fn passport(&self) -> &Passport {
        &self.passport
    }

    /// The URL peers reach us at.
    pub fn public_url(&self) -> &str {
        &self.config.public_url
    }

    /// The next thing to do. Returns [`Output::Timeout`] when nothing else is queued.
    pub fn poll_output(&mut self) -> Output {
        match self.outputs.pop_front() {
            Some(out) => out,
            None => Output::Timeout(self.poll_timeout()),
        }
    }

    /// The earliest monotonic time at which [`Node::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<u64> {
        let timers = [
            self.waiters.next_deadline_ms(),
            self.next_beacon_ms,
            self.next_scan_ms,
            self.spawner.next_retry_ms(),
            self.relay.next_deadline_ms(),
            self.payments.next_deadline_ms(),
        ];
        Some(timers.into_iter().flatten().fold(self.next_housekeeping_ms, u64::min))
    }

    /// A peer's HTTP request. The answer comes out as an [`Output::Reply`] with the same id.
    pub fn handle_request(&mut self, now: Now, request: InboundRequest) {
        self.now = now;
        self.request_from_peer = false;
        let id = request.id;
        let path = request.path.clone();
        // The pool routes answer themselves, some of them later (a payment, an upstream call).
        if self.pool_route(&request) {
            return;
        }
        // A handler queues its persists first and returns the body; the reply is queued after them,
        // so an acknowledgement never precedes the commit it acknowledges.
        match self.route(&request) {
            Ok(body) => self.reply(id, 200, body),
            Err(refusal) => {
                let status = refusal.status();
                let reason = refusal.to_string();
                if matches!(status, 403 | 409) {
                    self.emit(Event::Refused { path, status, reason: reason.clone() });
                }
                self.reply(id, status, wire::error_body(&reason));
            }
        }
    }

    fn route(&mut self, r: &InboundRequest) -> Result<Vec<u8>, Refusal> {
        let path = r.path.as_str();
        let Some(rest) = path.strip_prefix("/__darkmatter__/") else {
            if path == "/.well-known/darkmatter.json" {
                expect(r.method, Method::Get)?;
                return Ok(wire::encode(&self.card()));
            }
            return Err(Refusal::NoRoute);
        };
        let (head, arg) = match rest.split_once('/') {
            Some((h, a)) => (h, Some(a)),
            None => (rest, None),
        };
        match (head, arg) {
            ("message", None) => {
                expect(r.method, Method::Post)?;
                self.on_message(r)
            }
            ("webhook", Some(message_id)) => match r.method {
                Method::Post => self.on_webhook_update(message_id, &r.body, r.source),
                Method::Get => self.on_webhook_status(message_id),
                Method::Other => Err(Refusal::BadMethod),
            },
            ("connection_request", None) => {
                expect(r.method, Method::Post)?;
                self.on_connection_request(r)
            }
            ("connection_proof", None) => {
                expect(r.method, Method::Post)?;
                self.on_connection_proof(r)
            }
            ("trust_query", None) => {
                expect(r.method, Method::Post)?;
                self.on_trust_query(&r.body)
            }
            ("shard_push", None) => {
                expect(r.method, Method::Post)?;
                self.on_shard_push(&r.body)
            }
            ("connection_accepted", None) => {
                expect(r.method, Method::Post)?;
                self.on_connection_accepted(&r.body, r.source)
            }
            ("disconnect", None) => {
                expect(r.method, Method::Post)?;
                self.on_disconnect(&r.body)
            }
            ("peer_update", None) => {
                expect(r.method, Method::Post)?;
                self.on_peer_update(r)
            }
            ("peer_lookup", Some(agent_id)) => {
                expect(r.method, Method::Get)?;
                self.on_peer_lookup(agent_id, r.source)
            }
            ("impression", Some(agent_id)) => {
                expect(r.method, Method::Get)?;
                self.on_impression_query(agent_id)
            }
            ("status", None) => {
                expect(r.method, Method::Get)?;
                Ok(wire::encode(&self.status_body()))
            }
            ("network_info", None) => {
                expect(r.method, Method::Get)?;
                Ok(wire::encode(&self.network_info()))
            }
            ("antimatter_match", None) => {
                expect(r.method, Method::Post)?;
                self.on_antimatter_match(r)
            }
            ("antimatter_signal", None) => {
                expect(r.method, Method::Post)?;
                self.on_antimatter_signal(r)
            }
            ("antimatter_result", None) => {
                expect(r.method, Method::Post)?;
                self.on_antimatter_result(r)
            }
            ("antimatter_started", None) => {
                expect(r.method, Method::Post)?;
                self.on_antimatter_started(r)
            }
            ("antimatter_disagreement", None) => {
                expect(r.method, Method::Post)?;
                self.on_antimatter_disagreement(r)
            }
            // 0.5.3 offers WebRTC after every acceptance; we never do WebRTC: answer fast.
            ("webrtc_offer", None) => Err(Refusal::Invalid("WebRTC is not supported by this node".to_owned())),
            _ => Err(Refusal::NoRoute),
        }
    }

    /// The answer (or transport failure) of an outbound call this node asked for.
    pub fn handle_response(&mut self, now: Now, id: OutboundId, result: Result<HttpResponse, String>) {
        self.now = now;
        let Some(call) = self.calls.remove(&id) else { return };
        match call {
            Call::ConnectRequest { cmd, target_url } => self.on_connect_answer(cmd, &target_url, result),
            Call::Deliver { batch, target, body, retried } => self.on_delivery(batch, target, body, retried, result),
            Call::Lookup { peer, answerer } => self.on_lookup_answer(&peer, &answerer, result),
            Call::LookupCard { peer, url, local, via } => self.on_lookup_card(&peer, url, (local, via), result),
            Call::TrustQuery { request_id, peer, query_id } => {
                self.on_trust_answer(&request_id, &peer, &query_id, result)
            }
            Call::Acceptance { peer, attempt } => self.on_acceptance_answer(&peer, attempt, result),
            Call::Probe { scan, base } => self.on_probe_answer(scan, base, result),
            Call::DomainCard { cmd, base } => self.on_domain_card(cmd, base, result),
            Call::AnchorLookup { peer, anchor } => self.on_anchor_lookup_answer(&peer, anchor, result),
            Call::Relay { peer, envelope, anchor, purpose } => {
                self.on_relay_answer(peer, envelope, anchor, purpose, result)
            }
            Call::Poll { kind, anchor } => self.on_poll_answer(kind, anchor, result),
            Call::ReachProbe { generation } => self.on_reach_probe_answer(generation, result),
            Call::Notice { peer, path, body } => self.on_notice_answer(&peer, path, body, result),
            Call::AntiMatterMatch { signal_id, peer, reveal } => self.on_match_answer(signal_id, peer, reveal, result),
            Call::Webhook { url, body, attempts, until_ms } => {
                self.on_webhook_answer(&url, body, attempts, until_ms, result)
            }
            Call::Pool { cmd } => self.on_pool_answer(cmd, result),
            Call::FireAndForget => {}
        }
    }

    /// A LAN datagram (a multicast beacon).
    pub fn handle_datagram(&mut self, now: Now, source: IpAddr, payload: &[u8]) {
        self.now = now;
        self.on_beacon(source, payload);
    }

    /// Time has reached a deadline the node asked for (calling it early is harmless).
    pub fn handle_timeout(&mut self, now: Now) {
        self.now = now;
        self.expire_waiters();
        self.discovery_timers();
        self.spawn_timers();
        self.relay_timers();
        self.payment_timers();
        if now.mono_ms >= self.next_housekeeping_ms {
            self.next_housekeeping_ms = now.mono_ms + HOUSEKEEPING_INTERVAL_MS;
            self.housekeeping();
        }
    }

    fn housekeeping(&mut self) {
        let mut changes = self.replay.purge(self.now.wall_us);
        changes.extend(self.expire_pending());
        changes.extend(self.prune_shards());
        if let Some(until) = self.profile.inactive_until_us {
            if self.now.wall_us >= until {
                self.profile.inactive_until_us = None;
                changes.push(Change::put(Table::Profile, "self", &self.profile));
            }
        }
        self.persist(changes);
        self.auto_disconnect();
        self.retry_acceptances();
        self.reconsider_pending();
        self.refresh_shards();
        self.antimatter_watchdog();
    }

    // ----- small helpers shared by the concern files -----

    pub(crate) fn emit(&mut self, event: Event) {
        self.push(Output::Event(Box::new(event)));
    }

    pub(crate) fn persist(&mut self, changes: Vec<Change>) {
        if !changes.is_empty() {
            self.push(Output::Persist(changes));
        }
    }

    pub(crate) fn reply(&mut self, id: InboundId, status: u16, body: Vec<u8>) {
        let peer = std::mem::take(&mut self.request_from_peer) && status == 200;
        self.push(Output::Reply(Reply { id, status, body, peer }));
    }

    pub(crate) fn done(&mut self, id: CommandId, result: Result<CommandOutput, CommandError>) {
        self.push(Output::Done { id, result });
    }

    /// Queues an outbound call and remembers what its answer is for.
    pub(crate) fn transmit(
        &mut self,
        method: Method,
        url: String,
        body: Vec<u8>,
        timeout_ms: u64,
        forbid_private: bool,
        call: Call,
    ) -> OutboundId {
        let id = OutboundId(self.next_outbound);
        self.next_outbound += 1;
        let probe = matches!(call, Call::Probe { .. });
        self.calls.insert(id, call);
        self.push(Output::Transmit(Transmit { id, method, url, body, timeout_ms, forbid_private, probe }));
        id
    }

    pub(crate) fn calls_in_flight(&self) -> usize {
        self.calls.len()
    }

    pub(crate) fn push_datagram(&mut self, payload: Vec<u8>) {
        self.push(Output::Datagram(payload));
    }

    pub(crate) fn push_output(&mut self, out: Output) {
        self.push(out);
    }

    fn push(&mut self, out: Output) {
        // The driver drains after every input; a queue this long means it stopped draining.
        assert!(self.outputs.len() < limits::OUTPUTS_BUFFERED_MAX, "driver is not draining outputs");
        self.outputs.push_back(out);
    }

    pub(crate) fn random_hex(&mut self, bytes: usize) -> String {
        let mut buf = vec![0u8; bytes];
        self.rng.fill_bytes(&mut buf);
        crate::identity::lower_hex(&buf)
    }

    pub(crate) fn next_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    /// Charges one request that passed its checks to its party under the global limit (see
    /// [`crate::rate`]): the connected peer `agent` if the request authenticated as one, else its
    /// `source` address. Called after decoding and signature checks, so junk spends nobody's budget.
    pub(crate) fn admit(&mut self, agent: Option<&str>, source: Option<IpAddr>) -> Result<(), Refusal> {
        let party = match agent.and_then(|id| self.connections.get_key_value(id)) {
            Some((id, conn)) => Party::Peer(id, conn.rate_limit),
            None => Party::Source(source),
        };
        let from_peer = matches!(party, Party::Peer(..));
        self.rates.admit(self.now.mono_ms, party, self.profile.rate_global)?;
        self.request_from_peer = from_peer;
        Ok(())
    }

    /// The per-peer limit, for connected peers, applied after their signature verified.
    pub(crate) fn admit_peer(&mut self, agent_id: &str) -> Result<(), Refusal> {
        let Some(conn) = self.connections.get(agent_id) else { return Ok(()) };
        self.rates.admit_peer(agent_id, self.now.mono_ms, conn.rate_limit)
    }

    /// Whether the node is inactive (refuses requests and messages with 503).
    pub(crate) fn is_inactive(&self) -> bool {
        matches!(self.profile.inactive_until_us, Some(until) if self.now.wall_us < until)
    }

    /// The id `text` names: a connection's (already parsed), else from the key cache or parsed.
    pub(crate) fn agent_id(&mut self, text: &str) -> Result<AgentId, crate::error::IdentityError> {
        match self.connections.get(text) {
            Some(conn) => Ok(conn.agent_id.clone()),
            None => self.keys.parse(text),
        }
    }

    /// Parses a peer-supplied id and its optional key field, binding one to the other.
    pub(crate) fn bind_identity(&mut self, agent_id: &str, key_hex: Option<&str>) -> Result<AgentId, Refusal> {
        let id = self.agent_id(agent_id).map_err(|e| Refusal::Invalid(e.to_string()))?;
        match key_hex {
            Some(k) if !k.is_empty() && k != agent_id => {
                Err(Refusal::Unauthorized("Public key must match agent_id".to_owned()))
            }
            _ => Ok(id),
        }
    }

    /// Agent-id parses (point decompressions) this node has performed on peers' ids: ids of
    /// connections and of recently seen agents are not parsed again.
    pub(crate) fn key_parses(&self) -> u64 {
        self.keys.parses()
    }

    pub(crate) fn me(&self) -> &str {
        self.passport.agent_id().as_str()
    }

    pub(crate) fn accepting_connections(&self) -> bool {
        self.connections.has_room()
    }

    /// Whether automatic acceptance may add a connection (it leaves slots for the agent's own accepts).
    pub(crate) fn accepting_automatically(&self) -> bool {
        self.connections.has_automatic_room()
    }

    /// Whether a proven request from the local `source` is auto-accepted now; spends its source's
    /// auto-accept budget when it is.
    pub(crate) fn auto_accept_local(&mut self, source: Option<IpAddr>) -> bool {
        self.config.auto_accept_local
            && self.accepting_automatically()
            && self.request_sources.grant_auto_accept(self.now.mono_ms, source)
    }
}

fn expect(got: Method, want: Method) -> Result<(), Refusal> {
    if got == want {
        Ok(())
    } else {
        Err(Refusal::BadMethod)
    }
}

/// The configured name, or the default one when the runtime configures none.
fn configured_name(passport: &Passport, config: &Config) -> String {
    if config.display_name.is_empty() {
        crate::identity::default_display_name(passport.agent_id())
    } else {
        config.display_name.clone()
    }
}
