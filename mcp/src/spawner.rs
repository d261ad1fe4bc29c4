//! The spawner: builds the client agent the core asked for (runtime-smol's [`Launcher`]; the
//! process itself is run by `runtime_smol::spawn`).
//!
//! For each child (R-C1…R-C6):
//! - a 128-bit token and a private directory (0700, under the temp dir, outside the project's
//!   `.darkmatter/`) holding the child's own attach socket ([`ChildSocket`]), which serves only that
//!   token and only what a spawned session may do ([`SpawnedMesh`]);
//! - the server entry: this very executable (`current_exe`), no arguments, and the environment
//!   `DARKMATTER_SPAWN_TOKEN`, `DARKMATTER_ATTACH_SOCKET`, `DARKMATTER_AGENT_ENABLED=false`; the same
//!   variables are in the client's own environment, so a `darkmatter` it runs by hand attaches too;
//! - the server given to the client per its profile ([`crate::profiles`]): inline, `-c`, a private
//!   file, or a merge-written project file ([`Merges`]);
//! - the prompt ([`crate::spawn_prompt`]), the log `.darkmatter/spawn/<message id>.log`.
//!
//! When the child ends, everything is undone: the socket and its sessions close (the token dies
//! with the child), the private directory goes, a merged file is restored after its last user.
//! What a killed node could not undo is undone when the next node of this project starts serving
//! ([`Spawner::serve`]): merged files are put back and private directories (each marked under
//! `.darkmatter/spawn/private/` before it is made) removed. Never earlier: a second `darkmatter`
//! that only attaches to a live node must not touch its children's files.
//!
//! `DARKMATTER_SANDBOX=true` refuses every spawn the sandbox cannot hold: an agent is never run
//! unsandboxed behind the user's back (fail closed). The node's user may switch the sandbox at run
//! time ([`SandboxSwitch`], reached over the attach socket); a spawned agent never can.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use proto_core::spawn::{SpawnId, SpawnRequest, SpawnTrigger};
use proto_core::CommandError;
use runtime_smol::spawn::{Launch, Launcher};
use runtime_smol::BoxFut;
use runtime_smol::RuntimeConfig;
use serde_json::Value;

use crate::attach::{euid, make_private_dir, ChildSocket};
use crate::bridge::Backend;
use crate::config_merge::Merges;
use crate::profiles::{ConfigFormat, Delivery, Invocation, Profile, ServerCommand};
use crate::spawned::SpawnedMesh;

/// How long a spawn at start-up waits for the node's sessions to be served, in ms.
pub const NODE_WAIT_MS: u64 = 5_000;

/// Longest message id kept in a log file name; longer ids are cut (they are peers' words).
const LOG_NAME_CHARS_MAX: usize = 100;

/// What the spawner needs from the configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The client profile.
    pub profile: &'static Profile,
    /// Its `DARKMATTER_CLIENT` name.
    pub client: String,
    /// `DARKMATTER_AGENT_COMMAND`.
    pub command: Option<String>,
    /// `DARKMATTER_AGENT_ARGS`.
    pub args: Option<Vec<String>>,
    /// `DARKMATTER_AGENT_ENV_CLEANUP`.
    pub env_cleanup: Option<Vec<String>>,
    /// `DARKMATTER_AGENT_TIMEOUT`.
    pub timeout: Duration,
    /// `DARKMATTER_SANDBOX`: the client runs under `darkmatter sandbox-exec` with this network setting
    /// (at start; the node's user may switch it at run time, [`Spawner::set_sandbox`]).
    pub sandbox: Option<runtime_smol::sandbox::Net>,
    /// `DARKMATTER_SANDBOX_NETWORK`: the network setting a sandbox switched on at run time gets.
    pub sandbox_network: runtime_smol::sandbox::Net,
    /// The client's profile, for the state directories the sandbox leaves it in home.
    pub client_profile: runtime_smol::config::ClientProfile,
    /// `$HOME`, whose client state the sandbox opens (and whose rest it hides).
    pub home: PathBuf,
    /// Where children work.
    pub project_dir: PathBuf,
    /// The node's state directory (`.darkmatter`): logs and merge records go under `spawn/`.
    pub state_dir: PathBuf,
    /// The running `darkmatter`.
    pub exe: PathBuf,
}

