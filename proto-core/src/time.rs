//! Time as the driver hands it in. The core never reads a clock.
//!
//! Two clocks exist because they answer different questions:
//! - [`Now::mono_ms`] is monotonic milliseconds from an origin the driver picks; every timer and rate
//!   window uses it, so a wall-clock jump cannot open a rate limit or fire a timer early.
//! - [`Now::wall_us`] is Unix time in microseconds; only signatures, freshness checks and records that
//!   peers or the agent read use it.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// The two clocks at the moment an input happened.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Now {
    /// Monotonic milliseconds since the driver's origin.
    pub mono_ms: u64,
    /// Wall-clock Unix time in microseconds.
    pub wall_us: i64,
}

impl Now {
    /// Both clocks at once.
    pub fn new(mono_ms: u64, wall_us: i64) -> Self {
        Self { mono_ms, wall_us }
    }

    /// The wall clock as 0.5.3 writes it: `YYYY-MM-DDTHH:MM:SS.ffffff+00:00`.
    ///
    /// Always six fraction digits: Python 3.10's `fromisoformat` only accepts 0, 3 or 6.
    pub fn iso(&self) -> String {
        format_iso(self.wall_us)
    }

    /// Wall-clock Unix seconds (LAN beacons carry these).
    pub fn unix_s(&self) -> i64 {
        self.wall_us.div_euclid(1_000_000)
    }
}

/// Formats Unix microseconds as `YYYY-MM-DDTHH:MM:SS.ffffff+00:00`.
pub fn format_iso(wall_us: i64) -> String {
    match DateTime::<Utc>::from_timestamp_micros(wall_us) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Micros, false),
        // Out of chrono's range (year > 262143): unreachable for any real clock; keep it total.
        None => "1970-01-01T00:00:00.000000+00:00".to_owned(),
    }
}

/// Parses an ISO 8601 / RFC 3339 timestamp with an explicit offset (`Z` or `±HH:MM`), with or
/// without a fraction, into Unix microseconds. A timestamp without an offset is refused, as 0.5.3 does.
pub fn parse_iso(text: &str) -> Option<i64> {
    if text.len() > TIMESTAMP_CHARS_MAX {
        return None;
    }
    let t = DateTime::parse_from_rfc3339(text).ok()?;
    Some(t.timestamp_micros())
}

/// Longest timestamp string we parse; a real one is 32 characters.
pub const TIMESTAMP_CHARS_MAX: usize = 64;

/// Whether `stamp_us` lies within `window_s` seconds of `now_us`, either side (0.5.3 accepts both).
pub fn is_fresh(now_us: i64, stamp_us: i64, window_s: u64) -> bool {
    let window_us = (window_s as i128) * 1_000_000;
    ((now_us as i128) - (stamp_us as i128)).abs() <= window_us
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_python_isoformat() {
        assert_eq!(format_iso(1_767_225_600_000_000), "2026-01-01T00:00:00.000000+00:00");
        assert_eq!(format_iso(1_767_225_600_485_544), "2026-01-01T00:00:00.485544+00:00");
    }

    #[test]
    fn parses_the_forms_python_sends_and_accepts() {
        let base = 1_767_225_600_000_000;
        assert_eq!(parse_iso("2026-01-01T00:00:00.000000+00:00"), Some(base));
        assert_eq!(parse_iso("2026-01-01T00:00:00+00:00"), Some(base));
        assert_eq!(parse_iso("2026-01-01T00:00:00Z"), Some(base));
        assert_eq!(parse_iso("2026-01-01T00:00:00.123Z"), Some(base + 123_000));
        assert_eq!(parse_iso("2026-01-01T01:00:00+01:00"), Some(base));
    }

    #[test]
    fn refuses_naive_and_garbage_timestamps() {
        assert_eq!(parse_iso("2026-01-01T00:00:00"), None);
        assert_eq!(parse_iso("yesterday"), None);
        assert_eq!(parse_iso(""), None);
    }

    #[test]
    fn freshness_is_symmetric_and_inclusive() {
        let now = 1_000_000_000_000;
        assert!(is_fresh(now, now - 300_000_000, 300));
        assert!(is_fresh(now, now + 300_000_000, 300));
        assert!(!is_fresh(now, now - 300_000_001, 300));
        assert!(!is_fresh(now, now + 300_000_001, 300));
        assert!(!is_fresh(i64::MAX, i64::MIN, 300));
    }
}
