//! Attach mode: a second `darkmatter` of the same project uses the running node instead of
//! starting another one that would fight it for the port and the state file.
//!
//! The first process takes an exclusive `flock` on `node.lock` in the project's state directory and
//! serves its node on a Unix socket created with mode 0600 (only the same user can open it; on
//! Linux every accepted peer's uid is checked too). A process that finds the lock taken connects to
//! that socket: its [`Client`] is a [`Mesh`] like the node handle, so its tools run (and check
//! their arguments) in its own process and only node commands cross; node events come back on the
//! same connection.
//!
//! The protocol is `darkmatter-node`'s control protocol ([`runtime_smol::control`]), one JSON
//! object per line: request `{"id": n, "cmd": "...", ...}`, answer `{"id": n, "ok": .., "result"|"error": ..,
//! "kind"?: ..}`, event `{"event": "...", ...}`. `announce` and `shutdown` are refused: the node
//! belongs to the first process.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto_core::{Command, CommandError, Event};
use runtime_smol::control;
use serde_json::{json, Value};
use smol::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use smol::Async;

use crate::bridge::Backend;
use crate::events::{SESSION_EVENTS_MAX, SUBSCRIBERS_MAX};
use crate::mesh::{BoxFut, Mesh};
use crate::server::CALLS_IN_FLIGHT_MAX;

/// Longest line either side accepts: a full message (65,536 characters, up to 4 bytes each, JSON
/// escaping at most doubles that) with room to spare.
pub const LINE_BYTES_MAX: usize = 1 << 20;

/// Lines queued for one connection's writer at most.
pub const LINES_QUEUED_MAX: usize = 256;

/// How long an attaching process waits for the first process to open its socket.
pub const CONNECT_WAIT_MS: u64 = 10_000;

/// Longest socket path the kernel takes (`sun_path` is 108 bytes on Linux, 104 on macOS).
const SOCKET_PATH_BYTES_MAX: usize = 100;

/// Where the lock and the socket of a project live.
#[derive(Clone, Debug)]
pub struct Paths {
    /// The lock file held by the process that runs the node.
    pub lock: PathBuf,
    /// The socket it serves.
    pub socket: PathBuf,
}

impl Paths {
    /// Paths for the state directory `dir` (created 0700 if missing, made private if it is not). When the socket path would be
    /// too long for the kernel, the socket goes to a private per-user directory under the temp dir,
    /// named by a hash of `dir`.
    pub fn for_dir(dir: &Path) -> io::Result<Self> {
        runtime_smol::storage::ensure_dir(dir).map_err(io::Error::other)?;
        let socket = dir.join("node.sock");
        let socket = if socket.as_os_str().len() <= SOCKET_PATH_BYTES_MAX {
            socket
        } else {
            let private = std::env::temp_dir().join(format!("darkmatter-{}", euid()));
            make_private_dir(&private)?;
            private.join(format!("{:016x}.sock", fnv1a(dir.as_os_str().as_encoded_bytes())))
        };
        Ok(Self { lock: dir.join("node.lock"), socket })
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

pub(crate) fn make_private_dir(dir: &Path) -> io::Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => fs::set_permissions(dir, fs::Permissions::from_mode(0o700)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            use std::os::unix::fs::MetadataExt;
            let m = fs::symlink_metadata(dir)?;
            if !m.is_dir() || m.uid() != euid() || m.mode() & 0o077 != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("{} is not a private directory of this user", dir.display()),
                ));
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Which process this is for its project.
pub enum Role {
    /// It holds the lock: it runs the node. Dropping the guard releases the lock.
    Primary(LockGuard),
    /// Another process runs the node: attach to it.
    Attach,
}

/// The held lock.
pub struct LockGuard {
    _file: File,
}

/// Takes the project's lock if free.
pub fn claim(lock: &Path) -> io::Result<Role> {
    let file = OpenOptions::new().create(true).truncate(false).read(true).write(true).mode(0o600).open(lock)?;
    // SAFETY: flock on a file descriptor we own; no memory is passed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(Role::Primary(LockGuard { _file: file }));
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(Role::Attach)
    } else {
        Err(e)
    }
}

