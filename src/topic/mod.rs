//! [`Topic`]: publish–subscribe between processes, in a named mapping:
//! every subscriber gets every message published after it subscribed (and,
//! with a history, the last few before), each publisher's in the order it
//! published them.
//!
//! The data is held once: one ring of `capacity` slots that publishers
//! claim in turn and every subscriber reads at its own cursor (the layout
//! and the algorithm are in `ring.rs`). What a slow subscriber costs is
//! chosen at creation ([`Overflow`]): under `Overwrite` nothing waits for
//! it, and it is told how many messages it missed; under `Block` a
//! publisher waits for the slowest *live* subscriber, and a dead one is
//! found by its seat (`src/participants.rs`) and let go. A publisher that
//! dies while writing leaves a slot that names it: whoever waits on that
//! slot publishes it as a tombstone, so no one sees a half-written
//! message and nothing is wedged. Waiting spins briefly, then sleeps on a
//! doorbell ([`sys::Waker`]), rung only when someone sleeps, as the
//! channel's are.

pub(crate) mod ring;

use std::cell::Cell;
use std::future::poll_fn;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::backoff::Backoff;
use crate::deadline;
use crate::error::{Error, Result};
use crate::kind::ObjectKind;
use crate::mapping::{Mapping, Window, DEFAULT_MODE};
use crate::name::Name;
use crate::object::{self, Sharing};
use crate::owner::Trust;
use crate::participants::{self, Participant};
use crate::sys::{self, Disposition};
use crate::waiter::{Nap, Pause, Step};
pub use ring::Overflow;
use ring::{Blocked, Found, Geometry, Ring, TOMBSTONE};

/// How long a sleeper sleeps at most before it looks for the dead again.
const REPAIR_INTERVAL: Duration = Duration::from_millis(100);
/// Polls that see the same message being written before a poller asks
/// whether its publisher is alive.
const STUCK_POLLS: u32 = 1024;

/// How many times a publisher tries to reserve a chunk of the pool while
/// subscribers keep joining, before it waits and tries again.
const RESERVE_TRIES: u32 = 8;

/// How long a receive waits.
#[derive(Clone, Copy, Debug)]
enum Wait {
    /// Not at all: a poll.
    Now,
    /// Until then.
    Until(Instant),
    /// Until a message comes.
    Forever,
}

/// What one look of a subscriber's slow path found.
enum Look {
    /// The next message, handed over.
    Taken,
    /// Something moved (a tombstone passed, a copy overwritten): look again.
    Again,
    /// Nothing published at the cursor yet; the slot's state.
    Nothing(u64),
}

/// What a subscriber's fast path found.
enum Ready {
    /// The next message, copied out and moved past.
    Taken,
    /// Nothing published at the cursor, and no one writing it.
    Empty,
    /// Something the slow path looks at.
    Other,
}

impl Wait {
    fn after(timeout: Duration) -> Wait {
        Wait::Until(deadline::after(timeout))
    }
}

/// The settings of a new topic, and who may share it.
///
/// ```
/// use shmio::{Overflow, Topic};
///
/// # let name = format!("shmio-doc-topic-opts-{}", std::process::id());
/// let topic = Topic::options()
///     .capacity(256)
///     .max_message_size(1024)
///     .history(8)
///     .overflow(Overflow::Block)
///     .create_or_open(&name)?;
/// assert_eq!(topic.history(), 8);
/// # Ok::<(), shmio::Error>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TopicOptions {
    capacity: u32,
    max_message_size: u32,
    history: u32,
    overflow: Overflow,
    permissions: u32,
    persistent: bool,
    trust: Trust,
}

impl Default for TopicOptions {
    fn default() -> Self {
        TopicOptions {
            capacity: 1024,
            max_message_size: 4096,
            history: 0,
            overflow: Overflow::Overwrite,
            permissions: DEFAULT_MODE,
            persistent: false,
            trust: Trust::OWN,
        }
    }
}

impl TopicOptions {
    /// The defaults: 1,024 messages of up to 4 KiB, no history, overwrite.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many messages the topic holds (at least 1, at most 2^30).
    pub fn capacity(&mut self, capacity: u32) -> &mut Self {
        self.capacity = capacity;
        self
    }

    /// The largest message, in bytes.
    pub fn max_message_size(&mut self, max_message_size: u32) -> &mut Self {
        self.max_message_size = max_message_size;
        self
    }

    /// How many of the last messages a new subscriber gets first (less
    /// than the capacity). Under [`Overflow::Block`], a subscriber that
    /// joins while publishers are publishing can be told it missed the
    /// oldest of its history ([`Error::Lagged`], never silently) unless
    /// the history is below the capacity by at least the number of
    /// publishing processes: each may have one message under way that it
    /// cleared before the new subscriber's cursor was there.
    pub fn history(&mut self, history: u32) -> &mut Self {
        self.history = history;
        self
    }

    /// What a subscriber that falls behind costs (see [`Overflow`]).
    pub fn overflow(&mut self, overflow: Overflow) -> &mut Self {
        self.overflow = overflow;
        self
    }

    /// Whether the name stays after its last holder closes, until
    /// [`Topic::remove`].
    pub fn persistent(&mut self, persistent: bool) -> &mut Self {
        self.persistent = persistent;
        self
    }

    crate::owner::sharing_options!("topic", permissions);

    crate::object::finish_options!(
        Topic,
        "topic",
        "A new one takes these options' settings; an existing one keeps its own, and \
         `create_or_open` says [`Error::Mismatch`] if they differ."
    );

    /// Creates and/or opens the topic `name`, as `how` says.
    fn make(&self, name: &str, how: Disposition) -> Result<Topic> {
        let name = Name::new(name)?;
        let size = self.check(name.as_str())?;
        let (capacity, max, history, overflow) = (
            self.capacity,
            self.max_message_size,
            self.history,
            self.overflow,
        );
        let geometry = Geometry::new(capacity, max, overflow);
        let init = |window: &Window| {
            window.write_value(ring::CAPACITY, &capacity)?;
            window.write_value(ring::MAX_MESSAGE, &max)?;
            let stride = geometry.slot_stride();
            window.write_value(ring::STRIDE, &(stride as u32))?;
            window.write_value(ring::HISTORY, &history)?;
            window.write_value(ring::OVERFLOW, &overflow.word())?;
            window.write_value(ring::CHUNKS, &geometry.chunks)?;
            for index in 0..u64::from(capacity) {
                let start = Ring::slot_start(index, stride);
                window.write_value(start, &Ring::initial_state(index, capacity))?;
                window.write_value(start + Ring::SLOT_LEN, &TOMBSTONE)?;
            }
            Ok(())
        };
        let sharing = Sharing {
            permissions: self.permissions,
            trust: &self.trust,
            parent_only: true,
            persistent: self.persistent,
        };
        let (map, existed) =
            object::make(name.as_str(), how, size, &sharing, ObjectKind::Topic, &init)
                .map_err(|error| error.of(ObjectKind::Topic, name.as_str()))?;
        let topic = Topic::from_map(map, name.as_str(), &self.trust)?;
        let asked = Settings {
            capacity,
            max_message_size: max,
            history,
            overflow,
        };
        if existed && how != Disposition::Open && topic.shared.settings != asked {
            return Err(Error::Mismatch {
                name: name.as_str().to_owned(),
                asked: asked.to_string().into(),
                found: topic.shared.settings.to_string().into(),
            });
        }
        Ok(topic)
    }

