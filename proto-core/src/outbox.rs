//! The outbox: what we sent and who waits for its answers. This first part holds [`Batches`] (a
//! send or forward waiting for its deliveries), [`Waiters`] (the `wait_for_response` calls) and the
//! budgets of webhook updates ([`update_room`]); the sent records still live in `node/message.rs`.

use std::collections::BTreeMap;

use crate::io::CommandId;
use crate::limits::{UNSIGNED_UPDATES_PER_SENT_MAX, UPDATES_PER_SENT_MAX, WAITERS_MAX};
use crate::store::UpdateRecord;

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
            outstanding: 2,
            routed_to: vec![],
            failed: vec![],
        };
        b.open(id, batch);
        assert_eq!(b.message_id(id), Some("m"));
        assert!(b.record(id, "a".into(), Ok(())).is_none());
        let done = b.record(id, "b".into(), Err("refused".into())).expect("both answered");
        assert_eq!((done.routed_to, done.failed), (vec!["a".to_owned()], vec![("b".to_owned(), "refused".to_owned())]));
        assert_eq!(b.message_id(id), None);
        assert!(b.record(id, "c".into(), Ok(())).is_none(), "a late answer finds nothing");
    }
}
