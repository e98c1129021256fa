//! The topic: settings and errors in one process, then real processes:
//! every subscriber gets every message (block), a slow subscriber is told
//! exactly what it missed (overwrite), per-publisher order with three
//! publishers, late joiners get the history, and the dead (a publisher
//! killed while writing, a subscriber killed while subscribed) hold no
//! one back.

use std::io::Write;
use std::time::Duration;

use shmio::{Channel, ChannelGeometry, Error, Overflow, Topic};
use shmio_testkit::{arg, mix, shm_entry_exists, unique_name, Child, Input, Rng, Spawn};

/// How long any one wait of these tests may take.
const LIMIT: Duration = Duration::from_secs(60);

/// Messages per publisher in the traffic tests: fewer under Wine, whose
/// process start-up and scheduling are slow.
const MESSAGES: u64 = if cfg!(windows) { 2_000 } else { 1_000_000 };
/// Subscriber processes in the fan-out tests.
const SUBSCRIBERS: usize = if cfg!(windows) { 4 } else { 8 };

shmio_testkit::roles! {
    Subscribe => child_subscribe(),
    Publish => child_publish(),
    SlowSubscribe => child_slow_subscribe(),
    StallPublish => child_stall_publish(),
    SubscribeAndHang => child_subscribe_and_hang(),
    StormPublish => child_storm_publish(),
    StormSubscribe => child_storm_subscribe(),
}

/// A message: who published it and its number, 16 bytes.
fn message(publisher: u64, n: u64) -> [u8; 16] {
    let mut bytes = [0; 16];
    bytes[..8].copy_from_slice(&publisher.to_le_bytes());
    bytes[8..].copy_from_slice(&n.to_le_bytes());
    bytes
}

fn parse(bytes: &[u8]) -> (u64, u64) {
    assert_eq!(bytes.len(), 16, "a message of 16 bytes");
    (
        u64::from_le_bytes(bytes[..8].try_into().unwrap()),
        u64::from_le_bytes(bytes[8..].try_into().unwrap()),
    )
}

/// Subscribes to TOPIC, says it is ready, then receives until it has
/// PUBLISHERS × COUNT messages, each publisher's in order from FIRST (a
/// gap or a repeat fails), and prints how many it got.
fn child_subscribe() {
    let topic = Topic::open(&arg("TOPIC")).unwrap();
    let publishers: u64 = arg("PUBLISHERS").parse().unwrap();
    let count: u64 = arg("COUNT").parse().unwrap();
    let first: u64 = std::env::var("FIRST").map_or(0, |first| first.parse().unwrap());
    let mut subscriber = topic.subscribe().unwrap();
    shmio_testkit::ready();
    let mut next = vec![first; publishers as usize];
    let mut buf = Vec::new();
    let mut received = 0u64;
    while received < publishers * count {
        subscriber.recv_into_timeout(&mut buf, LIMIT).unwrap();
        let (publisher, n) = parse(&buf);
        assert_eq!(n, next[publisher as usize], "publisher {publisher}'s order");
        next[publisher as usize] += 1;
        received += 1;
    }
    println!("received {received}");
}

/// Publishes COUNT messages as publisher ID to TOPIC.
fn child_publish() {
    let topic = Topic::open(&arg("TOPIC")).unwrap();
    let id: u64 = arg("ID").parse().unwrap();
    let count: u64 = arg("COUNT").parse().unwrap();
    for n in 0..count {
        topic.publish_timeout(&message(id, n), LIMIT).unwrap();
    }
}

/// Subscribes, says it is ready, waits for a line on stdin (the parent
/// has published more than the topic holds by then), then reads slowly
/// until the message numbered u64::MAX, counting what it got and what it
/// was told it missed; every message it gets comes after the last one it
/// got.
fn child_slow_subscribe() {
    let topic = Topic::open(&arg("TOPIC")).unwrap();
    let mut subscriber = topic.subscribe().unwrap();
    shmio_testkit::ready();
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).unwrap();
    let (mut got, mut missed) = (0u64, 0u64);
    let mut last: Option<u64> = None;
    loop {
        match subscriber.recv_timeout(LIMIT) {
            Ok(bytes) => {
                let (_, n) = parse(&bytes);
                got += 1;
                if n == u64::MAX {
                    break;
                }
                assert!(last.is_none_or(|last| n > last), "{n} after {last:?}");
                last = Some(n);
                if got % 64 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Err(Error::Lagged { missed: more, .. }) => missed += more,
            Err(other) => panic!("{other}"),
        }
    }
    println!("got {got} missed {missed}");
}

