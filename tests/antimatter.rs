//! AntiMatter routing (SPEC §21) through the real node code with in-process peers: a verified payment
//! starts one signal, games are played over `/antimatter_match`, the signal walks to veterans with a
//! signed hop chain, and the payee pays each fee exactly once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use darkmatter_tests::harness::Mesh;
use proto_core::antimatter::ledger::FlowState;
use proto_core::antimatter::notice::Disagreement;
use proto_core::antimatter::{p_match, TRUST_DISAGREEMENT_PENALTY, TRUST_NON_ROUTING_PENALTY, TRUST_SUCCESS};
use proto_core::limits::{
    ANTIMATTER_LOG_MAX, ANTIMATTER_REPORTS_PER_REPORTER_MAX, ANTIMATTER_SIGNAL_AGE_MAX_S, ANTIMATTER_STARTED_WAIT_S,
    ANTIMATTER_STATUS_RECENT_MAX, ANTIMATTER_WATCHDOG_GRACE_S, TRUST_VOUCHES_PER_PEER_MAX,
};
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

/// Node `at`'s impression score of node `of` (0 without one).
fn score(m: &mut Mesh, at: usize, of: usize) -> f64 {
    let agent_id = m.id(of);
    let view = m.command(at, Command::GetImpression { agent_id }).unwrap();
    view["score"].as_f64().unwrap_or(0.0)
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

/// The runtime's randomness, stood in for by a counter so that traces repeat (nonces change no
/// outcome: picks come from the node's generator).
struct Counter(AtomicU64);

impl proto_core::Entropy for Counter {
    fn fill(&self, buf: &mut [u8]) -> Result<(), String> {
        for chunk in buf.chunks_mut(8) {
            let v = self.0.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        Ok(())
    }
}

/// Gives node `i` the stand-in for the OS's randomness, as the production driver gives the real one.
fn entropy(m: &mut Mesh, i: usize) {
    m.peers[i].node.set_entropy(Arc::new(Counter(AtomicU64::new(i as u64 * 1_000_000))));
}

/// Nodes created a day apart, oldest first, each with randomness for its commitments; returns their
/// indices.
fn aged(m: &mut Mesh, names: &[&str]) -> Vec<usize> {
    names
        .iter()
        .map(|n| {
            let i = m.add(n, true);
            entropy(m, i);
            m.advance(DAY_MS);
            i
        })
        .collect()
}

/// Nodes like [`aged`], but without the OS's randomness (as the simulator's nodes without its source).
fn aged_without_entropy(m: &mut Mesh, names: &[&str]) -> Vec<usize> {
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

/// The fee never goes back to its payer: A is B's only older, trusted connection, so B is terminal and
/// keeps the fee (without the rule, every signal here paid A its own 1 % back).
#[test]
fn a_payer_is_never_its_own_fees_veteran() {
    let mut m = Mesh::new();
    let [a, b] = aged(&mut m, &["A", "B"])[..] else { unreachable!() };
    connect(&mut m, a, b);
    trust(&mut m, b, a, 0.9);
    for round in 0..10 {
        let msg = notice(&mut m, a, b, &format!("tx{round}"), json!({}));
        let id = verified(&mut m, b, &msg, ONE_SOL).expect("a verified payment starts a signal");
        assert!(m.peers[b].node.take_payouts().is_empty(), "round {round}: paid back to its payer");
        assert_eq!(m.peers[b].node.antimatter_flow(&id).unwrap().state, FlowState::Kept, "round {round}");
        m.advance(60_000);
    }
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

/// SPEC §21.3: commitment nonces come from the OS only. A payee without it plays no game and keeps the
/// fee (once: the payment stays started); a peer without it refuses to commit (503) and to take a
/// signal, but still answers the legacy form, which commits to nothing.
#[test]
fn a_node_without_os_randomness_plays_no_game_and_keeps_the_fee() {
    let mut m = Mesh::new();
    let [x, b, a] = aged_without_entropy(&mut m, &["X", "B", "A"])[..] else { unreachable!() };
    connect(&mut m, b, x);
    connect(&mut m, a, b);
    trust(&mut m, b, x, 0.5);
    let msg = notice(&mut m, a, b, "tx1", json!({}));
    let id = verified(&mut m, b, &msg, ONE_SOL).expect("the payment is taken");
    assert!(!m.trace.iter().any(|l| l.contains("antimatter_match")), "no commit was sent");
    assert!(m.peers[b].node.take_payouts().is_empty(), "B keeps the fee");
    assert_eq!(m.peers[b].node.antimatter_flow(&id).unwrap().state, FlowState::Kept);
    let log = m.peers[b].node.antimatter_log();
    assert!(log.iter().any(|e| e.kind == "antimatter_no_game"), "{log:?}");
    let again = notice(&mut m, a, b, "tx1", json!({}));
    assert!(matches!(verified(&mut m, b, &again, ONE_SOL), Err(PaymentError::Ledger(_))), "started once");
    let ip = m.peers[b].ip;
    let commit = json!({"phase": "commit", "signal_id": "am-0123456789ab", "n": 2,
        "orchestrator_commitment": "00".repeat(32)});
    let (status, body) =
        m.inject(x, Method::Post, "/__darkmatter__/antimatter_match", commit.to_string().as_bytes(), ip);
    assert_eq!(status, 503, "{body}");
    let (status, _) = m.inject(x, Method::Post, "/__darkmatter__/antimatter_match", br#"{"n": 2}"#, ip);
    assert_eq!(status, 200, "the legacy form needs no nonce");
    // With the randomness given, the same peer commits.
    entropy(&mut m, x);
    let (status, body) =
        m.inject(x, Method::Post, "/__darkmatter__/antimatter_match", commit.to_string().as_bytes(), ip);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["session_token"].as_str().map(str::len), Some(32));
}

/// R-F7: the payee tells the payer its signal started (signed); the payer's trust in it rises by the
/// success delta, and nothing more happens when the wait ends.
#[test]
fn a_started_notice_raises_the_payers_trust_in_the_payee() {
    let mut m = Mesh::new();
    let [x, b, a] = aged(&mut m, &["X", "B", "A"])[..] else { unreachable!() };
    connect(&mut m, b, x);
    connect(&mut m, a, b);
    trust(&mut m, b, x, 0.5);
    let msg = notice(&mut m, a, b, "tx1", json!({}));
    let before = score(&mut m, a, b);
    verified(&mut m, b, &msg, ONE_SOL).unwrap();
    assert_eq!(m.trace.iter().filter(|l| l.contains("/__darkmatter__/antimatter_started")).count(), 1);
    let after = score(&mut m, a, b);
    assert!((after - (before + TRUST_SUCCESS * (1.0 - before))).abs() < 1e-9, "{before} → {after}");
    assert!(m.peers[a].node.antimatter_log().iter().any(|e| e.kind == "antimatter_started"));
    m.advance(ANTIMATTER_STARTED_WAIT_S as u64 * 1000 + 2 * HOUSEKEEPING_INTERVAL_MS);
    assert_eq!(score(&mut m, a, b), after, "no penalty once the notice came");
}

/// A payment whose 1 % is zero base units starts no signal, so its payer awaits none; nor does it await
/// one for a notice whose amount it cannot read.
#[test]
fn a_payment_without_a_fee_is_not_awaited() {
    let mut m = Mesh::new();
    let [b, a] = aged(&mut m, &["B", "A"])[..] else { unreachable!() };
    connect(&mut m, a, b);
    notice(&mut m, a, b, "tx-dust", json!({"amount": "0.000000099"}));
    notice(&mut m, a, b, "tx-float-dust", json!({"amount": 0.000000099}));
    notice(&mut m, a, b, "tx-junk", json!({"amount": "lots"}));
    assert_eq!(m.command(a, Command::AntiMatterLog).unwrap()["awaited_payments"], json!(0));
    notice(&mut m, a, b, "tx-fee", json!({"amount": "0.0000001"}));
    assert_eq!(m.command(a, Command::AntiMatterLog).unwrap()["awaited_payments"], json!(1), "100 lamports: fee 1");
}

/// R-F7: a payee that got the notice and started nothing loses the non-routing penalty when the ten
/// minutes are over, not before; a restart of the payer in between forgets nothing.
#[test]
fn a_payee_that_starts_no_signal_loses_trust_after_the_wait_even_across_a_restart() {
    let mut m = Mesh::new();
    let [b, a] = aged(&mut m, &["B", "A"])[..] else { unreachable!() };
    connect(&mut m, a, b);
    notice(&mut m, a, b, "tx1", json!({}));
    let before = score(&mut m, a, b);
    m.advance(ANTIMATTER_STARTED_WAIT_S as u64 * 1000 / 2);
    m.restart(a);
    m.advance(ANTIMATTER_STARTED_WAIT_S as u64 * 1000 / 2 - HOUSEKEEPING_INTERVAL_MS);
    assert_eq!(score(&mut m, a, b), before, "still waiting");
    m.advance(2 * HOUSEKEEPING_INTERVAL_MS);
    let after = score(&mut m, a, b);
    let expected = before - TRUST_NON_ROUTING_PENALTY * (1.0 + before);
    assert!((after - expected).abs() < 1e-9, "{before} → {after}, expected {expected}");
    assert!(m.peers[a].node.antimatter_log().iter().any(|e| e.kind == "antimatter_not_routed"));
    m.advance(ANTIMATTER_STARTED_WAIT_S as u64 * 1000);
    assert_eq!(score(&mut m, a, b), after, "blamed once");
}

/// R-F7: the started notice survives the payer's restart; only the payee's own, fresh, signed notice
/// counts (another connection's is refused, a replay is refused), and a notice that never reached the
/// payee blames nobody.
#[test]
fn only_the_payees_signed_notice_counts_and_an_undelivered_payment_blames_nobody() {
    let mut m = Mesh::new();
    let [c, b, a] = aged(&mut m, &["C", "B", "A"])[..] else { unreachable!() };
    connect(&mut m, a, b);
    connect(&mut m, a, c);
    let msg = notice(&mut m, a, b, "tx1", json!({}));
    m.restart(a);
    let before = score(&mut m, a, b);
    // C (a connection of A) claims to have started B's signal: not its payment.
    let ip = m.peers[c].ip;
    let stamp = proto_core::time::format_iso(m.now.wall_us);
    let mut forged = proto_core::antimatter::notice::Started {
        from_agent_id: m.id(c),
        to_agent_id: m.id(a),
        signal_id: "am-0123456789ab".into(),
        tx_signature: "tx1".into(),
        timestamp: stamp,
        dm_signature_hex: String::new(),
    };
    let c_before = score(&mut m, a, c);
    let unsigned = serde_json::to_vec(&forged).unwrap();
    let (status, _) = m.inject(a, Method::Post, "/__darkmatter__/antimatter_started", &unsigned, ip);
    assert_eq!(status, 400, "no signature");
    forged.sign(&proto_core::crypto::Ed25519, &proto_core::Passport::from_seed(m.peers[c].seed));
    let signed = serde_json::to_vec(&forged).unwrap();
    let (status, _) = m.inject(a, Method::Post, "/__darkmatter__/antimatter_started", &signed, ip);
    assert_eq!(status, 404, "C's notice ends nothing");
    assert_eq!(score(&mut m, a, c), c_before, "C gains nothing");
    let (status, _) = m.inject(a, Method::Post, "/__darkmatter__/antimatter_started", &signed, ip);
    assert_eq!(status, 409, "a replay");
    // B's real notice, after A's restart.
    verified(&mut m, b, &msg, ONE_SOL).unwrap();
    assert!(score(&mut m, a, b) > before, "the expectation survived the restart");
    // A notice that never reached its payee: nobody is blamed when the wait ends.
    m.unreachable = vec![b];
    notice(&mut m, a, b, "tx2", json!({}));
    let before = score(&mut m, a, b);
    m.advance(ANTIMATTER_STARTED_WAIT_S as u64 * 1000 + 2 * HOUSEKEEPING_INTERVAL_MS);
    assert!(score(&mut m, a, b) >= before - 0.006, "only the failed delivery's own delta");
    assert!(!m.peers[a].node.antimatter_log().iter().any(|e| e.kind == "antimatter_not_routed"));
}

/// A disagreement report of `from` about `subject` for `to`, signed by `from` (as its node would).
fn report(m: &Mesh, from: usize, to: usize, subject: &str, tx: &str) -> Vec<u8> {
    let mut d = Disagreement {
        from_agent_id: m.id(from),
        to_agent_id: m.id(to),
        subject_agent_id: subject.to_owned(),
        tx_signature: tx.to_owned(),
        rate: "0.05".into(),
        timestamp: proto_core::time::format_iso(m.now.wall_us),
        dm_signature_hex: String::new(),
    };
    d.sign(&proto_core::crypto::Ed25519, &proto_core::Passport::from_seed(m.peers[from].seed));
    serde_json::to_vec(&d).unwrap()
}

/// R-F7 and the SPEC's §4.2: a notice claiming 5 % costs its payer 0.02 at the payee, and the payee's
/// signed report costs it `0.02 × trust(payee)` at each of the payee's connections that trusts the
/// payee; a connection that does not trust it, and the payer itself, change nothing.
#[test]
fn a_rate_disagreement_is_reported_to_the_payees_connections_weighted_by_their_trust() {
    let mut m = Mesh::new();
    let [x, c, d, b, a] = aged(&mut m, &["X", "C", "D", "B", "A"])[..] else { unreachable!() };
    connect(&mut m, b, x);
    connect(&mut m, c, b);
    connect(&mut m, d, b);
    connect(&mut m, a, b);
    connect(&mut m, c, a);
    trust(&mut m, b, x, 0.5);
    trust(&mut m, c, b, 0.5);
    trust(&mut m, d, b, -0.3);
    let (at_c, at_d) = (score(&mut m, c, a), score(&mut m, d, a));
    let b_at_a = score(&mut m, a, b);
    let msg = notice(&mut m, a, b, "tx1", json!({"antimatter_rate": 0.05}));
    let a_at_b = score(&mut m, b, a);
    verified(&mut m, b, &msg, ONE_SOL).unwrap();
    assert!((score(&mut m, b, a) - (a_at_b - TRUST_DISAGREEMENT_PENALTY * (1.0 + a_at_b))).abs() < 1e-9);
    let reports = m.trace.iter().filter(|l| l.contains("/__darkmatter__/antimatter_disagreement")).count();
    assert!(reports >= 3, "to C, D and X, not to A:\n{}", m.trace.join("\n"));
    let loss = TRUST_DISAGREEMENT_PENALTY * 0.5;
    let want = at_c - loss * (1.0 + at_c);
    assert!((score(&mut m, c, a) - want).abs() < 1e-9, "C trusts B at 0.5: {} vs {want}", score(&mut m, c, a));
    assert_eq!(score(&mut m, d, a), at_d, "D does not trust B: the report weighs nothing");
    assert!(score(&mut m, a, b) >= b_at_a, "A got no report about itself");
    let detail = m.command(c, Command::GetImpression { agent_id: m.id(a) }).unwrap();
    assert_eq!(detail["first_hand"], json!(false), "the report is hearsay: C never dealt with A itself");
}

/// A report is signed, fresh, once, from a connection; one about ourselves is ignored; a reporter's
/// reports about more subjects than its vouch budget weigh nothing, and more reports than the daily
/// bound are refused.
#[test]
fn disagreement_reports_are_authenticated_budgeted_and_bounded() {
    let mut m = Mesh::new();
    let [c, b, s] = aged(&mut m, &["C", "B", "S"])[..] else { unreachable!() };
    connect(&mut m, c, b);
    trust(&mut m, c, b, 0.5);
    let ip = m.peers[b].ip;
    let path = "/__darkmatter__/antimatter_disagreement";
    let about_s = report(&m, b, c, &m.id(s), "tx0");
    let mut unsigned: Value = serde_json::from_slice(&about_s).unwrap();
    unsigned["dm_signature_hex"] = json!("00".repeat(64));
    assert_eq!(m.inject(c, Method::Post, path, unsigned.to_string().as_bytes(), ip).0, 403, "bad signature");
    let stranger = report(&m, s, c, &m.id(b), "tx0");
    assert_eq!(m.inject(c, Method::Post, path, &stranger, ip).0, 403, "not a connection");
    let (status, body) = m.inject(c, Method::Post, path, &report(&m, b, c, &m.id(c), "tx0"), ip);
    assert_eq!((status, &body["applied"]), (200, &json!(false)), "about ourselves");
    let (status, body) = m.inject(c, Method::Post, path, &about_s, ip);
    assert_eq!((status, &body["applied"]), (200, &json!(true)), "{body}");
    assert!(score(&mut m, c, s) < 0.0);
    assert_eq!(m.inject(c, Method::Post, path, &about_s, ip).0, 409, "a replay");
    m.advance(1);
    // Reports about further subjects: within the budget they count, beyond it they weigh nothing.
    let subjects: Vec<String> = (0..ANTIMATTER_REPORTS_PER_REPORTER_MAX)
        .map(|k| proto_core::Passport::from_seed([200 + k as u8; 32]).agent_id().to_string())
        .collect();
    let mut taken = 1; // the one about S (the one about ourselves was ignored before counting)
    for (k, subject) in subjects.iter().enumerate() {
        let (status, body) = m.inject(c, Method::Post, path, &report(&m, b, c, subject, &format!("tx{k}")), ip);
        if taken >= ANTIMATTER_REPORTS_PER_REPORTER_MAX {
            assert_eq!(status, 429, "report {k}: beyond the daily bound");
            continue;
        }
        taken += 1;
        assert_eq!(status, 200, "{body}");
        // S and subjects[0] are within the budget of TRUST_VOUCHES_PER_PEER_MAX subjects.
        let within = k + 1 < TRUST_VOUCHES_PER_PEER_MAX;
        assert_eq!(body["applied"], json!(within), "report {k}");
    }
    assert!(taken == ANTIMATTER_REPORTS_PER_REPORTER_MAX);
}

/// R-F10: the log (0.5.3's names, ISO timestamps) is a command away, and the status report carries its
/// counts and newest few events once there are any (and nothing before).
#[test]
fn the_log_is_shown_in_status_compactly_and_whole_by_its_command() {
    let mut m = Mesh::new();
    let [x, b, a] = aged(&mut m, &["X", "B", "A"])[..] else { unreachable!() };
    connect(&mut m, b, x);
    connect(&mut m, a, b);
    trust(&mut m, b, x, 0.5);
    assert!(m.command(b, Command::Status).unwrap().get("antimatter").is_none(), "nothing to show yet");
    let empty = m.command(b, Command::AntiMatterLog).unwrap();
    assert_eq!(empty["antimatter_log"], json!([]));
    for round in 0..40 {
        let msg = notice(&mut m, a, b, &format!("tx{round}"), json!({}));
        verified(&mut m, b, &msg, ONE_SOL).unwrap();
        m.peers[b].node.take_payouts();
        m.advance(60_000);
    }
    let status = m.command(b, Command::Status).unwrap();
    let am = &status["antimatter"];
    assert_eq!(am["recent"].as_array().unwrap().len(), ANTIMATTER_STATUS_RECENT_MAX, "{am}");
    assert_eq!(am["open_signals"], json!(0));
    let whole = m.command(b, Command::AntiMatterLog).unwrap();
    let log = whole["antimatter_log"].as_array().unwrap();
    assert_eq!(log.len(), ANTIMATTER_LOG_MAX, "40 payments log more than the bound keeps");
    assert_eq!(log[log.len() - 1], am["recent"][ANTIMATTER_STATUS_RECENT_MAX - 1], "the same newest event");
    let counted: u64 = whole["events"].as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(counted as usize, ANTIMATTER_LOG_MAX, "counts are over the kept log");
    assert!(whole["events"]["antimatter_initiated"].as_u64().unwrap() > 0);
    assert!(whole["events"].get("forwarded").is_some(), "0.5.3's name: {}", whole["events"]);
    assert!(log.iter().all(|e| proto_core::time::parse_iso(e["timestamp"].as_str().unwrap()).is_some()));
    // A's side: the started notices it received.
    let payer = m.command(a, Command::AntiMatterLog).unwrap();
    assert_eq!(payer["events"]["antimatter_started"], json!(40));
    assert_eq!(payer["awaited_payments"], json!(0));
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
