//! The payload sweep and the scaling group: shmio's channel against its
//! peers at every message size, and with several producer and consumer
//! processes against an in-process channel. `shmio-bench --sweep` runs
//! both (and draws the sweep, [`crate::chart`]); `shmio bench --sweep`
//! runs a short sweep.
//!
//! For each size, two groups of the paired harness ([`harness::run`]):
//!
//! - round trips (parent to child and back, both sides busy-polling
//!   where the system can): shmio copying ([`channel::SizedRoundTrip`],
//!   `send`/`try_recv_into`), shmio in place (`send_with`/`try_recv_with`),
//!   iceoryx2 (loan, write, send; Linux, feature `iceoryx2`), a Unix
//!   socket pair (Unix; blocking `write`/`read`);
//! - one-way throughput, one producer process and one consumer: the same
//!   systems ([`channel::Throughput`], `iceoryx2::Throughput`,
//!   `socket::SocketThroughput`), the topic with one subscriber reading
//!   in place (`topic::FanOut`), and raw `memcpy` into a mapping the size
//!   of the ring, one process (the limit, [`copy::Target`]).
//!
//! Rings hold [`capacity`] messages: [`ring_bytes`] of ring, between 4
//! and 1024 slots (iceoryx2's subscriber buffer alike, and the memcpy
//! target's slots).

use std::fmt::{self, Write as _};

use crate::harness::{self, Named, Progress, Results, Settings, Side};
use crate::report::format_ns;
#[cfg(all(target_os = "linux", feature = "iceoryx2"))]
use crate::sides::iceoryx2;
#[cfg(unix)]
use crate::sides::socket;
use crate::sides::{channel, copy, scaling, topic};
use crate::Result;

/// Every size of the full sweep.
pub const SIZES: [usize; 7] = [8, 64, 512, 4 << 10, 64 << 10, 1 << 20, 4 << 20];
/// The sizes of `shmio bench --sweep`.
pub const SHORT_SIZES: [usize; 4] = [64, 4 << 10, 64 << 10, 1 << 20];
/// The bytes of a throughput ring (at least 4 slots), unless
/// [`RING_BYTES_VAR`] says otherwise: the 64 KiB ring of the default
/// table (64 slots).
pub const RING_BYTES: usize = 4 << 20;
/// The variable that sets the throughput rings' bytes instead of [`RING_BYTES`].
pub const RING_BYTES_VAR: &str = "SHMIO_BENCH_RING_BYTES";

/// The bytes of a throughput ring: [`RING_BYTES_VAR`], or [`RING_BYTES`].
pub fn ring_bytes() -> usize {
    std::env::var(RING_BYTES_VAR)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(RING_BYTES)
}
/// From this size up, shmio in place should reach 1/1.2 of memcpy.
pub const MEMCPY_FROM: usize = 64 << 10;
/// The target: in-place throughput at least this share of memcpy's.
pub const MEMCPY_SHARE: f64 = 1.0 / 1.2;

/// The throughput ring's slots for messages of `size` bytes: [`ring_bytes`]
/// of them, at least 4 and at most 1024.
pub fn capacity(size: usize) -> u32 {
    (ring_bytes() / size.max(1)).clamp(4, 1024) as u32
}

/// What the sweep compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    /// shmio `send`/`recv_into`.
    Copy,
    /// shmio `send_with`/`recv_with`.
    InPlace,
    /// iceoryx2 loan/write/send.
    Iceoryx2,
    /// A Unix socket pair.
    Socket,
    /// `memcpy` into a mapping (throughput only: the limit).
    Memcpy,
    /// shmio `Topic`, one subscriber: `publish`/`recv_with` (throughput
    /// only).
    Topic,
}

impl System {
    /// Every system, in the tables' and the chart's order.
    pub const ALL: [System; 6] = [
        System::Copy,
        System::InPlace,
        System::Topic,
        System::Iceoryx2,
        System::Socket,
        System::Memcpy,
    ];