    /// Checks a new topic's settings; the bytes it takes.
    fn check(&self, name: &str) -> Result<u64> {
        if self.capacity == 0 || self.max_message_size == 0 {
            return Err(Error::InvalidOptions {
                reason: "a topic needs a capacity and a max_message_size of at least 1",
            });
        }
        if self.capacity > ring::MAX_CAPACITY {
            return Err(Error::InvalidOptions {
                reason: "a topic holds at most 2^30 messages",
            });
        }
        if self.history >= self.capacity {
            return Err(Error::InvalidOptions {
                reason: "a topic's history must be less than its capacity",
            });
        }
        match Geometry::new(self.capacity, self.max_message_size, self.overflow).size() {
            Some(size) if size <= sys::MAX_MAP_LEN => Ok(size),
            _ => Err(Error::TooLarge {
                size: u64::MAX,
                limit: sys::MAX_MAP_LEN,
                target: name.to_owned(),
            }),
        }
    }
}

/// A topic's settings, as its creator chose them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Settings {
    capacity: u32,
    max_message_size: u32,
    history: u32,
    overflow: Overflow,
}

impl std::fmt::Display for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a topic of {} messages of up to {} bytes, history {}, {:?}",
            self.capacity, self.max_message_size, self.history, self.overflow
        )
    }
}

/// What every handle of one topic in this process shares: the mapping and
/// the ring over it, the doorbells, and the publisher's cached gate.
struct Shared {
    ring: Ring,
    /// Keeps the ring's memory mapped.
    map: Mapping,
    name: String,
    os_name: String,
    trust: Trust,
    settings: Settings,
    data_bell: Arc<sys::Waker>,
    space_bell: Arc<sys::Waker>,
}

/// A publish–subscribe topic between processes, found by name.
///
/// Any number of processes publish to it and subscribe to it; every
/// subscriber gets every message published after it subscribed, each
/// publisher's in the order published, and a new subscriber first gets the
/// last [`history`](TopicOptions::history) messages. A topic holds its
/// messages once, however many subscribe: up to 1,024 subscriptions and
/// publishing handles together ([`Error::TooManyParticipants`]; a handle
/// takes its seat at its first publish, so one that only subscribes costs
/// one seat, its subscription's). It reserves all
/// of its memory when it is made: a full `/dev/shm` is an error then,
/// never a crash later. It takes `135,808 + capacity × stride` bytes,
/// where the stride is 16 + `max_message_size` rounded up to 128.
///
/// A process killed while publishing never shows a half-written message
/// and never wedges the topic (its message is dropped); one killed while
/// subscribed holds no one back. Who is dead is never decided by a process
/// id, as for [`Channel`](crate::Channel).
///
/// ```
/// use shmio::Topic;
///
/// # let name = format!("shmio-doc-topic-{}", std::process::id());
/// let topic = Topic::options().history(1).create_or_open(&name)?;
/// topic.publish(b"before")?;
/// let mut first = topic.subscribe()?; // e.g. in another process
/// let mut second = Topic::open(&name)?.subscribe()?;
/// topic.publish(b"hello")?;
/// assert_eq!(first.recv()?, b"before"); // the history
/// assert_eq!(first.recv()?, b"hello");
/// assert_eq!(second.recv()?, b"before");
/// assert_eq!(second.recv()?, b"hello");
/// # Ok::<(), shmio::Error>(())
/// ```
pub struct Topic {
    shared: Arc<Shared>,
    /// The publisher's seat, taken at its first publish (a handle that
    /// only subscribes takes none of its own): its token signs its claims.
    participant: OnceLock<Participant>,
    /// The lowest subscriber cursor, as last looked at, and the count of
    /// subscriptions it was looked at with ([`Overflow::Block`]).
    gate_low: AtomicU64,
    gate_subscriptions: AtomicU64,
}

impl Topic {
    /// Opens the topic called `name`, creating it with the default
    /// settings if there is none (see [`Topic::options`] for others).
    pub fn create_or_open(name: &str) -> Result<Topic> {
        Topic::options().create_or_open(name)
    }

    /// Opens an existing topic, whatever its settings.
    pub fn open(name: &str) -> Result<Topic> {
        Topic::options().open(name)
    }

    /// A builder for every setting: capacity, message size, history,
    /// overflow, permissions, trusted owners.
    pub fn options() -> TopicOptions {
        TopicOptions::new()
    }

    /// Removes the name of the topic `name` (see [`Mapping::remove`]):
    /// its holders keep it, new opens no longer find it.
    pub fn remove(name: &str) -> Result<()> {
        Mapping::remove(name)
    }

