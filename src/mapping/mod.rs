//! [`Mapping`] and its builder [`MappingOptions`]: how a mapping comes to be
//! (named, anonymous, file-backed, from a handle), what it knows about
//! itself, and positional access (`read_at`, values, atomics, views, records).
//! The cursor (`Read`, `Write`, `Seek`) is in `io.rs`.

use std::any::Any;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::{Arc, OnceLock};

use serde::de::DeserializeOwned;
use serde::Serialize;
use zerocopy::{FromBytes, Immutable, IntoBytes};

mod io;
pub(crate) mod record;
mod view;

pub use record::RECORD_HEADER_LEN;
pub use view::View;
pub(crate) use view::Window;

use crate::error::{Error, Result};
use crate::kind::ObjectKind;
use crate::name::Name;
use crate::owner::Trust;
use crate::sys::{self, Access, Disposition, NamedRequest};

/// The size of a mapping when neither a size nor a non-empty file is given: 64 MiB.
pub const DEFAULT_SIZE: u64 = 64 * 1024 * 1024;

/// The permission bits of a new named object or file unless a mode is given: owner-only.
pub const DEFAULT_MODE: u32 = 0o600;

/// Memory that several processes can see: anonymous, backed by a file, or
/// named so another process opens it by name.
///
/// A `Mapping` reads and writes like a file: it has a cursor and implements
/// [`std::io::Read`], [`std::io::Write`] and [`std::io::Seek`], with typed
/// values and serde records on top. Positional methods (`read_at`,
/// `write_value_at`, `atomic_u64`, `view`, ...) take `&self` and need no
/// cursor. `Mapping` is `Send + Sync`; [`Clone`] gives another handle to the
/// same memory with its own cursor.
///
/// ```
/// use std::io::{Read, Seek, SeekFrom, Write};
/// use shmio::Mapping;
///
/// let mut map = Mapping::anonymous(4096)?;
/// map.write_all(b"hello")?;
/// map.write_value(&42u64)?;
/// map.seek(SeekFrom::Start(0))?;
/// let mut word = [0u8; 5];
/// map.read_exact(&mut word)?;
/// assert_eq!(&word, b"hello");
/// assert_eq!(map.read_value::<u64>()?, 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Named mappings are opened by name from any process of the same user:
///
/// ```
/// use shmio::Mapping;
///
/// # let name = format!("shmio-doc-{}", std::process::id());
/// let first = Mapping::create_or_open(&name, 4096)?;
/// let second = Mapping::create_or_open(&name, 4096)?; // e.g. in another process
/// assert!(!first.existed() && second.existed());
/// first.write_at(0, b"shared")?;
/// let mut buf = [0u8; 6];
/// second.read_at(0, &mut buf)?;
/// assert_eq!(&buf, b"shared");
/// // The last of them to close removes the name.
/// # Ok::<(), shmio::Error>(())
/// ```
///
/// # Shrinking and `SIGBUS`
///
/// The pages of a mapping belong to an object (a file, a `/dev/shm` object,
/// a section) that other processes may hold too. On Unix, a page past the
/// object's end faults: touching it kills the process with `SIGBUS`. shmio
/// never shrinks an object it maps, and:
/// - anonymous mappings are sealed memfds on Linux: no process holding the
///   descriptor can shrink (or grow) them;
/// - creating or growing an object reserves its memory (`fallocate` on
///   Linux; Windows commits a section), so a full `/dev/shm` or disk is
///   [`Error::NoSpace`] at creation rather than `SIGBUS` at the first touch
///   of a page that has no room, and a created mapping can always be
///   written in full ([`MappingOptions::sparse`] opts out; macOS, and file
///   systems that cannot reserve, only check the free space);
/// - Windows cannot shrink a mapped section or file at all.
///
/// What no mapping can defend against is another process with write access
/// truncating a file-backed mapping's file, or a named object on Linux or
/// macOS, while it is mapped. Give named objects owner-only permissions (the
/// default) and keep backing files where only trusted processes can write.
/// `RELIABILITY.md` lists what is tested.
///
/// **After `fork()`** a child may go on using every mapping it inherited, as
/// its own: it shares the memory, and from its first call on the handle it
/// holds the name as one more holder (a lease of its own), so neither its
/// close nor its parent's removes the name while the other still holds it;
/// whichever lets go last removes it (a child that exits without closing,
/// or is killed, leaves that to the others, or leaves the name stale if it
/// was the last). A child that never calls on the handle (one that execs at
/// once) holds nothing, and its copy lets go of nothing. Its
/// [`lock`](Mapping::lock) is its own: see [`NamedMutex`](crate::NamedMutex).
pub struct Mapping {
    shared: Arc<Shared>,
    /// The whole mapping, kept beside the cursor so the hot path reads no
    /// pointer behind the `Arc`.
    window: Window,
    cursor: u64,
    /// The process the handle was made in: a forked child's copy takes its
    /// share of the name on its first use (see [`Mapping::used`]).
    origin: sys::Origin,
}

