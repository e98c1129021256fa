//! The topic's ring: one ring of messages in shared memory that every
//! subscriber reads on its own, at its own cursor. This is the only place
//! the topic touches raw memory.
//!
//! # Layout
//!
//! [`TopicHeader`], then `capacity` slots of `stride` bytes:
//!
//! | offset | field | who changes it |
//! |---|---|---|
//! | 0 | `header: Header` | the creator, once |
//! | 16 | `capacity: u32`, slots | the creator, once |
//! | 20 | `max_message_size: u32` | the creator, once |
//! | 24 | `stride: u32`, bytes per slot | the creator, once |
//! | 28 | `history: u32`, messages a new subscriber gets first | the creator, once |
//! | 32 | `overflow: u32`, 0 overwrite, 1 block | the creator, once |
//! | 36 | `chunks: u32`, chunks in the pool (0: payloads in the slots) | the creator, once |
//! | 128 | `head: u64`, the next sequence number to publish | publishers (CAS) |
//! | 256 | `subscriptions: u64`, bumped by each new subscriber | subscribers |
//! | 264 | `subscribers_high: u32`, one past the highest seat a subscriber took | subscribers |
//! | 384 | `data_bell: u32`, `data_sleepers: u32` | publishers ring, subscribers sleep |
//! | 512 | `space_bell: u32`, `space_sleepers: u32` | subscribers ring, publishers sleep (block) |
//! | 640 | `generations: [u32; 1024]`, one per participant seat | a participant taking the seat |
//! | 4736 | `cursors: [Cursor; 1024]`, one per seat, 128 bytes each: `next: u64`, the next sequence number its subscriber reads, then `token: u32`, the subscriber's participant token (0: none) | the subscriber on that seat |
//! | 135808 | the slots, `stride` bytes each | |
//!
//! A slot: [`SlotHeader`], then the payload:
//!
//! | offset | field | |
//! |---|---|---|
//! | 0 | `state: u64` | the turn in the high 32 bits, the writer's token in the low 32 |
//! | 8 | `len: u32` | the message's length ([`TOMBSTONE`]: no message) |
//! | 12 | `chunk: u32` | with a pool, the chunk that holds the payload |
//! | 16 | the payload, `max_message_size` bytes (none with a pool) | |
//!
//! # The algorithm
//!
//! Sequence numbers count up forever from 0; message `s` is in slot
//! `s % capacity`. A slot's turn says which message it holds, in
//! half-steps: `2s` while the publisher of `s` writes it, `2s + 1` once `s`
//! is published (turns wrap at 2^32 and are compared by signed distance).
//! A new ring's slot `i` says "`i - capacity` published, a tombstone", so
//! every slot is free for its first message by the same rule as later.
//!
//! A publisher claims message `s = head` by a compare-and-swap of its slot
//! from "`s - capacity` published" to "`s` being written, by my token",
//! writes, publishes with turn `2s + 1`, and only then moves `head` on, so
//! that from claim to publish it touches the slot's line alone (anyone who
//! finds the slot at `head` claimed moves `head` on, so a publisher that
//! dies there blocks no one). So a slot that stays in a writing turn
//! names its publisher: a reader or publisher that finds it so, and its
//! publisher dead, publishes it as a tombstone, which readers skip.
//!
//! Readers never write a slot. Each reads at its own cursor:
//!
//! - turn `2n + 1`: message `n`, read and move on;
//! - an older turn, or `2n`: not yet published, wait;
//! - a newer turn: the slot went round again while this reader was behind
//!   ([`Overflow::Overwrite`]): it missed messages, and goes on from the
//!   oldest the ring still holds.
//!
//! Under [`Overflow::Overwrite`] a reader copies the message out and checks
//! the slot's state again after the copy, so a message overwritten while
//! it was read is reported missed, never delivered torn. Under
//! [`Overflow::Block`] a publisher claims message `s` only once every live
//! subscriber's cursor is past `s - capacity` (the publisher caches the
//! lowest cursor, and looks again when it would pass it or a subscriber
//! joined), so a reader's slot is never overwritten under it and can be
//! read in place; a subscriber that died is found by its seat and its
//! cursor let go.

use std::mem::{offset_of, size_of};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::error::{Error, Result};
use crate::object::Header;
use crate::participants::SEATS;
pub(crate) use crate::pool::POOL_FROM;
use crate::pool::{Pool, NO_CHUNK};
use crate::slots::{distance, join, split, LINE_PAIR, SLOT_CHUNK, SLOT_LEN, SLOT_STATE};
pub(crate) use crate::slots::{stride_for, MAX_CAPACITY, TOMBSTONE};
use crate::words::Words;

/// What a topic does with a subscriber that falls behind by more than it
/// holds, chosen at creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Overflow {
    /// A publisher never waits: the oldest message is overwritten, and a
    /// subscriber that had not read it is told how many it missed
    /// ([`Error::Lagged`](crate::Error::Lagged)).
    #[default]
    Overwrite,
    /// A publisher waits (within its timeout) until every live subscriber
    /// has read the message it would overwrite. A dead subscriber never
    /// holds it back.
    Block,
}

