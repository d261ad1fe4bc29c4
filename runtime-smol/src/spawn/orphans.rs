//! Live children's process groups on disk, so a node killed hard (kill -9, a power cut) does not
//! leave its agents running unwatched: nothing else would ever enforce their timeouts.
//!
//! One file per group, named by the group id, holding the kernel's boot id and the leader's start
//! time (`/proc/<pid>/stat`, clock ticks since boot). A process id is reused once its process is
//! gone, so at the next start a group is killed only when one of its members is recognisably ours:
//! started in the same boot, no earlier than the recorded leader. A group id cannot be handed out
//! again while any member lives, so a surviving member with that group and a later start is one of
//! the agent's (its leader may have exited and left helpers behind).

use std::fs;
use std::io;
use std::path::Path;

/// Most group records read at start-up: no more can be live than a node ever allowed at once, and
/// a directory filled by something else must not stall the start.
pub const ORPHAN_RECORDS_MAX: usize = 1024;

/// Records `group` (whose leader is the process of the same id) as live under `dir`.
pub fn record(dir: &Path, group: i32) -> io::Result<()> {
    crate::storage::ensure_dir(dir).map_err(io::Error::other)?;
    let start = stat(group).map(|s| s.start).ok_or_else(|| io::Error::other("the agent is already gone"))?;
    let text = format!("{} {start}\n", boot_id().unwrap_or_default());
    let path = dir.join(group.to_string());
    let mut f = fs::OpenOptions::new();
    std::os::unix::fs::OpenOptionsExt::mode(f.create(true).write(true).truncate(true), 0o600);
    io::Write::write_all(&mut f.open(&path)?, text.as_bytes())
}

/// Kills every recorded group a member of which still runs, and forgets all records. Returns the
/// groups killed.
pub fn kill_left(dir: &Path) -> Vec<i32> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let boot = boot_id().unwrap_or_default();
    let mut killed = Vec::new();
    for entry in entries.flatten().take(ORPHAN_RECORDS_MAX) {
        let path = entry.path();
        let group = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok());
        let recorded = fs::read_to_string(&path).ok();
        let _ = fs::remove_file(&path);
        let (Some(group), Some(recorded)) = (group, recorded) else { continue };
        let mut words = recorded.split_whitespace();
        let (Some(b), Some(start)) = (words.next(), words.next().and_then(|s| s.parse::<u64>().ok())) else {
            continue;
        };
        if b == boot && group > 1 && group != own_group() && has_member_since(group, start) {
            if let Some(pid) = rustix::process::Pid::from_raw(group) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                killed.push(group);
            }
        }
    }
    killed
}

/// What `/proc/<pid>/stat` says of a process.
struct Stat {
    group: i32,
    start: u64,
}

fn stat(pid: i32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from its last ')'.
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    // Field n of proc(5) is fields[n - 3]: pgrp is field 5, starttime field 22.
    Some(Stat { group: fields.get(2)?.parse().ok()?, start: fields.get(19)?.parse().ok()? })
}

/// Whether a process of `group` started no earlier than `start` still runs.
fn has_member_since(group: i32, start: u64) -> bool {
    let Ok(procs) = fs::read_dir("/proc") else { return false };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(stat)
        .any(|s| s.group == group && s.start >= start)
}

fn own_group() -> i32 {
    rustix::process::getpgrp().as_raw_nonzero().get()
}

fn boot_id() -> Option<String> {
    Some(fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("dm-orphans-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_recorded_group_still_running_is_killed_and_forgotten() {
        let d = dir("live");
        let mut child = Command::new("/bin/sh").args(["-c", "sleep 30 & sleep 30"]).process_group(0).spawn().unwrap();
        let group = child.id() as i32;
        record(&d, group).unwrap();
        assert_eq!(kill_left(&d), vec![group]);
        let status = child.wait().unwrap();
        assert!(!status.success(), "killed");
        assert_eq!(fs::read_dir(&d).unwrap().count(), 0, "records forgotten");
    }

    #[test]
    fn a_record_whose_group_is_gone_or_reused_kills_nothing() {
        let d = dir("gone");
        let mut child = Command::new("/bin/true").process_group(0).spawn().unwrap();
        let group = child.id() as i32;
        record(&d, group).unwrap();
        child.wait().unwrap();
        assert_eq!(kill_left(&d), Vec::<i32>::new());
        // Our own group, recorded with an old start, is never ours to kill.
        fs::write(d.join(own_group().to_string()), format!("{} 0\n", boot_id().unwrap())).unwrap();
        // Another boot's record is stale whatever runs now.
        fs::write(d.join("1234567"), "another-boot 0\n").unwrap();
        assert_eq!(kill_left(&d), Vec::<i32>::new());
    }
}
