//! Node glue for shards: pushes out, pushes in, the shard commands and the refresh rounds.

use crate::shards::{
    key, legacy_bytes, v2_bytes, validate, ShardArgs, SHARD_CONNECT_PUSH_MAX, SHARD_REFRESH_BATCH_MAX,
};
use serde_json::json;

use crate::crypto;
use crate::error::{CommandError, Refusal};
use crate::identity::truncate_chars;
use crate::io::Method;
use crate::limits::{self, CONTENT_CHARS_MAX, ID_BYTES_MAX, SHARDS_OWN_MAX};
use crate::node::{Call, Node};
use crate::output::{ShardBody, ShardEntry, ShardList, ShardSynced, ShardView};
use crate::replay::{check_fresh, sig_key};
use crate::store::{Change, Shard, Table};
use crate::time::{format_iso, parse_iso};
use crate::url;
use crate::wire::{self, shard::ShardPush};

impl Node {
    fn own_shards(&self) -> impl Iterator<Item = &Shard> {
        let me = self.me().to_owned();
        self.shards.values().filter(move |s| s.author == me)
    }

    /// A version time after `previous` and never before now; `updated_at` is derived from it so that
    /// two versions never share a timestamp, even in one microsecond or after a clock step back.
    fn next_version_us(&self, previous: i64) -> i64 {
        self.now.wall_us.max(previous + 1)
    }

    pub(crate) fn cmd_create_shard(&mut self, args: ShardArgs) -> Result<ShardSynced, CommandError> {
        validate(&args.content, &args.tags, args.trust_threshold, args.summary.as_deref())
            .map_err(CommandError::InvalidArgument)?;
        if self.own_shards().filter(|s| !s.deleted).count() >= SHARDS_OWN_MAX {
            return Err(CommandError::Limited(format!("Shard limit reached ({SHARDS_OWN_MAX})")));
        }
        let at = self.now.wall_us;
        let mut shard = Shard {
            shard_id: format!("shard-{}", self.random_hex(6)),
            author: self.me().to_owned(),
            content: args.content,
            tags: args.tags,
            trust_threshold: args.trust_threshold,
            summary: args.summary,
            created_at: format_iso(at),
            updated_at: format_iso(at),
            updated_us: at,
            deleted: false,
            signature_hex: None,
            signed_v2: true,
            received_us: at,
            sent_to: Vec::new(),
        };
        shard.signature_hex = legacy_bytes(&shard.shard_id, &shard.author, &shard.content, &shard.tags)
            .map(|b| crypto::sign_hex(&*self.signatures, &self.passport, &b));
        Ok(self.store_and_sync(shard))
    }

    pub(crate) fn cmd_update_shard(&mut self, shard_id: &str, args: ShardArgs) -> Result<ShardSynced, CommandError> {
        validate(&args.content, &args.tags, args.trust_threshold, args.summary.as_deref())
            .map_err(CommandError::InvalidArgument)?;
        let old = self.own_live_shard(shard_id)?;
        let at = self.next_version_us(old.updated_us);
        let mut shard = Shard {
            content: args.content,
            tags: args.tags,
            trust_threshold: args.trust_threshold,
            summary: args.summary,
            updated_at: format_iso(at),
            updated_us: at,
            received_us: at,
            ..old
        };
        shard.signature_hex = legacy_bytes(&shard.shard_id, &shard.author, &shard.content, &shard.tags)
            .map(|b| crypto::sign_hex(&*self.signatures, &self.passport, &b));
        Ok(self.store_and_sync(shard))
    }

    pub(crate) fn cmd_delete_shard(&mut self, shard_id: &str) -> Result<ShardSynced, CommandError> {
        let old = self.own_live_shard(shard_id)?;
        let at = self.next_version_us(old.updated_us);
        // A tombstone: peers that held it drop it.
        let shard = Shard {
            deleted: true,
            content: "-".to_owned(),
            summary: None,
            signature_hex: None,
            updated_at: format_iso(at),
            updated_us: at,
            received_us: at,
            ..old
        };
        Ok(self.store_and_sync(shard))
    }

