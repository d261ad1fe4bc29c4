//! Local changes to the node's own profile (SPEC §9.2, §14): a rename is bounded, durable and reaches
//! every connection in the signed update that covers the name.

use darkmatter_tests::harness::Mesh;
use proto_core::limits::DISPLAY_NAME_CHARS_MAX;
use proto_core::Command;

fn connect(m: &mut Mesh, from: usize, to: usize) {
    let url = m.peers[to].url.clone();
    m.command(from, Command::Connect { target_url: url }).expect("connect");
}

fn name_seen_by(m: &mut Mesh, at: usize, of: usize) -> String {
    let id = m.id(of);
    let list = m.command(at, Command::ListConnections).unwrap();
    let conn = list["connections"].as_array().unwrap().iter().find(|c| c["agent_id"] == id.as_str()).cloned();
    conn.unwrap_or_else(|| panic!("{id} not in {list}"))["display_name"].as_str().unwrap().to_owned()
}

fn rename(m: &mut Mesh, at: usize, name: &str) -> Result<serde_json::Value, proto_core::CommandError> {
    m.command(at, Command::Rename { display_name: name.to_owned() })
}

#[test]
fn a_rename_reaches_every_connection_signed() {
    let mut m = Mesh::new();
    let (a, b, c) = (m.add("A", true), m.add("B", true), m.add("C", true));
    connect(&mut m, a, b);
    connect(&mut m, c, a);
    assert_eq!(name_seen_by(&mut m, b, a), "A");
    m.advance(1_000);
    let done = rename(&mut m, a, "Ada").unwrap();
    assert_eq!(done["display_name"], "Ada");
    assert_eq!(done["peers_notified"], 2);
    assert_eq!(name_seen_by(&mut m, b, a), "Ada");
    assert_eq!(name_seen_by(&mut m, c, a), "Ada");
    assert_eq!(m.command(a, Command::GetIdentity).unwrap()["display_name"], "Ada");
    assert!(m.trace.iter().any(|l| l.contains("peer_update")), "sent as a peer_update");
}

#[test]
fn a_name_is_one_to_the_limit_characters_without_control_characters() {
    let mut m = Mesh::new();
    let a = m.add("A", true);
    assert!(rename(&mut m, a, &"é".repeat(DISPLAY_NAME_CHARS_MAX)).is_ok());
    assert!(rename(&mut m, a, &"é".repeat(DISPLAY_NAME_CHARS_MAX + 1)).is_err());
    assert!(rename(&mut m, a, "").is_err());
    assert!(rename(&mut m, a, "two\nlines").is_err());
    let name = m.command(a, Command::GetIdentity).unwrap()["display_name"].as_str().unwrap().to_owned();
    assert_eq!(name, "é".repeat(DISPLAY_NAME_CHARS_MAX), "a refused rename changes nothing");
}

#[test]
fn a_rename_is_durable_unless_the_runtime_configures_a_name() {
    let mut m = Mesh::new();
    let a = m.add("A", true);
    rename(&mut m, a, "Ada").unwrap();
    // The harness configures every node's name: that one wins at start (SPEC §14).
    m.restart(a);
    assert_eq!(m.command(a, Command::GetIdentity).unwrap()["display_name"], "A");
    m.peers[a].config.display_name = String::new();
    rename(&mut m, a, "Ada").unwrap();
    m.restart(a);
    assert_eq!(m.command(a, Command::GetIdentity).unwrap()["display_name"], "Ada");
}
