//! Windows' primitives for cross-process synchronisation: a named kernel
//! mutex for the lock, and a named semaphore for waits on a word of shared
//! memory (Windows cannot wait on an address across processes).
//!
//! **Lock.** A named mutex (`CreateMutexW`), named as its users name it, so
//! that aardio's `process.mutex(NAME)` is the same lock. A holder that dies
//! leaves it abandoned: the next wait returns `WAIT_ABANDONED`, which is
//! "owner died". Windows mutexes are recursive by nature; shmio's is not: a
//! process-wide table of (name, thread) pairs that hold a lock turns a
//! second lock from the holding thread, through any handle, into
//! `Error::WouldDeadlock`. The lock keeps no state in shared memory.
//!
//! **Waker.** A named semaphore per word. A sleeper checks the word and
//! waits on the semaphore; a waker releases it once per sleeper to wake. A
//! release for a sleeper that timed out meanwhile leaves a count that wakes
//! a later sleeper early, which looks again (wake-ups may be spurious); and
//! a sleeper never sleeps longer than `SLICE` before it looks again, so no
//! wake-up can be lost for long.
//!
//! **Seat.** A participant of a channel proves it is alive by holding a
//! named event that Windows removes with its last handle (see `Seat`),
//! never by a process id, which Windows reuses as soon as it can.
//!
//! Sections, mutexes, events and semaphores share one namespace: a name taken by
//! another kind of object fails with `ERROR_INVALID_HANDLE`, which is
//! `Error::WrongKind`.

use std::collections::HashSet;
use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use windows_sys::Win32::Foundation::{
    GetLastError, ERROR_ACCESS_DENIED, ERROR_ALREADY_EXISTS, ERROR_FILE_NOT_FOUND,
    ERROR_INVALID_HANDLE, HANDLE, WAIT_ABANDONED, WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::System::Threading::{
    CreateEventW, CreateMutexW, CreateSemaphoreW, GetCurrentThreadId, OpenEventW, ReleaseMutex,
    ReleaseSemaphore, SetEvent, WaitForMultipleObjects, WaitForSingleObject, INFINITE,
    SYNCHRONIZATION_SYNCHRONIZE,
};

use super::objects::{check_owner_of, wide};
use crate::error::{Error, Result};
use crate::owner::Trust;
use crate::sys::LockState;

/// The (name, thread id) pairs whose lock is held in this process.
static HELD: Mutex<Option<HashSet<(String, u32)>>> = Mutex::new(None);

fn held(name: &str) -> bool {
    // SAFETY: GetCurrentThreadId has no preconditions.
    let thread = unsafe { GetCurrentThreadId() };
    let table = crate::unpoisoned::lock(&HELD);
    table
        .as_ref()
        .is_some_and(|set| set.contains(&(name.to_owned(), thread)))
}

fn set_held(name: &str, is_held: bool) {
    // SAFETY: GetCurrentThreadId has no preconditions.
    let thread = unsafe { GetCurrentThreadId() };
    let mut table = crate::unpoisoned::lock(&HELD);
    let set = table.get_or_insert_with(HashSet::new);
    if is_held {
        set.insert((name.to_owned(), thread));
    } else {
        set.remove(&(name.to_owned(), thread));
    }
}

/// A named Windows mutex.
pub(crate) struct RobustLock {
    handle: OwnedHandle,
    name: String,
}

impl RobustLock {
    /// A Windows mutex keeps its state in the kernel, none in shared memory.
    pub(crate) const STATE_LEN: u64 = 0;

    /// Nothing to set up in shared memory.
    ///
    /// # Safety
    /// None needed: `_state` is not touched.
    pub(crate) unsafe fn init(_state: NonNull<u8>, _name: &str) -> Result<()> {
        Ok(())
    }

    /// The kernel mutex `name` (created if there is none; `_os_name`, the
    /// name of the object that holds the lock's shared state, and `_state`
    /// are not needed here), refused if `trust` does not accept its owner.
    /// Windows objects take their access from the default security
    /// descriptor, not from Unix permission bits.
    ///
    /// # Safety
    /// None needed: `_state` is not touched.
    pub(crate) unsafe fn open(
        name: &str,
        _os_name: &str,
        _state: NonNull<u8>,
        trust: &Trust,
    ) -> Result<RobustLock> {
        let wide = wide(name);
        // SAFETY: a NUL-terminated name that outlives the call; default security.
        let handle = unsafe { CreateMutexW(std::ptr::null(), 0, wide.as_ptr()) };
        let (handle, existed) = owned_or_error(handle, name, "a mutex")?;
        if existed {
            check_owner_of(handle.as_raw_handle(), name, trust)?;
        }
        Ok(RobustLock {
            handle,
            name: name.to_owned(),
        })
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
            _ => {
                return Err(crate::sys::io_error(
                    "lock",
                    name,
                    io::Error::last_os_error(),
                ))
            }
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
                found: None,
            },
            ERROR_ACCESS_DENIED => Error::PermissionDenied {
                op: "open",
                target: name.to_owned(),
            },
            _ => crate::sys::io_error("create", name, io::Error::from_raw_os_error(code as i32)),
        });
    }
    // SAFETY: a non-null handle from a Create*W call is ours to close.
    let owned = unsafe { OwnedHandle::from_raw_handle(handle) };
    Ok((owned, code == ERROR_ALREADY_EXISTS))
}

