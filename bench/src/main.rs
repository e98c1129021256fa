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
        let sides: Vec<Named<Contender>> = vec![
            (
                Contender::ShmioSteady,
                Box::new(channel::BlockingRoundTrip::start(&format!("{base}-block"))?),
            ),
            (
                Contender::EventsSteady,
                Box::new(EventPairRoundTrip::start(&format!("{base}-ev"), None)?),
            ),
            (
                Contender::ShmioWaking,
                Box::new(channel::BlockingRoundTrip::waking(
                    &format!("{base}-wake"),
                    WAKE_GAP,
                )?),
            ),
            (
                Contender::EventsWaking,
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
            (
                "steady traffic",
                Contender::ShmioSteady,
                Contender::EventsSteady,
            ),
            (
                "each after 500 µs of quiet (the child asleep)",
                Contender::ShmioWaking,
                Contender::EventsWaking,
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

    /// The sides of the Windows table: the channel and the event pair,
    /// each steady and waking.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Contender {
        ShmioSteady,
        EventsSteady,
        ShmioWaking,
        EventsWaking,
    }

    impl std::fmt::Display for Contender {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(match self {
                Contender::ShmioSteady => "shmio steady",
                Contender::EventsSteady => "events steady",
                Contender::ShmioWaking => "shmio waking",
                Contender::EventsWaking => "events waking",
            })
        }
    }
}

/// `--sweep` and `--scaling`.
#[cfg(target_os = "linux")]
#[path = "main/sweep.rs"]
mod sweep;

#[cfg(target_os = "linux")]
mod linux {
    use super::sweep;
    use std::fmt::{self, Write as _};
    use std::time::{Duration, Instant};

