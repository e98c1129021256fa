//! What the rings (`channel/ring.rs`, `topic/ring.rs`) share about a slot:
//! its header (a state word, the turn in its high half and the claiming
//! participant's token in its low half, then the length), the stride that
//! keeps every slot on a pair of cache lines of its own, the tombstone,
//! and the arithmetic of turns on the wrapping 32-bit circle. Each ring
//! says what its turns mean.

use std::mem::{offset_of, size_of};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The start of a slot, before its payload (see each ring's module docs);
/// a description, as the rings' headers are.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub(crate) struct SlotHeader {
    pub(crate) state: u64,
    pub(crate) len: u32,
    /// The topic's pooled payloads: the chunk that holds the message
    /// (unused by the channel and by a topic without a pool).
    pub(crate) chunk: u32,
}

/// Where a slot's state is, from the slot's start.
pub(crate) const SLOT_STATE: u64 = offset_of!(SlotHeader, state) as u64;
/// Where a slot's length is, from the slot's start.
pub(crate) const SLOT_LEN: u64 = offset_of!(SlotHeader, len) as u64;
/// Where a topic slot's chunk is, from the slot's start.
pub(crate) const SLOT_CHUNK: u64 = offset_of!(SlotHeader, chunk) as u64;
/// Bytes before a slot's payload.
pub(crate) const SLOT_HEADER: u64 = size_of::<SlotHeader>() as u64;
/// What the hot words and the slots are aligned to: a pair of cache lines,
/// which x86's adjacent-line prefetcher fetches together. A sender's
/// word and a receiver's within one pair cost a busy-poll round trip a
/// third more (the `shmio-bench` ladder: 142 ns with 64-byte slots and
/// adjacent positions, 78 ns 128 bytes apart).
pub(crate) const LINE_PAIR: u64 = 128;
/// The `len` of a slot that holds no message: its writer died before
/// publishing it (or, in a new topic, none wrote it yet).
pub(crate) const TOMBSTONE: u32 = u32::MAX;
/// The most slots a ring may have: 2 × capacity half-steps must fit in an
/// `i32`, and the window of states the channel's check of impossible
/// states allows on the 32-bit circle.
pub(crate) const MAX_CAPACITY: u32 = 1 << 30;

const _: () = assert!(SLOT_STATE == 0 && SLOT_LEN == 8 && SLOT_HEADER == 16);

/// The bytes per slot for messages of at most `max_message_size` bytes:
/// the header and the payload, rounded up to a pair of cache lines.
pub(crate) fn stride_for(max_message_size: u32) -> u64 {
    (SLOT_HEADER + u64::from(max_message_size)).div_ceil(LINE_PAIR) * LINE_PAIR
}

/// A state word: `turn` in the high half, `owner` in the low.
pub(crate) fn join(turn: u32, owner: u32) -> u64 {
    (u64::from(turn) << 32) | u64::from(owner)
}

/// A state word's turn and owner.
pub(crate) fn split(state: u64) -> (u32, u32) {
    ((state >> 32) as u32, state as u32)
}

/// Signed distance from `b` to `a` on the wrapping 32-bit circle of turns.
pub(crate) fn distance(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}
