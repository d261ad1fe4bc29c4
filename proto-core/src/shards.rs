//! Knowledge shards: signed, trust-gated units of knowledge that sync to qualifying peers.
//!
//! Sync, not a one-time push (0.5.3 pushes once at creation): an author's shard reaches every
//! connected peer whose trust meets its threshold when it is created, updated or deleted, when a
//! peer's trust rises past the threshold, and when a new peer connects; updates and deletions also go
//! to every peer that ever received it. Receivers re-check the author's signature and their *own*
//! trust in the author, and drop their copy when the author's newer version no longer qualifies them.
//!
//! Between nodes of this project each push is signed by the author in our form over every field, the
//! receiver and the push time: it is fresh within the window and never replayed, so nobody can relay
//! an old version. Toward 0.5.3 peers the author also signs 0.5.3's form (`shard_id, author, content,
//! sorted tags`) when the content has no newline (a newline would make that form ambiguous). A shard
//! received in 0.5.3's form is kept as first received: its summary and threshold are not signed there,
//! so later copies of it (from anyone) change nothing, and its summary is not shown.
//!
//! Caches expire [`SHARD_CACHE_TTL_S`] after the author last sent the shard; authors re-send their
//! shards in rounds that start at most every [`SHARD_REFRESH_INTERVAL_MS`] (a quarter of the TTL),
//! at most [`SHARD_REFRESH_BATCH_MAX`] pushes per housekeeping tick, so a cached
//! shard lives as long as its author stays connected and trusting. Our own tombstones are re-sent the
//! same way until the TTL has passed, then forgotten.
//!
//! Cache eviction order when full: expired first, then shards whose author we trust least, then the
//! least recently updated.

use crate::limits::{
    CONTENT_CHARS_MAX, SHARD_CACHE_TTL_S, SHARD_SUMMARY_CHARS_MAX, SHARD_TAGS_MAX, SHARD_TAG_CHARS_MAX,
};
use crate::sign::{self, DOMAIN_SHARD, V2_SHARD};
use crate::store::Shard;

/// Pushes the round-robin refresh may start in one housekeeping tick.
pub const SHARD_REFRESH_BATCH_MAX: usize = 64;
/// A refresh round starts at most this often (a quarter of the TTL), in milliseconds: each round
/// costs every receiver a signature check and a commit per shard, so it is paced to the TTL.
pub const SHARD_REFRESH_INTERVAL_MS: u64 = SHARD_CACHE_TTL_S * 1000 / 4;
/// Shards pushed at once to a peer that just connected (the rest follow with the refresh).
pub const SHARD_CONNECT_PUSH_MAX: usize = 64;

/// A new or updated shard from the agent.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardArgs {
    /// Body, 1..=[`CONTENT_CHARS_MAX`] characters.
    pub content: String,
    /// 1..=[`SHARD_TAGS_MAX`] tags.
    pub tags: Vec<String>,
    /// 0..1.
    pub trust_threshold: f64,
    /// Optional summary.
    pub summary: Option<String>,
}

/// 0.5.3's `tags_str`: tags sorted by code point and joined with commas.
pub fn tags_str(tags: &[String]) -> String {
    let mut sorted: Vec<&str> = tags.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.join(",")
}

pub(crate) fn key(author: &str, shard_id: &str) -> String {
    format!("{author}/{shard_id}")
}

/// Our signed form of one push: every shard field, the receiver and the push time.
pub(crate) fn v2_bytes(s: &Shard, to: &str, pushed_at: &str) -> Vec<u8> {
    let threshold = s.trust_threshold.to_string();
    let tags = serde_json::to_string(&s.tags).expect("strings serialise");
    let deleted = if s.deleted { "1" } else { "0" };
    sign::v2_bytes(
        V2_SHARD,
        &[
            &s.shard_id,
            &s.author,
            &s.content,
            &tags,
            &threshold,
            s.summary.as_deref().unwrap_or(""),
            &s.created_at,
            &s.updated_at,
            deleted,
            to,
            pushed_at,
        ],
    )
}

pub(crate) fn legacy_bytes(shard_id: &str, author: &str, content: &str, tags: &[String]) -> Option<Vec<u8>> {
    sign::domain_bytes(DOMAIN_SHARD, &[shard_id, author, content, &tags_str(tags)]).ok()
}

/// Checks tags, threshold, content and summary; returns why not.
pub(crate) fn validate(content: &str, tags: &[String], threshold: f64, summary: Option<&str>) -> Result<(), String> {
    let n = content.chars().count();
    if n == 0 || n > CONTENT_CHARS_MAX {
        return Err(format!("content must be 1..={CONTENT_CHARS_MAX} characters (got {n})"));
    }
    if tags.is_empty() || tags.len() > SHARD_TAGS_MAX {
        return Err(format!("tags must have 1..={SHARD_TAGS_MAX} entries"));
    }
    for t in tags {
        let c = t.chars().count();
        if c == 0 || c > SHARD_TAG_CHARS_MAX || t.contains([',', '\n']) {
            return Err(format!("each tag must be 1..={SHARD_TAG_CHARS_MAX} characters without commas or newlines"));
        }
    }
    if !threshold.is_finite() || !(0.0..=1.0).contains(&threshold) {
        return Err("trust_threshold must be within 0.0..1.0".to_owned());
    }
    if summary.is_some_and(|s| s.chars().count() > SHARD_SUMMARY_CHARS_MAX) {
        return Err(format!("summary must be at most {SHARD_SUMMARY_CHARS_MAX} characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_sort_by_code_point() {
        assert_eq!(tags_str(&["zeta".into(), "alpha".into(), "Beta".into()]), "Beta,alpha,zeta");
    }

    #[test]
    fn validation_edges() {
        let tags = vec!["t".to_owned()];
        assert!(validate("x", &tags, 0.0, None).is_ok());
        assert!(validate("x", &tags, 1.0, None).is_ok());
        assert!(validate("x", &tags, 1.01, None).is_err());
        assert!(validate("x", &[], 0.0, None).is_err());
        assert!(validate("x", &vec!["t".to_owned(); SHARD_TAGS_MAX], 0.0, None).is_ok());
        assert!(validate("x", &vec!["t".to_owned(); SHARD_TAGS_MAX + 1], 0.0, None).is_err());
        assert!(validate("x", &["a,b".to_owned()], 0.0, None).is_err());
        assert!(validate(&"é".repeat(CONTENT_CHARS_MAX), &tags, 0.0, None).is_ok());
        assert!(validate(&"é".repeat(CONTENT_CHARS_MAX + 1), &tags, 0.0, None).is_err());
    }
}
