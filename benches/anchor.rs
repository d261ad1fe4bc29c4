//! Anchor capacity (BENCHMARKS.md, "Anchor"): registered nodes per resident MiB, lookups/s and relayed
//! messages/s of `darkmatter anchor` over loopback.
//!
//! ```sh
//! cargo run --release -p darkmatter-benches --bin anchor-capacity -- [--nodes 100000] [--secs 5]
//! ```
//!
//! The binary runs the anchor itself in a child process (`anchor-capacity serve <dir>`, the same
//! `runtime_smol::anchor::serve` as `darkmatter anchor`), so the resident size read from
//! `/proc/<pid>/status` is the anchor's alone. Then, from clients bound to many 127.x.y.z addresses (the
//! anchor counts registrations and posts per source, and so does the HTTP server's admission):
//! 1. registers `--nodes` agents, 10 per source, signed 0.5.3 registrations on keep-alive connections;
//! 2. looks random agents up for `--secs` from 128 connections (each its own source);
//! 3. posts 2 KiB sealed-size bodies to random agents' message mailboxes for `--secs`, each source
//!    below its post budget; each answer means the entry is on disk (group commit).
//!
//! It prints one JSON line of figures.
//!
//! With `--anchor-053 <python>`, the same clients measure 0.5.3's own anchor instead
//! (`tests/interop/anchor_053.py`, vendored, served threaded by Flask's server under `<python>`, a venv
//! with Flask: the interop tests make one at `target/pyvenv`); it holds at most 10,000 agents, so
//! compare both at `--nodes 10000`. `--serial` serves it one request at a time instead: threaded, its
//! directory loses registrations (it truncates the JSON file before locking it, so a concurrent reader
//! sees an empty directory and the next write keeps only its own entry); `agents_in_directory` (the
//! card's count after registering) shows how many survived.
//!
//! ```sh
//! cargo run --release -p darkmatter-benches --bin anchor-capacity -- --nodes 10000 --anchor-053 target/pyvenv/bin/python [--serial]
//! ```
//!
//! A second mode measures relayed message latency (SPEC §20):
//!
//! ```sh
//! cargo run --release -p darkmatter-benches --bin anchor-capacity -- relay-latency [--count 40]
//! ```
//!
//! An in-process anchor and two in-process nodes: A announces a URL nothing listens on (behind NAT)
//! and long-polls the anchor; B sends A `--count` messages one after another. Each is timed from the
//! moment B's send starts (its direct post fails, it seals the message and posts it to the anchor)
//! to the moment A's inbox takes it (A's held poll is answered, A opens and checks it). It prints the
//! median, p90 and max in ms as one JSON line. Bounds keep `--count` at most 45: all of loopback is one
//! source to the anchor, whose post budget is 120 a minute, and each message costs two posts (B's
//! relay post, and A's `received` callback to B's webhook mailbox, B being on loopback too); A's inbox
//! holds 50 messages.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proto_core::sign::{domain_bytes, sign_hex, DOMAIN_PEER_UPDATE};
use proto_core::time::format_iso;
use proto_core::Passport;