    /// The side's name in the harness (its `Display`).
    pub fn key(self) -> &'static str {
        match self {
            System::Copy => "shmio copy",
            System::InPlace => "shmio in place",
            System::Iceoryx2 => "iceoryx2",
            System::Socket => "Unix socket",
            System::Memcpy => "memcpy",
            System::Topic => "shmio topic",
        }
    }

    /// The legend's name.
    pub fn label(self) -> &'static str {
        match self {
            System::Copy => "shmio, copying (send/recv_into)",
            System::InPlace => "shmio, in place (send_with/recv_with)",
            System::Iceoryx2 => "iceoryx2 0.10, loan/write/send",
            System::Socket => "Unix socket pair",
            System::Memcpy => "memcpy into a mapping (the limit)",
            System::Topic => "shmio Topic, 1 subscriber (publish/recv_with)",
        }
    }
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// One size's two groups.
pub struct Point {
    /// The message size in bytes.
    pub size: usize,
    /// The throughput ring's slots.
    pub capacity: u32,
    /// Time per round trip, per system (no memcpy).
    pub round_trips: Results<System>,
    /// Time per message one way, per system.
    pub throughput: Results<System>,
}

impl Point {
    /// The median round trip of `system`, in nanoseconds, if it ran.
    pub fn round_trip_ns(&self, system: System) -> Option<f64> {
        self.round_trips
            .has(system)
            .then(|| self.round_trips.ns_per_op(system))
    }

    /// The median throughput of `system`, in bytes per second, if it ran.
    pub fn bytes_per_second(&self, system: System) -> Option<f64> {
        self.throughput
            .has(system)
            .then(|| self.size as f64 * 1e9 / self.throughput.ns_per_op(system))
    }

    /// `a`'s round-trip time / `b`'s (the median of the per-round ratios).
    pub fn round_trip_ratio(&self, a: System, b: System) -> Option<f64> {
        (self.round_trips.has(a) && self.round_trips.has(b)).then(|| self.round_trips.ratio(a, b))
    }

    /// `a`'s throughput / `b`'s (the median of the per-round ratios).
    pub fn throughput_ratio(&self, a: System, b: System) -> Option<f64> {
        (self.throughput.has(a) && self.throughput.has(b)).then(|| self.throughput.ratio(b, a))
    }
}

/// The whole sweep.
pub struct Sweep {
    /// One point per size, smallest first.
    pub points: Vec<Point>,
    /// What iceoryx2 left in the run's private domain, removed.
    pub iceoryx2_files: Vec<String>,
}

/// Runs the sweep over `sizes`; names start with `base`.
pub fn run(
    base: &str,
    sizes: &[usize],
    settings: Settings,
    progress: &mut dyn FnMut(Progress),
) -> Result<Sweep> {
    #[cfg(all(target_os = "linux", feature = "iceoryx2"))]
    let domain = iceoryx2::Domain::new(format!("{}-sweep", std::process::id()))?;
    let mut points = Vec::new();
    for &size in sizes {
        let capacity = capacity(size);
        #[cfg(all(target_os = "linux", feature = "iceoryx2"))]
        let group = |measure| sides_of(measure, base, size, capacity, &domain);
        #[cfg(not(all(target_os = "linux", feature = "iceoryx2")))]
        let group = |measure| sides_of(measure, base, size, capacity);
        let round_trips = harness::run_with_progress(
            &format!("round trips {size} B"),
            group(Measure::RoundTrip)?,
            settings,
            progress,
        )?;

        let mut sides = group(Measure::Throughput)?;
        let target = copy::Target::anonymous(size, capacity as usize)?;
        sides.push((System::Memcpy, Box::new(target.memcpy()?)));
        let throughput =
            harness::run_with_progress(&format!("throughput {size} B"), sides, settings, progress)?;
        if !target.landed()? {
            return Err("memcpy: the copies did not land in the mapping".into());
        }
        points.push(Point {
            size,
            capacity,
            round_trips,
            throughput,
        });
    }
    #[cfg(all(target_os = "linux", feature = "iceoryx2"))]
    let iceoryx2_files = domain.remove()?;
    #[cfg(not(all(target_os = "linux", feature = "iceoryx2")))]
    let iceoryx2_files = Vec::new();
    Ok(Sweep {
        points,
        iceoryx2_files,
    })
}

