//! The Windows side of `sys`: objects are sections (file-mapping objects),
//! regions are views of them.
//!
//! A named mapping is a named section in the session namespace, the name
//! passed as it is, so aardio's `fsys.mmap(, "name")`, CPython's
//! `SharedMemory("name")` and .NET's `MemoryMappedFile.CreateOrOpen("name")`
//! open the same section; `Global\` is an option. One `CreateFileMappingW`
//! both creates and opens, and `ERROR_ALREADY_EXISTS` from that same call says
//! which happened, so `create_or_open` is atomic. The size of a section
//! someone else made is read from a view of it (`VirtualQuery`, whole pages).
//!
//! Lifetime is the kernel's: a section goes when its last handle closes,
//! whether its holders closed it or were killed. So every named mapping
//! follows its holders, and nothing can make one persist.
//!
//! Windows shares one namespace between sections, mutexes and events: a name
//! taken by another kind of object fails with `ERROR_INVALID_HANDLE`, which
//! becomes [`Error::WrongKind`].

use std::fs::File;
use std::io;
use std::os::windows::io::{AsHandle, AsRawHandle, BorrowedHandle, FromRawHandle, OwnedHandle};
use std::ptr::NonNull;

use windows_sys::Win32::Foundation::{
    GetLastError, ERROR_ACCESS_DENIED, ERROR_ALREADY_EXISTS, ERROR_COMMITMENT_LIMIT,
    ERROR_DISK_FULL, ERROR_FILE_NOT_FOUND, ERROR_INVALID_HANDLE, ERROR_NOT_ENOUGH_MEMORY,
    ERROR_TOO_MANY_OPEN_FILES, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, FlushViewOfFile, MapViewOfFile, OpenFileMappingW, UnmapViewOfFile,
    VirtualQuery, FILE_MAP, FILE_MAP_COPY, FILE_MAP_READ, FILE_MAP_WRITE, MEMORY_BASIC_INFORMATION,
    MEMORY_MAPPED_VIEW_ADDRESS, PAGE_PROTECTION_FLAGS, PAGE_READONLY, PAGE_READWRITE,
    PAGE_WRITECOPY,
};

use crate::error::{Error, Result};
use crate::sys::{Access, Disposition, FileRequest, NamedRequest, Opened, Region};

/// Names are passed as they are: no prefix means the session namespace.
pub(crate) const OS_NAME_PREFIX: &str = "";
/// Windows object names are far longer than shmio's 260 characters allow.
pub(crate) const OS_NAME_MAX_BYTES: usize = 4096;
/// The prefix of the machine-wide namespace.
const GLOBAL_PREFIX: &str = "Global\\";

/// An owned section handle (made lazily for a backing file), its size, and
/// for a named one the name, which lives as long as any handle does.
pub(crate) struct Object {
    section: Option<OwnedHandle>,
    file: Option<File>,
    size: u64,
    name: Option<String>,
    /// For a user's mapping, its lock's kernel mutex, held for as long as
    /// the mapping is (see `NamedRequest::lock_name`): a mutex is gone with
    /// its last handle, so every holder of the mapping holds it, and one
    /// that dies while locked leaves it, abandoned, to the others.
    _lock: Option<OwnedHandle>,
}

impl Object {
    /// The object's size in bytes, as last seen or set.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Permission bits mean nothing to a section (its security descriptor decides).
    pub(crate) fn permissions(&self) -> Option<u32> {
        None
    }

    /// Sections have no identity shmio needs: a mutex cannot outlive its holders here.
    pub(crate) fn identity(&self) -> Option<crate::sys::ObjectId> {
        None
    }

    /// Who owns the section, if Windows says (see [`owner_of`]).
    pub(crate) fn owner(&self) -> Option<crate::owner::Owner> {
        let section = self.section.as_ref()?;
        owner_of(section.as_raw_handle()).map(crate::owner::Owner::Sid)
    }

    /// Nothing: a section's name goes with its last handle, and no one can
    /// take it away earlier.
    #[inline]
    pub(crate) fn remove_name(&self) {}

