//! shmio's channel: round trips (busy-poll with `try_recv_into`, and
//! blocking with `recv_into`) and throughput (copying with
//! `send`/`recv_into`, in place with `send_with`/`recv_with`).

use std::hint::spin_loop;
use std::time::{Duration, Instant};

use shmio::{Channel, ChannelGeometry, Error};

use super::{check_message, stamp, warmed_up, Role, STOP};
use crate::bench::child::{self, Commands, Kid};
use crate::bench::harness::Side;
use crate::bench::watchdog::{self, OnStall};
use crate::bench::Result;
use crate::process::{Input, Output};

/// The round-trip channels: 8-byte messages, a few slots.
const ROUND_TRIP: ChannelGeometry = ChannelGeometry {
    capacity: 16,
    max_message_size: 8,
};

/// The sequence number in a round-trip message's first 8 bytes.
pub fn seq_of(message: &[u8]) -> Result<u64> {
    let first = message.get(..8).ok_or("a message shorter than 8 bytes")?;
    Ok(u64::from_le_bytes(first.try_into().expect("8 bytes")))
}

/// Receives from `channel` by polling `try_recv_into` until a message comes.
fn busy_recv(channel: &Channel, buf: &mut Vec<u8>) -> Result<()> {
    loop {
        match channel.try_recv_into(buf) {
            Ok(()) => return Ok(()),
            Err(Error::Empty) => spin_loop(),
            Err(e) => return Err(e.into()),
        }
    }
}

/// A ping channel (parent to child) and a pong channel (child to parent),
/// for messages of `size` bytes.
pub fn pair(name: &str, size: usize) -> Result<(Channel, Channel, [OnStall; 2])> {
    pair_of(name, size, ROUND_TRIP.capacity)
}

/// [`pair`], of `capacity` slots each.
fn pair_of(name: &str, size: usize, capacity: u32) -> Result<(Channel, Channel, [OnStall; 2])> {
    let (ping, pong) = (format!("{name}-ping"), format!("{name}-pong"));
    let guards = [OnStall::shmio_name(&ping), OnStall::shmio_name(&pong)];
    let geometry = ChannelGeometry {
        capacity,
        max_message_size: u32::try_from(size).map_err(|_| "a message too large")?,
    };
    Ok((
        Channel::create_or_open(&ping, geometry)?,
        Channel::create_or_open(&pong, geometry)?,
        guards,
    ))
}

/// The child's side of [`pair`].
pub fn open_pair(name: &str) -> Result<(Channel, Channel)> {
    Ok((
        Channel::open(&format!("{name}-ping"))?,
        Channel::open(&format!("{name}-pong"))?,
    ))
}

/// Round trips through two channels, both sides busy-polling.
pub struct BusyRoundTrip {
    ping: Channel,
    pong: Channel,
    _guards: [OnStall; 2],
    kid: Kid,
    buf: Vec<u8>,
    seq: u64,
}

impl BusyRoundTrip {
    /// Creates the ping and pong channels under `name` and starts the
    /// child that echoes on them, busy-polling.
    pub fn start(name: &str) -> Result<BusyRoundTrip> {
        let (ping, pong, guards) = pair(name, 8)?;
        let kid = child::spawn_commanded(Role::ChannelBusyEcho, &[(child::NAME, name.to_owned())])?;
        Ok(BusyRoundTrip {
            ping,
            pong,
            _guards: guards,
            kid,
            buf: Vec::with_capacity(8),
            seq: 0,
        })
    }

    fn round_trip(&mut self, seq: u64) -> Result<()> {
        self.ping.send(&seq.to_le_bytes())?;
        loop {
            busy_recv(&self.pong, &mut self.buf)?;
            if seq_of(&self.buf)? == seq {
                return Ok(());
            }
        }
    }
}

impl Side for BusyRoundTrip {
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

/// The busy-poll echo child: on each `go`, echoes until [`STOP`].
pub fn busy_child() -> Result<()> {
    let (ping, pong) = open_pair(&child::var(child::NAME)?)?;
    let mut commands = Commands::new()?;
    crate::process::try_ready()?;
    let mut buf = Vec::with_capacity(8);
    while commands.next_command()?.is_some() {
        loop {
            busy_recv(&ping, &mut buf)?;
            pong.send(&buf)?;
            watchdog::progress();
            if seq_of(&buf)? == STOP {
                break;
            }
        }
    }
    Ok(())
}

/// Round trips through two channels, both sides in blocking `recv_into`
/// (shmio spins briefly, then sleeps on the channel's doorbell).
pub struct BlockingRoundTrip {
    ping: Channel,
    pong: Channel,
    _guards: [OnStall; 2],
    _kid: Kid,
    buf: Vec<u8>,
    /// The message: the sequence number, then padding to its size.
    message: Vec<u8>,
    seq: u64,
    /// Quiet before each timed round trip, if any (see [`harness::gapped`]).
    gap: Option<Duration>,
}

impl BlockingRoundTrip {
    /// Round trips of 8-byte messages.
    pub fn start(name: &str) -> Result<BlockingRoundTrip> {
        BlockingRoundTrip::sized(name, 8)
    }