const THREADS: usize = 16;
const CONNECTIONS_PER_THREAD: usize = 8;
const REGISTRATIONS_PER_SOURCE: usize = 10;
const POSTS_PER_SOURCE: usize = 100;
const BODY_BYTES: usize = 2_048;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("relay-latency") {
        let count = args.iter().position(|a| a == "--count").and_then(|i| args.get(i + 1)?.parse().ok());
        relay_latency(count.unwrap_or(40));
        return;
    }
    if args.get(1).map(String::as_str) == Some("serve") {
        let config = runtime_smol::anchor::AnchorConfig {
            port: 0,
            state_dir: args[2].clone().into(),
            ..runtime_smol::anchor::AnchorConfig::default()
        };
        runtime_smol::anchor::serve(config).expect("anchor");
        return;
    }
    let flag = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (nodes, secs) = (flag("--nodes", 100_000) as usize, flag("--secs", 5));
    let dir = std::env::temp_dir().join(format!("anchor-capacity-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let python = args.iter().position(|a| a == "--anchor-053").and_then(|i| args.get(i + 1)).cloned();
    let serial = args.iter().any(|a| a == "--serial");
    let mut child = anchor_command(&dir, python.as_deref(), serial)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the anchor");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let ready: serde_json::Value = serde_json::from_str(&line).expect("ready line");
    let addr: SocketAddr = ready["url"].as_str().unwrap().trim_start_matches("http://").parse().unwrap();
    let pid = child.id();
    let rss_idle = rss_kib(pid);

    let ids = Arc::new(ids_of(nodes));
    let t = Instant::now();
    let registered = register_all(addr, &ids);
    let register_s = t.elapsed().as_secs_f64();
    let (rss_registered, in_directory) = (rss_kib(pid), agents_registered(addr));
    let lookups = run_for(addr, secs, ids.clone(), 2, |ids, i| {
        (format!("GET /__darkmatter__/peer_lookup/{} HTTP/1.1\r\nHost: a\r\n\r\n", ids[i % ids.len()]).into_bytes(), 1)
    });
    let body = format!("{{\"e2e_encrypted\":true,\"ciphertext\":\"{}\"}}", "a".repeat(BODY_BYTES - 40));
    let posts = run_for(addr, secs, ids.clone(), 3, move |ids, i| {
        let target = &ids[(i * 7_919) % ids.len()];
        let head = format!(
            "POST /__darkmatter__/message_relay/{target} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        ([head.as_bytes(), body.as_bytes()].concat(), POSTS_PER_SOURCE)
    });
    let (rss_end, hwm_end) = (rss_kib(pid), hwm_kib(pid));
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let figures = serde_json::json!({
        "anchor": match (&python, serial) {
            (None, _) => "darkmatter anchor",
            (Some(_), false) => "0.5.3 anchor.py (Flask, threaded)",
            (Some(_), true) => "0.5.3 anchor.py (Flask, one request at a time)",
        },
        "agents_in_directory": in_directory,
        "nodes": nodes,
        "registered": registered,
        "registrations_per_s": (registered as f64 / register_s).round(),
        "rss_idle_mib": rss_idle / 1024,
        "rss_registered_mib": rss_registered / 1024,
        "rss_end_mib": rss_end / 1024,
        "rss_peak_mib": hwm_end / 1024,
        "lookups_per_s": (lookups as f64 / secs as f64).round(),
        "relayed_messages_per_s": (posts as f64 / secs as f64).round(),
        "body_bytes": BODY_BYTES,
    });
    println!("{figures}");
}

/// The anchor's process: ours (`serve`, what `darkmatter anchor` runs), or 0.5.3's `anchor.py` under
/// `python` with its JSON files in `dir`.
fn anchor_command(dir: &std::path::Path, python: Option<&str>, serial: bool) -> Command {
    let Some(python) = python else {
        let mut c = Command::new(std::env::current_exe().unwrap());
        c.args(["serve", dir.to_str().unwrap()]);
        return c;
    };
    std::fs::create_dir_all(dir).unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/interop/run_anchor_053.py");
    let mut c = Command::new(python);
    c.arg(script).arg("0");
    if !serial {
        c.arg("--threaded");
    }
    c.env("DARKMATTER_ANCHOR_DIRECTORY", dir.join("directory.json"))
        .env("DARKMATTER_RELAY_BUFFER", dir.join("relay.json"));
    c
}

/// The card's `agents_registered`: what the directory really holds.
fn agents_registered(addr: SocketAddr) -> u64 {
    let mut s = connect_from(source(4, 1), addr);
    let _ = s.write_all(b"GET /.well-known/darkmatter.json HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str::<serde_json::Value>(body).ok().and_then(|v| v["agents_registered"].as_u64()).unwrap_or(0)
}

/// Agent ids of `n` deterministic passports (seed = index).
fn ids_of(n: usize) -> Vec<String> {
    (0..n).map(|i| passport(i).agent_id().as_str().to_owned()).collect()
}

fn passport(i: usize) -> Passport {
    let mut seed = [7u8; 32];
    seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
    Passport::from_seed(seed)
}

/// Source `index` of `group`: 127.<group>.<hi>.<lo>.
fn source(group: u8, index: usize) -> IpAddr {
    IpAddr::from([127, group, (index >> 8) as u8, (index & 0xff) as u8])
}

fn connect_from(src: IpAddr, addr: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(src, 0).into()).unwrap();
    socket.connect(&addr.into()).unwrap();
    let s: TcpStream = socket.into();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

/// Sends one request on a kept-alive connection: the answer's status and whether the server closes
/// the connection after it (`Connection: close`: a refusal, or the server's requests-per-connection
/// cap); `None` when the connection broke.
fn exchange(s: &mut TcpStream, request: &[u8]) -> Option<(u16, bool)> {
    s.write_all(request).ok()?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize =
                head.lines().find_map(|l| l.strip_prefix("content-length:")).map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + len {
                let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
                return Some((status, head.contains("connection: close")));
            }
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Registers every id, [`REGISTRATIONS_PER_SOURCE`] per source; returns how many were answered 200.
fn register_all(addr: SocketAddr, ids: &Arc<Vec<String>>) -> u64 {
    let ok = Arc::new(AtomicU64::new(0));
    let sources = ids.len().div_ceil(REGISTRATIONS_PER_SOURCE);
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let ok = ok.clone();
            let n = ids.len();
            std::thread::spawn(move || {
                for s in (t..sources).step_by(THREADS) {
                    let mut conn = connect_from(source(1, s), addr);
                    for i in (s * REGISTRATIONS_PER_SOURCE..(s + 1) * REGISTRATIONS_PER_SOURCE).take_while(|&i| i < n) {
                        match exchange(&mut conn, &registration(i, addr)) {
                            Some((200, false)) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Some((200, true)) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                                conn = connect_from(source(1, s), addr);
                            }
                            _ => conn = connect_from(source(1, s), addr),
                        }
                    }
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    ok.load(Ordering::Relaxed)
}

fn registration(i: usize, addr: SocketAddr) -> Vec<u8> {
    let p = passport(i);
    let id = p.agent_id().as_str();
    let url = format!("http://10.{}.{}.{}:8100", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff);
    let now_us = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as i64;
    let ts = format_iso(now_us);
    let sig = sign_hex(&p, &domain_bytes(DOMAIN_PEER_UPDATE, &[id, &url, &ts]).unwrap());
    let body =
        serde_json::json!({"agent_id": id, "new_url": url, "public_key_hex": id, "signature": sig, "timestamp": ts})
            .to_string();
    let head = format!(
        "POST /__darkmatter__/peer_update HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    [head.as_bytes(), body.as_bytes()].concat()
}

/// Runs `request(ids, i)` round-robin over [`THREADS`] × [`CONNECTIONS_PER_THREAD`] connections for
/// `secs`, each connection from its own source of `group` and replaced by a fresh source after the
/// request's per-source count; returns how many were answered 200.
fn run_for(
    addr: SocketAddr,
    secs: u64,
    ids: Arc<Vec<String>>,
    group: u8,
    request: impl Fn(&[String], usize) -> (Vec<u8>, usize) + Send + Sync + Clone + 'static,
) -> u64 {
    let ok = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (ok, stop, ids, request) = (ok.clone(), stop.clone(), ids.clone(), request.clone());
            std::thread::spawn(move || {
                let mut next_source = t * 4_000;
                let mut conns: Vec<(TcpStream, usize)> = (0..CONNECTIONS_PER_THREAD)
                    .map(|_| {
                        next_source += 1;
                        (connect_from(source(group, next_source), addr), 0)
                    })
                    .collect();
                let mut i = t * 1_000_003;
                while !stop.load(Ordering::Relaxed) {
                    for (conn, used) in conns.iter_mut() {
                        let (req, per_source) = request(&ids, i);
                        i += 1;
                        if *used >= per_source && per_source > 1 {
                            next_source += 1;
                            *conn = connect_from(source(group, next_source), addr);
                            *used = 0;
                        }
                        let answer = exchange(conn, &req);
                        if matches!(answer, Some((200, _))) {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        *used += 1;
                        // Refused (the source's budget) or closed (the server's per-connection cap):
                        // the same source reconnects.
                        if !matches!(answer, Some((_, false))) {
                            *conn = connect_from(source(group, next_source), addr);
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    let done = ok.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    threads.into_iter().for_each(|t| t.join().unwrap());
    done
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

fn hwm_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

/// A node of the latency run, configured as the tests configure theirs.
fn latency_node(dir: &std::path::Path, vars: &[(&str, String)]) -> runtime_smol::NodeHandle {
    let mut map: std::collections::HashMap<&str, String> = [
        ("DARKMATTER_HOST", "127.0.0.1".to_owned()),
        ("DARKMATTER_PORT", "0".to_owned()),
        ("DARKMATTER_DISCOVERY", "false".to_owned()),
        ("DARKMATTER_AGENT_ENABLED", "false".to_owned()),
    ]
    .into_iter()
    .collect();
    map.extend(vars.iter().cloned());
    let mut config = runtime_smol::RuntimeConfig::from_lookup(dir.to_owned(), |k| map.get(k).cloned()).expect("config");
    config.handle_signals = false;
    let (handle, running) = runtime_smol::start(config).expect("node starts");
    // The nodes live until the process ends.
    std::mem::forget(running);
    handle
}

/// Relayed message latency: send start → recipient's inbox, through a long-polled anchor.
fn relay_latency(count: usize) {
    assert!(count + 5 <= 50, "--count is at most 45 (see the module docs)");
    use proto_core::{Command, Event, SendArgs, Targets};
    let dir = std::env::temp_dir().join(format!("relay-latency-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let anchor_config = runtime_smol::anchor::AnchorConfig {
        port: 0,
        state_dir: dir.join("anchor"),
        ..runtime_smol::anchor::AnchorConfig::default()
    };
    let anchor = runtime_smol::anchor::start(anchor_config).expect("anchor");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let anchors = ("DARKMATTER_ANCHOR_NODES", anchor.url());
    let a = latency_node(
        &dir.join("a"),
        &[anchors.clone(), ("DARKMATTER_PUBLIC_URL", format!("http://127.0.0.1:{closed}"))],
    );
    let b = latency_node(&dir.join("b"), &[anchors]);
    let c = a.command_blocking(Command::Connect { target_url: b.public_url().to_owned() }).expect("connect");
    assert_eq!(c["status"], "connected", "{c}");
    // A takes more than its default 30 a minute from B: the run measures latency, not the limit.
    let b_id = Some(b.agent_id().to_owned());
    a.command_blocking(Command::SetRateLimit { agent_id: b_id, limit: -1 }).expect("peer limit");
    a.command_blocking(Command::SetRateLimit { agent_id: None, limit: -1 }).expect("global limit");
    let arrivals = Arc::new(std::sync::Mutex::new(std::collections::HashMap::<String, Instant>::new()));
    let events = a.events();
    let seen = arrivals.clone();
    std::thread::spawn(move || {
        while let Ok(e) = events.recv_blocking() {
            if let Event::MessageReceived { message_id, .. } = e {
                seen.lock().unwrap().insert(message_id, Instant::now());
            }
        }
    });
    let warmup = 5;
    let mut ms = Vec::with_capacity(count);
    for i in 0..count + warmup {
        let t0 = Instant::now();
        let sent = b
            .command_blocking(Command::Send(SendArgs {
                content: format!("relayed {i}"),
                targets: Targets::Agents(vec![a.agent_id().to_owned()]),
                metadata: serde_json::Map::new(),
                in_reply_to: None,
                hops_remaining: 1,
            }))
            .expect("send");
        assert_eq!(sent["relayed"][0].as_str(), Some(a.agent_id()), "message {i}: {sent}");
        let id = sent["message_id"].as_str().unwrap().to_owned();
        let end = Instant::now() + Duration::from_secs(30);
        let arrived = loop {
            if let Some(t) = arrivals.lock().unwrap().get(&id) {
                break *t;
            }
            assert!(Instant::now() < end, "message {i} never arrived");
            std::thread::sleep(Duration::from_micros(200));
        };
        if i >= warmup {
            ms.push(arrived.duration_since(t0).as_secs_f64() * 1_000.0);
        }
    }
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    println!(
        "{}",
        serde_json::json!({"relayed_messages": ms.len(), "median_ms": at(0.5), "p90_ms": at(0.9), "max_ms": at(1.0)})
    );
    let _ = std::fs::remove_dir_all(&dir);
}