impl Settings {
    /// From the runtime configuration and this process's executable.
    pub fn from_config(config: &RuntimeConfig) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
        Ok(Self {
            profile: crate::profiles::of(config.client),
            client: config.client.name().to_owned(),
            command: config.agent_command.clone(),
            args: config.agent_args.clone(),
            env_cleanup: config.agent_env_cleanup.clone(),
            timeout: Duration::from_secs(config.agent_timeout_s),
            sandbox: config.sandbox.then_some(config.sandbox_network),
            sandbox_network: config.sandbox_network,
            client_profile: config.client,
            home: std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/")),
            project_dir: config.project_dir(),
            state_dir: config.state_dir.clone(),
            exe,
        })
    }
}

/// A live child's resources.
struct Child {
    _socket: ChildSocket,
    private_dir: PathBuf,
    /// Its mark under `.darkmatter/spawn/private/`, removed after the directory.
    mark: PathBuf,
    merged: Option<PathBuf>,
}

/// Builds children for one node.
pub struct Spawner {
    settings: Settings,
    node: OnceLock<(Backend, Arc<smol::Executor<'static>>)>,
    live: Mutex<HashMap<SpawnId, Child>>,
    /// Opened (and a crashed run's merges repaired) only by the node's owner, in [`Spawner::serve`].
    merges: OnceLock<Merges>,
    /// The sandbox new children get now: `settings.sandbox` at start, then the user's switch.
    sandbox: Mutex<Option<runtime_smol::sandbox::Net>>,
}

impl Spawner {
    /// A spawner. It touches no file until [`Spawner::serve`]: this process may yet turn out to
    /// attach to a node that another process runs (and whose children use those files).
    pub fn new(settings: Settings) -> Arc<Self> {
        let sandbox = Mutex::new(settings.sandbox);
        Arc::new(Self {
            settings,
            node: OnceLock::new(),
            live: Mutex::new(HashMap::new()),
            merges: OnceLock::new(),
            sandbox,
        })
    }

    /// Switches the sandbox of children started from now on (live ones keep theirs); answers the
    /// setting now. Turning it on is checked like a configured one: a spawn it cannot hold fails.
    pub fn set_sandbox(&self, on: bool) -> serde_json::Value {
        let net = on.then_some(self.settings.sandbox_network);
        *self.sandbox.lock().unwrap_or_else(|p| p.into_inner()) = net;
        serde_json::json!({"sandbox": on})
    }