    /// Nothing: no process here is a forked child (see `sys::forks` on Unix).
    #[inline]
    pub(crate) fn share_here(&self) {}

    /// The OS name whose lifetime this handle shares: every named section's.
    pub(crate) fn leased_name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Grows (or shrinks) the backing file to `len` bytes.
    pub(crate) fn set_len(&mut self, len: u64, target: &str) -> Result<()> {
        let Some(file) = &self.file else {
            return Err(Error::Unsupported {
                what: "resizing a section that is not backed by a file",
            });
        };
        file.set_len(len)
            .map_err(|e| crate::sys::io_error("resize", target, e))?;
        self.size = len;
        Ok(())
    }

    /// Maps the first `len` bytes of the object.
    pub(crate) fn map(&mut self, len: u64, access: Access, target: &str) -> Result<Region> {
        let len_usize = crate::sys::checked_len(len, target)?;
        if self.section.is_none() {
            let Some(file) = &self.file else {
                return Err(Error::Unsupported {
                    what: "mapping an object with neither a section nor a file",
                });
            };
            let protect = match access {
                Access::ReadWrite => PAGE_READWRITE,
                Access::ReadOnly => PAGE_READONLY,
                Access::CopyOnWrite => PAGE_WRITECOPY,
            };
            let section = create_section(file.as_raw_handle(), protect, 0, None)
                .map_err(|code| win_error("map", target, len, code))?
                .0;
            self.section = Some(section);
        }
        let section = self
            .section
            .as_ref()
            .map(AsRawHandle::as_raw_handle)
            .unwrap_or(INVALID_HANDLE_VALUE);
        let view = map_view(section, view_access(access), len_usize)
            .map_err(|code| win_error("map", target, len, code))?;
        Ok(Region {
            ptr: view,
            len: len_usize,
        })
    }

    /// Wraps a section handle this process owns; the access is the most it allows.
    pub(crate) fn from_handle(handle: OwnedHandle) -> Result<(Object, Access)> {
        const TARGET: &str = "handle";
        let raw = handle.as_raw_handle();
        let (size, access) = match section_size(raw, FILE_MAP_READ | FILE_MAP_WRITE) {
            Ok(size) => (size, Access::ReadWrite),
            Err(ERROR_ACCESS_DENIED) => (
                section_size(raw, FILE_MAP_READ)
                    .map_err(|code| win_error("inspect", TARGET, 0, code))?,
                Access::ReadOnly,
            ),
            Err(code) => return Err(win_error("inspect", TARGET, 0, code)),
        };
        let object = Object {
            section: Some(handle),
            file: None,
            size,
            name: None,
            _lock: None,
        };
        Ok((object, access))
    }
}

impl AsHandle for Object {
    /// The section, made when the object was first mapped.
    fn as_handle(&self) -> BorrowedHandle<'_> {
        match (&self.section, &self.file) {
            (Some(section), _) => section.as_handle(),
            (None, Some(file)) => file.as_handle(),
            // Every Object holds a section or a file from construction.
            (None, None) => unreachable!("an Object without a section or a file"),
        }
    }
}

/// A duplicate of `handle` that this process owns.
pub(crate) fn duplicate(handle: BorrowedHandle<'_>) -> Result<OwnedHandle> {
    handle
        .try_clone_to_owned()
        .map_err(|e| crate::sys::io_error("duplicate", "handle", e))
}

/// Opens `req.path`, creating it when it is missing and the mapping may write.
pub(crate) fn open_file(req: &FileRequest<'_>) -> Result<Object> {
    // A new file gets the default security descriptor, not Unix bits.
    let FileRequest {
        mode: _default_security,
        ..
    } = req;
    let (file, size) = crate::sys::open_backing_file(req)?;
    Ok(Object {
        section: None,
        file: Some(file),
        size,
        name: None,
        _lock: None,
    })
}

