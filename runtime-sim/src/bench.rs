//! The benchmark: the `ordinary` scenario (20-50 connections per node; direct messages, broadcasts,
//! replies, beacons through `handle_datagram`, health checks as `GET /status`, impressions, a little
//! adversary traffic; all signatures real) at a given size, with the figures BENCHMARKS.md needs.
//!
//! Signature share, method: Ed25519 sign, `verify_strict` and agent-id parsing (point
//! decompression) are timed here in a loop with the core's own functions, then multiplied by the
//! number of such operations the run performed, counted from what crossed the simulated wire (two
//! signatures per message delivery, one verification per message accepted, four operations per
//! handshake, one signature per beacon and one verification per datagram); id parses are counted by
//! the nodes themselves. The timing buckets
//! (`--timing`) give the wall time spent inside the core by kind of input as a cross-check.
//!
//! The direct measurement: the same command with `--signatures null` runs the same trace (same
//! trace hash) with a cheap digest in place of Ed25519 ([`crate::crypto::NullSignatures`]), so its
//! loop time is everything but signature work (less the digest's and the remaining id parses'
//! estimated cost).

use std::time::{Duration, Instant};

use proto_core::identity::AgentId;
use proto_core::sign;
use proto_core::wire::{self, message::MessageEnvelope};
use proto_core::Passport;

use crate::crypto::Signatures;
use crate::scenario;
use crate::sim::{Report, Sim};
use crate::Violation;

/// Costs of one crypto operation, measured in this process.
#[derive(Clone, Copy, Debug)]
pub struct CryptoCosts {
    /// One Ed25519 signature (as `sign::sign_hex`).
    pub sign: Duration,
    /// One `verify_strict` (as `sign::verify_hex`).
    pub verify: Duration,
    /// One `AgentId::parse` (hex decode, point decompression, weak-key check).
    pub parse: Duration,
}

impl CryptoCosts {
    /// The cheaper of two measurements of each operation (a busy machine only ever adds time).
    pub fn min(self, other: Self) -> Self {
        Self {
            sign: self.sign.min(other.sign),
            verify: self.verify.min(other.verify),
            parse: self.parse.min(other.parse),
        }
    }
}

/// CPU time this thread has run, ns (`/proc/thread-self/schedstat`): unlike wall time, it does not
/// grow when other processes take the cores.
pub fn cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat").ok()?.split_whitespace().next()?.parse().ok()
}

/// A clock that reads CPU time when the system offers it, wall time otherwise.
struct Clock(Option<u64>, Instant);

impl Clock {
    fn start() -> Self {
        Self(cpu_ns(), Instant::now())
    }
    fn elapsed(&self) -> Duration {
        match (self.0, cpu_ns()) {
            (Some(a), Some(b)) => Duration::from_nanos(b - a),
            _ => self.1.elapsed(),
        }
    }
}

/// Length of one timed batch of the crypto microbenchmark: long enough that the thread's CPU
/// clock, which may lag by up to a scheduler tick (4 ms at most), is read to within a few percent.
const CRYPTO_BATCH: Duration = Duration::from_millis(100);
/// Operations between two readings of the clock within a batch.
const CRYPTO_CHUNK_OPS: u32 = 100;
/// Batches per operation; the fastest counts.
const CRYPTO_BATCHES: usize = 3;

/// Measures [`CryptoCosts`]: CPU time per operation in the fastest of several batches, on the same
/// clock as the event loop (so a busy machine, which slows both, does not inflate the share; other
/// processes only ever add time, so the minimum is the honest figure). Wall time where the system
/// offers no thread CPU clock.
pub fn crypto_costs() -> CryptoCosts {
    let p = Passport::from_seed([7; 32]);
    let msg = sign::v2_bytes(
        sign::V2_MESSAGE,
        &["a fairly ordinary message body of some length", "2026-01-01T00:00:00.000000+00:00"],
    );
    let sig = sign::sign_hex(&p, &msg);
    let id = p.agent_id().as_str().to_owned();
    let per_op = time_per_op;
    let sign_cost = per_op(&|| {
        std::hint::black_box(sign::sign_hex(&p, std::hint::black_box(&msg)));
    });
    let verify = per_op(&|| sign::verify_hex(p.agent_id().key(), std::hint::black_box(&msg), &sig).expect("valid"));
    let parse = per_op(&|| {
        std::hint::black_box(AgentId::parse(std::hint::black_box(&id)).expect("valid"));
    });
    CryptoCosts { sign: sign_cost, verify, parse }
}

