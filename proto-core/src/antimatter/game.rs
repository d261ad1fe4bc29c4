//! One match game over 0.5.3's commit-reveal endpoint, both sides.
//!
//! [`Game`] is the orchestrator X: it commits to its pick, asks each eligible peer for a commitment,
//! reveals, checks every peer's reveal against its commitment, and decides by the SPEC's rule (a match
//! iff some peer picked X's number). N is fixed before the commits: a peer that fails to commit or
//! reveal lowers P(match), never the orchestrator's choice (R-F3).
//!
//! [`Sessions`] is the peer side (`/__darkmatter__/antimatter_match`): the same requests and error
//! texts as 0.5.3, sessions bounded in number (least recently used dropped) and in age. The endpoint is
//! rule-agnostic, so a 0.5.3 orchestrator can play its own rule with us.

use std::collections::BTreeMap;

use rand_core::RngCore;
use serde_json::{json, Value};
use thiserror::Error;

use super::{commitment, is_match, pick};
use crate::limits::{ANTIMATTER_N_MAX, ANTIMATTER_SESSIONS_MAX, ANTIMATTER_SESSION_TTL_MS};

/// Bytes of a commitment nonce.
pub const NONCE_BYTES: usize = 32;
/// Hex characters of a session token (16 random bytes, as 0.5.3's `uuid4().hex`).
pub const SESSION_TOKEN_HEX_LEN: usize = 32;

/// Why a match request is refused; the texts are 0.5.3's.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MatchError {
    /// `n` is missing, not an integer, below 1 or above [`ANTIMATTER_N_MAX`].
    #[error("Invalid n")]
    InvalidN,
    /// A commit without the orchestrator's commitment (or not 64 hex).
    #[error("Missing orchestrator_commitment")]
    MissingCommitment,
    /// A reveal for a session we do not hold (never made, expired, or dropped).
    #[error("Unknown or expired session")]
    UnknownSession,
    /// A reveal without the orchestrator's pick or nonce.
    #[error("Missing orchestrator reveal data")]
    MissingReveal,
    /// The orchestrator's reveal does not open its commitment.
    #[error("Orchestrator commitment verification failed")]
    CommitmentMismatch,
    /// A phase other than `commit` and `reveal`.
    #[error("Unknown phase: {0}")]
    UnknownPhase(String),
}

/// One peer's game with an orchestrator, between its commit and its reveal.
#[derive(Clone, Debug)]
struct Session {
    orchestrator_commitment: [u8; 32],
    n: u32,
    pick: u32,
    nonce: [u8; NONCE_BYTES],
    created_ms: u64,
    used: u64,
}

/// The peer side's sessions.
#[derive(Debug, Default)]
pub struct Sessions {
    by_token: BTreeMap<String, Session>,
    uses: u64,
}

