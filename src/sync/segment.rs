//! The small named mapping that holds the state of a cross-process object
//! (a mutex, an event) where the OS has no named object of that kind.
//!
//! Layout, all little-endian, at the start of a 4 KiB mapping:
//!
//! | offset | field | who writes it |
//! |---|---|---|
//! | 0 | `magic: u64`, what kind of object this is | the creator, before `ready` |
//! | 8 | `ready: u32`: 0 while the creator sets up, then [`READY`] | the creator, once |
//! | 12 | `version: u32`, [`VERSION`] | the creator, before `ready` |
//! | 16 | `owner: [u64; 2]`, for a mapping's mutex: the mapping's identity | the creator, before `ready` |
//! | 16.. | otherwise the object's own header and state (a mutex's or event's from [`STATE_OFFSET`]) | the object |
//!
//! The creator fills in the state and only then publishes `ready`
//! (release); an opener waits (bounded) for `ready` (acquire) and checks the
//! magic and version, so it never sees half-made state, and a name that is
//! something else is [`Error::WrongKind`], never undefined behaviour.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::mapping::Mapping;
use crate::sys::ObjectId;

/// The value of `ready` once the creator has set the object up.
pub(crate) const READY: u32 = 1;
/// The layout version this code reads and writes.
pub(crate) const VERSION: u32 = 1;
/// Where the object's own state starts.
pub(crate) const STATE_OFFSET: u64 = 64;
/// The size of a mutex's or an event's segment.
#[cfg_attr(windows, allow(dead_code))]
pub(crate) const SEGMENT_SIZE: u64 = 4096;
/// What a mutex segment starts with: "shmioMTX".
#[cfg_attr(windows, allow(dead_code))]
pub(crate) const MUTEX_MAGIC: u64 = u64::from_le_bytes(*b"shmioMTX");
/// What an event segment starts with: "shmioEVT".
#[cfg_attr(windows, allow(dead_code))]
const EVENT_MAGIC: u64 = u64::from_le_bytes(*b"shmioEVT");

/// Event segment: 1 while set.
#[cfg_attr(windows, allow(dead_code))]
pub(crate) const SIGNALED: u64 = STATE_OFFSET;
/// Event segment: how many waiters sleep (or are about to) on `SIGNALED`.
#[cfg_attr(windows, allow(dead_code))]
pub(crate) const WAITERS: u64 = STATE_OFFSET + 4;
/// Event segment: 1 for manual reset (the creator's choice).
#[cfg_attr(windows, allow(dead_code))]
const MANUAL: u64 = STATE_OFFSET + 8;

/// The OS-visible name of a mutex's segment.
#[cfg_attr(windows, allow(dead_code))]
pub(crate) fn mutex_name(name: &str) -> String {
    format!("{name}@mutex")
}

/// Creates or opens the segment of the event called `name` (a new one in
/// `manual` mode, with permission bits `mode`). Returns it, whether it
/// existed, and its mode: the creator's, whatever an opener asked for.
#[cfg_attr(windows, allow(dead_code))]
pub(crate) fn event(name: &str, manual: bool, mode: u32) -> Result<(Mapping, bool, bool)> {
    let (segment, existed) = create_or_open(
        &format!("{name}@event"),
        SEGMENT_SIZE,
        mode,
        EVENT_MAGIC,
        "a shmio event",
        |segment| segment.write_value_at(MANUAL, &u32::from(manual)),
    )?;
    let manual = segment.read_value_at::<u32>(MANUAL)? != 0;
    Ok((segment, existed, manual))
}

/// How long an opener waits for the creator to publish `ready`.
const READY_WAIT: Duration = Duration::from_secs(2);

/// Creates or opens the segment with OS-visible name `name` (already derived
/// for its kind), `size` bytes and permission bits `mode` if it is created.
/// A creator runs `init` on it before publishing it. Returns the segment and
/// whether it existed.
pub(crate) fn create_or_open(
    name: &str,
    size: u64,
    mode: u32,
    magic: u64,
    kind: &'static str,
    init: impl FnOnce(&Mapping) -> Result<()>,
) -> Result<(Mapping, bool)> {
    let segment = create_or_open_any_size(name, size, mode)?;
    if !segment.existed() {
        segment.write_value_at(0, &magic)?;
        segment.write_value_at(12, &VERSION)?;
        init(&segment)?;
        segment.atomic_u32(8)?.store(READY, Ordering::Release);
        return Ok((segment, false));
    }
    check(segment, name, magic, kind).map(|segment| (segment, true))
}

