//! The hidden `__worker ROLE ARGS..` subcommand: the child processes of
//! `bench`, `demo` and `lock`, and the stand-ins the tests run. The roles
//! are `cli::Worker`; the demo's are in `demo`.

use std::io::{Read, Write};
use std::process::ExitCode;

use shmio::Mapping;

use crate::cli::{DemoWorker, Worker};
use crate::error::{Error, Result};
use crate::proc;
#[cfg(unix)]
use crate::supervise;

pub fn run(role: Worker) -> Result {
    let name = role_name(&role);
    match &role {
        // Not even for a moment: its parent may be gone by the next line.
        Worker::Linger { .. } => proc::limit_lifetime(),
        // It must outlive its parent, for as long as the command runs.
        #[cfg(unix)]
        Worker::Guard => {}
        _ => proc::worker_setup(),
    }
    let outcome = match role {
        Worker::Wait => {
            println!("ready");
            wait_for_end_of_input();
            Ok(())
        }
        Worker::Hold { name, size } => hold(&name, size),
        Worker::HoldLock { name } => hold_lock(&name),
        Worker::Linger { name, code } => linger(&name, code),
        Worker::Bench => match shmio_cli::bench::child::serve::<shmio_cli::bench::sides::Role>() {
            // It said why on stderr.
            Some(code) => std::process::exit(code),
            None => Err(Error::Check(format!(
                "{} is not set",
                shmio_cli::bench::child::ROLE
            ))),
        },
        #[cfg(unix)]
        Worker::Guard => return supervise::guard(),
        Worker::Demo(role) => crate::commands::demo::worker(role),
    };
    outcome
        .map(|()| ExitCode::SUCCESS)
        .map_err(|source| Error::Worker {
            role: name,
            source: Box::new(source),
        })
}

/// The role's name, as errors say it.
fn role_name(role: &Worker) -> &'static str {
    match role {
        Worker::Wait => "wait",
        Worker::Hold { .. } => "hold",
        Worker::HoldLock { .. } => "hold-lock",
        Worker::Linger { .. } => "linger",
        Worker::Bench => "bench",
        #[cfg(unix)]
        Worker::Guard => "guard",
        Worker::Demo(role) => match role {
            DemoWorker::Open { .. } => "demo-open",
            DemoWorker::Exchange { .. } => "demo-exchange",
            DemoWorker::Count { .. } => "demo-count",
            DemoWorker::Hold { .. } => "demo-hold",
            DemoWorker::Survivor { .. } => "demo-survivor",
            DemoWorker::Echo { .. } => "demo-echo",
            DemoWorker::Bus { .. } => "demo-bus",
        },
    }
}

/// Writes `line` to stdout and flushes it.
fn say(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| Error::io("writing to stdout", e))
}

/// `hold NAME SIZE`: holds `Mapping::create_or_open(NAME, SIZE)`, says
/// `ready existed=BOOL`, and keeps it until stdin closes (or it is killed).
fn hold(name: &str, size: u64) -> Result<()> {
    let map = Mapping::create_or_open(name, size)?;
    say(&format!("ready existed={}", map.existed()))?;
    wait_for_end_of_input();
    drop(map);
    Ok(())
}

/// `hold-lock NAME`: opens (or creates) the 4 KiB mapping NAME, takes its
/// lock (`map.lock()`, as a library user would), says `locked`, and keeps
/// it until stdin closes (or it is killed).
fn hold_lock(name: &str) -> Result<()> {
    let map = Mapping::create_or_open(name, 4096)?;
    let guard = map.lock_to_repair()?;
    say("locked")?;
    wait_for_end_of_input();
    drop(guard);
    Ok(())
}

/// `linger NAME CODE`: stands for any command `shmio lock` runs, so unlike
/// every other worker it does not die with its parent (but for a
/// parent-death signal it was started with). Holds
/// `Mapping::create_or_open(NAME, 4 KiB)` (a sign of life another process
/// can look for), says `ready`, says `got signal N` for each SIGTERM, SIGINT
/// or SIGHUP (Unix) and carries on, and exits with CODE when stdin closes.
fn linger(name: &str, code: i32) -> Result<()> {
    let map = Mapping::create_or_open(name, 4096)?;
    #[cfg(unix)]
    {
        use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
            .map_err(|e| Error::io("cannot catch signals", e))?;
        std::thread::spawn(move || {
            for signal in signals.forever() {
                let _ = writeln!(std::io::stdout(), "got signal {signal}");
            }
        });
    }
    let _ = writeln!(std::io::stdout(), "ready");
    wait_for_end_of_input();
    drop(map);
    std::process::exit(code);
}

/// Returns when stdin closes (the worker's lifetime bounds this).
fn wait_for_end_of_input() {
    let mut sink = Vec::new();
    let _ = std::io::stdin().lock().read_to_end(&mut sink);
}
