//! `shmio bench`: round trips of an 8-byte message between two processes
//! for shmio's `Channel` and the peers that need no extra crate, and 1 MiB
//! copy bandwidth into a mapping; one markdown table.
//!
//! Every peer runs in every round, the order rotating from round to round,
//! so drift and other processes' noise hit all of them alike. In a round a
//! peer gets a fresh child process (this binary, `__worker bench-*`), a few
//! untimed round trips, then a batch timed as a whole until its time budget
//! is spent; the figure is the median over rounds of the mean round trip in
//! a batch, and a ratio is the median of the per-round ratios.

use std::hint::spin_loop;
use std::io::{Read, Write};
use std::process::{Child, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shmio::{Channel, ChannelGeometry, Error, Mapping};

use crate::proc::{self, wait_child};
use crate::units::human_duration;
use crate::{CliResult, Failure};

/// What ends an echo child.
const STOP: u64 = u64::MAX;
/// The parent's word and the child's, on separate cache lines.
const PING: u64 = 0;
const PONG: u64 = 128;
/// How long anyone waits for one round trip, or an idle child for the next.
const PATIENCE: Duration = Duration::from_secs(10);
/// Untimed round trips before a batch (fewer if they take longer than `WARMUP_TIME`).
const WARMUP: u32 = 200;
const WARMUP_TIME: Duration = Duration::from_millis(5);
/// The size of a copy in the bandwidth test.
const COPY: usize = 1 << 20;

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
            Peer::ShmioBlocking => "shmio `Channel`, blocking (`send` + `recv`)",
            Peer::Spin => "raw shared-memory spin (the limit)",
            Peer::Futex => "futex ping-pong",
            Peer::Pipe => "pipe",
            Peer::UnixSocket => "Unix socket",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Peer::ShmioPoll => "shmio busy-poll",
            Peer::ShmioBlocking => "shmio blocking",
            Peer::Spin => "spin",
            Peer::Futex => "futex",
            Peer::Pipe => "pipe",
            Peer::UnixSocket => "Unix socket",
        }
    }

    fn available(self) -> bool {
        let linux_only = self == Peer::Futex;
        let unix_only = self == Peer::UnixSocket;
        (!linux_only || cfg!(target_os = "linux")) && (!unix_only || cfg!(unix))
    }

    fn role(self) -> &'static str {
        match self {
            Peer::ShmioPoll => "bench-channel-poll",
            Peer::ShmioBlocking => "bench-channel-blocking",
            Peer::Spin => "bench-spin",
            Peer::Futex => "bench-futex",
            Peer::Pipe => "bench-pipe",
            Peer::UnixSocket => "bench-socket",
        }
    }
}

struct Plan {
    rounds: usize,
    budget: Duration,
}

