//! The steps of `shmio demo`: each starts its workers, checks what they
//! report and what is left in the mapping, and says ✓ or ✗.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use shmio::{Bus, Channel, ChannelGeometry, Error as ShmioError, Mapping};
use shmio_cli::bench::harness::{self, Named, Results, Settings};
use shmio_cli::bench::sides::{channel, stream};
use shmio_cli::process::{Child, Input, Output};

use crate::error::{Error, Result};
use crate::proc::{self, child_output, wait_child, wait_until};
use crate::units::{grouped, human_duration, human_size};

use super::{
    check, Counted, Exchanged, Job, Opened, Reading, Summed, Survived, ANSWER_JOB, ANSWER_READING,
    BUS_WORKERS, CALL_TIMEOUT, COUNTER, COUNTERS, DIRTY, HELD, INCREMENTS, JOB, LIMIT, OPENERS,
    READING, SIZE, SUM, SURVIVORS, WAITING,
};

/// What a step saw when it checked out (`Ok`) or did not (`Err`).
type Step = Result<String>;

struct Demo {
    name: String,
    map: Option<Mapping>,
    /// Workers the steps leave running; killed (and reaped) if still
    /// running when the demo ends, as every worker is when dropped.
    children: Vec<Child>,
}

pub fn run() -> Result {
    let name = format!("shmio-demo-{}", std::process::id());
    println!(
        "shmio demo: worker processes share memory by name (this is process {}; every name \
         starts with {name:?})",
        std::process::id()
    );
    let mut demo = Demo {
        name,
        map: None,
        children: Vec::new(),
    };
    type Run = fn(&mut Demo) -> Step;
    let steps: [(&str, Run); 7] = [
        (
            "One process creates a named mapping; the others open it by name",
            Demo::named_mapping,
        ),
        (
            "A struct (zerocopy) and a record (serde) pass between processes",
            Demo::struct_and_record,
        ),
        (
            "Worker processes raise a counter under the named mutex (map.lock())",
            Demo::counter,
        ),
        (
            "A worker is killed while it holds the lock; the survivors are told",
            Demo::killed_holder,
        ),
        (
            "Messages over a Channel, and its round trip against a pipe's",
            Demo::channel,
        ),
        (
            "A command bus: workers listen to a command; calls, a broadcast, a listener killed",
            Demo::command_bus,
        ),
        ("Nothing is left behind", Demo::nothing_left),
    ];
    let mut passed = 0;
    for (number, (title, step)) in steps.iter().enumerate() {
        println!("\n{}. {title}", number + 1);
        match step(&mut demo) {
            Ok(summary) => {
                passed += 1;
                println!("   ✓ {summary}");
            }
            Err(problem) => println!("   ✗ {problem}"),
        }
    }
    println!();
    if passed == steps.len() {
        println!("demo: all {} steps checked out", steps.len());
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Error::Demo {
            failed: steps.len() - passed,
            steps: steps.len(),
        })
    }
}

fn say(text: impl AsRef<str>) {
    println!("   {}", text.as_ref());
    let _ = std::io::stdout().flush();
}

/// Starts a worker in `role`; its stdout is collected when `output`.
fn spawn(role: &str, args: &[String], output: bool) -> Result<Child> {
    proc::worker(role, args)?
        .stdout(if output {
            Output::Collect
        } else {
            Output::Inherit
        })
        .limit(LIMIT)
        .try_start()
        .map_err(|e| Error::io("cannot start a worker", e))
}

/// What a worker printed, parsed.
fn report<T: for<'de> Deserialize<'de>>(child: Child, what: &str) -> Result<T> {
    let out = child_output(child, what, LIMIT)?;
    serde_json::from_str(out.trim()).map_err(|source| Error::ChildSaid {
        what: what.to_owned(),
        output: out.clone(),
        source,
    })
}

impl Demo {
    fn map(&self) -> Result<&Mapping> {
        self.map
            .as_ref()
            .ok_or_else(|| check("no mapping: step 1 did not create it"))
    }

    /// Keeps a worker the step leaves running; its index.
    fn keep(&mut self, child: Child) -> usize {
        self.children.push(child);
        self.children.len() - 1
    }

    fn args(&self, extra: &[String]) -> Vec<String> {
        let mut args = vec![self.name.clone()];
        args.extend_from_slice(extra);
        args
    }

