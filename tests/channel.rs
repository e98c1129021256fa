//! The channel: edges and errors in one process, then real processes:
//! 4 producers × 4 consumers, kills in the middle of a send and of a
//! receive, and a kill storm.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shmio::{Channel, ChannelGeometry, Error, Mapping};
use shmio_testkit::{arg, unique_name, wait_until, Child};

const LIMIT: Duration = Duration::from_secs(120);

fn options(capacity: u32, max_message_size: u32) -> ChannelGeometry {
    ChannelGeometry {
        capacity,
        max_message_size,
    }
}

shmio_testkit::roles! {
    Produce => child_produce(),
    Consume => child_consume(),
    StallSend => child_stall(true),
    StallRecv => child_stall(false),
    SendAndGo => child_send_and_go(),
}

/// Opens (or, `PERSISTENT` set, creates as persistent) the channel NAME,
/// sends COUNT numbered messages, and exits.
fn child_send_and_go() {
    let name = arg("NAME");
    let count: u32 = arg("COUNT").parse().unwrap();
    let channel = if std::env::var("PERSISTENT").is_ok() {
        Channel::options()
            .capacity(16)
            .max_message_size(16)
            .persistent(true)
            .create(&name)
            .unwrap()
    } else {
        Channel::open(&name).unwrap()
    };
    for n in 0..count {
        channel.send(&n.to_le_bytes()).unwrap();
    }
}

fn send_and_go(name: &str, count: u32, persistent: bool) {
    let mut spawn = Role::SendAndGo
        .spawn()
        .env("NAME", name)
        .env("COUNT", count.to_string());
    if persistent {
        spawn = spawn.env("PERSISTENT", "1");
    }
    spawn.start().wait_success();
}

/// A channel says when its wait can never end, as crossbeam's do: empty
/// with every other handle gone is `Disconnected` (after the messages
/// left), not a wait for ever; a handle that never saw anyone waits; a
/// sender on a full channel whose receivers have gone is told too.
#[test]
fn a_channel_whose_peers_have_gone_is_disconnected() {
    let name = unique_name("disconnected");
    let receiver = Channel::create_or_open(&name, options(4, 16)).unwrap();
    assert!(receiver.is_empty());
    assert!(
        receiver
            .recv_timeout(Duration::from_millis(300))
            .unwrap_err()
            .is_timed_out(),
        "alone from the start: waits (a sender may come)"
    );
    send_and_go(&name, 3, false);
    assert_eq!(receiver.len(), 3);
    for n in 0..3u32 {
        assert_eq!(receiver.recv().unwrap(), n.to_le_bytes());
    }
    let started = Instant::now();
    assert_eq!(
        receiver.recv_timeout(LIMIT),
        Err(Error::Disconnected { name: name.clone() })
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "told, not timed out"
    );
    assert_eq!(
        receiver.recv(),
        Err(Error::Disconnected { name: name.clone() })
    );
    assert_eq!(
        receiver.try_recv(),
        Err(Error::Empty),
        "try_recv says only empty"
    );

    // A sender whose receivers have gone, on a full channel.
    let full = unique_name("disconnected-full");
    let reader = Channel::create_or_open(&full, options(1, 16)).unwrap();
    let sender = Channel::open(&full).unwrap();
    sender.send(b"fills it").unwrap();
    drop(reader);
    assert!(matches!(
        sender.send_timeout(b"no room", LIMIT),
        Err(Error::Disconnected { .. })
    ));
}

/// A persistent channel keeps its name and messages after its last handle
/// closes: a sender may send and go before any receiver opens it.
#[cfg(unix)]
#[test]
fn a_persistent_channel_outlives_its_sender() {
    let name = unique_name("persistent");
    send_and_go(&name, 2, true);
    let receiver = Channel::open(&name).expect("still there after its sender went");
    assert_eq!(receiver.len(), 2);
    assert_eq!(receiver.recv().unwrap(), 0u32.to_le_bytes());
    assert_eq!(receiver.recv().unwrap(), 1u32.to_le_bytes());
    Channel::remove(&name).unwrap();
    drop(receiver);
    assert!(matches!(Channel::open(&name), Err(Error::NotFound { .. })));
}

