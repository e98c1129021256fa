//! A bus group's registry: who is a member, who listens to what, in the
//! order they registered. It is the object named after the group (kind
//! [`ObjectKind::Bus`]), changed only under the group's lock (the named mutex
//! `GROUP@bus`), and read by members into a cache that they refresh when
//! its change count moves.
//!
//! # Layout
//!
//! The registry's object, [`RegistryObject`]:
//!
//! | offset | field |
//! |---|---|
//! | 0 | `header: Header`, the object header (magic `shmioBUS`, ready, version) |
//! | 16 | `changes: u64`, moved on after every change (read without the lock) |
//! | 24 | `next_order: u64`, the next registration's number |
//! | 32 | spare |
//! | 64 | `generations: [u32; 1024]`, one per member seat (see `src/participants.rs`) |
//! | 4160 | `members: [Member; 1024]`, by seat: `token: u32` (0: none), `pid: u32`, `inbox: u32` (its inbox's incarnation, 0: none now), 4 bytes spare |
//! | 20544 | `listeners: [Entry; 1024]`: `token: u32` (0: free), `command_len: u32`, `order: u64`, `command: [u8; 112]` |
//! | 151616 | the end |
//!
//! A member is its seat's participant: the token in its member entry and
//! in its listener entries is its participant token, so whether it is alive
//! is its seat's answer, never its pid's (which is kept for people to read
//! only, and means something only in the member's own pid namespace). An
//! entry's token is written last when it is made and cleared first when it
//! goes, so a member that dies holding the lock leaves whole entries.
//!
//! A member's inbox comes and goes (see `mod.rs`): each one it makes is a
//! new *incarnation*, named after its token and that number, which the
//! member writes in its own entry (without the lock: the word is its own)
//! once the inbox exists and clears before its name goes. A sender reads
//! it to know which inbox is the member's now.

use std::mem::offset_of;
use std::sync::atomic::{AtomicU32, Ordering};

use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

use crate::error::{Error, Result};
use crate::mapping::{Mapping, Window};
use crate::object::{self, Header, ObjectKind, Sharing};
use crate::participants::{self, Participant, SEATS};
use crate::sync::{MutexGuard, NamedMutex};
use crate::sys::Disposition;

/// The registry's object, as the module docs' table has it: a description
/// of the bytes. Nothing reads or writes it whole: its words are reached as
/// atomics at their offsets, and the tables are copied out.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
struct RegistryObject {
    header: Header,
    changes: u64,
    next_order: u64,
    _pad_counts: [u8; 32],
    generations: [u32; SEATS as usize],
    members: [Member; SEATS as usize],
    listeners: [Entry; MAX_LISTENERS as usize],
}

/// A member's entry, by seat (see the module docs).
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone)]
#[repr(C)]
struct Member {
    /// The member's participant token; 0: none.
    token: u32,
    /// Its pid, in its own pid namespace (for people to read).
    pid: u32,
    /// Its inbox's incarnation; 0: none now.
    inbox: u32,
    _spare: [u8; 4],
}

/// A listener's entry (see the module docs).
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone)]
#[repr(C)]
struct Entry {
    /// The listening member's token; 0: the entry is free.
    token: u32,
    command_len: u32,
    order: u64,
    command: [u8; MAX_COMMAND],
}

const CHANGES: u64 = offset_of!(RegistryObject, changes) as u64;
const NEXT_ORDER: u64 = offset_of!(RegistryObject, next_order) as u64;
const GENERATIONS: u64 = offset_of!(RegistryObject, generations) as u64;
const MEMBERS: u64 = offset_of!(RegistryObject, members) as u64;
const MEMBER_LEN: u64 = size_of::<Member>() as u64;
const MEMBER_TOKEN: u64 = offset_of!(Member, token) as u64;
const MEMBER_PID: u64 = offset_of!(Member, pid) as u64;
const MEMBER_INBOX: u64 = offset_of!(Member, inbox) as u64;
const LISTENERS: u64 = offset_of!(RegistryObject, listeners) as u64;
const ENTRY_LEN: u64 = size_of::<Entry>() as u64;
const ENTRY_TOKEN: u64 = offset_of!(Entry, token) as u64;
const ENTRY_COMMAND_LEN: u64 = offset_of!(Entry, command_len) as u64;
const ENTRY_ORDER: u64 = offset_of!(Entry, order) as u64;
const ENTRY_COMMAND: u64 = offset_of!(Entry, command) as u64;
/// How many listeners a group can have at once.
pub(crate) const MAX_LISTENERS: u32 = 1024;
/// The longest command name, in bytes.
pub(crate) const MAX_COMMAND: usize = 112;
const SIZE: u64 = size_of::<RegistryObject>() as u64;

