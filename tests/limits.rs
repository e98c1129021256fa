//! Resource limits (Linux): a full `/dev/shm`, sizes past the address
//! space, and too many open handles each give a clear error, and leave no
//! half-made name behind.
//!
//! Each limit is set in a child process: `RLIMIT_AS` and `RLIMIT_NOFILE` by
//! the child itself, a full `/dev/shm` by running the child in its own mount
//! namespace over a 1 MiB tmpfs (`unshare`, root only: without root the test
//! says so and passes, unless `SHMIO_REQUIRE_ROOT_TESTS` is set, as
//! `.ci/run` does).

#![cfg(target_os = "linux")]

use std::path::Path;

use shmio::{Channel, ChannelGeometry, Error, EventMode, Mapping, NamedEvent, NamedMutex, Topic};
use shmio_testkit::{shm_entries_with_prefix, shm_entry_exists, unique_name};

const KIB: u64 = 1024;

shmio_testkit::roles! {
    FullDevShm => full_dev_shm(),
    AddressSpace => address_space(),
    Handles => handles(),
}

/// Runs `role` in this test binary and checks it succeeded.
fn run_role(role: Role) {
    let status = role.spawn().start().wait();
    assert!(status.success(), "{role:?}: {status}");
}

fn expect_no_space<T>(what: &str, result: shmio::Result<T>) {
    match result {
        Err(error @ Error::NoSpace { .. }) => {
            assert!(error.to_string().contains("no space"), "{error}");
            assert_eq!(
                std::io::Error::from(error).kind(),
                std::io::ErrorKind::StorageFull
            );
        }
        Err(other) => panic!("{what}: expected NoSpace, got {other:?}"),
        Ok(_) => panic!("{what}: expected NoSpace, got success"),
    }
}

fn can_mount() -> bool {
    shmio_testkit::root_with(&["unshare", "mount"])
}

#[test]
fn a_full_dev_shm_is_no_space_and_leaves_nothing_behind() {
    if !can_mount() {
        return;
    }
    let status = Role::FullDevShm
        .spawn()
        .over_own_dev_shm("1m")
        .start()
        .wait();
    assert!(status.success(), "the child in a 1 MiB /dev/shm: {status}");
}

/// In a mount namespace whose `/dev/shm` is a 1 MiB tmpfs.
fn full_dev_shm() {
    let fs = rustix::fs::statvfs("/dev/shm").unwrap();
    assert!(
        fs.f_blocks * fs.f_frsize <= 1024 * KIB,
        "the child runs over a 1 MiB /dev/shm"
    );
    // Larger than the whole file system.
    expect_no_space("2 MiB mapping", Mapping::create("limits-big", 2048 * KIB));
    // The default size (64 MiB) does not fit either.
    expect_no_space(
        "default size",
        Mapping::options().create_or_open("limits-default"),
    );
    assert_eq!(
        shm_entries_with_prefix("limits-"),
        Vec::<String>::new(),
        "nothing half-made"
    );

    // Two objects that each fit but not both: the second is NoSpace when it
    // is created (the first's memory is reserved, not promised), and the
    // first can be written in full. Sparse objects (the opt-out) both fit.
    let first = Mapping::create("limits-first", 600 * KIB).unwrap();
    expect_no_space(
        "a second 600 KiB",
        Mapping::create("limits-second", 600 * KIB),
    );
    first
        .write_at(0, &vec![0x5a; 600 * KIB as usize])
        .expect("a created mapping can be written in full");
    drop(first);
    let sparse = |name| Mapping::options().size(600 * KIB).sparse(true).create(name);
    let both = (sparse("limits-sparse-1"), sparse("limits-sparse-2"));
    assert!(
        both.0.is_ok() && both.1.is_ok(),
        "sparse objects are not reserved"
    );
    drop(both);
    assert_eq!(
        shm_entries_with_prefix("limits-"),
        Vec::<String>::new(),
        "all gone"
    );

    // Fill most of it, then ask for more than is left.
    let filler = Mapping::create("limits-filler", 768 * KIB).unwrap();
    filler
        .write_at(0, &vec![0xa5; 768 * KIB as usize])
        .expect("touching every page of a mapping that fitted is fine");
    expect_no_space("512 KiB more", Mapping::create("limits-more", 512 * KIB));
    expect_no_space(
        "a channel",
        Channel::create_or_open(
            "limits-channel",
            ChannelGeometry {
                capacity: 1024,
                max_message_size: 4096,
            },
        ),
    );
    // A topic reserves what it takes when it is made, too (1,024 slots of
    // 4 KiB: more than is left).
    expect_no_space("a topic", Topic::options().create_or_open("limits-topic"));
    assert_eq!(
        shm_entries_with_prefix("limits-"),
        ["limits-filler"],
        "nothing half-made"
    );

    // Fill it to the last page: a mutex or an event (a 4 KiB segment) has no room.
    let rest = rustix::fs::statvfs("/dev/shm").unwrap();
    let left = rest.f_bavail * rest.f_frsize;
    if left > 0 {
        let last = Mapping::create("limits-last", left).unwrap();
        last.write_at(0, &vec![1; left as usize]).unwrap();
        std::mem::forget(last);
    }
    expect_no_space("a mutex", NamedMutex::create_or_open("limits-mutex"));
    expect_no_space(
        "an event",
        NamedEvent::create_or_open("limits-event", EventMode::AutoReset),
    );
    let survivors = shm_entries_with_prefix("limits-");
    assert!(
        survivors
            .iter()
            .all(|name| name == "limits-filler" || name == "limits-last"),
        "nothing half-made: {survivors:?}"
    );
    // The filler's data is whole.
    let mut back = vec![0; 768 * KIB as usize];
    filler.read_at(0, &mut back).unwrap();
    assert!(back.iter().all(|&byte| byte == 0xa5));
}