/// Keeps a mapping's memory mapped (see [`Mapping::keep_mapped`]).
#[derive(Clone)]
pub(crate) struct KeepMapped(#[allow(dead_code)] Arc<Shared>);

/// What every handle to one mapping shares.
struct Shared {
    /// The mapped memory; declared first so it is unmapped before the object closes.
    region: sys::Region,
    object: sys::Object,
    name: Option<Name>,
    existed: bool,
    access: Access,
    /// What a layer above builds on demand for this mapping and every clone
    /// of it to share (its mutex: see `sync`), kept as `Any` so that this
    /// layer knows nothing of the layers above it.
    companion: OnceLock<Box<dyn Any + Send + Sync>>,
    /// The owners, besides the caller, that it was opened trusting (its
    /// mutex trusts them too).
    trust: Trust,
}

impl Shared {
    /// The whole mapping as a window.
    #[inline]
    pub(crate) fn window(&self) -> Window {
        // SAFETY: the region is mapped for as long as this Shared lives, and
        // every Window made here is used only while a borrow of (or an Arc
        // to) this Shared is held.
        unsafe {
            Window::new(
                self.region.ptr(),
                self.region.len() as u64,
                self.access.writable_memory(),
            )
        }
    }
}

/// Options for creating or opening a [`Mapping`], in the spirit of
/// [`std::fs::OpenOptions`]: set what you need, then finish with
/// [`create`](Self::create), [`open`](Self::open),
/// [`create_or_open`](Self::create_or_open), [`anonymous`](Self::anonymous)
/// or [`map_file`](Self::map_file).
///
/// ```
/// use shmio::{Mapping, Owner};
///
/// # let name = format!("shmio-doc-opts-{}", std::process::id());
/// let map = Mapping::options().size(1 << 20).permissions(0o600).create(&name)?;
/// assert_eq!(map.len(), 1 << 20);
/// let reader = Mapping::options().read_only(true).open(&name)?;
/// assert!(reader.write_at(0, b"x").is_err());
/// // Another user's mapping opens only if its owner is trusted (root here).
/// let trusting = Mapping::options().allow_owner(Owner::Uid(0)).open(&name)?;
/// # Ok::<(), shmio::Error>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MappingOptions {
    size: Option<u64>,
    file: Option<PathBuf>,
    persistent: bool,
    read_only: bool,
    copy_on_write: bool,
    permissions: u32,
    global: bool,
    sparse: bool,
    any_kind: bool,
    trust: Trust,
}

impl Default for MappingOptions {
    fn default() -> Self {
        MappingOptions {
            size: None,
            file: None,
            persistent: false,
            read_only: false,
            copy_on_write: false,
            permissions: DEFAULT_MODE,
            global: false,
            sparse: false,
            any_kind: false,
            trust: Trust::OWN,
        }
    }
}

/// Sets up a new object's memory through a window on it.
pub(crate) type WindowHook<'a> = dyn Fn(&Window) -> Result<()> + 'a;

/// What a crate-internal object built on a named mapping (a mutex's,
/// event's or channel's segment) asks of its creation and opening.
#[derive(Clone, Copy, Default)]
pub(crate) struct Hooks<'a> {
    /// Sets up a new object before anyone else can use it.
    pub init: Option<&'a WindowHook<'a>>,
    /// Whether an existing object has been set up by its creator.
    pub ready: Option<&'a dyn Fn(&Window) -> bool>,
    /// Keep a stale object rather than reclaim it (see `NamedRequest::keep_stale`).
    pub keep_stale: bool,
    /// Open an existing object whatever its size (the size is only for a
    /// creator); the object's own header says what it holds.
    pub any_size: bool,
    /// Whether the object is one shmio derived from a user's name (a
    /// mutex's state, say) rather than a user's own mapping.
    pub derived: bool,
    /// Whether the handle is its process's alone, so that a forked child
    /// gets no share of the name (see `NamedRequest::passes_to_children`).
    pub parent_only: bool,
}

