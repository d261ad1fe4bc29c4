//! Metrics over simulated time: counters, periodic samples, the CSV and the SVG plot.

use std::fmt::Write as _;

use plotters::prelude::*;

/// Cumulative counters, bumped as things happen.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// Deliveries attempted by original senders (one per target).
    pub intended: u64,
    /// Of those, received by their targets.
    pub delivered: u64,
    /// Deliveries acknowledged to senders (`routed_to`).
    pub acked: u64,
    /// Transport errors handed to nodes (timeouts, refused, unresolved).
    pub transport_errors: u64,
    /// Requests answered 429.
    pub rate_limited: u64,
    /// Requests answered another 4xx/5xx.
    pub refused: u64,
    /// Requests answered 2xx.
    pub ok: u64,
    /// Health checks sent / answered 200.
    pub health_sent: u64,
    /// See `health_sent`.
    pub health_ok: u64,
    /// Forwards carried (transmits of forwarded messages).
    pub forwarded: u64,
    /// Agents the nodes spawned.
    pub spawns: u64,
    /// Spawns a limit held back (each reported once).
    pub spawns_refused: u64,
    /// Envelopes the adversary took off the wire (not counted as deliveries attempted).
    pub intercepted: u64,
    /// Adversary injections / refused.
    pub forgeries: u64,
    /// See `forgeries`.
    pub forgeries_refused: u64,
    /// Beacons sent / datagrams handed in.
    pub beacons: u64,
    /// See `beacons`.
    pub datagrams: u64,
    /// Commands issued / failed.
    pub commands: u64,
    /// See `commands`.
    pub command_errors: u64,
    /// Connections formed (Connected events, both ends counted).
    pub connected_events: u64,
    /// Crashes, restarts, address moves.
    pub crashes: u64,
    /// See `crashes`.
    pub restarts: u64,
    /// See `crashes`.
    pub moves: u64,
    /// Pending requests the acceptance policy accepted / rejected from peers' opinions.
    pub decided_accepted: u64,
    /// See `decided_accepted`.
    pub decided_rejected: u64,
    /// Peer updates accepted.
    pub peer_updates: u64,
    /// Peers found again at a new URL by a lookup after deliveries to them failed.
    pub urls_recovered: u64,
    /// Lookups that found nothing to adopt.
    pub peers_not_found: u64,
    /// Body bytes the nodes encoded: request bodies they sent, reply bodies, beacon payloads.
    pub wire_bytes_out: u64,
    /// Body bytes the nodes decoded: request bodies, response bodies and datagrams handed in.
    pub wire_bytes_in: u64,
    /// Record bytes the nodes persisted (keys and values).
    pub persisted_bytes: u64,
}

/// One sample.
#[derive(Clone, Debug, Default)]
pub struct Row {
    /// Simulated time, s.
    pub t_s: f64,
    /// Events processed so far.
    pub events: u64,
    /// Nodes up.
    pub nodes_up: u32,
    /// Connections (sum of node degrees / 2).
    pub connections: u64,
    /// Counters at this time.
    pub c: Counters,
    /// Partitions in force.
    pub partitions: usize,
    /// Events waiting.
    pub queue: usize,
}

/// Samples plus delivery accounting by send window.
pub struct Metrics {
    /// Sampling interval, µs.
    pub interval_us: u64,
    /// Samples.
    pub rows: Vec<Row>,
    /// Deliveries attempted, by the window they were sent in.
    pub intended_by_window: Vec<u64>,
    /// Deliveries received, by the window they were sent in.
    pub delivered_by_window: Vec<u64>,
    /// Health checks sent, by window.
    pub health_sent_by_window: Vec<u64>,
    /// Health checks answered 200, by the window they were sent in (so a window's ratio never
    /// exceeds 1, whenever the answers arrive).
    pub health_ok_by_window: Vec<u64>,
    /// Delivery counting toward the "after" figure starts at this time, if marked.
    pub measure_from_us: Option<u64>,
    /// Attempted / received deliveries sent after `measure_from_us` (and before `tail_from_us`).
    pub after: (u64, u64),
    /// Messages sent from here on may still be in flight at the end: not counted in `after`.
    pub tail_from_us: u64,
}

