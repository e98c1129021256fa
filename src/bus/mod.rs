//! [`Bus`]: named commands between processes, aardio's `process.command`
//! done on shared memory: processes join a group, listen to commands by
//! name, and call them (the first listener with a reply answers), call
//! every listener at once, or post without waiting.
//!
//! A group is three kinds of ordinary shmio objects: the registry (the
//! object named after the group, see `registry.rs`), its lock (the mutex
//! `GROUP@bus`), and an inbox per member that needs one (a [`Channel`]
//! named `GROUP@in.TOKEN.N`). A call writes a request into the listener's
//! inbox and waits for the reply in its own; messages are in `wire.rs`.
//! Members are the registry's participants (`src/participants.rs`): a dead
//! one is found by its seat, never by its pid, and pruned by whoever finds
//! it.
//!
//! **When a member has an inbox.** Only while something can come to it: a
//! listener from its first listen until it leaves; a member that only
//! calls from its first call until it has been idle for [`INBOX_IDLE`]
//! (a keeper thread, started with the inbox, lets it go then); a member
//! that only posts or looks never. Each inbox a member makes is a new
//! incarnation `N`, written in its registry entry: senders open the one
//! the registry names, so no one writes into an inbox its member let go.
//!
//! **Who reads the inbox.** Whichever thread of the member is waiting: a
//! caller waiting for its reply reads the inbox itself (no thread hop on
//! the way back), and hands anything else it finds to its owner: a reply
//! to the thread waiting for it, a request to the dispatch thread. The
//! dispatch thread (started by the first [`Bus::listen`]) reads the inbox
//! when no caller does and runs the handlers. A handler that calls the bus
//! from the dispatch thread reads the inbox too, and runs the requests it
//! finds there itself: a handler may call a command of its own process.
//! Requests for listeners the program answers itself
//! ([`Bus::listen_polled`]) wait in the mailroom for
//! [`Bus::next_request`], which reads the inbox too while it waits.
//!
//! **Rooms.** This file is the API (the public types and `impl Bus`).
//! What a member's handles share is in `member.rs` (`Inner` and its state,
//! the timings); beside it, one job each, adding `Inner`'s methods: `membership.rs` (who is in the group: the registry's listeners,
//! the sweep, burial), `mailroom.rs` (the inbox and outboxes, reading and
//! filing, spilled messages), `calling.rs` (a call's deadline, its request
//! and the wait for its reply), `dispatch.rs` (the dispatch thread and the
//! handlers it runs); below them `registry.rs` (the group's object: members
//! and the listener table) and `wire.rs` (the messages).

mod awaiting;
mod calling;
mod dispatch;
mod mailroom;
mod member;
mod membership;
mod registry;
mod wire;

use std::collections::BTreeMap;
use std::fmt;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::channel::{Channel, ChannelGeometry};
use crate::error::{Error, Result};
use crate::mapping::record;
use crate::mapping::DEFAULT_MODE;
use crate::name::Name;
use crate::object::Sharing;
use crate::owner::Trust;
use crate::sys::Disposition;
use crate::unpoisoned;
use crate::waiter::Pause;

use calling::{answer_of, Clock, Deadline};
pub use dispatch::HandlerResult;
use dispatch::{gave_up, into_handler, DISPATCHING};
use member::{Answerer, Handler, Inner, Mailroom, READ_SLICE, SPILL_PATIENCE};
use registry::{Registration, Registry};
use wire::Outcome;

/// The messages a member's inbox holds by default.
const DEFAULT_INBOX_CAPACITY: u32 = 64;
/// The largest message a member's inbox holds in place by default; larger
/// ones are spilled (see [`BusOptions::max_message_size`]).
const DEFAULT_INBOX_MESSAGE: u32 = 1024;

/// The settings of a bus member: its inbox, and who may share the group.
///
/// ```
/// use shmio::Bus;
///
/// # let group = format!("shmio-doc-bus-opts-{}", std::process::id());
/// let bus = Bus::options().inbox_capacity(128).max_message_size(1 << 16).join(&group)?;
/// # drop(bus);
/// # Ok::<(), shmio::Error>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BusOptions {
    inbox: ChannelGeometry,
    permissions: u32,
    trust: Trust,
}

impl Default for BusOptions {
    fn default() -> Self {
        BusOptions {
            inbox: ChannelGeometry {
                capacity: DEFAULT_INBOX_CAPACITY,
                max_message_size: DEFAULT_INBOX_MESSAGE,
            },
            permissions: DEFAULT_MODE,
            trust: Trust::OWN,
        }
    }
}

impl BusOptions {
    /// Options with every default: an inbox of 64 messages of up to 1 KiB
    /// each in place (larger ones are spilled), owner-only objects, only
    /// the caller's own group joined.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many messages this member's inbox holds (default 64). A full
    /// inbox makes callers wait (within their timeout) and posts fail.
    pub fn inbox_capacity(&mut self, capacity: u32) -> &mut Self {
        self.inbox.capacity = capacity;
        self
    }

    /// The largest message this member's inbox holds in place, in bytes
    /// (default 1024): a request's command and arguments, or a reply, as
    /// JSON, plus 24 bytes. A larger one is *spilled*: its sender puts it
    /// in a mapping of its own, sized to it and reserved when it is made
    /// (a full `/dev/shm` is [`Error::NoSpace`] for the sender, never a
    /// fault later), which the receiver reads and removes. So an idle
    /// member reserves only its inbox (80 KiB by default: see
    /// ARCHITECTURE.md), and memory grows only with what it is sent.
    pub fn max_message_size(&mut self, size: u32) -> &mut Self {
        self.inbox.max_message_size = size;
        self
    }

