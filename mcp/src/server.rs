//! The MCP server: 22 tools over stdio (rmcp), each forwarded across the [`Bridge`].
//!
//! Node events reach the client as `notifications/message` (MCP logging) with logger `darkmatter`
//! and `data` = the event object ([`crate::events::notice`]); the server declares the `logging`
//! capability and honours `logging/setLevel`.

#![allow(deprecated)] // rmcp marks MCP logging deprecated (SEP-2577); it is still what clients show.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{
    CallToolResult, Implementation, JsonObject, LoggingLevel, LoggingMessageNotificationParam, ServerCapabilities,
    ServerInfo, SetLevelRequestParams,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{tool, tool_handler, tool_router, ErrorData, RoleServer, ServerHandler};
use schemars::JsonSchema;

use crate::bridge::Bridge;
use crate::events::Notice;
use crate::instructions::INSTRUCTIONS;
use crate::tools::{config, connections, discovery, identity, knowledge, messaging, trust, NoArgs, ToolOutput};

/// The input schema of an argument struct.
fn schema<T: JsonSchema + 'static>() -> Arc<JsonObject> {
    rmcp::handler::server::common::schema_for_input::<T>().expect("argument structs are objects")
}

/// The MCP server of one session.
#[derive(Clone)]
pub struct DarkMatter {
    bridge: Bridge,
    tool_router: ToolRouter<Self>,
    /// Minimum level of notifications sent (`logging/setLevel`), as [`rank`].
    min_level: Arc<AtomicU8>,
    notifier_started: Arc<AtomicBool>,
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

fn level_of(name: &str) -> LoggingLevel {
    match name {
        "notice" => LoggingLevel::Notice,
        "warning" => LoggingLevel::Warning,
        _ => LoggingLevel::Info,
    }
}

fn result(out: ToolOutput) -> CallToolResult {
    if out.is_error {
        CallToolResult::structured_error(out.value)
    } else {
        CallToolResult::structured(out.value)
    }
}

impl DarkMatter {
    /// A server whose tools run across `bridge`.
    pub fn new(bridge: Bridge) -> Self {
        Self {
            bridge,
            tool_router: Self::tool_router(),
            min_level: Arc::new(AtomicU8::new(0)),
            notifier_started: Arc::new(AtomicBool::new(false)),
        }
    }

    async fn run(&self, tool: &str, args: JsonObject) -> CallToolResult {
        result(self.bridge.call(tool, args).await)
    }

