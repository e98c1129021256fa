//! Synchronisation benchmarks against their raw baselines, in one run:
//! an uncontended `NamedMutex` lock + unlock against a raw robust pthread
//! mutex in shared memory, and the cross-process wake-up round trip of two
//! `NamedEvent`s against a raw futex ping-pong between the same two processes.
//!
//! Run: `cargo bench --bench sync`

#[cfg(target_os = "linux")]
mod support;

#[cfg(target_os = "linux")]
fn main() {
    linux::main();
}

#[cfg(not(target_os = "linux"))]
fn main() {
    println!(
        "the sync baselines (robust pthread mutex, futex) are Linux's; nothing to compare here"
    );
}

#[cfg(target_os = "linux")]
mod linux {
    use std::hint::black_box;
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicU32, Ordering};

    use rustix::thread::futex;
    use shmio::{EventMode, Mapping, NamedEvent, NamedMutex};

    use crate::support::{header, paired, row};

    const ROLE: &str = "SHMIO_BENCH_ROLE";
    const ROUND_TRIPS: u32 = 2000;
    /// Offsets in the control mapping the echo processes share with the parent.
    const STOP: u64 = 0;
    const RAW_PING: u64 = 64;
    const RAW_PONG: u64 = 128;

    pub fn main() {
        if let Ok(role) = std::env::var(ROLE) {
            return echo(&role, &std::env::var("SHMIO_BENCH_NAME").unwrap());
        }
        if std::env::args().any(|arg| arg == "--list") {
            return;
        }
        let lock = paired(lock_unlock_shmio(), lock_unlock_raw(), 100_000);
        let base = format!("shmio-bench-sync-{}", std::process::id());
        let control = Mapping::create(&format!("{base}-control"), 4096).unwrap();
        let ping =
            NamedEvent::create_or_open(&format!("{base}-ping"), EventMode::AutoReset).unwrap();
        let pong =
            NamedEvent::create_or_open(&format!("{base}-pong"), EventMode::AutoReset).unwrap();
        let mut children = [spawn("event", &base), spawn("futex", &base)];
        let raw_ping = control.atomic_u32(RAW_PING).unwrap();
        let raw_pong = control.atomic_u32(RAW_PONG).unwrap();
        let wake = paired(
            || {
                ping.set().unwrap();
                pong.wait().unwrap();
            },
            || {
                raw_set(raw_ping);
                raw_wait(raw_pong);
            },
            ROUND_TRIPS,
        );
        control.atomic_u32(STOP).unwrap().store(1, Ordering::SeqCst);
        ping.set().unwrap();
        raw_set(raw_ping);
        for child in &mut children {
            child.wait().unwrap();
        }

        header();
        row(
            "uncontended lock + unlock",
            lock,
            "raw robust pthread mutex in shared memory",
            false,
            "time <= 1.2x",
        );
        row(
            "cross-process wake-up round trip (set, wait)",
            wake,
            "raw futex ping-pong",
            false,
            "time <= 1.2x",
        );
    }

    fn lock_unlock_shmio() -> impl FnMut() {
        let mutex =
            NamedMutex::create_or_open(&format!("shmio-bench-mutex-{}", std::process::id()))
                .unwrap();
        move || match mutex.lock() {
            Ok(guard) => drop(black_box(guard)),
            Err(_) => panic!("an uncontended lock failed"),
        }
    }

    /// The baseline: a robust, process-shared, error-checking pthread mutex
    /// (what NamedMutex is on Linux) in shared memory, called directly.
    fn lock_unlock_raw() -> impl FnMut() {
        let memory = Mapping::anonymous(4096).unwrap();
        let view = memory.view(0, 4096).unwrap();
        let mutex = view.as_mut_ptr().cast::<libc::pthread_mutex_t>();
        // SAFETY: private benchmark memory, page-aligned, set up once here and
        // used only by this closure (which keeps `view` alive).
        unsafe {
            let mut attr = std::mem::zeroed::<libc::pthread_mutexattr_t>();
            libc::pthread_mutexattr_init(&mut attr);
            libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
            libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST);
            libc::pthread_mutexattr_settype(&mut attr, libc::PTHREAD_MUTEX_ERRORCHECK);
            assert_eq!(libc::pthread_mutex_init(mutex, &attr), 0);
        }
        move || {
            let _keep = &view;
            // SAFETY: an initialised mutex in live memory, locked and
            // unlocked by this thread.
            unsafe {
                assert_eq!(libc::pthread_mutex_lock(black_box(mutex)), 0);
                libc::pthread_mutex_unlock(mutex);
            }
        }
    }

    fn spawn(role: &str, base: &str) -> Child {
        Command::new(std::env::current_exe().unwrap())
            .env(ROLE, role)
            .env("SHMIO_BENCH_NAME", base)
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// The other process: answers every ping with a pong until told to stop.
    fn echo(role: &str, base: &str) {
        let control = Mapping::open(&format!("{base}-control")).unwrap();
        let stop = control.atomic_u32(STOP).unwrap();
        if role == "event" {
            let ping =
                NamedEvent::create_or_open(&format!("{base}-ping"), EventMode::AutoReset).unwrap();
            let pong =
                NamedEvent::create_or_open(&format!("{base}-pong"), EventMode::AutoReset).unwrap();
            loop {
                ping.wait().unwrap();
                if stop.load(Ordering::SeqCst) == 1 {
                    return;
                }
                pong.set().unwrap();
            }
        }
        let (ping, pong) = (
            control.atomic_u32(RAW_PING).unwrap(),
            control.atomic_u32(RAW_PONG).unwrap(),
        );
        loop {
            raw_wait(ping);
            if stop.load(Ordering::SeqCst) == 1 {
                return;
            }
            raw_set(pong);
        }
    }

    /// A minimal futex event: set the word, wake one sleeper.
    fn raw_set(word: &AtomicU32) {
        word.store(1, Ordering::SeqCst);
        let _ = futex::wake(word, futex::Flags::empty(), 1);
    }

    /// Sleep until the word is 1, then take it.
    fn raw_wait(word: &AtomicU32) {
        while word
            .compare_exchange(1, 0, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            let _ = futex::wait(word, futex::Flags::empty(), 0, None);
        }
    }
}
