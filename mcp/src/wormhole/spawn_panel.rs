//! The spawn panel: live agents spawned by *local* nodes (their state directories are given with
//! `--agent DIR`), read from the records a node keeps of its live children's process groups
//! (`<DIR>/spawn/live/<group>`: boot id and leader start time), with the newest agent log's tail,
//! a Kill that ends a listed group, and a switch of each node's spawning. Nothing goes over the mesh:
//! this is the local machine's process table, files and the nodes' own attach sockets, and only
//! groups a local node recorded (and whose leader is still the recorded process) can be killed.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::http::Response;
use super::{auth, now_s, Wormhole};

/// Live records read per node (a node never has more children than its cap; a directory filled by
/// something else must not stall the page).
pub const RECORDS_PER_NODE_MAX: usize = 64;
/// Bytes of the newest log shown.
pub const LOG_TAIL_BYTES: usize = 4 * 1024;
/// Bytes of a process's command line shown.
pub const CMDLINE_BYTES_MAX: usize = 512;

/// One live child.
#[derive(Debug, Clone, PartialEq)]
pub struct Child {
    /// The node's state directory.
    pub node: PathBuf,
    /// Process group (= the leader's pid).
    pub group: i32,
    /// The leader's command line.
    pub cmdline: String,
    /// Seconds since the leader started.
    pub age_s: u64,
    /// It runs under `darkmatter sandbox-exec`.
    pub sandboxed: bool,
}

/// `(pgrp, starttime in clock ticks)` of a running process, from `/proc/<pid>/stat`; `None` for a
/// zombie (dead, waiting for its parent to reap it: nothing left to kill).
fn stat(pid: i32) -> Option<(i32, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: count from its last ')'.
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    Some((fields.get(2)?.parse().ok()?, fields.get(19)?.parse().ok()?))
}

fn uptime_ticks() -> Option<u64> {
    let up: f64 = fs::read_to_string("/proc/uptime").ok()?.split_whitespace().next()?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some((up * hz) as u64)
}

fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_owned()).unwrap_or_default()
}

/// Whether the record `text` of `group` names the process that leads it now.
fn recorded_leader_lives(group: i32, text: &str) -> Option<u64> {
    let mut words = text.split_whitespace();
    let (boot, start) = (words.next()?, words.next()?.parse::<u64>().ok()?);
    let (pgrp, now_start) = stat(group)?;
    (boot == boot_id() && pgrp == group && now_start == start && group > 1).then_some(start)
}

/// The live children of the node whose state directory is `node`.
pub fn children(node: &Path) -> Vec<Child> {
    let Ok(entries) = fs::read_dir(node.join("spawn").join("live")) else { return Vec::new() };
    let hz = {
        // SAFETY: sysconf only reads a system constant.
        (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as u64
    };
    let mut out = Vec::new();
    for e in entries.flatten().take(RECORDS_PER_NODE_MAX) {
        let Some(group) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Some(start) = fs::read_to_string(e.path()).ok().and_then(|t| recorded_leader_lives(group, &t)) else {
            continue;
        };
        let raw = fs::read(format!("/proc/{group}/cmdline")).unwrap_or_default();
        let cmdline: String =
            String::from_utf8_lossy(&raw[..raw.len().min(CMDLINE_BYTES_MAX)]).replace('\0', " ").trim().to_owned();
        let age_s = uptime_ticks().map_or(0, |now| now.saturating_sub(start) / hz);
        let sandboxed = cmdline.contains("sandbox-exec");
        out.push(Child { node: node.to_owned(), group, cmdline, age_s, sandboxed });
    }
    out.sort_by_key(|c| c.group);
    out
}

/// The tail of the newest `*.log` under `<node>/spawn/`.
fn newest_log_tail(node: &Path) -> Option<String> {
    let dir = fs::read_dir(node.join("spawn")).ok()?;
    let newest = dir
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max()?;
    let bytes = fs::read(newest.1).ok()?;
    let tail = &bytes[bytes.len().saturating_sub(LOG_TAIL_BYTES)..];
    Some(String::from_utf8_lossy(tail).into_owned())
}

/// `GET /api/spawn`: every local node's live children and its newest log tail.
pub fn list(wh: &Wormhole) -> Value {
    let nodes: Vec<Value> = wh
        .agents
        .iter()
        .map(|node| {
            let kids: Vec<Value> = children(node)
                .into_iter()
                .map(|c| json!({"group": c.group, "cmdline": c.cmdline, "age_s": c.age_s, "sandboxed": c.sandboxed}))
                .collect();
            json!({"node": node.display().to_string(), "children": kids, "log_tail": newest_log_tail(node)})
        })
        .collect();
    json!({"nodes": nodes})
}

/// `POST /api/spawn/kill/<group>`: ends a listed child's whole process group (SIGKILL: a spawned
/// agent has nothing to save that its node does not already hold).
pub fn kill(wh: &Wormhole, group: &str) -> Response {
    let Ok(group) = group.parse::<i32>() else { return Response::error(400, "Bad process group") };
    if !wh.agents.iter().any(|n| children(n).iter().any(|c| c.group == group)) {
        return Response::error(404, "No such live spawned agent");
    }
    // SAFETY: killpg only sends a signal; the group was just checked to be a recorded child's.
    let rc = unsafe { libc::killpg(group, libc::SIGKILL) };
    if rc != 0 {
        return Response::error(409, &std::io::Error::last_os_error().to_string());
    }
    Response::json(200, &json!({"success": true, "killed": group}))
}

/// How long a toggle waits for the watched node's answer, in ms.
pub const TOGGLE_ANSWER_MS: u64 = 3_000;

/// `POST /api/spawn/toggle {node, spawning}`: switches agent spawning of a watched local node on or
/// off. It crosses that node's own attach socket (0600, same user: the local channel its sessions
/// use), never the mesh; the node's core decides (one without spawn settings refuses).
pub async fn toggle(wh: &Wormhole, body: &Map<String, Value>) -> Response {
    let (dir, on) = match target(wh, body, "spawning") {
        Ok(t) => t,
        Err(r) => return r,
    };
    relay(dir, json!({"id": 1, "cmd": "set_spawning", "enabled": on})).await
}

/// `POST /api/spawn/sandbox {node, on, passphrase}`: switches the sandbox of a watched node's next
/// agents, in the process that builds them. Turning it off needs the passphrase again (SPEC §18.2):
/// a session alone, a browser left open, must not be enough to run peer-driven agents unconfined.
pub async fn sandbox(wh: &Wormhole, body: &Map<String, Value>, ip: IpAddr) -> Response {
    let (dir, on) = match target(wh, body, "on") {
        Ok(t) => t,
        Err(r) => return r,
    };
    if !on {
        if let Err(refused) = passphrase_again(wh, body, ip) {
            return refused;
        }
    }
    relay(dir, json!({"id": 1, "cmd": "set_sandbox", "on": on})).await
}

/// The watched node `body.node` names and the switch `body[key]`: 400 when either is missing, 404
/// when the node is not one the WormHole watches.
fn target<'a>(wh: &'a Wormhole, body: &Map<String, Value>, key: &str) -> Result<(&'a Path, bool), Response> {
    let (Some(node), Some(on)) = (body.get("node").and_then(Value::as_str), body.get(key).and_then(Value::as_bool))
    else {
        return Err(Response::error(400, &format!("Give node (a watched state directory) and {key} (true or false)")));
    };
    match wh.agents.iter().find(|d| d.display().to_string() == node) {
        Some(dir) => Ok((dir.as_path(), on)),
        None => Err(Response::error(404, "Not a watched local node")),
    }
}

