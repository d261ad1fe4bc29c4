//! Laws of the protocol core, checked on random inputs with quickcheck. Each test's name states its law.
//!
//! Iteration counts are chosen so the whole file stays around a few seconds in a debug build; a failure
//! prints the shrunk inputs, and each law fixes its own test count and input size.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use proto_core::e2e::{self, E2eError, Nonce};
use proto_core::limits::{
    RateLimit, RateWindow, FRESHNESS_WINDOW_S, RATE_PER_PEER_DEFAULT, RATE_WINDOW_MS, URL_BYTES_MAX,
};
use proto_core::replay::{ReplayCache, ReplayError};
use proto_core::sign;
use proto_core::time::{self, TIMESTAMP_CHARS_MAX};
use proto_core::wire::{self, card, connection, discovery, message, peer, shard, trust, webhook};
use proto_core::{url, AgentId, Passport, SignError};
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult, Testable};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// 2026-01-01T00:00:00Z in Unix microseconds: the origin of every simulated wall clock here.
const T0_US: i64 = 1_767_225_600_000_000;
const SECOND_US: i64 = 1_000_000;

/// Runs `law` on `tests` random cases whose strings and vectors are at most `size` long.
fn check<A: Testable>(tests: u64, size: usize, law: A) {
    QuickCheck::new().tests(tests).max_tests(tests * 10).rng(Gen::new(size)).quickcheck(law);
}

/// A number in `0..n`. `Gen` exposes no ranges, so this reduces a full-width draw.
fn below(g: &mut Gen, n: u64) -> u64 {
    u64::arbitrary(g) % n
}

/// How a receiver sees a signer: only the agent id it was sent, parsed and checked.
fn receiver_view(passport: &Passport) -> AgentId {
    AgentId::parse(passport.agent_id().as_str()).expect("a passport's own id parses")
}

// ---------------------------------------------------------------------------------------------------
// Signatures
// ---------------------------------------------------------------------------------------------------

/// What a `\n`-joined 0.5.3 form must do with `parts` (domain or first field first, last field last):
/// refuse at the first part but the last that holds a newline, else sign exactly the joined text.
fn expected_joined_form(parts: &[&str]) -> Result<Vec<u8>, SignError> {
    let head = &parts[..parts.len().saturating_sub(1)];
    match head.iter().position(|part| part.contains('\n')) {
        Some(index) => Err(SignError::AmbiguousField { index }),
        None => Ok(parts.join("\n").into_bytes()),
    }
}

#[test]
fn sign_verify_round_trip() {
    fn law(
        seed: [u8; 32],
        domain: String,
        fields: Vec<String>,
        legacy: (String, String, String, String),
    ) -> TestResult {
        let passport = Passport::from_seed(seed);
        let signer = receiver_view(&passport);
        let round_trips = |bytes: &[u8]| {
            let sig = sign::sign_hex(&passport, bytes);
            sig.len() == sign::SIGNATURE_HEX_LEN && sign::verify_hex(signer.key(), bytes, &sig).is_ok()
        };
        let fields: Vec<&str> = fields.iter().map(String::as_str).collect();

        // Our form is total: any domain, any fields, newlines anywhere.
        if !round_trips(&sign::v2_bytes(&domain, &fields)) {
            return TestResult::error("v2 form did not round-trip");
        }

        // 0.5.3's domain form, and its legacy message form (the same joining without a domain).
        let mut domain_parts = vec![domain.as_str()];
        domain_parts.extend(&fields);
        let (from, id, ts, content) = (&legacy.0, &legacy.1, &legacy.2, &legacy.3);
        let cases = [
            ("domain form", sign::domain_bytes(&domain, &fields), expected_joined_form(&domain_parts)),
            (
                "legacy form",
                sign::legacy_message_bytes(from, id, ts, content),
                expected_joined_form(&[from.as_str(), id, ts, content]),
            ),
        ];
        for (form, got, want) in cases {
            if got != want {
                return TestResult::error(format!("{form}: got {got:?}, want {want:?}"));
            }
            if let Ok(bytes) = got {
                if !round_trips(&bytes) {
                    return TestResult::error(format!("{form} did not round-trip"));
                }
            }
        }
        TestResult::passed()
    }
    check(1_000, 40, law as fn([u8; 32], String, Vec<String>, (String, String, String, String)) -> TestResult);
}

/// Every 0.5.3 domain, so the mutation law runs over the real forms.
const DOMAINS_0_5_3: [&str; 7] = [
    sign::DOMAIN_PEER_UPDATE,
    sign::DOMAIN_RELAY_POLL,
    sign::DOMAIN_SDP,
    sign::DOMAIN_SHARD,
    sign::DOMAIN_LAN_BEACON,
    sign::DOMAIN_CHALLENGE,
    sign::DOMAIN_GENOME,
];
/// Every domain of our own form.
const DOMAINS_V2: [&str; 7] = [
    sign::V2_MESSAGE,
    sign::V2_CONNECT,
    sign::V2_CONNECT_ANSWER,
    sign::V2_ACCEPTED,
    sign::V2_DISCONNECT,
    sign::V2_PEER_UPDATE,
    sign::V2_WEBHOOK,
];

