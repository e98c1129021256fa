//! Access to mapped memory at an offset: the crate-internal [`Window`] that
//! every read and write goes through, and the public [`View`].
//!
//! Other processes may change shared memory at any moment, so nothing here
//! hands out `&[u8]` into it from a safe method: bytes are copied in and out,
//! and the only references given are atomics at aligned offsets. The slice
//! accessors of [`View`] are `unsafe` and say what the caller promises.
//! This module and `sys` are where the crate's pointer `unsafe` lives.

use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::Arc;

use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::Shared;
use crate::error::{Error, Result};

/// A bounds-checked span of mapped memory. It does not keep the memory
/// alive: its owner (a `Mapping`'s or `View`'s `Arc<Shared>`) does.
#[derive(Clone, Copy)]
pub(crate) struct Window {
    base: NonNull<u8>,
    len: u64,
    writable: bool,
}

impl Window {
    /// A window on `len` bytes at `base`.
    ///
    /// # Safety
    /// `base..base + len` must be mapped, and stay mapped for as long as the
    /// window or anything obtained from it is used.
    pub(crate) unsafe fn new(base: NonNull<u8>, len: u64, writable: bool) -> Window {
        Window {
            base,
            len,
            writable,
        }
    }

    /// Its length in bytes.
    #[inline]
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The first byte.
    #[inline]
    pub(crate) fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// Whether writes are allowed.
    #[inline]
    pub(crate) fn is_writable(&self) -> bool {
        self.writable
    }

    /// Whether `len` bytes at `offset` lie inside; the offset as an index if so.
    #[inline]
    fn index(&self, offset: u64, len: usize) -> Option<usize> {
        let end = offset.checked_add(len as u64)?;
        // Lengths of mapped memory fit in usize, so an in-bounds offset does too.
        (end <= self.len).then_some(offset as usize)
    }

