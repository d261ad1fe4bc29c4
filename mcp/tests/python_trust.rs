//! Runs the Python MCP-client trust and shard test (tests/mcp_client/test_trust_shards.py) against this build.
//! Four real nodes on 127.0.0.1: peer opinions on pending requests and how much each counted, the policy's hold, shard
//! trust thresholds and sync when trust rises, status new_context.
//!
//! The interpreter is `DARKMATTER_MCP_PYTHON`, else `<workspace>/target/mcp-venv/bin/python`, a venv
//! with the official `mcp` client package that the test creates on first use (pip from PyPI).

use std::path::PathBuf;
use std::process::Command;

#[test]
fn python_trust_and_shards_end_to_end() {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned();
    let python = match std::env::var_os("DARKMATTER_MCP_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => darkmatter_tests::python::mcp_client_python()
            .expect("create the MCP client virtualenv (python3 -m venv, pip install mcp)"),
    };
    let script = workspace.join("tests/mcp_client/test_trust_shards.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(env!("CARGO_BIN_EXE_darkmatter"))
        .output()
        .expect("run the Python MCP client trust test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let failures: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(
        out.status.success(),
        "Python MCP client trust test failed:\n{}\n--- stderr ---\n{}",
        failures.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(summary.ends_with(" 0 failed"), "unexpected summary: {summary}");
}
