//! The crash matrix: for each operation (create, open, write, lock held,
//! send, receive, drop) a child process is killed (SIGKILL, TerminateProcess
//! on Windows) in the middle of it, [`ROUNDS`] times at random moments of a
//! tight loop of that operation (the child counts its progress in shared
//! memory; the parent kills it when the count reaches a random target).
//! After each kill the survivors carry on: names still open and create,
//! data is whole except for the documented one locked section or one
//! message, the lock reports `OwnerDied`, the channel loses at most the one
//! message the dead process was working on, and (Linux) no name outlives
//! the next create or `inventory::gc`.
//!
//! Every test prints its seed; `SHMIO_CRASH_SEED=N` repeats it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shmio::{Channel, ChannelGeometry, Error, EventMode, Mapping, NamedEvent};
use shmio_testkit::{
    arg, checksum, shm_entries_with_prefix, shm_entry_exists, unique_name, until_killed,
    wait_until, Child, Rng, Spawn,
};

const ROUNDS: u64 = 20;
const LIMIT: Duration = Duration::from_secs(60);

// The progress mapping (see kill_at_progress): the child's count at 0, then
// what each test needs.
const PROGRESS_SIZE: u64 = 1 << 16;
const COUNT: u64 = 0;
/// Anomalies a child saw (torn or out-of-order data); must stay 0.
const BAD: u64 = 8;
/// The receiving child's bitmap of the seqs it took.
const BITS: u64 = 4096;

shmio_testkit::roles! {
    Create => child_create(),
    Open => child_open(),
    Write => child_write(),
    LockStall => child_lock_stall(),
    LockLoop => child_lock_loop(),
    LockOnce => child_lock_once(),
    Send => child_send(),
    Recv => child_recv(),
    Drop => child_drop(),
}

fn seed(test: &str) -> Rng {
    let seed = std::env::var("SHMIO_CRASH_SEED")
        .ok()
        .map(|s| s.parse().expect("SHMIO_CRASH_SEED is a number"))
        .unwrap_or_else(Rng::fresh_seed);
    println!("{test}: SHMIO_CRASH_SEED={seed}");
    Rng::new(seed)
}

fn word(map: &Mapping, offset: u64) -> &AtomicU64 {
    map.atomic_u64(offset).unwrap()
}

/// The child's side of the progress mapping.
fn progress() -> Mapping {
    Mapping::open(&arg("PROGRESS")).unwrap()
}

fn bump(progress: &Mapping) {
    word(progress, COUNT).fetch_add(1, Ordering::AcqRel);
}

/// A fresh progress mapping for a child: its name (for the child's
/// PROGRESS) and the parent's handle.
fn progress_mapping() -> (String, Mapping) {
    let name = unique_name("progress");
    let map = Mapping::create(&name, PROGRESS_SIZE).expect("the progress mapping");
    (name, map)
}

/// Starts `child` with PROGRESS, the name of a fresh mapping of
/// [`PROGRESS_SIZE`] bytes whose first `u64` the child bumps as it works
/// (the rest is the test's to use); waits until it reaches `target`, kills
/// the child (SIGKILL, TerminateProcess on Windows) and reaps it. Returns
/// the child (for its handle: while it is open, Windows gives the dead
/// process's id to no one else), the progress mapping and the count the
/// child had reached when it died. Panics if the child exits on its own
/// first.
fn kill_at_progress(child: Spawn, target: u64) -> (Child, Mapping, u64) {
    let (progress_name, progress) = progress_mapping();
    let mut child = child.env("PROGRESS", progress_name).start();
    let count = word(&progress, COUNT);
    wait_until(
        &format!("{} to reach {target}", child.what()),
        LIMIT,
        || {
            child.assert_running();
            count.load(Ordering::Acquire) >= target
        },
    );
    child.kill();
    let reached = count.load(Ordering::Acquire);
    (child, progress, reached)
}

/// The kind of object a test makes under a name: index `i` gets `KINDS[i % 3]`.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// A mapping, and its `NAME.mutex` (locked once).
    Mapping,
    Channel,
    Event,
}

const KINDS: [Kind; 3] = [Kind::Mapping, Kind::Channel, Kind::Event];
const SMALL_CHANNEL: ChannelGeometry = ChannelGeometry {
    capacity: 4,
    max_message_size: 64,
};

