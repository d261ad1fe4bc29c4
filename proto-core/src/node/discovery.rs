//! Node glue for discovery: the card and status views, beacons out and in.

use crate::discovery::{
    domain_base, domain_report, scan_report, validate_card, Discovered, BEACON_BYTES_MAX, CARD_PATH, DOMAIN_FETCH_MS,
    PROBE_TIMEOUT_MS, PROTOCOL_VERSION, SCAN_INTERVAL_S,
};
use crate::error::CommandError;
use crate::io::{CommandId, HttpResponse, Method};
use crate::node::Call;
use core::net::IpAddr;
use serde_json::Value;
use std::collections::BTreeMap;

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
    pub fn card(&self) -> WellKnownCard {
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
    pub fn status_body(&self) -> StatusBody {
        StatusBody {
            agent_id: self.me().to_owned(),
            display_name: self.profile.display_name.clone(),
            public_key_hex: self.me().to_owned(),
            bio: self.profile.bio.clone(),
            status: self.status_word().to_owned(),
            num_connections: self.connections.len(),
            accepting_connections: self.accepting_connections(),
            spawned_agents: 0,
        }
    }

    /// `/__darkmatter__/network_info`.
    pub fn network_info(&self) -> NetworkInfo {
        NetworkInfo {
            agent_id: self.me().to_owned(),
            display_name: self.profile.display_name.clone(),
            public_key_hex: self.me().to_owned(),
            agent_url: self.config.public_url.clone(),
            bio: self.profile.bio.clone(),
            accepting_connections: self.accepting_connections(),
            wallets: BTreeMap::new(),
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
    pub fn beacon(&self, now: Now, port: u16) -> Vec<u8> {
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
            beacon_signature_hex: sign::sign_hex(&self.passport, &bytes),
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
        if sign::verify_hex(id.key(), &bytes, &b.beacon_signature_hex).is_err() {
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

    /// Records a discovered peer (from a port scan or a domain card) seen at `now`.
    pub fn note_discovered(&mut self, now: Now, mut d: Discovered) {
        self.now = now;
        d.seen_us = now.wall_us;
        self.remember_discovered(d);
    }

    fn remember_discovered(&mut self, d: Discovered) {
        self.discovery.remember(d, self.now.wall_us);
    }

    /// Peers discovered and not yet expired (as of the node's last input), most recent first.
    pub fn discovered(&self) -> Vec<Discovered> {
        self.discovery.list(self.now.wall_us)
    }
}

impl Node {
    /// Runs the discovery timers that are due: a beacon out, a background scan.
    pub(crate) fn discovery_timers(&mut self) {
        let now_ms = self.now.mono_ms;
        if self.next_beacon_ms.is_some_and(|t| now_ms >= t) {
            self.next_beacon_ms = Some(now_ms + self.config.beacon_interval_s.max(1) * 1_000);
            self.announce(self.now);
        }
        if self.next_scan_ms.is_some_and(|t| now_ms >= t) {
            self.next_scan_ms = Some(now_ms + SCAN_INTERVAL_S * 1_000);
            // A scan still waiting on its probes is not doubled up by the timer.
            if self.scans.has_room() {
                self.start_scan(None);
            }
        }
    }

    /// Queues our beacon as an [`Output::Datagram`] now (the timer does this by itself every
    /// `beacon_interval_s` when discovery is on).
    pub fn announce(&mut self, now: Now) {
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
    pub(crate) fn cmd_discover_local(&mut self, cmd: CommandId) -> Option<Value> {
        match self.start_scan(Some(cmd)) {
            Some(_) => None,
            None => Some(scan_report(&[], &self.config.scan_ports)),
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
            let report = scan_report(&found, &self.config.scan_ports);
            self.done(cmd, Ok(report));
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
            let report = domain_report(&d);
            self.remember_discovered(d);
            report
        });
        self.done(cmd, result.map_err(CommandError::Peer));
    }
}
