//! Scaling: `P` producer processes and `C` consumer processes on one
//! shmio `Channel`, against `crossbeam-channel`'s bounded channel between
//! `P` producer threads and `C` consumer threads of one process (the
//! in-process reference), both with the same capacity and message size.
//!
//! A message is [`SIZE`] bytes: its producer's sequence number (bytes
//! 0..8), the producer's index (byte 8), and 0xA5 last. Every consumer
//! checks each message's length, last byte and producer, and that each
//! producer's sequence numbers rise (by exactly one with one consumer: it
//! sees every message); the parent checks that the consumers took every
//! message of the batch, no more.

use std::io::{BufRead, BufReader, Write};
use std::process::ChildStdout;
use std::time::Instant;

use shmio::{Channel, ChannelGeometry};

use super::{stamp, Role};
use crate::child::{self, Commands, Kid};
use crate::harness::Side;
use crate::watchdog::{self, OnStall};
use crate::Result;

/// The size of a scaling message.
pub const SIZE: usize = 64;
/// Slots of the queue, shmio's and crossbeam's.
pub const CAPACITY: u32 = 1024;
/// The producer's index in a message.
const PRODUCER: usize = 8;
/// What tells a consumer process to report and wait for the next batch.
const STOP: u64 = u64::MAX;

/// The child's variable: its producer index, or the number of consumers.
const INDEX: &str = "SHMIO_BENCH_INDEX";
/// The child's variable: how many producers there are.
const PRODUCERS: &str = "SHMIO_BENCH_PRODUCERS";
/// The child's variable: how many consumers there are.
const CONSUMERS: &str = "SHMIO_BENCH_CONSUMERS";

fn message(producer: usize) -> [u8; SIZE] {
    let mut message = [0xA5; SIZE];
    message[PRODUCER] = producer as u8;
    message
}

/// One consumer's check of the messages it takes.
struct Checker {
    /// The next sequence number each producer may send (at least).
    next: Vec<u64>,
    /// Exactly the next (one consumer), or any later (several).
    exact: bool,
}

impl Checker {
    fn new(producers: usize, consumers: usize) -> Checker {
        Checker {
            next: vec![0; producers],
            exact: consumers == 1,
        }
    }

    /// Checks `message`; its sequence number.
    fn check(&mut self, message: &[u8]) -> Result<u64> {
        let seq = u64::from_le_bytes(message.get(..8).ok_or("short")?.try_into()?);
        if message.len() != SIZE || message.last() != Some(&0xA5) {
            return Err(format!(
                "message {seq}: {} bytes, last byte {:?}",
                message.len(),
                message.last()
            )
            .into());
        }
        if seq == STOP {
            return Ok(seq);
        }
        let producer = usize::from(message[PRODUCER]);
        let next = self
            .next
            .get_mut(producer)
            .ok_or_else(|| format!("message {seq} from producer {producer}, who is not"))?;
        if seq < *next || (self.exact && seq != *next) {
            return Err(
                format!("producer {producer}'s message {seq} where {next} was next").into(),
            );
        }
        *next = seq + 1;
        Ok(seq)
    }
}

/// A child and the lines it writes.
struct Reporter {
    kid: Kid,
    lines: BufReader<ChildStdout>,
}

impl Reporter {
    fn start(role: Role, env: &[(&str, String)]) -> Result<Reporter> {
        let mut kid = child::spawn_commanded(role, env)?;
        let stdout = kid.stdout.take().ok_or("no stdout")?;
        Ok(Reporter {
            kid,
            lines: BufReader::new(stdout),
        })
    }

    /// The child's next line's number after `done `.
    fn done(&mut self) -> Result<u64> {
        let mut line = String::new();
        if self.lines.read_line(&mut line)? == 0 {
            return Err("a scaling child ended".into());
        }
        Ok(line
            .trim_end()
            .strip_prefix("done ")
            .ok_or_else(|| format!("unexpected line {line:?}"))?
            .parse()?)
    }
}

/// shmio: `producers` processes send, `consumers` processes receive
/// (blocking `send`, blocking `recv_into`), one channel. Time per message
/// of the whole batch: from the parent's `go` to the last consumer's
/// report.
pub struct ChannelScaling {
    channel: Channel,
    _guard: OnStall,
    producers: Vec<Reporter>,
    consumers: Vec<Reporter>,
}

impl ChannelScaling {
    pub fn start(name: &str, producers: usize, consumers: usize) -> Result<ChannelScaling> {
        let guard = OnStall::shmio_name(name);
        let channel = Channel::create_or_open(
            name,
            ChannelGeometry {
                capacity: CAPACITY,
                max_message_size: SIZE as u32,
            },
        )?;
        let env = |index: usize| {
            [
                (child::NAME, name.to_owned()),
                (INDEX, index.to_string()),
                (PRODUCERS, producers.to_string()),
                (CONSUMERS, consumers.to_string()),
            ]
        };
        let consumers = (0..consumers)
            .map(|index| Reporter::start(Role::ScalingConsumer, &env(index)))
            .collect::<Result<_>>()?;
        let producers = (0..producers)
            .map(|index| Reporter::start(Role::ScalingProducer, &env(index)))
            .collect::<Result<_>>()?;
        Ok(ChannelScaling {
            channel,
            _guard: guard,
            producers,
            consumers,
        })
    }
}

