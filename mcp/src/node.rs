//! Starting the node: runtime-smol's [`NodeHandle`] behind the [`Mesh`] trait.

use std::path::Path;
use std::sync::Arc;

use proto_core::{Command, CommandError, Event};
use runtime_smol::{NodeHandle, Running, RuntimeConfig};
use serde_json::Value;

use crate::mesh::{BoxFut, Mesh};

/// runtime-smol's node as a [`Mesh`].
#[derive(Clone)]
pub struct SmolNode(pub NodeHandle);

impl Mesh for SmolNode {
    fn command(&self, command: Command) -> BoxFut<'_, Result<Value, CommandError>> {
        Box::pin(self.0.command(command))
    }

    fn discover_local(&self) -> BoxFut<'_, Result<Value, CommandError>> {
        Box::pin(async move { Ok(self.0.discover_local().await) })
    }

    fn discover_domain(&self, domain: String) -> BoxFut<'_, Result<Value, CommandError>> {
        Box::pin(async move { self.0.discover_domain(&domain).await.map_err(CommandError::Peer) })
    }

    fn events(&self) -> async_channel::Receiver<Event> {
        self.0.events()
    }

    fn shutdown(&self) -> BoxFut<'_, ()> {
        Box::pin(self.0.shutdown())
    }
}

/// Starts the node `config` describes. When it stops (a signal, a failed commit, or our own
/// shutdown) the process exits after removing `socket`: an MCP server without its node is no use.
pub fn start(config: RuntimeConfig, socket: &Path) -> Result<Arc<dyn Mesh>, String> {
    let (handle, running) = runtime_smol::start(config).map_err(|e| e.to_string())?;
    let socket = socket.to_owned();
    std::thread::Builder::new()
        .name("dm-watch".to_owned())
        .spawn(move || exit_when_stopped(running, &socket))
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    Ok(Arc::new(SmolNode(handle)))
}

fn exit_when_stopped(running: Running, socket: &Path) {
    let result = running.wait();
    let _ = std::fs::remove_file(socket);
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("darkmatter: the node stopped: {e}");
            std::process::exit(1)
        }
    }
}
