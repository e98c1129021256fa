//! `shmio demo`: the library's main job, shown step by step with real
//! worker processes (this binary again, `__worker demo-*`), each step
//! checked and marked ✓ or ✗. It exits 0 only if every step checked out.
//! Every wait is bounded, and nothing is left behind.
//!
//! The steps (`steps.rs`: what `shmio demo` does and checks) and the
//! workers' side (`worker.rs`: what each `__worker demo-*` does and
//! reports) share only what is here: the mapping's layout, the values
//! they exchange, the reports a worker prints, and the bounds.

mod steps;
mod worker;

pub use steps::run;
pub use worker::worker;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use shmio::zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::error::Error;

/// A plain struct, copied byte for byte (zerocopy).
#[derive(
    FromBytes, IntoBytes, Immutable, Serialize, Deserialize, Debug, Clone, Copy, PartialEq,
)]
#[zerocopy(crate = "shmio::zerocopy")]
#[repr(C)]
struct Reading {
    sensor: u32,
    sequence: u32,
    celsius: f64,
}

/// A structured value, framed as a record (u32 length + JSON).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Job {
    command: String,
    args: Vec<String>,
}

/// The mapping's size and layout.
const SIZE: u64 = 64 << 10;
const READING: u64 = 64;
const JOB: u64 = 128;
const ANSWER_READING: u64 = 1024;
const ANSWER_JOB: u64 = 1088;
/// A plain u64, changed only under the lock (read, add one, write).
const COUNTER: u64 = 4096;
/// 1 while a holder of the lock is half-way through a change.
const DIRTY: u64 = 4104;
/// How many survivors are about to wait for the lock (AtomicU32).
const WAITING: u64 = 4112;
/// Set by the holder once it has the lock (AtomicU32).
const HELD: u64 = 4116;

const OPENERS: usize = 4;
const COUNTERS: usize = 4;
const INCREMENTS: u64 = 10_000;
const SURVIVORS: usize = 2;
/// How many workers listen on the demo's bus group, and to what.
const BUS_WORKERS: u32 = 3;
const SUM: &str = "sum";
/// How long a bus call of the demo may take (a killed listener is found
/// within the library's liveness interval, 100 ms).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest any one wait may take.
const LIMIT: Duration = Duration::from_secs(20);

#[derive(Serialize, Deserialize)]
struct Opened {
    pid: u32,
    existed: bool,
    len: u64,
}

#[derive(Serialize, Deserialize)]
struct Exchanged {
    pid: u32,
    reading: Reading,
    job: Option<Job>,
}

#[derive(Serialize, Deserialize)]
struct Counted {
    pid: u32,
    increments: u64,
}

/// A bus worker's reply to `sum`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
struct Summed {
    worker: u32,
    pid: u32,
    sum: i64,
}

#[derive(Serialize, Deserialize)]
struct Survived {
    pid: u32,
    owner_died: bool,
    dirty: u64,
}

/// A step's finding that is not what it expected.
fn check(what: impl Into<String>) -> Error {
    Error::Check(what.into())
}