    /// Round trips of 8-byte messages, each after `gap` of quiet: long
    /// enough for the child to stop spinning and sleep, so that every
    /// message wakes it.
    pub fn waking(name: &str, gap: Duration) -> Result<BlockingRoundTrip> {
        let mut side = BlockingRoundTrip::sized(name, 8)?;
        side.gap = Some(gap);
        Ok(side)
    }

    /// Round trips of `size`-byte messages (at least 8): the floor of a
    /// bus call carrying as many bytes each way.
    pub fn sized(name: &str, size: usize) -> Result<BlockingRoundTrip> {
        let size = size.max(8);
        let (ping, pong, guards) = pair(name, size)?;
        let kid = child::spawn(
            Role::ChannelBlockingEcho,
            &[(child::NAME, name.to_owned())],
            Input::Null,
            Output::Null,
        )?;
        Ok(BlockingRoundTrip {
            ping,
            pong,
            _guards: guards,
            _kid: kid,
            buf: Vec::with_capacity(size),
            message: vec![0xA5; size],
            seq: 0,
            gap: None,
        })
    }

    fn round_trip(&mut self, seq: u64) -> Result<()> {
        stamp(&mut self.message, seq);
        self.ping.send(&self.message)?;
        loop {
            self.pong.recv_into(&mut self.buf)?;
            if seq_of(&self.buf)? == seq {
                return Ok(());
            }
        }
    }
}

impl Side for BlockingRoundTrip {
    fn batch(&mut self, n: u64) -> Result<f64> {
        let gap = self.gap;
        warmed_up(n, gap, || {
            self.seq += 1;
            self.round_trip(self.seq)
        })
    }

    fn keepalive(&mut self) -> Result<()> {
        self.seq += 1;
        self.round_trip(self.seq)
    }
}

impl Drop for BlockingRoundTrip {
    fn drop(&mut self) {
        let _ = self.ping.send(&STOP.to_le_bytes());
    }
}

/// The blocking echo child: echoes until [`STOP`].
pub fn blocking_child() -> Result<()> {
    let (ping, pong) = open_pair(&child::var(child::NAME)?)?;
    let mut buf = Vec::with_capacity(8);
    loop {
        ping.recv_into(&mut buf)?;
        pong.send(&buf)?;
        watchdog::progress();
        if seq_of(&buf)? == STOP {
            return Ok(());
        }
    }
}

/// Throughput: the child sends, the parent receives; copying or in place.
pub struct Throughput {
    channel: Channel,
    _guard: OnStall,
    kid: Kid,
    in_place: bool,
    size: usize,
    buf: Vec<u8>,
    expected: u64,
}

impl Throughput {
    /// Creates the channel under `name` (`capacity` messages of `size`
    /// bytes) and starts the child that fills it, in place or copying.
    pub fn start(name: &str, size: usize, capacity: u32, in_place: bool) -> Result<Throughput> {
        let options = ChannelGeometry {
            capacity,
            max_message_size: u32::try_from(size)?,
        };
        let guard = OnStall::shmio_name(name);
        let channel = Channel::create_or_open(name, options)?;
        let role = if in_place {
            Role::ChannelInPlaceProducer
        } else {
            Role::ChannelProducer
        };
        let kid = child::spawn_commanded(
            role,
            &[
                (child::NAME, name.to_owned()),
                (child::SIZE, size.to_string()),
            ],
        )?;
        Ok(Throughput {
            channel,
            _guard: guard,
            kid,
            in_place,
            size,
            buf: Vec::with_capacity(size),
            expected: 0,
        })
    }
}

impl Side for Throughput {
    fn batch(&mut self, n: u64) -> Result<f64> {
        let start = Instant::now();
        self.kid.command(&format!("go {n}"))?;
        for _ in 0..n {
            if self.in_place {
                let (size, expected) = (self.size, self.expected);
                // SAFETY: only this program's processes use the channel, all
                // through shmio's `Channel`.
                unsafe {
                    self.channel
                        .recv_with(|message| check_message(message, size, expected))?
                }?;
            } else {
                self.channel.recv_into(&mut self.buf)?;
                check_message(&self.buf, self.size, self.expected)?;
            }
            self.expected += 1;
        }
        Ok(start.elapsed().as_secs_f64() * 1e9 / n as f64)
    }

