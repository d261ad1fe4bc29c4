//! Discovery I/O: the LAN multicast sockets, and nothing else.
//!
//! The core decides everything: when to beacon (its beacons come out as `Output::Datagram`, which the
//! driver hands to [`send_loop`]), when to scan and which ports (probes are ordinary transmits with
//! `probe` set, which [`crate::client::Client::call`] makes with its short-connect client), how cards
//! are checked, and what `discover_local` / `discover_domain` answer. This file sets up the sockets,
//! sends what the core hands out, and feeds heard datagrams back, at most [`DATAGRAMS_PER_S_MAX`] a
//! second.
//!
//! With `DARKMATTER_DISCOVERY=false` nothing runs in the background (no beacons sent, none heard,
//! no periodic scans); an explicit `discover_local` / `discover_domain` from the agent still works.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender};
use proto_core::discovery::{BEACON_BYTES_MAX, BEACON_GROUP, BEACON_PORT};
use smol::{Async, Timer};

use crate::driver::Input;

// Card checks moved into the core (the report shapes are proto_core::output's); re-exported for the runtime's callers.
pub use proto_core::discovery::{
    domain_base, validate_card, CARD_BIO_CHARS_MAX, CARD_PATH, DOMAIN_BYTES_MAX, DOMAIN_FETCH_MS, PROBE_TIMEOUT_MS,
    SCAN_INTERVAL_S,
};

/// Multicast TTL of a beacon (0.5.3's): the local network and one router.
pub const BEACON_TTL: u32 = 2;
/// Probes (transmits with `probe` set) running at once; more wait their turn, apart from other calls.
pub const SCAN_CONCURRENT_MAX: usize = 16;
/// Datagrams handed to the core per second at most; the rest are dropped (a flood costs one check each).
pub const DATAGRAMS_PER_S_MAX: u32 = 50;
/// The socket beacons are sent from: TTL [`BEACON_TTL`], loopback off (we never hear ourselves).
pub fn beacon_sender() -> std::io::Result<UdpSocket> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    socket.set_multicast_ttl_v4(BEACON_TTL)?;
    socket.set_multicast_loop_v4(false)?;
    Ok(socket)
}

/// The socket beacons are heard on: the group's port, shared with other nodes on this host.
pub fn beacon_listener() -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let group: Ipv4Addr = BEACON_GROUP.parse().expect("constant is an address");
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, BEACON_PORT)).into())?;
    socket.join_multicast_v4(&group, &Ipv4Addr::UNSPECIFIED)?;
    Ok(socket.into())
}

/// Multicasts every beacon the core hands out (through the driver) until `stop`.
pub async fn send_loop(socket: Async<UdpSocket>, beacons: Receiver<Vec<u8>>, stop: Receiver<()>) {
    let group = SocketAddr::new(IpAddr::V4(BEACON_GROUP.parse().expect("constant is an address")), BEACON_PORT);
    loop {
        let next = smol::future::or(async { beacons.recv().await.ok() }, async {
            let _ = stop.recv().await;
            None
        })
        .await;
        let Some(payload) = next else { return };
        if let Err(e) = socket.send_to(&payload, group).await {
            eprintln!("darkmatter: beacon not sent: {e}");
        }
    }
}

/// Feeds heard datagrams to the core, at most [`DATAGRAMS_PER_S_MAX`] a second, until `stop`.
pub async fn listen_loop(socket: Async<UdpSocket>, inputs: Sender<Input>, stop: Receiver<()>) {
    // One byte more than a beacon may be, so an oversized datagram is seen as such (and dropped by the core).
    let mut buf = vec![0u8; BEACON_BYTES_MAX + 1];
    let mut window = Instant::now();
    let mut count = 0u32;
    loop {
        let got = smol::future::or(async { Some(socket.recv_from(&mut buf).await) }, async {
            let _ = stop.recv().await;
            None
        })
        .await;
        let Some(got) = got else { return };
        let Ok((n, from)) = got else {
            Timer::after(Duration::from_millis(100)).await;
            continue;
        };
        if window.elapsed() >= Duration::from_secs(1) {
            window = Instant::now();
            count = 0;
        }
        count += 1;
        if count > DATAGRAMS_PER_S_MAX {
            continue;
        }
        if inputs.send(Input::Datagram(from.ip().to_canonical(), buf[..n].to_vec())).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_bases() {
        assert_eq!(domain_base("example.com").unwrap(), "https://example.com");
        assert_eq!(domain_base("example.com:8443/").unwrap(), "https://example.com:8443");
        assert_eq!(domain_base("localhost:8101").unwrap(), "http://localhost:8101");
        assert_eq!(domain_base("127.0.0.1:8101").unwrap(), "http://127.0.0.1:8101");
        assert_eq!(domain_base("http://a.example/x/y").unwrap(), "http://a.example");
        assert!(domain_base("").is_err());
        assert!(domain_base("ftp://a.example").is_err());
    }

    #[test]
    fn cards_are_checked() {
        let p = proto_core::Passport::from_seed([7; 32]);
        let id = p.agent_id().as_str().to_owned();
        let card = |key: &str| {
            serde_json::to_vec(&serde_json::json!({"darkmatter": true, "agent_id": id, "public_key_hex": key, "display_name": "x", "accepting_connections": true})).unwrap()
        };
        let d = validate_card(&card(&id), "me", "http://127.0.0.1:1".into(), "local").unwrap();
        assert_eq!(
            (d.agent_id.as_str(), d.url.as_str(), d.source.as_str()),
            (id.as_str(), "http://127.0.0.1:1", "local")
        );
        assert!(validate_card(&card("00"), "me", String::new(), "local").is_err());
        assert!(validate_card(&card(&id), &id, String::new(), "local").is_err());
        assert!(validate_card(b"{\"darkmatter\": true}", "me", String::new(), "local").is_err());
        assert!(validate_card(b"[]", "me", String::new(), "local").is_err());
    }
}
