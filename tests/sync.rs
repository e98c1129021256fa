//! NamedMutex and NamedEvent across real processes (the test binary re-run
//! in child roles), and their errors.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shmio::{Error, EventMode, Mapping, NamedEvent, NamedMutex};
use shmio_testkit::{arg, unique_name, until_killed, wait_until, Child};

const LIMIT: Duration = Duration::from_secs(60);

shmio_testkit::roles! {
    Count => child_count(),
    Hold => child_hold(),
    WaitAuto => child_wait(EventMode::AutoReset),
    WaitManual => child_wait(EventMode::ManualReset),
    HoldMapping => child_hold_mapping(),
    LockOnce => child_lock_once(),
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
    let _guard = mutex.lock().unwrap();
    shmio_testkit::ready();
    until_killed()
}

/// Opens (or creates) the mapping NAME, locks it, says so, and waits to be killed.
fn child_hold_mapping() {
    let map = Mapping::create_or_open(&arg("NAME"), 4096).unwrap();
    let _guard = map.lock().unwrap();
    map.write_value_at(0, &1u64).unwrap(); // half of an update
    shmio_testkit::ready();
    until_killed()
}

/// Locks the mapping NAME once, as a library user would with `?`, and
/// prints what it got: `locked` or the error's text.
fn child_lock_once() {
    fn lock_once(name: &str) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let map = Mapping::open(name)?;
        let _guard = map.lock_timeout(LIMIT)?;
        Ok(())
    }
    match lock_once(&arg("NAME")) {
        Ok(()) => println!("got: locked"),
        Err(error) => println!("got: {error}"),
    }
}

/// What a `LockOnce` child got on the mapping `name`.
fn lock_in_another_process(name: &str) -> String {
    let child = Role::LockOnce.spawn().env("NAME", name).run();
    child.assert_success("lock once");
    let out = child.stdout_text();
    let got = out.lines().find_map(|line| line.split_once("got: "));
    got.map(|(_, got)| got.to_owned()).unwrap_or(out)
}

/// A holder's death cannot be lost: a caller that passes it on with `?`
/// (into a `Box<dyn Error + Send + Sync>`, as `anyhow` takes it) does not
/// clear it; every lock call, in this process and in another, is
/// `OwnerDied` until one takes the lock to repair and marks the data
/// consistent; from then on every call is plain, and a mapping's guard
/// leaves its cursor usable.
#[test]
fn an_owners_death_stays_until_the_data_is_marked_consistent() {
    use std::io::{Read, Seek, SeekFrom, Write};

    fn count_once(map: &Mapping) -> Result<u64, Box<dyn std::error::Error + Send + Sync>> {
        let _guard = map.lock()?;
        let count: u64 = map.read_value_at(0)?;
        map.write_value_at(0, &(count + 1))?;
        Ok(count + 1)
    }

    let name = unique_name("sticky");
    let mut map = Mapping::create(&name, 4096).unwrap();
    let _dead = Role::HoldMapping
        .spawn()
        .env("NAME", &name)
        .kill_when_ready();
    let passed_on = count_once(&map).unwrap_err();
    assert!(
        matches!(passed_on.downcast_ref(), Some(Error::OwnerDied { .. })),
        "{passed_on}"
    );
    let died = Error::OwnerDied {
        name: format!("{name}.mutex"),
    };
    assert_eq!(map.lock().map(drop), Err(died.clone()), "still, after `?`");
    assert_eq!(map.try_lock().map(drop), Err(died.clone()));
    assert_eq!(map.lock_timeout(LIMIT).map(drop), Err(died.clone()));
    assert!(map.mutex().unwrap().owner_died().unwrap());
    assert!(
        lock_in_another_process(&name).contains("died holding it"),
        "another process is told too"
    );

    let mut guard = map.lock_to_repair().unwrap();
    assert!(guard.owner_died());
    assert_eq!(map.read_value_at::<u64>(0).unwrap(), 1, "the half update");
    map.write_value_at(0, &0u64).unwrap();
    guard.mark_consistent();
    assert!(!guard.owner_died());
    // The cursor methods under the mapping's lock (`&mut map`).
    map.seek(SeekFrom::Start(8)).unwrap();
    map.write_all(b"repaired").unwrap();
    drop(guard);

    assert!(!map.mutex().unwrap().owner_died().unwrap());
    assert_eq!(count_once(&map).unwrap(), 1, "plain again");
    assert_eq!(lock_in_another_process(&name), "locked");
    let guard = map.try_lock().unwrap();
    map.seek(SeekFrom::Start(8)).unwrap();
    let mut read = [0u8; 8];
    map.read_exact(&mut read).unwrap();
    assert_eq!(&read, b"repaired");
    std::thread::scope(|scope| {
        scope.spawn(|| {
            assert_eq!(map.try_lock().map(drop), Err(Error::WouldBlock));
            assert!(map
                .lock_timeout(Duration::from_millis(50))
                .unwrap_err()
                .is_timed_out());
        });
    });
    drop(guard);
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
        Err(Error::OwnerDied { .. }) => {}
        Ok(_) => panic!("the holder died: lock must say OwnerDied"),
        Err(error) => panic!("{error}"),
    }
    let mut guard = map.lock_to_repair().unwrap();
    assert!(guard.owner_died());
    assert_eq!(
        map.read_value_at::<u64>(0).unwrap(),
        1,
        "the half update is there to repair"
    );
    guard.mark_consistent();
    drop(guard);
    drop(map.lock().expect("then a plain lock"));
}

