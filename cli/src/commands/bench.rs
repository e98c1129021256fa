//! `shmio bench`: round trips of an 8-byte message between two processes
//! for shmio's `Channel` and the peers that need no extra crate, and 1 MiB
//! copy bandwidth into a mapping; one markdown table.
//!
//! The measuring is the harness's ([`shmio_cli::bench`]: every side runs
//! in every round, the order rotating from round to round, so drift and
//! other processes' noise hit all of them alike; figures are medians over
//! the rounds, ratios medians of the per-round ratios), with its sides and
//! its children, which are this binary again (`__worker bench`). The
//! payload sweep, the scaling group, iceoryx2 and D-Bus are the bench
//! lab's (`cargo run --release -p shmio-bench`).

use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shmio_cli::bench::harness::{self, Named, Results, Settings};
use shmio_cli::bench::sides::{channel, copy, spin, stream};
use shmio_cli::bench::{machine, watchdog};

use crate::cli::Bench;
use crate::error::{Error, Result};
use crate::units::human_duration;

/// The size of a copy in the bandwidth test.
const COPY: usize = 1 << 20;

/// The round trips' sides: shmio's and its peers'. The harness keys its
/// results by this enum.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Peer {
    ShmioPoll,
    ShmioBlocking,
    Spin,
    Futex,
    Pipe,
    UnixSocket,
}

const PEERS: [Peer; 6] = [
    Peer::ShmioPoll,
    Peer::ShmioBlocking,
    Peer::Spin,
    Peer::Futex,
    Peer::Pipe,
    Peer::UnixSocket,
];

impl Peer {
    fn label(self) -> &'static str {
        match self {
            Peer::ShmioPoll => "shmio `Channel`, busy-poll (`send` + `try_recv_into`)",
            Peer::ShmioBlocking => "shmio `Channel`, blocking (`send` + `recv_into`)",
            Peer::Spin => "raw shared-memory spin (the limit)",
            Peer::Futex => "futex ping-pong",
            Peer::Pipe => "pipe",
            Peer::UnixSocket => "Unix socket",
        }
    }

    /// The side's short name (the progress bar's, its objects').
    fn key(self) -> &'static str {
        match self {
            Peer::ShmioPoll => "shmio busy-poll",
            Peer::ShmioBlocking => "shmio blocking",
            Peer::Spin => "spin",
            Peer::Futex => "futex",
            Peer::Pipe => "pipe",
            Peer::UnixSocket => "Unix socket",
        }
    }

    /// The peer's side, named after `base`; `None` where the platform has none.
    fn start(self, base: &str) -> shmio_cli::bench::Result<Option<Named<'static, Peer>>> {
        let name = format!("{base}-{}", self.key().replace(' ', "-"));
        let side: Box<dyn harness::Side> = match self {
            Peer::ShmioPoll => Box::new(channel::BusyRoundTrip::start(&name)?),
            Peer::ShmioBlocking => Box::new(channel::BlockingRoundTrip::start(&name)?),
            Peer::Spin => Box::new(spin::SpinRoundTrip::start(&name)?),
            #[cfg(target_os = "linux")]
            Peer::Futex => Box::new(shmio_cli::bench::sides::futex::FutexRoundTrip::start(
                &name,
            )?),
            Peer::Pipe => Box::new(stream::PipeRoundTrip::start()?),
            #[cfg(unix)]
            Peer::UnixSocket => {
                Box::new(shmio_cli::bench::sides::socket::SocketRoundTrip::start()?)
            }
            #[allow(unreachable_patterns)]
            _ => return Ok(None),
        };
        Ok(Some((self, side)))
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

/// The copies' sides: shmio's `write_at` and the bandwidth limit.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum CopySide {
    WriteAt,
    Memcpy,
}

impl CopySide {
    fn label(self) -> &'static str {
        match self {
            CopySide::WriteAt => "shmio `write_at`",
            CopySide::Memcpy => "`copy_from_slice` into the same mapping (memcpy)",
        }
    }
}

impl std::fmt::Display for CopySide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CopySide::WriteAt => "write_at",
            CopySide::Memcpy => "memcpy",
        })
    }
}

