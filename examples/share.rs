//! Two processes share one named mapping.
//!
//! The parent creates a named mapping and writes bytes, a plain struct and a
//! record; it starts a second process (this program again, in the role
//! `Reader`) that opens the mapping by name, sees `existed() == true`, reads
//! all three and writes its answer back. At the end nothing is left behind.
//! The second process is started and waited for, bounded, by the
//! workspace's child-process kit (`shmio-testkit`); it dies with its parent.
//!
//! Run: `cargo run --release --example share`

use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shmio::zerocopy::{FromBytes, Immutable, IntoBytes};
use shmio::Mapping;
use shmio_testkit::{arg, Output};

/// A plain struct, copied byte for byte.
#[derive(FromBytes, IntoBytes, Immutable, Debug, Clone, Copy)]
#[repr(C)]
struct Reading {
    sensor: u32,
    sequence: u32,
    celsius: f64,
}

/// A structured value, framed as a record (length + JSON).
#[derive(Serialize, Deserialize, Debug)]
struct Job {
    command: String,
    args: Vec<String>,
}

/// Where things are in the mapping.
const FLAG: u64 = 0; // AtomicU32: 1 = parent wrote, 2 = child answered
const MESSAGE: u64 = 8;
const READING: u64 = 64;
const JOB: u64 = 128;
const ANSWER: u64 = 1024;

/// The variable that gives the child the mapping's name.
const NAME: &str = "SHARE_NAME";

type Fallible<T> = Result<T, Box<dyn std::error::Error>>;

shmio_testkit::roles! {
    Reader => exit_on_error(child(&arg(NAME))),
}

fn main() -> Fallible<()> {
    // The child: this program again, in the role its parent named.
    if shmio_testkit::run_child::<Role>() {
        return Ok(());
    }
    parent()
}

/// Ends the child as a failed `main` would.
fn exit_on_error(result: Fallible<()>) {
    if let Err(error) = result {
        eprintln!("Error: {error}");
        std::process::exit(1);
    }
}

fn parent() -> Fallible<()> {
    let name = format!("shmio-share-demo-{}", std::process::id());
    let mut map = Mapping::create_or_open(&name, 64 * 1024)?;
    println!(
        "parent {}: created {:?} ({} bytes), existed = {}",
        std::process::id(),
        name,
        map.len(),
        map.existed()
    );

    map.seek(SeekFrom::Start(MESSAGE))?;
    map.write_all(b"hello from the parent")?;
    let reading = Reading {
        sensor: 7,
        sequence: 42,
        celsius: 21.5,
    };
    map.write_value_at(READING, &reading)?;
    let job = Job {
        command: "resize".into(),
        args: vec!["800".into(), "600".into()],
    };
    map.write_record_at(JOB, &job)?;
    println!("parent: wrote bytes, {reading:?} and record {job:?}");
    flag(&map)?.store(1, Ordering::Release);

    let status = Role::Reader
        .spawn()
        .env(NAME, &name)
        .stdout(Output::Inherit)
        .try_start()?
        .checked_wait()?;
    if !status.success() {
        return Err(format!("the child failed: {status}").into());
    }
    if flag(&map)?.load(Ordering::Acquire) != 2 {
        return Err("the child exited without answering".into());
    }

    map.seek(SeekFrom::Start(ANSWER))?;
    let answer: Job = map.read_record()?.ok_or("no answer record")?;
    let echoed: Reading = map.read_value()?;
    println!("parent: the child answered {answer:?} and {echoed:?}");
    if echoed.sequence != reading.sequence + 1 || answer.command != "done" {
        return Err("the child's answer does not match".into());
    }

    drop(map);
    let left = std::path::Path::new("/dev/shm").join(&name).exists();
    println!("parent: closed; /dev/shm/{name} left behind: {left}");
    match Mapping::open(&name) {
        Err(shmio::Error::NotFound { .. }) if !left => {
            println!("ok: two processes shared one mapping, and nothing is left");
            Ok(())
        }
        other => Err(format!("the name outlived its holders: {other:?}").into()),
    }
}

fn child(name: &str) -> Fallible<()> {
    let mut map = Mapping::open(name)?;
    println!(
        "  child {}: opened {:?} by name, existed = {}",
        std::process::id(),
        name,
        map.existed()
    );
    let written = flag(&map)?;
    shmio_testkit::checked_wait_until("the parent's data", Duration::from_secs(10), || {
        written.load(Ordering::Acquire) == 1
    })?;

    map.seek(SeekFrom::Start(MESSAGE))?;
    let mut message = [0u8; 21];
    map.read_exact(&mut message)?;
    let reading: Reading = map.read_value_at(READING)?;
    map.seek(SeekFrom::Start(JOB))?;
    let job: Job = map.read_record()?.ok_or("no job record")?;
    println!(
        "  child: read {:?}, {reading:?} and {job:?}",
        String::from_utf8_lossy(&message)
    );

    map.seek(SeekFrom::Start(ANSWER))?;
    map.write_record(&Job {
        command: "done".into(),
        args: job.args.into_iter().rev().collect(),
    })?;
    map.write_value(&Reading {
        sequence: reading.sequence + 1,
        ..reading
    })?;
    flag(&map)?.store(2, Ordering::Release);
    Ok(())
}

fn flag(map: &Mapping) -> shmio::Result<&AtomicU32> {
    map.atomic_u32(FLAG)
}
