//! The bus's messages, as they travel through a member's inbox (a
//! [`crate::Channel`]): a small fixed header, then the command's name and
//! the arguments or the reply as JSON (the crate's record codec). Nothing
//! here is ever executed: a message is only decoded, and a message that
//! does not decode is dropped by whoever reads it.
//!
//! The header, [`WireHeader`] (little-endian), then the body:
//!
//! | offset | field | request, post | reply |
//! |---|---|---|---|
//! | 0 | `kind: u8` | 1 request, 2 post | 3 |
//! | 1 | `status: u8` | 0 | 0 no reply, 1 a reply, 2 handler error, 3 listener gone |
//! | 2 | `command_len: u16` | the command's length | 0 |
//! | 4 | `from: u32` | the sender's token | the replier's token |
//! | 8 | `id: u64` | the request id (0 for a post) | the request id |
//! | 16 | `listener: u64` | the listener it is for | 0 |
//! | 24 | `due: u64` | when the caller gives up (ms on the host's monotonic clock; 0 for none, and for a post) | 0 |
//! | 32.. | | the command, then the arguments | the reply, or the error's text |
//!
//! A stop (kind 4) is one byte: it wakes a member's own dispatch thread to
//! let it see that the member is leaving.
//!
//! A message larger than the receiver's inbox slots travels *spilled*: its
//! bytes are in a mapping of their own, `GROUP@big.T.N` (the sender's
//! token `T` and its spill number `N`, in hex), and the inbox carries only
//! a 32-byte message of kind 5, [`Spilled`] (little-endian):
//!
//! | offset | field | |
//! |---|---|---|
//! | 0 | `kind: u8` | 5 |
//! | 1 | 3 bytes | 0 |
//! | 4 | `from: u32` | the sender's token `T` |
//! | 8 | `spill: u64` | `N` |
//! | 16 | `len: u64` | the message's length |
//! | 24 | 8 bytes | 0 |
//! | 32 | the end: nothing follows | |
//!
//! The mapping starts with [`SpillHeader`], and the message follows it:
//!
//! | offset | field | |
//! |---|---|---|
//! | 0 | `taken: u32` | 0, then 1 once the receiver has taken the message (an atomic store) |
//! | 4 | 4 bytes | spare |
//! | 8.. | the message | |
//!
//! The receiver removes the mapping's name when it has read it; the sender
//! lets go of it when it sees it taken (or gives up on it).

use std::mem::offset_of;

use serde::Serialize;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::Result;
use crate::mapping::record;

/// The header of a request, a post or a reply (see the module docs).
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct WireHeader {
    kind: u8,
    status: u8,
    command_len: U16,
    from: U32,
    id: U64,
    listener: U64,
    due: U64,
}

/// What the inbox carries for a spilled message: the whole of it (see the
/// module docs).
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct Spilled {
    kind: u8,
    _pad_kind: [u8; 3],
    from: U32,
    spill: U64,
    len: U64,
    _pad_end: [u8; 8],
}

/// The start of a spilled message's mapping: a description of the bytes,
/// whose `taken` word is reached as an atomic at [`SPILL_TAKEN`].
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub(crate) struct SpillHeader {
    pub(crate) taken: u32,
    _spare: [u8; 4],
}

/// Bytes before a message's command and payload.
pub(crate) const HEADER: usize = size_of::<WireHeader>();

const REQUEST: u8 = 1;
const POST: u8 = 2;
const REPLY: u8 = 3;
const STOP: u8 = 4;
const SPILLED: u8 = 5;

/// Bytes before a spilled message in its mapping.
pub(crate) const SPILL_HEADER: u64 = size_of::<SpillHeader>() as u64;
/// Where a spilled message's taken flag (a `u32`: 1 once taken) is.
pub(crate) const SPILL_TAKEN: u64 = offset_of!(SpillHeader, taken) as u64;

// The wire format: changing a size here breaks every member of another
// build. A spilled message is exactly a header's size, which is how the
// inbox tells it from a request.
const _: () = assert!(HEADER == 32 && size_of::<Spilled>() == HEADER && SPILL_HEADER == 8);

/// What a listener said to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// No reply: the next listener is asked (aardio's `null`).
    Pass,
    /// A reply, as JSON.
    Reply(Vec<u8>),
    /// The handler failed or panicked; why.
    Failed(String),
    /// The listener was no longer there (it was dropped meanwhile).
    Gone,
}

/// A message read from an inbox.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Message {
    /// A call to one listener, which answers with a [`Message::Reply`].
    Request(Request),
    /// A call to one listener that wants no reply.
    Post(Request),
    /// The answer to the request `id`.
    Reply {
        id: u64,
        from: u32,
        outcome: Outcome,
    },
    /// Wake up: the member is leaving.
    Stop,
    /// A message of `len` bytes in the mapping the member `from` spilled
    /// it to, its `spill`th.
    Spilled { from: u32, spill: u64, len: u64 },
}

