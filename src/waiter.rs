//! Sleeping on an object's doorbell, for a thread and for a future: the
//! [`Nap`] both take, and the process's waiter, which sleeps for every
//! future of the process at once.
//!
//! A waiter that found nothing counts itself in at the object's sleepers
//! (so whoever changes the object rings its doorbell), reads the doorbell's
//! word, looks once more, and only then sleeps while the word still reads
//! what it read ([`Nap`]): either the change is seen by that last look, or
//! its maker sees the sleeper and rings. A thread sleeps in the kernel
//! ([`Nap::sleep`]). A future cannot: it hands the word to the waiter
//! ([`Nap::start`]) and returns `Pending`.
//!
//! **The waiter** is one thread per [`sys::WATCH_MAX`] words (127 on Linux,
//! 63 on Windows), made when the first future sleeps and kept for the
//! process's life. Each sleeps on all of its words at once (`futex_waitv`
//! on Linux, `WaitForMultipleObjects` over the words' semaphores on
//! Windows; elsewhere it naps and looks), beside a doorbell of its own that
//! a new sleeper rings. When it wakes, it wakes every future whose word no
//! longer reads what that future read, and, of those on one word whose
//! naps are over, one (which looks for dead peers, as a sleeping thread
//! does, for them all; naps end on shared ticks of 10 ms), and sleeps
//! again on the rest. Idle futures put nothing on a CPU.
//!
//! **What it keeps.** A nap, and the waiter's entry for it, keep the
//! object's memory mapped and its doorbell open ([`KeepMapped`], an `Arc`
//! of the waker) while they live, so that a future leaked with
//! `mem::forget`, whose object is then dropped, leaves the waiter watching
//! memory that is still there (the entry goes at its nap's end).
//!
//! **After `fork()`** a child has none of its parent's threads: the first
//! future that sleeps in the child starts a waiter of its own.

use std::collections::HashMap;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker as TaskWaker};
use std::time::{Duration, Instant};

use crate::backoff::{Backoff, Pace};
use crate::error::Result;
use crate::mapping::{KeepMapped, Mapping};
use crate::sys;

/// How long a sleeping future naps before it looks again, for dead peers
/// and the like (a sleeping thread looks every 100 ms). Longer than a
/// thread's: a thousand idle futures must cost nothing, and one future per
/// word looks for the others (see `ShardState::take_due`).
pub(crate) const FUTURE_NAP: Duration = Duration::from_secs(1);

/// What a waiter whose spins and yields are spent does next.
pub(crate) enum Turn<T> {
    /// Look again at once (something was repaired).
    Again,
    /// The last look found it.
    Claimed(T),
    /// Sleep on the nap; a thread at most this long (then it looks for
    /// dead peers), a future at most [`FUTURE_NAP`].
    Sleep(Nap, Duration),
}

/// A future's progress from looking to sleeping: its [`Backoff`], then its
/// nap with the waiter.
pub(crate) struct Pause {
    backoff: Backoff,
    sleeping: Option<Sleeping>,
}

/// What a future does after a look that found nothing (see [`Pause::step`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Look again now (after a spin).
    Look,
    /// Return `Pending`: woken when it may look again.
    Pending,
    /// Count in and sleep (see [`Turn`]).
    Sleep,
}

impl Pause {
    /// A future that has not waited yet.
    pub(crate) fn new() -> Pause {
        Pause {
            backoff: Backoff::new(),
            sleeping: None,
        }
    }

    /// After a look that found nothing: a future asleep stays asleep until
    /// the waiter wakes it (its task's waker updated); one that was not
    /// spins, then yields to its executor (waking itself), then sleeps.
    #[inline]
    pub(crate) fn step(&mut self, cx: &mut Context<'_>) -> Step {
        if let Some(sleeping) = self.sleeping.take() {
            if !sleeping.is_over() {
                sleeping.wake_instead(cx.waker());
                self.sleeping = Some(sleeping);
                return Step::Pending;
            }
            sleeping.finish();
            return Step::Sleep;
        }
        match self.backoff.pace() {
            Pace::Spin => {
                std::hint::spin_loop();
                Step::Look
            }
            Pace::Yield => {
                cx.waker().wake_by_ref();
                Step::Pending
            }
            Pace::Sleep => Step::Sleep,
        }
    }

