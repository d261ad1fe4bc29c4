//! The outbox: what we sent and who waits for its answers. [`Outbox`] owns the sent records (at
//! most [`SENT_MAX`], the oldest evicted with all its rows) and the update and reply rows each one
//! carries; [`Batches`] holds a send or forward waiting for its deliveries, [`Waiters`] the
//! `wait_for_response` calls, and [`update_room`] the budgets of webhook updates.

use std::collections::{BTreeMap, BTreeSet};

use crate::io::CommandId;
use crate::limits::{
    RESPONSES_PER_SENT_MAX, SENT_MAX, UNSIGNED_UPDATES_PER_SENT_MAX, UPDATES_PER_SENT_MAX, WAITERS_MAX,
};
use crate::store::{self, Change, RecordError, ResponseRecord, SentMessage, SentStatus, Table, UpdateRecord};

/// The messages we sent, by id, each with its updates and replies. Every change comes back as the
/// [`Change`]s that persist it: a sent record is one row, and each update and reply a small row of
/// its own ([`Table::SentUpdates`], [`Table::SentResponses`]), so recording one never rewrites the
/// record.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    sent: BTreeMap<String, SentMessage>,
}

/// Deletes a sent message: its record and every update and reply row it may have.
fn sent_deletes(sent: &SentMessage) -> Vec<Change> {
    let id = sent.message_id.as_str();
    let mut changes = vec![Change::delete(Table::Sent, id)];
    changes.extend((0..sent.rows.updates).map(|i| Change::delete(Table::SentUpdates, &store::child_key(id, i))));
    changes.extend((0..sent.rows.responses).map(|i| Change::delete(Table::SentResponses, &store::child_key(id, i))));
    changes
}

impl Outbox {
    /// The sent message `id`.
    pub(crate) fn get(&self, id: &str) -> Option<&SentMessage> {
        self.sent.get(id)
    }

    /// The sent message `id`, to update its status or routing; the caller persists it.
    pub(crate) fn get_mut(&mut self, id: &str) -> Option<&mut SentMessage> {
        self.sent.get_mut(id)
    }

    /// Whether we keep a sent message `id`.
    pub(crate) fn contains_key(&self, id: &str) -> bool {
        self.sent.contains_key(id)
    }

