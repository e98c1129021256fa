//! The channel's ring: Dmitry Vyukov's bounded MPMC queue
//! (<https://www.1024cores.net/home/lock-free-algorithms/queues/bounded-mpmc-queue>),
//! laid out in shared memory and extended so that no crashed process can
//! wedge it. This is the only place the channel touches raw memory.
//!
//! # Layout
//!
//! After the segment header (magic, ready flag, version at 0..16):
//!
//! | offset | field | who changes it |
//! |---|---|---|
//! | 16 | `capacity: u32`, slots | the creator, once |
//! | 20 | `max_message_size: u32` | the creator, once |
//! | 24 | `stride: u32`, bytes per slot | the creator, once |
//! | 128 | `enqueue: u64`, the next position to send to (own cache line) | senders (CAS) |
//! | 192 | `dequeue: u64`, the next position to receive from (own cache line) | receivers (CAS) |
//! | 256 | `recv_bell: u32`, `recv_sleepers: u32` | senders ring, receivers sleep |
//! | 320 | `send_bell: u32`, `send_sleepers: u32` | receivers ring, senders sleep |
//! | 384 | the slots, `stride` bytes each | |
//!
//! A slot is `state: u64` (the sequence number in the high 32 bits, the
//! owner in the low 32), `len: u32`, 4 bytes of padding, then the payload;
//! the stride is a multiple of 64 so slots never share a cache line's
//! state word.
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
//! by a compare-and-swap that writes its process id into the owner half of
//! the state (with [`READING`] set for a receiver), then moves the shared
//! position on (anyone who finds a claimed slot at the position helps move
//! it on, so a claimer that dies there blocks no one), copies, and finally
//! publishes or releases the slot with owner 0. So a slot that stays owned
//! names the process working on it. When a sender finds the ring full, or a
//! receiver finds it empty, at a slot whose owner is dead, it repairs it:
//!
//! - a dead sender's slot is published as a tombstone (`len` =
//!   [`TOMBSTONE`]), which receivers skip: that one message is dropped, and
//!   no one ever sees it half-written;
//! - a dead receiver's slot is released: that one message, which the dead
//!   process had taken, is lost with it. It is never delivered twice.
//!
//! A process id reused by a new process before the repair makes the slot
//! look alive until that process exits. Linux hands out ids in increasing
//! order, so that takes a wrap of the id space; Windows (and Wine) may reuse
//! an id as soon as the last handle to the dead process closes, so a parent
//! that kills a channel's user should keep its `Child` (its handle) until
//! the slot is repaired. Processes in different pid namespaces must not
//! share a channel.

use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use crate::error::{Error, Result};

pub(crate) const CAPACITY: u64 = 16;
pub(crate) const MAX_MESSAGE: u64 = 20;
pub(crate) const STRIDE: u64 = 24;
const ENQUEUE: u64 = 128;
const DEQUEUE: u64 = 192;
pub(crate) const RECV_BELL: u64 = 256;
pub(crate) const RECV_SLEEPERS: u64 = 260;
pub(crate) const SEND_BELL: u64 = 320;
pub(crate) const SEND_SLEEPERS: u64 = 324;
/// Where the slots start.
pub(crate) const SLOTS: u64 = 384;
/// Bytes before a slot's payload.
pub(crate) const SLOT_HEADER: u64 = 16;
/// The owner bit that marks a receiver's claim.
pub(crate) const READING: u32 = 1 << 31;
/// The `len` of a slot whose sender died before publishing.
pub(crate) const TOMBSTONE: u32 = u32::MAX;

/// The bytes per slot for messages of at most `max_message_size` bytes.
pub(crate) fn stride_for(max_message_size: u32) -> u64 {
    (SLOT_HEADER + u64::from(max_message_size)).div_ceil(64) * 64
}

/// The sequence number of a slot free for the sender of position `pos`.
pub(crate) fn send_turn(pos: u64) -> u32 {
    pos.wrapping_mul(2) as u32
}

/// The sequence number of a slot holding the message of position `pos`.
fn recv_turn(pos: u64) -> u32 {
    send_turn(pos).wrapping_add(1)
}

fn join(seq: u32, owner: u32) -> u64 {
    (u64::from(seq) << 32) | u64::from(owner)
}

