//! Spawned agents: the processes the core asks for with `Output::Spawn`.
//!
//! The core decides when (see `proto_core::spawn`); a [`Launcher`] decides what (the client's command
//! line, its prompt, how it reaches this node); this module runs it:
//! - in its own process group (`process_group(0)`), so a timeout ends the whole tree: the client and
//!   every helper it started (0.5.3 killed only the direct child and left its Node/Python children);
//! - stdin from `/dev/null` (or the prompt, for clients that read it there), stdout and stderr into one
//!   pipe streamed to the child's log file (0600) as it comes, so a user can watch a live agent; the
//!   file stays within [`LOG_BYTES_MAX`] (past it, it is cut to its last [`LOG_LIVE_KEEP_BYTES`]) and
//!   holds exactly the last [`LOG_BYTES_MAX`] bytes once the child ends;
//! - after its timeout, `SIGTERM` to the group, [`KILL_GRACE_MS`] later `SIGKILL`; when the client
//!   exits by itself, what is left of its group is killed too, so no helper outlives it;
//! - its end is reported to the core at once (`handle_spawn_exit`), after [`Launcher::finished`]
//!   undid what the launch set up (its attach token, config files), so the slot is free only once the
//!   child can no longer act.
//!
//! When the node stops, every live child's group is killed ([`Children::kill_all`]): nothing would
//! enforce its timeout any more. What a launcher set up is repaired at the next start. A node killed
//! hard cannot do that: each live group is recorded under `.darkmatter/spawn/live/` and the next
//! start kills what is left of it ([`orphans`]).
//!
//! The command is built as a plain [`std::process::Command`]: a later step wraps it in the sandbox
//! helper; until then a launcher that needs the sandbox refuses to prepare (fail closed).

use std::collections::{BTreeSet, VecDeque};
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto_core::spawn::{SpawnId, SpawnOutcome, SpawnRequest};

use crate::driver::Input;

pub mod orphans;

/// Bytes of a child's output kept in its log: the last ones, where the error usually is.
pub const LOG_BYTES_MAX: usize = 256 * 1024;
/// Bytes a live log keeps when it reaches [`LOG_BYTES_MAX`]: half, so the file is rewritten once per
/// that much output, not on every write.
pub const LOG_LIVE_KEEP_BYTES: usize = LOG_BYTES_MAX / 2;
/// Time between `SIGTERM` and `SIGKILL` to a timed-out child's group, in ms (0.5.3's value).
pub const KILL_GRACE_MS: u64 = 5_000;
/// How often a supervisor checks whether its child exited, in ms.
pub const REAP_POLL_MS: u64 = 20;
/// How long a supervisor waits for the output pipe to close after the group is gone, in ms (a
/// helper that left the group may hold it open for ever).
pub const LOG_DRAIN_MS: u64 = 1_000;

/// A prepared child: everything needed to start it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    /// The program (looked up in `PATH` when it has no slash).
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Variables set for the child.
    pub env: Vec<(String, String)>,
    /// Variables removed for the child.
    pub env_remove: Vec<String>,
    /// Bytes written to its stdin (then closed); `None`: stdin is `/dev/null`.
    pub stdin: Option<Vec<u8>>,
    /// Its working directory (the project).
    pub cwd: PathBuf,
    /// Where its output goes.
    pub log: PathBuf,
    /// How long it may run.
    pub timeout: Duration,
    /// The `DARKMATTER_CLIENT` it runs, named when the program is missing.
    pub client: String,
}

/// Builds children for the core's spawn requests (implemented where the client profiles live).
pub trait Launcher: Send + Sync {
    /// Prepares the child for `request`: its command line, environment and anything it needs set up
    /// (an attach token, a config entry). `Err` is the reason it cannot start, for the user.
    fn prepare(&self, request: &SpawnRequest) -> Result<Launch, String>;
    /// The child of `spawn_id` ended (or never started): undo what [`Launcher::prepare`] set up.
    fn finished(&self, spawn_id: SpawnId);
    /// At most this many live children, whatever `DARKMATTER_AGENT_MAX_CONCURRENT` says (`None`: no
    /// cap of the launcher's own). A client whose children share one project config file holds one
    /// at a time: the entry names a single child's socket and token.
    fn children_max(&self) -> Option<usize> {
        None
    }
}

