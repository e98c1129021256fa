//! `shmio-bench`: one table comparing shmio's message channel with its
//! peers, all measured in one run (see `bench/README.md`), with the
//! harness and the sides of this package's library.
//!
//! ```sh
//! cargo run --release -p shmio-bench            # about a minute
//! cargo run --release -p shmio-bench -- --quick # a few seconds, noisier
//! ```
//!
//! The measurements are Linux only (raw futexes, `/dev/shm`, iceoryx2's
//! POSIX back end, `dbus-daemon`); elsewhere the binary says so and exits 0.

fn main() {
    // A child of a run: serve its role.
    if let Some(code) = shmio_bench::sides::serve_child() {
        std::process::exit(code);
    }
    #[cfg(target_os = "linux")]
    std::process::exit(linux::main());

    #[cfg(windows)]
    std::process::exit(windows::main());

    #[cfg(not(any(target_os = "linux", windows)))]
    println!("shmio-bench: Linux and Windows only (raw futexes or events, iceoryx2's Linux back end); nothing to measure here.");
}

/// On Windows (run under Wine here): the channel's blocking round trips,
/// steady and waking a sleeping child, against a raw event pair. The rest
/// of the table's peers are Linux's.
#[cfg(windows)]
mod windows {
    use shmio_bench::harness::{self, Named, Settings};
    use shmio_bench::report::format_ns;
    use shmio_bench::sides::{channel, win_event::EventPairRoundTrip, WAKE_GAP};
    use shmio_bench::{watchdog, Result};

    pub fn main() -> i32 {
        let quick = std::env::args().any(|arg| arg == "--quick");
        match run(quick) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("shmio-bench: {e}");
                1
            }
        }
    }

    fn run(quick: bool) -> Result<()> {
        let settings = if quick {
            Settings::new(11, 10)
        } else {
            Settings::new(21, 40)
        };
        watchdog::start("shmio-bench".into());
        let base = format!("shmio-bench-{}", std::process::id());
        let sides: Vec<Named> = vec![
            (
                "shmio steady",
                Box::new(channel::BlockingRoundTrip::start(&format!("{base}-block"))?),
            ),
            (
                "events steady",
                Box::new(EventPairRoundTrip::start(&format!("{base}-ev"), None)?),
            ),
            (
                "shmio waking",
                Box::new(channel::BlockingRoundTrip::waking(
                    &format!("{base}-wake"),
                    WAKE_GAP,
                )?),
            ),
            (
                "events waking",
                Box::new(EventPairRoundTrip::start(
                    &format!("{base}-evwake"),
                    Some(WAKE_GAP),
                )?),
            ),
        ];
        let results = harness::run("wake-ups", sides, settings)?;
        println!("\n## shmio's channel against a raw event pair (Windows)\n");
        println!(
            "- command: `shmio-bench.exe{}`; {} rounds of about {} ms batches, medians; ratios medians of the per-round ratios\n",
            if quick { " --quick" } else { "" },
            settings.rounds,
            settings.batch_time.as_millis()
        );
        println!("| round trip, 8 B | shmio `Channel` (`recv_into`) | raw event pair (`SetEvent`, `WaitForSingleObject`) | shmio / events |");
        println!("|---|---|---|---|");
        for (what, ours, theirs) in [
            ("steady traffic", "shmio steady", "events steady"),
            (
                "each after 500 µs of quiet (the child asleep)",
                "shmio waking",
                "events waking",
            ),
        ] {
            println!(
                "| {what} | {} | {} | {:.2}× |",
                format_ns(results.ns_per_op(ours)),
                format_ns(results.ns_per_op(theirs)),
                results.ratio(ours, theirs)
            );
        }
        Ok(())
    }
}

/// `--sweep` and `--scaling`.
#[cfg(target_os = "linux")]
#[path = "main/sweep.rs"]
mod sweep;

#[cfg(target_os = "linux")]
mod linux {
    use super::sweep;
    use std::fmt::Write as _;
    use std::time::{Duration, Instant};

    use shmio_bench::harness::{self, Named, Results, Settings};
    use shmio_bench::machine::{self, CpuTimes};
    use shmio_bench::report::{self, format_ns, format_rate};
    #[cfg(feature = "dbus")]
    use shmio_bench::sides::dbus;
    #[cfg(feature = "iceoryx2")]
    use shmio_bench::sides::iceoryx2;
    use shmio_bench::sides::{
        bus, channel, copy, futex, ladder, scaling, socket, spin, stream, WAKE_GAP,
    };
    use shmio_bench::{watchdog, Result};

