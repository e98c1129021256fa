//! The words of a mapped object as atomics, and its bytes as pointers: the
//! one place the rings (`channel/ring.rs`, `topic/ring.rs`) turn an offset
//! into shared memory, so that each ring says only where its words are.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};

/// A mapped region, read and written through atomics at offsets its owner
/// has checked (a ring checks its geometry against the region's length
/// when it is made, and every offset it asks for then lies inside).
pub(crate) struct Words {
    base: NonNull<u8>,
}

// SAFETY: the region is shared memory touched only through atomics (or, for
// payloads, through pointers into slots the caller's protocol gives it); a
// `Words` is a pointer and a length, tied to no thread.
unsafe impl Send for Words {}
// SAFETY: as for Send.
unsafe impl Sync for Words {}

impl Words {
    /// The words of the region at `base`.
    ///
    /// # Safety
    /// The region is mapped, writable and 8-aligned (a mapping is
    /// page-aligned), stays mapped while the `Words` is used, and holds
    /// every offset its owner will ask for.
    pub(crate) unsafe fn new(base: NonNull<u8>) -> Words {
        Words { base }
    }

    /// The `AtomicU64` at `offset`: 8-aligned and inside the region.
    #[inline]
    pub(crate) fn u64_at(&self, offset: u64) -> &AtomicU64 {
        debug_assert!(offset.is_multiple_of(8));
        // SAFETY: the offset is 8-aligned (asserted in debug builds) and
        // inside the region (the owner's checked geometry), which is mapped
        // and writable while `self` lives (`new`'s contract); AtomicU64 has
        // the layout of u64.
        unsafe { &*self.base.as_ptr().add(offset as usize).cast::<AtomicU64>() }
    }

    /// The `AtomicU32` at `offset`: 4-aligned and inside the region.
    #[inline]
    pub(crate) fn u32_at(&self, offset: u64) -> &AtomicU32 {
        debug_assert!(offset.is_multiple_of(4));
        // SAFETY: as in u64_at, 4-aligned.
        unsafe { &*self.base.as_ptr().add(offset as usize).cast::<AtomicU32>() }
    }

    /// `count` `AtomicU32`s from `offset`: 4-aligned and inside the region.
    pub(crate) fn u32s_at(&self, offset: u64, count: usize) -> &[AtomicU32] {
        debug_assert!(offset.is_multiple_of(4));
        // SAFETY: as in u32_at, for the whole table.
        unsafe {
            std::slice::from_raw_parts(
                self.base.as_ptr().add(offset as usize).cast::<AtomicU32>(),
                count,
            )
        }
    }

    /// The byte at `offset`, inside the region: where a payload starts.
    #[inline]
    pub(crate) fn ptr_at(&self, offset: u64) -> NonNull<u8> {
        // SAFETY: the offset is inside the region (as in u64_at).
        unsafe { self.base.add(offset as usize) }
    }
}
