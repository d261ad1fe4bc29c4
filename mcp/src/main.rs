//! `darkmatter`: the MCP server an MCP client starts. Configured only by `DARKMATTER_*` variables.

use std::process::ExitCode;

use darkmatter_mcp::{app, attach::Paths, node, profiles};
use runtime_smol::RuntimeConfig;

fn main() -> ExitCode {
    one_malloc_arena();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("darkmatter: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let config = RuntimeConfig::from_env().map_err(|e| e.to_string())?;
    let _profile = profiles::of(config.client); // for agent spawning, which comes later
    let paths =
        Paths::for_dir(&config.state_dir).map_err(|e| format!("cannot use {}: {e}", config.state_dir.display()))?;
    let socket = paths.socket.clone();
    app::run(move || node::start(config, &socket), paths)
}

/// glibc gives each thread that allocates its own arena; with a dozen mostly idle threads that
/// leaves hundreds of KiB resident for nothing. One arena is plenty for this workload. Must run
/// before any thread starts.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
