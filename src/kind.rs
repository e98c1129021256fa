//! [`Kind`]: what shmio made a named object for, told by the first 8
//! bytes of the object's header. A plain type, below the mapping layer, so
//! that a plain mapping's opener can refuse an object of shmio's.

/// What shmio made a named object for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The state of a [`crate::NamedMutex`].
    Mutex,
    /// The state of a [`crate::NamedEvent`].
    Event,
    /// A [`crate::Channel`].
    Channel,
    /// The registry of a [`crate::Bus`]'s group.
    Bus,
}

impl Kind {
    /// The first 8 bytes of an object of this kind.
    pub(crate) fn magic(self) -> u64 {
        u64::from_le_bytes(*match self {
            Kind::Mutex => b"shmioMTX",
            Kind::Event => b"shmioEVT",
            Kind::Channel => b"shmioCHN",
            Kind::Bus => b"shmioBUS",
        })
    }

    /// The kind whose objects start with `magic`, if any.
    pub(crate) fn from_magic(magic: u64) -> Option<Kind> {
        [Kind::Mutex, Kind::Event, Kind::Channel, Kind::Bus]
            .into_iter()
            .find(|kind| kind.magic() == magic)
    }

    /// What an object of this kind is called where a name is said to be
    /// taken by one ([`Error::AlreadyExists`]'s kind).
    pub(crate) fn noun(self) -> &'static str {
        match self {
            Kind::Mutex => "mutex",
            Kind::Event => "event",
            Kind::Channel => "channel",
            Kind::Bus => "bus",
        }
    }

    /// What [`Error::WrongKind`] says a plain mapping's opener found.
    pub(crate) fn not_a_mapping(self) -> &'static str {
        match self {
            Kind::Mutex => "a plain mapping (it is a shmio mutex's state)",
            Kind::Event => "a plain mapping (it is a shmio event's state)",
            Kind::Channel => "a plain mapping (it is a shmio channel: open it as one)",
            Kind::Bus => "a plain mapping (it is a shmio bus group's registry)",
        }
    }

    /// What an object of this kind is called in errors.
    pub(crate) fn described(self) -> &'static str {
        match self {
            Kind::Mutex => "a shmio mutex",
            Kind::Event => "a shmio event",
            Kind::Channel => "a shmio channel",
            Kind::Bus => "a shmio bus",
        }
    }
}
