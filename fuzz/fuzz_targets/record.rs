//! Record framing and decoding on arbitrary bytes: reading a record anywhere
//! gives a value or a typed error, never a panic, and leaves the cursor
//! where the rules say; any JSON value built from the input round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Number, Value};
use shmio::{Error, Mapping, RECORD_HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (control, memory) = data.split_at(2);
    read_anywhere(control, memory);
    round_trip(data);
});

/// Reads a record at offsets picked by `control` over a mapping holding `memory`.
fn read_anywhere(control: &[u8], memory: &[u8]) {
    let Ok(mut map) = Mapping::anonymous(memory.len().max(1) as u64) else {
        return;
    };
    map.write_at(0, memory).unwrap();
    let len = map.len();
    let offsets = [
        0,
        u64::from(control[0]),
        len.saturating_sub(u64::from(control[1])),
        len,
        len + 1,
        u64::MAX - u64::from(control[1]),
    ];
    for offset in offsets {
        map.set_position(offset);
        match map.read_record::<Value>() {
            Ok(Some(_)) => {
                let claimed =
                    u32::from_le_bytes(memory[offset as usize..][..4].try_into().unwrap());
                assert!(claimed > 0);
                assert_eq!(
                    map.position(),
                    offset + RECORD_HEADER_LEN + u64::from(claimed)
                );
                assert!(map.position() <= len);
            }
            Ok(None) => {
                assert_eq!(&memory[offset as usize..][..4], &[0; 4]);
                assert_eq!(map.position(), offset);
            }
            Err(Error::UnexpectedEof { .. }) => {
                assert!(offset
                    .checked_add(RECORD_HEADER_LEN)
                    .is_none_or(|end| end > len));
                assert_eq!(map.position(), offset);
            }
            Err(Error::Corrupt { .. } | Error::Decode { .. }) => {
                assert_eq!(map.position(), offset);
            }
            Err(other) => panic!("record at {offset} of {len}: unexpected {other:?}"),
        }
    }
}

/// A JSON value built from `data` survives a write and a read.
fn round_trip(data: &[u8]) {
    let mut input = data;
    let value = build(&mut input, 0);
    let mut buf = Vec::new();
    if serde_json::to_writer(&mut buf, &value).is_err() {
        return;
    }
    let frame_len = RECORD_HEADER_LEN + buf.len() as u64;
    let Ok(mut map) = Mapping::anonymous(frame_len) else {
        return;
    };
    assert_eq!(map.write_record(&value).unwrap(), frame_len);
    assert_eq!(
        map.position(),
        frame_len,
        "the record exactly fills the mapping"
    );
    map.set_position(0);
    let back: Value = map.read_record().unwrap().expect("a record");
    assert_eq!(back, value);
    assert_eq!(map.position(), frame_len);
    // Once more where it does not fit: nothing written, cursor unchanged.
    map.set_position(1);
    assert!(matches!(
        map.write_record(&value),
        Err(Error::OutOfBounds { .. })
    ));
    assert_eq!(map.position(), 1);
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> &'a [u8] {
    let n = n.min(input.len());
    let (head, tail) = input.split_at(n);
    *input = tail;
    head
}

fn byte(input: &mut &[u8]) -> u8 {
    take(input, 1).first().copied().unwrap_or(0)
}

fn word(input: &mut &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    let got = take(input, 8);
    bytes[..got.len()].copy_from_slice(got);
    u64::from_le_bytes(bytes)
}

fn build(input: &mut &[u8], depth: u32) -> Value {
    let kind = if depth > 6 {
        byte(input) % 6
    } else {
        byte(input) % 8
    };
    match kind {
        0 => Value::Null,
        1 => Value::Bool(byte(input) & 1 == 1),
        2 => Value::Number(Number::from(word(input) as i64)),
        3 => Value::Number(Number::from(word(input))),
        4 => Number::from_f64(f64::from_bits(word(input))).map_or(Value::Null, Value::Number),
        5 => {
            let n = usize::from(byte(input) % 32);
            Value::String(String::from_utf8_lossy(take(input, n)).into_owned())
        }
        6 => {
            let n = byte(input) % 5;
            Value::Array((0..n).map(|_| build(input, depth + 1)).collect())
        }
        _ => {
            let n = byte(input) % 5;
            let mut object = Map::new();
            for _ in 0..n {
                let k = usize::from(byte(input) % 8);
                let key = String::from_utf8_lossy(take(input, k)).into_owned();
                object.insert(key, build(input, depth + 1));
            }
            Value::Object(object)
        }
    }
}
