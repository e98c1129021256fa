//! [`Channel`]: a bounded, multi-producer multi-consumer message queue
//! between processes, in a named mapping, that no crash can wedge.
//!
//! The queue is Vyukov's bounded MPMC queue with per-slot claims that name
//! the claiming participant, so a slot abandoned by a killed process is
//! found and repaired; the layout and the algorithm are documented in
//! `ring.rs`, and how a participant is known to be alive (a seat the OS
//! takes back when it dies, never a process id) in `src/participants.rs`.
//! Waiting spins briefly, then sleeps in the kernel on a doorbell: a word
//! in the mapping that the platform's [`sys::Waker`] sleeps on (a futex on
//! Linux, a named semaphore on Windows, `os_sync_wait_on_address` or a
//! short poll on macOS). A send or receive rings the other side's doorbell
//! only when someone sleeps there, so the fast path makes no system call.

pub(crate) mod ring;

use std::fmt;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::backoff::Backoff;
use crate::deadline;
use crate::error::{Error, Result};
use crate::kind::ObjectKind;
use crate::mapping::Window;
use crate::mapping::{Mapping, DEFAULT_MODE};
use crate::name::Name;
use crate::object::{self, Sharing};
use crate::owner::Trust;
use crate::participants::{self, Participant};
use crate::sys::{self, Disposition};
use crate::waiter::{self, Nap, Pause, Step, Turn};
use ring::{Blocked, Claim, Impossible, Ring, Side, TOMBSTONE};

/// How long a sender with a claimed slot tries to find a chunk of the
/// pool (one comes free at once but in scribbled memory).
const POOL_PATIENCE: Duration = Duration::from_secs(1);
/// Polls that must see the same claimed slot before a poller checks its claimer is alive.
const STUCK_POLLS: u32 = 1024;
/// The longest a sleeper sleeps before it looks for slots abandoned by dead processes.
const REPAIR_INTERVAL: Duration = Duration::from_millis(100);
/// How often a waiter asks whether any other participant is still there.
const PEER_INTERVAL: Duration = Duration::from_millis(100);

/// The geometry of a channel: how many messages it holds, how large each may be.
///
/// ```
/// use shmio::ChannelGeometry;
///
/// let geometry = ChannelGeometry { capacity: 64, max_message_size: 256 };
/// # let _ = geometry;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelGeometry {
    /// How many messages it holds before a send waits. Default 1024.
    pub capacity: u32,
    /// The largest message, in bytes. Default 4096.
    pub max_message_size: u32,
}

impl Default for ChannelGeometry {
    fn default() -> Self {
        ChannelGeometry {
            capacity: 1024,
            max_message_size: 4096,
        }
    }
}

/// Options for creating or opening a [`Channel`]: its geometry, who may use
/// a new one, and whose existing one may be opened.
///
/// ```
/// use shmio::Channel;
///
/// # let name = format!("shmio-doc-channel-opts-{}", std::process::id());
/// let channel = Channel::options()
///     .capacity(16)
///     .max_message_size(64)
///     .permissions(0o660)
///     .create_or_open(&name)?;
/// assert_eq!(channel.geometry().capacity, 16);
/// # Ok::<(), shmio::Error>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ChannelOptions {
    geometry: ChannelGeometry,
    permissions: u32,
    persistent: bool,
    tells_disconnection: bool,
    trust: Trust,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        ChannelOptions {
            geometry: ChannelGeometry::default(),
            permissions: DEFAULT_MODE,
            persistent: false,
            tells_disconnection: true,
            trust: Trust::OWN,
        }
    }
}

impl ChannelOptions {
    /// Options with every default: [`ChannelGeometry::default`], owner-only,
    /// only the caller's own channel opened.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the owners whose objects these options accept (for a layer
    /// above that was given its caller's trust).
    pub(crate) fn set_trust(&mut self, trust: Trust) -> &mut Self {
        self.trust = trust;
        self
    }

    /// How many messages a new channel holds before a send waits. Default 1024.
    pub fn capacity(&mut self, capacity: u32) -> &mut Self {
        self.geometry.capacity = capacity;
        self
    }

    /// The largest message of a new channel, in bytes. Default 4096.
    pub fn max_message_size(&mut self, max_message_size: u32) -> &mut Self {
        self.geometry.max_message_size = max_message_size;
        self
    }

    /// Both at once.
    pub fn geometry(&mut self, geometry: ChannelGeometry) -> &mut Self {
        self.geometry = geometry;
        self
    }

    /// Keep a new channel's name, and the messages in it, after its last
    /// handle closes, until [`Channel::remove`]: a sender may send and go
    /// before any receiver has opened it. POSIX only.
    pub fn persistent(&mut self, persistent: bool) -> &mut Self {
        self.persistent = persistent;
        self
    }

    /// Waits on the channel never end with [`Error::Disconnected`] (a bus
    /// member's inbox, which is often alone while it waits).
    pub(crate) fn never_disconnected(&mut self) -> &mut Self {
        self.tells_disconnection = false;
        self
    }

    crate::owner::sharing_options!("channel", permissions);

    crate::object::finish_options!(
        Channel,
        "channel",
        "A new one takes these options' geometry; an existing one keeps its own, and \
         `create_or_open` says [`Error::Mismatch`] if it differs."
    );

