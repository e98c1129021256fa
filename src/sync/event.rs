//! [`NamedEvent`]: a flag one process sets and others wait for, by name.
//!
//! The event is a small named object (`NAME@event`, see `object.rs` for its
//! header) and its waiters sleep on a word of it through the platform's
//! [`sys::Waker`] (a futex on Linux, `os_sync_wait_on_address` or polling on
//! macOS, a named semaphore on Windows). The object, [`EventObject`]:
//!
//! | offset | field | who changes it |
//! |---|---|---|
//! | 0 | `header: Header`, the object header (see `object.rs`) | the creator, once |
//! | 16 | spare: the state starts a cache line of its own | |
//! | 64 | `signaled: u32`, 0 or 1 | `set` stores 1, `reset` 0; an auto-reset waiter takes it back to 0 |
//! | 68 | `waiters: u32`, how many are about to sleep or sleeping | each waiter, around its sleep |
//! | 72 | `manual: u32`, 1 for manual reset | the creator, once |
//! | 76 | spare, to the object's end at 4096 | |
//!
//! `set` stores 1 and wakes only when `waiters` is non-zero, so a set with
//! nobody waiting makes no system call; a waiter counts itself in before its
//! last look, and the waker re-checks the word as it goes to sleep, so no
//! wake-up is lost (both sides use sequentially consistent operations). A
//! waiter killed while sleeping leaves `waiters` one too high: later sets
//! then make one wasted wake-up, nothing worse.

use std::fmt;
use std::future::poll_fn;
use std::mem::offset_of;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::error::{Error, Result};
use crate::mapping::{Mapping, DEFAULT_MODE};
use crate::name::Name;
use crate::object::{self, Header, ObjectKind, Sharing};
use crate::owner::Trust;
use crate::sys::{self, Disposition};
use crate::waiter::{Nap, Pause, Step};

/// The event's object, as the module docs' table has it: a description
/// of the bytes. Nothing reads or writes it whole: the words are reached
/// as atomics at the offsets below.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
struct EventObject {
    header: Header,
    _pad_header: [u8; 48],
    signaled: u32,
    waiters: u32,
    manual: u32,
    _pad_end: [u8; 4020],
}

/// 1 while set.
const SIGNALED: u64 = offset_of!(EventObject, signaled) as u64;
/// How many waiters sleep (or are about to) on `SIGNALED`.
const WAITERS: u64 = offset_of!(EventObject, waiters) as u64;
/// 1 for manual reset (the creator's choice).
const MANUAL: u64 = offset_of!(EventObject, manual) as u64;
/// The size of an event's object.
const SIZE: u64 = size_of::<EventObject>() as u64;
// The bytes of this layout version (`object::VERSION`; a number changed
// here changes them): the state on a cache line of its own after the
// header, in one page.
const _: () = assert!(SIGNALED == 64 && SIZE == 4096 && align_of::<EventObject>() == 8);

/// How a [`NamedEvent`] behaves once set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventMode {
    /// A set wakes one waiter and the event resets itself as that waiter
    /// returns; with nobody waiting it stays set for the next one.
    AutoReset,
    /// A set wakes every waiter, and the event stays set until `reset`.
    ManualReset,
}

/// A cross-process event, found by name (Windows' event semantics on every
/// platform). The creator's [`EventMode`] holds for everyone who opens it.
///
/// After `fork()` a child may go on using an inherited event as its own
/// (an event stands for no process), and holds its name as a [`Mapping`]
/// does.
///
/// ```
/// use std::time::Duration;
/// use shmio::{EventMode, NamedEvent};
///
/// # let name = format!("shmio-doc-event-{}", std::process::id());
/// let event = NamedEvent::create_or_open(&name, EventMode::AutoReset)?;
/// assert!(event.wait_timeout(Duration::from_millis(10)).is_err_and(|e| e.is_timed_out()));
/// event.set()?; // e.g. from another process
/// event.wait_timeout(Duration::from_secs(1))?;
/// assert_eq!(event.try_wait(), Err(shmio::Error::WouldBlock), "auto reset: consumed");
/// # Ok::<(), shmio::Error>(())
/// ```
pub struct NamedEvent {
    /// Sleeps and wakes on `SIGNALED`; declared before the object it points into.
    waker: Arc<sys::Waker>,
    /// The event's state.
    object: Mapping,
    manual: bool,
    name: String,
}