    /// Hands `nap` to the waiter (see [`Nap::start`]) for at most
    /// [`FUTURE_NAP`]; the future returns `Pending`.
    pub(crate) fn sleep(&mut self, nap: Nap, cx: &mut Context<'_>) -> Result<()> {
        self.sleep_for(nap, FUTURE_NAP, cx)
    }

    /// As [`sleep`](Self::sleep), for at most `timeout` (and at most
    /// [`FUTURE_NAP`]): for a future with a deadline of its own.
    pub(crate) fn sleep_for(
        &mut self,
        nap: Nap,
        timeout: Duration,
        cx: &mut Context<'_>,
    ) -> Result<()> {
        let timeout = timeout.min(FUTURE_NAP);
        self.sleeping = Some(nap.start(timeout, cx.waker())?);
        Ok(())
    }

    /// The future found what it waited for: its nap, if any, is over.
    #[inline]
    pub(crate) fn wake_up(&mut self) {
        if let Some(sleeping) = self.sleeping.take() {
            sleeping.finish();
        }
    }
}

/// A waiter counted in at an object's doorbell, about to sleep on it. Made
/// before the waiter's last look; counted out when dropped. It keeps the
/// object's memory mapped (and its doorbell open) while it lives, so that a
/// future holding it borrows nothing.
pub(crate) struct Nap {
    word: NonNull<AtomicU32>,
    seen: u32,
    sleepers: NonNull<AtomicU32>,
    bell: Arc<sys::Waker>,
    /// Keeps `word` and `sleepers` mapped.
    memory: KeepMapped,
}

// SAFETY: the two words lie in memory `memory` keeps mapped, and are only
// reached atomically; the rest is Send and Sync.
unsafe impl Send for Nap {}
// SAFETY: as for Send.
unsafe impl Sync for Nap {}

impl Nap {
    /// Counts a sleeper in at `sleepers` and reads the doorbell `word`,
    /// both in `memory`; the caller looks once more before it sleeps. The
    /// count pairs with the sequentially consistent change a waker makes
    /// before it reads the count: either the caller's look sees the
    /// change, or the waker sees the sleeper.
    pub(crate) fn new(
        word: &AtomicU32,
        sleepers: &AtomicU32,
        bell: &Arc<sys::Waker>,
        memory: &Mapping,
    ) -> Nap {
        sleepers.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let seen = word.load(Ordering::SeqCst);
        Nap {
            word: word.into(),
            seen,
            sleepers: sleepers.into(),
            bell: Arc::clone(bell),
            memory: memory.keep_mapped(),
        }
    }

    fn word(&self) -> &AtomicU32 {
        // SAFETY: in memory `self.memory` keeps mapped.
        unsafe { self.word.as_ref() }
    }

    /// Sleeps while the word reads what it read, at most `timeout`
    /// (forever when `None`); may return early: callers look again.
    pub(crate) fn sleep(self, timeout: Option<Duration>) {
        self.bell.wait(self.word(), self.seen, timeout);
    }

    /// Hands the nap to the process's waiter, which wakes `waker` once the
    /// word changes or is rung, or `timeout` passes; the caller returns
    /// `Pending` and looks again when polled.
    pub(crate) fn start(self, timeout: Duration, waker: &TaskWaker) -> Result<Sleeping> {
        let sleep = Sleep::start(Entry {
            word: self.word,
            expected: self.seen,
            until: on_tick(Instant::now() + timeout),
            nap: timeout,
            waker: waker.clone(),
            bell: Arc::clone(&self.bell),
            memory: self.memory.clone(),
        })?;
        Ok(Sleeping {
            nap: self,
            sleep,
            looks_again: false,
        })
    }
}