fn kind_of(i: u64) -> Kind {
    KINDS[(i % 3) as usize]
}

/// Made by a child under a name, held until dropped.
#[allow(dead_code)] // held only to be dropped
enum Held {
    Mapping(Mapping),
    Channel(Box<Channel>),
    Event(NamedEvent),
}

/// The child's side: creates (or opens) the object `name` of `kind`.
fn make(kind: Kind, name: &str, must_create: bool) -> Held {
    match kind {
        Kind::Mapping => {
            let map = if must_create {
                Mapping::create(name, 4096).unwrap()
            } else {
                Mapping::create_or_open(name, 4096).unwrap()
            };
            map.write_at(0, b"made by a child").unwrap();
            drop(map.lock().expect("no one died holding it"));
            Held::Mapping(map)
        }
        Kind::Channel => {
            let channel = Channel::create_or_open(name, SMALL_CHANNEL).unwrap();
            Held::Channel(Box::new(channel))
        }
        Kind::Event => {
            let event = NamedEvent::create_or_open(name, EventMode::AutoReset).unwrap();
            Held::Event(event)
        }
    }
}

/// Every OS-visible entry an object of `kind` called `name` makes (Linux).
fn os_entries(kind: Kind, name: &str) -> Vec<String> {
    match kind {
        Kind::Mapping => vec![name.to_owned(), format!("{name}.mutex@mutex")],
        Kind::Channel => vec![name.to_owned()],
        Kind::Event => vec![format!("{name}@event")],
    }
}

/// The parent's side after a kill: creates `name` afresh (a stale name a
/// killed holder left is reclaimed), checks it is new and works, drops it.
fn recreate_and_use(kind: Kind, name: &str, why: &str) {
    match kind {
        Kind::Mapping => {
            let map = Mapping::create_or_open(name, 4096).unwrap();
            assert!(!map.existed(), "{why}: {name} has no live holder");
            assert_eq!(
                map.read_value_at::<[u8; 15]>(0).unwrap(),
                [0; 15],
                "{why}: fresh memory, not the dead child's"
            );
            map.write_at(0, b"parent").unwrap();
            match map.lock() {
                Ok(guard) => drop(guard),
                Err(e) => panic!("{why}: lock of a fresh {name}: {e:?}"),
            };
        }
        Kind::Channel => {
            let channel = Channel::create_or_open(name, SMALL_CHANNEL).unwrap();
            assert!(!channel.existed(), "{why}: {name} has no live holder");
            channel.send(b"after").unwrap();
            assert_eq!(channel.try_recv().unwrap(), b"after", "{why}");
            assert!(matches!(channel.try_recv(), Err(Error::Empty)), "{why}");
        }
        Kind::Event => {
            let event = NamedEvent::create_or_open(name, EventMode::AutoReset).unwrap();
            assert!(!event.existed(), "{why}: {name} has no live holder");
            assert!(
                event
                    .wait_timeout(Duration::ZERO)
                    .unwrap_err()
                    .is_timed_out(),
                "{why}: fresh"
            );
            event.set().unwrap();
            assert!(event.wait_timeout(Duration::ZERO).is_ok(), "{why}");
        }
    }
    if cfg!(target_os = "linux") {
        for entry in os_entries(kind, name) {
            assert!(!shm_entry_exists(&entry), "{why}: {entry} left after drop");
        }
    }
}

/// Linux: nothing left under /dev/shm whose name starts with `prefix`.
fn assert_no_entries(prefix: &str, why: &str) {
    let left = shm_entries_with_prefix(prefix);
    assert!(left.is_empty(), "{why}: left in /dev/shm: {left:?}");
}

// ---------------------------------------------------------------- create

const CREATE_MAX: u64 = 400;

/// Creates objects under fresh names BASE-0, BASE-1, ... (holding them
/// all), counting each before it starts.
fn child_create() {
    let base = arg("BASE");
    let progress = progress();
    let mut held = Vec::new();
    for i in 0..CREATE_MAX {
        bump(&progress);
        held.push(make(kind_of(i), &format!("{base}-{i}"), true));
    }
    until_killed()
}

