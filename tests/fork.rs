//! A forked child never acts for its parent: children made by `fork()` in
//! the test process use, close, leave behind or die with what they
//! inherited, and the parent's names, locks, seats and listeners stay.
//!
//! Windows has no `fork()`; this file is Unix only. The forks of one test
//! at a time (`SERIAL`), each child's work bounded by pipes its parent
//! writes or closes, and every wait for a child bounded by [`LIMIT`].
#![cfg(unix)]

use std::io::{PipeReader, PipeWriter, Read, Write};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use shmio::{
    Bus, Channel, ChannelGeometry, Error, EventMode, Mapping, NamedEvent, NamedMutex, Overflow,
    Topic,
};
use shmio_testkit::{shm_entry_exists, unique_name};

const LIMIT: Duration = Duration::from_secs(60);

/// Exit codes a child reports what went wrong with (0: all held).
const PANICKED: i32 = 101;

/// One forking test at a time: a fork copies whatever another test's
/// thread holds.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A child made by `fork()`, waited for (bounded) or killed.
struct Forked {
    pid: libc::pid_t,
}

/// Forks; the child runs `child` and exits with its code (101 if it
/// panicked), never returning into the test harness.
fn fork(child: impl FnOnce() -> i32) -> Forked {
    // SAFETY: the child runs only `child` and then `_exit`s: it never
    // returns into the test harness or runs the parent's exit handlers.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(PANICKED);
        // SAFETY: ends the child without unwinding or running destructors.
        unsafe { libc::_exit(code) };
    }
    Forked { pid }
}

