//! Hostile peers: a process that scribbles over a channel's header and
//! slots, and one that truncates the file under a file-backed mapping.
//!
//! What shmio promises (and these tests hold it to): a user of a scribbled
//! channel gets messages, garbage messages, or errors, and never a crash, a
//! hang, or an access outside the mapping; a receiver never gets more bytes
//! than the channel's largest message. Truncation is the one thing a mapping
//! cannot survive on Unix: touching a page past the new end of the file is
//! `SIGBUS`. The test shows it, and that anonymous mappings (sealed memfds
//! on Linux) cannot be shrunk by anyone.

use std::time::{Duration, Instant};

use shmio::{Channel, ChannelGeometry, Error, Mapping};
use shmio_testkit::{arg, unique_name, Rng};

const LIMIT: Duration = Duration::from_secs(120);
/// How long the scribbler and its victims run.
const SCRIBBLE_FOR: Duration = Duration::from_secs(2);
const OPTIONS: ChannelGeometry = ChannelGeometry {
    capacity: 8,
    max_message_size: 64,
};

shmio_testkit::roles! {
    Scribble => child_scribble(),
    Victim => child_victim(),
    // One blocking call each on a channel a peer made impossible.
    Send => child_blocked_call(Call::Send),
    Recv => child_blocked_call(Call::Recv),
    SendTimeout => child_blocked_call(Call::SendTimeout),
    RecvTimeout => child_blocked_call(Call::RecvTimeout),
    SendNow => child_blocked_call(Call::SendNow),
    RecvNow => child_blocked_call(Call::RecvNow),
    #[cfg(unix)]
    TouchTruncated => child_touch_truncated(),
}

#[test]
fn a_scribbled_channel_never_crashes_or_hangs_its_users() {
    let name = unique_name("hostile-channel");
    let channel = Channel::create_or_open(&name, OPTIONS).unwrap();
    let mut victims: Vec<_> = (0..2)
        .map(|_| Role::Victim.spawn().env("NAME", &name).limit(LIMIT).start())
        .collect();
    // The victims open the channel before anyone scribbles on it.
    for victim in &mut victims {
        victim.wait_ready();
    }
    let mut scribbler = Role::Scribble
        .spawn()
        .env("NAME", &name)
        .limit(LIMIT)
        .start();
    assert!(scribbler.wait().success(), "the scribbler");
    for victim in &mut victims {
        let status = victim.wait();
        assert!(
            status.success(),
            "a victim of the scribbler died or failed: {status}"
        );
    }
    // The scribbled channel may now refuse to open, or open: never worse.
    match Channel::open(&name) {
        Ok(_) | Err(Error::WrongKind { .. } | Error::Corrupt { .. } | Error::NotReady { .. }) => {}
        Err(other) => panic!("unexpected error opening a scribbled channel: {other:?}"),
    }
    drop(channel);
    // Other channels were never touched.
    let fresh = Channel::create_or_open(&unique_name("hostile-fresh"), OPTIONS).unwrap();
    fresh.send(b"still fine").unwrap();
    assert_eq!(fresh.recv().unwrap(), b"still fine");
}

/// Writes random bytes over the channel's mapping: mostly the header and
/// the slot headers (state, length), sometimes payloads, for SCRIBBLE_FOR.
fn child_scribble() {
    let map = Mapping::options()
        .any_kind(true)
        .open(&arg("NAME"))
        .unwrap();
    let len = map.len();
    let stride = shmio::fuzzing::channel_stride(64);
    let slots = shmio::fuzzing::CHANNEL_SLOTS;
    let mut rng = Rng::new(Rng::fresh_seed());
    let start = Instant::now();
    let mut writes = 0u64;
    while start.elapsed() < SCRIBBLE_FOR {
        let offset = match rng.below(4) {
            0 => rng.below(slots),
            1 | 2 => slots + rng.below(8) * stride + rng.below(2) * 8,
            _ => rng.below(len - 8),
        } & !7;
        let value = match rng.below(4) {
            0 => 0,
            1 => rng.below(16),
            2 => u64::MAX - rng.below(16),
            _ => rng.next_u64(),
        };
        map.write_value_at(offset, &value).unwrap();
        writes += 1;
        if writes.is_multiple_of(64) {
            std::thread::yield_now();
        }
    }
    eprintln!("scribbler: {writes} writes");
}

