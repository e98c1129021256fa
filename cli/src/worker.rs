//! The hidden `__worker ROLE ARGS..` subcommand: the child processes of
//! `bench`, `demo` and the tests.

use std::io::{Read, Write};
use std::process::ExitCode;

use shmio::Mapping;

use crate::{proc, units, CliResult, Failure};

pub fn run(role: &str, args: &[String]) -> CliResult {
    proc::worker_setup();
    let outcome = if role.starts_with("bench-") {
        crate::bench::worker(role, args)
    } else if role.starts_with("demo-") {
        crate::demo::worker(role, args)
    } else if role == "hold" {
        hold(args)
    } else if role == "hold-lock" {
        hold_lock(args)
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

/// Returns when stdin closes (the worker's lifetime bounds this).
fn wait_for_end_of_input() {
    let mut sink = Vec::new();
    let _ = std::io::stdin().lock().read_to_end(&mut sink);
}