/// What one of a size's two groups measures.
#[derive(Clone, Copy)]
enum Measure {
    RoundTrip,
    Throughput,
}

impl Measure {
    /// What the group's names say.
    fn tag(self) -> &'static str {
        match self {
            Measure::RoundTrip => "rt",
            Measure::Throughput => "tp",
        }
    }
}

/// The sides of a size's `measure` group but memcpy's (throughput adds it,
/// with its mapping to check): shmio copying and in place, iceoryx2 and
/// the Unix socket where they are built.
fn sides_of(
    measure: Measure,
    base: &str,
    size: usize,
    capacity: u32,
    #[cfg(all(target_os = "linux", feature = "iceoryx2"))] domain: &iceoryx2::Domain,
) -> Result<Vec<Named<'static, System>>> {
    let mut sides: Vec<Named<System>> = Vec::new();
    for (system, in_place) in [(System::Copy, false), (System::InPlace, true)] {
        let name = format!(
            "{base}-sw{size}-{}-{}",
            measure.tag(),
            if in_place { "in-place" } else { "copy" }
        );
        let side: Box<dyn Side> = match measure {
            Measure::RoundTrip => Box::new(channel::SizedRoundTrip::start(&name, size, in_place)?),
            Measure::Throughput => {
                Box::new(channel::Throughput::start(&name, size, capacity, in_place)?)
            }
        };
        sides.push((system, side));
    }
    if let Measure::Throughput = measure {
        let name = format!("{base}-sw{size}-tp-topic");
        let side = topic::FanOut::start_with(&name, 1, size, capacity, true)?;
        sides.push((System::Topic, Box::new(side)));
    }
    #[cfg(all(target_os = "linux", feature = "iceoryx2"))]
    {
        let name = format!("{base}-sw{size}-{}", measure.tag());
        let side: Box<dyn Side> = match measure {
            Measure::RoundTrip => Box::new(iceoryx2::SizedRoundTrip::start(domain, &name, size)?),
            Measure::Throughput => Box::new(iceoryx2::Throughput::start(
                domain,
                &name,
                size,
                capacity as usize,
            )?),
        };
        sides.push((System::Iceoryx2, side));
    }
    #[cfg(unix)]
    {
        let side: Box<dyn Side> = match measure {
            Measure::RoundTrip => Box::new(socket::SizedSocketRoundTrip::start(size)?),
            Measure::Throughput => Box::new(socket::SocketThroughput::start(size)?),
        };
        sides.push((System::Socket, side));
    }
    Ok(sides)
}

/// The scaling group's shapes: producers × consumers.
pub const SHAPES: [(usize, usize); 4] = [(1, 1), (2, 1), (1, 2), (2, 2)];
/// The target: shmio's total throughput at 1×1 at least this share of crossbeam's.
pub const CROSSBEAM_SHARE: f64 = 0.7;

/// One shape's figures: shmio's processes and crossbeam's threads, paired.
pub struct Shape {
    pub producers: usize,
    pub consumers: usize,
    pub results: Results<ShapeSide>,
}

/// The two sides of a scaling shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShapeSide {
    /// shmio's channel between processes.
    Shmio,
    /// crossbeam-channel between threads of one process.
    Crossbeam,
}

impl fmt::Display for ShapeSide {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ShapeSide::Shmio => "shmio",
            ShapeSide::Crossbeam => "crossbeam",
        })
    }
}

