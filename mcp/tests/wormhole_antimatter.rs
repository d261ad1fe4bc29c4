//! The WormHole's AntiMatter panel (R-F10): `GET /api/antimatter` answers the node's log and counts
//! behind the session like every other route, and nothing on the page can change the log. Runs the
//! real `darkmatter wormhole`.

mod wormhole;

use serde_json::json;
use wormhole::{Scratch, Wormhole};

#[test]
fn the_antimatter_log_is_shown_read_only_behind_the_session() {
    let dir = Scratch::new("antimatter");
    let wh = Wormhole::start(&dir.0, &[], &[]);
    let host = wh.host();
    assert_eq!(wh.request("GET", "/api/antimatter", &[("Host", &host)], b"").status, 401, "no session");
    let session = wh.session();
    let r = wh.get(&session, "/api/antimatter");
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["antimatter_log"], json!([]), "{v}");
    assert_eq!((v["open_signals"].as_u64(), v["awaited_payments"].as_u64()), (Some(0), Some(0)), "{v}");
    assert_eq!(v["events"], json!({}));
    // Read-only: there is no route that writes it.
    assert_eq!(wh.post(&session, "/api/antimatter", &json!({})).status, 404);
    let page = wh.get(&session, "/").body;
    assert!(page.contains("id=\"view-antimatter\""), "the page has the panel");
    assert!(wh.get(&session, "/app.js").body.contains("/api/antimatter"), "and draws it from the API");
}
