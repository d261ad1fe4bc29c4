//! SIGINT and SIGTERM: the first one stops the node gracefully, a second one exits at once.

use std::io;
use std::thread;

use async_channel::Sender;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

/// Exit status when a second signal arrives during a graceful stop (128 + SIGINT, as a shell reports).
pub const FORCED_EXIT_STATUS: i32 = 130;

/// Watches the signals on a thread of its own; closing `stop` starts the graceful shutdown.
/// Close the returned handle to end the thread.
pub fn install(stop: Sender<()>) -> io::Result<Handle> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    let handle = signals.handle();
    thread::Builder::new().name("dm-signals".to_owned()).spawn(move || {
        let mut seen = 0;
        for signal in signals.forever() {
            seen += 1;
            if seen > 1 {
                eprintln!("darkmatter: second signal {signal}, exiting now");
                std::process::exit(FORCED_EXIT_STATUS);
            }
            eprintln!("darkmatter: signal {signal}, shutting down");
            stop.close();
        }
    })?;
    Ok(handle)
}
