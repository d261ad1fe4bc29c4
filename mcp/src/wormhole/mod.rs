//! # WormHole: the mesh in a browser
//!
//! `darkmatter wormhole [--port 8200] [--bind 127.0.0.1] [--data DIR] [--open]` runs a full node of
//! this project (its own passport and state under `DIR`, spawning off: its inbox is for a person) and
//! serves a web page for that person on `--bind:--port`. The page can do only what this node's own
//! commands do: every change to another node goes through a signed protocol action of this node.
//!
//! One file per concern: [`http`] (bounded framing and security headers), [`auth`] (secret, passphrase,
//! cookies, CSRF, login limit), [`routes`] (the checks every request passes, then the routes),
//! [`api`] (the JSON views and actions over the node), [`stream`] (server-sent events),
//! [`topology`] (the mesh view, second-degree edges fetched server-side), [`spawn_panel`] (children of
//! local nodes), [`assets`] (the page, embedded in the binary).
//!
//! ## Who gets in
//! Every request first passes the `Host` check (only this server's own names: a DNS-rebinding page
//! cannot borrow the browser's loopback access). Only the login page is served without a session.
//! A session starts by proving either the passphrase (stored only as an Argon2id hash) or the launch
//! token printed on stderr at start-up (like Jupyter's); the cookie is HMAC-signed with a secret of 32
//! OS-random bytes kept in a 0600 file. Every state-changing request is a POST carrying the session's
//! CSRF token and a same-origin `Origin`. Binding to a non-loopback address requires a passphrase.

pub mod api;
pub mod assets;
pub mod auth;
pub mod http;
pub mod routes;
pub mod spawn_panel;
pub mod stream;
pub mod topology;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use smol::net::{TcpListener, TcpStream};

use crate::events::Hub;
use crate::mesh::Mesh;

/// The page's default port (0.5.3's).
pub const PORT_DEFAULT: u16 = 8200;
/// Connections to the page open at once; more are closed at once.
pub const CONNECTIONS_MAX: usize = 64;
/// Pause after a failed `accept`, in ms.
pub const ACCEPT_BACKOFF_MS: u64 = 100;
/// The environment variable that sets (or replaces) the passphrase at start-up; only its hash is kept.
pub const PASSPHRASE_ENV: &str = "DARKMATTER_WORMHOLE_PASSPHRASE";

/// How the WormHole runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Address the page is served on.
    pub bind: IpAddr,
    /// Port of the page (0 picks one).
    pub port: u16,
    /// Data directory: passport, state, secret, passphrase hash.
    pub data: PathBuf,
    /// Local nodes' state directories whose spawned children the spawn panel shows.
    pub agents: Vec<PathBuf>,
}

/// Why the WormHole did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A non-loopback bind without a passphrase would open the page to the network.
    #[error("binding to {0} (not loopback) requires a passphrase: set {PASSPHRASE_ENV} once")]
    NeedsPassphrase(IpAddr),
    /// The secret or passphrase files.
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    /// The page's port could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

/// Everything a request may touch.
pub struct Wormhole {
    /// The node.
    pub mesh: Arc<dyn Mesh>,
    /// The node's events, fanned out to the page's streams.
    pub hub: Hub,
    /// Cookie and CSRF keys.
    pub keys: auth::Keys,
    /// The passphrase hash, when one is set.
    pub passphrase: Option<String>,
    /// The launch token (hex), valid for this run only.
    pub launch_token: String,
    /// Failed logins by address.
    pub limiter: Mutex<auth::LoginLimiter>,
    /// `Host` values this server answers to.
    pub hosts: Vec<String>,
    /// Event streams open now.
    pub streams: AtomicUsize,
    /// The spawn panel's local nodes.
    pub agents: Vec<PathBuf>,
    /// The node's own agent id.
    pub agent_id: String,
    /// The last health check of each connection.
    pub health: Mutex<std::collections::HashMap<String, topology::Health>>,
    /// Outbound HTTP for health checks and the mesh view (bounded answers, no redirects).
    pub client: runtime_smol::client::Client,
}

