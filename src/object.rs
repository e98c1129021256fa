//! The header every shmio object (a mutex's, an event's or a channel's
//! state) starts with, and how a named object with a header is created and
//! opened: the one way every kind of object comes to be.
//!
//! Layout, little-endian, at the start of the object's named mapping:
//!
//! | offset | field | who writes it |
//! |---|---|---|
//! | 0 | `magic: u64`: which [`ObjectKind`] of object this is | the creator, before `ready` |
//! | 8 | `ready: u32`: 0 while the creator sets up, then [`READY`] | the creator, once |
//! | 12 | `version: u32`: [`VERSION`] | the creator, before `ready` |
//! | 16.. | the kind's own state | the kind |
//!
//! The creator fills in the header and the state and only then publishes
//! `ready` (release). Where the OS lets a name appear only once its object
//! is set up (Linux), no one ever sees an object before that, so an opener
//! that finds no valid header knows at once that it is not a shmio object
//! of that kind. Where the name is public from the start (Windows, macOS),
//! `sys` waits (bounded) for `ready` first. Either way an opener never sees
//! half-made state, and a name that is something else is
//! [`Error::WrongKind`], never undefined behaviour.
//!
//! This module knows headers and how objects are made; what each kind keeps
//! after the header is its own module's business (`sync`, `channel`).

use std::mem::offset_of;
use std::sync::atomic::Ordering;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::error::{Error, Result};
use crate::mapping::Window;
use crate::mapping::{Hooks, Mapping};
use crate::owner::Trust;
use crate::sys::{Disposition, ObjectId};

/// The three ways every object's options end, over the options' own
/// `make(&self, name, Disposition)`: `create_or_open`, `create`, `open`.
/// `$object` is the type made, `$what` names it in the docs, `$more` says
/// what else holds for it (its geometry, its mode).
macro_rules! finish_options {
    ($object:ty, $what:literal, $more:literal) => {
        #[doc = concat!(
            "Opens the ", $what, " called `name`, creating it if there is none, in \
             one atomic step; its `existed()` tells which happened. ", $more
        )]
        pub fn create_or_open(&self, name: &str) -> $crate::Result<$object> {
            self.make(name, $crate::sys::Disposition::CreateOrOpen)
        }

        #[doc = concat!(
            "Creates a new ", $what, "; [`Error::AlreadyExists`](crate::Error::AlreadyExists) \
             if the name is taken."
        )]
        pub fn create(&self, name: &str) -> $crate::Result<$object> {
            self.make(name, $crate::sys::Disposition::Create)
        }

        #[doc = concat!(
            "Opens an existing ", $what, "; [`Error::NotFound`](crate::Error::NotFound) \
             if there is none. ", $more
        )]
        pub fn open(&self, name: &str) -> $crate::Result<$object> {
            self.make(name, $crate::sys::Disposition::Open)
        }
    };
}
pub(crate) use finish_options;

/// The header every shmio object starts with (see the module docs).
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct Header {
    /// Which kind of object this is ([`ObjectKind::magic`]).
    pub magic: u64,
    /// [`READY`] once the creator has set the object up.
    pub ready: u32,
    /// The layout version, [`VERSION`].
    pub version: u32,
}

/// The value of `ready` once the creator has set the object up.
pub(crate) const READY: u32 = 1;
/// The layout version this code reads and writes.
pub(crate) const VERSION: u32 = 4;
/// Where a kind's own state starts.
pub(crate) const HEADER_LEN: u64 = size_of::<Header>() as u64;
/// Where the ready flag is.
const READY_OFFSET: u64 = offset_of!(Header, ready) as u64;

impl Header {
    /// The header of a finished object of `kind`.
    pub(crate) fn new(kind: ObjectKind) -> Header {
        Header {
            magic: kind.magic(),
            ready: READY,
            version: VERSION,
        }
    }
}

pub(crate) use crate::kind::ObjectKind;

/// The name of the object that holds the state of the mutex `name`.
pub(crate) fn mutex_name(name: &str) -> String {
    crate::name::mutex_state_name(name)
}

/// The name of the object that holds the state of the event `name`.
pub(crate) fn event_name(name: &str) -> String {
    crate::name::event_state_name(name)
}

/// Who may make and use an object: its permission bits if it is created,
/// and the owners (besides the caller) whose existing object may be opened.
pub(crate) struct Sharing<'a> {
    /// Permission bits of a new object.
    pub permissions: u32,
    /// Whose objects may be opened.
    pub trust: &'a Trust,
    /// Whether a handle of the object is its process's alone: a forked
    /// child cannot use it and gets no share of its name (a channel's, a
    /// bus's objects).
    pub parent_only: bool,
    /// Whether the name stays after its last holder closes (a channel made
    /// `persistent`), until removed.
    pub persistent: bool,
}

/// Writes the header of a new object of `kind` around `init` (the kind's
/// own state), publishing `ready` last.
fn init_header(
    window: &Window,
    kind: ObjectKind,
    init: &dyn Fn(&Window) -> Result<()>,
) -> Result<()> {
    window.write_value(0, &kind.magic())?;
    window.write_value(offset_of!(Header, version) as u64, &VERSION)?;
    init(window)?;
    // SAFETY: the window's memory stays mapped while the creator's hook runs.
    let ready = unsafe { window.atomic_u32(READY_OFFSET) }?;
    ready.store(READY, Ordering::Release);
    Ok(())
}