impl Metrics {
    /// Empty metrics.
    pub fn new(interval_us: u64) -> Self {
        Self {
            interval_us: interval_us.max(1),
            rows: Vec::new(),
            intended_by_window: Vec::new(),
            delivered_by_window: Vec::new(),
            health_sent_by_window: Vec::new(),
            health_ok_by_window: Vec::new(),
            measure_from_us: None,
            after: (0, 0),
            tail_from_us: u64::MAX,
        }
    }

    /// The window of time `t_us`.
    pub fn window(&self, t_us: u64) -> usize {
        (t_us / self.interval_us) as usize
    }

    /// One delivery attempted at `t_us`.
    pub fn intend(&mut self, t_us: u64) {
        let w = self.window(t_us);
        bump(&mut self.intended_by_window, w);
        if self.measure_from_us.is_some_and(|m| t_us >= m) && t_us < self.tail_from_us {
            self.after.0 += 1;
        }
    }

    /// One health check sent at `t_us`.
    pub fn health_sent(&mut self, t_us: u64) {
        let w = self.window(t_us);
        bump(&mut self.health_sent_by_window, w);
    }

    /// One health check sent at `sent_us` answered 200.
    pub fn health_ok(&mut self, sent_us: u64) {
        let w = self.window(sent_us);
        bump(&mut self.health_ok_by_window, w);
    }

    /// The share of the health checks sent in window `w` that were answered 200.
    pub fn health_ratio(&self, w: usize) -> Option<f64> {
        let sent = *self.health_sent_by_window.get(w)?;
        (sent > 0).then(|| *self.health_ok_by_window.get(w).unwrap_or(&0) as f64 / sent as f64)
    }

    /// One delivery received of a message sent at `sent_us`.
    pub fn deliver(&mut self, sent_us: u64) {
        let w = self.window(sent_us);
        bump(&mut self.delivered_by_window, w);
        if self.measure_from_us.is_some_and(|m| sent_us >= m) && sent_us < self.tail_from_us {
            self.after.1 += 1;
        }
    }

    /// Delivery ratio of messages sent in window `w`, if any were.
    pub fn window_ratio(&self, w: usize) -> Option<f64> {
        let i = *self.intended_by_window.get(w)?;
        (i > 0).then(|| *self.delivered_by_window.get(w).unwrap_or(&0) as f64 / i as f64)
    }

    /// Delivery ratio over messages sent before `until_us`.
    pub fn ratio_until(&self, until_us: u64) -> Option<f64> {
        let last = self.window(until_us);
        let i: u64 = self.intended_by_window.iter().take(last).sum();
        let d: u64 = self.delivered_by_window.iter().take(last).sum();
        (i > 0).then(|| d as f64 / i as f64)
    }

    /// Delivery ratio after the mark.
    pub fn ratio_after(&self) -> Option<f64> {
        (self.after.0 > 0).then(|| self.after.1 as f64 / self.after.0 as f64)
    }

    /// The CSV text.
    pub fn csv(&self) -> String {
        let mut s = String::from("time_s,events,nodes_up,connections,deliveries_sent,delivery_ratio,transport_errors,rate_limited,refused,health_ok_ratio,forwarded,partitions,queue\n");
        let mut prev = Row::default();
        for (w, r) in self.rows.iter().enumerate() {
            let d = |a: u64, b: u64| a.saturating_sub(b);
            // A row at time t describes the interval that ends at t.
            let window = w.checked_sub(1);
            let health = window.and_then(|w| self.health_ratio(w)).map(|x| format!("{x:.4}")).unwrap_or_default();
            let ratio = window.and_then(|w| self.window_ratio(w)).map(|x| format!("{x:.4}")).unwrap_or_default();
            let _ = writeln!(
                s,
                "{:.0},{},{},{},{},{},{},{},{},{},{},{},{}",
                r.t_s,
                r.events,
                r.nodes_up,
                r.connections,
                window.and_then(|w| self.intended_by_window.get(w).copied()).unwrap_or(0),
                ratio,
                d(r.c.transport_errors, prev.c.transport_errors),
                d(r.c.rate_limited, prev.c.rate_limited),
                d(r.c.refused, prev.c.refused),
                health,
                d(r.c.forwarded, prev.c.forwarded),
                r.partitions,
                r.queue
            );
            prev = r.clone();
        }
        s
    }

