//! Node glue for discovery: the card and status views, beacons out and in.

use crate::discovery::{
    domain_base, validate_card, Discovered, BEACON_BYTES_MAX, CARD_PATH, DOMAIN_FETCH_MS, PROBE_TIMEOUT_MS,
    PROTOCOL_VERSION, SCAN_INTERVAL_S,
};
use crate::error::CommandError;
use crate::io::{CommandId, HttpResponse, Method};
use crate::node::Call;
use crate::output::{CommandOutput, DiscoveredPeer, DomainReport, ScanReport};
use core::net::IpAddr;

use crate::crypto;
use crate::identity::truncate_chars;
use crate::limits::FRESHNESS_WINDOW_S;
use crate::node::Node;
use crate::sign::{self, DOMAIN_LAN_BEACON};
use crate::time::{is_fresh, Now};
use crate::url;
use crate::wire::card::{NetworkInfo, PeerInfo, StatusBody, WellKnownCard};
use crate::wire::discovery::Beacon;
use crate::wire::{self, DM_PROTOCOL};

impl Node {
    /// `/.well-known/darkmatter.json`.
    pub(crate) fn card(&self) -> WellKnownCard {
        let base = url::base(&self.config.public_url);
        WellKnownCard {
            darkmatter: true,
            protocol_version: PROTOCOL_VERSION.to_owned(),
            agent_id: Some(self.me().to_owned()),
            display_name: Some(self.profile.display_name.clone()),
            public_key_hex: Some(self.me().to_owned()),
            bio: Some(self.profile.bio.clone()),
            status: Some(self.status_word().to_owned()),
            accepting_connections: self.accepting_connections(),
            mesh_url: Some(format!("{base}/__darkmatter__")),
            mcp_url: None,
            webrtc_enabled: false,
            anchor: None,
            dm_protocol: Some(DM_PROTOCOL.to_owned()),
            spawned_agents: self.spawner.configured().then(|| self.spawner.live_count()),
        }
    }

    pub(crate) fn status_word(&self) -> &'static str {
        if self.is_inactive() {
            "inactive"
        } else {
            "active"
        }
    }

    /// `/__darkmatter__/status`.
    pub(crate) fn status_body(&self) -> StatusBody {
        StatusBody {
            agent_id: self.me().to_owned(),
            display_name: self.profile.display_name.clone(),
            public_key_hex: self.me().to_owned(),
            bio: self.profile.bio.clone(),
            status: self.status_word().to_owned(),
            num_connections: self.connections.len(),
            accepting_connections: self.accepting_connections(),
            spawned_agents: self.spawner.live_count(),
        }
    }

    /// `/__darkmatter__/network_info`.
    pub(crate) fn network_info(&self) -> NetworkInfo {
        NetworkInfo {
            agent_id: self.me().to_owned(),
            display_name: self.profile.display_name.clone(),
            public_key_hex: self.me().to_owned(),
            agent_url: self.config.public_url.clone(),
            bio: self.profile.bio.clone(),
            accepting_connections: self.accepting_connections(),
            wallets: self.wallets.clone(),
            peers: self
                .connections
                .values()
                .map(|c| PeerInfo {
                    agent_id: c.agent_id.to_string(),
                    agent_url: c.url.clone(),
                    agent_bio: c.bio.clone(),
                })
                .collect(),
        }
    }

    /// Our signed beacon for HTTP port `port`, stamped `now`, as a datagram payload.
    pub(crate) fn beacon(&self, now: Now, port: u16) -> Vec<u8> {
        let ts = now.unix_s();
        let bytes = sign::domain_bytes(DOMAIN_LAN_BEACON, &[self.me(), &port.to_string(), &ts.to_string()])
            .expect("no newlines in numbers or our id");
        let b = Beacon {
            proto: "darkmatter".to_owned(),
            v: PROTOCOL_VERSION.to_owned(),
            agent_id: self.me().to_owned(),
            display_name: Some(self.profile.display_name.clone()),
            public_key_hex: self.me().to_owned(),
            bio: Some(truncate_chars(&self.profile.bio, 100)),
            port,
            status: Some(self.status_word().to_owned()),
            accepting: self.accepting_connections(),
            ts,
            beacon_signature_hex: crypto::sign_hex(&*self.signatures, &self.passport, &bytes),
        };
        wire::encode(&b)
    }

    /// A datagram arrived; keep it if it is a valid, fresh beacon from someone else.
    pub(crate) fn on_beacon(&mut self, source: IpAddr, payload: &[u8]) {
        if payload.len() > BEACON_BYTES_MAX {
            return;
        }
        let Ok(b) = wire::decode::<Beacon>(payload) else { return };
        if b.proto != "darkmatter" || b.agent_id == self.me() || b.public_key_hex != b.agent_id {
            return;
        }
        let Ok(id) = self.agent_id(&b.agent_id) else { return };
        if !is_fresh(self.now.wall_us, b.ts.saturating_mul(1_000_000), FRESHNESS_WINDOW_S) {
            return;
        }
        let Ok(bytes) = sign::domain_bytes(DOMAIN_LAN_BEACON, &[id.as_str(), &b.port.to_string(), &b.ts.to_string()])
        else {
            return;
        };
        if crypto::verify_hex(&*self.signatures, id.key(), &bytes, &b.beacon_signature_hex).is_err() {
            return;
        }
        let host = match source {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        self.remember_discovered(Discovered {
            agent_id: b.agent_id,
            url: format!("http://{host}:{}", b.port),
            display_name: truncate_chars(
                b.display_name.as_deref().unwrap_or(""),
                crate::limits::DISPLAY_NAME_CHARS_MAX,
            ),
            bio: truncate_chars(b.bio.as_deref().unwrap_or(""), 100),
            source: "lan".to_owned(),
            accepting: b.accepting,
            seen_us: self.now.wall_us,
        });
    }

    fn remember_discovered(&mut self, d: Discovered) {
        self.discovery.remember(d, self.now.wall_us);
    }

    /// Peers discovered and not yet expired (as of the node's last input), most recent first.
    pub(crate) fn discovered(&self) -> Vec<Discovered> {
        self.discovery.list(self.now.wall_us)
    }
}

