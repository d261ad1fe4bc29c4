//! Attach mode: a second `darkmatter` of the same project uses the running node instead of
//! starting another one that would fight it for the port and the state file.
//!
//! The first process takes an exclusive `flock` on `node.lock` in the project's state directory and
//! serves its tools on a Unix socket created with mode 0600 (only the same user can open it; on
//! Linux every accepted peer's uid is checked too). A process that finds the lock taken connects to
//! that socket and forwards every tool call there; node events come back on the same connection.
//!
//! The protocol is one JSON object per line:
//! request `{"id": n, "tool": "...", "args": {...}}`, answer `{"id": n, "output": {"value": .., "is_error": ..}}`,
//! event `{"notice": {"level": "...", "data": {...}}}`.

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

use serde_json::{json, Value};
use smol::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use smol::Async;

use crate::bridge::{Backend, CALLS_IN_FLIGHT_MAX};
use crate::events::{Hub, Notice, SUBSCRIBERS_MAX};
use crate::tools::{Args, ToolOutput};

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
    /// Paths for the state directory `dir` (created 0700 if missing). When the socket path would be
    /// too long for the kernel, the socket goes to a private per-user directory under the temp dir,
    /// named by a hash of `dir`.
    pub fn for_dir(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
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

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn make_private_dir(dir: &Path) -> io::Result<()> {
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
    let notices = backend.subscribe().map(|notices| {
        let tx = tx.clone();
        ex.spawn(async move {
            while let Ok(n) = notices.recv().await {
                let _ = tx.try_send(json!({"notice": {"level": n.level, "data": n.data}}).to_string());
            }
        })
    });
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut reader = BufReader::new(&*stream);
    let mut buf = Vec::new();
    while let Ok(true) = read_line(&mut reader, &mut buf).await {
        let Ok(req) = serde_json::from_slice::<Value>(&buf) else { break };
        let (Some(id), Some(tool)) = (req["id"].as_u64(), req["tool"].as_str()) else { break };
        let args: Args = match &req["args"] {
            Value::Object(m) => m.clone(),
            _ => Args::new(),
        };
        if in_flight.fetch_add(1, Ordering::SeqCst) >= CALLS_IN_FLIGHT_MAX {
            in_flight.fetch_sub(1, Ordering::SeqCst);
            let out = ToolOutput::error("Too many tool calls in flight; retry when some have finished");
            let _ = tx.send(json!({"id": id, "output": out}).to_string()).await;
            continue;
        }
        let (backend, tx, tool, in_flight) = (backend.clone(), tx.clone(), tool.to_owned(), in_flight.clone());
        ex.spawn(async move {
            let out = backend.call(&tool, args).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            let _ = tx.send(json!({"id": id, "output": out}).to_string()).await;
        })
        .detach();
    }
    drop(notices);
    drop(tx);
    let _ = stream.get_ref().shutdown(std::net::Shutdown::Both);
    writer.cancel().await;
}

/// The attached side: forwards tool calls to the process that runs the node.
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, async_channel::Sender<ToolOutput>>>,
    lines: async_channel::Sender<String>,
    hub: Hub,
    closed: AtomicBool,
}

/// What an attached session answers once the node's process has gone.
pub const NODE_GONE: &str =
    "The darkmatter process that runs this project's node has stopped; restart this MCP server to start the node here.";

impl Client {
    /// Connects to the socket at `path`, waiting up to [`CONNECT_WAIT_MS`] for it to appear.
    pub async fn connect(path: &Path, ex: &smol::Executor<'static>) -> io::Result<Client> {
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
        let inner = Arc::new(ClientInner {
            next_id: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            lines: tx,
            hub: Hub::new(),
            closed: AtomicBool::new(false),
        });
        ex.spawn(write_lines(stream.clone(), rx)).detach();
        ex.spawn(read_answers(stream, inner.clone())).detach();
        Ok(Client { inner })
    }

    /// The events the node's process forwards.
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// Runs a tool in the node's process.
    pub async fn call(&self, tool: &str, args: Args) -> ToolOutput {
        if self.inner.closed.load(Ordering::SeqCst) {
            return ToolOutput::error(NODE_GONE);
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = async_channel::bounded(1);
        self.inner.pending.lock().expect("pending lock").insert(id, tx);
        let line = json!({"id": id, "tool": tool, "args": Value::Object(args)}).to_string();
        if self.inner.lines.send(line).await.is_err() {
            self.inner.pending.lock().expect("pending lock").remove(&id);
            return ToolOutput::error(NODE_GONE);
        }
        rx.recv().await.unwrap_or_else(|_| ToolOutput::error(NODE_GONE))
    }
}

async fn read_answers(stream: Arc<Async<UnixStream>>, inner: Arc<ClientInner>) {
    let mut reader = BufReader::new(&*stream);
    let mut buf = Vec::new();
    while let Ok(true) = read_line(&mut reader, &mut buf).await {
        let Ok(v) = serde_json::from_slice::<Value>(&buf) else { break };
        if let Some(id) = v["id"].as_u64() {
            let out: ToolOutput = serde_json::from_value(v["output"].clone())
                .unwrap_or_else(|_| ToolOutput::error("Malformed answer from the node's process"));
            let waiter = inner.pending.lock().expect("pending lock").remove(&id);
            if let Some(w) = waiter {
                let _ = w.try_send(out);
            }
        } else if let Some(n) = v.get("notice") {
            let level = match n["level"].as_str() {
                Some("notice") => "notice",
                Some("warning") => "warning",
                _ => "info",
            };
            inner.hub.publish(&Notice { level, data: n["data"].clone() });
        }
    }
    inner.closed.store(true, Ordering::SeqCst);
    inner.lines.close();
    // Dropping the senders fails every outstanding call with NODE_GONE.
    inner.pending.lock().expect("pending lock").clear();
}