impl Overflow {
    pub(crate) fn word(self) -> u32 {
        match self {
            Overflow::Overwrite => 0,
            Overflow::Block => 1,
        }
    }

    pub(crate) fn from_word(word: u32) -> Option<Overflow> {
        match word {
            0 => Some(Overflow::Overwrite),
            1 => Some(Overflow::Block),
            _ => None,
        }
    }
}

/// The topic's header (see the module docs).
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub(crate) struct TopicHeader {
    header: Header,
    capacity: u32,
    max_message_size: u32,
    stride: u32,
    history: u32,
    overflow: u32,
    chunks: u32,
    _pad_to_head: [u8; 88],
    head: u64,
    _pad_to_subscriptions: [u8; 120],
    subscriptions: u64,
    subscribers_high: u32,
    _pad_to_data_bell: [u8; 116],
    data_bell: u32,
    data_sleepers: u32,
    _pad_to_space_bell: [u8; 120],
    space_bell: u32,
    space_sleepers: u32,
    _pad_to_generations: [u8; 120],
    generations: [u32; SEATS as usize],
    cursors: [Cursor; SEATS as usize],
}

/// A subscriber's place in the topic (see the module docs).
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub(crate) struct Cursor {
    next: u64,
    token: u32,
    _spare: [u8; 116],
}

pub(crate) const CAPACITY: u64 = offset_of!(TopicHeader, capacity) as u64;
pub(crate) const MAX_MESSAGE: u64 = offset_of!(TopicHeader, max_message_size) as u64;
pub(crate) const STRIDE: u64 = offset_of!(TopicHeader, stride) as u64;
pub(crate) const HISTORY: u64 = offset_of!(TopicHeader, history) as u64;
pub(crate) const OVERFLOW: u64 = offset_of!(TopicHeader, overflow) as u64;
pub(crate) const CHUNKS: u64 = offset_of!(TopicHeader, chunks) as u64;
const HEAD: u64 = offset_of!(TopicHeader, head) as u64;
const SUBSCRIPTIONS: u64 = offset_of!(TopicHeader, subscriptions) as u64;
const SUBSCRIBERS_HIGH: u64 = offset_of!(TopicHeader, subscribers_high) as u64;
pub(crate) const DATA_BELL: u64 = offset_of!(TopicHeader, data_bell) as u64;
pub(crate) const DATA_SLEEPERS: u64 = offset_of!(TopicHeader, data_sleepers) as u64;
pub(crate) const SPACE_BELL: u64 = offset_of!(TopicHeader, space_bell) as u64;
pub(crate) const SPACE_SLEEPERS: u64 = offset_of!(TopicHeader, space_sleepers) as u64;
const GENERATIONS: u64 = offset_of!(TopicHeader, generations) as u64;
const CURSORS: u64 = offset_of!(TopicHeader, cursors) as u64;
const CURSOR: u64 = size_of::<Cursor>() as u64;
const CURSOR_NEXT: u64 = offset_of!(Cursor, next) as u64;
const CURSOR_TOKEN: u64 = offset_of!(Cursor, token) as u64;
/// Where the slots start.
pub(crate) const SLOTS: u64 = size_of::<TopicHeader>() as u64;

// The layout is the documented one (the tables are checked by a test).
const _: () = assert!(SLOTS == 135_808 && CURSORS == 4736 && GENERATIONS == 640);
const _: () = assert!(CURSOR == LINE_PAIR);
const _: () = assert!(
    HEAD.is_multiple_of(LINE_PAIR)
        && SUBSCRIPTIONS.is_multiple_of(LINE_PAIR)
        && DATA_BELL.is_multiple_of(LINE_PAIR)
        && SPACE_BELL.is_multiple_of(LINE_PAIR)
        && CURSORS.is_multiple_of(LINE_PAIR)
        && SLOTS.is_multiple_of(LINE_PAIR)
);

/// The turn of a slot while message `s` is written.
fn writing(s: u64) -> u32 {
    (s as u32).wrapping_mul(2)
}

/// The turn of a slot once message `s` is published.
fn published(s: u64) -> u32 {
    writing(s).wrapping_add(1)
}

/// A slot claimed for message `seq` by this process.
#[derive(Debug)]
pub(crate) struct Claim {
    pub(crate) seq: u64,
    /// Where the slot starts.
    slot: u64,
    /// With a pool, the chunk the message is written in.
    chunk: u32,
}

/// Why a publisher could not claim now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Blocked {
    /// The slot's previous message is still being written by `owner`
    /// (`state` as seen): wait, or publish it as a tombstone if `owner`
    /// is dead.
    Writing { seq: u64, state: u64, owner: u32 },
    /// [`Overflow::Block`]: the subscriber `token` has not read message
    /// `needs` yet.
    Behind { seat: u32, token: u32, needs: u64 },
    /// Every chunk of the pool is reserved by a publisher (and no
    /// subscriber holds any back): a live one is about to claim, a dead
    /// one's is freed by the repair.
    Pool,
}

