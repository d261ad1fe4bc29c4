//! Wallets in connection handshakes and `network_info` (SPEC §5.4, §17.1): every node advertises the
//! Solana address derived from its passport, each side of a handshake keeps the other's, and a signed
//! handshake binds the address, so no one on the path can swap it for their own.

use darkmatter_tests::harness::Mesh;
use proto_core::sign::{sign_hex, v2_bytes, V2_CONNECT};
use proto_core::wallet::Wallet;
use proto_core::{Command, Method, Passport};
use serde_json::{json, Value};

fn address(m: &Mesh, i: usize) -> String {
    Wallet::from_passport_seed(&m.peers[i].seed).address().to_base58()
}

/// `at`'s record of `peer`'s wallets.
fn wallets_of(m: &mut Mesh, at: usize, peer: usize) -> Value {
    let list = m.command(at, Command::ListConnections).unwrap();
    let id = m.id(peer);
    list["connections"].as_array().unwrap().iter().find(|c| c["agent_id"] == id.as_str()).expect("connected")["wallets"]
        .clone()
}

#[test]
fn both_sides_of_each_handshake_keep_the_others_derived_wallet() {
    let mut m = Mesh::new();
    let (a, b, c) = (m.add("A", true), m.add("B", false), m.add("C", true));
    // A → B answered at once (auto-accepted), B → C answered pending, then accepted.
    let url = m.peers[b].url.clone();
    assert_eq!(m.command(a, Command::Connect { target_url: url }).unwrap()["status"], "connected");
    let url = m.peers[c].url.clone();
    assert_eq!(m.command(b, Command::Connect { target_url: url }).unwrap()["status"], "pending");
    let pending = m.command(c, Command::ListPending).unwrap();
    let request_id = pending["requests"][0]["request_id"].as_str().unwrap().to_owned();
    m.command(c, Command::Accept { request_id }).unwrap();
    for (at, peer) in [(a, b), (b, a), (b, c), (c, b)] {
        assert_eq!(wallets_of(&mut m, at, peer), json!({"solana": address(&m, peer)}), "{at} knows {peer}'s");
    }
    let info = m.command(a, Command::NetworkInfo).unwrap();
    assert_eq!(info["wallets"], json!({"solana": address(&m, a)}));
}

/// A signed connection request from `from` (by seed) to `to` naming `wallet`.
fn signed_request(m: &Mesh, from: usize, to: usize, wallet: &str) -> Value {
    let passport = Passport::from_seed(m.peers[from].seed);
    let (id, url, target) = (m.id(from), m.peers[from].url.clone(), m.peers[to].url.clone());
    let stamp = proto_core::time::format_iso(m.now.wall_us);
    let bytes = v2_bytes(V2_CONNECT, &[&id, &url, "", "X", &target, &stamp, wallet]);
    json!({
        "from_agent_id": id, "from_agent_url": url, "from_agent_bio": "", "from_agent_display_name": "X",
        "from_agent_public_key_hex": id, "target_url": target, "timestamp": stamp,
        "wallets": {"solana": wallet}, "dm_signature_hex": sign_hex(&passport, &bytes),
    })
}

#[test]
fn a_wallet_swapped_on_the_path_breaks_the_signature() {
    let mut m = Mesh::new();
    let (a, b) = (m.add("A", true), m.add("B", true));
    let ip = m.peers[a].ip;
    let mallory = Wallet::from_passport_seed(&[0x66; 32]).address().to_base58();
    let mut body = signed_request(&m, a, b, &address(&m, a));
    body["wallets"]["solana"] = json!(mallory);
    let (status, answer) =
        m.inject(b, Method::Post, "/__darkmatter__/connection_request", body.to_string().as_bytes(), ip);
    assert_eq!(status, 403, "{answer}");
    // Stripping the wallet breaks it as well.
    let mut body = signed_request(&m, a, b, &address(&m, a));
    body.as_object_mut().unwrap().remove("wallets");
    let (status, _) = m.inject(b, Method::Post, "/__darkmatter__/connection_request", body.to_string().as_bytes(), ip);
    assert_eq!(status, 403);
    // The request as signed is taken, and its wallet kept.
    let body = signed_request(&m, a, b, &address(&m, a));
    let (status, answer) =
        m.inject(b, Method::Post, "/__darkmatter__/connection_request", body.to_string().as_bytes(), ip);
    assert_eq!((status, &answer["auto_accepted"]), (200, &json!(true)), "{answer}");
    assert_eq!(wallets_of(&mut m, b, a), json!({"solana": address(&m, a)}));
    // The answer carries B's wallet, in `wallets` and in 0.5.3's legacy field.
    assert_eq!(answer["wallets"], json!({"solana": address(&m, b)}));
    assert_eq!(answer["wallet_address"], json!(address(&m, b)));
}