#[test]
fn killed_while_creating() {
    let mut rng = seed("killed_while_creating");
    let mut graveyard: Vec<Child> = Vec::new();
    for round in 0..ROUNDS {
        let base = unique_name("create");
        let target = 1 + rng.below(CREATE_MAX / 2);
        let (dead, _progress, reached) =
            kill_at_progress(Role::Create.spawn().env("BASE", &base), target);
        graveyard.push(dead);
        // Names 0..reached were started; the last may be half made, and the
        // killed child held them all: each is stale, or was never linked.
        let why = format!("round {round}, killed at create {reached}");
        for i in 0..reached.min(CREATE_MAX) {
            recreate_and_use(kind_of(i), &format!("{base}-{i}"), &why);
        }
        if cfg!(target_os = "linux") {
            assert_no_entries(&base, &why);
        }
    }
}

// ------------------------------------------------------------------ open

const PATTERN_WORDS: usize = 64;

fn pattern() -> Vec<u64> {
    let mut words: Vec<u64> = (0..PATTERN_WORDS as u64 - 1)
        .map(|i| i * 0x0101_0101)
        .collect();
    words.push(checksum(&words));
    words
}

fn pattern_holds(map: &Mapping) -> bool {
    let words: [u64; PATTERN_WORDS] = map.read_value_at(0).unwrap();
    words[..] == pattern()[..]
}

/// Opens the parent's mapping (and its mutex), channel and event, checks
/// the mapping, drops them, over and over.
fn child_open() {
    let base = arg("BASE");
    let progress = progress();
    loop {
        let map = Mapping::open(&format!("{base}-map")).unwrap();
        if !pattern_holds(&map) {
            word(&progress, BAD).fetch_add(1, Ordering::AcqRel);
        }
        map.mutex().unwrap();
        let channel = Channel::open(&format!("{base}-chan")).unwrap();
        let event =
            NamedEvent::create_or_open(&format!("{base}-event"), EventMode::AutoReset).unwrap();
        assert!(event.existed());
        drop((map, channel, event));
        bump(&progress);
    }
}

#[test]
fn killed_while_opening() {
    let mut rng = seed("killed_while_opening");
    let base = unique_name("open");
    let map = Mapping::create(&format!("{base}-map"), 4096).unwrap();
    map.write_value_at(0, &pattern()[..]).unwrap();
    drop(map.lock().unwrap());
    let channel = Channel::create_or_open(&format!("{base}-chan"), SMALL_CHANNEL).unwrap();
    let event = NamedEvent::create_or_open(&format!("{base}-event"), EventMode::AutoReset).unwrap();
    let mut expected = vec![
        format!("{base}-map"),
        format!("{base}-map.mutex@mutex"),
        format!("{base}-chan"),
        format!("{base}-event@event"),
    ];
    expected.sort();
    let mut graveyard = Vec::new();
    for round in 0..ROUNDS {
        let target = 1 + rng.below(300);
        let (dead, progress, reached) =
            kill_at_progress(Role::Open.spawn().env("BASE", &base), target);
        graveyard.push(dead);
        let why = format!("round {round}, killed after {reached} opens");
        assert_eq!(word(&progress, BAD).load(Ordering::Acquire), 0, "{why}");
        // The parent's handles work and see the same data.
        assert!(pattern_holds(&map), "{why}: the data is whole");
        match map.lock() {
            Ok(guard) => drop(guard),
            Err(e) => panic!("{why}: the child never locked: {e:?}"),
        }
        channel.send(&round.to_le_bytes()).unwrap();
        assert_eq!(channel.try_recv().unwrap(), round.to_le_bytes(), "{why}");
        event.set().unwrap();
        assert!(event.wait_timeout(Duration::ZERO).is_ok(), "{why}");
        // Opening again works and finds the same objects.
        let again = Mapping::open(&format!("{base}-map")).unwrap();
        assert!(again.existed() && pattern_holds(&again), "{why}");
        assert_eq!(
            Channel::open(&format!("{base}-chan")).unwrap().geometry(),
            SMALL_CHANNEL
        );
        if cfg!(target_os = "linux") {
            assert_eq!(
                shm_entries_with_prefix(&base),
                expected,
                "{why}: no extra names"
            );
        }
    }
    drop((map, channel, event));
    if cfg!(target_os = "linux") {
        assert_no_entries(&base, "after the parent dropped everything");
    }
}

// ----------------------------------------------------------------- write

/// The write test's mapping: the published seq, then two slots of a block.
const PUBLISHED: u64 = 0;
const SLOT: u64 = 4096;
const WRITE_WORDS: usize = 1024; // seq, payload, checksum: 8 KiB
const SENTINEL: u64 = SLOT * 5;

