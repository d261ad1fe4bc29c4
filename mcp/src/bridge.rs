//! The seam between the MCP server (tokio, on its own thread) and the node side (smol).
//!
//! The MCP side holds a [`Bridge`]: it sends each tool call as a [`Call`] over an async-channel and
//! awaits the answer on a one-shot channel; node events come back as [`Notice`]s on another channel.
//! async-channel needs no reactor, so neither runtime ever polls the other's futures.
//!
//! The node side runs [`serve`]: every call becomes its own task, so a long
//! `darkmatter_wait_for_response` never holds up other calls.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::attach::Client;
use crate::events::{Hub, Notice};
use crate::mesh::Mesh;
use crate::tools::{self, Args, ToolOutput};

/// Tool calls queued between the two sides at most (each waits for a task slot).
pub const CALLS_QUEUED_MAX: usize = 256;

/// Tool calls running at once at most, per session; beyond it a call fails at once (a client that
/// floods the node is told so instead of growing a queue).
pub const CALLS_IN_FLIGHT_MAX: usize = 128;

/// One tool call crossing the bridge.
pub struct Call {
    /// The tool.
    pub tool: String,
    /// Its arguments.
    pub args: Args,
    /// Where the answer goes.
    pub reply: async_channel::Sender<ToolOutput>,
}

/// The MCP side's end.
#[derive(Clone)]
pub struct Bridge {
    calls: async_channel::Sender<Call>,
    /// Node events for this session.
    pub notices: async_channel::Receiver<Notice>,
}

impl Bridge {
    /// Runs a tool on the node side and waits for its answer.
    pub async fn call(&self, tool: &str, args: Args) -> ToolOutput {
        let (tx, rx) = async_channel::bounded(1);
        let call = Call { tool: tool.to_owned(), args, reply: tx };
        if self.calls.send(call).await.is_err() {
            return ToolOutput::error("The DarkMatter node has stopped; restart this MCP server.");
        }
        rx.recv().await.unwrap_or_else(|_| {
            ToolOutput::error("The DarkMatter node stopped before answering; restart this MCP server.")
        })
    }
}

/// A bridge and the node side's receiving end.
pub fn channel(notices: async_channel::Receiver<Notice>) -> (Bridge, async_channel::Receiver<Call>) {
    let (tx, rx) = async_channel::bounded(CALLS_QUEUED_MAX);
    (Bridge { calls: tx, notices }, rx)
}

/// What answers tool calls on the node side: the node in this process, or the node of another
/// process of the same project that this one attached to.
#[derive(Clone)]
pub enum Backend {
    /// The node runs here.
    Local {
        /// The node.
        mesh: Arc<dyn Mesh>,
        /// Its events, fanned out.
        hub: Hub,
    },
    /// Another process runs the node; calls go over its socket.
    Remote(Client),
}

impl Backend {
    /// A local backend; starts nothing (the caller pumps `mesh.events()` into `hub`).
    pub fn local(mesh: Arc<dyn Mesh>, hub: Hub) -> Self {
        Backend::Local { mesh, hub }
    }

    /// Runs one tool call.
    pub async fn call(&self, tool: &str, args: Args) -> ToolOutput {
        match self {
            Backend::Local { mesh, .. } => tools::call(mesh.as_ref(), tool, args).await,
            Backend::Remote(c) => c.call(tool, args).await,
        }
    }

    /// A new session's event stream (`None` when too many sessions listen).
    pub fn subscribe(&self) -> Option<async_channel::Receiver<Notice>> {
        match self {
            Backend::Local { hub, .. } => hub.subscribe(),
            Backend::Remote(c) => c.hub().subscribe(),
        }
    }
}

/// Answers calls from `calls` with `backend`, one task per call on `ex`, until every bridge is gone.
pub async fn serve(calls: async_channel::Receiver<Call>, backend: Backend, ex: Arc<smol::Executor<'static>>) {
    let in_flight = Arc::new(AtomicUsize::new(0));
    while let Ok(call) = calls.recv().await {
        if in_flight.fetch_add(1, Ordering::SeqCst) >= CALLS_IN_FLIGHT_MAX {
            in_flight.fetch_sub(1, Ordering::SeqCst);
            let _ = call.reply.try_send(ToolOutput::error(format!(
                "Too many tool calls in flight (at most {CALLS_IN_FLIGHT_MAX}); retry when some have finished"
            )));
            continue;
        }
        let backend = backend.clone();
        let in_flight = in_flight.clone();
        ex.spawn(async move {
            let out = backend.call(&call.tool, call.args).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            let _ = call.reply.send(out).await;
        })
        .detach();
    }
}
