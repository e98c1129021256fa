//! Behaviour across real processes: the test binary re-runs itself in a
//! child role (see `shmio_testkit::roles!`), and parent and children share
//! named mappings, anonymous mappings handed down by descriptor, and files.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shmio::zerocopy::{FromBytes, Immutable, IntoBytes};
use shmio::{Error, Mapping};
use shmio_testkit::{arg, shm_entry_exists, unique_name, wait_until};

const LIMIT: Duration = Duration::from_secs(30);

#[derive(FromBytes, IntoBytes, Immutable, Debug, PartialEq, Clone, Copy)]
#[repr(C)]
struct Greeting {
    pid: u32,
    count: u32,
    ratio: f64,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Note {
    from: String,
    lines: Vec<String>,
}

shmio_testkit::roles! {
    Reply => child_reply(),
    Race => child_race(),
    Hold => child_hold(),
    Inherit => child_inherit(),
}

/// Opens the mapping by name, checks what the parent wrote, writes back.
fn child_reply() {
    let mut map = Mapping::open(&arg("NAME")).unwrap();
    assert!(map.existed());
    assert_eq!(map.read_bytes(5).unwrap(), b"hello");
    let greeting: Greeting = map.read_value().unwrap();
    assert_eq!(greeting.count, 3);
    let note: Note = map.read_record().unwrap().unwrap();
    assert_eq!(note.from, "parent");
    let reply = Greeting {
        pid: std::process::id(),
        count: greeting.count + 1,
        ratio: greeting.ratio * 2.0,
    };
    map.write_value_at(1024, &reply).unwrap();
    map.write_record_at(
        2048,
        &Note {
            from: "child".into(),
            lines: note.lines.into_iter().rev().collect(),
        },
    )
    .unwrap();
}

#[test]
fn a_child_opens_by_name_reads_and_writes_back() {
    let name = unique_name("reply");
    let mut map = Mapping::create(&name, 4096).unwrap();
    map.write_value(b"hello").unwrap();
    map.write_value(&Greeting {
        pid: std::process::id(),
        count: 3,
        ratio: 0.25,
    })
    .unwrap();
    map.write_record(&Note {
        from: "parent".into(),
        lines: vec!["a".into(), "b".into()],
    })
    .unwrap();
    let mut child = Role::Reply.spawn().env("NAME", &name).limit(LIMIT).start();
    child.wait_success();
    let reply: Greeting = map.read_value_at(1024).unwrap();
    assert_eq!((reply.count, reply.ratio), (4, 0.5));
    assert_eq!(reply.pid, child.id());
    let note: Note = map.read_record_at(2048).unwrap().unwrap();
    assert_eq!(
        note,
        Note {
            from: "child".into(),
            lines: vec!["b".into(), "a".into()]
        }
    );
}

// The control block of the race: parent and children meet in a named mapping.
const RACERS: u32 = 16;
const ROUNDS: u32 = 50;
const GO: u64 = 0; // round the parent has opened
const OPENED: u64 = 8; // + 8 * round: children holding round's mapping
const DONE: u64 = 8 + 8 * ROUNDS as u64; // + 8 * round: children finished the round
const RESULTS: u64 = 8 + 16 * ROUNDS as u64; // + 4 * (round * RACERS + racer)
const CREATED: u32 = 1;
const OPENED_OK: u32 = 2;

fn counter(map: &Mapping, offset: u64) -> &AtomicU32 {
    map.atomic_u32(offset).unwrap()
}

fn round_name(base: &str, round: u32) -> String {
    format!("{base}-round{round}")
}

/// Each round: create_or_open the round's name at once with the others;
/// the creator stamps it, openers check the stamp; report, hold until all have, drop.
fn child_race() {
    let racer: u32 = arg("RACER").parse().unwrap();
    let base = arg("NAME");
    let control = Mapping::open(&format!("{base}-control")).unwrap();
    for round in 0..ROUNDS {
        wait_until("the parent's go", LIMIT, || {
            counter(&control, GO).load(Ordering::Acquire) > round
        });
        let map = Mapping::create_or_open(&round_name(&base, round), 4096).unwrap();
        let stamp = map.atomic_u32(0).unwrap();
        let outcome = if map.existed() {
            wait_until("the creator's stamp", LIMIT, || {
                stamp.load(Ordering::Acquire) != 0
            });
            let mut body = [0u8; 64];
            map.read_at(64, &mut body).unwrap();
            let creator = stamp.load(Ordering::Acquire);
            assert_eq!(body, [creator as u8; 64], "openers see the creator's bytes");
            OPENED_OK
        } else {
            map.write_at(64, &[racer as u8 + 1; 64]).unwrap();
            stamp.store(racer + 1, Ordering::Release);
            CREATED
        };
        counter(&control, RESULTS + 4 * u64::from(round * RACERS + racer))
            .store(outcome, Ordering::Release);
        let opened = counter(&control, OPENED + 8 * u64::from(round));
        opened.fetch_add(1, Ordering::AcqRel);
        wait_until("every racer to open", LIMIT, || {
            opened.load(Ordering::Acquire) == RACERS
        });
        drop(map);
        counter(&control, DONE + 8 * u64::from(round)).fetch_add(1, Ordering::AcqRel);
    }
}

#[test]
fn sixteen_processes_race_create_or_open() {
    let base = unique_name("race");
    let control = Mapping::create(&format!("{base}-control"), 4096).unwrap();
    let mut children: Vec<_> = (0..RACERS)
        .map(|racer| {
            Role::Race
                .spawn()
                .env("NAME", &base)
                .env("RACER", racer.to_string())
                .limit(LIMIT)
                .start()
        })
        .collect();
    for round in 0..ROUNDS {
        counter(&control, GO).store(round + 1, Ordering::Release);
        let done = counter(&control, DONE + 8 * u64::from(round));
        wait_until("every racer to finish the round", LIMIT, || {
            done.load(Ordering::Acquire) == RACERS
        });
        let outcomes: Vec<u32> = (0..RACERS)
            .map(|racer| {
                counter(&control, RESULTS + 4 * u64::from(round * RACERS + racer))
                    .load(Ordering::Acquire)
            })
            .collect();
        let creators = outcomes.iter().filter(|&&o| o == CREATED).count();
        let openers = outcomes.iter().filter(|&&o| o == OPENED_OK).count();
        assert_eq!(
            (creators, openers),
            (1, RACERS as usize - 1),
            "round {round}: {outcomes:?}"
        );
        assert!(
            !shm_entry_exists(&round_name(&base, round)),
            "round {round}: the last holder removed the name"
        );
    }
    for child in &mut children {
        child.wait_success();
    }
}

/// Creates (or opens) the named mapping, says so, and waits to be killed.
fn child_hold() {
    let map = Mapping::options()
        .size(4096)
        .create_or_open(&arg("NAME"))
        .unwrap();
    map.write_at(0, b"held").unwrap();
    shmio_testkit::ready();
    shmio_testkit::until_killed()
}

/// Asserts that nothing is left of `name`: no `/dev/shm` entry on Linux,
/// and `open` finds nothing on every platform.
fn assert_gone(name: &str, why: &str) {
    if cfg!(target_os = "linux") {
        assert!(
            !shm_entry_exists(name),
            "{why}: an entry is left under /dev/shm"
        );
    }
    assert!(
        matches!(Mapping::open(name), Err(Error::NotFound { .. })),
        "{why}: open still finds it"
    );
}

#[test]
fn the_last_holder_to_close_removes_the_name() {
    let name = unique_name("lifetime");
    let first = Mapping::create_or_open(&name, 4096).unwrap();
    let second = Mapping::open(&name).unwrap();
    drop(first);
    assert!(Mapping::open(&name).unwrap().existed(), "a holder remains");
    drop(second);
    assert_gone(&name, "after every handle is dropped");
    assert!(!Mapping::create_or_open(&name, 4096).unwrap().existed());
    assert_gone(&name, "after the new one is dropped");
}

#[test]
fn a_killed_last_holder_leaves_a_name_the_next_open_reclaims() {
    for killed in [1usize, 3] {
        let name = unique_name("killed");
        let hold = || Role::Hold.spawn().env("NAME", &name).limit(LIMIT);
        let mut holders: Vec<_> = (0..killed).map(|_| hold().start()).collect();
        for holder in &mut holders {
            holder.wait_ready();
        }
        let survivor = Mapping::open(&name).unwrap();
        assert_eq!(survivor.read_value_at::<[u8; 4]>(0).unwrap(), *b"held");
        for holder in &mut holders {
            holder.kill(); // SIGKILL: no destructor runs
        }
        drop(survivor);
        assert_gone(
            &name,
            "the surviving holder, closing last, removed the name",
        );

        // Now the holders are killed while nobody else holds the name.
        let _holder = hold().kill_when_ready(); // SIGKILL, TerminateProcess on Windows
        if cfg!(target_os = "linux") {
            assert!(shm_entry_exists(&name), "a killed holder cannot clean up");
        }
        // Linux: the stale name is not opened, and open reclaims it.
        // Windows: the kernel closed the section with the holder's last handle.
        assert!(
            matches!(Mapping::open(&name), Err(Error::NotFound { .. })),
            "the name of a killed last holder is not opened"
        );
        assert_gone(&name, "after the last holder was killed");
        let fresh = Mapping::create_or_open(&name, 4096).unwrap();
        assert!(!fresh.existed());
        assert_eq!(
            fresh.read_value_at::<[u8; 4]>(0).unwrap(),
            [0; 4],
            "fresh memory, not the dead holder's"
        );
        drop(fresh);
        assert!(!shm_entry_exists(&name));
    }
}

#[test]
fn a_stale_name_is_reclaimed_by_create() {
    let name = unique_name("stale-create");
    let _dead = Role::Hold.spawn().env("NAME", &name).kill_when_ready();
    if cfg!(target_os = "linux") {
        assert!(shm_entry_exists(&name), "a killed holder cannot clean up");
    }
    let created = Mapping::create(&name, 8192).unwrap();
    assert_eq!(created.len(), 8192);
}

#[cfg(unix)]
#[test]
fn persistent_mappings_stay_until_removed() {
    let name = unique_name("persistent");
    let map = Mapping::options()
        .size(4096)
        .persistent(true)
        .create(&name)
        .unwrap();
    assert!(!map.follows_holders());
    map.write_at(0, b"kept").unwrap();
    drop(map);
    assert!(shm_entry_exists(&name));
    let again = Mapping::create_or_open(&name, 4096).unwrap();
    assert!(again.existed());
    assert_eq!(again.read_value_at::<[u8; 4]>(0).unwrap(), *b"kept");
    drop(again);
    assert!(
        shm_entry_exists(&name),
        "opening a persistent name does not make it follow holders"
    );
    Mapping::remove(&name).unwrap();
    assert!(!shm_entry_exists(&name));
}

#[cfg(target_os = "linux")]
#[test]
fn named_objects_are_owner_only_by_default() {
    use std::os::unix::fs::PermissionsExt;
    let name = unique_name("mode");
    let _map = Mapping::create(&name, 4096).unwrap();
    let mode = std::fs::metadata(format!("/dev/shm/{name}"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let shared_name = unique_name("mode-shared");
    let _shared = Mapping::options()
        .size(4096)
        .permissions(0o640)
        .create(&shared_name)
        .unwrap();
    let mode = std::fs::metadata(format!("/dev/shm/{shared_name}"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640 & !umask());
}

#[cfg(target_os = "linux")]
fn umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("Umask:"))
        .unwrap();
    u32::from_str_radix(line.split_whitespace().nth(1).unwrap(), 8).unwrap()
}

/// Maps the anonymous memory whose descriptor the parent handed down.
#[cfg(unix)]
fn child_inherit() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let fd: i32 = arg("FD").parse().unwrap();
    // SAFETY: the parent handed this descriptor down for this child to own.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let map = Mapping::from_fd(owned).unwrap();
    assert_eq!(map.read_value_at::<[u8; 6]>(0).unwrap(), *b"parent");
    map.write_at(0, b"child!").unwrap();
}

/// Maps the section whose handle the parent made inheritable.
#[cfg(windows)]
fn child_inherit() {
    use std::os::windows::io::{FromRawHandle, OwnedHandle};
    let raw: usize = arg("HANDLE").parse().unwrap();
    // SAFETY: the parent handed this inheritable handle down for this child to own.
    let owned = unsafe { OwnedHandle::from_raw_handle(raw as *mut std::ffi::c_void) };
    let map = Mapping::from_handle(owned).unwrap();
    assert_eq!(map.read_value_at::<[u8; 6]>(0).unwrap(), *b"parent");
    map.write_at(0, b"child!").unwrap();
}

#[cfg(windows)]
#[test]
fn anonymous_memory_is_shared_with_a_child_given_its_handle() {
    use std::os::windows::io::{AsHandle, AsRawHandle};
    use windows_sys::Win32::Foundation::{SetHandleInformation, HANDLE_FLAG_INHERIT};
    let map = Mapping::anonymous(4096).unwrap();
    map.write_at(0, b"parent").unwrap();
    let inheritable = map.as_handle().try_clone_to_owned().unwrap();
    // SAFETY: a live handle we own; only its inherit flag changes.
    let set = unsafe {
        SetHandleInformation(
            inheritable.as_raw_handle(),
            HANDLE_FLAG_INHERIT,
            HANDLE_FLAG_INHERIT,
        )
    };
    assert_ne!(set, 0);
    let raw = inheritable.as_raw_handle() as usize;
    let mut child = Role::Inherit
        .spawn()
        .env("HANDLE", raw.to_string())
        .limit(LIMIT)
        .start();
    drop(inheritable);
    child.wait_success();
    assert_eq!(map.read_value_at::<[u8; 6]>(0).unwrap(), *b"child!");
}

#[cfg(unix)]
#[test]
fn anonymous_memory_is_shared_with_a_child_given_its_descriptor() {
    use std::os::fd::{AsFd, AsRawFd};
    let map = Mapping::anonymous(4096).unwrap();
    map.write_at(0, b"parent").unwrap();
    // dup() leaves close-on-exec off, so the child inherits the copy.
    let inheritable = rustix::io::dup(map.as_fd()).unwrap();
    let mut child = Role::Inherit
        .spawn()
        .env("FD", inheritable.as_raw_fd().to_string())
        .limit(LIMIT)
        .start();
    drop(inheritable);
    child.wait_success();
    assert_eq!(map.read_value_at::<[u8; 6]>(0).unwrap(), *b"child!");
}

#[cfg(target_os = "linux")]
#[test]
fn named_file_backed_mappings_are_opened_by_name() {
    let path = std::env::temp_dir().join(unique_name("named-file"));
    let name = unique_name("named-file");
    let map = Mapping::options()
        .file(&path)
        .size(4096)
        .create_or_open(&name)
        .unwrap();
    assert!(!map.existed());
    map.write_at(0, b"file and name").unwrap();
    let by_name = Mapping::open(&name).unwrap();
    assert!(by_name.existed());
    assert_eq!(by_name.len(), 4096);
    assert_eq!(
        by_name.read_value_at::<[u8; 13]>(0).unwrap(),
        *b"file and name"
    );
    drop((map, by_name));
    assert!(
        !shm_entry_exists(&name),
        "the name goes with its last holder"
    );
    assert_eq!(
        &std::fs::read(&path).unwrap()[..13],
        b"file and name",
        "the file stays"
    );
    assert!(matches!(
        Mapping::options()
            .file(&path)
            .persistent(true)
            .create(&name),
        Err(Error::Unsupported { .. })
    ));
    std::fs::remove_file(&path).unwrap();
}

/// Runs a Python script (bounded); `None` (after saying why) when python3
/// is absent.
#[cfg(unix)]
fn python(script: &str, args: &[&str]) -> Option<shmio_testkit::Finished> {
    match shmio_testkit::Spawn::program("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .limit(LIMIT)
        .try_start()
    {
        Ok(child) => Some(child.finish()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "SKIPPED: python3 is not installed, so the CPython interop check did not run"
            );
            None
        }
        Err(e) => panic!("python3: {e}"),
    }
}

#[cfg(unix)]
const PY_PRELUDE: &str = "
import sys
from multiprocessing import shared_memory, resource_tracker
def untrack(shm):
    # Python < 3.13 tracks even attached segments and unlinks them at exit.
    resource_tracker.unregister(shm._name, 'shared_memory')
";

#[cfg(unix)]
#[test]
fn cpython_reads_what_shmio_wrote_and_the_reverse() {
    let name = unique_name("cpython");
    let map = Mapping::options()
        .size(4096)
        .persistent(true)
        .create(&name)
        .unwrap();
    map.write_at(0, b"from rust").unwrap();
    let script = format!(
        "{PY_PRELUDE}
shm = shared_memory.SharedMemory(sys.argv[1])
untrack(shm)
assert bytes(shm.buf[:9]) == b'from rust', bytes(shm.buf[:9])
print(shm.size)
shm.buf[100:111] = b'from python'
shm.close()
made = shared_memory.SharedMemory(sys.argv[1] + '-py', create=True, size=8192)
untrack(made)
made.buf[:6] = b'python'
made.close()
"
    );
    let Some(output) = python(&script, &[&name]) else {
        return;
    };
    assert!(
        output.status.success(),
        "python: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let size: u64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap();
    assert!(size >= 4096);
    assert_eq!(map.read_value_at::<[u8; 11]>(100).unwrap(), *b"from python");
    Mapping::remove(&name).unwrap();

    let made_by_python = format!("{name}-py");
    let opened = Mapping::open(&made_by_python).unwrap();
    assert!(opened.existed());
    assert!(
        !opened.follows_holders(),
        "shmio never removes what another program made"
    );
    assert!(opened.len() >= 8192);
    assert_eq!(opened.read_value_at::<[u8; 6]>(0).unwrap(), *b"python");
    drop(opened);
    Mapping::remove(&made_by_python).unwrap();
}

#[cfg(target_os = "linux")]
#[test]
fn an_opener_waits_for_another_programs_creator_to_size_the_object() {
    use std::os::unix::fs::OpenOptionsExt;
    let name = unique_name("unsized");
    let path = std::path::Path::new("/dev/shm").join(&name);
    // What CPython does: create at size 0, then ftruncate.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    let sizer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        file.set_len(8192).unwrap();
    });
    let map = Mapping::open(&name).unwrap();
    assert_eq!(map.len(), 8192, "the opener waited for the size");
    sizer.join().unwrap();
    drop(map);
    Mapping::remove(&name).unwrap();