    /// Forwards node events to the client until the session or the node ends.
    fn start_notifier(&self, peer: rmcp::Peer<RoleServer>) {
        if self.notifier_started.swap(true, Ordering::SeqCst) {
            return;
        }
        let notices = self.bridge.notices.clone();
        let min_level = self.min_level.clone();
        tokio::spawn(async move {
            while let Ok(Notice { level, data }) = notices.recv().await {
                let level = level_of(level);
                if rank(level) < min_level.load(Ordering::Relaxed) {
                    continue;
                }
                let mut param = LoggingMessageNotificationParam::new(level, data);
                param.logger = Some("darkmatter".to_owned());
                if peer.notify_logging_message(param).await.is_err() {
                    break;
                }
            }
        });
    }
}

#[tool_router]
impl DarkMatter {
    #[tool(name = "darkmatter_connection", description = connections::CONNECTION, input_schema = schema::<connections::ConnectionArgs>(),
        annotations(title = "Connect, accept, reject or disconnect", read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = true))]
    async fn connection(&self, args: JsonObject) -> CallToolResult {
        self.run("darkmatter_connection", args).await
    }

    #[tool(name = "darkmatter_list_connections", description = connections::LIST_CONNECTIONS, input_schema = schema::<NoArgs>(),
        annotations(title = "List connections", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false))]
    async fn list_connections(&self, args: JsonObject) -> CallToolResult {
        self.run("darkmatter_list_connections", args).await
    }

    #[tool(name = "darkmatter_list_pending_requests", description = connections::LIST_PENDING, input_schema = schema::<NoArgs>(),
        annotations(title = "List pending connection requests", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false))]
    async fn list_pending_requests(&self, args: JsonObject) -> CallToolResult {
        self.run("darkmatter_list_pending_requests", args).await
    }

    #[tool(name = "darkmatter_send_message", description = messaging::SEND, input_schema = schema::<messaging::SendArgsIn>(),
        annotations(title = "Send, reply to or forward a message", read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = true))]
    async fn send_message(&self, args: JsonObject) -> CallToolResult {
        self.run("darkmatter_send_message", args).await
    }

    #[tool(name = "darkmatter_list_inbox", description = messaging::LIST_INBOX, input_schema = schema::<NoArgs>(),
        annotations(title = "List inbox", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false))]
    async fn list_inbox(&self, args: JsonObject) -> CallToolResult {
        self.run("darkmatter_list_inbox", args).await
    }

    #[tool(name = "darkmatter_get_message", description = messaging::GET_MESSAGE, input_schema = schema::<messaging::GetMessageArgs>(),
        annotations(title = "Read an inbox message", read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = false))]
    async fn get_message(&self, args: JsonObject) -> CallToolResult {
        self.run("darkmatter_get_message", args).await
    }

    #[tool(name = "darkmatter_list_messages", description = messaging::LIST_SENT, input_schema = schema::<NoArgs>(),
        annotations(title = "List sent messages", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false))]
    async fn list_messages(&self, args: JsonObject) -> CallToolResult {
        self.run("darkmatter_list_messages", args).await
    }

    #[tool(name = "darkmatter_get_sent_message", description = messaging::GET_SENT, input_schema = schema::<messaging::MessageIdArgs>(),
        annotations(title = "Read a sent message and its responses", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false))]
    async fn get_sent_message(&self, args: JsonObject) -> CallToolResult {
        self.run("darkmatter_get_sent_message", args).await
    }

    #[tool(name = "darkmatter_expire_message", description = messaging::EXPIRE, input_schema = schema::<messaging::MessageIdArgs>(),
        annotations(title = "Expire a sent message", read_only_hint = false, destructive_hint = true, idempotent_hint = true, open_world_hint = true))]
    async fn expire_message(&self, args: JsonObject) -> CallToolResult {
        self.run("darkmatter_expire_message", args).await
    }

    #[tool(name = "darkmatter_wait_for_response", description = messaging::WAIT, input_schema = schema::<messaging::WaitArgs>(),
        annotations(title = "Wait for a reply", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = true))]
    async fn wait_for_response(&self, args: JsonObject) -> CallToolResult {
        self.run("darkmatter_wait_for_response", args).await
    }

    #[tool(name = "darkmatter_get_identity", description = identity::GET_IDENTITY, input_schema = schema::<NoArgs>(),
        annotations(title = "Show my identity", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false))]
    async fn get_identity(&self, args: JsonObject) -> CallToolResult {
        self.run("darkmatter_get_identity", args).await
    }

    #[tool(name = "darkmatter_update_bio", description = identity::UPDATE_BIO, input_schema = schema::<identity::UpdateBioArgs>(),
        annotations(title = "Update my bio", read_only_hint = false, destructive_hint = true, idempotent_hint = true, open_world_hint = true))]
    async fn update_bio(&self, args: JsonObject) -> CallToolResult {
        self.run("darkmatter_update_bio", args).await
    }

    #[tool(name = "darkmatter_set_status", description = identity::SET_STATUS, input_schema = schema::<identity::SetStatusArgs>(),
        annotations(title = "Go active or inactive", read_only_hint = false, destructive_hint = false, idempotent_hint = true, open_world_hint = false))]
    async fn set_status(&self, args: JsonObject) -> CallToolResult {
        self.run("darkmatter_set_status", args).await
    }

    #[tool(name = "darkmatter_status", description = identity::STATUS, input_schema = schema::<NoArgs>(),
        annotations(title = "Status at a glance", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false))]
    async fn status(&self, args: JsonObject) -> CallToolResult {
        self.run("darkmatter_status", args).await
    }

    #[tool(name = "darkmatter_network_info", description = discovery::NETWORK_INFO, input_schema = schema::<NoArgs>(),
        annotations(title = "Network info", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false))]
    async fn network_info(&self, args: JsonObject) -> CallToolResult {
        self.run("darkmatter_network_info", args).await
    }

    #[tool(name = "darkmatter_discover_local", description = discovery::DISCOVER_LOCAL, input_schema = schema::<NoArgs>(),
        annotations(title = "Discover agents on this machine and LAN", read_only_hint = true, destructive_hint = false, idempotent_hint = false, open_world_hint = true))]
    async fn discover_local(&self, args: JsonObject) -> CallToolResult {
        self.run("darkmatter_discover_local", args).await
    }

    #[tool(name = "darkmatter_discover_domain", description = discovery::DISCOVER_DOMAIN, input_schema = schema::<discovery::DomainArgs>(),
        annotations(title = "Discover the agent of a domain", read_only_hint = true, destructive_hint = false, idempotent_hint = false, open_world_hint = true))]
    async fn discover_domain(&self, args: JsonObject) -> CallToolResult {
        self.run("darkmatter_discover_domain", args).await
    }

    #[tool(name = "darkmatter_set_impression", description = trust::SET_IMPRESSION, input_schema = schema::<trust::SetImpressionArgs>(),
        annotations(title = "Set my impression of an agent", read_only_hint = false, destructive_hint = true, idempotent_hint = true, open_world_hint = false))]
    async fn set_impression(&self, args: JsonObject) -> CallToolResult {
        self.run("darkmatter_set_impression", args).await
    }

    #[tool(name = "darkmatter_get_impression", description = trust::GET_IMPRESSION, input_schema = schema::<trust::AgentIdArgs>(),
        annotations(title = "Get my impression of an agent", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false))]
    async fn get_impression(&self, args: JsonObject) -> CallToolResult {
        self.run("darkmatter_get_impression", args).await
    }

    #[tool(name = "darkmatter_create_shard", description = knowledge::CREATE_SHARD, input_schema = schema::<knowledge::CreateShardArgs>(),
        annotations(title = "Share a knowledge shard", read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = true))]
    async fn create_shard(&self, args: JsonObject) -> CallToolResult {
        self.run("darkmatter_create_shard", args).await
    }

    #[tool(name = "darkmatter_view_shards", description = knowledge::VIEW_SHARDS, input_schema = schema::<knowledge::ViewShardsArgs>(),
        annotations(title = "Browse knowledge shards", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false))]
    async fn view_shards(&self, args: JsonObject) -> CallToolResult {
        self.run("darkmatter_view_shards", args).await
    }

    #[tool(name = "darkmatter_set_rate_limit", description = config::SET_RATE_LIMIT, input_schema = schema::<config::RateLimitArgs>(),
        annotations(title = "Set a rate limit", read_only_hint = false, destructive_hint = false, idempotent_hint = true, open_world_hint = false))]
    async fn set_rate_limit(&self, args: JsonObject) -> CallToolResult {
        self.run("darkmatter_set_rate_limit", args).await
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for DarkMatter {
    fn get_info(&self) -> ServerInfo {
        ServerInfo::new(ServerCapabilities::builder().enable_tools().enable_logging().build())
            .with_server_info(Implementation::new("darkmatter", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
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
