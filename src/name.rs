//! Names of shared objects: the validation rules, how a name becomes the
//! name the OS sees, and the names shmio derives from a name ([`NameRole`]:
//! made and parsed here, nowhere else).
//!
//! A name is 1 to 260 characters with no `\`, `/` or NUL, and is not `.` or
//! `..` (aardio's rule, plus what POSIX forbids). On Linux and macOS the OS
//! name is `/` + name, the same object CPython's
//! `multiprocessing.shared_memory.SharedMemory(name)` opens. A name too long
//! for the platform (over 255 bytes after the `/` on Linux, 31 bytes in all
//! on macOS) becomes a stable hashed OS name: `/shmio-` followed by the
//! lowercase hex SHA-256 of the name, cut to fit. This module is pure logic:
//! the platform's limits come from `sys`.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::sys;

/// The longest name, in characters.
pub const MAX_NAME_CHARS: usize = 260;

/// How many characters a derived name may add to a user's name.
const DERIVED_SUFFIX_ROOM: usize = 32;

/// The start of every hashed OS name, after the platform's prefix.
pub const HASHED_NAME_TAG: &str = "shmio-";

/// A validated name of a shared object.
///
/// ```
/// use shmio::Name;
///
/// let name = Name::new("sensor-data")?;
/// assert_eq!(name.as_str(), "sensor-data");
/// # #[cfg(target_os = "linux")]
/// assert_eq!(name.os_name(), "/sensor-data");
/// assert!(Name::new("a/b").is_err());
/// # Ok::<(), shmio::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Name {
    name: String,
}

impl Name {
    /// Checks `name` against the naming rules.
    ///
    /// # Errors
    /// [`Error::InvalidName`] naming the rule broken.
    pub fn new(name: &str) -> Result<Name> {
        if let Some(rule) = broken_rule(name) {
            return Err(Error::InvalidName {
                name: name.to_owned(),
                rule,
            });
        }
        Ok(Name {
            name: name.to_owned(),
        })
    }

