//! What the harness measures: shmio's operations and their peers, each a
//! [`Side`](crate::harness::Side), and the child roles that serve the
//! cross-process ones.
//!
//! | module | shmio | peers |
//! |---|---|---|
//! | [`bus`] | `Bus` call round trips, broadcasts, post throughput | the same bytes through raw `Channel` messages (the floor), and with the bus's encoding on both sides |
//! | [`channel`] | `Channel` round trips (busy-poll, blocking), throughput (copying, in place) | |
//! | [`event`] | `NamedEvent` wake-up round trips | |
//! | [`copy`] | `write_at` into a mapping | `memcpy` into the same mapping (the bandwidth limit) |
//! | [`spin`] | | two words in shared memory, both sides busy-polling (the round-trip limit) |
//! | [`ladder`] | | the channel's ring protocol rebuilt on raw memory step by step, from the spin up (where a round trip's time goes) |
//! | `futex` (Linux) | | two futex words, wait and wake |
//! | `win_event` (Windows) | | two named auto-reset events, `SetEvent` and `WaitForSingleObject` |
//! | [`stream`] | | a pipe pair |
//! | `socket` (Unix) | | a Unix socket pair |
//! | `iceoryx2` (Linux, feature `iceoryx2`) | | publish-subscribe round trips and throughput |
//! | `dbus` (Linux, feature `dbus`) | | a method call with a reply (`Echo`, a [`CALL_SIZE`]-byte `ay`) through a private `dbus-daemon` the bench starts, over zbus |
//!
//! Round trips are of an 8-byte sequence number, which the parent checks
//! on its way back; throughput messages carry a sequence number and a last
//! byte every consumer checks ([`stamp`], [`check_message`]). A call (a
//! bus's request with a reply) carries [`call_argument`], which must come
//! back the same.

pub mod bus;
pub mod channel;
pub mod copy;
#[cfg(all(target_os = "linux", feature = "dbus"))]
pub mod dbus;
pub mod event;
#[cfg(target_os = "linux")]
pub mod futex;
#[cfg(all(target_os = "linux", feature = "iceoryx2"))]
pub mod iceoryx2;
pub mod ladder;
pub mod scaling;
#[cfg(unix)]
pub mod socket;
pub mod spin;
pub mod stream;
#[cfg(windows)]
pub mod win_event;

use shmio::Mapping;

use crate::watchdog::OnStall;
use crate::Result;

/// The message that ends a busy-poll echo batch.
pub const STOP: u64 = u64::MAX;
/// Untimed round trips at the start of every batch.
pub const WARMUP: u64 = 64;

/// A batch: `op` [`WARMUP`] times untimed, then `n` times timed, each
/// after `gap` of quiet if there is one ([`harness::gapped`]); the time
/// per `op`.
///
/// [`harness::gapped`]: crate::harness::gapped
pub fn warmed_up(
    n: u64,
    gap: Option<std::time::Duration>,
    mut op: impl FnMut() -> Result<()>,
) -> Result<f64> {
    for _ in 0..WARMUP {
        op()?;
    }
    crate::harness::gapped(n, gap, op)
}
/// The quiet before each round trip that must wake a sleeping child (see
/// [`harness::gapped`](crate::harness::gapped)): well past the channel's
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

/// The size of a call's argument (and of its reply), the small payload of
/// a bus call: the call's sequence number in 16 hex digits.
pub const CALL_SIZE: usize = 16;

/// The argument of call `seq`; the reply must be the same bytes. Every
/// side that measures a call (D-Bus's and shmio's bus) sends this, so that
/// they carry the same bytes: ASCII, so that it is D-Bus's `ay` and a JSON
/// string for shmio's bus (whose arguments are serde values).
///
/// Made without allocating: it is made inside the timed call, and the
/// floor it is measured against makes nothing.
pub fn call_argument(seq: u64) -> [u8; CALL_SIZE] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut argument = [0; CALL_SIZE];
    for (at, digit) in argument.iter_mut().enumerate() {
        let shift = 4 * (CALL_SIZE - 1 - at);
        *digit = DIGITS[(seq >> shift) as usize & 0xf];
    }
    argument
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