impl Node {
    /// Runs the discovery timers that are due: a beacon out, a background scan.
    pub(crate) fn discovery_timers(&mut self) {
        let now_ms = self.now.mono_ms;
        if self.next_beacon_ms.is_some_and(|t| now_ms >= t) {
            self.next_beacon_ms = Some(now_ms + self.config.beacon_interval_s.max(1) * 1_000);
            self.handle_announce(self.now);
        }
        if self.next_scan_ms.is_some_and(|t| now_ms >= t) {
            self.next_scan_ms = Some(now_ms + SCAN_INTERVAL_S * 1_000);
            // A scan still waiting on its probes is not doubled up by the timer.
            if self.scans.has_room() {
                self.start_scan(None);
            }
        }
    }

    /// The operator asks for a beacon now: queues it as an [`crate::io::Output::Datagram`] (the timer
    /// does this by itself every `beacon_interval_s` when discovery is on). An input like the other
    /// `handle_*`: it sets the node's time.
    pub fn handle_announce(&mut self, now: Now) {
        self.now = now;
        let payload = self.beacon(now, self.config.listen_port);
        self.push_datagram(payload);
    }

    /// Probes every scan port but ours; returns the scan's id, or `None` when there is no port to probe.
    fn start_scan(&mut self, cmd: Option<CommandId>) -> Option<u64> {
        let own = self.config.listen_port;
        let ports: Vec<u16> = self.config.scan_ports.iter().copied().filter(|p| *p != own).collect();
        if ports.is_empty() {
            return None;
        }
        let scan = self.scans.open(cmd, ports.len());
        for port in &ports {
            let base = format!("http://127.0.0.1:{port}");
            let url = format!("{base}{CARD_PATH}");
            let call = Call::Probe { scan, base };
            self.transmit(Method::Get, url, Vec::new(), PROBE_TIMEOUT_MS, false, call);
        }
        Some(scan)
    }

    /// `DiscoverLocal`: the report at once when there is nothing to probe, else when the probes answer.
    pub(crate) fn cmd_discover_local(&mut self, cmd: CommandId) -> Option<ScanReport> {
        match self.start_scan(Some(cmd)) {
            Some(_) => None,
            None => Some(ScanReport::new(Vec::new(), &self.config.scan_ports)),
        }
    }

    pub(crate) fn on_probe_answer(&mut self, scan: u64, base: String, result: Result<HttpResponse, String>) {
        let found = match result {
            Ok(r) if r.status == 200 => validate_card(&r.body, self.me(), base, "local").ok(),
            _ => None,
        };
        let found = found.map(|d| Discovered { seen_us: self.now.wall_us, ..d });
        if let Some(d) = &found {
            self.remember_discovered(d.clone());
        }
        let Some((cmd, found)) = self.scans.answered(scan, found) else { return };
        if let Some(cmd) = cmd {
            let report = ScanReport::new(found.iter().map(DiscoveredPeer::from).collect(), &self.config.scan_ports);
            self.done(cmd, Ok(CommandOutput::Scan(report)));
        }
    }

