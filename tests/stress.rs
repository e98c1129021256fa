//! Stress, bounded in time: 16 processes each do, in a random order (seeded
//! per process; the seed is printed on failure), create_or_open, write,
//! lock, send, receive and drop on a few shared names (three mappings the
//! parent holds, two it does not, one channel) for `SHMIO_STRESS_SECS`
//! seconds (3 by default; `scripts/stress.sh` runs it for 60). A checksum
//! model proves nothing is torn, lost or duplicated:
//!
//! - under `map.lock()` each worker rewrites its own block of a mapping
//!   (a counter, random payload, a checksum) and bumps the mapping's total;
//!   any worker, under the lock, checks every block's checksum and that the
//!   blocks' counters sum to the total; at the end the parent checks each
//!   block's counter against the writes its worker reports;
//! - channel messages carry (producer, seq, payload, checksum); consumers
//!   check the checksum and each producer's order; at the end every message
//!   sent was received once (by a worker, or drained by the parent);
//! - on Linux no name used is left under `/dev/shm`.
//!
//! Contents and lifetime: the parent holds the three "held" mappings and the
//! channel for the whole run, so their contents never reset, and a worker's
//! "drop" of them means dropping its own handle and reopening it. The two
//! "ephemeral" mappings are held by nobody but the workers: when every
//! holder has dropped one, the name goes, and the next create_or_open makes
//! it afresh with zeroed contents. So for those the model only asks that
//! what a worker sees under the lock is consistent (a zeroed counter or one
//! with a valid checksum) and, while that worker keeps its handle, never
//! goes backwards.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shmio::{Channel, ChannelGeometry, Error, EventMode, Mapping, NamedEvent};
use shmio_testkit::{
    arg, checksum, mix, shm_entries_with_prefix, shm_entry_exists, unique_name, Rng,
};

const WORKERS: u64 = 16;
const HELD: usize = 3;
const EPHEMERAL: usize = 2;
const MAP_SIZE: u64 = 4096;
/// In a held mapping: the total of all writes, then one block per worker.
const TOTAL: u64 = 0;
const BLOCKS: u64 = 64;
const BLOCK_WORDS: usize = 8; // counter, worker, 5 payload words, checksum
const BLOCK: u64 = BLOCK_WORDS as u64 * 8;
const CHANNEL: ChannelGeometry = ChannelGeometry {
    capacity: 32,
    max_message_size: 64,
};
/// How long a worker waits for room or a message before moving on.
const CHANNEL_WAIT: Duration = Duration::from_millis(2);
/// How long anything waits for the start, or past the run's end, at most.
const MARGIN: Duration = Duration::from_secs(120);

/// The operations, in the order of the per-worker counts.
const KINDS: [&str; 6] = ["create_or_open", "write", "lock", "send", "recv", "drop"];

// The control mapping: one row of u64s per worker, written at its end.
const CONTROL_SIZE: u64 = 1 << 15;
const ROWS: u64 = 4096;
const ROW: u64 = 1024;
const OPS: usize = 0; // + kind
const SEND_FULL: usize = 6;
const RECV_EMPTY: usize = 7;
const WRITES: usize = 8; // + held mapping
const EPH_CREATED: usize = 11;
const EPH_OPENED: usize = 12;
const EPH_LOCKED: usize = 13;
const SENT: usize = 14;
const SENT_SEQ_SUM: usize = 15;
const RECEIVED: usize = 16; // + 2 * producer: count, seq sum
const DONE: usize = 16 + 2 * WORKERS as usize;
const ROW_WORDS: usize = DONE + 1;

fn duration() -> Duration {
    let secs = std::env::var("SHMIO_STRESS_SECS")
        .ok()
        .map(|s| s.parse::<f64>().expect("SHMIO_STRESS_SECS is a number"))
        .unwrap_or(3.0);
    Duration::from_secs_f64(secs)
}

struct Names {
    base: String,
}