fn write_block(seq: u64) -> Vec<u64> {
    let mut words = vec![seq];
    words.extend((1..WRITE_WORDS as u64 - 1).map(|i| seq.wrapping_mul(i) ^ i));
    words.push(checksum(&words));
    words
}

fn slot_offset(seq: u64) -> u64 {
    SLOT + (seq % 2) * (WRITE_WORDS as u64 * 8)
}

/// Whether the slot for `seq` holds `seq`'s block, whole.
fn slot_holds(map: &Mapping, seq: u64) -> bool {
    let words: [u64; WRITE_WORDS] = map.read_value_at(slot_offset(seq)).unwrap();
    words[0] == seq && words[WRITE_WORDS - 1] == checksum(&words[..WRITE_WORDS - 1])
}

/// Writes blocks through the cursor into two alternating slots, publishing
/// each seq once its block is whole.
fn child_write() {
    let progress = progress();
    let mut map = Mapping::open(&arg("NAME")).unwrap();
    let published = map.atomic_u64(PUBLISHED).unwrap().load(Ordering::Acquire);
    for seq in published + 1.. {
        let block = write_block(seq);
        // Word by word through the cursor: a long window to be killed in.
        map.set_position(slot_offset(seq));
        for word in block {
            map.write_value(&word).unwrap();
        }
        map.atomic_u64(PUBLISHED)
            .unwrap()
            .store(seq, Ordering::Release);
        bump(&progress);
    }
}

#[test]
fn killed_while_writing() {
    let mut rng = seed("killed_while_writing");
    let name = unique_name("write");
    let map = Mapping::create(&name, 1 << 16).unwrap();
    map.write_value_at(SENTINEL, &pattern()[..]).unwrap();
    let mut graveyard = Vec::new();
    let mut last = 0;
    let mut torn = 0;
    for round in 0..ROUNDS {
        let target = 1 + rng.below(2000);
        let (dead, _progress, reached) =
            kill_at_progress(Role::Write.spawn().env("NAME", &name), target);
        graveyard.push(dead);
        let why = format!("round {round}, killed after {reached} writes");
        let published = word(&map, PUBLISHED).load(Ordering::Acquire);
        // Published counts may run one ahead of the child's progress count.
        assert!(
            published == last + reached || published == last + reached + 1,
            "{why}: published {published} after {last}"
        );
        assert!(
            slot_holds(&map, published),
            "{why}: the published block is whole"
        );
        // The other slot holds the one before, or the one being written (may be torn).
        if published > 1 && !slot_holds(&map, published - 1) {
            torn += 1;
        }
        let sentinel: [u64; PATTERN_WORDS] = map.read_value_at(SENTINEL).unwrap();
        assert_eq!(sentinel[..], pattern()[..], "{why}: nothing else touched");
        let reopened = Mapping::open(&name).unwrap();
        assert!(
            slot_holds(&reopened, published),
            "{why}: a new handle sees it"
        );
        last = published;
    }
    println!("killed_while_writing: {ROUNDS} kills, {torn} caught mid-block");
    drop(map);
    if cfg!(target_os = "linux") {
        assert_no_entries(&name, "after the parent dropped the mapping");
    }
}

// ------------------------------------------------------------ lock held

/// The locked section's data: two counters kept equal, and a block.
const A: u64 = 0;
const B: u64 = 8;
const LOCKED_BLOCK: u64 = 4096;

/// Takes the lock, half-updates (A moves, B not yet), says so, and stalls.
fn child_lock_stall() {
    let map = Mapping::open(&arg("NAME")).unwrap();
    let _guard = map.lock().expect("the lock is free and consistent");
    word(&map, A).fetch_add(1, Ordering::AcqRel);
    shmio_testkit::ready();
    until_killed()
}

/// Over and over: lock, move A, rewrite the block, move B, unlock.
fn child_lock_loop() {
    let map = Mapping::open(&arg("NAME")).unwrap();
    let progress = progress();
    loop {
        let guard = match map.lock() {
            Ok(guard) => guard,
            Err(e) => panic!("the parent repairs before a child starts: {e:?}"),
        };
        let a = word(&map, A).load(Ordering::Acquire) + 1;
        word(&map, A).store(a, Ordering::Release);
        map.write_value_at(LOCKED_BLOCK, &write_block(a)[..])
            .unwrap();
        word(&map, B).store(a, Ordering::Release);
        drop(guard);
        // As much work outside the section, so kills land on both sides.
        std::hint::black_box(write_block(a));
        bump(&progress);
    }
}

