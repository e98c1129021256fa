//! The async forms: futures awaited under tokio (both runtimes) and
//! futures-lite's `block_on`, against real processes: many tasks on many
//! channels, cancellation while messages flow, idle futures that cost no
//! CPU, async and blocking sides mixed, and across pid namespaces.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmio::{
    Bus, Channel, ChannelGeometry, Error, EventMode, Mapping, NamedEvent, NamedMutex, Overflow,
    Topic,
};
use shmio_testkit::{arg, unique_name, Child, Rng};

const LIMIT: Duration = Duration::from_secs(120);

shmio_testkit::roles! {
    Produce => child_produce(),
    ReceiveBlocking => child_receive_blocking(),
    Publish => child_publish(),
    SubscribeBlocking => child_subscribe_blocking(),
    Ping => child_ping(),
    Count => child_count(),
    Double => child_double(),
    Hang => child_hang(),
    CallDouble => child_call_double(),
    EchoAsync => child_echo_async(),
    Idle => child_idle(),
}

fn geometry(capacity: u32, max_message_size: u32) -> ChannelGeometry {
    ChannelGeometry {
        capacity,
        max_message_size,
    }
}

/// A message: its producer and its number, 12 bytes.
fn message(producer: u32, seq: u64) -> [u8; 12] {
    let mut bytes = [0u8; 12];
    bytes[..4].copy_from_slice(&producer.to_le_bytes());
    bytes[4..].copy_from_slice(&seq.to_le_bytes());
    bytes
}

fn parse(bytes: &[u8]) -> (u32, u64) {
    assert_eq!(bytes.len(), 12, "a message of 12 bytes");
    (
        u32::from_le_bytes(bytes[..4].try_into().unwrap()),
        u64::from_le_bytes(bytes[4..].try_into().unwrap()),
    )
}

