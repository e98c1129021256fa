//! What the lab measures: the sides `shmio bench` ships (re-exported
//! here: channel, copy, spin, futex, stream, socket) and the research
//! sides, each a [`Side`](crate::harness::Side), and the child roles that
//! serve the lab's cross-process ones ([`Role`]; a lab binary's child
//! plays any [`AnyRole`]).
//!
//! | module | shmio | peers |
//! |---|---|---|
//! | [`awaiting`] | `Channel` round trips, both sides awaiting (tokio, current thread), in steady traffic and after quiet | tokio's `UnixStream` (Unix), the same |
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
//! | [`topic`] | `Topic` round trips (the 1→1 hand-over) and fan-out to `k` subscriber processes | |
//! | `dbus` (Linux, feature `dbus`) | | a method call with a reply (`Echo`, a [`CALL_SIZE`]-byte `ay`) through a private `dbus-daemon` the bench starts, over zbus |
//!
//! Round trips are of an 8-byte sequence number, which the parent checks
//! on its way back; throughput messages carry a sequence number and a last
//! byte every consumer checks ([`stamp`], [`check_message`]). A call (a
//! bus's request with a reply) carries [`call_argument`], which must come
//! back the same.

pub mod awaiting;
pub mod bus;
#[cfg(all(target_os = "linux", feature = "dbus"))]
pub mod dbus;
pub mod event;
#[cfg(all(target_os = "linux", feature = "iceoryx2"))]
pub mod iceoryx2;
pub mod ladder;
pub mod scaling;
pub mod topic;
#[cfg(windows)]
pub mod win_event;

#[cfg(target_os = "linux")]
pub use shmio_cli::bench::sides::futex;
#[cfg(unix)]
pub use shmio_cli::bench::sides::socket;
pub use shmio_cli::bench::sides::{
    channel, check_message, copy, message, spin, stamp, stream, warmed_up, Words, STOP, WAKE_GAP,
    WARMUP,
};

use shmio_cli::bench::child::RoleSet;

use crate::Result;

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

shmio_cli::bench_roles! {
    /// Echoes a round trip of one step of the ladder.
    LadderEcho = "rt-ladder" => ladder::echo_child(),
    /// Sends 64-byte messages through one step of the ladder's ring.
    LadderProducer = "tp-ladder" => ladder::producer_child(),
    /// Echoes a raw Windows event round trip.
    #[cfg(windows)]
    EventPairEcho = "rt-win-event" => win_event::echo_child(),
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
    /// Answers every set of one event by setting the other.
    EventEcho = "rt-shmio-event" => event::echo_child(),
    /// Publishes iceoryx2 samples.
    #[cfg(all(target_os = "linux", feature = "iceoryx2"))]
    Iceoryx2Producer = "tp-iceoryx2" => iceoryx2::producer_child(),
    /// Echoes an iceoryx2 round trip of `size`-byte slices.
    #[cfg(all(target_os = "linux", feature = "iceoryx2"))]
    Iceoryx2SizedEcho = "rt-iceoryx2-sized" => iceoryx2::sized_round_trip_child(),
    /// Receives every sample of an iceoryx2 fan-out, in place.
    #[cfg(all(target_os = "linux", feature = "iceoryx2"))]
    Iceoryx2FanOutSubscriber = "fan-iceoryx2" => iceoryx2::fan_out_subscriber_child(),
    /// One producer of the scaling group: sends its share on the shared channel.
    ScalingProducer = "scale-producer" => scaling::producer_child(),
    /// One consumer of the scaling group: receives until a stop message.
    ScalingConsumer = "scale-consumer" => scaling::consumer_child(),
    /// Echoes a topic round trip (the 1→1 hand-over), busy-polling.
    TopicEcho = "rt-topic" => topic::echo_child(),
    /// One subscriber of a topic fan-out.
    TopicSubscriber = "fan-topic" => topic::subscriber_child(),
    /// Echoes a channel round trip, awaiting (tokio, current thread).
    AsyncChannelEcho = "rt-async-channel" => awaiting::channel_echo_child(),
    /// Echoes a round trip over tokio's `UnixStream`.
    #[cfg(unix)]
    AsyncStreamEcho = "rt-async-stream" => awaiting::stream_echo_child(),
}

/// A role a child of a lab binary can play: one of the shipped sides'
/// (`shmio bench`'s, which the lab's tables measure too) or one of the
/// lab's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnyRole {
    /// A shipped side's role.
    Shipped(shmio_cli::bench::sides::Role),
    /// One of the lab's roles.
    Lab(Role),
}

impl RoleSet for AnyRole {
    fn name(self) -> &'static str {
        match self {
            AnyRole::Shipped(role) => role.name(),
            AnyRole::Lab(role) => role.name(),
        }
    }

    fn parse(name: &str) -> Result<AnyRole> {
        shmio_cli::bench::sides::Role::parse(name)
            .map(AnyRole::Shipped)
            .or_else(|_| Role::parse(name).map(AnyRole::Lab))
    }

    fn serve(self) -> Result<()> {
        match self {
            AnyRole::Shipped(role) => role.serve(),
            AnyRole::Lab(role) => role.serve(),
        }
    }
}

/// If this process is a child of a lab run, serves its role and returns
/// the exit code to exit with (see [`shmio_cli::bench::child::serve`]).
pub fn serve_child() -> Option<i32> {
    shmio_cli::bench::child::serve::<AnyRole>()
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
