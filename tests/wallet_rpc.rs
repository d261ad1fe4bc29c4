//! The wallet's sends and balances end to end against a real SVM (LiteSVM behind `tests/solana/shim.js`):
//! airdrop, SOL and SPL transfers built by proto-core, sent and confirmed through runtime-smol's RPC
//! client; and, with a fake RPC, the faults a VM cannot produce (expiry, a cluster that never confirms,
//! timeouts, oversized answers).

#[path = "wallet_shim.rs"]
mod shim;

use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto_core::limits::{WALLET_CONFIRM_POLLS_MAX, WALLET_RPC_RESPONSE_BYTES_MAX};
use proto_core::wallet::{
    associated_token_address, find_program_address, parse_amount, Pubkey, RpcError, RpcRequest, SendStatus,
    ASSOCIATED_TOKEN_PROGRAM, TOKEN_PROGRAM,
};
use runtime_smol::solana::{HttpRpc, Solana, SolanaRpc, WalletError};
use serde_json::{json, Value};
use shim::{wallet, Shim};

/// Token-2022's program id.
fn token_2022() -> Pubkey {
    Pubkey::from_base58("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb").unwrap()
}

#[test]
fn airdrop_then_an_exact_sol_transfer_is_confirmed() {
    let vm = Shim::start();
    let (a, b) = (wallet(0x1f), wallet(0x2a));
    vm.airdrop(&a.address(), 5_000_000_000);
    let solana = vm.solana(a);
    assert_eq!(solana.balance_of(&solana.address()).unwrap(), 5_000_000_000);
    let lamports = parse_amount("1.001", 9).unwrap();
    let sent = solana.send_sol(b.address(), lamports, Some("dm:m-1".into())).unwrap();
    assert_eq!(sent.status, SendStatus::Confirmed);
    assert_eq!(vm.balance(&b.address()), 1_001_000_000, "exactly 1.001 SOL, not 0.5.3's 1,000,999,999 lamports");
    assert!(vm.balance(&solana.address()) < 5_000_000_000 - 1_001_000_000, "and the fee");
}

#[test]
fn a_transfer_the_payer_cannot_afford_fails_preflight() {
    let vm = Shim::start();
    let (a, b) = (wallet(3), wallet(4));
    vm.airdrop(&a.address(), 1_000_000);
    let err = vm.solana(a).send_sol(b.address(), 2_000_000, None).unwrap_err();
    assert!(matches!(err, WalletError::Rpc(RpcError::Server { .. })), "{err}");
    assert_eq!(vm.balance(&b.address()), 0);
}

#[test]
fn an_spl_transfer_creates_the_recipients_account_and_is_confirmed() {
    let vm = Shim::start();
    let (a, b) = (wallet(5), wallet(6));
    let mint = wallet(7).address();
    vm.airdrop(&a.address(), 1_000_000_000);
    vm.set_mint(&mint, 6, &TOKEN_PROGRAM);
    let source = associated_token_address(&a.address(), &mint).unwrap();
    vm.set_token_account(&source, &mint, &a.address(), 5_000_000, &TOKEN_PROGRAM);
    let solana = vm.solana(a);
    assert_eq!(solana.token_balance(&mint).unwrap().amount, 5_000_000);
    let amount = parse_amount("1.5", 6).unwrap();
    let sent = solana.send_token(b.address(), mint, amount, 6, Some("dm:m-2".into())).unwrap();
    assert_eq!(sent.status, SendStatus::Confirmed);
    let theirs = vm.solana(wallet(6)).token_balance(&mint).unwrap();
    assert_eq!((theirs.amount, theirs.decimals, theirs.has_account), (1_500_000, 6, true));
    assert_eq!(solana.token_balance(&mint).unwrap().amount, 3_500_000);
    // The recipient's account exists now; CreateIdempotent makes a second transfer succeed as well.
    assert_eq!(solana.send_token(b.address(), mint, 1, 6, None).unwrap().status, SendStatus::Confirmed);
    let wrong = solana.send_token(b.address(), mint, 1, 9, None).unwrap_err();
    assert!(matches!(wrong, WalletError::Decimals { actual: 6, given: 9, .. }), "{wrong}");
}