    use shmio_bench::harness::{self, Named, Results, Settings};
    use shmio_bench::machine::{self, CpuTimes};
    use shmio_bench::report::{self, format_ns, format_rate};
    #[cfg(feature = "dbus")]
    use shmio_bench::sides::dbus;
    #[cfg(feature = "iceoryx2")]
    use shmio_bench::sides::iceoryx2;
    use shmio_bench::sides::{
        awaiting, bus, channel, copy, futex, ladder, scaling, socket, spin, stream, topic, WAKE_GAP,
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
        eprintln!("shmio-bench: topic fan-out ...");
        let fan_out = fan_out(&base, settings)?;
        eprintln!("shmio-bench: topic fan-out against iceoryx2 ...");
        let mut fan_out_peers = Vec::new();
        for size in FAN_OUT_SIZES {
            fan_out_peers.push((
                size,
                fan_out_against_iceoryx2(&base, &domain, settings, size)?,
            ));
        }
        eprintln!("shmio-bench: topic in place, 1 MiB and 4 MiB ...");
        let large_mib = large_in_place(&base, settings, 1 << 20, 16)?;
        let large_4mib = large_in_place(&base, settings, 4 << 20, 8)?;
        eprintln!("shmio-bench: wake-ups ...");
        let wake_ups = wake_ups(&base, settings)?;
        eprintln!("shmio-bench: awaited round trips ...");
        let awaited = awaited_round_trips(&base, settings)?;
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
        let round_trip_rows = [
            (
                RoundTrip::ShmioBusy,
                RoundTrip::Spin,
                Some(Target::AtMost(1.5)),
            ),
            (
                RoundTrip::ShmioBusy,
                RoundTrip::Iceoryx2,
                Some(Target::AtMost(0.5)),
            ),
            (
                RoundTrip::ShmioBlocking,
                RoundTrip::Spin,
                Some(Target::AtMost(2.0)),
            ),
            (RoundTrip::ShmioBlocking, RoundTrip::Futex, None),
            (RoundTrip::ShmioBlocking, RoundTrip::Pipe, None),
            (RoundTrip::ShmioBlocking, RoundTrip::Socket, None),
            (RoundTrip::Topic, RoundTrip::Spin, Some(Target::AtMost(1.5))),
            (RoundTrip::Topic, RoundTrip::ShmioBusy, None),
        ];
        for (ours, theirs, target) in round_trip_rows {
            if !round_trips.has(theirs) {
                continue;
            }
            rows.push(Row {
                operation: format!("round trip, 8 B, {}", ours.label()),
                peer: theirs.label(),
                shmio: format_ns(round_trips.ns_per_op(ours)),
                theirs: format_ns(round_trips.ns_per_op(theirs)),
                ratio: round_trips.ratio(ours, theirs),
                target,
            });
        }
        if let Some(pinned) = &pinned {
            let pinned_rows = [
                (PINNED_BUSY, RoundTrip::ShmioBusy, Target::AtMost(1.3)),
                (
                    PINNED_BLOCKING,
                    RoundTrip::ShmioBlocking,
                    Target::AtMost(1.5),
                ),
                (PINNED_TOPIC, RoundTrip::Topic, Target::AtMost(1.3)),
            ];
            for (operation, ours, target) in pinned_rows {
                rows.push(Row {
                    operation: operation.to_owned(),
                    peer: "raw shared-memory spin, pinned the same way",
                    shmio: format_ns(pinned.ns_per_op(ours)),
                    theirs: format_ns(pinned.ns_per_op(RoundTrip::Spin)),
                    ratio: pinned.ratio(ours, RoundTrip::Spin),
                    target: Some(target),
                });
            }
        }
        for (results, size) in [(&large_mib, "1 MiB"), (&large_4mib, "4 MiB")] {
            rows.push(Row {
                operation: format!(
                    "`Topic`, {size}, in place: published (copied into the slot), read in place by 1 subscriber process; time per message"
                ),
                peer: "raw `memcpy` into the next slot of a mapping as large",
                shmio: format_ns(results.ns_per_op(Large::Topic)),
                theirs: format_ns(results.ns_per_op(Large::Memcpy)),
                ratio: results.ratio(Large::Topic, Large::Memcpy),
                target: Some(Target::AtMost(1.2)),
            });
        }
        for (size, results) in &fan_out_peers {
            for (subscribers, ours, theirs) in [
                (1, FanOutPeer::Topic1, FanOutPeer::Iceoryx2One),
                (3, FanOutPeer::Topic3, FanOutPeer::Iceoryx2Three),
            ] {
                if !results.has(theirs) {
                    continue;
                }
                rows.push(Row {
                    operation: format!(
                        "`Topic` fan-out, {}, {subscribers} subscriber process{}: published (copied into the slot), read in place; time per message delivered to every subscriber",
                        shmio_bench::sweep::format_size(*size),
                        if subscribers == 1 { "" } else { "es" }
                    ),
                    peer: "iceoryx2 publish-subscribe, the same (loan, write, send; receive in place)",
                    shmio: format_ns(results.ns_per_op(ours)),
                    theirs: format_ns(results.ns_per_op(theirs)),
                    ratio: results.ratio(ours, theirs),
                    target: Some(Target::AtMost(0.8)),
                });
            }
        }
        rows.push(Row {
            operation: format!(
                "`Topic` fan-out, {SMALL} B: the cost per subscriber with 3 subscriber processes (time per message delivered to all, / 3)"
            ),
            peer: "the same with 1 subscriber process",
            shmio: format_ns(fan_out.ns_per_op(FanOut::Three) / 3.0),
            theirs: format_ns(fan_out.ns_per_op(FanOut::One)),
            ratio: fan_out.ratio(FanOut::Three, FanOut::One) / 3.0,
            target: Some(Target::AtMost(1.5)),
        });
        rows.push(Row {
            operation: format!(
                "round trip, 8 B, blocking, each after {} µs of quiet (the child asleep: a wake-up each way)",
                WAKE_GAP.as_micros()
            ),
            peer: "raw futex wait/wake, after the same quiet",
            shmio: format_ns(wake_ups.ns_per_op(WakeUp::Shmio)),
            theirs: format_ns(wake_ups.ns_per_op(WakeUp::Futex)),
            ratio: wake_ups.ratio(WakeUp::Shmio, WakeUp::Futex),
            target: Some(Target::AtMost(1.2)),
        });
        let awaited_rows = [
            (
                Awaited::Channel,
                Awaited::Blocking,
                "shmio blocking (`recv_into`), steady traffic",
                Target::AtMost(1.5),
            ),
            (
                Awaited::Channel,
                Awaited::Stream,
                "tokio `UnixStream`, both sides awaiting the same way",
                Target::AtMost(0.1),
            ),
        ];
        for (ours, theirs, peer, target) in awaited_rows {
            rows.push(Row {
                operation: "round trip, 8 B, both sides awaiting (`send_async`/`recv_into_async`, tokio current-thread in each process), steady traffic".to_owned(),
                peer,
                shmio: format_ns(awaited.ns_per_op(ours)),
                theirs: format_ns(awaited.ns_per_op(theirs)),
                ratio: awaited.ratio(ours, theirs),
                target: Some(target),
            });
        }
        rows.push(Row {
            operation: format!(
                "round trip, 8 B, both sides awaiting, each after {} µs of quiet (the child's future asleep with its waiter thread: a wake-up)",
                WAKE_GAP.as_micros()
            ),
            peer: "tokio `UnixStream`, after the same quiet",
            shmio: format_ns(awaited.ns_per_op(Awaited::ChannelWaking)),
            theirs: format_ns(awaited.ns_per_op(Awaited::StreamWaking)),
            ratio: awaited.ratio(Awaited::ChannelWaking, Awaited::StreamWaking),
            target: Some(Target::AtMost(1.0)),
        });
        let call_rows = [
            (Call::Floor, Some(Target::AtMost(2.0))),
            (Call::FloorCodec, None),
            (Call::Dbus, Some(Target::AtMost(0.05))),
        ];
        for (theirs, target) in call_rows {
            if !calls.results.has(theirs) {
                continue;
            }
            rows.push(Row {
                operation: Call::Shmio.label().to_owned(),
                peer: theirs.label(),
                shmio: format_ns(calls.results.ns_per_op(Call::Shmio)),
                theirs: format_ns(calls.results.ns_per_op(theirs)),
                ratio: calls.results.ratio(Call::Shmio, theirs),
                target,
            });
        }
        rows.push(Row {
            operation: format!(
                "broadcast (`Bus::broadcast`) to {BROADCAST_TO} listener processes, every reply"
            ),
            peer: "as many `call_pid`s, one after another",
            shmio: format_ns(bus_results.ns_per_op(BusOp::Broadcast)),
            theirs: format_ns(bus_results.ns_per_op(BusOp::OneByOne)),
            ratio: bus_results.ratio(BusOp::Broadcast, BusOp::OneByOne),
            target: None,
        });
        let request = bus::request_len();
        rows.push(Row {
            operation: "throughput, `Bus::post` of a 16-character string to one listener process"
                .to_owned(),
            peer: "raw `Channel` messages of the same bytes (`send`/`recv_into`)",
            shmio: format_rate(bus_results.ns_per_op(BusOp::Post), request),
            theirs: format_rate(bus_results.ns_per_op(BusOp::Channel), request),
            ratio: bus_results.ratio(BusOp::Channel, BusOp::Post),
            target: None,
        });

        let small_rows = [
            (Transfer::Copy, Transfer::Socket, None),
            (
                Transfer::Copy,
                Transfer::Iceoryx2,
                Some(Target::AtLeast(2.0)),
            ),
            (
                Transfer::InPlace,
                Transfer::Iceoryx2,
                Some(Target::AtLeast(2.0)),
            ),
        ];
        let large_rows = [
            (Transfer::Copy, Transfer::Socket, None),
            (Transfer::Copy, Transfer::Iceoryx2, None),
            (Transfer::InPlace, Transfer::Iceoryx2, None),
            (Transfer::Copy, Transfer::Memcpy, None),
            (
                Transfer::InPlace,
                Transfer::Memcpy,
                Some(Target::AtLeast(0.8)),
            ),
        ];
        let groups = [
            (&small, SMALL, "64 B", &small_rows[..]),
            (&large, LARGE, "64 KiB", &large_rows[..]),
        ];
        for (results, size, label, specs) in groups {
            for &(ours, theirs, target) in specs {
                if !results.has(theirs) {
                    continue;
                }
                rows.push(Row {
                    operation: format!("throughput, {label}, {}", ours.label()),
                    peer: theirs.label(),
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

    fn round_trips(base: &str, domain: &Domain, settings: Settings) -> Result<Results<RoundTrip>> {
        #[allow(unused_mut)] // without the iceoryx2 feature
        let mut sides: Vec<Named<RoundTrip>> = vec![
            (
                RoundTrip::ShmioBusy,
                Box::new(channel::BusyRoundTrip::start(&format!("{base}-rt-busy"))?),
            ),
            (
                RoundTrip::ShmioBlocking,
                Box::new(channel::BlockingRoundTrip::start(&format!(
                    "{base}-rt-block"
                ))?),
            ),
            (
                RoundTrip::Spin,
                Box::new(spin::SpinRoundTrip::start(&format!("{base}-rt-spin"))?),
            ),
            (
                RoundTrip::Futex,
                Box::new(futex::FutexRoundTrip::start(&format!("{base}-rt-futex"))?),
            ),
            (RoundTrip::Pipe, Box::new(stream::PipeRoundTrip::start()?)),
            (
                RoundTrip::Socket,
                Box::new(socket::SocketRoundTrip::start()?),
            ),
            (
                RoundTrip::Topic,
                Box::new(topic::TopicRoundTrip::start(&format!("{base}-rt-topic"))?),
            ),
        ];
        #[cfg(feature = "iceoryx2")]
        sides.push((
            RoundTrip::Iceoryx2,
            Box::new(iceoryx2::RoundTrip::start(domain, &format!("{base}-rt"))?),
        ));
        #[cfg(not(feature = "iceoryx2"))]
        let _ = domain;
        harness::run("round trips", sides, settings)
    }

    /// The sides of the round trips, and of the pinned round trips (the
    /// spin, the channel's two and the ladder's steps).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum RoundTrip {
        ShmioBusy,
        ShmioBlocking,
        Spin,
        Futex,
        Pipe,
        Socket,
        Iceoryx2,
        Topic,
        Ladder(ladder::Step),
    }

    impl RoundTrip {
        /// What the table calls the side: the channel's sides in the
        /// operation, the others in the peer column.
        fn label(self) -> &'static str {
            match self {
                RoundTrip::ShmioBusy => "busy-poll (`try_recv_into`)",
                RoundTrip::ShmioBlocking => "blocking (`recv_into`), steady traffic",
                RoundTrip::Spin => "raw shared-memory spin (the limit)",
                RoundTrip::Futex => "raw futex wait/wake",
                RoundTrip::Pipe => "pipe pair",
                RoundTrip::Socket => "Unix socket pair",
                RoundTrip::Iceoryx2 => "iceoryx2, busy-poll `receive()`",
                RoundTrip::Topic => {
                    "the 1→1 hand-over through two `Topic`s, busy-poll (`try_recv_into`)"
                }
                RoundTrip::Ladder(step) => step.key(),
            }
        }
    }

    impl fmt::Display for RoundTrip {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(match self {
                RoundTrip::ShmioBusy => "shmio busy",
                RoundTrip::ShmioBlocking => "shmio blocking",
                RoundTrip::Spin => "spin",
                RoundTrip::Futex => "futex",
                RoundTrip::Pipe => "pipe",
                RoundTrip::Socket => "socket",
                RoundTrip::Iceoryx2 => "iceoryx2",
                RoundTrip::Topic => "topic",
                RoundTrip::Ladder(step) => step.key(),
            })
        }
    }

    const PINNED_BUSY: &str =
        "round trip, 8 B, busy-poll, pinned (parent and child each on a CPU of its own)";
    const PINNED_BLOCKING: &str = "round trip, 8 B, blocking, steady traffic, pinned";
    const PINNED_TOPIC: &str =
        "the 1→1 hand-over of an 8-byte sample through two `Topic`s, busy-poll, pinned";

    /// One publisher and 1 or 3 subscriber processes on a topic of
    /// 64-byte messages: the time per message delivered to every one.
    fn fan_out(base: &str, settings: Settings) -> Result<Results<FanOut>> {
        let sides: Vec<Named<FanOut>> = vec![
            (
                FanOut::One,
                Box::new(topic::FanOut::start(&format!("{base}-fan1"), 1, SMALL)?),
            ),
            (
                FanOut::Three,
                Box::new(topic::FanOut::start(&format!("{base}-fan3"), 3, SMALL)?),
            ),
        ];
        harness::run("topic fan-out", sides, settings)
    }

    /// The smallest subscriber buffer the iceoryx2 fan-out gets: with 2,
    /// its publisher (`RetryUntilDelivered`) stalled in two runs of three
    /// here, a subscriber never getting all of a batch. A larger buffer
    /// costs iceoryx2 nothing: it reuses the sample released last.
    const IOX_MIN_BUFFER: usize = 8;

    /// The message sizes of the fan-out against iceoryx2.
    const FAN_OUT_SIZES: [usize; 6] = [8, 64, 4 << 10, 64 << 10, 1 << 20, 4 << 20];

    /// Slots of a fan-out's topic (and of each iceoryx2 subscriber's
    /// buffer) for messages of `size` bytes: as many as fit in 16 MiB,
    /// from 8 to 1,024. Far more than the caches keep at 64 KiB and up:
    /// what is measured there is whether the sample written is warm
    /// (iceoryx2 reuses the one released last, a topic's pool the chunk
    /// of the newest message read by all).
    fn fan_out_capacity(size: usize) -> u32 {
        ((16 << 20) / size.max(64)).clamp(8, 1024) as u32
    }

    /// Fan-out of `size`-byte messages to 1 and to 3 subscriber processes
    /// reading in place: shmio's `Topic` against iceoryx2's
    /// publish-subscribe, with as many slots each.
    fn fan_out_against_iceoryx2(
        base: &str,
        domain: &Domain,
        settings: Settings,
        size: usize,
    ) -> Result<Results<FanOutPeer>> {
        let capacity = fan_out_capacity(size);
        #[allow(unused_mut)] // without the iceoryx2 feature
        let mut sides: Vec<Named<FanOutPeer>> = Vec::new();
        for (subscribers, key) in [(1, FanOutPeer::Topic1), (3, FanOutPeer::Topic3)] {
            sides.push((
                key,
                Box::new(topic::FanOut::start_with(
                    &format!("{base}-fo{subscribers}-{size}"),
                    subscribers,
                    size,
                    capacity,
                    true,
                )?),
            ));
        }
        #[cfg(feature = "iceoryx2")]
        for (subscribers, key) in [(1, FanOutPeer::Iceoryx2One), (3, FanOutPeer::Iceoryx2Three)] {
            sides.push((
                key,
                Box::new(iceoryx2::FanOut::start(
                    domain,
                    &format!("{base}-fo{subscribers}-{size}"),
                    subscribers,
                    size,
                    (capacity as usize).max(IOX_MIN_BUFFER),
                )?),
            ));
        }
        #[cfg(not(feature = "iceoryx2"))]
        let _ = domain;
        harness::run(
            &format!(
                "topic fan-out against iceoryx2, {}",
                shmio_bench::sweep::format_size(size)
            ),
            sides,
            settings,
        )
    }

    /// The sides of the fan-out against iceoryx2.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum FanOutPeer {
        Topic1,
        Topic3,
        Iceoryx2One,
        Iceoryx2Three,
    }

    impl fmt::Display for FanOutPeer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(match self {
                FanOutPeer::Topic1 => "topic, 1 subscriber",
                FanOutPeer::Topic3 => "topic, 3 subscribers",
                FanOutPeer::Iceoryx2One => "iceoryx2, 1 subscriber",
                FanOutPeer::Iceoryx2Three => "iceoryx2, 3 subscribers",
            })
        }
    }

    /// One publisher and one subscriber process reading in place, on a
    /// topic of `capacity` messages of `size` bytes, against `memcpy` of
    /// the message into the next of as many slots of a mapping: the time
    /// per message.
    fn large_in_place(
        base: &str,
        settings: Settings,
        size: usize,
        capacity: u32,
    ) -> Result<Results<Large>> {
        let target = copy::Target::anonymous(size, capacity as usize)?;
        let sides: Vec<Named<Large>> = vec![
            (
                Large::Topic,
                Box::new(topic::FanOut::start_with(
                    &format!("{base}-large{size}"),
                    1,
                    size,
                    capacity,
                    true,
                )?),
            ),
            (Large::Memcpy, Box::new(target.memcpy()?)),
        ];
        harness::run("topic in place, large", sides, settings)
    }

    /// The sides of the large in-place group.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Large {
        Topic,
        Memcpy,
    }

    impl fmt::Display for Large {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(match self {
                Large::Topic => "topic in place",
                Large::Memcpy => "memcpy",
            })
        }
    }

    /// The sides of the fan-out: how many subscriber processes.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum FanOut {
        One,
        Three,
    }

    impl fmt::Display for FanOut {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(match self {
                FanOut::One => "1 subscriber",
                FanOut::Three => "3 subscribers",
            })
        }
    }

    /// Round trips that wake a sleeping child: the channel's blocking
    /// receive against a raw futex, each after [`WAKE_GAP`] of quiet.
    fn wake_ups(base: &str, settings: Settings) -> Result<Results<WakeUp>> {
        let sides: Vec<Named<WakeUp>> = vec![
            (
                WakeUp::Shmio,
                Box::new(channel::BlockingRoundTrip::waking(
                    &format!("{base}-wake-shmio"),
                    WAKE_GAP,
                )?),
            ),
            (
                WakeUp::Futex,
                Box::new(futex::FutexRoundTrip::waking(
                    &format!("{base}-wake-futex"),
                    WAKE_GAP,
                )?),
            ),
        ];
        harness::run("wake-ups", sides, settings)
    }

    /// The sides of the wake-ups.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum WakeUp {
        Shmio,
        Futex,
    }

    impl fmt::Display for WakeUp {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(match self {
                WakeUp::Shmio => "shmio",
                WakeUp::Futex => "futex",
            })
        }
    }

    /// Round trips with both sides awaiting (see `sides::awaiting`): the
    /// channel's futures against the blocking channel and tokio's
    /// `UnixStream`, in steady traffic and each after [`WAKE_GAP`].
    fn awaited_round_trips(base: &str, settings: Settings) -> Result<Results<Awaited>> {
        let sides: Vec<Named<Awaited>> = vec![
            (
                Awaited::Channel,
                Box::new(awaiting::ChannelRoundTrip::start(
                    &format!("{base}-rt-async"),
                    None,
                )?),
            ),
            (
                Awaited::Blocking,
                Box::new(channel::BlockingRoundTrip::start(&format!(
                    "{base}-rt-async-block"
                ))?),
            ),
            (
                Awaited::Stream,
                Box::new(awaiting::StreamRoundTrip::start(None)?),
            ),
            (
                Awaited::ChannelWaking,
                Box::new(awaiting::ChannelRoundTrip::start(
                    &format!("{base}-wake-async"),
                    Some(WAKE_GAP),
                )?),
            ),
            (
                Awaited::StreamWaking,
                Box::new(awaiting::StreamRoundTrip::start(Some(WAKE_GAP))?),
            ),
        ];
        harness::run("awaited round trips", sides, settings)
    }

    /// The sides of the awaited round trips.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Awaited {
        Channel,
        Blocking,
        Stream,
        ChannelWaking,
        StreamWaking,
    }

    impl fmt::Display for Awaited {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(match self {
                Awaited::Channel => "shmio async",
                Awaited::Blocking => "shmio blocking",
                Awaited::Stream => "tokio UnixStream",
                Awaited::ChannelWaking => "shmio async, waking",
                Awaited::StreamWaking => "tokio UnixStream, waking",
            })
        }
    }

    /// One producer and one consumer of 64-byte messages through a ring of
    /// 1024: crossbeam-channel between threads, the channel between
    /// processes, and the ladder's steps between processes.
    fn throughput_ladder(base: &str, settings: Settings) -> Result<Results<OneWay>> {
        let mut sides: Vec<Named<OneWay>> = Vec::new();
        for side in OneWay::all() {
            let started: Box<dyn harness::Side> = match side {
                OneWay::Crossbeam => Box::new(scaling::CrossbeamScaling::new(1, 1)),
                OneWay::Shmio => Box::new(scaling::ChannelScaling::start(
                    &format!("{base}-tl-shmio"),
                    1,
                    1,
                )?),
                OneWay::Ladder(step) => Box::new(ladder::LadderThroughput::start(
                    &format!("{base}-tl-ladder{}", step as usize),
                    step,
                )?),
            };
            sides.push((side, started));
        }
        harness::run("throughput ladder", sides, settings)
    }

    /// The sides of the throughput ladder.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum OneWay {
        Crossbeam,
        Shmio,
        Ladder(ladder::Step),
    }

    impl OneWay {
        /// Every side, in the table's order.
        fn all() -> impl Iterator<Item = OneWay> {
            [OneWay::Crossbeam, OneWay::Shmio]
                .into_iter()
                .chain(ladder::Step::CARRYING_64.map(OneWay::Ladder))
        }

        /// What the table calls the side.
        fn label(self) -> &'static str {
            match self {
                OneWay::Crossbeam => {
                    "crossbeam-channel, `bounded(1024)`, two threads of one process"
                }
                OneWay::Shmio => "shmio `Channel`, two processes (`send`, `recv_into`)",
                OneWay::Ladder(step) => step.key(),
            }
        }
    }

    impl fmt::Display for OneWay {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(match self {
                OneWay::Crossbeam => "crossbeam",
                OneWay::Shmio => "shmio",
                OneWay::Ladder(step) => step.key(),
            })
        }
    }

    /// The throughput ladder as a table: messages/s of each side, and its
    /// share of crossbeam-channel's.
    fn throughput_ladder_table(results: &Results<OneWay>) -> String {
        let mut out = String::from(
            "\n### Where a 64-byte message's time goes (one producer, one consumer, a ring of 1024, this run)\n\n\
             | side | messages/s | time per message | / crossbeam's messages/s |\n|---|---|---|---|\n",
        );
        for side in OneWay::all() {
            let ns = results.ns_per_op(side);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.2}× |",
                side.label(),
                format_rate(ns, 64),
                format_ns(ns),
                results.ratio(OneWay::Crossbeam, side)
            );
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
    fn ladder_table(pinned: &Results<RoundTrip>) -> String {
        let spin = pinned.ns_per_op(RoundTrip::Spin);
        let mut out = String::from(
            "\n### Where a busy-poll round trip's time goes (pinned, this run)\n\n\
             The channel's ring rebuilt on raw shared memory one step at a time (`sides::ladder`), each step \
             adding one thing to the one before, measured in the pinned group beside the raw spin and the channel:\n\n\
             | side | what it adds | round trip | / raw spin |\n|---|---|---|---|\n",
        );
        let mut line = |side: &str, adds: &str, key: RoundTrip| {
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
            RoundTrip::Spin,
        );
        for step in ladder::Step::CARRYING_64 {
            line(step.key(), step.adds(), RoundTrip::Ladder(step));
        }
        line(
            "shmio `Channel`, busy-poll",
            "the API: the participant's token, length checks, `Result`s, the copy into the caller's `Vec`",
            RoundTrip::ShmioBusy,
        );
        let packed = ladder::Step::Packed;
        line(packed.key(), packed.adds(), RoundTrip::Ladder(packed));
        out.push_str(
            "\nRead it by differences within one run (the spin itself moves between about 100 and 450 ns \
             from run to run as the VM's CPUs land on different cores, pinned or not). Two findings are steady across runs: \
             the layout (the packed rung against the sleeper-check rung), and that the sender's claim costs nothing. \
             The raw rebuild's later rungs (the receive claim or the shared positions, by run) can cost more than the whole \
             channel pays over the spin: past them the ladder overstates (bench/README.md has the runs).\n",
        );
        out
    }

    /// The busy-poll and blocking round trips again with this process on
    /// one CPU and each child on another, beside the raw spin and the
    /// ladder of the channel's protocol (`sides::ladder`): where the
    /// time goes. `None` with fewer than two CPUs to use.
    fn pinned_round_trips(base: &str, settings: Settings) -> Result<Option<Results<RoundTrip>>> {
        let Some(_pinned) = shmio_bench::pin::Pinned::apart()? else {
            return Ok(None);
        };
        let mut sides: Vec<Named<RoundTrip>> = vec![
            (
                RoundTrip::Spin,
                Box::new(spin::SpinRoundTrip::start(&format!("{base}-pin-spin"))?),
            ),
            (
                RoundTrip::ShmioBusy,
                Box::new(channel::BusyRoundTrip::start(&format!("{base}-pin-busy"))?),
            ),
            (
                RoundTrip::ShmioBlocking,
                Box::new(channel::BlockingRoundTrip::start(&format!(
                    "{base}-pin-block"
                ))?),
            ),
            (
                RoundTrip::Topic,
                Box::new(topic::TopicRoundTrip::start(&format!("{base}-pin-topic"))?),
            ),
        ];
        for step in ladder::Step::ALL {
            let name = format!("{base}-pin-ladder{}", step as usize);
            sides.push((
                RoundTrip::Ladder(step),
                Box::new(ladder::LadderRoundTrip::start(&name, step)?),
            ));
        }
        harness::run("round trips, pinned", sides, settings).map(Some)
    }

    /// The call group's figures, and what the report says of the D-Bus
    /// peer (how it was measured, or why not).
    struct Calls {
        results: Results<Call>,
        note: String,
    }

    /// The sides of the call group.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Call {
        Shmio,
        Floor,
        FloorCodec,
        Dbus,
    }

    impl Call {
        /// What the table calls the side: shmio's in the operation, the
        /// others in the peer column.
        fn label(self) -> &'static str {
            match self {
                Call::Shmio => {
                    "call with a reply (`Bus::call`), a 16-character string argument, one listener process"
                }
                Call::Floor => "the same bytes through two raw `Channel` messages (the floor)",
                Call::FloorCodec => {
                    "the floor with the bus's encoding: JSON out and in on both sides, each message in a new buffer"
                }
                Call::Dbus => "D-Bus method call through a private `dbus-daemon` (zbus)",
            }
        }
    }

    impl fmt::Display for Call {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(match self {
                Call::Shmio => "shmio call",
                Call::Floor => "floor",
                Call::FloorCodec => "floor + codec",
                Call::Dbus => "dbus",
            })
        }
    }

    /// The call group: shmio's bus `call` against its floor (the same
    /// bytes through two raw channel messages) and, where `dbus-daemon`
    /// is installed, a D-Bus method call.
    fn calls(base: &str, settings: Settings) -> Result<Calls> {
        let ours = || -> Result<Vec<Named<Call>>> {
            Ok(vec![
                (
                    Call::Shmio,
                    Box::new(bus::CallRoundTrip::start(&format!("{base}-call"))?),
                ),
                (
                    Call::Floor,
                    Box::new(channel::BlockingRoundTrip::sized(
                        &format!("{base}-call-floor"),
                        bus::request_len(),
                    )?),
                ),
                (
                    Call::FloorCodec,
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
                    note: format!("- D-Bus: {}.", dbus::MISSING),
                });
            };
            let dir = daemon.dir().to_owned();
            let mut sides = ours()?;
            sides.push((Call::Dbus, Box::new(dbus::EchoCall::start(&daemon)?)));
            let results = harness::run("calls", sides, settings)?;
            drop(daemon);
            let gone = if dir.exists() {
                "**is still there**"
            } else {
                "is gone"
            };
            Ok(Calls {
                results,
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
            note: "- D-Bus: not measured (built without the `dbus` feature).".to_owned(),
        })
    }

    /// Listener processes for the broadcast.
    const BROADCAST_TO: usize = 4;

    /// The bus group: a broadcast against as many calls one by one, and
    /// posts against raw channel messages of the same bytes.
    fn bus_group(base: &str, settings: Settings) -> Result<Results<BusOp>> {
        let sides: Vec<Named<BusOp>> = vec![
            (
                BusOp::Broadcast,
                Box::new(bus::Broadcast::start(
                    &format!("{base}-bc"),
                    BROADCAST_TO,
                    false,
                )?),
            ),
            (
                BusOp::OneByOne,
                Box::new(bus::Broadcast::start(
                    &format!("{base}-bc1"),
                    BROADCAST_TO,
                    true,
                )?),
            ),
            (
                BusOp::Post,
                Box::new(bus::PostThroughput::start(&format!("{base}-post"))?),
            ),
            (
                BusOp::Channel,
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

    /// The sides of the bus group.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum BusOp {
        Broadcast,
        OneByOne,
        Post,
        Channel,
    }

    impl fmt::Display for BusOp {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(match self {
                BusOp::Broadcast => "broadcast",
                BusOp::OneByOne => "one by one",
                BusOp::Post => "post",
                BusOp::Channel => "channel",
            })
        }
    }

    fn throughput(
        base: &str,
        domain: &Domain,
        settings: Settings,
        size: usize,
        capacity: u32,
        memcpy: bool,
    ) -> Result<Results<Transfer>> {
        let mut sides: Vec<Named<Transfer>> = vec![
            (
                Transfer::Copy,
                Box::new(channel::Throughput::start(
                    &format!("{base}-tp{size}-copy"),
                    size,
                    capacity,
                    false,
                )?),
            ),
            (
                Transfer::InPlace,
                Box::new(channel::Throughput::start(
                    &format!("{base}-tp{size}-in-place"),
                    size,
                    capacity,
                    true,
                )?),
            ),
            (
                Transfer::Socket,
                Box::new(socket::SocketThroughput::start(size)?),
            ),
        ];
        #[cfg(feature = "iceoryx2")]
        sides.push((
            Transfer::Iceoryx2,
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
            sides.push((Transfer::Memcpy, Box::new(target.memcpy()?)));
        }
        harness::run(&format!("throughput {size} B"), sides, settings)
    }

    /// The sides of the throughput groups.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Transfer {
        Copy,
        InPlace,
        Socket,
        Iceoryx2,
        Memcpy,
    }

    impl Transfer {
        /// What the table calls the side: the channel's sides in the
        /// operation, the others in the peer column.
        fn label(self) -> &'static str {
            match self {
                Transfer::Copy => "copying (`send`/`recv_into`)",
                Transfer::InPlace => "in place (`send_with`/`recv_with`)",
                Transfer::Socket => "Unix socket pair",
                Transfer::Iceoryx2 => "iceoryx2, loan/write/send",
                Transfer::Memcpy => "raw `memcpy` into a mapping (the limit)",
            }
        }
    }

    impl fmt::Display for Transfer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(match self {
                Transfer::Copy => "shmio copy",
                Transfer::InPlace => "shmio in place",
                Transfer::Socket => "socket",
                Transfer::Iceoryx2 => "iceoryx2",
                Transfer::Memcpy => "memcpy",
            })
        }
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
