//! The channel's ring: Dmitry Vyukov's bounded MPMC queue
//! (<https://www.1024cores.net/home/lock-free-algorithms/queues/bounded-mpmc-queue>),
//! laid out in shared memory and extended so that no crashed process can
//! wedge it. This is the only place the channel touches raw memory.
//!
//! # Layout
//!
//! The ring's header, [`RingHeader`], from the start of the channel's
//! object:
//!
//! | offset | field | who changes it |
//! |---|---|---|
//! | 0 | `header: Header`, the object header (magic, ready flag, version; see `src/object.rs`) | the creator, once |
//! | 16 | `capacity: u32`, slots | the creator, once |
//! | 20 | `max_message_size: u32` | the creator, once |
//! | 24 | `stride: u32`, bytes per slot | the creator, once |
//! | 28 | `chunks: u32`, chunks in the payloads' pool (0: payloads in the slots) | the creator, once |
//! | 128 | `enqueue: u64`, the next position to send to | senders (CAS) |
//! | 256 | `dequeue: u64`, the next position to receive from | receivers (CAS) |
//! | 384 | `recv_bell: u32`, `recv_sleepers: u32` | senders ring, receivers sleep |
//! | 512 | `send_bell: u32`, `send_sleepers: u32` | receivers ring, senders sleep |
//! | 640 | `generations: [u32; 1024]`, one per participant seat | a participant taking the seat |
//! | 4736 | the slots, `stride` bytes each | |
//!
//! Messages of 1 MiB and more ([`CHANNEL_POOL_FROM`]) live in a pool of
//! `capacity + 2` chunks after the slots instead (`src/pool.rs`), each slot
//! naming its message's chunk: a sender takes the chunk of the message
//! received last, still warm, and a chunk is free again once its message's
//! slot is released (`capacity + 2`: the ring holds at most `capacity + 1`
//! messages not yet released, one of them maybe a dead receiver's, so a
//! sender that has claimed a slot always finds a chunk but for those dead
//! senders reserved, which a sender frees when it finds none).
//!
//! A slot, [`SlotHeader`] and then its payload:
//!
//! | offset | field | who changes it |
//! |---|---|---|
//! | 0 | `state: u64`, the sequence number in the high 32 bits, the owner in the low 32 (a participant's token, see `src/participants.rs`) | its claimer (CAS), then its publisher or releaser |
//! | 8 | `len: u32`, the message's length, or [`TOMBSTONE`] | the sender, or the repairer of a dead sender's slot |
//! | 12 | `chunk: u32`, with a pool, the chunk that holds the payload | the sender |
//! | 16 | the payload, `max_message_size` bytes (none with a pool) | the sender |
//!
//! Every word that one side writes while the other polls (the positions,
//! the bells, each slot) starts a 128-byte pair of cache lines of its own,
//! and the stride is a multiple of 128: x86's adjacent-line prefetcher
//! fetches a line's pair with it, so a sender's line next to a receiver's
//! would bounce between them (the bench lab's ladder measures what that
//! costs: its packed rung).
//!
//! # The algorithm
//!
//! Positions count up forever; position `p` uses slot `p % capacity`. As in
//! Vyukov's queue, a slot's sequence number says whose turn it is, but
//! counted in half-steps so that even a single-slot ring is unambiguous: a
//! slot whose sequence is `2p` is free for the sender of position `p`; one
//! whose sequence is `2p + 1` holds the message of position `p`; releasing
//! it sets `2(p + capacity)`, freeing it for the next lap. (Sequences wrap
//! at 2^32; they are compared by signed distance.)
//!
//! The extension for crashes: a sender or receiver first *claims* the slot
//! by a compare-and-swap that writes its participant token (never a process
//! id: see `src/participants.rs`) into the owner half of the state (with [`READING`] set for a receiver), then moves the shared
//! position on (anyone who finds a claimed slot at the position helps move
//! it on, so a claimer that dies there blocks no one), copies, and finally
//! publishes or releases the slot with owner 0. So a slot that stays owned
//! names the participant working on it. When a sender finds the ring full, or a
//! receiver finds it empty, at a slot whose owner is dead, it repairs it:
//!
//! - a dead sender's slot is published as a tombstone (`len` =
//!   [`TOMBSTONE`]), which receivers skip: that one message is dropped, and
//!   no one ever sees it half-written;
//! - a dead receiver's slot is released: that one message, which the dead
//!   process had taken, is lost with it. It is never delivered twice.
//!
//! # What a healthy ring can look like
//!
//! A scribbled ring (a buggy or hostile process with write access to the
//! mapping) could leave a sender or receiver blocked forever: full or empty
//! as far as its slot says, with nothing that will ever change it. So a
//! blocked waiter, before it sleeps, checks that what it sees is a state
//! some run of the protocol (with any crashes and repairs) can reach, and
//! reports it as corrupt if not ([`Ring::impossible`]). The states it can
//! reach, with `E` the enqueue position, `D` the dequeue position, and
//! `held = E - D` (wrapping, as a signed distance):
//!
//! - **`-1 <= held <= capacity + 1`.** `D` moves past `p` only once someone
//!   saw the slot of `p` published (or claimed by a receiver), which its
//!   sender did after claiming it at `E = p`: so `E >= D - 1` (`D - 1`, not
//!   `D`: a sender that died between claiming and moving `E` on leaves
//!   `E = p` while its tombstone is received, `D = p + 1`). `E` moves past
//!   `p` only once the slot of `p` was free for it, which the receiver of
//!   `p - capacity` made it after claiming it at `D = p - capacity`: so
//!   `E <= D + capacity + 1` (`+ 1`: that receiver may have died before
//!   moving `D` on, its slot repaired and sent to again).
//! - **The slot of the sender's position `p = E`** is in one of the states
//!   of position `p - capacity`, `p` or `p + capacity` (sequence `2p - 2c`,
//!   `2p - 2c + 1`, `2p`, `2p + 1` or `2p + 2c`, `c` the capacity): `E`
//!   passed `p - capacity` only once its sender had claimed the slot, and the
//!   slot moves past `2p + 2c` only once someone claims `p + capacity` at
//!   `E = p + capacity`. When it blocks the sender (still position
//!   `p - capacity`'s), then either a receiver has claimed it (sequence
//!   `2p - 2c + 1`, owner a receiver), or no receiver has yet: `D <= p -
//!   capacity`, the ring holds `held >= capacity` messages, and a sender
//!   owns it if its sequence is `2p - 2c` (no one moves `E` past a slot
//!   before someone claims it).
//! - **The slot of the receiver's position `p = D`** is likewise in a state
//!   of position `p - capacity`, `p` or `p + capacity` (sequence `2p - 2c +
//!   1`, `2p`, `2p + 1`, `2p + 2c` or `2p + 2c + 1`). When it blocks the
//!   receiver, either its sender has claimed it (`2p`, owner a sender), or
//!   it is free and no sender has claimed it (`2p`, no owner): then
//!   `E <= p`, `held <= 0`; or the receiver of `p - capacity` has not
//!   released it yet (`2p - 2c + 1`, owner a receiver): then too `held <= 0`.
//!
//! (Sequences are compared on the 32-bit circle. With at most 2^30 slots,
//! [`MAX_CAPACITY`], the window from `2p - 2c` to `2p + 2c + 1` fits on it,
//! but for its two ends at exactly 2^30 slots, where either reading is
//! accepted.)
//!
//! Each bound holds for reads in a given order: `held >= -1` when `D` is
//! read before `E`, `held <= capacity + 1` when `E` is read before `D`; a
//! slot's lowest states, and what they say of `held`, when the positions
//! are read before the slot; its highest when its position is read again
//! after it and has not moved. So the check reads the other position, its
//! own, the slot, then both positions and the slot again (all `SeqCst`),
//! and judges only if all three are unchanged: positions and sequences only
//! move forward, so that is a snapshot of one instant, and a race is never
//! taken for corruption. It runs only on the slow path (a claim that
//! blocked, before sleeping or timing out), never on a send or receive that
//! finds its slot ready, and not in `try_send`/`try_recv`, which report
//! `Full`/`Empty` without waiting.
//!
//! Whether an owner is alive is the caller's question ([`Ring::repair`]
//! takes the answer as a function): the channel asks the owner's seat,
//! which the OS takes back when the owner dies (`src/participants.rs`), so a
//! process id reused, or the same id in another pid namespace, never makes
//! a dead owner look alive or a live one dead.

