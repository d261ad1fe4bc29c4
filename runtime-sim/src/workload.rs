//! Workload generators and the simulated agents' habits.
//!
//! Traffic is a set of Poisson processes, one per kind, each with a per-node rate; the superposition
//! over N nodes is one process of rate N x rate, so each kind keeps exactly one pending event in the
//! queue whatever the mesh size. Each firing picks a node uniformly.
//!
//! Agents (one per node) react to their node's events after a think time: they accept pending
//! requests, read each inbox message, sometimes reply, and (in storms) forward broadcasts on.

/// Rates are per node per simulated hour.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadConfig {
    /// Traffic starts at this time (after formation), µs.
    pub start_us: u64,
    /// Direct messages to one random connection.
    pub direct_per_hour: f64,
    /// Broadcasts to every connection.
    pub broadcast_per_hour: f64,
    /// Hop budget of a broadcast.
    pub broadcast_hops: u32,
    /// `GET /__darkmatter__/status` of a random connection.
    pub health_per_hour: f64,
    /// LAN beacons (each reaches the rest of the node's LAN segment via `handle_datagram`).
    pub beacon_per_hour: f64,
    /// Connection churn: drop a random connection and connect to a random node instead.
    pub churn_per_hour: f64,
    /// Impressions: score a random connection in -1..1.
    pub impression_per_hour: f64,
    /// Forged, tampered or replayed envelopes injected by an adversary.
    pub adversary_per_hour: f64,
    /// The adversary bends envelopes in each way of [`Forgery::ALL`] in turn (else in a random way),
    /// so that a short scenario tests every one.
    pub adversary_in_turn: bool,
    /// Crashes (the node restarts after `down_us`).
    pub crash_per_hour: f64,
    /// How long a crashed node stays down, µs.
    pub down_us: u64,
    /// Probability a restarting node comes back at a new address.
    pub move_on_restart: f64,
    /// Probability an agent answers a message it read (with `in_reply_to`).
    pub reply_prob: f64,
    /// Agents that answer every message from a connection (the trust study's farming Sybils).
    pub helpful: std::ops::Range<u32>,
    /// Probability an agent forwards a broadcast it read (hops permitting).
    pub forward_prob: f64,
    /// Connections a forward goes to at most.
    pub forward_fanout: u32,
    /// Agents accept pending connection requests (by hand) that arrive before this time, µs.
    pub accept_pending_until_us: u64,
    /// Agent think time, µs: uniform in this range.
    pub think_min_us: u64,
    /// See `think_min_us`.
    pub think_max_us: u64,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        Self {
            start_us: 60_000_000,
            direct_per_hour: 6.0,
            broadcast_per_hour: 0.5,
            broadcast_hops: 2,
            health_per_hour: 30.0,
            beacon_per_hour: 6.0,
            churn_per_hour: 0.0,
            impression_per_hour: 1.0,
            adversary_per_hour: 0.2,
            adversary_in_turn: false,
            crash_per_hour: 0.0,
            down_us: 120_000_000,
            move_on_restart: 0.0,
            reply_prob: 0.3,
            helpful: 0..0,
            forward_prob: 0.0,
            forward_fanout: 4,
            accept_pending_until_us: u64::MAX,
            think_min_us: 200_000,
            think_max_us: 5_000_000,
        }
    }
}

/// The Poisson processes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Gen {
    /// Direct messages.
    Direct,
    /// Broadcasts.
    Broadcast,
    /// Health checks.
    Health,
    /// Beacons.
    Beacon,
    /// Churn.
    Churn,
    /// Impressions.
    Impression,
    /// Adversary.
    Adversary,
    /// Crashes.
    Crash,
}

impl Gen {
    /// Every kind.
    pub const ALL: [Gen; 8] = [
        Gen::Direct,
        Gen::Broadcast,
        Gen::Health,
        Gen::Beacon,
        Gen::Churn,
        Gen::Impression,
        Gen::Adversary,
        Gen::Crash,
    ];

    /// Its per-node hourly rate under `w`.
    pub fn rate(self, w: &WorkloadConfig) -> f64 {
        match self {
            Gen::Direct => w.direct_per_hour,
            Gen::Broadcast => w.broadcast_per_hour,
            Gen::Health => w.health_per_hour,
            Gen::Beacon => w.beacon_per_hour,
            Gen::Churn => w.churn_per_hour,
            Gen::Impression => w.impression_per_hour,
            Gen::Adversary => w.adversary_per_hour,
            Gen::Crash => w.crash_per_hour,
        }
    }
}

/// Ways the adversary bends a captured envelope.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Forgery {
    /// Content changed, signatures kept: must be refused.
    Tamper,
    /// Signatures removed: must be refused.
    Unsigned,
    /// Claims another sender: must be refused.
    Impersonate,
    /// Sent as-is to a different node: must be refused (signed form binds the recipient).
    Retarget,
    /// A delivered envelope sent again, as-is, to its target: the duplicate check (or, after the
    /// window, freshness) refuses it; it may enter the inbox only if the original never arrived (lost
    /// or cut off), which `inbox-once` checks.
    Replay,
    /// A delivered envelope with our recipient-bound signature stripped (legacy form only), re-posted
    /// to a third node, as a recipient could: must be refused, or enter that inbox shown unverified.
    Downgrade,
}

impl Forgery {
    /// Every variant.
    pub const ALL: [Forgery; 6] = [
        Forgery::Tamper,
        Forgery::Unsigned,
        Forgery::Impersonate,
        Forgery::Retarget,
        Forgery::Replay,
        Forgery::Downgrade,
    ];

    /// Whether acceptance of this variant is itself a violation (see [`Forgery::may_enter_unverified`]).
    pub fn must_refuse(self) -> bool {
        matches!(
            self,
            Forgery::Tamper | Forgery::Unsigned | Forgery::Impersonate | Forgery::Retarget | Forgery::Downgrade
        )
    }

    /// Whether this variant may still be accepted when the inbox shows it unverified: a legacy-form
    /// envelope is genuinely its author's words, only not bound to this recipient.
    pub fn may_enter_unverified(self) -> bool {
        self == Forgery::Downgrade
    }

    /// Whether it bends an envelope that was delivered (else one the adversary intercepted, so that
    /// the signature checks meet it rather than the duplicate check).
    pub fn bends_delivered(self) -> bool {
        matches!(self, Forgery::Replay | Forgery::Downgrade)
    }

    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            Forgery::Tamper => "tampered",
            Forgery::Unsigned => "unsigned",
            Forgery::Impersonate => "impersonating",
            Forgery::Retarget => "retargeted",
            Forgery::Replay => "replayed",
            Forgery::Downgrade => "downgraded",
        }
    }
}