/// Sends COUNT messages of producer PRODUCER, message `seq` to channel
/// `PREFIX-{seq % CHANNELS}`, blocking while one is full; pauses PAUSE_MS
/// every PAUSE_EVERY messages (so that receivers fall asleep), if set.
fn child_produce() {
    let producer: u32 = arg("PRODUCER").parse().unwrap();
    let count: u64 = arg("COUNT").parse().unwrap();
    let prefix = arg("PREFIX");
    let channels: u64 = arg("CHANNELS").parse().unwrap();
    let pause_every: u64 = std::env::var("PAUSE_EVERY").map_or(0, |v| v.parse().unwrap());
    let channels: Vec<Channel> = (0..channels)
        .map(|i| Channel::open(&format!("{prefix}-{i}")).unwrap())
        .collect();
    for seq in 0..count {
        let to = &channels[(seq % channels.len() as u64) as usize];
        to.send_timeout(&message(producer, seq), LIMIT).unwrap();
        if pause_every != 0 && seq % pause_every == pause_every - 1 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Receives COUNT messages of one producer from CHANNEL with the blocking
/// form, in order, and exits.
fn child_receive_blocking() {
    let count: u64 = arg("COUNT").parse().unwrap();
    let channel = Channel::open(&arg("CHANNEL")).unwrap();
    for expected in 0..count {
        let got = channel.recv_timeout(LIMIT).unwrap();
        assert_eq!(parse(&got), (0, expected));
    }
}

fn produce(prefix: &str, channels: usize, producer: u32, count: u64) -> shmio_testkit::Spawn {
    Role::Produce
        .spawn()
        .limit(LIMIT)
        .env("PREFIX", prefix)
        .env("CHANNELS", channels.to_string())
        .env("PRODUCER", producer.to_string())
        .env("COUNT", count.to_string())
}

/// Which messages arrived: one bit per (producer, number); a second
/// arrival of any is counted.
struct Arrivals {
    bits: Vec<AtomicU64>,
    per_producer: u64,
    twice: AtomicU64,
    count: AtomicU64,
}

impl Arrivals {
    fn new(producers: u32, per_producer: u64) -> Arrivals {
        let words = (u64::from(producers) * per_producer).div_ceil(64) as usize;
        Arrivals {
            bits: (0..words).map(|_| AtomicU64::new(0)).collect(),
            per_producer,
            twice: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn mark(&self, producer: u32, seq: u64) {
        assert!(seq < self.per_producer, "message number {seq} out of range");
        let bit = u64::from(producer) * self.per_producer + seq;
        let old = self.bits[(bit / 64) as usize].fetch_or(1 << (bit % 64), Ordering::Relaxed);
        if old & (1 << (bit % 64)) != 0 {
            self.twice.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// The stop mark a task is sent once every message has gone.
const STOP: [u8; 1] = [0xff];

/// 1,000 tokio tasks (multi-thread runtime), ten on each of 100 channels,
/// await messages that 4 producer processes send, 1,000,000 in all: every
/// message is received exactly once. Once the producers are done, each
/// channel gets one stop mark per task; the marks come after every message
/// (a channel is FIFO), so a task that takes one has nothing left to miss.
#[test]
fn a_thousand_tasks_on_a_hundred_channels_receive_every_message_once() {
    let (channels, tasks_per_channel, producers, per_producer) = if cfg!(windows) {
        (20, 5, 2, 5_000)
    } else {
        (100, 10, 4, 250_000)
    };
    let prefix = unique_name("fut-many");
    let made: Vec<Arc<Channel>> = (0..channels)
        .map(|i| {
            Arc::new(Channel::create_or_open(&format!("{prefix}-{i}"), geometry(64, 16)).unwrap())
        })
        .collect();
    // Handles of their own: the receivers' handle alone once the producers
    // are gone would be told it is disconnected.
    let stoppers: Vec<Channel> = (0..channels)
        .map(|i| Channel::open(&format!("{prefix}-{i}")).unwrap())
        .collect();
    let arrivals = Arc::new(Arrivals::new(producers, per_producer));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let began = Instant::now();
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for channel in &made {
            for _ in 0..tasks_per_channel {
                let channel = Arc::clone(channel);
                let arrivals = Arc::clone(&arrivals);
                tasks.push(tokio::spawn(async move {
                    loop {
                        let got = channel.recv_async().await.unwrap();
                        if got == STOP {
                            return;
                        }
                        let (producer, seq) = parse(&got);
                        arrivals.mark(producer, seq);
                    }
                }));
            }
        }
        let mut children: Vec<Child> = (0..producers)
            .map(|producer| produce(&prefix, channels, producer, per_producer).start())
            .collect();
        tokio::task::spawn_blocking(move || {
            for child in &mut children {
                child.wait_success();
            }
        })
        .await
        .unwrap();
        for sender in &stoppers {
            for _ in 0..tasks_per_channel {
                sender.send_async(&STOP).await.unwrap();
            }
        }
        for task in tasks {
            tokio::time::timeout(LIMIT, task).await.unwrap().unwrap();
        }
    });
    println!(
        "{} messages to {} tasks in {:?}",
        arrivals.count.load(Ordering::Relaxed),
        channels * tasks_per_channel,
        began.elapsed()
    );
    assert_eq!(arrivals.twice.load(Ordering::Relaxed), 0, "none twice");
    assert_eq!(
        arrivals.count.load(Ordering::Relaxed),
        u64::from(producers) * per_producer,
        "every message once"
    );
}

/// 100,000 turns of `select!` between a receive and a short timer (or a
/// few yields) while a producer process sends, pausing now and then so
/// that the receive is asleep with the waiter when its timer wins: every
/// message arrives once, in order, however many receive futures were
/// dropped on the way, and in every phase of their wait.
#[test]
fn dropped_receive_futures_lose_and_repeat_nothing() {
    // Wine: fewer (its timers and process switches are slow).
    let (count, turns_wanted) = if cfg!(windows) {
        (5_000, 10_000)
    } else {
        (100_000, 100_000)
    };
    let name = unique_name("fut-cancel");
    let channel = Channel::create_or_open(&format!("{name}-0"), geometry(16, 16)).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut child = produce(&name, 1, 0, count)
        .env("PAUSE_EVERY", "500")
        .start();
    let (mut next, mut turns, mut timers) = (0u64, 0u64, 0u64);
    let mut rng = Rng::new(Rng::fresh_seed());
    runtime.block_on(async {
        let began = Instant::now();
        while next < count || turns < turns_wanted {
            assert!(began.elapsed() < LIMIT, "at {next} of {count}");
            turns += 1;
            tokio::select! {
                got = channel.recv_async(), if next < count => {
                    assert_eq!(parse(&got.unwrap()), (0, next), "in order, none lost");
                    next += 1;
                }
                _ = rival(&mut rng, Duration::from_micros(2_000), 4) => timers += 1,
            }
        }
    });
    child.wait_success();
    println!("{turns} turns, {timers} won by the other side");
    assert_eq!(channel.try_recv(), Err(Error::Empty), "nothing repeated");
    assert!(timers > 0, "some receive futures were dropped");
}

/// The other side of a `select!` that drops futures in every phase of
/// their wait: a timer of up to `longest` (most often won while the
/// future sleeps with the waiter), or up to `most_yields` yields to the
/// executor (won while it spins or yields), half the time each.
fn rival(
    rng: &mut Rng,
    longest: Duration,
    most_yields: u64,
) -> impl std::future::Future<Output = ()> {
    let timer = Duration::from_nanos(rng.below(longest.as_nanos() as u64 + 1));
    let yields = rng.below(most_yields);
    let use_timer = rng.below(2) == 0;
    async move {
        if use_timer {
            tokio::time::sleep(timer).await;
        } else {
            for _ in 0..yields {
                tokio::task::yield_now().await;
            }
        }
    }
}

/// 1,000 receive futures pending on 100 idle channels for 2 s use under
/// 1% of a CPU (3% under Wine): they sleep with the waiter threads, which wake for them
/// only at their naps' ends (when one future per channel looks for dead
/// peers). Measured from the CPU time of a process of their own (the
/// tests of this binary run side by side), after they settle.
#[test]
fn idle_futures_cost_no_cpu() {
    Role::Idle.spawn().limit(LIMIT).start().wait_success();
}

/// The CPU time this process has used.
#[cfg(unix)]
fn process_cpu() -> Duration {
    use rustix::time::{clock_gettime, ClockId};
    let now = clock_gettime(ClockId::ProcessCPUTime);
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// The CPU time this process has used (kernel and user).
#[cfg(windows)]
fn process_cpu() -> Duration {
    use windows_sys::Win32::Foundation::FILETIME;
    use windows_sys::Win32::System::Threading::{GetCurrentProcess, GetProcessTimes};
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: the pseudo-handle of this process, and four FILETIMEs that
    // outlive the call.
    let ok = unsafe {
        GetProcessTimes(
            GetCurrentProcess(),
            &mut created,
            &mut exited,
            &mut kernel,
            &mut user,
        )
    };
    assert_ne!(ok, 0, "GetProcessTimes");
    let ticks = |t: FILETIME| (u64::from(t.dwHighDateTime) << 32) | u64::from(t.dwLowDateTime);
    Duration::from_nanos((ticks(kernel) + ticks(user)) * 100)
}

fn child_idle() {
    let cpu = process_cpu;
    let prefix = unique_name("fut-idle");
    let channels: Vec<Arc<Channel>> = (0..100)
        .map(|i| {
            Arc::new(
                Channel::create_or_open(&format!("{prefix}-{i}"), ChannelGeometry::default())
                    .unwrap(),
            )
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..1000)
            .map(|i| {
                let channel = Arc::clone(&channels[i % 100]);
                tokio::spawn(async move { channel.recv_async().await })
            })
            .collect();
        // Let them spin, yield and fall asleep (50 µs each), then measure.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = cpu();
        let window = Instant::now();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let used = cpu() - before;
        let share = used.as_secs_f64() / window.elapsed().as_secs_f64();
        println!("1,000 idle futures used {used:?} of CPU in 2 s ({share:.3} of a CPU)");
        // Under Wine every wait, wake and open is a round trip to its
        // server: the same sleep costs a few times what it costs on Linux.
        let limit = if cfg!(windows) { 0.03 } else { 0.01 };
        assert!(share < limit, "{used:?} of CPU for 2 s of idle futures");
        for i in 0..100 {
            // Another handle: the receivers' own is not their peer.
            let sender = Channel::open(&format!("{prefix}-{i}")).unwrap();
            for _ in 0..10 {
                sender.send(b"bye").unwrap();
            }
        }
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), b"bye");
        }
    });
}

/// An async sender and a blocking receiver in another process, then a
/// blocking sender in another process and async receivers (futures-lite's
/// `block_on`, tokio's current-thread runtime) here: one object, both
/// forms, in order.
#[test]
fn async_and_blocking_sides_mix_across_processes() {
    let count = if cfg!(windows) { 2_000 } else { 20_000 };
    let name = unique_name("fut-mix");
    let channel = Channel::create_or_open(&name, geometry(8, 16)).unwrap();
    let mut receiver = Role::ReceiveBlocking
        .spawn()
        .limit(LIMIT)
        .env("CHANNEL", &name)
        .env("COUNT", count.to_string())
        .start();
    futures_lite::future::block_on(async {
        for seq in 0..count {
            channel.send_async(&message(0, seq)).await.unwrap();
        }
    });
    receiver.wait_success();

    let inbox = Channel::create_or_open(&format!("{name}-0"), geometry(8, 16)).unwrap();
    let mut sender = produce(&name, 1, 0, count).start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for seq in 0..count {
            let got = tokio::time::timeout(LIMIT, inbox.recv_async())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(parse(&got), (0, seq));
        }
    });
    sender.wait_success();
}

