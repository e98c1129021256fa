//! shmio's bus: a `call` round trip (one caller, one listener process,
//! [`call_argument`]'s bytes out and back), a `broadcast` to several
//! listener processes, and `post` throughput; and the floors a call is
//! measured against: the same bytes through two raw channel messages, and
//! the same with the bus's encoding done on both sides ([`CodecFloor`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmio::{Bus, Channel, Error};
use shmio_cli::process::{Input, Output};

use super::{call_argument, channel, warmed_up, Role, STOP, WARMUP};
use crate::child::{self, Kid};
use crate::harness::{timed, Side};
use crate::watchdog::{self, OnStall};
use crate::Result;

/// The longest any one call or broadcast may take before the run fails.
const WITHIN: Duration = Duration::from_secs(10);

/// The bus's message header: the bytes before a request's command or a
/// reply's JSON.
const HEADER: usize = 32;

/// The bytes of a bus request carrying [`call_argument`] to `echo`: what
/// the floor's raw channel messages carry, so that both move as much.
pub fn request_len() -> usize {
    let json = serde_json::to_vec(text(&call_argument(0))).expect("a string encodes");
    // The bus's message header, the command, the arguments.
    HEADER + "echo".len() + json.len()
}

/// The call argument as the string it is (hex digits).
fn text(argument: &[u8]) -> &str {
    std::str::from_utf8(argument).expect("call arguments are ASCII")
}

/// A listener process: joins the group NAME, listens to `echo` (its
/// argument back), `sink` (counts a post, no reply) and `count` (the posts
/// counted so far), says it is ready, and serves until its stdin ends.
pub fn listener_child() -> Result<()> {
    let bus = Bus::join(&child::var(child::NAME)?)?;
    let sunk = Arc::new(AtomicU64::new(0));
    let _echo = bus.listen("echo", |argument: String| {
        watchdog::progress();
        Ok::<_, String>(Some(argument))
    })?;
    let counter = Arc::clone(&sunk);
    let _sink = bus.listen("sink", move |_: String| {
        counter.fetch_add(1, Ordering::Relaxed);
        Ok::<Option<()>, String>(None)
    })?;
    let _count = bus.listen("count", move |_: ()| {
        watchdog::progress();
        Ok::<_, String>(Some(sunk.load(Ordering::Relaxed)))
    })?;
    shmio_cli::process::try_ready()?;
    std::io::copy(&mut child::stdin_file()?, &mut std::io::sink())?;
    Ok(())
}

/// Listener processes of the group `group`, ready once each listens.
fn listeners(group: &str, count: usize) -> Result<Vec<Kid>> {
    (0..count)
        .map(|_| child::spawn_commanded(Role::BusListener, &[(child::NAME, group.to_owned())]))
        .collect()
}

/// `call("echo", call_argument(seq))` round trips to one listener process.
pub struct CallRoundTrip {
    bus: Bus,
    _kids: Vec<Kid>,
    seq: u64,
}

impl CallRoundTrip {
    /// Joins a new group `group` and starts its listener.
    pub fn start(group: &str) -> Result<CallRoundTrip> {
        let bus = Bus::join(group)?;
        let kids = listeners(group, 1)?;
        Ok(CallRoundTrip {
            bus,
            _kids: kids,
            seq: 0,
        })
    }
}

impl Calls for CallRoundTrip {
    fn call(&mut self) -> Result<()> {
        self.seq += 1;
        let argument = call_argument(self.seq);
        let argument = text(&argument);
        let reply: Option<String> = self.bus.call("echo", argument, WITHIN)?;
        if reply.as_deref() != Some(argument) {
            return Err(format!("call {}: {reply:?} came back", self.seq).into());
        }
        Ok(())
    }
}

/// A side that times one call after another: the bus's, or a floor's.
trait Calls {
    /// One call, its reply checked.
    fn call(&mut self) -> Result<()>;
}

/// Each [`Calls`] is a [`Side`] that times one call after another.
macro_rules! calls_are_sides {
    ($($side:ty),*) => {$(
        impl Side for $side {
            fn batch(&mut self, n: u64) -> Result<f64> {
                warmed_up(n, None, || self.call())
            }

            fn keepalive(&mut self) -> Result<()> {
                self.call()
            }
        }
    )*};
}

calls_are_sides!(CallRoundTrip, CodecFloor);

/// `broadcast("echo", ..)` to every listener of a group of `listeners`
/// processes, or (`one_by_one`) `call_pid` to each in turn: what the
/// broadcast saves.
pub struct Broadcast {
    bus: Bus,
    pids: Vec<u32>,
    one_by_one: bool,
    _kids: Vec<Kid>,
    seq: u64,
}

impl Broadcast {
    /// Joins a new group `group` and starts its `listeners` processes.
    pub fn start(group: &str, listeners: usize, one_by_one: bool) -> Result<Broadcast> {
        let bus = Bus::join(group)?;
        let kids = self::listeners(group, listeners)?;
        let pids = bus.listeners("echo")?.iter().map(|l| l.pid).collect();
        Ok(Broadcast {
            bus,
            pids,
            one_by_one,
            _kids: kids,
            seq: 0,
        })
    }

    fn round(&mut self) -> Result<()> {
        self.seq += 1;
        let argument = call_argument(self.seq);
        let argument = text(&argument);
        if self.one_by_one {
            for &pid in &self.pids {
                let reply: Option<String> = self.bus.call_pid(pid, "echo", argument, WITHIN)?;
                if reply.as_deref() != Some(argument) {
                    return Err(format!("call {} to {pid}: {reply:?}", self.seq).into());
                }
            }
            return Ok(());
        }
        let replies = self.bus.broadcast::<_, String>("echo", argument, WITHIN)?;
        let good = replies
            .replies()
            .filter(|(_, reply)| *reply == argument)
            .count();
        if good != self.pids.len() {
            return Err(format!(
                "broadcast {}: {good} of {} replies came back right: {:?}",
                self.seq,
                self.pids.len(),
                replies.answers
            )
            .into());
        }
        Ok(())
    }
}