    /// A name shmio derives from a user's name (`NAME@mutex`,
    /// `NAME.mutex`): the same rules, with room for the suffix.
    pub(crate) fn derived(name: &str) -> Result<Name> {
        let within_limit = name.chars().count() <= MAX_NAME_CHARS + DERIVED_SUFFIX_ROOM;
        match broken_rule(name) {
            Some(rule) if !(rule.contains("260") && within_limit) => Err(Error::InvalidName {
                name: name.to_owned(),
                rule,
            }),
            _ => Ok(Name {
                name: name.to_owned(),
            }),
        }
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The name the OS sees for a mapping with this name.
    pub fn os_name(&self) -> String {
        os_name_with(&self.name, sys::OS_NAME_PREFIX, sys::OS_NAME_MAX_BYTES)
    }

    /// What the name is for, by its form (see [`NameRole`]).
    pub fn role(&self) -> NameRole {
        NameRole::of(&self.name)
    }

    /// Whether [`Name::os_name`] is a hash rather than the name itself.
    pub fn is_hashed(&self) -> bool {
        sys::OS_NAME_PREFIX.len() + self.name.len() > sys::OS_NAME_MAX_BYTES
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.name, f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// The first naming rule `name` breaks, if any.
fn broken_rule(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("a name must not be empty")
    } else if name.chars().count() > MAX_NAME_CHARS {
        Some("a name must be at most 260 characters")
    } else if name.contains('\\') {
        Some("a name must not contain a backslash")
    } else if name.contains('/') {
        Some("a name must not contain a slash")
    } else if name.contains('\0') {
        Some("a name must not contain a NUL character")
    } else if name == "." || name == ".." {
        Some("a name must not be \".\" or \"..\"")
    } else {
        None
    }
}

/// `prefix + name` when it fits in `max_bytes`, else `prefix + "shmio-" + hex hash`, cut to fit.
fn os_name_with(name: &str, prefix: &str, max_bytes: usize) -> String {
    if prefix.len() + name.len() <= max_bytes {
        return format!("{prefix}{name}");
    }
    let digest = Sha256::digest(name.as_bytes());
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    let room = max_bytes - prefix.len() - HASHED_NAME_TAG.len();
    format!("{prefix}{HASHED_NAME_TAG}{}", &hex[..room.min(hex.len())])
}

/// What a name is for, told by its form: a name someone gave an object, or
/// one of the names shmio derives from such a name for the objects that
/// serve it. [`NameRole::of`] parses a name (the inventory and the bus use
/// it), and the crate makes each derived name from its role, so a form is
/// written in one place only.
///
/// A role says whose part an object is; its [`ObjectKind`](crate::ObjectKind)
/// says what the object is (a bus member's inbox is a channel, a spilled
/// message a mapping, a group's lock a mutex). They are not kinds of their
/// own because each opens, and is cleaned up, as the kind it is.
///
/// Names with `@` are not reserved: someone may call a mapping
/// `jobs@mutex`. So a role is what the name's form says, to be read with
/// the object's kind (`shmio gc` keeps a mapping's mutex only if its
/// object is a mutex).
///
/// ```
/// use shmio::{Name, NameRole};
///
/// assert_eq!(Name::new("jobs")?.role(), NameRole::Object);
/// assert_eq!(
///     NameRole::of("jobs.mutex@mutex"),
///     NameRole::MutexState { mutex: "jobs.mutex".into() }
/// );
/// assert_eq!(
///     NameRole::of("jobs.mutex"),
///     NameRole::MappingLock { mapping: "jobs".into() }
/// );
/// let inbox = NameRole::BusInbox { group: "g".into(), token: 0x401, incarnation: 2 };
/// assert_eq!(inbox.name().as_deref(), Some("g@in.401.2"));
/// assert_eq!(NameRole::of("g@in.401.2"), inbox);
/// # Ok::<(), shmio::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NameRole {
    /// A name as someone gave it: a mapping's, a channel's, a bus group's
    /// registry's, or an object another program made.
    Object,
    /// `MUTEX@mutex`: the state of the mutex `MUTEX`.
    MutexState {
        /// The mutex's name.
        mutex: String,
    },
    /// `EVENT@event`: the state of the event `EVENT`.
    EventState {
        /// The event's name.
        event: String,
    },
    /// `MAPPING.mutex`: the mutex `Mapping::lock` takes (aardio's
    /// `process.command` convention). Its state is `MAPPING.mutex@mutex`.
    MappingLock {
        /// The mapping's name.
        mapping: String,
    },
    /// `GROUP@bus`: the mutex a bus group's registry (the object `GROUP`)
    /// is changed under. Its state is `GROUP@bus@mutex`.
    GroupLock {
        /// The group's name.
        group: String,
    },
    /// `GROUP@in.TOKEN.N` (hexadecimal): the inbox, a channel, that the
    /// member `TOKEN` of the group made the `N`th time.
    BusInbox {
        /// The group's name.
        group: String,
        /// The member's token.
        token: u32,
        /// Which of the member's inboxes (it makes a new one each time it
        /// needs one again).
        incarnation: u32,
    },
    /// `GROUP@big.FROM.SPILL` (hexadecimal): a message too large for its
    /// receiver's inbox, in a mapping of its own, that the member `FROM`
    /// spilled.
    BusSpill {
        /// The group's name.
        group: String,
        /// The sender's token.
        from: u32,
        /// The sender's count of spilled messages.
        spill: u64,
    },
}

impl NameRole {
    /// The role of the name `name`: [`NameRole::Object`] unless it is
    /// exactly a name shmio derives (`"g@in.0x1.2"` is not: shmio writes
    /// `g@in.1.2`).
    pub fn of(name: &str) -> NameRole {
        let role = parse(name);
        match role.name() {
            Some(made) if made == name => role,
            _ => NameRole::Object,
        }
    }

    /// The name of this role: `None` for [`NameRole::Object`], which
    /// derives from nothing.
    pub fn name(&self) -> Option<String> {
        Some(match self {
            NameRole::Object => return None,
            NameRole::MutexState { mutex } => format!("{mutex}@mutex"),
            NameRole::EventState { event } => format!("{event}@event"),
            NameRole::MappingLock { mapping } => format!("{mapping}.mutex"),
            NameRole::GroupLock { group } => format!("{group}@bus"),
            NameRole::BusInbox {
                group,
                token,
                incarnation,
            } => format!("{group}@in.{token:x}.{incarnation:x}"),
            NameRole::BusSpill { group, from, spill } => format!("{group}@big.{from:x}.{spill:x}"),
        })
    }

