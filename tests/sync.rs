//! NamedMutex and NamedEvent across real processes (the test binary re-run
//! in child roles), and their errors.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shmio::{Error, EventMode, LockError, Mapping, NamedEvent, NamedMutex};
use shmio_testkit::{arg, unique_name, until_killed, wait_until, Child};

const LIMIT: Duration = Duration::from_secs(60);

shmio_testkit::roles! {
    Count => child_count(),
    Hold => child_hold(),
    WaitAuto => child_wait(EventMode::AutoReset),
    WaitManual => child_wait(EventMode::ManualReset),
    HoldMapping => child_hold_mapping(),
}

const PROCESSES: u32 = 8;
const INCREMENTS: u64 = 10_000;

/// Adds one to the counter at offset 0, INCREMENTS times, each under the mapping's lock.
fn child_count() {
    let map = Mapping::open(&arg("NAME")).unwrap();
    for _ in 0..INCREMENTS {
        let _guard = map.lock().unwrap();
        // A plain (non-atomic) read-modify-write: only the lock makes it exact.
        let count: u64 = map.read_value_at(0).unwrap();
        map.write_value_at(0, &(count + 1)).unwrap();
    }
}

#[test]
fn eight_processes_count_exactly_under_the_lock() {
    let name = unique_name("count");
    let map = Mapping::create(&name, 4096).unwrap();
    let _mutex = map.mutex().unwrap(); // keep the mutex alive between children
    let mut children: Vec<_> = (0..PROCESSES)
        .map(|_| Role::Count.spawn().env("NAME", &name).start())
        .collect();
    for child in &mut children {
        child.wait_success();
    }
    assert_eq!(
        map.read_value_at::<u64>(0).unwrap(),
        u64::from(PROCESSES) * INCREMENTS
    );
}

/// Takes the mutex, says so, and waits to be killed while holding it.
fn child_hold() {
    let mutex = NamedMutex::create_or_open(&arg("NAME")).unwrap();
    let _guard = mutex.lock().map_err(Error::from).unwrap();
    shmio_testkit::ready();
    until_killed()
}

/// Opens (or creates) the mapping NAME, locks it, says so, and waits to be killed.
fn child_hold_mapping() {
    let map = Mapping::create_or_open(&arg("NAME"), 4096).unwrap();
    let _guard = map.lock().map_err(Error::from).unwrap();
    map.write_value_at(0, &1u64).unwrap(); // half of an update
    shmio_testkit::ready();
    until_killed()
}

/// The mapping's mutex is opened on first lock, so the child that dies
/// holding it is its only holder; the parent, which holds the mapping but
/// never locked it, must still hear that the holder died (regression: the
/// mutex went with its only holder, and the next lock returned Ok).
#[test]
fn a_mapping_lock_held_by_its_only_holder_still_reports_owner_died() {
    let name = unique_name("only-holder");
    let map = Mapping::create(&name, 4096).unwrap();
    let _dead = Role::HoldMapping
        .spawn()
        .env("NAME", &name)
        .kill_when_ready();
    match map.lock() {
        Err(LockError::OwnerDied(guard)) => {
            assert_eq!(
                map.read_value_at::<u64>(0).unwrap(),
                1,
                "the half update is there to repair"
            );
            drop(guard);
        }
        Ok(_) => panic!("the holder died: lock must say OwnerDied"),
        Err(LockError::Failed(error)) => panic!("{error}"),
    }
    drop(map.lock().expect("then a plain lock"));
}

/// `registry::gc` removes stale names, but not the mutex a dead holder left
/// to a mapping that is still held: that would lose the OwnerDied news.
#[cfg(target_os = "linux")]
#[test]
fn gc_keeps_the_mutex_a_dead_holder_left_to_a_live_mapping() {
    let name = unique_name("gc-keeps");
    let map = Mapping::create(&name, 4096).unwrap();
    let _dead = Role::HoldMapping
        .spawn()
        .env("NAME", &name)
        .kill_when_ready();
    let mutex_name = format!("{name}.mutex@mutex");
    let report = shmio::registry::gc(false).unwrap();
    assert!(
        report.removed.iter().all(|info| info.name != mutex_name),
        "gc removed the mutex of a live mapping"
    );
    match map.lock() {
        Err(LockError::OwnerDied(guard)) => drop(guard),
        Ok(_) => panic!("the holder died: lock must say OwnerDied"),
        Err(LockError::Failed(error)) => panic!("{error}"),
    };
}

