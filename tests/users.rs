//! Other users (Linux, run as root): objects made with the default mode are
//! closed to another user, open to them when the mode allows, and a name
//! another user squatted is never adopted.
//!
//! The other user is `nobody` (uid and gid 65534), reached with
//! `setpriv`; its side runs in a copy of this test binary placed where
//! `nobody` can execute it. Without root or `setpriv` the tests say so and
//! pass, unless `SHMIO_REQUIRE_ROOT_TESTS` is set (as `.ci/run` does), when
//! they fail.

#![cfg(target_os = "linux")]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use shmio::{
    Channel, ChannelGeometry, Error, EventMode, Mapping, NamedEvent, NamedMutex, ObjectKind, Owner,
    Topic,
};
use shmio_testkit::{arg, unique_name, Finished, Output};

const NOBODY: u32 = 65534;

shmio_testkit::roles! {
    NobodyDenied => nobody_denied(),
    NobodyAllowed => nobody_allowed(),
    NobodySquat => nobody_squat(),
    NobodyStale => nobody_stale(),
    RootStale => root_stale(),
}

/// Whether this machine can run a process as another user.
fn can_switch_user() -> bool {
    shmio_testkit::root_with(&["setpriv"])
}

/// A copy of this test binary that `nobody` can execute, whatever the
/// permissions of the directories above the build's.
fn binary_for_nobody() -> &'static PathBuf {
    static COPY: OnceLock<PathBuf> = OnceLock::new();
    COPY.get_or_init(|| {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("shmio-users-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory for the copy");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let copy = dir.join("users-test");
        std::fs::copy(std::env::current_exe().unwrap(), &copy).expect("copy the test binary");
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        copy
    })
}

/// Runs `role` as `nobody` and returns what it did; it must finish within a minute.
fn run_as_nobody(role: Role, args: &[(&str, &str)]) -> Finished {
    let mut child = role
        .spawn()
        .program_path(binary_for_nobody())
        .wrapped_in(
            "setpriv",
            [
                &format!("--reuid={NOBODY}"),
                &format!("--regid={NOBODY}"),
                "--clear-groups",
                "--",
            ],
        )
        .stderr(Output::Collect)
        .limit(Duration::from_secs(60));
    for (key, value) in args {
        child = child.env(key, value);
    }
    let output = child.run();
    output.assert_success(&format!("{role:?} as nobody"));
    output
}

/// Sets the umask so the modes the tests ask for are the modes they get.
fn exact_modes() {
    // SAFETY: umask only sets the process's file mode mask.
    unsafe { libc::umask(0) };
}

/// The owner of `/dev/shm/NAME`.
fn owner_of(os_entry: &str) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(PathBuf::from("/dev/shm").join(os_entry))
        .expect("the entry")
        .uid()
}

/// Root, whom `nobody` trusts in these tests.
const ROOT: Owner = Owner::Uid(0);

fn is_foreign<T>(result: shmio::Result<T>) -> String {
    match result {
        Err(error @ Error::ForeignOwner { .. }) => {
            let Error::ForeignOwner { owner, .. } = &error else {
                unreachable!()
            };
            assert_eq!(*owner, ROOT);
            let message = error.to_string();
            assert!(message.contains("uid 0"), "{message}");
            message
        }
        Err(other) => panic!("expected ForeignOwner, got {other:?}"),
        Ok(_) => panic!("expected ForeignOwner, got access"),
    }
}

fn is_permission_denied<T>(result: shmio::Result<T>) -> String {
    match result {
        Err(error @ Error::PermissionDenied { .. }) => {
            let message = error.to_string();
            assert!(message.starts_with("permission denied"), "{message}");
            message
        }
        Err(other) => panic!("expected PermissionDenied, got {other:?}"),
        Ok(_) => panic!("expected PermissionDenied, got access"),
    }
}

const OPTIONS: ChannelGeometry = ChannelGeometry {
    capacity: 4,
    max_message_size: 64,
};

#[test]
fn another_user_cannot_use_objects_made_with_the_default_mode() {
    if !can_switch_user() {
        return;
    }
    let map_name = unique_name("users-map");
    let mutex_name = unique_name("users-mutex");
    let event_name = unique_name("users-event");
    let channel_name = unique_name("users-channel");
    let topic_name = unique_name("users-topic");
    let map = Mapping::create(&map_name, 4096).unwrap();
    drop(map.lock().unwrap());
    let _mutex = NamedMutex::create_or_open(&mutex_name).unwrap();
    let _event = NamedEvent::create_or_open(&event_name, EventMode::AutoReset).unwrap();
    let _channel = Channel::create_or_open(&channel_name, OPTIONS).unwrap();
    let _topic = Topic::create_or_open(&topic_name).unwrap();

    let output = run_as_nobody(
        Role::NobodyDenied,
        &[
            ("MAP", &map_name),
            ("MUTEX", &mutex_name),
            ("EVENT", &event_name),
            ("CHANNEL", &channel_name),
            ("TOPIC", &topic_name),
        ],
    );
    let said = String::from_utf8_lossy(&output.stdout);
    for name in [
        &map_name,
        &mutex_name,
        &event_name,
        &channel_name,
        &topic_name,
    ] {
        assert!(said.contains(name.as_str()), "errors name {name}: {said}");
    }
}

