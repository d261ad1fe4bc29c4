//! Known-answer vectors computed with dmagent 0.5.3 (`fixtures/vectors.json`, a byte-identical copy of
//! `shared/reference/vectors.json`; the protocol notes' Appendix A explains each one).
//!
//! Ed25519 signing is deterministic, so every signature must come out byte for byte: a mismatch means
//! our canonical bytes differ from 0.5.3's, and a 0.5.3 peer would refuse what we sign. Each vector is
//! also verified the way a receiver does it (key from the parsed agent id, `verify_strict`), and must
//! stop verifying when any one bit of the signature flips.
//!
//! Not checked here yet, because the code they test does not exist yet:
//! - `A_solana_wallet`, `A_solana_seed_sha256`, `commit`: the AntiMatter / wallets issue.

use darkmatter_tests::{flip_signature_bit, passport_from_hex_seed, tags_str};
use proto_core::e2e::{self, E2eError, Nonce};
use proto_core::sign;
use proto_core::{AgentId, Passport, SignError};
use serde_json::Value;

const VECTORS_JSON: &str = include_str!("fixtures/vectors.json");

/// The parsed vectors, with a lookup that names the missing path instead of panicking on `None`.
struct Vectors(Value);

impl Vectors {
    fn load() -> Self {
        Self(serde_json::from_str(VECTORS_JSON).expect("fixtures/vectors.json is JSON"))
    }

    /// The string at a JSON pointer such as `/msg/signature_hex`.
    fn s(&self, pointer: &str) -> &str {
        self.0
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("vectors.json has no string at {pointer}"))
    }

    /// Agent A, the signer of every signature vector.
    fn a(&self) -> Passport {
        passport_from_hex_seed(self.s("/A_seed"))
    }
}

/// Checks that `canonical` signed with `passport` gives exactly `expected_hex`, that a receiver holding
/// only the agent id accepts it, and that every single-bit flip of it is refused.
fn assert_signature(what: &str, passport: &Passport, canonical: &[u8], expected_hex: &str) {
    assert_eq!(sign::sign_hex(passport, canonical), expected_hex, "{what}: signature differs from 0.5.3's");

    let receiver_view = AgentId::parse(passport.agent_id().as_str()).expect("our own id parses");
    let key = receiver_view.key();
    assert_eq!(sign::verify_hex(key, canonical, expected_hex), Ok(()), "{what}: 0.5.3's signature does not verify");

    // All 512 bits: a flip in R, in the low half of S and in S's top bits (non-canonical S) all differ.
    for bit in 0..512 {
        let flipped = flip_signature_bit(expected_hex, bit);
        assert_eq!(
            sign::verify_hex(key, canonical, &flipped),
            Err(SignError::Invalid),
            "{what}: signature with bit {bit} flipped still verifies"
        );
    }
}

#[test]
fn seeds_derive_the_0_5_3_agent_ids() {
    let v = Vectors::load();
    for (seed, public) in [("/A_seed", "/A_pub"), ("/B_seed", "/B_pub")] {
        let passport = passport_from_hex_seed(v.s(seed));
        assert_eq!(passport.agent_id().as_str(), v.s(public), "{seed}");
        assert!(AgentId::parse(v.s(public)).is_ok(), "{public} must parse as an agent id");
    }
}

#[test]
fn message_signature_uses_the_legacy_form() {
    let v = Vectors::load();
    let a = v.a();
    assert_eq!(v.s("/msg/from_agent_id"), a.agent_id().as_str());
    let bytes = sign::legacy_message_bytes(
        v.s("/msg/from_agent_id"),
        v.s("/msg/message_id"),
        v.s("/msg/timestamp"),
        v.s("/msg/content"),
    )
    .expect("the vector's fields have no newline before the content");
    assert_eq!(bytes, v.s("/msg/signed_bytes_utf8").as_bytes());
    assert_signature("msg", &a, &bytes, v.s("/msg/signature_hex"));
}

#[test]
fn peer_update_signature() {
    let v = Vectors::load();
    let fields = [v.s("/peer_update/agent_id"), v.s("/peer_update/new_url"), v.s("/peer_update/timestamp")];
    let bytes = sign::domain_bytes(sign::DOMAIN_PEER_UPDATE, &fields).unwrap();
    assert_eq!(bytes, v.s("/peer_update/signed").as_bytes());
    assert_signature("peer_update", &v.a(), &bytes, v.s("/peer_update/signature_hex"));
}

