//! The trace: one record per event, hashed always, rendered as text only when asked.
//!
//! A record is `(time, node, kind, a, b, s)`; the text line is a pure function of it (and of the
//! node-name width, which depends only on the node count), so two runs with equal trace hashes have
//! byte-identical traces. Lines have fixed columns: time (s.ms), node, event, detail:
//!
//! ```text
//! 000012.345 n03 recv      POST /message from n01 -> 200
//! ```

use crate::rng::{mix64, FxHasher};
use std::hash::Hasher;

/// No node / no peer.
pub const NONE: u64 = u64::MAX;
/// A peer that is not a sim node (the health monitor, the adversary).
pub const EXTERNAL: u64 = u64::MAX - 1;

/// What happened. Each kind fixes how `a`, `b` and `s` are read.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A transmit left: a = target, b = method << 8 | outcome, s = path.
    Send,
    /// A request was handled: a = source, b = method << 16 | status, s = path.
    Recv,
    /// A request reached an address where nothing listens: a = source, b = method, s = path.
    Down,
    /// An answer reached the caller: a = peer, b = status (0 = transport error), s = path or error.
    Resp,
    /// A response was dropped because its caller crashed: a = peer, s = path.
    Lost,
    /// A command was issued: a = peer (or NONE), s = verb.
    Cmd,
    /// A command finished: b = 1 ok / 0 error, s = verb or error text.
    Done,
    /// Event::Connected: a = peer.
    Connected,
    /// Event::Disconnected: a = peer, b = by_peer.
    Disconnected,
    /// Event::ConnectionRequested: a = peer, s = request id.
    Requested,
    /// Event::RequestDecided: a = requester, b = accepted.
    Decided,
    /// Event::MessageReceived: a = sender, b = 1 when the inbox shows it unverified, s = message id.
    Message,
    /// Event::PeerUpdated: a = peer, s = URL.
    PeerUpdated,
    /// Event::Refused: b = status, s = path.
    Refused,
    /// handle_timeout ran.
    Timer,
    /// A beacon went out: a = receivers.
    Beacon,
    /// A datagram was handed in: a = sender.
    Datagram,
    /// A fault or repair: s = what, a = count or peer.
    Fault,
    /// An invariant probe ran: s = what, a = count.
    Check,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Send => "send",
            Kind::Recv => "recv",
            Kind::Down => "down",
            Kind::Resp => "resp",
            Kind::Lost => "lost",
            Kind::Cmd => "cmd",
            Kind::Done => "done",
            Kind::Connected
            | Kind::Disconnected
            | Kind::Requested
            | Kind::Decided
            | Kind::Message
            | Kind::PeerUpdated
            | Kind::Refused => "event",
            Kind::Timer => "timer",
            Kind::Beacon => "beacon",
            Kind::Datagram => "dgram",
            Kind::Fault => "fault",
            Kind::Check => "check",
        }
    }
}

/// HTTP method codes used in records.
pub fn method_code(m: proto_core::Method) -> u64 {
    match m {
        proto_core::Method::Get => 1,
        proto_core::Method::Post => 2,
        proto_core::Method::Other => 3,
    }
}

fn method_word(code: u64) -> &'static str {
    match code {
        1 => "GET",
        2 => "POST",
        _ => "OTHER",
    }
}

/// Network outcomes of a transmit (low byte of `b` in [`Kind::Send`]).
pub mod outcome {
    /// On its way.
    pub const SENT: u64 = 0;
    /// Lost (random or burst loss).
    pub const LOST: u64 = 1;
    /// Blocked by a partition.
    pub const BLOCKED: u64 = 2;
    /// No node has that address.
    pub const UNRESOLVED: u64 = 3;
    /// A private address the node asked us not to reach.
    pub const FORBIDDEN: u64 = 4;
    /// Taken off the wire by the adversary.
    pub const INTERCEPTED: u64 = 5;
}

/// The running trace.
pub struct Trace {
    hash: u64,
    records: u64,
    lines: Option<Vec<String>>,
    width: usize,
}

impl Trace {
    /// A trace for `nodes` nodes; `capture` keeps the text lines.
    pub fn new(nodes: u32, capture: bool) -> Self {
        let digits = nodes.saturating_sub(1).max(1).to_string().len().max(2);
        Self { hash: 0x6a09_e667_f3bc_c908, records: 0, lines: capture.then(Vec::new), width: digits + 1 }
    }

