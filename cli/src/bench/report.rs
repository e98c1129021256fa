//! Figures as text: times, rates, the reports' line on the machine's
//! load, and the paired table the criterion benches print (`cargo bench
//! --bench mapping`, `--bench sync`).

use crate::bench::harness::Pair;

/// Nanoseconds as `416.5 ns` or `22.22 µs`.
pub fn format_ns(ns: f64) -> String {
    if ns < 1000.0 {
        format!("{ns:.1} ns")
    } else {
        format!("{:.2} µs", ns / 1000.0)
    }
}

/// A rate, from nanoseconds per message of `size` bytes: messages/s and MB/s.
pub fn format_rate(ns_per_message: f64, size: usize) -> String {
    let messages = 1e9 / ns_per_message;
    let bytes = messages * size as f64;
    let messages = if messages >= 1e6 {
        format!("{:.2} M msg/s", messages / 1e6)
    } else {
        format!("{:.1} k msg/s", messages / 1e3)
    };
    format!("{messages}, {:.0} MB/s", bytes / 1e6)
}

/// The report's line on what else ran: `share` is the part of all CPU
/// time other processes took during the run (`None`: no line, it could
/// not be read); above 5 % the line warns that `distorted` ("the figures")
/// are distorted.
pub fn others_line(share: Option<f64>, distorted: &str) -> Option<String> {
    match share? {
        share if share > 0.05 => Some(format!(
            "- **other processes took {:.0}% of the machine's CPU time during the run: {distorted} are \
             distorted; run it on an idle machine**",
            share * 100.0
        )),
        share => Some(format!(
            "- other processes took {:.1}% of the machine's CPU time during the run",
            share * 100.0
        )),
    }
}

/// The paired table's header, for medians of `rounds` rounds.
pub fn pair_header(rounds: usize) -> String {
    format!(
        "\nPaired run (alternating batches, medians of {} rounds):\n\n\
         | operation | shmio | baseline | baseline time | ratio | target |\n\
         |---|---|---|---|---|---|\n",
        rounds
    )
}

/// What a paired row compares.
#[derive(Clone, Copy, Debug)]
pub enum Compare {
    /// Time per operation: shmio's / the baseline's.
    Time,
    /// Bandwidth: the baseline's time / shmio's.
    Bandwidth,
}

/// One row of the paired table.
pub fn pair_row(
    operation: &str,
    pair: Pair,
    baseline: &str,
    compare: Compare,
    target: &str,
) -> String {
    let (what, ratio) = match compare {
        Compare::Time => ("time", pair.ratio),
        Compare::Bandwidth => ("bandwidth", 1.0 / pair.ratio),
    };
    format!(
        "| {operation} | {} | {baseline} | {} | {what} {ratio:.2}x | {target} |\n",
        format_ns(pair.shmio),
        format_ns(pair.baseline)
    )
}

#[cfg(test)]
mod tests {
    use super::others_line;

    #[test]
    fn the_load_line_warns_above_5_percent() {
        assert_eq!(others_line(None, "the figures"), None);
        assert_eq!(
            others_line(Some(0.012), "the figures").unwrap(),
            "- other processes took 1.2% of the machine's CPU time during the run"
        );
        assert_eq!(
            others_line(Some(0.2), "the figures").unwrap(),
            "- **other processes took 20% of the machine's CPU time during the run: the figures are \
             distorted; run it on an idle machine**"
        );
    }
}
