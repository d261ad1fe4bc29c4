//! SPEC.md §18.3 (the WormHole's limits) agrees with the code: every row's value is the constant's,
//! and every constant listed here has a row (the names carry a `WH_` prefix in the spec, as several
//! share a name with a peer-server limit of another value).

use darkmatter_mcp::wormhole::{api, assets, auth, http, routes, spawn_panel, stream, topology, CONNECTIONS_MAX};

fn rows(spec: &str) -> Vec<(String, f64)> {
    let start = spec.find("### 18.3 Limits").expect("SPEC.md has §18.3");
    let end = spec[start..].find("\n## ").map_or(spec.len(), |e| start + e);
    spec[start..end]
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix("`WH_")?.strip_suffix('`')?;
            Some((name.to_owned(), cells.get(2)?.replace(',', "").parse().ok()?))
        })
        .collect()
}

#[test]
fn the_spec_limits_table_matches_the_constants() {
    let code: Vec<(&str, f64)> = vec![
        ("BODY_BYTES_MAX", http::BODY_BYTES_MAX as f64),
        ("CONNECTIONS_MAX", CONNECTIONS_MAX as f64),
        ("REQUEST_READ_MS", http::REQUEST_READ_MS as f64),
        ("STREAMS_MAX", routes::STREAMS_MAX as f64),
        ("STREAM_LIFETIME_MS", stream::STREAM_LIFETIME_MS as f64),
        ("SESSION_TTL_S", auth::SESSION_TTL_S as f64),
        ("PASSPHRASE_CHARS_MIN", auth::PASSPHRASE_CHARS_MIN as f64),
        ("PASSPHRASE_CHARS_MAX", auth::PASSPHRASE_CHARS_MAX as f64),
        ("LOGIN_FAILURES_MAX", auth::LOGIN_FAILURES_MAX as f64),
        ("LOGIN_WINDOW_S", auth::LOGIN_WINDOW_S as f64),
        ("LOGIN_SOURCES_MAX", auth::LOGIN_SOURCES_MAX as f64),
        ("OUTBOX_SHOWN_MAX", api::OUTBOX_SHOWN_MAX as f64),
        ("TOPOLOGY_PEERS_MAX", topology::TOPOLOGY_PEERS_MAX as f64),
        ("PEERS_PER_PEER_MAX", topology::PEERS_PER_PEER_MAX as f64),
        ("FETCH_TIMEOUT_MS", topology::FETCH_TIMEOUT_MS as f64),
        ("ASSETS_BYTES_MAX", assets::ASSETS_BYTES_MAX as f64),
        ("TOGGLE_ANSWER_MS", spawn_panel::TOGGLE_ANSWER_MS as f64),
    ];
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../SPEC.md")).unwrap();
    let rows = rows(&spec);
    for (name, value) in &code {
        let row = rows.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no row for WH_{name}"));
        assert_eq!(row.1, *value, "WH_{name}");
    }
    for (name, _) in &rows {
        assert!(code.iter().any(|(n, _)| n == name), "row WH_{name} names no constant listed here");
    }
}
