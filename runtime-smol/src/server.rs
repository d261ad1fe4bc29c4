//! The peer HTTP server: serves `/__darkmatter__/*` and `/.well-known/darkmatter.json` by handing
//! each request to the core and writing back its reply. Nothing else is served (no local control
//! on the network port).
//!
//! Every resource a peer can hold is bounded: open connections ([`CONNECTIONS_MAX`]), requests
//! waiting on the core ([`IN_FLIGHT_MAX`]), head size and field count
//! ([`crate::http::HEADER_BYTES_MAX`], [`crate::http::HEADERS_MAX`]), body size
//! ([`proto_core::limits::BODY_BYTES_MAX`], refused from the `Content-Length` before a byte of the
//! body is read), and time: a whole request must arrive within [`REQUEST_READ_MS`], an idle
//! keep-alive connection is closed after [`IDLE_MS`], a response must be written within [`WRITE_MS`].
//! Every refusal carries a JSON `{"error": ...}` body.
//!
//! ## One source cannot take it all
//! The bounds above are shared, so each is also split by source ([`crate::admission`]): a source (an
//! IPv4 address or an IPv6 /64) holds at most `SOURCE_CONNECTIONS_MAX` connections (more are answered
//! 503 and closed, like connections over [`CONNECTIONS_MAX`]) and reads at most `SOURCE_BODIES_MAX`
//! bodies at once (503). Every request is charged to its source's budget (`SOURCE_REQUESTS_BURST`,
//! refilled at `SOURCE_REQUESTS_PER_S`) when its first byte arrives, before its head is parsed; a spent
//! budget is answered 429, so a flood and its junk never reach the core. A slot toward the core
//! ([`IN_FLIGHT_MAX`]) is taken only once a request is whole, never while its body trickles. And a
//! request must keep moving: after [`RATE_GRACE_MS`], its head must average [`HEAD_BYTES_PER_S_MIN`]
//! and then its body [`BODY_BYTES_PER_S_MIN`], or it is answered 408 before [`REQUEST_READ_MS`].
//!
//! Sockets are non-blocking (async-io); the deadlines are timers raced against each read and write.
//!
//! ## Why not tiny_http
//! tiny_http 0.12 was the plan, but it cannot be bounded from outside: it reads each header line into
//! an unbounded buffer with no cap on the number of fields (`client.rs`, `read_next_line`), answers
//! malformed requests and timeouts with empty, non-JSON bodies, runs every connection on a thread of
//! a pool that grows without limit (`util/task_pool.rs`), exposes no accepted socket to set timeouts
//! on, and its accept loop exits on the first `accept` error (`lib.rs`, `from_listener`) — so a
//! listener-level `SO_RCVTIMEO` (inherited by accepted sockets on Linux) would stop the server at the
//! first idle period, and so would running out of file descriptors. The HTTP/1.1 subset peers use is
//! small enough to frame here ([`crate::http`]) with every bound explicit: the head's grammar is
//! `httparse`'s (a parser over a slice: no I/O, no allocation, no timeouts of its own), while the
//! byte and field caps, the body length rules, keep-alive, and every deadline above stay in this
//! crate, so they hold whatever the parser would accept.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender};
use proto_core::limits::BODY_BYTES_MAX;
use proto_core::Method;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::{Async, Executor, Timer};

use crate::admission::{Admission, ConnectionTicket, Limits};
use crate::driver::Input;
use crate::http::{self, Head, HeadError};