use std::mem::offset_of;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::error::{Error, Result};
use crate::object::Header;
use crate::pool::CHANNEL_POOL_FROM;
use crate::pool::{Pool, NO_CHUNK};
use crate::slots::{distance, join, split, LINE_PAIR, SLOT_CHUNK, SLOT_LEN, SLOT_STATE};
pub(crate) use crate::slots::{stride_for, SlotHeader, MAX_CAPACITY, SLOT_HEADER, TOMBSTONE};
use crate::words::Words;

/// The ring's header, as the module docs' table has it: a description of
/// the bytes, from the start of the channel's object. Nothing reads or
/// writes it whole: the ring reaches its words as atomics at the offsets
/// below, and the creator writes the geometry field by field.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub(crate) struct RingHeader {
    pub(crate) header: Header,
    pub(crate) capacity: u32,
    pub(crate) max_message_size: u32,
    pub(crate) stride: u32,
    pub(crate) chunks: u32,
    _pad_geometry: [u8; 96],
    pub(crate) enqueue: u64,
    _pad_enqueue: [u8; 120],
    pub(crate) dequeue: u64,
    _pad_dequeue: [u8; 120],
    pub(crate) recv_bell: u32,
    pub(crate) recv_sleepers: u32,
    _pad_recv: [u8; 120],
    pub(crate) send_bell: u32,
    pub(crate) send_sleepers: u32,
    _pad_send: [u8; 120],
    pub(crate) generations: [u32; SEATS as usize],
}

pub(crate) const CAPACITY: u64 = offset_of!(RingHeader, capacity) as u64;
pub(crate) const MAX_MESSAGE: u64 = offset_of!(RingHeader, max_message_size) as u64;
pub(crate) const STRIDE: u64 = offset_of!(RingHeader, stride) as u64;
pub(crate) const CHUNKS: u64 = offset_of!(RingHeader, chunks) as u64;
pub(crate) const ENQUEUE: u64 = offset_of!(RingHeader, enqueue) as u64;
pub(crate) const DEQUEUE: u64 = offset_of!(RingHeader, dequeue) as u64;
pub(crate) const RECV_BELL: u64 = offset_of!(RingHeader, recv_bell) as u64;
pub(crate) const RECV_SLEEPERS: u64 = offset_of!(RingHeader, recv_sleepers) as u64;
pub(crate) const SEND_BELL: u64 = offset_of!(RingHeader, send_bell) as u64;
pub(crate) const SEND_SLEEPERS: u64 = offset_of!(RingHeader, send_sleepers) as u64;
/// Where the participant seats' generations start.
pub(crate) const GENERATIONS: u64 = offset_of!(RingHeader, generations) as u64;
/// How many participants a channel has room for at once.
pub(crate) use crate::participants::SEATS;
/// Where the slots start: just after the header.
pub(crate) const SLOTS: u64 = size_of::<RingHeader>() as u64;
/// The owner bit that marks a receiver's claim.
pub(crate) const READING: u32 = 1 << 31;

// The bytes of this layout version (`object::VERSION`): a number changed
// here changes them, and the version must move with it.
const _: () = assert!(SLOTS == 4736 && SLOT_HEADER == 16 && GENERATIONS == 640);
// The hot words (positions, bells) each start a pair of cache lines, and
// so do the slots: the first at SLOTS, each next one a stride further
// (`stride_for` rounds it up to a multiple of LINE_PAIR).
const _: () = assert!(
    ENQUEUE.is_multiple_of(LINE_PAIR)
        && DEQUEUE.is_multiple_of(LINE_PAIR)
        && RECV_BELL.is_multiple_of(LINE_PAIR)
        && SEND_BELL.is_multiple_of(LINE_PAIR)
        && SLOTS.is_multiple_of(LINE_PAIR)
);
// The u64 atomics (positions, slot states) are 8-aligned in a page-aligned
// mapping: both structs' offsets, and every slot's start, are multiples of 8.
const _: () = assert!(
    align_of::<RingHeader>() == 8
        && align_of::<SlotHeader>() == 8
        && SLOTS.is_multiple_of(8)
        && LINE_PAIR.is_multiple_of(8)
);

/// The sequence number of a slot free for the sender of position `pos`.
pub(crate) fn send_turn(pos: u64) -> u32 {
    pos.wrapping_mul(2) as u32
}

/// The sequence number of a slot holding the message of position `pos`.
fn recv_turn(pos: u64) -> u32 {
    send_turn(pos).wrapping_add(1)
}

/// Moves `position` from `pos` to the next position, unless someone already has.
#[inline(always)]
fn move_on(position: &AtomicU64, pos: u64) {
    let _ = position.compare_exchange(
        pos,
        pos.wrapping_add(1),
        Ordering::AcqRel,
        Ordering::Relaxed,
    );
}

/// The two sides of the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// Senders: claim at `enqueue`, the turn `2p`.
    Send,
    /// Receivers: claim at `dequeue`, the turn `2p + 1`.
    Recv,
}

/// A state of the ring that no run of the protocol reaches (see the module
/// docs): where, and what is impossible about it.
#[derive(Debug)]
pub(crate) struct Impossible {
    /// The offset of the word found impossible: `enqueue` for positions too
    /// far apart, else the blocking slot's state.
    pub(crate) offset: u64,
    /// What is impossible, for [`Error::Corrupt`]'s reason.
    pub(crate) what: String,
}

/// The chunks of a new channel's pool for messages of up to
/// `max_message_size` bytes: 0 (payloads in the slots) below
/// [`CHANNEL_POOL_FROM`].
pub(crate) fn chunks_for(capacity: u32, max_message_size: u32) -> u32 {
    if max_message_size >= CHANNEL_POOL_FROM {
        capacity.saturating_add(2)
    } else {
        0
    }
}