/// A future awaiting a channel whose other side is gone ends with
/// `Disconnected`, as the blocking form does.
#[test]
fn a_future_on_a_deserted_channel_is_told_so() {
    let name = unique_name("fut-gone");
    let channel = Channel::create_or_open(&format!("{name}-0"), geometry(8, 16)).unwrap();
    produce(&name, 1, 0, 1).start().wait_success();
    futures_lite::future::block_on(async {
        assert_eq!(parse(&channel.recv_async().await.unwrap()), (0, 0));
        let error = channel.recv_async().await.unwrap_err();
        assert!(
            matches!(error, Error::Disconnected { .. }),
            "expected Disconnected, got {error:?}"
        );
    });
}

/// Publishes COUNT numbered messages to TOPIC with the blocking form,
/// pausing 2 ms every PAUSE_EVERY (if set).
fn child_publish() {
    let count: u64 = arg("COUNT").parse().unwrap();
    let pause_every: u64 = std::env::var("PAUSE_EVERY").map_or(0, |v| v.parse().unwrap());
    let topic = Topic::open(&arg("TOPIC")).unwrap();
    for seq in 0..count {
        topic.publish_timeout(&message(0, seq), LIMIT).unwrap();
        if pause_every != 0 && seq % pause_every == pause_every - 1 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Subscribes to TOPIC, says it is ready, and receives COUNT numbered
/// messages in order with the blocking form.
fn child_subscribe_blocking() {
    let count: u64 = arg("COUNT").parse().unwrap();
    let topic = Topic::open(&arg("TOPIC")).unwrap();
    let mut subscriber = topic.subscribe().unwrap();
    shmio_testkit::ready();
    for seq in 0..count {
        let got = subscriber.recv_timeout(LIMIT).unwrap();
        assert_eq!(parse(&got), (0, seq));
    }
}

fn blocking_topic(name: &str) -> Topic {
    Topic::options()
        .capacity(16)
        .max_message_size(16)
        .overflow(Overflow::Block)
        .create_or_open(name)
        .unwrap()
}

/// Three subscribers awaiting in tokio tasks (current-thread runtime) get
/// every message a publisher process publishes under `Block`, in order;
/// then an async publisher here feeds a blocking subscriber process,
/// waiting for it whenever the topic is full.
#[test]
fn topic_futures_fan_out_and_publish_across_processes() {
    let count: u64 = if cfg!(windows) { 2_000 } else { 50_000 };
    let name = unique_name("fut-topic");
    let topic = blocking_topic(&name);
    let subscribers: Vec<_> = (0..3).map(|_| topic.subscribe().unwrap()).collect();
    let mut publisher = Role::Publish
        .spawn()
        .limit(LIMIT)
        .env("TOPIC", &name)
        .env("COUNT", count.to_string())
        .env("PAUSE_EVERY", "1000")
        .start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tasks: Vec<_> = subscribers
            .into_iter()
            .map(|mut subscriber| {
                tokio::spawn(async move {
                    for seq in 0..count {
                        let got = subscriber.recv_async().await.unwrap();
                        assert_eq!(parse(&got), (0, seq), "in order, none missed");
                    }
                })
            })
            .collect();
        for task in tasks {
            tokio::time::timeout(LIMIT, task).await.unwrap().unwrap();
        }
    });
    publisher.wait_success();

    let mut subscriber = Role::SubscribeBlocking
        .spawn()
        .limit(LIMIT)
        .env("TOPIC", &name)
        .env("COUNT", count.to_string())
        .start();
    subscriber.wait_ready();
    runtime.block_on(async {
        for seq in 0..count {
            topic.publish_async(&message(0, seq)).await.unwrap();
        }
    });
    subscriber.wait_success();
}