/// Claims a slot to publish and stalls inside it until killed.
fn child_stall_publish() {
    let topic = Topic::open(&arg("TOPIC")).unwrap();
    // SAFETY: every process on this topic is a shmio Topic.
    unsafe {
        topic.publish_with(16, |slot| {
            slot.copy_from_slice(b"torn torn torn!!");
            shmio_testkit::ready();
            shmio_testkit::until_killed()
        })
    }
    .unwrap();
    panic!("the parent never killed this process");
}

/// Subscribes, says it is ready, and reads nothing until killed.
fn child_subscribe_and_hang() {
    let topic = Topic::open(&arg("TOPIC")).unwrap();
    let _subscriber = topic.subscribe().unwrap();
    shmio_testkit::ready();
    shmio_testkit::until_killed()
}

fn subscribers(topic: &str, count: usize, publishers: u64, per_publisher: u64) -> Vec<Child> {
    let mut children: Vec<Child> = (0..count)
        .map(|_| {
            Role::Subscribe
                .spawn()
                .env("TOPIC", topic)
                .env("PUBLISHERS", publishers.to_string())
                .env("COUNT", per_publisher.to_string())
                .limit(LIMIT)
                .start()
        })
        .collect();
    for child in &mut children {
        child.wait_ready();
    }
    children
}

fn finish(children: Vec<Child>, expected: &str) {
    for child in children {
        let done = child.finish();
        done.assert_success("a subscriber");
        assert!(
            done.stdout_text().contains(expected),
            "{}",
            done.stdout_text()
        );
    }
}

#[test]
fn settings_are_kept_and_checked() {
    let name = unique_name("topic-settings");
    let topic = Topic::options()
        .capacity(8)
        .max_message_size(32)
        .history(3)
        .overflow(Overflow::Block)
        .create_or_open(&name)
        .unwrap();
    assert!(!topic.existed());
    assert_eq!(
        (topic.capacity(), topic.max_message_size(), topic.history()),
        (8, 32, 3)
    );
    assert_eq!(topic.overflow(), Overflow::Block);
    let opened = Topic::open(&name).unwrap();
    assert!(opened.existed());
    assert_eq!(opened.overflow(), Overflow::Block);
    assert!(matches!(
        Topic::options().capacity(9).create_or_open(&name),
        Err(Error::Mismatch { .. })
    ));
    assert!(matches!(
        Topic::options()
            .capacity(4)
            .history(4)
            .create_or_open(&unique_name("topic-bad")),
        Err(Error::InvalidOptions { .. })
    ));
    assert!(matches!(
        topic.publish(&[0; 33]),
        Err(Error::MessageTooLarge { len: 33, max: 32 })
    ));
    let channel = unique_name("topic-not-a-channel");
    let _channel = Channel::create_or_open(
        &channel,
        ChannelGeometry {
            capacity: 4,
            max_message_size: 8,
        },
    )
    .unwrap();
    assert!(matches!(
        Topic::open(&channel),
        Err(Error::WrongKind { .. })
    ));
    assert!(matches!(
        Topic::open(&unique_name("topic-none")),
        Err(Error::NotFound { .. })
    ));
    drop((topic, opened));
    assert!(
        !shm_entry_exists(&name),
        "the name goes with its last holder"
    );
}