#[test]
fn send_and_receive_in_order() {
    let channel = Channel::create_or_open(&unique_name("basic"), options(4, 32)).unwrap();
    assert!(!channel.existed());
    channel.send(b"one").unwrap();
    channel.send(b"").unwrap();
    channel.send(b"three").unwrap();
    assert_eq!(channel.recv().unwrap(), b"one");
    assert_eq!(channel.try_recv().unwrap(), b"");
    let mut buf = b"old contents".to_vec();
    channel.recv_into(&mut buf).unwrap();
    assert_eq!(buf, b"three");
    assert!(matches!(channel.try_recv(), Err(Error::Empty)));
}

/// A timeout too long for the clock (`Duration::MAX`) waits as long as it
/// takes; it used to overflow `Instant` and panic.
#[test]
fn a_timeout_too_long_for_the_clock_is_no_panic() {
    let channel = Channel::create_or_open(&unique_name("forever"), options(2, 8)).unwrap();
    channel.send_timeout(b"one", Duration::MAX).unwrap();
    assert_eq!(channel.recv_timeout(Duration::MAX).unwrap(), b"one");
    let mut buf = Vec::new();
    channel.send(b"two").unwrap();
    channel.recv_into_timeout(&mut buf, Duration::MAX).unwrap();
    assert_eq!(buf, b"two");
}

#[test]
fn full_and_empty_edges() {
    let channel = Channel::create_or_open(&unique_name("edges"), options(3, 8)).unwrap();
    for i in 0..3u8 {
        channel.try_send(&[i]).unwrap();
    }
    match channel.try_send(b"x") {
        Err(e @ Error::Full) => assert_eq!(
            std::io::Error::from(e).kind(),
            std::io::ErrorKind::WouldBlock
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(channel.recv().unwrap(), [0]);
    channel.try_send(b"x").unwrap();
    for expected in [&[1u8][..], &[2], b"x"] {
        assert_eq!(channel.recv().unwrap(), expected);
    }
    assert!(matches!(channel.try_recv(), Err(Error::Empty)));
    for lap in 0..10u8 {
        channel.send(&[lap; 8]).unwrap();
        assert_eq!(channel.recv().unwrap(), [lap; 8]);
    }
}

#[test]
fn timeouts_return_on_time() {
    let channel = Channel::create_or_open(&unique_name("timeouts"), options(1, 8)).unwrap();
    let started = Instant::now();
    assert!(matches!(
        channel.recv_timeout(Duration::from_millis(100)),
        Err(Error::TimedOut { .. })
    ));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(100) && took < Duration::from_secs(5),
        "{took:?}"
    );
    channel.send(b"fill").unwrap();
    let started = Instant::now();
    assert!(matches!(
        channel.send_timeout(b"more", Duration::from_millis(100)),
        Err(Error::TimedOut { .. })
    ));
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(
        channel.recv_timeout(Duration::from_secs(1)).unwrap(),
        b"fill"
    );
}

#[test]
fn max_message_size_edges() {
    let channel = Channel::create_or_open(&unique_name("max"), options(2, 100)).unwrap();
    channel.send(&[7; 100]).unwrap();
    match channel.send(&[7; 101]) {
        Err(Error::MessageTooLarge { len: 101, max: 100 }) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        channel.try_send(&[0; 101]),
        Err(Error::MessageTooLarge { .. })
    ));
    // SAFETY: only this test's Channel touches this channel.
    let in_place = unsafe { channel.send_with(101, |_| unreachable!("nothing is claimed")) };
    assert!(matches!(in_place, Err(Error::MessageTooLarge { .. })));
    assert_eq!(channel.recv().unwrap(), vec![7; 100]);
    assert!(
        matches!(channel.try_recv(), Err(Error::Empty)),
        "nothing else was sent"
    );
}

