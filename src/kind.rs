//! [`ObjectKind`]: what a named object is, as the errors, the inventory
//! (`ls`, `stat`, `gc`) and the bus say it. A shmio object tells its kind
//! by the first 8 bytes of its header (its magic); anything else is a
//! [`ObjectKind::Mapping`]. A plain type, below the mapping layer, so that
//! a plain mapping's opener can refuse an object of shmio's.
//!
//! What an object is *for* within another (a bus member's inbox is a
//! channel, a spilled message a mapping, a group's lock a mutex) is told by
//! its name, not its bytes: that is [`crate::NameRole`].

use std::fmt;

/// What a named object is: what it can be opened as.
///
/// ```
/// use shmio::ObjectKind;
///
/// assert_eq!(ObjectKind::Channel.to_string(), "channel");
/// assert_eq!(ObjectKind::Mapping.as_str(), "mapping");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ObjectKind {
    /// A mapping: plain memory (or an object another program made, which
    /// carries no magic of shmio's). A bus's spilled message is one.
    Mapping,
    /// The state of a [`crate::NamedMutex`] (a mapping's lock and a bus
    /// group's lock are mutexes).
    Mutex,
    /// The state of a [`crate::NamedEvent`].
    Event,
    /// A [`crate::Channel`] (a bus member's inbox is one too).
    Channel,
    /// The registry of a [`crate::Bus`]'s group.
    Bus,
    /// A [`crate::Topic`].
    Topic,
}

/// Every kind whose objects carry a magic: the ones shmio lays out itself.
const WITH_MAGIC: [ObjectKind; 5] = [
    ObjectKind::Mutex,
    ObjectKind::Event,
    ObjectKind::Channel,
    ObjectKind::Bus,
    ObjectKind::Topic,
];

impl ObjectKind {
    /// A short lowercase word for it ("mapping", "mutex", "event",
    /// "channel", "bus", "topic"): what the CLI and Python show, and what errors
    /// call it ([`crate::Error::AlreadyExists`]).
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Mapping => "mapping",
            ObjectKind::Mutex => "mutex",
            ObjectKind::Event => "event",
            ObjectKind::Channel => "channel",
            ObjectKind::Bus => "bus",
            ObjectKind::Topic => "topic",
        }
    }

    /// The first 8 bytes of an object of this kind. A mapping has none of
    /// its own (its bytes are its user's): 0, which no shmio kind uses.
    pub(crate) fn magic(self) -> u64 {
        u64::from_le_bytes(*match self {
            ObjectKind::Mapping => return 0,
            ObjectKind::Mutex => b"shmioMTX",
            ObjectKind::Event => b"shmioEVT",
            ObjectKind::Channel => b"shmioCHN",
            ObjectKind::Bus => b"shmioBUS",
            ObjectKind::Topic => b"shmioTOP",
        })
    }

    /// The shmio kind whose objects start with `magic`, if any.
    pub(crate) fn from_magic(magic: u64) -> Option<ObjectKind> {
        WITH_MAGIC.into_iter().find(|kind| kind.magic() == magic)
    }

    /// What an object whose first 8 bytes are `magic` is: a shmio kind, or
    /// else a mapping.
    pub(crate) fn of_magic(magic: u64) -> ObjectKind {
        ObjectKind::from_magic(magic).unwrap_or(ObjectKind::Mapping)
    }

    /// What an object of this kind is called in errors
    /// ([`Error::WrongKind`](crate::Error::WrongKind)'s `expected`).
    pub(crate) fn described(self) -> &'static str {
        match self {
            ObjectKind::Mapping => "a plain mapping",
            ObjectKind::Mutex => "a shmio mutex",
            ObjectKind::Event => "a shmio event",
            ObjectKind::Channel => "a shmio channel",
            ObjectKind::Bus => "a shmio bus",
            ObjectKind::Topic => "a shmio topic",
        }
    }

    /// What [`Error::WrongKind`](crate::Error::WrongKind) adds when it
    /// found an object of this kind where another was asked for: what it
    /// is, and what to do with it.
    pub(crate) fn instead(self) -> &'static str {
        match self {
            ObjectKind::Mapping => "it is a plain mapping",
            ObjectKind::Mutex => "it is a shmio mutex's state",
            ObjectKind::Event => "it is a shmio event's state",
            ObjectKind::Channel => "it is a shmio channel: open it as one",
            ObjectKind::Bus => "it is a shmio bus group's registry",
            ObjectKind::Topic => "it is a shmio topic: open it as one",
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_round_trips_and_a_mapping_has_none() {
        for kind in WITH_MAGIC {
            assert_eq!(ObjectKind::from_magic(kind.magic()), Some(kind));
            assert_eq!(ObjectKind::of_magic(kind.magic()), kind);
        }
        assert_eq!(ObjectKind::from_magic(0), None);
        assert_eq!(ObjectKind::of_magic(0), ObjectKind::Mapping);
        assert_eq!(
            ObjectKind::of_magic(u64::from_le_bytes(*b"whatever")),
            ObjectKind::Mapping
        );
    }

    #[test]
    fn shown_as_the_words_the_cli_and_python_use() {
        let words: Vec<String> = [ObjectKind::Mapping]
            .into_iter()
            .chain(WITH_MAGIC)
            .map(|kind| kind.to_string())
            .collect();
        assert_eq!(
            words,
            ["mapping", "mutex", "event", "channel", "bus", "topic"]
        );
    }
}