/// Creates and/or opens a named section as `how` says.
pub(crate) fn open_named(req: &NamedRequest<'_>, how: Disposition) -> Result<Opened> {
    // What Windows does not need: a section's memory is committed anyway,
    // a section goes with its last handle, stale or not, and no process
    // forks a child that shares its handles.
    let NamedRequest {
        sparse: _always_committed,
        keep_stale: _never_stale,
        passes_to_children: _no_fork,
        ..
    } = req;
    if req.persistent {
        return Err(Error::Unsupported {
            what: "a persistent name on Windows (a section goes with its last handle)",
        });
    }
    let in_namespace = |name: &str| {
        if req.global {
            format!("{GLOBAL_PREFIX}{name}")
        } else {
            name.to_owned()
        }
    };
    let os_name = in_namespace(req.os_name);
    let lock = req.lock_name.map(in_namespace);
    let wide = wide(&os_name);
    if how == Disposition::Open {
        let section = open_section(&wide, req)?;
        let size = section_size(section.as_raw_handle(), FILE_MAP_READ)
            .map_err(|code| win_error("inspect", req.name, 0, code))?;
        let object = Object {
            section: Some(section),
            file: None,
            size,
            name: Some(os_name),
            _lock: hold_lock(lock.as_deref()),
        };
        return opened(object, req);
    }

    let mut file = None;
    let mut size = req.size.unwrap_or(req.default_size);
    let mut protect = PAGE_READWRITE;
    let mut backing = INVALID_HANDLE_VALUE;
    if let Some(path) = req.file {
        let mut object = open_file(&FileRequest {
            path,
            access: req.access,
            mode: req.mode,
        })?;
        let target = path.display().to_string();
        let (len, grow) = crate::sys::file_mapping_len(
            object.size(),
            req.size,
            req.default_size,
            req.access,
            &target,
        )?;
        if grow {
            object.set_len(len, &target)?;
        }
        size = len;
        if !req.access.writes_object() {
            protect = PAGE_READONLY;
        }
        file = object.file.take();
        backing = file
            .as_ref()
            .map(AsRawHandle::as_raw_handle)
            .unwrap_or(INVALID_HANDLE_VALUE);
    }
    let (section, existed) = create_section(backing, protect, size, Some(&wide))
        .map_err(|code| win_error("create", req.name, size, code))?;
    if existed && how == Disposition::Create {
        return Err(Error::AlreadyExists {
            kind: None,
            name: req.name.to_owned(),
        });
    }
    if existed {
        // The creator's size, not ours: read it from a view.
        size = section_size(section.as_raw_handle(), FILE_MAP_READ)
            .map_err(|code| win_error("inspect", req.name, 0, code))?;
        file = None;
    }
    let mut object = Object {
        section: Some(section),
        file,
        size,
        name: Some(os_name),
        _lock: hold_lock(lock.as_deref()),
    };
    if existed {
        return opened(object, req);
    }
    // The name is public already: openers wait for `ready` (see NamedRequest).
    if let Some(init) = req.init {
        let region = object.map(size, Access::ReadWrite, req.name)?;
        init(&region)?;
    }
    Ok(Opened {
        object,
        existed: false,
        adopted_stale: false,
    })
}

/// The kernel mutex `name` (created if there is none), held for as long as
/// the mapping is (see `Object::_lock`). A mutex that cannot be opened now
/// is not the mapping's business: the lock says why when it is taken.
fn hold_lock(name: Option<&str>) -> Option<OwnedHandle> {
    let wide = wide(name?);
    // SAFETY: a NUL-terminated name that outlives the call; default security.
    let handle = unsafe {
        windows_sys::Win32::System::Threading::CreateMutexW(std::ptr::null(), 0, wide.as_ptr())
    };
    // SAFETY: a non-null handle from CreateMutexW is ours to close.
    (!handle.is_null()).then(|| unsafe { OwnedHandle::from_raw_handle(handle) })
}

/// An existing section, once its owner is trusted and (for an object with
/// a header) its creator has set it up.
fn opened(mut object: Object, req: &NamedRequest<'_>) -> Result<Opened> {
    check_owner(&object, req)?;
    if let Some(ready) = req.ready {
        crate::sys::await_ready(&mut object, ready, req.name)?;
    }
    Ok(Opened {
        object,
        existed: true,
        adopted_stale: false,
    })
}

