//! The bus at container scale (Linux, root): Docker gives a container
//! 64 MiB of `/dev/shm`. In a mount namespace of its own over a 64 MiB
//! tmpfs (`unshare -m`, as `limits.rs` does for a full `/dev/shm`), one
//! group of [`LISTENERS`] listener processes: every one answers a call,
//! a view lists them all, and the group still serves calls with 1 MiB
//! arguments and replies; once everyone leaves, nothing is left.
//!
//! Without root the test says so and passes, unless
//! `SHMIO_REQUIRE_ROOT_TESTS` is set (as `.ci/run` does, as root).
#![cfg(target_os = "linux")]

use std::time::{Duration, Instant};

use shmio::Bus;
use shmio_testkit::{arg, checksum, ready, Child, Input};

const LISTENERS: usize = 300;
const MIB: u64 = 1 << 20;
const LIMIT: Duration = Duration::from_secs(300);

shmio_testkit::roles! {
    Scale => scale(),
    Member => member(),
}

#[test]
fn three_hundred_listeners_fit_a_container_dev_shm() {
    if !shmio_testkit::root_with(&["unshare", "mount"]) {
        return;
    }
    let status = Role::Scale
        .spawn()
        .over_own_dev_shm("64m")
        .limit(LIMIT)
        .start()
        .wait();
    assert!(status.success(), "the group in a 64 MiB /dev/shm: {status}");
}

/// Joins GROUP, listens to `who` (its pid) and, if BIG is set, to `size`
/// (the length and a checksum of a string) and `make` (a string of that
/// many bytes); says ready and serves until its stdin closes.
fn member() {
    let bus = Bus::join(&arg("GROUP")).unwrap();
    let pid = std::process::id();
    let _who = bus
        .listen("who", move |(): ()| Ok::<_, String>(Some(pid)))
        .unwrap();
    let big = std::env::var_os("BIG").is_some();
    let _size = big.then(|| {
        bus.listen("size", |text: String| {
            Ok::<_, String>(Some((text.len(), sum_of(&text))))
        })
        .unwrap()
    });
    let _make = big.then(|| {
        bus.listen("make", |len: usize| Ok::<_, String>(Some("y".repeat(len))))
            .unwrap()
    });
    ready();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

fn sum_of(text: &str) -> u64 {
    checksum(&[text.bytes().map(u64::from).sum()])
}

/// Free bytes of `/dev/shm`.
fn free() -> u64 {
    let fs = rustix::fs::statvfs("/dev/shm").unwrap();
    fs.f_bavail * fs.f_frsize
}

/// In a mount namespace whose `/dev/shm` is a 64 MiB tmpfs.
fn scale() {
    let fs = rustix::fs::statvfs("/dev/shm").unwrap();
    assert_eq!(fs.f_blocks * fs.f_frsize, 64 * MIB, "a 64 MiB /dev/shm");
    // Three pipes a child, and an inbox a listener called: past 1024.
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    )
    .unwrap();
    let group = "shmio-scale";
    let started = Instant::now();
    let mut members: Vec<Child> = (0..LISTENERS)
        .map(|i| {
            let spawn = Role::Member
                .spawn()
                .env("GROUP", group)
                .stdin(Input::Pipe)
                .limit(LIMIT);
            // Two of them also answer the 1 MiB calls.
            let spawn = if i < 2 { spawn.env("BIG", "1") } else { spawn };
            spawn.start()
        })
        .collect();
    for member in &mut members {
        member.wait_ready();
    }
    eprintln!(
        "{LISTENERS} listeners joined in {:?}; /dev/shm free: {} KiB of {} KiB",
        started.elapsed(),
        free() / 1024,
        64 * 1024
    );
    // Who listens, read as `shmio listeners` reads it: nothing joined.
    let view = Bus::view(group).unwrap();
    assert_eq!(view.listeners("who").unwrap().len(), LISTENERS);
    let caller = Bus::join(group).unwrap();
    for member in &members {
        let pid: Option<u32> = caller
            .call_pid(member.id(), "who", &(), Duration::from_secs(30))
            .unwrap();
        assert_eq!(pid, Some(member.id()));
    }
    for round in 0..4u64 {
        let text: String = (0..MIB)
            .map(|i| char::from(b'a' + ((i + round) % 26) as u8))
            .collect();
        let got: Option<(usize, u64)> =
            caller.call("size", &text, Duration::from_secs(60)).unwrap();
        assert_eq!(got, Some((MIB as usize, sum_of(&text))), "round {round}");
        let made: Option<String> = caller
            .call("make", &(MIB as usize), Duration::from_secs(60))
            .unwrap();
        assert_eq!(made.map(|made| made.len()), Some(MIB as usize));
    }
    eprintln!(
        "every listener answered, 1 MiB calls served; /dev/shm free: {} KiB",
        free() / 1024
    );
    drop(caller);
    drop(view);
    for member in &mut members {
        member.close_stdin();
    }
    for mut member in members {
        assert!(member.wait().success());
    }
    let left: Vec<_> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