/// Locks once (it must be free and consistent), moves both counters, exits.
fn child_lock_once() {
    let map = Mapping::open(&arg("NAME")).unwrap();
    let guard = match map.lock() {
        Ok(guard) => guard,
        Err(e) => panic!("after the repair the lock is plain: {e:?}"),
    };
    let a = word(&map, A).load(Ordering::Acquire) + 1;
    word(&map, A).store(a, Ordering::Release);
    map.write_value_at(LOCKED_BLOCK, &write_block(a)[..])
        .unwrap();
    word(&map, B).store(a, Ordering::Release);
    drop(guard);
}

fn block_holds(map: &Mapping, seq: u64) -> bool {
    let words: [u64; WRITE_WORDS] = map.read_value_at(LOCKED_BLOCK).unwrap();
    words[0] == seq && words[WRITE_WORDS - 1] == checksum(&words[..WRITE_WORDS - 1])
}

/// Under the lock: the repair the section's data needs after a holder died.
fn repair(map: &Mapping) {
    let a = word(map, A).load(Ordering::Acquire);
    word(map, B).store(a, Ordering::Release);
    map.write_value_at(LOCKED_BLOCK, &write_block(a)[..])
        .unwrap();
}

#[test]
fn killed_while_holding_lock() {
    let mut rng = seed("killed_while_holding_lock");
    let name = unique_name("lock");
    let map = Mapping::create(&name, 1 << 14).unwrap();
    map.write_value_at(LOCKED_BLOCK, &write_block(0)[..])
        .unwrap();
    // The parent does not open the mapping's mutex before the child dies
    // holding it: the child is then the mutex's only holder. The mutex must
    // still say OwnerDied (a regression: it used to go with its only holder,
    // and the parent's first lock returned Ok over half-updated data).
    // Killed for certain inside the section: the next lock says so.
    let _stalled = Role::LockStall.spawn().env("NAME", &name).kill_when_ready();
    match map.lock() {
        Err(Error::OwnerDied { .. }) => {
            let mut guard = map.lock_to_repair().unwrap();
            assert!(guard.owner_died());
            assert_eq!(
                (
                    word(&map, A).load(Ordering::Acquire),
                    word(&map, B).load(Ordering::Acquire)
                ),
                (1, 0),
                "the dead holder's half-update is there to repair"
            );
            repair(&map);
            guard.mark_consistent();
            drop(guard);
        }
        Ok(_) => panic!("a holder died: lock must say OwnerDied"),
        Err(e) => panic!("lock after a holder died: {e}"),
    }
    match map.mutex().unwrap().try_lock() {
        Ok(guard) => drop(guard),
        other => panic!("after the repair the lock is free and plain: {other:?}"),
    }

    // Killed at random moments of a lock-update-unlock loop.
    let mut graveyard = Vec::new();
    let mut owner_died = 0;
    for round in 0..ROUNDS {
        let before = word(&map, A).load(Ordering::Acquire);
        let target = 1 + rng.below(2000);
        let (dead, _progress, reached) =
            kill_at_progress(Role::LockLoop.spawn().env("NAME", &name), target);
        graveyard.push(dead);
        let why = format!("round {round}, killed after {reached} sections");
        let guard = match map.mutex().unwrap().lock_to_repair_timeout(LIMIT) {
            Ok(guard) if !guard.owner_died() => {
                // Killed outside the section: everything is whole.
                let (a, b) = (
                    word(&map, A).load(Ordering::Acquire),
                    word(&map, B).load(Ordering::Acquire),
                );
                assert_eq!(a, b, "{why}: no one died in the section");
                assert!(block_holds(&map, a), "{why}: the block is whole");
                guard
            }
            Ok(mut guard) => {
                // Killed inside: A may be one ahead of B, the block torn.
                owner_died += 1;
                let (a, b) = (
                    word(&map, A).load(Ordering::Acquire),
                    word(&map, B).load(Ordering::Acquire),
                );
                assert!(a == b || a == b + 1, "{why}: a {a}, b {b}");
                repair(&map);
                guard.mark_consistent();
                guard
            }
            Err(Error::TimedOut { .. }) => panic!("{why}: the lock stayed held by a dead process"),
            Err(e) => panic!("{why}: lock: {e}"),
        };
        let a = word(&map, A).load(Ordering::Acquire);
        assert!(
            a == before + reached || a == before + reached + 1,
            "{why}: {a} sections after {before}"
        );
        drop(guard);
    }
    println!("killed_while_holding_lock: {ROUNDS} kills, {owner_died} inside the section");

    // Another process takes the lock normally afterwards.
    let before = word(&map, A).load(Ordering::Acquire);
    Role::LockOnce
        .spawn()
        .env("NAME", &name)
        .start()
        .wait_success();
    let guard = map.lock().expect("plain after the child's clean unlock");
    assert_eq!(word(&map, A).load(Ordering::Acquire), before + 1);
    assert_eq!(word(&map, B).load(Ordering::Acquire), before + 1);
    assert!(block_holds(&map, before + 1));
    drop(guard);
    drop(map);
    if cfg!(target_os = "linux") {
        assert_no_entries(&name, "after the parent dropped the mapping and its mutex");
    }
}