    fn named_mapping(&mut self) -> Step {
        let map = Mapping::create(&self.name, SIZE)?;
        say(format!(
            "process {} created {:?} ({}): existed = {}",
            std::process::id(),
            self.name,
            human_size(map.len()),
            map.existed()
        ));
        let created = !map.existed();
        self.map = Some(map);
        let mut workers = Vec::new();
        for _ in 0..OPENERS {
            workers.push(spawn("demo-open", &self.args(&[]), true)?);
        }
        let mut openers = 0;
        for worker in workers {
            let opened: Opened = report(worker, "an opening worker")?;
            say(format!(
                "worker {} opened it by name: existed = {}, {} bytes",
                opened.pid, opened.existed, opened.len
            ));
            if opened.existed && opened.len == SIZE {
                openers += 1;
            }
        }
        if created && openers == OPENERS {
            Ok(format!(
                "1 creator (existed = false) and {OPENERS} openers (existed = true) share one mapping"
            ))
        } else {
            Err(check(format!(
                "expected a creator and {OPENERS} openers that found it; {openers} did"
            )))
        }
    }

    fn struct_and_record(&mut self) -> Step {
        let map = self.map()?;
        let reading = Reading {
            sensor: 7,
            sequence: 42,
            celsius: 21.5,
        };
        let job = Job {
            command: "resize".into(),
            args: vec!["800".into(), "600".into()],
        };
        map.write_value_at(READING, &reading)?;
        let framed = map.write_record_at(JOB, &job)?;
        say(format!(
            "process {} wrote {reading:?} at offset {READING} ({} bytes, as they are in memory)",
            std::process::id(),
            std::mem::size_of::<Reading>()
        ));
        say(format!(
            "and the record {job:?} at offset {JOB} ({framed} bytes: u32 length + JSON)"
        ));
        let worker = spawn("demo-exchange", &self.args(&[]), true)?;
        let seen: Exchanged = report(worker, "the exchanging worker")?;
        say(format!(
            "worker {} read {:?} and {}",
            seen.pid,
            seen.reading,
            seen.job
                .as_ref()
                .map_or("no record".to_owned(), |job| format!("{job:?}"))
        ));
        let answer: Reading = map.read_value_at(ANSWER_READING)?;
        let answer_job: Option<Job> = map.read_record_at(ANSWER_JOB)?;
        say(format!(
            "and answered {answer:?} and {}",
            answer_job
                .as_ref()
                .map_or("no record".to_owned(), |job| format!("{job:?}"))
        ));
        let expected_job = Job {
            command: "done".into(),
            args: vec!["600".into(), "800".into()],
        };
        let expected_answer = Reading {
            sequence: 43,
            ..reading
        };
        if seen.reading == reading
            && seen.job.as_ref() == Some(&job)
            && answer == expected_answer
            && answer_job.as_ref() == Some(&expected_job)
        {
            Ok("the struct and the record arrived intact, and both answers came back".into())
        } else {
            Err(check(
                "what the worker read or answered is not what was written",
            ))
        }
    }

    fn counter(&mut self) -> Step {
        let map = self.map()?;
        map.write_value_at(COUNTER, &0u64)?;
        say(format!(
            "each of {COUNTERS} workers, {} times: lock; read the u64 at offset {COUNTER}; \
             write it + 1; unlock",
            grouped(INCREMENTS)
        ));
        let start = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..COUNTERS {
            workers.push(spawn(
                "demo-count",
                &self.args(&[INCREMENTS.to_string()]),
                true,
            )?);
        }
        let mut done = 0;
        for worker in workers {
            let counted: Counted = report(worker, "a counting worker")?;
            done += counted.increments;
        }
        let elapsed = start.elapsed();
        let total: u64 = map.read_value_at(COUNTER)?;
        let expected = COUNTERS as u64 * INCREMENTS;
        say(format!(
            "counter = {} (expected {COUNTERS} × {} = {}), {} increments reported, in {}",
            grouped(total),
            grouped(INCREMENTS),
            grouped(expected),
            grouped(done),
            human_duration(elapsed)
        ));
        if total == expected && done == expected {
            Ok(format!(
                "{} increments from {COUNTERS} processes, none lost",
                grouped(expected)
            ))
        } else {
            Err(check(format!("the counter is {total}, not {expected}")))
        }
    }

