//! Node glue for discovery: the card and status views, beacons out and in.

use crate::discovery::{Discovered, BEACON_BYTES_MAX, PROTOCOL_VERSION};
use core::net::IpAddr;
use std::collections::BTreeMap;

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
