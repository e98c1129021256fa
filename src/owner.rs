//! Who owns a named object, and whose objects a caller agrees to open.
//!
//! A shared namespace (`/dev/shm`, the Windows object namespace) may hold
//! names made by anyone. Opening another user's object means trusting it:
//! its creator chose its contents, can change them at any time, and can hold
//! its lock forever. So shmio opens only the caller's own objects unless the
//! caller names the other owners it trusts ([`crate::MappingOptions::allow_owner`]
//! and the same option on every object's builder); anything else is
//! [`crate::Error::ForeignOwner`], which names the owner to trust.

use std::fmt;

/// The owner of a named object: a user id on Unix, a security identifier on
/// Windows.
///
/// ```
/// use shmio::Owner;
///
/// assert_eq!(Owner::Uid(65534).to_string(), "uid 65534");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Owner {
    /// A Unix user id.
    Uid(u32),
    /// A Windows security identifier, as text (`S-1-5-21-...`).
    Sid(String),
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Uid(uid) => write!(f, "uid {uid}"),
            Owner::Sid(sid) => write!(f, "{sid}"),
        }
    }
}

/// The builder methods every object's options share: `allow_owner` and
/// `allow_any_owner` over a `trust: Trust` field, and (with `permissions`)
/// `permissions(..)` over a `permissions: u32` field. `$what` names the
/// object in the docs ("mutex", "channel").
macro_rules! sharing_options {
    ($what:literal, permissions) => {
        #[doc = concat!(
                            "Permission bits of a new ", $what, " (Unix, with the umask applied; a \
             process must be able to read and write it to use it). Ignored on \
             Windows, where the default security descriptor decides. Default `0o600`."
                        )]
        pub fn permissions(&mut self, permissions: u32) -> &mut Self {
            self.permissions = permissions;
            self
        }

        $crate::owner::sharing_options!($what);
    };
    ($what:literal) => {
        #[doc = concat!(
                            "Also open an existing ", $what, " owned by `owner`. By default only \
             the caller's own are opened: another user's is \
             [`Error::ForeignOwner`](crate::Error::ForeignOwner), which names the \
             owner to trust. Its creator chose what is in it, can change it at \
             any time and can hold its lock forever: trust it as much as you \
             trust that user. Creating is not affected."
                        )]
        pub fn allow_owner(&mut self, owner: $crate::Owner) -> &mut Self {
            self.trust.allow(owner);
            self
        }

        #[doc = concat!(
                            "Open an existing ", $what, " whoever owns it (see `allow_owner`)."
                        )]
        pub fn allow_any_owner(&mut self, any: bool) -> &mut Self {
            self.trust.allow_any(any);
            self
        }
    };
}
pub(crate) use sharing_options;

/// The owners, besides the caller, whose objects an opener accepts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Trust {
    any: bool,
    owners: Vec<Owner>,
}

impl Trust {
    /// Only the caller's own objects.
    pub(crate) const OWN: Trust = Trust {
        any: false,
        owners: Vec::new(),
    };

    /// Also accepts `owner`'s objects.
    pub(crate) fn allow(&mut self, owner: Owner) {
        if !self.owners.contains(&owner) {
            self.owners.push(owner);
        }
    }

    /// Accepts (or stops accepting) every owner's objects.
    pub(crate) fn allow_any(&mut self, any: bool) {
        self.any = any;
    }

    /// Whether an object owned by `owner` (not the caller) may be opened.
    pub(crate) fn allows(&self, owner: &Owner) -> bool {
        self.any || self.owners.contains(owner)
    }

    /// This trust, also accepting `owner`.
    pub(crate) fn and(&self, owner: Option<Owner>) -> Trust {
        let mut trust = self.clone();
        if let Some(owner) = owner {
            trust.allow(owner);
        }
        trust
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_named_owners_are_trusted() {
        let mut trust = Trust::OWN;
        assert!(!trust.allows(&Owner::Uid(7)));
        trust.allow(Owner::Uid(7));
        trust.allow(Owner::Uid(7));
        assert!(trust.allows(&Owner::Uid(7)));
        assert!(!trust.allows(&Owner::Uid(8)));
        assert!(trust.and(Some(Owner::Uid(8))).allows(&Owner::Uid(8)));
        trust.allow_any(true);
        assert!(trust.allows(&Owner::Sid("S-1-5-18".into())));
    }
}
