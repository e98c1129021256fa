//! Where a busy-poll round trip's time goes: the channel's ring protocol
//! rebuilt on raw shared memory one step at a time, from the raw spin
//! ping-pong ([`super::spin`]) up to everything `Channel`'s ring does on a
//! send and a receive that find their slot ready. Each [`Step`] adds one
//! thing to the one before; measured side by side in one run, the
//! differences say what each costs (the VM has no hardware performance
//! counters, so this is the breakdown).
//!
//! Both directions are rings of [`SLOTS`] slots of one cache line each, laid
//! out as `src/channel/ring.rs` lays them out: a slot's `state` word holds
//! the half-step sequence number in its high 32 bits and the claimer in its
//! low 32, then the message: 8 bytes in the round trips; 64 bytes in the
//! one-way throughput of [`LadderThroughput`], through a ring of
//! [`THROUGHPUT_SLOTS`].

use std::hint::{black_box, spin_loop};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{warmed_up, Role, Words, STOP};
use crate::child::{self, Commands, Kid};
use crate::harness::Side;
use crate::{watchdog, Result};

/// One step of the ladder; each includes every step before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    /// A ring of slots each way; a slot's state says whose turn it is
    /// (Vyukov's sequence numbers). Each side keeps its position to itself,
    /// writes the slot with plain stores and hands it over with one
    /// release store: one producer, one consumer, no crash safety.
    Ring,
    /// The sender claims the slot with a compare-and-swap that writes its
    /// token into the state before writing the message: the channel's
    /// crash-safe claim, which names who is working on a slot.
    SendClaim,
    /// The receiver claims the slot the same way before reading it.
    RecvClaim,
    /// The positions are shared words (`enqueue`, `dequeue`) that each
    /// claimer reads and moves on with a compare-and-swap: any number of
    /// senders and receivers.
    Positions,
    /// Publishing and releasing a slot by a sequentially consistent swap,
    /// then a look at the sleepers count: what lets a blocking receiver or
    /// sender sleep without missing a wake-up. This is all the channel's
    /// ring does on a hand-over that finds its slot ready.
    SleeperCheck,
    /// All of it packed: 64-byte slots, the positions and the sleepers
    /// count in adjacent cache lines, which x86's adjacent-line prefetcher
    /// fetches as a pair (what the channel's 128-byte pairs avoid).
    Packed,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 6] = [
        Step::Ring,
        Step::SendClaim,
        Step::RecvClaim,
        Step::Positions,
        Step::SleeperCheck,
        Step::Packed,
    ];

    /// The step's key in the harness's results.
    pub fn key(self) -> &'static str {
        match self {
            Step::Ring => "ladder: ring",
            Step::SendClaim => "ladder: + send claim",
            Step::RecvClaim => "ladder: + receive claim",
            Step::Positions => "ladder: + shared positions",
            Step::SleeperCheck => "ladder: + sleeper check",
            Step::Packed => "ladder: all, packed in 64-byte lines",
        }
    }

    /// What the step adds, for the report.
    pub fn adds(self) -> &'static str {
        match self {
            Step::Ring => {
                "a 16-slot ring each way, a state word per slot, private positions (one producer, one consumer)"
            }
            Step::SendClaim => "the sender claims its slot by compare-and-swap (crash-safe claims)",
            Step::RecvClaim => "the receiver claims its slot by compare-and-swap",
            Step::Positions => "shared positions, moved on by compare-and-swap (many producers and consumers)",
            Step::SleeperCheck => {
                "hand-overs by SeqCst swap, then a look at the sleepers count (blocking waits): the channel's ring"
            }
            Step::Packed => {
                "the same in 64-byte slots, the positions in adjacent lines (a packed layout)"
            }
        }
    }

    /// The steps whose slots hold a 64-byte message: all but
    /// [`Step::Packed`]'s 64-byte slots (the throughput ladder's rungs).
    pub const CARRYING_64: [Step; 5] = [
        Step::Ring,
        Step::SendClaim,
        Step::RecvClaim,
        Step::Positions,
        Step::SleeperCheck,
    ];

    fn code(self) -> usize {
        self as usize
    }

    fn from_code(code: usize) -> Result<Step> {
        Step::ALL
            .get(code)
            .copied()
            .ok_or_else(|| format!("no ladder step {code}").into())
    }
}

