//! Payment verification (R-G8) against a real SVM: a payment notice counts only when the transaction it
//! names is fetched and shows the payment: it succeeded, the payer (the sender's advertised wallet)
//! signed it, our wallet received at least the amount of the claimed asset through the classic Token
//! program, it is recent, its memo matches, and no other notice was credited with it. Each refusal of
//! the matrix is produced by a real transaction in LiteSVM.

#[path = "wallet_shim.rs"]
mod shim;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use proto_core::wallet::{
    associated_token_address, find_program_address, sign_instructions, AccountMeta, Instruction, MessageVersion,
    PaymentRefusal, Pubkey, SolTransfer, Wallet, ASSOCIATED_TOKEN_PROGRAM, TOKEN_2022_PROGRAM, TOKEN_PROGRAM,
};
use runtime_smol::solana_wallet::{NoticeError, SpendLimits, WalletService};
use serde_json::{json, Value};
use shim::{wallet, Shim};

struct Dir(std::path::PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dir(tag: &str) -> Dir {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let p = std::env::temp_dir().join(format!("dm-verify-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&p).unwrap();
    Dir(p)
}

fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// The payee's wallet service (spending off: it only verifies).
fn payee(vm: &Shim, w: Wallet, state: &Dir, clock: &Arc<AtomicI64>) -> WalletService {
    let c = clock.clone();
    WalletService::open(
        vm.solana(w),
        SpendLimits::default(),
        None,
        &state.0,
        Arc::new(move || c.load(Ordering::SeqCst)),
    )
    .unwrap()
}

fn notice(sig: &str, amount: &str, token: &str) -> Value {
    json!({"type": "solana_payment", "tx_signature": sig, "amount": amount, "token": token})
}

fn refusal(r: Result<u64, NoticeError>) -> PaymentRefusal {
    match r {
        Err(NoticeError::Refused(p)) => p,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Sends signed bytes as they are (preflight off, so a failing transaction lands with its error).
fn send_raw(vm: &Shim, bytes: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    let r = vm.call("sendTransaction", json!([b64, {"encoding": "base64", "skipPreflight": true}])).unwrap();
    r.as_str().unwrap().to_owned()
}

fn blockhash(vm: &Shim) -> [u8; 32] {
    let r = vm.call("getLatestBlockhash", json!([])).unwrap();
    Pubkey::from_base58(r["value"]["blockhash"].as_str().unwrap()).unwrap().0
}

struct World {
    vm: Shim,
    a: Wallet,
    b: Pubkey,
    c: Wallet,
    service: WalletService,
    clock: Arc<AtomicI64>,
    state: Dir,
}

fn world() -> World {
    let vm = Shim::start();
    let (a, b, c) = (wallet(0x1f), wallet(0x2a), wallet(0x3c));
    for w in [&a, &b, &c] {
        vm.airdrop(&w.address(), 10_000_000_000);
    }
    let clock = Arc::new(AtomicI64::new(now_s()));
    let state = dir("payee");
    let b_address = b.address();
    let service = payee(&vm, b, &state, &clock);
    World { vm, a, b: b_address, c, service, clock, state }
}

#[test]
fn a_sol_payment_counts_once_for_its_notice_and_never_for_another() {
    let w = world();
    let a_addr = w.a.address().to_base58();
    let sent = w.vm.solana(wallet(0x1f)).send_sol(w.b, 1_000_000_000, None).unwrap();
    let n = notice(&sent.signature, "1", "SOL");
    assert_eq!(w.service.verify_notice("m1", &a_addr, &n), Ok(1_000_000_000));
    assert_eq!(w.service.verify_notice("m1", &a_addr, &n), Ok(1_000_000_000), "the same notice again");
    assert_eq!(refusal(w.service.verify_notice("m2", &a_addr, &n)), PaymentRefusal::Replayed);
    // Persisted: a restarted service remembers the credit.
    let again = payee(&w.vm, wallet(0x2a), &w.state, &w.clock);
    assert_eq!(refusal(again.verify_notice("m3", &a_addr, &n)), PaymentRefusal::Replayed);
    // A short claim is the wrong claim: asking for more than arrived.
    let sent = w.vm.solana(wallet(0x1f)).send_sol(w.b, 500_000_000, None).unwrap();
    assert!(matches!(
        refusal(w.service.verify_notice("m4", &a_addr, &notice(&sent.signature, "0.500000001", "SOL"))),
        PaymentRefusal::Short { received: 500_000_000, claimed: 500_000_001 }
    ));
    // Too old: the same transaction checked as if two days had passed.
    w.clock.fetch_add(2 * 86_400, Ordering::SeqCst);
    assert_eq!(
        refusal(w.service.verify_notice("m5", &a_addr, &notice(&sent.signature, "0.5", "SOL"))),
        PaymentRefusal::Age
    );
}

#[test]
fn payments_to_another_wallet_or_by_another_payer_or_failed_are_refused() {
    let w = world();
    let a_addr = w.a.address().to_base58();
    // Wrong destination: A paid C.
    let to_c = w.vm.solana(wallet(0x1f)).send_sol(w.c.address(), 1_000_000_000, None).unwrap();
    assert_eq!(
        refusal(w.service.verify_notice("m1", &a_addr, &notice(&to_c.signature, "1", "SOL"))),
        PaymentRefusal::NoTransfer
    );
    // Payer not signing: C paid B, and A's notice claims it.
    let by_c = w.vm.solana(wallet(0x3c)).send_sol(w.b, 1_000_000_000, None).unwrap();
    assert_eq!(
        refusal(w.service.verify_notice("m2", &a_addr, &notice(&by_c.signature, "1", "SOL"))),
        PaymentRefusal::PayerNotSigner
    );
    // Failed: more than A holds, sent without preflight, lands with an error.
    let tx = SolTransfer { to: w.b, lamports: 50_000_000_000, memo: None }
        .sign(&w.a, blockhash(&w.vm), MessageVersion::V0)
        .unwrap();
    let sig = send_raw(&w.vm, &tx.bytes);
    assert_eq!(refusal(w.service.verify_notice("m3", &a_addr, &notice(&sig, "50", "SOL"))), PaymentRefusal::Failed);
    // A signature no transaction has.
    let unknown = proto_core::wallet::base58_encode(&[7u8; 64]);
    assert_eq!(
        refusal(w.service.verify_notice("m4", &a_addr, &notice(&unknown, "1", "SOL"))),
        PaymentRefusal::NotFound
    );
}

#[test]
fn memos_and_legacy_messages_are_read_from_the_bytes() {
    let w = world();
    let a_addr = w.a.address().to_base58();
    let tx = SolTransfer { to: w.b, lamports: 7, memo: Some("dm:m1".into()) }
        .sign(&w.a, blockhash(&w.vm), MessageVersion::Legacy)
        .unwrap();
    let sig = send_raw(&w.vm, &tx.bytes);
    let mut n = notice(&sig, "0.000000007", "SOL");
    n["memo"] = json!("dm:other");
    assert_eq!(refusal(w.service.verify_notice("m1", &a_addr, &n)), PaymentRefusal::Memo);
    n["memo"] = json!("dm:m1");
    assert_eq!(w.service.verify_notice("m1", &a_addr, &n), Ok(7));
}

/// A classic-Token mint with `decimals`, and `owner` holding `amount` in its associated account.
fn mint(vm: &Shim, seed: u8, owner: &Pubkey, amount: u64) -> Pubkey {
    let m = wallet(seed).address();
    vm.set_mint(&m, 6, &TOKEN_PROGRAM);
    let ata = associated_token_address(owner, &m).unwrap();
    vm.set_token_account(&ata, &m, owner, amount, &TOKEN_PROGRAM);
    m
}

#[test]
fn token_payments_count_only_in_the_claimed_mint_through_classic_token() {
    let w = world();
    let a_addr = w.a.address().to_base58();
    let x = mint(&w.vm, 0x51, &w.a.address(), 10_000_000);
    let y = mint(&w.vm, 0x52, &w.a.address(), 10_000_000);
    let sent = w.vm.solana(wallet(0x1f)).send_token(w.b, x, 1_500_000, 6, None).unwrap();
    let ok = notice(&sent.signature, "1.5", &x.to_base58());
    // Wrong mint: the notice names Y for a transfer of X.
    let wrong = notice(&sent.signature, "1.5", &y.to_base58());
    assert_eq!(refusal(w.service.verify_notice("m0", &a_addr, &wrong)), PaymentRefusal::WrongMint);
    let short = notice(&sent.signature, "1.500001", &x.to_base58());
    assert!(matches!(refusal(w.service.verify_notice("m0", &a_addr, &short)), PaymentRefusal::Short { .. }));
    assert_eq!(w.service.verify_notice("m1", &a_addr, &ok), Ok(1_500_000));
    // Token-2022: a real Token-2022 transfer from A to B.
    let t22 = wallet(0x53).address();
    w.vm.set_mint(&t22, 6, &TOKEN_2022_PROGRAM);
    let ata22 = |owner: &Pubkey| {
        let seeds: [&[u8]; 3] = [&owner.0, &TOKEN_2022_PROGRAM.0, &t22.0];
        find_program_address(&seeds, &ASSOCIATED_TOKEN_PROGRAM).unwrap().0
    };
    let (source, dest) = (ata22(&w.a.address()), ata22(&w.b));
    w.vm.set_token_account(&source, &t22, &w.a.address(), 5_000_000, &TOKEN_2022_PROGRAM);
    w.vm.set_token_account(&dest, &t22, &w.b, 0, &TOKEN_2022_PROGRAM);
    let meta = |key, signer, writable| AccountMeta { key, signer, writable };
    let mut data = vec![12u8];
    data.extend(1_000_000u64.to_le_bytes());
    data.push(6);
    let ix = Instruction {
        program: TOKEN_2022_PROGRAM,
        accounts: vec![
            meta(source, false, true),
            meta(t22, false, false),
            meta(dest, false, true),
            meta(w.a.address(), true, false),
        ],
        data,
    };
    let tx = sign_instructions(&w.a, &[ix], blockhash(&w.vm), MessageVersion::V0).unwrap();
    let sig = send_raw(&w.vm, &tx.bytes);
    assert_eq!(
        w.vm.solana(wallet(0x2a))
            .rpc()
            .call(&proto_core::wallet::RpcRequest::GetSignatureStatuses(sig.clone()))
            .unwrap()["value"][0]["err"],
        Value::Null,
        "the transfer itself succeeded"
    );
    // Claimed as the Token-2022 mint: refused before the transaction is read.
    match w.service.verify_notice("m2", &a_addr, &notice(&sig, "1", &t22.to_base58())) {
        Err(NoticeError::Claim(why)) => assert!(why.contains("Token-2022"), "{why}"),
        other => panic!("{other:?}"),
    }
    // Claimed as a classic mint: the transaction shows only a Token-2022 transfer.
    assert_eq!(
        refusal(w.service.verify_notice("m3", &a_addr, &notice(&sig, "1", &x.to_base58()))),
        PaymentRefusal::Token2022
    );
}
