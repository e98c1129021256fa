//! The workers' side of `shmio demo`: what each `__worker demo-*` does in
//! its step, and the one JSON line it reports.

use std::io::Write;
use std::sync::atomic::Ordering;

use serde::Serialize;
use shmio::{Bus, Channel, Mapping};

use crate::cli::DemoWorker;
use crate::error::{Error, Result};

use super::{
    check, Counted, Exchanged, Job, Opened, Reading, Summed, Survived, ANSWER_JOB, ANSWER_READING,
    COUNTER, DIRTY, HELD, JOB, LIMIT, READING, SUM, WAITING,
};

/// The worker side of each step.
pub fn worker(role: DemoWorker) -> Result<()> {
    match role {
        DemoWorker::Open { name } => {
            let map = Mapping::open(&name)?;
            print(&Opened {
                pid: std::process::id(),
                existed: map.existed(),
                len: map.len(),
            })
        }
        DemoWorker::Exchange { name } => {
            let map = Mapping::open(&name)?;
            let reading: Reading = map.read_value_at(READING)?;
            let job: Option<Job> = map.read_record_at(JOB)?;
            let answer = Reading {
                sequence: reading.sequence + 1,
                ..reading
            };
            map.write_value_at(ANSWER_READING, &answer)?;
            if let Some(job) = &job {
                let mut args = job.args.clone();
                args.reverse();
                map.write_record_at(
                    ANSWER_JOB,
                    &Job {
                        command: "done".into(),
                        args,
                    },
                )?;
            }
            print(&Exchanged {
                pid: std::process::id(),
                reading,
                job,
            })
        }
        DemoWorker::Count { name, increments } => {
            let map = Mapping::open(&name)?;
            for _ in 0..increments {
                let _guard = map.lock()?;
                let value: u64 = map.read_value_at(COUNTER)?;
                map.write_value_at(COUNTER, &(value + 1))?;
            }
            print(&Counted {
                pid: std::process::id(),
                increments,
            })
        }
        DemoWorker::Hold { name } => {
            let map = Mapping::open(&name)?;
            let _guard = map.lock()?;
            map.write_value_at(DIRTY, &1u64)?;
            map.atomic_u32(HELD)?.store(1, Ordering::Release);
            // Killed here, holding the lock, half-way through its change.
            std::thread::sleep(LIMIT);
            Err(check("the demo never killed this holder"))
        }
        DemoWorker::Survivor { name } => {
            let map = Mapping::open(&name)?;
            let mutex = map.mutex()?;
            map.atomic_u32(WAITING)?.fetch_add(1, Ordering::AcqRel);
            // Ready to repair: the first survivor to lock is told, repairs
            // and says so; the next finds the data whole.
            let (owner_died, dirty) = match mutex.lock_to_repair_timeout(LIMIT) {
                Ok(mut guard) if guard.owner_died() => {
                    let dirty = map.read_value_at::<u64>(DIRTY)?;
                    // The repair: here, finishing (or undoing) the change.
                    map.write_value_at(DIRTY, &0u64)?;
                    guard.mark_consistent();
                    (true, dirty)
                }
                Ok(_guard) => (false, map.read_value_at::<u64>(DIRTY)?),
                Err(error) if error.is_timed_out() => {
                    return Err(check(format!("the lock stayed held for {LIMIT:?}")))
                }
                Err(error) => return Err(error.into()),
            };
            print(&Survived {
                pid: std::process::id(),
                owner_died,
                dirty,
            })
        }
        DemoWorker::Echo { name } => {
            let ping = Channel::open(&format!("{name}-ping"))?;
            let pong = Channel::open(&format!("{name}-pong"))?;
            loop {
                let message = ping.recv_timeout(LIMIT)?;
                if message == b"stop" {
                    return Ok(());
                }
                pong.send(&message)?;
            }
        }
        DemoWorker::Bus { name, number } => serve_sums(&name, number),
    }
}

/// The bus worker: listens to `sum`, says `ready`, and serves until its
/// input ends (or it is killed).
fn serve_sums(group: &str, number: u32) -> Result<()> {
    let bus = Bus::join(group)?;
    let pid = std::process::id();
    let _listener = bus.listen(SUM, move |numbers: Vec<i64>| {
        Ok::<_, String>(Some(Summed {
            worker: number,
            pid,
            sum: numbers.iter().sum(),
        }))
    })?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")
        .and_then(|()| out.flush())
        .map_err(|e| Error::io("writing to stdout", e))?;
    drop(out);
    let mut sink = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut sink);
    Ok(())
}

/// A worker's report: one JSON line on stdout.
fn print<T: Serialize>(value: &T) -> Result<()> {
    println!(
        "{}",
        serde_json::to_string(value).expect("plain data serializes")
    );
    Ok(())
}
