//! One MCP session in process, over an in-memory pipe, against a fake node: tool calls cross the
//! bridge, a pending wait does not block other calls, and node events become
//! `notifications/message` (filtered by `logging/setLevel`).

#[path = "common/fake.rs"]
mod fake;

use std::sync::Arc;
use std::time::Duration;

use darkmatter_mcp::app;
use darkmatter_mcp::bridge::Backend;
use darkmatter_mcp::events::Hub;
use darkmatter_mcp::mesh::Mesh;
use fake::Fake;
use proto_core::{AgentId, Event, Passport};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

struct Client {
    w: tokio::io::WriteHalf<tokio::io::DuplexStream>,
    r: BufReader<tokio::io::ReadHalf<tokio::io::DuplexStream>>,
}

impl Client {
    async fn send(&mut self, v: Value) {
        self.w.write_all(format!("{v}\n").as_bytes()).await.unwrap();
    }
    async fn next(&mut self) -> Value {
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(10), self.r.read_line(&mut line))
            .await
            .expect("a message within 10 s")
            .unwrap();
        serde_json::from_str(&line).unwrap()
    }
}

fn start(fake: Arc<Fake>) -> Client {
    let (client, server) = tokio::io::duplex(1 << 20);
    let (sr, sw) = tokio::io::split(server);
    std::thread::spawn(move || {
        let ex = Arc::new(smol::Executor::new());
        let hub = Hub::new();
        let mesh: Arc<dyn Mesh> = fake;
        ex.spawn(hub.clone().pump(mesh.events())).detach();
        let backend = Backend::local(mesh, hub);
        smol::block_on(ex.run(app::session(backend, ex.clone(), move || (sr, sw))));
    });
    let (cr, cw) = tokio::io::split(client);
    Client { w: cw, r: BufReader::new(cr) }
}

#[tokio::test(flavor = "current_thread")]
async fn wait_does_not_block_and_events_become_notifications() {
    let fake = Arc::new(Fake::new());
    let mut c = start(fake.clone());
    c.send(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}})).await;
    assert_eq!(c.next().await["id"], 1);
    c.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;

    // A wait that will not finish until released...
    c.send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "darkmatter_wait_for_response", "arguments": {"message_id": "msg-1", "timeout_seconds": 30}}})).await;
    // ...does not hold up another call.
    c.send(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "darkmatter_status", "arguments": {}}})).await;
    let r = c.next().await;
    assert_eq!(r["id"], 3, "status answered while the wait is pending: {r}");
    assert_eq!(r["result"]["structuredContent"], json!({"ok": true}));

    // A node event reaches the client as a logging notification.
    fake.events_tx
        .try_send(Event::MessageReceived {
            message_id: "msg-2".into(),
            from_agent_id: bob(),
            in_reply_to: Some("msg-1".into()),
        })
        .unwrap();
    let n = c.next().await;
    assert_eq!(n["method"], "notifications/message", "{n}");
    assert_eq!(n["params"]["logger"], "darkmatter");
    assert_eq!(n["params"]["level"], "notice");
    assert_eq!(n["params"]["data"]["event"], "message_received");
    assert_eq!(n["params"]["data"]["in_reply_to"], "msg-1");
    assert!(n["params"]["data"]["hint"].as_str().unwrap().contains("darkmatter_get_message"));

    fake.release();
    let r = c.next().await;
    assert_eq!(r["id"], 2);
    assert_eq!(r["result"]["structuredContent"]["responses"][0]["content"], "hi");

    // logging/setLevel warning: info and notice events are no longer sent, warnings are.
    c.send(json!({"jsonrpc": "2.0", "id": 4, "method": "logging/setLevel", "params": {"level": "warning"}})).await;
    assert_eq!(c.next().await["id"], 4);
    fake.events_tx.try_send(Event::Connected { agent_id: bob() }).unwrap();
    fake.events_tx
        .try_send(Event::Refused {
            path: "/__darkmatter__/message".into(),
            status: 403,
            reason: "bad signature".into(),
        })
        .unwrap();
    let n = c.next().await;
    assert_eq!(n["params"]["data"]["event"], "refused", "{n}");
}

/// A valid agent id for the fake peer (events carry parsed ids).
fn bob() -> AgentId {
    Passport::from_seed([0xb0; 32]).agent_id().clone()
}
