//! The LAN URL, derived and re-derived (SPEC §9.2): a node bound to every interface (`0.0.0.0`)
//! without `DARKMATTER_PUBLIC_URL` is reached at its LAN address, which DHCP or a move to another
//! network can change while it runs. [`watch_loop`] re-derives it every [`LAN_URL_RECHECK_MS`] and
//! gives the core the new URL (`SetUrl`: a signed `peer_update` to every connection), so that peers
//! are told instead of having to look the node up. No outside service is asked (0.5.3 asks
//! `api.ipify.org` every 300 s): the addresses come from this host's routing table.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use async_channel::{Receiver, Sender};
use proto_core::Command;
use smol::Timer;

use crate::driver::Input;

/// How often the LAN URL is derived again, in ms (0.5.3 checks its public IP every 300 s; a LAN
/// address is cheap to read, and a peer that cannot reach us looks us up after a minute anyway).
pub const LAN_URL_RECHECK_MS: u64 = 60_000;

/// The URL a node bound to `host` on `port` is reached at, given this host's addresses `lan` (most
/// preferred first): loopback for a loopback host, the first usable LAN address (IPv4 before IPv6)
/// for an unspecified host, else the host itself. `None` when an unspecified host has no usable LAN
/// address (the caller keeps what it has, or falls back to loopback at start-up).
pub fn derive_url(host: IpAddr, port: u16, lan: &[IpAddr]) -> Option<String> {
    let ip = if host.is_loopback() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else if host.is_unspecified() {
        let usable = |ip: &&IpAddr| !ip.is_unspecified() && !ip.is_loopback();
        *lan.iter().filter(usable).find(|ip| ip.is_ipv4()).or_else(|| lan.iter().find(usable))?
    } else {
        host
    };
    Some(format!("http://{}", SocketAddr::new(ip, port)))
}

/// This host's LAN address as routing sees it: the source address of the interface that routes
/// toward the beacon group (a UDP `connect` only picks a route and sends nothing). Empty when there
/// is none (no network, or only loopback).
pub fn lan_addresses() -> Vec<IpAddr> {
    let probe = || -> Option<IpAddr> {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
        socket.connect((proto_core::discovery::BEACON_GROUP, proto_core::discovery::BEACON_PORT)).ok()?;
        Some(socket.local_addr().ok()?.ip())
    };
    probe().into_iter().filter(|ip| !ip.is_unspecified() && !ip.is_loopback()).collect()
}

/// Every `period`, derives the URL from `addresses()` and, when it differs from the last one the
/// core took (starting with `current`), issues `SetUrl` to the core; until `stop` closes or the core
/// is gone. A derivation that finds no LAN address changes nothing: telling peers a loopback URL
/// would only strand them.
pub async fn watch_loop(
    host: IpAddr,
    port: u16,
    mut current: String,
    period: Duration,
    mut addresses: impl FnMut() -> Vec<IpAddr>,
    inputs: Sender<Input>,
    stop: Receiver<()>,
) {
    loop {
        let stopped = smol::future::or(
            async {
                Timer::after(period).await;
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
        let Some(url) = derive_url(host, port, &addresses()).filter(|u| *u != current) else { continue };
        let (tx, rx) = async_channel::bounded(1);
        if inputs.send(Input::Command(Command::SetUrl { url: url.clone() }, tx)).await.is_err() {
            return;
        }
        match rx.recv().await {
            Ok(Ok(_)) => current = url,
            Ok(Err(e)) => eprintln!("darkmatter: LAN URL {url} refused: {e}"),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_url_comes_from_the_first_usable_lan_address() {
        let any = ip("0.0.0.0");
        assert_eq!(derive_url(any, 8100, &[ip("192.168.1.7")]).as_deref(), Some("http://192.168.1.7:8100"));
        let mixed = [ip("127.0.0.1"), ip("fd00::7"), ip("10.0.0.3"), ip("10.0.0.4")];
        assert_eq!(derive_url(any, 8100, &mixed).as_deref(), Some("http://10.0.0.3:8100"), "IPv4 first");
        assert_eq!(derive_url(any, 8100, &[ip("fd00::7")]).as_deref(), Some("http://[fd00::7]:8100"));
        assert_eq!(derive_url(any, 8100, &[ip("127.0.0.1"), ip("0.0.0.0")]), None, "nothing usable");
        assert_eq!(derive_url(any, 8100, &[]), None);
        assert_eq!(derive_url(ip("127.0.0.1"), 1, &[ip("10.0.0.3")]).as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(derive_url(ip("10.0.0.9"), 2, &[ip("10.0.0.3")]).as_deref(), Some("http://10.0.0.9:2"));
    }

    /// Runs the loop against a scripted address list (one entry per period) and a fake core that
    /// accepts every `SetUrl`; returns the URLs the core was given.
    fn set_urls(script: Vec<Vec<IpAddr>>) -> Vec<String> {
        let periods = script.len();
        let script = Arc::new(Mutex::new(script.into_iter()));
        let (inputs_tx, inputs_rx) = async_channel::unbounded();
        let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
        let source = move || script.lock().unwrap().next().unwrap_or_default();
        let start = "http://10.0.0.1:8100".to_owned();
        let period = Duration::from_millis(5);
        smol::block_on(async {
            let watch = smol::spawn(watch_loop(ip("0.0.0.0"), 8100, start, period, source, inputs_tx, stop_rx));
            let mut given = Vec::new();
            let deadline = smol::Timer::after(period * (periods as u32 + 20));
            let core = async {
                while let Ok(Input::Command(Command::SetUrl { url }, reply)) = inputs_rx.recv().await {
                    let out = proto_core::CommandOutput::Url(proto_core::output::UrlUpdated {
                        url: url.clone(),
                        peers_notified: 1,
                    });
                    given.push(url);
                    let _ = reply.send(Ok(out)).await;
                }
            };
            smol::future::or(core, async {
                deadline.await;
            })
            .await;
            stop_tx.close();
            watch.await;
            given
        })
    }

    #[test]
    fn a_changed_lan_address_is_given_to_the_core_once() {
        let a = vec![ip("10.0.0.1")];
        let b = vec![ip("10.0.0.2")];
        let script = vec![a.clone(), b.clone(), b.clone(), vec![], b, a];
        assert_eq!(
            set_urls(script),
            vec!["http://10.0.0.2:8100".to_owned(), "http://10.0.0.1:8100".to_owned()],
            "unchanged and empty derivations issue nothing"
        );
    }
}