    fn from_map(map: Mapping, name: &str, trust: &Trust) -> Result<Topic> {
        let capacity: u32 = map.read_value_at(ring::CAPACITY)?;
        let max_message_size: u32 = map.read_value_at(ring::MAX_MESSAGE)?;
        let stride: u32 = map.read_value_at(ring::STRIDE)?;
        let history: u32 = map.read_value_at(ring::HISTORY)?;
        let overflow_word: u32 = map.read_value_at(ring::OVERFLOW)?;
        let chunks: u32 = map.read_value_at(ring::CHUNKS)?;
        let corrupt = |offset: u64, reason: String| Error::Corrupt { offset, reason };
        let geometry = Geometry {
            capacity,
            max_message_size,
            chunks,
        };
        if u64::from(stride) != geometry.slot_stride() {
            return Err(corrupt(
                ring::STRIDE,
                format!("{name:?}: a slot stride of {stride} does not match messages of {max_message_size} bytes"),
            ));
        }
        let overflow = Overflow::from_word(overflow_word).ok_or_else(|| {
            corrupt(
                ring::OVERFLOW,
                format!("{name:?}: no overflow policy is {overflow_word}"),
            )
        })?;
        if history >= capacity {
            return Err(corrupt(
                ring::HISTORY,
                format!("{name:?}: a history of {history} in {capacity} slots"),
            ));
        }
        // SAFETY: the window is the whole live mapping, page-aligned and
        // writable, and `map` is kept in Shared beside the ring.
        let ring = unsafe { Ring::new(map.base(), map.len(), geometry)? };
        if ring.is_pooled() && overflow != Overflow::Block {
            return Err(corrupt(
                ring::CHUNKS,
                format!("{name:?}: a pool of {chunks} chunks under {overflow:?}"),
            ));
        }
        let os_name = map.os_name().unwrap_or_default();
        let shared = Shared {
            data_bell: Arc::new(sys::Waker::open(name, "data", trust)?),
            space_bell: Arc::new(sys::Waker::open(name, "space", trust)?),
            ring,
            map,
            name: name.to_owned(),
            os_name,
            trust: trust.clone(),
            settings: Settings {
                capacity,
                max_message_size,
                history,
                overflow,
            },
        };
        Ok(Topic {
            shared: Arc::new(shared),
            participant: OnceLock::new(),
            gate_low: AtomicU64::new(0),
            gate_subscriptions: AtomicU64::new(u64::MAX),
        })
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// How many messages it holds.
    pub fn capacity(&self) -> u32 {
        self.shared.settings.capacity
    }

    /// The largest message, in bytes.
    pub fn max_message_size(&self) -> u32 {
        self.shared.settings.max_message_size
    }

    /// How many of the last messages a new subscriber gets first.
    pub fn history(&self) -> u32 {
        self.shared.settings.history
    }

    /// What a subscriber that falls behind costs.
    pub fn overflow(&self) -> Overflow {
        self.shared.settings.overflow
    }

    /// How many messages have been published (or are being written).
    pub fn published(&self) -> u64 {
        self.shared.ring.head()
    }

    /// How many subscribers hold a cursor now (a dead one until it is
    /// found out).
    pub fn subscribers(&self) -> usize {
        self.shared.ring.subscribers()
    }

    /// Whether this process made the topic (false: it opened an existing one).
    pub fn existed(&self) -> bool {
        self.shared.map.existed()
    }

    /// Publishes `message` to every subscriber. Under [`Overflow::Block`]
    /// it waits while the slowest live subscriber has not read the message
    /// it would overwrite.
    pub fn publish(&self, message: &[u8]) -> Result<()> {
        self.publish_until(message, None)
    }

    /// As [`publish`](Self::publish), without waiting: [`Error::Full`] if
    /// a subscriber holds it back (only under [`Overflow::Block`]).
    pub fn try_publish(&self, message: &[u8]) -> Result<()> {
        let len = self.message_len(message.len())?;
        let me = self.token()?;
        let mut reserved = None;
        let claim = self.claim_once(me, &mut reserved).map_err(|blocked| {
            self.let_go(reserved, me);
            self.repair(blocked, me);
            Error::Full
        })?;
        self.fill_and_publish(claim, len, |slot| slot.copy_from_slice(message));
        Ok(())
    }

    /// As [`publish`](Self::publish), waiting at most `timeout`:
    /// [`Error::TimedOut`] if the slowest subscriber did not make room.
    pub fn publish_timeout(&self, message: &[u8], timeout: Duration) -> Result<()> {
        self.publish_until(message, Some(deadline::after(timeout)))
    }

    /// Publishes a message of `len` bytes written in place by `fill`: no
    /// intermediate copy.
    ///
    /// # Safety
    /// `fill` gets a `&mut [u8]` into shared memory: the slot this process
    /// has claimed. Every process that opens this topic must follow
    /// shmio's protocol (only shmio's `Topic` touches its mapping), or
    /// another process could touch the bytes while `fill` holds them.
    pub unsafe fn publish_with(&self, len: usize, fill: impl FnOnce(&mut [u8])) -> Result<()> {
        let len = self.message_len(len)?;
        let claim = self.wait_claim(None)?;
        self.fill_and_publish(claim, len, fill);
        Ok(())
    }

    /// Publishes `value` as JSON (the codec of mapping records).
    pub fn publish_record<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        self.publish(&crate::mapping::record::encode_payload(value)?)
    }

