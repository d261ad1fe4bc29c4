//! Node glue for `wait_for_response`: waits on a sent message, completed when it has a reply, was
//! expired or dropped, or the wait times out. It reads the outbox and owns nothing else.

use crate::error::CommandError;
use crate::io::CommandId;
use crate::limits;
use crate::node::Node;
use crate::output::{CommandOutput, WaitResult};
use crate::store::SentStatus;

use super::views::responses;

impl Node {
    pub(crate) fn cmd_wait(&mut self, cmd: CommandId, message_id: &str, timeout_ms: u64) -> Result<(), CommandError> {
        if !self.sent.contains_key(message_id) {
            return Err(CommandError::NotFound(format!("No sent message with ID '{message_id}'")));
        }
        if timeout_ms > limits::WAIT_TIMEOUT_S_MAX * 1000 {
            return Err(CommandError::InvalidArgument(format!(
                "timeout_seconds must be at most {}",
                limits::WAIT_TIMEOUT_S_MAX
            )));
        }
        let deadline_ms = self.now.mono_ms.saturating_add(timeout_ms);
        self.waiters.add(cmd, message_id, deadline_ms).map_err(|e| CommandError::Limited(e.to_string()))?;
        self.wake_waiters();
        Ok(())
    }

    /// Completes every wait whose message has a response or was expired.
    pub(crate) fn wake_waiters(&mut self) {
        let sent = &self.sent;
        let ready = self.waiters.take_where(|w| {
            sent.get(&w.message_id).is_none_or(|s| !s.responses.is_empty() || s.status == SentStatus::Expired)
        });
        for w in ready {
            let result = if self.sent.contains_key(&w.message_id) {
                Ok(CommandOutput::Wait(self.wait_result(&w.message_id, false)))
            } else {
                Err(CommandError::NotFound(format!("Sent message '{}' was dropped", w.message_id)))
            };
            self.done(w.cmd, result);
        }
    }

    pub(crate) fn expire_waiters(&mut self) {
        for w in self.waiters.take_expired(self.now.mono_ms) {
            let v = self.wait_result(&w.message_id, true);
            self.done(w.cmd, Ok(CommandOutput::Wait(v)));
        }
    }

    fn wait_result(&self, message_id: &str, timed_out: bool) -> WaitResult {
        let s = self.sent.get(message_id);
        WaitResult {
            message_id: message_id.to_owned(),
            timed_out,
            status: s.map(|s| s.status.into()),
            responses: s.map(responses).unwrap_or_default(),
        }
    }
}
