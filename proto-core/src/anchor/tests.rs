//! The anchor's rules, request by request, with a hand-set clock.

use super::*;
use crate::identity::Passport;
use crate::sign::sign_hex;
use crate::time::format_iso;

const T0_US: i64 = 1_767_225_600_000_000;

fn now(s: i64) -> Now {
    Now::new((s * 1_000) as u64, T0_US + s * 1_000_000)
}

struct Rig {
    anchor: Anchor,
    next: RequestId,
    source: IpAddr,
}

impl Rig {
    fn new() -> Self {
        Self { anchor: Anchor::new(), next: 1, source: IpAddr::from([10, 0, 0, 1]) }
    }

    /// Sends a request and returns every output it produced.
    fn send(&mut self, at: Now, method: Method, path: &str, query: &str, body: &[u8]) -> Vec<AnchorOutput> {
        let id = self.next;
        self.next += 1;
        let req = AnchorRequest {
            id,
            method,
            path: path.to_owned(),
            query: query.to_owned(),
            body: body.to_vec(),
            source: Some(self.source),
        };
        self.anchor.handle_request(at, req);
        std::iter::from_fn(|| self.anchor.poll_output()).collect()
    }

    /// The status and JSON of the one reply among `outputs`.
    fn reply(outputs: &[AnchorOutput]) -> (u16, Value) {
        let replies: Vec<_> = outputs
            .iter()
            .filter_map(|o| match o {
                AnchorOutput::Reply { status, body, .. } => Some((*status, serde_json::from_slice(body).unwrap())),
                _ => None,
            })
            .collect();
        assert_eq!(replies.len(), 1, "{outputs:?}");
        replies[0].clone()
    }

    fn call(&mut self, at: Now, method: Method, path: &str, query: &str, body: &[u8]) -> (u16, Value) {
        Self::reply(&self.send(at, method, path, query, body))
    }
}

fn registration(p: &Passport, url: &str, at: Now) -> Vec<u8> {
    let id = p.agent_id().as_str();
    let ts = format_iso(at.wall_us);
    let sig = sign_hex(p, &domain_bytes(DOMAIN_PEER_UPDATE, &[id, url, &ts]).unwrap());
    serde_json::to_vec(
        &json!({"agent_id": id, "new_url": url, "public_key_hex": id, "signature": sig, "timestamp": ts}),
    )
    .unwrap()
}

fn poll_query(p: &Passport, at: Now) -> String {
    let ts = format_iso(at.wall_us);
    let sig = sign_hex(p, &domain_bytes(DOMAIN_RELAY_POLL, &[p.agent_id().as_str(), &ts]).unwrap());
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("signature", &sig)
        .append_pair("timestamp", &ts)
        .finish()
}

#[test]
fn register_then_lookup_carries_the_signed_update() {
    let mut rig = Rig::new();
    let p = Passport::from_seed([1; 32]);
    let out =
        rig.send(now(0), Method::Post, "/__darkmatter__/peer_update", "", &registration(&p, "http://a:1", now(0)));
    assert!(matches!(out[0], AnchorOutput::Persist(_)), "the 200 must follow the write: {out:?}");
    assert_eq!(Rig::reply(&out), (200, json!({"success": true, "registered": true})));
    let (status, body) =
        rig.call(now(1), Method::Get, &format!("/__darkmatter__/peer_lookup/{}", p.agent_id().as_str()), "", b"");
    assert_eq!(status, 200);
    assert_eq!(body["url"], "http://a:1");
    let signed = &body["signed_update"];
    let bytes = domain_bytes(
        DOMAIN_PEER_UPDATE,
        &[
            signed["agent_id"].as_str().unwrap(),
            signed["new_url"].as_str().unwrap(),
            signed["timestamp"].as_str().unwrap(),
        ],
    )
    .unwrap();
    assert!(crate::sign::verify_hex(p.agent_id().key(), &bytes, signed["signature"].as_str().unwrap()).is_ok());
}