/// Open connections at once; more are answered 503 and closed.
pub const CONNECTIONS_MAX: usize = 256;
/// Requests handed to the core and not yet answered, at once; more are answered 503.
pub const IN_FLIGHT_MAX: usize = 64;
/// Time for a whole request (head and body) to arrive once its first byte has, in ms.
pub const REQUEST_READ_MS: u64 = 10_000;
/// Time a kept-alive connection may sit idle before its next request, in ms.
pub const IDLE_MS: u64 = 5_000;
/// Time allowed to write one response, in ms.
pub const WRITE_MS: u64 = 10_000;
/// Longest wait for the core's reply, in ms.
pub const REPLY_WAIT_MS: u64 = 30_000;
/// Requests served on one connection before it is closed.
pub const REQUESTS_PER_CONNECTION_MAX: usize = 1_000;
/// Pause after a failed `accept` (out of file descriptors), in ms, so the loop does not spin.
pub const ACCEPT_BACKOFF_MS: u64 = 100;
/// Listen backlog.
pub const BACKLOG: i32 = 1_024;
/// Bytes read from a socket at once.
pub const READ_CHUNK_BYTES: usize = 8 * 1024;
/// Time allowed to write a refusal to a connection over [`CONNECTIONS_MAX`], in ms.
pub const OVERLOAD_WRITE_MS: u64 = 1_000;
/// After a refusal that leaves input unread, how long we keep reading and discarding it, in ms, so
/// the close does not turn into a reset that destroys the refusal before the client reads it.
pub const LINGER_MS: u64 = 1_000;
/// Most bytes discarded while lingering.
pub const LINGER_BYTES_MAX: usize = 256 * 1024;
/// Time a request's head, and then its body, may take before the rate floors below apply, in ms: it
/// covers one lost segment (TCP's first retransmission waits 1 s) and a slow start on a long path.
pub const RATE_GRACE_MS: u64 = 2_000;
/// Least average rate of a request head once [`RATE_GRACE_MS`] has passed, in bytes per second. Honest
/// heads arrive in one write; this floor only ends stalled or trickled heads early. It stays low because
/// a head holds no more than one of its source's connections and at most [`http::HEADER_BYTES_MAX`]
/// bytes, and [`REQUEST_READ_MS`] ends it anyway.
pub const HEAD_BYTES_PER_S_MIN: u64 = 2;
/// Least average rate of a request body once [`RATE_GRACE_MS`] has passed since its head, in bytes per
/// second. A body holds a buffer of up to `BODY_BYTES_MAX` and one of its source's body slots, and
/// every real link is far faster than this.
pub const BODY_BYTES_PER_S_MIN: u64 = 1_024;

/// Binds the listening socket (address reuse on, so a restarted node gets its port back).
pub fn bind(host: IpAddr, port: u16) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let addr = SocketAddr::new(host, port);
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // Accept IPv4 too on `::`.
        let _ = socket.set_only_v6(false);
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// What every connection task shares.
pub struct Server {
    inputs: Sender<Input>,
    stop: Receiver<()>,
    ex: Arc<Executor<'static>>,
    open: AtomicUsize,
    in_flight: AtomicUsize,
    admission: Arc<Admission>,
}

/// Decrements a counter when dropped.
struct Slot<'a>(&'a AtomicUsize);

/// The core's answer to one request, as the connection task needs it.
struct CoreReply {
    status: u16,
    body: Vec<u8>,
    /// See [`proto_core::Reply::peer`].
    peer: bool,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn take_slot(counter: &AtomicUsize, max: usize) -> Option<Slot<'_>> {
    let prev = counter.fetch_add(1, Ordering::AcqRel);
    let slot = Slot(counter);
    (prev < max).then_some(slot)
}

/// The rate floor of one phase of a request (its head, then its body): after `bytes` of the phase have
/// arrived, the next must come by `start + RATE_GRACE_MS + bytes / per_s`, and everything by the whole
/// request's `deadline`. Each byte that arrives moves the floor's deadline on, so no timer is re-armed
/// for a fast sender.
#[derive(Clone, Copy, Debug)]
struct Pace {
    start: Instant,
    per_s: u64,
    deadline: Instant,
}

impl Pace {
    /// When the next byte must have arrived, `bytes` of the phase having arrived so far.
    fn next_by(&self, bytes: usize) -> Instant {
        let earned_ms = (bytes as u64).saturating_mul(1_000) / self.per_s.max(1);
        let allowed = Duration::from_millis(RATE_GRACE_MS.saturating_add(earned_ms));
        self.start.checked_add(allowed).map_or(self.deadline, |by| by.min(self.deadline))
    }
}

async fn within<T>(deadline: Instant, fut: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    smol::future::or(fut, async {
        Timer::at(deadline).await;
        Err(io::ErrorKind::TimedOut.into())
    })
    .await
}