pub fn run(quick: bool) -> CliResult {
    let plan = if quick {
        Plan {
            rounds: 7,
            budget: Duration::from_millis(8),
        }
    } else {
        Plan {
            rounds: 21,
            budget: Duration::from_millis(40),
        }
    };
    let peers: Vec<Peer> = PEERS.into_iter().filter(|p| p.available()).collect();
    let steps = plan.rounds * (peers.len() + 2);
    let bar = ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("bench [{bar:30}] {pos}/{len} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let load = load_average();

    // Round trips: times[peer][round].
    let mut times = vec![Vec::with_capacity(plan.rounds); peers.len()];
    let mut names = 0u32;
    for round in 0..plan.rounds {
        for turn in 0..peers.len() {
            let index = (turn + round) % peers.len();
            let peer = peers[index];
            bar.set_message(format!("round {}: {}", round + 1, peer.short()));
            names += 1;
            let name = format!("shmio-bench-{}-{names}", std::process::id());
            let time = round_trips(peer, &name, plan.budget).map_err(|e| {
                bar.finish_and_clear();
                Failure::new(format!("bench: {}: {e}", peer.short()))
            })?;
            times[index].push(time);
            bar.inc(1);
        }
    }

    // Copy bandwidth: [shmio, memcpy][round].
    let mut copies = [Vec::new(), Vec::new()];
    let target = Mapping::anonymous(COPY as u64)?;
    let source: Vec<u8> = (0..COPY).map(|i| (i * 31 % 251) as u8).collect();
    for round in 0..plan.rounds {
        for turn in 0..2 {
            let which = (turn + round) % 2;
            bar.set_message(format!(
                "round {}: 1 MiB {}",
                round + 1,
                ["write_at", "memcpy"][which]
            ));
            copies[which].push(copy_batch(&target, &source, which == 0, plan.budget)?);
            bar.inc(1);
        }
    }
    let mut check = vec![0u8; COPY];
    target.read_at(0, &mut check)?;
    if check != source {
        return Err(Failure::new(
            "bench: the copies did not land in the mapping",
        ));
    }
    bar.finish_and_clear();

    print!("{}", report(quick, &plan, load, &peers, &times, &copies));
    Ok(ExitCode::SUCCESS)
}

fn report(
    quick: bool,
    plan: &Plan,
    load: Option<String>,
    peers: &[Peer],
    times: &[Vec<Duration>],
    copies: &[Vec<Duration>; 2],
) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "shmio bench{}: {} rounds, batches of {:?}, {} on {} CPU(s){}\n\n",
        if quick { " --quick" } else { "" },
        plan.rounds,
        plan.budget,
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
    let of = |peer: Peer| peers.iter().position(|p| *p == peer);
    for peer in PEERS {
        let Some(index) = of(peer) else {
            out.push_str(&format!(
                "| {} | not on this platform | | |\n",
                peer.label()
            ));
            continue;
        };
        let ratio = |shmio: Peer| {
            of(shmio).map_or("—".to_owned(), |s| {
                format!("{:.2}×", median_ratio(&times[s], &times[index]))
            })
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            peer.label(),
            human_duration(median(&times[index])),
            ratio(Peer::ShmioPoll),
            ratio(Peer::ShmioBlocking),
        ));
    }
    out.push('\n');
    out.push_str("| 1 MiB copy into a mapping | median | bandwidth | shmio / peer |\n");
    out.push_str("|---|---:|---:|---:|\n");
    for (which, label) in [
        (0, "shmio `write_at`"),
        (1, "`copy_from_slice` into the same mapping (memcpy)"),
    ] {
        let time = median(&copies[which]);
        out.push_str(&format!(
            "| {label} | {} | {:.1} GB/s | {:.2}× |\n",
            human_duration(time),
            COPY as f64 / time.as_secs_f64() / 1e9,
            median_ratio(&copies[0], &copies[which]),
        ));
    }
    out.push_str(
        "\nRatios are of times (below 1: shmio takes less), each the median of the \
         per-round ratios.\nBusy-polling needs a free core on each side: on a busy machine \
         those rows measure the scheduler.\n",
    );
    out
}

fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

fn median_ratio(shmio: &[Duration], peer: &[Duration]) -> f64 {
    let mut ratios: Vec<f64> = shmio
        .iter()
        .zip(peer)
        .map(|(s, p)| s.as_secs_f64() / p.as_secs_f64().max(1e-12))
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios.get(ratios.len() / 2).copied().unwrap_or(f64::NAN)
}

fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next().map(str::to_owned)
}

/// The mean time of one 1 MiB copy, over a batch of about `budget`.
fn copy_batch(
    target: &Mapping,
    source: &[u8],
    shmio: bool,
    budget: Duration,
) -> CliResult<Duration> {
    let mut view = target.view(0, COPY as u64)?;
    // SAFETY: the mapping is anonymous and private to this process, and
    // nothing else (no other handle, view or thread) touches it while the
    // slice lives: the shmio copies run before it is made and after it goes.
    let mut raw = (!shmio).then(|| unsafe { view.as_mut_slice() });
    let copy = |raw: &mut Option<&mut [u8]>| -> CliResult<()> {
        match raw {
            Some(slice) => {
                slice.copy_from_slice(source);
                std::hint::black_box(slice.as_ptr());
            }
            None => target.write_at(0, std::hint::black_box(source))?,
        }
        Ok(())
    };
    for _ in 0..4 {
        copy(&mut raw)?;
    }
    let start = Instant::now();
    let mut n = 0u32;
    while n < 8 || start.elapsed() < budget {
        copy(&mut raw)?;
        n += 1;
    }
    Ok(start.elapsed() / n)
}

/// One peer's batch: a fresh child, warm-up, then round trips for about
/// `budget`; the mean time of one round trip.
fn round_trips(peer: Peer, name: &str, budget: Duration) -> Result<Duration, String> {
    let mut session = Session::start(peer, name)?;
    let outcome = session.measure(budget);
    let stopped = session.stop();
    let time = outcome?;
    stopped?;
    Ok(time)
}

struct Session {
    child: Child,
    ends: Ends,
    next: u64,
}

struct ChannelEnds {
    ping: Channel,
    pong: Channel,
    blocking: bool,
    buf: Vec<u8>,
}

