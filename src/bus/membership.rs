//! Who is in a group: this member's standing (`here`), the listeners as
//! the registry has them (cached by its change count), the sweep that
//! prunes members whose seats are empty, and the burial of a dead member:
//! its registry entries, its inbox's name, the outboxes others held to it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::name::{inbox_name, Name, NameRole};
use crate::unpoisoned;

use super::member::{Inner, Listeners, RECLAIM_NAP, RECLAIM_TRIES};
use super::registry::Registration;

impl Inner {
    /// Nothing, in the process that joined; [`Error::Inherited`] in a
    /// forked child, whose copy of the member is its parent.
    #[inline]
    pub(super) fn here(&self) -> Result<()> {
        if self.participant.is_here() {
            return Ok(());
        }
        Err(Error::Inherited {
            kind: "bus",
            name: self.group.clone(),
        })
    }

    /// Every listener of the group, from the cache while the registry has
    /// not changed.
    pub(super) fn registrations(&self) -> Result<Arc<Vec<Registration>>> {
        let changes = self.registry.changes()?;
        let mut cache = unpoisoned::lock(&self.cache);
        if cache.0 == changes {
            return Ok(Arc::clone(&cache.1));
        }
        let (changes, found) = self.registry.registrations()?;
        *cache = (changes, Arc::new(found));
        let found = Arc::clone(&cache.1);
        drop(cache);
        self.let_go_of_departed(changes);
        Ok(found)
    }

    /// Members come and go with the registry's changes (`changes`, now):
    /// lets go of the inboxes of those gone. One that left took its
    /// inbox's name with it (the memory goes with its last holder: let go
    /// of it); one that died is buried. Reads only the member words of the
    /// inboxes held, without the group's lock.
    pub(super) fn let_go_of_departed(&self, changes: u64) {
        self.departures_seen.store(changes, Ordering::Relaxed);
        let held: Vec<u32> = unpoisoned::lock(&self.outboxes).keys().copied().collect();
        for token in held {
            if !self.registry.is_member(token) {
                unpoisoned::lock(&self.outboxes).remove(&token);
            } else if !self.is_alive(token) {
                self.bury(token);
            }
        }
    }

    /// Buries every member of the group that died unnoticed.
    pub(super) fn sweep(&self) {
        let Ok(members) = self.registry.members() else {
            return;
        };
        for token in members {
            if !self.is_alive(token) {
                self.bury(token);
            }
        }
    }

    /// The listeners of `command`, in the order they are asked.
    pub(super) fn listeners_of<'a>(&self, command: &'a str) -> Result<Listeners<'a>> {
        Ok(Listeners {
            all: self.registrations()?,
            command,
        })
    }

    /// Forgets a dead member: its inbox handle, its registry entries, and
    /// its inbox's name. A process that dies cannot remove the name it was
    /// the last to hold, and its seat is let go a moment before its inbox
    /// as it exits: so the name is reclaimed here, trying for a moment
    /// while the dying process still holds it. (One another member still
    /// holds goes when that member lets it go.)
    pub(super) fn bury(&self, token: u32) {
        let incarnation = self.registry.inbox_of(token);
        unpoisoned::lock(&self.outboxes).remove(&token);
        let _ = self.registry.prune(token);
        if let Some(incarnation) = incarnation.filter(|&incarnation| incarnation != 0) {
            self.bury_inbox(token, incarnation);
        }
    }

    /// Removes the name of the inbox `incarnation` of the dead member
    /// `token`, as [`bury`](Self::bury) says.
    pub(super) fn bury_inbox(&self, token: u32, incarnation: u32) {
        let Ok(name) = Name::new(&inbox_name(&self.group, token, incarnation)) else {
            return;
        };
        let os_name = name.os_name();
        for _ in 0..RECLAIM_TRIES {
            match crate::sys::reclaim_if_stale(&os_name, false, &self.trust) {
                Ok(Err(why)) if why == "a process holds it" => {
                    std::thread::sleep(RECLAIM_NAP);
                }
                _ => return,
            }
        }
    }

    /// Removes every inbox name of the group whose holders are all gone
    /// (members killed while others held their inboxes, those holders
    /// killed too): what the last member to leave does, so that nothing of
    /// the group remains. Where names cannot be listed (macOS) or go with
    /// their last handle (Windows), there is nothing to do.
    pub(super) fn reclaim_inboxes(&self) {
        let Ok(names) = crate::sys::list_named() else {
            return;
        };
        // An inbox's listed name says its group, unless the group's name is
        // so long that its names are hashed (those are not found here: they
        // go with their holders).
        let Ok(sample) = Name::new(&inbox_name(&self.group, 0, 0)) else {
            return;
        };
        if sample.is_hashed() {
            return;
        }
        for listed in names {
            let role = NameRole::of(crate::name::unprefixed(&listed.os_name));
            if matches!(role, NameRole::BusInbox { group, .. } if group == self.group) {
                let _ = crate::sys::reclaim_if_stale(&listed.os_name, false, &self.trust);
            }
        }
    }

    pub(super) fn is_alive(&self, token: u32) -> bool {
        self.registry
            .is_alive(token, self.participant.token(), &self.trust)
    }
}
