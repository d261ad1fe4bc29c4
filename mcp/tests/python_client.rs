//! Runs the Python MCP-client test (tests/mcp_client/test_darkmatter.py) against this build.
//!
//! The interpreter is `DARKMATTER_MCP_PYTHON`, else `<workspace>/target/mcp-venv/bin/python`
//! (created by `.ci/run`). Without one the test fails under CI (`CI` set) and is skipped otherwise.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn python_mcp_client_end_to_end() {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned();
    let python = std::env::var_os("DARKMATTER_MCP_PYTHON").map(PathBuf::from).unwrap_or_else(|| workspace.join("target/mcp-venv/bin/python"));
    if !python.exists() {
        assert!(std::env::var_os("CI").is_none(), "CI must provide the MCP client virtualenv at {} (see tests/mcp_client/README.md)", python.display());
        eprintln!("skipped: no Python MCP client at {} (see tests/mcp_client/README.md)", python.display());
        return;
    }
    let script = workspace.join("tests/mcp_client/test_darkmatter.py");
    let out = Command::new(&python).arg(&script).arg(env!("CARGO_BIN_EXE_darkmatter")).output().expect("run the Python MCP client test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let failures: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(out.status.success(), "Python MCP client test failed:\n{}\n--- stderr ---\n{}", failures.join("\n"), String::from_utf8_lossy(&out.stderr));
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(summary.ends_with(" 0 failed"), "unexpected summary: {summary}");
}