#[test]
fn records_travel_and_a_subscriber_alone_waits() {
    let name = unique_name("topic-records");
    let topic = Topic::create_or_open(&name).unwrap();
    let mut subscriber = topic.subscribe().unwrap();
    assert!(matches!(subscriber.try_recv(), Err(Error::Empty)));
    assert!(subscriber
        .recv_timeout(Duration::from_millis(50))
        .unwrap_err()
        .is_timed_out());
    topic.publish_record(&("resize", 800, 600)).unwrap();
    assert_eq!(subscriber.len(), 1);
    let got: (String, u32, u32) = subscriber.recv_record().unwrap();
    assert_eq!(got, ("resize".to_owned(), 800, 600));
    topic.publish(b"not json").unwrap();
    assert!(matches!(
        subscriber.recv_record::<u32>(),
        Err(Error::UndecodableMessage { .. })
    ));
    assert!(subscriber.is_empty());
}

#[test]
fn every_subscriber_gets_every_message_in_order_under_block() {
    fan_out_under_block(1024, 16);
}

/// The same through a pool of chunks (messages of up to 64 KiB), where a
/// chunk is reused as soon as every subscriber has read its message.
#[test]
fn every_subscriber_gets_every_message_in_order_from_a_pool() {
    fan_out_under_block(8, 64 << 10);
}

fn fan_out_under_block(capacity: u32, max_message_size: u32) {
    let name = unique_name("topic-block");
    let topic = Topic::options()
        .capacity(capacity)
        .max_message_size(max_message_size)
        .overflow(Overflow::Block)
        .create_or_open(&name)
        .unwrap();
    let children = subscribers(&name, SUBSCRIBERS, 1, MESSAGES);
    assert_eq!(topic.subscribers(), SUBSCRIBERS);
    for n in 0..MESSAGES {
        topic.publish_timeout(&message(0, n), LIMIT).unwrap();
    }
    finish(children, &format!("received {MESSAGES}"));
    assert_eq!(topic.published(), MESSAGES);
}

#[test]
fn three_publishers_keep_their_order_at_every_subscriber() {
    let name = unique_name("topic-three");
    let _topic = Topic::options()
        .capacity(32)
        .max_message_size(16)
        .overflow(Overflow::Block)
        .create_or_open(&name)
        .unwrap();
    let per_publisher = MESSAGES / 10;
    let children = subscribers(&name, 4, 3, per_publisher);
    let publishers: Vec<Child> = (0..3)
        .map(|id| {
            Role::Publish
                .spawn()
                .env("TOPIC", &name)
                .env("ID", id.to_string())
                .env("COUNT", per_publisher.to_string())
                .limit(LIMIT)
                .start()
        })
        .collect();
    for mut publisher in publishers {
        publisher.wait_success();
    }
    finish(children, &format!("received {}", 3 * per_publisher));
}

#[test]
fn a_slow_subscriber_is_told_exactly_what_it_missed_under_overwrite() {
    let name = unique_name("topic-overwrite");
    let topic = Topic::options()
        .capacity(16)
        .max_message_size(16)
        .create_or_open(&name)
        .unwrap();
    let mut slow: Vec<Child> = (0..SUBSCRIBERS)
        .map(|_| {
            Role::SlowSubscribe
                .spawn()
                .env("TOPIC", &name)
                .stdin(Input::Pipe)
                .limit(LIMIT)
                .start()
        })
        .collect();
    for child in &mut slow {
        child.wait_ready();
    }
    // Half before they read at all (they must miss most of those), half
    // while they read slowly.
    for n in 0..MESSAGES / 2 {
        topic.publish(&message(0, n)).unwrap();
    }
    for child in &mut slow {
        child.stdin().write_all(b"go\n").unwrap();
    }
    for n in MESSAGES / 2..MESSAGES {
        topic.publish(&message(0, n)).unwrap();
    }
    topic.publish(&message(0, u64::MAX)).unwrap();
    for child in slow {
        let done = child.finish();
        done.assert_success("a slow subscriber");
        let text = done.stdout_text();
        let line = text.lines().find(|line| line.starts_with("got ")).unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        let got: u64 = words[1].parse().unwrap();
        let missed: u64 = words[3].parse().unwrap();
        assert_eq!(
            got + missed,
            MESSAGES + 1,
            "{line}: each one got or counted missed"
        );
        assert!(
            missed > 0,
            "{line}: the subscriber was slow enough to miss some"
        );
    }
}