    /// Creates and/or opens the channel `name`, as `how` says.
    fn make(&self, name: &str, how: Disposition) -> Result<Channel> {
        let name = Name::new(name)?;
        let geometry = self.geometry;
        let size = check_geometry(geometry, name.as_str())?;
        let init = |window: &Window| {
            window.write_value(ring::CAPACITY, &geometry.capacity)?;
            window.write_value(ring::MAX_MESSAGE, &geometry.max_message_size)?;
            let chunks = ring::chunks_for(geometry.capacity, geometry.max_message_size);
            let stride = ring::slot_stride(geometry.max_message_size, chunks);
            window.write_value(ring::STRIDE, &(stride as u32))?;
            window.write_value(ring::CHUNKS, &chunks)?;
            // Slot i starts free for the sender of position i.
            for index in 0..u64::from(geometry.capacity) {
                let offset = ring::SLOTS + index * stride;
                window.write_value(offset, &(u64::from(ring::send_turn(index)) << 32))?;
            }
            Ok(())
        };
        let sharing = Sharing {
            permissions: self.permissions,
            trust: &self.trust,
            parent_only: true,
            persistent: self.persistent,
        };
        let (map, existed) = object::make(
            name.as_str(),
            how,
            size,
            &sharing,
            ObjectKind::Channel,
            &init,
        )
        .map_err(|error| error.of(ObjectKind::Channel, name.as_str()))?;
        let mut channel = Channel::from_map(map, name.as_str(), &self.trust)?;
        channel.tells_disconnection = self.tells_disconnection;
        if existed && how != Disposition::Open && channel.geometry != geometry {
            let shown = |g: ChannelGeometry| {
                format!(
                    "a channel of {} messages of up to {} bytes",
                    g.capacity, g.max_message_size
                )
                .into()
            };
            return Err(Error::Mismatch {
                name: name.as_str().to_owned(),
                asked: shown(geometry),
                found: shown(channel.geometry),
            });
        }
        Ok(channel)
    }
}

/// A message queue between processes, found by name.
///
/// Bounded, multi-producer and multi-consumer across processes and
/// threads: every message is delivered once, and the messages of one sender
/// arrive in the order sent. A process killed in the middle of a send or a
/// receive never makes a half-written message visible, never costs another
/// process its messages, and never wedges the channel: the one message it
/// was sending is dropped, and the one it was receiving is lost with it.
///
/// Who is dead is never decided by a process id: each open handle is a
/// participant holding a seat the OS takes back when its process dies, so
/// processes in different pid namespaces (containers sharing `/dev/shm`)
/// share a channel safely, and a reused pid fools no one. A channel has
/// room for 1,024 open handles at once ([`Error::TooManyParticipants`]);
/// threads may share one handle.
///
/// **After `fork()`** a handle stays its process's participant: a child
/// that inherited it cannot send or receive through it
/// ([`Error::Inherited`]: its seat is the parent's, shared through the
/// open file description) and opens the channel by name again instead.
/// Dropping the child's copy lets go of nothing: the parent's seat, its
/// claims and the name stay the parent's.
///
/// ```
/// use shmio::{Channel, ChannelGeometry};
///
/// # let name = format!("shmio-doc-channel-{}", std::process::id());
/// let geometry = ChannelGeometry { capacity: 16, max_message_size: 64 };
/// let sender = Channel::create_or_open(&name, geometry)?;
/// let receiver = Channel::open(&name)?; // e.g. in another process
/// sender.send(b"hello")?;
/// assert_eq!(receiver.recv()?, b"hello");
/// # Ok::<(), shmio::Error>(())
/// ```
pub struct Channel {
    ring: Ring,
    /// Keeps the ring's memory mapped.
    map: Mapping,
    name: String,
    geometry: ChannelGeometry,
    /// The OS name, which names the participants' seats.
    os_name: String,
    /// The owners trusted besides the caller (for the seats' owners, on Windows).
    trust: Trust,
    participant: Participant,
    recv_bell: Arc<sys::Waker>,
    send_bell: Arc<sys::Waker>,
    /// The last claimed state a poll was blocked by, and how many polls in a row saw it.
    stuck_state: AtomicU64,
    stuck_polls: AtomicU32,
    /// Whether a wait that can never end says so ([`Error::Disconnected`]).
    tells_disconnection: bool,
    /// Whether this handle has seen another participant alive, or a
    /// message, since it opened: only then is being alone a disconnection.
    peer_seen: AtomicBool,
    /// When the handle opened, and when (in ms after that) a wait last
    /// asked whether anyone else is there: at most every [`PEER_INTERVAL`].
    opened: Instant,
    peers_asked: AtomicU64,
}

impl Channel {
    /// Opens the channel called `name`, creating it with `geometry` if
    /// there is none. [`Error::Mismatch`] if it exists with another
    /// geometry. A new channel is usable by its owner only ([`DEFAULT_MODE`]);
    /// another user's existing one is [`Error::ForeignOwner`] (see
    /// [`Channel::options`]).
    pub fn create_or_open(name: &str, geometry: ChannelGeometry) -> Result<Channel> {
        Channel::options().geometry(geometry).create_or_open(name)
    }

    /// Opens an existing channel, whatever its geometry.
    pub fn open(name: &str) -> Result<Channel> {
        Channel::options().open(name)
    }

    /// A builder for every setting: geometry, permissions, trusted owners.
    pub fn options() -> ChannelOptions {
        ChannelOptions::new()
    }

    /// Removes the channel's name now, whoever else holds it (they keep
    /// the channel): a bus member's inbox as it leaves.
    pub(crate) fn remove_name(&self) {
        self.map.remove_name();
    }