/// What a reader found at its cursor.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// Message `seq`, `len` bytes (or a tombstone, [`TOMBSTONE`]).
    Message { seq: u64, len: u32, state: u64 },
    /// Nothing published yet at the cursor; `state` as seen.
    Nothing { state: u64 },
    /// The cursor's message was overwritten: the oldest held is `oldest`.
    Lapped { oldest: u64 },
}

/// A topic's geometry: what its creator chose, and where its parts lie.
///
/// A topic of large messages under [`Overflow::Block`] keeps its payloads
/// in a pool of `capacity + 1` chunks rather than in its slots: a slot
/// names its message's chunk. A publisher takes the chunk of the newest
/// message no one needs any more (every subscriber has read it, and it is
/// older than the history), which is the chunk it wrote last when the
/// subscribers keep up: a stream of large messages stays in one warm
/// chunk however many slots the topic has, where a ring of payloads walks
/// through all of them, out of the caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) capacity: u32,
    pub(crate) max_message_size: u32,
    /// Chunks in the pool; 0: payloads in the slots.
    pub(crate) chunks: u32,
}

impl Geometry {
    /// A new topic's geometry.
    pub(crate) fn new(capacity: u32, max_message_size: u32, overflow: Overflow) -> Geometry {
        let pooled = overflow == Overflow::Block && max_message_size >= POOL_FROM;
        Geometry {
            capacity,
            max_message_size,
            chunks: if pooled {
                capacity.saturating_add(1)
            } else {
                0
            },
        }
    }

    /// Bytes per slot.
    pub(crate) fn slot_stride(&self) -> u64 {
        if self.chunks > 0 {
            stride_for(0)
        } else {
            stride_for(self.max_message_size)
        }
    }

    /// The pool, after the slots (empty without one).
    fn pool(&self) -> Option<Pool> {
        let stride = self.slot_stride();
        Pool::after_slots(
            SLOTS,
            self.capacity,
            stride,
            self.chunks,
            self.max_message_size,
        )
    }

    /// The bytes the topic takes.
    pub(crate) fn size(&self) -> Option<u64> {
        self.pool()?.end()
    }
}

/// The ring over a mapped topic.
pub(crate) struct Ring {
    words: Words,
    capacity: u64,
    /// `capacity - 1` when the capacity is a power of two (a slot's index
    /// is then a mask, not a division), else 0.
    mask: u64,
    stride: u64,
    max_message_size: u32,
    /// The payloads' pool (empty: payloads in the slots).
    pool: Pool,
}

impl Ring {
    /// The ring over `len` bytes at `base`, checked against the geometry.
    ///
    /// # Safety
    /// `base..base + len` is a mapped, writable, page-aligned region that
    /// stays mapped while the ring is used.
    pub(crate) unsafe fn new(base: NonNull<u8>, len: u64, geometry: Geometry) -> Result<Ring> {
        let Geometry {
            capacity,
            max_message_size,
            chunks,
        } = geometry;
        let pool = geometry.pool();
        let needed = pool.and_then(|pool| pool.end());
        let chunks_ok = chunks == 0 || (max_message_size >= POOL_FROM && chunks > capacity);
        if capacity == 0
            || capacity > MAX_CAPACITY
            || !chunks_ok
            || needed.is_none_or(|needed| needed > len)
        {
            return Err(Error::Corrupt {
                offset: CAPACITY,
                reason: format!(
                    "a topic of {capacity} slots of {max_message_size} bytes ({chunks} chunks) does not fit in {len} bytes"
                ),
            });
        }
        Ok(Ring {
            // SAFETY: the caller's contract is `Words::new`'s, and every
            // offset the ring asks for lies inside (checked above).
            words: unsafe { Words::new(base) },
            capacity: u64::from(capacity),
            mask: if capacity.is_power_of_two() {
                u64::from(capacity) - 1
            } else {
                0
            },
            stride: geometry.slot_stride(),
            max_message_size,
            pool: pool.expect("checked above"),
        })
    }

    /// A new ring's state of slot `index`: "`index - capacity` published",
    /// a tombstone (see the module docs).
    pub(crate) fn initial_state(index: u64, capacity: u32) -> u64 {
        join(published(index.wrapping_sub(u64::from(capacity))), 0)
    }

    /// Where slot `index` starts.
    pub(crate) fn slot_start(index: u64, stride: u64) -> u64 {
        SLOTS + index * stride
    }

    /// Where a slot's `len` is, from its start.
    pub(crate) const SLOT_LEN: u64 = SLOT_LEN;

    /// The `AtomicU64` at `offset` from the start.
    #[inline]
    fn u64_at(&self, offset: u64) -> &AtomicU64 {
        self.words.u64_at(offset)
    }

    /// The `AtomicU32` at `offset` from the start.
    #[inline]
    pub(crate) fn u32_at(&self, offset: u64) -> &AtomicU32 {
        self.words.u32_at(offset)
    }