enum Ends {
    Channels(Box<ChannelEnds>),
    Spin(Mapping),
    #[cfg(target_os = "linux")]
    Futex(Mapping),
    Pipe {
        /// `None` once closed: the child's end of input.
        to: Option<std::process::ChildStdin>,
        from: std::process::ChildStdout,
    },
    #[cfg(unix)]
    Socket(std::os::unix::net::UnixStream),
}

fn bench_channel_options() -> ChannelGeometry {
    ChannelGeometry {
        capacity: 16,
        max_message_size: 64,
    }
}

impl Session {
    fn start(peer: Peer, name: &str) -> Result<Session, String> {
        let mut command = proc::worker(peer.role(), &[name.to_owned()])?;
        let fail = |e: shmio::Error| e.to_string();
        let spawn = |command: &mut std::process::Command| {
            command
                .spawn()
                .map_err(|e| format!("cannot start a child: {e}"))
        };
        let (child, ends) = match peer {
            Peer::ShmioPoll | Peer::ShmioBlocking => {
                let ping =
                    Channel::create_or_open(&format!("{name}-ping"), bench_channel_options())
                        .map_err(fail)?;
                let pong =
                    Channel::create_or_open(&format!("{name}-pong"), bench_channel_options())
                        .map_err(fail)?;
                let ends = Ends::Channels(Box::new(ChannelEnds {
                    ping,
                    pong,
                    blocking: peer == Peer::ShmioBlocking,
                    buf: Vec::with_capacity(64),
                }));
                (spawn(&mut command)?, ends)
            }
            Peer::Spin => {
                let map = Mapping::create_or_open(name, 4096).map_err(fail)?;
                (spawn(&mut command)?, Ends::Spin(map))
            }
            #[cfg(target_os = "linux")]
            Peer::Futex => {
                let map = Mapping::create_or_open(name, 4096).map_err(fail)?;
                (spawn(&mut command)?, Ends::Futex(map))
            }
            Peer::Pipe => {
                let mut child = spawn(command.stdin(Stdio::piped()).stdout(Stdio::piped()))?;
                let to = child.stdin.take().expect("piped stdin");
                let from = child.stdout.take().expect("piped stdout");
                (child, Ends::Pipe { to: Some(to), from })
            }
            #[cfg(unix)]
            Peer::UnixSocket => {
                let (ours, theirs) = std::os::unix::net::UnixStream::pair()
                    .map_err(|e| format!("socketpair: {e}"))?;
                ours.set_read_timeout(Some(PATIENCE))
                    .map_err(|e| format!("socket timeout: {e}"))?;
                let theirs = std::os::fd::OwnedFd::from(theirs);
                let child = spawn(command.stdin(Stdio::from(theirs)))?;
                (child, Ends::Socket(ours))
            }
            #[allow(unreachable_patterns)]
            _ => return Err("not on this platform".to_owned()),
        };
        Ok(Session {
            child,
            ends,
            next: 0,
        })
    }

    fn measure(&mut self, budget: Duration) -> Result<Duration, String> {
        let warmup = Instant::now();
        for done in 0..WARMUP {
            self.round_trip()?;
            if done > 0 && warmup.elapsed() > WARMUP_TIME {
                break;
            }
        }
        let start = Instant::now();
        let mut n = 0u32;
        while n < 16 || start.elapsed() < budget {
            for _ in 0..16 {
                self.round_trip()?;
            }
            n += 16;
        }
        Ok(start.elapsed() / n)
    }

    fn round_trip(&mut self) -> Result<(), String> {
        self.next += 1;
        let value = self.next;
        let echoed = self.exchange(value)?;
        if echoed != value {
            return Err(format!("sent {value}, got {echoed} back"));
        }
        Ok(())
    }