fn hex32(v: Option<&Value>) -> Option<[u8; 32]> {
    let text = v?.as_str()?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

fn n_of(req: &Value) -> Result<u32, MatchError> {
    let n = req.get("n").and_then(Value::as_u64).ok_or(MatchError::InvalidN)?;
    match u32::try_from(n) {
        Ok(n) if (1..=ANTIMATTER_N_MAX).contains(&n) => Ok(n),
        _ => Err(MatchError::InvalidN),
    }
}

/// Whether answering `req` makes a commitment, and so needs a fresh nonce from the OS: only the
/// commit phase does (a reveal opens a session's nonce, the legacy form commits to nothing).
pub fn needs_nonce(req: &Value) -> bool {
    req.get("phase").and_then(Value::as_str) == Some("commit")
}

impl Sessions {
    /// Answers one match request at `now_ms`. Picks and session tokens come from `rng`; a new
    /// commitment's nonce is `nonce` (from the runtime's OS randomness, never a seeded generator).
    pub fn handle(
        &mut self,
        req: &Value,
        now_ms: u64,
        rng: &mut impl RngCore,
        nonce: [u8; NONCE_BYTES],
    ) -> Result<Value, MatchError> {
        self.expire(now_ms);
        match req.get("phase") {
            None | Some(Value::Null) => Ok(json!({ "pick": pick(rng, n_of(req)?) })),
            Some(Value::String(p)) if p == "commit" => self.commit(req, now_ms, rng, nonce),
            Some(Value::String(p)) if p == "reveal" => self.reveal(req),
            Some(other) => {
                Err(MatchError::UnknownPhase(other.as_str().map_or_else(|| other.to_string(), str::to_owned)))
            }
        }
    }

    fn commit(
        &mut self,
        req: &Value,
        now_ms: u64,
        rng: &mut impl RngCore,
        nonce: [u8; NONCE_BYTES],
    ) -> Result<Value, MatchError> {
        let n = n_of(req)?;
        let orchestrator_commitment = hex32(req.get("orchestrator_commitment")).ok_or(MatchError::MissingCommitment)?;
        let my_pick = pick(rng, n);
        let mut token = [0u8; SESSION_TOKEN_HEX_LEN / 2];
        rng.fill_bytes(&mut token);
        let token = hex::encode(token);
        if self.by_token.len() >= ANTIMATTER_SESSIONS_MAX {
            self.drop_least_recent();
        }
        self.uses += 1;
        let session = Session { orchestrator_commitment, n, pick: my_pick, nonce, created_ms: now_ms, used: self.uses };
        self.by_token.insert(token.clone(), session);
        Ok(json!({ "peer_commitment": hex::encode(commitment(my_pick, &nonce)), "session_token": token }))
    }

    fn reveal(&mut self, req: &Value) -> Result<Value, MatchError> {
        let token = req.get("session_token").and_then(Value::as_str).ok_or(MatchError::UnknownSession)?;
        if !self.by_token.contains_key(token) {
            return Err(MatchError::UnknownSession);
        }
        let their_pick = req.get("orchestrator_pick").and_then(Value::as_u64).and_then(|p| u32::try_from(p).ok());
        let their_nonce = hex32(req.get("orchestrator_nonce"));
        let (Some(their_pick), Some(their_nonce)) = (their_pick, their_nonce) else {
            return Err(MatchError::MissingReveal);
        };
        // The session is spent either way: a second reveal could otherwise probe our pick.
        let session = self.by_token.remove(token).ok_or(MatchError::UnknownSession)?;
        if commitment(their_pick, &their_nonce) != session.orchestrator_commitment || their_pick > session.n {
            return Err(MatchError::CommitmentMismatch);
        }
        Ok(json!({ "peer_pick": session.pick, "peer_nonce": hex::encode(session.nonce) }))
    }

    fn expire(&mut self, now_ms: u64) {
        self.by_token.retain(|_, s| now_ms.saturating_sub(s.created_ms) < ANTIMATTER_SESSION_TTL_MS);
    }

    fn drop_least_recent(&mut self) {
        if let Some(token) = self.by_token.iter().min_by_key(|(_, s)| s.used).map(|(t, _)| t.clone()) {
            self.by_token.remove(&token);
        }
    }

    /// Sessions held.
    pub fn len(&self) -> usize {
        self.by_token.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.by_token.is_empty()
    }
}

/// Where one peer of a game stands.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Play {
    Asked,
    Committed { commitment: [u8; 32], token: String },
    Revealing([u8; 32]),
    Revealed(u32),
    Out,
}

/// A peer's reveal did not open its commitment (0.5.3 takes −0.1 trust for it).
#[derive(Debug, Error, PartialEq, Eq)]
#[error("the peer's reveal does not open its commitment")]
pub struct Fraud;

/// The orchestrator's game.
#[derive(Clone, Debug)]
pub struct Game {
    n: u32,
    pick: u32,
    nonce: [u8; NONCE_BYTES],
    peers: BTreeMap<String, Play>,
}

impl Game {
    /// A game with `peers` (N = their number, fixed now); our pick from `rng`, our nonce from the OS.
    pub fn new(peers: Vec<String>, rng: &mut impl RngCore, nonce: [u8; NONCE_BYTES]) -> Self {
        let n = u32::try_from(peers.len()).unwrap_or(u32::MAX);
        let pick = pick(rng, n);
        Self { n, pick, nonce, peers: peers.into_iter().map(|p| (p, Play::Asked)).collect() }
    }

    /// N.
    pub fn n(&self) -> u32 {
        self.n
    }

    /// The commit request every peer gets.
    pub fn commit_request(&self, signal_id: &str) -> Value {
        json!({"phase": "commit", "signal_id": signal_id, "n": self.n,
            "orchestrator_commitment": hex::encode(commitment(self.pick, &self.nonce))})
    }

    /// A peer's answer to the commit request (`None`: it failed to answer).
    pub fn on_commit(&mut self, peer: &str, answer: Option<&Value>) {
        let Some(play) = self.peers.get_mut(peer).filter(|p| **p == Play::Asked) else { return };
        let c = answer.and_then(|a| hex32(a.get("peer_commitment")));
        let token =
            answer.and_then(|a| a.get("session_token")?.as_str()).filter(|t| t.len() <= 2 * SESSION_TOKEN_HEX_LEN);
        *play = match (c, token) {
            (Some(commitment), Some(t)) => Play::Committed { commitment, token: t.to_owned() },
            _ => Play::Out,
        };
    }