    /// Slots of the 64-byte throughput queues (shmio's ring, iceoryx2's subscriber buffer).
    const SMALL_CAPACITY: u32 = 1024;
    /// Slots of the 64 KiB throughput queues: 4 MiB of ring, as the memcpy limit's mapping.
    const LARGE_CAPACITY: u32 = 64;
    const SMALL: usize = 64;
    const LARGE: usize = 64 * 1024;

    const USAGE: &str =
        "usage: shmio-bench [--quick] | --sweep [--quick] | --scaling [--quick]\n\n\
    Measures shmio's channel against raw shared memory, a futex, a pipe, a Unix socket,\n\
    iceoryx2, a D-Bus method call and memcpy, and prints one markdown table.\n\
    --sweep: round trips and throughput at every message size from 8 B to 4 MiB\n\
    (shmio copying and in place, iceoryx2, a Unix socket, memcpy), then the scaling\n\
    group; prints the tables and writes the chart (bench/results/sweep.svg).\n\
    --scaling: only the scaling group (1-2 producer x 1-2 consumer processes\n\
    against crossbeam-channel between threads).\n\
    --quick: fewer, shorter rounds.";

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Mode {
        Table,
        Sweep,
        Scaling,
    }

    pub fn main() -> i32 {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let (mut quick, mut mode) = (false, Mode::Table);
        for arg in &args {
            match arg.as_str() {
                "--quick" if !quick => quick = true,
                "--sweep" if mode == Mode::Table => mode = Mode::Sweep,
                "--scaling" if mode == Mode::Table => mode = Mode::Scaling,
                "--help" | "-h" => {
                    println!("{USAGE}");
                    return 0;
                }
                _ => {
                    eprintln!("{USAGE}");
                    return 2;
                }
            }
        }
        let outcome = match mode {
            Mode::Table => run(quick, &args),
            Mode::Sweep | Mode::Scaling => sweep::run(quick, mode == Mode::Sweep, &args),
        };
        match outcome {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("shmio-bench: {e}");
                1
            }
        }
    }

    fn run(quick: bool, args: &[String]) -> Result<()> {
        let settings = if quick {
            Settings::new(11, 10)
        } else {
            Settings::new(41, 40)
        };
        let began = Instant::now();
        let cpu_before = CpuTimes::now();
        watchdog::start("shmio-bench".into());
        let base = format!("shmio-bench-{}", std::process::id());
        let domain = Domain::new(std::process::id().to_string())?;

        eprintln!("shmio-bench: round trips ...");
        let round_trips = round_trips(&base, &domain, settings)?;
        eprintln!("shmio-bench: round trips, pinned ...");
        let pinned = pinned_round_trips(&base, settings)?;
        eprintln!("shmio-bench: wake-ups ...");
        let wake_ups = wake_ups(&base, settings)?;
        eprintln!("shmio-bench: the throughput ladder ...");
        let throughput_ladder = throughput_ladder(&base, settings)?;
        eprintln!("shmio-bench: calls ...");
        let calls = calls(&base, settings)?;
        eprintln!("shmio-bench: broadcast and post ...");
        let bus_results = bus_group(&base, settings)?;
        eprintln!("shmio-bench: throughput, {SMALL} B ...");
        let small = throughput(&base, &domain, settings, SMALL, SMALL_CAPACITY, false)?;
        eprintln!("shmio-bench: throughput, 64 KiB ...");
        let large = throughput(&base, &domain, settings, LARGE, LARGE_CAPACITY, true)?;

        let others =
            cpu_before.and_then(|before| Some(CpuTimes::now()?.others_share_since(&before)));
        let iceoryx2_files = domain.remove()?;
        let left: Vec<String> = std::fs::read_dir("/dev/shm")?
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(&base))
            .collect();

        let mut rows = Vec::new();
        const SPIN: &str = "raw shared-memory spin (the limit)";
        const BUSY: &str = "round trip, 8 B, busy-poll (`try_recv_into`)";
        const BLOCKING: &str = "round trip, 8 B, blocking (`recv_into`), steady traffic";
        let round_trip_rows = [
            (BUSY, "shmio busy", "spin", SPIN, Some(Target::AtMost(1.5))),
            (
                BUSY,
                "shmio busy",
                "iceoryx2",
                "iceoryx2, busy-poll `receive()`",
                Some(Target::AtMost(0.5)),
            ),
            (
                BLOCKING,
                "shmio blocking",
                "spin",
                SPIN,
                Some(Target::AtMost(2.0)),
            ),
            (
                BLOCKING,
                "shmio blocking",
                "futex",
                "raw futex wait/wake",
                None,
            ),
            (BLOCKING, "shmio blocking", "pipe", "pipe pair", None),
            (
                BLOCKING,
                "shmio blocking",
                "socket",
                "Unix socket pair",
                None,
            ),
        ];
        for (operation, ours, theirs, peer, target) in round_trip_rows {
            if !round_trips.has(theirs) {
                continue;
            }
            rows.push(Row {
                operation: operation.to_owned(),
                peer,
                shmio: format_ns(round_trips.ns_per_op(ours)),
                theirs: format_ns(round_trips.ns_per_op(theirs)),
                ratio: round_trips.ratio(ours, theirs),
                target,
            });
        }
        if let Some(pinned) = &pinned {
            let pinned_rows = [
                (PINNED_BUSY, "shmio busy", Target::AtMost(1.3)),
                (PINNED_BLOCKING, "shmio blocking", Target::AtMost(1.5)),
            ];
            for (operation, ours, target) in pinned_rows {
                rows.push(Row {
                    operation: operation.to_owned(),
                    peer: "raw shared-memory spin, pinned the same way",
                    shmio: format_ns(pinned.ns_per_op(ours)),
                    theirs: format_ns(pinned.ns_per_op("spin")),
                    ratio: pinned.ratio(ours, "spin"),
                    target: Some(target),
                });
            }
        }
        rows.push(Row {
            operation: format!(
                "round trip, 8 B, blocking, each after {} µs of quiet (the child asleep: a wake-up each way)",
                WAKE_GAP.as_micros()
            ),
            peer: "raw futex wait/wake, after the same quiet",
            shmio: format_ns(wake_ups.ns_per_op("shmio")),
            theirs: format_ns(wake_ups.ns_per_op("futex")),
            ratio: wake_ups.ratio("shmio", "futex"),
            target: Some(Target::AtMost(1.2)),
        });
        const CALL: &str =
            "call with a reply (`Bus::call`), a 16-character string argument, one listener process";
        rows.push(Row {
            operation: CALL.to_owned(),
            peer: "the same bytes through two raw `Channel` messages (the floor)",
            shmio: format_ns(calls.results.ns_per_op("shmio call")),
            theirs: format_ns(calls.results.ns_per_op("floor")),
            ratio: calls.results.ratio("shmio call", "floor"),
            target: Some(Target::AtMost(2.0)),
        });
        rows.push(Row {
            operation: CALL.to_owned(),
            peer: "the floor with the bus's encoding: JSON out and in on both sides, each message in a new buffer",
            shmio: format_ns(calls.results.ns_per_op("shmio call")),
            theirs: format_ns(calls.results.ns_per_op("floor + codec")),
            ratio: calls.results.ratio("shmio call", "floor + codec"),
            target: None,
        });
        if calls.dbus {
            rows.push(Row {
                operation: CALL.to_owned(),
                peer: "D-Bus method call through a private `dbus-daemon` (zbus)",
                shmio: format_ns(calls.results.ns_per_op("shmio call")),
                theirs: format_ns(calls.results.ns_per_op("dbus")),
                ratio: calls.results.ratio("shmio call", "dbus"),
                target: Some(Target::AtMost(0.05)),
            });
        }
        rows.push(Row {
            operation: format!(
                "broadcast (`Bus::broadcast`) to {BROADCAST_TO} listener processes, every reply"
            ),
            peer: "as many `call_pid`s, one after another",
            shmio: format_ns(bus_results.ns_per_op("broadcast")),
            theirs: format_ns(bus_results.ns_per_op("one by one")),
            ratio: bus_results.ratio("broadcast", "one by one"),
            target: None,
        });
        let request = bus::request_len();
        rows.push(Row {
            operation: "throughput, `Bus::post` of a 16-character string to one listener process"
                .to_owned(),
            peer: "raw `Channel` messages of the same bytes (`send`/`recv_into`)",
            shmio: format_rate(bus_results.ns_per_op("post"), request),
            theirs: format_rate(bus_results.ns_per_op("channel"), request),
            ratio: bus_results.ratio("channel", "post"),
            target: None,
        });

        const MEMCPY: &str = "raw `memcpy` into a mapping (the limit)";
        const ICEORYX2: &str = "iceoryx2, loan/write/send";
        let small_rows = [
            ("copying", "shmio copy", "socket", "Unix socket pair", None),
            (
                "copying",
                "shmio copy",
                "iceoryx2",
                ICEORYX2,
                Some(Target::AtLeast(2.0)),
            ),
            (
                "in place",
                "shmio in place",
                "iceoryx2",
                ICEORYX2,
                Some(Target::AtLeast(2.0)),
            ),
        ];
        let large_rows = [
            ("copying", "shmio copy", "socket", "Unix socket pair", None),
            ("copying", "shmio copy", "iceoryx2", ICEORYX2, None),
            ("in place", "shmio in place", "iceoryx2", ICEORYX2, None),
            ("copying", "shmio copy", "memcpy", MEMCPY, None),
            (
                "in place",
                "shmio in place",
                "memcpy",
                MEMCPY,
                Some(Target::AtLeast(0.8)),
            ),
        ];
        let groups = [
            (&small, SMALL, "64 B", &small_rows[..]),
            (&large, LARGE, "64 KiB", &large_rows[..]),
        ];
        for (results, size, label, specs) in groups {
            for &(how, ours, theirs, peer, target) in specs {
                if !results.has(theirs) {
                    continue;
                }
                let api = if how == "copying" {
                    "`send`/`recv_into`"
                } else {
                    "`send_with`/`recv_with`"
                };
                rows.push(Row {
                    operation: format!("throughput, {label}, {how} ({api})"),
                    peer,
                    shmio: format_rate(results.ns_per_op(ours), size),
                    theirs: format_rate(results.ns_per_op(theirs), size),
                    // Time per message peer / shmio = shmio's throughput / the peer's.
                    ratio: results.ratio(theirs, ours),
                    target,
                });
            }
        }

        let run = Run {
            quick,
            args,
            settings,
            took: began.elapsed(),
            others,
            iceoryx2_files,
            left,
            calls: calls.note,
            ladder: pinned.as_ref().map(ladder_table).unwrap_or_default()
                + &throughput_ladder_table(&throughput_ladder),
        };
        print!("{}", report(&run, &rows));
        Ok(())
    }

    fn round_trips(base: &str, domain: &Domain, settings: Settings) -> Result<Results> {
        #[allow(unused_mut)] // without the iceoryx2 feature
        let mut sides: Vec<Named> = vec![
            (
                "shmio busy",
                Box::new(channel::BusyRoundTrip::start(&format!("{base}-rt-busy"))?),
            ),
            (
                "shmio blocking",
                Box::new(channel::BlockingRoundTrip::start(&format!(
                    "{base}-rt-block"
                ))?),
            ),
            (
                "spin",
                Box::new(spin::SpinRoundTrip::start(&format!("{base}-rt-spin"))?),
            ),
            (
                "futex",
                Box::new(futex::FutexRoundTrip::start(&format!("{base}-rt-futex"))?),
            ),
            ("pipe", Box::new(stream::PipeRoundTrip::start()?)),
            ("socket", Box::new(socket::SocketRoundTrip::start()?)),
        ];
        #[cfg(feature = "iceoryx2")]
        sides.push((
            "iceoryx2",
            Box::new(iceoryx2::RoundTrip::start(domain, &format!("{base}-rt"))?),
        ));
        #[cfg(not(feature = "iceoryx2"))]
        let _ = domain;
        harness::run("round trips", sides, settings)
    }

    const PINNED_BUSY: &str =
        "round trip, 8 B, busy-poll, pinned (parent and child each on a CPU of its own)";
    const PINNED_BLOCKING: &str = "round trip, 8 B, blocking, steady traffic, pinned";

    /// Round trips that wake a sleeping child: the channel's blocking
    /// receive against a raw futex, each after [`WAKE_GAP`] of quiet.
    fn wake_ups(base: &str, settings: Settings) -> Result<Results> {
        let sides: Vec<Named> = vec![
            (
                "shmio",
                Box::new(channel::BlockingRoundTrip::waking(
                    &format!("{base}-wake-shmio"),
                    WAKE_GAP,
                )?),
            ),
            (
                "futex",
                Box::new(futex::FutexRoundTrip::waking(
                    &format!("{base}-wake-futex"),
                    WAKE_GAP,
                )?),
            ),
        ];
        harness::run("wake-ups", sides, settings)
    }

    /// One producer and one consumer of 64-byte messages through a ring of
    /// 1024: crossbeam-channel between threads, the channel between
    /// processes, and the ladder's steps between processes.
    fn throughput_ladder(base: &str, settings: Settings) -> Result<Results> {
        let mut sides: Vec<Named> = vec![
            ("crossbeam", Box::new(scaling::CrossbeamScaling::new(1, 1))),
            (
                "shmio",
                Box::new(scaling::ChannelScaling::start(
                    &format!("{base}-tl-shmio"),
                    1,
                    1,
                )?),
            ),
        ];
        for step in ladder::Step::CARRYING_64 {
            let name = format!("{base}-tl-ladder{}", step as usize);
            sides.push((
                step.key(),
                Box::new(ladder::LadderThroughput::start(&name, step)?),
            ));
        }
        harness::run("throughput ladder", sides, settings)
    }

    /// The throughput ladder as a table: messages/s of each side, and its
    /// share of crossbeam-channel's.
    fn throughput_ladder_table(results: &Results) -> String {
        let mut out = String::from(
            "\n### Where a 64-byte message's time goes (one producer, one consumer, a ring of 1024, this run)\n\n\
             | side | messages/s | time per message | / crossbeam's messages/s |\n|---|---|---|---|\n",
        );
        let mut line = |side: &str, key: &str| {
            let ns = results.ns_per_op(key);
            let _ = writeln!(
                out,
                "| {side} | {} | {} | {:.2}× |",
                format_rate(ns, 64),
                format_ns(ns),
                results.ratio("crossbeam", key)
            );
        };
        line(
            "crossbeam-channel, `bounded(1024)`, two threads of one process",
            "crossbeam",
        );
        line(
            "shmio `Channel`, two processes (`send`, `recv_into`)",
            "shmio",
        );
        for step in ladder::Step::CARRYING_64 {
            line(step.key(), step.key());
        }
        out.push_str(
            "\nThe same rungs as the round trips' (no packed rung: a 64-byte message never fit a 64-byte slot), \
             the child sending and this process receiving. Runs on this VM come in two modes (about 3 M or 10-15 M \
             messages/s for every side, after where the scheduler puts the processes), so the ratios, medians of \
             per-round ratios, say more than the rates.\n",
        );
        out
    }

    /// Where the pinned busy-poll round trip's time goes: the raw spin, the
    /// ladder's steps, the channel itself, as a table.
    fn ladder_table(pinned: &Results) -> String {
        let spin = pinned.ns_per_op("spin");
        let mut out = String::from(
            "\n### Where a busy-poll round trip's time goes (pinned, this run)\n\n\
             The channel's ring rebuilt on raw shared memory one step at a time (`sides::ladder`), each step \
             adding one thing to the one before, measured in the pinned group beside the raw spin and the channel:\n\n\
             | side | what it adds | round trip | / raw spin |\n|---|---|---|---|\n",
        );
        let mut line = |side: &str, adds: &str, key: &str| {
            let _ = writeln!(
                out,
                "| {side} | {adds} | {} | {:.2}× |",
                format_ns(pinned.ns_per_op(key)),
                pinned.ns_per_op(key) / spin
            );
        };
        line(
            "raw spin",
            "one word each way, always the same cache line",
            "spin",
        );
        for step in ladder::Step::CARRYING_64 {
            line(step.key(), step.adds(), step.key());
        }
        line(
            "shmio `Channel`, busy-poll",
            "the API: the participant's token, length checks, `Result`s, the copy into the caller's `Vec`",
            "shmio busy",
        );
        let packed = ladder::Step::Packed;
        line(packed.key(), packed.adds(), packed.key());
        out.push_str(
            "\nRead it by differences within one run (the spin itself moves between about 100 and 450 ns \
             from run to run as the VM's CPUs land on different cores, pinned or not). Two findings are steady across runs: \
             the layout (the packed rung against the sleeper-check rung, and the channel itself, 151 ns before version 3 \
             and 117 ns after), and that the sender's claim costs nothing. Not yet explained: the raw rebuild's later rungs (the \
             receive claim or the shared positions, by run) cost more than the whole channel pays over the spin, so past them \
             the ladder overstates; polling 4 times slower, or the two rings in separate mappings, did not change it.\n",
        );
        out
    }

    /// The busy-poll and blocking round trips again with this process on
    /// one CPU and each child on another, beside the raw spin and the
    /// ladder of the channel's protocol (`sides::ladder`): where the
    /// time goes. `None` with fewer than two CPUs to use.
    fn pinned_round_trips(base: &str, settings: Settings) -> Result<Option<Results>> {
        let Some(_pinned) = shmio_bench::pin::Pinned::apart()? else {
            return Ok(None);
        };
        let mut sides: Vec<Named> = vec![
            (
                "spin",
                Box::new(spin::SpinRoundTrip::start(&format!("{base}-pin-spin"))?),
            ),
            (
                "shmio busy",
                Box::new(channel::BusyRoundTrip::start(&format!("{base}-pin-busy"))?),
            ),
            (
                "shmio blocking",
                Box::new(channel::BlockingRoundTrip::start(&format!(
                    "{base}-pin-block"
                ))?),
            ),
        ];
        for step in ladder::Step::ALL {
            let name = format!("{base}-pin-ladder{}", step as usize);
            sides.push((
                step.key(),
                Box::new(ladder::LadderRoundTrip::start(&name, step)?),
            ));
        }
        harness::run("round trips, pinned", sides, settings).map(Some)
    }

    /// The call group's figures, and what the report says of the D-Bus
    /// peer (how it was measured, or why not).
    struct Calls {
        results: Results,
        dbus: bool,
        note: String,
    }

    /// The call group: shmio's bus `call` against its floor (the same
    /// bytes through two raw channel messages) and, where `dbus-daemon`
    /// is installed, a D-Bus method call.
    fn calls(base: &str, settings: Settings) -> Result<Calls> {
        let ours = || -> Result<Vec<Named>> {
            Ok(vec![
                (
                    "shmio call",
                    Box::new(bus::CallRoundTrip::start(&format!("{base}-call"))?),
                ),
                (
                    "floor",
                    Box::new(channel::BlockingRoundTrip::sized(
                        &format!("{base}-call-floor"),
                        bus::request_len(),
                    )?),
                ),
                (
                    "floor + codec",
                    Box::new(bus::CodecFloor::start(&format!("{base}-call-codec"))?),
                ),
            ])
        };
        #[cfg(feature = "dbus")]
        {
            let Some(daemon) = dbus::Bus::start()? else {
                eprintln!("shmio-bench: {}", dbus::MISSING);
                let results = harness::run("calls", ours()?, settings)?;
                return Ok(Calls {
                    results,
                    dbus: false,
                    note: format!("- D-Bus: {}.", dbus::MISSING),
                });
            };
            let dir = daemon.dir().to_owned();
            let mut sides = ours()?;
            sides.push(("dbus", Box::new(dbus::EchoCall::start(&daemon)?)));
            let results = harness::run("calls", sides, settings)?;
            drop(daemon);
            let gone = if dir.exists() {
                "**is still there**"
            } else {
                "is gone"
            };
            Ok(Calls {
                results,
                dbus: true,
                note: format!(
                    "- D-Bus: the run's own `dbus-daemon` (a minimal session configuration and its socket in a \
                     private temporary directory; killed at the end, and the directory, `{}`, {gone}); a child owns \
                     a well-known name and serves `Echo` (`ay` in, the same `ay` out); the parent calls it through \
                     zbus's blocking API with the {call_size} ASCII bytes (hex digits) shmio's `call` carries as a string, and checks the reply.",
                    dir.display(),
                    call_size = shmio_bench::sides::CALL_SIZE,
                ),
            })
        }
        #[cfg(not(feature = "dbus"))]
        Ok(Calls {
            results: harness::run("calls", ours()?, settings)?,
            dbus: false,
            note: "- D-Bus: not measured (built without the `dbus` feature).".to_owned(),
        })
    }

    /// Listener processes for the broadcast.
    const BROADCAST_TO: usize = 4;

    /// The bus group: a broadcast against as many calls one by one, and
    /// posts against raw channel messages of the same bytes.
    fn bus_group(base: &str, settings: Settings) -> Result<Results> {
        let sides: Vec<Named> = vec![
            (
                "broadcast",
                Box::new(bus::Broadcast::start(
                    &format!("{base}-bc"),
                    BROADCAST_TO,
                    false,
                )?),
            ),
            (
                "one by one",
                Box::new(bus::Broadcast::start(
                    &format!("{base}-bc1"),
                    BROADCAST_TO,
                    true,
                )?),
            ),
            (
                "post",
                Box::new(bus::PostThroughput::start(&format!("{base}-post"))?),
            ),
            (
                "channel",
                Box::new(channel::Throughput::start(
                    &format!("{base}-post-floor"),
                    bus::request_len(),
                    SMALL_CAPACITY,
                    false,
                )?),
            ),
        ];
        harness::run("bus", sides, settings)
    }

    fn throughput(
        base: &str,
        domain: &Domain,
        settings: Settings,
        size: usize,
        capacity: u32,
        memcpy: bool,
    ) -> Result<Results> {
        let mut sides: Vec<Named> = vec![
            (
                "shmio copy",
                Box::new(channel::Throughput::start(
                    &format!("{base}-tp{size}-copy"),
                    size,
                    capacity,
                    false,
                )?),
            ),
            (
                "shmio in place",
                Box::new(channel::Throughput::start(
                    &format!("{base}-tp{size}-in-place"),
                    size,
                    capacity,
                    true,
                )?),
            ),
            ("socket", Box::new(socket::SocketThroughput::start(size)?)),
        ];
        #[cfg(feature = "iceoryx2")]
        sides.push((
            "iceoryx2",
            Box::new(iceoryx2::Throughput::start(
                domain,
                &format!("{base}-tp{size}"),
                size,
                capacity as usize,
            )?),
        ));
        #[cfg(not(feature = "iceoryx2"))]
        let _ = domain;
        if memcpy {
            let target = copy::Target::anonymous(size, capacity as usize)?;
            sides.push(("memcpy", Box::new(target.memcpy()?)));
        }
        harness::run(&format!("throughput {size} B"), sides, settings)
    }

    #[derive(Clone, Copy)]
    enum Target {
        AtMost(f64),
        AtLeast(f64),
    }

    struct Row {
        operation: String,
        peer: &'static str,
        shmio: String,
        theirs: String,
        /// shmio / peer: time for round trips, throughput for throughput.
        ratio: f64,
        target: Option<Target>,
    }

    /// What the report says about the run itself.
    struct Run<'a> {
        quick: bool,
        args: &'a [String],
        settings: Settings,
        took: Duration,
        /// The share of all CPU time that other processes took during the run.
        others: Option<f64>,
        iceoryx2_files: Vec<String>,
        left: Vec<String>,
        /// What the report says of the D-Bus call (how, or why not).
        calls: String,
        /// The ladder's table, if the pinned group ran.
        ladder: String,
    }

    fn report(run: &Run, rows: &[Row]) -> String {
        let Run {
            quick,
            args,
            settings,
            took,
            others,
            ref left,
            ref iceoryx2_files,
            ref calls,
            ref ladder,
        } = *run;
        let mut out = String::new();
        let command = if args.is_empty() {
            "cargo run --release -p shmio-bench".to_owned()
        } else {
            format!("cargo run --release -p shmio-bench -- {}", args.join(" "))
        };
        let _ = writeln!(out, "\n## shmio's channel against its peers\n");
        let _ = writeln!(out, "- machine: {}", machine::describe());
        let _ = writeln!(
            out,
            "- command: `{command}`{}",
            if quick { " (quick: noisier)" } else { "" }
        );
        let _ = writeln!(
        out,
        "- method: parent and one child process; the sides of each group take turns in every round \
         (rotating order), batches of about {} ms, {} rounds after a warm-up round; \
         figures are medians over the rounds, ratios medians of the per-round ratios; took {:.0} s",
        settings.batch_time.as_millis(),
        settings.rounds,
        took.as_secs_f64()
    );
        if let Some(line) =
            report::others_line(others, "the figures, the busy-poll ones above all,")
        {
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| operation | peer | shmio | peer's | shmio / peer | target | met |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        let (mut met, mut targets) = (0, 0);
        for row in rows {
            let (target, ok) = match row.target {
                None => (String::from("—"), String::new()),
                Some(target) => {
                    targets += 1;
                    let (text, ok) = match target {
                        Target::AtMost(x) => (format!("≤ {x}×"), row.ratio <= x),
                        Target::AtLeast(x) => (format!("≥ {x}×"), row.ratio >= x),
                    };
                    met += usize::from(ok);
                    (text, String::from(if ok { "yes" } else { "**no**" }))
                }
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:.2}× | {target} | {ok} |",
                row.operation, row.peer, row.shmio, row.theirs, row.ratio
            );
        }
        let _ = writeln!(out, "\nTargets met: {met} of {targets}.\n");
        let _ = writeln!(
        out,
        "- round trips: time per round trip (parent sends, child echoes, parent receives); the ratio is shmio's time / the peer's.\n\
         - throughput: one producer process, one consumer process; messages/s and MB/s (10^6 bytes); the ratio is shmio's throughput / the peer's.\n\
         - raw spin: two `AtomicU64` words 128 bytes apart in a shared mapping, both sides busy-polling.\n\
         - raw futex: two `AtomicU32` words, store + `FUTEX_WAKE`, `FUTEX_WAIT` until the other word changes (no spinning).\n\
         - pipe, Unix socket: blocking `write`/`read`, one system call each way per message (no batching); throughput reads fixed-size messages.\n\
         - iceoryx2 0.10 (`ipc::Service`, publish-subscribe): one service each way for round trips (`u64` payload), a `[u8]` slice service for throughput \
         (subscriber buffer = the queue's capacity, no overflow, `RetryUntilDelivered`); receivers busy-poll `receive()`.\n\
         - shmio: `Channel` rings of {SMALL_CAPACITY} x {SMALL} B and {LARGE_CAPACITY} x 64 KiB for throughput, 16 x 8 B for round trips; \
         in place, the producer copies the message into the slot and the consumer reads it there; copying, `recv_into` copies it out.\n\
         - raw `memcpy`: `copy_from_slice` of 64 KiB into the next of {LARGE_CAPACITY} slots of a shared mapping (same footprint as the ring), one process.\n\
         - every consumer checks each message's length, sequence number and last byte.\n\
         - bus: a `Bus` group per row, its listeners in child processes (one, or {BROADCAST_TO} for the broadcast) serving `echo` (the argument back) \
         on their dispatch threads; the caller checks every reply. The call's floor is what any call must do: the request's bytes (header, command, \
         JSON argument: {request} B) through one raw `Channel` to an echoing child and back through another, both sides in blocking `recv_into`. \
         The floor with the bus's encoding does that with a call's encoding work and none of its routing: the parent writes the request \
         (header, command, the argument as JSON) into a new buffer, the child decodes the argument into a `String` and writes it back as JSON \
         after a header in a new buffer, the parent decodes that into a `String` and checks it. \
         Posts: the listener's inbox holds 64 messages, a full one is retried after a `yield_now`, and a batch ends when a `count` call says the listener ran every post.",
        request = bus::request_len()
    );
        let _ = writeln!(out, "{calls}");
        out.push_str(ladder);
        let _ = writeln!(
        out,
        "\nLeft in /dev/shm by shmio and the raw peers: {}. Left by iceoryx2 in this run's private domain, and removed: {}.",
        list(left),
        list(iceoryx2_files)
    );
        out
    }

    fn list(names: &[String]) -> String {
        if names.is_empty() {
            "nothing".to_owned()
        } else {
            names
                .iter()
                .map(|name| format!("`{name}`"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    }

    /// The run's private iceoryx2 domain.
    #[cfg(feature = "iceoryx2")]
    type Domain = iceoryx2::Domain;

    /// Without the iceoryx2 feature, no domain (and no iceoryx2 sides).
    #[cfg(not(feature = "iceoryx2"))]
    struct Domain;

    #[cfg(not(feature = "iceoryx2"))]
    impl Domain {
        fn new(_tag: String) -> Result<Domain> {
            Ok(Domain)
        }

        fn remove(self) -> Result<Vec<String>> {
            Ok(Vec::new())
        }
    }
}
