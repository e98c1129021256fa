//! What comes into a member and goes out of it: its inbox (made when
//! something can come, let go when idle), the outboxes it holds to others',
//! the one reader of the inbox at a time and how it files what it finds
//! (a reply for the thread waiting on it, a request for the dispatch thread
//! or the program), and messages too large for an inbox, spilled to
//! mappings of their own.

use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard as StdGuard, Weak};
use std::time::{Duration, Instant};

use crate::channel::Channel;
use crate::error::{Error, Result};
use crate::kind::ObjectKind;
use crate::name::inbox_name;
use crate::unpoisoned;

use super::member::{
    Answerer, Inner, Mailroom, Spill, INBOX_IDLE, JOIN_TRIES, LIVENESS_INTERVAL, REPLY_PATIENCE,
};
use super::wire::{self, Message};

impl Inner {
    /// The inbox the member `token` has now, opened once for each of its
    /// incarnations; [`Error::NotFound`] if it has none (it only calls and
    /// is idle, or it left).
    pub(super) fn outbox(&self, token: u32) -> Result<Arc<Channel>> {
        let incarnation = match self.registry.inbox_of(token) {
            Some(incarnation) if incarnation != 0 => incarnation,
            _ => {
                return Err(Error::NotFound {
                    kind: Some(ObjectKind::Channel),
                    name: inbox_name(&self.group, token, 0),
                })
            }
        };
        let mut outboxes = unpoisoned::lock(&self.outboxes);
        if let Some((held, outbox)) = outboxes.get(&token) {
            if *held == incarnation {
                return Ok(Arc::clone(outbox));
            }
        }
        // The name may be of a newer incarnation by now: the next use
        // opens it again, under the newer number.
        // A member's own liveness rules apply here, never a channel's
        // disconnection: an inbox is often alone while it waits.
        let outbox = Arc::new(
            Channel::options()
                .permissions(self.permissions)
                .set_trust(self.trust.clone())
                .never_disconnected()
                .open(&inbox_name(&self.group, token, incarnation))?,
        );
        outboxes.insert(token, (incarnation, Arc::clone(&outbox)));
        Ok(outbox)
    }

    /// Makes this member's inbox, as a new incarnation written in its
    /// registry entry. A name still held by a process of an earlier group
    /// of this name (its registry gone, so its tokens dealt again), or
    /// taken by something else, is skipped for the next number: an inbox
    /// is never shared.
    pub(super) fn make_inbox(&self, room: &mut Mailroom) -> Result<Channel> {
        let token = self.participant.token();
        let mut tries = 0;
        loop {
            room.incarnation = room.incarnation.wrapping_add(1).max(1);
            let made = Channel::options()
                .geometry(self.geometry)
                .permissions(self.permissions)
                .set_trust(self.trust.clone())
                .never_disconnected()
                .create(&inbox_name(&self.group, token, room.incarnation));
            match made {
                Ok(inbox) => {
                    self.registry.set_inbox(token, room.incarnation)?;
                    return Ok(inbox);
                }
                Err(Error::AlreadyExists { .. } | Error::WrongKind { .. })
                    if tries < JOIN_TRIES =>
                {
                    tries += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The keeper of the inbox of a member that only calls: lets go of it
    /// once a whole [`INBOX_IDLE`] went by with no call, none waiting and
    /// no one reading it. Ends then, when the member listens (its inbox
    /// stays), or when it is gone.
    pub(super) fn keep_inbox(member: &Weak<Inner>) {
        let mut calls_seen = None;
        loop {
            std::thread::sleep(INBOX_IDLE);
            let Some(inner) = member.upgrade() else {
                return;
            };
            if inner.leaving.load(Ordering::SeqCst) {
                return;
            }
            let mut room = inner.mailroom();
            let Some(inbox) = &room.inbox else {
                return;
            };
            if room.permanent {
                return;
            }
            let idle = calls_seen == Some(room.calls)
                && room.pending.is_empty()
                && !room.reading
                && Arc::strong_count(inbox) == 1;
            if idle {
                let inbox = room.inbox.take();
                drop(room);
                // Senders read the registry's word before they open the
                // name: the word goes first.
                let _ = inner.registry.set_inbox(inner.participant.token(), 0);
                if let Some(inbox) = inbox {
                    inbox.remove_name();
                }
                return;
            }
            calls_seen = Some(room.calls);
        }
    }

    pub(super) fn mailroom(&self) -> StdGuard<'_, Mailroom> {
        unpoisoned::lock(&self.mailroom)
    }

    /// Sleeps on [`stirred`](Inner::stirred) for at most `wait`.
    pub(super) fn doze<'a>(
        &self,
        mut room: StdGuard<'a, Mailroom>,
        wait: Duration,
    ) -> StdGuard<'a, Mailroom> {
        room.sleepers += 1;
        let mut room = unpoisoned::wait_timeout(&self.stirred, room, wait);
        room.sleepers -= 1;
        room
    }

    /// Wakes whoever sleeps on the mailroom (held), after a change to it:
    /// threads on [`stirred`](Inner::stirred), and futures.
    pub(super) fn stir(&self, room: &mut Mailroom) {
        if room.sleepers > 0 {
            self.stirred.notify_all();
        }
        for future in room.futures.drain(..) {
            future.wake();
        }
    }

    /// Reads one message from the inbox as its reader, waiting at most
    /// `wait` with the mailroom let go; the mailroom again, with the inbox
    /// free for the next reader (who is woken).
    pub(super) fn read_as_reader<'a>(
        &'a self,
        room: StdGuard<'a, Mailroom>,
        until: impl FnOnce() -> Instant,
    ) -> (StdGuard<'a, Mailroom>, Option<Message>) {
        if room.inbox.is_none() {
            // Nothing can come (no reader runs without an inbox held).
            let wait = until().saturating_duration_since(Instant::now());
            return (self.doze(room, wait), None);
        }
        self.take_turn(room, |inbox, buffer| self.read(inbox, buffer, until))
    }