/// Which canonical form signs the fields.
#[derive(Clone, Copy, Debug)]
enum Form {
    /// 0.5.3's message form: exactly four fields, no domain.
    Legacy,
    /// 0.5.3's `domain \n fields...`.
    Domain(&'static str),
    /// Our netstring form.
    V2(&'static str),
}

/// Fields that the chosen form can sign: the 0.5.3 forms get no newline before their last field,
/// since they refuse to sign one.
#[derive(Clone, Debug)]
struct SignedFields {
    form: Form,
    fields: Vec<String>,
}

impl SignedFields {
    fn canonical(&self, fields: &[String]) -> Result<Vec<u8>, SignError> {
        let f: Vec<&str> = fields.iter().map(String::as_str).collect();
        match self.form {
            Form::Legacy => sign::legacy_message_bytes(f[0], f[1], f[2], f[3]),
            Form::Domain(domain) => sign::domain_bytes(domain, &f),
            Form::V2(domain) => Ok(sign::v2_bytes(domain, &f)),
        }
    }
}

impl Arbitrary for SignedFields {
    fn arbitrary(g: &mut Gen) -> Self {
        let form = match below(g, 3) {
            0 => Form::Legacy,
            1 => Form::Domain(g.choose(&DOMAINS_0_5_3).copied().unwrap()),
            _ => Form::V2(g.choose(&DOMAINS_V2).copied().unwrap()),
        };
        let count = if matches!(form, Form::Legacy) { 4 } else { 1 + below(g, 5) as usize };
        let mut fields: Vec<String> = (0..count).map(|_| String::arbitrary(g)).collect();
        if !matches!(form, Form::V2(_)) {
            for field in &mut fields[..count - 1] {
                *field = field.replace('\n', " ");
            }
        }
        Self { form, fields }
    }

    /// Shrinks one field at a time, keeping the field count (the legacy form needs exactly four).
    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        let this = self.clone();
        Box::new((0..self.fields.len()).flat_map(move |i| {
            let base = this.clone();
            this.fields[i].shrink().map(move |smaller| {
                let mut next = base.clone();
                next.fields[i] = smaller;
                next
            })
        }))
    }
}

/// One byte of one non-empty field replaced by a different byte.
#[derive(Clone, Debug)]
struct ByteEdit {
    field: usize,
    byte: usize,
    mask: u8,
}

impl Arbitrary for ByteEdit {
    fn arbitrary(g: &mut Gen) -> Self {
        Self { field: usize::arbitrary(g), byte: usize::arbitrary(g), mask: u8::arbitrary(g) }
    }
}

impl ByteEdit {
    /// The fields with this edit applied, or `None` if every field is empty.
    ///
    /// The new byte keeps the field valid UTF-8: a `&str` cannot hold anything else, and invalid UTF-8
    /// is refused by the JSON layer before any signature is checked. Scanning the 255 other values
    /// from a random start always finds one (every byte of a UTF-8 sequence has valid alternatives).
    fn apply(&self, fields: &[String]) -> Option<Vec<String>> {
        let non_empty: Vec<usize> = (0..fields.len()).filter(|&i| !fields[i].is_empty()).collect();
        let target = *non_empty.get(self.field % non_empty.len().max(1))?;
        let mut bytes = fields[target].clone().into_bytes();
        let pos = self.byte % bytes.len();
        let old = bytes[pos];
        let edited = (0..255u16)
            .map(|k| old ^ (1 + ((u16::from(self.mask) + k) % 255) as u8))
            .find_map(|new| {
                bytes[pos] = new;
                String::from_utf8(bytes.clone()).ok()
            })
            .expect("some other byte value keeps the field valid UTF-8");
        let mut out = fields.to_vec();
        out[target] = edited;
        Some(out)
    }
}

#[test]
fn any_single_byte_change_to_a_signed_field_is_rejected() {
    fn law(seed: [u8; 32], signed: SignedFields, edit: ByteEdit) -> TestResult {
        let Ok(bytes) = signed.canonical(&signed.fields) else {
            return TestResult::error("the generator made fields its form refuses to sign");
        };
        let Some(edited) = edit.apply(&signed.fields) else { return TestResult::discard() };
        let passport = Passport::from_seed(seed);
        let sig = sign::sign_hex(&passport, &bytes);
        match signed.canonical(&edited) {
            // The edit put a newline before the last field: a 0.5.3 form refuses it outright.
            Err(SignError::AmbiguousField { .. }) if !matches!(signed.form, Form::V2(_)) => TestResult::passed(),
            Err(other) => TestResult::error(format!("unexpected {other:?}")),
            Ok(edited_bytes) => TestResult::from_bool(
                edited_bytes != bytes
                    && sign::verify_hex(receiver_view(&passport).key(), &edited_bytes, &sig) == Err(SignError::Invalid),
            ),
        }
    }
    check(2_000, 40, law as fn([u8; 32], SignedFields, ByteEdit) -> TestResult);
}

// ---------------------------------------------------------------------------------------------------
// Bounds: replay cache and rate window
// ---------------------------------------------------------------------------------------------------

/// A replay cache capacity small enough that a few dozen records fill it.
#[derive(Clone, Copy, Debug)]
struct SmallCapacity(usize);

impl Arbitrary for SmallCapacity {
    fn arbitrary(g: &mut Gen) -> Self {
        Self(1 + below(g, 6) as usize)
    }
    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        Box::new((1..self.0).map(Self))
    }
}

/// Few ids, so the same id comes back often, both inside and after its window.
const IDS: [&str; 6] = ["msg-a", "msg-b", "msg-c", "msg-d", "msg-e", "msg-f"];

