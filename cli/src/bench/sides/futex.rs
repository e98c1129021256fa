//! The raw futex ping-pong (Linux): each side stores its word,
//! `FUTEX_WAKE`s it, and `FUTEX_WAIT`s on the other's until it changes. No
//! spinning at all: the limit for a round trip that sleeps.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rustix::thread::futex;

use super::{warmed_up, Role, Words};
use crate::bench::child::{self, Kid};
use crate::bench::harness::Side;
use crate::bench::{watchdog, Result};
use crate::process::{Input, Output};

/// What ends a futex echo child.
const STOP32: u32 = u32::MAX;

/// Raw futex ping-pong between this process and an echo child.
pub struct FutexRoundTrip {
    words: Words,
    _kid: Kid,
    seq: u32,
    /// Quiet before each timed round trip, if any (see [`harness::gapped`]).
    gap: Option<Duration>,
}

impl FutexRoundTrip {
    /// Creates the words under `name` and starts the echo child.
    pub fn start(name: &str) -> Result<FutexRoundTrip> {
        let words = Words::create(name)?;
        let kid = child::spawn(
            Role::FutexEcho,
            &[(child::NAME, name.to_owned())],
            Input::Null,
            Output::Null,
        )?;
        Ok(FutexRoundTrip {
            words,
            _kid: kid,
            seq: 0,
            gap: None,
        })
    }

    /// The same, each round trip after `gap` of quiet (as
    /// [`BlockingRoundTrip::waking`](super::channel::BlockingRoundTrip::waking)).
    pub fn waking(name: &str, gap: Duration) -> Result<FutexRoundTrip> {
        let mut side = FutexRoundTrip::start(name)?;
        side.gap = Some(gap);
        Ok(side)
    }

    fn words(&self) -> (&AtomicU32, &AtomicU32) {
        (
            self.words.u32_at(Words::PING),
            self.words.u32_at(Words::PONG),
        )
    }

    fn next(seq: &mut u32) -> u32 {
        *seq = seq.wrapping_add(1);
        if *seq == 0 || *seq == STOP32 {
            *seq = 1;
        }
        *seq
    }
}

/// Sleeps while `word` is `value`. No timeout: arming a timer for every
/// wait costs the baseline a microsecond on a VM (a timer is a VM exit),
/// and the watchdog (and, in a child, the parent-death signal) bounds the
/// whole anyway.
fn wait(word: &AtomicU32, value: u32) {
    // EAGAIN (the word changed) and EINTR mean: look again.
    let _ = futex::wait(word, futex::Flags::empty(), value, None);
}

fn round_trip(ping: &AtomicU32, pong: &AtomicU32, seq: u32) -> Result<()> {
    ping.store(seq, Ordering::Release);
    futex::wake(ping, futex::Flags::empty(), 1)?;
    loop {
        let value = pong.load(Ordering::Acquire);
        if value == seq {
            return Ok(());
        }
        wait(pong, value);
    }
}

impl Side for FutexRoundTrip {
    fn batch(&mut self, n: u64) -> Result<f64> {
        let (ping, pong) = (
            self.words.u32_at(Words::PING),
            self.words.u32_at(Words::PONG),
        );
        let seq = &mut self.seq;
        warmed_up(n, self.gap, || round_trip(ping, pong, Self::next(seq)))
    }

    fn keepalive(&mut self) -> Result<()> {
        let seq = Self::next(&mut self.seq);
        let (ping, pong) = self.words();
        round_trip(ping, pong, seq)
    }
}

impl Drop for FutexRoundTrip {
    fn drop(&mut self) {
        let ping = self.words.u32_at(Words::PING);
        ping.store(STOP32, Ordering::Release);
        let _ = futex::wake(ping, futex::Flags::empty(), 1);
    }
}

/// The futex echo child: echoes every new value until `STOP32`.
pub fn echo_child() -> Result<()> {
    let words = Words::open(&child::var(child::NAME)?)?;
    let (ping, pong) = (words.u32_at(Words::PING), words.u32_at(Words::PONG));
    let mut last = 0;
    loop {
        let value = ping.load(Ordering::Acquire);
        if value == last {
            wait(ping, value);
            continue;
        }
        last = value;
        pong.store(value, Ordering::Release);
        futex::wake(pong, futex::Flags::empty(), 1)?;
        watchdog::progress();
        if value == STOP32 {
            return Ok(());
        }
    }
}
