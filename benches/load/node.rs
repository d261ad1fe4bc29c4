//! A headless node (`darkmatter-node`, or the tests' `smol-node`) as a child process, driven over its
//! control lines; every wait is bounded.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proto_core::Passport;
use serde_json::{json, Value};

/// Wait for a node's ready line, in ms.
pub const READY_WAIT_MS: u64 = 30_000;
/// Wait for one control answer, in ms.
pub const CONTROL_WAIT_MS: u64 = 20_000;
/// Wait for a node to stop after its stdin closed, in ms; then it is killed.
pub const EXIT_WAIT_MS: u64 = 10_000;

/// What a node is started with: binary, state directory, variables.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The node binary.
    pub binary: PathBuf,
    /// Its working directory (state in `.darkmatter/` below it).
    pub dir: PathBuf,
    /// `DARKMATTER_*` variables on top of loopback, discovery off and no anchors.
    pub vars: Vec<(String, String)>,
}

impl Spec {
    /// A node in `dir` on 127.0.0.1 (`port` 0: any) named `name`.
    pub fn new(binary: &Path, dir: &Path, name: &str, port: u16) -> Self {
        let vars = [
            ("DARKMATTER_HOST", "127.0.0.1".to_owned()),
            ("DARKMATTER_PORT", port.to_string()),
            ("DARKMATTER_DISCOVERY", "false".to_owned()),
            ("DARKMATTER_ANCHOR_NODES", String::new()),
            ("DARKMATTER_DISPLAY_NAME", name.to_owned()),
        ];
        Self {
            binary: binary.to_owned(),
            dir: dir.to_owned(),
            vars: vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        }
    }

    /// The same with `name=value` set.
    pub fn var(mut self, name: &str, value: &str) -> Self {
        self.vars.retain(|(k, _)| k != name);
        self.vars.push((name.to_owned(), value.to_owned()));
        self
    }
}

struct Control {
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Value>,
    next_id: u64,
}

/// A running node. Control calls from several threads are serialised.
pub struct NodeProc {
    child: Mutex<Child>,
    control: Mutex<Control>,
    /// Its ready line (`agent_id`, `url`, `listen`).
    pub ready: Value,
    /// Its process id.
    pub pid: u32,
}

impl NodeProc {
    /// Starts a node and waits for its ready line.
    pub fn spawn(spec: &Spec) -> Result<Self, String> {
        std::fs::create_dir_all(&spec.dir).map_err(|e| format!("{}: {e}", spec.dir.display()))?;
        let mut cmd = Command::new(&spec.binary);
        cmd.current_dir(&spec.dir).env("HOME", &spec.dir).stdin(Stdio::piped()).stdout(Stdio::piped());
        cmd.stderr(Stdio::null());
        for (k, v) in &spec.vars {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().map_err(|e| format!("spawn {}: {e}", spec.binary.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        });
        let ready = lines.recv_timeout(Duration::from_millis(READY_WAIT_MS));
        let pid = child.id();
        let stdin = child.stdin.take();
        let mut me = Self {
            child: Mutex::new(child),
            control: Mutex::new(Control { stdin, lines, next_id: 1 }),
            ready: Value::Null,
            pid,
        };
        // On an error `me` is dropped, which kills the child.
        me.ready = ready.map_err(|_| format!("{}: no ready line", spec.dir.display()))?;
        if me.ready["ready"] != true {
            return Err(format!("{}: {}", spec.dir.display(), me.ready));
        }
        Ok(me)
    }

    /// Its agent id.
    pub fn agent_id(&self) -> String {
        self.ready["agent_id"].as_str().unwrap_or_default().to_owned()
    }

    /// Its peer URL.
    pub fn url(&self) -> String {
        self.ready["url"].as_str().unwrap_or_default().to_owned()
    }

    /// Its listening address.
    pub fn addr(&self) -> Result<SocketAddr, String> {
        self.ready["listen"].as_str().unwrap_or_default().parse().map_err(|e| format!("listen address: {e}"))
    }

    /// One control command: its result, or its error answer as text.
    pub fn call(&self, mut line: Value) -> Result<Value, String> {
        let mut c = self.control.lock().unwrap_or_else(|p| p.into_inner());
        let id = c.next_id;
        c.next_id += 1;
        line["id"] = json!(id);
        let stdin = c.stdin.as_mut().ok_or("stdin closed")?;
        writeln!(stdin, "{line}").and_then(|_| stdin.flush()).map_err(|e| format!("control: {e}"))?;
        let end = Instant::now() + Duration::from_millis(CONTROL_WAIT_MS);
        loop {
            let left = end.checked_duration_since(Instant::now()).ok_or_else(|| format!("no answer to {line}"))?;
            let v = c.lines.recv_timeout(left).map_err(|_| format!("no answer to {line}"))?;
            if v["id"] == json!(id) {
                return if v["ok"] == true { Ok(v["result"].clone()) } else { Err(v.to_string()) };
            }
        }
    }

    /// SIGKILL and reap.
    pub fn kill9(&self) {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Whether the process has exited (and how).
    pub fn exited(&self) -> Option<std::process::ExitStatus> {
        self.child.lock().unwrap_or_else(|p| p.into_inner()).try_wait().ok().flatten()
    }

    /// Closes stdin (a clean stop) and waits; kills after [`EXIT_WAIT_MS`]. The exit code, if any.
    pub fn stop(&self) -> Option<i32> {
        self.control.lock().unwrap_or_else(|p| p.into_inner()).stdin = None;
        let end = Instant::now() + Duration::from_millis(EXIT_WAIT_MS);
        while Instant::now() < end {
            if let Some(status) = self.exited() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill9();
        None
    }

    /// Resident memory now, in KiB (`VmRSS` of `/proc/<pid>/status`; `None` off Linux or once gone).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if self.exited().is_none() {
            self.kill9();
        }
    }
}

/// The passport a node keeps in `dir` (the bench signs as that node).
pub fn passport_in(dir: &Path) -> Result<Passport, String> {
    let path = dir.join(".darkmatter").join("passport.key");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Passport::from_file_contents(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Connects `peer` to `target` through the real handshake; when the target queues the request (local
/// auto-accept off), its agent accepts it. Waits until the target lists the connection.
pub fn connect(peer: &NodeProc, target: &NodeProc) -> Result<(), String> {
    let r = peer.call(json!({"cmd": "connect", "target_url": target.url()}))?;
    let peer_id = peer.agent_id();
    if r["status"] != "connected" {
        let pending = target.call(json!({"cmd": "list_pending"}))?;
        let request = pending["requests"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["agent_id"] == peer_id.as_str()))
            .and_then(|p| p["request_id"].as_str())
            .ok_or_else(|| format!("the target has no request from the peer: {pending}"))?;
        target.call(json!({"cmd": "accept", "request_id": request}))?;
    }
    let end = Instant::now() + Duration::from_millis(CONTROL_WAIT_MS);
    while Instant::now() < end {
        let l = target.call(json!({"cmd": "list_connections"}))?;
        if l["connections"].as_array().is_some_and(|c| c.iter().any(|c| c["agent_id"] == peer_id.as_str())) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err("the target never listed the peer's connection".to_owned())
}

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh directory under the system's temporary directory.
    pub fn new(tag: &str) -> Result<Self, String> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let p = std::env::temp_dir().join(format!("dm-load-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        Ok(Self(p))
    }

    /// A subdirectory path (not created).
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