/// One `record(id, stamp, now)` after the clock moved forward by `advance_s`.
#[derive(Clone, Debug)]
struct RecordOp {
    id: usize,
    /// Signed time relative to now: within the freshness window, and beyond it either side.
    stamp_offset_s: i64,
    advance_s: i64,
}

impl Arbitrary for RecordOp {
    fn arbitrary(g: &mut Gen) -> Self {
        let window_s = FRESHNESS_WINDOW_S as i64;
        Self {
            id: below(g, IDS.len() as u64) as usize,
            stamp_offset_s: below(g, 2 * (window_s + 100) as u64 + 1) as i64 - (window_s + 100),
            advance_s: if bool::arbitrary(g) { 0 } else { below(g, 120) as i64 },
        }
    }
}

#[test]
fn dedup_never_admits_an_id_twice_within_window_and_never_grows_past_bound() {
    fn law(capacity: SmallCapacity, ops: Vec<RecordOp>) -> TestResult {
        let mut cache = ReplayCache::with_capacity(capacity.0);
        // The specification: an admitted id protects until its stamp leaves the freshness window (a
        // stale stamp, which the freshness check refuses anyway, until the next microsecond).
        let mut protected_until_us: BTreeMap<&str, i64> = BTreeMap::new();
        let mut now_us = T0_US;
        for (step, op) in ops.iter().enumerate() {
            now_us += op.advance_s * SECOND_US;
            let (id, stamp_us) = (IDS[op.id], now_us + op.stamp_offset_s * SECOND_US);
            let live = protected_until_us.get(id).is_some_and(|&until| until > now_us);
            let live_count = protected_until_us.values().filter(|&&until| until > now_us).count();

            if cache.contains(id, now_us) != live {
                return TestResult::error(format!("step {step}: contains({id}) disagrees with the window"));
            }
            let expected = if live {
                Err(ReplayError::Duplicate)
            } else if live_count >= capacity.0 {
                Err(ReplayError::Full)
            } else {
                Ok(())
            };
            let got = cache.record(id, stamp_us, now_us);
            if got != expected {
                return TestResult::error(format!("step {step}: record({id}) = {got:?}, expected {expected:?}"));
            }
            if got.is_ok() {
                let until = (stamp_us + FRESHNESS_WINDOW_S as i64 * SECOND_US).max(now_us + 1);
                protected_until_us.insert(id, until);
            }
            if cache.len() > capacity.0 {
                return TestResult::error(format!("step {step}: {} entries in a cache of {}", cache.len(), capacity.0));
            }
        }
        TestResult::passed()
    }
    check(2_000, 80, law as fn(SmallCapacity, Vec<RecordOp>) -> TestResult);
}

/// A configured per-window limit small enough that random traffic hits it.
#[derive(Clone, Copy, Debug)]
struct SmallLimit(u32);

impl Arbitrary for SmallLimit {
    fn arbitrary(g: &mut Gen) -> Self {
        Self(1 + below(g, 12) as u32)
    }
    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        Box::new((1..self.0).map(Self))
    }
}

/// Time between two requests: often none (a burst), sometimes seconds, sometimes most of a window.
#[derive(Clone, Copy, Debug)]
struct GapMs(u64);

impl Arbitrary for GapMs {
    fn arbitrary(g: &mut Gen) -> Self {
        Self(match below(g, 3) {
            0 => 0,
            1 => below(g, 5_000),
            _ => below(g, RATE_WINDOW_MS),
        })
    }
    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        Box::new(self.0.shrink().map(Self))
    }
}

#[test]
fn rate_window_never_admits_more_than_its_limit_in_any_window() {
    fn law(limit: SmallLimit, as_default: bool, gaps: Vec<GapMs>) -> TestResult {
        // The same limit reached both ways: configured explicitly, or as the protocol default.
        let (configured, default) = if as_default {
            (RateLimit::Default, limit.0)
        } else {
            (RateLimit::PerWindow(limit.0), RATE_PER_PEER_DEFAULT)
        };
        let limit = limit.0 as usize;
        let mut window = RateWindow::default();
        let mut admitted_ms: Vec<u64> = Vec::new();
        // Admissions in the window that ends at `t`, i.e. in (t - window, t].
        let in_window =
            |admitted_ms: &[u64], t: u64| admitted_ms.iter().filter(|&&a| a <= t && a + RATE_WINDOW_MS > t).count();
        let mut now_ms = 1_000_000;
        for (step, gap) in gaps.iter().enumerate() {
            now_ms += gap.0;
            let before = in_window(&admitted_ms, now_ms);
            if window.try_admit(now_ms, configured, default) {
                admitted_ms.push(now_ms);
            } else if before < limit {
                return TestResult::error(format!("step {step}: refused with {before} of {limit} in the window"));
            }
            if window.count(now_ms) != in_window(&admitted_ms, now_ms) {
                return TestResult::error(format!("step {step}: count() disagrees with the admissions"));
            }
        }
        // The law over the whole history. A window ending at an admission holds at least as many as
        // any window containing the same admissions, so checking those covers every window.
        match admitted_ms.iter().find(|&&t| in_window(&admitted_ms, t) > limit) {
            Some(t) => {
                TestResult::error(format!("{} admitted in the window ending at {t}", in_window(&admitted_ms, *t)))
            }
            None => TestResult::passed(),
        }
    }
    check(2_000, 100, law as fn(SmallLimit, bool, Vec<GapMs>) -> TestResult);
}

// ---------------------------------------------------------------------------------------------------
// Decoding untrusted input
// ---------------------------------------------------------------------------------------------------