    /// Records one event.
    #[inline]
    pub fn rec(&mut self, t_us: u64, node: u64, kind: Kind, a: u64, b: u64, s: &str) {
        let mut h = FxHasher::default();
        h.write(s.as_bytes());
        let mut x = self.hash;
        for w in [t_us, node, kind as u64, a, b, s.len() as u64, h.finish()] {
            x = mix64(x ^ w);
        }
        self.hash = x;
        self.records += 1;
        if self.lines.is_some() {
            let line = self.render(t_us, node, kind, a, b, s);
            if let Some(lines) = self.lines.as_mut() {
                lines.push(line);
            }
        }
    }

    /// The name of node `i` in this trace (`n03`).
    pub fn name(&self, i: u64) -> String {
        match i {
            NONE => "sim".to_owned(),
            EXTERNAL => "ext".to_owned(),
            _ => format!("n{:0w$}", i, w = self.width - 1),
        }
    }

    fn render(&self, t_us: u64, node: u64, kind: Kind, a: u64, b: u64, s: &str) -> String {
        let peer = self.name(a);
        let detail = match kind {
            Kind::Send => {
                let tail = match b & 0xff {
                    outcome::SENT => "",
                    outcome::LOST => " (lost)",
                    outcome::BLOCKED => " (partitioned)",
                    outcome::UNRESOLVED => " (no such host)",
                    outcome::INTERCEPTED => " (intercepted)",
                    _ => " (private address refused)",
                };
                let to = if a == NONE { String::new() } else { format!(" -> {peer}") };
                format!("{} {s}{to}{tail}", method_word(b >> 8))
            }
            Kind::Recv => format!("{} {s} from {peer} -> {}", method_word(b >> 16), b & 0xffff),
            Kind::Down => format!("{} {s} from {peer} (nothing listening)", method_word(b)),
            Kind::Resp if b == 0 => format!("error from {peer}: {s}"),
            Kind::Resp => format!("{b} {s} from {peer}"),
            Kind::Lost => format!("{s} from {peer} (caller gone)"),
            Kind::Cmd if a == NONE => s.to_owned(),
            Kind::Cmd => format!("{s} {peer}"),
            Kind::Done if b == 1 => format!("{s} ok"),
            Kind::Done => format!("error: {s}"),
            Kind::Connected => format!("connected {peer}"),
            Kind::Disconnected => format!("disconnected {peer}{}", if b == 1 { " (by peer)" } else { "" }),
            Kind::Requested => format!("connection requested by {peer} ({s})"),
            Kind::Decided => {
                format!("request of {peer} {} by peer opinion", if b == 1 { "accepted" } else { "rejected" })
            }
            Kind::Message => format!("message {s} from {peer}{}", if b == 1 { " (unverified)" } else { "" }),
            Kind::PeerUpdated => format!("peer {peer} now at {s}"),
            Kind::Refused => format!("refused {s} {b}"),
            Kind::Timer => String::new(),
            Kind::Beacon => format!("to {a} receivers"),
            Kind::Datagram => format!("beacon from {peer}"),
            Kind::Fault | Kind::Check if a == NONE => s.to_owned(),
            Kind::Fault | Kind::Check => format!("{s} {a}"),
        };
        let ms = t_us / 1000;
        format!(
            "{:06}.{:03} {:<w$} {:<9} {}",
            ms / 1000,
            ms % 1000,
            self.name(node),
            kind.word(),
            detail,
            w = self.width
        )
        .trim_end()
        .to_owned()
    }

    /// The hash of every record so far, as 16 hex digits.
    pub fn hash_hex(&self) -> String {
        format!("{:016x}", mix64(self.hash ^ self.records))
    }

    /// Records so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The captured lines (empty unless capturing).
    pub fn lines(&self) -> &[String] {
        self.lines.as_deref().unwrap_or(&[])
    }

    /// The captured trace as one text.
    pub fn text(&self) -> String {
        let mut s = self.lines().join("\n");
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_fixed_columns() {
        let mut t = Trace::new(4, true);
        t.rec(12_345_678, 3, Kind::Recv, 1, (2 << 16) | 200, "/message");
        t.rec(5_000, NONE, Kind::Fault, NONE, 0, "partition starts");
        assert_eq!(t.lines()[0], "000012.345 n03 recv      POST /message from n01 -> 200");
        assert_eq!(t.lines()[1], "000000.005 sim fault     partition starts");
    }

    #[test]
    fn hash_depends_on_every_field() {
        let run = |s: &str, b: u64| {
            let mut t = Trace::new(4, false);
            t.rec(1, 2, Kind::Recv, 3, b, s);
            t.hash_hex()
        };
        assert_eq!(run("/x", 200), run("/x", 200));
        assert_ne!(run("/x", 200), run("/y", 200));
        assert_ne!(run("/x", 200), run("/x", 201));
    }
}