/// `inventory::gc` removes stale names, but not the mutex a dead holder left
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
    let report = shmio::inventory::gc(false).unwrap();
    assert!(
        report.removed.iter().all(|info| info.name != mutex_name),
        "gc removed the mutex of a live mapping"
    );
    match map.lock() {
        Err(Error::OwnerDied { .. }) => {}
        Ok(_) => panic!("the holder died: lock must say OwnerDied"),
        Err(error) => panic!("{error}"),
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
        Err(Error::OwnerDied { .. }) => panic!("the old mapping's holder is not this one's"),
        Err(error) => panic!("{error}"),
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
            matches!(mutex.try_lock(), Err(shmio::Error::WouldBlock)),
            "round {round}: the holder holds it"
        );
        holder.kill(); // SIGKILL / TerminateProcess while holding the lock
        let started = Instant::now();
        match mutex.lock_timeout(Duration::from_secs(1)) {
            Err(Error::OwnerDied { .. }) => {}
            other => panic!("round {round}: expected OwnerDied, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(1), "round {round}");
        mutex.lock_to_repair().unwrap().mark_consistent();
        let guard = mutex.try_lock();
        assert!(
            guard.is_ok(),
            "round {round}: free again once repaired: {guard:?}"
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
    assert!(
        matches!(lock(), Err(Error::OwnerDied { .. })),
        "told until repaired, not once"
    );
    mutex.lock_to_repair().unwrap().mark_consistent();
    assert!(lock().is_ok(), "repaired, the mutex is usable again");
}

#[test]
fn the_mutex_is_not_recursive_and_excludes_threads() {
    let mutex = NamedMutex::create_or_open(&unique_name("recursive")).unwrap();
    assert!(!mutex.existed());
    let guard = mutex.lock().unwrap();
    match mutex.lock() {
        Err(Error::WouldDeadlock { .. }) => {}
        other => panic!("a second lock from the holding thread: {other:?}"),
    }
    std::thread::scope(|scope| {
        let other = scope.spawn(|| {
            assert!(
                matches!(mutex.try_lock(), Err(shmio::Error::WouldBlock)),
                "another thread is excluded"
            );
            let started = Instant::now();
            assert!(matches!(
                mutex.lock_timeout(Duration::from_millis(100)),
                Err(Error::TimedOut { .. })
            ));
            assert!(started.elapsed() >= Duration::from_millis(90));
        });
        other.join().unwrap();
    });
    drop(guard);
    let again = NamedMutex::create_or_open(mutex.name()).unwrap();
    assert!(again.existed());
    assert!(again.try_lock().is_ok());
}

/// Waits on the event (so many times) and reports each wake in the mapping.
fn child_wait(mode: EventMode) {
    let event = NamedEvent::create_or_open(&arg("NAME"), mode).unwrap();
    let board = Mapping::open(&arg("BOARD")).unwrap();
    board.atomic_u32(0).unwrap().fetch_add(1, Ordering::AcqRel); // waiting now
    if event.wait_timeout(LIMIT).is_ok() {
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
        event
            .wait_timeout(Duration::ZERO)
            .unwrap_err()
            .is_timed_out(),
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
    assert!(event.wait_timeout(Duration::ZERO).is_ok(), "still set");
    event.reset().unwrap();
    assert!(
        event
            .wait_timeout(Duration::ZERO)
            .unwrap_err()
            .is_timed_out(),
        "reset"
    );
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
        assert!(event.wait_timeout(wait).unwrap_err().is_timed_out());
        let took = started.elapsed();
        assert!(took >= wait, "returned early: {took:?} < {wait:?}");
        assert!(
            took < wait + Duration::from_secs(2),
            "returned late: {took:?}"
        );
    }
    assert!(
        matches!(
            NamedEvent::create_or_open(event.name(), EventMode::AutoReset),
            Err(Error::Mismatch { .. })
        ),
        "the other mode asked is a mismatch"
    );
    let opened = NamedEvent::options().create_or_open(event.name()).unwrap();
    assert!(opened.existed());
    assert_eq!(
        opened.mode(),
        EventMode::ManualReset,
        "no mode asked: the creator's holds"
    );
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
        Err(Error::InvalidOptions { .. })
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

/// An event says "not now" and "not in time" as every object does:
/// `WouldBlock` from `try_wait`, `TimedOut` from `wait_timeout`.
#[test]
fn an_event_would_block_and_times_out_as_every_object_does() {
    let name = unique_name("event-conventions");
    let event = NamedEvent::create_or_open(&name, EventMode::AutoReset).unwrap();
    assert_eq!(event.try_wait(), Err(Error::WouldBlock));
    assert_eq!(
        event.wait_timeout(Duration::from_millis(10)),
        Err(Error::TimedOut { name: name.clone() })
    );
    assert!(!event.is_set().unwrap());
    event.set().unwrap();
    assert!(event.is_set().unwrap(), "is_set takes nothing");
    assert_eq!(event.try_wait(), Ok(()));
    assert!(!event.is_set().unwrap(), "auto reset: taken");
}

/// Errors are values: cloned, compared, sent between threads, and
/// turned into `io::Error` and `Box<dyn Error + Send + Sync>` by `?`.
#[test]
fn errors_clone_compare_and_travel() {
    fn is_value<T: Clone + PartialEq + Send + Sync + 'static>(_: &T) {}
    let os = Error::Os {
        op: "open",
        target: "x".into(),
        source: std::io::Error::from_raw_os_error(2).into(),
    };
    is_value(&os);
    assert_eq!(os.clone(), os);
    assert_ne!(
        os,
        Error::Os {
            op: "open",
            target: "x".into(),
            source: std::io::Error::from_raw_os_error(13).into(),
        }
    );
    assert_eq!(os.kind(), std::io::ErrorKind::NotFound);
    let boxed: Box<dyn std::error::Error + Send + Sync> = Error::WouldBlock.into();
    assert!(boxed
        .downcast_ref::<Error>()
        .is_some_and(Error::is_would_block));
    let io: std::io::Error = Error::WouldBlock.into();
    assert_eq!(io.kind(), std::io::ErrorKind::WouldBlock);
}
