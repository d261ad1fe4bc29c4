//! Records read back from disk: `Node::restore` on fuzzed (table, key, bytes) records, and each
//! record's own decoder (`proto_core::store::decode`). A record may be skipped, never panic; one that
//! decodes must re-encode to an equal value; the restored node must then answer requests.
//!
//! Input: records, each `[table byte][key length byte][key][value length u16 LE][value]`.
#![no_main]

use darkmatter_fuzz::{check_disk_restores, drain, now_at, restored_node, table_of, Disk};
use libfuzzer_sys::fuzz_target;
use proto_core::store::{self, Record};
use proto_core::{InboundId, InboundRequest, Method, Table};

/// Records per input (a real state holds many more; a few dozen reach every table).
const RECORDS_MAX: usize = 64;
/// Requests put to the restored node: (method, path) that read what restore rebuilt.
const PROBES: [&str; 4] = [
    "/__darkmatter__/status",
    "/__darkmatter__/network_info",
    "/.well-known/darkmatter.json",
    "/__darkmatter__/webhook/m1",
];

fn records(mut data: &[u8]) -> Vec<(Table, String, Vec<u8>)> {
    let mut out = Vec::new();
    while out.len() < RECORDS_MAX {
        let [table, key_len, rest @ ..] = data else { break };
        let (key, rest) = rest.split_at(usize::from(*key_len).min(rest.len()));
        let [lo, hi, rest @ ..] = rest else { break };
        let (value, rest) = rest.split_at(usize::from(u16::from_le_bytes([*lo, *hi])).min(rest.len()));
        out.push((table_of(*table), String::from_utf8_lossy(key).into_owned(), value.to_vec()));
        data = rest;
    }
    out
}

/// A record that decodes (an older layout upgraded included) re-encodes to bytes that decode to the
/// same record. Compared as encodings, not with `==`: a stored f64 may be NaN, which is not equal to
/// itself yet must still round-trip bit for bit.
fn round_trips<T: Record>(bytes: &[u8]) {
    let Ok(value) = store::decode::<T>(bytes) else { return };
    let encoded = store::encode(&value);
    let again = store::decode::<T>(&encoded).expect("a record's own encoding decodes");
    assert_eq!(store::encode(&again), encoded, "{}: encode/decode changed the record", std::any::type_name::<T>());
}

fn decode_as_its_table(table: Table, bytes: &[u8]) {
    match table {
        Table::Profile => round_trips::<store::Profile>(bytes),
        Table::Connections => round_trips::<store::Connection>(bytes),
        Table::PendingIn => round_trips::<store::PendingIn>(bytes),
        Table::PendingOut => round_trips::<store::PendingOut>(bytes),
        Table::Inbox => round_trips::<store::InboxMessage>(bytes),
        Table::Sent => round_trips::<store::SentMessage>(bytes),
        Table::Impressions => round_trips::<store::Impression>(bytes),
        Table::Replay => round_trips::<i64>(bytes),
        Table::Shards => round_trips::<store::Shard>(bytes),
        Table::Conversations => round_trips::<store::ConversationEntry>(bytes),
        Table::SentUpdates => round_trips::<store::UpdateRecord>(bytes),
        Table::SentResponses => round_trips::<store::ResponseRecord>(bytes),
        Table::Acceptances => round_trips::<u32>(bytes),
        Table::UrlProofs => round_trips::<store::UrlProof>(bytes),
        Table::AntiMatter => round_trips::<proto_core::antimatter::ledger::Flow>(bytes),
        Table::Pools => round_trips::<proto_core::pool::Pool>(bytes),
    }
}

fuzz_target!(|data: &[u8]| {
    let records = records(data);
    for (table, _, value) in &records {
        decode_as_its_table(*table, value);
    }
    let count = records.len();
    let (mut node, skipped) = restored_node(records);
    assert!(skipped <= count, "skipped {skipped} of {count} records");
    // What the restored node writes from here on must itself restore.
    let mut disk = Disk::new();
    drain(&mut node, now_at(0), &mut disk);
    let now = now_at(1);
    node.handle_timeout(now);
    drain(&mut node, now, &mut disk);
    for (i, path) in PROBES.iter().enumerate() {
        let id = InboundId(i as u64);
        let request =
            InboundRequest { id, method: Method::Get, path: (*path).to_owned(), body: Vec::new(), source: None };
        node.handle_request(now, request);
        assert_eq!(drain(&mut node, now, &mut disk), vec![id], "a request is answered exactly once, at once");
    }
    check_disk_restores(&disk);
});
