//! AntiMatter end to end (SPEC §21): three Rust nodes on loopback with their wallet meshes and a real SVM
//! (LiteSVM behind `tests/solana/shim.js`). A pays B 1 SOL; B's node checks the notice on-chain as it
//! arrives (no agent reads it) and starts the signal; B's game (and V's, when B's does not match) sends the fee to V,
//! B's only veteran; B's wallet pays it and the VM's balances show it. (Runs in the `mcp` package: it
//! needs the wallet mesh.)

#[path = "wallet_shim.rs"]
mod shim;
#[path = "wallet_mesh.rs"]
mod wallet_mesh;

use std::path::PathBuf;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use darkmatter_mcp::mesh::Mesh;
use darkmatter_mcp::tools::{call, ToolOutput};
use proto_core::wallet::Wallet;
use proto_core::Command;
use runtime_smol::solana_wallet::{SpendLimits, WalletService};
use runtime_smol::storage::load_or_create_passport;
use runtime_smol::{NodeHandle, Running, RuntimeConfig};
use serde_json::{json, Value};
use shim::Shim;
use wallet_mesh::WalletMesh;

struct Node {
    handle: NodeHandle,
    _running: Running,
    state_dir: PathBuf,
    dir: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Node {
    fn start(name: &str, rpc: &str) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("dm-am-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let vars: [(&str, &str); 5] = [
            ("DARKMATTER_HOST", "127.0.0.1"),
            ("DARKMATTER_PORT", "0"),
            ("DARKMATTER_DISCOVERY", "false"),
            ("DARKMATTER_DISPLAY_NAME", name),
            ("DARKMATTER_SOLANA_RPC", rpc),
        ];
        let mut config = RuntimeConfig::from_lookup(dir.clone(), |k| {
            vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
        })
        .unwrap();
        config.handle_signals = false;
        let state_dir = config.state_dir.clone();
        let (handle, running) = runtime_smol::start(config).expect("node starts");
        Self { handle, _running: running, state_dir, dir }
    }

    fn wallet(&self) -> Wallet {
        Wallet::from_passport(&load_or_create_passport(&self.state_dir).unwrap())
    }

    fn mesh(&self, vm: &Shim, limits: &str) -> WalletMesh {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let at = Arc::new(AtomicI64::new(now));
        let clock: runtime_smol::solana_wallet::Clock = Arc::new(move || at.load(std::sync::atomic::Ordering::SeqCst));
        let service = WalletService::open(
            vm.solana(self.wallet()),
            SpendLimits::parse(limits).unwrap(),
            None,
            &self.state_dir,
            clock,
        )
        .unwrap();
        WalletMesh { inner: self.handle.clone(), service: Arc::new(service) }
    }

    fn connect(&self, to: &Node) {
        let r =
            self.handle.command_blocking(Command::Connect { target_url: to.handle.public_url().to_owned() }).unwrap();
        assert_eq!(r["status"], "connected", "{r}");
    }
}

fn tool(mesh: &dyn Mesh, name: &str, args: Value) -> Value {
    let Value::Object(args) = args else { panic!("object") };
    let out: ToolOutput = smol::block_on(call(mesh, name, args));
    assert!(!out.is_error, "{name}: {}", out.value);
    out.value
}

#[test]
fn a_payment_s_fee_reaches_a_veteran_on_chain() {
    let vm = Shim::start();
    // V is the oldest: created first, a second before the others (creation times are compared).
    let v = Node::start("veteran", &vm.url);
    std::thread::sleep(Duration::from_millis(1_100));
    let (b, a) = (Node::start("bob", &vm.url), Node::start("alice", &vm.url));
    b.connect(&v);
    a.connect(&b);
    let vid = v.handle.agent_id().to_owned();
    b.handle.command_blocking(Command::SetImpression { agent_id: vid, score: 0.5, note: None }).unwrap();
    vm.airdrop(&a.wallet().address(), 10_000_000_000);
    let payer = a.mesh(&vm, "SOL=5");
    let r = tool(&payer, "darkmatter_send_sol", json!({"agent_id": b.handle.agent_id(), "amount": "1"}));
    assert_eq!(r["status"], json!("confirmed"), "{r}");
    assert_eq!(vm.balance(&b.wallet().address()), 1_000_000_000);
    // Nobody reads B's inbox: B's node verified the notice on-chain as it arrived and started the signal.
    let fee = 10_000_000; // 1 % of 1 SOL, above the payable minimum
    let deadline = Instant::now() + Duration::from_secs(30);
    while vm.balance(&v.wallet().address()) != fee {
        assert!(Instant::now() < deadline, "V never received the fee: {}", vm.balance(&v.wallet().address()));
        std::thread::sleep(Duration::from_millis(100));
    }
    // B paid the fee and the transaction fee from what it received; A's balance is what it sent less fees.
    let b_after = vm.balance(&b.wallet().address());
    assert!(b_after < 1_000_000_000 - fee && b_after > 1_000_000_000 - fee - 100_000, "{b_after}");
    let inbox = b.handle.command_blocking(Command::ListInbox).unwrap();
    let id = inbox["messages"][0]["message_id"].as_str().unwrap().to_owned();
    let m = b.handle.command_blocking(Command::GetMessage { message_id: id, consume: false }).unwrap();
    assert_eq!(m["payment_verified"], json!(true), "{m}");
    // Reading the notice starts nothing more: still exactly one fee.
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(vm.balance(&v.wallet().address()), fee, "paid once");
    // Over the wire too: B told A its signal started (A awaits nothing more), and both logs show it.
    let payer = a.handle.command_blocking(Command::AntiMatterLog).unwrap();
    assert_eq!(payer["events"]["antimatter_started"], json!(1), "{payer}");
    assert_eq!(payer["awaited_payments"], json!(0), "{payer}");
    let status = b.handle.command_blocking(Command::Status).unwrap();
    assert_eq!(status["antimatter"]["events"]["antimatter_initiated"], json!(1), "{status}");
    assert_eq!(status["antimatter"]["events"]["antimatter_sent"], json!(1), "{status}");
}