/// Options for creating or opening a [`NamedEvent`]: how a new one resets,
/// who may use it, and whose existing one may be opened.
///
/// ```
/// use shmio::{EventMode, NamedEvent};
///
/// # let name = format!("shmio-doc-event-opts-{}", std::process::id());
/// let event = NamedEvent::options()
///     .reset(EventMode::ManualReset)
///     .permissions(0o660)
///     .create_or_open(&name)?;
/// assert_eq!(event.mode(), EventMode::ManualReset);
/// # Ok::<(), shmio::Error>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EventOptions {
    reset: EventMode,
    /// Whether `reset` was asked for (then an existing event must have it).
    reset_asked: bool,
    permissions: u32,
    trust: Trust,
}

impl Default for EventOptions {
    fn default() -> Self {
        EventOptions {
            reset: EventMode::AutoReset,
            reset_asked: false,
            permissions: DEFAULT_MODE,
            trust: Trust::OWN,
        }
    }
}

impl EventOptions {
    /// Options with every default: auto reset, owner-only, only the
    /// caller's own event opened.
    pub fn new() -> Self {
        Self::default()
    }

    /// How the event resets: a new one is made so (default
    /// [`EventMode::AutoReset`]), and an existing one opened by
    /// `create_or_open` must be so ([`Error::Mismatch`] if not). Unset, an
    /// opener gets the creator's mode, whatever it is.
    pub fn reset(&mut self, reset: EventMode) -> &mut Self {
        self.reset = reset;
        self.reset_asked = true;
        self
    }

    crate::owner::sharing_options!("event", permissions);

    crate::object::finish_options!(
        NamedEvent,
        "event",
        "A new one starts unset, in these options' reset mode; an opener gets the creator's."
    );

    /// Creates and/or opens the event `name`, as `how` says.
    fn make(&self, name: &str, how: Disposition) -> Result<NamedEvent> {
        let name = Name::new(name)?;
        let sharing = Sharing {
            permissions: self.permissions,
            trust: &self.trust,
            parent_only: false,
            persistent: false,
        };
        let manual = u32::from(self.reset == EventMode::ManualReset);
        let (object, _) = object::make(
            &object::event_name(name.as_str()),
            how,
            SIZE,
            &sharing,
            ObjectKind::Event,
            &|window| window.write_value(MANUAL, &manual),
        )
        .map_err(|error| error.of(ObjectKind::Event, name.as_str()))?;
        let manual = object.read_value_at::<u32>(MANUAL)? != 0;
        let found = if manual {
            EventMode::ManualReset
        } else {
            EventMode::AutoReset
        };
        if self.reset_asked && how != Disposition::Open && found != self.reset {
            return Err(Error::Mismatch {
                name: name.as_str().to_owned(),
                asked: format!("an event in {:?} mode", self.reset).into(),
                found: format!("an event in {found:?} mode").into(),
            });
        }
        let os_name = object.os_name().unwrap_or_default();
        Ok(NamedEvent {
            waker: Arc::new(sys::Waker::open(&os_name, "wake", &self.trust)?),
            object,
            manual,
            name: name.as_str().to_owned(),
        })
    }
}

impl NamedEvent {
    /// Opens the event called `name`, creating it (unset, in `mode`) if
    /// there is none; [`Error::Mismatch`] if it exists in the other mode. A new event is usable by its owner only
    /// ([`DEFAULT_MODE`]); another user's existing one is
    /// [`crate::Error::ForeignOwner`] (see [`NamedEvent::options`]).
    pub fn create_or_open(name: &str, mode: EventMode) -> Result<NamedEvent> {
        NamedEvent::options().reset(mode).create_or_open(name)
    }

    /// Opens an existing event, in its creator's mode.
    pub fn open(name: &str) -> Result<NamedEvent> {
        NamedEvent::options().open(name)
    }

    /// A builder for the other settings: permissions, trusted owners.
    pub fn options() -> EventOptions {
        EventOptions::new()
    }

    /// True when an existing event was opened rather than created.
    pub fn existed(&self) -> bool {
        self.object.existed()
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The mode the creator chose.
    pub fn mode(&self) -> EventMode {
        if self.manual {
            EventMode::ManualReset
        } else {
            EventMode::AutoReset
        }
    }

    /// Sets the event: wakes one waiter (auto reset) or all (manual reset).
    pub fn set(&self) -> Result<()> {
        let signaled = self.word(SIGNALED)?;
        signaled.store(1, Ordering::SeqCst);
        let waiters = self.word(WAITERS)?.load(Ordering::SeqCst);
        if waiters > 0 {
            self.waker
                .wake(signaled, if self.manual { waiters } else { 1 });
        }
        Ok(())
    }

    /// Clears the event.
    pub fn reset(&self) -> Result<()> {
        self.word(SIGNALED)?.store(0, Ordering::SeqCst);
        Ok(())
    }

    /// Waits until the event is set (and, in auto-reset mode, takes it).
    pub fn wait(&self) -> Result<()> {
        self.wait_until(None).map(drop)
    }

    /// Waits at most `timeout` for the event (taking it, in auto-reset
    /// mode); [`Error::TimedOut`] if it was not set by then.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<()> {
        if self.wait_until(Some(crate::deadline::after(timeout)))? {
            return Ok(());
        }
        Err(Error::TimedOut {
            name: self.name.clone(),
        })
    }