impl MappingOptions {
    /// Options with every default: read-write, 64 MiB for a new mapping,
    /// owner-only, the name removed with its last holder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The size of a new mapping, in bytes. When opening, the mapping takes
    /// the object's real size, and asking for more than it has is an error.
    pub fn size(&mut self, size: u64) -> &mut Self {
        self.size = Some(size);
        self
    }

    /// Back the mapping with this file: opened read-write if it exists,
    /// created (owner-only unless [`permissions`](Self::permissions) says otherwise, never
    /// through a symlink) if not. An empty file grows to the size (64 MiB by
    /// default). A file-backed mapping may also have a name.
    ///
    /// Like every file mapping, it faults the process if someone else
    /// truncates the file while it is mapped.
    pub fn file(&mut self, path: impl AsRef<Path>) -> &mut Self {
        self.file = Some(path.as_ref().to_owned());
        self
    }

    /// Open the name's memory as plain bytes even when it holds one of
    /// shmio's objects (a channel, a bus group's registry): for tools that
    /// inspect one, and tests that damage one. Without it such a name is
    /// [`Error::WrongKind`]: a program that means a channel opens a
    /// [`Channel`](crate::Channel).
    pub fn any_kind(&mut self, any_kind: bool) -> &mut Self {
        self.any_kind = any_kind;
        self
    }

    /// Keep the name after the last holder closes, until [`Mapping::remove`].
    /// POSIX only.
    pub fn persistent(&mut self, persistent: bool) -> &mut Self {
        self.persistent = persistent;
        self
    }

    /// Map the memory read-only: writes are [`Error::ReadOnly`].
    pub fn read_only(&mut self, read_only: bool) -> &mut Self {
        self.read_only = read_only;
        self
    }

    /// Map the memory copy-on-write: writes stay private to this process.
    pub fn copy_on_write(&mut self, copy_on_write: bool) -> &mut Self {
        self.copy_on_write = copy_on_write;
        self
    }

    /// Permission bits of a new named object or file (POSIX; the umask
    /// applies, as for [`std::fs::OpenOptions`]). Default `0o600`.
    pub fn permissions(&mut self, permissions: u32) -> &mut Self {
        self.permissions = permissions;
        self
    }

    /// Leave a new object's memory to be allocated as it is first touched,
    /// rather than reserved when it is created (the default). Creating a
    /// large sparse object is instant and takes no memory until used, but
    /// nothing is promised: if the file system holding it (`/dev/shm`, a
    /// disk) fills up, the process that first touches a page with no room
    /// left is killed with `SIGBUS`. Reserved, a full file system is
    /// [`Error::NoSpace`] at creation, and a created mapping can always be
    /// written in full. Linux only: Windows always commits a section's
    /// memory, macOS cannot reserve it.
    pub fn sparse(&mut self, sparse: bool) -> &mut Self {
        self.sparse = sparse;
        self
    }

    crate::owner::sharing_options!("mapping");

    /// Use the machine-wide namespace (`Global\NAME`) rather than the
    /// session's (Windows; creating there needs `SeCreateGlobalPrivilege`).
    /// POSIX has one namespace, so this changes nothing there.
    pub fn global_namespace(&mut self, global: bool) -> &mut Self {
        self.global = global;
        self
    }

    /// Creates a new named mapping; [`Error::AlreadyExists`] if the name is
    /// taken (a stale name, whose holders all died, is reclaimed first).
    pub fn create(&self, name: &str) -> Result<Mapping> {
        self.named(name, Disposition::Create)
    }

    /// Opens an existing named mapping at its real size; [`Error::NotFound`] if there is none.
    pub fn open(&self, name: &str) -> Result<Mapping> {
        self.named(name, Disposition::Open)
    }