    /// Publishes `message`, awaiting room under [`Overflow::Block`]: the
    /// future of [`publish`](Self::publish), with its results and errors,
    /// in any executor (it waits as
    /// [`Channel::send_async`](crate::Channel::send_async) does). Under
    /// [`Overflow::Overwrite`] it is ready at its first poll.
    ///
    /// **Cancel safety:** a message is published whole in the poll that
    /// finds room, or not at all; a future dropped before it is ready
    /// publishes nothing and lets go of the pool's chunk it had reserved.
    pub async fn publish_async(&self, message: &[u8]) -> Result<()> {
        let len = self.message_len(message.len())?;
        let me = self.token()?;
        /// A chunk reserved for a claim that has not come yet, let go of
        /// if the future is dropped.
        struct Reserved<'a> {
            topic: &'a Topic,
            chunk: Option<u32>,
            me: u32,
        }
        impl Drop for Reserved<'_> {
            fn drop(&mut self) {
                self.topic.let_go(self.chunk.take(), self.me);
            }
        }
        let mut reserved = Reserved {
            topic: self,
            chunk: None,
            me,
        };
        let mut pause = Pause::new();
        poll_fn(|cx| {
            // The claim and the copy in one plain function (see
            // `Channel::poll_recv_into` for why).
            match self.poll_claim(cx, me, &mut pause, &mut reserved.chunk) {
                Poll::Ready(Ok(claim)) => {
                    self.fill_and_publish(claim, len, |slot| slot.copy_from_slice(message));
                    Poll::Ready(Ok(()))
                }
                Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// As [`publish_record`](Self::publish_record), awaiting room (see
    /// [`publish_async`](Self::publish_async); cancel safe).
    pub async fn publish_record_async<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        let payload = crate::mapping::record::encode_payload(value)?;
        self.publish_async(&payload).await
    }

    /// Subscribes: a [`Subscriber`] that gets every message published from
    /// now on, after the topic's history.
    pub fn subscribe(&self) -> Result<Subscriber> {
        let shared = Arc::clone(&self.shared);
        let participant = Participant::join(
            shared.ring.generations(),
            shared.map.object(),
            &shared.os_name,
            &shared.name,
        )?;
        let token = participant.token();
        let seat = participant.seat();
        let next = shared
            .ring
            .subscribe(seat, token, u64::from(shared.settings.history));
        Ok(Subscriber {
            shared,
            participant,
            next,
            scratch: Vec::new(),
            stuck: Cell::new((0, 0)),
        })
    }

    fn publish_until(&self, message: &[u8], deadline: Option<Instant>) -> Result<()> {
        let len = self.message_len(message.len())?;
        let claim = self.wait_claim(deadline)?;
        self.fill_and_publish(claim, len, |slot| slot.copy_from_slice(message));
        Ok(())
    }

    /// This handle's token, which signs its claims (its seat taken now if
    /// it has none yet); [`Error::Inherited`] in a forked child, whose copy
    /// of the handle is its parent's participant.
    #[inline]
    fn token(&self) -> Result<u32> {
        let participant = match self.participant.get() {
            Some(participant) => participant,
            None => {
                let shared = &self.shared;
                let joined = Participant::join(
                    shared.ring.generations(),
                    shared.map.object(),
                    &shared.os_name,
                    &shared.name,
                )?;
                // Another thread may have taken one first: then this one
                // is dropped, and its seat let go.
                let _ = self.participant.set(joined);
                self.participant.get().expect("set just now")
            }
        };
        if participant.is_here() {
            return Ok(participant.token());
        }
        Err(Error::Inherited {
            kind: "topic",
            name: self.shared.name.clone(),
        })
    }

    /// The length of a message as stored, or why it cannot be published.
    fn message_len(&self, len: usize) -> Result<u32> {
        match u32::try_from(len) {
            Ok(len) if self.shared.ring.fits(len) => Ok(len),
            _ => Err(Error::MessageTooLarge {
                len: len as u64,
                max: self.shared.settings.max_message_size,
            }),
        }
    }

    /// Whether message `seq` may be written now: under [`Overflow::Block`],
    /// whether every subscriber has read `seq - capacity`. The lowest
    /// cursor is looked at again only when `seq` would pass the one last
    /// seen, or a subscriber joined since.
    #[inline]
    fn gate(&self, seq: u64) -> std::result::Result<(), Blocked> {
        let ring = &self.shared.ring;
        if self.shared.settings.overflow == Overflow::Overwrite || seq < ring.capacity() {
            return Ok(());
        }
        let needs = seq - ring.capacity();
        let subscriptions = ring.subscriptions();
        if subscriptions == self.gate_subscriptions.load(Ordering::Relaxed)
            && self.gate_low.load(Ordering::Relaxed) > needs
        {
            return Ok(());
        }
        match self.remember_lowest(subscriptions, ring.lowest_cursor()) {
            Some((next, seat, token)) if next <= needs => {
                Err(Blocked::Behind { seat, token, needs })
            }
            _ => Ok(()),
        }
    }

    /// Keeps the lowest cursor just read (and the subscriptions count it
    /// was read after) for [`gate`](Self::gate), which looks again only
    /// when a claim would pass it or a subscriber joined; returns it.
    fn remember_lowest(
        &self,
        subscriptions: u64,
        lowest: Option<(u64, u32, u32)>,
    ) -> Option<(u64, u32, u32)> {
        self.gate_subscriptions
            .store(subscriptions, Ordering::Relaxed);
        let low = lowest.map_or(u64::MAX, |(next, _, _)| next);
        self.gate_low.store(low, Ordering::Relaxed);
        lowest
    }

    /// Claims the next message's slot, waiting (spin, then sleep) until
    /// `deadline`.
    #[inline]
    fn wait_claim(&self, deadline: Option<Instant>) -> Result<ring::Claim> {
        let me = self.token()?;
        let mut reserved = None;
        match self.claim_once(me, &mut reserved) {
            Ok(claim) => Ok(claim),
            Err(blocked) => {
                let claimed = self.wait_claim_slowly(me, blocked, deadline, &mut reserved);
                self.let_go(reserved, me);
                claimed
            }
        }
    }

    /// One try at claiming the next message's slot: with a pool, a chunk
    /// first (kept in `reserved` across tries until a claim takes it).
    #[inline(always)]
    fn claim_once(
        &self,
        me: u32,
        reserved: &mut Option<u32>,
    ) -> std::result::Result<ring::Claim, Blocked> {
        let ring = &self.shared.ring;
        if ring.is_pooled() && reserved.is_none() {
            *reserved = Some(self.reserve_chunk(me)?);
        }
        let mut claim = ring.claim(me, |seq| self.gate(seq))?;
        if let Some(chunk) = reserved.take() {
            ring.assign(&mut claim, chunk);
        }
        Ok(claim)
    }

    /// Reserves a chunk of the pool for the next message: one that holds
    /// no message anyone needs (every subscriber has read it, and it is
    /// older than the history), the warmest first.
    fn reserve_chunk(&self, me: u32) -> std::result::Result<u32, Blocked> {
        let ring = &self.shared.ring;
        for _ in 0..RESERVE_TRIES {
            // A subscriber that joins after these reads gets no message
            // below `dead_below`: it reads head once its cursor is
            // visible, after `subscriptions` moved, and starts no earlier
            // than head - history. So the chunk is kept only if
            // `subscriptions` did not move meanwhile.
            let subscriptions = ring.subscriptions();
            // Read for the gate too, which the claim then needs not read
            // again.
            let lowest = self.remember_lowest(subscriptions, ring.lowest_cursor());
            let history = u64::from(self.shared.settings.history);
            let dead_below = ring
                .head()
                .saturating_sub(history)
                .min(lowest.map_or(u64::MAX, |(next, _, _)| next));
            let Some(chunk) = ring.reserve(dead_below, me) else {
                return Err(match lowest {
                    Some((next, seat, token)) => Blocked::Behind {
                        seat,
                        token,
                        needs: next,
                    },
                    None => Blocked::Pool,
                });
            };
            if ring.subscriptions() == subscriptions {
                return Ok(chunk);
            }
            ring.unreserve(chunk, me);
        }
        Err(Blocked::Pool)
    }

    /// Lets go of a chunk reserved for a claim that did not come.
    fn let_go(&self, reserved: Option<u32>, me: u32) {
        if let Some(chunk) = reserved {
            self.shared.ring.unreserve(chunk, me);
        }
    }

    /// [`wait_claim`](Self::wait_claim) once the first claim was blocked.
    #[cold]
    fn wait_claim_slowly(
        &self,
        me: u32,
        first: Blocked,
        deadline: Option<Instant>,
        reserved: &mut Option<u32>,
    ) -> Result<ring::Claim> {
        let shared = &self.shared;
        let mut backoff = Backoff::new();
        let mut first = Some(first);
        loop {
            let blocked = match first.take() {
                Some(blocked) => blocked,
                None => match self.claim_once(me, reserved) {
                    Ok(claim) => return Ok(claim),
                    Err(blocked) => blocked,
                },
            };
            if let Some(deadline) = deadline {
                if Instant::now() >= deadline {
                    return Err(Error::TimedOut {
                        name: shared.name.clone(),
                    });
                }
            }
            if backoff.snooze() {
                continue;
            }
            if self.repair(blocked, me) {
                continue;
            }
            let nap = deadline.map_or(REPAIR_INTERVAL, |deadline| {
                deadline
                    .saturating_duration_since(Instant::now())
                    .min(REPAIR_INTERVAL)
            });
            match blocked {
                // A live publisher is still writing the slot: it is about
                // to publish, and rings no bell a publisher sleeps on.
                // A live publisher is about to publish, or (Pool) to
                // claim with the chunk it holds: no bell to sleep on.
                Blocked::Writing { .. } | Blocked::Pool => {
                    std::thread::sleep(nap.min(Duration::from_millis(1)))
                }
                Blocked::Behind { needs, .. } => {
                    let ring = &shared.ring;
                    let sleepers = ring.u32_at(ring::SPACE_SLEEPERS);
                    let bell = ring.u32_at(ring::SPACE_BELL);
                    sleepers.fetch_add(1, Ordering::SeqCst);
                    // Pairs with the subscriber's SeqCst cursor store and
                    // its look at the sleepers: either its move is seen
                    // below, or it sees this sleeper and rings.
                    fence(Ordering::SeqCst);
                    let seen = bell.load(Ordering::SeqCst);
                    let still = ring
                        .lowest_cursor()
                        .is_some_and(|(next, _, _)| next <= needs);
                    if still {
                        shared.space_bell.wait(bell, seen, Some(nap));
                    }
                    sleepers.fetch_sub(1, Ordering::SeqCst);
                    // Look again, whatever the cache says.
                    self.gate_subscriptions.store(u64::MAX, Ordering::Relaxed);
                }
            }
        }
    }

    /// One poll of a future waiting to claim the next message's slot: as
    /// [`wait_claim_slowly`](Self::wait_claim_slowly), yielding to the
    /// executor rather than the OS and sleeping through the process's
    /// waiter. A publisher still writing (or holding the chunk a claim
    /// needs) rings the data doorbell when it publishes: the future sleeps
    /// there then, where a thread naps a millisecond.
    fn poll_claim(
        &self,
        cx: &mut Context<'_>,
        me: u32,
        pause: &mut Pause,
        reserved: &mut Option<u32>,
    ) -> Poll<Result<ring::Claim>> {
        let shared = &self.shared;
        let ring = &shared.ring;
        loop {
            let blocked = match self.claim_once(me, reserved) {
                Ok(claim) => {
                    pause.wake_up();
                    return Poll::Ready(Ok(claim));
                }
                Err(blocked) => blocked,
            };
            match pause.step(cx) {
                Step::Look => continue,
                Step::Pending => return Poll::Pending,
                Step::Sleep => {}
            }
            if self.repair(blocked, me) {
                continue;
            }
            // Look again after the nap, whatever the cache says.
            self.gate_subscriptions.store(u64::MAX, Ordering::Relaxed);
            let nap = match blocked {
                Blocked::Writing { .. } | Blocked::Pool => {
                    let nap = Nap::new(
                        ring.u32_at(ring::DATA_BELL),
                        ring.u32_at(ring::DATA_SLEEPERS),
                        &shared.data_bell,
                        &shared.map,
                    );
                    // Either its publish is seen by this claim, or it
                    // sees this sleeper and rings.
                    match self.claim_once(me, reserved) {
                        Ok(claim) => {
                            drop(nap);
                            pause.wake_up();
                            return Poll::Ready(Ok(claim));
                        }
                        Err(_) => nap,
                    }
                }
                Blocked::Behind { needs, .. } => {
                    // As in `wait_claim_slowly`: either the subscriber's
                    // move is seen here, or it sees this sleeper and rings.
                    let nap = Nap::new(
                        ring.u32_at(ring::SPACE_BELL),
                        ring.u32_at(ring::SPACE_SLEEPERS),
                        &shared.space_bell,
                        &shared.map,
                    );
                    let still = ring
                        .lowest_cursor()
                        .is_some_and(|(next, _, _)| next <= needs);
                    if !still {
                        continue;
                    }
                    nap
                }
            };
            return match pause.sleep(nap, cx) {
                Ok(()) => Poll::Pending,
                Err(error) => Poll::Ready(Err(error)),
            };
        }
    }

    /// Undoes what a dead participant left in the way: a message it was
    /// writing (published as a tombstone) or its cursor (let go). Whether
    /// it changed anything.
    fn repair(&self, blocked: Blocked, me: u32) -> bool {
        let shared = &self.shared;
        match blocked {
            Blocked::Writing { seq, state, owner } => {
                !shared.is_alive(owner, me) && shared.ring.bury(seq, state)
            }
            Blocked::Behind { seat, token, .. } => {
                // A pool short of chunks may be held by the dead too.
                let freed = self.free_dead_reservations(me);
                if shared.is_alive(token, me) {
                    return freed;
                }
                self.gate_subscriptions.store(u64::MAX, Ordering::Relaxed);
                shared.ring.drop_subscriber(seat, token) || freed
            }
            Blocked::Pool => self.free_dead_reservations(me),
        }
    }

    /// Frees the pool's chunks that dead publishers had reserved.
    fn free_dead_reservations(&self, me: u32) -> bool {
        let shared = &self.shared;
        shared.ring.is_pooled()
            && shared
                .ring
                .free_the_dead_reservations(|token| !shared.is_alive(token, me))
    }

    /// Writes a claimed slot with `fill` and publishes it; a panic in
    /// `fill` publishes a tombstone, so the slot is never left claimed.
    #[inline]
    fn fill_and_publish(&self, claim: ring::Claim, len: u32, fill: impl FnOnce(&mut [u8])) {
        struct Tombstone<'a> {
            ring: &'a Ring,
            claim: Option<ring::Claim>,
        }
        impl Drop for Tombstone<'_> {
            fn drop(&mut self) {
                if let Some(claim) = self.claim.take() {
                    self.ring.publish(claim, TOMBSTONE);
                }
            }
        }
        let shared = &self.shared;
        let slot_ptr = shared.ring.claimed_payload(&claim);
        let mut guard = Tombstone {
            ring: &shared.ring,
            claim: Some(claim),
        };
        // SAFETY: the slot is claimed by this process, lies inside the
        // mapping, and holds at least `max_message_size >= len` bytes.
        let slot = unsafe { std::slice::from_raw_parts_mut(slot_ptr.as_ptr(), len as usize) };
        fill(slot);
        if let Some(claim) = guard.claim.take() {
            shared.ring.publish(claim, len);
            shared.ring_bell(ring::DATA_BELL, ring::DATA_SLEEPERS, &shared.data_bell);
        }
    }
}