/// Sends and receives on the channel while it is scribbled on: every call
/// must return (bounded), and a received message is never longer than the
/// channel's largest.
fn child_victim() {
    let channel = Channel::open(&arg("NAME")).unwrap();
    shmio_testkit::ready();
    let start = Instant::now();
    let (mut sent, mut received, mut errors) = (0u64, 0u64, 0u64);
    let mut buf = Vec::new();
    while start.elapsed() < SCRIBBLE_FOR + Duration::from_millis(200) {
        let call = Instant::now();
        match channel.try_send(b"payload") {
            Ok(()) => sent += 1,
            Err(Error::Full) => {}
            Err(_) => errors += 1,
        }
        match channel.try_recv_into(&mut buf) {
            Ok(()) => {
                assert!(buf.len() <= OPTIONS.max_message_size as usize);
                received += 1;
            }
            Err(Error::Empty) => {}
            Err(_) => errors += 1,
        }
        match channel.send_timeout(b"timed", Duration::from_millis(1)) {
            Ok(()) => sent += 1,
            Err(_) => errors += 1,
        }
        match channel.recv_timeout(Duration::from_millis(1)) {
            Ok(message) => {
                assert!(message.len() <= OPTIONS.max_message_size as usize);
                received += 1;
            }
            Err(_) => errors += 1,
        }
        assert!(
            call.elapsed() < Duration::from_secs(5),
            "a call on a scribbled channel hung for {:?}",
            call.elapsed()
        );
    }
    eprintln!("victim: {sent} sent, {received} received, {errors} errors");
}

/// How long a call on an impossible ring may take to say so (it spins
/// briefly, then checks before its first sleep): a child still running
/// after this hung, and is killed.
const CORRUPT_WITHIN: Duration = Duration::from_secs(20);

/// A peer scribbled a channel's positions or a slot into a state no
/// healthy channel reaches, where senders or receivers would wait forever:
/// a blocking `send` or `recv` without a timeout, in another process,
/// returns `Corrupt` instead (it used to hang), and so does one with a
/// timeout, long or zero, rather than `TimedOut`.
#[test]
fn a_blocking_call_on_an_impossible_ring_is_corrupt_not_a_hang() {
    let capacity = u64::from(OPTIONS.capacity);
    // ring.rs's layout: the positions, slot 0's state (sequence << 32 |
    // owner) where the slots start.
    let (enqueue, dequeue, slot0) = (
        shmio::fuzzing::CHANNEL_ENQUEUE,
        shmio::fuzzing::CHANNEL_DEQUEUE,
        shmio::fuzzing::CHANNEL_SLOTS,
    );
    // Slot 0 holding the message of position -capacity (the last lap's).
    let last_laps_message = u64::from((2 * capacity as u32).wrapping_neg() + 1) << 32;
    let all = [
        Role::Send,
        Role::Recv,
        Role::SendTimeout,
        Role::RecvTimeout,
        Role::SendNow,
        Role::RecvNow,
    ];
    let scribbles: [(&str, u64, u64, &[Role]); 6] = [
        ("enqueue far ahead", enqueue, 1000, &all),
        (
            "enqueue capacity + 2 ahead",
            enqueue,
            capacity + 2,
            &[Role::Send, Role::Recv],
        ),
        (
            "dequeue far ahead",
            dequeue,
            1000,
            &[Role::Recv, Role::RecvTimeout, Role::RecvNow],
        ),
        ("dequeue 2 ahead", dequeue, 2, &[Role::Recv]),
        (
            "the last lap's message in an empty ring",
            slot0,
            last_laps_message,
            &all,
        ),
        ("slot 0 far ahead", slot0, 2_000_000_000 << 32, &all),
    ];
    for (what, offset, value, calls) in scribbles {
        let name = unique_name("hostile-impossible");
        let channel = Channel::create_or_open(&name, OPTIONS).unwrap();
        Mapping::options()
            .any_kind(true)
            .open(&name)
            .unwrap()
            .write_value_at(offset, &value)
            .unwrap();
        for call in calls {
            let status = call
                .spawn()
                .env("NAME", &name)
                .limit(CORRUPT_WITHIN)
                .start()
                .wait();
            assert!(status.success(), "{what}: {call:?}: {status}");
        }
        drop(channel);
    }
}

/// A blocking call on a channel: with no timeout, a long one, or none.
#[derive(Clone, Copy, Debug)]
enum Call {
    Send,
    Recv,
    SendTimeout,
    RecvTimeout,
    SendNow,
    RecvNow,
}

