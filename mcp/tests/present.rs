//! What the tools show for the node's typed results: the advice, previews and notes that the MCP
//! crate adds (the core answers only data). Each output is pinned byte for byte, as a client reads it.

use std::sync::Mutex;

use darkmatter_mcp::mesh::{BoxFut, Mesh};
use darkmatter_mcp::tools::call;
use proto_core::output::{
    Activity, ConnectOutput, ConnectionCounts, ConversationView, DiscoveredCounts, DiscoveredPeer, IdentityView,
    InboxEntry, InboxList, MemoryCounts, SentList, SentState, SentView, StatusReport,
};
use proto_core::{Command, CommandError, CommandOutput, Event, Passport};
use serde_json::{json, Value};

/// A node that answers each command with a fixed typed result and records what it was asked.
struct Scripted {
    log: Mutex<Vec<Command>>,
    events: async_channel::Receiver<Event>,
}

fn me() -> proto_core::AgentId {
    Passport::from_seed([7; 32]).agent_id().clone()
}

fn peer(source: &str, n: u8) -> DiscoveredPeer {
    DiscoveredPeer {
        agent_id: format!("{n:064x}"),
        url: format!("http://10.0.0.{n}:8100"),
        display_name: format!("p{n}"),
        bio: String::new(),
        source: source.to_owned(),
        accepting: true,
        seen_us: 5,
    }
}

fn entry(seq: u64, content: &str) -> ConversationView {
    ConversationView {
        message_id: format!("msg-{seq}"),
        kind: "direct".into(),
        direction: "inbound".into(),
        peer: "b".repeat(64),
        peer_name: "bob".into(),
        to_agent_ids: vec![me().to_string()],
        at: "2026-01-01T00:00:00Z".into(),
        content: content.into(),
        trust_at_time: 0.25,
        score: 1.5,
        seq,
    }
}

fn status_report() -> StatusReport {
    StatusReport {
        new_context: vec![entry(3, &"x".repeat(250)), entry(4, "short")],
        memory: MemoryCounts { conversations: 4, own_shards: 1, peer_shards: 2 },
        identity: IdentityView {
            agent_id: me(),
            public_key_hex: me(),
            display_name: "alice".into(),
            bio: "b".into(),
            url: "http://127.0.0.1:8100".into(),
            status: Activity::Inactive,
            created_at: "2026-01-01T00:00:00Z".into(),
            nat_detected: None,
        },
        connections: ConnectionCounts { total: 0, max: 50 },
        inbox: 2,
        pending_requests: 1,
        discovered: DiscoveredCounts { total: 2, peers: vec![peer("lan", 1), peer("local", 2)] },
        awaiting_replies: vec!["msg-9".into(), "msg-8".into()],
        spawned_agents: None,
        antimatter: None,
    }
}

fn inbox_entry(id: &str, content: String) -> InboxEntry {
    InboxEntry {
        message_id: id.into(),
        from_agent_id: "b".repeat(64),
        from_display_name: Some("bob".into()),
        content,
        received_at: "2026-01-01T00:00:00Z".into(),
        verified: true,
        verification: proto_core::store::Verification::SignedForUs,
        hops_remaining: 3,
        in_reply_to: None,
        from_connection: true,
    }
}

fn sent_view(content: String) -> SentView {
    SentView {
        message_id: "msg-s".into(),
        kind: "direct".into(),
        status: SentState::Active,
        created_at: "2026-01-01T00:00:00Z".into(),
        routed_to: vec!["b".repeat(64)],
        relayed: Vec::new(),
        failed: Vec::new(),
        initial_hops: 10,
        in_reply_to: None,
        response_count: 0,
        content,
        responses: None,
        updates: None,
    }
}

