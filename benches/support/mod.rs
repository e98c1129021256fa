//! The paired harness every benchmark table comes from: shmio and its
//! baseline run in alternating batches, so drift on a shared, noisy machine
//! hits both alike, and each figure is a ratio measured in the same run.

#![allow(dead_code)]

use std::time::Instant;

/// Rounds of each side; the medians are taken over these.
const ROUNDS: usize = 41;

/// What a paired run found, in nanoseconds per call.
#[derive(Clone, Copy, Debug)]
pub struct Paired {
    /// shmio's median.
    pub shmio: f64,
    /// The baseline's median.
    pub baseline: f64,
    /// The median of the per-round ratios shmio / baseline.
    pub ratio: f64,
}

/// Nanoseconds per call of `f`, over `batch` calls.
fn time<F: FnMut()>(f: &mut F, batch: u32) -> f64 {
    let start = Instant::now();
    for _ in 0..batch {
        f();
    }
    start.elapsed().as_secs_f64() * 1e9 / f64::from(batch)
}

/// Times `shmio` and `baseline` in alternating batches of `batch` calls.
pub fn paired(mut shmio: impl FnMut(), mut baseline: impl FnMut(), batch: u32) -> Paired {
    for _ in 0..3 {
        time(&mut shmio, batch);
        time(&mut baseline, batch);
    }
    let (mut ours, mut theirs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (a, b) = if round % 2 == 0 {
            let a = time(&mut shmio, batch);
            (a, time(&mut baseline, batch))
        } else {
            let b = time(&mut baseline, batch);
            (time(&mut shmio, batch), b)
        };
        ours.push(a);
        theirs.push(b);
        ratios.push(a / b);
    }
    Paired {
        shmio: median(ours),
        baseline: median(theirs),
        ratio: median(ratios),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Prints the table's header.
pub fn header() {
    println!("\nPaired run (alternating batches, medians of {ROUNDS} rounds):\n");
    println!("| operation | shmio | baseline | baseline time | ratio | target |");
    println!("|---|---|---|---|---|---|");
}

/// Prints one row; `bandwidth` turns the time ratio into a bandwidth ratio.
pub fn row(operation: &str, result: Paired, baseline: &str, bandwidth: bool, target: &str) {
    let (what, ratio) = if bandwidth {
        ("bandwidth", 1.0 / result.ratio)
    } else {
        ("time", result.ratio)
    };
    println!(
        "| {operation} | {} | {baseline} | {} | {what} {ratio:.2}x | {target} |",
        format_ns(result.shmio),
        format_ns(result.baseline)
    );
}

fn format_ns(ns: f64) -> String {
    if ns < 1000.0 {
        format!("{ns:.1} ns")
    } else {
        format!("{:.2} µs", ns / 1000.0)
    }
}