// ------------------------------------------------------- send and receive

const MESSAGE_WORDS: usize = 32;
const BIG_CHANNEL: ChannelGeometry = ChannelGeometry {
    capacity: 4,
    max_message_size: MESSAGE_WORDS as u32 * 8,
};
/// The producer id of the parent's end-of-round marker.
const END: u64 = u64::MAX;

fn message(producer: u64, seq: u64) -> Vec<u8> {
    let mut words = vec![producer, seq];
    words.extend((2..MESSAGE_WORDS as u64 - 1).map(|i| seq ^ (producer << 32) ^ i));
    words.push(checksum(&words));
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// A message's (producer, seq), or None if it is torn.
fn parse(bytes: &[u8]) -> Option<(u64, u64)> {
    if bytes.len() != MESSAGE_WORDS * 8 {
        return None;
    }
    let words: Vec<u64> = bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (words[MESSAGE_WORDS - 1] == checksum(&words[..MESSAGE_WORDS - 1]))
        .then_some((words[0], words[1]))
}

/// Sends END and receives until it comes back: every message queued before
/// it is then received. Returns them as (producer, seq), in order.
fn drain_to_end(channel: &Channel, why: &str) -> Vec<(u64, u64)> {
    let mut got = Vec::new();
    let mut end_sent = false;
    let deadline = Instant::now() + LIMIT;
    loop {
        assert!(
            Instant::now() < deadline,
            "{why}: the END marker never came back"
        );
        if !end_sent {
            match channel.try_send(&message(END, 0)) {
                Ok(()) => end_sent = true,
                Err(Error::Full) => {}
                Err(e) => panic!("{why}: send END: {e}"),
            }
        }
        match channel.recv_timeout(Duration::from_millis(1)) {
            Ok(bytes) => match parse(&bytes) {
                Some((END, _)) => return got,
                Some(found) => got.push(found),
                None => panic!("{why}: a torn message: {bytes:?}"),
            },
            Err(Error::TimedOut { .. }) => {}
            Err(e) => panic!("{why}: recv: {e}"),
        }
    }
}

/// Sends PRODUCER's messages 0, 1, ... counting each once `send` returned.
fn child_send() {
    let channel = Channel::open(&arg("CHANNEL")).unwrap();
    let producer: u64 = arg("PRODUCER").parse().unwrap();
    let progress = progress();
    for seq in 0.. {
        channel.send(&message(producer, seq)).unwrap();
        bump(&progress);
    }
}

/// Messages of up to 1 MiB: their payloads live in the channel's pool of
/// chunks, which a sender killed at any point must not leak.
const POOLED_CHANNEL: ChannelGeometry = ChannelGeometry {
    capacity: 4,
    max_message_size: 1 << 20,
};

#[test]
fn killed_while_sending() {
    killed_while_sending_on(BIG_CHANNEL, "killed_while_sending");
}

#[test]
fn killed_while_sending_through_a_pool() {
    killed_while_sending_on(POOLED_CHANNEL, "killed_while_sending_through_a_pool");
}

fn killed_while_sending_on(geometry: ChannelGeometry, test: &str) {
    let mut rng = seed(test);
    let name = unique_name("send");
    let channel = Channel::create_or_open(&name, geometry).unwrap();
    // Windows reuses a dead process's id once its last handle closes: keep
    // the killed children's handles until the end (see src/channel/ring.rs).
    let mut graveyard = Vec::new();
    let mut lost = 0;
    for round in 0..ROUNDS {
        let target = 1 + rng.below(1000);
        // The parent receives while the child sends: spawn, receive, kill.
        let (progress_name, progress) = progress_mapping();
        let mut child = Role::Send
            .spawn()
            .env("CHANNEL", &name)
            .env("PRODUCER", round.to_string())
            .env("PROGRESS", progress_name)
            .start();
        let mut got = Vec::new();
        wait_until("the sender to reach its target", LIMIT, || {
            if let Some(status) = child.exited() {
                panic!("round {round}: the sender exited: {status}");
            }
            match channel.try_recv() {
                Ok(bytes) => got.push(parse(&bytes).expect("a whole message")),
                Err(Error::Empty) => {}
                Err(e) => panic!("round {round}: recv: {e}"),
            }
            word(&progress, COUNT).load(Ordering::Acquire) >= target
        });
        child.kill();
        graveyard.push(child);
        let reached = word(&progress, COUNT).load(Ordering::Acquire);
        let why = format!("round {round}, sender killed after {reached} sends");
        got.extend(drain_to_end(&channel, &why));
        // Exactly seqs 0..n of this producer, in order, once each; n is
        // what it counted, or one more (sent, killed before counting). A
        // message it was in the middle of sending is dropped whole.
        let seqs: Vec<u64> = got
            .iter()
            .map(|&(producer, seq)| {
                assert_eq!(producer, round, "{why}: only this round's producer");
                seq
            })
            .collect();
        let n = seqs.len() as u64;
        assert!(
            seqs.iter().copied().eq(0..n),
            "{why}: in order, no gap, no duplicate: {seqs:?}"
        );
        assert!(n == reached || n == reached + 1, "{why}: {n} received");
        lost += u64::from(n == reached);
        channel.send(b"usable").unwrap();
        assert_eq!(channel.recv().unwrap(), b"usable", "{why}");
    }
    println!("{test}: {ROUNDS} kills; {lost} times the last message counted was the last received");
    drop(channel);
    if cfg!(target_os = "linux") {
        assert_no_entries(&name, "after the parent dropped the channel");
    }
    drop(graveyard);
}

/// Receives, checks each message and marks its seq in the bitmap, then counts it.
fn child_recv() {
    let channel = Channel::open(&arg("CHANNEL")).unwrap();
    let progress = progress();
    let mut last = None;
    loop {
        let bytes = channel.recv().unwrap();
        match parse(&bytes) {
            Some((0, seq)) if last.is_none_or(|last| last < seq) => {
                last = Some(seq);
                word(&progress, BITS + seq / 64 * 8).fetch_or(1 << (seq % 64), Ordering::AcqRel);
            }
            _ => {
                word(&progress, BAD).fetch_add(1, Ordering::AcqRel);
            }
        }
        bump(&progress);
    }
}

#[test]
fn killed_while_receiving() {
    killed_while_receiving_on(BIG_CHANNEL, "killed_while_receiving");
}

#[test]
fn killed_while_receiving_through_a_pool() {
    killed_while_receiving_on(POOLED_CHANNEL, "killed_while_receiving_through_a_pool");
}

fn killed_while_receiving_on(geometry: ChannelGeometry, test: &str) {
    let mut rng = seed(test);
    let name = unique_name("recv");
    let channel = Channel::create_or_open(&name, geometry).unwrap();
    let mut graveyard = Vec::new();
    let mut lost = 0;
    for round in 0..ROUNDS {
        let target = 1 + rng.below(1000);
        let (progress_name, progress) = progress_mapping();
        let mut child = Role::Recv
            .spawn()
            .env("CHANNEL", &name)
            .env("PROGRESS", progress_name)
            .start();
        // Seqs restart each round (the bitmap is the round's); 0 is the producer.
        let mut next = 0u64;
        wait_until("the receiver to reach its target", LIMIT, || {
            if let Some(status) = child.exited() {
                panic!("round {round}: the receiver exited: {status}");
            }
            match channel.try_send(&message(0, next)) {
                Ok(()) => next += 1,
                Err(Error::Full) => {}
                Err(e) => panic!("round {round}: send: {e}"),
            }
            word(&progress, COUNT).load(Ordering::Acquire) >= target
        });
        child.kill();
        graveyard.push(child);
        let reached = word(&progress, COUNT).load(Ordering::Acquire);
        let why = format!("round {round}, receiver killed after {reached} receives");
        assert_eq!(
            word(&progress, BAD).load(Ordering::Acquire),
            0,
            "{why}: torn or out of order"
        );
        let rest = drain_to_end(&channel, &why);
        let mut previous = None;
        let mut parent_got = vec![false; next as usize];
        for (producer, seq) in rest {
            assert_eq!(producer, 0, "{why}");
            assert!(previous.is_none_or(|p| p < seq), "{why}: order");
            previous = Some(seq);
            parent_got[seq as usize] = true;
        }
        let child_got = |seq: u64| {
            word(&progress, BITS + seq / 64 * 8).load(Ordering::Acquire) & (1 << (seq % 64)) != 0
        };
        let mut missing = Vec::new();
        for seq in 0..next {
            match (child_got(seq), parent_got[seq as usize]) {
                (true, true) => panic!("{why}: seq {seq} delivered twice"),
                (false, false) => missing.push(seq),
                _ => {}
            }
        }
        // The message the receiver had taken when it died is lost with it.
        assert!(missing.len() <= 1, "{why}: lost {missing:?}");
        lost += missing.len();
        channel.send(b"usable").unwrap();
        assert_eq!(channel.recv().unwrap(), b"usable", "{why}");
    }
    println!("{test}: {ROUNDS} kills, {lost} messages lost with their receiver");
    drop(channel);
    if cfg!(target_os = "linux") {
        assert_no_entries(&name, "after the parent dropped the channel");
    }
    drop(graveyard);
}

// ------------------------------------------------------------------ drop

const DROP_NAMES: u64 = 6;

/// Over and over: makes BASE-0..6 (mappings with their mutex, channels,
/// events), then drops them one by one, counting every create and drop.
fn child_drop() {
    let base = arg("BASE");
    let progress = progress();
    loop {
        let mut held = Vec::new();
        for i in 0..DROP_NAMES {
            held.push(make(kind_of(i), &format!("{base}-{i}"), false));
            bump(&progress);
        }
        for object in held {
            drop(object);
            bump(&progress);
        }
    }
}

#[test]
fn killed_while_dropping() {
    let mut rng = seed("killed_while_dropping");
    let mut graveyard = Vec::new();
    let mut collected = 0;
    for round in 0..ROUNDS {
        let base = unique_name("drop");
        let target = 1 + rng.below(20 * DROP_NAMES);
        let (dead, _progress, reached) =
            kill_at_progress(Role::Drop.spawn().env("BASE", &base), target);
        graveyard.push(dead);
        let why = format!("round {round}, killed after {reached} creates and drops");
        // The names dropped for certain (the count reached covers them) are
        // gone at once, before any reclaim.
        let in_cycle = reached % (2 * DROP_NAMES);
        if cfg!(target_os = "linux") && in_cycle > DROP_NAMES {
            for i in 0..in_cycle - DROP_NAMES {
                for entry in os_entries(kind_of(i), &format!("{base}-{i}")) {
                    assert!(!shm_entry_exists(&entry), "{why}: {entry} was dropped");
                }
            }
        }
        // The rest may be stale: gc removes them (Linux, every other
        // round), or the next create reclaims them.
        if round % 2 == 1 {
            collected += collect_stale(&base, &why);
        }
        for i in 0..DROP_NAMES {
            recreate_and_use(kind_of(i), &format!("{base}-{i}"), &why);
        }
        if cfg!(target_os = "linux") {
            assert_no_entries(&base, &why);
        }
    }
    println!("killed_while_dropping: {ROUNDS} kills, gc removed {collected} stale names");
}

/// Linux: `inventory::gc` removes what the killed child left under `base`;
/// returns how many of those it removed. (Elsewhere there is no gc: 0.)
#[cfg(target_os = "linux")]
fn collect_stale(base: &str, why: &str) -> usize {
    let removed = shmio::inventory::gc(false).unwrap();
    assert_no_entries(base, &format!("{why}: after gc"));
    removed
        .removed
        .iter()
        .filter(|found| found.os_name.contains(base))
        .count()
}

#[cfg(not(target_os = "linux"))]
fn collect_stale(_base: &str, _why: &str) -> usize {
    0
}