#[test]
fn token_2022_mints_are_refused_before_anything_is_signed() {
    let vm = Shim::start();
    let a = wallet(8);
    let mint = wallet(9).address();
    vm.airdrop(&a.address(), 1_000_000_000);
    vm.set_mint(&mint, 6, &token_2022());
    let seeds: [&[u8]; 3] = [&a.address().0, &token_2022().0, &mint.0];
    let (ata, _) = find_program_address(&seeds, &ASSOCIATED_TOKEN_PROGRAM).unwrap();
    vm.set_token_account(&ata, &mint, &a.address(), 5_000_000, &token_2022());
    let solana = vm.solana(a);
    assert!(matches!(solana.token_balance(&mint), Err(WalletError::UnsupportedMint(_))));
    let err = solana.send_token(wallet(10).address(), mint, 1, 6, None).unwrap_err();
    assert!(matches!(err, WalletError::UnsupportedMint(_)), "{err}");
    let missing = solana.send_token(wallet(10).address(), wallet(11).address(), 1, 6, None).unwrap_err();
    assert!(matches!(missing, WalletError::MintNotFound(_)), "{missing}");
}

/// A cluster that takes every transaction and never lands any, at a block height that jumps past every
/// blockhash's validity when `expire` is set.
struct Stuck {
    expire: bool,
    sends: AtomicU32,
    polls: AtomicU32,
}

impl SolanaRpc for Stuck {
    fn call(&self, request: &RpcRequest) -> Result<Value, RpcError> {
        Ok(match request {
            RpcRequest::GetLatestBlockhash => {
                json!({"context":{"slot":1},"value":{"blockhash": Pubkey([7; 32]).to_base58(), "lastValidBlockHeight": 100}})
            }
            RpcRequest::SendTransaction(bytes) => {
                self.sends.fetch_add(1, Ordering::SeqCst);
                json!(proto_core::wallet::base58_encode(&bytes[1..65]))
            }
            RpcRequest::GetSignatureStatuses(_) => {
                self.polls.fetch_add(1, Ordering::SeqCst);
                json!({"context":{"slot":1},"value":[null]})
            }
            RpcRequest::GetBlockHeight => json!(if self.expire { 101 } else { 50 }),
            other => return Err(RpcError::Shape(other.method())),
        })
    }
}

fn stuck(expire: bool) -> (Arc<Stuck>, Solana) {
    let rpc = Arc::new(Stuck { expire, sends: AtomicU32::new(0), polls: AtomicU32::new(0) });
    let solana = Solana::new(rpc.clone(), wallet(1)).with_poll_interval(Duration::ZERO);
    (rpc, solana)
}

#[test]
fn an_expired_blockhash_is_signed_again_once_then_reported_expired() {
    let (rpc, solana) = stuck(true);
    let sent = solana.send_sol(wallet(2).address(), 1, None).unwrap();
    assert_eq!(sent.status, SendStatus::Expired);
    assert_eq!(rpc.sends.load(Ordering::SeqCst), 2, "one new signature, not a loop");
}

#[test]
fn a_send_never_confirmed_is_reported_submitted_after_the_last_poll() {
    let (rpc, solana) = stuck(false);
    let sent = solana.send_sol(wallet(2).address(), 1, None).unwrap();
    assert_eq!(sent.status, SendStatus::Submitted);
    assert_eq!(rpc.polls.load(Ordering::SeqCst), WALLET_CONFIRM_POLLS_MAX);
    assert_eq!(rpc.sends.load(Ordering::SeqCst), 1);
}

#[test]
fn a_node_that_never_answers_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let _held = std::thread::spawn(move || {
        let (socket, _) = listener.accept().unwrap();
        std::thread::sleep(Duration::from_secs(3));
        drop(socket);
    });
    let rpc = HttpRpc::with_timeout(&url, Duration::from_millis(300)).unwrap();
    let started = Instant::now();
    let err = rpc.call(&RpcRequest::GetBlockHeight).unwrap_err();
    assert!(matches!(err, RpcError::Transport(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn an_answer_over_the_limit_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let serve = || {
        let (mut socket, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = std::io::Read::read(&mut socket, &mut buf);
        // One byte over: the client must stop reading there, whatever the header says.
        let body = " ".repeat(WALLET_RPC_RESPONSE_BYTES_MAX as usize + 1);
        let _ = write!(socket, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    };
    let rpc = HttpRpc::new(&url).unwrap();
    let handle = std::thread::scope(|s| {
        s.spawn(serve);
        rpc.call(&RpcRequest::GetBlockHeight)
    });
    match handle {
        Err(RpcError::Transport(t)) => assert!(t.contains("exceeds"), "{t}"),
        other => panic!("{other:?}"),
    }
}