/// The process groups of one node's live children, each also recorded as a file in `record_dir`
/// (when set) so that the next start can kill what a hard crash (kill -9) orphaned.
#[derive(Clone, Debug, Default)]
pub struct Children {
    groups: Arc<Mutex<BTreeSet<i32>>>,
    record_dir: Option<PathBuf>,
}

impl Children {
    /// Children recorded under `dir`; groups a crashed run left there are killed first, so no agent
    /// of an earlier run outlives its node by more than one restart. Returns them and the groups killed.
    pub fn recorded(dir: PathBuf) -> (Self, Vec<i32>) {
        let killed = orphans::kill_left(&dir);
        (Self { groups: Arc::default(), record_dir: Some(dir) }, killed)
    }

    fn add(&self, child: &Child) {
        let group = pid(child);
        if let Some(dir) = &self.record_dir {
            if let Err(e) = orphans::record(dir, group) {
                eprintln!("darkmatter: cannot record agent process group {group}: {e}");
            }
        }
        self.groups.lock().unwrap_or_else(|p| p.into_inner()).insert(group);
    }

    fn remove(&self, child: &Child) {
        let group = pid(child);
        self.groups.lock().unwrap_or_else(|p| p.into_inner()).remove(&group);
        if let Some(dir) = &self.record_dir {
            let _ = fs::remove_file(dir.join(group.to_string()));
        }
    }

    /// Live children.
    pub fn len(&self) -> usize {
        self.groups.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether none lives.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Kills every live child's process group (the node stops).
    pub fn kill_all(&self) {
        for &group in self.groups.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            if let Some(pid) = rustix::process::Pid::from_raw(group) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            if let Some(dir) = &self.record_dir {
                let _ = fs::remove_file(dir.join(group.to_string()));
            }
        }
    }
}

fn pid(child: &Child) -> i32 {
    rustix::process::Pid::from_child(child).as_raw_nonzero().get()
}

/// Starts the child for `request`, counted in `children` while it lives; its end comes back to the
/// core on `back`. On `Err` (the reason) nothing runs and the launcher has already been told it
/// finished.
pub fn start(
    launcher: Arc<dyn Launcher>,
    request: &SpawnRequest,
    back: async_channel::Sender<Input>,
    children: &Children,
) -> Result<(), String> {
    let id = request.spawn_id;
    let started = launcher.prepare(request).and_then(|launch| {
        let child = spawn_child(&launch)?;
        Ok((launch, child))
    });
    let (launch, child) = match started {
        Ok(pair) => pair,
        Err(reason) => {
            launcher.finished(id);
            return Err(reason);
        }
    };
    children.add(&child.child);
    let children = children.clone();
    let supervise = move || {
        let outcome = supervise(child, &launch, &children);
        launcher.finished(id);
        let _ = back.send_blocking(Input::SpawnExit(id, outcome));
    };
    std::thread::Builder::new()
        .name(format!("dm-spawn-{}", id.0))
        .spawn(supervise)
        .map(|_| ())
        .map_err(|e| format!("cannot watch the agent: {e}"))
}

/// The running child and the thread collecting its output.
struct Running {
    child: Child,
    output: Arc<Mutex<Tail>>,
    drained: std::sync::mpsc::Receiver<()>,
}

fn spawn_child(launch: &Launch) -> Result<Running, String> {
    let (reader, writer) = io::pipe().map_err(|e| format!("cannot create the agent's output pipe: {e}"))?;
    let mut cmd = Command::new(&launch.program);
    cmd.args(&launch.args).current_dir(&launch.cwd).process_group(0);
    for name in &launch.env_remove {
        cmd.env_remove(name);
    }
    cmd.envs(launch.env.iter().map(|(k, v)| (k, v)));
    let err = writer.try_clone().map_err(|e| format!("cannot create the agent's output pipe: {e}"))?;
    cmd.stdout(writer).stderr(err);
    cmd.stdin(if launch.stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().map_err(|e| start_error(launch, &e))?;
    // The command holds the pipe's write ends; dropping it leaves them to the child alone, so the
    // reader sees the end of the output when the child's group is gone.
    drop(cmd);
    if let (Some(bytes), Some(mut stdin)) = (launch.stdin.clone(), child.stdin.take()) {
        // A child that does not read its stdin must not block us: write from a thread.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&bytes);
        });
    }
    let output = Arc::new(Mutex::new(Tail { live: LiveLog::open(&launch.log), ..Tail::default() }));
    let (done_tx, drained) = std::sync::mpsc::channel();
    let sink = output.clone();
    std::thread::spawn(move || {
        collect(reader, &sink);
        let _ = done_tx.send(());
    });
    Ok(Running { child, output, drained })
}