impl Shared {
    /// Whether the participant `token` is alive (`own` is).
    fn is_alive(&self, token: u32, own: u32) -> bool {
        token == own
            || participants::is_alive(
                token,
                self.ring.generations(),
                self.map.object(),
                &self.os_name,
                &self.trust,
            )
    }

    /// Rings a doorbell if anyone sleeps on it: bumps its word, so a
    /// sleeper about to sleep sees the change, and wakes every sleeper.
    fn ring_bell(&self, bell_offset: u64, sleepers_offset: u64, bell: &sys::Waker) {
        let sleepers = self.ring.u32_at(sleepers_offset).load(Ordering::SeqCst);
        if sleepers == 0 {
            return;
        }
        let word: &AtomicU32 = self.ring.u32_at(bell_offset);
        word.fetch_add(1, Ordering::SeqCst);
        // As many as sleep: a semaphore (Windows) released more than that
        // would wake later sleepers for nothing.
        bell.wake(word, sleepers);
    }
}

impl std::fmt::Debug for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topic")
            .field("name", &self.shared.name)
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}

/// One subscription to a [`Topic`]: gets every message published after it
/// was made (after the topic's history), in order, at its own pace.
///
/// Receiving takes `&mut self`: a subscription has one reader. For several
/// readers that each get every message, subscribe several times; for a
/// queue whose messages go to one reader each, see
/// [`Channel`](crate::Channel). Dropping it lets go of its cursor, so that
/// it holds no publisher back.
pub struct Subscriber {
    shared: Arc<Shared>,
    participant: Participant,
    /// The next message to read (its cursor's value, kept here too).
    next: u64,
    /// Where a message is copied before it is handed over in place under
    /// [`Overflow::Overwrite`].
    scratch: Vec<u8>,
    /// The writing state the last polls saw, and how many polls in a row.
    stuck: Cell<(u64, u32)>,
}

impl Subscriber {
    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// How many messages are waiting for this subscriber (at most the
    /// topic's capacity).
    pub fn len(&self) -> u64 {
        self.shared.ring.ahead_of(self.next)
    }

