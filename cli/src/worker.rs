//! The hidden `__worker ROLE ARGS..` subcommand: the child processes of
//! `bench`, `demo` and the tests.

use std::io::{Read, Write};
use std::process::ExitCode;

use shmio::Mapping;

use crate::{proc, units, CliResult, Failure};

pub fn run(role: &str, args: &[String]) -> CliResult {
    if role == "linger" {
        // Not even for a moment: its parent may be gone by the next line.
        proc::limit_lifetime();
    } else {
        proc::worker_setup();
    }
    let outcome = if role == "bench" {
        // A child of the bench library's harness: its role is in its environment.
        match shmio_bench::child::serve() {
            Some(code) => std::process::exit(code),
            None => Err(format!("{} is not set", shmio_bench::child::ROLE)),
        }
    } else if role.starts_with("demo-") {
        crate::demo::worker(role, args)
    } else if role == "hold" {
        hold(args)
    } else if role == "hold-lock" {
        hold_lock(args)
    } else if role == "linger" {
        linger(args)
    } else if role == "wait" {
        println!("ready");
        wait_for_end_of_input();
        Ok(())
    } else {
        Err(format!("unknown worker role {role:?}"))
    };
    outcome
        .map(|()| ExitCode::SUCCESS)
        .map_err(|e| Failure::new(format!("worker {role}: {e}")))
}

/// `wait`: says `ready`, then waits for the end of its input.
/// `hold NAME SIZE`: holds `Mapping::create_or_open(NAME, SIZE)`, says
/// `ready`, and keeps it until stdin closes (or it is killed).
fn hold(args: &[String]) -> Result<(), String> {
    let [name, size] = args else {
        return Err("usage: hold NAME SIZE".to_owned());
    };
    let size = units::parse_size(size)?;
    let map = Mapping::create_or_open(name, size).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready existed={}", map.existed())
        .and_then(|()| out.flush())
        .map_err(|e| e.to_string())?;
    wait_for_end_of_input();
    drop(map);
    Ok(())
}

/// `hold-lock NAME`: opens (or creates) the 4 KiB mapping NAME, takes its
/// lock (`map.lock()`, as a library user would), says `locked`, and keeps
/// it until stdin closes (or it is killed).
fn hold_lock(args: &[String]) -> Result<(), String> {
    let [name] = args else {
        return Err("usage: hold-lock NAME".to_owned());
    };
    let map = Mapping::create_or_open(name, 4096).map_err(|e| e.to_string())?;
    let guard = match map.lock() {
        Ok(guard) => guard,
        Err(shmio::LockError::OwnerDied(guard)) => guard,
        Err(shmio::LockError::Failed(error)) => return Err(error.to_string()),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "locked")
        .and_then(|()| out.flush())
        .map_err(|e| e.to_string())?;
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
fn linger(args: &[String]) -> Result<(), String> {
    let [name, code] = args else {
        return Err("usage: linger NAME CODE".to_owned());
    };
    let code: i32 = code
        .parse()
        .map_err(|e| format!("exit code {code:?}: {e}"))?;
    let map = Mapping::create_or_open(name, 4096).map_err(|e| e.to_string())?;
    #[cfg(unix)]
    {
        use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
            .map_err(|e| e.to_string())?;
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