/// Checks `body.passphrase` against the stored hash, counted by the login limiter (so that the check
/// cannot be used to guess the passphrase faster than the login page).
fn passphrase_again(wh: &Wormhole, body: &Map<String, Value>, ip: IpAddr) -> Result<(), Response> {
    let Some(hash) = wh.passphrase.as_deref() else {
        return Err(Response::error(
            403,
            "Turning the sandbox off from the page needs a passphrase: set DARKMATTER_WORMHOLE_PASSPHRASE",
        ));
    };
    let now = now_s();
    if !wh.limiter.lock().unwrap_or_else(|p| p.into_inner()).allowed(ip, now) {
        return Err(Response::error(429, "Too many wrong passphrases; wait 15 minutes"));
    }
    let given = body.get("passphrase").and_then(Value::as_str).unwrap_or_default();
    if !auth::verify_passphrase(hash, given) {
        wh.limiter.lock().unwrap_or_else(|p| p.into_inner()).failed(ip, now);
        return Err(Response::error(403, "Wrong passphrase"));
    }
    Ok(())
}

/// Sends `line` to the node at `dir` and answers what it answered.
async fn relay(dir: &Path, line: Value) -> Response {
    let answer = smol::future::or(ask(dir, &line), async {
        smol::Timer::after(std::time::Duration::from_millis(TOGGLE_ANSWER_MS)).await;
        Err("the node did not answer in time".to_owned())
    });
    match answer.await {
        Ok(v) => match runtime_smol::control::read_answer(&v) {
            Ok(mut r) => {
                r["success"] = Value::Bool(true);
                Response::json(200, &r)
            }
            Err(e) => Response::error(409, &e.to_string()),
        },
        Err(e) => Response::error(409, &e),
    }
}

/// Sends one control line to the node whose state directory is `dir` and reads lines until its
/// answer (events may come first), each at most [`crate::attach::LINE_BYTES_MAX`].
async fn ask(dir: &Path, line: &Value) -> Result<Value, String> {
    use smol::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let socket = crate::attach::Paths::for_dir(dir).map_err(|e| e.to_string())?.socket;
    let mut stream = smol::Async::<std::os::unix::net::UnixStream>::connect(&socket)
        .await
        .map_err(|e| format!("that node is not running ({}: {e})", socket.display()))?;
    stream.write_all(format!("{line}\n").as_bytes()).await.map_err(|e| e.to_string())?;
    let mut reader = smol::io::BufReader::new(stream);
    loop {
        let mut buf = Vec::new();
        let n = (&mut reader)
            .take(crate::attach::LINE_BYTES_MAX as u64)
            .read_until(b'\n', &mut buf)
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the node closed the line".to_owned());
        }
        let v: Value = serde_json::from_slice(&buf).map_err(|_| "the node's answer does not parse".to_owned())?;
        if v["id"] == line["id"] {
            return Ok(v);
        }
    }
}