impl Side for ChannelScaling {
    fn batch(&mut self, n: u64) -> Result<f64> {
        let share = n.div_ceil(self.producers.len() as u64);
        let total = share * self.producers.len() as u64;
        let start = Instant::now();
        for consumer in &mut self.consumers {
            consumer.kid.command("go")?;
        }
        for producer in &mut self.producers {
            producer.kid.command(&format!("go {share}"))?;
        }
        for producer in &mut self.producers {
            producer.done()?;
        }
        let mut stop = message(0);
        stamp(&mut stop, STOP);
        for _ in &self.consumers {
            self.channel.send(&stop)?;
        }
        let mut taken = 0;
        for consumer in &mut self.consumers {
            taken += consumer.done()?;
        }
        let ns = start.elapsed().as_secs_f64() * 1e9 / total as f64;
        if taken != total {
            return Err(format!("the consumers took {taken} messages of {total}").into());
        }
        Ok(ns)
    }

    fn keepalive(&mut self) -> Result<()> {
        for child in self.producers.iter_mut().chain(&mut self.consumers) {
            child.kid.alive()?;
        }
        Ok(())
    }
}

/// A producer process: on each `go N`, sends N messages, then says `done N`.
pub fn producer_child() -> Result<()> {
    let channel = Channel::open(&child::var(child::NAME)?)?;
    let index = child::number(INDEX)?;
    let mut commands = Commands::new()?;
    shmio_cli::process::try_ready()?;
    let mut message = message(index);
    let mut seq = 0u64;
    let mut out = std::io::stdout();
    while let Some(n) = commands.next_count()? {
        for _ in 0..n {
            stamp(&mut message, seq);
            channel.send(&message)?;
            seq += 1;
            watchdog::progress();
        }
        writeln!(out, "done {n}")?;
        out.flush()?;
    }
    Ok(())
}

/// A consumer process: on each `go`, receives until a stop message, then
/// says `done` and how many messages it took.
pub fn consumer_child() -> Result<()> {
    let channel = Channel::open(&child::var(child::NAME)?)?;
    let mut checker = Checker::new(child::number(PRODUCERS)?, child::number(CONSUMERS)?);
    let mut commands = Commands::new()?;
    shmio_cli::process::try_ready()?;
    let mut buf = Vec::with_capacity(SIZE);
    let mut out = std::io::stdout();
    while commands.next_command()?.is_some() {
        let mut taken = 0u64;
        loop {
            channel.recv_into(&mut buf)?;
            watchdog::progress();
            if checker.check(&buf)? == STOP {
                break;
            }
            taken += 1;
        }
        writeln!(out, "done {taken}")?;
        out.flush()?;
    }
    Ok(())
}

/// The in-process reference: `crossbeam_channel::bounded` of [`CAPACITY`]
/// `[u8; SIZE]` messages between `producers` and `consumers` threads of
/// this process, started for each batch (a few tens of microseconds in a
/// batch of tens of milliseconds); a consumer stops when every producer
/// has finished and the queue is empty.
pub struct CrossbeamScaling {
    producers: usize,
    consumers: usize,
    /// Each producer's next sequence number, across batches.
    next: Vec<u64>,
}

impl CrossbeamScaling {
    pub fn new(producers: usize, consumers: usize) -> CrossbeamScaling {
        CrossbeamScaling {
            producers,
            consumers,
            next: vec![0; producers],
        }
    }
}

impl Side for CrossbeamScaling {
    fn batch(&mut self, n: u64) -> Result<f64> {
        let share = n.div_ceil(self.producers as u64);
        let total = share * self.producers as u64;
        let (sender, receiver) = crossbeam_channel::bounded::<[u8; SIZE]>(CAPACITY as usize);
        // Where each producer's sequence starts in this batch.
        let first = self.next.clone();
        let start = Instant::now();
        let taken = std::thread::scope(|scope| -> Result<u64> {
            for (index, next) in self.next.iter_mut().enumerate() {
                let sender = sender.clone();
                scope.spawn(move || {
                    let mut message = message(index);
                    for _ in 0..share {
                        stamp(&mut message, *next);
                        if sender.send(message).is_err() {
                            return;
                        }
                        *next += 1;
                    }
                });
            }
            drop(sender);
            let consumers: Vec<_> = (0..self.consumers)
                .map(|_| {
                    let receiver = receiver.clone();
                    let mut checker = Checker {
                        next: first.clone(),
                        exact: self.consumers == 1,
                    };
                    scope.spawn(move || -> Result<u64> {
                        let mut taken = 0;
                        while let Ok(message) = receiver.recv() {
                            checker.check(&message)?;
                            taken += 1;
                        }
                        Ok(taken)
                    })
                })
                .collect();
            drop(receiver);
            let mut taken = 0;
            for consumer in consumers {
                taken += consumer
                    .join()
                    .map_err(|_| "a consumer thread panicked")??;
            }
            Ok(taken)
        })?;
        let ns = start.elapsed().as_secs_f64() * 1e9 / total as f64;
        watchdog::progress();
        if taken != total {
            return Err(format!("the consumers took {taken} messages of {total}").into());
        }
        Ok(ns)
    }
}