    fn keepalive(&mut self) -> Result<()> {
        self.kid.alive()
    }
}

/// The producer child: on each `go N`, sends N messages.
pub fn producer_child(in_place: bool) -> Result<()> {
    let channel = Channel::open(&child::var(child::NAME)?)?;
    let size = child::number(child::SIZE)?;
    let mut commands = Commands::new()?;
    crate::process::try_ready()?;
    let mut message = super::message(size);
    let mut seq = 0u64;
    while let Some(n) = commands.next_count()? {
        for _ in 0..n {
            if in_place {
                // SAFETY: only this program's processes use the channel, all
                // through shmio's `Channel`.
                unsafe {
                    channel.send_with(size, |slot| {
                        slot.copy_from_slice(&message);
                        stamp(slot, seq);
                    })?
                };
            } else {
                stamp(&mut message, seq);
                channel.send(&message)?;
            }
            seq += 1;
            watchdog::progress();
        }
    }
    Ok(())
}

/// The slots of a sized round trip's channels: one message is in flight.
pub const SIZED_ROUND_TRIP_SLOTS: u32 = 2;

/// Round trips of `size`-byte messages through two channels, both sides
/// busy-polling: copying (`send`, `try_recv_into`) or in place
/// (`send_with`, `try_recv_with`; the echo child copies the message from
/// its slot in one ring straight into a slot of the other). The parent
/// checks each message that comes back (length, sequence, last byte).
pub struct SizedRoundTrip {
    ping: Channel,
    pong: Channel,
    _guards: [OnStall; 2],
    kid: Kid,
    in_place: bool,
    size: usize,
    buf: Vec<u8>,
    message: Vec<u8>,
    seq: u64,
}

impl SizedRoundTrip {
    /// Two channels of a few `size`-byte slots (`size` at least 8), and the echo child.
    pub fn start(name: &str, size: usize, in_place: bool) -> Result<SizedRoundTrip> {
        let size = size.max(8);
        let (ping, pong, guards) = pair_of(name, size, SIZED_ROUND_TRIP_SLOTS)?;
        let role = if in_place {
            Role::ChannelInPlaceEcho
        } else {
            Role::ChannelBusyEcho
        };
        let kid = child::spawn_commanded(role, &[(child::NAME, name.to_owned())])?;
        Ok(SizedRoundTrip {
            ping,
            pong,
            _guards: guards,
            kid,
            in_place,
            size,
            buf: Vec::with_capacity(size),
            message: super::message(size),
            seq: 0,
        })
    }

    fn round_trip(&mut self, seq: u64) -> Result<()> {
        let size = self.size;
        if self.in_place {
            let message = &self.message;
            // SAFETY: only this program's processes use the channels, all
            // through shmio's `Channel`.
            unsafe {
                self.ping.send_with(size, |slot| {
                    slot.copy_from_slice(message);
                    stamp(slot, seq);
                })?
            };
            loop {
                // SAFETY: as above.
                match unsafe {
                    self.pong
                        .try_recv_with(|message| check_message(message, size, seq))
                } {
                    Ok(checked) => return checked,
                    Err(Error::Empty) => spin_loop(),
                    Err(e) => return Err(e.into()),
                }
            }
        } else {
            stamp(&mut self.message, seq);
            self.ping.send(&self.message)?;
            busy_recv(&self.pong, &mut self.buf)?;
            check_message(&self.buf, size, seq)
        }
    }
}

impl Side for SizedRoundTrip {
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

/// The in-place busy-poll echo child: on each `go`, echoes until
/// [`STOP`], each message copied from its slot in the ping ring into a
/// slot of the pong ring.
pub fn in_place_child() -> Result<()> {
    let (ping, pong) = open_pair(&child::var(child::NAME)?)?;
    let mut commands = Commands::new()?;
    crate::process::try_ready()?;
    while commands.next_command()?.is_some() {
        loop {
            // SAFETY: only this program's processes use the channels, all
            // through shmio's `Channel`.
            let echoed = unsafe {
                ping.try_recv_with(|message| -> Result<u64> {
                    pong.send_with(message.len(), |slot| slot.copy_from_slice(message))?;
                    seq_of(message)
                })
            };
            match echoed {
                Ok(seq) => {
                    watchdog::progress();
                    if seq? == STOP {
                        break;
                    }
                }
                Err(Error::Empty) => spin_loop(),
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}
