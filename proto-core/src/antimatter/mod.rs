//! AntiMatter, the pure part that exists so far: the product SPEC's match game and its arithmetic.
//!
//! At each hop the orchestrator X picks `x` uniformly in `[0, N]` and each of its N eligible peers picks
//! `p_i` uniformly in `[0, N]`; the game is a match iff some `p_i = x`, so `P(match) = 1 − (N/(N+1))^N`
//! (55.6 % at N = 2, tending to `1 − 1/e` ≈ 63.2 %), and with a constant N per hop the mean number of
//! games until a match is `1/P(N)` (≈ 1.6). The picks travel under 0.5.3's commit-reveal
//! (`SHA-256(u32 BE pick ‖ 32-byte nonce)`); 0.5.3 itself decides a match by another rule (the XOR of all
//! picks ≡ 0 mod N+1, [`xor_rule_probability`]), kept here only to show the two differ.
//!
//! The fee is 1 % in integer base units, rounded down ([`fee`]). The owners of the rest, each sans-IO:
//! [`game`] (both sides of commit-reveal), [`signal`] (the wire forms and the signed hop chain),
//! [`veterans`] (tenure and the weighted draw), [`ledger`] (the persisted pay-once state machine,
//! accrual and `antimatter_log`), [`notice`] (the signed started notice and disagreement report) and
//! [`payer`] (the payer's wait for the started notice), [`reports`] (the daily bound on disagreement
//! reports per reporter).

pub mod game;
pub mod ledger;
pub mod notice;
pub mod payer;
pub mod reports;
pub mod signal;
pub mod veterans;

use rand_core::RngCore;
use sha2::{Digest, Sha256};

/// Trust given on success (SPEC §4.1): by the payee to the payer, and by the payer to the payee when
/// the payee tells it the signal started.
pub const TRUST_SUCCESS: f64 = 0.01;
/// Trust taken from a payer whose notice claims a rate other than 1 % (0.5.3's value), and the base of
/// the penalty propagated to the payee's peers, weighted by their trust in the reporter.
pub const TRUST_DISAGREEMENT_PENALTY: f64 = 0.02;
/// Trust a payer takes from a payee that got its payment notice and said nothing of a signal within
/// [`crate::limits::ANTIMATTER_STARTED_WAIT_S`].
pub const TRUST_NON_ROUTING_PENALTY: f64 = 0.05;
/// Trust taken from a peer whose reveal does not open its commitment (0.5.3's value).
pub const TRUST_COMMIT_FRAUD_PENALTY: f64 = 0.1;
/// How far a notice's rate may be from 1 % before it counts as a disagreement (0.5.3's value).
pub const RATE_TOLERANCE: f64 = 0.001;
/// The rate a notice should claim.
pub const RATE: f64 = 0.01;

/// The fee is `amount / FEE_DIVISOR` base units, rounded down: 1 % (the SPEC's rate).
pub const FEE_DIVISOR: u64 = 100;

/// The fee withheld from a payment of `amount` base units: 1 %, rounded down (never a float).
pub fn fee(amount: u64) -> u64 {
    amount / FEE_DIVISOR
}

/// `P(match)` of one game with `n` eligible peers: `1 − (n/(n+1))^n`; no peers, no match.
pub fn p_match(n: u32) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let n = f64::from(n);
    1.0 - (n / (n + 1.0)).powf(n)
}

/// Mean number of games until a match with `n` peers at every hop (no terminals, no timeout): `1/P`.
pub fn mean_games(n: u32) -> f64 {
    1.0 / p_match(n)
}

/// A uniform pick in `[0, n]`, without modulo bias (rejection sampling over `u32`).
pub fn pick(rng: &mut impl RngCore, n: u32) -> u32 {
    let range = u64::from(n) + 1;
    // The largest multiple of `range` that fits in 2^32; values at or above it are drawn again.
    let zone = (1u64 << 32) / range * range;
    loop {
        let v = u64::from(rng.next_u32());
        if v < zone {
            return (v % range) as u32;
        }
    }
}

/// The SPEC's rule: a match iff any peer picked the orchestrator's number.
pub fn is_match(orchestrator: u32, peers: &[u32]) -> bool {
    peers.contains(&orchestrator)
}

/// One game played with `rng` for the orchestrator and its `n` peers, through [`pick`] and [`is_match`].
pub fn play(rng: &mut impl RngCore, n: u32) -> bool {
    let x = pick(rng, n);
    let peers: Vec<u32> = (0..n).map(|_| pick(rng, n)).collect();
    is_match(x, &peers)
}

/// 0.5.3's commitment to a pick: `SHA-256(pick as u32 big-endian ‖ nonce)`.
pub fn commitment(pick: u32, nonce: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(pick.to_be_bytes());
    h.update(nonce);
    h.finalize().into()
}

