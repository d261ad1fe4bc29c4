//! A dmagent 0.5.3 node and the WormHole (T-E5), through the WormHole's own JSON API (what the page
//! draws): the WormHole connects to 0.5.3 and messages it; 0.5.3 posts its `received` callback, and a
//! legacy-signed webhook `response` (the form 0.5.3's WormHole posts for its person) links as the
//! reply, so the timeline goes sent → delivered → answered. Then 0.5.3 messages the WormHole, and the
//! WormHole's reply lands in 0.5.3's inbox. Needs the 0.5.3 venv of `darkmatter_tests::python`
//! (created on first use; a failure to create it fails the test, as the other interop tests do).

mod wormhole;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command as Proc, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use proto_core::{sign, Passport};
use serde_json::{json, Value};
use wormhole::{Scratch, Wormhole};

fn venv_python() -> PathBuf {
    darkmatter_tests::python::python().unwrap_or_else(|e| panic!("cannot create the dmagent 0.5.3 virtualenv: {e}"))
}

/// A dmagent 0.5.3 node (`python -m darkmatter.app`, plain HTTP, everything optional off).
struct PyNode {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Drop for PyNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PyNode {
    fn start(dir: &Path, name: &str) -> Self {
        let port = wormhole::free_port();
        let url = format!("http://127.0.0.1:{port}");
        let log = std::fs::File::create(dir.join("node.log")).unwrap();
        let child = Proc::new(venv_python())
            .args(["-m", "darkmatter.app"])
            .current_dir(dir)
            .env("HOME", dir)
            .env("DARKMATTER_HOST", "127.0.0.1")
            .env("DARKMATTER_PORT", port.to_string())
            .env("DARKMATTER_PUBLIC_URL", &url)
            .env("DARKMATTER_ANCHOR_NODES", "")
            .env("DARKMATTER_DISCOVERY", "false")
            .env("DARKMATTER_AGENT_ENABLED", "false")
            .env("DARKMATTER_ENTRYPOINT_AUTOSTART", "false")
            .env("DARKMATTER_TRANSPORT", "http")
            .env("DARKMATTER_STATE_FILE", dir.join("state.json"))
            .env("DARKMATTER_DISPLAY_NAME", name)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let node = Self { child, dir: dir.to_owned(), port };
        poll("0.5.3 to serve its card", Duration::from_secs(60), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
            let r = wormhole::raw(port, "GET", "/.well-known/darkmatter.json", &[("Host", "127.0.0.1")], b"");
            (r.status == 200).then_some(())
        });
        node
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn passport(&self) -> Passport {
        let text = std::fs::read_to_string(self.dir.join(".darkmatter").join("passport.key")).unwrap();
        Passport::from_file_contents(&text).unwrap()
    }
}

/// 0.5.3's user: `tests/interop/dmctl.py`, one JSON line in, one out.
struct User {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<Value>,
}

impl Drop for User {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl User {
    fn start(node: &PyNode) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/interop/dmctl.py");
        let mut child = Proc::new(venv_python())
            .arg(script)
            .arg(node.url())
            .arg(node.dir.join("state.json"))
            .current_dir(&node.dir)
            .env("HOME", &node.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&l) {
                    let _ = tx.send(v);
                }
            }
        });
        let stdin = child.stdin.take().unwrap();
        let user = Self { child, stdin, lines };
        let ready = user.lines.recv_timeout(Duration::from_secs(60)).expect("dmctl ready");
        assert_eq!(ready["ready"], true, "{ready}");
        user
    }

    fn ok(&mut self, line: Value) -> Value {
        writeln!(self.stdin, "{line}").unwrap();
        let answer = self.lines.recv_timeout(Duration::from_secs(60)).expect("dmctl answers");
        assert_eq!(answer["ok"], true, "{line}: {answer}");
        answer["result"].clone()
    }
}

fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn outbox_entry(wh: &Wormhole, session: &(String, String), id: &str) -> Value {
    let poll = wh.get(session, "/api/poll").json();
    poll["outbox"].as_array().unwrap().iter().find(|m| m["message_id"] == id).cloned().unwrap_or(Value::Null)
}

