//! shmio's `NamedEvent`: the cross-process wake-up round trip. The parent
//! sets `ping` and waits on `pong`; the child waits on `ping` and sets
//! `pong`. Both events reset automatically, and both sides sleep in
//! `wait`: the peer is the raw futex ping-pong (`futex`, Linux).

use std::sync::atomic::Ordering;

use shmio::{EventMode, NamedEvent};

use super::{warmed_up, Role, Words};
use crate::child::{self, Kid};
use crate::harness::Side;
use crate::{watchdog, Result};
use shmio_cli::process::{Input, Output};

/// Round trips of two auto-reset events between this process and a child.
pub struct EventRoundTrip {
    ping: NamedEvent,
    pong: NamedEvent,
    /// The stop flag (its `PING` word), which the child looks at after each wake-up.
    control: Words,
    _kid: Kid,
}

fn events(base: &str) -> Result<(NamedEvent, NamedEvent)> {
    Ok((
        NamedEvent::create_or_open(&format!("{base}-ping"), EventMode::AutoReset)?,
        NamedEvent::create_or_open(&format!("{base}-pong"), EventMode::AutoReset)?,
    ))
}

impl EventRoundTrip {
    /// Creates the events and the stop flag under `base` and starts the echo child.
    pub fn start(base: &str) -> Result<EventRoundTrip> {
        let control = Words::create(&format!("{base}-control"))?;
        let (ping, pong) = events(base)?;
        let kid = child::spawn(
            Role::EventEcho,
            &[(child::NAME, base.to_owned())],
            Input::Null,
            Output::Null,
        )?;
        Ok(EventRoundTrip {
            ping,
            pong,
            control,
            _kid: kid,
        })
    }

    fn round_trip(&self) -> Result<()> {
        self.ping.set()?;
        self.pong.wait()?;
        Ok(())
    }
}

impl Side for EventRoundTrip {
    fn batch(&mut self, n: u64) -> Result<f64> {
        warmed_up(n, None, || self.round_trip())
    }

    fn keepalive(&mut self) -> Result<()> {
        self.round_trip()
    }
}

impl Drop for EventRoundTrip {
    fn drop(&mut self) {
        self.control.u32_at(Words::PING).store(1, Ordering::SeqCst);
        let _ = self.ping.set();
    }
}

/// The echo child: answers every `ping` with a `pong` until told to stop.
pub fn echo_child() -> Result<()> {
    let base = child::var(child::NAME)?;
    let control = Words::open(&format!("{base}-control"))?;
    let stop = control.u32_at(Words::PING);
    let (ping, pong) = events(&base)?;
    loop {
        ping.wait()?;
        if stop.load(Ordering::SeqCst) == 1 {
            return Ok(());
        }
        pong.set()?;
        watchdog::progress();
    }
}
