//! Attach mode: a second `darkmatter` in the same project shares the running node over a 0600 Unix
//! socket instead of fighting it for the port and the state file.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{free_port, project, until, Proc};
use serde_json::json;

#[test]
fn second_process_attaches_and_shares_the_node() {
    let dir = project("attach");
    let port = free_port();
    let mut first = Proc::start(&dir, port, &[("DARKMATTER_DISPLAY_NAME", "one")]);
    first.initialize();
    let id = first.ok("darkmatter_get_identity", json!({}));

    let sock = dir.join(".darkmatter/node.sock");
    assert!(until(Duration::from_secs(5), || sock.exists()), "socket exists");
    assert_eq!(std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777, 0o600);

    // Same project, same port: it must not start a second node.
    let mut second = Proc::start(&dir, port, &[("DARKMATTER_DISPLAY_NAME", "one")]);
    second.initialize();
    let id2 = second.ok("darkmatter_get_identity", json!({}));
    assert_eq!(id["agent_id"], id2["agent_id"]);
    assert_eq!(id2["url"], format!("http://127.0.0.1:{port}"));

    // A change made through one session is seen through the other.
    second.ok("darkmatter_update_bio", json!({"bio": "set from the attached session"}));
    assert_eq!(first.ok("darkmatter_get_identity", json!({}))["bio"], "set from the attached session");
    let s = first.ok("darkmatter_send_message", json!({"content": "x", "broadcast": true}));
    let listed = second.ok("darkmatter_list_messages", json!({}));
    assert_eq!(listed["messages"][0]["message_id"], s["message_id"]);

    // Bad input is checked the same way through the socket.
    let (err, v) = second.call("darkmatter_get_message", json!({"nope": 1}));
    assert!(err && v["error"].as_str().unwrap().contains("unknown field"), "{v}");

    // The owner's client leaves first: the node stays up for the attached session.
    assert!(!first.close(Duration::from_millis(500)), "the owner waits for attached sessions");
    assert_eq!(second.ok("darkmatter_get_identity", json!({}))["agent_id"], id["agent_id"]);
    assert!(second.close(Duration::from_secs(5)));
    assert!(first.close(Duration::from_secs(10)), "then the owner stops the node and exits");
    assert!(!sock.exists(), "socket removed");
}

#[test]
fn a_fresh_process_takes_over_after_the_owner_exits() {
    let dir = project("takeover");
    let port = free_port();
    let id = {
        let mut first = Proc::start(&dir, port, &[]);
        first.initialize();
        let id = first.ok("darkmatter_get_identity", json!({}))["agent_id"].clone();
        assert!(first.close(Duration::from_secs(10)));
        id
    };
    let mut again = Proc::start(&dir, port, &[]);
    again.initialize();
    assert_eq!(again.ok("darkmatter_get_identity", json!({}))["agent_id"], id, "same identity, node restarted");
}