fn nobody_denied() {
    let map = arg("MAP");
    let mutex = arg("MUTEX");
    let event = arg("EVENT");
    let channel = arg("CHANNEL");
    let topic = arg("TOPIC");
    // Not trusted: refused for whom it belongs to, before any access.
    let said = [
        is_foreign(Mapping::open(&map)),
        is_foreign(Mapping::options().read_only(true).open(&map)),
        is_foreign(Mapping::create_or_open(&map, 4096)),
        is_foreign(NamedMutex::create_or_open(&mutex)),
        is_foreign(NamedEvent::create_or_open(&event, EventMode::AutoReset)),
        is_foreign(Channel::open(&channel)),
        is_foreign(Channel::create_or_open(&channel, OPTIONS)),
        is_foreign(Topic::open(&topic)),
        is_foreign(Topic::create_or_open(&topic)),
    ];
    for line in said {
        println!("{line}");
    }
    // Trusted, the permissions still keep nobody out.
    let said = [
        is_permission_denied(Mapping::options().allow_owner(ROOT).open(&map)),
        is_permission_denied(
            Mapping::options()
                .read_only(true)
                .allow_owner(ROOT)
                .open(&map),
        ),
        is_permission_denied(
            Mapping::options()
                .size(4096)
                .allow_owner(ROOT)
                .create_or_open(&map),
        ),
        is_permission_denied(
            NamedMutex::options()
                .allow_owner(ROOT)
                .create_or_open(&mutex),
        ),
        is_permission_denied(
            NamedEvent::options()
                .allow_owner(ROOT)
                .create_or_open(&event),
        ),
        is_permission_denied(Channel::options().allow_owner(ROOT).open(&channel)),
        is_permission_denied(
            Channel::options()
                .geometry(OPTIONS)
                .allow_owner(ROOT)
                .create_or_open(&channel),
        ),
        is_permission_denied(Topic::options().allow_owner(ROOT).open(&topic)),
    ];
    for line in said {
        println!("{line}");
    }
}

#[test]
fn another_user_can_when_the_mode_allows() {
    if !can_switch_user() {
        return;
    }
    exact_modes();
    let map_name = unique_name("users-open-map");
    let mutex_name = unique_name("users-open-mutex");
    let event_name = unique_name("users-open-event");
    let channel_name = unique_name("users-open-channel");
    let topic_name = unique_name("users-open-topic");
    let map = Mapping::options()
        .size(4096)
        .permissions(0o666)
        .create(&map_name)
        .unwrap();
    map.write_value_at(0, &41u64).unwrap();
    let mutex = NamedMutex::options()
        .permissions(0o666)
        .create_or_open(&mutex_name)
        .unwrap();
    let event = NamedEvent::options()
        .permissions(0o666)
        .create_or_open(&event_name)
        .unwrap();
    let channel = Channel::options()
        .geometry(OPTIONS)
        .permissions(0o666)
        .create_or_open(&channel_name)
        .unwrap();
    channel.send(b"from root").unwrap();
    let topic = Topic::options()
        .history(1)
        .permissions(0o666)
        .create_or_open(&topic_name)
        .unwrap();
    topic.publish(b"from root").unwrap();
    let mut from_nobody = topic.subscribe().unwrap();

    run_as_nobody(
        Role::NobodyAllowed,
        &[
            ("MAP", &map_name),
            ("MUTEX", &mutex_name),
            ("EVENT", &event_name),
            ("CHANNEL", &channel_name),
            ("TOPIC", &topic_name),
        ],
    );
    assert_eq!(map.read_value_at::<u64>(0).unwrap(), 42);
    assert_eq!(
        from_nobody.try_recv().unwrap(),
        b"from root",
        "the history first"
    );
    assert_eq!(from_nobody.try_recv().unwrap(), b"from nobody");
    assert!(event.wait_timeout(Duration::ZERO).is_ok(), "nobody set it");
    assert_eq!(channel.try_recv().unwrap(), b"from nobody");
    drop(mutex.try_lock().unwrap());
    // The mapping's own mutex took the mapping's permissions.
    drop(map.lock().unwrap());
}

