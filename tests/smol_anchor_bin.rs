//! The anchor (`runtime_smol::anchor::serve`, what `darkmatter anchor` runs) built inside this test
//! crate, so tests can kill and restart it as a process: `smol-anchor <state dir> [port]`.

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let state_dir = args.next().unwrap_or_else(|| ".darkmatter-anchor".to_owned()).into();
    let port = args.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let config = runtime_smol::anchor::AnchorConfig {
        port,
        state_dir,
        handle_signals: true,
        ..runtime_smol::anchor::AnchorConfig::default()
    };
    match runtime_smol::anchor::serve(config) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("smol-anchor: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