    /// Removes the name `name` now, as [`Mapping::remove`], also when it
    /// belongs to an owner these options trust.
    pub fn remove(&self, name: &str) -> Result<()> {
        let name = Name::new(name)?;
        sys::remove_named(name.as_str(), &name.os_name(), &self.trust)
    }

    /// Opens the named mapping if it exists, else creates it, in one atomic
    /// step; [`Mapping::existed`] tells which happened.
    pub fn create_or_open(&self, name: &str) -> Result<Mapping> {
        self.named(name, Disposition::CreateOrOpen)
    }

    /// Creates an anonymous mapping: shared with the threads of this process,
    /// and with child processes handed its descriptor or handle.
    pub fn anonymous(&self) -> Result<Mapping> {
        if self.file.is_some() {
            return Err(Error::InvalidOptions {
                reason: "an anonymous mapping has no file: use map_file",
            });
        }
        if self.persistent || self.read_only || self.copy_on_write {
            return Err(Error::InvalidOptions {
                reason: "an anonymous mapping is always read-write and goes with its last handle",
            });
        }
        let size = self.size.unwrap_or(DEFAULT_SIZE);
        let target = "anonymous mapping";
        check_size(size, target)?;
        let object = sys::anonymous(size, self.sparse)?;
        Mapping::from_object(object, size, Access::ReadWrite, None, false, target)
    }

    /// Maps the file set by [`file`](Self::file), with no name.
    pub fn map_file(&self) -> Result<Mapping> {
        let Some(path) = &self.file else {
            return Err(Error::InvalidOptions {
                reason: "map_file needs a file: set one with file(path)",
            });
        };
        if self.persistent {
            return Err(Error::InvalidOptions {
                reason: "persistent applies to named mappings",
            });
        }
        let access = self.access()?;
        let target = path.display().to_string();
        if let Some(size) = self.size {
            check_size(size, &target)?;
        }
        let mut object = sys::open_file(&sys::FileRequest {
            path,
            access,
            mode: self.permissions,
        })?;
        let (len, grow) =
            sys::file_mapping_len(object.size(), self.size, DEFAULT_SIZE, access, &target)?;
        if grow {
            object.set_len(len, &target)?;
        }
        Mapping::from_object(object, len, access, None, false, &target)
    }

    /// Creates and/or opens (as `how` says) the mapping `name`, a name
    /// shmio derived from a user's, with `hooks`; whether it was stale and
    /// kept (see [`Hooks::keep_stale`]).
    pub(crate) fn derived(
        &self,
        name: &str,
        how: Disposition,
        hooks: &Hooks<'_>,
    ) -> Result<(Mapping, bool)> {
        let hooks = Hooks {
            derived: true,
            ..*hooks
        };
        self.named_request(Name::derived(name)?, how, &hooks)
    }

    /// Sets the owners whose objects these options accept.
    pub(crate) fn set_trust(&mut self, trust: Trust) -> &mut Self {
        self.trust = trust;
        self
    }

    fn access(&self) -> Result<Access> {
        match (self.read_only, self.copy_on_write) {
            (true, true) => Err(Error::InvalidOptions {
                reason: "read_only and copy_on_write exclude each other",
            }),
            (true, false) => Ok(Access::ReadOnly),
            (false, true) => Ok(Access::CopyOnWrite),
            (false, false) => Ok(Access::ReadWrite),
        }
    }

    fn named(&self, name: &str, how: Disposition) -> Result<Mapping> {
        self.named_checked(Name::new(name)?, how)
            .map_err(|error| match error {
                // Say what holds the name (a channel, say).
                Error::AlreadyExists { .. } => Error::AlreadyExists {
                    kind: Some(found_kind(name, &self.trust, ObjectKind::Mapping)),
                    name: name.to_owned(),
                },
                error => error.of(ObjectKind::Mapping, name),
            })
    }

    fn named_checked(&self, name: Name, how: Disposition) -> Result<Mapping> {
        self.named_request(name, how, &Hooks::default())
            .map(|(map, _)| map)
    }