    /// The SVG plot: delivery and health ratios above, connections and errors below.
    pub fn svg(&self, title: &str) -> Result<String, String> {
        let mut out = String::new();
        {
            let root = SVGBackend::with_string(&mut out, (900, 640)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| e.to_string())?;
            let (top, bottom) = root.split_vertically(320);
            let t_max = self.rows.last().map_or(1.0, |r| r.t_s).max(1.0);
            let mut ratios: Vec<(f64, f64)> = Vec::new();
            let mut health: Vec<(f64, f64)> = Vec::new();
            let mut prev = Row::default();
            let mut conns = Vec::new();
            let mut errors = Vec::new();
            let mut limited = Vec::new();
            for (w, r) in self.rows.iter().enumerate() {
                if let Some(x) = w.checked_sub(1).and_then(|w| self.window_ratio(w)) {
                    ratios.push((r.t_s, x));
                }
                if let Some(x) = w.checked_sub(1).and_then(|w| self.health_ratio(w)) {
                    health.push((r.t_s, x));
                }
                conns.push((r.t_s, r.connections as f64));
                errors.push((r.t_s, r.c.transport_errors.saturating_sub(prev.c.transport_errors) as f64));
                limited.push((r.t_s, r.c.rate_limited.saturating_sub(prev.c.rate_limited) as f64));
                prev = r.clone();
            }
            let mut chart = ChartBuilder::on(&top)
                .caption(format!("{title}: delivery and health"), ("sans-serif", 18))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(50)
                .build_cartesian_2d(0.0..t_max, 0.0..1.05)
                .map_err(|e| e.to_string())?;
            chart.configure_mesh().x_desc("simulated time (s)").y_desc("ratio").draw().map_err(|e| e.to_string())?;
            chart
                .draw_series(LineSeries::new(ratios, &BLUE))
                .map_err(|e| e.to_string())?
                .label("delivery ratio (by send window)")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
            chart
                .draw_series(LineSeries::new(health, &GREEN))
                .map_err(|e| e.to_string())?
                .label("health checks answered")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::LowerRight)
                .draw()
                .map_err(|e| e.to_string())?;

            // Connections count in the hundreds, errors per interval may be a handful: each gets its own
            // axis (connections on the left, errors and 429s on the right), so neither flattens the other.
            let conn_max = conns.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
            let err_max = errors.iter().chain(&limited).map(|p| p.1).fold(1.0, f64::max) * 1.1;
            let mut chart = ChartBuilder::on(&bottom)
                .caption("connections (left); transport errors and 429s per interval (right)", ("sans-serif", 16))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(60)
                .right_y_label_area_size(60)
                .build_cartesian_2d(0.0..t_max, 0.0..conn_max)
                .map_err(|e| e.to_string())?
                .set_secondary_coord(0.0..t_max, 0.0..err_max);
            chart
                .configure_mesh()
                .x_desc("simulated time (s)")
                .y_desc("connections")
                .draw()
                .map_err(|e| e.to_string())?;
            chart.configure_secondary_axes().y_desc("per interval").draw().map_err(|e| e.to_string())?;
            chart
                .draw_series(LineSeries::new(conns, &BLACK))
                .map_err(|e| e.to_string())?
                .label("connections")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
            chart
                .draw_secondary_series(LineSeries::new(errors, &RED))
                .map_err(|e| e.to_string())?
                .label("transport errors")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
            chart
                .draw_secondary_series(LineSeries::new(limited, &MAGENTA))
                .map_err(|e| e.to_string())?
                .label("429 answers")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], MAGENTA));
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::MiddleRight)
                .draw()
                .map_err(|e| e.to_string())?;
            root.present().map_err(|e| e.to_string())?;
        }
        Ok(out)
    }
}

fn bump(v: &mut Vec<u64>, w: usize) {
    if v.len() <= w {
        v.resize(w + 1, 0);
    }
    v[w] += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_health_answer_counts_in_the_window_it_was_sent_in() {
        let mut m = Metrics::new(10);
        // Two checks sent in window 0, one in window 1; both of window 0 are answered in window 1.
        m.health_sent(3);
        m.health_sent(7);
        m.health_sent(12);
        m.health_ok(3);
        m.health_ok(7);
        assert_eq!(m.health_ratio(0), Some(1.0));
        assert_eq!(m.health_ratio(1), Some(0.0), "window 1's own check is unanswered, whatever arrived in it");
        assert_eq!(m.health_ratio(2), None, "nothing was sent in window 2");
    }
}