#[test]
fn a_053_node_and_the_wormhole_message_each_other_and_replies_thread() {
    let dir = Scratch::new("interop");
    let (py_dir, wh_dir) = (dir.0.join("py"), dir.0.join("wh"));
    std::fs::create_dir_all(&py_dir).unwrap();
    std::fs::create_dir_all(&wh_dir).unwrap();
    let py = PyNode::start(&py_dir, "old-agent");
    let py_id = py.passport().agent_id().as_str().to_owned();
    let mut user = User::start(&py);
    let wh = Wormhole::start(&wh_dir, &[], &[]);
    let session = wh.session();

    // The WormHole connects from its page; 0.5.3 accepts a local requester by itself.
    let c = wh.post(&session, "/connect", &json!({"url": py.url()}));
    assert_eq!((c.status, c.json()["status"].as_str()), (200, Some("connected")), "{}", c.body);

    // WormHole → 0.5.3: sent, then delivered (0.5.3's `received` callback).
    let s = wh.post(&session, "/send", &json!({"target": py_id, "content": "hello from a person"}));
    assert_eq!(s.status, 200, "{}", s.body);
    let mid = s.json()["message_id"].as_str().unwrap().to_owned();
    let got = poll("the message in 0.5.3's inbox", Duration::from_secs(15), || {
        let l = user.ok(json!({"cmd": "inbox"}));
        l["messages"].as_array().unwrap().iter().find(|m| m["message_id"] == mid.as_str()).cloned()
    });
    assert_eq!(got["verified"], true, "{got}");
    let delivered = poll("delivered", Duration::from_secs(15), || {
        let e = outbox_entry(&wh, &session, &mid);
        (e["delivery"] == "delivered").then_some(e)
    });
    assert_eq!(delivered["status"], "active", "{delivered}");

    // 0.5.3's answer: a legacy-signed webhook `response`, as its WormHole posts it.
    let passport = py.passport();
    let ts = proto_core::time::format_iso(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64,
    );
    let text = "hi person, old agent here";
    let bytes = sign::legacy_message_bytes(&py_id, &mid, &ts, text).unwrap();
    let body = json!({"type": "response", "agent_id": py_id, "response": text, "timestamp": ts,
        "signature_hex": sign::sign_hex(&passport, &bytes)});
    let port: u16 = wh.peer_url.rsplit(':').next().unwrap().parse().unwrap();
    let path = format!("/__darkmatter__/webhook/{mid}");
    let r = wormhole::raw(
        port,
        "POST",
        &path,
        &[("Host", "127.0.0.1"), ("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let answered = outbox_entry(&wh, &session, &mid);
    assert_eq!(
        (answered["delivery"].as_str(), answered["status"].as_str()),
        (Some("answered"), Some("responded")),
        "{answered}"
    );
    assert_eq!(answered["responses"][0]["content"], text, "the reply is threaded under the message: {answered}");

    // 0.5.3 → WormHole, and the person's reply lands in 0.5.3's inbox.
    let wh_id = wh.agent_id.clone();
    let sent = user.ok(json!({"cmd": "send", "target_agent_id": wh_id, "content": "anyone home?"}));
    assert_eq!(sent["success"], true, "{sent}");
    let inbound = poll("0.5.3's message in the WormHole inbox", Duration::from_secs(15), || {
        let p = wh.get(&session, "/api/poll").json();
        p["inbox"].as_array().unwrap().iter().find(|m| m["content"] == "anyone home?").cloned()
    });
    assert_eq!(inbound["from_agent_id"], py_id.as_str());
    let in_id = inbound["message_id"].as_str().unwrap();
    let reply = wh.post(&session, &format!("/respond/{in_id}"), &json!({"response": "yes, a person"}));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let back = poll("the reply in 0.5.3's inbox", Duration::from_secs(15), || {
        let l = user.ok(json!({"cmd": "inbox"}));
        let reply = |m: &&Value| m["content"].as_str().is_some_and(|c| c.contains("yes, a person"));
        l["messages"].as_array().unwrap().iter().find(reply).cloned()
    });
    assert_eq!(back["from_agent_id"], wh_id.as_str(), "{back}");
    assert_eq!(back["verified"], true, "{back}");
}