/// Refuses a section owned by someone the request does not trust.
fn check_owner(object: &Object, req: &NamedRequest<'_>) -> Result<()> {
    match &object.section {
        Some(section) => check_owner_of(section.as_raw_handle(), req.name, req.trust),
        None => Ok(()),
    }
}

/// Refuses the named kernel object `handle` (a section, a mutex, an event)
/// if its owner is neither this process's user (or the owner its token
/// gives new objects) nor one `trust` accepts.
///
/// A handle that may not read its object's security descriptor, or an
/// object with no owner in it, cannot be told apart: it is accepted, since
/// Windows let the caller open it at all (a named object's default DACL
/// admits only its creator, SYSTEM and administrators).
pub(crate) fn check_owner_of(
    handle: HANDLE,
    name: &str,
    trust: &crate::owner::Trust,
) -> Result<()> {
    let Some(owner) = owner_of(handle) else {
        return Ok(());
    };
    if current_owners().contains(&owner) {
        return Ok(());
    }
    let owner = crate::owner::Owner::Sid(owner);
    if trust.allows(&owner) {
        return Ok(());
    }
    Err(Error::ForeignOwner {
        name: name.to_owned(),
        owner,
    })
}

/// The owner SID of the kernel object `handle`, as text, if Windows says.
fn owner_of(handle: HANDLE) -> Option<String> {
    use windows_sys::Win32::Security::Authorization::{GetSecurityInfo, SE_KERNEL_OBJECT};
    use windows_sys::Win32::Security::{OWNER_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, PSID};
    let mut owner: PSID = std::ptr::null_mut();
    let mut descriptor: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    // SAFETY: `handle` is a live handle; the out pointers are valid; the
    // descriptor Windows allocates is freed below, and `owner` points into it.
    let code = unsafe {
        GetSecurityInfo(
            handle,
            SE_KERNEL_OBJECT,
            OWNER_SECURITY_INFORMATION,
            &mut owner,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut descriptor,
        )
    };
    if code != 0 {
        return None;
    }
    let text = sid_text(owner);
    // SAFETY: `descriptor` was allocated by GetSecurityInfo for the caller to free.
    unsafe { windows_sys::Win32::Foundation::LocalFree(descriptor) };
    text
}

/// A SID as text (`S-1-5-...`), or `None` for a null or bad one.
fn sid_text(sid: windows_sys::Win32::Security::PSID) -> Option<String> {
    use windows_sys::Win32::Security::Authorization::ConvertSidToStringSidW;
    if sid.is_null() {
        return None;
    }
    let mut text: windows_sys::core::PWSTR = std::ptr::null_mut();
    // SAFETY: `sid` is a valid SID; Windows allocates `text`, freed below.
    if unsafe { ConvertSidToStringSidW(sid, &mut text) } == 0 || text.is_null() {
        return None;
    }
    // SAFETY: `text` is a NUL-terminated UTF-16 string Windows just made.
    let len = (0..).take_while(|&i| unsafe { *text.add(i) } != 0).count();
    // SAFETY: `len` UTF-16 units were just counted in that string.
    let units = unsafe { std::slice::from_raw_parts(text, len) };
    let string = String::from_utf16_lossy(units);
    // SAFETY: `text` was allocated by ConvertSidToStringSidW for the caller to free.
    unsafe { windows_sys::Win32::Foundation::LocalFree(text.cast()) };
    Some(string)
}

