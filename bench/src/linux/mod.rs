//! The Linux bench: groups of sides measured together, then one table.

mod chan;
mod harness;
mod iox;
mod proc;
mod raw;
mod stream;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use harness::{Results, Settings, Side};

pub type Result<T, E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

/// The message that ends a busy-poll echo batch.
pub const STOP: u64 = u64::MAX;
/// Untimed round trips at the start of every batch.
pub const WARMUP: u64 = 64;
/// Slots of the 64-byte throughput queues (shmio's ring, iceoryx2's subscriber buffer).
const SMALL_CAPACITY: u32 = 1024;
/// Slots of the 64 KiB throughput queues: 4 MiB of ring, as the memcpy limit's mapping.
const LARGE_CAPACITY: u32 = 64;
const SMALL: usize = 64;
const LARGE: usize = 64 * 1024;

/// Writes `seq` into a message's first 8 bytes.
pub fn stamp(message: &mut [u8], seq: u64) {
    message[..8].copy_from_slice(&seq.to_le_bytes());
}

/// Checks a throughput message: its size, its sequence number, its last byte.
pub fn check_message(message: &[u8], size: usize, expected: u64) -> Result<()> {
    let seq = message
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    if message.len() != size || seq != Some(expected) || message[size - 1] != 0xA5 {
        return Err(format!(
            "message {expected}: got {} bytes, sequence {seq:?}, last byte {:?}",
            message.len(),
            message.last()
        )
        .into());
    }
    Ok(())
}

const USAGE: &str = "usage: shmio-bench [--quick]\n\n\
    Measures shmio's channel against raw shared memory, a futex, a pipe, a Unix socket,\n\
    iceoryx2 and memcpy, and prints one markdown table. --quick: fewer, shorter rounds.";

pub fn main() -> i32 {
    if let Ok(role) = std::env::var(proc::ROLE) {
        return match child(&role) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("shmio-bench child {role} ({}): {e}", std::process::id());
                1
            }
        };
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => false,
        ["--quick"] => true,
        ["--help" | "-h"] => {
            println!("{USAGE}");
            return 0;
        }
        _ => {
            eprintln!("{USAGE}");
            return 2;
        }
    };
    match run(quick, &args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("shmio-bench: {e}");
            1
        }
    }
}

fn child(role: &str) -> Result<()> {
    proc::become_child(role)?;
    match role {
        "rt-spin" => raw::spin_child(),
        "rt-futex" => raw::futex_child(),
        "rt-pipe" => stream::pipe_child(),
        "rt-socket" => stream::socket_echo_child(),
        "rt-iceoryx2" => iox::round_trip_child(),
        "rt-shmio-busy" => chan::busy_child(),
        "rt-shmio-block" => chan::blocking_child(),
        "tp-socket" => stream::socket_producer_child(),
        "tp-iceoryx2" => iox::producer_child(),
        "tp-shmio-copy" => chan::producer_child(false),
        "tp-shmio-in-place" => chan::producer_child(true),
        _ => Err(format!("unknown role {role:?}").into()),
    }
}

fn run(quick: bool, args: &[String]) -> Result<()> {
    let settings = if quick {
        Settings {
            rounds: 11,
            batch_time: Duration::from_millis(10),
        }
    } else {
        Settings {
            rounds: 41,
            batch_time: Duration::from_millis(40),
        }
    };
    let began = Instant::now();
    let cpu_before = CpuTimes::now();
    proc::watchdog::start("shmio-bench".into());
    let base = format!("shmio-bench-{}", std::process::id());
    let domain = iox::Domain::new(std::process::id().to_string())?;

    eprintln!("shmio-bench: round trips ...");
    let round_trips = round_trips(&base, &domain, settings)?;
    eprintln!("shmio-bench: throughput, {SMALL} B ...");
    let small = throughput(&base, &domain, settings, SMALL, SMALL_CAPACITY, false)?;
    eprintln!("shmio-bench: throughput, 64 KiB ...");
    let large = throughput(&base, &domain, settings, LARGE, LARGE_CAPACITY, true)?;

    let others = cpu_before.and_then(|before| Some(CpuTimes::now()?.others_share_since(&before)));
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
        rows.push(Row {
            operation: operation.to_owned(),
            peer,
            shmio: format_ns(round_trips.median(ours)),
            theirs: format_ns(round_trips.median(theirs)),
            ratio: round_trips.ratio(ours, theirs),
            target,
        });
    }

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
            let api = if how == "copying" {
                "`send`/`recv_into`"
            } else {
                "`send_with`/`recv_with`"
            };
            rows.push(Row {
                operation: format!("throughput, {label}, {how} ({api})"),
                peer,
                shmio: format_rate(results.median(ours), size),
                theirs: format_rate(results.median(theirs), size),
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
    };
    print!("{}", report(&run, &rows));
    Ok(())
}

