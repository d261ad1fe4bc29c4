//! `darkmatter`: the MCP server an MCP client starts. With no argument it is that server, speaking
//! MCP on stdin/stdout and nothing else there; configuration comes only from `DARKMATTER_*`
//! variables. `--help` and `--version` answer and exit.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use darkmatter_mcp::mesh::Mesh;
use darkmatter_mcp::spawner::{Settings, Spawner};
use darkmatter_mcp::{app, attach::Paths, node};
use runtime_smol::sandbox::{self, Net, Policy};
use runtime_smol::{NodeHandle, RuntimeConfig};

/// The command line. No subcommand is the MCP server; `sandbox-exec` (hidden) is the helper a node
/// runs its spawned agents through; `wormhole` runs a node with a web page for a person; `anchor` runs a
/// self-hostable anchor.
#[derive(Parser, Debug)]
#[command(
    name = "darkmatter",
    version,
    about = "A DarkMatter mesh node with an MCP stdio server: an MCP client starts it and speaks MCP on its stdin/stdout.",
    after_help = "Configured by DARKMATTER_* variables (DARKMATTER_PORT, DARKMATTER_HOST, DARKMATTER_PUBLIC_URL, \
DARKMATTER_DISPLAY_NAME, DARKMATTER_DISCOVERY, DARKMATTER_CLIENT, ...); state lives in ./.darkmatter/.\n\
Add it to an MCP client as: {\"mcpServers\": {\"darkmatter\": {\"command\": \"darkmatter\"}}}\n\
A second darkmatter started in the same project attaches to the first one's node."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a self-hostable anchor: a directory of agents' URLs and relay mailboxes for agents behind
    /// NAT, wire-compatible with 0.5.3 nodes. Prints {"ready":true,"url":...} on stdout once listening;
    /// SIGINT/SIGTERM stop it.
    Anchor {
        /// Port to listen on (default: DARKMATTER_ANCHOR_PORT, else 5001; 0 = any free port).
        #[arg(long)]
        port: Option<u16>,
        /// Address to bind (default 127.0.0.1; put a TLS proxy in front, or bind 0.0.0.0 on purpose).
        #[arg(long, default_value_t = runtime_smol::anchor::ANCHOR_HOST_DEFAULT)]
        bind: std::net::IpAddr,
        /// State directory (default ./.darkmatter-anchor, created 0700).
        #[arg(long, default_value = runtime_smol::anchor::ANCHOR_STATE_DIR_DEFAULT)]
        state: PathBuf,
    },
    /// Internal: run a spawned agent's command under the sandbox policy (Landlock and seccomp on
    /// Linux, Seatbelt on macOS), or exit non-zero with "sandbox unavailable: <why>" and never run it.
    #[command(name = "sandbox-exec", hide = true)]
    SandboxExec {
        /// A directory (or file) the command may read, write and create in.
        #[arg(long, value_name = "DIR")]
        write: Vec<PathBuf>,
        /// A directory (or file) the command may read and execute.
        #[arg(long, value_name = "DIR")]
        read: Vec<PathBuf>,
        /// A path the command may neither read nor write, even inside a --write or --read directory.
        #[arg(long, value_name = "PATH")]
        deny: Vec<PathBuf>,
        /// on = open, off = no TCP connect/bind and no UDP, api = TCP connect to port 443 only.
        #[arg(long, default_value = "on", value_parser = parse_net)]
        net: Net,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        argv: Vec<OsString>,
    },
    /// Run a node of its own for a person, with a web page (loopback by default) to watch and steer
    /// the mesh. A non-loopback --bind requires a passphrase (DARKMATTER_WORMHOLE_PASSPHRASE, set once).
    Wormhole {
        /// Port of the web page.
        #[arg(long, default_value_t = darkmatter_mcp::wormhole::PORT_DEFAULT)]
        port: u16,
        /// Address of the web page.
        #[arg(long, default_value = "127.0.0.1")]
        bind: std::net::IpAddr,
        /// Data directory (passport, state, session secret, passphrase hash). Default ~/.darkmatter/wormhole.
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        /// A local node's state directory (<project>/.darkmatter) whose spawned agents the page lists.
        #[arg(long, value_name = "DIR")]
        agent: Vec<PathBuf>,
        /// Open the page in the default browser.
        #[arg(long)]
        open: bool,
    },
}

fn parse_net(value: &str) -> Result<Net, String> {
    Net::parse(value).ok_or_else(|| "must be on, off or api".to_owned())
}