/// A mapping made afresh under the name of one whose holders all died does
/// not inherit the old mapping's dead lock holder.
#[test]
fn a_new_mapping_does_not_inherit_an_old_mappings_dead_holder() {
    let name = unique_name("old-holder");
    // The child is the mapping's only holder: the mapping and its mutex both go stale.
    let _dead = Role::HoldMapping
        .spawn()
        .env("NAME", &name)
        .kill_when_ready();
    let map = Mapping::create(&name, 4096).unwrap();
    assert!(!map.existed(), "a new mapping, not the dead one's");
    match map.lock() {
        Ok(guard) => drop(guard),
        Err(LockError::OwnerDied(_)) => panic!("the old mapping's holder is not this one's"),
        Err(LockError::Failed(error)) => panic!("{error}"),
    };
}

#[test]
fn a_killed_holder_never_wedges_the_mutex() {
    let name = unique_name("killed-holder");
    let mutex = NamedMutex::create_or_open(&name).unwrap();
    for round in 1..=20u32 {
        let mut holder = Role::Hold.spawn().env("NAME", &name).start();
        holder.wait_ready(); // the holder took the lock
        assert!(
            matches!(mutex.try_lock(), Ok(None)),
            "round {round}: the holder holds it"
        );
        holder.kill(); // SIGKILL / TerminateProcess while holding the lock
        let started = Instant::now();
        match mutex.lock_timeout(Duration::from_secs(1)) {
            Err(LockError::OwnerDied(guard)) => drop(guard),
            other => panic!("round {round}: expected OwnerDied, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(1), "round {round}");
        let guard = mutex.try_lock().expect("the repaired mutex locks normally");
        assert!(
            guard.is_some(),
            "round {round}: free again after the owner-died guard is dropped"
        );
    }
}

#[test]
fn owner_died_is_an_error_for_question_mark() {
    let name = unique_name("question-mark");
    let mutex = NamedMutex::create_or_open(&name).unwrap();
    let _dead = Role::Hold.spawn().env("NAME", &name).kill_when_ready();
    let lock = || -> shmio::Result<()> {
        let _guard = mutex.lock()?;
        Ok(())
    };
    match lock() {
        Err(e @ Error::OwnerDied { .. }) => assert!(e.to_string().contains(&name)),
        other => panic!("{other:?}"),
    }
    assert!(lock().is_ok(), "once told, the mutex is usable again");
}

#[test]
fn the_mutex_is_not_recursive_and_excludes_threads() {
    let mutex = NamedMutex::create_or_open(&unique_name("recursive")).unwrap();
    assert!(!mutex.existed());
    let guard = mutex.lock().unwrap();
    match mutex.lock() {
        Err(LockError::Failed(Error::WouldDeadlock { .. })) => {}
        other => panic!("a second lock from the holding thread: {other:?}"),
    }
    std::thread::scope(|scope| {
        let other = scope.spawn(|| {
            assert!(
                matches!(mutex.try_lock(), Ok(None)),
                "another thread is excluded"
            );
            let started = Instant::now();
            assert!(matches!(
                mutex.lock_timeout(Duration::from_millis(100)),
                Ok(None)
            ));
            assert!(started.elapsed() >= Duration::from_millis(90));
        });
        other.join().unwrap();
    });
    drop(guard);
    let again = NamedMutex::create_or_open(mutex.name()).unwrap();
    assert!(again.existed());
    assert!(again.try_lock().unwrap().is_some());
}

/// Waits on the event (so many times) and reports each wake in the mapping.
fn child_wait(mode: EventMode) {
    let event = NamedEvent::create_or_open(&arg("NAME"), mode).unwrap();
    let board = Mapping::open(&arg("BOARD")).unwrap();
    board.atomic_u32(0).unwrap().fetch_add(1, Ordering::AcqRel); // waiting now
    if event.wait_timeout(LIMIT).unwrap() {
        board.atomic_u32(4).unwrap().fetch_add(1, Ordering::AcqRel); // woken
    }
}

/// Starts `count` waiters in `role` (`WaitAuto` or `WaitManual`) on the event `name`.
fn spawn_waiters(count: u32, name: &str, role: Role) -> (Mapping, Vec<Child>) {
    let board_name = unique_name("board");
    let board = Mapping::create(&board_name, 4096).unwrap();
    let children = (0..count)
        .map(|_| {
            role.spawn()
                .env("NAME", name)
                .env("BOARD", &board_name)
                .start()
        })
        .collect();
    wait_until("the waiters to start", LIMIT, || {
        board.atomic_u32(0).unwrap().load(Ordering::Acquire) == count
    });
    (board, children)
}

fn woken(board: &Mapping) -> u32 {
    board.atomic_u32(4).unwrap().load(Ordering::Acquire)
}

#[test]
fn a_set_in_one_process_wakes_a_waiter_in_another() {
    let name = unique_name("wake");
    let event = NamedEvent::create_or_open(&name, EventMode::AutoReset).unwrap();
    let (board, mut children) = spawn_waiters(1, &name, Role::WaitAuto);
    event.set().unwrap();
    children[0].wait_success();
    assert_eq!(woken(&board), 1);
}

#[test]
fn auto_reset_wakes_one_waiter_per_set() {
    let name = unique_name("auto");
    let event = NamedEvent::create_or_open(&name, EventMode::AutoReset).unwrap();
    let (board, mut children) = spawn_waiters(2, &name, Role::WaitAuto);
    event.set().unwrap();
    wait_until("one waiter to wake", LIMIT, || woken(&board) == 1);
    // The other is still asleep, and the event was reset by the one woken.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(woken(&board), 1, "one set wakes one waiter");
    event.set().unwrap();
    wait_until("the second waiter to wake", LIMIT, || woken(&board) == 2);
    for child in &mut children {
        child.wait_success();
    }
    assert!(
        !event.wait_timeout(Duration::ZERO).unwrap(),
        "each set was consumed"
    );
}

#[test]
fn manual_reset_wakes_every_waiter_and_stays_set() {
    let name = unique_name("manual");
    let event = NamedEvent::create_or_open(&name, EventMode::ManualReset).unwrap();
    let (board, mut children) = spawn_waiters(3, &name, Role::WaitManual);
    event.set().unwrap();
    for child in &mut children {
        child.wait_success();
    }
    assert_eq!(woken(&board), 3);
    assert!(event.wait_timeout(Duration::ZERO).unwrap(), "still set");
    event.reset().unwrap();
    assert!(!event.wait_timeout(Duration::ZERO).unwrap(), "reset");
}

#[test]
fn event_timeouts_return_false_on_time() {
    let event =
        NamedEvent::create_or_open(&unique_name("timeout"), EventMode::ManualReset).unwrap();
    assert_eq!(event.mode(), EventMode::ManualReset);
    for wait in [
        Duration::ZERO,
        Duration::from_millis(50),
        Duration::from_millis(200),
    ] {
        let started = Instant::now();
        assert!(!event.wait_timeout(wait).unwrap());
        let took = started.elapsed();
        assert!(took >= wait, "returned early: {took:?} < {wait:?}");
        assert!(
            took < wait + Duration::from_secs(2),
            "returned late: {took:?}"
        );
    }
    let opened = NamedEvent::create_or_open(event.name(), EventMode::AutoReset).unwrap();
    assert!(opened.existed());
    if cfg!(not(windows)) {
        // Windows cannot say which mode an existing event has.
        assert_eq!(
            opened.mode(),
            EventMode::ManualReset,
            "the creator's mode holds"
        );
    }
}

#[test]
fn bad_names_are_typed_errors() {
    for name in ["", "a/b", "a\\b", "a\0b"] {
        assert!(
            matches!(
                NamedMutex::create_or_open(name),
                Err(Error::InvalidName { .. })
            ),
            "{name:?}"
        );
        assert!(
            matches!(
                NamedEvent::create_or_open(name, EventMode::AutoReset),
                Err(Error::InvalidName { .. })
            ),
            "{name:?}"
        );
    }
    let anonymous = Mapping::anonymous(4096).unwrap();
    assert!(matches!(
        anonymous.lock(),
        Err(LockError::Failed(Error::InvalidOptions { .. }))
    ));
}

#[test]
fn a_name_held_by_another_kind_of_object_is_a_typed_error() {
    let name = unique_name("kind");
    let _event = NamedEvent::create_or_open(&name, EventMode::AutoReset).unwrap();
    // A published object of another kind where the mutex's state would be.
    let junk = Mapping::create(&format!("{name}@mutex"), 4096).unwrap();
    junk.write_value_at(0, &u64::from_le_bytes(*b"notmutex"))
        .unwrap();
    junk.atomic_u32(8).unwrap().store(1, Ordering::Release);
    match NamedMutex::create_or_open(&name) {
        Err(e @ Error::WrongKind { .. }) => assert!(e.to_string().contains(&name)),
        other => panic!("{other:?}"),
    }
    // Windows: one namespace for sections and kernel mutexes; the mutex's
    // kernel object is named as the mutex is, so a section there is a clash.
    if cfg!(windows) {
        let other = unique_name("kind-section");
        let _section = Mapping::create(&other, 4096).unwrap();
        match NamedMutex::create_or_open(&other) {
            Err(e @ Error::WrongKind { .. }) => assert!(e.to_string().contains(&other)),
            other => panic!("{other:?}"),
        }
    }
}