/// Decodes `body` as `T` and, when that succeeds, encodes the value again: `encode` `expect`s success,
/// so a decodable value that cannot be re-encoded would be a panic reachable from the network.
fn decode_then_encode<T: DeserializeOwned + Serialize>(body: &[u8]) {
    if let Ok(value) = wire::decode::<T>(body) {
        wire::encode(&value);
    }
}

/// `$m!(Type)` for every wire type; the decoder and the corpus below read this one list.
macro_rules! every_wire_type {
    ($m:ident) => {
        $m!(wire::ErrorBody);
        $m!(card::WellKnownCard);
        $m!(card::StatusBody);
        $m!(card::PeerInfo);
        $m!(card::NetworkInfo);
        $m!(connection::ConnectionRequest);
        $m!(connection::ConnectionAnswer);
        $m!(connection::ConnectionProof);
        $m!(connection::ConnectionAccepted);
        $m!(connection::Disconnect);
        $m!(connection::Ack);
        $m!(discovery::Beacon);
        $m!(message::MessageEnvelope);
        $m!(message::MessageQueued);
        $m!(message::BroadcastReceived);
        $m!(peer::PeerUpdate);
        $m!(peer::PeerUpdated);
        $m!(peer::PeerLookupAnswer);
        $m!(shard::ShardPush);
        $m!(trust::ImpressionAnswer);
        $m!(webhook::WebhookUpdate);
        $m!(webhook::WebhookRecorded);
        $m!(webhook::RecordedUpdate);
        $m!(webhook::WebhookStatus);
    };
}

fn decode_as_every_wire_type(body: &[u8]) {
    macro_rules! decode_as {
        ($t:ty) => {
            decode_then_encode::<$t>(body)
        };
    }
    every_wire_type!(decode_as);
}

/// Well-formed bodies to mutate: a sample of every wire type (so every field name appears) plus
/// bodies as 0.5.3 really sends them (protocol notes §5.1 and Appendix B).
fn corpus() -> &'static [Vec<u8>] {
    static CORPUS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let mut bodies: Vec<Vec<u8>> = Vec::new();
        macro_rules! sample_of {
            ($t:ty) => {
                bodies.push(wire::encode(&<$t as Sample>::sample()))
            };
        }
        every_wire_type!(sample_of);
        bodies.extend(
            [
                r#"{"message_id":"msg-df6d9f187784","content":"hi F, from B","webhook":"http://node-b.example:9900/__darkmatter__/webhook/msg-df6d9f187784","hops_remaining":10,"metadata":{"topic":"t1","forwarded":true},"timestamp":"2026-11-27T12:43:26.485544+00:00","from_agent_id":"43046bfe4092b3e94994eada15dcc20d8aaa07b658fd3954eb8e0efb8bdca5de","signature_hex":"29ce9da3555d51daaf2b67ec28b1203d98fc3778df1fafc821170347fcaa2438c3866fc4a49917f6032dffecbf9010bff1b62c0b74aa479d4701d73089064e05"}"#,
                r#"{"from_agent_id":"45ea","from_agent_url":"http://node-b.example:9900","from_agent_bio":"A DarkMatter mesh agent.","from_agent_public_key_hex":"45ea","from_agent_display_name":"node-b3","wallets":{"solana":"D3PD"},"from_agent_wallet_address":"D3PD","created_at":"2026-11-27T12:47:08.013969+00:00"}"#,
                r#"{"challenge_id":"ch-fake000000000001","proof_hex":"fa82","agent_id":"45ea","public_key_hex":"45ea"}"#,
                r#"{"type":"forwarded","agent_id":"5db7","target_agent_id":"4304","note":"fwd note"}"#,
                r#"{"proto":"darkmatter","v":"0.2","agent_id":"4304","port":8100,"ts":1767225600,"accepting":true}"#,
            ]
            .map(|body| body.as_bytes().to_vec()),
        );
        bodies
    })
}

/// A filled-in value of a wire type, for the corpus.
trait Sample {
    fn sample() -> Self;
}

/// Most wire types have a `Default`; the few answer types without one are filled in below.
macro_rules! sample_by_default {
    ($($t:ty),* $(,)?) => {
        $(impl Sample for $t {
            fn sample() -> Self {
                <$t>::default()
            }
        })*
    };
}

sample_by_default!(
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
    peer::PeerUpdate,
    peer::PeerLookupAnswer,
    shard::ShardPush,
    trust::ImpressionAnswer,
    webhook::WebhookUpdate,
    webhook::RecordedUpdate,
    webhook::WebhookStatus,
);

impl Sample for wire::ErrorBody {
    fn sample() -> Self {
        Self { error: "Message queue full".to_owned() }
    }
}
impl Sample for message::MessageQueued {
    fn sample() -> Self {
        Self { success: true, queued: true, queue_position: 1 }
    }
}
impl Sample for message::BroadcastReceived {
    fn sample() -> Self {
        Self { status: "broadcast_received".to_owned() }
    }
}
impl Sample for peer::PeerUpdated {
    fn sample() -> Self {
        Self { success: true, updated: true }
    }
}
impl Sample for webhook::WebhookRecorded {
    fn sample() -> Self {
        Self { success: true, recorded: "received".to_owned() }
    }
}

/// A corpus body with a few byte-level edits: near-valid JSON reaches deep into every decoder.
#[derive(Clone, Debug)]
struct Mutant(Vec<u8>);

