//! The `shmio` binary against a hostile local user (Linux, as root, with
//! `nobody` as the other user): nothing hangs on an entry someone planted,
//! `gc` removes only what shmio made, a renamed object's holder leaves the
//! new one alone, endless input is refused, another user's objects are
//! joined only when trusted, `lock NAME` is the library's `map.lock()`,
//! and the diagnostics say what is there. Every run is bounded in time.

#![cfg(target_os = "linux")]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;

const NOBODY: u32 = 65534;
/// A command that should answer at once gets this long before it counts as hung.
const PROMPT: Duration = Duration::from_secs(10);

fn shm(name: &str) -> PathBuf {
    Path::new("/dev/shm").join(name)
}

/// Whether the tests that need root (and `setpriv`) can run.
fn root() -> bool {
    shmio_testkit::root_with(&["setpriv"])
}

/// `shmio ARGS`, which must finish within [`PROMPT`].
fn prompt(args: &[&str]) -> Run {
    shmio_with(args, b"", PROMPT)
}

fn mkfifo(path: &Path) {
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        path,
        rustix::fs::Mode::from_raw_mode(0o666),
    )
    .expect("mkfifo");
}

fn give_to_nobody(path: &Path) {
    std::os::unix::fs::lchown(path, Some(NOBODY), Some(NOBODY)).expect("lchown");
}

/// A copy of `shmio` that `nobody` may run, whatever the permissions of the
/// directories above the build.
fn shmio_for_nobody() -> &'static PathBuf {
    static COPY: OnceLock<PathBuf> = OnceLock::new();
    COPY.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("shmio-cli-trust-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let copy = dir.join("shmio");
        std::fs::copy(SHMIO, &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        copy
    })
}

/// Starts `shmio ARGS` as `nobody`, stdout and stderr collected.
fn spawn_as_nobody(args: &[&str]) -> Child {
    command(args)
        .program_path(shmio_for_nobody())
        .wrapped_in(
            "setpriv",
            [
                &format!("--reuid={NOBODY}"),
                &format!("--regid={NOBODY}"),
                "--clear-groups",
                "--",
            ],
        )
        .start()
}

/// Waits (bounded) until `stat NAME --json` shows `holders` holders.
fn wait_for_holders(name: &str, holders: u64) {
    poll_until(
        &format!("{holders} holder(s) of {name}"),
        LIMIT,
        POLL,
        || {
            let run = shmio(&["stat", name, "--json"]);
            run.status.success()
                && serde_json::from_slice::<serde_json::Value>(&run.stdout).unwrap()["holders"]
                    == holders
        },
    );
}