    fn named_request(
        &self,
        name: Name,
        how: Disposition,
        hooks: &Hooks<'_>,
    ) -> Result<(Mapping, bool)> {
        let access = self.access()?;
        if let Some(size) = self.size {
            check_size(size, name.as_str())?;
        }
        let os_name = name.os_name();
        // A user's mapping has a lock (see `sync`); derived objects do not.
        let lock_name = (!hooks.derived).then(|| crate::name::lock_name(name.as_str()));
        let init = hooks.init.map(|init| {
            move |region: &sys::Region| {
                // SAFETY: the region stays mapped for this call, the only
                // time the window is used.
                let window = unsafe { Window::new(region.ptr(), region.len() as u64, true) };
                init(&window)
            }
        });
        let ready = hooks.ready.map(|ready| {
            move |region: &sys::Region| {
                // SAFETY: as for `init`; the window is only read.
                let window = unsafe { Window::new(region.ptr(), region.len() as u64, false) };
                ready(&window)
            }
        });
        let request = NamedRequest {
            name: name.as_str(),
            os_name: &os_name,
            size: self.size,
            default_size: DEFAULT_SIZE,
            mode: self.permissions,
            persistent: self.persistent,
            sparse: self.sparse,
            access,
            file: self.file.as_deref(),
            trust: &self.trust,
            global: self.global,
            lock_name: lock_name.as_deref(),
            keep_stale: hooks.keep_stale,
            passes_to_children: !hooks.parent_only,
            init: init.as_ref().map(|init| init as sys::InitHook<'_>),
            ready: ready
                .as_ref()
                .map(|ready| ready as &dyn Fn(&sys::Region) -> bool),
        };
        let sys::Opened {
            object,
            existed,
            adopted_stale,
        } = sys::open_named(&request, how)?;
        let len = object.size();
        let sized = existed && !hooks.any_size;
        // Compared in 4 KiB pages: Windows reports a section's size in pages.
        let pages = |size: u64| size.div_ceil(4096);
        if let Some(size) = self.size.filter(|&size| sized && pages(size) != pages(len)) {
            return Err(Error::Mismatch {
                name: name.as_str().to_owned(),
                asked: format!("a mapping of {size} bytes").into(),
                found: format!("a mapping of {len} bytes").into(),
            });
        }
        let label = name.as_str().to_owned();
        let map = Mapping::from_object(object, len, access, Some(name), existed, &label)?;
        if existed && !hooks.derived && !self.any_kind {
            // A user's mapping is plain memory: a name that holds one of
            // shmio's objects is opened as that object, never as bytes.
            if let Some(kind) = map
                .read_value_at::<u64>(0)
                .ok()
                .and_then(ObjectKind::from_magic)
            {
                return Err(Error::WrongKind {
                    name: label,
                    expected: ObjectKind::Mapping.described(),
                    found: Some(kind),
                });
            }
        }
        Ok((map.trusting(self.trust.clone()), adopted_stale))
    }
}

/// Rejects sizes that can never be mapped.
fn check_size(size: u64, target: &str) -> Result<()> {
    if size == 0 {
        return Err(Error::InvalidSize {
            size,
            target: target.to_owned(),
            reason: "a mapping cannot be empty",
        });
    }
    if size > sys::MAX_MAP_LEN {
        return Err(Error::TooLarge {
            size,
            limit: sys::MAX_MAP_LEN,
            target: target.to_owned(),
        });
    }
    Ok(())
}

impl Mapping {
    /// Opens the named mapping if it exists (at its real size, which must be
    /// at least `size`), else creates it with `size` bytes; one atomic step.
    ///
    /// This is aardio's `fsys.mmap(, name, size)`; [`existed`](Self::existed)
    /// is its `conflict`.
    pub fn create_or_open(name: &str, size: u64) -> Result<Mapping> {
        Mapping::options().size(size).create_or_open(name)
    }

    /// Creates a named mapping of `size` bytes; [`Error::AlreadyExists`] if the name is taken.
    pub fn create(name: &str, size: u64) -> Result<Mapping> {
        Mapping::options().size(size).create(name)
    }

    /// Opens an existing named mapping at its real size; [`Error::NotFound`] if there is none.
    pub fn open(name: &str) -> Result<Mapping> {
        Mapping::options().open(name)
    }

    /// An anonymous mapping of `size` bytes.
    pub fn anonymous(size: u64) -> Result<Mapping> {
        Mapping::options().size(size).anonymous()
    }

    /// A builder for every other combination of options.
    pub fn options() -> MappingOptions {
        MappingOptions::new()
    }