    #[inline]
    fn slot_offset(&self, seq: u64) -> u64 {
        let index = if self.mask != 0 {
            seq & self.mask
        } else if self.capacity == 1 {
            0
        } else {
            seq % self.capacity
        };
        SLOTS + index * self.stride
    }

    #[inline]
    fn state(&self, seq: u64) -> &AtomicU64 {
        self.u64_at(self.slot_offset(seq) + SLOT_STATE)
    }

    #[inline]
    fn len(&self, seq: u64) -> &AtomicU32 {
        self.u32_at(self.slot_offset(seq) + SLOT_LEN)
    }

    /// The payload of message `seq`, published (its state read with
    /// acquire): `max_message_size` bytes, in its slot or in the chunk
    /// its slot names; None if that names no chunk (scribbled memory).
    #[inline]
    pub(crate) fn payload(&self, seq: u64) -> Option<NonNull<u8>> {
        self.pool.payload(&self.words, self.slot_offset(seq))
    }

    /// Whether payloads live in a pool of chunks (see [`Geometry`]).
    pub(crate) fn is_pooled(&self) -> bool {
        !self.pool.is_empty()
    }

    /// Reserves a chunk for the participant `token`, which is about to
    /// claim a message: the chunk of the newest message below
    /// `dead_below` (every message below it is read by every subscriber
    /// and older than the history) if it still holds it, the warmest;
    /// else any chunk no message at or above `dead_below` holds. None if
    /// there is none.
    pub(crate) fn reserve(&self, dead_below: u64, token: u32) -> Option<u32> {
        let newest_dead = (1..=dead_below).map(|back| {
            let seq = dead_below - back;
            (seq, self.slot_offset(seq))
        });
        self.pool
            .reserve(&self.words, token, newest_dead, |seq| seq < dead_below)
    }

    /// Lets go of a chunk `token` reserved and did not use.
    pub(crate) fn unreserve(&self, chunk: u32, token: u32) {
        self.pool.unreserve(&self.words, chunk, token);
    }

    /// Frees the chunks reserved by participants `is_dead` says are dead;
    /// whether it freed any.
    pub(crate) fn free_the_dead_reservations(&self, is_dead: impl Fn(u32) -> bool) -> bool {
        self.pool.free_dead_reservations(&self.words, is_dead)
    }

    /// Gives a claimed slot the chunk its claimer reserved.
    pub(crate) fn assign(&self, claim: &mut Claim, chunk: u32) {
        self.u32_at(claim.slot + SLOT_CHUNK)
            .store(chunk, Ordering::Relaxed);
        claim.chunk = chunk;
    }

    /// The participant seats' generation words ([`SEATS`] of them).
    pub(crate) fn generations(&self) -> &[AtomicU32] {
        self.words.u32s_at(GENERATIONS, SEATS as usize)
    }

    /// The capacity, in messages.
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Whether a message of `len` bytes fits a slot.
    pub(crate) fn fits(&self, len: u32) -> bool {
        len <= self.max_message_size
    }

    /// The next sequence number to publish.
    pub(crate) fn head(&self) -> u64 {
        self.u64_at(HEAD).load(Ordering::Acquire)
    }

    fn cursor_next(&self, seat: u32) -> &AtomicU64 {
        self.u64_at(CURSORS + u64::from(seat) * CURSOR + CURSOR_NEXT)
    }

    fn cursor_token(&self, seat: u32) -> &AtomicU32 {
        self.u32_at(CURSORS + u64::from(seat) * CURSOR + CURSOR_TOKEN)
    }

    /// How many subscriptions were ever made (a publisher's cached lowest
    /// cursor is stale once this moves).
    pub(crate) fn subscriptions(&self) -> u64 {
        self.u64_at(SUBSCRIPTIONS).load(Ordering::SeqCst)
    }

    /// Starts a subscription on `seat` for the participant `token`: its
    /// cursor at the first of the last `history` messages (as many as the
    /// ring holds), visible to every publisher that claims after this.
    /// Returns the cursor's start.
    ///
    /// A publisher may have cleared its claim of message `q` against the
    /// cursors before this one was there, and claim it after: `q` is at
    /// least head as read once the cursor is visible (a claim of `q` finds
    /// head at `q`), so the cursor then moves past `head - capacity`, the
    /// message such a claim overwrites. It never starts on a message a
    /// claim it did not hold back may be overwriting while it reads.
    pub(crate) fn subscribe(&self, seat: u32, token: u32, history: u64) -> u64 {
        let head = self.head();
        let mut start = head.saturating_sub(history.min(self.capacity));
        self.cursor_next(seat).store(start, Ordering::SeqCst);
        self.cursor_token(seat).store(token, Ordering::SeqCst);
        self.u32_at(SUBSCRIBERS_HIGH)
            .fetch_max(seat + 1, Ordering::SeqCst);
        self.u64_at(SUBSCRIPTIONS).fetch_add(1, Ordering::SeqCst);
        let head = self.u64_at(HEAD).load(Ordering::SeqCst);
        let first_safe = (head + 1).saturating_sub(self.capacity);
        if start < first_safe {
            start = first_safe;
            self.cursor_next(seat).store(start, Ordering::SeqCst);
        }
        start
    }