/// Item 1: a FIFO under a name, or another user's link to one, hangs nothing.
#[test]
fn nothing_hangs_on_a_planted_fifo_or_link() {
    let _turn = stale_turn();
    let fifo = unique("fifo");
    mkfifo(&shm(&fifo));
    for command in ["read", "dump", "stat"] {
        let run = prompt(&[command, &fifo]);
        assert_eq!(run.code(), Some(1), "{command}: {}", run.stderr);
        assert!(run.stderr.contains("FIFO"), "{command}: {}", run.stderr);
    }
    prompt(&["write", &fifo, "/etc/hostname"]).error("FIFO");

    if root() {
        let dir = std::env::temp_dir().join(unique("fifo-dir"));
        std::fs::create_dir(&dir).unwrap();
        mkfifo(&dir.join("fifo"));
        let evil = unique("evil");
        std::os::unix::fs::symlink(dir.join("fifo"), shm(&evil)).unwrap();
        give_to_nobody(&shm(&evil));
        let listed = prompt(&["ls"]).ok().text();
        assert!(
            listed.contains(&evil) && !listed.contains(&fifo),
            "{listed}"
        );
        prompt(&["ls", "--json"]).ok();
        prompt(&["gc", "--dry-run"]).ok();
        let stat = prompt(&["stat", &evil]).ok().text();
        assert!(stat.contains("owner:    nobody"), "{stat}");
        prompt(&["read", &evil]).error("belongs to uid 65534");
        prompt(&["lock", &unique("any"), "--", "true"]).ok();
        std::fs::remove_file(shm(&evil)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::remove_file(shm(&fifo)).unwrap();
}

/// Item 2: gc removes only the caller's own stale objects that shmio made,
/// says why it kept the rest, and a dry run lists what the real run removes.
#[test]
fn gc_removes_only_what_shmio_made() {
    if !root() {
        return;
    }
    let _turn = stale_turn();
    let base = unique("gc-only");
    let link = format!("{base}-link");
    std::os::unix::fs::symlink("/etc/hostname", shm(&link)).unwrap();
    give_to_nobody(&shm(&link));
    let sticky = format!("{base}-sticky");
    std::fs::write(shm(&sticky), b"x\n").unwrap();
    std::fs::set_permissions(shm(&sticky), std::fs::Permissions::from_mode(0o1644)).unwrap();
    give_to_nobody(&shm(&sticky));
    let own_link = format!("{base}-own-link");
    std::os::unix::fs::symlink("/etc/hostname", shm(&own_link)).unwrap();
    let dangling = format!("{base}-dangling");
    std::os::unix::fs::symlink("/nonexistent", shm(&dangling)).unwrap();
    // A stale mapping of shmio's: its only holder is killed.
    let stale = format!("{base}-stale");
    let mut holder = start_ready(&["__worker", "hold", &stale, "4K"], "ready existed=false");
    holder.kill();

    let mine = |text: &str, verb: &str| -> Vec<String> {
        text.lines()
            .filter_map(|line| line.strip_prefix(verb))
            .filter_map(|rest| rest.split_whitespace().next())
            .filter(|name| name.starts_with(&base))
            .map(str::to_owned)
            .collect()
    };
    let dry = prompt(&["gc", "--dry-run", "--verbose"]).ok().text();
    assert_eq!(
        mine(&dry, "would remove "),
        std::slice::from_ref(&stale),
        "{dry}"
    );
    for (name, why) in [
        (&link, "uid 65534"),
        (&sticky, "uid 65534"),
        (&own_link, "did not make"),
        (&dangling, "did not make"),
    ] {
        let line = dry
            .lines()
            .find(|line| line.starts_with(&format!("kept /{name}: ")))
            .unwrap_or_else(|| panic!("--verbose says why {name} was kept: {dry}"));
        assert!(line.contains(why), "{line}");
    }
    let real = prompt(&["gc"]).ok().text();
    assert_eq!(
        mine(&real, "removed "),
        mine(&dry, "would remove "),
        "{real}"
    );
    assert!(
        !real.contains("kept "),
        "only --verbose lists what was kept"
    );
    for name in [&link, &sticky, &own_link, &dangling] {
        assert!(shm(name).symlink_metadata().is_ok(), "gc removed {name}");
        std::fs::remove_file(shm(name)).unwrap();
    }
    assert_gone(&stale);
}

/// Item 3: the last holder of a renamed channel leaves the new channel of
/// that name alone.
#[test]
fn the_holder_of_a_renamed_channel_leaves_the_new_one_alone() {
    let name = unique("renamed");
    let mut first = command(&["recv", &name, "--count", "0", "--timeout", "1s"])
        .stdout(Output::Null)
        .start();
    wait_for_holders(&name, 1);
    let moved = format!("{name}-old");
    std::fs::rename(shm(&name), shm(&moved)).unwrap();
    let second = command(&["recv", &name, "--timeout", "30s"]).start();
    wait_for_holders(&name, 1);
    first.wait();
    assert!(
        shm(&name).exists(),
        "the first receiver removed the new channel"
    );
    shmio(&["send", &name, "still here"]).ok();
    let second = second.finish();
    assert!(second.status.success());
    assert_eq!(second.stdout_text(), "still here\n");
    assert_gone(&name);
    let _ = std::fs::remove_file(shm(&moved));
}

/// Item 6: endless input is refused after one byte more than fits.
#[test]
fn write_refuses_endless_input_at_once() {
    let name = unique("endless");
    shmio(&["create", &name, "--size", "4K"]).ok();
    let started = Instant::now();
    let run = prompt(&["write", &name, "/dev/zero"]);
    let run = run.error("does not fit");
    assert!(run.stderr.contains("nothing was written"), "{}", run.stderr);
    assert!(started.elapsed() < PROMPT);
    let back = shmio(&["read", &name]).ok();
    assert!(back.stdout.iter().all(|&byte| byte == 0), "nothing written");
    shmio(&["rm", &name]).ok();
}

/// Item 7: another user's channel is refused, naming the owner; trusting
/// the owner joins it; `--permissions` makes objects other users can use.
#[test]
fn another_users_objects_are_joined_only_when_trusted() {
    if !root() {
        return;
    }
    // nobody's receiver on a channel only nobody can use.
    let jobs = unique("squatted");
    let mut squatter = spawn_as_nobody(&["recv", &jobs, "--timeout", "60s"]);
    wait_for_holders(&jobs, 1);
    prompt(&["send", &jobs, "secret"]).error("belongs to uid 65534");
    prompt(&["read", &jobs]).error("belongs to uid 65534");
    prompt(&["lock", &jobs, "--", "true"]).error("belongs to uid 65534");
    // Asked to stop, nobody's receiver closes its channel, and the name goes.
    squatter.signal(libc::SIGTERM);
    squatter.wait();
    assert_gone(&jobs);

    // Made for sharing: root's receiver with --permissions 666; nobody sends
    // when it trusts root.
    let shared = unique("shared");
    let receiver = command(&["recv", &shared, "--permissions", "666", "--timeout", "60s"]).start();
    wait_for_holders(&shared, 1);
    let mode = std::fs::metadata(shm(&shared))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o666, "--permissions is exact, whatever the umask");
    // Root holds the channel too, and lets go last: whichever of nobody's
    // sender and root's receiver leaves first, the name goes with root (the
    // other-user-leaves-last case is its own test below).
    let root_hold = shmio::Channel::open(&shared).unwrap();
    let refused = spawn_as_nobody(&["send", &shared, "hello"]).finish();
    let said = refused.stderr_text();
    assert!(
        !refused.status.success() && said.contains("belongs to uid 0"),
        "{said}"
    );
    spawn_as_nobody(&["send", &shared, "hello", "--allow-owner", "root"]).wait_success();
    let received = receiver.finish();
    assert_eq!(received.stdout_text(), "hello\n");
    drop(root_hold);
    assert_gone(&shared);
}

/// `/dev/shm` is sticky: only an entry's owner (or root) may remove it. When
/// another user is the last to leave a shared name, the name stays, stale,
/// and its owner's next open reclaims it.
#[test]
fn a_name_another_user_leaves_last_is_reclaimed_by_its_owner() {
    if !root() {
        return;
    }
    let name = unique("left-by-nobody");
    let mut root_side =
        command(&["recv", &name, "--permissions", "666", "--timeout", "60s"]).start();
    wait_for_holders(&name, 1);
    let mut nobody = spawn_as_nobody(&["recv", &name, "--timeout", "60s", "--allow-owner", "root"]);
    wait_for_holders(&name, 2);
    root_side.signal(libc::SIGTERM);
    root_side.wait();
    wait_for_holders(&name, 1);
    nobody.signal(libc::SIGTERM);
    nobody.wait();

    let stat = shmio(&["stat", &name, "--json"]).ok();
    let stat: serde_json::Value = serde_json::from_slice(&stat.stdout).unwrap();
    assert_eq!(stat["holders"], 0);
    assert_eq!(
        stat["stale"], true,
        "nobody may not remove root's name: {stat}"
    );

    let reclaimed = shmio::Channel::options().create(&name).unwrap();
    drop(reclaimed);
    assert_gone(&name);
}

/// Item 8: `shmio lock NAME` is the mutex a library's `map.lock()` takes,
/// in both directions, and a holder's death is reported across them.
#[test]
fn lock_is_the_mappings_own_mutex() {
    let name = unique("lock-lib");
    let map = shmio::Mapping::create_or_open(&name, 4096).unwrap();

    // The library holds it: the CLI waits.
    let guard = map.lock().unwrap();
    let marker = temp_file("lock-lib-marker");
    let mut cli = command(&["lock", &name, "--", "touch"])
        .arg(&marker)
        .start();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !marker.exists(),
        "the CLI ran its command under the library's lock"
    );
    drop(guard);
    cli.wait_success();
    assert!(marker.exists());
    std::fs::remove_file(&marker).unwrap();

    // The CLI holds it: the library waits; the CLI is killed: OwnerDied.
    let mut holder = start_ready(&["lock", &name, "--", SHMIO, "__worker", "wait"], "ready");
    assert!(
        matches!(
            map.mutex().unwrap().try_lock(),
            Err(shmio::Error::WouldBlock)
        ),
        "the library sees the CLI's lock"
    );
    holder.kill();
    match map.lock() {
        Err(shmio::Error::OwnerDied { .. }) => map.lock_to_repair().unwrap().mark_consistent(),
        Ok(_) => panic!("the CLI died holding the lock: the library must be told"),
        Err(error) => panic!("{error}"),
    }

    // A library process dies holding it: the CLI is told.
    let mut library = start_ready(&["__worker", "hold-lock", &name], "locked");
    library.kill();
    let run = shmio(&["lock", &name, "--", "true"]).ok();
    assert_eq!(
        run.stderr.trim_end(),
        format!("shmio: the previous owner of {name} died holding it")
    );
    drop(map);
    assert_gone(&name);
    assert_gone(&format!("{name}.mutex@mutex"));
}