    /// Whether every peer has answered its commit request.
    pub fn commits_done(&self) -> bool {
        !self.peers.values().any(|p| *p == Play::Asked)
    }

    /// The reveal requests, one per peer that committed; from now on they await a reveal.
    pub fn reveal_requests(&mut self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for (peer, play) in self.peers.iter_mut() {
            if let Play::Committed { commitment, token } = play {
                out.push((
                    peer.clone(),
                    json!({"phase": "reveal", "session_token": token, "orchestrator_pick": self.pick,
                        "orchestrator_nonce": hex::encode(self.nonce)}),
                ));
                *play = Play::Revealing(*commitment);
            }
        }
        out
    }

    /// A peer's answer to our reveal (`None`: it failed to answer). A reveal that does not open the
    /// peer's commitment, or a pick outside `[0, N]`, is [`Fraud`] and the peer is out.
    pub fn on_reveal(&mut self, peer: &str, answer: Option<&Value>) -> Result<(), Fraud> {
        let Some(play) = self.peers.get_mut(peer) else { return Ok(()) };
        let Play::Revealing(committed) = *play else { return Ok(()) };
        let Some(answer) = answer else {
            *play = Play::Out;
            return Ok(());
        };
        let their_pick = answer.get("peer_pick").and_then(Value::as_u64).and_then(|p| u32::try_from(p).ok());
        let their_nonce = hex32(answer.get("peer_nonce"));
        match (their_pick, their_nonce) {
            (Some(p), Some(nonce)) if p <= self.n && commitment(p, &nonce) == committed => {
                *play = Play::Revealed(p);
                Ok(())
            }
            _ => {
                *play = Play::Out;
                Err(Fraud)
            }
        }
    }

    /// Whether every peer that committed has revealed (or failed to).
    pub fn reveals_done(&self) -> bool {
        !self.peers.values().any(|p| matches!(p, Play::Asked | Play::Committed { .. } | Play::Revealing(_)))
    }

    /// The SPEC's rule over the valid reveals.
    pub fn is_match(&self) -> bool {
        let picks: Vec<u32> =
            self.peers.values().filter_map(|p| if let Play::Revealed(v) = p { Some(*v) } else { None }).collect();
        is_match(self.pick, &picks)
    }

    /// Peers that answered the commit request: they are online (R-F3).
    pub fn answered(&self) -> impl Iterator<Item = &str> {
        self.peers.iter().filter(|(_, p)| !matches!(p, Play::Asked | Play::Out)).map(|(k, _)| k.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn nonce(b: u8) -> [u8; NONCE_BYTES] {
        [b; NONCE_BYTES]
    }

    /// A game against in-process peers speaking the endpoint: commit, reveal, decide.
    fn play_through_endpoint(rng: &mut ChaCha20Rng, n: usize, peers: &mut [Sessions]) -> bool {
        let names: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
        let mut game = Game::new(names.clone(), rng, nonce(7));
        let req = game.commit_request("am-x");
        for (i, name) in names.iter().enumerate() {
            let answer = peers[i].handle(&req, 0, rng, nonce(i as u8)).unwrap();
            game.on_commit(name, Some(&answer));
        }
        assert!(game.commits_done());
        for (peer, req) in game.reveal_requests() {
            let i: usize = peer[1..].parse().unwrap();
            let answer = peers[i].handle(&req, 1, rng, nonce(0)).unwrap();
            game.on_reveal(&peer, Some(&answer)).unwrap();
        }
        assert!(game.reveals_done());
        game.is_match()
    }

    /// T-F2 through the real code path: games with N in-process peers on the endpoint match with the
    /// closed form's probability (±0.5 pp over 40,000 games: 3σ ≈ 0.73 pp is the bound's scale).
    #[test]
    fn games_through_the_endpoint_match_as_often_as_the_closed_form_says() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        for n in [2usize, 5, 10] {
            let mut peers: Vec<Sessions> = (0..n).map(|_| Sessions::default()).collect();
            let games = 40_000;
            let matches = (0..games).filter(|_| play_through_endpoint(&mut rng, n, &mut peers)).count();
            let p = matches as f64 / games as f64;
            let want = super::super::p_match(n as u32);
            assert!((p - want).abs() < 0.0075, "N={n}: {p} vs {want}");
            assert!(peers.iter().all(Sessions::is_empty), "every session is spent by its reveal");
        }
    }

    #[test]
    fn the_endpoint_answers_0_5_3_errors() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let mut s = Sessions::default();
        let mut call = |req: Value, now: u64| s.handle(&req, now, &mut rng, nonce(1)).map_err(|e| e.to_string());
        assert_eq!(call(json!({"n": 0}), 0).unwrap_err(), "Invalid n");
        assert_eq!(call(json!({"n": ANTIMATTER_N_MAX + 1}), 0).unwrap_err(), "Invalid n");
        assert!(call(json!({"n": ANTIMATTER_N_MAX}), 0).unwrap()["pick"].as_u64().is_some(), "legacy form at the edge");
        assert_eq!(call(json!({"phase": "commit", "n": 3}), 0).unwrap_err(), "Missing orchestrator_commitment");
        assert_eq!(call(json!({"phase": "dance"}), 0).unwrap_err(), "Unknown phase: dance");
        assert_eq!(
            call(json!({"phase": "reveal", "session_token": "x"}), 0).unwrap_err(),
            "Unknown or expired session"
        );
        let c = hex::encode(commitment(2, &nonce(5)));
        let a = call(json!({"phase": "commit", "n": 3, "orchestrator_commitment": c}), 0).unwrap();
        let token = a["session_token"].as_str().unwrap().to_owned();
        assert_eq!(token.len(), SESSION_TOKEN_HEX_LEN);
        assert_eq!(
            call(json!({"phase": "reveal", "session_token": token}), 1).unwrap_err(),
            "Missing orchestrator reveal data"
        );
        let lie = json!({"phase": "reveal", "session_token": token, "orchestrator_pick": 1, "orchestrator_nonce": hex::encode(nonce(5))});
        assert_eq!(call(lie, 1).unwrap_err(), "Orchestrator commitment verification failed");
        let truth = json!({"phase": "reveal", "session_token": token, "orchestrator_pick": 2, "orchestrator_nonce": hex::encode(nonce(5))});
        assert_eq!(call(truth, 1).unwrap_err(), "Unknown or expired session", "a failed reveal spends the session");
    }

