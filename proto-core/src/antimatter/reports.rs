//! How many disagreement reports each reporter had taken lately: at most
//! [`ANTIMATTER_REPORTS_PER_REPORTER_MAX`] per reporter within [`ANTIMATTER_REPORT_WINDOW_S`], so one
//! connection cannot make the node apply penalties without end, however it spreads them. At most
//! [`ANTIMATTER_REPORT_RECORDS_MAX`] records, oldest dropped first; kept in memory only (a restart
//! forgets them, as it forgets the vouch budget the reports are also charged to).

use std::collections::VecDeque;

use crate::limits::{ANTIMATTER_REPORTS_PER_REPORTER_MAX, ANTIMATTER_REPORT_RECORDS_MAX, ANTIMATTER_REPORT_WINDOW_S};

/// The records: (reporter, when in wall µs), oldest first.
#[derive(Debug, Default)]
pub struct Reports {
    records: VecDeque<(String, i64)>,
}

impl Reports {
    /// Takes one report of `reporter` at `now_us` if it is within its daily bound (and records it);
    /// answers whether it was taken.
    pub fn admit(&mut self, reporter: &str, now_us: i64) -> bool {
        let since = now_us.saturating_sub(ANTIMATTER_REPORT_WINDOW_S * 1_000_000);
        while self.records.front().is_some_and(|r| r.1 < since) {
            self.records.pop_front();
        }
        let taken = self.records.iter().filter(|r| r.0 == reporter).count();
        if taken >= ANTIMATTER_REPORTS_PER_REPORTER_MAX {
            return false;
        }
        if self.records.len() >= ANTIMATTER_REPORT_RECORDS_MAX {
            self.records.pop_front();
        }
        self.records.push_back((reporter.to_owned(), now_us));
        debug_assert!(self.records.len() <= ANTIMATTER_REPORT_RECORDS_MAX);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_US: i64 = ANTIMATTER_REPORT_WINDOW_S * 1_000_000;

    #[test]
    fn a_reporter_is_taken_at_most_the_bound_within_a_day() {
        let mut r = Reports::default();
        for i in 0..ANTIMATTER_REPORTS_PER_REPORTER_MAX {
            assert!(r.admit("b", i as i64), "report {i}");
        }
        assert!(!r.admit("b", 100), "one more than the bound");
        assert!(r.admit("c", 100), "another reporter has its own");
        // The first report leaves the window a day after it was taken, freeing one place.
        assert!(!r.admit("b", DAY_US - 1));
        assert!(r.admit("b", DAY_US + 1));
        assert!(!r.admit("b", DAY_US + 1));
    }

    #[test]
    fn the_records_are_bounded() {
        let mut r = Reports::default();
        for i in 0..ANTIMATTER_REPORT_RECORDS_MAX + 10 {
            assert!(r.admit(&i.to_string(), 0));
        }
        assert_eq!(r.records.len(), ANTIMATTER_REPORT_RECORDS_MAX);
    }
}
