//! The sweep as a picture (feature `chart`): an SVG of two panels, round
//! trip time and throughput against message size, log scales, one line per
//! system. plotters' SVG back end only: text is SVG `<text>` (plotters'
//! built-in approximate metrics without its `ttf` feature), so nothing
//! needs a font file or a system library.

use std::path::Path;

use plotters::coord::combinators::IntoLogRange;
use plotters::prelude::*;

use crate::sweep::{format_size, Point, Sweep, System};
use crate::Result;

/// The chart's size in pixels.
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 560;

fn color(system: System) -> RGBColor {
    match system {
        System::Copy => RGBColor(31, 119, 180),
        System::InPlace => RGBColor(214, 39, 40),
        System::Iceoryx2 => RGBColor(44, 160, 44),
        System::Socket => RGBColor(148, 103, 189),
        System::Memcpy => RGBColor(80, 80, 80),
        System::Topic => RGBColor(255, 127, 14),
    }
}

/// A time as `500 ns`, `20 µs`, `1 ms`.
fn format_time(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{} µs", ns / 1e3)
    } else {
        format!("{ns} ns")
    }
}

/// Bytes per second as `10 MB/s`, `1 GB/s`.
fn format_rate(bps: f64) -> String {
    if bps >= 1e9 {
        format!("{} GB/s", bps / 1e9)
    } else {
        format!("{} MB/s", bps / 1e6)
    }
}

/// The range of `values` widened to whole powers of ten.
fn decades(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (low, high) = values.fold((f64::INFINITY, 0f64), |(l, h), v| (l.min(v), h.max(v)));
    if !low.is_finite() || high <= 0.0 {
        return 1.0..10.0;
    }
    10f64.powf(low.log10().floor())..10f64.powf(high.log10().ceil())
}

/// Writes the sweep's chart to `path` (its directory made if missing);
/// `caption` (the machine) goes under the title.
pub fn write_svg(sweep: &Sweep, caption: &str, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let root = SVGBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root
        .titled(
            &format!("shmio Channel across message sizes ({caption})"),
            ("sans-serif", 22),
        )
        .map_err(|e| e.to_string())?;
    let panels = root.split_evenly((1, 2));
    let sizes = || sweep.points.iter().map(|p| p.size as f64);
    let (first, last) = (
        sizes().fold(f64::INFINITY, f64::min),
        sizes().fold(0f64, f64::max),
    );
    let x_range = (first / 1.5)..(last * 1.5);
    let x_label = |x: &f64| {
        let size = x.round() as usize;
        if size.is_power_of_two() {
            format_size(size)
        } else {
            String::new()
        }
    };

    let round_trips = Panel {
        caption: "round trip (parent → child → parent), lower is better",
        y_desc: "time per round trip",
        y_label_width: 70,
        y_label: format_time,
        value: Point::round_trip_ns,
        legend: SeriesLabelPosition::UpperLeft,
    };
    let throughput = Panel {
        caption: "one-way throughput, one producer and one consumer process, higher is better",
        y_desc: "bytes per second",
        y_label_width: 80,
        y_label: format_rate,
        value: Point::bytes_per_second,
        legend: SeriesLabelPosition::LowerRight,
    };
    round_trips.draw(&panels[0], sweep, x_range.clone(), &x_label)?;
    throughput.draw(&panels[1], sweep, x_range, &x_label)?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

/// One of the chart's panels: a value of every system against message size.
struct Panel {
    caption: &'static str,
    y_desc: &'static str,
    /// The room the y axis's labels get, in pixels.
    y_label_width: u32,
    y_label: fn(f64) -> String,
    /// A system's value at a point, if it ran there.
    value: fn(&Point, System) -> Option<f64>,
    legend: SeriesLabelPosition,
}

impl Panel {
    /// Draws the panel on `area`: its axes (log scales, y widened to whole
    /// decades), a line per system, and the legend.
    fn draw(
        self,
        area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
        sweep: &Sweep,
        x_range: std::ops::Range<f64>,
        x_label: &dyn Fn(&f64) -> String,
    ) -> Result<()> {
        let values = decades(sweep.points.iter().flat_map(|p| {
            System::ALL
                .into_iter()
                .filter_map(move |s| (self.value)(p, s))
        }));
        let mut chart = ChartBuilder::on(area)
            .caption(self.caption, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(self.y_label_width)
            .build_cartesian_2d(x_range.log_scale().base(2.0), values.log_scale())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("message size")
            .y_desc(self.y_desc)
            .x_label_formatter(x_label)
            .y_label_formatter(&|y| (self.y_label)(*y))
            .draw()
            .map_err(|e| e.to_string())?;
        for system in System::ALL {
            let line: Vec<(f64, f64)> = sweep
                .points
                .iter()
                .filter_map(|p| Some((p.size as f64, (self.value)(p, system)?)))
                .collect();
            draw_line(&mut chart, system, line)?;
        }
        chart
            .configure_series_labels()
            .position(self.legend)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<
        plotters::coord::combinators::LogCoord<f64>,
        plotters::coord::combinators::LogCoord<f64>,
    >,
>;

/// One system's line, with a point at each size and a legend entry.
fn draw_line(chart: &mut Chart, system: System, line: Vec<(f64, f64)>) -> Result<()> {
    if line.is_empty() {
        return Ok(());
    }
    let color = color(system);
    let style = ShapeStyle::from(&color).stroke_width(2);
    chart
        .draw_series(LineSeries::new(line.clone(), style))
        .map_err(|e| e.to_string())?
        .label(system.label())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    chart
        .draw_series(
            line.into_iter()
                .map(|point| Circle::new(point, 3, color.filled())),
        )
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sweep of three sizes where every system ran, as its chart.
    #[test]
    fn the_chart_has_both_panels_and_every_system() {
        let sweep = crate::sweep::made_up(&[64, 4096, 1 << 20]);
        let path =
            std::env::temp_dir().join(format!("shmio-chart-test-{}.svg", std::process::id()));
        write_svg(&sweep, "a test", &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        for text in [
            "round trip (parent",
            "one-way throughput",
            "time per round trip",
            "bytes per second",
        ] {
            assert!(svg.contains(text), "no {text:?} in the chart");
        }
        for system in System::ALL {
            assert!(svg.contains(system.label()), "no line for {system:?}");
        }
    }
}
