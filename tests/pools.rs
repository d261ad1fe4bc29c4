//! The node's wallet and pools (issue 16): the headless node answers `wallet` itself over a real SVM
//! (LiteSVM behind `tests/solana/shim.js`), and pools sell metered access to an upstream for verified
//! payments (SPEC §22, T-H1…T-H4).

#[path = "smol_common.rs"]
mod common;
#[path = "wallet_shim.rs"]
mod shim;

use std::time::Duration;

use common::{ChildNode, TempDir};
use proto_core::wallet::Wallet;
use serde_json::json;
use shim::Shim;

fn vars(rpc: &str) -> Vec<(&str, &str)> {
    vec![
        ("DARKMATTER_HOST", "127.0.0.1"),
        ("DARKMATTER_PORT", "0"),
        ("DARKMATTER_DISCOVERY", "false"),
        ("DARKMATTER_AGENT_ENABLED", "false"),
        ("DARKMATTER_SOLANA_RPC", rpc),
    ]
}

fn wallet_of(dir: &std::path::Path) -> Wallet {
    Wallet::from_passport(&runtime_smol::storage::load_or_create_passport(&dir.join(".darkmatter")).unwrap())
}

/// The wallet is the node's: a headless node (no MCP front end) answers `wallet` over the configured
/// cluster, and refuses to spend until a daily limit is set.
#[test]
fn a_headless_node_answers_wallet_lines_over_the_configured_cluster() {
    let vm = Shim::start();
    let d = TempDir::new("pool-wallet");
    let mut n = ChildNode::spawn(d.path(), &vars(&vm.url));
    let me = wallet_of(d.path()).address();
    vm.airdrop(&me, 2_500_000_000);
    let r = n.ok(json!({"cmd": "wallet", "op": "balances"}));
    assert_eq!(r["wallets"][0]["address"], json!(me.to_base58()), "{r}");
    assert_eq!(r["wallets"][0]["lamports"], json!(2_500_000_000u64), "{r}");
    assert_eq!(r["wallets"][0]["balance"], json!("2.5"), "{r}");
    let to = shim::wallet(9).address().to_base58();
    let refused =
        n.request(json!({"cmd": "wallet", "op": "send_sol", "to_wallet": to, "amount": "1"}), Duration::from_secs(20));
    let refused = refused.expect("answered");
    assert_eq!(refused["ok"], false, "{refused}");
    assert!(refused["error"].as_str().unwrap().contains("Spending is off"), "{refused}");
    assert_eq!(vm.balance(&shim::wallet(9).address()), 0);
}

// ----- pools (SPEC §22) -----

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use common::{http, test_config};
use proto_core::pool::PoolCommand;
use proto_core::Command;
use runtime_smol::control::{PoolBuyArgs, Request};
use runtime_smol::NodeHandle;
use serde_json::Value;

/// What the local upstream saw of one request: its path and every header line (name as sent).
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    headers: Vec<(String, String)>,
}

/// A local upstream: `/v1/echo` answers 200 with the headers it got (and an OpenAI-style `usage`),
/// `/v1/fail` 500, `/v1/slow` 200 after half a second, with a `set-cookie` on every answer.
struct Upstream {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = log.clone();
                std::thread::spawn(move || Self::serve(stream, &log));
            }
        });
        Self { url, seen }
    }

    fn serve(stream: std::net::TcpStream, log: &Mutex<Vec<Seen>>) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let path = line.split(' ').nth(1).unwrap_or("").to_owned();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (n, v) = h.split_once(':').unwrap();
            headers.push((n.trim().to_owned(), v.trim().to_owned()));
        }
        let length = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        log.lock().unwrap().push(Seen { path: path.clone(), headers: headers.clone() });
        let (status, text) = match path.as_str() {
            "/v1/fail" => (500, json!({"error": "upstream broke"})),
            "/v1/slow" => {
                std::thread::sleep(Duration::from_millis(500));
                (200, json!({"ok": true}))
            }
            _ => {
                let h: BTreeMap<String, Vec<String>> = headers.iter().fold(BTreeMap::new(), |mut m, (n, v)| {
                    m.entry(n.to_ascii_lowercase()).or_default().push(v.clone());
                    m
                });
                (200, json!({"headers": h, "usage": {"prompt_tokens": 3, "completion_tokens": 4}}))
            }
        };
        let text = text.to_string();
        let mut out = stream;
        let _ = write!(
            out,
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nSet-Cookie: session=1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        );
    }

    /// Authorization-like header lines the upstream got on its requests to `path`.
    fn credential_lines(&self, path: &str) -> Vec<Vec<String>> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|s| s.path == path)
            .map(|s| {
                s.headers
                    .iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case("authorization"))
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .collect()
    }
}