impl Arbitrary for Mutant {
    fn arbitrary(g: &mut Gen) -> Self {
        let mut body = g.choose(corpus()).unwrap().clone();
        for _ in 0..1 + below(g, 4) {
            let pos = below(g, body.len() as u64 + 1) as usize;
            match below(g, 5) {
                0 if pos < body.len() => body[pos] = u8::arbitrary(g),
                1 if pos < body.len() => {
                    body.remove(pos);
                }
                2 => body.insert(pos, *g.choose(b"{}[]\",:\\0-.eE \xff\xc3").unwrap()),
                3 => body.truncate(pos),
                _ => {
                    // Repeat a slice: duplicated keys, doubled brackets, longer strings.
                    let end = (pos + below(g, 16) as usize).min(body.len());
                    let slice = body[pos..end].to_vec();
                    let _ = body.splice(pos..pos, slice);
                }
            }
        }
        Self(body)
    }
}

/// A syntactically valid object whose keys are the wire types' field names (sometimes repeated,
/// sometimes unknown) and whose values are either a sample's value for that key or a random value of
/// any JSON type: it reaches the type checks of every field, and now and then decodes.
#[derive(Clone, Debug)]
struct JsonObject(String);

impl Arbitrary for JsonObject {
    fn arbitrary(g: &mut Gen) -> Self {
        let size = g.size() as u64;
        let pairs: Vec<String> = (0..below(g, size / 4 + 1))
            .map(|_| {
                let (key, sample) = g.choose(corpus_fields()).unwrap().clone();
                let key = if below(g, 10) == 0 { String::arbitrary(g) } else { key };
                let value = if bool::arbitrary(g) { sample } else { random_json(g, 3) };
                format!("{}:{value}", serde_json::Value::String(key))
            })
            .collect();
        Self(format!("{{{}}}", pairs.join(",")))
    }
}

/// A JSON value of any type, nested at most `depth` deep, with the numbers that break typed fields.
fn random_json(g: &mut Gen, depth: u32) -> serde_json::Value {
    use serde_json::{json, Value};
    let kinds = if depth == 0 { 5 } else { 7 };
    match below(g, kinds) {
        0 => Value::Null,
        1 => Value::Bool(bool::arbitrary(g)),
        2 => g
            .choose(&[json!(0), json!(-1), json!(65_536), json!(u64::MAX), json!(i64::MIN), json!(1.5), json!(-0.0)])
            .unwrap()
            .clone(),
        3 => Value::String(String::arbitrary(g)),
        4 => Value::String(
            g.choose(&["", "msg-1", "2026-01-01T00:00:00Z", "http://a.example", "received"]).unwrap().to_string(),
        ),
        5 => Value::Array((0..below(g, 4)).map(|_| random_json(g, depth - 1)).collect()),
        _ => Value::Object((0..below(g, 4)).map(|_| (String::arbitrary(g), random_json(g, depth - 1))).collect()),
    }
}

/// Every top-level `(field name, value)` pair in the corpus, without repeats.
fn corpus_fields() -> &'static [(String, serde_json::Value)] {
    static FIELDS: OnceLock<Vec<(String, serde_json::Value)>> = OnceLock::new();
    FIELDS.get_or_init(|| {
        let mut fields: Vec<(String, serde_json::Value)> = corpus()
            .iter()
            .filter_map(|body| serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(body).ok())
            .flat_map(|object| object.into_iter())
            .collect();
        fields.sort_by_key(|(key, value)| (key.clone(), value.to_string()));
        fields.dedup();
        fields
    })
}

#[test]
fn every_wire_type_decodes_its_own_encoding() {
    fn round_trips<T: DeserializeOwned + Serialize + Sample + PartialEq + std::fmt::Debug>() {
        let sample = T::sample();
        let decoded: T =
            wire::decode(&wire::encode(&sample)).unwrap_or_else(|e| panic!("{}: {e}", std::any::type_name::<T>()));
        assert_eq!(decoded, sample);
    }
    macro_rules! check_round_trip {
        ($t:ty) => {
            round_trips::<$t>()
        };
    }
    every_wire_type!(check_round_trip);
    // Random objects need real field names, or they only ever exercise "unknown field".
    assert!(corpus_fields().len() > 50, "only {} fields in the corpus", corpus_fields().len());
}

#[test]
fn deeply_nested_bodies_are_refused_or_dropped_never_kept_or_overflowed() {
    // A stack overflow here would abort the whole process. serde_json refuses more than 128 levels in
    // a field it reads, and skips an unknown field's value without recursing: so every wire type
    // either refuses these bodies or keeps nothing of the nesting.
    let depth = 100_000;
    let arrays = format!("{{\"metadata\":{}{}}}", "[".repeat(depth), "]".repeat(depth));
    let objects = format!("{}{}", "{\"a\":".repeat(depth), "}".repeat(depth));
    for body in [&arrays, &objects] {
        for (name, kept_bytes) in accepted_by(body.as_bytes()) {
            assert!(kept_bytes < 4_096, "{name} kept {kept_bytes} bytes of a body nested {depth} deep");
        }
    }
    // The envelope reads `metadata` (an object): nested objects there are refused past the limit and
    // read below it.
    let envelope = |levels: usize| {
        let nested = format!("{}{}{}", "{\"k\":".repeat(levels), "0", "}".repeat(levels));
        let mut value: serde_json::Value = serde_json::from_slice(&wire::encode(&message::MessageEnvelope::sample()))
            .expect("the sample envelope is JSON");
        value["metadata"] = serde_json::Value::Null;
        let body = value.to_string().replace("\"metadata\":null", &format!("\"metadata\":{nested}"));
        wire::decode::<message::MessageEnvelope>(body.as_bytes()).is_ok()
    };
    assert!(envelope(100), "100 levels of metadata refused");
    assert!(!envelope(depth), "metadata nested {depth} deep accepted");
}

