//! What a session talks to: a client of the node ([`Mesh`]) and the fan-out of its events ([`Hub`]).
//!
//! The MCP server runs on tokio (its own thread) and the node side on smol; every [`Mesh`] method
//! answers over async-channel, which needs no reactor, so a tool handler awaits the node directly
//! and neither runtime ever polls the other's futures.

use std::sync::Arc;

use proto_core::Event;

use crate::events::Hub;
use crate::mesh::Mesh;

/// A node client and its events, shared by the sessions of one process.
#[derive(Clone)]
pub struct Backend {
    /// The node: the handle of the node in this process, or the client of another process's node.
    pub mesh: Arc<dyn Mesh>,
    /// Its events, fanned out.
    pub hub: Hub,
}

impl Backend {
    /// A backend over `mesh`; starts nothing (the caller pumps `mesh.events()` into `hub`).
    pub fn local(mesh: Arc<dyn Mesh>, hub: Hub) -> Self {
        Backend { mesh, hub }
    }

    /// A new session's event stream (`None` when too many sessions listen).
    pub fn subscribe(&self) -> Option<async_channel::Receiver<Event>> {
        self.hub.subscribe()
    }
}