    fn killed_holder(&mut self) -> Step {
        let map = self.map()?.clone();
        // This process keeps the mutex open too, and checks it at the end.
        let mutex = map.mutex()?;
        map.write_value_at(DIRTY, &0u64)?;
        let held = map.atomic_u32(HELD)?;
        let waiting = map.atomic_u32(WAITING)?;
        held.store(0, Ordering::Release);
        waiting.store(0, Ordering::Release);

        let holder = spawn("demo-hold", &self.args(&[]), false)?;
        let holder_pid = holder.id();
        let holder = self.keep(holder);
        wait_until("the holder to take the lock", LIMIT, || {
            held.load(Ordering::Acquire) == 1
        })?;
        say(format!(
            "worker {holder_pid} took the lock and began a change: dirty = {}",
            map.read_value_at::<u64>(DIRTY)?
        ));
        let mut survivors = Vec::new();
        for _ in 0..SURVIVORS {
            survivors.push(spawn("demo-survivor", &self.args(&[]), true)?);
        }
        wait_until("the survivors to queue for the lock", LIMIT, || {
            waiting.load(Ordering::Acquire) == SURVIVORS as u32
        })?;
        // Give them time to go to sleep in the lock call.
        std::thread::sleep(Duration::from_millis(50));
        say(format!(
            "{SURVIVORS} more workers wait for the lock; worker {holder_pid} is killed \
             (Child::kill) in the middle of its change"
        ));
        let killed = Instant::now();
        // Killed and reaped.
        self.children[holder].checked_kill()?;
        let mut told = 0;
        let mut plain = 0;
        for survivor in survivors {
            let seen: Survived = report(survivor, "a surviving worker")?;
            if seen.owner_died {
                say(format!(
                    "worker {}: told the owner died (lock_to_repair): it found dirty = {}, and repaired it",
                    seen.pid, seen.dirty
                ));
                if seen.dirty == 1 {
                    told += 1;
                }
            } else {
                say(format!(
                    "worker {}: took the lock normally after that: dirty = {}",
                    seen.pid, seen.dirty
                ));
                if seen.dirty == 0 {
                    plain += 1;
                }
            }
        }
        let after = killed.elapsed();
        let healthy = mutex.try_lock().is_ok();
        say(format!(
            "both survivors were done {} after the kill; the mutex then locks normally: {healthy}",
            human_duration(after)
        ));
        if told == 1 && plain == SURVIVORS - 1 && healthy {
            Ok(
                "the first survivor was told the owner died and repaired the data; \
                nothing was wedged"
                    .into(),
            )
        } else {
            Err(check(format!(
                "expected one OwnerDied that saw dirty = 1 and {} plain locks that saw it \
                 repaired; got {told} and {plain}",
                SURVIVORS - 1
            )))
        }
    }

    fn channel(&mut self) -> Step {
        let options = ChannelGeometry {
            capacity: 64,
            max_message_size: 256,
        };
        let ping = Channel::create_or_open(&format!("{}-ping", self.name), options)?;
        // Shared with the thread that bounds a wait for a record.
        let pong = Arc::new(Channel::create_or_open(
            &format!("{}-pong", self.name),
            options,
        )?);
        let echo = spawn("demo-echo", &self.args(&[]), false)?;
        let echo_pid = echo.id();
        let echo = self.keep(echo);
        let mut intact = 0usize;
        let mut total = 0usize;
        for text in ["hello", "resize 800 600"] {
            ping.send(text.as_bytes())?;
            let back = pong.recv_timeout(LIMIT)?;
            total += 1;
            if back == text.as_bytes() {
                intact += 1;
            }
        }
        ping.send_record(&("reload", 3u32))?;
        let record = {
            let pong = Arc::clone(&pong);
            // A wait the library cannot bound: on a thread of its own,
            // left blocked (until the process exits) if it runs out.
            let what = "the record to come back";
            shmio_cli::process::checked_within(what, LIMIT, move || {
                pong.recv_record::<(String, u32)>()
            })
            .map_err(|_| Error::GaveUp {
                what: what.to_owned(),
                limit: LIMIT,
            })?
        };
        total += 1;
        // A record that does not decode (`Error::UndecodableMessage`) did not come back intact.
        if record.ok() == Some(("reload".into(), 3)) {
            intact += 1;
        }
        say(format!(
            "sent \"hello\", \"resize 800 600\" and the record (\"reload\", 3); worker \
             {echo_pid} sent back {intact} of {total} intact"
        ));

        ping.send(b"stop")?;
        wait_child(&mut self.children[echo], "the echo worker", LIMIT)?;
        drop((ping, pong));

        let timed = round_trips(&self.name).map_err(Error::Bench)?;
        say(format!(
            "round trips of 8 bytes, blocking (`recv_into`), in {} paired rounds (medians): \
             Channel {}, pipe {}: the Channel {}",
            ROUND_TRIP_SETTINGS.rounds,
            human_duration(Duration::from_secs_f64(
                timed.ns_per_op(RoundTrip::Channel) / 1e9
            )),
            human_duration(Duration::from_secs_f64(
                timed.ns_per_op(RoundTrip::Pipe) / 1e9
            )),
            compared(timed.ratio(RoundTrip::Channel, RoundTrip::Pipe))
        ));
        if intact == total {
            Ok(format!(
                "{total} messages went to another process and came back intact, \
                 and the round trips were timed against a pipe's"
            ))
        } else {
            Err(check(format!(
                "{} of {total} messages came back wrong",
                total - intact
            )))
        }
    }