#[test]
fn sizes_past_the_address_space_are_refused_cleanly() {
    // Past what any process can map: refused before anything is made.
    let name = unique_name("limits-huge");
    match Mapping::create(&name, u64::MAX) {
        Err(Error::TooLarge { size, .. }) => assert_eq!(size, u64::MAX),
        other => panic!("expected TooLarge, got {:?}", other.map(|m| m.len())),
    }
    // 4 EiB fits no /dev/shm and no address space: one error or the other, never success.
    match Mapping::create(&name, 1 << 62) {
        Err(Error::NoSpace { .. } | Error::OutOfAddressSpace { .. } | Error::TooLarge { .. }) => {}
        other => panic!("expected a size error, got {:?}", other.map(|m| m.len())),
    }
    assert!(!shm_entry_exists(&name), "nothing half-made");
    // Anonymous memory is reserved too: more than the machine has is NoSpace.
    match Mapping::anonymous(1 << 62) {
        Err(Error::NoSpace { .. } | Error::OutOfAddressSpace { .. } | Error::TooLarge { .. }) => {}
        other => panic!("expected a size error, got {:?}", other.map(|m| m.len())),
    }
    // And a process whose address space is limited.
    run_role(Role::AddressSpace);
}

/// With `RLIMIT_AS` at 1 GiB, a 2 GiB mapping (which /dev/shm has room for) cannot be mapped.
fn address_space() {
    let limit = rustix::process::Rlimit {
        current: Some(1 << 30),
        maximum: Some(1 << 30),
    };
    rustix::process::setrlimit(rustix::process::Resource::As, limit).unwrap();
    let name = format!("shmio-test-limits-as-{}", std::process::id());
    match Mapping::create(&name, 2 << 30) {
        Err(error @ Error::OutOfAddressSpace { .. }) => {
            assert!(error.to_string().contains("address space"), "{error}");
        }
        // A /dev/shm with less than 2 GiB free says so first; also fine.
        Err(Error::NoSpace { .. }) => {}
        other => panic!(
            "expected OutOfAddressSpace, got {:?}",
            other.map(|m| m.len())
        ),
    }
    assert!(
        !Path::new("/dev/shm").join(&name).exists(),
        "nothing half-made"
    );
    // Below the limit all is well.
    let map = Mapping::create(&name, 64 << 20).unwrap();
    map.write_value_at(0, &1u64).unwrap();
}

#[test]
fn too_many_handles_is_a_clear_error() {
    run_role(Role::Handles);
}

/// With `RLIMIT_NOFILE` at 32, opening named objects until it runs out.
fn handles() {
    let limit = rustix::process::Rlimit {
        current: Some(32),
        maximum: Some(32),
    };
    rustix::process::setrlimit(rustix::process::Resource::Nofile, limit).unwrap();
    let prefix = format!("shmio-test-limits-fd-{}-", std::process::id());
    let mut held = Vec::new();
    let failed = loop {
        assert!(held.len() < 64, "the limit of 32 open files was never hit");
        let name = format!("{prefix}{}", held.len());
        match Mapping::create(&name, 4096) {
            Ok(map) => held.push(map),
            Err(error) => break (name, error),
        }
    };
    let (name, error) = failed;
    assert!(
        matches!(error, Error::TooManyHandles { .. }),
        "expected TooManyHandles, got {error:?}"
    );
    assert!(
        error.to_string().contains("too many open handles"),
        "{error}"
    );
    assert!(!shm_entry_exists(&name), "nothing half-made");
    // The other kinds say the same.
    for result in [
        NamedMutex::create_or_open(&format!("{prefix}mutex")).map(|_| ()),
        Channel::create_or_open(&format!("{prefix}channel"), ChannelGeometry::default())
            .map(|_| ()),
    ] {
        match result {
            Err(Error::TooManyHandles { .. }) => {}
            other => panic!("expected TooManyHandles, got {other:?}"),
        }
    }
    // Listing /dev/shm needs a descriptor too: give one back first.
    held.pop();
    assert_eq!(
        shm_entries_with_prefix(&prefix).len(),
        held.len(),
        "only the held names exist"
    );
    drop(held);
    assert_eq!(
        shm_entries_with_prefix(&prefix),
        Vec::<String>::new(),
        "every name went with its holder"
    );
}