impl Drop for Nap {
    fn drop(&mut self) {
        // SAFETY: in memory `self.memory` keeps mapped.
        let sleepers = unsafe { self.sleepers.as_ref() };
        sleepers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A future's nap in the hands of the waiter. Dropped before it is over
/// (a future cancelled), it passes on a ring it may have taken.
pub(crate) struct Sleeping {
    nap: Nap,
    sleep: Sleep,
    /// Set by `finish`: the future looks again, so passes nothing on.
    looks_again: bool,
}

impl Sleeping {
    /// Whether the waiter has woken it (the word changed or was rung, or
    /// the nap's time is over): the future looks again.
    pub(crate) fn is_over(&self) -> bool {
        self.sleep.is_over()
    }

    /// Wakes `waker` from now on (a future moved to another task).
    pub(crate) fn wake_instead(&self, waker: &TaskWaker) {
        self.sleep.wake_instead(waker);
    }

    /// Ends a nap that is over, and the future looks again.
    pub(crate) fn finish(mut self) {
        self.looks_again = true;
    }
}

impl Drop for Sleeping {
    fn drop(&mut self) {
        // A ring since the last look may have woken this process's waiter
        // in another sleeper's stead (a futex wakes a count of sleepers, a
        // semaphore's release is taken by one). A future that will not
        // look again rings on, so that the message or the slot it told of
        // is not left unclaimed.
        let word = self.nap.word();
        if !self.looks_again && word.load(Ordering::SeqCst) != self.nap.seen {
            self.nap.bell.wake(word, 1);
        }
    }
}

/// What a sleeping future leaves with the waiter.
struct Entry {
    word: NonNull<AtomicU32>,
    expected: u32,
    /// When the nap is over (on a [`TICK`]).
    until: Instant,
    /// How long a nap is, to set the next `until` of a future that
    /// another looked for (see `watch`).
    nap: Duration,
    waker: TaskWaker,
    bell: Arc<sys::Waker>,
    /// Keeps `word` mapped while the entry lives.
    memory: KeepMapped,
}

// SAFETY: `word` points into memory `memory` keeps mapped, and is only
// read atomically; the rest is Send and Sync.
unsafe impl Send for Entry {}
// SAFETY: as for Send.
unsafe impl Sync for Entry {}

impl Entry {
    fn word(&self) -> &AtomicU32 {
        // SAFETY: the word lies in memory `memory` keeps mapped.
        unsafe { self.word.as_ref() }
    }

    fn address(&self) -> usize {
        self.word.as_ptr() as usize
    }
}

/// Naps end on ticks of this length, so that the waiter wakes once for the
/// many that end near one another.
const TICK: Duration = Duration::from_millis(10);

/// `at`, rounded up to the next [`TICK`] of this process's clock.
fn on_tick(at: Instant) -> Instant {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    let since = at.saturating_duration_since(start).as_nanos();
    let tick = TICK.as_nanos();
    let ticks = since.div_ceil(tick);
    start + Duration::from_nanos(u64::try_from(ticks * tick).unwrap_or(u64::MAX))
}

/// One waiter thread and what it watches.
struct Shard {
    doorbell: sys::Doorbell,
    state: Mutex<ShardState>,
}

#[derive(Default)]
struct ShardState {
    entries: HashMap<u64, Entry>,
    /// How many entries sleep on each word (by address).
    words: HashMap<usize, usize>,
    next_id: u64,
    /// Counts changes to `entries` (and to their naps' ends): the thread
    /// rebuilds what it watches only when this moved.
    generation: u64,
    /// The words the thread sleeps on now, with the values it sleeps while
    /// they hold, and until when (`None`: no time set): a new entry the
    /// thread already sleeps for need not ring it.
    watching: HashMap<usize, u32>,
    asleep_until: Option<Instant>,
}

impl ShardState {
    fn has_room_for(&self, word: usize) -> bool {
        self.words.contains_key(&word) || self.words.len() < sys::WATCH_MAX
    }

    /// Whether the thread's current sleep already ends for `entry`.
    fn covers(&self, entry: &Entry) -> bool {
        self.watching.get(&entry.address()) == Some(&entry.expected)
            && self.asleep_until.is_some_and(|until| until <= entry.until)
    }

    fn add(&mut self, entry: Entry) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        *self.words.entry(entry.address()).or_insert(0) += 1;
        self.entries.insert(id, entry);
        self.generation += 1;
        id
    }

    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.entries.remove(&id)?;
        self.generation += 1;
        let address = entry.address();
        if let Some(count) = self.words.get_mut(&address) {
            *count -= 1;
            if *count == 0 {
                self.words.remove(&address);
            }
        }
        Some(entry)
    }

