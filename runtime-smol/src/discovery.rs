//! Discovery I/O: signed LAN multicast beacons, the localhost port scan, and domain card fetches.
//!
//! The core makes and checks beacons; this file only moves them. Cards found by a scan or a domain
//! fetch are checked here (it is a `darkmatter` card, the agent id parses as a key, the key field
//! equals it, it is not us) and then noted by the core with [`crate::driver::Input::Discovered`].
//!
//! With `DARKMATTER_DISCOVERY=false` nothing runs in the background (no beacons sent, none heard,
//! no periodic scans); an explicit `discover_local` / `discover_domain` from the agent still works.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender};
use proto_core::discovery::{Discovered, BEACON_BYTES_MAX, BEACON_GROUP, BEACON_INTERVAL_S, BEACON_PORT};
use proto_core::identity::truncate_chars;
use proto_core::limits::DISPLAY_NAME_CHARS_MAX;
use proto_core::wire::card::WellKnownCard;
use proto_core::AgentId;
use serde_json::{json, Value};
use smol::lock::Semaphore;
use smol::{Async, Timer};

use crate::client::Client;
use crate::driver::Input;

/// Multicast TTL of a beacon (0.5.3's): the local network and one router.
pub const BEACON_TTL: u32 = 2;
/// Seconds between background localhost scans (0.5.3's discovery loop period).
pub const SCAN_INTERVAL_S: u64 = 30;
/// Overall time allowed to one port probe, in ms (connect is capped lower by the client).
pub const PROBE_TIMEOUT_MS: u64 = 500;
/// Probes running at once during a scan.
pub const SCAN_CONCURRENT_MAX: usize = 16;
/// Time allowed to a domain card fetch, in ms.
pub const DOMAIN_FETCH_MS: u64 = 5_000;
/// Longest domain accepted by `discover_domain`, in bytes.
pub const DOMAIN_BYTES_MAX: usize = 253 + 16;
/// Datagrams handed to the core per second at most; the rest are dropped (a flood costs one check each).
pub const DATAGRAMS_PER_S_MAX: u32 = 50;
/// Bio characters kept from a card, as from a beacon.
pub const CARD_BIO_CHARS_MAX: usize = 100;

/// The path of the well-known card.
pub const CARD_PATH: &str = "/.well-known/darkmatter.json";

/// Checks a fetched card; `url` is where we reached it (kept as the connect URL, not what it claims).
pub fn validate_card(body: &[u8], me: &str, url: String, source: &str) -> Result<Discovered, String> {
    let card: WellKnownCard = proto_core::wire::decode(body).map_err(|e| format!("not a DarkMatter card: {e}"))?;
    if !card.darkmatter {
        return Err("not a DarkMatter card".to_owned());
    }
    let id = card.agent_id.as_deref().ok_or("card has no agent_id (an anchor?)")?;
    AgentId::parse(id).map_err(|e| e.to_string())?;
    if card.public_key_hex.as_deref() != Some(id) {
        return Err("card's public_key_hex does not equal its agent_id".to_owned());
    }
    if id == me {
        return Err("that is this node".to_owned());
    }
    Ok(Discovered {
        agent_id: id.to_owned(),
        url,
        display_name: truncate_chars(card.display_name.as_deref().unwrap_or(""), DISPLAY_NAME_CHARS_MAX),
        bio: truncate_chars(card.bio.as_deref().unwrap_or(""), CARD_BIO_CHARS_MAX),
        source: source.to_owned(),
        accepting: card.accepting_connections,
        seen_us: 0,
    })
}

/// Probes every port but our own on 127.0.0.1 in parallel, notes valid cards with the core, and
/// returns them.
pub async fn scan_local(
    client: &Client,
    ports: &[u16],
    own_port: u16,
    me: &str,
    inputs: &Sender<Input>,
) -> Vec<Discovered> {
    let gate = Arc::new(Semaphore::new(SCAN_CONCURRENT_MAX));
    let probes: Vec<_> = ports
        .iter()
        .copied()
        .filter(|p| *p != own_port)
        .map(|port| {
            let (gate, client, me) = (gate.clone(), client.clone(), me.to_owned());
            smol::spawn(async move {
                let _permit = gate.acquire_arc().await;
                smol::unblock(move || {
                    let base = format!("http://127.0.0.1:{port}");
                    let r = client.probe(&format!("{base}{CARD_PATH}"), PROBE_TIMEOUT_MS).ok()?;
                    (r.status == 200).then_some(())?;
                    validate_card(&r.body, &me, base, "local").ok()
                })
                .await
            })
        })
        .collect();
    let mut found = Vec::new();
    for probe in probes {
        if let Some(d) = probe.await {
            let _ = inputs.send(Input::Discovered(d.clone())).await;
            found.push(d);
        }
    }
    found
}