/// CPU time of one call of `f`: the fastest of [`CRYPTO_BATCHES`] batches of [`CRYPTO_BATCH`].
fn time_per_op(f: &dyn Fn()) -> Duration {
    (0..CRYPTO_BATCHES)
        .map(|_| {
            let clock = Clock::start();
            let mut ops = 0;
            loop {
                for _ in 0..CRYPTO_CHUNK_OPS {
                    f();
                }
                ops += CRYPTO_CHUNK_OPS;
                let spent = clock.elapsed();
                if spent >= CRYPTO_BATCH {
                    break spent / ops;
                }
            }
        })
        .min()
        .expect("non-empty")
}

/// CPU time per byte of serde_json encoding and decoding the body the mesh sends most (a signed
/// message envelope, mostly hex ids and signatures), measured like [`crypto_costs`]. A floor, not
/// an estimate of the run's JSON time: a warm loop over one small body is the best case.
#[derive(Clone, Copy, Debug)]
pub struct JsonCosts {
    /// Per byte encoded (`wire::encode`).
    pub encode_ns_per_byte: f64,
    /// Per byte decoded into the core's owned structs (`wire::decode`).
    pub decode_ns_per_byte: f64,
}

impl JsonCosts {
    /// The cheaper of two measurements of each.
    pub fn min(self, other: Self) -> Self {
        Self {
            encode_ns_per_byte: self.encode_ns_per_byte.min(other.encode_ns_per_byte),
            decode_ns_per_byte: self.decode_ns_per_byte.min(other.decode_ns_per_byte),
        }
    }
}

/// Measures [`JsonCosts`] on a typical signed envelope.
pub fn json_costs() -> JsonCosts {
    let hex = |n: usize, c: char| c.to_string().repeat(n);
    let envelope = MessageEnvelope {
        message_id: "msg-3f9a1c0d2e4b".to_owned(),
        content: "m1234 from node-517".to_owned(),
        webhook: "http://10.0.2.5:8100/__darkmatter__/webhook/msg-3f9a1c0d2e4b".to_owned(),
        hops_remaining: 10,
        metadata: Some(Default::default()),
        timestamp: "2026-01-01T00:17:03.123456+00:00".to_owned(),
        from_agent_id: hex(64, 'a'),
        from_public_key_hex: Some(hex(64, 'a')),
        signature_hex: hex(128, 'c'),
        in_reply_to: None,
        to_agent_id: Some(hex(64, 'b')),
        dm_signature_hex: Some(hex(128, 'd')),
    };
    let body = wire::encode(&envelope);
    let per_byte = |f: &dyn Fn()| time_per_op(f).as_secs_f64() * 1e9 / body.len() as f64;
    let encode_ns_per_byte = per_byte(&|| {
        std::hint::black_box(wire::encode(std::hint::black_box(&envelope)));
    });
    let decode_ns_per_byte = per_byte(&|| {
        std::hint::black_box(wire::decode::<MessageEnvelope>(std::hint::black_box(&body)).expect("valid"));
    });
    JsonCosts { encode_ns_per_byte, decode_ns_per_byte }
}

/// Signature operations of a run: (signs, verifies, parses). Signs and verifies are estimated from
/// traffic; parses are counted by the nodes (ids of connections and recently seen agents are not
/// parsed again).
pub fn crypto_ops(r: &Report) -> (u64, u64, u64) {
    let c = &r.counters;
    let deliveries = c.intended + c.forwarded;
    let handshakes = c.connected_events / 2;
    let signs = 2 * deliveries + 2 * handshakes + c.beacons + 2 * c.peer_updates;
    let verifies = c.delivered + c.forwarded + c.forgeries + 2 * handshakes + c.datagrams + c.peer_updates;
    (signs, verifies, r.key_parses)
}