/// The wire types that decode `body`, each with the size of what it kept (its encoding).
fn accepted_by(body: &[u8]) -> Vec<(&'static str, usize)> {
    let mut accepted = Vec::new();
    macro_rules! try_decode {
        ($t:ty) => {
            if let Ok(value) = wire::decode::<$t>(body) {
                accepted.push((stringify!($t), wire::encode(&value).len()));
            }
        };
    }
    every_wire_type!(try_decode);
    accepted
}

/// Decoding a value, encoding it and decoding again gives the same value: nothing a peer can send
/// changes meaning when we store or forward it. Random objects built from the wire types' real field
/// names and values decode now and then; the law holds for every one that does.
#[test]
fn what_decodes_survives_encode_and_decode_unchanged() {
    fn stable<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(body: &[u8]) -> Option<bool> {
        let first: T = wire::decode(body).ok()?;
        let again: T = wire::decode(&wire::encode(&first)).expect("our own encoding decodes");
        Some(again == first)
    }
    fn law(objects: Vec<JsonObject>, mutant: Mutant) -> TestResult {
        let mut decoded = 0;
        for body in objects.iter().map(|o| o.0.as_bytes()).chain([mutant.0.as_slice()]) {
            macro_rules! check_stable {
                ($t:ty) => {
                    match stable::<$t>(body) {
                        Some(false) => return TestResult::error(format!("{} changed", stringify!($t))),
                        Some(true) => decoded += 1,
                        None => {}
                    }
                };
            }
            every_wire_type!(check_stable);
        }
        if decoded == 0 {
            TestResult::discard()
        } else {
            TestResult::passed()
        }
    }
    check(500, 40, law as fn(Vec<JsonObject>, Mutant) -> TestResult);
}

#[test]
fn decoding_arbitrary_bytes_never_panics() {
    fn law(bytes: Vec<u8>, text: String, mutant: Mutant, object: JsonObject) -> bool {
        decode_as_every_wire_type(&bytes);
        decode_as_every_wire_type(text.as_bytes());
        // Almost no random input starts with `{`, which `decode` checks first; these get past it.
        let mut braced = b"{".to_vec();
        braced.extend_from_slice(&bytes);
        decode_as_every_wire_type(&braced);
        decode_as_every_wire_type(format!("{{{text}").as_bytes());
        decode_as_every_wire_type(&mutant.0);
        decode_as_every_wire_type(object.0.as_bytes());
        true
    }
    check(1_000, 100, law as fn(Vec<u8>, String, Mutant, JsonObject) -> bool);
}

// ---------------------------------------------------------------------------------------------------
// Parsing untrusted strings
// ---------------------------------------------------------------------------------------------------

/// Mostly 64 lowercase hex digits (about half of them a valid point), sometimes with a wrong
/// character or length, sometimes a real key.
#[derive(Clone, Debug)]
struct NearAgentId {
    text: String,
    /// A real key's id, which must parse.
    real: bool,
}

impl Arbitrary for NearAgentId {
    fn arbitrary(g: &mut Gen) -> Self {
        if below(g, 4) == 0 {
            let text = Passport::from_seed(<[u8; 32]>::arbitrary(g)).agent_id().as_str().to_owned();
            return Self { text, real: true };
        }
        let len = *g.choose(&[64, 64, 64, 63, 65, 0, 128, 129]).unwrap();
        let text = (0..len)
            .map(|_| match below(g, 50) {
                0 => char::arbitrary(g),
                1 => *g.choose(&['A', 'F', 'g', ' ', '\n', 'é']).unwrap(),
                _ => *g.choose(b"0123456789abcdef").unwrap() as char,
            })
            .collect();
        Self { text, real: false }
    }
}

#[test]
fn agent_id_parse_never_panics_and_accepts_only_64_lowercase_hex() {
    fn law(text: String, near: NearAgentId) -> bool {
        // A parser that refused everything would pass the rest: real ids must parse.
        if near.real && AgentId::parse(&near.text).is_err() {
            return false;
        }
        [text, near.text].iter().all(|text| match AgentId::parse(text) {
            Ok(id) => {
                id.as_str() == text
                    && text.len() == 64
                    && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            }
            Err(_) => true,
        })
    }
    check(2_000, 100, law as fn(String, NearAgentId) -> bool);
}

/// An RFC 3339 timestamp in one of the shapes 0.5.3 and chrono produce, sometimes with one character
/// replaced or the end cut off.
#[derive(Clone, Debug)]
struct NearTimestamp {
    text: String,
    /// Every part in range and of a form RFC 3339 allows: it must parse.
    valid: bool,
}