    crate::owner::sharing_options!("bus group", permissions);

    /// Who may make and use the group's objects. A member is its
    /// process's: a forked child gets no share of them.
    fn sharing(&self) -> Sharing<'_> {
        Sharing {
            permissions: self.permissions,
            trust: &self.trust,
            parent_only: true,
            persistent: false,
        }
    }

    /// Joins the group `group` (creating it if this is its first member).
    pub fn join(&self, group: &str) -> Result<Bus> {
        Bus::join_with(group, self)
    }

    /// A view of the existing group `group`, to read who listens without
    /// joining it (see [`BusView`]); [`Error::NotFound`] if there is no
    /// such group.
    pub fn view(&self, group: &str) -> Result<BusView> {
        let group = Name::new(group)?.as_str().to_owned();
        let registry = Registry::open(&group, Disposition::Open, &self.sharing())?;
        Ok(BusView {
            registry,
            trust: self.trust.clone(),
        })
    }
}

/// A bus group seen from outside: who listens to what, read without
/// joining. Opening one creates nothing (no inbox, no seat, no group if
/// there is none) and it never changes the group: what `shmio listeners`
/// uses. Listeners whose process died and that no member has pruned yet
/// are left out.
///
/// ```
/// use shmio::Bus;
///
/// # let group = format!("shmio-doc-bus-view-{}", std::process::id());
/// assert!(Bus::view(&group).is_err(), "no such group: nothing is made");
/// let bus = Bus::join(&group)?;
/// let _echo = bus.listen("echo", |text: String| Ok::<_, String>(Some(text)))?;
/// let view = Bus::view(&group)?;
/// assert_eq!(view.listeners("echo")?.len(), 1);
/// # Ok::<(), shmio::Error>(())
/// ```
pub struct BusView {
    registry: Registry,
    trust: Trust,
}

impl BusView {
    /// The group's name.
    pub fn group(&self) -> &str {
        self.registry.group()
    }

    /// The live listeners of `command`, in the order they are asked.
    pub fn listeners(&self, command: &str) -> Result<Vec<ListenerInfo>> {
        Ok(self
            .live()?
            .iter()
            .filter(|registration| registration.command == command)
            .map(info)
            .collect())
    }

    /// Every live listener of the group, as [`Bus::commands`] lists them.
    pub fn commands(&self) -> Result<Vec<ListenerInfo>> {
        Ok(by_command(&self.live()?))
    }

    fn live(&self) -> Result<Vec<Registration>> {
        let (_, mut found) = self.registry.registrations()?;
        // No token is 0: the view has no seat of its own to vouch for.
        found.retain(|registration| self.registry.is_alive(registration.token, 0, &self.trust));
        Ok(found)
    }
}

impl fmt::Debug for BusView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusView")
            .field("group", &self.group())
            .finish_non_exhaustive()
    }
}

/// A member of a bus group: listens to commands and calls them.
///
/// **After `fork()`** the member is the parent: in a child, every call
/// through the inherited `Bus` (and its [`Listener`]s and [`Request`]s) is
/// [`Error::Inherited`], and dropping them there does nothing (the
/// parent's listeners stay registered, its dispatch thread, which the
/// child does not have, is forgotten). A child joins the group itself.
///
/// ```
/// use std::time::Duration;
/// use shmio::Bus;
///
/// # let group = format!("shmio-doc-bus-{}", std::process::id());
/// let bus = Bus::join(&group)?;
/// let _adder = bus.listen("add", |(a, b): (i64, i64)| Ok::<_, String>(Some(a + b)))?;
/// // Any process in the group (this one too):
/// let sum: Option<i64> = bus.call("add", &(2, 3), Duration::from_secs(1))?;
/// assert_eq!(sum, Some(5));
/// # Ok::<(), shmio::Error>(())
/// ```
pub struct Bus {
    inner: Arc<Inner>,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
}

/// A registered handler; dropping it unregisters it.
#[must_use = "dropping a Listener unregisters it"]
pub struct Listener {
    inner: Weak<Inner>,
    order: u64,
    command: String,
}

/// One listener of a group, as [`Bus::listeners`] and [`Bus::commands`] show it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListenerInfo {
    /// The command it listens to.
    pub command: String,
    /// The listening process's id, in its own pid namespace (for people to
    /// read: another container's pid means nothing here).
    pub pid: u32,
}

/// One listener's answer to a [`Bus::broadcast`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Answer<R> {
    /// The listener's process id (see [`ListenerInfo::pid`]).
    pub pid: u32,
    /// Its reply (`None`: it had none), or why there is none:
    /// [`Error::TimedOut`], [`Error::ListenerDied`], [`Error::Handler`], or
    /// [`Error::Decode`] for a reply that is not an `R`.
    pub outcome: Result<Option<R>>,
}

/// Every listener's answer to a [`Bus::broadcast`], in registration order.
#[derive(Debug)]
#[non_exhaustive]
pub struct Replies<R> {
    /// One per listener.
    pub answers: Vec<Answer<R>>,
}

impl<R> Replies<R> {
    /// The replies that came, with their listeners' pids.
    pub fn replies(&self) -> impl Iterator<Item = (u32, &R)> {
        self.answers
            .iter()
            .filter_map(|answer| match &answer.outcome {
                Ok(Some(reply)) => Some((answer.pid, reply)),
                _ => None,
            })
    }
}

/// A bus member's requests as a `Stream`: see [`Bus::requests`].
#[cfg(feature = "stream")]
pub struct Requests<'a> {
    bus: &'a Bus,
    /// The member's inbox, held while the stream lives.
    inbox: Option<Arc<Channel>>,
    pause: Pause,
}

