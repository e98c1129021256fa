//! What every handle of one member shares, and the rooms beside it work
//! on: [`Inner`] (the dispatch thread holds it too), the mailroom's state,
//! the messages spilled, what answers a listener's requests, and the bus's
//! timings. Nothing here acts: the rooms (`membership`, `mailroom`,
//! `calling`, `dispatch`) add `Inner`'s methods, each for one job.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::channel::{Channel, ChannelGeometry};
use crate::owner::Trust;
use crate::participants::Participant;

use super::registry::{Registration, Registry};
use super::wire::{self, Outcome};

/// How often a waiting caller looks whether the listener it waits on is alive.
pub(super) const LIVENESS_INTERVAL: Duration = Duration::from_millis(100);
/// The longest a reader of the inbox waits in one go before looking around.
pub(super) const READ_SLICE: Duration = Duration::from_millis(50);
/// How often, and how far apart, a dead member's inbox name is tried for
/// removal while its dying process may still hold it.
pub(super) const RECLAIM_TRIES: u32 = 20;
pub(super) const RECLAIM_NAP: Duration = Duration::from_millis(5);
/// How often an interruptible call asks whether to give up while it waits.
pub(super) const INTERRUPT_INTERVAL: Duration = Duration::from_millis(20);
/// How long a listener tries to deliver a reply to a caller whose inbox is full.
pub(super) const REPLY_PATIENCE: Duration = Duration::from_secs(5);
/// How long a spilled post or reply waits for its receiver to take it
/// (a spilled request waits as long as its call).
pub(super) const SPILL_PATIENCE: Duration = Duration::from_secs(60);
/// Inbox incarnations a member tries before it gives up on finding one
/// whose name no process of an earlier group of the same name still holds
/// (and spill numbers a sender tries, likewise).
pub(super) const JOIN_TRIES: u32 = 8;
/// How long a member that only calls keeps its inbox after its last call.
pub(super) const INBOX_IDLE: Duration = Duration::from_secs(1);

/// What every handle of one member shares: the dispatch thread holds it too.
pub(super) struct Inner {
    // Fields drop in order. The inboxes go before the seat and the
    // registry: while this member holds an inbox named after a token, the
    // group (and so the dealing of its tokens) must not start afresh.
    pub(super) mailroom: Mutex<Mailroom>,
    /// Other members' inboxes, by token, with their incarnations.
    pub(super) outboxes: Mutex<BTreeMap<u32, (u32, Arc<Channel>)>>,
    pub(super) participant: Participant,
    /// The shape of this member's inbox, when it makes one.
    pub(super) geometry: ChannelGeometry,
    pub(super) registry: Registry,
    pub(super) group: String,
    pub(super) trust: Trust,
    pub(super) permissions: u32,
    pub(super) next_id: AtomicU64,
    /// Signalled when a reply is filed, a request queued, or the inbox let
    /// go by its reader, if anyone sleeps on it.
    pub(super) stirred: Condvar,
    /// This member's listeners, by registration order.
    pub(super) handlers: Mutex<BTreeMap<u64, Answerer>>,
    /// The registry's listeners, as of a change count.
    pub(super) cache: Mutex<(u64, Arc<Vec<Registration>>)>,
    /// The registry's change count when this member last let go of the
    /// inboxes of members that had gone.
    pub(super) departures_seen: AtomicU64,
    /// The messages this member spilled to mappings of their own, held
    /// until their receivers take them (see `wire`), and how many.
    pub(super) spills: Mutex<Vec<Spill>>,
    pub(super) spilling: AtomicUsize,
    pub(super) next_spill: AtomicU64,
    pub(super) leaving: AtomicBool,
}

/// Who reads this member's inbox, and what its reader found for the
/// others: under one lock, so that a thread checks it and sleeps on
/// [`Inner::stirred`] without missing a change.
#[derive(Default)]
pub(super) struct Mailroom {
    /// This member's inbox, while it has one (see the module docs). A
    /// reader reads through a clone of it, with the mailroom let go.
    pub(super) inbox: Option<Arc<Channel>>,
    /// The incarnation of `inbox`, or of the last one.
    pub(super) incarnation: u32,
    /// Whether the inbox stays until the member leaves (it listens).
    pub(super) permanent: bool,
    /// Calls made so far: the keeper lets go of the inbox once a whole
    /// [`INBOX_IDLE`] went by without one.
    pub(super) calls: u64,
    /// Replies waited for, by request id: `None` until it comes. (As
    /// many as threads calling at once: a list, kept allocated.)
    pub(super) pending: Vec<(u64, Option<Outcome>)>,
    /// Requests a caller read from the inbox, for the dispatch thread.
    pub(super) queued: VecDeque<wire::Request>,
    /// Requests for listeners the program answers, for [`Bus::next_request`].
    pub(super) polled: VecDeque<wire::Request>,
    /// Whether a thread is reading the inbox (one at a time).
    pub(super) reading: bool,
    /// What the reader reads into (taken while it reads), kept allocated.
    pub(super) buffer: Vec<u8>,
    /// Threads asleep on `stirred`. A wake-up is a system call, made only
    /// when someone sleeps: a lone caller and its listener make none.
    pub(super) sleepers: usize,
    /// Futures waiting for the mailroom to change (see `awaiting.rs`):
    /// woken, and forgotten, at each stir.
    pub(super) futures: Vec<std::task::Waker>,
}

impl Mailroom {
    /// Where the reply to request `id` goes, while it is waited for.
    pub(super) fn slot(&mut self, id: u64) -> Option<&mut Option<Outcome>> {
        self.pending
            .iter_mut()
            .find(|(waited, _)| *waited == id)
            .map(|(_, slot)| slot)
    }

    /// The reply to request `id`, if it came.
    pub(super) fn take_reply(&mut self, id: u64) -> Option<Outcome> {
        self.slot(id).and_then(Option::take)
    }

    /// Stops waiting for the reply to request `id`.
    pub(super) fn forget(&mut self, id: u64) {
        if let Some(at) = self.pending.iter().position(|(waited, _)| *waited == id) {
            self.pending.swap_remove(at);
        }
    }
}

/// A message too large for its receiver's inbox, in a mapping of its own
/// until the receiver takes it or `until` passes.
pub(super) struct Spill {
    pub(super) map: crate::Mapping,
    pub(super) until: Instant,
}

impl Spill {
    /// Whether the receiver has taken it (set the taken flag).
    pub(super) fn taken(&self) -> bool {
        self.map
            .atomic_u32(wire::SPILL_TAKEN)
            .is_ok_and(|taken| taken.load(Ordering::Acquire) == 1)
    }
}

pub(super) type Handler = dyn Fn(&[u8]) -> Outcome + Send + Sync;

/// What answers a listener's requests in this process.
#[derive(Clone)]
pub(super) enum Answerer {
    /// A handler, run by the dispatch thread.
    Handler(Arc<Handler>),
    /// A handler on a thread of its own, which takes its requests here.
    OwnThread(std::sync::mpsc::Sender<wire::Request>),
    /// The program, through [`Bus::next_request`].
    Program,
}

/// The listeners of one command, from the registry's cached listeners.
pub(super) struct Listeners<'a> {
    pub(super) all: Arc<Vec<Registration>>,
    pub(super) command: &'a str,
}

impl Listeners<'_> {
    pub(super) fn iter(&self) -> impl Iterator<Item = &Registration> {
        self.all
            .iter()
            .filter(|registration| registration.command == self.command)
    }
}
