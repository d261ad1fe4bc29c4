//! Knowledge shards: signed, trust-gated units of knowledge that sync to qualifying peers.
//!
//! Sync, not a one-time push (0.5.3 pushes once at creation): an author's shard reaches every
//! connected peer whose trust meets its threshold when it is created, updated or deleted, when a
//! peer's trust rises past the threshold, and when a new peer connects. Receivers re-check the
//! author's signature and their *own* trust in the author, cache with a TTL and a cap, and drop an
//! older version of a shard they already hold.
//!
//! Two signatures: ours over every field (threshold, summary, times, deletion included), and 0.5.3's
//! (`shard_id, author, content, sorted tags`) when the content has no newline — toward a 0.5.3 peer a
//! newline in the content would make that form ambiguous, so such a shard is not sent to 0.5.3 peers.
//!
//! Caches expire [`SHARD_CACHE_TTL_S`] after the author last sent the shard; authors re-send their
//! live shards every [`SHARD_REFRESH_S`], so a cached shard lives as long as its author stays
//! connected and trusting.
//!
//! Cache eviction order when full: expired first, then shards whose author we trust least, then the
//! least recently updated.

use serde_json::{json, Value};

use crate::connection::bind_identity;
use crate::error::{CommandError, Refusal};
use crate::identity::truncate_chars;
use crate::io::Method;
use crate::limits::{
    self, CONTENT_CHARS_MAX, ID_BYTES_MAX, SHARDS_CACHED_MAX, SHARDS_OWN_MAX, SHARD_CACHE_TTL_S, SHARD_SUMMARY_CHARS_MAX, SHARD_TAGS_MAX, SHARD_TAG_CHARS_MAX,
};
use crate::node::{Call, Node};
use crate::sign::{self, DOMAIN_SHARD, V2_SHARD};
use crate::store::{Change, Shard, Table};
use crate::time::parse_iso;
use crate::url;
use crate::wire::{self, shard::ShardPush};

/// How often an author re-sends its live shards to qualifying peers, in seconds (well under the TTL).
pub const SHARD_REFRESH_S: u64 = 21_600;

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

fn key(author: &str, shard_id: &str) -> String {
    format!("{author}/{shard_id}")
}

fn v2_bytes(s: &Shard) -> Vec<u8> {
    let threshold = s.trust_threshold.to_string();
    let tags = serde_json::to_string(&s.tags).expect("strings serialise");
    let deleted = if s.deleted { "1" } else { "0" };
    sign::v2_bytes(V2_SHARD, &[&s.shard_id, &s.author, &s.content, &tags, &threshold, s.summary.as_deref().unwrap_or(""), &s.created_at, &s.updated_at, deleted])
}

fn legacy_bytes(shard_id: &str, author: &str, content: &str, tags: &[String]) -> Option<Vec<u8>> {
    sign::domain_bytes(DOMAIN_SHARD, &[shard_id, author, content, &tags_str(tags)]).ok()
}