/// The probability of 0.5.3's rule — the XOR of the orchestrator's and `n` peers' picks, each uniform in
/// `[0, n]`, is ≡ 0 mod `n + 1` — by exact convolution over XOR values. For the record only: it is not
/// the SPEC's game (it falls like `1/(n+1)`).
pub fn xor_rule_probability(n: u32) -> f64 {
    let range = n as usize + 1;
    let size = range.next_power_of_two();
    let one = 1.0 / range as f64;
    let mut dist = vec![0.0; size];
    for v in dist.iter_mut().take(range) {
        *v = one;
    }
    let single = dist.clone();
    for _ in 0..n {
        let mut next = vec![0.0; size];
        for (a, pa) in dist.iter().enumerate().filter(|(_, p)| **p > 0.0) {
            for (b, pb) in single.iter().enumerate().take(range) {
                next[a ^ b] += pa * pb;
            }
        }
        dist = next;
    }
    dist.iter().enumerate().filter(|(v, _)| v % range == 0).map(|(_, p)| p).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    /// T-F1: the closed form gives the SPEC's table (its "61.5 %" at N = 10 is 61.446 %).
    #[test]
    fn closed_form_reproduces_the_table() {
        for (n, percent) in
            [(1, 50.0), (2, 55.556), (3, 57.813), (5, 59.812), (10, 61.446), (50, 62.847), (100, 63.029)]
        {
            assert!((p_match(n) * 100.0 - percent).abs() < 0.001, "N={n}: {}", p_match(n) * 100.0);
        }
        assert!((p_match(1_000_000) - (1.0 - (-1.0f64).exp())).abs() < 1e-6, "tends to 1 − 1/e");
        assert_eq!(p_match(0), 0.0);
    }

    /// T-F2: a seeded Monte-Carlo of 10⁶ games through the real pick and match code is within ±0.15 pp.
    #[test]
    fn monte_carlo_through_the_game_code_agrees_with_the_closed_form() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        for n in [2, 5, 10, 50] {
            let trials = 1_000_000;
            let matches = (0..trials).filter(|_| play(&mut rng, n)).count();
            let measured = matches as f64 / trials as f64;
            assert!((measured - p_match(n)).abs() < 0.0015, "N={n}: {measured} vs {}", p_match(n));
        }
    }

    /// T-F3: with N peers at every hop, chains take `1/P(N)` games on average (≈ 1.6), within 1 %.
    #[test]
    fn mean_chain_length_is_one_over_p() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        for (n, expected) in [(2, 1.80), (5, 1.672), (10, 1.627), (50, 1.591)] {
            assert!((mean_games(n) - expected).abs() < 0.001, "N={n}: {}", mean_games(n));
            let chains = 200_000;
            let games: u64 = (0..chains)
                .map(|_| {
                    let mut games = 1;
                    while !play(&mut rng, n) {
                        games += 1;
                    }
                    games
                })
                .sum();
            let mean = games as f64 / chains as f64;
            assert!((mean / mean_games(n) - 1.0).abs() < 0.01, "N={n}: {mean}");
        }
        assert!((mean_games(1000) - 1.582).abs() < 0.001);
    }

    /// T-F4: 0.5.3's XOR rule, exactly — it is not the SPEC's game beyond N = 1.
    #[test]
    fn the_xor_rule_of_0_5_3_is_another_game() {
        for (n, percent) in [(1, 50.0), (2, 48.15), (3, 25.0), (5, 25.03), (10, 12.5), (50, 3.12)] {
            let p = xor_rule_probability(n) * 100.0;
            assert!((p - percent).abs() < 0.01, "n={n}: {p}");
        }
    }

    /// T-F5: 0.5.3's commitment vector.
    #[test]
    fn commitment_vector() {
        let nonce: [u8; 32] = core::array::from_fn(|i| i as u8);
        assert_eq!(
            hex::encode(commitment(2, &nonce)),
            "94d779b1e04efb3427ef0667e6154e8e666cedc34cd4aa0369cfcb87718cd172"
        );
    }

    #[test]
    fn fees_are_one_percent_rounded_down_in_base_units() {
        assert_eq!(fee(1_001_000_000), 10_010_000);
        assert_eq!(fee(99), 0);
        assert_eq!(fee(u64::MAX), u64::MAX / 100);
    }

    #[test]
    fn picks_cover_the_range_and_only_it() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let mut seen = [0u32; 4];
        for _ in 0..4_000 {
            seen[pick(&mut rng, 3) as usize] += 1;
        }
        assert!(seen.iter().all(|c| *c > 800), "{seen:?}");
        assert_eq!(pick(&mut rng, 0), 0);
        let _ = pick(&mut rng, u32::MAX); // the whole u32 range: no overflow, no endless redraw
    }
}