#[test]
fn a_key_that_is_not_the_id_is_refused() {
    let mut rig = Rig::new();
    let (p, squatter) = (Passport::from_seed([1; 32]), Passport::from_seed([2; 32]));
    // The squatter signs a registration of p's id with its own key, as 0.5.3 would accept.
    let mut body: Value = serde_json::from_slice(&registration(&squatter, "http://evil:1", now(0))).unwrap();
    let ts = body["timestamp"].as_str().unwrap().to_owned();
    let id = p.agent_id().as_str();
    body["agent_id"] = json!(id);
    body["signature"] =
        json!(sign_hex(&squatter, &domain_bytes(DOMAIN_PEER_UPDATE, &[id, "http://evil:1", &ts]).unwrap()));
    let (status, err) =
        rig.call(now(0), Method::Post, "/__darkmatter__/peer_update", "", &serde_json::to_vec(&body).unwrap());
    assert_eq!((status, err["error"].as_str().unwrap()), (403, "Public key mismatch"));
    assert_eq!(rig.anchor.registrations(), 0);
}

#[test]
fn an_older_registration_is_refused_409() {
    let mut rig = Rig::new();
    let p = Passport::from_seed([1; 32]);
    let old = registration(&p, "http://old:1", now(0));
    let new = registration(&p, "http://new:1", now(5));
    assert_eq!(rig.call(now(5), Method::Post, "/__darkmatter__/peer_update", "", &new).0, 200);
    let (status, err) = rig.call(now(6), Method::Post, "/__darkmatter__/peer_update", "", &old);
    assert_eq!((status, err["error"].as_str().unwrap()), (409, "Stale registration"));
}

#[test]
fn a_poll_is_good_once_per_mailbox_and_drains_after_the_write() {
    let mut rig = Rig::new();
    let p = Passport::from_seed([1; 32]);
    rig.call(now(0), Method::Post, "/__darkmatter__/peer_update", "", &registration(&p, "http://a:1", now(0)));
    let id = p.agent_id().as_str();
    assert_eq!(rig.call(now(1), Method::Post, &format!("/__darkmatter__/message_relay/{id}"), "", b"{\"m\":1}").0, 200);
    let q = poll_query(&p, now(2));
    let out = rig.send(now(2), Method::Get, &format!("/__darkmatter__/message_relay_poll/{id}"), &q, b"");
    let persisted = out.iter().position(
        |o| matches!(o, AnchorOutput::Persist(w) if w.iter().any(|w| matches!(w, AnchorWrite::DeleteEntry(_)))),
    );
    let replied = out.iter().position(|o| matches!(o, AnchorOutput::Reply { .. }));
    assert!(persisted < replied, "entries handed out before their deletion is durable: {out:?}");
    assert_eq!(Rig::reply(&out), (200, json!({"success": true, "messages": [{"m": 1}]})));
    let (status, err) = rig.call(now(3), Method::Get, &format!("/__darkmatter__/message_relay_poll/{id}"), &q, b"");
    assert_eq!((status, err["error"].as_str().unwrap()), (403, "Replayed poll"));
    // 0.5.3 reuses one signature for its webhook and connection polls: another mailbox is fine.
    assert_eq!(rig.call(now(3), Method::Get, &format!("/__darkmatter__/connection_relay_poll/{id}"), &q, b"").0, 200);
}

#[test]
fn posts_for_unregistered_agents_and_oversized_bodies_are_refused() {
    let mut rig = Rig::new();
    let p = Passport::from_seed([1; 32]);
    let id = p.agent_id().as_str().to_owned();
    assert_eq!(rig.call(now(0), Method::Post, &format!("/__darkmatter__/message_relay/{id}"), "", b"{\"m\":1}").0, 404);
    rig.call(now(0), Method::Post, "/__darkmatter__/peer_update", "", &registration(&p, "http://a:1", now(0)));
    let path = format!("/__darkmatter__/message_relay/{id}");
    let at_cap = [b"\"".as_slice(), &vec![b'x'; ANCHOR_ENTRY_BYTES_MAX - 2], b"\""].concat();
    assert_eq!(rig.call(now(1), Method::Post, &path, "", &at_cap).0, 200);
    let over = [b"\"".as_slice(), &vec![b'x'; ANCHOR_ENTRY_BYTES_MAX - 1], b"\""].concat();
    assert_eq!(rig.call(now(1), Method::Post, &path, "", &over).0, 413);
    assert_eq!(rig.call(now(1), Method::Post, &path, "", b"{}").0, 400);
}