fn main() -> ExitCode {
    // Before anything else: --help and --version print and exit here, a bad argument exits 2.
    let cli = Cli::parse();
    if let Some(Command::SandboxExec { write, read, deny, net, argv }) = cli.command {
        // Still single-threaded: Landlock and seccomp restrict the calling thread only.
        eprintln!("darkmatter: {}", sandbox::exec(&Policy { write, read, deny, net }, &argv));
        return ExitCode::FAILURE;
    }
    one_malloc_arena();
    let result = match cli.command {
        Some(Command::Wormhole { port, bind, data, agent, open }) => wormhole(port, bind, data, agent, open),
        Some(Command::Anchor { port, bind, state }) => run_anchor(port, bind, state),
        _ => run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("darkmatter: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    // A spawned agent's server attaches to its parent or fails: it never starts a node of its own.
    if let Some((socket, token)) = spawned_child()? {
        return app::run_spawned(socket, token);
    }
    let config = RuntimeConfig::from_env().map_err(|e| e.to_string())?;
    let paths =
        Paths::for_dir(&config.state_dir).map_err(|e| format!("cannot use {}: {e}", config.state_dir.display()))?;
    let spawner = if config.agent_enabled { Some(Spawner::new(Settings::from_config(&config)?)) } else { None };
    let launcher = spawner.clone().map(|s| s as Arc<dyn runtime_smol::spawn::Launcher>);
    let switch = spawner.clone();
    let socket = paths.socket.clone();
    let in_terminal = std::io::stdin().is_terminal();
    app::run_with(
        move || {
            let handle = node::start(config, &socket, launcher)?;
            if in_terminal {
                eprintln!("{}", terminal_note(&handle));
            }
            let mesh: Arc<dyn Mesh> = Arc::new(handle);
            Ok(match switch {
                Some(s) => Arc::new(darkmatter_mcp::spawner::SandboxSwitch::new(mesh, s)) as Arc<dyn Mesh>,
                None => mesh,
            })
        },
        paths,
        move |backend, ex| {
            if let Some(s) = spawner {
                s.serve(backend.clone(), ex.clone());
            }
        },
    )
}

fn wormhole(
    port: u16,
    bind: std::net::IpAddr,
    data: Option<PathBuf>,
    agents: Vec<PathBuf>,
    open: bool,
) -> Result<(), String> {
    let data = match data {
        Some(d) => d,
        None => PathBuf::from(std::env::var_os("HOME").ok_or("HOME is unset; give --data")?)
            .join(".darkmatter")
            .join("wormhole"),
    };
    darkmatter_mcp::wormhole::run(darkmatter_mcp::wormhole::Options { bind, port, data, agents }, open)
}

/// `DARKMATTER_ATTACH_SOCKET` and `DARKMATTER_SPAWN_TOKEN`, when this process serves a spawned agent;
/// one without the other is an error (never a fallback to starting a node).
fn spawned_child() -> Result<Option<(std::path::PathBuf, String)>, String> {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (get("DARKMATTER_ATTACH_SOCKET"), get("DARKMATTER_SPAWN_TOKEN")) {
        (Some(socket), Some(token)) => Ok(Some((socket.into(), token))),
        (None, None) => Ok(None),
        _ => Err("DARKMATTER_ATTACH_SOCKET and DARKMATTER_SPAWN_TOKEN must be set together (a spawned agent's server)"
            .to_owned()),
    }
}

/// What a person who ran `darkmatter` by hand sees (on stderr: stdout belongs to MCP).
fn terminal_note(handle: &NodeHandle) -> String {
    let state = handle.state_path().parent().unwrap_or(handle.state_path());
    format!(
        "darkmatter: this is an MCP server; it waits for an MCP client on stdin.\n  \
agent {}\n  peers reach it at {}\n  state in {}\n  \
add it to an MCP client: {{\"mcpServers\": {{\"darkmatter\": {{\"command\": \"darkmatter\"}}}}}}\n  \
Ctrl-C stops it.",
        handle.agent_id(),
        handle.public_url(),
        state.display()
    )
}

/// glibc gives each thread that allocates its own arena; with a dozen mostly idle threads that
/// leaves hundreds of KiB resident for nothing. One arena is plenty for this workload. Must run
/// before any thread starts.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// `darkmatter anchor`: serves until a signal (the ready line is `runtime_smol::anchor::serve`'s).
fn run_anchor(port: Option<u16>, host: std::net::IpAddr, state_dir: PathBuf) -> Result<(), String> {
    use runtime_smol::anchor::{self, AnchorConfig, ANCHOR_PORT_DEFAULT};
    let port = match (port, std::env::var("DARKMATTER_ANCHOR_PORT").ok().filter(|v| !v.is_empty())) {
        (Some(p), _) => p,
        (None, Some(v)) => v.parse().map_err(|_| format!("DARKMATTER_ANCHOR_PORT: not a port: {v:?}"))?,
        (None, None) => ANCHOR_PORT_DEFAULT,
    };
    anchor::serve(AnchorConfig { host, port, state_dir, handle_signals: true }).map_err(|e| e.to_string())
}
