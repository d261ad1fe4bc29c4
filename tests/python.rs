//! The Python side of interop tests: a virtualenv with `dmagent==0.5.3` (the original node) and the
//! official `mcp` client package, created on first use so that `cargo test --workspace` works on a
//! fresh machine with nothing but the package registries.
//!
//! 0.5.3 imports `mcp` 1.x APIs; an unpinned `mcp[cli]` pulls 2.x, which it cannot import, hence `<2`.
//! Every other package of each venv is pinned by a constraints file (`interop/constraints.txt`,
//! `mcp_client/constraints.txt`), so interop cannot drift when a dependency publishes a release; a
//! venv whose recorded install differs from today's pins is made again.

use std::fs::File;
use std::path::PathBuf;
use std::process::Command;

/// Packages installed into the venv.
/// Flask serves 0.5.3's own anchor (`interop/anchor_053.py`, vendored), which the wheel does not ship.
pub const PACKAGES: &[&str] = &["dmagent==0.5.3", "mcp[cli]<2", "flask"];

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
    let constraints = tests_file(&["interop", "constraints.txt"])?;
    let mut args: Vec<&str> = PACKAGES.to_vec();
    args.extend(["-c", &constraints]);
    venv("pyvenv", &args)
}

/// The path of a file under `tests/`, as a string for pip's arguments.
fn tests_file(parts: &[&str]) -> Result<String, String> {
    let mut path = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    path.extend(parts);
    path.to_str().map(str::to_owned).ok_or_else(|| "non-UTF-8 path".to_owned())
}

/// The python of a venv with the official MCP client package pinned in
/// `tests/mcp_client/requirements.txt` (a venv of its own: 0.5.3 needs `mcp<2`).
pub fn mcp_client_python() -> Result<PathBuf, String> {
    let requirements = tests_file(&["mcp_client", "requirements.txt"])?;
    let constraints = tests_file(&["mcp_client", "constraints.txt"])?;
    venv("mcp-venv", &["-r", &requirements, "-c", &constraints])
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
    let wanted = install_record(pip_args)?;
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        // Absent, half-made, or made from other pins: start from an empty venv.
        let _ = std::fs::remove_dir_all(&dir);
        let base = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
        run(Command::new(&base).args(["-m", "venv"]).arg(&dir))?;
        run(Command::new(&py).args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]).args(pip_args))?;
        std::fs::write(&stamp, &wanted).map_err(|e| e.to_string())?;
    }
    drop(lock);
    Ok(py)
}

/// What a venv records of its install: pip's arguments and the text of every file they name, so an
/// edited constraints or requirements file makes the venv again.
fn install_record(pip_args: &[&str]) -> Result<String, String> {
    let mut record = pip_args.join("\n");
    for pair in pip_args.windows(2) {
        if matches!(pair[0], "-r" | "-c") {
            let text = std::fs::read_to_string(pair[1]).map_err(|e| format!("{}: {e}", pair[1]))?;
            record.push_str("\n--- ");
            record.push_str(pair[1]);
            record.push('\n');
            record.push_str(&text);
        }
    }
    Ok(record)
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