    /// As [`read_as_reader`](Self::read_as_reader), without waiting: a
    /// message already in the inbox, if any (a future's turn: see
    /// `awaiting.rs`).
    pub(super) fn read_at_once<'a>(
        &'a self,
        room: StdGuard<'a, Mailroom>,
    ) -> (StdGuard<'a, Mailroom>, Option<Message>) {
        self.take_turn(room, |inbox, buffer| match inbox.try_recv_into(buffer) {
            Ok(()) => self.decode(buffer),
            Err(_) => None,
        })
    }

    /// A turn as the inbox's reader: `read` with the mailroom let go, then
    /// the mailroom again, with the inbox free for the next reader (who is
    /// woken).
    fn take_turn<'a>(
        &'a self,
        mut room: StdGuard<'a, Mailroom>,
        read: impl FnOnce(&Channel, &mut Vec<u8>) -> Option<Message>,
    ) -> (StdGuard<'a, Mailroom>, Option<Message>) {
        let Some(inbox) = room.inbox.clone() else {
            return (room, None);
        };
        room.reading = true;
        let mut buffer = std::mem::take(&mut room.buffer);
        drop(room);
        let message = read(&inbox, &mut buffer);
        drop(inbox);
        let mut room = self.mailroom();
        room.reading = false;
        room.buffer = buffer;
        self.stir(&mut room);
        (room, message)
    }

    /// Reads one message from the inbox into `buffer`, waiting until
    /// `until()` if there is none yet (the clock is read only then); `None`
    /// if none came (or it was not a message any member sends).
    pub(super) fn read(
        &self,
        inbox: &Channel,
        buffer: &mut Vec<u8>,
        until: impl FnOnce() -> Instant,
    ) -> Option<Message> {
        match inbox.try_recv_into(buffer) {
            Ok(()) => {}
            Err(Error::Empty) => inbox.recv_into_until(buffer, until()).ok()?,
            Err(_) => return None,
        }
        self.decode(buffer)
    }

    /// The message read into `buffer` (brought in from its spill if it was
    /// spilled); `None` if it is not a message any member sends.
    fn decode(&self, buffer: &mut Vec<u8>) -> Option<Message> {
        match wire::decode(buffer)? {
            Message::Spilled { from, spill, len } => {
                self.unspill(buffer, from, spill, len)?;
                wire::decode(buffer).filter(|message| !matches!(message, Message::Spilled { .. }))
            }
            message => Some(message),
        }
    }

    /// Puts `message`, bound for `outbox`, in a mapping of its own if the
    /// inbox's slots cannot take it: what to send instead (`None`: the
    /// message itself). The mapping is held until the receiver takes it
    /// or `until()` passes. Its memory is reserved now: a full `/dev/shm`
    /// is [`Error::NoSpace`] here.
    pub(super) fn spill(
        &self,
        outbox: &Channel,
        message: &[u8],
        until: impl FnOnce() -> Instant,
    ) -> Result<Option<Vec<u8>>> {
        if message.len() <= outbox.geometry().max_message_size as usize {
            return Ok(None);
        }
        self.prune_spills();
        let from = self.participant.token();
        let len = message.len() as u64;
        let mut options = crate::Mapping::options();
        options
            .size(wire::SPILL_HEADER + len)
            .permissions(self.permissions)
            .set_trust(self.trust.clone());
        // A name taken by something else (a squatter's object or FIFO, one
        // left from an earlier group of this name) is skipped for the next.
        let mut tries = 0;
        let (spill, map) = loop {
            let spill = self.next_spill.fetch_add(1, Ordering::Relaxed);
            match options.create(&wire::spill_name(&self.group, from, spill)) {
                Ok(map) => break (spill, map),
                Err(Error::AlreadyExists { .. } | Error::WrongKind { .. })
                    if tries < JOIN_TRIES =>
                {
                    tries += 1
                }
                Err(error) => return Err(error),
            }
        };
        map.write_at(wire::SPILL_HEADER, message)?;
        let mut spills = unpoisoned::lock(&self.spills);
        spills.push(Spill {
            map,
            until: until(),
        });
        self.spilling.store(spills.len(), Ordering::Relaxed);
        Ok(Some(wire::spilled(from, spill, len)))
    }

    /// Lets go of the spilled messages their receivers took, and of those
    /// no one took in time.
    pub(super) fn prune_spills(&self) {
        if self.spilling.load(Ordering::Relaxed) == 0 {
            return;
        }
        let now = Instant::now();
        let mut spills = unpoisoned::lock(&self.spills);
        spills.retain(|spill| now < spill.until && !spill.taken());
        self.spilling.store(spills.len(), Ordering::Relaxed);
    }

    /// Reads the message of `len` bytes that the member `from` spilled
    /// (its `spill`th) into `buffer`, says it is taken, and removes its
    /// name; `None` if it is not there (its sender gave up on it) or not
    /// what it says.
    pub(super) fn unspill(
        &self,
        buffer: &mut Vec<u8>,
        from: u32,
        spill: u64,
        len: u64,
    ) -> Option<()> {
        let map = crate::Mapping::options()
            .set_trust(self.trust.clone())
            .open(&wire::spill_name(&self.group, from, spill))
            .ok()?;
        if map.len() < wire::SPILL_HEADER.checked_add(len)? {
            return None;
        }
        buffer.clear();
        buffer.resize(usize::try_from(len).ok()?, 0);
        map.read_at(wire::SPILL_HEADER, buffer).ok()?;
        map.atomic_u32(wire::SPILL_TAKEN)
            .ok()?
            .store(1, Ordering::Release);
        map.remove_name();
        Some(())
    }

    /// Files a message read from the inbox for whoever it is for, waking
    /// them; a request to run at once (on the dispatch thread, or when no
    /// handler is left here) is returned instead.
    pub(super) fn file(
        &self,
        room: &mut Mailroom,
        message: Message,
        dispatching: bool,
    ) -> Option<wire::Request> {
        match message {
            Message::Reply { id, outcome, .. } => {
                // A reply no one waits for any more (its call timed out) is dropped.
                if let Some(slot) = room.slot(id) {
                    *slot = Some(outcome);
                    self.stir(room);
                }
                None
            }
            // The dispatch thread serves what it reads (`serve` hands a
            // request for the program over to it).
            Message::Request(request) | Message::Post(request) if dispatching => Some(request),
            Message::Request(request) | Message::Post(request) => {
                let answerer = unpoisoned::lock(&self.handlers)
                    .get(&request.listener)
                    .cloned();
                match answerer {
                    Some(Answerer::Program) => room.polled.push_back(request),
                    // Handlers exist only with a dispatch thread to run them.
                    Some(Answerer::Handler(_)) => room.queued.push_back(request),
                    Some(Answerer::OwnThread(thread)) => {
                        if let Err(std::sync::mpsc::SendError(request)) = thread.send(request) {
                            return Some(request);
                        }
                    }
                    // With no listener here (a caller's stale view of the
                    // registry) the answer is "gone", at once.
                    None => return Some(request),
                }
                self.stir(room);
                None
            }
            Message::Stop | Message::Spilled { .. } => None,
        }
    }

    /// Sends a reply to the member `token`, for at most [`REPLY_PATIENCE`]
    /// while it lives; a reply it cannot take is dropped (its call times
    /// out, as a call to a stuck listener would).
    pub(super) fn deliver(&self, token: u32, outbox: &Channel, reply: &[u8]) {
        // Room at once, the common case, needs no clock.
        match outbox.try_send(reply) {
            Ok(()) => return,
            Err(Error::Full) => {}
            Err(_) => {
                self.bury(token);
                return;
            }
        }
        let deadline = Instant::now() + REPLY_PATIENCE;
        while Instant::now() < deadline {
            match outbox.send_timeout(reply, LIVENESS_INTERVAL) {
                Ok(()) => return,
                Err(Error::TimedOut { .. }) if self.is_alive(token) => {
                    if token == self.participant.token() && self.is_dispatch_thread() {
                        // Our own inbox is full, and we may be the one to
                        // read it: make room by running what is there.
                        let room = self.mailroom();
                        if !room.reading {
                            let (mut room, message) = self.read_as_reader(room, Instant::now);
                            let now = message.and_then(|m| self.file(&mut room, m, true));
                            drop(room);
                            if let Some(request) = now {
                                self.serve(request);
                            }
                        }
                    }
                }
                Err(_) => {
                    self.bury(token);
                    return;
                }
            }
        }
    }
}