    let never = unique_name("never-sized");
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(format!("/dev/shm/{never}"))
        .unwrap();
    let started = std::time::Instant::now();
    match Mapping::open(&never) {
        Err(e @ Error::NotReady { .. }) => assert!(e.to_string().contains(&never)),
        other => panic!("{other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the wait is bounded"
    );
    Mapping::remove(&never).unwrap();
}

#[cfg(target_os = "linux")]
#[test]
fn registry_lists_holders_and_collects_stale_names() {
    use shmio::inventory::{self, ObjectKind};
    let name = unique_name("registry");
    let map = Mapping::create(&name, 8192).unwrap();
    let second = Mapping::open(&name).unwrap();
    let info = inventory::stat(&name).unwrap();
    assert_eq!(
        (info.kind, info.size, info.holders, info.stale),
        (ObjectKind::Mapping, 8192, Some(2), false)
    );
    assert!(inventory::list()
        .unwrap()
        .iter()
        .any(|found| found.name == name));
    let mutex = shmio::NamedMutex::create_or_open(&name).unwrap();
    assert!(inventory::list()
        .unwrap()
        .iter()
        .any(|found| found.name == format!("{name}@mutex") && found.kind == ObjectKind::Mutex));
    drop((map, second, mutex));
    assert!(matches!(
        inventory::stat(&name),
        Err(Error::NotFound { .. })
    ));

    let _dead = Role::Hold.spawn().env("NAME", &name).kill_when_ready();
    assert!(inventory::stat(&name).unwrap().stale);
    let listed = inventory::gc(true).unwrap();
    assert!(
        listed.removed.iter().any(|found| found.name == name),
        "a dry run lists it"
    );
    assert!(shm_entry_exists(&name), "and leaves it");
    let removed = inventory::gc(false).unwrap();
    assert!(removed.removed.iter().any(|found| found.name == name));
    assert!(!shm_entry_exists(&name));
}
