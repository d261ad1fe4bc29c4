//! Wiring: one MCP session (rmcp on its own thread) over a [`Backend`], and the two ways a
//! process runs: owning the node, or attached to the process that does. Either way the session's
//! tools call a [`Mesh`]: the node handle, or the attach client.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::attach::{self, Client, Paths, Role};
use crate::bridge::Backend;
use crate::events::Hub;
use crate::mesh::Mesh;
use crate::server::DarkMatter;

/// Runs the MCP server over the streams `io` makes, on a new thread with a current-thread tokio
/// runtime. `done` is closed when the session ends (the client closed its end).
pub fn spawn_mcp<R, W>(
    server: DarkMatter,
    io: impl FnOnce() -> (R, W) + Send + 'static,
    done: async_channel::Sender<()>,
) -> JoinHandle<()>
where
    R: tokio::io::AsyncRead + Send + Unpin + 'static,
    W: tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    std::thread::Builder::new()
        .name("mcp".to_owned())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread tokio runtime");
            rt.block_on(async move {
                let (r, w) = io();
                match rmcp::serve_server(server, (r, w)).await {
                    Ok(running) => {
                        let _ = running.waiting().await;
                    }
                    Err(e) => eprintln!("darkmatter: MCP session ended during initialization: {e}"),
                }
            });
            drop(rt);
            done.close();
        })
        .expect("spawn the MCP thread")
}

/// Serves one MCP session over the streams `io` makes until the client goes away. `_ex` is the
/// node side's executor; the session needs none (every [`Mesh`] answers over channels), but callers
/// run it there.
pub async fn session<R, W>(
    backend: Backend,
    _ex: Arc<smol::Executor<'static>>,
    io: impl FnOnce() -> (R, W) + Send + 'static,
) where
    R: tokio::io::AsyncRead + Send + Unpin + 'static,
    W: tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let events = backend.subscribe().unwrap_or_else(|| async_channel::bounded(1).1);
    let (done_tx, done_rx) = async_channel::bounded::<()>(1);
    let thread = spawn_mcp(DarkMatter::new(backend.mesh, events), io, done_tx);
    let _ = done_rx.recv().await;
    let _ = thread.join();
}

/// A node shared by the stdio session and the attached ones.
pub struct Primary {
    /// What sessions call: the node and its events.
    pub backend: Backend,
    /// Attached sessions open now.
    pub sessions: Arc<AtomicUsize>,
}

/// Starts serving `mesh`: pumps its events and opens the attach socket at `paths.socket`.
pub fn primary(mesh: Arc<dyn Mesh>, paths: &Paths, ex: &Arc<smol::Executor<'static>>) -> Primary {
    let hub = Hub::new();
    ex.spawn(hub.clone().pump(mesh.events())).detach();
    let backend = Backend::local(mesh, hub);
    let sessions = Arc::new(AtomicUsize::new(0));
    match attach::bind(&paths.socket) {
        Ok(listener) => ex.spawn(attach::serve(listener, backend.clone(), ex.clone(), sessions.clone())).detach(),
        Err(e) => eprintln!(
            "darkmatter: no attach socket at {} ({e}); a second session of this project cannot share the node",
            paths.socket.display()
        ),
    }
    Primary { backend, sessions }
}

impl Primary {
    /// Waits for attached sessions to leave, then stops the node and removes the socket.
    pub async fn finish(self, paths: &Paths) {
        while self.sessions.load(Ordering::SeqCst) > 0 {
            smol::Timer::after(Duration::from_millis(200)).await;
        }
        self.backend.mesh.shutdown().await;
        let _ = std::fs::remove_file(&paths.socket);
    }
}

/// The whole process: claims the project, then either runs the node and serves stdio (and the
/// attach socket), or attaches to the process that runs it. Returns the exit status.
pub fn run(start: impl FnOnce() -> Result<Arc<dyn Mesh>, String>, paths: Paths) -> Result<(), String> {
    run_with(start, paths, |_, _| {})
}

/// [`run`], calling `serving` with the node's backend and executor once the node runs here (the
/// spawner needs them to serve its children).
pub fn run_with(
    start: impl FnOnce() -> Result<Arc<dyn Mesh>, String>,
    paths: Paths,
    serving: impl FnOnce(&Backend, &Arc<smol::Executor<'static>>),
) -> Result<(), String> {
    let ex = Arc::new(smol::Executor::new());
    let ex2 = ex.clone();
    smol::block_on(ex.run(async move {
        let ex = ex2;
        let stdio = || (tokio::io::stdin(), tokio::io::stdout());
        match attach::claim(&paths.lock).map_err(|e| format!("cannot open {}: {e}", paths.lock.display()))? {
            Role::Primary(guard) => {
                let p = primary(start()?, &paths, &ex);
                serving(&p.backend, &ex);
                session(p.backend.clone(), ex.clone(), stdio).await;
                p.finish(&paths).await;
                drop(guard);
                Ok(())
            }
            Role::Attach => {
                let client = Client::connect(&paths.socket, &ex).await.map_err(|e| {
                    format!(
                        "another darkmatter runs this project's node but its socket {} does not answer: {e}",
                        paths.socket.display()
                    )
                })?;
                eprintln!("darkmatter: attached to the node already running for this project");
                let mesh: Arc<dyn Mesh> = Arc::new(client);
                let hub = Hub::new();
                ex.spawn(hub.clone().pump(mesh.events())).detach();
                session(Backend::local(mesh, hub), ex.clone(), stdio).await;
                Ok(())
            }
        }
    }))
}

/// A `darkmatter` started for a spawned agent (`DARKMATTER_ATTACH_SOCKET` and
/// `DARKMATTER_SPAWN_TOKEN` set): it attaches to its parent node through the child's socket or fails;
/// it never claims the project, starts a node or creates a passport.
pub fn run_spawned(socket: std::path::PathBuf, token: String) -> Result<(), String> {
    let ex = Arc::new(smol::Executor::new());
    let ex2 = ex.clone();
    smol::block_on(ex.run(async move {
        let client = Client::connect_with(&socket, Some(&token), &ex2)
            .await
            .map_err(|e| format!("cannot attach to the parent node at {}: {e}", socket.display()))?;
        let mesh: Arc<dyn Mesh> = Arc::new(client);
        let hub = Hub::new();
        ex2.spawn(hub.clone().pump(mesh.events())).detach();
        let stdio = || (tokio::io::stdin(), tokio::io::stdout());
        session(Backend::local(mesh, hub), ex2.clone(), stdio).await;
        Ok(())
    }))
}