fn round_trips(base: &str, domain: &iox::Domain, settings: Settings) -> Result<Results> {
    let sides: Vec<(&'static str, Box<dyn Side>)> = vec![
        (
            "shmio busy",
            Box::new(chan::BusyRoundTrip::start(&format!("{base}-rt-busy"))?),
        ),
        (
            "shmio blocking",
            Box::new(chan::BlockingRoundTrip::start(&format!("{base}-rt-block"))?),
        ),
        (
            "spin",
            Box::new(raw::SpinRoundTrip::start(&format!("{base}-rt-spin"))?),
        ),
        (
            "futex",
            Box::new(raw::FutexRoundTrip::start(&format!("{base}-rt-futex"))?),
        ),
        ("pipe", Box::new(stream::PipeRoundTrip::start()?)),
        ("socket", Box::new(stream::SocketRoundTrip::start()?)),
        (
            "iceoryx2",
            Box::new(iox::RoundTrip::start(domain, &format!("{base}-rt"))?),
        ),
    ];
    harness::run("round trips", sides, settings)
}

fn throughput(
    base: &str,
    domain: &iox::Domain,
    settings: Settings,
    size: usize,
    capacity: u32,
    memcpy: bool,
) -> Result<Results> {
    let mut sides: Vec<(&'static str, Box<dyn Side>)> = vec![
        (
            "shmio copy",
            Box::new(chan::Throughput::start(
                &format!("{base}-tp{size}-copy"),
                size,
                capacity,
                false,
            )?),
        ),
        (
            "shmio in place",
            Box::new(chan::Throughput::start(
                &format!("{base}-tp{size}-in-place"),
                size,
                capacity,
                true,
            )?),
        ),
        ("socket", Box::new(stream::SocketThroughput::start(size)?)),
        (
            "iceoryx2",
            Box::new(iox::Throughput::start(
                domain,
                &format!("{base}-tp{size}"),
                size,
                capacity as usize,
            )?),
        ),
    ];
    if memcpy {
        sides.push((
            "memcpy",
            Box::new(raw::Memcpy::new(size, capacity as usize)?),
        ));
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
}

/// CPU time so far: the whole machine's (busy and all) and this process's
/// with its waited-for children, in clock ticks.
struct CpuTimes {
    busy: u64,
    total: u64,
    ours: u64,
}

impl CpuTimes {
    fn now() -> Option<CpuTimes> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let line = stat.lines().next()?;
        let cpu: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map_while(|v| v.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal
        let idle = cpu.get(3)? + cpu.get(4)?;
        let busy = cpu.get(..8)?.iter().sum::<u64>() - idle;
        let own = std::fs::read_to_string("/proc/self/stat").ok()?;
        // After the command name: state is field 3, utime 14, stime 15, cutime 16, cstime 17.
        let after_name = own.rsplit_once(')')?.1;
        let times: Vec<u64> = after_name
            .split_whitespace()
            .skip(11)
            .take(4)
            .map_while(|v| v.parse().ok())
            .collect();
        Some(CpuTimes {
            busy,
            total: busy + idle,
            ours: times.iter().sum(),
        })
    }

    fn others_share_since(&self, before: &CpuTimes) -> f64 {
        let total = self.total.saturating_sub(before.total).max(1) as f64;
        let busy = self.busy.saturating_sub(before.busy);
        let ours = self.ours.saturating_sub(before.ours);
        busy.saturating_sub(ours) as f64 / total
    }
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
    } = *run;
    let mut out = String::new();
    let command = if args.is_empty() {
        "cargo run --release -p shmio-bench".to_owned()
    } else {
        format!("cargo run --release -p shmio-bench -- {}", args.join(" "))
    };
    let _ = writeln!(out, "\n## shmio's channel against its peers\n");
    let _ = writeln!(out, "- machine: {}", machine());
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
    match others {
        Some(share) if share > 0.05 => {
            let _ = writeln!(
                out,
                "- **other processes took {:.0}% of the machine's CPU time during the run: \
                 the figures, the busy-poll ones above all, are distorted; run it on an idle machine**",
                share * 100.0
            );
        }
        Some(share) => {
            let _ = writeln!(
                out,
                "- other processes took {:.1}% of the machine's CPU time during the run",
                share * 100.0
            );
        }
        None => {}
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
         - every consumer checks each message's length, sequence number and last byte."
    );
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

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpu}, {cores} cores, Linux {}", kernel.trim())
}

fn format_ns(ns: f64) -> String {
    if ns < 1000.0 {
        format!("{ns:.1} ns")
    } else {
        format!("{:.2} µs", ns / 1000.0)
    }
}

fn format_rate(ns_per_message: f64, size: usize) -> String {
    let messages = 1e9 / ns_per_message;
    let bytes = messages * size as f64;
    let messages = if messages >= 1e6 {
        format!("{:.2} M msg/s", messages / 1e6)
    } else {
        format!("{:.1} k msg/s", messages / 1e3)
    };
    format!("{messages}, {:.0} MB/s", bytes / 1e6)
}
