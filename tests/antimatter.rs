//! AntiMatter routing (SPEC §21) through the real node code with in-process peers: a verified payment
//! starts one signal, games are played over `/antimatter_match`, the signal walks to veterans with a
//! signed hop chain, and the payee pays each fee exactly once.

use darkmatter_tests::harness::Mesh;
use proto_core::antimatter::ledger::FlowState;
use proto_core::antimatter::p_match;
use proto_core::limits::{ANTIMATTER_SIGNAL_AGE_MAX_S, ANTIMATTER_WATCHDOG_GRACE_S};
use proto_core::node::{PaymentError, HOUSEKEEPING_INTERVAL_MS};
use proto_core::{Command, Method, SendArgs, Targets};
use serde_json::{json, Map, Value};

const DAY_MS: u64 = 86_400_000;
/// One SOL in lamports: its 1 % fee is above the payable minimum.
const ONE_SOL: u64 = 1_000_000_000;
const SUPERAGENT_WALLET: &str = "SuperagentWa11et1111111111111111111111111111";

fn connect(m: &mut Mesh, from: usize, to: usize) {
    let url = m.peers[to].url.clone();
    m.command(from, Command::Connect { target_url: url }).expect("connect");
}

fn trust(m: &mut Mesh, at: usize, of: usize, score: f64) {
    let agent_id = m.id(of);
    m.command(at, Command::SetImpression { agent_id, score, note: None }).unwrap();
}

fn wallet_of(m: &mut Mesh, i: usize) -> String {
    let info = m.command(i, Command::NetworkInfo).unwrap();
    info["wallets"]["solana"].as_str().expect("every node has a wallet").to_owned()
}

/// A's signed payment notice to B (0.5.3's keys); answers the message id.
fn notice(m: &mut Mesh, a: usize, b: usize, tx: &str, extra: Value) -> String {
    let mut metadata: Map<String, Value> = json!({
        "type": "solana_payment", "amount": "1", "token": "SOL", "tx_signature": tx,
        "antimatter_eligible": true, "antimatter_rate": 0.01, "sender_superagent_wallet": SUPERAGENT_WALLET,
    })
    .as_object()
    .unwrap()
    .clone();
    if let Value::Object(extra) = extra {
        metadata.extend(extra);
    }
    let args = SendArgs {
        content: format!("paid {tx}"),
        targets: Targets::Agents(vec![m.id(b)]),
        metadata,
        in_reply_to: None,
        hops_remaining: 1,
    };
    let out = m.command(a, Command::Send(args)).expect("send");
    out["message_id"].as_str().unwrap().to_owned()
}

/// What the runtime's wallet does after verifying the notice on-chain.
fn verified(m: &mut Mesh, b: usize, message_id: &str, units: u64) -> Result<String, PaymentError> {
    let now = m.now;
    let r = m.peers[b].node.handle_verified_payment(now, message_id, units);
    m.advance(0);
    // The agent reads the notice (the inbox holds 50 messages).
    let _ = m.command(b, Command::GetMessage { message_id: message_id.to_owned(), consume: true });
    r
}

/// Nodes created a day apart, oldest first; returns their indices.
fn aged(m: &mut Mesh, names: &[&str]) -> Vec<usize> {
    names
        .iter()
        .map(|n| {
            let i = m.add(n, true);
            m.advance(DAY_MS);
            i
        })
        .collect()
}

fn signal_posts(m: &Mesh) -> usize {
    m.trace.iter().filter(|l| l.contains("Post /__darkmatter__/antimatter_signal")).count()
}

/// A pays B; B's fee ends with B's veteran X or X's veteran V, paid by B once, to a wallet the
/// chain names; the result came signed with a verified chain.
#[test]
fn a_fee_reaches_a_veteran_and_is_paid_once() {
    let mut m = Mesh::new();
    let [v, x, b, a] = aged(&mut m, &["V", "X", "B", "A"])[..] else { unreachable!() };
    connect(&mut m, x, v);
    connect(&mut m, b, x);
    connect(&mut m, a, b);
    trust(&mut m, b, x, 0.5);
    trust(&mut m, x, v, 0.5);
    let mut paid_to = Vec::new();
    for round in 0..20 {
        let msg = notice(&mut m, a, b, &format!("tx{round}"), json!({}));
        let id = verified(&mut m, b, &msg, ONE_SOL).expect("a verified payment starts a signal");
        let payouts = m.peers[b].node.take_payouts();
        assert_eq!(payouts.len(), 1, "round {round}: {payouts:?}\n{}", m.trace.join("\n"));
        assert_eq!((payouts[0].units, payouts[0].asset.as_str()), (ONE_SOL / 100, "SOL"));
        assert_eq!(m.peers[b].node.antimatter_flow(&id).unwrap().state, FlowState::Paid);
        paid_to.push(payouts[0].to_wallet.clone());
        m.advance(60_000);
    }
    let (xw, vw) = (wallet_of(&mut m, x), wallet_of(&mut m, v));
    assert!(paid_to.iter().all(|w| *w == xw || *w == vw), "{paid_to:?}");
    assert!(paid_to.contains(&vw), "some signals went on to V (P(no match at B) = 4/9)");
    assert!(paid_to.contains(&xw), "some matched at B");
    let log = m.peers[b].node.antimatter_log();
    assert!(log.iter().any(|e| e.kind == "antimatter_sent"), "{log:?}");
}