    fn own_live_shard(&self, shard_id: &str) -> Result<Shard, CommandError> {
        self.shards
            .get(&key(self.me(), shard_id))
            .filter(|s| !s.deleted)
            .cloned()
            .ok_or_else(|| CommandError::NotFound(format!("No shard of yours with ID '{shard_id}'")))
    }

    /// Stores our shard and pushes it to every qualifying peer; a deletion also goes to every peer
    /// that had it. (An update never goes to a holder that no longer qualifies: its old copy lapses
    /// within the TTL, since refreshes skip it.)
    fn store_and_sync(&mut self, mut shard: Shard) -> ShardSynced {
        let qualifying: Vec<String> =
            self.connections.keys().filter(|p| self.trust_of(p) >= shard.trust_threshold).cloned().collect();
        let mut targets: Vec<String> = if shard.deleted {
            shard.sent_to.iter().filter(|p| self.connections.contains_key(p)).cloned().collect()
        } else {
            Vec::new()
        };
        for q in &qualifying {
            if !targets.contains(q) {
                targets.push(q.clone());
            }
        }
        for t in &targets {
            if !shard.sent_to.contains(t) {
                shard.sent_to.push(t.clone());
            }
        }
        let k = key(&shard.author, &shard.shard_id);
        self.persist(vec![Change::put(Table::Shards, &k, &shard)]);
        for t in &targets {
            self.push_shard(&shard, t);
        }
        let out = ShardSynced {
            shard_id: shard.shard_id.clone(),
            tags: shard.tags.clone(),
            trust_threshold: shard.trust_threshold,
            deleted: shard.deleted,
            sent_to: targets,
        };
        self.shards.insert_persisted(k, shard);
        out
    }