impl Names {
    fn held(&self, m: usize) -> String {
        format!("{}-held{m}", self.base)
    }
    fn ephemeral(&self, e: usize) -> String {
        format!("{}-eph{e}", self.base)
    }
    fn channel(&self) -> String {
        format!("{}-chan", self.base)
    }
    fn control(&self) -> String {
        format!("{}-control", self.base)
    }
    fn go(&self) -> String {
        format!("{}-go", self.base)
    }
    /// Every OS-visible entry these names make under /dev/shm (Linux).
    fn os_entries(&self) -> Vec<String> {
        let mut all = vec![
            self.channel(),
            self.control(),
            format!("{}@event", self.go()),
        ];
        for name in (0..HELD)
            .map(|m| self.held(m))
            .chain((0..EPHEMERAL).map(|e| self.ephemeral(e)))
        {
            all.push(format!("{name}.mutex@mutex"));
            all.push(name);
        }
        all
    }
}

shmio_testkit::roles! {
    Worker => worker(),
}

fn word(map: &Mapping, offset: u64) -> &AtomicU64 {
    map.atomic_u64(offset).unwrap()
}

fn read_block(map: &Mapping, worker: u64) -> [u64; BLOCK_WORDS] {
    map.read_value_at(BLOCKS + worker * BLOCK).unwrap()
}

/// Checks one block: untouched (all zero) or whole (its checksum holds).
fn check_block(block: &[u64; BLOCK_WORDS], worker: u64, what: &str) {
    if block.iter().all(|&w| w == 0) {
        return;
    }
    assert_eq!(block[1], worker, "{what}: block {worker} names its worker");
    assert_eq!(
        block[BLOCK_WORDS - 1],
        checksum(&block[..BLOCK_WORDS - 1]),
        "{what}: block {worker} is torn: {block:?}"
    );
}

/// Under the lock: every block whole, and the counters sum to the total.
fn check_held(map: &Mapping, what: &str) -> Vec<u64> {
    let counters: Vec<u64> = (0..WORKERS)
        .map(|w| {
            let block = read_block(map, w);
            check_block(&block, w, what);
            block[0]
        })
        .collect();
    let total: u64 = map.read_value_at(TOTAL).unwrap();
    assert_eq!(
        counters.iter().sum::<u64>(),
        total,
        "{what}: the blocks' counters sum to the total"
    );
    counters
}

fn message(producer: u64, seq: u64, rng: &mut Rng) -> Vec<u8> {
    let extra = rng.below(5) as usize;
    let mut words = vec![producer, seq, extra as u64];
    words.extend((0..extra).map(|_| rng.next_u64()));
    words.push(checksum(&words));
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// A message's (producer, seq), after checking its checksum.
fn parse(bytes: &[u8], what: &str) -> (u64, u64) {
    assert!(
        bytes.len().is_multiple_of(8) && bytes.len() >= 32,
        "{what}: a message of {} bytes",
        bytes.len()
    );
    let words: Vec<u64> = bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let (body, sum) = words.split_at(words.len() - 1);
    assert_eq!(sum[0], checksum(body), "{what}: torn message {words:?}");
    assert_eq!(body[2] as usize + 3, body.len(), "{what}: message length");
    assert!(body[0] < WORKERS, "{what}: producer {}", body[0]);
    (body[0], body[1])
}

struct Worker {
    id: u64,
    rng: Rng,
    names: Names,
    held: Vec<Mapping>,
    ephemeral: Vec<Option<Mapping>>,
    /// The ephemeral counter last seen through the handle held now.
    eph_seen: [u64; EPHEMERAL],
    channel: Channel,
    row: [u64; ROW_WORDS],
    /// Per producer, the last seq this worker received.
    last_seq: [Option<u64>; WORKERS as usize],
}

fn worker() {
    let id: u64 = arg("WORKER").parse().unwrap();
    let seed: u64 = arg("SEED").parse().unwrap();
    let names = Names { base: arg("BASE") };
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        eprintln!(
            "stress worker {id} failed; its seed: {seed} (SHMIO_STRESS_SEED gives the run's)"
        );
        previous(info);
    }));
    let control = Mapping::open(&names.control()).unwrap();
    let go = NamedEvent::create_or_open(&names.go(), EventMode::ManualReset).unwrap();
    let mut me = Worker {
        id,
        rng: Rng::new(seed),
        held: (0..HELD)
            .map(|m| Mapping::open(&names.held(m)).unwrap())
            .collect(),
        ephemeral: (0..EPHEMERAL).map(|_| None).collect(),
        eph_seen: [0; EPHEMERAL],
        channel: Channel::open(&names.channel()).unwrap(),
        names,
        row: [0; ROW_WORDS],
        last_seq: [None; WORKERS as usize],
    };
    assert!(go.wait_timeout(MARGIN).is_ok(), "the parent never said go");
    let deadline = Instant::now() + duration();
    while Instant::now() < deadline {
        let kind = me.rng.below(KINDS.len() as u64) as usize;
        me.row[OPS + kind] += 1;
        match kind {
            0 => me.create_or_open(),
            1 => me.write(),
            2 => me.lock(),
            3 => me.send(),
            4 => me.recv(),
            _ => me.drop_one(),
        }
    }
    me.row[DONE] = 1;
    for (i, value) in me.row.iter().enumerate() {
        word(&control, ROWS + id * ROW + 8 * i as u64).store(*value, Ordering::Release);
    }
}

