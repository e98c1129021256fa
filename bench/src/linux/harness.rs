//! The paired harness, after `benches/support/mod.rs`: every side runs in
//! batches, the sides take turns within each round (the order rotates from
//! round to round), so drift on a shared, noisy machine hits all of them
//! alike; each figure is a median over the rounds, and each ratio the median
//! of the per-round ratios.
//!
//! Unlike `benches/support`, a side here is a whole batch (it may wake a
//! child process, warm up, time `n` operations and stop the child again), and
//! reports its own nanoseconds per operation, so set-up is never timed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::proc::watchdog;
use super::Result;

/// One contender.
pub trait Side {
    /// Runs `n` operations (fewer if [`timed`] cuts the batch short) and
    /// returns nanoseconds per operation.
    fn batch(&mut self, n: u64) -> Result<f64>;

    /// Gives an idle child some traffic, so its watchdog knows the parent is alive.
    fn keepalive(&mut self) -> Result<()>;
}

/// The longest a [`timed`] batch runs, in nanoseconds.
static CAP_NS: AtomicU64 = AtomicU64::new(1_000_000_000);

/// Runs `op` `n` times and returns nanoseconds per call, stopping early
/// (after a multiple of 64 calls) once the batch has run past its cap: on a
/// machine busy with other work, busy-polling sides can slow down a
/// hundredfold, and a batch sized beforehand must not then run for minutes.
#[inline]
pub fn timed(n: u64, mut op: impl FnMut() -> Result<()>) -> Result<f64> {
    let cap = Duration::from_nanos(CAP_NS.load(Ordering::Relaxed));
    let start = Instant::now();
    let mut done = 0;
    while done < n {
        let chunk = (n - done).min(64);
        for _ in 0..chunk {
            op()?;
        }
        done += chunk;
        if start.elapsed() > cap {
            break;
        }
    }
    Ok(start.elapsed().as_secs_f64() * 1e9 / done.max(1) as f64)
}

/// How long a side may go without traffic before it gets a keepalive.
const IDLE: Duration = Duration::from_secs(2);

/// How long and how often.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Rounds; the medians are taken over these.
    pub rounds: usize,
    /// The wall time one batch of one side aims at.
    pub batch_time: Duration,
}

/// What a run found: per side, the nanoseconds per operation of each round.
pub struct Results {
    keys: Vec<&'static str>,
    rounds: Vec<Vec<f64>>,
}

impl Results {
    fn index(&self, key: &str) -> usize {
        self.keys
            .iter()
            .position(|k| *k == key)
            .unwrap_or_else(|| panic!("no side called {key:?}"))
    }

    /// The median nanoseconds per operation of `key`.
    pub fn median(&self, key: &str) -> f64 {
        median(self.rounds[self.index(key)].clone())
    }

    /// The median over the rounds of `a`'s time / `b`'s time.
    pub fn ratio(&self, a: &str, b: &str) -> f64 {
        let (a, b) = (&self.rounds[self.index(a)], &self.rounds[self.index(b)]);
        median(a.iter().zip(b).map(|(x, y)| x / y).collect())
    }
}

/// Runs `sides` in rotating order for `settings.rounds` rounds, after
/// sizing each side's batch to `settings.batch_time` and one warm-up round.
pub fn run(
    group: &str,
    mut sides: Vec<(&'static str, Box<dyn Side + '_>)>,
    settings: Settings,
) -> Result<Results> {
    let target = settings.batch_time.as_secs_f64() * 1e9;
    CAP_NS.store((target as u64 * 4).max(100_000_000), Ordering::Relaxed);
    let verbose = std::env::var_os("SHMIO_BENCH_VERBOSE").is_some();
    let mut last_active = vec![Instant::now(); sides.len()];
    let mut sizes = Vec::with_capacity(sides.len());
    for index in 0..sides.len() {
        let (key, side) = &mut sides[index];
        watchdog::stage(format!("{group}: sizing {key}"));
        let n = size_batch(side.as_mut(), target)?;
        if verbose {
            eprintln!("{group}: {key}: batches of {n}");
        }
        sizes.push(n);
        last_active[index] = Instant::now();
        keep_alive(&mut sides, &mut last_active)?;
    }
    let keys: Vec<&'static str> = sides.iter().map(|(key, _)| *key).collect();
    let mut rounds = vec![Vec::with_capacity(settings.rounds); sides.len()];
    let count = sides.len();
    for round in 0..=settings.rounds {
        for step in 0..count {
            let index = (round + step) % count;
            let (key, side) = &mut sides[index];
            watchdog::stage(format!("{group}: {key}, round {round}"));
            let ns = side.batch(sizes[index])?;
            if verbose {
                eprintln!("{group}: round {round}: {key}: {ns:.1} ns");
            }
            // Round 0 warms everything up and is not kept.
            if round > 0 {
                rounds[index].push(ns);
            }
            last_active[index] = Instant::now();
            keep_alive(&mut sides, &mut last_active)?;
        }
    }
    watchdog::stage(format!("{group}: done"));
    Ok(Results { keys, rounds })
}

/// Sends a keepalive to every side idle for longer than [`IDLE`].
fn keep_alive(
    sides: &mut [(&'static str, Box<dyn Side + '_>)],
    last_active: &mut [Instant],
) -> Result<()> {
    for ((_, side), last) in sides.iter_mut().zip(last_active) {
        if last.elapsed() > IDLE {
            side.keepalive()?;
            *last = Instant::now();
        }
    }
    Ok(())
}

/// The batch size that takes about `target` nanoseconds: grows until a
/// batch is long enough to time, then re-sizes twice more (the first
/// batches also pay for page faults and cold caches).
fn size_batch(side: &mut dyn Side, target: f64) -> Result<u64> {
    let mut n: u64 = 16;
    loop {
        let ns = side.batch(n)?;
        if ns * n as f64 >= target / 8.0 || n >= 1 << 32 {
            let mut ns = ns;
            for _ in 0..2 {
                ns = side.batch(((target / ns.max(0.1)) as u64).clamp(16, 1 << 34))?;
            }
            return Ok(((target / ns.max(0.1)) as u64).clamp(16, 1 << 34));
        }
        n *= 4;
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
