//! Veterans (R-F5): who may receive a fee or the next hop, and the weighted draw among them.
//!
//! Who is older can only be read from a peer's own claim (`created_at`; a future one counts as now):
//! we cannot have seen anyone before we existed, so a tenure bounded by our own record could never
//! exceed ours. The claim therefore decides eligibility, and the weight uses the tenure we can check —
//! the smaller of the claimed age and the time since we first saw the peer — so an agent that claims an
//! old `created_at` is eligible but weighs what we have seen of it, until it has been around.

use rand_core::RngCore;

/// One connection as veteran choice sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// The peer.
    pub agent_id: String,
    /// Its self-reported creation (wall µs), if it gave one we could read.
    pub created_us: Option<i64>,
    /// When we first saw it (wall µs, our record).
    pub first_seen_us: i64,
    /// Our impression of it.
    pub score: f64,
    /// Active recently, or answered this game's commit request.
    pub online: bool,
    /// It advertises a wallet for the fee's currency.
    pub wallet: Option<String>,
}

/// Tenure in seconds: the smaller of the age it claims (never beyond now) and the age we saw.
pub fn tenure_s(now_us: i64, created_us: Option<i64>, first_seen_us: i64) -> i64 {
    let seen = now_us.saturating_sub(first_seen_us);
    let claimed = created_us.map_or(seen, |c| now_us.saturating_sub(c.min(now_us)));
    (seen.min(claimed) / 1_000_000).max(0)
}

/// A veteran of ours, drawn at random weighted by `tenure × score` (tenure at least one second) among the
/// candidates created before `my_created_us`, trusted (score > 0), online, not in `path` and with a
/// wallet; `None` = terminal.
pub fn choose<'a>(
    rng: &mut impl RngCore,
    now_us: i64,
    my_created_us: i64,
    candidates: &'a [Candidate],
    path: &[String],
) -> Option<&'a Candidate> {
    let weighted: Vec<(&Candidate, f64)> = candidates
        .iter()
        .filter(|c| c.score > 0.0 && c.online && c.wallet.is_some() && !path.contains(&c.agent_id))
        .filter(|c| c.created_us.is_some_and(|t| t.min(now_us) < my_created_us.min(now_us)))
        .map(|c| (c, tenure_s(now_us, c.created_us, c.first_seen_us).max(1) as f64 * c.score))
        .collect();
    let total: f64 = weighted.iter().map(|(_, w)| w).sum();
    if weighted.is_empty() || total <= 0.0 || !total.is_finite() {
        return None;
    }
    // A uniform point in [0, total): 53 random bits, the precision of an f64.
    let mut point = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
    for (c, w) in &weighted {
        if point < *w {
            return Some(c);
        }
        point -= w;
    }
    weighted.last().map(|(c, _)| *c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    const DAY_US: i64 = 86_400_000_000;

    fn cand(id: &str, created_days_ago: i64, seen_days_ago: i64, score: f64) -> Candidate {
        let now = 100 * DAY_US;
        Candidate {
            agent_id: id.into(),
            created_us: Some(now - created_days_ago * DAY_US),
            first_seen_us: now - seen_days_ago * DAY_US,
            score,
            online: true,
            wallet: Some("W".into()),
        }
    }

    #[test]
    fn tenure_is_bounded_by_what_we_saw_and_never_by_a_future_claim() {
        let now = 100 * DAY_US;
        assert_eq!(tenure_s(now, Some(0), now - DAY_US), 86_400, "an old claim does not beat our record");
        assert_eq!(tenure_s(now, Some(now - DAY_US), 0), 86_400, "a young claim is believed");
        assert_eq!(tenure_s(now, Some(now + DAY_US), 0), 0, "a future claim counts as now");
        assert_eq!(tenure_s(now, None, now - DAY_US), 86_400);
    }

    #[test]
    fn only_older_trusted_online_walleted_peers_off_the_path_are_chosen() {
        let now = 100 * DAY_US;
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let my_created = now - 10 * DAY_US;
        let mut offline = cand("offline", 50, 50, 0.5);
        offline.online = false;
        let mut walletless = cand("walletless", 50, 50, 0.5);
        walletless.wallet = None;
        let others = vec![
            cand("young", 5, 5, 0.9),
            cand("distrusted", 50, 50, 0.0),
            offline,
            walletless,
            cand("visited", 50, 50, 0.5),
        ];
        let path = vec!["visited".to_owned()];
        assert_eq!(choose(&mut rng, now, my_created, &others, &path), None, "terminal");
        let mut all = others.clone();
        all.push(cand("elder", 50, 50, 0.5));
        for _ in 0..100 {
            assert_eq!(choose(&mut rng, now, my_created, &all, &path).unwrap().agent_id, "elder");
        }
        // Claiming 90 days after being seen for one: eligible, but weighs 1 × 0.9 against 50 × 0.5.
        all.push(cand("liar", 90, 1, 0.9));
        let liar = (0..10_000).filter(|_| choose(&mut rng, now, my_created, &all, &path).unwrap().agent_id == "liar");
        let share = liar.count() as f64 / 10_000.0;
        assert!((share - 0.9 / 25.9).abs() < 0.01, "{share}");
    }

    #[test]
    fn the_draw_is_weighted_by_tenure_times_score() {
        let now = 100 * DAY_US;
        let mut rng = ChaCha20Rng::seed_from_u64(6);
        // Weights 20 × 0.5 = 10 and 40 × 0.75 = 30: the second is chosen three times as often.
        let c = vec![cand("a", 20, 20, 0.5), cand("b", 40, 40, 0.75)];
        let draws = 40_000;
        let b = (0..draws).filter(|_| choose(&mut rng, now, now, &c, &[]).unwrap().agent_id == "b").count();
        assert!((b as f64 / draws as f64 - 0.75).abs() < 0.01, "{b}");
    }
}