#[test]
fn late_joiners_get_the_history_then_live_messages() {
    late_joiners(
        Topic::options()
            .capacity(16)
            .max_message_size(16)
            .history(5),
    );
}

/// The same through a pool of chunks: a chunk of the history is never
/// reused while it is history, read or not.
#[test]
fn late_joiners_get_the_history_from_a_pool() {
    late_joiners(
        Topic::options()
            .capacity(8)
            .max_message_size(64 << 10)
            .overflow(Overflow::Block)
            .history(5),
    );
}

fn late_joiners(options: &mut shmio::TopicOptions) {
    let name = unique_name("topic-history");
    let topic = options.create_or_open(&name).unwrap();
    for n in 0..10 {
        topic.publish(&message(0, n)).unwrap();
    }
    // In another process: the last 5 (5..10), then 5 live ones, in order.
    let mut late = Role::Subscribe
        .spawn()
        .env("TOPIC", &name)
        .env("PUBLISHERS", "1")
        .env("COUNT", "10")
        .env("FIRST", "5")
        .limit(LIMIT)
        .start();
    late.wait_ready();
    let mut here = topic.subscribe().unwrap();
    for n in 5..10 {
        assert_eq!(parse(&here.recv().unwrap()), (0, n), "the history");
    }
    for n in 10..15 {
        topic.publish(&message(0, n)).unwrap();
        assert_eq!(parse(&here.recv().unwrap()), (0, n), "then live, no gap");
    }
    assert!(matches!(here.try_recv(), Err(Error::Empty)), "no repeat");
    finish(vec![late], "received 10");
}

#[test]
fn a_publisher_killed_while_writing_wedges_no_one() {
    let name = unique_name("topic-killed-publisher");
    let topic = Topic::options()
        .capacity(2)
        .max_message_size(16)
        .create_or_open(&name)
        .unwrap();
    let mut subscriber = topic.subscribe().unwrap();
    let _dead = Role::StallPublish
        .spawn()
        .env("TOPIC", &name)
        .kill_when_ready();
    // Twice round the ring, past the dead publisher's slot.
    for n in 0..4 {
        topic.publish_timeout(&message(0, n), LIMIT).unwrap();
    }
    let mut got = Vec::new();
    loop {
        match subscriber.recv_timeout(Duration::from_secs(2)) {
            Ok(bytes) => got.push(parse(&bytes).1),
            // Overwritten while the dead one was buried: said, not lost.
            Err(Error::Lagged { .. }) => {}
            Err(error) if error.is_timed_out() => break,
            Err(error) => panic!("{error}"),
        }
    }
    assert!(
        got.windows(2).all(|pair| pair[0] < pair[1]) && got.last() == Some(&3),
        "in order to the last, never the half-written one: {got:?}"
    );
}

#[test]
fn a_dead_subscriber_holds_no_publisher_back_under_block() {
    let name = unique_name("topic-dead-subscriber");
    let topic = Topic::options()
        .capacity(4)
        .max_message_size(16)
        .overflow(Overflow::Block)
        .create_or_open(&name)
        .unwrap();
    let mut dead = Role::SubscribeAndHang.spawn().env("TOPIC", &name).start();
    dead.wait_ready();
    assert!(matches!(
        (0..5).try_for_each(|n| topic.try_publish(&message(0, n))),
        Err(Error::Full)
    ));
    dead.kill();
    for n in 0..20 {
        topic
            .publish_timeout(&message(0, n), Duration::from_secs(10))
            .unwrap();
    }
    assert_eq!(topic.subscribers(), 0, "its cursor let go");
}