fn answer(command: &Command) -> CommandOutput {
    match command {
        Command::Status => CommandOutput::Status(Box::new(status_report())),
        // Characters, not bytes: a preview never splits one.
        Command::ListInbox => CommandOutput::Inbox(InboxList {
            total: 2,
            messages: vec![inbox_entry("msg-1", "é".repeat(201)), inbox_entry("msg-2", "hi".into())],
        }),
        Command::ListSent => CommandOutput::SentList(SentList { total: 1, messages: vec![sent_view("y".repeat(300))] }),
        Command::Connect { .. } => {
            CommandOutput::Connect(Box::new(ConnectOutput::Pending { agent_id: me(), request_id: "req-1".into() }))
        }
        other => panic!("not scripted: {other:?}"),
    }
}

impl Mesh for Scripted {
    fn command(&self, command: Command) -> BoxFut<'_, Result<Value, CommandError>> {
        self.log.lock().unwrap().push(command.clone());
        Box::pin(async move {
            match command {
                Command::MarkShown { through } => Ok(json!({"shown_through": through})),
                c => Ok(answer(&c).to_json()),
            }
        })
    }

    fn events(&self) -> async_channel::Receiver<Event> {
        self.events.clone()
    }

    fn shutdown(&self) -> BoxFut<'_, ()> {
        Box::pin(async {})
    }
}

fn run(mesh: &Scripted, tool: &str, args: Value) -> String {
    let Value::Object(args) = args else { panic!("args must be an object") };
    let out = smol::block_on(call(mesh, tool, args));
    assert!(!out.is_error, "{}", out.value);
    serde_json::to_string(&out.value).unwrap()
}

fn scripted() -> Scripted {
    Scripted { log: Mutex::new(Vec::new()), events: async_channel::unbounded().1 }
}

/// The JSON text a client reads for `v`.
fn text(v: Value) -> String {
    serde_json::to_string(&v).unwrap()
}

#[test]
fn status_shows_previews_a_lan_summary_and_suggested_actions_then_marks_what_it_showed() {
    let mesh = scripted();
    let shown = run(&mesh, "darkmatter_status", json!({}));
    let mut expected = answer(&Command::Status).to_json();
    expected["new_context"][0]["content"] = json!("x".repeat(200));
    expected["discovered"]["summary"] = json!("1 agents discovered on LAN");
    expected["suggested_actions"] = json!([
        "You are inactive: peers get 503. darkmatter_set_status(status=\"active\") to return.",
        "1 connection request(s) waiting: darkmatter_list_pending_requests, then accept or reject.",
        "2 inbox message(s): darkmatter_list_inbox and reply (in_reply_to) or forward.",
        "2 message(s) awaiting replies: darkmatter_wait_for_response(message_id=\"msg-9\").",
        "No connections, 2 agent(s) discovered: connect with darkmatter_connection(action=\"request\", target_url=...).",
        "2 peer shard(s): darkmatter_view_shards to explore."
    ]);
    assert_eq!(shown, text(expected));
    assert_eq!(*mesh.log.lock().unwrap(), [Command::Status, Command::MarkShown { through: 4 }]);
}

#[test]
fn message_lists_show_previews_of_long_contents() {
    let mesh = scripted();
    let mut inbox = answer(&Command::ListInbox).to_json();
    inbox["messages"][0]["content"] = json!("é".repeat(200));
    assert_eq!(run(&mesh, "darkmatter_list_inbox", json!({})), text(inbox));
    let mut sent = answer(&Command::ListSent).to_json();
    sent["messages"][0]["content"] = json!("y".repeat(200));
    assert_eq!(run(&mesh, "darkmatter_list_messages", json!({})), text(sent));
}

#[test]
fn a_pending_connection_request_says_so_in_words() {
    let mesh = scripted();
    let shown = run(&mesh, "darkmatter_connection", json!({"action": "request", "target_url": "http://10.0.0.2:8100"}));
    let expected = json!({"agent_id": me(), "message": "Connection request sent. Waiting for acceptance.",
        "request_id": "req-1", "status": "pending"});
    assert_eq!(shown, text(expected));
}
