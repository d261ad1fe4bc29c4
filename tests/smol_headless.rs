//! The headless binary: its ready line and control lines, graceful stops (SIGTERM, end of stdin),
//! refusing bad configuration, and one running node per identity.

#[path = "smol_common.rs"]
mod common;

use std::process::{Command as Proc, Stdio};
use std::time::Duration;

use common::{node_binary, ChildNode, TempDir};
use serde_json::json;

const LOOPBACK: [(&str, &str); 3] =
    [("DARKMATTER_HOST", "127.0.0.1"), ("DARKMATTER_PORT", "0"), ("DARKMATTER_DISCOVERY", "false")];

#[test]
fn control_lines_get_answers_and_end_of_stdin_stops_the_node() {
    let d = TempDir::new("hl-eof");
    let mut n = ChildNode::spawn(d.path(), &LOOPBACK);
    assert_eq!(n.agent_id().len(), 64);
    assert!(n.url().starts_with("http://127.0.0.1:"));
    let id = n.ok(json!({"cmd": "identity"}));
    assert_eq!(id["agent_id"].as_str(), Some(n.agent_id().as_str()));
    let bad = n.request(json!({"cmd": "connect"}), Duration::from_secs(5)).unwrap();
    assert_eq!(bad["ok"], false);
    assert!(bad["error"].as_str().unwrap().contains("target_url"), "{bad}");
    let unknown = n.request(json!({"cmd": "fly"}), Duration::from_secs(5)).unwrap();
    assert_eq!(unknown["ok"], false);
    let status = n.close_and_wait(Duration::from_secs(10)).expect("node exits at end of stdin");
    assert!(status.success(), "{status}");
}

#[test]
fn sigterm_stops_gracefully_and_the_identity_survives() {
    let d = TempDir::new("hl-term");
    let mut n = ChildNode::spawn(d.path(), &LOOPBACK);
    let agent = n.agent_id();
    n.ok(json!({"cmd": "update_bio", "bio": "still me"}));
    let pid = n.child.id().to_string();
    assert!(Proc::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = common::wait_for("the node to exit after SIGTERM", Duration::from_secs(10), || {
        n.child.try_wait().ok().flatten()
    });
    assert!(status.success(), "{status}");
    let mut again = ChildNode::spawn(d.path(), &LOOPBACK);
    assert_eq!(again.agent_id(), agent);
    assert_eq!(again.ok(json!({"cmd": "identity"}))["bio"], "still me");
    // The passport is 0.5.3's file, private to the user.
    use std::os::unix::fs::PermissionsExt;
    let passport = d.path().join(".darkmatter/passport.key");
    assert_eq!(std::fs::metadata(&passport).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&passport).unwrap().trim().len(), 64);
}

#[test]
fn a_second_instance_of_the_same_identity_exits_with_a_clear_error() {
    let d = TempDir::new("hl-dup");
    let _first = ChildNode::spawn(d.path(), &LOOPBACK);
    let out = Proc::new(node_binary()).current_dir(d.path()).envs(LOOPBACK).stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already running"), "{err}");
}

#[test]
fn an_invalid_variable_stops_start_up_naming_it() {
    let d = TempDir::new("hl-bad");
    for (var, value) in
        [("DARKMATTER_PORT", "eighty"), ("DARKMATTER_AGENT_TIMEOUT", "0"), ("DARKMATTER_CLIENT", "emacs")]
    {
        let out = Proc::new(node_binary())
            .current_dir(d.path())
            .envs(LOOPBACK)
            .env(var, value)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(var), "{var}: {err}");
    }
}

/// Every directory under (and including) `root` is 0700 and every other entry 0600.
fn assert_private_tree(root: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::symlink_metadata(root).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{} is {mode:o}", root.display());
    let mut files = 0;
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            assert_private_tree(&path);
        } else {
            files += 1;
            let mode = meta.permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} is {mode:o}", path.display());
        }
    }
    if root.ends_with(".darkmatter") {
        assert!(files > 0, "no state files under {}", root.display());
    }
}

#[test]
fn state_is_readable_by_its_owner_only_new_or_inherited() {
    use std::os::unix::fs::PermissionsExt;
    // New: whatever the umask, the directory is born 0700 and its files 0600, with an inbox in them.
    let d = TempDir::new("hl-modes");
    let mut n = ChildNode::spawn(d.path(), &LOOPBACK);
    n.ok(json!({"cmd": "update_bio", "bio": "private"}));
    assert_private_tree(&d.path().join(".darkmatter"));
    n.close_and_wait(Duration::from_secs(10));
    // Inherited: state an older build left readable by everyone is made private at start-up.
    let state = d.path().join(".darkmatter");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    for entry in std::fs::read_dir(&state).unwrap() {
        std::fs::set_permissions(entry.unwrap().path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let mut again = ChildNode::spawn(d.path(), &LOOPBACK);
    assert_private_tree(&state);
    again.close_and_wait(Duration::from_secs(10));
}