/// Sleeping on a word of shared memory until another process changes it:
/// a named semaphore that sleepers wait on and wakers release.
pub(crate) struct Waker {
    semaphore: OwnedHandle,
}

/// The longest a sleeper sleeps before looking again.
const SLICE: Duration = Duration::from_millis(10);
/// The semaphore's largest count.
const MAX_COUNT: i32 = i32::MAX;

impl Waker {
    /// The waker `which` of the object called `name`: the semaphore
    /// `NAME@which`, refused if `trust` does not accept its owner.
    pub(crate) fn open(name: &str, which: &str, trust: &Trust) -> Result<Waker> {
        let name = format!("{name}@{which}");
        let wide = wide(&name);
        // SAFETY: a NUL-terminated name that outlives the call; default security.
        let handle = unsafe { CreateSemaphoreW(std::ptr::null(), 0, MAX_COUNT, wide.as_ptr()) };
        let (semaphore, existed) = owned_or_error(handle, &name, "a semaphore")?;
        if existed {
            check_owner_of(semaphore.as_raw_handle(), &name, trust)?;
        }
        Ok(Waker { semaphore })
    }

    /// Sleeps while `word == expected`, at most `timeout` and at most
    /// `SLICE`; may return early: callers look again.
    pub(crate) fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        if word.load(Ordering::SeqCst) != expected {
            return;
        }
        let _ = wait(
            self.semaphore.as_raw_handle(),
            Some(timeout.map_or(SLICE, |timeout| timeout.min(SLICE))),
        );
    }

    /// Wakes up to `count` processes sleeping on the word.
    pub(crate) fn wake(&self, _word: &AtomicU32, count: u32) {
        let count = i32::try_from(count).unwrap_or(MAX_COUNT).max(1);
        // SAFETY: a live semaphore handle; a count past the maximum fails
        // harmlessly (the sleepers are woken by their slices).
        unsafe { ReleaseSemaphore(self.semaphore.as_raw_handle(), count, std::ptr::null_mut()) };
    }
}

/// A participant's seat in an object: proof that the process holding it is
/// alive, without naming the process. Seat `i` of the object `OS_NAME` is
/// the named event `OS_NAME@seat{i}`, which exists exactly while someone
/// holds a handle to it: Windows closes a process's handles when it dies,
/// `TerminateProcess` included, and the name goes with the last one.
pub(crate) struct Seat {
    _event: OwnedHandle,
}