#[test]
fn a_held_message_stays_in_place_until_released() {
    let name = unique_name("topic-held");
    let topic = Topic::options()
        .capacity(2)
        .max_message_size(16)
        .overflow(Overflow::Block)
        .create_or_open(&name)
        .unwrap();
    let mut subscriber = topic.subscribe().unwrap();
    topic.publish(&message(0, 0)).unwrap();
    let held = subscriber.hold_timeout(LIMIT).unwrap();
    assert_eq!(held.len(), 16);
    topic.publish(&message(0, 1)).unwrap();
    // The ring is full of what the subscriber has not moved past.
    assert!(matches!(
        topic.try_publish(&message(0, 2)),
        Err(Error::Full)
    ));
    // SAFETY: the subscriber holds the message and lives; every process
    // on the topic is a shmio Topic.
    let bytes = unsafe { std::slice::from_raw_parts(held.as_ptr(), held.len()) };
    assert_eq!(parse(bytes), (0, 0));
    subscriber.release(held);
    topic.try_publish(&message(0, 2)).unwrap();
    assert_eq!(parse(&subscriber.recv().unwrap()), (0, 1));
    let overwrite = Topic::create_or_open(&unique_name("topic-held-overwrite")).unwrap();
    assert!(matches!(
        overwrite.subscribe().unwrap().hold(),
        Err(Error::Unsupported { .. })
    ));
}

/// A kill-storm message: publisher, number, and 48 bytes that follow from
/// both, so that a torn message (parts of two) does not pass.
fn storm_message(publisher: u64, n: u64) -> [u8; 64] {
    let mut bytes = [0; 64];
    bytes[..8].copy_from_slice(&publisher.to_le_bytes());
    bytes[8..16].copy_from_slice(&n.to_le_bytes());
    for (i, chunk) in bytes[16..].chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&mix(publisher ^ n.rotate_left(17) ^ i as u64).to_le_bytes());
    }
    bytes
}

/// The publisher and number of a kill-storm message, checked whole.
fn storm_parse(bytes: &[u8]) -> (u64, u64) {
    assert_eq!(bytes.len(), 64, "a storm message of 64 bytes");
    let publisher = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    let n = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
    assert_eq!(
        bytes,
        storm_message(publisher, n),
        "message {n} of {publisher} is whole"
    );
    (publisher, n)
}

/// The publisher that ends a storm: its message tells subscribers to stop.
const STORM_END: u64 = u64::MAX;

/// Publishes storm messages as publisher ID until killed.
fn child_storm_publish() {
    let topic = Topic::open(&arg("TOPIC")).unwrap();
    let id: u64 = arg("ID").parse().unwrap();
    shmio_testkit::ready();
    for n in 0.. {
        topic.publish_timeout(&storm_message(id, n), LIMIT).unwrap();
    }
}

/// Subscribes and checks every storm message until the end: whole, and
/// each publisher's numbers one after another from the first it saw (a
/// killed publisher's half-written last message is simply never seen).
fn child_storm_subscribe() {
    let topic = Topic::open(&arg("TOPIC")).unwrap();
    let mut subscriber = topic.subscribe().unwrap();
    shmio_testkit::ready();
    let mut last = std::collections::HashMap::new();
    let mut buf = Vec::new();
    let mut received = 0u64;
    loop {
        subscriber.recv_into_timeout(&mut buf, LIMIT).unwrap();
        let (publisher, n) = storm_parse(&buf);
        if publisher == STORM_END {
            break;
        }
        if let Some(previous) = last.insert(publisher, n) {
            assert_eq!(
                n,
                previous + 1,
                "publisher {publisher}'s messages one after another"
            );
        }
        received += 1;
    }
    println!("storm survived: {received} messages");
}

/// `role` as a storm process: on Linux as root in a pid namespace of its
/// own (where it is pid 1), as containers sharing `/dev/shm` run it.
fn storm_spawn(role: Role, namespaced: bool) -> Spawn {
    let spawn = role.spawn().limit(LIMIT);
    if namespaced {
        spawn.wrapped_in("unshare", ["--pid", "--fork", "--kill-child", "--"])
    } else {
        spawn
    }
}

/// Publishers and subscribers killed at random while messages flow
/// (block, so a dead subscriber must be found and a dead publisher's slot
/// buried for anyone to go on): nothing torn, each publisher's messages in
/// order at every subscriber, the survivors finish, and no name is left
/// once all have gone. On Linux as root, every process in a pid namespace
/// of its own.
#[test]
fn a_kill_storm_tears_nothing_and_wedges_no_one() {
    kill_storm(64);
}

