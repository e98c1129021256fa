//! Awaited round trips: both sides await, each on a tokio current-thread
//! runtime in its own process. shmio's channel futures (`send_async`,
//! `recv_into_async`) against the peer a user of async would otherwise
//! write between two processes: tokio's `UnixStream` (Unix), 8 bytes each
//! way. Each in steady traffic, or each round trip after a quiet gap
//! long enough for the child to fall asleep (the wake-up).

use std::future::Future;
use std::time::{Duration, Instant};

use shmio::Channel;
use tokio::runtime::Runtime;

use super::channel::{open_pair, pair, seq_of};
use super::{Role, STOP, WARMUP};
use crate::child::{self, Kid};
use crate::harness::{Side, GAPPED_MAX};
use crate::watchdog::{self, OnStall};
use crate::Result;
use shmio_cli::process::{Input, Output};

/// A current-thread runtime, as each side runs.
fn runtime() -> Result<Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?)
}

/// The parent's end of an awaited round trip.
pub trait Echo {
    /// Sends `seq` and awaits its echo.
    fn round_trip(&mut self, seq: u64) -> impl Future<Output = Result<()>>;

    /// Tells the child to stop (the side is dropped).
    fn stop(&mut self, runtime: &Runtime);
}

/// Round trips through the parent's `ends` and a child that echoes,
/// both awaiting.
pub struct RoundTrip<E: Echo> {
    ends: E,
    runtime: Runtime,
    _kid: Kid,
    _guards: Vec<OnStall>,
    seq: u64,
    /// Quiet before each timed round trip, if any.
    gap: Option<Duration>,
}

/// Round trips through two channels.
pub type ChannelRoundTrip = RoundTrip<ChannelEnds>;

impl<E: Echo> Side for RoundTrip<E> {
    /// A batch inside one `block_on`, as a program that awaits runs
    /// (entering the runtime for every round trip would time tokio's entry
    /// instead): [`WARMUP`] untimed round trips, then `n` timed, each after
    /// the gap if there is one (at most [`GAPPED_MAX`] then; this side
    /// spins through the gap, so that only the child falls asleep), as
    /// `harness::gapped` times a blocking side. Stops early past [`CAP`].
    fn batch(&mut self, n: u64) -> Result<f64> {
        let (ends, seq, gap) = (&mut self.ends, &mut self.seq, self.gap);
        self.runtime.block_on(async {
            for _ in 0..WARMUP {
                *seq += 1;
                ends.round_trip(*seq).await?;
            }
            let n = match gap {
                Some(_) => n.clamp(1, GAPPED_MAX),
                None => n.max(1),
            };
            let (mut busy, mut done) = (Duration::ZERO, 0);
            let began = Instant::now();
            while done < n && began.elapsed() < CAP {
                if let Some(gap) = gap {
                    let quiet = Instant::now();
                    while quiet.elapsed() < gap {
                        std::hint::spin_loop();
                    }
                }
                let start = Instant::now();
                *seq += 1;
                ends.round_trip(*seq).await?;
                busy += start.elapsed();
                done += 1;
            }
            Ok(busy.as_secs_f64() * 1e9 / done as f64)
        })
    }

    fn keepalive(&mut self) -> Result<()> {
        self.seq += 1;
        let (ends, seq) = (&mut self.ends, self.seq);
        self.runtime.block_on(ends.round_trip(seq))
    }
}

impl<E: Echo> Drop for RoundTrip<E> {
    fn drop(&mut self) {
        self.ends.stop(&self.runtime);
    }
}

/// The longest a batch runs.
const CAP: Duration = Duration::from_secs(1);

/// The parent's channels, and where it receives.
pub struct ChannelEnds {
    ping: Channel,
    pong: Channel,
    buf: Vec<u8>,
}

impl Echo for ChannelEnds {
    async fn round_trip(&mut self, seq: u64) -> Result<()> {
        self.ping.send_async(&seq.to_le_bytes()).await?;
        loop {
            self.pong.recv_into_async(&mut self.buf).await?;
            if seq_of(&self.buf)? == seq {
                return Ok(());
            }
        }
    }

    fn stop(&mut self, _runtime: &Runtime) {
        let _ = self.ping.send(&STOP.to_le_bytes());
    }
}