/// Whether a creator is done with the object in `window`, as far as a
/// waiting opener cares: it published `ready`, or the object is plainly
/// something else (another magic), so waiting would not help.
fn settled(window: &Window, kind: ObjectKind) -> bool {
    let ready = window
        .load_u32_acquire(READY_OFFSET)
        .is_ok_and(|ready| ready == READY);
    let found = window.read_value::<u64>(0).unwrap_or(0);
    ready || (found != 0 && found != kind.magic())
}

/// Creates and/or opens, as `how` says, the object with OS-visible name
/// `name` (already derived for its kind), `size` bytes if it is created. A
/// creator runs `init` on it before anyone else can use it. Returns the
/// object and whether it existed.
pub(crate) fn make(
    name: &str,
    how: Disposition,
    size: u64,
    sharing: &Sharing<'_>,
    kind: ObjectKind,
    init: &dyn Fn(&Window) -> Result<()>,
) -> Result<(Mapping, bool)> {
    let init = |window: &Window| init_header(window, kind, init);
    let ready = |window: &Window| settled(window, kind);
    let hooks = Hooks {
        init: Some(&init),
        ready: Some(&ready),
        keep_stale: false,
        any_size: true,
        derived: true,
        parent_only: sharing.parent_only,
    };
    let made = Mapping::options()
        .size(size)
        .persistent(sharing.persistent)
        .permissions(sharing.permissions)
        .set_trust(sharing.trust.clone())
        .derived(name, how, &hooks);
    let (object, _) = match made {
        // Say what holds the name (a plain mapping, another kind).
        Err(Error::AlreadyExists { .. }) => {
            return Err(Error::AlreadyExists {
                kind: Some(crate::mapping::found_kind(name, sharing.trust, kind)),
                name: name.to_owned(),
            })
        }
        made => made?,
    };
    if object.existed() {
        return check(object, name, kind).map(|object| (object, true));
    }
    Ok((object, false))
}

/// Where a mapping's mutex records the identity of its mapping.
pub(crate) const OWNER_OFFSET: u64 = HEADER_LEN;

/// As [`make`], for the state of a mapping's mutex: `owner` is the
/// identity of the mapping it belongs to, recorded by the creator just
/// after the header (the mutex's own state starts further on).
///
/// An object whose holders all died is normally removed and made afresh.
/// A mapping's mutex is opened only when a process first locks, so a
/// process that dies holding it may have been its only holder, while the
/// mapping (and its half-updated data) lives on. Removing the mutex then
/// would lose the news that the holder died. So a stale one is kept, and its
/// state tells the next locker, if it belongs to the same mapping and was
/// fully made; one left by an earlier mapping of the same name is removed
/// as usual.
pub(crate) fn make_owned(
    name: &str,
    how: Disposition,
    size: u64,
    sharing: &Sharing<'_>,
    owner: Option<ObjectId>,
    kind: ObjectKind,
    init: &dyn Fn(&Window) -> Result<()>,
) -> Result<(Mapping, bool)> {
    let Some(owner) = owner else {
        return make(name, how, size, sharing, kind, init);
    };
    let init = |window: &Window| {
        window.write_value(OWNER_OFFSET, &owner)?;
        init(window)
    };
    if how == Disposition::Create {
        return make(name, how, size, sharing, kind, &init);
    }
    let ready = |window: &Window| settled(window, kind);
    let keeping_stale = Hooks {
        init: None,
        ready: Some(&ready),
        keep_stale: true,
        any_size: true,
        derived: true,
        parent_only: sharing.parent_only,
    };
    let opened = Mapping::options().set_trust(sharing.trust.clone()).derived(
        name,
        Disposition::Open,
        &keeping_stale,
    );
    match opened {
        Ok((object, false)) => return check(object, name, kind).map(|o| (o, true)),
        Ok((object, true)) => {
            let ours = is_ready(&object, kind)?
                && object.read_value_at::<ObjectId>(OWNER_OFFSET)? == owner;
            if ours {
                return check(object, name, kind).map(|o| (o, true));
            }
            // Another mapping's: closing it (as its only holder) removes
            // it; the usual path below makes it afresh.
        }
        Err(Error::NotFound { .. }) if how == Disposition::CreateOrOpen => {}
        Err(error) => return Err(error),
    }
    make(name, how, size, sharing, kind, &init)
}

/// Whether the object is a published one of `kind`.
fn is_ready(object: &Mapping, kind: ObjectKind) -> Result<bool> {
    Ok(object.len() >= HEADER_LEN
        && object.atomic_u32(READY_OFFSET)?.load(Ordering::Acquire) == READY
        && object.read_value_at::<u64>(0)? == kind.magic())
}

/// Checks that an opened object is a published `kind` of this layout
/// version. It never waits: by now its creator has published it, or it is
/// not what was expected.
pub(crate) fn check(object: Mapping, name: &str, kind: ObjectKind) -> Result<Mapping> {
    if !is_ready(&object, kind)? {
        return Err(Error::WrongKind {
            name: name.to_owned(),
            expected: kind.described(),
            found: None,
        });
    }
    let header: Header = object.read_value_at(0)?;
    if header.version != VERSION {
        return Err(Error::Corrupt {
            offset: offset_of!(Header, version) as u64,
            reason: format!(
                "{name:?} has layout version {}; this shmio reads version {VERSION}",
                header.version
            ),
        });
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use crate::doc_tables;

    #[test]
    fn the_docs_table_is_the_header() {
        let rows = doc_tables::check(
            include_str!("object.rs"),
            &["Header"],
            &[doc_tables::header()],
        );
        assert_eq!(rows, 4);
    }
}