impl Server {
    /// A server feeding `inputs`, stopping when `stop` closes, with the default per-source limits.
    pub fn new(inputs: Sender<Input>, stop: Receiver<()>, ex: Arc<Executor<'static>>) -> Arc<Self> {
        Self::with_admission(inputs, stop, ex, Admission::new(Limits::default()))
    }

    /// A server whose per-source accounting is `admission` (tests pass smaller limits and read it).
    pub fn with_admission(
        inputs: Sender<Input>,
        stop: Receiver<()>,
        ex: Arc<Executor<'static>>,
        admission: Arc<Admission>,
    ) -> Arc<Self> {
        let (open, in_flight) = (AtomicUsize::new(0), AtomicUsize::new(0));
        Arc::new(Self { inputs, stop, ex, open, in_flight, admission })
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Accepts until stopped. Accept errors never end the loop.
    pub async fn serve(self: Arc<Self>, listener: Async<TcpListener>) {
        loop {
            let accepted = smol::future::or(async { Some(listener.accept().await) }, async {
                let _ = self.stop.recv().await;
                None
            })
            .await;
            let Some(accepted) = accepted else { return };
            match accepted {
                Ok((stream, peer)) => self.clone().admit(stream, peer),
                Err(e) => {
                    eprintln!("darkmatter: accept failed: {e}");
                    Timer::after(Duration::from_millis(ACCEPT_BACKOFF_MS)).await;
                }
            }
        }
    }

    fn admit(self: Arc<Self>, stream: Async<TcpStream>, peer: SocketAddr) {
        let _ = stream.get_ref().set_nodelay(true);
        let me = self.clone();
        self.ex
            .spawn(async move {
                let Some(_slot) = take_slot(&me.open, CONNECTIONS_MAX) else {
                    // Over the cap: one refusal, then close. (The slot counted above is released.)
                    overloaded(stream, 503, "Too many connections; try again shortly").await;
                    return;
                };
                let ticket = match me.admission.admit(peer.ip(), Instant::now()) {
                    Ok(ticket) => ticket,
                    // Over its source's share: refused like the global cap, without lingering, so
                    // refused connections cannot hold the server's slots either.
                    Err(refusal) => return overloaded(stream, refusal.status(), &refusal.to_string()).await,
                };
                me.connection(Conn { stream, buf: Vec::new() }, peer.ip().to_canonical(), &ticket).await;
            })
            .detach();
    }

    async fn connection(&self, mut conn: Conn, source: IpAddr, ticket: &ConnectionTicket) {
        for served in 0..REQUESTS_PER_CONNECTION_MAX {
            if self.stop.is_closed() {
                return;
            }
            // Wait (idle) for the first byte of the next request, unless it is already buffered.
            if conn.buf.is_empty() {
                let idle = Instant::now() + Duration::from_millis(IDLE_MS);
                let got = smol::future::or(conn.fill(idle), async {
                    let _ = self.stop.recv().await;
                    Ok(0)
                })
                .await;
                if !matches!(got, Ok(n) if n > 0) {
                    return;
                }
            }
            // Charged on its first byte, before the head is parsed: junk costs its own source's
            // budget and is refused without reaching the core.
            let first_byte = Instant::now();
            if let Err(refusal) = ticket.spend_request(first_byte) {
                let _ = self.refuse(&mut conn, refusal.status(), &refusal.to_string()).await;
                return;
            }
            let deadline = first_byte + Duration::from_millis(REQUEST_READ_MS);
            let last = served + 1 == REQUESTS_PER_CONNECTION_MAX;
            match self.exchange(&mut conn, source, ticket, deadline, last).await {
                Ok(true) => continue,
                Ok(false) | Err(_) => return,
            }
        }
    }

    /// One request and its response. `Ok(true)` = the connection may carry another request.
    async fn exchange(
        &self,
        conn: &mut Conn,
        source: IpAddr,
        ticket: &ConnectionTicket,
        deadline: Instant,
        last: bool,
    ) -> io::Result<bool> {
        let pace = Pace { start: Instant::now(), per_s: HEAD_BYTES_PER_S_MIN, deadline };
        let head = match conn.read_head(pace).await {
            Ok(Some(head)) => head,
            Ok(None) => return Ok(false),
            Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::TimedOut => {
                return self.refuse(conn, 408, "Request not received in time").await;
            }
            Err(ReadError::Io(e)) => return Err(e),
            Err(ReadError::Head(e)) => return self.refuse(conn, e.status(), &e.to_string()).await,
        };
        if head.content_length > BODY_BYTES_MAX as u64 {
            return self.refuse(conn, 413, &format!("Body exceeds {BODY_BYTES_MAX} bytes")).await;
        }
        let ours = head.path == "/.well-known/darkmatter.json" || head.path.starts_with("/__darkmatter__/");
        if !ours {
            return self.answer(conn, &head, 404, &proto_core::wire::error_body("Not Found"), last).await;
        }
        let body = match self.body(conn, &head, ticket, deadline).await? {
            Ok(body) => body,
            Err(keep) => return Ok(keep),
        };
        // Taken only now that the request is whole: a trickling body never holds a slot toward the core.
        let Some(_in_flight) = take_slot(&self.in_flight, IN_FLIGHT_MAX) else {
            let busy = proto_core::wire::error_body("Server busy; try again shortly");
            return self.respond(conn, &head, 503, &busy, last).await;
        };
        let method = match head.method.as_str() {
            "GET" => Method::Get,
            "POST" => Method::Post,
            _ => Method::Other,
        };
        let reply = self.ask_core(method, head.path.clone(), head.query.clone(), body, source).await;
        if reply.peer {
            // A connected peer's signed request: its own per-peer limits in the core bound it, so the
            // charge taken on its first byte is given back (a busy connection is not its address).
            ticket.refund_request(Instant::now());
        }
        self.respond(conn, &head, reply.status, &reply.body, last).await
    }

    /// The body of a request whose head was accepted: `Ok(Ok(body))` once read whole, `Ok(Err(keep))`
    /// when it was refused (and answered) instead. Counts against its source while it is read.
    async fn body(
        &self,
        conn: &mut Conn,
        head: &Head,
        ticket: &ConnectionTicket,
        deadline: Instant,
    ) -> io::Result<Result<Vec<u8>, bool>> {
        let len = head.content_length as usize;
        if len == 0 {
            return Ok(Ok(Vec::new()));
        }
        let _reading = match ticket.begin_body() {
            Ok(reading) => reading,
            Err(refusal) => return self.refuse(conn, refusal.status(), &refusal.to_string()).await.map(Err),
        };
        if head.expect_continue {
            conn.write(b"HTTP/1.1 100 Continue\r\n\r\n", deadline).await?;
        }
        let pace = Pace { start: Instant::now(), per_s: BODY_BYTES_PER_S_MIN, deadline };
        match conn.read_body(len, pace).await {
            Ok(body) => Ok(Ok(body)),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                self.refuse(conn, 408, "Request body not received in time").await.map(Err)
            }
            Err(e) => Err(e),
        }
    }

