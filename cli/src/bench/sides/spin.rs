//! The round-trip limit: both sides busy-poll a word in shared memory, and
//! a round trip moves one cache line there and back, nothing else.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{warmed_up, Role, Words, STOP};
use crate::bench::child::{self, Commands, Kid};
use crate::bench::harness::Side;
use crate::bench::{watchdog, Result};

/// Raw spin ping-pong: both sides busy-poll a word in a shared mapping.
pub struct SpinRoundTrip {
    words: Words,
    kid: Kid,
    seq: u64,
}

impl SpinRoundTrip {
    /// Creates the words under `name` and starts the echo child.
    pub fn start(name: &str) -> Result<SpinRoundTrip> {
        let words = Words::create(name)?;
        let kid = child::spawn_commanded(Role::SpinEcho, &[(child::NAME, name.to_owned())])?;
        Ok(SpinRoundTrip { words, kid, seq: 0 })
    }
}

fn round_trip(ping: &AtomicU64, pong: &AtomicU64, seq: u64) {
    ping.store(seq, Ordering::Release);
    while pong.load(Ordering::Acquire) != seq {
        spin_loop();
    }
}

impl Side for SpinRoundTrip {
    fn batch(&mut self, n: u64) -> Result<f64> {
        self.kid.command("go")?;
        let (ping, pong) = (
            self.words.u64_at(Words::PING),
            self.words.u64_at(Words::PONG),
        );
        let seq = &mut self.seq;
        let ns = warmed_up(n, None, || {
            *seq += 1;
            round_trip(ping, pong, *seq);
            Ok(())
        })?;
        round_trip(ping, pong, STOP);
        Ok(ns)
    }

    fn keepalive(&mut self) -> Result<()> {
        self.kid.alive()
    }
}

/// The spin echo child: on each `go`, echoes until [`STOP`].
pub fn echo_child() -> Result<()> {
    let words = Words::open(&child::var(child::NAME)?)?;
    let (ping, pong) = (words.u64_at(Words::PING), words.u64_at(Words::PONG));
    let mut commands = Commands::new()?;
    crate::process::try_ready()?;
    let mut last = ping.load(Ordering::Acquire);
    while commands.next_command()?.is_some() {
        loop {
            let value = loop {
                let value = ping.load(Ordering::Acquire);
                if value != last {
                    break value;
                }
                spin_loop();
            };
            last = value;
            pong.store(value, Ordering::Release);
            watchdog::progress();
            if value == STOP {
                break;
            }
        }
    }
    Ok(())
}