/// Slots per ring, as the channel's round-trip rings.
pub const SLOTS: u64 = 16;
/// Bytes from one direction's ring to the other's.
const DIRECTION: u64 = 4096;

/// Where a ring's words are, from its start (`enqueue` at 0).
struct Layout {
    dequeue: u64,
    sleepers: u64,
    slots: u64,
    slot_bytes: u64,
}

/// The channel's layout (version 3): every word one side writes while
/// the other polls starts a 128-byte pair of lines of its own.
const PAIRED: Layout = Layout {
    dequeue: 128,
    sleepers: 256,
    slots: 384,
    slot_bytes: 128,
};

/// A packed layout: 64-byte lines, neighbours in adjacent ones.
const PACKED: Layout = Layout {
    dequeue: 64,
    sleepers: 128,
    slots: 192,
    slot_bytes: 64,
};

impl Step {
    fn layout(self) -> &'static Layout {
        if self == Step::Packed {
            &PACKED
        } else {
            &PAIRED
        }
    }
}

/// The claimer tokens: any non-zero values, the receiver's with the
/// channel's reading bit.
const SENDER: u32 = 1;
const RECEIVER: u32 = 1 << 31 | 2;

fn join(seq: u32, owner: u32) -> u64 {
    (u64::from(seq) << 32) | u64::from(owner)
}

fn send_turn(pos: u64) -> u32 {
    pos.wrapping_mul(2) as u32
}

fn recv_turn(pos: u64) -> u32 {
    send_turn(pos).wrapping_add(1)
}

/// One direction's ring in the shared words, as one side sees it.
struct Ring<'a> {
    words: &'a Words,
    step: Step,
    base: u64,
    slots: u64,
    /// This side's position, when positions are not shared.
    pos: u64,
}

impl<'a> Ring<'a> {
    const PING: u64 = 0;
    const PONG: u64 = DIRECTION;

    fn new(words: &'a Words, step: Step, base: u64) -> Ring<'a> {
        Ring::of(words, step, base, SLOTS)
    }

    fn of(words: &'a Words, step: Step, base: u64, slots: u64) -> Ring<'a> {
        Ring {
            words,
            step,
            base,
            slots,
            pos: 0,
        }
    }

    /// Sets every slot free for its first lap.
    fn init(&self) {
        for pos in 0..self.slots {
            self.state(pos)
                .store(join(send_turn(pos), 0), Ordering::Relaxed);
        }
    }

    fn slot(&self, pos: u64) -> u64 {
        let layout = self.step.layout();
        self.base + layout.slots + (pos % self.slots) * layout.slot_bytes
    }

    fn state(&self, pos: u64) -> &'a AtomicU64 {
        self.words.u64_at(self.slot(pos))
    }

    /// Word `word` of the slot's message (after its state word).
    fn payload(&self, pos: u64, word: u64) -> &'a AtomicU64 {
        self.words.u64_at(self.slot(pos) + 8 + 8 * word)
    }