/// Binds the socket with mode 0600, replacing a stale one (the caller holds the lock, so no live
/// process serves it).
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // The umask makes the socket 0600 from the moment it exists (no window before the chmod).
    // SAFETY: umask only swaps the process's file mode mask.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let listener = bound?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// True when the connected peer runs as our user (checked where the OS tells us).
fn same_user(stream: &UnixStream) -> bool {
    #[cfg(target_os = "linux")]
    {
        let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: `cred` and `len` are valid for writes of the sizes given.
        let rc = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&mut cred as *mut libc::ucred).cast(),
                &mut len,
            )
        };
        rc == 0 && cred.uid == euid()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = stream;
        true // the socket's 0600 mode already keeps other users out
    }
}

/// Reads one line of at most [`LINE_BYTES_MAX`] bytes into `buf`; `Ok(false)` at end of stream.
async fn read_line<R: smol::io::AsyncBufRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> io::Result<bool> {
    buf.clear();
    let n = (&mut *r).take(LINE_BYTES_MAX as u64 + 1).read_until(b'\n', buf).await?;
    if n == 0 {
        return Ok(false);
    }
    if buf.last() != Some(&b'\n') && buf.len() > LINE_BYTES_MAX {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
    }
    Ok(true)
}

/// Writes every queued line until the queue closes or the peer goes away.
async fn write_lines(stream: Arc<Async<UnixStream>>, lines: async_channel::Receiver<String>) {
    let mut w = &*stream;
    while let Ok(mut line) = lines.recv().await {
        line.push('\n');
        if w.write_all(line.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = stream.get_ref().shutdown(std::net::Shutdown::Both);
}

/// Serves attached sessions on `listener` with `backend` until the executor stops. `sessions`
/// counts the connections currently open.
pub async fn serve(
    listener: UnixListener,
    backend: Backend,
    ex: Arc<smol::Executor<'static>>,
    sessions: Arc<AtomicUsize>,
) {
    let listener = match Async::new(listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("darkmatter: cannot serve the attach socket: {e}");
            return;
        }
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            smol::Timer::after(Duration::from_millis(100)).await;
            continue;
        };
        if !same_user(stream.get_ref()) || sessions.load(Ordering::SeqCst) >= SUBSCRIBERS_MAX {
            continue; // dropping closes it
        }
        sessions.fetch_add(1, Ordering::SeqCst);
        let (backend, ex2, sessions) = (backend.clone(), ex.clone(), sessions.clone());
        ex.spawn(async move {
            session(Arc::new(stream), backend, ex2).await;
            sessions.fetch_sub(1, Ordering::SeqCst);
        })
        .detach();
    }
}

async fn session(stream: Arc<Async<UnixStream>>, backend: Backend, ex: Arc<smol::Executor<'static>>) {
    let (tx, rx) = async_channel::bounded::<String>(LINES_QUEUED_MAX);
    let writer = ex.spawn(write_lines(stream.clone(), rx));
    let events = backend.subscribe().map(|events| {
        let tx = tx.clone();
        ex.spawn(async move {
            while let Ok(e) = events.recv().await {
                let _ = tx.try_send(serde_json::to_string(&e).expect("an event is plain data"));
            }
        })
    });
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut reader = BufReader::new(&*stream);
    let mut buf = Vec::new();
    while let Ok(true) = read_line(&mut reader, &mut buf).await {
        let Ok(line) = serde_json::from_slice::<Value>(&buf) else { break };
        let id = line.get("id").cloned();
        let request = match control::parse(&line) {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(control::answer(id.as_ref(), Err(e)).to_string()).await;
                continue;
            }
        };
        if in_flight.fetch_add(1, Ordering::SeqCst) >= CALLS_IN_FLIGHT_MAX {
            in_flight.fetch_sub(1, Ordering::SeqCst);
            let busy = CommandError::Limited("Too many tool calls in flight; retry when some have finished".to_owned());
            let _ = tx.send(control::answer_node(id.as_ref(), Err(busy)).to_string()).await;
            continue;
        }
        let (mesh, tx, in_flight) = (backend.mesh.clone(), tx.clone(), in_flight.clone());
        ex.spawn(async move {
            let result = control::run(&*mesh, request).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            let _ = tx.send(control::answer_node(id.as_ref(), result).to_string()).await;
        })
        .detach();
    }
    drop(events);
    drop(tx);
    let _ = stream.get_ref().shutdown(std::net::Shutdown::Both);
    writer.cancel().await;
}

