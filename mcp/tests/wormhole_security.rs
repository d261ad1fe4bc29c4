//! The WormHole's gate (batch-2 requirements T-E1..T-E3): who gets past the login page, which
//! requests may change anything, and what is stored. Runs the real `darkmatter wormhole`.

mod wormhole;

use std::os::unix::fs::PermissionsExt;

use serde_json::json;
use wormhole::{Scratch, Wormhole, PASSPHRASE};

/// 0.5.3's session cookie for `agent_id`, minted as Flask would with the secret 0.5.3 derives from
/// the public agent id (`SHA-256("darkmatter-entrypoint-session-" + agent_id)`): itsdangerous's
/// URL-safe timed signer, salt `cookie-session`, HMAC-SHA1 over a SHA-1-derived key.
fn forged_053_cookie(agent_id: &str) -> String {
    let script = r#"
import base64, hashlib, hmac, json, sys, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")
secret = hashlib.sha256(("darkmatter-entrypoint-session-" + sys.argv[1]).encode()).hexdigest()
key = hashlib.sha1(b"cookie-session" + b"signer" + secret.encode()).digest()
value = b64(json.dumps({"pin_authenticated": True, "_permanent": True}, separators=(",", ":")).encode())
value += b"." + b64(int(time.time()).to_bytes(4, "big"))
print((value + b"." + b64(hmac.new(key, value, hashlib.sha1).digest())).decode())
"#;
    match std::process::Command::new("python3").args(["-c", script, agent_id]).output() {
        Ok(out) if out.status.success() => String::from_utf8(out.stdout).unwrap().trim().to_owned(),
        // Without Python: the payload half, which is all a server that trusted it would read.
        _ => "eyJwaW5fYXV0aGVudGljYXRlZCI6dHJ1ZSwiX3Blcm1hbmVudCI6dHJ1ZX0.Z1RLTQ.forged".to_owned(),
    }
}

#[test]
fn a_forged_053_cookie_gets_401() {
    let dir = Scratch::new("forged");
    let wh = Wormhole::start(&dir.0, &[], &[]);
    let forged = forged_053_cookie(&wh.agent_id);
    assert!(forged.starts_with("eyJwaW5fYXV0aGVudGljYXRlZCI6dHJ1ZSwiX3Blcm1hbmVudCI6dHJ1ZX0."), "{forged}");
    let host = wh.host();
    for cookie in [format!("session={forged}"), format!("dm_wormhole={forged}")] {
        let r = wh.request("GET", "/api/poll", &[("Host", &host), ("Cookie", &cookie)], b"");
        assert_eq!(r.status, 401, "{cookie}: {}", r.body);
        assert_eq!(r.json()["success"], false);
        let page = wh.request("GET", "/", &[("Host", &host), ("Cookie", &cookie)], b"");
        assert_eq!((page.status, page.header("location").as_deref()), (303, Some("/login")));
    }
    // The same route answers a real session, so the 401 above is the cookie's doing.
    let session = wh.session();
    assert_eq!(wh.get(&session, "/api/poll").status, 200);
}

#[test]
fn six_wrong_passphrases_get_429_and_the_right_one_is_then_refused_too() {
    let dir = Scratch::new("limit");
    let wh = Wormhole::start(&dir.0, &[], &[]);
    for i in 0..5 {
        let r = wh.login(&format!("wrong-{i}"));
        assert_eq!(r.status, 401, "attempt {i}");
        assert!(r.header("set-cookie").is_none());
    }
    let sixth = wh.login("wrong-6");
    assert_eq!(sixth.status, 429, "{}", sixth.body);
    // Locked out for the window, even with the right passphrase (no oracle while limited).
    let right = wh.login(PASSPHRASE);
    assert_eq!(right.status, 429);
    assert!(right.header("set-cookie").is_none());
}

#[test]
fn the_launch_token_logs_in_and_the_right_passphrase_sets_a_strict_cookie() {
    let dir = Scratch::new("login");
    let wh = Wormhole::start(&dir.0, &[], &[]);
    let token = wh.login_url.split("token=").nth(1).unwrap().to_owned();
    assert_eq!(wh.login(&token).status, 303);
    let r = wh.login(PASSPHRASE);
    assert_eq!(r.status, 303, "{}", r.body);
    let cookie = r.header("set-cookie").unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=86400"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    // The login page pre-fills the token from its URL, escaped.
    let host = wh.host();
    let page = wh.request("GET", "/login?token=%22%3E%3Cscript%3E", &[("Host", &host)], b"");
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("\"><script>") && page.body.contains("&quot;&gt;&lt;script&gt;"));
}

#[test]
fn a_foreign_host_gets_403_even_with_a_session() {
    let dir = Scratch::new("host");
    let wh = Wormhole::start(&dir.0, &[], &[]);
    let session = wh.session();
    for path in ["/", "/login", "/api/poll", "/app.js"] {
        let r = wh.request("GET", path, &[("Host", "evil.example"), ("Cookie", &session.0)], b"");
        assert_eq!(r.status, 403, "{path}");
        let r = wh.request("GET", path, &[("Host", &format!("evil.example:{}", wh.port))], b"");
        assert_eq!(r.status, 403, "{path} with our port");
    }
    let no_host = wh.request("GET", "/login", &[], b"");
    assert_eq!(no_host.status, 403);
    let ok =
        wh.request("GET", "/api/poll", &[("Host", &format!("localhost:{}", wh.port)), ("Cookie", &session.0)], b"");
    assert_eq!(ok.status, 200);
}