/// The SIDs that own objects this process makes: its token's user and its
/// default owner (the Administrators group, for an elevated administrator).
fn current_owners() -> &'static [String] {
    use windows_sys::Win32::Security::{
        GetTokenInformation, TokenOwner, TokenUser, TOKEN_OWNER, TOKEN_QUERY, TOKEN_USER,
    };
    use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};
    static OWNERS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    OWNERS.get_or_init(|| {
        let mut token: HANDLE = std::ptr::null_mut();
        // SAFETY: the pseudo-handle of this process; `token` is written on success.
        if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
            return Vec::new();
        }
        // SAFETY: a token handle this process now owns.
        let token = unsafe { OwnedHandle::from_raw_handle(token) };
        let query = |class| {
            let mut buffer = vec![0u64; 128];
            let mut len = 0u32;
            // SAFETY: `buffer` is writable for its size in bytes, 8-aligned.
            let ok = unsafe {
                GetTokenInformation(
                    token.as_raw_handle(),
                    class,
                    buffer.as_mut_ptr().cast(),
                    (buffer.len() * 8) as u32,
                    &mut len,
                )
            };
            (ok != 0).then_some(buffer)
        };
        let mut owners = Vec::new();
        if let Some(buffer) = query(TokenUser) {
            // SAFETY: GetTokenInformation filled the buffer with a TOKEN_USER.
            let user = unsafe { &*buffer.as_ptr().cast::<TOKEN_USER>() };
            owners.extend(sid_text(user.User.Sid));
        }
        if let Some(buffer) = query(TokenOwner) {
            // SAFETY: GetTokenInformation filled the buffer with a TOKEN_OWNER.
            let owner = unsafe { &*buffer.as_ptr().cast::<TOKEN_OWNER>() };
            owners.extend(sid_text(owner.Owner));
        }
        owners
    })
}

/// Windows cannot remove a section's name: it goes with the last handle.
pub(crate) fn remove_named(
    _name: &str,
    _os_name: &str,
    _trust: &crate::owner::Trust,
) -> Result<()> {
    Err(Error::Unsupported {
        what: "removing a name on Windows (a section goes with its last handle)",
    })
}

/// A new unnamed section backed by the paging file; its memory is committed
/// (reserved) by the kernel, so `_sparse` changes nothing.
pub(crate) fn anonymous(size: u64, _sparse: bool) -> Result<Object> {
    const TARGET: &str = "anonymous mapping";
    let (section, _) = create_section(INVALID_HANDLE_VALUE, PAGE_READWRITE, size, None)
        .map_err(|code| win_error("create", TARGET, size, code))?;
    Ok(Object {
        section: Some(section),
        file: None,
        size,
        name: None,
        _lock: None,
    })
}