    fn current_sandbox(&self) -> Option<runtime_smol::sandbox::Net> {
        *self.sandbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This process runs the project's node and its sessions are served: what a killed run left is
    /// undone (merged files put back, private directories removed), then children may attach.
    pub fn serve(&self, backend: Backend, ex: Arc<smol::Executor<'static>>) {
        let spawn_dir = self.settings.state_dir.join("spawn");
        let (merges, repaired) = Merges::open(&spawn_dir);
        for path in repaired {
            eprintln!("darkmatter: restored {} after an unfinished agent run", path.display());
        }
        let _ = self.merges.set(merges);
        for dir in sweep_private_dirs(&spawn_dir.join(PRIVATE_MARKS), &private_base()) {
            eprintln!("darkmatter: removed {} after an unfinished agent run", dir.display());
        }
        let _ = self.node.set((backend, ex));
    }

    fn merges(&self) -> Result<&Merges, String> {
        self.merges.get().ok_or_else(|| "the node is not serving sessions yet".to_owned())
    }

    fn node(&self) -> Result<&(Backend, Arc<smol::Executor<'static>>), String> {
        let deadline = Instant::now() + Duration::from_millis(NODE_WAIT_MS);
        loop {
            if let Some(n) = self.node.get() {
                return Ok(n);
            }
            if Instant::now() >= deadline {
                return Err("the node is not serving sessions yet".to_owned());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sets up the child's socket and server entry; the child is recorded as live at once, so that
    /// [`Launcher::finished`] undoes a half-made setup too.
    fn set_up(&self, request: &SpawnRequest) -> Result<(ServerCommand, PathBuf), String> {
        let (backend, ex) = self.node()?;
        let token = random_hex(16)?;
        let base = private_base();
        make_private_dir(&base).map_err(|e| format!("cannot use {}: {e}", base.display()))?;
        let private_dir = base.join(format!("spawn-{}", &token[..16]));
        // Marked before it exists, so a node killed at any point leaves a mark for the next start.
        let marks = self.settings.state_dir.join("spawn").join(PRIVATE_MARKS);
        std::fs::create_dir_all(&marks).map_err(|e| format!("cannot use {}: {e}", marks.display()))?;
        let mark = marks.join(&token[..16]);
        std::fs::write(&mark, b"").map_err(|e| format!("cannot write {}: {e}", mark.display()))?;
        make_private_dir(&private_dir).map_err(|e| format!("cannot use {}: {e}", private_dir.display()))?;
        let socket_path = private_dir.join("node.sock");
        let request_id = match &request.trigger {
            SpawnTrigger::ConnectionRequest { request_id, .. } => Some(request_id.clone()),
            SpawnTrigger::Message { .. } => None,
        };
        let restricted =
            Backend::local(Arc::new(SpawnedMesh::new(backend.mesh.clone(), request_id)), backend.hub.clone());
        let socket = ChildSocket::open(&socket_path, token.clone(), restricted, ex)
            .map_err(|e| format!("cannot open the agent's socket {}: {e}", socket_path.display()))?;
        let child = Child { _socket: socket, private_dir: private_dir.clone(), mark, merged: None };
        self.live.lock().unwrap_or_else(|p| p.into_inner()).insert(request.spawn_id, child);
        let server = ServerCommand {
            command: self.settings.exe.to_string_lossy().into_owned(),
            args: vec![],
            env: vec![
                ("DARKMATTER_AGENT_ENABLED".to_owned(), "false".to_owned()),
                ("DARKMATTER_ATTACH_SOCKET".to_owned(), socket_path.to_string_lossy().into_owned()),
                ("DARKMATTER_SPAWN_TOKEN".to_owned(), token),
            ],
        };
        Ok((server, private_dir))
    }

    /// Gives the server to the client per its profile; returns the private file, if one was written.
    fn deliver(&self, id: SpawnId, server: &ServerCommand, private_dir: &Path) -> Result<Option<String>, String> {
        match self.settings.profile.delivery {
            Delivery::PrivateFile => {
                let file = private_dir.join("mcp.json");
                let text = Profile::render_config(ConfigFormat::McpServersJson, server);
                std::fs::write(&file, text).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
                Ok(Some(file.to_string_lossy().into_owned()))
            }
            Delivery::ProjectFile { path, format } => {
                let file = self.settings.project_dir.join(path);
                self.merges()?.acquire(&file, format, server)?;
                if let Some(c) = self.live.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&id) {
                    c.merged = Some(file);
                }
                Ok(None)
            }
            Delivery::InlineJson | Delivery::CodexOverrides | Delivery::InPrompt => Ok(None),
        }
    }
}

impl Spawner {
    /// `client_argv` run through `darkmatter sandbox-exec` with the agent's policy: the project
    /// without `.darkmatter/`, the child's private directory (its attach socket), its client's
    /// state in home.
    fn sandboxed(
        &self,
        net: runtime_smol::sandbox::Net,
        client_argv: &[String],
        private_dir: &Path,
    ) -> Result<Vec<String>, String> {
        use runtime_smol::sandbox::{create_state_dirs, sandbox_argv, Policy};
        let s = &self.settings;
        // Before the policy: a directory that does not exist cannot be granted (first run).
        create_state_dirs(s.client_profile, &s.home)
            .map_err(|e| format!("cannot create the client's state directories in {}: {e}", s.home.display()))?;
        let mut policy = Policy::for_agent(&s.project_dir, &s.home, private_dir, s.client_profile, net);
        // The client reaches its node through this very binary (attach mode), wherever it is installed.
        policy.read.push(s.exe.clone());
        let child: Vec<std::ffi::OsString> = client_argv.iter().map(Into::into).collect();
        Ok(sandbox_argv(&s.exe, &policy, &child).into_iter().map(|a| a.to_string_lossy().into_owned()).collect())
    }
}

impl Launcher for Spawner {
    fn prepare(&self, request: &SpawnRequest) -> Result<Launch, String> {
        // Fail closed: a spawn the sandbox cannot hold is refused with the reason, never run bare.
        let sandbox = self.current_sandbox();
        if let Some(net) = sandbox {
            runtime_smol::sandbox::preflight(net).map_err(|why| format!("sandbox unavailable: {why}"))?;
        }
        let (server, private_dir) = self.set_up(request)?;
        let private_file = self.deliver(request.spawn_id, &server, &private_dir)?;
        let s = &self.settings;
        let mut prompt = crate::spawn_prompt::build(request);
        if s.profile.delivery == Delivery::InPrompt {
            prompt.push('\n');
            prompt.push_str(&Profile::skill_text(&server));
        }
        let run = Invocation {
            server: Some(&server),
            private_file: private_file.as_deref(),
            session: request.trigger.key(),
            timeout_s: s.timeout.as_secs(),
            command: s.command.as_deref(),
            args: s.args.as_deref(),
        };
        let mut argv = s.profile.spawn(&prompt, &run);
        if let Some(net) = sandbox {
            argv.argv = self.sandboxed(net, &argv.argv, &private_dir)?;
        }
        let program = argv.argv.remove(0);
        let mut env = server.env.clone();
        env.push(("DARKMATTER_ENTRYPOINT_AUTOSTART".to_owned(), "false".to_owned()));
        let env_remove = match &s.env_cleanup {
            Some(list) => list.clone(),
            None => s.profile.env_remove.iter().map(|v| (*v).to_owned()).collect(),
        };
        Ok(Launch {
            program,
            args: argv.argv,
            env,
            env_remove,
            stdin: argv.stdin.map(String::into_bytes),
            cwd: s.project_dir.clone(),
            log: s.state_dir.join("spawn").join(log_name(request.trigger.key())),
            timeout: s.timeout,
            client: s.client.clone(),
        })
    }

    /// One child at a time for a client that reads its server from a shared project file: two live
    /// children would see one entry, the newest's, and the older would attach as the newer (and could
    /// settle its request). The others wait, their messages queued, as under the concurrency limit.
    fn children_max(&self) -> Option<usize> {
        matches!(self.settings.profile.delivery, Delivery::ProjectFile { .. }).then_some(1)
    }

    fn finished(&self, spawn_id: SpawnId) {
        let child = self.live.lock().unwrap_or_else(|p| p.into_inner()).remove(&spawn_id);
        if let Some(child) = child {
            if let (Some(file), Some(merges)) = (&child.merged, self.merges.get()) {
                merges.release(file);
            }
            let _ = std::fs::remove_dir_all(&child.private_dir);
            let _ = std::fs::remove_file(&child.mark);
        }
    }
}

/// The directory under `.darkmatter/spawn/` marking each live child's private directory.
const PRIVATE_MARKS: &str = "private";

/// Where children's private directories are made: `$TMPDIR/darkmatter-<euid>/`.
fn private_base() -> PathBuf {
    std::env::temp_dir().join(format!("darkmatter-{}", euid()))
}

/// Removes the private directory of every mark in `marks` (left by a killed run) and the mark;
/// returns the directories removed. A mark that is not a token prefix is removed alone: the path
/// joined is always `base/spawn-<16 hex digits>`.
fn sweep_private_dirs(marks: &Path, base: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(marks) else { return Vec::new() };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.len() == 16 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            let dir = base.join(format!("spawn-{name}"));
            if std::fs::remove_dir_all(&dir).is_ok() {
                removed.push(dir);
            }
        }
        let _ = std::fs::remove_file(entry.path());
    }
    removed
}

/// `<id>.log` with the id made a safe file name: a peer chose it.
fn log_name(key: &str) -> String {
    let safe: String = key
        .chars()
        .take(LOG_NAME_CHARS_MAX)
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .collect();
    format!("{safe}.log")
}

fn random_hex(bytes: usize) -> Result<String, String> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| format!("no randomness for the agent's token: {e}"))?;
    Ok(hex::encode(buf))
}