fn nobody_allowed() {
    let map = Mapping::options()
        .allow_owner(ROOT)
        .open(&arg("MAP"))
        .unwrap();
    assert!(map.existed());
    let _guard = map
        .lock()
        .expect("the mapping's mutex is as open as the mapping");
    let value: u64 = map.read_value_at(0).unwrap();
    map.write_value_at(0, &(value + 1)).unwrap();
    let mutex = NamedMutex::options()
        .allow_owner(ROOT)
        .create_or_open(&arg("MUTEX"))
        .unwrap();
    assert!(mutex.existed());
    drop(mutex.lock().unwrap());
    let event = NamedEvent::options()
        .allow_owner(ROOT)
        .create_or_open(&arg("EVENT"))
        .unwrap();
    assert!(event.existed());
    event.set().unwrap();
    let channel = Channel::options()
        .allow_owner(ROOT)
        .open(&arg("CHANNEL"))
        .unwrap();
    assert_eq!(channel.try_recv().unwrap(), b"from root");
    channel.send(b"from nobody").unwrap();
    let topic = Topic::options()
        .allow_owner(ROOT)
        .open(&arg("TOPIC"))
        .unwrap();
    let mut subscriber = topic.subscribe().unwrap();
    assert_eq!(subscriber.try_recv().unwrap(), b"from root", "the history");
    topic.publish(b"from nobody").unwrap();
}

#[test]
fn a_name_squatted_by_another_user_is_not_adopted() {
    if !can_switch_user() {
        return;
    }
    let name = unique_name("users-squat");
    let mutex_name = unique_name("users-squat-mutex");
    run_as_nobody(
        Role::NobodySquat,
        &[("NAME", &name), ("MUTEX", &mutex_name)],
    );
    assert_eq!(owner_of(&name), NOBODY);

    match Mapping::create(&name, 4096) {
        Err(Error::AlreadyExists { kind, name: found }) => {
            assert_eq!(
                (kind, found.as_str()),
                (Some(ObjectKind::Mapping), name.as_str())
            )
        }
        other => panic!(
            "create adopted a squatted name: {:?}",
            other.map(|m| m.len())
        ),
    }
    match NamedMutex::create_or_open(&mutex_name) {
        Err(Error::ForeignOwner { owner, .. }) => assert_eq!(owner, Owner::Uid(NOBODY)),
        other => panic!(
            "a squatted mutex name was adopted: {:?}",
            other.map(|m| m.existed())
        ),
    }
    // Trusting nobody does not make garbage a mutex.
    match NamedMutex::options()
        .allow_owner(Owner::Uid(NOBODY))
        .create_or_open(&mutex_name)
    {
        Err(Error::WrongKind { .. }) => {}
        other => panic!(
            "a squatted mutex name was adopted: {:?}",
            other.map(|m| m.existed())
        ),
    }
    // Removing another user's name takes trusting them too.
    assert!(matches!(
        Mapping::remove(&name),
        Err(Error::ForeignOwner { .. })
    ));
    Mapping::options()
        .allow_owner(Owner::Uid(NOBODY))
        .remove(&name)
        .unwrap();
    std::fs::remove_file(PathBuf::from("/dev/shm").join(format!("{mutex_name}@mutex"))).unwrap();
}

fn nobody_squat() {
    exact_modes();
    // Persistent, so the name outlives this process.
    Mapping::options()
        .size(4096)
        .permissions(0o666)
        .persistent(true)
        .create(&arg("NAME"))
        .unwrap();
    // Garbage where a mutex's segment would be.
    let path = PathBuf::from("/dev/shm").join(format!("{}@mutex", arg("MUTEX")));
    std::fs::write(path, vec![0x5a; 4096]).unwrap();
}

#[test]
fn another_users_stale_name_is_reported_not_retried() {
    if !can_switch_user() {
        return;
    }
    let name = unique_name("users-stale");
    // Root's holder is killed: the name is stale, but it is root's.
    let _killed = Role::RootStale.spawn().env("NAME", &name).kill_when_ready();
    assert_eq!(owner_of(&name), 0);
    let output = run_as_nobody(Role::NobodyStale, &[("NAME", &name)]);
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("reclaim"), "{said}");

    // Root reclaims it: a new mapping, not the dead one's.
    let map = Mapping::create(&name, 4096).unwrap();
    assert!(!map.existed());
    assert_eq!(map.read_value_at::<u64>(8).unwrap(), 0);
}

fn root_stale() {
    exact_modes();
    let map = Mapping::options()
        .size(4096)
        .permissions(0o666)
        .create(&arg("NAME"))
        .unwrap();
    map.write_value_at(8, &7u64).unwrap();
    shmio_testkit::ready();
    shmio_testkit::until_killed()
}

fn nobody_stale() {
    let started = std::time::Instant::now();
    is_foreign(Mapping::create_or_open(&arg("NAME"), 4096));
    let message = is_permission_denied(
        Mapping::options()
            .size(4096)
            .allow_owner(ROOT)
            .create_or_open(&arg("NAME")),
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "said at once, not after retrying"
    );
    println!("{message}");
}
