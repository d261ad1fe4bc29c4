//! The anchor (`runtime_smol::anchor::serve`, what `darkmatter anchor` runs) built inside this test
//! crate, so tests can kill and restart it as a process: `smol-anchor <state dir> [port] [host]`.

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let state_dir = args.next().unwrap_or_else(|| ".darkmatter-anchor".to_owned()).into();
    let port = args.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let defaults = runtime_smol::anchor::AnchorConfig::default();
    let host = args.next().and_then(|h| h.parse().ok()).unwrap_or(defaults.host);
    let config = runtime_smol::anchor::AnchorConfig { host, port, state_dir, handle_signals: true };
    match runtime_smol::anchor::serve(config) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("smol-anchor: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
