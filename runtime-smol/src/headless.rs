//! The `darkmatter-node` binary: a node without an MCP front end, controlled over stdin/stdout.
//!
//! ```text
//! darkmatter-node [--no-stdin] [--events]
//! ```
//! Configuration comes from the `DARKMATTER_*` variables; state lives in `./.darkmatter/`. The first
//! stdout line is `{"ready":true,...}` with the agent id and URL; then see [`crate::control`] for the
//! line protocol. The node stops on SIGINT/SIGTERM, on `{"cmd":"shutdown"}`, or at the end of stdin
//! (unless `--no-stdin`). Exit status: 0 after a clean stop, 1 when the node failed, 2 for bad
//! configuration or arguments.

use std::io::{BufRead, Read, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use smol::lock::Semaphore;

use crate::control::{self, Request};
use crate::{start, NodeHandle, RuntimeConfig};

/// Longest control line read, in bytes; a longer line is answered with an error and skipped.
pub const CONTROL_LINE_BYTES_MAX: usize = 1024 * 1024;
/// Control commands running at once; further lines wait.
pub const CONTROL_IN_FLIGHT_MAX: usize = 64;
/// Lines read ahead of the commands running.
pub const CONTROL_QUEUE_MAX: usize = 16;

const USAGE: &str = "usage: darkmatter-node [--no-stdin] [--events]\n  Runs a DarkMatter node configured by DARKMATTER_* variables; state in ./.darkmatter/.\n  stdin: one JSON command per line, e.g. {\"cmd\":\"status\"}; stdout: one JSON result per line.";

type Out = Arc<Mutex<std::io::Stdout>>;

fn emit(out: &Out, v: &Value) {
    let mut o = out.lock().unwrap_or_else(|p| p.into_inner());
    let _ = writeln!(o, "{v}");
    let _ = o.flush();
}

/// Runs the binary; returns its exit status.
pub fn main() -> ExitCode {
    let mut use_stdin = true;
    let mut events = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--no-stdin" => use_stdin = false,
            "--events" => events = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("darkmatter-node: unknown argument '{other}'\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let config = match RuntimeConfig::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("darkmatter-node: {e}");
            return ExitCode::from(2);
        }
    };
    let (handle, running) = match start(config) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("darkmatter-node: {e}");
            return ExitCode::FAILURE;
        }
    };
    let out: Out = Arc::new(Mutex::new(std::io::stdout()));
    let mut ready = handle.info();
    ready["ready"] = Value::Bool(true);
    emit(&out, &ready);
    eprintln!(
        "darkmatter-node: agent {} listening at {} (state {})",
        handle.agent_id(),
        handle.public_url(),
        handle.state_path().display()
    );
    if events {
        let (rx, out) = (handle.events(), out.clone());
        let _ = std::thread::Builder::new().name("dm-events".to_owned()).spawn(move || {
            while let Ok(e) = rx.recv_blocking() {
                emit(&out, &serde_json::to_value(&e).expect("an event is plain data"));
            }
        });
    }
    if use_stdin {
        let (handle, out) = (handle.clone(), out.clone());
        let _ = std::thread::Builder::new().name("dm-control".to_owned()).spawn(move || control_loop(handle, out));
    }
    match running.wait() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("darkmatter-node: stopped: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Reads stdin until EOF, running each line as a command; then stops the node.
fn control_loop(handle: NodeHandle, out: Out) {
    let (tx, rx) = async_channel::bounded::<Vec<u8>>(CONTROL_QUEUE_MAX);
    let reader = std::thread::Builder::new().name("dm-stdin".to_owned()).spawn(move || {
        let mut stdin = std::io::stdin().lock();
        loop {
            let mut line = Vec::new();
            match (&mut stdin).take(CONTROL_LINE_BYTES_MAX as u64 + 1).read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line.len() > CONTROL_LINE_BYTES_MAX && line.last() != Some(&b'\n') {
                // Skip the rest of the oversized line; the empty marker is answered as an error.
                let mut sink = Vec::new();
                while matches!((&mut stdin).take(CONTROL_LINE_BYTES_MAX as u64).read_until(b'\n', &mut sink), Ok(n) if n > 0 && sink.last() != Some(&b'\n')) {
                    sink.clear();
                }
                line.clear();
            }
            if tx.send_blocking(line).is_err() {
                return;
            }
        }
    });
    let ex = smol::Executor::new();
    let gate = Arc::new(Semaphore::new(CONTROL_IN_FLIGHT_MAX));
    smol::block_on(ex.run(async {
        while let Ok(line) = rx.recv().await {
            let permit = gate.acquire_arc().await;
            let (handle, out) = (handle.clone(), out.clone());
            ex.spawn(async move {
                if let Some(answer) = run_line(&handle, &line).await {
                    emit(&out, &answer);
                }
                drop(permit);
            })
            .detach();
        }
        // End of stdin: stop the node (commands still running finish or see it stop).
        handle.shutdown().await;
    }));
    let _ = reader.map(|r| r.join());
}

async fn run_line(handle: &NodeHandle, line: &[u8]) -> Option<Value> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return (line.is_empty())
            .then(|| control::answer(None, Err(format!("line longer than {CONTROL_LINE_BYTES_MAX} bytes"))));
    }
    let parsed: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => return Some(control::answer(None, Err(format!("invalid JSON: {e}")))),
    };
    let id = parsed.get("id").cloned();
    let answer = match control::parse(&parsed) {
        Err(e) => control::answer(id.as_ref(), Err(e)),
        Ok(Request::Announce) => control::answer(id.as_ref(), Ok(serde_json::json!({"announced": handle.announce()}))),
        Ok(Request::Shutdown) => {
            let h = handle.clone();
            // Answer first, then stop.
            smol::spawn(async move { h.shutdown().await }).detach();
            control::answer(id.as_ref(), Ok(serde_json::json!({"stopping": true})))
        }
        Ok(request) => control::answer_node(id.as_ref(), control::run(handle, request).await),
    };
    Some(answer)
}