#[test]
fn in_place_send_and_receive() {
    let channel = Channel::create_or_open(&unique_name("in-place"), options(2, 64)).unwrap();
    // SAFETY: only this test's Channel touches this channel.
    unsafe {
        channel
            .send_with(5, |slot| slot.copy_from_slice(b"hello"))
            .unwrap();
        let (len, first) = channel
            .recv_with(|message| (message.len(), message[0]))
            .unwrap();
        assert_eq!((len, first), (5, b'h'));
        assert!(matches!(
            channel.try_recv_with(|m| m.len()),
            Err(Error::Empty)
        ));
    }
}

#[test]
fn a_panic_while_filling_a_slot_leaves_the_channel_usable() {
    let channel = Channel::create_or_open(&unique_name("panic"), options(2, 8)).unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: only this test's Channel touches this channel.
        unsafe { channel.send_with(4, |_| panic!("the filler failed")) }
    }));
    assert!(result.is_err());
    channel.send(b"after").unwrap();
    assert_eq!(
        channel.recv().unwrap(),
        b"after",
        "the abandoned slot was skipped"
    );
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Job {
    id: u32,
    args: Vec<String>,
}

#[test]
fn records_travel_as_json() {
    let name = unique_name("records");
    let channel = Channel::create_or_open(&name, options(2, 256)).unwrap();
    let job = Job {
        id: 3,
        args: vec!["a".into()],
    };
    channel.send_record(&job).unwrap();
    assert_eq!(channel.recv_record::<Job>().unwrap(), job);
    channel.send(b"{not json").unwrap();
    match channel.recv_record::<Job>() {
        Err(error @ Error::UndecodableMessage { .. }) => {
            assert!(error.to_string().contains(&name), "{error}");
            let Error::UndecodableMessage { raw, .. } = error else {
                unreachable!()
            };
            assert_eq!(raw, b"{not json");
        }
        other => panic!("{other:?}"),
    }

    // The record forms follow the channel's: would-block and timed-out
    // as `try_send`/`try_recv` and the `_timeout` forms say them.
    assert_eq!(channel.try_recv_record::<Job>(), Err(Error::Empty));
    assert!(channel
        .recv_record_timeout::<Job>(Duration::from_millis(10))
        .unwrap_err()
        .is_timed_out());
    channel.try_send_record(&job).unwrap();
    channel
        .send_record_timeout(&job, Duration::from_millis(10))
        .unwrap();
    assert_eq!(channel.try_send_record(&job), Err(Error::Full));
    assert!(channel
        .send_record_timeout(&job, Duration::from_millis(10))
        .unwrap_err()
        .is_timed_out());
    assert_eq!(channel.try_recv_record::<Job>(), Ok(job));
    assert!(channel
        .recv_record_timeout::<Job>(Duration::from_millis(10))
        .is_ok());
}