impl Shape {
    /// Total messages per second of `side`.
    pub fn messages_per_second(&self, side: ShapeSide) -> f64 {
        1e9 / self.results.ns_per_op(side)
    }

    /// shmio's throughput / crossbeam's (the median of the per-round ratios).
    pub fn ratio(&self) -> f64 {
        self.results.ratio(ShapeSide::Crossbeam, ShapeSide::Shmio)
    }
}

/// Runs the scaling group: for each shape, shmio's channel between
/// processes against crossbeam's between threads, paired.
pub fn scaling(
    base: &str,
    shapes: &[(usize, usize)],
    settings: Settings,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<Shape>> {
    let mut out = Vec::new();
    for &(producers, consumers) in shapes {
        let sides: Vec<Named<ShapeSide>> = vec![
            (
                ShapeSide::Shmio,
                Box::new(scaling::ChannelScaling::start(
                    &format!("{base}-scale{producers}x{consumers}"),
                    producers,
                    consumers,
                )?),
            ),
            (
                ShapeSide::Crossbeam,
                Box::new(scaling::CrossbeamScaling::new(producers, consumers)),
            ),
        ];
        let results = harness::run_with_progress(
            &format!("scaling {producers}x{consumers}"),
            sides,
            settings,
            progress,
        )?;
        out.push(Shape {
            producers,
            consumers,
            results,
        });
    }
    Ok(out)
}

/// A size as `8 B`, `64 KiB`, `4 MiB`.
pub fn format_size(size: usize) -> String {
    if size >= 1 << 20 && size.is_multiple_of(1 << 20) {
        format!("{} MiB", size >> 20)
    } else if size >= 1 << 10 && size.is_multiple_of(1 << 10) {
        format!("{} KiB", size >> 10)
    } else {
        format!("{size} B")
    }
}

/// Bytes per second as `12.3 GB/s` or `850 MB/s` (10^9, 10^6).
pub fn format_bandwidth(bytes_per_second: f64) -> String {
    if bytes_per_second >= 1e9 {
        format!("{:.2} GB/s", bytes_per_second / 1e9)
    } else if bytes_per_second >= 1e7 {
        format!("{:.0} MB/s", bytes_per_second / 1e6)
    } else {
        format!("{:.1} MB/s", bytes_per_second / 1e6)
    }
}

fn cell(value: Option<f64>, format: impl Fn(f64) -> String) -> String {
    value.map_or_else(|| "—".to_owned(), format)
}

fn times(ratio: Option<f64>) -> String {
    cell(ratio, |r| format!("{r:.2}×"))
}

/// How many targets a table met, of how many.
#[derive(Clone, Copy, Debug, Default)]
pub struct Met {
    pub met: usize,
    pub of: usize,
}

impl Met {
    fn check(&mut self, ok: bool) -> &'static str {
        self.of += 1;
        self.met += usize::from(ok);
        if ok {
            "yes"
        } else {
            "**no**"
        }
    }
}

