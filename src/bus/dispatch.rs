//! The dispatch thread and the handlers it runs: what answers a listener's
//! requests in this process (a handler, a thread of its own, or the
//! program), a handler's result as a reply, a panic as a failure, and the
//! answer sent back, with the requests a caller found for it passed on.

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Instant;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::mapping::record;
use crate::unpoisoned;

use super::member::{Answerer, Handler, Inner, READ_SLICE, SPILL_PATIENCE};
use super::wire::{self, Outcome};

thread_local! {
    /// The member whose dispatch thread this is (its `Inner`'s address), if any.
    pub(super) static DISPATCHING: Cell<usize> = const { Cell::new(0) };
}

/// What a handler given to [`Bus::listen`](crate::Bus::listen) returns: an `Option` (the
/// reply, or `None` to pass the call on) or a `Result` of one, whose error
/// (any `Display`) is the caller's [`Error::Handler`](crate::Error::Handler).
pub trait HandlerResult {
    /// The reply as JSON (`None`: a pass), or the handler's error as text.
    fn into_reply(self) -> std::result::Result<Option<Vec<u8>>, String>;
}

impl<R: Serialize> HandlerResult for Option<R> {
    fn into_reply(self) -> std::result::Result<Option<Vec<u8>>, String> {
        self.map(|reply| {
            record::encode_payload(&reply)
                .map_err(|error| format!("the reply does not encode: {error}"))
        })
        .transpose()
    }
}

impl<R: Serialize, E: fmt::Display> HandlerResult for std::result::Result<Option<R>, E> {
    fn into_reply(self) -> std::result::Result<Option<Vec<u8>>, String> {
        self.map_err(|error| error.to_string())?.into_reply()
    }
}

/// `handler` as the dispatch thread runs it: arguments decoded as `A`,
/// its result as the request's outcome.
pub(super) fn into_handler<A, O, F>(handler: F) -> Arc<Handler>
where
    A: DeserializeOwned,
    O: HandlerResult,
    F: Fn(A) -> O + Send + Sync + 'static,
{
    Arc::new(move |args: &[u8]| {
        let args: A = match serde_json::from_slice(args) {
            Ok(args) => args,
            Err(error) => return Outcome::Failed(format!("bad arguments: {error}")),
        };
        match handler(args).into_reply() {
            Ok(None) => Outcome::Pass,
            Ok(Some(json)) => Outcome::Reply(json),
            Err(error) => Outcome::Failed(error),
        }
    })
}

/// `handler`'s outcome for `request`; a panic is a failure, with its text.
pub(super) fn run(handler: &Handler, request: &wire::Request) -> Outcome {
    catch_unwind(AssertUnwindSafe(|| handler(request.args())))
        .unwrap_or_else(|panic| Outcome::Failed(panic_text(panic.as_ref())))
}

/// Whether the caller of `request` (a call: a post waits for no one) has
/// given up on it.
pub(super) fn gave_up(request: &wire::Request) -> bool {
    request.id != 0 && request.due != 0 && crate::sys::monotonic_ms() > request.due
}

pub(super) fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned());
    format!("the handler panicked: {what}")
}

impl Inner {
    pub(super) fn is_dispatch_thread(&self) -> bool {
        DISPATCHING.with(|current| current.get() == self as *const Inner as usize)
    }

    /// The dispatch thread: runs requests, and reads the inbox when no
    /// caller does, until the member leaves.
    pub(super) fn dispatch(self: Arc<Self>) {
        DISPATCHING.with(|current| current.set(Arc::as_ptr(&self) as usize));
        self.dispatch_until(|| false);
    }

    /// The dispatch thread's loop, on the calling thread (marked as one
    /// that runs requests), until the member leaves or `done()`.
    pub(super) fn dispatch_until(&self, done: impl Fn() -> bool) {
        let mut room = self.mailroom();
        while !self.leaving.load(Ordering::SeqCst) && !done() {
            let request = if let Some(request) = room.queued.pop_front() {
                Some(request)
            } else if room.reading {
                room = self.doze(room, READ_SLICE);
                None
            } else {
                let (back, message) = self.read_as_reader(room, || Instant::now() + READ_SLICE);
                room = back;
                message.and_then(|message| self.file(&mut room, message, true))
            };
            if let Some(request) = request {
                drop(room);
                self.serve(request);
                room = self.mailroom();
            }
            // Spills taken, and members that left since (let go of the
            // inboxes this member answered them through): two loads when
            // there is nothing to do, and the mailroom let go while it is
            // done (it unmaps and may remove names).
            let departed = self
                .registry
                .changes()
                .ok()
                .filter(|&changes| changes != self.departures_seen.load(Ordering::Relaxed));
            if departed.is_some() || self.spilling.load(Ordering::Relaxed) > 0 {
                drop(room);
                self.prune_spills();
                if let Some(changes) = departed {
                    self.let_go_of_departed(changes);
                }
                room = self.mailroom();
            }
        }
    }