#[test]
fn a_long_poll_is_answered_by_the_next_post_or_its_deadline() {
    let mut rig = Rig::new();
    let p = Passport::from_seed([1; 32]);
    let id = p.agent_id().as_str().to_owned();
    rig.call(now(0), Method::Post, "/__darkmatter__/peer_update", "", &registration(&p, "http://a:1", now(0)));
    let q = format!("{}&wait=10", poll_query(&p, now(1)));
    let held = rig.send(now(1), Method::Get, &format!("/__darkmatter__/sdp_relay_poll/{id}"), &q, b"");
    assert!(held.iter().all(|o| !matches!(o, AnchorOutput::Reply { .. })), "{held:?}");
    assert_eq!(rig.anchor.poll_timeout(), 11_000);
    let out = rig.send(now(2), Method::Post, &format!("/__darkmatter__/sdp_relay/{id}"), "", b"{\"type\":\"offer\"}");
    let replies: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            AnchorOutput::Reply { request, body, .. } => Some((*request, body.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(replies.len(), 2);
    assert_eq!(replies[1].1, br#"{"success":true,"signals":[{"type":"offer"}]}"#.to_vec());
    // A second long poll with nothing to wait for ends at its deadline, empty.
    let q = format!("{}&wait=999", poll_query(&p, now(3)));
    rig.send(now(3), Method::Get, &format!("/__darkmatter__/sdp_relay_poll/{id}"), &q, b"");
    assert_eq!(rig.anchor.poll_timeout(), 3_000 + ANCHOR_LONG_POLL_S_MAX * 1_000, "wait is cut to the maximum");
    rig.anchor.handle_timeout(now(3 + ANCHOR_LONG_POLL_S_MAX as i64));
    let out: Vec<_> = std::iter::from_fn(|| rig.anchor.poll_output()).collect();
    assert_eq!(Rig::reply(&out), (200, json!({"success": true, "signals": []})));
}

#[test]
fn long_polls_cap_edge_answers_the_next_one_at_once() {
    let mut rig = Rig::new();
    let mut held = 0;
    for seed in 0..=ANCHOR_LONG_POLLS_MAX as u8 {
        let p = Passport::from_seed([seed + 1; 32]);
        rig.source = IpAddr::from([10, 0, 1, seed]);
        rig.call(now(0), Method::Post, "/__darkmatter__/peer_update", "", &registration(&p, "http://a:1", now(0)));
        let q = format!("{}&wait=5", poll_query(&p, now(0)));
        let out = rig.send(
            now(0),
            Method::Get,
            &format!("/__darkmatter__/message_relay_poll/{}", p.agent_id().as_str()),
            &q,
            b"",
        );
        if out.iter().all(|o| !matches!(o, AnchorOutput::Reply { .. })) {
            held += 1;
        } else {
            assert_eq!(held, ANCHOR_LONG_POLLS_MAX, "answered at once before the cap");
        }
    }
    assert_eq!(held, ANCHOR_LONG_POLLS_MAX);
}

#[test]
fn our_signed_form_registers_alone_and_a_bad_one_spoils_a_good_legacy_signature() {
    let mut rig = Rig::new();
    let p = Passport::from_seed([1; 32]);
    let id = p.agent_id().as_str();
    let ts = format_iso(now(0).wall_us);
    let v2 = sign_hex(&p, &crate::sign::v2_bytes(crate::sign::V2_ANCHOR_REGISTER, &[id, "http://a:1", &ts]));
    let only_v2 =
        json!({"agent_id": id, "new_url": "http://a:1", "public_key_hex": id, "dm_signature_hex": v2, "timestamp": ts});
    let (status, _) =
        rig.call(now(0), Method::Post, "/__darkmatter__/peer_update", "", &serde_json::to_vec(&only_v2).unwrap());
    assert_eq!(status, 200);
    let (_, found) = rig.call(now(0), Method::Get, &format!("/__darkmatter__/peer_lookup/{id}"), "", b"");
    assert_eq!(found["signed_update"]["dm_signature_hex"], v2.as_str());
    // A valid 0.5.3 signature beside a forged one of ours is refused: every signature present must hold.
    let mut both: Value = serde_json::from_slice(&registration(&p, "http://b:1", now(1))).unwrap();
    both["dm_signature_hex"] = json!("00".repeat(64));
    let (status, err) =
        rig.call(now(1), Method::Post, "/__darkmatter__/peer_update", "", &serde_json::to_vec(&both).unwrap());
    assert_eq!((status, err["error"].as_str().unwrap()), (403, "Invalid signature"));
    // The signature of one form does not pass as the other.
    let mut swapped = only_v2.clone();
    swapped["signature"] = swapped["dm_signature_hex"].take();
    let (status, _) =
        rig.call(now(2), Method::Post, "/__darkmatter__/peer_update", "", &serde_json::to_vec(&swapped).unwrap());
    assert_eq!(status, 403);
}

const PROBE: &str = "/__darkmatter__/probe_reachability";

fn probe_body(url: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "url": url })).unwrap()
}