/// The sweep as two markdown tables (round trips, throughput), every
/// ratio of the same run; and the targets met. Columns of a system that
/// did not run (iceoryx2 without its feature, the socket off Unix) are
/// left out.
pub fn sweep_tables(sweep: &Sweep) -> (String, Met) {
    let mut out = String::new();
    let mut met = Met::default();
    let ran = |system: System| {
        sweep
            .points
            .iter()
            .any(|p| p.throughput.has(system) || p.round_trips.has(system))
    };
    let (iceoryx2, socket) = (ran(System::Iceoryx2), ran(System::Socket));
    let row = |cells: Vec<(bool, String)>| -> String {
        let kept: Vec<String> = cells
            .into_iter()
            .filter(|(keep, _)| *keep)
            .map(|(_, cell)| cell)
            .collect();
        format!("| {} |", kept.join(" | "))
    };
    // A table's heading and its alignment rule, from one list of columns:
    // (shown, title, right-aligned).
    let head = |out: &mut String, columns: &[(bool, &str, bool)]| {
        let shown = || columns.iter().filter(|(keep, ..)| *keep);
        let titles: Vec<&str> = shown().map(|(_, title, _)| *title).collect();
        let rules: Vec<&str> = shown()
            .map(|(.., right)| if *right { "---:" } else { "---" })
            .collect();
        let _ = writeln!(out, "| {} |\n|{}|", titles.join(" | "), rules.join("|"));
    };

    let _ = writeln!(
        out,
        "Round trip (parent → child → parent), time per round trip; ratios shmio / peer (below 1: shmio is faster):\n"
    );
    head(
        &mut out,
        &[
            (true, "size", false),
            (true, "shmio copy", true),
            (true, "shmio in place", true),
            (iceoryx2, "iceoryx2", true),
            (socket, "Unix socket", true),
            (iceoryx2, "copy / iceoryx2", true),
            (iceoryx2, "in place / iceoryx2", true),
            (socket, "in place / socket", true),
            (iceoryx2, "ahead of iceoryx2", false),
        ],
    );
    for point in &sweep.points {
        let ns = |system| cell(point.round_trip_ns(system), format_ns);
        let against_iceoryx2 = point.round_trip_ratio(System::InPlace, System::Iceoryx2);
        let ahead = match against_iceoryx2 {
            Some(ratio) => met.check(ratio < 1.0),
            None => "—",
        };
        let _ = writeln!(
            out,
            "{}",
            row(vec![
                (true, format_size(point.size)),
                (true, ns(System::Copy)),
                (true, ns(System::InPlace)),
                (iceoryx2, ns(System::Iceoryx2)),
                (socket, ns(System::Socket)),
                (
                    iceoryx2,
                    times(point.round_trip_ratio(System::Copy, System::Iceoryx2))
                ),
                (iceoryx2, times(against_iceoryx2)),
                (
                    socket,
                    times(point.round_trip_ratio(System::InPlace, System::Socket))
                ),
                (iceoryx2, ahead.to_owned()),
            ])
        );
    }
    let _ = writeln!(
        out,
        "\nThroughput, one producer process, one consumer process; ratios shmio / peer (above 1: shmio is faster):\n"
    );
    head(
        &mut out,
        &[
            (true, "size", false),
            (true, "ring", true),
            (true, "shmio copy", true),
            (true, "shmio in place", true),
            (true, "shmio topic", true),
            (iceoryx2, "iceoryx2", true),
            (socket, "Unix socket", true),
            (true, "memcpy", true),
            (true, "in place / memcpy", true),
            (iceoryx2, "copy / iceoryx2", true),
            (iceoryx2, "in place / iceoryx2", true),
            (iceoryx2, "topic / iceoryx2", true),
            (socket, "in place / socket", true),
            (iceoryx2, "ahead of iceoryx2", false),
            (true, "≥ 1/1.2 of memcpy", false),
        ],
    );
    for point in &sweep.points {
        let rate = |system| cell(point.bytes_per_second(system), format_bandwidth);
        let against_iceoryx2 = point.throughput_ratio(System::InPlace, System::Iceoryx2);
        let ahead = match against_iceoryx2 {
            Some(ratio) => met.check(ratio > 1.0),
            None => "—",
        };
        let against_memcpy = point.throughput_ratio(System::InPlace, System::Memcpy);
        let limit = match against_memcpy {
            Some(ratio) if point.size >= MEMCPY_FROM => met.check(ratio >= MEMCPY_SHARE),
            _ => "—",
        };
        let _ = writeln!(
            out,
            "{}",
            row(vec![
                (true, format_size(point.size)),
                (true, point.capacity.to_string()),
                (true, rate(System::Copy)),
                (true, rate(System::InPlace)),
                (true, rate(System::Topic)),
                (iceoryx2, rate(System::Iceoryx2)),
                (socket, rate(System::Socket)),
                (true, rate(System::Memcpy)),
                (true, times(against_memcpy)),
                (
                    iceoryx2,
                    times(point.throughput_ratio(System::Copy, System::Iceoryx2))
                ),
                (iceoryx2, times(against_iceoryx2)),
                (
                    iceoryx2,
                    times(point.throughput_ratio(System::Topic, System::Iceoryx2))
                ),
                (
                    socket,
                    times(point.throughput_ratio(System::InPlace, System::Socket))
                ),
                (iceoryx2, ahead.to_owned()),
                (true, limit.to_owned()),
            ])
        );
    }
    (out, met)
}

