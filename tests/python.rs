//! The Python side of interop tests: a virtualenv with `dmagent==0.5.3` (the original node) and the
//! official `mcp` client package, created on first use so that `cargo test --workspace` works on a
//! fresh machine with nothing but the package registries.
//!
//! 0.5.3 imports `mcp` 1.x APIs; an unpinned `mcp[cli]` pulls 2.x, which it cannot import, hence `<2`.

use std::fs::File;
use std::path::PathBuf;
use std::process::Command;

/// Packages installed into the venv.
pub const PACKAGES: &[&str] = &["dmagent==0.5.3", "mcp[cli]<2"];

/// The venv's directory: `<workspace>/target/pyvenv`.
pub fn venv_dir() -> PathBuf {
    venv_named("pyvenv")
}

fn venv_named(name: &str) -> PathBuf {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf();
    workspace.join("target").join(name)
}

/// The dmagent 0.5.3 venv's python (see [`venv`]).
pub fn python() -> Result<PathBuf, String> {
    venv("pyvenv", PACKAGES)
}

/// The python of a venv with the official MCP client package pinned in
/// `tests/mcp_client/requirements.txt` (a venv of its own: 0.5.3 needs `mcp<2`).
pub fn mcp_client_python() -> Result<PathBuf, String> {
    let requirements = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("mcp_client").join("requirements.txt");
    let requirements = requirements.to_str().ok_or("non-UTF-8 path")?.to_owned();
    venv("mcp-venv", &["-r", &requirements])
}

/// The python of venv `<workspace>/target/<name>`, filled by `pip install <pip_args>`, creating and filling it first if
/// needed. Serialised across processes with a file lock, so parallel test binaries install once.
pub fn venv(name: &str, pip_args: &[&str]) -> Result<PathBuf, String> {
    let dir = venv_named(name);
    std::fs::create_dir_all(dir.parent().expect("target dir")).map_err(|e| e.to_string())?;
    let lock = File::create(dir.with_extension("lock")).map_err(|e| e.to_string())?;
    lock.lock().map_err(|e| e.to_string())?;
    let py = dir.join("bin").join("python");
    let stamp = dir.join(".installed");
    if !stamp.exists() {
        let base = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
        run(Command::new(&base).args(["-m", "venv"]).arg(&dir))?;
        run(Command::new(&py).args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]).args(pip_args))?;
        std::fs::write(&stamp, pip_args.join("\n")).map_err(|e| e.to_string())?;
    }
    drop(lock);
    Ok(py)
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
