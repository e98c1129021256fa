//! Objects of the stub backend: none can be made.

use super::{unsupported, Never};
use crate::error::Result;
use crate::owner::Owner;
use crate::sys::{Access, Disposition, FileRequest, NamedRequest, ObjectId, Opened, Region};

/// Names as POSIX writes them, so that names check the same everywhere.
pub(crate) const OS_NAME_PREFIX: &str = "/";
/// The longest OS name, as on Linux.
pub(crate) const OS_NAME_MAX_BYTES: usize = 256;

/// An object of this backend: there is none.
pub(crate) struct Object(Never);

impl Object {
    pub(crate) fn size(&self) -> u64 {
        match self.0 {}
    }

    pub(crate) fn permissions(&self) -> Option<u32> {
        match self.0 {}
    }

    pub(crate) fn identity(&self) -> Option<ObjectId> {
        match self.0 {}
    }

    pub(crate) fn owner(&self) -> Option<Owner> {
        match self.0 {}
    }

    pub(crate) fn leased_name(&self) -> Option<&str> {
        match self.0 {}
    }

    pub(crate) fn share_here(&self) {
        match self.0 {}
    }

    pub(crate) fn remove_name(&self) {
        match self.0 {}
    }

    pub(crate) fn set_len(&mut self, _len: u64, _target: &str) -> Result<()> {
        match self.0 {}
    }

    pub(crate) fn map(&mut self, _len: u64, _access: Access, _target: &str) -> Result<Region> {
        match self.0 {}
    }

    /// A descriptor cannot be mapped here.
    #[cfg(unix)]
    pub(crate) fn from_fd(_fd: std::os::fd::OwnedFd) -> Result<(Object, Access)> {
        unsupported()
    }
}

#[cfg(unix)]
impl std::os::fd::AsFd for Object {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self.0 {}
    }
}

impl Region {
    /// A region cannot exist here.
    pub(crate) fn flush(&self, _target: &str) -> Result<()> {
        unsupported()
    }
}

/// A duplicate of a descriptor: not here.
#[cfg(unix)]
pub(crate) fn duplicate(_fd: std::os::fd::BorrowedFd<'_>) -> Result<std::os::fd::OwnedFd> {
    unsupported()
}

pub(crate) fn open_named(req: &NamedRequest<'_>, _how: Disposition) -> Result<Opened> {
    let NamedRequest {
        sparse: _,
        global: _,
        lock_name: _,
        keep_stale: _,
        passes_to_children: _,
        ..
    } = req;
    unsupported()
}

pub(crate) fn remove_named(
    _name: &str,
    _os_name: &str,
    _trust: &crate::owner::Trust,
) -> Result<()> {
    unsupported()
}

pub(crate) fn anonymous(_size: u64, _sparse: bool) -> Result<Object> {
    unsupported()
}

pub(crate) fn open_file(_req: &FileRequest<'_>) -> Result<Object> {
    unsupported()
}

/// No OS error says the handle limit is reached here.
pub(crate) fn is_handle_limit(_code: i32) -> bool {
    false
}