    /// Ends the subscription on `seat` (if it is still `token`'s).
    pub(crate) fn unsubscribe(&self, seat: u32, token: u32) {
        let _ =
            self.cursor_token(seat)
                .compare_exchange(token, 0, Ordering::SeqCst, Ordering::Relaxed);
    }

    /// Moves the cursor on `seat` to `next` (the reader has read what is
    /// before it). `gating`: publishers wait on cursors
    /// ([`Overflow::Block`]), so the store is ordered before the reader's
    /// look at the sleeping publishers; otherwise the cursor only informs.
    pub(crate) fn advance(&self, seat: u32, next: u64, gating: bool) {
        let order = if gating {
            Ordering::SeqCst
        } else {
            Ordering::Relaxed
        };
        self.cursor_next(seat).store(next, order);
    }

    /// The lowest cursor of every subscriber, and who holds it: `None`
    /// when there is no subscriber.
    pub(crate) fn lowest_cursor(&self) -> Option<(u64, u32, u32)> {
        let high = self
            .u32_at(SUBSCRIBERS_HIGH)
            .load(Ordering::SeqCst)
            .min(SEATS);
        let mut lowest: Option<(u64, u32, u32)> = None;
        for seat in 0..high {
            let token = self.cursor_token(seat).load(Ordering::SeqCst);
            if token == 0 {
                continue;
            }
            let next = self.cursor_next(seat).load(Ordering::SeqCst);
            if lowest.is_none_or(|(low, _, _)| next < low) {
                lowest = Some((next, seat, token));
            }
        }
        lowest
    }

    /// Lets go of a dead subscriber's cursor.
    pub(crate) fn drop_subscriber(&self, seat: u32, token: u32) -> bool {
        self.cursor_token(seat)
            .compare_exchange(token, 0, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
    }

    /// How many subscribers hold a cursor now.
    pub(crate) fn subscribers(&self) -> usize {
        let high = self
            .u32_at(SUBSCRIBERS_HIGH)
            .load(Ordering::SeqCst)
            .min(SEATS);
        (0..high)
            .filter(|&seat| self.cursor_token(seat).load(Ordering::Relaxed) != 0)
            .count()
    }

    /// Claims the next message's slot for the participant `token`.
    /// `gate(seq)` says whether message `seq` may be written now (under
    /// [`Overflow::Block`], whether every subscriber has read `seq -
    /// capacity`), or what holds it back.
    #[inline]
    pub(crate) fn claim(
        &self,
        token: u32,
        gate: impl Fn(u64) -> std::result::Result<(), Blocked>,
    ) -> std::result::Result<Claim, Blocked> {
        let head = self.u64_at(HEAD);
        loop {
            let seq = head.load(Ordering::Acquire);
            let previous = seq.wrapping_sub(self.capacity);
            gate(seq)?;
            // The free state is known (the previous lap published, owner
            // 0), so the claim is one compare-and-swap, not a load and
            // then one: subscribers only read slots, and a slot line they
            // have read costs the publisher a miss on a load and again on
            // the swap.
            //
            // Head moves on only once the message is published
            // ([`publish`](Self::publish)): between this swap and the
            // publish the claimer touches no other line, so a subscriber
            // polling the slot takes the line once, written.
            let free = join(published(previous), 0);
            let slot = self.slot_offset(seq);
            let state = match self.u64_at(slot + SLOT_STATE).compare_exchange(
                free,
                join(writing(seq), token),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Ok(Claim {
                        seq,
                        slot,
                        chunk: NO_CHUNK,
                    })
                }
                Err(state) => state,
            };
            let (turn, owner) = split(state);
            if turn == published(previous) {
                // Free, but with an owner left in it: no protocol leaves
                // that (scribbled memory). Blocked: the caller waits within
                // its timeout, and no repair applies.
                return Err(Blocked::Writing {
                    seq: previous,
                    state,
                    owner,
                });
            } else if turn == writing(seq) || turn == published(seq) {
                // Someone claimed it and has not moved head on yet: help.
                let _ = head.compare_exchange(seq, seq + 1, Ordering::AcqRel, Ordering::Relaxed);
            } else if turn == writing(previous) {
                return Err(Blocked::Writing {
                    seq: previous,
                    state,
                    owner,
                });
            }
            // Otherwise head moved on since it was read: look again.
        }
    }

    /// The payload of a claimed slot: `max_message_size` bytes (in its
    /// chunk, with a pool).
    #[inline]
    pub(crate) fn claimed_payload(&self, claim: &Claim) -> NonNull<u8> {
        self.pool.claimed(&self.words, claim.slot, claim.chunk)
    }