impl ChannelRoundTrip {
    /// Creates the ping and pong channels under `name` and starts the
    /// child that echoes on them, awaiting; each round trip after `gap` of
    /// quiet, if given.
    pub fn start(name: &str, gap: Option<Duration>) -> Result<ChannelRoundTrip> {
        let (ping, pong, guards) = pair(name, 8)?;
        let kid = child::spawn(
            Role::AsyncChannelEcho,
            &[(child::NAME, name.to_owned())],
            Input::Null,
            Output::Null,
        )?;
        Ok(RoundTrip {
            ends: ChannelEnds {
                ping,
                pong,
                buf: Vec::with_capacity(8),
            },
            runtime: runtime()?,
            _kid: kid,
            _guards: guards.into(),
            seq: 0,
            gap,
        })
    }
}

/// The awaiting echo child: echoes until [`STOP`].
pub fn channel_echo_child() -> Result<()> {
    let (ping, pong) = open_pair(&child::var(child::NAME)?)?;
    runtime()?.block_on(async {
        let mut buf = Vec::with_capacity(8);
        loop {
            ping.recv_into_async(&mut buf).await?;
            pong.send_async(&buf).await?;
            watchdog::progress();
            if seq_of(&buf)? == STOP {
                return Ok(());
            }
        }
    })
}

#[cfg(unix)]
pub use stream::{stream_echo_child, StreamEnds, StreamRoundTrip};

#[cfg(unix)]
mod stream {
    use std::os::fd::OwnedFd;
    use std::process::Stdio;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixStream;
    use tokio::runtime::Runtime;

    use super::{runtime, Echo, Role, RoundTrip, STOP};
    use crate::child;
    use crate::sides::stamp;
    use crate::{watchdog, Result};
    use shmio_cli::process::{Input, Output};

    /// Round trips over a Unix socket pair, both sides awaiting tokio's
    /// `UnixStream` (the child's end is its stdin).
    pub type StreamRoundTrip = RoundTrip<StreamEnds>;

    /// The parent's end of the socket pair, and its message.
    pub struct StreamEnds {
        stream: UnixStream,
        message: [u8; 8],
    }

    impl Echo for StreamEnds {
        async fn round_trip(&mut self, seq: u64) -> Result<()> {
            stamp(&mut self.message, seq);
            self.stream.write_all(&self.message).await?;
            let mut back = [0u8; 8];
            self.stream.read_exact(&mut back).await?;
            if back != self.message {
                return Err("a reply of another round trip".into());
            }
            Ok(())
        }

        fn stop(&mut self, runtime: &Runtime) {
            let _ = runtime.block_on(self.stream.write_all(&STOP.to_le_bytes()));
        }
    }

    impl StreamRoundTrip {
        /// Starts the child that echoes on its end of a new socket pair;
        /// each round trip after `gap` of quiet, if given.
        pub fn start(gap: Option<Duration>) -> Result<StreamRoundTrip> {
            let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
            let kid = child::spawn(
                Role::AsyncStreamEcho,
                &[],
                Input::Stdio(Stdio::from(OwnedFd::from(theirs))),
                Output::Null,
            )?;
            ours.set_nonblocking(true)?;
            let runtime = runtime()?;
            let stream = runtime.block_on(async { UnixStream::from_std(ours) })?;
            Ok(RoundTrip {
                ends: StreamEnds {
                    stream,
                    message: [0; 8],
                },
                runtime,
                _kid: kid,
                _guards: Vec::new(),
                seq: 0,
                gap,
            })
        }
    }

    /// The awaiting stream echo child: echoes 8-byte messages on its
    /// stdin's socket until [`STOP`] or the end.
    pub fn stream_echo_child() -> Result<()> {
        let socket = std::os::unix::net::UnixStream::from(OwnedFd::from(child::stdin_file()?));
        socket.set_nonblocking(true)?;
        runtime()?.block_on(async {
            let mut stream = UnixStream::from_std(socket)?;
            let mut message = [0u8; 8];
            loop {
                if stream.read_exact(&mut message).await.is_err() {
                    return Ok(());
                }
                if u64::from_le_bytes(message) == STOP {
                    return Ok(());
                }
                stream.write_all(&message).await?;
                watchdog::progress();
            }
        })
    }
}