fn start_error(launch: &Launch, e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::NotFound {
        format!(
            "command not found: {} (DARKMATTER_CLIENT={}; install it or set DARKMATTER_AGENT_COMMAND)",
            launch.program, launch.client
        )
    } else {
        format!("cannot start {}: {e}", launch.program)
    }
}

/// Waits for the child within its timeout, kills its group, writes its log; returns how it ended.
fn supervise(mut running: Running, launch: &Launch, children: &Children) -> SpawnOutcome {
    let deadline = Instant::now() + launch.timeout;
    let outcome = match wait_until(&mut running.child, deadline) {
        Some(status) => SpawnOutcome::Exited { code: status.code() },
        None => {
            signal_group(&running.child, rustix::process::Signal::TERM);
            let grace = Instant::now() + Duration::from_millis(KILL_GRACE_MS);
            if wait_until(&mut running.child, grace).is_none() {
                signal_group(&running.child, rustix::process::Signal::KILL);
                let _ = running.child.wait();
            }
            SpawnOutcome::TimedOut
        }
    };
    // Whatever the client left running in its group goes with it. The group id cannot have been
    // reused: the kernel keeps it while any member lives.
    signal_group(&running.child, rustix::process::Signal::KILL);
    children.remove(&running.child);
    let _ = running.drained.recv_timeout(Duration::from_millis(LOG_DRAIN_MS));
    let mut tail = running.output.lock().unwrap_or_else(|p| p.into_inner());
    // Closed first: output still draining after this must not grow the final file.
    tail.live = None;
    if let Err(e) = write_log(&launch.log, &tail.bytes()) {
        eprintln!("darkmatter: cannot write the agent log {}: {e}", launch.log.display());
    }
    outcome
}

/// The child's status once it exits, or `None` at `deadline`.
fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() >= deadline => return None,
            Ok(None) => std::thread::sleep(Duration::from_millis(REAP_POLL_MS)),
            // Not our child any more (cannot happen: we own it); treat as gone.
            Err(_) => return Some(ExitStatus::default()),
        }
    }
}

fn signal_group(child: &Child, signal: rustix::process::Signal) {
    // ESRCH (the group is already empty) is the usual answer after a clean exit.
    let _ = rustix::process::kill_process_group(rustix::process::Pid::from_child(child), signal);
}

/// The last [`LOG_BYTES_MAX`] bytes of a stream, and the live log they are streamed to.
#[derive(Default)]
struct Tail {
    buf: VecDeque<u8>,
    live: Option<LiveLog>,
}

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        let bytes = &bytes[bytes.len().saturating_sub(LOG_BYTES_MAX)..];
        let overflow = (self.buf.len() + bytes.len()).saturating_sub(LOG_BYTES_MAX);
        self.buf.drain(..overflow);
        self.buf.extend(bytes);
        debug_assert!(self.buf.len() <= LOG_BYTES_MAX);
        if let Some(live) = &mut self.live {
            let written = if live.len + bytes.len() <= LOG_BYTES_MAX {
                live.append(bytes)
            } else {
                let keep = self.buf.len().saturating_sub(LOG_LIVE_KEEP_BYTES);
                live.replace(&self.buf.iter().skip(keep).copied().collect::<Vec<u8>>())
            };
            if let Err(e) = written {
                // The final log is still written when the child ends; only the live view stops.
                eprintln!("darkmatter: cannot stream the agent log: {e}");
                self.live = None;
            }
        }
    }

    fn bytes(&self) -> Vec<u8> {
        self.buf.iter().copied().collect()
    }
}

/// A child's log file while it runs: appended to, cut back when it reaches [`LOG_BYTES_MAX`].
struct LiveLog {
    file: fs::File,
    len: usize,
}

