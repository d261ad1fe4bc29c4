//! Line charts of fractions over time, shared by the study's plot and the sweep's.

use plotters::coord::Shift;
use plotters::prelude::*;

/// A plotted line.
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Colour.
    pub color: RGBColor,
    /// Points.
    pub points: Vec<(f64, f64)>,
    /// Dashed rather than solid.
    pub dashed: bool,
    /// Stroke width.
    pub width: u32,
}

impl Series {
    /// A solid line of width 2.
    pub fn new(label: String, color: RGBColor, points: Vec<(f64, f64)>) -> Self {
        Self { label, color, points, dashed: false, width: 2 }
    }
}

/// A step curve: the fraction of `total` reached by each sorted time, until `end` (at most ~300 steps).
pub fn cumulative(sorted: &[f64], total: f64, end: f64) -> Vec<(f64, f64)> {
    let mut pts = Vec::new();
    let total = total.max(1.0);
    let stride = sorted.len().div_ceil(300).max(1);
    let first = sorted.first().copied().unwrap_or(end);
    pts.push((first.min(end), 0.0));
    for (k, &t) in sorted.iter().enumerate() {
        if (k + 1) % stride == 0 || k + 1 == sorted.len() {
            let y0 = pts.last().map_or(0.0, |p| p.1);
            pts.push((t, y0));
            pts.push((t, (k + 1) as f64 / total));
        }
    }
    let y = pts.last().map_or(0.0, |p| p.1);
    pts.push((end, y));
    pts
}

/// Draws lines on `area` (fractions 0..1 on y).
#[allow(clippy::too_many_arguments)]
pub fn line_chart(
    area: &DrawingArea<SVGBackend, Shift>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    x: (f64, f64),
    log_x: bool,
    legend: SeriesLabelPosition,
    series: &[Series],
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<_>| e.to_string();
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart.configure_mesh().max_light_lines(1).x_desc(x_desc).y_desc(y_desc).draw().map_err(e)?;
            for s in series {
                let (color, width) = (s.color, s.width);
                let drawn = if s.dashed {
                    chart
                        .draw_series(DashedLineSeries::new(s.points.iter().copied(), 6, 4, color.stroke_width(width)))
                        .map_err(e)?
                } else {
                    chart
                        .draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(width)))
                        .map_err(e)?
                };
                drawn
                    .label(s.label.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(width)));
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(legend)
                .label_font(("sans-serif", 12))
                .draw()
                .map_err(e)?;
        }};
    }
    let builder = || {
        let mut b = ChartBuilder::on(area);
        b.caption(title, ("sans-serif", 16)).margin(10).x_label_area_size(35).y_label_area_size(50);
        b
    };
    if log_x {
        draw!(builder().build_cartesian_2d((x.0..x.1).log_scale(), 0.0..1.05).map_err(e)?);
    } else {
        draw!(builder().build_cartesian_2d(x.0..x.1, 0.0..1.05).map_err(e)?);
    }
    Ok(())
}
