//! SPEC.md's limits tables agree with the code.
//!
//! The spec names every limit (`| `NAME` | value | meaning |` rows in its "Limits" section). This test
//! checks three things, so that neither side can drift without a failure:
//! - every row's value equals the constant of that name in the code;
//! - every constant listed below has a row, and every row names a constant listed below;
//! - every `pub const` in `proto-core/src/limits.rs` (read as text, so a new limit cannot be forgotten
//!   here either) has a row.
//!
//! The lists below name constants one by one because Rust has no reflection; the text scan of
//! `limits.rs` is what catches a constant added there but not here.

use std::collections::BTreeMap;

/// A constant's value as the spec writes it: a number, or a text in backticks.
#[derive(Clone, Debug, PartialEq)]
enum Value {
    Num(f64),
    Text(&'static str),
}

/// `(name, Value::Num(value))` for each constant in scope, by name.
macro_rules! nums {
    ($($name:ident),* $(,)?) => { vec![$((stringify!($name), Value::Num($name as f64))),*] };
}

/// `(name, Value::Text(value))` for each string constant in scope, by name.
macro_rules! texts {
    ($($name:ident),* $(,)?) => { vec![$((stringify!($name), Value::Text($name))),*] };
}

/// The protocol limits: every constant of `proto_core::limits` and the other protocol-visible ones.
fn protocol_limits() -> Vec<(&'static str, Value)> {
    use proto_core::anchor::{ANCHOR_HOUSEKEEPING_INTERVAL_MS, ANCHOR_PROTOCOL_VERSION};
    use proto_core::discovery::{
        BEACON_BYTES_MAX, BEACON_GROUP, BEACON_INTERVAL_S, BEACON_PORT, DISCOVERED_MAX, DISCOVERED_TTL_S,
        PROTOCOL_VERSION,
    };
    use proto_core::e2e::INNER_SIGNED_CHARS;
    use proto_core::identity::AGENT_ID_HEX_LEN;
    use proto_core::limits::*;
    use proto_core::memory::{
        BOOST_BROADCAST, BOOST_DIRECT, BOOST_FOCUS, BOOST_FORWARD, BOOST_REPLY, MEMORY_HALF_LIFE_S, TRUST_WEIGHT_MIN,
    };
    use proto_core::node::HOUSEKEEPING_INTERVAL_MS;
    use proto_core::shards::{SHARD_CONNECT_PUSH_MAX, SHARD_REFRESH_BATCH_MAX, SHARD_REFRESH_INTERVAL_MS};
    use proto_core::sign::SIGNATURE_HEX_LEN;
    use proto_core::time::TIMESTAMP_CHARS_MAX;
    use proto_core::wire::DM_PROTOCOL;

    let mut all = nums![
        CONTENT_CHARS_MAX,
        BIO_CHARS_MAX,
        DISPLAY_NAME_CHARS_MAX,
        AGENT_ID_BYTES_MAX,
        ID_BYTES_MAX,
        URL_BYTES_MAX,
        NOTE_CHARS_MAX,
        METADATA_BYTES_MAX,
        BODY_BYTES_MAX,
        E2E_PLAINTEXT_BYTES_MAX,
        INNER_SIGNED_CHARS,
        CONNECTIONS_MAX_DEFAULT,
        CONNECTIONS_MAX_CEILING,
        WALLET_DECIMALS_MAX,
        WALLET_AMOUNT_CHARS_MAX,
        WALLET_MEMO_BYTES_MAX,
        WALLET_CONFIRM_POLLS_MAX,
        WALLET_RPC_RESPONSE_BYTES_MAX,
        WALLET_RPC_TIMEOUT_MS,
        PAYMENT_AGE_MAX_S,
        PAYMENT_CLOCK_SKEW_S,
        PAYMENT_CHECKS_MAX,
        PAYMENT_CHECK_ATTEMPTS_MAX,
        PAYMENT_RECHECK_MS,
        PAYMENT_NOTICES_MAX,
        POOL_MAX,
        POOL_PROVIDERS_MAX,
        POOL_TOKENS_MAX,
        POOL_PURCHASES_MAX,
        POOL_UPSTREAM_TIMEOUT_MS,
        POOL_RESPONSE_BYTES_MAX,
        POOL_CALLS_IN_FLIGHT_MAX,
        POOL_PATH_BYTES_MAX,
        POOL_HEADERS_MAX,
        POOL_LLM_MAX_TOKENS_DEFAULT,
        ANTIMATTER_HOPS_MAX,
        ANTIMATTER_SIGNAL_AGE_MAX_S,
        ANTIMATTER_WATCHDOG_GRACE_S,
        ANTIMATTER_LOG_MAX,
        ANTIMATTER_SESSIONS_MAX,
        ANTIMATTER_SESSION_TTL_MS,
        ANTIMATTER_N_MAX,
        ANTIMATTER_GAME_PEERS_MAX,
        ANTIMATTER_CALL_TIMEOUT_MS,
        ANTIMATTER_FLOWS_MAX,
        ANTIMATTER_STARTED_MAX,
        ANTIMATTER_ACCRUALS_MAX,
        ANTIMATTER_SOL_PAYABLE_MIN,
        ANTIMATTER_ONLINE_S,
        ANTIMATTER_SIGNAL_ID_BYTES_MAX,
        ANTIMATTER_STARTED_WAIT_S,
        ANTIMATTER_AWAITED_MAX,
        ANTIMATTER_REPORT_FANOUT_MAX,
        ANTIMATTER_REPORTS_PER_REPORTER_MAX,
        ANTIMATTER_REPORT_WINDOW_S,
        ANTIMATTER_REPORT_RECORDS_MAX,
        ANTIMATTER_STATUS_RECENT_MAX,
        ACCEPTANCE_ATTEMPTS_MAX,
        PENDING_REQUESTS_MAX,
        PENDING_PER_SOURCE_MAX,
        AUTO_ACCEPTS_PER_SOURCE_MAX,
        AUTO_ACCEPTS_MAX,
        AUTO_ACCEPT_WINDOW_S,
        CONNECTIONS_RESERVED_FOR_AGENT,
        PENDING_OUTBOUND_MAX,
        REQUEST_EXPIRY_S,
        CHALLENGE_TTL_S,
        INBOX_MAX,
        INBOX_STRANGERS_MAX,
        INBOX_PER_STRANGER_MAX,
        SENT_MAX,
        RESPONSES_PER_SENT_MAX,
        UPDATES_PER_SENT_MAX,
        UNSIGNED_UPDATES_PER_SENT_MAX,
        TARGETS_PER_SEND_MAX,
        WAITERS_MAX,
        WAIT_TIMEOUT_S_MAX,
        HOPS_MAX,
        FRESHNESS_WINDOW_S,
        REPLAY_ENTRIES_MAX,
        RATE_WINDOW_MS,
        RATE_PER_PEER_DEFAULT,
        RATE_GLOBAL_DEFAULT,
        RATE_PARTY_SHARE_DIVISOR,
        RATE_STRANGERS_SHARE_DIVISOR,
        RATE_SOURCES_MAX,
        SOURCE_V6_PREFIX_BITS,
        RATE_LIMIT_CEILING,
        WALLETS_MAX,
        WALLET_FIELD_BYTES_MAX,
        TIMESTAMP_FIELD_CHARS_MAX,
        IMPRESSIONS_MAX,
        TRUST_DELTA_DELIVERED,
        TRUST_DELTA_REPLIED,
        TRUST_DELTA_DELIVERY_FAILED,
        TRUST_DELTA_FORGED,
        TRUST_REPORT_WEIGHT,
        TRUST_QUERY_FANOUT_MAX,
        TRUST_QUERY_ASKED_MAX,
        TRUST_QUERY_TIMEOUT_MS,
        TRUST_ANSWER_MIN,
        TRUST_ACCEPT_MIN_DEFAULT,
        TRUST_REJECT_MAX_DEFAULT,
        TRUST_CONFIDENCE_MIN,
        TRUST_NEGATIVE_MARGIN,
        TRUST_NEGATIVE_TIMEOUT_S,
        TRUST_AUTO_CEILING,
        TRUST_VOUCH_SCORE_MIN,
        TRUST_VOUCHES_PER_PEER_MAX,
        TRUST_VOUCH_WINDOW_S,
        TRUST_VOUCH_RECORDS_MAX,
        TRUST_DECISION_HOLD_S,
        SHARDS_OWN_MAX,
        SHARDS_CACHED_MAX,
        SHARD_CACHE_TTL_S,
        SHARD_TAGS_MAX,
        SHARD_TAG_CHARS_MAX,
        SHARD_SUMMARY_CHARS_MAX,
        CONVERSATIONS_MAX,
        CONVERSATION_CONTENT_CHARS_MAX,
        FEED_DIRECT_MAX,
        FEED_NETWORK_MAX,
        PEER_CALL_TIMEOUT_MS,
        CONNECT_CALL_TIMEOUT_MS,
        LOOKUP_TIMEOUT_MS,
        LOOKUP_COOLDOWN_MS,
        LOOKUPS_IN_FLIGHT_MAX,
        LOOKUP_ASK_MAX,
        LOOKUP_PARKED_MAX,
        LOOKUP_FUTURE_S_MAX,
        LOOKUP_UNSIGNED_AGREE_MIN,
        LOOKUP_UNSIGNED_SCORE_MIN,
        WEBHOOK_RECOVERY_ATTEMPTS_MAX,
        WEBHOOK_RECOVERY_WINDOW_MS,
        OUTBOUND_IN_FLIGHT_MAX,
        OUTPUTS_BUFFERED_MAX,
        INACTIVE_MINUTES_MAX,
        SPAWN_CONCURRENT_DEFAULT,
        SPAWN_PER_HOUR_DEFAULT,
        SPAWN_PER_SENDER_PER_HOUR_DEFAULT,
        SPAWN_WINDOW_MS,
        SPAWN_REQUESTER_QUIET_MS,
        SPAWN_WAITING_MAX,
        SPAWN_RESPAWN_AGE_S_MAX,
        SPAWN_CONTEXT_LINES_MAX,
        SPAWN_CONTEXT_LINE_CHARS_MAX,
        ANCHOR_REGISTRATION_STALE_S,
        ANCHOR_DIRECTORY_ENTRIES_MAX,
        ANCHOR_REGISTRATIONS_PER_SOURCE,
        ANCHOR_POSTS_PER_SOURCE,
        ANCHOR_PROBES_PER_SOURCE,
        ANCHOR_PROBE_TIMEOUT_MS,
        ANCHOR_PROBES_IN_FLIGHT_MAX,
        ANCHOR_SOURCE_WINDOW_MS,
        ANCHOR_SOURCES_MAX,
        ANCHOR_ENTRY_BYTES_MAX,
        ANCHOR_MAILBOX_BYTES_MAX,
        ANCHOR_ENTRY_OVERHEAD_BYTES,
        ANCHOR_BUFFERED_BYTES_MAX,
        ANCHOR_WEBHOOK_ENTRIES_MAX,
        ANCHOR_WEBHOOK_TTL_S,
        ANCHOR_CONNECTION_ENTRIES_MAX,
        ANCHOR_CONNECTION_TTL_S,
        ANCHOR_SDP_ENTRIES_MAX,
        ANCHOR_SDP_TTL_S,
        ANCHOR_MESSAGE_ENTRIES_MAX,
        ANCHOR_MESSAGE_TTL_S,
        ANCHOR_POLLS_PER_MAILBOX_MAX,
        ANCHOR_LONG_POLL_S_MAX,
        ANCHOR_LONG_POLLS_MAX,
        ANCHOR_HOUSEKEEPING_INTERVAL_MS,
        RELAY_ANCHORS_MAX,
        RELAY_REGISTER_INTERVAL_MS,
        RELAY_REGISTER_TIMEOUT_MS,
        RELAY_LOOKUP_TIMEOUT_MS,
        RELAY_POST_TIMEOUT_MS,
        RELAY_POLL_INTERVAL_MS,
        RELAY_POLL_INTERVAL_MAX_MS,
        RELAY_POLL_EMPTY_BEFORE_BACKOFF,
        RELAY_POLL_AFTER_UNREACHABLE_MS,
        RELAY_STALL_MS,
        RELAY_PROBE_INTERVAL_MS,
        RELAY_PROBE_SPACING_MS,
        RELAY_PROBE_TIMEOUT_MS,
        RELAY_LONG_POLL_S,
        RELAY_POLL_HELD_MS,
        RELAY_POLL_ENTRIES_MAX,
        // Outside `limits.rs`, but a peer or the agent meets them too.
        AGENT_ID_HEX_LEN,
        SIGNATURE_HEX_LEN,
        TIMESTAMP_CHARS_MAX,
        HOUSEKEEPING_INTERVAL_MS,
        SHARD_REFRESH_BATCH_MAX,
        SHARD_REFRESH_INTERVAL_MS,
        SHARD_CONNECT_PUSH_MAX,
        MEMORY_HALF_LIFE_S,
        BOOST_FOCUS,
        BOOST_DIRECT,
        BOOST_REPLY,
        BOOST_BROADCAST,
        BOOST_FORWARD,
        TRUST_WEIGHT_MIN,
        BEACON_PORT,
        BEACON_INTERVAL_S,
        BEACON_BYTES_MAX,
        DISCOVERED_TTL_S,
        DISCOVERED_MAX,
    ];
    all.extend(texts![BEACON_GROUP, PROTOCOL_VERSION, DM_PROTOCOL, ANCHOR_PROTOCOL_VERSION]);
    all
}

/// The production driver's bounds that a peer can run into (HTTP server, outbound calls, discovery).
#[cfg(unix)]
fn transport_limits() -> Vec<(&'static str, Value)> {
    use runtime_smol::admission::{
        SOURCES_MAX, SOURCE_BODIES_MAX, SOURCE_CONNECTIONS_MAX, SOURCE_REQUESTS_BURST, SOURCE_REQUESTS_PER_S,
    };
    use runtime_smol::client::{CALL_TIMEOUT_MS_MAX, CONNECT_TIMEOUT_MS, RESPONSE_BODY_BYTES_MAX};
    use runtime_smol::control::{POOL_BUY_ATTEMPTS_MAX, POOL_BUY_RETRY_MS};
    use runtime_smol::discovery::{
        BEACON_TTL, CARD_BIO_CHARS_MAX, DATAGRAMS_PER_S_MAX, DOMAIN_BYTES_MAX, DOMAIN_FETCH_MS, PROBE_TIMEOUT_MS,
        SCAN_CONCURRENT_MAX, SCAN_INTERVAL_S,
    };
    use runtime_smol::http::{HEADERS_MAX, HEADER_BYTES_MAX, TARGET_BYTES_MAX};
    use runtime_smol::lan_url::LAN_URL_RECHECK_MS;
    use runtime_smol::pool::UPSTREAM_RESPONSE_HEADERS_MAX;
    use runtime_smol::sandbox::{API_PORT, SANDBOX_RULES_MAX};
    use runtime_smol::server::{
        BODY_BYTES_PER_S_MIN, CONNECTIONS_MAX, HEAD_BYTES_PER_S_MIN, IDLE_MS, IN_FLIGHT_MAX, LINGER_BYTES_MAX,
        LINGER_MS, RATE_GRACE_MS, REPLY_WAIT_MS, REQUESTS_PER_CONNECTION_MAX, REQUEST_READ_MS, WRITE_MS,
    };
    use runtime_smol::solana::CONFIRM_POLL_INTERVAL_MS;
    use runtime_smol::solana_wallet::{
        SPEND_LIMITS_MAX, SPEND_WINDOW_S, SUPERAGENT_BODY_BYTES_MAX, SUPERAGENT_CACHE_S, SUPERAGENT_FETCH_MS,
        WALLET_CREDITS_MAX, WALLET_SPENDS_MAX,
    };
    nums![
        HEADER_BYTES_MAX,
        HEADERS_MAX,
        TARGET_BYTES_MAX,
        CONNECTIONS_MAX,
        IN_FLIGHT_MAX,
        REQUEST_READ_MS,
        IDLE_MS,
        WRITE_MS,
        REPLY_WAIT_MS,
        REQUESTS_PER_CONNECTION_MAX,
        LINGER_MS,
        LINGER_BYTES_MAX,
        RATE_GRACE_MS,
        HEAD_BYTES_PER_S_MIN,
        BODY_BYTES_PER_S_MIN,
        SOURCE_CONNECTIONS_MAX,
        SOURCE_BODIES_MAX,
        SOURCE_REQUESTS_BURST,
        SOURCE_REQUESTS_PER_S,
        SOURCES_MAX,
        RESPONSE_BODY_BYTES_MAX,
        CONNECT_TIMEOUT_MS,
        CALL_TIMEOUT_MS_MAX,
        BEACON_TTL,
        DATAGRAMS_PER_S_MAX,
        SCAN_INTERVAL_S,
        PROBE_TIMEOUT_MS,
        SCAN_CONCURRENT_MAX,
        DOMAIN_FETCH_MS,
        DOMAIN_BYTES_MAX,
        CARD_BIO_CHARS_MAX,
        LAN_URL_RECHECK_MS,
        SANDBOX_RULES_MAX,
        API_PORT,
        CONFIRM_POLL_INTERVAL_MS,
        SPEND_WINDOW_S,
        WALLET_SPENDS_MAX,
        SPEND_LIMITS_MAX,
        WALLET_CREDITS_MAX,
        SUPERAGENT_FETCH_MS,
        SUPERAGENT_CACHE_S,
        SUPERAGENT_BODY_BYTES_MAX,
        UPSTREAM_RESPONSE_HEADERS_MAX,
        POOL_BUY_ATTEMPTS_MAX,
        POOL_BUY_RETRY_MS,
    ]
}

/// The driver is not built off unix (see tests/Cargo.toml), so its rows cannot be checked there.
#[cfg(not(unix))]
fn transport_limits() -> Vec<(&'static str, Value)> {
    Vec::new()
}

fn code_limits() -> BTreeMap<&'static str, Value> {
    let list: Vec<_> = protocol_limits().into_iter().chain(transport_limits()).collect();
    let map: BTreeMap<_, _> = list.iter().cloned().collect();
    assert_eq!(map.len(), list.len(), "a constant is listed twice in this test");
    map
}

