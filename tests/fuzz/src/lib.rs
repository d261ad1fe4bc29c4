//! Shared pieces of the fuzz targets: a node with a fixed passport, seed and clock, the input formats
//! the targets read, and the checks every target applies to what a node emits.
//!
//! Every input format is plain text where it can be, so seeds taken from the 0.5.3 captures stay
//! readable and a finding can be read (and edited) by hand.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use proto_core::{CommandId, Config, HttpResponse, InboundId, Method, Node, Now, Output, Passport, Table, Transmit};

/// 2026-01-01T00:00:00Z in Unix microseconds: every fuzzed node's wall clock starts here, so a seed
/// that depends on freshness (a signed beacon) behaves the same on every run.
pub const T0_US: i64 = 1_767_225_600_000_000;
/// How far the clocks move between two inputs handed to one node (1 s): enough for rate windows and
/// housekeeping to come into play over a handful of inputs.
pub const STEP_MS: u64 = 1_000;
/// Outputs drained after one input before the target gives up: a node that keeps emitting past this
/// is looping, which is a finding.
pub const OUTPUTS_PER_INPUT_MAX: usize = 10_000;
/// Seed of the fuzzed node's random choices (ids, challenges).
pub const NODE_SEED: u64 = 0x00d4_7a11;
/// The fuzzed node's passport seed.
pub const PASSPORT_SEED: [u8; 32] = [7; 32];
/// A second identity, for targets that sign what a peer would sign (beacons).
pub const PEER_PASSPORT_SEED: [u8; 32] = [9; 32];
/// A source address that is not local: the default peer.
pub const REMOTE_SOURCE: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
/// A local source address (auto-accept of local requesters trusts only this).
pub const LOCAL_SOURCE: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Both clocks `step` inputs after the start.
pub fn now_at(step: u64) -> Now {
    let mono_ms = step * STEP_MS;
    Now::new(mono_ms, T0_US + (mono_ms as i64) * 1_000)
}

/// The node every target fuzzes: fixed passport, default configuration, fixed seed and clock.
pub fn fresh_node() -> Node {
    Node::new(Passport::from_seed(PASSPORT_SEED), Config::default(), NODE_SEED, now_at(0))
}

/// A node rebuilt from `records`, with the same fixed passport, seed and clock as [`fresh_node`].
pub fn restored_node(records: Vec<(Table, String, Vec<u8>)>) -> (Node, usize) {
    Node::restore(Passport::from_seed(PASSPORT_SEED), Config::default(), NODE_SEED, now_at(0), records)
}

/// What a node is holding on disk: every record its `Persist` outputs left, as a driver would.
pub type Disk = BTreeMap<(Table, String), Vec<u8>>;

/// One inbound request in the targets' text form: `METHOD PATH`, a newline, then the raw body.
/// A method other than `GET`/`POST` is [`Method::Other`]; without a newline the body is empty.
pub fn parse_request(bytes: &[u8]) -> (Method, String, Vec<u8>) {
    let (line, body) = match bytes.iter().position(|&b| b == b'\n') {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &[][..]),
    };
    let line = String::from_utf8_lossy(line);
    let (method, path) = line.split_once(' ').unwrap_or((&line, ""));
    let method = match method {
        "GET" => Method::Get,
        "POST" => Method::Post,
        _ => Method::Other,
    };
    (method, path.to_owned(), body.to_vec())
}

/// Splits `data` at each `sep`, keeping at most `max` parts (the rest of the input is dropped).
pub fn split_inputs<'a>(data: &'a [u8], sep: &[u8], max: usize) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while parts.len() < max {
        match rest.windows(sep.len()).position(|w| w == sep) {
            Some(i) => {
                parts.push(&rest[..i]);
                rest = &rest[i + sep.len()..];
            }
            None => {
                parts.push(rest);
                break;
            }
        }
    }
    parts
}

/// What one drain saw besides persists.
#[derive(Debug, Default)]
pub struct Drained {
    /// Ids of the replies, in order.
    pub replies: Vec<InboundId>,
    /// Ids of the finished commands, in order.
    pub done: Vec<CommandId>,
}

/// Takes every queued output of `node`, checking each: a reply's body is a JSON object (SPEC: every
/// answer, refusals included, is one), a persist lands on `disk`, an outbound call is failed at once
/// (no network here) so the node's failure paths run too. Returns the ids of the replies seen.
pub fn drain(node: &mut Node, now: Now, disk: &mut Disk) -> Vec<InboundId> {
    drain_with(node, now, disk, |_| Err("fuzz: no network".to_owned())).replies
}

/// [`drain`], with every outbound call answered at once by `answer`.
pub fn drain_with(
    node: &mut Node,
    now: Now,
    disk: &mut Disk,
    mut answer: impl FnMut(&Transmit) -> Result<HttpResponse, String>,
) -> Drained {
    let mut seen = Drained::default();
    for _ in 0..OUTPUTS_PER_INPUT_MAX {
        match node.poll_output() {
            Output::Timeout(_) => return seen,
            Output::Reply(reply) => {
                check_reply_body(reply.status, &reply.body);
                seen.replies.push(reply.id);
            }
            Output::Persist(changes) => {
                for change in changes {
                    match change.value {
                        Some(value) => disk.insert((change.table, change.key), value),
                        None => disk.remove(&(change.table, change.key)),
                    };
                }
            }
            Output::Transmit(t) => {
                let result = answer(&t);
                node.handle_response(now, t.id, result);
            }
            Output::Done { id, .. } => seen.done.push(id),
            // No wallet and no upstream here: a claimed payment or a pool call stays unanswered.
            Output::Event(_)
            | Output::Datagram(_)
            | Output::Spawn(_)
            | Output::CheckPayment(_)
            | Output::Upstream(_) => {}
        }
    }
    panic!("node still emitting after {OUTPUTS_PER_INPUT_MAX} outputs for one input");
}

/// A reply must be a JSON object with a status a server can send.
pub fn check_reply_body(status: u16, body: &[u8]) {
    assert!((100..=599).contains(&status), "reply status {status} is not an HTTP status");
    let value: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("reply {status} body is not JSON ({e}): {:?}", String::from_utf8_lossy(body)));
    assert!(value.is_object(), "reply {status} body is not a JSON object: {value}");
}

/// What a node persisted must read back: restoring from `disk` skips no record.
pub fn check_disk_restores(disk: &Disk) {
    let records = disk.iter().map(|((t, k), v)| (*t, k.clone(), v.clone())).collect();
    let (_, skipped) = restored_node(records);
    assert_eq!(skipped, 0, "a node's own records did not all restore");
}

/// A table named by one byte (wrapping over [`Table::ALL`]).
pub fn table_of(byte: u8) -> Table {
    Table::ALL[usize::from(byte) % Table::ALL.len()]
}
