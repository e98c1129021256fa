//! The watchdog every process of a run starts (parent and children): after
//! [`STALL`] without progress it kills the children it knows of (Unix),
//! removes what was registered with [`OnStall`], and exits with status 3.
//! So no wait anywhere in a run is unbounded, whatever the other processes
//! do. A process that measures only for a while (`shmio demo`) arms it for
//! that while ([`arm`]); one that is all run ([`start`]) for good. The
//! children are killed by the child-process kit (`crate::process::kill_by_id`);
//! on Windows, where it cannot, not from here: each runs its own watchdog,
//! and a parent gone is an end of input for those that read commands.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a process may see no progress before it gives up.
pub const STALL: Duration = Duration::from_secs(10);

static PROGRESS: AtomicU64 = AtomicU64::new(0);
static STAGE: Mutex<String> = Mutex::new(String::new());
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());
type Cleanup = Box<dyn Fn() + Send>;

static CLEANUPS: Mutex<Vec<(u64, Cleanup)>> = Mutex::new(Vec::new());
static NEXT_CLEANUP: AtomicU64 = AtomicU64::new(0);
static STARTED: std::sync::Once = std::sync::Once::new();
/// How many [`Armed`] guards live (`usize::MAX / 2` more after [`start`]).
static ARMED: AtomicUsize = AtomicUsize::new(0);

/// Counts one step of progress. Only ever called from one thread per
/// process (the one doing the work), so a plain load and store suffice:
/// no locked instruction on the measured paths.
#[inline]
pub fn progress() {
    PROGRESS.store(
        PROGRESS.load(Ordering::Relaxed).wrapping_add(1),
        Ordering::Relaxed,
    );
}

/// Names what the process is doing now (shown if it stalls); counts as progress.
pub fn stage(stage: String) {
    *STAGE.lock().unwrap_or_else(|e| e.into_inner()) = stage;
    progress();
}

/// A child to kill if this process gives up.
pub fn add_child(pid: u32) {
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
}

/// A child gone.
pub fn remove_child(pid: u32) {
    CHILDREN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|p| *p != pid);
}

/// Starts the watchdog for the rest of the process's life. `who` names the
/// process in its last words.
pub fn start(who: String) {
    ARMED.fetch_add(usize::MAX / 2, Ordering::Relaxed);
    spawn(who);
}

/// Arms the watchdog while the guard lives.
pub fn arm(who: String) -> Armed {
    ARMED.fetch_add(1, Ordering::Relaxed);
    progress();
    spawn(who);
    Armed(())
}

/// The watchdog is armed while this lives; see [`arm`].
pub struct Armed(());

impl Drop for Armed {
    fn drop(&mut self) {
        ARMED.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Starts the watchdog thread (once per process: the first `who` is the one it says).
fn spawn(who: String) {
    STARTED.call_once(move || {
        std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || watch(&who))
            .expect("spawn the watchdog thread");
    });
}

fn watch(who: &str) {
    let mut seen = PROGRESS.load(Ordering::Relaxed);
    let mut since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = PROGRESS.load(Ordering::Relaxed);
        if ARMED.load(Ordering::Relaxed) == 0 {
            since = Instant::now();
        } else if now != seen {
            seen = now;
            since = Instant::now();
        } else if since.elapsed() > STALL {
            let stage = STAGE.lock().unwrap_or_else(|e| e.into_inner()).clone();
            eprintln!(
                "{who}: no progress for {} s ({stage}); giving up",
                STALL.as_secs()
            );
            for pid in CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                // Unix; see the module docs for Windows.
                let _ = crate::process::kill_by_id(*pid);
            }
            std::thread::sleep(Duration::from_millis(100));
            for (_, cleanup) in CLEANUPS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                cleanup();
            }
            std::process::exit(3);
        }
    }
}

/// Something to remove if the process gives up, for as long as this lives.
pub struct OnStall(u64);

impl OnStall {
    /// Runs `cleanup` if the process gives up while this lives.
    pub fn new(cleanup: impl Fn() + Send + 'static) -> OnStall {
        let key = NEXT_CLEANUP.fetch_add(1, Ordering::Relaxed);
        CLEANUPS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((key, Box::new(cleanup)));
        OnStall(key)
    }

    /// Removes the shmio name `name` if the process gives up.
    pub fn shmio_name(name: &str) -> OnStall {
        let name = name.to_owned();
        OnStall::new(move || {
            let _ = shmio::Mapping::remove(&name);
        })
    }
}

impl Drop for OnStall {
    fn drop(&mut self) {
        CLEANUPS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(k, _)| *k != self.0);
    }
}