/// Seconds since the Unix epoch.
pub fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The `Host` values a browser sends to reach the page: loopback names when bound to loopback or to
/// every address, the bound address itself, and, when bound to every address, this machine's LAN
/// address (`lan`, the host the node announces to peers). Nothing else: a rebinding name is refused.
pub fn allowed_hosts(bind: IpAddr, port: u16, lan: Option<&str>) -> Vec<String> {
    let mut hosts = Vec::new();
    if bind.is_loopback() || bind.is_unspecified() {
        hosts.extend([format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("[::1]:{port}")]);
    }
    if !bind.is_loopback() && !bind.is_unspecified() {
        hosts.push(SocketAddr::new(bind, port).to_string());
    }
    if let (true, Some(lan)) = (bind.is_unspecified(), lan) {
        let host = format!("{lan}:{port}");
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    hosts
}

/// Prepares the data directory's secrets and binds the page's port.
pub async fn prepare(
    mesh: Arc<dyn Mesh>,
    agent_id: String,
    peer_url: &str,
    opts: &Options,
) -> Result<(Arc<Wormhole>, TcpListener), StartError> {
    if let Ok(p) = std::env::var(PASSPHRASE_ENV) {
        auth::store_passphrase(&opts.data, &p)?;
    }
    let passphrase = auth::load_passphrase(&opts.data)?;
    if !opts.bind.is_loopback() && passphrase.is_none() {
        return Err(StartError::NeedsPassphrase(opts.bind));
    }
    let addr = SocketAddr::new(opts.bind, opts.port);
    let listener = TcpListener::bind(addr).await.map_err(|e| StartError::Bind(addr, e))?;
    let port = listener.local_addr().map_err(|e| StartError::Bind(addr, e))?.port();
    let hub = Hub::new();
    let wormhole = Wormhole {
        mesh,
        hub,
        keys: auth::Keys::new(auth::load_or_create_secret(&opts.data)?),
        passphrase,
        launch_token: hex::encode(auth::random::<{ auth::TOKEN_BYTES }>()?),
        limiter: Mutex::default(),
        hosts: allowed_hosts(opts.bind, port, url::Url::parse(peer_url).ok().as_ref().and_then(url::Url::host_str)),
        streams: AtomicUsize::new(0),
        agents: opts.agents.clone(),
        agent_id,
        health: Mutex::default(),
        client: runtime_smol::client::Client::new(),
    };
    Ok((Arc::new(wormhole), listener))
}

/// Serves the page until the executor stops.
pub async fn serve(wh: Arc<Wormhole>, listener: TcpListener, ex: Arc<smol::Executor<'static>>) {
    ex.spawn(wh.hub.clone().pump(wh.mesh.events())).detach();
    ex.spawn(topology::health_loop(wh.clone())).detach();
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if open.fetch_add(1, Ordering::AcqRel) >= CONNECTIONS_MAX {
                    open.fetch_sub(1, Ordering::AcqRel);
                    continue; // dropped: closed at once
                }
                let (wh, open) = (wh.clone(), open.clone());
                ex.spawn(async move {
                    connection(wh, stream, peer.ip().to_canonical()).await;
                    open.fetch_sub(1, Ordering::AcqRel);
                })
                .detach();
            }
            Err(e) => {
                eprintln!("darkmatter wormhole: accept failed: {e}");
                smol::Timer::after(Duration::from_millis(ACCEPT_BACKOFF_MS)).await;
            }
        }
    }
}

async fn connection(wh: Arc<Wormhole>, mut stream: TcpStream, peer: IpAddr) {
    let _ = stream.set_nodelay(true);
    let mut req = match http::read_request(&mut stream).await {
        Ok(req) => req,
        Err(http::ReadError::Refuse(status, text)) => {
            let _ = http::write_all(&mut stream, &http::Response::error(status, &text).bytes()).await;
            return;
        }
        Err(http::ReadError::Gone) => return,
    };
    req.peer = Some(peer);
    match routes::handle(&wh, req).await {
        routes::Reply::Whole(r) => {
            let _ = http::write_all(&mut stream, &r.bytes()).await;
        }
        routes::Reply::Events(session) => stream::serve(&wh, stream, session).await,
    }
}