    /// Takes out the entries that are due: every one whose word changed,
    /// and, of those on one word whose naps are over, one (the future that
    /// looks for dead peers for them all, each handle's look being the
    /// same); the others on that word nap again.
    fn take_due(&mut self, now: Instant, due: &mut Vec<Entry>) {
        let mut looking: HashMap<usize, u64> = HashMap::new();
        let mut changed = Vec::new();
        for (id, entry) in &self.entries {
            if entry.word().load(Ordering::SeqCst) != entry.expected {
                changed.push(*id);
            } else if entry.until <= now {
                looking.entry(entry.address()).or_insert(*id);
            }
        }
        for id in changed.into_iter().chain(looking.values().copied()) {
            if let Some(entry) = self.remove(id) {
                due.push(entry);
            }
        }
        for entry in self.entries.values_mut() {
            if entry.until <= now {
                entry.until = on_tick(now + entry.nap);
                self.generation += 1;
            }
        }
    }
}

/// The waiter threads of this process (`None` until a future first
/// sleeps), and the process they were started in.
static WAITER: Mutex<Option<(sys::Origin, Vec<Arc<Shard>>)>> = Mutex::new(None);

/// A future's entry with the waiter; dropping it takes the entry back.
struct Sleep {
    shard: Arc<Shard>,
    id: u64,
}

impl Sleep {
    /// Gives `entry` to a waiter thread with room for its word, starting
    /// one if none has.
    fn start(entry: Entry) -> Result<Sleep> {
        let shard = shard_for(entry.address())?;
        let (id, covered) = {
            let mut state = crate::unpoisoned::lock(&shard.state);
            let covered = state.covers(&entry);
            (state.add(entry), covered)
        };
        if !covered {
            shard.doorbell.ring();
        }
        Ok(Sleep { shard, id })
    }

    fn is_over(&self) -> bool {
        !crate::unpoisoned::lock(&self.shard.state)
            .entries
            .contains_key(&self.id)
    }

