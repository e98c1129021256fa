//! The cursor of a Mapping against a `Vec<u8>` model of the rules at the
//! top of `src/io.rs`: `read` is short or 0 at the end; exact reads past the
//! end are `UnexpectedEof`; writes that do not fit write nothing and fail;
//! the cursor never moves on an error; seeking before 0 (or past u64::MAX)
//! fails, past the end is allowed.
#![no_main]

use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};

use libfuzzer_sys::fuzz_target;
use shmio::{Error, Mapping};

struct Model {
    bytes: Vec<u8>,
    cursor: u64,
}

impl Model {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// The index range of `n` bytes at the cursor, if they lie inside.
    fn span(&self, n: usize) -> Option<std::ops::Range<usize>> {
        let end = self.cursor.checked_add(n as u64)?;
        (end <= self.len()).then(|| self.cursor as usize..end as usize)
    }

    fn read(&mut self, n: usize) -> Vec<u8> {
        let start = self.cursor.min(self.len()) as usize;
        let end = start + n.min(self.bytes.len() - start);
        self.cursor += (end - start) as u64;
        self.bytes[start..end].to_vec()
    }

    fn read_exact(&mut self, n: usize) -> Option<Vec<u8>> {
        let span = self.span(n)?;
        self.cursor += n as u64;
        Some(self.bytes[span].to_vec())
    }

    fn write(&mut self, data: &[u8]) -> bool {
        let Some(span) = self.span(data.len()) else {
            return false;
        };
        self.bytes[span].copy_from_slice(data);
        self.cursor += data.len() as u64;
        true
    }

    fn seek(&mut self, from: SeekFrom) -> Option<u64> {
        let target = match from {
            SeekFrom::Start(at) => Some(at),
            SeekFrom::Current(delta) => self.cursor.checked_add_signed(delta),
            SeekFrom::End(delta) => self.len().checked_add_signed(delta),
        }?;
        self.cursor = target;
        Some(target)
    }
}

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let (&first, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        first
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        for b in &mut bytes {
            *b = self.byte();
        }
        u64::from_le_bytes(bytes)
    }

    /// An offset or length: small, near the size, or anywhere.
    fn amount(&mut self, size: u64) -> u64 {
        match self.byte() % 4 {
            0 => u64::from(self.byte()),
            1 => size.wrapping_add(u64::from(self.byte())).wrapping_sub(128),
            2 => u64::from(self.u16()),
            _ => self.u64(),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let size = u64::from(input.u16()).max(1);
    let Ok(mut map) = Mapping::anonymous(size) else {
        return;
    };
    let len = map.len();
    assert_eq!(len, size);
    let mut model = Model {
        bytes: vec![0; len as usize],
        cursor: 0,
    };
    let mut steps = 0;
    while !input.0.is_empty() && steps < 256 {
        steps += 1;
        let op = input.byte() % 12;
        let before = map.position();
        assert_eq!(before, model.cursor);
        match op {
            0 | 1 | 2 => {
                let amount = input.amount(len) as i64;
                let from = match op {
                    0 => SeekFrom::Start(amount as u64),
                    1 => SeekFrom::Current(amount),
                    _ => SeekFrom::End(amount),
                };
                match (map.seek(from), model.seek(from)) {
                    (Ok(at), Some(expected)) => assert_eq!(at, expected),
                    (Err(e), None) => assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}"),
                    (got, expected) => {
                        panic!("seek {from:?} from {before}: {got:?} vs {expected:?}")
                    }
                }
            }
            3 => {
                let n = (input.amount(len) % 70_000) as usize;
                let mut buf = vec![0xA5; n];
                let got = map.read(&mut buf).unwrap();
                let expected = model.read(n);
                assert_eq!(&buf[..got], &expected[..]);
                assert!(
                    buf[got..].iter().all(|&b| b == 0xA5),
                    "read wrote past what it returned"
                );
            }
            4 => {
                let n = (input.amount(len) % 70_000) as usize;
                let mut buf = vec![0u8; n];
                match (map.read_exact(&mut buf), model.read_exact(n)) {
                    (Ok(()), Some(expected)) => assert_eq!(buf, expected),
                    (Err(e), None) => assert_eq!(e.kind(), ErrorKind::UnexpectedEof),
                    (got, expected) => {
                        panic!("read_exact {n} at {before}: {got:?} vs {expected:?}")
                    }
                }
            }
            5 | 6 => {
                let n = (input.amount(len) % 70_000) as usize;
                let fill = input.byte();
                let data: Vec<u8> = (0..n).map(|i| fill.wrapping_add(i as u8)).collect();
                let got = if op == 5 {
                    map.write(&data).map(|written| assert_eq!(written, n))
                } else {
                    map.write_all(&data)
                };
                match (got, model.write(&data)) {
                    (Ok(()), true) => {}
                    (Err(e), false) => assert_eq!(e.kind(), ErrorKind::WriteZero),
                    (got, expected) => panic!("write {n} at {before}: {got:?} vs {expected}"),
                }
            }
            7 => match (map.read_value::<u32>(), model.read_exact(4)) {
                (Ok(v), Some(expected)) => assert_eq!(v.to_ne_bytes().to_vec(), expected),
                (Err(Error::UnexpectedEof { .. }), None) => {}
                (got, expected) => panic!("read_value u32 at {before}: {got:?} vs {expected:?}"),
            },
            8 => match (map.read_value::<u64>(), model.read_exact(8)) {
                (Ok(v), Some(expected)) => assert_eq!(v.to_ne_bytes().to_vec(), expected),
                (Err(Error::UnexpectedEof { .. }), None) => {}
                (got, expected) => panic!("read_value u64 at {before}: {got:?} vs {expected:?}"),
            },
            9 => {
                let value = input.u64();
                match (map.write_value(&value), model.write(&value.to_ne_bytes())) {
                    (Ok(()), true) => {}
                    (Err(Error::OutOfBounds { .. }), false) => {}
                    (got, expected) => panic!("write_value at {before}: {got:?} vs {expected}"),
                }
            }
            10 => {
                let n = (input.amount(len) % 70_000) as usize;
                match (map.read_bytes(n), model.read_exact(n)) {
                    (Ok(got), Some(expected)) => assert_eq!(got, expected),
                    (Err(Error::UnexpectedEof { .. }), None) => {}
                    (got, expected) => {
                        panic!("read_bytes {n} at {before}: {got:?} vs {expected:?}")
                    }
                }
            }
            _ => {
                let at = input.amount(len);
                map.set_position(at);
                model.cursor = at;
                assert_eq!(map.stream_position().unwrap(), at);
                let (low, high) = map.position32();
                assert_eq!(u64::from(low) | (u64::from(high) << 32), at);
            }
        }
        assert_eq!(map.position(), model.cursor, "after op {op} from {before}");
    }
    // The memory matches the model at the end.
    let mut all = vec![0u8; len as usize];
    map.read_at(0, &mut all).unwrap();
    assert!(
        all == model.bytes,
        "the mapping's bytes differ from the model's"
    );
});
