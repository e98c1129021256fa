//! A call's way, on the caller's side: its deadline (read once the request
//! is on its way, and told to the listener), the request sent, and the
//! wait for its reply, which reads the inbox itself while no one else does
//! and notices a listener that died meanwhile.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::channel::Channel;
use crate::error::{Error, Result};
use crate::mapping::record;

use super::member::{Inner, INTERRUPT_INTERVAL, LIVENESS_INTERVAL, READ_SLICE};
use super::registry::Registration;
use super::wire::{self, Message, Outcome};

/// A call's clock: its deadline, `timeout` from the first time it is
/// needed (a call reads the clock once the request is on its way, while
/// the listener works, not before; one answered at once reads it only
/// there), and when it gives up as a listener reads it. Set once each, so
/// shared freely: a call future holds it across its awaits.
pub(super) struct Clock {
    pub(super) timeout: Duration,
    at: OnceLock<Instant>,
    /// [`gives_up_at`](Self::gives_up_at), once read.
    gives_up: OnceLock<u64>,
}

/// A blocking call's [`Clock`], and what it asks, every
/// [`INTERRUPT_INTERVAL`] while it waits, whether to give up (if it may be
/// interrupted).
pub(super) struct Deadline<'a> {
    clock: Clock,
    interrupted: Option<&'a dyn Fn() -> bool>,
}

impl std::ops::Deref for Deadline<'_> {
    type Target = Clock;

    fn deref(&self) -> &Clock {
        &self.clock
    }
}

impl Clock {
    pub(super) fn after(timeout: Duration) -> Clock {
        Clock {
            timeout,
            at: OnceLock::new(),
            gives_up: OnceLock::new(),
        }
    }

    /// When the caller gives up, as a listener reads it (ms on the host's
    /// monotonic clock, see `wire::Request::due`): read once, at the first
    /// request, and no earlier than the deadline itself (`timeout` from
    /// now), so a listener never skips a request whose caller still waits.
    pub(super) fn gives_up_at(&self) -> u64 {
        *self
            .gives_up
            .get_or_init(|| match crate::sys::monotonic_ms() {
                0 => 0,
                // A millisecond over, for the rounding.
                now => now
                    .saturating_add(self.timeout.as_millis().try_into().unwrap_or(u64::MAX))
                    .saturating_add(1),
            })
    }

    /// The deadline, `timeout` after `now` if not yet set.
    pub(super) fn from(&self, now: Instant) -> Instant {
        *self
            .at
            .get_or_init(|| crate::deadline::later(now, self.timeout))
    }
}

impl<'a> Deadline<'a> {
    pub(super) fn after(timeout: Duration) -> Deadline<'static> {
        Deadline {
            clock: Clock::after(timeout),
            interrupted: None,
        }
    }

    pub(super) fn interruptible(
        timeout: Duration,
        interrupted: &'a dyn Fn() -> bool,
    ) -> Deadline<'a> {
        Deadline {
            clock: Clock::after(timeout),
            interrupted: Some(interrupted),
        }
    }

    /// How long a wait may last before it asks whether to give up.
    pub(super) fn slice(&self, longest: Duration) -> Duration {
        match self.interrupted {
            Some(_) => longest.min(INTERRUPT_INTERVAL),
            None => longest,
        }
    }

    /// Whether to give up now.
    pub(super) fn is_interrupted(&self) -> bool {
        self.interrupted.is_some_and(|interrupted| interrupted())
    }
}

/// What a listener's outcome means to its caller: its reply, `None` if it
/// passed (or was gone), [`Error::Handler`] if it failed.
pub(super) fn answer_of<R: DeserializeOwned>(outcome: Outcome, pid: u32) -> Result<Option<R>> {
    match outcome {
        Outcome::Reply(json) => record::decode(0, json).map(Some),
        Outcome::Pass | Outcome::Gone => Ok(None),
        Outcome::Failed(message) => Err(Error::Handler { pid, message }),
    }
}

impl Inner {
    /// The error of a call of `command` that ran out of time: it names
    /// the group and the command, as `GROUP/COMMAND`.
    pub(super) fn timed_out(&self, command: &str) -> Error {
        Error::TimedOut {
            name: format!("{}/{command}", self.group),
        }
    }

    /// The error of a call its caller interrupted.
    pub(super) fn interrupted(&self) -> Error {
        Error::Interrupted {
            name: self.group.clone(),
        }
    }