    /// Copies `buf.len()` bytes at `offset` into `buf`.
    #[inline]
    pub(crate) fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let Some(index) = self.index(offset, buf.len()) else {
            return Err(Error::UnexpectedEof {
                offset,
                len: buf.len() as u64,
                size: self.len,
            });
        };
        // SAFETY: index..index + buf.len() is inside the mapped window (checked
        // above, and mapped per `Window::new`); `copy` tolerates overlap.
        unsafe { std::ptr::copy(self.base.as_ptr().add(index), buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copies `data` to `offset`; writes nothing unless all of it fits.
    #[inline]
    pub(crate) fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        let index = self.writable_index(offset, data.len())?;
        // SAFETY: index..index + data.len() is inside the mapped, writable
        // window (checked by writable_index); `copy` tolerates overlap.
        unsafe { std::ptr::copy(data.as_ptr(), self.base.as_ptr().add(index), data.len()) };
        Ok(())
    }

    /// The index of `len` writable bytes at `offset`, or why there is none.
    #[inline]
    fn writable_index(&self, offset: u64, len: usize) -> Result<usize> {
        if !self.writable {
            return Err(Error::ReadOnly {
                target: "this mapping".to_owned(),
            });
        }
        match self.index(offset, len) {
            Some(index) => Ok(index),
            None => Err(Error::OutOfBounds {
                offset,
                len: len as u64,
                size: self.len,
            }),
        }
    }

    /// A copy of the plain value at `offset`.
    #[inline]
    pub(crate) fn read_value<T: FromBytes>(&self, offset: u64) -> Result<T> {
        let Some(index) = self.index(offset, size_of::<T>()) else {
            return Err(Error::UnexpectedEof {
                offset,
                len: size_of::<T>() as u64,
                size: self.len,
            });
        };
        // SAFETY: the bytes are inside the mapped window (checked above);
        // `read_unaligned` needs no alignment, and `T: FromBytes` is valid for
        // any bit pattern another process may have left there.
        Ok(unsafe { self.base.as_ptr().add(index).cast::<T>().read_unaligned() })
    }

    /// Stores the bytes of `value` at `offset`.
    #[inline]
    pub(crate) fn write_value<T: IntoBytes + Immutable + ?Sized>(
        &self,
        offset: u64,
        value: &T,
    ) -> Result<()> {
        self.write(offset, value.as_bytes())
    }

    /// The atomic of type `A` at `offset`.
    ///
    /// # Safety
    /// The caller picks `'a` no longer than the memory stays mapped.
    unsafe fn atomic<'a, A>(&self, offset: u64) -> Result<&'a A> {
        let index = self.writable_index(offset, size_of::<A>())?;
        // SAFETY: index is in bounds, so the pointer stays inside the mapping.
        let ptr = unsafe { self.base.as_ptr().add(index) };
        if !(ptr as usize).is_multiple_of(align_of::<A>()) {
            return Err(Error::Misaligned {
                offset,
                align: align_of::<A>() as u64,
            });
        }
        // SAFETY: in bounds, aligned for A, writable and mapped for 'a (the
        // caller's promise); an atomic integer has the layout of the integer
        // and every bit pattern is valid.
        Ok(unsafe { &*ptr.cast::<A>() })
    }

    /// The `AtomicU32` at `offset`.
    ///
    /// # Safety
    /// As [`Window::atomic`].
    #[inline]
    pub(crate) unsafe fn atomic_u32<'a>(&self, offset: u64) -> Result<&'a AtomicU32> {
        // SAFETY: the caller's promise is passed on.
        unsafe { self.atomic(offset) }
    }

    /// The `u32` at `offset` (a multiple of 4), loaded atomically with
    /// `Acquire` ordering: a flag another process publishes with `Release`.
    /// Unlike [`Window::atomic_u32`] this works on a read-only window too
    /// (std allows atomic loads, though no stores, on read-only memory).
    pub(crate) fn load_u32_acquire(&self, offset: u64) -> Result<u32> {
        let Some(index) = self.index(offset, size_of::<u32>()) else {
            return Err(Error::UnexpectedEof {
                offset,
                len: size_of::<u32>() as u64,
                size: self.len,
            });
        };
        // SAFETY: index is in bounds, so the pointer stays inside the mapping.
        let ptr = unsafe { self.base.as_ptr().add(index) };
        if !(ptr as usize).is_multiple_of(align_of::<u32>()) {
            return Err(Error::Misaligned {
                offset,
                align: align_of::<u32>() as u64,
            });
        }
        // SAFETY: in bounds and aligned (checked above), mapped while self is
        // used; the reference lives only for this load, which never writes.
        let atomic = unsafe { &*ptr.cast::<AtomicU32>() };
        Ok(atomic.load(std::sync::atomic::Ordering::Acquire))
    }

    /// The `AtomicU64` at `offset`.
    ///
    /// # Safety
    /// As [`Window::atomic`].
    #[inline]
    pub(crate) unsafe fn atomic_u64<'a>(&self, offset: u64) -> Result<&'a AtomicU64> {
        // SAFETY: the caller's promise is passed on.
        unsafe { self.atomic(offset) }
    }

    /// The window on `len` bytes at `offset` of this one.
    pub(crate) fn sub(&self, offset: u64, len: u64) -> Result<Window> {
        let out_of_bounds = Error::OutOfBounds {
            offset,
            len,
            size: self.len,
        };
        let Ok(len_usize) = usize::try_from(len) else {
            return Err(out_of_bounds);
        };
        let Some(index) = self.index(offset, len_usize) else {
            return Err(out_of_bounds);
        };
        // SAFETY: index is in bounds, so the pointer stays inside the mapping.
        let base = unsafe { self.base.add(index) };
        Ok(Window {
            base,
            len,
            writable: self.writable,
        })
    }
}

// SAFETY: a Window is an address range; what may be done through it is
// limited to copies and atomics, which are fine from any thread.
unsafe impl Send for Window {}
// SAFETY: as for Send.
unsafe impl Sync for Window {}

/// A window of `len` bytes at some offset of a [`Mapping`](crate::Mapping):
/// aardio's `mapView`.
///
/// A view keeps the mapping's memory alive (it may outlive the `Mapping` it
/// came from and move to another thread); dropping it releases it. Offsets
/// given to a view's methods are relative to the view's start. The memory is
/// shared with other processes, so safe methods copy; [`View::as_slice`] and
/// [`View::as_mut_slice`] are `unsafe`.
///
/// ```
/// use shmio::Mapping;
///
/// let map = Mapping::anonymous(4096)?;
/// let view = map.view(1001, 16)?; // any offset, aligned or not
/// view.write_at(0, b"hello")?;
/// let mut out = [0u8; 5];
/// map.read_at(1001, &mut out)?;
/// assert_eq!(&out, b"hello");
/// # Ok::<(), shmio::Error>(())
/// ```
pub struct View {
    /// Keeps the memory mapped.
    _owner: Arc<Shared>,
    window: Window,
    offset: u64,
}

impl View {
    pub(super) fn new(owner: Arc<Shared>, window: Window, offset: u64) -> View {
        View {
            _owner: owner,
            window,
            offset,
        }
    }