/// Checks tags, threshold, content and summary; returns why not.
fn validate(content: &str, tags: &[String], threshold: f64, summary: Option<&str>) -> Result<(), String> {
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

impl Node {
    fn own_shards(&self) -> impl Iterator<Item = &Shard> {
        let me = self.me().to_owned();
        self.shards.values().filter(move |s| s.author == me)
    }

    /// Signs a shard we author, in both forms where possible.
    fn sign_shard(&self, s: &mut Shard) {
        s.dm_signature_hex = sign::sign_hex(&self.passport, &v2_bytes(s));
        s.signature_hex = if s.deleted { None } else { legacy_bytes(&s.shard_id, &s.author, &s.content, &s.tags).map(|b| sign::sign_hex(&self.passport, &b)) };
    }

    pub(crate) fn cmd_create_shard(&mut self, args: ShardArgs) -> Result<Value, CommandError> {
        validate(&args.content, &args.tags, args.trust_threshold, args.summary.as_deref()).map_err(CommandError::InvalidArgument)?;
        if self.own_shards().filter(|s| !s.deleted).count() >= SHARDS_OWN_MAX {
            return Err(CommandError::Limited(format!("Shard limit reached ({SHARDS_OWN_MAX})")));
        }
        let now = self.now.iso();
        let mut shard = Shard {
            shard_id: format!("shard-{}", self.random_hex(6)),
            author: self.me().to_owned(),
            content: args.content,
            tags: args.tags,
            trust_threshold: args.trust_threshold,
            summary: args.summary,
            created_at: now.clone(),
            updated_at: now,
            updated_us: self.now.wall_us,
            deleted: false,
            signature_hex: None,
            dm_signature_hex: String::new(),
            received_us: self.now.wall_us,
        };
        self.sign_shard(&mut shard);
        Ok(self.store_and_sync(shard))
    }

    pub(crate) fn cmd_update_shard(&mut self, shard_id: &str, args: ShardArgs) -> Result<Value, CommandError> {
        validate(&args.content, &args.tags, args.trust_threshold, args.summary.as_deref()).map_err(CommandError::InvalidArgument)?;
        let k = key(self.me(), shard_id);
        let Some(old) = self.shards.get(&k).filter(|s| !s.deleted).cloned() else {
            return Err(CommandError::NotFound(format!("No shard of yours with ID '{shard_id}'")));
        };
        let mut shard = Shard {
            content: args.content,
            tags: args.tags,
            trust_threshold: args.trust_threshold,
            summary: args.summary,
            updated_at: self.now.iso(),
            updated_us: self.now.wall_us.max(old.updated_us + 1),
            received_us: self.now.wall_us,
            ..old
        };
        self.sign_shard(&mut shard);
        Ok(self.store_and_sync(shard))
    }

    pub(crate) fn cmd_delete_shard(&mut self, shard_id: &str) -> Result<Value, CommandError> {
        let k = key(self.me(), shard_id);
        let Some(old) = self.shards.get(&k).filter(|s| !s.deleted).cloned() else {
            return Err(CommandError::NotFound(format!("No shard of yours with ID '{shard_id}'")));
        };
        // A tombstone: peers that held it drop it, and an older copy cannot come back.
        let mut shard = Shard { deleted: true, content: "-".to_owned(), summary: None, updated_at: self.now.iso(), updated_us: self.now.wall_us.max(old.updated_us + 1), ..old };
        self.sign_shard(&mut shard);
        Ok(self.store_and_sync(shard))
    }

    fn store_and_sync(&mut self, shard: Shard) -> Value {
        let k = key(&shard.author, &shard.shard_id);
        self.persist(vec![Change::put(Table::Shards, &k, &shard)]);
        self.shards.insert(k, shard.clone());
        let targets: Vec<String> = self.connections.keys().filter(|p| self.trust_of(p) >= shard.trust_threshold).cloned().collect();
        for t in &targets {
            self.push_shard(&shard, t);
        }
        json!({"shard_id": shard.shard_id, "tags": shard.tags, "trust_threshold": shard.trust_threshold, "deleted": shard.deleted, "sent_to": targets})
    }

    /// Sends one of our shards to one peer (fire and forget: sync repeats on the next trigger).
    fn push_shard(&mut self, shard: &Shard, peer: &str) {
        let Some(conn) = self.connections.get(peer) else { return };
        // Without our form and without an unambiguous legacy form there is nothing a peer could verify.
        if !conn.speaks_v2 && shard.signature_hex.is_none() {
            return;
        }
        let body = ShardPush {
            shard_id: shard.shard_id.clone(),
            author_agent_id: shard.author.clone(),
            content: shard.content.clone(),
            tags: shard.tags.clone(),
            trust_threshold: shard.trust_threshold,
            created_at: Some(shard.created_at.clone()),
            updated_at: Some(shard.updated_at.clone()),
            summary: shard.summary.clone(),
            signature_hex: shard.signature_hex.clone().unwrap_or_default(),
            deleted: shard.deleted.then_some(true),
            dm_signature_hex: Some(shard.dm_signature_hex.clone()),
        };
        let (url, local) = (conn.url.clone(), conn.local);
        self.transmit(Method::Post, url::endpoint(&url, "shard_push"), wire::encode(&body), limits::PEER_CALL_TIMEOUT_MS, !local, Call::FireAndForget);
    }

    /// Re-sends every live shard of ours to every qualifying peer, so caches stay within their TTL.
    pub(crate) fn refresh_shards(&mut self) {
        let shards: Vec<Shard> = self.own_shards().filter(|s| !s.deleted).cloned().collect();
        let peers: Vec<String> = self.connections.keys().cloned().collect();
        for s in &shards {
            for p in &peers {
                if self.trust_of(p) >= s.trust_threshold {
                    self.push_shard(s, p);
                }
            }
        }
    }

    /// A new connection receives every live shard of ours its trust qualifies for.
    pub(crate) fn on_connected(&mut self, peer: &str) {
        let trust = self.trust_of(peer);
        let shards: Vec<Shard> = self.own_shards().filter(|s| !s.deleted && s.trust_threshold <= trust).cloned().collect();
        for s in &shards {
            self.push_shard(s, peer);
        }
    }

    /// A peer's trust rose from `old` to `new`: it now qualifies for shards with thresholds in (old, new].
    pub(crate) fn on_trust_rose(&mut self, peer: &str, old: f64, new: f64) {
        if !self.connections.contains_key(peer) {
            return;
        }
        let shards: Vec<Shard> = self.own_shards().filter(|s| !s.deleted && s.trust_threshold > old && s.trust_threshold <= new).cloned().collect();
        for s in &shards {
            self.push_shard(s, peer);
        }
    }

    pub(crate) fn on_shard_push(&mut self, body: &[u8]) -> Result<Vec<u8>, Refusal> {
        self.admit_global()?;
        let p: ShardPush = wire::decode(body)?;
        if p.shard_id.is_empty() || p.author_agent_id.is_empty() {
            return Err(Refusal::MissingFields("shard_id, author_agent_id".to_owned()));
        }
        if p.shard_id.len() > ID_BYTES_MAX || p.shard_id.contains(['/', '\n']) {
            return Err(Refusal::Invalid("shard_id too long or malformed".to_owned()));
        }
        let deleted = p.deleted.unwrap_or(false);
        if !deleted {
            validate(&p.content, &p.tags, p.trust_threshold, p.summary.as_deref()).map_err(|e| if e.starts_with("content") && !p.content.is_empty() { Refusal::ContentTooLong(CONTENT_CHARS_MAX) } else { Refusal::Invalid(e) })?;
        }
        let author = bind_identity(&p.author_agent_id, None)?;
        if author == *self.passport.agent_id() {
            return Err(Refusal::Invalid("That shard is ours".to_owned()));
        }
        let Some(conn) = self.connections.get(author.as_str()) else {
            return Err(Refusal::Unauthorized("Unknown shard author — not a connection".to_owned()));
        };
        let speaks_v2 = conn.speaks_v2;
        let created_at = p.created_at.clone().unwrap_or_default();
        let updated_at = p.updated_at.clone().unwrap_or_default();
        let mut shard = Shard {
            shard_id: p.shard_id.clone(),
            author: author.to_string(),
            content: p.content.clone(),
            tags: p.tags.clone(),
            trust_threshold: p.trust_threshold,
            summary: p.summary.clone(),
            updated_us: parse_iso(&updated_at).unwrap_or(0),
            created_at,
            updated_at,
            deleted,
            signature_hex: (!p.signature_hex.is_empty()).then(|| p.signature_hex.clone()),
            dm_signature_hex: String::new(),
            received_us: self.now.wall_us,
        };
        match p.dm_signature_hex.as_deref() {
            Some(sig) => {
                sign::verify_hex(author.key(), &v2_bytes(&shard), sig).map_err(|_| Refusal::Unauthorized("Invalid shard signature".to_owned()))?;
                shard.dm_signature_hex = sig.to_ascii_lowercase();
            }
            None if speaks_v2 => return Err(Refusal::Unauthorized("Signature required in the signed form this peer speaks (no downgrade).".to_owned())),
            None => {
                if p.signature_hex.is_empty() {
                    return Err(Refusal::Unauthorized("Missing shard signature".to_owned()));
                }
                if deleted {
                    return Err(Refusal::Unauthorized("A deletion must be signed in our form".to_owned()));
                }
                let bytes = legacy_bytes(&p.shard_id, author.as_str(), &p.content, &p.tags).ok_or_else(|| Refusal::Invalid("Shard cannot be verified unambiguously".to_owned()))?;
                sign::verify_hex(author.key(), &bytes, &p.signature_hex).map_err(|_| Refusal::Unauthorized("Invalid shard signature".to_owned()))?;
            }
        }
        if self.trust_of(author.as_str()) < shard.trust_threshold {
            return Err(Refusal::Unauthorized("Trust threshold not met".to_owned()));
        }
        let k = key(author.as_str(), &shard.shard_id);
        if let Some(held) = self.shards.get_mut(&k) {
            if held.updated_us >= shard.updated_us {
                // The author still vouches for what we hold: its time to live starts again.
                held.received_us = self.now.wall_us;
                let change = Change::put(Table::Shards, &k, &*held);
                self.persist(vec![change]);
                return Ok(wire::encode(&json!({"success": true, "shard_id": shard.shard_id, "current": false})));
            }
        }
        let mut changes = self.make_room_for_cached(&k);
        changes.push(Change::put(Table::Shards, &k, &shard));
        let id = shard.shard_id.clone();
        self.shards.insert(k, shard);
        self.persist(changes);
        Ok(wire::encode(&json!({"success": true, "shard_id": id})))
    }

    /// Evicts cached shards until one more fits: expired first, then least trusted author, then oldest.
    fn make_room_for_cached(&mut self, incoming: &str) -> Vec<Change> {
        let mut changes = self.prune_shards();
        let me = self.me().to_owned();
        while !self.shards.contains_key(incoming) && self.shards.values().filter(|s| s.author != me).count() >= SHARDS_CACHED_MAX {
            let victim = self
                .shards
                .iter()
                .filter(|(_, s)| s.author != me)
                .min_by(|(ka, a), (kb, b)| self.trust_of(&a.author).total_cmp(&self.trust_of(&b.author)).then(a.updated_us.cmp(&b.updated_us)).then(ka.cmp(kb)))
                .map(|(k, _)| k.clone())
                .expect("the cache is full, so non-empty");
            self.shards.remove(&victim);
            changes.push(Change::delete(Table::Shards, &victim));
        }
        changes
    }

    /// Drops cached shards past their TTL. Returns the deletes to persist.
    pub(crate) fn prune_shards(&mut self) -> Vec<Change> {
        let me = self.me().to_owned();
        let cutoff = self.now.wall_us - SHARD_CACHE_TTL_S as i64 * 1_000_000;
        let old: Vec<String> = self.shards.iter().filter(|(_, s)| s.author != me && s.received_us < cutoff).map(|(k, _)| k.clone()).collect();
        old.iter().for_each(|k| {
            self.shards.remove(k);
        });
        old.iter().map(|k| Change::delete(Table::Shards, k)).collect()
    }

    /// Shards matching any of `tags` (a tag `t` also matches `t:anything`) and the author, newest first.
    /// Others' shards show only while our trust in their author still meets their threshold.
    pub(crate) fn cmd_view_shards(&self, tags: &[String], author: Option<&str>) -> Value {
        let me = self.me();
        let mut v: Vec<&Shard> = self
            .shards
            .values()
            .filter(|s| !s.deleted)
            .filter(|s| s.author == me || self.trust_of(&s.author) >= s.trust_threshold)
            .filter(|s| author.is_none_or(|a| s.author == a))
            .filter(|s| tags.is_empty() || s.tags.iter().any(|t| tags.iter().any(|q| t == q || t.strip_prefix(q.as_str()).is_some_and(|r| r.starts_with(':')))))
            .collect();
        v.sort_by(|a, b| b.updated_us.cmp(&a.updated_us).then(a.shard_id.cmp(&b.shard_id)));
        let shards: Vec<Value> = v
            .into_iter()
            .map(|s| {
                let own = s.author == me;
                let mut j = json!({
                    "shard_id": s.shard_id, "author": s.author, "own": own, "tags": s.tags, "trust_threshold": s.trust_threshold,
                    "created_at": s.created_at, "updated_at": s.updated_at,
                    "author_name": self.connections.get(&s.author).map(|c| c.display_name.clone()),
                });
                match &s.summary {
                    Some(sum) => j["summary"] = json!(sum),
                    None => {
                        j["content"] = json!(truncate_chars(&s.content, 500));
                        j["truncated"] = json!(s.content.chars().count() > 500);
                    }
                }
                j
            })
            .collect();
        json!({"count": shards.len(), "shards": shards})
    }

    /// One shard in full.
    pub(crate) fn cmd_get_shard(&self, shard_id: &str) -> Result<Value, CommandError> {
        let me = self.me();
        let s = self
            .shards
            .values()
            .find(|s| s.shard_id == shard_id && !s.deleted && (s.author == me || self.trust_of(&s.author) >= s.trust_threshold))
            .ok_or_else(|| CommandError::NotFound(format!("No shard with ID '{shard_id}'")))?;
        Ok(json!({"shard_id": s.shard_id, "author": s.author, "content": s.content, "tags": s.tags, "trust_threshold": s.trust_threshold,
            "summary": s.summary, "created_at": s.created_at, "updated_at": s.updated_at}))
    }
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