fn read(relative: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The rows `| `NAME` | value | … |` of the spec's "Limits" section (from its `## ` heading to the next),
/// as (name, value cell, line number). Names are upper-case identifiers in backticks.
fn limit_rows(spec: &str) -> Vec<(String, String, usize)> {
    let mut rows = Vec::new();
    let mut inside = false;
    for (i, line) in spec.lines().enumerate() {
        if let Some(heading) = line.strip_prefix("## ") {
            inside = heading.trim_end().ends_with("Limits");
            continue;
        }
        if !inside {
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // A table row splits into ["", name, value, ..., ""].
        if cells.len() < 4 || !cells[0].is_empty() {
            continue;
        }
        let Some(name) = cells[1].strip_prefix('`').and_then(|c| c.strip_suffix('`')) else { continue };
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') {
            rows.push((name.to_owned(), cells[2].to_owned(), i + 1));
        }
    }
    rows
}

/// A spec value cell as a number: thousands separators dropped, U+2212 read as a minus sign.
fn parse_number(cell: &str) -> Option<f64> {
    let text: String = cell.replace('\u{2212}', "-").chars().filter(|&c| c != ',' && c != '`').collect();
    text.trim().trim_start_matches('+').parse().ok()
}

fn matches(cell: &str, expected: &Value) -> bool {
    match expected {
        Value::Num(n) => parse_number(cell) == Some(*n),
        Value::Text(t) => cell.trim_matches('`').trim_matches('"') == *t,
    }
}

/// The names of the `pub const` items of a Rust source file.
fn pub_consts(source: &str) -> Vec<String> {
    source
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("pub const "))
        .filter_map(|rest| rest.split(':').next())
        .map(|name| name.trim().to_owned())
        .collect()
}

