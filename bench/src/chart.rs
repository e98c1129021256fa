//! The sweep as a picture (feature `chart`): an SVG of two panels, round
//! trip time and throughput against message size, log scales, one line per
//! system. plotters' SVG back end only: text is SVG `<text>` (plotters'
//! built-in approximate metrics without its `ttf` feature), so nothing
//! needs a font file or a system library.

use std::path::Path;

use plotters::coord::combinators::IntoLogRange;
use plotters::prelude::*;

use crate::sweep::{format_size, Sweep, System};
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

    // Left: round trip time.
    let times = decades(sweep.points.iter().flat_map(|p| {
        System::ALL
            .into_iter()
            .filter_map(move |s| p.round_trip_ns(s))
    }));
    let mut chart = ChartBuilder::on(&panels[0])
        .caption(
            "round trip (parent → child → parent), lower is better",
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range.clone().log_scale().base(2.0), times.log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("message size")
        .y_desc("time per round trip")
        .x_label_formatter(&x_label)
        .y_label_formatter(&|y| format_time(*y))
        .draw()
        .map_err(|e| e.to_string())?;
    for system in System::ALL {
        let line: Vec<(f64, f64)> = sweep
            .points
            .iter()
            .filter_map(|p| Some((p.size as f64, p.round_trip_ns(system)?)))
            .collect();
        draw_line(&mut chart, system, line)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(|e| e.to_string())?;

    // Right: throughput.
    let rates = decades(sweep.points.iter().flat_map(|p| {
        System::ALL
            .into_iter()
            .filter_map(move |s| p.bytes_per_second(s))
    }));
    let mut chart = ChartBuilder::on(&panels[1])
        .caption(
            "one-way throughput, one producer and one consumer process, higher is better",
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(x_range.log_scale().base(2.0), rates.log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("message size")
        .y_desc("bytes per second")
        .x_label_formatter(&x_label)
        .y_label_formatter(&|y| format_rate(*y))
        .draw()
        .map_err(|e| e.to_string())?;
    for system in System::ALL {
        let line: Vec<(f64, f64)> = sweep
            .points
            .iter()
            .filter_map(|p| Some((p.size as f64, p.bytes_per_second(system)?)))
            .collect();
        draw_line(&mut chart, system, line)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
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
