//! A hostile local user (Linux): every name in `/dev/shm` may be theirs.
//! Nothing shmio does may block on an entry someone else planted, remove
//! what shmio did not make, unlink a name that is no longer the object it
//! holds, or join another user's object unless told to trust its owner.
//!
//! The other user is `nobody` (uid 65534): entries are made by root and
//! handed to nobody with `lchown`, so the tests need root (without it they
//! say so and pass, unless `SHMIO_REQUIRE_ROOT_TESTS` is set, as `.ci/run`
//! does). The parts that need no other user run for anyone.

#![cfg(target_os = "linux")]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shmio::inventory;
use shmio::{
    Channel, ChannelGeometry, Error, EventMode, Mapping, NamedEvent, NamedMutex, Owner, Topic,
};
use shmio_testkit::{arg, unique_name};

const NOBODY: u32 = 65534;
/// Longer than any of these calls takes; a call still running then is hung.
const HUNG: Duration = Duration::from_secs(10);
const GEOMETRY: ChannelGeometry = ChannelGeometry {
    capacity: 4,
    max_message_size: 64,
};

shmio_testkit::roles! {
    Hold => child_hold(),
}

/// Holds the mapping NAME until killed.
fn child_hold() {
    let _map = Mapping::create_or_open(&arg("NAME"), 4096).unwrap();
    shmio_testkit::ready();
    shmio_testkit::until_killed()
}

/// `/dev/shm/NAME`.
fn shm(name: &str) -> PathBuf {
    Path::new("/dev/shm").join(name)
}

/// Runs `call` on another thread and returns what it returns, failing the
/// test if it has not returned after [`HUNG`] (the thread is left behind).
#[track_caller]
fn bounded<T: Send + 'static>(what: &str, call: impl FnOnce() -> T + Send + 'static) -> T {
    shmio_testkit::within(what, HUNG, call)
}

/// Makes a FIFO at `path`.
fn mkfifo(path: &Path) {
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        path,
        rustix::fs::Mode::from_raw_mode(0o666),
    )
    .expect("mkfifo");
}

/// Hands `path` (a link itself, not its target) to `nobody`.
fn give_to_nobody(path: &Path) {
    std::os::unix::fs::lchown(path, Some(NOBODY), Some(NOBODY)).expect("lchown to nobody");
}

fn can_chown() -> bool {
    shmio_testkit::root_with(&[])
}

#[track_caller]
fn expect_wrong_kind<T>(result: shmio::Result<T>, about: &str) {
    match result {
        Err(error @ Error::WrongKind { .. }) => {
            assert!(error.to_string().contains(about), "{error}");
        }
        Err(other) => panic!("expected WrongKind ({about}), got {other:?}"),
        Ok(_) => panic!("expected WrongKind ({about}), got success"),
    }
}

#[track_caller]
fn expect_foreign<T>(result: shmio::Result<T>) {
    match result {
        Err(Error::ForeignOwner { owner, name }) => {
            assert_eq!(owner, Owner::Uid(NOBODY), "{name}");
        }
        Err(other) => panic!("expected ForeignOwner, got {other:?}"),
        Ok(_) => panic!("expected ForeignOwner, got access"),
    }
}

