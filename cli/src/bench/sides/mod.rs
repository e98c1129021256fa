//! What `shmio bench` and `shmio demo` measure: shmio's channel and
//! `write_at`, and the peers that need no extra crate, each a
//! [`Side`](crate::bench::harness::Side); the child roles that serve the
//! cross-process ones ([`Role`]); and what every side shares (the spin's
//! words, message stamps, the warm-up). The bench lab (`bench/`,
//! `shmio-bench`) adds the research sides on top of these.
//!
//! | module | shmio | peers |
//! |---|---|---|
//! | [`channel`] | `Channel` round trips (busy-poll, blocking), throughput (copying, in place) | |
//! | [`copy`] | `write_at` into a mapping | `memcpy` into the same mapping (the bandwidth limit) |
//! | [`spin`] | | two words in shared memory, both sides busy-polling (the round-trip limit) |
//! | `futex` (Linux) | | two futex words, wait and wake |
//! | [`stream`] | | a pipe pair |
//! | `socket` (Unix) | | a Unix socket pair |
//!
//! Round trips are of an 8-byte sequence number, which the parent checks
//! on its way back; throughput messages carry a sequence number and a last
//! byte every consumer checks ([`stamp`], [`check_message`]).

pub mod channel;
pub mod copy;
#[cfg(target_os = "linux")]
pub mod futex;
#[cfg(unix)]
pub mod socket;
pub mod spin;
pub mod stream;

use shmio::Mapping;

use crate::bench::watchdog::OnStall;
use crate::bench::Result;

/// The message that ends a busy-poll echo batch.
pub const STOP: u64 = u64::MAX;
/// Untimed round trips at the start of every batch.
pub const WARMUP: u64 = 64;

/// A batch: `op` [`WARMUP`] times untimed, then `n` times timed, each
/// after `gap` of quiet if there is one ([`harness::gapped`]); the time
/// per `op`.
///
/// [`harness::gapped`]: crate::bench::harness::gapped
pub fn warmed_up(
    n: u64,
    gap: Option<std::time::Duration>,
    mut op: impl FnMut() -> Result<()>,
) -> Result<f64> {
    for _ in 0..WARMUP {
        op()?;
    }
    crate::bench::harness::gapped(n, gap, op)
}
/// The quiet before each round trip that must wake a sleeping child (see
/// [`harness::gapped`](crate::bench::harness::gapped)): well past the channel's
/// spinning (a few tens of microseconds) before it sleeps.
pub const WAKE_GAP: std::time::Duration = std::time::Duration::from_micros(500);

/// Writes `seq` into a message's first 8 bytes.
pub fn stamp(message: &mut [u8], seq: u64) {
    message[..8].copy_from_slice(&seq.to_le_bytes());
}

/// A throughput message of `size` bytes: [`stamp`]ed, and ending in 0xA5.
pub fn message(size: usize) -> Vec<u8> {
    vec![0xA5; size]
}

/// Checks a message: its size, its sequence number, its last byte (past
/// the sequence number: messages of more than 8 bytes).
pub fn check_message(message: &[u8], size: usize, expected: u64) -> Result<()> {
    let seq = message
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    // An 8-byte message is all sequence number: no last byte of its own.
    let last_ok = size <= 8 || message.last() == Some(&0xA5);
    if message.len() != size || seq != Some(expected) || !last_ok {
        return Err(format!(
            "message {expected}: got {} bytes, sequence {seq:?}, last byte {:?}",
            message.len(),
            message.last()
        )
        .into());
    }
    Ok(())
}