/// The base URL to fetch a domain's card from: an explicit scheme is kept; otherwise `http` for
/// localhost and loopback addresses, `https` for everything else.
pub fn domain_base(domain: &str) -> Result<String, String> {
    let d = domain.trim().trim_end_matches('/');
    if d.is_empty() || d.len() > DOMAIN_BYTES_MAX {
        return Err(format!("domain must be 1..={DOMAIN_BYTES_MAX} characters"));
    }
    let with_scheme = if d.contains("://") { d.to_owned() } else { format!("https://{d}") };
    let mut url = proto_core::url::validate(&with_scheme)?;
    if !d.contains("://")
        && proto_core::url::is_local_url(&url)
        && url.host_str().is_some_and(|h| h == "localhost" || h.starts_with("127.") || h == "[::1]")
    {
        url.set_scheme("http").map_err(|()| "cannot use http".to_owned())?;
    }
    Ok(format!("{}://{}", url.scheme(), &url[url::Position::BeforeHost..url::Position::AfterPort]))
}

/// Fetches and checks `<base>/.well-known/darkmatter.json`, notes the peer with the core.
pub async fn fetch_domain(client: &Client, domain: &str, me: &str, inputs: &Sender<Input>) -> Result<Value, String> {
    let base = domain_base(domain)?;
    let (client2, url) = (client.clone(), format!("{base}{CARD_PATH}"));
    let r = smol::unblock(move || client2.get(&url, DOMAIN_FETCH_MS))
        .await
        .map_err(|e| format!("could not fetch {base}{CARD_PATH}: {e}"))?;
    if r.status != 200 {
        return Err(format!("{base}{CARD_PATH} answered HTTP {}", r.status));
    }
    let d = validate_card(&r.body, me, base, "domain")?;
    let _ = inputs.send(Input::Discovered(d.clone())).await;
    Ok(
        json!({"found": true, "agent_id": d.agent_id, "url": d.url, "display_name": d.display_name, "bio": d.bio, "accepting_connections": d.accepting}),
    )
}

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

/// Sends a beacon at start, every [`BEACON_INTERVAL_S`], and whenever `now` fires, until `stop`.
pub async fn beacon_loop(
    socket: Async<UdpSocket>,
    inputs: Sender<Input>,
    http_port: u16,
    now: Receiver<()>,
    stop: Receiver<()>,
) {
    let group = SocketAddr::new(IpAddr::V4(BEACON_GROUP.parse().expect("constant is an address")), BEACON_PORT);
    loop {
        let (tx, rx) = async_channel::bounded(1);
        if inputs.send(Input::Beacon(http_port, tx)).await.is_err() {
            return;
        }
        if let Ok(payload) = rx.recv().await {
            if let Err(e) = socket.send_to(&payload, group).await {
                eprintln!("darkmatter: beacon not sent: {e}");
            }
        }
        let tick = async {
            smol::future::or(
                async {
                    Timer::after(Duration::from_secs(BEACON_INTERVAL_S)).await;
                },
                async {
                    let _ = now.recv().await;
                },
            )
            .await;
            true
        };
        let stopped = async {
            let _ = stop.recv().await;
            false
        };
        if !smol::future::or(tick, stopped).await {
            return;
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

/// Scans localhost every [`SCAN_INTERVAL_S`] (first after a short delay), until `stop`.
pub async fn scan_loop(
    client: Client,
    ports: Vec<u16>,
    own_port: u16,
    me: String,
    inputs: Sender<Input>,
    stop: Receiver<()>,
) {
    let mut wait = Duration::from_secs(1);
    loop {
        let stopped = smol::future::or(
            async {
                Timer::after(wait).await;
                false
            },
            async {
                let _ = stop.recv().await;
                true
            },
        )
        .await;
        if stopped {
            return;
        }
        scan_local(&client, &ports, own_port, &me, &inputs).await;
        wait = Duration::from_secs(SCAN_INTERVAL_S);
    }
}

/// The answer of `discover_local`.
pub fn scan_report(found: &[Discovered], ports: &[u16]) -> Value {
    let range = match (ports.first(), ports.last()) {
        (Some(a), Some(b)) => format!("{a}-{b}"),
        _ => String::new(),
    };
    json!({"success": true, "total": found.len(), "scanned_ports": range, "discovered": found})
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
            serde_json::to_vec(&json!({"darkmatter": true, "agent_id": id, "public_key_hex": key, "display_name": "x", "accepting_connections": true})).unwrap()
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