#[test]
fn a_probe_of_another_host_is_refused_and_of_the_caller_is_fetched_then_answered() {
    let mut rig = Rig::new();
    let (status, body) =
        rig.call(now(0), Method::Post, PROBE, "", &probe_body("http://10.0.0.2:8100/__darkmatter__/status"));
    assert_eq!((status, body["error"].as_str()), (400, Some(PROBE_REFUSED)));

    let out = rig.send(now(0), Method::Post, PROBE, "", &probe_body("http://10.0.0.1:8100/__darkmatter__/status"));
    let [AnchorOutput::Probe { request, url }] = out.as_slice() else { panic!("one probe: {out:?}") };
    assert_eq!(url, "http://10.0.0.1:8100/__darkmatter__/status");
    assert_eq!(rig.anchor.probes_in_flight(), 1);
    rig.anchor.handle_probe_result(*request, Some(200));
    let out: Vec<_> = std::iter::from_fn(|| rig.anchor.poll_output()).collect();
    assert_eq!(Rig::reply(&out), (200, json!({"reachable": true, "status_code": 200})));

    let out = rig.send(now(1), Method::Post, PROBE, "", &probe_body("http://10.0.0.1:8101/__darkmatter__/status"));
    let [AnchorOutput::Probe { request, .. }] = out.as_slice() else { panic!("{out:?}") };
    rig.anchor.handle_probe_result(*request, None);
    rig.anchor.handle_probe_result(*request, Some(200));
    let out: Vec<_> = std::iter::from_fn(|| rig.anchor.poll_output()).collect();
    assert_eq!(Rig::reply(&out), (200, json!({"reachable": false, "status_code": null})), "answered once");
}

#[test]
fn probes_per_source_and_in_flight_are_bounded() {
    let mut rig = Rig::new();
    let mine = probe_body("http://10.0.0.1:8100/__darkmatter__/status");
    for _ in 0..crate::limits::ANCHOR_PROBES_PER_SOURCE {
        assert!(matches!(rig.send(now(0), Method::Post, PROBE, "", &mine).as_slice(), [AnchorOutput::Probe { .. }]));
    }
    assert_eq!(rig.call(now(0), Method::Post, PROBE, "", &mine).0, 429);
    // Other sources fill the in-flight table up to its bound.
    let mut i = 2u8;
    while rig.anchor.probes_in_flight() < ANCHOR_PROBES_IN_FLIGHT_MAX {
        rig.source = IpAddr::from([10, 0, 1, i]);
        let body = probe_body(&format!("http://10.0.1.{i}:8100/__darkmatter__/status"));
        assert!(matches!(rig.send(now(0), Method::Post, PROBE, "", &body).as_slice(), [AnchorOutput::Probe { .. }]));
        i += 1;
    }
    rig.source = IpAddr::from([10, 0, 2, 1]);
    let (status, _) = rig.call(now(0), Method::Post, PROBE, "", &probe_body("http://10.0.2.1:1/__darkmatter__/status"));
    assert_eq!(status, 503);
}
