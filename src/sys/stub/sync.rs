//! Locks and wakers of the stub backend: none can be made.

use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use super::{unsupported, Never};
use crate::error::Result;
use crate::owner::Trust;
use crate::sys::LockState;

/// A lock of this backend: there is none.
pub(crate) struct RobustLock(Never);

impl RobustLock {
    pub(crate) const STATE_LEN: u64 = 0;

    /// # Safety
    /// None needed: nothing is touched.
    pub(crate) unsafe fn init(_state: NonNull<u8>, _name: &str) -> Result<()> {
        unsupported()
    }

    /// # Safety
    /// None needed: nothing is touched.
    pub(crate) unsafe fn open(
        _name: &str,
        _os_name: &str,
        _state: NonNull<u8>,
        _trust: &Trust,
    ) -> Result<RobustLock> {
        unsupported()
    }

    pub(crate) fn lock(&self, _name: &str, _timeout: Option<Duration>) -> Result<LockState> {
        match self.0 {}
    }

    pub(crate) fn try_lock(&self, _name: &str) -> Result<LockState> {
        match self.0 {}
    }

    /// # Safety
    /// None: it cannot be called.
    pub(crate) unsafe fn unlock(&self) {
        match self.0 {}
    }
}

/// A waker of this backend: there is none.
pub(crate) struct Waker(Never);

impl Waker {
    pub(crate) fn open(_name: &str, _which: &str, _trust: &Trust) -> Result<Waker> {
        unsupported()
    }

    pub(crate) fn wait(&self, _word: &AtomicU32, _expected: u32, _timeout: Option<Duration>) {
        match self.0 {}
    }

    pub(crate) fn wake(&self, _word: &AtomicU32, _count: u32) {
        match self.0 {}
    }
}

/// A participant's seat of this backend: there is none.
pub(crate) struct Seat(Never);

impl Seat {
    pub(crate) fn take(
        _object: &super::Object,
        _os_name: &str,
        _index: u32,
        _name: &str,
    ) -> Result<Option<Seat>> {
        unsupported()
    }

    pub(crate) fn is_held(
        _object: &super::Object,
        _os_name: &str,
        _index: u32,
        _trust: &Trust,
    ) -> bool {
        true
    }
}