    /// Removes a name now. Processes that hold the mapping keep their memory;
    /// new opens no longer find it. [`Error::NotFound`] if there is no such
    /// name; [`Error::ForeignOwner`] if it is another user's (see
    /// [`MappingOptions::remove`] to trust them); [`Error::WrongKind`] if it
    /// is not a shared-memory object (a FIFO, say).
    pub fn remove(name: &str) -> Result<()> {
        Mapping::options().remove(name)
    }

    pub(crate) fn from_object(
        mut object: sys::Object,
        len: u64,
        access: Access,
        name: Option<Name>,
        existed: bool,
        target: &str,
    ) -> Result<Mapping> {
        let region = object.map(len, access, target)?;
        let shared = Arc::new(Shared {
            region,
            object,
            name,
            existed,
            access,
            companion: OnceLock::new(),
            trust: Trust::OWN,
        });
        Ok(Mapping {
            window: shared.window(),
            shared,
            cursor: 0,
            origin: sys::Origin::here(),
        })
    }

    /// This new mapping, recording the owners it was opened trusting.
    fn trusting(mut self, trust: Trust) -> Mapping {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.trust = trust;
        }
        self
    }

    /// A hold on the mapping's memory that keeps it mapped while the
    /// holder lives, whatever becomes of this handle (what the process's
    /// waiter keeps of each word it watches: see `waiter.rs`).
    pub(crate) fn keep_mapped(&self) -> KeepMapped {
        KeepMapped(Arc::clone(&self.shared))
    }

    /// The OS object behind the mapping.
    pub(crate) fn object(&self) -> &sys::Object {
        &self.shared.object
    }

    /// The owners, besides the caller, that this mapping was opened trusting.
    pub(crate) fn trust(&self) -> &Trust {
        &self.shared.trust
    }

    /// What a layer above built for this mapping (see `Shared::companion`),
    /// made by `make` on first use; every clone shares it. (One layer keeps
    /// one type there; another type is an error, never a panic.)
    pub(crate) fn companion<T: Any + Send + Sync>(
        &self,
        make: impl FnOnce(&Mapping) -> Result<T>,
    ) -> Result<&T> {
        if let Some(companion) = self.shared.companion.get() {
            if let Some(found) = companion.downcast_ref::<T>() {
                return Ok(found);
            }
        }
        let made = make(self)?;
        // Another thread may have made one meanwhile: either will do.
        let companion = self.shared.companion.get_or_init(|| Box::new(made));
        companion.downcast_ref::<T>().ok_or(Error::InvalidOptions {
            reason: "a mapping keeps one kind of companion",
        })
    }

    /// The first byte of the mapped memory, for the crate's objects that
    /// keep their state in it (a lock, a channel's ring): the mapping stays
    /// mapped while `self` lives.
    pub(crate) fn base(&self) -> std::ptr::NonNull<u8> {
        self.window.base()
    }

    /// True when the constructor opened an existing mapping rather than
    /// creating one (aardio's `conflict`).
    pub fn existed(&self) -> bool {
        self.shared.existed
    }

    /// The length in bytes.
    #[inline]
    pub fn len(&self) -> u64 {
        self.window.len()
    }

    /// Whether the mapping has no bytes (never true: mappings are not empty).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The name, for a named mapping.
    pub fn name(&self) -> Option<&str> {
        self.shared.name.as_ref().map(Name::as_str)
    }

    /// The name the OS knows it by, for a named mapping (see [`Name::os_name`]).
    pub fn os_name(&self) -> Option<String> {
        self.shared.name.as_ref().map(Name::os_name)
    }

    /// Whether the name goes away with its last holder (rather than persisting).
    pub fn follows_holders(&self) -> bool {
        self.shared.object.leased_name().is_some()
    }

    /// Whether writes are refused.
    pub fn is_read_only(&self) -> bool {
        self.shared.access == Access::ReadOnly
    }

    /// Whether writes stay private to this process.
    pub fn is_copy_on_write(&self) -> bool {
        self.shared.access == Access::CopyOnWrite
    }