#[cfg(feature = "stream")]
impl futures_core::Stream for Requests<'_> {
    type Item = Result<Request>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Request>>> {
        use std::task::Poll;
        let this = self.get_mut();
        let inner = &this.bus.inner;
        if let Err(error) = inner.here() {
            return Poll::Ready(Some(Err(error)));
        }
        let inbox = match &this.inbox {
            Some(inbox) => Arc::clone(inbox),
            None => match this.bus.inbox(true) {
                Ok(inbox) => Arc::clone(this.inbox.insert(inbox)),
                Err(error) => return Poll::Ready(Some(Err(error))),
            },
        };
        loop {
            let next = inner.poll_mail(cx, &mut this.pause, &inbox, None, &mut |room| {
                room.polled.pop_front()
            });
            match next {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(request)) if gave_up(&request) => continue,
                Poll::Ready(Some(request)) => {
                    this.pause = Pause::new();
                    return Poll::Ready(Some(Ok(Request {
                        inner: Arc::clone(inner),
                        request,
                        answered: false,
                    })));
                }
                Poll::Ready(None) => continue,
            }
        }
    }
}

/// A call or post for a listener of [`Bus::listen_polled`], taken with
/// [`Bus::next_request`]. Answer a call with [`reply`](Self::reply),
/// [`pass`](Self::pass) or [`fail`](Self::fail); dropped unanswered, it
/// passes (the caller asks the next listener).
#[must_use = "an unanswered request passes when dropped"]
pub struct Request {
    inner: Arc<Inner>,
    request: wire::Request,
    answered: bool,
}

impl Request {
    /// The command called.
    pub fn command(&self) -> &str {
        self.request.command()
    }

    /// Whether this is a post: no one waits for an answer.
    pub fn is_post(&self) -> bool {
        self.request.id == 0
    }

    /// The arguments, decoded as `A`: [`Error::Decode`] (with the JSON) if
    /// they are not an `A`.
    pub fn args<A: DeserializeOwned>(&self) -> Result<A> {
        record::decode(0, self.request.args().to_vec())
    }

    /// Answers the call with `reply` (a post: nothing to do). A reply that
    /// does not encode is an error here and a handler error for the caller.
    /// In a forked child, a request its parent took is the parent's to
    /// answer: [`Error::Inherited`] (and [`pass`](Self::pass),
    /// [`fail`](Self::fail) and dropping it do nothing there).
    pub fn reply<R: Serialize + ?Sized>(mut self, reply: &R) -> Result<()> {
        self.answered = true;
        self.inner.here()?;
        match record::encode_payload(reply) {
            Ok(json) => {
                self.inner.answer(&self.request, &Outcome::Reply(json));
                Ok(())
            }
            Err(error) => {
                let message = format!("the reply does not encode: {error}");
                self.inner.answer(&self.request, &Outcome::Failed(message));
                Err(error)
            }
        }
    }

    /// Passes the call on to the next listener (aardio's `null`).
    pub fn pass(mut self) {
        self.answered = true;
        self.inner.answer(&self.request, &Outcome::Pass);
    }

    /// Fails the call: the caller gets [`Error::Handler`] with `message`.
    pub fn fail(mut self, message: impl fmt::Display) {
        self.answered = true;
        let outcome = Outcome::Failed(message.to_string());
        self.inner.answer(&self.request, &outcome);
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if !self.answered {
            self.inner.answer(&self.request, &Outcome::Pass);
        }
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("command", &self.request.command())
            .field("post", &self.is_post())
            .finish_non_exhaustive()
    }
}

impl Bus {
    /// Joins the group `group` with every default option (see [`BusOptions`]).
    pub fn join(group: &str) -> Result<Bus> {
        Bus::options().join(group)
    }

    /// A builder for the inbox's size, permissions and trusted owners.
    pub fn options() -> BusOptions {
        BusOptions::new()
    }

    fn join_with(group: &str, options: &BusOptions) -> Result<Bus> {
        let group = Name::new(group)?.as_str().to_owned();
        let registry = Registry::open(&group, Disposition::CreateOrOpen, &options.sharing())?;
        let (participant, displaced) = registry.join()?;
        let inner = Inner {
            mailroom: Mutex::new(Mailroom::default()),
            participant,
            geometry: options.inbox,
            registry,
            group,
            trust: options.trust.clone(),
            permissions: options.permissions,
            next_id: AtomicU64::new(1),
            stirred: Condvar::new(),
            handlers: Mutex::new(BTreeMap::new()),
            outboxes: Mutex::new(BTreeMap::new()),
            cache: Mutex::new((u64::MAX, Arc::new(Vec::new()))),
            departures_seen: AtomicU64::new(u64::MAX),
            spills: Mutex::new(Vec::new()),
            spilling: AtomicUsize::new(0),
            next_spill: AtomicU64::new(1),
            leaving: AtomicBool::new(false),
        };
        // The member that died in this seat before anyone found it: its
        // inbox's name goes now (its entries went as it was displaced).
        if let Some((token, incarnation)) = displaced {
            inner.bury_inbox(token, incarnation);
        }
        inner.sweep();
        Ok(Bus {
            inner: Arc::new(inner),
            dispatcher: Mutex::new(None),
        })
    }

    /// The group's name.
    pub fn group(&self) -> &str {
        &self.inner.group
    }

