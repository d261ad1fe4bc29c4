//! Answers from peers to the node's own calls: a `proto_core::Node` (fixed passport, seed, clock) asked
//! to connect to a peer, then to message every connection, then left to its housekeeping; each
//! outbound call it makes is answered, in order, by the next fuzzed answer `STATUS\n<body>` (parts
//! joined by `\n--\n`; a part starting with `!` is a transport failure; past the last part every call
//! fails). 0.5.3 answers `connection_request` unsigned, so an accepted connection and the delivery
//! path are within reach. Checked: each command finishes exactly once, and everything persisted
//! restores without a skipped record.
#![no_main]

use std::collections::VecDeque;

use darkmatter_fuzz::{check_disk_restores, drain_with, fresh_node, now_at, split_inputs, Disk};
use libfuzzer_sys::fuzz_target;
use proto_core::{Command, CommandId, HttpResponse, SendArgs, Targets, Transmit};

/// Answers per input: a connect, a few deliveries and retries.
const ANSWERS_MAX: usize = 8;
/// Between two answers of one input.
const SEPARATOR: &[u8] = b"\n--\n";
/// The peer the node is told to connect to (a name, not an address: the core never resolves).
const PEER_URL: &str = "http://peer.example:8100";
/// Seconds of housekeeping after the commands (acceptance retries, expiries).
const HOUSEKEEPING_STEPS: u64 = 120;

/// One answer in the text form: `STATUS\nbody`, or `!reason` for a failed call.
fn answer_of(part: &[u8]) -> Result<HttpResponse, String> {
    if let Some(reason) = part.strip_prefix(b"!") {
        return Err(String::from_utf8_lossy(reason).into_owned());
    }
    let (line, body) = match part.iter().position(|&b| b == b'\n') {
        Some(i) => (&part[..i], &part[i + 1..]),
        None => (part, &[][..]),
    };
    let status = std::str::from_utf8(line).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(200);
    Ok(HttpResponse { status, body: body.to_vec() })
}

fuzz_target!(|data: &[u8]| {
    let mut answers: VecDeque<&[u8]> = split_inputs(data, SEPARATOR, ANSWERS_MAX).into();
    let mut respond =
        |_: &Transmit| answers.pop_front().map_or_else(|| Err("fuzz: no more answers".to_owned()), answer_of);
    let mut node = fresh_node();
    let mut disk = Disk::new();
    let mut done = Vec::new();
    done.extend(drain_with(&mut node, now_at(0), &mut disk, &mut respond).done);
    let send = SendArgs {
        content: "hi from the fuzzer".to_owned(),
        targets: Targets::Broadcast { trust_min: -1.0 },
        metadata: Default::default(),
        in_reply_to: None,
        hops_remaining: 3,
    };
    let commands = [Command::Connect { target_url: PEER_URL.to_owned() }, Command::Send(send)];
    for (i, command) in commands.into_iter().enumerate() {
        let now = now_at(i as u64 + 1);
        node.handle_command(now, CommandId(i as u64), command);
        done.extend(drain_with(&mut node, now, &mut disk, &mut respond).done);
    }
    let now = now_at(HOUSEKEEPING_STEPS);
    node.handle_timeout(now);
    done.extend(drain_with(&mut node, now, &mut disk, &mut respond).done);
    done.sort();
    assert_eq!(done, vec![CommandId(0), CommandId(1)], "each command finishes exactly once");
    check_disk_restores(&disk);
});
