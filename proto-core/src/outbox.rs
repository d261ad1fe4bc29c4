//! The outbox: what we sent and who waits for its answers. This first part holds [`Waiters`], the
//! `wait_for_response` calls; the sent records, batches and webhook updates still live in
//! `node/message.rs`.

use crate::io::CommandId;
use crate::limits::WAITERS_MAX;

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
}