#[test]
fn relay_poll_signature() {
    let v = Vectors::load();
    let fields = [v.s("/relay_poll/agent_id"), v.s("/relay_poll/timestamp")];
    let bytes = sign::domain_bytes(sign::DOMAIN_RELAY_POLL, &fields).unwrap();
    assert_eq!(bytes, v.s("/relay_poll/signed").as_bytes());
    assert_signature("relay_poll", &v.a(), &bytes, v.s("/relay_poll/signature_hex"));
}

#[test]
fn challenge_proof_signs_the_hex_text_of_the_challenge() {
    let v = Vectors::load();
    let bytes = sign::domain_bytes(sign::DOMAIN_CHALLENGE, &[v.s("/challenge/challenge_hex")]).unwrap();
    assert_eq!(bytes, v.s("/challenge/signed").as_bytes());
    assert_signature("challenge", &v.a(), &bytes, v.s("/challenge/proof_hex"));
}

#[test]
fn shard_signature_covers_tags_sorted_by_code_point() {
    let v = Vectors::load();
    let tags: Vec<&str> = v.0["shard"]["tags"]
        .as_array()
        .expect("shard.tags is an array")
        .iter()
        .map(|t| t.as_str().expect("each tag is a string"))
        .collect();
    let tags_joined = tags_str(&tags);
    assert_eq!(tags_joined, v.s("/shard/tags_str"));

    let fields = [v.s("/shard/shard_id"), v.s("/shard/author_agent_id"), v.s("/shard/content"), &tags_joined];
    let bytes = sign::domain_bytes(sign::DOMAIN_SHARD, &fields).unwrap();
    assert_eq!(bytes, v.s("/shard/signed").as_bytes());
    assert_signature("shard", &v.a(), &bytes, v.s("/shard/signature_hex"));
}

#[test]
fn sdp_signature_allows_line_breaks_in_the_final_field() {
    let v = Vectors::load();
    let sdp = v.s("/sdp/sdp");
    // An SDP is CRLF-separated, so it holds `\n`; it is signed last, which keeps the form unambiguous.
    assert!(sdp.contains("\r\n"));
    let bytes = sign::domain_bytes(sign::DOMAIN_SDP, &[v.s("/sdp/agent_id"), sdp]).unwrap();
    // The vector has no `signed` string; Appendix A gives the form.
    assert_eq!(bytes, format!("darkmatter.sdp.v1\n{}\n{sdp}", v.s("/A_pub")).as_bytes());
    assert_signature("sdp", &v.a(), &bytes, v.s("/sdp/signature_hex"));
}

#[test]
fn lan_beacon_signature_covers_port_and_ts_as_decimal_text() {
    let v = Vectors::load();
    let fields = [v.s("/lan_beacon/agent_id"), v.s("/lan_beacon/port"), v.s("/lan_beacon/ts")];
    let bytes = sign::domain_bytes(sign::DOMAIN_LAN_BEACON, &fields).unwrap();
    assert_eq!(bytes, v.s("/lan_beacon/signed").as_bytes());
    // The wire carries integers; 0.5.3 signs `str(port)` and `str(ts)`, which Rust's Display matches.
    assert_eq!(8100u16.to_string(), v.s("/lan_beacon/port"));
    assert_eq!(1_767_225_600i64.to_string(), v.s("/lan_beacon/ts"));
    assert_signature("lan_beacon", &v.a(), &bytes, v.s("/lan_beacon/signature_hex"));
}

#[test]
fn genome_signature() {
    let v = Vectors::load();
    let (version, hash) = (v.s("/genome/version"), v.s("/genome/hash"));
    let bytes = sign::domain_bytes(sign::DOMAIN_GENOME, &[version, hash]).unwrap();
    // The vector has no `signed` string; Appendix A gives the form.
    assert_eq!(bytes, format!("darkmatter.genome.v1\n{version}\n{hash}").as_bytes());
    assert_signature("genome", &v.a(), &bytes, v.s("/genome/signature_hex"));
}