impl Worker {
    /// What the model calls a target: a held mapping, an ephemeral one, or the channel.
    fn target(&mut self) -> usize {
        self.rng.below((HELD + EPHEMERAL + 1) as u64) as usize
    }

    fn open_ephemeral(&mut self, e: usize) -> Mapping {
        let map = Mapping::create_or_open(&self.names.ephemeral(e), MAP_SIZE).unwrap();
        self.row[if map.existed() {
            EPH_OPENED
        } else {
            EPH_CREATED
        }] += 1;
        map
    }

    /// Opens another handle with create_or_open and keeps it instead of the old one.
    fn create_or_open(&mut self) {
        match self.target() {
            m if m < HELD => {
                let map = Mapping::create_or_open(&self.names.held(m), MAP_SIZE).unwrap();
                assert!(map.existed(), "the parent holds {}", self.names.held(m));
                assert_eq!(map.len(), MAP_SIZE);
                self.held[m] = map;
            }
            t if t < HELD + EPHEMERAL => {
                let e = t - HELD;
                let map = self.open_ephemeral(e);
                if self.ephemeral[e].is_some() {
                    assert!(map.existed(), "this worker holds the ephemeral {e}");
                    self.ephemeral[e] = Some(map);
                } else if self.rng.below(4) == 0 {
                    self.eph_seen[e] = 0;
                    self.ephemeral[e] = Some(map);
                } // else let go at once, as after a write
            }
            _ => {
                let channel = Channel::create_or_open(&self.names.channel(), CHANNEL).unwrap();
                assert!(channel.existed(), "the parent holds the channel");
                self.channel = channel;
            }
        }
    }

    /// Under the lock, rewrites this worker's block (held) or bumps the counter (ephemeral).
    fn write(&mut self) {
        let t = self.target() % (HELD + EPHEMERAL);
        if t < HELD {
            let count = self.row[WRITES + t];
            let mut block = [0u64; BLOCK_WORDS];
            block[0] = count + 1;
            block[1] = self.id;
            for w in &mut block[2..BLOCK_WORDS - 1] {
                *w = self.rng.next_u64();
            }
            block[BLOCK_WORDS - 1] = checksum(&block[..BLOCK_WORDS - 1]);
            let map = &self.held[t];
            let guard = map.lock().expect("nobody dies holding the lock here");
            let mine = read_block(map, self.id);
            check_block(&mine, self.id, "before a write");
            assert_eq!(mine[0], count, "this worker's own count in held {t}");
            let total: u64 = map.read_value_at(TOTAL).unwrap();
            // The block through the cursor, the total positionally.
            let mut cursor = map.clone();
            cursor.set_position(BLOCKS + self.id * BLOCK);
            cursor.write_value(&block).unwrap();
            assert_eq!(cursor.position(), BLOCKS + (self.id + 1) * BLOCK);
            map.write_value_at(TOTAL, &(total + 1)).unwrap();
            drop(guard);
            self.row[WRITES + t] += 1;
        } else {
            let e = t - HELD;
            if self.ephemeral[e].is_none() {
                let map = self.open_ephemeral(e);
                self.eph_seen[e] = 0;
                self.ephemeral[e] = Some(map);
            }
            let map = self.ephemeral[e].as_ref().unwrap();
            let guard = map.lock().expect("nobody dies holding the lock here");
            let [count, sum]: [u64; 2] = map.read_value_at(0).unwrap();
            if count != 0 || sum != 0 {
                assert_eq!(sum, checksum(&[count]), "ephemeral {e}: torn counter");
            }
            assert!(
                count >= self.eph_seen[e],
                "ephemeral {e} went back from {} to {count} while held",
                self.eph_seen[e]
            );
            map.write_value_at(0, &[count + 1, checksum(&[count + 1])])
                .unwrap();
            drop(guard);
            self.eph_seen[e] = count + 1;
            self.row[EPH_LOCKED] += 1;
            // Mostly let go at once, so that every holder letting go (and
            // the next create making the name afresh) happens often.
            if self.rng.below(4) != 0 {
                self.ephemeral[e] = None;
            }
        }
    }