    /// Listens to `command`: `handler` runs for each call or post of it, on
    /// this member's dispatch thread, with the arguments decoded as `A`.
    /// It returns an `Option` (for a handler that cannot fail) or a
    /// `Result<Option<_>, E>` ([`HandlerResult`]): `Some(reply)` answers a
    /// call; `None` passes it on to the next listener (aardio's `null`);
    /// `Err` (or a panic) gives the caller [`Error::Handler`] with its
    /// text. Arguments that are not an `A` are a handler error too. The
    /// listener keeps serving either way.
    ///
    /// Listeners of one command, in every process, are asked in the order
    /// they registered. Dropping the [`Listener`] unregisters it: keep it
    /// (`let _listener = bus.listen(..)?`; `let _ = ..` drops it at once).
    ///
    /// One dispatch thread runs every handler of this member in turn, so a
    /// slow handler delays the others' requests; a request whose caller
    /// has given up (its call's time ran out) before its turn came is
    /// skipped, never run. A handler that must not wait behind others
    /// listens with [`listen_on_own_thread`](Self::listen_on_own_thread).
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmio::Bus;
    ///
    /// # let group = format!("shmio-doc-bus-listen-{}", std::process::id());
    /// let bus = Bus::join(&group)?;
    /// // A handler that cannot fail returns an Option: no type to name.
    /// let _double = bus.listen("double", |x: u64| Some(x * 2))?;
    /// // One that can returns a Result, its error type named once.
    /// let _parse = bus.listen("parse", |text: String| text.parse::<u64>().map(Some))?;
    /// assert_eq!(bus.call::<_, u64>("double", &21, Duration::from_secs(5))?, Some(42));
    /// assert!(bus.call::<_, u64>("parse", &"x", Duration::from_secs(5)).is_err());
    /// # Ok::<(), shmio::Error>(())
    /// ```
    pub fn listen<A, O, F>(&self, command: &str, handler: F) -> Result<Listener>
    where
        A: DeserializeOwned,
        O: HandlerResult,
        F: Fn(A) -> O + Send + Sync + 'static,
    {
        self.listen_with(command, into_handler(handler), false)
    }

    /// Registers a listener of `command` that `answerer` answers.
    fn register(&self, command: &str, answerer: Answerer) -> Result<Listener> {
        let inner = &self.inner;
        let order = inner.registry.listen(inner.participant.token(), command)?;
        unpoisoned::lock(&inner.handlers).insert(order, answerer);
        Ok(Listener {
            inner: Arc::downgrade(inner),
            order,
            command: command.to_owned(),
        })
    }

    /// As [`listen`](Self::listen), with `handler` on a thread of its own:
    /// its requests never wait behind another handler's, nor others
    /// behind it (a slow command, a blocking one). Requests of this command
    /// still run one at a time, in the order they came. The thread ends
    /// when the [`Listener`] is dropped (or the member leaves).
    pub fn listen_on_own_thread<A, O, F>(&self, command: &str, handler: F) -> Result<Listener>
    where
        A: DeserializeOwned,
        O: HandlerResult,
        F: Fn(A) -> O + Send + Sync + 'static,
    {
        self.listen_with(command, into_handler(handler), true)
    }

    /// Listens to `command` with `handler`, run by the dispatch thread or,
    /// if `own_thread`, by a thread of its own started here.
    fn listen_with(
        &self,
        command: &str,
        handler: Arc<Handler>,
        own_thread: bool,
    ) -> Result<Listener> {
        self.inner.here()?;
        registry::check_command(command)?;
        self.inbox(true)?;
        self.start_dispatcher()?;
        if !own_thread {
            return self.register(command, Answerer::Handler(handler));
        }
        let (requests, taken) = std::sync::mpsc::channel();
        let member = Arc::downgrade(&self.inner);
        std::thread::Builder::new()
            .name(format!("shmio bus {} {command}", self.inner.group))
            .spawn(move || Inner::serve_on_own_thread(&member, &*handler, &taken))
            .map_err(|source| Error::Os {
                op: "start a listener's thread in",
                target: self.inner.group.clone(),
                source: source.into(),
            })?;
        self.register(command, Answerer::OwnThread(requests))
    }

    /// Listens to `command` without a handler: its calls and posts wait
    /// for the program to take them with [`next_request`](Self::next_request)
    /// and answer them, on a thread of its choosing (no dispatch thread is
    /// started for it). Order and the pass rule are as for
    /// [`listen`](Self::listen). Dropping the [`Listener`] unregisters it;
    /// requests for it not yet taken are answered with a pass.
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmio::Bus;
    ///
    /// # let group = format!("shmio-doc-bus-polled-{}", std::process::id());
    /// let bus = Bus::join(&group)?;
    /// let _double = bus.listen_polled("double")?;
    /// let caller = std::thread::spawn(move || {
    ///     let other = Bus::join(&group)?;
    ///     other.call::<_, u64>("double", &21, Duration::from_secs(5))
    /// });
    /// let request = bus.next_request(Duration::from_secs(5))?;
    /// let x: u64 = request.args()?;
    /// request.reply(&(x * 2))?;
    /// assert_eq!(caller.join().unwrap()?, Some(42));
    /// # Ok::<(), shmio::Error>(())
    /// ```
    pub fn listen_polled(&self, command: &str) -> Result<Listener> {
        self.inner.here()?;
        registry::check_command(command)?;
        self.inbox(true)?;
        self.register(command, Answerer::Program)
    }