/// A channel of an earlier layout (version 1: slots at 384, claims naming
/// pids) is refused as corrupt, saying which version it has, never misread.
#[test]
fn a_channel_of_an_earlier_layout_is_refused() {
    let name = unique_name("old-layout");
    let channel = Channel::create_or_open(&name, options(4, 8)).unwrap();
    // The header: magic (8 bytes), ready (4), then the version.
    Mapping::options()
        .any_kind(true)
        .open(&name)
        .unwrap()
        .write_value_at(12, &1u32)
        .unwrap();
    match Channel::open(&name) {
        Err(Error::Corrupt { offset, reason }) => {
            assert_eq!(offset, 12);
            assert!(reason.contains("layout version 1"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    drop(channel);
}

/// A blank mapping where a channel should be is the wrong kind: at once on
/// Linux (a channel is named only once it is set up), after the bounded
/// wait for a creator elsewhere (where a name is public before its creator
/// sets it up).
#[test]
fn a_blank_mapping_is_not_a_channel() {
    let name = unique_name("blank");
    let _blank = Mapping::create(&name, 4096).unwrap();
    let started = std::time::Instant::now();
    for result in [
        Channel::open(&name).map(drop),
        Channel::create_or_open(&name, options(1, 8)).map(drop),
    ] {
        match result {
            Err(error @ Error::WrongKind { .. }) => {
                assert!(error.to_string().contains("channel"), "{error}")
            }
            other => panic!("expected WrongKind, got {other:?}"),
        }
    }
    let bound = if cfg!(target_os = "linux") {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(10)
    };
    assert!(started.elapsed() < bound, "{:?}", started.elapsed());
}

#[test]
fn opening_checks_what_is_there() {
    let name = unique_name("geometry");
    let _channel = Channel::create_or_open(&name, options(8, 64)).unwrap();
    let opened = Channel::open(&name).unwrap();
    assert!(opened.existed());
    assert_eq!(opened.geometry(), options(8, 64));
    match Channel::create_or_open(&name, options(16, 64)) {
        Err(e @ Error::Mismatch { .. }) => assert!(e.to_string().contains(&name)),
        other => panic!("{other:?}"),
    }

    let plain = unique_name("not-a-channel");
    let map = Mapping::create(&plain, 4096).unwrap();
    map.write_value_at(0, b"JUNKJUNK").unwrap();
    map.atomic_u32(8).unwrap().store(1, Ordering::Release);
    assert!(matches!(
        Channel::open(&plain),
        Err(Error::WrongKind { .. })
    ));
    assert!(matches!(
        Channel::create_or_open(&plain, options(1, 8)),
        Err(Error::WrongKind { .. })
    ));

    let versioned = unique_name("version");
    let channel = Channel::create_or_open(&versioned, options(1, 8)).unwrap();
    let raw = Mapping::options().any_kind(true).open(&versioned).unwrap();
    raw.write_value_at(12, &99u32).unwrap();
    assert!(matches!(
        Channel::open(&versioned),
        Err(Error::Corrupt { .. })
    ));
    raw.write_value_at(12, &1u32).unwrap();
    raw.write_value_at(16, &u32::MAX).unwrap(); // a capacity that does not fit
    assert!(matches!(
        Channel::open(&versioned),
        Err(Error::Corrupt { .. })
    ));
    drop(channel);

    assert!(matches!(
        Channel::open(&unique_name("missing")),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        Channel::create_or_open("a/b", options(1, 1)),
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        Channel::create_or_open(&unique_name("zero"), options(0, 8)),
        Err(Error::InvalidOptions { .. })
    ));
    assert!(matches!(
        Channel::create_or_open(&unique_name("huge"), options(1 << 30, u32::MAX)),
        Err(Error::TooLarge { .. } | Error::NoSpace { .. } | Error::OutOfAddressSpace { .. })
    ));
}

// Messages between processes: producer id, sequence, checksum of both, padding.
const MESSAGE: usize = 24;

fn message(producer: u32, seq: u32) -> [u8; MESSAGE] {
    let mut bytes = [0u8; MESSAGE];
    bytes[..4].copy_from_slice(&producer.to_le_bytes());
    bytes[4..8].copy_from_slice(&seq.to_le_bytes());
    bytes[8..16].copy_from_slice(&checksum(producer, seq).to_le_bytes());
    bytes[16..].copy_from_slice(&[producer as u8 ^ seq as u8; 8]);
    bytes
}

fn checksum(producer: u32, seq: u32) -> u64 {
    (u64::from(producer) << 32 | u64::from(seq)).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5851_f42d
}

/// Checks a received message; (producer, seq) if it is whole.
fn parse(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.len() != MESSAGE {
        return None;
    }
    let producer = u32::from_le_bytes(bytes[..4].try_into().ok()?);
    let seq = u32::from_le_bytes(bytes[4..8].try_into().ok()?);
    (bytes == message(producer, seq)).then_some((producer, seq))
}

// The control mapping of the multi-process tests.
const STOP: u64 = 0; // 1: producers stop
const RECEIVED: u64 = 8; // total messages received (u64)
const TORN: u64 = 16; // messages that failed their checksum
const DUPLICATES: u64 = 20; // messages received twice
const DISORDER: u64 = 24; // a consumer saw a producer's sequence go backwards
const SENT: u64 = 64; // + 8 * producer: messages it sent (u64)
const BITS: u64 = 4096; // + producer * BITMAP_BYTES: one bit per received message
const MAX_PRODUCERS: u64 = 256;
const MAX_PER_PRODUCER: u32 = 100_000;
const BITMAP_BYTES: u64 = (MAX_PER_PRODUCER as u64 / 64 + 1) * 8;
const CONTROL_SIZE: u64 = BITS + MAX_PRODUCERS * BITMAP_BYTES;

/// Sends COUNT messages (or until STOP) as PRODUCER, counting them in SENT.
fn child_produce() {
    let producer: u32 = arg("PRODUCER").parse().unwrap();
    let count: u32 = arg("COUNT").parse().unwrap();
    let channel = Channel::open(&arg("CHANNEL")).unwrap();
    let control = Mapping::open(&arg("CONTROL")).unwrap();
    let sent = control.atomic_u64(SENT + 8 * u64::from(producer)).unwrap();
    let stop = control.atomic_u32(STOP).unwrap();
    for seq in 0..count {
        loop {
            if stop.load(Ordering::Acquire) == 1 {
                return;
            }
            match channel.send_timeout(&message(producer, seq), Duration::from_millis(50)) {
                Ok(()) => break,
                Err(Error::TimedOut { .. }) => continue,
                Err(e) => panic!("send: {e}"),
            }
        }
        sent.fetch_add(1, Ordering::AcqRel);
    }
}

/// Receives until TOTAL messages were received by all consumers together,
/// checking each one and marking it in the bitmaps.
fn child_consume() {
    let total: u64 = arg("TOTAL").parse().unwrap();
    let channel = Channel::open(&arg("CHANNEL")).unwrap();
    let control = Mapping::open(&arg("CONTROL")).unwrap();
    let received = control.atomic_u64(RECEIVED).unwrap();
    let mut last_seen: HashMap<u32, u32> = HashMap::new();
    let mut buf;
    while received.load(Ordering::Acquire) < total {
        match channel.recv_timeout(Duration::from_millis(100)) {
            Ok(message) => buf = message,
            Err(Error::TimedOut { .. }) => continue, // look at the total again
            Err(e) => panic!("recv: {e}"),
        }
        let Some((producer, seq)) = parse(&buf) else {
            control
                .atomic_u32(TORN)
                .unwrap()
                .fetch_add(1, Ordering::AcqRel);
            received.fetch_add(1, Ordering::AcqRel);
            continue;
        };
        if last_seen
            .insert(producer, seq)
            .is_some_and(|last| last >= seq)
        {
            control
                .atomic_u32(DISORDER)
                .unwrap()
                .fetch_add(1, Ordering::AcqRel);
        }
        let bits = control
            .atomic_u64(BITS + u64::from(producer) * BITMAP_BYTES + u64::from(seq / 64) * 8)
            .unwrap();
        if bits.fetch_or(1 << (seq % 64), Ordering::AcqRel) & (1 << (seq % 64)) != 0 {
            control
                .atomic_u32(DUPLICATES)
                .unwrap()
                .fetch_add(1, Ordering::AcqRel);
        }
        received.fetch_add(1, Ordering::AcqRel);
    }
}

/// Fails the test at once if a child exited with an error.
fn assert_alive(children: &mut [Child]) {
    for child in children {
        child.assert_not_failed();
    }
}

struct Traffic {
    channel_name: String,
    control_name: String,
    control: Mapping,
    _channel: Channel,
}

impl Traffic {
    fn new(tag: &str, capacity: u32) -> Traffic {
        Traffic::with(tag, capacity, MESSAGE as u32)
    }

    fn with(tag: &str, capacity: u32, max_message_size: u32) -> Traffic {
        let channel_name = unique_name(tag);
        let control_name = unique_name("control");
        Traffic {
            _channel: Channel::create_or_open(&channel_name, options(capacity, max_message_size))
                .unwrap(),
            control: Mapping::create(&control_name, CONTROL_SIZE).unwrap(),
            channel_name,
            control_name,
        }
    }

    fn producer(&self, producer: u32, count: u32) -> Child {
        Role::Produce
            .spawn()
            .env("CHANNEL", &self.channel_name)
            .env("CONTROL", &self.control_name)
            .env("PRODUCER", producer.to_string())
            .env("COUNT", count.to_string())
            .limit(LIMIT)
            .start()
    }

    fn consumer(&self, total: u64) -> Child {
        Role::Consume
            .spawn()
            .env("CHANNEL", &self.channel_name)
            .env("CONTROL", &self.control_name)
            .env("TOTAL", total.to_string())
            .limit(LIMIT)
            .start()
    }

    fn counter(&self, offset: u64) -> u32 {
        self.control
            .atomic_u32(offset)
            .unwrap()
            .load(Ordering::Acquire)
    }

    fn sent(&self, producer: u32) -> u64 {
        self.control
            .atomic_u64(SENT + 8 * u64::from(producer))
            .unwrap()
            .load(Ordering::Acquire)
    }

    fn received_bits(&self, producer: u32, count: u32) -> u32 {
        (0..count)
            .filter(|seq| {
                let word = self.control.read_value_at::<u64>(
                    BITS + u64::from(producer) * BITMAP_BYTES + u64::from(seq / 64) * 8,
                );
                word.unwrap() & (1 << (seq % 64)) != 0
            })
            .count() as u32
    }
}

#[test]
fn four_producers_four_consumers_every_message_once() {
    four_by_four(Traffic::new("4x4", 256), 100_000);
}

/// The same through a pool of chunks (messages of up to 1 MiB): a chunk
/// is reused as soon as its message is received, never before.
#[test]
fn four_producers_four_consumers_through_a_pool() {
    four_by_four(Traffic::with("4x4-pool", 8, 1 << 20), 50_000);
}

fn four_by_four(traffic: Traffic, per_producer: u32) {
    const PRODUCERS: u32 = 4;
    let total = u64::from(PRODUCERS * per_producer);
    let mut children: Vec<_> = (0..4).map(|_| traffic.consumer(total)).collect();
    children.extend((0..PRODUCERS).map(|producer| traffic.producer(producer, per_producer)));
    let started = Instant::now();
    wait_until("every message to be received", LIMIT, || {
        assert_alive(&mut children);
        traffic
            .control
            .atomic_u64(RECEIVED)
            .unwrap()
            .load(Ordering::Acquire)
            == total
    });
    for child in &mut children {
        child.wait_success();
    }
    eprintln!("4 x 4 x {per_producer}: {:?}", started.elapsed());
    assert_eq!(traffic.counter(TORN), 0, "torn messages");
    assert_eq!(traffic.counter(DUPLICATES), 0, "duplicates");
    assert_eq!(traffic.counter(DISORDER), 0, "per-producer order");
    for producer in 0..PRODUCERS {
        assert_eq!(
            traffic.received_bits(producer, per_producer),
            per_producer,
            "producer {producer}"
        );
    }
}

/// Claims a slot (to send or to receive) and stalls inside it until killed.
fn child_stall(sending: bool) {
    let channel = Channel::open(&arg("CHANNEL")).unwrap();
    let stall = || {
        shmio_testkit::ready();
        shmio_testkit::until_killed()
    };
    // SAFETY: every process on this channel is a shmio Channel.
    unsafe {
        if sending {
            channel.send_with(4, |slot| {
                slot.copy_from_slice(b"torn");
                stall();
            })
        } else {
            channel.recv_with(|_| stall())
        }
    }
    .unwrap();
    panic!("the parent never killed this process");
}

#[test]
fn a_sender_killed_mid_send_drops_only_its_message() {
    let name = unique_name("killed-sender");
    let channel = Channel::create_or_open(&name, options(2, 16)).unwrap();
    let _dead = Role::StallSend
        .spawn()
        .env("CHANNEL", &name)
        .kill_when_ready();
    channel.send(b"after").unwrap();
    let got = channel.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(got, b"after", "the half-written message was never seen");
    assert!(matches!(channel.try_recv(), Err(Error::Empty)));
    for round in 0..5u8 {
        channel.send(&[round]).unwrap();
        assert_eq!(channel.recv().unwrap(), [round], "usable afterwards");
    }
}

#[test]
fn a_receiver_killed_mid_receive_loses_only_its_message() {
    let name = unique_name("killed-receiver");
    let channel = Channel::create_or_open(&name, options(1, 16)).unwrap();
    channel.send(b"taken").unwrap();
    let _dead = Role::StallRecv
        .spawn()
        .env("CHANNEL", &name)
        .kill_when_ready();
    // The only slot was held by the dead receiver: a send must get it back.
    channel
        .send_timeout(b"next", Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        channel.recv().unwrap(),
        b"next",
        "the taken message is not delivered twice"
    );
}

#[test]
fn kill_storm() {
    const KILLS: u32 = 50;
    const PER_PRODUCER: u32 = 20_000;
    let traffic = Traffic::new("storm", 64);
    let mut next_producer = 0u32;
    let mut producers: Vec<(u32, Child)> = Vec::new();
    let mut consumers = Vec::new();
    for _ in 0..2 {
        producers.push((next_producer, traffic.producer(next_producer, PER_PRODUCER)));
        next_producer += 1;
        consumers.push(traffic.consumer(u64::MAX));
    }
    // The killed keep their handles until the end: Windows (and Wine) reuse
    // a process id as soon as the last handle to the process closes, and a
    // slot claimed by a dead process whose id a new process took looks alive
    // until that process exits (see src/channel/ring.rs).
    let mut graveyard = Vec::new();
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    for kill in 0..KILLS {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let before = traffic
            .control
            .atomic_u64(RECEIVED)
            .unwrap()
            .load(Ordering::Acquire);
        wait_until("traffic to flow", LIMIT, || {
            // A producer that sent all it had to is replaced, so traffic never dries up.
            for (id, producer) in producers.iter_mut() {
                if let Some(status) = producer.exited() {
                    assert!(status.success(), "producer {id} failed: {status}");
                    assert!(u64::from(next_producer) < MAX_PRODUCERS);
                    *id = next_producer;
                    *producer = traffic.producer(next_producer, PER_PRODUCER);
                    next_producer += 1;
                }
            }
            assert_alive(&mut consumers);
            traffic
                .control
                .atomic_u64(RECEIVED)
                .unwrap()
                .load(Ordering::Acquire)
                > before + 100
        });
        if rng.is_multiple_of(2) {
            let index = (rng / 2) as usize % producers.len();
            let (_, mut victim) = producers.swap_remove(index);
            victim.kill();
            graveyard.push(victim);
            assert!((next_producer as u64) < MAX_PRODUCERS);
            producers.push((next_producer, traffic.producer(next_producer, PER_PRODUCER)));
            next_producer += 1;
        } else {
            let index = (rng / 2) as usize % consumers.len();
            let mut victim = consumers.swap_remove(index);
            victim.kill();
            graveyard.push(victim);
            consumers.push(traffic.consumer(u64::MAX));
        }
        eprintln!(
            "kill {kill}: {} received",
            traffic
                .control
                .atomic_u64(RECEIVED)
                .unwrap()
                .load(Ordering::Acquire)
        );
    }
    // Stop the producers; the consumers drain what was sent.
    traffic
        .control
        .atomic_u32(STOP)
        .unwrap()
        .store(1, Ordering::Release);
    for (_, producer) in &mut producers {
        assert!(producer.wait().success(), "a surviving producer finished");
    }
    let sent: u64 = (0..next_producer)
        .map(|producer| traffic.sent(producer))
        .sum();
    wait_until("the consumers to drain the channel", LIMIT, || {
        traffic._channel.geometry().capacity > 0 && {
            let received = traffic
                .control
                .atomic_u64(RECEIVED)
                .unwrap()
                .load(Ordering::Acquire);
            // Killed processes may each have dropped (sender) or lost (receiver)
            // the one message they were working on.
            received + u64::from(KILLS) >= sent
        }
    });
    for mut consumer in consumers {
        consumer.kill();
    }
    assert_eq!(traffic.counter(TORN), 0, "torn messages");
    assert_eq!(traffic.counter(DUPLICATES), 0, "duplicates");
    assert_eq!(traffic.counter(DISORDER), 0, "per-producer order");
    // Each killed process takes at most the one message it was working on:
    // a killed producer the one it was sending (or its count of the last
    // one sent), a killed consumer the one it had taken, from any producer.
    let mut lost = 0;
    for producer in 0..next_producer {
        let received = traffic.received_bits(producer, PER_PRODUCER);
        let sent = traffic.sent(producer) as u32;
        assert!(
            received <= sent + 1,
            "producer {producer}: sent {sent}, received {received}"
        );
        lost += sent.saturating_sub(received);
    }
    assert!(lost <= KILLS, "{lost} messages lost in {KILLS} kills");
    // The channel is usable afterwards.
    while traffic._channel.try_recv().is_ok() {}
    traffic._channel.send(b"still works").unwrap();
    assert_eq!(
        traffic
            ._channel
            .recv_timeout(Duration::from_secs(10))
            .unwrap(),
        b"still works"
    );
}

/// A channel has a seat for 1,024 open handles at once; the next open is
/// `TooManyParticipants`, naming the channel, and a handle closed frees its
/// seat for the next.
#[cfg(target_os = "linux")]
#[test]
fn a_channel_has_room_for_1024_handles_at_once() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    // Two descriptors a handle (the object, and its seat's lock).
    let limit = getrlimit(Resource::Nofile);
    let wanted = 2 * 1024 + 256;
    if limit.current.is_some_and(|current| current < wanted) {
        let raised = Rlimit {
            current: Some(limit.maximum.map_or(wanted, |maximum| maximum.min(wanted))),
            maximum: limit.maximum,
        };
        setrlimit(Resource::Nofile, raised).unwrap();
        if getrlimit(Resource::Nofile)
            .current
            .is_some_and(|current| current < wanted)
        {
            eprintln!("skipped: the open-file limit cannot be raised to {wanted}");
            return;
        }
    }
    let name = unique_name("seats");
    let mut handles = vec![Channel::create_or_open(&name, options(1, 8)).unwrap()];
    for _ in 1..1024 {
        handles.push(Channel::open(&name).unwrap());
    }
    match Channel::open(&name) {
        Err(error @ Error::TooManyParticipants { limit: 1024, .. }) => {
            assert!(error.to_string().contains(&name), "{error}")
        }
        other => panic!("expected TooManyParticipants, got {other:?}"),
    }
    handles.truncate(1000);
    let again = Channel::open(&name).expect("a seat let go is free again");
    again.send(b"seated").unwrap();
    assert_eq!(handles[999].recv().unwrap(), b"seated");
}

/// A receiver waiting on an idle channel spins briefly (32 spins, then 32
/// `yield`s), then sleeps on the channel's futex, waking only every 100 ms
/// to look for slots of dead senders: over a 1 s wait its thread uses
/// almost no CPU. (CPU time, not wall time: what a sleeping receiver costs
/// the machine, whatever else runs.)
#[cfg(target_os = "linux")]
#[test]
fn an_idle_receiver_sleeps() {
    use rustix::time::{clock_gettime, ClockId};
    let cpu = || {
        let now = clock_gettime(ClockId::ThreadCPUTime);
        Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
    };
    let name = unique_name("idle");
    let channel = Channel::create_or_open(&name, ChannelGeometry::default()).unwrap();
    for wait in [Duration::from_millis(10), Duration::from_secs(1)] {
        let before = cpu();
        let error = channel.recv_timeout(wait).unwrap_err();
        assert!(error.is_timed_out(), "{error}");
        let used = cpu() - before;
        eprintln!("waiting {wait:?} on an idle channel took {used:?} of CPU");
        assert!(
            used < Duration::from_millis(50),
            "{used:?} of CPU for {wait:?}"
        );
    }
}
