//! Cross-process synchronisation on Windows: named kernel mutexes and events.
//!
//! **Mutex.** A named mutex (`CreateMutexW`). A holder that dies leaves it
//! abandoned: the next wait returns `WAIT_ABANDONED`, which is "owner died".
//! Windows mutexes are recursive by nature; shmio's is not: a process-wide
//! table of (name, thread) pairs that hold a lock turns a second lock from
//! the holding thread, through any handle, into `Error::WouldDeadlock`.
//!
//! **Event.** A named event (`CreateEventW`), whose auto and manual reset
//! are exactly shmio's [`crate::EventMode`]. Windows cannot tell an opener
//! the mode an existing event was created with, so an opener reports the
//! mode it asked for.
//!
//! Mappings, mutexes and events share one namespace: a name taken by another
//! kind of object fails with `ERROR_INVALID_HANDLE`, which is `Error::WrongKind`.

use std::collections::HashSet;
use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::sync::Mutex;
use std::time::Duration;

use windows_sys::Win32::Foundation::{
    GetLastError, ERROR_ACCESS_DENIED, ERROR_ALREADY_EXISTS, ERROR_INVALID_HANDLE, HANDLE,
    WAIT_ABANDONED, WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::System::Threading::{
    CreateEventW, CreateMutexW, GetCurrentThreadId, ReleaseMutex, ResetEvent, SetEvent,
    WaitForSingleObject, INFINITE,
};

use super::objects::wide;
use crate::error::{Error, Result};
use crate::sys::LockState;

/// The (name, thread id) pairs whose lock is held in this process.
static HELD: Mutex<Option<HashSet<(String, u32)>>> = Mutex::new(None);

fn held(name: &str) -> bool {
    // SAFETY: GetCurrentThreadId has no preconditions.
    let thread = unsafe { GetCurrentThreadId() };
    let table = HELD.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    table
        .as_ref()
        .is_some_and(|set| set.contains(&(name.to_owned(), thread)))
}

fn set_held(name: &str, is_held: bool) {
    // SAFETY: GetCurrentThreadId has no preconditions.
    let thread = unsafe { GetCurrentThreadId() };
    let mut table = HELD.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let set = table.get_or_insert_with(HashSet::new);
    if is_held {
        set.insert((name.to_owned(), thread));
    } else {
        set.remove(&(name.to_owned(), thread));
    }
}

/// A named Windows mutex.
pub(crate) struct RawMutex {
    handle: OwnedHandle,
    name: String,
}

impl RawMutex {
    /// Creates or opens the mutex called `name`; whether it existed.
    /// Windows objects take their access from the default security
    /// descriptor, not from Unix permission bits: `_mode` is not used.
    pub(crate) fn create_or_open(
        name: &str,
        sharing: &crate::sync::segment::Sharing<'_>,
        _owner: Option<crate::sys::ObjectId>,
    ) -> Result<(RawMutex, bool)> {
        let wide = wide(name);
        // SAFETY: a NUL-terminated name that outlives the call; default security.
        let handle = unsafe { CreateMutexW(std::ptr::null(), 0, wide.as_ptr()) };
        let (handle, existed) = owned_or_error(handle, name, "a mutex")?;
        if existed {
            super::objects::check_owner_of(handle.as_raw_handle(), name, sharing.trust)?;
        }
        Ok((
            RawMutex {
                handle,
                name: name.to_owned(),
            },
            existed,
        ))
    }

    /// Locks, waiting at most `timeout` (forever when `None`).
    pub(crate) fn lock(&self, name: &str, timeout: Option<Duration>) -> Result<LockState> {
        if held(&self.name) {
            return Err(Error::WouldDeadlock {
                name: name.to_owned(),
            });
        }
        let state = match wait(self.handle.as_raw_handle(), timeout) {
            WAIT_OBJECT_0 => LockState::Acquired,
            WAIT_ABANDONED => LockState::OwnerDied,
            WAIT_TIMEOUT => return Ok(LockState::Busy),
            _ => return Err(Error::os("lock", name, io::Error::last_os_error())),
        };
        set_held(&self.name, true);
        Ok(state)
    }

    /// Locks if nobody holds it.
    pub(crate) fn try_lock(&self, name: &str) -> Result<LockState> {
        self.lock(name, Some(Duration::ZERO))
    }

    /// Unlocks.
    ///
    /// # Safety
    /// The calling thread holds the lock.
    pub(crate) unsafe fn unlock(&self) {
        set_held(&self.name, false);
        // SAFETY: the caller holds the mutex; the handle is live.
        unsafe { ReleaseMutex(self.handle.as_raw_handle()) };
    }
}

/// A named Windows event.
pub(crate) struct RawEvent {
    handle: OwnedHandle,
    manual: bool,
}

impl RawEvent {
    /// Creates (unset) or opens the event called `name`; whether it existed.
    /// As for the mutex, `_mode` is not used on Windows.
    pub(crate) fn create_or_open(
        name: &str,
        manual: bool,
        sharing: &crate::sync::segment::Sharing<'_>,
    ) -> Result<(RawEvent, bool)> {
        let wide = wide(name);
        // SAFETY: a NUL-terminated name that outlives the call; default security.
        let handle = unsafe { CreateEventW(std::ptr::null(), i32::from(manual), 0, wide.as_ptr()) };
        let (handle, existed) = owned_or_error(handle, name, "an event")?;
        if existed {
            super::objects::check_owner_of(handle.as_raw_handle(), name, sharing.trust)?;
        }
        Ok((RawEvent { handle, manual }, existed))
    }

    /// Whether the event stays set until reset (as asked for: see the module docs).
    pub(crate) fn is_manual(&self) -> bool {
        self.manual
    }

    /// Sets the event.
    pub(crate) fn set(&self) -> Result<()> {
        // SAFETY: a live event handle.
        check(unsafe { SetEvent(self.handle.as_raw_handle()) }, "set")
    }

    /// Clears the event.
    pub(crate) fn reset(&self) -> Result<()> {
        // SAFETY: a live event handle.
        check(unsafe { ResetEvent(self.handle.as_raw_handle()) }, "reset")
    }

    /// Waits until set, at most `timeout`; whether it was set.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        match wait(self.handle.as_raw_handle(), timeout) {
            WAIT_OBJECT_0 => Ok(true),
            WAIT_TIMEOUT => Ok(false),
            _ => Err(Error::os("wait", "event", io::Error::last_os_error())),
        }
    }
}