impl Seat {
    /// Takes seat `index` of the object `os_name` if no one holds it (`None`
    /// if someone does). `_object`: the seat is an object of its own.
    pub(crate) fn take(
        _object: &super::Object,
        os_name: &str,
        index: u32,
        name: &str,
    ) -> Result<Option<Seat>> {
        let wide = wide(&seat_name(os_name, index));
        // SAFETY: a NUL-terminated name that outlives the call; default security.
        let handle = unsafe { CreateEventW(std::ptr::null(), 1, 0, wide.as_ptr()) };
        match owned_or_error(handle, name, "an event") {
            Ok((event, false)) => Ok(Some(Seat { _event: event })),
            // Someone holds it, or only looks at it: either way, not free.
            Ok((_, true)) | Err(Error::PermissionDenied { .. } | Error::WrongKind { .. }) => {
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// Whether someone `trust`ed holds seat `index` of the object `os_name`.
    /// A seat's name held by an owner the channel does not trust is not a
    /// participant's: it counts as free, so no one can keep a dead
    /// participant's claims alive by squatting its seat.
    pub(crate) fn is_held(
        _object: &super::Object,
        os_name: &str,
        index: u32,
        trust: &Trust,
    ) -> bool {
        let seat = seat_name(os_name, index);
        let wide = wide(&seat);
        // READ_CONTROL, to read the owner (see `check_owner_of`).
        let access =
            SYNCHRONIZATION_SYNCHRONIZE | windows_sys::Win32::Storage::FileSystem::READ_CONTROL;
        // SAFETY: a NUL-terminated name that outlives the call.
        let handle = unsafe { OpenEventW(access, 0, wide.as_ptr()) };
        if handle.is_null() {
            // SAFETY: reading the calling thread's last error has no preconditions.
            let code = unsafe { GetLastError() };
            // No such name: free. Any other failure (a name of another kind,
            // or one we may not open) is not a participant's seat either.
            return !matches!(
                code,
                ERROR_FILE_NOT_FOUND | ERROR_INVALID_HANDLE | ERROR_ACCESS_DENIED
            );
        }
        // SAFETY: a non-null handle from OpenEventW is ours to close.
        let event = unsafe { OwnedHandle::from_raw_handle(handle) };
        check_owner_of(event.as_raw_handle(), &seat, trust).is_ok()
    }
}

/// The name of seat `index` of the object `os_name`.
fn seat_name(os_name: &str, index: u32) -> String {
    format!("{os_name}@seat{index}")
}

/// How many words one [`wait_any`] watches besides the doorbell:
/// `WaitForMultipleObjects` takes 64 handles in all.
pub(crate) const WATCH_MAX: usize = 63;

/// The waiter thread's own doorbell, waited on beside the semaphores it
/// watches: an unnamed auto-reset event, which stays set until the waiter
/// sees it (so a ring is never missed, whatever `seen` says).
pub(crate) struct Doorbell {
    event: OwnedHandle,
}

impl Doorbell {
    /// A doorbell nobody rang yet.
    pub(crate) fn new() -> Result<Doorbell> {
        // SAFETY: no name, default security; auto-reset, not set.
        let handle = unsafe { CreateEventW(std::ptr::null(), 0, 0, std::ptr::null()) };
        if handle.is_null() {
            return Err(crate::sys::io_error(
                "create",
                "a waiter's doorbell",
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: a non-null handle from CreateEventW is ours to close.
        let event = unsafe { OwnedHandle::from_raw_handle(handle) };
        Ok(Doorbell { event })
    }

    /// Nothing to read: the event keeps a ring until it is waited on.
    pub(crate) fn seen(&self) -> u32 {
        0
    }

    /// Rings: the next or current [`wait_any`] returns.
    pub(crate) fn ring(&self) {
        // SAFETY: a live event handle.
        unsafe { SetEvent(self.event.as_raw_handle()) };
    }
}

/// A word [`wait_any`] watches: it returns once `word != expected` (seen
/// within `SLICE`) or someone releases `bell`'s semaphore.
pub(crate) struct Watch<'a> {
    pub(crate) word: &'a AtomicU32,
    pub(crate) expected: u32,
    pub(crate) bell: &'a Waker,
}

/// How long [`wait_any`] sleeps at most before the caller looks at its
/// words again: a release taken by another sleeper of the same semaphore
/// (a thread that timed out, another process's waiter) is noticed then.
/// Longer than a lone sleeper's `SLICE`: the waiter sleeps for every
/// future of the process, and an idle one should cost nothing.
const WATCH_SLICE: Duration = Duration::from_millis(50);

/// Sleeps until the doorbell rings, one of `watches` (at most
/// [`WATCH_MAX`]) is woken or changes, or `timeout` passes; may return
/// early: the caller looks at what changed. One `WaitForMultipleObjects`
/// of at most [`WATCH_SLICE`] (a changed word is noticed by the caller's
/// look after it, as a lone sleeper's is).
pub(crate) fn wait_any(
    doorbell: &Doorbell,
    _seen: u32,
    watches: &[Watch<'_>],
    timeout: Option<Duration>,
) {
    if watches
        .iter()
        .any(|watch| watch.word.load(Ordering::SeqCst) != watch.expected)
    {
        return;
    }
    let mut handles: Vec<HANDLE> = Vec::with_capacity(watches.len() + 1);
    handles.push(doorbell.event.as_raw_handle());
    for watch in watches {
        let semaphore = watch.bell.semaphore.as_raw_handle();
        // The same handle twice is refused.
        if !handles.contains(&semaphore) {
            handles.push(semaphore);
        }
    }
    let timeout = match (watches.is_empty(), timeout) {
        (true, timeout) => timeout,
        (false, Some(timeout)) => Some(timeout.min(WATCH_SLICE)),
        (false, None) => Some(WATCH_SLICE),
    };
    let millis = timeout.map_or(INFINITE, |timeout| {
        u32::try_from(timeout.as_nanos().div_ceil(1_000_000))
            .unwrap_or(INFINITE - 1)
            .min(INFINITE - 1)
    });
    // SAFETY: at most 64 distinct live handles of waitable objects, in an
    // array that outlives the call.
    unsafe { WaitForMultipleObjects(handles.len() as u32, handles.as_ptr(), 0, millis) };
}