/// Declares the child roles once: the enum, their names (what [`ROLE`]
/// carries) and what each child runs.
///
/// [`ROLE`]: crate::child::ROLE
macro_rules! roles {
    ($($(#[doc = $doc:expr])* $(#[cfg($cfg:meta)])? $variant:ident = $name:literal => $serve:expr,)*) => {
        /// Every role a child of the harness can play.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Role {
            $($(#[doc = $doc])* $(#[cfg($cfg)])? $variant,)*
        }

        impl Role {
            /// The role's name, as [`crate::child::ROLE`] carries it.
            pub fn name(self) -> &'static str {
                match self {
                    $($(#[cfg($cfg)])? Role::$variant => $name,)*
                }
            }

            /// The role called `name`.
            pub fn parse(name: &str) -> Result<Role> {
                $($(#[cfg($cfg)])? if name == $name {
                    return Ok(Role::$variant);
                })*
                Err(format!("unknown role {name:?}").into())
            }

            /// Runs the role's side of the work, until the parent is done.
            pub fn serve(self) -> Result<()> {
                match self {
                    $($(#[cfg($cfg)])? Role::$variant => $serve,)*
                }
            }
        }
    };
}

roles! {
    /// Echoes a spin round trip.
    SpinEcho = "rt-spin" => spin::echo_child(),
    /// Echoes a round trip of one step of the ladder.
    LadderEcho = "rt-ladder" => ladder::echo_child(),
    /// Sends 64-byte messages through one step of the ladder's ring.
    LadderProducer = "tp-ladder" => ladder::producer_child(),
    /// Echoes a raw Windows event round trip.
    #[cfg(windows)]
    EventPairEcho = "rt-win-event" => win_event::echo_child(),
    /// Echoes a futex round trip.
    #[cfg(target_os = "linux")]
    FutexEcho = "rt-futex" => futex::echo_child(),
    /// Echoes 8-byte messages from stdin to stdout.
    PipeEcho = "rt-pipe" => stream::pipe_child(),
    /// Echoes 8-byte messages on the socket that is its stdin.
    #[cfg(unix)]
    SocketEcho = "rt-socket" => socket::echo_child(),
    /// Echoes an iceoryx2 round trip.
    #[cfg(all(target_os = "linux", feature = "iceoryx2"))]
    Iceoryx2Echo = "rt-iceoryx2" => iceoryx2::round_trip_child(),
    /// A bus listener: `echo`, `sink` (posts) and `count`.
    BusListener = "bus-listener" => bus::listener_child(),
    /// Echoes a bus-encoded request's argument as a bus-encoded reply, on raw channels.
    CodecEcho = "rt-bus-codec" => bus::codec_echo_child(),
    /// Serves the D-Bus method `Echo` on the parent's private bus.
    #[cfg(all(target_os = "linux", feature = "dbus"))]
    DbusEcho = "rt-dbus" => dbus::echo_child(),
    /// Echoes a channel round trip, busy-polling.
    ChannelBusyEcho = "rt-shmio-busy" => channel::busy_child(),
    /// Echoes a channel round trip in place (`try_recv_with`, `send_with`), busy-polling.
    ChannelInPlaceEcho = "rt-shmio-in-place" => channel::in_place_child(),
    /// Echoes a channel round trip, in blocking receives.
    ChannelBlockingEcho = "rt-shmio-block" => channel::blocking_child(),
    /// Answers every set of one event by setting the other.
    EventEcho = "rt-shmio-event" => event::echo_child(),
    /// Writes messages to the socket that is its stdin.
    #[cfg(unix)]
    SocketProducer = "tp-socket" => socket::producer_child(),
    /// Publishes iceoryx2 samples.
    #[cfg(all(target_os = "linux", feature = "iceoryx2"))]
    Iceoryx2Producer = "tp-iceoryx2" => iceoryx2::producer_child(),
    /// Sends on a channel, copying.
    ChannelProducer = "tp-shmio-copy" => channel::producer_child(false),
    /// Sends on a channel, in place.
    ChannelInPlaceProducer = "tp-shmio-in-place" => channel::producer_child(true),
    /// Echoes `size`-byte messages on the socket that is its stdin.
    #[cfg(unix)]
    SocketSizedEcho = "rt-socket-sized" => socket::sized_echo_child(),
    /// Echoes an iceoryx2 round trip of `size`-byte slices.
    #[cfg(all(target_os = "linux", feature = "iceoryx2"))]
    Iceoryx2SizedEcho = "rt-iceoryx2-sized" => iceoryx2::sized_round_trip_child(),
    /// One producer of the scaling group: sends its share on the shared channel.
    ScalingProducer = "scale-producer" => scaling::producer_child(),
    /// One consumer of the scaling group: receives until a stop message.
    ScalingConsumer = "scale-consumer" => scaling::consumer_child(),
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

#[cfg(test)]
mod tests {
    use super::call_argument;

    #[test]
    fn a_call_argument_is_its_sequence_number_in_16_hex_digits() {
        for seq in [0, 1, 0x1234_abcd, u64::MAX] {
            assert_eq!(call_argument(seq), *format!("{seq:016x}").as_bytes());
        }
    }
}
