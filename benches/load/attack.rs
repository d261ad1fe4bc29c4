//! The floods of issue 12, each from one source address of its own, each until stopped.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use proto_core::Passport;

use super::legit::{Ledger, Target};
use super::net::{self, connect_from};
use super::sign;
use super::sleep_until;

/// Wait for one answer to an attack request, in ms (the attacker does not care much).
const ATTACK_WAIT_MS: u64 = 5_000;
/// Sockets a slow attacker reopens per tick once the server closed them (so a refused attacker
/// does not spin).
const REOPEN_PER_TICK_MAX: usize = 16;
/// A slow attacker's tick, in ms.
const TICK_MS: u64 = 200;
/// How far a paced sender may fall behind before it skips ahead instead of bursting, in ms.
const CATCH_UP_MS: u64 = 100;

/// One flood.
#[derive(Clone)]
pub enum Attack {
    /// `burst` one-byte POSTs back to back, then `per_s` a second: junk that never parses.
    Junk { burst: usize, per_s: u32 },
    /// Valid signed messages from a connected peer (`passport`, at `url`), `per_s` a second over
    /// `connections` keep-alive connections. Acknowledged ones go into the ledger.
    ValidFlood { passport: Arc<Passport>, url: String, per_s: u32, connections: usize },
    /// `sockets` requests announcing a 400,000-byte body, then sending one byte a second.
    SlowBodies { sockets: usize },
    /// `sockets` requests whose head grows by a byte every tick.
    SlowHeads { sockets: usize },
    /// A stranger's throwaway key: `burst` messages at once, then `per_s` a second (ids start with
    /// `stranger-`).
    StrangerInbox { burst: usize, per_s: u32 },
    /// `burst` signed connection requests from throwaway keys every `every`.
    ThrowawayRequests { burst: usize, every: Duration },
}

/// What the attacker saw: requests by outcome.
#[derive(Default, Debug)]
pub struct Tally {
    /// Answered 2xx.
    pub ok: AtomicU64,
    /// Answered 429.
    pub limited: AtomicU64,
    /// Answered otherwise.
    pub other: AtomicU64,
    /// No answer (refused, closed, timed out).
    pub failed: AtomicU64,
}

impl Tally {
    fn count(&self, answer: &std::io::Result<u16>) {
        let c = match answer {
            Ok(200..=299) => &self.ok,
            Ok(429) => &self.limited,
            Ok(_) => &self.other,
            Err(_) => &self.failed,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// `ok/429/other/failed` counts.
    pub fn line(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "2xx {} / 429 {} / other {} / no answer {}",
            g(&self.ok),
            g(&self.limited),
            g(&self.other),
            g(&self.failed)
        )
    }
}

/// A running flood.
pub struct Running {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// What the attacker saw.
    pub tally: Arc<Tally>,
}

impl Running {
    /// Stops the flood and waits for its threads.
    pub fn stop(mut self) -> Arc<Tally> {
        self.stop.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.tally.clone()
    }
}

/// Everything an attack thread needs.
#[derive(Clone)]
struct Ctx {
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    target: Arc<Target>,
    ledger: Arc<Ledger>,
    from: Ipv4Addr,
    sink_url: String,
}

impl Ctx {
    fn addr(&self) -> SocketAddr {
        self.target.addr
    }