/// `select!` between a subscriber's receive and a timer or a few yields,
/// while a publisher process publishes (pausing now and then): every
/// message once, in order.
#[test]
fn dropped_topic_receives_lose_and_repeat_nothing() {
    let (count, turns_wanted) = if cfg!(windows) {
        (3_000, 6_000)
    } else {
        (50_000, 50_000)
    };
    let name = unique_name("fut-topic-cancel");
    let topic = blocking_topic(&name);
    let mut subscriber = topic.subscribe().unwrap();
    let mut publisher = Role::Publish
        .spawn()
        .limit(LIMIT)
        .env("TOPIC", &name)
        .env("COUNT", count.to_string())
        .env("PAUSE_EVERY", "500")
        .start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rng = Rng::new(Rng::fresh_seed());
    let (mut next, mut turns, mut others) = (0u64, 0u64, 0u64);
    runtime.block_on(async {
        let began = Instant::now();
        while next < count || turns < turns_wanted {
            assert!(began.elapsed() < LIMIT, "at {next} of {count}");
            turns += 1;
            tokio::select! {
                got = subscriber.recv_async(), if next < count => {
                    assert_eq!(parse(&got.unwrap()), (0, next), "in order, none lost");
                    next += 1;
                }
                _ = rival(&mut rng, Duration::from_micros(2_000), 4) => others += 1,
            }
        }
    });
    publisher.wait_success();
    println!("{turns} turns, {others} won by the other side");
    assert_eq!(subscriber.try_recv(), Err(Error::Empty), "nothing repeated");
}