/// Bytes per slot: the header alone with a pool, else the header and the
/// payload.
pub(crate) fn slot_stride(max_message_size: u32, chunks: u32) -> u64 {
    stride_for(if chunks > 0 { 0 } else { max_message_size })
}

/// The ring over a channel's mapped memory.
pub(crate) struct Ring {
    words: Words,
    capacity: u64,
    stride: u64,
    max_message_size: u32,
    /// The payloads' pool (empty: payloads in the slots).
    pool: Pool,
}

/// A slot this process claimed for sending or receiving.
#[derive(Debug)]
pub(crate) struct Claim {
    pub(crate) pos: u64,
    /// A sender's chunk, with a pool.
    chunk: u32,
}

/// Why a claim failed: the ring is full (send) or empty (receive) at the
/// slot `index`, whose state was `state`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Blocked {
    index: u64,
    state: u64,
}

impl Blocked {
    /// The blocking slot's state word, to tell whether it stays the same.
    pub(crate) fn state(&self) -> u64 {
        self.state
    }

    /// Whether a process has claimed the blocking slot (it may be dead).
    pub(crate) fn is_claimed(&self) -> bool {
        split(self.state).1 != 0
    }
}

impl Ring {
    /// The ring over `len` bytes at `base`, checked against the geometry.
    ///
    /// # Safety
    /// `base..base + len` is a mapped, writable, page-aligned region that
    /// stays mapped while the ring is used.
    pub(crate) unsafe fn new(
        base: NonNull<u8>,
        len: u64,
        capacity: u32,
        max_message_size: u32,
        chunks: u32,
    ) -> Result<Ring> {
        let stride = slot_stride(max_message_size, chunks);
        let pool = Ring::pool_for(capacity, max_message_size, chunks);
        let needed = pool.and_then(|pool| pool.end());
        let chunks_ok = chunks == 0 || chunks > capacity.saturating_add(1);
        if capacity == 0
            || capacity > MAX_CAPACITY
            || !chunks_ok
            || needed.is_none_or(|needed| needed > len)
        {
            return Err(Error::Corrupt {
                offset: CAPACITY,
                reason: format!(
                    "a channel of {capacity} slots of {max_message_size} bytes ({chunks} chunks) does not fit in {len} bytes"
                ),
            });
        }
        Ok(Ring {
            // SAFETY: the caller's contract is `Words::new`'s, and every
            // offset the ring asks for lies inside (checked above).
            words: unsafe { Words::new(base) },
            capacity: u64::from(capacity),
            stride,
            max_message_size,
            pool: pool.expect("checked above"),
        })
    }

    /// The pool of a channel of this geometry, after its slots.
    fn pool_for(capacity: u32, max_message_size: u32, chunks: u32) -> Option<Pool> {
        let stride = slot_stride(max_message_size, chunks);
        Pool::after_slots(SLOTS, capacity, stride, chunks, max_message_size)
    }

    /// The bytes a channel of this geometry takes.
    pub(crate) fn size_for(capacity: u32, max_message_size: u32, chunks: u32) -> Option<u64> {
        Ring::pool_for(capacity, max_message_size, chunks)?.end()
    }

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

    fn slot_offset(&self, pos: u64) -> u64 {
        SLOTS + (pos % self.capacity) * self.stride
    }

    fn state(&self, pos: u64) -> &AtomicU64 {
        self.u64_at(self.slot_offset(pos) + SLOT_STATE)
    }

    fn len(&self, pos: u64) -> &AtomicU32 {
        self.u32_at(self.slot_offset(pos) + SLOT_LEN)
    }

    /// The payload of the message a receiver claimed at `pos`:
    /// `max_message_size` bytes, in its slot or in the chunk its slot
    /// names; None if that names no chunk (scribbled memory).
    pub(crate) fn payload(&self, pos: u64) -> Option<NonNull<u8>> {
        self.pool.payload(&self.words, self.slot_offset(pos))
    }

    /// Where a sender writes the message of its claim: its slot, or (with
    /// a pool) the chunk it reserved for it.
    pub(crate) fn claimed_payload(&self, claim: &Claim) -> NonNull<u8> {
        self.pool
            .claimed(&self.words, self.slot_offset(claim.pos), claim.chunk)
    }

    /// Whether payloads live in a pool of chunks.
    pub(crate) fn is_pooled(&self) -> bool {
        !self.pool.is_empty()
    }

    /// Gives a sender's claim a chunk of the pool, reserved for the
    /// participant `token`: the chunk of the message received last (warm),
    /// else any whose message was released. False if every chunk is held
    /// (then only by the reservations of dead senders: see the module
    /// docs).
    pub(crate) fn reserve(&self, claim: &mut Claim, token: u32) -> bool {
        let dequeue = self.u64_at(DEQUEUE).load(Ordering::Acquire);
        let newest_received = (1..=dequeue.min(self.capacity)).map(|back| {
            let pos = dequeue - back;
            (pos, self.slot_offset(pos))
        });
        let released = |pos: u64| self.is_released(pos, dequeue);
        let Some(chunk) = self
            .pool
            .reserve(&self.words, token, newest_received, released)
        else {
            return false;
        };
        self.u32_at(self.slot_offset(claim.pos) + SLOT_CHUNK)
            .store(chunk, Ordering::Relaxed);
        claim.chunk = chunk;
        true
    }

    /// Whether the message of `pos` was received and its slot released
    /// (`dequeue` read before): its chunk is free then.
    fn is_released(&self, pos: u64, dequeue: u64) -> bool {
        if pos >= dequeue {
            return false;
        }
        if dequeue - pos > self.capacity {
            // A receiver claimed the slot's next lap: it was released.
            return true;
        }
        let (seq, _) = split(self.state(pos).load(Ordering::Acquire));
        distance(seq, recv_turn(pos)) > 0
    }

    /// Frees the chunks reserved by senders `is_dead` says are dead;
    /// whether it freed any.
    pub(crate) fn free_dead_reservations(&self, is_dead: impl Fn(u32) -> bool) -> bool {
        self.pool.free_dead_reservations(&self.words, is_dead)
    }

    /// The participant seats' generation words ([`SEATS`] of them).
    pub(crate) fn generations(&self) -> &[AtomicU32] {
        self.words.u32s_at(GENERATIONS, SEATS as usize)
    }

    /// Claims the next free slot for sending, as the participant `token`
    /// (non-zero, [`READING`] clear).
    #[inline]
    pub(crate) fn claim_send(&self, token: u32) -> std::result::Result<Claim, Blocked> {
        self.claim(ENQUEUE, send_turn, token)
    }

    /// Claims the next message for receiving, as the participant `token`;
    /// its length.
    #[inline]
    pub(crate) fn claim_recv(&self, token: u32) -> std::result::Result<(Claim, u32), Blocked> {
        let claim = self.claim(DEQUEUE, recv_turn, token | READING)?;
        let len = self.len(claim.pos).load(Ordering::Relaxed);
        Ok((claim, len))
    }

