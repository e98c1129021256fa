//! A Unix socket pair (Unix): blocking reads and writes, one system call
//! each way per message, as for the pipe in [`stream`](super::stream).

use std::io::{ErrorKind, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::time::Instant;

use super::stream::{echo, echo_round_trip};
use super::{check_message, stamp, warmed_up, Role};
use crate::bench::child::{self, Kid};
use crate::bench::harness::Side;
use crate::bench::{watchdog, Result};
use crate::process::{Input, Output};

/// One end of a `UnixStream::pair()`; the other is the child's stdin.
fn socket_child(role: Role, env: &[(&str, String)]) -> Result<(UnixStream, Kid)> {
    let (ours, theirs) = UnixStream::pair()?;
    let kid = child::spawn(
        role,
        env,
        Input::Stdio(Stdio::from(OwnedFd::from(theirs))),
        Output::Null,
    )?;
    Ok((ours, kid))
}

/// This child's end of the socket pair.
fn child_socket() -> Result<UnixStream> {
    Ok(UnixStream::from(OwnedFd::from(child::stdin_file()?)))
}

/// Round trips over a Unix socket pair.
pub struct SocketRoundTrip {
    socket: UnixStream,
    _kid: Kid,
    seq: u64,
}

impl SocketRoundTrip {
    /// Starts the child that echoes on its end of a new socket pair.
    pub fn start() -> Result<SocketRoundTrip> {
        let (socket, kid) = socket_child(Role::SocketEcho, &[])?;
        Ok(SocketRoundTrip {
            socket,
            _kid: kid,
            seq: 0,
        })
    }
}

impl Side for SocketRoundTrip {
    fn batch(&mut self, n: u64) -> Result<f64> {
        let (socket, seq) = (&self.socket, &mut self.seq);
        warmed_up(n, None, || {
            *seq += 1;
            echo_round_trip(socket, socket, *seq)
        })
    }

    fn keepalive(&mut self) -> Result<()> {
        self.seq += 1;
        echo_round_trip(&self.socket, &self.socket, self.seq)
    }
}

impl Drop for SocketRoundTrip {
    fn drop(&mut self) {
        // EOF for the child.
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }
}

/// The socket echo child.
pub fn echo_child() -> Result<()> {
    let socket = child_socket()?;
    echo(&socket, &socket)
}

/// Throughput over a Unix socket pair: the parent asks for `n` messages
/// (8 bytes, `n`, on the same socket) and reads them, `size` bytes each.
pub struct SocketThroughput {
    socket: UnixStream,
    _kid: Kid,
    buf: Vec<u8>,
    expected: u64,
}

impl SocketThroughput {
    /// Starts the child that writes `size`-byte messages to its end of a
    /// new socket pair.
    pub fn start(size: usize) -> Result<SocketThroughput> {
        let (socket, kid) = socket_child(Role::SocketProducer, &[(child::SIZE, size.to_string())])?;
        Ok(SocketThroughput {
            socket,
            _kid: kid,
            buf: vec![0; size],
            expected: 0,
        })
    }
}

impl Side for SocketThroughput {
    fn batch(&mut self, n: u64) -> Result<f64> {
        let start = Instant::now();
        (&self.socket).write_all(&n.to_le_bytes())?;
        for _ in 0..n {
            (&self.socket).read_exact(&mut self.buf)?;
            check_message(&self.buf, self.buf.len(), self.expected)?;
            self.expected += 1;
        }
        Ok(start.elapsed().as_secs_f64() * 1e9 / n as f64)
    }

    fn keepalive(&mut self) -> Result<()> {
        // A request for no messages.
        (&self.socket).write_all(&0u64.to_le_bytes())?;
        Ok(())
    }
}

impl Drop for SocketThroughput {
    fn drop(&mut self) {
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }
}

/// The socket producer child: on each request, writes that many messages.
pub fn producer_child() -> Result<()> {
    let size = child::number(child::SIZE)?;
    let mut socket = child_socket()?;
    let mut message = super::message(size);
    let mut seq = 0u64;
    let mut request = [0u8; 8];
    loop {
        match socket.read_exact(&mut request) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        for _ in 0..u64::from_le_bytes(request) {
            stamp(&mut message, seq);
            socket.write_all(&message)?;
            seq += 1;
            watchdog::progress();
        }
    }
}

/// Round trips of `size`-byte messages over a Unix socket pair: the
/// parent writes the message, the child reads all of it and writes it
/// back, the parent reads it and checks it (length, sequence, last byte).
pub struct SizedSocketRoundTrip {
    socket: UnixStream,
    _kid: Kid,
    message: Vec<u8>,
    buf: Vec<u8>,
    seq: u64,
}

impl SizedSocketRoundTrip {
    /// The echo child, for messages of `size` bytes (at least 8).
    pub fn start(size: usize) -> Result<SizedSocketRoundTrip> {
        let size = size.max(8);
        let (socket, kid) =
            socket_child(Role::SocketSizedEcho, &[(child::SIZE, size.to_string())])?;
        Ok(SizedSocketRoundTrip {
            socket,
            _kid: kid,
            message: super::message(size),
            buf: vec![0; size],
            seq: 0,
        })
    }

    fn round_trip(&mut self) -> Result<()> {
        self.seq += 1;
        stamp(&mut self.message, self.seq);
        (&self.socket).write_all(&self.message)?;
        (&self.socket).read_exact(&mut self.buf)?;
        check_message(&self.buf, self.message.len(), self.seq)
    }
}

impl Side for SizedSocketRoundTrip {
    fn batch(&mut self, n: u64) -> Result<f64> {
        warmed_up(n, None, || self.round_trip())
    }

    fn keepalive(&mut self) -> Result<()> {
        self.round_trip()
    }
}

impl Drop for SizedSocketRoundTrip {
    fn drop(&mut self) {
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }
}

/// The sized socket echo child: reads `SIZE` bytes, writes them back, until EOF.
pub fn sized_echo_child() -> Result<()> {
    let size = child::number(child::SIZE)?;
    let mut socket = child_socket()?;
    let mut message = vec![0u8; size];
    loop {
        match socket.read_exact(&mut message) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        socket.write_all(&message)?;
        watchdog::progress();
    }
}