    /// Reads and checks the geometry of a channel's mapping.
    pub(crate) fn from_map(map: Mapping, name: &str, trust: &Trust) -> Result<Channel> {
        let capacity: u32 = map.read_value_at(ring::CAPACITY)?;
        let max_message_size: u32 = map.read_value_at(ring::MAX_MESSAGE)?;
        let stride: u32 = map.read_value_at(ring::STRIDE)?;
        let chunks: u32 = map.read_value_at(ring::CHUNKS)?;
        if u64::from(stride) != ring::slot_stride(max_message_size, chunks) {
            return Err(Error::Corrupt {
                offset: ring::STRIDE,
                reason: format!("{name:?}: a slot stride of {stride} does not match messages of {max_message_size} bytes"),
            });
        }
        // SAFETY: the window is the whole live mapping, page-aligned and
        // writable, and `map` is kept in the Channel beside the ring.
        let ring = unsafe { Ring::new(map.base(), map.len(), capacity, max_message_size, chunks)? };
        let os_name = map.os_name().unwrap_or_default();
        let participant = Participant::join(ring.generations(), map.object(), &os_name, name)?;
        let peer_seen = participants::others_alive(
            participant.token(),
            ring.generations(),
            map.object(),
            &os_name,
            trust,
        );
        Ok(Channel {
            ring,
            map,
            name: name.to_owned(),
            geometry: ChannelGeometry {
                capacity,
                max_message_size,
            },
            os_name,
            trust: trust.clone(),
            participant,
            recv_bell: Arc::new(sys::Waker::open(name, "recv", trust)?),
            send_bell: Arc::new(sys::Waker::open(name, "send", trust)?),
            stuck_state: AtomicU64::new(0),
            stuck_polls: AtomicU32::new(0),
            tells_disconnection: true,
            peer_seen: AtomicBool::new(peer_seen),
            opened: Instant::now(),
            peers_asked: AtomicU64::new(0),
        })
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The geometry.
    pub fn geometry(&self) -> ChannelGeometry {
        self.geometry
    }

    /// How many messages the channel holds now (a snapshot: senders and
    /// receivers in other processes change it as it is read).
    pub fn len(&self) -> usize {
        self.ring.held() as usize
    }

    /// Whether the channel holds no message now (as [`len`](Self::len)).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes the name of a channel (one made
    /// [`persistent`](ChannelOptions::persistent), say) now: its holders
    /// keep it, new opens no longer find it. As [`Mapping::remove`].
    pub fn remove(name: &str) -> Result<()> {
        Mapping::remove(name)
    }

    /// True when an existing channel was opened rather than created.
    pub fn existed(&self) -> bool {
        self.map.existed()
    }

    /// Sends `message`, waiting while the channel is full.
    ///
    /// [`Error::Corrupt`] instead of waiting forever if the channel is in a
    /// state no process following shmio's protocol leaves it in (a peer
    /// scribbled over its positions or slots): checked only while waiting,
    /// before each sleep.
    pub fn send(&self, message: &[u8]) -> Result<()> {
        self.send_until(message, None)
    }

    /// Sends `message` if there is room: [`Error::Full`] if not.
    pub fn try_send(&self, message: &[u8]) -> Result<()> {
        let len = self.message_len(message.len())?;
        let claim = self
            .ring
            .claim_send(self.token()?)
            .map_err(|blocked| self.full(blocked))?;
        self.fill_and_publish(claim, len, |slot| slot.copy_from_slice(message))
    }

    /// Sends `message`, waiting at most `timeout` for room: [`Error::TimedOut`] if none came,
    /// [`Error::Corrupt`] if the channel can never have room (as for [`send`](Self::send)).
    pub fn send_timeout(&self, message: &[u8], timeout: Duration) -> Result<()> {
        self.send_until(message, Some(deadline::after(timeout)))
    }

    fn send_until(&self, message: &[u8], deadline: Option<Instant>) -> Result<()> {
        let len = self.message_len(message.len())?;
        let claim = self.wait_send_claim(deadline)?;
        self.fill_and_publish(claim, len, |slot| slot.copy_from_slice(message))
    }

    /// Sends a message of `len` bytes written in place by `fill`, waiting
    /// while the channel is full. No intermediate copy.
    ///
    /// # Safety
    /// `fill` gets a `&mut [u8]` into shared memory: the slot this process
    /// has claimed. Every process that opens this channel must follow
    /// shmio's protocol (only shmio's `Channel` touches its mapping), or
    /// another process could write the bytes while `fill` holds them.
    pub unsafe fn send_with(&self, len: usize, fill: impl FnOnce(&mut [u8])) -> Result<()> {
        let len = self.message_len(len)?;
        let claim = self.wait_send_claim(None)?;
        self.fill_and_publish(claim, len, fill)
    }

    /// As [`send_with`](Self::send_with), or [`Error::Full`] if there is no room.
    ///
    /// # Safety
    /// As [`send_with`](Self::send_with).
    pub unsafe fn try_send_with(&self, len: usize, fill: impl FnOnce(&mut [u8])) -> Result<()> {
        let len = self.message_len(len)?;
        let claim = self
            .ring
            .claim_send(self.token()?)
            .map_err(|blocked| self.full(blocked))?;
        self.fill_and_publish(claim, len, fill)
    }

    /// Sends `value` as JSON (the codec of mapping records).
    pub fn send_record<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        let payload = crate::mapping::record::encode_payload(value)?;
        self.send(&payload)
    }