/// The node's configuration for a WormHole: the `DARKMATTER_*` variables, with its own state
/// directory, spawning off (its inbox is read by a person), and a peer port of its own (`DARKMATTER_PORT`
/// when set, else any free port, so it never takes a local agent's 8100). A `DARKMATTER_DISPLAY_NAME`
/// wins over a rename from the page at every start (the core's rule); without it the page's name lasts.
pub fn node_config(opts: &Options) -> Result<runtime_smol::RuntimeConfig, String> {
    let mut config = runtime_smol::RuntimeConfig::from_env().map_err(|e| e.to_string())?;
    config.state_dir = opts.data.clone();
    config.agent_enabled = false;
    if std::env::var_os("DARKMATTER_PORT").is_none() {
        config.port = 0;
    }
    Ok(config)
}

/// The name a WormHole without one takes at its first start.
pub const DISPLAY_NAME_DEFAULT: &str = "Human";

/// Names a node that still has the core's default name [`DISPLAY_NAME_DEFAULT`], as a rename (kept in its profile), not as
/// a configured name: a configured name wins at every start and would undo the page's renames.
pub async fn name_if_unnamed(mesh: &dyn Mesh) -> Result<(), String> {
    let me = mesh.command(proto_core::Command::GetIdentity).await.map_err(|e| e.to_string())?;
    let id = me["agent_id"].as_str().unwrap_or_default();
    let unnamed = id.get(..proto_core::identity::DEFAULT_NAME_ID_HEX).map(|hex| format!("agent-{hex}"));
    if me["display_name"].as_str().is_some_and(|n| n.is_empty() || Some(n) == unnamed.as_deref()) {
        let rename = proto_core::Command::Rename { display_name: DISPLAY_NAME_DEFAULT.to_owned() };
        mesh.command(rename).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// `darkmatter wormhole`: starts the node and serves the page until a signal stops the node.
pub fn run(opts: Options, open: bool) -> Result<(), String> {
    let config = node_config(&opts)?;
    let handle = crate::node::start(config, &opts.data.join("wormhole.sock"), None)?;
    let agent_id = handle.agent_id().to_owned();
    let peer_url = handle.public_url().to_owned();
    let mesh: Arc<dyn Mesh> = Arc::new(handle);
    let ex = Arc::new(smol::Executor::new());
    let ex2 = ex.clone();
    smol::block_on(ex.run(async move {
        name_if_unnamed(&*mesh).await?;
        let (wh, listener) = prepare(mesh, agent_id.clone(), &peer_url, &opts).await.map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let host = if addr.ip().is_unspecified() || addr.ip().is_loopback() { "127.0.0.1".to_owned() } else { addr.ip().to_string() };
        let url = format!("http://{host}:{}/login?token={}", addr.port(), wh.launch_token);
        eprintln!(
            "darkmatter wormhole: agent {agent_id}\n  peers reach it at {peer_url}\n  state in {}\n  open {url}\n  Ctrl-C stops it.",
            opts.data.display()
        );
        if open {
            let _ = std::process::Command::new(if cfg!(target_os = "macos") { "open" } else { "xdg-open" }).arg(&url).spawn();
        }
        serve(wh, listener, ex2).await;
        Ok(())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_pages_own_names_are_allowed_hosts() {
        let lo = allowed_hosts("127.0.0.1".parse().unwrap(), 8200, Some("192.0.2.7"));
        assert_eq!(lo, ["127.0.0.1:8200", "localhost:8200", "[::1]:8200"]);
        let lan = allowed_hosts("192.0.2.7".parse().unwrap(), 8200, Some("192.0.2.7"));
        assert_eq!(lan, ["192.0.2.7:8200"]);
        let any = allowed_hosts("0.0.0.0".parse().unwrap(), 8200, Some("192.0.2.7"));
        assert_eq!(any, ["127.0.0.1:8200", "localhost:8200", "[::1]:8200", "192.0.2.7:8200"]);
    }
}