/// A request or a post, for the listener `listener` of the member it was sent to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) id: u64,
    pub(crate) from: u32,
    pub(crate) listener: u64,
    /// When the caller gives up, in ms of `sys::monotonic_ms` (0: never
    /// said).
    pub(crate) due: u64,
    /// The command's name, then the JSON arguments: one buffer.
    body: Vec<u8>,
    command_len: usize,
}

impl Request {
    /// The command's name (checked UTF-8 when decoded).
    pub(crate) fn command(&self) -> &str {
        std::str::from_utf8(&self.body[..self.command_len]).unwrap_or_default()
    }

    /// The arguments, as JSON.
    pub(crate) fn args(&self) -> &[u8] {
        &self.body[self.command_len..]
    }
}

/// The bytes of a request or post of `command` with `args` (JSON), but for
/// whom it is: [`address`] fills that in, once for each listener it goes to.
pub(crate) fn request_body<A: Serialize + ?Sized>(command: &str, args: &A) -> Result<Vec<u8>> {
    let mut message = Vec::with_capacity(HEADER + command.len() + 32);
    message.extend_from_slice(request_header(command).as_bytes());
    message.extend_from_slice(command.as_bytes());
    record::append_payload(args, &mut message)?;
    Ok(message)
}

/// The header of a request of `command`, addressed to no one yet.
fn request_header(command: &str) -> WireHeader {
    let mut header = WireHeader::new_zeroed();
    // Command names are at most `registry::MAX_COMMAND` bytes.
    header.command_len = U16::new(command.len() as u16);
    header
}

/// Makes `message` (from [`request_body`]) request `id` (a post for 0) from
/// the member `from` to the listener `listener`, its caller giving up at
/// `due` (see [`Request::due`]).
pub(crate) fn address(message: &mut [u8], id: u64, from: u32, listener: u64, due: u64) {
    let (header, _) =
        WireHeader::mut_from_prefix(message).expect("a request's message starts with a header");
    header.kind = if id == 0 { POST } else { REQUEST };
    header.from = U32::new(from);
    header.id = U64::new(id);
    header.listener = U64::new(listener);
    header.due = U64::new(due);
}

/// A request (`id` non-zero) or a post (`id` 0) of `command` with the JSON
/// `args`, from the member `from` to the listener `listener`.
#[cfg(test)]
pub(crate) fn request(id: u64, from: u32, listener: u64, command: &str, args: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(HEADER + command.len() + args.len());
    message.extend_from_slice(request_header(command).as_bytes());
    message.extend_from_slice(command.as_bytes());
    message.extend_from_slice(args);
    address(&mut message, id, from, listener, 0);
    message
}

/// The reply to request `id`, from the member `from`.
pub(crate) fn reply(id: u64, from: u32, outcome: &Outcome) -> Vec<u8> {
    let (status, body): (u8, &[u8]) = match outcome {
        Outcome::Pass => (0, &[]),
        Outcome::Reply(json) => (1, json),
        Outcome::Failed(why) => (2, why.as_bytes()),
        Outcome::Gone => (3, &[]),
    };
    let mut header = WireHeader::new_zeroed();
    header.kind = REPLY;
    header.status = status;
    header.from = U32::new(from);
    header.id = U64::new(id);
    let mut message = Vec::with_capacity(HEADER + body.len());
    message.extend_from_slice(header.as_bytes());
    message.extend_from_slice(body);
    message
}

/// What travels through the inbox for a message spilled to a mapping: the
/// member `from`'s `spill`th, of `len` bytes.
pub(crate) fn spilled(from: u32, spill: u64, len: u64) -> Vec<u8> {
    let mut message = Spilled::new_zeroed();
    message.kind = SPILLED;
    message.from = U32::new(from);
    message.spill = U64::new(spill);
    message.len = U64::new(len);
    message.as_bytes().to_vec()
}

/// The name of the mapping the member `from` spills its `spill`th
/// message of the group `group` to.
pub(crate) fn spill_name(group: &str, from: u32, spill: u64) -> String {
    crate::name::spill_name(group, from, spill)
}

/// The one-byte stop message.
pub(crate) fn stop() -> [u8; 1] {
    [STOP]
}