/// ROUNDS times: sets the auto-reset event PING, then waits for PONG.
fn child_ping() {
    let rounds: u64 = arg("ROUNDS").parse().unwrap();
    let ping = NamedEvent::open(&arg("PING")).unwrap();
    let pong = NamedEvent::open(&arg("PONG")).unwrap();
    for round in 0..rounds {
        ping.set().unwrap();
        pong.wait_timeout(LIMIT).unwrap();
        if round % 64 == 63 {
            // Let the waiting future fall asleep with the waiter.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Adds 1 to the counter at offset 0 of the mapping COUNTER, COUNT times,
/// each under the mutex MUTEX (a plain read and write: the lock alone
/// keeps it exact).
fn child_count() {
    let count: u64 = arg("COUNT").parse().unwrap();
    let mutex = NamedMutex::open(&arg("MUTEX")).unwrap();
    let counter = Mapping::open(&arg("COUNTER")).unwrap();
    for _ in 0..count {
        let _guard = mutex.lock_timeout(LIMIT).unwrap();
        let n: u64 = counter.read_value_at(0).unwrap();
        counter.write_value_at(0, &(n + 1)).unwrap();
    }
}

/// An event set by another process, awaited in `select!` against a timer
/// or a few yields, in a ping-pong of ROUNDS rounds (each set answered
/// before the next): a set taken by a future the timer won is never lost
/// (the game would stop), none is taken twice.
#[test]
fn event_futures_take_every_set_once_however_many_are_dropped() {
    let rounds: u64 = if cfg!(windows) { 1_000 } else { 20_000 };
    let prefix = unique_name("fut-event");
    let ping = NamedEvent::create_or_open(&format!("{prefix}-ping"), EventMode::AutoReset).unwrap();
    let pong = NamedEvent::create_or_open(&format!("{prefix}-pong"), EventMode::AutoReset).unwrap();
    let mut child = Role::Ping
        .spawn()
        .limit(LIMIT)
        .env("PING", format!("{prefix}-ping"))
        .env("PONG", format!("{prefix}-pong"))
        .env("ROUNDS", rounds.to_string())
        .start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rng = Rng::new(Rng::fresh_seed());
    let (mut taken, mut others) = (0u64, 0u64);
    runtime.block_on(async {
        let began = Instant::now();
        while taken < rounds {
            assert!(began.elapsed() < LIMIT, "at round {taken} of {rounds}");
            tokio::select! {
                got = ping.wait_async() => {
                    got.unwrap();
                    taken += 1;
                    pong.set().unwrap();
                }
                _ = rival(&mut rng, Duration::from_micros(1_500), 4) => others += 1,
            }
        }
    });
    child.wait_success();
    println!("{taken} sets taken, {others} futures dropped");
    assert_eq!(ping.try_wait(), Err(Error::WouldBlock), "none taken twice");
}

/// 100,000 turns of `select!` between a lock future, under contention
/// from two processes that lock with the blocking form, and a timer or a
/// few yields: the count kept under the lock is exact, and no dropped
/// future leaves the lock held.
#[test]
fn lock_futures_keep_the_count_exact_however_many_are_dropped() {
    let (per_child, turns_wanted) = if cfg!(windows) {
        (2_000, 4_000)
    } else {
        (20_000, 100_000)
    };
    let prefix = unique_name("fut-lock");
    let mutex = NamedMutex::create_or_open(&format!("{prefix}-mutex")).unwrap();
    let counter = Mapping::create_or_open(&format!("{prefix}-counter"), 4096).unwrap();
    let children: Vec<Child> = (0..2)
        .map(|_| {
            Role::Count
                .spawn()
                .limit(LIMIT)
                .env("MUTEX", format!("{prefix}-mutex"))
                .env("COUNTER", format!("{prefix}-counter"))
                .env("COUNT", per_child.to_string())
                .start()
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rng = Rng::new(Rng::fresh_seed());
    let (mut locked, mut others) = (0u64, 0u64);
    runtime.block_on(async {
        let began = Instant::now();
        while locked + others < turns_wanted {
            assert!(
                began.elapsed() < LIMIT,
                "at turn {} of {turns_wanted}",
                locked + others
            );
            tokio::select! {
                guard = mutex.lock_async() => {
                    let _guard = guard.unwrap();
                    let n: u64 = counter.read_value_at(0).unwrap();
                    counter.write_value_at(0, &(n + 1)).unwrap();
                    locked += 1;
                }
                _ = rival(&mut rng, Duration::from_micros(1_000), 3) => others += 1,
            }
        }
    });
    for mut child in children {
        child.wait_success();
    }
    println!("{locked} locks taken here, {others} lock futures dropped");
    let total: u64 = counter.read_value_at(0).unwrap();
    assert_eq!(total, 2 * per_child + locked, "the count is exact");
    drop(mutex.try_lock().expect("no dropped future holds the lock"));
}

/// Listens to `double` in GROUP (replying `2n` after SLOW_US µs if set),
/// says it is ready, and serves until killed.
fn child_double() {
    let bus = Bus::join(&arg("GROUP")).unwrap();
    let slow: u64 = std::env::var("SLOW_US").map_or(0, |us| us.parse().unwrap());
    let _double = bus
        .listen("double", move |n: u64| {
            if slow != 0 {
                std::thread::sleep(Duration::from_micros(slow));
            }
            Ok::<_, String>(Some(2 * n))
        })
        .unwrap();
    shmio_testkit::ready();
    std::thread::sleep(LIMIT);
}

/// Listens to `double` in GROUP and never answers (its handler sets the
/// event GROUP-asked, then hangs), until killed.
fn child_hang() {
    let group = arg("GROUP");
    let bus = Bus::join(&group).unwrap();
    let asked = NamedEvent::open(&format!("{group}-asked")).unwrap();
    let _double = bus
        .listen("double", move |_: u64| {
            asked.set().unwrap();
            std::thread::sleep(LIMIT);
            Ok::<Option<u64>, String>(None)
        })
        .unwrap();
    shmio_testkit::ready();
    std::thread::sleep(LIMIT);
}

/// Calls `double` in GROUP with 0..CALLS with the blocking form, checking
/// each answer.
fn child_call_double() {
    let bus = Bus::join(&arg("GROUP")).unwrap();
    let calls: u64 = arg("CALLS").parse().unwrap();
    for n in 0..calls {
        let doubled: Option<u64> = bus.call("double", &n, LIMIT).unwrap();
        assert_eq!(doubled, Some(2 * n));
    }
}

fn start_listener(role: Role, group: &str, slow_us: u64) -> Child {
    let mut child = role
        .spawn()
        .limit(LIMIT)
        .env("GROUP", group)
        .env("SLOW_US", slow_us.to_string())
        .start();
    child.wait_ready();
    child
}

/// 100,000 calls awaited in `select!` against a timer or a few yields, to a
/// listener process that answers after a few microseconds: every call
/// that completes gets its own answer (a reply to a dropped call is never
/// handed to a later one), and a blocking call afterwards finds nothing
/// stranded. Then `broadcast_async` hears both of two listeners.
#[test]
fn dropped_bus_calls_strand_no_reply() {
    let turns_wanted: u64 = if cfg!(windows) { 1_000 } else { 100_000 };
    let group = unique_name("fut-bus");
    let bus = Bus::join(&group).unwrap();
    let mut first = start_listener(Role::Double, &group, 50);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rng = Rng::new(Rng::fresh_seed());
    let (mut answered, mut dropped) = (0u64, 0u64);
    runtime.block_on(async {
        let began = Instant::now();
        for n in 0..turns_wanted {
            assert!(began.elapsed() < LIMIT, "at turn {n}");
            tokio::select! {
                doubled = bus.call_async::<_, u64>("double", &n, LIMIT) => {
                    assert_eq!(doubled.unwrap(), Some(2 * n), "its own answer");
                    answered += 1;
                }
                _ = rival(&mut rng, Duration::from_micros(300), 6) => dropped += 1,
            }
        }
        let doubled: Option<u64> = bus.call_async("double", &7, LIMIT).await.unwrap();
        assert_eq!(doubled, Some(14));
    });
    println!("{answered} calls answered, {dropped} dropped");
    assert!(answered > 0 && dropped > 0);
    let doubled: Option<u64> = bus.call("double", &21, LIMIT).unwrap();
    assert_eq!(doubled, Some(42), "nothing stranded for a blocking call");

    let mut second = start_listener(Role::Double, &group, 0);
    let replies = runtime
        .block_on(bus.broadcast_async::<_, u64>("double", &5, LIMIT))
        .unwrap();
    let heard: Vec<u64> = replies.replies().map(|(_, reply)| *reply).collect();
    assert_eq!(heard, vec![10, 10], "both listeners answered");
    first.kill();
    second.kill();
}

/// A call awaited while its first listener hangs and is then killed goes
/// on to the next listener, as a blocking call does; with that one killed
/// too, the next call is `ListenerDied` or finds no listener.
#[test]
fn a_bus_call_future_goes_on_past_a_dead_listener() {
    let group = unique_name("fut-bus-dead");
    let bus = Bus::join(&group).unwrap();
    let asked =
        NamedEvent::create_or_open(&format!("{group}-asked"), EventMode::AutoReset).unwrap();
    let mut hanging = start_listener(Role::Hang, &group, 0);
    let mut answering = start_listener(Role::Double, &group, 0);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let call = bus.call_async::<_, u64>("double", &4, LIMIT);
        tokio::pin!(call);
        tokio::select! {
            _ = &mut call => panic!("answered while its first listener hangs"),
            got = asked.wait_async() => got.unwrap(),
        }
        hanging.kill();
        assert_eq!(call.await.unwrap(), Some(8), "the next listener answered");
        answering.kill();
        match bus.call_async::<_, u64>("double", &4, LIMIT).await {
            Err(Error::ListenerDied { .. } | Error::NoListener { .. }) => {}
            other => panic!("expected ListenerDied or NoListener, got {other:?}"),
        }
    });
}

/// An async program serves the bus itself (`listen_polled` and
/// `next_request_async` in a tokio task) while a process calls it with
/// the blocking form.
#[test]
fn an_async_program_serves_bus_requests() {
    let calls: u64 = if cfg!(windows) { 200 } else { 2_000 };
    let group = unique_name("fut-bus-serve");
    let bus = Bus::join(&group).unwrap();
    let _listener = bus.listen_polled("double").unwrap();
    let mut caller = Role::CallDouble
        .spawn()
        .limit(LIMIT)
        .env("GROUP", &group)
        .env("CALLS", calls.to_string())
        .start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for _ in 0..calls {
            let request = tokio::time::timeout(LIMIT, bus.next_request_async())
                .await
                .unwrap()
                .unwrap();
            let n: u64 = request.args().unwrap();
            request.reply(&(2 * n)).unwrap();
        }
    });
    caller.wait_success();
}

/// Echoes COUNT messages from the channel IN to the channel OUT, awaiting
/// both (futures-lite's `block_on`).
fn child_echo_async() {
    let count: u64 = arg("COUNT").parse().unwrap();
    let inbound = Channel::open(&arg("IN")).unwrap();
    let outbound = Channel::open(&arg("OUT")).unwrap();
    futures_lite::future::block_on(async {
        for _ in 0..count {
            let message = inbound.recv_async().await.unwrap();
            outbound.send_async(&message).await.unwrap();
        }
    });
}

/// Futures on both sides of two channels, the other side in a pid
/// namespace of its own (on Linux as root, as containers sharing
/// `/dev/shm` run): every message comes back, in order, with pauses that
/// put both sides to sleep with their waiters.
#[test]
fn futures_meet_across_pid_namespaces() {
    #[cfg(target_os = "linux")]
    let namespaced = shmio_testkit::root_with(&["unshare"]);
    #[cfg(not(target_os = "linux"))]
    let namespaced = false;
    let count: u64 = if cfg!(windows) { 500 } else { 5_000 };
    let name = unique_name("fut-ns");
    let out = Channel::create_or_open(&format!("{name}-out"), geometry(4, 16)).unwrap();
    let back = Channel::create_or_open(&format!("{name}-back"), geometry(4, 16)).unwrap();
    let mut spawn = Role::EchoAsync
        .spawn()
        .limit(LIMIT)
        .env("IN", format!("{name}-out"))
        .env("OUT", format!("{name}-back"))
        .env("COUNT", count.to_string());
    if namespaced {
        spawn = spawn.wrapped_in("unshare", ["--pid", "--fork", "--kill-child", "--"]);
    }
    let mut child = spawn.start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for seq in 0..count {
            out.send_async(&message(0, seq)).await.unwrap();
            let got = tokio::time::timeout(LIMIT, back.recv_async())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(parse(&got), (0, seq));
            if seq % 500 == 499 {
                // Quiet long enough for both sides to fall asleep.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    child.wait_success();
    println!("{count} round trips, namespaced: {namespaced}");
}

/// Every future is `Send`, so a task of a multi-threaded executor may hold
/// it across an `.await` (a compile-time check: nothing is awaited).
#[test]
fn every_future_is_send() {
    fn send<T: Send>(_: &T) {}
    let name = unique_name("fut-send");
    let channel = Channel::create_or_open(&name, geometry(4, 16)).unwrap();
    let topic = Topic::create_or_open(&format!("{name}-topic")).unwrap();
    let mut subscriber = topic.subscribe().unwrap();
    let event = NamedEvent::create_or_open(&format!("{name}-event"), EventMode::AutoReset).unwrap();
    let mutex = NamedMutex::create_or_open(&format!("{name}-mutex")).unwrap();
    let bus = Bus::join(&format!("{name}-bus")).unwrap();
    let mut buf = Vec::new();
    send(&channel.send_async(b"x"));
    send(&channel.recv_async());
    send(&channel.recv_into_async(&mut buf));
    send(&channel.send_record_async(&1));
    send(&channel.recv_record_async::<u32>());
    send(&topic.publish_async(b"x"));
    send(&topic.publish_record_async(&1));
    send(&subscriber.recv_async());
    send(&event.wait_async());
    send(&mutex.lock_async());
    send(&bus.call_async::<_, u32>("c", &1, Duration::from_secs(1)));
    send(&bus.broadcast_async::<_, u32>("c", &1, Duration::from_secs(1)));
    send(&bus.next_request_async());
}

/// The `Stream`s (feature `stream`): a channel's messages from another
/// process, ending once that process has gone; a subscriber's; a bus
/// member's requests, answered as they come.
#[cfg(feature = "stream")]
#[test]
fn streams_of_messages_and_requests() {
    use futures_lite::StreamExt;
    let count = if cfg!(windows) { 200 } else { 2_000 };
    let name = unique_name("fut-stream");
    let channel = Channel::create_or_open(&format!("{name}-0"), geometry(8, 16)).unwrap();
    let mut sender = produce(&name, 1, 0, count).start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut messages = channel.messages();
        for seq in 0..count {
            let got = messages.next().await.unwrap().unwrap();
            assert_eq!(parse(&got), (0, seq));
        }
        sender.wait_success();
        assert!(
            messages.next().await.is_none(),
            "the end, once the sender has gone"
        );
    });

    let topic = blocking_topic(&format!("{name}-topic"));
    let mut subscriber = topic.subscribe().unwrap();
    let mut publisher = Role::Publish
        .spawn()
        .limit(LIMIT)
        .env("TOPIC", format!("{name}-topic"))
        .env("COUNT", count.to_string())
        .start();
    runtime.block_on(async {
        let mut messages = subscriber.messages();
        for seq in 0..count {
            let got = messages.next().await.unwrap().unwrap();
            assert_eq!(parse(&got), (0, seq));
        }
    });
    publisher.wait_success();

    let group = format!("{name}-bus");
    let bus = Bus::join(&group).unwrap();
    let _listener = bus.listen_polled("double").unwrap();
    let mut caller = Role::CallDouble
        .spawn()
        .limit(LIMIT)
        .env("GROUP", &group)
        .env("CALLS", "100")
        .start();
    runtime.block_on(async {
        let mut requests = bus.requests();
        for _ in 0..100 {
            let request = requests.next().await.unwrap().unwrap();
            let n: u64 = request.args().unwrap();
            request.reply(&(2 * n)).unwrap();
        }
    });
    caller.wait_success();
}