    /// As [`send_record`](Self::send_record) if there is room: [`Error::Full`] if not.
    pub fn try_send_record<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        let payload = crate::mapping::record::encode_payload(value)?;
        self.try_send(&payload)
    }

    /// As [`send_record`](Self::send_record), waiting at most `timeout`
    /// for room: [`Error::TimedOut`] if none came.
    pub fn send_record_timeout<T: Serialize + ?Sized>(
        &self,
        value: &T,
        timeout: Duration,
    ) -> Result<()> {
        let payload = crate::mapping::record::encode_payload(value)?;
        self.send_timeout(&payload, timeout)
    }

    /// Receives a message, waiting while the channel is empty.
    ///
    /// [`Error::Corrupt`] instead of waiting forever if the channel is in a
    /// state no process following shmio's protocol leaves it in (as for
    /// [`send`](Self::send)), or for a message whose length is impossible.
    pub fn recv(&self) -> Result<Vec<u8>> {
        let mut message = Vec::new();
        self.recv_into(&mut message)?;
        Ok(message)
    }

    /// Receives a message into `buf` (replacing its contents), waiting while the channel is empty.
    pub fn recv_into(&self, buf: &mut Vec<u8>) -> Result<()> {
        self.recv_until(None, |message| copy_into(message, buf))
    }

    /// Receives a message if there is one: [`Error::Empty`] if not.
    pub fn try_recv(&self) -> Result<Vec<u8>> {
        let mut message = Vec::new();
        self.try_recv_into(&mut message)?;
        Ok(message)
    }

    /// Receives a message into `buf` if there is one: [`Error::Empty`] if not.
    pub fn try_recv_into(&self, buf: &mut Vec<u8>) -> Result<()> {
        self.try_take(|message| copy_into(message, buf))
    }

    /// Receives a message, waiting at most `timeout`: [`Error::TimedOut`] if none came,
    /// [`Error::Corrupt`] if none can ever come (as for [`recv`](Self::recv)).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Vec<u8>> {
        let mut message = Vec::new();
        self.recv_into_timeout(&mut message, timeout)?;
        Ok(message)
    }

    /// Receives a message into `buf` (replacing its contents), waiting at
    /// most `timeout`: [`Error::TimedOut`] if none came. A buffer reused
    /// from call to call spares an allocation per message (for large
    /// messages, the page faults of fresh memory).
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmio::{Channel, ChannelGeometry};
    ///
    /// # let name = format!("shmio-doc-recv-into-timeout-{}", std::process::id());
    /// let channel = Channel::create_or_open(&name, ChannelGeometry::default())?;
    /// let mut buf = Vec::new();
    /// assert!(channel.recv_into_timeout(&mut buf, Duration::from_millis(1)).unwrap_err().is_timed_out());
    /// channel.send(b"hello")?;
    /// channel.recv_into_timeout(&mut buf, Duration::from_secs(1))?;
    /// assert_eq!(buf, b"hello");
    /// # Ok::<(), shmio::Error>(())
    /// ```
    pub fn recv_into_timeout(&self, buf: &mut Vec<u8>, timeout: Duration) -> Result<()> {
        self.recv_into_until(buf, deadline::after(timeout))
    }

    /// Receives a message into `buf` (replacing its contents) if one is
    /// there or comes before `deadline`: for the bus, which reuses one
    /// buffer and knows its deadlines.
    pub(crate) fn recv_into_until(&self, buf: &mut Vec<u8>, deadline: Instant) -> Result<()> {
        self.recv_until(Some(deadline), |bytes| copy_into(bytes, buf))
    }

    /// A nap on the receivers' doorbell, counted in (see `waiter.rs`): for
    /// the bus, whose futures wait for its inbox to be written without
    /// taking what comes (its reader files it).
    pub(crate) fn recv_nap(&self) -> Nap {
        Nap::new(
            self.ring.u32_at(ring::RECV_BELL),
            self.ring.u32_at(ring::RECV_SLEEPERS),
            &self.recv_bell,
            &self.map,
        )
    }

    /// One poll of a future receiving into `buf`: a message claimed and
    /// copied (a tombstone skipped), or `Pending`. The whole way from the
    /// claim to the copy is in this one plain function: written in the
    /// `async fn` around it, the same code cost a hand-over 50 ns more
    /// (the round trip's two sides, measured pinned to one cache's cores).
    fn poll_recv_into(
        &self,
        cx: &mut Context<'_>,
        pause: &mut Pause,
        buf: &mut Vec<u8>,
    ) -> Poll<Result<()>> {
        let me = match self.token() {
            Ok(me) => me,
            Err(error) => return Poll::Ready(Err(error)),
        };
        loop {
            let mut claimed = None;
            let claim = || self.ring.claim_recv(me);
            match self.poll_turn(cx, pause, Side::Recv, &mut claimed, claim) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Ready(Ok(())) => {}
            }
            let Some((claim, len)) = claimed else {
                continue;
            };
            let mut read = Some(|message: &[u8]| copy_into(message, buf));
            match self.read_and_release(claim, len, &mut read) {
                Ok(Some(())) => return Poll::Ready(Ok(())),
                // A tombstone: on to the next message.
                Ok(None) => continue,
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }

    /// One poll of a future sending `message`: sent, or `Pending` with a
    /// wake-up at most `timeout` away (the bus's calls look for dead
    /// listeners and their deadline while they wait for room). As for
    /// [`poll_recv_into`](Self::poll_recv_into), the claim and the copy are
    /// in this plain function.
    pub(crate) fn poll_send(
        &self,
        cx: &mut Context<'_>,
        pause: &mut Pause,
        message: &[u8],
        timeout: Duration,
    ) -> Poll<Result<()>> {
        let len = match self.message_len(message.len()) {
            Ok(len) => len,
            Err(error) => return Poll::Ready(Err(error)),
        };
        let me = match self.token() {
            Ok(me) => me,
            Err(error) => return Poll::Ready(Err(error)),
        };
        let mut claimed = None;
        let polled = self.poll_turn_for(cx, pause, Side::Send, timeout, &mut claimed, || {
            self.ring.claim_send(me)
        });
        match (polled, claimed) {
            (Poll::Ready(Ok(())), Some(claim)) => {
                Poll::Ready(self.fill_and_publish(claim, len, |slot| slot.copy_from_slice(message)))
            }
            (Poll::Ready(Err(error)), _) => Poll::Ready(Err(error)),
            _ => Poll::Pending,
        }
    }

    /// Receives a message and hands it to `read` in place, waiting while the
    /// channel is empty; returns what `read` returns. No intermediate copy.
    ///
    /// # Safety
    /// `read` gets a `&[u8]` into shared memory: the slot this process has
    /// claimed. Every process that opens this channel must follow shmio's
    /// protocol (only shmio's `Channel` touches its mapping), or another
    /// process could change the bytes while `read` holds them.
    pub unsafe fn recv_with<R>(&self, read: impl FnOnce(&[u8]) -> R) -> Result<R> {
        self.recv_until(None, read)
    }

    /// As [`recv_with`](Self::recv_with), or [`Error::Empty`] if there is no message.
    ///
    /// # Safety
    /// As [`recv_with`](Self::recv_with).
    pub unsafe fn try_recv_with<R>(&self, read: impl FnOnce(&[u8]) -> R) -> Result<R> {
        self.try_take(read)
    }

    /// Receives a message sent with [`send_record`](Self::send_record).
    /// A message that does not decode is [`Error::UndecodableMessage`]
    /// with its bytes (it is taken from the channel either way).
    pub fn recv_record<T: DeserializeOwned>(&self) -> Result<T> {
        self.decode(self.recv()?)
    }

    /// As [`recv_record`](Self::recv_record) if a message is there:
    /// [`Error::Empty`] if not.
    pub fn try_recv_record<T: DeserializeOwned>(&self) -> Result<T> {
        self.decode(self.try_recv()?)
    }

    /// As [`recv_record`](Self::recv_record), waiting at most `timeout`:
    /// [`Error::TimedOut`] if nothing came.
    pub fn recv_record_timeout<T: DeserializeOwned>(&self, timeout: Duration) -> Result<T> {
        self.decode(self.recv_timeout(timeout)?)
    }

    /// Receives a message, awaiting one while the channel is empty: the
    /// future of [`recv`](Self::recv), with its results and errors, in any
    /// executor. Polled, it takes a message that is there as
    /// [`try_recv`](Self::try_recv) does; while none is, it spins briefly,
    /// yields to its executor for a while, then sleeps through the
    /// process's waiter thread at no CPU cost until a sender rings.
    ///
    /// **Cancel safety:** dropping the future never loses a message: a
    /// message is taken and returned in one poll, so a future dropped
    /// before it is ready has taken none (and a ring it may have absorbed
    /// is passed on to the next sleeper). Bound the wait with the
    /// executor's timer (`tokio::time::timeout`).
    ///
    /// ```
    /// # let name = format!("shmio-doc-chan-async-{}", std::process::id());
    /// use shmio::{Channel, ChannelGeometry};
    ///
    /// let geometry = ChannelGeometry { capacity: 8, max_message_size: 64 };
    /// let channel = Channel::create_or_open(&name, geometry)?;
    /// channel.send(b"hello")?; // e.g. from another process
    /// # futures_lite::future::block_on(async {
    /// let message = channel.recv_async().await?;
    /// assert_eq!(message, b"hello");
    /// # Ok::<(), shmio::Error>(()) })?;
    /// # Ok::<(), shmio::Error>(())
    /// ```
    pub async fn recv_async(&self) -> Result<Vec<u8>> {
        let mut message = Vec::new();
        self.recv_into_async(&mut message).await?;
        Ok(message)
    }

    /// Receives a message into `buf` (replacing its contents), awaiting one
    /// while the channel is empty (see [`recv_async`](Self::recv_async);
    /// `buf` is left as it was if the future is dropped before it is ready).
    pub async fn recv_into_async(&self, buf: &mut Vec<u8>) -> Result<()> {
        let mut pause = Pause::new();
        poll_fn(|cx| self.poll_recv_into(cx, &mut pause, buf)).await
    }

    /// Sends `message`, awaiting room while the channel is full: the future
    /// of [`send`](Self::send) (see [`recv_async`](Self::recv_async) for
    /// how it waits).
    ///
    /// **Cancel safety:** a message is sent whole in the poll that finds
    /// room, or not at all: dropping the future before it is ready sends
    /// nothing.
    pub async fn send_async(&self, message: &[u8]) -> Result<()> {
        let mut pause = Pause::new();
        poll_fn(|cx| self.poll_send(cx, &mut pause, message, waiter::FUTURE_NAP)).await
    }

    /// The channel's messages as a [`Stream`](futures_core::Stream)
    /// (feature `stream`): each as [`recv_async`](Self::recv_async) gives
    /// it, and the end when the channel is disconnected (every other handle
    /// closed, nothing left in it). Cancel safe as `recv_async` is: a
    /// message is taken in the poll that yields it.
    #[cfg(feature = "stream")]
    pub fn messages(&self) -> Messages<'_> {
        Messages {
            channel: self,
            pause: Pause::new(),
        }
    }

    /// As [`recv_record`](Self::recv_record), awaiting a message (see
    /// [`recv_async`](Self::recv_async); cancel safe).
    pub async fn recv_record_async<T: DeserializeOwned>(&self) -> Result<T> {
        self.decode(self.recv_async().await?)
    }

    /// As [`send_record`](Self::send_record), awaiting room (see
    /// [`send_async`](Self::send_async); cancel safe).
    pub async fn send_record_async<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        let payload = crate::mapping::record::encode_payload(value)?;
        self.send_async(&payload).await
    }

    /// A received message as a `T`, or why not.
    fn decode<T: DeserializeOwned>(&self, message: Vec<u8>) -> Result<T> {
        serde_json::from_slice(&message).map_err(|source| Error::UndecodableMessage {
            channel: self.name.clone(),
            source: source.into(),
            raw: message,
        })
    }

    /// The length of a message as stored, or why it cannot be sent.
    fn message_len(&self, len: usize) -> Result<u32> {
        match u32::try_from(len) {
            Ok(len) if self.ring.fits(len) => Ok(len),
            _ => Err(Error::MessageTooLarge {
                len: len as u64,
                max: self.geometry.max_message_size,
            }),
        }
    }

    fn full(&self, blocked: Blocked) -> Error {
        self.repair_if_stuck(blocked);
        Error::Full
    }

    /// For polling callers: repairs the blocking slot once the same claimed
    /// state has been seen [`STUCK_POLLS`] times in a row, so that a busy
    /// poll makes no liveness system call while the claimer is merely busy.
    fn repair_if_stuck(&self, blocked: Blocked) -> bool {
        if !blocked.is_claimed() {
            return false;
        }
        if self.stuck_state.swap(blocked.state(), Ordering::Relaxed) != blocked.state() {
            self.stuck_polls.store(0, Ordering::Relaxed);
            return false;
        }
        if self.stuck_polls.fetch_add(1, Ordering::Relaxed) < STUCK_POLLS {
            return false;
        }
        self.stuck_polls.store(0, Ordering::Relaxed);
        self.repair(blocked)
    }

    /// This handle's token, which signs its claims; [`Error::Inherited`] in
    /// a forked child, whose copy of the handle is its parent's participant.
    #[inline]
    fn token(&self) -> Result<u32> {
        if self.participant.is_here() {
            return Ok(self.participant.token());
        }
        Err(Error::Inherited {
            kind: "channel",
            name: self.name.clone(),
        })
    }

    /// Repairs the slot that blocked a claim if its claimer is dead (see
    /// `src/participants.rs`); whether it changed anything.
    fn repair(&self, blocked: Blocked) -> bool {
        self.ring.repair(blocked, |owner| self.is_alive(owner))
    }

    /// Whether the participant `token` is alive (this handle's own is).
    fn is_alive(&self, token: u32) -> bool {
        token == self.participant.token()
            || participants::is_alive(
                token,
                self.ring.generations(),
                self.map.object(),
                &self.os_name,
                &self.trust,
            )
    }

    /// Claims a slot to send to, waiting (spin, then sleep) until `deadline`.
    fn wait_send_claim(&self, deadline: Option<Instant>) -> Result<Claim> {
        let me = self.token()?;
        let mut backoff = Backoff::new();
        loop {
            match self.ring.claim_send(me) {
                Ok(claim) => return Ok(claim),
                Err(blocked) => {
                    let claimed =
                        self.wait_turn(&mut backoff, deadline, blocked, Side::Send, || {
                            self.ring.claim_send(me).ok()
                        })?;
                    if let Some(claim) = claimed {
                        return Ok(claim);
                    }
                }
            }
        }
    }

    /// Writes a claimed slot with `fill` and publishes it; a panic in
    /// `fill` publishes a tombstone, so the slot is never left claimed.
    /// With a pool, a chunk is reserved for it first.
    fn fill_and_publish(
        &self,
        mut claim: Claim,
        len: u32,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<()> {
        if self.ring.is_pooled() && !self.reserve_chunk(&mut claim) {
            self.ring.publish(claim, TOMBSTONE);
            return Err(Error::Corrupt {
                offset: ring::CHUNKS,
                reason: format!(
                    "{:?}: no chunk of the payloads' pool came free for a claimed slot within {:?}",
                    self.name, POOL_PATIENCE
                ),
            });
        }
        struct Tombstone<'a> {
            ring: &'a Ring,
            claim: Option<Claim>,
        }
        impl Drop for Tombstone<'_> {
            fn drop(&mut self) {
                if let Some(claim) = self.claim.take() {
                    self.ring.publish(claim, TOMBSTONE);
                }
            }
        }
        let slot_ptr = self.ring.claimed_payload(&claim);
        let mut guard = Tombstone {
            ring: &self.ring,
            claim: Some(claim),
        };
        // SAFETY: the slot is claimed by this process, lies inside the
        // mapping, and holds at least `max_message_size >= len` bytes.
        let slot = unsafe { std::slice::from_raw_parts_mut(slot_ptr.as_ptr(), len as usize) };
        fill(slot);
        if let Some(claim) = guard.claim.take() {
            if self.ring.publish(claim, len) {
                ring_bell(&self.recv_bell, self.ring.u32_at(ring::RECV_BELL));
            }
        }
        Ok(())
    }

    /// Reserves a chunk of the pool for a claimed slot. With the slot
    /// claimed one always comes free but for the reservations of dead
    /// senders (see `ring.rs`), which are freed here; false if none came
    /// within [`POOL_PATIENCE`] (scribbled memory).
    fn reserve_chunk(&self, claim: &mut Claim) -> bool {
        let me = self.participant.token();
        if self.ring.reserve(claim, me) {
            return true;
        }
        let deadline = Instant::now() + POOL_PATIENCE;
        while Instant::now() < deadline {
            let freed = self
                .ring
                .free_dead_reservations(|token| !self.is_alive(token));
            if self.ring.reserve(claim, me) {
                return true;
            }
            if !freed {
                std::thread::yield_now();
            }
        }
        false
    }

    /// Takes one message without waiting.
    fn try_take<R>(&self, read: impl FnOnce(&[u8]) -> R) -> Result<R> {
        let me = self.token()?;
        let mut read = Some(read);
        loop {
            match self.ring.claim_recv(me) {
                Ok((claim, len)) => {
                    if let Some(result) = self.read_and_release(claim, len, &mut read)? {
                        return Ok(result);
                    }
                }
                Err(blocked) => {
                    if !self.repair_if_stuck(blocked) {
                        return Err(Error::Empty);
                    }
                }
            }
        }
    }

    /// Receives one message, waiting (spin, then sleep) until `deadline`.
    fn recv_until<R>(&self, deadline: Option<Instant>, read: impl FnOnce(&[u8]) -> R) -> Result<R> {
        let me = self.token()?;
        let mut read = Some(read);
        let mut backoff = Backoff::new();
        loop {
            match self.ring.claim_recv(me) {
                Ok((claim, len)) => {
                    if let Some(result) = self.read_and_release(claim, len, &mut read)? {
                        return Ok(result);
                    }
                    continue;
                }
                Err(blocked) => {
                    if let Some((claim, len)) =
                        self.wait_turn(&mut backoff, deadline, blocked, Side::Recv, || {
                            self.ring.claim_recv(me).ok()
                        })?
                    {
                        if let Some(result) = self.read_and_release(claim, len, &mut read)? {
                            return Ok(result);
                        }
                    }
                }
            }
        }
    }

    /// Reads a claimed slot with `read` (taken from the option) and
    /// releases it. `None` for a tombstone, which is skipped.
    fn read_and_release<R, F: FnOnce(&[u8]) -> R>(
        &self,
        claim: Claim,
        len: u32,
        read: &mut Option<F>,
    ) -> Result<Option<R>> {
        struct Release<'a> {
            channel: &'a Channel,
            claim: Option<Claim>,
        }
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                if let Some(claim) = self.claim.take() {
                    if self.channel.ring.release(claim) {
                        let word = self.channel.ring.u32_at(ring::SEND_BELL);
                        ring_bell(&self.channel.send_bell, word);
                    }
                }
            }
        }
        let slot_ptr = self.ring.payload(claim.pos);
        let _release = Release {
            channel: self,
            claim: Some(claim),
        };
        if len == TOMBSTONE {
            return Ok(None);
        }
        if !self.ring.fits(len) {
            return Err(Error::Corrupt {
                offset: 0,
                reason: format!(
                    "{:?}: a message claims {len} bytes; the channel holds at most {}",
                    self.name, self.geometry.max_message_size
                ),
            });
        }
        let Some(slot_ptr) = slot_ptr else {
            return Err(Error::Corrupt {
                offset: 0,
                reason: format!(
                    "{:?}: a message names a chunk outside the channel's pool",
                    self.name
                ),
            });
        };
        let Some(read) = read.take() else {
            return Ok(None);
        };
        if !self.peer_seen.load(Ordering::Relaxed) {
            self.peer_seen.store(true, Ordering::Relaxed);
        }
        // SAFETY: the slot is claimed by this process, lies inside the
        // mapping, and `len` is at most its payload size (checked above).
        let message = unsafe { std::slice::from_raw_parts(slot_ptr.as_ptr(), len as usize) };
        Ok(Some(read(message)))
    }

    /// One step of waiting for a turn on `side`: spins first, then sleeps
    /// on its doorbell, before each sleep checking that the ring is in a
    /// state a healthy channel can be in ([`Error::Corrupt`] if not: it
    /// might never change) and repairing slots of dead processes. Returns
    /// what `attempt` claimed, if it claimed anything, or `None` to try again.
    fn wait_turn<T>(
        &self,
        backoff: &mut Backoff,
        deadline: Option<Instant>,
        blocked: Blocked,
        side: Side,
        attempt: impl Fn() -> Option<T>,
    ) -> Result<Option<T>> {
        // The clock is read every few spins only: reading it costs as much
        // as a spin, and a message is seen sooner without it.
        let looks = !backoff.is_spinning() || backoff.steps() & 7 == 0;
        let now = deadline.filter(|_| looks).map(|_| Instant::now());
        if let (Some(deadline), Some(now)) = (deadline, now) {
            if now >= deadline {
                // Blocked by corruption is not a timeout.
                self.check(side)?;
                return Err(Error::TimedOut {
                    name: self.name.clone(),
                });
            }
        }
        if backoff.snooze() {
            return Ok(None);
        }
        let claimed = match self.before_sleep(deadline, now, blocked, side, attempt)? {
            Turn::Again => None,
            Turn::Claimed(claimed) => Some(claimed),
            Turn::Sleep(nap, timeout) => {
                nap.sleep(Some(timeout));
                None
            }
        };
        Ok(claimed)
    }

    /// What a waiter on `side` whose spins and yields are spent does: checks
    /// that the ring is in a state a healthy channel can be in
    /// ([`Error::Corrupt`] if not: it might never change), repairs slots of
    /// dead processes, tells a lone handle it is disconnected, and counts
    /// itself in at the doorbell before its last `attempt`. `now` is the
    /// time it read, when it has a `deadline`.
    fn before_sleep<T>(
        &self,
        deadline: Option<Instant>,
        now: Option<Instant>,
        blocked: Blocked,
        side: Side,
        attempt: impl Fn() -> Option<T>,
    ) -> Result<Turn<T>> {
        // Before the repair: a scribbled owner may read as a dead claimer.
        self.check(side)?;
        if self.repair(blocked) {
            return Ok(Turn::Again);
        }
        if self.is_alone() {
            // No one can send or receive any more: unless what was there
            // just came, the wait can never end.
            return match attempt() {
                Some(claimed) => Ok(Turn::Claimed(claimed)),
                None => Err(Error::Disconnected {
                    name: self.name.clone(),
                }),
            };
        }
        let (bell_offset, sleepers_offset, bell) = match side {
            Side::Send => (ring::SEND_BELL, ring::SEND_SLEEPERS, &self.send_bell),
            Side::Recv => (ring::RECV_BELL, ring::RECV_SLEEPERS, &self.recv_bell),
        };
        // Pairs with the SeqCst swap that publishes or releases a slot
        // (`Ring::publish`, `Ring::release`): either that hand-over is
        // seen by `attempt` below, or its maker sees this sleeper.
        let nap = Nap::new(
            self.ring.u32_at(bell_offset),
            self.ring.u32_at(sleepers_offset),
            bell,
            &self.map,
        );
        if let Some(claimed) = attempt() {
            return Ok(Turn::Claimed(claimed));
        }
        let timeout = match (deadline, now) {
            (Some(deadline), Some(now)) => (deadline - now).min(REPAIR_INTERVAL),
            _ => REPAIR_INTERVAL,
        };
        Ok(Turn::Sleep(nap, timeout))
    }

    /// One poll of a future waiting for a turn on `side`: `claim` once
    /// more, then as [`Channel::wait_turn`] does, but yielding to the
    /// executor rather than the OS, and sleeping through the process's
    /// waiter (see `waiter.rs`) rather than in the kernel.
    fn poll_turn<T>(
        &self,
        cx: &mut Context<'_>,
        pause: &mut Pause,
        side: Side,
        claimed: &mut Option<T>,
        claim: impl Fn() -> std::result::Result<T, Blocked>,
    ) -> Poll<Result<()>> {
        self.poll_turn_for(cx, pause, side, waiter::FUTURE_NAP, claimed, claim)
    }

    /// As [`poll_turn`](Self::poll_turn), asleep at most `timeout`. What
    /// it claimed goes to `claimed` (not through the returned `Poll`:
    /// copied out of a large enum, a claim was read back before its
    /// smaller stores had landed, a stall on the hot path).
    fn poll_turn_for<T>(
        &self,
        cx: &mut Context<'_>,
        pause: &mut Pause,
        side: Side,
        timeout: Duration,
        claimed: &mut Option<T>,
        claim: impl Fn() -> std::result::Result<T, Blocked>,
    ) -> Poll<Result<()>> {
        loop {
            let blocked = match claim() {
                Ok(claim) => {
                    pause.wake_up();
                    *claimed = Some(claim);
                    return Poll::Ready(Ok(()));
                }
                Err(blocked) => blocked,
            };
            match pause.step(cx) {
                Step::Look => continue,
                Step::Pending => return Poll::Pending,
                Step::Sleep => {}
            }
            match self.before_sleep(None, None, blocked, side, || claim().ok()) {
                Err(error) => return Poll::Ready(Err(error)),
                Ok(Turn::Again) => continue,
                Ok(Turn::Claimed(claim)) => {
                    *claimed = Some(claim);
                    return Poll::Ready(Ok(()));
                }
                Ok(Turn::Sleep(nap, _)) => {
                    return match pause.sleep_for(nap, timeout, cx) {
                        Ok(()) => Poll::Pending,
                        Err(error) => Poll::Ready(Err(error)),
                    };
                }
            }
        }
    }

    /// Whether this handle, having seen another participant or a message,
    /// is now the only one open on the channel. Asked at most every
    /// [`PEER_INTERVAL`] (a look at the seats ever taken), and only by a
    /// waiter about to sleep.
    fn is_alone(&self) -> bool {
        if !self.tells_disconnection || !self.peer_seen.load(Ordering::Relaxed) {
            return false;
        }
        let now = self.opened.elapsed().as_millis() as u64;
        let asked = self.peers_asked.load(Ordering::Relaxed);
        if now < asked + PEER_INTERVAL.as_millis() as u64 {
            return false;
        }
        self.peers_asked.store(now, Ordering::Relaxed);
        !participants::others_alive(
            self.participant.token(),
            self.ring.generations(),
            self.map.object(),
            &self.os_name,
            &self.trust,
        )
    }

    /// [`Error::Corrupt`] if a claim on `side` is blocked by a state of the
    /// ring no healthy channel reaches (see [`Ring::impossible`]).
    fn check(&self, side: Side) -> Result<()> {
        match self.ring.impossible(side) {
            None => Ok(()),
            Some(Impossible { offset, what }) => Err(Error::Corrupt {
                offset,
                reason: format!("channel {:?}: {what}", self.name),
            }),
        }
    }
}