    /// Copies `buf.len()` bytes at `offset` into `buf`.
    /// [`Error::UnexpectedEof`] if they run past the end.
    #[inline]
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.mem().read(offset, buf)
    }

    /// Copies `data` to `offset`. [`Error::OutOfBounds`] and nothing written
    /// if it does not all fit.
    #[inline]
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.mem().write(offset, data)
    }

    /// A copy of the plain value (any [`FromBytes`] type: numbers, arrays,
    /// `#[derive(FromBytes)]` structs) at `offset`, at any alignment.
    ///
    /// ```
    /// use shmio::Mapping;
    /// use zerocopy::{FromBytes, Immutable, IntoBytes};
    ///
    /// #[derive(FromBytes, IntoBytes, Immutable, Debug, PartialEq)]
    /// #[repr(C)]
    /// struct Point { x: i32, y: i32 }
    ///
    /// let map = Mapping::anonymous(4096)?;
    /// map.write_value_at(3, &Point { x: 1, y: -2 })?;
    /// assert_eq!(map.read_value_at::<Point>(3)?, Point { x: 1, y: -2 });
    /// # Ok::<(), shmio::Error>(())
    /// ```
    #[inline]
    pub fn read_value_at<T: FromBytes>(&self, offset: u64) -> Result<T> {
        self.mem().read_value(offset)
    }

    /// Stores the bytes of a plain value at `offset`, at any alignment.
    #[inline]
    pub fn write_value_at<T: IntoBytes + Immutable + ?Sized>(
        &self,
        offset: u64,
        value: &T,
    ) -> Result<()> {
        self.mem().write_value(offset, value)
    }

    /// The `AtomicU32` at `offset`: a counter or flag shared with other processes.
    /// [`Error::Misaligned`] unless `offset` is a multiple of 4;
    /// [`Error::ReadOnly`] on a read-only mapping (a store would fault).
    ///
    /// ```
    /// use std::sync::atomic::Ordering;
    /// use shmio::Mapping;
    ///
    /// let map = Mapping::anonymous(4096)?;
    /// map.atomic_u32(8)?.fetch_add(1, Ordering::SeqCst);
    /// assert_eq!(map.read_value_at::<u32>(8)?, 1);
    /// assert!(map.atomic_u32(6).is_err());
    /// # Ok::<(), shmio::Error>(())
    /// ```
    pub fn atomic_u32(&self, offset: u64) -> Result<&AtomicU32> {
        // SAFETY: self.mem() is self.window, which covers the region
        // self.shared keeps mapped, alive at least as long as this borrow.
        unsafe { self.mem().atomic_u32(offset) }
    }

    /// The `AtomicU64` at `offset` (a multiple of 8); as [`atomic_u32`](Self::atomic_u32).
    pub fn atomic_u64(&self, offset: u64) -> Result<&AtomicU64> {
        // SAFETY: as in atomic_u32.
        unsafe { self.mem().atomic_u64(offset) }
    }

    /// A [`View`] of `len` bytes at `offset`, aligned or not (aardio's `mapView`).
    pub fn view(&self, offset: u64, len: u64) -> Result<View> {
        let window = self.mem().sub(offset, len)?;
        Ok(View::new(Arc::clone(&self.shared), window, offset))
    }

    /// Writes `value` as a record (a `u32` length, then JSON) at `offset`;
    /// returns the bytes written. Nothing is written unless it all fits.
    pub fn write_record_at<T: Serialize + ?Sized>(&self, offset: u64, value: &T) -> Result<u64> {
        record::write(self.mem(), offset, value)
    }

    /// Reads the record at `offset`; `None` where the length is 0.
    /// [`Error::Corrupt`] if its length runs past the end, [`Error::Decode`]
    /// (with the raw bytes) if it does not decode as `T`.
    pub fn read_record_at<T: DeserializeOwned>(&self, offset: u64) -> Result<Option<T>> {
        Ok(record::read(self.mem(), offset)?.map(|(value, _)| value))
    }

    /// Writes dirty pages of a file-backed mapping to the file, and waits.
    pub fn flush_to_file(&self) -> Result<()> {
        let label = self.name().unwrap_or("mapping");
        self.shared.region.flush(label)
    }

    /// Takes ownership of an OS handle to a mappable object (a shared-memory
    /// object, a memfd, a file) and maps all of it: aardio's
    /// `fsys.mmap(handle, true)`. The access follows how it was opened.
    #[cfg(unix)]
    pub fn from_fd(fd: std::os::fd::OwnedFd) -> Result<Mapping> {
        let (object, access) = sys::Object::from_fd(fd)?;
        let size = object.size();
        check_size(size, "descriptor")?;
        Mapping::from_object(object, size, access, None, false, "descriptor")
    }

    /// Maps the object behind a borrowed handle, keeping a duplicate of its
    /// own: aardio's `fsys.mmap(handle)`.
    #[cfg(unix)]
    pub fn from_borrowed_fd(fd: std::os::fd::BorrowedFd<'_>) -> Result<Mapping> {
        Mapping::from_fd(sys::duplicate(fd)?)
    }
}

