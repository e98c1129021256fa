//! A pool of payload chunks after a ring's slots, for large messages: a
//! slot names the chunk its message is in (the slot header's `chunk`), and
//! a writer takes the chunk of the newest message no one needs any more,
//! which is the one written last while readers keep up. A ring of inline
//! payloads walks through every slot and writes each message into memory
//! the caches let go of long ago; a pool keeps a stream in one warm chunk
//! however many slots the ring has. The topic (`src/topic/ring.rs`) and
//! the channel (`src/channel/ring.rs`) each say when a message is no longer
//! needed; this module owns the chunks and their holder words.
//!
//! # Layout
//!
//! After the slots: a holder word (`u64`) per chunk, rounded up to a pair
//! of cache lines, then the chunks, each the largest message rounded up to
//! 128 bytes. A holder word is:
//!
//! - 0: the chunk never held anything (free);
//! - `seq + 1`: it holds message `seq` (published, or a tombstone), free
//!   once the ring says no one needs `seq`;
//! - [`PENDING`] with a participant's token: a writer reserved it and has
//!   not published into it yet; free only if that writer is dead.
//!
//! A writer reserves a chunk by a compare-and-swap of its holder word from
//! what made it free to "pending, mine", and settles it (`seq + 1`) just
//! before it publishes the message, so a chunk is never handed to two
//! writers, nor to one while a reader may still read it.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::slots::{LINE_PAIR, SLOT_CHUNK, SLOT_HEADER};
use crate::words::Words;

/// A topic's messages of at least this many bytes go in a pool (under
/// `Overflow::Block`); smaller ones in their slots, where the message
/// shares the slot's line with its state.
pub(crate) const POOL_FROM: u32 = 16 << 10;

/// A channel's messages of at least this many bytes go in a pool. Higher
/// than the topic's: a channel's receiver most often copies each message
/// out whole (`recv_into`), so the chunk it just read is in its caches,
/// and a sender that overwrote it at once had every line taken back from
/// the receiver's cache (a channel of 64 KiB messages received by copy
/// ran at a third of its speed with a pool); from 1 MiB up no cache near
/// a core keeps a message whole, and the chunk just released is the
/// warmest a sender can find. A topic's subscribers read in place, and
/// its fan-out gains from 16 KiB.
pub(crate) const CHANNEL_POOL_FROM: u32 = 1 << 20;

/// How many of the newest unneeded messages' chunks a writer tries, warm
/// first, before it looks through the whole pool.
const WARM_TRIES: u64 = 4;

/// A claim's chunk when it has none (payloads in the slots). A plain
/// `u32`, not an `Option`: a claim is copied on every send, and an
/// `Option<u32>` beside a `u64` was copied by loads wider than the stores
/// that made it, which x86 cannot forward (the channel's round trip took
/// twice as long).
pub(crate) const NO_CHUNK: u32 = u32::MAX;

/// A holder word's mark while a writer has the chunk reserved (with the
/// writer's token in the low 32 bits).
const PENDING: u64 = 1 << 63;

/// Where a pool lies in its object, and how large it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pool {
    chunks: u64,
    chunk_stride: u64,
    holders_at: u64,
    chunks_at: u64,
}

impl Pool {
    /// A pool of `chunks` chunks for messages of up to `max_message_size`
    /// bytes, starting at `at` (just after the slots); None if it would
    /// not fit in a u64.
    pub(crate) fn at(at: u64, chunks: u32, max_message_size: u32) -> Option<Pool> {
        let holders = (u64::from(chunks) * 8).div_ceil(LINE_PAIR) * LINE_PAIR;
        Some(Pool {
            chunks: u64::from(chunks),
            chunk_stride: u64::from(max_message_size).div_ceil(LINE_PAIR) * LINE_PAIR,
            holders_at: at,
            chunks_at: at.checked_add(holders)?,
        })
    }

    /// The pool after `capacity` slots of `slot_stride` bytes starting at
    /// `slots_at`: where every ring puts it.
    pub(crate) fn after_slots(
        slots_at: u64,
        capacity: u32,
        slot_stride: u64,
        chunks: u32,
        max_message_size: u32,
    ) -> Option<Pool> {
        let slots_end = u64::from(capacity)
            .checked_mul(slot_stride)?
            .checked_add(slots_at)?;
        Pool::at(slots_end, chunks, max_message_size)
    }