    /// Runs a request's handler and, for a call, sends the reply back. A
    /// call whose caller has given up is skipped: no one would read its
    /// reply, and its handler's time is another request's.
    pub(super) fn serve(&self, request: wire::Request) {
        if gave_up(&request) {
            return;
        }
        let answerer = unpoisoned::lock(&self.handlers)
            .get(&request.listener)
            .cloned();
        let outcome = match answerer {
            None => Outcome::Gone,
            Some(Answerer::Program) => {
                // Read by a thread that runs requests: the program's turn.
                let mut room = self.mailroom();
                room.polled.push_back(request);
                self.stir(&mut room);
                return;
            }
            Some(Answerer::Handler(handler)) => run(&*handler, &request),
            Some(Answerer::OwnThread(thread)) => match thread.send(request) {
                Ok(()) => return,
                // Its thread ended (its listener is going): gone.
                Err(std::sync::mpsc::SendError(request)) => {
                    self.answer(&request, &Outcome::Gone);
                    return;
                }
            },
        };
        self.answer(&request, &outcome);
    }

    /// Runs `handler` on `request` and answers it, unless its caller gave up.
    pub(super) fn run_and_answer(&self, handler: &Handler, request: &wire::Request) {
        if !gave_up(request) {
            let outcome = run(handler, request);
            self.answer(request, &outcome);
        }
    }

    /// A listener's own thread: runs its handler on each request handed
    /// to it, until its listener or its member is gone. While it has none
    /// it reads the inbox itself when no other thread does (the dispatch
    /// thread may be busy in a slow handler), and hands on what it finds.
    pub(super) fn serve_on_own_thread(
        member: &Weak<Inner>,
        handler: &Handler,
        requests: &std::sync::mpsc::Receiver<wire::Request>,
    ) {
        use std::sync::mpsc::TryRecvError;
        loop {
            let request = match requests.try_recv() {
                Ok(request) => Some(request),
                Err(TryRecvError::Disconnected) => return,
                Err(TryRecvError::Empty) => None,
            };
            let Some(inner) = member.upgrade() else {
                return;
            };
            if let Some(request) = request {
                inner.run_and_answer(handler, &request);
                continue;
            }
            if inner.leaving.load(Ordering::SeqCst) {
                return;
            }
            let room = inner.mailroom();
            if room.reading {
                drop(room);
                drop(inner);
                match requests.recv_timeout(READ_SLICE) {
                    Ok(request) => match member.upgrade() {
                        Some(inner) => inner.run_and_answer(handler, &request),
                        None => return,
                    },
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                }
                continue;
            }
            let (mut room, message) = inner.read_as_reader(room, || Instant::now() + READ_SLICE);
            let now = message.and_then(|message| inner.file(&mut room, message, false));
            drop(room);
            if let Some(request) = now {
                inner.serve(request);
            }
        }
    }

    /// Answers the requests for the program that it has not taken, and
    /// that `whose` picks, with a pass: their callers ask the next listener.
    pub(super) fn pass_untaken(&self, whose: impl Fn(&wire::Request) -> bool) {
        let untaken: VecDeque<wire::Request> = {
            let mut room = self.mailroom();
            let (untaken, kept) = room.polled.drain(..).partition(|request| whose(request));
            room.polled = kept;
            untaken
        };
        for request in untaken {
            self.answer(&request, &Outcome::Pass);
        }
    }

    /// Sends `outcome` back to the caller of `request` (nothing for a post).
    /// A forked child's copy of the member answers nothing: the request
    /// is its parent's.
    pub(super) fn answer(&self, request: &wire::Request, outcome: &Outcome) {
        if request.id == 0 || !self.participant.is_here() {
            return;
        }
        let Ok(outbox) = self.outbox(request.from) else {
            // The caller is gone, and so is its call.
            return;
        };
        let reply = wire::reply(request.id, self.participant.token(), outcome);
        let reply = match self.spill(&outbox, &reply, || Instant::now() + SPILL_PATIENCE) {
            Ok(Some(spilled)) => spilled,
            Ok(None) => reply,
            Err(error) => wire::reply(
                request.id,
                self.participant.token(),
                &Outcome::Failed(format!(
                    "the reply of {} bytes could not be spilled to a mapping: {error}",
                    reply.len()
                )),
            ),
        };
        self.deliver(request.from, &outbox, &reply);
    }
}