    /// Sends one of our shards to one peer, signed for it now (fire and forget: sync repeats).
    fn push_shard(&mut self, shard: &Shard, peer: &str) {
        let Some(conn) = self.connections.get(peer) else { return };
        // A 0.5.3 peer can verify only 0.5.3's form, which deletions and newline content lack.
        if !conn.speaks_v2 && shard.signature_hex.is_none() {
            return;
        }
        let pushed_at = self.now.iso();
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
            to_agent_id: Some(peer.to_owned()),
            dm_signature_hex: Some(crypto::sign_hex(
                &*self.signatures,
                &self.passport,
                &v2_bytes(shard, peer, &pushed_at),
            )),
            pushed_at: Some(pushed_at),
        };
        let (url, local) = (conn.url.clone(), conn.local);
        self.transmit(
            Method::Post,
            url::endpoint(&url, "shard_push"),
            wire::encode(&body),
            limits::PEER_CALL_TIMEOUT_MS,
            !local,
            Call::FireAndForget,
        );
    }

    /// Pushes `shard` to `peer` and remembers that it has it.
    fn push_and_record(&mut self, shard_key: &str, peer: &str) {
        let Some(mut shard) = self.shards.get(shard_key).cloned() else { return };
        if !shard.sent_to.iter().any(|p| p == peer) {
            shard.sent_to.push(peer.to_owned());
            let change = self.shards.put(shard_key.to_owned(), shard.clone());
            self.persist(vec![change]);
        }
        self.push_shard(&shard, peer);
    }

    /// One round-robin step of re-sending our shards (live ones to qualifying peers, tombstones to
    /// the peers that had them), bounded per tick and by the calls in flight.
    pub(crate) fn refresh_shards(&mut self) {
        let me = self.me().to_owned();
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (k, s) in self.shards.iter().filter(|(_, s)| s.author == me) {
            for p in self.connections.keys() {
                let wanted = if s.deleted { s.sent_to.contains(p) } else { self.trust_of(p) >= s.trust_threshold };
                if wanted {
                    pairs.push((k.clone(), p.clone()));
                }
            }
        }
        let room = limits::OUTBOUND_IN_FLIGHT_MAX.saturating_sub(self.calls_in_flight()).min(SHARD_REFRESH_BATCH_MAX);
        let Some(turn) = self.shards.refresh_step(pairs.len(), self.now.mono_ms, room) else { return };
        for (k, p) in &pairs[turn] {
            self.push_and_record(k, p);
        }
    }

    /// A new connection receives our live shards its trust qualifies for (the first
    /// [`SHARD_CONNECT_PUSH_MAX`] at once, the rest with the refresh).
    pub(crate) fn on_connected(&mut self, peer: &str) {
        let trust = self.trust_of(peer);
        let me = self.me().to_owned();
        let keys: Vec<String> = self
            .shards
            .iter()
            .filter(|(_, s)| s.author == me && !s.deleted && s.trust_threshold <= trust)
            .map(|(k, _)| k.clone())
            .take(SHARD_CONNECT_PUSH_MAX)
            .collect();
        for k in keys {
            self.push_and_record(&k, peer);
        }
    }

    /// A peer's trust rose from `old` to `new`: it now qualifies for shards with thresholds in (old, new].
    pub(crate) fn on_trust_rose(&mut self, peer: &str, old: f64, new: f64) {
        if !self.connections.contains_key(peer) {
            return;
        }
        let me = self.me().to_owned();
        let keys: Vec<String> = self
            .shards
            .iter()
            .filter(|(_, s)| s.author == me && !s.deleted && s.trust_threshold > old && s.trust_threshold <= new)
            .map(|(k, _)| k.clone())
            .take(SHARD_CONNECT_PUSH_MAX)
            .collect();
        for k in keys {
            self.push_and_record(&k, peer);
        }
    }

    pub(crate) fn on_shard_push(&mut self, body: &[u8]) -> Result<Vec<u8>, Refusal> {
        let p: ShardPush = wire::decode(body)?;
        if p.shard_id.is_empty() || p.author_agent_id.is_empty() {
            return Err(Refusal::MissingFields("shard_id, author_agent_id".to_owned()));
        }
        if p.shard_id.len() > ID_BYTES_MAX || p.shard_id.contains(['/', '\n']) {
            return Err(Refusal::Invalid("shard_id too long or malformed".to_owned()));
        }
        let deleted = p.deleted.unwrap_or(false);
        if !deleted {
            validate(&p.content, &p.tags, p.trust_threshold, p.summary.as_deref()).map_err(|e| {
                if p.content.chars().count() > CONTENT_CHARS_MAX {
                    Refusal::ContentTooLong(CONTENT_CHARS_MAX)
                } else {
                    Refusal::Invalid(e)
                }
            })?;
        }
        let author = self.bind_identity(&p.author_agent_id, None)?;
        if author == *self.passport.agent_id() {
            return Err(Refusal::Invalid("That shard is ours".to_owned()));
        }
        let Some(conn) = self.connections.get(author.as_str()) else {
            return Err(Refusal::Unauthorized("Unknown shard author — not a connection".to_owned()));
        };
        let speaks_v2 = conn.speaks_v2;
        let k = key(author.as_str(), &p.shard_id);
        let updated_at = p.updated_at.clone().unwrap_or_default();
        let mut shard = Shard {
            shard_id: p.shard_id.clone(),
            author: author.to_string(),
            content: p.content.clone(),
            tags: p.tags.clone(),
            trust_threshold: p.trust_threshold,
            summary: p.summary.clone(),
            updated_us: parse_iso(&updated_at).unwrap_or(0),
            created_at: p.created_at.clone().unwrap_or_default(),
            updated_at,
            deleted,
            signature_hex: (!p.signature_hex.is_empty()).then(|| p.signature_hex.to_ascii_lowercase()),
            signed_v2: false,
            received_us: self.now.wall_us,
            sent_to: Vec::new(),
        };
        let mut replay_change = None;
        match (p.dm_signature_hex.as_deref(), p.to_agent_id.as_deref(), p.pushed_at.as_deref()) {
            (Some(sig), Some(to), Some(pushed_at)) => {
                if to != self.me() {
                    return Err(Refusal::Unauthorized("Shard push is addressed to another agent".to_owned()));
                }
                let stamp_us = check_fresh(self.now.wall_us, pushed_at)?;
                crypto::verify_hex(&*self.signatures, author.key(), &v2_bytes(&shard, to, pushed_at), sig)
                    .map_err(|_| Refusal::Unauthorized("Invalid shard signature".to_owned()))?;
                let rk = sig_key("shard", sig);
                replay_change = Some(self.replay.admit(&rk, stamp_us, self.now.wall_us)?);
                shard.signed_v2 = true;
            }
            (Some(_), _, _) => return Err(Refusal::MissingFields("to_agent_id, pushed_at".to_owned())),
            (None, _, _) if speaks_v2 => {
                return Err(Refusal::Unauthorized(
                    "Signature required in the signed form this peer speaks (no downgrade).".to_owned(),
                ))
            }
            (None, _, _) => {
                if p.signature_hex.is_empty() {
                    return Err(Refusal::Unauthorized("Missing shard signature".to_owned()));
                }
                if deleted {
                    return Err(Refusal::Unauthorized("A deletion must be signed in our form".to_owned()));
                }
                let bytes = legacy_bytes(&p.shard_id, author.as_str(), &p.content, &p.tags)
                    .ok_or_else(|| Refusal::Invalid("Shard cannot be verified unambiguously".to_owned()))?;
                crypto::verify_hex(&*self.signatures, author.key(), &bytes, &p.signature_hex)
                    .map_err(|_| Refusal::Unauthorized("Invalid shard signature".to_owned()))?;
                // Unsigned in 0.5.3's form: never shown, never trusted for versions.
                shard.summary = None;
                shard.updated_us = 0;
            }
        }
        let mut changes: Vec<Change> = replay_change.into_iter().collect();
        // Charged once the author's signature verified (its replay entry is kept either way).
        if let Err(refusal) = self.admit(Some(author.as_str()), None) {
            self.persist(changes);
            return Err(refusal);
        }
        let trust = self.trust_of(author.as_str());
        if shard.signed_v2 && trust < shard.trust_threshold {
            // The author's signed current version is not for us: whatever older copy we hold goes too.
            changes.extend(self.shards.remove(&k));
            self.persist(changes);
            return Err(Refusal::Unauthorized("Trust threshold not met".to_owned()));
        }
        // 0.5.3's form leaves the threshold unsigned: the highest one seen applies, and a copy whose
        // threshold we do not meet is kept hidden rather than dropped, so that a lower one relayed
        // later cannot show it (and nothing is deleted on an unsigned word).
        let threshold_met = if shard.signed_v2 {
            true
        } else {
            let (applies, raised) = self.shards.legacy_threshold(&k, shard.trust_threshold);
            changes.extend(raised);
            shard.trust_threshold = applies;
            trust >= applies
        };
        let id = shard.shard_id.clone();
        let stored_new = match self.shards.renew_if_current(&k, &shard, self.now.wall_us) {
            Some(renewed) => {
                changes.push(renewed);
                false
            }
            None => {
                changes.extend(self.make_room_for_cached(&k));
                changes.push(self.shards.put(k, shard));
                true
            }
        };
        self.persist(changes);
        if !threshold_met {
            return Err(Refusal::Unauthorized("Trust threshold not met".to_owned()));
        }
        if !stored_new {
            return Ok(wire::encode(&json!({"success": true, "shard_id": id, "current": false})));
        }
        Ok(wire::encode(&json!({"success": true, "shard_id": id})))
    }

    /// Evicts cached shards until one more fits (see [`Shards::make_room_for_cached`]).
    fn make_room_for_cached(&mut self, incoming: &str) -> Vec<Change> {
        let me = self.passport.agent_id().as_str();
        let impressions = &self.impressions;
        let trust_of = |id: &str| impressions.score(id);
        self.shards.make_room_for_cached(incoming, me, self.now.wall_us, trust_of)
    }

    /// Drops expired cached shards and old tombstones of ours; returns the deletes to persist.
    pub(crate) fn prune_shards(&mut self) -> Vec<Change> {
        self.shards.prune(self.passport.agent_id().as_str(), self.now.wall_us)
    }

    fn visible(&self, s: &Shard) -> bool {
        !s.deleted && (s.author == self.me() || self.trust_of(&s.author) >= s.trust_threshold)
    }

    /// Shards matching any of `tags` (a tag `t` also matches `t:anything`) and the author, newest first.
    /// Others' shards show only while our trust in their author still meets their threshold.
    pub(crate) fn cmd_view_shards(&self, tags: &[String], author: Option<&str>) -> ShardList {
        let me = self.me();
        let mut v: Vec<&Shard> = self
            .shards
            .values()
            .filter(|s| self.visible(s))
            .filter(|s| author.is_none_or(|a| s.author == a))
            .filter(|s| {
                tags.is_empty()
                    || s.tags.iter().any(|t| {
                        tags.iter().any(|q| t == q || t.strip_prefix(q.as_str()).is_some_and(|r| r.starts_with(':')))
                    })
            })
            .collect();
        v.sort_by(|a, b| b.updated_us.cmp(&a.updated_us).then(a.shard_id.cmp(&b.shard_id)));
        let shards: Vec<ShardEntry> = v
            .into_iter()
            .map(|s| ShardEntry {
                shard_id: s.shard_id.clone(),
                author: s.author.clone(),
                own: s.author == me,
                tags: s.tags.clone(),
                trust_threshold: s.trust_threshold,
                created_at: s.created_at.clone(),
                updated_at: s.updated_at.clone(),
                signed_form: if s.signed_v2 { "darkmatter-rs/2" } else { "0.5.3" }.to_owned(),
                author_name: self.connections.get(&s.author).map(|c| c.display_name.clone()),
                body: match &s.summary {
                    Some(summary) => ShardBody::Summary { summary: summary.clone() },
                    None => ShardBody::Content {
                        content: truncate_chars(&s.content, 500),
                        truncated: s.content.chars().count() > 500,
                    },
                },
            })
            .collect();
        ShardList { count: shards.len(), shards }
    }

    /// One shard in full. Ids are chosen by their authors, so another author may reuse one: give
    /// `author` to choose; without it our own shard wins, and an ambiguous id is refused.
    pub(crate) fn cmd_get_shard(&self, shard_id: &str, author: Option<&str>) -> Result<ShardView, CommandError> {
        let found: Vec<&Shard> = match author {
            Some(a) => self.shards.get(&key(a, shard_id)).into_iter().filter(|s| self.visible(s)).collect(),
            None => match self.shards.get(&key(self.me(), shard_id)).filter(|s| self.visible(s)) {
                Some(own) => vec![own],
                None => self.shards.values().filter(|s| s.shard_id == shard_id && self.visible(s)).collect(),
            },
        };
        match found.as_slice() {
            [s] => Ok(ShardView {
                shard_id: s.shard_id.clone(),
                author: s.author.clone(),
                content: s.content.clone(),
                tags: s.tags.clone(),
                trust_threshold: s.trust_threshold,
                summary: s.summary.clone(),
                created_at: s.created_at.clone(),
                updated_at: s.updated_at.clone(),
            }),
            [] => Err(CommandError::NotFound(format!("No shard with ID '{shard_id}'"))),
            _ => Err(CommandError::InvalidArgument(format!(
                "Several authors use shard ID '{shard_id}': give the author"
            ))),
        }
    }
}
