//! What named objects exist: listing, inspecting and cleaning up names
//! (what `shmio ls`, `shmio stat` and `shmio gc` show and do).
//!
//! On Linux every named object is a file in `/dev/shm`; the number of holders
//! comes from `/proc/locks` (each holder keeps a shared `flock`), and what
//! shmio made an object for from its first 8 bytes. Windows has no public
//! way to enumerate named sections, and macOS none to enumerate POSIX
//! shared-memory names: there these functions are [`Error::Unsupported`].

use crate::error::{Error, Result};
use crate::name::Name;
use crate::sys;

/// What shmio made a named object for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    /// A mapping (or an object another program made).
    Mapping,
    /// The state of a [`crate::NamedMutex`].
    Mutex,
    /// The state of a [`crate::NamedEvent`].
    Event,
    /// A [`crate::Channel`].
    Channel,
}

impl ObjectKind {
    /// A short lowercase word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Mapping => "mapping",
            ObjectKind::Mutex => "mutex",
            ObjectKind::Event => "event",
            ObjectKind::Channel => "channel",
        }
    }

    fn from_magic(magic: u64) -> ObjectKind {
        match &magic.to_le_bytes() {
            b"shmioMTX" => ObjectKind::Mutex,
            b"shmioEVT" => ObjectKind::Event,
            b"shmioCHN" => ObjectKind::Channel,
            _ => ObjectKind::Mapping,
        }
    }
}

/// One named object, as the OS shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameInfo {
    /// The name to open it by (for a mutex or an event, the name given to
    /// it; for a hashed name, the hash, since the original is not stored).
    pub name: String,
    /// The name the OS knows.
    pub os_name: String,
    /// What it is.
    pub kind: ObjectKind,
    /// Its size in bytes.
    pub size: u64,
    /// How many handles hold it, where the OS says.
    pub holders: Option<u32>,
    /// Whether the name goes with its last holder (rather than persisting).
    pub follows_holders: bool,
    /// Whether every holder is gone from a name that follows its holders:
    /// the next open or create, or [`gc`], removes it.
    pub stale: bool,
}

/// Every named object this process can see, sorted by OS name.
pub fn list() -> Result<Vec<NameInfo>> {
    Ok(sys::list_named()?.into_iter().map(info).collect())
}

/// The named object called `name` (a mapping's, channel's, mutex's or event's name).
pub fn stat(name: &str) -> Result<NameInfo> {
    let parsed = Name::new(name)?;
    let candidates = [
        parsed.os_name(),
        Name::derived(&format!("{name}@mutex"))?.os_name(),
        Name::derived(&format!("{name}@event"))?.os_name(),
    ];
    for os_name in &candidates {
        if let Some(found) = sys::describe_named(os_name)? {
            return Ok(info(found));
        }
    }
    Err(Error::NotFound {
        name: name.to_owned(),
    })
}

/// Removes every stale name (see [`NameInfo::stale`]); with `dry_run`, only
/// says which. Returns the names removed (or that would be).
///
/// One kind of stale name is kept: the mutex of a mapping that is still
/// held (`NAME.mutex`), left by a process that died holding `map.lock()`.
/// It tells the mapping's next locker that its holder died
/// ([`LockError::OwnerDied`](crate::LockError::OwnerDied)); removing it
/// would lose that.
pub fn gc(dry_run: bool) -> Result<Vec<NameInfo>> {
    let found = list()?;
    let live: std::collections::HashSet<&str> = found
        .iter()
        .filter(|found| !found.stale)
        .map(|found| found.name.as_str())
        .collect();
    let mut removed = Vec::new();
    for found in found.iter().filter(|found| found.stale) {
        let guards_a_live_mapping = found.kind == ObjectKind::Mutex
            && found
                .name
                .strip_suffix(".mutex")
                .is_some_and(|mapping| live.contains(mapping));
        if guards_a_live_mapping {
            continue;
        }
        if dry_run || sys::reclaim_if_stale(&found.os_name)? {
            removed.push(found.clone());
        }
    }
    Ok(removed)
}

fn info(listed: sys::ListedName) -> NameInfo {
    let kind = ObjectKind::from_magic(listed.magic);
    let bare = listed
        .os_name
        .strip_prefix(sys::OS_NAME_PREFIX)
        .unwrap_or(&listed.os_name);
    let name = match kind {
        ObjectKind::Mutex => bare.strip_suffix("@mutex"),
        ObjectKind::Event => bare.strip_suffix("@event"),
        _ => None,
    }
    .unwrap_or(bare)
    .to_owned();
    NameInfo {
        name,
        stale: listed.follows_holders && listed.holders == Some(0),
        os_name: listed.os_name,
        kind,
        size: listed.size,
        holders: listed.holders,
        follows_holders: listed.follows_holders,
    }
}