    /// An answer to a request read whole (body included), so the connection is in a clean state for
    /// the next one; but a HEAD client does not read the (JSON refusal) body we send, so that
    /// connection must end.
    async fn respond(&self, conn: &mut Conn, head: &Head, status: u16, body: &[u8], last: bool) -> io::Result<bool> {
        let close = head.close || last || self.stop.is_closed() || head.method == "HEAD";
        conn.write(&http::response_bytes(status, body, close), Instant::now() + Duration::from_millis(WRITE_MS))
            .await?;
        Ok(!close)
    }

    async fn ask_core(&self, method: Method, path: String, query: String, body: Vec<u8>, source: IpAddr) -> CoreReply {
        let unavailable = |text: &str| CoreReply { status: 503, body: proto_core::wire::error_body(text), peer: false };
        let (tx, rx) = async_channel::bounded(1);
        let input = Input::Request { method, path, query, body, source: Some(source), reply: tx };
        let deadline = Instant::now() + Duration::from_millis(REPLY_WAIT_MS);
        let sent = within(deadline, async {
            self.inputs.send(input).await.map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
        })
        .await;
        if sent.is_err() {
            return unavailable("Node is shutting down");
        }
        match within(deadline, async { rx.recv().await.map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe)) }).await
        {
            Ok(reply) => CoreReply { status: reply.status, body: reply.body, peer: reply.peer },
            Err(e) if e.kind() == io::ErrorKind::TimedOut => unavailable("Node did not answer in time"),
            Err(_) => unavailable("Node is shutting down"),
        }
    }

    /// A refusal after which the connection closes (the rest of the request stays unread).
    async fn refuse(&self, conn: &mut Conn, status: u16, text: &str) -> io::Result<bool> {
        conn.write(&http::error_response(status, text, true), Instant::now() + Duration::from_millis(WRITE_MS)).await?;
        conn.linger().await;
        Ok(false)
    }

    /// An answer given without reading the body: keep the connection only if there is no body.
    async fn answer(&self, conn: &mut Conn, head: &Head, status: u16, body: &[u8], last: bool) -> io::Result<bool> {
        let close = head.close || head.content_length > 0 || last || self.stop.is_closed();
        conn.write(&http::response_bytes(status, body, close), Instant::now() + Duration::from_millis(WRITE_MS))
            .await?;
        if head.content_length > 0 {
            conn.linger().await;
        }
        Ok(!close)
    }
}

