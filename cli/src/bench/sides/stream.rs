//! Kernel byte streams: a pipe pair here, a Unix socket pair in
//! [`socket`](super::socket). Blocking reads and writes, one system call
//! each way per message (8-byte round trips; fixed-size messages for
//! throughput, so no framing is needed).

use std::io::{ErrorKind, Read, Write};

use super::{warmed_up, Role};
use crate::bench::child::{self, Kid};
use crate::bench::harness::Side;
use crate::bench::{watchdog, Result};
use crate::process::{Input, Output};

/// Sends `seq` and checks that it comes back.
pub(super) fn echo_round_trip(mut to: impl Write, mut from: impl Read, seq: u64) -> Result<()> {
    to.write_all(&seq.to_le_bytes())?;
    let mut answer = [0u8; 8];
    from.read_exact(&mut answer)?;
    if u64::from_le_bytes(answer) != seq {
        return Err(format!("echo {} for {seq}", u64::from_le_bytes(answer)).into());
    }
    Ok(())
}

/// Echoes 8-byte messages from `from` to `to` until EOF.
pub(super) fn echo(mut from: impl Read, mut to: impl Write) -> Result<()> {
    let mut message = [0u8; 8];
    loop {
        match from.read_exact(&mut message) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        to.write_all(&message)?;
        watchdog::progress();
    }
}

/// Round trips over two pipes: the child's stdin and stdout.
pub struct PipeRoundTrip {
    kid: Kid,
    seq: u64,
}

impl PipeRoundTrip {
    /// Starts the echo child, its stdin and stdout piped.
    pub fn start() -> Result<PipeRoundTrip> {
        let kid = child::spawn(Role::PipeEcho, &[], Input::Pipe, Output::Pipe)?;
        Ok(PipeRoundTrip { kid, seq: 0 })
    }
}

impl Side for PipeRoundTrip {
    fn batch(&mut self, n: u64) -> Result<f64> {
        let to = self.kid.stdin.as_mut().ok_or("no pipe")?;
        let from = self.kid.stdout.as_mut().ok_or("no pipe")?;
        let seq = &mut self.seq;
        warmed_up(n, None, || {
            *seq += 1;
            echo_round_trip(&mut *to, &mut *from, *seq)
        })
    }

    fn keepalive(&mut self) -> Result<()> {
        self.seq += 1;
        let to = self.kid.stdin.as_mut().ok_or("no pipe")?;
        let from = self.kid.stdout.as_mut().ok_or("no pipe")?;
        echo_round_trip(to, from, self.seq)
    }
}

/// The pipe echo child.
pub fn pipe_child() -> Result<()> {
    echo(child::stdin_file()?, child::stdout_file()?)
}