impl Region {
    /// Writes dirty pages of a file-backed view to the file.
    pub(crate) fn flush(&self, target: &str) -> Result<()> {
        // SAFETY: the range is exactly the live view this Region owns.
        let ok = unsafe { FlushViewOfFile(self.ptr.as_ptr().cast(), self.len) };
        if ok == 0 {
            return Err(crate::sys::io_error(
                "flush",
                target,
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the address is the start of the view made in `Object::map`,
        // and nothing borrows into it any more (every borrow is tied to the
        // owner of this Region).
        unsafe {
            UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS {
                Value: self.ptr.as_ptr().cast(),
            })
        };
    }
}

/// `s` as a NUL-terminated UTF-16 string.
pub(crate) fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

/// `CreateFileMappingW`: the section and whether it already existed, or the error code.
fn create_section(
    backing: HANDLE,
    protect: PAGE_PROTECTION_FLAGS,
    size: u64,
    name: Option<&[u16]>,
) -> std::result::Result<(OwnedHandle, bool), u32> {
    let name_ptr = name.map_or(std::ptr::null(), <[u16]>::as_ptr);
    // SAFETY: `backing` is a live file handle or INVALID_HANDLE_VALUE (the
    // paging file); `name_ptr` is null or a NUL-terminated string that
    // outlives the call; default security attributes (null).
    let handle = unsafe {
        CreateFileMappingW(
            backing,
            std::ptr::null(),
            protect,
            (size >> 32) as u32,
            size as u32,
            name_ptr,
        )
    };
    // SAFETY: reading the calling thread's last error has no preconditions.
    let code = unsafe { GetLastError() };
    if handle.is_null() {
        return Err(code);
    }
    // SAFETY: a non-null handle from CreateFileMappingW is ours to close.
    let owned = unsafe { OwnedHandle::from_raw_handle(handle) };
    Ok((owned, code == ERROR_ALREADY_EXISTS))
}

/// `OpenFileMappingW` with the access `req` needs.
fn open_section(wide_name: &[u16], req: &NamedRequest<'_>) -> Result<OwnedHandle> {
    let desired = match req.access {
        Access::ReadWrite => FILE_MAP_READ | FILE_MAP_WRITE,
        Access::ReadOnly => FILE_MAP_READ,
        Access::CopyOnWrite => FILE_MAP_READ | FILE_MAP_COPY,
    };
    // READ_CONTROL, to read the owner (see `check_owner_of`).
    let desired = desired | windows_sys::Win32::Storage::FileSystem::READ_CONTROL;
    // SAFETY: the name is NUL-terminated and outlives the call.
    let handle = unsafe { OpenFileMappingW(desired, 0, wide_name.as_ptr()) };
    if handle.is_null() {
        // SAFETY: reading the calling thread's last error has no preconditions.
        let code = unsafe { GetLastError() };
        return Err(win_error("open", req.name, 0, code));
    }
    // SAFETY: a non-null handle from OpenFileMappingW is ours to close.
    Ok(unsafe { OwnedHandle::from_raw_handle(handle) })
}

/// `MapViewOfFile` of `len` bytes (0: all) from the start.
fn map_view(
    section: HANDLE,
    access: FILE_MAP,
    len: usize,
) -> std::result::Result<NonNull<u8>, u32> {
    // SAFETY: `section` is a live section handle; the view is a new range
    // the system chooses, owned by the caller.
    let view = unsafe { MapViewOfFile(section, access, 0, 0, len) };
    match NonNull::new(view.Value.cast::<u8>()) {
        Some(ptr) => Ok(ptr),
        // SAFETY: reading the calling thread's last error has no preconditions.
        None => Err(unsafe { GetLastError() }),
    }
}

/// The size of a section, as whole pages of a view of all of it.
fn section_size(section: HANDLE, access: FILE_MAP) -> std::result::Result<u64, u32> {
    let view = map_view(section, access, 0)?;
    let mut info = std::mem::MaybeUninit::<MEMORY_BASIC_INFORMATION>::uninit();
    // SAFETY: `view` is a live view; `info` is writable and its size is given.
    let written = unsafe {
        VirtualQuery(
            view.as_ptr().cast(),
            info.as_mut_ptr(),
            size_of::<MEMORY_BASIC_INFORMATION>(),
        )
    };
    // SAFETY: reading the calling thread's last error has no preconditions.
    let code = unsafe { GetLastError() };
    // SAFETY: VirtualQuery filled `info` when it returned non-zero.
    let size = (written != 0).then(|| unsafe { info.assume_init() }.RegionSize as u64);
    // SAFETY: `view` came from MapViewOfFile above and is not used after this.
    unsafe {
        UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS {
            Value: view.as_ptr().cast(),
        })
    };
    size.ok_or(code)
}

/// The view access for a mapping's access.
fn view_access(access: Access) -> FILE_MAP {
    match access {
        Access::ReadWrite => FILE_MAP_READ | FILE_MAP_WRITE,
        Access::ReadOnly => FILE_MAP_READ,
        Access::CopyOnWrite => FILE_MAP_COPY,
    }
}

/// Whether a raw OS error says the open-handle limit is reached.
pub(crate) fn is_handle_limit(code: i32) -> bool {
    code == ERROR_TOO_MANY_OPEN_FILES as i32
}

/// A Windows error code as an [`Error`] that says what was done to what.
fn win_error(op: &'static str, target: &str, size: u64, code: u32) -> Error {
    match code {
        ERROR_INVALID_HANDLE => Error::WrongKind {
            name: target.to_owned(),
            expected: "a shared-memory section (the name is taken by a mutex, an event or another kind of object)",
            found: None,
        },
        ERROR_FILE_NOT_FOUND => Error::NotFound { kind: None, name: target.to_owned() },
        ERROR_ACCESS_DENIED => Error::PermissionDenied {
            op,
            target: target.to_owned(),
        },
        ERROR_NOT_ENOUGH_MEMORY => Error::OutOfAddressSpace {
            size,
            target: target.to_owned(),
        },
        // The paging file cannot back the section: no space for it.
        ERROR_DISK_FULL | ERROR_COMMITMENT_LIMIT => Error::NoSpace {
            size,
            target: target.to_owned(),
        },
        _ => crate::sys::io_error(op, target, io::Error::from_raw_os_error(code as i32)),
    }
}