    /// Sends `value` and returns what came back.
    fn exchange(&mut self, value: u64) -> Result<u64, String> {
        let fail = |e: shmio::Error| e.to_string();
        match &mut self.ends {
            Ends::Channels(ends) => {
                let ChannelEnds {
                    ping,
                    pong,
                    blocking,
                    buf,
                } = &mut **ends;
                ping.send(&value.to_le_bytes()).map_err(fail)?;
                if *blocking {
                    *buf = pong.recv_timeout(PATIENCE).map_err(fail)?;
                } else {
                    poll_recv(pong, buf, "no answer from the child")?;
                }
                let bytes: [u8; 8] = buf[..]
                    .try_into()
                    .map_err(|_| format!("an answer of {} bytes", buf.len()))?;
                Ok(u64::from_le_bytes(bytes))
            }
            Ends::Spin(map) => {
                let (ping, pong) = words(map)?;
                ping.store(value, Ordering::Release);
                spin_until(|| pong.load(Ordering::Acquire) == value)?;
                Ok(value)
            }
            #[cfg(target_os = "linux")]
            Ends::Futex(map) => futex::round_trip(map, value),
            Ends::Pipe { to, from } => {
                to.as_mut()
                    .ok_or("the pipe is closed")?
                    .write_all(&value.to_le_bytes())
                    .map_err(|e| format!("pipe write: {e}"))?;
                let mut bytes = [0u8; 8];
                from.read_exact(&mut bytes)
                    .map_err(|e| format!("pipe read: {e}"))?;
                Ok(u64::from_le_bytes(bytes))
            }
            #[cfg(unix)]
            Ends::Socket(stream) => {
                stream
                    .write_all(&value.to_le_bytes())
                    .map_err(|e| format!("socket write: {e}"))?;
                let mut bytes = [0u8; 8];
                stream
                    .read_exact(&mut bytes)
                    .map_err(|e| format!("socket read: {e}"))?;
                Ok(u64::from_le_bytes(bytes))
            }
        }
    }

    /// Tells the child to stop and waits for it (bounded).
    fn stop(mut self) -> Result<(), String> {
        match &mut self.ends {
            Ends::Channels(ends) => {
                let _ = ends.ping.send_timeout(&STOP.to_le_bytes(), PATIENCE);
            }
            Ends::Spin(map) => {
                if let Ok((ping, _)) = words(map) {
                    ping.store(STOP, Ordering::Release);
                }
            }
            #[cfg(target_os = "linux")]
            Ends::Futex(map) => futex::stop(map),
            // Closing the write end is the child's end of input.
            Ends::Pipe { to, .. } => drop(to.take()),
            #[cfg(unix)]
            Ends::Socket(stream) => {
                let _ = stream.shutdown(std::net::Shutdown::Write);
            }
        }
        let status = wait_child(&mut self.child, "the bench child", PATIENCE);
        drop(self.ends);
        let status = status?;
        if !status.success() {
            return Err(format!("the bench child failed: {status}"));
        }
        Ok(())
    }
}

fn words(map: &Mapping) -> Result<(&AtomicU64, &AtomicU64), String> {
    let fail = |e: shmio::Error| e.to_string();
    Ok((
        map.atomic_u64(PING).map_err(fail)?,
        map.atomic_u64(PONG).map_err(fail)?,
    ))
}

/// Busy-polls until `done`; an error after [`PATIENCE`].
fn spin_until(mut done: impl FnMut() -> bool) -> Result<(), String> {
    let mut spins = 0u32;
    let mut since: Option<Instant> = None;
    while !done() {
        spin_loop();
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(4096) {
            let since = *since.get_or_insert_with(Instant::now);
            if since.elapsed() > PATIENCE {
                return Err(format!("nothing changed in {PATIENCE:?}"));
            }
        }
    }
    Ok(())
}

#[cfg(target_os = "linux")]
mod futex {
    use std::sync::atomic::{AtomicU32, Ordering};

    use rustix::thread::futex::{self, Flags, Timespec};
    use shmio::Mapping;

    use super::{PING, PONG};

    pub const STOP32: u32 = u32::MAX;

    pub fn words(map: &Mapping) -> Result<(&AtomicU32, &AtomicU32), String> {
        let fail = |e: shmio::Error| e.to_string();
        Ok((
            map.atomic_u32(PING).map_err(fail)?,
            map.atomic_u32(PONG).map_err(fail)?,
        ))
    }

