//! The paired harness: every side runs in batches, the sides take turns
//! within each round (the order rotates from round to round: with two
//! sides, they alternate), so drift on a shared, noisy machine hits all of
//! them alike; each figure is a median over the rounds, and each ratio the
//! median of the per-round ratios.
//!
//! A side is a whole batch (it may wake a child process, warm up, time `n`
//! operations and stop the child again) and reports its own nanoseconds
//! per operation, so set-up is never timed. Before the rounds, each side's
//! batch is sized to [`Settings::batch_time`]; a first round warms
//! everything up and is not kept.
//!
//! This module knows nothing of what a side does: see [`crate::bench::sides`].

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::bench::{watchdog, Result};

/// One contender.
pub trait Side {
    /// Runs `n` operations (fewer if [`timed`] cuts the batch short) and
    /// returns nanoseconds per operation.
    fn batch(&mut self, n: u64) -> Result<f64>;

    /// Gives an idle child some traffic, so that its watchdog knows the
    /// parent is alive. Nothing for a side without a child.
    fn keepalive(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A side that calls a closure: one call is one operation, timed in a
/// plain loop (no clock read inside the batch, which would weigh on
/// operations of a few nanoseconds).
pub struct Calls<F>(pub F);

impl<F: FnMut()> Side for Calls<F> {
    fn batch(&mut self, n: u64) -> Result<f64> {
        let start = Instant::now();
        for _ in 0..n {
            (self.0)();
        }
        Ok(start.elapsed().as_secs_f64() * 1e9 / n.max(1) as f64)
    }
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

/// The most operations a [`gapped`] batch runs: each waits out its gap.
pub const GAPPED_MAX: u64 = 64;

/// Runs `op` `n` times (at most [`GAPPED_MAX`]), each after `gap` of quiet
/// (this thread spinning on the clock, so that only the other side can
/// fall asleep), and returns nanoseconds per call, timing the calls alone:
/// round trips that find the other side asleep. With no gap, [`timed`].
pub fn gapped(n: u64, gap: Option<Duration>, mut op: impl FnMut() -> Result<()>) -> Result<f64> {
    let Some(gap) = gap else {
        return timed(n, op);
    };
    let n = n.clamp(1, GAPPED_MAX);
    let mut busy = Duration::ZERO;
    for _ in 0..n {
        let quiet = Instant::now();
        while quiet.elapsed() < gap {
            std::hint::spin_loop();
        }
        let start = Instant::now();
        op()?;
        busy += start.elapsed();
    }
    Ok(busy.as_secs_f64() * 1e9 / n as f64)
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

impl Settings {
    /// `rounds` rounds of batches of about `batch_ms` milliseconds.
    pub const fn new(rounds: usize, batch_ms: u64) -> Settings {
        Settings {
            rounds,
            batch_time: Duration::from_millis(batch_ms),
        }
    }
}

/// Where a run is, for a progress display: reported after every batch of
/// every round (the warm-up round is round 0).
#[derive(Clone, Copy)]
pub struct Progress<'a> {
    /// The group being run.
    pub group: &'a str,
    /// The side whose batch just ran.
    pub side: &'a dyn fmt::Display,
    /// The round it ran in: 0 (the warm-up) to `Settings::rounds`.
    pub round: usize,
}

/// What names a side in a run: best an enum of the run's sides (as
/// `shmio bench`'s `Peer`), so that a misspelt side does not compile and a
/// table can match on it; `&'static str` also serves, for a one-off group.
/// Its `Display` is what progress and errors call the side.
pub trait Key: Copy + PartialEq + fmt::Debug + fmt::Display {}

impl<K: Copy + PartialEq + fmt::Debug + fmt::Display> Key for K {}

/// What a run found: per side, the nanoseconds per operation of each round.
pub struct Results<K: Key = &'static str> {
    keys: Vec<K>,
    rounds: Vec<Vec<f64>>,
}

impl<K: Key> Results<K> {
    /// Results made up, for the tests of what reads them: `rounds[i]` are
    /// side `keys[i]`'s.
    pub fn made_up(keys: Vec<K>, rounds: Vec<Vec<f64>>) -> Results<K> {
        Results { keys, rounds }
    }

    fn index(&self, key: K) -> usize {
        self.keys
            .iter()
            .position(|k| *k == key)
            .unwrap_or_else(|| panic!("no side {key:?} in this run"))
    }

    /// Whether the side `key` ran.
    pub fn has(&self, key: K) -> bool {
        self.keys.contains(&key)
    }

    /// The nanoseconds per operation of `key`: the median over the rounds.
    pub fn ns_per_op(&self, key: K) -> f64 {
        median(self.rounds[self.index(key)].clone())
    }

    /// The median over the rounds of `a`'s time / `b`'s time.
    pub fn ratio(&self, a: K, b: K) -> f64 {
        let (a, b) = (&self.rounds[self.index(a)], &self.rounds[self.index(b)]);
        median(a.iter().zip(b).map(|(x, y)| x / y).collect())
    }
}

/// The median of `values` (the upper one of an even count); NaN if empty.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// A side and its [`Key`], as [`run`] takes them.
pub type Named<'a, K = &'static str> = (K, Box<dyn Side + 'a>);

/// Runs `sides` in rotating order for `settings.rounds` rounds, after
/// sizing each side's batch to `settings.batch_time` and one warm-up round.
pub fn run<K: Key>(
    group: &str,
    sides: Vec<Named<'_, K>>,
    settings: Settings,
) -> Result<Results<K>> {
    run_with_progress(group, sides, settings, &mut |_| {})
}

/// [`run`], telling `progress` after every batch of every round.
pub fn run_with_progress<K: Key>(
    group: &str,
    mut sides: Vec<Named<'_, K>>,
    settings: Settings,
    progress: &mut dyn FnMut(Progress),
) -> Result<Results<K>> {
    let target = settings.batch_time.as_secs_f64() * 1e9;
    CAP_NS.store((target as u64 * 4).max(100_000_000), Ordering::Relaxed);
    let verbose = std::env::var_os("SHMIO_BENCH_VERBOSE").is_some();
    let mut last_active = vec![Instant::now(); sides.len()];
    let mut sizes = Vec::with_capacity(sides.len());
    for index in 0..sides.len() {
        let (key, side) = &mut sides[index];
        watchdog::stage(format!("{group}: sizing {key}"));
        let n = size_batch(side.as_mut(), target).map_err(|e| in_side(*key, e))?;
        if verbose {
            eprintln!("{group}: {key}: batches of {n}");
        }
        sizes.push(n);
        last_active[index] = Instant::now();
        keep_alive(&mut sides, &mut last_active)?;
    }
    let keys: Vec<K> = sides.iter().map(|(key, _)| *key).collect();
    let mut rounds = vec![Vec::with_capacity(settings.rounds); sides.len()];
    let count = sides.len();
    for round in 0..=settings.rounds {
        for step in 0..count {
            let index = (round + step) % count;
            let (key, side) = &mut sides[index];
            watchdog::stage(format!("{group}: {key}, round {round}"));
            let ns = side.batch(sizes[index]).map_err(|e| in_side(*key, e))?;
            if verbose {
                eprintln!("{group}: round {round}: {key}: {ns:.1} ns");
            }
            // Round 0 warms everything up and is not kept.
            if round > 0 {
                rounds[index].push(ns);
            }
            progress(Progress {
                group,
                side: &*key,
                round,
            });
            last_active[index] = Instant::now();
            keep_alive(&mut sides, &mut last_active)?;
        }
    }
    watchdog::stage(format!("{group}: done"));
    Ok(Results { keys, rounds })
}

/// A side's error, naming the side.
fn in_side(key: impl fmt::Display, error: crate::bench::Error) -> crate::bench::Error {
    format!("{key}: {error}").into()
}

/// Sends a keepalive to every side idle for longer than [`IDLE`].
fn keep_alive<K: Key>(sides: &mut [Named<'_, K>], last_active: &mut [Instant]) -> Result<()> {
    for ((key, side), last) in sides.iter_mut().zip(last_active) {
        if last.elapsed() > IDLE {
            side.keepalive().map_err(|e| in_side(*key, e))?;
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

/// What a run of two sides, shmio's and its baseline's, found.
#[derive(Clone, Copy, Debug)]
pub struct Pair {
    /// shmio's median, in nanoseconds per operation.
    pub shmio: f64,
    /// The baseline's median.
    pub baseline: f64,
    /// The median of the per-round ratios shmio / baseline.
    pub ratio: f64,
}

/// Runs shmio's side against its baseline, alternating (see [`run`]).
pub fn pair<'a>(
    group: &str,
    shmio: impl Side + 'a,
    baseline: impl Side + 'a,
    settings: Settings,
) -> Result<Pair> {
    use PairSide::{Baseline, Shmio};
    let results = run(
        group,
        vec![
            (Shmio, Box::new(shmio) as Box<dyn Side>),
            (Baseline, Box::new(baseline)),
        ],
        settings,
    )?;
    Ok(Pair {
        shmio: results.ns_per_op(Shmio),
        baseline: results.ns_per_op(Baseline),
        ratio: results.ratio(Shmio, Baseline),
    })
}

/// The two sides of a [`pair`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PairSide {
    Shmio,
    Baseline,
}

impl fmt::Display for PairSide {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PairSide::Shmio => "shmio",
            PairSide::Baseline => "baseline",
        })
    }
}