/// A FIFO under a name is refused by name, at once, by everything that
/// opens a name; listing and collecting skip it.
#[test]
fn a_fifo_under_a_name_is_refused_never_waited_on() {
    let name = unique_name("fifo");
    mkfifo(&shm(&name));
    let mutex_name = unique_name("fifo-mutex");
    mkfifo(&shm(&format!("{mutex_name}@mutex")));
    let started = Instant::now();
    let opened = {
        let name = name.clone();
        bounded("opening a FIFO", move || {
            (
                Mapping::open(&name).map(drop),
                Mapping::options().read_only(true).open(&name).map(drop),
                Mapping::create_or_open(&name, 4096).map(drop),
                Channel::open(&name).map(drop),
                Topic::open(&name).map(drop),
                Topic::create_or_open(&name).map(drop),
            )
        })
    };
    expect_wrong_kind(opened.0, "FIFO");
    expect_wrong_kind(opened.1, "FIFO");
    expect_wrong_kind(opened.2, "FIFO");
    expect_wrong_kind(opened.3, "FIFO");
    expect_wrong_kind(opened.4, "FIFO");
    expect_wrong_kind(opened.5, "FIFO");
    let mutex = {
        let mutex_name = mutex_name.clone();
        bounded("a mutex whose segment is a FIFO", move || {
            NamedMutex::create_or_open(&mutex_name).map(drop)
        })
    };
    expect_wrong_kind(mutex, "FIFO");
    expect_wrong_kind(Mapping::remove(&name), "FIFO");
    assert!(
        shm(&name).exists(),
        "remove leaves what is not shared memory"
    );
    assert!(started.elapsed() < Duration::from_secs(1), "at once");

    let listed = bounded("listing", inventory::list).unwrap();
    assert!(
        listed.iter().all(|info| info.name != name),
        "ls skips a FIFO"
    );
    let stat = {
        let name = name.clone();
        bounded("stat of a FIFO", move || inventory::stat(&name))
    };
    expect_wrong_kind(stat, "FIFO");
    let report = bounded("gc --dry-run", || inventory::gc(true)).unwrap();
    let kept = report
        .skipped
        .iter()
        .find(|skipped| skipped.os_name == format!("/{name}"))
        .expect("gc says why it kept the FIFO");
    assert!(kept.reason.contains("FIFO"), "{}", kept.reason);
    std::fs::remove_file(shm(&name)).unwrap();
    std::fs::remove_file(shm(&format!("{mutex_name}@mutex"))).unwrap();
}

