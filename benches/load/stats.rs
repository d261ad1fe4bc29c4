//! What the legitimate clients saw: per kind of request, how many were served (2xx) and how fast.

use std::sync::Mutex;
use std::time::Duration;

/// The legitimate requests measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A signed message from a connected peer.
    Message,
    /// A signed connection request from a newcomer at an address of its own, then the agent's
    /// decision: served when auto-accepted, or when still pending for the agent to accept.
    Newcomer,
    /// `GET /__darkmatter__/status` from an address of its own.
    Status,
}

impl Kind {
    /// Every kind, in table order.
    pub const ALL: [Kind; 3] = [Kind::Message, Kind::Newcomer, Kind::Status];

    /// The column name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Message => "peer messages",
            Kind::Newcomer => "new requests",
            Kind::Status => "GET /status",
        }
    }
}

/// The status shown for a request that got no answer.
pub const NO_ANSWER: u16 = 0;
/// The status shown for a newcomer answered 2xx that was then not connected (displaced from the
/// pending table, or the agent's accept failed).
pub const NOT_CONNECTED: u16 = 1;

/// One legitimate request: its HTTP status (0: no answer) and refusal text, whether it was served,
/// and its latency.
#[derive(Clone, Debug)]
struct Probe {
    kind: Kind,
    status: u16,
    error: String,
    served: bool,
    latency_us: u64,
}

/// Every probe of a run; shared by the client threads.
#[derive(Default)]
pub struct Probes(Mutex<Vec<Probe>>);

/// One kind's figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    /// Requests made.
    pub attempts: usize,
    /// Of which served.
    pub served: usize,
    /// Median latency of the served ones, ms.
    pub p50_ms: f64,
    /// 99th percentile latency of the served ones, ms.
    pub p99_ms: f64,
    /// The statuses of those not served ([`NO_ANSWER`], [`NOT_CONNECTED`] or HTTP) and the refusals'
    /// texts, with their counts, most frequent first.
    pub unserved: Vec<((u16, String), usize)>,
}

impl Summary {
    /// The statuses not served, as `429×3, no answer×1`; `—` when all were served.
    pub fn unserved_line(&self) -> String {
        if self.unserved.is_empty() {
            return "—".to_owned();
        }
        let name = |s: u16, error: &str| match s {
            NO_ANSWER => "no answer".to_owned(),
            NOT_CONNECTED => "not connected".to_owned(),
            s if error.is_empty() => s.to_string(),
            s => format!("{s} {error}"),
        };
        self.unserved.iter().map(|((s, e), n)| format!("{}×{n}", name(*s, e))).collect::<Vec<_>>().join(", ")
    }

    /// Served / attempts (1 when nothing was attempted).
    pub fn share(&self) -> f64 {
        if self.attempts == 0 {
            1.0
        } else {
            self.served as f64 / self.attempts as f64
        }
    }
}

impl Probes {
    /// Records one request and, when it was refused, the refusal's text; returns its index, for
    /// [`Probes::settle`].
    pub fn record(&self, kind: Kind, status: u16, error: &str, served: bool, latency: Duration) -> usize {
        let error = if served { String::new() } else { error.to_owned() };
        let p = Probe { kind, status, error, served, latency_us: latency.as_micros() as u64 };
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        all.push(p);
        all.len() - 1
    }

    /// Sets the outcome of probe `index` (a newcomer's request is answered first and decided later);
    /// one not served is then shown as [`NOT_CONNECTED`].
    pub fn settle(&self, index: usize, served: bool) {
        if let Some(p) = self.0.lock().unwrap_or_else(|p| p.into_inner()).get_mut(index) {
            p.served = served;
            if !served {
                p.status = NOT_CONNECTED;
                p.error.clear();
            }
        }
    }

    /// The figures of one kind.
    pub fn summary(&self, kind: Kind) -> Summary {
        let all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let of_kind: Vec<&Probe> = all.iter().filter(|p| p.kind == kind).collect();
        let mut served: Vec<u64> = of_kind.iter().filter(|p| p.served).map(|p| p.latency_us).collect();
        served.sort_unstable();
        let mut unserved = std::collections::BTreeMap::<(u16, String), usize>::new();
        for p in of_kind.iter().filter(|p| !p.served) {
            *unserved.entry((p.status, p.error.clone())).or_default() += 1;
        }
        let mut unserved: Vec<((u16, String), usize)> = unserved.into_iter().collect();
        unserved.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Summary {
            attempts: of_kind.len(),
            served: served.len(),
            p50_ms: percentile_ms(&served, 50),
            p99_ms: percentile_ms(&served, 99),
            unserved,
        }
    }
}

/// The `pct`th percentile (nearest rank) of sorted microseconds, in ms; 0 when empty.
pub fn percentile_ms(sorted_us: &[u64], pct: usize) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = (sorted_us.len() * pct).div_ceil(100).max(1);
    sorted_us[rank - 1] as f64 / 1000.0
}