/// Where the member entry of `seat` is.
fn member_at(seat: u32) -> u64 {
    MEMBERS + MEMBER_LEN * u64::from(seat)
}

/// Where the listener entry `index` is.
fn entry_at(index: usize) -> u64 {
    LISTENERS + ENTRY_LEN * index as u64
}

/// One listener, as the registry has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Registration {
    /// The listening member's participant token.
    pub(crate) token: u32,
    /// Its pid, in its own pid namespace (for people to read).
    pub(crate) pid: u32,
    /// The registration's number: listeners of a command are asked in
    /// this order, and it names the listener in requests.
    pub(crate) order: u64,
    pub(crate) command: String,
}

/// The group's registry, as one member has it open.
pub(crate) struct Registry {
    map: Mapping,
    lock: NamedMutex,
    group: String,
    os_name: String,
}

impl Registry {
    /// Opens (or creates, as `how` says) the registry of `group`, and its
    /// lock: an opener creates nothing ([`Error::NotFound`] if either is
    /// missing).
    pub(crate) fn open(group: &str, how: Disposition, sharing: &Sharing<'_>) -> Result<Registry> {
        let (map, _) = object::make(group, how, SIZE, sharing, ObjectKind::Bus, &|_: &Window| {
            Ok(())
        })
        .map_err(|error| error.of(ObjectKind::Bus, group))?;
        if map.len() < SIZE {
            return Err(Error::Corrupt {
                offset: 0,
                reason: format!(
                    "bus {group:?}: its registry is {} bytes, this shmio's holds {SIZE}",
                    map.len()
                ),
            });
        }
        let mut lock = NamedMutex::options();
        lock.permissions(sharing.permissions)
            .set_trust(sharing.trust.clone())
            .parent_only();
        let lock_name = crate::name::group_lock_name(group);
        let lock = match how {
            Disposition::Open => lock.open(&lock_name)?,
            _ => lock.create_or_open(&lock_name)?,
        };
        let os_name = map.os_name().unwrap_or_default();
        Ok(Registry {
            map,
            lock,
            group: group.to_owned(),
            os_name,
        })
    }

    /// The group's name.
    pub(crate) fn group(&self) -> &str {
        &self.group
    }

    /// The members' seats' generations.
    fn generations(&self) -> &[AtomicU32] {
        // SAFETY: the table lies inside the mapping (checked in `open`:
        // every registry is at least SIZE bytes), 4-aligned in a page-aligned
        // mapping, and lives as long as `self.map`; AtomicU32 has the layout
        // of u32.
        unsafe {
            std::slice::from_raw_parts(
                self.map
                    .base()
                    .as_ptr()
                    .add(GENERATIONS as usize)
                    .cast::<AtomicU32>(),
                SEATS as usize,
            )
        }
    }

    /// Takes a seat and writes this process in as a member there (with no
    /// inbox yet); with the member it displaced, if the seat's last holder
    /// died unnoticed (its entries are written out here, since the seat
    /// and the pid shown for it are this process's now; its inbox, the
    /// incarnation given, is the caller's to bury).
    pub(crate) fn join(&self) -> Result<(Participant, Option<(u32, u32)>)> {
        let participant = Participant::join(
            self.generations(),
            self.map.object(),
            &self.os_name,
            &self.group,
        )?;
        let at = member_at(participant.seat());
        let _guard = self.lock()?;
        let displaced = match self.word(at + MEMBER_TOKEN)?.load(Ordering::Acquire) {
            0 => None,
            token if token == participant.token() => None,
            token => {
                let inbox = self.word(at + MEMBER_INBOX)?.load(Ordering::Acquire);
                self.remove_member(token)?;
                Some((token, inbox))
            }
        };
        self.map
            .write_value_at(at + MEMBER_PID, &std::process::id())?;
        self.word(at + MEMBER_INBOX)?.store(0, Ordering::Release);
        self.word(at + MEMBER_TOKEN)?
            .store(participant.token(), Ordering::Release);
        self.changed()?;
        Ok((participant, displaced))
    }

