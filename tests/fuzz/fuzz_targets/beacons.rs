//! LAN discovery beacons: `Node::handle_datagram` on fuzzed payloads. A fuzzer cannot forge an
//! Ed25519 signature, so a second mode re-signs whatever decodes as a beacon with a fixed peer
//! identity, reaching what happens after the signature check (freshness, the discovered list).
//!
//! Input: one flags byte (bit 0: IPv6 source; bit 1: re-sign as the peer; bit 2: also stamp it
//! with the node's clock), then the datagram payload.
#![no_main]

use std::net::{IpAddr, Ipv6Addr};

use darkmatter_fuzz::{drain, fresh_node, now_at, Disk, PEER_PASSPORT_SEED, REMOTE_SOURCE};
use libfuzzer_sys::fuzz_target;
use proto_core::sign::{self, DOMAIN_LAN_BEACON};
use proto_core::wire::{self, discovery::Beacon};
use proto_core::{InboundId, InboundRequest, Method, Now, Passport};

const IPV6_SOURCE: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7));

/// `payload` as the peer would have sent it: its id and key, its signature (and `now`'s time).
fn signed_by_peer(payload: &[u8], now: Option<Now>) -> Option<Vec<u8>> {
    let mut b: Beacon = wire::decode(payload).ok()?;
    let peer = Passport::from_seed(PEER_PASSPORT_SEED);
    b.agent_id = peer.agent_id().as_str().to_owned();
    b.public_key_hex = b.agent_id.clone();
    if let Some(now) = now {
        b.ts = now.unix_s();
    }
    let bytes = sign::domain_bytes(DOMAIN_LAN_BEACON, &[&b.agent_id, &b.port.to_string(), &b.ts.to_string()]).ok()?;
    b.beacon_signature_hex = sign::sign_hex(&peer, &bytes);
    Some(wire::encode(&b))
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, payload)) = data.split_first() else { return };
    let source = if flags & 1 == 1 { IPV6_SOURCE } else { REMOTE_SOURCE };
    let now = now_at(1);
    let payload = match flags & 2 {
        0 => payload.to_vec(),
        _ => signed_by_peer(payload, (flags & 4 == 4).then_some(now)).unwrap_or_else(|| payload.to_vec()),
    };
    let mut node = fresh_node();
    let mut disk = Disk::new();
    drain(&mut node, now_at(0), &mut disk);
    // Twice: a repeated beacon updates the entry it made.
    for _ in 0..2 {
        node.handle_datagram(now, source, &payload);
        drain(&mut node, now, &mut disk);
    }
    // What was discovered is shown to peers: the answer must still be a JSON object.
    let id = InboundId(0);
    let path = "/__darkmatter__/network_info".to_owned();
    node.handle_request(now, InboundRequest { id, method: Method::Get, path, body: Vec::new(), source: None });
    assert_eq!(drain(&mut node, now, &mut disk), vec![id]);
    node.handle_timeout(now_at(600));
    drain(&mut node, now_at(600), &mut disk);
});
