//! Containers (Linux, as root): processes in different pid namespaces, as
//! containers that share `/dev/shm` run them, share locks and channels. A
//! pid (or a thread id) means nothing outside its namespace, so nothing
//! here may decide by one: two holders that are each pid 1 in their own
//! namespace are two holders.
//!
//! Each child runs under `unshare -p -f --kill-child`, so it is pid 1 of a
//! pid namespace of its own and dies with its `unshare`. Without root or
//! `unshare` the tests say so and pass, unless `SHMIO_REQUIRE_ROOT_TESTS` is
//! set (as `.ci/run` does), when they fail.

#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::time::Duration;

use shmio::{LockError, Mapping, NamedMutex};
use shmio_testkit::{arg, ready, unique_name, Child, Input, Spawn};

shmio_testkit::roles! {
    HoldUntilStdinCloses => hold_until_stdin_closes(),
    LockAfterWaiting => lock_after_waiting(),
    Count => count(),
    HoldMappingLock => hold_mapping_lock(),
}

/// Whether pid namespaces can be made here.
fn can_unshare() -> bool {
    shmio_testkit::root_with(&["unshare"])
}

/// `role` in a pid namespace of its own, where it is pid 1.
fn in_own_namespace(role: Role) -> Spawn {
    role.spawn()
        .wrapped_in("unshare", ["--pid", "--fork", "--kill-child", "--"])
        .limit(Duration::from_secs(60))
}

/// Every child checks that it is where the test says it is.
fn assert_pid_one() {
    assert_eq!(
        std::process::id(),
        1,
        "this child is pid 1 of its namespace"
    );
}

/// Locks the mutex MUTEX, says so, and unlocks when its stdin closes.
fn hold_until_stdin_closes() {
    assert_pid_one();
    let mutex = NamedMutex::create_or_open(&arg("MUTEX")).unwrap();
    let guard = mutex.lock().unwrap();
    ready();
    let mut line = String::new();
    let _ = BufReader::new(std::io::stdin()).read_line(&mut line);
    drop(guard);
}

/// Finds the mutex MUTEX held (by another pid 1, in another namespace),
/// says so, then waits for it and takes it.
fn lock_after_waiting() {
    assert_pid_one();
    let mutex = NamedMutex::create_or_open(&arg("MUTEX")).unwrap();
    match mutex.try_lock() {
        Ok(None) => {}
        Ok(Some(_)) => panic!("the other namespace's pid 1 holds it: it cannot be free"),
        Err(error) => panic!("another namespace's holder is not this thread: {error:?}"),
    }
    ready();
    let guard = mutex
        .lock_timeout(Duration::from_secs(30))
        .unwrap()
        .expect("the lock, once its holder let go");
    println!("locked");
    drop(guard);
}

/// Adds 1 to the counter at offset 0 of the mapping MAP, ROUNDS times,
/// each under `map.lock()`.
fn count() {
    assert_pid_one();
    let map = Mapping::open(&arg("MAP")).unwrap();
    let rounds: u64 = arg("ROUNDS").parse().unwrap();
    for _ in 0..rounds {
        let _guard = map.lock().unwrap();
        let value: u64 = map.read_value_at(0).unwrap();
        map.write_value_at(0, &(value + 1)).unwrap();
    }
}

/// Holds `map.lock()` on the mapping MAP until killed.
fn hold_mapping_lock() {
    assert_pid_one();
    let map = Mapping::open(&arg("MAP")).unwrap();
    let _guard = map.lock().unwrap();
    ready();
    shmio_testkit::until_killed();
}

/// Two holders that are each pid 1 of their own namespace are two holders:
/// the second waits, then gets the lock (it is not told it holds it).
#[test]
fn two_pid_ones_in_two_namespaces_take_turns() {
    if !can_unshare() {
        return;
    }
    let mutex = unique_name("pid-one");
    let mut first = in_own_namespace(Role::HoldUntilStdinCloses)
        .env("MUTEX", &mutex)
        .stdin(Input::Pipe)
        .start();
    first.wait_ready();
    let mut second = in_own_namespace(Role::LockAfterWaiting)
        .env("MUTEX", &mutex)
        .start();
    second.wait_ready();
    first.close_stdin();
    first.wait_success();
    second.expect_line("locked");
    second.wait_success();
}

/// Four processes in four namespaces, 10,000 increments each under
/// `map.lock()`: exactly 40,000.
#[test]
fn four_namespaces_count_exactly_under_the_lock() {
    if !can_unshare() {
        return;
    }
    const ROUNDS: u64 = 10_000;
    let name = unique_name("count");
    let map = Mapping::create(&name, 4096).unwrap();
    let mut children: Vec<Child> = (0..4)
        .map(|_| {
            in_own_namespace(Role::Count)
                .env("MAP", &name)
                .env("ROUNDS", ROUNDS.to_string())
                .start()
        })
        .collect();
    for child in &mut children {
        child.wait_success();
    }
    assert_eq!(map.read_value_at::<u64>(0).unwrap(), 4 * ROUNDS);
}

/// A holder killed in its namespace: the next locker, in another, is told
/// its owner died.
#[test]
fn a_holder_killed_in_its_namespace_is_reported_elsewhere() {
    if !can_unshare() {
        return;
    }
    let name = unique_name("killed");
    let map = Mapping::create(&name, 4096).unwrap();
    let mut holder = in_own_namespace(Role::HoldMappingLock)
        .env("MAP", &name)
        .start();
    holder.wait_ready();
    holder.kill();
    match map.lock() {
        Err(LockError::OwnerDied(guard)) => drop(guard),
        Ok(_) => panic!("the holder died holding it: the next locker must be told"),
        Err(LockError::Failed(error)) => panic!("{error}"),
    }
    drop(map.lock().expect("then a plain lock"));
}
