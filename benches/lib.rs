//! Shared fixtures of the benchmarks: two real nodes connected through the real handshake, and
//! envelopes signed by one of them for the other.

use std::hint::black_box;

use proto_core::{
    Command, CommandId, Config, HttpResponse, InboundId, InboundRequest, Method, Node, Now, Output, Passport, SendArgs,
    Targets,
};

/// 2026-01-01T00:00:00Z in Unix microseconds; any fixed wall time works since nothing expires here.
pub const NOW_US: i64 = 1_767_225_600_000_000;

/// Envelopes from A to B, signed by a real node A (both our form and the legacy form), with B's key.
pub struct Fixture {
    /// The receiving node.
    pub b: Node,
    /// Envelope bodies from A to B.
    pub bodies: Vec<Vec<u8>>,
    /// The canonical bytes and signature of the first envelope, for the bare-verify comparison.
    /// Our signed form of the first envelope.
    pub canonical: Vec<u8>,
    /// Signature over `canonical`.
    pub signature: String,
    /// A's id (its key).
    pub key: proto_core::AgentId,
    /// The fixture's clock.
    pub now: Now,
}

/// Drains every output, returning how many there were.
pub fn drain(node: &mut Node) -> usize {
    let mut n = 0;
    loop {
        match node.poll_output() {
            Output::Timeout(_) => return n,
            out => {
                black_box(out);
                n += 1;
            }
        }
    }
}

/// Connects A and B through the real handshake and has A sign `count` envelopes for B.
pub fn fixture(count: usize) -> Fixture {
    let now = Now::new(0, NOW_US);
    let a_url = "http://a.bench:8100";
    let b_url = "http://b.bench:8100";
    let mut a =
        Node::new(Passport::from_seed([1; 32]), Config { public_url: a_url.into(), ..Config::default() }, 1, now);
    let mut b =
        Node::new(Passport::from_seed([2; 32]), Config { public_url: b_url.into(), ..Config::default() }, 2, now);
    drain(&mut a);
    drain(&mut b);
    let local = Some("127.0.0.1".parse().unwrap());
    // Handshake: A asks, B auto-accepts (local source), A learns the answer.
    a.handle_command(now, CommandId(1), Command::Connect { target_url: b_url.into() });
    let t = next_transmit(&mut a);
    b.handle_request(
        now,
        InboundRequest {
            id: InboundId(1),
            method: Method::Post,
            path: "/__darkmatter__/connection_request".into(),
            body: t.body,
            source: local,
        },
    );
    let reply = next_reply(&mut b);
    a.handle_response(now, t.id, Ok(HttpResponse { status: reply.status, body: reply.body }));
    drain(&mut a);
    let a_id = a.passport().agent_id().to_string();
    let b_id = b.passport().agent_id().to_string();
    b.handle_command(now, CommandId(2), Command::SetRateLimit { agent_id: None, limit: -1 });
    b.handle_command(now, CommandId(3), Command::SetRateLimit { agent_id: Some(a_id), limit: -1 });
    drain(&mut b);
    let mut bodies = Vec::with_capacity(count);
    for i in 0..count {
        let args = SendArgs {
            content: "x".repeat(120),
            targets: Targets::Agents(vec![b_id.clone()]),
            metadata: Default::default(),
            in_reply_to: None,
            hops_remaining: 10,
        };
        a.handle_command(now, CommandId(10 + i as u64), Command::Send(args));
        let t = next_transmit(&mut a);
        a.handle_response(now, t.id, Err("not delivered in the bench".into()));
        drain(&mut a);
        bodies.push(t.body);
    }
    let env: serde_json::Value = serde_json::from_slice(&bodies[0]).unwrap();
    let envelope: proto_core::wire::message::MessageEnvelope = serde_json::from_value(env).unwrap();
    let canonical = proto_core::message::envelope_v2_bytes(&envelope, "{}");
    let signature = envelope.dm_signature_hex.clone().unwrap();
    let key = a.passport().agent_id().clone();
    Fixture { b, bodies, canonical, signature, key, now }
}

/// The next transmit among the outputs (others are dropped).
pub fn next_transmit(node: &mut Node) -> proto_core::Transmit {
    loop {
        match node.poll_output() {
            Output::Transmit(t) => return t,
            Output::Timeout(_) => panic!("expected a transmit"),
            _ => {}
        }
    }
}

/// The next reply among the outputs (others are dropped).
pub fn next_reply(node: &mut Node) -> proto_core::Reply {
    loop {
        match node.poll_output() {
            Output::Reply(r) => return r,
            Output::Timeout(_) => panic!("expected a reply"),
            _ => {}
        }
    }
}

/// Drains the outputs and returns the status of the reply among them.
pub fn first_reply_status(node: &mut Node) -> u16 {
    let mut status = 0;
    loop {
        match node.poll_output() {
            Output::Reply(r) => status = r.status,
            Output::Timeout(_) => return status,
            other => {
                black_box(other);
            }
        }
    }
}

/// Drains the outputs of a `ListInbox` and returns the message ids.
pub fn inbox_ids(node: &mut Node) -> Vec<String> {
    loop {
        match node.poll_output() {
            Output::Done { result: Ok(proto_core::CommandOutput::Inbox(inbox)), .. } => {
                return inbox.messages.into_iter().map(|m| m.message_id).collect();
            }
            Output::Timeout(_) => return Vec::new(),
            _ => {}
        }
    }
}
