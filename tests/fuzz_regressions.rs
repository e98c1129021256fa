//! Inputs the fuzz targets in `fuzz/` once failed on, replayed in the normal
//! test suite. Each test names its target and what went wrong.

use std::time::Duration;

use shmio::fuzzing::{channel_image, channel_over};
use shmio::{ChannelGeometry, Error};

/// Runs `test` on a thread and fails if it has not finished in 10 s (the
/// bugs below were hangs).
fn within_10s(test: impl FnOnce() + Send + 'static) {
    shmio_testkit::within("the replayed input", Duration::from_secs(10), test)
}

/// Target `channel`, a timeout: a fresh channel (capacity 3, messages of 2
/// bytes) whose `dequeue` word was overwritten. Every slot was then ahead of
/// the dequeue position's turn, and `try_recv` spun forever waiting for the
/// position to move (the same loop as after a receiver died between claiming
/// its slot and moving the position on). Now receivers help the position on,
/// and a slot further ahead than any claimer could take it reads as empty.
#[test]
fn channel_with_a_garbage_dequeue_position_does_not_hang() {
    within_10s(|| {
        let options = ChannelGeometry {
            capacity: 3,
            max_message_size: 2,
        };
        let mut image = channel_image(options).unwrap();
        let at = shmio::fuzzing::CHANNEL_DEQUEUE as usize;
        image[at..at + 4].copy_from_slice(&0x560A_2A00u32.to_le_bytes());
        let channel = channel_over(&image, image.len() as u64).unwrap();
        channel.try_send(b"hi").unwrap();
        for _ in 0..4 {
            match channel.try_recv() {
                Ok(message) => assert!(message.len() <= 2),
                Err(Error::Empty | Error::Corrupt { .. }) => {}
                Err(other) => panic!("{other:?}"),
            }
        }
    });
}

/// The same spin on the sending side: `enqueue` overwritten with a
/// position whose slot is already 2 × capacity half-steps on (as after a
/// sender died before moving the position on, and its tombstone was
/// received and released). Senders now help the position on and send.
#[test]
fn channel_with_a_garbage_enqueue_position_does_not_hang() {
    within_10s(|| {
        let options = ChannelGeometry {
            capacity: 2,
            max_message_size: 8,
        };
        let mut image = channel_image(options).unwrap();
        let at = shmio::fuzzing::CHANNEL_ENQUEUE as usize;
        image[at..at + 8].copy_from_slice(&0xFFFF_FFFFu64.to_le_bytes());
        let channel = channel_over(&image, image.len() as u64).unwrap();
        channel.try_send(b"message").unwrap();
        for _ in 0..4 {
            match channel.try_send(b"message") {
                Ok(()) | Err(Error::Full) => {}
                Err(other) => panic!("{other:?}"),
            }
        }
    });
}

/// The exact input the fuzzer saved, replayed through the target's decoding.
#[test]
fn fuzz_channel_timeout_72c2396c() {
    within_10s(|| {
        // mode 3, capacity 1 + 10 % 8, max 1 + 0x5601 % 512; no cut; one
        // patch: word 0x4D40 % 144 (then at offset 192, dequeue) = 0x560A2A00; then
        // send (max bytes) and receive. (The header has grown since, by the
        // participants' generations, so the saved word index now lands
        // elsewhere: the patch is replayed at the offset it hit.)
        let options = ChannelGeometry {
            capacity: 3,
            max_message_size: 2,
        };
        let mut image = channel_image(options).unwrap();
        let at = shmio::fuzzing::CHANNEL_DEQUEUE as usize;
        image[at..at + 4].copy_from_slice(&u32::from_le_bytes([0, 42, 10, 86]).to_le_bytes());
        let channel = channel_over(&image, image.len() as u64).unwrap();
        let _ = channel.try_send(&[1, 2]);
        let _ = channel.try_recv();
        let _ = channel.try_recv();
    });
}

/// Target `record`, a failed round trip: the f64 8.411357779754067e-308,
/// written as a record, read back one unit in the last place off
/// (8.411357779754066e-308). serde_json's default float parser is fast but
/// not always exact; shmio now turns on its `float_roundtrip` feature, so
/// every finite f64 a record holds reads back bit for bit.
#[test]
fn record_floats_round_trip_exactly() {
    use shmio::Mapping;

    let mut map = Mapping::anonymous(4096).unwrap();
    let values = [
        8.411357779754067e-308,
        f64::MIN_POSITIVE,
        5e-324,
        f64::MAX,
        0.1 + 0.2,
        -1.0 / 3.0,
        1e23,
    ];
    for value in values {
        map.set_position(0);
        map.write_record(&value).unwrap();
        map.set_position(0);
        let back: f64 = map.read_record().unwrap().unwrap();
        assert_eq!(
            back.to_bits(),
            value.to_bits(),
            "{value:e} came back as {back:e}"
        );
    }
    let json = serde_json::json!({ "x": [8.411357779754067e-308, 2.2250738585072014e-308] });
    map.set_position(0);
    map.write_record(&json).unwrap();
    map.set_position(0);
    assert_eq!(map.read_record::<serde_json::Value>().unwrap(), Some(json));
}