/// Peak resident memory of this process (`VmHWM`), KiB.
pub fn vm_hwm_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs the benchmark scenario. Returns the report and the CPU time of the event loop.
pub fn run(
    nodes: u32,
    seed: u64,
    duration_us: u64,
    timing: bool,
    signatures: Signatures,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(Report, Duration), Violation> {
    let mut opts = scenario::ordinary(nodes, seed, duration_us);
    opts.scenario = "ordinary".to_owned();
    opts.timing = timing;
    opts.signatures = signatures;
    let mut sim = Sim::new(opts);
    let clock = Clock::start();
    let report = sim.run(progress)?;
    Ok((report, clock.elapsed()))
}

/// The benchmark's text report. Rates use the loop's CPU time (the same as wall time on an idle
/// machine; honest on a busy one).
pub fn describe(
    r: &Report,
    signatures: Signatures,
    cpu: Duration,
    costs: &CryptoCosts,
    json: &JsonCosts,
    hwm_kib: Option<u64>,
) -> String {
    let mut s = String::new();
    let wall = cpu.as_secs_f64();
    let (signs, verifies, parses) = crypto_ops(r);
    // Checked ahead, only what the loop checked itself counts against it (the rest ran on other cores).
    let loop_verifies = if r.ahead.is_some() { r.verifies_on_loop } else { verifies };
    let sig_time = costs.sign * signs as u32 + costs.verify * loop_verifies as u32 + costs.parse * parses as u32;
    let sig_s = sig_time.as_secs_f64().min(wall);
    if signatures == Signatures::Null {
        s.push_str("signatures:              NULL (`--signatures null`: a digest stands in for Ed25519; agent-id parses are still real)\n");
    }
    s.push_str(&format!("setup (keys, nodes):     {:.2} s\n", r.setup.as_secs_f64()));
    s.push_str(&format!(
        "event loop:              {wall:.2} s CPU ({:.2} s wall) for {:.0} simulated s ({:.0}x real time)\n",
        r.wall.as_secs_f64(),
        r.sim_us as f64 / 1e6,
        r.sim_us as f64 / 1e6 / wall.max(1e-9)
    ));
    s.push_str(&format!("events:                  {} ({:.0} events/s)\n", r.events, r.events as f64 / wall.max(1e-9)));
    s.push_str(&format!(
        "peak memory (VmHWM):     {}\n",
        hwm_kib.map_or("unknown".to_owned(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
    ));
    s.push_str(&format!(
        "crypto (CPU per op):     sign {:.1} us, verify_strict {:.1} us, agent-id parse {:.1} us\n",
        us(costs.sign),
        us(costs.verify),
        us(costs.parse)
    ));
    s.push_str(&format!("crypto operations:       {signs} signs, {verifies} verifications, {parses} id parses (signs and verifications estimated from traffic, parses counted)\n"));
    s.push_str(&format!(
        "counted by the provider: {} signs, {} verifications (a cross-check of the estimate)\n",
        r.signs, r.verifies
    ));
    if let Some([ready, waited, behind, missed]) = r.ahead {
        s.push_str(&format!(
            "checked ahead:           {ready} found ready, {waited} waited for, {behind} found behind, {missed} missed (the last two on the loop)\n"
        ));
    }
    s.push_str(&format!(
        "signature work:          {:.2} s = {:.1}% of the event loop (estimate: operations on the loop x measured cost)\n",
        sig_s,
        100.0 * sig_s / wall.max(1e-9)
    ));
    let rest = (wall - sig_s).max(1e-9);
    s.push_str(&format!(
        "everything else:         {rest:.2} s -> {:.0} events/s without signature work\n",
        r.events as f64 / rest
    ));
    let c = &r.counters;
    let events = r.events.max(1) as f64;
    let floor_s =
        (c.wire_bytes_out as f64 * json.encode_ns_per_byte + c.wire_bytes_in as f64 * json.decode_ns_per_byte) / 1e9;
    s.push_str(&format!(
        "JSON bodies:             {:.1} MB encoded, {:.1} MB decoded by the nodes ({:.0} bytes per event)\n",
        c.wire_bytes_out as f64 / 1e6,
        c.wire_bytes_in as f64 / 1e6,
        (c.wire_bytes_out + c.wire_bytes_in) as f64 / events
    ));
    s.push_str(&format!(
        "serde_json floor:        {:.2} ns/byte encode, {:.2} ns/byte decode (warm loop) -> at least {floor_s:.2} s = {:.2} us per event\n",
        json.encode_ns_per_byte,
        json.decode_ns_per_byte,
        floor_s * 1e6 / events
    ));
    s.push_str(&format!(
        "persisted records:       {:.1} MB ({:.0} bytes per event)\n",
        c.persisted_bytes as f64 / 1e6,
        c.persisted_bytes as f64 / events
    ));
    if let Some(t) = &r.timing {
        let total = t.total().as_secs_f64();
        s.push_str(&format!(
            "inside the core:         {total:.2} s ({:.1}% of the loop); by input:\n",
            100.0 * total / wall.max(1e-9)
        ));
        for (label, calls, d) in &t.buckets {
            if *calls > 0 {
                s.push_str(&format!(
                    "  {label:<28} {calls:>10} calls {:>9.3} s {:>8.1} us/call\n",
                    d.as_secs_f64(),
                    d.as_secs_f64() * 1e6 / *calls as f64
                ));
            }
        }
    }
    s
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
