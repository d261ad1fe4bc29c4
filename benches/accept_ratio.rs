//! Instruction counts of the inbound accept path against a bare `verify_strict`, for a ratio that a
//! loaded machine cannot disturb. Run under callgrind, counting only inside the measured functions:
//!
//! ```sh
//! cargo build --release -p darkmatter-benches --bin accept-ratio
//! valgrind --tool=callgrind --toggle-collect='*measured_verify*' target/release/accept-ratio verify 200
//! valgrind --tool=callgrind --toggle-collect='*measured_accept*' target/release/accept-ratio accept 200
//! ```
//!
//! Each run prints its mode and count; divide the two `Collected` totals.

use std::hint::black_box;

use darkmatter_benches::{drain, first_reply_status, fixture, inbox_ids};
use proto_core::{Command, CommandId, InboundId, InboundRequest, Method};

/// One whole inbound accept: the request in, every output drained.
#[inline(never)]
fn measured_accept(f: &mut darkmatter_benches::Fixture, body: Vec<u8>, n: u64) -> u16 {
    let req = InboundRequest {
        id: InboundId(n),
        method: Method::Post,
        path: "/__darkmatter__/message".into(),
        body,
        source: Some("127.0.0.1".parse().unwrap()),
    };
    f.b.handle_request(f.now, req);
    first_reply_status(&mut f.b)
}

/// One bare `verify_strict` of the same canonical bytes.
#[inline(never)]
fn measured_verify(f: &darkmatter_benches::Fixture) -> bool {
    proto_core::sign::verify_hex(f.key.key(), &f.canonical, &f.signature).is_ok()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "accept".into());
    let count: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(200);
    let mut f = fixture(count.max(1));
    match mode.as_str() {
        "verify" => {
            for _ in 0..count {
                assert!(black_box(measured_verify(&f)));
            }
        }
        _ => {
            for n in 0..count {
                let body = f.bodies[n].clone();
                assert_eq!(measured_accept(&mut f, body, n as u64), 200);
                // Keep the inbox from filling (not measured).
                f.b.handle_command(f.now, CommandId(1_000_000 + n as u64), Command::ListInbox);
                for id in inbox_ids(&mut f.b) {
                    f.b.handle_command(
                        f.now,
                        CommandId(2_000_000 + n as u64),
                        Command::GetMessage { message_id: id, consume: true },
                    );
                    drain(&mut f.b);
                }
            }
        }
    }
    println!("{mode} {count}");
}