    /// One request with `Connection: close`, counted.
    fn post(&self, path: &str, body: &[u8]) -> std::io::Result<u16> {
        let wait = Duration::from_millis(ATTACK_WAIT_MS);
        let answer = net::exchange(self.from, self.addr(), "POST", path, body, wait).map(|(s, _)| s);
        self.tally.count(&answer);
        answer
    }
}

/// Starts `attack` from 127.0.0.x address `from`; `sink_url` is where throwaway keys say they serve.
pub fn start(attack: Attack, target: Arc<Target>, ledger: Arc<Ledger>, from: Ipv4Addr, sink_url: &str) -> Running {
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let ctx = Ctx { stop: stop.clone(), tally: tally.clone(), target, ledger, from, sink_url: sink_url.to_owned() };
    let threads = match attack {
        Attack::ValidFlood { passport, url, per_s, connections } => (0..connections.max(1))
            .map(|c| {
                let (ctx, passport, url) = (ctx.clone(), passport.clone(), url.clone());
                let per_thread = (per_s / connections.max(1) as u32).max(1);
                std::thread::spawn(move || valid_flood(&ctx, &passport, &url, per_thread, c))
            })
            .collect(),
        other => vec![std::thread::spawn(move || run_one(&ctx, other))],
    };
    Running { stop, threads, tally }
}

fn run_one(ctx: &Ctx, attack: Attack) {
    match attack {
        Attack::Junk { burst, per_s } => junk(ctx, burst, per_s),
        Attack::SlowBodies { sockets } => slow(ctx, sockets, true),
        Attack::SlowHeads { sockets } => slow(ctx, sockets, false),
        Attack::StrangerInbox { burst, per_s } => stranger(ctx, burst, per_s),
        Attack::ThrowawayRequests { burst, every } => throwaway(ctx, burst, every),
        Attack::ValidFlood { .. } => {}
    }
}

/// Calls `f` `burst` times at once, then `per_s` times a second until stopped.
fn paced(ctx: &Ctx, burst: usize, per_s: u32, mut f: impl FnMut(u64)) {
    for n in 0..burst as u64 {
        if ctx.stop.load(Ordering::Acquire) {
            return;
        }
        f(n);
    }
    let every = Duration::from_micros(1_000_000 / u64::from(per_s.max(1)));
    let mut next = Instant::now();
    for n in burst as u64.. {
        if !sleep_until(next, &ctx.stop) {
            return;
        }
        next += every;
        let behind = Instant::now().saturating_duration_since(next);
        if behind > Duration::from_millis(CATCH_UP_MS) {
            next = Instant::now();
        }
        f(n);
    }
}

fn junk(ctx: &Ctx, burst: usize, per_s: u32) {
    paced(ctx, burst, per_s, |_| {
        let _ = ctx.post("/__darkmatter__/message", b"x");
    });
}

fn stranger(ctx: &Ctx, burst: usize, per_s: u32) {
    let key = sign::fresh_passport();
    let webhook = format!("{}/__darkmatter__/webhook/stranger", ctx.sink_url);
    paced(ctx, burst, per_s, |n| {
        let id = format!("stranger-{n:06}");
        let body = sign::message(&key, &ctx.target.id, &id, "a stranger's message", &webhook);
        let _ = ctx.post("/__darkmatter__/message", &body);
    });
}

fn throwaway(ctx: &Ctx, burst: usize, every: Duration) {
    let mut next = Instant::now();
    while sleep_until(next, &ctx.stop) {
        next += every;
        for i in 0..burst {
            if ctx.stop.load(Ordering::Acquire) {
                return;
            }
            let key = sign::fresh_passport();
            let body = sign::connection_request(&key, &ctx.sink_url, &ctx.target.url, &format!("throwaway-{i}"));
            let _ = ctx.post("/__darkmatter__/connection_request", &body);
        }
    }
}

/// Signed messages from a connected peer over one keep-alive connection (reopened when closed).
fn valid_flood(ctx: &Ctx, passport: &Passport, url: &str, per_s: u32, lane: usize) {
    let mut conn: Option<TcpStream> = None;
    let wait = Duration::from_millis(ATTACK_WAIT_MS);
    paced(ctx, 0, per_s, |n| {
        let id = format!("flood-{lane}-{n:08}");
        let webhook = format!("{url}/__darkmatter__/webhook/{id}");
        let body = sign::message(passport, &ctx.target.id, &id, "a flood of valid messages", &webhook);
        let req = net::request("POST", "/__darkmatter__/message", ctx.addr(), &body, false);
        let s = match conn.take() {
            Some(s) => Ok(s),
            None => connect_from(ctx.from, ctx.addr(), wait),
        };
        let answer = s.and_then(|mut s| {
            s.write_all(&req)?;
            let (status, _) = net::read_response(&mut s)?;
            conn = Some(s);
            Ok(status)
        });
        if matches!(answer, Ok(200..=299)) {
            ctx.ledger.acked.lock().unwrap_or_else(|p| p.into_inner()).insert(id);
        }
        ctx.tally.count(&answer);
    });
}

/// One trickling socket: what it sends on each tick, and when it may send next.
struct Trickle {
    stream: TcpStream,
    next: Instant,
}

/// `sockets` trickling requests: bodies (one byte a second after a 400,000-byte announcement) or
/// heads (one byte a tick). Sockets the server closes are reopened, a few per tick.
fn slow(ctx: &Ctx, sockets: usize, bodies: bool) {
    let every = Duration::from_millis(if bodies { 1_000 } else { TICK_MS });
    let mut open: Vec<Trickle> = Vec::new();
    let mut next = Instant::now();
    while sleep_until(next, &ctx.stop) {
        next += Duration::from_millis(TICK_MS);
        let now = Instant::now();
        open.retain_mut(|t| {
            if now < t.next {
                return true;
            }
            t.next = now + every;
            let step: &[u8] = if bodies { b"x" } else { b"z" };
            t.stream.write_all(step).is_ok()
        });
        let missing = sockets.saturating_sub(open.len()).min(REOPEN_PER_TICK_MAX);
        for _ in 0..missing {
            match open_trickle(ctx, bodies) {
                Ok(stream) => open.push(Trickle { stream, next: now + every }),
                Err(_) => {
                    ctx.tally.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

fn open_trickle(ctx: &Ctx, bodies: bool) -> std::io::Result<TcpStream> {
    let mut s = connect_from(ctx.from, ctx.addr(), Duration::from_millis(TICK_MS))?;
    s.set_write_timeout(Some(Duration::from_millis(10)))?;
    let head: &[u8] = if bodies {
        b"POST /__darkmatter__/message HTTP/1.1\r\nHost: x\r\nContent-Length: 400000\r\n\r\n"
    } else {
        b"POST /__darkmatter__/message HTTP/1.1\r\nX-Slow: "
    };
    s.write_all(head)?;
    ctx.tally.ok.fetch_add(1, Ordering::Relaxed);
    Ok(s)
}
