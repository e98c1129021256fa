//! shmio's `Topic`: the 1→1 hand-over (a round trip through two topics,
//! both sides busy-polling, as the channel's busy-poll round trip) and
//! fan-out (one publisher, `k` subscriber processes: the time per message
//! delivered to every subscriber).

use std::io::{BufRead, BufReader};
use std::process::ChildStdout;

use shmio::{Error, Overflow, Subscriber, Topic};
use shmio_cli::process::{Input, Output};

use super::channel::seq_of;
use super::{check_message, stamp, warmed_up, Role, STOP};
use crate::child::{self, Commands, Kid};
use crate::harness::{timed, Side};
use crate::watchdog::{self, OnStall};
use crate::Result;

/// Set for a fan-out subscriber that reads each message in place
/// (`recv_with`) rather than copying it out.
const IN_PLACE: &str = "SHMIO_BENCH_IN_PLACE";

/// A topic for the bench: `capacity` messages of `size` bytes, blocking
/// (no message is lost, as in the channel's sides).
fn topic(name: &str, capacity: u32, size: usize) -> Result<Topic> {
    Ok(Topic::options()
        .capacity(capacity)
        .max_message_size(u32::try_from(size).map_err(|_| "a message too large")?)
        .overflow(Overflow::Block)
        .create_or_open(name)?)
}