    /// The bus group this name is a part of, if it is one of a group's
    /// names (a lock's state, `GROUP@bus@mutex`, included). The group's
    /// registry itself is named `GROUP`, a [`NameRole::Object`].
    pub fn bus_group(&self) -> Option<&str> {
        match self {
            NameRole::GroupLock { group }
            | NameRole::BusInbox { group, .. }
            | NameRole::BusSpill { group, .. } => Some(group),
            NameRole::MutexState { mutex } => mutex
                .strip_suffix("@bus")
                .filter(|_| matches!(NameRole::of(mutex), NameRole::GroupLock { .. })),
            _ => None,
        }
    }
}

/// The role `name`'s form claims, before [`NameRole::of`] checks that
/// shmio would write it so.
fn parse(name: &str) -> NameRole {
    // No `@` form ends in ".mutex", so the two kinds of suffix never compete.
    if let Some(mapping) = name.strip_suffix(".mutex").filter(|base| !base.is_empty()) {
        return NameRole::MappingLock {
            mapping: mapping.to_owned(),
        };
    }
    let Some((base, tail)) = name.rsplit_once('@').filter(|(base, _)| !base.is_empty()) else {
        return NameRole::Object;
    };
    let base = base.to_owned();
    let numbers = |rest: &str| {
        let (first, second) = rest.split_once('.')?;
        Some((
            u32::from_str_radix(first, 16).ok()?,
            u64::from_str_radix(second, 16).ok()?,
        ))
    };
    match tail {
        "mutex" => NameRole::MutexState { mutex: base },
        "event" => NameRole::EventState { event: base },
        "bus" => NameRole::GroupLock { group: base },
        _ => {
            if let Some((token, incarnation)) = tail.strip_prefix("in.").and_then(numbers) {
                match u32::try_from(incarnation) {
                    Ok(incarnation) => NameRole::BusInbox {
                        group: base,
                        token,
                        incarnation,
                    },
                    Err(_) => NameRole::Object,
                }
            } else if let Some((from, spill)) = tail.strip_prefix("big.").and_then(numbers) {
                NameRole::BusSpill {
                    group: base,
                    from,
                    spill,
                }
            } else {
                NameRole::Object
            }
        }
    }
}

/// The name of `role`, which derives from a name.
fn derived(role: NameRole) -> String {
    role.name().unwrap_or_default()
}

/// The name of the object that holds the state of the mutex `mutex`.
pub(crate) fn mutex_state_name(mutex: &str) -> String {
    derived(NameRole::MutexState {
        mutex: mutex.to_owned(),
    })
}

/// The name of the object that holds the state of the event `event`.
pub(crate) fn event_state_name(event: &str) -> String {
    derived(NameRole::EventState {
        event: event.to_owned(),
    })
}

/// The name of the lock of the mapping `name`: what `Mapping::lock` takes.
pub(crate) fn lock_name(name: &str) -> String {
    derived(NameRole::MappingLock {
        mapping: name.to_owned(),
    })
}

/// The name of the mutex the registry of the bus group `group` is changed under.
pub(crate) fn group_lock_name(group: &str) -> String {
    derived(NameRole::GroupLock {
        group: group.to_owned(),
    })
}

/// The name of the inbox `incarnation` of the member `token` of `group`.
pub(crate) fn inbox_name(group: &str, token: u32, incarnation: u32) -> String {
    derived(NameRole::BusInbox {
        group: group.to_owned(),
        token,
        incarnation,
    })
}

/// The name of the mapping the member `from` spills its `spill`th
/// message of the group `group` to.
pub(crate) fn spill_name(group: &str, from: u32, spill: u64) -> String {
    derived(NameRole::BusSpill {
        group: group.to_owned(),
        from,
        spill,
    })
}

/// A listed OS name without the platform's prefix: the name that made it,
/// unless it was hashed.
pub(crate) fn unprefixed(os_name: &str) -> &str {
    os_name.strip_prefix(sys::OS_NAME_PREFIX).unwrap_or(os_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_named() {
        let cases = [
            ("", "empty"),
            ("a\\b", "backslash"),
            ("a/b", "slash"),
            ("a\0b", "NUL"),
            (".", "\".\""),
            ("..", "\"..\""),
        ];
        for (name, word) in cases {
            match Name::new(name) {
                Err(Error::InvalidName { rule, .. }) => assert!(rule.contains(word), "{rule}"),
                other => panic!("{name:?}: {other:?}"),
            }
        }
        assert!(Name::new(&"é".repeat(260)).is_ok());
        assert!(matches!(
            Name::new(&"é".repeat(261)),
            Err(Error::InvalidName { rule, .. }) if rule.contains("260")
        ));
        assert!(Name::new("...").is_ok());
    }

    #[test]
    fn short_names_are_prefixed() {
        assert_eq!(os_name_with("abc", "/", 256), "/abc");
        assert_eq!(os_name_with("abc", "", 256), "abc");
    }

    #[test]
    fn long_names_hash_stably_and_fit() {
        let long = "x".repeat(255);
        assert_eq!(os_name_with(&long, "/", 256), format!("/{long}"));
        let longer = "x".repeat(256);
        let hashed = os_name_with(&longer, "/", 256);
        assert_eq!(hashed, os_name_with(&longer, "/", 256));
        assert!(hashed.starts_with("/shmio-"));
        assert_eq!(hashed.len(), "/shmio-".len() + 64);
        let mac = os_name_with(&longer, "/", 31);
        assert_eq!(mac.len(), 31);
        assert!(hashed.starts_with(&mac));
        assert_ne!(os_name_with("y".repeat(40).as_str(), "/", 31), mac);
    }

    #[test]
    fn os_names_follow_the_platform_rule() {
        let short = Name::new("jobs").unwrap();
        assert_eq!(short.os_name(), format!("{}jobs", sys::OS_NAME_PREFIX));
        assert!(!short.is_hashed());
        // 520 bytes: hashed where OS names are shorter (Linux, macOS), as it is on Windows.
        let text = "é".repeat(MAX_NAME_CHARS);
        let long = Name::new(&text).unwrap();
        let too_long = sys::OS_NAME_PREFIX.len() + text.len() > sys::OS_NAME_MAX_BYTES;
        assert_eq!(long.is_hashed(), too_long);
        assert_eq!(long.os_name(), long.clone().os_name(), "stable");
        assert!(long.os_name().len() <= sys::OS_NAME_MAX_BYTES);
        let rest = &long.os_name()[sys::OS_NAME_PREFIX.len()..];
        if too_long {
            assert!(rest.starts_with(HASHED_NAME_TAG));
        } else {
            assert_eq!(rest, text);
        }
    }

    #[test]
    fn every_derived_name_parses_back_to_its_role() {
        let group = "g@x.mutex"; // a base may itself look derived
        let made = [
            (
                mutex_state_name("m"),
                NameRole::MutexState { mutex: "m".into() },
            ),
            (
                event_state_name("e"),
                NameRole::EventState { event: "e".into() },
            ),
            (
                lock_name("map"),
                NameRole::MappingLock {
                    mapping: "map".into(),
                },
            ),
            (
                group_lock_name(group),
                NameRole::GroupLock {
                    group: group.into(),
                },
            ),
            (
                inbox_name(group, 0xfff1, u32::MAX),
                NameRole::BusInbox {
                    group: group.into(),
                    token: 0xfff1,
                    incarnation: u32::MAX,
                },
            ),
            (
                spill_name(group, 0, u64::MAX),
                NameRole::BusSpill {
                    group: group.into(),
                    from: 0,
                    spill: u64::MAX,
                },
            ),
        ];
        for (name, role) in made {
            assert_eq!(NameRole::of(&name), role, "{name}");
            assert_eq!(role.name(), Some(name.clone()));
            assert_eq!(Name::derived(&name).unwrap().role(), role);
        }
        assert_eq!(inbox_name("g", 0x401, 2), "g@in.401.2");
        assert_eq!(spill_name("g", 0x401, 9), "g@big.401.9");
    }

    #[test]
    fn roles_nest_as_the_names_do() {
        let state = mutex_state_name(&lock_name("jobs"));
        assert_eq!(state, "jobs.mutex@mutex");
        let NameRole::MutexState { mutex } = NameRole::of(&state) else {
            panic!("{state}");
        };
        assert_eq!(
            NameRole::of(&mutex),
            NameRole::MappingLock {
                mapping: "jobs".into()
            }
        );
        let group_state = NameRole::of(&mutex_state_name(&group_lock_name("g@h")));
        assert_eq!(group_state.bus_group(), Some("g@h"));
        assert_eq!(NameRole::of(&inbox_name("g", 1, 2)).bus_group(), Some("g"));
        assert_eq!(NameRole::of(&mutex_state_name("m")).bus_group(), None);
        assert_eq!(NameRole::Object.bus_group(), None);
    }

    #[test]
    fn only_what_shmio_would_write_is_derived() {
        for name in [
            "jobs",
            "@mutex",
            ".mutex",
            "g@in.1",
            "g@in.1.2.3",
            "g@in.01.2",
            "g@in.A.2",
            "g@in.+1.2",
            "g@in.1.100000000",
            "g@big.x.1",
            "g@big.100000000.1",
            "g@other",
            "g@",
        ] {
            assert_eq!(NameRole::of(name), NameRole::Object, "{name}");
        }
        assert_eq!(
            NameRole::of("g@big.1.100000000"),
            NameRole::BusSpill {
                group: "g".into(),
                from: 1,
                spill: 0x1_0000_0000,
            }
        );
    }

    #[test]
    fn derived_names_have_room_for_a_suffix() {
        let base = "n".repeat(MAX_NAME_CHARS);
        assert!(Name::derived(&format!("{base}@mutex")).is_ok());
        assert!(Name::derived(&"n".repeat(MAX_NAME_CHARS + DERIVED_SUFFIX_ROOM + 1)).is_err());
        assert!(
            Name::derived("a/b@mutex").is_err(),
            "the other rules still hold"
        );
        assert!(Name::new(&format!("{base}@mutex")).is_err());
    }
}