    /// Waits until the event is set (and, in auto-reset mode, takes it):
    /// the future of [`wait`](Self::wait), in any executor. It spins
    /// briefly, yields to its executor for a while, then sleeps through the
    /// process's waiter thread at no CPU cost until a `set`.
    ///
    /// **Cancel safety:** in auto-reset mode the event is taken in the poll
    /// that returns, so a future dropped before it is ready has taken
    /// nothing (and a wake-up it may have absorbed is passed on).
    ///
    /// ```
    /// use shmio::{EventMode, NamedEvent};
    ///
    /// # let name = format!("shmio-doc-event-async-{}", std::process::id());
    /// let event = NamedEvent::create_or_open(&name, EventMode::AutoReset)?;
    /// event.set()?; // e.g. from another process
    /// # futures_lite::future::block_on(async {
    /// event.wait_async().await?;
    /// # Ok::<(), shmio::Error>(()) })?;
    /// # Ok::<(), shmio::Error>(())
    /// ```
    pub async fn wait_async(&self) -> Result<()> {
        let signaled = self.word(SIGNALED)?;
        let waiters = self.word(WAITERS)?;
        let mut pause = Pause::new();
        poll_fn(|cx| loop {
            if self.try_take(signaled) {
                pause.wake_up();
                return Poll::Ready(Ok(()));
            }
            match pause.step(cx) {
                Step::Look => continue,
                Step::Pending => return Poll::Pending,
                Step::Sleep => {}
            }
            // As in `wait_until`: counted in before the last look.
            let nap = Nap::new(signaled, waiters, &self.waker, &self.object);
            if self.try_take(signaled) {
                return Poll::Ready(Ok(()));
            }
            return match pause.sleep(nap, cx) {
                Ok(()) => Poll::Pending,
                Err(error) => Poll::Ready(Err(error)),
            };
        })
        .await
    }

    /// Takes the event if it is set (in auto-reset mode; in manual-reset
    /// mode it stays set), without waiting; [`Error::WouldBlock`] if not.
    pub fn try_wait(&self) -> Result<()> {
        if self.try_take(self.word(SIGNALED)?) {
            return Ok(());
        }
        Err(Error::WouldBlock)
    }

    /// Whether the event is set now, taking nothing (Python's
    /// `threading.Event.is_set`).
    pub fn is_set(&self) -> Result<bool> {
        Ok(self.word(SIGNALED)?.load(Ordering::SeqCst) == 1)
    }

    /// The word at `offset` of the event's state.
    fn word(&self, offset: u64) -> Result<&AtomicU32> {
        self.object.atomic_u32(offset)
    }

    /// Takes the signal if it is there: consumes it for auto reset.
    fn try_take(&self, signaled: &AtomicU32) -> bool {
        if self.manual {
            signaled.load(Ordering::SeqCst) == 1
        } else {
            signaled
                .compare_exchange(1, 0, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        }
    }

    /// Waits until set or `deadline` (none: forever); whether it was set.
    fn wait_until(&self, deadline: Option<Instant>) -> Result<bool> {
        let signaled = self.word(SIGNALED)?;
        if self.try_take(signaled) {
            return Ok(true);
        }
        let waiters = self.word(WAITERS)?;
        loop {
            waiters.fetch_add(1, Ordering::SeqCst);
            if self.try_take(signaled) {
                waiters.fetch_sub(1, Ordering::SeqCst);
                return Ok(true);
            }
            let remaining =
                deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()));
            if remaining.is_some_and(|remaining| remaining.is_zero()) {
                waiters.fetch_sub(1, Ordering::SeqCst);
                return Ok(self.try_take(signaled));
            }
            self.waker.wait(signaled, 0, remaining);
            waiters.fetch_sub(1, Ordering::SeqCst);
            if self.try_take(signaled) {
                return Ok(true);
            }
        }
    }
}

impl fmt::Debug for NamedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamedEvent")
            .field("name", &self.name)
            .field("mode", &self.mode())
            .field("existed", &self.existed())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc_tables::{self, layout};

    #[test]
    fn the_docs_table_is_the_struct() {
        let layouts = [
            layout!(EventObject {
                header,
                _pad_header,
                signaled,
                waiters,
                manual,
                _pad_end,
            }),
            doc_tables::header(),
        ];
        let rows = doc_tables::check(include_str!("event.rs"), &["EventObject"], &layouts);
        assert_eq!(rows, 6);
    }
}