impl Arbitrary for NearTimestamp {
    fn arbitrary(g: &mut Gen) -> Self {
        const FRACTIONS: [&str; 6] = ["", ".123", ".485544", ".123456789", ".", ".12"];
        const OFFSETS: [&str; 8] = ["+00:00", "Z", "-05:30", "+14:00", "z", "+0000", "", "+24:00"];
        let (fraction, offset) = (below(g, 6) as usize, below(g, 8) as usize);
        let (month, day, hour, minute, second) = (below(g, 14), below(g, 33), below(g, 25), below(g, 61), below(g, 62));
        let mut valid = fraction != 4 && offset < 4;
        valid &= (1..=12).contains(&month) && (1..=28).contains(&day) && hour < 24 && minute < 60 && second < 60;
        let mut text = format!(
            "{:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{}{}",
            below(g, 10_000),
            FRACTIONS[fraction],
            OFFSETS[offset],
        );
        if bool::arbitrary(g) {
            valid = false;
            let mut chars: Vec<char> = text.chars().collect();
            let pos = below(g, chars.len() as u64) as usize;
            chars[pos] = char::arbitrary(g);
            chars.truncate(pos + 1 + below(g, chars.len() as u64) as usize);
            text = chars.into_iter().collect();
        }
        Self { text, valid }
    }
}

#[test]
fn parse_iso_never_panics_and_refuses_overlong_text() {
    fn law(text: String, near: NearTimestamp) -> bool {
        if near.valid && time::parse_iso(&near.text).is_none() {
            return false;
        }
        [text, near.text].iter().all(|text| time::parse_iso(text).is_none() || text.len() <= TIMESTAMP_CHARS_MAX)
    }
    check(3_000, 100, law as fn(String, NearTimestamp) -> bool);
}

/// A URL built from parts that each may be wrong: scheme, separator, credentials, host, port, path.
#[derive(Clone, Debug)]
struct NearUrl {
    text: String,
    /// An http(s) URL with a host, no credentials and a plain path: it must be accepted.
    valid: bool,
}

impl Arbitrary for NearUrl {
    fn arbitrary(g: &mut Gen) -> Self {
        let scheme = *g.choose(&["http", "https", "HTTP", "ftp", "javascript", "file", ""]).unwrap();
        let separator = *g.choose(&["://", "://", ":", ":///", "//"]).unwrap();
        let credentials = *g.choose(&["", "", "", "user@", "u:p@", "@", ":@"]).unwrap();
        let host = *g
            .choose(&[
                "a.example",
                "127.0.0.1",
                "[::1]",
                "[fe80::1%25eth0]",
                "localhost",
                "",
                "%00",
                "999.1.1.1",
                "[::ffff:10.0.0.1]",
                "xn--",
                "0x7f.1",
                "例え.テスト",
            ])
            .unwrap();
        let port = *g.choose(&["", "", ":8100", ":", ":65536", ":-1", ":0"]).unwrap();
        let plain = bool::arbitrary(g);
        let path: String = if plain {
            (0..below(g, 40)).map(|_| *g.choose(b"abcXYZ019-._~/").unwrap() as char).collect()
        } else {
            String::arbitrary(g)
        };
        let valid = plain
            && ["http", "https", "HTTP"].contains(&scheme)
            && separator == "://"
            && credentials.is_empty()
            && ["a.example", "127.0.0.1", "[::1]", "localhost"].contains(&host)
            && ["", ":8100"].contains(&port);
        Self { text: format!("{scheme}{separator}{credentials}{host}{port}/{path}"), valid }
    }
}

#[test]
fn url_validate_never_panics_and_accepts_only_http_urls_with_a_host() {
    fn law(text: String, near: NearUrl) -> bool {
        if near.valid && url::validate(&near.text).is_err() {
            return false;
        }
        [text, near.text].iter().all(|text| match url::validate(text) {
            Ok(parsed) => {
                matches!(parsed.scheme(), "http" | "https")
                    && parsed.host().is_some()
                    && parsed.username().is_empty()
                    && text.len() <= URL_BYTES_MAX
            }
            Err(_) => true,
        })
    }
    check(3_000, 100, law as fn(String, NearUrl) -> bool);
}

// ---------------------------------------------------------------------------------------------------
// End-to-end encryption of relayed bodies
// ---------------------------------------------------------------------------------------------------

/// A nonce as the runtime draws it: 12 random bytes, never all zero (seal refuses that one).
#[derive(Clone, Debug)]
struct DrawnNonce([u8; 12]);

impl Arbitrary for DrawnNonce {
    fn arbitrary(g: &mut Gen) -> Self {
        let mut bytes: [u8; 12] = std::array::from_fn(|_| u8::arbitrary(g));
        bytes[0] |= 1;
        Self(bytes)
    }
}

#[test]
fn e2e_open_of_seal_gives_back_the_plaintext() {
    fn law(sender: [u8; 32], recipient: [u8; 32], nonce: DrawnNonce, plaintext: Vec<u8>) -> bool {
        let (a, b) = (Passport::from_seed(sender), Passport::from_seed(recipient));
        let sealed = e2e::seal(&a, &receiver_view(&b), Nonce(nonce.0), &plaintext).expect("within limits");
        sealed.ciphertext.len() == plaintext.len() + e2e::TAG_BYTES
            && e2e::open(&b, &receiver_view(&a), &sealed.nonce, &sealed.ciphertext) == Ok(plaintext.clone())
            && e2e::open_hex(&b, &receiver_view(&a), &sealed.nonce_hex(), &sealed.ciphertext_hex()) == Ok(plaintext)
    }
    check(300, 200, law as fn([u8; 32], [u8; 32], DrawnNonce, Vec<u8>) -> bool);
}