    /// The sent messages, in id order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &SentMessage> {
        self.sent.values()
    }

    /// Records a new sent message; returns its changes. A record replaced under the same id takes
    /// its old rows with it, so none are inherited; past [`SENT_MAX`] the oldest (by `seq`) goes.
    pub(crate) fn record(&mut self, sent: SentMessage) -> Vec<Change> {
        let message_id = sent.message_id.clone();
        let mut changes = self.sent.remove(&message_id).map(|old| sent_deletes(&old)).unwrap_or_default();
        changes.push(Change::put(Table::Sent, &message_id, &sent));
        self.sent.insert(message_id, sent);
        while self.sent.len() > SENT_MAX {
            let oldest = self.sent.values().min_by_key(|s| s.seq).map(|s| s.message_id.clone()).expect("non-empty");
            let gone = self.sent.remove(&oldest).expect("present");
            changes.extend(sent_deletes(&gone));
        }
        changes
    }

    /// Adds a webhook update to the sent message `id` (the caller checked its room with
    /// [`update_room`]); returns the put of its row, or `None` if the message is gone.
    pub(crate) fn add_update(&mut self, id: &str, update: UpdateRecord) -> Option<Change> {
        let sent = self.sent.get_mut(id)?;
        // One small row per update: the sent record itself does not change.
        let change = Change::put(Table::SentUpdates, &store::child_key(id, sent.rows.updates), &update);
        sent.rows.updates += 1;
        sent.updates.push(update);
        Some(change)
    }

    /// Adds a reply to the sent message `original` if it has room (at most
    /// [`RESPONSES_PER_SENT_MAX`]); returns its changes, and whether it is the first answer from an
    /// agent we sent the message to (the exchange that earns trust, once per message and agent).
    /// The reply is built by `reply` only once it fits, so a refused one costs nothing.
    pub(crate) fn add_response(
        &mut self,
        original: &str,
        reply: impl FnOnce() -> ResponseRecord,
    ) -> Option<(Vec<Change>, bool)> {
        let sent = self.sent.get_mut(original)?;
        if sent.rows.responses >= RESPONSES_PER_SENT_MAX {
            return None;
        }
        let response = reply();
        let from = response.agent_id.as_str();
        let earns = sent.routed_to.iter().any(|a| a == from) && !sent.responses.iter().any(|r| r.agent_id == from);
        let mut changes =
            vec![Change::put(Table::SentResponses, &store::child_key(original, sent.rows.responses), &response)];
        sent.rows.responses += 1;
        sent.responses.push(response);
        if sent.status == SentStatus::Active {
            sent.status = SentStatus::Responded;
            changes.push(Change::put(Table::Sent, original, &*sent));
        }
        Some((changes, earns))
    }

    /// Takes one [`Table::Sent`] row read back from storage; returns its `seq`.
    pub(crate) fn restore_row(&mut self, key: String, value: &[u8]) -> Result<u64, RecordError> {
        let s: SentMessage = store::decode(value)?;
        let seq = s.seq;
        self.sent.insert(key, s);
        Ok(seq)
    }

    /// Brings back sent messages' update and reply rows (`rows`, in any order) and moves the replies
    /// and updates of version-1 sent records (`legacy`, stored inside the record) into rows of their
    /// own. Rows of a message no longer kept are deleted; rows this build cannot read are left alone
    /// and counted in the number skipped. Returns the changes and that number.
    pub(crate) fn restore_rows(
        &mut self,
        mut rows: Vec<(Table, String, Vec<u8>)>,
        legacy: Vec<String>,
        on_disk: &BTreeSet<String>,
    ) -> (Vec<Change>, usize) {
        let mut changes = Vec::new();
        for id in legacy {
            let Some(sent) = self.sent.get(&id) else { continue };
            changes.extend(
                sent.updates
                    .iter()
                    .enumerate()
                    .map(|(i, u)| Change::put(Table::SentUpdates, &store::child_key(&id, i), u)),
            );
            changes.extend(
                sent.responses
                    .iter()
                    .enumerate()
                    .map(|(i, r)| Change::put(Table::SentResponses, &store::child_key(&id, i), r)),
            );
            changes.push(Change::put(Table::Sent, &id, sent));
        }
        rows.sort();
        let mut skipped = 0;
        for (table, key, value) in rows {
            let Some((id, index)) = store::parse_child_key(&key) else {
                skipped += 1;
                continue;
            };
            let Some(sent) = self.sent.get_mut(id) else {
                // An orphan (its message was dropped) goes; the rows of a record this build could
                // not read stay with it.
                if !on_disk.contains(id) {
                    changes.push(Change::delete(table, &key));
                }
                continue;
            };
            let added = if table == Table::SentUpdates {
                sent.rows.updates = sent.rows.updates.max(index + 1);
                store::decode(&value).map(|u| sent.updates.push(u))
            } else {
                sent.rows.responses = sent.rows.responses.max(index + 1);
                store::decode(&value).map(|r| sent.responses.push(r))
            };
            skipped += usize::from(added.is_err());
        }
        (changes, skipped)
    }
}

/// Why a webhook update finds no room on its sent message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UpdateRoomError {
    /// [`UPDATES_PER_SENT_MAX`] signed updates are recorded already.
    #[error("Update limit reached ({UPDATES_PER_SENT_MAX}) for this message")]
    Signed,
    /// [`UNSIGNED_UPDATES_PER_SENT_MAX`] unsigned updates are recorded already (signed ones still fit).
    #[error("Unsigned update limit reached ({UNSIGNED_UPDATES_PER_SENT_MAX}) for this message")]
    Unsigned,
}

/// Whether one more update, signed (`verified`) or not, fits beside `updates`. Each kind has a budget
/// of its own: anyone can post unsigned updates, so they must never use up the room of the signed
/// ones a forwarder makes, and nothing recorded is ever evicted.
pub(crate) fn update_room(updates: &[UpdateRecord], verified: bool) -> Result<(), UpdateRoomError> {
    let same_kind = updates.iter().filter(|u| u.verified == verified).count();
    match verified {
        true if same_kind >= UPDATES_PER_SENT_MAX => Err(UpdateRoomError::Signed),
        false if same_kind >= UNSIGNED_UPDATES_PER_SENT_MAX => Err(UpdateRoomError::Unsigned),
        _ => Ok(()),
    }
}

/// A send or forward waiting for its deliveries.
#[derive(Clone, Debug)]
pub(crate) struct Batch {
    /// The command to complete when every delivery has answered (`None`: nobody waits).
    pub cmd: Option<CommandId>,
    /// The message delivered.
    pub message_id: String,
    /// The hop budget it went out with.
    pub hops_remaining: u32,
    /// Deliveries not answered yet.
    pub outstanding: usize,
    /// Targets that took it.
    pub routed_to: Vec<String>,
    /// Targets it was relayed to (buffered by an anchor, not acknowledged by the target).
    pub relayed: Vec<String>,
    /// Targets that did not, with why.
    pub failed: Vec<(String, String)>,
}

/// The batches whose deliveries are in flight, by id; ids are never reused.
#[derive(Debug)]
pub(crate) struct Batches {
    open: BTreeMap<u64, Batch>,
    next_id: u64,
}

