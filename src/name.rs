//! Names of shared objects: the validation rules and how a name becomes the
//! name the OS sees.
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

/// The name of the lock of the mapping `name` (aardio's `process.command`
/// convention, `NAME.mutex`): what `Mapping::lock` takes.
pub(crate) fn lock_name(name: &str) -> String {
    format!("{name}.mutex")
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