    /// The sender's (`at` 0) or the receiver's position word.
    fn position_word(&self, at: u64) -> &'a AtomicU64 {
        self.words.u64_at(self.base + at)
    }

    /// This side's position: the shared word at `at`, or its own count.
    fn position(&self, at: u64) -> u64 {
        if self.step >= Step::Positions {
            self.position_word(at).load(Ordering::Relaxed)
        } else {
            self.pos
        }
    }

    /// Moves the position at `at` on past `pos`.
    fn move_on(&mut self, at: u64, pos: u64) {
        if self.step >= Step::Positions {
            let _ = self.position_word(at).compare_exchange(
                pos,
                pos.wrapping_add(1),
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        } else {
            self.pos = pos.wrapping_add(1);
        }
    }

    /// Hands the slot of `pos` over in `state`: a release store, or from
    /// [`Step::SleeperCheck`] on a SeqCst swap and a look at the sleepers.
    fn hand_over(&self, pos: u64, state: u64) {
        if self.step >= Step::SleeperCheck {
            self.state(pos).swap(state, Ordering::SeqCst);
            let sleepers = self.base + self.step.layout().sleepers;
            black_box(self.words.u32_at(sleepers).load(Ordering::SeqCst));
        } else {
            self.state(pos).store(state, Ordering::Release);
        }
    }

    /// Sends `value`, a message of one 8-byte word.
    fn send(&mut self, value: u64) -> Result<()> {
        self.send_words(value, 1)
    }

    /// Sends a message of `words` 8-byte words, each `value`.
    fn send_words(&mut self, value: u64, words: u64) -> Result<()> {
        let pos = self.position(0);
        let free = join(send_turn(pos), 0);
        // A round trip never fills a ring: the slot is free at once. A
        // throughput run waits here while the ring is full.
        while self.state(pos).load(Ordering::Acquire) != free {
            spin_loop();
        }
        if self.step >= Step::SendClaim {
            claim(self.state(pos), send_turn(pos), SENDER)?;
        }
        self.move_on(0, pos);
        for word in 0..words {
            self.payload(pos, word).store(value, Ordering::Relaxed);
        }
        self.hand_over(pos, join(recv_turn(pos), 0));
        Ok(())
    }

    fn recv(&mut self) -> Result<u64> {
        let at = self.step.layout().dequeue;
        let pos = self.position(at);
        let published = join(recv_turn(pos), 0);
        while self.state(pos).load(Ordering::Acquire) != published {
            spin_loop();
        }
        if self.step >= Step::RecvClaim {
            claim(self.state(pos), recv_turn(pos), RECEIVER)?;
        }
        self.move_on(at, pos);
        let value = self.payload(pos, 0).load(Ordering::Relaxed);
        self.hand_over(pos, join(send_turn(pos.wrapping_add(self.slots)), 0));
        Ok(value)
    }
}

/// Claims a slot found in `turn` for `owner`: one compare-and-swap, which
/// cannot fail with one sender and one receiver.
fn claim(slot: &AtomicU64, turn: u32, owner: u32) -> Result<()> {
    slot.compare_exchange(
        join(turn, 0),
        join(turn, owner),
        Ordering::AcqRel,
        Ordering::Relaxed,
    )
    .map(drop)
    .map_err(|state| format!("a ladder claim lost its slot: state {state:#x}").into())
}

/// A ladder step's busy-poll ping-pong with an echo child.
pub struct LadderRoundTrip {
    words: Words,
    kid: Kid,
    step: Step,
    /// This side's private positions in the ping and pong rings.
    positions: [u64; 2],
    seq: u64,
}

impl LadderRoundTrip {
    /// Creates the rings under `name` and starts the echo child.
    pub fn start(name: &str, step: Step) -> Result<LadderRoundTrip> {
        let words = Words::create(name)?;
        Ring::new(&words, step, Ring::PING).init();
        Ring::new(&words, step, Ring::PONG).init();
        let kid = child::spawn_commanded(
            Role::LadderEcho,
            &[
                (child::NAME, name.to_owned()),
                (child::STEP, step.code().to_string()),
            ],
        )?;
        Ok(LadderRoundTrip {
            words,
            kid,
            step,
            positions: [0; 2],
            seq: 0,
        })
    }
}

fn round_trip(ping: &mut Ring, pong: &mut Ring, seq: u64) -> Result<()> {
    ping.send(seq)?;
    let back = pong.recv()?;
    if back != seq {
        return Err(format!("ladder round trip {seq}: {back} came back").into());
    }
    Ok(())
}