    pub(crate) fn cmd_discover_domain(&mut self, cmd: CommandId, domain: &str) -> Result<(), CommandError> {
        let base = domain_base(domain).map_err(CommandError::Peer)?;
        let url = format!("{base}{CARD_PATH}");
        self.transmit(Method::Get, url, Vec::new(), DOMAIN_FETCH_MS, false, Call::DomainCard { cmd, base });
        Ok(())
    }

    pub(crate) fn on_domain_card(&mut self, cmd: CommandId, base: String, result: Result<HttpResponse, String>) {
        let answer = match result {
            Err(e) => Err(format!("could not fetch {base}{CARD_PATH}: {e}")),
            Ok(r) if r.status != 200 => Err(format!("{base}{CARD_PATH} answered HTTP {}", r.status)),
            Ok(r) => validate_card(&r.body, self.me(), base, "domain").map_err(|e| e.to_string()),
        };
        let result = answer.map(|d| {
            let d = Discovered { seen_us: self.now.wall_us, ..d };
            let report = DomainReport::from(&d);
            self.remember_discovered(d);
            CommandOutput::Domain(Box::new(report))
        });
        self.done(cmd, result.map_err(CommandError::Peer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;
    use crate::io::{Output, Transmit};
    use crate::node::Config;
    use crate::Passport;

    const T0_US: i64 = 1_700_000_000_000_000;

    fn at(ms: u64) -> Now {
        Now::new(ms, T0_US + ms as i64 * 1_000)
    }

    fn node(seed: u8, config: Config) -> Node {
        Node::new(Passport::from_seed([seed; 32]), config, u64::from(seed), at(0))
    }

    /// Everything queued, up to the timeout.
    fn drain(n: &mut Node) -> Vec<Output> {
        let mut v = Vec::new();
        loop {
            match n.poll_output() {
                Output::Timeout(_) => return v,
                o => v.push(o),
            }
        }
    }

    fn transmits(outs: &[Output]) -> Vec<Transmit> {
        outs.iter().filter_map(|o| if let Output::Transmit(t) = o { Some(t.clone()) } else { None }).collect()
    }

    fn datagrams(outs: &[Output]) -> usize {
        outs.iter().filter(|o| matches!(o, Output::Datagram(_))).count()
    }

    fn card_of(n: &Node) -> Vec<u8> {
        crate::wire::encode(&n.card())
    }

    #[test]
    fn background_discovery_beacons_every_interval_only_when_enabled() {
        let on = Config { discovery: true, beacon_interval_s: 10, scan_ports: vec![], ..Config::default() };
        let mut a = node(1, on);
        drain(&mut a);
        assert_eq!(a.poll_timeout(), Some(0), "the first beacon is due at start");
        a.handle_timeout(at(0));
        assert_eq!(datagrams(&drain(&mut a)), 1);
        a.handle_timeout(at(9_999));
        assert_eq!(datagrams(&drain(&mut a)), 0);
        a.handle_timeout(at(10_000));
        assert_eq!(datagrams(&drain(&mut a)), 1);

        let mut off = node(2, Config::default());
        drain(&mut off);
        off.handle_timeout(at(crate::node::HOUSEKEEPING_INTERVAL_MS));
        let outs = drain(&mut off);
        assert_eq!(datagrams(&outs), 0);
        assert!(transmits(&outs).is_empty(), "no scan without discovery");
    }

    #[test]
    fn a_beacon_from_the_timer_is_heard_by_a_peer() {
        let on = Config { discovery: true, listen_port: 8105, scan_ports: vec![], ..Config::default() };
        let mut a = node(1, on);
        let mut b = node(2, Config::default());
        drain(&mut a);
        a.handle_timeout(at(0));
        let beacon = drain(&mut a).into_iter().find_map(|o| if let Output::Datagram(p) = o { Some(p) } else { None });
        b.handle_datagram(at(5), "192.168.1.7".parse().unwrap(), &beacon.expect("a beacon"));
        let found = b.discovered();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].agent_id, a.me());
        assert_eq!(found[0].url, "http://192.168.1.7:8105");
    }

    #[test]
    fn discover_local_is_done_when_the_last_probe_answers() {
        let cfg = Config { listen_port: 8100, scan_ports: vec![8100, 8101, 8102], ..Config::default() };
        let mut a = node(1, cfg);
        let peer = node(2, Config::default());
        drain(&mut a);
        a.handle_command(at(1), CommandId(7), Command::DiscoverLocal);
        let probes = transmits(&drain(&mut a));
        let urls: Vec<&str> = probes.iter().map(|t| t.url.as_str()).collect();
        assert_eq!(
            urls,
            ["http://127.0.0.1:8101/.well-known/darkmatter.json", "http://127.0.0.1:8102/.well-known/darkmatter.json"]
        );
        assert!(probes.iter().all(|t| t.probe && t.timeout_ms == PROBE_TIMEOUT_MS));
        let ok = HttpResponse { status: 200, body: card_of(&peer) };
        a.handle_response(at(2), probes[0].id, Ok(ok));
        assert!(!drain(&mut a).iter().any(|o| matches!(o, Output::Done { .. })), "one probe still out");
        a.handle_response(at(3), probes[1].id, Err("connection refused".into()));
        let done = drain(&mut a).into_iter().find_map(|o| match o {
            Output::Done { id, result } => Some((id, result)),
            _ => None,
        });
        let (id, result) = done.expect("done after the last probe");
        assert_eq!(id, CommandId(7));
        let v = result.unwrap().to_json();
        assert_eq!(v["total"], 1);
        assert_eq!(v["scanned_ports"], "8100-8102");
        assert_eq!(v["discovered"][0]["url"], "http://127.0.0.1:8101");
        assert_eq!(a.discovered().len(), 1);
    }

    #[test]
    fn a_scan_ignores_bad_cards_and_our_own() {
        let cfg = Config { listen_port: 1, scan_ports: vec![9001, 9002, 9003], ..Config::default() };
        let mut a = node(1, cfg);
        drain(&mut a);
        a.handle_command(at(1), CommandId(1), Command::DiscoverLocal);
        let probes = transmits(&drain(&mut a));
        let own = card_of(&a);
        a.handle_response(at(2), probes[0].id, Ok(HttpResponse { status: 200, body: own }));
        a.handle_response(at(2), probes[1].id, Ok(HttpResponse { status: 200, body: b"[]".to_vec() }));
        a.handle_response(
            at(2),
            probes[2].id,
            Ok(HttpResponse { status: 404, body: card_of(&node(3, Config::default())) }),
        );
        let v = drain(&mut a)
            .into_iter()
            .find_map(|o| if let Output::Done { result, .. } = o { Some(result.unwrap().to_json()) } else { None })
            .expect("done");
        assert_eq!(v["total"], 0);
        assert!(a.discovered().is_empty());
    }

    #[test]
    fn discover_domain_answers_with_the_card_or_the_reason() {
        let mut a = node(1, Config::default());
        let peer = node(2, Config::default());
        drain(&mut a);
        a.handle_command(at(1), CommandId(1), Command::DiscoverDomain { domain: "localhost:8101".into() });
        let t = transmits(&drain(&mut a)).pop().expect("a card fetch");
        assert_eq!(t.url, "http://localhost:8101/.well-known/darkmatter.json");
        assert!(!t.probe);
        a.handle_response(at(2), t.id, Ok(HttpResponse { status: 200, body: card_of(&peer) }));
        let out = drain(&mut a);
        let Some(Output::Done { result: Ok(v), .. }) = out.last() else { panic!("{out:?}") };
        let v = v.to_json();
        assert_eq!(v["found"], true);
        assert_eq!(v["agent_id"], peer.me());

        a.handle_command(at(3), CommandId(2), Command::DiscoverDomain { domain: "example.com".into() });
        let t = transmits(&drain(&mut a)).pop().expect("a card fetch");
        assert_eq!(t.url, "https://example.com/.well-known/darkmatter.json");
        a.handle_response(at(4), t.id, Ok(HttpResponse { status: 503, body: vec![] }));
        let out = drain(&mut a);
        let Some(Output::Done { result: Err(CommandError::Peer(why)), .. }) = out.last() else { panic!("{out:?}") };
        assert!(why.contains("HTTP 503"), "{why}");

        a.handle_command(at(5), CommandId(3), Command::DiscoverDomain { domain: String::new() });
        let out = drain(&mut a);
        assert!(matches!(out.last(), Some(Output::Done { result: Err(_), .. })));
    }

    #[test]
    fn a_background_scan_is_not_doubled_while_probes_are_out() {
        let cfg = Config { discovery: true, scan_ports: vec![9001], listen_port: 1, ..Config::default() };
        let mut a = node(1, cfg);
        drain(&mut a);
        let mut probes = 0;
        // Many intervals pass with no probe ever answering: at most SCANS_OPEN_MAX scans are open.
        for k in 0..20u64 {
            a.handle_timeout(at(crate::discovery::SCAN_FIRST_DELAY_MS + k * SCAN_INTERVAL_S * 1_000));
            probes += transmits(&drain(&mut a)).len();
        }
        assert_eq!(probes, crate::discovery::SCANS_OPEN_MAX);
    }
}