    /// Where the view starts in its mapping.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.window.len()
    }

    /// Whether it has no bytes.
    pub fn is_empty(&self) -> bool {
        self.window.len() == 0
    }

    /// Copies `buf.len()` bytes at `offset` into `buf` ([`Error::UnexpectedEof`] past the end).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.window.read(offset, buf)
    }

    /// Copies `data` to `offset`; writes nothing unless all of it fits.
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.window.write(offset, data)
    }

    /// A copy of the plain value at `offset` (any alignment).
    pub fn read_value_at<T: FromBytes>(&self, offset: u64) -> Result<T> {
        self.window.read_value(offset)
    }

    /// Stores the bytes of a plain value at `offset` (any alignment).
    pub fn write_value_at<T: IntoBytes + Immutable + ?Sized>(
        &self,
        offset: u64,
        value: &T,
    ) -> Result<()> {
        self.window.write_value(offset, value)
    }

    /// The `AtomicU32` at `offset`, which must be 4-byte aligned in memory.
    pub fn atomic_u32(&self, offset: u64) -> Result<&AtomicU32> {
        // SAFETY: the memory stays mapped while `_owner` lives, which is at
        // least as long as this borrow of self.
        unsafe { self.window.atomic_u32(offset) }
    }

    /// The `AtomicU64` at `offset`, which must be 8-byte aligned in memory.
    pub fn atomic_u64(&self, offset: u64) -> Result<&AtomicU64> {
        // SAFETY: as in atomic_u32.
        unsafe { self.window.atomic_u64(offset) }
    }

    /// A copy of the whole view.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = vec![0; self.window.len() as usize];
        // The buffer is exactly the view's length, so this read is in bounds.
        let _ = self.window.read(0, &mut out);
        out
    }

    /// The first byte. Valid while the view lives; reads and writes through
    /// it race with other processes like any shared memory.
    pub fn as_ptr(&self) -> *const u8 {
        self.window.base().as_ptr()
    }

    /// The first byte, for writing. Writing through it on a read-only mapping faults.
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.window.base().as_ptr()
    }

    /// The view as a byte slice.
    ///
    /// # Safety
    /// While the slice lives, no one (no thread, no other process) may write
    /// to these bytes: Rust assumes a `&[u8]` does not change.
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the range is mapped for as long as self lives; the caller
        // promises the bytes do not change while borrowed.
        unsafe {
            std::slice::from_raw_parts(self.window.base().as_ptr(), self.window.len() as usize)
        }
    }

    /// The view as a mutable byte slice.
    ///
    /// # Safety
    /// While the slice lives, no one else (no thread, no other process, no
    /// other view) may read or write these bytes, and the mapping must be writable.
    pub unsafe fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: the range is mapped for as long as self lives; the caller
        // promises exclusive access and a writable mapping.
        unsafe {
            std::slice::from_raw_parts_mut(self.window.base().as_ptr(), self.window.len() as usize)
        }
    }
}