/// Declares a binary's bench child roles once: an enum `Role`, its names
/// (what [`ROLE`] carries) and what each child runs, as a
/// [`RoleSet`]. The CLI's roles are declared with it here; the bench lab
/// declares its own with it.
///
/// [`ROLE`]: crate::bench::child::ROLE
/// [`RoleSet`]: crate::bench::child::RoleSet
#[macro_export]
macro_rules! bench_roles {
    ($($(#[doc = $doc:expr])* $(#[cfg($cfg:meta)])? $variant:ident = $name:literal => $serve:expr,)*) => {
        /// Every role a child of this binary's bench can play.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Role {
            $($(#[doc = $doc])* $(#[cfg($cfg)])? $variant,)*
        }

        impl $crate::bench::child::RoleSet for Role {
            fn name(self) -> &'static str {
                match self {
                    $($(#[cfg($cfg)])? Role::$variant => $name,)*
                }
            }

            fn parse(name: &str) -> $crate::bench::Result<Role> {
                $($(#[cfg($cfg)])? if name == $name {
                    return Ok(Role::$variant);
                })*
                Err(format!("unknown role {name:?}").into())
            }

            fn serve(self) -> $crate::bench::Result<()> {
                match self {
                    $($(#[cfg($cfg)])? Role::$variant => $serve,)*
                }
            }
        }
    };
}

crate::bench_roles! {
    /// Echoes a spin round trip.
    SpinEcho = "rt-spin" => spin::echo_child(),
    /// Echoes a futex round trip.
    #[cfg(target_os = "linux")]
    FutexEcho = "rt-futex" => futex::echo_child(),
    /// Echoes 8-byte messages from stdin to stdout.
    PipeEcho = "rt-pipe" => stream::pipe_child(),
    /// Echoes 8-byte messages on the socket that is its stdin.
    #[cfg(unix)]
    SocketEcho = "rt-socket" => socket::echo_child(),
    /// Echoes a channel round trip, busy-polling.
    ChannelBusyEcho = "rt-shmio-busy" => channel::busy_child(),
    /// Echoes a channel round trip in place (`try_recv_with`, `send_with`), busy-polling.
    ChannelInPlaceEcho = "rt-shmio-in-place" => channel::in_place_child(),
    /// Echoes a channel round trip, in blocking receives.
    ChannelBlockingEcho = "rt-shmio-block" => channel::blocking_child(),
    /// Writes messages to the socket that is its stdin.
    #[cfg(unix)]
    SocketProducer = "tp-socket" => socket::producer_child(),
    /// Sends on a channel, copying.
    ChannelProducer = "tp-shmio-copy" => channel::producer_child(false),
    /// Sends on a channel, in place.
    ChannelInPlaceProducer = "tp-shmio-in-place" => channel::producer_child(true),
    /// Echoes `size`-byte messages on the socket that is its stdin.
    #[cfg(unix)]
    SocketSizedEcho = "rt-socket-sized" => socket::sized_echo_child(),
}

/// A small named mapping (8 KiB) that the parent and one child share, for
/// the raw peers: the spin's and the futex's two words, 128 bytes apart
/// (separate cache lines, and not a pair the adjacent-line prefetcher
/// fetches together), the parent's ([`PING`](Words::PING)) and the
/// child's ([`PONG`](Words::PONG)); the ladder's two rings. shmio only
/// provides the memory: the peers that use it touch it with plain atomics.
pub struct Words {
    map: Mapping,
    _stall: Option<OnStall>,
}

impl Words {
    /// The parent's word.
    pub const PING: u64 = 0;
    /// The child's word.
    pub const PONG: u64 = 128;
    const LEN: u64 = 8192;

    /// Creates the words under `name` (the name goes with its last holder).
    pub fn create(name: &str) -> Result<Words> {
        Words::create_len(name, Words::LEN)
    }

    /// Creates `len` bytes of words under `name` (at least the usual 8 KiB).
    pub fn create_len(name: &str, len: u64) -> Result<Words> {
        let stall = OnStall::shmio_name(name);
        Ok(Words {
            map: Mapping::create(name, len.max(Words::LEN))?,
            _stall: Some(stall),
        })
    }

    /// Opens the words the parent created.
    pub fn open(name: &str) -> Result<Words> {
        Ok(Words {
            map: Mapping::open(name)?,
            _stall: None,
        })
    }

    /// The 64-bit word at `offset`.
    pub fn u64_at(&self, offset: u64) -> &std::sync::atomic::AtomicU64 {
        self.map
            .atomic_u64(offset)
            .expect("an aligned word in bounds")
    }

    /// The 32-bit word at `offset`.
    pub fn u32_at(&self, offset: u64) -> &std::sync::atomic::AtomicU32 {
        self.map
            .atomic_u32(offset)
            .expect("an aligned word in bounds")
    }
}
