//! The LiteSVM JSON-RPC shim (`tests/solana/shim.js`) as a child process on loopback, for the wallet
//! tests: a real SVM running the System, Token, Token-2022, ATA and Memo programs, with signature and
//! blockhash checks. Its npm packages are installed by `.ci/run` (`npm install --prefix tests/solana`), or
//! here on first use.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use proto_core::wallet::{Pubkey, RpcError, RpcRequest, Wallet};
use runtime_smol::solana::{HttpRpc, Solana, SolanaRpc};
use serde_json::{json, Value};

/// npm installs one at a time (two test binaries may start together).
static INSTALL: Mutex<()> = Mutex::new(());

fn shim_dir() -> PathBuf {
    // `tests/` or `mcp/` (which runs the tool tests): the shim is in the workspace's tests/solana either way.
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/solana")
}

fn ensure_installed() {
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if shim_dir().join("node_modules/litesvm").is_dir() {
        return;
    }
    // `npm install`, not `npm ci`: npm 11 leaves litesvm's optional per-platform packages out of the
    // lock file and then refuses `ci`; `install` follows the lock (litesvm itself is pinned exactly).
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(shim_dir())
        .status()
        .expect("npm (Node 20) is needed for the LiteSVM wallet tests");
    assert!(status.success(), "npm install --prefix tests/solana failed");
}

/// A running shim; killed when dropped.
pub struct Shim {
    child: Child,
    pub url: String,
}

impl Shim {
    pub fn start() -> Self {
        ensure_installed();
        let mut child = Command::new("node")
            .arg(shim_dir().join("shim.js"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = serde_json::from_str::<Value>(&line).ok().and_then(|v| v["port"].as_u64()).expect("shim port");
        Self { child, url: format!("http://127.0.0.1:{port}") }
    }

    pub fn rpc(&self) -> Arc<dyn SolanaRpc> {
        Arc::new(HttpRpc::new(&self.url).unwrap())
    }

    /// A wallet on this VM, polling fast.
    pub fn solana(&self, wallet: Wallet) -> Solana {
        Solana::new(self.rpc(), wallet).with_poll_interval(std::time::Duration::from_millis(20))
    }

    /// A raw call (test hooks and `requestAirdrop` are not wallet requests).
    pub fn call(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let answer: Value = ureq_post(&self.url, &body);
        proto_core::wallet::result_of(answer)
    }

    pub fn airdrop(&self, to: &Pubkey, lamports: u64) {
        self.call("requestAirdrop", json!([to.to_base58(), lamports])).expect("airdrop");
    }

    /// A mint of `program` (classic Token unless told) with `decimals`.
    pub fn set_mint(&self, mint: &Pubkey, decimals: u8, program: &Pubkey) {
        let spec = json!({"address": mint.to_base58(), "decimals": decimals, "program": program.to_base58()});
        self.call("dm_setMint", json!([spec])).expect("mint");
    }

    /// A token account at `address` of `owner` holding `amount` of `mint`.
    pub fn set_token_account(&self, address: &Pubkey, mint: &Pubkey, owner: &Pubkey, amount: u64, program: &Pubkey) {
        let spec = json!({
            "address": address.to_base58(), "mint": mint.to_base58(), "owner": owner.to_base58(),
            "amount": amount, "program": program.to_base58(),
        });
        self.call("dm_setTokenAccount", json!([spec])).expect("token account");
    }

    pub fn balance(&self, of: &Pubkey) -> u64 {
        proto_core::wallet::parse_balance(&self.rpc().call(&RpcRequest::GetBalance(*of)).unwrap()).unwrap()
    }
}

fn ureq_post(url: &str, body: &Value) -> Value {
    // runtime-smol's transport takes only wallet requests; the hooks go over a plain socket.
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let text = body.to_string();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).unwrap_or(Value::Null)
}

impl Drop for Shim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A wallet from a one-byte passport seed.
pub fn wallet(byte: u8) -> Wallet {
    Wallet::from_passport_seed(&[byte; 32])
}