#[test]
fn fixture_is_the_shared_reference_file() {
    // Guards against a hand edit of the copy. The shared folder lies beside every checkout (CI's
    // included); a run without it cannot check the copy, so it fails rather than pass unchecked.
    let shared = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/reference/vectors.json");
    let original = std::fs::read_to_string(shared)
        .unwrap_or_else(|e| panic!("cannot read {shared} to check tests/fixtures/vectors.json against it: {e}"));
    assert_eq!(original, VECTORS_JSON, "tests/fixtures/vectors.json differs from {shared}");
}

/// `e2e` as bytes: the hex field at `/e2e/<name>`.
fn e2e_bytes(v: &Vectors, name: &str) -> Vec<u8> {
    hex::decode(v.s(&format!("/e2e/{name}"))).expect("e2e vectors are hex")
}

/// B, the recipient of the `e2e` vector.
fn e2e_recipient(v: &Vectors) -> Passport {
    let b = passport_from_hex_seed(v.s("/B_seed"));
    assert_eq!(b.agent_id().as_str(), v.s("/e2e/recipient_pub"));
    b
}

fn e2e_nonce(v: &Vectors) -> Nonce {
    Nonce(e2e_bytes(v, "nonce").try_into().expect("a 12-byte nonce"))
}

#[test]
fn e2e_key_derivation_matches_0_5_3_step_by_step() {
    let v = Vectors::load();
    let a = passport_from_hex_seed(v.s("/e2e/sender_seed"));
    let b = e2e_recipient(&v);
    assert_eq!(e2e::x25519_secret(&a).to_vec(), e2e_bytes(&v, "sender_x25519_priv"));
    assert_eq!(e2e::x25519_public(b.agent_id()).to_vec(), e2e_bytes(&v, "recipient_x25519_pub"));
    let shared = e2e::shared_secret(&a, b.agent_id()).unwrap();
    assert_eq!(shared.to_vec(), e2e_bytes(&v, "shared_secret"));
    // The recipient side meets at the same secret (X25519(B, A_u)).
    assert_eq!(e2e::shared_secret(&b, a.agent_id()), Ok(shared));
    assert_eq!(e2e::v1_key(&shared).to_vec(), e2e_bytes(&v, "hkdf_key"));
}

#[test]
fn e2e_seal_is_byte_exact_with_0_5_3() {
    let v = Vectors::load();
    let a = passport_from_hex_seed(v.s("/e2e/sender_seed"));
    let b = e2e_recipient(&v);
    let sealed = e2e::seal(&a, b.agent_id(), e2e_nonce(&v), v.s("/e2e/plaintext").as_bytes()).unwrap();
    assert_eq!(sealed.ciphertext_hex(), v.s("/e2e/ciphertext_with_tag"));
    assert_eq!(sealed.nonce_hex(), v.s("/e2e/nonce"));
}

#[test]
fn e2e_open_reads_0_5_3_ciphertext_and_refuses_any_altered_byte() {
    let v = Vectors::load();
    let a = passport_from_hex_seed(v.s("/e2e/sender_seed"));
    let b = e2e_recipient(&v);
    let ct = e2e_bytes(&v, "ciphertext_with_tag");
    let plain = e2e::open_hex(&b, a.agent_id(), v.s("/e2e/nonce"), v.s("/e2e/ciphertext_with_tag")).unwrap();
    assert_eq!(plain, v.s("/e2e/plaintext").as_bytes());
    for i in 0..ct.len() {
        let mut bad = ct.clone();
        bad[i] ^= 0x01;
        assert_eq!(e2e::open(&b, a.agent_id(), &e2e_nonce(&v).0, &bad), Err(E2eError::Aead), "byte {i}");
    }
    let mut bad_nonce = e2e_nonce(&v).0;
    bad_nonce[11] ^= 0x80;
    assert_eq!(e2e::open(&b, a.agent_id(), &bad_nonce, &ct), Err(E2eError::Aead));
    // Only B can open it: A, holding the same static key pair from its side, opens only as recipient
    // of B, and a third party not at all.
    let c = Passport::from_seed([0x33; 32]);
    assert_eq!(e2e::open(&c, a.agent_id(), &e2e_nonce(&v).0, &ct), Err(E2eError::Aead));
}

