//! A channel over an arbitrary header and slot contents, then a sequence of
//! try_send / try_recv / try_recv_into: only typed errors or messages no
//! longer than the channel's limit, never a panic, a hang or an access
//! outside the mapping. Over a well-formed fresh channel the results must
//! match a FIFO model exactly.
#![no_main]

use std::collections::VecDeque;

use libfuzzer_sys::fuzz_target;
use shmio::fuzzing::{channel_image, channel_over};
use shmio::{ChannelGeometry, Error};

struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        let (&first, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        first
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.0.split_at(n.min(self.0.len()));
        self.0 = tail;
        head
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mode = input.byte() % 4;
    // The image and mapping length, and whether the model applies.
    let (image, len, model_capacity) = match mode {
        // Raw bytes over everything, header included.
        0 => {
            let len = u64::from(input.u16());
            let n = usize::from(input.u16());
            (input.take(n).to_vec(), len, None)
        }
        // A valid segment header, then raw bytes (geometry, positions, slots).
        1 => {
            let mut image = channel_image(ChannelGeometry {
                capacity: 1,
                max_message_size: 1,
            })
            .unwrap();
            image.truncate(16);
            let len = u64::from(input.u16());
            let n = usize::from(input.u16());
            image.extend_from_slice(input.take(n));
            (image, len, None)
        }
        // A fresh channel, maybe cut short, maybe with words overwritten.
        _ => {
            let options = ChannelGeometry {
                capacity: 1 + u32::from(input.byte() % 8),
                max_message_size: 1 + u32::from(input.u16() % 512),
            };
            let mut image = channel_image(options).unwrap();
            let mut len = image.len() as u64;
            let mut pristine = true;
            if mode == 3 {
                let cut = u64::from(input.byte() % 4 == 0) * u64::from(input.byte());
                len -= cut.min(len);
                for _ in 0..input.byte() % 8 {
                    let words = image.len() / 4;
                    let at = usize::from(input.u16()) % words * 4;
                    image[at..at + 4].copy_from_slice(&input.u32().to_le_bytes());
                }
                pristine = false;
            }
            (image, len, pristine.then_some(options.capacity as usize))
        }
    };
    let channel = match channel_over(&image, len) {
        Ok(channel) => channel,
        Err(
            Error::WrongKind { .. }
            | Error::NotReady { .. }
            | Error::Corrupt { .. }
            | Error::UnexpectedEof { .. }
            | Error::InvalidSize { .. },
        ) => {
            assert!(model_capacity.is_none(), "a fresh channel must open");
            return;
        }
        Err(other) => panic!("opening: unexpected {other:?}"),
    };
    let max = channel.geometry().max_message_size as usize;
    let mut model: VecDeque<Vec<u8>> = VecDeque::new();
    let mut buf = Vec::new();
    let mut sent = 0u8;
    let mut steps = 0;
    while !input.0.is_empty() && steps < 512 {
        steps += 1;
        match input.byte() % 4 {
            0 | 1 => {
                let n = match input.byte() % 4 {
                    0 => max,
                    1 => max + 1,
                    _ => usize::from(input.u16()) % (max + 8),
                };
                sent = sent.wrapping_add(1);
                let message: Vec<u8> = (0..n).map(|i| sent.wrapping_add(i as u8)).collect();
                let got = channel.try_send(&message);
                match (&got, model_capacity) {
                    (Err(Error::MessageTooLarge { .. }), _) if n > max => {}
                    (_, _) if n > max => panic!("{n} bytes > {max}: {got:?}"),
                    (Ok(()), Some(capacity)) if model.len() < capacity => model.push_back(message),
                    (Err(Error::Full), Some(capacity)) if model.len() == capacity => {}
                    (_, Some(capacity)) => {
                        panic!("send with {} of {capacity}: {got:?}", model.len())
                    }
                    (Ok(()) | Err(Error::Full), None) => {}
                    (Err(other), None) => panic!("send: unexpected {other:?}"),
                }
            }
            op => {
                let got = if op == 2 {
                    channel.try_recv()
                } else {
                    buf.clear();
                    buf.extend(std::iter::repeat_n(0xEE, usize::from(input.byte())));
                    channel.try_recv_into(&mut buf).map(|()| buf.clone())
                };
                match (got, model_capacity) {
                    (Ok(message), Some(_)) => {
                        assert_eq!(Some(message), model.pop_front(), "FIFO")
                    }
                    (Err(Error::Empty), Some(_)) => assert!(model.is_empty(), "lost messages"),
                    (Ok(message), None) => assert!(message.len() <= max),
                    (Err(Error::Empty | Error::Corrupt { .. }), None) => {}
                    (other, _) => panic!("recv: unexpected {other:?}"),
                }
            }
        }
    }
});
