//! Bad input on the real socket: every refusal is answered with a JSON `{"error": ...}` body and the
//! node keeps serving afterwards.

#[path = "smol_common.rs"]
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{envelope, http, parse_response, passport, raw_exchange, read_response, Node, TempDir};
use proto_core::limits::BODY_BYTES_MAX;
use runtime_smol::http::{HEADERS_MAX, HEADER_BYTES_MAX};
use runtime_smol::server::{CONNECTIONS_MAX, REQUEST_READ_MS};
use serde_json::Value;

/// The node still answers its card.
fn still_serving(addr: SocketAddr) {
    let (status, card) = http(addr, "GET", "/.well-known/darkmatter.json", b"").expect("node still serves");
    assert_eq!(status, 200);
    assert_eq!(card["darkmatter"], true);
}

fn error_text(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_else(|| panic!("refusal without an error text: {body}"))
}

fn post_message(addr: SocketAddr, body: &[u8]) -> (u16, Value) {
    http(addr, "POST", "/__darkmatter__/message", body).expect("answer")
}

#[test]
fn oversized_body_is_refused_with_413_before_it_is_read() {
    let d = TempDir::new("413");
    let n = Node::start(d.path(), "n", &[]);
    let t0 = Instant::now();
    // Announce a body one byte over the cap and send none of it: the answer must not wait for it.
    let head =
        format!("POST /__darkmatter__/message HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", BODY_BYTES_MAX + 1);
    let raw = raw_exchange(n.addr(), head.as_bytes(), Duration::from_secs(5)).unwrap();
    let (status, body) = parse_response(&raw);
    assert_eq!(status, 413);
    assert!(error_text(&body).contains("exceeds"), "{body}");
    assert!(t0.elapsed() < Duration::from_secs(3), "413 took {:?}", t0.elapsed());
    // A body exactly at the cap is read and handed to the core (which refuses it as JSON).
    let at_cap = vec![b' '; BODY_BYTES_MAX];
    let (status, body) = post_message(n.addr(), &at_cap);
    assert_eq!(status, 400, "{body}");
    still_serving(n.addr());
}

#[test]
fn endless_headers_are_refused_with_431() {
    let d = TempDir::new("431");
    let n = Node::start(d.path(), "n", &[]);
    let mut s = TcpStream::connect(n.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"POST /__darkmatter__/message HTTP/1.1\r\nHost: x\r\n").unwrap();
    // Keep sending header fields, never the blank line, until the server gives up on us.
    for i in 0..10 * HEADERS_MAX {
        if s.write_all(format!("X-Filler-{i}: {}\r\n", "a".repeat(40)).as_bytes()).is_err() {
            break;
        }
    }
    let (status, body) = parse_response(&read_response(&mut s).unwrap());
    assert_eq!(status, 431);
    assert!(error_text(&body).contains("too large"), "{body}");
    // One header line longer than the whole head may be is refused the same way.
    let long = format!("GET /__darkmatter__/status HTTP/1.1\r\nX-Long: {}\r\n\r\n", "b".repeat(20 * 1024));
    let (status, _) = parse_response(&raw_exchange(n.addr(), long.as_bytes(), Duration::from_secs(5)).unwrap());
    assert_eq!(status, 431);
    still_serving(n.addr());
}

/// A status request padded to exactly `head_bytes` with `fields` header fields (the last one takes
/// the padding), sent in one write.
fn padded_status_request(fields: usize, head_bytes: usize) -> Vec<u8> {
    let mut head = "GET /__darkmatter__/status HTTP/1.1\r\n".to_owned();
    for i in 1..fields {
        head.push_str(&format!("X-{i}: y\r\n"));
    }
    let fixed = head.len() + "X-pad: \r\n\r\n".len();
    head.push_str(&format!("X-pad: {}\r\n\r\n", "p".repeat(head_bytes - fixed)));
    assert_eq!(head.len(), head_bytes);
    head.into_bytes()
}

#[test]
fn head_caps_admit_exactly_the_cap_and_refuse_one_over() {
    let d = TempDir::new("caps");
    let n = Node::start(d.path(), "n", &[]);
    let status_of = |raw: &[u8]| parse_response(&raw_exchange(n.addr(), raw, Duration::from_secs(5)).unwrap()).0;
    assert_eq!(status_of(&padded_status_request(HEADERS_MAX, HEADER_BYTES_MAX)), 200);
    assert_eq!(status_of(&padded_status_request(HEADERS_MAX, HEADER_BYTES_MAX + 1)), 431);
    assert_eq!(status_of(&padded_status_request(HEADERS_MAX + 1, 4096)), 431);
    still_serving(n.addr());
}

