//! What named objects exist: listing, inspecting and cleaning up names
//! (what `shmio ls`, `shmio stat` and `shmio gc` show and do).
//!
//! On Linux every named object is a file in `/dev/shm`; the number of holders
//! comes from `/proc/locks` (each holder keeps a shared `flock`), and what
//! shmio made an object for from its first 8 bytes. Nothing here opens an
//! entry in a way that can wait, follows another user's link, or removes
//! anything but the caller's own stale objects that carry shmio's mark (see
//! `sys/unix/linux.rs`). Windows has no public way to enumerate named
//! sections, and macOS none to enumerate POSIX shared-memory names: there
//! these functions are [`Error::Unsupported`].

use crate::error::{Error, Result};
pub use crate::kind::ObjectKind;
use crate::name::{unprefixed as bare, Name, NameRole};
use crate::owner::{Owner, Trust};
use crate::sys::{self, EntryKind};

/// One named object, as the OS shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NameInfo {
    /// Its name in the namespace, as [`stat`] and `Mapping::remove` take it:
    /// the OS name without its prefix. A mutex's or an event's state is
    /// `NAME@mutex` or `NAME@event`; a mapping's mutex is `NAME.mutex@mutex`;
    /// a hashed name is the hash (the original is not stored).
    pub name: String,
    /// The name the OS knows.
    pub os_name: String,
    /// What it is.
    pub kind: ObjectKind,
    /// What its name is for: a name someone gave, or one shmio derived
    /// (a mutex's state, a bus member's inbox; see [`NameRole`]). A
    /// hashed name's role is unknown: [`NameRole::Object`].
    pub role: NameRole,
    /// Its size in bytes (0 for another user's link, which is not followed).
    pub size: u64,
    /// How many handles hold it, where the OS says.
    pub holders: Option<u32>,
    /// Whether the name goes with its last holder: it carries shmio's mark.
    pub follows_holders: bool,
    /// Whether every holder is gone from a name that follows its holders:
    /// the next open or create by its owner, or its owner's [`gc`], removes it.
    pub stale: bool,
    /// Who owns it.
    pub owner: Owner,
    /// Whether it is the caller's own.
    pub own: bool,
}

/// Every named object this process can see, sorted by OS name. Entries
/// that are not shared-memory objects (a FIFO, a socket, a directory) are
/// left out.
pub fn list() -> Result<Vec<NameInfo>> {
    Ok(sys::list_named()?.into_iter().filter_map(info).collect())
}

/// The named object whose name is exactly `name` (as [`list`] shows it).
/// [`Error::NotFound`] if there is none; [`Error::WrongKind`] for an entry
/// that is not a shared-memory object (a FIFO, say).
pub fn stat(name: &str) -> Result<NameInfo> {
    let os_name = Name::new(name)?.os_name();
    let Some(listed) = sys::describe_named(&os_name)? else {
        return Err(Error::NotFound {
            kind: None,
            name: name.to_owned(),
        });
    };
    if let EntryKind::Other(expected) = listed.entry {
        return Err(Error::WrongKind {
            name: name.to_owned(),
            expected,
            found: None,
        });
    }
    info(listed).ok_or_else(|| Error::NotFound {
        kind: None,
        name: name.to_owned(),
    })
}

/// What [`gc`] did.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct GcReport {
    /// The stale names removed (with `dry_run`, that would be removed).
    pub removed: Vec<NameInfo>,
    /// Every other entry, with why it was kept.
    pub skipped: Vec<Skipped>,
}

/// An entry [`gc`] kept, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Skipped {
    /// The OS name.
    pub os_name: String,
    /// Why it was kept.
    pub reason: String,
}

/// Removes the caller's stale names (see [`NameInfo::stale`]): only
/// objects that carry shmio's mark, belong to the caller, and have no
/// holder left. Nothing else is touched: not other users' entries, not
/// CPython's segments or other programs' files and links, not persistent
/// names. With `dry_run`, makes every check the real run makes (the
/// holders' locks included) and removes nothing, so it lists exactly what
/// the real run would remove.
///
/// One kind of stale name is kept: the mutex of a mapping that is still
/// held (`NAME.mutex@mutex`), left by a process that died holding
/// `map.lock()`. It tells the mapping's next locker that its holder died
/// ([`Error::OwnerDied`]); removing it
/// would lose that.
pub fn gc(dry_run: bool) -> Result<GcReport> {
    Gc::new().dry_run(dry_run).run()
}