/// `WaitForSingleObject`, with `timeout` rounded up to whole milliseconds.
fn wait(handle: HANDLE, timeout: Option<Duration>) -> u32 {
    let millis = timeout.map_or(INFINITE, |timeout| {
        let millis = timeout.as_nanos().div_ceil(1_000_000);
        u32::try_from(millis)
            .unwrap_or(INFINITE - 1)
            .min(INFINITE - 1)
    });
    // SAFETY: a live handle of a waitable object.
    unsafe { WaitForSingleObject(handle, millis) }
}

/// A handle from a `Create*W` call and whether the object existed, or the error.
fn owned_or_error(handle: HANDLE, name: &str, kind: &'static str) -> Result<(OwnedHandle, bool)> {
    // SAFETY: reading the calling thread's last error has no preconditions.
    let code = unsafe { GetLastError() };
    if handle.is_null() {
        return Err(match code {
            ERROR_INVALID_HANDLE => Error::WrongKind {
                name: name.to_owned(),
                expected: kind,
            },
            ERROR_ACCESS_DENIED => Error::PermissionDenied {
                op: "open",
                target: name.to_owned(),
            },
            _ => Error::os("create", name, io::Error::from_raw_os_error(code as i32)),
        });
    }
    // SAFETY: a non-null handle from a Create*W call is ours to close.
    let owned = unsafe { OwnedHandle::from_raw_handle(handle) };
    Ok((owned, code == ERROR_ALREADY_EXISTS))
}

fn check(ok: i32, op: &'static str) -> Result<()> {
    if ok == 0 {
        return Err(Error::os(op, "event", io::Error::last_os_error()));
    }
    Ok(())
}

/// Whether the process `pid` is alive.
pub(crate) fn process_alive(pid: u32) -> bool {
    use windows_sys::Win32::System::Threading::{OpenProcess, PROCESS_SYNCHRONIZE};
    // SAFETY: OpenProcess has no memory preconditions; a null result is checked.
    let handle = unsafe { OpenProcess(PROCESS_SYNCHRONIZE, 0, pid) };
    if handle.is_null() {
        // No such process (ERROR_INVALID_PARAMETER), or one we may not see:
        // only the first means dead.
        // SAFETY: reading the calling thread's last error has no preconditions.
        return unsafe { GetLastError() }
            != windows_sys::Win32::Foundation::ERROR_INVALID_PARAMETER;
    }
    // SAFETY: a non-null handle from OpenProcess is ours to close.
    let handle = unsafe { OwnedHandle::from_raw_handle(handle) };
    wait(handle.as_raw_handle(), Some(Duration::ZERO)) == WAIT_TIMEOUT
}

/// A doorbell for the channel: a named auto-reset event. Sets can merge
/// while nobody has woken yet, so a sleeper never sleeps longer than
/// `SLICE` before it looks again.
pub(crate) struct Doorbell {
    event: RawEvent,
}

/// The longest a channel sleeper sleeps before looking again.
const SLICE: Duration = Duration::from_millis(10);

impl Doorbell {
    /// The doorbell `which` of the channel called `name`: the event `NAME@which`.
    pub(crate) fn open(name: &str, which: &str) -> Result<Doorbell> {
        let (event, _) = RawEvent::create_or_open(
            &format!("{name}@{which}"),
            false,
            &crate::sync::segment::Sharing {
                permissions: crate::mapping::DEFAULT_MODE,
                trust: &crate::owner::Trust::OWN,
            },
        )?;
        Ok(Doorbell { event })
    }

    /// Bumps `word` and wakes a sleeper.
    pub(crate) fn ring(&self, word: &std::sync::atomic::AtomicU32) {
        word.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _ = self.event.set();
    }

    /// Sleeps while `word == seen`, at most `timeout` (and at most `SLICE`).
    pub(crate) fn wait(
        &self,
        word: &std::sync::atomic::AtomicU32,
        seen: u32,
        timeout: Option<Duration>,
    ) {
        if word.load(std::sync::atomic::Ordering::SeqCst) != seen {
            return;
        }
        let _ = self.event.wait(Some(timeout.unwrap_or(SLICE).min(SLICE)));
    }
}