impl fmt::Debug for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("View")
            .field("offset", &self.offset)
            .field("len", &self.window.len())
            .field("writable", &self.window.is_writable())
            .finish()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! Bounds of a `Window` over heap memory: no system call, so they run
    //! under Miri (`scripts/miri.sh`), which checks every access for UB.

    use std::sync::atomic::Ordering;

    use super::*;

    /// A window on all of `memory` (8-aligned, as mapped memory is).
    pub(crate) fn heap_window(memory: &mut [u64], writable: bool) -> Window {
        let base = NonNull::new(memory.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: the caller keeps `memory` alive, and touches it only
        // through the window, while the window is used.
        unsafe { Window::new(base, size_of_val(memory) as u64, writable) }
    }

    #[test]
    fn reads_and_writes_stay_inside() {
        let mut memory = [0u64; 4];
        let window = heap_window(&mut memory, true);
        assert_eq!(window.len(), 32);
        window.write(0, b"head").unwrap();
        window.write(28, b"tail").unwrap();
        let mut buf = [0u8; 4];
        window.read(28, &mut buf).unwrap();
        assert_eq!(&buf, b"tail");
        window.read(0, &mut buf).unwrap();
        assert_eq!(&buf, b"head");

        // One byte past the end: an error, and nothing is written.
        assert!(matches!(
            window.write(29, b"tail"),
            Err(Error::OutOfBounds {
                offset: 29,
                len: 4,
                size: 32
            })
        ));
        assert!(matches!(
            window.read(29, &mut buf),
            Err(Error::UnexpectedEof {
                offset: 29,
                len: 4,
                size: 32
            })
        ));
        let mut all = [0u8; 32];
        window.read(0, &mut all).unwrap();
        assert_eq!(&all[..4], b"head");
        assert_eq!(&all[28..], b"tail");
        assert!(all[4..28].iter().all(|&b| b == 0));
        let mut too_long = [0u8; 33];
        assert!(window.read(0, &mut too_long).is_err());
        assert!(window.write(0, &too_long).is_err());
    }

    #[test]
    fn zero_lengths() {
        let mut memory = [0u64; 1];
        let window = heap_window(&mut memory, true);
        // Nothing at the very end is fine; one past it is not.
        window.read(8, &mut []).unwrap();
        window.write(8, &[]).unwrap();
        assert!(window.read(9, &mut []).is_err());
        assert!(window.write(9, &[]).is_err());
        // An empty window.
        let empty = window.sub(8, 0).unwrap();
        assert_eq!(empty.len(), 0);
        empty.read(0, &mut []).unwrap();
        assert!(empty.read(0, &mut [0u8; 1]).is_err());
        assert!(empty.write(0, &[1]).is_err());
        assert!(empty.read_value::<u8>(0).is_err());
        assert!(empty.sub(0, 0).is_ok());
        assert!(empty.sub(1, 0).is_err());
    }

    #[test]
    fn offsets_near_u64_max_do_not_wrap() {
        let mut memory = [0u64; 2];
        let window = heap_window(&mut memory, true);
        let mut buf = [0u8; 4];
        for offset in [u64::MAX, u64::MAX - 3, u64::MAX - 15, 1 << 63, 17] {
            assert!(window.read(offset, &mut buf).is_err(), "{offset}");
            assert!(window.write(offset, &buf).is_err(), "{offset}");
            assert!(window.read_value::<u32>(offset).is_err(), "{offset}");
            assert!(window.write_value(offset, &7u32).is_err(), "{offset}");
            assert!(window.sub(offset, 4).is_err(), "{offset}");
            assert!(
                window.read(offset, &mut []).is_err(),
                "{offset}: empty, but past the end"
            );
        }
        assert!(window.sub(0, u64::MAX).is_err());
        assert!(window.sub(1, u64::MAX).is_err());
        assert!(window.sub(u64::MAX, 1).is_err());
        // SAFETY: never dereferenced: the calls fail their bounds checks.
        let atomics_fail = unsafe {
            window.atomic_u64(u64::MAX - 7).is_err() && window.atomic_u32(u64::MAX - 3).is_err()
        };
        assert!(atomics_fail);
    }

    #[test]
    fn values_at_any_alignment() {
        let mut memory = [0u64; 2];
        let window = heap_window(&mut memory, true);
        for offset in 0..=8 {
            window
                .write_value(offset, &0x0102_0304_0506_0708u64)
                .unwrap();
            assert_eq!(
                window.read_value::<u64>(offset).unwrap(),
                0x0102_0304_0506_0708
            );
        }
        assert!(window.read_value::<u64>(9).is_err());
        assert!(window.write_value(9, &0u64).is_err());
        window.write_value(12, &[9u8, 8, 7, 6]).unwrap();
        assert_eq!(window.read_value::<[u8; 4]>(12).unwrap(), [9, 8, 7, 6]);
        assert_eq!(
            window.read_value::<u32>(12).unwrap(),
            u32::from_ne_bytes([9, 8, 7, 6])
        );
    }

    #[test]
    fn sub_windows_are_relative_and_bounded() {
        let mut memory = [0u64; 4];
        let window = heap_window(&mut memory, true);
        let sub = window.sub(8, 16).unwrap();
        assert_eq!(sub.len(), 16);
        sub.write(0, b"abcd").unwrap();
        sub.write(12, b"wxyz").unwrap();
        assert!(
            sub.write(13, b"wxyz").is_err(),
            "the sub window's end, not the parent's"
        );
        let mut buf = [0u8; 4];
        window.read(8, &mut buf).unwrap();
        assert_eq!(&buf, b"abcd");
        window.read(20, &mut buf).unwrap();
        assert_eq!(&buf, b"wxyz");
        let inner = sub.sub(12, 4).unwrap();
        inner.read(0, &mut buf).unwrap();
        assert_eq!(&buf, b"wxyz");
        assert!(sub.sub(12, 5).is_err());
        assert!(sub.sub(17, 0).is_err());
        assert!(window.sub(0, 32).is_ok());
        assert!(window.sub(0, 33).is_err());
        assert!(window.sub(32, 0).is_ok());
    }

    #[test]
    fn read_only_windows_refuse_writes() {
        let mut memory = [0x1111_1111_1111_1111u64; 1];
        let window = heap_window(&mut memory, false);
        assert!(!window.is_writable());
        assert!(matches!(window.write(0, b"x"), Err(Error::ReadOnly { .. })));
        assert!(matches!(
            window.write_value(0, &1u32),
            Err(Error::ReadOnly { .. })
        ));
        assert!(!window.sub(0, 4).unwrap().is_writable());
        // SAFETY: the call fails before making a reference.
        let atomic = unsafe { window.atomic_u32(0) };
        assert!(matches!(atomic, Err(Error::ReadOnly { .. })));
        assert_eq!(window.read_value::<u64>(0).unwrap(), 0x1111_1111_1111_1111);
    }

    #[test]
    fn atomics_need_alignment_and_bounds() {
        let mut memory = [0u64; 2];
        let window = heap_window(&mut memory, true);
        // SAFETY: `memory` outlives every reference taken here.
        unsafe {
            window.atomic_u64(8).unwrap().store(5, Ordering::Relaxed);
            window.atomic_u32(4).unwrap().store(6, Ordering::Relaxed);
            assert!(matches!(
                window.atomic_u64(4),
                Err(Error::Misaligned {
                    offset: 4,
                    align: 8
                })
            ));
            assert!(matches!(
                window.atomic_u32(2),
                Err(Error::Misaligned {
                    offset: 2,
                    align: 4
                })
            ));
            assert!(matches!(
                window.atomic_u64(16),
                Err(Error::OutOfBounds { .. })
            ));
            assert!(matches!(
                window.atomic_u32(14),
                Err(Error::OutOfBounds { .. })
            ));
        }
        assert_eq!(window.read_value::<u64>(8).unwrap(), 5);
        assert_eq!(window.read_value::<u32>(4).unwrap(), 6);
    }

    #[test]
    fn overlapping_copies_within_one_window() {
        let mut memory = [0u64; 2];
        let window = heap_window(&mut memory, true);
        window.write(0, b"0123456789abcdef").unwrap();
        let mut buf = [0u8; 8];
        window.read(4, &mut buf).unwrap();
        window.write(0, &buf).unwrap();
        let mut all = [0u8; 16];
        window.read(0, &mut all).unwrap();
        assert_eq!(&all, b"456789ab89abcdef");
    }
}