/// Makes one blocking `call` on the channel NAME, which a peer made
/// impossible: it must be `Corrupt`, naming the channel.
fn child_blocked_call(call: Call) {
    let name = arg("NAME");
    let channel = Channel::open(&name).unwrap();
    let start = Instant::now();
    let result = match call {
        Call::Send => channel.send(b"x"),
        Call::Recv => channel.recv().map(drop),
        Call::SendTimeout => channel.send_timeout(b"x", Duration::from_secs(60)),
        Call::RecvTimeout => channel.recv_timeout(Duration::from_secs(60)).map(drop),
        Call::SendNow => channel.send_timeout(b"x", Duration::ZERO),
        Call::RecvNow => channel.recv_timeout(Duration::ZERO).map(drop),
    };
    match result {
        Err(Error::Corrupt { reason, .. }) => {
            assert!(reason.contains(&format!("{name:?}")), "{reason}");
            eprintln!("{call:?}: Corrupt after {:?}: {reason}", start.elapsed());
        }
        other => panic!("{call:?}: expected Corrupt, got {other:?}"),
    }
}

/// A file-backed mapping whose file another process truncates: touching
/// the lost pages is SIGBUS, the documented risk.
#[cfg(unix)]
#[test]
fn touching_a_truncated_file_mapping_is_sigbus() {
    use std::os::unix::process::ExitStatusExt;
    let dir = std::env::temp_dir().join(unique_name("hostile-file"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("backing");
    std::fs::write(&path, vec![7u8; 64 * 1024]).unwrap();
    let status = Role::TouchTruncated
        .spawn()
        .env("FILE", &path)
        .limit(LIMIT)
        .start()
        .wait();
    assert_eq!(
        status.signal(),
        Some(libc::SIGBUS),
        "the page past the new end: {status}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(unix)]
fn child_touch_truncated() {
    let path = arg("FILE");
    let map = Mapping::options().file(&path).map_file().unwrap();
    assert_eq!(map.read_value_at::<u8>(60 * 1024).unwrap(), 7);
    // Another process (here: this one, through the file) shrinks the file.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(4096)
        .unwrap();
    // Still inside the mapping, still inside the file: fine.
    assert_eq!(map.read_value_at::<u8>(100).unwrap(), 7);
    // Inside the mapping, past the file: the kernel sends SIGBUS.
    let _ = map.read_value_at::<u8>(60 * 1024);
    unreachable!("SIGBUS expected");
}

/// An anonymous mapping is a sealed memfd on Linux: a process holding its
/// descriptor cannot shrink it, so no peer can make its pages vanish.
#[cfg(target_os = "linux")]
#[test]
fn an_anonymous_mapping_cannot_be_shrunk_by_a_peer() {
    use std::os::fd::AsFd;
    let map = Mapping::anonymous(64 * 1024).unwrap();
    map.write_value_at(60 * 1024, &9u8).unwrap();
    let peer = std::fs::File::from(map.as_fd().try_clone_to_owned().unwrap());
    let error = peer.set_len(0).expect_err("shrinking a sealed memfd");
    assert_eq!(error.raw_os_error(), Some(libc::EPERM));
    assert_eq!(map.read_value_at::<u8>(60 * 1024).unwrap(), 9);
    // Growing it is refused too, so its length never changes under anyone.
    assert!(peer.set_len(128 * 1024).is_err());
}

/// Positions a peer set to the end of the u64 range wrap rather than
/// overflow (a debug build panicked on `pos + 1`: found by the scribble test).
#[test]
fn positions_at_the_end_of_their_range_wrap() {
    let name = unique_name("hostile-wrap");
    let channel = Channel::create_or_open(&name, OPTIONS).unwrap();
    let peer = Mapping::options().any_kind(true).open(&name).unwrap();
    peer.write_value_at(shmio::fuzzing::CHANNEL_ENQUEUE, &u64::MAX)
        .unwrap();
    peer.write_value_at(shmio::fuzzing::CHANNEL_DEQUEUE, &u64::MAX)
        .unwrap();
    for _ in 0..3 * OPTIONS.capacity {
        match channel.try_send(b"x") {
            Ok(()) | Err(Error::Full) => {}
            Err(other) => panic!("{other:?}"),
        }
        match channel.try_recv() {
            Ok(message) => assert!(message.len() <= OPTIONS.max_message_size as usize),
            Err(Error::Empty | Error::Corrupt { .. }) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
}