    fn command_bus(&mut self) -> Step {
        let group = format!("{}-bus", self.name);
        let bus = Bus::join(&group)?;
        let mut workers = Vec::new();
        for number in 1..=BUS_WORKERS {
            let worker = proc::worker("demo-bus", &[group.clone(), number.to_string()])?
                .stdin(Input::Pipe)
                .stdout(Output::Collect)
                .limit(LIMIT)
                .try_start()
                .map_err(|e| Error::io("cannot start a worker", e))?;
            workers.push(self.keep(worker));
        }
        for &worker in &workers {
            let said = self.children[worker].checked_next_line()?;
            if said.as_deref() != Some("ready") {
                return Err(check(format!("a bus worker said {said:?}, not ready")));
            }
        }
        let before = bus.listeners(SUM)?;
        say(format!(
            "{} workers listen to {SUM:?} in the group {group:?} (processes {}, asked in \
             that order)",
            before.len(),
            pids(before.iter().map(|l| l.pid))
        ));
        let numbers = [1, 2, 3, 4];
        let expected: i64 = numbers.iter().sum();
        let first: Option<Summed> = bus.call(SUM, &numbers, CALL_TIMEOUT)?;
        let first = first.ok_or_else(|| check("nobody answered the call"))?;
        say(format!(
            "call({SUM:?}, {numbers:?}) was answered by worker {} (process {}): sum = {}",
            first.worker, first.pid, first.sum
        ));
        let replies = bus.broadcast::<_, Summed>(SUM, &numbers, CALL_TIMEOUT)?;
        let all: Vec<Summed> = replies.replies().map(|(_, reply)| *reply).collect();
        say(format!(
            "broadcast: {} answers, from workers {}",
            all.len(),
            all.iter()
                .map(|reply| format!("{} (sum = {})", reply.worker, reply.sum))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let killed = workers
            .iter()
            .copied()
            .find(|&worker| self.children[worker].id() == first.pid)
            .ok_or_else(|| check(format!("process {} is not a bus worker", first.pid)))?;
        self.children[killed].checked_kill()?;
        let started = Instant::now();
        let second: Option<Summed> = bus.call(SUM, &numbers, CALL_TIMEOUT)?;
        let second = second.ok_or_else(|| check("nobody answered after the kill"))?;
        let after = bus.listeners(SUM)?;
        say(format!(
            "worker {} was killed (SIGKILL); the next call was answered by worker {} \
             (process {}) in {}, and the dead listener pruned: {} listeners before, {} after",
            first.worker,
            second.worker,
            second.pid,
            human_duration(started.elapsed()),
            before.len(),
            after.len()
        ));
        for &worker in &workers {
            self.children[worker].close_stdin();
        }
        for &worker in &workers {
            if worker != killed {
                wait_child(&mut self.children[worker], "a bus worker", LIMIT)?;
            }
        }
        drop(bus);
        let summed = |reply: &Summed| reply.sum == expected;
        if before.len() == BUS_WORKERS as usize
            && summed(&first)
            && all.len() == BUS_WORKERS as usize
            && all.iter().all(summed)
            && summed(&second)
            && second.pid != first.pid
            && after.len() == BUS_WORKERS as usize - 1
        {
            Ok(format!(
                "the first listener answered, all {BUS_WORKERS} answered the broadcast, and \
                 another took over when it was killed"
            ))
        } else {
            Err(check(format!(
                "expected {BUS_WORKERS} listeners, sums of {expected}, another answer after \
                 the kill and one listener less; got {} listeners, {first:?}, {} answers,                  {second:?}, {} listeners after",
                before.len(),
                all.len(),
                after.len()
            )))
        }
    }

    fn nothing_left(&mut self) -> Step {
        for child in &mut self.children {
            let _ = child.checked_kill();
        }
        self.map = None;
        let base = &self.name;
        let ours = |entry: &str| {
            entry == base
                || [".", "-", "@"]
                    .iter()
                    .any(|sep| entry.starts_with(&format!("{base}{sep}")))
        };
        let mut left: Vec<String> = Vec::new();
        if cfg!(target_os = "linux") {
            let entries =
                std::fs::read_dir("/dev/shm").map_err(|e| Error::io("cannot list /dev/shm", e))?;
            for entry in entries.flatten() {
                let entry = entry.file_name().to_string_lossy().into_owned();
                if ours(&entry) {
                    left.push(format!("/dev/shm/{entry}"));
                }
            }
            for info in shmio::inventory::list()? {
                if ours(&info.name) && !left.contains(&format!("/dev/shm/{}", info.name)) {
                    left.push(info.os_name);
                }
            }
            say(format!(
                "all workers have exited; /dev/shm entries named {base:?}, \"{base}.*\", \
                 \"{base}-*\" or \"{base}@*\": {}",
                left.len()
            ));
            let path = format!("/dev/shm/{base}");
            say(format!(
                "{path} exists: {}",
                std::path::Path::new(&path).exists()
            ));
        } else {
            for name in [base.clone(), format!("{base}-ping"), format!("{base}-pong")] {
                match Mapping::open(&name) {
                    Err(ShmioError::NotFound { .. }) => {}
                    Ok(_) => left.push(name),
                    Err(e) => return Err(e.into()),
                }
            }
            say(format!(
                "all workers have exited; names that still open: {}",
                left.len()
            ));
        }
        if left.is_empty() {
            Ok("no name of the demo's is left".into())
        } else {
            Err(check(format!("left behind: {}", left.join(", "))))
        }
    }
}

/// Process ids as a list: "1, 2, 3".
fn pids(pids: impl Iterator<Item = u32>) -> String {
    pids.map(|pid| pid.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A time ratio (this / that) as people say it: "12× faster", "1.5× slower".
fn compared(ratio: f64) -> String {
    if ratio < 1.0 && ratio > 0.0 {
        format!("{:.0}× faster", 1.0 / ratio)
    } else {
        format!("{ratio:.1}× slower")
    }
}

/// How the demo times the round trips: a few short rounds.
const ROUND_TRIP_SETTINGS: Settings = Settings::new(9, 5);

/// The Channel's blocking round trip and a pipe's, timed by the bench
/// library's harness (each echo checked on its way back), with its
/// children (this binary, `__worker bench`) and its watchdog armed while
/// it runs.
fn round_trips(name: &str) -> shmio_cli::bench::Result<Results<RoundTrip>> {
    shmio_cli::bench::child::launch_with([proc::WORKER, "bench"]);
    let _armed = shmio_cli::bench::watchdog::arm("shmio demo".into());
    let sides: Vec<Named<RoundTrip>> = vec![
        (
            RoundTrip::Channel,
            Box::new(channel::BlockingRoundTrip::start(&format!("{name}-rt"))?),
        ),
        (RoundTrip::Pipe, Box::new(stream::PipeRoundTrip::start()?)),
    ];
    harness::run("the demo's round trips", sides, ROUND_TRIP_SETTINGS)
}

/// The demo's round trips: the Channel's and a pipe's.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum RoundTrip {
    Channel,
    Pipe,
}

impl std::fmt::Display for RoundTrip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RoundTrip::Channel => "Channel",
            RoundTrip::Pipe => "pipe",
        })
    }
}