/// Decodes a message; `None` for bytes no member sends (a scribbler's).
pub(crate) fn decode(bytes: &[u8]) -> Option<Message> {
    if bytes == [STOP] {
        return Some(Message::Stop);
    }
    let (header, body) = WireHeader::read_from_prefix(bytes).ok()?;
    let command_len = usize::from(header.command_len.get());
    let (from, id) = (header.from.get(), header.id.get());
    match header.kind {
        kind @ (REQUEST | POST) => {
            std::str::from_utf8(body.get(..command_len)?).ok()?;
            let request = Request {
                id,
                from,
                listener: header.listener.get(),
                due: header.due.get(),
                body: body.to_vec(),
                command_len,
            };
            match (kind, id) {
                (REQUEST, 1..) => Some(Message::Request(request)),
                (POST, 0) => Some(Message::Post(request)),
                _ => None,
            }
        }
        SPILLED => {
            // All of it: a spilled message carries nothing after its header.
            let spilled = Spilled::read_from_bytes(bytes).ok()?;
            Some(Message::Spilled {
                from: spilled.from.get(),
                spill: spilled.spill.get(),
                len: spilled.len.get(),
            })
        }
        REPLY if id != 0 => {
            let outcome = match header.status {
                0 => Outcome::Pass,
                1 => Outcome::Reply(body.to_vec()),
                2 => Outcome::Failed(String::from_utf8_lossy(body).into_owned()),
                3 => Outcome::Gone,
                _ => return None,
            };
            Some(Message::Reply { id, from, outcome })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_docs_tables_are_the_structs() {
        use crate::doc_tables::{self, layout};
        let layouts = [
            layout!(WireHeader {
                kind,
                status,
                command_len,
                from,
                id,
                listener,
                due,
            }),
            layout!(Spilled {
                kind,
                _pad_kind,
                from,
                spill,
                len,
                _pad_end,
            }),
            layout!(SpillHeader { taken, _spare }),
        ];
        let described = ["WireHeader", "Spilled", "SpillHeader"];
        let rows = doc_tables::check(include_str!("wire.rs"), &described, &layouts);
        assert_eq!(rows, 8 + 7 + 3);
    }

    /// The bytes as they were laid out by hand before the header was a
    /// struct: the wire format did not change with it.
    #[test]
    fn the_bytes_are_the_wire_format() {
        let mut expected = vec![REQUEST, 0, 3, 0];
        expected.extend_from_slice(&0x401u32.to_le_bytes());
        expected.extend_from_slice(&7u64.to_le_bytes());
        expected.extend_from_slice(&99u64.to_le_bytes());
        expected.extend_from_slice(&1234u64.to_le_bytes());
        expected.extend_from_slice(b"add[1,2]");
        let mut built = request_body("add", &[1, 2]).unwrap();
        address(&mut built, 7, 0x401, 99, 1234);
        assert_eq!(built, expected);

        let mut expected = vec![REPLY, 2, 0, 0];
        expected.extend_from_slice(&5u32.to_le_bytes());
        expected.extend_from_slice(&7u64.to_le_bytes());
        expected.extend_from_slice(&[0; 16]);
        expected.extend_from_slice(b"no");
        assert_eq!(reply(7, 5, &Outcome::Failed("no".into())), expected);

        let mut expected = vec![SPILLED, 0, 0, 0];
        expected.extend_from_slice(&0x401u32.to_le_bytes());
        expected.extend_from_slice(&9u64.to_le_bytes());
        expected.extend_from_slice(&(1u64 << 20).to_le_bytes());
        expected.extend_from_slice(&[0; 8]);
        assert_eq!(spilled(0x401, 9, 1 << 20), expected);
    }

    #[test]
    fn every_message_round_trips() {
        let request = request(7, 0x401, 99, "add", b"[1,2]");
        match decode(&request) {
            Some(Message::Request(
                request @ Request {
                    id: 7,
                    from: 0x401,
                    listener: 99,
                    ..
                },
            )) => assert_eq!((request.command(), request.args()), ("add", &b"[1,2]"[..])),
            other => panic!("{other:?}"),
        }
        let mut built = request_body("add", &[1, 2]).unwrap();
        address(&mut built, 7, 0x401, 99, 0);
        assert_eq!(built, request, "the same bytes, built in one buffer");
        assert!(matches!(
            decode(&super::request(0, 1, 2, "log", b"\"x\"")),
            Some(Message::Post(_))
        ));
        for outcome in [
            Outcome::Pass,
            Outcome::Reply(b"3".to_vec()),
            Outcome::Failed("no".into()),
            Outcome::Gone,
        ] {
            assert_eq!(
                decode(&reply(7, 5, &outcome)),
                Some(Message::Reply {
                    id: 7,
                    from: 5,
                    outcome
                })
            );
        }
        assert_eq!(decode(&stop()), Some(Message::Stop));
        assert_eq!(
            decode(&spilled(0x401, 9, 1 << 20)),
            Some(Message::Spilled {
                from: 0x401,
                spill: 9,
                len: 1 << 20
            })
        );
        // A spilled message is its header alone.
        let mut longer = spilled(1, 2, 3);
        longer.push(0);
        assert_eq!(decode(&longer), None);
        assert_eq!(spill_name("g", 0x401, 9), "g@big.401.9");
    }

    #[test]
    fn scribbles_do_not_decode() {
        assert_eq!(decode(&[]), None);
        assert_eq!(decode(&[1; 10]), None);
        let mut bad = request(7, 1, 2, "add", b"1");
        bad[2] = 200; // a command longer than the message
        assert_eq!(decode(&bad), None);
        let mut bad = reply(7, 1, &Outcome::Pass);
        bad[1] = 9;
        assert_eq!(decode(&bad), None);
        // A request without an id, a post with one, a reply to id 0.
        assert_eq!(
            decode(&request(0, 1, 2, "add", b"1")[..]).map(|_| ()),
            Some(())
        );
        let mut bad = request(5, 1, 2, "add", b"1");
        bad[0] = POST;
        assert_eq!(decode(&bad), None);
        assert_eq!(decode(&reply(0, 1, &Outcome::Pass)), None);
    }
}