    /// Publishes a claimed slot with `len` bytes ([`TOMBSTONE`] for none),
    /// then moves head past it (if no one helped it on yet).
    ///
    /// A plain store publishes: only this claimer writes the slot until
    /// it is published, since a claim is buried only once its claimer is
    /// dead (a seat's liveness is exact), so the message is visible the
    /// moment the store leaves this core, with no locked instruction
    /// before it. The fence then orders it before the caller's look at
    /// the sleepers.
    #[inline]
    pub(crate) fn publish(&self, claim: Claim, len: u32) {
        if claim.chunk != NO_CHUNK {
            let chunk = claim.chunk;
            // The chunk holds message `seq` from now: free once no one
            // needs it. Until here it was reserved, so no publisher took
            // it while it was written.
            self.pool.settle(&self.words, chunk, claim.seq);
        }
        self.u32_at(claim.slot + SLOT_LEN)
            .store(len, Ordering::Relaxed);
        self.u64_at(claim.slot + SLOT_STATE)
            .store(join(published(claim.seq), 0), Ordering::Release);
        std::sync::atomic::fence(Ordering::SeqCst);
        let _ = self.u64_at(HEAD).compare_exchange(
            claim.seq,
            claim.seq + 1,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }

    /// Publishes message `seq`, still being written by the dead `owner`
    /// (its state `state` as seen), as a tombstone; whether it did.
    pub(crate) fn bury(&self, seq: u64, state: u64) -> bool {
        if split(state).0 != writing(seq) {
            return false;
        }
        // The length first: whoever sees the new state reads a tombstone.
        self.len(seq).store(TOMBSTONE, Ordering::SeqCst);
        self.state(seq)
            .compare_exchange(
                state,
                join(published(seq), 0),
                Ordering::SeqCst,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// What a reader at `next` finds.
    #[inline]
    pub(crate) fn look(&self, next: u64) -> Found {
        let state = self.state(next).load(Ordering::Acquire);
        let (turn, _) = split(state);
        let ahead = distance(turn, published(next));
        if ahead == 0 {
            let len = self.len(next).load(Ordering::Acquire);
            Found::Message {
                seq: next,
                len,
                state,
            }
        } else if ahead < 0 {
            Found::Nothing { state }
        } else {
            Found::Lapped {
                oldest: self.oldest_held().max(next + 1),
            }
        }
    }

    /// Whether message `seq` is still in its slot with the state `state`
    /// (a reader checks this after copying it out).
    pub(crate) fn still(&self, seq: u64, state: u64) -> bool {
        std::sync::atomic::fence(Ordering::Acquire);
        self.state(seq).load(Ordering::Relaxed) == state
    }

    /// The oldest message the ring may still hold.
    fn oldest_held(&self) -> u64 {
        self.head().saturating_sub(self.capacity)
    }

    /// The writer's token of message `seq` if it is being written (`state`
    /// as seen at `look`).
    pub(crate) fn writer(seq: u64, state: u64) -> Option<u32> {
        let (turn, owner) = split(state);
        (turn == writing(seq) && owner != 0).then_some(owner)
    }

    /// How many messages are published or being written ahead of `next`,
    /// as many as the ring holds at most.
    pub(crate) fn ahead_of(&self, next: u64) -> u64 {
        self.head().saturating_sub(next).min(self.capacity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_docs_tables_are_the_structs() {
        use crate::doc_tables::{self, layout};
        use crate::slots::SlotHeader;
        let layouts = [
            layout!(TopicHeader {
                header,
                capacity,
                max_message_size,
                stride,
                history,
                overflow,
                chunks,
                _pad_to_head,
                head,
                _pad_to_subscriptions,
                subscriptions,
                subscribers_high,
                _pad_to_data_bell,
                data_bell,
                data_sleepers,
                _pad_to_space_bell,
                space_bell,
                space_sleepers,
                _pad_to_generations,
                generations,
                cursors,
            }),
            layout!(Cursor {
                next,
                token,
                _spare
            }),
            layout!(SlotHeader { state, len, chunk }),
            doc_tables::header(),
        ];
        let source = include_str!("ring.rs");
        let rows = doc_tables::check(source, &["TopicHeader", "SlotHeader"], &layouts);
        assert_eq!(rows, 19);
    }

    /// A ring on the heap, as a new topic's.
    struct Heap {
        _memory: Vec<u64>,
        ring: Ring,
    }

    fn heap(capacity: u32, max: u32) -> Heap {
        heap_of(Geometry::new(capacity, max, Overflow::Overwrite))
    }

    fn heap_of(geometry: Geometry) -> Heap {
        let len = geometry.size().unwrap();
        let mut memory = vec![0u64; len.div_ceil(8) as usize];
        let base = NonNull::new(memory.as_mut_ptr().cast::<u8>()).unwrap();
        let stride = geometry.slot_stride();
        for index in 0..u64::from(geometry.capacity) {
            let start = Ring::slot_start(index, stride) as usize / 8;
            memory[start] = Ring::initial_state(index, geometry.capacity);
            memory[start + 1] = u64::from(TOMBSTONE);
        }
        // SAFETY: the memory is `len` bytes, 8-aligned, and lives as long
        // as the ring (both in the Heap).
        let ring = unsafe { Ring::new(base, len, geometry).unwrap() };
        Heap {
            _memory: memory,
            ring,
        }
    }

    fn open(_: u64) -> std::result::Result<(), Blocked> {
        Ok(())
    }

    fn publish(ring: &Ring, token: u32) -> u64 {
        let claim = ring.claim(token, open).unwrap();
        let seq = claim.seq;
        ring.publish(claim, 8);
        seq
    }

    #[test]
    fn every_reader_sees_every_message_in_order() {
        let heap = heap(4, 8);
        let ring = &heap.ring;
        assert!(matches!(ring.look(0), Found::Nothing { .. }));
        for expected in 0..3 {
            assert_eq!(publish(ring, 1), expected);
        }
        for reader in 0..2 {
            for seq in 0..3 {
                match ring.look(seq) {
                    Found::Message {
                        seq: found, len, ..
                    } => {
                        assert_eq!((found, len), (seq, 8), "reader {reader}")
                    }
                    other => panic!("reader {reader} at {seq}: {other:?}"),
                }
            }
            assert!(matches!(ring.look(3), Found::Nothing { .. }));
        }
    }

    #[test]
    fn a_reader_left_behind_is_told_where_to_go_on() {
        let heap = heap(4, 8);
        let ring = &heap.ring;
        for _ in 0..10 {
            publish(ring, 1);
        }
        // Messages 6..10 are held; a reader at 1 lapped.
        assert_eq!(ring.look(1), Found::Lapped { oldest: 6 });
        assert!(matches!(ring.look(6), Found::Message { seq: 6, .. }));
        assert!(matches!(ring.look(9), Found::Message { seq: 9, .. }));
    }

    #[test]
    fn sequences_wrap_around_u32_turns() {
        let heap = heap(2, 8);
        let ring = &heap.ring;
        // Far into the sequence numbers: head and the slots as if
        // 2^32 + 1 messages had gone by.
        let start = (1u64 << 32) + 1;
        ring.u64_at(HEAD).store(start, Ordering::SeqCst);
        for seq in start - 2..start {
            ring.state(seq)
                .store(join(published(seq), 0), Ordering::SeqCst);
        }
        for expected in start..start + 5 {
            assert_eq!(publish(ring, 1), expected);
            assert!(matches!(ring.look(expected), Found::Message { seq, .. } if seq == expected));
        }
    }

    #[test]
    fn a_dead_publishers_message_is_buried_and_blocks_no_one() {
        let heap = heap(2, 8);
        let ring = &heap.ring;
        let dead = ring.claim(7, open).unwrap();
        assert_eq!(dead.seq, 0);
        // A reader waits at 0, sees who writes it, and buries it.
        let Found::Nothing { state } = ring.look(0) else {
            panic!("message 0 is not published yet");
        };
        assert_eq!(Ring::writer(0, state), Some(7));
        assert!(ring.bury(0, state));
        assert!(matches!(
            ring.look(0),
            Found::Message { len: TOMBSTONE, .. }
        ));
        // Head was never moved past it (its claimer died before
        // publishing): the next publisher helps it on.
        assert_eq!(publish(ring, 1), 1);
        assert_eq!(publish(ring, 1), 2);
    }

    #[test]
    fn a_publisher_that_died_before_moving_head_on_blocks_no_one() {
        let heap = heap(4, 8);
        let ring = &heap.ring;
        // Claimed slot 0 and died before publishing (head moves on at the
        // publish).
        let _dead = ring.claim(7, open).unwrap();
        assert_eq!(ring.head(), 0);
        assert_eq!(publish(ring, 1), 1, "the next publisher helps head past it");
    }

    #[test]
    fn a_publisher_laps_a_slot_still_being_written_only_after_it() {
        let heap = heap(1, 8);
        let ring = &heap.ring;
        let first = ring.claim(7, open).unwrap();
        match ring.claim(1, open) {
            Err(Blocked::Writing {
                seq: 0, owner: 7, ..
            }) => {}
            other => panic!("{other:?}"),
        }
        ring.publish(first, 8);
        assert_eq!(publish(ring, 1), 1);
    }

    #[test]
    fn a_subscription_never_starts_on_the_message_the_next_claim_overwrites() {
        let heap = heap(4, 8);
        let ring = &heap.ring;
        for _ in 0..6 {
            publish(ring, 1);
        }
        // Messages 2..6 are held; the next claim (6) overwrites 2, so a
        // history of the whole ring starts at 3.
        assert_eq!(ring.subscribe(0, 99, 4), 3);
        assert_eq!(ring.lowest_cursor(), Some((3, 0, 99)));
        assert_eq!(ring.subscribe(1, 98, 2), 4);
        assert_eq!(ring.subscribe(2, 97, 0), 6);
    }

    /// A pooled ring (Block, 16 KiB messages) of `capacity` slots.
    fn pool(capacity: u32) -> Heap {
        let geometry = Geometry::new(capacity, POOL_FROM, Overflow::Block);
        assert_eq!(geometry.chunks, capacity + 1);
        heap_of(geometry)
    }

    /// Publishes message `seq` with a chunk reserved below `dead_below`,
    /// its first byte `tag`; the chunk it used.
    fn publish_pooled(ring: &Ring, dead_below: u64, tag: u8) -> u32 {
        let chunk = ring.reserve(dead_below, 1).expect("a free chunk");
        let mut claim = ring.claim(1, open).unwrap();
        ring.assign(&mut claim, chunk);
        // SAFETY: the chunk is this claim's, inside the heap.
        unsafe { *ring.claimed_payload(&claim).as_ptr() = tag };
        ring.publish(claim, 1);
        chunk
    }

    #[test]
    fn a_pool_reuses_the_chunk_no_one_needs_that_was_written_last() {
        let heap = pool(8);
        let ring = &heap.ring;
        // Subscribers that keep up: every message is dead once the next
        // is published (no history), so one chunk serves them all.
        let first = publish_pooled(ring, 0, 0);
        for seq in 1..20u64 {
            assert_eq!(publish_pooled(ring, seq, seq as u8), first, "message {seq}");
            // SAFETY: message `seq` is published: its chunk lies inside.
            assert_eq!(unsafe { *ring.payload(seq).unwrap().as_ptr() }, seq as u8);
        }
    }

    #[test]
    fn a_pool_never_hands_out_a_chunk_someone_may_still_read() {
        let heap = pool(4);
        let ring = &heap.ring;
        // A subscriber at 0 reads nothing: messages 0..4 each keep their
        // chunk, and the fifth (of five) is the spare.
        let mut used = Vec::new();
        for seq in 0..4u64 {
            used.push(publish_pooled(ring, 0, seq as u8));
        }
        let spare = ring.reserve(0, 2).expect("the spare chunk");
        assert!(!used.contains(&spare));
        assert_eq!(
            ring.reserve(0, 3),
            None,
            "every other chunk holds a needed message"
        );
        // Once messages 0 and 1 are read, their chunks are free again, the
        // newest first (the warmest).
        assert_eq!(ring.reserve(2, 3), Some(used[1]));
        assert_eq!(ring.reserve(2, 3), Some(used[0]));
        for seq in 0..4u64 {
            // SAFETY: published, inside the heap.
            assert_eq!(unsafe { *ring.payload(seq).unwrap().as_ptr() }, seq as u8);
        }
    }

    #[test]
    fn a_dead_publishers_reservation_is_freed_and_a_live_ones_kept() {
        let heap = pool(2);
        let ring = &heap.ring;
        let live = ring.reserve(0, 5).unwrap();
        let dead = ring.reserve(0, 6).unwrap();
        let _last = ring.reserve(0, 7).unwrap();
        assert_eq!(ring.reserve(0, 8), None);
        assert!(ring.free_the_dead_reservations(|token| token == 6));
        assert_eq!(ring.reserve(0, 8), Some(dead));
        assert!(!ring.free_the_dead_reservations(|token| token == 6));
        ring.unreserve(live, 5);
        assert_eq!(ring.reserve(0, 9), Some(live));
    }

    #[test]
    fn a_chunk_outside_the_pool_is_no_payload() {
        let heap = pool(2);
        let ring = &heap.ring;
        publish_pooled(ring, 0, 1);
        ring.u32_at(Ring::slot_start(0, ring.stride) + SLOT_CHUNK)
            .store(99, Ordering::SeqCst);
        assert_eq!(ring.payload(0), None);
    }

    #[test]
    fn block_gates_on_the_lowest_cursor() {
        let heap = heap(2, 8);
        let ring = &heap.ring;
        let start = ring.subscribe(3, 99, 0);
        assert_eq!(start, 0);
        assert_eq!(ring.lowest_cursor(), Some((0, 3, 99)));
        let gate = |seq: u64| {
            let needs = seq.saturating_sub(ring.capacity());
            match ring.lowest_cursor() {
                Some((next, seat, token)) if seq >= ring.capacity() && next <= needs => {
                    Err(Blocked::Behind { seat, token, needs })
                }
                _ => Ok(()),
            }
        };
        assert_eq!(ring.claim(1, gate).map(|c| c.seq).ok(), Some(0));
        // (published below, to let the next claims go on)
        ring.state(0).store(join(published(0), 0), Ordering::SeqCst);
        let second = ring.claim(1, gate).unwrap();
        ring.publish(second, 8);
        assert!(matches!(
            ring.claim(1, gate),
            Err(Blocked::Behind { needs: 0, .. })
        ));
        ring.advance(3, 1, true);
        assert_eq!(ring.claim(1, gate).map(|c| c.seq).ok(), Some(2));
        ring.unsubscribe(3, 99);
        assert_eq!(ring.lowest_cursor(), None);
    }
}