fn split(state: u64) -> (u32, u32) {
    ((state >> 32) as u32, state as u32)
}

/// Signed distance from `b` to `a` on the wrapping 32-bit sequence circle.
fn distance(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
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

/// The ring over a channel's mapped memory.
pub(crate) struct Ring {
    base: NonNull<u8>,
    capacity: u64,
    stride: u64,
    max_message_size: u32,
}

// SAFETY: every access to the ring's memory goes through atomics, or copies
// into and out of slots this process has claimed; nothing is tied to a thread.
unsafe impl Send for Ring {}
// SAFETY: as for Send.
unsafe impl Sync for Ring {}

/// A slot this process claimed for sending or receiving.
#[derive(Debug)]
pub(crate) struct Claim {
    pub(crate) pos: u64,
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
    ) -> Result<Ring> {
        let stride = stride_for(max_message_size);
        let needed = u64::from(capacity)
            .checked_mul(stride)
            .and_then(|slots| slots.checked_add(SLOTS));
        if capacity == 0 || needed.is_none_or(|needed| needed > len) {
            return Err(Error::Corrupt {
                offset: CAPACITY,
                reason: format!(
                    "a channel of {capacity} slots of {max_message_size} bytes does not fit in {len} bytes"
                ),
            });
        }
        Ok(Ring {
            base,
            capacity: u64::from(capacity),
            stride,
            max_message_size,
        })
    }

    /// The bytes a channel of this geometry takes.
    pub(crate) fn size_for(capacity: u32, max_message_size: u32) -> Option<u64> {
        u64::from(capacity)
            .checked_mul(stride_for(max_message_size))?
            .checked_add(SLOTS)
    }

    /// The `AtomicU64` at `offset` from the start.
    fn u64_at(&self, offset: u64) -> &AtomicU64 {
        // SAFETY: every offset used is inside the mapping (checked in `new`)
        // and 8-aligned (header fields and slot starts are multiples of 8 in
        // a page-aligned mapping).
        unsafe { &*self.base.as_ptr().add(offset as usize).cast::<AtomicU64>() }
    }

    /// The `AtomicU32` at `offset` from the start.
    pub(crate) fn u32_at(&self, offset: u64) -> &AtomicU32 {
        // SAFETY: as in u64_at, 4-aligned.
        unsafe { &*self.base.as_ptr().add(offset as usize).cast::<AtomicU32>() }
    }

    fn slot_offset(&self, pos: u64) -> u64 {
        SLOTS + (pos % self.capacity) * self.stride
    }

    fn state(&self, pos: u64) -> &AtomicU64 {
        self.u64_at(self.slot_offset(pos))
    }

    fn len(&self, pos: u64) -> &AtomicU32 {
        self.u32_at(self.slot_offset(pos) + 8)
    }

    /// The payload of the slot of `pos`: `max_message_size` bytes.
    pub(crate) fn payload(&self, pos: u64) -> NonNull<u8> {
        // SAFETY: the slot lies inside the mapping (checked in `new`).
        unsafe {
            self.base
                .add((self.slot_offset(pos) + SLOT_HEADER) as usize)
        }
    }

    /// Claims the next free slot for sending, as process `pid`.
    #[inline]
    pub(crate) fn claim_send(&self, pid: u32) -> std::result::Result<Claim, Blocked> {
        self.claim(ENQUEUE, send_turn, pid)
    }

    /// Claims the next message for receiving, as process `pid`; its length.
    #[inline]
    pub(crate) fn claim_recv(&self, pid: u32) -> std::result::Result<(Claim, u32), Blocked> {
        let claim = self.claim(DEQUEUE, recv_turn, pid | READING)?;
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
                    return Ok(Claim { pos });
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
    pub(crate) fn publish(&self, claim: Claim, len: u32) -> bool {
        self.len(claim.pos).store(len, Ordering::Relaxed);
        self.state(claim.pos)
            .store(join(recv_turn(claim.pos), 0), Ordering::Release);
        fence(Ordering::SeqCst);
        self.u32_at(RECV_SLEEPERS).load(Ordering::Relaxed) > 0
    }

    /// Releases a received slot for the next lap. Returns whether a sender
    /// may be asleep.
    pub(crate) fn release(&self, claim: Claim) -> bool {
        self.state(claim.pos).store(
            join(send_turn(claim.pos.wrapping_add(self.capacity)), 0),
            Ordering::Release,
        );
        fence(Ordering::SeqCst);
        self.u32_at(SEND_SLEEPERS).load(Ordering::Relaxed) > 0
    }

    /// Whether `len` is a length a message may have.
    pub(crate) fn fits(&self, len: u32) -> bool {
        len <= self.max_message_size
    }

    /// Repairs the slot that blocked a claim if its owner is dead (see the
    /// module docs). Returns whether it changed anything.
    pub(crate) fn repair(&self, blocked: Blocked, alive: impl Fn(u32) -> bool) -> bool {
        let (seq, owner) = split(blocked.state);
        if owner == 0 || alive(owner & !READING) {
            return false;
        }
        let offset = SLOTS + blocked.index * self.stride;
        let state = self.u64_at(offset);
        let repaired = if owner & READING != 0 {
            // A dead receiver held turn 2p + 1: free the slot for 2(p + capacity).
            join(
                seq.wrapping_sub(1).wrapping_add(send_turn(self.capacity)),
                0,
            )
        } else {
            // A dead sender held turn 2p: publish a tombstone as 2p + 1.
            self.u32_at(offset + 8).store(TOMBSTONE, Ordering::Relaxed);
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

    /// A ring over private memory, for the index and sequence arithmetic.
    struct Heap {
        _memory: Vec<u64>,
        ring: Ring,
    }

    fn heap(capacity: u32, max: u32) -> Heap {
        let size = Ring::size_for(capacity, max).unwrap();
        let mut memory = vec![0u64; size as usize / 8];
        let base = NonNull::new(memory.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: the Vec outlives the ring (both live in Heap) and is
        // 8-aligned, which is all the ring's atomics need.
        let ring = unsafe { Ring::new(base, size, capacity, max) }.unwrap();
        for pos in 0..u64::from(capacity) {
            ring.state(pos)
                .store(join(send_turn(pos), 0), Ordering::Relaxed);
        }
        Heap {
            _memory: memory,
            ring,
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
        assert!(ring.repair(blocked, |pid| pid != 77));
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
        assert!(ring.repair(blocked, |pid| pid != 88));
        assert_eq!(ring.claim_send(1).unwrap().pos, 1, "free for the next lap");
    }

    #[test]
    fn a_sender_that_died_before_moving_on_wedges_no_one() {
        let Heap { ring, .. } = &heap(2, 8);
        let claim = ring.claim_send(77).unwrap();
        // It died between claiming the slot and moving `enqueue` on.
        ring.u64_at(ENQUEUE).store(claim.pos, Ordering::Relaxed);
        let blocked = ring.claim_recv(1).unwrap_err();
        assert!(ring.repair(blocked, |pid| pid != 77));
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
        assert!(ring.repair(blocked, |pid| pid != 88));
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
        // Within 2 * capacity half-steps it is a claimer that has not moved on: helped past.
        ring.state(0).store(join(4, 0), Ordering::Relaxed);
        assert_eq!(ring.claim_send(1).unwrap().pos, 1);
    }

    #[test]
    fn geometry_that_does_not_fit_is_refused() {
        let mut memory = vec![0u64; 1024];
        let base = NonNull::new(memory.as_mut_ptr().cast::<u8>()).unwrap();
        let len = memory.len() as u64 * 8;
        let fits = |capacity, max| {
            // SAFETY: the Vec is live and 8-aligned; the ring is dropped at once.
            unsafe { Ring::new(base, len, capacity, max) }.is_ok()
        };
        assert!(fits(1, 1));
        assert!(fits(((len - SLOTS) / 64) as u32, 48), "exactly full");
        assert!(
            !fits(((len - SLOTS) / 64) as u32 + 1, 48),
            "one slot too many"
        );
        assert!(!fits(1, (len - SLOTS) as u32), "the header does not fit");
        assert!(!fits(0, 8), "no slots");
        assert!(!fits(u32::MAX, u32::MAX), "overflow");
        assert_eq!(Ring::size_for(u32::MAX, u32::MAX), None, "overflow");
    }
}