/// The node's mesh in the process that runs the spawner: everything goes to `inner`, and the sandbox
/// switch ([`Mesh::sandbox`]) to the spawner, the one place that builds agents.
pub struct SandboxSwitch {
    inner: Arc<dyn crate::mesh::Mesh>,
    spawner: Arc<Spawner>,
}

impl SandboxSwitch {
    /// `inner` with its spawner's sandbox switch.
    pub fn new(inner: Arc<dyn crate::mesh::Mesh>, spawner: Arc<Spawner>) -> Self {
        Self { inner, spawner }
    }
}

impl crate::mesh::Mesh for SandboxSwitch {
    fn command(&self, command: proto_core::Command) -> BoxFut<'_, Result<Value, CommandError>> {
        self.inner.command(command)
    }

    fn discover_local(&self) -> BoxFut<'_, Result<Value, CommandError>> {
        self.inner.discover_local()
    }

    fn discover_domain(&self, domain: String) -> BoxFut<'_, Result<Value, CommandError>> {
        self.inner.discover_domain(domain)
    }

    fn wallet(&self, call: runtime_smol::solana_wallet::WalletCall) -> BoxFut<'_, Result<Value, CommandError>> {
        self.inner.wallet(call)
    }

    fn sandbox(&self, on: bool) -> BoxFut<'_, Result<Value, CommandError>> {
        let answer = self.spawner.set_sandbox(on);
        Box::pin(async move { Ok(answer) })
    }

    fn events(&self) -> async_channel::Receiver<proto_core::Event> {
        self.inner.events()
    }

    fn shutdown(&self) -> BoxFut<'_, ()> {
        self.inner.shutdown()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_removes_marked_private_dirs_and_nothing_else() {
        let root = std::env::temp_dir().join(format!("dm-sweep-{}", std::process::id()));
        let (marks, base) = (root.join("marks"), root.join("base"));
        for d in ["spawn-0123456789abcdef", "spawn-fedcba9876543210", "keep"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        std::fs::create_dir_all(&marks).unwrap();
        for m in ["0123456789abcdef", "0123456789abcdeX", "not-hex-at-all!!"] {
            let _ = std::fs::write(marks.join(m), b"");
        }
        let removed = sweep_private_dirs(&marks, &base);
        assert_eq!(removed, vec![base.join("spawn-0123456789abcdef")]);
        assert!(base.join("spawn-fedcba9876543210").exists(), "an unmarked (another node's) dir stays");
        assert!(base.join("keep").exists());
        assert_eq!(std::fs::read_dir(&marks).unwrap().count(), 0, "every mark is consumed");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn log_names_cannot_leave_the_spawn_directory() {
        assert_eq!(log_name("msg-1_a"), "msg-1_a.log");
        assert_eq!(log_name("../../etc/passwd"), "______etc_passwd.log");
        assert_eq!(log_name(&"x".repeat(500)).len(), LOG_NAME_CHARS_MAX + 4);
    }
}