    fn wake_instead(&self, waker: &TaskWaker) {
        let mut state = crate::unpoisoned::lock(&self.shard.state);
        if let Some(entry) = state.entries.get_mut(&self.id) {
            entry.waker.clone_from(waker);
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        let (entry, last_on_word) = {
            let mut state = crate::unpoisoned::lock(&self.shard.state);
            match state.remove(self.id) {
                Some(entry) => {
                    let last = !state.words.contains_key(&entry.address());
                    (Some(entry), last)
                }
                None => (None, false),
            }
        };
        // The thread holds the word in its current sleep: ring it up, so
        // that it lets go of the memory now rather than at a later wake.
        if last_on_word {
            self.shard.doorbell.ring();
        }
        drop(entry);
    }
}

/// The waiter thread with room for the word at `address`, started if none
/// has room (or none runs in this process yet).
fn shard_for(address: usize) -> Result<Arc<Shard>> {
    let mut waiter = crate::unpoisoned::lock(&WAITER);
    let origin = sys::Origin::here();
    let shards = match waiter.as_mut() {
        Some((made_in, shards)) if *made_in == origin => shards,
        _ => {
            // First use, or a forked child: the parent's threads are not here.
            &mut waiter.insert((origin, Vec::new())).1
        }
    };
    if let Some(shard) = shards
        .iter()
        .find(|shard| crate::unpoisoned::lock(&shard.state).has_room_for(address))
    {
        return Ok(Arc::clone(shard));
    }
    let shard = Arc::new(Shard {
        doorbell: sys::Doorbell::new()?,
        state: Mutex::new(ShardState::default()),
    });
    let watched = Arc::clone(&shard);
    std::thread::Builder::new()
        .name("shmio-waiter".into())
        .spawn(move || watch(&watched))
        .map_err(|error| sys::io_error("start", "the waiter thread", error))?;
    shards.push(Arc::clone(&shard));
    Ok(shard)
}

/// A word a waiter thread sleeps on, and what keeps it there.
struct Watched {
    word: NonNull<AtomicU32>,
    expected: u32,
    bell: Arc<sys::Waker>,
    _memory: KeepMapped,
}

/// A waiter thread's life: wake what is due, sleep on the rest. A wake
/// that changed nothing (a timeout of Windows' slice, a ring for another
/// process's sleeper) costs a look at each word, not at each entry.
fn watch(shard: &Shard) -> ! {
    let mut due = Vec::new();
    let mut watched: Vec<Watched> = Vec::new();
    // The entries' generation `watched` was built for, and the earliest
    // end of a nap then.
    let mut built: Option<(u64, Option<Instant>)> = None;
    loop {
        let seen = shard.doorbell.seen();
        let until = {
            let mut state = crate::unpoisoned::lock(&shard.state);
            let now = Instant::now();
            let unchanged = built.is_some_and(|(generation, until)| {
                generation == state.generation && until.is_none_or(|until| now < until)
            }) && watched.iter().all(|watched| {
                // SAFETY: `_memory` beside it keeps the word mapped.
                unsafe { watched.word.as_ref() }.load(Ordering::SeqCst) == watched.expected
            });
            if unchanged {
                built.and_then(|(_, until)| until)
            } else {
                built = None;
                watched.clear();
                state.take_due(now, &mut due);
                let mut watching = std::mem::take(&mut state.watching);
                watching.clear();
                let mut moved = false;
                for entry in state.entries.values() {
                    match watching.get(&entry.address()) {
                        // Two futures read the word at different values:
                        // it moved since one of them looked; look again.
                        Some(expected) => moved |= *expected != entry.expected,
                        None => {
                            watching.insert(entry.address(), entry.expected);
                            watched.push(Watched {
                                word: entry.word,
                                expected: entry.expected,
                                bell: Arc::clone(&entry.bell),
                                _memory: entry.memory.clone(),
                            });
                        }
                    }
                }
                let until = state.entries.values().map(|entry| entry.until).min();
                if moved || !due.is_empty() {
                    watching.clear();
                    state.asleep_until = None;
                } else {
                    state.asleep_until = until;
                    built = Some((state.generation, until));
                }
                state.watching = watching;
                if moved {
                    continue;
                }
                until
            }
        };
        if !due.is_empty() {
            for entry in due.drain(..) {
                entry.waker.wake();
            }
            continue;
        }
        let watches: Vec<sys::Watch<'_>> = watched
            .iter()
            .map(|watched| sys::Watch {
                // SAFETY: `_memory` beside it keeps the word mapped.
                word: unsafe { watched.word.as_ref() },
                expected: watched.expected,
                bell: &watched.bell,
            })
            .collect();
        let timeout = until.map(|until| until.saturating_duration_since(Instant::now()));
        if timeout != Some(Duration::ZERO) {
            sys::wait_any(&shard.doorbell, seen, &watches, timeout);
        }
    }
}