    /// The next call or post for a listener of
    /// [`listen_polled`](Self::listen_polled), waiting at most `timeout`
    /// ([`Error::TimedOut`] if none came). While it waits, this thread
    /// reads the member's inbox when no other does, and runs what it finds
    /// for handlers of this process if no dispatch thread does.
    pub fn next_request(&self, timeout: Duration) -> Result<Request> {
        self.inner.here()?;
        self.inbox(true)?;
        let inner = &self.inner;
        let deadline = crate::deadline::after(timeout);
        let mut room = inner.mailroom();
        loop {
            if let Some(request) = room.polled.pop_front() {
                if gave_up(&request) {
                    continue;
                }
                return Ok(Request {
                    inner: Arc::clone(inner),
                    request,
                    answered: false,
                });
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::TimedOut {
                    name: inner.group.clone(),
                });
            }
            let wait = (deadline - now).min(READ_SLICE);
            if room.reading {
                room = inner.doze(room, wait);
                continue;
            }
            let (back, message) = inner.read_as_reader(room, || now + wait);
            room = back;
            let serve_now = message.and_then(|message| inner.file(&mut room, message, false));
            if let Some(request) = serve_now {
                drop(room);
                inner.serve(request);
                room = inner.mailroom();
            }
        }
    }

    /// Calls `command` with `args`: its listeners are asked in registration
    /// order until one replies (`Some`), which is returned; `None` if every
    /// one passed; [`Error::NoListener`] if none listens. Waits at most
    /// `timeout` in all ([`Error::TimedOut`] naming `GROUP/COMMAND`).
    ///
    /// A listener found dead before it was asked (also in another pid
    /// namespace) is pruned from the group and skipped. One that dies
    /// while asked is pruned too, and the next one is asked; if no later
    /// listener replies, the call is [`Error::ListenerDied`] naming the
    /// first that died. A handler's
    /// failure is [`Error::Handler`] at once. A reply that is not an `R` is
    /// [`Error::Decode`].
    pub fn call<A, R>(&self, command: &str, args: &A, timeout: Duration) -> Result<Option<R>>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.inner.here()?;
        self.call_where(command, args, Deadline::after(timeout), None)
    }

    /// As [`call`](Self::call), asking `interrupted` every 20 ms while it
    /// waits whether to give up: if it says so, the call ends with
    /// [`Error::Interrupted`] (a reply that comes later is dropped). For a
    /// caller that must stay responsive to something else while it waits
    /// (a signal, Python's Ctrl-C) without a thread of its own per call.
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmio::Bus;
    ///
    /// # let group = format!("shmio-doc-bus-interrupt-{}", std::process::id());
    /// let bus = Bus::join(&group)?;
    /// let _slow = bus.listen("slow", |(): ()| {
    ///     std::thread::sleep(Duration::from_millis(500));
    ///     Ok::<_, String>(Some(1))
    /// })?;
    /// let asked = std::time::Instant::now();
    /// let gave_up = || asked.elapsed() > Duration::from_millis(50);
    /// let answer = bus.call_interruptible::<_, i32>("slow", &(), Duration::from_secs(5), &gave_up);
    /// assert!(matches!(answer, Err(shmio::Error::Interrupted { .. })));
    /// # Ok::<(), shmio::Error>(())
    /// ```
    pub fn call_interruptible<A, R>(
        &self,
        command: &str,
        args: &A,
        timeout: Duration,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<Option<R>>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.inner.here()?;
        let due = Deadline::interruptible(timeout, interrupted);
        self.call_where(command, args, due, None)
    }

    /// As [`call`](Self::call), asking only the listeners in the process
    /// `pid` (as the member reported it: a pid of its own pid namespace);
    /// [`Error::NoListener`] if that process does not listen. A listener
    /// of that process that dies while asked ends the call
    /// ([`Error::ListenerDied`]); so does finding them all dead before.
    pub fn call_pid<A, R>(
        &self,
        pid: u32,
        command: &str,
        args: &A,
        timeout: Duration,
    ) -> Result<Option<R>>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.inner.here()?;
        self.call_where(command, args, Deadline::after(timeout), Some(pid))
    }

    /// Calls the listeners of `command`, those of the process `pid` only if
    /// it is given (`call_pid`), by the rules of [`call`](Self::call).
    fn call_where<A, R>(
        &self,
        command: &str,
        args: &A,
        deadline: Deadline<'_>,
        pid: Option<u32>,
    ) -> Result<Option<R>>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        registry::check_command(command)?;
        let mut message = wire::request_body(command, args)?;
        let listeners = self.inner.listeners_of(command)?;
        // Held for the whole call: the keeper lets go of no inbox in use.
        let _replies = self.inbox(false)?;
        let mut died = None;
        let mut asked = 0;
        let chosen = |listener: &&Registration| pid.is_none_or(|pid| listener.pid == pid);
        for listener in listeners.iter().filter(chosen) {
            let id = match self.inner.send_request(listener, &mut message, &deadline) {
                Ok(id) => id,
                // Found dead before it was asked (and buried): skipped,
                // unless it was the very process asked for.
                Err(error @ Error::ListenerDied { .. }) => {
                    if pid.is_some() {
                        died.get_or_insert(error);
                    }
                    continue;
                }
                Err(error) => return Err(error),
            };
            asked += 1;
            let answer = self
                .inner
                .wait_reply(id, listener, &deadline)
                .and_then(|outcome| answer_of(outcome, listener.pid));
            match answer {
                Ok(Some(reply)) => return Ok(Some(reply)),
                Ok(None) => {}
                Err(error @ Error::ListenerDied { .. }) if pid.is_some() => return Err(error),
                Err(error @ Error::ListenerDied { .. }) => {
                    died.get_or_insert(error);
                }
                Err(error) => return Err(error),
            }
        }
        self.unanswered(died, asked, command, pid)
    }

    /// What a call no listener replied to ends with: the first listener
    /// that died while asked; else, if nobody was asked, `NoListener`
    /// (none listens, or every one was found dead); else `None` (every
    /// one passed).
    fn unanswered<R>(
        &self,
        died: Option<Error>,
        asked: usize,
        command: &str,
        pid: Option<u32>,
    ) -> Result<Option<R>> {
        match died {
            Some(error) => Err(error),
            None if asked == 0 => Err(Error::NoListener {
                group: self.inner.group.clone(),
                command: command.to_owned(),
                pid,
            }),
            None => Ok(None),
        }
    }

    /// Calls `command` on every listener at once and collects every answer,
    /// waiting at most `timeout` in all: each listener's reply, or why
    /// there is none (it timed out, died, or failed).
    pub fn broadcast<A, R>(&self, command: &str, args: &A, timeout: Duration) -> Result<Replies<R>>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.inner.here()?;
        registry::check_command(command)?;
        let mut message = wire::request_body(command, args)?;
        let deadline = Deadline::after(timeout);
        let listeners = self.inner.listeners_of(command)?;
        let _replies = self.inbox(false)?;
        let sent: Vec<(&Registration, Result<u64>)> = listeners
            .iter()
            .map(|listener| {
                let id = self.inner.send_request(listener, &mut message, &deadline);
                (listener, id)
            })
            .collect();
        let answers = sent
            .into_iter()
            .map(|(listener, id)| {
                let outcome = id
                    .and_then(|id| self.inner.wait_reply(id, listener, &deadline))
                    .and_then(|outcome| answer_of(outcome, listener.pid));
                Answer {
                    pid: listener.pid,
                    outcome,
                }
            })
            .collect();
        Ok(Replies { answers })
    }

    /// Calls `command` with `args`, awaiting the answer: the future of
    /// [`call`](Self::call), with its rules, results and errors (a listener
    /// that dies while asked is skipped for the next), in any executor.
    /// While it waits it reads this member's inbox when no other thread
    /// does, and sleeps through the process's waiter thread otherwise.
    ///
    /// **Cancel safety:** dropping the future stops the call: a request
    /// already sent is still run by its listener, and its reply, when it
    /// comes, is dropped by whoever reads this member's inbox next; it is
    /// never handed to another call, nor left waiting for one.
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmio::Bus;
    ///
    /// # let group = format!("shmio-doc-bus-async-{}", std::process::id());
    /// let bus = Bus::join(&group)?;
    /// let _add = bus.listen("add", |(a, b): (i32, i32)| Ok::<_, String>(Some(a + b)))?;
    /// # futures_lite::future::block_on(async {
    /// let sum: Option<i32> = bus.call_async("add", &(2, 3), Duration::from_secs(5)).await?;
    /// assert_eq!(sum, Some(5));
    /// # Ok::<(), shmio::Error>(()) })?;
    /// # Ok::<(), shmio::Error>(())
    /// ```
    pub async fn call_async<A, R>(
        &self,
        command: &str,
        args: &A,
        timeout: Duration,
    ) -> Result<Option<R>>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.inner.here()?;
        registry::check_command(command)?;
        let mut message = wire::request_body(command, args)?;
        let deadline = Clock::after(timeout);
        let listeners = self.inner.listeners_of(command)?;
        // Held for the whole call: the keeper lets go of no inbox in use.
        let replies = self.inbox(false)?;
        let mut died = None;
        let mut asked = 0;
        for listener in listeners.iter() {
            let sent = self
                .inner
                .send_request_async(listener, &mut message, &deadline)
                .await;
            let id = match sent {
                Ok(id) => id,
                // Found dead before it was asked (and buried): skipped.
                Err(Error::ListenerDied { .. }) => continue,
                Err(error) => return Err(error),
            };
            asked += 1;
            let answer = self
                .inner
                .wait_reply_async(id, listener, &deadline, &replies)
                .await
                .and_then(|outcome| answer_of(outcome, listener.pid));
            match answer {
                Ok(Some(reply)) => return Ok(Some(reply)),
                Ok(None) => {}
                Err(error @ Error::ListenerDied { .. }) => {
                    died.get_or_insert(error);
                }
                Err(error) => return Err(error),
            }
        }
        self.unanswered(died, asked, command, None)
    }

    /// Calls `command` on every listener at once and awaits every answer:
    /// the future of [`broadcast`](Self::broadcast) (see
    /// [`call_async`](Self::call_async) for how it waits, and what
    /// dropping it does).
    pub async fn broadcast_async<A, R>(
        &self,
        command: &str,
        args: &A,
        timeout: Duration,
    ) -> Result<Replies<R>>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.inner.here()?;
        registry::check_command(command)?;
        let mut message = wire::request_body(command, args)?;
        let deadline = Clock::after(timeout);
        let listeners = self.inner.listeners_of(command)?;
        let replies = self.inbox(false)?;
        let mut sent = Vec::with_capacity(listeners.iter().count());
        for listener in listeners.iter() {
            let id = self
                .inner
                .send_request_async(listener, &mut message, &deadline)
                .await;
            sent.push((listener, id));
        }
        let mut answers = Vec::with_capacity(sent.len());
        for (listener, id) in sent {
            let outcome = match id {
                Ok(id) => self
                    .inner
                    .wait_reply_async(id, listener, &deadline, &replies)
                    .await
                    .and_then(|outcome| answer_of(outcome, listener.pid)),
                Err(error) => Err(error),
            };
            answers.push(Answer {
                pid: listener.pid,
                outcome,
            });
        }
        Ok(Replies { answers })
    }

    /// The next call or post for a listener of
    /// [`listen_polled`](Self::listen_polled), awaiting one: the future of
    /// [`next_request`](Self::next_request) with no timeout (bound it with
    /// the executor's timer), for an async program that serves the bus
    /// itself: take requests in a loop and answer each with
    /// [`Request::reply`].
    ///
    /// **Cancel safety:** a request is taken in the poll that returns it;
    /// a future dropped before it is ready has taken none.
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmio::Bus;
    ///
    /// # let group = format!("shmio-doc-bus-serve-async-{}", std::process::id());
    /// let bus = Bus::join(&group)?;
    /// let _listener = bus.listen_polled("double")?;
    /// # let caller = std::thread::spawn({ let group = group.clone(); move || {
    /// #     let bus = Bus::join(&group).unwrap();
    /// #     bus.call::<_, i32>("double", &21, Duration::from_secs(5)).unwrap()
    /// # }});
    /// # futures_lite::future::block_on(async {
    /// // loop {
    ///     let request = bus.next_request_async().await?;
    ///     let n: i32 = request.args()?;
    ///     request.reply(&(2 * n))?;
    /// // }
    /// # Ok::<(), shmio::Error>(()) })?;
    /// # assert_eq!(caller.join().unwrap(), Some(42));
    /// # Ok::<(), shmio::Error>(())
    /// ```
    pub async fn next_request_async(&self) -> Result<Request> {
        self.inner.here()?;
        let inbox = self.inbox(true)?;
        let inner = &self.inner;
        let mut pause = Pause::new();
        loop {
            let request = poll_fn(|cx| {
                inner.poll_mail(cx, &mut pause, &inbox, None, &mut |room| {
                    room.polled.pop_front()
                })
            })
            .await;
            match request {
                Some(request) if gave_up(&request) => continue,
                Some(request) => {
                    return Ok(Request {
                        inner: Arc::clone(inner),
                        request,
                        answered: false,
                    })
                }
                None => continue,
            }
        }
    }

    /// The calls and posts for this member's listeners of
    /// [`listen_polled`](Self::listen_polled) as a
    /// [`Stream`](futures_core::Stream) (feature `stream`): each as
    /// [`next_request_async`](Self::next_request_async) gives it, to be
    /// answered with [`Request::reply`]; the stream does not end while the
    /// member lives.
    #[cfg(feature = "stream")]
    pub fn requests(&self) -> Requests<'_> {
        Requests {
            bus: self,
            inbox: None,
            pause: Pause::new(),
        }
    }

    /// Queues `command` with `args` for every listener, without waiting for
    /// room or replies; how many it was queued for. A listener whose inbox
    /// is full does not get it: then the post is [`Error::PostIncomplete`],
    /// saying how many did and which did not. Each caller's posts reach
    /// each listener in the order posted.
    pub fn post<A>(&self, command: &str, args: &A) -> Result<usize>
    where
        A: Serialize + ?Sized,
    {
        self.inner.here()?;
        registry::check_command(command)?;
        let mut message = wire::request_body(command, args)?;
        let listeners = self.inner.listeners_of(command)?;
        let from = self.inner.participant.token();
        let (mut reached, mut full) = (0, Vec::new());
        for listener in listeners.iter() {
            wire::address(&mut message, 0, from, listener.order, 0);
            let outbox = match self.inner.outbox(listener.token) {
                Ok(outbox) => outbox,
                Err(Error::NotFound { .. }) => continue,
                Err(error) => return Err(error),
            };
            let spilled = self
                .inner
                .spill(&outbox, &message, || Instant::now() + SPILL_PATIENCE)?;
            match outbox.try_send(spilled.as_deref().unwrap_or(&message)) {
                Ok(()) => reached += 1,
                Err(Error::Full) => full.push(listener.pid),
                Err(error) => return Err(error),
            }
        }
        if full.is_empty() {
            Ok(reached)
        } else {
            Err(Error::PostIncomplete {
                command: command.to_owned(),
                reached,
                full,
            })
        }
    }

    /// Serves this member's listeners on the calling thread too (it reads
    /// the inbox and runs requests, beside the dispatch thread) until the
    /// member has no listener left: for a program that only listens, whose
    /// main thread has nothing else to do. A handler (or another thread)
    /// that drops the last [`Listener`] ends it.
    ///
    /// ```no_run
    /// use std::sync::{Arc, Mutex};
    /// use shmio::Bus;
    ///
    /// let bus = Bus::join("shmio-doc-serve")?;
    /// let _echo = bus.listen("echo", |text: String| Some(text))?;
    /// let quit = Arc::new(Mutex::new(None));
    /// let slot = Arc::clone(&quit);
    /// *quit.lock().unwrap() = Some(bus.listen("quit", move |(): ()| {
    ///     slot.lock().unwrap().take(); // unregisters "quit"
    ///     Some(true)
    /// })?);
    /// drop(_echo);
    /// bus.serve()?; // until someone calls "quit"
    /// # Ok::<(), shmio::Error>(())
    /// ```
    pub fn serve(&self) -> Result<()> {
        self.inner.here()?;
        let me = Arc::as_ptr(&self.inner) as usize;
        let before = DISPATCHING.with(|current| current.replace(me));
        self.inner
            .dispatch_until(|| unpoisoned::lock(&self.inner.handlers).is_empty());
        DISPATCHING.with(|current| current.set(before));
        Ok(())
    }

    /// Waits at most `timeout` until `command` has a listener in the group
    /// (for a program that starts its listeners and its callers at once);
    /// its listeners then. [`Error::TimedOut`] naming `GROUP/COMMAND` if
    /// none came. It looks every 5 ms (two loads while nothing changed).
    pub fn wait_for_listener(&self, command: &str, timeout: Duration) -> Result<Vec<ListenerInfo>> {
        self.inner.here()?;
        registry::check_command(command)?;
        let deadline = crate::deadline::after(timeout);
        loop {
            let found = self.listeners(command)?;
            if !found.is_empty() {
                return Ok(found);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(self.inner.timed_out(command));
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(5)));
        }
    }

    /// The listeners of `command`, in the order they are asked.
    pub fn listeners(&self, command: &str) -> Result<Vec<ListenerInfo>> {
        self.inner.here()?;
        Ok(self.inner.listeners_of(command)?.iter().map(info).collect())
    }

    /// Every listener of the group, command by command (in the order each
    /// command was first listened to), each command's in the order asked.
    pub fn commands(&self) -> Result<Vec<ListenerInfo>> {
        self.inner.here()?;
        Ok(by_command(&self.inner.registrations()?))
    }

    /// A view of the group `group` that joins nothing (see [`BusView`]),
    /// with every default option.
    pub fn view(group: &str) -> Result<BusView> {
        Bus::options().view(group)
    }

    /// This member's inbox, made now if it has none: to stay until the
    /// member leaves if `permanent` (a listener's), or else to be let go
    /// by a keeper thread once no call used it for [`INBOX_IDLE`].
    fn inbox(&self, permanent: bool) -> Result<Arc<Channel>> {
        let inner = &self.inner;
        let mut room = inner.mailroom();
        room.calls = room.calls.wrapping_add(1);
        room.permanent |= permanent;
        if let Some(inbox) = &room.inbox {
            return Ok(Arc::clone(inbox));
        }
        let inbox = Arc::new(inner.make_inbox(&mut room)?);
        room.inbox = Some(Arc::clone(&inbox));
        if !room.permanent {
            let member = Arc::downgrade(inner);
            let keeper = std::thread::Builder::new()
                .name(format!("shmio bus {} keeper", inner.group))
                .spawn(move || Inner::keep_inbox(&member));
            // With no keeper, the inbox stays until the member leaves.
            room.permanent = keeper.is_err();
        }
        Ok(inbox)
    }

    /// Starts the dispatch thread, once.
    fn start_dispatcher(&self) -> Result<()> {
        let mut dispatcher = unpoisoned::lock(&self.dispatcher);
        if dispatcher.is_some() {
            return Ok(());
        }
        let inner = Arc::clone(&self.inner);
        let thread = std::thread::Builder::new()
            .name(format!("shmio bus {}", self.inner.group))
            .spawn(move || inner.dispatch())
            .map_err(|source| Error::Os {
                op: "start the dispatch thread of",
                target: self.inner.group.clone(),
                source: source.into(),
            })?;
        *dispatcher = Some(thread);
        Ok(())
    }
}