    /// Under the lock, checks a held mapping whole.
    fn lock(&mut self) {
        let m = self.target() % HELD;
        let map = &self.held[m];
        let guard = map.lock().expect("nobody dies holding the lock here");
        let counters = check_held(map, "under the lock");
        assert_eq!(counters[self.id as usize], self.row[WRITES + m]);
        drop(guard);
    }

    fn send(&mut self) {
        let seq = self.row[SENT];
        let message = message(self.id, seq, &mut self.rng);
        match self.channel.send_timeout(&message, CHANNEL_WAIT) {
            Ok(()) => {
                self.row[SENT] += 1;
                self.row[SENT_SEQ_SUM] += seq;
            }
            Err(Error::TimedOut { .. }) => self.row[SEND_FULL] += 1,
            Err(e) => panic!("send: {e}"),
        }
    }

    fn recv(&mut self) {
        match self.channel.recv_timeout(CHANNEL_WAIT) {
            Ok(bytes) => {
                let (producer, seq) = parse(&bytes, "a worker");
                let last = &mut self.last_seq[producer as usize];
                assert!(
                    last.is_none_or(|last| last < seq),
                    "producer {producer}: seq {seq} after {last:?}"
                );
                *last = Some(seq);
                self.row[RECEIVED + 2 * producer as usize] += 1;
                self.row[RECEIVED + 2 * producer as usize + 1] += seq;
            }
            Err(Error::TimedOut { .. }) => self.row[RECV_EMPTY] += 1,
            Err(e) => panic!("recv: {e}"),
        }
    }

    /// Drops a handle; a held mapping or the channel is reopened at once.
    fn drop_one(&mut self) {
        match self.target() {
            m if m < HELD => {
                drop(self.held.remove(m)); // with its mutex
                self.held
                    .insert(m, Mapping::open(&self.names.held(m)).unwrap());
            }
            t if t < HELD + EPHEMERAL => self.ephemeral[t - HELD] = None,
            _ => {
                drop(std::mem::replace(
                    &mut self.channel,
                    Channel::open(&self.names.channel()).unwrap(),
                ));
            }
        }
    }
}