    /// Where the pool ends: the bytes its object takes.
    pub(crate) fn end(&self) -> Option<u64> {
        self.chunks
            .checked_mul(self.chunk_stride)?
            .checked_add(self.chunks_at)
    }

    /// Whether the pool has any chunk (0 chunks: payloads in the slots).
    pub(crate) fn is_empty(&self) -> bool {
        self.chunks == 0
    }

    /// Where the published message of the slot starting at `slot` is: its
    /// payload in the slot without a pool, else the chunk the slot names;
    /// None if that lies outside the pool (scribbled memory may name any).
    #[inline]
    pub(crate) fn payload(&self, words: &Words, slot: u64) -> Option<NonNull<u8>> {
        if self.is_empty() {
            return Some(words.ptr_at(slot + SLOT_HEADER));
        }
        let chunk = u64::from(words.u32_at(slot + SLOT_CHUNK).load(Ordering::Relaxed));
        (chunk < self.chunks).then(|| self.chunk(words, chunk))
    }

    /// Where a writer writes the message of its claim on the slot starting
    /// at `slot`: the chunk it reserved, or the slot's own payload
    /// ([`NO_CHUNK`]).
    #[inline]
    pub(crate) fn claimed(&self, words: &Words, slot: u64, chunk: u32) -> NonNull<u8> {
        if chunk == NO_CHUNK {
            words.ptr_at(slot + SLOT_HEADER)
        } else {
            self.chunk(words, u64::from(chunk))
        }
    }

    /// Where chunk `chunk` (inside the pool) starts.
    #[inline]
    fn chunk(&self, words: &Words, chunk: u64) -> NonNull<u8> {
        debug_assert!(chunk < self.chunks);
        words.ptr_at(self.chunks_at + chunk * self.chunk_stride)
    }

    fn holder<'a>(&self, words: &'a Words, chunk: u64) -> &'a AtomicU64 {
        words.u64_at(self.holders_at + chunk * 8)
    }

    /// Reserves a chunk for the participant `token`: the chunk of one of
    /// the newest messages `candidates` gives (newest first, with where its
    /// slot starts) if it still holds that message and `unneeded` says no
    /// one needs it, else any free chunk. None if there is none.
    pub(crate) fn reserve(
        &self,
        words: &Words,
        token: u32,
        candidates: impl Iterator<Item = (u64, u64)>,
        unneeded: impl Fn(u64) -> bool,
    ) -> Option<u32> {
        let pending = PENDING | u64::from(token);
        for (seq, slot) in candidates.take(WARM_TRIES as usize) {
            let chunk = u64::from(words.u32_at(slot + SLOT_CHUNK).load(Ordering::Acquire));
            if chunk < self.chunks
                && unneeded(seq)
                && self
                    .holder(words, chunk)
                    .compare_exchange(seq + 1, pending, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                return Some(chunk as u32);
            }
        }
        (0..self.chunks).find_map(|chunk| {
            let held = self.holder(words, chunk).load(Ordering::Acquire);
            let free = held == 0 || (held & PENDING == 0 && unneeded(held - 1));
            (free
                && self
                    .holder(words, chunk)
                    .compare_exchange(held, pending, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok())
            .then_some(chunk as u32)
        })
    }

    /// Settles a reserved chunk: it holds message `seq` from now on (just
    /// before the message is published).
    #[inline]
    pub(crate) fn settle(&self, words: &Words, chunk: u32, seq: u64) {
        self.holder(words, u64::from(chunk))
            .store(seq + 1, Ordering::Release);
    }

    /// Lets go of a chunk `token` reserved and did not use.
    pub(crate) fn unreserve(&self, words: &Words, chunk: u32, token: u32) {
        let _ = self.holder(words, u64::from(chunk)).compare_exchange(
            PENDING | u64::from(token),
            0,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }

    /// Frees the chunks reserved by participants `is_dead` says are dead;
    /// whether it freed any.
    pub(crate) fn free_dead_reservations(
        &self,
        words: &Words,
        is_dead: impl Fn(u32) -> bool,
    ) -> bool {
        let mut freed = false;
        for chunk in 0..self.chunks {
            let held = self.holder(words, chunk).load(Ordering::Acquire);
            if held & PENDING != 0 && is_dead(held as u32) {
                freed |= self
                    .holder(words, chunk)
                    .compare_exchange(held, 0, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok();
            }
        }
        freed
    }
}
