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
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf();
    workspace.join("target").join("pyvenv")
}

/// The venv's python, creating and filling the venv first if needed. Serialised across processes
/// with a file lock, so parallel test binaries install once.
pub fn python() -> Result<PathBuf, String> {
    let dir = venv_dir();
    std::fs::create_dir_all(dir.parent().expect("target dir")).map_err(|e| e.to_string())?;
    let lock = File::create(dir.with_extension("lock")).map_err(|e| e.to_string())?;
    lock.lock().map_err(|e| e.to_string())?;
    let py = dir.join("bin").join("python");
    let stamp = dir.join(".installed");
    if !stamp.exists() {
        let base = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
        run(Command::new(&base).args(["-m", "venv"]).arg(&dir))?;
        run(Command::new(&py).args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]).args(PACKAGES))?;
        std::fs::write(&stamp, PACKAGES.join("\n")).map_err(|e| e.to_string())?;
    }
    drop(lock);
    Ok(py)
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed: {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}