    /// Whether no message is waiting for this subscriber.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Receives the next message, waiting until one is published.
    /// [`Error::Lagged`] if messages were overwritten before this
    /// subscriber read them ([`Overflow::Overwrite`]); the next call goes
    /// on from the oldest one held.
    pub fn recv(&mut self) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.recv_into(&mut buf)?;
        Ok(buf)
    }

    /// As [`recv`](Self::recv), into `buf` (replacing what it held).
    pub fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        self.recv_until(Wait::Forever, buf)
    }

    /// As [`recv`](Self::recv) if a message is waiting: [`Error::Empty`] if not.
    pub fn try_recv(&mut self) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.try_recv_into(&mut buf)?;
        Ok(buf)
    }

    /// As [`recv_into`](Self::recv_into) if a message is waiting:
    /// [`Error::Empty`] if not.
    pub fn try_recv_into(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        self.recv_until(Wait::Now, buf)
    }

    /// As [`recv`](Self::recv), waiting at most `timeout`:
    /// [`Error::TimedOut`] if nothing came.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.recv_until(Wait::after(timeout), &mut buf)?;
        Ok(buf)
    }

    /// As [`recv_into`](Self::recv_into), waiting at most `timeout`.
    pub fn recv_into_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<()> {
        self.recv_until(Wait::after(timeout), buf)
    }

    /// Receives a message published with
    /// [`publish_record`](Topic::publish_record), as a `T`. A message that
    /// does not decode is [`Error::UndecodableMessage`] with its bytes.
    pub fn recv_record<T: DeserializeOwned>(&mut self) -> Result<T> {
        let message = self.recv()?;
        self.decode(message)
    }

    /// As [`recv_record`](Self::recv_record), waiting at most `timeout`.
    pub fn recv_record_timeout<T: DeserializeOwned>(&mut self, timeout: Duration) -> Result<T> {
        let message = self.recv_timeout(timeout)?;
        self.decode(message)
    }

    /// Receives the next message and hands it to `read`: in place under
    /// [`Overflow::Block`] (no publisher writes the slot until this
    /// subscriber has moved past it), from a copy under
    /// [`Overflow::Overwrite`] (a publisher may overwrite the slot at any
    /// time; the copy is checked whole before `read` sees it).
    ///
    /// # Safety
    /// Under [`Overflow::Block`] `read` gets a `&[u8]` into shared memory:
    /// every process that opens this topic must follow shmio's protocol
    /// (only shmio's `Topic` touches its mapping), or another process could
    /// write the bytes while `read` holds them.
    pub unsafe fn recv_with<R>(&mut self, read: impl FnOnce(&[u8]) -> R) -> Result<R> {
        let mut read = Some(read);
        let mut result = None;
        if self.shared.settings.overflow == Overflow::Block {
            self.next_message(Wait::Forever, |slot| {
                if let Some(read) = read.take() {
                    result = Some(read(slot));
                }
                true
            })?;
        } else {
            let mut scratch = std::mem::take(&mut self.scratch);
            let received = self.recv_until(Wait::Forever, &mut scratch);
            if received.is_ok() {
                if let Some(read) = read.take() {
                    result = Some(read(&scratch));
                }
            }
            self.scratch = scratch;
            received?;
        }
        result.ok_or_else(|| Error::Corrupt {
            offset: 0,
            reason: "a received message was not read".to_owned(),
        })
    }

    /// Waits for the next message and holds it in place, without moving
    /// past it: the subscriber stays at it (and, under
    /// [`Overflow::Block`], no publisher overwrites it) until
    /// [`release`](Self::release). For bindings that lend a message out
    /// for longer than a call, such as Python's buffer protocol; Rust code
    /// reads in place with [`recv_with`](Self::recv_with).
    /// [`Error::Unsupported`] under [`Overflow::Overwrite`], where a
    /// publisher may overwrite any slot at any time.
    pub fn hold(&mut self) -> Result<Held> {
        self.hold_until(Wait::Forever)
    }

    /// As [`hold`](Self::hold), waiting at most `timeout`.
    pub fn hold_timeout(&mut self, timeout: Duration) -> Result<Held> {
        self.hold_until(Wait::after(timeout))
    }

    /// Moves past a message [`hold`](Self::hold) gave. A `held` that is
    /// not this subscriber's current message changes nothing.
    pub fn release(&mut self, held: Held) {
        if held.seq == self.next {
            self.move_on(held.seq + 1);
        }
    }

    fn hold_until(&mut self, wait: Wait) -> Result<Held> {
        if self.shared.settings.overflow != Overflow::Block {
            return Err(Error::Unsupported {
                what: "holding a topic's message in place needs Overflow::Block",
            });
        }
        let mut found = None;
        self.look_for_message(wait, |seq, slot| {
            found = Some(Held {
                seq,
                ptr: NonNull::from(slot).cast::<u8>(),
                len: slot.len(),
            });
        })?;
        found.ok_or_else(|| Error::Corrupt {
            offset: 0,
            reason: "a held message was not found".to_owned(),
        })
    }

    /// Receives the next message, awaiting one: the future of
    /// [`recv`](Self::recv), with its results and errors
    /// ([`Error::Lagged`] included), in any executor. It waits as
    /// [`Channel::recv_async`](crate::Channel::recv_async) does: spins,
    /// yields to its executor, then sleeps through the process's waiter
    /// thread at no CPU cost until a publisher rings.
    ///
    /// **Cancel safety:** dropping the future never loses a message: the
    /// subscriber moves past a message in the poll that returns it, so one
    /// dropped before it is ready leaves the subscriber where it was.
    ///
    /// ```
    /// use shmio::Topic;
    ///
    /// # let name = format!("shmio-doc-topic-async-{}", std::process::id());
    /// let topic = Topic::create_or_open(&name)?;
    /// let mut subscriber = topic.subscribe()?;
    /// topic.publish(b"frame")?; // e.g. from another process
    /// # futures_lite::future::block_on(async {
    /// assert_eq!(subscriber.recv_async().await?, b"frame");
    /// # Ok::<(), shmio::Error>(()) })?;
    /// # Ok::<(), shmio::Error>(())
    /// ```
    pub async fn recv_async(&mut self) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.recv_into_async(&mut buf).await?;
        Ok(buf)
    }

    /// As [`recv_async`](Self::recv_async), into `buf` (replacing its
    /// contents; emptied if the receive fails).
    pub async fn recv_into_async(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        let mut pause = Pause::new();
        poll_fn(|cx| self.poll_recv_into(cx, &mut pause, buf)).await
    }

    /// One poll of a future receiving into `buf`: the next message copied
    /// and moved past, or `Pending`; all of it in this plain function (see
    /// `Channel::poll_recv_into` for why).
    fn poll_recv_into(
        &mut self,
        cx: &mut Context<'_>,
        pause: &mut Pause,
        buf: &mut Vec<u8>,
    ) -> Poll<Result<()>> {
        if let Ready::Taken = self.take_ready(buf) {
            pause.wake_up();
            return Poll::Ready(Ok(()));
        }
        if let Err(error) = self.token() {
            return Poll::Ready(Err(error));
        }
        let check_whole = self.shared.settings.overflow == Overflow::Overwrite;
        let mut at = None;
        let found = {
            let mut take = |seq: u64, slot: &[u8]| {
                at = Some(seq);
                buf.clear();
                buf.extend_from_slice(slot);
                !check_whole
            };
            self.poll_find(cx, pause, &mut take)
        };
        match found {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(error)) => {
                // What a copy overwritten meanwhile left there is no message.
                buf.clear();
                Poll::Ready(Err(error))
            }
            Poll::Ready(Ok(())) => {
                if let Some(seq) = at {
                    self.move_on(seq + 1);
                }
                Poll::Ready(Ok(()))
            }
        }
    }

    /// This subscriber's messages as a [`Stream`](futures_core::Stream)
    /// (feature `stream`): each as [`recv_async`](Self::recv_async) gives
    /// it ([`Error::Lagged`] an item like any other, the stream going on
    /// after it); a topic's stream does not end. Cancel safe as
    /// `recv_async` is.
    #[cfg(feature = "stream")]
    pub fn messages(&mut self) -> Messages<'_> {
        Messages {
            subscriber: self,
            pause: Pause::new(),
        }
    }

    /// As [`recv_record`](Self::recv_record), awaiting a message (see
    /// [`recv_async`](Self::recv_async); cancel safe).
    pub async fn recv_record_async<T: DeserializeOwned>(&mut self) -> Result<T> {
        let message = self.recv_async().await?;
        self.decode(message)
    }

    fn decode<T: DeserializeOwned>(&self, message: Vec<u8>) -> Result<T> {
        serde_json::from_slice(&message).map_err(|source| Error::UndecodableMessage {
            channel: self.shared.name.clone(),
            source: source.into(),
            raw: message,
        })
    }

    /// Receives into `buf`, waiting as `wait` says.
    #[inline]
    fn recv_until(&mut self, wait: Wait, buf: &mut Vec<u8>) -> Result<()> {
        match self.take_ready(buf) {
            Ready::Taken => Ok(()),
            Ready::Empty if matches!(wait, Wait::Now) => Err(Error::Empty),
            _ => self.recv_slowly(wait, buf),
        }
    }

    /// The receive a busy-poller makes most: the next message published
    /// and whole, copied out and moved past; or nothing published and no
    /// one writing it. Anything else (a tombstone, a writer to look at,
    /// a lap, a message overwritten while copied, a forked child's
    /// handle) is left to [`recv_slowly`](Self::recv_slowly), which
    /// looks again.
    #[inline(always)]
    fn take_ready(&mut self, buf: &mut Vec<u8>) -> Ready {
        if !self.participant.is_here() {
            return Ready::Other;
        }
        let ring = &self.shared.ring;
        match ring.look(self.next) {
            Found::Message { seq, len, state } if len != TOMBSTONE && ring.fits(len) => {
                let Some(payload) = ring.payload(seq) else {
                    return Ready::Other;
                };
                // SAFETY: as in `find`: the slot (or its chunk) lies inside
                // the mapping and holds `len <= max_message_size` bytes;
                // under Block no publisher writes it until this subscriber
                // moves past it, under Overwrite `still` throws the copy
                // away if one did.
                let slot = unsafe { std::slice::from_raw_parts(payload.as_ptr(), len as usize) };
                buf.clear();
                buf.extend_from_slice(slot);
                if self.shared.settings.overflow == Overflow::Overwrite && !ring.still(seq, state) {
                    buf.clear();
                    return Ready::Other;
                }
                self.move_on(seq + 1);
                Ready::Taken
            }
            Found::Nothing { state } if Ring::writer(self.next, state).is_none() => Ready::Empty,
            _ => Ready::Other,
        }
    }

    /// [`recv_until`](Self::recv_until) past its fast path.
    #[cold]
    fn recv_slowly(&mut self, wait: Wait, buf: &mut Vec<u8>) -> Result<()> {
        let check_whole = self.shared.settings.overflow == Overflow::Overwrite;
        let received = self.next_message(wait, |slot| {
            buf.clear();
            buf.extend_from_slice(slot);
            !check_whole
        });
        if received.is_err() {
            // What a copy overwritten meanwhile left there is no message.
            buf.clear();
        }
        received
    }

    /// Waits for the next message and hands its bytes to `take`, which
    /// says whether what it took needs no second look; under
    /// [`Overflow::Overwrite`] the slot is checked after `take` (a message
    /// overwritten meanwhile is reported missed, and what `take` took is
    /// to be thrown away by the caller, who gets the error).
    fn next_message(&mut self, wait: Wait, mut take: impl FnMut(&[u8]) -> bool) -> Result<()> {
        let mut at = None;
        self.find(wait, |seq, slot| {
            at = Some(seq);
            take(slot)
        })?;
        if let Some(seq) = at {
            self.move_on(seq + 1);
        }
        Ok(())
    }

    /// As [`next_message`](Self::next_message), without moving past the
    /// message `take` saw (under [`Overflow::Block`]: it stays in place).
    fn look_for_message(&mut self, wait: Wait, mut take: impl FnMut(u64, &[u8])) -> Result<()> {
        self.find(wait, |seq, slot| {
            take(seq, slot);
            true
        })
    }

    /// Waits for the next message and hands its number and bytes to
    /// `take`, which says whether what it took needs no second look. The
    /// caller moves past it.
    fn find(&mut self, wait: Wait, mut take: impl FnMut(u64, &[u8]) -> bool) -> Result<()> {
        self.token()?;
        let mut backoff = Backoff::new();
        loop {
            match self.look_once(&mut take)? {
                Look::Taken => return Ok(()),
                Look::Again => continue,
                Look::Nothing(state) => self.wait(&mut backoff, wait, state)?,
            }
        }
    }

    /// One look of [`find`](Self::find): at the next message, handed to
    /// `take`; or at nothing published there yet, with the slot's state.
    fn look_once(&mut self, take: &mut impl FnMut(u64, &[u8]) -> bool) -> Result<Look> {
        let ring = &self.shared.ring;
        match ring.look(self.next) {
            Found::Message { seq, len, state } => {
                if len == TOMBSTONE {
                    self.move_on(seq + 1);
                    return Ok(Look::Again);
                }
                if !ring.fits(len) {
                    return Err(Error::Corrupt {
                        offset: 0,
                        reason: format!(
                            "{:?}: a message claims {len} bytes; the topic holds at most {}",
                            self.shared.name, self.shared.settings.max_message_size
                        ),
                    });
                }
                let payload = ring.payload(seq).ok_or_else(|| Error::Corrupt {
                    offset: 0,
                    reason: format!(
                        "{:?}: message {seq} names a chunk outside the topic's pool",
                        self.shared.name
                    ),
                })?;
                // SAFETY: the slot (or its chunk) lies inside the
                // mapping and holds `len <= max_message_size` bytes
                // (checked above). Under Block no publisher writes it
                // until this subscriber moves past it (a chunk is
                // reused only once every subscriber has moved past
                // its message); under Overwrite one may, and `still`
                // below throws the copy away then.
                let slot = unsafe { std::slice::from_raw_parts(payload.as_ptr(), len as usize) };
                let settled = take(seq, slot);
                if !settled && !ring.still(seq, state) {
                    // Overwritten while it was read: look again, which
                    // says how many were missed.
                    return Ok(Look::Again);
                }
                Ok(Look::Taken)
            }
            Found::Lapped { oldest } => {
                let missed = oldest - self.next;
                self.move_on(oldest);
                Err(Error::Lagged {
                    name: self.shared.name.clone(),
                    missed,
                })
            }
            Found::Nothing { state } => Ok(Look::Nothing(state)),
        }
    }

    /// One poll of a future waiting for the next message: as
    /// [`find`](Self::find), yielding to the executor rather than the OS
    /// and sleeping through the process's waiter (`waiter.rs`).
    fn poll_find(
        &mut self,
        cx: &mut Context<'_>,
        pause: &mut Pause,
        take: &mut impl FnMut(u64, &[u8]) -> bool,
    ) -> Poll<Result<()>> {
        loop {
            let state = match self.look_once(take) {
                Err(error) => return Poll::Ready(Err(error)),
                Ok(Look::Taken) => {
                    pause.wake_up();
                    return Poll::Ready(Ok(()));
                }
                Ok(Look::Again) => continue,
                Ok(Look::Nothing(state)) => state,
            };
            match pause.step(cx) {
                Step::Look => continue,
                Step::Pending => return Poll::Pending,
                Step::Sleep => {}
            }
            let shared = &self.shared;
            if let Some(writer) = Ring::writer(self.next, state) {
                if !shared.is_alive(writer, self.participant.token())
                    && shared.ring.bury(self.next, state)
                {
                    continue;
                }
            }
            let ring = &shared.ring;
            // As in `wait`: either the message is seen below, or its
            // publisher sees this sleeper and rings.
            let nap = Nap::new(
                ring.u32_at(ring::DATA_BELL),
                ring.u32_at(ring::DATA_SLEEPERS),
                &shared.data_bell,
                &shared.map,
            );
            if !matches!(ring.look(self.next), Found::Nothing { .. }) {
                continue;
            }
            return match pause.sleep(nap, cx) {
                Ok(()) => Poll::Pending,
                Err(error) => Poll::Ready(Err(error)),
            };
        }
    }

    /// Moves this subscriber's cursor to `next`, and wakes a publisher
    /// that waits for it.
    fn move_on(&mut self, next: u64) {
        self.next = next;
        let shared = &self.shared;
        let gating = shared.settings.overflow == Overflow::Block;
        shared.ring.advance(self.participant.seat(), next, gating);
        if gating {
            shared.ring_bell(ring::SPACE_BELL, ring::SPACE_SLEEPERS, &shared.space_bell);
        }
    }

    /// One step of waiting for the next message: spins first, then buries
    /// a dead publisher's message or sleeps on the data doorbell. A poll
    /// ([`Wait::Now`]) is [`Error::Empty`] at once, reading no clock.
    fn wait(&self, backoff: &mut Backoff, wait: Wait, state: u64) -> Result<()> {
        let shared = &self.shared;
        let writer = Ring::writer(self.next, state);
        let deadline = match wait {
            Wait::Now => {
                // A poller buries a dead publisher's message only once it
                // has seen the same one being written many polls in a row,
                // so that polling asks the OS nothing while it is merely busy.
                if let Some(writer) = writer {
                    let (seen, polls) = self.stuck.get();
                    let polls = if seen == state { polls + 1 } else { 0 };
                    self.stuck.set((state, polls));
                    if polls >= STUCK_POLLS
                        && !shared.is_alive(writer, self.participant.token())
                        && shared.ring.bury(self.next, state)
                    {
                        return Ok(());
                    }
                }
                return Err(Error::Empty);
            }
            Wait::Until(deadline) => Some(deadline),
            Wait::Forever => None,
        };
        if backoff.snooze() {
            if backoff.is_spinning() || deadline.is_none_or(|deadline| Instant::now() < deadline) {
                return Ok(());
            }
            return Err(Error::TimedOut {
                name: shared.name.clone(),
            });
        }
        let now = Instant::now();
        if deadline.is_some_and(|deadline| now >= deadline) {
            return Err(Error::TimedOut {
                name: shared.name.clone(),
            });
        }
        if let Some(writer) = writer {
            if !shared.is_alive(writer, self.participant.token())
                && shared.ring.bury(self.next, state)
            {
                return Ok(());
            }
        }
        let ring = &shared.ring;
        let sleepers = ring.u32_at(ring::DATA_SLEEPERS);
        let bell = ring.u32_at(ring::DATA_BELL);
        sleepers.fetch_add(1, Ordering::SeqCst);
        // Pairs with the SeqCst publish and the publisher's look at the
        // sleepers: either the message is seen below, or the publisher
        // sees this sleeper and rings.
        fence(Ordering::SeqCst);
        let seen = bell.load(Ordering::SeqCst);
        if matches!(ring.look(self.next), Found::Nothing { .. }) {
            let nap = deadline.map_or(REPAIR_INTERVAL, |deadline| {
                deadline.saturating_duration_since(now).min(REPAIR_INTERVAL)
            });
            shared.data_bell.wait(bell, seen, Some(nap));
        }
        sleepers.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }

    fn token(&self) -> Result<u32> {
        if self.participant.is_here() {
            return Ok(self.participant.token());
        }
        Err(Error::Inherited {
            kind: "topic",
            name: self.shared.name.clone(),
        })
    }
}

