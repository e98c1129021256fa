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

/// A small seeded xorshift generator: tests need reproducible randomness
/// (print the seed) and the crate has no `rand` dependency.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value; 0 is replaced).
    pub fn new(seed: u64) -> Rng {
        Rng(mix(seed) | 1)
    }

    /// A seed from the clock and the process id, for a run that prints it.
    pub fn fresh_seed() -> u64 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        mix(nanos ^ (u64::from(std::process::id()) << 32))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// A 64-bit mix (splitmix64's finaliser): a checksum step and a seed scrambler.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A checksum of `words`, never 0 (so zeroed memory never passes for data).
pub fn checksum(words: &[u64]) -> u64 {
    words
        .iter()
        .fold(0x5348_4d49_4f21_u64, |sum, &w| mix(sum ^ w))
        | 1
}

/// The entries under `/dev/shm` whose names start with `prefix` (Linux;
/// empty elsewhere).
pub fn shm_entries_with_prefix(prefix: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return Vec::new();
    };
    let mut found: Vec<String> = dir
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(prefix))
        .collect();
    found.sort();
    found
}

/// The size of the PROGRESS mapping that [`kill_at_progress`] gives a child.
pub const PROGRESS_SIZE: u64 = 1 << 16;

/// Starts `role` of the test `entry` with `args` and PROGRESS, the name of a
/// fresh mapping of [`PROGRESS_SIZE`] bytes whose first `u64` the child
/// bumps as it works (the rest is the test's to use); waits until it reaches
/// `target`, kills the child (SIGKILL, TerminateProcess on Windows) and
/// reaps it. Returns the child (for its handle, see [`kill_when_ready`]),
/// the progress mapping and the count the child had reached when it died.
/// Panics if the child exits on its own first.
pub fn kill_at_progress(
    entry: &str,
    role: &str,
    args: &[(&str, String)],
    target: u64,
) -> (Killed, shmio::Mapping, u64) {
    let progress_name = unique_name("progress");
    let progress =
        shmio::Mapping::create(&progress_name, PROGRESS_SIZE).expect("the progress mapping");
    let mut args = args.to_vec();
    args.push(("PROGRESS", progress_name));
    let mut child = spawn_role(entry, role, &args);
    let count = progress.atomic_u64(0).expect("an aligned word");
    wait_until(
        &format!("the child {role} to reach {target}"),
        Duration::from_secs(60),
        || {
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!("the child {role} exited before it was killed: {status}");
            }
            count.load(Ordering::Acquire) >= target
        },
    );
    child.kill().expect("kill the child");
    child.wait().expect("reap the child");
    let reached = count.load(Ordering::Acquire);
    (Killed(child), progress, reached)
}

/// Whether this process is root and has every command in `tools` (for the
/// tests that switch users or mount file systems). When it is not, says so
/// and returns false, so the test passes as skipped, unless
/// `SHMIO_REQUIRE_ROOT_TESTS` is set (as `.ci/run` does as root): then it
/// panics.
#[cfg(target_os = "linux")]
pub fn root_with(tools: &[&str]) -> bool {
    let root = rustix::process::geteuid().is_root();
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|tool| {
            !Command::new(tool)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
        })
        .collect();
    if root && missing.is_empty() {
        return true;
    }
    let why = if root {
        format!("missing {}", missing.join(", "))
    } else {
        "not root".to_owned()
    };
    assert!(
        std::env::var_os("SHMIO_REQUIRE_ROOT_TESTS").is_none(),
        "SHMIO_REQUIRE_ROOT_TESTS is set but this test cannot run: {why}"
    );
    eprintln!("skipped: {why}");
    false
}