/// A channel's messages as a `Stream`: see [`Channel::messages`].
#[cfg(feature = "stream")]
pub struct Messages<'a> {
    channel: &'a Channel,
    pause: Pause,
}

#[cfg(feature = "stream")]
impl futures_core::Stream for Messages<'_> {
    type Item = Result<Vec<u8>>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Vec<u8>>>> {
        let this = self.get_mut();
        let mut message = Vec::new();
        match this
            .channel
            .poll_recv_into(cx, &mut this.pause, &mut message)
        {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(Error::Disconnected { .. })) => Poll::Ready(None),
            Poll::Ready(Err(error)) => Poll::Ready(Some(Err(error))),
            Poll::Ready(Ok(())) => {
                this.pause = Pause::new();
                Poll::Ready(Some(Ok(message)))
            }
        }
    }
}

/// Checks a new channel's geometry; the bytes it takes.
fn check_geometry(geometry: ChannelGeometry, name: &str) -> Result<u64> {
    if geometry.capacity == 0 || geometry.max_message_size == 0 {
        return Err(Error::InvalidOptions {
            reason: "a channel needs a capacity and a max_message_size of at least 1",
        });
    }
    if geometry.capacity > ring::MAX_CAPACITY {
        return Err(Error::InvalidOptions {
            reason: "a channel holds at most 2^30 messages",
        });
    }
    let chunks = ring::chunks_for(geometry.capacity, geometry.max_message_size);
    match Ring::size_for(geometry.capacity, geometry.max_message_size, chunks) {
        Some(size) if size <= sys::MAX_MAP_LEN => Ok(size),
        _ => Err(Error::TooLarge {
            size: u64::MAX,
            limit: sys::MAX_MAP_LEN,
            target: name.to_owned(),
        }),
    }
}

