//! The inbound request path end to end: a `proto_core::Node` (fixed passport, seed and clock) handed
//! a sequence of fuzzed requests, each `METHOD PATH\n<body>`, separated by `\n--\n`, the clocks one
//! step on before each. Checked after every request: exactly one reply to it, a JSON object; and at
//! the end: everything the node persisted restores without a skipped record.
#![no_main]

use darkmatter_fuzz::{
    check_disk_restores, drain, fresh_node, now_at, parse_request, split_inputs, Disk, LOCAL_SOURCE, REMOTE_SOURCE,
};
use libfuzzer_sys::fuzz_target;
use proto_core::{InboundId, InboundRequest};

/// Requests handed to one node: enough for a connect, prove, message, webhook sequence.
const REQUESTS_MAX: usize = 8;
/// Between two requests of one input.
const SEPARATOR: &[u8] = b"\n--\n";

fuzz_target!(|data: &[u8]| {
    let mut node = fresh_node();
    let mut disk = Disk::new();
    drain(&mut node, now_at(0), &mut disk);
    for (i, bytes) in split_inputs(data, SEPARATOR, REQUESTS_MAX).into_iter().enumerate() {
        let now = now_at(i as u64 + 1);
        node.handle_timeout(now);
        drain(&mut node, now, &mut disk);
        let (method, path, body) = parse_request(bytes);
        let id = InboundId(i as u64);
        // Every other request comes from loopback, so local auto-accept is reached too.
        let source = Some(if i % 2 == 1 { LOCAL_SOURCE } else { REMOTE_SOURCE });
        node.handle_request(now, InboundRequest { id, method, path, body, source });
        let replies = drain(&mut node, now, &mut disk);
        assert_eq!(replies, vec![id], "a request is answered exactly once, at once");
    }
    check_disk_restores(&disk);
});
