//! The bus's async forms, on the caller's and the program listener's side:
//! a future waits for mail as a thread does (`calling.rs`), without ever
//! blocking its executor's thread.
//!
//! A thread waiting for its reply reads the inbox itself, blocking in the
//! channel, when no one else does, and otherwise sleeps on the mailroom's
//! condition variable until the reader files something. A future cannot
//! block: it takes the reader's turn only for a read of what is already
//! there ([`Inner::read_at_once`]); while the inbox is empty it sleeps on
//! the inbox's doorbell through the process's waiter (`waiter.rs`), and
//! while another thread reads it, it leaves its task's waker in the
//! mailroom, which every stir wakes. Either way it looks again at its
//! deadline and at each [`LIVENESS_INTERVAL`], as a thread does.
//!
//! **Cancel safety.** A call future dropped before its reply came stops
//! waiting for it (its request id is forgotten): the reply, when it comes,
//! is dropped by whichever reader finds it, as a reply to a call that
//! timed out is, and never handed to another call.

use std::future::poll_fn;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::channel::Channel;
use crate::error::{Error, Result};
use crate::waiter::{Pause, Step};

use super::calling::Clock;
use super::member::{Inner, Mailroom, LIVENESS_INTERVAL};
use super::registry::Registration;
use super::wire::Outcome;

/// Stops waiting for the reply to a request when dropped (a call future
/// cancelled), unless kept.
struct Waited<'a> {
    inner: &'a Inner,
    id: Option<u64>,
}

impl Waited<'_> {
    fn keep(mut self) -> u64 {
        self.id.take().unwrap_or_default()
    }
}

impl Drop for Waited<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.inner.mailroom().forget(id);
        }
    }
}

impl Inner {
    /// One poll of a future waiting for `want` to find what it waits for
    /// in the mailroom: reads what is already in `inbox` when no one else
    /// reads it, then sleeps on its doorbell (or, while another thread
    /// reads, on the mailroom). `Ready(None)` once `until` passes.
    pub(super) fn poll_mail<T>(
        &self,
        cx: &mut Context<'_>,
        pause: &mut Pause,
        inbox: &Channel,
        until: Option<Instant>,
        want: &mut impl FnMut(&mut Mailroom) -> Option<T>,
    ) -> Poll<Option<T>> {
        loop {
            let mut room = self.mailroom();
            if let Some(found) = want(&mut room) {
                pause.wake_up();
                return Poll::Ready(Some(found));
            }
            let now = Instant::now();
            if until.is_some_and(|until| now >= until) {
                return Poll::Ready(None);
            }
            if room.reading {
                // The reader files what it finds and stirs the mailroom.
                remember(&mut room, cx);
                return Poll::Pending;
            }
            let (mut room, message) = self.read_at_once(room);
            if let Some(message) = message {
                if let Some(request) = self.file(&mut room, message, false) {
                    drop(room);
                    self.serve(request);
                }
                continue;
            }
            drop(room);
            match pause.step(cx) {
                Step::Look => continue,
                Step::Pending => return Poll::Pending,
                Step::Sleep => {}
            }
            // Counted in before the last look: a message sent after it
            // rings the doorbell.
            let nap = inbox.recv_nap();
            if !inbox.is_empty() {
                continue;
            }
            let mut room = self.mailroom();
            if let Some(found) = want(&mut room) {
                return Poll::Ready(Some(found));
            }
            if room.reading {
                // A reader came meanwhile: it stirs the mailroom when done.
                remember(&mut room, cx);
                return Poll::Pending;
            }
            remember(&mut room, cx);
            drop(room);
            let timeout = until.map_or(Duration::MAX, |until| until.saturating_duration_since(now));
            return match pause.sleep_for(nap, timeout, cx) {
                Ok(()) => Poll::Pending,
                // The waiter could not be started: look again soon rather
                // than never (the deadline still holds).
                Err(_) => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            };
        }
    }

    /// [`send_request`](Inner::send_request) as a future: waits for room in
    /// the listener's inbox without blocking, looking at its deadline and
    /// whether the listener lives as a thread does.
    pub(super) async fn send_request_async(
        &self,
        listener: &Registration,
        message: &mut [u8],
        due: &Clock,
    ) -> Result<u64> {
        let (id, outbox, spilled) = self.address_request(listener, message, due)?;
        let message = spilled.as_deref().unwrap_or(message);
        self.mailroom().pending.push((id, None));
        let waited = Waited {
            inner: self,
            id: Some(id),
        };
        match outbox.try_send(message) {
            Ok(()) => return Ok(waited.keep()),
            Err(Error::Full) => {}
            Err(error) => return Err(error),
        }
        let mut pause = Pause::new();
        let mut next_look = Instant::now() + LIVENESS_INTERVAL;
        poll_fn(|cx| {
            let now = Instant::now();
            let deadline = due.from(now);
            let nap = deadline.min(next_look).saturating_duration_since(now);
            if let Poll::Ready(sent) = outbox.poll_send(cx, &mut pause, message, nap) {
                return Poll::Ready(sent);
            }
            if now >= next_look {
                if !self.is_alive(listener.token) {
                    self.bury(listener.token);
                    return Poll::Ready(Err(Error::ListenerDied { pid: listener.pid }));
                }
                next_look = now + LIVENESS_INTERVAL;
            }
            if now >= deadline {
                return Poll::Ready(Err(self.timed_out(&listener.command)));
            }
            Poll::Pending
        })
        .await?;
        Ok(waited.keep())
    }

    /// [`wait_reply`](Inner::wait_reply) as a future, `inbox` being this
    /// member's (held for the call).
    pub(super) async fn wait_reply_async(
        &self,
        id: u64,
        listener: &Registration,
        due: &Clock,
        inbox: &Channel,
    ) -> Result<Outcome> {
        let _waited = Waited {
            inner: self,
            id: Some(id),
        };
        let deadline = due.from(Instant::now());
        let mut next_look = Instant::now() + LIVENESS_INTERVAL;
        let mut pause = Pause::new();
        poll_fn(|cx| loop {
            let until = Some(deadline.min(next_look));
            let taken = self.poll_mail(cx, &mut pause, inbox, until, &mut |room| {
                room.take_reply(id)
            });
            match taken {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(outcome)) => return Poll::Ready(Ok(outcome)),
                Poll::Ready(None) => {}
            }
            let now = Instant::now();
            if now >= next_look {
                if !self.is_alive(listener.token) {
                    // It may have answered just before it died.
                    if let Some(outcome) = self.mailroom().take_reply(id) {
                        return Poll::Ready(Ok(outcome));
                    }
                    self.bury(listener.token);
                    return Poll::Ready(Err(Error::ListenerDied { pid: listener.pid }));
                }
                next_look = now + LIVENESS_INTERVAL;
                continue;
            }
            if now >= deadline {
                return Poll::Ready(Err(self.timed_out(&listener.command)));
            }
        })
        .await
    }
}

/// Leaves the task's waker in the mailroom (held), once.
fn remember(room: &mut Mailroom, cx: &Context<'_>) {
    if !room.futures.iter().any(|waker| waker.will_wake(cx.waker())) {
        room.futures.push(cx.waker().clone());
    }
}
