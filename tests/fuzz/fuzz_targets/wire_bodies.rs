//! Every JSON wire body type (`proto_core::wire::*`, the list of tests/properties.rs's
//! `every_wire_type!`) decoded from the same bytes with `proto_core::wire::decode`. A body that
//! decodes must survive encode → decode unchanged: a panic or a mismatch is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto_core::wire::{self, card, connection, discovery, message, peer, shard, trust, webhook};
use serde::de::DeserializeOwned;
use serde::Serialize;

fn decode_then_round_trip<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(body: &[u8]) {
    let Ok(first) = wire::decode::<T>(body) else { return };
    let encoded = wire::encode(&first);
    let again: T = wire::decode(&encoded).unwrap_or_else(|e| {
        panic!(
            "{}: its own encoding does not decode ({e}): {}",
            std::any::type_name::<T>(),
            String::from_utf8_lossy(&encoded)
        )
    });
    assert_eq!(first, again, "{}: encode/decode changed the value", std::any::type_name::<T>());
}

fuzz_target!(|body: &[u8]| {
    macro_rules! each {
        ($($t:ty),* $(,)?) => { $(decode_then_round_trip::<$t>(body);)* };
    }
    each!(
        wire::ErrorBody,
        card::WellKnownCard,
        card::StatusBody,
        card::PeerInfo,
        card::NetworkInfo,
        connection::ConnectionRequest,
        connection::ConnectionAnswer,
        connection::ConnectionProof,
        connection::ConnectionAccepted,
        connection::Disconnect,
        connection::Ack,
        discovery::Beacon,
        message::MessageEnvelope,
        message::MessageQueued,
        message::BroadcastReceived,
        peer::PeerUpdate,
        peer::PeerUpdated,
        peer::PeerLookupAnswer,
        shard::ShardPush,
        trust::ImpressionAnswer,
        webhook::WebhookUpdate,
        webhook::WebhookRecorded,
        webhook::RecordedUpdate,
        webhook::WebhookStatus,
    );
});