/// Every disagreement between the spec, the code's values and the constants of `limits.rs`.
fn disagreements(spec: &str, limits_rs: &str, code: &BTreeMap<&'static str, Value>) -> Vec<String> {
    let mut errors = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (name, cell, line) in limit_rows(spec) {
        if let Some(first) = seen.insert(name.clone(), line) {
            errors.push(format!("SPEC.md:{line}: `{name}` is listed twice (also line {first})"));
        }
        match code.get(name.as_str()) {
            Some(expected) if !matches(&cell, expected) => {
                errors.push(format!("SPEC.md:{line}: `{name}` is `{cell}` but the code says {expected:?}"))
            }
            Some(_) => {}
            None if cfg!(unix) => errors.push(format!("SPEC.md:{line}: `{name}` is no constant this test knows")),
            None => {}
        }
    }
    for name in code.keys() {
        if !seen.contains_key(*name) {
            errors.push(format!("`{name}` has no row in SPEC.md's limits tables"));
        }
    }
    for name in pub_consts(limits_rs) {
        if !seen.contains_key(&name) {
            errors.push(format!("proto-core/src/limits.rs: `{name}` has no row in SPEC.md's limits tables"));
        }
    }
    errors
}

#[test]
fn spec_limits_tables_match_the_code() {
    let spec = read("../SPEC.md");
    let limits_rs = read("../proto-core/src/limits.rs");
    let errors = disagreements(&spec, &limits_rs, &code_limits());
    assert!(errors.is_empty(), "SPEC.md and the code disagree:\n{}", errors.join("\n"));
}