#[cfg(windows)]
impl Mapping {
    /// Takes ownership of a section handle and maps all of it: aardio's
    /// `fsys.mmap(handle, true)`. The access is the most the handle allows.
    pub fn from_handle(handle: std::os::windows::io::OwnedHandle) -> Result<Mapping> {
        let (object, access) = sys::Object::from_handle(handle)?;
        let size = object.size();
        check_size(size, "handle")?;
        Mapping::from_object(object, size, access, None, false, "handle")
    }

    /// Maps the section behind a borrowed handle, keeping a duplicate of its
    /// own: aardio's `fsys.mmap(handle)`.
    pub fn from_borrowed_handle(
        handle: std::os::windows::io::BorrowedHandle<'_>,
    ) -> Result<Mapping> {
        Mapping::from_handle(sys::duplicate(handle)?)
    }
}

#[cfg(windows)]
impl std::os::windows::io::AsHandle for Mapping {
    /// The section handle, to duplicate into a child process.
    fn as_handle(&self) -> std::os::windows::io::BorrowedHandle<'_> {
        std::os::windows::io::AsHandle::as_handle(&self.shared.object)
    }
}

#[cfg(unix)]
impl std::os::fd::AsFd for Mapping {
    /// The descriptor of the mapped object, to hand to a child process.
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.shared.object)
    }
}

impl Mapping {
    /// The memory, for an access through this handle: in a forked child,
    /// the handle's first use makes the child a holder of the name.
    #[inline]
    pub(crate) fn mem(&self) -> &Window {
        self.used();
        &self.window
    }

    /// Says the handle is being used: in a forked child that inherited it,
    /// the first use makes the child one of the holders of the mapping's
    /// name, so that from then on neither the child's close nor its
    /// parent's removes the name while the other holds it. A layer above
    /// whose object is used without going through [`mem`](Self::mem) (a
    /// mutex's) calls this where it acts.
    #[inline]
    pub(crate) fn used(&self) {
        if !self.origin.is_here() {
            self.share_here();
        }
    }

    #[cold]
    fn share_here(&self) {
        self.shared.object.share_here();
    }

    /// Removes the name now, if it follows its holders and is still this
    /// mapping's, whoever else holds it: they keep the memory, and the
    /// name is free for a new object (a bus member's inbox as it leaves).
    pub(crate) fn remove_name(&self) {
        self.shared.object.remove_name();
    }
}

impl Clone for Mapping {
    /// Another handle to the same memory, with its own cursor starting where this one is.
    fn clone(&self) -> Self {
        Mapping {
            shared: Arc::clone(&self.shared),
            window: self.window,
            cursor: self.cursor,
            origin: self.origin,
        }
    }
}

impl fmt::Debug for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mapping")
            .field("name", &self.name())
            .field("len", &self.len())
            .field("existed", &self.existed())
            .field("access", &self.shared.access)
            .field("position", &self.cursor)
            .finish()
    }
}

/// What the existing object named `name` is, by its header: the kind
/// [`Error::AlreadyExists`] gives it (a mapping for plain memory, and
/// `unseen` if it cannot be looked at: another user's, say).
pub(crate) fn found_kind(name: &str, trust: &Trust, unseen: ObjectKind) -> ObjectKind {
    let hooks = Hooks {
        any_size: true,
        ..Hooks::default()
    };
    let opened = Mapping::options()
        .read_only(true)
        .set_trust(trust.clone())
        .derived(name, Disposition::Open, &hooks);
    let Ok((map, _)) = opened else {
        return unseen;
    };
    map.read_value_at::<u64>(0)
        .map_or(ObjectKind::Mapping, ObjectKind::of_magic)
}
