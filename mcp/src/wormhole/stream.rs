//! `GET /api/events`: the node's events pushed to the page as server-sent events, so the page
//! redraws when something happens and never polls. Each event is one `data:` line of the event's
//! JSON (the form `darkmatter-node --events` prints). A stream lives at most [`STREAM_LIFETIME_MS`]:
//! the browser's `EventSource` reconnects by itself, and the reconnect passes the session check
//! again, so a logged-out or expired session stops receiving within that time.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use smol::io::AsyncReadExt;
use smol::net::TcpStream;

use super::http;
use super::Wormhole;

/// Longest life of one event stream, in ms.
pub const STREAM_LIFETIME_MS: u64 = 10 * 60 * 1_000;
/// How often the stream looks at the sent messages, in ms: a webhook update or response to one of
/// them (a `received` ack, a 0.5.3 reply) changes the timeline without raising a node event, so the
/// server notices it here and pushes `changed`; the page still never polls.
pub const OUTBOX_WATCH_MS: u64 = 1_000;
/// A comment line is sent after this many quiet watches, so proxies and the browser keep the stream.
pub const HEARTBEAT_WATCHES: u32 = 15;

/// Streams events to `stream` until the client leaves or the lifetime ends.
pub async fn serve(wh: &Wormhole, mut stream: TcpStream, _session: String) {
    let _slot = Release(wh);
    let Some(events) = wh.hub.subscribe() else {
        let _ = http::write_all(&mut stream, &http::Response::error(503, "Too many listeners").bytes()).await;
        return;
    };
    let head = http::head(200, "text/event-stream", None, &[]);
    if http::write_all(&mut stream, &head).await.is_err() {
        return;
    }
    // One event at once so the page draws its first state without waiting.
    if http::write_all(&mut stream, b"event: hello\ndata: {}\n\n").await.is_err() {
        return;
    }
    let end = Instant::now() + Duration::from_millis(STREAM_LIFETIME_MS);
    let mut reader = stream.clone();
    let mut seen = outbox_fingerprint(wh).await;
    let mut quiet = 0u32;
    while Instant::now() < end {
        let event = async { events.recv().await.ok().map(Some) };
        let tick = async {
            smol::Timer::after(Duration::from_millis(OUTBOX_WATCH_MS)).await;
            Some(None)
        };
        // The client sends nothing on a stream: a read that ends means it left, so its place is freed
        // now rather than at the next write.
        let left = async {
            let mut byte = [0u8; 1];
            let _ = reader.read(&mut byte).await;
            None
        };
        let next = smol::future::or(event, smol::future::or(tick, left)).await;
        let frame = match next {
            None => return, // the node stopped, or the client left
            Some(Some(e)) => format!("event: node\ndata: {}\n\n", serde_json::to_string(&e).unwrap_or_default()),
            Some(None) => {
                let now = outbox_fingerprint(wh).await;
                quiet += 1;
                if now != seen {
                    seen = now;
                    "event: changed\ndata: {}\n\n".to_owned()
                } else if quiet >= HEARTBEAT_WATCHES {
                    quiet = 0;
                    ": keep-alive\n\n".to_owned()
                } else {
                    continue;
                }
            }
        };
        if http::write_all(&mut stream, frame.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// What of the sent messages the timeline shows: ids, states, reply counts (and, through
/// [`super::api::OUTBOX_SHOWN_MAX`] reads, their updates).
async fn outbox_fingerprint(wh: &Wormhole) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let Ok(list) = wh.mesh.command(proto_core::Command::ListSent).await else { return 0 };
    for m in list["messages"].as_array().into_iter().flatten().take(super::api::OUTBOX_SHOWN_MAX) {
        m.to_string().hash(&mut h);
        // Answered and expired messages change only by their count, already hashed above.
        if let (Some(id), Some("active")) = (m["message_id"].as_str(), m["status"].as_str()) {
            let full = wh.mesh.command(proto_core::Command::GetSent { message_id: id.to_owned() }).await;
            full.map(|v| v["updates"].to_string()).unwrap_or_default().hash(&mut h);
        }
    }
    h.finish()
}

struct Release<'a>(&'a Wormhole);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::AcqRel);
    }
}