    /// Writes the member `token` out, with its listeners.
    pub(crate) fn leave(&self, token: u32) -> Result<()> {
        let _guard = self.lock()?;
        self.remove_member(token)?;
        self.changed()
    }

    /// Whether the member `token` is alive (`own`: this process's token,
    /// which its own seat may not show).
    pub(crate) fn is_alive(&self, token: u32, own: u32, trust: &crate::owner::Trust) -> bool {
        token == own
            || participants::is_alive(
                token,
                self.generations(),
                self.map.object(),
                &self.os_name,
                trust,
            )
    }

    /// Whether `token` is still written in as a member (read without the
    /// lock: a member's word is written whole).
    pub(crate) fn is_member(&self, token: u32) -> bool {
        let at = member_at(participants::seat_of(token));
        self.word(at + MEMBER_TOKEN)
            .is_ok_and(|word| word.load(Ordering::Acquire) == token)
    }

    /// The incarnation of the inbox of the member `token` (0: it has none
    /// now); `None` if `token` is no member (read without the lock).
    pub(crate) fn inbox_of(&self, token: u32) -> Option<u32> {
        let at = member_at(participants::seat_of(token));
        let member = self.word(at + MEMBER_TOKEN).ok()?;
        let inbox = self.word(at + MEMBER_INBOX).ok()?.load(Ordering::Acquire);
        // The seat's member after the read, to know the number was its.
        (member.load(Ordering::Acquire) == token).then_some(inbox)
    }

    /// Writes the incarnation of this member's (`token`'s) inbox in its
    /// entry: 0 before its name goes, the new number once it exists.
    pub(crate) fn set_inbox(&self, token: u32, incarnation: u32) -> Result<()> {
        let at = member_at(participants::seat_of(token));
        if self.word(at + MEMBER_TOKEN)?.load(Ordering::Acquire) == token {
            self.word(at + MEMBER_INBOX)?
                .store(incarnation, Ordering::Release);
        }
        Ok(())
    }

    /// Writes the dead member `token` out, with its listeners.
    pub(crate) fn prune(&self, token: u32) -> Result<()> {
        self.leave(token)
    }

    /// Registers a listener of `command` for the member `token`; its order.
    pub(crate) fn listen(&self, token: u32, command: &str) -> Result<u64> {
        check_command(command)?;
        let _guard = self.lock()?;
        let table = self.read_table()?;
        let free = table
            .iter()
            .position(|entry| entry.token == 0)
            .ok_or_else(|| Error::TooManyListeners {
                group: self.group.clone(),
                limit: MAX_LISTENERS,
            })?;
        let order = self
            .map
            .atomic_u64(NEXT_ORDER)?
            .fetch_add(1, Ordering::AcqRel)
            + 1;
        let at = entry_at(free);
        self.map
            .write_value_at(at + ENTRY_COMMAND_LEN, &(command.len() as u32))?;
        self.map.write_value_at(at + ENTRY_ORDER, &order)?;
        self.map.write_at(at + ENTRY_COMMAND, command.as_bytes())?;
        self.word(at + ENTRY_TOKEN)?.store(token, Ordering::Release);
        self.changed()?;
        Ok(order)
    }

    /// Unregisters the listener `order` of the member `token`.
    pub(crate) fn unlisten(&self, token: u32, order: u64) -> Result<()> {
        let _guard = self.lock()?;
        let table = self.read_table()?;
        for (i, entry) in table.iter().enumerate() {
            if entry.token == token && entry.order == order {
                self.word(entry_at(i) + ENTRY_TOKEN)?
                    .store(0, Ordering::Release);
            }
        }
        self.changed()
    }

    /// The registry's change count: it moves whenever a member or a
    /// listener comes or goes.
    pub(crate) fn changes(&self) -> Result<u64> {
        Ok(self.map.atomic_u64(CHANGES)?.load(Ordering::Acquire))
    }