impl Side for Broadcast {
    fn batch(&mut self, n: u64) -> Result<f64> {
        for _ in 0..WARMUP / 8 {
            self.round()?;
        }
        timed(n, || self.round())
    }

    fn keepalive(&mut self) -> Result<()> {
        self.round()
    }
}

/// `post("sink", ..)` to one listener process, as fast as its inbox
/// takes them: a batch posts `n`, then asks the listener (`count`) until
/// it has run them all.
pub struct PostThroughput {
    bus: Bus,
    _kids: Vec<Kid>,
    posted: u64,
}

impl PostThroughput {
    /// Joins a new group `group` and starts its listener.
    pub fn start(group: &str) -> Result<PostThroughput> {
        let bus = Bus::options().inbox_capacity(1024).join(group)?;
        let kids = listeners(group, 1)?;
        Ok(PostThroughput {
            bus,
            _kids: kids,
            posted: 0,
        })
    }

    fn post(&mut self) -> Result<()> {
        let argument = call_argument(self.posted);
        loop {
            match self.bus.post("sink", text(&argument)) {
                Ok(1) => break,
                Ok(reached) => return Err(format!("a post reached {reached} listeners").into()),
                // The inbox is full: let the listener, maybe on this CPU, run.
                Err(Error::PostIncomplete { .. }) => std::thread::yield_now(),
                Err(error) => return Err(error.into()),
            }
        }
        self.posted += 1;
        Ok(())
    }

    /// Waits until the listener has run every post so far.
    fn drain(&mut self) -> Result<()> {
        let deadline = Instant::now() + WITHIN;
        loop {
            let counted: Option<u64> = self.bus.call("count", &(), WITHIN)?;
            if counted == Some(self.posted) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(
                    format!("the listener ran {counted:?} of {} posts", self.posted).into(),
                );
            }
        }
    }
}

impl Side for PostThroughput {
    fn batch(&mut self, n: u64) -> Result<f64> {
        let start = Instant::now();
        for _ in 0..n {
            self.post()?;
        }
        self.drain()?;
        Ok(start.elapsed().as_secs_f64() * 1e9 / n.max(1) as f64)
    }

    fn keepalive(&mut self) -> Result<()> {
        self.drain()
    }
}

/// The floor with the bus's encoding: two raw channel messages, as in the
/// plain floor, but each built and read the way a bus call's are, with
/// none of the bus's routing (registry, inboxes, request ids, locks). The
/// parent writes a request (header, `echo`, the argument as JSON) into a
/// new buffer; the child decodes the argument into a `String` and writes
/// it back as JSON after a header, in a new buffer; the parent decodes the
/// reply into a `String` and checks it. A sequence number in the header's
/// first 8 bytes pairs each reply with its request.
pub struct CodecFloor {
    ping: Channel,
    pong: Channel,
    _guards: [OnStall; 2],
    _kid: Kid,
    buf: Vec<u8>,
    seq: u64,
}

impl CodecFloor {
    pub fn start(name: &str) -> Result<CodecFloor> {
        let (ping, pong, guards) = channel::pair(name, request_len())?;
        let kid = child::spawn(
            Role::CodecEcho,
            &[(child::NAME, name.to_owned())],
            Input::Null,
            Output::Null,
        )?;
        Ok(CodecFloor {
            ping,
            pong,
            _guards: guards,
            _kid: kid,
            buf: Vec::with_capacity(request_len()),
            seq: 0,
        })
    }
}

impl Calls for CodecFloor {
    fn call(&mut self) -> Result<()> {
        self.seq += 1;
        let argument = call_argument(self.seq);
        let argument = text(&argument);
        let mut request = Vec::with_capacity(request_len());
        request.extend_from_slice(&self.seq.to_le_bytes());
        request.resize(HEADER, 0);
        request.extend_from_slice(b"echo");
        serde_json::to_writer(&mut request, argument)?;
        self.ping.send(&request)?;
        loop {
            self.pong.recv_into(&mut self.buf)?;
            if channel::seq_of(&self.buf)? == self.seq {
                break;
            }
        }
        let reply: String = serde_json::from_slice(&self.buf[HEADER..])?;
        if reply != argument {
            return Err(format!("call {}: {reply:?} came back", self.seq).into());
        }
        Ok(())
    }
}

impl Drop for CodecFloor {
    fn drop(&mut self) {
        let mut stop = STOP.to_le_bytes().to_vec();
        stop.resize(HEADER, 0);
        let _ = self.ping.send(&stop);
    }
}

/// [`CodecFloor`]'s child: decodes each request's argument, and sends it
/// back as a reply, until [`STOP`].
pub fn codec_echo_child() -> Result<()> {
    let (ping, pong) = channel::open_pair(&child::var(child::NAME)?)?;
    let mut buf = Vec::with_capacity(request_len());
    loop {
        ping.recv_into(&mut buf)?;
        let seq = channel::seq_of(&buf)?;
        if seq == STOP {
            return Ok(());
        }
        let argument: String = serde_json::from_slice(&buf[HEADER + "echo".len()..])?;
        let mut reply = Vec::with_capacity(HEADER + argument.len() + 2);
        reply.extend_from_slice(&seq.to_le_bytes());
        reply.resize(HEADER, 0);
        serde_json::to_writer(&mut reply, &argument)?;
        pong.send(&reply)?;
        watchdog::progress();
    }
}