impl LiveLog {
    /// The log at `path`, created empty (0600) now: `None` (no live view) when it cannot be.
    fn open(path: &Path) -> Option<Self> {
        let opened = write_log(path, b"").and_then(|()| OpenOptions::new().append(true).open(path));
        match opened {
            Ok(file) => Some(Self { file, len: 0 }),
            Err(e) => {
                eprintln!("darkmatter: cannot open the agent log {}: {e}", path.display());
                None
            }
        }
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.len += bytes.len();
        Ok(())
    }

    fn replace(&mut self, bytes: &[u8]) -> io::Result<()> {
        // Append mode writes at the end whatever the offset: truncating to 0 empties the file.
        self.file.set_len(0)?;
        self.len = 0;
        self.append(bytes)
    }
}

fn collect(mut reader: io::PipeReader, sink: &Mutex<Tail>) {
    let mut chunk = [0u8; 8192];
    loop {
        match reader.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => sink.lock().unwrap_or_else(|p| p.into_inner()).push(&chunk[..n]),
        }
    }
}

/// Writes a log file readable by its owner only (its directory private too).
fn write_log(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        crate::storage::ensure_dir(dir).map_err(io::Error::other)?;
    }
    let mut f = OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    // A log left by an older run may be wider: never keep it so.
    fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto_core::spawn::SpawnTrigger;

    /// A launcher that starts one fixed command and records which children finished.
    struct Fake {
        launch: Launch,
        finished: Mutex<Vec<SpawnId>>,
    }

    impl Launcher for Fake {
        fn prepare(&self, _: &SpawnRequest) -> Result<Launch, String> {
            Ok(self.launch.clone())
        }
        fn finished(&self, id: SpawnId) {
            self.finished.lock().unwrap().push(id);
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dm-spawn-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn sh(dir: &Path, script: &str, timeout_ms: u64) -> Arc<Fake> {
        let launch = Launch {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![("DM_TEST".into(), "yes".into())],
            env_remove: vec![],
            stdin: None,
            cwd: dir.to_owned(),
            log: dir.join("spawn").join("m1.log"),
            timeout: Duration::from_millis(timeout_ms),
            client: "claude-code".into(),
        };
        Arc::new(Fake { launch, finished: Mutex::new(Vec::new()) })
    }

    fn request(id: u64) -> SpawnRequest {
        SpawnRequest {
            spawn_id: SpawnId(id),
            trigger: SpawnTrigger::Message { message_id: "m1".into() },
            sender_id: "a".into(),
            sender_name: String::new(),
            sender_trust: 0.0,
            context: vec![],
        }
    }

    /// Runs `fake` and returns how its child ended, and how long it took.
    fn run(fake: &Arc<Fake>, id: u64) -> (SpawnOutcome, Duration) {
        let (tx, rx) = async_channel::bounded(4);
        let t0 = Instant::now();
        start(fake.clone(), &request(id), tx, &Children::default()).unwrap();
        match rx.recv_blocking().unwrap() {
            Input::SpawnExit(got, outcome) => {
                assert_eq!(got, SpawnId(id));
                (outcome, t0.elapsed())
            }
            _ => panic!("only spawn exits come back"),
        }
    }

    fn alive(pid: i32) -> bool {
        let pid = rustix::process::Pid::from_raw(pid).unwrap();
        rustix::process::test_kill_process(pid).is_ok()
    }

    #[test]
    fn a_hung_child_and_its_grandchild_are_killed_after_the_timeout() {
        let dir = temp_dir("hung");
        let fake = sh(&dir, "sleep 30 & echo $! > grandchild; echo started; sleep 30", 300);
        let (outcome, took) = run(&fake, 1);
        assert_eq!(outcome, SpawnOutcome::TimedOut);
        assert!(took < Duration::from_millis(300 + KILL_GRACE_MS), "took {took:?}");
        let grandchild: i32 = fs::read_to_string(dir.join("grandchild")).unwrap().trim().parse().unwrap();
        // Reaped by init a moment later at most; it must not be running any more.
        let gone = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            !alive(grandchild) || is_zombie(grandchild)
        });
        assert!(gone, "grandchild {grandchild} survived");
        assert_eq!(*fake.finished.lock().unwrap(), [SpawnId(1)]);
        let log = dir.join("spawn").join("m1.log");
        assert_eq!(fs::read_to_string(&log).unwrap(), "started\n");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&log).unwrap().permissions().mode() & 0o777, 0o600);
    }

    fn is_zombie(pid: i32) -> bool {
        fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z')))
    }

    #[test]
    fn exit_code_environment_and_stdin_reach_the_child_and_its_log() {
        let dir = temp_dir("exit");
        let mut fake = sh(&dir, "echo \"$DM_TEST\"; cat; exit 3", 10_000);
        Arc::get_mut(&mut fake).unwrap().launch.stdin = Some(b"the prompt".to_vec());
        let (outcome, _) = run(&fake, 2);
        assert_eq!(outcome, SpawnOutcome::Exited { code: Some(3) });
        assert_eq!(fs::read_to_string(dir.join("spawn").join("m1.log")).unwrap(), "yes\nthe prompt");
    }

    #[test]
    fn stopping_the_node_kills_every_live_child() {
        let dir = temp_dir("stop");
        let fake = sh(&dir, "sleep 30 & echo $! > grandchild; sleep 30", 60_000);
        let children = Children::default();
        let (tx, rx) = async_channel::bounded(4);
        start(fake.clone(), &request(4), tx, &children).unwrap();
        assert_eq!(children.len(), 1);
        let file = dir.join("grandchild");
        let grandchild = (0..200).find_map(|_| {
            std::thread::sleep(Duration::from_millis(10));
            fs::read_to_string(&file).ok()?.trim().parse::<i32>().ok()
        });
        children.kill_all();
        assert!(matches!(rx.recv_blocking(), Ok(Input::SpawnExit(SpawnId(4), SpawnOutcome::Exited { code: None }))));
        assert!(children.is_empty());
        let grandchild = grandchild.expect("the grandchild started");
        let gone = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            !alive(grandchild) || is_zombie(grandchild)
        });
        assert!(gone);
    }

    #[test]
    fn a_missing_command_names_itself_and_the_client() {
        let dir = temp_dir("missing");
        let mut fake = sh(&dir, "", 1_000);
        Arc::get_mut(&mut fake).unwrap().launch.program = "dm-no-such-client".into();
        let (tx, _rx) = async_channel::bounded(1);
        let err = start(fake.clone(), &request(3), tx, &Children::default()).unwrap_err();
        assert!(err.starts_with("command not found: dm-no-such-client (DARKMATTER_CLIENT=claude-code"), "{err}");
        assert_eq!(*fake.finished.lock().unwrap(), [SpawnId(3)]);
    }

    #[test]
    fn a_live_childs_log_is_written_as_it_runs() {
        let dir = temp_dir("live-log");
        let fake = sh(&dir, "echo started; sleep 30", 60_000);
        let children = Children::default();
        let (tx, rx) = async_channel::bounded(4);
        start(fake.clone(), &request(5), tx, &children).unwrap();
        let log = dir.join("spawn").join("m1.log");
        let seen = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            fs::read_to_string(&log).is_ok_and(|t| t == "started\n")
        });
        assert!(seen, "the log shows the output while the child runs");
        children.kill_all();
        assert!(rx.recv_blocking().is_ok());
    }

    #[test]
    fn a_live_log_stays_within_its_bound_and_ends_with_the_last_bytes() {
        let dir = temp_dir("live-bound");
        let path = dir.join("spawn").join("big.log");
        let mut t = Tail { live: LiveLog::open(&path), ..Tail::default() };
        for i in 0..100u8 {
            t.push(&vec![b'a' + i % 26; 8192]);
            let len = fs::metadata(&path).unwrap().len() as usize;
            assert!(len <= LOG_BYTES_MAX, "{len} bytes after chunk {i}");
        }
        let text = fs::read(&path).unwrap();
        assert!(text.len() >= LOG_LIVE_KEEP_BYTES);
        assert_eq!(&text[text.len() - 8192..], &vec![b'a' + 99 % 26; 8192][..], "the newest output is there");
    }

    #[test]
    fn the_tail_keeps_exactly_the_last_bytes() {
        let mut t = Tail::default();
        t.push(&vec![b'a'; LOG_BYTES_MAX - 1]);
        t.push(b"bc");
        let bytes = t.bytes();
        assert_eq!(bytes.len(), LOG_BYTES_MAX);
        assert_eq!(&bytes[bytes.len() - 2..], b"bc");
        t.push(&vec![b'z'; LOG_BYTES_MAX + 10]);
        assert_eq!(t.bytes(), vec![b'z'; LOG_BYTES_MAX]);
    }
}
