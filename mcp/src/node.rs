//! Starting the node in this process: runtime-smol's [`NodeHandle`] (which is a [`crate::mesh::Mesh`]).

use std::path::Path;
use std::sync::Arc;

use runtime_smol::{NodeHandle, Running, RuntimeConfig};

/// Starts the node `config` describes, spawning agents through `launcher` when given. When it stops
/// (a signal, a failed commit, or our own shutdown) the process exits after removing `socket`: an MCP
/// server without its node is no use.
pub fn start(
    config: RuntimeConfig,
    socket: &Path,
    launcher: Option<Arc<dyn runtime_smol::spawn::Launcher>>,
) -> Result<NodeHandle, String> {
    let started = match launcher {
        Some(l) => runtime_smol::start_with_launcher(config, l),
        None => runtime_smol::start(config),
    };
    let (handle, running) = started.map_err(|e| e.to_string())?;
    let socket = socket.to_owned();
    std::thread::Builder::new()
        .name("dm-watch".to_owned())
        .spawn(move || exit_when_stopped(running, &socket))
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    Ok(handle)
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