impl Default for Batches {
    fn default() -> Self {
        Self { open: BTreeMap::new(), next_id: 1 }
    }
}

impl Batches {
    /// A fresh batch id (taken even when the batch turns out to have no delivery).
    pub(crate) fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Opens batch `id` with `batch.outstanding` deliveries in flight.
    pub(crate) fn open(&mut self, id: u64, batch: Batch) {
        debug_assert!(batch.outstanding > 0);
        self.open.insert(id, batch);
    }

    /// The message batch `id` delivers, while it is open.
    pub(crate) fn message_id(&self, id: u64) -> Option<&str> {
        self.open.get(&id).map(|b| b.message_id.as_str())
    }

    /// Records one delivery's outcome; returns the batch, closed, once every delivery has answered.
    pub(crate) fn record(&mut self, id: u64, target: String, outcome: Result<(), String>) -> Option<Batch> {
        let batch = self.open.get_mut(&id)?;
        match outcome {
            Ok(()) => batch.routed_to.push(target),
            Err(e) => batch.failed.push((target, e)),
        }
        batch.outstanding -= 1;
        if batch.outstanding > 0 {
            return None;
        }
        self.open.remove(&id)
    }

    /// Records that one delivery went through a relay; returns the batch, closed, once every
    /// delivery has answered.
    pub(crate) fn record_relayed(&mut self, id: u64, target: String) -> Option<Batch> {
        let batch = self.open.get_mut(&id)?;
        batch.relayed.push(target);
        batch.outstanding -= 1;
        if batch.outstanding > 0 {
            return None;
        }
        self.open.remove(&id)
    }
}

/// A `wait_for_response` call waiting for a reply.
#[derive(Clone, Debug)]
pub(crate) struct Waiter {
    /// The command to complete.
    pub cmd: CommandId,
    /// The sent message whose answer it waits for.
    pub message_id: String,
    /// When it gives up (monotonic ms).
    pub deadline_ms: u64,
}

/// The waits in progress, at most [`WAITERS_MAX`], in the order they were asked.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    list: Vec<Waiter>,
}

/// Why a wait could not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WaitError {
    /// [`WAITERS_MAX`] waits are in progress already.
    #[error("At most {WAITERS_MAX} waits at once")]
    Full,
}

impl Waiters {
    /// Starts a wait for `message_id` until `deadline_ms`.
    pub(crate) fn add(&mut self, cmd: CommandId, message_id: &str, deadline_ms: u64) -> Result<(), WaitError> {
        if self.list.len() >= WAITERS_MAX {
            return Err(WaitError::Full);
        }
        self.list.push(Waiter { cmd, message_id: message_id.to_owned(), deadline_ms });
        debug_assert!(self.list.len() <= WAITERS_MAX);
        Ok(())
    }

    /// Removes and returns, in the order asked, the waits for which `done` holds.
    pub(crate) fn take_where(&mut self, mut done: impl FnMut(&Waiter) -> bool) -> Vec<Waiter> {
        let mut taken = Vec::new();
        let mut i = 0;
        while i < self.list.len() {
            if done(&self.list[i]) {
                taken.push(self.list.remove(i));
            } else {
                i += 1;
            }
        }
        taken
    }

    /// Removes and returns the waits whose deadline has come at `now_ms`.
    pub(crate) fn take_expired(&mut self, now_ms: u64) -> Vec<Waiter> {
        self.take_where(|w| w.deadline_ms <= now_ms)
    }