/// E2E version 2 has no 0.5.3 counterpart; this vector was computed independently of the Rust code by
/// `fixtures/e2e_v2_vector.py` (Python `cryptography`, hand-written Edwards→Montgomery map and
/// HChaCha20 checked against the XChaCha draft's vector), with A sealing `e2e/plaintext` for B.
mod e2e_v2_vector {
    pub const EPH_SECRET: &str = "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f";
    pub const EPH_PUB: &str = "358072d6365880d1aeea329adf9121383851ed21a28e3b75e965d0d2cd166254";
    pub const NONCE: &str = "6465666768696a6b6c6d6e6f707172737475767778797a7b";
    pub const TIMESTAMP: &str = "2026-01-01T00:00:00+00:00";
    pub const CIPHERTEXT: &str = "409b797d7d0bfb775cd58b155762fcaf216000cd998d7588f5fa13f6bf12d0a6d2a81ed8d521533ec2fddcd5a32855042385e33dc5546ca799288bb2331aa8ffcf66";
}

#[test]
fn e2e_v2_seal_matches_an_independent_implementation_and_opens() {
    use e2e_v2_vector::*;
    let v = Vectors::load();
    let a = passport_from_hex_seed(v.s("/A_seed"));
    let b = e2e_recipient(&v);
    let mut fresh = e2e::Fresh { ephemeral_secret: [0; 32], nonce: [0; e2e::V2_NONCE_BYTES] };
    hex::decode_to_slice(EPH_SECRET, &mut fresh.ephemeral_secret).unwrap();
    hex::decode_to_slice(NONCE, &mut fresh.nonce).unwrap();
    let plaintext = v.s("/e2e/plaintext").as_bytes();
    let sealed = e2e::seal_v2(&a, b.agent_id(), TIMESTAMP, fresh, plaintext).unwrap();
    assert_eq!(hex::encode(sealed.eph_pub), EPH_PUB);
    assert_eq!(hex::encode(&sealed.ciphertext), CIPHERTEXT);
    let opened = e2e::open_v2_hex(&b, a.agent_id(), TIMESTAMP, [EPH_PUB, NONCE, CIPHERTEXT]).unwrap();
    assert_eq!(opened, plaintext);
}

#[test]
fn relay_inner_plaintext_signs_the_sorted_ascii_payload_json_as_0_5_3() {
    let v = Vectors::load();
    let payload = v.0.pointer("/relay_inner_content_str/payload").expect("vector payload").clone();
    let content_str = v.s("/relay_inner_content_str/content_str");
    assert_eq!(e2e::inner_content_str(&payload), content_str);
    assert_eq!(e2e::inner_content_str(&payload), v.s("/relay_inner_content_str/content_str_256"));

    let a = v.a();
    let ts = "2026-01-01T00:00:00+00:00";
    let path = "/__darkmatter__/message";
    let inner = e2e::inner_plaintext(&proto_core::crypto::Ed25519, &a, path, &payload, ts).unwrap();
    let from = a.agent_id().as_str();
    let signed = sign::legacy_message_bytes(from, "m1", ts, content_str).unwrap();
    let signature = sign::sign_hex(&a, &signed);
    // Python's json.dumps of the inner dict in 0.5.3's key order (the payload's keys happen to be sorted).
    let python = format!(
        r#"{{"path": "{path}", "payload": {content_str}, "from_agent_id": "{from}", "timestamp": "{ts}", "signature": "{signature}"}}"#
    );
    assert_eq!(String::from_utf8(inner).unwrap(), python);
}

#[test]
fn relay_inner_signature_covers_only_the_first_256_characters() {
    let v = Vectors::load();
    let long: Value = serde_json::json!({ "content": "é".repeat(100), "message_id": "m2" });
    let text = e2e::inner_content_str(&long);
    assert_eq!(text.len(), e2e::INNER_SIGNED_CHARS);
    assert!(text.starts_with(r#"{"content": "\u00e9\u00e9"#));
    // No message id: 0.5.3 signs `relay` in its place.
    let ts = "2026-01-01T00:00:00+00:00";
    let inner = e2e::inner_plaintext(&proto_core::crypto::Ed25519, &v.a(), "/p", &serde_json::json!({}), ts).unwrap();
    let parsed: Value = serde_json::from_slice(&inner).unwrap();
    let signed = sign::legacy_message_bytes(v.a().agent_id().as_str(), "relay", ts, "{}").unwrap();
    assert_eq!(parsed["signature"].as_str(), Some(sign::sign_hex(&v.a(), &signed).as_str()));
}
