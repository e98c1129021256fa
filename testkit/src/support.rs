//! The small helpers shmio's tests share: unique names, a seeded generator
//! and a checksum, what is under `/dev/shm`, and whether the tests that
//! need root can run.

use std::sync::atomic::{AtomicU32, Ordering};

/// A name no other test (or test run) uses: `PREFIX-TAG-PID-N`.
pub fn unique(prefix: &str, tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{tag}-{}-{n}", std::process::id())
}

/// A name no other test (or test run) uses: `shmio-test-TAG-PID-N`.
pub fn unique_name(tag: &str) -> String {
    unique("shmio-test", tag)
}

/// A small seeded xorshift generator: tests need reproducible randomness
/// (print the seed) and shmio has no `rand` dependency.
#[derive(Clone, Debug)]
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

/// Whether `/dev/shm` has an entry (of any kind) called `name` (Linux;
/// false where there is no `/dev/shm`).
pub fn shm_entry_exists(name: &str) -> bool {
    std::path::Path::new("/dev/shm")
        .join(name)
        .symlink_metadata()
        .is_ok()
}

/// The entries under `/dev/shm` whose names start with `prefix`, sorted
/// (Linux; empty where there is no `/dev/shm`). A `/dev/shm` that is there
/// but cannot be listed is a panic, never an empty list.
#[track_caller]
pub fn shm_entries_with_prefix(prefix: &str) -> Vec<String> {
    let dir = match std::fs::read_dir("/dev/shm") {
        Ok(dir) => dir,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(error) => panic!("listing /dev/shm: {error}"),
    };
    let mut found: Vec<String> = dir
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(prefix))
        .collect();
    found.sort();
    found
}

/// Whether this process is root and has every command in `tools` (for the
/// tests that switch users or mount file systems). When it is not, says so
/// and returns false, so the test passes as skipped, unless
/// `SHMIO_REQUIRE_ROOT_TESTS` is set (as `.ci/run` does as root): then it
/// panics.
#[cfg(target_os = "linux")]
#[track_caller]
pub fn root_with(tools: &[&str]) -> bool {
    use std::process::{Command, Stdio};
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
