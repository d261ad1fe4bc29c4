//! What the page knows of other nodes beyond this node's own state: each connection's health
//! (a timed fetch of its card) and the mesh view, whose second-degree edges come from each peer's
//! `/__darkmatter__/network_info` `peers`, fetched here on the server. (0.5.3 crawled them from the
//! browser, read a field that does not exist and was blocked by CORS, so it only ever drew a star.)
//! Both are reads of public documents; nothing is sent that changes another node.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use proto_core::{Method, OutboundId, Transmit};
use serde_json::{json, Value};

use super::Wormhole;

/// How often every connection's health is checked, in ms (0.5.3's 15 s).
pub const HEALTH_INTERVAL_MS: u64 = 15_000;
/// Time one health check or `network_info` fetch may take, in ms.
pub const FETCH_TIMEOUT_MS: u64 = 3_000;
/// Peers asked for their peers in one mesh view (the closest, in connection order).
pub const TOPOLOGY_PEERS_MAX: usize = 32;
/// Second-degree peers taken from one peer's answer.
pub const PEERS_PER_PEER_MAX: usize = 64;
/// Connections whose health is remembered at once (the node's connection cap is far below it).
pub const HEALTH_ENTRIES_MAX: usize = 1_024;

/// The last health check of one connection.
#[derive(Clone, Debug)]
pub struct Health {
    /// The card answered 200.
    pub ok: bool,
    /// Round trip of the check, in ms.
    pub latency_ms: u64,
    /// Consecutive failures (two make a peer `unreachable`, as in 0.5.3).
    pub failures: u32,
}

fn get(client: &runtime_smol::client::Client, url: String) -> (Result<Value, String>, u64) {
    let t = Transmit {
        id: OutboundId(0),
        method: Method::Get,
        url,
        body: Vec::new(),
        timeout_ms: FETCH_TIMEOUT_MS,
        forbid_private: false,
        probe: false,
    };
    let start = Instant::now();
    let result = client.call(&t).and_then(|r| {
        if r.status != 200 {
            return Err(format!("status {}", r.status));
        }
        serde_json::from_slice(&r.body).map_err(|e| e.to_string())
    });
    (result, start.elapsed().as_millis() as u64)
}

fn url_of(c: &Value) -> Option<String> {
    c.get("url").and_then(Value::as_str).map(|u| u.trim_end_matches('/').to_owned())
}

fn id_of(c: &Value, key: &str) -> String {
    c.get(key).and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// Checks every connection's card now and records the result.
pub async fn check_health(wh: &std::sync::Arc<Wormhole>) {
    let Ok(list) = wh.mesh.command(proto_core::Command::ListConnections).await else { return };
    let conns: Vec<(String, String)> = list["connections"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| Some((id_of(c, "agent_id"), url_of(c)?)))
        .collect();
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|(id, url)| {
            let client = wh.client.clone();
            smol::unblock(move || (id, get(&client, format!("{url}/.well-known/darkmatter.json"))))
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await);
    }
    let mut health = wh.health.lock().unwrap_or_else(|p| p.into_inner());
    for (id, (result, latency_ms)) in results {
        let failures = if result.is_ok() { 0 } else { health.get(&id).map_or(0, |h| h.failures) + 1 };
        if health.len() >= HEALTH_ENTRIES_MAX && !health.contains_key(&id) {
            health.clear();
        }
        health.insert(id, Health { ok: result.is_ok(), latency_ms, failures });
    }
}

/// Checks health every [`HEALTH_INTERVAL_MS`], and at once when a connection is made (so a new
/// peer does not show "unknown" for a whole interval), forever.
pub async fn health_loop(wh: std::sync::Arc<Wormhole>) {
    let events = wh.hub.subscribe();
    loop {
        check_health(&wh).await;
        let timer = async {
            smol::Timer::after(Duration::from_millis(HEALTH_INTERVAL_MS)).await;
        };
        let connected = async {
            match &events {
                Some(rx) => while !matches!(rx.recv().await, Ok(proto_core::Event::Connected { .. }) | Err(_)) {},
                None => std::future::pending::<()>().await,
            }
        };
        smol::future::or(timer, connected).await;
    }
}

/// The connection list with `health_status` (`healthy`, `degraded`, `unreachable`, `unknown`) and
/// `ping_latency_ms` added from the last checks.
pub fn with_health(wh: &Wormhole, mut connections: Value) -> Value {
    let health = wh.health.lock().unwrap_or_else(|p| p.into_inner());
    for c in connections.as_array_mut().into_iter().flatten() {
        let h = health.get(&id_of(c, "agent_id")).cloned();
        let status = match &h {
            None => "unknown",
            Some(h) if h.ok => "healthy",
            Some(h) if h.failures >= 2 => "unreachable",
            Some(_) => "degraded",
        };
        c["health_status"] = json!(status);
        c["ping_latency_ms"] = json!(h.filter(|h| h.ok).map(|h| h.latency_ms));
    }
    connections
}

/// The healthy connection with the lowest latency at its last check (0.5.3's `fast` target).
pub fn fastest(wh: &Wormhole) -> Option<String> {
    let health = wh.health.lock().unwrap_or_else(|p| p.into_inner());
    health.iter().filter(|(_, h)| h.ok).min_by_key(|(_, h)| h.latency_ms).map(|(id, _)| id.clone())
}

/// `GET /api/mesh-topology`: `{self_id, nodes, edges}`; an edge's `degree` is 1 (ours) or 2 (a peer's).
pub async fn topology(wh: &Wormhole) -> Value {
    let me = wh.agent_id.clone();
    let list = wh.mesh.command(proto_core::Command::ListConnections).await.unwrap_or_default();
    let conns: Vec<Value> = list["connections"].as_array().cloned().unwrap_or_default();
    let mut nodes: BTreeMap<String, Value> = BTreeMap::new();
    nodes.insert(me.clone(), json!({"id": me, "label": "you", "degree": 0}));
    let mut edges = Vec::new();
    let mut fetches = Vec::new();
    for c in &conns {
        let id = id_of(c, "agent_id");
        nodes.insert(id.clone(), json!({"id": id, "label": id_of(c, "display_name"), "degree": 1}));
        edges.push(json!({"source": me, "target": id, "degree": 1}));
        if let (Some(url), true) = (url_of(c), fetches.len() < TOPOLOGY_PEERS_MAX) {
            let client = wh.client.clone();
            fetches.push((id, smol::unblock(move || get(&client, format!("{url}/__darkmatter__/network_info")))));
        }
    }
    let mut answered = HashMap::new();
    for (peer, task) in fetches {
        let (result, _) = task.await;
        answered.insert(peer.clone(), result.is_ok());
        let Ok(info) = result else { continue };
        for p in info["peers"].as_array().into_iter().flatten().take(PEERS_PER_PEER_MAX) {
            let id = id_of(p, "agent_id");
            if id.is_empty() || id == peer {
                continue;
            }
            nodes.entry(id.clone()).or_insert_with(|| json!({"id": id, "label": short(&id), "degree": 2}));
            if id != me {
                edges.push(json!({"source": peer, "target": id, "degree": 2}));
            }
        }
    }
    json!({"self_id": me, "nodes": nodes.into_values().collect::<Vec<_>>(), "edges": edges, "answered": answered})
}

fn short(id: &str) -> String {
    id.chars().take(8).collect()
}