/// T-F3 through the node code: a tenure-ordered line of veterans, N = 2 at the payee and 1 at each
/// veteran; the mean number of forwards is Σ (1 − p(2))(1 − p(1))^k up to the hop limit (0.887), here
/// within ±0.15 (about 3σ over 600 payments).
#[test]
fn chains_are_as_long_as_the_match_probability_says() {
    let mut m = Mesh::new();
    let names: Vec<String> = (0..12).map(|i| format!("L{i}")).collect();
    let mut all: Vec<&str> = names.iter().map(String::as_str).collect();
    all.extend(["B", "A"]);
    let idx = aged(&mut m, &all);
    let (b, a) = (idx[12], idx[13]);
    // L11 is the youngest veteran, B's elder; each trusts its elder.
    for i in (1..12).rev() {
        connect(&mut m, idx[i], idx[i - 1]);
        trust(&mut m, idx[i], idx[i - 1], 0.5);
    }
    connect(&mut m, b, idx[11]);
    trust(&mut m, b, idx[11], 0.5);
    connect(&mut m, a, b);
    let payments = 600;
    let before = signal_posts(&m);
    for round in 0..payments {
        let msg = notice(&mut m, a, b, &format!("tx{round}"), json!({}));
        verified(&mut m, b, &msg, ONE_SOL).unwrap();
        assert_eq!(m.peers[b].node.take_payouts().len(), 1, "round {round}");
        m.advance(30_000);
    }
    let forwards = (signal_posts(&m) - before) as f64 / payments as f64;
    let (p2, p1) = (p_match(2), p_match(1));
    let expected: f64 = (0..9).map(|k| (1.0 - p2) * (1.0 - p1).powi(k)).sum();
    assert!((expected - 0.887).abs() < 0.001);
    assert!((forwards - expected).abs() < 0.15, "mean forwards {forwards} vs {expected}");
}

/// T-F5: a notice that was not verified starts nothing; one that was starts one signal, once.
#[test]
fn only_a_verified_eligible_payment_starts_a_signal_and_only_once() {
    let mut m = Mesh::new();
    let [x, b, a] = aged(&mut m, &["X", "B", "A"])[..] else { unreachable!() };
    connect(&mut m, b, x);
    connect(&mut m, a, b);
    trust(&mut m, b, x, 0.5);
    let msg = notice(&mut m, a, b, "tx-fake", json!({}));
    m.advance(HOUSEKEEPING_INTERVAL_MS);
    assert!(!m.trace.iter().any(|l| l.contains("antimatter")), "a notice alone plays no game");
    assert!(m.peers[b].node.take_payouts().is_empty());
    let plain = notice(&mut m, a, b, "tx-plain", json!({"antimatter_eligible": false}));
    assert!(matches!(verified(&mut m, b, &plain, ONE_SOL), Err(PaymentError::NotEligible(_))));
    verified(&mut m, b, &msg, ONE_SOL).unwrap();
    assert_eq!(m.peers[b].node.take_payouts().len(), 1);
    let again = notice(&mut m, a, b, "tx-fake", json!({}));
    assert!(matches!(verified(&mut m, b, &again, ONE_SOL), Err(PaymentError::Ledger(_))), "same transaction");
    assert!(matches!(verified(&mut m, b, "no-such-message", ONE_SOL), Err(PaymentError::UnknownMessage(_))));
    assert!(m.peers[b].node.take_payouts().is_empty());
}