#[test]
fn sixteen_processes_mix_every_operation() {
    let seed = std::env::var("SHMIO_STRESS_SEED")
        .ok()
        .map(|s| s.parse().expect("SHMIO_STRESS_SEED is a number"))
        .unwrap_or_else(Rng::fresh_seed);
    let duration = duration();
    let names = Names {
        base: unique_name("stress"),
    };
    let fail = |what: String| -> ! { panic!("{what} (SHMIO_STRESS_SEED={seed})") };

    let control = Mapping::create(&names.control(), CONTROL_SIZE).unwrap();
    let go = NamedEvent::create_or_open(&names.go(), EventMode::ManualReset).unwrap();
    // The parent holds these for the whole run: their contents never reset.
    let held: Vec<Mapping> = (0..HELD)
        .map(|m| Mapping::create(&names.held(m), MAP_SIZE).unwrap())
        .collect();
    let channel = Channel::create_or_open(&names.channel(), CHANNEL).unwrap();
    assert!(!channel.existed());

    let mut children: Vec<_> = (0..WORKERS)
        .map(|w| {
            Role::Worker
                .spawn()
                .env("WORKER", w.to_string())
                .env("SEED", mix(seed ^ w).to_string())
                .env("BASE", &names.base)
                .limit(duration + MARGIN)
                .lifetime(duration + 2 * MARGIN)
                .start()
        })
        .collect();
    go.set().unwrap();
    let started = Instant::now();
    for (w, child) in children.iter_mut().enumerate() {
        let status = child.wait();
        if !status.success() {
            fail(format!(
                "worker {w} (seed {}) failed: {status}",
                mix(seed ^ w as u64)
            ));
        }
    }
    let elapsed = started.elapsed();

    let rows: Vec<Vec<u64>> = (0..WORKERS)
        .map(|w| {
            (0..ROW_WORDS as u64)
                .map(|i| word(&control, ROWS + w * ROW + 8 * i).load(Ordering::Acquire))
                .collect()
        })
        .collect();
    for (w, row) in rows.iter().enumerate() {
        assert_eq!(row[DONE], 1, "worker {w} reported");
    }

    // Drain what is still queued, then account for every message.
    let mut drained = vec![(0u64, 0u64); WORKERS as usize];
    let mut last_seq: Vec<Option<u64>> = vec![None; WORKERS as usize];
    loop {
        match channel.try_recv() {
            Ok(bytes) => {
                let (producer, seq) = parse(&bytes, "the parent's drain");
                let last = &mut last_seq[producer as usize];
                assert!(last.is_none_or(|last| last < seq), "drain order");
                *last = Some(seq);
                drained[producer as usize].0 += 1;
                drained[producer as usize].1 += seq;
            }
            Err(Error::Empty) => break,
            Err(e) => fail(format!("drain: {e}")),
        }
    }
    let mut messages = 0;
    for producer in 0..WORKERS as usize {
        let sent = (rows[producer][SENT], rows[producer][SENT_SEQ_SUM]);
        let received = rows.iter().fold(drained[producer], |(n, sum), row| {
            (
                n + row[RECEIVED + 2 * producer],
                sum + row[RECEIVED + 2 * producer + 1],
            )
        });
        if sent != received {
            fail(format!(
                "producer {producer}: (sent, seq sum) {sent:?} but (received, seq sum) {received:?}"
            ));
        }
        messages += sent.0;
    }

    // The lock-protected counters sum exactly.
    for (m, map) in held.iter().enumerate() {
        let guard = map.lock().expect("every worker exited cleanly");
        let counters = check_held(map, "at the end");
        drop(guard);
        for (w, row) in rows.iter().enumerate() {
            if counters[w] != row[WRITES + m] {
                fail(format!(
                    "held {m}: worker {w}'s block counts {} writes, it made {}",
                    counters[w],
                    row[WRITES + m]
                ));
            }
        }
    }

    let sum = |i: usize| rows.iter().map(|row| row[i]).sum::<u64>();
    let ops: u64 = (0..KINDS.len()).map(|k| sum(OPS + k)).sum();
    println!(
        "stress: {WORKERS} processes for {:.1} s (asked {:.1} s), seed {seed}",
        elapsed.as_secs_f64(),
        duration.as_secs_f64()
    );
    for (k, kind) in KINDS.iter().enumerate() {
        println!("stress:   {kind:>15}: {:>10}", sum(OPS + k));
    }
    println!(
        "stress:   {:>15}: {ops:>10} ({:.0}/s)",
        "all",
        ops as f64 / elapsed.as_secs_f64()
    );
    println!(
        "stress: messages {messages} sent = {} received by workers + {} drained; {} sends found it full, {} receives found it empty",
        messages - drained.iter().map(|d| d.0).sum::<u64>(),
        drained.iter().map(|d| d.0).sum::<u64>(),
        sum(SEND_FULL),
        sum(RECV_EMPTY)
    );
    println!(
        "stress: locked writes {} to held mappings, {} to ephemeral ones; ephemeral names created {} times, opened {} times",
        (0..HELD).map(|m| sum(WRITES + m)).sum::<u64>(),
        sum(EPH_LOCKED),
        sum(EPH_CREATED),
        sum(EPH_OPENED)
    );

    drop((held, channel, go, control));
    if cfg!(target_os = "linux") {
        for entry in names.os_entries() {
            assert!(!shm_entry_exists(&entry), "{entry} leaked in /dev/shm");
        }
        let left = shm_entries_with_prefix(&names.base);
        assert!(left.is_empty(), "leaked in /dev/shm: {left:?}");
    }
}
