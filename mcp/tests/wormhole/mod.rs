//! Helpers of the WormHole tests: the `darkmatter wormhole` binary as a child process, and raw
//! HTTP/1.1 to it on loopback (each request on its own connection, as the server closes after one).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_darkmatter");
/// The passphrase the tests set.
pub const PASSPHRASE: &str = "correct horse";

/// A fresh empty directory, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let p = std::env::temp_dir().join(format!("dm-wormhole-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `darkmatter wormhole`.
pub struct Wormhole {
    pub child: Child,
    pub port: u16,
    pub agent_id: String,
    pub login_url: String,
    pub peer_url: String,
    pub data: PathBuf,
}

impl Drop for Wormhole {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Wormhole {
    /// Starts one with its data in `dir/data`, the test passphrase, and `extra` arguments.
    pub fn start(dir: &Path, extra: &[&str], vars: &[(&str, &str)]) -> Self {
        let port = free_port();
        let data = dir.join("data");
        let mut cmd = Command::new(BIN);
        cmd.args(["wormhole", "--port", &port.to_string(), "--data"]).arg(&data).args(extra);
        cmd.current_dir(dir)
            .env("DARKMATTER_DISCOVERY", "false")
            .env("DARKMATTER_HOST", "127.0.0.1")
            .env("DARKMATTER_WORMHOLE_PASSPHRASE", PASSPHRASE)
            .env_remove("DARKMATTER_PORT")
            .env_remove("DARKMATTER_DISPLAY_NAME")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start darkmatter wormhole");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[wormhole] {line}");
                let _ = tx.send(line);
            }
        });
        let (mut agent_id, mut login_url, mut peer_url) = (String::new(), String::new(), String::new());
        while login_url.is_empty() {
            let line = rx.recv_timeout(Duration::from_secs(20)).expect("the wormhole prints its login URL");
            if let Some(id) = line.strip_prefix("darkmatter wormhole: agent ") {
                agent_id = id.trim().to_owned();
            }
            if let Some(url) = line.trim().strip_prefix("peers reach it at ") {
                peer_url = url.to_owned();
            }
            if let Some(url) = line.trim().strip_prefix("open ") {
                login_url = url.to_owned();
            }
        }
        Self { child, port, agent_id, login_url, peer_url, data }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn origin(&self) -> String {
        format!("http://{}", self.host())
    }

    /// One request with the given header fields; answers (status, head, body).
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        raw(self.port, method, path, headers, body)
    }

    /// Logs in with `secret`; the reply (a 303 with the cookie on success).
    pub fn login(&self, secret: &str) -> Reply {
        let body = format!("secret={}", secret.replace(' ', "+"));
        let (host, origin) = (self.host(), self.origin());
        self.request("POST", "/login", &[("Host", &host), ("Origin", &origin)], body.as_bytes())
    }

    /// A logged-in session: (cookie header value, CSRF token).
    pub fn session(&self) -> (String, String) {
        let r = self.login(PASSPHRASE);
        assert_eq!(r.status, 303, "{}", r.body);
        let cookie = r.header("set-cookie").expect("a cookie").split(';').next().unwrap().to_owned();
        let page = self.request("GET", "/", &[("Host", &self.host()), ("Cookie", &cookie)], b"");
        assert_eq!(page.status, 200);
        let csrf = page.body.split("name=\"csrf-token\" content=\"").nth(1).unwrap().split('"').next().unwrap();
        (cookie, csrf.to_owned())
    }

    /// A POST of JSON with a session, CSRF token and same Origin.
    pub fn post(&self, session: &(String, String), path: &str, body: &serde_json::Value) -> Reply {
        let (host, origin) = (self.host(), self.origin());
        let fields =
            [("Host", host.as_str()), ("Origin", &origin), ("Cookie", &session.0), ("X-CSRF-Token", &session.1)];
        self.request("POST", path, &fields, body.to_string().as_bytes())
    }

    /// A GET with a session.
    pub fn get(&self, session: &(String, String), path: &str) -> Reply {
        self.request("GET", path, &[("Host", &self.host()), ("Cookie", &session.0)], b"")
    }
}

/// An answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One raw request to 127.0.0.1:`port`.
pub fn raw(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Reply { status, head: head.to_owned(), body: body.to_owned() }
}