/// T-F5: with the signal stuck at an unreachable veteran, a forged unsigned result naming another wallet
/// is refused and pays nothing; the watchdog then pays A's superagent once; a late result pays nothing.
#[test]
fn a_forged_result_is_not_paid_and_result_and_watchdog_pay_once() {
    let mut m = Mesh::new();
    let [x, b, a] = aged(&mut m, &["X", "B", "A"])[..] else { unreachable!() };
    connect(&mut m, b, x);
    connect(&mut m, a, b);
    trust(&mut m, b, x, 0.5);
    let msg = notice(&mut m, a, b, "tx1", json!({}));
    // No peer answers B's game (no match) and X never gets the signal.
    m.unreachable = vec![a, x];
    let id = verified(&mut m, b, &msg, ONE_SOL).unwrap();
    assert_eq!(m.peers[b].node.antimatter_flow(&id).unwrap().state, FlowState::Forwarded);
    let ip = m.peers[x].ip;
    let forged = json!({"signal_id": id, "destination_wallet": "Ma11ory1111111111111111111111111111111111111",
        "resolved_by": m.id(x), "resolution": "match"});
    let (status, body) =
        m.inject(b, Method::Post, "/__darkmatter__/antimatter_result", forged.to_string().as_bytes(), ip);
    assert_eq!(status, 403, "{body}");
    assert!(m.peers[b].node.take_payouts().is_empty(), "a forged result pays nothing");
    assert_eq!(m.peers[b].node.antimatter_flow(&id).unwrap().state, FlowState::Forwarded);
    m.advance((ANTIMATTER_SIGNAL_AGE_MAX_S + ANTIMATTER_WATCHDOG_GRACE_S) as u64 * 1000 + HOUSEKEEPING_INTERVAL_MS);
    let payouts = m.peers[b].node.take_payouts();
    assert_eq!(payouts.len(), 1, "the watchdog settles");
    assert_eq!(payouts[0].to_wallet, SUPERAGENT_WALLET);
    assert_eq!(m.peers[b].node.antimatter_flow(&id).unwrap().state, FlowState::Timeout);
    // X's real (unsigned, 0.5.3-style) result arrives late: nothing more is paid.
    let xw = wallet_of(&mut m, x);
    let late = json!({"signal_id": id, "destination_wallet": xw, "resolved_by": m.id(x),
        "resolution": "terminal"});
    let (status, body) =
        m.inject(b, Method::Post, "/__darkmatter__/antimatter_result", late.to_string().as_bytes(), ip);
    assert_eq!((status, &body["already_resolved"]), (200, &json!(true)), "{body}");
    assert!(m.peers[b].node.take_payouts().is_empty());
    m.advance(HOUSEKEEPING_INTERVAL_MS);
    assert!(m.peers[b].node.take_payouts().is_empty(), "the watchdog does not pay twice either");
}

/// An unsigned (0.5.3) result is honoured when it names a wallet one of our connections advertises.
#[test]
fn an_unsigned_result_naming_a_connections_wallet_is_paid() {
    let mut m = Mesh::new();
    let [x, b, a] = aged(&mut m, &["X", "B", "A"])[..] else { unreachable!() };
    connect(&mut m, b, x);
    connect(&mut m, a, b);
    trust(&mut m, b, x, 0.5);
    let msg = notice(&mut m, a, b, "tx1", json!({}));
    m.unreachable = vec![a, x];
    let id = verified(&mut m, b, &msg, ONE_SOL).unwrap();
    let ip = m.peers[x].ip;
    let xw = wallet_of(&mut m, x);
    let result = json!({"signal_id": id, "destination_wallet": xw, "resolved_by": m.id(x),
        "resolution": "terminal"});
    let (status, _) = m.inject(b, Method::Post, "/__darkmatter__/antimatter_result", result.to_string().as_bytes(), ip);
    assert_eq!(status, 200);
    let payouts = m.peers[b].node.take_payouts();
    assert_eq!(payouts.iter().map(|p| p.to_wallet.clone()).collect::<Vec<_>>(), vec![xw]);
}