#[test]
fn slow_loris_is_cut_off_by_the_read_timeout() {
    let d = TempDir::new("loris");
    let n = Node::start(d.path(), "n", &[]);
    let addr = n.addr();
    let loris = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let t0 = Instant::now();
        let request = b"POST /__darkmatter__/message HTTP/1.1\r\nHost: x\r\nX-Slow: ";
        let mut answer = Vec::new();
        // One byte every 200 ms, for at most twice the server's limit.
        for i in 0.. {
            assert!(t0.elapsed() < Duration::from_millis(2 * REQUEST_READ_MS), "never cut off");
            let byte = request.get(i).copied().unwrap_or(b'z');
            if s.write_all(&[byte]).is_err() {
                break;
            }
            let mut buf = [0u8; 1024];
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => answer.extend_from_slice(&buf[..k]),
                Err(_) => {}
            }
            if !answer.is_empty() {
                // Finish reading the refusal.
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                while let Ok(k) = s.read(&mut buf) {
                    if k == 0 {
                        break;
                    }
                    answer.extend_from_slice(&buf[..k]);
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        (t0.elapsed(), answer)
    });
    // Meanwhile the node serves everyone else.
    std::thread::sleep(Duration::from_millis(500));
    still_serving(addr);
    let (elapsed, answer) = loris.join().unwrap();
    let limit = Duration::from_millis(REQUEST_READ_MS);
    assert!(
        elapsed >= limit - Duration::from_millis(500) && elapsed < limit + Duration::from_secs(3),
        "cut off after {elapsed:?}"
    );
    let (status, body) = parse_response(&answer);
    assert_eq!(status, 408);
    error_text(&body);
    still_serving(addr);
}

#[test]
fn malformed_and_unauthenticated_messages_are_refused_with_json() {
    let d = TempDir::new("bad");
    let n = Node::start(d.path(), "n", &[]);
    let addr = n.addr();

    let (status, body) = post_message(addr, b"this is not json");
    assert_eq!(status, 400, "{body}");
    error_text(&body);
    still_serving(addr);

    let (status, body) = post_message(addr, br#"{"message_id": 5, "content": ["x"], "hops_remaining": "ten"}"#);
    assert_eq!(status, 400, "{body}");
    assert!(error_text(&body).contains("invalid type"), "{body}");
    still_serving(addr);

    let sender = passport(11);
    let from = sender.agent_id().as_str().to_owned();
    let mut unsigned = envelope(&sender, &from, "msg-unsigned01", "hi");
    unsigned["signature_hex"] = Value::String(String::new());
    let (status, body) = post_message(addr, unsigned.to_string().as_bytes());
    assert_eq!(status, 403, "{body}");
    assert!(error_text(&body).contains("Signature required"), "{body}");
    still_serving(addr);

    // Claims to be `from` but is signed with another key.
    let forged = envelope(&passport(12), &from, "msg-forged0001", "hi");
    let (status, body) = post_message(addr, forged.to_string().as_bytes());
    assert_eq!(status, 403, "{body}");
    assert!(error_text(&body).contains("signature"), "{body}");
    still_serving(addr);

    let genuine = envelope(&sender, &from, "msg-genuine001", "hi").to_string();
    let (status, body) = post_message(addr, genuine.as_bytes());
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    let (status, body) = post_message(addr, genuine.as_bytes());
    assert_eq!(status, 409, "{body}");
    assert!(error_text(&body).contains("Duplicate"), "{body}");
    still_serving(addr);
}

#[test]
fn protocol_errors_unknown_paths_and_methods_get_json() {
    let d = TempDir::new("proto");
    let n = Node::start(d.path(), "n", &[]);
    let addr = n.addr();
    let cases: [(&[u8], u16); 7] = [
        (b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        (b"GET /__darkmatter__/nothing HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        (b"GET /__darkmatter__/message HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        (b"DELETE /__darkmatter__/status HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        (b"THIS IS NOT HTTP\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"POST /__darkmatter__/message HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
    ];
    for (raw, want) in cases {
        let (status, body) = parse_response(&raw_exchange(addr, raw, Duration::from_secs(5)).unwrap());
        assert_eq!(status, want, "{}", String::from_utf8_lossy(raw));
        error_text(&body);
    }
    still_serving(addr);
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let d = TempDir::new("ka");
    let n = Node::start(d.path(), "n", &[]);
    let mut s = TcpStream::connect(n.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for _ in 0..3 {
        s.write_all(b"GET /__darkmatter__/status HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let (status, body) = parse_response(&read_response(&mut s).unwrap());
        assert_eq!(status, 200);
        assert_eq!(body["agent_id"].as_str(), Some(n.id().as_str()));
    }
}

#[test]
fn connections_over_the_cap_get_503() {
    let d = TempDir::new("cap");
    let n = Node::start(d.path(), "n", &[]);
    // Hold the cap's worth of idle connections open (each is closed by the server after its idle time).
    let held: Vec<TcpStream> = (0..CONNECTIONS_MAX).map(|_| TcpStream::connect(n.addr()).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let raw = raw_exchange(n.addr(), b"GET /__darkmatter__/status HTTP/1.1\r\nHost: x\r\n\r\n", Duration::from_secs(5))
        .unwrap();
    let (status, body) = parse_response(&raw);
    assert_eq!(status, 503, "{body}");
    error_text(&body);
    drop(held);
    common::wait_for("the node to serve again", Duration::from_secs(5), || {
        http(n.addr(), "GET", "/__darkmatter__/status", b"").ok().filter(|(s, _)| *s == 200).map(|_| ())
    });
}