/// Receives by polling `try_recv_into` until a message comes.
fn busy_recv(subscriber: &mut Subscriber, buf: &mut Vec<u8>) -> Result<()> {
    loop {
        match subscriber.try_recv_into(buf) {
            Ok(()) => return Ok(()),
            Err(Error::Empty) => std::hint::spin_loop(),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Round trips through two topics (`NAME-ping` to the child, `NAME-pong`
/// back), both sides busy-polling: the 1→1 hand-over of an 8-byte sample.
pub struct TopicRoundTrip {
    ping: Topic,
    pong: Subscriber,
    _guards: [OnStall; 2],
    kid: Kid,
    buf: Vec<u8>,
    seq: u64,
}

impl TopicRoundTrip {
    /// Creates the topics under `name`, subscribes to the pong topic and
    /// starts the child that echoes (it subscribes to ping before it says
    /// it is ready).
    pub fn start(name: &str) -> Result<TopicRoundTrip> {
        let (ping_name, pong_name) = (format!("{name}-ping"), format!("{name}-pong"));
        let guards = [
            OnStall::shmio_name(&ping_name),
            OnStall::shmio_name(&pong_name),
        ];
        let ping = topic(&ping_name, 16, 8)?;
        let pong = topic(&pong_name, 16, 8)?.subscribe()?;
        let kid = child::spawn_commanded(Role::TopicEcho, &[(child::NAME, name.to_owned())])?;
        Ok(TopicRoundTrip {
            ping,
            pong,
            _guards: guards,
            kid,
            buf: Vec::with_capacity(8),
            seq: 0,
        })
    }

    fn round_trip(&mut self, seq: u64) -> Result<()> {
        self.ping.publish(&seq.to_le_bytes())?;
        loop {
            busy_recv(&mut self.pong, &mut self.buf)?;
            if seq_of(&self.buf)? == seq {
                return Ok(());
            }
        }
    }
}

impl Side for TopicRoundTrip {
    fn batch(&mut self, n: u64) -> Result<f64> {
        self.kid.command("go")?;
        let ns = warmed_up(n, None, || {
            self.seq += 1;
            self.round_trip(self.seq)
        })?;
        self.round_trip(STOP)?;
        Ok(ns)
    }

    fn keepalive(&mut self) -> Result<()> {
        self.kid.alive()
    }
}

/// The echo child: subscribes to ping, then on each `go` echoes on pong
/// until [`STOP`].
pub fn echo_child() -> Result<()> {
    let name = child::var(child::NAME)?;
    let mut ping = Topic::open(&format!("{name}-ping"))?.subscribe()?;
    let pong = Topic::open(&format!("{name}-pong"))?;
    let mut commands = Commands::new()?;
    shmio_cli::process::try_ready()?;
    let mut buf = Vec::with_capacity(8);
    while commands.next_command()?.is_some() {
        loop {
            busy_recv(&mut ping, &mut buf)?;
            pong.publish(&buf)?;
            watchdog::progress();
            if seq_of(&buf)? == STOP {
                break;
            }
        }
    }
    Ok(())
}

/// One publisher (this process) and `subscribers` subscriber processes on
/// one topic of `size`-byte messages: a batch is `n` messages published
/// and received by every subscriber; the time is per message.
pub struct FanOut {
    topic: Topic,
    _guard: OnStall,
    kids: Vec<(Kid, BufReader<ChildStdout>)>,
    message: Vec<u8>,
}

impl FanOut {
    /// Creates the topic under `name` (1,024 slots) and starts its
    /// subscribers, which copy each message out.
    pub fn start(name: &str, subscribers: usize, size: usize) -> Result<FanOut> {
        FanOut::start_with(name, subscribers, size, 1024, false)
    }

    /// As [`start`](Self::start), with `capacity` slots, the subscribers
    /// reading each message in place if `in_place`.
    pub fn start_with(
        name: &str,
        subscribers: usize,
        size: usize,
        capacity: u32,
        in_place: bool,
    ) -> Result<FanOut> {
        let size = size.max(8);
        let guard = OnStall::shmio_name(name);
        let topic = topic(name, capacity, size)?;
        let mut kids = Vec::with_capacity(subscribers);
        let mut env = vec![
            (child::NAME, name.to_owned()),
            (child::SIZE, size.to_string()),
        ];
        if in_place {
            env.push((IN_PLACE, "1".to_owned()));
        }
        for _ in 0..subscribers {
            let mut kid = child::spawn(Role::TopicSubscriber, &env, Input::Pipe, Output::Pipe)?;
            let mut out = BufReader::new(kid.stdout.take().ok_or("no stdout")?);
            let mut line = String::new();
            out.read_line(&mut line)?;
            if line.trim() != "subscribed" {
                return Err(format!("a subscriber said {line:?}").into());
            }
            kids.push((kid, out));
        }
        Ok(FanOut {
            topic,
            _guard: guard,
            kids,
            message: vec![0xA5; size],
        })
    }
}

impl Side for FanOut {
    fn batch(&mut self, n: u64) -> Result<f64> {
        for (kid, _) in &mut self.kids {
            kid.command(&format!("go {n}"))?;
        }
        let (topic, message, kids) = (&self.topic, &mut self.message, &mut self.kids);
        let mut seq = 0;
        let ns = timed(1, || {
            for _ in 0..n {
                stamp(message, seq);
                seq += 1;
                topic.publish(message)?;
            }
            for (_, out) in kids.iter_mut() {
                let mut line = String::new();
                out.read_line(&mut line)?;
                if line.trim() != "done" {
                    return Err(format!("a subscriber said {line:?}").into());
                }
            }
            Ok(())
        })?;
        Ok(ns / n as f64)
    }

    fn keepalive(&mut self) -> Result<()> {
        for (kid, _) in &mut self.kids {
            kid.alive()?;
        }
        Ok(())
    }
}

/// A fan-out subscriber: subscribes, says so, then on each `go N`
/// receives N messages (each checked in order: copied out, or read in
/// place) and says `done`.
pub fn subscriber_child() -> Result<()> {
    let in_place = std::env::var_os(IN_PLACE).is_some();
    let size = child::number(child::SIZE)?;
    let topic = Topic::open(&child::var(child::NAME)?)?;
    let mut subscriber = topic.subscribe()?;
    let mut commands = Commands::new()?;
    let mut out = child::stdout_file()?;
    use std::io::Write;
    writeln!(out, "subscribed")?;
    let mut buf = Vec::new();
    let mut expected = 0;
    while let Some(n) = commands.next_count()? {
        for _ in 0..n {
            if in_place {
                // SAFETY: every process on the bench's topic is a shmio
                // Topic (Block: nothing overwrites the slot while it is read).
                unsafe { subscriber.recv_with(|message| check_message(message, size, expected))? }?;
            } else {
                subscriber.recv_into(&mut buf)?;
                let seq = seq_of(&buf)?;
                if seq != expected {
                    return Err(format!("message {seq} where {expected} was due").into());
                }
            }
            expected += 1;
        }
        // Each batch numbers its messages from 0 again.
        expected = 0;
        writeln!(out, "done")?;
        watchdog::progress();
    }
    Ok(())
}