/// Rings a doorbell: bumps its word, so a sleeper about to sleep sees the
/// change, and wakes one sleeper.
fn ring_bell(bell: &sys::Waker, word: &AtomicU32) {
    word.fetch_add(1, Ordering::SeqCst);
    bell.wake(word, 1);
}

/// `message` into `buf`, replacing what it held, with one copy.
fn copy_into(message: &[u8], buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend_from_slice(message);
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("name", &self.name)
            .field("geometry", &self.geometry)
            .finish()
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Whether `whose` participant is alive, as the handle `seen_by` sees it.
    fn alive(whose: &Channel, seen_by: &Channel) -> bool {
        participants::is_alive(
            whose.participant.token(),
            seen_by.ring.generations(),
            seen_by.map.object(),
            &seen_by.os_name,
            &seen_by.trust,
        )
    }

    #[test]
    #[cfg_attr(miri, ignore = "forks: Miri runs no system call")]
    fn a_forked_childs_drop_of_an_inherited_channel_leaves_the_parents_seat() {
        let name = format!("shmio-unit-fork-seat-{}", std::process::id());
        let geometry = ChannelGeometry {
            capacity: 4,
            max_message_size: 8,
        };
        let mut parent = Some(Channel::create_or_open(&name, geometry).unwrap());
        let other = Channel::open(&name).unwrap();
        assert!(alive(parent.as_ref().unwrap(), &other));
        // SAFETY: the child only drops its copy of the handle and `_exit`s.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            drop(parent.take());
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waits for our own child, which exits at once.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            alive(parent.as_ref().unwrap(), &other),
            "the child's drop let go of the parent's seat"
        );
    }
}