impl Side for LadderRoundTrip {
    fn batch(&mut self, n: u64) -> Result<f64> {
        self.kid.command("go")?;
        let mut ping = Ring::new(&self.words, self.step, Ring::PING);
        let mut pong = Ring::new(&self.words, self.step, Ring::PONG);
        (ping.pos, pong.pos) = (self.positions[0], self.positions[1]);
        let seq = &mut self.seq;
        let ns = warmed_up(n, None, || {
            *seq += 1;
            round_trip(&mut ping, &mut pong, *seq)
        })?;
        round_trip(&mut ping, &mut pong, STOP)?;
        self.positions = [ping.pos, pong.pos];
        Ok(ns)
    }

    fn keepalive(&mut self) -> Result<()> {
        self.kid.alive()
    }
}

/// The ladder's echo child: on each `go`, echoes until [`STOP`].
pub fn echo_child() -> Result<()> {
    let words = Words::open(&child::var(child::NAME)?)?;
    let step = Step::from_code(child::number(child::STEP)?)?;
    let mut ping = Ring::new(&words, step, Ring::PING);
    let mut pong = Ring::new(&words, step, Ring::PONG);
    let mut commands = Commands::new()?;
    shmio_cli::process::try_ready()?;
    while commands.next_command()?.is_some() {
        loop {
            let value = ping.recv()?;
            pong.send(value)?;
            watchdog::progress();
            if value == STOP {
                break;
            }
        }
    }
    Ok(())
}

/// Throughput rings: slots, each a 64-byte message (and its state word).
pub const THROUGHPUT_SLOTS: u64 = 1024;
/// The words of a throughput message: 64 bytes.
const THROUGHPUT_WORDS: u64 = 8;

/// One ladder step's one-way throughput of 64-byte messages: the child
/// sends, this process receives and checks each sequence number.
pub struct LadderThroughput {
    words: Words,
    kid: Kid,
    step: Step,
    pos: u64,
    expected: u64,
}

impl LadderThroughput {
    /// Creates the ring under `name` and starts the producer child: for the
    /// steps of [`Step::CARRYING_64`].
    pub fn start(name: &str, step: Step) -> Result<LadderThroughput> {
        if !Step::CARRYING_64.contains(&step) {
            return Err("the packed rung's 64-byte slots hold no 64-byte message".into());
        }
        let layout = step.layout();
        let words = Words::create_len(name, layout.slots + THROUGHPUT_SLOTS * layout.slot_bytes)?;
        Ring::of(&words, step, 0, THROUGHPUT_SLOTS).init();
        let kid = child::spawn_commanded(
            Role::LadderProducer,
            &[
                (child::NAME, name.to_owned()),
                (child::STEP, step.code().to_string()),
            ],
        )?;
        Ok(LadderThroughput {
            words,
            kid,
            step,
            pos: 0,
            expected: 0,
        })
    }
}

impl Side for LadderThroughput {
    fn batch(&mut self, n: u64) -> Result<f64> {
        let mut ring = Ring::of(&self.words, self.step, 0, THROUGHPUT_SLOTS);
        ring.pos = self.pos;
        let start = std::time::Instant::now();
        self.kid.command(&format!("go {n}"))?;
        for _ in 0..n {
            let value = ring.recv()?;
            if value != self.expected {
                return Err(format!("ladder message {}: got {value}", self.expected).into());
            }
            self.expected += 1;
        }
        self.pos = ring.pos;
        Ok(start.elapsed().as_secs_f64() * 1e9 / n as f64)
    }

    fn keepalive(&mut self) -> Result<()> {
        self.kid.alive()
    }
}

/// The ladder's producer child: on each `go N`, sends the next N messages.
pub fn producer_child() -> Result<()> {
    let words = Words::open(&child::var(child::NAME)?)?;
    let step = Step::from_code(child::number(child::STEP)?)?;
    let mut ring = Ring::of(&words, step, 0, THROUGHPUT_SLOTS);
    let mut commands = Commands::new()?;
    shmio_cli::process::try_ready()?;
    let mut seq = 0;
    while let Some(n) = commands.next_count()? {
        for _ in 0..n {
            ring.send_words(seq, THROUGHPUT_WORDS)?;
            seq += 1;
            watchdog::progress();
        }
    }
    Ok(())
}