/// Longest first line on a spawned agent's socket: `{"token": "<32 hex>"}` with room to spare.
const HELLO_BYTES_MAX: usize = 256;

/// How long a connection to a spawned agent's socket may take to present its token.
pub const TOKEN_WAIT_MS: u64 = 5_000;

/// A spawned agent's own attach socket (R-C1, R-C7): served while the agent lives, to connections
/// whose first line is `{"token": "<its token>"}`, with `backend` (the restricted node). Dropping it
/// removes the socket and closes every session on it: the token dies with the child.
pub struct ChildSocket {
    path: PathBuf,
    streams: Arc<Mutex<Vec<Arc<Async<UnixStream>>>>>,
    _task: smol::Task<()>,
}

impl ChildSocket {
    /// Binds `path` (0600) and serves it on `ex`.
    pub fn open(path: &Path, token: String, backend: Backend, ex: &Arc<smol::Executor<'static>>) -> io::Result<Self> {
        let listener = Async::new(bind(path)?)?;
        let streams: Arc<Mutex<Vec<Arc<Async<UnixStream>>>>> = Arc::default();
        let (open, ex2) = (streams.clone(), ex.clone());
        let task = ex.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                if !same_user(stream.get_ref()) || open.lock().expect("streams lock").len() >= SUBSCRIBERS_MAX {
                    continue;
                }
                let (stream, token, backend, ex3) = (Arc::new(stream), token.clone(), backend.clone(), ex2.clone());
                open.lock().expect("streams lock").push(stream.clone());
                ex2.spawn(async move {
                    if presents(&stream, &token).await {
                        session(stream, backend, ex3).await;
                    } else {
                        let _ = stream.get_ref().shutdown(std::net::Shutdown::Both);
                    }
                })
                .detach();
            }
        });
        Ok(Self { path: path.to_owned(), streams, _task: task })
    }
}

impl Drop for ChildSocket {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
        for s in self.streams.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            let _ = s.get_ref().shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Whether the connection's first line presents `token`, within [`TOKEN_WAIT_MS`]. Read a byte at
/// a time so that nothing after the line is taken from the session.
async fn presents(stream: &Async<UnixStream>, token: &str) -> bool {
    let read = async {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        let mut r = stream;
        while line.len() < HELLO_BYTES_MAX {
            match r.read(&mut byte).await {
                Ok(1) if byte[0] == b'\n' => return Some(line),
                Ok(1) => line.push(byte[0]),
                _ => return None,
            }
        }
        None
    };
    let timeout = async {
        smol::Timer::after(Duration::from_millis(TOKEN_WAIT_MS)).await;
        None
    };
    let Some(line) = smol::future::or(read, timeout).await else { return false };
    let given = serde_json::from_slice::<Value>(&line).ok().and_then(|v| v["token"].as_str().map(str::to_owned));
    given.is_some_and(|g| same_bytes(g.as_bytes(), token.as_bytes()))
}

/// Compares in time independent of where the inputs differ.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The attached side: a [`Mesh`] whose commands run in the process that owns the node.
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, async_channel::Sender<Result<Value, CommandError>>>>,
    lines: async_channel::Sender<String>,
    events: async_channel::Receiver<Event>,
    closed: AtomicBool,
}

/// What an attached session answers once the node's process has gone.
pub const NODE_GONE: &str =
    "The darkmatter process that runs this project's node has stopped; restart this MCP server to start the node here.";

fn node_gone() -> CommandError {
    CommandError::Limited(NODE_GONE.to_owned())
}

impl Client {
    /// Connects to the socket at `path`, waiting up to [`CONNECT_WAIT_MS`] for it to appear.
    pub async fn connect(path: &Path, ex: &smol::Executor<'static>) -> io::Result<Client> {
        Self::connect_with(path, None, ex).await
    }