#[test]
fn the_limits_section_is_found_and_holds_every_limits_rs_constant() {
    let spec = read("../SPEC.md");
    let rows = limit_rows(&spec);
    let consts = pub_consts(&read("../proto-core/src/limits.rs"));
    // Guards the two parsers themselves: an empty parse would make the check above vacuous.
    assert!(consts.len() >= 60, "limits.rs parsed to only {} constants", consts.len());
    assert!(rows.len() >= consts.len(), "the Limits section parsed to only {} rows", rows.len());
}

#[test]
fn a_wrong_value_in_the_spec_is_caught() {
    let spec = read("../SPEC.md");
    let limits_rs = read("../proto-core/src/limits.rs");
    let wrong = spec.replace("| `INBOX_MAX` | 50 |", "| `INBOX_MAX` | 51 |");
    assert_ne!(wrong, spec, "the INBOX_MAX row was not found");
    let errors = disagreements(&wrong, &limits_rs, &code_limits());
    assert!(errors.iter().any(|e| e.contains("`INBOX_MAX` is `51`")), "{errors:?}");
}

#[test]
fn a_constant_missing_from_the_spec_is_caught() {
    let spec = read("../SPEC.md");
    let limits_rs = read("../proto-core/src/limits.rs");
    let without: String =
        spec.lines().filter(|l| !l.starts_with("| `WALLETS_MAX` |")).map(|l| format!("{l}\n")).collect();
    let errors = disagreements(&without, &limits_rs, &code_limits());
    assert!(errors.iter().any(|e| e.contains("`WALLETS_MAX` has no row")), "{errors:?}");
    // A new constant in limits.rs that neither the spec nor this test knows.
    let added = format!("{limits_rs}\npub const NEW_THING_MAX: usize = 1;\n");
    let errors = disagreements(&spec, &added, &code_limits());
    assert!(errors.iter().any(|e| e.contains("limits.rs: `NEW_THING_MAX`")), "{errors:?}");
}
