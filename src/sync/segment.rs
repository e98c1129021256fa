//! The small named mapping that holds the state of a cross-process object
//! (a mutex, an event, a channel) where the OS has no named object of that
//! kind.
//!
//! Layout, all little-endian, at the start of the mapping:
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
//! (release). Where the OS lets a name appear only once its object is set
//! up (Linux), no one ever sees a segment before that, so an opener that
//! finds no valid header at once knows it is not a shmio object of that
//! kind ([`Error::WrongKind`], without waiting). Where the name is public
//! from the start (Windows, macOS), `sys` waits (bounded) for `ready` first.
//! Either way an opener never sees half-made state, and a name that is
//! something else is [`Error::WrongKind`], never undefined behaviour.

use std::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::mapping::{Hooks, Mapping};
use crate::owner::Trust;
use crate::sys::{Disposition, ObjectId};
use crate::view::Window;

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

/// Where a mapping's mutex records the identity of its mapping.
#[cfg_attr(windows, allow(dead_code))]
const OWNER_OFFSET: u64 = 16;
/// Where the ready flag is.
const READY_OFFSET: u64 = 8;
/// Where the layout version is.
const VERSION_OFFSET: u64 = 12;

/// The OS-visible name of a mutex's segment.
#[cfg_attr(windows, allow(dead_code))]
pub(crate) fn mutex_name(name: &str) -> String {
    format!("{name}@mutex")
}

/// Who may make and use a segment: its permission bits if it is created, and
/// the owners (besides the caller) whose existing segment may be opened.
pub(crate) struct Sharing<'a> {
    /// Permission bits of a new segment.
    pub permissions: u32,
    /// Whose segments may be opened.
    pub trust: &'a Trust,
}

/// Creates or opens the segment of the event called `name` (a new one in
/// `manual` mode). Returns it, whether it existed, and its mode: the
/// creator's, whatever an opener asked for.
#[cfg_attr(windows, allow(dead_code))]
pub(crate) fn event(
    name: &str,
    manual: bool,
    sharing: &Sharing<'_>,
) -> Result<(Mapping, bool, bool)> {
    let (segment, existed) = create_or_open(
        &format!("{name}@event"),
        SEGMENT_SIZE,
        sharing,
        EVENT_MAGIC,
        "a shmio event",
        &|window| window.write_value(MANUAL, &u32::from(manual)),
    )?;
    let manual = segment.read_value_at::<u32>(MANUAL)? != 0;
    Ok((segment, existed, manual))
}

/// Writes the header of a new segment of kind `magic` around `init` (the
/// object's own state), publishing `ready` last.
fn init_header(window: &Window, magic: u64, init: &dyn Fn(&Window) -> Result<()>) -> Result<()> {
    window.write_value(0, &magic)?;
    window.write_value(VERSION_OFFSET, &VERSION)?;
    init(window)?;
    // SAFETY: the window's memory stays mapped while the creator's hook runs.
    let ready = unsafe { window.atomic_u32(READY_OFFSET) }?;
    ready.store(READY, Ordering::Release);
    Ok(())
}

/// Whether a creator is done with the segment in `window`, as far as a
/// waiting opener cares: it published `ready`, or the segment is plainly
/// something else (another magic), so waiting would not help.
fn settled(window: &Window, magic: u64) -> bool {
    let ready = window
        .load_u32_acquire(READY_OFFSET)
        .is_ok_and(|ready| ready == READY);
    let found = window.read_value::<u64>(0).unwrap_or(0);
    ready || (found != 0 && found != magic)
}

/// Creates or opens the segment with OS-visible name `name` (already derived
/// for its kind), `size` bytes if it is created. A creator runs `init` on it
/// before anyone else can use it. Returns the segment and whether it existed.
pub(crate) fn create_or_open(
    name: &str,
    size: u64,
    sharing: &Sharing<'_>,
    magic: u64,
    kind: &'static str,
    init: &dyn Fn(&Window) -> Result<()>,
) -> Result<(Mapping, bool)> {
    let init = |window: &Window| init_header(window, magic, init);
    let ready = |window: &Window| settled(window, magic);
    let hooks = Hooks {
        init: Some(&init),
        ready: Some(&ready),
        keep_stale: false,
        any_size: true,
    };
    let (segment, _) = Mapping::options()
        .size(size)
        .mode(sharing.permissions)
        .set_trust(sharing.trust.clone())
        .derived(name, Disposition::CreateOrOpen, &hooks)?;
    if segment.existed() {
        return check(segment, name, magic, kind).map(|segment| (segment, true));
    }
    Ok((segment, false))
}

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
    sharing: &Sharing<'_>,
    owner: Option<ObjectId>,
    magic: u64,
    kind: &'static str,
    init: &dyn Fn(&Window) -> Result<()>,
) -> Result<(Mapping, bool)> {
    let Some(owner) = owner else {
        return create_or_open(name, size, sharing, magic, kind, init);
    };
    let ready = |window: &Window| settled(window, magic);
    let keeping_stale = Hooks {
        init: None,
        ready: Some(&ready),
        keep_stale: true,
        any_size: true,
    };
    let opened = Mapping::options().set_trust(sharing.trust.clone()).derived(
        name,
        Disposition::Open,
        &keeping_stale,
    );
    match opened {
        Ok((segment, false)) => return check(segment, name, magic, kind).map(|s| (s, true)),
        Ok((segment, true)) => {
            let ours = is_ready(&segment, magic)?
                && segment.read_value_at::<ObjectId>(OWNER_OFFSET)? == owner;
            if ours {
                return check(segment, name, magic, kind).map(|s| (s, true));
            }
            // Another mapping's: closing it (as its only holder) removes
            // it; the usual path below makes it afresh.
        }
        Err(Error::NotFound { .. }) => {}
        Err(error) => return Err(error),
    }
    let init = |window: &Window| {
        window.write_value(OWNER_OFFSET, &owner)?;
        init(window)
    };
    create_or_open(name, size, sharing, magic, kind, &init)
}

/// Opens the existing segment `name`, checking that it is a `kind`.
pub(crate) fn open(name: &str, trust: &Trust, magic: u64, kind: &'static str) -> Result<Mapping> {
    let ready = |window: &Window| settled(window, magic);
    let hooks = Hooks {
        init: None,
        ready: Some(&ready),
        keep_stale: false,
        any_size: true,
    };
    let (segment, _) =
        Mapping::options()
            .set_trust(trust.clone())
            .derived(name, Disposition::Open, &hooks)?;
    check(segment, name, magic, kind)
}

/// Whether the segment is a published one of kind `magic`.
fn is_ready(segment: &Mapping, magic: u64) -> Result<bool> {
    Ok(segment.len() >= STATE_OFFSET
        && segment.atomic_u32(READY_OFFSET)?.load(Ordering::Acquire) == READY
        && segment.read_value_at::<u64>(0)? == magic)
}

/// Checks that an opened segment is a published `kind` of this layout
/// version. It never waits: by now its creator has published it, or it is
/// not what was expected.
pub(crate) fn check(
    segment: Mapping,
    name: &str,
    magic: u64,
    kind: &'static str,
) -> Result<Mapping> {
    if !is_ready(&segment, magic)? {
        return Err(Error::WrongKind {
            name: name.to_owned(),
            expected: kind,
        });
    }
    let version: u32 = segment.read_value_at(VERSION_OFFSET)?;
    if version != VERSION {
        return Err(Error::Corrupt {
            offset: VERSION_OFFSET,
            reason: format!(
                "{name:?} has layout version {version}; this shmio reads version {VERSION}"
            ),
        });
    }
    Ok(segment)
}