/// The scaling group as a markdown table, and its target.
pub fn scaling_table(shapes: &[Shape]) -> (String, Met) {
    let mut out = String::new();
    let mut met = Met::default();
    let _ = writeln!(
        out,
        "Scaling, {} B messages, a queue of {} (total messages/s; shmio: processes on one `Channel`, crossbeam: threads of one process on `crossbeam_channel::bounded`):\n",
        scaling::SIZE,
        scaling::CAPACITY
    );
    let _ = writeln!(
        out,
        "| producers × consumers | shmio (processes) | crossbeam-channel (threads) | shmio / crossbeam | ≥ {CROSSBEAM_SHARE}× |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---|");
    for shape in shapes {
        let ratio = shape.ratio();
        let target = if (shape.producers, shape.consumers) == (1, 1) {
            met.check(ratio >= CROSSBEAM_SHARE)
        } else {
            "—"
        };
        let _ = writeln!(
            out,
            "| {} × {} | {:.2} M msg/s | {:.2} M msg/s | {ratio:.2}× | {target} |",
            shape.producers,
            shape.consumers,
            shape.messages_per_second(ShapeSide::Shmio) / 1e6,
            shape.messages_per_second(ShapeSide::Crossbeam) / 1e6,
        );
    }
    (out, met)
}

/// A sweep of `sizes` where every system ran, its figures made up (for
/// the tables' and the chart's tests).
#[cfg(test)]
pub(crate) fn made_up(sizes: &[usize]) -> Sweep {
    let keys = || System::ALL.to_vec();
    let points = sizes
        .iter()
        .map(|&size| {
            let ns = |i: usize| vec![(100 + 50 * i) as f64 * (size as f64).sqrt(); 3];
            Point {
                size,
                capacity: 16,
                round_trips: Results::made_up(keys(), (0..keys().len()).map(ns).collect()),
                throughput: Results::made_up(keys(), (0..keys().len()).map(ns).collect()),
            }
        })
        .collect();
    Sweep {
        points,
        iceoryx2_files: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each table: its heading, its alignment rule (numbers right-aligned),
    /// a row per size, every row as wide as the heading.
    #[test]
    fn the_tables_have_a_heading_a_rule_and_a_row_per_size() {
        let sizes = [64, 4096, 1 << 20];
        let (tables, met) = sweep_tables(&made_up(&sizes));
        let tables: Vec<Vec<&str>> = tables
            .split("\n\n")
            .map(|part| part.lines().filter(|l| l.starts_with('|')).collect())
            .filter(|table: &Vec<&str>| !table.is_empty())
            .collect();
        assert_eq!(tables.len(), 2);
        let columns = |line: &str| line.matches('|').count();
        for (table, first_rules) in tables
            .iter()
            .zip(["|---|---:|---:|", "|---|---:|---:|---:|"])
        {
            assert!(table[0].starts_with("| size |"), "{}", table[0]);
            assert!(table[1].starts_with(first_rules), "{}", table[1]);
            assert_eq!(table.len(), 2 + sizes.len());
            for line in table {
                assert_eq!(columns(line), columns(table[0]), "{line}");
            }
        }
        // Ahead of iceoryx2 at each size in both tables, and memcpy's
        // share from 64 KiB up.
        assert_eq!(met.of, 2 * sizes.len() + 1);
    }
}