    /// The earliest deadline, if any wait is in progress.
    pub(crate) fn next_deadline_ms(&self) -> Option<u64> {
        self.list.iter().map(|w| w.deadline_ms).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_bounded_and_leave_in_the_order_asked() {
        let mut w = Waiters::default();
        for i in 0..WAITERS_MAX as u64 {
            w.add(CommandId(i), &format!("m{i}"), 100 - i % 3).unwrap();
        }
        assert_eq!(w.add(CommandId(999), "x", 1), Err(WaitError::Full));
        assert_eq!(w.next_deadline_ms(), Some(98));
        let expired = w.take_expired(98);
        assert!(expired.windows(2).all(|p| p[0].cmd.0 < p[1].cmd.0));
        assert!(expired.iter().all(|x| x.deadline_ms == 98));
        assert_eq!(w.next_deadline_ms(), Some(99));
    }

    fn update(verified: bool) -> UpdateRecord {
        UpdateRecord {
            kind: "forwarded".into(),
            agent_id: "a".into(),
            target_agent_id: None,
            note: None,
            timestamp: "t".into(),
            verified,
        }
    }

    fn sent(id: &str, seq: u64) -> SentMessage {
        SentMessage {
            message_id: id.to_owned(),
            content: String::new(),
            kind: "direct".to_owned(),
            created_at: String::new(),
            routed_to: vec!["peer".to_owned()],
            failed: Vec::new(),
            status: SentStatus::Active,
            initial_hops: 1,
            in_reply_to: None,
            responses: Vec::new(),
            updates: Vec::new(),
            seq,
            rows: store::ChildRows::default(),
            relayed: Vec::new(),
        }
    }

    fn reply(from: &str) -> ResponseRecord {
        ResponseRecord {
            agent_id: from.to_owned(),
            content: "ok".to_owned(),
            received_at: String::new(),
            message_id: None,
        }
    }

    #[test]
    fn past_sent_max_the_oldest_goes_with_all_its_rows() {
        let mut o = Outbox::default();
        o.record(sent("m0", 0));
        o.add_update("m0", update(true)).expect("kept");
        o.add_response("m0", || reply("peer")).expect("room");
        for i in 1..SENT_MAX as u64 {
            o.record(sent(&format!("m{i}"), i));
        }
        assert!(o.contains_key("m0"), "at the cap nothing goes");
        let changes = o.record(sent("last", SENT_MAX as u64));
        assert!(!o.contains_key("m0") && o.contains_key("m1") && o.contains_key("last"));
        assert_eq!(o.values().count(), SENT_MAX);
        let deleted: Vec<(Table, &str)> =
            changes.iter().filter(|c| c.value.is_none()).map(|c| (c.table, c.key.as_str())).collect();
        assert_eq!(deleted.len(), 3, "the record, its update row and its reply row");
        assert!(deleted.contains(&(Table::Sent, "m0")));
        assert!(deleted.contains(&(Table::SentUpdates, store::child_key("m0", 0).as_str())));
        assert!(deleted.contains(&(Table::SentResponses, store::child_key("m0", 0).as_str())));
    }

    #[test]
    fn only_the_first_reply_of_a_recipient_earns_and_replies_stop_at_their_budget() {
        let mut o = Outbox::default();
        o.record(sent("m", 1));
        let (changes, earns) = o.add_response("m", || reply("peer")).expect("room");
        assert!(earns);
        assert_eq!(changes.len(), 2, "the reply row, and the record now responded");
        assert_eq!(o.get("m").map(|s| s.status), Some(SentStatus::Responded));
        assert!(!o.add_response("m", || reply("peer")).expect("room").1, "a second reply earns nothing");
        assert!(!o.add_response("m", || reply("stranger")).expect("room").1, "nor does a non-recipient's");
        for _ in 3..RESPONSES_PER_SENT_MAX {
            o.add_response("m", || reply("peer")).expect("room");
        }
        assert!(o.add_response("m", || reply("peer")).is_none(), "one past the budget");
    }

    #[test]
    fn unsigned_updates_never_take_the_room_of_signed_ones() {
        let mut updates: Vec<UpdateRecord> = (0..UNSIGNED_UPDATES_PER_SENT_MAX).map(|_| update(false)).collect();
        assert_eq!(update_room(&updates, false), Err(UpdateRoomError::Unsigned));
        for _ in 0..UPDATES_PER_SENT_MAX {
            assert_eq!(update_room(&updates, true), Ok(()), "a full unsigned budget leaves the signed one whole");
            updates.push(update(true));
        }
        assert_eq!(update_room(&updates, true), Err(UpdateRoomError::Signed));
        assert_eq!(update_room(&updates[UNSIGNED_UPDATES_PER_SENT_MAX - 1..], false), Ok(()), "one unsigned slot free");
    }

    #[test]
    fn a_batch_closes_once_every_delivery_answered() {
        let mut b = Batches::default();
        let id = b.next_id();
        assert_ne!(b.next_id(), id, "ids are never reused");
        let batch = Batch {
            cmd: None,
            message_id: "m".into(),
            hops_remaining: 1,
            outstanding: 3,
            routed_to: vec![],
            relayed: vec![],
            failed: vec![],
        };
        b.open(id, batch);
        assert_eq!(b.message_id(id), Some("m"));
        assert!(b.record(id, "a".into(), Ok(())).is_none());
        assert!(b.record_relayed(id, "c".into()).is_none());
        let done = b.record(id, "b".into(), Err("refused".into())).expect("all answered");
        assert_eq!((done.routed_to, done.failed), (vec!["a".to_owned()], vec![("b".to_owned(), "refused".to_owned())]));
        assert_eq!(done.relayed, vec!["c".to_owned()], "relayed is neither delivered nor failed");
        assert_eq!(b.message_id(id), None);
        assert!(b.record(id, "c".into(), Ok(())).is_none(), "a late answer finds nothing");
    }
}
