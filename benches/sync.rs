//! Synchronisation benchmarks against their raw baselines, in one run of
//! the benchmark harness (`shmio-bench`'s library): an uncontended
//! `NamedMutex` lock + unlock against a raw robust pthread mutex in shared
//! memory, and the cross-process wake-up round trip of two `NamedEvent`s
//! against a raw futex ping-pong, each with an echo child (this binary
//! again, in the harness's roles). Everything runs on one CPU: see
//! [`linux::pin_to_this_cpu`].
//!
//! Run: `cargo bench --bench sync` (`-- --test`: a short run).

fn main() {
    // A child of the wake-up round trips: serve its role.
    if let Some(code) = shmio_bench::sides::serve_child() {
        std::process::exit(code);
    }
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    #[cfg(target_os = "linux")]
    linux::main(std::env::args().any(|arg| arg == "--test"));
    #[cfg(not(target_os = "linux"))]
    println!(
        "the sync baselines (robust pthread mutex, futex) are Linux's; nothing to compare here"
    );
}

#[cfg(target_os = "linux")]
mod linux {
    use std::hint::black_box;
    use std::time::Duration;

    use shmio::{Mapping, NamedMutex};
    use shmio_bench::harness::{self, Calls, Settings};
    use shmio_bench::report::{pair_header, pair_row, Compare};
    use shmio_bench::sides::event::EventRoundTrip;
    use shmio_bench::sides::futex::FutexRoundTrip;
    use shmio_bench::watchdog;

    pub fn main(smoke: bool) {
        // Batches of about the same number of calls as the earlier fixed
        // ones (short batches are the ones a busy machine interrupts least).
        let settings = |batch_time| {
            if smoke {
                Settings {
                    rounds: 3,
                    batch_time: Duration::from_millis(1),
                }
            } else {
                Settings {
                    rounds: 41,
                    batch_time,
                }
            }
        };
        watchdog::start("the sync bench".into());
        pin_to_this_cpu();
        let lock = harness::pair(
            "lock + unlock",
            Calls(lock_unlock_shmio()),
            Calls(lock_unlock_raw()),
            settings(Duration::from_millis(1)),
        )
        .unwrap();
        let base = format!("shmio-bench-sync-{}", std::process::id());
        let wake = harness::pair(
            "wake-up round trip",
            EventRoundTrip::start(&format!("{base}-event")).unwrap(),
            FutexRoundTrip::start(&format!("{base}-futex")).unwrap(),
            settings(Duration::from_millis(10)),
        )
        .unwrap();

        print!("{}", pair_header(settings(Duration::ZERO).rounds));
        print!(
            "{}",
            pair_row(
                "uncontended lock + unlock",
                lock,
                "raw robust pthread mutex in shared memory",
                Compare::Time,
                "time <= 1.2x",
            )
        );
        print!(
            "{}",
            pair_row(
                "cross-process wake-up round trip (set, wait)",
                wake,
                "raw futex ping-pong",
                Compare::Time,
                "time <= 1.2x",
            )
        );
    }

    /// Keeps this process, and the echo children it starts (they inherit
    /// it), on the CPU it runs on now. On a VM, a wake-up that crosses to a
    /// sleeping vCPU costs about ten times one on the same CPU (40 µs
    /// against 4 µs here), and which of the two each side got depended on
    /// where the scheduler put its child: a run gave 0.1x or 11x as often
    /// as the real ratio. Pinned, both sides take the same path.
    pub fn pin_to_this_cpu() {
        // SAFETY: `set` is a zeroed (empty) cpu_set_t, filled by CPU_SET
        // with a CPU number the kernel just gave; sched_setaffinity reads
        // `size_of` bytes of it.
        unsafe {
            let cpu = libc::sched_getcpu();
            if cpu < 0 {
                return;
            }
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu as usize, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
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
}