/// [`gc`] with more say: also another user's stale objects (for an
/// administrator cleaning up after everyone; still only objects that carry
/// shmio's mark, and only where the OS lets the caller remove them).
///
/// ```
/// use shmio::{inventory::Gc, Owner};
///
/// // What root's cleanup of every user's stale names would remove.
/// let report = Gc::new().dry_run(true).allow_owner(Owner::Uid(65534)).run();
/// # let _ = report;
/// ```
#[derive(Clone, Debug, Default)]
pub struct Gc {
    dry_run: bool,
    trust: Trust,
}

impl Gc {
    /// The caller's own stale names, for real.
    pub fn new() -> Gc {
        Gc::default()
    }

    /// Only say what would be removed (every check is made).
    pub fn dry_run(&mut self, dry_run: bool) -> &mut Gc {
        self.dry_run = dry_run;
        self
    }

    /// Also remove `owner`'s stale objects.
    pub fn allow_owner(&mut self, owner: Owner) -> &mut Gc {
        self.trust.allow(owner);
        self
    }

    /// Also remove every other user's stale objects.
    pub fn allow_any_owner(&mut self, any: bool) -> &mut Gc {
        self.trust.allow_any(any);
        self
    }

    /// Collects, as [`gc`] does.
    pub fn run(&self) -> Result<GcReport> {
        collect(self.dry_run, &self.trust)
    }
}

fn collect(dry_run: bool, trust: &Trust) -> Result<GcReport> {
    let listed = sys::list_named()?;
    let live: std::collections::HashSet<String> = listed
        .iter()
        .filter(|listed| matches!(listed.entry, EntryKind::Object | EntryKind::Link))
        .filter(|listed| !(listed.follows_holders && listed.holders == Some(0)))
        .map(|listed| bare(&listed.os_name).to_owned())
        .collect();
    let mut report = GcReport::default();
    for listed in listed {
        let os_name = listed.os_name.clone();
        let kept = match keep_reason(&listed, &live, trust) {
            Some(reason) => Err(reason),
            None => sys::reclaim_if_stale(&os_name, dry_run, trust)?,
        };
        match kept {
            Ok(()) => report.removed.extend(info(listed)),
            Err(reason) => report.skipped.push(Skipped { os_name, reason }),
        }
    }
    Ok(report)
}

/// Why `gc` keeps `listed` without looking further, if it does; `live` are
/// the names (without prefix) that are not stale.
fn keep_reason(
    listed: &sys::ListedName,
    live: &std::collections::HashSet<String>,
    trust: &Trust,
) -> Option<String> {
    if let EntryKind::Other(expected) = listed.entry {
        return Some(format!("not {expected}"));
    }
    if !listed.own && !trust.allows(&listed.owner) {
        return Some(format!("it belongs to {}, not to this user", listed.owner));
    }
    if !listed.follows_holders {
        return Some(
            "shmio did not make it to go with its holders (persistent, or another program's)"
                .to_owned(),
        );
    }
    match listed.holders {
        Some(0) => {}
        Some(1) => return Some("1 process holds it".to_owned()),
        Some(n) => return Some(format!("{n} processes hold it")),
        None => return Some("its holders cannot be counted".to_owned()),
    }
    let NameRole::MutexState { mutex } = NameRole::of(bare(&listed.os_name)) else {
        return None;
    };
    match NameRole::of(&mutex) {
        NameRole::MappingLock { mapping }
            if live.contains(&mapping)
                && ObjectKind::of_magic(listed.magic) == ObjectKind::Mutex =>
        {
            Some(format!(
                "the mutex of the mapping {mapping:?}, which is still held: it tells the \
                 next locker that its holder died"
            ))
        }
        _ => None,
    }
}

/// What the inventory shows of a listed entry: shared-memory objects and links only.
fn info(listed: sys::ListedName) -> Option<NameInfo> {
    if let EntryKind::Other(_) = listed.entry {
        return None;
    }
    Some(NameInfo {
        name: bare(&listed.os_name).to_owned(),
        role: NameRole::of(bare(&listed.os_name)),
        kind: ObjectKind::of_magic(listed.magic),
        stale: listed.follows_holders && listed.holders == Some(0),
        os_name: listed.os_name,
        size: listed.size,
        holders: listed.holders,
        follows_holders: listed.follows_holders,
        owner: listed.owner,
        own: listed.own,
    })
}