/// Another user's link to a FIFO: never followed, so nothing hangs, and
/// opening it says whose it is.
#[test]
fn another_users_link_is_never_followed() {
    if !can_chown() {
        return;
    }
    let dir = std::env::temp_dir().join(unique_name("fifo-dir"));
    std::fs::create_dir(&dir).unwrap();
    let fifo = dir.join("fifo");
    mkfifo(&fifo);
    let name = unique_name("evil");
    std::os::unix::fs::symlink(&fifo, shm(&name)).unwrap();
    give_to_nobody(&shm(&name));

    let opened = {
        let name = name.clone();
        bounded("opening another user's link", move || {
            (
                Mapping::open(&name).map(drop),
                Mapping::options()
                    .allow_owner(Owner::Uid(NOBODY))
                    .open(&name)
                    .map(drop),
                Topic::open(&name).map(drop),
            )
        })
    };
    expect_foreign(opened.0);
    expect_foreign(opened.2);
    // Trusted, the link is followed, without waiting: its target is no mapping.
    expect_wrong_kind(opened.1, "regular file");
    let listed = bounded("listing", inventory::list).unwrap();
    let entry = listed
        .iter()
        .find(|info| info.name == name)
        .expect("ls shows the link");
    assert_eq!(
        (entry.owner.clone(), entry.own),
        (Owner::Uid(NOBODY), false)
    );
    let name_for_stat = name.clone();
    bounded("stat", move || inventory::stat(&name_for_stat)).unwrap();
    bounded("gc --dry-run", || inventory::gc(true)).unwrap();
    let lock_name = unique_name("any-lock");
    bounded("a lock while the link is there", move || {
        drop(
            NamedMutex::options()
                .create_or_open_for_mapping(&lock_name)
                .unwrap()
                .lock()
                .unwrap(),
        )
    });
    std::fs::remove_file(shm(&name)).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Only the caller's own objects that carry shmio's mark, stale, are
/// collected: not CPython's segments or plain files (sticky bit or not),
/// not other programs' links (dangling or not), not other users' entries,
/// not persistent names, not live ones. A dry run lists exactly what the
/// real run removes.
#[test]
fn gc_removes_only_what_shmio_made() {
    if !can_chown() {
        return;
    }
    let base = unique_name("gc-only");
    let plain = format!("{base}-plain");
    std::fs::write(shm(&plain), b"a CPython segment or any file").unwrap();
    let sticky = format!("{base}-sticky");
    std::fs::write(shm(&sticky), b"x").unwrap();
    std::fs::set_permissions(shm(&sticky), std::fs::Permissions::from_mode(0o1644)).unwrap();
    let nobody_sticky = format!("{base}-nobody-sticky");
    std::fs::write(shm(&nobody_sticky), b"x").unwrap();
    std::fs::set_permissions(shm(&nobody_sticky), std::fs::Permissions::from_mode(0o1644)).unwrap();
    give_to_nobody(&shm(&nobody_sticky));
    let nobody_link = format!("{base}-nobody-link");
    std::os::unix::fs::symlink("/etc/hostname", shm(&nobody_link)).unwrap();
    give_to_nobody(&shm(&nobody_link));
    let own_link = format!("{base}-own-link");
    std::os::unix::fs::symlink("/etc/hostname", shm(&own_link)).unwrap();
    let dangling = format!("{base}-dangling");
    std::os::unix::fs::symlink("/nonexistent/shmio", shm(&dangling)).unwrap();
    let persistent = format!("{base}-persistent");
    Mapping::options()
        .size(4096)
        .persistent(true)
        .create(&persistent)
        .unwrap();
    let live = format!("{base}-live");
    let _live = Mapping::create(&live, 4096).unwrap();
    let stale = format!("{base}-stale");
    let _dead = Role::Hold.spawn().env("NAME", &stale).kill_when_ready();
    // Another user's stale object: kept unless the collector trusts its owner.
    let nobody_stale = format!("{base}-nobody-stale");
    let _dead_too = Role::Hold
        .spawn()
        .env("NAME", &nobody_stale)
        .kill_when_ready();
    give_to_nobody(&shm(&nobody_stale));

    let mine = |infos: &[inventory::NameInfo]| -> Vec<String> {
        let mut names: Vec<String> = infos
            .iter()
            .map(|info| info.name.clone())
            .filter(|name| name.starts_with(&base))
            .collect();
        names.sort();
        names
    };
    let dry = inventory::gc(true).unwrap();
    assert_eq!(
        mine(&dry.removed),
        std::slice::from_ref(&stale),
        "the dry run"
    );
    let kept_reason = |report: &inventory::GcReport, name: &str| {
        report
            .skipped
            .iter()
            .find(|skipped| skipped.os_name == format!("/{name}"))
            .map(|skipped| skipped.reason.clone())
            .unwrap_or_else(|| panic!("gc does not say why it kept {name}"))
    };
    assert!(kept_reason(&dry, &plain).contains("did not make"));
    assert!(kept_reason(&dry, &sticky).contains("did not make"));
    assert!(kept_reason(&dry, &nobody_sticky).contains("uid 65534"));
    assert!(kept_reason(&dry, &nobody_link).contains("uid 65534"));
    assert!(kept_reason(&dry, &own_link).contains("did not make"));
    assert!(kept_reason(&dry, &dangling).contains("did not make"));
    assert!(kept_reason(&dry, &persistent).contains("did not make"));
    assert!(kept_reason(&dry, &live).contains("holds it"));
    assert!(kept_reason(&dry, &nobody_stale).contains("uid 65534"));
    assert!(shm(&stale).exists(), "a dry run removes nothing");

    let real = inventory::gc(false).unwrap();
    assert_eq!(
        mine(&real.removed),
        mine(&dry.removed),
        "what the dry run said"
    );
    assert!(!shm(&stale).exists());
    for kept in [
        &plain,
        &sticky,
        &nobody_sticky,
        &nobody_link,
        &own_link,
        &dangling,
        &persistent,
        &live,
    ] {
        assert!(
            shm(kept).symlink_metadata().is_ok(),
            "gc removed {kept}, which shmio did not make or which is held"
        );
    }

    // Trusting nobody, a collector removes nobody's stale object too, and
    // nothing else that shmio did not make.
    let trusted = inventory::Gc::new()
        .dry_run(true)
        .allow_owner(Owner::Uid(NOBODY))
        .run()
        .unwrap();
    assert_eq!(mine(&trusted.removed), std::slice::from_ref(&nobody_stale));
    let trusted = inventory::Gc::new()
        .allow_owner(Owner::Uid(NOBODY))
        .run()
        .unwrap();
    assert_eq!(mine(&trusted.removed), std::slice::from_ref(&nobody_stale));
    assert!(!shm(&nobody_stale).exists());

    // Opening a sticky plain file neither reclaims nor manages it.
    let opened = Mapping::create_or_open(&sticky, 1).unwrap();
    assert!(opened.existed() && !opened.follows_holders());
    drop(opened);
    assert!(shm(&sticky).exists(), "still there after its holder closed");

    for name in [
        &plain,
        &sticky,
        &nobody_sticky,
        &nobody_link,
        &own_link,
        &dangling,
        &persistent,
    ] {
        std::fs::remove_file(shm(name)).unwrap();
    }
}

/// The last holder of a renamed object leaves alone the new object that
/// now has its old name.
#[test]
fn the_last_holder_of_a_renamed_object_keeps_its_hands_off_the_new_one() {
    let name = unique_name("renamed");
    let old = Mapping::create(&name, 4096).unwrap();
    let moved = format!("{name}-old");
    std::fs::rename(shm(&name), shm(&moved)).unwrap();
    let new = Mapping::create(&name, 4096).unwrap();
    new.write_at(0, b"new").unwrap();
    drop(old);
    assert!(shm(&name).exists(), "the new object's name was removed");
    let again = Mapping::open(&name).unwrap();
    assert_eq!(again.read_value_at::<[u8; 3]>(0).unwrap(), *b"new");
    drop((new, again));
    assert!(!shm(&name).exists(), "the new one's last holder removes it");
    // Stale now (its holder closed under another name): a gc may beat us to it.
    let _ = std::fs::remove_file(shm(&moved));
}

/// Another user's objects (here: root's, handed to nobody) are refused by
/// default, naming the owner; trusting the owner opens them; `create`
/// reports the name taken.
#[test]
fn another_users_objects_are_joined_only_when_trusted() {
    if !can_chown() {
        return;
    }
    let channel_name = unique_name("squat-channel");
    let channel = Channel::create_or_open(&channel_name, GEOMETRY).unwrap();
    give_to_nobody(&shm(&channel_name));
    let map_name = unique_name("squat-map");
    let map = Mapping::create(&map_name, 4096).unwrap();
    give_to_nobody(&shm(&map_name));
    let mutex_name = unique_name("squat-mutex");
    let mutex = NamedMutex::create_or_open(&mutex_name).unwrap();
    give_to_nobody(&shm(&format!("{mutex_name}@mutex")));
    let event_name = unique_name("squat-event");
    let event = NamedEvent::create_or_open(&event_name, EventMode::AutoReset).unwrap();
    give_to_nobody(&shm(&format!("{event_name}@event")));
    let topic_name = unique_name("squat-topic");
    let topic = Topic::options()
        .history(1)
        .create_or_open(&topic_name)
        .unwrap();
    topic.publish(b"nobody's").unwrap();
    give_to_nobody(&shm(&topic_name));
    expect_foreign(Topic::open(&topic_name));
    expect_foreign(Topic::create_or_open(&topic_name));
    let mut trusted = Topic::options()
        .allow_owner(Owner::Uid(NOBODY))
        .open(&topic_name)
        .unwrap()
        .subscribe()
        .unwrap();
    assert_eq!(trusted.try_recv().unwrap(), b"nobody's");

    expect_foreign(Channel::open(&channel_name));
    expect_foreign(Channel::create_or_open(&channel_name, GEOMETRY));
    expect_foreign(Mapping::open(&map_name));
    expect_foreign(Mapping::create_or_open(&map_name, 4096));
    expect_foreign(NamedMutex::create_or_open(&mutex_name));
    expect_foreign(NamedEvent::create_or_open(
        &event_name,
        EventMode::AutoReset,
    ));
    match Mapping::create(&map_name, 4096) {
        Err(Error::AlreadyExists { .. }) => {}
        other => panic!("create: {:?}", other.map(drop)),
    }
    let message = Channel::open(&channel_name).unwrap_err().to_string();
    assert!(message.contains("uid 65534"), "{message}");

    let nobody = Owner::Uid(NOBODY);
    let joined = Channel::options()
        .allow_owner(nobody.clone())
        .open(&channel_name)
        .unwrap();
    joined.send(b"trusted").unwrap();
    assert_eq!(channel.try_recv().unwrap(), b"trusted");
    Mapping::options()
        .allow_owner(nobody.clone())
        .open(&map_name)
        .unwrap();
    Mapping::options()
        .allow_any_owner(true)
        .open(&map_name)
        .unwrap();
    drop(
        NamedMutex::options()
            .allow_owner(nobody.clone())
            .create_or_open(&mutex_name)
            .unwrap()
            .lock()
            .unwrap(),
    );
    NamedEvent::options()
        .allow_owner(nobody)
        .create_or_open(&event_name)
        .unwrap()
        .set()
        .unwrap();
    assert!(event.wait_timeout(Duration::ZERO).is_ok());
    // Removing another user's name takes trusting them too.
    expect_foreign(Mapping::remove(&map_name));
    assert!(shm(&map_name).exists());
    Mapping::options()
        .allow_owner(Owner::Uid(NOBODY))
        .remove(&map_name)
        .unwrap();
    assert!(!shm(&map_name).exists());
    drop((channel, joined, map, mutex, event, topic, trusted));
}

/// A name that holds zeros or another object where a channel, mutex or
/// event should be is WrongKind at once (no creator is coming: on Linux a
/// segment is named only once it is set up).
#[test]
fn a_blank_or_foreign_object_is_the_wrong_kind_at_once() {
    let name = unique_name("blank");
    let blank = Mapping::create(&name, 4096).unwrap();
    let mutex = unique_name("blank-mutex");
    let blank_mutex = Mapping::create(&format!("{mutex}@mutex"), 4096).unwrap();
    let event = unique_name("blank-event");
    let blank_event = Mapping::create(&format!("{event}@event"), 4096).unwrap();
    let started = Instant::now();
    expect_wrong_kind(Channel::open(&name), "channel");
    expect_wrong_kind(Channel::create_or_open(&name, GEOMETRY), "channel");
    expect_wrong_kind(Topic::open(&name), "topic");
    expect_wrong_kind(Topic::create_or_open(&name), "topic");
    expect_wrong_kind(NamedMutex::create_or_open(&mutex), "mutex");
    expect_wrong_kind(
        NamedEvent::create_or_open(&event, EventMode::AutoReset),
        "event",
    );
    blank.write_at(0, b"not a channel header").unwrap();
    expect_wrong_kind(Channel::open(&name), "channel");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "at once, not after waiting for a creator: {:?}",
        started.elapsed()
    );
    drop((blank, blank_mutex, blank_event));
}

/// `stat` describes exactly the name asked for: a mutex's state is
/// `NAME@mutex`, never shown as if it were `NAME`.
#[test]
fn stat_describes_exactly_the_name_asked_for() {
    let name = unique_name("stat-exact");
    let _mutex = NamedMutex::create_or_open(&name).unwrap();
    assert!(matches!(
        inventory::stat(&name),
        Err(Error::NotFound { .. })
    ));
    let info = inventory::stat(&format!("{name}@mutex")).unwrap();
    assert_eq!(info.kind, inventory::ObjectKind::Mutex);
    assert_eq!(info.name, format!("{name}@mutex"));
    assert!(info.own);
    let uid = std::fs::metadata(shm(&info.name)).unwrap().uid();
    assert_eq!(info.owner, Owner::Uid(uid));
}