    /// Sends the request `message` (a [`wire::request_body`]) to
    /// `listener`, waiting for room until `deadline` (while the listener
    /// lives); the request's id, whose reply is then awaited.
    pub(super) fn send_request(
        &self,
        listener: &Registration,
        message: &mut [u8],
        due: &Deadline<'_>,
    ) -> Result<u64> {
        let (id, outbox, spilled) = self.address_request(listener, message, due)?;
        let message = spilled.as_deref().unwrap_or(message);
        self.mailroom().pending.push((id, None));
        // Room at once, the common case, needs no clock.
        match outbox.try_send(message) {
            Ok(()) => return Ok(id),
            Err(Error::Full) => {}
            Err(error) => {
                self.mailroom().forget(id);
                return Err(error);
            }
        }
        loop {
            let now = Instant::now();
            let deadline = due.from(now);
            let slice = deadline
                .saturating_duration_since(now)
                .min(due.slice(LIVENESS_INTERVAL));
            match outbox.send_timeout(message, slice) {
                Ok(()) => return Ok(id),
                Err(Error::TimedOut { .. }) => {}
                Err(error) => {
                    self.mailroom().forget(id);
                    return Err(error);
                }
            }
            if due.is_interrupted() {
                self.mailroom().forget(id);
                return Err(self.interrupted());
            }
            if !self.is_alive(listener.token) {
                self.mailroom().forget(id);
                self.bury(listener.token);
                return Err(Error::ListenerDied { pid: listener.pid });
            }
            if Instant::now() >= deadline {
                self.mailroom().forget(id);
                return Err(self.timed_out(&listener.command));
            }
        }
    }

    /// Gives the request `message` a new id and addresses it to
    /// `listener` (see `wire::address`): the id, the listener's inbox, and
    /// what to send in the message's stead if it had to be spilled.
    /// [`Error::ListenerDied`] (and the listener buried) if it has no inbox.
    pub(super) fn address_request(
        &self,
        listener: &Registration,
        message: &mut [u8],
        due: &Clock,
    ) -> Result<(u64, Arc<Channel>, Option<Vec<u8>>)> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let token = self.participant.token();
        wire::address(message, id, token, listener.order, due.gives_up_at());
        let outbox = match self.outbox(listener.token) {
            Ok(outbox) => outbox,
            Err(Error::NotFound { .. }) => {
                self.bury(listener.token);
                return Err(Error::ListenerDied { pid: listener.pid });
            }
            Err(error) => return Err(error),
        };
        let spilled = self.spill(&outbox, message, || due.from(Instant::now()))?;
        Ok((id, outbox, spilled))
    }

    /// Waits until `deadline` for the reply to request `id`, sent to
    /// `listener`: reading the inbox itself when no one else does, and
    /// looking every [`LIVENESS_INTERVAL`] whether the listener still lives.
    /// The reply is forgotten on every way out, under the mailroom lock
    /// the way out holds anyway.
    pub(super) fn wait_reply(
        &self,
        id: u64,
        listener: &Registration,
        due: &Deadline<'_>,
    ) -> Result<Outcome> {
        let dispatching = self.is_dispatch_thread();
        let mut now = Instant::now();
        let deadline = due.from(now);
        let mut next_look = now + due.slice(LIVENESS_INTERVAL);
        let mut room = self.mailroom();
        let mut first = true;
        loop {
            if let Some(outcome) = room.take_reply(id) {
                room.forget(id);
                return Ok(outcome);
            }
            if !std::mem::take(&mut first) {
                now = Instant::now();
            }
            if now >= next_look {
                drop(room);
                // Asked without the mailroom held: the question may wait
                // on a lock of the caller's own (an interpreter's).
                if due.is_interrupted() {
                    self.mailroom().forget(id);
                    return Err(self.interrupted());
                }
                if !self.is_alive(listener.token) {
                    // It may have answered just before it died.
                    let answered = {
                        let mut room = self.mailroom();
                        let answered = room.take_reply(id);
                        room.forget(id);
                        answered
                    };
                    if let Some(outcome) = answered {
                        return Ok(outcome);
                    }
                    self.bury(listener.token);
                    return Err(Error::ListenerDied { pid: listener.pid });
                }
                next_look = now + due.slice(LIVENESS_INTERVAL);
                room = self.mailroom();
                continue;
            }
            if now >= deadline {
                room.forget(id);
                return Err(self.timed_out(&listener.command));
            }
            let wait = (deadline.min(next_look) - now).min(READ_SLICE);
            if dispatching {
                if let Some(request) = room.queued.pop_front() {
                    // The mailroom is not held while a request runs: its
                    // handler may call, and read or queue, again.
                    drop(room);
                    self.serve(request);
                    room = self.mailroom();
                    continue;
                }
            }
            if room.reading {
                room = self.doze(room, wait);
                continue;
            }
            let (back, message) = self.read_as_reader(room, || now + wait);
            room = back;
            let serve_now = match message {
                Some(Message::Reply {
                    id: got, outcome, ..
                }) if got == id => {
                    room.forget(id);
                    return Ok(outcome);
                }
                Some(message) => self.file(&mut room, message, dispatching),
                None => None,
            };
            if let Some(request) = serve_now {
                drop(room);
                self.serve(request);
                room = self.mailroom();
            }
        }
    }
}