#[test]
fn a_post_without_csrf_token_or_from_another_origin_gets_403() {
    let dir = Scratch::new("csrf");
    let wh = Wormhole::start(&dir.0, &[], &[]);
    let session = wh.session();
    let (host, origin) = (wh.host(), wh.origin());
    let body = json!({"bio": "changed"}).to_string();
    let cases: [(&str, Vec<(&str, &str)>); 4] = [
        ("no token", vec![("Host", &host), ("Origin", &origin), ("Cookie", &session.0)]),
        ("wrong token", vec![("Host", &host), ("Origin", &origin), ("Cookie", &session.0), ("X-CSRF-Token", "00")]),
        (
            "other origin",
            vec![
                ("Host", &host),
                ("Origin", "http://evil.example"),
                ("Cookie", &session.0),
                ("X-CSRF-Token", &session.1),
            ],
        ),
        ("no origin", vec![("Host", &host), ("Cookie", &session.0), ("X-CSRF-Token", &session.1)]),
    ];
    for (what, fields) in &cases {
        let r = wh.request("POST", "/api/bio", fields, body.as_bytes());
        assert_eq!(r.status, 403, "{what}: {}", r.body);
    }
    let bio = wh.get(&session, "/api/info").json()["bio"].clone();
    assert_ne!(bio, "changed", "a refused POST changed nothing");
    // A login POST from another origin is refused as well (login CSRF).
    let r = wh.request("POST", "/login", &[("Host", &host), ("Origin", "http://evil.example")], b"secret=x");
    assert_eq!(r.status, 403);
    // Everything in order: it goes through.
    let r = wh.post(&session, "/api/bio", &json!({"bio": "changed"}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(wh.get(&session, "/api/info").json()["bio"], "changed");
    // A state-changing route never answers GET.
    let r = wh.get(&session, "/api/bio");
    assert_eq!(r.status, 404);
}

#[test]
fn no_route_is_reachable_without_a_session_but_the_login_page() {
    let dir = Scratch::new("routes");
    let wh = Wormhole::start(&dir.0, &[], &[]);
    let (host, origin) = (wh.host(), wh.origin());
    let gets = [
        "/app.js",
        "/app.css",
        "/api/poll",
        "/api/info",
        "/api/events",
        "/api/mesh-topology",
        "/api/spawn",
        "/api/antimatter",
        "/nope",
    ];
    for path in gets {
        let r = wh.request("GET", path, &[("Host", &host)], b"");
        assert_eq!(r.status, 401, "GET {path}: {}", r.body);
    }
    let posts = [
        "/connect",
        "/send",
        "/accept/x",
        "/reject/x",
        "/disconnect/x",
        "/respond/x",
        "/api/bio",
        "/api/name",
        "/api/impression",
        "/api/scan",
        "/api/spawn/kill/1",
        "/api/spawn/toggle",
        "/api/spawn/sandbox",
        "/logout",
    ];
    for path in posts {
        let r = wh.request("POST", path, &[("Host", &host), ("Origin", &origin)], b"{}");
        assert_eq!(r.status, 401, "POST {path}: {}", r.body);
    }
    let root = wh.request("GET", "/", &[("Host", &host)], b"");
    assert_eq!((root.status, root.header("location").as_deref()), (303, Some("/login")));
    for path in ["/login", "/login.css"] {
        assert_eq!(wh.request("GET", path, &[("Host", &host)], b"").status, 200, "{path}");
    }
}

#[test]
fn every_answer_has_a_strict_csp_and_no_framing() {
    let dir = Scratch::new("headers");
    let wh = Wormhole::start(&dir.0, &[], &[]);
    let session = wh.session();
    for r in [
        wh.request("GET", "/login", &[("Host", &wh.host())], b""),
        wh.get(&session, "/"),
        wh.get(&session, "/api/poll"),
    ] {
        let csp = r.header("content-security-policy").unwrap();
        assert!(csp.starts_with("default-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
        assert_eq!(r.header("x-frame-options").as_deref(), Some("DENY"));
    }
}

#[test]
fn secrets_are_private_and_the_passphrase_is_stored_only_as_an_argon2id_hash() {
    let dir = Scratch::new("files");
    let wh = Wormhole::start(&dir.0, &[], &[]);
    for file in ["session.secret", "passphrase.argon2"] {
        let mode = std::fs::metadata(wh.data.join(file)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    assert_eq!(std::fs::read(wh.data.join("session.secret")).unwrap().len(), 32);
    let hash = std::fs::read_to_string(wh.data.join("passphrase.argon2")).unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let everything: Vec<u8> = std::fs::read_dir(&wh.data)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_file())
        .flat_map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    assert!(!everything.windows(PASSPHRASE.len()).any(|w| w == PASSPHRASE.as_bytes()), "plaintext passphrase on disk");
}

#[test]
fn a_non_loopback_bind_without_a_passphrase_does_not_start() {
    let dir = Scratch::new("bind");
    let out = std::process::Command::new(wormhole::BIN)
        .args(["wormhole", "--bind", "0.0.0.0", "--port", "0", "--data"])
        .arg(dir.0.join("data"))
        .env("DARKMATTER_DISCOVERY", "false")
        .env("DARKMATTER_HOST", "127.0.0.1")
        .env_remove("DARKMATTER_WORMHOLE_PASSPHRASE")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("requires a passphrase"), "{err}");
}

#[test]
fn a_body_over_the_cap_is_refused_before_it_is_read() {
    use darkmatter_mcp::wormhole::http::BODY_BYTES_MAX;
    let dir = Scratch::new("body");
    let wh = Wormhole::start(&dir.0, &[], &[]);
    let session = wh.session();
    let (host, origin) = (wh.host(), wh.origin());
    let fields = |len: &'static str| {
        vec![
            ("Host", host.clone()),
            ("Origin", origin.clone()),
            ("Cookie", session.0.clone()),
            ("X-CSRF-Token", session.1.clone()),
            ("X-Len", len.to_owned()),
        ]
    };
    // Declared one byte over: 413 from the head alone (no body is sent).
    let over = (BODY_BYTES_MAX + 1).to_string();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", wh.port)).unwrap();
    let mut head = format!("POST /api/bio HTTP/1.1\r\nContent-Length: {over}\r\n");
    for (k, v) in fields("") {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    std::io::Write::write_all(&mut s, format!("{head}\r\n").as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut s, &mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // Exactly at the cap: read whole and judged on its content (not JSON here: 400, not 413).
    let at = vec![b' '; BODY_BYTES_MAX];
    let f = fields("");
    let borrowed: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = wh.request("POST", "/api/bio", &borrowed, &at);
    assert_eq!(r.status, 400, "{}", r.body);
}

#[test]
fn event_streams_are_capped() {
    use darkmatter_mcp::wormhole::routes::STREAMS_MAX;
    use std::io::{BufRead, BufReader, Write};
    let dir = Scratch::new("streams");
    let wh = Wormhole::start(&dir.0, &[], &[]);
    let session = wh.session();
    let open = || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", wh.port)).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        let req = format!("GET /api/events HTTP/1.1\r\nHost: {}\r\nCookie: {}\r\n\r\n", wh.host(), session.0);
        s.write_all(req.as_bytes()).unwrap();
        let mut r = BufReader::new(s);
        let mut status = String::new();
        r.read_line(&mut status).unwrap();
        (status, r)
    };
    let mut streams = Vec::new();
    for i in 0..STREAMS_MAX {
        let (status, mut r) = open();
        assert!(status.starts_with("HTTP/1.1 200"), "stream {i}: {status}");
        // Read up to the first event, so the stream is counted before the next one opens.
        let mut line = String::new();
        while !line.starts_with("event: hello") {
            line.clear();
            r.read_line(&mut line).unwrap();
        }
        streams.push(r);
    }
    let (status, _) = open();
    assert!(status.starts_with("HTTP/1.1 503"), "one over the cap: {status}");
    drop(streams.pop());
    let reopened = wormhole_retry(|| open().0.starts_with("HTTP/1.1 200"));
    assert!(reopened, "a closed stream frees its place");
}

/// True once `f` is, within 5 s (a closed stream is noticed on its next write).
fn wormhole_retry(mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    false
}

#[test]
fn the_page_is_small_and_served_fast() {
    let dir = Scratch::new("fast");
    let wh = Wormhole::start(&dir.0, &[], &[]);
    let session = wh.session();
    let mut total = 0;
    let mut best = std::time::Duration::MAX;
    for _ in 0..5 {
        let start = std::time::Instant::now();
        total = ["/", "/app.js", "/app.css"].iter().map(|p| wh.get(&session, p).body.len()).sum::<usize>();
        best = best.min(start.elapsed());
    }
    assert!(best < std::time::Duration::from_millis(100), "the page and its assets took {best:?}");
    assert!(total < darkmatter_mcp::wormhole::assets::ASSETS_BYTES_MAX, "{total} bytes");
}

#[test]
fn a_logged_out_session_is_refused() {
    let dir = Scratch::new("logout");
    let wh = Wormhole::start(&dir.0, &[], &[]);
    let session = wh.session();
    let other = wh.session();
    assert_eq!(wh.get(&session, "/api/poll").status, 200);
    // Another session's CSRF token does not pass with this cookie.
    let crossed = (session.0.clone(), other.1.clone());
    assert_eq!(wh.post(&crossed, "/logout", &json!({})).status, 403);
    let out = wh.post(&session, "/logout", &json!({}));
    assert_eq!(out.status, 200, "{}", out.body);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(wh.get(&session, "/api/poll").status, 401);
    assert_eq!(wh.get(&other, "/api/poll").status, 200, "only that session ended");
}