    #[test]
    fn only_a_commit_needs_a_nonce() {
        assert!(needs_nonce(&json!({"phase": "commit", "n": 2, "orchestrator_commitment": "00"})));
        assert!(!needs_nonce(&json!({"phase": "reveal", "session_token": "t"})));
        assert!(!needs_nonce(&json!({"n": 2})), "the legacy form");
        assert!(!needs_nonce(&json!({"phase": 7})));
    }

    #[test]
    fn sessions_expire_after_ten_seconds_and_are_bounded() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let mut s = Sessions::default();
        let c = hex::encode(commitment(0, &nonce(5)));
        let commit = json!({"phase": "commit", "n": 1, "orchestrator_commitment": c});
        let reveal = |t: &str| json!({"phase": "reveal", "session_token": t, "orchestrator_pick": 0, "orchestrator_nonce": hex::encode(nonce(5))});
        let t = s.handle(&commit, 0, &mut rng, nonce(1)).unwrap()["session_token"].as_str().unwrap().to_owned();
        assert!(s.handle(&reveal(&t), ANTIMATTER_SESSION_TTL_MS - 1, &mut rng, nonce(1)).is_ok(), "just in time");
        let t = s.handle(&commit, 0, &mut rng, nonce(1)).unwrap()["session_token"].as_str().unwrap().to_owned();
        assert_eq!(
            s.handle(&reveal(&t), ANTIMATTER_SESSION_TTL_MS, &mut rng, nonce(1)),
            Err(MatchError::UnknownSession)
        );
        let first = s.handle(&commit, 0, &mut rng, nonce(1)).unwrap()["session_token"].as_str().unwrap().to_owned();
        for _ in 0..ANTIMATTER_SESSIONS_MAX {
            s.handle(&commit, 1, &mut rng, nonce(1)).unwrap();
        }
        assert_eq!(s.len(), ANTIMATTER_SESSIONS_MAX);
        assert_eq!(
            s.handle(&reveal(&first), 2, &mut rng, nonce(1)),
            Err(MatchError::UnknownSession),
            "least recent dropped"
        );
    }

    #[test]
    fn a_reveal_that_does_not_open_its_commitment_is_fraud_and_does_not_count() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let mut game = Game::new(vec!["p".into(), "q".into()], &mut rng, nonce(7));
        game.on_commit(
            "p",
            Some(&json!({"peer_commitment": hex::encode(commitment(1, &nonce(1))), "session_token": "t"})),
        );
        game.on_commit("q", None);
        assert!(game.commits_done());
        assert_eq!(game.n(), 2, "N is not reduced by a peer that did not commit");
        assert_eq!(game.reveal_requests().len(), 1);
        assert_eq!(
            game.on_reveal("p", Some(&json!({"peer_pick": 2, "peer_nonce": hex::encode(nonce(1))}))),
            Err(Fraud)
        );
        assert!(game.reveals_done());
        assert!(!game.is_match(), "no valid reveal, no match");
        assert_eq!(game.answered().count(), 0);
    }
}