impl Drop for Bus {
    /// Leaves the group: this member's listeners and registration go, its
    /// dispatch thread stops, what it took and did not answer passes on. A
    /// forked child's copy does none of that: the member is its parent
    /// (and the dispatch thread was never copied: it is forgotten).
    fn drop(&mut self) {
        let inner = &self.inner;
        if !inner.participant.is_here() {
            let thread = unpoisoned::get_mut(&mut self.dispatcher).take();
            std::mem::forget(thread);
            return;
        }
        inner.leaving.store(true, Ordering::SeqCst);
        inner.sweep();
        let _ = inner.registry.leave(inner.participant.token());
        let thread = unpoisoned::lock(&self.dispatcher).take();
        if let Some(thread) = thread {
            // The dispatch thread may be asleep in the inbox: wake it.
            let inbox = inner.mailroom().inbox.clone();
            if let Some(inbox) = inbox {
                let _ = inbox.try_send(&wire::stop());
            }
            let room = inner.mailroom();
            inner.stirred.notify_all();
            drop(room);
            let _ = thread.join();
        }
        inner.pass_untaken(|_| true);
        // The inbox's name goes now, whoever still holds the inbox (a
        // member that answered through it lets go of it once it sees this
        // member left), so that no name of a member outlives it.
        let inbox = inner.mailroom().inbox.take();
        if let Some(inbox) = inbox {
            inbox.remove_name();
        }
        if inner
            .registry
            .members()
            .is_ok_and(|members| members.is_empty())
        {
            inner.reclaim_inboxes();
        }
    }
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bus")
            .field("group", &self.inner.group)
            .finish_non_exhaustive()
    }
}

impl Listener {
    /// The command it listens to.
    pub fn command(&self) -> &str {
        &self.command
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.upgrade() {
            if !inner.participant.is_here() {
                return;
            }
            unpoisoned::lock(&inner.handlers).remove(&self.order);
            let _ = inner
                .registry
                .unlisten(inner.participant.token(), self.order);
            inner.pass_untaken(|request| request.listener == self.order);
        }
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("command", &self.command)
            .finish_non_exhaustive()
    }
}

/// Every listener, command by command (in the order each command was
/// first listened to), each command's in the order asked.
fn by_command(all: &[Registration]) -> Vec<ListenerInfo> {
    let mut order: Vec<&str> = Vec::new();
    for registration in all {
        if !order.contains(&registration.command.as_str()) {
            order.push(&registration.command);
        }
    }
    order
        .into_iter()
        .flat_map(|command| all.iter().filter(move |r| r.command == command))
        .map(info)
        .collect()
}

fn info(registration: &Registration) -> ListenerInfo {
    ListenerInfo {
        command: registration.command.clone(),
        pid: registration.pid,
    }
}