    /// Waits while `word` is `value`, a second at most (callers look again).
    pub fn wait(word: &AtomicU32, value: u32) {
        let second = Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        };
        // EAGAIN (it changed), ETIMEDOUT and EINTR all mean: look again.
        let _ = futex::wait(word, Flags::empty(), value, Some(&second));
    }

    pub fn wake(word: &AtomicU32) {
        let _ = futex::wake(word, Flags::empty(), 1);
    }

    pub fn round_trip(map: &Mapping, value: u64) -> Result<u64, String> {
        let (ping, pong) = words(map)?;
        // Never STOP32 (or 0, the starting value).
        let value32 = (value % u64::from(STOP32 - 1)) as u32 + 1;
        ping.store(value32, Ordering::Release);
        wake(ping);
        let start = std::time::Instant::now();
        loop {
            let seen = pong.load(Ordering::Acquire);
            if seen == value32 {
                return Ok(value);
            }
            if start.elapsed() > super::PATIENCE {
                return Err("no answer from the futex child".to_owned());
            }
            wait(pong, seen);
        }
    }

    pub fn stop(map: &Mapping) {
        if let Ok((ping, _)) = words(map) {
            ping.store(STOP32, Ordering::Release);
            wake(ping);
        }
    }

    /// The child: echoes every new value until [`STOP32`].
    pub fn echo(map: &Mapping) -> Result<(), String> {
        let (ping, pong) = words(map)?;
        let mut last = 0;
        let mut idle = std::time::Instant::now();
        loop {
            let value = ping.load(Ordering::Acquire);
            if value == last {
                if idle.elapsed() > super::PATIENCE {
                    return Err("the parent went quiet".to_owned());
                }
                wait(ping, value);
                continue;
            }
            if value == STOP32 {
                return Ok(());
            }
            last = value;
            idle = std::time::Instant::now();
            pong.store(value, Ordering::Release);
            wake(pong);
        }
    }
}

/// The child side of each peer: echo every 8-byte message until told to stop.
pub fn worker(role: &str, args: &[String]) -> Result<(), String> {
    let name = args.first().map(String::as_str).unwrap_or_default();
    let fail = |e: shmio::Error| e.to_string();
    match role {
        "bench-channel-poll" | "bench-channel-blocking" => {
            let ping = Channel::open(&format!("{name}-ping")).map_err(fail)?;
            let pong = Channel::open(&format!("{name}-pong")).map_err(fail)?;
            let blocking = role == "bench-channel-blocking";
            let mut buf = Vec::with_capacity(64);
            loop {
                if blocking {
                    buf = ping.recv_timeout(PATIENCE).map_err(fail)?;
                } else {
                    poll_recv(&ping, &mut buf, "the parent went quiet")?;
                }
                if buf == STOP.to_le_bytes() {
                    return Ok(());
                }
                pong.send(&buf).map_err(fail)?;
            }
        }
        "bench-spin" => {
            let map = Mapping::open(name).map_err(fail)?;
            let (ping, pong) = words(&map)?;
            let mut last = 0;
            loop {
                spin_until(|| ping.load(Ordering::Acquire) != last)?;
                let value = ping.load(Ordering::Acquire);
                if value == STOP {
                    return Ok(());
                }
                last = value;
                pong.store(value, Ordering::Release);
            }
        }
        #[cfg(target_os = "linux")]
        "bench-futex" => futex::echo(&Mapping::open(name).map_err(fail)?),
        "bench-pipe" => {
            let mut input = std::io::stdin().lock();
            let mut output = std::io::stdout().lock();
            echo_stream(&mut input, &mut output)
        }
        #[cfg(unix)]
        "bench-socket" => {
            use std::os::fd::AsFd;
            let fd = std::io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| format!("stdin: {e}"))?;
            let stream = std::os::unix::net::UnixStream::from(fd);
            stream
                .set_read_timeout(Some(PATIENCE))
                .map_err(|e| e.to_string())?;
            let mut output = stream.try_clone().map_err(|e| e.to_string())?;
            echo_stream(&mut &stream, &mut output)
        }
        other => Err(format!("unknown bench role {other:?}")),
    }
}

/// Echoes 8-byte messages until the end of input.
fn echo_stream(input: &mut impl Read, output: &mut impl Write) -> Result<(), String> {
    let mut bytes = [0u8; 8];
    loop {
        match input.read_exact(&mut bytes) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(format!("read: {e}")),
        }
        output
            .write_all(&bytes)
            .and_then(|()| output.flush())
            .map_err(|e| format!("write: {e}"))?;
    }
}

/// Busy-polls `channel` into `buf` until a message arrives; `quiet` is the
/// error after [`PATIENCE`] without one. The clock is read only every 4096
/// polls, so it does not weigh on the round trip being measured.
fn poll_recv(channel: &Channel, buf: &mut Vec<u8>, quiet: &str) -> Result<(), String> {
    let mut spins = 0u32;
    let mut since: Option<Instant> = None;
    loop {
        match channel.try_recv_into(buf) {
            Ok(()) => return Ok(()),
            Err(Error::Empty) => {
                spin_loop();
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(4096) {
                    let since = *since.get_or_insert_with(Instant::now);
                    if since.elapsed() > PATIENCE {
                        return Err(quiet.to_owned());
                    }
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}