#[test]
fn e2e_any_flipped_bit_of_nonce_ciphertext_or_tag_fails_to_open() {
    fn law(sender: [u8; 32], recipient: [u8; 32], nonce: DrawnNonce, plaintext: Vec<u8>, bit: usize) -> bool {
        let (a, b) = (Passport::from_seed(sender), Passport::from_seed(recipient));
        let sealed = e2e::seal(&a, &receiver_view(&b), Nonce(nonce.0), &plaintext).expect("within limits");
        let mut wire = sealed.nonce.to_vec();
        wire.extend_from_slice(&sealed.ciphertext);
        let bit = bit % (wire.len() * 8);
        wire[bit / 8] ^= 1 << (bit % 8);
        let (nonce, ciphertext) = wire.split_at(e2e::NONCE_BYTES);
        let nonce: [u8; 12] = nonce.try_into().expect("12 bytes");
        e2e::open(&b, &receiver_view(&a), &nonce, ciphertext) == Err(E2eError::Aead)
    }
    check(300, 200, law as fn([u8; 32], [u8; 32], DrawnNonce, Vec<u8>, usize) -> bool);
}

#[test]
fn e2e_only_the_recipient_opens_and_only_as_from_the_sender() {
    fn law(
        sender: [u8; 32],
        recipient: [u8; 32],
        other: [u8; 32],
        nonce: DrawnNonce,
        plaintext: Vec<u8>,
    ) -> TestResult {
        if other == recipient || other == sender {
            return TestResult::discard();
        }
        let (a, b, c) = (Passport::from_seed(sender), Passport::from_seed(recipient), Passport::from_seed(other));
        let sealed = e2e::seal(&a, &receiver_view(&b), Nonce(nonce.0), &plaintext).expect("within limits");
        let open =
            |by: &Passport, from: &Passport| e2e::open(by, &receiver_view(from), &sealed.nonce, &sealed.ciphertext);
        TestResult::from_bool(open(&c, &a) == Err(E2eError::Aead) && open(&b, &c) == Err(E2eError::Aead))
    }
    check(200, 100, law as fn([u8; 32], [u8; 32], [u8; 32], DrawnNonce, Vec<u8>) -> TestResult);
}

/// Envelope fields as a relay could deliver them: either any text, or hex of random bytes (so the
/// AEAD itself, not only the hex decoder, meets the input).
#[derive(Clone, Debug)]
struct EnvelopeText(String);

impl Arbitrary for EnvelopeText {
    fn arbitrary(g: &mut Gen) -> Self {
        if bool::arbitrary(g) {
            Self(String::arbitrary(g))
        } else {
            Self(hex::encode(Vec::<u8>::arbitrary(g)))
        }
    }
}

#[test]
fn e2e_open_never_panics_and_never_opens_made_up_bytes() {
    fn law(recipient: [u8; 32], sender: [u8; 32], nonce: EnvelopeText, ciphertext: EnvelopeText) -> bool {
        let (b, a) = (Passport::from_seed(recipient), Passport::from_seed(sender));
        e2e::open_hex(&b, &receiver_view(&a), &nonce.0, &ciphertext.0).is_err()
    }
    check(1_000, 100, law as fn([u8; 32], [u8; 32], EnvelopeText, EnvelopeText) -> bool);
}

/// Version 2's fresh randomness as the runtime draws it (never all zero).
#[derive(Clone, Debug)]
struct DrawnFresh([u8; 32], [u8; 24]);

impl Arbitrary for DrawnFresh {
    fn arbitrary(g: &mut Gen) -> Self {
        let mut secret: [u8; 32] = std::array::from_fn(|_| u8::arbitrary(g));
        let mut nonce: [u8; 24] = std::array::from_fn(|_| u8::arbitrary(g));
        secret[0] |= 1;
        nonce[0] |= 1;
        Self(secret, nonce)
    }
}

#[test]
fn e2e_v2_opens_what_it_sealed_and_nothing_altered_in_body_or_envelope() {
    fn law(
        sender: [u8; 32],
        recipient: [u8; 32],
        fresh: DrawnFresh,
        plaintext: Vec<u8>,
        ts: String,
        bit: usize,
    ) -> bool {
        let (a, b) = (Passport::from_seed(sender), Passport::from_seed(recipient));
        let (a_id, b_id) = (receiver_view(&a), receiver_view(&b));
        let sealed = e2e::seal_v2(&a, &b_id, &ts, e2e::Fresh { ephemeral_secret: fresh.0, nonce: fresh.1 }, &plaintext)
            .expect("within limits");
        let round_trip = e2e::open_v2(&b, &a_id, &ts, &sealed) == Ok(plaintext.clone());
        let mut wire = [&sealed.eph_pub[..], &sealed.nonce[..], &sealed.ciphertext[..]].concat();
        let bit = bit % (wire.len() * 8);
        wire[bit / 8] ^= 1 << (bit % 8);
        let altered = e2e::SealedV2 {
            eph_pub: wire[..32].try_into().expect("32 bytes"),
            nonce: wire[32..56].try_into().expect("24 bytes"),
            ciphertext: wire[56..].to_vec(),
        };
        // A flipped bit of eph_pub can land on a small-order point: refused too, just earlier.
        let body_refused = matches!(e2e::open_v2(&b, &a_id, &ts, &altered), Err(E2eError::Aead | E2eError::LowOrder));
        let other_ts = format!("{ts}0");
        let envelope_refused = e2e::open_v2(&b, &a_id, &other_ts, &sealed) == Err(E2eError::Aead);
        round_trip && body_refused && envelope_refused
    }
    check(200, 100, law as fn([u8; 32], [u8; 32], DrawnFresh, Vec<u8>, String, usize) -> bool);
}