    /// [`Client::connect`] to a spawned agent's socket, presenting `token` first.
    pub async fn connect_with(path: &Path, token: Option<&str>, ex: &smol::Executor<'static>) -> io::Result<Client> {
        let mut waited_ms = 0;
        let stream = loop {
            match Async::<UnixStream>::connect(path).await {
                Ok(s) => break s,
                Err(e) if waited_ms >= CONNECT_WAIT_MS => return Err(e),
                Err(_) => {
                    smol::Timer::after(Duration::from_millis(50)).await;
                    waited_ms += 50;
                }
            }
        };
        let stream = Arc::new(stream);
        let (tx, rx) = async_channel::bounded(LINES_QUEUED_MAX);
        if let Some(token) = token {
            // The first line out, before any command can be queued.
            let _ = tx.try_send(json!({ "token": token }).to_string());
        }
        let (events_tx, events_rx) = async_channel::bounded(SESSION_EVENTS_MAX);
        let inner = Arc::new(ClientInner {
            next_id: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            lines: tx,
            events: events_rx,
            closed: AtomicBool::new(false),
        });
        ex.spawn(write_lines(stream.clone(), rx)).detach();
        ex.spawn(read_answers(stream, inner.clone(), events_tx)).detach();
        Ok(Client { inner })
    }

    /// Sends one control line and waits for its answer.
    async fn request(&self, mut line: Value) -> Result<Value, CommandError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(node_gone());
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::SeqCst);
        line["id"] = json!(id);
        let (tx, rx) = async_channel::bounded(1);
        self.inner.pending.lock().expect("pending lock").insert(id, tx);
        if self.inner.lines.send(line.to_string()).await.is_err() {
            self.inner.pending.lock().expect("pending lock").remove(&id);
            return Err(node_gone());
        }
        rx.recv().await.unwrap_or_else(|_| Err(node_gone()))
    }
}

impl Mesh for Client {
    fn command(&self, command: Command) -> BoxFut<'_, Result<Value, CommandError>> {
        Box::pin(async move {
            match control::line(&command) {
                Some(line) => self.request(line).await,
                None => Err(CommandError::InvalidArgument(
                    "This command is not available to an attached session".to_owned(),
                )),
            }
        })
    }

    fn discover_local(&self) -> BoxFut<'_, Result<Value, CommandError>> {
        Box::pin(self.request(json!({"cmd": "discover_local"})))
    }

    fn discover_domain(&self, domain: String) -> BoxFut<'_, Result<Value, CommandError>> {
        Box::pin(self.request(json!({"cmd": "discover_domain", "domain": domain})))
    }

    /// The wallet lives in the process that owns the node: the call crosses as a `wallet` line.
    fn wallet(&self, call: runtime_smol::solana_wallet::WalletCall) -> BoxFut<'_, Result<Value, CommandError>> {
        let mut line = serde_json::to_value(call).unwrap_or_default();
        line["cmd"] = json!("wallet");
        Box::pin(self.request(line))
    }

    /// The spawner lives in the process that owns the node: the switch crosses as a line.
    fn sandbox(&self, on: bool) -> BoxFut<'_, Result<Value, CommandError>> {
        Box::pin(self.request(json!({"cmd": "set_sandbox", "on": on})))
    }

    fn events(&self) -> async_channel::Receiver<Event> {
        self.inner.events.clone()
    }

    /// The node belongs to the other process: an attached session leaving only closes its line.
    fn shutdown(&self) -> BoxFut<'_, ()> {
        self.inner.lines.close();
        Box::pin(async {})
    }
}

/// Hands each answer to its caller and each event to the client's stream, until the socket closes.
async fn read_answers(stream: Arc<Async<UnixStream>>, inner: Arc<ClientInner>, events: async_channel::Sender<Event>) {
    let mut reader = BufReader::new(&*stream);
    let mut buf = Vec::new();
    while let Ok(true) = read_line(&mut reader, &mut buf).await {
        let Ok(v) = serde_json::from_slice::<Value>(&buf) else { break };
        if let Some(id) = v["id"].as_u64() {
            let waiter = inner.pending.lock().expect("pending lock").remove(&id);
            if let Some(w) = waiter {
                let _ = w.try_send(control::read_answer(&v));
            }
        } else if let Ok(e) = serde_json::from_value::<Event>(v) {
            // A full stream drops the event, as the hub does for a slow session.
            let _ = events.try_send(e);
        }
    }
    inner.closed.store(true, Ordering::SeqCst);
    inner.lines.close();
    events.close();
    // Dropping the senders fails every outstanding call with NODE_GONE.
    inner.pending.lock().expect("pending lock").clear();
}