/// An in-process consumer node on the VM, with a spending limit.
struct Consumer {
    handle: NodeHandle,
    _running: runtime_smol::Running,
    dir: TempDir,
}

impl Consumer {
    fn start(name: &str, vm: &Shim) -> Self {
        let dir = TempDir::new(name);
        let config = test_config(
            dir.path(),
            name,
            &[("DARKMATTER_SOLANA_RPC", &vm.url), ("DARKMATTER_WALLET_SPEND_LIMIT", "SOL=5")],
        );
        let (handle, running) = runtime_smol::start(config).expect("node starts");
        Self { handle, _running: running, dir }
    }

    fn wallet(&self) -> Wallet {
        Wallet::from_passport(
            &runtime_smol::storage::load_or_create_passport(&self.dir.path().join(".darkmatter")).unwrap(),
        )
    }

    fn pool(&self, c: PoolCommand) -> Value {
        self.handle.command_blocking(Command::Pool(Box::new(c))).expect("the owner answered")
    }

    fn buy(
        &self,
        owner: &str,
        pool_id: &str,
        amount: &str,
        tx: Option<&str>,
    ) -> Result<Value, proto_core::CommandError> {
        let args = PoolBuyArgs {
            owner: owner.to_owned(),
            pool_id: pool_id.to_owned(),
            amount: amount.to_owned(),
            token: None,
            tx_signature: tx.map(str::to_owned),
        };
        smol::block_on(runtime_smol::control::run(&self.handle, Request::PoolBuy(args)))
    }