    /// Claims the slot at the position kept at `position` (the enqueue or
    /// dequeue word) when its sequence is `turn(pos)`, by writing `owner`
    /// into its state, then moves the position on. Anyone who finds the
    /// slot already claimed helps move the position on, so a claimer that
    /// dies there blocks no one.
    #[inline(always)]
    fn claim(
        &self,
        position: u64,
        turn: fn(u64) -> u32,
        owner: u32,
    ) -> std::result::Result<Claim, Blocked> {
        let position = self.u64_at(position);
        let mut pos = position.load(Ordering::Relaxed);
        loop {
            let state = self.state(pos).load(Ordering::Acquire);
            let (seq, claimed_by) = split(state);
            let ahead = distance(seq, turn(pos));
            if ahead == 0 {
                if claimed_by == 0
                    && self
                        .state(pos)
                        .compare_exchange_weak(
                            state,
                            join(seq, owner),
                            Ordering::AcqRel,
                            Ordering::Relaxed,
                        )
                        .is_ok()
                {
                    move_on(position, pos);
                    return Ok(Claim {
                        pos,
                        chunk: NO_CHUNK,
                    });
                }
                if claimed_by != 0 {
                    // Claimed by one that may not have moved the position on: help.
                    move_on(position, pos);
                }
            } else if ahead < 0 {
                return Err(Blocked {
                    index: pos % self.capacity,
                    state,
                });
            } else if let Some(blocked) = self.help_past(position, pos, ahead, state) {
                return Err(blocked);
            }
            pos = position.load(Ordering::Relaxed);
        }
    }

    /// For a claim that found the slot of `pos` ahead of `pos`'s turn
    /// (`ahead > 0`): the claimer of `pos` took the slot but has not moved
    /// `position` on yet, or died before it could (and the slot was since
    /// repaired, maybe received and released). Helps `position` on, as for a
    /// claimed slot; without this a claimer that died there left everyone
    /// else spinning on it forever (found by the `channel` fuzz target).
    ///
    /// A claimer can take a slot at most 2 × capacity half-steps ahead of
    /// the position it has not moved on (claimed, repaired, received,
    /// released, sent again). A slot further ahead while the position is
    /// still `pos` is corrupt memory: it is reported as blocked, rather than
    /// walked through one position at a time.
    fn help_past(&self, position: &AtomicU64, pos: u64, ahead: i32, state: u64) -> Option<Blocked> {
        if u64::from(ahead.unsigned_abs()) > 2 * self.capacity {
            return (position.load(Ordering::Relaxed) == pos).then_some(Blocked {
                index: pos % self.capacity,
                state,
            });
        }
        move_on(position, pos);
        None
    }

    /// Publishes a claimed slot holding `len` bytes. Returns whether a
    /// receiver may be asleep.
    ///
    /// The hand-over is a SeqCst swap, not a release store and a fence: the
    /// same order against a sleeper's count (which the sleeper makes with a
    /// fence of its own, on its slow path), in one locked instruction on
    /// x86 instead of a store and an `mfence`.
    pub(crate) fn publish(&self, claim: Claim, len: u32) -> bool {
        if claim.chunk != NO_CHUNK {
            let chunk = claim.chunk;
            // The chunk holds this message until its slot is released.
            self.pool.settle(&self.words, chunk, claim.pos);
        }
        self.len(claim.pos).store(len, Ordering::Relaxed);
        self.state(claim.pos)
            .swap(join(recv_turn(claim.pos), 0), Ordering::SeqCst);
        self.u32_at(RECV_SLEEPERS).load(Ordering::SeqCst) > 0
    }

    /// Releases a received slot for the next lap. Returns whether a sender
    /// may be asleep.
    pub(crate) fn release(&self, claim: Claim) -> bool {
        self.state(claim.pos).swap(
            join(send_turn(claim.pos.wrapping_add(self.capacity)), 0),
            Ordering::SeqCst,
        );
        self.u32_at(SEND_SLEEPERS).load(Ordering::SeqCst) > 0
    }

    /// For a claim on `side` that blocked: whether the ring is in a state no
    /// run of the protocol reaches (see "What a healthy ring can look like"
    /// in the module docs), so that waiting for it to change could last
    /// forever. `None` for every reachable state, and whenever the positions
    /// or the slot moved while it looked (then it is not a snapshot; the
    /// caller looks again before its next sleep). Slow path only: a dozen
    /// loads of shared cache lines.
    pub(crate) fn impossible(&self, side: Side) -> Option<Impossible> {
        let (own, other, turn): (_, _, fn(u64) -> u32) = match side {
            Side::Send => (ENQUEUE, DEQUEUE, send_turn),
            Side::Recv => (DEQUEUE, ENQUEUE, recv_turn),
        };
        let (own, other) = (self.u64_at(own), self.u64_at(other));
        // Other position, own position, slot, then all again: each bound
        // below needs one of these orders (module docs), and the repeat
        // makes the three one snapshot.
        let theirs = other.load(Ordering::SeqCst);
        let pos = own.load(Ordering::SeqCst);
        let state = self.state(pos).load(Ordering::SeqCst);
        if own.load(Ordering::SeqCst) != pos
            || other.load(Ordering::SeqCst) != theirs
            || self.state(pos).load(Ordering::SeqCst) != state
        {
            return None;
        }
        let (enqueue, dequeue) = match side {
            Side::Send => (pos, theirs),
            Side::Recv => (theirs, pos),
        };
        let capacity = self.capacity as i64;
        let held = enqueue.wrapping_sub(dequeue) as i64;
        if !(-1..=capacity + 1).contains(&held) {
            return Some(Impossible {
                offset: ENQUEUE,
                what: format!(
                    "the enqueue position {enqueue} is {held} past the dequeue position \
                     {dequeue}; in a ring of {capacity} slots it is -1 to {} past it",
                    capacity + 1
                ),
            });
        }
        let (seq, owner) = split(state);
        // Half-steps from the position's turn, and one lap of the ring.
        let ahead = seq.wrapping_sub(turn(pos));
        let lap = (2 * self.capacity) as u32;
        // Where the last lap's turn of the same slot (`pos - capacity`'s) is.
        let last_lap = lap.wrapping_neg();
        let possible = match side {
            Side::Send => {
                // Its turn, claimed, or taken on by a claimer of `pos` that
                // has not moved `enqueue` on.
                ahead == 0 || ahead == 1 || ahead == lap
                    // The last lap's message: claimed by a receiver, or in a full ring.
                    || (ahead == last_lap + 1 && (owner != 0 || held >= capacity))
                    // The last lap's sender still at work, in a full ring.
                    || (ahead == last_lap && owner != 0 && held >= capacity)
            }
            Side::Recv => {
                // Its turn, or taken on by a claimer of `pos` that has not
                // moved `dequeue` on.
                ahead == 0 || ahead == lap - 1 || ahead == lap
                    // Claimed by its sender, or free and no one has claimed `pos`.
                    || (ahead == u32::MAX && (owner != 0 || held <= 0))
                    // The last lap's receiver still at work; no one has claimed `pos`.
                    || (ahead == last_lap && owner != 0 && held <= 0)
            }
        };
        if possible {
            return None;
        }
        let name = match side {
            Side::Send => "enqueue",
            Side::Recv => "dequeue",
        };
        Some(Impossible {
            offset: self.slot_offset(pos),
            what: format!(
                "slot {} is in a state no sender, receiver or repair leaves it in: \
                 sequence {seq} (owner {owner:#x}), {} half-steps from the turn ({}) of \
                 the {name} position {pos}, the enqueue position {held} past the dequeue \
                 position, in a ring of {capacity} slots",
                pos % self.capacity,
                ahead as i32,
                turn(pos),
            ),
        })
    }

