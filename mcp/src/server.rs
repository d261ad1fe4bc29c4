//! The MCP server of one session: the 28 tools of [`crate::tools`] over stdio (rmcp), each calling
//! the node's client ([`Mesh`]) directly.
//!
//! Node events reach the client as `notifications/message` (MCP logging) with logger `darkmatter`
//! and `data` = the event object ([`crate::events::notice`]); the server declares the `logging`
//! capability and honours `logging/setLevel`.

#![allow(deprecated)] // rmcp marks MCP logging deprecated (SEP-2577); it is still what clients show.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use proto_core::Event;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, LoggingLevel,
    LoggingMessageNotificationParam, ServerCapabilities, ServerInfo, SetLevelRequestParams,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{tool_handler, ErrorData, RoleServer, ServerHandler};

use crate::events::notice;
use crate::instructions::INSTRUCTIONS;
use crate::mesh::Mesh;
use crate::tools::ToolOutput;

/// Tool calls running at once at most, per session; beyond it a call fails at once (a client that
/// floods the node is told so instead of growing a queue).
pub const CALLS_IN_FLIGHT_MAX: usize = 128;

/// What rmcp puts before a serde message when a tool's arguments do not deserialize.
const RMCP_ARGUMENTS_PREFIX: &str = "failed to deserialize parameters: ";

/// The MCP server of one session.
#[derive(Clone)]
pub struct DarkMatter {
    pub(crate) mesh: Arc<dyn Mesh>,
    events: async_channel::Receiver<Event>,
    tool_router: ToolRouter<Self>,
    /// Minimum level of notifications sent (`logging/setLevel`), as [`rank`].
    min_level: Arc<AtomicU8>,
    notifier_started: Arc<AtomicBool>,
    in_flight: Arc<AtomicUsize>,
}

/// A logging level's severity, 0 (debug) .. 7 (emergency).
pub fn rank(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

impl ToolOutput {
    /// The MCP result: the object as structured content (and as text), flagged when an error.
    pub fn into_result(self) -> CallToolResult {
        if self.is_error {
            CallToolResult::structured_error(self.value)
        } else {
            CallToolResult::structured(self.value)
        }
    }
}

/// Counts a call in flight until dropped.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(counter: &Arc<AtomicUsize>) -> Option<Slot> {
        if counter.fetch_add(1, Ordering::SeqCst) >= CALLS_IN_FLIGHT_MAX {
            counter.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Slot(counter.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// rmcp answers arguments that do not deserialize with a text-only tool error; the tools answer
/// every error as `{"error": ...}`, so a model reads one shape.
fn arguments_error(result: CallToolResult) -> CallToolResult {
    if result.is_error != Some(true) || result.structured_content.is_some() {
        return result;
    }
    let text = result.content.first().and_then(|c| c.as_text()).map(|t| t.text.clone()).unwrap_or_default();
    let serde_text = text.strip_prefix(RMCP_ARGUMENTS_PREFIX).unwrap_or(&text);
    ToolOutput::error(format!("Invalid arguments: {serde_text}")).into_result()
}

impl DarkMatter {
    /// A server whose tools call `mesh`; `events` are the node events this session forwards.
    pub fn new(mesh: Arc<dyn Mesh>, events: async_channel::Receiver<Event>) -> Self {
        Self {
            mesh,
            events,
            tool_router: Self::tool_router(),
            min_level: Arc::new(AtomicU8::new(0)),
            notifier_started: Arc::new(AtomicBool::new(false)),
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Forwards node events to the client until the session or the node ends.
    fn start_notifier(&self, peer: rmcp::Peer<RoleServer>) {
        if self.notifier_started.swap(true, Ordering::SeqCst) {
            return;
        }
        let events = self.events.clone();
        let min_level = self.min_level.clone();
        tokio::spawn(async move {
            while let Ok(event) = events.recv().await {
                let n = notice(&event);
                if rank(n.level) < min_level.load(Ordering::Relaxed) {
                    continue;
                }
                let mut param = LoggingMessageNotificationParam::new(n.level, n.data);
                param.logger = Some("darkmatter".to_owned());
                if peer.notify_logging_message(param).await.is_err() {
                    break;
                }
            }
        });
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for DarkMatter {
    fn get_info(&self) -> ServerInfo {
        ServerInfo::new(ServerCapabilities::builder().enable_tools().enable_logging().build())
            .with_server_info(Implementation::new("darkmatter", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(_slot) = Slot::take(&self.in_flight) else {
            let text =
                format!("Too many tool calls in flight (at most {CALLS_IN_FLIGHT_MAX}); retry when some have finished");
            return Ok(ToolOutput::error(text).into_result().into());
        };
        let context = ToolCallContext::new(self, request, context);
        Ok(match self.tool_router.call(context).await? {
            CallToolResponse::Complete(result) => arguments_error(result).into(),
            other => other,
        })
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.start_notifier(context.peer);
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.min_level.store(rank(request.level), Ordering::Relaxed);
        Ok(())
    }
}
