//! Helpers shared by the integration tests: unique names, child processes
//! (the test binary re-run in a role), and waits that are always bounded.

#![allow(dead_code)]

use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The environment variable that tells a re-run test binary which role to play.
pub const ROLE_VAR: &str = "SHMIO_TEST_ROLE";

/// A name no other test (or test run) uses.
pub fn unique_name(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("shmio-test-{tag}-{}-{n}", std::process::id())
}

/// Starts this test binary again, running only the test `entry`, with
/// `role` and `args` in its environment.
pub fn spawn_role(entry: &str, role: &str, args: &[(&str, String)]) -> Child {
    let mut command = Command::new(std::env::current_exe().expect("test binary path"));
    command
        .args([entry, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE_VAR, role)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    for (key, value) in args {
        command.env(key, value);
    }
    command.spawn().expect("spawn child test process")
}

/// Waits for `child` to exit, killing it after `limit`.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child {} still running after {limit:?}: killed", child.id());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Spins (yielding) until `done()` holds, panicking after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::yield_now();
    }
}

/// The environment value `key` given to a child role.
pub fn arg(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("child role needs {key}"))
}

/// Whether `/dev/shm` has an entry for `name` (Linux).
pub fn shm_entry_exists(name: &str) -> bool {
    std::path::Path::new("/dev/shm")
        .join(name)
        .symlink_metadata()
        .is_ok()
}

/// Starts `role` of the test `entry` with `args` and READY, the name of a
/// fresh mapping whose first `u32` the child sets (or bumps) to 1 once it is
/// ready; waits for that, kills the child (SIGKILL, TerminateProcess on
/// Windows) and waits for it. The child is returned for its handle: while it
/// is open, Windows gives the dead process's id to no one else.
pub fn kill_when_ready(entry: &str, role: &str, args: &[(&str, String)]) -> Killed {
    let ready_name = unique_name("ready");
    let ready = shmio::Mapping::create(&ready_name, 4096).expect("the ready mapping");
    let mut args = args.to_vec();
    args.push(("READY", ready_name));
    let mut child = spawn_role(entry, role, &args);
    let flag = ready.atomic_u32(0).expect("an aligned word");
    wait_until("the child to be ready", Duration::from_secs(60), || {
        flag.load(Ordering::Acquire) == 1
    });
    child.kill().expect("kill the child");
    child.wait().expect("reap the child");
    Killed(child)
}

/// A child already killed and reaped, kept only for its handle.
pub struct Killed(#[allow(dead_code)] Child);