    /// How many messages the ring holds, between the positions as read now
    /// (the dequeue position first, so a race never reads fewer than none),
    /// within `0..=capacity`.
    pub(crate) fn held(&self) -> u64 {
        let dequeue = self.u64_at(DEQUEUE).load(Ordering::SeqCst);
        let enqueue = self.u64_at(ENQUEUE).load(Ordering::SeqCst);
        (enqueue.wrapping_sub(dequeue) as i64).clamp(0, self.capacity as i64) as u64
    }

    /// Whether `len` is a length a message may have.
    pub(crate) fn fits(&self, len: u32) -> bool {
        len <= self.max_message_size
    }

    /// Repairs the slot that blocked a claim if its owner (a token, with
    /// [`READING`] cleared) is not `alive` (see the module docs). Returns
    /// whether it changed anything.
    pub(crate) fn repair(&self, blocked: Blocked, alive: impl Fn(u32) -> bool) -> bool {
        let (seq, owner) = split(blocked.state);
        if owner == 0 || alive(owner & !READING) {
            return false;
        }
        let offset = SLOTS + blocked.index * self.stride;
        let state = self.u64_at(offset + SLOT_STATE);
        let repaired = if owner & READING != 0 {
            // A dead receiver held turn 2p + 1: free the slot for 2(p + capacity).
            join(
                seq.wrapping_sub(1).wrapping_add(send_turn(self.capacity)),
                0,
            )
        } else {
            // A dead sender held turn 2p: publish a tombstone as 2p + 1.
            self.u32_at(offset + SLOT_LEN)
                .store(TOMBSTONE, Ordering::Relaxed);
            join(seq.wrapping_add(1), 0)
        };
        state
            .compare_exchange(blocked.state, repaired, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_docs_tables_are_the_structs() {
        use crate::doc_tables::{self, layout};
        let layouts = [
            layout!(RingHeader {
                header,
                capacity,
                max_message_size,
                stride,
                chunks,
                _pad_geometry,
                enqueue,
                _pad_enqueue,
                dequeue,
                _pad_dequeue,
                recv_bell,
                recv_sleepers,
                _pad_recv,
                send_bell,
                send_sleepers,
                _pad_send,
                generations,
            }),
            layout!(SlotHeader { state, len, chunk }),
            doc_tables::header(),
        ];
        let source = include_str!("ring.rs");
        let rows = doc_tables::check(source, &["RingHeader", "SlotHeader"], &layouts);
        assert_eq!(rows, 15);
    }

    /// A ring over private memory, for the index and sequence arithmetic.
    struct Heap {
        _memory: Vec<u64>,
        ring: Ring,
    }

    fn heap(capacity: u32, max: u32) -> Heap {
        heap_at(capacity, max, 0)
    }

    /// A fresh ring whose positions start at `start`.
    fn heap_at(capacity: u32, max: u32, start: u64) -> Heap {
        heap_with(capacity, max, 0, start)
    }

    /// A fresh ring with a pool of `chunks` chunks (0: none), positions at
    /// `start`.
    fn heap_with(capacity: u32, max: u32, chunks: u32, start: u64) -> Heap {
        let size = Ring::size_for(capacity, max, chunks).unwrap();
        let mut memory = vec![0u64; size.div_ceil(8) as usize];
        let base = NonNull::new(memory.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: the Vec outlives the ring (both live in Heap) and is
        // 8-aligned, which is all the ring's atomics need.
        let ring = unsafe { Ring::new(base, size, capacity, max, chunks) }.unwrap();
        ring.u64_at(ENQUEUE).store(start, Ordering::Relaxed);
        ring.u64_at(DEQUEUE).store(start, Ordering::Relaxed);
        for pos in (0..u64::from(capacity)).map(|i| start.wrapping_add(i)) {
            ring.state(pos)
                .store(join(send_turn(pos), 0), Ordering::Relaxed);
        }
        Heap {
            _memory: memory,
            ring,
        }
    }

    /// Fails, saying `what` the ring was, if either side finds it impossible.
    fn assert_possible(ring: &Ring, what: &str) {
        for side in [Side::Send, Side::Recv] {
            if let Some(impossible) = ring.impossible(side) {
                panic!("{what}: {side:?} found {impossible:?}");
            }
        }
    }

    /// What `side` finds impossible, which it must.
    fn impossible(ring: &Ring, side: Side) -> Impossible {
        ring.impossible(side)
            .unwrap_or_else(|| panic!("{side:?} found nothing impossible"))
    }

    /// A small xorshift generator: the tests need no quality, only repeatability.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    #[test]
    fn a_single_slot_ring_alternates() {
        let Heap { ring, .. } = &heap(1, 8);
        for pos in 0..4 {
            let claim = ring.claim_send(1).unwrap();
            assert_eq!(claim.pos, pos);
            ring.publish(claim, 1);
            assert!(ring.claim_send(1).is_err(), "full with one message");
            let (claim, _) = ring.claim_recv(2).unwrap();
            assert!(ring.claim_recv(2).is_err(), "empty again");
            ring.release(claim);
        }
    }

    #[test]
    fn full_and_empty_edges() {
        let Heap { ring, .. } = &heap(3, 8);
        assert!(ring.claim_recv(1).is_err(), "empty");
        for expected in 0..3 {
            let claim = ring.claim_send(1).unwrap();
            assert_eq!(claim.pos, expected);
            ring.publish(claim, 1);
        }
        assert!(ring.claim_send(1).is_err(), "full after capacity messages");
        for expected in 0..3 {
            let (claim, len) = ring.claim_recv(2).unwrap();
            assert_eq!((claim.pos, len), (expected, 1));
            ring.release(claim);
        }
        assert!(ring.claim_recv(2).is_err());
        assert_eq!(ring.claim_send(1).unwrap().pos, 3, "the next lap");
    }

    #[test]
    fn sequences_wrap_around_u32() {
        let Heap { ring, .. } = &heap(2, 8);
        let start = u64::from(u32::MAX / 2) - 1;
        ring.u64_at(ENQUEUE).store(start, Ordering::Relaxed);
        ring.u64_at(DEQUEUE).store(start, Ordering::Relaxed);
        for pos in start..start + 2 {
            ring.state(pos)
                .store(join(send_turn(pos), 0), Ordering::Relaxed);
        }
        for round in 0..6 {
            let claim = ring.claim_send(1).unwrap();
            assert_eq!(claim.pos, start + round);
            ring.publish(claim, 4);
            let (claim, _) = ring.claim_recv(1).unwrap();
            assert_eq!(claim.pos, start + round);
            ring.release(claim);
        }
    }

    #[test]
    fn a_dead_senders_slot_becomes_a_tombstone() {
        let Heap { ring, .. } = &heap(2, 8);
        let claim = ring.claim_send(77).unwrap();
        let blocked = ring.claim_recv(1).unwrap_err();
        assert!(
            !ring.repair(blocked, |_| true),
            "a live owner is left alone"
        );
        assert!(ring.repair(blocked, |owner| owner != 77));
        let (got, len) = ring.claim_recv(1).unwrap();
        assert_eq!((got.pos, len), (claim.pos, TOMBSTONE));
    }

    #[test]
    fn a_dead_receivers_slot_is_released() {
        let Heap { ring, .. } = &heap(1, 8);
        let claim = ring.claim_send(1).unwrap();
        ring.publish(claim, 3);
        let (_taken, _) = ring.claim_recv(88).unwrap();
        let blocked = ring.claim_send(1).unwrap_err();
        assert!(ring.repair(blocked, |owner| owner != 88));
        assert_eq!(ring.claim_send(1).unwrap().pos, 1, "free for the next lap");
    }

    #[test]
    fn a_sender_that_died_before_moving_on_wedges_no_one() {
        let Heap { ring, .. } = &heap(2, 8);
        let claim = ring.claim_send(77).unwrap();
        // It died between claiming the slot and moving `enqueue` on.
        ring.u64_at(ENQUEUE).store(claim.pos, Ordering::Relaxed);
        let blocked = ring.claim_recv(1).unwrap_err();
        assert!(ring.repair(blocked, |owner| owner != 77));
        // The tombstone is ahead of the position: senders help it on rather than spin.
        assert_eq!(ring.claim_send(1).unwrap().pos, 1);
        let (got, len) = ring.claim_recv(1).unwrap();
        assert_eq!((got.pos, len), (0, TOMBSTONE));
    }

    #[test]
    fn a_receiver_that_died_before_moving_on_wedges_no_one() {
        let Heap { ring, .. } = &heap(2, 8);
        for _ in 0..2 {
            let claim = ring.claim_send(1).unwrap();
            ring.publish(claim, 5);
        }
        let (taken, _) = ring.claim_recv(88).unwrap();
        // It died between claiming the slot and moving `dequeue` on.
        ring.u64_at(DEQUEUE).store(taken.pos, Ordering::Relaxed);
        let blocked = ring.claim_send(1).unwrap_err();
        assert!(ring.repair(blocked, |owner| owner != 88));
        // Its slot is free for the next lap, ahead of the position: receivers help it on.
        let (got, len) = ring.claim_recv(1).unwrap();
        assert_eq!((got.pos, len), (1, 5));
        ring.release(got);
        assert!(ring.claim_recv(1).is_err(), "its message is lost with it");
        assert_eq!(ring.claim_send(1).unwrap().pos, 2);
    }

    #[test]
    fn a_slot_far_ahead_of_the_position_is_blocked_not_spun_on() {
        let Heap { ring, .. } = &heap(2, 8);
        // Garbage: slot 0 claims a turn a billion positions on.
        ring.state(0)
            .store(join(2_000_000_000, 0), Ordering::Relaxed);
        assert!(ring.claim_send(1).is_err());
        assert!(ring.claim_recv(1).is_err());
        for side in [Side::Send, Side::Recv] {
            assert_eq!(impossible(ring, side).offset, SLOTS, "{side:?}");
        }
        // Within 2 * capacity half-steps it is a claimer that has not moved on: helped past.
        ring.state(0).store(join(4, 0), Ordering::Relaxed);
        assert_possible(ring, "a claimer of 0 not moved on, its message received");
        assert_eq!(ring.claim_send(1).unwrap().pos, 1);
    }

    #[test]
    fn impossible_positions_too_far_apart_either_way() {
        let Heap { ring, .. } = &heap(4, 8);
        let (enqueue, dequeue) = (ring.u64_at(ENQUEUE), ring.u64_at(DEQUEUE));
        // (enqueue, dequeue): capacity + 2 apart, one more than a dead
        // receiver's slot allows; the other way 2 apart, one more than a
        // dead sender's; far apart, and across the end of the u64 range.
        for (e, d) in [
            (6, 0),
            (0, 2),
            (1000, 0),
            (0, 1000),
            (5, u64::MAX),
            (u64::MAX - 1, 0),
        ] {
            enqueue.store(e, Ordering::Relaxed);
            dequeue.store(d, Ordering::Relaxed);
            for side in [Side::Send, Side::Recv] {
                let found = impossible(ring, side);
                assert_eq!(found.offset, ENQUEUE, "{e} {d} {side:?}");
                assert!(
                    found.what.contains(&format!("enqueue position {e} is")),
                    "{found:?}"
                );
                assert!(
                    found.what.contains(&format!("dequeue position {d};")),
                    "{found:?}"
                );
            }
        }
    }

    #[test]
    fn impossible_slot_far_behind_its_turn() {
        let Heap { ring, .. } = &heap(4, 8);
        // Slot 0 at position 0's turn less 100 half-steps, and less 2 (one
        // lap of a ring of one slot, not of four).
        for behind in [100, 2, 1 << 31] {
            ring.state(0).store(
                join(send_turn(0).wrapping_sub(behind), 0),
                Ordering::Relaxed,
            );
            for side in [Side::Send, Side::Recv] {
                let found = impossible(ring, side);
                assert_eq!(found.offset, SLOTS, "{behind} {side:?}");
                assert!(found.what.contains("slot 0 "), "{found:?}");
            }
        }
    }

    #[test]
    fn impossible_slot_far_ahead_of_its_turn() {
        let Heap { ring, .. } = &heap(4, 8);
        // More than a lap ahead, and ahead but between laps.
        for ahead in [2 * 4 + 2, 1000, (1 << 31) - 1] {
            for owner in [0, 77, 77 | READING] {
                ring.state(0).store(
                    join(send_turn(0).wrapping_add(ahead), owner),
                    Ordering::Relaxed,
                );
                for side in [Side::Send, Side::Recv] {
                    assert_eq!(impossible(ring, side).offset, SLOTS, "{ahead} {side:?}");
                }
            }
        }
    }

    #[test]
    fn impossible_last_laps_message_in_a_ring_not_full() {
        let Heap { ring, .. } = &heap(4, 8);
        // Empty by its positions, yet slot 0 holds position -4's message
        // (or -4's sender is at work on it): senders and receivers alike
        // would wait for it forever.
        for state in [
            join(recv_turn(0u64.wrapping_sub(4)), 0),
            join(send_turn(0u64.wrapping_sub(4)), 77),
        ] {
            ring.state(0).store(state, Ordering::Relaxed);
            assert_eq!(impossible(ring, Side::Send).offset, SLOTS);
            assert_eq!(impossible(ring, Side::Recv).offset, SLOTS);
        }
        // In a full ring, the last lap's turn unclaimed: no sender took it,
        // yet `enqueue` went past it.
        let Heap { ring, .. } = &heap(4, 8);
        for _ in 0..4 {
            let claim = ring.claim_send(1).unwrap();
            ring.publish(claim, 1);
        }
        ring.state(0)
            .store(join(send_turn(0), 0), Ordering::Relaxed);
        assert_eq!(impossible(ring, Side::Send).offset, SLOTS);
    }

    #[test]
    fn impossible_empty_slot_behind_the_enqueue_position() {
        let Heap { ring, .. } = &heap(4, 8);
        // `enqueue` says two messages were sent; slot 0 says no one sent
        // position 0: receivers would wait for it forever.
        ring.u64_at(ENQUEUE).store(2, Ordering::Relaxed);
        let found = impossible(ring, Side::Recv);
        assert_eq!(found.offset, SLOTS);
        assert!(found.what.contains("dequeue position 0"), "{found:?}");
        assert!(
            ring.impossible(Side::Send).is_none(),
            "the sender's slot is ready"
        );
        // The slot of a receiver still at work on the last lap, likewise.
        let Heap { ring, .. } = &heap(2, 8);
        for _ in 0..2 {
            let claim = ring.claim_send(1).unwrap();
            ring.publish(claim, 1);
        }
        let (_reading, _) = ring.claim_recv(2).unwrap();
        let claim = ring.claim_recv(2).unwrap().0;
        ring.release(claim);
        assert_possible(ring, "D = 2, slot 0 still read, slot 1 released");
        ring.u64_at(ENQUEUE).store(3, Ordering::Relaxed);
        assert_eq!(impossible(ring, Side::Recv).offset, SLOTS);
    }

    #[test]
    fn healthy_edges_are_possible() {
        let Heap { ring, .. } = &heap(2, 8);
        assert_possible(ring, "fresh");
        for _ in 0..2 {
            let claim = ring.claim_send(1).unwrap();
            ring.publish(claim, 1);
        }
        assert_possible(ring, "full");
        // A receiver of 0 that died before moving `dequeue` on.
        let (taken, _) = ring.claim_recv(88).unwrap();
        ring.u64_at(DEQUEUE).store(taken.pos, Ordering::Relaxed);
        assert_possible(ring, "full, 0 claimed, not moved on");
        let blocked = ring.claim_send(1).unwrap_err();
        assert!(ring.repair(blocked, |owner| owner != 88));
        assert_possible(ring, "0 released by a repair, not moved on");
        // Its slot sent to again: enqueue 3, dequeue still 0.
        let claim = ring.claim_send(1).unwrap();
        ring.publish(claim, 1);
        assert_eq!(ring.u64_at(ENQUEUE).load(Ordering::Relaxed), 3);
        assert_possible(ring, "capacity + 1 apart");
        // Drain it: dequeue helped past 0, then 1 and 2 received.
        for _ in 0..2 {
            let (claim, _) = ring.claim_recv(2).unwrap();
            ring.release(claim);
        }
        assert!(ring.claim_recv(2).is_err());
        assert_possible(ring, "empty after a lost message");
        // A sender of 3 that died before moving `enqueue` on; its tombstone received.
        let claim = ring.claim_send(77).unwrap();
        ring.u64_at(ENQUEUE).store(claim.pos, Ordering::Relaxed);
        assert_possible(ring, "3 claimed, not moved on");
        let blocked = ring.claim_recv(2).unwrap_err();
        assert!(ring.repair(blocked, |owner| owner != 77));
        assert_possible(ring, "a tombstone, enqueue not moved on");
        let (got, len) = ring.claim_recv(2).unwrap();
        assert_eq!((got.pos, len), (3, TOMBSTONE));
        assert_possible(ring, "the tombstone being read: dequeue 1 past enqueue");
        ring.release(got);
        assert_possible(ring, "the tombstone released: dequeue 1 past enqueue");
        // A sender at work in an empty ring; a receiver at work in a full one.
        let sending = ring.claim_send(1).unwrap();
        assert!(ring.claim_recv(2).is_err());
        assert_possible(ring, "empty, 4 being sent");
        ring.publish(sending, 1);
        let claim = ring.claim_send(1).unwrap();
        ring.publish(claim, 1);
        let (reading, _) = ring.claim_recv(2).unwrap();
        assert_eq!(reading.pos, 4);
        assert!(ring.claim_send(1).is_err(), "6 waits for 4's slot");
        assert_possible(ring, "full, the last lap's 4 still being read");
        ring.release(reading);
        assert_eq!(ring.claim_send(1).unwrap().pos, 6);
    }

    /// A claim in flight in the model below.
    struct Flight {
        claim: Claim,
        side: Side,
        owner: u32,
    }

    /// Random runs of the protocol, one step at a time: claims whose
    /// claimer is slow to move the position on, publishes, releases, deaths
    /// and repairs. After every step, neither side finds the ring impossible.
    #[test]
    fn impossible_never_in_a_run_of_the_protocol() {
        let steps = if cfg!(miri) { 400 } else { 40_000 };
        for (capacity, start) in [(1, 0), (2, u64::MAX - 5), (3, u64::from(u32::MAX) - 4)] {
            let Heap { ring, .. } = &heap_at(capacity, 8, start);
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ start);
            let mut flights: Vec<Flight> = Vec::new();
            let mut dead = Vec::new();
            let (mut sent, mut received, mut repaired) = (0, 0, 0);
            let mut held_seen = (0, 0);
            for step in 0..steps {
                // A new participant each step: tokens are never reused.
                let token = 10 + step;
                let side = if rng.below(2) == 0 {
                    Side::Send
                } else {
                    Side::Recv
                };
                let position = match side {
                    Side::Send => ring.u64_at(ENQUEUE),
                    Side::Recv => ring.u64_at(DEQUEUE),
                };
                match rng.below(4) {
                    // Claim, and maybe be slow to move the position on.
                    0 | 1 => {
                        let claimed = match side {
                            Side::Send => ring.claim_send(token),
                            Side::Recv => ring.claim_recv(token).map(|(claim, _)| claim),
                        };
                        match claimed {
                            Ok(claim) => {
                                if rng.below(2) == 0 {
                                    position.store(claim.pos, Ordering::Relaxed);
                                }
                                flights.push(Flight {
                                    claim,
                                    side,
                                    owner: token,
                                });
                            }
                            Err(blocked) => {
                                repaired +=
                                    u32::from(ring.repair(blocked, |owner| {
                                        !dead.contains(&(owner & !READING))
                                    }));
                            }
                        }
                    }
                    // A claimer finishes: moves its position on (if no
                    // one helped it yet), then publishes or releases.
                    2 if !flights.is_empty() => {
                        let Flight { claim, side, .. } =
                            flights.swap_remove(rng.below(flights.len() as u64) as usize);
                        match side {
                            Side::Send => {
                                move_on(ring.u64_at(ENQUEUE), claim.pos);
                                ring.publish(claim, 1);
                                sent += 1;
                            }
                            Side::Recv => {
                                move_on(ring.u64_at(DEQUEUE), claim.pos);
                                ring.release(claim);
                                received += 1;
                            }
                        }
                    }
                    // A claimer dies.
                    3 if !flights.is_empty() && rng.below(4) == 0 => {
                        let flight = flights.swap_remove(rng.below(flights.len() as u64) as usize);
                        dead.push(flight.owner);
                    }
                    _ => {}
                }
                assert_possible(ring, &format!("capacity {capacity}, step {step}"));
                let enqueue = ring.u64_at(ENQUEUE).load(Ordering::Relaxed);
                let held = enqueue.wrapping_sub(ring.u64_at(DEQUEUE).load(Ordering::Relaxed));
                held_seen.0 = held_seen.0.min(held as i64);
                held_seen.1 = held_seen.1.max(held as i64);
            }
            // Every kind of step happened, and the positions reached both
            // ends of what is possible.
            assert!(
                sent > 10 && received > 10 && repaired > 3,
                "{sent} {received} {repaired}"
            );
            if !cfg!(miri) {
                assert_eq!(held_seen, (-1, i64::from(capacity) + 1));
            }
        }
    }

    /// Two senders and two receivers on threads over rings of one and two
    /// slots, and a checker: no snapshot of a busy ring is ever impossible,
    /// and neither is any ring a blocked claim finds.
    #[test]
    fn impossible_never_in_a_busy_ring() {
        for capacity in [1, 2] {
            busy_ring(capacity);
        }
    }

    fn busy_ring(capacity: u32) {
        use std::sync::atomic::AtomicBool;
        let per_thread = if cfg!(miri) { 20 } else { 50_000 };
        let Heap { ring, .. } = &heap(capacity, 8);
        let done = &AtomicBool::new(false);
        std::thread::scope(|scope| {
            let mut workers = Vec::new();
            for token in 1..=2 {
                workers.push(scope.spawn(move || {
                    for _ in 0..per_thread {
                        loop {
                            match ring.claim_send(token) {
                                Ok(claim) => {
                                    ring.publish(claim, 1);
                                    break;
                                }
                                Err(_) => {
                                    assert_possible(ring, "a blocked sender");
                                    std::thread::yield_now();
                                }
                            }
                        }
                    }
                }));
                workers.push(scope.spawn(move || {
                    for _ in 0..per_thread {
                        loop {
                            match ring.claim_recv(token) {
                                Ok((claim, _)) => {
                                    ring.release(claim);
                                    break;
                                }
                                Err(_) => {
                                    assert_possible(ring, "a blocked receiver");
                                    std::thread::yield_now();
                                }
                            }
                        }
                    }
                }));
            }
            scope.spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    assert_possible(ring, "a busy ring");
                    std::thread::yield_now();
                }
            });
            for worker in workers {
                worker.join().unwrap();
            }
            done.store(true, Ordering::Relaxed);
        });
        assert_possible(ring, "after the run");
    }

    /// Sends one message of `tag` through a pooled ring; the chunk it used.
    fn send_pooled(ring: &Ring, tag: u8) -> u32 {
        let mut claim = ring.claim_send(1).unwrap();
        assert!(ring.reserve(&mut claim, 1), "a chunk for a claimed slot");
        let chunk = claim.chunk;
        // SAFETY: the chunk is this claim's, inside the heap.
        unsafe { *ring.claimed_payload(&claim).as_ptr() = tag };
        ring.publish(claim, 1);
        chunk
    }

    /// Receives one message from a pooled ring: its first byte.
    fn recv_pooled(ring: &Ring) -> u8 {
        let (claim, len) = ring.claim_recv(2).unwrap();
        assert_eq!(len, 1);
        // SAFETY: the claimed message's chunk lies inside the heap.
        let tag = unsafe { *ring.payload(claim.pos).unwrap().as_ptr() };
        ring.release(claim);
        tag
    }

    #[test]
    fn a_pool_keeps_a_stream_in_the_chunk_received_last() {
        let heap = heap_with(4, 256, 6, 0);
        let ring = &heap.ring;
        let first = send_pooled(ring, 0);
        assert_eq!(recv_pooled(ring), 0);
        for tag in 1..40u8 {
            assert_eq!(
                send_pooled(ring, tag),
                first,
                "message {tag}: the warm chunk"
            );
            assert_eq!(recv_pooled(ring), tag);
        }
    }

    #[test]
    fn a_pool_never_hands_out_the_chunk_of_a_message_not_released() {
        let heap = heap_with(4, 256, 6, 0);
        let ring = &heap.ring;
        let mut held: Vec<u32> = (0..4u8).map(|tag| send_pooled(ring, tag)).collect();
        held.sort_unstable();
        held.dedup();
        assert_eq!(held.len(), 4, "four messages not received: four chunks");
        // A receiver claims the first and has not released it: its chunk
        // stays taken.
        let (reading, _) = ring.claim_recv(2).unwrap();
        let mut spare = Claim {
            pos: 99,
            chunk: NO_CHUNK,
        };
        assert!(ring.reserve(&mut spare, 7));
        assert!(!held.contains(&spare.chunk));
        let mut none = Claim {
            pos: 99,
            chunk: NO_CHUNK,
        };
        assert!(ring.reserve(&mut none, 8), "the sixth chunk");
        assert!(!ring.reserve(&mut none, 9), "every chunk held");
        ring.release(reading);
        let mut after = Claim {
            pos: 98,
            chunk: NO_CHUNK,
        };
        assert!(ring.reserve(&mut after, 9), "the released message's chunk");
        assert!(held.contains(&after.chunk));
        // The dead's reservations are freed.
        assert!(ring.free_dead_reservations(|token| token == 7 || token == 8));
    }

    #[test]
    fn geometry_that_does_not_fit_is_refused() {
        let mut memory = vec![0u64; 1024];
        let base = NonNull::new(memory.as_mut_ptr().cast::<u8>()).unwrap();
        let len = memory.len() as u64 * 8;
        let fits = |capacity, max| {
            // SAFETY: the Vec is live and 8-aligned; the ring is dropped at once.
            unsafe { Ring::new(base, len, capacity, max, 0) }.is_ok()
        };
        assert!(fits(1, 1));
        let slots = ((len - SLOTS) / stride_for(48)) as u32;
        assert!(fits(slots, 48), "exactly full");
        assert!(!fits(slots + 1, 48), "one slot too many");
        assert!(!fits(1, (len - SLOTS) as u32), "the header does not fit");
        assert!(!fits(0, 8), "no slots");
        assert!(!fits(u32::MAX, u32::MAX), "overflow");
        assert_eq!(Ring::size_for(u32::MAX, u32::MAX, 0), None, "overflow");
    }
}