/// The match endpoint answers 0.5.3's forms; a signal without our signed chain is refused.
#[test]
fn the_endpoints_answer_0_5_3_forms_and_refuse_unsigned_signals() {
    let mut m = Mesh::new();
    let [x, b] = aged(&mut m, &["X", "B"])[..] else { unreachable!() };
    connect(&mut m, b, x);
    let ip = m.peers[b].ip;
    let (status, body) = m.inject(x, Method::Post, "/__darkmatter__/antimatter_match", br#"{"n": 3}"#, ip);
    assert_eq!(status, 200);
    assert!(body["pick"].as_u64().unwrap() <= 3);
    let (status, body) = m.inject(x, Method::Post, "/__darkmatter__/antimatter_match", br#"{"n": 0}"#, ip);
    assert_eq!((status, body["error"].as_str()), (400, Some("Invalid n")));
    let signal = json!({"signal_id": "am-0123456789ab", "original_tx": "t", "sender_agent_id": m.id(b),
        "amount": "0.01", "token": "SOL", "token_decimals": 9, "callback_url": "http://b.test:8100/__darkmatter__/antimatter_result",
        "hops": 0, "max_hops": 10, "created_at": proto_core::time::format_iso(m.now.wall_us), "path": [m.id(b)]});
    let (status, _) = m.inject(x, Method::Post, "/__darkmatter__/antimatter_signal", signal.to_string().as_bytes(), ip);
    assert_eq!(status, 403, "no hop chain from a connection");
    let mut old = signal.clone();
    old["hops"] = json!(10);
    let (status, body) = m.inject(x, Method::Post, "/__darkmatter__/antimatter_signal", old.to_string().as_bytes(), ip);
    assert_eq!((status, body["error"].as_str()), (400, Some("Signal expired (max hops)")));
}

/// Issue 16: the node checks a payment notice as it arrives, through its wallet; a verified one starts
/// its signal with nobody reading the inbox, and a refused one starts nothing and says why.
#[test]
fn a_notice_nobody_reads_is_checked_as_it_arrives_and_starts_its_signal() {
    let mut m = Mesh::new();
    let [x, b, a] = aged(&mut m, &["X", "B", "A"])[..] else { unreachable!() };
    connect(&mut m, b, x);
    connect(&mut m, a, b);
    trust(&mut m, b, x, 0.5);
    let paid = notice(&mut m, a, b, "txpaid", json!({}));
    let forged = notice(&mut m, a, b, "txforged", json!({}));
    let checks = m.peers[b].checks.clone();
    assert_eq!(checks.len(), 2, "each notice is checked once, as it arrives");
    let key = format!("notice:{paid}");
    assert_eq!((checks[0].credit_key.as_str(), checks[0].tx_signature.as_str()), (key.as_str(), "txpaid"));
    assert_eq!(checks[0].payer_wallet, wallet_of(&mut m, a), "the payer is the sender's advertised wallet");
    let now = m.now;
    m.peers[b].node.handle_payment_checked(now, checks[0].id, proto_core::PaymentVerdict::Verified(ONE_SOL));
    m.peers[b].node.handle_payment_checked(now, checks[1].id, proto_core::PaymentVerdict::Refused("short".into()));
    m.advance(0);
    let payouts = m.peers[b].node.take_payouts();
    assert_eq!(payouts.len(), 1, "the verified notice's fee, and only it: {payouts:?}");
    assert_eq!(payouts[0].units, ONE_SOL / 100);
    let read = |m: &mut Mesh, id: &str| m.command(b, Command::GetMessage { message_id: id.into(), consume: false });
    let v = read(&mut m, &paid).unwrap();
    assert_eq!(v["payment_verified"], json!(true), "{v}");
    let v = read(&mut m, &forged).unwrap();
    assert_eq!((&v["payment_verified"], &v["payment_refusal"]), (&json!(false), &json!("short")));
    // An answer given twice changes nothing.
    m.peers[b].node.handle_payment_checked(now, checks[0].id, proto_core::PaymentVerdict::Verified(ONE_SOL));
    m.advance(0);
    assert!(m.peers[b].node.take_payouts().is_empty());
}

/// A wallet that cannot decide (RPC down) is asked again later, a bounded number of times.
#[test]
fn an_undecided_notice_is_checked_again_later() {
    let mut m = Mesh::new();
    let [b, a] = aged(&mut m, &["B", "A"])[..] else { unreachable!() };
    connect(&mut m, a, b);
    let id = notice(&mut m, a, b, "txlater", json!({}));
    for attempt in 1..=proto_core::limits::PAYMENT_CHECK_ATTEMPTS_MAX as usize {
        assert_eq!(m.peers[b].checks.len(), attempt, "attempt {attempt}");
        let check = m.peers[b].checks.last().unwrap().clone();
        let now = m.now;
        m.peers[b].node.handle_payment_checked(now, check.id, proto_core::PaymentVerdict::Unavailable("down".into()));
        m.advance(proto_core::limits::PAYMENT_RECHECK_MS);
    }
    assert_eq!(m.peers[b].checks.len(), proto_core::limits::PAYMENT_CHECK_ATTEMPTS_MAX as usize, "no more");
    let v = m.command(b, Command::GetMessage { message_id: id, consume: false }).unwrap();
    assert_eq!(v["payment_verified"], json!(false));
    assert!(v["payment_refusal"].as_str().unwrap().contains("down"), "{v}");
}
