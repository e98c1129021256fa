//! `shmio-bench --sweep` (and `--scaling`): the payload sweep and the
//! scaling group of the library's [`shmio_bench::sweep`], as markdown
//! tables, and the sweep's chart.

use std::fmt::Write as _;
use std::time::Instant;

use shmio_bench::harness::Settings;
use shmio_bench::machine::{self, CpuTimes};
use shmio_bench::report;
use shmio_bench::sweep::{self, SHAPES, SIZES};
use shmio_bench::{watchdog, Result};

/// Where the chart goes: `bench/results/sweep.svg`.
fn chart_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results/sweep.svg")
}

pub fn run(quick: bool, with_sweep: bool, args: &[String]) -> Result<()> {
    let settings = if quick {
        Settings::new(7, 6)
    } else {
        Settings::new(17, 20)
    };
    let began = Instant::now();
    let cpu_before = CpuTimes::now();
    watchdog::start("shmio-bench".into());
    let base = format!("shmio-bench-{}", std::process::id());
    let mut last = String::new();
    let mut progress = |at: shmio_bench::harness::Progress| {
        if at.group != last {
            eprintln!("shmio-bench: {} ...", at.group);
            last = at.group.to_owned();
        }
    };
    let swept = if with_sweep {
        Some(sweep::run(&base, &SIZES, settings, &mut progress)?)
    } else {
        None
    };
    let shapes = sweep::scaling(&base, &SHAPES, settings, &mut progress)?;
    let others = cpu_before.and_then(|before| Some(CpuTimes::now()?.others_share_since(&before)));
    let left: Vec<String> = std::fs::read_dir("/dev/shm")?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(&base))
        .collect();

    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n## shmio's channel across message sizes, and scaling\n"
    );
    let _ = writeln!(out, "- machine: {}", machine::describe());
    let _ = writeln!(
        out,
        "- command: `cargo run --release -p shmio-bench -- {}`{}",
        args.join(" "),
        if quick { " (quick: noisier)" } else { "" }
    );
    let _ = writeln!(
        out,
        "- method: the sides of each group (one size's round trips; its throughput; one scaling shape) take turns \
         in every round (rotating order), batches of about {} ms, {} rounds after a warm-up round; figures are medians \
         over the rounds, ratios medians of the per-round ratios; took {:.0} s",
        settings.batch_time.as_millis(),
        settings.rounds,
        began.elapsed().as_secs_f64()
    );
    if let Some(line) = report::others_line(others, "the figures") {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out);
    let (mut met, mut of) = (0, 0);
    if let Some(swept) = &swept {
        let (tables, targets) = sweep::sweep_tables(swept);
        out.push_str(&tables);
        out.push('\n');
        met += targets.met;
        of += targets.of;
    }
    let (table, targets) = sweep::scaling_table(&shapes);
    out.push_str(&table);
    met += targets.met;
    of += targets.of;
    let _ = writeln!(out, "\nTargets met: {met} of {of}.\n");
    let _ = writeln!(
        out,
        "- round trips: both sides busy-poll (shmio `try_recv_into` / `try_recv_with`, iceoryx2 `receive()`); the Unix \
         socket blocks in `read`. shmio's round-trip rings have 2 slots (one message is in flight); iceoryx2's subscriber buffers 4 (it reuses a freed sample's memory for the next loan).\n\
         - throughput: shmio's ring and iceoryx2's subscriber buffer hold {} KiB of messages (at least 4, at most 1024; `{}` sets it in bytes); \
         memcpy copies into the next slot of a mapping of as many slots, one process. In place, the producer copies the \
         message into the slot and the consumer reads it there (its sequence number and last byte); copying, \
         `recv_into` copies it out.\n\
         - scaling: shmio's producers and consumers are processes (blocking `send` / `recv_into`); crossbeam's are \
         threads of one process, started for each batch. Total messages/s of the batch, from the start until the last \
         consumer is done.\n\
         - every consumer checks each message's length, sequence number and last byte.",
        sweep::ring_bytes() >> 10,
        sweep::RING_BYTES_VAR
    );
    if let Some(swept) = &swept {
        #[cfg(feature = "chart")]
        {
            let path = chart_path();
            shmio_bench::chart::write_svg(swept, &machine::describe(), &path)?;
            let _ = writeln!(out, "- chart: `{}`", path.display());
        }
        #[cfg(not(feature = "chart"))]
        let _ = chart_path;
        let _ = writeln!(
            out,
            "- left by iceoryx2 in the run's private domain, and removed: {} file(s)",
            swept.iceoryx2_files.len()
        );
    }
    let _ = writeln!(
        out,
        "- left in /dev/shm by shmio and the raw peers: {}",
        if left.is_empty() {
            "nothing".to_owned()
        } else {
            left.join(", ")
        }
    );
    print!("{out}");
    Ok(())
}
