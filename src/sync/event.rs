//! [`NamedEvent`]: a flag one process sets and others wait for, by name.

use std::fmt;
use std::time::Duration;

use crate::error::Result;
use crate::mapping::DEFAULT_MODE;
use crate::name::Name;
use crate::owner::Trust;
use crate::sync::segment::Sharing;
use crate::sys;

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
/// ```
/// use std::time::Duration;
/// use shmio::{EventMode, NamedEvent};
///
/// # let name = format!("shmio-doc-event-{}", std::process::id());
/// let event = NamedEvent::create_or_open(&name, EventMode::AutoReset)?;
/// assert!(!event.wait_timeout(Duration::from_millis(10))?);
/// event.set()?; // e.g. from another process
/// assert!(event.wait_timeout(Duration::from_secs(1))?);
/// assert!(!event.wait_timeout(Duration::ZERO)?, "auto reset: consumed");
/// # Ok::<(), shmio::Error>(())
/// ```
pub struct NamedEvent {
    raw: sys::RawEvent,
    name: String,
    existed: bool,
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
pub struct EventOptions {
    reset: EventMode,
    permissions: u32,
    trust: Trust,
}

impl Default for EventOptions {
    fn default() -> Self {
        EventOptions {
            reset: EventMode::AutoReset,
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

    /// How a new event resets (an opener gets the creator's choice).
    /// Default [`EventMode::AutoReset`].
    pub fn reset(&mut self, reset: EventMode) -> &mut Self {
        self.reset = reset;
        self
    }

    crate::owner::sharing_options!("event", permissions);

    /// Opens the event called `name`, creating it (unset) if there is none.
    pub fn create_or_open(&self, name: &str) -> Result<NamedEvent> {
        let name = Name::new(name)?;
        let sharing = Sharing {
            permissions: self.permissions,
            trust: &self.trust,
        };
        let (raw, existed) = sys::RawEvent::create_or_open(
            name.as_str(),
            self.reset == EventMode::ManualReset,
            &sharing,
        )?;
        Ok(NamedEvent {
            raw,
            name: name.as_str().to_owned(),
            existed,
        })
    }
}

impl NamedEvent {
    /// Opens the event called `name`, creating it (unset, in `mode`) if
    /// there is none. A new event is usable by its owner only
    /// ([`DEFAULT_MODE`]); another user's existing one is
    /// [`crate::Error::ForeignOwner`] (see [`NamedEvent::options`]).
    pub fn create_or_open(name: &str, mode: EventMode) -> Result<NamedEvent> {
        NamedEvent::options().reset(mode).create_or_open(name)
    }

    /// A builder for the other settings: permissions, trusted owners.
    pub fn options() -> EventOptions {
        EventOptions::new()
    }

    /// True when an existing event was opened rather than created.
    pub fn existed(&self) -> bool {
        self.existed
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The mode the creator chose.
    pub fn mode(&self) -> EventMode {
        if self.raw.is_manual() {
            EventMode::ManualReset
        } else {
            EventMode::AutoReset
        }
    }

    /// Sets the event: wakes one waiter (auto reset) or all (manual reset).
    pub fn set(&self) -> Result<()> {
        self.raw.set()
    }

    /// Clears the event.
    pub fn reset(&self) -> Result<()> {
        self.raw.reset()
    }

    /// Waits until the event is set (and, in auto-reset mode, takes it).
    pub fn wait(&self) -> Result<()> {
        self.raw.wait(None).map(drop)
    }

    /// Waits at most `timeout`; whether the event was set.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.raw.wait(Some(timeout))
    }
}

impl fmt::Debug for NamedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamedEvent")
            .field("name", &self.name)
            .field("mode", &self.mode())
            .field("existed", &self.existed)
            .finish()
    }
}
