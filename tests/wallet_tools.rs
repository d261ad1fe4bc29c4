//! The six wallet tools end to end: two in-process nodes connected on loopback, the MCP tool calls of the
//! first going through its wallet service to a real SVM (LiteSVM behind `tests/solana/shim.js`); the
//! payee's wallet is the one its handshake advertised, and the notice reaches its inbox. Spending
//! limits (off by default, per asset, a rolling day, persisted) and the spawned-session refusal are
//! checked through the same calls. (Runs in the `mcp` package: it needs the tools.)

#[path = "wallet_shim.rs"]
mod shim;
#[path = "wallet_mesh.rs"]
mod wallet_mesh;

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use darkmatter_mcp::mesh::Mesh;
use darkmatter_mcp::spawned::SpawnedMesh;
use darkmatter_mcp::tools::{call, ToolOutput};
use proto_core::wallet::{associated_token_address, Wallet, TOKEN_PROGRAM};
use proto_core::Command;
use runtime_smol::solana_wallet::{resolve_token, Clock, SpendLimits, WalletService};
use runtime_smol::storage::load_or_create_passport;
use runtime_smol::{NodeHandle, Running, RuntimeConfig};
use serde_json::{json, Value};
use shim::Shim;
use wallet_mesh::WalletMesh;

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let p = std::env::temp_dir().join(format!("dm-wallet-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Node {
    handle: NodeHandle,
    _running: Running,
    state_dir: PathBuf,
    _dir: Dir,
}

impl Node {
    fn start(name: &str, rpc: &str) -> Self {
        let dir = Dir::new(name);
        let vars: [(&str, &str); 5] = [
            ("DARKMATTER_HOST", "127.0.0.1"),
            ("DARKMATTER_PORT", "0"),
            ("DARKMATTER_DISCOVERY", "false"),
            ("DARKMATTER_DISPLAY_NAME", name),
            ("DARKMATTER_SOLANA_RPC", rpc),
        ];
        let mut config = RuntimeConfig::from_lookup(dir.0.clone(), |k| {
            vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
        })
        .unwrap();
        config.handle_signals = false;
        let state_dir = config.state_dir.clone();
        let (handle, running) = runtime_smol::start(config).expect("node starts");
        Self { handle, _running: running, state_dir, _dir: dir }
    }

    fn wallet(&self) -> Wallet {
        Wallet::from_passport(&load_or_create_passport(&self.state_dir).unwrap())
    }
}

/// A clock tests move.
fn clock(at: &Arc<AtomicI64>) -> Clock {
    let at = at.clone();
    Arc::new(move || at.load(Ordering::SeqCst))
}

fn service(vm: &Shim, node: &Node, limits: &str, now: &Arc<AtomicI64>) -> WalletService {
    let limits = SpendLimits::parse(limits).unwrap();
    WalletService::open(vm.solana(node.wallet()), limits, None, &node.state_dir, clock(now)).unwrap()
}

fn tool(mesh: &dyn Mesh, name: &str, args: Value) -> ToolOutput {
    let Value::Object(args) = args else { panic!("object") };
    smol::block_on(call(mesh, name, args))
}

fn ok(out: ToolOutput) -> Value {
    assert!(!out.is_error, "{}", out.value);
    out.value
}

fn err(out: ToolOutput) -> String {
    assert!(out.is_error, "should fail: {}", out.value);
    out.value["error"].as_str().unwrap().to_owned()
}

/// A and B connected (B auto-accepts a local request), and the VM with A's wallet funded.
fn pair() -> (Shim, Node, Node) {
    let vm = Shim::start();
    let (a, b) = (Node::start("alice", &vm.url), Node::start("bob", &vm.url));
    let url = b.handle.public_url().to_owned();
    let r = a.handle.command_blocking(Command::Connect { target_url: url }).unwrap();
    assert_eq!(r["status"], "connected", "{r}");
    vm.airdrop(&a.wallet().address(), 10_000_000_000);
    (vm, a, b)
}

fn wallet_mesh(vm: &Shim, a: &Node, limits: &str, now: &Arc<AtomicI64>) -> WalletMesh {
    WalletMesh { inner: a.handle.clone(), service: Arc::new(service(vm, a, limits, now)) }
}

#[test]
fn send_sol_pays_the_advertised_wallet_exactly_and_notifies_the_payee() {
    let (vm, a, b) = pair();
    let now = Arc::new(AtomicI64::new(1_800_000_000));
    let mesh = wallet_mesh(&vm, &a, "SOL=2", &now);
    let bob = b.handle.agent_id().to_owned();
    let r = ok(tool(&mesh, "darkmatter_send_sol", json!({"agent_id": bob, "amount": "1.001"})));
    assert_eq!(
        (&r["status"], &r["amount"], &r["lamports"]),
        (&json!("confirmed"), &json!("1.001"), &json!(1_001_000_000u64))
    );
    assert_eq!(r["to_wallet"], json!(b.wallet().address().to_base58()), "the wallet B's handshake gave");
    assert_eq!(r["notification_sent"], json!(true));
    assert_eq!(vm.balance(&b.wallet().address()), 1_001_000_000);
    let inbox = b.handle.command_blocking(Command::ListInbox).unwrap();
    let text = inbox.to_string();
    assert!(text.contains(&format!("Sent 1.001 SOL — tx: {}", r["tx_signature"].as_str().unwrap())), "{text}");
    // B's node verifies the notice as it arrives and routes 1 % through AntiMatter. Its only peer is A,
    // the payer, who never gets its own fee back: B is terminal and keeps it (no transaction).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let log = b.handle.command_blocking(Command::AntiMatterLog).unwrap();
        if log["events"]["antimatter_kept"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "B kept no fee: {log}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let after_fee = 1_001_000_000;
    assert_eq!(vm.balance(&b.wallet().address()), after_fee, "nothing was paid out");
    // A JSON number converts exactly as well, and wallet_send is the same payment on Solana.
    let r = ok(tool(&mesh, "darkmatter_wallet_send", json!({"agent_id": bob, "amount": 0.5, "notify": false})));
    assert_eq!((&r["lamports"], &r["notification_sent"]), (&json!(500_000_000u64), &json!(false)));
    assert_eq!(vm.balance(&b.wallet().address()), after_fee + 500_000_000);
    let e = err(tool(&mesh, "darkmatter_send_sol", json!({"agent_id": bob, "amount": "0.0000000001"})));
    assert!(e.contains("decimal places"), "{e}");
    let e = err(tool(&mesh, "darkmatter_send_sol", json!({"agent_id": "f".repeat(64), "amount": "1"})));
    assert!(e.contains("Not connected to agent"), "{e}");
}

#[test]
fn the_daily_limit_holds_over_a_rolling_day_and_across_a_restart() {
    let (vm, a, b) = pair();
    let bob = b.handle.agent_id().to_owned();
    let now = Arc::new(AtomicI64::new(1_800_000_000));
    let off = wallet_mesh(&vm, &a, "", &now);
    let e = err(tool(&off, "darkmatter_send_sol", json!({"agent_id": bob, "amount": "0.001"})));
    assert!(e.contains("Spending is off"), "{e}");
    let mesh = wallet_mesh(&vm, &a, "SOL=2", &now);
    ok(tool(&mesh, "darkmatter_send_sol", json!({"agent_id": bob, "amount": "1.5", "notify": false})));
    let e = err(tool(&mesh, "darkmatter_send_sol", json!({"agent_id": bob, "amount": "0.500000001"})));
    assert!(e.contains("Daily spending limit"), "{e}");
    // Exactly up to the limit is allowed.
    ok(tool(&mesh, "darkmatter_send_sol", json!({"agent_id": bob, "amount": "0.5", "notify": false})));
    // Persisted: a restarted service still counts the day's spends.
    drop(mesh);
    now.fetch_add(86_399, Ordering::SeqCst);
    let mesh = wallet_mesh(&vm, &a, "SOL=2", &now);
    let e = err(tool(&mesh, "darkmatter_send_sol", json!({"agent_id": bob, "amount": "0.001"})));
    assert!(e.contains("Daily spending limit"), "{e}");
    // A day after the spends, the limit is free again.
    now.fetch_add(1, Ordering::SeqCst);
    ok(tool(&mesh, "darkmatter_send_sol", json!({"agent_id": bob, "amount": "2", "notify": false})));
    assert_eq!(vm.balance(&b.wallet().address()), 4_000_000_000);
}

#[test]
fn a_spawned_session_reads_balances_but_cannot_spend() {
    let (vm, a, b) = pair();
    let now = Arc::new(AtomicI64::new(1_800_000_000));
    let spawned = SpawnedMesh::new(Arc::new(wallet_mesh(&vm, &a, "SOL=100,USDC=100", &now)), None);
    let bob = b.handle.agent_id().to_owned();
    for (name, args) in [
        ("darkmatter_send_sol", json!({"agent_id": bob, "amount": "1"})),
        ("darkmatter_wallet_send", json!({"agent_id": bob, "amount": "1"})),
        ("darkmatter_send_token", json!({"agent_id": bob, "mint": "USDC", "amount": "1"})),
        ("darkmatter_set_superagent", json!({"url": "https://evil.example"})),
    ] {
        let e = err(tool(&spawned, name, args));
        assert!(e.contains("spawned agent may not spend"), "{name}: {e}");
    }
    assert_eq!(vm.balance(&b.wallet().address()), 0);
    let r = ok(tool(&spawned, "darkmatter_wallet_balances", json!({})));
    assert_eq!(r["wallets"][0]["lamports"], json!(10_000_000_000u64));
    assert_eq!(r["wallets"][0]["address"], json!(a.wallet().address().to_base58()));
}

#[test]
fn tokens_by_symbol_balances_and_the_superagent() {
    let (vm, a, b) = pair();
    let now = Arc::new(AtomicI64::new(1_800_000_000));
    let mesh = wallet_mesh(&vm, &a, "USDC=10", &now);
    let usdc = resolve_token("USDC").unwrap().mint;
    vm.set_mint(&usdc, 6, &TOKEN_PROGRAM);
    let source = associated_token_address(&a.wallet().address(), &usdc).unwrap();
    vm.set_token_account(&source, &usdc, &a.wallet().address(), 20_000_000, &TOKEN_PROGRAM);
    let bob = b.handle.agent_id().to_owned();
    let r = ok(tool(&mesh, "darkmatter_send_token", json!({"agent_id": bob, "mint": "usdc", "amount": "1.5"})));
    assert_eq!(
        (&r["status"], &r["token_mint"], &r["decimals"]),
        (&json!("confirmed"), &json!(usdc.to_base58()), &json!(6))
    );
    assert_eq!(r["notification_sent"], json!(true));
    assert_eq!(vm.solana(b.wallet()).token_balance(&usdc).unwrap().amount, 1_500_000);
    let e = err(tool(&mesh, "darkmatter_send_token", json!({"agent_id": bob, "mint": "USDC", "amount": "1.0000001"})));
    assert!(e.contains("decimal places"), "T-G3: {e}");
    let e = err(tool(&mesh, "darkmatter_send_token", json!({"agent_id": bob, "mint": "USDC", "amount": "8.500001"})));
    assert!(e.contains("Daily spending limit"), "{e}");
    let r = ok(tool(&mesh, "darkmatter_get_balance", json!({"mint": "USDC"})));
    assert_eq!((&r["balance"], &r["amount"], &r["decimals"]), (&json!("18.5"), &json!("18500000"), &json!(6)));
    let r = ok(tool(&mesh, "darkmatter_get_balance", json!({})));
    assert_eq!(r["token"], "SOL");
    let dm = resolve_token("DM").unwrap().mint;
    vm.set_mint(&dm, 6, &TOKEN_PROGRAM);
    let r = ok(tool(&mesh, "darkmatter_get_balance", json!({"mint": "dm"})));
    assert_eq!((&r["balance"], &r["note"]), (&json!("0"), &json!("No token account found")));
    let r = ok(tool(&mesh, "darkmatter_set_superagent", json!({"url": "https://super.example"})));
    assert_eq!((&r["effective_url"], &r["reset_to_default"]), (&json!("https://super.example"), &json!(false)));
    drop(mesh);
    let mesh = wallet_mesh(&vm, &a, "", &now);
    let r = ok(tool(&mesh, "darkmatter_set_superagent", json!({})));
    assert_eq!((&r["superagent_url"], &r["reset_to_default"]), (&Value::Null, &json!(true)));
}

/// The inbox message of `node` whose content starts with `prefix`.
fn inbox_id(node: &Node, prefix: &str) -> String {
    let inbox = node.handle.command_blocking(Command::ListInbox).unwrap();
    let found =
        inbox["messages"].as_array().unwrap().iter().find(|m| m["content"].as_str().unwrap().starts_with(prefix));
    found.unwrap_or_else(|| panic!("no {prefix:?} in {inbox}"))["message_id"].as_str().unwrap().to_owned()
}

/// Message `id` read in full once the node's wallet has decided its payment (it checks in the
/// background as the notice arrives).
fn decided(node: &Node, id: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let m =
            node.handle.command_blocking(Command::GetMessage { message_id: id.to_owned(), consume: false }).unwrap();
        if m["payment_refusal"] != json!("being checked on-chain") || std::time::Instant::now() > deadline {
            return m;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_notice_read_in_full_says_whether_the_payment_was_verified_on_chain() {
    let (vm, a, b) = pair();
    let now = Arc::new(AtomicI64::new(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64,
    ));
    let payer = wallet_mesh(&vm, &a, "SOL=5", &now);
    let bob = b.handle.agent_id().to_owned();
    // The payer's superagent is B's node here: its network_info gives the wallet the notice names.
    ok(tool(&payer, "darkmatter_set_superagent", json!({"url": b.handle.public_url()})));
    let r = ok(tool(&payer, "darkmatter_send_sol", json!({"agent_id": bob, "amount": "1.25"})));
    assert_eq!(r["sender_superagent_wallet"], json!(b.wallet().address().to_base58()));
    let signature = r["tx_signature"].as_str().unwrap().to_owned();
    let id = inbox_id(&b, "Sent 1.25 SOL");
    for _ in 0..2 {
        let m = decided(&b, &id);
        assert_eq!(m["payment_verified"], json!(true), "{m}");
        assert_eq!(m["metadata"]["tx_signature"], json!(signature));
        assert_eq!(m["metadata"]["sender_superagent_wallet"], json!(b.wallet().address().to_base58()));
    }
    // The same transaction announced again, as an ordinary message with the notice's metadata: no credit.
    let forged = |content: &str, sig: &str| {
        json!({"content": content, "target_agent_id": bob, "metadata": {"type": "solana_payment", "amount": "1.25",
            "token": "SOL", "tx_signature": sig}})
    };
    ok(tool(&payer, "darkmatter_send_message", forged("again", &signature)));
    let m = decided(&b, &inbox_id(&b, "again"));
    assert_eq!(m["payment_verified"], json!(false), "{m}");
    assert!(m["payment_refusal"].as_str().unwrap().contains("already credited"), "{m}");
    // A transaction that does not exist.
    let fake = proto_core::wallet::base58_encode(&[9u8; 64]);
    ok(tool(&payer, "darkmatter_send_message", forged("fake", &fake)));
    // Not found is what a transaction not final yet looks like too: it is asked again, and meanwhile
    // stays unverified.
    let fake_id = inbox_id(&b, "fake");
    let m = b.handle.command_blocking(Command::GetMessage { message_id: fake_id, consume: false }).unwrap();
    assert_eq!(m["payment_verified"], json!(false), "{m}");
    // An ordinary message is left as it is.
    ok(tool(&payer, "darkmatter_send_message", json!({"content": "hello", "target_agent_id": bob})));
    let m = decided(&b, &inbox_id(&b, "hello"));
    assert!(m.get("payment_verified").is_none(), "{m}");
}