/// Item 9: what is there is said at once and plainly.
#[test]
fn diagnostics_say_what_is_there() {
    let _turn = stale_turn();
    // A blank mapping where a channel or a mapping's mutex should be.
    let blank = unique("blank");
    shmio(&["create", &blank, "--size", "4K"]).ok();
    let started = Instant::now();
    prompt(&["recv", &blank, "--timeout", "5s"]).error("is not a shmio channel");
    let mutex = unique("blank-mutex");
    shmio(&["create", &format!("{mutex}.mutex@mutex"), "--size", "4K"]).ok();
    prompt(&["lock", &mutex, "--", "true"]).error("is not a shmio mutex");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "WrongKind at once, not after a wait: {:?}",
        started.elapsed()
    );
    shmio(&["rm", &blank]).ok();
    shmio(&["rm", &format!("{mutex}.mutex@mutex")]).ok();

    // `stat X` is X, not X's mutex.
    let named = unique("stat-mutex");
    let _mutex = shmio::NamedMutex::create_or_open(&named).unwrap();
    prompt(&["stat", &named]).error(&named);
    let stat = prompt(&["stat", &format!("{named}@mutex")]).ok().text();
    assert!(stat.contains(&format!("name:     {named}@mutex")), "{stat}");
    assert!(stat.contains("kind:     mutex"), "{stat}");

    // Names from other users are shown escaped, as `ls -b` would.
    let hostile = format!("{}-\x1b[31mred\nline", unique("escape"));
    let _held = shmio::Mapping::create(&hostile, 4096).unwrap();
    for listing in [
        prompt(&["ls"]).ok().text(),
        prompt(&["gc", "--dry-run", "--verbose"]).ok().text(),
    ] {
        assert!(
            !listing.contains('\x1b'),
            "a raw escape reached the terminal"
        );
        assert!(listing.contains("\\e[31mred\\nline"), "{listing}");
    }

    // "1 byte", not "1 bytes".
    let small = unique("one-byte");
    shmio(&["create", &small, "--size", "4K"]).ok();
    prompt(&["read", &small, "--offset", "4096", "--len", "1"]).error("reading 1 byte at");
    shmio(&["rm", &small]).ok();

    // SIGTERM to a receiver: it exits cleanly and the channel goes with it.
    let channel = unique("sigterm");
    let mut receiver = command(&["recv", &channel, "--count", "0"])
        .stdout(Output::Null)
        .limit(PROMPT)
        .start();
    wait_for_holders(&channel, 1);
    receiver.signal(libc::SIGTERM);
    let status = receiver.wait();
    assert_eq!(
        status.code(),
        Some(128 + 15),
        "exits as a shell reports SIGTERM"
    );
    assert_gone(&channel);
}