    /// Every listener, in registration order, and the change count they
    /// are as of.
    pub(crate) fn registrations(&self) -> Result<(u64, Vec<Registration>)> {
        let _guard = self.lock()?;
        let changes = self.changes()?;
        let table = self.read_table()?;
        let members = self.read_members()?;
        let mut found = Vec::new();
        for entry in &table {
            if entry.token == 0 {
                continue;
            }
            let len = (entry.command_len as usize).min(MAX_COMMAND);
            let Ok(command) = std::str::from_utf8(&entry.command[..len]) else {
                continue;
            };
            let member = &members[participants::seat_of(entry.token) as usize];
            if member.token != entry.token {
                // A dead member's, whose seat is being taken again.
                continue;
            }
            found.push(Registration {
                token: entry.token,
                pid: member.pid,
                order: entry.order,
                command: command.to_owned(),
            });
        }
        found.sort_by_key(|registration| registration.order);
        Ok((changes, found))
    }

    /// The tokens of every member written in.
    pub(crate) fn members(&self) -> Result<Vec<u32>> {
        let _guard = self.lock()?;
        Ok(self
            .read_members()?
            .iter()
            .map(|member| member.token)
            .filter(|&token| token != 0)
            .collect())
    }

    fn remove_member(&self, token: u32) -> Result<()> {
        let table = self.read_table()?;
        for (i, entry) in table.iter().enumerate() {
            if entry.token == token {
                self.word(entry_at(i) + ENTRY_TOKEN)?
                    .store(0, Ordering::Release);
            }
        }
        let member = self.word(member_at(participants::seat_of(token)) + MEMBER_TOKEN)?;
        let _ = member.compare_exchange(token, 0, Ordering::AcqRel, Ordering::Relaxed);
        Ok(())
    }

    /// A copy of the listener entries (the callers hold the lock, under
    /// which alone entries change).
    fn read_table(&self) -> Result<Vec<Entry>> {
        let mut table = vec![Entry::new_zeroed(); MAX_LISTENERS as usize];
        self.map.read_at(LISTENERS, table.as_mut_bytes())?;
        Ok(table)
    }

    /// A copy of the member entries, by seat.
    fn read_members(&self) -> Result<Vec<Member>> {
        let mut members = vec![Member::new_zeroed(); SEATS as usize];
        self.map.read_at(MEMBERS, members.as_mut_bytes())?;
        Ok(members)
    }

    fn word(&self, offset: u64) -> Result<&AtomicU32> {
        self.map.atomic_u32(offset)
    }

    fn changed(&self) -> Result<()> {
        self.map.atomic_u64(CHANGES)?.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Takes the group's lock. A member that died holding it left whole
    /// entries (see the module docs), so its death changes nothing here.
    fn lock(&self) -> Result<MutexGuard<'_>> {
        let mut guard = self.lock.lock_to_repair()?;
        guard.mark_consistent();
        Ok(guard)
    }
}

/// A command name must be 1 to [`MAX_COMMAND`] bytes.
pub(crate) fn check_command(command: &str) -> Result<()> {
    if command.is_empty() || command.len() > MAX_COMMAND {
        return Err(Error::InvalidName {
            name: command.to_owned(),
            rule: "a bus command's name is 1 to 112 bytes",
        });
    }
    Ok(())
}

// The bytes of this layout version (`object::VERSION`; a number changed
// here changes them); the u64 counters and the tables are 8-aligned, as
// their atomics need.
const _: () = assert!(
    CHANGES == 16 && GENERATIONS == 64 && MEMBERS == 4160 && LISTENERS == 20544 && SIZE == 151616
);
const _: () = assert!(
    align_of::<RegistryObject>() == 8
        && CHANGES.is_multiple_of(8)
        && NEXT_ORDER.is_multiple_of(8)
        && LISTENERS.is_multiple_of(8)
        && ENTRY_LEN.is_multiple_of(8)
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc_tables::{self, layout};

    #[test]
    fn the_docs_table_is_the_struct() {
        let layouts = [
            layout!(RegistryObject {
                header,
                changes,
                next_order,
                _pad_counts,
                generations,
                members,
                listeners,
            }),
            layout!(Member {
                token,
                pid,
                inbox,
                _spare
            }),
            layout!(Entry {
                token,
                command_len,
                order,
                command
            }),
            doc_tables::header(),
        ];
        let rows = doc_tables::check(include_str!("registry.rs"), &["RegistryObject"], &layouts);
        assert_eq!(rows, 8);
    }
}