/// Refuses a connection that was not admitted: one refusal, then close, within [`OVERLOAD_WRITE_MS`].
async fn overloaded(stream: Async<TcpStream>, status: u16, text: &str) {
    let mut conn = Conn { stream, buf: Vec::new() };
    let deadline = Instant::now() + Duration::from_millis(OVERLOAD_WRITE_MS);
    let _ = conn.write(&http::error_response(status, text, true), deadline).await;
}

enum ReadError {
    Io(io::Error),
    Head(HeadError),
}

/// A connection with the bytes read but not yet consumed.
struct Conn {
    stream: Async<TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    /// Reads what is available (at most one chunk) before `deadline`. `Ok(0)` = end of stream.
    async fn fill(&mut self, deadline: Instant) -> io::Result<usize> {
        let mut chunk = [0u8; READ_CHUNK_BYTES];
        let n = within(deadline, self.stream.read(&mut chunk)).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// The next request head; `Ok(None)` when the peer closed cleanly before sending one.
    ///
    /// The head is parsed again from its start as bytes arrive, but only when they bring a line end
    /// or pass the byte cap: nothing else can complete a head or add a field, so a peer trickling
    /// bytes costs at most one parse per line, of at most [`http::HEADER_BYTES_MAX`] bytes.
    /// Bytes must keep arriving at `pace`'s floor.
    async fn read_head(&mut self, pace: Pace) -> Result<Option<Head>, ReadError> {
        let mut fresh_from = 0;
        loop {
            let fresh = &self.buf[fresh_from..];
            if fresh.contains(&b'\n') || self.buf.len() > http::HEADER_BYTES_MAX {
                if let Some((head, end)) = http::parse_head(&self.buf).map_err(ReadError::Head)? {
                    self.buf.drain(..end);
                    return Ok(Some(head));
                }
            }
            fresh_from = self.buf.len();
            match self.fill(pace.next_by(self.buf.len())).await {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }

    /// Exactly `len` body bytes (the caller has checked `len` against the cap), arriving at `pace`'s
    /// floor.
    async fn read_body(&mut self, len: usize, pace: Pace) -> io::Result<Vec<u8>> {
        while self.buf.len() < len {
            if self.fill(pace.next_by(self.buf.len())).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        let rest = self.buf.split_off(len);
        Ok(std::mem::replace(&mut self.buf, rest))
    }

    /// Half-closes, then reads and discards input for at most [`LINGER_MS`] / [`LINGER_BYTES_MAX`].
    async fn linger(&mut self) {
        let _ = self.stream.get_ref().shutdown(std::net::Shutdown::Write);
        let deadline = Instant::now() + Duration::from_millis(LINGER_MS);
        let mut discarded = 0usize;
        let mut chunk = [0u8; READ_CHUNK_BYTES];
        while discarded < LINGER_BYTES_MAX {
            match within(deadline, self.stream.read(&mut chunk)).await {
                Ok(n) if n > 0 => discarded += n,
                _ => return,
            }
        }
    }

    async fn write(&mut self, bytes: &[u8], deadline: Instant) -> io::Result<()> {
        within(deadline, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
    }
}