/// A subscriber's messages as a `Stream`: see [`Subscriber::messages`].
#[cfg(feature = "stream")]
pub struct Messages<'a> {
    subscriber: &'a mut Subscriber,
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
            .subscriber
            .poll_recv_into(cx, &mut this.pause, &mut message)
        {
            Poll::Pending => Poll::Pending,
            Poll::Ready(outcome) => {
                this.pause = Pause::new();
                Poll::Ready(Some(outcome.map(|()| message)))
            }
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        if self.participant.is_here() {
            self.shared
                .ring
                .unsubscribe(self.participant.seat(), self.participant.token());
            if self.shared.settings.overflow == Overflow::Block {
                let shared = &self.shared;
                shared.ring_bell(ring::SPACE_BELL, ring::SPACE_SLEEPERS, &shared.space_bell);
            }
        }
    }
}

/// A message a [`Subscriber`] holds in place ([`Subscriber::hold`]):
/// where its bytes are in the topic's mapping. They stay there, unchanged,
/// until the subscriber [releases](Subscriber::release) it, as long as the
/// subscriber (which keeps the mapping) lives.
#[derive(Debug)]
pub struct Held {
    seq: u64,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a Held is an address and a length; reading through it is the
// caller's `unsafe`, under the conditions `as_ptr` states.
unsafe impl Send for Held {}

impl Held {
    /// The message's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where the message's first byte is. Reading `len` bytes from it is
    /// sound while the subscriber that holds it lives and has not released
    /// it, and every process on the topic follows shmio's protocol.
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("topic", &self.shared.name)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}