impl Forked {
    /// Waits (at most LIMIT) for the child; its exit code, or the signal
    /// that ended it as 128 + the signal.
    fn wait(self) -> i32 {
        let start = Instant::now();
        loop {
            let mut status = 0;
            // SAFETY: waits without blocking for our own child.
            let done = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
            assert!(done >= 0, "waitpid: {}", std::io::Error::last_os_error());
            if done == self.pid {
                std::mem::forget(self);
                if libc::WIFEXITED(status) {
                    return libc::WEXITSTATUS(status);
                }
                return 128 + libc::WTERMSIG(status);
            }
            assert!(start.elapsed() < LIMIT, "the child ran past {LIMIT:?}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits for the child and asserts it exited with 0.
    fn wait_success(self) {
        let code = self.wait();
        assert_eq!(code, 0, "the child failed with {code}");
    }

    /// Kills the child with SIGKILL and waits for it.
    fn kill(self) {
        // SAFETY: a signal to our own child, not yet waited for.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        assert_eq!(self.wait(), 128 + libc::SIGKILL);
    }
}

impl Drop for Forked {
    /// A test that failed before waiting leaves no child running.
    fn drop(&mut self) {
        // SAFETY: as in `kill`.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
    }
}

/// A one-way signal between parent and child: a pipe.
fn signal() -> (PipeReader, PipeWriter) {
    std::io::pipe().unwrap()
}

/// Waits for one byte (or the other end closing): `true` for a byte.
fn heard(reader: &mut PipeReader) -> bool {
    let mut byte = [0u8];
    matches!(reader.read(&mut byte), Ok(1))
}

fn say(writer: &mut PipeWriter) {
    writer.write_all(&[1]).unwrap();
}

/// How a child leaves what it inherited.
#[derive(Clone, Copy, Debug)]
enum Leaving {
    /// Drops the handle, then exits.
    Closes,
    /// Exits through `exit` (the C library's exit handlers), handle held.
    Exits,
    /// `_exit`s, handle held.
    ExitsAtOnce,
    /// Is killed with SIGKILL, handle held.
    Killed,
}

const LEAVINGS: [Leaving; 4] = [
    Leaving::Closes,
    Leaving::Exits,
    Leaving::ExitsAtOnce,
    Leaving::Killed,
];

/// Forks a child that uses `handle` with `work` (its exit code unless 0),
/// then leaves it as `leaving` says; waits for the child.
fn child_leaves<T>(handle: &mut Option<T>, leaving: Leaving, work: impl FnOnce(&T) -> i32) {
    let (ready, ready_tx) = signal();
    let (mut ready, mut ready_tx) = (Some(ready), Some(ready_tx));
    let child = fork(|| {
        drop(ready.take());
        let code = work(handle.as_ref().unwrap());
        if code != 0 {
            return code;
        }
        match leaving {
            Leaving::Closes => {
                handle.take();
                0
            }
            Leaving::Exits => std::process::exit(0),
            Leaving::ExitsAtOnce => 0,
            Leaving::Killed => {
                say(ready_tx.as_mut().unwrap());
                std::thread::sleep(LIMIT);
                0
            }
        }
    });
    drop(ready_tx);
    match leaving {
        Leaving::Killed => {
            assert!(
                heard(ready.as_mut().unwrap()),
                "the child failed before it was killed"
            );
            child.kill();
        }
        _ => child.wait_success(),
    }
}

#[test]
fn a_child_never_removes_its_parents_mapping() {
    let _serial = serial();
    for leaving in LEAVINGS {
        let name = unique_name("fork-map");
        let mut map = Some(Mapping::create(&name, 4096).unwrap());
        map.as_ref().unwrap().write_value_at(0, &7u64).unwrap();
        child_leaves(&mut map, leaving, |map| {
            // The inherited mapping is the child's to use.
            match map.read_value_at::<u64>(0) {
                Ok(7) => {}
                _ => return 2,
            }
            i32::from(map.write_value_at(8, &8u64).is_err()) * 3
        });
        assert!(shm_entry_exists(&name), "{leaving:?}: the name went");
        let again = Mapping::open(&name).unwrap();
        assert_eq!(again.read_value_at::<u64>(8).unwrap(), 8, "{leaving:?}");
        let map = map.unwrap();
        drop(again);
        drop(map);
        assert!(!shm_entry_exists(&name), "{leaving:?}: the name stayed");
    }
}

#[test]
fn a_child_holds_an_inherited_mapping_as_its_own_from_its_first_use() {
    let _serial = serial();
    let name = unique_name("fork-own");
    let mut map = Some(Mapping::create(&name, 4096).unwrap());
    let (mut used, used_tx) = signal();
    let (mut close, close_tx) = signal();
    let (mut used_tx, mut close_tx) = (Some(used_tx), Some(close_tx));
    let child = fork(|| {
        drop(close_tx.take());
        if map.as_ref().unwrap().read_value_at::<u64>(0).is_err() {
            return 2;
        }
        say(used_tx.as_mut().unwrap());
        heard(&mut close);
        map.take();
        0
    });
    drop(used_tx);
    assert!(
        heard(&mut used),
        "the child failed before it used the mapping"
    );
    // The parent lets go first: the child, which used it, still holds the name.
    drop(map);
    assert!(
        shm_entry_exists(&name),
        "the parent's close removed the child's name"
    );
    assert!(Mapping::open(&name).is_ok());
    say(close_tx.as_mut().unwrap());
    child.wait_success();
    assert!(
        !shm_entry_exists(&name),
        "the child, the last holder, left the name"
    );
}

#[test]
fn a_child_that_never_uses_an_inherited_mapping_holds_nothing() {
    // As every child that execs at once: its parent's close is the last.
    let _serial = serial();
    let name = unique_name("fork-unused");
    let map = Mapping::create(&name, 4096).unwrap();
    let (mut close, close_tx) = signal();
    let mut close_tx = Some(close_tx);
    let child = fork(|| {
        drop(close_tx.take());
        heard(&mut close);
        0
    });
    drop(map);
    assert!(
        !shm_entry_exists(&name),
        "a child that never used it kept the name"
    );
    say(close_tx.as_mut().unwrap());
    child.wait_success();
}

#[test]
fn a_child_locks_as_itself_and_its_copy_of_a_guard_unlocks_nothing() {
    let _serial = serial();
    let name = unique_name("fork-lock");
    let map = Mapping::create(&name, 4096).unwrap();
    let mut guard = Some(map.lock().unwrap());
    let child = fork(|| {
        // The parent holds it: the child waits its turn, not "already held".
        match map
            .mutex()
            .unwrap()
            .lock_timeout(Duration::from_millis(100))
        {
            Err(Error::TimedOut { .. }) => {}
            Ok(_) => return 2,
            Err(Error::WouldDeadlock { .. }) => return 3,
            Err(_) => return 4,
        }
        // Its copy of the parent's guard lets go of nothing.
        guard.take();
        match map.mutex().unwrap().try_lock() {
            Err(Error::WouldBlock) => 0,
            _ => 5,
        }
    });
    child.wait_success();
    // Still the parent's: its thread is still told it holds it.
    assert!(matches!(
        map.mutex().unwrap().try_lock(),
        Err(Error::WouldDeadlock { .. })
    ));
    drop(guard);
    drop(map.lock().unwrap());
}

#[test]
fn a_child_never_removes_or_takes_its_parents_mutex() {
    let _serial = serial();
    for leaving in LEAVINGS {
        let name = unique_name("fork-mutex");
        let mut mutex = Some(NamedMutex::create_or_open(&name).unwrap());
        child_leaves(&mut mutex, leaving, |mutex| match mutex.lock() {
            Ok(guard) => {
                drop(guard);
                0
            }
            Err(_) => 2,
        });
        let mutex = mutex.unwrap();
        assert!(
            NamedMutex::open(&name).is_ok(),
            "{leaving:?}: the name went"
        );
        // Neither held by the child's leaving nor marked as an owner's death.
        let locked = mutex.try_lock().is_ok();
        assert!(locked, "{leaving:?}: the child's leaving changed the lock");
    }
}

#[test]
fn a_forked_child_that_dies_holding_the_lock_is_an_owner_that_died() {
    let _serial = serial();
    let name = unique_name("fork-died");
    let mutex = NamedMutex::create_or_open(&name).unwrap();
    let child = fork(|| match mutex.lock() {
        Ok(guard) => {
            std::mem::forget(guard);
            0
        }
        Err(_) => 2,
    });
    child.wait_success();
    match mutex.lock_timeout(LIMIT) {
        Err(Error::OwnerDied { .. }) => {}
        other => panic!("expected the owner's death, got {other:?}"),
    }
    mutex.lock_to_repair().unwrap().mark_consistent();
    drop(mutex.lock().unwrap());
}

#[test]
fn four_forked_children_count_exactly_under_the_lock() {
    const CHILDREN: u64 = 4;
    const INCREMENTS: u64 = 10_000;
    let _serial = serial();
    let name = unique_name("fork-count");
    let map = Mapping::create(&name, 4096).unwrap();
    let _mutex = map.mutex().unwrap(); // opened before the forks: inherited
    let children: Vec<Forked> = (0..CHILDREN)
        .map(|_| {
            fork(|| {
                for _ in 0..INCREMENTS {
                    let Ok(_guard) = map.lock() else { return 2 };
                    let count: u64 = map.read_value_at(0).unwrap();
                    map.write_value_at(0, &(count + 1)).unwrap();
                }
                0
            })
        })
        .collect();
    for child in children {
        child.wait_success();
    }
    assert_eq!(map.read_value_at::<u64>(0).unwrap(), CHILDREN * INCREMENTS);
}

#[test]
fn an_inherited_event_is_the_childs_own() {
    let _serial = serial();
    for leaving in LEAVINGS {
        let name = unique_name("fork-event");
        let event = NamedEvent::options()
            .reset(EventMode::ManualReset)
            .create(&name)
            .unwrap();
        let mut inherited = Some(event);
        child_leaves(&mut inherited, leaving, |event| {
            event.set().unwrap();
            0
        });
        let event = inherited.unwrap();
        assert!(event.wait_timeout(Duration::ZERO).is_ok(), "{leaving:?}");
        let again = NamedEvent::open(&name).unwrap();
        assert!(again.wait_timeout(Duration::ZERO).is_ok(), "{leaving:?}");
    }
}

#[test]
fn an_inherited_channel_is_refused_and_the_parents_messages_stay_its_own() {
    const MESSAGES: u64 = 200;
    let _serial = serial();
    for leaving in LEAVINGS {
        let name = unique_name("fork-channel");
        let geometry = ChannelGeometry {
            capacity: 256,
            max_message_size: 64,
        };
        let mut channel = Some(Channel::create_or_open(&name, geometry).unwrap());
        for seq in 0..MESSAGES {
            channel.as_ref().unwrap().send(&seq.to_le_bytes()).unwrap();
        }
        let (mut taken_rx, mut taken_tx) = signal();
        child_leaves(&mut channel, leaving, |channel| {
            // The inherited handle is the parent's participant: refused.
            if !matches!(channel.try_recv(), Err(Error::Inherited { .. })) {
                return 2;
            }
            if !matches!(channel.try_send(b"x"), Err(Error::Inherited { .. })) {
                return 3;
            }
            // Opened again, the channel is the child's: it takes half.
            let Ok(own) = Channel::open(channel.name()) else {
                return 4;
            };
            for _ in 0..MESSAGES / 2 {
                let Ok(message) = own.recv_timeout(LIMIT) else {
                    return 5;
                };
                if taken_tx.write_all(&message).is_err() {
                    return 6;
                }
            }
            0
        });
        drop(taken_tx);
        let mut taken = Vec::new();
        taken_rx.read_to_end(&mut taken).unwrap();
        let channel = channel.unwrap();
        let mut seen: Vec<u64> = taken
            .chunks_exact(8)
            .map(|bytes| u64::from_le_bytes(bytes.try_into().unwrap()))
            .collect();
        while let Ok(message) = channel.try_recv() {
            seen.push(u64::from_le_bytes(message.as_slice().try_into().unwrap()));
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..MESSAGES).collect::<Vec<_>>(), "{leaving:?}");
        // The parent's handle still sends and receives, under its name.
        assert!(shm_entry_exists(&name), "{leaving:?}");
        channel.send(b"still").unwrap();
        assert_eq!(channel.recv_timeout(LIMIT).unwrap(), b"still");
    }
}

/// A forked child's copies of a topic handle and of a subscriber are its
/// parent's participants: refused. What it subscribes and publishes itself
/// is its own, and a subscription it leaves behind (however it goes) holds
/// the parent's publisher back no longer than its life. The topic pools
/// its payloads (64 KiB messages under `Block`).
#[test]
fn an_inherited_topic_is_refused_and_a_childs_subscription_dies_with_it() {
    let _serial = serial();
    for leaving in LEAVINGS {
        let name = unique_name("fork-topic");
        let topic = Topic::options()
            .capacity(4)
            .max_message_size(64 << 10)
            .overflow(Overflow::Block)
            .create_or_open(&name)
            .unwrap();
        let subscriber = topic.subscribe().unwrap();
        topic.publish(b"before").unwrap();
        let mut held = Some((topic, std::cell::RefCell::new(subscriber)));
        child_leaves(&mut held, leaving, |(topic, subscriber)| {
            if !matches!(topic.publish(b"x"), Err(Error::Inherited { .. })) {
                return 2;
            }
            if !matches!(
                subscriber.borrow_mut().try_recv(),
                Err(Error::Inherited { .. })
            ) {
                return 3;
            }
            // A subscription through the inherited handle is the child's.
            let Ok(mut own) = topic.subscribe() else {
                return 4;
            };
            let Ok(publisher) = Topic::open(topic.name()) else {
                return 5;
            };
            if publisher.publish(b"from the child").is_err() {
                return 6;
            }
            if !matches!(own.recv_timeout(LIMIT), Ok(message) if message == b"from the child") {
                return 7;
            }
            // Left subscribed, at a message it never reads: only its death
            // lets the parent's publisher past it.
            std::mem::forget(own);
            0
        });
        let (topic, subscriber) = held.unwrap();
        let mut subscriber = subscriber.into_inner();
        assert_eq!(
            subscriber.recv_timeout(LIMIT).unwrap(),
            b"before",
            "{leaving:?}"
        );
        assert_eq!(
            subscriber.recv_timeout(LIMIT).unwrap(),
            b"from the child",
            "{leaving:?}"
        );
        for n in 0..8u8 {
            topic
                .publish_timeout(&[n], LIMIT)
                .unwrap_or_else(|e| panic!("{leaving:?}: message {n}: {e}"));
            assert_eq!(subscriber.recv_timeout(LIMIT).unwrap(), [n], "{leaving:?}");
        }
        assert!(shm_entry_exists(&name), "{leaving:?}");
    }
}

#[test]
fn an_inherited_bus_is_refused_and_the_parents_listeners_stay() {
    let _serial = serial();
    for leaving in LEAVINGS {
        let group = unique_name("fork-bus");
        let bus = Bus::join(&group).unwrap();
        let parent = std::process::id();
        let listener = bus
            .listen("who", move |(): ()| Ok::<_, String>(Some(parent)))
            .unwrap();
        let mut inherited = Some((bus, listener));
        child_leaves(&mut inherited, leaving, |(bus, _listener)| {
            let refused = bus.call::<_, u32>("who", &(), Duration::from_secs(1));
            if !matches!(refused, Err(Error::Inherited { .. })) {
                return 2;
            }
            if !matches!(bus.listeners("who"), Err(Error::Inherited { .. })) {
                return 3;
            }
            0
        });
        let (bus, listener) = inherited.unwrap();
        assert_eq!(bus.listeners("who").unwrap().len(), 1, "{leaving:?}");
        // Another process, joined anew, is answered by the parent.
        let caller = fork(|| {
            let Ok(own) = Bus::join(&group) else { return 2 };
            match own.call::<_, u32>("who", &(), LIMIT) {
                Ok(Some(pid)) if pid == parent => 0,
                _ => 3,
            }
        });
        caller.wait_success();
        drop(listener);
        drop(bus);
        assert!(
            shmio_testkit::shm_entries_with_prefix(&group).is_empty(),
            "{leaving:?}: the group left names behind"
        );
    }
}