/// The same through a pool of chunks: a publisher killed between
/// reserving a chunk and publishing leaks none, a killed subscriber's
/// unread messages keep theirs only until it is found dead.
#[test]
fn a_kill_storm_on_a_pool_of_chunks_tears_nothing() {
    kill_storm(64 << 10);
}

fn kill_storm(max_message_size: u32) {
    #[cfg(target_os = "linux")]
    let namespaced = shmio_testkit::root_with(&["unshare"]);
    #[cfg(not(target_os = "linux"))]
    let namespaced = false;
    let name = unique_name("topic-storm");
    let topic = Topic::options()
        .capacity(32)
        .max_message_size(max_message_size)
        .overflow(Overflow::Block)
        .create_or_open(&name)
        .unwrap();
    let start = |role: Role, id: u64| -> Child {
        let mut child = storm_spawn(role, namespaced)
            .env("TOPIC", &name)
            .env("ID", id.to_string())
            .start();
        child.wait_ready();
        child
    };
    let survivors: Vec<Child> = (0..2).map(|_| start(Role::StormSubscribe, 0)).collect();
    let mut publisher = start(Role::StormPublish, 0);
    let seed = Rng::fresh_seed();
    println!("storm seed {seed}");
    let mut rng = Rng::new(seed);
    let rounds = if cfg!(windows) { 6 } else { 24 };
    for round in 1..=rounds {
        let role = if round % 2 == 0 {
            Role::StormSubscribe
        } else {
            Role::StormPublish
        };
        let mut victim = start(role, round);
        std::thread::sleep(Duration::from_millis(5 + rng.below(40)));
        victim.kill();
        if round % 6 == 0 {
            // The long-lived publisher too, mid-stream, and a new one.
            publisher.kill();
            publisher = start(Role::StormPublish, 1000 + round);
        }
    }
    publisher.kill();
    topic
        .publish_timeout(&storm_message(STORM_END, 0), LIMIT)
        .unwrap();
    for survivor in survivors {
        let done = survivor.finish();
        done.assert_success("a surviving subscriber");
        let text = done.stdout_text();
        let received: u64 = text
            .split("storm survived: ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count in {text:?}"));
        println!("a survivor received {received} messages (namespaced: {namespaced})");
        assert!(received > 0, "messages flowed during the storm");
    }
    drop(topic);
    assert!(!shm_entry_exists(&name), "no name left once all have gone");
}

/// Participants that share one handle (the topic's publisher and its
/// subscriptions share a mapping) are each their own: a publisher never
/// takes a live subscription of its own process for a dead one.
#[test]
fn subscriptions_of_one_handle_are_each_their_own() {
    let name = unique_name("topic-one-handle");
    let topic = Topic::options()
        .capacity(4)
        .max_message_size(16)
        .overflow(Overflow::Block)
        .create_or_open(&name)
        .unwrap();
    let mut first = topic.subscribe().unwrap();
    let mut second = topic.subscribe().unwrap();
    for n in 0..4 {
        topic.publish(&message(0, n)).unwrap();
    }
    for _ in 0..3 {
        assert!(matches!(
            topic.try_publish(&message(0, 4)),
            Err(Error::Full)
        ));
    }
    assert_eq!(topic.subscribers(), 2, "neither taken for dead");
    for n in 0..4 {
        assert_eq!(parse(&first.recv().unwrap()), (0, n));
    }
    assert!(
        matches!(topic.try_publish(&message(0, 4)), Err(Error::Full)),
        "the second still holds it"
    );
    assert_eq!(parse(&second.recv().unwrap()), (0, 0));
    topic.try_publish(&message(0, 4)).unwrap();
    for n in 1..5 {
        assert_eq!(parse(&second.recv().unwrap()), (0, n));
    }
    assert_eq!(parse(&first.recv().unwrap()), (0, 4));
}