pub fn run(args: Bench) -> Result {
    let quick = args.quick;
    let settings = if quick {
        Settings::new(7, 8)
    } else {
        Settings::new(21, 40)
    };
    let load = machine::load_average();
    shmio_cli::bench::child::launch_with([crate::proc::WORKER, "bench"]);
    watchdog::start("shmio bench".into());

    let base = format!("shmio-bench-{}", std::process::id());
    let mut sides = Vec::new();
    let mut peers = Vec::new();
    for peer in PEERS {
        if let Some(side) = peer
            .start(&base)
            .map_err(|e| Error::Bench(format!("{}: {e}", peer.key()).into()))?
        {
            sides.push(side);
            peers.push(peer);
        }
    }
    // Every batch of every round, the warm-up round too.
    let steps = (settings.rounds + 1) * (peers.len() + 2);
    let bar = ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("bench [{bar:30}] {pos}/{len} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let mut progress = |at: harness::Progress| {
        bar.set_message(format!("round {}: {}", at.round, at.side));
        bar.inc(1);
    };
    let measured = (|| -> Result<(Results<Peer>, Results<CopySide>)> {
        let round_trips = harness::run_with_progress("round trips", sides, settings, &mut progress)
            .map_err(Error::Bench)?;
        let target = copy::Target::anonymous(COPY, 1).map_err(Error::Bench)?;
        let sides: Vec<Named<CopySide>> = vec![
            (CopySide::WriteAt, Box::new(target.write_at())),
            (
                CopySide::Memcpy,
                Box::new(target.memcpy().map_err(Error::Bench)?),
            ),
        ];
        let copies = harness::run_with_progress("1 MiB copies", sides, settings, &mut progress)
            .map_err(Error::Bench)?;
        if !target.landed().map_err(Error::Bench)? {
            return Err(Error::Bench(
                "the copies did not land in the mapping".into(),
            ));
        }
        Ok((round_trips, copies))
    })();
    bar.finish_and_clear();
    let (round_trips, copies) = measured?;
    print!(
        "{}",
        report(quick, settings, load, &peers, &round_trips, &copies)
    );
    Ok(ExitCode::SUCCESS)
}

fn report(
    quick: bool,
    settings: Settings,
    load: Option<String>,
    peers: &[Peer],
    times: &Results<Peer>,
    copies: &Results<CopySide>,
) -> String {
    let time = |ns: f64| Duration::from_secs_f64(ns / 1e9);
    let mut out = String::new();
    out.push_str(&format!(
        "shmio bench{}: {} rounds, batches of {:?}, {} on {} CPU(s){}\n\n",
        if quick { " --quick" } else { "" },
        settings.rounds,
        settings.batch_time,
        std::env::consts::OS,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.as_deref().map_or(String::new(), |l| format!(
            ", load average {l} at the start"
        )),
    ));
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if let Some(busy) = load.as_deref().and_then(|l| l.parse::<f64>().ok()) {
        if busy >= cpus as f64 {
            out.push_str(&format!(
                "Note: a load average of {busy:.1} on {cpus} CPU(s): the busy-poll rows (which \
                 need a free core on each side) mostly measure the scheduler.\n\n"
            ));
        }
    }
    out.push_str(
        "| round trip of an 8-byte message, two processes | median | shmio busy-poll / peer | shmio blocking / peer |\n",
    );
    out.push_str("|---|---:|---:|---:|\n");
    for peer in PEERS {
        if !peers.contains(&peer) {
            out.push_str(&format!(
                "| {} | not on this platform | | |\n",
                peer.label()
            ));
            continue;
        }
        let ratio = |shmio: Peer| format!("{:.2}×", times.ratio(shmio, peer));
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            peer.label(),
            human_duration(time(times.ns_per_op(peer))),
            ratio(Peer::ShmioPoll),
            ratio(Peer::ShmioBlocking),
        ));
    }
    out.push('\n');
    out.push_str("| 1 MiB copy into a mapping | median | bandwidth | shmio / peer |\n");
    out.push_str("|---|---:|---:|---:|\n");
    for copy in [CopySide::WriteAt, CopySide::Memcpy] {
        let label = copy.label();
        let median = time(copies.ns_per_op(copy));
        out.push_str(&format!(
            "| {label} | {} | {:.1} GB/s | {:.2}× |\n",
            human_duration(median),
            COPY as f64 / median.as_secs_f64() / 1e9,
            copies.ratio(CopySide::WriteAt, copy),
        ));
    }
    out.push_str(
        "\nRatios are of times (below 1: shmio takes less), each the median of the \
         per-round ratios.\nBusy-polling needs a free core on each side: on a busy machine \
         those rows measure the scheduler.\n",
    );
    out
}