    fn call(&self, owner: &str, pool_id: &str, token: &str, path: &str, headers: &[(&str, &str)]) -> Value {
        let headers = headers.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect();
        let body = Some(r#"{"model":"m","max_tokens":5}"#.to_owned());
        self.pool(PoolCommand::Call {
            owner: owner.to_owned(),
            pool_id: pool_id.to_owned(),
            token_id: token.to_owned(),
            method: "POST".to_owned(),
            path: path.to_owned(),
            headers,
            body,
        })
    }
}

/// A headless owner with one pool (price 0.001 SOL a call) over `upstream`, and a consumer connected to it.
fn owner_with_pool(vm: &Shim, upstream: &Upstream, d: &TempDir) -> (ChildNode, String) {
    let mut owner = ChildNode::spawn(d.path(), &vars(&vm.url));
    let p = owner.ok(json!({"cmd": "pool_create", "name": "echo", "tags": ["llm"], "description": "an echo"}));
    let pool_id = p["pool_id"].as_str().unwrap().to_owned();
    assert_eq!(p["tags"], json!(["pool", "pool:llm"]), "{p}");
    let pv = owner.ok(json!({"cmd": "pool_add_provider", "pool_id": pool_id, "base_url": upstream.url,
        "credential_header": "Authorization", "credential_value": "Bearer pool-secret",
        "allowed_paths": ["/v1"], "price_per_call": "0.001"}));
    assert!(pv["provider_id"].as_str().unwrap().starts_with("pv-"), "{pv}");
    (owner, pool_id)
}

fn connect(c: &Consumer, owner: &ChildNode) {
    let r = c.handle.command_blocking(Command::Connect { target_url: owner.url() }).unwrap();
    assert_eq!(r["status"], "connected", "{r}");
}

fn owner_addr(owner: &ChildNode) -> std::net::SocketAddr {
    owner.ready["listen"].as_str().unwrap().parse().unwrap()
}

/// T-H1, T-H3, T-H4 and the single credit ledger, over one owner, two consumers and the VM.
#[test]
fn a_pool_sells_verified_payments_and_calls_carry_one_credential() {
    let (vm, upstream, d) = (Shim::start(), Upstream::start(), TempDir::new("pool-owner"));
    let (mut owner, pool_id) = owner_with_pool(&vm, &upstream, &d);
    let oid = owner.agent_id();
    let (c, other) = (Consumer::start("pool-c", &vm), Consumer::start("pool-d", &vm));
    connect(&c, &owner);
    connect(&other, &owner);
    vm.airdrop(&c.wallet().address(), 3_000_000_000);

    // pool_info: public metadata with the owner's wallet and the minimum purchase, no credential.
    let info = c.pool(PoolCommand::Info { owner: oid.clone(), pool_id: pool_id.clone() });
    assert_eq!(info["owner_wallet"], json!(wallet_of(d.path()).address().to_base58()), "{info}");
    assert_eq!((&info["min_purchase"], &info["http_status"]), (&json!("0.001"), &json!(200)));
    assert!(!info.to_string().contains("pool-secret"));

    // T-H1: no payment, no credit (0.5.3's free purchase is refused).
    let free =
        json!({"pool_id": pool_id, "consumer_agent_id": c.handle.agent_id(), "amount": 1, "payment_token": "SOL"});
    let (status, body) =
        http(owner_addr(&owner), "POST", "/__darkmatter__/pool_buy", free.to_string().as_bytes()).unwrap();
    assert_eq!(status, 402, "{body}");
    // Paid on-chain, verified by the owner's wallet, credited exactly.
    let bought = c.buy(&oid, &pool_id, "0.002", None).unwrap();
    assert_eq!((&bought["http_status"], &bought["credited_units"]), (&json!(200), &json!(2_000_000)), "{bought}");
    assert_eq!(vm.balance(&wallet_of(d.path()).address()), 2_000_000, "the owner was paid");
    let token = bought["token_id"].as_str().unwrap().to_owned();
    let tx = bought["tx_signature"].as_str().unwrap().to_owned();
    // The same signature again: 409, nothing more credited.
    let again = c.buy(&oid, &pool_id, "0.002", Some(&tx)).unwrap();
    assert_eq!(again["http_status"], json!(409), "{again}");
    // ... and it never counts as a payment notice either (one credit ledger).
    let meta = json!({"type": "solana_payment", "amount": "0.002", "token": "SOL", "tx_signature": tx});
    let sent = c.handle.command_blocking(Command::Send(proto_core::SendArgs {
        content: "paid".into(),
        targets: proto_core::Targets::Agents(vec![oid.clone()]),
        metadata: meta.as_object().unwrap().clone(),
        in_reply_to: None,
        hops_remaining: 1,
    }));
    let notice_id = sent.unwrap()["message_id"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let notice = loop {
        let m = owner.ok(json!({"cmd": "get_message", "message_id": notice_id}));
        if m["payment_refusal"] != json!("being checked on-chain") || std::time::Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(notice["payment_verified"], json!(false), "{notice}");
    assert!(notice["payment_refusal"].as_str().unwrap().contains("already credited"), "{notice}");

    // T-H3: a traversal is refused before any upstream sees it.
    let r = c.call(&oid, &pool_id, &token, "/v1/chat/completions/../../v1/files", &[]);
    assert_eq!(r["http_status"], json!(400), "{r}");
    // The consumer's own lower-case authorization never reaches the upstream: exactly one, the pool's.
    let r = c.call(
        &oid,
        &pool_id,
        &token,
        "/v1/echo",
        &[("authorization", "Bearer mine"), ("content-type", "application/json")],
    );
    assert_eq!((&r["http_status"], &r["status_code"]), (&json!(200), &json!(200)), "{r}");
    assert_eq!(upstream.credential_lines("/v1/echo"), vec![vec!["Bearer pool-secret".to_owned()]]);
    let echoed: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD.decode(r["body_b64"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(echoed["headers"]["content-type"], json!(["application/json"]), "{echoed}");
    assert!(r["headers"].get("set-cookie").is_none(), "no cookies come back: {r}");
    assert_eq!(r["balance_remaining_units"], json!(1_000_000), "one call charged");

    // T-H4: the token is bound to its consumer; another connected agent is refused.
    let stolen = other.call(&oid, &pool_id, &token, "/v1/echo", &[]);
    assert_eq!(stolen["http_status"], json!(403), "{stolen}");
    // An upstream 500 costs nothing (passthrough charges 2xx only).
    let r = c.call(&oid, &pool_id, &token, "/v1/fail", &[]);
    assert_eq!((&r["status_code"], &r["balance_remaining_units"]), (&json!(500), &json!(1_000_000)), "{r}");

    // The owner's list shows the balance, never the credential; the state file holds it sealed only.
    let list = owner.ok(json!({"cmd": "pool_list"}));
    assert_eq!(list["pools"][0]["tokens"][0]["balance_units"], json!(1_000_000), "{list}");
    assert!(!list.to_string().contains("pool-secret"));
    let published = owner.ok(json!({"cmd": "pool_publish", "pool_id": pool_id}));
    assert!(published["shard_id"].is_string(), "{published}");
    let state = std::fs::read_dir(d.path().join(".darkmatter"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".redb"));
    let bytes = std::fs::read(state.unwrap().path()).unwrap();
    assert!(!bytes.windows(11).any(|w| w == b"pool-secret"), "the credential is not in the clear at rest");
}

/// T-H2: two concurrent calls with balance for one: one is answered, the other is refused with 402.
#[test]
fn concurrent_calls_cannot_overdraw() {
    let (vm, upstream, d) = (Shim::start(), Upstream::start(), TempDir::new("pool-race"));
    let (owner, pool_id) = owner_with_pool(&vm, &upstream, &d);
    let oid = owner.agent_id();
    let c = Arc::new(Consumer::start("pool-race-c", &vm));
    connect(&c, &owner);
    vm.airdrop(&c.wallet().address(), 1_000_000_000);
    let bought = c.buy(&oid, &pool_id, "0.001", None).unwrap();
    assert_eq!(bought["credited_units"], json!(1_000_000), "{bought}");
    let token = bought["token_id"].as_str().unwrap().to_owned();
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let (c, oid, pool_id, token) = (c.clone(), oid.clone(), pool_id.clone(), token.clone());
            std::thread::spawn(move || c.call(&oid, &pool_id, &token, "/v1/slow", &[]))
        })
        .collect();
    let mut statuses: Vec<u64> =
        calls.into_iter().map(|t| t.join().unwrap()["http_status"].as_u64().unwrap()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, vec![200, 402]);
    assert_eq!(upstream.seen.lock().unwrap().iter().filter(|s| s.path == "/v1/slow").count(), 1, "one call went out");
}

/// `POOL_HEADERS_MAX` at its edge: a call with that many consumer headers goes out (and is charged); one
/// more is refused before the upstream is called, and costs nothing.
#[test]
fn a_call_with_one_header_too_many_is_refused_and_free() {
    use proto_core::limits::POOL_HEADERS_MAX;
    let (vm, upstream, d) = (Shim::start(), Upstream::start(), TempDir::new("pool-headers"));
    let (owner, pool_id) = owner_with_pool(&vm, &upstream, &d);
    let oid = owner.agent_id();
    let c = Consumer::start("pool-headers-c", &vm);
    connect(&c, &owner);
    vm.airdrop(&c.wallet().address(), 1_000_000_000);
    let bought = c.buy(&oid, &pool_id, "0.002", None).unwrap();
    let token = bought["token_id"].as_str().unwrap().to_owned();
    let names: Vec<String> = (0..=POOL_HEADERS_MAX).map(|i| format!("x-h{i}")).collect();
    let headers = |n: usize| names[..n].iter().map(|h| (h.as_str(), "v")).collect::<Vec<_>>();
    let r = c.call(&oid, &pool_id, &token, "/v1/edge", &headers(POOL_HEADERS_MAX));
    assert_eq!((&r["http_status"], &r["balance_remaining_units"]), (&json!(200), &json!(1_000_000)), "{r}");
    let r = c.call(&oid, &pool_id, &token, "/v1/edge", &headers(POOL_HEADERS_MAX + 1));
    assert_eq!(r["http_status"], json!(400), "{r}");
    let seen = upstream.seen.lock().unwrap().iter().filter(|s| s.path == "/v1/edge").count();
    assert_eq!(seen, 1, "the refused call never reached the upstream");
    let r = c.call(&oid, &pool_id, &token, "/v1/edge", &[]);
    assert_eq!((&r["http_status"], &r["balance_remaining_units"]), (&json!(200), &json!(0)), "still paid for: {r}");
}