/// Where a mapping's mutex records the identity of its mapping.
#[cfg_attr(windows, allow(dead_code))]
const OWNER_OFFSET: u64 = 16;

/// As [`create_or_open`], for the state of a mapping's mutex: `owner` is
/// the identity of the mapping it belongs to, recorded by the creator.
///
/// A segment whose holders all died is normally removed and made afresh.
/// A mapping's mutex is opened only when a process first locks, so a
/// process that dies holding it may have been its only holder, while the
/// mapping (and its half-updated data) lives on. Removing the segment then
/// would lose the news that the holder died. So a stale segment is kept,
/// and its state tells the next locker, if it belongs to the same mapping
/// and was fully made; one left by an earlier mapping of the same name is
/// removed as usual.
#[cfg_attr(windows, allow(dead_code))]
pub(crate) fn create_or_open_owned(
    name: &str,
    size: u64,
    mode: u32,
    owner: Option<ObjectId>,
    magic: u64,
    kind: &'static str,
    init: impl FnOnce(&Mapping) -> Result<()>,
) -> Result<(Mapping, bool)> {
    let Some(owner) = owner else {
        return create_or_open(name, size, mode, magic, kind, init);
    };
    match Mapping::options().open_derived_keeping_stale(name) {
        Ok((segment, false)) => return check(segment, name, magic, kind).map(|s| (s, true)),
        Ok((segment, true)) => {
            let ready = segment.atomic_u32(8)?.load(Ordering::Acquire) == READY;
            let ours = ready
                && segment.read_value_at::<u64>(0)? == magic
                && segment.read_value_at::<ObjectId>(OWNER_OFFSET)? == owner;
            if ours {
                return check(segment, name, magic, kind).map(|s| (s, true));
            }
            // Another mapping's, or never finished: closing it (as its only
            // holder) removes it; the usual path below makes it afresh.
        }
        Err(Error::NotFound { .. }) => {}
        Err(error) => return Err(error),
    }
    create_or_open(name, size, mode, magic, kind, |segment| {
        segment.write_value_at(OWNER_OFFSET, &owner)?;
        init(segment)
    })
}

/// Creates the mapping `name` with `size` bytes and `mode`, or opens it whatever its size.
fn create_or_open_any_size(name: &str, size: u64, mode: u32) -> Result<Mapping> {
    let start = Instant::now();
    loop {
        match Mapping::options()
            .size(size)
            .mode(mode)
            .create_derived(name)
        {
            Err(Error::AlreadyExists { .. }) => {}
            created => return created,
        }
        match Mapping::options().open_derived(name) {
            // Removed between the two calls by its last holder: try again.
            Err(Error::NotFound { .. }) if start.elapsed() < READY_WAIT => {}
            opened => return opened,
        }
    }
}

/// Opens the existing segment `name`, checking that it is a `kind`.
pub(crate) fn open(name: &str, magic: u64, kind: &'static str) -> Result<Mapping> {
    let segment = Mapping::options().open_derived(name)?;
    check(segment, name, magic, kind)
}

/// Waits (bounded) for the creator to publish the segment, then checks what it is.
fn check(segment: Mapping, name: &str, magic: u64, kind: &'static str) -> Result<Mapping> {
    let wrong_kind = || Error::WrongKind {
        name: name.to_owned(),
        expected: kind,
    };
    if segment.len() < STATE_OFFSET {
        return Err(wrong_kind());
    }
    let ready = segment.atomic_u32(8)?;
    let start = Instant::now();
    while ready.load(Ordering::Acquire) != READY {
        let found: u64 = segment.read_value_at(0)?;
        if found != magic && found != 0 {
            return Err(wrong_kind());
        }
        if start.elapsed() > READY_WAIT {
            return Err(Error::NotReady {
                name: name.to_owned(),
                waited: start.elapsed(),
            });
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    if segment.read_value_at::<u64>(0)? != magic {
        return Err(wrong_kind());
    }
    let version: u32 = segment.read_value_at(12)?;
    if version != VERSION {
        return Err(Error::Corrupt {
            offset: 12,
            reason: format!(
                "{name:?} has layout version {version}; this shmio reads version {VERSION}"
            ),
        });
    }
    Ok(segment)
}
